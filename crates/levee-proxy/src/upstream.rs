//! Connections to upstream endpoints.
//!
//! HTTP/1.1: each endpoint keeps a stack of idle connections
//! ([`IdleConnections`]). A request checks one out and drives it itself on
//! Levee's own codec ([`h1`]): the request future writes the request and
//! reads the answer's head, the answer's body reads the rest, so proxying a
//! request needs no second task, no channel and no hand-off between tasks.
//! When the body ends cleanly the connection goes back on the stack. A
//! pooled connection the upstream has meanwhile closed is noticed at
//! checkout; one that fails before any answer is tried again once on a
//! fresh connection when the request is safe to send twice (idempotent,
//! without a body).
//!
//! HTTP/2 (and gRPC): hyper-util's client multiplexes streams over pooled
//! connections in their own tasks. WebSocket upgrades use a fresh HTTP/1.1
//! connection through hyper's client in its own task, which hands the
//! socket over after the 101.
//!
//! The transport seam: HTTP/1.1 connections (requests, health checks,
//! upgrades) are opened by a [`Connector`], [`TcpConnector`] unless the
//! gateway was started with another (`StartOptions::connector`). A connector
//! yields an [`UpstreamIo`], an enum rather than a boxed trait object, so
//! the request path pays no dynamic dispatch per read or write. Tests plug
//! in an in-memory upstream and drive everything after the socket (codec,
//! pools, timeouts, retries, hedges, breakers) on paused time. HTTP/2
//! clusters connect by TCP only.

mod h1;

use crate::body::{BodyError, UpstreamBody};
use crate::guard::{ConnectionCap, ConnectionSlot};
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use levee_core::ErrorKind;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::TcpStream;

/// A pooled HTTP/1.1 connection (boxed: it moves between pool, request
/// and body).
pub(crate) type Http1Conn = Box<h1::Conn>;

/// What [`Connector::connect`] returns: a connection, or the error a TCP
/// connect would give (`ConnectionRefused` and `TimedOut` are classified as
/// such; a future that never completes meets the cluster's connect timeout).
pub type ConnectFuture = Pin<Box<dyn Future<Output = std::io::Result<UpstreamIo>> + Send>>;

/// Opens HTTP/1.1 connections to upstream endpoints. Called only when a
/// request finds no idle pooled connection (and for health checks and
/// upgrades, which go through the same path), so the boxed future costs one
/// allocation per new connection, beside a TCP handshake.
pub trait Connector: std::fmt::Debug + Send + Sync + 'static {
    /// Connects to the endpoint at `addr`.
    fn connect(&self, addr: SocketAddr) -> ConnectFuture;
}

/// The production connector: TCP with `TCP_NODELAY`.
#[derive(Debug, Clone, Copy, Default)]
pub struct TcpConnector;

impl Connector for TcpConnector {
    fn connect(&self, addr: SocketAddr) -> ConnectFuture {
        Box::pin(async move {
            let stream = TcpStream::connect(addr).await?;
            let _ = stream.set_nodelay(true);
            Ok(UpstreamIo::Tcp(stream))
        })
    }
}

/// An upstream connection's byte stream: a TCP socket, or one end of an
/// in-memory pipe (tests). Reads and writes dispatch by `match`.
#[derive(Debug)]
pub enum UpstreamIo {
    /// A TCP connection.
    Tcp(TcpStream),
    /// An in-memory connection whose other end a test serves.
    Memory(tokio::io::DuplexStream),
    /// A connection whose response body an injected fault breaks off
    /// (`crate::fault`).
    Faulted(Box<FaultedIo>),
}

/// A connection that passes the response head and then `after` bytes of
/// body, and then fails as if the upstream had reset it (an injected
/// `reset_mid_body` fault).
#[derive(Debug)]
pub struct FaultedIo {
    inner: UpstreamIo,
    after: u64,
    /// The last bytes of the head seen, to find its blank line.
    window: u32,
    in_body: bool,
    body_seen: u64,
}

