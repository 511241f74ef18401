//! Bodies on both sides, streamed frame by frame (never buffered whole), so
//! backpressure flows end to end and trailers pass through.
//!
//! - [`UpstreamBody`]: the client's request body on its way upstream, counted
//!   against the listener's body limit.
//! - [`ProxyBody`]: the response on its way to the client, which carries the
//!   request's [`Completion`] and records it when the last frame is sent or
//!   the client goes away.

use crate::record::Completion;
use crate::upstream::{ResponseBody, UpstreamBodyError};
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Sleep;

/// Why a request body stopped.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// The body passed the listener's `max_request_body_bytes`.
    #[error("request body exceeds the limit of {0} bytes")]
    TooLarge(u64),
    /// Reading from the client failed: it went away mid-body.
    #[error("reading the request body failed: {0}")]
    Downstream(#[from] DownstreamError),
    /// The client's body framing is invalid (a bad chunk size line, a
    /// size overflow, a missing CRLF).
    #[error("the request body is malformed: {0}")]
    Malformed(DownstreamError),
    /// Reading the upstream's response body failed.
    #[error("reading the response body failed: {0}")]
    Upstream(UpstreamBodyError),
    /// No data moved for the route's `stream_idle_timeout`.
    #[error("no data for {} (stream_idle_timeout)", levee_config::format_duration(*.0))]
    StreamIdle(Duration),
}

impl BodyError {
    /// The reading error, as the client's fault: malformed framing or a
    /// client that went away.
    pub(crate) fn from_downstream(e: DownstreamError) -> Self {
        if e.is_malformed() {
            BodyError::Malformed(e)
        } else {
            BodyError::Downstream(e)
        }
    }

    /// How the request is answered when its body stopped this way.
    pub(crate) fn kind(&self) -> levee_core::ErrorKind {
        use levee_core::ErrorKind;
        match self {
            BodyError::TooLarge(_) => ErrorKind::PayloadTooLarge,
            BodyError::Malformed(_) => ErrorKind::BadRequest,
            BodyError::Downstream(_) | BodyError::StreamIdle(_) => ErrorKind::ClientClosed,
            BodyError::Upstream(_) => ErrorKind::UpstreamReset,
        }
    }
}

/// The client's request body: hyper's (HTTP/2, TLS, h2c), or the
/// dedicated HTTP/1.1 path's.
#[derive(Debug)]
pub(crate) enum RequestBody {
    /// A body hyper's server reads.
    Hyper(Incoming),
    /// None (the dedicated HTTP/1.1 path).
    Empty,
    /// Read whole with its head (the dedicated HTTP/1.1 path).
    Whole(Option<Bytes>),
    /// Still arriving on the dedicated HTTP/1.1 path's connection.
    Streamed(crate::http1::StreamedBody),
}

impl From<Incoming> for RequestBody {
    fn from(body: Incoming) -> Self {
        RequestBody::Hyper(body)
    }
}

/// Why reading the client's body failed.
#[derive(Debug, thiserror::Error)]
pub enum DownstreamError {
    /// hyper's server reported it.
    #[error(transparent)]
    Hyper(#[from] hyper::Error),
    /// The body's framing is invalid (the dedicated HTTP/1.1 path).
    #[error("{0}")]
    Framing(levee_h1::Error),
    /// Reading from the client failed.
    #[error("reading from the client failed: {0}")]
    Io(std::io::Error),
    /// The client closed the connection before the body ended.
    #[error("the client closed the connection before the body ended")]
    Closed,
}

impl DownstreamError {
    /// Whether the client's framing was refused, rather than the
    /// connection lost.
    fn is_malformed(&self) -> bool {
        match self {
            DownstreamError::Hyper(e) => is_malformed(e),
            DownstreamError::Framing(_) => true,
            DownstreamError::Io(_) | DownstreamError::Closed => false,
        }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = DownstreamError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, DownstreamError>>> {
        match self.get_mut() {
            RequestBody::Hyper(body) => Pin::new(body).poll_frame(cx).map_err(Into::into),
            RequestBody::Empty => Poll::Ready(None),
            RequestBody::Whole(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            RequestBody::Streamed(body) => Pin::new(body).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RequestBody::Hyper(body) => body.is_end_stream(),
            RequestBody::Empty => true,
            RequestBody::Whole(bytes) => bytes.is_none(),
            RequestBody::Streamed(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RequestBody::Hyper(body) => body.size_hint(),
            RequestBody::Empty => SizeHint::with_exact(0),
            RequestBody::Whole(bytes) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
            RequestBody::Streamed(body) => body.size_hint(),
        }
    }
}

/// Whether hyper refused the body's framing (its decoder reports invalid
/// data or input) rather than losing the connection.
fn is_malformed(e: &hyper::Error) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            return matches!(
                io.kind(),
                std::io::ErrorKind::InvalidData | std::io::ErrorKind::InvalidInput
            );
        }
        cause = c.source();
    }
    e.is_parse()
}

/// What stopped a request body on the client's side, kept for the attempt
/// that sent it: an HTTP/2 upstream reports only a reset stream when the
/// body it was reading fails, which must not count as the upstream's fault.
#[derive(Debug, Default)]
pub(crate) struct BodyFault(std::sync::atomic::AtomicU8);

impl BodyFault {
    const NONE: u8 = 0;
    const TOO_LARGE: u8 = 1;
    const MALFORMED: u8 = 2;
    const CLIENT_GONE: u8 = 3;

