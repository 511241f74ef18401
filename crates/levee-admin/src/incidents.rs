//! The incidents endpoints: the list with MTTD, MTTA and MTTR, one
//! incident with its timeline, alerts and the deploys around it, and the
//! operators' actions (acknowledge, note, resolve). The rules of the
//! actions are `levee_control::slo::IncidentAction`'s; this module reads
//! requests and shapes answers. Behind the admin token like every
//! internal endpoint.
//!
//! Errors use the API's shape `{"error": ..., "message": ...}`: 400
//! `invalid_request` (an id that is not a number, a body that is not the
//! JSON asked for, an empty name or note), 404 `not_found`, 409
//! `conflict` (already acknowledged, already resolved, too many notes),
//! 503 `store_unavailable` (the action could not be stored, so it was not
//! taken).

use crate::AdminState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use levee_control::slo::{ActionError, IncidentAction, IncidentStatus, SloReport};
use serde::Deserialize;
use serde_json::{json, Value};

/// The routes, for the admin router to merge behind its token check.
pub(crate) fn routes() -> Router<AdminState> {
    Router::new()
        .route("/api/v1/incidents", get(list))
        .route("/api/v1/incidents/{id}", get(show))
        .route("/api/v1/incidents/{id}/{action}", post(act))
}

/// A refusal in the API's error shape.
#[derive(Debug)]
struct Refusal {
    status: StatusCode,
    error: &'static str,
    message: String,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(json!({ "error": self.error, "message": self.message })),
        )
            .into_response()
    }
}

fn error(status: StatusCode, error: &'static str, message: impl Into<String>) -> Refusal {
    Refusal {
        status,
        error,
        message: message.into(),
    }
}

fn invalid(message: impl Into<String>) -> Refusal {
    error(StatusCode::BAD_REQUEST, "invalid_request", message)
}

/// An incident as the list shows it: its status and the deploys around it.
fn listed(incident: &IncidentStatus, report: &SloReport, state: &AdminState) -> Value {
    let mut v = serde_json::to_value(incident).unwrap_or_default();
    v["deploys"] = json!(levee_control::rollout::report::deploys_around(
        incident,
        &report.slos,
        &state.control.rollouts()
    ));
    v
}

/// One incident in full: the list's fields, its timeline, the page alert
/// that opened it and its SLO's alerts now.
fn detail(incident: &IncidentStatus, report: &SloReport, state: &AdminState) -> Value {
    let mut v = listed(incident, report, state);
    v["timeline"] = json!(incident.timeline());
    v["alerts"] = json!([{
        "severity": incident.severity,
        "fired": incident.detect,
        "resolved": incident.resolve,
    }]);
    // Empty once the SLO left the config.
    v["slo_alerts"] = json!(report
        .slos
        .iter()
        .find(|s| s.id == incident.slo)
        .map(|s| s.alerts.clone())
        .unwrap_or_default());
    v
}

async fn list(State(state): State<AdminState>) -> Response {
    let report = state.control.slo_report();
    let incidents: Vec<Value> = report
        .incidents
        .iter()
        .map(|i| listed(i, &report, &state))
        .collect();
    Json(json!({
        "incidents": incidents,
        "mttd": report.mttd,
        "mtta": report.mtta,
        "mttr": report.mttr,
    }))
    .into_response()
}

fn parse_id(id: &str) -> Result<u64, Refusal> {
    id.parse::<u64>().map_err(|_| {
        invalid(format!(
            "`{id}` is not an incident id: ids are whole numbers, as GET /api/v1/incidents lists them"
        ))
    })
}

fn not_found(id: u64) -> Refusal {
    error(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no incident {id} (GET /api/v1/incidents lists those kept)"),
    )
}

async fn show(State(state): State<AdminState>, Path(id): Path<String>) -> Response {
    let id = match parse_id(&id) {
        Ok(id) => id,
        Err(r) => return r.into_response(),
    };
    let report = state.control.slo_report();
    match report.incidents.iter().find(|i| i.id == id) {
        Some(i) => Json(detail(i, &report, &state)).into_response(),
        None => not_found(id).into_response(),
    }
}

