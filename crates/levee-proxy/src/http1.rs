//! Cleartext HTTP/1.1 connections served by Levee's own codec (`levee-h1`)
//! rather than hyper's: the head is parsed in place in the connection's
//! read buffer, header values are shared slices of it (no copy), a body
//! already read arrives whole, and the answer's head and the first of its
//! body go out in one write. The request then takes the same pipeline as
//! every other (`pipeline::handle`).
//!
//! One task per connection does everything: reads the head, runs the
//! request, feeds a streamed request body to the pipeline through a small
//! channel only when the pipeline asks for it (which is when
//! `Expect: 100-continue` is answered), writes the answer, then waits for
//! the next request. While it waits it holds no buffer (they go back to the
//! worker thread's spares, `bufcache`) and its task is small, so an idle
//! keep-alive connection costs little more than its socket, as in NGINX.
//! A slow head is cut at `header_read_timeout`, an idle connection at
//! `idle_timeout` (a second while draining), and a 101 hands the socket to
//! the upgrade's tunnel.

use crate::body::{DownstreamError, RequestBody};
use crate::bufcache::Buffers;
use crate::gateway::Shared;
use crate::listener::{close_if_draining, idle_limit, ConnInfo, PendingUpgrade, Prefixed};
use crate::pipeline;
use bytes::{Bytes, BytesMut};
use http::header;
use http_body::Body as _;
use levee_config::Limits;
use levee_h1::chunked;
use levee_h1::head::{Field, Framing, RequestHead};
use std::future::Future as _;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::Poll;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch, Notify};
use tokio::time::Sleep;

/// What a read asks the socket for at least.
const READ_CHUNK: usize = 4096;
/// Answer bytes gathered before a write; larger body frames go alone.
const WRITE_BATCH: usize = 64 * 1024;
/// How late past its limit an idle connection may close: the idle timer is
/// not moved for less.
const IDLE_SLACK: std::time::Duration = std::time::Duration::from_millis(10);
/// Header fields a request may carry (hyper's default, kept).
const MAX_FIELDS: usize = 100;

const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// Serves the HTTP/1.1 connection `stream`, whose first bytes (`carry`)
/// were read already.
///
/// A task keeps its largest state for life, parked or not. So the
/// connection's state is captured once and only borrowed from then on (an
/// `async fn`'s arguments would be stored twice), and every await point
/// but the wait between requests is boxed (the exchange, a head arriving
/// in pieces, a refusal, an upgrade's tunnel): what the wait holds is the
/// socket, one idle timer and empty buffers.
pub(crate) fn serve(
    shared: Arc<Shared>,
    conn: Arc<ConnInfo>,
    limits: Limits,
    stream: TcpStream,
    carry: Bytes,
) -> impl std::future::Future<Output = ()> {
    let codec = levee_h1::Limits {
        max_head_bytes: usize::try_from(crate::listener::codec_head_limit(&limits))
            .unwrap_or(usize::MAX),
        max_fields: MAX_FIELDS,
    };
    let mut bufs = Buffers::lend();
    bufs.read.reserve(READ_CHUNK);
    bufs.read.extend_from_slice(&carry);
    let drain = shared.drain_signal();
    let mut c = Connection {
        shared,
        conn,
        limits,
        codec,
        stream,
        drain,
        bufs,
    };
    async move {
        // One timer for the connection's life, moved only when it fires
        // (or when draining shortens the limit): requests do not touch it.
        let idle = std::pin::pin!(tokio::time::sleep(c.limits.idle_timeout));
        if let Some((rest, upgrade)) = c.run(idle).await {
            c.bufs.release();
            Box::pin(pipeline::tunnel(
                Prefixed::new(rest, c.stream),
                upgrade.upstream,
                upgrade.endpoint,
            ))
            .await;
        }
    }
}

/// One connection's state, for its life.
struct Connection {
    shared: Arc<Shared>,
    conn: Arc<ConnInfo>,
    limits: Limits,
    codec: levee_h1::Limits,
    stream: TcpStream,
    drain: watch::Receiver<bool>,
    bufs: Buffers,
}

