//! Time-slice budgeting (OpenSLO's `Timeslices` and `RatioTimeslices`):
//! time is cut into slices of a fixed width, each slice is judged once from
//! the event buckets when it ends, and the objective, budget and burn rates
//! count slices instead of events.
//!
//! **How a slice counts.** A judged slice becomes one "event" of a second
//! [`Buckets`], so every window sum, burn rate, budget and alert of the
//! other modules reads slices unchanged:
//!
//! - [`Method::Timeslices`]: a slice is good (`1 of 1`) when the share of
//!   good events in it is at least the slice target, exactly
//!   (`good · 10⁶ ≥ target_ppm · total`), and bad (`0 of 1`) otherwise. A
//!   window's SLI is good slices over judged slices, its burn rate the bad
//!   slices' share over `1 − objective`.
//! - [`Method::RatioTimeslices`]: a slice counts its good-event ratio in
//!   parts per million, floored (`⌊good · 10⁶ / total⌋ of 10⁶`). A
//!   window's SLI is the average of its slices' ratios (each slice weighs
//!   the same, however busy), its burn rate the average shortfall over
//!   `1 − objective`.
//!
//! **A slice without events is not judged** ("no data"): it is neither
//! good nor bad, adds nothing to the windows and does not move the budget,
//! so a quiet night neither earns nor spends budget. A window holding no
//! judged slice has no burn rate, as a window without events has none.
//!
//! Slices start at multiples of their width since the epoch, and their
//! width is a whole number of fine buckets, so a slice is the exact sum of
//! its buckets. Time is passed in; nothing here reads a clock.

use crate::buckets::{Buckets, Counts, Layout, LayoutError};
use crate::burn::Objective;
use crate::nanos;
use levee_core::Nanos;
use std::time::Duration;

/// What one ratio slice counts as its total: parts per million.
pub const RATIO_SCALE: u64 = 1_000_000;

/// How a slice is judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// Good or bad against a target share of good events, in parts per
    /// million (up to 1,000,000: every event must be good).
    Timeslices {
        /// The share of good events a good slice needs.
        target_ppm: u32,
    },
    /// The slice's good-event ratio, averaged over slices.
    RatioTimeslices,
}

/// The verdict on one slice from its events: `None` when it had none (no
/// data), else what it adds to the slice buckets (see the module docs).
pub fn judge(events: Counts, method: Method) -> Option<Counts> {
    if events.total == 0 {
        return None;
    }
    let good = events.good.min(events.total);
    Some(match method {
        Method::Timeslices { target_ppm } => {
            let ok = u128::from(good) * u128::from(RATIO_SCALE)
                >= u128::from(target_ppm) * u128::from(events.total);
            Counts::new(u64::from(ok), 1)
        }
        Method::RatioTimeslices => {
            let ppm = u128::from(good) * u128::from(RATIO_SCALE) / u128::from(events.total);
            Counts::new(ppm as u64, RATIO_SCALE)
        }
    })
}

/// The bad slices a period allows when every slice in it is judged:
/// `⌊(1 − objective) · P / width⌋`. (With slices not judged, the budget
/// follows the judged ones: see [`crate::burn::Budget`].)
pub fn allowed_bad_slices(objective: Objective, period: Duration, width: Duration) -> u64 {
    let width = nanos(width).max(1);
    let slices = u128::from(nanos(period) / width);
    (slices * u128::from(objective.budget_ppm()) / u128::from(RATIO_SCALE)) as u64
}

/// The slices of a window, for display: how many were judged and how
/// many were bad. For ratio slices, `bad` is the slices' shortfall counted
/// in whole slices, floored (two slices at 50 % are one bad slice), which
/// is what the budget spends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SliceCounts {
    /// Slices judged (slices without events are not).
    pub judged: u64,
    /// Slices judged bad (or their worth, for ratio slices).
    pub bad: u64,
}

/// The judged slices of one objective, fed from its event buckets.
#[derive(Debug, Clone)]
pub struct Slices {
    buckets: Buckets,
    width_ns: u64,
    method: Method,
    /// The end of the last slice judged: the next one starts here.
    judged_until: Option<Nanos>,
}

