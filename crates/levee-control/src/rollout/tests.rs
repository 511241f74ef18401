//! The rollout state machine on virtual time: steps, holds, failures,
//! gates, hooks and commands, with the inputs written by hand.

use super::machine::{Effect, HookAnswer, Inputs, Judgement};
use super::{Phase, RolloutState};
use levee_config::{
    Analysis, CanaryStep, Gates, OnFailure, Rollout, SplitPolicy, Strategy, WEIGHT_SCALE,
};
use levee_proxy::release::Weights;
use std::time::Duration;

const SEC: u64 = 1_000_000_000;

fn canary(steps: &[(u32, u64, bool)]) -> Rollout {
    Rollout {
        strategy: Strategy::Canary {
            steps: steps
                .iter()
                .map(|&(weight, pause, manual)| CanaryStep {
                    weight,
                    pause: Duration::from_secs(pause),
                    manual,
                })
                .collect(),
        },
        policy: SplitPolicy::default(),
        analysis: Analysis::default(),
        gates: Gates::default(),
        webhooks: Vec::new(),
    }
}

fn begun(policy: &Rollout) -> RolloutState {
    let mut s = RolloutState::idle("api", "v1", &policy.strategy, 0);
    s.begin("v2", &policy.strategy, 0);
    s
}

/// Virtual time starts well after the epoch, as UNIX time does.
const T0: u64 = 1_000 * SEC;

fn at(now_secs: u64, judgement: Judgement) -> Inputs {
    Inputs {
        judgement,
        ..Inputs::idle(T0 + now_secs * SEC)
    }
}

fn weights_of(effects: &[Effect]) -> Option<Weights> {
    effects.iter().rev().find_map(|e| match e {
        Effect::Weights(w) => Some(*w),
        _ => None,
    })
}

#[test]
fn a_canary_walks_its_steps_and_is_promoted() {
    let policy = canary(&[(500, 10, false), (2_500, 10, false)]);
    let mut s = begun(&policy);
    assert_eq!(s.phase, Phase::Waiting);
    let e = s.advance(&policy, &at(0, Judgement::Pending("none".into())));
    assert_eq!(s.phase, Phase::Progressing);
    assert_eq!(
        weights_of(&e).map(|w| (w.canary, w.baseline)),
        Some((500, 500))
    );
    // Passing early does not cut the pause short.
    assert!(s.advance(&policy, &at(5, Judgement::Pass)).is_empty());
    assert_eq!(s.step, 0);
    let e = s.advance(&policy, &at(10, Judgement::Pass));
    assert_eq!((s.step, s.weight), (1, 2_500));
    assert_eq!(weights_of(&e).map(|w| w.canary), Some(2_500));
    let e = s.advance(&policy, &at(20, Judgement::Pass));
    assert_eq!(s.phase, Phase::Promoted);
    assert!(e.contains(&Effect::Promoted));
    assert_eq!(weights_of(&e).map(|w| w.canary), Some(WEIGHT_SCALE));
    let outcomes: Vec<&str> = s.decisions.iter().map(|d| d.outcome.as_str()).collect();
    assert_eq!(outcomes, ["begin", "start", "advance", "promote"]);
}

#[test]
fn no_traffic_is_no_decision_and_never_a_pass() {
    let policy = canary(&[(500, 1, false)]);
    let mut s = begun(&policy);
    s.advance(&policy, &at(0, Judgement::Pass));
    for t in 1..100 {
        s.advance(
            &policy,
            &at(t, Judgement::Pending("canary has 0 of 50 samples".into())),
        );
    }
    assert_eq!(s.phase, Phase::Progressing);
    assert!(
        s.reason.as_deref().unwrap().contains("no decision yet"),
        "{:?}",
        s.reason
    );
    // A long hold is one record, not one per look.
    assert_eq!(
        s.decisions.iter().filter(|d| d.outcome == "hold").count(),
        1
    );
}

#[test]
fn a_failed_analysis_rolls_back_at_once_or_pauses_for_a_person() {
    let policy = canary(&[(500, 60, false), (5_000, 60, false)]);
    let mut s = begun(&policy);
    s.advance(&policy, &at(0, Judgement::Pass));
    let e = s.advance(&policy, &at(3, Judgement::Fail("latency_rank".into())));
    assert_eq!(s.phase, Phase::RolledBack);
    assert_eq!(weights_of(&e), Some(Weights::default()));
    assert!(e.contains(&Effect::Notify(levee_config::HookPhase::Rollback)));
    assert!(s.reason.as_deref().unwrap().contains("latency_rank"));
    // Nothing moves it afterwards but the config or a person.
    assert!(s.advance(&policy, &at(100, Judgement::Pass)).is_empty());

    let mut pausing = canary(&[(500, 60, false)]);
    pausing.analysis.on_failure = OnFailure::Pause;
    let mut s = begun(&pausing);
    s.advance(&pausing, &at(0, Judgement::Pass));
    let e = s.advance(&pausing, &at(3, Judgement::Fail("error_rate".into())));
    assert_eq!(s.phase, Phase::Paused);
    assert!(e.is_empty(), "the weights are held");
    assert_eq!(s.weight, 500);
}

