//! Chaos experiments' decisions as a plain state machine: given an
//! [`Experiment`], the time since the run began and what was observed
//! (SLO snapshots, probe results), it says which faults to set and remove
//! and when, whether the hypothesis holds, how much of each SLO's error
//! budget the experiment spent, and how it ended. No I/O and no clock:
//! `levee chaos run` does the HTTP and passes the time in, and the tests
//! drive it on virtual time.
//!
//! Phases: `steady` (the hypothesis must hold for `steady_for`; if it
//! breaks, the experiment did not run: nothing was injected, so nothing was
//! learnt), `method` (faults set and removed on their timeline, the
//! hypothesis checked at every observation; a break or a spent chaos budget
//! aborts, removing every fault at once), `after` (the hypothesis checked
//! for `after`; a break means the system deviated) and `rollbacks` (always
//! run, whatever happened).
//!
//! The chaos budget: when the method starts, each hypothesis SLO's
//! remaining budget in bad events is `remaining_ratio × events × (1 −
//! objective)`; the share spent since is `(bad_events − bad_events at the
//! start) / that`. Spending more than `chaos_budget` aborts. A budget of
//! zero bad events (no traffic yet, or already overspent) is spent by the
//! first bad event.

use levee_config::experiment::Experiment;
use levee_core::Nanos;
use serde::Serialize;
use std::time::Duration;

/// How often the hypothesis is observed.
pub const OBSERVE_EVERY: Duration = Duration::from_secs(1);

/// One SLO objective as the target reported it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SloSnapshot {
    /// The objective's id (`name` or `name:threshold`).
    pub id: String,
    /// The SLO's name, as the hypothesis names it.
    pub slo: String,
    /// Events over the SLO's period so far.
    pub events: u64,
    /// Bad events over the period so far.
    pub bad_events: u64,
    /// The objective, as a ratio (0.99).
    pub objective: f64,
    /// The share of the error budget left (absent without data).
    pub remaining_ratio: Option<f64>,
    /// Whether its page alert fires.
    pub page_firing: bool,
}

/// One probe's answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProbeResult {
    /// The probe's name.
    pub name: String,
    /// The status, when it answered.
    pub status: Option<u16>,
    /// How long it took (to the error or timeout, when it failed).
    pub latency_ms: u64,
    /// Why there was no answer.
    pub error: Option<String>,
}

/// What one observation saw.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Observation {
    /// Every objective of the target (those not in the hypothesis are
    /// ignored).
    pub slos: Vec<SloSnapshot>,
    /// Every probe of the hypothesis.
    pub probes: Vec<ProbeResult>,
}

/// How an experiment ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The hypothesis held before, during and after the method.
    Held,
    /// The hypothesis broke after the method.
    Deviated,
    /// The hypothesis broke, or the chaos budget was spent, during the
    /// method; every fault was removed at once.
    Aborted,
    /// The experiment could not run: the target could not be reached or
    /// refused a fault, or the hypothesis did not hold before the method.
    FailedToRun,
    /// Stopped by the operator (Ctrl-C); faults removed, rollbacks run.
    Interrupted,
}

impl Outcome {
    /// The process exit code `levee chaos run` ends with.
    pub fn exit_code(self) -> u8 {
        match self {
            Outcome::Held => 0,
            Outcome::Deviated => 1,
            Outcome::Aborted => 3,
            Outcome::FailedToRun => 4,
            Outcome::Interrupted => 130,
        }
    }

    /// As written in the journal and the summary.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Held => "held",
            Outcome::Deviated => "deviated",
            Outcome::Aborted => "aborted",
            Outcome::FailedToRun => "failed_to_run",
            Outcome::Interrupted => "interrupted",
        }
    }
}

/// Where the experiment is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Checking the steady state before the method.
    Steady,
    /// Running the faults.
    Method,
    /// Checking the hypothesis after the method.
    After,
    /// Running the rollbacks.
    Rollbacks,
    /// Over.
    Done,
}

