//! `levee jobs`: the operator's command line for async routes' queues and
//! dead letters, a client of the admin API (`/api/v1/jobs`): list the
//! queues or one route's jobs, show a job with its last error and result,
//! retry dead jobs, purge a route's dead letters.
//!
//! The API and its token are found as `admin_client` says: `--admin`,
//! `--token-file`, `$LEVEE_ADMIN_TOKEN`, the config.
//!
//! Exit codes (`admin_client`'s): 0 done; 1 the server refused (404: no
//! such route or job; 409: the job is not dead), with its message on
//! stderr; 2 a usage error; 3 the admin API cannot be reached or answered
//! something unexpected.

use crate::admin_client::{self, json_text, parse_json, table, text, ConnectArgs, Failure, Target};
use http::Method;
use serde_json::Value;
use std::process::ExitCode;
use std::time::Duration;

const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// `levee jobs ...`.
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
    /// Every async route's queue (depth, lag, dead letters); with a route,
    /// its jobs, oldest first.
    List {
        /// An async route: list its jobs.
        route: Option<String>,
        /// Only jobs in this state.
        #[arg(long, value_parser = ["queued", "delivering", "done", "dead"])]
        status: Option<String>,
        /// Jobs listed at most (1 to 1000).
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// One job: its state, attempts, last error and result.
    Show {
        /// The job's route.
        route: String,
        /// The job's id.
        id: String,
    },
    /// Queue dead jobs again with their attempts reset. Exits 1 if any is
    /// not dead (the others are retried).
    Retry {
        /// The jobs' route.
        route: String,
        /// The jobs' ids.
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Remove every dead job of a route (their results and errors too).
    Purge {
        /// The route.
        route: String,
    },
}

/// Runs `levee jobs ...` and gives the exit code.
pub(crate) fn main(args: Args) -> ExitCode {
    let args = &args;
    admin_client::run_command(
        &args.connect,
        |target| async move { act(&target, args).await },
    )
}

async fn call(
    target: &Target,
    method: Method,
    path: &str,
    what: &str,
) -> Result<bytes::Bytes, Failure> {
    let (status, answer) = admin_client::send(target, method, path, None, REQUEST_TIMEOUT).await?;
    admin_client::judge(target, status, answer, what)
}

async fn act(target: &Target, args: &Args) -> Result<String, Failure> {
    let enc = admin_client::encode;
    match &args.action {
        Action::List {
            route: None,
            status: _,
            limit: _,
        } => {
            let answer = call(target, Method::GET, "/api/v1/jobs", "jobs").await?;
            if args.json {
                return Ok(json_text(&answer));
            }
            Ok(render_queues(&parse_json(target, &answer)?))
        }
        Action::List {
            route: Some(route),
            status,
            limit,
        } => {
            let mut path = format!("/api/v1/jobs/{}?limit={limit}", enc(route));
            if let Some(s) = status {
                path.push_str(&format!("&status={s}"));
            }
            let answer = call(target, Method::GET, &path, "route").await?;
            if args.json {
                return Ok(json_text(&answer));
            }
            Ok(render_jobs(&parse_json(target, &answer)?))
        }
        Action::Show { route, id } => {
            let path = format!("/api/v1/jobs/{}/{}", enc(route), enc(id));
            let answer = call(target, Method::GET, &path, "job").await?;
            if args.json {
                return Ok(json_text(&answer));
            }
            Ok(render_job(&parse_json(target, &answer)?))
        }
        Action::Retry { route, ids } => {
            let mut out = String::new();
            let mut refused = None;
            for id in ids {
                let path = format!("/api/v1/jobs/{}/{}/retry", enc(route), enc(id));
                match call(target, Method::POST, &path, "job").await {
                    Ok(answer) if args.json => out.push_str(&json_text(&answer)),
                    Ok(_) => out.push_str(&format!("job {id} queued again\n")),
                    // Try the others; report the first refusal at the end.
                    Err(Failure::Refused(message)) => {
                        refused.get_or_insert(Failure::Refused(message));
                    }
                    Err(other) => return Err(other),
                }
            }
            match refused {
                Some(failure) if out.is_empty() => Err(failure),
                Some(failure) => {
                    print!("{out}");
                    Err(failure)
                }
                None => Ok(out),
            }
        }
        Action::Purge { route } => {
            let path = format!("/api/v1/jobs/{}/purge", enc(route));
            let answer = call(target, Method::POST, &path, "route").await?;
            if args.json {
                return Ok(json_text(&answer));
            }
            let v = parse_json(target, &answer)?;
            Ok(format!(
                "{} dead job(s) of route {route} purged\n",
                v["purged"].as_u64().unwrap_or(0)
            ))
        }
    }
}

/// Seconds as `850ms`, `12s`, `3m 5s`; `-` when absent.
fn age(v: &Value) -> String {
    let Some(s) = v.as_f64() else {
        return "-".into();
    };
    if s < 1.0 {
        return format!("{}ms", (s * 1000.0).round());
    }
    let s = s.round() as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {}s", s / 60, s % 60),
        _ => format!("{}h {}m", s / 3600, s / 60 % 60),
    }
}

