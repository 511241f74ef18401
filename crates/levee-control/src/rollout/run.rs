//! The rollout loop: every analysis interval, for each active rollout,
//! gather the judge's verdict, the gates and the webhooks' answers, let
//! the state machine decide, turn the release's weights, persist and
//! publish. Also the `levee_rollout_*` metrics.

use super::machine::{Effect, HookAnswer, Inputs};
use super::{analysis, fleet, hooks, Phase, RolloutState, Rollouts};
use crate::slo::SloEngine;
use levee_config::HookPhase;
use levee_core::metrics::{names, Registry};
use levee_proxy::release::{Arm, Release, VersionSnapshot};
use levee_proxy::Gateway;
use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

/// How often the loop wakes; each rollout is analysed at its own
/// `analysis.interval` (never more often than this).
const TICK: Duration = Duration::from_millis(250);

/// The loop, until the gateway drains.
pub(crate) async fn run(
    rollouts: Weak<Rollouts>,
    slo: Weak<SloEngine>,
    gateway: Gateway,
    mut drain: tokio::sync::watch::Receiver<bool>,
) {
    let mut last_analysis: HashMap<String, levee_core::time::Instant> = HashMap::new();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(TICK) => {}
            _ = drain.changed() => {}
        }
        if *drain.borrow() {
            return;
        }
        let (Some(rollouts), Some(slo)) = (rollouts.upgrade(), slo.upgrade()) else {
            return;
        };
        let now = levee_core::time::now();
        rollouts.sync_fleet(&gateway).await;
        let active: Vec<String> = rollouts
            .lock()
            .values()
            .filter(|s| s.phase.is_active() && rollouts.leads(&s.route))
            .map(|s| s.route.clone())
            .collect();
        for route in active {
            let Some(policy) = rollouts.policy(&route) else {
                continue;
            };
            let due = last_analysis
                .get(&route)
                .is_none_or(|at| now.duration_since(*at) >= policy.analysis.interval);
            if !due {
                continue;
            }
            last_analysis.insert(route.clone(), now);
            rollouts.analyse(&route, &policy, &gateway, &slo).await;
        }
        rollouts.publish();
    }
}

impl Rollouts {
    /// With a fleet: shares this replica's counts, adopts newer shared
    /// states (serving their weights), takes or renews the lease of each
    /// active rollout, and, where it leads, carries out queued commands.
    async fn sync_fleet(&self, gateway: &Gateway) {
        let Some(fleet) = self.fleet.get() else {
            return;
        };
        let routes: Vec<RolloutState> = self.lock().values().cloned().collect();
        for state in routes {
            let route = state.route.as_str();
            if let Some(release) = gateway.release(route) {
                if state.started_ns > 0
                    && release.canary_cluster() == state.canary.as_deref().unwrap_or_default()
                    && release.stable_cluster() == state.stable
                {
                    let counts = fleet::ReplicaCounts {
                        canary: fleet::SharedCounts::of(&release.snapshot(Arm::Canary)),
                        baseline: fleet::SharedCounts::of(&release.snapshot(Arm::Baseline)),
                    };
                    fleet.share_counts(&state, &counts).await;
                }
            }
            if let Some(shared) = fleet.state(route).await {
                if let Some(taken) = self.adopt(shared) {
                    self.sync_weights(&taken);
                    self.rebuild_if_stale(gateway, &taken).await;
                }
            }
            let active = self.get(route).is_some_and(|s| s.phase.is_active());
            let leads = active && fleet.lead(route).await;
            {
                let mut leading = self.leading.lock().unwrap_or_else(|e| e.into_inner());
                if leads {
                    if leading.insert(route.to_string()) {
                        tracing::info!(route, instance = %fleet.instance, "this replica leads the rollout");
                    }
                } else {
                    leading.remove(route);
                }
            }
            if leads {
                for command in fleet.take_commands(route).await {
                    if let Err(e) = self.command(route, command).await {
                        tracing::info!(route, command = command.name(), error = %e, "a queued rollout command was refused");
                        // The follower that queued it waits for a new
                        // revision: publish one so it hears the answer.
                        self.publish_decision(route).await;
                    }
                }
            }
        }
    }

