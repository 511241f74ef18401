//! The SLO evaluation engine: every tick it drains the data plane's
//! counters (`levee_proxy::slo`) into each objective's buckets, evaluates
//! the burn-rate alerts, opens and follows incidents, sends notifications,
//! persists what changed to the store, and publishes a report for the
//! admin API and the metrics. The math is `levee-slo`'s; this module only
//! wires it, with time passed in (Unix nanoseconds), so a restart
//! continues where the stored history ends.
//!
//! By job: `series` (an objective's definition, buckets and metrics),
//! `tick` (one evaluation), `incidents` (tracing and closing them),
//! `actions` (what operators do about an incident, and its rules),
//! `report` (what the API shows), `run` (the loop); this file holds the
//! engine's state, loading and configuration, and takes operators'
//! actions.

mod actions;
mod fleet;
mod incidents;
mod report;
mod run;
mod series;
mod shared;
#[cfg(test)]
mod tests;
mod tick;

pub use actions::{
    ActionError, IncidentAction, OperatorMark, MAX_ACTOR_CHARS, MAX_MESSAGE_CHARS, MAX_NOTES,
};
pub use report::{
    AlertStatus, BudgetStatus, DurationSummary, IncidentStatus, SloReport, SloStatus, TierStatus,
    TimelineEvent, WindowStatus, TIER_MIN_EVENTS, TIER_MIN_OBSERVED,
};
pub(crate) use run::{run, unix_nanos};

use crate::notify::Notifier;
use arc_swap::ArcSwap;
use incidents::TrackedIncident;
use levee_config::{Config, Tier};
use levee_core::metrics::Registry;
use levee_core::Nanos;
use levee_proxy::slo::SloCounters;
use levee_slo::{Alerts, Buckets, Counts};
use levee_store::{AlertRow, Batch, BucketRow, IncidentActionRow, Snapshot, Store};
use report::{build_report, incidents_report};
use series::{absorb, layout, restore_alerts, slices_key, Series, SeriesDef, SeriesMetrics};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(86_400);

/// How often firing alerts are sent again to Alertmanager, which forgets
/// an alert not refreshed before its `endsAt`.
const ALERTMANAGER_RESEND: Duration = Duration::from_secs(60);

/// The mutable state of the loop.
pub(super) struct EngineState {
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
    /// In a fleet: whether this replica has caught up with it (`shared`).
    fleet_joined: bool,
    /// Operators' actions read from the fleet, not yet in the store.
    unstored_actions: Vec<IncidentActionRow>,
}

impl EngineState {
    /// Takes what the store held: buckets and alert states wait for their
    /// series to be configured; incidents are followed again, with what
    /// operators did about them.
    fn restore(&mut self, snapshot: Snapshot, actions: Vec<IncidentActionRow>) {
        self.stored_buckets.clear();
        for row in snapshot.buckets {
            self.stored_buckets
                .entry(row.slo.clone())
                .or_default()
                .push(row);
        }
        self.stored_alerts.clear();
        for row in snapshot.alerts {
            self.stored_alerts
                .entry(row.slo.clone())
                .or_default()
                .push(row);
        }
        self.incidents = snapshot
            .incidents
            .into_iter()
            .map(|row| TrackedIncident {
                settled: row.recover_ns.is_some() && row.resolve_ns.is_some(),
                row,
                log: actions::OperatorLog::default(),
            })
            .collect();
        for action in &actions {
            // Actions of incidents retention removed went with them.
            if let Some(i) = self
                .incidents
                .iter_mut()
                .find(|i| i.row.id == action.incident_id)
            {
                i.log.apply(action);
            }
        }
        self.next_incident_id = snapshot.max_incident_id.map_or(1, |m| m + 1);
    }
}

