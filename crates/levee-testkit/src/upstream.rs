//! `FakeUpstream`: a real HTTP server on 127.0.0.1:0 whose behaviour is
//! scripted per path, for testing the gateway against upstreams that are
//! slow, failing, streaming, resetting or hanging.

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};

type BoxBody = http_body_util::combinators::BoxBody<Bytes, std::io::Error>;

/// What the upstream does for one path.
#[derive(Debug, Clone)]
pub struct Reply {
    statuses: Vec<u16>,
    /// Start the statuses over after the last, instead of repeating it.
    cycle: bool,
    latency: Duration,
    body_size: Option<usize>,
    chunks: Option<(usize, usize, Duration)>,
    headers: Vec<(String, String)>,
    trailers: Vec<(String, String)>,
    action: Action,
}

#[derive(Debug, Clone, PartialEq)]
enum Action {
    Respond,
    Echo,
    EchoBody,
    Reset,
    Hang,
    CloseAfterHeaders,
}

impl Default for Reply {
    fn default() -> Self {
        Self {
            statuses: vec![200],
            cycle: false,
            latency: Duration::ZERO,
            body_size: None,
            chunks: None,
            headers: Vec::new(),
            trailers: Vec::new(),
            action: Action::Respond,
        }
    }
}

impl Reply {
    /// 200 with the upstream's name as body.
    pub fn ok() -> Self {
        Self::default()
    }
    /// Answer with `status`.
    pub fn status(status: u16) -> Self {
        Self {
            statuses: vec![status],
            ..Self::default()
        }
    }
    /// Answer with these statuses in turn, repeating the last.
    pub fn statuses(statuses: &[u16]) -> Self {
        Self {
            statuses: statuses.to_vec(),
            ..Self::default()
        }
    }
    /// Answer with these statuses in turn, over and over (`[200, 500]`:
    /// every second request fails).
    pub fn cycle(statuses: &[u16]) -> Self {
        Self {
            statuses: statuses.to_vec(),
            cycle: true,
            ..Self::default()
        }
    }
    /// A JSON description of the request: method, path, version, headers, body length.
    pub fn echo() -> Self {
        Self {
            action: Action::Echo,
            ..Self::default()
        }
    }
    /// Answer with `status`, keeping the action (e.g. `echo().answering(503)`
    /// reads the whole request body, then answers 503).
    pub fn answering(mut self, status: u16) -> Self {
        self.statuses = vec![status];
        self
    }
    /// Stream the request body back as the response body, frame by frame.
    pub fn echo_body() -> Self {
        Self {
            action: Action::EchoBody,
            ..Self::default()
        }
    }
    /// Reset the TCP connection (RST) instead of answering.
    pub fn reset() -> Self {
        Self {
            action: Action::Reset,
            ..Self::default()
        }
    }
    /// Never answer.
    pub fn hang() -> Self {
        Self {
            action: Action::Hang,
            ..Self::default()
        }
    }
    /// Send the head (promising a body), then close the connection.
    pub fn close_after_headers() -> Self {
        Self {
            action: Action::CloseAfterHeaders,
            ..Self::default()
        }
    }
    /// Wait this long before answering.
    pub fn latency(mut self, d: Duration) -> Self {
        self.latency = d;
        self
    }
    /// A body of exactly `n` bytes.
    pub fn body_size(mut self, n: usize) -> Self {
        self.body_size = Some(n);
        self
    }
    /// `count` chunks of `size` bytes, `every` apart.
    pub fn chunks(mut self, count: usize, size: usize, every: Duration) -> Self {
        self.chunks = Some((count, size, every));
        self
    }
    /// An extra response header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
    /// A trailer sent after the body.
    pub fn trailer(mut self, name: &str, value: &str) -> Self {
        self.trailers.push((name.into(), value.into()));
        self
    }
}

#[derive(Debug, Default)]
struct Counters {
    requests: AtomicU64,
    h2_requests: AtomicU64,
    connections: AtomicU64,
    per_path: Mutex<HashMap<String, u64>>,
    seq: Mutex<HashMap<String, usize>>,
    last_headers: Mutex<Option<HeaderMap>>,
}

/// Builds a [`FakeUpstream`].
#[derive(Debug, Default)]
pub struct FakeUpstreamBuilder {
    name: String,
    routes: HashMap<String, Reply>,
    default: Reply,
    addr: Option<SocketAddr>,
    capacity: Option<usize>,
}

