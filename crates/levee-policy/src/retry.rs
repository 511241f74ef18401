//! Retry arithmetic: exponential backoff with full jitter, and the retry
//! budget (Finagle and Linkerd style): retries may be a fraction of recent
//! requests over a time window, plus a small floor per second so that a
//! quiet route can still retry. Plain structs, time and randomness passed in.

use crate::window::{Counts, SlidingWindow};
use levee_core::Nanos;
use std::time::Duration;

/// Exponential backoff with full jitter (AWS's "full jitter"): the n-th
/// retry waits a uniformly random time in `[0, min(max, base * 2^n)]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Ceiling of the first retry's wait.
    pub base: Duration,
    /// Ceiling of any wait.
    pub max: Duration,
}

impl Backoff {
    /// The wait before retry number `retry` (0 for the first), given 64
    /// random bits.
    pub fn delay(&self, retry: u32, random: u64) -> Duration {
        let ceiling = self
            .base
            .as_nanos()
            .saturating_mul(1u128 << retry.min(63))
            .min(self.max.as_nanos()) as u64;
        if ceiling == 0 {
            return Duration::ZERO;
        }
        Duration::from_nanos(random % (ceiling + 1))
    }
}

/// How many retries a route may spend.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BudgetConfig {
    /// Retries allowed as a share of requests in the window (0.2 = 20%).
    pub ratio: f64,
    /// Retries allowed per second regardless of traffic.
    pub min_per_second: u32,
    /// The window.
    pub window: Duration,
}

/// A retry budget over a sliding window.
#[derive(Debug, Clone)]
pub struct RetryBudget {
    config: BudgetConfig,
    window: SlidingWindow,
}

impl RetryBudget {
    /// An empty budget.
    pub fn new(config: BudgetConfig) -> Self {
        Self {
            window: SlidingWindow::new(config.window, 10),
            config,
        }
    }

    /// Records an original request (not a retry).
    pub fn record_request(&mut self, now: Nanos) {
        self.window.record(
            now,
            Counts {
                total: 1,
                ..Counts::default()
            },
        );
    }

    /// Retries the budget allows in the window ending at `now`.
    pub fn allowance(&self, now: Nanos) -> f64 {
        let requests = self.window.sum(now).total as f64;
        let floor = f64::from(self.config.min_per_second) * self.config.window.as_secs_f64();
        floor + self.config.ratio * requests
    }

    /// Takes one retry from the budget if it has room; true if taken.
    pub fn try_withdraw(&mut self, now: Nanos) -> bool {
        let spent = self.window.sum(now).retries as f64;
        if spent + 1.0 > self.allowance(now) {
            return false;
        }
        self.window.record(
            now,
            Counts {
                retries: 1,
                ..Counts::default()
            },
        );
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn backoff_ceiling_doubles_up_to_max() {
        let b = Backoff {
            base: Duration::from_millis(10),
            max: Duration::from_millis(300),
        };
        assert_eq!(
            b.delay(0, u64::MAX),
            Duration::from_nanos(u64::MAX % (10 * MS + 1))
        );
        assert!(b.delay(3, u64::MAX) <= Duration::from_millis(80));
        assert!(b.delay(30, u64::MAX) <= Duration::from_millis(300));
        assert_eq!(b.delay(5, 0), Duration::ZERO);
    }

    #[test]
    fn budget_allows_ratio_of_traffic_plus_floor() {
        let mut budget = RetryBudget::new(BudgetConfig {
            ratio: 0.2,
            min_per_second: 1,
            window: Duration::from_secs(10),
        });
        // Quiet route: the floor (1/s over 10 s) allows 10 retries.
        let granted = (0..100).filter(|_| budget.try_withdraw(0)).count();
        assert_eq!(granted, 10);
        // 100 requests add 20% more.
        for _ in 0..100 {
            budget.record_request(MS);
        }
        let more = (0..100).filter(|_| budget.try_withdraw(MS)).count();
        assert_eq!(more, 20);
        // Eleven seconds later the window has forgotten everything.
        let later = 11_000 * MS;
        assert_eq!((0..100).filter(|_| budget.try_withdraw(later)).count(), 10);
    }

    proptest! {
        /// Full jitter never exceeds its ceiling.
        #[test]
        fn backoff_is_bounded(base_ms in 0u64..1000, max_ms in 0u64..10_000, retry in 0u32..80, random in any::<u64>()) {
            let b = Backoff { base: Duration::from_millis(base_ms), max: Duration::from_millis(max_ms) };
            let d = b.delay(retry, random);
            prop_assert!(d <= Duration::from_millis(max_ms));
            let ceiling = (base_ms as u128) << retry.min(63);
            prop_assert!(d.as_millis() <= ceiling);
        }

        /// Against a naive model that keeps every event: a retry is granted
        /// exactly when, counting it, the retries in the window stay within
        /// the floor plus the ratio of requests in the window.
        #[test]
        fn budget_matches_a_naive_model(ops in prop::collection::vec((0u64..30_000, any::<bool>()), 1..300)) {
            let config = BudgetConfig { ratio: 0.1, min_per_second: 2, window: Duration::from_secs(10) };
            let mut budget = RetryBudget::new(config);
            let slot = budget.window.slot_ns();
            let mut requests: Vec<u64> = Vec::new();
            let mut retries: Vec<u64> = Vec::new();
            let mut ops = ops;
            ops.sort_by_key(|(t, _)| *t);
            for (t, is_request) in ops {
                let now = t * MS;
                let oldest = (now / slot).saturating_sub(9);
                let in_window = |v: &Vec<u64>| v.iter().filter(|at| *at / slot >= oldest).count() as f64;
                if is_request {
                    budget.record_request(now);
                    requests.push(now);
                } else {
                    let allowed = in_window(&retries) + 1.0 <= 20.0 + 0.1 * in_window(&requests);
                    prop_assert_eq!(budget.try_withdraw(now), allowed);
                    if allowed {
                        retries.push(now);
                    }
                }
            }
        }
    }
}
