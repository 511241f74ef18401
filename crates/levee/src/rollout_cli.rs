//! `levee rollout`: the operator's command line for rollouts, a client of
//! the admin API (`/api/v1/rollouts`) over plain HTTP/1.1.
//!
//! The API and its token are found as `admin_client` says: `--admin`,
//! `--token-file`, `$LEVEE_ADMIN_TOKEN`, the config.
//!
//! Exit codes: 0 done; 1 the server refused the command (409) or the route
//! has no rollout (404), with its message on stderr; 2 a usage error
//! (clap's, or a token file or config that cannot be read); 3 the admin API
//! cannot be reached or answered something unexpected (401 included).

use crate::admin_client::{self, encode, ClientError, Target};
use bytes::Bytes;
use http::{Method, StatusCode};
use serde_json::Value;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// How long a whole exchange may take (`undo` rebuilds the route).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Decisions the detailed status shows.
const LAST_DECISIONS: usize = 5;

/// The exit code when the server refused the command or knows no such
/// rollout.
const EXIT_REFUSED: u8 = 1;
/// The exit code for usage errors (clap's own).
const EXIT_USAGE: u8 = 2;
/// The exit code when the admin API cannot be reached or answered
/// something unexpected.
const EXIT_UNREACHABLE: u8 = 3;

/// Where the admin API is and how to authenticate to it; shared by every
/// `levee rollout` subcommand.
#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    #[command(subcommand)]
    action: Action,
    /// The admin API [default: the config's `[admin] listen`, else
    /// http://127.0.0.1:9901].
    #[arg(long, global = true, value_name = "URL")]
    admin: Option<String>,
    /// Read the admin token from FILE [default: $LEVEE_ADMIN_TOKEN, else
    /// the config's `[admin] token`].
    #[arg(long, global = true, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// The config file to find the admin API and token in [default:
    /// levee.toml, levee.yaml or levee.yml in the working directory, else
    /// $LEVEE_CONFIG].
    #[arg(short, long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
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

/// Why `levee rollout` stopped; each becomes a message on stderr and an
/// exit code.
#[derive(Debug)]
enum Failure {
    /// The server refused (409) or has no such rollout (404).
    Refused(String),
    /// Bad arguments, token file or config.
    Usage(String),
    /// The admin API cannot be reached or answered something unexpected.
    Unreachable(String),
}

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Self {
        match e {
            ClientError::Usage(m) => Failure::Usage(m),
            ClientError::Unreachable(m) => Failure::Unreachable(m),
        }
    }
}

impl Failure {
    fn exit(self) -> ExitCode {
        let (code, message) = match self {
            Failure::Refused(m) => (EXIT_REFUSED, m),
            Failure::Usage(m) => (EXIT_USAGE, m),
            Failure::Unreachable(m) => (EXIT_UNREACHABLE, m),
        };
        eprintln!("error: {message}");
        ExitCode::from(code)
    }
}

/// Runs `levee rollout ...` and gives the exit code.
pub(crate) fn main(args: Args) -> ExitCode {
    let target = match admin_client::target(
        args.admin.as_deref(),
        args.token_file.as_deref(),
        args.config.as_deref(),
    ) {
        Ok(t) => t,
        Err(e) => return Failure::from(e).exit(),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return Failure::Unreachable(format!("starting the async runtime: {e}")).exit(),
    };
    match runtime.block_on(act(&target, &args)) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(f) => f.exit(),
    }
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
        let mut text = String::from_utf8_lossy(&body).into_owned();
        if !text.ends_with('\n') {
            text.push('\n');
        }
        return Ok(text);
    }
    let value: Value = serde_json::from_slice(&body).map_err(|_| {
        Failure::Unreachable(format!(
            "the admin API at {} answered something that is not JSON",
            target.shown
        ))
    })?;
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
    judge(target, status, body)
}

/// What an answer means for the exit code.
fn judge(target: &Target, status: StatusCode, body: Bytes) -> Result<Bytes, Failure> {
    let message = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v["message"].as_str().map(str::to_string));
    match status {
        StatusCode::OK => Ok(body),
        StatusCode::CONFLICT => Err(Failure::Refused(
            message.unwrap_or_else(|| "the command does not apply now".into()),
        )),
        StatusCode::NOT_FOUND => match message {
            Some(m) if m != "no such admin endpoint" => Err(Failure::Refused(m)),
            _ => Err(Failure::Unreachable(format!(
                "the admin API at {} has no rollout endpoints (is it an older Levee?)",
                target.shown
            ))),
        },
        StatusCode::UNAUTHORIZED => Err(Failure::Unreachable(admin_client::unauthorized(target))),
        other => Err(Failure::Unreachable(format!(
            "the admin API at {} answered {other}{}",
            target.shown,
            message.map(|m| format!(": {m}")).unwrap_or_default()
        ))),
    }
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

/// Rows as columns padded to their widest cell, each line after `indent`.
fn table<const N: usize>(rows: &[[String; N]], indent: &str) -> String {
    let mut widths = [0usize; N];
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
        let mut line = indent.to_string();
        for (i, (cell, w)) in row.iter().zip(widths).enumerate() {
            line.push_str(cell);
            if i + 1 < N {
                line.push_str(&" ".repeat(w - cell.chars().count() + 2));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// A string value, or `-`.
fn text(v: &Value) -> String {
    v.as_str().map_or_else(|| "-".to_string(), str::to_string)
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
