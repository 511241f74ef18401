//! The history API, behind the admin token: the routes that have a
//! latency and traffic history, and one route's history over the last
//! hour or day, for the dashboard's heatmaps. The shapes are the contract
//! in `docs/dashboard.md` ("History API"); the control plane builds them
//! (`levee_control::history`), this module parses the request and picks
//! the status.

use crate::AdminState;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use levee_control::history::Window;
use serde_json::json;

/// The history endpoints, for the admin router's protected part.
pub(crate) fn routes() -> Router<AdminState> {
    Router::new()
        .route("/api/v1/history/routes", get(list))
        .route("/api/v1/history/routes/{route}", get(route))
}

async fn list(State(state): State<AdminState>) -> Response {
    Json(json!({ "routes": state.control.history_routes() })).into_response()
}

async fn route(
    State(state): State<AdminState>,
    Path(route): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let Some(window) = window(query.as_deref()) else {
        return error(StatusCode::BAD_REQUEST, "bad_request", "window is 1h or 1d");
    };
    match state.control.route_history(&route, window).await {
        Some(history) => Json(history).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            "not_found",
            &format!("no route named {route:?}"),
        ),
    }
}

/// The `window` of a query string: `1h` when absent, `None` when it is
/// anything but `1h` or `1d` (or given twice).
fn window(query: Option<&str>) -> Option<Window> {
    let mut given = query
        .unwrap_or("")
        .split('&')
        .filter_map(|pair| pair.strip_prefix("window="));
    match (given.next(), given.next()) {
        (None, _) => Some(Window::Hour),
        (Some(value), None) => Window::parse(value),
        (Some(_), Some(_)) => None,
    }
}

fn error(status: StatusCode, error: &str, message: &str) -> Response {
    (status, Json(json!({ "error": error, "message": message }))).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_is_an_hour_unless_a_day_is_asked_for() {
        assert_eq!(window(None), Some(Window::Hour));
        assert_eq!(window(Some("")), Some(Window::Hour));
        assert_eq!(window(Some("other=1")), Some(Window::Hour));
        assert_eq!(window(Some("window=1h")), Some(Window::Hour));
        assert_eq!(window(Some("x=y&window=1d")), Some(Window::Day));
        for bad in ["window=", "window=5m", "window=1D", "window=1h&window=1d"] {
            assert_eq!(window(Some(bad)), None, "{bad}");
        }
    }
}
