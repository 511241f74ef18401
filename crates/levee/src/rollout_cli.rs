//! `levee rollout`: the operator's command line for rollouts, a client of
//! the admin API (`/api/v1/rollouts`) over plain HTTP/1.1.
//!
//! The API and its token are found as `admin_client` says: `--admin`,
//! `--token-file`, `$LEVEE_ADMIN_TOKEN`, the config.
//!
//! Exit codes (`admin_client`'s): 0 done; 1 the server refused the
//! command (409) or the route has no rollout (404), with its message on
//! stderr; 2 a usage error (clap's, or a token file or config that cannot
//! be read); 3 the admin API cannot be reached or answered something
//! unexpected (401 included).

use crate::admin_client::{
    self, encode, json_text, parse_json, table, text, ConnectArgs, Failure, Target,
};
use bytes::Bytes;
use http::Method;
use serde_json::Value;
use std::process::ExitCode;
use std::time::Duration;

/// How long a whole exchange may take (`undo` rebuilds the route).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Decisions the detailed status shows.
const LAST_DECISIONS: usize = 5;

/// Where the admin API is and how to authenticate to it; shared by every
/// `levee rollout` subcommand.
#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    #[command(subcommand)]
    action: Action,
    #[command(flatten)]
    connect: ConnectArgs,
    /// Print the admin API's JSON answer unchanged, for scripts.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(clap::Subcommand, Debug)]
enum Action {
    /// Every rollout and fixed split, or one route's rollout in detail:
    /// phase, versions, weights and steps, reason, analysis, decisions.
    Status {
        /// The route [default: all of them].
        route: Option<String>,
    },
    /// Hold the current weights until `resume`.
    Pause {
        /// The route.
        route: String,
    },
    /// Go on from a pause (a step that waited for a person, or one paused
    /// by hand or by a failed analysis).
    Resume {
        /// The route.
        route: String,
    },
    /// Send all traffic to the new version now, skipping the steps left.
    Promote {
        /// The route.
        route: String,
    },
    /// Send all traffic back to the stable version now.
    Abort {
        /// The route.
        route: String,
    },
    /// Go back to the version before the last promotion (or abort a
    /// rollout in flight).
    Undo {
        /// The route.
        route: String,
    },
}

impl Action {
    /// The action's name in the API path and its route, for commands.
    fn command(&self) -> Option<(&'static str, &str)> {
        match self {
            Action::Status { .. } => None,
            Action::Pause { route } => Some(("pause", route)),
            Action::Resume { route } => Some(("resume", route)),
            Action::Promote { route } => Some(("promote", route)),
            Action::Abort { route } => Some(("abort", route)),
            Action::Undo { route } => Some(("undo", route)),
        }
    }
}

/// Runs `levee rollout ...` and gives the exit code.
pub(crate) fn main(args: Args) -> ExitCode {
    let args = &args;
    admin_client::run_command(
        &args.connect,
        |target| async move { act(&target, args).await },
    )
}

/// Carries out the action; the text to print on success.
async fn act(target: &Target, args: &Args) -> Result<String, Failure> {
    let (method, path) = match &args.action {
        Action::Status { route: None } => (Method::GET, "/api/v1/rollouts".to_string()),
        Action::Status { route: Some(r) } => {
            (Method::GET, format!("/api/v1/rollouts/{}", encode(r)))
        }
        other => {
            let (verb, route) = other.command().expect("not status");
            (
                Method::POST,
                format!("/api/v1/rollouts/{}/{verb}", encode(route)),
            )
        }
    };
    let body = exchange(target, method, &path).await?;
    if args.json {
        return Ok(json_text(&body));
    }
    let value = parse_json(target, &body)?;
    Ok(match &args.action {
        Action::Status { route: None } => render_list(&value),
        Action::Status { route: Some(_) } => render_detail(&value),
        other => {
            let (verb, route) = other.command().expect("not status");
            format!("{}\n", command_line(verb, route, &value))
        }
    })
}

