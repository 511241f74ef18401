//! Paused-time versions of the cluster bulkhead tests in
//! `tests/proxy/resilience.rs`: requests over `max_requests` are shed at
//! once, pending ones wait for a slot in a bounded queue, and
//! `max_connections` caps the connections the transport opens. The slow
//! upstream takes 2 s of virtual time, so every wait is exact.

use crate::{config, gateway, get, settle, spawn_get};
use levee_testkit::{ClientReply, ScriptedUpstream, Step, TestGateway};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

const SLOW: Duration = Duration::from_secs(2);

/// An endpoint whose `/slow` takes [`SLOW`] and whose other paths answer at once.
fn slow_and_fast(up: &ScriptedUpstream) -> SocketAddr {
    let u = up.endpoint("u");
    up.script_path(u, "/slow", [Step::ok().after(SLOW)]);
    u
}

async fn limited(up: &ScriptedUpstream, u: SocketAddr, limits: &str) -> Arc<TestGateway> {
    Arc::new(gateway(up, &config(&[u], "", &format!("limits = {{ {limits} }}"))).await)
}

fn errors(gw: &TestGateway, reason: &str) -> f64 {
    gw.metric(&format!(
        "levee_errors_total{{cluster=\"c\",reason=\"{reason}\"}}"
    ))
}

/// Asserts that the gateway itself shed `r` with `reason`.
fn assert_shed(r: &ClientReply, reason: &str) {
    assert_eq!(r.status, 503, "{r:?}");
    assert_eq!(r.header("levee-error"), Some(reason), "{r:?}");
    assert_eq!(r.header("levee-overloaded"), Some("true"), "{r:?}");
}

async fn bulkheads(gw: &TestGateway) -> serde_json::Value {
    crate::cluster(gw).await["bulkheads"].clone()
}

#[tokio::test(start_paused = true)]
async fn requests_beyond_max_requests_are_shed_at_once() {
    let up = ScriptedUpstream::new();
    let u = slow_and_fast(&up);
    let gw = limited(&up, u, "max_requests = 2, max_pending = 0").await;
    let slow = [spawn_get(&gw, "/slow").await, spawn_get(&gw, "/slow").await];
    settle("two requests in flight", || up.requests(u) == 2).await;
    assert_eq!(bulkheads(&gw).await["requests_in_flight"], 2);

    for _ in 0..3 {
        let (r, took) = get(&gw, "/fast").await;
        assert_shed(&r, "overflow_requests");
        assert_eq!(took, Duration::ZERO, "shed at once");
    }
    for h in slow {
        let (r, took) = h.await.unwrap();
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(took, SLOW);
    }
    assert_eq!(
        up.requests(u),
        2,
        "shed requests never reached the upstream"
    );
    assert_eq!(errors(&gw, "overflow_requests"), 3.0);
    assert_eq!(bulkheads(&gw).await["requests_in_flight"], 0);
    let (r, _) = get(&gw, "/fast").await;
    assert_eq!(r.status, 200, "room again: {r:?}");
}

#[tokio::test(start_paused = true)]
async fn pending_requests_wait_for_a_slot_and_the_queue_is_bounded() {
    let up = ScriptedUpstream::new();
    let u = slow_and_fast(&up);
    let gw = limited(&up, u, "max_requests = 2, max_pending = 2").await;
    let pending = "levee_cluster_pending_requests{cluster=\"c\"}";
    let slow = [spawn_get(&gw, "/slow").await, spawn_get(&gw, "/slow").await];
    settle("two requests in flight", || up.requests_to(u, "/slow") == 2).await;
    let queued = [spawn_get(&gw, "/fast").await, spawn_get(&gw, "/fast").await];
    settle("two requests queued", || gw.metric(pending) == 2.0).await;
    assert_eq!(bulkheads(&gw).await["pending"], 2);
    // The queue is full: the next one is shed.
    assert_shed(&get(&gw, "/fast").await.0, "overflow_requests");
    assert_eq!(up.requests_to(u, "/fast"), 0, "queued requests wait");

    for h in slow {
        assert_eq!(h.await.unwrap().0.status, 200);
    }
    for h in queued {
        let (r, took) = h.await.unwrap();
        assert_eq!(r.status, 200, "a queued request is served: {r:?}");
        assert_eq!(r.body, "u");
        assert_eq!(took, SLOW, "served the moment a slot freed");
    }
    assert_eq!(up.requests_to(u, "/fast"), 2);
    assert_eq!(gw.metric(pending), 0.0);
    assert_eq!(errors(&gw, "overflow_requests"), 1.0);
}

