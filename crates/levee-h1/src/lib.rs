//! HTTP/1.1 framing as plain functions over bytes, for the proxy's
//! dedicated HTTP/1.1 path and the load generator: no I/O, no allocation
//! per message beyond what the caller reuses.
//!
//! - [`head`]: a request or response head parsed in place (httparse) into
//!   offsets into the caller's buffer, with the message's length decided by
//!   RFC 9112 §6 and every request-smuggling defence applied: a
//!   Content-Length beside a Transfer-Encoding, invalid or disagreeing
//!   Content-Lengths, a transfer coding other than a final `chunked`,
//!   obs-fold, bare LF, oversized heads and too many fields are refused,
//!   each with the status a server answers ([`Error::status`]).
//! - [`chunked`]: the chunked transfer coding, decoded incrementally with
//!   every size, extension and line ending checked, and encoded.
//! - [`write`]: request and response heads written into one buffer, so a
//!   head and a small body go out in one write.
//!
//! What a head means for the connection (keep-alive, `Expect:
//! 100-continue`, an upgrade) is decided here once, so the proxy and the
//! load generator agree on it.

pub mod chunked;
pub mod head;
pub mod write;

pub use head::{
    parse_request, parse_response, Answering, Field, Framing, Limits, RequestHead, ResponseHead,
};

/// Why a message cannot be framed. A server answers a request's with
/// [`Error::status`] and closes the connection; a proxy answers an
/// upstream response's with 502.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// The head is longer than the limit.
    HeadTooLarge,
    /// More header fields than the limit.
    TooManyFields,
    /// Not HTTP/1.x syntax (httparse's reason).
    Syntax(&'static str),
    /// A line ends in LF without CR (RFC 9112 §2.2: a recipient may
    /// accept it; a proxy must not, since the next hop may not).
    BareLf,
    /// A field line continued on the next (obs-fold, RFC 9112 §5.2).
    ObsFold,
    /// A Content-Length that is not a decimal number, or overflows.
    InvalidContentLength,
    /// Several Content-Lengths that disagree.
    ConflictingContentLength,
    /// Both Transfer-Encoding and Content-Length (RFC 9112 §6.1).
    TransferEncodingAndContentLength,
    /// A request's Transfer-Encoding whose final coding is not `chunked`
    /// (its length cannot be known, RFC 9112 §6.3).
    TransferEncodingNotChunked,
    /// A transfer coding before `chunked`, which a proxy would have to
    /// forward undecoded.
    UnsupportedTransferEncoding,
    /// A Transfer-Encoding in an HTTP/1.0 message (RFC 9112 §6.1: faulty
    /// framing).
    TransferEncodingInHttp10,
    /// An `Expect` other than `100-continue`.
    UnsupportedExpectation,
    /// A chunk size that is not hex, or overflows.
    InvalidChunkSize,
    /// A chunk extension or trailer section over its limit, or malformed.
    InvalidChunkExtension,
    /// A chunk's data not followed by CRLF, or a malformed trailer.
    InvalidChunk,
}

impl Error {
    /// The status a server answers a request with this error with.
    pub fn status(self) -> u16 {
        match self {
            Error::HeadTooLarge | Error::TooManyFields => 431,
            Error::UnsupportedTransferEncoding => 501,
            Error::UnsupportedExpectation => 417,
            _ => 400,
        }
    }

    /// What is wrong, for a response body or a log; names no input.
    pub fn reason(self) -> &'static str {
        match self {
            Error::HeadTooLarge => "the request head is too large",
            Error::TooManyFields => "the request has too many header fields",
            Error::Syntax(_) => "the request is not valid HTTP/1.1",
            Error::BareLf => "a line ends without CR",
            Error::ObsFold => "a header field is folded over lines",
            Error::InvalidContentLength => "Content-Length is not a valid length",
            Error::ConflictingContentLength => "Content-Length values disagree",
            Error::TransferEncodingAndContentLength => {
                "both Transfer-Encoding and Content-Length are present"
            }
            Error::TransferEncodingNotChunked => "the final transfer coding is not chunked",
            Error::UnsupportedTransferEncoding => "the transfer coding is not supported",
            Error::TransferEncodingInHttp10 => "Transfer-Encoding in an HTTP/1.0 message",
            Error::UnsupportedExpectation => "the expectation cannot be met",
            Error::InvalidChunkSize => "a chunk size is invalid",
            Error::InvalidChunkExtension => "a chunk extension or trailer is invalid",
            Error::InvalidChunk => "a chunk is not terminated by CRLF",
        }
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.reason())
    }
}

impl std::error::Error for Error {}
