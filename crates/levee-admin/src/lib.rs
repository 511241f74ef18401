//! Levee's admin API: Prometheus metrics, liveness and readiness, the
//! effective config (secrets redacted), cluster and listener state, reload,
//! SLOs, incidents and operators' actions on them (`incidents`), capacity,
//! the status page and the operator dashboard (`/ui`, module `ui`). It
//! reads the data plane only through [`levee_proxy::Gateway`]'s published
//! state and the control plane only through [`levee_control::Control`]'s.
//!
//! Security: loopback by default; when a token is configured every endpoint
//! but `/healthz`, `/readyz` (probes) and the status page (`/status`,
//! `/api/v1/status`, `/status/feed.atom`, `/api/v2/summary.json`, made to
//! be shown to customers: operators' posts, components, tier uptime and
//! incident times, no labels, runbooks or internals) needs
//! `Authorization: Bearer TOKEN`, or the cookie of a dashboard session
//! (opened by posting the token to `/ui/login`; for anything but reads,
//! only from the dashboard's own origin). The dashboard's login form and
//! static assets are open. The config layer refuses a non-loopback
//! address without a token.

mod history;
mod incidents;
mod jobs;
pub mod keda;
mod status;
mod status_feed;
mod status_posts;
mod ui;

use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use levee_config::Secret;
use levee_control::Control;
use levee_proxy::{ApplyError, Gateway};
use serde_json::json;
use std::net::SocketAddr;
use std::sync::Arc;

#[derive(Clone)]
pub(crate) struct AdminState {
    gateway: Gateway,
    control: Control,
    token: Option<Arc<Secret>>,
    /// Dashboard sessions, which the token check also accepts.
    sessions: Arc<ui::Sessions>,
}

impl AdminState {
    /// The state the KEDA scaler reads (no token: it serves numbers only).
    pub(crate) fn for_scaler(gateway: Gateway, control: Control) -> Self {
        Self {
            gateway,
            control,
            token: None,
            sessions: Arc::default(),
        }
    }
}

/// The admin router for `gateway` and its `control` plane, requiring
/// `token` when given.
pub fn router(gateway: Gateway, control: Control, token: Option<Secret>) -> Router {
    let state = AdminState {
        gateway,
        control,
        token: token.map(Arc::new),
        sessions: Arc::default(),
    };
    let protected = Router::new()
        .route("/metrics", get(metrics))
        .route("/api/v1/config", get(config))
        .route("/api/v1/clusters", get(clusters))
        .route("/api/v1/listeners", get(listeners))
        .route("/api/v1/reload", post(reload).get(reload_status))
        .route("/api/v1/slos", get(slos))
        .route("/api/v1/slos/evaluate", post(evaluate_slos))
        .route("/api/v1/capacity", get(capacity))
        .route("/api/v1/faults", get(faults).post(add_fault))
        .route("/api/v1/faults/{id}", axum::routing::delete(remove_fault))
        .route("/api/v1/rollouts", get(rollouts))
        .route("/api/v1/rollouts/{route}", get(rollout))
        .route("/api/v1/rollouts/{route}/{action}", post(rollout_command))
        .merge(status_posts::routes())
        .merge(incidents::routes())
        .merge(history::routes())
        .merge(jobs::routes())
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/api/v1/status", get(status_json))
        .route("/status", get(status_html))
        .route("/status/feed.atom", get(status_atom))
        .route("/api/v2/summary.json", get(status_summary))
        .merge(ui::routes())
        .merge(protected)
        .fallback(|| async {
            (
                StatusCode::NOT_FOUND,
                Json(json!({"error": "not_found", "message": "no such admin endpoint"})),
            )
        })
        .with_state(state)
}

/// Binds `addr` and serves the admin API until `shutdown` resolves.
/// Returns the bound address (the real port when 0 was asked for).
pub async fn serve(
    gateway: Gateway,
    control: Control,
    addr: SocketAddr,
    token: Option<Secret>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    serve_on(gateway, control, listener, token, shutdown)
}

