//! One objective's series: its definition from the config (`SeriesDef`),
//! its buckets, alerts and Prometheus series (`Series`), how a tick's
//! events are absorbed into it, and how its alert states are stored. A
//! time-slice series also judges its slices from its buckets as each tick
//! absorbs events, and its alerts, budget and burn rates read those
//! ([`levee_slo::timeslice`]); they are stored beside its buckets.

use levee_config::{Budgeting, Sli, Slo, SloObjective, SloPeriod, Tier};
use levee_core::metrics::{names, Counter, FloatGauge, Registry};
use levee_core::Nanos;
use levee_proxy::slo::{tier_series_id, SloCounter};
use levee_slo::{
    calendar, AlertState, Alerts, Buckets, Counts, IncidentOptions, Layout, Method, Objective,
    Policy, Severity, Slices,
};
use levee_store::{AlertRow, Batch, BucketRow};
use std::sync::Arc;
use std::time::Duration;

use super::{DAY, HOUR};

/// What one objective is judged by: the parts of its config the math needs.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct SeriesDef {
    pub(super) id: String,
    pub(super) slo: String,
    pub(super) description: Option<String>,
    pub(super) sli: &'static str,
    pub(super) threshold: Option<Duration>,
    pub(super) objective: Objective,
    pub(super) period: SloPeriod,
    /// Events, or time slices: what the budget, burn rates and alerts count.
    pub(super) budgeting: Budgeting,
    pub(super) policy: Policy,
    pub(super) labels: Vec<(String, String)>,
    pub(super) runbook: Option<String>,
    pub(super) scope: levee_config::SloScope,
    /// The status page's tier series, which never alert.
    pub(super) tier: Option<Tier>,
}

impl SeriesDef {
    pub(super) fn of(slo: &Slo, objective: &SloObjective) -> Self {
        let mut policy = crate::policy::alert_policy(slo);
        if slo.budgeting.slice().is_some() {
            // Windows count judged slices, not events: one judged slice is
            // data (`min_events` counts events, and a 5-minute window holds
            // five one-minute slices).
            policy.min_events = 1;
        }
        Self {
            id: objective.id.clone(),
            slo: slo.name.clone(),
            description: slo.description.clone(),
            sli: match slo.sli {
                Sli::Availability { .. } => "availability",
                Sli::Latency => "latency",
                Sli::JobCompletion => "job_completion",
            },
            threshold: objective.threshold,
            // Decoding keeps objectives strictly between 0 and 100 %.
            objective: Objective::from_ppm(objective.objective_ppm)
                .unwrap_or(Objective::from_ppm(999_000).expect("valid")),
            period: slo.period,
            budgeting: slo.budgeting,
            policy,
            labels: slo.labels.clone(),
            runbook: slo.runbook.clone(),
            scope: slo.scope.clone(),
            tier: None,
        }
    }

    pub(super) fn tier(tier: Tier, status: &levee_config::StatusPage) -> Self {
        let ppm = match tier {
            Tier::Core => status.core_objective_ppm,
            Tier::Optional => status.optional_objective_ppm,
        };
        Self {
            id: tier_series_id(tier).to_string(),
            slo: tier_series_id(tier).to_string(),
            description: None,
            sli: "availability",
            threshold: None,
            objective: Objective::from_ppm(ppm)
                .unwrap_or(Objective::from_ppm(999_000).expect("valid")),
            period: SloPeriod::Rolling(status.period),
            budgeting: Budgeting::Occurrences,
            policy: Policy {
                rules: Vec::new(),
                min_events: 0,
                pending_for: Duration::ZERO,
            },
            labels: Vec::new(),
            runbook: None,
            scope: levee_config::SloScope {
                tier: Some(tier),
                ..Default::default()
            },
            tier: Some(tier),
        }
    }

    /// The window incidents are traced with: the shortest page window.
    pub(super) fn incident_window(&self) -> Duration {
        self.policy
            .rules
            .iter()
            .filter(|r| r.severity == Severity::Page)
            .map(|r| r.short)
            .min()
            .unwrap_or(Duration::from_secs(300))
    }

