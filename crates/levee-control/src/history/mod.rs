//! Each route's latency and traffic history, for the dashboard's heatmaps:
//! every 10 seconds the loop takes what each route (and each version of a
//! route's release) served since the last sample from the data plane's
//! cumulative counts (`Gateway::route_traffic`), folds it into a 10-second
//! point (kept an hour) and a 5-minute point (kept a day), writes the
//! points it changed to the store in one batch with retention, and serves
//! windows of them to the admin API (`GET /api/v1/history/routes/...`, the
//! contract in `docs/dashboard.md`).
//!
//! By job: `fold` (samples, points, retention: plain structs on passed-in
//! time), `view` (windows, heatmap rows, quantiles, the JSON shapes), this
//! file (the recorder's state, the store, the loop).
//!
//! Restarts: the store is read at start, so a restarted gateway answers
//! for the last hour and day; a graceful shutdown samples and writes once
//! more (`ControlPlane::drained`). A handover's successor counts in memory
//! until its predecessor's final write, then adds the stored points to
//! its own, so the step they share is neither lost nor counted twice. The
//! history is a view, not state a gateway needs to serve: a store that
//! cannot be read or written is logged and the history kept in memory.

mod fold;
mod view;

pub use fold::{Point, Resolution, Series};
pub use view::{
    row_of_bucket, rows_ms, HistoryPoint, RouteEntry, RouteHistory, VersionColumns, Window, ROWS,
    ROW_UPPER_MICROS,
};

use fold::{History, PointKey, Sampler};
use levee_core::Nanos;
use levee_proxy::Gateway;
use levee_store::{HistoryBatch, HistoryRetention, HistoryRow, Store};
use std::collections::BTreeSet;
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

/// How long after a step's end the loop samples, so the step is whole.
const TICK_AFTER: Duration = Duration::from_millis(5);

/// The loop's state.
struct RecorderState {
    history: History,
    sampler: Sampler,
    store: Option<Box<dyn Store>>,
    /// Points changed since the last successful write (kept on a failed
    /// write: the next one writes their latest values).
    dirty: BTreeSet<PointKey>,
    /// The coarse step whose start retention last pruned the store at.
    pruned_at_coarse_step: Option<u64>,
    /// A handover's successor before its predecessor's last write: points
    /// are counted but neither loaded nor written yet.
    awaiting_store: bool,
}

/// The history of one gateway's routes.
pub(crate) struct HistoryRecorder {
    state: tokio::sync::Mutex<RecorderState>,
    gateway: OnceLock<Gateway>,
    store_label: String,
}

impl std::fmt::Debug for HistoryRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HistoryRecorder")
            .field("store", &self.store_label)
            .finish_non_exhaustive()
    }
}

impl HistoryRecorder {
    /// A recorder over `store` (or memory only) holding what it stored;
    /// `deferred`: not yet, see [`HistoryRecorder::load_deferred`].
    pub(crate) fn new(mut store: Option<Box<dyn Store>>, deferred: bool, now: Nanos) -> Self {
        let store_label = store
            .as_ref()
            .map_or("memory".to_string(), |s| s.describe());
        let mut history = History::default();
        if !deferred {
            if let Some(s) = store.as_mut() {
                restore(&mut history, s.load_history(), now);
            }
        }
        Self {
            state: tokio::sync::Mutex::new(RecorderState {
                history,
                sampler: Sampler::default(),
                store,
                dirty: BTreeSet::new(),
                pruned_at_coarse_step: None,
                awaiting_store: deferred,
            }),
            gateway: OnceLock::new(),
            store_label,
        }
    }

    /// Gives the recorder the gateway whose routes it samples.
    pub(crate) fn attach(&self, gateway: Gateway) {
        let _ = self.gateway.set(gateway);
    }

    /// The loop's sample just after a step ended: what came since the last
    /// sample goes into the step that ended.
    pub(crate) async fn tick(&self, now: Nanos) {
        let ended = Resolution::Fine.step_start(now).saturating_sub(1);
        self.sample(now, ended).await;
    }

    /// Samples now into the step in progress, and writes (tests, shutdown).
    pub(crate) async fn sample_now(&self, now: Nanos) {
        self.sample(now, now).await;
    }

    async fn sample(&self, now: Nanos, at: Nanos) {
        let Some(gateway) = self.gateway.get() else {
            return;
        };
        let mut state = self.state.lock().await;
        let state = &mut *state;
        // Read under the lock: two samples must reach the sampler in the
        // order their counts were read, or the later one would look like
        // counters that went back.
        let traffic = gateway.route_traffic();
        for (route, series, delta) in state.sampler.deltas(&traffic) {
            state
                .dirty
                .extend(state.history.fold(&route, series, at, &delta));
        }
        state.history.sampled(at);
        state.history.retain(now);
        self.flush(state, now).await;
    }