/// Serves the admin API on `listener` (bound here, or handed over by a
/// predecessor process) until `shutdown` resolves, which also stops
/// accepting at once. Returns the bound address.
pub fn serve_on(
    gateway: Gateway,
    control: Control,
    listener: tokio::net::TcpListener,
    token: Option<Secret>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let bound = listener.local_addr()?;
    let app = router(gateway, control, token);
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(error = %e, "admin API stopped");
        }
    });
    Ok((bound, task))
}

/// Compares without an early exit, so timing does not reveal the token.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn require_token(State(state): State<AdminState>, req: Request, next: Next) -> Response {
    let Some(token) = &state.token else {
        return next.run(req).await;
    };
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(levee_core::auth::bearer_token);
    if presented.is_some_and(|p| constant_time_eq(p.as_bytes(), token.expose().as_bytes())) {
        return next.run(req).await;
    }
    match ui::session_access(&state.sessions, &req) {
        ui::SessionAccess::Granted => next.run(req).await,
        ui::SessionAccess::CrossOrigin => ui::cross_origin(),
        ui::SessionAccess::NoSession => {
            let mut resp = (
                StatusCode::UNAUTHORIZED,
                Json(json!({"error": "unauthorized", "message": "this endpoint needs Authorization: Bearer <admin token>"})),
            )
                .into_response();
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            resp
        }
    }
}

async fn metrics(State(state): State<AdminState>) -> Response {
    let body = state.gateway.registry().encode();
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        body,
    )
        .into_response()
}

async fn readyz(State(state): State<AdminState>) -> Response {
    if state.gateway.is_ready() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "draining\n").into_response()
    }
}

async fn config(State(state): State<AdminState>) -> Response {
    Json(state.gateway.config().as_ref().clone()).into_response()
}

async fn clusters(State(state): State<AdminState>) -> Response {
    Json(json!({ "clusters": state.gateway.clusters() })).into_response()
}

async fn listeners(State(state): State<AdminState>) -> Response {
    Json(json!({ "listeners": state.gateway.listeners() })).into_response()
}

async fn slos(State(state): State<AdminState>) -> Response {
    let report = state.control.slo_report();
    let rollouts = state.control.rollouts();
    // Each SLO names the deploys on its routes and what they cost it.
    let slos: Vec<serde_json::Value> = report
        .slos
        .iter()
        .map(|slo| {
            let mut v = serde_json::to_value(slo).unwrap_or_default();
            v["deploys"] = json!(levee_control::rollout::report::deploys_for(slo, &rollouts));
            v
        })
        .collect();
    let fleet = state.control.slo_fleet();
    Json(json!({
        "evaluated_at": report.evaluated_at,
        "fleet": fleet.map(|(name, leads)| json!({ "name": name, "leader": leads })),
        "slos": slos,
    }))
    .into_response()
}

/// Evaluates SLOs now, so the next `GET /api/v1/slos` counts every event
/// so far (a chaos experiment checks its hypothesis each second, more often
/// than the evaluation loop may run).
async fn evaluate_slos(State(state): State<AdminState>) -> StatusCode {
    state.control.evaluate_slos().await;
    StatusCode::NO_CONTENT
}

async fn capacity(State(state): State<AdminState>) -> Response {
    Json(state.gateway.capacity().as_ref().clone()).into_response()
}

async fn status_json(State(state): State<AdminState>) -> Response {
    let page = status::StatusPage::of(&state.control, &state.gateway);
    Json(page).into_response()
}

async fn status_html(State(state): State<AdminState>) -> Response {
    let page = status::StatusPage::of(&state.control, &state.gateway);
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        page.html(),
    )
        .into_response()
}

async fn status_atom(State(state): State<AdminState>) -> Response {
    let page = status::StatusPage::of(&state.control, &state.gateway);
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/atom+xml; charset=utf-8"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        status_feed::atom(&page),
    )
        .into_response()
}

async fn status_summary(State(state): State<AdminState>) -> Response {
    let page = status::StatusPage::of(&state.control, &state.gateway);
    Json(status_feed::summary(&page)).into_response()
}