impl FaultedIo {
    fn read(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.in_body && self.body_seen >= self.after {
            return Poll::Ready(Err(std::io::ErrorKind::ConnectionReset.into()));
        }
        let start = buf.filled().len();
        let polled = tokio::io::AsyncRead::poll_read(Pin::new(&mut self.inner), cx, buf);
        if !matches!(polled, Poll::Ready(Ok(()))) {
            return polled;
        }
        let mut keep = buf.filled().len();
        for (i, b) in buf.filled()[start..].iter().enumerate() {
            if self.in_body {
                if self.body_seen >= self.after {
                    keep = start + i;
                    break;
                }
                self.body_seen += 1;
            } else {
                self.window = (self.window << 8) | u32::from(*b);
                self.in_body = self.window == u32::from_be_bytes(*b"\r\n\r\n");
            }
        }
        buf.set_filled(keep);
        Poll::Ready(Ok(()))
    }
}

impl tokio::io::AsyncRead for UpstreamIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            UpstreamIo::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            UpstreamIo::Memory(s) => Pin::new(s).poll_read(cx, buf),
            UpstreamIo::Faulted(f) => f.read(cx, buf),
        }
    }
}

impl tokio::io::AsyncWrite for UpstreamIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            UpstreamIo::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            UpstreamIo::Memory(s) => Pin::new(s).poll_write(cx, buf),
            UpstreamIo::Faulted(f) => Pin::new(&mut f.inner).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            UpstreamIo::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            UpstreamIo::Memory(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            UpstreamIo::Faulted(f) => Pin::new(&mut f.inner).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            UpstreamIo::Tcp(s) => s.is_write_vectored(),
            UpstreamIo::Memory(s) => s.is_write_vectored(),
            UpstreamIo::Faulted(f) => f.inner.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            UpstreamIo::Tcp(s) => Pin::new(s).poll_flush(cx),
            UpstreamIo::Memory(s) => Pin::new(s).poll_flush(cx),
            UpstreamIo::Faulted(f) => Pin::new(&mut f.inner).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            UpstreamIo::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            UpstreamIo::Memory(s) => Pin::new(s).poll_shutdown(cx),
            UpstreamIo::Faulted(f) => Pin::new(&mut f.inner).poll_shutdown(cx),
        }
    }
}

/// A failure to get a response head, already classified.
pub(crate) type SendError = (ErrorKind, String);

/// An answer's body: read by Levee's HTTP/1.1 codec, or by hyper
/// (HTTP/2, upgrades).
#[derive(Debug)]
pub(crate) enum ResponseBody {
    Http1(h1::Body),
    Hyper(Incoming),
}

impl ResponseBody {
    /// The HTTP/1.1 connection the body arrived on, once it ended cleanly
    /// and the connection may carry another exchange.
    pub(crate) fn take_connection(&mut self) -> Option<Http1Conn> {
        match self {
            ResponseBody::Http1(body) => body.take_connection(),
            ResponseBody::Hyper(_) => None,
        }
    }
}

/// Why reading an answer's body failed.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamBodyError {
    /// hyper reported it (HTTP/2).
    #[error(transparent)]
    Hyper(#[from] hyper::Error),
    /// Reading from the upstream failed.
    #[error("reading from the upstream failed: {0}")]
    Io(std::io::Error),
    /// The body's framing is invalid.
    #[error("the upstream's body is malformed: {0}")]
    Malformed(levee_h1::Error),
    /// The upstream closed the connection before the body ended.
    #[error("the upstream closed the connection before the body ended")]
    Closed,
}

impl http_body::Body for ResponseBody {
    type Data = Bytes;
    type Error = UpstreamBodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, UpstreamBodyError>>> {
        match self.get_mut() {
            ResponseBody::Http1(body) => body.poll_frame(cx),
            ResponseBody::Hyper(body) => Pin::new(body).poll_frame(cx).map_err(Into::into),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ResponseBody::Http1(body) => body.is_end_stream(),
            ResponseBody::Hyper(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ResponseBody::Http1(body) => body.size_hint(),
            ResponseBody::Hyper(body) => body.size_hint(),
        }
    }
}

/// Idle HTTP/1.1 connections of one endpoint, most recently used on top.
#[derive(Debug, Default)]
pub(crate) struct IdleConnections {
    conns: Mutex<Vec<Http1Conn>>,
}

impl IdleConnections {
    fn checkout(&self, idle_timeout: Duration) -> Option<Http1Conn> {
        let mut conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        while let Some(mut c) = conns.pop() {
            // An expired or upstream-closed connection is dropped (closing it).
            if levee_core::time::now().saturating_duration_since(c.idle_since) < idle_timeout
                && c.reusable()
            {
                return Some(c);
            }
        }
        None
    }

