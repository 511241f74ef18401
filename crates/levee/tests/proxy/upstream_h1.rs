//! HTTP/1.1 towards upstreams (Levee's own client codec), against raw TCP
//! upstreams that write exactly the bytes each case needs: answers are
//! framed as their heads say (length, chunked with trailers, until close,
//! HEAD, interim 1xx), a connection is reused only after an answer that
//! ended cleanly, a malformed answer becomes a 502 naming the upstream's
//! fault, a streamed request body goes chunked while the answer streams
//! back, and a pooled connection the upstream closed is tried again on a
//! fresh one only for a request that is safe to send twice.

use levee_testkit::{Client, Cluster, GatewayConfig, Listener, Route, TestGateway};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const WAIT: Duration = Duration::from_secs(5);

/// An upstream on a real socket whose every connection runs `script`
/// with the connection's number (0 for the first).
struct RawUpstream {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl RawUpstream {
    async fn start<F, Fut>(script: F) -> Self
    where
        F: Fn(usize, TcpStream) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let n = count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(script(n, stream));
            }
        });
        Self {
            addr,
            accepted,
            task,
        }
    }

    fn connections(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for RawUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads one request head (through its blank line) from `s`; `None` when
/// the connection closed first.
async fn read_request_head(s: &mut TcpStream, pending: &mut Vec<u8>) -> Option<String> {
    loop {
        if let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            let head: Vec<u8> = pending.drain(..end + 4).collect();
            return Some(String::from_utf8_lossy(&head).into_owned());
        }
        let mut buf = [0u8; 4096];
        match tokio::time::timeout(WAIT, s.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => pending.extend_from_slice(&buf[..n]),
            _ => return None,
        }
    }
}

async fn gateway(up: &RawUpstream) -> TestGateway {
    TestGateway::start(
        &GatewayConfig::without_listeners()
            .listener(Listener::new("public"))
            .route(Route::new("all", "c"))
            .cluster(Cluster::new("c").endpoint(up.addr))
            .toml(),
    )
    .await
}

/// One request: status, headers, body.
async fn get(gw: &TestGateway, path: &str) -> (u16, http::HeaderMap, String) {
    send(gw, http::Method::GET, path, "").await
}

async fn send(
    gw: &TestGateway,
    method: http::Method,
    path: &str,
    body: &'static str,
) -> (u16, http::HeaderMap, String) {
    let req = http::Request::builder()
        .method(method)
        .uri(format!("http://{}{path}", gw.addr("public")))
        .body(http_body_util::Full::new(bytes::Bytes::from_static(
            body.as_bytes(),
        )))
        .unwrap();
    let r = Client::http1().send(req).await.unwrap();
    (r.status.as_u16(), r.headers, r.body)
}

#[tokio::test]
async fn answers_are_framed_as_their_heads_say_and_a_connection_is_reused_only_after_a_clean_end() {
    // One connection carries the length-framed, chunked (with trailers),
    // HEAD and interim-1xx answers; an answer read until the close ends
    // it, and one with bytes after its end is not reused either.
    let up = RawUpstream::start(|_, mut s| async move {
        let mut pending = Vec::new();
        while let Some(head) = read_request_head(&mut s, &mut pending).await {
            let path = head.split(' ').nth(1).unwrap_or("").to_string();
            let answer: &[u8] = match path.as_str() {
                "/length" => b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nlength",
                "/chunked" => {
                    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nchu\r\n4\r\nnked\r\n0\r\nX-Sum: 7\r\n\r\n"
                }
                "/head" => b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n",
                "/interim" => {
                    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfinal"
                }
                "/extra" => b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokGARBAGE",
                _ => b"HTTP/1.1 200 OK\r\n\r\nuntil the close",
            };
            if s.write_all(answer).await.is_err() {
                return;
            }
            if path == "/close" {
                return; // read until the close: the close ends the body
            }
        }
    })
    .await;
    let gw = gateway(&up).await;

    let (status, _, body) = get(&gw, "/length").await;
    assert_eq!((status, body.as_str()), (200, "length"));
    let (status, _, body) = get(&gw, "/chunked").await;
    assert_eq!((status, body.as_str()), (200, "chunked"));
    let (status, _, body) = send(&gw, http::Method::HEAD, "/head", "").await;
    assert_eq!(status, 200);
    assert!(body.is_empty(), "a HEAD answer has no body");
    let (status, _, body) = get(&gw, "/interim").await;
    assert_eq!(
        (status, body.as_str()),
        (200, "final"),
        "1xx heads are passed over"
    );
    assert_eq!(
        up.connections(),
        1,
        "every clean answer left the connection reusable"
    );

    let (status, _, body) = get(&gw, "/extra").await;
    assert_eq!((status, body.as_str()), (200, "ok"));
    let (status, _, body) = get(&gw, "/length").await;
    assert_eq!((status, body.as_str()), (200, "length"));
    assert_eq!(
        up.connections(),
        2,
        "bytes after an answer's end: not reused"
    );

    let (status, _, body) = get(&gw, "/close").await;
    assert_eq!((status, body.as_str()), (200, "until the close"));
    let (status, _, _) = get(&gw, "/length").await;
    assert_eq!(status, 200);
    assert_eq!(
        up.connections(),
        3,
        "an answer read until the close ends its connection"
    );
}

