//! Levee's control plane: the background loops that read what the data
//! plane (`levee-proxy`) measures and act on it. Today that is the SLO
//! engine ([`slo`]: evaluation, incidents, the report) with its alert
//! webhooks (`notify`, routed and escalated by `escalation`) and the
//! state store it persists to ([`store`]),
//! and the Prometheus rules that mirror the engine ([`rules`], sharing its
//! alert-policy choices in [`policy`]);
//! rollouts ([`rollout`]), chaos experiments' decisions ([`chaos`]) and
//! each route's latency and traffic history ([`history`]) live beside
//! it. The data plane never
//! depends on this crate: [`start`] wires the two together, and the loops
//! reach the data plane only through the contract in
//! `levee_proxy::control` (published state to read, knobs to turn, a
//! commit hook on reload).

pub mod chaos;
mod escalation;
mod fleet;
pub mod grafana;
pub mod history;
pub mod jobs;
mod notify;
pub mod policy;
mod remote_write;
pub mod rollout;
pub mod rules;
pub mod slo;
pub mod status_board;
pub mod store;

use futures_util::future::BoxFuture;
use levee_config::Config;
use levee_core::metrics::Registry;
use levee_proxy::handover::InheritedSockets;
use levee_proxy::slo::SloCounters;
use levee_proxy::{ApplyError, Gateway};
use rollout::Rollouts;
pub use rollout::{Command as RolloutCommand, CommandError, Phase as RolloutPhase, RolloutState};
use slo::{ActionError, IncidentAction, IncidentStatus, SloEngine, SloReport};
use std::path::PathBuf;
use std::sync::Arc;

/// Why Levee could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The data plane could not start (invalid config, bind, TLS...).
    #[error(transparent)]
    Gateway(#[from] ApplyError),
    /// The state store cannot be opened or read.
    #[error("store: {message}")]
    Store {
        /// What is wrong, with the file's path.
        message: String,
    },
}

/// How [`start`] starts: from scratch, or as the successor in a handover.
#[derive(Debug, Default)]
pub struct StartOptions {
    /// Listening sockets from the predecessor (see `levee_proxy::handover`).
    pub inherited: InheritedSockets,
    /// The SLO engine loads the store (and starts evaluating) only once
    /// this resolves: when the predecessor has written its last events.
    /// Until then the data plane counts in memory.
    pub slo_store_after: Option<tokio::sync::oneshot::Receiver<()>>,
    /// How clusters open HTTP/1.1 connections (see
    /// `levee_proxy::StartOptions::connector`); TCP when not given.
    pub connector: Option<Arc<dyn levee_proxy::Connector>>,
    /// Config files layered over the config path, in order (see
    /// `levee_proxy::StartOptions::config_overlays`). Relative paths in the
    /// config (the store, the job queue) resolve against the config path's
    /// directory all the same.
    pub config_overlays: Vec<PathBuf>,
}

/// The control plane of one gateway: its loops and what they publish.
/// Cheap to clone.
#[derive(Debug, Clone)]
pub struct Control {
    slo: Arc<SloEngine>,
    rollouts: Arc<Rollouts>,
    status: Arc<status_board::StatusBoard>,
    history: Arc<history::HistoryRecorder>,
}

/// The loops a gateway commits each config to (the SLO engine and the
/// rollouts) or that persist when it drains (also the history).
#[derive(Debug)]
struct Loops {
    slo: Arc<SloEngine>,
    rollouts: Arc<Rollouts>,
    history: Arc<history::HistoryRecorder>,
}

impl levee_proxy::ControlPlane for Loops {
    fn commit<'a>(&'a self, config: &'a Arc<Config>) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            self.slo.configure(config.clone()).await;
            self.rollouts.commit(config);
        })
    }

    fn rollout_base(
        &self,
        route: &str,
        configured: &str,
    ) -> Option<(String, levee_proxy::release::Weights)> {
        self.rollouts.base(route, configured)
    }

    fn drained(&self) -> BoxFuture<'_, ()> {
        // The last events, alert states and incidents, persisted; rollouts
        // are written as they change, and their leases handed on.
        Box::pin(async move {
            self.rollouts.resign().await;
            self.slo.flush_now(slo::unix_nanos()).await;
            self.history.sample_now(slo::unix_nanos()).await;
        })
    }
}

impl Control {
    /// SLOs, incidents and tier uptime as of the last evaluation.
    pub fn slo_report(&self) -> Arc<SloReport> {
        self.slo.report()
    }

    /// The fleet this replica counts SLOs with (`[fleet]`), and whether it
    /// sends the fleet's pages now; `None` when it evaluates alone.
    pub fn slo_fleet(&self) -> Option<(String, bool)> {
        self.slo.fleet_status()
    }

    /// One incident as of the last evaluation or operator's action.
    pub fn incident(&self, id: u64) -> Option<IncidentStatus> {
        self.slo
            .report()
            .incidents
            .iter()
            .find(|i| i.id == id)
            .cloned()
    }

    /// Carries out an operator's action on incident `id` (acknowledge,
    /// note, resolve; see `slo::IncidentAction` for the rules), stored
    /// before it is answered; the incident as it is now.
    pub async fn incident_action(
        &self,
        id: u64,
        action: IncidentAction,
    ) -> Result<IncidentStatus, ActionError> {
        self.slo.act(id, action, slo::unix_nanos()).await
    }

    /// Evaluates SLOs now (folding in every event so far) and persists the
    /// result; the loop does this on its own every `evaluate_every`.
    pub async fn evaluate_slos(&self) {
        self.slo.flush_now(slo::unix_nanos()).await;
    }