#[test]
fn gates_hold_the_start_and_each_step_but_never_a_rollback() {
    let policy = canary(&[(500, 1, false), (5_000, 1, false)]);
    let mut s = begun(&policy);
    let held = Inputs {
        gate_hold: Some("a page alert of SLO `api` is firing".into()),
        ..at(0, Judgement::Pass)
    };
    assert!(s.advance(&policy, &held).is_empty());
    assert_eq!(s.phase, Phase::Waiting);
    s.advance(&policy, &at(1, Judgement::Pass));
    assert_eq!(s.phase, Phase::Progressing);
    let held = Inputs {
        gate_hold: Some("budget low".into()),
        ..at(5, Judgement::Pass)
    };
    s.advance(&policy, &held);
    assert_eq!(s.step, 0, "a gate holds the step");
    let failing = Inputs {
        gate_hold: Some("budget low".into()),
        ..at(6, Judgement::Fail("error_rate".into()))
    };
    s.advance(&policy, &failing);
    assert_eq!(s.phase, Phase::RolledBack, "a failing canary is never held");
}

#[test]
fn spending_too_much_budget_rolls_back() {
    let policy = canary(&[(500, 60, false)]);
    let mut s = begun(&policy);
    s.advance(&policy, &at(0, Judgement::Pass));
    let over = Inputs {
        budget_exceeded: Some("the canary spent 12% of the remaining budget".into()),
        ..at(2, Judgement::Pending("few samples".into()))
    };
    s.advance(&policy, &over);
    assert_eq!(s.phase, Phase::RolledBack);
}

#[test]
fn webhooks_hold_or_fail_the_start_and_the_promotion() {
    let policy = canary(&[(500, 1, false)]);
    let mut s = begun(&policy);
    assert_eq!(
        s.pending_gate(&policy),
        Some(levee_config::HookPhase::ConfirmRollout)
    );
    let hold = Inputs {
        gate_hooks: HookAnswer::Hold("confirm-rollout answered 403".into()),
        ..at(0, Judgement::Pass)
    };
    s.advance(&policy, &hold);
    assert_eq!(s.phase, Phase::Waiting);
    s.advance(&policy, &at(1, Judgement::Pass));
    assert_eq!(
        s.pending_gate(&policy),
        Some(levee_config::HookPhase::ConfirmPromotion)
    );
    let hold = Inputs {
        gate_hooks: HookAnswer::Hold("not yet".into()),
        ..at(5, Judgement::Pass)
    };
    s.advance(&policy, &hold);
    assert_eq!(s.phase, Phase::Progressing, "promotion waits for the hook");
    let fail = Inputs {
        gate_hooks: HookAnswer::Fail("no".into()),
        ..at(6, Judgement::Pass)
    };
    s.advance(&policy, &fail);
    assert_eq!(s.phase, Phase::RolledBack);
}

#[test]
fn a_manual_step_waits_for_resume() {
    let policy = canary(&[(500, 1, true), (5_000, 1, false)]);
    let mut s = begun(&policy);
    s.advance(&policy, &at(0, Judgement::Pass));
    s.advance(&policy, &at(2, Judgement::Pass));
    assert_eq!(
        (s.phase, s.paused_by.as_deref()),
        (Phase::Paused, Some("step"))
    );
    let e = s.resume(&policy, T0 + 30 * SEC).unwrap();
    assert_eq!(weights_of(&e).map(|w| w.canary), Some(500));
    s.advance(&policy, &at(31, Judgement::Pass));
    assert_eq!(s.step, 1, "resumed past the manual step");
}

#[test]
fn commands_skip_steps_and_refuse_what_does_not_apply() {
    let policy = canary(&[(500, 60, false), (5_000, 60, false)]);
    let mut s = begun(&policy);
    s.advance(&policy, &at(0, Judgement::Pass));
    s.pause(T0 + SEC).unwrap();
    assert!(s.pause(T0 + 2 * SEC).is_err());
    assert!(
        s.advance(&policy, &at(100, Judgement::Pass)).is_empty(),
        "paused"
    );
    let e = s.promote(&policy, T0 + 3 * SEC).unwrap();
    assert_eq!(s.phase, Phase::Promoted);
    assert!(e.contains(&Effect::Promoted));
    assert!(s.promote(&policy, T0 + 4 * SEC).is_err());
    assert!(s.abort(&policy, T0 + 4 * SEC).unwrap_err().contains("undo"));

    let mut s = begun(&policy);
    s.advance(&policy, &at(0, Judgement::Pass));
    let e = s.abort(&policy, T0 + SEC).unwrap();
    assert_eq!(s.phase, Phase::RolledBack);
    assert_eq!(weights_of(&e), Some(Weights::default()));
    assert!(s.resume(&policy, T0 + 2 * SEC).is_err());
}

