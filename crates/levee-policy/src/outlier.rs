//! Outlier ejection, in the manner of Envoy: an endpoint is taken out of
//! rotation after consecutive 5xx or gateway errors, or when its success rate
//! falls far below its peers' (mean − k·σ). Ejection time grows with each
//! repeat ejection up to a maximum, and the share of endpoints ejected at once
//! is capped so that, unless configured otherwise, at least one always stays.
//! Plain struct: time passed in; `levee-proxy` feeds it per cluster.

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
}

#[derive(Debug, Clone, Default)]
struct Host {
    consecutive_5xx: u32,
    consecutive_gateway: u32,
    successes: u64,
    total: u64,
    ejected_until: Option<Nanos>,
    ejections: u32,
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

    /// Whether endpoint `host` is ejected at `now`.
    pub fn is_ejected(&self, host: usize, now: Nanos) -> bool {
        self.hosts
            .get(host)
            .and_then(|h| h.ejected_until)
            .is_some_and(|until| now < until)
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

    fn eject(&mut self, host: usize, now: Nanos) -> bool {
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
        let trip = (c.consecutive_5xx > 0 && h.consecutive_5xx >= c.consecutive_5xx)
            || (c.consecutive_gateway > 0 && h.consecutive_gateway >= c.consecutive_gateway);
        trip && self.eject(host, now)
    }

    /// The periodic sweep: ejects success-rate outliers of the interval just
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
                    if rate < floor && self.eject(i, now) {
                        ejected.push(i);
                    }
                }
            }
        }
        for h in &mut self.hosts {
            h.successes = 0;
            h.total = 0;
        }
        ejected
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

    proptest! {
        /// With a cap below 100%, some endpoint always stays in rotation, and
        /// no ejection outlasts max_ejection.
        #[test]
        fn someone_always_stays(n in 1usize..8, events in prop::collection::vec((0usize..8, 0u64..600, any::<bool>()), 1..400), percent in 0u32..100) {
            let mut d = OutlierDetector::new(OutlierConfig { max_ejection_percent: percent, ..config() }, n);
            let mut events = events;
            events.sort_by_key(|(_, t, _)| *t);
            for (host, t, ok) in events {
                let now = t * S;
                d.record(host % n, now, Outcome::Response(if ok { 200 } else { 502 }));
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
