//! Upstream failures become well-formed gateway answers with a reason header,
//! a JSON body and a metric, and nothing hangs.

use crate::single_cluster;
use bytes::Bytes;
use http_body_util::BodyExt;
use levee_testkit::{Client, Cluster, FakeUpstream, GatewayConfig, Reply, Route, TestGateway};
use std::time::Duration;

fn assert_gateway_error(r: &levee_testkit::ClientReply, status: u16, reason: &str) {
    assert_eq!(r.status, status, "{r:?}");
    assert_eq!(r.header("levee-error"), Some(reason), "{r:?}");
    let json = r.json();
    assert_eq!(json["error"], reason);
    assert_eq!(json["status"], status);
    assert!(r.header("x-request-id").is_some());
    // What Levee writes itself names no address, path or library error.
    let message = json["message"].as_str().unwrap_or_default();
    for internal in ["127.0.0.1", "os error", "/tmp", "hyper", "connect:"] {
        assert!(!message.contains(internal), "{internal} leaked: {message}");
    }
}

#[tokio::test]
async fn refused_connection_is_503_connect_refused() {
    let gw = TestGateway::start(&single_cluster(&[crate::closed_port().await], "")).await;
    let r = Client::http1().get(&format!("{}/", gw.url("public"))).await;
    assert_gateway_error(&r, 503, "connect_refused");
    assert_eq!(
        gw.metric("levee_errors_total{cluster=\"c\",reason=\"connect_refused\"}"),
        1.0
    );
    assert_eq!(
        gw.metric("levee_requests_total{route=\"all\",cluster=\"c\",code=\"5xx\"}"),
        1.0
    );
}

#[tokio::test]
async fn silent_upstream_is_504_upstream_timeout() {
    let up = FakeUpstream::builder("u")
        .otherwise(Reply::hang())
        .start()
        .await;
    let gw = TestGateway::start(&single_cluster(&[up.addr()], "timeout = \"200ms\"")).await;
    let r = Client::http1().get(&format!("{}/", gw.url("public"))).await;
    assert_gateway_error(&r, 504, "upstream_timeout");
    assert_eq!(
        gw.metric("levee_errors_total{cluster=\"c\",reason=\"upstream_timeout\"}"),
        1.0
    );
}

#[tokio::test]
async fn route_timeout_overrides_cluster_timeout() {
    let up = FakeUpstream::builder("u")
        .otherwise(Reply::ok().latency(Duration::from_millis(400)))
        .start()
        .await;
    let config = GatewayConfig::new()
        .route(Route::new("strict", "c").timeout("100ms").prefix("/strict"))
        .route(Route::new("lenient", "c"))
        .cluster(Cluster::new("c").endpoint(&up).timeout("5s"));
    let gw = TestGateway::start(&config.toml()).await;
    let c = Client::http1();
    assert_gateway_error(
        &c.get(&format!("{}/strict", gw.url("public"))).await,
        504,
        "upstream_timeout",
    );
    assert_eq!(
        c.get(&format!("{}/other", gw.url("public"))).await.status,
        200
    );
}

#[tokio::test]
async fn unanswered_connect_is_504_connect_timeout() {
    // A listener whose accept queue is full: further SYNs go unanswered.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(0).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..8 {
        match tokio::time::timeout(
            Duration::from_millis(200),
            tokio::net::TcpStream::connect(addr),
        )
        .await
        {
            Ok(Ok(s)) => fillers.push(s),
            _ => break,
        }
    }
    let config = GatewayConfig::new()
        .route(
            Route::new("strict", "c")
                .raw("connect_timeout = \"200ms\"")
                .prefix("/strict"),
        )
        .route(Route::new("default", "c"))
        .cluster(
            Cluster::new("c")
                .endpoint(addr)
                .raw("connect_timeout = \"300ms\"")
                .timeout("1h"),
        );
    let gw = TestGateway::start(&config.toml()).await;
    let c = Client::http1();
    assert_gateway_error(
        &c.get(&format!("{}/", gw.url("public"))).await,
        504,
        "connect_timeout",
    );
    // The route's own connect timeout applies to its requests.
    let strict = c.get(&format!("{}/strict", gw.url("public"))).await;
    assert_gateway_error(&strict, 504, "connect_timeout");
    assert_eq!(
        strict.json()["message"],
        "the upstream did not accept a connection in time",
        "{strict:?}"
    );
    drop(listener);
}

#[tokio::test]
async fn reset_connection_is_502_upstream_reset() {
    let up = FakeUpstream::builder("u")
        .otherwise(Reply::reset())
        .start()
        .await;
    let gw = TestGateway::start(&single_cluster(&[up.addr()], "")).await;
    let r = Client::http1().get(&format!("{}/", gw.url("public"))).await;
    assert_gateway_error(&r, 502, "upstream_reset");
}

#[tokio::test]
async fn upstream_closing_mid_body_ends_the_client_response_without_a_hang() {
    let up = FakeUpstream::builder("u")
        .otherwise(Reply::close_after_headers())
        .start()
        .await;
    let gw = TestGateway::start(&single_cluster(&[up.addr()], "")).await;
    let mut send = crate::http1_connection(gw.addr("public")).await;
    let req = http::Request::get("/")
        .header("host", "x")
        .body(http_body_util::Empty::<Bytes>::new())
        .unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(10), send.send_request(req))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resp.status(), 200, "the head was already on its way");
    let body = tokio::time::timeout(Duration::from_secs(10), resp.into_body().collect()).await;
    assert!(
        matches!(body, Ok(Err(_))),
        "the truncated body surfaces as an error, not a hang"
    );
}

#[tokio::test]
async fn upstream_5xx_passes_through_and_is_counted() {
    let up = FakeUpstream::builder("u")
        .otherwise(Reply::status(503))
        .start()
        .await;
    let gw = TestGateway::start(&single_cluster(&[up.addr()], "")).await;
    let r = Client::http1().get(&format!("{}/", gw.url("public"))).await;
    assert_eq!(r.status, 503);
    assert_eq!(
        r.header("levee-error"),
        None,
        "the upstream's own answer is not the gateway's error"
    );
    assert_eq!(
        gw.metric("levee_upstream_requests_total{cluster=\"c\",code=\"5xx\"}"),
        1.0
    );
}

#[tokio::test]
async fn pooled_connections_closed_by_the_upstream_are_not_used() {
    let up = FakeUpstream::start("first").await;
    let addr = up.addr();
    let gw = TestGateway::start(&single_cluster(&[addr], "")).await;
    let c = Client::http1();
    let url = format!("{}/", gw.url("public"));
    assert_eq!(c.get(&url).await.body, "first");
    assert_eq!(
        gw.admin_api().cluster("c").await.endpoints[0].idle_connections,
        1,
        "the connection was pooled"
    );

    // The upstream restarts: the pooled connection is now closed.
    drop(up);
    let up = FakeUpstream::builder("second").bind(addr).start().await;
    for _ in 0..3 {
        let r = c.get(&url).await;
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.body, "second");
    }
    assert_eq!(up.connections(), 1, "one fresh connection, then reused");
}