    /// Returns a connection after a complete exchange.
    pub(crate) fn put(&self, mut conn: Http1Conn, max_idle: usize, idle_timeout: Duration) {
        if max_idle == 0 || !conn.reusable() {
            return;
        }
        let now = levee_core::time::now();
        conn.rest(now);
        let mut conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        // The stack is ordered by age, oldest at the bottom: expired ones,
        // and the oldest when full, leave from there.
        let expired = conns
            .iter()
            .take_while(|c| now.duration_since(c.idle_since) >= idle_timeout)
            .count();
        conns.drain(..expired);
        if conns.len() >= max_idle {
            conns.remove(0);
        }
        conns.push(conn);
    }

    /// Number of idle connections, for the admin API.
    pub(crate) fn len(&self) -> usize {
        self.conns.lock().map_or(0, |c| c.len())
    }
}

/// How a cluster reaches its endpoints.
#[derive(Debug)]
pub(crate) enum Transport {
    /// HTTP/1.1 with per-endpoint idle stacks.
    Http1 {
        idle_timeout: Duration,
        connections: Arc<ConnectionCap>,
        connector: Arc<dyn Connector>,
    },
    /// HTTP/2 through hyper-util's pooled client.
    Http2(Box<hyper_util::client::legacy::Client<HttpConnector, UpstreamBody>>),
}

impl Transport {
    /// The cluster's transport; HTTP/1.1 connections are opened by
    /// `connector`, HTTP/2 ones always by TCP.
    pub(crate) fn new(
        config: &levee_config::Cluster,
        connections: Arc<ConnectionCap>,
        connector: Arc<dyn Connector>,
    ) -> Self {
        match config.protocol {
            levee_config::UpstreamProtocol::Http1 => Transport::Http1 {
                idle_timeout: config.pool.idle_timeout,
                connections,
                connector,
            },
            levee_config::UpstreamProtocol::Http2 => {
                let mut connector = HttpConnector::new();
                connector.set_connect_timeout(Some(config.connect_timeout));
                connector.set_nodelay(true);
                connector.enforce_http(true);
                let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
                    .timer(TokioTimer::new())
                    .pool_timer(TokioTimer::new())
                    .pool_idle_timeout(config.pool.idle_timeout)
                    .pool_max_idle_per_host(config.pool.max_idle_per_endpoint)
                    .retry_canceled_requests(true)
                    .set_host(false)
                    .http2_only(true)
                    .http2_keep_alive_interval(Duration::from_secs(30))
                    .http2_keep_alive_timeout(Duration::from_secs(10))
                    .build(connector);
                Transport::Http2(Box::new(client))
            }
        }
    }

