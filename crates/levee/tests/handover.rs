//! Zero-downtime handover through the real binary: `levee run --takeover`
//! replaces a running Levee under steady load (new connections and
//! keep-alive ones) with no failed request and no refused connection, and
//! the SLO history counts every request once; a takeover that fails leaves
//! the old process serving.

mod common;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use levee_testkit::{
    eventually, AdminApi, Cluster, FakeUpstream, GatewayConfig, Listener, Route, Slo,
};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A `levee` process whose output lines are collected.
struct Levee(common::Spawned);

impl Levee {
    fn start(args: &[&str], cwd: &Path) -> Levee {
        Levee(common::Spawned::levee(args, cwd))
    }

    /// The first line (from now on) containing `needle`, within 30 s.
    fn wait_for(&mut self, needle: &str) -> String {
        let mut lines = self.0.lines_until(needle, Duration::from_secs(30));
        lines.pop().expect("the line found")
    }

    fn output(&mut self) -> String {
        self.0.output()
    }

    /// The exit status, within 30 s.
    fn wait_exit(&mut self) -> std::process::ExitStatus {
        let deadline = levee_core::time::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.0.process().try_wait().unwrap() {
                return status;
            }
            assert!(
                levee_core::time::now() < deadline,
                "levee did not exit:\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn is_running(&mut self) -> bool {
        self.0.process().try_wait().unwrap().is_none()
    }

    fn terminate(&mut self) {
        let status = std::process::Command::new("kill")
            .args(["-TERM", &self.0.process().id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }
}

/// `ADDR` from a log line with `address=ADDR`.
fn address_in(line: &str) -> SocketAddr {
    let at = line.find("address=").expect("address field") + "address=".len();
    line[at..]
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// A config answering with `x-served-by: MARKER`, an availability SLO on
/// its route, and the handover socket in the config's directory.
/// `extra` listeners, if any, come after `public`.
fn config(upstream: SocketAddr, marker: &str, extra: Option<Listener>) -> String {
    let config = GatewayConfig::new()
        .runtime("drain_timeout = \"10s\"\nhandover_socket = \"handover.sock\"")
        .route(Route::new("r", "c").response_header("x-served-by", marker))
        .cluster(Cluster::new("c").endpoint(upstream))
        .slo(
            Slo::availability("r-availability", "r", "99%")
                .period("1h")
                .alerting("page = []"),
        )
        .table("alerting", "evaluate_every = \"1s\"\nbucket = \"1s\"");
    match extra {
        Some(listener) => config.listener(listener),
        None => config,
    }
    .toml()
}

/// What the client load saw.
#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    failed: AtomicU64,
    refused: AtomicU64,
    by_a: AtomicU64,
    by_b: AtomicU64,
    errors: std::sync::Mutex<Vec<String>>,
}

impl Tally {
    fn record(&self, result: Result<http::Response<Bytes>, (bool, String)>) {
        match result {
            Ok(resp) if resp.status() == 200 => {
                self.ok.fetch_add(1, Ordering::Relaxed);
                match resp.headers().get("x-served-by").map(|v| v.as_bytes()) {
                    Some(b"A") => self.by_a.fetch_add(1, Ordering::Relaxed),
                    Some(b"B") => self.by_b.fetch_add(1, Ordering::Relaxed),
                    _ => self.failed.fetch_add(1, Ordering::Relaxed),
                };
            }
            Ok(resp) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                self.errors
                    .lock()
                    .unwrap()
                    .push(format!("status {}", resp.status()));
            }
            Err((refused, e)) => {
                let counter = if refused { &self.refused } else { &self.failed };
                counter.fetch_add(1, Ordering::Relaxed);
                self.errors.lock().unwrap().push(e);
            }
        }
    }
}

/// One request on a new connection; `Err((refused, why))`.
async fn on_new_connection(addr: SocketAddr) -> Result<http::Response<Bytes>, (bool, String)> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| (true, format!("connect: {e}")))?;
    let (mut send, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| (false, format!("handshake: {e}")))?;
    tokio::spawn(conn);
    let req = http::Request::get(format!("http://{addr}/"))
        .header("host", addr.to_string())
        .header("connection", "close")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = send
        .send_request(req)
        .await
        .map_err(|e| (false, format!("new connection: {e}")))?;
    let (parts, body) = resp.into_parts();
    let body = body
        .collect()
        .await
        .map_err(|e| (false, format!("body: {e}")))?;
    Ok(http::Response::from_parts(parts, body.to_bytes()))
}