    /// The windows reported: every rule window, shortest first.
    pub(super) fn windows(&self) -> Vec<Duration> {
        let mut w: Vec<Duration> = self
            .policy
            .rules
            .iter()
            .flat_map(|r| [r.short, r.long])
            .collect();
        w.sort();
        w.dedup();
        w
    }

    /// The judged slices' store for this definition in `layout`, restored
    /// from `rows` (stored under [`slices_key`]); `None` for occurrences.
    pub(super) fn slices(&self, layout: Layout, rows: Vec<BucketRow>) -> Option<Slices> {
        let (width, method) = match self.budgeting {
            Budgeting::Occurrences => return None,
            Budgeting::Timeslices { slice, target_ppm } => {
                (slice, Method::Timeslices { target_ppm })
            }
            Budgeting::RatioTimeslices { slice } => (slice, Method::RatioTimeslices),
        };
        let mut slices = match Slices::new(width, method, layout) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(slo = %self.id, error = %e, "invalid SLO time-slice layout");
                return None;
            }
        };
        for row in rows {
            slices.restore(row.coarse, row.start_ns, Counts::new(row.good, row.total));
        }
        Some(slices)
    }

    pub(super) fn incident_options(&self, now: Nanos) -> IncidentOptions {
        IncidentOptions {
            window: self.incident_window(),
            min_events: 0,
            period: period_at(self.period, now).length,
        }
    }
}

/// The store key of an objective's judged slices: its id, and how they
/// were judged, after a `#` no objective id can carry (ids are names and
/// `:`), so slices judged another way are never restored as these.
pub(super) fn slices_key(def: &SeriesDef) -> String {
    let how = match def.budgeting {
        Budgeting::Occurrences => String::new(),
        Budgeting::Timeslices { slice, target_ppm } => {
            format!("timeslices:{}:{target_ppm}", slice.as_millis())
        }
        Budgeting::RatioTimeslices { slice } => format!("ratio_timeslices:{}", slice.as_millis()),
    };
    format!("{}#{how}", def.id)
}

/// An SLO period as of one moment.
#[derive(Debug, Clone, Copy)]
pub(super) struct PeriodAt {
    /// How far back it reaches from now.
    pub(super) reach: Duration,
    /// Its full length: the budget's denominator in time.
    pub(super) length: Duration,
}

/// The period ending at `now`.
pub(super) fn period_at(period: SloPeriod, now: Nanos) -> PeriodAt {
    match period {
        SloPeriod::Rolling(d) => PeriodAt {
            reach: d,
            length: d,
        },
        SloPeriod::CalendarMonth => {
            let (start, len) = calendar::month_of(now.saturating_sub(1));
            PeriodAt {
                reach: Duration::from_nanos(now - start),
                length: len,
            }
        }
    }
}

pub(super) fn severity_name(s: Severity) -> &'static str {
    match s {
        Severity::Page => "page",
        Severity::Ticket => "ticket",
    }
}

pub(super) fn layout(bucket: Duration, period: SloPeriod) -> Layout {
    let fine_span = 7 * HOUR;
    Layout {
        fine: bucket,
        fine_span,
        coarse: HOUR,
        coarse_span: (31 * DAY).max(period.max_len() + HOUR) + fine_span + HOUR,
    }
}

/// Prometheus series of one objective, updated each tick.
#[derive(Debug)]
pub(super) struct SeriesMetrics {
    pub(super) events: Arc<Counter>,
    pub(super) bad: Arc<Counter>,
    pub(super) objective: Arc<FloatGauge>,
    pub(super) budget_ratio: Arc<FloatGauge>,
    pub(super) budget_seconds: Arc<FloatGauge>,
    pub(super) windows: Vec<(Duration, Arc<FloatGauge>, Arc<FloatGauge>)>,
    pub(super) firing: Vec<(Severity, Arc<FloatGauge>)>,
    pub(super) incidents: Arc<Counter>,
    pub(super) uptime: Option<Arc<FloatGauge>>,
}

