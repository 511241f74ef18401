//! Request and response heads, parsed in place: the head's parts are
//! offsets into the caller's buffer ([`Field`]), and the message's length
//! ([`Framing`]) and what it means for the connection are decided once,
//! by RFC 9112 §6.3, refusing every ambiguity a request could be smuggled
//! through.

use crate::Error;
use std::mem::MaybeUninit;

/// The most header fields httparse is given room for; [`Limits`] may
/// allow fewer.
pub const MAX_FIELDS: usize = 128;

/// What a head may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of the head, request or status line to the blank line.
    pub max_head_bytes: usize,
    /// Header fields (at most [`MAX_FIELDS`]).
    pub max_fields: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_head_bytes: 64 * 1024,
            max_fields: 100,
        }
    }
}

/// A header field: where its name and value lie in the buffer parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Field {
    name: (u32, u32),
    value: (u32, u32),
}

impl Field {
    /// The field's name in `buf` (the buffer it was parsed from), as sent.
    pub fn name<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        &buf[self.name.0 as usize..self.name.1 as usize]
    }

    /// The field's value in `buf`, without surrounding whitespace.
    pub fn value<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        &buf[self.value.0 as usize..self.value.1 as usize]
    }

    /// Where the value lies in the buffer (to share it without a copy).
    pub fn value_range(&self) -> std::ops::Range<usize> {
        self.value.0 as usize..self.value.1 as usize
    }

    /// Whether the field is named `lower` (given in lower case).
    pub fn is(&self, buf: &[u8], lower: &str) -> bool {
        self.name(buf).eq_ignore_ascii_case(lower.as_bytes())
    }
}

/// How a message's body ends (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body.
    None,
    /// Exactly this many bytes (never 0: that is `None`).
    Length(u64),
    /// The chunked transfer coding.
    Chunked,
    /// Until the connection closes (responses only).
    UntilClose,
}

/// A parsed request head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestHead {
    /// Bytes of the head, including the blank line that ends it.
    pub len: usize,
    method: (u32, u32),
    target: (u32, u32),
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor: u8,
    pub framing: Framing,
    /// Whether the connection may carry another request after this one.
    pub keep_alive: bool,
    /// `Expect: 100-continue` on an HTTP/1.1 request.
    pub expect_continue: bool,
    /// `Connection: upgrade` with an `Upgrade` field.
    pub upgrade: bool,
}

impl RequestHead {
    /// The method in `buf`.
    pub fn method<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        &buf[self.method.0 as usize..self.method.1 as usize]
    }

    /// The request target in `buf`.
    pub fn target<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        &buf[self.target.0 as usize..self.target.1 as usize]
    }

    /// Where the request target lies in the buffer.
    pub fn target_range(&self) -> std::ops::Range<usize> {
        self.target.0 as usize..self.target.1 as usize
    }
}

/// A parsed response head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseHead {
    /// Bytes of the head, including the blank line that ends it.
    pub len: usize,
    pub status: u16,
    reason: (u32, u32),
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor: u8,
    pub framing: Framing,
    /// Whether the connection may carry another exchange after this one.
    pub keep_alive: bool,
}

impl ResponseHead {
    /// The reason phrase in `buf`.
    pub fn reason<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        &buf[self.reason.0 as usize..self.reason.1 as usize]
    }

    /// An interim answer (1xx other than 101): another head follows.
    pub fn is_interim(&self) -> bool {
        (100..200).contains(&self.status) && self.status != 101
    }
}

/// What a response answers, which decides whether it has a body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Answering {
    /// The request was HEAD.
    pub head: bool,
}

/// Parses the request head at the start of `buf`: `Ok(None)` while it is
/// incomplete (read more), the head with its fields in `fields` (cleared
/// first) when complete, or why the request must be refused.
pub fn parse_request(
    buf: &[u8],
    limits: &Limits,
    fields: &mut Vec<Field>,
) -> Result<Option<RequestHead>, Error> {
    fields.clear();
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_FIELDS];
    let mut req = httparse::Request::new(&mut []);
    let len = match req.parse_with_uninit_headers(buf, &mut slots) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => {
            return if buf.len() > limits.max_head_bytes {
                Err(Error::HeadTooLarge)
            } else {
                check_line_endings(buf)?;
                Ok(None)
            };
        }
        Err(e) => return Err(refusal(buf, e)),
    };
    if len > limits.max_head_bytes {
        return Err(Error::HeadTooLarge);
    }
    if req.headers.len() > limits.max_fields {
        return Err(Error::TooManyFields);
    }
    check_line_endings(&buf[..len])?;
    let minor = req.version.unwrap_or(1);
    let method = span(buf, req.method.unwrap_or("").as_bytes());
    let target = span(buf, req.path.unwrap_or("").as_bytes());
    collect(buf, req.headers, fields);
    let meaning = Meaning::read(buf, fields, minor, Side::Request)?;
    let framing = match (meaning.chunked, meaning.content_length) {
        (true, _) => Framing::Chunked,
        (false, Some(0) | None) => Framing::None,
        (false, Some(n)) => Framing::Length(n),
    };
    Ok(Some(RequestHead {
        len,
        method,
        target,
        minor,
        framing,
        keep_alive: meaning.keep_alive,
        expect_continue: meaning.expect_continue,
        upgrade: meaning.upgrade,
    }))
}