impl Connection {
    /// Serves requests until the connection closes, or until one is
    /// upgraded: then the bytes read past its head and the upstream's side.
    async fn run(&mut self, mut idle: Pin<&mut Sleep>) -> Option<(Bytes, PendingUpgrade)> {
        loop {
            if self.bufs.read.is_empty() && !self.next_request(idle.as_mut()).await {
                return None;
            }
            let head = match head_now(&self.stream, &self.conn, &self.codec, &mut self.bufs) {
                Head::Whole(head) => head,
                Head::Closed => return None,
                Head::Refused(e) => {
                    Box::pin(self.refuse(e.status(), e.reason())).await;
                    return None;
                }
                Head::Partial => match Box::pin(self.read_head()).await {
                    Ok(head) => head,
                    Err(None) => return None,
                    Err(Some(e)) => {
                        Box::pin(self.refuse(e.status(), e.reason())).await;
                        return None;
                    }
                },
            };
            let head_bytes = self.bufs.read.split_to(head.len).freeze();
            let Some(parts) = request_parts(&head, &head_bytes, &self.bufs.fields) else {
                Box::pin(self.refuse(400, "the request is not valid HTTP/1.1")).await;
                return None;
            };
            let exchange = Exchange {
                conn: &self.conn,
                head: &head,
                draining: *self.drain.borrow(),
            };
            let (keep_alive, upgraded) = {
                let (rd, wr) = self.stream.split();
                let Buffers { read, write, .. } = &mut self.bufs;
                // Boxed, as the pipeline's future inside it.
                Box::pin(exchange.run(parts, rd, wr, read, write, &self.drain)).await?
            };
            if upgraded {
                let upgrade = self.conn.take_pending_upgrade()?;
                return Some((std::mem::take(&mut self.bufs.read).freeze(), upgrade));
            }
            if !keep_alive {
                self.bufs.release();
                let _ = self.stream.shutdown().await;
                return None;
            }
        }
    }

    /// Reads the first bytes of the next request into `bufs.read`; false
    /// when the connection should close (the client left, idle for its
    /// limit, `idle_timeout` or shorter while draining, or the socket
    /// failed). While nothing has arrived the buffers go back to the
    /// thread's spares, so a waiting connection holds none, from its first
    /// answer on.
    async fn next_request(&mut self, mut idle: Pin<&mut Sleep>) -> bool {
        loop {
            // Tried before waiting: readiness may be left over from the
            // last read, and then this read is the one that finds out (a
            // read that would block costs no syscall when readiness is
            // clear).
            if self.bufs.read.capacity() < READ_CHUNK {
                self.bufs.read.reserve(READ_CHUNK);
            }
            match self.stream.try_read_buf(&mut self.bufs.read) {
                Ok(0) => return false,
                Ok(_) => {
                    self.conn.bytes_read();
                    return true;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => return false,
            }
            self.bufs.release();
            if !self.readable(idle.as_mut()).await {
                return false;
            }
            self.bufs = Buffers::lend();
        }
    }

    /// Waits until the socket is readable: false when the connection has
    /// been idle for its limit (`idle_timeout`, shorter while draining) or
    /// the socket failed.
    async fn readable(&mut self, mut idle: Pin<&mut Sleep>) -> bool {
        loop {
            let draining = *self.drain.borrow();
            let limit = idle_limit(&self.limits, draining);
            let idle_for = self.conn.idle_for().unwrap_or_default();
            if idle_for >= limit {
                return false;
            }
            // The timer may fire early (the connection was used since it
            // was set, and the limit counts from then); it is moved only
            // earlier, or again once it has fired.
            if let Some(due) = levee_core::time::now().checked_add(limit - idle_for) {
                if idle.is_elapsed() || idle.deadline().saturating_duration_since(due) > IDLE_SLACK
                {
                    idle.as_mut().reset(due);
                }
            }
            let stream = &self.stream;
            let mut changed = std::pin::pin!(self.drain.changed());
            let ready = std::future::poll_fn(|cx| {
                // The reader's own waker slot: no waiter is kept in the task.
                if let Poll::Ready(r) = stream.poll_read_ready(cx) {
                    return Poll::Ready(Some(r.is_ok()));
                }
                if !draining && changed.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(None);
                }
                if idle.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(None);
                }
                Poll::Pending
            })
            .await;
            // Else the timer fired or draining began: look again.
            if let Some(ok) = ready {
                return ok;
            }
        }
    }

    /// Reads until `bufs.read` starts with a whole request head: the head,
    /// `None` to close quietly (the client left, or the head took longer
    /// than `header_read_timeout`), or the framing error to answer.
    async fn read_head(&mut self) -> Result<RequestHead, Option<levee_h1::Error>> {
        let deadline = levee_core::time::now() + self.limits.header_read_timeout;
        let bufs = &mut self.bufs;
        loop {
            match levee_h1::parse_request(&bufs.read, &self.codec, &mut bufs.fields) {
                Ok(Some(head)) => return Ok(head),
                Ok(None) => {}
                Err(e) => return Err(Some(e)),
            }
            bufs.read.reserve(READ_CHUNK);
            match tokio::time::timeout_at(deadline, self.stream.read_buf(&mut bufs.read)).await {
                Ok(Ok(n)) if n > 0 => self.conn.bytes_read(),
                Err(_) => {
                    tracing::debug!(peer = %self.conn.peer, "request head not received in time; closing");
                    return Err(None);
                }
                Ok(_) => return Err(None),
            }
        }
    }

    /// Answers a request the codec refused (`status`, `reason`) and closes,
    /// counted under the pipeline's reasons.
    async fn refuse(&mut self, status: u16, reason: &str) {
        refuse(
            &self.shared,
            &self.conn,
            &mut self.stream,
            &mut self.bufs.write,
            status,
            reason,
        )
        .await;
    }
}