impl SeriesMetrics {
    pub(super) fn new(def: &SeriesDef, registry: &Registry) -> Self {
        let id = def.id.as_str();
        let l = [("slo", id)];
        let windows = def
            .windows()
            .into_iter()
            .map(|w| {
                let name = levee_config::format_duration(w);
                let labels = [("slo", id), ("window", name.as_str())];
                (
                    w,
                    registry.float_gauge(
                        names::SLO_SLI,
                        "Share of good events over the window.",
                        &labels,
                    ),
                    registry.float_gauge(
                        names::SLO_BURN_RATE,
                        "Error budget burn rate over the window (1 spends the budget exactly over the period).",
                        &labels,
                    ),
                )
            })
            .collect();
        let firing = Severity::ALL
            .iter()
            .filter(|s| def.policy.rules.iter().any(|r| r.severity == **s))
            .map(|&s| {
                (
                    s,
                    registry.float_gauge(
                        names::SLO_ALERT_FIRING,
                        "1 while the SLO's alert of this severity fires.",
                        &[("slo", id), ("severity", severity_name(s))],
                    ),
                )
            })
            .collect();
        Self {
            events: registry.counter(names::SLO_EVENTS, "Events counted by the SLO.", &l),
            bad: registry.counter(names::SLO_BAD_EVENTS, "Bad events counted by the SLO.", &l),
            objective: registry.float_gauge(names::SLO_OBJECTIVE, "The SLO's objective.", &l),
            budget_ratio: registry.float_gauge(
                names::SLO_BUDGET_REMAINING,
                "Share of the period's error budget left.",
                &l,
            ),
            budget_seconds: registry.float_gauge(
                names::SLO_BUDGET_REMAINING_SECONDS,
                "Error budget left, as seconds of full outage.",
                &l,
            ),
            windows,
            firing,
            incidents: registry.counter(
                names::SLO_INCIDENTS,
                "Incidents opened by the SLO's page alert.",
                &l,
            ),
            uptime: def.tier.map(|t| {
                registry.float_gauge(
                    names::TIER_UPTIME,
                    "Share of good requests over the status page period.",
                    &[("tier", tier_name(t))],
                )
            }),
        }
    }
}

impl SeriesMetrics {
    /// Empties the gauges of a series no longer configured.
    pub(super) fn clear(&self) {
        self.objective.clear();
        self.budget_ratio.clear();
        self.budget_seconds.clear();
        for (_, sli, burn) in &self.windows {
            sli.clear();
            burn.clear();
        }
        for (_, firing) in &self.firing {
            firing.clear();
        }
        if let Some(u) = &self.uptime {
            u.clear();
        }
    }
}

pub(super) fn tier_name(t: Tier) -> &'static str {
    match t {
        Tier::Core => "core",
        Tier::Optional => "optional",
    }
}

/// One objective's history and alerts.
#[derive(Debug)]
pub(super) struct Series {
    pub(super) def: SeriesDef,
    pub(super) buckets: Buckets,
    /// Time-slice budgeting: the slices judged from `buckets`.
    pub(super) slices: Option<Slices>,
    pub(super) alerts: Alerts,
    pub(super) counter: Arc<SloCounter>,
    pub(super) metrics: SeriesMetrics,
    /// Whether the series is in the current config (removed ones keep
    /// their history in the store but are no longer evaluated).
    pub(super) active: bool,
    /// Events left out of the budget by maintenance windows, since this
    /// process started.
    pub(super) excluded_events: u64,
}

impl Series {
    /// What the budget, burn rates and alerts count: judged slices for
    /// time-slice budgeting, events otherwise.
    pub(super) fn judged(&self) -> &Buckets {
        self.slices.as_ref().map_or(&self.buckets, Slices::buckets)
    }
}