/// One request to the admin API; the body of a 200, or the failure the
/// answer means.
async fn exchange(target: &Target, method: Method, path: &str) -> Result<Bytes, Failure> {
    let (status, body) = admin_client::send(target, method, path, None, REQUEST_TIMEOUT).await?;
    admin_client::judge(target, status, body, "rollout")
}

/// The one line a command prints, from the state it returned.
fn command_line(verb: &str, route: &str, state: &Value) -> String {
    let stable = text(&state["stable"]);
    let canary = text(&state["canary"]);
    let weight = percent(&state["weight_percent"]);
    let phase = text(&state["phase"]);
    match verb {
        "pause" => format!(
            "rollout of route {route} paused at {weight} on {canary}; `levee rollout resume {route}` goes on"
        ),
        "resume" => format!("rollout of route {route} resumed: {phase}, {weight} on {canary}"),
        "promote" => format!("rollout of route {route} promoted: all traffic on {canary}"),
        "abort" => format!("rollout of route {route} aborted: all traffic back on {stable}"),
        _ => format!("rollout of route {route} undone: all traffic back on {stable}"),
    }
}

/// `levee rollout status`: one line per rollout, then the fixed splits.
fn render_list(value: &Value) -> String {
    let empty = Vec::new();
    let rollouts = value["rollouts"].as_array().unwrap_or(&empty);
    let splits = value["splits"].as_array().unwrap_or(&empty);
    let mut out = String::new();
    if rollouts.is_empty() {
        out.push_str("no route has a rollout policy\n");
    } else {
        let mut rows = vec![[
            "ROUTE".to_string(),
            "STRATEGY".into(),
            "PHASE".into(),
            "STABLE → CANARY".into(),
            "WEIGHT".into(),
            "REASON".into(),
        ]];
        for r in rollouts {
            rows.push([
                text(&r["route"]),
                text(&r["strategy"]),
                text(&r["phase"]),
                versions(r),
                percent(&r["weight_percent"]),
                text(&r["reason"]),
            ]);
        }
        out.push_str(&table(&rows, ""));
    }
    if !splits.is_empty() {
        out.push_str("\nfixed splits:\n");
        let mut rows = vec![[
            "ROUTE".to_string(),
            "STABLE → CANARY".into(),
            "CANARY".into(),
        ]];
        for s in splits {
            rows.push([
                text(&s["route"]),
                format!("{} → {}", text(&s["stable"]), text(&s["canary"])),
                percent(&s["canary_percent"]),
            ]);
        }
        out.push_str(&table(&rows, "  "));
    }
    out
}

