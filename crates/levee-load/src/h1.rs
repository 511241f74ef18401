//! The fast path for plain `http://` over HTTP/1.1: one connection per
//! exchange at a time, the request written from bytes serialized once
//! before the run, the answer's head parsed in place (levee-h1) and its
//! body read to its end and thrown away without being copied out.
//!
//! A general client (hyper's pooled one) spends most of its time per
//! request on things a load generator does not need: building a request
//! and a header map, a pool keyed by origin, and a channel to a separate
//! connection task. What wrk does, writing fixed bytes and reading an
//! answer on the same task, is what lets one core reach the origin's
//! limit instead of the client's. TLS and HTTP/2 keep the general client.
//!
//! Answers are framed as RFC 9112 section 6.3 says: no body for `HEAD`,
//! 1xx, 204 and 304; chunked; `Content-Length`; otherwise until the
//! server closes. A connection is reused unless either side said
//! `Connection: close`, the answer is HTTP/1.0 without keep-alive or it
//! ran to the close.

use crate::record::ErrorKind;
use http::{HeaderMap, Method, Uri};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// The largest response head read (status line and headers).
const MAX_HEAD: usize = 64 * 1024;
/// Headers parsed in one answer at most.
const MAX_HEADERS: usize = 100;
/// The read buffer a connection starts with. Small, because a stalled
/// origin can hold thousands of connections open at once (memory is then
/// thousands of these); it doubles, up to [`MAX_BUFFER`], while reads fill it.
const BUFFER: usize = 1024;
/// The read buffer grows no larger than this.
const MAX_BUFFER: usize = 64 * 1024;

/// A request serialized once, with where it goes.
#[derive(Debug)]
pub(crate) struct Wire {
    /// `host:port` to connect to.
    pub(crate) addr: String,
    pub(crate) bytes: Vec<u8>,
    /// `HEAD`: the answer has no body whatever its headers say.
    pub(crate) head: bool,
}

impl Wire {
    /// Serializes `method uri` with `headers` and `body` as hyper would:
    /// origin-form target, `Host` from the URL unless given (the port only
    /// when not 80), `content-length` when there is a body or the method
    /// usually has one.
    pub(crate) fn new(
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<Self, String> {
        let host = uri
            .host()
            .ok_or_else(|| format!("`{uri}`: the URL has no host"))?;
        let port = uri.port_u16().unwrap_or(80);
        let target = uri.path_and_query().map_or("/", |p| p.as_str());
        let mut bytes = Vec::with_capacity(128 + body.len());
        bytes.extend_from_slice(method.as_str().as_bytes());
        bytes.push(b' ');
        bytes.extend_from_slice(target.as_bytes());
        bytes.extend_from_slice(b" HTTP/1.1\r\n");
        if !headers.contains_key(http::header::HOST) {
            bytes.extend_from_slice(b"host: ");
            bytes.extend_from_slice(host.as_bytes());
            if port != 80 {
                bytes.extend_from_slice(format!(":{port}").as_bytes());
            }
            bytes.extend_from_slice(b"\r\n");
        }
        for (name, value) in headers {
            if name == http::header::CONTENT_LENGTH || name == http::header::TRANSFER_ENCODING {
                continue;
            }
            bytes.extend_from_slice(name.as_str().as_bytes());
            bytes.extend_from_slice(b": ");
            bytes.extend_from_slice(value.as_bytes());
            bytes.extend_from_slice(b"\r\n");
        }
        let usually_has_body = matches!(*method, Method::POST | Method::PUT | Method::PATCH);
        if !body.is_empty() || usually_has_body {
            bytes.extend_from_slice(format!("content-length: {}\r\n", body.len()).as_bytes());
        }
        bytes.extend_from_slice(b"\r\n");
        bytes.extend_from_slice(body);
        Ok(Self {
            addr: format!("{host}:{port}"),
            bytes,
            head: *method == Method::HEAD,
        })
    }

    /// Whether the request itself asks to close the connection after it.
    pub(crate) fn closes(headers: &HeaderMap) -> bool {
        headers
            .get_all(http::header::CONNECTION)
            .iter()
            .any(|v| levee_h1::head::has_token(v.as_bytes(), b"close"))
    }
}

/// One open connection and its read buffer.
#[derive(Debug)]
pub(crate) struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    /// Answers it has carried; a reused connection may have been closed
    /// by the server while idle.
    used: u64,
    /// When it was last put back idle.
    idle_since: Option<levee_core::time::Instant>,
    /// The answer head's fields, reused.
    fields: Vec<levee_h1::Field>,
}

