//! The SLO evaluation loop: every tick it drains the data-plane counters
//! ([`crate::slo`]) into each objective's buckets, evaluates the burn-rate
//! alerts, opens and follows incidents, sends notifications, persists what
//! changed to the store, and publishes a report for the admin API and the
//! metrics. The math is `levee-slo`'s; this module only wires it, with
//! time passed in (Unix nanoseconds), so a restart continues where the
//! stored history ends.

use crate::notify::{Notification, Notifier};
use crate::slo::{tier_series_id, SloCounter, SloCounters};
use arc_swap::ArcSwap;
use levee_config::{AlertSeverity, Config, Sli, Slo, SloObjective, SloPeriod, Tier};
use levee_core::metrics::{names, Counter, FloatGauge, Registry};
use levee_core::Nanos;
use levee_slo::{
    calendar, incident, AlertState, Alerts, Buckets, Budget, Burn, Counts, Exhaustion, Factor,
    IncidentOptions, Layout, Objective, Policy, Rule, Severity, Transition,
};
use levee_store::{AlertRow, Batch, BucketRow, IncidentRow, Retention, Snapshot, Store};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(86_400);

/// How often firing alerts are sent again to Alertmanager, which forgets
/// an alert not refreshed before its `endsAt`.
const ALERTMANAGER_RESEND: Duration = Duration::from_secs(60);

/// What one objective is judged by: the parts of its config the math needs.
#[derive(Debug, Clone, PartialEq)]
struct SeriesDef {
    id: String,
    slo: String,
    description: Option<String>,
    sli: &'static str,
    threshold: Option<Duration>,
    objective: Objective,
    period: SloPeriod,
    policy: Policy,
    labels: Vec<(String, String)>,
    runbook: Option<String>,
    scope: levee_config::SloScope,
    /// The status page's tier series, which never alert.
    tier: Option<Tier>,
}

impl SeriesDef {
    fn of(slo: &Slo, objective: &SloObjective) -> Self {
        let policy = match &slo.alerting.rules {
            None => Policy {
                min_events: slo.alerting.min_events,
                pending_for: slo.alerting.pending_for,
                ..Policy::sre_workbook_for(period_len_nominal(slo.period))
            },
            Some(rules) => Policy {
                rules: rules
                    .iter()
                    .map(|r| Rule {
                        severity: severity(r.severity),
                        long: r.long,
                        short: r.short,
                        factor: Factor::from_milli(r.factor_milli),
                    })
                    .collect(),
                min_events: slo.alerting.min_events,
                pending_for: slo.alerting.pending_for,
            },
        };
        Self {
            id: objective.id.clone(),
            slo: slo.name.clone(),
            description: slo.description.clone(),
            sli: match slo.sli {
                Sli::Availability { .. } => "availability",
                Sli::Latency => "latency",
            },
            threshold: objective.threshold,
            // Decoding keeps objectives strictly between 0 and 100 %.
            objective: Objective::from_ppm(objective.objective_ppm)
                .unwrap_or(Objective::from_ppm(999_000).expect("valid")),
            period: slo.period,
            policy,
            labels: slo.labels.clone(),
            runbook: slo.runbook.clone(),
            scope: slo.scope.clone(),
            tier: None,
        }
    }

