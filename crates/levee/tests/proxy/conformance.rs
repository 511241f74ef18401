//! HTTP/1.1 framing conformance of the dedicated path (RFC 9112), over raw
//! sockets against a real gateway and a real upstream: every request
//! smuggling shape is refused with the right status, closes the
//! connection and never reaches the upstream; pipelined requests are
//! answered in order, also when heads arrive in pieces and after the
//! connection idled; `Expect: 100-continue` is answered only when the
//! body is wanted; HEAD, 204 and 304 answers carry no body; HTTP/1.0
//! keeps its connection only when asked.

use crate::raw_exchange;
use levee_testkit::{Cluster, FakeUpstream, GatewayConfig, Listener, Reply, Route, TestGateway};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const WAIT: Duration = Duration::from_secs(5);

async fn gateway(up: &FakeUpstream, limits: &str) -> TestGateway {
    let listener = if limits.is_empty() {
        Listener::new("public")
    } else {
        Listener::new("public").limits(limits)
    };
    TestGateway::start(
        &GatewayConfig::without_listeners()
            .listener(listener)
            .route(Route::new("all", "c"))
            .cluster(Cluster::new("c").endpoint(up))
            .toml(),
    )
    .await
}

#[tokio::test]
async fn smuggling_shapes_are_refused_and_never_reach_the_upstream() {
    let up = FakeUpstream::builder("u")
        .otherwise(Reply::echo())
        .start()
        .await;
    let gw = gateway(&up, "").await;
    let after = "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n";
    for (what, head, status) in [
        (
            "Content-Length with Transfer-Encoding",
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            400,
        ),
        (
            "Transfer-Encoding with Content-Length",
            "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n",
            400,
        ),
        (
            "two different Content-Lengths",
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
            400,
        ),
        (
            "a list of different lengths",
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3, 4\r\n\r\nabcd",
            400,
        ),
        (
            "a signed length",
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +3\r\n\r\nabc",
            400,
        ),
        (
            "a hex length",
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0x3\r\n\r\nabc",
            400,
        ),
        (
            "a folded header",
            "GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n 2\r\n\r\n",
            400,
        ),
        ("a bare LF", "GET / HTTP/1.1\nHost: x\n\n", 400),
        (
            "a space before the colon",
            "GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n\r\n",
            400,
        ),
        (
            "a final coding other than chunked",
            "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n",
            400,
        ),
        (
            "Transfer-Encoding in HTTP/1.0",
            "POST / HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            400,
        ),
        (
            "a coding before chunked",
            "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
            501,
        ),
        (
            "an unknown expectation",
            "GET / HTTP/1.1\r\nHost: x\r\nExpect: 200-ok\r\n\r\n",
            417,
        ),
    ] {
        let text = raw_exchange(gw.addr("public"), format!("{head}{after}").as_bytes(), WAIT).await;
        assert!(
            text.starts_with(&format!("HTTP/1.1 {status} ")),
            "{what}: {text}"
        );
        assert!(text.contains("levee-error: "), "{what}: {text}");
        assert!(text.contains("connection: close"), "{what}: {text}");
        assert_eq!(text.matches("HTTP/1.1 ").count(), 1, "{what}: one answer only: {text}");
    }
    assert_eq!(up.requests(), 0, "nothing reached the upstream");
    // The same length twice is one length.
    let text = raw_exchange(
        gw.addr("public"),
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc",
        WAIT,
    )
    .await;
    assert!(text.starts_with("HTTP/1.1 200 "), "{text}");
    assert!(text.contains("\"body_len\":3"), "{text}");
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let up = FakeUpstream::builder("u")
        .otherwise(Reply::echo())
        .start()
        .await;
    let gw = gateway(&up, "").await;
    let requests = "GET /one HTTP/1.1\r\nHost: x\r\n\r\n\
                    POST /two HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello\
                    POST /three HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n\
                    GET /four HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let text = raw_exchange(gw.addr("public"), requests.as_bytes(), WAIT).await;
    assert_eq!(text.matches("HTTP/1.1 200 ").count(), 4, "{text}");
    let at = |p: &str| {
        text.find(&format!("\"uri\":\"{p}\""))
            .unwrap_or_else(|| panic!("{p}: {text}"))
    };
    assert!(at("/one") < at("/two") && at("/two") < at("/three") && at("/three") < at("/four"));
    assert!(
        text.contains("\"body_len\":5") && text.contains("\"body_len\":3"),
        "{text}"
    );
    assert_eq!(up.requests(), 4);
}