/// What the driver must do now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Set method step `step` (index into `Experiment::method`) for
    /// `expires_in`; report with [`Engine::fault_set`] or
    /// [`Engine::fault_refused`].
    SetFault {
        /// The step.
        step: usize,
        /// Its whole duration from now plus a margin, so a runner that dies
        /// never leaves a fault behind.
        expires_in: Duration,
    },
    /// Remove the fault the target named `id`; report with
    /// [`Engine::fault_removed`].
    RemoveFault {
        /// The step.
        step: usize,
        /// The target's id.
        id: u64,
    },
    /// Run every rollback; report each with [`Engine::rollback_done`], then
    /// call [`Engine::rollbacks_finished`].
    RunRollbacks,
}

/// How long a fault outlives its planned end on the target, in case the
/// runner dies before removing it.
pub const EXPIRY_MARGIN: Duration = Duration::from_secs(5);

/// One line of the journal.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Entry {
    /// Wall time (RFC 3339).
    pub at: String,
    /// Since the run began.
    pub offset_ms: u64,
    /// The phase it happened in.
    pub phase: Phase,
    /// What happened.
    #[serde(flatten)]
    pub event: Event,
}

/// What a journal line records.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    /// A phase began.
    Phase {
        /// Which (`phase` is the entry's own field).
        entered: Phase,
    },
    /// An observation and the verdict on it.
    Observation {
        /// The hypothesis SLOs as seen, with the budget spent.
        slos: Vec<SloCheck>,
        /// The probes' answers.
        probes: Vec<ProbeResult>,
        /// Whether the hypothesis held.
        holds: bool,
        /// Why not.
        #[serde(skip_serializing_if = "Vec::is_empty")]
        breaches: Vec<String>,
    },
    /// A fault was set on the target.
    FaultSet {
        /// The method step.
        step: usize,
        /// `route checkout` or `cluster payments`.
        target: String,
        /// The target's id for it.
        id: u64,
        /// When the target removes it by itself.
        expires_in_ms: u64,
    },
    /// The target refused a fault.
    FaultRefused {
        /// The method step.
        step: usize,
        /// `route checkout` or `cluster payments`.
        target: String,
        /// Why.
        message: String,
    },
    /// A fault was removed (or could not be).
    FaultRemoved {
        /// The method step.
        step: usize,
        /// `route checkout` or `cluster payments`.
        target: String,
        /// The target's id for it.
        id: u64,
        /// `ended`, `abort`, `stopped`.
        why: String,
        /// Why the removal failed, if it did (the fault then expires).
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// A rollback call and its answer.
    Rollback {
        /// Its index.
        index: usize,
        /// The URL called.
        url: String,
        /// The status, when it answered.
        status: Option<u16>,
        /// Why it failed.
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// The outcome was decided.
    Decision {
        /// Which.
        outcome: Outcome,
        /// Why, in a sentence.
        reason: String,
    },
}

/// One hypothesis SLO in an observation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SloCheck {
    /// The objective's id.
    pub id: String,
    /// Events and bad events now.
    pub events: u64,
    /// Bad events now.
    pub bad_events: u64,
    /// Whether its page alert fires.
    pub page_firing: bool,
    /// The share of the chaos allowance spent: `(bad − bad at the start)
    /// / remaining budget in bad events at the start`, once the method
    /// started.
    pub budget_spent: Option<f64>,
}

/// One SLO objective's budget, taken when the method starts.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BudgetBaseline {
    /// The objective's id.
    pub id: String,
    /// Bad events when the method started.
    pub bad_at_start: u64,
    /// `remaining_ratio × events × (1 − objective)` then.
    pub budget_events: f64,
    /// The largest share of it spent at any observation.
    pub max_spent: f64,
}

impl BudgetBaseline {
    /// The share spent with `bad_now` bad events.
    pub fn spent(&self, bad_now: u64) -> f64 {
        let new_bad = bad_now.saturating_sub(self.bad_at_start) as f64;
        if new_bad == 0.0 {
            0.0
        } else if self.budget_events <= 0.0 {
            f64::INFINITY
        } else {
            new_bad / self.budget_events
        }
    }
}

/// The remaining budget of `s`, in bad events.
pub fn budget_events(s: &SloSnapshot) -> f64 {
    let ratio = s.remaining_ratio.unwrap_or(1.0).max(0.0);
    ratio * s.events as f64 * (1.0 - s.objective)
}

/// A fault the engine has set, by step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StepState {
    Pending,
    /// Asked to set; not confirmed yet.
    Setting,
    Active(u64),
    Removing(u64),
    Done,
}

