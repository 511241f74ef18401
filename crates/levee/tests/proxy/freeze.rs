//! An endpoint that freezes (a real upstream process stopped with SIGSTOP:
//! its sockets stay open, the kernel still accepts connections, nothing
//! answers) stops getting new requests once its waiting requests say so,
//! for round robin and least request, and gets them again once it answers.

use levee_testkit::{
    eventually, Client, Cluster, Endpoint, FakeUpstream, GatewayConfig, Route, TestGateway,
};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Python's http.server in its own process, logging each request it reads
/// to a file: a real upstream that SIGSTOP can freeze.
struct PythonUpstream {
    child: Child,
    port: u16,
    log: std::path::PathBuf,
    _dir: levee_testkit::TempDir,
}

impl PythonUpstream {
    async fn start() -> Self {
        let dir = levee_testkit::TempDir::new();
        std::fs::write(dir.path.join("x"), "frozen-one").unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = dir.path.join("requests.log");
        let child = Command::new("python3")
            .args([
                "-m",
                "http.server",
                "--bind",
                "127.0.0.1",
                &port.to_string(),
            ])
            .current_dir(&dir.path)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("python3 runs (the tests need it)");
        let up = Self {
            child,
            port,
            log,
            _dir: dir,
        };
        eventually(
            Duration::from_secs(10),
            "python upstream listens",
            || async {
                tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .is_ok()
            },
        )
        .await;
        up
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig}");
    }

    /// Requests it has read so far (one log line each).
    fn requests(&self) -> usize {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("\"GET "))
            .count()
    }
}

impl Drop for PythonUpstream {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-CONT", &self.child.id().to_string()])
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn frozen_endpoint_is_avoided(balancer: &str) {
    let [a, b] = FakeUpstream::start_each(["a", "b"]).await;
    let frozen = PythonUpstream::start().await;
    let gw = TestGateway::start(
        &GatewayConfig::new()
            .route(Route::new("all", "c").timeout("5s").retry(
                r#"attempts = 3, per_try_timeout = "500ms", retry_on = ["timeout", "connect-failure", "reset"]"#,
            ))
            .cluster(
                Cluster::new("c")
                    .endpoints([a.addr(), b.addr()])
                    .endpoint(Endpoint::new(format!("127.0.0.1:{}", frozen.port)))
                    .balancer(balancer)
                    .raw(r#"stall_detection = { factor = 8, min = "20ms" }"#),
            )
            .toml(),
    )
    .await;
    let url = format!("{}/x", gw.url("public"));
    let c = Client::http1();
    // Warm up: every endpoint answers, latency is learned.
    for _ in 0..30 {
        assert_eq!(c.get(&url).await.status, 200);
    }
    let before = frozen.requests();
    assert!(before > 0, "the python upstream took its share");

    frozen.signal("-STOP");
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut loops = Vec::new();
    for _ in 0..4 {
        let (stop, ok, failed, url) = (stop.clone(), ok.clone(), failed.clone(), url.clone());
        loops.push(tokio::spawn(async move {
            let c = Client::http1();
            while !stop.load(Ordering::Relaxed) {
                let req = http::Request::get(&url).body(Default::default()).unwrap();
                match c.send(req).await {
                    Ok(r) if r.status == 200 => ok.fetch_add(1, Ordering::Relaxed),
                    _ => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    // Load while frozen, until a fair number of requests were answered.
    eventually(Duration::from_secs(30), "400 requests answered", || async {
        ok.load(Ordering::Relaxed) >= 400
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    for l in loops {
        l.await.unwrap();
    }
    let answered = ok.load(Ordering::Relaxed);
    assert_eq!(failed.load(Ordering::Relaxed), 0, "retries answer for it");

    // Thawed, it answers again.
    // Every attempt that went to the frozen endpoint timed out (or found
    // its backlog full) and was retried elsewhere. Round robin without
    // stall detection sends it a third of the attempts; here it gets a few
    // probes.
    let sent_while_frozen = gw.metric("levee_retries_total{route=\"all\"}") as u64;
    assert!(
        sent_while_frozen * 20 < answered,
        "{balancer}: {sent_while_frozen} attempts went to the frozen endpoint for {answered} answers"
    );
    frozen.signal("-CONT");
    let thawed = frozen.requests();
    for _ in 0..30 {
        assert_eq!(c.get(&url).await.status, 200);
    }
    assert!(
        frozen.requests() > thawed,
        "{balancer}: the thawed endpoint gets requests again"
    );
}

#[tokio::test]
async fn a_frozen_endpoint_is_avoided_under_round_robin() {
    frozen_endpoint_is_avoided("round_robin").await;
}

#[tokio::test]
async fn a_frozen_endpoint_is_avoided_under_least_request() {
    frozen_endpoint_is_avoided("least_request").await;
}
