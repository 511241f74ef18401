//! `levee chaos run` as an operator runs it: the real binary against a real
//! `levee run` (route `api` in front of a `FakeUpstream`, an availability
//! SLO at 99% evaluated every second) while the test sends a request every
//! 15 ms. A delay the hypothesis tolerates holds (exit 0); aborting every
//! request spends the chaos budget, so the run aborts (exit 3) and traffic
//! recovers at once; a dependency that stays broken after the method is a
//! deviation (exit 1); an invalid file, an unreachable admin API and a
//! fault the target refuses fail to run (exit 4); Ctrl-C removes the
//! faults and runs the rollbacks (exit 130). After each run the gateway
//! has no fault left.

use levee_testkit::{Client, FakeUpstream};
use serde_json::Value;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

mod common;

use common::{Run, Spawned};

/// The admin token of the gateway under test.
const TOKEN: &str = "chaos-cli-test-token-0123456789";
/// The test's traffic: one request every 15 ms.
const EVERY: Duration = Duration::from_millis(15);

/// A running `levee run` with its upstream, and the test's traffic.
struct Gateway {
    _process: Spawned,
    upstream: FakeUpstream,
    dir: PathBuf,
    admin: SocketAddr,
    /// The gateway's public listener.
    proxy: SocketAddr,
    /// Each request's send and answer times (Unix seconds) and status.
    log: Arc<Mutex<Vec<(f64, f64, u16)>>>,
    traffic: tokio::task::JoinHandle<()>,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.traffic.abort();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Polls the traffic log until `done` holds (10 s at most).
async fn wait_for_log(
    log: &Mutex<Vec<(f64, f64, u16)>>,
    what: &str,
    done: impl Fn(&[(f64, f64, u16)]) -> bool,
) {
    let deadline = levee_core::time::now() + Duration::from_secs(10);
    while !done(&log.lock().expect("log")) {
        assert!(levee_core::time::now() < deadline, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn unix_now() -> f64 {
    levee_core::time::unix_nanos() as f64 / 1e9
}

impl Gateway {
    async fn start(test: &str) -> Self {
        let upstream = FakeUpstream::start("app").await;
        let dir = common::scratch_dir("chaos-cli", test);
        let config = dir.join("levee.toml");
        std::fs::write(
            &config,
            format!(
                r#"[admin]
listen = "127.0.0.1:0"
token = "{TOKEN}"

[runtime]
watch_config = false
handover_socket = "off"
drain_timeout = "1s"

[store]
path = ":memory:"

[alerting]
evaluate_every = "1s"

[[listeners]]
name = "public"
listen = "127.0.0.1:0"

[[clusters]]
name = "app"
endpoints = ["{}"]

[[routes]]
name = "api"
cluster = "app"

[[slos]]
name = "api-availability"
route = "api"
sli = "availability"
objective = "99%"
"#,
                upstream.addr()
            ),
        )
        .expect("write config");
        std::fs::write(dir.join("token"), TOKEN).expect("write token");
        let (process, proxy, admin) = Spawned::levee_run(&config, &dir);
        let log = Arc::new(Mutex::new(Vec::new()));
        let traffic = tokio::spawn({
            let log = log.clone();
            let url = format!("http://{proxy}/");
            async move {
                let client = Client::http1();
                loop {
                    let sent = unix_now();
                    let request = http::Request::get(&url)
                        .body(Default::default())
                        .expect("request");
                    let status = match client.send(request).await {
                        Ok(r) => r.status.as_u16(),
                        Err(_) => 0,
                    };
                    log.lock().expect("log").push((sent, unix_now(), status));
                    tokio::time::sleep(EVERY).await;
                }
            }
        });
        // Some events before the experiment, so the SLO has a budget.
        wait_for_log(&log, "traffic before the experiment", |l| l.len() >= 20).await;
        Self {
            _process: process,
            upstream,
            dir,
            admin,
            proxy,
            log,
            traffic,
        }
    }

    /// `levee chaos run FILE --admin URL --token-file F --journal J`,
    /// with `experiment` written to FILE; the run and the journal.
    async fn chaos(&self, name: &str, experiment: &str) -> (Run, Value) {
        let file = self.dir.join(name);
        std::fs::write(&file, experiment).expect("write experiment");
        let journal = self.dir.join(format!("{name}.journal.json"));
        let admin = format!("http://{}", self.admin);
        let run = cli(
            &[
                "chaos",
                "run",
                file.to_str().expect("utf-8"),
                "--admin",
                &admin,
                "--token-file",
                self.dir.join("token").to_str().expect("utf-8"),
                "--journal",
                journal.to_str().expect("utf-8"),
            ],
            &self.dir,
        )
        .await;
        let text = std::fs::read_to_string(&journal)
            .unwrap_or_else(|e| panic!("no journal ({e})\n{}", run.context()));
        let value = serde_json::from_str(&text).expect("journal is JSON");
        (run, value)
    }

    /// The gateway's runtime faults.
    async fn faults(&self) -> Vec<Value> {
        let request = http::Request::get(format!("http://{}/api/v1/faults", self.admin))
            .header("authorization", format!("Bearer {TOKEN}"))
            .body(Default::default())
            .expect("request");
        let reply = Client::http1().send(request).await.expect("GET faults");
        reply.json()["faults"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

/// Runs `levee ARGS` without blocking the test's traffic.
async fn cli(args: &[&str], cwd: &Path) -> Run {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let cwd = cwd.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        common::levee(&refs, &cwd)
    })
    .await
    .expect("levee ran")
}

/// The journal's entries of `kind`.
fn entries<'a>(journal: &'a Value, kind: &str) -> Vec<&'a Value> {
    journal["entries"]
        .as_array()
        .map(|all| all.iter().filter(|e| e["kind"] == kind).collect())
        .unwrap_or_default()
}

/// Seconds since the epoch of `YYYY-MM-DDTHH:MM:SS.mmmZ`.
fn parse_rfc3339(s: &str) -> f64 {
    let num = |r: std::ops::Range<usize>| -> i64 {
        s.get(r).and_then(|x| x.parse().ok()).expect("RFC 3339")
    };
    let (y, m, d) = (num(0..4), num(5..7), num(8..10));
    let (hh, mm) = (num(11..13), num(14..16));
    let secs: f64 = s[17..s.len() - 1].parse().expect("seconds");
    // Days from civil (H. Hinnant).
    let y = if m <= 2 { y - 1 } else { y };
    let era = (if y >= 0 { y } else { y - 399 }) / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    (days * 86_400 + hh * 3600 + mm * 60) as f64 + secs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delay_the_hypothesis_tolerates_holds() {
    let gw = Gateway::start("held").await;
    let (run, journal) = gw
        .chaos(
            "held.toml",
            r#"title = "api survives a 100 ms delay"
[hypothesis]
slos = ["api-availability"]
chaos_budget = "50%"
steady_for = "1s"
after = "2s"
[[method]]
at = "0s"
duration = "2s"
route = "api"
fault = { percent = 100, delay = "100ms" }
"#,
        )
        .await;
    println!("{}", run.stdout);
    run.expect_code(0)
        .expect_stdout("outcome:    held (exit 0)")
        .expect_stdout("api-availability: 0% spent");
    assert_eq!(journal["outcome"], "held", "{journal:#}");
    let set = entries(&journal, "fault_set");
    let removed = entries(&journal, "fault_removed");
    assert_eq!(set.len(), 1, "{journal:#}");
    assert_eq!(removed.len(), 1, "{journal:#}");
    assert_eq!(set[0]["target"], "route api");
    assert_eq!(removed[0]["why"], "ended");
    let lived =
        removed[0]["offset_ms"].as_u64().unwrap_or(0) - set[0]["offset_ms"].as_u64().unwrap_or(0);
    assert!(
        (1_900..3_000).contains(&lived),
        "the fault lived {lived} ms\n{journal:#}"
    );
    // Set for its 2 s plus the margin, so a dead runner leaves nothing.
    assert_eq!(set[0]["expires_in_ms"], 7_000);
    assert!(gw.faults().await.is_empty());
    // The delay was felt by the traffic while it lasted.
    let log = gw.log.lock().expect("log").clone();
    assert!(
        log.iter().all(|(_, _, s)| *s == 200),
        "every request succeeded"
    );
    assert!(
        log.iter().any(|(sent, done, _)| done - sent >= 0.1),
        "some were delayed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aborting_every_request_spends_the_chaos_budget_and_stops_at_once() {
    let gw = Gateway::start("aborted").await;
    let (run, journal) = gw
        .chaos(
            "aborted.toml",
            r#"title = "api survives failing requests"
[hypothesis]
slos = ["api-availability"]
chaos_budget = "5%"
steady_for = "1s"
after = "1s"
[[method]]
at = "0s"
duration = "8s"
route = "api"
fault = { abort = { status = 503 } }
"#,
        )
        .await;
    println!("{}", run.stdout);
    run.expect_code(3)
        .expect_stdout("outcome:    aborted (exit 3)")
        .expect_stdout("chaos budget spent");
    assert_eq!(journal["outcome"], "aborted");
    assert!(
        journal["reason"]
            .as_str()
            .unwrap_or("")
            .contains("chaos budget spent"),
        "{journal:#}"
    );
    let decision = entries(&journal, "decision")[0];
    let removed = entries(&journal, "fault_removed");
    assert_eq!(removed.len(), 1, "{journal:#}");
    assert_eq!(removed[0]["why"], "abort");
    let to_removal =
        removed[0]["offset_ms"].as_u64().unwrap_or(0) - decision["offset_ms"].as_u64().unwrap_or(0);
    assert!(
        to_removal < 1_000,
        "removed {to_removal} ms after the abort"
    );
    // The fault ran less than 8 s: the budget stopped it.
    assert!(
        decision["offset_ms"].as_u64().unwrap_or(u64::MAX) < 5_000,
        "{journal:#}"
    );
    assert!(gw.faults().await.is_empty());
    // Requests sent after the abort succeed again within a second.
    let abort_at = parse_rfc3339(decision["at"].as_str().expect("at"));
    wait_for_log(&gw.log, "a good request after the abort", |l| {
        l.iter().any(|(sent, _, s)| *sent >= abort_at && *s == 200)
    })
    .await;
    let log = gw.log.lock().expect("log").clone();
    assert!(log.iter().any(|(_, _, s)| *s == 503), "the fault was felt");
    let recovered = log
        .iter()
        .find(|(sent, _, s)| *sent >= abort_at && *s == 200)
        .map(|(_, done, _)| done - abort_at)
        .expect("a good request after the abort");
    let first_bad = log
        .iter()
        .find(|(_, _, s)| *s == 503)
        .map_or(abort_at, |(_, done, _)| *done);
    println!(
        "first 503 to abort: {:.0} ms; abort to first good request: {:.0} ms",
        (abort_at - first_bad) * 1000.0,
        recovered * 1000.0
    );
    assert!(
        recovered < 1.0,
        "recovered {recovered:.3} s after the abort"
    );
}

/// A dependency the probe checks, which the test breaks once the method's
/// fault is gone (as a cache or a pool that does not recover would).
async fn dependency(broken: Arc<AtomicBool>) -> SocketAddr {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let broken = broken.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let status = if broken.load(Ordering::SeqCst) {
                    "500 Internal Server Error"
                } else {
                    "200 OK"
                };
                let reply =
                    format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
                let _ = conn.write_all(reply.as_bytes()).await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dependency_broken_after_the_method_is_a_deviation() {
    let gw = Gateway::start("deviated").await;
    let broken = Arc::new(AtomicBool::new(false));
    let probe = dependency(broken.clone()).await;
    // Breaks the dependency once a fault was seen and is gone.
    let watcher = tokio::spawn({
        let admin = gw.admin;
        let broken = broken.clone();
        async move {
            let mut seen = false;
            loop {
                let request = http::Request::get(format!("http://{admin}/api/v1/faults"))
                    .header("authorization", format!("Bearer {TOKEN}"))
                    .body(Default::default())
                    .expect("request");
                if let Ok(r) = Client::http1().send(request).await {
                    let n = r.json()["faults"].as_array().map_or(0, Vec::len);
                    if n > 0 {
                        seen = true;
                    } else if seen {
                        broken.store(true, Ordering::SeqCst);
                        return;
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    });
    let (run, journal) = gw
        .chaos(
            "deviated.toml",
            &format!(
                r#"title = "the dependency recovers after a slow spell"
[hypothesis]
probes = [{{ name = "dependency", url = "http://{probe}/health", status = 200, max_latency = "500ms" }}]
after = "3s"
[[method]]
at = "0s"
duration = "2s"
route = "api"
fault = {{ delay = "50ms" }}
"#
            ),
        )
        .await;
    watcher.abort();
    run.expect_code(1)
        .expect_stdout("outcome:    deviated (exit 1)")
        .expect_stdout("probe dependency: status 500, expected 200");
    assert_eq!(journal["outcome"], "deviated");
    let decision = entries(&journal, "decision")[0];
    assert_eq!(decision["phase"], "after", "{journal:#}");
    assert_eq!(entries(&journal, "fault_removed")[0]["why"], "ended");
    assert!(gw.faults().await.is_empty());
}

#[tokio::test]
async fn an_invalid_file_or_an_unreachable_admin_api_fail_to_run() {
    let dir = common::scratch_dir("chaos-cli", "failed");
    let file = dir.join("bad.toml");
    std::fs::write(
        &file,
        "title = \"t\"\n[hypothesis]\nslos = [\"a\"]\nchaos_budget = \"10%\"\n[[method]]\nat = \"0s\"\nduration = \"2 seconds\"\nroute = \"api\"\nfault = { delay = \"1s\" }\n",
    )
    .expect("write");
    let run = cli(&["chaos", "run", file.to_str().expect("utf-8")], &dir).await;
    run.expect_code(4)
        .expect_stderr("bad.toml:7:12: method[0].duration:");

    // A port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let good = dir.join("good.toml");
    std::fs::write(
        &good,
        "title = \"t\"\n[hypothesis]\nslos = [\"a\"]\nchaos_budget = \"10%\"\n[[method]]\nat = \"0s\"\nduration = \"2s\"\nroute = \"api\"\nfault = { delay = \"1s\" }\n",
    )
    .expect("write");
    let admin = format!("http://127.0.0.1:{port}");
    let run = cli(
        &[
            "chaos",
            "run",
            good.to_str().expect("utf-8"),
            "--admin",
            &admin,
            "--json",
        ],
        &dir,
    )
    .await;
    run.expect_code(4)
        .expect_stderr("cannot reach the admin API");
    let journal: Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("--json prints the journal ({e})\n{}", run.context()));
    assert_eq!(journal["outcome"], "failed_to_run");
    assert!(entries(&journal, "fault_set").is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_removes_the_faults_and_runs_the_rollbacks() {
    let gw = Gateway::start("interrupted").await;
    let file = gw.dir.join("long.toml");
    std::fs::write(
        &file,
        format!(
            r#"title = "a long delay, stopped by hand"
[hypothesis]
slos = ["api-availability"]
chaos_budget = "50%"
[[method]]
at = "0s"
duration = "60s"
route = "api"
fault = {{ delay = "20ms" }}
[[rollbacks]]
url = "http://{}/restore"
"#,
            gw.upstream.addr()
        ),
    )
    .expect("write experiment");
    let token = gw.dir.join("token");
    let admin = format!("http://{}", gw.admin);
    let args = [
        "chaos",
        "run",
        file.to_str().expect("utf-8"),
        "--admin",
        &admin,
        "--token-file",
        token.to_str().expect("utf-8"),
    ];
    let child = common::command(common::LEVEE, &args, &gw.dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start levee chaos run");
    levee_testkit::eventually(Duration::from_secs(10), "the fault is set", || async {
        !gw.faults().await.is_empty()
    })
    .await;
    let killed = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill -INT");
    assert!(killed.success());
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .expect("joined")
        .expect("waited");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(130),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("outcome:    interrupted"), "{stdout}");
    assert!(stdout.contains("(id 1, stopped)"), "{stdout}");
    assert!(gw.faults().await.is_empty());
    assert_eq!(gw.upstream.requests_to("/restore"), 1, "the rollback ran");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fault_the_target_refuses_fails_the_run_and_takes_the_others_back() {
    let gw = Gateway::start("refused").await;
    let (run, journal) = gw
        .chaos(
            "refused.toml",
            r#"title = "a route that is not there"
[hypothesis]
slos = ["api-availability"]
chaos_budget = "50%"
[[method]]
at = "0s"
duration = "5s"
route = "api"
fault = { delay = "10ms" }
[[method]]
at = "0s"
duration = "5s"
route = "nope"
fault = { delay = "10ms" }
"#,
        )
        .await;
    run.expect_code(4)
        .expect_stderr("the target refused the fault on route nope")
        .expect_stderr("no route `nope`");
    assert_eq!(journal["outcome"], "failed_to_run");
    assert_eq!(entries(&journal, "fault_set").len(), 1, "{journal:#}");
    assert_eq!(entries(&journal, "fault_removed")[0]["why"], "stopped");
    assert!(gw.faults().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_in_the_method_runs_while_the_faults_do() {
    let gw = Gateway::start("load").await;
    let (run, journal) = gw
        .chaos(
            "load.toml",
            &format!(
                r#"title = "api holds 50 req/s while slowed"
[hypothesis]
slos = ["api-availability"]
chaos_budget = "50%"
after = "1s"
[[method]]
at = "0s"
duration = "2s"
route = "api"
fault = {{ delay = "20ms" }}
[[load]]
url = "http://{}/"
rate = 50
duration = "1s"
"#,
                gw.proxy
            ),
        )
        .await;
    run.expect_code(0).expect_stdout("load http://");
    let load = &journal["load"][0];
    let sent = load["sent"].as_u64().unwrap();
    assert!((45..=51).contains(&sent), "{load:#}");
    assert_eq!(load["failed"], 0, "{load:#}");
    assert!(
        load["p99_ms"].as_f64().unwrap() >= 20.0,
        "the load felt the delay: {load:#}"
    );
}
