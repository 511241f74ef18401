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
    let v = levee_testkit::Client::http1()
        .get(&format!("{}/api/v1/clusters", gw.admin_url()))
        .await
        .json();
    v["clusters"][0]["bulkheads"].clone()
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
    assert_eq!(gw.endpoint(u).await.unwrap()["idle_connections"], 1);
    for _ in 0..3 {
        let (r, _) = get(&gw, "/fast").await;
        assert_eq!(r.status, 200, "{r:?}");
    }
    assert_eq!(up.connects(u), 1, "never more than one connection");
    assert_eq!(up.requests(u), 4);
    assert_eq!(errors(&gw, "overflow_connections"), 1.0);
}
