//! Lock-free metric primitives and their Prometheus text exposition.
//!
//! The request path holds `Arc` handles resolved when a config snapshot is
//! built, so recording is a few relaxed atomic adds. The registry's mutex is
//! taken only when a handle is created and when `/metrics` is scraped.
//! (prometheus-client was not used because its histogram takes a write lock
//! on every observation.)

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Metric names, in one place.
pub mod names {
    /// Requests answered, by route, cluster and status class.
    pub const REQUESTS: &str = "levee_requests_total";
    /// gRPC calls that ended with a non-zero `grpc-status`, by route and code.
    pub const GRPC_STATUS: &str = "levee_grpc_status_total";
    /// End-to-end request latency by route.
    pub const ROUTE_LATENCY: &str = "levee_request_duration_seconds";
    /// Upstream attempt latency by cluster.
    pub const CLUSTER_LATENCY: &str = "levee_upstream_request_duration_seconds";
    /// Requests the cluster answered, by status class.
    pub const UPSTREAM_REQUESTS: &str = "levee_upstream_requests_total";
    /// Gateway-generated errors, by reason (and cluster where known).
    pub const ERRORS: &str = "levee_errors_total";
    /// Currently open downstream connections, by listener.
    pub const ACTIVE_CONNECTIONS: &str = "levee_downstream_connections_active";
    /// Downstream connections accepted, by listener.
    pub const CONNECTIONS: &str = "levee_downstream_connections_total";
    /// Connections closed at once because the listener was at its limit.
    pub const CONNECTIONS_REJECTED: &str = "levee_downstream_connections_rejected_total";
    /// 1 when an endpoint is healthy, by cluster and endpoint.
    pub const ENDPOINT_HEALTHY: &str = "levee_endpoint_healthy";
    /// 1 while outlier detection keeps an endpoint out of rotation.
    pub const ENDPOINT_EJECTED: &str = "levee_endpoint_outlier_ejected";
    /// In-flight requests per endpoint.
    pub const ENDPOINT_IN_FLIGHT: &str = "levee_endpoint_requests_in_flight";
    /// 1 when every endpoint of a cluster is unhealthy and all take traffic.
    pub const CLUSTER_PANIC: &str = "levee_cluster_panic_mode";
    /// Health check probes, by cluster and result.
    pub const HEALTH_CHECKS: &str = "levee_health_checks_total";
    /// Config reloads, by result.
    pub const RELOADS: &str = "levee_config_reloads_total";
    /// Unix time of the last successful reload.
    pub const LAST_RELOAD: &str = "levee_config_last_reload_success_timestamp_seconds";
    /// Diagnostics of the last failed reload.
    pub const LAST_RELOAD_ERRORS: &str = "levee_config_last_reload_error_count";
    /// Build information, value 1.
    pub const BUILD_INFO: &str = "levee_build_info";
    /// Requests in flight in the gateway.
    pub const IN_FLIGHT: &str = "levee_requests_in_flight";
    /// Retries sent, by route.
    pub const RETRIES: &str = "levee_retries_total";
    /// Retries refused by the route's retry budget.
    pub const RETRY_BUDGET_EXHAUSTED: &str = "levee_retry_budget_exhausted_total";
    /// Requests and attempts faults were injected into (labels `target`:
    /// the route or cluster, `fault`: the fault's name).
    pub const FAULTS_INJECTED: &str = "levee_faults_injected_total";
    /// Runtime faults set through the admin API, not yet expired.
    pub const FAULTS_RUNTIME: &str = "levee_faults_runtime";
    /// 1 for a route's rollout phase now, 0 for the others (labels `route`,
    /// `phase`).
    pub const ROLLOUT_PHASE: &str = "levee_rollout_phase";
    /// The canary's share of a route's traffic (0..1).
    pub const ROLLOUT_WEIGHT: &str = "levee_rollout_canary_weight_ratio";
    /// The current step of a route's rollout (from 0).
    pub const ROLLOUT_STEP: &str = "levee_rollout_step";
    /// An analysis value of a rollout (labels `route`, `check`).
    pub const ROLLOUT_ANALYSIS_VALUE: &str = "levee_rollout_analysis_value";
    /// The threshold an analysis value is held against.
    pub const ROLLOUT_ANALYSIS_THRESHOLD: &str = "levee_rollout_analysis_threshold";
    /// Rollout decisions by outcome (labels `route`, `outcome`).
    pub const ROLLOUT_DECISIONS: &str = "levee_rollout_decisions_total";
    /// The share of the starting error budget a rollout's canary spent.
    pub const ROLLOUT_BUDGET_SPENT: &str = "levee_rollout_budget_spent_ratio";
    /// Events counted by an SLO objective (label `slo`: the objective's id).
    pub const SLO_EVENTS: &str = "levee_slo_events_total";
    /// Bad events counted by an SLO objective.
    pub const SLO_BAD_EVENTS: &str = "levee_slo_bad_events_total";
    /// An SLO objective's target share of good events.
    pub const SLO_OBJECTIVE: &str = "levee_slo_objective_ratio";
    /// Share of good events over an alert window (label `window`).
    pub const SLO_SLI: &str = "levee_slo_sli_ratio";
    /// Burn rate over an alert window (label `window`); absent without data.
    pub const SLO_BURN_RATE: &str = "levee_slo_burn_rate";
    /// Share of the period's error budget left (negative once overspent).
    pub const SLO_BUDGET_REMAINING: &str = "levee_slo_error_budget_remaining_ratio";
    /// The error budget left, as seconds of total outage.
    pub const SLO_BUDGET_REMAINING_SECONDS: &str = "levee_slo_error_budget_remaining_seconds";
    /// 1 while an SLO's alert fires, by severity.
    pub const SLO_ALERT_FIRING: &str = "levee_slo_alert_firing";
    /// Incidents opened by an SLO's page alert, by SLO.
    pub const SLO_INCIDENTS: &str = "levee_slo_incidents_total";
    /// Share of good requests over the status page period, by tier.
    pub const TIER_UPTIME: &str = "levee_tier_uptime_ratio";
    /// Alert notifications by webhook and result (`sent`, `retried`,
    /// `dropped`; `queue_full` with an empty webhook label).
    pub const NOTIFICATIONS: &str = "levee_alert_notifications_total";
    /// Utilisation (0 to 1+) of a cluster's or endpoint's limits, by resource.
    pub const CAPACITY_UTILISATION: &str = "levee_capacity_utilisation_ratio";
    /// Utilisation of a route's rate limits: the request rate over the limit.
    pub const RATE_LIMIT_UTILISATION: &str = "levee_rate_limit_utilisation_ratio";
    /// Rate-limit decisions, by route, limit and result (`allowed`,
    /// `limited`, `dry_run_limited`).
    pub const RATELIMIT_DECISIONS: &str = "levee_ratelimit_decisions_total";
    /// Global rate-limit calls to Redis that failed or timed out.
    pub const REDIS_FAILURES: &str = "levee_redis_failures_total";
    /// Global rate-limit decisions made without Redis (its fallback).
    pub const REDIS_FALLBACK_DECISIONS: &str = "levee_redis_fallback_decisions_total";
    /// Global rate-limit decisions made in Redis.
    pub const REDIS_DECISIONS: &str = "levee_redis_decisions_total";
    /// 1 once the gateway has a connection to Redis.
    pub const REDIS_CONNECTED: &str = "levee_redis_connected";
    /// Process pressure level of the overload guard (0 to 3).
    pub const OVERLOAD_LEVEL: &str = "levee_overload_level";
    /// Resident memory of the gateway process.
    pub const RESIDENT_MEMORY: &str = "levee_process_resident_memory_bytes";
    /// A cluster's current concurrency limit.
    pub const CLUSTER_CONCURRENCY_LIMIT: &str = "levee_cluster_concurrency_limit";
    /// Requests holding a place under a cluster's concurrency limit.
    pub const CLUSTER_ADMITTED_IN_FLIGHT: &str = "levee_cluster_admitted_in_flight";
    /// Requests waiting in a cluster's admission queue.
    pub const CLUSTER_QUEUED: &str = "levee_cluster_queued_requests";
    /// Requests a cluster's admission queue shed, by reason.
    pub const CLUSTER_SHED: &str = "levee_cluster_shed_total";
    /// Requests waiting for an in-flight slot of a cluster (bulkhead).
    pub const CLUSTER_PENDING: &str = "levee_cluster_pending_requests";
    /// Retries and hedges in flight to a cluster (bulkhead).
    pub const CLUSTER_RETRIES_IN_FLIGHT: &str = "levee_cluster_retries_in_flight";
    /// Open HTTP/1.1 connections to a cluster's endpoints (bulkhead).
    pub const CLUSTER_UPSTREAM_CONNECTIONS: &str = "levee_cluster_upstream_connections";
    /// Endpoints a cluster has now (configured, resolved and discovered).
    pub const CLUSTER_ENDPOINTS: &str = "levee_cluster_endpoints";
    /// Endpoint discovery updates, by cluster, source (`file`, `srv`,
    /// `dns`) and result (`applied`, `unchanged`, `error`).
    pub const DISCOVERY_UPDATES: &str = "levee_discovery_updates_total";
    /// Circuit breaker state: 0 closed, 1 open, 2 half-open.
    pub const BREAKER_STATE: &str = "levee_circuit_breaker_state";
    /// Times a circuit breaker opened.
    pub const BREAKER_OPENED: &str = "levee_circuit_breaker_opened_total";
    /// Hedged attempts sent, by route.
    pub const HEDGES: &str = "levee_hedges_total";
    /// Requests whose hedge answered first, by route.
    pub const HEDGE_WINS: &str = "levee_hedge_wins_total";
    /// Requests answered by a fallback, by route and kind.
    pub const FALLBACKS: &str = "levee_fallbacks_total";
    /// Requests considered for mirroring, by route and result (`sent`,
    /// `skipped_body`, `dropped_in_flight`, `shadow_error`).
    pub const MIRROR_REQUESTS: &str = "levee_mirror_requests_total";
    /// Mirrored requests compared with the primary's answer, by route and
    /// result (`match`, `status_mismatch`, `body_mismatch`, `incomplete`).
    pub const MIRROR_COMPARISONS: &str = "levee_mirror_comparisons_total";
    /// Time from a mirrored request's dispatch to the end of the shadow's
    /// answer (or its failure), by route.
    pub const MIRROR_LATENCY: &str = "levee_mirror_shadow_duration_seconds";
    /// Async routes' jobs submitted, by route and result (`accepted`,
    /// `existing`, `full`, `too_large`, `error`).
    pub const JOBS_SUBMITTED: &str = "levee_jobs_submitted_total";
    /// Deliveries of async routes' jobs, by route and result (`delivered`,
    /// `retried`, `dead`, `not_sent`, `stale`).
    pub const JOB_DELIVERIES: &str = "levee_job_deliveries_total";
    /// Jobs not yet delivered, by route and state (`queued`, `delivering`,
    /// `dead`): the queue depth.
    pub const JOBS_DEPTH: &str = "levee_jobs";
    /// Jobs not yet delivered (queued, delivering, dead), by route and
    /// tenant.
    pub const JOBS_TENANT_DEPTH: &str = "levee_jobs_tenant";
    /// Bytes of the jobs not yet delivered, by route.
    pub const JOBS_BYTES: &str = "levee_jobs_bytes";
    /// Age of the oldest job neither delivered nor dead, by route: the lag
    /// an autoscaler scales the workers behind the route on (the embedded
    /// queue's equivalent of JetStream's consumer lag).
    pub const JOBS_OLDEST_AGE: &str = "levee_jobs_oldest_age_seconds";
    /// Time from a job's acceptance to its delivery, by route.
    pub const JOB_COMPLETION: &str = "levee_job_completion_seconds";
    /// Result callbacks, by route and result (`sent`, `failed`, `gave_up`).
    pub const JOB_CALLBACKS: &str = "levee_job_callbacks_total";
    /// Remote-write pushes of every series, by result (`ok`, `error`).
    pub const REMOTE_WRITES: &str = "levee_remote_writes_total";
}

