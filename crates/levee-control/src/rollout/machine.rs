//! One rollout's decisions as a plain state machine: given the time, the
//! judge's verdict, the error-budget gates and the gating webhooks'
//! answers, what happens next (weights, phase, a decision on record). No
//! I/O and no clock of its own: `run.rs` gathers the inputs, calls
//! [`RolloutState::advance`], and carries out the [`Effect`]s.

use super::{CheckValue, Decision, Phase, RolloutState, MAX_DECISIONS};
use levee_config::{OnFailure, Rollout, Strategy, WEIGHT_SCALE};
use levee_core::Nanos;
use levee_proxy::release::Weights;

/// The baseline slice while only forced traffic (previews, A/B groups)
/// reaches the new version: a tenth of stable traffic.
pub(crate) const FORCED_BASELINE: u32 = WEIGHT_SCALE / 10;

/// What a gating webhook said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HookAnswer {
    /// No hook at this phase, or every one answered 2xx.
    Pass,
    /// Wait and ask again.
    Hold(String),
    /// Give up on the rollout.
    Fail(String),
}

/// What the judge made of the samples so far.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Judgement {
    /// Enough evidence that the new version is no worse.
    Pass,
    /// Significant evidence that it is worse.
    Fail(String),
    /// Not enough samples yet: never a pass.
    Pending(String),
}

/// Everything a decision reads, gathered by the loop.
#[derive(Debug, Clone)]
pub(crate) struct Inputs {
    pub(crate) now: Nanos,
    pub(crate) judgement: Judgement,
    pub(crate) checks: Vec<CheckValue>,
    /// Why the error-budget gates hold the rollout, if they do.
    pub(crate) gate_hold: Option<String>,
    /// The canary spent more of the budget than allowed.
    pub(crate) budget_exceeded: Option<String>,
    /// The gating hooks of the transition [`RolloutState::pending_gate`]
    /// named.
    pub(crate) gate_hooks: HookAnswer,
    /// The `rollout` hooks of this analysis.
    pub(crate) analysis_hooks: HookAnswer,
    /// Requests the new version has served so far (A/B ends on a count).
    pub(crate) canary_requests: u64,
}

/// What the loop must do after a decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Effect {
    /// Put these weights in force.
    Weights(Weights),
    /// The new version now serves everything: it becomes the stable one.
    Promoted,
    /// Send this notification hook phase.
    Notify(levee_config::HookPhase),
}

/// Why a command on a route without a rollout under way is refused.
pub(crate) const NOTHING_TO_DO: &str =
    "no rollout is under way on this route; one starts when the config changes its cluster";

/// A gating webhook phase a transition waits for.
pub(crate) type Gate = levee_config::HookPhase;

impl RolloutState {
    /// The gating hooks the next transition needs answered, if any.
    pub(crate) fn pending_gate(&self, policy: &Rollout) -> Option<Gate> {
        match self.phase {
            Phase::Waiting => Some(Gate::ConfirmRollout),
            Phase::Progressing if self.ready_to_finish(policy) => Some(Gate::ConfirmPromotion),
            _ => None,
        }
    }

    /// Whether the current step is the last before promotion (or the
    /// switch, for blue/green; the end of the group, for A/B).
    fn ready_to_finish(&self, policy: &Rollout) -> bool {
        match &policy.strategy {
            Strategy::Canary { steps } => self.step + 1 >= steps.len(),
            Strategy::BlueGreen { .. } | Strategy::Ab { .. } => true,
        }
    }

    /// The weights of the current step.
    pub(crate) fn step_weights(&self, policy: &Rollout) -> Weights {
        match (&policy.strategy, self.phase) {
            (_, Phase::Promoted) => Weights {
                canary: WEIGHT_SCALE,
                baseline: 0,
                forcing: false,
            },
            (Strategy::BlueGreen { .. }, Phase::Switched) => Weights {
                canary: WEIGHT_SCALE,
                baseline: 0,
                forcing: false,
            },
            (_, Phase::Idle | Phase::Waiting | Phase::RolledBack) => Weights::default(),
            (Strategy::Canary { steps }, _) => {
                let w = steps.get(self.step).map_or(0, |s| s.weight);
                Weights {
                    forcing: true,
                    ..Weights::canary(w)
                }
            }
            (Strategy::BlueGreen { .. } | Strategy::Ab { .. }, _) => Weights {
                canary: 0,
                baseline: FORCED_BASELINE,
                forcing: true,
            },
        }
    }