/// How an exchange failed, and whether the request may be sent again on a
/// new connection (the server closed an idle connection before answering
/// a byte).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Failure {
    pub(crate) kind: ErrorKind,
    pub(crate) stale: bool,
}

impl Failure {
    fn protocol() -> Self {
        Self {
            kind: ErrorKind::Protocol,
            stale: false,
        }
    }
}

impl Conn {
    pub(crate) async fn connect(addr: &str, timeout: Duration) -> Result<Self, ErrorKind> {
        let stream = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => s,
            Ok(Err(_)) => return Err(ErrorKind::Connect),
            Err(_) => return Err(ErrorKind::Timeout),
        };
        let _ = stream.set_nodelay(true);
        Ok(Self {
            stream,
            buf: Vec::with_capacity(BUFFER),
            used: 0,
            idle_since: None,
            fields: Vec::new(),
        })
    }

    /// Writes `wire` and reads its answer to the end: the status, and
    /// whether the connection can carry another request.
    pub(crate) async fn exchange(
        &mut self,
        wire: &Wire,
        request_closes: bool,
    ) -> Result<(u16, bool), Failure> {
        let reused = self.used > 0;
        self.used += 1;
        let stale = |kind| Failure {
            kind,
            stale: reused,
        };
        if self.stream.write_all(&wire.bytes).await.is_err() {
            return Err(stale(ErrorKind::Protocol));
        }
        self.buf.clear();
        loop {
            let (status, head_len, framing, keep) = loop {
                match parse_head(&self.buf, &mut self.fields)? {
                    Some(head) => break head,
                    None if self.buf.len() >= MAX_HEAD => return Err(Failure::protocol()),
                    None => {
                        let first = self.buf.is_empty();
                        if self.fill().await? == 0 {
                            return Err(if first {
                                stale(ErrorKind::Protocol)
                            } else {
                                Failure::protocol()
                            });
                        }
                    }
                }
            };
            self.buf.drain(..head_len);
            // An interim answer (100 Continue, 103 Early Hints): the real
            // one follows on the same connection.
            if (100..200).contains(&status) && status != 101 {
                continue;
            }
            let framing = if wire.head || status == 204 || status == 304 || status == 101 {
                Framing::Length(0)
            } else {
                framing
            };
            let to_close = self.skip_body(framing).await?;
            let reusable = keep && !to_close && !request_closes && self.buf.is_empty();
            return Ok((status, reusable));
        }
    }

    /// Reads more of the answer into the buffer; how much.
    async fn fill(&mut self) -> Result<usize, Failure> {
        let spare = self.buf.capacity() - self.buf.len();
        if spare < BUFFER / 2 {
            self.buf.reserve(BUFFER);
        }
        let spare = self.buf.capacity() - self.buf.len();
        let n = self
            .stream
            .read_buf(&mut self.buf)
            .await
            .map_err(|_| Failure::protocol())?;
        // A read that filled the buffer: larger answers, larger reads.
        if n == spare && self.buf.capacity() < MAX_BUFFER {
            self.buf.reserve(self.buf.capacity());
        }
        Ok(n)
    }

    /// Consumes the body framed by `framing`; whether it ran to the
    /// connection's close.
    async fn skip_body(&mut self, framing: Framing) -> Result<bool, Failure> {
        match framing {
            Framing::Length(mut left) => loop {
                let have = (self.buf.len() as u64).min(left);
                self.buf.drain(..have as usize);
                left -= have;
                if left == 0 {
                    return Ok(false);
                }
                if self.fill().await? == 0 {
                    return Err(Failure::protocol());
                }
            },
            Framing::Chunked => {
                let mut chunks = levee_h1::chunked::Decoder::default();
                loop {
                    let used = skip_chunks(&mut chunks, &self.buf)?;
                    self.buf.drain(..used);
                    if chunks.is_done() {
                        return Ok(false);
                    }
                    if self.fill().await? == 0 {
                        return Err(Failure::protocol());
                    }
                }
            }
            Framing::UntilClose => loop {
                self.buf.clear();
                if self.fill().await? == 0 {
                    return Ok(true);
                }
            },
        }
    }
}

