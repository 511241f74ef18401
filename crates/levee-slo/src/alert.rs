//! Multiwindow, multi-burn-rate alerts (SRE Workbook, "Alerting on SLOs")
//! and the alert state of one SLO.
//!
//! A [`Rule`] burns when the burn rate is strictly above its factor over
//! both its long and its short window: the long window proves enough budget
//! is being spent, the short one that it is still being spent now, so the
//! alert resets soon after the errors stop. A severity's condition is true
//! when any of its rules burns. [`Policy::sre_workbook`] holds the
//! workbook's recommended rules for a 30-day period, as Sloth generates
//! them:
//!
//! | severity | long | short | factor | budget spent when it fires |
//! |---|---|---|---|---|
//! | page | 1 h | 5 min | 14.4 | 2 % |
//! | page | 6 h | 30 min | 6 | 5 % |
//! | ticket | 1 d | 2 h | 3 | 10 % |
//! | ticket | 3 d | 6 h | 1 | 10 % |
//!
//! **When a rule fires.** After a step from no errors to a steady error
//! rate `e`, the long window `W` holds `e · t / W` errors at time `t`, so
//! its burn rate passes `f` at `t = f · (1 − SLO) / e · W`: the workbook's
//! detection time, `((1 − SLO) / error ratio) × window × burn rate`. The
//! short window passes `f` sooner (it is shorter), so the long one decides;
//! and a rule with `e ≤ f · (1 − SLO)` never fires. With strict `>` and
//! evaluation at bucket ends, the rule fires at the first bucket end after
//! `t`. When the errors stop, the short window `w` falls to `f` after
//! `w · (1 − f · (1 − SLO) / e)`, and the rule resets then, provided the
//! long window is still above `f`.
//!
//! **State.** Per SLO and severity, an [`AlertState`]: `Inactive`;
//! `Pending` while the condition has held for less than the policy's
//! `pending_for` (Prometheus's `for`, 0 by default, so an alert fires at
//! once); `Firing`; and `Resolved` once a firing alert's condition is false,
//! until it next holds. [`Alerts::evaluate`] returns only changes of state,
//! so evaluating every tick notifies each firing and each resolution once.

use crate::buckets::Buckets;
use crate::burn::{Burn, Factor, Objective};
use levee_core::Nanos;
use std::time::Duration;

/// How loudly an alert speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// Wake someone now.
    Page,
    /// Look at it in working hours.
    Ticket,
}

impl Severity {
    /// Every severity, in the order [`Alerts`] keeps them.
    pub const ALL: [Severity; 2] = [Severity::Page, Severity::Ticket];

    fn index(self) -> usize {
        match self {
            Severity::Page => 0,
            Severity::Ticket => 1,
        }
    }
}

/// One multiwindow burn-rate rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// The severity this rule raises.
    pub severity: Severity,
    /// The long window: enough budget is being spent.
    pub long: Duration,
    /// The short window: it is still being spent.
    pub short: Duration,
    /// The burn rate both windows must be strictly above.
    pub factor: Factor,
}

impl Rule {
    /// Whether the rule burns at `now`: the burn rate over `[now − long,
    /// now)` and over `[now − short, now)` are both above the factor, each
    /// window holding at least `min_events`.
    pub fn is_burning(
        &self,
        buckets: &Buckets,
        objective: Objective,
        min_events: u64,
        now: Nanos,
    ) -> bool {
        let burns = |window| {
            Burn::new(buckets.counts(now, window), objective, min_events).exceeds(self.factor)
        };
        // The short window first: it is cheaper and usually the one false.
        burns(self.short) && burns(self.long)
    }
}

/// The rules of one SLO and how they become alerts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// The rules; a severity's condition holds when any of its rules burns.
    pub rules: Vec<Rule>,
    /// Events each window needs before its burn rate counts; below it the
    /// window has no data and does not burn.
    pub min_events: u64,
    /// How long a condition must hold before its alert fires (`for`).
    pub pending_for: Duration,
}

impl Policy {
    /// The SRE Workbook's rules for a 30-day period (see the module docs),
    /// no minimum event count and no pending time.
    pub fn sre_workbook() -> Self {
        Self::sre_workbook_for(Duration::from_secs(30 * 86_400))
    }

