//! Peak-EWMA latency estimate, in the style of Finagle and Linkerd: a slower
//! response than the estimate replaces it at once (the peak), a faster one
//! moves it by an exponentially weighted step, and with no responses the
//! estimate decays towards zero so an endpoint that was slow is tried again.
//!
//! Lock-free: two atomics. Concurrent updates may lose one observation, which
//! an estimate can afford; a lock on the request path cannot be.

use levee_core::Nanos;
use std::sync::atomic::{AtomicU64, Ordering};

/// The estimate for one endpoint.
#[derive(Debug)]
pub struct PeakEwma {
    cost_ns: AtomicU64,
    stamp: AtomicU64,
}

impl PeakEwma {
    /// A fresh estimate of `initial_ns`, as of `now`.
    pub fn new(initial_ns: f64, now: Nanos) -> Self {
        Self {
            cost_ns: AtomicU64::new(initial_ns.to_bits()),
            stamp: AtomicU64::new(now),
        }
    }

    fn decayed(&self, now: Nanos, tau_ns: f64) -> (f64, f64) {
        let cost = f64::from_bits(self.cost_ns.load(Ordering::Relaxed));
        let elapsed = now.saturating_sub(self.stamp.load(Ordering::Relaxed)) as f64;
        let w = (-elapsed / tau_ns).exp();
        (cost, w)
    }

    /// Records a response that took `rtt_ns`, observed at `now`.
    pub fn observe(&self, rtt_ns: u64, now: Nanos, tau_ns: f64) {
        let (cost, w) = self.decayed(now, tau_ns);
        let rtt = rtt_ns as f64;
        let next = if rtt > cost {
            rtt
        } else {
            cost * w + rtt * (1.0 - w)
        };
        self.cost_ns.store(next.to_bits(), Ordering::Relaxed);
        self.stamp.store(now, Ordering::Relaxed);
    }

    /// The estimate at `now`, decayed since the last observation.
    pub fn cost(&self, now: Nanos, tau_ns: f64) -> f64 {
        let (cost, w) = self.decayed(now, tau_ns);
        cost * w
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TAU: f64 = 10e9;
    const MS: u64 = 1_000_000;

    #[test]
    fn peaks_are_taken_at_once() {
        let e = PeakEwma::new(MS as f64, 0);
        e.observe(50 * MS, 1, TAU);
        assert!((e.cost(1, TAU) - 50e6).abs() < 1.0);
    }

    #[test]
    fn faster_responses_pull_the_estimate_down_gradually() {
        let e = PeakEwma::new(0.0, 0);
        e.observe(100 * MS, 0, TAU);
        e.observe(MS, 1_000 * MS, TAU);
        let c = e.cost(1_000 * MS, TAU);
        assert!(c < 100e6 && c > 50e6, "cost {c}");
    }

    #[test]
    fn estimate_decays_without_traffic() {
        let e = PeakEwma::new(0.0, 0);
        e.observe(100 * MS, 0, TAU);
        let later = e.cost(60_000 * MS, TAU);
        assert!(later < 1e6, "cost after a minute {later}");
    }
}
