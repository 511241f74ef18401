//! A circuit breaker: closed, open, half-open. It trips on consecutive
//! failures, on a failure ratio over a sliding window (with a minimum volume),
//! or on a slow-call ratio. Open time backs off exponentially with jitter
//! across repeated trips; half-open admits a few probes and closes after they
//! all succeed, then traffic ramps back over `ramp`. Probes that never report
//! (a cancelled request) cannot wedge it: after another `base_open` without
//! an answer, half-open admits fresh probes. Plain struct: time and
//! randomness passed in.

use crate::window::{Counts, SlidingWindow};
use levee_core::Nanos;
use std::time::Duration;

/// When a breaker trips and how it recovers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BreakerConfig {
    /// Failures in a row that trip it (0: off).
    pub consecutive_failures: u32,
    /// Failure share over the window that trips it (0.0: off).
    pub failure_ratio: f64,
    /// Share of calls slower than `slow_threshold` that trips it (0.0: off).
    pub slow_ratio: f64,
    /// What counts as slow.
    pub slow_threshold: Duration,
    /// Calls the window must hold before ratios apply.
    pub min_requests: u64,
    /// The sliding window for ratios.
    pub window: Duration,
    /// Open time after the first trip.
    pub base_open: Duration,
    /// Longest open time.
    pub max_open: Duration,
    /// Probes admitted while half-open; all must succeed to close.
    pub half_open_probes: u32,
    /// After closing, the admitted share rises linearly from 10% to all
    /// over this long (zero: at once).
    pub ramp: Duration,
}

/// Where the breaker is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls flow.
    Closed,
    /// Calls are refused until `until`.
    Open {
        /// When probing may start.
        until: Nanos,
    },
    /// A few probes are admitted.
    HalfOpen {
        /// Probes admitted so far.
        admitted: u32,
        /// Probes that succeeded.
        succeeded: u32,
        /// When the current round of probes started.
        since: Nanos,
    },
}

/// One breaker (per endpoint or per cluster).
#[derive(Debug, Clone)]
pub struct CircuitBreaker {
    config: BreakerConfig,
    state: BreakerState,
    window: SlidingWindow,
    consecutive: u32,
    trips: u32,
    /// When it last closed after being open (the ramp starts there).
    closed_at: Option<Nanos>,
}

impl CircuitBreaker {
    /// A closed breaker.
    pub fn new(config: BreakerConfig) -> Self {
        Self {
            window: SlidingWindow::new(config.window, 10),
            config,
            state: BreakerState::Closed,
            consecutive: 0,
            trips: 0,
            closed_at: None,
        }
    }

    /// The current state.
    pub fn state(&self) -> BreakerState {
        self.state
    }

    /// Whether the breaker refuses everything at `now` (open, before its
    /// time): the cheap check for callers that route around it.
    pub fn is_open(&self, now: Nanos) -> bool {
        matches!(self.state, BreakerState::Open { until } if now < until)
    }

    /// Whether a call may go ahead at `now`; a half-open breaker counts it
    /// as a probe, and a breaker that closed recently admits a share rising
    /// over the ramp (`random` decides).
    pub fn allow(&mut self, now: Nanos, random: u64) -> bool {
        let probes = self.config.half_open_probes.max(1);
        match self.state {
            BreakerState::Closed => self.ramp_admits(now, random),
            BreakerState::Open { until } if now < until => false,
            BreakerState::Open { .. } => {
                self.state = BreakerState::HalfOpen {
                    admitted: 1,
                    succeeded: 0,
                    since: now,
                };
                true
            }
            BreakerState::HalfOpen {
                admitted,
                succeeded,
                since,
            } if admitted < probes => {
                self.state = BreakerState::HalfOpen {
                    admitted: admitted + 1,
                    succeeded,
                    since,
                };
                true
            }
            BreakerState::HalfOpen { since, .. } => {
                // Probes out for a whole open period have been lost.
                if now.saturating_sub(since) >= self.config.base_open.as_nanos() as u64 {
                    self.state = BreakerState::HalfOpen {
                        admitted: 1,
                        succeeded: 0,
                        since: now,
                    };
                    return true;
                }
                false
            }
        }
    }