    /// Sends `req` to the endpoint at `addr` and waits for the response head.
    /// An HTTP/1.1 answer's body owns its connection, to be returned to
    /// `idle` when it ends; a new one is opened within `connect_timeout`
    /// (HTTP/2 uses the cluster's).
    pub(crate) async fn send(
        &self,
        addr: SocketAddr,
        idle: &IdleConnections,
        req: http::Request<UpstreamBody>,
        upgrade: bool,
        connect_timeout: Duration,
    ) -> Result<http::Response<ResponseBody>, SendError> {
        match self {
            // Rare or heavyweight paths are boxed, so the common HTTP/1.1
            // path's future stays small (it is moved on every request).
            Transport::Http2(client) => match Box::pin(client.request(req)).await {
                Ok(resp) => Ok(resp.map(ResponseBody::Hyper)),
                Err(e) => Err((classify_legacy(&e), error_chain(&e))),
            },
            Transport::Http1 {
                connections,
                connector,
                ..
            } if upgrade => {
                Box::pin(send_upgrade(
                    addr,
                    req,
                    connect_timeout,
                    connections,
                    &**connector,
                ))
                .await
            }
            Transport::Http1 {
                idle_timeout,
                connections,
                connector,
            } => {
                let conn = match idle.checkout(*idle_timeout) {
                    Some(c) => c,
                    None => {
                        Box::pin(connect(addr, connect_timeout, connections, &**connector)).await?
                    }
                };
                match h1::exchange(conn, req).await {
                    Ok(resp) => Ok(resp.map(ResponseBody::Http1)),
                    // A pooled connection the upstream closed meanwhile.
                    Err(h1::Failed {
                        again: Some(req), ..
                    }) => {
                        let conn =
                            Box::pin(connect(addr, connect_timeout, connections, &**connector))
                                .await?;
                        h1::exchange(conn, req)
                            .await
                            .map(|resp| resp.map(ResponseBody::Http1))
                            .map_err(|f| (f.kind, f.detail))
                    }
                    Err(f) => Err((f.kind, f.detail)),
                }
            }
        }
    }
}

impl Transport {
    /// Sends `req` over a fresh HTTP/1.1 connection that an injected fault
    /// shapes: answered `status` by Levee itself without reaching the
    /// endpoint, or broken off `after` bytes into the response body. The
    /// connection is never pooled (it ends with the fault). HTTP/2
    /// clusters send as usual: these faults are HTTP/1.1 only.
    pub(crate) async fn send_faulted(
        &self,
        addr: SocketAddr,
        idle: &IdleConnections,
        req: http::Request<UpstreamBody>,
        connect_timeout: Duration,
        fault: IoFault,
    ) -> Result<http::Response<ResponseBody>, SendError> {
        let Transport::Http1 {
            connections,
            connector,
            ..
        } = self
        else {
            return self.send(addr, idle, req, false, connect_timeout).await;
        };
        let faulted = FaultingConnector {
            inner: connector.clone(),
            fault,
        };
        let (io, slot) = Box::pin(connect_io(addr, connect_timeout, connections, &faulted)).await?;
        h1::exchange(Box::new(h1::Conn::new(io, slot, false)), req)
            .await
            .map(|resp| resp.map(ResponseBody::Http1))
            .map_err(|f| (f.kind, f.detail))
    }
}

/// How an injected fault shapes a connection (see [`Transport::send_faulted`]).
#[derive(Debug, Clone, Copy)]
pub(crate) enum IoFault {
    /// Levee answers this status in the endpoint's place.
    Answer(u16),
    /// The response body breaks off after this many bytes.
    ResetAfter(u64),
}

#[derive(Debug)]
struct FaultingConnector {
    inner: Arc<dyn Connector>,
    fault: IoFault,
}

impl Connector for FaultingConnector {
    fn connect(&self, addr: SocketAddr) -> ConnectFuture {
        match self.fault {
            IoFault::Answer(status) => Box::pin(async move {
                let (ours, theirs) = tokio::io::duplex(64 * 1024);
                tokio::spawn(answer_once(theirs, status));
                Ok(UpstreamIo::Memory(ours))
            }),
            IoFault::ResetAfter(after) => {
                let connecting = self.inner.connect(addr);
                Box::pin(async move {
                    let inner = connecting.await?;
                    Ok(UpstreamIo::Faulted(Box::new(FaultedIo {
                        inner,
                        after,
                        window: 0,
                        in_body: false,
                        body_seen: 0,
                    })))
                })
            }
        }
    }
}

/// Reads one request head from `io` and answers `status`, closing.
async fn answer_once(mut io: tokio::io::DuplexStream, status: u16) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 1 << 20 {
        match io.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let body = b"{\"error\":\"fault_injected\"}\n";
    let reply = format!(
        "HTTP/1.1 {status} Injected\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\nlevee-fault: injected\r\n\r\n",
        body.len()
    );
    let _ = io.write_all(reply.as_bytes()).await;
    let _ = io.write_all(body).await;
    let _ = io.shutdown().await;
    // Drain what the client still sends, so its writes never block.
    while matches!(io.read(&mut buf).await, Ok(n) if n > 0) {}
}

/// An upgrade (WebSocket) request on a fresh connection through hyper's
/// client in its own task, which hands the socket over after a 101.
async fn send_upgrade(
    addr: SocketAddr,
    mut req: http::Request<UpstreamBody>,
    connect_timeout: Duration,
    connections: &Arc<ConnectionCap>,
    connector: &dyn Connector,
) -> Result<http::Response<ResponseBody>, SendError> {
    origin_form(&mut req);
    let (io, slot) = connect_io(addr, connect_timeout, connections, connector).await?;
    let (mut send, conn) = http1::Builder::new()
        .handshake(TokioIo::new(io))
        .await
        .map_err(|e| (ErrorKind::ConnectFailed, format!("{addr}: handshake: {e}")))?;
    tokio::spawn(async move {
        let _slot = slot;
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(error = %e, "upgraded upstream connection ended");
        }
    });
    let resp = send
        .send_request(req)
        .await
        .map_err(|e| (classify_hyper(&e), error_chain(&e)))?;
    Ok(resp.map(ResponseBody::Hyper))
}