    fn record(&mut self, now: Nanos, outcome: &'static str, reason: String, checks: &[CheckValue]) {
        self.reason = Some(reason.clone());
        self.updated_ns = now;
        self.decisions.push(Decision {
            at_ns: now,
            step: self.step,
            weight: self.weight,
            outcome: outcome.to_string(),
            reason,
            checks: checks.to_vec(),
        });
        if self.decisions.len() > MAX_DECISIONS {
            let excess = self.decisions.len() - MAX_DECISIONS;
            self.decisions.drain(..excess);
        }
    }

    fn set_phase(&mut self, policy: &Rollout, phase: Phase, effects: &mut Vec<Effect>) {
        self.phase = phase;
        let w = self.step_weights(policy);
        self.weight = w.canary;
        effects.push(Effect::Weights(w));
    }

    /// One decision. Repeated calls with nothing new change nothing but
    /// `last_checks` and `reason`.
    pub(crate) fn advance(&mut self, policy: &Rollout, inputs: &Inputs) -> Vec<Effect> {
        let now = inputs.now;
        let mut effects = Vec::new();
        self.last_checks = inputs.checks.clone();
        match self.phase {
            Phase::Waiting => {
                if let Some(why) = &inputs.gate_hold {
                    self.hold(now, why);
                    return effects;
                }
                match &inputs.gate_hooks {
                    HookAnswer::Pass => {}
                    HookAnswer::Hold(why) => {
                        self.hold(now, why);
                        return effects;
                    }
                    HookAnswer::Fail(why) => {
                        self.roll_back(
                            policy,
                            now,
                            format!("a webhook refused the rollout: {why}"),
                            inputs,
                            &mut effects,
                        );
                        return effects;
                    }
                }
                self.step = 0;
                self.step_started_ns = now;
                self.started_ns = now;
                self.set_phase(policy, Phase::Progressing, &mut effects);
                let reason = format!("started: {}", describe_step(policy, 0));
                self.record(now, "start", reason, &inputs.checks);
            }
            Phase::Progressing => self.progress(policy, inputs, &mut effects),
            Phase::Switched => {
                let keep_old = match &policy.strategy {
                    Strategy::BlueGreen { keep_old, .. } => nanos(*keep_old),
                    _ => 0,
                };
                // All traffic is on the new version: no baseline is left to
                // judge against, but the budget it spends is still watched,
                // and the old version is still warm to switch back to.
                if let Some(why) = &inputs.budget_exceeded {
                    self.roll_back(policy, now, why.clone(), inputs, &mut effects);
                } else if now.saturating_sub(self.step_started_ns) >= keep_old {
                    self.finish_promotion(
                        policy,
                        now,
                        "the old version's warm period ended",
                        inputs,
                        &mut effects,
                    );
                }
            }
            Phase::Idle | Phase::Paused | Phase::Promoted | Phase::RolledBack => {}
        }
        effects
    }