#[tokio::test(start_paused = true)]
async fn max_connections_caps_upstream_connections() {
    let up = ScriptedUpstream::new();
    let u = slow_and_fast(&up);
    let gw = limited(&up, u, "max_connections = 1").await;
    let slow = spawn_get(&gw, "/slow").await;
    settle("one request in flight", || up.requests(u) == 1).await;
    // HTTP/1.1: the one connection is busy and no other may be opened.
    assert_shed(&get(&gw, "/fast").await.0, "overflow_connections");
    assert_eq!(bulkheads(&gw).await["connections"], 1);
    assert_eq!(
        gw.metric("levee_cluster_upstream_connections{cluster=\"c\"}"),
        1.0
    );
    assert_eq!(slow.await.unwrap().0.status, 200);

    // Once idle, the connection is reused.
    assert_eq!(
        gw.admin_api().endpoint(u).await.unwrap().idle_connections,
        1
    );
    for _ in 0..3 {
        let (r, _) = get(&gw, "/fast").await;
        assert_eq!(r.status, 200, "{r:?}");
    }
    assert_eq!(up.connects(u), 1, "never more than one connection");
    assert_eq!(up.requests(u), 4);
    assert_eq!(errors(&gw, "overflow_connections"), 1.0);
}

/// A fixed response for what the cluster cannot answer.
const STATIC: &str = "[routes.fallback]\nresponse = { status = 503, headers = { \"retry-after\" = \"5\", \"content-type\" = \"application/json\" }, body = \"{\\\"degraded\\\":true}\" }";

#[tokio::test(start_paused = true)]
async fn a_request_shed_by_a_bulkhead_gets_the_static_response() {
    let up = ScriptedUpstream::new();
    let u = slow_and_fast(&up);
    let gw = Arc::new(
        gateway(
            &up,
            &config(
                &[u],
                STATIC,
                "limits = { max_requests = 1, max_pending = 0 }",
            ),
        )
        .await,
    );
    let slow = spawn_get(&gw, "/slow").await;
    settle("the only slot is taken", || up.requests_to(u, "/slow") == 1).await;
    let (r, took) = get(&gw, "/fast").await;
    assert_eq!(r.status, 503, "{r:?}");
    assert_eq!(r.body, "{\"degraded\":true}", "{r:?}");
    assert_eq!(r.header("levee-degraded"), Some("static"), "{r:?}");
    assert_eq!(r.header("retry-after"), Some("5"), "{r:?}");
    assert_eq!(r.header("content-type"), Some("application/json"), "{r:?}");
    assert_eq!(r.header("levee-error"), None, "{r:?}");
    assert_eq!(r.header("levee-overloaded"), None, "{r:?}");
    assert!(took.is_zero(), "answered at once: {took:?}");
    assert_eq!(
        up.requests_to(u, "/fast"),
        0,
        "the shed request went nowhere"
    );
    let (r, took) = slow.await.unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("levee-degraded"), None, "{r:?}");
    assert_eq!(took, SLOW);
    assert_eq!(
        gw.metric("levee_fallbacks_total{route=\"r\",kind=\"static\"}"),
        1.0
    );
}

/// From `tests/proxy/ratelimit.rs`: on the virtual clock the count is exact.
#[tokio::test(start_paused = true)]
async fn admitted_requests_follow_the_configured_rate() {
    let up = ScriptedUpstream::new();
    let u = up.endpoint("u");
    let gw = gateway(
        &up,
        &config(
            &[u],
            "[[routes.rate_limits]]\nname = \"r20\"\nrate = 20\nburst = 1",
            "",
        ),
    )
    .await;
    let c = levee_testkit::Client::http1();
    let url = format!("{}/x", gw.url("public"));
    let start = crate::now();
    let mut admitted = 0;
    while crate::now() - start < Duration::from_millis(1500) {
        let r = c.get(&url).await;
        if r.status == 200 {
            admitted += 1;
        } else {
            assert_eq!(r.status, 429, "{r:?}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // One at once (the burst), then one every 50 ms for 1.5 s: at 0, 50,
    // ..., 1450 ms.
    assert_eq!(admitted, 30, "exactly the rate over 1.5 s");
    assert_eq!(up.requests(u), admitted);
}