/// What is known of the next head without waiting.
enum Head {
    Whole(RequestHead),
    /// More of it is still to arrive.
    Partial,
    Refused(levee_h1::Error),
    /// The client left.
    Closed,
}

/// Parses the head at the start of `bufs.read`, reading what the socket
/// already has if it is incomplete (usually it arrived in one piece).
fn head_now(
    stream: &TcpStream,
    conn: &ConnInfo,
    codec: &levee_h1::Limits,
    bufs: &mut Buffers,
) -> Head {
    loop {
        match levee_h1::parse_request(&bufs.read, codec, &mut bufs.fields) {
            Ok(Some(head)) => return Head::Whole(head),
            Ok(None) => {}
            Err(e) => return Head::Refused(e),
        }
        if bufs.read.capacity() - bufs.read.len() < READ_CHUNK {
            bufs.read.reserve(READ_CHUNK);
        }
        match stream.try_read_buf(&mut bufs.read) {
            Ok(0) => return Head::Closed,
            Ok(_) => conn.bytes_read(),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Head::Partial,
            Err(_) => return Head::Closed,
        }
    }
}

/// The request's method, target, version and fields, header values
/// sharing `bytes`; `None` when one of them is not valid.
fn request_parts(head: &RequestHead, bytes: &Bytes, fields: &[Field]) -> Option<http::Request<()>> {
    let method = http::Method::from_bytes(head.method(bytes)).ok()?;
    let uri = http::Uri::from_maybe_shared(bytes.slice(head.target_range())).ok()?;
    let mut req = http::Request::new(());
    *req.method_mut() = method;
    *req.uri_mut() = uri;
    *req.version_mut() = crate::headers::http1_version(head.minor);
    *req.headers_mut() = crate::headers::from_fields(bytes, fields)?;
    Some(req)
}

/// One request and its answer on a connection.
struct Exchange<'a> {
    conn: &'a Arc<ConnInfo>,
    head: &'a RequestHead,
    draining: bool,
}

/// A request body still arriving: what the pipeline reads, and what the
/// connection feeds it from.
struct Streamed {
    body: RequestBody,
    feed: Feed,
}