/// One experiment's decisions.
#[derive(Debug)]
pub struct Engine {
    experiment: Experiment,
    wall_start: Nanos,
    phase: Phase,
    steps: Vec<StepState>,
    /// When the method started (offset from the run's start).
    method_start: Option<Duration>,
    /// When the after-check started.
    after_start: Option<Duration>,
    /// When the steady state was first seen holding.
    steady_since: Option<Duration>,
    last_observation: Option<Duration>,
    baselines: Vec<BudgetBaseline>,
    outcome: Option<(Outcome, String)>,
    journal: Vec<Entry>,
}

impl Engine {
    /// An engine for `experiment`, the run having begun at `wall_start`
    /// (Unix nanoseconds).
    pub fn new(experiment: Experiment, wall_start: Nanos) -> Self {
        let steps = vec![StepState::Pending; experiment.method.len()];
        let mut engine = Self {
            experiment,
            wall_start,
            phase: Phase::Steady,
            steps,
            method_start: None,
            after_start: None,
            steady_since: None,
            last_observation: None,
            baselines: Vec::new(),
            outcome: None,
            journal: Vec::new(),
        };
        engine.log(
            Duration::ZERO,
            Event::Phase {
                entered: Phase::Steady,
            },
        );
        engine
    }

    /// The experiment.
    pub fn experiment(&self) -> &Experiment {
        &self.experiment
    }

    /// The phase now.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// The outcome, once decided, with its reason.
    pub fn outcome(&self) -> Option<(Outcome, &str)> {
        self.outcome.as_ref().map(|(o, r)| (*o, r.as_str()))
    }

    /// Everything that happened.
    pub fn journal(&self) -> &[Entry] {
        &self.journal
    }

    /// Each hypothesis SLO's budget baseline, once the method started.
    pub fn baselines(&self) -> &[BudgetBaseline] {
        &self.baselines
    }

    /// When the method started.
    pub fn method_start(&self) -> Option<Duration> {
        self.method_start
    }

    /// Whether an observation is due at `now`.
    pub fn wants_observation(&self, now: Duration) -> bool {
        matches!(self.phase, Phase::Steady | Phase::Method | Phase::After)
            && self
                .last_observation
                .is_none_or(|last| now >= last + OBSERVE_EVERY)
    }

    /// When to call [`Engine::advance`] next (offset from the run's
    /// start): the next observation or the next fault change.
    pub fn next_wake(&self) -> Option<Duration> {
        if !matches!(self.phase, Phase::Steady | Phase::Method | Phase::After) {
            return None;
        }
        let mut next = self
            .last_observation
            .map_or(Duration::ZERO, |l| l + OBSERVE_EVERY);
        if let Some(m0) = self.method_start.filter(|_| self.phase == Phase::Method) {
            for (step, state) in self.experiment.method.iter().zip(&self.steps) {
                let at = match state {
                    StepState::Pending => m0 + step.at,
                    StepState::Active(_) => m0 + step.at + step.duration,
                    _ => continue,
                };
                next = next.min(at);
            }
        }
        if let (Phase::After, Some(a0)) = (self.phase, self.after_start) {
            next = next.min(a0 + self.experiment.hypothesis.after);
        }
        Some(next)
    }

    /// Moves on to `now`, with the observation made now if one was due;
    /// the actions to carry out, in order.
    pub fn advance(&mut self, now: Duration, observation: Option<Observation>) -> Vec<Action> {
        let mut actions = Vec::new();
        if let Some(obs) = observation {
            self.last_observation = Some(now);
            self.observe(now, &obs, &mut actions);
        }
        if self.phase == Phase::Steady {
            let steady = self.experiment.hypothesis.steady_for;
            if self.steady_since.is_some_and(|s| now >= s + steady) {
                self.enter(now, Phase::Method);
                self.method_start = Some(now);
            }
        }
        if self.phase == Phase::Method {
            self.timeline(now, &mut actions);
        }
        if self.phase == Phase::After {
            let a0 = self.after_start.unwrap_or(now);
            if now >= a0 + self.experiment.hypothesis.after {
                self.decide(
                    now,
                    Outcome::Held,
                    "the hypothesis held before, during and after the method".into(),
                    &mut actions,
                );
            }
        }
        actions
    }