type PooledClient = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    Empty<Bytes>,
>;

/// One request on a pooled keep-alive connection (hyper-util's client).
async fn on_keep_alive(
    client: &PooledClient,
    addr: SocketAddr,
) -> Result<http::Response<Bytes>, (bool, String)> {
    let req = http::Request::get(format!("http://{addr}/"))
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = client
        .request(req)
        .await
        .map_err(|e| (e.is_connect(), format!("keep-alive: {e:?}")))?;
    let (parts, body) = resp.into_parts();
    let body = body
        .collect()
        .await
        .map_err(|e| (false, format!("body: {e}")))?;
    Ok(http::Response::from_parts(parts, body.to_bytes()))
}

/// Two loops on new connections and two on keep-alive ones, until `stop`.
fn start_load(
    addr: SocketAddr,
    tally: Arc<Tally>,
    stop: Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    for i in 0..4 {
        let (tally, stop) = (tally.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let client: PooledClient =
                hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                    .build_http();
            while !stop.load(Ordering::Relaxed) {
                let result = if i % 2 == 0 {
                    on_new_connection(addr).await
                } else {
                    on_keep_alive(&client, addr).await
                };
                tally.record(result);
                // Steady, not flat out: two cores are shared.
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }));
    }
    tasks
}

struct Scene {
    _upstream: FakeUpstream,
    upstream: SocketAddr,
    dir: PathBuf,
    path: PathBuf,
}

async fn scene(test: &str) -> Scene {
    let upstream = FakeUpstream::start("u").await;
    let dir = common::scratch_dir("handover", test);
    let path = dir.join("levee.toml");
    Scene {
        upstream: upstream.addr(),
        _upstream: upstream,
        dir,
        path,
    }
}

impl Scene {
    fn write(&self, marker: &str, extra: Option<Listener>) {
        std::fs::write(&self.path, config(self.upstream, marker, extra)).unwrap();
    }

    fn run(&self, takeover: bool) -> Levee {
        let path = self.path.to_str().unwrap();
        let mut args = vec!["--log-format", "text", "run", "-c", path];
        if takeover {
            args.push("--takeover");
        }
        Levee::start(&args, &self.dir)
    }

