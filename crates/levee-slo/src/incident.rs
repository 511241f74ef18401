//! Incidents rebuilt from alert transitions and the bucket history, and the
//! MTTD and MTTR distributions over many of them.
//!
//! An incident is one firing of an alert. Its times come from the
//! *excursion burn*: the burn rate over a short window `w` (default 5 min)
//! ending at each end `τ` of a fine bucket (of width `step`), and the same
//! over the one bucket ending at `τ` (the *bucket burn*).
//!
//! - **detect**: when the alert fired (its `Firing` transition).
//! - **start**: the excursion is the run of bucket ends at which the
//!   excursion burn is above 1 that ends last at or within one window
//!   before detection. Its first window `[τ₀ − w, τ₀)` was the first to burn;
//!   start is the start of the first bucket in it whose own burn is above 1
//!   (one must be, or the window could not be). A step from no errors to
//!   any error rate above the budget thus starts exactly where the step
//!   is. The search goes back no further than the fine buckets kept
//!   ([`crate::Buckets::fine_start`]); a start cut there is marked
//!   `start_clipped`.
//! - **recover**: the run ends at the first bucket end `τ₁` where the
//!   excursion burn is no longer above 1 (no data counts as not burning).
//!   Recovery is the end of the last bucket, within the last burning window
//!   `[τ₁ − step − w, τ₁ − step)`, whose own burn is above 1. A step back
//!   to no errors recovers exactly where that step is, rather than a whole
//!   window later. `None` while the latest data still burns.
//! - **resolve**: when the alert resolved (its `Resolved` transition).
//! - **acknowledge**: when an operator acknowledged the page; not traced
//!   here (the control plane records it), `None` until someone does.
//! - **budget spent**: the bad events in `[start, recover)` (up to the
//!   latest data while not recovered), as parts per million of the budget
//!   of the SLO period ending there: `bad · 10¹² / (N · β_ppm)` for `N`
//!   events in that period.
//!
//! With steady background errors the refined edges can move by up to one
//! window `w` towards the noise; the window keeps single noisy buckets
//! from making or breaking an excursion. When the excursion burn shows
//! nothing within one window before detection (an alert raised by a longer
//! window on errors too thin or sparse for `w`), start and recovery are
//! both the detection time. An alert that resolves and fires again within
//! one excursion yields two incidents with the same start.
//!
//! Time to detect is `detect − start`; time to acknowledge is
//! `acknowledge − detect`; time to recover is `recover − start`.
//! [`Summary`] gives their count, mean, median, 90th percentile and maximum
//! over many incidents; the percentiles by nearest rank (the value at rank
//! `⌈p · n / 100⌉` of the sorted list), so each is a real incident's value.

use crate::alert::{AlertState, Severity, Transition};
use crate::buckets::Buckets;
use crate::burn::{Burn, Factor, Objective};
use levee_core::Nanos;
use std::time::Duration;

/// How incidents are traced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IncidentOptions {
    /// The excursion window `w`, rounded up to whole fine buckets.
    pub window: Duration,
    /// Events the excursion window needs before its burn rate counts.
    pub min_events: u64,
    /// The SLO period whose budget the incident's cost is measured against.
    pub period: Duration,
}

impl Default for IncidentOptions {
    /// A 5-minute window (the shortest of the workbook's page windows), no
    /// minimum, a 30-day period.
    fn default() -> Self {
        Self {
            window: Duration::from_secs(300),
            min_events: 0,
            period: Duration::from_secs(30 * 86_400),
        }
    }
}

/// One incident: a firing of an alert and the bad excursion around it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Incident {
    /// The severity of the alert that fired.
    pub severity: Severity,
    /// When the bad excursion began.
    pub start: Nanos,
    /// Whether `start` is only as far back as fine buckets are kept.
    pub start_clipped: bool,
    /// When the alert fired.
    pub detect: Nanos,
    /// When the excursion ended; `None` while it goes on.
    pub recover: Option<Nanos>,
    /// When the alert resolved; `None` while it fires.
    pub resolve: Option<Nanos>,
    /// When an operator acknowledged it; `None` until someone does.
    pub acknowledge: Option<Nanos>,
    /// Bad events from start to recovery (or the latest data).
    pub bad_events: u64,
    /// Those events as parts per million of the period's error budget.
    pub budget_spent_ppm: u64,
}