    fn progress(&mut self, policy: &Rollout, inputs: &Inputs, effects: &mut Vec<Effect>) {
        let now = inputs.now;
        // Failures first: a failing canary is never held by a gate.
        let failure = match (
            &inputs.judgement,
            &inputs.budget_exceeded,
            &inputs.analysis_hooks,
        ) {
            (Judgement::Fail(why), _, _) => Some(format!("analysis failed: {why}")),
            (_, Some(why), _) => Some(why.clone()),
            (_, _, HookAnswer::Fail(why)) => Some(format!("a rollout webhook failed: {why}")),
            _ => None,
        };
        if let Some(why) = failure {
            match policy.analysis.on_failure {
                OnFailure::Rollback => self.roll_back(policy, now, why, inputs, effects),
                OnFailure::Pause => {
                    self.phase = Phase::Paused;
                    self.paused_by = Some("analysis".into());
                    self.record(
                        now,
                        "pause",
                        format!("{why}; paused for a person (on_failure = pause)"),
                        &inputs.checks,
                    );
                }
            }
            return;
        }
        if let Some(why) = &inputs.gate_hold {
            self.hold(now, why);
            return;
        }
        let held_for = now.saturating_sub(self.step_started_ns);
        let (pause, manual, group_done) = match &policy.strategy {
            Strategy::Canary { steps } => {
                let step = &steps[self.step.min(steps.len() - 1)];
                (nanos(step.pause), step.manual, false)
            }
            Strategy::BlueGreen { preview, .. } => (nanos(*preview), false, false),
            Strategy::Ab { duration, requests } => {
                let by_time = duration.is_some_and(|d| held_for >= nanos(d));
                let by_count = requests.is_some_and(|n| inputs.canary_requests >= n);
                (0, false, by_time || by_count)
            }
        };
        let time_up = match &policy.strategy {
            Strategy::Ab { .. } => group_done,
            _ => held_for >= pause,
        };
        if !time_up {
            self.reason = Some(format!("{}; holding", describe_step(policy, self.step)));
            return;
        }
        if let Judgement::Pending(why) = &inputs.judgement {
            // No traffic is no evidence: never advance on it.
            self.hold(now, &format!("no decision yet: {why}"));
            return;
        }
        if let HookAnswer::Hold(why) = &inputs.analysis_hooks {
            self.hold(now, why);
            return;
        }
        if manual && self.paused_by.as_deref() != Some("resumed") {
            self.phase = Phase::Paused;
            self.paused_by = Some("step".into());
            self.record(
                now,
                "pause",
                format!("step {} asks for `levee rollout resume`", self.step + 1),
                &inputs.checks,
            );
            return;
        }
        if !self.ready_to_finish(policy) {
            self.step += 1;
            self.step_started_ns = now;
            self.paused_by = None;
            self.set_phase(policy, Phase::Progressing, effects);
            let reason = format!("analysis passed; {}", describe_step(policy, self.step));
            self.record(now, "advance", reason, &inputs.checks);
            return;
        }
        match &inputs.gate_hooks {
            HookAnswer::Pass => {}
            HookAnswer::Hold(why) => {
                self.hold(now, &format!("promotion held: {why}"));
                return;
            }
            HookAnswer::Fail(why) => {
                self.roll_back(
                    policy,
                    now,
                    format!("a webhook refused promotion: {why}"),
                    inputs,
                    effects,
                );
                return;
            }
        }
        match &policy.strategy {
            Strategy::BlueGreen { .. } => {
                self.step_started_ns = now;
                self.set_phase(policy, Phase::Switched, effects);
                self.record(
                    now,
                    "switch",
                    "preview passed; all traffic switched, the old version kept warm".into(),
                    &inputs.checks,
                );
            }
            _ => self.finish_promotion(
                policy,
                now,
                "analysis passed at the last step",
                inputs,
                effects,
            ),
        }
    }

    fn finish_promotion(
        &mut self,
        policy: &Rollout,
        now: Nanos,
        why: &str,
        inputs: &Inputs,
        effects: &mut Vec<Effect>,
    ) {
        self.set_phase(policy, Phase::Promoted, effects);
        effects.push(Effect::Promoted);
        effects.push(Effect::Notify(levee_config::HookPhase::PostRollout));
        self.record(now, "promote", format!("promoted: {why}"), &inputs.checks);
    }

    fn roll_back(
        &mut self,
        policy: &Rollout,
        now: Nanos,
        why: String,
        inputs: &Inputs,
        effects: &mut Vec<Effect>,
    ) {
        self.set_phase(policy, Phase::RolledBack, effects);
        effects.push(Effect::Notify(levee_config::HookPhase::Rollback));
        self.rolled_back_ns = Some(now);
        self.record(now, "rollback", why, &inputs.checks);
    }