    fn set(&self, e: &BodyError) {
        let code = match e {
            BodyError::TooLarge(_) => Self::TOO_LARGE,
            BodyError::Malformed(_) => Self::MALFORMED,
            BodyError::Downstream(_) => Self::CLIENT_GONE,
            BodyError::StreamIdle(_) | BodyError::Upstream(_) => return,
        };
        self.0.store(code, std::sync::atomic::Ordering::Relaxed);
    }

    /// The client's failure, if its body stopped with one.
    pub(crate) fn kind(&self) -> Option<levee_core::ErrorKind> {
        use levee_core::ErrorKind;
        match self.0.load(std::sync::atomic::Ordering::Relaxed) {
            Self::NONE => None,
            Self::TOO_LARGE => Some(ErrorKind::PayloadTooLarge),
            Self::MALFORMED => Some(ErrorKind::BadRequest),
            _ => Some(ErrorKind::ClientClosed),
        }
    }
}

/// A request body sent upstream.
#[derive(Debug)]
pub struct UpstreamBody {
    inner: Option<RequestBody>,
    /// Set when the client's side of a streamed body fails.
    fault: Option<Arc<BodyFault>>,
    limit: u64,
    seen: u64,
    /// A body read in advance, so that it can be sent again on a retry.
    replay: Option<Bytes>,
    /// A copy kept while streaming, up to its limit, for a later replay.
    capture: Option<(Arc<Capture>, u64)>,
}

/// A copy of a streamed request body (one of unknown length) taken while it
/// is sent, so that a retry can send it again if it ended within the
/// route's buffer. Nothing waits for it: the body streams as it arrives.
#[derive(Debug, Default)]
pub(crate) struct Capture {
    // Per request, uncontended: only the attempt streaming the body uses it.
    state: std::sync::Mutex<CaptureState>,
}

#[derive(Debug, Default)]
struct CaptureState {
    bytes: bytes::BytesMut,
    complete: bool,
    overflow: bool,
}

impl Capture {
    fn push(&self, data: &[u8], limit: u64) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if s.overflow {
            return;
        }
        if (s.bytes.len() + data.len()) as u64 > limit {
            s.overflow = true;
            s.bytes = bytes::BytesMut::new();
        } else {
            s.bytes.extend_from_slice(data);
        }
    }

    fn finish(&self) {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .complete = true;
    }

    /// The whole body, if it was sent to its end within the limit.
    pub(crate) fn replayable(&self) -> Option<Bytes> {
        let s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        (s.complete && !s.overflow).then(|| Bytes::copy_from_slice(&s.bytes))
    }
}

impl UpstreamBody {
    /// No body (health checks, bodiless requests).
    pub fn empty() -> Self {
        Self {
            inner: None,
            fault: None,
            limit: 0,
            seen: 0,
            replay: None,
            capture: None,
        }
    }

    /// The client's body, failing once more than `limit` bytes arrive.
    pub(crate) fn limited(inner: RequestBody, limit: u64) -> Self {
        Self {
            // Only a body that can still fail needs somewhere to say so.
            fault: (!inner.is_end_stream()).then(Arc::default),
            inner: Some(inner),
            limit,
            seen: 0,
            replay: None,
            capture: None,
        }
    }