impl Exchange<'_> {
    /// Runs the request and writes its answer: whether the connection may
    /// carry another request, and whether it was upgraded; `None` when it
    /// must close at once (a reset, or the client left).
    async fn run(
        &self,
        parts: http::Request<()>,
        mut rd: ReadHalf<'_>,
        mut wr: WriteHalf<'_>,
        buf: &mut BytesMut,
        out: &mut Vec<u8>,
        drain: &tokio::sync::watch::Receiver<bool>,
    ) -> Option<(bool, bool)> {
        let head = self.head;
        let (body, mut feed) = match head.framing {
            Framing::None | Framing::UntilClose => (RequestBody::Empty, None),
            Framing::Length(n) if buf.len() as u64 >= n => {
                let whole = buf
                    .split_to(usize::try_from(n).unwrap_or(usize::MAX))
                    .freeze();
                (RequestBody::Whole(Some(whole)), None)
            }
            framing => {
                let s = streamed(framing);
                (s.body, Some(s.feed))
            }
        };
        let version = parts.version();
        let head_request = parts.method() == http::Method::HEAD;
        let req = parts.map(|()| body);
        // Boxed on its own: the pipeline's future is large, and inline it
        // would be copied into the exchange's box with it.
        let mut handled = Box::pin(pipeline::handle(self.conn.clone(), req));
        // The pipeline runs while the body is fed to it, once it asks.
        let result = loop {
            match feed.as_mut() {
                Some(f) if !f.done => {
                    tokio::select! {
                        result = &mut handled => break result,
                        fed = f.step(&mut rd, buf, self.conn, head.expect_continue, &mut wr) => {
                            if !fed {
                                return None;
                            }
                        }
                    }
                }
                _ => break handled.await,
            }
        };
        let Ok(resp) = result else {
            // A fault's reset: close without an answer.
            return None;
        };
        let resp = close_if_draining(resp, version, drain);
        let (parts, mut body) = resp.into_parts();
        let status = parts.status;
        let upgraded = status == http::StatusCode::SWITCHING_PROTOCOLS;
        let mut keep_alive = head.keep_alive && !self.draining && !upgraded;
        if parts
            .headers
            .get(header::CONNECTION)
            .is_some_and(|v| levee_h1::head::has_token(v.as_bytes(), b"close"))
        {
            keep_alive = false;
        }
        let bodiless = head_request
            || status.is_informational()
            || status == http::StatusCode::NO_CONTENT
            || status == http::StatusCode::NOT_MODIFIED;
        let framing = if bodiless {
            Out::None
        } else if let Some(n) = body.size_hint().exact() {
            Out::Length(n)
        } else if version == http::Version::HTTP_11 {
            Out::Chunked
        } else {
            keep_alive = false;
            Out::Close
        };
        out.clear();
        write_head(out, &parts, framing, keep_alive, version, head_request);
        // The answer streams while the request body may still arrive (an
        // upstream can answer before it has read all of it).
        let written = {
            let mut no_continue = NoContinue;
            let writing = write_body(&mut wr, out, &mut body, framing);
            tokio::pin!(writing);
            loop {
                match feed.as_mut() {
                    Some(f) if !f.done => {
                        tokio::select! {
                            written = &mut writing => break written,
                            fed = f.step(&mut rd, buf, self.conn, false, &mut no_continue) => {
                                if !fed {
                                    break Err(());
                                }
                            }
                        }
                    }
                    _ => break writing.await,
                }
            }
        };
        drop(body);
        written.ok()?;
        // A body not read to its end leaves the connection unusable.
        if feed.is_some_and(|f| !f.done || f.broken) {
            keep_alive = false;
        }
        Some((keep_alive, upgraded))
    }
}

/// How the answer's body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Out {
    None,
    Length(u64),
    Chunked,
    Close,
}