/// The body of an action: who, and what they say.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ActionBody {
    by: Option<String>,
    message: Option<String>,
}

/// The action `name` from `body`, or the 400/404 that explains why not.
fn parse_action(name: &str, body: &str) -> Result<IncidentAction, Refusal> {
    let example = match name {
        "ack" => r#"{"by": "alice"}"#,
        "note" => r#"{"by": "alice", "message": "rolled back to v41"}"#,
        "resolve" => r#"{"by": "alice", "message": "fixed by the rollback"}"#,
        _ => {
            return Err(error(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("incident actions are ack, note and resolve, not `{name}`"),
            ))
        }
    };
    let body: ActionBody = serde_json::from_str(body).map_err(|e| {
        invalid(format!(
            "the body must be a JSON object like {example}: {e}"
        ))
    })?;
    let by = body
        .by
        .ok_or_else(|| invalid(format!("`by` is required (who acts), as in {example}")))?;
    Ok(match name {
        "ack" => {
            if body.message.is_some() {
                return Err(invalid(
                    "an acknowledgement takes no message: add a note for that",
                ));
            }
            IncidentAction::Acknowledge { by }
        }
        "note" => IncidentAction::Note {
            by,
            message: body.message.ok_or_else(|| {
                invalid(format!("`message` is required (the note), as in {example}"))
            })?,
        },
        _ => IncidentAction::Resolve {
            by,
            message: body.message,
        },
    })
}

async fn act(
    State(state): State<AdminState>,
    Path((id, action)): Path<(String, String)>,
    body: String,
) -> Response {
    let id = match parse_id(&id) {
        Ok(id) => id,
        Err(r) => return r.into_response(),
    };
    let action = match parse_action(&action, &body) {
        Ok(a) => a,
        Err(r) => return r.into_response(),
    };
    let refusal = match state.control.incident_action(id, action).await {
        Ok(incident) => {
            let report = state.control.slo_report();
            return Json(detail(&incident, &report, &state)).into_response();
        }
        Err(ActionError::NotFound(id)) => not_found(id),
        Err(e @ ActionError::Invalid(_)) => invalid(e.to_string()),
        Err(e @ ActionError::Conflict(_)) => error(StatusCode::CONFLICT, "conflict", e.to_string()),
        Err(e @ ActionError::Store(_)) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            e.to_string(),
        ),
    };
    refusal.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(name: &str, body: &str) -> (StatusCode, String) {
        match parse_action(name, body) {
            Ok(a) => panic!("accepted {a:?}"),
            Err(r) => (r.status, r.message),
        }
    }

    #[test]
    fn bodies_become_actions_or_clear_refusals() {
        assert_eq!(
            parse_action("ack", r#"{"by":"alice"}"#).unwrap(),
            IncidentAction::Acknowledge { by: "alice".into() }
        );
        assert_eq!(
            parse_action("resolve", r#"{"by":"bob"}"#).unwrap(),
            IncidentAction::Resolve {
                by: "bob".into(),
                message: None
            }
        );
        assert_eq!(refused("snooze", "{}").0, StatusCode::NOT_FOUND);
        for (name, body) in [
            ("ack", ""),
            ("ack", "[]"),
            ("ack", r#"{"who":"alice"}"#),
            ("ack", r#"{"message":"x"}"#),
            ("ack", r#"{"by":"alice","message":"x"}"#),
            ("note", r#"{"by":"alice"}"#),
            ("note", r#"{"by":7,"message":"x"}"#),
        ] {
            assert_eq!(
                refused(name, body).0,
                StatusCode::BAD_REQUEST,
                "{name} {body}"
            );
        }
    }

    #[test]
    fn ids_are_whole_numbers() {
        assert_eq!(parse_id("42").unwrap(), 42);
        for bad in ["-1", "x", "1.5", ""] {
            assert_eq!(
                parse_id(bad).map_err(|r| r.status),
                Err(StatusCode::BAD_REQUEST)
            );
        }
    }
}
