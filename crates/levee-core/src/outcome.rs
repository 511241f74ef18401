//! The one classification of a finished attempt. Metrics, balancer feedback
//! and (later) breakers, outlier detection and SLIs all read the same value.

use crate::ErrorKind;

/// How an attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The upstream answered with this status.
    Response(u16),
    /// The gateway answered itself for this reason.
    Failed(ErrorKind),
}

impl Outcome {
    /// The status the client saw.
    pub fn status(self) -> u16 {
        match self {
            Outcome::Response(s) => s,
            Outcome::Failed(kind) => kind.status().as_u16(),
        }
    }

    /// Whether this counts as a failure of the service (5xx or a gateway error
    /// on the upstream side). Client errors are the client's, not the service's.
    pub fn is_server_failure(self) -> bool {
        match self {
            Outcome::Response(s) => s >= 500,
            Outcome::Failed(kind) => kind.side() != crate::Side::Downstream,
        }
    }

    /// Index of the status class: 0 for 1xx ... 4 for 5xx.
    pub fn status_class_index(self) -> usize {
        status_class_index(self.status())
    }

    /// The gateway's reason, if it answered itself.
    pub fn error(self) -> Option<ErrorKind> {
        match self {
            Outcome::Response(_) => None,
            Outcome::Failed(kind) => Some(kind),
        }
    }
}

/// Status class labels, indexed by [`status_class_index`].
pub const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// 0 for 1xx ... 4 for 5xx; anything out of range counts as 5xx.
pub fn status_class_index(status: u16) -> usize {
    match status {
        100..=199 => 0,
        200..=299 => 1,
        300..=399 => 2,
        400..=499 => 3,
        _ => 4,
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
        assert_eq!(Outcome::Response(204).status_class_index(), 1);
        assert_eq!(Outcome::Failed(ErrorKind::UpstreamTimeout).status(), 504);
    }
}
