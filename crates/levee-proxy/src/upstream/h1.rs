//! HTTP/1.1 exchanges with an endpoint on Levee's own codec (`levee-h1`),
//! with no task and no channel of their own: the request's future writes
//! the head (and a body already read, in the same write) and reads the
//! answer's head; the answer's [`Body`] then reads the rest on the same
//! connection, still sending a streamed request body meanwhile (an
//! upstream may answer before it has read all of it, or stream both ways).
//!
//! A connection ([`Conn`]) keeps its read buffer, write buffer and field
//! list across exchanges. Header values and body data are slices of the
//! read buffer (no copy); body data is handed on as it arrives, never
//! gathered. The connection goes back to its endpoint's pool only after
//! an answer ended exactly where its framing says, with nothing more
//! sent, the request sent whole, and neither side asking to close.
//!
//! The answer's head is held to `levee-h1`'s rules for responses, with one
//! leniency: a bare LF ends a line, as NGINX and hyper accept from
//! upstreams (the head is rebuilt from its parsed fields, never relayed
//! as bytes, so it cannot split anything downstream).

use super::{UpstreamBodyError, UpstreamIo};
use crate::body::{BodyError, UpstreamBody};
use crate::guard::ConnectionSlot;
use bytes::{Buf, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http_body::{Body as _, Frame, SizeHint};
use levee_core::time::Instant;
use levee_core::ErrorKind;
use levee_h1::chunked::{self, Decoder};
use levee_h1::head::{Answering, Field, Framing, ResponseHead};
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll, Waker};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};

/// What an upstream's answer head may hold. Larger than any client's
/// (the listener's limit is the client's): an upstream is trusted more,
/// and its cookies and security headers can be long.
const HEAD_LIMITS: levee_h1::Limits = levee_h1::Limits {
    max_head_bytes: 64 * 1024,
    max_fields: levee_h1::head::MAX_FIELDS,
};
/// Room made in the read buffer for an answer's head.
const HEAD_READ: usize = 8 * 1024;
/// The most room made for one read of a body (a large body is read in
/// pieces of this size, each handed on at once).
const BODY_READ: usize = 64 * 1024;
/// Request body bytes gathered before a write.
const WRITE_BATCH: usize = 64 * 1024;
/// A request body frame larger than this is written from its own buffer
/// rather than copied behind the head.
const COPY_AT_MOST: usize = 16 * 1024;
/// A pooled connection's read buffer larger than this is let go.
const KEEP_BUFFER: usize = 16 * 1024;

/// One HTTP/1.1 connection to an endpoint.
pub(crate) struct Conn {
    io: UpstreamIo,
    /// Bytes read and not yet handed on.
    buf: BytesMut,
    /// Bytes to write: a request head, chunk framing, small body frames.
    out: Vec<u8>,
    fields: Vec<Field>,
    /// Whether it carried an exchange before the current one: a failure
    /// before any answer may then mean the upstream closed it meanwhile.
    reused: bool,
    /// False for a connection an injected fault shapes: never pooled.
    poolable: bool,
    pub(super) idle_since: Instant,
    /// Its place under the cluster's connection cap, freed when it closes.
    _slot: ConnectionSlot,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("buffered", &self.buf.len())
            .field("reused", &self.reused)
            .finish()
    }
}

impl Conn {
    pub(super) fn new(io: UpstreamIo, slot: ConnectionSlot, poolable: bool) -> Self {
        Self {
            io,
            buf: BytesMut::new(),
            out: Vec::new(),
            fields: Vec::new(),
            reused: false,
            poolable,
            idle_since: levee_core::time::now(),
            _slot: slot,
        }
    }

    /// Whether the connection can carry another request: the upstream has
    /// neither closed it nor sent anything unasked. Costs no system call
    /// when the last read already emptied the socket.
    pub(super) fn reusable(&mut self) -> bool {
        if !self.poolable || !self.buf.is_empty() {
            return false;
        }
        let mut probe = [0u8; 1];
        let mut probe = tokio::io::ReadBuf::new(&mut probe);
        let mut cx = Context::from_waker(Waker::noop());
        Pin::new(&mut self.io)
            .poll_read(&mut cx, &mut probe)
            .is_pending()
    }

    /// Readies a connection for the pool after an exchange.
    pub(super) fn rest(&mut self, now: Instant) {
        self.reused = true;
        self.idle_since = now;
        if self.buf.capacity() > KEEP_BUFFER {
            self.buf = BytesMut::new();
        }
    }

