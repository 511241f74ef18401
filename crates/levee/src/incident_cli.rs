//! `levee incident`: the operator's command line for incidents, a client
//! of the admin API (`/api/v1/incidents`) over plain HTTP/1.1: list them,
//! show one with its timeline, acknowledge, add a note, resolve.
//!
//! The API and its token are found as `admin_client` says: `--admin`,
//! `--token-file`, `$LEVEE_ADMIN_TOKEN`, the config. Actions are signed
//! `--by NAME`, else `$USER`.
//!
//! Exit codes (`admin_client`'s): 0 done; 1 the server refused (409: the
//! incident is already acknowledged or resolved, or has all the notes it
//! keeps; 404: no such incident), with its message on stderr; 2 a usage
//! error (clap's, no `--by` and no `$USER`, a token file or config that
//! cannot be read, or input the server calls invalid); 3 the admin API
//! cannot be reached or answered something unexpected (401 and 503
//! included).

use crate::admin_client::{self, json_text, parse_json, table, text, ConnectArgs, Failure, Target};
use http::Method;
use serde_json::{json, Value};
use std::process::ExitCode;
use std::time::Duration;

/// How long a whole exchange may take (an action waits for the store).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// `levee incident ...`.
#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    #[command(subcommand)]
    action: Action,
    #[command(flatten)]
    connect: ConnectArgs,
    /// Who is acting, as the incident's log will show it [default: $USER].
    #[arg(long, global = true, value_name = "NAME")]
    by: Option<String>,
    /// Print the admin API's JSON answer unchanged, for scripts.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(clap::Subcommand, Debug)]
enum Action {
    /// Every incident kept, newest first, with MTTD, MTTA and MTTR.
    List,
    /// One incident: its times, who acknowledged and resolved it, notes,
    /// runbook, timeline and the deploys around it.
    Show {
        /// The incident's id.
        id: u64,
    },
    /// Take the incident: stops its escalation. Exits 1 when someone
    /// already did.
    Ack {
        /// The incident's id.
        id: u64,
    },
    /// Add a note to the incident's log (also after it is resolved).
    Note {
        /// The incident's id.
        id: u64,
        /// The note.
        message: String,
    },
    /// Close the incident for operators (its alert may still fire): stops
    /// its escalation. Exits 1 when it is resolved already.
    Resolve {
        /// The incident's id.
        id: u64,
        /// What was done, or why it is over.
        #[arg(long, short, value_name = "M")]
        message: Option<String>,
    },
}

/// Runs `levee incident ...` and gives the exit code.
pub(crate) fn main(args: Args) -> ExitCode {
    let args = &args;
    admin_client::run_command(
        &args.connect,
        |target| async move { act(&target, args).await },
    )
}

/// Who acts: `--by`, else `$USER`.
fn actor(args: &Args) -> Result<String, Failure> {
    args.by
        .clone()
        .or_else(|| std::env::var("USER").ok())
        .filter(|by| !by.trim().is_empty())
        .ok_or_else(|| Failure::Usage("say who is acting with --by NAME ($USER is not set)".into()))
}

