//! Protocol edge cases a new user's tour found: malformed chunked bodies,
//! oversized streamed HTTP/2 bodies, Host rules (RFC 9112 §3.2), request
//! ids on every answer, Bearer case, and heads the codec refuses.

use crate::raw_exchange;
use bytes::Bytes;
use levee_testkit::{
    Client, Cluster, FakeUpstream, GatewayConfig, Listener, Reply, Route, TestGateway,
};
use std::time::Duration;

/// On `listener`, route `hosted` (Host `a.example`) and then route `all`
/// to `cluster` (named `c`); each route names itself in `x-route`.
fn config(listener: Listener, cluster: Cluster) -> GatewayConfig {
    GatewayConfig::without_listeners()
        .listener(listener)
        .route(
            Route::new("hosted", "c")
                .hosts(&["a.example"])
                .response_header("x-route", "hosted"),
        )
        .route(Route::new("all", "c").response_header("x-route", "all"))
        .cluster(cluster)
}

/// [`config`] on listener `public` with `up` as the only endpoint.
fn plain(up: &FakeUpstream) -> GatewayConfig {
    config(Listener::new("public"), Cluster::new("c").endpoint(up))
}

const WAIT: Duration = Duration::from_secs(5);

/// An HTTP/2 (prior knowledge) client connection to `addr`.
async fn h2_connection<B>(addr: std::net::SocketAddr) -> hyper::client::conn::http2::SendRequest<B>
where
    B: hyper::body::Body + Unpin + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    send
}

#[tokio::test]
async fn invalid_chunked_bodies_get_400_and_the_connection_closes() {
    let up = FakeUpstream::builder("u")
        .otherwise(Reply::echo_body())
        .start()
        .await;
    let gw = TestGateway::start(&plain(&up).toml()).await;
    let addr = gw.addr("public");
    let head = "POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
    let cases = [
        ("bad size line", "zz\r\nabc\r\n0\r\n\r\n"),
        ("size overflow", "fffffffffffffffffff\r\nabc\r\n0\r\n\r\n"),
        ("missing CRLF", "3\r\nabcXY0\r\n\r\n"),
        ("newline in an extension", "3;ext=a\nb\r\nabc\r\n0\r\n\r\n"),
    ];
    for (i, (what, body)) in cases.iter().enumerate() {
        // A second request follows on the same connection: it must not be
        // served, because the connection closes after the 400.
        let request = format!("{head}{body}GET /after HTTP/1.1\r\nHost: x\r\n\r\n");
        let text = raw_exchange(addr, request.as_bytes(), WAIT).await;
        assert!(text.starts_with("HTTP/1.1 400"), "{what}: {text}");
        assert!(text.contains("levee-error: bad_request"), "{what}: {text}");
        assert!(text.contains("connection: close"), "{what}: {text}");
        assert_eq!(text.matches("HTTP/1.1").count(), 1, "{what}: {text}");
        assert_eq!(
            gw.metric("levee_errors_total{cluster=\"c\",reason=\"bad_request\"}")
                + gw.metric("levee_errors_total{reason=\"bad_request\"}"),
            (i + 1) as f64,
            "{what}: counted as the client's error"
        );
    }
    assert_eq!(
        gw.metric("levee_errors_total{cluster=\"c\",reason=\"client_closed\"}"),
        0.0
    );
    assert_eq!(
        gw.metric("levee_requests_total{route=\"all\",cluster=\"c\",code=\"4xx\"}"),
        cases.len() as f64
    );
}

#[tokio::test]
async fn an_oversized_streamed_http2_body_to_an_http2_upstream_gets_413() {
    let up = FakeUpstream::builder("u")
        .otherwise(Reply::echo())
        .start()
        .await;
    let gw = TestGateway::start(
        &config(
            Listener::new("public").limits("max_request_body_bytes = \"1MiB\""),
            Cluster::new("c").endpoint(&up).protocol("http2"),
        )
        .toml(),
    )
    .await;
    let mut send = h2_connection(gw.addr("public")).await;
    // 3 MiB in 64 KiB frames, with no content-length.
    let (mut tx, body) =
        http_body_util::channel::Channel::<Bytes, std::convert::Infallible>::new(4);
    tokio::spawn(async move {
        for _ in 0..48 {
            if tx
                .send_data(Bytes::from(vec![7u8; 64 * 1024]))
                .await
                .is_err()
            {
                return;
            }
        }
    });
    let req = http::Request::post(format!("http://{}/upload", gw.addr("public")))
        .body(body)
        .unwrap();
    let resp = tokio::time::timeout(WAIT, send.send_request(req))
        .await
        .expect("answered in time")
        .expect("a response, not a reset");
    assert_eq!(resp.status(), 413);
    assert_eq!(resp.headers()["levee-error"], "payload_too_large");
    assert_eq!(
        gw.metric("levee_errors_total{cluster=\"c\",reason=\"upstream_reset\"}"),
        0.0
    );
    assert_eq!(
        gw.metric("levee_errors_total{cluster=\"c\",reason=\"payload_too_large\"}"),
        1.0
    );
}

