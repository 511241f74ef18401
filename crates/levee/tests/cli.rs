//! The `levee` binary as users run it: `check` on the shipped examples and on
//! broken files, `--version`, `--help`, and `run` until SIGTERM. Every test
//! runs the real executable; a failure prints the command, its working
//! directory, exit status, stdout and stderr.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

mod common;

use common::{levee, repo_root, LEVEE};

#[test]
fn check_accepts_the_shipped_examples() {
    let root = repo_root();
    let ok_line =
        regex::Regex::new(r"^(\S+): OK \(\d+ listeners?, \d+ routes?, \d+ clusters?\)\n$")
            .expect("valid regex");
    for example in [
        "examples/levee.toml",
        "examples/levee.yaml",
        "examples/slo.toml",
    ] {
        let run = levee(&["check", "-c", example], &root);
        run.expect_code(0)
            .expect(run.stderr.is_empty(), "check printed to stderr")
            .expect(
                ok_line
                    .captures(&run.stdout)
                    .is_some_and(|c| &c[1] == example),
                "stdout is not the `FILE: OK (...)` line",
            );
    }
}

#[test]
fn check_reports_every_diagnostic_and_exits_1() {
    let dir = common::scratch_dir("cli", "check-invalid");
    std::fs::write(
        dir.join("broken.toml"),
        r#"[admin]
listen = "0.0.0.0:9901"

[[listeners]]
name = "public"
listen = "127.0.0.1:8080"
limits = { idle_timeout = "10" }

[[clusters]]
name = "catalog"
endpoints = ["127.0.0.1:9000"]
conect_timeout = "1s"

[[routes]]
name = "all"
cluster = "catalogue"
"#,
    )
    .expect("write config");
    let run = levee(&["check", "-c", "broken.toml"], &dir);
    run.expect_code(1)
        .expect(run.stdout.is_empty(), "a failed check printed to stdout");
    let expected = "\
broken.toml:2:10: admin.token: the admin API listens on 0.0.0.0:9901, which is not loopback, so a token is required
  help: set `token = \"${LEVEE_ADMIN_TOKEN}\"`, or listen on 127.0.0.1
broken.toml:7:27: listeners[0].limits.idle_timeout: `10` has a number without a unit
  help: write a number with a unit: `250ms`, `2s`, `5m`, `1h`
broken.toml:12:1: clusters[0].conect_timeout: unknown field `conect_timeout`
  help: did you mean `connect_timeout`?
broken.toml:16:11: routes[0].cluster: unknown cluster `catalogue`
  help: did you mean `catalog`?
4 errors found
";
    run.expect(
        run.stderr == expected,
        &format!("stderr differs; expected:\n{expected}"),
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn version_prints_the_package_version() {
    let run = levee(&["--version"], &repo_root());
    let expected = format!("levee {}\n", env!("CARGO_PKG_VERSION"));
    run.expect_code(0)
        .expect(run.stdout == expected, &format!("expected `{expected}`"));
}

#[test]
fn help_lists_the_subcommands() {
    let run = levee(&["--help"], &repo_root());
    run.expect_code(0);
    for sub in ["run", "check", "demo", "load"] {
        let listed = run
            .stdout
            .lines()
            .any(|l| l.trim_start().starts_with(&format!("{sub} ")));
        run.expect(listed, &format!("`{sub}` is not listed in --help"));
    }
}

#[test]
fn check_refuses_an_unknown_extension() {
    let dir = common::scratch_dir("cli", "unknown-ext");
    std::fs::write(dir.join("levee.json"), "{}").expect("write file");
    let run = levee(&["check", "-c", "levee.json"], &dir);
    run.expect_code(1).expect(
        run.stderr
            == "levee.json:1:1: unknown config format\n  help: name the file *.toml, *.yaml or *.yml\n1 error found\n",
        "unexpected message for an unknown extension",
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn check_reports_a_missing_file() {
    let dir = common::scratch_dir("cli", "missing-file");
    let run = levee(&["check", "-c", "nowhere.yaml"], &dir);
    run.expect_code(1)
        .expect(
            run.stderr
                .starts_with("nowhere.yaml:1:1: cannot read config file: "),
            "the message does not name the file and the problem",
        )
        .expect(
            run.stderr.ends_with("\n1 error found\n"),
            "no error count at the end",
        );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn run_refuses_an_invalid_config() {
    let dir = common::scratch_dir("cli", "run-invalid");
    std::fs::write(dir.join("levee.yaml"), "listeners: []\n").expect("write config");
    let run = levee(&["run", "-c", "levee.yaml"], &dir);
    run.expect_code(1).expect(
        run.stderr
            == "levee.yaml:1:12: listeners: at least one listener is required\n1 error found\n",
        "unexpected diagnostics",
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Sends one HTTP/1.1 request and returns the whole response as text.
fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nhost: cli.test\r\nconnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    Ok(response)
}

#[cfg(unix)]
#[test]
fn run_serves_and_exits_0_on_sigterm() {
    let root = repo_root();
    let dir = common::scratch_dir("cli", "run-sigterm");
    let config = dir.join("levee.toml");
    // The TLS listener loads the example key pair relative to the working
    // directory (the repository root), proving the committed pair works.
    std::fs::write(
        &config,
        r#"[admin]
listen = "127.0.0.1:0"

[runtime]
drain_timeout = "2s"
watch_config = false

[[listeners]]
name = "plain"
listen = "127.0.0.1:0"

[[listeners]]
name = "tls"
listen = "127.0.0.1:0"
tls = { cert = "examples/tls/example-cert.pem", key = "examples/tls/example-key.pem" }

[[clusters]]
name = "nothing"
endpoints = ["127.0.0.1:9"]

[[routes]]
name = "api"
cluster = "nothing"
match = { path = { prefix = "/api/" } }
"#,
    )
    .expect("write config");
    let config_arg = config.to_str().expect("UTF-8 temp path");
    let args = ["--log-format", "json", "run", "-c", config_arg];
    let command = format!("{LEVEE} {}", args.join(" "));
    let mut child = common::command(LEVEE, &args, &root)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {command}: {e}"));

    // Collect stderr lines on a thread, so reading never blocks the test.
    let (tx, rx) = mpsc::channel::<String>();
    let stderr = child.stderr.take().expect("piped stderr");
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut log: Vec<String> = Vec::new();
    let explain = |log: &[String], what: &str| {
        format!(
            "{what}\ncommand: {command}\ncwd: {}\n--- stderr so far ---\n{}\n---------------------",
            root.display(),
            log.join("\n")
        )
    };
    let kill = |child: &mut std::process::Child| {
        let _ = child.kill();
        let _ = child.wait();
    };

    // Wait for startup.
    let deadline = levee_core::time::now() + Duration::from_secs(30);
    while !log.iter().any(|l| l.contains("admin API listening")) {
        let left = deadline.saturating_duration_since(levee_core::time::now());
        match rx.recv_timeout(left) {
            Ok(line) => log.push(line),
            Err(_) => {
                kill(&mut child);
                panic!(
                    "{}",
                    explain(&log, "no `admin API listening` line within 30s")
                );
            }
        }
    }

    // The plain listener answers; a request matching no route gets Levee's
    // own error response.
    let plain: Option<SocketAddr> = log.iter().find_map(|l| {
        let v: serde_json::Value = serde_json::from_str(l).ok()?;
        (v["message"] == "listening" && v["listener"] == "plain")
            .then(|| v["address"].as_str()?.parse().ok())
            .flatten()
    });
    let Some(plain) = plain else {
        kill(&mut child);
        panic!(
            "{}",
            explain(&log, "no `listening` line for listener plain")
        );
    };
    let response = match http_get(plain, "/elsewhere") {
        Ok(r) => r,
        Err(e) => {
            kill(&mut child);
            panic!(
                "{}",
                explain(&log, &format!("request to {plain} failed: {e}"))
            );
        }
    };
    let lower = response.to_ascii_lowercase();
    if !(response.starts_with("HTTP/1.1 404")
        && lower.contains("\r\nlevee-error: no_route\r\n")
        && response.contains(r#"{"error":"no_route","status":404,"#))
    {
        kill(&mut child);
        panic!(
            "{}",
            explain(&log, &format!("unexpected no-route response:\n{response}"))
        );
    }

    // SIGTERM: drain and exit 0.
    let pid = child.id().to_string();
    let kill_status = Command::new("kill").args(["-TERM", &pid]).status();
    if !kill_status.as_ref().is_ok_and(ExitStatus::success) {
        kill(&mut child);
        panic!("`kill -TERM {pid}` failed: {kill_status:?}");
    }
    let deadline = levee_core::time::now() + Duration::from_secs(20);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if levee_core::time::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50))
            }
            Ok(None) => {
                kill(&mut child);
                log.extend(rx.try_iter());
                panic!("{}", explain(&log, "still running 20s after SIGTERM"));
            }
            Err(e) => panic!("waiting for levee: {e}"),
        }
    };
    let _ = reader.join();
    log.extend(rx.try_iter());
    let mut stdout = String::new();
    if let Some(mut out) = child.stdout.take() {
        let _ = out.read_to_string(&mut stdout);
    }
    assert_eq!(
        status.code(),
        Some(0),
        "{}\n--- stdout ---\n{stdout}",
        explain(&log, &format!("exit status {status} after SIGTERM"))
    );
    assert!(
        log.iter().any(|l| l.contains("SIGTERM received")),
        "{}",
        explain(&log, "SIGTERM was not logged")
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `levee ARGS` in `cwd` with `LEVEE_CONFIG` set to `config_env`.
fn levee_with_config_env(args: &[&str], cwd: &Path, config_env: &str) -> common::Run {
    let output = common::command(LEVEE, args, cwd)
        .env("LEVEE_CONFIG", config_env)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {LEVEE}: {e}"));
    common::Run {
        command: format!("LEVEE_CONFIG={config_env} {LEVEE} {}", args.join(" ")),
        cwd: cwd.to_path_buf(),
        status: output.status,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

const MINIMAL_TOML: &str = "[[listeners]]\nname = \"public\"\nlisten = \"127.0.0.1:0\"\n";
const MINIMAL_YAML: &str = "listeners:\n  - name: public\n    listen: 127.0.0.1:0\n";

#[test]
fn check_json_reports_diagnostics_as_the_admin_api_does() {
    let dir = common::scratch_dir("cli", "check-json-invalid");
    std::fs::write(
        dir.join("broken.toml"),
        "[admin]\ntoken = \"short\"\n\n[[listeners]]\nname = \"public\"\nlisten = \"0.0.0.0:70000\"\n",
    )
    .expect("write config");
    let run = levee(&["check", "-c", "broken.toml", "--format", "json"], &dir);
    run.expect_code(1)
        .expect(run.stderr.is_empty(), "JSON mode printed to stderr");
    let body: serde_json::Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e})\n{}", run.context()));
    let expected = serde_json::json!({
        "file": "broken.toml",
        "files": ["broken.toml"],
        "valid": false,
        "diagnostics": [
            {
                "file": "broken.toml", "line": 2, "col": 9, "path": "admin.token",
                "message": "the admin token must be at least 16 characters", "help": null,
            },
            {
                "file": "broken.toml", "line": 6, "col": 10, "path": "listeners[0].listen",
                "message": "port 70000 is out of range (0-65535)",
                "help": "for example `127.0.0.1:8080` or `[::1]:8080`",
            },
        ],
        "rendered": [
            "broken.toml:2:9: admin.token: the admin token must be at least 16 characters",
            "broken.toml:6:10: listeners[0].listen: port 70000 is out of range (0-65535)\n  help: for example `127.0.0.1:8080` or `[::1]:8080`",
        ],
    });
    run.expect(body == expected, &format!("expected:\n{expected:#}"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn check_json_on_a_valid_file_and_on_a_missing_one() {
    let root = repo_root();
    let run = levee(
        &["check", "--format", "json", "-c", "examples/levee.yaml"],
        &root,
    );
    run.expect_code(0)
        .expect(run.stderr.is_empty(), "check printed to stderr");
    let body: serde_json::Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e})\n{}", run.context()));
    run.expect(body["valid"] == true, "`valid` is not true")
        .expect(
            body["file"] == "examples/levee.yaml",
            "`file` is not the path given",
        )
        .expect(
            body["diagnostics"] == serde_json::json!([]),
            "diagnostics on a valid file",
        )
        .expect(
            body["summary"]["listeners"].as_u64().is_some_and(|n| n > 0),
            "no listener count in the summary",
        );

    let dir = common::scratch_dir("cli", "check-json-missing");
    let run = levee(&["check", "--format", "json", "-c", "nowhere.toml"], &dir);
    run.expect_code(1);
    let body: serde_json::Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e})\n{}", run.context()));
    let first = &body["diagnostics"][0];
    run.expect(body["valid"] == false, "`valid` is not false")
        .expect(
            first["file"] == "nowhere.toml"
                && first["line"] == 1
                && first["col"] == 1
                && first["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("cannot read config file: ")),
            "the diagnostic does not name the file and the problem",
        );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn check_without_c_finds_the_working_directory_config_then_levee_config() {
    let dir = common::scratch_dir("cli", "discover-order");
    let elsewhere = common::scratch_dir("cli", "discover-order-env");
    let env_file = elsewhere.join("from-env.toml");
    std::fs::write(&env_file, MINIMAL_TOML).expect("write env config");
    let env_arg = env_file.to_str().expect("UTF-8 temp path");

    // Nothing here: LEVEE_CONFIG names the file.
    let run = levee_with_config_env(&["check"], &dir, env_arg);
    run.expect_code(0).expect(
        run.stdout == format!("{env_arg}: OK (1 listener, 0 routes, 0 clusters)\n"),
        "not the LEVEE_CONFIG file",
    );

    // The working directory's file comes first.
    std::fs::write(dir.join("levee.yml"), MINIMAL_YAML).expect("write config");
    let run = levee_with_config_env(&["check"], &dir, env_arg);
    run.expect_code(0).expect(
        run.stdout == "levee.yml: OK (1 listener, 0 routes, 0 clusters)\n",
        "not the working directory's levee.yml",
    );
    let run = levee(&["check", "--format", "json"], &dir);
    run.expect_code(0).expect_stdout(r#""file":"levee.yml""#);
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&elsewhere);
}

#[test]
fn without_c_two_default_files_or_none_are_refused() {
    let dir = common::scratch_dir("cli", "discover-refused");
    for command in ["check", "run"] {
        let run = levee(&[command], &dir);
        run.expect_code(1).expect(
            run.stderr
                == "error: no config file named: looked for levee.toml, levee.yaml and levee.yml in the working directory, then LEVEE_CONFIG, which is not set\n  help: name the file with `-c FILE`, create levee.toml here, or set LEVEE_CONFIG=/path/to/levee.toml\n",
            "the message does not say what was looked for",
        );
    }
    std::fs::write(dir.join("levee.toml"), MINIMAL_TOML).expect("write config");
    std::fs::write(dir.join("levee.yaml"), MINIMAL_YAML).expect("write config");
    for command in ["check", "run"] {
        let run = levee_with_config_env(&[command], &dir, "/elsewhere/levee.toml");
        run.expect_code(1).expect(
            run.stderr
                == "error: no config file named, and the working directory has both levee.toml and levee.yaml\n  help: name the one to use: `-c levee.toml`\n",
            "the message does not name both files",
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn run_without_c_loads_the_discovered_file() {
    // An invalid file proves which one `run` read without starting a server.
    let dir = common::scratch_dir("cli", "run-discover");
    std::fs::write(dir.join("levee.yaml"), "listeners: []\n").expect("write config");
    let run = levee(&["run"], &dir);
    run.expect_code(1).expect(
        run.stderr
            == "levee.yaml:1:12: listeners: at least one listener is required\n1 error found\n",
        "run did not load ./levee.yaml",
    );
    std::fs::remove_file(dir.join("levee.yaml")).expect("remove config");
    let env_file = dir.join("env.toml");
    std::fs::write(&env_file, "listeners = []\n").expect("write config");
    let env_arg = env_file.to_str().expect("UTF-8 temp path");
    let run = levee_with_config_env(&["run"], &dir, env_arg);
    run.expect_code(1).expect(
        run.stderr
            == format!(
                "{env_arg}:1:13: listeners: at least one listener is required\n1 error found\n"
            ),
        "run did not load the LEVEE_CONFIG file",
    );
    let _ = std::fs::remove_dir_all(&dir);
}

const SUBCOMMANDS: [&str; 9] = [
    "run",
    "check",
    "demo",
    "slo",
    "backup",
    "restore",
    "rollout",
    "load",
    "completions",
];

#[test]
fn completions_for_bash_are_a_valid_script_naming_the_subcommands() {
    let dir = common::scratch_dir("cli", "completions-bash");
    let run = levee(&["completions", "bash"], &dir);
    run.expect_code(0)
        .expect(!run.stdout.trim().is_empty(), "empty bash completions")
        .expect(
            run.stdout.contains("complete "),
            "no `complete` registration",
        );
    for sub in SUBCOMMANDS {
        run.expect_stdout(&format!("levee__subcmd__{sub}"));
    }
    run.expect_stdout("--format");
    let script = dir.join("levee.bash");
    std::fs::write(&script, &run.stdout).expect("write script");
    let syntax = common::run("bash", &["-n", "levee.bash"], &dir);
    syntax
        .expect_code(0)
        .expect(syntax.stderr.is_empty(), "bash -n complained");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn completions_for_zsh_and_fish_name_the_subcommands() {
    let root = repo_root();
    for shell in ["zsh", "fish"] {
        let run = levee(&["completions", shell], &root);
        run.expect_code(0);
        for sub in SUBCOMMANDS {
            let named = match shell {
                "zsh" => run.stdout.contains(&format!("'{sub}:")),
                _ => run.stdout.contains(&format!("-a \"{sub}\"")),
            };
            run.expect(named, &format!("{shell} completions do not name `{sub}`"));
        }
    }
    let run = levee(&["completions", "tcsh"], &root);
    run.expect_code(2).expect_stderr("invalid value 'tcsh'");
}

// Layered config files: `-c base.toml -c prod.toml` (docs/config.md,
// "Layered files").

const LAYER_BASE: &str = r#"[admin]
listen = "127.0.0.1:0"
token = "base-admin-token-0123456789"

[runtime]
drain_timeout = "1s"
watch_config = false

[[listeners]]
name = "public"
listen = "127.0.0.1:0"

[[clusters]]
name = "orders"
endpoints = ["127.0.0.1:9"]
timeout = "5s"

[[clusters]]
name = "catalog"
endpoints = ["127.0.0.1:9"]

[[routes]]
name = "orders"
cluster = "orders"
match = { path = { prefix = "/orders/" } }
timeout = "2s"

[[routes]]
name = "catalog"
cluster = "catalog"
match = { path = { prefix = "/catalog/" } }
"#;

const LAYER_PROD: &str = r#"[admin]
token = "${PROD_ADMIN_TOKEN:-prod-admin-token-0123456789}"

[[clusters]]
name = "orders"
endpoints = ["127.0.0.1:10"]

[[routes]]
name = "orders"
timeout = "1s"

[[routes]]
name = "search"
cluster = "catalog"
match = { path = { prefix = "/search/" } }
"#;

/// A scratch directory holding `files` (name, text).
fn layer_dir(test: &str, files: &[(&str, &str)]) -> std::path::PathBuf {
    let dir = common::scratch_dir("cli", test);
    for (name, text) in files {
        std::fs::write(dir.join(name), text).expect("write layer");
    }
    dir
}

#[test]
fn check_merges_two_layers_and_explains_which_file_set_each_value() {
    let dir = layer_dir(
        "layers-two",
        &[("base.toml", LAYER_BASE), ("prod.toml", LAYER_PROD)],
    );
    let run = levee(&["check", "-c", "base.toml", "-c", "prod.toml"], &dir);
    run.expect_code(0).expect(
        run.stdout == "base.toml + prod.toml: OK (1 listener, 3 routes, 2 clusters)\n"
            && run.stderr.is_empty(),
        "not the OK line of the merged config",
    );

    let run = levee(
        &["check", "-c", "base.toml", "-c", "prod.toml", "--explain"],
        &dir,
    );
    run.expect_code(0);
    for line in [
        r#"prod.toml:2:9: admin.token = "<redacted>""#,
        r#"base.toml:6:17: runtime.drain_timeout = "1s""#,
        r#"base.toml:14:8: clusters[0].name = "orders""#,
        r#"prod.toml:6:14: clusters[0].endpoints[0] = "127.0.0.1:10""#,
        r#"base.toml:16:11: clusters[0].timeout = "5s""#,
        r#"base.toml:24:11: routes[0].cluster = "orders""#,
        r#"prod.toml:10:11: routes[0].timeout = "1s""#,
        r#"prod.toml:13:8: routes[2].name = "search""#,
    ] {
        run.expect(
            run.stdout.lines().any(|l| l == line),
            &format!("no line {line:?}"),
        );
    }
    run.expect(!run.stdout.contains("admin-token"), "a secret was printed")
        .expect(
            run.stdout
                .ends_with("base.toml + prod.toml: OK (1 listener, 3 routes, 2 clusters)\n"),
            "the OK line does not come last",
        );

    let run = levee(
        &[
            "check",
            "-c",
            "base.toml",
            "-c",
            "prod.toml",
            "--explain",
            "--format",
            "json",
        ],
        &dir,
    );
    run.expect_code(0);
    let body: serde_json::Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e})\n{}", run.context()));
    let timeout = body["values"]
        .as_array()
        .and_then(|values| values.iter().find(|v| v["path"] == "routes[0].timeout"));
    run.expect(
        body["valid"] == true
            && body["file"] == "base.toml + prod.toml"
            && body["files"] == serde_json::json!(["base.toml", "prod.toml"])
            && timeout
                == Some(&serde_json::json!({
                    "path": "routes[0].timeout", "value": "1s",
                    "file": "prod.toml", "line": 10, "col": 11,
                })),
        "the JSON does not list the files and routes[0].timeout's origin",
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn check_layers_three_files_and_a_later_one_removes_a_route() {
    let staging = "routes:\n  - name: catalog\n    timeout: 3s\n  - name: beta\n    cluster: catalog\n    match: { path: { prefix: /beta/ } }\n";
    let prod = "[[routes]]\nname = \"catalog\"\nremove = true\n";
    let dir = layer_dir(
        "layers-three",
        &[
            ("base.toml", LAYER_BASE),
            ("staging.yaml", staging),
            ("prod.toml", prod),
        ],
    );
    let args = [
        "check",
        "-c",
        "base.toml",
        "-c",
        "staging.yaml",
        "-c",
        "prod.toml",
        "--explain",
    ];
    let run = levee(&args, &dir);
    run.expect_code(0)
        .expect(
            run.stdout.ends_with(
                "base.toml + staging.yaml + prod.toml: OK (1 listener, 2 routes, 2 clusters)\n",
            ),
            "not the OK line of three layers",
        )
        .expect(
            run.stdout
                .lines()
                .any(|l| l == r#"staging.yaml:4:11: routes[1].name = "beta""#),
            "routes[1] is not staging's beta",
        )
        .expect(
            !run.stdout.lines().any(|l| {
                l.contains(": routes[") && l.ends_with(".name = \"catalog\"")
                    || l.contains(": routes[2]")
            }),
            "the removed route is still listed",
        )
        .expect(
            !run.stdout.contains("3s"),
            "the removed route's staging timeout is still listed",
        );

    // A removal naming nothing: exit 1, the closest name suggested.
    std::fs::write(
        dir.join("prod.toml"),
        "[[routes]]\nname = \"catalgo\"\nremove = true\n",
    )
    .expect("write layer");
    let run = levee(&args, &dir);
    run.expect_code(1).expect(
        run.stdout.is_empty()
            && run.stderr
                == "prod.toml:3:10: routes[0].remove: no earlier file defines an entry named `catalgo` here to remove\n  help: did you mean `catalog`?\n1 error found\n",
        "not the removal's diagnostic",
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn check_refuses_layers_that_change_a_values_kind() {
    let dir = layer_dir(
        "layers-clash",
        &[
            ("base.toml", LAYER_BASE),
            ("prod.toml", "runtime = [\"fast\"]\n"),
        ],
    );
    let run = levee(&["check", "-c", "base.toml", "-c", "prod.toml"], &dir);
    run.expect_code(1).expect(
        run.stdout.is_empty()
            && run.stderr
                == "prod.toml:1:11: runtime: a list here, but a table in base.toml:5:1\n  help: a later file may replace a value, or merge into a table or a list of named entries, but not change its kind\n1 error found\n",
        "not the clash's diagnostic",
    );
    let run = levee(
        &[
            "check",
            "-c",
            "base.toml",
            "-c",
            "prod.toml",
            "--format",
            "json",
        ],
        &dir,
    );
    run.expect_code(1);
    let body: serde_json::Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e})\n{}", run.context()));
    run.expect(
        body["valid"] == false
            && body["diagnostics"][0]["file"] == "prod.toml"
            && body["diagnostics"][0]["path"] == "runtime",
        "the JSON does not report the clash in prod.toml",
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn check_points_each_diagnostic_at_the_layer_that_set_the_value() {
    let base = LAYER_BASE.replace(
        "timeout = \"5s\"",
        "timeout = \"5s\"\nconect_timeout = \"1s\"",
    );
    let prod = "# production\n[[routes]]\nname = \"orders\"\ntimeout = \"10\"\n";
    let dir = layer_dir(
        "layers-diagnostics",
        &[("base.toml", &base), ("prod.yaml", "")],
    );
    std::fs::write(dir.join("prod.toml"), prod).expect("write layer");
    let run = levee(
        &[
            "check",
            "-c",
            "base.toml",
            "-c",
            "prod.yaml",
            "-c",
            "prod.toml",
        ],
        &dir,
    );
    run.expect_code(1).expect(
        run.stdout.is_empty()
            && run.stderr
                == "\
base.toml:17:1: clusters[0].conect_timeout: unknown field `conect_timeout`
  help: did you mean `connect_timeout`?
prod.toml:4:11: routes[0].timeout: `10` has a number without a unit
  help: write a number with a unit: `250ms`, `2s`, `5m`, `1h`
2 errors found
",
        "the diagnostics do not name the file that set each value",
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The body of an HTTP/1.1 response, de-chunked.
fn response_body(response: &str) -> String {
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((response, ""));
    if !head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return body.to_string();
    }
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 || after.len() < size {
            break;
        }
        out.push_str(&after[..size]);
        rest = after[size..].trim_start_matches("\r\n");
    }
    out
}

/// The route names of the running config, from the admin API.
fn running_routes(admin: SocketAddr, levee: &mut common::Spawned) -> Vec<String> {
    let response = http_get(admin, "/api/v1/config")
        .unwrap_or_else(|e| panic!("GET /api/v1/config: {e}\n{}", levee.output()));
    let config: serde_json::Value = serde_json::from_str(&response_body(&response))
        .unwrap_or_else(|e| panic!("not JSON ({e}):\n{response}"));
    config["routes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["name"].as_str().map(String::from))
        .collect()
}

#[cfg(unix)]
#[test]
fn run_with_layers_watches_and_reloads_every_layer() {
    // The later layer lives in another directory: both are watched.
    let base = LAYER_BASE
        .replace("token = \"base-admin-token-0123456789\"\n", "")
        .replace("watch_config = false", "watch_config = true")
        + "\n[store]\npath = \":memory:\"\n";
    let prod = "[[routes]]\nname = \"search\"\ncluster = \"catalog\"\nmatch = { path = { prefix = \"/search/\" } }\n";
    let dir = layer_dir("layers-run", &[("base.toml", &base)]);
    std::fs::create_dir_all(dir.join("env")).expect("mkdir env");
    std::fs::write(dir.join("env/prod.toml"), prod).expect("write layer");
    let mut levee = common::Spawned::levee(
        &[
            "--log-format",
            "json",
            "run",
            "-c",
            "base.toml",
            "-c",
            "env/prod.toml",
        ],
        &dir,
    );
    let lines = levee.lines_until("admin API listening", Duration::from_secs(30));
    let admin = common::logged_address(&lines, "admin API listening", None)
        .unwrap_or_else(|| panic!("no admin line:\n{}", levee.output()));
    assert_eq!(
        running_routes(admin, &mut levee),
        ["orders", "catalog", "search"]
    );
    // The watcher starts after the admin API line, before the handover
    // socket's: a change written earlier would go unseen.
    levee.lines_until("handover socket listening", Duration::from_secs(30));

    // A change to the later layer reloads both.
    std::fs::write(
        dir.join("env/prod.toml"),
        format!("{prod}\n[[routes]]\nname = \"added\"\ncluster = \"orders\"\nmatch = {{ path = {{ prefix = \"/added/\" }} }}\n"),
    )
    .expect("rewrite layer");
    levee.lines_until("configuration reloaded", Duration::from_secs(30));
    assert_eq!(
        running_routes(admin, &mut levee),
        ["orders", "catalog", "search", "added"]
    );

    // So does a change to the base: its routes come first, then the later
    // layer's new ones.
    std::fs::write(
        dir.join("base.toml"),
        format!("{base}\n[[routes]]\nname = \"base-added\"\ncluster = \"orders\"\nmatch = {{ path = {{ prefix = \"/base/\" }} }}\n"),
    )
    .expect("rewrite base");
    levee.lines_until("configuration reloaded", Duration::from_secs(30));
    assert_eq!(
        running_routes(admin, &mut levee),
        ["orders", "catalog", "base-added", "search", "added"]
    );
    drop(levee);
    let _ = std::fs::remove_dir_all(&dir);
}
