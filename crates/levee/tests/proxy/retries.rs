//! Retries: only listed failures, only when safe, to another endpoint,
//! within the per-try timeout, the deadline and the retry budget.

use levee_testkit::{Client, Cluster, FakeUpstream, GatewayConfig, Reply, Route, TestGateway};
use std::net::SocketAddr;

/// Route `r` with `retry` (an inline table's keys) to cluster `c` over
/// `endpoints`.
fn config(endpoints: &[SocketAddr], retry: &str) -> String {
    GatewayConfig::new()
        .route(Route::new("r", "c").retry(retry))
        .cluster(Cluster::new("c").endpoints(endpoints))
        .toml()
}

#[tokio::test]
async fn a_dead_endpoint_costs_no_failed_request() {
    let [a, b] = FakeUpstream::start_each(["a", "b"]).await;
    let dead = crate::closed_port().await;
    let gw = TestGateway::start(&config(
        &[a.addr(), dead, b.addr()],
        "attempts = 3, retry_on = [\"connect-failure\"]",
    ))
    .await;
    let c = Client::http1();
    for _ in 0..60 {
        let r = c.get(&format!("{}/x", gw.url("public"))).await;
        assert_eq!(r.status, 200, "{r:?}");
    }
    assert_eq!(a.requests() + b.requests(), 60);
    assert!(
        gw.metric("levee_retries_total{route=\"r\"}") >= 15.0,
        "a third of first picks hit the dead endpoint"
    );
}

#[tokio::test]
async fn non_idempotent_requests_are_retried_only_when_nothing_was_sent() {
    let failing = FakeUpstream::builder("failing")
        .otherwise(Reply::status(503))
        .start()
        .await;
    let gw = TestGateway::start(&config(
        &[failing.addr()],
        "attempts = 3, retry_on = [\"gateway-error\"]",
    ))
    .await;
    let post = http::Request::post(format!("{}/orders", gw.url("public")))
        .body(http_body_util::Full::new(bytes::Bytes::from_static(b"{}")))
        .unwrap();
    let r = Client::http1().send(post).await.unwrap();
    assert_eq!(r.status, 503);
    assert_eq!(
        failing.requests(),
        1,
        "a POST that reached the upstream is not repeated"
    );

    // Nothing sent: the POST goes to the next endpoint, body intact.
    let echo = FakeUpstream::builder("echo")
        .otherwise(Reply::echo())
        .start()
        .await;
    let dead = crate::closed_port().await;
    let gw = TestGateway::start(&config(
        &[dead, echo.addr()],
        "attempts = 2, retry_on = [\"connect-failure\"]",
    ))
    .await;
    for _ in 0..4 {
        let post = http::Request::post(format!("{}/orders", gw.url("public")))
            .body(http_body_util::Full::new(bytes::Bytes::from_static(
                b"{\"qty\":3}",
            )))
            .unwrap();
        let r = Client::http1().send(post).await.unwrap();
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.json()["body_len"], 9);
    }
}

#[tokio::test]
async fn listed_statuses_are_retried_for_idempotent_requests() {
    let conflict = FakeUpstream::builder("busy")
        .otherwise(Reply::status(409))
        .start()
        .await;
    let ok = FakeUpstream::start("ok").await;
    let gw = TestGateway::start(&config(
        &[conflict.addr(), ok.addr()],
        "attempts = 2, retry_on = [\"status\"], statuses = [409]",
    ))
    .await;
    let c = Client::http1();
    for _ in 0..6 {
        let r = c
            .send(
                http::Request::put(format!("{}/doc", gw.url("public")))
                    .body(http_body_util::Full::new(bytes::Bytes::from_static(b"v2")))
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(r.status, 200, "PUT is idempotent: {r:?}");
    }
}

/// A chunked body (no declared length) streams to the first attempt at
/// once; because it ended within `buffer_bytes`, the retry sends it again.
/// One over the buffer is not retried.
#[tokio::test]
async fn chunked_bodies_within_the_buffer_are_replayed() {
    // Reads the whole body before answering 503, as a real service would.
    let busy = FakeUpstream::builder("busy")
        .otherwise(Reply::echo().answering(503))
        .start()
        .await;
    let echo = FakeUpstream::builder("echo")
        .otherwise(Reply::echo_body())
        .start()
        .await;
    let gw = TestGateway::start(&config(
        &[busy.addr(), echo.addr()],
        "attempts = 2, retry_on = [\"5xx\"], buffer_bytes = \"16B\"",
    ))
    .await;
    let addr = gw.addr("public");
    for _ in 0..6 {
        let small = raw_put(addr, &["hello ", "world"]).await;
        assert!(small.starts_with("HTTP/1.1 200"), "{small}");
        assert!(
            small.contains("hello ") && small.contains("world"),
            "{small}"
        );
    }
    assert!(
        busy.requests() >= 1,
        "some first attempts went to the 503 endpoint"
    );
    let before = echo.requests();
    let mut refused = 0;
    for _ in 0..6 {
        let big = raw_put(addr, &["0123456789", "0123456789"]).await;
        if big.starts_with("HTTP/1.1 503") {
            refused += 1;
        } else {
            assert_eq!(big.matches("0123456789").count(), 2, "{big}");
        }
    }
    assert!(
        refused >= 1,
        "a 20-byte body over a 16-byte buffer is not replayed"
    );
    assert_eq!(echo.requests() - before, 6 - refused);
}

async fn raw_put(addr: SocketAddr, chunks: &[&str]) -> String {
    let mut req = String::from(
        "PUT /doc HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n",
    );
    for c in chunks {
        req.push_str(&format!("{:x}\r\n{c}\r\n", c.len()));
    }
    req.push_str("0\r\n\r\n");
    crate::raw_exchange(addr, req.as_bytes(), std::time::Duration::from_secs(5)).await
}
