//! A cluster's part of step 4, admission: the bulkheads (caps on requests in
//! flight, requests waiting for a slot, retries in flight and open
//! connections) and the cluster-wide circuit breaker. Overflow is answered
//! at once with its own reason; nothing here waits except a request that
//! found a free place in the bounded pending queue.

use levee_config::{BreakerSettings, ClusterLimits};
use levee_core::metrics::{names, Counter, Gauge, Registry};
use levee_core::time::Instant;
use levee_core::{ErrorKind, Nanos, Outcome};
use levee_policy::breaker::{BreakerConfig, BreakerState, CircuitBreaker};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The breaker settings in the policy crate's terms.
pub(crate) fn breaker_config(s: &BreakerSettings) -> BreakerConfig {
    BreakerConfig {
        consecutive_failures: s.consecutive_failures,
        failure_ratio: s.failure_ratio,
        slow_ratio: s.slow_call_ratio,
        slow_threshold: s.slow_call_threshold,
        min_requests: s.min_requests,
        window: s.window,
        base_open: s.base_open_time,
        max_open: s.max_open_time,
        half_open_probes: s.half_open_probes,
        ramp: s.ramp_time,
    }
}

/// The gauge value of a closed breaker.
const CLOSED: i64 = 0;
/// The gauge value of an open breaker.
const OPEN: i64 = 1;
/// The gauge value of a half-open breaker (an open one whose time is up
/// counts as half-open: its next call is a probe).
const HALF_OPEN: i64 = 2;

/// The gauge value of a breaker state: 0 closed, 1 open, 2 half-open.
pub(crate) fn state_value(state: BreakerState, now: Nanos) -> i64 {
    match state {
        BreakerState::Closed => CLOSED,
        BreakerState::Open { until } if now < until => OPEN,
        BreakerState::Open { .. } | BreakerState::HalfOpen { .. } => HALF_OPEN,
    }
}

/// The admin API's word for a breaker state.
pub(crate) fn state_name(value: i64) -> &'static str {
    match value {
        CLOSED => "closed",
        OPEN => "open",
        _ => "half_open",
    }
}

/// Whether an attempt's outcome counts against a breaker, and whether it
/// failed. Failures of the client's making, and refusals made before any
/// endpoint was involved, say nothing about the upstream.
pub(crate) fn breaker_verdict(outcome: Outcome) -> Option<bool> {
    match outcome {
        Outcome::Failed(kind)
            if kind.side() == levee_core::Side::Downstream || kind.before_endpoint() =>
        {
            None
        }
        o => Some(!o.is_server_failure()),
    }
}

/// A breaker with its gauges, shared by everything that feeds it.
#[derive(Debug)]
pub(crate) struct GuardedBreaker {
    // Held for a few arithmetic operations per attempt (per endpoint or per
    // cluster, never gateway-wide).
    breaker: Mutex<CircuitBreaker>,
    state: Arc<Gauge>,
    opened: Arc<Counter>,
}

