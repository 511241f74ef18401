//! The error taxonomy: every failure the gateway can answer for itself, which
//! side caused it, whether a retry is safe, and how it is answered (status,
//! `levee-error` reason, JSON body). One table, so metrics, logs and responses
//! never disagree about a failure.

use http::StatusCode;

/// Which side of the gateway a failure came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// The client sent something the gateway refuses.
    Downstream,
    /// The upstream (or reaching it) failed.
    Upstream,
    /// The gateway itself (configuration, shutdown, a bug).
    Internal,
}

/// Every reason the gateway answers a request itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// No route matched the request.
    NoRoute,
    /// The request was malformed.
    BadRequest,
    /// The request body exceeded the listener's limit.
    PayloadTooLarge,
    /// The request headers exceeded the listener's limit.
    HeadersTooLarge,
    /// The cluster has no endpoints at all.
    NoEndpoints,
    /// The upstream refused the connection.
    ConnectRefused,
    /// Connecting to the upstream did not finish in time.
    ConnectTimeout,
    /// The upstream could not be reached (unroutable, DNS, other connect errors).
    ConnectFailed,
    /// The upstream did not answer within the request timeout.
    UpstreamTimeout,
    /// The upstream reset or closed the connection before a full response head.
    UpstreamReset,
    /// The upstream sent something that is not valid HTTP.
    UpstreamProtocol,
    /// The upstream refused an HTTP/2 stream (REFUSED_STREAM): it did not
    /// process the request.
    RefusedStream,
    /// A rate limit refused the request.
    RateLimited,
    /// The request's credentials (JWT, API key) were refused.
    Unauthorized,
    /// The gateway shed the request to protect itself or the upstream.
    Overloaded,
    /// A circuit breaker is open for the cluster or every endpoint.
    CircuitOpen,
    /// The cluster's in-flight and pending request caps are full.
    OverflowRequests,
    /// The cluster's connection cap is reached and no idle connection is free.
    OverflowConnections,
    /// The client went away before the response was complete.
    ClientClosed,
    /// The caller's deadline left no time for an attempt.
    DeadlineExceeded,
    /// The gateway is shutting down.
    Draining,
    /// A bug or an unexpected internal failure.
    Internal,
    /// An async route's queue is at a limit (jobs or bytes, in all or for
    /// the tenant): nothing was stored.
    JobQueueFull,
    /// An async route's queue cannot store or read jobs now (its file or
    /// NATS server failing).
    JobQueueUnavailable,
    /// No such job, or not the asking tenant's.
    JobNotFound,
}

impl ErrorKind {
    /// Every kind, for metric pre-registration and exhaustive tests.
    pub const ALL: [ErrorKind; 25] = [
        ErrorKind::NoRoute,
        ErrorKind::BadRequest,
        ErrorKind::PayloadTooLarge,
        ErrorKind::HeadersTooLarge,
        ErrorKind::NoEndpoints,
        ErrorKind::ConnectRefused,
        ErrorKind::ConnectTimeout,
        ErrorKind::ConnectFailed,
        ErrorKind::UpstreamTimeout,
        ErrorKind::UpstreamReset,
        ErrorKind::UpstreamProtocol,
        ErrorKind::RefusedStream,
        ErrorKind::RateLimited,
        ErrorKind::Unauthorized,
        ErrorKind::Overloaded,
        ErrorKind::CircuitOpen,
        ErrorKind::OverflowRequests,
        ErrorKind::OverflowConnections,
        ErrorKind::ClientClosed,
        ErrorKind::DeadlineExceeded,
        ErrorKind::Draining,
        ErrorKind::Internal,
        ErrorKind::JobQueueFull,
        ErrorKind::JobQueueUnavailable,
        ErrorKind::JobNotFound,
    ];