    /// The faults to set and remove on the timeline at `now`.
    fn timeline(&mut self, now: Duration, actions: &mut Vec<Action>) {
        let m0 = self.method_start.unwrap_or(now);
        for (i, step) in self.experiment.method.iter().enumerate() {
            let (start, end) = (m0 + step.at, m0 + step.at + step.duration);
            match self.steps[i] {
                StepState::Pending if now >= start && now < end => {
                    self.steps[i] = StepState::Setting;
                    actions.push(Action::SetFault {
                        step: i,
                        expires_in: end - now + EXPIRY_MARGIN,
                    });
                }
                // A step whose whole window passed unseen is skipped.
                StepState::Pending if now >= end => self.steps[i] = StepState::Done,
                StepState::Active(id) if now >= end => {
                    self.steps[i] = StepState::Removing(id);
                    actions.push(Action::RemoveFault { step: i, id });
                }
                _ => {}
            }
        }
        self.maybe_after(now);
    }

    /// The method is over once its time passed and every fault is gone.
    fn maybe_after(&mut self, now: Duration) {
        let Some(m0) = self.method_start.filter(|_| self.phase == Phase::Method) else {
            return;
        };
        let all_done = self.steps.iter().all(|s| *s == StepState::Done);
        if all_done && now >= m0 + self.experiment.method_length() {
            self.enter(now, Phase::After);
            self.after_start = Some(now);
        }
    }

    fn observe(&mut self, now: Duration, obs: &Observation, actions: &mut Vec<Action>) {
        let hypothesis = self.experiment.hypothesis.clone();
        let mut breaches = Vec::new();
        let mut budget_breach = None;
        let mut checks = Vec::new();
        for name in &hypothesis.slos {
            let objectives: Vec<&SloSnapshot> = obs
                .slos
                .iter()
                .filter(|s| s.slo == *name || s.id == *name)
                .collect();
            if objectives.is_empty() {
                let reason = format!("the target has no SLO named `{name}`");
                self.log(
                    now,
                    Event::Observation {
                        slos: checks,
                        probes: obs.probes.clone(),
                        holds: false,
                        breaches: vec![reason.clone()],
                    },
                );
                self.decide(now, Outcome::FailedToRun, reason, actions);
                return;
            }
            for s in objectives {
                if s.page_firing {
                    breaches.push(format!("SLO {}: its page alert fires", s.id));
                }
                let spent = if self.phase == Phase::Method || self.phase == Phase::After {
                    self.baselines.iter_mut().find(|b| b.id == s.id).map(|b| {
                        let spent = b.spent(s.bad_events);
                        b.max_spent = b.max_spent.max(spent);
                        spent
                    })
                } else {
                    None
                };
                if let Some(spent) = spent.filter(|x| *x > hypothesis.chaos_budget) {
                    budget_breach.get_or_insert(format!(
                        "SLO {}: chaos budget spent: {} of the remaining error budget, over the {} allowed",
                        s.id,
                        percent(spent),
                        percent(hypothesis.chaos_budget)
                    ));
                }
                checks.push(SloCheck {
                    id: s.id.clone(),
                    events: s.events,
                    bad_events: s.bad_events,
                    page_firing: s.page_firing,
                    budget_spent: spent,
                });
            }
        }
        for probe in &hypothesis.probes {
            match obs.probes.iter().find(|p| p.name == probe.name) {
                None => breaches.push(format!("probe {}: not run", probe.name)),
                Some(r) => {
                    if let Some(e) = &r.error {
                        breaches.push(format!("probe {}: {e}", probe.name));
                    } else if r.status != Some(probe.status) {
                        breaches.push(format!(
                            "probe {}: status {}, expected {}",
                            probe.name,
                            r.status.unwrap_or(0),
                            probe.status
                        ));
                    }
                    if let Some(max) = probe.max_latency {
                        if r.error.is_none() && Duration::from_millis(r.latency_ms) > max {
                            breaches.push(format!(
                                "probe {}: {}ms, over max_latency {}ms",
                                probe.name,
                                r.latency_ms,
                                max.as_millis()
                            ));
                        }
                    }
                }
            }
        }
        // The budget is named first: it is the experiment's own limit.
        let all: Vec<String> = budget_breach.iter().cloned().chain(breaches).collect();
        let holds = all.is_empty();
        self.log(
            now,
            Event::Observation {
                slos: checks,
                probes: obs.probes.clone(),
                holds,
                breaches: all.clone(),
            },
        );
        match self.phase {
            Phase::Steady if holds => {
                self.steady_since.get_or_insert(now);
                // The baseline is the last observation before the method.
                self.baselines = obs
                    .slos
                    .iter()
                    .filter(|s| hypothesis.slos.iter().any(|n| s.slo == *n || s.id == *n))
                    .map(|s| BudgetBaseline {
                        id: s.id.clone(),
                        bad_at_start: s.bad_events,
                        budget_events: budget_events(s),
                        max_spent: 0.0,
                    })
                    .collect();
            }
            Phase::Steady => {
                let reason = format!(
                    "the hypothesis did not hold before the method, so no fault was set: {}",
                    all.join("; ")
                );
                self.decide(now, Outcome::FailedToRun, reason, actions);
            }
            Phase::Method if !holds => {
                let reason = format!("aborted during the method: {}", all.join("; "));
                self.decide(now, Outcome::Aborted, reason, actions);
            }
            Phase::After if !holds => {
                let reason = format!("deviated after the method: {}", all.join("; "));
                self.decide(now, Outcome::Deviated, reason, actions);
            }
            _ => {}
        }
    }