    /// Every rollout, by route.
    pub fn rollouts(&self) -> Vec<RolloutState> {
        self.rollouts.report()
    }

    /// One route's rollout.
    pub fn rollout(&self, route: &str) -> Option<RolloutState> {
        self.rollouts.get(route)
    }

    /// With rollouts shared through Redis: this replica's id and whether
    /// it leads `route`'s rollout now.
    pub fn rollout_fleet(&self, route: &str) -> Option<serde_json::Value> {
        let instance = self.rollouts.instance()?;
        Some(serde_json::json!({
            "instance": instance,
            "leader": self.rollouts.leads(route),
        }))
    }

    /// Carries out a rollout command given by hand.
    pub async fn rollout_command(
        &self,
        route: &str,
        command: RolloutCommand,
    ) -> Result<RolloutState, CommandError> {
        self.rollouts.command(route, command).await
    }

    /// What operators posted on the status page.
    pub fn status_board(&self) -> &status_board::StatusBoard {
        &self.status
    }

    /// Folds what every route served so far into the history's current
    /// step and writes it, as the loop does just after every 10-second
    /// step (tests, and anything that must read the history up to now).
    pub async fn sample_history_now(&self) {
        self.history.sample_now(slo::unix_nanos()).await;
    }

    /// `route`'s latency and traffic history over `window`, as
    /// `GET /api/v1/history/routes/{route}` serves it; `None` for a route
    /// neither configured nor in the history.
    pub async fn route_history(
        &self,
        route: &str,
        window: history::Window,
    ) -> Option<history::RouteHistory> {
        self.history
            .route_history(route, window, slo::unix_nanos())
            .await
    }

    /// The configured routes, for the history's route list.
    pub fn history_routes(&self) -> Vec<history::RouteEntry> {
        self.history.routes()
    }

    /// Where the SLO state is kept, for logs.
    pub fn store_label(&self) -> &str {
        self.slo.store_label()
    }
}

/// Starts a gateway with its control loops: opens the state store, starts
/// the data plane with the SLO counters the engine drains, and runs the
/// evaluation loop until the gateway drains.
pub async fn start(
    config: Config,
    config_path: Option<PathBuf>,
    registry: Arc<Registry>,
    options: StartOptions,
) -> Result<(Gateway, Control), StartError> {
    let store = store::open_store(&config, config_path.as_deref())
        .map_err(|message| StartError::Store { message })?;
    let deferred = options.slo_store_after.is_some();
    let counters = Arc::new(SloCounters::default());
    let mut engine = SloEngine::new(
        store,
        counters.clone(),
        Arc::new(config.clone()),
        registry.clone(),
        deferred,
    )
    .map_err(|message| StartError::Store { message })?;
    // The status board keeps its own connection too: a post is saved
    // before the operator is answered.
    let board_store = store::open_store(&config, config_path.as_deref())
        .map_err(|message| StartError::Store { message })?;
    let status = Arc::new(
        status_board::StatusBoard::open(
            board_store,
            config.store.backend == levee_config::StoreBackend::Postgres,
        )
        .map_err(|message| StartError::Store { message })?,
    );
    engine.exclude(status.exclusions());
    engine.join_fleet(&config).await;
    tracing::info!(
        store = engine.store_label(),
        deferred,
        "SLO state store opened"
    );
    let engine = Arc::new(engine);
    // The rollouts keep their own connection to the same store, so a
    // decision is written at once, not at the SLO engine's next tick.
    let rollout_store = store::open_store(&config, config_path.as_deref())
        .map_err(|message| StartError::Store { message })?;
    let rollouts = Arc::new(
        Rollouts::new(rollout_store, Arc::new(config.clone()), &registry)
            .map_err(|message| StartError::Store { message })?,
    );
    rollouts.join_fleet(&config).await;
    // The history keeps its own connection too: its writes are batched
    // apart from the SLO engine's.
    let history_store = store::open_store(&config, config_path.as_deref())
        .map_err(|message| StartError::Store { message })?;
    let history = Arc::new(history::HistoryRecorder::new(
        history_store,
        deferred,
        slo::unix_nanos(),
    ));
    let job_backend = jobs::backend(&config, config_path.as_deref())
        .map_err(|message| StartError::Store { message })?;
    let loops = Arc::new(Loops {
        slo: engine.clone(),
        rollouts: rollouts.clone(),
        history: history.clone(),
    });
    let gateway = Gateway::start_with(
        config,
        config_path,
        registry,
        levee_proxy::StartOptions {
            inherited: options.inherited,
            slo_counters: counters,
            control: Some(loops),
            connector: options.connector,
            job_backend: Some(job_backend),
            config_overlays: options.config_overlays,
        },
    )
    .await?;
    let weak = Arc::downgrade(&engine);
    let weak_history = Arc::downgrade(&history);
    let drain = gateway.drain_signal();
    let store_after = options.slo_store_after;
    tokio::spawn(async move {
        if let Some(after) = store_after {
            let _ = after.await;
            let Some(engine) = weak.upgrade() else { return };
            engine.load_deferred().await;
            if let Some(history) = weak_history.upgrade() {
                history.load_deferred(slo::unix_nanos()).await;
            }
        }
        slo::run(weak, drain).await;
    });
    rollout::spawn(&rollouts, &engine, &gateway);
    if let Some(rw) = gateway.config().remote_write.clone() {
        remote_write::spawn(rw, gateway.registry().clone(), gateway.drain_signal());
    }
    history::spawn(&history, &gateway);
    if status.is_shared() {
        status_board::spawn_refresh(Arc::downgrade(&status), gateway.drain_signal());
    }
    Ok((
        gateway,
        Control {
            slo: engine,
            rollouts,
            status,
            history,
        },
    ))
}
