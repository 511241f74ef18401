//! Slow start, as in Envoy: an endpoint returning to rotation (newly added,
//! or back from ejection) starts at a fraction of its weight and ramps up to
//! the full weight over a window, so a cold cache or JIT is not handed a full
//! share at once. The ramp is `(elapsed / window)^(1 / aggression)`, never
//! below a floor. Plain struct: the caller keeps when each endpoint returned
//! and passes the time in.

use levee_core::Nanos;
use std::time::Duration;

/// The ramp's shape.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SlowStart {
    /// Time from return to full weight.
    pub window: Duration,
    /// 1.0 ramps linearly; above 1 the weight rises fast then levels off,
    /// below 1 it stays low longer. Not a positive finite number: linear.
    pub aggression: f64,
    /// The floor, in percent of the full weight (Envoy's default is 10).
    pub min_weight_percent: u32,
}

impl SlowStart {
    /// The share of its weight an endpoint that returned at `since` gets at
    /// `now`: in `[min_weight_percent / 100, 1]`, and 1 once the window has
    /// passed.
    pub fn factor(&self, since: Nanos, now: Nanos) -> f64 {
        let elapsed = now.saturating_sub(since);
        let window = self.window_ns();
        if elapsed >= window {
            return 1.0;
        }
        let exponent = if self.aggression.is_finite() && self.aggression > 0.0 {
            1.0 / self.aggression
        } else {
            1.0
        };
        let ramp = (elapsed as f64 / window as f64).powf(exponent);
        let floor = f64::from(self.min_weight_percent.min(100)) / 100.0;
        ramp.max(floor).clamp(0.0, 1.0)
    }

    /// `weight` scaled by [`Self::factor`], rounded, and never 0 for a
    /// non-zero weight (a weight of 0 would take the endpoint out of
    /// rotation, which is not what a ramp means).
    pub fn ramped_weight(&self, weight: u32, since: Nanos, now: Nanos) -> u32 {
        if weight == 0 {
            return 0;
        }
        let scaled = (f64::from(weight) * self.factor(since, now)).round() as u32;
        scaled.clamp(1, weight)
    }

    /// When the ramp of an endpoint that returned at `since` is over. Weights
    /// baked into a balancer must be rebuilt now and then until this time.
    pub fn ends_at(&self, since: Nanos) -> Nanos {
        since.saturating_add(self.window_ns())
    }

    fn window_ns(&self) -> Nanos {
        self.window.as_nanos().min(u128::from(u64::MAX)) as Nanos
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const S: u64 = 1_000_000_000;

    fn ramp(aggression: f64, min_weight_percent: u32) -> SlowStart {
        SlowStart {
            window: Duration::from_secs(60),
            aggression,
            min_weight_percent,
        }
    }

    #[test]
    fn linear_ramp_with_floor() {
        let r = ramp(1.0, 10);
        assert_eq!(r.factor(100 * S, 100 * S), 0.1);
        assert_eq!(r.factor(100 * S, 103 * S), 0.1);
        assert!((r.factor(100 * S, 130 * S) - 0.5).abs() < 1e-12);
        assert_eq!(r.factor(100 * S, 160 * S), 1.0);
        assert_eq!(r.factor(100 * S, 999 * S), 1.0);
        assert_eq!(r.ends_at(100 * S), 160 * S);
        // A clock read before the return counts as no time elapsed.
        assert_eq!(r.factor(100 * S, 50 * S), 0.1);
    }

    #[test]
    fn aggression_bends_the_curve() {
        // Half way through: 0.5^(1/2) above linear, 0.5^2 below.
        assert!((ramp(2.0, 0).factor(0, 30 * S) - 0.5f64.sqrt()).abs() < 1e-12);
        assert!((ramp(0.5, 0).factor(0, 30 * S) - 0.25).abs() < 1e-12);
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert!((ramp(bad, 0).factor(0, 30 * S) - 0.5).abs() < 1e-12);
        }
    }

    #[test]
    fn weights_never_drop_to_zero() {
        let r = ramp(1.0, 0);
        assert_eq!(r.ramped_weight(1, 0, 0), 1);
        assert_eq!(r.ramped_weight(0, 0, 0), 0);
        assert_eq!(r.ramped_weight(100, 0, 15 * S), 25);
        assert_eq!(r.ramped_weight(100, 0, 60 * S), 100);
        assert_eq!(ramp(1.0, 250).ramped_weight(7, 0, 0), 7);
        let none = SlowStart {
            window: Duration::ZERO,
            ..r
        };
        assert_eq!(none.factor(5, 5), 1.0);
    }

    proptest! {
        /// The factor and the weight never fall as time passes, stay in
        /// range, and reach full weight when the window ends.
        #[test]
        fn ramp_is_monotone(window_s in 0u64..600, aggression in 0.1f64..5.0, floor in 0u32..120, weight in 0u32..10_000, since in 0u64..1_000_000, a in 0u64..700_000, b in 0u64..700_000) {
            let r = SlowStart { window: Duration::from_secs(window_s), aggression, min_weight_percent: floor };
            // Milliseconds, as nanoseconds.
            let ms = |x: u64| x * S / 1000;
            let (start, t1, t2) = (ms(since), ms(since + a.min(b)), ms(since + a.max(b)));
            let (f1, f2) = (r.factor(start, t1), r.factor(start, t2));
            prop_assert!((0.0..=1.0).contains(&f1) && f1 <= f2);
            prop_assert!(f1 >= f64::from(floor.min(100)) / 100.0);
            let (w1, w2) = (r.ramped_weight(weight, start, t1), r.ramped_weight(weight, start, t2));
            prop_assert!(w1 <= w2 && w2 <= weight);
            prop_assert_eq!(w1 == 0, weight == 0);
            let end = r.ends_at(start);
            prop_assert_eq!(r.factor(start, end), 1.0);
            prop_assert_eq!(r.ramped_weight(weight, start, end), weight);
        }
    }
}
