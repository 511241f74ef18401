//! `levee load` as a CI job runs it: the real binary against a
//! `FakeUpstream` in this process. It holds its rate, passes loose
//! thresholds (exit 0), fails tight ones (exit 99) on latency and on
//! errors, stops early on `abortOnFail`, writes JSON and JUnit, speaks
//! h2c, weights a scenario's requests (TOML or YAML), and exits 2 on
//! usage errors (a scenario's located) and 1 when the target is
//! unreachable. Timing assertions are loose: only the number of requests
//! is checked closely, and that is fixed by the schedule.

use levee_testkit::{Cluster, FakeUpstream, GatewayConfig, Listener, Reply, Route, TestGateway};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;

mod common;

use common::Run;

/// `levee load ARGS` in `dir`, off the async runtime that serves the
/// upstream.
async fn load(args: &[&str], dir: &Path) -> Run {
    load_env(args, dir, &[]).await
}

/// `levee load ARGS` in `dir` with extra environment variables.
async fn load_env(args: &[&str], dir: &Path, env: &[(&str, &str)]) -> Run {
    let mut all = vec!["load".to_string()];
    all.extend(args.iter().map(ToString::to_string));
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        let out = common::command(common::LEVEE, &refs, &dir)
            .envs(env)
            .output()
            .expect("levee ran");
        Run {
            command: format!("levee {}", refs.join(" ")),
            cwd: dir,
            status: out.status,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    })
    .await
    .expect("levee ran")
}

fn url(up: &FakeUpstream, path: &str) -> String {
    format!("http://{}{path}", up.addr())
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("UTF-8 temp path")
}