    /// The target set step `step`'s fault as `id`.
    pub fn fault_set(&mut self, now: Duration, step: usize, id: u64, expires_in: Duration) {
        let target = self.experiment.method[step].target_text();
        self.log(
            now,
            Event::FaultSet {
                step,
                target,
                id,
                expires_in_ms: millis(expires_in),
            },
        );
        if self.steps[step] == StepState::Setting {
            self.steps[step] = StepState::Active(id);
        }
        if self.outcome.is_some() {
            // Decided while it was being set: it goes at once.
            self.steps[step] = StepState::Removing(id);
        }
    }

    /// Faults set while the outcome was being decided, to remove now.
    pub fn leftovers(&self) -> Vec<Action> {
        self.steps
            .iter()
            .enumerate()
            .filter_map(|(step, s)| match s {
                StepState::Removing(id) if self.outcome.is_some() => {
                    Some(Action::RemoveFault { step, id: *id })
                }
                _ => None,
            })
            .collect()
    }

    /// The target refused step `step`'s fault: the experiment cannot run
    /// as written.
    pub fn fault_refused(&mut self, now: Duration, step: usize, message: String) -> Vec<Action> {
        let target = self.experiment.method[step].target_text();
        self.steps[step] = StepState::Done;
        self.log(
            now,
            Event::FaultRefused {
                step,
                target: target.clone(),
                message: message.clone(),
            },
        );
        let mut actions = Vec::new();
        self.decide(
            now,
            Outcome::FailedToRun,
            format!("the target refused the fault on {target}: {message}"),
            &mut actions,
        );
        actions
    }

    /// Step `step`'s fault was removed (or the removal failed with `error`;
    /// it then expires by itself).
    pub fn fault_removed(
        &mut self,
        now: Duration,
        step: usize,
        id: u64,
        why: &str,
        error: Option<String>,
    ) {
        self.steps[step] = StepState::Done;
        let target = self.experiment.method[step].target_text();
        self.log(
            now,
            Event::FaultRemoved {
                step,
                target,
                id,
                why: why.to_string(),
                error,
            },
        );
        self.maybe_after(now);
    }

    /// The target could not be observed or reached.
    pub fn unreachable(&mut self, now: Duration, why: String) -> Vec<Action> {
        let mut actions = Vec::new();
        self.decide(
            now,
            Outcome::FailedToRun,
            format!("the target could not be reached: {why}"),
            &mut actions,
        );
        actions
    }

    /// The operator stopped the run.
    pub fn interrupted(&mut self, now: Duration) -> Vec<Action> {
        let mut actions = Vec::new();
        self.decide(
            now,
            Outcome::Interrupted,
            "stopped by the operator (SIGINT)".into(),
            &mut actions,
        );
        actions
    }