/// Appends the answer's head: status line, its fields less the framing
/// and connection ones Levee decides, then framing, `Date` and
/// `Connection`.
fn write_head(
    out: &mut Vec<u8>,
    parts: &http::response::Parts,
    framing: Out,
    keep_alive: bool,
    version: http::Version,
    head_request: bool,
) {
    let status = parts.status;
    status_line(out, status);
    let upgrade = status == http::StatusCode::SWITCHING_PROTOCOLS;
    let mut date = false;
    for (name, value) in &parts.headers {
        if *name == header::TRANSFER_ENCODING || (*name == header::CONNECTION && !upgrade) {
            continue;
        }
        // A HEAD answer keeps the length the GET would have; other
        // lengths are Levee's own, from the body.
        if *name == header::CONTENT_LENGTH && !head_request {
            continue;
        }
        date |= *name == header::DATE;
        field(out, name.as_str().as_bytes(), value.as_bytes());
    }
    match framing {
        Out::Length(n) => {
            out.extend_from_slice(b"content-length: ");
            levee_h1::write::decimal(out, n);
            out.extend_from_slice(b"\r\n");
        }
        Out::Chunked => field(out, b"transfer-encoding", b"chunked"),
        Out::None | Out::Close => {}
    }
    if !date {
        field(out, b"date", &http_date());
    }
    if !upgrade {
        if !keep_alive {
            field(out, b"connection", b"close");
        } else if version == http::Version::HTTP_10 {
            field(out, b"connection", b"keep-alive");
        }
    }
    out.extend_from_slice(b"\r\n");
}

fn status_line(out: &mut Vec<u8>, status: http::StatusCode) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
}

fn field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Writes `out` (the head) and the body as it comes: frames ready at once
/// join the head in one write; a pending body flushes what is gathered.
async fn write_body(
    wr: &mut WriteHalf<'_>,
    out: &mut Vec<u8>,
    body: &mut crate::ProxyBody,
    framing: Out,
) -> Result<(), ()> {
    if framing == Out::None {
        wr.write_all(out).await.map_err(|_| ())?;
        return Ok(());
    }
    let mut sent: u64 = 0;
    loop {
        // A frame ready now joins what is gathered; else flush first.
        let ready = std::future::poll_fn(|cx| {
            Poll::Ready(match std::pin::Pin::new(&mut *body).poll_frame(cx) {
                Poll::Ready(frame) => Some(frame),
                Poll::Pending => None,
            })
        })
        .await;
        let frame = match ready {
            Some(frame) => frame,
            None => {
                if !out.is_empty() {
                    wr.write_all(out).await.map_err(|_| ())?;
                    out.clear();
                }
                std::future::poll_fn(|cx| std::pin::Pin::new(&mut *body).poll_frame(cx)).await
            }
        };
        match frame {
            None => break,
            Some(Err(_)) => return Err(()),
            Some(Ok(frame)) => {
                let frame = match frame.into_data() {
                    Ok(data) => data,
                    Err(frame) => {
                        if let (Out::Chunked, Ok(trailers)) = (framing, frame.into_trailers()) {
                            out.extend_from_slice(b"0\r\n");
                            for (name, value) in &trailers {
                                field(out, name.as_str().as_bytes(), value.as_bytes());
                            }
                            out.extend_from_slice(b"\r\n");
                            wr.write_all(out).await.map_err(|_| ())?;
                            out.clear();
                            return Ok(());
                        }
                        continue;
                    }
                };
                if frame.is_empty() {
                    continue;
                }
                sent += frame.len() as u64;
                if let Out::Length(n) = framing {
                    if sent > n {
                        // The body says more than its length: cut, never
                        // send a byte past the declared end.
                        return Err(());
                    }
                }
                if framing == Out::Chunked {
                    chunked::chunk_start(out, frame.len());
                }
                if out.len() + frame.len() <= WRITE_BATCH {
                    out.extend_from_slice(&frame);
                } else {
                    let mut slices = [std::io::IoSlice::new(out), std::io::IoSlice::new(&frame)];
                    write_all_vectored(wr, &mut slices).await.map_err(|_| ())?;
                    out.clear();
                }
                if framing == Out::Chunked {
                    out.extend_from_slice(chunked::CHUNK_END);
                }
            }
        }
    }
    if framing == Out::Chunked {
        out.extend_from_slice(chunked::LAST_CHUNK);
    }
    if let Out::Length(n) = framing {
        if sent != n {
            return Err(());
        }
    }
    if !out.is_empty() {
        wr.write_all(out).await.map_err(|_| ())?;
        out.clear();
    }
    Ok(())
}