    /// Reads more into the buffer, making room for `want` bytes: the bytes
    /// read, 0 at the end of the stream.
    fn poll_fill(&mut self, cx: &mut Context<'_>, want: usize) -> Poll<std::io::Result<usize>> {
        if self.buf.capacity() - self.buf.len() < want / 2 {
            self.buf.reserve(want);
        }
        let read = std::pin::pin!(self.io.read_buf(&mut self.buf));
        read.poll(cx)
    }
}

/// Why an exchange failed before the answer's head, and whether the
/// request may go again on a fresh connection.
pub(super) struct Failed {
    pub kind: ErrorKind,
    pub detail: String,
    /// The request, when the connection was a pooled one that failed
    /// before any answer and the request is safe to send again
    /// (idempotent, without a body).
    pub again: Option<http::Request<UpstreamBody>>,
}

/// Sends `req` on `conn` and reads the answer's head; the answer's body
/// reads on, owning the connection.
pub(super) async fn exchange(
    mut conn: Box<Conn>,
    req: http::Request<UpstreamBody>,
) -> Result<http::Response<Body>, Failed> {
    let (parts, body) = req.into_parts();
    let replayable = body.is_end_stream() && is_idempotent(&parts);
    let mut sending = Sending::start(&parts, body, &mut conn.out);
    let answering = Answering {
        head: parts.method == http::Method::HEAD,
    };
    let head = std::future::poll_fn(|cx| poll_head(&mut conn, &mut sending, answering, cx)).await;
    let head = match head {
        Ok(head) => head,
        Err(e) => {
            let again = (conn.reused && !e.answered && replayable)
                .then(|| http::Request::from_parts(parts, UpstreamBody::empty()));
            return Err(Failed {
                kind: e.kind,
                detail: e.detail,
                again,
            });
        }
    };
    if head.status == 101 {
        return Err(Failed {
            kind: ErrorKind::UpstreamProtocol,
            detail: "answered 101 to a request that asked for no upgrade".to_string(),
            again: None,
        });
    }
    let head_bytes = conn.buf.split_to(head.len).freeze();
    let Some(resp) = response(&head, &head_bytes, &conn.fields) else {
        return Err(Failed {
            kind: ErrorKind::UpstreamProtocol,
            detail: "the answer's head is not valid HTTP/1.1".to_string(),
            again: None,
        });
    };
    let reading = match head.framing {
        Framing::None => Reading::Done,
        Framing::Length(n) => Reading::Length(n),
        Framing::Chunked => Reading::Chunked(Decoder::default()),
        Framing::UntilClose => Reading::UntilClose,
    };
    let mut body = Body {
        conn: Some(conn),
        sending: (!sending.is_done()).then(|| Box::new(sending)),
        reading,
        // `Connection: close` and HTTP/1.0 without keep-alive are in it.
        keep_alive: head.keep_alive,
        trailers: None,
    };
    if matches!(body.reading, Reading::Done) {
        body.ended();
    }
    Ok(resp.map(|()| body))
}

/// Why no answer head came.
struct HeadError {
    kind: ErrorKind,
    detail: String,
    /// Whether any of an answer arrived.
    answered: bool,
}