    fn tier(tier: Tier, status: &levee_config::StatusPage) -> Self {
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
    fn incident_window(&self) -> Duration {
        self.policy
            .rules
            .iter()
            .filter(|r| r.severity == Severity::Page)
            .map(|r| r.short)
            .min()
            .unwrap_or(Duration::from_secs(300))
    }

    /// The windows reported: every rule window, shortest first.
    fn windows(&self) -> Vec<Duration> {
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

    fn incident_options(&self, now: Nanos) -> IncidentOptions {
        IncidentOptions {
            window: self.incident_window(),
            min_events: 0,
            period: period_at(self.period, now).1,
        }
    }
}

/// A nominal length for scaling the workbook factors: 30 days for a month.
fn period_len_nominal(period: SloPeriod) -> Duration {
    match period {
        SloPeriod::Rolling(d) => d,
        SloPeriod::CalendarMonth => 30 * DAY,
    }
}

/// The period ending at `now`: how far back it reaches, and its full length
/// (the budget's denominator in time).
fn period_at(period: SloPeriod, now: Nanos) -> (Duration, Duration) {
    match period {
        SloPeriod::Rolling(d) => (d, d),
        SloPeriod::CalendarMonth => {
            let (start, len) = calendar::month_of(now.saturating_sub(1));
            (Duration::from_nanos(now - start), len)
        }
    }
}

fn severity(s: AlertSeverity) -> Severity {
    match s {
        AlertSeverity::Page => Severity::Page,
        AlertSeverity::Ticket => Severity::Ticket,
    }
}

fn severity_name(s: Severity) -> &'static str {
    match s {
        Severity::Page => "page",
        Severity::Ticket => "ticket",
    }
}

fn layout(bucket: Duration, period: SloPeriod) -> Layout {
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
struct SeriesMetrics {
    events: Arc<Counter>,
    bad: Arc<Counter>,
    objective: Arc<FloatGauge>,
    budget_ratio: Arc<FloatGauge>,
    budget_seconds: Arc<FloatGauge>,
    windows: Vec<(Duration, Arc<FloatGauge>, Arc<FloatGauge>)>,
    firing: Vec<(Severity, Arc<FloatGauge>)>,
    incidents: Arc<Counter>,
    uptime: Option<Arc<FloatGauge>>,
}

impl SeriesMetrics {
    fn new(def: &SeriesDef, registry: &Registry) -> Self {
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
    fn clear(&self) {
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

fn tier_name(t: Tier) -> &'static str {
    match t {
        Tier::Core => "core",
        Tier::Optional => "optional",
    }
}

/// One objective's history and alerts.
#[derive(Debug)]
struct Series {
    def: SeriesDef,
    buckets: Buckets,
    alerts: Alerts,
    counter: Arc<SloCounter>,
    metrics: SeriesMetrics,
    /// Whether the series is in the current config (removed ones keep
    /// their history in the store but are no longer evaluated).
    active: bool,
}

/// An incident and whether it still changes.
#[derive(Debug, Clone)]
struct TrackedIncident {
    row: IncidentRow,
    /// Recovered and resolved: nothing about it changes any more.
    settled: bool,
}

/// The mutable state of the loop.
struct EngineState {
    series: BTreeMap<String, Series>,
    /// Stored buckets and alert states of series not (yet) configured.
    stored_buckets: HashMap<String, Vec<BucketRow>>,
    stored_alerts: HashMap<String, Vec<AlertRow>>,
    incidents: Vec<TrackedIncident>,
    next_incident_id: u64,
    store: Option<Box<dyn Store>>,
    /// Changes not yet written (kept on a failed write, retried next tick).
    batch: Batch,
    last_prune_hour: u64,
    last_resend: Nanos,
    config: Arc<Config>,
    last_tick: Nanos,
    /// A handover's successor before its predecessor's last flush: the
    /// store is not loaded yet, so nothing is evaluated or written (the
    /// counters keep every event until then).
    awaiting_store: bool,
}

/// The SLO engine of one gateway.
pub(crate) struct SloEngine {
    pub(crate) counters: SloCounters,
    state: tokio::sync::Mutex<EngineState>,
    report: ArcSwap<SloReport>,
    notifier: Notifier,
    registry: Arc<Registry>,
    store_label: String,
}

impl std::fmt::Debug for SloEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SloEngine")
            .field("store", &self.store_label)
            .finish_non_exhaustive()
    }
}

impl SloEngine {
    /// An engine over `store` (or memory only), restoring what it holds;
    /// `deferred`: not yet, see [`SloEngine::load_deferred`].
    pub(crate) fn new(
        store: Option<Box<dyn Store>>,
        config: Arc<Config>,
        registry: Arc<Registry>,
        deferred: bool,
    ) -> Result<Self, String> {
        let mut store = store;
        let snapshot = match store.as_mut() {
            Some(s) if !deferred => s.load().map_err(|e| e.to_string())?,
            _ => Snapshot::default(),
        };
        let store_label = store
            .as_ref()
            .map_or("memory".to_string(), |s| s.describe());
        let mut stored_buckets: HashMap<String, Vec<BucketRow>> = HashMap::new();
        for row in snapshot.buckets {
            stored_buckets.entry(row.slo.clone()).or_default().push(row);
        }
        let mut stored_alerts: HashMap<String, Vec<AlertRow>> = HashMap::new();
        for row in snapshot.alerts {
            stored_alerts.entry(row.slo.clone()).or_default().push(row);
        }
        let incidents = snapshot
            .incidents
            .into_iter()
            .map(|row| TrackedIncident {
                settled: row.recover_ns.is_some() && row.resolve_ns.is_some(),
                row,
            })
            .collect();
        let notifier = Notifier::start(&registry);
        let engine = Self {
            counters: SloCounters::default(),
            state: tokio::sync::Mutex::new(EngineState {
                series: BTreeMap::new(),
                stored_buckets,
                stored_alerts,
                incidents,
                next_incident_id: snapshot.max_incident_id.map_or(1, |m| m + 1),
                store,
                batch: Batch::default(),
                last_prune_hour: 0,
                last_resend: 0,
                config: config.clone(),
                last_tick: 0,
                awaiting_store: deferred,
            }),
            report: ArcSwap::from_pointee(SloReport::default()),
            notifier,
            registry,
            store_label,
        };
        Ok(engine)
    }

    /// Loads the store now (a handover's successor, once its predecessor
    /// has written its last events) and starts evaluating. The series are
    /// rebuilt from the stored rows; events counted meanwhile are still in
    /// the counters and go into the next tick's bucket.
    pub(crate) async fn load_deferred(&self) {
        let mut state = self.state.lock().await;
        if !state.awaiting_store {
            return;
        }
        if let Some(mut store) = state.store.take() {
            let (store, loaded) = tokio::task::spawn_blocking(move || {
                let loaded = store.load();
                (store, loaded)
            })
            .await
            .expect("store reads do not panic");
            state.store = Some(store);
            match loaded {
                Ok(snapshot) => {
                    state.stored_buckets.clear();
                    for row in snapshot.buckets {
                        state
                            .stored_buckets
                            .entry(row.slo.clone())
                            .or_default()
                            .push(row);
                    }
                    state.stored_alerts.clear();
                    for row in snapshot.alerts {
                        state
                            .stored_alerts
                            .entry(row.slo.clone())
                            .or_default()
                            .push(row);
                    }
                    state.incidents = snapshot
                        .incidents
                        .into_iter()
                        .map(|row| TrackedIncident {
                            settled: row.recover_ns.is_some() && row.resolve_ns.is_some(),
                            row,
                        })
                        .collect();
                    state.next_incident_id = snapshot.max_incident_id.map_or(1, |m| m + 1);
                    // Nothing was absorbed yet: rebuild from the stored rows.
                    state.series.clear();
                }
                Err(e) => {
                    tracing::error!(error = %e, "loading the SLO store after the handover failed; continuing without its history");
                }
            }
        }
        state.awaiting_store = false;
        let config = state.config.clone();
        drop(state);
        self.configure(config).await;
        tracing::info!(store = %self.store_label, "SLO history loaded after the handover");
    }

    /// Where state is kept, for logs.
    pub(crate) fn store_label(&self) -> &str {
        &self.store_label
    }

    /// The latest report.
    pub(crate) fn report(&self) -> Arc<SloReport> {
        self.report.load_full()
    }

    /// Takes a new config: series for new objectives (with their stored
    /// history), new definitions for changed ones, removed ones set aside.
    pub(crate) async fn configure(&self, config: Arc<Config>) {
        self.notifier.configure(&config.alerting.webhooks);
        let mut state = self.state.lock().await;
        let mut defs: Vec<SeriesDef> = vec![
            SeriesDef::tier(Tier::Core, &config.status_page),
            SeriesDef::tier(Tier::Optional, &config.status_page),
        ];
        for slo in &config.slos {
            for o in &slo.objectives {
                defs.push(SeriesDef::of(slo, o));
            }
        }
        for s in state.series.values_mut() {
            s.active = false;
        }
        for def in defs {
            let layout = layout(config.alerting.bucket, def.period);
            let state = &mut *state;
            match state.series.get_mut(&def.id) {
                Some(s) if s.buckets.layout() == layout => {
                    if s.def != def {
                        s.metrics = SeriesMetrics::new(&def, &self.registry);
                        s.def = def;
                    }
                    s.active = true;
                }
                existing => {
                    // New, or reshaped: start from the stored rows (or the
                    // old buckets' rows) in the new layout.
                    let rows: Vec<BucketRow> = match existing {
                        Some(old) => old
                            .buckets
                            .non_empty()
                            .into_iter()
                            .map(|(coarse, start, c)| BucketRow {
                                slo: def.id.clone(),
                                coarse,
                                start_ns: start,
                                good: c.good,
                                total: c.total,
                            })
                            .collect(),
                        None => state.stored_buckets.remove(&def.id).unwrap_or_default(),
                    };
                    let Ok(mut buckets) = Buckets::new(layout) else {
                        tracing::error!(slo = %def.id, "invalid SLO bucket layout");
                        continue;
                    };
                    let (fine_ns, coarse_ns) = (buckets.fine_ns(), buckets.coarse_ns());
                    let mut dropped = 0;
                    for row in rows {
                        let width = if row.coarse { coarse_ns } else { fine_ns };
                        if row.start_ns % width != 0
                            || !buckets.restore(
                                row.coarse,
                                row.start_ns,
                                Counts::new(row.good, row.total),
                            )
                        {
                            dropped += 1;
                        }
                    }
                    if dropped > 0 {
                        tracing::warn!(slo = %def.id, dropped, "stored SLO buckets did not fit the bucket layout");
                    }
                    let mut alerts = Alerts::new();
                    if let Some(rows) = state.stored_alerts.remove(&def.id) {
                        restore_alerts(&mut alerts, &rows);
                    }
                    let previous_alerts = state.series.get(&def.id).map(|s| s.alerts.clone());
                    let metrics = SeriesMetrics::new(&def, &self.registry);
                    let counter = self.counters.get(&def.id);
                    state.series.insert(
                        def.id.clone(),
                        Series {
                            alerts: previous_alerts.unwrap_or(alerts),
                            def,
                            buckets,
                            counter,
                            metrics,
                            active: true,
                        },
                    );
                }
            }
        }
        state.config = config;
    }

    /// One evaluation at `now` (Unix nanoseconds): see the module docs.
    pub(crate) async fn tick(&self, now: Nanos) {
        let mut state = self.state.lock().await;
        let state = &mut *state;
        let bucket_ns = u64::try_from(state.config.alerting.bucket.as_nanos())
            .unwrap_or(u64::MAX)
            .max(1);
        // Windows end on a bucket boundary; events drained now happened
        // before it and go into the bucket just ended.
        let end = now - now % bucket_ns;
        if end <= state.last_tick || state.awaiting_store {
            return;
        }
        state.last_tick = end;
        let resend = now.saturating_sub(state.last_resend) >= ALERTMANAGER_RESEND.as_nanos() as u64;
        if resend {
            state.last_resend = now;
        }
        let mut notifications = Vec::new();
        for series in state.series.values_mut().filter(|s| s.active) {
            absorb(series, end, &mut state.batch);
            let transitions = series.alerts.evaluate(
                &series.def.policy,
                &series.buckets,
                series.def.objective,
                end,
            );
            for t in &transitions {
                state
                    .batch
                    .alerts
                    .push(alert_row(&series.def.id, t.severity, t.to));
                match t.to {
                    AlertState::Firing { .. } => {
                        let incident = (t.severity == Severity::Page).then(|| {
                            let id = state.next_incident_id;
                            state.next_incident_id += 1;
                            series.metrics.incidents.inc();
                            let row = trace_incident(series, id, t, None, end);
                            tracing::warn!(slo = %series.def.id, incident = id, "SLO page alert fired; incident opened");
                            stage_incident(&mut state.batch, &row);
                            state.incidents.push(TrackedIncident { row, settled: false });
                            id
                        });
                        if t.severity == Severity::Ticket {
                            tracing::warn!(slo = %series.def.id, "SLO ticket alert fired");
                        }
                        notifications.push(notification(
                            series, t.severity, true, false, t.at, None, incident, end,
                        ));
                    }
                    AlertState::Resolved { at } => {
                        let mut incident = None;
                        if t.severity == Severity::Page {
                            if let Some(open) =
                                state.incidents.iter_mut().rev().find(|i| {
                                    i.row.slo == series.def.id && i.row.resolve_ns.is_none()
                                })
                            {
                                open.row.resolve_ns = Some(at);
                                open.settled = open.row.recover_ns.is_some();
                                incident = Some(open.row.id);
                                stage_incident(&mut state.batch, &open.row);
                            }
                        }
                        tracing::info!(slo = %series.def.id, severity = severity_name(t.severity), "SLO alert resolved");
                        let since = match t.from {
                            AlertState::Firing { since } => since,
                            _ => at,
                        };
                        notifications.push(notification(
                            series,
                            t.severity,
                            false,
                            false,
                            since,
                            Some(at),
                            incident,
                            end,
                        ));
                    }
                    _ => {}
                }
            }
            if resend {
                for &s in &Severity::ALL {
                    if let AlertState::Firing { since } = series.alerts.state(s) {
                        if !transitions.iter().any(|t| t.severity == s) {
                            let incident = state
                                .incidents
                                .iter()
                                .rev()
                                .find(|i| i.row.slo == series.def.id && i.row.resolve_ns.is_none())
                                .map(|i| i.row.id)
                                .filter(|_| s == Severity::Page);
                            notifications.push(notification(
                                series, s, true, true, since, None, incident, end,
                            ));
                        }
                    }
                }
            }
            // Follow the incidents not yet recovered: their recovery, bad
            // events and budget spent still change. Once recovered they
            // keep those figures (only the alert's resolution is left).
            for tracked in state
                .incidents
                .iter_mut()
                .filter(|i| !i.settled && i.row.recover_ns.is_none() && i.row.slo == series.def.id)
            {
                if tracked.row.detect_ns < series.buckets.fine_start() {
                    // Its buckets are gone (a long outage of Levee itself):
                    // tracing again would only lose what was recorded.
                    tracked.settled = true;
                    continue;
                }
                let firing = Transition {
                    severity: Severity::Page,
                    from: AlertState::Inactive,
                    to: AlertState::Firing {
                        since: tracked.row.detect_ns,
                    },
                    at: tracked.row.detect_ns,
                };
                let updated =
                    trace_incident(series, tracked.row.id, &firing, Some(&tracked.row), end);
                tracked.settled = updated.recover_ns.is_some() && updated.resolve_ns.is_some();
                if updated != tracked.row {
                    tracked.row = updated;
                    stage_incident(&mut state.batch, &tracked.row);
                }
            }
        }
        // SLOs removed from the config: their firing alerts resolve (and
        // say so) and their open incidents close, rather than hang.
        for series in state.series.values_mut().filter(|s| !s.active) {
            for &severity in &Severity::ALL {
                let AlertState::Firing { since } = series.alerts.state(severity) else {
                    continue;
                };
                let resolved = AlertState::Resolved { at: end };
                series.alerts.restore(severity, resolved);
                state
                    .batch
                    .alerts
                    .push(alert_row(&series.def.id, severity, resolved));
                let mut incident = None;
                for open in state
                    .incidents
                    .iter_mut()
                    .filter(|i| i.row.slo == series.def.id && i.row.resolve_ns.is_none())
                {
                    open.row.resolve_ns = Some(end);
                    open.row.recover_ns.get_or_insert(end);
                    open.settled = true;
                    incident = Some(open.row.id);
                    stage_incident(&mut state.batch, &open.row);
                }
                tracing::info!(slo = %series.def.id, "SLO removed from the config; its alert is resolved");
                notifications.push(notification(
                    series,
                    severity,
                    false,
                    false,
                    since,
                    Some(end),
                    incident.filter(|_| severity == Severity::Page),
                    end,
                ));
            }
            series.metrics.clear();
        }
        for n in notifications {
            self.notifier.send(n);
        }
        let config = state.config.clone();
        let hour = end / 3_600_000_000_000;
        if hour != state.last_prune_hour {
            state.last_prune_hour = hour;
            let fine_span = 7 * HOUR;
            let longest = state
                .series
                .values()
                .map(|s| layout(config.alerting.bucket, s.def.period).coarse_span)
                .max()
                .unwrap_or(31 * DAY);
            state.batch.prune = Some(Retention {
                fine_before_ns: end.saturating_sub(fine_span.as_nanos() as u64),
                coarse_before_ns: end.saturating_sub(longest.as_nanos() as u64),
                incidents_before_ns: end
                    .saturating_sub(config.store.incident_retention.as_nanos() as u64),
                max_incidents: config.store.max_incidents,
            });
            let keep_from = end.saturating_sub(config.store.incident_retention.as_nanos() as u64);
            state
                .incidents
                .retain(|i| i.row.resolve_ns.is_none_or(|r| r >= keep_from));
            let excess = state
                .incidents
                .len()
                .saturating_sub(config.store.max_incidents);
            state.incidents.drain(..excess);
        }
        self.flush(state).await;
        let report = build_report(state, end);
        self.report.store(Arc::new(report));
    }

    /// Writes the pending batch to the store, off the async threads.
    async fn flush(&self, state: &mut EngineState) {
        if state.batch.is_empty() {
            return;
        }
        let Some(mut store) = state.store.take() else {
            state.batch = Batch::default();
            return;
        };
        let batch = std::mem::take(&mut state.batch);
        let (store, batch, result) = tokio::task::spawn_blocking(move || {
            let result = store.write(&batch);
            (store, batch, result)
        })
        .await
        .expect("store writes do not panic");
        state.store = Some(store);
        if let Err(e) = result {
            tracing::error!(error = %e, "writing SLO state failed; retrying next tick");
            // Keep the rows for the next attempt (newer rows replace them).
            let mut kept = batch;
            kept.buckets.append(&mut state.batch.buckets);
            kept.alerts.append(&mut state.batch.alerts);
            kept.incidents.append(&mut state.batch.incidents);
            kept.prune = state.batch.prune.or(kept.prune);
            state.batch = kept;
        }
    }

    /// Drains and persists everything now: called at shutdown, so a restart
    /// loses no event.
    pub(crate) async fn flush_now(&self, now: Nanos) {
        {
            let mut state = self.state.lock().await;
            if state.awaiting_store {
                // A successor stopped before its predecessor finished: the
                // events it counted cannot be merged safely and are lost.
                tracing::warn!(
                    "stopping before the SLO store was loaded; recent SLO events are not saved"
                );
                return;
            }
            // Let the final tick land even inside the last bucket.
            let bucket_ns = u64::try_from(state.config.alerting.bucket.as_nanos())
                .unwrap_or(1)
                .max(1);
            if now - now % bucket_ns <= state.last_tick {
                let state = &mut *state;
                let end = state.last_tick;
                for series in state.series.values_mut().filter(|s| s.active) {
                    absorb(series, end, &mut state.batch);
                }
                self.flush(state).await;
                // The report shows what was just folded in.
                self.report.store(Arc::new(build_report(state, end)));
                return;
            }
        }
        self.tick(now).await;
    }
}

/// Drains the series' counter into the bucket ending at `end` (adding
/// nothing still advances time), counts the events in its metrics, and
/// stages the fine and coarse buckets touched for the next write.
fn absorb(series: &mut Series, end: Nanos, batch: &mut Batch) {
    let (good, total) = series.counter.drain();
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
        batch
            .buckets
            .retain(|r| !(r.slo == row.slo && r.coarse == coarse && r.start_ns == start));
        batch.buckets.push(row);
    }
}

/// Puts `row` in the next write, replacing an older copy.
fn stage_incident(batch: &mut Batch, row: &IncidentRow) {
    batch.incidents.retain(|r| r.id != row.id);
    batch.incidents.push(row.clone());
}

fn restore_alerts(alerts: &mut Alerts, rows: &[AlertRow]) {
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

fn alert_row(slo: &str, severity: Severity, state: AlertState) -> AlertRow {
    let (name, since) = alert_state_parts(state);
    AlertRow {
        slo: slo.to_string(),
        severity: severity_name(severity).to_string(),
        state: name.to_string(),
        since_ns: since,
    }
}

fn alert_state_parts(state: AlertState) -> (&'static str, Nanos) {
    match state {
        AlertState::Inactive => ("inactive", 0),
        AlertState::Pending { since } => ("pending", since),
        AlertState::Firing { since } => ("firing", since),
        AlertState::Resolved { at } => ("resolved", at),
    }
}

/// The incident opened by `firing`, traced in the series' buckets; with
/// `previous`, its id, start and resolution are kept.
fn trace_incident(
    series: &Series,
    id: u64,
    firing: &Transition,
    previous: Option<&IncidentRow>,
    now: Nanos,
) -> IncidentRow {
    let traced = incident::incidents(
        std::slice::from_ref(firing),
        Severity::Page,
        &series.buckets,
        series.def.objective,
        &series.def.incident_options(now),
    );
    let i = traced.first().copied();
    let (start, clipped) = match (previous, i) {
        (Some(p), _) => (p.start_ns, p.start_clipped),
        (None, Some(i)) => (i.start, i.start_clipped),
        (None, None) => (firing.at, false),
    };
    IncidentRow {
        id,
        slo: series.def.id.clone(),
        severity: "page".to_string(),
        start_ns: start,
        start_clipped: clipped,
        detect_ns: firing.at,
        // Recovery never comes before the start that was first recorded.
        recover_ns: i.and_then(|i| i.recover).map(|r| r.max(start)),
        resolve_ns: previous.and_then(|p| p.resolve_ns),
        bad_events: i.map_or(0, |i| i.bad_events),
        budget_spent_ppm: i.map_or(0, |i| i.budget_spent_ppm),
        runbook: series.def.runbook.clone(),
        labels: series.def.labels.clone(),
    }
}

#[allow(clippy::too_many_arguments)]
fn notification(
    series: &Series,
    severity: Severity,
    firing: bool,
    refresh: bool,
    starts_at: Nanos,
    ends_at: Option<Nanos>,
    incident: Option<u64>,
    now: Nanos,
) -> Notification {
    let status = series_status(series, now);
    let def = &series.def;
    let what = match def.threshold {
        Some(t) => format!(
            "{} of requests within {}",
            percent(def.objective.ppm()),
            levee_config::format_duration(t)
        ),
        None => format!("{} availability", percent(def.objective.ppm())),
    };
    let summary = if firing {
        format!(
            "SLO {} is burning its error budget ({})",
            def.id,
            severity_name(severity)
        )
    } else {
        format!("SLO {} is no longer burning its error budget", def.id)
    };
    let budget = status
        .budget
        .remaining_ratio
        .map_or("unknown".to_string(), |r| format!("{:.1}%", r * 100.0));
    let description = format!(
        "Objective {what} over {}. Error budget left: {budget}.{}",
        period_name(def.period),
        def.description
            .as_ref()
            .map_or(String::new(), |d| format!(" {d}")),
    );
    Notification {
        firing,
        refresh,
        severity: match severity {
            Severity::Page => AlertSeverity::Page,
            Severity::Ticket => AlertSeverity::Ticket,
        },
        slo: def.id.clone(),
        slo_name: def.slo.clone(),
        labels: def.labels.clone(),
        summary,
        description,
        runbook: def.runbook.clone(),
        starts_at,
        ends_at,
        incident,
        status: serde_json::to_value(&status).unwrap_or_default(),
    }
}

fn percent(ppm: u32) -> String {
    let s = format!("{:.4}", f64::from(ppm) / 10_000.0);
    let s = s.trim_end_matches('0').trim_end_matches('.');
    format!("{s}%")
}

fn period_name(p: SloPeriod) -> String {
    match p {
        SloPeriod::Rolling(d) => levee_config::format_duration(d),
        SloPeriod::CalendarMonth => "calendar_month".to_string(),
    }
}

// ---------------------------------------------------------------------
// The report: what the admin API and the status page show.

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
    /// Time to recover over the recovered incidents kept.
    pub mttr: Option<DurationSummary>,
    /// Uptime and budget by tier.
    pub tiers: Vec<TierStatus>,
}

/// One SLO objective's state.
#[derive(Debug, Clone, Serialize)]
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
    /// The SLI over the period (good / events), absent without data.
    pub sli_value: Option<f64>,
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
    /// Good / events; absent without data.
    pub sli: Option<f64>,
    /// The burn rate; absent when the window has fewer than `min_events`.
    pub burn_rate: Option<f64>,
}

