//! The one classification of a finished attempt. Metrics, balancer feedback,
//! breakers, outlier detection, the concurrency limiter and SLIs all read the
//! same value.

use crate::ErrorKind;

/// How an attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The upstream answered with this status.
    Response(u16),
    /// The gateway answered itself for this reason.
    Failed(ErrorKind),
    /// A gRPC call the upstream ended with this non-zero `grpc-status`
    /// (in trailers, or a trailers-only answer) under HTTP 200.
    Grpc(u8),
}

/// gRPC status codes that are the server's failure, not the caller's:
/// UNKNOWN (2), DEADLINE_EXCEEDED (4), INTERNAL (13), UNAVAILABLE (14) and
/// DATA_LOSS (15). The others (CANCELLED, INVALID_ARGUMENT, NOT_FOUND,
/// ALREADY_EXISTS, PERMISSION_DENIED, RESOURCE_EXHAUSTED,
/// FAILED_PRECONDITION, ABORTED, OUT_OF_RANGE, UNIMPLEMENTED,
/// UNAUTHENTICATED) answer what the caller asked, as a 4xx would.
pub const fn is_grpc_server_failure(code: u8) -> bool {
    matches!(code, 2 | 4 | 13 | 14 | 15)
}

impl Outcome {
    /// The status the client saw.
    pub fn status(self) -> u16 {
        match self {
            Outcome::Response(s) => s,
            Outcome::Failed(kind) => kind.status().as_u16(),
            Outcome::Grpc(_) => 200,
        }
    }

    /// Whether this counts as a failure of the service (5xx or a gateway error
    /// on the upstream side). Client errors are the client's, not the service's.
    pub fn is_server_failure(self) -> bool {
        match self {
            Outcome::Response(s) => s >= 500,
            Outcome::Failed(kind) => kind.side() != crate::Side::Downstream,
            Outcome::Grpc(code) => is_grpc_server_failure(code),
        }
    }

    /// The class of the status the client saw.
    pub fn status_class(self) -> StatusClass {
        StatusClass::of(self.status())
    }

    /// The gateway's reason, if it answered itself.
    pub fn error(self) -> Option<ErrorKind> {
        match self {
            Outcome::Response(_) | Outcome::Grpc(_) => None,
            Outcome::Failed(kind) => Some(kind),
        }
    }
}

/// The class of an HTTP status, as metrics label it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusClass {
    /// 1xx.
    Informational,
    /// 2xx.
    Success,
    /// 3xx.
    Redirection,
    /// 4xx.
    ClientError,
    /// 5xx, and anything out of range.
    ServerError,
}

impl StatusClass {
    /// Every class, in declaration order: `class as usize` indexes arrays
    /// built from this one.
    pub const ALL: [StatusClass; 5] = [
        StatusClass::Informational,
        StatusClass::Success,
        StatusClass::Redirection,
        StatusClass::ClientError,
        StatusClass::ServerError,
    ];

    /// The class of `status`; anything out of range counts as 5xx.
    pub fn of(status: u16) -> Self {
        match status {
            100..=199 => StatusClass::Informational,
            200..=299 => StatusClass::Success,
            300..=399 => StatusClass::Redirection,
            400..=499 => StatusClass::ClientError,
            _ => StatusClass::ServerError,
        }
    }

    /// Its metric label: `1xx` ... `5xx`.
    pub fn label(self) -> &'static str {
        match self {
            StatusClass::Informational => "1xx",
            StatusClass::Success => "2xx",
            StatusClass::Redirection => "3xx",
            StatusClass::ClientError => "4xx",
            StatusClass::ServerError => "5xx",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        assert!(Outcome::Response(503).is_server_failure());
        assert!(!Outcome::Response(404).is_server_failure());
        assert!(Outcome::Failed(ErrorKind::ConnectRefused).is_server_failure());
        assert!(!Outcome::Failed(ErrorKind::PayloadTooLarge).is_server_failure());
        assert_eq!(Outcome::Response(204).status_class(), StatusClass::Success);
        assert_eq!(StatusClass::of(99), StatusClass::ServerError);
        for (i, class) in StatusClass::ALL.into_iter().enumerate() {
            assert_eq!(class as usize, i, "ALL is in declaration order");
        }
        assert_eq!(Outcome::Failed(ErrorKind::UpstreamTimeout).status(), 504);
        assert!(Outcome::Grpc(14).is_server_failure());
        assert!(Outcome::Grpc(13).is_server_failure());
        assert!(!Outcome::Grpc(5).is_server_failure());
        assert!(!Outcome::Grpc(8).is_server_failure());
        assert_eq!(Outcome::Grpc(2).status(), 200);
    }
}