    /// A state adopted from the fleet may name a stable cluster this
    /// replica's routes were not built with (the leader's `undo`): build
    /// them again, as the leader did.
    async fn rebuild_if_stale(&self, gateway: &Gateway, state: &RolloutState) {
        let config = gateway.config();
        let Some(configured) = config.routes.iter().find(|r| r.name == state.route) else {
            return;
        };
        let serving_stable = gateway
            .release(&state.route)
            .map_or(configured.cluster.clone(), |r| {
                r.stable_cluster().to_string()
            });
        let wanted_stable = if state.canary.as_deref() == Some(configured.cluster.as_str()) {
            state.stable.clone()
        } else {
            configured.cluster.clone()
        };
        if serving_stable != wanted_stable {
            if let Err(e) = gateway.reload((*config).clone()).await {
                tracing::warn!(route = %state.route, error = %e, "rebuilding the route for the fleet's rollout failed");
            }
        }
    }

    /// The canary's and the baseline's counts: this replica's, or with a
    /// fleet, the sum of every replica's shared counts.
    async fn counts(
        &self,
        release: &Release,
        state: &RolloutState,
    ) -> (VersionSnapshot, VersionSnapshot) {
        let mine = (
            release.snapshot(Arm::Canary),
            release.snapshot(Arm::Baseline),
        );
        let Some(fleet) = self.fleet.get() else {
            return mine;
        };
        let Some(all) = fleet.fleet_counts(state).await else {
            return mine;
        };
        let (mut canary, mut baseline) = (fleet::empty_snapshot(), fleet::empty_snapshot());
        for replica in &all {
            replica.canary.add_to(&mut canary);
            replica.baseline.add_to(&mut baseline);
        }
        (canary, baseline)
    }

    /// The counts since the evidence of `route`'s rollout starts (see
    /// `Rollouts::evidence_from`).
    fn evidence(
        &self,
        route: &str,
        (canary, baseline): (VersionSnapshot, VersionSnapshot),
    ) -> (VersionSnapshot, VersionSnapshot) {
        use super::EvidenceFrom;
        let mut from = self.evidence_from.lock().unwrap_or_else(|e| e.into_inner());
        match from.get(route) {
            None => (canary, baseline),
            Some(EvidenceFrom::Next) => {
                from.insert(
                    route.to_string(),
                    EvidenceFrom::Counts(canary.clone(), baseline.clone()),
                );
                (since(&canary, &canary), since(&baseline, &baseline))
            }
            Some(EvidenceFrom::Counts(c0, b0)) => (since(&canary, c0), since(&baseline, b0)),
        }
    }

    /// One analysis of `route`'s rollout and the decision on it.
    async fn analyse(
        &self,
        route: &str,
        policy: &levee_config::Rollout,
        gateway: &Gateway,
        slo: &SloEngine,
    ) {
        let Some(release) = gateway.release(route) else {
            return;
        };
        let Some(state) = self.get(route) else { return };
        if state.canary.as_deref() != Some(release.canary_cluster())
            || state.stable != release.stable_cluster()
        {
            // The data plane has not (yet) built this rollout's versions.
            return;
        }
        let config = gateway.config();
        let report = slo.report();
        let mirror = gateway
            .mirror_stats(route)
            .and_then(|m| Some((m.compared, m.mismatch_rate()?)));
        let (canary, baseline) = self.evidence(route, self.counts(&release, &state).await);
        let analysed = analysis::analyse(&policy.analysis, canary, baseline, mirror);
        let gate_hold = analysis::gate_hold(&policy.gates, route, &report);
        let (spent, budget_exceeded) =
            analysis::budget_spent(&config, &policy.gates, &state, &analysed.canary);
        let gate_hooks = match state.pending_gate(policy) {
            Some(HookPhase::ConfirmRollout) => {
                hooks::gate(
                    policy,
                    &[HookPhase::ConfirmRollout, HookPhase::PreRollout],
                    &state,
                )
                .await
            }
            Some(phase) => hooks::gate(policy, &[phase], &state).await,
            None => HookAnswer::Pass,
        };
        let analysis_hooks = if state.phase == Phase::Progressing {
            hooks::gate(policy, &[HookPhase::Rollout], &state).await
        } else {
            HookAnswer::Pass
        };
        let inputs = Inputs {
            now: levee_core::time::unix_nanos(),
            judgement: analysed.judgement,
            checks: analysed.checks,
            gate_hold,
            budget_exceeded,
            gate_hooks,
            analysis_hooks,
            canary_requests: analysed.canary.total,
        };
        let (after, effects) = {
            let mut states = self.lock();
            let Some(state) = states.get_mut(route) else {
                return;
            };
            let was_waiting = state.phase == Phase::Waiting;
            let decisions_before = state.decisions.len();
            let effects = state.advance(policy, &inputs);
            if was_waiting && state.phase == Phase::Progressing {
                state.budget_at_start = analysis::budget_at_start(&policy.gates, route, &report);
            }
            state.canary_requests = analysed.canary.total;
            state.canary_bad = analysed.canary.bad;
            state.budget_spent = spent;
            for d in &state.decisions[decisions_before.min(state.decisions.len())..] {
                self.metrics.decision(route, &d.outcome);
                tracing::info!(
                    target: "levee::rollout",
                    route,
                    outcome = %d.outcome,
                    step = d.step + 1,
                    weight_percent = f64::from(d.weight) / 100.0,
                    reason = %d.reason,
                    "rollout decision"
                );
            }
            (state.clone(), effects)
        };
        self.apply_effects(route, &after, &effects).await;
        let changed = effects
            .iter()
            .any(|e| matches!(e, Effect::Weights(_) | Effect::Promoted))
            || after.decisions.len() != state.decisions.len()
            || after.phase != state.phase;
        if after.decisions.len() != state.decisions.len() {
            hooks::notify(policy, HookPhase::Event, &after);
        }
        if changed {
            self.publish_decision(route).await;
        }
    }