/// One alert's state.
#[derive(Debug, Clone, Serialize)]
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
}

/// A distribution of durations, in seconds.
#[derive(Debug, Clone, Serialize)]
pub struct DurationSummary {
    /// How many.
    pub count: usize,
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

fn budget_status(series: &Series, now: Nanos) -> BudgetStatus {
    let def = &series.def;
    let (reach, full) = period_at(def.period, now);
    let counts = series.buckets.counts(now, reach);
    let Budget::Known(b) = Budget::new(counts, def.objective, 0) else {
        return BudgetStatus::default();
    };
    let shortest = def.windows().first().copied().unwrap_or(HOUR);
    let current = Burn::new(series.buckets.counts(now, shortest), def.objective, 0);
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

fn series_status(series: &Series, now: Nanos) -> SloStatus {
    let def = &series.def;
    let (reach, _) = period_at(def.period, now);
    let counts = series.buckets.counts(now, reach);
    let budget = budget_status(series, now);
    let windows: Vec<WindowStatus> = def
        .windows()
        .into_iter()
        .map(|w| {
            let c = series.buckets.counts(now, w);
            let burn = match Burn::new(c, def.objective, def.policy.min_events) {
                Burn::Rate(r) => Some(r.to_f64()),
                Burn::NoData => None,
            };
            WindowStatus {
                window: levee_config::format_duration(w),
                events: c.total,
                bad_events: c.bad(),
                sli: ratio(c),
                burn_rate: burn,
            }
        })
        .collect();
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
        sli_value: ratio(counts),
        budget,
        windows,
        alerts,
    }
}

fn incident_status(row: &IncidentRow) -> IncidentStatus {
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
    }
}