/// Parses the response head at the start of `buf`, answering a request
/// as `answering` says: `Ok(None)` while incomplete, else the head (fields
/// in `fields`) or why the response cannot be framed (a proxy answers
/// 502 and closes the upstream connection).
pub fn parse_response(
    buf: &[u8],
    limits: &Limits,
    fields: &mut Vec<Field>,
    answering: Answering,
) -> Result<Option<ResponseHead>, Error> {
    fields.clear();
    // (httparse has no uninitialised form for responses.)
    let mut slots = [httparse::EMPTY_HEADER; MAX_FIELDS];
    let mut resp = httparse::Response::new(&mut slots);
    let len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => {
            return if buf.len() > limits.max_head_bytes {
                Err(Error::HeadTooLarge)
            } else {
                Ok(None)
            };
        }
        Err(e) => return Err(refusal(buf, e)),
    };
    if len > limits.max_head_bytes {
        return Err(Error::HeadTooLarge);
    }
    if resp.headers.len() > limits.max_fields {
        return Err(Error::TooManyFields);
    }
    let minor = resp.version.unwrap_or(1);
    let status = resp.code.unwrap_or(0);
    let reason = span(buf, resp.reason.unwrap_or("").as_bytes());
    collect(buf, resp.headers, fields);
    let bodiless = answering.head || (100..200).contains(&status) || status == 204 || status == 304;
    let meaning = match Meaning::read(buf, fields, minor, Side::Response) {
        Ok(m) => m,
        // A response's codings are the upstream's business: a final
        // coding other than chunked is read until the close.
        Err(Error::TransferEncodingNotChunked) => Meaning {
            keep_alive: false,
            ..Meaning::until_close()
        },
        // HTTP/1.0 with Transfer-Encoding, or both framings: faulty, so
        // the connection is not reused (RFC 9112 §6.1, §6.3).
        Err(Error::TransferEncodingAndContentLength) => Meaning {
            chunked: true,
            keep_alive: false,
            ..Meaning::until_close()
        },
        Err(Error::TransferEncodingInHttp10) => Meaning {
            keep_alive: false,
            ..Meaning::until_close()
        },
        Err(e) => return Err(e),
    };
    let framing = if bodiless {
        Framing::None
    } else if meaning.chunked {
        Framing::Chunked
    } else {
        match meaning.content_length {
            Some(0) => Framing::None,
            Some(n) => Framing::Length(n),
            None => Framing::UntilClose,
        }
    };
    let keep_alive = meaning.keep_alive && framing != Framing::UntilClose && status != 101;
    Ok(Some(ResponseHead {
        len,
        status,
        reason,
        minor,
        framing,
        keep_alive,
    }))
}

/// Parses a chunked body's trailer section (`buf` ends with its blank
/// line) into `fields` (cleared first).
pub fn parse_trailers(buf: &[u8], fields: &mut Vec<Field>) -> Result<(), Error> {
    fields.clear();
    let mut slots = [httparse::EMPTY_HEADER; MAX_FIELDS];
    match httparse::parse_headers(buf, &mut slots) {
        Ok(httparse::Status::Complete((_, parsed))) => {
            collect(buf, parsed, fields);
            Ok(())
        }
        Ok(httparse::Status::Partial) => Err(Error::Syntax("incomplete trailer section")),
        Err(e) => Err(refusal(buf, e)),
    }
}

/// What the framing and connection fields of a message say.
#[derive(Debug, Clone, Copy)]
struct Meaning {
    content_length: Option<u64>,
    chunked: bool,
    keep_alive: bool,
    expect_continue: bool,
    upgrade: bool,
}

impl Meaning {
    fn until_close() -> Self {
        Self {
            content_length: None,
            chunked: false,
            keep_alive: false,
            expect_continue: false,
            upgrade: false,
        }
    }