impl FakeUpstreamBuilder {
    /// Serve at most `n` requests at once; the others wait their turn (a
    /// server of fixed capacity: latency grows with load beyond it).
    pub fn capacity(mut self, n: usize) -> Self {
        self.capacity = Some(n);
        self
    }
    /// Scripted behaviour for requests to exactly `path`.
    pub fn route(mut self, path: &str, reply: Reply) -> Self {
        self.routes.insert(path.to_string(), reply);
        self
    }
    /// Behaviour for every other path (default: 200 with the name as body).
    pub fn otherwise(mut self, reply: Reply) -> Self {
        self.default = reply;
        self
    }
    /// Bind this address instead of 127.0.0.1:0 (to restart on the same port).
    pub fn bind(mut self, addr: SocketAddr) -> Self {
        self.addr = Some(addr);
        self
    }
    /// Starts serving HTTP/1.1 and h2c (prior knowledge) on one port.
    pub async fn start(self) -> FakeUpstream {
        let want = self.addr.unwrap_or(SocketAddr::from(([127, 0, 0, 1], 0)));
        // A restart on the same port may race the old instance's listener,
        // which closes asynchronously: retry for a while.
        let mut tries = 0;
        let listener = loop {
            match TcpListener::bind(want).await {
                Ok(l) => break l,
                Err(e) if tries < 250 && self.addr.is_some() => {
                    let _ = e;
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("bind fake upstream on {want}: {e}"),
            }
        };
        let addr = listener.local_addr().expect("local addr");
        let state = Arc::new(State {
            name: self.name,
            routes: self.routes,
            default: self.default,
            counters: Counters::default(),
            capacity: self
                .capacity
                .map(|n| Arc::new(tokio::sync::Semaphore::new(n))),
        });
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let task_state = state.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stopped.changed() => return,
                    accepted = listener.accept() => {
                        let Ok((stream, _)) = accepted else { continue };
                        task_state.counters.connections.fetch_add(1, Ordering::Relaxed);
                        tokio::spawn(serve_conn(task_state.clone(), stream, stopped.clone()));
                    }
                }
            }
        });
        FakeUpstream { addr, state, stop }
    }
}

struct State {
    name: String,
    routes: HashMap<String, Reply>,
    default: Reply,
    counters: Counters,
    capacity: Option<Arc<tokio::sync::Semaphore>>,
}

/// A scripted upstream server; stops when dropped.
pub struct FakeUpstream {
    addr: SocketAddr,
    state: Arc<State>,
    stop: tokio::sync::watch::Sender<bool>,
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}

impl FakeUpstream {
    /// A builder; `name` is the default response body and `x-upstream` header.
    pub fn builder(name: &str) -> FakeUpstreamBuilder {
        FakeUpstreamBuilder {
            name: name.to_string(),
            ..Default::default()
        }
    }

    /// An upstream answering 200 with `name` everywhere.
    pub async fn start(name: &str) -> FakeUpstream {
        Self::builder(name).start().await
    }

    /// One upstream per name, each answering 200 with its name everywhere
    /// (`let [a, b] = FakeUpstream::start_each(["a", "b"]).await;`).
    pub async fn start_each<const N: usize>(names: [&str; N]) -> [FakeUpstream; N] {
        let mut out = Vec::with_capacity(N);
        for name in names {
            out.push(Self::start(name).await);
        }
        match out.try_into() {
            Ok(all) => all,
            Err(_) => unreachable!("one upstream per name"),
        }
    }

    /// `n` upstreams named `PREFIX0`, `PREFIX1`..., each answering 200 with
    /// its name everywhere.
    pub async fn start_many(prefix: &str, n: usize) -> Vec<FakeUpstream> {
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            out.push(Self::start(&format!("{prefix}{i}")).await);
        }
        out
    }

    /// Its address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Requests received.
    pub fn requests(&self) -> u64 {
        self.state.counters.requests.load(Ordering::Relaxed)
    }

    /// Requests received over HTTP/2.
    pub fn h2_requests(&self) -> u64 {
        self.state.counters.h2_requests.load(Ordering::Relaxed)
    }

    /// Requests received for exactly `path`.
    pub fn requests_to(&self, path: &str) -> u64 {
        self.state
            .counters
            .per_path
            .lock()
            .unwrap()
            .get(path)
            .copied()
            .unwrap_or(0)
    }

    /// TCP connections accepted.
    pub fn connections(&self) -> u64 {
        self.state.counters.connections.load(Ordering::Relaxed)
    }

    /// Headers of the most recent request.
    pub fn last_headers(&self) -> Option<HeaderMap> {
        self.state.counters.last_headers.lock().unwrap().clone()
    }
}

/// TCP stream that closes with RST when killed.
struct KillableIo {
    inner: TcpStream,
    killed: Arc<AtomicBool>,
}

impl Drop for KillableIo {
    fn drop(&mut self) {
        if self.killed.load(Ordering::Relaxed) {
            let _ = self.inner.set_zero_linger();
        }
    }
}

impl tokio::io::AsyncRead for KillableIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for KillableIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[derive(Debug)]
struct Killed;
impl std::fmt::Display for Killed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection reset by script")
    }
}
impl std::error::Error for Killed {}

async fn serve_conn(
    state: Arc<State>,
    stream: TcpStream,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let killed = Arc::new(AtomicBool::new(false));
    let io = TokioIo::new(KillableIo {
        inner: stream,
        killed: killed.clone(),
    });
    let service = hyper::service::service_fn(move |req| {
        let state = state.clone();
        let killed = killed.clone();
        async move { respond(state, killed, req).await }
    });
    let builder = auto::Builder::new(TokioExecutor::new());
    let conn = builder.serve_connection_with_upgrades(io, service);
    tokio::select! {
        _ = conn => {}
        _ = stopped.changed() => {}
    }
}

