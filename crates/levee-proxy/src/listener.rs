//! Listeners and connections: accepting under `max_connections`, the TLS
//! handshake, serving HTTP/1.1 and HTTP/2 (h2c prior knowledge or ALPN) with
//! the listener's limits, closing idle connections, and graceful drain.

use crate::gateway::Shared;
use crate::metrics::ListenerMetrics;
use crate::pipeline;
use crate::router::Router;
use arc_swap::ArcSwap;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use levee_config::Limits;
use levee_core::Clock;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What a listener applies to each new connection and request; replaced on reload.
pub(crate) struct ListenerConfig {
    pub(crate) limits: Limits,
    pub(crate) tls: Option<tokio_rustls::TlsAcceptor>,
    pub(crate) router: Router,
    /// How requests' tenants are identified (the same for every listener).
    pub(crate) tenants: Arc<crate::tenant::TenantResolver>,
    /// Where clients read their jobs (`GET {prefix}/{id}`), when a route
    /// on this listener is async.
    pub(crate) jobs_prefix: Option<String>,
}

/// A bound listener.
pub(crate) struct ListenerState {
    pub(crate) name: String,
    pub(crate) addr: SocketAddr,
    pub(crate) configured: SocketAddr,
    pub(crate) current: ArcSwap<ListenerConfig>,
    active: AtomicUsize,
    metrics: ListenerMetrics,
    stop: watch::Sender<bool>,
    /// The listening socket while the accept loop owns it, for a handover.
    socket: std::sync::Weak<TcpListener>,
}

impl std::fmt::Debug for ListenerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListenerState")
            .field("name", &self.name)
            .field("addr", &self.addr)
            .finish()
    }
}

impl ListenerState {
    /// Binds `configured` (or takes the socket a predecessor passed for
    /// it) and starts accepting.
    pub(crate) async fn start(
        shared: &Arc<Shared>,
        name: String,
        configured: SocketAddr,
        config: ListenerConfig,
    ) -> std::io::Result<Arc<Self>> {
        let tcp = match shared.take_inherited(&name, configured) {
            Some(socket) => {
                socket.set_nonblocking(true)?;
                let tcp = TcpListener::from_std(socket)?;
                tracing::info!(listener = %name, address = %tcp.local_addr()?, "listening on the socket handed over");
                tcp
            }
            None => bind(configured)?,
        };
        let addr = tcp.local_addr()?;
        let tcp = Arc::new(tcp);
        let (stop, _) = watch::channel(false);
        let state = Arc::new(Self {
            metrics: ListenerMetrics::new(&shared.registry, &name),
            name,
            addr,
            configured,
            current: ArcSwap::from_pointee(config),
            active: AtomicUsize::new(0),
            stop,
            socket: Arc::downgrade(&tcp),
        });
        tokio::spawn(accept_loop(shared.clone(), state.clone(), tcp));
        Ok(state)
    }

    /// A duplicate of the listening socket, while this listener accepts.
    pub(crate) fn dup_socket(&self) -> Option<std::os::fd::OwnedFd> {
        use std::os::fd::AsFd;
        let socket = self.socket.upgrade()?;
        if *self.stop.borrow() {
            return None;
        }
        socket.as_fd().try_clone_to_owned().ok()
    }

    /// Stops accepting; open connections carry on until drained.
    pub(crate) fn stop_accepting(&self) {
        self.stop.send_replace(true);
    }

    /// Open connections.
    pub(crate) fn active_connections(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }
}

fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(4096)
}