    /// Starts A and returns it with its listener and admin addresses.
    fn run_a(&self) -> (Levee, SocketAddr, SocketAddr) {
        self.write("A", None);
        let mut a = self.run(false);
        let public = address_in(&a.wait_for("listener=public"));
        let admin = address_in(&a.wait_for("admin API listening"));
        a.wait_for("handover socket listening");
        (a, public, admin)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn takeover_under_load_fails_no_request_and_refuses_no_connection() {
    let s = scene("load").await;
    let (mut a, public, admin) = s.run_a();

    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let load = start_load(public, tally.clone(), stop.clone());
    eventually(Duration::from_secs(20), "A serves the load", || {
        let t = tally.clone();
        async move { t.by_a.load(Ordering::Relaxed) >= 100 }
    })
    .await;

    s.write("B", None);
    let mut b = s.run(true);
    b.wait_for("received the running gateway's sockets");
    let a_status = a.wait_exit();
    assert_eq!(a_status.code(), Some(0), "A exits 0:\n{}", a.output());
    b.wait_for("SLO history loaded after the handover");
    let served_by_b = tally.by_b.load(Ordering::Relaxed);
    eventually(Duration::from_secs(20), "B serves the load", || {
        let t = tally.clone();
        async move { t.by_b.load(Ordering::Relaxed) >= served_by_b + 100 }
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.unwrap();
    }

    let errors = tally.errors.lock().unwrap().clone();
    assert_eq!(
        tally.refused.load(Ordering::Relaxed),
        0,
        "refused connections: {errors:?}"
    );
    assert_eq!(
        tally.failed.load(Ordering::Relaxed),
        0,
        "failed requests: {errors:?}"
    );
    let (by_a, by_b) = (
        tally.by_a.load(Ordering::Relaxed),
        tally.by_b.load(Ordering::Relaxed),
    );
    assert!(by_a > 0 && by_b > 0, "both served: A {by_a}, B {by_b}");

    // B answers the admin API on A's port, and its SLO history holds every
    // request once: A's last flush plus what B counted.
    let health = levee_testkit::Client::http1()
        .get(&format!("http://{admin}/healthz"))
        .await;
    assert_eq!(health.status, 200);
    let total = by_a + by_b;
    let api = AdminApi::at(admin);
    eventually(
        Duration::from_secs(20),
        "the SLO history counts every request once",
        || {
            let api = api.clone();
            async move {
                let slos = api.slos().await;
                slos.slos
                    .iter()
                    .find(|x| x.slo == "r-availability")
                    .map(|x| x.events)
                    == Some(total)
            }
        },
    )
    .await;

    b.terminate();
    assert_eq!(b.wait_exit().code(), Some(0), "{}", b.output());
    assert!(
        !s.dir.join("handover.sock").exists(),
        "the last process removes the handover socket"
    );
}

#[tokio::test]
async fn failed_takeovers_leave_the_old_process_serving() {
    let s = scene("failed").await;
    let (mut a, public, _admin) = s.run_a();
    let client = levee_testkit::Client::http1();
    let url = format!("http://{public}/");

    // An invalid config: B exits 1 with the diagnostic, before asking.
    std::fs::write(&s.path, "[[listeners]]\nname = 1\n").unwrap();
    let run = common::levee(
        &["run", "-c", s.path.to_str().unwrap(), "--takeover"],
        &s.dir,
    );
    run.expect_code(1).expect_stderr("listeners[0].name");
    assert_eq!(client.get(&url).await.header("x-served-by"), Some("A"));

    // A new listener whose port is taken: B gets the sockets, cannot bind,
    // exits 1; A never hears `ready` and keeps serving.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let extra = Listener::new("second").listen(taken.local_addr().unwrap());
    s.write("B", Some(extra));
    let mut b = s.run(true);
    b.wait_for("received the running gateway's sockets");
    let status = b.wait_exit();
    assert_eq!(status.code(), Some(1), "{}", b.output());
    assert!(b.output().contains("cannot bind"), "{}", b.output());
    a.wait_for("handover failed; this process keeps serving");
    assert!(a.is_running());
    for _ in 0..20 {
        let r = client.get(&url).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("x-served-by"), Some("A"));
    }

    // The control socket still works: a good takeover succeeds.
    s.write("B", None);
    let mut b = s.run(true);
    b.wait_for("SLO history loaded after the handover");
    assert_eq!(a.wait_exit().code(), Some(0), "{}", a.output());
    // A new client: the old one's idle connection went with A.
    let fresh = levee_testkit::Client::http1();
    assert_eq!(fresh.get(&url).await.header("x-served-by"), Some("B"));
}

#[test]
fn takeover_without_a_running_levee_exits_1() {
    let dir = common::scratch_dir("handover", "none");
    let path = dir.join("levee.toml");
    std::fs::write(&path, config("127.0.0.1:9".parse().unwrap(), "B", None)).unwrap();
    common::levee(&["run", "-c", path.to_str().unwrap(), "--takeover"], &dir)
        .expect_code(1)
        .expect_stderr("no running Levee to take over");
}
