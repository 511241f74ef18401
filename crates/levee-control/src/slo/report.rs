//! The SLO report: what the admin API, the status page and the alert
//! payloads show (objectives, budgets, burn rates, alerts, incidents with
//! their operators' actions and timeline, MTTD/MTTA/MTTR, tier uptime),
//! rebuilt from the engine's state after each tick (and its incidents
//! after each operator's action), with the readable figures they are
//! built from.

use super::actions::OperatorMark;
use super::incidents::TrackedIncident;
use super::series::{alert_state_parts, period_at, severity_name, tier_name, PeriodAt, Series};
use super::{EngineState, HOUR};
use levee_config::{Budgeting, SloPeriod};
use levee_core::Nanos;
use levee_slo::{
    calendar, incident, timeslice, AlertState, Buckets, Budget, Burn, Counts, Exhaustion, Factor,
    Severity,
};
use levee_store::IncidentRow;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

pub(super) fn percent(ppm: u32) -> String {
    let s = format!("{:.4}", f64::from(ppm) / 10_000.0);
    let s = s.trim_end_matches('0').trim_end_matches('.');
    format!("{s}%")
}

pub(super) fn period_name(p: SloPeriod) -> String {
    match p {
        SloPeriod::Rolling(d) => levee_config::format_duration(d),
        SloPeriod::CalendarMonth => "calendar_month".to_string(),
    }
}

/// Everything the API shows about SLOs, rebuilt each tick.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SloReport {
    /// When it was computed (RFC 3339).
    pub evaluated_at: Option<String>,
    /// One entry per configured objective.
    pub slos: Vec<SloStatus>,
    /// Incidents, newest first.
    pub incidents: Vec<IncidentStatus>,
    /// Time to detect over the incidents kept.
    pub mttd: Option<DurationSummary>,
    /// Time to acknowledge over the acknowledged incidents kept.
    pub mtta: Option<DurationSummary>,
    /// Time to recover over the recovered incidents kept.
    pub mttr: Option<DurationSummary>,
    /// Uptime and budget by tier.
    pub tiers: Vec<TierStatus>,
}

/// One SLO objective's state.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SloStatus {
    /// The objective's id (the SLO name, or `name:threshold`).
    pub id: String,
    /// The SLO's name.
    pub slo: String,
    /// Its description.
    pub description: Option<String>,
    /// `availability` or `latency`.
    pub sli: &'static str,
    /// The latency threshold, for latency SLOs.
    pub threshold: Option<String>,
    /// The objective, as a ratio (0.999).
    pub objective: f64,
    /// The objective as text (`99.9%`).
    pub objective_text: String,
    /// The period (`30d`, `calendar_month`).
    pub period: String,
    /// Which requests it covers.
    pub scope: levee_config::SloScope,
    /// Labels passed into alerts.
    pub labels: BTreeMap<String, String>,
    /// The runbook link.
    pub runbook: Option<String>,
    /// `ok`, `burning` (an alert fires), `exhausted` (no budget left) or
    /// `no_data`.
    pub status: &'static str,
    /// Events over the period so far.
    pub events: u64,
    /// Bad events over the period so far.
    pub bad_events: u64,
    /// Events left out of the budget by maintenance windows (status page
    /// maintenances with `exclude_from_budget`) since this process
    /// started.
    pub excluded_events: u64,
    /// The SLI over the period (good / events; with time slices, good
    /// slices / judged slices, or their average ratio), absent without data.
    pub sli_value: Option<f64>,
    /// `occurrences`, `timeslices` or `ratio_timeslices`: what the SLI,
    /// budget, burn rates and alerts count.
    pub budgeting: &'static str,
    /// Time slices: the slice width (`1m`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeslice: Option<String>,
    /// `timeslices`: the share of good events a good slice needs (0.95).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeslice_target: Option<f64>,
    /// Time slices: the slices judged over the period so far (slices
    /// without events are not judged).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slices: Option<u64>,
    /// Time slices: the bad slices over the period so far (for
    /// `ratio_timeslices`, the slices' shortfall in whole slices).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bad_slices: Option<u64>,
    /// Time slices: the bad slices the whole period allows when every
    /// slice is judged, `⌊(1 − objective) · period / slice⌋`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allowed_bad_slices: Option<u64>,
    /// The error budget.
    pub budget: BudgetStatus,
    /// Burn rate and SLI per alert window.
    pub windows: Vec<WindowStatus>,
    /// Alert state per severity.
    pub alerts: Vec<AlertStatus>,
}

