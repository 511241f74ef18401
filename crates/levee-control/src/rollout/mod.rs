//! Rollouts: moving a route from one cluster to another progressively,
//! judged on what the data plane measures, gated by the error budget.
//!
//! - `machine`: one rollout's decisions as a plain state machine (phase,
//!   step, weights, the decision log), time and inputs passed in.
//! - `analysis`: the judge's inputs from the data plane's per-version
//!   counts, the error-budget gates and the canary's budget spend.
//! - `hooks`: Flagger-style webhooks per phase.
//! - `run`: the loop, every analysis interval: gather inputs, decide, turn
//!   the release's weights knob, persist, publish metrics.
//!
//! How a rollout begins: `Gateway::apply` asks [`Rollouts::base`] which
//! cluster last served a route fully. When the config names another one
//! and the route has a `rollout` policy, the data plane serves both (the
//! old as stable, the new as canary at weight zero) and the commit hook
//! ([`Rollouts::commit`]) opens a rollout in the `waiting` phase. The loop
//! takes it from there. Everything is written to the store on each change,
//! so a restart resumes at the same step.

mod analysis;
mod fleet;
mod hooks;
pub(crate) mod machine;
pub mod report;
mod run;
#[cfg(test)]
mod tests;

pub(crate) use run::spawn;

use levee_config::{Config, Rollout, Strategy};
use levee_core::metrics::Registry;
use levee_core::Nanos;
use levee_proxy::release::Weights;
use levee_proxy::Gateway;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

/// Decisions kept per rollout (the oldest are dropped).
pub(crate) const MAX_DECISIONS: usize = 200;

/// Where a rollout is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// No rollout: the stable cluster serves the route.
    Idle,
    /// The config changed; gates or a confirming webhook hold the start.
    Waiting,
    /// Moving through the steps (or judging a preview or an A/B group).
    Progressing,
    /// Held for a person (`levee rollout resume`).
    Paused,
    /// Blue/green: all traffic on the new version, the old kept warm.
    Switched,
    /// The new version serves everything and is now the stable one.
    Promoted,
    /// Everything went back to the stable version; the new one stays out
    /// until the config changes again.
    RolledBack,
}

impl Phase {
    /// The name in the API, metrics and logs.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Idle => "idle",
            Phase::Waiting => "waiting",
            Phase::Progressing => "progressing",
            Phase::Paused => "paused",
            Phase::Switched => "switched",
            Phase::Promoted => "promoted",
            Phase::RolledBack => "rolled_back",
        }
    }

    /// Every phase, for metrics.
    pub const ALL: [Phase; 7] = [
        Phase::Idle,
        Phase::Waiting,
        Phase::Progressing,
        Phase::Paused,
        Phase::Switched,
        Phase::Promoted,
        Phase::RolledBack,
    ];

    /// Whether the loop still has work to do.
    pub fn is_active(self) -> bool {
        matches!(self, Phase::Waiting | Phase::Progressing | Phase::Switched)
    }
}

/// One analysis value beside its threshold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckValue {
    /// What is checked (`error_rate`, `latency_rank`, `latency_p99`, ...).
    pub name: String,
    /// The measured value.
    pub value: f64,
    /// What it is held against.
    pub threshold: f64,
    /// The test statistic, where there is one.
    pub statistic: Option<f64>,
    /// `passed`, `failed` or `not_enough_data`.
    pub outcome: String,
}

/// One entry of a rollout's decision log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// When, in nanoseconds since the UNIX epoch.
    pub at_ns: u64,
    /// The step (from 0) it was taken at.
    pub step: usize,
    /// The canary weight then, in basis points of a percent.
    pub weight: u32,
    /// `start`, `advance`, `hold`, `pause`, `resume`, `switch`,
    /// `promote`, `rollback`.
    pub outcome: String,
    /// Why, in words.
    pub reason: String,
    /// The analysis values it was taken on.
    pub checks: Vec<CheckValue>,
}