async fn accept_loop(shared: Arc<Shared>, listener: Arc<ListenerState>, tcp: Arc<TcpListener>) {
    let mut stop = listener.stop.subscribe();
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            accepted = tcp.accept() => match accepted {
                Ok((stream, peer)) => {
                    let config = listener.current.load_full();
                    let active = listener.active.load(Ordering::Relaxed);
                    let refusing = shared.pressure.level() >= crate::pressure::REFUSE;
                    if active >= config.limits.max_connections as usize || refusing {
                        listener.metrics.rejected.inc();
                        drop(stream);
                        continue;
                    }
                    listener.active.fetch_add(1, Ordering::Relaxed);
                    listener.metrics.active.inc();
                    listener.metrics.accepted.inc();
                    tokio::spawn(serve(shared.clone(), listener.clone(), config, stream, peer));
                }
                Err(e) => {
                    // Out of file descriptors and similar: back off, don't spin.
                    tracing::warn!(listener = %listener.name, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
    tracing::info!(listener = %listener.name, "stopped accepting");
}

/// One connection's facts and live counters, shared by its requests.
#[derive(Debug)]
pub(crate) struct ConnInfo {
    pub(crate) listener: Arc<ListenerState>,
    pub(crate) peer: SocketAddr,
    pub(crate) tls: bool,
    in_flight: AtomicU32,
    last_active: AtomicU64,
    /// When bytes of a new request head began to arrive (0: none pending).
    head_started: AtomicU64,
    http2: AtomicBool,
    /// Plain HTTP/1.1 connections take over upgraded sockets themselves
    /// (`http1`); others leave upgrades to hyper.
    manual_upgrades: AtomicBool,
    pending_upgrade: std::sync::Mutex<Option<PendingUpgrade>>,
    shared: Arc<Shared>,
}

/// A 101 answered by the upstream, waiting for the connection task to join
/// the client's socket to it.
pub(crate) struct PendingUpgrade {
    pub(crate) upstream: hyper::upgrade::OnUpgrade,
    pub(crate) endpoint: Arc<crate::cluster::EndpointState>,
}

impl std::fmt::Debug for PendingUpgrade {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingUpgrade").finish_non_exhaustive()
    }
}

impl ConnInfo {
    /// A connection that is not one: what the delivery of an async route's
    /// job goes out on, as if it came from `peer` on `listener`.
    pub(crate) fn internal(
        shared: Arc<Shared>,
        listener: Arc<ListenerState>,
        peer: SocketAddr,
    ) -> Self {
        let tls = listener.current.load().tls.is_some();
        Self::new(shared, listener, peer, tls)
    }

    /// A connection's facts and fresh counters.
    fn new(shared: Arc<Shared>, listener: Arc<ListenerState>, peer: SocketAddr, tls: bool) -> Self {
        Self {
            listener,
            peer,
            tls,
            in_flight: AtomicU32::new(0),
            last_active: AtomicU64::new(shared.clock.now()),
            head_started: AtomicU64::new(0),
            http2: AtomicBool::new(false),
            manual_upgrades: AtomicBool::new(false),
            pending_upgrade: std::sync::Mutex::new(None),
            shared,
        }
    }

    /// The gateway's shared state.
    pub(crate) fn shared(&self) -> &Shared {
        &self.shared
    }

    /// Whether the connection task (not hyper) completes upgrades.
    pub(crate) fn manual_upgrades(&self) -> bool {
        self.manual_upgrades.load(Ordering::Relaxed)
    }

    /// Hands an upstream 101 to the connection task.
    pub(crate) fn set_pending_upgrade(&self, upgrade: PendingUpgrade) {
        if let Ok(mut slot) = self.pending_upgrade.lock() {
            *slot = Some(upgrade);
        }
    }

    pub(crate) fn take_pending_upgrade(&self) -> Option<PendingUpgrade> {
        self.pending_upgrade.lock().ok()?.take()
    }

    pub(crate) fn request_started(&self, version: http::Version) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.head_started.store(0, Ordering::Relaxed);
        if version == http::Version::HTTP_2 {
            self.http2.store(true, Ordering::Relaxed);
        }
    }

    /// Bytes arrived: with no request in flight they start a new head.
    pub(crate) fn bytes_read(&self) {
        if self.in_flight.load(Ordering::Relaxed) == 0
            && self.head_started.load(Ordering::Relaxed) == 0
        {
            self.head_started
                .store(self.shared.clock.now().max(1), Ordering::Relaxed);
        }
    }

    /// How long an HTTP/1 request head has been arriving, if one is.
    fn head_pending_for(&self) -> Option<Duration> {
        if self.http2.load(Ordering::Relaxed) || self.in_flight.load(Ordering::Relaxed) > 0 {
            return None;
        }
        match self.head_started.load(Ordering::Relaxed) {
            0 => None,
            at => Some(Duration::from_nanos(
                self.shared.clock.now().saturating_sub(at),
            )),
        }
    }

    pub(crate) fn request_finished(&self, now: levee_core::Nanos) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.last_active.store(now, Ordering::Relaxed);
    }

    pub(crate) fn idle_for(&self) -> Option<Duration> {
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return None;
        }
        let last = self.last_active.load(Ordering::Relaxed);
        Some(Duration::from_nanos(
            self.shared.clock.now().saturating_sub(last),
        ))
    }
}

struct ActiveGuard(Arc<ListenerState>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
        self.0.metrics.active.dec();
    }
}

async fn serve(
    shared: Arc<Shared>,
    listener: Arc<ListenerState>,
    config: Arc<ListenerConfig>,
    stream: TcpStream,
    peer: SocketAddr,
) {
    let _guard = ActiveGuard(listener.clone());
    let _ = stream.set_nodelay(true);
    let limits = config.limits.clone();
    let conn = Arc::new(ConnInfo::new(
        shared.clone(),
        listener,
        peer,
        config.tls.is_some(),
    ));
    let tracked = TrackedIo {
        inner: stream,
        conn: conn.clone(),
    };
    match &config.tls {
        None => serve_plain(shared, conn, limits, tracked).await,
        // Boxed: the TLS state machine is large, and a task is as large as
        // its largest path; cleartext connections should not pay for it.
        Some(acceptor) => {
            Box::pin(serve_tls(shared, conn, limits, tracked, acceptor.clone())).await
        }
    }
}