/// Whether the series' events at `at` fall in a maintenance window that
/// leaves the budget. A series matches by its SLO's name, or by its tier
/// (the tier series, and SLOs scoped to a tier).
pub(super) fn excluded(
    series: &Series,
    at: Nanos,
    exclusions: &[crate::status_board::Exclusion],
) -> bool {
    let tier = series.def.tier.or(series.def.scope.tier).map(tier_name);
    exclusions
        .iter()
        .any(|x| x.excludes(at, &series.def.slo, tier))
}

/// Drains the series' counter into the bucket ending at `end` (adding
/// nothing still advances time), counts the events in its metrics, and
/// stages the fine and coarse buckets touched for the next write. With
/// `excluded` (a maintenance window that leaves the budget), the events
/// are drained and counted as excluded, and the bucket gets none.
pub(super) fn absorb(series: &mut Series, end: Nanos, batch: &mut Batch, excluded: bool) {
    let drained = series.counter.drain();
    absorb_counts(series, end, batch, excluded, drained);
}

/// Like [`absorb`], with the bucket's events given (a fleet's totals)
/// rather than drained from this replica's counter.
pub(super) fn absorb_counts(
    series: &mut Series,
    end: Nanos,
    batch: &mut Batch,
    excluded: bool,
    (mut good, mut total): (u64, u64),
) {
    if excluded {
        series.excluded_events += total;
        (good, total) = (0, 0);
    }
    series.buckets.add(end - 1, good, total);
    series.metrics.events.add(total);
    series.metrics.bad.add(total - good);
    for coarse in [false, true] {
        let (start, c) = if coarse {
            series.buckets.coarse_bucket(end - 1)
        } else {
            series.buckets.fine_bucket(end - 1)
        };
        if c.total == 0 {
            continue;
        }
        let row = BucketRow {
            slo: series.def.id.clone(),
            coarse,
            start_ns: start,
            good: c.good,
            total: c.total,
        };
        stage(batch, row);
    }
    let Some(slices) = series.slices.as_mut() else {
        return;
    };
    let key = slices_key(&series.def);
    for (start, verdict) in slices.catch_up(&series.buckets, end) {
        if verdict.is_none() {
            continue;
        }
        let buckets = slices.buckets();
        for (coarse, (start, c)) in [
            (false, buckets.fine_bucket(start)),
            (true, buckets.coarse_bucket(start)),
        ] {
            stage(
                batch,
                BucketRow {
                    slo: key.clone(),
                    coarse,
                    start_ns: start,
                    good: c.good,
                    total: c.total,
                },
            );
        }
    }
}

/// Queues a bucket row, replacing an older one for the same bucket.
fn stage(batch: &mut Batch, row: BucketRow) {
    batch
        .buckets
        .retain(|r| !(r.slo == row.slo && r.coarse == row.coarse && r.start_ns == row.start_ns));
    batch.buckets.push(row);
}

pub(super) fn restore_alerts(alerts: &mut Alerts, rows: &[AlertRow]) {
    for row in rows {
        let severity = match row.severity.as_str() {
            "page" => Severity::Page,
            "ticket" => Severity::Ticket,
            _ => continue,
        };
        let since = row.since_ns;
        let state = match row.state.as_str() {
            "pending" => AlertState::Pending { since },
            "firing" => AlertState::Firing { since },
            "resolved" => AlertState::Resolved { at: since },
            _ => AlertState::Inactive,
        };
        alerts.restore(severity, state);
    }
}

pub(super) fn alert_row(slo: &str, severity: Severity, state: AlertState) -> AlertRow {
    let (name, since) = alert_state_parts(state);
    AlertRow {
        slo: slo.to_string(),
        severity: severity_name(severity).to_string(),
        state: name.to_string(),
        since_ns: since,
    }
}

pub(super) fn alert_state_parts(state: AlertState) -> (&'static str, Nanos) {
    match state {
        AlertState::Inactive => ("inactive", 0),
        AlertState::Pending { since } => ("pending", since),
        AlertState::Firing { since } => ("firing", since),
        AlertState::Resolved { at } => ("resolved", at),
    }
}
