//! Rollouts as the SLO report and the incident timeline show them: which
//! deploy touched an SLO's route, what its canary cost (bad requests, the
//! share of the starting budget), and which deploys happened around an
//! incident, so "what changed?" has an answer next to every page.

use super::RolloutState;
use crate::slo::{IncidentStatus, SloStatus};
use levee_slo::calendar::rfc3339;
use serde::Serialize;

/// How long before an incident's start a deploy still counts as around it.
const LOOKBACK_NS: u64 = 15 * 60 * 1_000_000_000;

/// One deploy (a rollout from one cluster to another) as an SLO or an
/// incident names it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DeployEvent {
    /// The route.
    pub route: String,
    /// The cluster serving before.
    pub from: String,
    /// The new version's cluster.
    pub to: String,
    /// Where the rollout is (`progressing`, `promoted`, `rolled_back`, ...).
    pub phase: &'static str,
    /// When the first step began.
    pub started: String,
    /// When it was promoted or rolled back.
    pub ended: Option<String>,
    /// Requests the new version answered.
    pub canary_requests: u64,
    /// Of those, bad by the SLO engine's availability rule.
    pub canary_bad_requests: u64,
    /// The share of the budget left at its start that the canary spent.
    pub budget_spent_ratio: f64,
    /// Its starts, steps, switches, promotions and rollbacks, in order.
    pub timeline: Vec<DeployStep>,
}

/// One step of a deploy's timeline.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DeployStep {
    /// When.
    pub at: String,
    /// `start`, `advance`, `switch`, `promote`, `rollback`, `pause`, ...
    pub outcome: String,
    /// Why.
    pub reason: String,
}

/// The deploy `state` describes, when it ever started, with the span it
/// covers in nanoseconds.
fn deploy(state: &RolloutState) -> Option<(DeployEvent, u64, Option<u64>)> {
    let to = state.canary.clone()?;
    if state.started_ns == 0 {
        return None;
    }
    let ended_ns = state
        .decisions
        .iter()
        .rev()
        .find(|d| d.outcome == "promote" || d.outcome == "rollback")
        .map(|d| d.at_ns);
    // After a promotion, `stable` is the new version: the old one is the
    // previous stable.
    let from = if state.stable == to {
        state.previous_stable.clone().unwrap_or_default()
    } else {
        state.stable.clone()
    };
    let event = DeployEvent {
        route: state.route.clone(),
        from,
        to,
        phase: state.phase.name(),
        started: rfc3339(state.started_ns),
        ended: ended_ns.map(rfc3339),
        canary_requests: state.canary_requests,
        canary_bad_requests: state.canary_bad,
        budget_spent_ratio: state.budget_spent,
        timeline: state
            .decisions
            .iter()
            .filter(|d| d.outcome != "hold")
            .map(|d| DeployStep {
                at: rfc3339(d.at_ns),
                outcome: d.outcome.clone(),
                reason: d.reason.clone(),
            })
            .collect(),
    };
    Some((event, state.started_ns, ended_ns))
}

fn covers(slo: &SloStatus, route: &str) -> bool {
    slo.scope.route.as_deref().is_none_or(|r| r == route)
}

/// The deploys on routes `slo` covers, newest first.
pub fn deploys_for(slo: &SloStatus, rollouts: &[RolloutState]) -> Vec<DeployEvent> {
    let mut out: Vec<(u64, DeployEvent)> = rollouts
        .iter()
        .filter(|r| covers(slo, &r.route))
        .filter_map(|r| deploy(r).map(|(e, start, _)| (start, e)))
        .collect();
    out.sort_by_key(|e| std::cmp::Reverse(e.0));
    out.into_iter().map(|(_, e)| e).collect()
}

/// The deploys on routes the incident's SLO covers that were under way
/// during the incident or ended at most 15 minutes before it began.
pub fn deploys_around(
    incident: &IncidentStatus,
    slos: &[SloStatus],
    rollouts: &[RolloutState],
) -> Vec<DeployEvent> {
    let Some(slo) = slos.iter().find(|s| s.id == incident.slo) else {
        return Vec::new();
    };
    rollouts
        .iter()
        .filter(|r| covers(slo, &r.route))
        .filter_map(deploy)
        .filter(|(_, start, end)| {
            // RFC 3339 with a fixed width compares as text.
            let began_before_end = incident
                .resolve
                .as_deref()
                .is_none_or(|resolved| rfc3339(*start).as_str() <= resolved);
            let ended_after_lookback = end.is_none_or(|e| {
                rfc3339(e.saturating_add(LOOKBACK_NS)).as_str() >= incident.start.as_str()
            });
            began_before_end && ended_after_lookback
        })
        .map(|(e, _, _)| e)
        .collect()
}