    /// The share of calls admitted at `now` (1.0 once any ramp is over).
    pub fn admitted_share(&self, now: Nanos) -> f64 {
        match (self.state, self.closed_at) {
            (BreakerState::Closed, Some(at)) if !self.config.ramp.is_zero() => {
                let elapsed = now.saturating_sub(at) as f64;
                let ramp = self.config.ramp.as_nanos() as f64;
                (0.1 + 0.9 * elapsed / ramp).min(1.0)
            }
            (BreakerState::Closed, _) => 1.0,
            (BreakerState::HalfOpen { .. }, _) => 0.0,
            (BreakerState::Open { until }, _) if now >= until => 0.0,
            (BreakerState::Open { .. }, _) => 0.0,
        }
    }

    fn ramp_admits(&mut self, now: Nanos, random: u64) -> bool {
        let share = self.admitted_share(now);
        if share >= 1.0 {
            self.closed_at = None;
            return true;
        }
        ((random % 10_000) as f64) < share * 10_000.0
    }

    /// Records a finished call.
    pub fn record(&mut self, now: Nanos, success: bool, latency: Duration, random: u64) {
        match self.state {
            BreakerState::Open { .. } => {}
            BreakerState::HalfOpen {
                admitted,
                succeeded,
                since,
            } => {
                if !success {
                    self.trip(now, random);
                } else if succeeded + 1 >= self.config.half_open_probes.max(1) {
                    self.state = BreakerState::Closed;
                    self.trips = 0;
                    self.consecutive = 0;
                    self.window.clear();
                    self.closed_at = Some(now);
                } else {
                    self.state = BreakerState::HalfOpen {
                        admitted,
                        succeeded: succeeded + 1,
                        since,
                    };
                }
            }
            BreakerState::Closed => {
                self.consecutive = if success { 0 } else { self.consecutive + 1 };
                let slow = latency >= self.config.slow_threshold && self.config.slow_ratio > 0.0;
                self.window.record(
                    now,
                    Counts {
                        total: 1,
                        failures: u64::from(!success),
                        slow: u64::from(slow),
                        retries: 0,
                    },
                );
                if self.should_trip(now) {
                    self.trip(now, random);
                }
            }
        }
    }

    fn should_trip(&self, now: Nanos) -> bool {
        let c = &self.config;
        if c.consecutive_failures > 0 && self.consecutive >= c.consecutive_failures {
            return true;
        }
        let sum = self.window.sum(now);
        if sum.total < c.min_requests.max(1) {
            return false;
        }
        let total = sum.total as f64;
        (c.failure_ratio > 0.0 && sum.failures as f64 / total >= c.failure_ratio)
            || (c.slow_ratio > 0.0 && sum.slow as f64 / total >= c.slow_ratio)
    }

    fn trip(&mut self, now: Nanos, random: u64) {
        self.trips = self.trips.saturating_add(1);
        self.state = BreakerState::Open {
            until: now + self.open_time(random).as_nanos() as u64,
        };
        self.consecutive = 0;
        self.window.clear();
        self.closed_at = None;
    }