impl Incident {
    /// Time to detect: from start to firing.
    pub fn time_to_detect(&self) -> Duration {
        Duration::from_nanos(self.detect.saturating_sub(self.start))
    }

    /// Time to acknowledge: from firing to an operator's acknowledgement,
    /// once acknowledged (an acknowledgement recorded before the firing, by
    /// a clock step, counts as zero).
    pub fn time_to_acknowledge(&self) -> Option<Duration> {
        self.acknowledge
            .map(|at| Duration::from_nanos(at.saturating_sub(self.detect)))
    }

    /// Time to recover: from start to recovery, once recovered.
    pub fn time_to_recover(&self) -> Option<Duration> {
        self.recover
            .map(|at| Duration::from_nanos(at.saturating_sub(self.start)))
    }
}

/// The incidents of `severity` in `transitions` (in time order), traced in
/// `buckets`. Run it while the fine buckets still cover the incident
/// (7 h with the default layout), typically when the alert resolves.
pub fn incidents(
    transitions: &[Transition],
    severity: Severity,
    buckets: &Buckets,
    objective: Objective,
    options: &IncidentOptions,
) -> Vec<Incident> {
    let mut found: Vec<Incident> = Vec::new();
    for t in transitions.iter().filter(|t| t.severity == severity) {
        match t.to {
            AlertState::Firing { since } => {
                found.push(trace(since, severity, buckets, objective, options));
            }
            AlertState::Resolved { at } => {
                if let Some(open) = found.last_mut().filter(|i| i.resolve.is_none()) {
                    open.resolve = Some(at);
                }
            }
            _ => {}
        }
    }
    found
}

fn trace(
    detect: Nanos,
    severity: Severity,
    buckets: &Buckets,
    objective: Objective,
    options: &IncidentOptions,
) -> Incident {
    let (start, start_clipped, recover) =
        excursion(detect, buckets, objective, options).unwrap_or((detect, false, Some(detect)));
    let end = recover
        .or_else(|| buckets.newest().map(|n| n + buckets.fine_ns()))
        .unwrap_or(start)
        .max(start);
    let bad_events = buckets.counts(end, Duration::from_nanos(end - start)).bad();
    let period_total = buckets.counts(end, options.period).total;
    let budget_spent_ppm = if period_total == 0 {
        0
    } else {
        let ppm = u128::from(bad_events) * 1_000_000_000_000
            / (u128::from(period_total) * u128::from(objective.budget_ppm()));
        ppm.min(u128::from(u64::MAX)) as u64
    };
    Incident {
        severity,
        start,
        start_clipped,
        detect,
        recover,
        resolve: None,
        acknowledge: None,
        bad_events,
        budget_spent_ppm,
    }
}

