//! The operators' side of the status page (behind the admin token): post
//! an incident and its updates, announce a maintenance, and list what was
//! posted. The rules are the status board's
//! ([`levee_control::status_board`]); this module reads JSON, names the
//! components the config knows (SLO names and tiers) and maps refusals to
//! 400, 404, 409 and 503.

use crate::AdminState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use levee_control::status_board::{Board, BoardError, NewIncident, NewMaintenance, NewUpdate};
use levee_core::Nanos;
use serde_json::json;

/// The routes, to merge into the protected router.
pub(crate) fn routes() -> Router<AdminState> {
    Router::new()
        .route("/api/v1/status/posts", get(list))
        .route("/api/v1/status/incidents", post(open_incident))
        .route("/api/v1/status/maintenances", post(schedule_maintenance))
        .route("/api/v1/status/posts/{id}/updates", post(add_update))
}

async fn list(State(state): State<AdminState>) -> Response {
    Json(json!({ "posts": state.control.status_board().posts() })).into_response()
}

/// What a post may name: every SLO by its name, and the tiers.
fn known_components(state: &AdminState) -> Vec<String> {
    let config = state.gateway.config();
    let mut known: Vec<String> = config.slos.iter().map(|s| s.name.clone()).collect();
    known.extend(["core".to_string(), "optional".to_string()]);
    known
}

fn bad_json(e: &serde_json::Error) -> Response {
    // serde's message names the field and the problem, never a path or address.
    (
        StatusCode::BAD_REQUEST,
        Json(json!({"error": "invalid_post", "message": format!("the body is not a valid post: {e}")})),
    )
        .into_response()
}

fn refusal(e: &BoardError) -> Response {
    let (status, error) = match e {
        BoardError::Invalid { .. } => (StatusCode::BAD_REQUEST, "invalid_post"),
        BoardError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
        BoardError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
        BoardError::Store => (StatusCode::SERVICE_UNAVAILABLE, "store_unavailable"),
    };
    (
        status,
        Json(json!({"error": error, "message": e.to_string()})),
    )
        .into_response()
}

async fn open_incident(State(state): State<AdminState>, body: String) -> Response {
    create(
        &state,
        &body,
        "incident",
        |b, new: &NewIncident, known, now| b.open_incident(new, known, now),
    )
}

async fn schedule_maintenance(State(state): State<AdminState>, body: String) -> Response {
    create(
        &state,
        &body,
        "maintenance",
        |b, new: &NewMaintenance, known, now| b.schedule_maintenance(new, known, now),
    )
}

/// Reads a new post of type `T` from `body` and adds it with `add`,
/// which is given the components the config knows and the time.
fn create<T: serde::de::DeserializeOwned>(
    state: &AdminState,
    body: &str,
    what: &str,
    add: impl FnOnce(&mut Board, &T, &[&str], Nanos) -> Result<u64, BoardError>,
) -> Response {
    let new: T = match serde_json::from_str(body) {
        Ok(n) => n,
        Err(e) => return bad_json(&e),
    };
    let known = known_components(state);
    let known: Vec<&str> = known.iter().map(String::as_str).collect();
    let now = levee_core::time::unix_nanos();
    match state
        .control
        .status_board()
        .change(now, |b| add(b, &new, &known, now))
    {
        Ok(post) => {
            tracing::info!(id = post.id, kind = what, "status page post created");
            (StatusCode::CREATED, Json(post)).into_response()
        }
        Err(e) => refusal(&e),
    }
}

async fn add_update(
    State(state): State<AdminState>,
    Path(id): Path<String>,
    body: String,
) -> Response {
    let Ok(id) = id.parse::<u64>() else {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({"error": "not_found", "message": "status page posts have numeric ids"})),
        )
            .into_response();
    };
    let new: NewUpdate = match serde_json::from_str(&body) {
        Ok(n) => n,
        Err(e) => return bad_json(&e),
    };
    let now = levee_core::time::unix_nanos();
    match state
        .control
        .status_board()
        .change(now, |b| b.update(id, &new, now).map(|()| id))
    {
        Ok(post) => {
            tracing::info!(id, status = %new.status, "status page post updated");
            Json(post).into_response()
        }
        Err(e) => refusal(&e),
    }
}