/// Sends what is left to send and reads until the answer's final head is
/// in the buffer (interim 1xx heads are passed over).
fn poll_head(
    conn: &mut Conn,
    sending: &mut Sending,
    answering: Answering,
    cx: &mut Context<'_>,
) -> Poll<Result<ResponseHead, HeadError>> {
    if !sending.is_done() {
        if let Poll::Ready(Err(e)) = sending.poll(cx, &mut conn.io, &mut conn.out) {
            match e {
                SendFailure::Client(e) => {
                    return Poll::Ready(Err(HeadError {
                        kind: e.kind(),
                        detail: e.to_string(),
                        answered: false,
                    }));
                }
                // The upstream may have answered already (and closed):
                // its answer is read before the failure is reported.
                SendFailure::Upstream(e) => sending.stop(Some(e)),
            }
        }
    }
    loop {
        match levee_h1::parse_response(&conn.buf, &HEAD_LIMITS, &mut conn.fields, answering) {
            Ok(Some(head)) if head.is_interim() => conn.buf.advance(head.len),
            Ok(Some(head)) => return Poll::Ready(Ok(head)),
            Ok(None) => {
                let answered = !conn.buf.is_empty();
                match ready!(conn.poll_fill(cx, HEAD_READ)) {
                    Ok(0) => {
                        let detail = match sending.write_error.take() {
                            Some(e) => format!("sending the request failed: {e}"),
                            None if answered => {
                                "the connection closed inside the answer's head".to_string()
                            }
                            None => "the connection closed before an answer".to_string(),
                        };
                        return Poll::Ready(Err(HeadError {
                            kind: ErrorKind::UpstreamReset,
                            detail,
                            answered,
                        }));
                    }
                    Ok(_) => {}
                    Err(e) => {
                        return Poll::Ready(Err(HeadError {
                            kind: ErrorKind::UpstreamReset,
                            detail: match sending.write_error.take() {
                                Some(w) => format!("sending the request failed: {w}"),
                                None => format!("reading the answer failed: {e}"),
                            },
                            answered,
                        }))
                    }
                }
            }
            Err(e) => {
                return Poll::Ready(Err(HeadError {
                    kind: ErrorKind::UpstreamProtocol,
                    detail: format!("the answer is not valid HTTP/1.1: {}", e.reason()),
                    answered: true,
                }))
            }
        }
    }
}

/// The answer's status, version and fields, header values sharing `bytes`.
fn response(head: &ResponseHead, bytes: &Bytes, fields: &[Field]) -> Option<http::Response<()>> {
    let status = http::StatusCode::from_u16(head.status).ok()?;
    let mut resp = http::Response::new(());
    *resp.status_mut() = status;
    *resp.version_mut() = crate::headers::http1_version(head.minor);
    *resp.headers_mut() = crate::headers::from_fields(bytes, fields)?;
    Some(resp)
}

/// Methods whose request may be sent twice with the effect of once
/// (RFC 9110 §9.2.2), or that carry an `Idempotency-Key`.
fn is_idempotent(parts: &http::request::Parts) -> bool {
    use http::Method;
    matches!(
        parts.method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    ) || parts.headers.contains_key("idempotency-key")
}

/// How the request body is framed on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Out {
    None,
    Length(u64),
    Chunked,
}

/// Why sending the request stopped.
enum SendFailure {
    /// The client's body failed (it left, or sent too much or malformed).
    Client(BodyError),
    /// Writing to the upstream failed.
    Upstream(std::io::Error),
}

/// A request being written: its head first, then its body as the client
/// sends it.
struct Sending {
    body: UpstreamBody,
    framing: Out,
    /// Bytes of the connection's `out` already written.
    written: usize,
    /// A large body frame, written after `out` from its own buffer.
    large: Option<Bytes>,
    /// The body and its end are all in `out` (or written).
    ended: bool,
    /// Everything is written, or sending stopped.
    done: bool,
    /// Why writing to the upstream stopped, if it did.
    write_error: Option<std::io::Error>,
}