impl GuardedBreaker {
    pub(crate) fn new(
        settings: &BreakerSettings,
        registry: &Registry,
        labels: &[(&str, &str)],
    ) -> Self {
        Self {
            breaker: Mutex::new(CircuitBreaker::new(breaker_config(settings))),
            state: registry.gauge(
                names::BREAKER_STATE,
                "Circuit breaker state: 0 closed, 1 open, 2 half-open.",
                labels,
            ),
            opened: registry.counter(
                names::BREAKER_OPENED,
                "Times a circuit breaker opened.",
                labels,
            ),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CircuitBreaker> {
        self.breaker.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether a call may go ahead now (counting a half-open probe).
    pub(crate) fn allow(&self, now: Nanos) -> bool {
        let mut b = self.lock();
        let allowed = b.allow(now, levee_core::ids::random_u64());
        self.state.set(state_value(b.state(), now));
        allowed
    }

    /// Whether it refuses everything now.
    pub(crate) fn is_open(&self, now: Nanos) -> bool {
        self.lock().is_open(now)
    }

    /// Feeds an outcome; true when this opened the breaker.
    pub(crate) fn record(&self, now: Nanos, success: bool, latency: Duration) -> bool {
        let mut b = self.lock();
        let was_open = b.is_open(now);
        b.record(now, success, latency, levee_core::ids::random_u64());
        let opened = !was_open && b.is_open(now);
        self.state.set(state_value(b.state(), now));
        if opened {
            self.opened.inc();
        }
        opened
    }

    /// The state's gauge value now (0 closed, 1 open, 2 half-open).
    pub(crate) fn state_value(&self, now: Nanos) -> i64 {
        let v = state_value(self.lock().state(), now);
        self.state.set(v);
        v
    }
}

/// A cluster's bulkheads.
#[derive(Debug)]
pub(crate) struct Bulkheads {
    requests: Option<Arc<Semaphore>>,
    max_requests: u32,
    max_pending: u32,
    pending: AtomicU32,
    pending_gauge: Arc<Gauge>,
    max_retries: Option<u32>,
    retries: AtomicU32,
    retries_gauge: Arc<Gauge>,
    /// Shared with the transport, which counts connections it opens.
    pub(crate) connections: Arc<ConnectionCap>,
}

/// An in-flight slot, released when the response ends.
pub(crate) type RequestSlot = OwnedSemaphorePermit;

impl Bulkheads {
    pub(crate) fn new(limits: &ClusterLimits, registry: &Registry, cluster: &str) -> Self {
        let labels = [("cluster", cluster)];
        Self {
            requests: limits
                .max_requests
                .map(|n| Arc::new(Semaphore::new(n as usize))),
            max_requests: limits.max_requests.unwrap_or(0),
            max_pending: limits.max_pending.unwrap_or(0),
            pending: AtomicU32::new(0),
            pending_gauge: registry.gauge(
                names::CLUSTER_PENDING,
                "Requests waiting for an in-flight slot of the cluster.",
                &labels,
            ),
            max_retries: limits.max_retries,
            retries: AtomicU32::new(0),
            retries_gauge: registry.gauge(
                names::CLUSTER_RETRIES_IN_FLIGHT,
                "Retries and hedges in flight to the cluster.",
                &labels,
            ),
            connections: Arc::new(ConnectionCap {
                max: limits.max_connections,
                open: AtomicU32::new(0),
                gauge: registry.gauge(
                    names::CLUSTER_UPSTREAM_CONNECTIONS,
                    "Open HTTP/1.1 connections to the cluster's endpoints, idle included.",
                    &labels,
                ),
            }),
        }
    }

    /// Takes an in-flight slot: at once if one is free, else after waiting
    /// in the pending queue (when it has room) until `wait_until`.
    pub(crate) async fn admit(
        &self,
        wait_until: Instant,
    ) -> Result<Option<RequestSlot>, (ErrorKind, String)> {
        let Some(sem) = &self.requests else {
            return Ok(None);
        };
        if let Ok(slot) = sem.clone().try_acquire_owned() {
            return Ok(Some(slot));
        }
        let queued = self.pending.fetch_add(1, Ordering::AcqRel);
        if queued >= self.max_pending {
            self.pending.fetch_sub(1, Ordering::AcqRel);
            return Err((
                ErrorKind::OverflowRequests,
                format!(
                    "{} requests in flight (max_requests) and {} waiting (max_pending)",
                    self.max_requests, self.max_pending
                ),
            ));
        }
        self.pending_gauge.inc();
        let waited = tokio::time::timeout_at(wait_until, sem.clone().acquire_owned()).await;
        self.pending.fetch_sub(1, Ordering::AcqRel);
        self.pending_gauge.dec();
        match waited {
            Ok(Ok(slot)) => Ok(Some(slot)),
            _ => Err((
                ErrorKind::OverflowRequests,
                format!(
                    "no in-flight slot (max_requests = {}) became free before the deadline",
                    self.max_requests
                ),
            )),
        }
    }

    /// Takes a retry slot, if the cap allows one.
    pub(crate) fn try_retry(&self) -> Option<RetrySlot<'_>> {
        let taken = self.retries.fetch_add(1, Ordering::AcqRel);
        if self.max_retries.is_some_and(|max| taken >= max) {
            self.retries.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        self.retries_gauge.inc();
        Some(RetrySlot(self))
    }

    /// Usage now, for the admin API.
    pub(crate) fn status(&self) -> crate::gateway::BulkheadStatus {
        crate::gateway::BulkheadStatus {
            requests_in_flight: self.requests.as_ref().map(|s| {
                self.max_requests
                    .saturating_sub(s.available_permits() as u32)
            }),
            pending: self.pending.load(Ordering::Relaxed),
            retries_in_flight: self.retries.load(Ordering::Relaxed),
            connections: self.connections.open.load(Ordering::Relaxed),
        }
    }
}

/// A retry (or hedge) in flight; released on drop.
#[derive(Debug)]
pub(crate) struct RetrySlot<'a>(&'a Bulkheads);

impl Drop for RetrySlot<'_> {
    fn drop(&mut self) {
        self.0.retries.fetch_sub(1, Ordering::AcqRel);
        self.0.retries_gauge.dec();
    }
}

/// The cap on a cluster's open upstream connections.
#[derive(Debug)]
pub(crate) struct ConnectionCap {
    max: Option<u32>,
    open: AtomicU32,
    gauge: Arc<Gauge>,
}

impl ConnectionCap {
    /// Counts a connection about to be opened; `None` at the cap.
    pub(crate) fn open(self: &Arc<Self>) -> Option<ConnectionSlot> {
        let n = self.open.fetch_add(1, Ordering::AcqRel);
        if self.max.is_some_and(|max| n >= max) {
            self.open.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        self.gauge.inc();
        Some(ConnectionSlot(self.clone()))
    }

    /// The configured cap, for messages.
    pub(crate) fn max(&self) -> u32 {
        self.max.unwrap_or(u32::MAX)
    }

    /// No cap (codec tests).
    #[cfg(test)]
    pub(crate) fn unlimited() -> Arc<Self> {
        Arc::new(Self {
            max: None,
            open: AtomicU32::new(0),
            gauge: Arc::default(),
        })
    }
}

/// One open connection's place under the cap; released when it closes.
#[derive(Debug)]
pub(crate) struct ConnectionSlot(Arc<ConnectionCap>);

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
        self.0.gauge.dec();
    }
}
