//! What a rollout decision reads: the judge's verdict on the canary's and
//! the baseline's counts (`levee_policy::judge`), mirror mismatches, the
//! error-budget gates from the SLO report, and the canary's own spend of
//! the budget that was left when it started.

use super::machine::Judgement;
use super::{CheckValue, RolloutState};
use crate::slo::SloReport;
use levee_config::{Analysis, Config, Gates, Sli};
use levee_policy::judge;
use levee_proxy::release::VersionSnapshot;

/// The judge's view of a release now.
pub(crate) struct Analysed {
    pub(crate) judgement: Judgement,
    pub(crate) checks: Vec<CheckValue>,
    pub(crate) canary: VersionSnapshot,
}

fn judge_config(a: &Analysis) -> judge::AnalysisConfig {
    judge::AnalysisConfig {
        confidence: a.confidence,
        min_samples: a.min_samples,
        max_error_rate: a.max_error_rate,
        max_error_increase: a.max_error_increase,
        latency_tolerance: a.latency_tolerance,
        latency_limits: a
            .latency
            .iter()
            .map(|l| judge::LatencyLimit {
                quantile: l.quantile,
                max: l.max,
                max_ratio: l.max_ratio,
            })
            .collect(),
    }
}

/// Judges the canary against the baseline on everything counted so far.
pub(crate) fn analyse(
    analysis: &Analysis,
    canary: VersionSnapshot,
    baseline: VersionSnapshot,
    mirror_mismatch: Option<(u64, f64)>,
) -> Analysed {
    let verdict = judge::judge(
        &judge_config(analysis),
        &judge::VersionSample {
            total: canary.total,
            bad: canary.bad,
            latency: &canary.latency,
        },
        &judge::VersionSample {
            total: baseline.total,
            bad: baseline.bad,
            latency: &baseline.latency,
        },
    );
    let mut checks: Vec<CheckValue> = verdict
        .checks
        .iter()
        .map(|c| CheckValue {
            name: c.name.to_string(),
            value: finite(c.value),
            threshold: finite(c.threshold),
            statistic: c.statistic.map(finite),
            outcome: match c.outcome {
                judge::CheckOutcome::Passed => "passed",
                judge::CheckOutcome::Failed => "failed",
                judge::CheckOutcome::NotEnoughData => "not_enough_data",
            }
            .to_string(),
        })
        .collect();
    let mut judgement = match verdict.decision {
        judge::Decision::Pass => Judgement::Pass,
        judge::Decision::Fail => Judgement::Fail(verdict.reason.clone()),
        judge::Decision::Inconclusive => Judgement::Pending(verdict.reason.clone()),
    };
    if let Some(limit) = analysis.max_mirror_mismatch {
        let (compared, rate) = mirror_mismatch.unwrap_or((0, 0.0));
        let enough = compared >= analysis.min_samples;
        let failed = enough && rate > limit;
        checks.push(CheckValue {
            name: "mirror_mismatch".into(),
            value: rate,
            threshold: limit,
            statistic: None,
            outcome: if !enough {
                "not_enough_data"
            } else if failed {
                "failed"
            } else {
                "passed"
            }
            .into(),
        });
        if failed {
            judgement = Judgement::Fail(format!("mirror_mismatch {rate:.4} beyond {limit:.4}"));
        } else if !enough && judgement == Judgement::Pass {
            judgement = Judgement::Pending(format!(
                "{compared} mirrored answers compared, {} needed",
                analysis.min_samples
            ));
        }
    }
    Analysed {
        judgement,
        checks,
        canary,
    }
}

fn finite(v: f64) -> f64 {
    if v.is_finite() {
        v
    } else {
        f64::MAX
    }
}

/// The objectives a rollout's gates read: the named SLOs, or every SLO
/// whose scope names the route.
fn gated<'r>(
    gates: &'r Gates,
    route: &'r str,
    report: &'r SloReport,
) -> impl Iterator<Item = &'r crate::slo::SloStatus> + 'r {
    report.slos.iter().filter(move |s| {
        if gates.slos.is_empty() {
            s.scope.route.as_deref() == Some(route)
        } else {
            gates.slos.contains(&s.slo)
        }
    })
}

/// Why the gates hold the rollout now, if they do: too little budget
/// left, or a page alert firing.
pub(crate) fn gate_hold(gates: &Gates, route: &str, report: &SloReport) -> Option<String> {
    for slo in gated(gates, route, report) {
        if gates.block_on_page
            && slo
                .alerts
                .iter()
                .any(|a| a.severity == "page" && a.state == "firing")
        {
            return Some(format!("a page alert of SLO `{}` is firing", slo.slo));
        }
        if let Some(left) = slo.budget.remaining_ratio {
            if left < gates.min_budget_left {
                return Some(format!(
                    "SLO `{}` has {:.1}% of its error budget left, under the {:.1}% the gate asks",
                    slo.slo,
                    left.max(0.0) * 100.0,
                    gates.min_budget_left * 100.0
                ));
            }
        }
    }
    None
}

/// The budget left of each gated objective, in bad events, as the
/// rollout starts: remaining share × events × (1 − objective).
pub(crate) fn budget_at_start(
    gates: &Gates,
    route: &str,
    report: &SloReport,
) -> Vec<(String, f64)> {
    gated(gates, route, report)
        .filter_map(|s| {
            let left = s.budget.remaining_ratio?.max(0.0);
            let allowed = s.events as f64 * (1.0 - s.objective);
            Some((s.id.clone(), left * allowed))
        })
        .collect()
}

/// The canary's bad events by an objective's rules: availability failures,
/// or for a latency objective the answers outside its threshold.
fn canary_bad(config: &Config, objective_id: &str, canary: &VersionSnapshot) -> Option<u64> {
    let (slo, objective) = config.slos.iter().find_map(|s| {
        s.objectives
            .iter()
            .find(|o| o.id == objective_id)
            .map(|o| (s, o))
    })?;
    match (slo.sli, objective.threshold) {
        (Sli::Availability { .. }, _) => Some(canary.bad),
        (Sli::Latency, Some(t)) => {
            let within = canary.within.iter().find(|(d, _)| *d == t)?.1;
            Some(canary.total.saturating_sub(within))
        }
        (Sli::Latency, None) | (Sli::JobCompletion, _) => None,
    }
}

/// The largest share of a starting budget the canary has spent, and the
/// reason to roll back when it is over the gate's limit.
pub(crate) fn budget_spent(
    config: &Config,
    gates: &Gates,
    state: &RolloutState,
    canary: &VersionSnapshot,
) -> (f64, Option<String>) {
    let mut worst = 0.0f64;
    let mut over = None;
    for (id, budget) in &state.budget_at_start {
        let Some(bad) = canary_bad(config, id, canary) else {
            continue;
        };
        if bad == 0 {
            continue;
        }
        // No budget left at the start: any bad event spends it all.
        let share = if *budget > 0.0 {
            bad as f64 / budget
        } else {
            f64::INFINITY
        };
        worst = worst.max(share);
        if share > gates.max_budget_spend && over.is_none() {
            over = Some(format!(
                "the canary spent {} of SLO `{id}`'s remaining budget ({bad} bad events), over the {:.1}% allowed",
                if share.is_finite() {
                    format!("{:.1}%", share * 100.0)
                } else {
                    "all".to_string()
                },
                gates.max_budget_spend * 100.0
            ));
        }
    }
    (if worst.is_finite() { worst } else { 1.0 }, over)
}