fn full(b: impl Into<Bytes>) -> BoxBody {
    Full::new(b.into())
        .map_err(|never: Infallible| match never {})
        .boxed()
}

async fn respond(
    state: Arc<State>,
    killed: Arc<AtomicBool>,
    req: Request<Incoming>,
) -> Result<Response<BoxBody>, Killed> {
    let c = &state.counters;
    c.requests.fetch_add(1, Ordering::Relaxed);
    if req.version() == http::Version::HTTP_2 {
        c.h2_requests.fetch_add(1, Ordering::Relaxed);
    }
    let path = req.uri().path().to_string();
    *c.per_path.lock().unwrap().entry(path.clone()).or_default() += 1;
    *c.last_headers.lock().unwrap() = Some(req.headers().clone());
    let reply = state.routes.get(&path).unwrap_or(&state.default).clone();
    let status = {
        let mut seq = c.seq.lock().unwrap();
        let i = seq.entry(path.clone()).or_default();
        let n = reply.statuses.len();
        let s = reply.statuses[if reply.cycle { *i % n } else { (*i).min(n - 1) }];
        *i += 1;
        s
    };
    // A fixed-capacity server holds a slot while it works.
    let _slot = match &state.capacity {
        Some(sem) => sem.clone().acquire_owned().await.ok(),
        None => None,
    };
    if !reply.latency.is_zero() {
        tokio::time::sleep(reply.latency).await;
    }
    let mut builder = Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::OK))
        .header("x-upstream", state.name.as_str());
    for (k, v) in &reply.headers {
        builder = builder.header(k.as_str(), v.as_str());
    }
    let body = match reply.action {
        Action::Reset => {
            killed.store(true, Ordering::Relaxed);
            return Err(Killed);
        }
        Action::Hang => {
            std::future::pending::<()>().await;
            unreachable!("pending never resolves")
        }
        Action::CloseAfterHeaders => {
            builder = builder.header("content-length", "1000000");
            // The pause lets the head and first bytes leave before the close.
            let stream = futures_util::stream::unfold(0u8, |step| async move {
                match step {
                    0 => Some((Ok(Frame::data(Bytes::from_static(b"partial"))), 1)),
                    1 => {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        Some((Err(std::io::Error::other("closing after headers")), 2))
                    }
                    _ => None,
                }
            });
            StreamBody::new(stream).boxed()
        }
        Action::Echo => {
            let method = req.method().to_string();
            let uri = req.uri().to_string();
            let version = format!("{:?}", req.version());
            let headers: serde_json::Map<String, serde_json::Value> = req
                .headers()
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").into()))
                .collect();
            let body = req
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            builder = builder.header("content-type", "application/json");
            full(
                serde_json::json!({
                    "method": method, "uri": uri, "version": version,
                    "headers": headers, "body_len": body.len(),
                })
                .to_string(),
            )
        }
        Action::EchoBody => {
            let trailers = reply.trailers.clone();
            let body = req.into_body().map_err(std::io::Error::other);
            if trailers.is_empty() {
                body.boxed()
            } else {
                with_trailers(body.boxed(), trailers)
            }
        }
        Action::Respond => {
            if let Some((count, size, every)) = reply.chunks {
                let trailers = reply.trailers.clone();
                let stream = futures_util::stream::unfold(0usize, move |i| {
                    let trailers = trailers.clone();
                    async move {
                        if i < count {
                            if i > 0 {
                                tokio::time::sleep(every).await;
                            }
                            Some((Ok(Frame::data(Bytes::from(vec![b'x'; size]))), i + 1))
                        } else if i == count && !trailers.is_empty() {
                            Some((Ok(Frame::trailers(header_map(&trailers))), i + 1))
                        } else {
                            None
                        }
                    }
                });
                StreamBody::new(stream).boxed()
            } else {
                let bytes = match reply.body_size {
                    Some(n) => Bytes::from(vec![b'x'; n]),
                    None => Bytes::from(state.name.clone()),
                };
                if reply.trailers.is_empty() {
                    full(bytes)
                } else {
                    with_trailers(full(bytes), reply.trailers.clone())
                }
            }
        }
    };
    Ok(builder.body(body).expect("valid response"))
}

fn header_map(pairs: &[(String, String)]) -> HeaderMap {
    pairs
        .iter()
        .filter_map(|(k, v)| {
            Some((
                HeaderName::from_bytes(k.as_bytes()).ok()?,
                HeaderValue::from_str(v).ok()?,
            ))
        })
        .collect()
}

/// Appends a trailers frame after `body`.
fn with_trailers(body: BoxBody, trailers: Vec<(String, String)>) -> BoxBody {
    let trailer_frame =
        futures_util::stream::once(async move { Ok(Frame::trailers(header_map(&trailers))) });
    let data = http_body_util::BodyStream::new(body);
    StreamBody::new(futures_util::StreamExt::chain(data, trailer_frame)).boxed()
}