#[tokio::test]
async fn heads_arriving_in_pieces_are_served_before_and_after_an_idle_wait() {
    let up = FakeUpstream::builder("u")
        .otherwise(Reply::echo())
        .start()
        .await;
    let gw = gateway(&up, "").await;
    let pause = || tokio::time::sleep(Duration::from_millis(50));
    let mut s = TcpStream::connect(gw.addr("public")).await.unwrap();
    // The first piece is shorter than what the listener reads to tell
    // HTTP/1.1 from HTTP/2.
    s.write_all(b"GET /a HTTP/1.1\r\nHo").await.unwrap();
    pause().await;
    s.write_all(b"st: x\r\n\r\n").await.unwrap();
    let mut seen = Vec::new();
    assert!(
        read_until(&mut s, &mut seen, "\"uri\":\"/a\"").await,
        "{}",
        String::from_utf8_lossy(&seen)
    );
    // Idle (the connection holds no buffer now), then two pipelined
    // requests, each head cut in two.
    // (Parking needs no time: the buffers go back as soon as a read
    // would block.)
    pause().await;
    s.write_all(b"GET /b HTTP/1.1\r\n").await.unwrap();
    pause().await;
    s.write_all(b"Host: x\r\n\r\nGET /c HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    pause().await;
    s.write_all(b"Connection: close\r\n\r\n").await.unwrap();
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(WAIT, s.read_to_end(&mut rest)).await;
    let text = String::from_utf8_lossy(&rest);
    assert_eq!(text.matches("HTTP/1.1 200 ").count(), 2, "{text}");
    let at = |p: &str| {
        text.find(&format!("\"uri\":\"{p}\""))
            .unwrap_or_else(|| panic!("{p}: {text}"))
    };
    assert!(at("/b") < at("/c"), "{text}");
    assert_eq!(up.requests(), 3);
}

/// Reads from `s` until `needle` has arrived (or `WAIT` passes).
async fn read_until(s: &mut TcpStream, seen: &mut Vec<u8>, needle: &str) -> bool {
    let deadline = levee_core::time::now() + WAIT;
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(seen).contains(needle) {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => seen.extend_from_slice(&buf[..n]),
            _ => return false,
        }
    }
    true
}

#[tokio::test]
async fn expect_100_continue_is_answered_only_when_the_body_is_wanted() {
    let up = FakeUpstream::builder("u")
        .otherwise(Reply::echo())
        .start()
        .await;
    let gw = gateway(&up, "max_request_body_bytes = 1000").await;
    // Wanted: 100 first, then the body, then the answer.
    let mut s = TcpStream::connect(gw.addr("public")).await.unwrap();
    s.write_all(
        b"PUT /up HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
    )
    .await
    .unwrap();
    let mut seen = Vec::new();
    assert!(
        read_until(&mut s, &mut seen, "HTTP/1.1 100 Continue\r\n\r\n").await,
        "{}",
        String::from_utf8_lossy(&seen)
    );
    assert!(
        !String::from_utf8_lossy(&seen).contains("200"),
        "nothing else before the body"
    );
    s.write_all(b"hello").await.unwrap();
    assert!(
        read_until(&mut s, &mut seen, "\"body_len\":5").await,
        "{}",
        String::from_utf8_lossy(&seen)
    );
    // Refused on its declared length: no 100, the 413 at once, and the
    // body is never sent.
    let text = raw_exchange(
        gw.addr("public"),
        b"PUT /up HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\nExpect: 100-continue\r\n\r\n",
        WAIT,
    )
    .await;
    assert!(text.starts_with("HTTP/1.1 413 "), "{text}");
    assert!(!text.contains("100 Continue"), "{text}");
}