    /// The stable, machine-readable reason sent in `levee-error` and used as a metric label.
    pub const fn reason(self) -> &'static str {
        match self {
            ErrorKind::NoRoute => "no_route",
            ErrorKind::BadRequest => "bad_request",
            ErrorKind::PayloadTooLarge => "payload_too_large",
            ErrorKind::HeadersTooLarge => "headers_too_large",
            ErrorKind::NoEndpoints => "no_endpoints",
            ErrorKind::ConnectRefused => "connect_refused",
            ErrorKind::ConnectTimeout => "connect_timeout",
            ErrorKind::ConnectFailed => "connect_failed",
            ErrorKind::UpstreamTimeout => "upstream_timeout",
            ErrorKind::UpstreamReset => "upstream_reset",
            ErrorKind::UpstreamProtocol => "upstream_protocol_error",
            ErrorKind::RefusedStream => "upstream_refused_stream",
            ErrorKind::RateLimited => "rate_limited",
            ErrorKind::Unauthorized => "unauthorized",
            ErrorKind::Overloaded => "overloaded",
            ErrorKind::CircuitOpen => "circuit_open",
            ErrorKind::OverflowRequests => "overflow_requests",
            ErrorKind::OverflowConnections => "overflow_connections",
            ErrorKind::ClientClosed => "client_closed",
            ErrorKind::DeadlineExceeded => "deadline_exceeded",
            ErrorKind::Draining => "draining",
            ErrorKind::Internal => "internal",
            ErrorKind::JobQueueFull => "job_queue_full",
            ErrorKind::JobQueueUnavailable => "job_queue_unavailable",
            ErrorKind::JobNotFound => "job_not_found",
        }
    }

    /// The status the gateway answers with.
    pub const fn status(self) -> StatusCode {
        match self {
            ErrorKind::NoRoute | ErrorKind::JobNotFound => StatusCode::NOT_FOUND,
            ErrorKind::BadRequest => StatusCode::BAD_REQUEST,
            ErrorKind::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorKind::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ErrorKind::NoEndpoints
            | ErrorKind::ConnectRefused
            | ErrorKind::Draining
            | ErrorKind::RefusedStream
            | ErrorKind::Overloaded
            | ErrorKind::CircuitOpen
            | ErrorKind::OverflowRequests
            | ErrorKind::OverflowConnections
            | ErrorKind::JobQueueFull
            | ErrorKind::JobQueueUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::ConnectFailed | ErrorKind::UpstreamReset | ErrorKind::UpstreamProtocol => {
                StatusCode::BAD_GATEWAY
            }
            ErrorKind::ConnectTimeout
            | ErrorKind::UpstreamTimeout
            | ErrorKind::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
            // 499 is NGINX's convention for "client closed request"; it is only logged.
            ErrorKind::ClientClosed => match StatusCode::from_u16(499) {
                Ok(s) => s,
                Err(_) => StatusCode::BAD_REQUEST,
            },
            ErrorKind::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ErrorKind::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Which side failed.
    pub const fn side(self) -> Side {
        match self {
            ErrorKind::NoRoute
            | ErrorKind::BadRequest
            | ErrorKind::PayloadTooLarge
            | ErrorKind::HeadersTooLarge
            | ErrorKind::ClientClosed
            | ErrorKind::DeadlineExceeded
            | ErrorKind::RateLimited
            | ErrorKind::Unauthorized
            | ErrorKind::JobNotFound => Side::Downstream,
            ErrorKind::NoEndpoints
            | ErrorKind::ConnectRefused
            | ErrorKind::ConnectTimeout
            | ErrorKind::ConnectFailed
            | ErrorKind::UpstreamTimeout
            | ErrorKind::UpstreamReset
            | ErrorKind::UpstreamProtocol
            | ErrorKind::RefusedStream
            | ErrorKind::CircuitOpen
            | ErrorKind::OverflowRequests
            | ErrorKind::OverflowConnections => Side::Upstream,
            ErrorKind::Draining
            | ErrorKind::Internal
            | ErrorKind::Overloaded
            | ErrorKind::JobQueueFull
            | ErrorKind::JobQueueUnavailable => Side::Internal,
        }
    }

    /// Whether nothing of the request reached the upstream application, so any
    /// request (idempotent or not) may be retried elsewhere. The rule, stated
    /// once: a retry is safe when no byte was sent upstream, or when the request
    /// is idempotent and the failure was on the upstream side.
    pub const fn nothing_sent(self) -> bool {
        matches!(
            self,
            ErrorKind::NoEndpoints
                | ErrorKind::ConnectRefused
                | ErrorKind::ConnectTimeout
                | ErrorKind::ConnectFailed
                | ErrorKind::RefusedStream
                | ErrorKind::Overloaded
                | ErrorKind::CircuitOpen
                | ErrorKind::OverflowRequests
                | ErrorKind::OverflowConnections
        )
    }

    /// Whether the gateway refused the request to protect the upstream (or
    /// itself) rather than because something failed. Such answers carry
    /// `levee-overloaded: true`, and a Levee in front never retries them:
    /// retrying shed load only adds to the overload.
    pub const fn is_shedding(self) -> bool {
        matches!(
            self,
            ErrorKind::Overloaded
                | ErrorKind::CircuitOpen
                | ErrorKind::OverflowRequests
                | ErrorKind::OverflowConnections
                | ErrorKind::Draining
                | ErrorKind::JobQueueFull
        )
    }

    /// Whether the failure happened at the cluster level, before any
    /// endpoint was involved (it says nothing about an endpoint's health).
    pub const fn before_endpoint(self) -> bool {
        matches!(
            self,
            ErrorKind::NoEndpoints
                | ErrorKind::Overloaded
                | ErrorKind::CircuitOpen
                | ErrorKind::OverflowRequests
                | ErrorKind::OverflowConnections
        )
    }

    /// What a client is told, in a few words: never an address, a path or
    /// a library's error text (those go to the log with the request id).
    pub const fn public_message(self) -> &'static str {
        match self {
            ErrorKind::NoRoute => "no route matches this request",
            ErrorKind::BadRequest => "the request is malformed",
            ErrorKind::PayloadTooLarge => "the request body is too large",
            ErrorKind::HeadersTooLarge => "the request headers are too large",
            ErrorKind::NoEndpoints => "no upstream endpoint is available",
            ErrorKind::ConnectRefused => "the upstream refused the connection",
            ErrorKind::ConnectTimeout => "the upstream did not accept a connection in time",
            ErrorKind::ConnectFailed => "the upstream could not be reached",
            ErrorKind::UpstreamTimeout => "the upstream did not answer in time",
            ErrorKind::UpstreamReset => "the upstream closed the connection before answering",
            ErrorKind::UpstreamProtocol => "the upstream sent an invalid answer",
            ErrorKind::RefusedStream => "the upstream refused the request",
            ErrorKind::RateLimited => "rate limit exceeded",
            ErrorKind::Unauthorized => "the request's credentials were refused",
            ErrorKind::Overloaded => "the service is overloaded; retry later",
            ErrorKind::CircuitOpen => "the upstream is failing; retry later",
            ErrorKind::OverflowRequests => "too many requests in flight to the upstream",
            ErrorKind::OverflowConnections => "too many connections to the upstream",
            ErrorKind::ClientClosed => "the client closed the request",
            ErrorKind::DeadlineExceeded => "the request's deadline passed",
            ErrorKind::Draining => "the gateway is shutting down; retry",
            ErrorKind::Internal => "internal gateway error",
            ErrorKind::JobQueueFull => "the job queue is full; retry later",
            ErrorKind::JobQueueUnavailable => "jobs cannot be stored or read now; retry later",
            ErrorKind::JobNotFound => "no such job",
        }
    }

    /// Whether the gateway's own detail may be shown to the client: it is
    /// about the client's request (its path, its credentials, the limit it
    /// hit) and written by Levee, never an upstream's address or a
    /// library's text.
    pub const fn detail_is_public(self) -> bool {
        matches!(
            self,
            ErrorKind::NoRoute
                | ErrorKind::BadRequest
                | ErrorKind::PayloadTooLarge
                | ErrorKind::HeadersTooLarge
                | ErrorKind::RateLimited
                | ErrorKind::Unauthorized
                | ErrorKind::DeadlineExceeded
        )
    }

    /// The gRPC status a gRPC caller gets instead of the HTTP status,
    /// chosen by gRPC's retry guidance: UNAVAILABLE (14) where trying
    /// again (elsewhere, later) may succeed, RESOURCE_EXHAUSTED (8) for a
    /// caller over its quota or a message too large, DEADLINE_EXCEEDED (4)
    /// for time that ran out.
    pub const fn grpc_status(self) -> u8 {
        match self {
            ErrorKind::NoRoute => 12,    // UNIMPLEMENTED
            ErrorKind::JobNotFound => 5, // NOT_FOUND
            ErrorKind::JobQueueFull => 8,
            ErrorKind::BadRequest => 13, // INTERNAL (gRPC's map of HTTP 400)
            ErrorKind::PayloadTooLarge | ErrorKind::HeadersTooLarge | ErrorKind::RateLimited => 8,
            ErrorKind::Unauthorized => 16, // UNAUTHENTICATED
            ErrorKind::UpstreamTimeout | ErrorKind::DeadlineExceeded => 4,
            ErrorKind::ClientClosed => 1, // CANCELLED
            ErrorKind::UpstreamProtocol | ErrorKind::Internal => 13,
            ErrorKind::NoEndpoints
            | ErrorKind::ConnectRefused
            | ErrorKind::ConnectTimeout
            | ErrorKind::ConnectFailed
            | ErrorKind::UpstreamReset
            | ErrorKind::RefusedStream
            | ErrorKind::Overloaded
            | ErrorKind::CircuitOpen
            | ErrorKind::OverflowRequests
            | ErrorKind::OverflowConnections
            | ErrorKind::Draining
            | ErrorKind::JobQueueUnavailable => 14,
        }
    }

    /// The small JSON body the gateway answers with.
    pub fn json_body(self, detail: &str) -> String {
        let mut out = String::with_capacity(64 + detail.len());
        out.push_str("{\"error\":\"");
        out.push_str(self.reason());
        out.push_str("\",\"status\":");
        out.push_str(&self.status().as_u16().to_string());
        out.push_str(",\"message\":\"");
        for c in detail.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                c if (c as u32) < 0x20 => out.push(' '),
                c => out.push(c),
            }
        }
        out.push_str("\"}\n");
        out
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.reason())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_unique_and_snake_case() {
        let mut seen = std::collections::HashSet::new();
        for kind in ErrorKind::ALL {
            assert!(seen.insert(kind.reason()), "duplicate reason {kind}");
            assert!(kind
                .reason()
                .chars()
                .all(|c| c.is_ascii_lowercase() || c == '_'));
        }
    }

    #[test]
    fn upstream_failures_map_to_gateway_statuses() {
        assert_eq!(ErrorKind::ConnectRefused.status(), 503);
        assert_eq!(ErrorKind::ConnectFailed.status(), 502);
        assert_eq!(ErrorKind::UpstreamTimeout.status(), 504);
        assert_eq!(ErrorKind::ConnectTimeout.status(), 504);
        assert_eq!(ErrorKind::UpstreamReset.status(), 502);
        assert_eq!(ErrorKind::NoRoute.status(), 404);
    }

    #[test]
    fn json_body_escapes_detail() {
        let body = ErrorKind::NoRoute.json_body("no route for \"/x\"");
        let v: &str = &body;
        assert!(v.starts_with("{\"error\":\"no_route\",\"status\":404,"));
        assert!(v.contains("\\\"/x\\\""));
    }
}
