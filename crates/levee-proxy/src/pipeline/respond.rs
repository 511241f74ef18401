//! The answers the gateway writes itself, in one place: a [`Refusal`] (the
//! reason and the full detail) becomes the status from
//! `ErrorKind::status`, a `levee-error` header and a JSON body with a public
//! message, or for a gRPC caller a trailers-only answer with `grpc-status`
//! and `grpc-message`. The 400, 431 and 413 of step 1, the 404 of step 2, the
//! 401, 429 and 503 of step 4 and the 502/503/504 of step 5 all come from
//! here, and their record is attached on the way out.

use crate::admit::LimitReport;
use crate::body::ProxyBody;
use crate::headers::{self, LEVEE_ERROR, REQUEST_ID};
use crate::record::Completion;
use http::{header, HeaderValue, Response};
use levee_core::{ErrorKind, Outcome};
use std::borrow::Cow;

/// Why the gateway answers a request itself.
#[derive(Debug)]
pub(crate) struct Refusal<'a> {
    pub(crate) kind: ErrorKind,
    /// The full story (addresses, library errors): for the log, never for
    /// the client unless the kind's detail is public.
    pub(crate) detail: Cow<'static, str>,
    /// The rate limit to report on the answer.
    pub(crate) limit: Option<LimitReport<'a>>,
}

impl<'a> Refusal<'a> {
    pub(crate) fn new(kind: ErrorKind, detail: impl Into<Cow<'static, str>>) -> Self {
        Self {
            kind,
            detail: detail.into(),
            limit: None,
        }
    }

    /// The same refusal, reporting `limit` on the answer.
    pub(crate) fn reporting(self, limit: Option<LimitReport<'a>>) -> Self {
        Self { limit, ..self }
    }
}

impl From<(ErrorKind, String)> for Refusal<'_> {
    fn from((kind, detail): (ErrorKind, String)) -> Self {
        Self::new(kind, detail)
    }
}

/// The gateway's own answer: status, `levee-error` reason and a JSON body
/// with a public message; for a gRPC caller, a trailers-only answer with
/// `grpc-status` and `grpc-message` instead.
pub(crate) fn error_response(
    kind: ErrorKind,
    message: &str,
    request_id: Option<&HeaderValue>,
    grpc: bool,
) -> Response<ProxyBody> {
    let mut resp = if grpc {
        let mut resp = Response::new(ProxyBody::empty());
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc"),
        );
        h.insert(
            "grpc-status",
            HeaderValue::from(u16::from(kind.grpc_status())),
        );
        if let Ok(v) = HeaderValue::from_str(&headers::grpc_percent_encode(message)) {
            h.insert("grpc-message", v);
        }
        resp
    } else {
        let mut resp = Response::new(ProxyBody::full(kind.json_body(message)));
        *resp.status_mut() = kind.status();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        resp
    };
    let h = resp.headers_mut();
    h.insert(LEVEE_ERROR, HeaderValue::from_static(kind.reason()));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(id) = request_id {
        h.insert(REQUEST_ID, id.clone());
    }
    if kind.is_shedding() {
        // Callers (another Levee among them) must not retry shed load.
        h.insert(crate::retry::OVERLOADED, HeaderValue::from_static("true"));
        h.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    if matches!(
        kind,
        ErrorKind::PayloadTooLarge | ErrorKind::HeadersTooLarge | ErrorKind::BadRequest
    ) {
        // An unread or malformed body makes the connection unusable for
        // another request.
        h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}

/// Answers for the gateway: the client gets the reason and a public
/// message; the full detail goes to the log and the access log with the
/// request id, and the record travels with the answer.
pub(crate) fn refuse(mut done: Completion, refusal: Refusal<'_>) -> Response<ProxyBody> {
    let Refusal {
        kind,
        detail,
        limit,
    } = refusal;
    let message = if kind.detail_is_public() {
        &detail
    } else {
        kind.public_message()
    };
    let mut resp = error_response(kind, message, done.request_id.as_ref(), done.grpc);
    if let Some(limit) = &limit {
        limit.write_headers(resp.headers_mut());
    }
    if kind.side() != levee_core::Side::Downstream {
        tracing::info!(
            target: "levee::error",
            reason = kind.reason(),
            request_id = done.request_id.as_ref().and_then(|v| v.to_str().ok()).unwrap_or("-"),
            detail = &*detail,
            "answered for the upstream"
        );
    }
    done.detail = Some(detail.into_owned());
    done.outcome = Outcome::Failed(kind);
    resp.body_mut().attach(done);
    resp
}