/// Consumes what `chunks` can of `buf`, data included; how many bytes.
fn skip_chunks(chunks: &mut levee_h1::chunked::Decoder, buf: &[u8]) -> Result<usize, Failure> {
    let mut at = 0;
    while at < buf.len() && !chunks.is_done() {
        at += chunks
            .step(&buf[at..])
            .map_err(|_| Failure::protocol())?
            .consumed;
    }
    Ok(at)
}

/// How an answer's body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Length(u64),
    Chunked,
    UntilClose,
}

/// Parses a response head at the start of `buf` (levee-h1's framing
/// rules): the status, its length, the body's framing and whether the
/// server keeps the connection open. `None` when the head is not complete
/// yet.
fn parse_head(
    buf: &[u8],
    fields: &mut Vec<levee_h1::Field>,
) -> Result<Option<(u16, usize, Framing, bool)>, Failure> {
    let limits = levee_h1::Limits {
        max_head_bytes: MAX_HEAD,
        max_fields: MAX_HEADERS,
    };
    let Some(head) = levee_h1::parse_response(buf, &limits, fields, Default::default())
        .map_err(|_| Failure::protocol())?
    else {
        return Ok(None);
    };
    let framing = match head.framing {
        levee_h1::Framing::None => Framing::Length(0),
        levee_h1::Framing::Length(n) => Framing::Length(n),
        levee_h1::Framing::Chunked => Framing::Chunked,
        levee_h1::Framing::UntilClose => Framing::UntilClose,
    };
    Ok(Some((head.status, head.len, framing, head.keep_alive)))
}

/// Idle connections to one address, most recently used on top: the
/// busiest moments' extra connections sink to the bottom and are closed
/// once idle for [`Pool::IDLE_TIMEOUT`].
#[derive(Debug)]
pub(crate) struct Pool {
    idle: Mutex<Vec<Conn>>,
    max_idle: usize,
}

impl Pool {
    /// Idle connections older than this are closed by [`Pool::prune`].
    pub(crate) const IDLE_TIMEOUT: Duration = Duration::from_secs(2);