struct Dir(PathBuf);

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn dir(test: &str) -> Dir {
    Dir(common::scratch_dir("load", test))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holds_its_rate_and_passes_loose_thresholds() {
    let up = FakeUpstream::start("fast").await;
    let d = dir("rate");
    let json = d.0.join("out.json");
    let junit = d.0.join("out.xml");
    let run = load(
        &[
            &url(&up, "/"),
            "--rate",
            "200",
            "--duration",
            "2s",
            "--threshold",
            "http_req_duration: p(99)<5000",
            "--threshold",
            "http_req_failed: rate<0.01",
            "--threshold",
            "http_reqs: rate>100",
            "--threshold-window",
            "1s",
            "--out",
            &format!("json={}", path_str(&json)),
            "--out",
            &format!("junit={}", path_str(&junit)),
        ],
        &d.0,
    )
    .await;
    run.expect_code(0)
        .expect_stdout("✓ http_req_duration: p(99)<5000")
        .expect_stdout("requested");
    // The schedule fixes the count: 400 due; allow a few dropped or late
    // on a busy machine.
    let served = up.requests();
    run.expect((380..=400).contains(&served), &format!("{served} served"));
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap())
        .unwrap_or_else(|e| panic!("JSON: {e}\n{}", run.context()));
    let completed = doc["requests"]["completed"].as_u64().unwrap();
    run.expect((380..=400).contains(&completed), "completed");
    assert_eq!(doc["model"]["scheduled"], 400);
    assert_eq!(doc["requested_rate"], 200.0);
    assert_eq!(doc["passed"], true);
    assert_eq!(doc["threshold_window_s"], 1);
    assert_eq!(doc["thresholds"].as_array().unwrap().len(), 3);
    assert!(doc["series"].as_array().unwrap().len() >= 2, "{doc}");
    assert!(doc["latency"]["p99_ms"].as_f64().unwrap() > 0.0);
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(xml.contains("tests=\"3\" failures=\"0\""), "{xml}");
    assert!(!xml.contains("<failure"), "{xml}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_latency_threshold_fails_with_99_and_a_failing_testcase() {
    let up = FakeUpstream::builder("slow")
        .otherwise(Reply::ok().latency(Duration::from_millis(20)))
        .start()
        .await;
    let d = dir("latency");
    let junit = d.0.join("junit.xml");
    let run = load(
        &[
            &url(&up, "/"),
            "--rate",
            "50",
            "--duration",
            "1s",
            "--threshold",
            "http_req_duration: p(99)<1",
            "--threshold",
            "http_req_failed: rate<0.01",
            "--out",
            &format!("junit={}", path_str(&junit)),
        ],
        &d.0,
    )
    .await;
    run.expect_code(99)
        .expect_stdout("✗ http_req_duration: p(99)<1")
        .expect_stdout("✓ http_req_failed: rate<0.01");
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(xml.starts_with("<?xml"), "{xml}");
    assert!(xml.contains("tests=\"2\" failures=\"1\""), "{xml}");
    assert!(
        xml.contains("name=\"http_req_duration: p(99)&lt;1\"")
            && xml.contains("<failure message=\"whole run p(99)="),
        "{xml}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_fail_the_failure_rate_threshold() {
    let up = FakeUpstream::builder("broken")
        .otherwise(Reply::status(500))
        .start()
        .await;
    let d = dir("errors");
    let run = load(
        &[
            &url(&up, "/"),
            "--rate",
            "50",
            "--duration",
            "1s",
            "--threshold",
            "http_req_failed: rate<0.01",
        ],
        &d.0,
    )
    .await;
    run.expect_code(99)
        .expect_stdout("✗ http_req_failed: rate<0.01  rate=1.0000")
        .expect_stdout("http 500: 50");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_on_fail_stops_the_run_early() {
    let up = FakeUpstream::builder("broken")
        .otherwise(Reply::status(503))
        .start()
        .await;
    let d = dir("abort");
    let run = load(
        &[
            &url(&up, "/"),
            "--rate",
            "20",
            "--duration",
            "60s",
            "--threshold",
            "http_req_failed: rate<0.01, abortOnFail",
        ],
        &d.0,
    )
    .await;
    run.expect_code(99).expect_stdout("ABORTED after");
    // Judged once a second: far fewer than the 1200 scheduled.
    let served = up.requests();
    run.expect(served < 200, &format!("{served} served"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_prior_knowledge_and_a_weighted_scenario() {
    let up = FakeUpstream::start("h2").await;
    let d = dir("scenario");
    let scenario = d.0.join("scenario.toml");
    std::fs::write(d.0.join("body.json"), "{\"n\":1}").unwrap();
    std::fs::write(
        &scenario,
        r#"
rate = 40
duration = "1s"

[[requests]]
path = "/a"
weight = 3

[[requests]]
method = "POST"
path = "/b"
headers = { "content-type" = "application/json" }
body_file = "body.json"
"#,
    )
    .unwrap();
    let run = load(
        &[
            &url(&up, ""),
            "--scenario",
            path_str(&scenario),
            "--http2",
            "-H",
            "x-run: ci",
        ],
        &d.0,
    )
    .await;
    run.expect_code(0);
    assert_eq!(up.requests_to("/a"), 30, "{}", run.context());
    assert_eq!(up.requests_to("/b"), 10, "{}", run.context());
    assert_eq!(up.h2_requests(), 40, "{}", run.context());
    let headers = up.last_headers().unwrap();
    assert_eq!(headers["x-run"], "ci");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_yaml_scenario_weights_its_requests() {
    let up = FakeUpstream::start("yaml").await;
    let d = dir("scenario-yaml");
    let scenario = d.0.join("scenario.yaml");
    std::fs::write(d.0.join("body.json"), "{\"n\":1}").unwrap();
    std::fs::write(
        &scenario,
        r#"
rate: 40
duration: 1s
requests:
  - path: /a
    weight: 3
  - method: post
    path: /b
    headers: { content-type: application/json }
    body_file: body.json
"#,
    )
    .unwrap();
    let run = load(&[&url(&up, ""), "--scenario", path_str(&scenario)], &d.0).await;
    run.expect_code(0);
    assert_eq!(up.requests_to("/a"), 30, "{}", run.context());
    assert_eq!(up.requests_to("/b"), 10, "{}", run.context());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_yaml_scenario_exits_2_with_located_errors() {
    let d = dir("scenario-bad");
    let scenario = d.0.join("bad.yaml");
    std::fs::write(
        &scenario,
        "requests:\n  - method: G T\n    path: a\n    wieght: 2\n",
    )
    .unwrap();
    let file = path_str(&scenario);
    load(&["http://127.0.0.1:1/", "--scenario", file], &d.0)
        .await
        .expect_code(2)
        .expect_stderr(&format!(
            "{file}:2:13: requests[0].method: `G T` is not an HTTP method"
        ))
        .expect_stderr(&format!(
            "{file}:3:11: requests[0].path: `a` must start with /"
        ))
        .expect_stderr(&format!(
            "{file}:4:5: requests[0].wieght: unknown field `wieght`"
        ))
        .expect_stderr("help: did you mean `weight`?")
        .expect_stderr("3 errors found");
    std::fs::write(&scenario, "requests:\n  - path: /a\n   weight: 2\n").unwrap();
    load(&["http://127.0.0.1:1/", "--scenario", file], &d.0)
        .await
        .expect_code(2)
        .expect_stderr(&format!("{file}:3:"))
        .expect_stderr("syntax error");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stages_ramp_the_rate() {
    let up = FakeUpstream::start("ramp").await;
    let d = dir("stages");
    // 0 → 40/s over 1 s, then 40/s for 0.5 s: 20 + 20 requests.
    load(&[&url(&up, "/"), "--stages", "40:1s,40:500ms"], &d.0)
        .await
        .expect_code(0)
        .expect_stdout("40 requests scheduled over 1.5s");
    assert_eq!(up.requests(), 40);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_stops_the_run_and_still_reports() {
    let up = FakeUpstream::start("int").await;
    let d = dir("interrupt");
    let json = d.0.join("out.json");
    let out = format!("json={}", path_str(&json));
    let target = url(&up, "/");
    let args = [
        "load",
        &target,
        "--rate",
        "20",
        "--duration",
        "60s",
        "--out",
        &out,
    ];
    let child = common::command(common::LEVEE, &args, &d.0)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("levee starts");
    // Once requests arrive, interrupt it as Ctrl-C would.
    let up_ref = &up;
    levee_testkit::eventually(Duration::from_secs(10), "requests arrive", || async move {
        up_ref.requests() >= 5
    })
    .await;
    let pid = child.id().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status();
    assert!(killed.is_ok_and(|s| s.success()));
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(130), "{stdout}");
    assert!(stdout.contains("INTERRUPTED after"), "{stdout}");
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(doc["interrupted"], true);
    assert!(doc["requests"]["completed"].as_u64().unwrap() < 1200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepalive_reuses_connections_and_no_keepalive_does_not() {
    let d = dir("keepalive");
    let args = |u: &FakeUpstream| {
        [
            url(u, "/"),
            "--rate".into(),
            "20".into(),
            "--duration".into(),
            "1s".into(),
        ]
    };
    let reused = FakeUpstream::start("reused").await;
    let a = args(&reused);
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    load(&a, &d.0).await.expect_code(0);
    assert_eq!(reused.requests(), 20);
    // The start check's connection, then (answers take microseconds at
    // 20/s) one or very few.
    assert!(reused.connections() <= 5, "{}", reused.connections());
    let fresh = FakeUpstream::start("fresh").await;
    let mut a = args(&fresh).to_vec();
    a.push("--no-keepalive".into());
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    load(&a, &d.0).await.expect_code(0);
    assert_eq!(fresh.requests(), 20);
    assert_eq!(
        fresh.connections(),
        21,
        "one per request and the start check"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_model_sends_back_to_back() {
    let up = FakeUpstream::builder("vu")
        .otherwise(Reply::ok().latency(Duration::from_millis(50)))
        .start()
        .await;
    let d = dir("closed");
    let run = load(&[&url(&up, "/"), "--vus", "2", "--duration", "1s"], &d.0).await;
    run.expect_code(0)
        .expect_stdout("closed model, 2 virtual users");
    // Two users, 50 ms each: about 40, never more.
    let served = up.requests();
    run.expect((4..=42).contains(&served), &format!("{served} served"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_errors_exit_2_and_an_unreachable_target_exits_1() {
    let d = dir("usage");
    let run = load(
        &[
            "http://127.0.0.1:1/",
            "--threshold",
            "http_req_duration: p(99)<<1",
        ],
        &d.0,
    )
    .await;
    run.expect_code(2)
        .expect_stderr("threshold `http_req_duration: p(99)<<1`: column 26: expected a number");
    load(&["http://127.0.0.1:1/", "--out", "xml=f"], &d.0)
        .await
        .expect_code(2)
        .expect_stderr("expected json=FILE or junit=FILE");
    load(&["ftp://127.0.0.1:1/"], &d.0).await.expect_code(2);
    load(&["http://127.0.0.1:1/", "--vus", "2", "--rate", "5"], &d.0)
        .await
        .expect_code(2);
    load(&["http://127.0.0.1:1/", "--no-such-flag"], &d.0)
        .await
        .expect_code(2);
    // Port 1 on loopback: nothing listens there.
    load(&["http://127.0.0.1:1/", "--duration", "1s"], &d.0)
        .await
        .expect_code(1)
        .expect_stderr("the run could not start: cannot connect to 127.0.0.1:1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slo_objectives_become_thresholds() {
    let up = FakeUpstream::start("slo").await;
    let d = dir("slo");
    let config = d.0.join("levee.toml");
    std::fs::write(
        &config,
        r#"
[[listeners]]
name = "public"
listen = "127.0.0.1:0"
[[clusters]]
name = "c"
endpoints = ["127.0.0.1:1"]
[[routes]]
name = "r"
cluster = "c"
[[slos]]
name = "lat"
sli = "latency"
route = "r"
objectives = [{ threshold = "2s", objective = "99%" }]
[[slos]]
name = "avail"
sli = "availability"
route = "r"
objective = "99.9%"
"#,
    )
    .unwrap();
    let run = load(
        &[
            &url(&up, "/"),
            "--rate",
            "20",
            "--duration",
            "1s",
            "--slo",
            path_str(&config),
        ],
        &d.0,
    )
    .await;
    run.expect_code(0)
        .expect_stdout("✓ http_req_duration: p(99)<2000")
        .expect_stdout("✓ http_req_failed: rate<0.001")
        .expect_stdout("from SLO lat objective");
}

/// A gateway with a TLS listener (self-signed for `localhost`, ALPN h2 and
/// http/1.1) in front of `up`; the certificate's PEM file.
async fn tls_gateway(up: &FakeUpstream, dir: &Path) -> (TestGateway, PathBuf) {
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    let cert = params.self_signed(&key).unwrap();
    let (cert_file, key_file) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_file, cert.pem()).unwrap();
    std::fs::write(&key_file, key.serialize_pem()).unwrap();
    let config = GatewayConfig::without_listeners()
        .listener(Listener::new("tls").tls(&cert_file, &key_file))
        .route(Route::new("r", "c"))
        .cluster(Cluster::new("c").endpoint(up));
    (TestGateway::start(&config.toml()).await, cert_file)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_over_tls_with_alpn_insecure_and_verified() {
    let up = FakeUpstream::start("tls").await;
    let d = dir("tls");
    let (gw, cert) = tls_gateway(&up, &d.0).await;
    let url = format!("https://localhost:{}/", gw.addr("tls").port());
    let ok = "http_req_failed: rate<0.01";
    // A self-signed certificate: --insecure accepts it, over h2.
    load(
        &[
            &url,
            "--rate",
            "20",
            "--duration",
            "1s",
            "--http2",
            "--insecure",
            "--threshold",
            ok,
        ],
        &d.0,
    )
    .await
    .expect_code(0)
    .expect_stdout("20 finished");
    // Verified against a CA bundle holding it, over HTTP/1.1.
    load_env(
        &[&url, "--rate", "20", "--duration", "1s", "--threshold", ok],
        &d.0,
        &[("SSL_CERT_FILE", path_str(&cert))],
    )
    .await
    .expect_code(0);
    // Verified against a bundle without it: every request fails to connect.
    let other = d.0.join("other.pem");
    let k = rcgen::KeyPair::generate().unwrap();
    let c = rcgen::CertificateParams::new(vec!["other".to_string()])
        .unwrap()
        .self_signed(&k)
        .unwrap();
    std::fs::write(&other, c.pem()).unwrap();
    load_env(
        &[&url, "--rate", "20", "--duration", "1s", "--threshold", ok],
        &d.0,
        &[("SSL_CERT_FILE", path_str(&other))],
    )
    .await
    .expect_code(99)
    .expect_stdout("connect: 20");
    assert_eq!(up.requests(), 40);
}