    /// Publishes every rollout's gauges.
    fn publish(&self) {
        for state in self.report() {
            self.metrics.publish(&state);
        }
    }
}

/// Handles to the `levee_rollout_*` metrics.
pub(crate) struct RolloutMetrics {
    registry: Arc<Registry>,
}

impl RolloutMetrics {
    pub(crate) fn new(registry: &Arc<Registry>) -> Self {
        Self {
            registry: registry.clone(),
        }
    }

    pub(crate) fn decision(&self, route: &str, outcome: &str) {
        self.registry
            .counter(
                names::ROLLOUT_DECISIONS,
                "Rollout decisions by route and outcome.",
                &[("route", route), ("outcome", outcome)],
            )
            .inc();
    }

    fn publish(&self, state: &RolloutState) {
        let route = state.route.as_str();
        for phase in Phase::ALL {
            self.registry
                .gauge(
                    names::ROLLOUT_PHASE,
                    "1 for the phase a route's rollout is in.",
                    &[("route", route), ("phase", phase.name())],
                )
                .set(i64::from(phase == state.phase));
        }
        self.registry
            .float_gauge(
                names::ROLLOUT_WEIGHT,
                "The canary's share of the route's traffic.",
                &[("route", route)],
            )
            .set(f64::from(state.weight) / f64::from(levee_config::WEIGHT_SCALE));
        self.registry
            .gauge(
                names::ROLLOUT_STEP,
                "The current step of the route's rollout, from 0.",
                &[("route", route)],
            )
            .set(i64::try_from(state.step).unwrap_or(i64::MAX));
        self.registry
            .float_gauge(
                names::ROLLOUT_BUDGET_SPENT,
                "Share of the starting error budget the canary spent.",
                &[("route", route)],
            )
            .set(state.budget_spent);
        for check in &state.last_checks {
            self.registry
                .float_gauge(
                    names::ROLLOUT_ANALYSIS_VALUE,
                    "A rollout analysis value.",
                    &[("route", route), ("check", &check.name)],
                )
                .set(check.value);
            self.registry
                .float_gauge(
                    names::ROLLOUT_ANALYSIS_THRESHOLD,
                    "The threshold a rollout analysis value is held against.",
                    &[("route", route), ("check", &check.name)],
                )
                .set(check.threshold);
        }
    }
}

/// Starts the loop for `gateway`.
pub(crate) fn spawn(rollouts: &Arc<Rollouts>, slo: &Arc<SloEngine>, gateway: &Gateway) {
    rollouts.attach(gateway.clone());
    tokio::spawn(run(
        Arc::downgrade(rollouts),
        Arc::downgrade(slo),
        gateway.clone(),
        gateway.drain_signal(),
    ));
}

/// The counts of `now` that came after `then`.
fn since(now: &VersionSnapshot, then: &VersionSnapshot) -> VersionSnapshot {
    VersionSnapshot {
        total: now.total.saturating_sub(then.total),
        bad: now.bad.saturating_sub(then.bad),
        within: now
            .within
            .iter()
            .map(|(t, n)| {
                let before = then
                    .within
                    .iter()
                    .find(|(d, _)| d == t)
                    .map_or(0, |(_, m)| *m);
                (*t, n.saturating_sub(before))
            })
            .collect(),
        latency: now.latency.saturating_sub(&then.latency),
    }
}