    /// The SRE Workbook's windows and budget shares (2 % in 1 h, 5 % in
    /// 6 h, 10 % in 1 d, 10 % in 3 d) with factors for `period`, as Sloth
    /// scales them (13.44 for the first rule of a 28-day period). Rules
    /// whose long window exceeds the period are left out: a 1-day period
    /// keeps the two page rules and the 1-day ticket rule.
    pub fn sre_workbook_for(period: Duration) -> Self {
        let h = |n: u64| Duration::from_secs(n * 3600);
        let m = |n: u64| Duration::from_secs(n * 60);
        let rule = |severity, share_ppm, long, short| Rule {
            severity,
            long,
            short,
            factor: Factor::from_budget_share(share_ppm, period, long),
        };
        let rules = vec![
            rule(Severity::Page, 20_000, h(1), m(5)),
            rule(Severity::Page, 50_000, h(6), m(30)),
            rule(Severity::Ticket, 100_000, h(24), h(2)),
            rule(Severity::Ticket, 100_000, h(72), h(6)),
        ];
        Self {
            // A window longer than the period would count events the
            // period no longer does (and its factor would fall below 1).
            rules: rules.into_iter().filter(|r| r.long <= period).collect(),
            min_events: 0,
            pending_for: Duration::ZERO,
        }
    }

    /// Whether any rule of `severity` burns at `now`.
    pub fn condition(
        &self,
        severity: Severity,
        buckets: &Buckets,
        objective: Objective,
        now: Nanos,
    ) -> bool {
        self.rules.iter().any(|rule| {
            rule.severity == severity && rule.is_burning(buckets, objective, self.min_events, now)
        })
    }
}

impl Default for Policy {
    fn default() -> Self {
        Self::sre_workbook()
    }
}

/// The state of one alert (one SLO, one severity).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AlertState {
    /// The condition does not hold, and the alert has not fired since it
    /// last held.
    #[default]
    Inactive,
    /// The condition has held since `since`, not yet for `pending_for`.
    Pending {
        /// When the condition began to hold.
        since: Nanos,
    },
    /// The alert has fired.
    Firing {
        /// When it fired.
        since: Nanos,
    },
    /// The alert fired and its condition no longer holds.
    Resolved {
        /// When the condition stopped holding.
        at: Nanos,
    },
}

/// A change of an alert's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    /// The alert's severity.
    pub severity: Severity,
    /// The state before.
    pub from: AlertState,
    /// The state after.
    pub to: AlertState,
    /// When it changed.
    pub at: Nanos,
}

impl Transition {
    /// Whether someone should hear of it: the alert fired or resolved.
    /// Entering or leaving `Pending` is visible but not announced.
    pub fn notifies(&self) -> bool {
        matches!(
            self.to,
            AlertState::Firing { .. } | AlertState::Resolved { .. }
        )
    }
}

/// The alert states of one SLO, one per severity.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Alerts {
    states: [AlertState; 2],
}

impl Alerts {
    /// Every alert inactive.
    pub fn new() -> Self {
        Self::default()
    }

    /// The state of the `severity` alert.
    pub fn state(&self, severity: Severity) -> AlertState {
        self.states[severity.index()]
    }

    /// Puts back a state kept across a restart.
    pub fn restore(&mut self, severity: Severity, state: AlertState) {
        self.states[severity.index()] = state;
    }

    /// Moves the `severity` alert on, given whether its condition holds at
    /// `now`; returns the transition if the state changed.
    pub fn update(
        &mut self,
        severity: Severity,
        condition: bool,
        pending_for: Duration,
        now: Nanos,
    ) -> Option<Transition> {
        let from = self.states[severity.index()];
        let pending_ns = crate::nanos(pending_for);
        let to = match (from, condition) {
            (AlertState::Inactive | AlertState::Resolved { .. }, true) if pending_ns == 0 => {
                AlertState::Firing { since: now }
            }
            (AlertState::Inactive | AlertState::Resolved { .. }, true) => {
                AlertState::Pending { since: now }
            }
            (AlertState::Pending { since }, true) if now.saturating_sub(since) >= pending_ns => {
                AlertState::Firing { since: now }
            }
            // A pending alert that never fired has nothing to resolve.
            (AlertState::Pending { .. }, false) => AlertState::Inactive,
            (AlertState::Firing { .. }, false) => AlertState::Resolved { at: now },
            (state, _) => state,
        };
        if to == from {
            return None;
        }
        self.states[severity.index()] = to;
        Some(Transition {
            severity,
            from,
            to,
            at: now,
        })
    }