    fn read(buf: &[u8], fields: &[Field], minor: u8, side: Side) -> Result<Self, Error> {
        let expect = side == Side::Request;
        let mut content_length: Option<u64> = None;
        let mut codings: Option<Codings> = None;
        let (mut close, mut keep, mut upgrade_token, mut upgrade_field) =
            (false, false, false, false);
        let mut expect_continue = false;
        for f in fields {
            let name = f.name(buf);
            // The first letter rules out most fields before comparing.
            match name.first().map(u8::to_ascii_lowercase) {
                Some(b'c') if f.is(buf, "content-length") => {
                    for n in list(f.value(buf)) {
                        let n = decimal(n).ok_or(Error::InvalidContentLength)?;
                        match content_length {
                            Some(m) if m != n => return Err(Error::ConflictingContentLength),
                            _ => content_length = Some(n),
                        }
                    }
                    if list(f.value(buf)).next().is_none() {
                        return Err(Error::InvalidContentLength);
                    }
                }
                Some(b'c') if f.is(buf, "connection") => {
                    for token in list(f.value(buf)) {
                        if token.eq_ignore_ascii_case(b"close") {
                            close = true;
                        } else if token.eq_ignore_ascii_case(b"keep-alive") {
                            keep = true;
                        } else if token.eq_ignore_ascii_case(b"upgrade") {
                            upgrade_token = true;
                        }
                    }
                }
                Some(b't') if f.is(buf, "transfer-encoding") => {
                    let c = codings.get_or_insert(Codings::default());
                    for coding in list(f.value(buf)) {
                        c.push(coding);
                    }
                }
                Some(b'e') if expect && f.is(buf, "expect") => {
                    if f.value(buf).eq_ignore_ascii_case(b"100-continue") {
                        // An HTTP/1.0 client cannot know 100 (RFC 9110 §10.1.1).
                        expect_continue = minor == 1;
                    } else {
                        return Err(Error::UnsupportedExpectation);
                    }
                }
                Some(b'u') if f.is(buf, "upgrade") => upgrade_field = true,
                _ => {}
            }
        }
        let chunked = match codings {
            None => false,
            Some(_) if minor == 0 => return Err(Error::TransferEncodingInHttp10),
            Some(_) if content_length.is_some() => {
                return Err(Error::TransferEncodingAndContentLength)
            }
            Some(c) if !c.last_chunked => return Err(Error::TransferEncodingNotChunked),
            // A response's other codings are the client's to undo; a
            // request's would have to be forwarded undecoded.
            Some(c) if c.others && side == Side::Request => {
                return Err(Error::UnsupportedTransferEncoding)
            }
            Some(_) => true,
        };
        let keep_alive = if minor >= 1 { !close } else { keep && !close };
        Ok(Self {
            content_length,
            chunked,
            keep_alive,
            expect_continue,
            upgrade: minor >= 1 && upgrade_token && upgrade_field,
        })
    }
}

/// Which message a head is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Request,
    Response,
}

/// The transfer codings named, in order.
#[derive(Debug, Clone, Copy, Default)]
struct Codings {
    /// Any coding before the last, or a last that is not chunked.
    others: bool,
    last_chunked: bool,
}

impl Codings {
    fn push(&mut self, coding: &[u8]) {
        if self.last_chunked {
            // chunked, then another: chunked is no longer last, and was
            // applied before something else.
            self.others = true;
        }
        self.last_chunked = coding.eq_ignore_ascii_case(b"chunked");
        if !self.last_chunked {
            self.others = true;
        }
    }
}

/// Whether the comma-separated field value `value` holds `token`
/// (compared without case), as `Connection: keep-alive, close` holds
/// `close`.
pub fn has_token(value: &[u8], token: &[u8]) -> bool {
    list(value).any(|t| t.eq_ignore_ascii_case(token))
}

