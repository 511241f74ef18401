//! Step 5's retry rules for one route: which failures may be retried, the
//! safety rule, and the route's retry budget and backoff (the algorithms are
//! `levee_policy::retry`'s). The rule, stated once: a request may be retried
//! when nothing was sent upstream (it never reached the application), or when
//! it is idempotent and its body can be replayed. A response another Levee
//! marked as shedding (`levee-overloaded`) is never retried.
//!
//! Two budgets apply together: retries as a share of the route's recent
//! requests plus a floor per second (Finagle style, `levee_policy`), and
//! retries in flight as a share of the route's requests in flight (Envoy
//! style, counted here with atomics).

use levee_config::{RetryOn, RetryPolicy};
use levee_core::metrics::{names, Counter, Registry};
use levee_core::{ErrorKind, Nanos};
use levee_policy::retry::{Backoff, BudgetConfig, RetryBudget};
use std::sync::atomic::{AtomicU32, Ordering};
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
    /// Requests of the route being dispatched now.
    active: AtomicU32,
    /// Retries and hedges of the route in flight now.
    retrying: AtomicU32,
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
            active: AtomicU32::new(0),
            retrying: AtomicU32::new(0),
        }
    }

    /// Counts a request in dispatch (from its admission by the cluster)
    /// until the guard drops.
    pub(crate) fn enter(&self) -> ActiveRequest<'_> {
        self.active.fetch_add(1, Ordering::AcqRel);
        ActiveRequest(&self.active)
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
            ErrorKind::RefusedStream => {
                gateway || self.on(RetryOn::RefusedStream) || self.on(RetryOn::Reset)
            }
            _ => false,
        }
    }

    /// Whether a response head is one the route retries: by status, or by
    /// a gRPC status sent in the head (a trailers-only gRPC answer). A
    /// response another Levee shed is never retried.
    pub(crate) fn retries_response(&self, status: u16, headers: &http::HeaderMap) -> bool {
        if is_shed(headers) {
            return false;
        }
        (self.on(RetryOn::ServerError) && status >= 500)
            || (self.on(RetryOn::GatewayError) && (502..=504).contains(&status))
            || (self.on(RetryOn::Status) && self.policy.statuses.contains(&status))
            || (self.on(RetryOn::Grpc)
                && grpc_status(headers).is_some_and(|c| self.policy.grpc_statuses.contains(&c)))
    }

    /// The wait an upstream asked for with `Retry-After` (delta seconds),
    /// if any: `Ok(Some)` to wait that long, `Err` when it is longer than
    /// the route's cap and retrying would not help.
    pub(crate) fn retry_after(
        &self,
        headers: &http::HeaderMap,
    ) -> Result<Option<Duration>, Duration> {
        if self.policy.retry_after_max.is_zero() {
            return Ok(None);
        }
        let Some(wait) = headers
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs)
        else {
            return Ok(None);
        };
        if wait > self.policy.retry_after_max {
            Err(wait)
        } else {
            Ok(Some(wait))
        }
    }

    /// Counts an original request towards the budget.
    pub(crate) fn record_request(&self, now: Nanos) {
        if let Ok(mut b) = self.budget.lock() {
            b.record_request(now);
        }
    }

    /// Takes a retry from both budgets, counting the outcome; the returned
    /// guard holds its place among the retries in flight.
    pub(crate) fn withdraw(&self, now: Nanos) -> Option<ActiveRetry<'_>> {
        let active = self.active.load(Ordering::Acquire);
        let cap = ((f64::from(active) * self.policy.budget_max_concurrent_ratio) as u32)
            .max(self.policy.budget_min_concurrent);
        let in_flight = self.retrying.fetch_add(1, Ordering::AcqRel);
        let granted = in_flight < cap && self.budget.lock().is_ok_and(|mut b| b.try_withdraw(now));
        if granted {
            self.retries.inc();
            Some(ActiveRetry(&self.retrying))
        } else {
            self.retrying.fetch_sub(1, Ordering::AcqRel);
            self.exhausted.inc();
            None
        }
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

/// A request counted as in dispatch on its route.
#[derive(Debug)]
pub(crate) struct ActiveRequest<'a>(&'a AtomicU32);

impl Drop for ActiveRequest<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A retry or hedge counted as in flight on its route.
#[derive(Debug)]
pub(crate) struct ActiveRetry<'a>(&'a AtomicU32);

impl Drop for ActiveRetry<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The header that marks a response as shed by a Levee (overload, open
/// breaker, full bulkhead): callers must not retry it.
pub(crate) const OVERLOADED: http::HeaderName = http::HeaderName::from_static("levee-overloaded");

/// Whether a response carries the shedding mark.
pub(crate) fn is_shed(headers: &http::HeaderMap) -> bool {
    headers.contains_key(OVERLOADED)
}

/// The `grpc-status` of a response head, if it has one.
fn grpc_status(headers: &http::HeaderMap) -> Option<u32> {
    headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}