fn summary(s: Option<levee_slo::Summary>) -> Option<DurationSummary> {
    s.map(|s| DurationSummary {
        count: s.count,
        median_seconds: s.median.as_secs_f64(),
        p90_seconds: s.p90.as_secs_f64(),
        max_seconds: s.max.as_secs_f64(),
    })
}

fn build_report(state: &EngineState, now: Nanos) -> SloReport {
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
            let c = series.buckets.counts(now, *w);
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
                    period_at(series.def.period, now).0,
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
    let rows: Vec<&IncidentRow> = state.incidents.iter().rev().map(|i| &i.row).collect();
    let as_incidents: Vec<levee_slo::Incident> = rows
        .iter()
        .map(|r| levee_slo::Incident {
            severity: Severity::Page,
            start: r.start_ns,
            start_clipped: r.start_clipped,
            detect: r.detect_ns,
            recover: r.recover_ns,
            resolve: r.resolve_ns,
            bad_events: r.bad_events,
            budget_spent_ppm: r.budget_spent_ppm,
        })
        .collect();
    SloReport {
        evaluated_at: Some(calendar::rfc3339(now)),
        slos,
        incidents: rows.into_iter().map(incident_status).collect(),
        mttd: summary(incident::mttd(&as_incidents)),
        mttr: summary(incident::mttr(&as_incidents)),
        tiers,
    }
}