/// The SLO engine of one gateway.
pub(crate) struct SloEngine {
    counters: Arc<SloCounters>,
    /// The committed config's `alerting.evaluate_every`, in nanoseconds,
    /// for the loop to read without the state's lock.
    evaluate_every_ns: AtomicU64,
    state: tokio::sync::Mutex<EngineState>,
    report: ArcSwap<SloReport>,
    notifier: Notifier,
    registry: Arc<Registry>,
    store_label: String,
    /// Maintenance windows that leave the budget, from the status board.
    exclusions: Arc<ArcSwap<Vec<crate::status_board::Exclusion>>>,
    /// Counting and alerting with the other replicas (`[fleet]`).
    fleet: Option<fleet::SloFleet>,
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
        counters: Arc<SloCounters>,
        config: Arc<Config>,
        registry: Arc<Registry>,
        deferred: bool,
    ) -> Result<Self, String> {
        let mut store = store;
        let (snapshot, actions) = match store.as_mut() {
            Some(s) if !deferred => load_all(s.as_mut()).map_err(|e| e.to_string())?,
            _ => (Snapshot::default(), Vec::new()),
        };
        let store_label = store
            .as_ref()
            .map_or("memory".to_string(), |s| s.describe());
        let notifier = Notifier::start(&registry);
        let mut state = EngineState {
            series: BTreeMap::new(),
            stored_buckets: HashMap::new(),
            stored_alerts: HashMap::new(),
            incidents: Vec::new(),
            next_incident_id: 1,
            store,
            batch: Batch::default(),
            last_prune_hour: 0,
            last_resend: 0,
            config,
            last_tick: 0,
            awaiting_store: deferred,
            fleet_joined: false,
            unstored_actions: Vec::new(),
        };
        state.restore(snapshot, actions);
        // The stored incidents are in the API from the start, before the
        // first tick, so an operator can act on them at once.
        let mut report = SloReport::default();
        incidents_report(&state, &mut report);
        let engine = Self {
            evaluate_every_ns: AtomicU64::new(nanos(state.config.alerting.evaluate_every)),
            counters,
            state: tokio::sync::Mutex::new(state),
            report: ArcSwap::from_pointee(report),
            notifier,
            registry,
            store_label,
            exclusions: Arc::default(),
            fleet: None,
        };
        Ok(engine)
    }

    /// Counts and alerts with the fleet `config` names, if it has one and
    /// Redis can be reached (else alone, with a warning).
    pub(crate) async fn join_fleet(&mut self, config: &Config) {
        let (Some(fleet), Some(redis)) = (&config.fleet, &config.redis) else {
            return;
        };
        self.fleet = fleet::SloFleet::join(fleet, redis).await;
        if self.fleet.is_none() {
            tracing::warn!(fleet = %fleet.name, "cannot reach Redis: SLOs are counted and alerted on by this replica alone");
        }
    }

    /// The fleet's name and whether this replica sends its pages now.
    pub(crate) fn fleet_status(&self) -> Option<(String, bool)> {
        self.fleet
            .as_ref()
            .map(|f| (f.name().to_string(), f.leads()))
    }

    /// Takes maintenance windows out of the budget as `exclusions` says
    /// (the status board's list, read on every tick).
    pub(crate) fn exclude(
        &mut self,
        exclusions: Arc<ArcSwap<Vec<crate::status_board::Exclusion>>>,
    ) {
        self.exclusions = exclusions;
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
                let loaded = load_all(store.as_mut());
                (store, loaded)
            })
            .await
            .expect("store reads do not panic");
            state.store = Some(store);
            match loaded {
                Ok((snapshot, actions)) => {
                    state.restore(snapshot, actions);
                    let mut report = (*self.report.load_full()).clone();
                    incidents_report(&state, &mut report);
                    self.report.store(Arc::new(report));
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

    /// How often the loop evaluates.
    pub(crate) fn evaluate_every(&self) -> Duration {
        Duration::from_nanos(self.evaluate_every_ns.load(Ordering::Relaxed))
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
        self.evaluate_every_ns
            .store(nanos(config.alerting.evaluate_every), Ordering::Relaxed);
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
                    if s.def.budgeting != def.budgeting {
                        // Other slices, or none: judged afresh from now.
                        s.slices = def.slices(layout, Vec::new());
                    }
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
                    // Slices judged in the same widths and way carry over.
                    let slice_rows = match state.series.get(&def.id) {
                        Some(old) if old.def.budgeting == def.budgeting => old
                            .slices
                            .as_ref()
                            .map(|s| s.buckets().non_empty())
                            .unwrap_or_default()
                            .into_iter()
                            .map(|(coarse, start, c)| BucketRow {
                                slo: slices_key(&def),
                                coarse,
                                start_ns: start,
                                good: c.good,
                                total: c.total,
                            })
                            .collect(),
                        Some(_) => Vec::new(),
                        None => state
                            .stored_buckets
                            .remove(&slices_key(&def))
                            .unwrap_or_default(),
                    };
                    let slices = def.slices(layout, slice_rows);
                    let mut alerts = Alerts::new();
                    if let Some(rows) = state.stored_alerts.remove(&def.id) {
                        restore_alerts(&mut alerts, &rows);
                    }
                    let previous_alerts = state.series.get(&def.id).map(|s| s.alerts.clone());
                    let previous_excluded =
                        state.series.get(&def.id).map_or(0, |s| s.excluded_events);
                    let metrics = SeriesMetrics::new(&def, &self.registry);
                    let counter = self.counters.get(&def.id);
                    state.series.insert(
                        def.id.clone(),
                        Series {
                            alerts: previous_alerts.unwrap_or(alerts),
                            def,
                            buckets,
                            slices,
                            counter,
                            metrics,
                            active: true,
                            excluded_events: previous_excluded,
                        },
                    );
                }
            }
        }
        state.config = config;
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
            coalesce(&mut kept);
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
            if let Some(fleet) = &self.fleet {
                // The events since the last tick go to the fleet's running
                // bucket, which the others will evaluate.
                let running = now - now % bucket_ns + bucket_ns;
                let drained = tick::drain_active(&state.series);
                if !fleet.share(running, &drained).await {
                    tracing::warn!("stopping without Redis: the last SLO events of this replica are not shared");
                }
                fleet.resign().await;
                let state = &mut *state;
                self.flush(state).await;
            } else if now - now % bucket_ns <= state.last_tick {
                let state = &mut *state;
                let end = state.last_tick;
                let exclusions = self.exclusions.load();
                for series in state.series.values_mut().filter(|s| s.active) {
                    let excluded = series::excluded(series, end - 1, &exclusions);
                    absorb(series, end, &mut state.batch, excluded);
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

impl SloEngine {
    /// Carries out an operator's `action` on incident `id` at `now`: checks
    /// it against the incident's state, stores it (an action the store
    /// refuses is not taken), applies it, stops the page's escalations on
    /// an acknowledgement or resolution, and publishes the incident as it
    /// is now.
    pub(crate) async fn act(
        &self,
        id: u64,
        action: IncidentAction,
        now: Nanos,
    ) -> Result<IncidentStatus, ActionError> {
        let action = action.validated()?;
        let mut state = self.state.lock().await;
        if state.awaiting_store {
            return Err(ActionError::Store(
                "a takeover is under way and the store is not loaded yet; try again in a moment"
                    .into(),
            ));
        }
        let row = match &self.fleet {
            Some(fleet) => {
                self.share_action(fleet, &mut state, id, &action, now)
                    .await?
            }
            None => {
                let tracked = state
                    .incidents
                    .iter()
                    .find(|i| i.row.id == id)
                    .ok_or(ActionError::NotFound(id))?;
                tracked.log.check(&tracked.row, &action, now)?
            }
        };
        if state.store.is_some() {
            // The incident's own row first: an action refers to it.
            self.flush(&mut state).await;
            if let Err(e) = self.write_actions(&mut state, vec![row.clone()]).await {
                if self.fleet.is_none() {
                    tracing::error!(incident = id, error = %e, "storing an incident action failed; not taken");
                    return Err(ActionError::Store(e.to_string()));
                }
                // The fleet has it already: taken, and stored later.
                tracing::warn!(incident = id, error = %e, "storing an incident action failed; the fleet has it, retrying next tick");
                state.unstored_actions.push(row.clone());
            }
        }
        let tracked = state
            .incidents
            .iter_mut()
            .find(|i| i.row.id == id)
            .ok_or(ActionError::NotFound(id))?;
        tracked.log.apply(&row);
        let status = report::incident_status(tracked);
        tracing::info!(incident = id, action = action.kind(), by = %row.actor, "incident action taken");
        if matches!(
            action,
            IncidentAction::Acknowledge { .. } | IncidentAction::Resolve { .. }
        ) {
            self.notifier.stop_escalation(id);
        }
        let mut report = (*self.report.load_full()).clone();
        incidents_report(&state, &mut report);
        self.report.store(Arc::new(report));
        Ok(status)
    }
}

impl SloEngine {
    /// In a fleet: the row that records `action` on incident `id`, checked
    /// against every action any replica took and shared with them first,
    /// so the fleet takes each incident's actions in one order. When Redis
    /// does not answer, the action is checked and taken here only.
    async fn share_action(
        &self,
        fleet: &fleet::SloFleet,
        state: &mut EngineState,
        id: u64,
        action: &IncidentAction,
        now: Nanos,
    ) -> Result<IncidentActionRow, ActionError> {
        // Another replica may take the same place at the same moment; a
        // few rounds settle it.
        for _ in 0..4 {
            self.read_actions(fleet, state).await;
            let tracked = state
                .incidents
                .iter()
                .find(|i| i.row.id == id)
                .ok_or(ActionError::NotFound(id))?;
            let row = tracked.log.check(&tracked.row, action, now)?;
            match fleet.append_action(&row).await {
                Some(true) => return Ok(row),
                Some(false) => continue,
                None => {
                    tracing::warn!(incident = id, "cannot share an incident action with the fleet; taken on this replica only");
                    return Ok(row);
                }
            }
        }
        Err(ActionError::Conflict(format!(
            "incident {id} is being changed on other replicas; try again"
        )))
    }
}

/// The SLO engine's rows and the incidents' actions, as one load.
fn load_all(
    store: &mut dyn Store,
) -> Result<(Snapshot, Vec<IncidentActionRow>), levee_store::StoreError> {
    Ok((store.load()?, store.load_incident_actions()?))
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Keeps only the last row written for each key of a batch kept across
/// failed writes (rows are upserts, so the last one is what would land):
/// while the store is down, the batch grows with the rows that changed,
/// not with every tick's rewrite of the running buckets and alerts.
fn coalesce(batch: &mut Batch) {
    fn last_per_key<T, K: std::hash::Hash + Eq>(rows: &mut Vec<T>, key: impl Fn(&T) -> K) {
        let mut seen = std::collections::HashSet::new();
        rows.reverse();
        rows.retain(|r| seen.insert(key(r)));
        rows.reverse();
    }
    last_per_key(&mut batch.buckets, |b| {
        (b.slo.clone(), b.coarse, b.start_ns)
    });
    last_per_key(&mut batch.alerts, |a| (a.slo.clone(), a.severity.clone()));
    last_per_key(&mut batch.incidents, |i| i.id);
}

#[cfg(test)]
mod coalesce_tests {
    use super::coalesce;
    use levee_store::{AlertRow, Batch, BucketRow};

    fn bucket(start_ns: u64, good: u64) -> BucketRow {
        BucketRow {
            slo: "a".to_owned(),
            coarse: false,
            start_ns,
            good,
            total: good,
        }
    }

    #[test]
    fn a_kept_batch_holds_the_last_row_of_each_key() {
        let alert = |state: &str| AlertRow {
            slo: "a".to_owned(),
            severity: "page".to_owned(),
            state: state.to_owned(),
            since_ns: 1,
        };
        let mut batch = Batch {
            buckets: (0..100).map(|tick| bucket(tick / 10, tick)).collect(),
            alerts: vec![alert("pending"), alert("firing")],
            ..Batch::default()
        };
        coalesce(&mut batch);
        assert_eq!(
            batch.buckets,
            (0..10).map(|b| bucket(b, b * 10 + 9)).collect::<Vec<_>>()
        );
        assert_eq!(batch.alerts, vec![alert("firing")]);
    }
}