/// The elements of a comma-separated list, without surrounding whitespace
/// and without empty elements (RFC 9110 §5.6.1).
fn list(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|b| *b == b',')
        .map(trim)
        .filter(|e| !e.is_empty())
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// A decimal length: 1 to 19 digits and nothing else (no sign, no
/// whitespace inside), so it cannot overflow a `u64`.
fn decimal(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 19 || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(s.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0')))
}

/// Where `part` (a slice of `buf`) lies in `buf`.
fn span(buf: &[u8], part: &[u8]) -> (u32, u32) {
    let start = (part.as_ptr() as usize).wrapping_sub(buf.as_ptr() as usize);
    if part.is_empty() || start > buf.len() {
        return (0, 0);
    }
    (start as u32, (start + part.len()) as u32)
}

fn collect(buf: &[u8], headers: &[httparse::Header<'_>], fields: &mut Vec<Field>) {
    fields.extend(headers.iter().map(|h| Field {
        name: span(buf, h.name.as_bytes()),
        value: span(buf, h.value),
    }));
}

/// Every LF in `head` follows a CR.
fn check_line_endings(head: &[u8]) -> Result<(), Error> {
    let mut prev = 0u8;
    for &b in head {
        if b == b'\n' && prev != b'\r' {
            return Err(Error::BareLf);
        }
        prev = b;
    }
    Ok(())
}

/// The refusal for httparse's error on `buf`: a folded line and a bare LF
/// named as such, anything else as syntax.
fn refusal(buf: &[u8], e: httparse::Error) -> Error {
    if e == httparse::Error::TooManyHeaders {
        return Error::TooManyFields;
    }
    let end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(buf.len(), |p| p + 2);
    let head = &buf[..end];
    if head
        .windows(3)
        .any(|w| w[0] == b'\n' && matches!(w[1], b' ' | b'\t') && w[2] != b'\n')
    {
        return Error::ObsFold;
    }
    if check_line_endings(head).is_err() {
        return Error::BareLf;
    }
    Error::Syntax(match e {
        httparse::Error::HeaderName => "invalid header name",
        httparse::Error::HeaderValue => "invalid header value",
        httparse::Error::NewLine => "invalid line ending",
        httparse::Error::Status => "invalid status",
        httparse::Error::Token => "invalid token",
        httparse::Error::Version => "invalid version",
        httparse::Error::TooManyHeaders => "too many headers",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(text: &str) -> Result<Option<RequestHead>, Error> {
        parse_request(text.as_bytes(), &Limits::default(), &mut Vec::new())
    }

    fn framing(text: &str) -> Result<Framing, Error> {
        req(text).map(|h| h.expect("complete").framing)
    }

    #[test]
    fn a_request_is_framed_by_its_fields() {
        assert_eq!(
            framing("GET / HTTP/1.1\r\nHost: a\r\n\r\n"),
            Ok(Framing::None)
        );
        assert_eq!(
            framing("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n"),
            Ok(Framing::Length(5))
        );
        assert_eq!(
            framing("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n"),
            Ok(Framing::None)
        );
        assert_eq!(
            framing("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n"),
            Ok(Framing::Chunked)
        );
        // The same length twice, in one field or two, is one length.
        assert_eq!(
            framing("POST / HTTP/1.1\r\nContent-Length: 7, 7\r\nContent-Length: 7\r\n\r\n"),
            Ok(Framing::Length(7))
        );
        assert_eq!(req("GET / HTTP/1.1\r\nHost: a\r\n"), Ok(None), "incomplete");
    }

    #[test]
    fn every_smuggling_shape_is_refused() {
        for (text, error) in [
            (
                "POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
                Error::TransferEncodingAndContentLength,
            ),
            (
                "POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
                Error::ConflictingContentLength,
            ),
            ("POST / HTTP/1.1\r\nContent-Length: 5, 6\r\n\r\n", Error::ConflictingContentLength),
            ("POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\n", Error::InvalidContentLength),
            ("POST / HTTP/1.1\r\nContent-Length: 0x5\r\n\r\n", Error::InvalidContentLength),
            ("POST / HTTP/1.1\r\nContent-Length: \r\n\r\n", Error::InvalidContentLength),
            (
                "POST / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n",
                Error::InvalidContentLength,
            ),
            (
                "POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
                Error::TransferEncodingNotChunked,
            ),
            (
                "POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
                Error::UnsupportedTransferEncoding,
            ),
            (
                "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
                Error::UnsupportedTransferEncoding,
            ),
            ("POST / HTTP/1.1\r\nTransfer-Encoding: \r\n\r\n", Error::TransferEncodingNotChunked),
            (
                "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
                Error::TransferEncodingInHttp10,
            ),
            ("GET / HTTP/1.1\r\nHost: a\nX: b\r\n\r\n", Error::BareLf),
            ("GET / HTTP/1.1\nHost: a\r\n\r\n", Error::BareLf),
            ("GET / HTTP/1.1\r\nX: a\r\n  b\r\n\r\n", Error::ObsFold),
            ("GET / HTTP/1.1\r\nExpect: 200-ok\r\n\r\n", Error::UnsupportedExpectation),
        ] {
            assert_eq!(req(text), Err(error), "{text:?}");
        }
        assert!(matches!(
            req("GET / HTTP/1.1\r\nHost : a\r\n\r\n"),
            Err(Error::Syntax(_))
        ));
        assert!(matches!(
            req("GET / HTTP/2.0\r\n\r\n"),
            Err(Error::Syntax(_))
        ));
    }

    #[test]
    fn limits_are_kept() {
        let limits = Limits {
            max_head_bytes: 64,
            max_fields: 2,
        };
        let mut f = Vec::new();
        let long = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(100));
        assert_eq!(
            parse_request(long.as_bytes(), &limits, &mut f),
            Err(Error::HeadTooLarge)
        );
        let partial = format!("GET /{}", "a".repeat(100));
        assert_eq!(
            parse_request(partial.as_bytes(), &limits, &mut f),
            Err(Error::HeadTooLarge),
            "an endless head is refused before it ends"
        );
        assert_eq!(
            parse_request(
                b"GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n",
                &limits,
                &mut f
            ),
            Err(Error::TooManyFields)
        );
        let many: String = (0..200).map(|i| format!("X{i}: v\r\n")).collect();
        let text = format!("GET / HTTP/1.1\r\n{many}\r\n");
        assert_eq!(
            parse_request(
                text.as_bytes(),
                &Limits {
                    max_head_bytes: 1 << 20,
                    max_fields: 100
                },
                &mut f
            ),
            Err(Error::TooManyFields)
        );
    }

    #[test]
    fn the_connection_follows_version_and_fields() {
        let head = |t: &str| req(t).unwrap().unwrap();
        assert!(head("GET / HTTP/1.1\r\n\r\n").keep_alive);
        assert!(!head("GET / HTTP/1.1\r\nConnection: close\r\n\r\n").keep_alive);
        assert!(!head("GET / HTTP/1.0\r\n\r\n").keep_alive);
        assert!(head("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").keep_alive);
        assert!(head("PUT / HTTP/1.1\r\nExpect: 100-Continue\r\n\r\n").expect_continue);
        assert!(!head("PUT / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n").expect_continue);
        let up = head(
            "GET /ws HTTP/1.1\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\r\n",
        );
        assert!(up.upgrade);
        assert!(!head("GET / HTTP/1.1\r\nUpgrade: websocket\r\n\r\n").upgrade);
    }

    #[test]
    fn parts_are_read_from_the_buffer() {
        let text = b"DELETE /a?b=c HTTP/1.1\r\nHost: x\r\nX-Id:  42 \r\n\r\nrest";
        let mut fields = Vec::new();
        let head = parse_request(text, &Limits::default(), &mut fields)
            .unwrap()
            .unwrap();
        assert_eq!(head.method(text), b"DELETE");
        assert_eq!(head.target(text), b"/a?b=c");
        assert_eq!(&text[head.len..], b"rest");
        assert_eq!(fields.len(), 2);
        assert_eq!(fields[1].name(text), b"X-Id");
        assert_eq!(fields[1].value(text), b"42");
    }

    fn resp(text: &str, head: bool) -> ResponseHead {
        parse_response(
            text.as_bytes(),
            &Limits::default(),
            &mut Vec::new(),
            Answering { head },
        )
        .unwrap()
        .unwrap()
    }

    #[test]
    fn a_response_is_framed_by_its_status_request_and_fields() {
        let r = resp("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", false);
        assert_eq!((r.framing, r.keep_alive), (Framing::Length(5), true));
        // HEAD, 204 and 304 have no body whatever they declare.
        assert_eq!(
            resp("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", true).framing,
            Framing::None
        );
        assert_eq!(
            resp(
                "HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n",
                false
            )
            .framing,
            Framing::None
        );
        assert_eq!(
            resp(
                "HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n",
                false
            )
            .framing,
            Framing::None
        );
        assert!(resp("HTTP/1.1 100 Continue\r\n\r\n", false).is_interim());
        // Neither length nor coding: until the close, never reused.
        let r = resp("HTTP/1.1 200 OK\r\n\r\n", false);
        assert_eq!((r.framing, r.keep_alive), (Framing::UntilClose, false));
        // Both: the coding wins and the connection is not reused.
        let r = resp(
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            false,
        );
        assert_eq!((r.framing, r.keep_alive), (Framing::Chunked, false));
        let r = resp(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            false,
        );
        assert_eq!((r.framing, r.keep_alive), (Framing::Chunked, true));
        let r = resp("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", false);
        assert_eq!((r.framing, r.keep_alive), (Framing::UntilClose, false));
        let r = resp(
            "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\n",
            false,
        );
        assert!(!r.keep_alive);
        let bad = parse_response(
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            &Limits::default(),
            &mut Vec::new(),
            Answering::default(),
        );
        assert_eq!(bad, Err(Error::ConflictingContentLength));
    }
}
