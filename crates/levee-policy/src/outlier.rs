//! Outlier ejection, in the manner of Envoy: an endpoint is taken out of
//! rotation after consecutive 5xx or gateway errors, when its success rate
//! falls far below its peers' (mean − k·σ), or when its mean latency is a
//! multiple of the median of its peers' means. Ejection time grows with each
//! repeat ejection up to a maximum, and the share of endpoints ejected at once
//! is capped so that, unless configured otherwise, at least one always stays.
//! Each ejection remembers its cause for display. Plain struct: time passed
//! in; `levee-proxy` feeds it per cluster.

use levee_core::{Nanos, Outcome};
use std::time::Duration;

/// When endpoints are ejected and for how long.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OutlierConfig {
    /// 5xx responses or gateway errors in a row that eject (0: off).
    pub consecutive_5xx: u32,
    /// Gateway errors (502, 503, 504 or failing to connect) in a row that eject (0: off).
    pub consecutive_gateway: u32,
    /// k in mean − k·σ for success-rate ejection (0.0: off).
    pub success_rate_stdev_factor: f64,
    /// Endpoints with enough volume needed before success rates compare.
    pub success_rate_min_hosts: usize,
    /// Requests an endpoint needs in the interval to be compared.
    pub success_rate_min_requests: u64,
    /// Ejection time of a first ejection.
    pub base_ejection: Duration,
    /// Longest ejection.
    pub max_ejection: Duration,
    /// Most endpoints ejected at once, in percent; below 100 at least one
    /// endpoint always stays.
    pub max_ejection_percent: u32,
    /// Eject an endpoint whose mean latency over the interval exceeds this
    /// many times the median of the endpoints' means (0.0: off). Meant to be
    /// well above 1 (say 3): at 1 or below, half the endpoints are outliers.
    pub latency_factor: f64,
    /// Endpoints with enough latency samples needed before latencies compare.
    pub latency_min_hosts: usize,
    /// Latency samples an endpoint needs in the interval to be compared.
    pub latency_min_requests: u64,
}

/// Why an endpoint was ejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EjectionCause {
    /// `consecutive_5xx` server errors in a row.
    Consecutive5xx,
    /// `consecutive_gateway` gateway errors in a row.
    ConsecutiveGateway,
    /// Success rate far below its peers'.
    SuccessRate,
    /// Mean latency far above its peers' median.
    Latency,
}

impl EjectionCause {
    /// A stable snake_case name, for metric labels and the admin API.
    pub fn as_str(self) -> &'static str {
        match self {
            EjectionCause::Consecutive5xx => "consecutive_5xx",
            EjectionCause::ConsecutiveGateway => "consecutive_gateway",
            EjectionCause::SuccessRate => "success_rate",
            EjectionCause::Latency => "latency",
        }
    }
}

#[derive(Debug, Clone, Default)]
struct Host {
    consecutive_5xx: u32,
    consecutive_gateway: u32,
    successes: u64,
    total: u64,
    /// Latency samples of the interval, in nanoseconds (u128: no overflow).
    latency_sum: u128,
    latency_count: u64,
    ejected_until: Option<Nanos>,
    ejections: u32,
    cause: Option<EjectionCause>,
}

/// Outlier state of one cluster's endpoints, by index.
#[derive(Debug, Clone)]
pub struct OutlierDetector {
    config: OutlierConfig,
    hosts: Vec<Host>,
}

impl OutlierDetector {
    /// A detector for `hosts` endpoints, none ejected.
    pub fn new(config: OutlierConfig, hosts: usize) -> Self {
        Self {
            config,
            hosts: vec![Host::default(); hosts],
        }
    }

    /// The detector for a new list of endpoints (DNS answers and
    /// discovery change it): `previous[i]` is the index the new list's
    /// endpoint `i` had here, if it was here. Endpoints that stay keep
    /// their counts, ejection and ejection history; new ones start clean.
    pub fn carried_over(&self, previous: &[Option<usize>]) -> OutlierDetector {
        OutlierDetector {
            config: self.config,
            hosts: previous
                .iter()
                .map(|old| {
                    old.and_then(|i| self.hosts.get(i))
                        .cloned()
                        .unwrap_or_default()
                })
                .collect(),
        }
    }

    /// Whether endpoint `host` is ejected at `now`.
    pub fn is_ejected(&self, host: usize, now: Nanos) -> bool {
        self.hosts
            .get(host)
            .and_then(|h| h.ejected_until)
            .is_some_and(|until| now < until)
    }

    /// Why endpoint `host` is ejected at `now`; None if it is not.
    pub fn ejection_cause(&self, host: usize, now: Nanos) -> Option<EjectionCause> {
        if !self.is_ejected(host, now) {
            return None;
        }
        self.hosts[host].cause
    }