/// The error budget of one objective over its period.
#[derive(Debug, Clone, Default, Serialize)]
pub struct BudgetStatus {
    /// Share left: 1 untouched, 0 spent, negative overspent.
    pub remaining_ratio: Option<f64>,
    /// The whole budget as seconds of full outage over the period.
    pub total_seconds: Option<f64>,
    /// What is left, as seconds of full outage ("31 min of downtime left").
    pub remaining_seconds: Option<f64>,
    /// The same, readable (`31m 12s`).
    pub remaining_text: Option<String>,
    /// At the shortest window's burn rate: `never`, `exhausted`, or the
    /// time left.
    pub exhaustion: Option<String>,
    /// Seconds until exhaustion at that rate, when finite.
    pub exhaustion_seconds: Option<f64>,
}

/// One alert window.
#[derive(Debug, Clone, Serialize)]
pub struct WindowStatus {
    /// Its length (`5m`).
    pub window: String,
    /// Events in it.
    pub events: u64,
    /// Bad events in it.
    pub bad_events: u64,
    /// Good / events (with time slices, over the judged slices); absent
    /// without data.
    pub sli: Option<f64>,
    /// The burn rate; absent when the window has fewer than `min_events`
    /// (with time slices: no judged slice).
    pub burn_rate: Option<f64>,
    /// Time slices: the slices judged in the window.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slices: Option<u64>,
    /// Time slices: the bad slices in the window.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bad_slices: Option<u64>,
}

/// One alert's state.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AlertStatus {
    /// `page` or `ticket`.
    pub severity: &'static str,
    /// `inactive`, `pending`, `firing` or `resolved`.
    pub state: &'static str,
    /// When it entered that state (RFC 3339).
    pub since: Option<String>,
}

/// One incident.
#[derive(Debug, Clone, Serialize)]
pub struct IncidentStatus {
    /// Its number.
    pub id: u64,
    /// The SLO objective that paged.
    pub slo: String,
    /// `page`.
    pub severity: String,
    /// `open`; `recovered` (the SLI is back, the alert still fires);
    /// `alert_resolved` (the alert stopped, the SLI is not back yet: the
    /// short window's burn is under the alert's factor but above 1); or
    /// `closed` (both).
    pub state: &'static str,
    /// When the bad excursion began.
    pub start: String,
    /// Whether the start was cut at the oldest fine bucket kept.
    pub start_clipped: bool,
    /// When the page fired.
    pub detect: String,
    /// When the short-window burn rate fell below 1.
    pub recover: Option<String>,
    /// When the alert resolved.
    pub resolve: Option<String>,
    /// Seconds from start to detection.
    pub time_to_detect_seconds: f64,
    /// Seconds from start to recovery.
    pub time_to_recover_seconds: Option<f64>,
    /// Bad events during the incident.
    pub bad_events: u64,
    /// The share of the period's error budget it spent.
    pub budget_spent_ratio: f64,
    /// The runbook link.
    pub runbook: Option<String>,
    /// The SLO's labels.
    pub labels: BTreeMap<String, String>,
    /// Where operators are with it: `triggered` (no one has acknowledged
    /// it), `acknowledged`, or `resolved` (by an operator, or because its
    /// alert resolved).
    pub workflow: &'static str,
    /// Who acknowledged it and when.
    pub acknowledged: Option<OperatorMark>,
    /// Who resolved it and when, with their message; `None` when no
    /// operator did (its alert's resolution is `resolve`).
    pub resolved_by: Option<OperatorMark>,
    /// Operators' notes, oldest first.
    pub notes: Vec<OperatorMark>,
    /// Seconds from detection to acknowledgement.
    pub time_to_acknowledge_seconds: Option<f64>,
}