async fn reload_status(State(state): State<AdminState>) -> Response {
    Json(state.gateway.reload_status()).into_response()
}

async fn reload(State(state): State<AdminState>) -> Response {
    match state.gateway.reload_from_file().await {
        Ok(()) => Json(json!({"status": "reloaded"})).into_response(),
        Err(ApplyError::Invalid(diags)) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({
                "status": "rejected",
                "message": "the new configuration is invalid; the running one is kept",
                "diagnostics": diags.0,
                "rendered": diags.0.iter().map(ToString::to_string).collect::<Vec<_>>(),
            })),
        )
            .into_response(),
        Err(other) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({
                "status": "rejected",
                "message": other.to_string(),
                "diagnostics": [],
            })),
        )
            .into_response(),
    }
}

/// A rollout as the API shows it: the persisted state, the weights and
/// counts the data plane has now, and the steps of its policy.
fn rollout_view(state: &AdminState, rollout: &levee_control::RolloutState) -> serde_json::Value {
    use levee_proxy::release::Arm;
    let release = state.gateway.release(&rollout.route);
    let version = |arm: Arm| {
        release.as_ref().map(|r| {
            let s = r.snapshot(arm);
            json!({
                "requests": s.total,
                "bad": s.bad,
                "p50_ms": s.latency.quantile(0.5).map(|d| d.as_secs_f64() * 1e3),
                "p99_ms": s.latency.quantile(0.99).map(|d| d.as_secs_f64() * 1e3),
            })
        })
    };
    let weights = release.as_ref().map(|r| **r.weights().get());
    let steps = state
        .gateway
        .config()
        .routes
        .iter()
        .find(|r| r.name == rollout.route)
        .and_then(|r| match r.rollout.as_ref().map(|p| &p.strategy) {
            Some(levee_config::Strategy::Canary { steps }) => Some(
                steps
                    .iter()
                    .map(|s| f64::from(s.weight) / 100.0)
                    .collect::<Vec<_>>(),
            ),
            _ => None,
        });
    json!({
        "route": rollout.route,
        "strategy": rollout.strategy,
        "phase": rollout.phase.name(),
        "stable": rollout.stable,
        "canary": rollout.canary,
        "previous_stable": rollout.previous_stable,
        "step": rollout.step,
        "steps_percent": steps,
        "weight_percent": f64::from(rollout.weight) / 100.0,
        "serving": weights.map(|w| json!({
            "canary_percent": f64::from(w.canary) / 100.0,
            "baseline_percent": f64::from(w.baseline) / 100.0,
            "forcing": w.forcing,
        })),
        "reason": rollout.reason,
        "paused_by": rollout.paused_by,
        "revision": rollout.revision,
        "fleet": state.control.rollout_fleet(&rollout.route),
        "analysis": rollout.last_checks,
        "traffic": {
            "canary": version(Arm::Canary),
            "baseline": version(Arm::Baseline),
            "stable": version(Arm::Stable),
            "forced": release.as_ref().map(|r| r.forced()),
        },
        "canary_requests": rollout.canary_requests,
        "canary_bad_requests": rollout.canary_bad,
        "budget_spent_ratio": rollout.budget_spent,
        "started": (rollout.started_ns > 0).then(|| levee_slo::calendar::rfc3339(rollout.started_ns)),
        "updated": levee_slo::calendar::rfc3339(rollout.updated_ns),
        "decisions": rollout.decisions.iter().map(|d| json!({
            "at": levee_slo::calendar::rfc3339(d.at_ns),
            "step": d.step,
            "weight_percent": f64::from(d.weight) / 100.0,
            "outcome": d.outcome,
            "reason": d.reason,
            "checks": d.checks,
        })).collect::<Vec<_>>(),
    })
}