impl Sending {
    /// Writes the request head into `out`, with the body's framing: its
    /// exact length when known, chunked otherwise, none when there is no
    /// body (`Content-Length: 0` where the method expects a body).
    fn start(parts: &http::request::Parts, body: UpstreamBody, out: &mut Vec<u8>) -> Self {
        out.clear();
        out.extend_from_slice(parts.method.as_str().as_bytes());
        out.push(b' ');
        let target = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
        out.extend_from_slice(if target.is_empty() { "/" } else { target }.as_bytes());
        out.extend_from_slice(b" HTTP/1.1\r\n");
        let mut declared_empty = false;
        for (name, value) in &parts.headers {
            if name == header::CONTENT_LENGTH {
                declared_empty = value.as_bytes() == b"0";
                continue;
            }
            if name == header::TRANSFER_ENCODING {
                continue;
            }
            out.extend_from_slice(name.as_str().as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        let framing = if body.is_end_stream() {
            use http::Method;
            if declared_empty || matches!(parts.method, Method::POST | Method::PUT | Method::PATCH)
            {
                out.extend_from_slice(b"content-length: 0\r\n");
            }
            Out::None
        } else if let Some(n) = body.size_hint().exact() {
            out.extend_from_slice(b"content-length: ");
            levee_h1::write::decimal(out, n);
            out.extend_from_slice(b"\r\n");
            if n == 0 {
                Out::None
            } else {
                Out::Length(n)
            }
        } else {
            out.extend_from_slice(b"transfer-encoding: chunked\r\n");
            Out::Chunked
        };
        out.extend_from_slice(b"\r\n");
        Self {
            body,
            framing,
            written: 0,
            large: None,
            ended: framing == Out::None,
            done: false,
            write_error: None,
        }
    }

    fn is_done(&self) -> bool {
        self.done
    }

    /// Stops sending (the rest of the body is not sent).
    fn stop(&mut self, write_error: Option<std::io::Error>) {
        self.done = true;
        self.large = None;
        if write_error.is_some() {
            self.write_error = write_error;
        }
    }

    /// Writes what is queued and gathers more of the body, until all is
    /// written (ready), or the socket or the body makes it wait.
    fn poll(
        &mut self,
        cx: &mut Context<'_>,
        io: &mut UpstreamIo,
        out: &mut Vec<u8>,
    ) -> Poll<Result<(), SendFailure>> {
        if self.done {
            return Poll::Ready(Ok(()));
        }
        loop {
            let mut waiting_for_body = false;
            if !self.ended && self.large.is_none() && out.len() - self.written < WRITE_BATCH {
                match self.gather(cx, out) {
                    Ok(waiting) => waiting_for_body = waiting,
                    Err(e) => {
                        self.stop(None);
                        return Poll::Ready(Err(e));
                    }
                }
            }
            while self.written < out.len() {
                let n = match ready!(Pin::new(&mut *io).poll_write(cx, &out[self.written..])) {
                    Ok(0) => Err(std::io::ErrorKind::WriteZero.into()),
                    Ok(n) => Ok(n),
                    Err(e) => Err(e),
                };
                match n {
                    Ok(n) => self.written += n,
                    Err(e) => {
                        self.stop(None);
                        return Poll::Ready(Err(SendFailure::Upstream(e)));
                    }
                }
            }
            out.clear();
            self.written = 0;
            if let Some(large) = self.large.as_mut() {
                while !large.is_empty() {
                    match ready!(Pin::new(&mut *io).poll_write(cx, large)) {
                        Ok(n) if n > 0 => large.advance(n),
                        Ok(_) => {
                            self.stop(None);
                            let e = std::io::ErrorKind::WriteZero.into();
                            return Poll::Ready(Err(SendFailure::Upstream(e)));
                        }
                        Err(e) => {
                            self.stop(None);
                            return Poll::Ready(Err(SendFailure::Upstream(e)));
                        }
                    }
                }
                self.large = None;
                if self.framing == Out::Chunked {
                    out.extend_from_slice(chunked::CHUNK_END);
                }
                continue;
            }
            if self.ended {
                self.done = true;
                return Poll::Ready(Ok(()));
            }
            if waiting_for_body {
                return Poll::Pending;
            }
        }
    }

    /// Moves the body's ready frames into `out` (framed), a large one
    /// into `large`; true when the body has nothing more yet.
    fn gather(&mut self, cx: &mut Context<'_>, out: &mut Vec<u8>) -> Result<bool, SendFailure> {
        loop {
            let frame = match Pin::new(&mut self.body).poll_frame(cx) {
                Poll::Pending => return Ok(true),
                Poll::Ready(None) => {
                    match self.framing {
                        Out::Chunked => out.extend_from_slice(chunked::LAST_CHUNK),
                        Out::Length(left) if left > 0 => {
                            // The upstream would wait for the rest forever.
                            return Err(SendFailure::Client(BodyError::Downstream(
                                crate::body::DownstreamError::Closed,
                            )));
                        }
                        _ => {}
                    }
                    self.ended = true;
                    return Ok(false);
                }
                Poll::Ready(Some(Err(e))) => return Err(SendFailure::Client(e)),
                Poll::Ready(Some(Ok(frame))) => frame,
            };
            let data = match frame.into_data() {
                Ok(data) => data,
                Err(frame) => {
                    if let (Out::Chunked, Ok(trailers)) = (self.framing, frame.into_trailers()) {
                        out.extend_from_slice(b"0\r\n");
                        for (name, value) in &trailers {
                            out.extend_from_slice(name.as_str().as_bytes());
                            out.extend_from_slice(b": ");
                            out.extend_from_slice(value.as_bytes());
                            out.extend_from_slice(b"\r\n");
                        }
                        out.extend_from_slice(b"\r\n");
                        self.ended = true;
                        return Ok(false);
                    }
                    continue;
                }
            };
            if data.is_empty() {
                continue;
            }
            match &mut self.framing {
                Out::Chunked => chunked::chunk_start(out, data.len()),
                Out::Length(left) => match left.checked_sub(data.len() as u64) {
                    Some(rest) => *left = rest,
                    None => {
                        let e = std::io::Error::other("the request body is longer than declared");
                        return Err(SendFailure::Upstream(e));
                    }
                },
                Out::None => continue,
            }
            if data.len() > COPY_AT_MOST {
                self.large = Some(data);
                return Ok(false);
            }
            out.extend_from_slice(&data);
            if self.framing == Out::Chunked {
                out.extend_from_slice(chunked::CHUNK_END);
            }
            if out.len() >= WRITE_BATCH {
                return Ok(false);
            }
        }
    }
}

/// How much of the answer's body is left.
#[derive(Debug)]
enum Reading {
    Length(u64),
    Chunked(Decoder),
    UntilClose,
    Done,
}

/// An answer's body, read from the connection it arrives on; the
/// connection comes back from [`Body::take_connection`] when it can carry
/// another exchange.
pub(crate) struct Body {
    /// `None` once let go (failed, closing, or taken for the pool).
    conn: Option<Box<Conn>>,
    /// A request body still being sent (boxed: most are sent whole with
    /// the head).
    sending: Option<Box<Sending>>,
    reading: Reading,
    keep_alive: bool,
    /// A chunked body's trailer section as it arrives, then its fields.
    trailers: Option<Box<Trailers>>,
}

enum Trailers {
    Arriving(Vec<u8>),
    Parsed(HeaderMap),
}

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Body")
            .field("reading", &self.reading)
            .field("keep_alive", &self.keep_alive)
            .finish()
    }
}