    /// Writes the changed points, and prunes the store once per coarse
    /// step, on a blocking thread.
    async fn flush(&self, state: &mut RecorderState, now: Nanos) {
        if state.awaiting_store {
            return;
        }
        let coarse_step = Resolution::Coarse.step_start(now);
        let prune = (state.pruned_at_coarse_step != Some(coarse_step)).then(|| HistoryRetention {
            fine_before_ns: Resolution::Fine.keep_from(now),
            coarse_before_ns: Resolution::Coarse.keep_from(now),
        });
        if state.dirty.is_empty() && prune.is_none() {
            return;
        }
        let Some(mut store) = state.store.take() else {
            state.dirty.clear();
            return;
        };
        let dirty = std::mem::take(&mut state.dirty);
        let batch = HistoryBatch {
            // Points retention already dropped need no write: the prune
            // deletes them.
            points: dirty
                .iter()
                .filter_map(|key| Some(row(key, state.history.point(key)?)))
                .collect(),
            prune,
        };
        let (store, result) = tokio::task::spawn_blocking(move || {
            let result = store.write_history(&batch);
            (store, result)
        })
        .await
        .expect("store writes do not panic");
        state.store = Some(store);
        match result {
            Ok(()) => {
                if prune.is_some() {
                    state.pruned_at_coarse_step = Some(coarse_step);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "writing the route history failed; retrying next tick");
                state.dirty.extend(dirty);
            }
        }
    }

    /// Loads the store now (a handover's successor, once its predecessor
    /// has written its last points), adds what it holds to what was
    /// counted meanwhile, and starts writing.
    pub(crate) async fn load_deferred(&self, now: Nanos) {
        let mut state = self.state.lock().await;
        if !state.awaiting_store {
            return;
        }
        if let Some(mut store) = state.store.take() {
            let (store, loaded) = tokio::task::spawn_blocking(move || {
                let loaded = store.load_history();
                (store, loaded)
            })
            .await
            .expect("store reads do not panic");
            state.store = Some(store);
            restore(&mut state.history, loaded, now);
        }
        state.awaiting_store = false;
        self.flush(&mut state, now).await;
    }

    /// `route`'s history over `window` read at `now`; `None` for a route
    /// that is neither configured nor in the history.
    pub(crate) async fn route_history(
        &self,
        route: &str,
        window: Window,
        now: Nanos,
    ) -> Option<RouteHistory> {
        let (configured, with_versions) = match self.gateway.get() {
            Some(g) => (
                g.config().routes.iter().any(|r| r.name == route),
                g.release(route).is_some(),
            ),
            None => (false, false),
        };
        let state = self.state.lock().await;
        if !configured && !state.history.has_route(route) {
            return None;
        }
        Some(view::route_history(
            &state.history,
            route,
            window,
            now,
            with_versions,
        ))
    }

    /// The routes of the running config.
    pub(crate) fn routes(&self) -> Vec<RouteEntry> {
        let Some(gateway) = self.gateway.get() else {
            return Vec::new();
        };
        let config = gateway.config();
        config
            .routes
            .iter()
            .map(|r| {
                let listeners: Vec<String> = if r.listeners.is_empty() {
                    config.listeners.iter().map(|l| l.name.clone()).collect()
                } else {
                    r.listeners.clone()
                };
                RouteEntry {
                    route: r.name.clone(),
                    listener: listeners.first().cloned().unwrap_or_default(),
                    listeners,
                    cluster: r.cluster.clone(),
                    has_release: gateway.release(&r.name).is_some(),
                }
            })
            .collect()
    }
}

/// The store's row for the point under `key`.
fn row(key: &PointKey, point: &Point) -> HistoryRow {
    let (route, series, resolution, start) = key;
    HistoryRow {
        route: route.clone(),
        series: series.name().to_string(),
        coarse: *resolution == Resolution::Coarse,
        start_ns: *start,
        requests: point.requests,
        errors: point.errors,
        latency: point.latency.clone(),
    }
}

/// Adds what the store returned to `history`, logging what could not be
/// read or did not fit.
fn restore(
    history: &mut History,
    loaded: Result<Vec<HistoryRow>, levee_store::StoreError>,
    now: Nanos,
) {
    let rows = match loaded {
        Ok(rows) => rows,
        Err(e) => {
            tracing::error!(error = %e, "reading the route history failed; it starts empty");
            return;
        }
    };
    let mut refused = 0usize;
    let mut kept = 0usize;
    for r in rows {
        let resolution = if r.coarse {
            Resolution::Coarse
        } else {
            Resolution::Fine
        };
        let restored = Series::parse(&r.series)
            .zip(Point::from_parts(r.requests, r.errors, r.latency))
            .is_some_and(|(series, point)| {
                history.restore((r.route, series, resolution, r.start_ns), &point, now)
            });
        if restored {
            kept += 1;
        } else {
            refused += 1;
        }
    }
    if refused > 0 {
        tracing::debug!(
            refused,
            "stored history points past retention or not of this layout were left out"
        );
    }
    tracing::debug!(points = kept, "route history loaded");
}

/// Starts the loop for `recorder` over `gateway`'s routes.
pub(crate) fn spawn(recorder: &Arc<HistoryRecorder>, gateway: &Gateway) {
    recorder.attach(gateway.clone());
    tokio::spawn(run(Arc::downgrade(recorder), gateway.drain_signal()));
}

/// The loop: a sample just after every 10-second boundary, until the
/// gateway drains (`ControlPlane::drained` takes the last one).
async fn run(recorder: Weak<HistoryRecorder>, mut drain: tokio::sync::watch::Receiver<bool>) {
    let step = Resolution::Fine.step_ns();
    loop {
        let now = crate::slo::unix_nanos();
        let wait = Duration::from_nanos(step - now % step) + TICK_AFTER;
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            changed = drain.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
        if *drain.borrow() {
            return;
        }
        let Some(recorder) = recorder.upgrade() else {
            return;
        };
        recorder.tick(crate::slo::unix_nanos()).await;
    }
}
