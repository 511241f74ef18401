//! Step 5's retry rules for one route: which failures may be retried, the
//! safety rule, and the route's retry budget and backoff (the algorithms are
//! `levee_policy::retry`'s). The rule, stated once: a request may be retried
//! when nothing was sent upstream (it never reached the application), or when
//! it is idempotent and its body can be replayed.

use levee_config::{RetryOn, RetryPolicy};
use levee_core::metrics::{names, Counter, Registry};
use levee_core::{ErrorKind, Nanos};
use levee_policy::retry::{Backoff, BudgetConfig, RetryBudget};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A route's retry state.
#[derive(Debug)]
pub(crate) struct RouteRetry {
    pub(crate) policy: RetryPolicy,
    backoff: Backoff,
    // Per route and held for a few arithmetic operations only.
    budget: Mutex<RetryBudget>,
    pub(crate) retries: Arc<Counter>,
    pub(crate) exhausted: Arc<Counter>,
}

impl RouteRetry {
    pub(crate) fn new(policy: RetryPolicy, route: &str, registry: &Registry) -> Self {
        Self {
            backoff: Backoff {
                base: policy.backoff_base,
                max: policy.backoff_max,
            },
            budget: Mutex::new(RetryBudget::new(BudgetConfig {
                ratio: policy.budget_ratio,
                min_per_second: policy.budget_min_per_second,
                window: policy.budget_window,
            })),
            retries: registry.counter(
                names::RETRIES,
                "Retries sent, by route.",
                &[("route", route)],
            ),
            exhausted: registry.counter(
                names::RETRY_BUDGET_EXHAUSTED,
                "Retries refused because the route's retry budget was spent, by route.",
                &[("route", route)],
            ),
            policy,
        }
    }

    fn on(&self, class: RetryOn) -> bool {
        self.policy.retry_on.contains(&class)
    }

    /// Whether a failure of this kind is one the route retries.
    pub(crate) fn retries_error(&self, kind: ErrorKind) -> bool {
        let gateway = self.on(RetryOn::GatewayError);
        match kind {
            ErrorKind::NoEndpoints
            | ErrorKind::ConnectRefused
            | ErrorKind::ConnectTimeout
            | ErrorKind::ConnectFailed => gateway || self.on(RetryOn::ConnectFailure),
            ErrorKind::UpstreamReset | ErrorKind::UpstreamProtocol => {
                gateway || self.on(RetryOn::Reset)
            }
            ErrorKind::UpstreamTimeout => gateway || self.on(RetryOn::Timeout),
            _ => false,
        }
    }

    /// Whether a response with `status` is one the route retries.
    pub(crate) fn retries_status(&self, status: u16) -> bool {
        (self.on(RetryOn::ServerError) && status >= 500)
            || (self.on(RetryOn::GatewayError) && (502..=504).contains(&status))
            || (self.on(RetryOn::Status) && self.policy.statuses.contains(&status))
    }

    /// Counts an original request towards the budget.
    pub(crate) fn record_request(&self, now: Nanos) {
        if let Ok(mut b) = self.budget.lock() {
            b.record_request(now);
        }
    }

    /// Takes a retry from the budget, counting the outcome.
    pub(crate) fn withdraw(&self, now: Nanos) -> bool {
        let granted = self.budget.lock().is_ok_and(|mut b| b.try_withdraw(now));
        if granted {
            self.retries.inc();
        } else {
            self.exhausted.inc();
        }
        granted
    }

    /// The wait before retry number `retry` (0 for the first).
    pub(crate) fn backoff(&self, retry: u32) -> Duration {
        self.backoff.delay(retry, levee_core::ids::random_u64())
    }
}

/// Methods whose repetition has the same effect (RFC 9110 §9.2.2).
pub(crate) fn idempotent_method(method: &http::Method) -> bool {
    matches!(
        *method,
        http::Method::GET
            | http::Method::HEAD
            | http::Method::OPTIONS
            | http::Method::PUT
            | http::Method::DELETE
            | http::Method::TRACE
    )
}
