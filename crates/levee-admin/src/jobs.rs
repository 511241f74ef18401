//! The jobs API, behind the admin token: async routes' queues (depth, lag,
//! dead letters), one route's jobs, one job with its last error and
//! result, and the dead-letter queue's two actions, retry and purge. The
//! client is `levee jobs`; the contract is in `docs/async.md` ("Admin
//! API"). Jobs are read through `Gateway::job_queue`; this module only
//! parses requests and shapes answers. A job's stored request (its headers
//! may hold credentials) is never shown: only its method and path.

use crate::AdminState;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use levee_proxy::jobs::{JobId, JobQueue, JobStatus, JobView, QueueStats};
use serde_json::{json, Value};
use std::sync::Arc;

/// Jobs listed at most per request.
const MAX_LIST: usize = 1000;
/// A result body shown up to this many bytes.
const MAX_SHOWN_BODY: usize = 64 * 1024;

pub(crate) fn routes() -> Router<AdminState> {
    Router::new()
        .route("/api/v1/jobs", get(queues))
        .route("/api/v1/jobs/{route}", get(list))
        .route("/api/v1/jobs/{route}/purge", post(purge))
        .route("/api/v1/jobs/{route}/{id}", get(show))
        .route("/api/v1/jobs/{route}/{id}/retry", post(retry))
}

fn error(status: StatusCode, error: &str, message: &str) -> Response {
    (status, Json(json!({ "error": error, "message": message }))).into_response()
}

/// What a request named that is not there.
enum Missing {
    Route(String),
    Job,
}

impl IntoResponse for Missing {
    fn into_response(self) -> Response {
        match self {
            Missing::Route(route) => error(
                StatusCode::NOT_FOUND,
                "not_found",
                &format!("no async route named {route:?}"),
            ),
            Missing::Job => error(StatusCode::NOT_FOUND, "not_found", "no such job"),
        }
    }
}

fn queue_of(state: &AdminState, route: &str) -> Result<Arc<dyn JobQueue>, Missing> {
    state
        .gateway
        .job_queue(route)
        .ok_or_else(|| Missing::Route(route.to_string()))
}

fn unavailable(e: impl std::fmt::Display) -> Response {
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "job_queue_unavailable",
        &e.to_string(),
    )
}

fn stats_json(route: &str, s: &QueueStats) -> Value {
    let tenants: serde_json::Map<String, Value> = s
        .per_tenant
        .iter()
        .map(|(t, n)| (t.clone(), json!(n)))
        .collect();
    json!({
        "route": route,
        "queued": s.queued,
        "delivering": s.delivering,
        "dead": s.dead,
        "done": s.done,
        "bytes": s.bytes,
        "oldest_undelivered_seconds": s.oldest_undelivered.map(|d| d.as_secs_f64()),
        "tenants": tenants,
    })
}

/// `GET /api/v1/jobs`: every async route's queue.
async fn queues(State(state): State<AdminState>) -> Response {
    let mut out = Vec::new();
    for route in state.gateway.job_routes() {
        let Some(queue) = state.gateway.job_queue(&route) else {
            continue;
        };
        match queue.stats().await {
            Ok(s) => out.push(stats_json(&route, &s)),
            Err(e) => return unavailable(e),
        }
    }
    Json(json!({ "routes": out })).into_response()
}

fn view_json(v: &JobView, full: bool) -> Value {
    let mut out = json!({
        "id": v.id.as_str(),
        "tenant": v.tenant,
        "status": v.status.name(),
        "attempts": v.attempts,
        "accepted_at_ms": v.accepted_at_ms,
        "finished_at_ms": v.finished_at_ms,
        "next_attempt_at_ms": v.next_attempt_at_ms,
        "ordering_key": v.ordering_key,
        "bytes": v.bytes,
        "method": v.method,
        "path": v.path,
        "last_error": v.last_error,
        "result_status": v.result.as_ref().map(|r| r.status),
    });
    if let (true, Some(r)) = (full, &v.result) {
        let headers: serde_json::Map<String, Value> = r
            .headers
            .iter()
            .map(|(n, v)| (n.clone(), String::from_utf8_lossy(v).into_owned().into()))
            .collect();
        let shown = &r.body[..r.body.len().min(MAX_SHOWN_BODY)];
        out["result"] = json!({
            "status": r.status,
            "headers": headers,
            "body": String::from_utf8_lossy(shown),
            "body_bytes": r.body.len(),
            "truncated": r.truncated || shown.len() < r.body.len(),
        });
    }
    out
}