    fn ejected_count(&self, now: Nanos) -> usize {
        (0..self.hosts.len())
            .filter(|i| self.is_ejected(*i, now))
            .count()
    }

    /// How many endpoints may be ejected at once.
    fn max_ejected(&self) -> usize {
        let n = self.hosts.len();
        let by_percent = n * self.config.max_ejection_percent.min(100) as usize / 100;
        if self.config.max_ejection_percent >= 100 {
            by_percent
        } else {
            by_percent.min(n.saturating_sub(1))
        }
    }

    fn eject(&mut self, host: usize, now: Nanos, cause: EjectionCause) -> bool {
        if self.is_ejected(host, now) || self.ejected_count(now) >= self.max_ejected() {
            return false;
        }
        let h = &mut self.hosts[host];
        h.ejections = h.ejections.saturating_add(1);
        let time = self
            .config
            .base_ejection
            .saturating_mul(h.ejections)
            .min(self.config.max_ejection);
        h.ejected_until = Some(now + time.as_nanos() as u64);
        h.cause = Some(cause);
        h.consecutive_5xx = 0;
        h.consecutive_gateway = 0;
        true
    }

    /// Records an attempt's outcome on `host`; true if it ejected the host.
    pub fn record(&mut self, host: usize, now: Nanos, outcome: Outcome) -> bool {
        let Some(h) = self.hosts.get_mut(host) else {
            return false;
        };
        let status = outcome.status();
        let server_error = outcome.is_server_failure();
        let gateway =
            matches!(status, 502..=504) || outcome.error().is_some_and(|k| k.nothing_sent());
        h.total += 1;
        h.successes += u64::from(!server_error);
        h.consecutive_5xx = if server_error {
            h.consecutive_5xx + 1
        } else {
            0
        };
        h.consecutive_gateway = if gateway {
            h.consecutive_gateway + 1
        } else {
            0
        };
        let c = &self.config;
        // A gateway error is also a 5xx; the narrower cause is the more useful.
        let cause = if c.consecutive_gateway > 0 && h.consecutive_gateway >= c.consecutive_gateway {
            EjectionCause::ConsecutiveGateway
        } else if c.consecutive_5xx > 0 && h.consecutive_5xx >= c.consecutive_5xx {
            EjectionCause::Consecutive5xx
        } else {
            return false;
        };
        self.eject(host, now, cause)
    }

    /// Records one latency sample of `host` for the interval's latency
    /// comparison (the caller decides which attempts count, e.g. the time to
    /// the response head of those that got one).
    pub fn record_latency(&mut self, host: usize, latency_ns: u64) {
        if let Some(h) = self.hosts.get_mut(host) {
            h.latency_sum += u128::from(latency_ns);
            h.latency_count += 1;
        }
    }

    /// The periodic sweep: ejects success-rate outliers, then latency
    /// outliers (slowest first, while the cap allows), of the interval just
    /// ended, then starts a new interval. Returns the hosts it ejected.
    pub fn sweep(&mut self, now: Nanos) -> Vec<usize> {
        let c = self.config;
        let mut ejected = Vec::new();
        if c.success_rate_stdev_factor > 0.0 {
            let rates: Vec<(usize, f64)> = self
                .hosts
                .iter()
                .enumerate()
                .filter(|(_, h)| h.total >= c.success_rate_min_requests.max(1))
                .map(|(i, h)| (i, h.successes as f64 / h.total as f64))
                .collect();
            if rates.len() >= c.success_rate_min_hosts.max(2) {
                let n = rates.len() as f64;
                let mean = rates.iter().map(|(_, r)| r).sum::<f64>() / n;
                let var = rates.iter().map(|(_, r)| (r - mean).powi(2)).sum::<f64>() / n;
                let floor = mean - c.success_rate_stdev_factor * var.sqrt();
                for (i, rate) in rates {
                    if rate < floor && self.eject(i, now, EjectionCause::SuccessRate) {
                        ejected.push(i);
                    }
                }
            }
        }
        for i in self.latency_outliers() {
            if self.eject(i, now, EjectionCause::Latency) {
                ejected.push(i);
            }
        }
        for h in &mut self.hosts {
            h.successes = 0;
            h.total = 0;
            h.latency_sum = 0;
            h.latency_count = 0;
        }
        ejected
    }

