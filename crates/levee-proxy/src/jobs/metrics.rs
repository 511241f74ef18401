//! An async route's metric handles, resolved once and kept across reloads
//! by route name, and the gauges refreshed from the queue's numbers by the
//! delivery loop.

use super::QueueStats;
use levee_core::metrics::{names, Counter, FloatGauge, Gauge, Histogram, Registry};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Per-tenant depth series kept per route at most.
const MAX_TENANT_SERIES: usize = 1000;

#[derive(Debug)]
pub(crate) struct JobMetrics {
    route: String,
    registry: Arc<Registry>,
    pub(crate) accepted: Arc<Counter>,
    pub(crate) existing: Arc<Counter>,
    pub(crate) full: Arc<Counter>,
    pub(crate) too_large: Arc<Counter>,
    pub(crate) submit_error: Arc<Counter>,
    pub(crate) delivered: Arc<Counter>,
    pub(crate) retried: Arc<Counter>,
    pub(crate) dead: Arc<Counter>,
    pub(crate) not_sent: Arc<Counter>,
    pub(crate) stale: Arc<Counter>,
    pub(crate) callback_sent: Arc<Counter>,
    pub(crate) callback_failed: Arc<Counter>,
    pub(crate) callback_gave_up: Arc<Counter>,
    pub(crate) completion: Arc<Histogram>,
    queued: Arc<Gauge>,
    delivering: Arc<Gauge>,
    dead_now: Arc<Gauge>,
    bytes: Arc<Gauge>,
    oldest_age: Arc<FloatGauge>,
    /// Tenants with a per-tenant gauge, so one that empties is set to 0.
    tenants: Mutex<HashMap<String, Arc<Gauge>>>,
}

impl JobMetrics {
    pub(crate) fn new(registry: &Arc<Registry>, route: &str) -> Self {
        let submitted = |result| {
            registry.counter(
                names::JOBS_SUBMITTED,
                "Jobs submitted to async routes, by route and result.",
                &[("route", route), ("result", result)],
            )
        };
        let delivery = |result| {
            registry.counter(
                names::JOB_DELIVERIES,
                "Deliveries of async routes' jobs, by route and result.",
                &[("route", route), ("result", result)],
            )
        };
        let callback = |result| {
            registry.counter(
                names::JOB_CALLBACKS,
                "Result callbacks of async routes' jobs, by route and result.",
                &[("route", route), ("result", result)],
            )
        };
        let depth = |state| {
            registry.gauge(
                names::JOBS_DEPTH,
                "Jobs not yet delivered, by route and state.",
                &[("route", route), ("state", state)],
            )
        };
        Self {
            route: route.to_string(),
            registry: registry.clone(),
            accepted: submitted("accepted"),
            existing: submitted("existing"),
            full: submitted("full"),
            too_large: submitted("too_large"),
            submit_error: submitted("error"),
            delivered: delivery("delivered"),
            retried: delivery("retried"),
            dead: delivery("dead"),
            not_sent: delivery("not_sent"),
            stale: delivery("stale"),
            callback_sent: callback("sent"),
            callback_failed: callback("failed"),
            callback_gave_up: callback("gave_up"),
            completion: registry.histogram_over(
                names::JOB_COMPLETION,
                "Time from a job's acceptance to its delivery, by route.",
                &[("route", route)],
                &levee_core::metrics::WAIT_BUCKETS,
            ),
            queued: depth("queued"),
            delivering: depth("delivering"),
            dead_now: depth("dead"),
            bytes: registry.gauge(
                names::JOBS_BYTES,
                "Bytes of the jobs not yet delivered, by route.",
                &[("route", route)],
            ),
            oldest_age: registry.float_gauge(
                names::JOBS_OLDEST_AGE,
                "Age of the oldest job neither delivered nor dead, by route (the lag to scale workers on).",
                &[("route", route)],
            ),
            tenants: Mutex::new(HashMap::new()),
        }
    }

    /// Sets the gauges from the queue's numbers.
    pub(crate) fn observe(&self, stats: &QueueStats) {
        let clamp = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.queued.set(clamp(stats.queued));
        self.delivering.set(clamp(stats.delivering));
        self.dead_now.set(clamp(stats.dead));
        self.bytes.set(clamp(stats.bytes));
        self.oldest_age
            .set(stats.oldest_undelivered.map_or(0.0, |d| d.as_secs_f64()));
        let mut tenants = self.tenants.lock().unwrap_or_else(|e| e.into_inner());
        for gauge in tenants.values() {
            gauge.set(0);
        }
        for (tenant, depth) in &stats.per_tenant {
            // Tenants come from tokens and headers: bound the series a
            // flood of made-up tenants could create.
            if !tenants.contains_key(tenant) && tenants.len() >= MAX_TENANT_SERIES {
                continue;
            }
            let gauge = tenants.entry(tenant.clone()).or_insert_with(|| {
                self.registry.gauge(
                    names::JOBS_TENANT_DEPTH,
                    "Jobs not yet delivered, by route and tenant.",
                    &[("route", &self.route), ("tenant", tenant)],
                )
            });
            gauge.set(clamp(*depth));
        }
    }
}