/// One route's rollout, as persisted and reported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RolloutState {
    /// The route.
    pub route: String,
    /// The cluster serving when the canary weight is zero.
    pub stable: String,
    /// The new version's cluster, during and after a rollout.
    pub canary: Option<String>,
    /// The stable cluster before the last promotion (`undo` goes back).
    pub previous_stable: Option<String>,
    /// `canary`, `blue_green` or `ab`.
    pub strategy: String,
    /// Where it is.
    pub phase: Phase,
    /// The current step, from 0.
    pub step: usize,
    /// The canary weight in force, in basis points of a percent.
    pub weight: u32,
    /// When the first step began (0 before).
    pub started_ns: u64,
    /// When the current step began.
    pub step_started_ns: u64,
    /// When anything last changed.
    pub updated_ns: u64,
    /// When it was rolled back.
    pub rolled_back_ns: Option<u64>,
    /// Who paused it (`manual`, `step`, `analysis`), or `resumed`.
    pub paused_by: Option<String>,
    /// Why it is where it is.
    pub reason: Option<String>,
    /// The last analysis values.
    pub last_checks: Vec<CheckValue>,
    /// The decision log, oldest first.
    pub decisions: Vec<Decision>,
    /// The SLO budget (in bad events) left when the rollout started, by
    /// objective id: what the canary's spend is measured against.
    pub budget_at_start: Vec<(String, f64)>,
    /// Requests the canary served, and the bad ones, as of the last
    /// analysis (by the SLO engine's rules).
    pub canary_requests: u64,
    /// Bad canary requests.
    pub canary_bad: u64,
    /// The share of the starting budget the canary spent.
    pub budget_spent: f64,
    /// Grows with each decision a fleet's leader publishes; a replica
    /// adopts a shared state with a larger one.
    #[serde(default)]
    pub revision: u64,
}

impl RolloutState {
    pub(crate) fn idle(route: &str, stable: &str, strategy: &Strategy, now: Nanos) -> Self {
        Self {
            route: route.to_string(),
            stable: stable.to_string(),
            canary: None,
            previous_stable: None,
            strategy: strategy_name(strategy).to_string(),
            phase: Phase::Idle,
            step: 0,
            weight: 0,
            started_ns: 0,
            step_started_ns: 0,
            updated_ns: now,
            rolled_back_ns: None,
            paused_by: None,
            reason: None,
            last_checks: Vec::new(),
            decisions: Vec::new(),
            budget_at_start: Vec::new(),
            canary_requests: 0,
            canary_bad: 0,
            budget_spent: 0.0,
            revision: 0,
        }
    }

    /// A new rollout from `stable` to `canary`.
    fn begin(&mut self, canary: &str, strategy: &Strategy, now: Nanos) {
        let stable = self.stable.clone();
        let previous = self.previous_stable.take();
        // The revision keeps growing, so a fleet never prefers the shared
        // state of an earlier rollout of this route to this one.
        let revision = self.revision;
        *self = Self::idle(&self.route, &stable, strategy, now);
        self.previous_stable = previous;
        self.revision = revision;
        self.canary = Some(canary.to_string());
        self.phase = Phase::Waiting;
        self.decisions.push(Decision {
            at_ns: now,
            step: 0,
            weight: 0,
            outcome: "begin".into(),
            reason: format!("the config moved the route from `{stable}` to `{canary}`"),
            checks: Vec::new(),
        });
    }
}

fn strategy_name(s: &Strategy) -> &'static str {
    match s {
        Strategy::Canary { .. } => "canary",
        Strategy::BlueGreen { .. } => "blue_green",
        Strategy::Ab { .. } => "ab",
    }
}

/// A command given by hand (`levee rollout ...`, the admin API).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Hold the current weights.
    Pause,
    /// Go on from a pause.
    Resume,
    /// Everything to the new version now.
    Promote,
    /// Everything back to the stable version now.
    Abort,
    /// Back to the version before the last promotion (or abort).
    Undo,
}

impl Command {
    /// Its name, as [`Command::parse`] reads it.
    pub fn name(self) -> &'static str {
        match self {
            Command::Pause => "pause",
            Command::Resume => "resume",
            Command::Promote => "promote",
            Command::Abort => "abort",
            Command::Undo => "undo",
        }
    }

    /// Parses `pause`, `resume`, `promote`, `abort`, `undo`.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pause" => Command::Pause,
            "resume" => Command::Resume,
            "promote" => Command::Promote,
            "abort" => Command::Abort,
            "undo" => Command::Undo,
            _ => return None,
        })
    }
}