/// `GET /api/v1/jobs/{route}?status=dead&limit=N`: the route's jobs,
/// oldest first.
async fn list(
    State(state): State<AdminState>,
    Path(route): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let queue = match queue_of(&state, &route) {
        Ok(q) => q,
        Err(missing) => return missing.into_response(),
    };
    let mut status = None;
    let mut limit = 100;
    for pair in query
        .as_deref()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
    {
        match pair.split_once('=') {
            Some(("status", s)) => match JobStatus::from_name(s) {
                Some(s) => status = Some(s),
                None => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "bad_request",
                        "status is queued, delivering, done or dead",
                    )
                }
            },
            Some(("limit", n)) => match n.parse::<usize>() {
                Ok(n) if (1..=MAX_LIST).contains(&n) => limit = n,
                _ => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "bad_request",
                        "limit is a number from 1 to 1000",
                    )
                }
            },
            _ => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    "the query takes status and limit",
                )
            }
        }
    }
    let stats = match queue.stats().await {
        Ok(s) => s,
        Err(e) => return unavailable(e),
    };
    match queue.list(status, limit).await {
        Ok(jobs) => Json(json!({
            "queue": stats_json(&route, &stats),
            "jobs": jobs.iter().map(|j| view_json(j, false)).collect::<Vec<_>>(),
        }))
        .into_response(),
        Err(e) => unavailable(e),
    }
}

fn parse_id(id: &str) -> Result<JobId, Missing> {
    JobId::parse(id).ok_or(Missing::Job)
}

/// `GET /api/v1/jobs/{route}/{id}`: one job, with its result.
async fn show(
    State(state): State<AdminState>,
    Path((route, id)): Path<(String, String)>,
) -> Response {
    let (queue, id) = match (queue_of(&state, &route), parse_id(&id)) {
        (Ok(q), Ok(id)) => (q, id),
        (Err(missing), _) | (_, Err(missing)) => return missing.into_response(),
    };
    match queue.get(&id).await {
        Ok(Some(job)) => Json(view_json(&job, true)).into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, "not_found", "no such job"),
        Err(e) => unavailable(e),
    }
}

/// `POST /api/v1/jobs/{route}/{id}/retry`: a dead job queued again with
/// its attempts reset; 409 when it is not dead.
async fn retry(
    State(state): State<AdminState>,
    Path((route, id)): Path<(String, String)>,
) -> Response {
    let (queue, id) = match (queue_of(&state, &route), parse_id(&id)) {
        (Ok(q), Ok(id)) => (q, id),
        (Err(missing), _) | (_, Err(missing)) => return missing.into_response(),
    };
    match queue.get(&id).await {
        Ok(Some(job)) if job.status == JobStatus::Dead => {}
        Ok(Some(job)) => {
            return error(
                StatusCode::CONFLICT,
                "not_dead",
                &format!(
                    "job {id} is {}; only dead jobs are retried",
                    job.status.name()
                ),
            )
        }
        Ok(None) => return error(StatusCode::NOT_FOUND, "not_found", "no such job"),
        Err(e) => return unavailable(e),
    }
    match queue.retry(&id).await {
        Ok(true) => match queue.get(&id).await {
            Ok(Some(job)) => Json(view_json(&job, false)).into_response(),
            _ => Json(json!({ "id": id.as_str(), "status": "queued" })).into_response(),
        },
        Ok(false) => error(
            StatusCode::CONFLICT,
            "not_dead",
            &format!("job {id} is no longer dead"),
        ),
        Err(e) => unavailable(e),
    }
}

/// `POST /api/v1/jobs/{route}/purge`: removes every dead job of the route.
async fn purge(State(state): State<AdminState>, Path(route): Path<String>) -> Response {
    let queue = match queue_of(&state, &route) {
        Ok(q) => q,
        Err(missing) => return missing.into_response(),
    };
    match queue.purge_dead().await {
        Ok(n) => Json(json!({ "route": route, "purged": n })).into_response(),
        Err(e) => unavailable(e),
    }
}