#[tokio::test]
async fn trailers_of_a_chunked_answer_reach_a_client_that_reads_chunked() {
    let up = RawUpstream::start(|_, mut s| async move {
        let mut pending = Vec::new();
        while read_request_head(&mut s, &mut pending).await.is_some() {
            let answer = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: x-sum\r\n\r\n2\r\nok\r\n0\r\nX-Sum: 7\r\n\r\n";
            if s.write_all(answer).await.is_err() {
                return;
            }
        }
    })
    .await;
    let gw = gateway(&up).await;
    let mut c = TcpStream::connect(gw.addr("public")).await.unwrap();
    c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nTE: trailers\r\n\r\n")
        .await
        .unwrap();
    let mut seen = Vec::new();
    let deadline = levee_core::time::now() + WAIT;
    while !seen.ends_with(b"\r\n\r\n") || !seen.windows(5).any(|w| w == b"\r\n0\r\n") {
        let mut buf = [0u8; 4096];
        match tokio::time::timeout_at(deadline, c.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => seen.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    let text = String::from_utf8_lossy(&seen).to_ascii_lowercase();
    assert!(text.contains("transfer-encoding: chunked"), "{text}");
    assert!(
        text.contains("\r\n2\r\nok\r\n0\r\nx-sum: 7\r\n\r\n"),
        "{text}"
    );
}

#[tokio::test]
async fn a_malformed_answer_is_a_502_that_names_the_upstream() {
    let cases: [&[u8]; 5] = [
        b"HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\nX-Folded: a\r\n b\r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/1.1 2000 OK\r\n\r\n",
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\n",
    ];
    for answer in cases {
        let up = RawUpstream::start(move |_, mut s| async move {
            let mut pending = Vec::new();
            if read_request_head(&mut s, &mut pending).await.is_some() {
                let _ = s.write_all(answer).await;
                let _ = tokio::time::timeout(WAIT, s.read(&mut [0u8; 16])).await;
            }
        })
        .await;
        let gw = gateway(&up).await;
        let (status, headers, body) = get(&gw, "/").await;
        let shown = String::from_utf8_lossy(answer);
        assert_eq!(status, 502, "{shown:?}: {body}");
        assert_eq!(
            headers.get("levee-error").map(|v| v.to_str().unwrap()),
            Some("upstream_protocol_error"),
            "{shown:?}"
        );
        assert!(!body.contains("127.0.0.1"), "no address leaks: {body}");
    }
    // A head larger than the upstream limit (64 KiB) is refused the same way.
    let up = RawUpstream::start(|_, mut s| async move {
        let mut pending = Vec::new();
        if read_request_head(&mut s, &mut pending).await.is_some() {
            let mut answer = b"HTTP/1.1 200 OK\r\n".to_vec();
            for i in 0..100 {
                answer.extend_from_slice(format!("x-{i}: {}\r\n", "a".repeat(1000)).as_bytes());
            }
            answer.extend_from_slice(b"Content-Length: 0\r\n\r\n");
            let _ = s.write_all(&answer).await;
            let _ = tokio::time::timeout(WAIT, s.read(&mut [0u8; 16])).await;
        }
    })
    .await;
    let gw = gateway(&up).await;
    let (status, headers, _) = get(&gw, "/").await;
    assert_eq!(status, 502);
    assert_eq!(
        headers.get("levee-error").map(|v| v.to_str().unwrap()),
        Some("upstream_protocol_error")
    );
}

#[tokio::test]
async fn a_streamed_request_body_goes_chunked_while_the_answer_streams_back() {
    // The upstream answers at once and echoes each chunk as it arrives:
    // the client sees the first echo before it sends the second chunk,
    // which needs the gateway to send and read at the same time.
    let (heads_tx, mut heads_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let up = RawUpstream::start(move |_, mut s| {
        let heads_tx = heads_tx.clone();
        async move {
            let mut pending = Vec::new();
            let Some(head) = read_request_head(&mut s, &mut pending).await else {
                return;
            };
            let _ = heads_tx.send(head);
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                .await;
            // Echo the request's chunked bytes as they come, chunk framing
            // and all, until the last chunk.
            loop {
                if !pending.is_empty() {
                    let piece = std::mem::take(&mut pending);
                    let done = piece.ends_with(b"0\r\n\r\n");
                    let mut framed = format!("{:x}\r\n", piece.len()).into_bytes();
                    framed.extend_from_slice(&piece);
                    framed.extend_from_slice(b"\r\n");
                    if done {
                        framed.extend_from_slice(b"0\r\n\r\n");
                    }
                    if s.write_all(&framed).await.is_err() || done {
                        return;
                    }
                }
                let mut buf = [0u8; 4096];
                match tokio::time::timeout(WAIT, s.read(&mut buf)).await {
                    Ok(Ok(n)) if n > 0 => pending.extend_from_slice(&buf[..n]),
                    _ => return,
                }
            }
        }
    })
    .await;
    let gw = gateway(&up).await;
    let mut c = TcpStream::connect(gw.addr("public")).await.unwrap();
    c.write_all(
        b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n",
    )
    .await
    .unwrap();
    let mut seen = Vec::new();
    let deadline = levee_core::time::now() + WAIT;
    while !seen.windows(5).any(|w| w == b"first") {
        let mut buf = [0u8; 4096];
        match tokio::time::timeout_at(deadline, c.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => seen.extend_from_slice(&buf[..n]),
            _ => panic!(
                "the first piece came back before the second was sent: {}",
                String::from_utf8_lossy(&seen)
            ),
        }
    }
    c.write_all(b"6\r\nsecond\r\n0\r\n\r\n").await.unwrap();
    while !seen.windows(6).any(|w| w == b"second") {
        let mut buf = [0u8; 4096];
        match tokio::time::timeout_at(deadline, c.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => seen.extend_from_slice(&buf[..n]),
            _ => panic!(
                "the second piece came back: {}",
                String::from_utf8_lossy(&seen)
            ),
        }
    }
    let head = heads_rx.recv().await.unwrap().to_ascii_lowercase();
    assert!(head.starts_with("post /echo http/1.1\r\n"), "{head}");
    assert!(head.contains("transfer-encoding: chunked\r\n"), "{head}");
    assert!(!head.contains("content-length"), "{head}");
}

#[tokio::test]
async fn a_known_length_body_goes_with_its_length_in_the_same_write_as_the_head() {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
    let up = RawUpstream::start(move |_, mut s| {
        let tx = tx.clone();
        async move {
            let mut buf = vec![0u8; 65536];
            // The first read holds the head and the body: one write.
            if let Ok(Ok(n)) = tokio::time::timeout(WAIT, s.read(&mut buf)).await {
                let _ = tx.send(buf[..n].to_vec());
            }
            let _ = s
                .write_all(b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n")
                .await;
        }
    })
    .await;
    let gw = gateway(&up).await;
    let (status, _, _) = send(&gw, http::Method::POST, "/items", "{\"name\":\"levee\"}").await;
    assert_eq!(status, 201);
    let first = String::from_utf8(rx.recv().await.unwrap()).unwrap();
    assert!(first.starts_with("POST /items HTTP/1.1\r\n"), "{first}");
    assert!(
        first
            .to_ascii_lowercase()
            .contains("content-length: 16\r\n"),
        "{first}"
    );
    assert!(first.ends_with("\r\n\r\n{\"name\":\"levee\"}"), "{first}");
}

/// The first connection answers one request, then takes the next and
/// closes without answering (as an upstream's idle timeout can race a
/// request); later connections answer everything.
async fn drops_the_second_request_of_the_first_connection(n: usize, mut s: TcpStream) {
    let mut pending = Vec::new();
    let mut answered = 0;
    while read_request_head(&mut s, &mut pending).await.is_some() {
        if n == 0 && answered == 1 {
            return;
        }
        answered += 1;
        let answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        if s.write_all(answer).await.is_err() {
            return;
        }
    }
}

#[tokio::test]
async fn a_pooled_connection_closed_by_the_upstream_is_tried_again_only_when_safe() {
    let up = RawUpstream::start(drops_the_second_request_of_the_first_connection).await;
    let gw = gateway(&up).await;
    assert_eq!(get(&gw, "/a").await.0, 200);
    let (status, _, body) = get(&gw, "/b").await;
    assert_eq!((status, body.as_str()), (200, "ok"), "a GET goes again");
    assert_eq!(up.connections(), 2);

    // The same race for a POST: not sent twice, the client is told.
    let up = RawUpstream::start(drops_the_second_request_of_the_first_connection).await;
    let gw = gateway(&up).await;
    assert_eq!(get(&gw, "/a").await.0, 200);
    let (status, headers, _) = send(&gw, http::Method::POST, "/b", "x").await;
    assert_eq!(status, 502);
    assert_eq!(
        headers.get("levee-error").map(|v| v.to_str().unwrap()),
        Some("upstream_reset")
    );
    assert_eq!(up.connections(), 1, "the POST was not sent again");
}