/// Why a command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// No route of that name has a rollout policy.
    #[error("no rollout for route `{0}`")]
    NotFound(String),
    /// The rollout is not where the command applies.
    #[error("{0}")]
    Refused(String),
    /// The fleet's leader did not carry the command out in time.
    #[error("the replica leading this rollout did not answer; try again")]
    NoLeader,
}

/// The rollouts of one gateway: their states, the store they are written
/// to, and the gateway whose releases they turn (set once it has started).
pub struct Rollouts {
    states: Mutex<HashMap<String, RolloutState>>,
    config: Mutex<Arc<Config>>,
    store: Mutex<Option<Box<dyn levee_store::Store>>>,
    gateway: OnceLock<Gateway>,
    metrics: run::RolloutMetrics,
    /// The other gateways sharing rollouts through Redis, when configured.
    fleet: OnceLock<fleet::Fleet>,
    /// Routes whose rollout this replica leads now.
    leading: Mutex<std::collections::HashSet<String>>,
    /// Where each rollout's evidence starts: the canary's and baseline's
    /// counts when it was resumed (a resumed rollout is judged afresh, not
    /// on the evidence that paused it). Absent: from the release's start.
    evidence_from: Mutex<HashMap<String, EvidenceFrom>>,
}

/// See `Rollouts::evidence_from`.
#[derive(Debug)]
enum EvidenceFrom {
    /// Take the counts at the next analysis.
    Next,
    /// The canary's and the baseline's counts then.
    Counts(
        levee_proxy::release::VersionSnapshot,
        levee_proxy::release::VersionSnapshot,
    ),
}

impl std::fmt::Debug for Rollouts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rollouts").finish_non_exhaustive()
    }
}

impl Rollouts {
    /// The rollouts `store` holds (a restart resumes them), for `config`.
    pub(crate) fn new(
        mut store: Option<Box<dyn levee_store::Store>>,
        config: Arc<Config>,
        registry: &Arc<Registry>,
    ) -> Result<Self, String> {
        let mut states = HashMap::new();
        if let Some(store) = store.as_mut() {
            for row in store.load_rollouts().map_err(|e| e.to_string())? {
                match serde_json::from_str::<RolloutState>(&row.state) {
                    Ok(state) => {
                        states.insert(row.route, state);
                    }
                    Err(e) => {
                        tracing::warn!(route = %row.route, error = %e, "a stored rollout could not be read; it starts afresh")
                    }
                }
            }
        }
        Ok(Self {
            states: Mutex::new(states),
            config: Mutex::new(config),
            store: Mutex::new(store),
            gateway: OnceLock::new(),
            metrics: run::RolloutMetrics::new(registry),
            fleet: OnceLock::new(),
            leading: Mutex::new(Default::default()),
            evidence_from: Mutex::new(HashMap::new()),
        })
    }

    /// Joins the fleet on `config`'s Redis: adopts the shared state of
    /// every rollout (a replica started mid-rollout joins at the current
    /// step), before the routes are built. Without Redis, or when it cannot
    /// be reached, this replica rolls out on its own.
    pub(crate) async fn join_fleet(&self, config: &Config) {
        let Some(redis) = &config.redis else { return };
        let Some(fleet) = fleet::Fleet::connect(redis).await else {
            tracing::warn!("cannot reach Redis: rollouts are decided by this replica alone");
            return;
        };
        for route in config.routes.iter().filter(|r| r.rollout.is_some()) {
            if let Some(shared) = fleet.state(&route.name).await {
                self.adopt(shared);
            }
        }
        tracing::info!(instance = %fleet.instance, "rollouts shared through Redis");
        let _ = self.fleet.set(fleet);
    }

    /// Takes a shared state newer than ours; returns it when taken.
    fn adopt(&self, shared: RolloutState) -> Option<RolloutState> {
        let mut states = self.lock();
        let newer = states
            .get(&shared.route)
            .is_none_or(|s| shared.revision > s.revision);
        if !newer {
            return None;
        }
        states.insert(shared.route.clone(), shared.clone());
        drop(states);
        self.persist(std::slice::from_ref(&shared.route), &[]);
        Some(shared)
    }

