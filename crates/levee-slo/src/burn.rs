//! Burn rates and error budgets, in integer arithmetic only.
//!
//! An objective `o` and its error budget `β = 1 − o` are parts per million
//! (99.9 % is `o = 999_000`, `β = 1_000`). Over a window with `b` bad
//! events of `n`:
//!
//! - the **burn rate** is `r = (b / n) / β`, kept as the exact fraction
//!   `b · 10⁶ / (n · β)`. At `r = 1` the budget lasts exactly the SLO
//!   period; at `r = 14.4` a 30-day budget lasts 50 hours.
//! - `r > f`, for a factor `f` kept in thousandths, is
//!   `b · 10⁹ > f · n · β`, compared in `u128` (at most 2^94 against 2^116,
//!   so it cannot overflow).
//!
//! Over the SLO period `P`, with `B` bad events of `N`:
//!
//! - the budget allows `β · N` bad events; the share of it left is
//!   `ρ = 1 − B / (β · N)`, negative once overspent, reported in ppm as
//!   `⌊10⁶ · (β · N − 10⁶ · B) / (β · N)⌋`.
//! - the **budget time** `β · P` is the downtime (every request failing)
//!   the budget is worth: 43 min 12 s for 99.9 % over 30 days. The time
//!   left is `β · P · ρ = β · P − P · B / N`, computed exactly and floored
//!   to the nanosecond.
//! - the **time to exhaustion** at the error rate `e = b / n` of a recent
//!   window is the time left divided by `e` (a second at error rate `e`
//!   spends `e` seconds of budget time), which equals `ρ · P / r`.
//!
//! Converting events into time assumes traffic keeps the period's average
//! rate, as every "minutes of downtime left" figure does.
//!
//! A window without events, or with fewer than a configured minimum, has
//! no burn rate: [`Burn::NoData`], never a NaN, and never above any factor,
//! so an idle service does not page. The same holds for [`Budget::NoData`].

use crate::buckets::Counts;
use std::cmp::Ordering;
use std::time::Duration;

const PPM: u64 = 1_000_000;

/// An objective: the share of events that must be good, in parts per
/// million. Always below 100 %, so the budget is never zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Objective {
    ppm: u32,
}

impl Objective {
    /// `ppm` parts per million (99.9 % is 999_000); `None` unless below
    /// 1_000_000, since a 100 % objective leaves no budget to burn.
    pub const fn from_ppm(ppm: u32) -> Option<Self> {
        if (ppm as u64) < PPM {
            Some(Self { ppm })
        } else {
            None
        }
    }

    /// The objective in parts per million.
    pub const fn ppm(self) -> u32 {
        self.ppm
    }

    /// The error budget `1 − objective` in parts per million (at least 1).
    pub const fn budget_ppm(self) -> u32 {
        PPM as u32 - self.ppm
    }
}

/// A burn-rate threshold, in thousandths (14.4 is 14_400).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Factor {
    milli: u32,
}

impl Factor {
    /// A burn rate of 1: the budget lasts exactly the SLO period.
    pub const ONE: Factor = Factor { milli: 1_000 };

    /// `milli` thousandths.
    pub const fn from_milli(milli: u32) -> Self {
        Self { milli }
    }

    /// The factor in thousandths.
    pub const fn milli(self) -> u32 {
        self.milli
    }

    /// The factor at which `share_ppm` of a `period`'s budget is spent in
    /// `window`: `share × period / window`, floored to the thousandth. This
    /// is where the SRE Workbook's numbers come from: 2 % of 30 days in 1 h
    /// is 14.4; 5 % in 6 h is 6; 10 % in 1 d is 3; 10 % in 3 d is 1.
    pub fn from_budget_share(share_ppm: u32, period: Duration, window: Duration) -> Self {
        let window = window.as_nanos().max(1);
        let milli = u128::from(share_ppm) * period.as_nanos() / (window * 1_000);
        Self {
            milli: milli.min(u128::from(u32::MAX)) as u32,
        }
    }
}

/// The burn rate of a window, or the lack of one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Burn {
    /// No events, or fewer than the minimum that makes a rate meaningful.
    NoData,
    /// A measured rate.
    Rate(BurnRate),
}

impl Burn {
    /// The burn rate of `counts` against `objective`; [`Burn::NoData`] when
    /// there are no events or fewer than `min_events`.
    pub fn new(counts: Counts, objective: Objective, min_events: u64) -> Self {
        if counts.total == 0 || counts.total < min_events {
            return Burn::NoData;
        }
        Burn::Rate(BurnRate {
            bad: counts.bad(),
            total: counts.total,
            budget_ppm: objective.budget_ppm(),
        })
    }

