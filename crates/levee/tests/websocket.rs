//! Real WebSocket traffic through Levee: a tokio-tungstenite echo server
//! behind the gateway and a tokio-tungstenite client in front of it.
//!
//! The upstream answers both kinds of request on one port, as real
//! applications do: a WebSocket handshake is accepted by tungstenite (the
//! echo), anything else is served as plain HTTP/1.1 by hyper.

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use hyper_util::rt::TokioIo;
use levee_testkit::{Client, FakeUpstream, TestGateway};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::{self, Message};

/// Bounds every await of a test: a bug fails the test, never hangs it.
const LIMIT: Duration = Duration::from_secs(10);

async fn within<F: Future>(what: &str, f: F) -> F::Output {
    tokio::time::timeout(LIMIT, f)
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within {LIMIT:?}"))
}

/// The request targets of the WebSocket handshakes the echo server accepted.
type Seen = Arc<Mutex<Vec<String>>>;

/// WebSocket echo (text and binary) on upgrade requests; a plain HTTP/1.1
/// `200 plain GET /path` with `connection: close` on anything else.
async fn start_echo() -> (SocketAddr, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind echo");
    let addr = listener.local_addr().expect("echo addr");
    let seen = Seen::default();
    let handshakes = seen.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let handshakes = handshakes.clone();
            tokio::spawn(async move {
                if asks_for_websocket(&stream).await {
                    echo(stream, handshakes).await;
                } else {
                    plain(stream).await;
                }
            });
        }
    });
    (addr, seen)
}

/// Peeks at the request head (without consuming it) for `upgrade: websocket`.
async fn asks_for_websocket(stream: &TcpStream) -> bool {
    let mut buf = [0u8; 8192];
    for _ in 0..500 {
        let Ok(n) = stream.peek(&mut buf).await else {
            return false;
        };
        let head = String::from_utf8_lossy(&buf[..n]).to_ascii_lowercase();
        if head.contains("\r\n\r\n") {
            return head.contains("\r\nupgrade: websocket");
        }
        if n == 0 || n == buf.len() {
            return false;
        }
        // Only part of the head has arrived; peek again shortly.
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    false
}

async fn echo(stream: TcpStream, seen: Seen) {
    // The callback's signature is tungstenite's.
    #[allow(clippy::result_large_err)]
    let record = |req: &Request, resp: Response| {
        seen.lock().unwrap().push(req.uri().to_string());
        Ok(resp)
    };
    let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(stream, record).await else {
        return;
    };
    while let Some(Ok(msg)) = ws.next().await {
        if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
            return;
        }
        // Pings are answered and a Close is echoed by tungstenite itself.
    }
}

