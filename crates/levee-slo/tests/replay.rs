//! Replays of synthetic event streams with a step change in error rate,
//! checked against the SRE Workbook's formulas ("Alerting on SLOs").
//!
//! The stream is steady: `N` events per 10 s bucket, no errors, then from
//! `t0` a fraction `e = bad / N` of every bucket bad, then none again from
//! `t1`. Rules are evaluated at every bucket end. With a 99.9 % objective
//! (`β = 0.001`) and a rule of factor `f` over a long window `W` and a short
//! window `w`:
//!
//! - **Detection.** The long window holds `e · t / W` errors at `t0 + t`,
//!   so its burn rate `e · t / (W · β)` passes `f` at the workbook's
//!   detection time `t = (β / e) · W · f` (its "(1 − SLO) / error ratio ×
//!   alerting window size × burn rate"); the short window passes `f` at
//!   `(β / e) · w · f`, sooner. With `>` strict, the rule fires at the first
//!   bucket end strictly after `t0 + t`, so within one bucket of it. Example:
//!   1.44 % errors take the 1 h / 14.4 rule `(0.001 / 0.0144) · 1 h · 14.4 =
//!   1 h`; 2.88 % take 30 min. At `e ≤ f · β` it never fires.
//! - **Reset.** With the errors held for a whole long window, at `t1 + y`
//!   the short window holds `e · (w − y) / w`, which falls to `f · β` at
//!   `y = w · (1 − f · β / e)` while the long window is still above `f`;
//!   the rule stops at the first bucket end at or after that.
//! - **Budget.** By the time the 1 h / 14.4 rule's condition is reached,
//!   `f · W / period = 14.4 h / 30 d = 2 %` of the budget is spent.
//!
//! With the default layout, windows longer than the 7 h of fine buckets
//! (1 d and 3 d) round their old edge to the hour, so those rules fire up
//! to one coarse bucket earlier; every time is checked exactly with an
//! all-fine layout.

use levee_slo::{
    AlertState, Alerts, Buckets, Budget, Burn, Exhaustion, Layout, Objective, Policy, Rule,
    Severity, Transition,
};
use std::time::Duration;

const S: u64 = 1_000_000_000;
const STEP: u64 = 10 * S;
const HOUR: u64 = 3600 * S;
const DAY: u64 = 24 * HOUR;
/// Events per bucket: 100,000, so error rates to 0.001 % are whole counts.
const N: u64 = 100_000;
/// The budget of 99.9 %, in ppm.
const BETA: u128 = 1_000;

fn objective() -> Objective {
    Objective::from_ppm(999_000).unwrap()
}

/// Fine buckets for 73 h: every window of the workbook policy is exact.
fn all_fine() -> Layout {
    Layout {
        fine: Duration::from_secs(10),
        fine_span: Duration::from_secs(73 * 3600),
        coarse: Duration::from_secs(3600),
        coarse_span: Duration::from_secs(74 * 3600),
    }
}

fn rule(index: usize) -> Rule {
    Policy::sre_workbook().rules[index]
}

fn feed(buckets: &mut Buckets, from: u64, to: u64, bad: u64) {
    for at in (from..to).step_by(STEP as usize) {
        buckets.add(at, N - bad, N);
    }
}

/// The workbook's detection time `(β / e) · W · f`, with `e = bad / N`, as
/// the exact fraction `f_milli · β · W · N / (10⁹ · bad)` nanoseconds;
/// returns the first bucket end strictly after it.
fn expected_detection(rule: &Rule, bad: u64) -> u64 {
    let num = u128::from(rule.factor.milli()) * BETA * rule.long.as_nanos() * u128::from(N);
    let den = 1_000_000_000 * u128::from(bad);
    ((num / (den * u128::from(STEP)) + 1) * u128::from(STEP)) as u64
}

/// The reset time `w · (1 − f · β / e)` after the errors stop, rounded up to
/// a bucket end.
fn expected_reset(rule: &Rule, bad: u64) -> u64 {
    let den = 1_000_000_000 * u128::from(bad);
    let num =
        rule.short.as_nanos() * (den - u128::from(rule.factor.milli()) * BETA * u128::from(N));
    (num.div_ceil(den * u128::from(STEP)) * u128::from(STEP)) as u64
}

/// What a replay saw: when the rule first burned after `t0`, and when it
/// stopped after `t1` (both relative).
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    detect: Option<u64>,
    reset: Option<u64>,
}

