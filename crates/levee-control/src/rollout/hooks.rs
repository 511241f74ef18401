//! Rollout webhooks, in the spirit of Flagger's: a JSON POST per hook of a
//! phase, 2xx passes. Gating phases (`confirm-rollout`, `pre-rollout`,
//! `rollout`, `confirm-promotion`) are awaited, each within its timeout;
//! a refusal holds or fails as the hook says. Notifying phases
//! (`post-rollout`, `rollback`, `event`) are sent in the background and
//! never hold anything.

use super::machine::HookAnswer;
use super::RolloutState;
use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use levee_config::{HookFailure, HookPhase, Rollout, RolloutHook};
use std::sync::OnceLock;

fn client() -> &'static Client<HttpConnector, Full<Bytes>> {
    static CLIENT: OnceLock<Client<HttpConnector, Full<Bytes>>> = OnceLock::new();
    CLIENT.get_or_init(|| Client::builder(TokioExecutor::new()).build_http())
}

/// The body every hook receives: what Flagger sends (name, phase,
/// metadata) plus Levee's own figures.
fn payload(phase: HookPhase, state: &RolloutState) -> Bytes {
    let last = state.decisions.last();
    let body = serde_json::json!({
        "name": state.route,
        "phase": phase.name(),
        // Flagger's hooks read string metadata.
        "metadata": {
            "route": state.route,
            "stable": state.stable,
            "canary": state.canary.clone().unwrap_or_default(),
            "decision": last.map(|d| d.outcome.clone()).unwrap_or_default(),
            "reason": last.map(|d| d.reason.clone()).unwrap_or_default(),
        },
        "stable": state.stable,
        "canary": state.canary,
        "strategy": state.strategy,
        "rollout_phase": state.phase.name(),
        "step": state.step,
        "weight_percent": f64::from(state.weight) / 100.0,
        "reason": state.reason,
        "checks": state.last_checks,
    });
    Bytes::from(body.to_string())
}

/// Sends one hook; `Ok` on 2xx, else what went wrong, in words safe to
/// log (no addresses beyond the hook's own URL, which the operator wrote).
async fn call(hook: &RolloutHook, body: Bytes) -> Result<(), String> {
    let req = http::Request::post(&hook.url)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(body))
        .map_err(|_| "the hook URL is not usable".to_string())?;
    match tokio::time::timeout(hook.timeout, client().request(req)).await {
        Ok(Ok(resp)) if resp.status().is_success() => Ok(()),
        Ok(Ok(resp)) => Err(format!("{} answered {}", hook.url, resp.status().as_u16())),
        Ok(Err(_)) => Err(format!("{} could not be reached", hook.url)),
        Err(_) => Err(format!(
            "{} did not answer within {:?}",
            hook.url, hook.timeout
        )),
    }
}

/// Calls every hook of the gating `phases`, in order; the first refusal
/// decides.
pub(crate) async fn gate(
    policy: &Rollout,
    phases: &[HookPhase],
    state: &RolloutState,
) -> HookAnswer {
    for phase in phases {
        for hook in policy.webhooks.iter().filter(|h| h.phase == *phase) {
            if let Err(why) = call(hook, payload(*phase, state)).await {
                let why = format!("{} hook: {why}", phase.name());
                return match hook.on_failure {
                    HookFailure::Hold => HookAnswer::Hold(why),
                    HookFailure::Fail => HookAnswer::Fail(why),
                };
            }
        }
    }
    HookAnswer::Pass
}

/// Sends the hooks of a notifying `phase` in the background (`event`
/// hooks hear every decision: the loop sends them with `HookPhase::Event`).
pub(crate) fn notify(policy: &Rollout, phase: HookPhase, state: &RolloutState) {
    let hooks: Vec<RolloutHook> = policy
        .webhooks
        .iter()
        .filter(|h| h.phase == phase)
        .cloned()
        .collect();
    if hooks.is_empty() {
        return;
    }
    let body = payload(phase, state);
    tokio::spawn(async move {
        for hook in hooks {
            if let Err(why) = call(&hook, body.clone()).await {
                tracing::warn!(phase = phase.name(), error = %why, "rollout notification failed");
            }
        }
    });
}