impl Slices {
    /// The slice buckets' layout beside an event layout: slices as fine
    /// buckets, kept as long as the event layout keeps fine buckets, and
    /// the same coarse buckets (the period's).
    pub fn layout(width: Duration, events: Layout) -> Layout {
        Layout {
            fine: width,
            ..events
        }
    }

    /// Empty slices of `width` judged by `method`, shaped like `events`.
    pub fn new(width: Duration, method: Method, events: Layout) -> Result<Self, LayoutError> {
        Ok(Self {
            buckets: Buckets::new(Self::layout(width, events))?,
            width_ns: nanos(width),
            method,
            judged_until: None,
        })
    }

    /// The judged slices as buckets of slice "events": what windows, burn
    /// rates, budgets and alerts read.
    pub fn buckets(&self) -> &Buckets {
        &self.buckets
    }

    /// How slices are judged.
    pub fn method(&self) -> Method {
        self.method
    }

    /// The slice width in nanoseconds.
    pub fn width_ns(&self) -> u64 {
        self.width_ns
    }

    /// Puts back a persisted slice bucket (as [`Buckets::restore`]); the
    /// next slice judged follows the newest one restored.
    pub fn restore(&mut self, coarse: bool, start: Nanos, counts: Counts) -> bool {
        let kept = self.buckets.restore(coarse, start, counts);
        if !coarse && kept {
            let next = start + self.width_ns;
            self.judged_until = Some(self.judged_until.map_or(next, |j| j.max(next)));
        }
        kept
    }

    /// Judges every slice that ended at or before `end` and was not judged
    /// yet, from `events` (the same objective's event buckets, fed up to
    /// `end`), and returns them oldest first as `(start, verdict)`.
    ///
    /// The first call (with nothing restored) judges only the slice that
    /// ended last, so a new series does not judge the empty past; later
    /// calls catch up on every slice since, as far back as `events` keeps
    /// fine buckets. A slice is judged once: an event added to its buckets
    /// afterwards does not change its verdict.
    pub fn catch_up(&mut self, events: &Buckets, end: Nanos) -> Vec<(Nanos, Option<Counts>)> {
        let w = self.width_ns;
        let last_end = end - end % w;
        let mut from = self
            .judged_until
            .unwrap_or_else(|| last_end.saturating_sub(w));
        // Older slices than the fine buckets keep cannot be judged exactly.
        from = from.max(events.fine_start().next_multiple_of(w));
        let mut out = Vec::new();
        while from + w <= last_end {
            let verdict = judge(
                events.counts(from + w, Duration::from_nanos(w)),
                self.method,
            );
            if let Some(c) = verdict {
                self.buckets.add(from, c.good, c.total);
            }
            out.push((from, verdict));
            from += w;
        }
        if self.judged_until.is_none_or(|j| j < last_end) {
            self.judged_until = Some(last_end.max(self.judged_until.unwrap_or(0)));
        }
        out
    }