    /// Whether this replica decides `route`'s rollout: always without a
    /// fleet, else while it holds the lease.
    pub(crate) fn leads(&self, route: &str) -> bool {
        self.fleet.get().is_none()
            || self
                .leading
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .contains(route)
    }

    /// This replica's id in the fleet, when there is one.
    pub fn instance(&self) -> Option<&str> {
        self.fleet.get().map(|f| f.instance.as_str())
    }

    pub(crate) fn attach(&self, gateway: Gateway) {
        let _ = self.gateway.set(gateway);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, RolloutState>> {
        self.states.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn policy(&self, route: &str) -> Option<Rollout> {
        let config = self
            .config
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        config
            .routes
            .iter()
            .find(|r| r.name == route)
            .and_then(|r| r.rollout.clone())
    }

    /// See `ControlPlane::rollout_base`.
    pub(crate) fn base(&self, route: &str, configured: &str) -> Option<(String, Weights)> {
        let states = self.lock();
        let state = states.get(route)?;
        let policy = self.policy(route)?;
        // A rollout to another cluster than this state's is about to
        // begin: nothing moves until its first decision.
        let weights = if state.canary.as_deref() == Some(configured) {
            state.step_weights(&policy)
        } else {
            Weights::default()
        };
        Some((state.stable.clone(), weights))
    }

    /// Takes a committed config: opens rollouts for routes whose cluster
    /// changed, closes those whose config went back, forgets routes
    /// without a rollout policy.
    pub(crate) fn commit(&self, config: &Arc<Config>) {
        *self.config.lock().unwrap_or_else(|e| e.into_inner()) = config.clone();
        let now = levee_core::time::unix_nanos();
        let clusters: Vec<&str> = config.clusters.iter().map(|c| c.name.as_str()).collect();
        let mut changed = Vec::new();
        let mut removed = Vec::new();
        {
            let mut states = self.lock();
            states.retain(|route, _| {
                let keep = config
                    .routes
                    .iter()
                    .any(|r| r.name == *route && r.rollout.is_some());
                if !keep {
                    removed.push(route.clone());
                }
                keep
            });
            for route in config.routes.iter() {
                let Some(policy) = &route.rollout else {
                    continue;
                };
                let state = states.entry(route.name.clone()).or_insert_with(|| {
                    changed.push(route.name.clone());
                    RolloutState::idle(&route.name, &route.cluster, &policy.strategy, now)
                });
                if state.stable == route.cluster {
                    // Back to the stable cluster before the new one was
                    // promoted: that rollout is over. (A promoted one has
                    // the configured cluster as both: nothing to do.)
                    let went_back = state.canary.as_deref().is_some_and(|c| c != route.cluster);
                    if went_back && state.phase != Phase::Idle {
                        tracing::info!(route = %route.name, cluster = %route.cluster, "the config went back to the stable cluster; the rollout is over");
                        let strategy = policy.strategy.clone();
                        let (previous, revision) = (state.previous_stable.clone(), state.revision);
                        *state = RolloutState::idle(&route.name, &route.cluster, &strategy, now);
                        state.previous_stable = previous;
                        state.revision = revision;
                        changed.push(route.name.clone());
                    }
                    continue;
                }
                if !clusters.contains(&state.stable.as_str()) {
                    tracing::warn!(route = %route.name, from = %state.stable, to = %route.cluster, "the previous cluster is gone from the config, so the route switched at once without a rollout");
                    let revision = state.revision;
                    *state = RolloutState::idle(&route.name, &route.cluster, &policy.strategy, now);
                    state.revision = revision;
                    changed.push(route.name.clone());
                    continue;
                }
                if state.canary.as_deref() == Some(route.cluster.as_str()) {
                    continue;
                }
                tracing::info!(route = %route.name, from = %state.stable, to = %route.cluster, strategy = strategy_name(&policy.strategy), "rollout begins");
                state.begin(&route.cluster, &policy.strategy, now);
                self.metrics.decision(&route.name, "begin");
                self.evidence_from
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&route.name);
                changed.push(route.name.clone());
            }
        }
        if let Some(fleet) = self.fleet.get().filter(|_| !removed.is_empty()) {
            let (fleet, gone) = (fleet.clone(), removed.clone());
            tokio::spawn(async move {
                for route in gone {
                    fleet.forget(&route).await;
                }
            });
        }
        self.persist(&changed, &removed);
    }

    /// Gives up this replica's leases (a clean shutdown), so another
    /// replica takes over at its next tick instead of after the lease.
    pub(crate) async fn resign(&self) {
        let Some(fleet) = self.fleet.get() else {
            return;
        };
        let routes: Vec<String> = self
            .leading
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
            .collect();
        for route in routes {
            fleet.resign(&route).await;
        }
    }

    /// Every rollout, by route.
    pub fn report(&self) -> Vec<RolloutState> {
        let mut out: Vec<RolloutState> = self.lock().values().cloned().collect();
        out.sort_by(|a, b| a.route.cmp(&b.route));
        out
    }

    /// One route's rollout.
    pub fn get(&self, route: &str) -> Option<RolloutState> {
        self.lock().get(route).cloned()
    }

    /// Carries out a command given by hand.
    pub async fn command(
        &self,
        route: &str,
        command: Command,
    ) -> Result<RolloutState, CommandError> {
        let policy = self
            .policy(route)
            .ok_or_else(|| CommandError::NotFound(route.to_string()))?;
        if let Some(fleet) = self.fleet.get().filter(|_| !self.leads(route)) {
            return self.command_through_leader(fleet, route, command).await;
        }
        let now = levee_core::time::unix_nanos();
        let mut rebuild = false;
        let (state, effects) = {
            let mut states = self.lock();
            let state = states
                .get_mut(route)
                .ok_or_else(|| CommandError::NotFound(route.to_string()))?;
            let effects = match command {
                Command::Pause => state.pause(now).map(|()| Vec::new()),
                Command::Resume => state.resume(&policy, now),
                Command::Promote => state.promote(&policy, now),
                Command::Abort => state.abort(&policy, now),
                Command::Undo => match state.phase {
                    Phase::Idle => Err(machine::NOTHING_TO_DO.into()),
                    Phase::Promoted => match state.previous_stable.clone() {
                        Some(previous) => {
                            let current = state.stable.clone();
                            state.stable = previous.clone();
                            state.previous_stable = None;
                            state.canary = Some(current.clone());
                            state.phase = Phase::RolledBack;
                            state.weight = 0;
                            state.rolled_back_ns = Some(now);
                            state.updated_ns = now;
                            let reason = format!("undone by hand: `{previous}` serves the route again, `{current}` stays out until the config changes");
                            state.reason = Some(reason.clone());
                            state.decisions.push(Decision {
                                at_ns: now,
                                step: state.step,
                                weight: 0,
                                outcome: "rollback".into(),
                                reason,
                                checks: Vec::new(),
                            });
                            rebuild = true;
                            // At once where the data plane still serves
                            // both versions; the rebuild covers the rest.
                            Ok(vec![machine::Effect::Weights(Weights::default())])
                        }
                        None => Err("there is no earlier version to go back to".into()),
                    },
                    _ => state.abort(&policy, now),
                },
            }
            .map_err(CommandError::Refused)?;
            (state.clone(), effects)
        };
        if command == Command::Resume {
            self.evidence_from
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(route.to_string(), EvidenceFrom::Next);
        }
        if let Some(d) = state.decisions.last() {
            self.metrics.decision(route, &d.outcome);
        }
        hooks::notify(&policy, levee_config::HookPhase::Event, &state);
        tracing::info!(route, command = ?command, phase = state.phase.name(), "rollout command");
        self.apply_effects(route, &state, &effects).await;
        let state = self.publish_decision(route).await.unwrap_or(state);
        if rebuild {
            // The data plane builds the route between the two versions
            // again, now with the earlier one as stable.
            if let Some(gateway) = self.gateway.get() {
                let config = (*gateway.config()).clone();
                if let Err(e) = gateway.reload(config).await {
                    tracing::warn!(route, error = %e, "rebuilding the route for undo failed");
                }
            }
        }
        Ok(state)
    }

    /// A command given to a follower: queued for the leader, answered
    /// with the state once the leader has published a decision on it.
    async fn command_through_leader(
        &self,
        fleet: &fleet::Fleet,
        route: &str,
        command: Command,
    ) -> Result<RolloutState, CommandError> {
        let before = self
            .get(route)
            .ok_or_else(|| CommandError::NotFound(route.to_string()))?
            .revision;
        if !fleet.queue(route, command).await {
            return Err(CommandError::NoLeader);
        }
        let deadline = levee_core::time::now() + 2 * fleet::LEASE;
        while levee_core::time::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            if let Some(shared) = fleet.state(route).await {
                if shared.revision > before {
                    let taken = self.adopt(shared.clone()).unwrap_or(shared);
                    self.sync_weights(&taken);
                    return Ok(taken);
                }
            }
        }
        Err(CommandError::NoLeader)
    }