    /// Rollback `index` answered `status` (or failed with `error`).
    pub fn rollback_done(
        &mut self,
        now: Duration,
        index: usize,
        status: Option<u16>,
        error: Option<String>,
    ) {
        let url = self.experiment.rollbacks[index].url.clone();
        self.log(
            now,
            Event::Rollback {
                index,
                url,
                status,
                error,
            },
        );
    }

    /// Every rollback ran; the experiment is over.
    pub fn rollbacks_finished(&mut self, now: Duration) {
        self.enter(now, Phase::Done);
    }

    /// Decides the outcome once: removes every fault set, then rollbacks.
    fn decide(
        &mut self,
        now: Duration,
        outcome: Outcome,
        reason: String,
        actions: &mut Vec<Action>,
    ) {
        if self.outcome.is_some() {
            return;
        }
        self.log(
            now,
            Event::Decision {
                outcome,
                reason: reason.clone(),
            },
        );
        self.outcome = Some((outcome, reason));
        for (step, state) in self.steps.iter_mut().enumerate() {
            match *state {
                StepState::Active(id) => {
                    *state = StepState::Removing(id);
                    actions.push(Action::RemoveFault { step, id });
                }
                StepState::Pending => *state = StepState::Done,
                _ => {}
            }
        }
        self.enter(now, Phase::Rollbacks);
        actions.push(Action::RunRollbacks);
    }

    fn enter(&mut self, now: Duration, phase: Phase) {
        self.phase = phase;
        self.log(now, Event::Phase { entered: phase });
    }