/// A monotonically increasing count.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds one.
    #[inline]
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    /// Adds `n`.
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    /// The current count.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down.
#[derive(Debug, Default)]
pub struct Gauge(AtomicI64);

impl Gauge {
    /// Adds one.
    #[inline]
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    /// Subtracts one.
    #[inline]
    pub fn dec(&self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
    /// Sets the value.
    pub fn set(&self, v: i64) {
        self.0.store(v, Ordering::Relaxed);
    }
    /// The current value.
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Upper bounds of the latency buckets, in seconds (Prometheus conventions).
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Upper bounds for waits of seconds to hours (an async job's acceptance
/// to delivery), in seconds; as many as [`LATENCY_BUCKETS`].
pub const WAIT_BUCKETS: [f64; 14] = [
    0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0,
];

/// A latency histogram with fixed buckets; observations are atomic adds.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64; LATENCY_BUCKETS.len()],
    bounds_ns: [u64; LATENCY_BUCKETS.len()],
    buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    sum_ns: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self::with_bounds(&LATENCY_BUCKETS)
    }
}

impl Histogram {
    /// A histogram over `bounds` (seconds, ascending).
    pub fn with_bounds(bounds: &'static [f64; LATENCY_BUCKETS.len()]) -> Self {
        Self {
            bounds,
            bounds_ns: bounds.map(|s| (s * 1e9) as u64),
            buckets: Default::default(),
            sum_ns: AtomicU64::new(0),
        }
    }