async fn plain(stream: TcpStream) {
    let svc = hyper::service::service_fn(|req: http::Request<hyper::body::Incoming>| async move {
        let body = format!("plain {} {}", req.method(), req.uri().path());
        http::Response::builder()
            .header(http::header::CONNECTION, "close")
            .body(http_body_util::Full::new(Bytes::from(body)))
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(stream), svc)
        .await;
}

async fn start_gateway(echo: SocketAddr) -> TestGateway {
    TestGateway::start(&format!(
        r#"
[admin]
listen = "127.0.0.1:0"

[[listeners]]
name = "public"
listen = "127.0.0.1:0"

[[routes]]
name = "ws"
cluster = "echo"
match = {{ path = {{ prefix = "/ws" }} }}

[[clusters]]
name = "echo"
endpoints = ["{echo}"]
"#
    ))
    .await
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

async fn connect(gw: &TestGateway, path: &str) -> Ws {
    let url = format!("ws://{}{path}", gw.addr("public"));
    let (ws, resp) = within(
        "websocket handshake",
        tokio_tungstenite::connect_async(&url),
    )
    .await
    .unwrap_or_else(|e| panic!("handshake through Levee to {url} failed: {e:?}"));
    assert_eq!(resp.status(), http::StatusCode::SWITCHING_PROTOCOLS);
    ws
}

async fn next(ws: &mut Ws) -> Message {
    within("next websocket message", ws.next())
        .await
        .expect("connection open")
        .expect("message")
}

async fn send(ws: &mut Ws, msg: Message) {
    within("websocket send", ws.send(msg)).await.expect("send");
}

/// Closes from the client side and checks the server's Close comes back.
async fn close_cleanly(mut ws: Ws) {
    within("websocket close", ws.close(None))
        .await
        .expect("close sent");
    loop {
        match within("server close", ws.next()).await {
            Some(Ok(Message::Close(_))) => {}
            Some(Ok(other)) => panic!("unexpected message while closing: {other:?}"),
            // tungstenite reports the finished closing handshake as the end
            // of the stream.
            None | Some(Err(tungstenite::Error::ConnectionClosed)) => return,
            Some(Err(e)) => panic!("closing handshake failed: {e:?}"),
        }
    }
}

#[tokio::test]
async fn websocket_messages_are_echoed_through_levee() {
    let (echo, seen) = start_echo().await;
    let gw = start_gateway(echo).await;
    let mut ws = connect(&gw, "/ws?room=1").await;
    assert_eq!(*seen.lock().unwrap(), vec!["/ws?room=1".to_string()]);

    send(&mut ws, Message::text("hello through levee")).await;
    assert_eq!(next(&mut ws).await, Message::text("hello through levee"));

    let small: Vec<u8> = (0..=255).collect();
    send(&mut ws, Message::binary(small.clone())).await;
    assert_eq!(next(&mut ws).await, Message::binary(small));

    // A message much larger than one TCP read, both ways.
    let big: Vec<u8> = (0..512 * 1024).map(|i| (i % 251) as u8).collect();
    send(&mut ws, Message::binary(big.clone())).await;
    assert_eq!(next(&mut ws).await, Message::binary(big));

    // Control frames: the upstream's tungstenite answers a ping.
    send(&mut ws, Message::Ping(Bytes::from_static(b"are you there"))).await;
    assert_eq!(
        next(&mut ws).await,
        Message::Pong(Bytes::from_static(b"are you there"))
    );

    // Several messages in flight at once keep their order.
    for i in 0..20 {
        send(&mut ws, Message::text(format!("msg {i}"))).await;
    }
    for i in 0..20 {
        assert_eq!(next(&mut ws).await, Message::text(format!("msg {i}")));
    }

    close_cleanly(ws).await;
}

#[tokio::test]
async fn several_websockets_at_once_stay_separate() {
    let (echo, _) = start_echo().await;
    let gw = start_gateway(echo).await;
    let mut a = connect(&gw, "/ws/a").await;
    let mut b = connect(&gw, "/ws/b").await;

    send(&mut a, Message::text("to a")).await;
    send(&mut b, Message::text("to b")).await;
    assert_eq!(next(&mut b).await, Message::text("to b"));
    assert_eq!(next(&mut a).await, Message::text("to a"));

    close_cleanly(a).await;
    // b is unaffected by a's close.
    send(&mut b, Message::text("still here")).await;
    assert_eq!(next(&mut b).await, Message::text("still here"));
    close_cleanly(b).await;
}

#[tokio::test]
async fn plain_http_on_the_websocket_route_still_works() {
    let (echo, seen) = start_echo().await;
    let gw = start_gateway(echo).await;
    let url = format!("{}/ws", gw.url("public"));

    let reply = within("plain GET", Client::http1().get(&url)).await;
    assert_eq!(reply.status, http::StatusCode::OK);
    assert_eq!(reply.body, "plain GET /ws");

    // HTTP/2 clients cannot upgrade; their requests are plain too.
    let reply = within("plain GET over h2c", Client::h2c().get(&url)).await;
    assert_eq!(reply.status, http::StatusCode::OK);
    assert_eq!(reply.body, "plain GET /ws");

    // The same route still upgrades, and plain requests work afterwards.
    let mut ws = connect(&gw, "/ws").await;
    send(&mut ws, Message::text("between plain requests")).await;
    assert_eq!(next(&mut ws).await, Message::text("between plain requests"));
    close_cleanly(ws).await;
    assert_eq!(seen.lock().unwrap().len(), 1);

    let reply = within("plain GET after", Client::http1().get(&url)).await;
    assert_eq!(reply.status, http::StatusCode::OK);
    assert_eq!(reply.body, "plain GET /ws");
}

#[tokio::test]
async fn upstream_declining_the_upgrade_is_an_ordinary_response() {
    // A plain HTTP upstream that ignores Upgrade and answers 200.
    let upstream = FakeUpstream::start("no-websocket-here").await;
    let gw = start_gateway(upstream.addr()).await;
    let url = format!("ws://{}/ws", gw.addr("public"));

    let err = within("refused handshake", tokio_tungstenite::connect_async(&url))
        .await
        .expect_err("no 101, no WebSocket");
    match err {
        tungstenite::Error::Http(resp) => {
            assert_eq!(resp.status(), http::StatusCode::OK);
            assert_eq!(
                resp.headers()
                    .get("x-upstream")
                    .and_then(|v| v.to_str().ok()),
                Some("no-websocket-here")
            );
        }
        other => panic!("expected the upstream's HTTP answer, got {other:?}"),
    }
    assert_eq!(upstream.requests(), 1);
}
