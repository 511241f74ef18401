//! End-to-end tests on paused time: the gateway in process, clients over
//! real loopback sockets, upstreams in memory ([`ScriptedUpstream`] behind
//! the transport seam). Every test runs on a current-thread runtime with
//! the clock paused; tokio advances it whenever nothing is ready to run, so
//! a test that waits for a 10 s window takes milliseconds of wall time and
//! timing assertions are on virtual time, exact rather than generous.
//!
//! Two rules keep them exact:
//! - Loopback I/O is ready as soon as it is written, so the clock does not
//!   move while a client's request is on its way
//!   (`paused_time_holds_while_a_request_is_in_flight` checks this first;
//!   the whole binary passed 80 runs, four at a time, on two loaded cores).
//! - To wait for something that takes no time (a request reaching the
//!   upstream, a queue filling), [`settle`] yields without sleeping: a
//!   poll loop that sleeps lets the clock jump to the next timer each time
//!   the runtime is idle. Sleep only to let virtual time pass on purpose.
//!
//! The SLO store writes on a blocking thread; tokio does not auto-advance
//! while a `spawn_blocking` task runs, so it works here unchanged.

mod attempts;
mod breakers;
mod bulkheads;
mod converted;
mod faults;
mod history;
mod incidents;
mod queue;
mod slo;

use levee_testkit::{Client, ClientReply, ScriptedUpstream, TestGateway};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Admin on a free port, access log off, no file watch.
pub const PREAMBLE: &str =
    "[admin]\nlisten = \"127.0.0.1:0\"\n[runtime]\naccess_log = false\nwatch_config = false\n";

/// A listener named `public` on a free port with default limits.
pub const LISTENER: &str = "[[listeners]]\nname = \"public\"\nlisten = \"127.0.0.1:0\"\n";

/// Endpoint addresses as a TOML array's items.
pub fn quoted(endpoints: &[SocketAddr]) -> String {
    let eps: Vec<String> = endpoints.iter().map(|a| format!("\"{a}\"")).collect();
    eps.join(", ")
}

/// One route `r` to cluster `c` over `endpoints`, with `route_extra` TOML
/// after the route's keys and `cluster_extra` after the cluster's.
pub fn config(endpoints: &[SocketAddr], route_extra: &str, cluster_extra: &str) -> String {
    format!(
        "{PREAMBLE}{LISTENER}[[routes]]\nname = \"r\"\ncluster = \"c\"\n{route_extra}\n[[clusters]]\nname = \"c\"\nendpoints = [{}]\n{cluster_extra}\n",
        quoted(endpoints)
    )
}

/// A gateway whose clusters reach `up`'s endpoints.
pub async fn gateway(up: &ScriptedUpstream, toml: &str) -> TestGateway {
    TestGateway::start_with_connector(toml, up.connector()).await
}

/// Cluster `c` (the first) as `GET /api/v1/clusters` shows it.
pub async fn cluster(gw: &TestGateway) -> serde_json::Value {
    let v = Client::http1()
        .get(&format!("{}/api/v1/clusters", gw.admin_url()))
        .await
        .json();
    v["clusters"][0].clone()
}

/// Virtual time now.
pub fn now() -> levee_core::time::Instant {
    levee_core::time::now()
}

/// GET `path` on the `public` listener, with the virtual time it took.
pub async fn get(gw: &TestGateway, path: &str) -> (ClientReply, Duration) {
    let started = now();
    let r = Client::http1()
        .get(&format!("{}{path}", gw.url("public")))
        .await;
    (r, now() - started)
}

/// Starts a GET of `path` in the background, with its own connection.
pub async fn spawn_get(
    gw: &Arc<TestGateway>,
    path: &'static str,
) -> tokio::task::JoinHandle<(ClientReply, Duration)> {
    let gw = gw.clone();
    tokio::spawn(async move { get(&gw, path).await })
}

/// Lets other tasks run (without moving the clock) until `done` holds.
pub async fn settle(what: &str, done: impl Fn() -> bool) {
    for _ in 0..100_000 {
        if done() {
            return;
        }
        tokio::task::yield_now().await;
    }
    panic!("never happened: {what}");
}

#[tokio::test(start_paused = true)]
async fn paused_time_holds_while_a_request_is_in_flight() {
    let up = ScriptedUpstream::new();
    let a = up.endpoint("a");
    // Background loops with timers of their own, which must not fire early.
    let gw = gateway(
        &up,
        &config(
            &[a],
            "",
            "health_check = { path = \"/healthz\", interval = \"1s\", jitter = \"10ms\", timeout = \"500ms\" }",
        ),
    )
    .await;
    let started = now();
    // Wall time is this test's subject, so it reads the real clock.
    #[allow(clippy::disallowed_methods)]
    let wall = std::time::Instant::now();
    let c = Client::http1();
    for _ in 0..50 {
        let r = c.get(&format!("{}/x", gw.url("public"))).await;
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.body, "a");
    }
    assert_eq!(
        now() - started,
        Duration::ZERO,
        "no virtual time passed while requests were in flight"
    );
    // A scripted delay costs virtual time, not wall time.
    up.script_path(
        a,
        "/slow",
        [levee_testkit::Step::ok().after(Duration::from_secs(20))],
    );
    let (r, took) = get(&gw, "/slow").await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(took, Duration::from_secs(20));
    // Had the delay been real, at least its 20 s would have passed.
    #[allow(clippy::disallowed_methods)]
    let wall_time = wall.elapsed();
    assert!(wall_time < Duration::from_secs(20), "{wall_time:?}");
}