fn count(v: &Value) -> String {
    v.as_u64().map_or_else(|| "-".into(), |n| n.to_string())
}

fn render_queues(v: &Value) -> String {
    let empty = Vec::new();
    let routes = v["routes"].as_array().unwrap_or(&empty);
    if routes.is_empty() {
        return "no async routes\n".into();
    }
    let mut rows = vec![[
        "ROUTE".to_string(),
        "QUEUED".into(),
        "DELIVERING".into(),
        "DEAD".into(),
        "DONE".into(),
        "OLDEST".into(),
    ]];
    for r in routes {
        rows.push([
            text(&r["route"]),
            count(&r["queued"]),
            count(&r["delivering"]),
            count(&r["dead"]),
            count(&r["done"]),
            age(&r["oldest_undelivered_seconds"]),
        ]);
    }
    table(&rows, "")
}

fn render_jobs(v: &Value) -> String {
    let empty = Vec::new();
    let jobs = v["jobs"].as_array().unwrap_or(&empty);
    if jobs.is_empty() {
        return "no jobs\n".into();
    }
    let mut rows = vec![[
        "ID".to_string(),
        "TENANT".into(),
        "STATUS".into(),
        "ATTEMPTS".into(),
        "REQUEST".into(),
        "LAST ERROR".into(),
    ]];
    for j in jobs {
        rows.push([
            text(&j["id"]),
            text(&j["tenant"]),
            text(&j["status"]),
            count(&j["attempts"]),
            format!("{} {}", text(&j["method"]), text(&j["path"])),
            j["last_error"].as_str().unwrap_or("").to_string(),
        ]);
    }
    table(&rows, "")
}

fn render_job(j: &Value) -> String {
    let mut out = String::new();
    let mut field = |name: &str, value: String| {
        out.push_str(&format!("{:<12} {value}\n", format!("{name}:")));
    };
    field("job", text(&j["id"]));
    field("tenant", text(&j["tenant"]));
    field("status", text(&j["status"]));
    field(
        "request",
        format!("{} {}", text(&j["method"]), text(&j["path"])),
    );
    field("attempts", count(&j["attempts"]));
    field("accepted", count(&j["accepted_at_ms"]));
    field("finished", count(&j["finished_at_ms"]));
    field("last error", text(&j["last_error"]));
    if let Some(r) = j["result"].as_object() {
        field(
            "result",
            format!(
                "{} ({} bytes{})",
                count(&r["status"]),
                count(&r["body_bytes"]),
                if r["truncated"].as_bool() == Some(true) {
                    ", cut"
                } else {
                    ""
                }
            ),
        );
    }
    out
}