async fn write_all_vectored(
    wr: &mut WriteHalf<'_>,
    mut slices: &mut [std::io::IoSlice<'_>],
) -> std::io::Result<()> {
    while !slices.is_empty() {
        let n = wr.write_vectored(slices).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        std::io::IoSlice::advance_slices(&mut slices, n);
    }
    Ok(())
}

/// Answers a request the codec refused (`status`, `reason`) and closes,
/// counted under the pipeline's reasons.
async fn refuse(
    shared: &Shared,
    conn: &ConnInfo,
    stream: &mut TcpStream,
    out: &mut Vec<u8>,
    status: u16,
    reason: &str,
) {
    let kind = if status == 431 {
        levee_core::ErrorKind::HeadersTooLarge
    } else {
        levee_core::ErrorKind::BadRequest
    };
    shared.metrics.error(kind).inc();
    if shared.access_log() {
        tracing::info!(
            target: "levee::access",
            peer = %conn.peer,
            status,
            error = kind.reason(),
            "request refused by the HTTP/1.1 codec"
        );
    }
    let body = format!(
        "{{\"error\":\"{}\",\"status\":{status},\"message\":\"{reason}\"}}\n",
        kind.reason()
    );
    let status = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::BAD_REQUEST);
    out.clear();
    status_line(out, status);
    field(out, b"content-type", b"application/json");
    field(out, b"cache-control", b"no-store");
    field(out, b"levee-error", kind.reason().as_bytes());
    out.extend_from_slice(b"content-length: ");
    levee_h1::write::decimal(out, body.len() as u64);
    out.extend_from_slice(b"\r\n");
    field(out, b"date", &http_date());
    field(out, b"connection", b"close");
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body.as_bytes());
    let _ = stream.write_all(out).await;
    let _ = stream.shutdown().await;
}

/// The `Date` value now, formatted once a second per thread.
fn http_date() -> [u8; 29] {
    thread_local! {
        static CACHED: std::cell::Cell<(u64, [u8; 29])> = const { std::cell::Cell::new((u64::MAX, [0; 29])) };
    }
    let secs = levee_core::time::unix_nanos() / 1_000_000_000;
    CACHED.with(|c| {
        let (at, text) = c.get();
        if at == secs {
            return text;
        }
        let formatted =
            httpdate::fmt_http_date(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs));
        let mut text = [b' '; 29];
        let n = formatted.len().min(29);
        text[..n].copy_from_slice(&formatted.as_bytes()[..n]);
        c.set((secs, text));
        text
    })
}

// ---------------------------------------------------------------- bodies

/// A body still arriving, as the pipeline reads it: pieces the connection
/// feeds through a channel of one, so it reads no further ahead.
#[derive(Debug)]
pub(crate) struct StreamedBody {
    rx: mpsc::Receiver<Result<Bytes, DownstreamError>>,
    state: Arc<FeedState>,
    asked: bool,
    /// Bytes left of a body of known length.
    left: Option<u64>,
}

/// What the pipeline's side and the connection's side of a streamed body
/// share.
#[derive(Debug, Default)]
struct FeedState {
    /// The pipeline asked for the body (then `Expect: 100-continue` is
    /// answered and reading starts).
    wanted: Notify,
    /// The body arrived to its end.
    finished: AtomicBool,
}