#[tokio::test]
async fn head_204_and_304_answers_carry_no_body() {
    let up = FakeUpstream::builder("u")
        .route("/none", Reply::status(204))
        .route("/same", Reply::status(304))
        .otherwise(Reply::ok().body_size(100))
        .start()
        .await;
    let gw = gateway(&up, "").await;
    let text = raw_exchange(
        gw.addr("public"),
        b"HEAD /x HTTP/1.1\r\nHost: x\r\n\r\nGET /none HTTP/1.1\r\nHost: x\r\n\r\nGET /same HTTP/1.1\r\nHost: x\r\n\r\nGET /x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        WAIT,
    )
    .await;
    let answers: Vec<&str> = text.split("HTTP/1.1 ").skip(1).collect();
    assert_eq!(answers.len(), 4, "{text}");
    assert!(
        answers[0].starts_with("200 ") && answers[0].ends_with("\r\n\r\n"),
        "HEAD: {text}"
    );
    assert!(
        answers[0].contains("content-length: 100"),
        "HEAD keeps the GET's length: {text}"
    );
    assert!(
        answers[1].starts_with("204 ") && answers[1].ends_with("\r\n\r\n"),
        "{text}"
    );
    assert!(
        !answers[1].contains("content-length") && !answers[1].contains("transfer-encoding"),
        "{text}"
    );
    assert!(
        answers[2].starts_with("304 ") && answers[2].ends_with("\r\n\r\n"),
        "{text}"
    );
    assert!(
        answers[3].starts_with("200 ") && answers[3].contains("content-length: 100"),
        "{text}"
    );
}

#[tokio::test]
async fn http_1_0_keeps_its_connection_only_when_asked() {
    let up = FakeUpstream::start("u").await;
    let gw = gateway(&up, "").await;
    let text = raw_exchange(
        gw.addr("public"),
        b"GET / HTTP/1.0\r\nHost: x\r\n\r\nGET /never HTTP/1.0\r\nHost: x\r\n\r\n",
        WAIT,
    )
    .await;
    assert_eq!(
        text.matches("HTTP/1.1 200 ").count(),
        1,
        "closed after one: {text}"
    );
    assert!(text.contains("connection: close"), "{text}");
    let text = raw_exchange(
        gw.addr("public"),
        b"GET / HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n\r\nGET / HTTP/1.0\r\nHost: x\r\n\r\n",
        WAIT,
    )
    .await;
    assert_eq!(
        text.matches("HTTP/1.1 200 ").count(),
        2,
        "kept for the second: {text}"
    );
    assert!(text.contains("connection: keep-alive"), "{text}");
}

#[tokio::test]
async fn an_upstream_that_answers_before_reading_the_body_is_relayed() {
    // The upstream refuses at once; the client's large body is not read
    // to its end, so the connection closes after the answer.
    let up = FakeUpstream::builder("u")
        .otherwise(Reply::status(403))
        .start()
        .await;
    let gw = gateway(&up, "").await;
    let mut s = TcpStream::connect(gw.addr("public")).await.unwrap();
    s.write_all(b"POST /big HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\nstart")
        .await
        .unwrap();
    let mut seen = Vec::new();
    assert!(
        read_until(&mut s, &mut seen, "HTTP/1.1 403 ").await,
        "{}",
        String::from_utf8_lossy(&seen)
    );
    assert!(
        crate::closed_by_server(&mut s, WAIT).await,
        "closed: the body was not read to its end"
    );
}