#[test]
fn blue_green_judges_the_preview_then_switches_and_keeps_the_old_version_warm() {
    let policy = Rollout {
        strategy: Strategy::BlueGreen {
            preview: Duration::from_secs(30),
            keep_old: Duration::from_secs(60),
        },
        ..canary(&[])
    };
    let mut s = begun(&policy);
    let e = s.advance(&policy, &at(0, Judgement::Pending("none".into())));
    let w = weights_of(&e).unwrap();
    assert_eq!((w.canary, w.forcing), (0, true), "preview traffic only");
    assert!(w.baseline > 0, "a baseline slice to compare with");
    s.advance(&policy, &at(30, Judgement::Pass));
    assert_eq!(s.phase, Phase::Switched);
    assert_eq!(s.weight, WEIGHT_SCALE);
    s.advance(&policy, &at(60, Judgement::Pass));
    assert_eq!(s.phase, Phase::Switched, "the old version is still warm");
    let e = s.abort(&policy, T0 + 61 * SEC).unwrap();
    assert_eq!(
        weights_of(&e),
        Some(Weights::default()),
        "instant switch back"
    );

    let mut s = begun(&policy);
    s.advance(&policy, &at(0, Judgement::Pass));
    s.advance(&policy, &at(30, Judgement::Pass));
    let e = s.advance(&policy, &at(90, Judgement::Pass));
    assert_eq!(s.phase, Phase::Promoted);
    assert!(e.contains(&Effect::Promoted));
}

#[test]
fn an_ab_test_ends_on_its_request_count_and_is_judged() {
    let policy = Rollout {
        strategy: Strategy::Ab {
            duration: None,
            requests: Some(1_000),
        },
        ..canary(&[])
    };
    let mut s = begun(&policy);
    s.advance(&policy, &at(0, Judgement::Pass));
    let not_yet = Inputs {
        canary_requests: 999,
        ..at(50, Judgement::Pass)
    };
    s.advance(&policy, &not_yet);
    assert_eq!(s.phase, Phase::Progressing);
    let done = Inputs {
        canary_requests: 1_000,
        ..at(51, Judgement::Pass)
    };
    s.advance(&policy, &done);
    assert_eq!(s.phase, Phase::Promoted);
}

#[test]
fn the_decision_log_is_bounded() {
    let policy = canary(&[(500, 1, false)]);
    let mut s = begun(&policy);
    s.advance(&policy, &at(0, Judgement::Pass));
    for t in 1..1_000 {
        // Alternating reasons: each change is a record.
        let why = if t % 2 == 0 {
            "canary slow"
        } else {
            "budget low"
        };
        s.advance(
            &policy,
            &Inputs {
                gate_hold: Some(why.into()),
                ..at(t, Judgement::Pass)
            },
        );
    }
    assert_eq!(s.decisions.len(), super::MAX_DECISIONS);
}

#[test]
fn commands_on_a_route_without_a_rollout_under_way_are_refused() {
    let policy = canary(&[(500, 60, false)]);
    let mut s = RolloutState::idle("api", "v1", &policy.strategy, T0);
    assert!(s.promote(&policy, T0).unwrap_err().contains("no rollout"));
    assert!(s.abort(&policy, T0).unwrap_err().contains("no rollout"));
    assert!(s.pause(T0).is_err());
    assert!(s.resume(&policy, T0).is_err());
    assert_eq!(s.phase, Phase::Idle);
}

#[test]
fn after_a_blue_green_switch_a_budget_overspend_switches_back() {
    let policy = Rollout {
        strategy: Strategy::BlueGreen {
            preview: Duration::from_secs(1),
            keep_old: Duration::from_secs(600),
        },
        ..canary(&[])
    };
    let mut s = begun(&policy);
    s.advance(&policy, &at(0, Judgement::Pass));
    s.advance(&policy, &at(1, Judgement::Pass));
    assert_eq!(s.phase, Phase::Switched);
    let over = Inputs {
        budget_exceeded: Some("the new version spent the budget".into()),
        ..at(5, Judgement::Pending("no baseline".into()))
    };
    let e = s.advance(&policy, &over);
    assert_eq!(s.phase, Phase::RolledBack);
    assert_eq!(weights_of(&e), Some(Weights::default()));
}