async fn serve_tls(
    shared: Arc<Shared>,
    conn: Arc<ConnInfo>,
    limits: Limits,
    tracked: TrackedIo,
    acceptor: tokio_rustls::TlsAcceptor,
) {
    let peer = conn.peer;
    let handshake =
        tokio::time::timeout(limits.header_read_timeout, acceptor.accept(tracked)).await;
    match handshake {
        Ok(Ok(tls)) => serve_http(shared, conn, limits, TokioIo::new(tls)).await,
        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
    }
}

/// The HTTP/2 connection preface (RFC 9113 §3.4).
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// While draining, how long an HTTP/1.1 connection with nothing in flight
/// stays open. A client using the connection sends its next request sooner
/// and is answered with `Connection: close`; closing at once would race that
/// request, which the client may already have sent (and then sees a reset).
const DRAIN_IDLE_CLOSE: Duration = Duration::from_secs(1);

/// How long a connection may stay idle: `idle_timeout`, shorter while draining.
pub(crate) fn idle_limit(limits: &Limits, draining: bool) -> Duration {
    if draining {
        DRAIN_IDLE_CLOSE.min(limits.idle_timeout)
    } else {
        limits.idle_timeout
    }
}

/// Nothing in flight, no request head arriving, and idle at least `limit`.
fn quiet_for(conn: &ConnInfo, limit: Duration) -> bool {
    conn.head_pending_for().is_none() && conn.idle_for().is_some_and(|idle| idle >= limit)
}

/// While draining, an HTTP/1.x answer tells the client to close, so it
/// sends its next request on a new connection (to whichever process accepts
/// it). HTTP/2 gets GOAWAY instead; a 101 keeps its connection.
pub(crate) fn close_if_draining(
    mut resp: http::Response<crate::ProxyBody>,
    request_version: http::Version,
    drain: &watch::Receiver<bool>,
) -> http::Response<crate::ProxyBody> {
    if *drain.borrow()
        && request_version < http::Version::HTTP_2
        && resp.status() != http::StatusCode::SWITCHING_PROTOCOLS
    {
        resp.headers_mut().insert(
            http::header::CONNECTION,
            http::HeaderValue::from_static("close"),
        );
    }
    resp
}

/// A cleartext connection: HTTP/2 with prior knowledge if it starts with the
/// preface, HTTP/1.1 otherwise.
async fn serve_plain(
    shared: Arc<Shared>,
    conn_info: Arc<ConnInfo>,
    limits: Limits,
    mut io: TrackedIo,
) {
    use tokio::io::AsyncReadExt;
    let mut first = [0u8; 24];
    let mut len = 0;
    let decided = tokio::time::timeout(limits.header_read_timeout, async {
        while len < first.len() {
            match io.read(&mut first[len..]).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => len += n,
            }
            if first[..len] != H2_PREFACE[..len] {
                break;
            }
        }
        true
    })
    .await;
    if decided != Ok(true) {
        return;
    }
    let first = bytes::Bytes::copy_from_slice(&first[..len]);
    if first.as_ref() == H2_PREFACE {
        let io = Prefixed::new(first, io);
        Box::pin(serve_http(shared, conn_info, limits, TokioIo::new(io))).await;
    } else {
        conn_info.manual_upgrades.store(true, Ordering::Relaxed);
        crate::http1::serve(shared, conn_info, limits, io.inner, first).await;
    }
}

/// An I/O object that first yields bytes already read from it.
pub(crate) struct Prefixed<I> {
    prefix: bytes::Bytes,
    inner: I,
}

impl<I> Prefixed<I> {
    pub(crate) fn new(prefix: bytes::Bytes, inner: I) -> Self {
        Self { prefix, inner }
    }
}

impl<I: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Prefixed<I> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix.split_to(n));
            return std::task::Poll::Ready(Ok(()));
        }
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