    /// Whether the rate is strictly above `factor`; never with no data.
    pub fn exceeds(&self, factor: Factor) -> bool {
        match self {
            Burn::NoData => false,
            Burn::Rate(rate) => rate.cmp_factor(factor) == Ordering::Greater,
        }
    }
}

/// A measured burn rate, held as the exact fraction `bad · 10⁶ / (total · budget_ppm)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BurnRate {
    bad: u64,
    total: u64,
    budget_ppm: u32,
}

impl BurnRate {
    /// Bad events in the window.
    pub fn bad(&self) -> u64 {
        self.bad
    }

    /// All events in the window (at least 1).
    pub fn total(&self) -> u64 {
        self.total
    }

    /// The exact comparison of the rate with `factor`.
    pub fn cmp_factor(&self, factor: Factor) -> Ordering {
        let rate = u128::from(self.bad) * u128::from(PPM) * 1_000;
        let threshold =
            u128::from(factor.milli) * u128::from(self.total) * u128::from(self.budget_ppm);
        rate.cmp(&threshold)
    }

    /// The rate in thousandths, floored (14.4 reads 14_400).
    pub fn milli(&self) -> u64 {
        let milli = u128::from(self.bad) * u128::from(PPM) * 1_000
            / (u128::from(self.total) * u128::from(self.budget_ppm));
        milli.min(u128::from(u64::MAX)) as u64
    }

    /// The rate as a float, for display only; decisions use
    /// [`BurnRate::cmp_factor`].
    pub fn to_f64(&self) -> f64 {
        self.bad as f64 * PPM as f64 / (self.total as f64 * f64::from(self.budget_ppm))
    }
}

/// The error budget over an SLO period, or the lack of one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Budget {
    /// No events in the period, or fewer than the minimum.
    NoData,
    /// A measured budget.
    Known(ErrorBudget),
}

impl Budget {
    /// The budget left given the counts over the whole SLO period;
    /// [`Budget::NoData`] when there are no events or fewer than `min_events`.
    pub fn new(period_counts: Counts, objective: Objective, min_events: u64) -> Self {
        if period_counts.total == 0 || period_counts.total < min_events {
            return Budget::NoData;
        }
        Budget::Known(ErrorBudget {
            bad: period_counts.bad(),
            total: period_counts.total,
            budget_ppm: objective.budget_ppm(),
        })
    }
}

/// What the budget says after `bad` of `total` events in the SLO period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorBudget {
    bad: u64,
    total: u64,
    budget_ppm: u32,
}

/// When the budget runs out at the current error rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exhaustion {
    /// Nothing is left.
    Exhausted,
    /// The current window has no bad events: it never runs out at this rate.
    Never,
    /// It runs out after this long.
    After(Duration),
}

impl ErrorBudget {
    /// Bad events in the period.
    pub fn bad(&self) -> u64 {
        self.bad
    }

    /// All events in the period (at least 1).
    pub fn total(&self) -> u64 {
        self.total
    }

    /// The share of the budget left, in parts per million: 1_000_000 when
    /// untouched, 0 when spent, negative when overspent. Floored.
    pub fn remaining_ppm(&self) -> i64 {
        let allowed = i128::from(self.budget_ppm) * i128::from(self.total);
        let left = allowed - i128::from(self.bad) * i128::from(PPM);
        let ppm = (left * i128::from(PPM)).div_euclid(allowed);
        ppm.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
    }

    /// The downtime the whole budget is worth over `period`: `β · P`,
    /// floored to the nanosecond.
    pub fn budget_time(&self, period: Duration) -> Duration {
        let ns = period.as_nanos() * u128::from(self.budget_ppm) / u128::from(PPM);
        Duration::from_nanos(ns.min(u128::from(u64::MAX)) as u64)
    }