    /// Records one observation of `nanos` nanoseconds.
    #[inline]
    pub fn observe_nanos(&self, nanos: u64) {
        let idx = self
            .bounds_ns
            .iter()
            .position(|&b| nanos <= b)
            .unwrap_or(self.bounds_ns.len());
        self.buckets[idx].fetch_add(1, Ordering::Relaxed);
        self.sum_ns.fetch_add(nanos, Ordering::Relaxed);
    }

    /// Number of observations.
    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).sum()
    }
}

/// A gauge holding a real number (a ratio, a burn rate), or nothing: an
/// empty gauge is left out of the exposition rather than shown as NaN.
#[derive(Debug)]
pub struct FloatGauge(AtomicU64);

/// The bit pattern meaning "no value" (a NaN no computation produces).
const EMPTY: u64 = 0x7ff8_dead_beef_0000;

impl Default for FloatGauge {
    fn default() -> Self {
        Self(AtomicU64::new(EMPTY))
    }
}

impl FloatGauge {
    /// Sets the value; a NaN empties the gauge.
    pub fn set(&self, v: f64) {
        let bits = if v.is_nan() { EMPTY } else { v.to_bits() };
        self.0.store(bits, Ordering::Relaxed);
    }

    /// Empties the gauge (no data).
    pub fn clear(&self) {
        self.0.store(EMPTY, Ordering::Relaxed);
    }