/// Carries out the action; the text to print on success.
async fn act(target: &Target, args: &Args) -> Result<String, Failure> {
    let (method, path, body) = match &args.action {
        Action::List => (Method::GET, "/api/v1/incidents".to_string(), None),
        Action::Show { id } => (Method::GET, format!("/api/v1/incidents/{id}"), None),
        Action::Ack { id } => (
            Method::POST,
            format!("/api/v1/incidents/{id}/ack"),
            Some(json!({ "by": actor(args)? })),
        ),
        Action::Note { id, message } => (
            Method::POST,
            format!("/api/v1/incidents/{id}/note"),
            Some(json!({ "by": actor(args)?, "message": message })),
        ),
        Action::Resolve { id, message } => (
            Method::POST,
            format!("/api/v1/incidents/{id}/resolve"),
            Some(json!({ "by": actor(args)?, "message": message })),
        ),
    };
    let (status, answer) = admin_client::send(
        target,
        method,
        &path,
        body.map(|b| b.to_string()),
        REQUEST_TIMEOUT,
    )
    .await?;
    let answer = admin_client::judge(target, status, answer, "incident")?;
    if args.json {
        return Ok(json_text(&answer));
    }
    let value = parse_json(target, &answer)?;
    Ok(match &args.action {
        Action::List => render_list(&value),
        Action::Show { .. } => render_detail(&value),
        Action::Ack { id } => format!(
            "incident {id} acknowledged by {}; its escalations stop\n",
            text(&value["acknowledged"]["by"])
        ),
        Action::Note { id, .. } => format!(
            "note added to incident {id} ({} in its log)\n",
            value["notes"].as_array().map_or(0, Vec::len)
        ),
        Action::Resolve { id, .. } => format!(
            "incident {id} resolved by {}{}\n",
            text(&value["resolved_by"]["by"]),
            if value["resolve"].is_null() {
                "; its alert still fires, and a new firing opens a new incident"
            } else {
                ""
            }
        ),
    })
}

/// `levee incident list`: one line per incident, then the distributions.
fn render_list(value: &Value) -> String {
    let empty = Vec::new();
    let incidents = value["incidents"].as_array().unwrap_or(&empty);
    if incidents.is_empty() {
        return "no incidents\n".to_string();
    }
    let mut rows = vec![[
        "ID".to_string(),
        "SLO".into(),
        "STATUS".into(),
        "SIGNAL".into(),
        "DETECTED".into(),
        "TTD".into(),
        "ACKNOWLEDGED BY".into(),
        "TTA".into(),
    ]];
    for i in incidents {
        rows.push([
            i["id"]
                .as_u64()
                .map_or_else(|| "-".into(), |id| id.to_string()),
            text(&i["slo"]),
            text(&i["workflow"]),
            text(&i["state"]),
            text(&i["detect"]),
            seconds(&i["time_to_detect_seconds"]),
            text(&i["acknowledged"]["by"]),
            seconds(&i["time_to_acknowledge_seconds"]),
        ]);
    }
    let mut out = table(&rows, "");
    out.push('\n');
    for (name, key) in [("MTTD", "mttd"), ("MTTA", "mtta"), ("MTTR", "mttr")] {
        out.push_str(&format!("{name}: {}\n", distribution(&value[key])));
    }
    out
}

/// `mean 1m 5s, median 30s, p90 2m, max 5m over 4 incidents`, or `-`.
fn distribution(d: &Value) -> String {
    match d["count"].as_u64() {
        Some(n) => format!(
            "mean {}, median {}, p90 {}, max {} over {n} incident{}",
            seconds(&d["mean_seconds"]),
            seconds(&d["median_seconds"]),
            seconds(&d["p90_seconds"]),
            seconds(&d["max_seconds"]),
            if n == 1 { "" } else { "s" }
        ),
        None => "-".into(),
    }
}