/// One moment in an incident's life, for its timeline.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TimelineEvent {
    /// When (RFC 3339).
    pub at: String,
    /// `start`, `detect`, `acknowledge`, `note`, `recover`,
    /// `alert_resolve` or `resolve` (by an operator).
    pub event: &'static str,
    /// The operator, for their actions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// A note's text or a resolution's message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl IncidentStatus {
    /// Its moments in time order (events at the same time in the order
    /// of the list above, operators' actions in the order they were
    /// taken).
    pub fn timeline(&self) -> Vec<TimelineEvent> {
        let at = |t: &str, event| TimelineEvent {
            at: t.to_string(),
            event,
            by: None,
            message: None,
        };
        let by = |m: &OperatorMark, event| TimelineEvent {
            at: m.at.clone(),
            event,
            by: Some(m.by.clone()),
            message: m.message.clone(),
        };
        let mut events = vec![at(&self.start, "start"), at(&self.detect, "detect")];
        events.extend(self.acknowledged.iter().map(|m| by(m, "acknowledge")));
        events.extend(self.notes.iter().map(|m| by(m, "note")));
        events.extend(self.recover.iter().map(|t| at(t, "recover")));
        events.extend(self.resolve.iter().map(|t| at(t, "alert_resolve")));
        events.extend(self.resolved_by.iter().map(|m| by(m, "resolve")));
        // RFC 3339 with a fixed width sorts as text; the sort is stable.
        events.sort_by(|a, b| a.at.cmp(&b.at));
        events
    }
}

/// A distribution of durations, in seconds.
#[derive(Debug, Clone, Serialize)]
pub struct DurationSummary {
    /// How many.
    pub count: usize,
    /// The mean (the "M" in MTTD, MTTA, MTTR).
    pub mean_seconds: f64,
    /// Median.
    pub median_seconds: f64,
    /// 90th percentile.
    pub p90_seconds: f64,
    /// Longest.
    pub max_seconds: f64,
}

/// A tier needs at least this many requests in the status period...
pub const TIER_MIN_EVENTS: u64 = 100;

/// ...spread over at least this long (from its first request in the
/// period) before its uptime means something; until then it has no data.
pub const TIER_MIN_OBSERVED: Duration = Duration::from_secs(300);

/// How long before `now` the first event within `reach` was counted (to
/// the bucket), or zero without events. Coarse buckets only speak for
/// times the fine ones no longer cover: the coarse bucket of the current
/// hour starts before a gateway started this hour.
fn observed_since_first_event(buckets: &Buckets, now: Nanos, reach: Duration) -> Duration {
    let from = now.saturating_sub(u64::try_from(reach.as_nanos()).unwrap_or(u64::MAX));
    let fine_start = buckets.fine_start();
    let kept = buckets.non_empty();
    let oldest = |coarse: bool| {
        kept.iter()
            .filter(|(c, start, _)| *c == coarse && (!coarse || *start < fine_start))
            .map(|(_, start, _)| *start)
            .min()
    };
    match oldest(true).or_else(|| oldest(false)) {
        Some(first) => Duration::from_nanos(now.saturating_sub(first.max(from))),
        None => Duration::ZERO,
    }
}

/// Uptime of one tier.
#[derive(Debug, Clone, Serialize)]
pub struct TierStatus {
    /// `core` or `optional`.
    pub tier: &'static str,
    /// The status page period.
    pub period: String,
    /// Good / all requests over the period; absent without traffic.
    pub uptime: Option<f64>,
    /// The tier's objective.
    pub objective: f64,
    /// The tier's error budget.
    pub budget: BudgetStatus,
    /// `outage` (most requests failing over the last 5 min), `no_data`
    /// (see `no_data`), `degraded` (budget spent faster than planned over
    /// the last hour) or `operational`.
    pub status: &'static str,
    /// Requests over the period.
    pub events: u64,
    /// Too little data for an uptime: fewer than [`TIER_MIN_EVENTS`]
    /// requests in the period, or less than [`TIER_MIN_OBSERVED`] since
    /// the first.
    pub no_data: bool,
    /// Time since the tier's first request in the period (at most the
    /// period): what the uptime is measured over so far.
    pub observed_seconds: f64,
}