    /// The downtime left over `period`, in nanoseconds: `β · P − P · B / N`,
    /// negative when overspent. Exact, floored to the nanosecond.
    pub fn remaining_time_ns(&self, period: Duration) -> i64 {
        let period = period.as_nanos().min(u128::from(u64::MAX));
        // Both terms fit in u128 (2^84 and 2^128); their difference is
        // floored from the whole parts and a comparison of the remainders,
        // so no common denominator (2^148) is ever formed.
        let budget = period * u128::from(self.budget_ppm);
        let (budget_whole, budget_rest) = (budget / u128::from(PPM), budget % u128::from(PPM));
        let spent = period * u128::from(self.bad);
        let (spent_whole, spent_rest) = (
            spent / u128::from(self.total),
            spent % u128::from(self.total),
        );
        let borrow = budget_rest * u128::from(self.total) < spent_rest * u128::from(PPM);
        let ns = budget_whole as i128 - spent_whole as i128 - i128::from(borrow);
        ns.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
    }

    /// How long the budget left over `period` lasts at the error rate of
    /// `current` (a recent window): the time left divided by that rate,
    /// floored to the nanosecond.
    pub fn time_to_exhaustion(&self, period: Duration, current: &BurnRate) -> Exhaustion {
        let left = self.remaining_time_ns(period);
        if left <= 0 {
            return Exhaustion::Exhausted;
        }
        if current.bad == 0 {
            return Exhaustion::Never;
        }
        let ns = left as u128 * u128::from(current.total) / u128::from(current.bad);
        Exhaustion::After(Duration::from_nanos(ns.min(u128::from(u64::MAX)) as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const DAY: u64 = 86_400;

    fn three_nines() -> Objective {
        Objective::from_ppm(999_000).unwrap()
    }

    fn rate(bad: u64, total: u64, objective: Objective) -> BurnRate {
        match Burn::new(Counts::new(total - bad, total), objective, 0) {
            Burn::Rate(rate) => rate,
            Burn::NoData => panic!("no data"),
        }
    }

    #[test]
    fn objectives_leave_a_budget() {
        assert_eq!(three_nines().budget_ppm(), 1_000);
        assert_eq!(Objective::from_ppm(999_999).unwrap().budget_ppm(), 1);
        assert_eq!(Objective::from_ppm(1_000_000), None);
        assert_eq!(Objective::from_ppm(0).unwrap().budget_ppm(), 1_000_000);
    }

    #[test]
    fn burn_rate_is_the_error_rate_over_the_budget() {
        // 1.44 % errors against a 0.1 % budget burns at exactly 14.4.
        let r = rate(144, 10_000, three_nines());
        assert_eq!(r.milli(), 14_400);
        assert_eq!(r.cmp_factor(Factor::from_milli(14_400)), Ordering::Equal);
        assert!(!Burn::Rate(r).exceeds(Factor::from_milli(14_400)));
        assert!(Burn::Rate(r).exceeds(Factor::from_milli(14_399)));
        assert!((r.to_f64() - 14.4).abs() < 1e-9);
        // One more bad event tips it over.
        assert!(Burn::Rate(rate(145, 10_000, three_nines())).exceeds(Factor::from_milli(14_400)));
    }

    #[test]
    fn no_data_is_its_own_state() {
        let o = three_nines();
        assert_eq!(Burn::new(Counts::default(), o, 0), Burn::NoData);
        assert_eq!(Burn::new(Counts::new(0, 9), o, 10), Burn::NoData);
        assert!(!Burn::NoData.exceeds(Factor::from_milli(0)));
        assert!(matches!(
            Burn::new(Counts::new(0, 10), o, 10),
            Burn::Rate(_)
        ));
        assert_eq!(Budget::new(Counts::default(), o, 0), Budget::NoData);
    }

    #[test]
    fn workbook_factors_come_from_budget_shares() {
        let month = Duration::from_secs(30 * DAY);
        let h = |n: u64| Duration::from_secs(n * 3600);
        assert_eq!(
            Factor::from_budget_share(20_000, month, h(1)).milli(),
            14_400
        );
        assert_eq!(
            Factor::from_budget_share(50_000, month, h(6)).milli(),
            6_000
        );
        assert_eq!(
            Factor::from_budget_share(100_000, month, h(24)).milli(),
            3_000
        );
        assert_eq!(
            Factor::from_budget_share(100_000, month, h(72)).milli(),
            1_000
        );
        // Sloth's 28-day variant: 2 % of 28 days in 1 h is 13.44.
        let four_weeks = Duration::from_secs(28 * DAY);
        assert_eq!(
            Factor::from_budget_share(20_000, four_weeks, h(1)).milli(),
            13_440
        );
    }

    #[test]
    fn budget_left_as_a_share_and_as_downtime() {
        let month = Duration::from_secs(30 * DAY);
        // 1,000,000 requests at 99.9 % allow 1,000 bad ones; 250 were bad.
        let Budget::Known(b) = Budget::new(Counts::new(999_750, 1_000_000), three_nines(), 0)
        else {
            panic!("no data")
        };
        assert_eq!(b.remaining_ppm(), 750_000);
        // The budget is worth 43 min 12 s of downtime; three quarters of
        // it is 32 min 24 s.
        assert_eq!(b.budget_time(month), Duration::from_secs(43 * 60 + 12));
        assert_eq!(b.remaining_time_ns(month), (32 * 60 + 24) * 1_000_000_000);
        // At 1 % errors (burn 10), 32 min 24 s of downtime lasts 54 h.
        let current = rate(1, 100, three_nines());
        assert_eq!(
            b.time_to_exhaustion(month, &current),
            Exhaustion::After(Duration::from_secs(54 * 3600))
        );
        assert_eq!(
            b.time_to_exhaustion(month, &rate(0, 100, three_nines())),
            Exhaustion::Never
        );

        // Overspent: 1,500 bad of 1,000,000.
        let Budget::Known(over) = Budget::new(Counts::new(998_500, 1_000_000), three_nines(), 0)
        else {
            panic!("no data")
        };
        assert_eq!(over.remaining_ppm(), -500_000);
        assert_eq!(
            over.remaining_time_ns(month),
            -(21 * 60 + 36) * 1_000_000_000
        );
        assert_eq!(
            over.time_to_exhaustion(month, &current),
            Exhaustion::Exhausted
        );
    }

    #[test]
    fn huge_counts_do_not_overflow() {
        let o = Objective::from_ppm(1).unwrap();
        let r = rate(u64::MAX, u64::MAX, o);
        assert_eq!(r.cmp_factor(Factor::from_milli(u32::MAX)), Ordering::Less);
        let Budget::Known(b) = Budget::new(Counts::new(0, u64::MAX), o, 0) else {
            panic!("no data")
        };
        let period = Duration::from_nanos(u64::MAX);
        // Every event bad against a budget of 99.9999 %: ρ = 1 − 1/0.999999,
        // just below −1 ppm, floored to −2.
        assert_eq!(b.remaining_ppm(), -2);
        assert!(b.remaining_time_ns(period) < 0);
    }

    proptest! {
        /// Against a naive model that keeps every event: the comparison
        /// with a factor agrees with counting the bad events and checking
        /// them against the allowed count `⌊f · β · n⌋` (bad is an integer,
        /// so `bad > x` is `bad > ⌊x⌋`).
        #[test]
        fn exceeds_matches_counting_every_event(
            events in prop::collection::vec(any::<bool>(), 0..400),
            ppm in 0u32..1_000_000,
            milli in 0u32..100_000,
            min_events in 0u64..50,
        ) {
            let o = Objective::from_ppm(ppm).unwrap();
            let good = events.iter().filter(|g| **g).count() as u64;
            let total = events.len() as u64;
            let burn = Burn::new(Counts::new(good, total), o, min_events);
            let bad = total - good;
            let allowed = u128::from(milli) * u128::from(o.budget_ppm()) * u128::from(total)
                / 1_000_000_000;
            let expected = total > 0 && total >= min_events && u128::from(bad) > allowed;
            prop_assert_eq!(burn.exceeds(Factor::from_milli(milli)), expected);
        }

        /// The exact remaining time agrees with the plain formula wherever
        /// the plain formula fits in i128.
        #[test]
        fn remaining_time_matches_the_plain_formula(
            total in 1u64..1_000_000_000,
            bad_share in 0u64..=1_000,
            ppm in 0u32..1_000_000,
            period_s in 1u64..(400 * DAY),
        ) {
            let bad = total / 1_000 * bad_share;
            let o = Objective::from_ppm(ppm).unwrap();
            let Budget::Known(b) = Budget::new(Counts::new(total - bad, total), o, 0) else {
                unreachable!()
            };
            let period = i128::from(period_s) * 1_000_000_000;
            let beta = i128::from(o.budget_ppm());
            let numerator = period * (beta * i128::from(total) - i128::from(bad) * 1_000_000);
            let expected = numerator.div_euclid(1_000_000 * i128::from(total));
            prop_assert_eq!(i128::from(b.remaining_time_ns(Duration::from_secs(period_s))), expected);
            // And the share: ρ ≥ 0 exactly when time is left.
            prop_assert_eq!(b.remaining_ppm() >= 0, expected >= 0);
        }
    }
}