    /// Evaluates every severity of `policy` at `now` and returns the
    /// transitions, in severity order.
    pub fn evaluate(
        &mut self,
        policy: &Policy,
        buckets: &Buckets,
        objective: Objective,
        now: Nanos,
    ) -> Vec<Transition> {
        Severity::ALL
            .iter()
            .filter_map(|&severity| {
                let condition = policy.condition(severity, buckets, objective, now);
                self.update(severity, condition, policy.pending_for, now)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buckets::Layout;
    use proptest::prelude::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn the_workbook_policy_is_sloths() {
        let p = Policy::sre_workbook();
        let got: Vec<_> = p
            .rules
            .iter()
            .map(|r| {
                (
                    r.severity,
                    r.long.as_secs() / 60,
                    r.short.as_secs() / 60,
                    r.factor.milli(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (Severity::Page, 60, 5, 14_400),
                (Severity::Page, 360, 30, 6_000),
                (Severity::Ticket, 1_440, 120, 3_000),
                (Severity::Ticket, 4_320, 360, 1_000),
            ]
        );
        assert_eq!(Policy::default(), p);
        let day = Policy::sre_workbook_for(Duration::from_secs(86_400));
        let longs: Vec<u64> = day.rules.iter().map(|r| r.long.as_secs() / 3600).collect();
        assert_eq!(
            longs,
            vec![1, 6, 24],
            "windows longer than the period are left out"
        );
    }

    #[test]
    fn fires_at_once_without_a_pending_time_and_resolves_once() {
        let mut a = Alerts::new();
        let p = Severity::Page;
        let zero = Duration::ZERO;
        assert_eq!(a.update(p, false, zero, 1), None);
        let t = a.update(p, true, zero, 2).unwrap();
        assert_eq!(
            (t.from, t.to),
            (AlertState::Inactive, AlertState::Firing { since: 2 })
        );
        assert!(t.notifies());
        assert_eq!(a.update(p, true, zero, 3), None, "no second notification");
        let t = a.update(p, false, zero, 4).unwrap();
        assert_eq!(t.to, AlertState::Resolved { at: 4 });
        assert!(t.notifies());
        assert_eq!(a.update(p, false, zero, 5), None);
        assert_eq!(a.state(p), AlertState::Resolved { at: 4 });
        assert_eq!(a.state(Severity::Ticket), AlertState::Inactive);
        // It can fire again.
        assert_eq!(
            a.update(p, true, zero, 6).unwrap().to,
            AlertState::Firing { since: 6 }
        );
    }

    #[test]
    fn pending_waits_for_the_for_duration() {
        let mut a = Alerts::new();
        let s = Severity::Ticket;
        let wait = Duration::from_secs(60);
        let t = a.update(s, true, wait, 0).unwrap();
        assert_eq!(t.to, AlertState::Pending { since: 0 });
        assert!(!t.notifies());
        assert_eq!(a.update(s, true, wait, 59 * S), None);
        assert_eq!(
            a.update(s, true, wait, 60 * S).unwrap().to,
            AlertState::Firing { since: 60 * S }
        );
        // A blip shorter than `for` never fires and resolves nothing.
        let mut b = Alerts::new();
        b.update(s, true, wait, 0);
        let t = b.update(s, false, wait, 30 * S).unwrap();
        assert_eq!(t.to, AlertState::Inactive);
        assert!(!t.notifies());
    }

    #[test]
    fn no_data_never_pages() {
        let buckets = Buckets::new(Layout::default()).unwrap();
        let mut a = Alerts::new();
        let o = Objective::from_ppm(999_000).unwrap();
        assert!(a
            .evaluate(&Policy::sre_workbook(), &buckets, o, 100 * S)
            .is_empty());
    }

    #[test]
    fn too_few_events_do_not_burn() {
        let mut buckets = Buckets::new(Layout::default()).unwrap();
        let o = Objective::from_ppm(999_000).unwrap();
        // Three requests, all failing, in the last minute.
        buckets.add(3600 * S, 0, 3);
        let mut policy = Policy::sre_workbook();
        assert!(policy.condition(Severity::Page, &buckets, o, 3610 * S));
        policy.min_events = 10;
        assert!(!policy.condition(Severity::Page, &buckets, o, 3610 * S));
    }

    proptest! {
        /// Against a naive reference that keeps every event: a rule burns
        /// when, in both windows, the events whose bucket starts in the
        /// window are enough and their bad count is above the allowed
        /// `⌊f · β · total⌋`.
        #[test]
        fn rules_match_counting_every_event(
            events in prop::collection::vec((0u64..200, 0u64..50, 0u64..50), 0..150),
            long in 1u64..100,
            short_share in 1u64..=100,
            milli in 0u32..30_000,
            ppm in 900_000u32..1_000_000,
            min_events in 0u64..200,
            after in 0u64..50,
        ) {
            let o = Objective::from_ppm(ppm).unwrap();
            let short = (long * short_share).div_ceil(100);
            let rule = Rule {
                severity: Severity::Page,
                long: Duration::from_secs(long * 10),
                short: Duration::from_secs(short * 10),
                factor: Factor::from_milli(milli),
            };
            let mut buckets = Buckets::new(Layout::default()).unwrap();
            for &(bucket, good, bad) in &events {
                buckets.add(bucket * 10 * S, good, good + bad);
            }
            let now = (200 + after) * 10 * S;
            let burns = |len: u64| {
                let (mut bad, mut total) = (0u64, 0u64);
                for &(bucket, g, b) in &events {
                    if bucket * 10 * S >= now - len * 10 * S {
                        bad += b;
                        total += g + b;
                    }
                }
                let allowed = u128::from(milli) * u128::from(o.budget_ppm()) * u128::from(total)
                    / 1_000_000_000;
                total > 0 && total >= min_events && u128::from(bad) > allowed
            };
            prop_assert_eq!(
                rule.is_burning(&buckets, o, min_events, now),
                burns(long) && burns(short)
            );
        }

        /// Against a naive model that remembers when the current run of
        /// true conditions began, when it fired and when it ended: the
        /// state always agrees, and a transition comes exactly when the
        /// state changes (so each firing and resolution is reported once).
        #[test]
        fn state_machine_matches_a_naive_model(
            conditions in prop::collection::vec(any::<bool>(), 1..200),
            pending_steps in 0u64..5,
        ) {
            let pending_for = Duration::from_nanos(pending_steps * S);
            let mut a = Alerts::new();
            let mut run_start: Option<u64> = None;
            let mut fired_at: Option<u64> = None;
            let mut resolved_at: Option<u64> = None;
            for (step, &condition) in conditions.iter().enumerate() {
                let now = step as u64 * S;
                let before = a.state(Severity::Page);
                let t = a.update(Severity::Page, condition, pending_for, now);
                let expected = if condition {
                    let since = *run_start.get_or_insert(now);
                    if fired_at.is_none() && now - since >= pending_steps * S {
                        fired_at = Some(now);
                    }
                    match fired_at {
                        Some(at) => AlertState::Firing { since: at },
                        None => AlertState::Pending { since },
                    }
                } else {
                    if run_start.take().is_some() {
                        resolved_at = fired_at.take().map(|_| now);
                    }
                    match resolved_at {
                        Some(at) => AlertState::Resolved { at },
                        None => AlertState::Inactive,
                    }
                };
                prop_assert_eq!(a.state(Severity::Page), expected);
                let changed = (before != expected).then_some(Transition {
                    severity: Severity::Page,
                    from: before,
                    to: expected,
                    at: now,
                });
                prop_assert_eq!(t, changed);
            }
        }
    }
}