    /// The value, if any.
    pub fn get(&self) -> Option<f64> {
        let bits = self.0.load(Ordering::Relaxed);
        (bits != EMPTY).then(|| f64::from_bits(bits))
    }
}

#[derive(Debug, Clone)]
enum Metric {
    Counter(Arc<Counter>),
    Gauge(Arc<Gauge>),
    FloatGauge(Arc<FloatGauge>),
    Histogram(Arc<Histogram>),
}

#[derive(Debug)]
struct Family {
    help: &'static str,
    kind: &'static str,
    series: BTreeMap<String, Metric>,
}

/// Owns every metric series and renders them in Prometheus text format.
#[derive(Debug, Default)]
pub struct Registry {
    families: Mutex<BTreeMap<&'static str, Family>>,
}

/// Renders a label set as `a="x",b="y"` with Prometheus escaping.
fn render_labels(labels: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for (i, (k, v)) in labels.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(k);
        out.push_str("=\"");
        for c in v.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                '\n' => out.push_str("\\n"),
                c => out.push(c),
            }
        }
        out.push('"');
    }
    out
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    fn get_or_create(
        &self,
        name: &'static str,
        help: &'static str,
        kind: &'static str,
        labels: &[(&str, &str)],
        make: impl FnOnce() -> Metric,
    ) -> Metric {
        let mut families = self.families.lock().unwrap_or_else(|e| e.into_inner());
        let family = families.entry(name).or_insert_with(|| Family {
            help,
            kind,
            series: BTreeMap::new(),
        });
        family
            .series
            .entry(render_labels(labels))
            .or_insert_with(make)
            .clone()
    }

    /// The counter `name{labels}`, created on first use.
    pub fn counter(
        &self,
        name: &'static str,
        help: &'static str,
        labels: &[(&str, &str)],
    ) -> Arc<Counter> {
        match self.get_or_create(name, help, "counter", labels, || {
            Metric::Counter(Arc::default())
        }) {
            Metric::Counter(c) => c,
            other => panic!("metric {name} registered with another type: {other:?}"),
        }
    }

    /// The gauge `name{labels}`, created on first use.
    pub fn gauge(
        &self,
        name: &'static str,
        help: &'static str,
        labels: &[(&str, &str)],
    ) -> Arc<Gauge> {
        match self.get_or_create(
            name,
            help,
            "gauge",
            labels,
            || Metric::Gauge(Arc::default()),
        ) {
            Metric::Gauge(g) => g,
            other => panic!("metric {name} registered with another type: {other:?}"),
        }
    }

    /// The real-valued gauge `name{labels}`, created on first use (empty).
    pub fn float_gauge(
        &self,
        name: &'static str,
        help: &'static str,
        labels: &[(&str, &str)],
    ) -> Arc<FloatGauge> {
        match self.get_or_create(name, help, "gauge", labels, || {
            Metric::FloatGauge(Arc::default())
        }) {
            Metric::FloatGauge(g) => g,
            other => panic!("metric {name} registered with another type: {other:?}"),
        }
    }

    /// The histogram `name{labels}`, created on first use.
    pub fn histogram(
        &self,
        name: &'static str,
        help: &'static str,
        labels: &[(&str, &str)],
    ) -> Arc<Histogram> {
        self.histogram_over(name, help, labels, &LATENCY_BUCKETS)
    }

    /// Like [`Registry::histogram`], over `bounds` (seconds) when created.
    pub fn histogram_over(
        &self,
        name: &'static str,
        help: &'static str,
        labels: &[(&str, &str)],
        bounds: &'static [f64; LATENCY_BUCKETS.len()],
    ) -> Arc<Histogram> {
        match self.get_or_create(name, help, "histogram", labels, || {
            Metric::Histogram(Arc::new(Histogram::with_bounds(bounds)))
        }) {
            Metric::Histogram(h) => h,
            other => panic!("metric {name} registered with another type: {other:?}"),
        }
    }

    /// Drops series of `name` whose labels contain `label="value"` (for
    /// endpoints and clusters that left the config).
    pub fn remove_series(&self, name: &'static str, label: &str, value: &str) {
        let needle = render_labels(&[(label, value)]);
        let mut families = self.families.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = families.get_mut(name) {
            f.series
                .retain(|k, _| !k.split(',').any(|part| part == needle));
        }
    }

    /// Drops series of `name` whose labels contain every one of `labels`
    /// (an endpoint of one cluster, when the same address serves others).
    pub fn remove_series_matching(&self, name: &'static str, labels: &[(&str, &str)]) {
        let needles: Vec<String> = labels.iter().map(|l| render_labels(&[*l])).collect();
        let mut families = self.families.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = families.get_mut(name) {
            f.series.retain(|k, _| {
                !needles
                    .iter()
                    .all(|needle| k.split(',').any(|part| part == needle))
            });
        }
    }

    /// The Prometheus text exposition (format 0.0.4) of every series.
    pub fn encode(&self) -> String {
        let families = self.families.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = String::with_capacity(16 * 1024);
        for (name, family) in families.iter() {
            let _ = writeln!(out, "# HELP {name} {}", family.help);
            let _ = writeln!(out, "# TYPE {name} {}", family.kind);
            for (labels, metric) in &family.series {
                let braces = |extra: &str| -> String {
                    match (labels.is_empty(), extra.is_empty()) {
                        (true, true) => String::new(),
                        (true, false) => format!("{{{extra}}}"),
                        (false, true) => format!("{{{labels}}}"),
                        (false, false) => format!("{{{labels},{extra}}}"),
                    }
                };
                match metric {
                    Metric::Counter(c) => {
                        let _ = writeln!(out, "{name}{} {}", braces(""), c.get());
                    }
                    Metric::Gauge(g) => {
                        let _ = writeln!(out, "{name}{} {}", braces(""), g.get());
                    }
                    Metric::FloatGauge(g) => {
                        if let Some(v) = g.get() {
                            let _ = writeln!(out, "{name}{} {v}", braces(""));
                        }
                    }
                    Metric::Histogram(h) => {
                        let mut cumulative = 0u64;
                        for (i, bound) in h.bounds.iter().enumerate() {
                            cumulative += h.buckets[i].load(Ordering::Relaxed);
                            let le = format!("le=\"{bound}\"");
                            let _ = writeln!(out, "{name}_bucket{} {cumulative}", braces(&le));
                        }
                        cumulative += h.buckets[LATENCY_BUCKETS.len()].load(Ordering::Relaxed);
                        let _ =
                            writeln!(out, "{name}_bucket{} {cumulative}", braces("le=\"+Inf\""));
                        let sum = h.sum_ns.load(Ordering::Relaxed) as f64 / 1e9;
                        let _ = writeln!(out, "{name}_sum{} {sum}", braces(""));
                        let _ = writeln!(out, "{name}_count{} {cumulative}", braces(""));
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_float_gauge_is_left_out() {
        let r = Registry::new();
        let g = r.float_gauge("ratio", "help", &[("slo", "a")]);
        assert!(!r.encode().contains("ratio{"));
        g.set(0.25);
        assert!(r.encode().contains("ratio{slo=\"a\"} 0.25"));
        g.set(f64::NAN);
        assert!(!r.encode().contains("ratio{"));
        g.set(-1.5);
        assert!(r.encode().contains("ratio{slo=\"a\"} -1.5"));
        g.clear();
        assert_eq!(g.get(), None);
    }

    #[test]
    fn same_labels_share_one_series() {
        let r = Registry::new();
        let a = r.counter("x_total", "help", &[("route", "a")]);
        let b = r.counter("x_total", "help", &[("route", "a")]);
        a.inc();
        b.add(2);
        assert_eq!(a.get(), 3);
        let text = r.encode();
        assert!(text.contains("# TYPE x_total counter"));
        assert!(text.contains("x_total{route=\"a\"} 3"));
    }

    #[test]
    fn histogram_buckets_are_cumulative() {
        let r = Registry::new();
        let h = r.histogram("lat_seconds", "help", &[]);
        h.observe_nanos(200_000); // 0.2 ms
        h.observe_nanos(3_000_000); // 3 ms
        h.observe_nanos(20_000_000_000); // 20 s, above every bound
        let text = r.encode();
        assert!(
            text.contains("lat_seconds_bucket{le=\"0.0005\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("lat_seconds_bucket{le=\"0.005\"} 2"),
            "{text}"
        );
        assert!(text.contains("lat_seconds_bucket{le=\"10\"} 2"), "{text}");
        assert!(text.contains("lat_seconds_bucket{le=\"+Inf\"} 3"), "{text}");
        assert!(text.contains("lat_seconds_count 3"), "{text}");
    }

    #[test]
    fn label_values_are_escaped_and_removable() {
        let r = Registry::new();
        r.gauge("g", "help", &[("endpoint", "a\"b"), ("cluster", "c")])
            .set(1);
        assert!(r
            .encode()
            .contains("g{endpoint=\"a\\\"b\",cluster=\"c\"} 1"));
        r.remove_series("g", "cluster", "c");
        assert!(!r.encode().contains("g{"));
    }

    #[test]
    fn series_are_removed_only_where_every_label_matches() {
        let r = Registry::new();
        for cluster in ["a", "b"] {
            r.gauge(
                "g",
                "help",
                &[("cluster", cluster), ("endpoint", "10.0.0.1:80")],
            )
            .set(1);
        }
        r.remove_series_matching("g", &[("cluster", "a"), ("endpoint", "10.0.0.1:80")]);
        let text = r.encode();
        assert!(!text.contains("cluster=\"a\""), "{text}");
        assert!(
            text.contains("g{cluster=\"b\",endpoint=\"10.0.0.1:80\"} 1"),
            "{text}"
        );
    }
}