    fn log(&mut self, now: Duration, event: Event) {
        let offset = millis(now);
        self.journal.push(Entry {
            at: levee_slo::calendar::rfc3339(self.wall_start + offset * 1_000_000),
            offset_ms: offset,
            phase: self.phase,
            event,
        });
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A share as a percent, to two decimals at most.
pub fn percent(share: f64) -> String {
    if share.is_infinite() {
        return "all".into();
    }
    let s = format!("{:.2}", share * 100.0);
    let s = s.trim_end_matches('0').trim_end_matches('.');
    format!("{s}%")
}

#[cfg(test)]
mod tests {
    use super::*;
    use levee_config::experiment::load_experiment_str;
    use levee_config::Format;

    const S: Duration = Duration::from_secs(1);

    fn experiment(extra_hypothesis: &str) -> Experiment {
        let src = format!(
            r#"title = "t"
[hypothesis]
slos = ["checkout"]
chaos_budget = "10%"
steady_for = "2s"
after = "3s"
{extra_hypothesis}
[[method]]
at = "0s"
duration = "4s"
route = "checkout"
fault = {{ delay = "100ms" }}
[[method]]
at = "1s"
duration = "1s"
cluster = "payments"
fault = {{ kind = "slow", delay = "300ms" }}
[[rollbacks]]
url = "http://127.0.0.1:9/restore"
"#
        );
        load_experiment_str(&src, Format::Toml, "t.toml").unwrap_or_else(|d| panic!("{d}"))
    }

    fn slo(events: u64, bad: u64) -> SloSnapshot {
        SloSnapshot {
            id: "checkout".into(),
            slo: "checkout".into(),
            events,
            bad_events: bad,
            objective: 0.99,
            remaining_ratio: Some(0.5),
            page_firing: false,
        }
    }

    fn obs(events: u64, bad: u64) -> Option<Observation> {
        Some(Observation {
            slos: vec![slo(events, bad)],
            probes: Vec::new(),
        })
    }

    /// Drives the engine second by second, confirming every fault at once
    /// with ids from 1; `observe(t)` gives the observation at second `t`.
    fn run(
        engine: &mut Engine,
        until: u64,
        mut observe: impl FnMut(u64) -> Option<Observation>,
    ) -> Vec<(u64, Action)> {
        let mut done = Vec::new();
        let mut next_id = 1;
        let mut now = Duration::ZERO;
        while now <= Duration::from_secs(until) && engine.phase() != Phase::Done {
            let o = if engine.wants_observation(now) {
                observe(now.as_secs())
            } else {
                None
            };
            let mut actions = engine.advance(now, o);
            let mut i = 0;
            while let Some(a) = actions.get(i).cloned() {
                i += 1;
                done.push((now.as_millis() as u64, a.clone()));
                match a {
                    Action::SetFault { step, expires_in } => {
                        engine.fault_set(now, step, next_id, expires_in);
                        next_id += 1;
                        actions.extend(engine.leftovers());
                    }
                    Action::RemoveFault { step, id } => {
                        engine.fault_removed(now, step, id, "ended", None)
                    }
                    Action::RunRollbacks => engine.rollbacks_finished(now),
                }
            }
            match engine.next_wake() {
                Some(next) => now = next.max(now + Duration::from_millis(1)),
                None => break,
            }
        }
        done
    }

    #[test]
    fn the_timeline_sets_and_removes_faults_in_order() {
        let mut e = Engine::new(experiment(""), 0);
        let actions = run(&mut e, 30, |_| obs(1000, 0));
        // Steady from 0 to 2 s; the method starts at 2 s.
        assert_eq!(e.method_start(), Some(2 * S));
        let sets: Vec<(u64, usize, Duration)> = actions
            .iter()
            .filter_map(|(t, a)| match a {
                Action::SetFault { step, expires_in } => Some((*t, *step, *expires_in)),
                _ => None,
            })
            .collect();
        assert_eq!(
            sets,
            vec![
                (2000, 0, 4 * S + EXPIRY_MARGIN),
                (3000, 1, S + EXPIRY_MARGIN)
            ]
        );
        let removes: Vec<(u64, usize)> = actions
            .iter()
            .filter_map(|(t, a)| match a {
                Action::RemoveFault { step, .. } => Some((*t, *step)),
                _ => None,
            })
            .collect();
        assert_eq!(removes, vec![(4000, 1), (6000, 0)]);
        // The after-check runs 3 s, then the rollbacks.
        assert_eq!(e.outcome().map(|o| o.0), Some(Outcome::Held));
        let decided = e
            .journal()
            .iter()
            .find(|x| matches!(x.event, Event::Decision { .. }))
            .expect("decided");
        assert_eq!(decided.offset_ms, 9000);
        assert_eq!(e.phase(), Phase::Done);
        assert_eq!(Outcome::Held.exit_code(), 0);
    }

    #[test]
    fn budget_arithmetic() {
        // 1000 events at 99% with half the budget left: 5 bad events.
        let s = slo(1000, 7);
        assert!((budget_events(&s) - 5.0).abs() < 1e-9);
        let b = BudgetBaseline {
            id: "x".into(),
            bad_at_start: 7,
            budget_events: 5.0,
            max_spent: 0.0,
        };
        assert_eq!(b.spent(7), 0.0);
        assert!((b.spent(8) - 0.2).abs() < 1e-9);
        let none = BudgetBaseline {
            budget_events: 0.0,
            ..b.clone()
        };
        assert_eq!(none.spent(7), 0.0);
        assert!(none.spent(8).is_infinite());
        assert_eq!(percent(0.2), "20%");
        assert_eq!(percent(0.125), "12.5%");
    }

    #[test]
    fn spending_the_chaos_budget_aborts_and_removes_every_fault_at_once() {
        let mut e = Engine::new(experiment(""), 0);
        // The budget at the start: 0.5 × 1000 × 1% = 5 bad events; 10% of
        // it is 0.5, so the first bad event during the method aborts.
        let actions = run(&mut e, 30, |t| obs(1000, if t >= 4 { 1 } else { 0 }));
        let (outcome, reason) = e.outcome().expect("decided");
        assert_eq!(outcome, Outcome::Aborted);
        assert!(reason.contains("chaos budget spent: 20%"), "{reason}");
        // Both faults were active at 4 s? Step 1 ended at 4 s; step 0 is
        // removed at the abort, in the same instant.
        let removes: Vec<u64> = actions
            .iter()
            .filter_map(|(t, a)| matches!(a, Action::RemoveFault { .. }).then_some(*t))
            .collect();
        assert!(removes.iter().all(|t| *t == 4000), "{removes:?}");
        assert!(actions.iter().any(|(_, a)| *a == Action::RunRollbacks));
        assert!((e.baselines()[0].max_spent - 0.2).abs() < 1e-9);
        assert_eq!(Outcome::Aborted.exit_code(), 3);
    }

    #[test]
    fn a_page_during_the_method_aborts() {
        let mut e = Engine::new(experiment(""), 0);
        run(&mut e, 30, |t| {
            let mut o = obs(1000, 0)?;
            o.slos[0].page_firing = t == 3;
            Some(o)
        });
        let (outcome, reason) = e.outcome().expect("decided");
        assert_eq!(outcome, Outcome::Aborted);
        assert!(reason.contains("page alert fires"), "{reason}");
    }

    #[test]
    fn a_probe_failing_after_the_method_is_a_deviation() {
        let probes =
            r#"probes = [{ name = "home", url = "http://127.0.0.1:1/", max_latency = "200ms" }]"#;
        let mut e = Engine::new(experiment(probes), 0);
        run(&mut e, 30, |t| {
            let mut o = obs(1000, 0)?;
            o.probes.push(ProbeResult {
                name: "home".into(),
                status: Some(200),
                latency_ms: if t == 7 { 900 } else { 10 },
                error: None,
            });
            Some(o)
        });
        let (outcome, reason) = e.outcome().expect("decided");
        assert_eq!(outcome, Outcome::Deviated, "{reason}");
        assert!(
            reason.contains("probe home: 900ms, over max_latency 200ms"),
            "{reason}"
        );
        assert_eq!(Outcome::Deviated.exit_code(), 1);
    }

    #[test]
    fn a_broken_steady_state_means_the_experiment_did_not_run() {
        let mut e = Engine::new(experiment(""), 0);
        let actions = run(&mut e, 30, |t| {
            let mut o = obs(1000, 0)?;
            o.slos[0].page_firing = t == 1;
            Some(o)
        });
        assert_eq!(e.outcome().map(|o| o.0), Some(Outcome::FailedToRun));
        assert!(!actions
            .iter()
            .any(|(_, a)| matches!(a, Action::SetFault { .. })));
        // Rollbacks still run.
        assert!(actions.iter().any(|(_, a)| *a == Action::RunRollbacks));
    }

    #[test]
    fn an_unknown_slo_a_refused_fault_or_an_unreachable_target_fail_the_run() {
        let mut e = Engine::new(experiment(""), 0);
        let mut other = obs(1000, 0).expect("obs");
        other.slos[0].slo = "other".into();
        other.slos[0].id = "other".into();
        e.advance(Duration::ZERO, Some(other));
        let (o, reason) = e.outcome().expect("decided");
        assert_eq!(o, Outcome::FailedToRun);
        assert!(reason.contains("no SLO named `checkout`"), "{reason}");

        let mut e = Engine::new(experiment(""), 0);
        e.advance(Duration::ZERO, obs(10, 0));
        let actions = e.advance(2 * S, obs(10, 0));
        assert!(matches!(actions[0], Action::SetFault { step: 0, .. }));
        let actions = e.fault_refused(2 * S, 0, "no route `checkout`".into());
        assert_eq!(actions, vec![Action::RunRollbacks]);
        assert_eq!(e.outcome().map(|o| o.0), Some(Outcome::FailedToRun));

        let mut e = Engine::new(experiment(""), 0);
        e.unreachable(Duration::ZERO, "connection refused".into());
        assert_eq!(e.outcome().map(|o| o.0), Some(Outcome::FailedToRun));
        assert_eq!(Outcome::FailedToRun.exit_code(), 4);
    }

    #[test]
    fn an_interruption_removes_active_faults() {
        let mut e = Engine::new(experiment(""), 0);
        e.advance(Duration::ZERO, obs(10, 0));
        let actions = e.advance(2 * S, obs(10, 0));
        assert!(matches!(actions[0], Action::SetFault { step: 0, .. }));
        e.fault_set(2 * S, 0, 7, 9 * S);
        let actions = e.interrupted(2 * S + Duration::from_millis(300));
        assert_eq!(
            actions,
            vec![Action::RemoveFault { step: 0, id: 7 }, Action::RunRollbacks]
        );
        let journal = serde_json::to_value(e.journal()).expect("json");
        let last = &journal[journal.as_array().map_or(0, Vec::len) - 1];
        assert_eq!(last["kind"], "phase");
        assert_eq!(last["offset_ms"], 2300);
        assert_eq!(last["at"], "1970-01-01T00:00:02.300Z");
    }
}