/// `levee incident show ID`: everything about one incident.
fn render_detail(i: &Value) -> String {
    let mut out = String::new();
    let mut field = |name: &str, value: String| {
        out.push_str(&format!("{:<12} {value}\n", format!("{name}:")));
    };
    field("incident", i["id"].to_string());
    field("slo", text(&i["slo"]));
    field(
        "status",
        format!("{} (signal: {})", text(&i["workflow"]), text(&i["state"])),
    );
    field("runbook", text(&i["runbook"]));
    if let Some(labels) = i["labels"].as_object().filter(|l| !l.is_empty()) {
        let pairs: Vec<String> = labels
            .iter()
            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
            .collect();
        field("labels", pairs.join(", "));
    }
    field("started", text(&i["start"]));
    field(
        "detected",
        format!(
            "{} ({} after the start)",
            text(&i["detect"]),
            seconds(&i["time_to_detect_seconds"])
        ),
    );
    field(
        "ack",
        match i["acknowledged"].as_object() {
            Some(a) => format!(
                "by {} at {} ({} after detection)",
                text(&a["by"]),
                text(&a["at"]),
                seconds(&i["time_to_acknowledge_seconds"])
            ),
            None => "-".into(),
        },
    );
    field(
        "recovered",
        match i["recover"].as_str() {
            Some(at) => format!(
                "{at} ({} after the start)",
                seconds(&i["time_to_recover_seconds"])
            ),
            None => "-".into(),
        },
    );
    field("alert ended", text(&i["resolve"]));
    field(
        "resolved",
        match i["resolved_by"].as_object() {
            Some(r) => format!("by {} at {}", text(&r["by"]), text(&r["at"])),
            None => "-".into(),
        },
    );
    field(
        "budget",
        format!(
            "{} bad events, {} of the error budget",
            i["bad_events"].as_u64().unwrap_or(0),
            i["budget_spent_ratio"]
                .as_f64()
                .map_or_else(|| "-".into(), |r| format!("{}%", trim(r * 100.0))),
        ),
    );
    let empty = Vec::new();
    out.push_str("timeline:\n");
    let mut rows = vec![[
        "AT".to_string(),
        "EVENT".into(),
        "BY".into(),
        "MESSAGE".into(),
    ]];
    for e in i["timeline"].as_array().unwrap_or(&empty) {
        rows.push([
            text(&e["at"]),
            text(&e["event"]),
            e["by"].as_str().unwrap_or_default().to_string(),
            // One line per event: a note's later lines follow `…`.
            e["message"]
                .as_str()
                .map(|m| match m.split_once('\n') {
                    Some((first, _)) => format!("{first} …"),
                    None => m.to_string(),
                })
                .unwrap_or_default(),
        ]);
    }
    out.push_str(&table(&rows, "  "));
    let deploys = i["deploys"].as_array().unwrap_or(&empty);
    if deploys.is_empty() {
        out.push_str("deploys:      none around it\n");
    } else {
        out.push_str("deploys:\n");
        let mut rows = vec![[
            "ROUTE".to_string(),
            "FROM → TO".into(),
            "PHASE".into(),
            "STARTED".into(),
        ]];
        for d in deploys {
            rows.push([
                text(&d["route"]),
                format!("{} → {}", text(&d["from"]), text(&d["to"])),
                text(&d["phase"]),
                text(&d["started"]),
            ]);
        }
        out.push_str(&table(&rows, "  "));
    }
    out
}

/// Seconds as `45s`, `2m 5s`, `1h 3m`, `2d 4h`; `-` when absent.
fn seconds(v: &Value) -> String {
    let Some(secs) = v.as_f64() else {
        return "-".into();
    };
    if secs < 10.0 && secs.fract() != 0.0 {
        return format!("{}s", trim(secs));
    }
    let s = secs.round() as u64;
    let (d, h, m, sec) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{sec}s"),
        (0, 0, _) => format!("{m}m {sec}s"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

/// `n` with at most two decimals, trailing zeros dropped.
fn trim(n: f64) -> String {
    let s = format!("{n:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_a_person_says_them() {
        assert_eq!(seconds(&json!(7.0)), "7s");
        assert_eq!(seconds(&json!(1.5)), "1.5s");
        assert_eq!(seconds(&json!(125.0)), "2m 5s");
        assert_eq!(seconds(&json!(3_780.0)), "1h 3m");
        assert_eq!(seconds(&json!(187_200.0)), "2d 4h");
        assert_eq!(seconds(&Value::Null), "-");
    }

    #[test]
    fn distributions_name_their_count() {
        let d = json!({"count": 1, "mean_seconds": 7.0, "median_seconds": 7.0, "p90_seconds": 7.0, "max_seconds": 7.0});
        assert_eq!(
            distribution(&d),
            "mean 7s, median 7s, p90 7s, max 7s over 1 incident"
        );
        assert_eq!(distribution(&Value::Null), "-");
    }
}