    fn hold(&mut self, now: Nanos, why: &str) {
        // One record per kind of reason (the words before the first
        // figure), so a long hold is one line while its counts grow.
        let kind = |s: &str| {
            s.split(|c: char| c.is_ascii_digit())
                .next()
                .unwrap_or("")
                .to_string()
        };
        let same = self
            .decisions
            .last()
            .is_some_and(|d| d.outcome == "hold" && kind(&d.reason) == kind(why));
        if same {
            self.reason = Some(why.to_string());
            self.updated_ns = now;
        } else {
            self.record(now, "hold", why.to_string(), &[]);
        }
    }

    /// `levee rollout pause`.
    pub(crate) fn pause(&mut self, now: Nanos) -> Result<(), String> {
        match self.phase {
            Phase::Progressing | Phase::Waiting => {
                self.phase = Phase::Paused;
                self.paused_by = Some("manual".into());
                self.record(now, "pause", "paused by hand".into(), &[]);
                Ok(())
            }
            other => Err(format!(
                "a rollout that is {} cannot be paused",
                other.name()
            )),
        }
    }

    /// `levee rollout resume`.
    pub(crate) fn resume(&mut self, policy: &Rollout, now: Nanos) -> Result<Vec<Effect>, String> {
        if self.phase != Phase::Paused {
            return Err(format!(
                "a rollout that is {} cannot be resumed",
                self.phase.name()
            ));
        }
        let mut effects = Vec::new();
        // A step that waited for a person goes on; one paused by hand or by
        // a failed analysis is judged again from here.
        self.paused_by = Some("resumed".into());
        if self.started_ns == 0 {
            self.phase = Phase::Waiting;
        } else {
            self.step_started_ns = now;
            self.set_phase(policy, Phase::Progressing, &mut effects);
        }
        self.record(now, "resume", "resumed by hand".into(), &[]);
        Ok(effects)
    }

    /// `levee rollout promote`: everything to the new version now.
    pub(crate) fn promote(&mut self, policy: &Rollout, now: Nanos) -> Result<Vec<Effect>, String> {
        match self.phase {
            Phase::Idle => Err(NOTHING_TO_DO.into()),
            Phase::Promoted => Err("the rollout is already promoted".into()),
            Phase::RolledBack => {
                Err("a rolled-back rollout is not promoted; change the config to try again".into())
            }
            _ => {
                let mut effects = Vec::new();
                let inputs = Inputs::idle(now);
                self.finish_promotion(
                    policy,
                    now,
                    "by hand, skipping steps and analysis",
                    &inputs,
                    &mut effects,
                );
                Ok(effects)
            }
        }
    }

    /// `levee rollout abort`: everything back to the stable version now.
    pub(crate) fn abort(&mut self, policy: &Rollout, now: Nanos) -> Result<Vec<Effect>, String> {
        match self.phase {
            Phase::Idle => Err(NOTHING_TO_DO.into()),
            Phase::RolledBack => Err("the rollout is already rolled back".into()),
            Phase::Promoted => {
                Err("the rollout is promoted; `levee rollout undo` goes back".into())
            }
            _ => {
                let mut effects = Vec::new();
                let inputs = Inputs::idle(now);
                self.roll_back(policy, now, "aborted by hand".into(), &inputs, &mut effects);
                Ok(effects)
            }
        }
    }
}

impl Inputs {
    /// Inputs for a decision taken by hand.
    pub(crate) fn idle(now: Nanos) -> Self {
        Self {
            now,
            judgement: Judgement::Pending("by hand".into()),
            checks: Vec::new(),
            gate_hold: None,
            budget_exceeded: None,
            gate_hooks: HookAnswer::Pass,
            analysis_hooks: HookAnswer::Pass,
            canary_requests: 0,
        }
    }
}

fn nanos(d: std::time::Duration) -> Nanos {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// The step's weight or group, for decisions and the API.
pub(crate) fn describe_step(policy: &Rollout, step: usize) -> String {
    match &policy.strategy {
        Strategy::Canary { steps } => {
            let w = steps.get(step).map_or(0, |s| s.weight);
            format!(
                "step {} of {} at {}%",
                step + 1,
                steps.len(),
                f64::from(w) / 100.0
            )
        }
        Strategy::BlueGreen { .. } => "preview traffic only".into(),
        Strategy::Ab { .. } => "the A/B group only".into(),
    }
}