    /// The slices judged in the window `[end − len, end)`.
    pub fn counts(&self, end: Nanos, len: Duration) -> SliceCounts {
        let c = self.buckets.counts(end, len);
        match self.method {
            Method::Timeslices { .. } => SliceCounts {
                judged: c.total,
                bad: c.bad(),
            },
            Method::RatioTimeslices => SliceCounts {
                judged: c.total / RATIO_SCALE,
                bad: c.bad() / RATIO_SCALE,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const S: u64 = 1_000_000_000;

    fn layout() -> Layout {
        Layout {
            fine: Duration::from_secs(10),
            fine_span: Duration::from_secs(3600),
            coarse: Duration::from_secs(3600),
            coarse_span: Duration::from_secs(4 * 3600),
        }
    }

    #[test]
    fn a_slice_meets_its_target_exactly() {
        let m = Method::Timeslices {
            target_ppm: 950_000,
        };
        assert_eq!(judge(Counts::new(95, 100), m), Some(Counts::new(1, 1)));
        assert_eq!(judge(Counts::new(94, 100), m), Some(Counts::new(0, 1)));
        assert_eq!(judge(Counts::new(0, 0), m), None, "no data");
        let all = Method::Timeslices {
            target_ppm: 1_000_000,
        };
        assert_eq!(judge(Counts::new(999, 1000), all), Some(Counts::new(0, 1)));
        assert_eq!(judge(Counts::new(7, 5), all), Some(Counts::new(1, 1)));
        assert_eq!(
            judge(Counts::new(2, 3), Method::RatioTimeslices),
            Some(Counts::new(666_666, RATIO_SCALE))
        );
    }

    #[test]
    fn the_period_allows_its_share_of_slices() {
        let o = Objective::from_ppm(999_000).unwrap();
        let month = Duration::from_secs(30 * 86_400);
        // 43,200 minutes, 0.1 % of them.
        assert_eq!(allowed_bad_slices(o, month, Duration::from_secs(60)), 43);
        let o = Objective::from_ppm(990_000).unwrap();
        assert_eq!(allowed_bad_slices(o, month, Duration::from_secs(60)), 432);
    }

    /// Slices are events to the burn and budget math: a window's burn rate
    /// is its bad-slice share over `1 − objective`, the budget counts bad
    /// slices against the judged ones, and the time left runs out at the
    /// current bad-slice rate.
    #[test]
    fn burn_and_budget_read_slices() {
        use crate::burn::{Budget, Burn, Exhaustion};
        let o = Objective::from_ppm(990_000).unwrap();
        // A 5-minute window of one-minute slices, two of them bad: 40 %
        // of slices bad against a 1 % budget burns at 40.
        let Burn::Rate(rate) = Burn::new(Counts::new(3, 5), o, 1) else {
            panic!("five judged slices are data");
        };
        assert_eq!(rate.milli(), 40_000);
        // 30 days, 43,200 minutes all judged, 108 bad: a quarter of the
        // 432 allowed, so three quarters left: 324 minutes of full outage.
        let month = Duration::from_secs(30 * 86_400);
        let Budget::Known(b) = Budget::new(Counts::new(43_200 - 108, 43_200), o, 0) else {
            panic!("known");
        };
        assert_eq!(b.remaining_ppm(), 750_000);
        assert_eq!(b.remaining_time_ns(month), 324 * 60 * 1_000_000_000);
        assert_eq!(allowed_bad_slices(o, month, Duration::from_secs(60)), 432);
        // At 40 % bad slices the 324 minutes last 810 minutes.
        assert_eq!(
            b.time_to_exhaustion(month, &rate),
            Exhaustion::After(Duration::from_secs(810 * 60))
        );
    }

    #[test]
    fn slices_are_judged_once_as_they_end() {
        let mut events = Buckets::new(layout()).unwrap();
        let method = Method::Timeslices {
            target_ppm: 900_000,
        };
        let mut slices = Slices::new(Duration::from_secs(60), method, layout()).unwrap();
        let t0 = 1_000 * 3600 * S;
        // First call: only the slice that just ended.
        assert_eq!(
            slices.catch_up(&events, t0 + 30 * S),
            vec![(t0 - 60 * S, None)]
        );
        events.add(t0, 10, 10);
        events.add(t0 + 50 * S, 0, 5);
        assert!(slices.catch_up(&events, t0 + 50 * S).is_empty(), "not over");
        events.add(t0 + 60 * S, 9, 10);
        let judged = slices.catch_up(&events, t0 + 180 * S);
        assert_eq!(
            judged,
            vec![
                (t0, Some(Counts::new(0, 1))),
                (t0 + 60 * S, Some(Counts::new(1, 1))),
                (t0 + 120 * S, None),
            ]
        );
        assert_eq!(
            slices.counts(t0 + 180 * S, Duration::from_secs(600)),
            SliceCounts { judged: 2, bad: 1 }
        );
        // Events arriving late into a judged slice change nothing.
        events.add(t0 + 10 * S, 1000, 1000);
        assert!(slices.catch_up(&events, t0 + 180 * S).is_empty());
        assert_eq!(
            slices
                .buckets()
                .counts(t0 + 180 * S, Duration::from_secs(600)),
            Counts::new(1, 2)
        );
    }

    #[test]
    fn a_restored_series_resumes_after_its_newest_slice() {
        let events = Buckets::new(layout()).unwrap();
        let mut slices =
            Slices::new(Duration::from_secs(60), Method::RatioTimeslices, layout()).unwrap();
        let t0 = 1_000 * 3600 * S;
        assert!(slices.restore(false, t0, Counts::new(500_000, RATIO_SCALE)));
        let judged = slices.catch_up(&events, t0 + 180 * S);
        assert_eq!(
            judged.iter().map(|j| j.0).collect::<Vec<_>>(),
            vec![t0 + 60 * S, t0 + 120 * S]
        );
        assert_eq!(
            slices.counts(t0 + 180 * S, Duration::from_secs(180)),
            SliceCounts { judged: 1, bad: 0 }
        );
    }

    /// Per-bucket (good, total) events over a run of buckets.
    fn stream() -> impl Strategy<Value = Vec<(u64, u64)>> {
        proptest::collection::vec(
            prop_oneof![
                Just((0u64, 0u64)),
                (0u64..20).prop_map(|t| (t, t)),
                (0u64..20, 0u64..20).prop_map(|(b, g)| (g, g + b)),
            ],
            1..300,
        )
    }

    proptest! {
        /// Fed bucket by bucket with catch-ups at arbitrary ticks, the
        /// slices counted equal a naive recount of each slice's events.
        #[test]
        fn counts_match_a_naive_recount(
            events in stream(),
            per_slice in proptest::sample::select(vec![1u64, 2, 3, 4, 6, 9, 12]),
            target_ppm in 1u32..=1_000_000,
            ticks in proptest::collection::vec(1u64..20, 1..50),
        ) {
            let method = Method::Timeslices { target_ppm };
            let w = per_slice * 10 * S;
            let t0 = 1_000 * 3600 * S;
            let mut b = Buckets::new(layout()).unwrap();
            let mut slices = Slices::new(Duration::from_nanos(w), method, layout()).unwrap();
            slices.catch_up(&b, t0);
            let mut tick = ticks.iter().cycle();
            let mut next = *tick.next().unwrap();
            for (i, &(good, total)) in events.iter().enumerate() {
                b.add(t0 + i as u64 * 10 * S, good, total);
                next -= 1;
                if next == 0 {
                    slices.catch_up(&b, t0 + (i as u64 + 1) * 10 * S);
                    next = *tick.next().unwrap();
                }
            }
            let end = t0 + events.len() as u64 * 10 * S;
            slices.catch_up(&b, end);
            // The naive model: whole slices only, from the per-bucket list.
            let (mut good, mut bad) = (0, 0);
            for slice in events.chunks(per_slice as usize) {
                if slice.len() < per_slice as usize {
                    break;
                }
                let (g, t) = slice.iter().fold((0, 0), |a, e| (a.0 + e.0, a.1 + e.1));
                if t == 0 {
                    continue;
                }
                if g as u128 * 1_000_000 >= target_ppm as u128 * t as u128 { good += 1 } else { bad += 1 }
            }
            let got = slices.counts(end, Duration::from_secs(3600));
            prop_assert_eq!(got, SliceCounts { judged: good + bad, bad });
        }

        /// A stricter slice target never makes a slice good.
        #[test]
        fn a_stricter_target_judges_no_more_slices_good(
            good in 0u64..1000, bad in 0u64..1000, a in 1u32..=1_000_000, b in 1u32..=1_000_000,
        ) {
            let (lo, hi) = (a.min(b), a.max(b));
            let c = Counts::new(good, good + bad);
            let at = |t| judge(c, Method::Timeslices { target_ppm: t }).map(|c| c.good);
            prop_assert!(at(hi) <= at(lo));
            // A ratio slice is good to the millionth, and never above its
            // events' ratio.
            if let Some(r) = judge(c, Method::RatioTimeslices) {
                prop_assert!(r.good as u128 * (good + bad) as u128 <= good as u128 * 1_000_000);
                prop_assert!((r.good + 1) as u128 * (good + bad) as u128 > good as u128 * 1_000_000);
            }
        }
    }
}