/// Writes go straight to the `inner` field: these wrappers only watch or
/// replay the read side.
macro_rules! write_through_inner {
    ($ty:ty $(, $generic:ident)?) => {
        impl$(<$generic: tokio::io::AsyncWrite + Unpin>)? tokio::io::AsyncWrite for $ty {
            fn poll_write(
                mut self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                buf: &[u8],
            ) -> std::task::Poll<std::io::Result<usize>> {
                std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
            }

            fn poll_write_vectored(
                mut self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                bufs: &[std::io::IoSlice<'_>],
            ) -> std::task::Poll<std::io::Result<usize>> {
                std::pin::Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
            }

            fn is_write_vectored(&self) -> bool {
                self.inner.is_write_vectored()
            }

            fn poll_flush(
                mut self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::pin::Pin::new(&mut self.inner).poll_flush(cx)
            }

            fn poll_shutdown(
                mut self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
            }
        }
    };
}

write_through_inner!(Prefixed<I>, I);

/// The TCP stream, noting when request bytes arrive so the watchdog can tell
/// a slow request head (cut at `header_read_timeout`) from an idle
/// keep-alive connection (cut at `idle_timeout`).
struct TrackedIo {
    inner: TcpStream,
    conn: Arc<ConnInfo>,
}

impl tokio::io::AsyncRead for TrackedIo {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.conn.bytes_read();
        }
        polled
    }
}

write_through_inner!(TrackedIo);

/// Counts a request the HTTP/1.1 codec refused before the pipeline saw it
/// (a head over the codec's limit gets hyper's 431, a malformed head its
/// 400), under the same reasons as the pipeline's own refusals.
fn count_codec_refusal(shared: &Shared, peer: SocketAddr, e: &(dyn std::error::Error + 'static)) {
    let mut cause = Some(e);
    while let Some(c) = cause {
        if let Some(h) = c.downcast_ref::<hyper::Error>() {
            let kind = if h.is_parse_too_large() {
                levee_core::ErrorKind::HeadersTooLarge
            } else if h.is_parse() {
                levee_core::ErrorKind::BadRequest
            } else {
                return;
            };
            shared.metrics.error(kind).inc();
            if shared.access_log() {
                tracing::info!(
                    target: "levee::access",
                    peer = %peer,
                    status = kind.status().as_u16(),
                    error = kind.reason(),
                    "request refused by the HTTP/1.1 codec"
                );
            }
            return;
        }
        cause = c.source();
    }
}

/// The codec's own limits sit at twice the configured ones: the pipeline
/// answers heads between the two itself (431 with `levee-error`), and the
/// codec still bounds memory for anything larger (its bare 431 is counted
/// by [`count_codec_refusal`]).
pub(crate) fn codec_head_limit(limits: &Limits) -> u64 {
    limits
        .max_request_header_bytes
        .saturating_mul(2)
        .max(16 * 1024)
}

async fn serve_http<I>(shared: Arc<Shared>, conn_info: Arc<ConnInfo>, limits: Limits, io: I)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let peer = conn_info.peer;
    let mut drain = shared.drain_signal();
    let service_conn = conn_info.clone();
    let service_drain = drain.clone();
    let service = hyper::service::service_fn(move |req| {
        let version = req.version();
        let handled = pipeline::handle(
            service_conn.clone(),
            req.map(crate::body::RequestBody::from),
        );
        let drain = service_drain.clone();
        async move {
            let resp = handled.await?;
            Ok::<_, crate::fault::Reset>(close_if_draining(resp, version, &drain))
        }
    });

    let codec_limit = codec_head_limit(&limits);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        // Slow heads are cut by the watchdog below, which (unlike the codec's
        // timer) does not also count the idle time between requests.
        .header_read_timeout(None)
        .max_buf_size(codec_limit.min(usize::MAX as u64) as usize)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.max_concurrent_streams)
        .max_header_list_size(codec_limit.min(u64::from(u32::MAX)) as u32)
        .keep_alive_interval(Some(Duration::from_secs(30)));
    let conn = builder.serve_connection_with_upgrades(io, service);
    tokio::pin!(conn);

    let shortest = limits.idle_timeout.min(limits.header_read_timeout);
    let tick = (shortest / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
    let mut watchdog = tokio::time::interval(tick);
    watchdog.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Draining: HTTP/2 gets GOAWAY at once; HTTP/1.1 answers carry
    // `Connection: close` and the connection is closed once idle.
    let mut closing = *drain.borrow();
    let mut shut = false;
    loop {
        if closing && !shut && conn_info.http2.load(Ordering::Relaxed) {
            shut = true;
            conn.as_mut().graceful_shutdown();
        }
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    count_codec_refusal(&shared, peer, e.as_ref());
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                break;
            }
            _ = drain.changed(), if !closing => {
                closing = true;
            }
            _ = watchdog.tick() => {
                if conn_info.head_pending_for().is_some_and(|t| t >= limits.header_read_timeout) {
                    // A head that never completes (slowloris): drop the connection.
                    tracing::debug!(%peer, "request head not received in time; closing");
                    break;
                }
                if !shut && quiet_for(&conn_info, idle_limit(&limits, closing)) {
                    shut = true;
                    closing = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
}
