//! Deadline propagation: an incoming `grpc-timeout` or `levee-deadline-ms`
//! shortens the route's timeout, the remaining time travels upstream, and a
//! request whose deadline leaves no time is answered 504 at once.

use levee_testkit::{Client, Cluster, FakeUpstream, GatewayConfig, Reply, Route, TestGateway};
use std::net::SocketAddr;
use std::time::Duration;

/// `route` (to cluster `c`) with a 10 s timeout, and cluster `c` at `upstream`.
fn config(upstream: SocketAddr, route: Route) -> String {
    GatewayConfig::new()
        .route(route.timeout("10s"))
        .cluster(Cluster::new("c").endpoint(upstream))
        .toml()
}

fn millis(reply: &levee_testkit::ClientReply, header: &str) -> u64 {
    reply.json()["headers"][header]
        .as_str()
        .unwrap_or_else(|| panic!("{header} missing: {}", reply.body))
        .parse()
        .unwrap()
}

#[tokio::test]
async fn an_expired_deadline_is_answered_at_once() {
    let up = FakeUpstream::start("u").await;
    let gw = TestGateway::start(&config(up.addr(), Route::new("r", "c"))).await;
    let r = Client::http1()
        .get_with(&format!("{}/", gw.url("public")), &[("grpc-timeout", "1m")])
        .await;
    assert_eq!(r.status, 504);
    assert_eq!(r.header("levee-error"), Some("deadline_exceeded"));
    assert_eq!(up.requests(), 0, "no attempt starts without time for it");
}

#[tokio::test]
async fn the_remaining_time_travels_upstream() {
    let up = FakeUpstream::builder("echo")
        .otherwise(Reply::echo())
        .start()
        .await;
    let gw = TestGateway::start(&config(up.addr(), Route::new("r", "c"))).await;
    let c = Client::http1();
    let url = format!("{}/", gw.url("public"));
    // Without a caller deadline: the route's 10 s.
    let r = c.get(&url).await;
    let left = millis(&r, "levee-deadline-ms");
    assert!(left <= 10_000 && left > 9_000, "{left}");
    // A caller's deadline shortens it.
    let r = c.get_with(&url, &[("levee-deadline-ms", "800")]).await;
    let left = millis(&r, "levee-deadline-ms");
    assert!(left <= 800 && left > 0, "{left}");
    // gRPC callers get grpc-timeout rewritten too.
    let r = c.get_with(&url, &[("grpc-timeout", "2S")]).await;
    let grpc = r.json()["headers"]["grpc-timeout"]
        .as_str()
        .unwrap()
        .to_string();
    let parsed = levee_core::deadline::parse_grpc_timeout(&grpc).unwrap();
    assert!(
        parsed <= Duration::from_secs(2) && parsed > Duration::ZERO,
        "{grpc}"
    );
}

#[tokio::test]
async fn a_short_caller_deadline_cuts_a_slow_upstream() {
    let slow = FakeUpstream::builder("slow")
        .otherwise(Reply::ok().latency(Duration::from_secs(3)))
        .start()
        .await;
    let gw = TestGateway::start(&config(slow.addr(), Route::new("r", "c"))).await;
    let r = Client::http1()
        .get_with(
            &format!("{}/", gw.url("public")),
            &[("levee-deadline-ms", "150")],
        )
        .await;
    assert_eq!(
        r.status, 504,
        "the caller's 150 ms, not the route's 10 s: {r:?}"
    );
    assert_eq!(r.header("levee-error"), Some("upstream_timeout"));
}

#[tokio::test]
async fn deadlines_shrink_across_two_levee_hops() {
    let echo = FakeUpstream::builder("echo")
        .otherwise(Reply::echo())
        .start()
        .await;
    let inner = TestGateway::start(&config(echo.addr(), Route::new("r", "c"))).await;
    let outer = TestGateway::start(&config(inner.addr("public"), Route::new("r", "c"))).await;
    let r = Client::http1()
        .get_with(
            &format!("{}/", outer.url("public")),
            &[("levee-deadline-ms", "1000")],
        )
        .await;
    assert_eq!(r.status, 200);
    let left = millis(&r, "levee-deadline-ms");
    assert!(left <= 1000 && left > 0, "{left}");
}

#[tokio::test]
async fn routes_may_ignore_caller_deadlines() {
    let up = FakeUpstream::builder("echo")
        .otherwise(Reply::echo())
        .start()
        .await;
    let gw = TestGateway::start(&config(
        up.addr(),
        Route::new("r", "c").raw("honor_deadlines = false"),
    ))
    .await;
    let r = Client::http1()
        .get_with(
            &format!("{}/", gw.url("public")),
            &[("levee-deadline-ms", "1")],
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json()["headers"]["levee-deadline-ms"],
        "1",
        "passed through untouched"
    );
}