/// Clean traffic for one long window, errors at `bad / N` for one long
/// window, then clean traffic for one short window and a bucket. Checks
/// on the way that the rule never burns before detection, burns without a
/// gap from detection to `t1`, and never again after its reset.
fn replay(layout: Layout, rule: &Rule, bad: u64) -> Seen {
    let o = objective();
    let mut buckets = Buckets::new(layout).unwrap();
    let long = rule.long.as_nanos() as u64;
    let short = rule.short.as_nanos() as u64;
    let t0 = long;
    let t1 = t0 + long;
    feed(&mut buckets, 0, t0, 0);
    assert!(!rule.is_burning(&buckets, o, 0, t0));
    let mut seen = Seen {
        detect: None,
        reset: None,
    };
    let mut at = t0;
    while at < t1 + short + STEP {
        let bad_now = if at < t1 { bad } else { 0 };
        buckets.add(at, N - bad_now, N);
        at += STEP;
        let burning = rule.is_burning(&buckets, o, 0, at);
        match (seen.detect, seen.reset) {
            (None, _) if burning => seen.detect = Some(at - t0),
            (Some(_), None) if at <= t1 => assert!(burning, "gap at t0 + {} s", (at - t0) / S),
            (Some(_), None) if !burning => seen.reset = Some(at - t1),
            (Some(_), Some(_)) => assert!(!burning, "burned again at t1 + {} s", (at - t1) / S),
            _ => {}
        }
    }
    seen
}

/// Error rates (bad events per 100,000) above each rule's threshold, and
/// the rate exactly at it, which must never fire.
const CASES: [(usize, &[u64], u64); 4] = [
    // 1 h / 5 min, 14.4: 1.5 %, 2.88 %, 10 %, 100 %; never at 1.44 %.
    (0, &[1_500, 2_880, 10_000, 100_000], 1_440),
    // 6 h / 30 min, 6: 0.75 %, 1.2 %, 6 %, 100 %; never at 0.6 %.
    (1, &[750, 1_200, 6_000, 100_000], 600),
    // 1 d / 2 h, 3: 0.4 %, 0.6 %, 3 %; never at 0.3 %.
    (2, &[400, 600, 3_000], 300),
    // 3 d / 6 h, 1: 0.15 %, 0.2 %, 1 %; never at 0.1 %.
    (3, &[150, 200, 1_000], 100),
];

#[test]
fn every_rule_fires_and_resets_when_the_workbook_says() {
    for (index, rates, at_threshold) in CASES {
        let r = rule(index);
        for &bad in rates {
            let seen = replay(all_fine(), &r, bad);
            let expected = Seen {
                detect: Some(expected_detection(&r, bad)),
                reset: Some(expected_reset(&r, bad)),
            };
            assert_eq!(seen, expected, "rule {index} at {bad} bad per {N}");
        }
        let never = replay(all_fine(), &r, at_threshold);
        assert_eq!(never.detect, None, "rule {index} at exactly its factor");
    }
}

#[test]
fn spot_checks_of_the_formula() {
    // 2.88 % against 1 h / 14.4: (0.001 / 0.0288) · 1 h · 14.4 = 30 min,
    // fired at the next bucket end since the rule needs strictly more.
    assert_eq!(expected_detection(&rule(0), 2_880), 30 * 60 * S + STEP);
    // 1.44 % would take exactly the whole hour.
    assert_eq!(expected_detection(&rule(0), 1_440), HOUR + STEP);
    // 0.2 % against 3 d / 1: half of 3 d.
    assert_eq!(expected_detection(&rule(3), 200), 36 * HOUR + STEP);
    // 100 % against 1 h / 14.4 resets after 5 min · (1 − 0.0144) = 295.68 s.
    assert_eq!(expected_reset(&rule(0), 100_000), 300 * S);
}

#[test]
fn the_default_layout_is_exact_for_page_rules_and_within_an_hour_for_tickets() {
    for (index, rates, _) in CASES {
        let r = rule(index);
        for &bad in rates {
            let seen = replay(Layout::default(), &r, bad);
            let detect = expected_detection(&r, bad);
            let reset = expected_reset(&r, bad);
            // Short windows (≤ 6 h) are always in fine buckets.
            assert_eq!(seen.reset, Some(reset), "rule {index} at {bad}");
            if r.long <= Duration::from_secs(6 * 3600) {
                assert_eq!(seen.detect, Some(detect), "rule {index} at {bad}");
            } else {
                // A shorter long window burns no later, and less than a
                // coarse bucket sooner.
                let got = seen.detect.unwrap();
                assert!(
                    got <= detect && got + HOUR > detect,
                    "rule {index} at {bad}: {got} vs {detect}"
                );
            }
        }
    }
}

