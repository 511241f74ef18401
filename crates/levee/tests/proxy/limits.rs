//! Listener limits and their answers: 431, 413, max connections, header read
//! timeout (slowloris), idle keep-alive timeout, HTTP/2 stream limit.

use crate::{closed_by_server, raw_exchange};
use levee_testkit::{
    eventually, Client, Cluster, FakeUpstream, GatewayConfig, Listener, Reply, Route, TestGateway,
};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Listener `public` with `limits` (an inline table's keys), every request
/// to cluster `c` at `upstream`.
fn limited(upstream: std::net::SocketAddr, limits: &str) -> String {
    GatewayConfig::without_listeners()
        .listener(Listener::new("public").limits(limits))
        .route(Route::new("all", "c"))
        .cluster(Cluster::new("c").endpoint(upstream))
        .toml()
}

#[tokio::test]
async fn oversized_request_head_gets_431() {
    let up = FakeUpstream::start("u").await;
    let gw = TestGateway::start(&limited(up.addr(), "max_request_header_bytes = \"16KiB\"")).await;
    let big = "a".repeat(20 * 1024);
    let request = format!("GET / HTTP/1.1\r\nHost: x\r\nx-big: {big}\r\n\r\n");
    let text = raw_exchange(
        gw.addr("public"),
        request.as_bytes(),
        Duration::from_secs(5),
    )
    .await;
    assert!(text.starts_with("HTTP/1.1 431"), "{text}");
    assert!(text.contains("levee-error: headers_too_large"), "{text}");
    assert_eq!(up.requests(), 0);
    assert_eq!(
        gw.metric("levee_errors_total{reason=\"headers_too_large\"}"),
        1.0
    );
    // Far beyond the limit, the codec refuses the head before parsing it all.
    let huge = "a".repeat(64 * 1024);
    let request = format!("GET / HTTP/1.1\r\nHost: x\r\nx-big: {huge}\r\n\r\n");
    let text = raw_exchange(
        gw.addr("public"),
        request.as_bytes(),
        Duration::from_secs(5),
    )
    .await;
    assert!(text.starts_with("HTTP/1.1 431"), "{text}");
    // Within the limit is fine.
    let ok = Client::http1()
        .get_with(
            &format!("{}/", gw.url("public")),
            &[("x-ok", &"a".repeat(8 * 1024))],
        )
        .await;
    assert_eq!(ok.status, 200);
}

#[tokio::test]
async fn oversized_bodies_get_413_declared_or_chunked() {
    let up = FakeUpstream::builder("u")
        .otherwise(Reply::echo())
        .start()
        .await;
    let gw = TestGateway::start(&limited(up.addr(), "max_request_body_bytes = 1024")).await;
    let addr = gw.addr("public");

    let declared = format!(
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2048\r\n\r\n{}",
        "b".repeat(2048)
    );
    let text = raw_exchange(addr, declared.as_bytes(), Duration::from_secs(5)).await;
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert!(text.contains("levee-error: payload_too_large"), "{text}");
    assert_eq!(
        up.requests(),
        0,
        "a declared oversized body never reaches the upstream"
    );

    let chunk = "c".repeat(800);
    let chunked = format!("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n320\r\n{chunk}\r\n320\r\n{chunk}\r\n0\r\n\r\n");
    let text = raw_exchange(addr, chunked.as_bytes(), Duration::from_secs(5)).await;
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");

    let small = Client::http1()
        .send(
            http::Request::post(format!("{}/", gw.url("public")))
                .body(http_body_util::Full::new(bytes::Bytes::from(vec![
                    1u8;
                    1000
                ])))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(small.status, 200);
    assert!(gw.metric("levee_errors_total{reason=\"payload_too_large\"}") >= 1.0);
}

#[tokio::test]
async fn connections_over_the_limit_are_closed_at_accept() {
    let up = FakeUpstream::start("u").await;
    let gw = TestGateway::start(&limited(up.addr(), "max_connections = 2")).await;
    let addr = gw.addr("public");
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        held.push(s);
    }
    eventually(Duration::from_secs(5), "two connections open", || async {
        gw.metric("levee_downstream_connections_active{listener=\"public\"}") == 2.0
    })
    .await;
    let mut third = TcpStream::connect(addr).await.unwrap();
    let _ = third.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(closed_by_server(&mut third, Duration::from_secs(5)).await);
    assert_eq!(
        gw.metric("levee_downstream_connections_rejected_total{listener=\"public\"}"),
        1.0
    );
    drop(held);
    eventually(Duration::from_secs(5), "slots freed", || async {
        gw.metric("levee_downstream_connections_active{listener=\"public\"}") == 0.0
    })
    .await;
    assert_eq!(
        Client::http1()
            .get(&format!("{}/", gw.url("public")))
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn slow_request_heads_are_cut_off() {
    let up = FakeUpstream::start("u").await;
    let gw = TestGateway::start(&limited(up.addr(), "header_read_timeout = \"300ms\"")).await;
    let mut s = TcpStream::connect(gw.addr("public")).await.unwrap();
    // Slowloris: a partial head, trickled.
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let mut closed = false;
    for _ in 0..50 {
        if s.write_all(b"x-a: b\r\n").await.is_err() {
            closed = true;
            break;
        }
        if closed_by_server(&mut s, Duration::from_millis(100)).await {
            closed = true;
            break;
        }
    }
    assert!(
        closed,
        "the server closes a connection whose head never completes"
    );
    assert_eq!(up.requests(), 0);
}

#[tokio::test]
async fn idle_keep_alive_connections_are_closed() {
    let up = FakeUpstream::start("u").await;
    let gw = TestGateway::start(&limited(
        up.addr(),
        "idle_timeout = \"200ms\", header_read_timeout = \"10s\"",
    ))
    .await;
    let mut s = TcpStream::connect(gw.addr("public")).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    // The response arrives, then the idle connection is closed by the server.
    assert!(closed_by_server(&mut s, Duration::from_secs(5)).await);
    assert_eq!(up.requests(), 1);
}

#[tokio::test]
async fn http2_concurrent_streams_are_limited() {
    let up = FakeUpstream::start("u").await;
    let gw = TestGateway::start(&limited(up.addr(), "max_concurrent_streams = 3")).await;
    let tcp = TcpStream::connect(gw.addr("public")).await.unwrap();
    let (client, conn) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut client = client.ready().await.unwrap();
    // The server's SETTINGS arrive with the first response.
    let req = http::Request::get(format!("http://{}/", gw.addr("public")))
        .body(())
        .unwrap();
    let (resp, _) = client.send_request(req, true).unwrap();
    assert_eq!(resp.await.unwrap().status(), 200);
    assert_eq!(client.current_max_send_streams(), 3);
}

#[tokio::test]
async fn header_read_timeout_does_not_cut_idle_keep_alive() {
    let up = FakeUpstream::start("u").await;
    let gw = TestGateway::start(&limited(
        up.addr(),
        "header_read_timeout = \"150ms\", idle_timeout = \"30s\"",
    ))
    .await;
    let mut s = TcpStream::connect(gw.addr("public")).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    // Idle between requests for several header timeouts: still open.
    assert!(
        !closed_by_server(&mut s, Duration::from_millis(600)).await,
        "an idle keep-alive connection is governed by idle_timeout"
    );
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    assert!(closed_by_server(&mut s, Duration::from_secs(5)).await);
    assert_eq!(
        up.requests(),
        2,
        "the second request on the idle connection was served"
    );
}

#[tokio::test]
async fn parked_keep_alive_connections_resume_with_pipelined_requests() {
    let up = FakeUpstream::start("u").await;
    let gw = TestGateway::start(&limited(up.addr(), "idle_timeout = \"30s\"")).await;
    let mut s = TcpStream::connect(gw.addr("public")).await.unwrap();
    s.write_all(b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    // Long enough idle for the connection's codec state to be released...
    assert!(!closed_by_server(&mut s, Duration::from_millis(400)).await);
    // ...then two pipelined requests in one write, the last closing.
    s.write_all(b"GET /2 HTTP/1.1\r\nHost: x\r\n\r\nGET /3 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(
        Duration::from_secs(5),
        tokio::io::AsyncReadExt::read_to_end(&mut s, &mut rest),
    )
    .await;
    let text = String::from_utf8_lossy(&rest);
    assert_eq!(text.matches("HTTP/1.1 200").count(), 2, "{text}");
    assert_eq!(
        (
            up.requests_to("/1"),
            up.requests_to("/2"),
            up.requests_to("/3")
        ),
        (1, 1, 1)
    );
}