#[tokio::test]
async fn http1_requests_need_exactly_one_host() {
    let up = FakeUpstream::builder("u")
        .otherwise(Reply::echo())
        .start()
        .await;
    let gw = TestGateway::start(&plain(&up).toml()).await;
    let addr = gw.addr("public");
    for (what, request) in [
        ("no Host", "GET / HTTP/1.1\r\n\r\n"),
        ("two Hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
        (
            "absolute form without Host",
            "GET http://a.example/ HTTP/1.1\r\n\r\n",
        ),
    ] {
        let text = raw_exchange(addr, request.as_bytes(), WAIT).await;
        assert!(text.starts_with("HTTP/1.1 400"), "{what}: {text}");
        assert!(text.contains("levee-error: bad_request"), "{what}: {text}");
    }
    assert_eq!(up.requests(), 0);
    // HTTP/1.0 may leave Host out.
    let text = raw_exchange(addr, b"GET / HTTP/1.0\r\n\r\n", WAIT).await;
    assert!(
        text.starts_with("HTTP/1.1 200") || text.starts_with("HTTP/1.0 200"),
        "{text}"
    );
}

#[tokio::test]
async fn the_request_target_authority_wins_over_host() {
    let up = FakeUpstream::builder("u")
        .otherwise(Reply::echo())
        .start()
        .await;
    let gw = TestGateway::start(&plain(&up).toml()).await;
    let addr = gw.addr("public");
    let text = raw_exchange(
        addr,
        b"GET http://a.example/x HTTP/1.1\r\nHost: b.example\r\nConnection: close\r\n\r\n",
        WAIT,
    )
    .await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("x-route: hosted"), "{text}");
    assert!(
        text.contains("\"x-forwarded-host\":\"a.example\""),
        "{text}"
    );

    // HTTP/2: `:authority` wins over a `host` header.
    let mut send = h2_connection(addr).await;
    let req = http::Request::get("http://a.example/x")
        .header("host", "b.example")
        .body(http_body_util::Empty::<Bytes>::new())
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-route"], "hosted");
}

#[tokio::test]
async fn every_response_carries_the_request_id() {
    let up = FakeUpstream::start("u").await;
    let gw = TestGateway::start(&plain(&up).toml()).await;
    let c = Client::http1();
    let fresh = c.get(&format!("{}/x", gw.url("public"))).await;
    assert_eq!(fresh.status, 200);
    let id = fresh.header("x-request-id").expect("a generated id");
    assert!(id.len() >= 16, "{id}");
    let given = c
        .get_with(
            &format!("{}/x", gw.url("public")),
            &[("x-request-id", "abc-123")],
        )
        .await;
    assert_eq!(given.header("x-request-id"), Some("abc-123"));
}

#[tokio::test]
async fn the_bearer_scheme_is_case_insensitive_for_the_admin_token() {
    let up = FakeUpstream::start("u").await;
    let src = plain(&up).admin_token("0123456789abcdef0123456789abcdef");
    let gw = TestGateway::start(&src.toml()).await;
    let url = format!("{}/api/v1/clusters", gw.admin_url());
    let c = Client::http1();
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let auth = format!("{scheme} 0123456789abcdef0123456789abcdef");
        let r = c.get_with(&url, &[("authorization", &auth)]).await;
        assert_eq!(r.status, 200, "{scheme}");
    }
    let r = c
        .get_with(
            &url,
            &[("authorization", "Basic 0123456789abcdef0123456789abcdef")],
        )
        .await;
    assert_eq!(r.status, 401);
}

#[tokio::test]
async fn heads_the_codec_refuses_are_counted() {
    let up = FakeUpstream::start("u").await;
    let gw = TestGateway::start(&plain(&up).toml()).await;
    let huge = "a".repeat(200 * 1024);
    let request = format!("GET / HTTP/1.1\r\nHost: x\r\nx-big: {huge}\r\n\r\n");
    let text = raw_exchange(gw.addr("public"), request.as_bytes(), WAIT).await;
    assert!(text.starts_with("HTTP/1.1 431"), "{text}");
    assert_eq!(
        gw.metric("levee_errors_total{reason=\"headers_too_large\"}"),
        1.0
    );
    let text = raw_exchange(gw.addr("public"), b"GET / HTTP/1.1\r\nHost x\r\n\r\n", WAIT).await;
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");
    assert_eq!(gw.metric("levee_errors_total{reason=\"bad_request\"}"), 1.0);
}