    /// Hosts whose mean latency this interval exceeds `latency_factor` times
    /// the median of the compared hosts' means, slowest first. The median,
    /// unlike the mean, is not dragged up by the outliers themselves, so a
    /// uniformly slow cluster has none.
    fn latency_outliers(&self) -> Vec<usize> {
        let c = &self.config;
        if c.latency_factor.is_nan() || c.latency_factor <= 0.0 {
            return Vec::new();
        }
        let mut means: Vec<(usize, f64)> = self
            .hosts
            .iter()
            .enumerate()
            .filter(|(_, h)| h.latency_count >= c.latency_min_requests.max(1))
            .map(|(i, h)| (i, h.latency_sum as f64 / h.latency_count as f64))
            .collect();
        if means.len() < c.latency_min_hosts.max(2) {
            return Vec::new();
        }
        means.sort_by(|a, b| b.1.total_cmp(&a.1));
        let mid = means.len() / 2;
        let median = if means.len() % 2 == 1 {
            means[mid].1
        } else {
            (means[mid - 1].1 + means[mid].1) / 2.0
        };
        let limit = c.latency_factor * median;
        means
            .into_iter()
            .take_while(|(_, mean)| *mean > limit)
            .map(|(i, _)| i)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use levee_core::ErrorKind;
    use proptest::prelude::*;

    const S: u64 = 1_000_000_000;

    fn config() -> OutlierConfig {
        OutlierConfig {
            consecutive_5xx: 5,
            consecutive_gateway: 3,
            success_rate_stdev_factor: 1.9,
            success_rate_min_hosts: 3,
            success_rate_min_requests: 50,
            base_ejection: Duration::from_secs(30),
            max_ejection: Duration::from_secs(300),
            max_ejection_percent: 50,
            latency_factor: 3.0,
            latency_min_hosts: 3,
            latency_min_requests: 10,
        }
    }

    #[test]
    fn endpoints_that_stay_keep_their_state_across_a_new_list() {
        let mut d = OutlierDetector::new(config(), 4);
        for _ in 0..3 {
            d.record(1, S, Outcome::Response(502));
        }
        for _ in 0..2 {
            d.record(2, S, Outcome::Response(502));
        }
        assert!(d.is_ejected(1, S));
        // Endpoint 0 left; 1, 2 and 3 stay (now 0, 2 and 3); 1 is new.
        let mut next = d.carried_over(&[Some(1), None, Some(2), Some(3)]);
        assert!(next.is_ejected(0, S));
        assert_eq!(
            next.ejection_cause(0, S),
            Some(EjectionCause::ConsecutiveGateway)
        );
        // The new endpoint starts clean; endpoint 2's two gateway errors in
        // a row carried over, so its third ejects it.
        assert!(!next.record(1, S, Outcome::Response(502)));
        assert!(!next.record(1, S, Outcome::Response(502)));
        assert!(next.record(2, S, Outcome::Response(502)));
        assert!(d.carried_over(&[]).hosts.is_empty());
    }

    const MS: u64 = 1_000_000;

    /// Feeds `n` samples of `latency_ms` to each host.
    fn latencies(d: &mut OutlierDetector, per_host_ms: &[u64], n: u64) {
        for (host, &ms) in per_host_ms.iter().enumerate() {
            for _ in 0..n {
                d.record_latency(host, ms * MS);
            }
        }
    }

    #[test]
    fn consecutive_errors_eject_for_growing_times() {
        let mut d = OutlierDetector::new(config(), 4);
        for _ in 0..4 {
            assert!(!d.record(0, 0, Outcome::Response(500)));
        }
        assert!(d.record(0, 0, Outcome::Response(500)));
        assert!(d.is_ejected(0, 29 * S));
        assert!(!d.is_ejected(0, 30 * S));
        // Gateway errors trip sooner; the second ejection lasts twice as long.
        for _ in 0..3 {
            d.record(0, 40 * S, Outcome::Failed(ErrorKind::ConnectRefused));
        }
        assert!(d.is_ejected(0, 99 * S));
        assert!(!d.is_ejected(0, 100 * S));
    }

    #[test]
    fn success_rate_outlier_is_ejected() {
        let mut d = OutlierDetector::new(config(), 5);
        for host in 0..5 {
            for i in 0..100 {
                let ok = if host == 4 { i % 2 == 0 } else { i % 50 != 0 };
                d.record(host, 0, Outcome::Response(if ok { 200 } else { 500 }));
            }
        }
        assert_eq!(d.sweep(10 * S), vec![4]);
    }

    #[test]
    fn never_ejects_the_last_endpoints() {
        let mut d = OutlierDetector::new(config(), 2);
        for _ in 0..5 {
            d.record(0, 0, Outcome::Response(503));
            d.record(1, 0, Outcome::Response(503));
        }
        assert_eq!(d.ejected_count(0), 1, "50% of two endpoints is one");
    }

    #[test]
    fn every_ejection_knows_its_cause() {
        let mut d = OutlierDetector::new(config(), 8);
        for _ in 0..5 {
            d.record(0, 0, Outcome::Response(500));
        }
        for _ in 0..3 {
            d.record(1, 0, Outcome::Response(503));
        }
        assert_eq!(d.ejection_cause(0, 0), Some(EjectionCause::Consecutive5xx));
        assert_eq!(
            d.ejection_cause(1, 0),
            Some(EjectionCause::ConsecutiveGateway)
        );
        for host in 2..8 {
            for i in 0..100 {
                let ok = if host == 2 { i % 2 == 0 } else { i % 50 != 0 };
                d.record(host, 0, Outcome::Response(if ok { 200 } else { 500 }));
            }
        }
        latencies(&mut d, &[0, 0, 0, 10, 10, 10, 10, 90], 20);
        assert_eq!(d.sweep(S), vec![2, 7]);
        assert_eq!(d.ejection_cause(2, S), Some(EjectionCause::SuccessRate));
        assert_eq!(d.ejection_cause(7, S), Some(EjectionCause::Latency));
        assert_eq!(d.ejection_cause(3, S), None);
        // Over when the ejection is.
        assert_eq!(d.ejection_cause(7, 31 * S), None);
        assert_eq!(EjectionCause::Latency.as_str(), "latency");
    }

    #[test]
    fn slow_outlier_is_ejected_for_growing_times() {
        let mut d = OutlierDetector::new(config(), 5);
        latencies(&mut d, &[10, 12, 11, 9, 40], 20);
        assert_eq!(d.sweep(0), vec![4]);
        assert!(d.is_ejected(4, 29 * S));
        assert!(!d.is_ejected(4, 30 * S));
        // The interval's latencies were forgotten: a quiet interval ejects
        // nobody, and a second offence ejects for twice as long.
        assert_eq!(d.sweep(40 * S), Vec::<usize>::new());
        latencies(&mut d, &[10, 12, 11, 9, 40], 20);
        assert_eq!(d.sweep(50 * S), vec![4]);
        assert!(d.is_ejected(4, 109 * S));
        assert!(!d.is_ejected(4, 110 * S));
    }

    #[test]
    fn uniformly_slow_cluster_ejects_nobody() {
        let mut d = OutlierDetector::new(config(), 5);
        latencies(&mut d, &[900, 1000, 1100, 950, 1050], 50);
        assert!(d.sweep(0).is_empty());
        // Nor does a single slow host among too few compared, nor one with
        // too few samples, nor anything when the check is off.
        let mut d = OutlierDetector::new(config(), 5);
        latencies(&mut d, &[10, 90], 20);
        latencies(&mut d, &[0, 0, 10, 10, 900], 9);
        assert!(d.sweep(0).is_empty());
        let mut d = OutlierDetector::new(
            OutlierConfig {
                latency_factor: 0.0,
                ..config()
            },
            5,
        );
        latencies(&mut d, &[10, 12, 11, 9, 400], 20);
        assert!(d.sweep(0).is_empty());
    }

    #[test]
    fn cap_holds_with_latency_ejections_slowest_first() {
        let mut d = OutlierDetector::new(
            OutlierConfig {
                max_ejection_percent: 20,
                ..config()
            },
            10,
        );
        latencies(&mut d, &[10, 10, 10, 10, 10, 10, 10, 100, 140, 120], 20);
        assert_eq!(d.sweep(0), vec![8, 9]);
        assert_eq!(d.ejected_count(0), 2);
        // Consecutive errors cannot exceed the cap either.
        for _ in 0..5 {
            d.record(7, 0, Outcome::Response(500));
        }
        assert!(!d.is_ejected(7, 0));
    }

    proptest! {
        /// With a cap below 100%, some endpoint always stays in rotation, and
        /// no ejection outlasts max_ejection.
        #[test]
        fn someone_always_stays(n in 1usize..8, events in prop::collection::vec((0usize..8, 0u64..600, any::<bool>(), 0u64..1000), 1..400), percent in 0u32..100) {
            let mut d = OutlierDetector::new(OutlierConfig { max_ejection_percent: percent, latency_min_requests: 1, latency_min_hosts: 2, ..config() }, n);
            let mut events = events;
            events.sort_by_key(|(_, t, _, _)| *t);
            for (host, t, ok, latency_ms) in events {
                let now = t * S;
                d.record(host % n, now, Outcome::Response(if ok { 200 } else { 502 }));
                d.record_latency(host % n, latency_ms * MS);
                if t % 10 == 0 { d.sweep(now); }
                prop_assert!(d.ejected_count(now) < n);
                for i in 0..n {
                    if let Some(until) = d.hosts[i].ejected_until {
                        prop_assert!(until <= now + 300 * S);
                    }
                }
            }
        }
    }
}