    /// After a decision on `route` (here, by the leader): persisted, and
    /// published to the fleet with the next revision.
    pub(crate) async fn publish_decision(&self, route: &str) -> Option<RolloutState> {
        let state = {
            let mut states = self.lock();
            let state = states.get_mut(route)?;
            state.revision += 1;
            state.clone()
        };
        self.persist(&[route.to_string()], &[]);
        if let Some(fleet) = self.fleet.get() {
            if !fleet.publish(&state).await {
                tracing::warn!(route, "could not share the rollout decision through Redis");
            }
        }
        Some(state)
    }

    /// Serves the weights `state` says, where the data plane has the
    /// release it is about.
    pub(crate) fn sync_weights(&self, state: &RolloutState) {
        let Some(policy) = self.policy(&state.route) else {
            return;
        };
        let Some(release) = self.gateway.get().and_then(|g| g.release(&state.route)) else {
            return;
        };
        if Some(release.canary_cluster()) != state.canary.as_deref() {
            return;
        }
        let want = state.step_weights(&policy);
        let knob = release.weights();
        if **knob.get() != want {
            knob.turn(want, "rollout", knob.generation());
        }
    }

    /// Turns the release's knob and sends notifications for `effects`.
    async fn apply_effects(&self, route: &str, state: &RolloutState, effects: &[machine::Effect]) {
        let gateway = self.gateway.get();
        for effect in effects {
            match effect {
                machine::Effect::Weights(w) => {
                    if let Some(release) = gateway.and_then(|g| g.release(route)) {
                        let knob = release.weights();
                        if !knob.turn(*w, "rollout", knob.generation()) {
                            tracing::warn!(
                                route,
                                "the config changed under the rollout; it decides again"
                            );
                        }
                    }
                }
                machine::Effect::Promoted => {
                    let mut states = self.lock();
                    if let Some(s) = states.get_mut(route) {
                        if let Some(canary) = s.canary.clone() {
                            s.previous_stable = Some(std::mem::replace(&mut s.stable, canary));
                        }
                    }
                }
                machine::Effect::Notify(phase) => {
                    if let Some(policy) = self.policy(route) {
                        hooks::notify(&policy, *phase, state);
                    }
                }
            }
        }
    }

    /// Writes the rollouts of `routes` (and deletes `removed`) to the
    /// store, on a blocking thread.
    fn persist(&self, routes: &[String], removed: &[String]) {
        if routes.is_empty() && removed.is_empty() {
            return;
        }
        let rows: Vec<levee_store::RolloutRow> = {
            let states = self.lock();
            routes
                .iter()
                .filter_map(|r| states.get(r))
                .filter_map(|s| {
                    Some(levee_store::RolloutRow {
                        route: s.route.clone(),
                        state: serde_json::to_string(s).ok()?,
                        updated_ns: s.updated_ns,
                    })
                })
                .collect()
        };
        let mut store = self.store.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(store) = store.as_mut() {
            // Small rows, a few per second at most: written in place so a
            // crash right after a decision cannot forget it.
            if let Err(e) = store.write_rollouts(&rows, removed) {
                tracing::warn!(error = %e, "writing rollout state failed; it is kept in memory");
            }
        }
    }
}