    /// Open time for the current trip: base doubled per repeated trip, plus
    /// up to 25% jitter, never above `max_open`.
    fn open_time(&self, random: u64) -> Duration {
        let doublings = self.trips.saturating_sub(1).min(32);
        let nominal = self
            .config
            .base_open
            .saturating_mul(1u32 << doublings.min(31))
            .min(self.config.max_open);
        let jitter = nominal.mul_f64((random % 1000) as f64 / 4000.0);
        (nominal + jitter).min(self.config.max_open)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MS: u64 = 1_000_000;

    fn config() -> BreakerConfig {
        BreakerConfig {
            consecutive_failures: 5,
            failure_ratio: 0.5,
            slow_ratio: 0.0,
            slow_threshold: Duration::from_secs(1),
            min_requests: 20,
            window: Duration::from_secs(10),
            base_open: Duration::from_secs(1),
            max_open: Duration::from_secs(30),
            half_open_probes: 2,
            ramp: Duration::ZERO,
        }
    }

    const FAST: Duration = Duration::from_millis(1);

    #[test]
    fn consecutive_failures_trip_then_probes_close() {
        let mut b = CircuitBreaker::new(config());
        for _ in 0..4 {
            assert!(b.allow(0, 0));
            b.record(0, false, FAST, 0);
        }
        assert_eq!(b.state(), BreakerState::Closed);
        b.record(0, false, FAST, 0);
        assert_eq!(b.state(), BreakerState::Open { until: 1_000 * MS });
        assert!(!b.allow(999 * MS, 0));
        // Half-open: two probes, a third waits.
        assert!(b.allow(1_000 * MS, 0));
        assert!(b.allow(1_000 * MS, 0));
        assert!(!b.allow(1_000 * MS, 0));
        b.record(1_001 * MS, true, FAST, 0);
        b.record(1_001 * MS, true, FAST, 0);
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn failed_probe_reopens_for_twice_as_long() {
        let mut b = CircuitBreaker::new(config());
        for _ in 0..5 {
            b.record(0, false, FAST, 0);
        }
        assert!(b.allow(1_000 * MS, 0));
        b.record(1_000 * MS, false, FAST, 0);
        assert_eq!(b.state(), BreakerState::Open { until: 3_000 * MS });
    }

    #[test]
    fn ratio_needs_volume() {
        let mut b = CircuitBreaker::new(BreakerConfig {
            consecutive_failures: 0,
            ..config()
        });
        // Alternating: 50% failures, but only trips once 20 calls are in.
        for i in 0..19 {
            b.record(i * MS, i % 2 == 0, FAST, 0);
        }
        assert_eq!(b.state(), BreakerState::Closed);
        b.record(19 * MS, false, FAST, 0);
        assert!(matches!(b.state(), BreakerState::Open { .. }));
    }

    #[test]
    fn slow_calls_trip() {
        let mut b = CircuitBreaker::new(BreakerConfig {
            consecutive_failures: 0,
            failure_ratio: 0.0,
            slow_ratio: 0.8,
            ..config()
        });
        for i in 0..20 {
            b.record(i * MS, true, Duration::from_secs(2), 0);
        }
        assert!(matches!(b.state(), BreakerState::Open { .. }));
    }

    #[test]
    fn lost_probes_do_not_wedge_half_open() {
        let mut b = CircuitBreaker::new(config());
        for _ in 0..5 {
            b.record(0, false, FAST, 0);
        }
        assert!(b.allow(1_000 * MS, 0));
        assert!(b.allow(1_000 * MS, 0));
        // Neither probe reports (their requests were cancelled).
        assert!(!b.allow(1_500 * MS, 0));
        assert!(b.allow(2_000 * MS, 0), "a fresh round of probes starts");
        b.record(2_001 * MS, true, FAST, 0);
        assert!(b.allow(2_001 * MS, 0));
        b.record(2_002 * MS, true, FAST, 0);
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn traffic_ramps_back_after_closing() {
        let mut b = CircuitBreaker::new(BreakerConfig {
            ramp: Duration::from_secs(10),
            ..config()
        });
        for _ in 0..5 {
            b.record(0, false, FAST, 0);
        }
        assert!(b.allow(1_000 * MS, 0));
        assert!(b.allow(1_000 * MS, 0));
        b.record(1_000 * MS, true, FAST, 0);
        b.record(1_000 * MS, true, FAST, 0);
        assert_eq!(b.state(), BreakerState::Closed);
        let admitted_at =
            |b: &mut CircuitBreaker, t: u64| (0..10_000u64).filter(|r| b.allow(t, *r)).count();
        assert_eq!(admitted_at(&mut b, 1_000 * MS), 1_000);
        assert_eq!(admitted_at(&mut b, 6_000 * MS), 5_500);
        assert_eq!(admitted_at(&mut b, 11_000 * MS), 10_000);
        assert!((b.admitted_share(20_000 * MS) - 1.0).abs() < 1e-9);
    }

    /// A naive restatement of the consecutive-failure breaker, kept as a
    /// history of events rather than counters: it opens when the failures
    /// recorded since it last closed (or opened) end in `n` failures in a
    /// row; open time doubles per trip since the last close, without jitter.
    struct Model {
        n: u32,
        probes: u32,
        base_ms: u64,
        max_ms: u64,
        /// Outcomes recorded while closed, since the last transition.
        closed_history: Vec<bool>,
        trips: u32,
        open_until: Option<u64>,
        /// (admitted, succeeded, started) while half-open.
        half_open: Option<(u32, u32, u64)>,
    }

    impl Model {
        fn allow(&mut self, now: u64) -> bool {
            if let Some(until) = self.open_until {
                if now < until {
                    return false;
                }
                self.open_until = None;
                self.half_open = Some((1, 0, now));
                return true;
            }
            match self.half_open {
                None => true,
                Some((a, s, since)) if a < self.probes => {
                    self.half_open = Some((a + 1, s, since));
                    true
                }
                Some((_, _, since)) if now - since >= self.base_ms => {
                    self.half_open = Some((1, 0, now));
                    true
                }
                Some(_) => false,
            }
        }

        fn record(&mut self, now: u64, ok: bool) {
            if self.open_until.is_some() {
                return;
            }
            if let Some((a, s, since)) = self.half_open {
                if !ok {
                    self.trip(now);
                } else if s + 1 >= self.probes {
                    self.half_open = None;
                    self.trips = 0;
                    self.closed_history.clear();
                } else {
                    self.half_open = Some((a, s + 1, since));
                }
                return;
            }
            self.closed_history.push(ok);
            let tail = self
                .closed_history
                .iter()
                .rev()
                .take_while(|ok| !**ok)
                .count();
            if tail >= self.n as usize {
                self.trip(now);
            }
        }

        fn trip(&mut self, now: u64) {
            self.trips += 1;
            let open = (self.base_ms << (self.trips - 1).min(20)).min(self.max_ms);
            self.open_until = Some(now + open);
            self.half_open = None;
            self.closed_history.clear();
        }
    }

    proptest! {
        /// With only consecutive failures configured (and no jitter), the
        /// breaker agrees with the naive model on every admission and state.
        #[test]
        fn consecutive_failures_match_a_naive_model(
            ops in prop::collection::vec((0u64..200, any::<bool>(), any::<bool>()), 1..300),
            n in 1u32..6,
            probes in 1u32..4,
        ) {
            let c = BreakerConfig {
                consecutive_failures: n,
                failure_ratio: 0.0,
                half_open_probes: probes,
                ..config()
            };
            let mut b = CircuitBreaker::new(c);
            let mut m = Model {
                n,
                probes,
                base_ms: 1_000,
                max_ms: 30_000,
                closed_history: Vec::new(),
                trips: 0,
                open_until: None,
                half_open: None,
            };
            let mut now_ms = 0;
            for (dt, call, ok) in ops {
                now_ms += dt;
                let now = now_ms * MS;
                if call {
                    let allowed = b.allow(now, 0);
                    prop_assert_eq!(allowed, m.allow(now_ms), "allow at {} ms", now_ms);
                    if allowed {
                        // random 0: no jitter, as in the model.
                        b.record(now, ok, FAST, 0);
                        m.record(now_ms, ok);
                    }
                }
                let open = matches!(b.state(), BreakerState::Open { until } if now < until);
                prop_assert_eq!(open, m.open_until.is_some_and(|u| now_ms < u));
            }
        }

        /// Whatever happens, an open breaker admits nothing before its time,
        /// a half-open one admits at most its probes, and open time stays
        /// within max_open.
        #[test]
        fn invariants_hold(ops in prop::collection::vec((0u64..5_000, 0u8..3, any::<u64>()), 1..400)) {
            let c = config();
            let mut b = CircuitBreaker::new(c);
            let mut ops = ops;
            ops.sort_by_key(|(t, _, _)| *t);
            for (t, op, random) in ops {
                let now = t * MS;
                let before = b.state();
                let allowed = b.allow(now, random);
                if let BreakerState::Open { until } = before {
                    prop_assert_eq!(allowed, now >= until);
                    prop_assert!(until <= now + c.max_open.as_nanos() as u64 + 5_000 * MS);
                }
                if let BreakerState::HalfOpen { admitted, .. } = b.state() {
                    prop_assert!(admitted <= c.half_open_probes);
                }
                if allowed && op > 0 {
                    b.record(now, op == 1, FAST, random);
                }
                if let BreakerState::Open { until } = b.state() {
                    prop_assert!(until <= now + c.max_open.as_nanos() as u64);
                }
            }
        }
    }
}