/// The excursion around `detect`: its start, whether that start was clipped,
/// and its recovery; `None` when nothing burns within one window before
/// `detect`.
fn excursion(
    detect: Nanos,
    buckets: &Buckets,
    objective: Objective,
    options: &IncidentOptions,
) -> Option<(Nanos, bool, Option<Nanos>)> {
    let step = buckets.fine_ns();
    // Whole buckets, at least one: the edges below are found bucket by
    // bucket inside this window.
    let window_ns = crate::nanos(options.window).max(1).next_multiple_of(step);
    let window = Duration::from_nanos(window_ns);
    let one_bucket = Duration::from_nanos(step);
    let burning = |end: Nanos| {
        Burn::new(buckets.counts(end, window), objective, options.min_events).exceeds(Factor::ONE)
    };
    let bad_bucket =
        |end: Nanos| Burn::new(buckets.counts(end, one_bucket), objective, 0).exceeds(Factor::ONE);
    // The first bucket end whose whole window lies in fine buckets.
    let earliest = (buckets.fine_start() + window_ns).next_multiple_of(step);
    let at = detect - detect % step;

    // The latest burning end within one window before detection.
    let lowest = earliest.max(at.saturating_sub(window_ns));
    let last_burning = (0..)
        .map_while(|k: u64| at.checked_sub(k * step).filter(|&t| t >= lowest))
        .find(|&t| burning(t))?;

    // Back to the first end of the run.
    let mut first = last_burning;
    let mut clipped = false;
    loop {
        match first.checked_sub(step).filter(|&t| t >= earliest) {
            Some(prev) if burning(prev) => first = prev,
            Some(_) => break,
            None => {
                clipped = true;
                break;
            }
        }
    }
    // The first bad bucket of the first burning window; its start.
    let start = bucket_ends_in(first, window_ns, step)
        .find(|&end| bad_bucket(end))
        .map_or(first - step, |end| end - step);

    // Forward to the first end that no longer burns, within the data.
    let data_end = buckets.newest().map_or(0, |n| n + step);
    let mut end = last_burning + step;
    while end <= data_end && burning(end) {
        end += step;
    }
    let recover = (end <= data_end).then(|| {
        // The end of the last bad bucket of the last burning window.
        let last_window = end - step;
        bucket_ends_in(last_window, window_ns, step)
            .rev()
            .find(|&e| bad_bucket(e))
            .unwrap_or(last_window)
    });
    Some((start, clipped, recover))
}

/// The bucket ends `e` with `window_end − window < e ≤ window_end`, oldest
/// first: the buckets of the window ending at `window_end`.
fn bucket_ends_in(
    window_end: Nanos,
    window_ns: u64,
    step: u64,
) -> impl DoubleEndedIterator<Item = Nanos> {
    let oldest = window_end.saturating_sub(window_ns) / step + 1;
    (oldest..=window_end / step).map(move |i| i * step)
}

/// The distribution of a set of durations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// How many durations.
    pub count: usize,
    /// The arithmetic mean, rounded down to the nanosecond: the "M" of
    /// MTTD, MTTA and MTTR as most tools report them. One long incident
    /// moves it far, so read it beside the median.
    pub mean: Duration,
    /// The median (nearest rank: the lower middle of an even count).
    pub median: Duration,
    /// The 90th percentile (nearest rank).
    pub p90: Duration,
    /// The longest.
    pub max: Duration,
}

impl Summary {
    /// The distribution of `durations`; `None` when there are none.
    pub fn of(durations: &[Duration]) -> Option<Summary> {
        let mut sorted = durations.to_vec();
        sorted.sort_unstable();
        let n = sorted.len();
        let at = |percent: usize| sorted[(percent * n).div_ceil(100).max(1) - 1];
        let max = *sorted.last()?;
        // u128 nanoseconds: no sum of real durations overflows it.
        let total: u128 = sorted.iter().map(Duration::as_nanos).sum();
        let mean_ns = total / n as u128;
        let mean = Duration::new(
            u64::try_from(mean_ns / 1_000_000_000).unwrap_or(u64::MAX),
            (mean_ns % 1_000_000_000) as u32,
        );
        Some(Summary {
            count: n,
            mean,
            median: at(50),
            p90: at(90),
            max,
        })
    }
}

/// Time to detect over `incidents` (MTTD as a distribution).
pub fn mttd(incidents: &[Incident]) -> Option<Summary> {
    let times: Vec<_> = incidents.iter().map(Incident::time_to_detect).collect();
    Summary::of(&times)
}

/// Time to acknowledge over the acknowledged `incidents` (MTTA as a
/// distribution).
pub fn mtta(incidents: &[Incident]) -> Option<Summary> {
    let times: Vec<_> = incidents
        .iter()
        .filter_map(Incident::time_to_acknowledge)
        .collect();
    Summary::of(&times)
}