async fn rollouts(State(state): State<AdminState>) -> Response {
    let rollouts: Vec<_> = state
        .control
        .rollouts()
        .iter()
        .map(|r| rollout_view(&state, r))
        .collect();
    let splits: Vec<_> = state
        .gateway
        .releases()
        .iter()
        .filter(|r| r.kind() == levee_proxy::release::ReleaseKind::Split)
        .map(|r| {
            let w = **r.weights().get();
            json!({
                "route": r.route(),
                "stable": r.stable_cluster(),
                "canary": r.canary_cluster(),
                "canary_percent": f64::from(w.canary) / 100.0,
            })
        })
        .collect();
    Json(json!({ "rollouts": rollouts, "splits": splits })).into_response()
}

fn no_rollout(route: &str) -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({"error": "not_found", "message": format!("no rollout for route `{route}`")})),
    )
        .into_response()
}

async fn rollout(State(state): State<AdminState>, Path(route): Path<String>) -> Response {
    match state.control.rollout(&route) {
        Some(r) => Json(rollout_view(&state, &r)).into_response(),
        None => no_rollout(&route),
    }
}

async fn rollout_command(
    State(state): State<AdminState>,
    Path((route, action)): Path<(String, String)>,
) -> Response {
    let Some(command) = levee_control::RolloutCommand::parse(&action) else {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({
                "error": "not_found",
                "message": "rollout actions are pause, resume, promote, abort and undo",
            })),
        )
            .into_response();
    };
    match state.control.rollout_command(&route, command).await {
        Ok(r) => Json(rollout_view(&state, &r)).into_response(),
        Err(levee_control::CommandError::NotFound(_)) => no_rollout(&route),
        Err(e @ levee_control::CommandError::Refused(_)) => (
            StatusCode::CONFLICT,
            Json(json!({"error": "conflict", "message": e.to_string()})),
        )
            .into_response(),
        Err(e @ levee_control::CommandError::NoLeader) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"error": "no_leader", "message": e.to_string()})),
        )
            .into_response(),
    }
}

async fn faults(State(state): State<AdminState>) -> Response {
    Json(json!({ "faults": state.gateway.faults().list() })).into_response()
}

/// Sets a fault at runtime: the body names a route or a cluster, the fault
/// in the config's shape, and `expires_in` (required, at most a day).
async fn add_fault(State(state): State<AdminState>, body: String) -> Response {
    let fault = match levee_config::decode_runtime_fault(&body) {
        Ok(f) => f,
        Err(diags) => {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({
                    "error": "invalid_fault",
                    "message": "the fault is invalid",
                    "diagnostics": diags.0,
                    "rendered": diags.0.iter().map(ToString::to_string).collect::<Vec<_>>(),
                })),
            )
                .into_response()
        }
    };
    let config = state.gateway.config();
    let (kind, name, known) = match &fault.target {
        levee_config::FaultTarget::Route(r, _) => (
            "route",
            r.clone(),
            config.routes.iter().any(|x| x.name == *r),
        ),
        levee_config::FaultTarget::Cluster(c, _) => (
            "cluster",
            c.clone(),
            config.clusters.iter().any(|x| x.name == *c),
        ),
    };
    if !known {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({"error": "not_found", "message": format!("no {kind} `{name}`")})),
        )
            .into_response();
    }
    let expires_in = fault.expires_in;
    let id = state.gateway.faults().add(fault);
    tracing::info!(id, on = kind, target = %name, ?expires_in, "runtime fault set");
    (
        StatusCode::CREATED,
        Json(json!({ "id": id, "on": kind, "target": name, "expires_in_seconds": expires_in.as_secs_f64() })),
    )
        .into_response()
}

async fn remove_fault(State(state): State<AdminState>, Path(id): Path<String>) -> Response {
    match id.parse::<u64>() {
        Ok(id) if state.gateway.faults().remove(id) => {
            tracing::info!(id, "runtime fault removed");
            Json(json!({ "removed": id })).into_response()
        }
        _ => (
            StatusCode::NOT_FOUND,
            Json(json!({"error": "not_found", "message": format!("no runtime fault `{id}`")})),
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn constant_time_eq_compares_whole_values() {
        assert!(super::constant_time_eq(b"abc", b"abc"));
        assert!(!super::constant_time_eq(b"abc", b"abd"));
        assert!(!super::constant_time_eq(b"abc", b"ab"));
    }
}