/// `levee rollout status ROUTE`: everything about one rollout.
fn render_detail(r: &Value) -> String {
    let mut out = String::new();
    let mut field = |name: &str, value: String| {
        out.push_str(&format!("{:<10} {value}\n", format!("{name}:")));
    };
    field("route", text(&r["route"]));
    field("strategy", text(&r["strategy"]));
    let mut phase = text(&r["phase"]);
    if let Some(by) = r["paused_by"].as_str().filter(|_| phase == "paused") {
        phase.push_str(&format!(" (by {by})"));
    }
    field("phase", phase);
    let both = r["canary"].as_str().is_some_and(|c| r["stable"] != c);
    field(
        "versions",
        if both {
            format!("{} (stable → canary)", versions(r))
        } else {
            format!("{} (stable)", versions(r))
        },
    );
    if let Some(previous) = r["previous_stable"].as_str() {
        field("previous", format!("{previous} (undo goes back to it)"));
    }
    field("weight", weight_and_steps(r));
    if let Some(serving) = r["serving"].as_object() {
        field(
            "serving",
            format!(
                "{} canary, {} baseline{}",
                percent(&serving["canary_percent"]),
                percent(&serving["baseline_percent"]),
                if serving["forcing"] == true {
                    ", forcing rules on"
                } else {
                    ""
                }
            ),
        );
    }
    field("reason", text(&r["reason"]));
    if let Some(started) = r["started"].as_str() {
        field("started", started.to_string());
    }
    field("updated", text(&r["updated"]));
    field(
        "canary",
        format!(
            "{} requests, {} bad; {} of the error budget spent",
            r["canary_requests"].as_u64().unwrap_or(0),
            r["canary_bad_requests"].as_u64().unwrap_or(0),
            ratio_percent(&r["budget_spent_ratio"]),
        ),
    );
    let empty = Vec::new();
    let checks = r["analysis"].as_array().unwrap_or(&empty);
    if checks.is_empty() {
        out.push_str("analysis:  none yet\n");
    } else {
        out.push_str("analysis:\n");
        let mut rows = vec![[
            "CHECK".to_string(),
            "VALUE".into(),
            "THRESHOLD".into(),
            "OUTCOME".into(),
        ]];
        for c in checks {
            rows.push([
                text(&c["name"]),
                number(&c["value"]),
                number(&c["threshold"]),
                text(&c["outcome"]),
            ]);
        }
        out.push_str(&table(&rows, "  "));
    }
    let decisions = r["decisions"].as_array().unwrap_or(&empty);
    if decisions.is_empty() {
        out.push_str("decisions: none yet\n");
    } else {
        let shown = decisions.len().min(LAST_DECISIONS);
        out.push_str(&format!(
            "decisions (last {shown} of {}, newest last):\n",
            decisions.len()
        ));
        let mut rows = vec![[
            "AT".to_string(),
            "OUTCOME".into(),
            "STEP".into(),
            "WEIGHT".into(),
            "REASON".into(),
        ]];
        for d in &decisions[decisions.len() - shown..] {
            rows.push([
                text(&d["at"]),
                text(&d["outcome"]),
                d["step"]
                    .as_u64()
                    .map_or_else(|| "-".into(), |s| (s + 1).to_string()),
                percent(&d["weight_percent"]),
                text(&d["reason"]),
            ]);
        }
        out.push_str(&table(&rows, "  "));
    }
    out
}

/// `10% now; steps [10%] → 50%`, the current step in brackets.
fn weight_and_steps(r: &Value) -> String {
    let now = format!("{} now", percent(&r["weight_percent"]));
    let Some(steps) = r["steps_percent"].as_array().filter(|s| !s.is_empty()) else {
        return now;
    };
    let current = r["step"].as_u64().and_then(|s| usize::try_from(s).ok());
    let active = matches!(r["phase"].as_str(), Some("progressing" | "paused"));
    let shown: Vec<String> = steps
        .iter()
        .enumerate()
        .map(|(i, s)| {
            if active && Some(i) == current {
                format!("[{}]", percent(s))
            } else {
                percent(s)
            }
        })
        .collect();
    format!("{now}; steps {} → promote", shown.join(" → "))
}

/// `stable → canary`, or the stable one alone (before a rollout, and
/// once the new version became the stable one).
fn versions(r: &Value) -> String {
    let stable = text(&r["stable"]);
    match r["canary"].as_str() {
        Some(canary) if canary != stable => format!("{stable} → {canary}"),
        _ => stable,
    }
}

/// A value already in percent, as `12.5%`.
fn percent(v: &Value) -> String {
    v.as_f64()
        .map_or_else(|| "-".to_string(), |p| format!("{}%", trim(p, 2)))
}

/// A ratio (0.05) as a percent (`5%`).
fn ratio_percent(v: &Value) -> String {
    v.as_f64()
        .map_or_else(|| "-".to_string(), |r| format!("{}%", trim(r * 100.0, 2)))
}

/// A measured value, to four decimals at most.
fn number(v: &Value) -> String {
    v.as_f64().map_or_else(|| "-".to_string(), |n| trim(n, 4))
}

/// `n` with at most `decimals` decimals, trailing zeros dropped.
fn trim(n: f64, decimals: usize) -> String {
    let s = format!("{n:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_print_without_trailing_zeros() {
        assert_eq!(trim(10.0, 2), "10");
        assert_eq!(trim(12.5, 2), "12.5");
        assert_eq!(trim(0.012345, 4), "0.0123");
    }
}