    /// Where a failure of the client's side of this body is told.
    pub(crate) fn fault(&self) -> Option<Arc<BodyFault>> {
        self.fault.clone()
    }

    /// Keeps a copy of what streams through, up to `limit` bytes.
    pub(crate) fn capturing(mut self, capture: Arc<Capture>, limit: u64) -> Self {
        self.capture = Some((capture, limit));
        self
    }

    /// A body already read (for retries).
    pub(crate) fn replay(bytes: Bytes) -> Self {
        Self {
            replay: (!bytes.is_empty()).then_some(bytes),
            ..Self::empty()
        }
    }
}

impl UpstreamBody {
    fn failed(&self, e: BodyError) -> BodyError {
        if let Some(fault) = &self.fault {
            fault.set(&e);
        }
        e
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = &mut *self;
        if let Some(bytes) = this.replay.take() {
            return Poll::Ready(Some(Ok(Frame::data(bytes))));
        }
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        match Pin::new(inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.seen += data.len() as u64;
                    if this.seen > this.limit {
                        return Poll::Ready(Some(
                            Err(this.failed(BodyError::TooLarge(this.limit))),
                        ));
                    }
                    if let Some((capture, limit)) = &this.capture {
                        capture.push(data, *limit);
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                Poll::Ready(Some(Err(this.failed(BodyError::from_downstream(e)))))
            }
            Poll::Ready(None) => {
                if let Some((capture, _)) = &this.capture {
                    capture.finish();
                }
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.replay.is_none() && self.inner.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        if let Some(bytes) = &self.replay {
            return SizeHint::with_exact(bytes.len() as u64);
        }
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Body::size_hint)
    }
}

#[derive(Debug)]
enum Inner {
    /// The upstream's body (an HTTP/1.1 one owns its connection, returned
    /// to its endpoint when the body ends cleanly).
    Upstream(ResponseBody),
    Full(Option<Bytes>),
}

/// A response body sent to the client.
#[derive(Debug)]
pub struct ProxyBody {
    inner: Inner,
    completion: Option<Completion>,
    /// Longest wait for the next chunk from the upstream.
    idle_timeout: Duration,
    /// Armed the first time the upstream makes us wait (most small bodies
    /// never do, and never allocate it).
    idle_timer: Option<Pin<Box<Sleep>>>,
    /// A copy being made for the stale cache.
    tee: Option<Box<crate::degrade::Tee>>,
    /// An injected bandwidth limit (`crate::fault`).
    throttle: Option<Box<Throttle>>,
}

/// Paces a body at a number of bytes a second, in slices of a tenth of a
/// second's worth, waiting after each for its time.
#[derive(Debug)]
struct Throttle {
    bytes_per_second: u64,
    pending: Option<Bytes>,
    wait: Option<Pin<Box<Sleep>>>,
}

impl Throttle {
    fn slice(&mut self, mut data: Bytes) -> Bytes {
        let most = usize::try_from(self.bytes_per_second / 10)
            .unwrap_or(usize::MAX)
            .max(1);
        let chunk = if data.len() > most {
            let head = data.split_to(most);
            self.pending = Some(data);
            head
        } else {
            data
        };
        let secs = chunk.len() as f64 / self.bytes_per_second as f64;
        self.wait = Some(Box::pin(tokio::time::sleep(Duration::from_secs_f64(secs))));
        chunk
    }
}

impl ProxyBody {
    /// Sends this body at most `bytes_per_second` (an injected fault).
    pub(crate) fn throttle(&mut self, bytes_per_second: u64) {
        self.throttle = Some(Box::new(Throttle {
            bytes_per_second: bytes_per_second.max(1),
            pending: None,
            wait: None,
        }));
    }

    /// A body streamed from the upstream.
    pub(crate) fn upstream(inner: ResponseBody, idle_timeout: Duration) -> Self {
        Self {
            inner: Inner::Upstream(inner),
            completion: None,
            idle_timeout,
            idle_timer: None,
            tee: None,
            throttle: None,
        }
    }

    /// A body the gateway wrote itself.
    /// No body at all (for HTTP/2, the head ends the stream: a gRPC
    /// trailers-only answer).
    pub fn empty() -> Self {
        let mut body = Self::full(Bytes::new());
        body.inner = Inner::Full(None);
        body
    }

    pub fn full(bytes: impl Into<Bytes>) -> Self {
        Self {
            inner: Inner::Full(Some(bytes.into())),
            completion: None,
            idle_timeout: Duration::MAX,
            idle_timer: None,
            tee: None,
            throttle: None,
        }
    }