    pub(crate) fn new(max_idle: usize) -> Self {
        Self {
            idle: Mutex::new(Vec::new()),
            max_idle,
        }
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<Conn>> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn take(&self) -> Option<Conn> {
        self.idle().pop()
    }

    pub(crate) fn put(&self, mut conn: Conn) {
        conn.idle_since = Some(levee_core::time::now());
        let mut idle = self.idle();
        if idle.len() < self.max_idle {
            idle.push(conn);
        }
    }

    /// Closes the connections idle for longer than [`Pool::IDLE_TIMEOUT`].
    pub(crate) fn prune(&self) {
        let cutoff = levee_core::time::now() - Self::IDLE_TIMEOUT;
        let stale: Vec<Conn> = {
            let mut idle = self.idle();
            let keep_from = idle.partition_point(|c| c.idle_since.is_some_and(|t| t < cutoff));
            idle.drain(..keep_from).collect()
        };
        drop(stale);
    }
}

/// Sends `wire` on `conn` (or a new connection) and reads the answer; a
/// reused connection the server had closed is replaced once. Gives the
/// connection back when it can carry another request.
pub(crate) async fn send(
    mut conn: Option<Conn>,
    wire: &Wire,
    request_closes: bool,
    connect_timeout: Duration,
) -> (Result<u16, ErrorKind>, Option<Conn>) {
    for _ in 0..2 {
        let mut c = match conn.take() {
            Some(c) => c,
            None => match Conn::connect(&wire.addr, connect_timeout).await {
                Ok(c) => c,
                Err(kind) => return (Err(kind), None),
            },
        };
        match c.exchange(wire, request_closes).await {
            Ok((status, reusable)) => return (Ok(status), reusable.then_some(c)),
            Err(f) if f.stale => continue,
            Err(f) => return (Err(f.kind), None),
        }
    }
    (Err(ErrorKind::Protocol), None)
}

/// [`send`] on a connection from `pool`, put back after.
pub(crate) async fn send_pooled(
    pool: &Pool,
    wire: &Wire,
    request_closes: bool,
    connect_timeout: Duration,
) -> Result<u16, ErrorKind> {
    let (result, conn) = send(pool.take(), wire, request_closes, connect_timeout).await;
    if let Some(c) = conn {
        pool.put(c);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    fn head(text: &str) -> Option<(u16, usize, Framing, bool)> {
        parse_head(text.as_bytes(), &mut Vec::new()).unwrap()
    }

    #[test]
    fn answers_are_framed_by_their_headers() {
        let h = head("HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello").unwrap();
        assert_eq!((h.0, h.2, h.3), (200, Framing::Length(5), true));
        assert_eq!(h.1, 38);
        let h = head("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n").unwrap();
        assert_eq!(h.2, Framing::Chunked);
        let h = head("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n").unwrap();
        assert_eq!((h.2, h.3), (Framing::UntilClose, false));
        let h = head("HTTP/1.0 200 OK\r\ncontent-length: 0\r\n\r\n").unwrap();
        assert!(!h.3, "HTTP/1.0 closes unless it says keep-alive");
        let h =
            head("HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\ncontent-length: 0\r\n\r\n").unwrap();
        assert!(h.3);
        assert_eq!(head("HTTP/1.1 200 OK\r\ncontent-length: 5\r\n"), None);
        assert!(parse_head(
            b"HTTP/1.1 200 OK\r\ncontent-length: x\r\n\r\n",
            &mut Vec::new()
        )
        .is_err());
        assert!(parse_head(
            b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\n",
            &mut Vec::new()
        )
        .is_err());
        assert!(parse_head(b"SSH-2.0-OpenSSH\r\n\r\n", &mut Vec::new()).is_err());
    }

    #[test]
    fn chunked_bodies_end_at_the_empty_line_after_the_trailers() {
        let body = b"5;ext=1\r\nhello\r\n0\r\ngrpc-status: 0\r\n\r\nNEXT";
        // Whole, and fed one byte more at a time.
        let mut c = levee_h1::chunked::Decoder::default();
        assert_eq!(skip_chunks(&mut c, body), Ok(body.len() - 4));
        assert!(c.is_done());
        let mut c = levee_h1::chunked::Decoder::default();
        let mut at = 0;
        for end in 1..=body.len() {
            at += skip_chunks(&mut c, &body[at..end]).unwrap();
            if c.is_done() {
                break;
            }
        }
        assert!(c.is_done());
        assert_eq!(at, body.len() - 4);
        let fresh = levee_h1::chunked::Decoder::default;
        assert!(skip_chunks(&mut fresh(), b"zz\r\n").is_err());
        assert!(skip_chunks(&mut fresh(), b"2\r\nabXX").is_err());
    }

    #[test]
    fn requests_are_serialized_once_with_host_and_length() {
        let mut headers = HeaderMap::new();
        headers.insert("x-a", http::HeaderValue::from_static("1"));
        let w = Wire::new(
            &Method::POST,
            &Uri::from_static("http://example.test:8080/p?q=1"),
            &headers,
            b"body",
        )
        .unwrap();
        assert_eq!(w.addr, "example.test:8080");
        assert_eq!(
            String::from_utf8(w.bytes).unwrap(),
            "POST /p?q=1 HTTP/1.1\r\nhost: example.test:8080\r\nx-a: 1\r\ncontent-length: 4\r\n\r\nbody"
        );
        let w = Wire::new(
            &Method::GET,
            &Uri::from_static("http://h/"),
            &HeaderMap::new(),
            b"",
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(w.bytes).unwrap(),
            "GET / HTTP/1.1\r\nhost: h\r\n\r\n"
        );
    }

    /// `GET /` to `addr`.
    fn get(addr: &str) -> Wire {
        let uri = format!("http://{addr}/").parse().unwrap();
        Wire::new(&Method::GET, &uri, &HeaderMap::new(), b"").unwrap()
    }

    /// A server that answers each request on a connection with the next of
    /// `answers`, then closes.
    async fn serve(answers: Vec<&'static str>) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = listener.accept().await else {
                    return;
                };
                let answers = answers.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0; 4096];
                    for a in answers {
                        let mut got = Vec::new();
                        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                            match s.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => got.extend_from_slice(&buf[..n]),
                            }
                        }
                        // Split the answer to exercise partial reads.
                        let (a, b) = a.as_bytes().split_at(a.len() / 2);
                        let _ = s.write_all(a).await;
                        let _ = s.flush().await;
                        tokio::task::yield_now().await;
                        let _ = s.write_all(b).await;
                    }
                });
            }
        });
        addr
    }

    #[tokio::test]
    async fn one_connection_carries_answers_of_every_framing() {
        let addr = serve(vec![
            "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
            "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 503 No\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
            "HTTP/1.1 204 No Content\r\n\r\n",
            "HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nall of it",
        ])
        .await;
        let wire = get(&addr);
        let mut c = Conn::connect(&addr, Duration::from_secs(5)).await.unwrap();
        assert_eq!(c.exchange(&wire, false).await, Ok((200, true)));
        assert_eq!(c.exchange(&wire, false).await, Ok((503, true)));
        assert_eq!(c.exchange(&wire, false).await, Ok((204, true)));
        assert_eq!(c.exchange(&wire, false).await, Ok((200, false)));
        // The server has closed: a reused connection fails as stale.
        let f = c.exchange(&wire, false).await.unwrap_err();
        assert!(f.stale);
    }

    #[tokio::test]
    async fn large_bodies_are_read_through_a_growing_buffer() {
        let body = "x".repeat(300_000);
        let sized: &'static str = Box::leak(
            format!(
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            )
            .into_boxed_str(),
        );
        let chunked: &'static str = Box::leak(
            format!(
                "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
                body.len()
            )
            .into_boxed_str(),
        );
        let addr = serve(vec![sized, chunked, sized]).await;
        let wire = get(&addr);
        let mut c = Conn::connect(&addr, Duration::from_secs(5)).await.unwrap();
        for _ in 0..3 {
            assert_eq!(c.exchange(&wire, false).await, Ok((200, true)));
        }
        assert!(c.buf.capacity() <= MAX_BUFFER * 2, "{}", c.buf.capacity());
    }

    #[tokio::test]
    async fn the_pool_replaces_a_connection_the_server_closed() {
        // Each connection answers once and closes without saying so.
        let addr = serve(vec!["HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"]).await;
        let wire = get(&addr);
        let pool = Pool::new(4);
        for _ in 0..3 {
            assert_eq!(
                send_pooled(&pool, &wire, false, Duration::from_secs(5)).await,
                Ok(200)
            );
        }
        let refused = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let gone = refused.local_addr().unwrap().to_string();
        drop(refused);
        let wire = get(&gone);
        assert_eq!(
            send_pooled(&Pool::new(4), &wire, false, Duration::from_secs(5)).await,
            Err(ErrorKind::Connect)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn idle_connections_close_after_the_idle_timeout() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let pool = Pool::new(2);
        for _ in 0..3 {
            let c = Conn::connect(&addr, Duration::from_secs(5)).await.unwrap();
            pool.put(c);
        }
        assert_eq!(pool.idle().len(), 2, "at most max_idle are kept");
        tokio::time::advance(Duration::from_secs(1)).await;
        let c = pool.take().unwrap();
        pool.put(c);
        tokio::time::advance(Duration::from_millis(1500)).await;
        pool.prune();
        assert_eq!(pool.idle().len(), 1, "only the one used 1.5 s ago is left");
    }
}
