//! The real binary: `levee demo` serves and stops on Ctrl-C; `levee run`
//! reloads on SIGHUP and drains on SIGTERM.

use levee_testkit::{eventually, AdminApi, Client, FakeUpstream, TempDir};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the binary with `args`, forwarding stdout and stderr lines.
fn start(args: &[&str]) -> Running {
    let mut child = Command::new(env!("CARGO_BIN_EXE_levee"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn levee");
    let (tx, lines) = mpsc::channel();
    for stream in [
        Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
        Box::new(child.stderr.take().unwrap()),
    ] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
    }
    Running { child, lines }
}

impl Running {
    /// The first line containing `needle`, within 20 s; panics with what was seen.
    fn wait_for(&self, needle: &str) -> String {
        let deadline = levee_core::time::now() + Duration::from_secs(20);
        let mut seen = Vec::new();
        while levee_core::time::now() < deadline {
            if let Ok(line) = self.lines.recv_timeout(Duration::from_millis(100)) {
                if line.contains(needle) {
                    return line;
                }
                seen.push(line);
            }
        }
        panic!(
            "levee never printed {needle:?}; output was:\n{}",
            seen.join("\n")
        );
    }

    fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    fn wait_exit(&mut self) -> std::process::ExitStatus {
        let deadline = levee_core::time::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(levee_core::time::now() < deadline, "levee did not exit");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// `http://ADDR` from a log line with `address=ADDR` (text log format).
fn address_in(line: &str) -> String {
    let clean: String = strip_ansi(line);
    let at = clean.find("address=").expect("address field") + "address=".len();
    clean[at..].split_whitespace().next().unwrap().to_string()
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[tokio::test]
async fn demo_serves_the_catalog_and_stops_on_ctrl_c() {
    let mut demo = start(&[
        "demo",
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
    ]);
    let line = demo.wait_for("gateway    http://");
    let url = line.split_whitespace().nth(1).unwrap().to_string();
    let c = Client::http1();
    let mut ok = 0;
    for _ in 0..20 {
        let r = c.get(&url).await;
        if r.status == 200 {
            ok += 1;
            assert!(r.body.contains("sandbag"));
        }
    }
    assert!(ok >= 15, "the demo mostly succeeds ({ok}/20)");
    demo.signal("INT");
    assert!(demo.wait_exit().success());
}

#[tokio::test]
async fn run_reloads_on_sighup_and_drains_on_sigterm() {
    let up = FakeUpstream::start("u").await;
    let dir = TempDir::new();
    let path = dir.path.join("levee.toml");
    let config = |marker: &str| {
        format!(
            "[admin]\nlisten = \"127.0.0.1:0\"\n[runtime]\nwatch_config = false\n[[listeners]]\nname = \"public\"\nlisten = \"127.0.0.1:0\"\n[[routes]]\nname = \"r\"\ncluster = \"c\"\nresponse_headers = {{ set = {{ \"x-marker\" = \"{marker}\" }} }}\n[[clusters]]\nname = \"c\"\nendpoints = [\"{}\"]\n",
            up.addr()
        )
    };
    std::fs::write(&path, config("before")).unwrap();
    let mut levee = start(&["run", "-c", path.to_str().unwrap()]);
    let listening = levee.wait_for("listener=public");
    let url = format!("http://{}/", address_in(&listening));
    levee.wait_for("admin API listening");
    let c = Client::http1();
    assert_eq!(c.get(&url).await.header("x-marker"), Some("before"));

    std::fs::write(&path, config("after")).unwrap();
    levee.signal("HUP");
    eventually(Duration::from_secs(10), "SIGHUP reloaded the file", || {
        let (c, url) = (c.clone(), url.clone());
        async move { c.get(&url).await.header("x-marker") == Some("after") }
    })
    .await;
    levee.wait_for("access");

    levee.signal("TERM");
    levee.wait_for("drained");
    assert!(levee.wait_exit().success(), "exit 0 after draining");
}

#[tokio::test]
async fn json_logs_carry_one_access_line_per_request() {
    let up = FakeUpstream::start("u").await;
    let dir = TempDir::new();
    let path = dir.path.join("levee.toml");
    std::fs::write(
        &path,
        format!(
            "[admin]\nlisten = \"127.0.0.1:0\"\n[runtime]\nwatch_config = false\n[[listeners]]\nname = \"public\"\nlisten = \"127.0.0.1:0\"\n[[routes]]\nname = \"r\"\ncluster = \"c\"\n[[clusters]]\nname = \"c\"\nendpoints = [\"{}\"]\n",
            up.addr()
        ),
    )
    .unwrap();
    let levee = start(&["--log-format", "json", "run", "-c", path.to_str().unwrap()]);
    let listening = levee.wait_for("\"listener\":\"public\"");
    let line: serde_json::Value = serde_json::from_str(&listening).expect("a JSON log line");
    let url = format!("http://{}/hello", line["address"].as_str().unwrap());
    let reply = Client::http1()
        .get_with(&url, &[("x-request-id", "req-42")])
        .await;
    assert_eq!(reply.status, 200);
    let access = levee.wait_for("levee::access");
    let access: serde_json::Value = serde_json::from_str(&access).expect("a JSON access line");
    assert_eq!(access["route"], "r");
    assert_eq!(access["cluster"], "c");
    assert_eq!(access["endpoint"], up.addr().to_string());
    assert_eq!(access["status"], 200);
    assert_eq!(access["request_id"], "req-42");
    assert_eq!(access["bytes"], 1);
    assert_eq!(access["error"], "-");
    assert!(access["duration_ms"].as_f64().unwrap() >= 0.0);
}

/// Runs `levee ARGS` to completion: (success, stdout, stderr).
fn levee_cli(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_levee"))
        .args(args)
        .output()
        .expect("run levee");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn backup_while_running_then_verify_and_restore_keep_slo_history() {
    let up = FakeUpstream::start("u").await;
    let dir = TempDir::new();
    let path = dir.path.join("levee.toml");
    let config = format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\n[runtime]\nwatch_config = false\naccess_log = false\n\
         [[listeners]]\nname = \"public\"\nlisten = \"127.0.0.1:0\"\n\
         [[routes]]\nname = \"r\"\ncluster = \"c\"\n[[clusters]]\nname = \"c\"\nendpoints = [\"{}\"]\n\
         [[slos]]\nname = \"r-availability\"\nsli = \"availability\"\nroute = \"r\"\nobjective = \"99%\"\n\
         [alerting]\nevaluate_every = \"1s\"\nbucket = \"1s\"\n[store]\npath = \"state.db\"\n",
        up.addr()
    );
    std::fs::write(&path, config).unwrap();
    let config_arg = path.to_str().unwrap();
    let mut levee = start(&["run", "-c", config_arg]);
    let url = format!("http://{}/", address_in(&levee.wait_for("listener=public")));
    let admin = format!(
        "http://{}",
        address_in(&levee.wait_for("admin API listening"))
    );
    let c = Client::http1();
    for _ in 0..30 {
        assert_eq!(c.get(&url).await.status, 200);
    }
    let events = |admin: String| async move {
        let slos = AdminApi::at_url(&admin).slos().await;
        slos.slos.first().map_or(0, |s| s.events)
    };
    eventually(
        Duration::from_secs(10),
        "the SLO counted the requests",
        || {
            let admin = admin.clone();
            async move { events(admin).await == 30 }
        },
    )
    .await;
    // One more tick, so the store holds what the API shows.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    // Online backup, then verification in a scratch store.
    let backup = dir.path.join("backup.db");
    let backup_arg = backup.to_str().unwrap();
    let (ok, out, err) = levee_cli(&["backup", "-c", config_arg, backup_arg]);
    assert!(ok, "backup failed: {out}{err}");
    assert!(out.contains("slo_buckets"), "{out}");
    let (ok, out, err) = levee_cli(&["restore", backup_arg, "--verify"]);
    assert!(ok, "verify failed: {out}{err}");
    assert!(out.contains("OK"), "{out}");
    let (ok, _, err) = levee_cli(&["backup", "-c", config_arg, backup_arg]);
    assert!(
        !ok && err.contains("exists"),
        "a backup never overwrites: {err}"
    );

    // A damaged copy fails verification with a non-zero exit.
    let damaged = dir.path.join("damaged.db");
    let mut bytes = std::fs::read(&backup).unwrap();
    let len = bytes.len();
    for b in &mut bytes[len / 2..] {
        *b = 0x5a;
    }
    std::fs::write(&damaged, bytes).unwrap();
    let (ok, out, err) = levee_cli(&["restore", damaged.to_str().unwrap(), "--verify"]);
    assert!(!ok, "a damaged backup must fail: {out}{err}");
    assert!(err.contains("FAILED") || err.contains("error"), "{err}");

    // Restoring over the store of a running gateway is refused.
    let (ok, _, err) = levee_cli(&["restore", backup_arg, "-c", config_arg]);
    assert!(!ok, "restore must refuse a store in use");
    assert!(err.contains("in use"), "{err}");

    // Stopped, the store is replaced by the backup; a new process reads it.
    levee.signal("TERM");
    assert!(levee.wait_exit().success());
    let store = dir.path.join("state.db");
    std::fs::remove_file(&store).unwrap();
    let (ok, out, err) = levee_cli(&["restore", backup_arg, "-c", config_arg]);
    assert!(ok, "restore failed: {out}{err}");
    let levee = start(&["run", "-c", config_arg]);
    let admin = format!(
        "http://{}",
        address_in(&levee.wait_for("admin API listening"))
    );
    eventually(
        Duration::from_secs(10),
        "the restored history is served",
        || {
            let admin = admin.clone();
            async move { events(admin).await == 30 }
        },
    )
    .await;
}

/// A config whose store is the PostgreSQL database at `url`.
fn postgres_config(dir: &std::path::Path, name: &str, url: &str) -> String {
    let path = dir.join(name);
    let config = format!(
        "[[listeners]]\nname = \"public\"\nlisten = \"127.0.0.1:0\"\n\
         [[routes]]\nname = \"r\"\ncluster = \"c\"\n\
         [[clusters]]\nname = \"c\"\nendpoints = [\"127.0.0.1:9\"]\n\
         [store]\nbackend = \"postgres\"\nurl = \"{url}\"\n"
    );
    std::fs::write(&path, config).unwrap();
    path.to_str().unwrap().to_owned()
}

/// The `checksum X` of a backup or restore line.
fn checksum_in(out: &str) -> String {
    let at = out.find("checksum ").expect("a checksum") + "checksum ".len();
    out[at..at + 16].to_owned()
}

#[test]
fn backup_and_restore_of_a_postgres_store_through_the_cli() {
    use levee_store::Store as _;
    let Some(pg) = levee_testkit::PostgresServer::start("cli_backup") else {
        return;
    };
    let dir = TempDir::new();
    let url = pg.url().replace("levee@", "levee:hunter2@");
    let location = pg.url();
    {
        let mut store = levee_store::PostgresStore::open(&url).unwrap();
        store
            .write(&levee_store::Batch {
                buckets: vec![levee_store::BucketRow {
                    slo: "r-availability".to_owned(),
                    coarse: false,
                    start_ns: 1_800_000_000_000_000_000,
                    good: 29,
                    total: 30,
                }],
                ..levee_store::Batch::default()
            })
            .unwrap();
        store
            .write_rollouts(
                &[levee_store::RolloutRow {
                    route: "r".to_owned(),
                    state: "{}".to_owned(),
                    updated_ns: 1,
                }],
                &[],
            )
            .unwrap();
    }
    // Trust authentication ignores the password; no output may show it.
    let cli = |args: &[&str]| {
        let (ok, out, err) = levee_cli(args);
        assert!(
            !out.contains("hunter2") && !err.contains("hunter2"),
            "{out}{err}"
        );
        (ok, out, err)
    };
    let config = postgres_config(&dir.path, "levee.toml", &url);
    let file = dir.path.join("backup.db");
    let file_arg = file.to_str().unwrap();

    let (ok, out, err) = cli(&["backup", "-c", &config, file_arg]);
    assert!(ok, "backup failed: {out}{err}");
    assert!(
        out.starts_with(&format!("backed up {location} to {file_arg} (")),
        "{out}"
    );
    assert!(out.contains("  slo_buckets: 1 rows\n"), "{out}");
    assert!(out.contains("  rollouts: 1 rows\n"), "{out}");
    let checksum = checksum_in(&out);

    // The same kind of file as a SQLite store's backup, verified the same way.
    let (ok, out, err) = cli(&["restore", file_arg, "--verify"]);
    assert!(ok, "verify failed: {out}{err}");
    assert!(out.contains(": OK ("), "{out}");
    assert!(out.contains("  slo_buckets: 1 rows\n"), "{out}");
    let (ok, _, err) = cli(&["backup", "-c", &config, file_arg]);
    assert!(
        !ok && err.contains("exists"),
        "a backup never overwrites: {err}"
    );

    // Restored into an empty database: the same rows, the same checksum.
    pg.psql("CREATE DATABASE copy");
    let copy_url = url.replace("/postgres", "/copy");
    let copy_config = postgres_config(&dir.path, "copy.toml", &copy_url);
    let (ok, out, err) = cli(&["restore", file_arg, "-c", &copy_config]);
    assert!(ok, "restore failed: {out}{err}");
    assert!(
        out.starts_with(&format!(
            "restored {file_arg} into {} (checksum {checksum})",
            location.replace("/postgres", "/copy")
        )),
        "{out}"
    );
    assert!(out.contains("  slo_buckets: 1 rows\n"), "{out}");
    let again = dir.path.join("again.db");
    let (ok, out, err) = cli(&["backup", "-c", &copy_config, again.to_str().unwrap()]);
    assert!(ok, "backup failed: {out}{err}");
    assert_eq!(checksum_in(&out), checksum, "{out}");

    // A damaged backup fails verification, and a restore of it changes nothing.
    let damaged = dir.path.join("damaged.db");
    let mut bytes = std::fs::read(&file).unwrap();
    let len = bytes.len();
    bytes[len / 2..].fill(0x5a);
    std::fs::write(&damaged, bytes).unwrap();
    let damaged_arg = damaged.to_str().unwrap();
    let (ok, out, err) = cli(&["restore", damaged_arg, "--verify"]);
    assert!(!ok, "a damaged backup must fail: {out}{err}");
    assert!(err.contains("verification FAILED"), "{err}");
    pg.psql("DELETE FROM rollouts");
    let (ok, out, err) = cli(&["restore", damaged_arg, "-c", &config]);
    assert!(!ok, "a damaged backup must not be restored: {out}{err}");
    assert!(err.contains("failed verification"), "{err}");
    assert_eq!(pg.psql("SELECT count(*) FROM rollouts"), "0");

    // A running gateway's session: the restore is refused, naming the config.
    let gateway = levee_store::PostgresStore::open(&url).unwrap();
    let (ok, out, err) = cli(&["restore", file_arg, "-c", &config]);
    assert!(!ok, "restore must refuse a database in use: {out}{err}");
    assert!(
        err.starts_with(&format!(
            "error: {config}: {location}: in use by 1 other Levee session"
        )),
        "{err}"
    );
    assert_eq!(pg.psql("SELECT count(*) FROM rollouts"), "0");
    drop(gateway);
    let (ok, out, err) = cli(&["restore", file_arg, "-c", &config]);
    assert!(ok, "restore failed: {out}{err}");
    assert!(out.contains("replacing the old contents"), "{out}");
    assert_eq!(pg.psql("SELECT count(*) FROM rollouts"), "1");

    // A database that cannot be reached: the error names the config.
    let down = postgres_config(
        &dir.path,
        "down.toml",
        "postgres://levee:hunter2@127.0.0.1:1/postgres",
    );
    let (ok, out, err) = cli(&[
        "backup",
        "-c",
        &down,
        dir.path.join("x.db").to_str().unwrap(),
    ]);
    assert!(!ok, "{out}{err}");
    assert!(
        err.starts_with(&format!(
            "error: {down}: postgres://levee@127.0.0.1:1/postgres: connecting"
        )),
        "{err}"
    );
}