fn ratio(c: Counts) -> Option<f64> {
    (c.total > 0).then(|| c.good as f64 / c.total as f64)
}

fn readable(secs: f64) -> String {
    let negative = secs < 0.0;
    let mut s = secs.abs().round() as u64;
    let days = s / 86_400;
    s %= 86_400;
    let (h, m, sec) = (s / 3600, s / 60 % 60, s % 60);
    let text = match (days, h, m) {
        (0, 0, 0) => format!("{sec}s"),
        (0, 0, _) => format!("{m}m {sec}s"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{days}d {h}h"),
    };
    if negative {
        format!("-{text}")
    } else {
        text
    }
}

pub(super) fn budget_status(series: &Series, now: Nanos) -> BudgetStatus {
    let def = &series.def;
    let PeriodAt {
        reach,
        length: full,
    } = period_at(def.period, now);
    let counts = series.judged().counts(now, reach);
    let Budget::Known(b) = Budget::new(counts, def.objective, 0) else {
        return BudgetStatus::default();
    };
    let shortest = def.windows().first().copied().unwrap_or(HOUR);
    let current = Burn::new(series.judged().counts(now, shortest), def.objective, 0);
    let remaining = b.remaining_time_ns(full) as f64 / 1e9;
    let (exhaustion, exhaustion_seconds) = match current {
        Burn::Rate(rate) => match b.time_to_exhaustion(full, &rate) {
            Exhaustion::Never => (Some("never".to_string()), None),
            Exhaustion::Exhausted => (Some("exhausted".to_string()), Some(0.0)),
            Exhaustion::After(d) => (Some(readable(d.as_secs_f64())), Some(d.as_secs_f64())),
        },
        Burn::NoData if remaining <= 0.0 => (Some("exhausted".to_string()), Some(0.0)),
        Burn::NoData => (Some("never".to_string()), None),
    };
    BudgetStatus {
        remaining_ratio: Some(b.remaining_ppm() as f64 / 1e6),
        total_seconds: Some(b.budget_time(full).as_secs_f64()),
        remaining_seconds: Some(remaining),
        remaining_text: Some(readable(remaining)),
        exhaustion,
        exhaustion_seconds,
    }
}

pub(super) fn series_status(series: &Series, now: Nanos) -> SloStatus {
    let def = &series.def;
    let reach = period_at(def.period, now).reach;
    let counts = series.buckets.counts(now, reach);
    let judged = series.judged().counts(now, reach);
    let slice_counts = |len| series.slices.as_ref().map(|s| s.counts(now, len));
    let budget = budget_status(series, now);
    let windows: Vec<WindowStatus> = def
        .windows()
        .into_iter()
        .map(|w| {
            let c = series.buckets.counts(now, w);
            let j = series.judged().counts(now, w);
            let burn = match Burn::new(j, def.objective, def.policy.min_events) {
                Burn::Rate(r) => Some(r.to_f64()),
                Burn::NoData => None,
            };
            let sc = slice_counts(w);
            WindowStatus {
                window: levee_config::format_duration(w),
                events: c.total,
                bad_events: c.bad(),
                sli: ratio(j),
                burn_rate: burn,
                slices: sc.map(|s| s.judged),
                bad_slices: sc.map(|s| s.bad),
            }
        })
        .collect();
    let period_slices = slice_counts(reach);
    let alerts: Vec<AlertStatus> = Severity::ALL
        .iter()
        .filter(|s| def.policy.rules.iter().any(|r| r.severity == **s))
        .map(|&s| {
            let (state, since) = alert_state_parts(series.alerts.state(s));
            AlertStatus {
                severity: severity_name(s),
                state,
                since: (since > 0).then(|| calendar::rfc3339(since)),
            }
        })
        .collect();
    let firing = alerts.iter().any(|a| a.state == "firing");
    let status = if counts.total == 0 {
        "no_data"
    } else if budget.remaining_ratio.is_some_and(|r| r <= 0.0) {
        "exhausted"
    } else if firing {
        "burning"
    } else {
        "ok"
    };
    SloStatus {
        id: def.id.clone(),
        slo: def.slo.clone(),
        description: def.description.clone(),
        sli: def.sli,
        threshold: def.threshold.map(levee_config::format_duration),
        objective: f64::from(def.objective.ppm()) / 1e6,
        objective_text: percent(def.objective.ppm()),
        period: period_name(def.period),
        scope: def.scope.clone(),
        labels: def.labels.iter().cloned().collect(),
        runbook: def.runbook.clone(),
        status,
        events: counts.total,
        bad_events: counts.bad(),
        excluded_events: series.excluded_events,
        sli_value: ratio(judged),
        budgeting: def.budgeting.name(),
        timeslice: def.budgeting.slice().map(levee_config::format_duration),
        timeslice_target: match def.budgeting {
            Budgeting::Timeslices { target_ppm, .. } => Some(f64::from(target_ppm) / 1e6),
            _ => None,
        },
        slices: period_slices.map(|s| s.judged),
        bad_slices: period_slices.map(|s| s.bad),
        allowed_bad_slices: def.budgeting.slice().map(|w| {
            timeslice::allowed_bad_slices(def.objective, period_at(def.period, now).length, w)
        }),
        budget,
        windows,
        alerts,
    }
}

pub(super) fn incident_status(tracked: &TrackedIncident) -> IncidentStatus {
    let row = &tracked.row;
    let log = &tracked.log;
    let secs = |ns: u64| ns as f64 / 1e9;
    IncidentStatus {
        id: row.id,
        slo: row.slo.clone(),
        severity: row.severity.clone(),
        state: match (row.recover_ns, row.resolve_ns) {
            (Some(_), Some(_)) => "closed",
            (Some(_), None) => "recovered",
            (None, Some(_)) => "alert_resolved",
            (None, None) => "open",
        },
        start: calendar::rfc3339(row.start_ns),
        start_clipped: row.start_clipped,
        detect: calendar::rfc3339(row.detect_ns),
        recover: row.recover_ns.map(calendar::rfc3339),
        resolve: row.resolve_ns.map(calendar::rfc3339),
        time_to_detect_seconds: secs(row.detect_ns.saturating_sub(row.start_ns)),
        time_to_recover_seconds: row.recover_ns.map(|r| secs(r.saturating_sub(row.start_ns))),
        bad_events: row.bad_events,
        budget_spent_ratio: row.budget_spent_ppm as f64 / 1e6,
        runbook: row.runbook.clone(),
        labels: row.labels.iter().cloned().collect(),
        workflow: if log.resolved.is_some() || row.resolve_ns.is_some() {
            "resolved"
        } else if log.acknowledged.is_some() {
            "acknowledged"
        } else {
            "triggered"
        },
        acknowledged: log.acknowledged.clone(),
        resolved_by: log.resolved.clone(),
        notes: log.notes.clone(),
        time_to_acknowledge_seconds: log
            .acknowledged_ns()
            .map(|a| secs(a.saturating_sub(row.detect_ns))),
    }
}

fn summary(s: Option<levee_slo::Summary>) -> Option<DurationSummary> {
    s.map(|s| DurationSummary {
        count: s.count,
        mean_seconds: s.mean.as_secs_f64(),
        median_seconds: s.median.as_secs_f64(),
        p90_seconds: s.p90.as_secs_f64(),
        max_seconds: s.max.as_secs_f64(),
    })
}

pub(super) fn build_report(state: &EngineState, now: Nanos) -> SloReport {
    let mut slos = Vec::new();
    let mut tiers = Vec::new();
    for series in state.series.values().filter(|s| s.active) {
        let status = series_status(series, now);
        let m = &series.metrics;
        m.objective.set(status.objective);
        m.budget_ratio
            .set(status.budget.remaining_ratio.unwrap_or(f64::NAN));
        m.budget_seconds
            .set(status.budget.remaining_seconds.unwrap_or(f64::NAN));
        for (w, sli, burn) in &m.windows {
            let c = series.judged().counts(now, *w);
            sli.set(ratio(c).unwrap_or(f64::NAN));
            match Burn::new(c, series.def.objective, series.def.policy.min_events) {
                Burn::Rate(r) => burn.set(r.to_f64()),
                Burn::NoData => burn.clear(),
            }
        }
        for (s, g) in &m.firing {
            g.set(f64::from(u8::from(matches!(
                series.alerts.state(*s),
                AlertState::Firing { .. }
            ))));
        }
        match series.def.tier {
            Some(tier) => {
                if let Some(u) = &m.uptime {
                    u.set(status.sli_value.unwrap_or(f64::NAN));
                }
                let recent = series.buckets.counts(now, Duration::from_secs(300));
                let hour = Burn::new(series.buckets.counts(now, HOUR), series.def.objective, 10);
                let observed = observed_since_first_event(
                    &series.buckets,
                    now,
                    period_at(series.def.period, now).reach,
                );
                let no_data = status.events < TIER_MIN_EVENTS || observed < TIER_MIN_OBSERVED;
                let tier_status = if status.events == 0 {
                    "no_data"
                } else if recent.total >= 10 && recent.bad() * 2 > recent.total {
                    // An outage shows even before there is enough data
                    // for an uptime figure.
                    "outage"
                } else if no_data {
                    "no_data"
                } else if hour.exceeds(Factor::ONE) {
                    "degraded"
                } else {
                    "operational"
                };
                tiers.push(TierStatus {
                    tier: tier_name(tier),
                    period: status.period.clone(),
                    uptime: status.sli_value,
                    objective: status.objective,
                    budget: status.budget.clone(),
                    status: tier_status,
                    events: status.events,
                    no_data,
                    observed_seconds: observed.as_secs_f64(),
                });
            }
            None => slos.push(status),
        }
    }
    let mut report = SloReport {
        evaluated_at: Some(calendar::rfc3339(now)),
        slos,
        tiers,
        ..SloReport::default()
    };
    incidents_report(state, &mut report);
    report
}

/// Puts the incidents (newest first) and their MTTD, MTTA and MTTR into
/// `report`.
pub(super) fn incidents_report(state: &EngineState, report: &mut SloReport) {
    let as_incidents: Vec<levee_slo::Incident> = state
        .incidents
        .iter()
        .map(|i| {
            let r: &IncidentRow = &i.row;
            levee_slo::Incident {
                severity: Severity::Page,
                start: r.start_ns,
                start_clipped: r.start_clipped,
                detect: r.detect_ns,
                recover: r.recover_ns,
                resolve: r.resolve_ns,
                acknowledge: i.log.acknowledged_ns(),
                bad_events: r.bad_events,
                budget_spent_ppm: r.budget_spent_ppm,
            }
        })
        .collect();
    report.incidents = state.incidents.iter().rev().map(incident_status).collect();
    report.mttd = summary(incident::mttd(&as_incidents));
    report.mtta = summary(incident::mtta(&as_incidents));
    report.mttr = summary(incident::mttr(&as_incidents));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_and_durations_read_well() {
        assert_eq!(percent(999_000), "99.9%");
        assert_eq!(percent(999_950), "99.995%");
        assert_eq!(percent(990_000), "99%");
        assert_eq!(readable(1_872.0), "31m 12s");
        assert_eq!(readable(-90_000.0), "-1d 1h");
    }
}