/// HTTP/1.1 requests to an origin carry only the path and query
/// (RFC 9112 §3.2.1); HTTP/2 keeps the scheme and authority as pseudo-headers.
fn origin_form<B>(req: &mut http::Request<B>) {
    if req.uri().authority().is_some() {
        let pq = req
            .uri()
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
        *req.uri_mut() = http::Uri::from(pq);
    }
}

/// Opens a connection within `timeout`, if the cluster's cap allows one more.
async fn connect(
    addr: SocketAddr,
    timeout: Duration,
    connections: &Arc<ConnectionCap>,
    connector: &dyn Connector,
) -> Result<Http1Conn, SendError> {
    let (io, slot) = connect_io(addr, timeout, connections, connector).await?;
    Ok(Box::new(h1::Conn::new(io, slot, true)))
}

/// Opens a byte stream within `timeout`, with its place under the cap.
async fn connect_io(
    addr: SocketAddr,
    timeout: Duration,
    connections: &Arc<ConnectionCap>,
    connector: &dyn Connector,
) -> Result<(UpstreamIo, ConnectionSlot), SendError> {
    let Some(slot) = connections.open() else {
        return Err((
            ErrorKind::OverflowConnections,
            format!(
                "the cluster has {} connections open (max_connections) and none idle to {addr}",
                connections.max()
            ),
        ));
    };
    let stream = match tokio::time::timeout(timeout, connector.connect(addr)).await {
        Err(_) => {
            return Err((
                ErrorKind::ConnectTimeout,
                format!(
                    "{addr}: connect timed out after {}",
                    levee_config::format_duration(timeout)
                ),
            ))
        }
        Ok(Err(e)) => {
            let kind = match e.kind() {
                std::io::ErrorKind::ConnectionRefused => ErrorKind::ConnectRefused,
                std::io::ErrorKind::TimedOut => ErrorKind::ConnectTimeout,
                _ => ErrorKind::ConnectFailed,
            };
            return Err((kind, format!("{addr}: connect: {e}")));
        }
        Ok(Ok(s)) => s,
    };
    Ok((stream, slot))
}

/// Reads `body` to its end: the connection it arrived on, when it may
/// carry another exchange.
pub(crate) async fn drain(mut body: ResponseBody) -> Option<Http1Conn> {
    use http_body::Body;
    loop {
        match std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
            Some(Ok(_)) => continue,
            Some(Err(_)) => return None,
            None => return body.take_connection(),
        }
    }
}

/// Maps a connection-level error to the taxonomy by walking its causes.
pub(crate) fn classify_hyper(e: &hyper::Error) -> ErrorKind {
    classify_chain(e, false)
}

fn classify_legacy(e: &hyper_util::client::legacy::Error) -> ErrorKind {
    classify_chain(e, e.is_connect())
}

fn classify_chain(e: &(dyn std::error::Error + 'static), connecting: bool) -> ErrorKind {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        if let Some(h2) = c.downcast_ref::<h2::Error>() {
            if h2.reason() == Some(h2::Reason::REFUSED_STREAM) {
                return ErrorKind::RefusedStream;
            }
        }
        if let Some(body) = c.downcast_ref::<BodyError>() {
            return body.kind();
        }
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind as Io;
            if connecting {
                return match io.kind() {
                    Io::ConnectionRefused => ErrorKind::ConnectRefused,
                    Io::TimedOut => ErrorKind::ConnectTimeout,
                    _ => ErrorKind::ConnectFailed,
                };
            }
            if matches!(
                io.kind(),
                Io::ConnectionReset | Io::BrokenPipe | Io::UnexpectedEof | Io::ConnectionAborted
            ) {
                return ErrorKind::UpstreamReset;
            }
        }
        if let Some(h) = c.downcast_ref::<hyper::Error>() {
            if h.is_parse() || h.is_parse_status() || h.is_parse_too_large() {
                return ErrorKind::UpstreamProtocol;
            }
            if h.is_incomplete_message() || h.is_canceled() || h.is_closed() {
                return ErrorKind::UpstreamReset;
            }
        }
        cause = c.source();
    }
    if connecting {
        ErrorKind::ConnectFailed
    } else {
        ErrorKind::UpstreamReset
    }
}

/// An error and its causes on one line.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}