/// Time to recover over the recovered `incidents` (MTTR as a distribution).
pub fn mttr(incidents: &[Incident]) -> Option<Summary> {
    let times: Vec<_> = incidents
        .iter()
        .filter_map(Incident::time_to_recover)
        .collect();
    Summary::of(&times)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::{Alerts, Policy};
    use crate::buckets::Layout;
    use proptest::prelude::*;

    const S: u64 = 1_000_000_000;
    const MIN: u64 = 60 * S;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn summary_by_nearest_rank() {
        assert_eq!(Summary::of(&[]), None);
        let one = Summary::of(&[secs(7)]).unwrap();
        assert_eq!((one.median, one.p90, one.max), (secs(7), secs(7), secs(7)));
        let ten: Vec<_> = (1..=10).rev().map(secs).collect();
        let s = Summary::of(&ten).unwrap();
        assert_eq!(
            (s.count, s.median, s.p90, s.max),
            (10, secs(5), secs(9), secs(10))
        );
        let four = Summary::of(&[secs(4), secs(1), secs(3), secs(2)]).unwrap();
        assert_eq!((four.median, four.p90), (secs(2), secs(4)));
        assert_eq!(four.mean, Duration::from_millis(2_500));
        assert_eq!(s.mean, Duration::from_millis(5_500));
        let thirds = Summary::of(&[
            Duration::from_nanos(1),
            Duration::from_nanos(1),
            Duration::from_nanos(2),
        ])
        .unwrap();
        assert_eq!(thirds.mean, Duration::from_nanos(1), "rounded down");
    }

    #[test]
    fn time_to_acknowledge_counts_from_detection_over_acknowledged_incidents() {
        let incident = |detect: u64, acknowledge: Option<u64>| Incident {
            severity: Severity::Page,
            start: 0,
            start_clipped: false,
            detect: detect * S,
            recover: None,
            resolve: None,
            acknowledge: acknowledge.map(|a| a * S),
            bad_events: 0,
            budget_spent_ppm: 0,
        };
        let found = [
            incident(60, Some(180)),
            incident(60, None),
            incident(100, Some(700)),
            incident(100, Some(130)),
            // An acknowledgement stamped before the page by a clock step.
            incident(100, Some(90)),
        ];
        assert_eq!(found[0].time_to_acknowledge(), Some(secs(120)));
        assert_eq!(found[1].time_to_acknowledge(), None);
        assert_eq!(found[4].time_to_acknowledge(), Some(Duration::ZERO));
        let a = mtta(&found).unwrap();
        assert_eq!(
            (a.count, a.median, a.p90, a.max, a.mean),
            (
                4,
                secs(30),
                secs(600),
                secs(600),
                secs(187) + Duration::from_millis(500)
            )
        );
        assert_eq!(mtta(&found[1..2]), None);
    }

    /// A minute of clean traffic per bucket around a bad stretch: bucket
    /// ends are every 10 s; `bad(i)` is the bad count of bucket `i`.
    fn feed(buckets: &mut Buckets, from: u64, to: u64, bad: impl Fn(u64) -> u64) {
        for i in from..to {
            buckets.add(i * 10 * S, 1_000 - bad(i), 1_000);
        }
    }

    #[test]
    fn a_hard_outage_is_traced_to_the_bucket() {
        let o = Objective::from_ppm(999_000).unwrap();
        let mut b = Buckets::new(Layout::default()).unwrap();
        let policy = Policy::sre_workbook();
        let mut alerts = Alerts::new();
        let mut transitions = Vec::new();
        // Six clean hours fill the page windows, then a 10-minute outage
        // (buckets 2,160 to 2,220), then 50 clean minutes.
        let outage = 2_160..2_220;
        for i in 0..2_520 {
            let bad = if outage.contains(&i) { 1_000 } else { 0 };
            b.add(i * 10 * S, 1_000 - bad, 1_000);
            transitions.extend(alerts.evaluate(&policy, &b, o, (i + 1) * 10 * S));
        }
        let found = incidents(
            &transitions,
            Severity::Page,
            &b,
            o,
            &IncidentOptions::default(),
        );
        assert_eq!(found.len(), 1);
        let i = found[0];
        let t0 = 360 * MIN;
        let t1 = 370 * MIN;
        assert_eq!(i.start, t0);
        assert!(!i.start_clipped);
        // 1 h at 14.4 × 0.1 % needs 51.84 s of a full outage: the next
        // bucket end is 60 s in.
        assert_eq!(i.detect, t0 + 60 * S);
        assert_eq!(i.recover, Some(t1));
        // The 6 h / 30 min rule fired too, and its 30-minute window falls
        // to 6 × 0.1 % after 30 min × (1 − 0.006) = 1,789.2 s.
        assert_eq!(i.resolve, Some(t1 + 1_790 * S));
        assert_eq!(i.bad_events, 60 * 1_000);
        assert_eq!(i.time_to_detect(), secs(60));
        assert_eq!(i.time_to_recover(), Some(secs(600)));
        // 60,000 bad of the 2,220,000 events so far, against a 0.1 %
        // budget: 27 budgets' worth.
        assert_eq!(i.budget_spent_ppm, 27_027_027);
    }

    #[test]
    fn two_outages_make_two_incidents_and_their_distributions() {
        let o = Objective::from_ppm(999_000).unwrap();
        let mut b = Buckets::new(Layout::default()).unwrap();
        let policy = Policy::sre_workbook();
        let mut alerts = Alerts::new();
        let mut transitions = Vec::new();
        // 10 minutes down at 6 h, and 5 minutes at 6 h 50 min, after the
        // first page resolved (at 6 h 39 min 50 s).
        let down = |i: u64| (2_160..2_220).contains(&i) || (2_460..2_490).contains(&i);
        for i in 0..2_700 {
            let bad = if down(i) { 1_000 } else { 0 };
            b.add(i * 10 * S, 1_000 - bad, 1_000);
            transitions.extend(alerts.evaluate(&policy, &b, o, (i + 1) * 10 * S));
        }
        let found = incidents(&transitions, Severity::Page, &b, o, &Default::default());
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].resolve, Some(370 * MIN + 1_790 * S));
        assert_eq!(found[1].start, 410 * MIN);
        // The hour window still holds the first outage: the 5-minute one
        // decides, after one bucket.
        assert_eq!(found[1].detect, 410 * MIN + 10 * S);
        assert_eq!(found[1].recover, Some(415 * MIN));
        assert!(found[1].resolve.is_some());
        let d = mttd(&found).unwrap();
        assert_eq!(
            (d.count, d.median, d.p90, d.max),
            (2, secs(10), secs(60), secs(60))
        );
        let r = mttr(&found).unwrap();
        assert_eq!((r.median, r.p90, r.max), (secs(300), secs(600), secs(600)));
    }

    #[test]
    fn an_alert_without_a_visible_excursion_starts_and_recovers_at_detection() {
        let o = Objective::from_ppm(999_000).unwrap();
        let mut b = Buckets::new(Layout::default()).unwrap();
        feed(&mut b, 0, 100, |_| 0);
        let detect = 555 * S;
        let firing = Transition {
            severity: Severity::Ticket,
            from: AlertState::Pending { since: 0 },
            to: AlertState::Firing { since: detect },
            at: detect,
        };
        let found = incidents(&[firing], Severity::Ticket, &b, o, &Default::default());
        let i = found[0];
        assert_eq!(
            (i.start, i.detect, i.recover),
            (detect, detect, Some(detect))
        );
        assert_eq!((i.bad_events, i.budget_spent_ppm), (0, 0));
        assert!(incidents(&[firing], Severity::Page, &b, o, &Default::default()).is_empty());
    }

    #[test]
    fn an_ongoing_excursion_has_no_recovery_yet() {
        let o = Objective::from_ppm(999_000).unwrap();
        let mut b = Buckets::new(Layout::default()).unwrap();
        feed(&mut b, 0, 100, |i| if i >= 50 { 500 } else { 0 });
        let firing = Transition {
            severity: Severity::Page,
            from: AlertState::Inactive,
            to: AlertState::Firing { since: 60 * 10 * S },
            at: 60 * 10 * S,
        };
        let found = incidents(&[firing], Severity::Page, &b, o, &Default::default());
        assert_eq!(found[0].start, 50 * 10 * S);
        assert_eq!(found[0].recover, None);
        assert_eq!(found[0].resolve, None);
        assert_eq!(found[0].bad_events, 50 * 500);
        assert_eq!(mttr(&found), None);
        assert_eq!(mttd(&found).unwrap().max, secs(100));
    }

    #[test]
    fn a_start_beyond_the_fine_buckets_is_clipped() {
        let o = Objective::from_ppm(999_000).unwrap();
        let layout = Layout {
            fine: secs(10),
            fine_span: secs(1800),
            coarse: secs(600),
            coarse_span: secs(7200),
        };
        let mut b = Buckets::new(layout).unwrap();
        // Errors for the whole hour of data.
        feed(&mut b, 0, 360, |_| 10);
        let firing = Transition {
            severity: Severity::Ticket,
            from: AlertState::Inactive,
            to: AlertState::Firing { since: 3600 * S },
            at: 3600 * S,
        };
        let found = incidents(&[firing], Severity::Ticket, &b, o, &Default::default());
        assert!(found[0].start_clipped);
        assert!(found[0].start >= b.fine_start());
    }

    proptest! {
        /// A clean step up to any error rate above the budget, held for
        /// longer than the window, then back to none: start and recovery
        /// land exactly on the steps, whatever the rate.
        #[test]
        fn clean_steps_are_found_exactly(
            bad in 2u64..=1_000,
            from in 100u64..200,
            len in 31u64..200,
        ) {
            let o = Objective::from_ppm(999_000).unwrap();
            let mut b = Buckets::new(Layout::default()).unwrap();
            let to = from + len;
            feed(&mut b, 0, to + 100, |i| if (from..to).contains(&i) { bad } else { 0 });
            let detect = (to - 1) * 10 * S;
            let firing = Transition {
                severity: Severity::Page,
                from: AlertState::Inactive,
                to: AlertState::Firing { since: detect },
                at: detect,
            };
            let found = incidents(&[firing], Severity::Page, &b, o, &Default::default());
            prop_assert_eq!(found[0].start, from * 10 * S);
            prop_assert_eq!(found[0].recover, Some(to * 10 * S));
            prop_assert_eq!(found[0].bad_events, len * bad);
        }

        /// Nearest-rank percentiles are members of the input, ordered, and
        /// have at least p % of the values at or below them; the mean is
        /// the exact sum over the count, rounded down.
        #[test]
        fn summary_is_sound(values in prop::collection::vec(0u64..1_000, 1..100)) {
            let durations: Vec<_> = values.iter().map(|&v| secs(v)).collect();
            let s = Summary::of(&durations).unwrap();
            prop_assert!(s.median <= s.p90 && s.p90 <= s.max);
            prop_assert_eq!(s.count, values.len());
            let sum_ns: u64 = values.iter().map(|v| v * S).sum();
            prop_assert_eq!(s.mean, Duration::from_nanos(sum_ns / values.len() as u64));
            let min = durations.iter().min().copied().unwrap();
            prop_assert!(min <= s.mean && s.mean <= s.max);
            for (value, percent) in [(s.median, 50), (s.p90, 90), (s.max, 100)] {
                prop_assert!(durations.contains(&value));
                let at_or_below = durations.iter().filter(|&&d| d <= value).count();
                prop_assert!(at_or_below * 100 >= percent * durations.len());
                let below = durations.iter().filter(|&&d| d < value).count();
                prop_assert!(below * 100 < percent * durations.len());
            }
        }
    }
}