impl Body {
    /// The connection, if the body ended cleanly and it may carry another
    /// exchange.
    pub(crate) fn take_connection(&mut self) -> Option<Box<Conn>> {
        match self.reading {
            Reading::Done => self.conn.take(),
            _ => None,
        }
    }

    /// The body ended: the connection stays only if it can be reused.
    fn ended(&mut self) {
        self.reading = Reading::Done;
        let reusable = self.keep_alive
            && self.sending.is_none()
            && self.conn.as_ref().is_some_and(|c| c.buf.is_empty());
        if !reusable {
            self.sending = None;
            self.conn = None;
        }
    }

    fn fail(
        &mut self,
        e: UpstreamBodyError,
    ) -> Poll<Option<Result<Frame<Bytes>, UpstreamBodyError>>> {
        self.reading = Reading::Done;
        self.sending = None;
        self.conn = None;
        Poll::Ready(Some(Err(e)))
    }

    pub(crate) fn poll_frame(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, UpstreamBodyError>>> {
        if let Some(Trailers::Parsed(_)) = self.trailers.as_deref() {
            let Some(Trailers::Parsed(map)) = self.trailers.take().map(|t| *t) else {
                unreachable!("matched above");
            };
            return Poll::Ready(Some(Ok(Frame::trailers(map))));
        }
        if matches!(self.reading, Reading::Done) {
            return Poll::Ready(None);
        }
        let Some(conn) = self.conn.as_mut() else {
            return Poll::Ready(None);
        };
        if let Some(sending) = self.sending.as_mut() {
            match sending.poll(cx, &mut conn.io, &mut conn.out) {
                Poll::Ready(Ok(())) => self.sending = None,
                // The answer goes on; the connection will not be reused.
                Poll::Ready(Err(_)) => {
                    self.sending = None;
                    self.keep_alive = false;
                }
                Poll::Pending => {}
            }
        }
        loop {
            if !conn.buf.is_empty() {
                match &mut self.reading {
                    Reading::Length(left) => {
                        let n = usize::try_from(*left)
                            .unwrap_or(usize::MAX)
                            .min(conn.buf.len());
                        let data = conn.buf.split_to(n).freeze();
                        *left -= n as u64;
                        if *left == 0 {
                            self.ended();
                        }
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                    Reading::UntilClose => {
                        let data = conn.buf.split().freeze();
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                    Reading::Chunked(decoder) => {
                        let in_trailers = decoder.is_done() || decoder.in_trailers();
                        let step = match decoder.step(&conn.buf) {
                            Ok(step) => step,
                            Err(e) => return self.fail(UpstreamBodyError::Malformed(e)),
                        };
                        let done = decoder.is_done();
                        if in_trailers {
                            if !matches!(self.trailers.as_deref(), Some(Trailers::Arriving(_))) {
                                self.trailers = Some(Box::new(Trailers::Arriving(Vec::new())));
                            }
                            if let Some(Trailers::Arriving(kept)) = self.trailers.as_deref_mut() {
                                kept.extend_from_slice(&conn.buf[..step.consumed]);
                            }
                        }
                        let data = step.data.map(|(start, end)| {
                            conn.buf.advance(start);
                            let data = conn.buf.split_to(end - start).freeze();
                            conn.buf.advance(step.consumed - end);
                            data
                        });
                        if data.is_none() {
                            conn.buf.advance(step.consumed);
                        }
                        if done {
                            if let Err(e) = self.parse_trailers() {
                                return self.fail(e);
                            }
                            self.ended();
                            return match data {
                                Some(data) => Poll::Ready(Some(Ok(Frame::data(data)))),
                                None => self.poll_frame(cx),
                            };
                        }
                        if let Some(data) = data {
                            return Poll::Ready(Some(Ok(Frame::data(data))));
                        }
                        continue;
                    }
                    Reading::Done => return Poll::Ready(None),
                }
            }
            let want = match self.reading {
                Reading::Length(left) => usize::try_from(left).unwrap_or(BODY_READ),
                _ => BODY_READ,
            }
            .clamp(HEAD_READ, BODY_READ);
            match ready!(conn.poll_fill(cx, want)) {
                Ok(0) => {
                    if matches!(self.reading, Reading::UntilClose) {
                        self.keep_alive = false;
                        self.ended();
                        return Poll::Ready(None);
                    }
                    return self.fail(UpstreamBodyError::Closed);
                }
                Ok(_) => {}
                Err(e) => return self.fail(UpstreamBodyError::Io(e)),
            }
        }
    }

    /// Parses the trailer section kept, if it holds any fields.
    fn parse_trailers(&mut self) -> Result<(), UpstreamBodyError> {
        let Some(Trailers::Arriving(section)) = self.trailers.take().map(|t| *t) else {
            return Ok(());
        };
        if section.len() <= 2 {
            return Ok(());
        }
        let mut fields = Vec::new();
        levee_h1::head::parse_trailers(&section, &mut fields)
            .map_err(UpstreamBodyError::Malformed)?;
        let mut map = HeaderMap::with_capacity(fields.len());
        for f in &fields {
            let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(f.name(&section)),
                HeaderValue::from_bytes(f.value(&section)),
            ) else {
                return Err(UpstreamBodyError::Malformed(levee_h1::Error::Syntax(
                    "invalid trailer field",
                )));
            };
            map.append(name, value);
        }
        self.trailers = Some(Box::new(Trailers::Parsed(map)));
        Ok(())
    }

    pub(crate) fn is_end_stream(&self) -> bool {
        matches!(self.reading, Reading::Done) && self.trailers.is_none()
    }

    pub(crate) fn size_hint(&self) -> SizeHint {
        match self.reading {
            Reading::Length(n) => SizeHint::with_exact(n),
            Reading::Done if self.trailers.is_none() => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guard::ConnectionCap;
    use proptest::prelude::*;
    use tokio::io::AsyncWriteExt;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    }

    /// Answers one request on an in-memory connection with `wire`, written
    /// in pieces of `piece` bytes, then holds the connection open.
    async fn answer_with(wire: Vec<u8>, piece: usize) -> Box<Conn> {
        let (ours, mut theirs) = tokio::io::duplex(1 << 16);
        tokio::spawn(async move {
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                if theirs.read(&mut byte).await.unwrap_or(0) == 0 {
                    return;
                }
                head.push(byte[0]);
            }
            for part in wire.chunks(piece.max(1)) {
                if theirs.write_all(part).await.is_err() {
                    return;
                }
                tokio::task::yield_now().await;
            }
            let _ = theirs.read(&mut byte).await;
        });
        let slot = ConnectionCap::unlimited().open().expect("no cap");
        Box::new(Conn::new(UpstreamIo::Memory(ours), slot, true))
    }

    fn get() -> http::Request<UpstreamBody> {
        let mut req = http::Request::new(UpstreamBody::empty());
        *req.uri_mut() = http::Uri::from_static("/x");
        req
    }

    /// The body's data and trailers, or the error that ended it.
    async fn read_all(body: &mut Body) -> Result<(Vec<u8>, Option<HeaderMap>), String> {
        let (mut data, mut trailers) = (Vec::new(), None);
        while let Some(frame) = std::future::poll_fn(|cx| body.poll_frame(cx)).await {
            let frame = frame.map_err(|e| e.to_string())?;
            match frame.into_data() {
                Ok(d) => data.extend_from_slice(&d),
                Err(f) => trailers = f.into_trailers().ok(),
            }
        }
        Ok((data, trailers))
    }

    fn encode(body: &[u8], chunked: bool, trailer: bool, chunk: usize) -> Vec<u8> {
        let mut wire = b"HTTP/1.1 200 OK\r\n".to_vec();
        if !chunked {
            wire.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
            wire.extend_from_slice(body);
            return wire;
        }
        wire.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
        for part in body.chunks(chunk.max(1)) {
            chunked::chunk_start(&mut wire, part.len());
            wire.extend_from_slice(part);
            wire.extend_from_slice(b"\r\n");
        }
        wire.extend_from_slice(b"0\r\n");
        if trailer {
            wire.extend_from_slice(b"X-Sum: 7\r\n");
        }
        wire.extend_from_slice(b"\r\n");
        wire
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// A generated answer, fed in arbitrary pieces, arrives whole, with
        /// its trailers, and leaves the connection reusable.
        #[test]
        fn answers_fed_in_pieces_arrive_whole(
            body in proptest::collection::vec(any::<u8>(), 0..3000),
            chunked in any::<bool>(),
            trailer in any::<bool>(),
            chunk in 1usize..700,
            piece in 1usize..400,
        ) {
            let wire = encode(&body, chunked, trailer, chunk);
            let (data, trailers, reusable) = runtime().block_on(async {
                let conn = answer_with(wire, piece).await;
                let resp = exchange(conn, get()).await.map_err(|f| f.detail).expect("an answer");
                let mut body = resp.into_body();
                let (data, trailers) = read_all(&mut body).await.expect("a whole body");
                (data, trailers, body.take_connection().is_some())
            });
            prop_assert_eq!(data, body);
            prop_assert_eq!(
                trailers.and_then(|t| t.get("x-sum").cloned()),
                (chunked && trailer).then(|| HeaderValue::from_static("7"))
            );
            prop_assert!(reusable);
        }

        /// Arbitrary bytes as an answer never panic: a head or a failure,
        /// and a body that ends or fails, without hanging once the
        /// upstream closes.
        #[test]
        fn arbitrary_answers_end_cleanly(
            wire in proptest::collection::vec(any::<u8>(), 0..600),
            prefix in any::<bool>(),
        ) {
            let mut bytes = if prefix { b"HTTP/1.1 200 OK\r\n".to_vec() } else { Vec::new() };
            bytes.extend_from_slice(&wire);
            runtime().block_on(async {
                let (ours, mut theirs) = tokio::io::duplex(1 << 16);
                tokio::spawn(async move {
                    let mut sink = [0u8; 1024];
                    let _ = theirs.read(&mut sink).await;
                    let _ = theirs.write_all(&bytes).await;
                });
                let slot = ConnectionCap::unlimited().open().expect("no cap");
                let conn = Box::new(Conn::new(UpstreamIo::Memory(ours), slot, true));
                if let Ok(resp) = exchange(conn, get()).await {
                    let mut body = resp.into_body();
                    let _ = read_all(&mut body).await;
                }
            });
        }
    }

    #[test]
    fn a_head_answer_has_no_body_and_an_until_close_answer_no_reuse() {
        runtime().block_on(async {
            let conn =
                answer_with(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n".to_vec(), 64).await;
            let mut req = get();
            *req.method_mut() = http::Method::HEAD;
            let mut body = exchange(conn, req)
                .await
                .ok()
                .expect("an answer")
                .into_body();
            assert!(body.is_end_stream());
            assert!(body.take_connection().is_some());

            let conn = answer_with(b"HTTP/1.1 200 OK\r\n\r\nuntil".to_vec(), 64).await;
            let mut body = exchange(conn, get())
                .await
                .ok()
                .expect("an answer")
                .into_body();
            // The upstream holds the connection open: the data arrives, the
            // end does not, and the connection is never offered for reuse.
            let frame = std::future::poll_fn(|cx| body.poll_frame(cx)).await;
            assert_eq!(frame.unwrap().unwrap().into_data().unwrap(), "until");
            assert!(body.take_connection().is_none());
        });
    }
}