#[test]
fn the_policy_pages_tickets_and_resolves_each_once() {
    // 2 % errors for 6 h after 3 clean days.
    let o = objective();
    let policy = Policy::sre_workbook();
    let mut buckets = Buckets::new(all_fine()).unwrap();
    let mut alerts = Alerts::new();
    let bad = 2_000;
    let t0 = 3 * DAY;
    let t1 = t0 + 6 * HOUR;
    feed(&mut buckets, 0, t0, 0);
    let mut transitions = Vec::new();
    let mut at = t0;
    while at < t1 + 6 * HOUR {
        buckets.add(at, N - if at < t1 { bad } else { 0 }, N);
        at += STEP;
        transitions.extend(alerts.evaluate(&policy, &buckets, o, at));
    }
    // Page: the 1 h rule first, at (0.001 / 0.02) · 1 h · 14.4 = 43.2 min;
    // the 6 h rule would need 1.8 h. It resolves when the last page rule
    // resets: the 30 min window after 30 min · (1 − 0.3) = 21 min.
    let page_fires = t0 + expected_detection(&policy.rules[0], bad);
    let page_resolves = t1 + expected_reset(&policy.rules[1], bad);
    assert_eq!(page_fires, t0 + 43 * 60 * S + 20 * S);
    assert_eq!(page_resolves, t1 + 21 * 60 * S);
    // Ticket: 1 d at 3 and 3 d at 1 both need 3.6 h. The 6 h window of
    // the 3 d rule falls to 1 after 6 h · (1 − 0.05) = 5.7 h.
    let ticket_fires = t0 + expected_detection(&policy.rules[2], bad);
    assert_eq!(ticket_fires, t0 + expected_detection(&policy.rules[3], bad));
    let ticket_resolves = t1 + expected_reset(&policy.rules[3], bad);
    assert_eq!(ticket_resolves, t1 + 5 * HOUR + 42 * 60 * S);

    let got: Vec<_> = transitions
        .iter()
        .map(|t: &Transition| (t.severity, t.to, t.at))
        .collect();
    assert_eq!(
        got,
        vec![
            (
                Severity::Page,
                AlertState::Firing { since: page_fires },
                page_fires
            ),
            (
                Severity::Ticket,
                AlertState::Firing {
                    since: ticket_fires
                },
                ticket_fires
            ),
            (
                Severity::Page,
                AlertState::Resolved { at: page_resolves },
                page_resolves
            ),
            (
                Severity::Ticket,
                AlertState::Resolved {
                    at: ticket_resolves
                },
                ticket_resolves
            ),
        ]
    );
    assert!(transitions.iter().all(Transition::notifies));
}

#[test]
fn two_percent_of_the_budget_is_spent_when_the_fast_page_is_due() {
    // 30 clean days, then 2.88 % errors from 30 d 30 min, so that 30 min
    // later the 30-day window ends on an hour and is exact.
    let o = objective();
    let period = Duration::from_secs(30 * 86_400);
    let mut buckets = Buckets::new(Layout::default()).unwrap();
    let t0 = 30 * DAY + HOUR / 2;
    feed(&mut buckets, 0, t0, 0);
    feed(&mut buckets, t0, t0 + HOUR / 2, 2_880);
    let now = t0 + HOUR / 2;
    let fast = rule(0);
    // Burn exactly 14.4: not yet above it.
    assert!(!fast.is_burning(&buckets, o, 0, now));
    let Budget::Known(budget) = Budget::new(buckets.counts(now, period), o, 0) else {
        panic!("no data")
    };
    // f · W / period = 14.4 h / 720 h = 2 %.
    assert_eq!(budget.remaining_ppm(), 980_000);
    // 98 % of 43 min 12 s is 42 min 20.16 s of downtime; at 2.88 % errors
    // it lasts 24.5 h, which is ρ · period / burn = 0.98 · 720 h / 28.8.
    assert_eq!(budget.remaining_time_ns(period), 2_540_160_000_000);
    let Burn::Rate(current) = Burn::new(buckets.counts(now, fast.short), o, 0) else {
        panic!("no data")
    };
    assert_eq!(
        budget.time_to_exhaustion(period, &current),
        Exhaustion::After(Duration::from_secs(24 * 3600 + 1800))
    );
    // One more bucket and it fires.
    feed(&mut buckets, now, now + STEP, 2_880);
    assert!(fast.is_burning(&buckets, o, 0, now + STEP));
}