impl http_body::Body for StreamedBody {
    type Data = Bytes;
    type Error = DownstreamError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, DownstreamError>>> {
        if !self.asked {
            self.asked = true;
            self.state.wanted.notify_one();
        }
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(Ok(data))) => {
                if let Some(left) = self.left.as_mut() {
                    *left = left.saturating_sub(data.len() as u64);
                }
                Poll::Ready(Some(Ok(http_body::Frame::data(data))))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
            Poll::Ready(None) if self.state.finished.load(Ordering::Acquire) => Poll::Ready(None),
            Poll::Ready(None) => Poll::Ready(Some(Err(DownstreamError::Closed))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.left == Some(0) && self.state.finished.load(Ordering::Acquire)
    }

    fn size_hint(&self) -> http_body::SizeHint {
        match self.left {
            Some(n) => http_body::SizeHint::with_exact(n),
            None => http_body::SizeHint::default(),
        }
    }
}

/// The connection's side of a streamed body.
struct Feed {
    /// Dropped once the body has ended, which ends it for the pipeline.
    tx: Option<mpsc::Sender<Result<Bytes, DownstreamError>>>,
    state: Arc<FeedState>,
    decode: Decode,
    started: bool,
    /// Nothing more to read (the body ended, or failed).
    done: bool,
    /// The body failed: the connection cannot carry another request.
    broken: bool,
}

enum Decode {
    Length(u64),
    Chunked(chunked::Decoder),
}

fn streamed(framing: Framing) -> Streamed {
    let (tx, rx) = mpsc::channel(1);
    let state = Arc::new(FeedState::default());
    let (decode, left) = match framing {
        Framing::Length(n) => (Decode::Length(n), Some(n)),
        _ => (Decode::Chunked(chunked::Decoder::default()), None),
    };
    Streamed {
        body: RequestBody::Streamed(StreamedBody {
            rx,
            state: state.clone(),
            asked: false,
            left,
        }),
        feed: Feed {
            tx: Some(tx),
            state,
            decode,
            started: false,
            done: false,
            broken: false,
        },
    }
}

/// Where `Expect: 100-continue` is answered.
trait Continue {
    async fn send_continue(&mut self) -> bool;
}

impl Continue for WriteHalf<'_> {
    async fn send_continue(&mut self) -> bool {
        self.write_all(CONTINUE).await.is_ok()
    }
}

/// Once the answer has begun, `100 Continue` is too late: nothing is sent.
struct NoContinue;

impl Continue for NoContinue {
    async fn send_continue(&mut self) -> bool {
        true
    }
}

impl Feed {
    /// One step: waits for the pipeline to ask for the body (answering
    /// `100 Continue` then, if expected), then moves the next piece from
    /// the connection to it. False when the client is gone.
    async fn step(
        &mut self,
        rd: &mut ReadHalf<'_>,
        buf: &mut BytesMut,
        conn: &ConnInfo,
        expect_continue: bool,
        wr: &mut impl Continue,
    ) -> bool {
        if !self.started {
            self.state.wanted.notified().await;
            self.started = true;
            if expect_continue && !wr.send_continue().await {
                return false;
            }
        }
        if buf.is_empty() {
            buf.reserve(READ_CHUNK);
            match rd.read_buf(buf).await {
                Ok(n) if n > 0 => conn.bytes_read(),
                Ok(_) => return self.fail(DownstreamError::Closed).await,
                Err(e) => return self.fail(DownstreamError::Io(e)).await,
            }
        }
        let piece = match &mut self.decode {
            Decode::Length(left) => {
                let n = usize::try_from(*left).unwrap_or(usize::MAX).min(buf.len());
                *left -= n as u64;
                let piece = buf.split_to(n).freeze();
                if *left == 0 {
                    self.done = true;
                }
                Some(piece)
            }
            Decode::Chunked(decoder) => match decoder.step(buf) {
                Ok(step) => {
                    let used = buf.split_to(step.consumed).freeze();
                    if decoder.is_done() {
                        self.done = true;
                    }
                    step.data.map(|(s, e)| used.slice(s..e))
                }
                Err(e) => return self.fail(DownstreamError::Framing(e)).await,
            },
        };
        if self.done {
            self.state.finished.store(true, Ordering::Release);
        }
        if let (Some(piece), Some(tx)) = (piece.filter(|p| !p.is_empty()), &self.tx) {
            // The pipeline may have stopped reading (it answered already):
            // then the rest only needs to pass.
            let _ = tx.send(Ok(piece)).await;
        }
        if self.done {
            self.tx = None;
        }
        true
    }

    /// Tells the pipeline its body failed. False when the client is gone;
    /// a malformed body is answered (400) before the connection closes.
    async fn fail(&mut self, e: DownstreamError) -> bool {
        self.done = true;
        self.broken = true;
        let gone = !matches!(e, DownstreamError::Framing(_));
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(Err(e)).await;
        }
        !gone
    }
}