/// The current Unix time in nanoseconds.
pub(crate) fn unix_nanos() -> Nanos {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// The loop: a tick just after every `evaluate_every` boundary, until the
/// gateway drains; then one last flush.
pub(crate) async fn run(
    engine: std::sync::Weak<SloEngine>,
    mut drain: tokio::sync::watch::Receiver<bool>,
    every: impl Fn() -> Duration,
) {
    loop {
        let period = u64::try_from(every().as_nanos())
            .unwrap_or(u64::MAX)
            .max(1_000_000);
        let now = unix_nanos();
        // Just past the next boundary, so the bucket just ended is whole.
        let wait = period - now % period + 5_000_000;
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_nanos(wait)) => {}
            _ = drain.changed() => {}
        }
        let Some(engine) = engine.upgrade() else {
            return;
        };
        if *drain.borrow() {
            engine.flush_now(unix_nanos()).await;
            return;
        }
        engine.tick(unix_nanos()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;
    /// 2026-11-29T00:00:00Z, a bucket boundary.
    const T0: u64 = 1_795_910_400 * S;

    const ONE_RULE: &str = r#"[{ long = "60s", short = "10s", factor = 10 }]"#;

    fn config() -> Arc<Config> {
        config_with(ONE_RULE)
    }

    fn config_with(page_rules: &str) -> Arc<Config> {
        let src = r#"
[[listeners]]
name = "public"
listen = "127.0.0.1:0"
[[routes]]
name = "r"
cluster = "c"
[[clusters]]
name = "c"
endpoints = ["127.0.0.1:9"]
[[slos]]
name = "x"
sli = "availability"
route = "r"
objective = "99%"
period = "1h"
runbook = "https://runbooks.example.com/x"
alerting = { min_events = 0, page = PAGE_RULES, ticket = [] }
[alerting]
evaluate_every = "1s"
bucket = "1s"
"#
        .replace("PAGE_RULES", page_rules);
        Arc::new(levee_config::load_str(&src, levee_config::Format::Toml, "t.toml").unwrap())
    }

    fn temp_db() -> std::path::PathBuf {
        let dir =
            std::env::temp_dir().join(format!("levee-engine-{}", levee_core::ids::request_id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("state.db")
    }

    async fn engine(db: &std::path::Path) -> SloEngine {
        engine_with(db, config()).await
    }

    async fn engine_with(db: &std::path::Path, config: Arc<Config>) -> SloEngine {
        let store = levee_store::SqliteStore::open(db).unwrap();
        let engine = SloEngine::new(
            Some(Box::new(store)),
            config.clone(),
            Arc::new(Registry::new()),
            false,
        )
        .unwrap();
        engine.configure(config).await;
        engine
    }

    /// Second `k` of the run: `good` and `bad` events, then the tick just
    /// after the second ends (as the loop does).
    async fn second(engine: &SloEngine, k: u64, good: u32, bad: u32) {
        let counter = engine.counters.get("x");
        (0..good).for_each(|_| counter.record(true));
        (0..bad).for_each(|_| counter.record(false));
        engine.tick(T0 + (k + 1) * S + 5_000_000).await;
    }

    fn incident(engine: &SloEngine) -> Option<IncidentStatus> {
        engine.report().incidents.first().cloned()
    }

    /// Through the wiring, in virtual time: a step to 100 % errors pages
    /// when the workbook formula says, t = β / e · W · f = 0.01 / 1 · 60 s
    /// · 10 = 6 s, at the first bucket end strictly after it (7 s); the
    /// incident starts at the step and recovers at the step back; a new
    /// engine on the same store reports the same history.
    #[tokio::test]
    async fn pages_on_time_traces_the_incident_and_restores_from_the_store() {
        let db = temp_db();
        let e = engine(&db).await;
        for k in 0..120 {
            second(&e, k, 10, 0).await;
        }
        assert!(incident(&e).is_none());
        let step = 120;
        let mut fired_at = None;
        for k in step..step + 30 {
            second(&e, k, 0, 10).await;
            if fired_at.is_none() && incident(&e).is_some() {
                fired_at = Some(k + 1 - step);
            }
        }
        assert_eq!(fired_at, Some(7), "fires 7 s after the step");
        let i = incident(&e).unwrap();
        assert_eq!(i.start, calendar::rfc3339(T0 + step * S));
        assert_eq!(i.detect, calendar::rfc3339(T0 + (step + 7) * S));
        assert_eq!(i.state, "open");
        assert_eq!(i.runbook.as_deref(), Some("https://runbooks.example.com/x"));
        let back = step + 30;
        for k in back..back + 90 {
            second(&e, k, 10, 0).await;
        }
        let i = incident(&e).unwrap();
        assert_eq!(i.state, "closed", "{i:?}");
        assert_eq!(i.recover, Some(calendar::rfc3339(T0 + back * S)));
        assert_eq!(i.bad_events, 300);
        let report = e.report();
        let slo = &report.slos[0];
        assert_eq!((slo.events, slo.bad_events), (2400, 300));
        // 300 bad of 2,400 against a 1 % budget: 300 / 24 = 12.5 budgets
        // spent, so 1 − 12.5 = −11.5 left.
        assert_eq!(slo.budget.remaining_ratio, Some(-11.5));
        assert_eq!(report.mttd.as_ref().unwrap().median_seconds, 7.0);
        assert_eq!(report.mttr.as_ref().unwrap().median_seconds, 30.0);
        drop(e);

        let again = engine(&db).await;
        again.tick(T0 + (back + 90) * S + 5_000_000).await;
        let restored = again.report();
        assert_eq!(
            (restored.slos[0].events, restored.slos[0].bad_events),
            (2400, 300)
        );
        assert_eq!(restored.incidents.len(), 1);
        let r = &restored.incidents[0];
        assert_eq!(
            (&r.start, &r.detect, &r.recover, &r.resolve),
            (&i.start, &i.detect, &i.recover, &i.resolve)
        );
        assert_eq!(restored.slos[0].alerts[0].state, "resolved");
        let _ = std::fs::remove_dir_all(db.parent().unwrap());
    }

    /// With a second, slower page rule the incident recovers (its 10 s
    /// excursion window is clean) well before the alert resolves (the
    /// 60 s rule still burns); the resolution is persisted all the same,
    /// and removing the SLO from the config resolves a firing alert.
    #[tokio::test]
    async fn a_resolution_after_recovery_is_persisted_and_removal_resolves() {
        let two_rules = r#"[{ long = "60s", short = "10s", factor = 10 }, { long = "300s", short = "60s", factor = 2 }]"#;
        let db = temp_db();
        let e = engine_with(&db, config_with(two_rules)).await;
        for k in 0..300 {
            second(&e, k, 10, 0).await;
        }
        for k in 300..330 {
            second(&e, k, 0, 10).await;
        }
        let mut recovered_first = false;
        for k in 330..460 {
            second(&e, k, 10, 0).await;
            let i = incident(&e).unwrap();
            if i.state == "recovered" {
                recovered_first = true;
            }
        }
        assert!(
            recovered_first,
            "the incident recovered before the alert resolved"
        );
        let i = incident(&e).unwrap();
        assert_eq!(i.state, "closed", "{i:?}");
        drop(e);
        let again = engine_with(&db, config_with(two_rules)).await;
        again.tick(T0 + 461 * S + 5_000_000).await;
        let r = incident(&again).unwrap();
        assert_eq!(
            (r.state, &r.resolve, &r.recover),
            ("closed", &i.resolve, &i.recover)
        );

        // Fire again, then drop the SLO from the config.
        for k in 461..480 {
            second(&again, k, 0, 10).await;
        }
        assert_eq!(again.report().slos[0].alerts[0].state, "firing");
        let mut without = (*config_with(two_rules)).clone();
        without.slos.clear();
        again.configure(Arc::new(without)).await;
        again.tick(T0 + 481 * S + 5_000_000).await;
        let newest = incident(&again).unwrap();
        assert_eq!(newest.state, "closed", "{newest:?}");
        assert!(again.report().slos.is_empty());
        let _ = std::fs::remove_dir_all(db.parent().unwrap());
    }

    /// Second `k` of the core tier's traffic, then the tick after it.
    async fn tier_second(engine: &SloEngine, k: u64, good: u32, bad: u32) {
        let counter = engine.counters.get(tier_series_id(Tier::Core));
        (0..good).for_each(|_| counter.record(true));
        (0..bad).for_each(|_| counter.record(false));
        engine.tick(T0 + (k + 1) * S + 5_000_000).await;
    }

    fn core_tier(engine: &SloEngine) -> TierStatus {
        engine
            .report()
            .tiers
            .iter()
            .find(|t| t.tier == "core")
            .cloned()
            .unwrap()
    }

    /// In virtual time: a tier's uptime needs 100 requests spread over
    /// 5 minutes; before that it has no data, unless most requests fail
    /// (an outage shows at once).
    #[tokio::test]
    async fn a_tier_has_no_data_until_enough_requests_over_enough_time() {
        let e = SloEngine::new(None, config(), Arc::new(Registry::new()), false).unwrap();
        e.configure(config()).await;
        for k in 0..60 {
            tier_second(&e, k, 10, 0).await;
        }
        let t = core_tier(&e);
        assert_eq!((t.events, t.no_data, t.status), (600, true, "no_data"));
        assert_eq!(t.observed_seconds, 60.0);
        for k in 60..299 {
            tier_second(&e, k, 10, 0).await;
        }
        assert!(core_tier(&e).no_data, "{:?}", core_tier(&e));
        tier_second(&e, 299, 10, 0).await;
        let t = core_tier(&e);
        assert_eq!((t.no_data, t.status), (false, "operational"), "{t:?}");
        assert_eq!(t.observed_seconds, 300.0);

        // Few requests over a long time: still no data.
        let sparse = SloEngine::new(None, config(), Arc::new(Registry::new()), false).unwrap();
        sparse.configure(config()).await;
        for k in 0..600 {
            tier_second(&sparse, k, u32::from(k % 10 == 0), 0).await;
        }
        let t = core_tier(&sparse);
        assert_eq!((t.events, t.no_data, t.status), (60, true, "no_data"));

        // Failing from the start: an outage, data or not.
        let failing = SloEngine::new(None, config(), Arc::new(Registry::new()), false).unwrap();
        failing.configure(config()).await;
        for k in 0..20 {
            tier_second(&failing, k, 1, 9).await;
        }
        let t = core_tier(&failing);
        assert_eq!((t.no_data, t.status), (true, "outage"));
    }

    #[test]
    fn percent_and_durations_read_well() {
        assert_eq!(percent(999_000), "99.9%");
        assert_eq!(percent(999_950), "99.995%");
        assert_eq!(percent(990_000), "99%");
        assert_eq!(readable(1_872.0), "31m 12s");
        assert_eq!(readable(-90_000.0), "-1d 1h");
    }
}