    /// Copies the body into the stale cache as it passes.
    pub(crate) fn tee(&mut self, tee: crate::degrade::Tee) {
        self.tee = Some(Box::new(tee));
    }

    /// Whether the upstream has been silent for the idle timeout.
    fn idle_expired(&mut self, cx: &mut Context<'_>) -> bool {
        if self.idle_timeout == Duration::MAX {
            return false;
        }
        let timeout = self.idle_timeout;
        let timer = self
            .idle_timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        timer.as_mut().poll(cx).is_ready()
    }

    fn idle_progress(&mut self) {
        if let Some(timer) = self.idle_timer.as_mut() {
            timer
                .as_mut()
                .reset(levee_core::time::now() + self.idle_timeout);
        }
    }

    /// Attaches the request's record, written when the body ends.
    pub(crate) fn attach(&mut self, completion: Completion) {
        self.completion = Some(completion);
    }

    fn finish(&mut self, complete: bool) {
        let conn = match &mut self.inner {
            Inner::Upstream(body) => body.take_connection(),
            Inner::Full(_) => None,
        };
        if let Some(tee) = self.tee.take() {
            if complete {
                tee.finish();
            }
        }
        if let Some(mut c) = self.completion.take() {
            c.body_complete = complete;
            if let (true, Some(conn), Some(cluster), Some(endpoint)) =
                (complete, conn, &c.cluster, &c.endpoint)
            {
                cluster.release(endpoint, conn);
            }
            drop(c);
        }
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = &mut *self;
        let Some(throttle) = this.throttle.as_mut() else {
            return this.poll_inner(cx);
        };
        if let Some(wait) = throttle.wait.as_mut() {
            std::task::ready!(wait.as_mut().poll(cx));
            throttle.wait = None;
        }
        if let Some(rest) = throttle.pending.take() {
            return Poll::Ready(Some(Ok(Frame::data(throttle.slice(rest)))));
        }
        match std::task::ready!(this.poll_inner(cx)) {
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => {
                    let throttle = this.throttle.as_mut().expect("checked above");
                    Poll::Ready(Some(Ok(Frame::data(throttle.slice(data)))))
                }
                Err(frame) => Poll::Ready(Some(Ok(frame))),
            },
            other => Poll::Ready(other),
        }
    }

    fn is_end_stream(&self) -> bool {
        if self.throttle.as_ref().is_some_and(|t| t.pending.is_some()) {
            return false;
        }
        match &self.inner {
            Inner::Full(b) => b.is_none(),
            Inner::Upstream(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            Inner::Full(None) => SizeHint::with_exact(0),
            Inner::Upstream(body) => body.size_hint(),
        }
    }
}

impl ProxyBody {
    /// The frames as they come, feeding the record, the mirror and the
    /// stale cache copy.
    fn poll_inner(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self;
        let polled = match &mut this.inner {
            Inner::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Inner::Upstream(body) => Pin::new(body).poll_frame(cx),
        };
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    if let Some(c) = this.completion.as_mut() {
                        c.bytes += data.len() as u64;
                        if let Some(mirror) = c.mirror.as_mut() {
                            mirror.push(data);
                        }
                    }
                    if this.tee.as_mut().is_some_and(|t| !t.push(data)) {
                        this.tee = None;
                    }
                } else if let (Some(trailers), Some(c)) =
                    (frame.trailers_ref(), this.completion.as_mut())
                {
                    c.grpc_status = crate::record::grpc_status(trailers);
                }
                this.idle_progress();
            }
            Poll::Ready(Some(Err(_))) => this.finish(false),
            Poll::Ready(None) => this.finish(true),
            Poll::Pending => {
                if this.idle_expired(cx) {
                    let timeout = this.idle_timeout;
                    tracing::debug!(?timeout, "upstream response body idle: aborting");
                    this.finish(false);
                    return Poll::Ready(Some(Err(BodyError::StreamIdle(timeout))));
                }
            }
        }
        polled.map(|frame| frame.map(|r| r.map_err(BodyError::Upstream)))
    }
}

impl Drop for ProxyBody {
    fn drop(&mut self) {
        // A body dropped at its end (HEAD, 204, or fully sent) is complete;
        // one dropped earlier means the client went away.
        let end = self.is_end_stream();
        self.finish(end);
    }
}
