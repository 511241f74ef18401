//! `levee chaos run EXPERIMENT`: runs a chaos experiment against a running
//! Levee through its admin API. The decisions are
//! `levee_control::chaos::Engine`'s; this module does the I/O around them:
//! each second `POST /api/v1/slos/evaluate` (so the SLOs count the last
//! second), `GET /api/v1/slos` and the probes; faults set with
//! `POST /api/v1/faults` (expiring a little after their planned end, so a
//! runner that dies leaves nothing behind) and removed with `DELETE`;
//! rollbacks at the end, whatever happened. Ctrl-C removes the faults and
//! runs the rollbacks before exiting.
//!
//! The admin API and its token are found as `levee rollout` finds them
//! (`admin_client`).
//!
//! Exit codes: 0 the hypothesis held; 1 it deviated after the method; 2 a
//! usage error (clap's, or a token file or config that cannot be read); 3
//! aborted during the method (hypothesis broken or chaos budget spent); 4
//! failed to run (invalid experiment file, target unreachable, a fault
//! refused, or the hypothesis already broken before the method); 130
//! interrupted.

use crate::admin_client::{self, ClientError, Target};
use bytes::Bytes;
use http::{Method, StatusCode};
use levee_config::experiment::{load_experiment, Experiment};
use levee_control::chaos::{
    percent, Action, Engine, Entry, Event, Observation, Outcome, Phase, ProbeResult, SloSnapshot,
};
use levee_core::time;
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// How long one admin API call may take.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a probe without `max_latency` may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a rollback call may take.
const ROLLBACK_TIMEOUT: Duration = Duration::from_secs(10);
/// The exit code for usage errors (clap's own).
const EXIT_USAGE: u8 = 2;

/// `levee chaos ...`.
#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    #[command(subcommand)]
    action: ChaosAction,
}

#[derive(clap::Subcommand, Debug)]
enum ChaosAction {
    /// Run an experiment (TOML or YAML) against a running Levee: check the
    /// hypothesis, set the method's faults on their timeline, check again,
    /// run the rollbacks. Exits 0 held, 1 deviated, 3 aborted, 4 failed to
    /// run.
    Run(RunArgs),
}

#[derive(clap::Args, Debug)]
struct RunArgs {
    /// The experiment file (*.toml, *.yaml or *.yml).
    experiment: PathBuf,
    /// The admin API [default: the config's `[admin] listen`, else
    /// http://127.0.0.1:9901].
    #[arg(long, value_name = "URL")]
    admin: Option<String>,
    /// Read the admin token from FILE [default: $LEVEE_ADMIN_TOKEN, else
    /// the config's `[admin] token`].
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// The config file to find the admin API and token in [default:
    /// discovery, as `levee run`].
    #[arg(short, long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Write the journal (every observation, fault change and decision) to
    /// FILE as JSON.
    #[arg(long, value_name = "FILE")]
    journal: Option<PathBuf>,
    /// Print the journal as JSON on stdout (the summary goes to stderr).
    #[arg(long)]
    json: bool,
}

/// Runs `levee chaos ...` and gives the exit code.
pub(crate) fn main(args: Args) -> ExitCode {
    let ChaosAction::Run(args) = args.action;
    let experiment = match load_experiment(&args.experiment) {
        Ok(e) => e,
        Err(diags) => {
            eprintln!("{diags}");
            return ExitCode::from(Outcome::FailedToRun.exit_code());
        }
    };
    let target = match admin_client::target(
        args.admin.as_deref(),
        args.token_file.as_deref(),
        args.config.as_deref(),
    ) {
        Ok(t) => Arc::new(t),
        Err(e) => {
            eprintln!("error: {}", e.message());
            return ExitCode::from(match e {
                ClientError::Usage(_) => EXIT_USAGE,
                ClientError::Unreachable(_) => Outcome::FailedToRun.exit_code(),
            });
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::from(Outcome::FailedToRun.exit_code());
        }
    };
    let (engine, load) = runtime.block_on(run(experiment, target.clone()));
    let (outcome, _) = engine.outcome().unwrap_or((Outcome::FailedToRun, ""));
    let mut journal = journal_json(&engine, &args, &target);
    journal["load"] = load
        .iter()
        .map(|l| {
            json!({
                "url": l.url,
                "rate": l.rate,
                "sent": l.sent,
                "failed": l.failed,
                "achieved_rate": l.achieved_rate,
                "p99_ms": l.p99_ms,
                "stopped_early": l.stopped_early,
                "error": l.error,
            })
        })
        .collect();
    let mut summary = summary(&engine, args.journal.as_ref());
    for l in &load {
        summary.push_str(&format!(
            "load {}: {} sent at {:.1}/s of {:.1}/s, {} failed, p99 {:.1} ms{}\n",
            l.url,
            l.sent,
            l.achieved_rate,
            l.rate,
            l.failed,
            l.p99_ms,
            if l.stopped_early {
                " (stopped early)"
            } else {
                ""
            }
        ));
    }
    if outcome == Outcome::FailedToRun {
        eprintln!("error: {}", engine.outcome().map_or("", |o| o.1));
    }
    if args.json {
        eprint!("{summary}");
        println!(
            "{}",
            serde_json::to_string_pretty(&journal).unwrap_or_default()
        );
    } else {
        print!("{summary}");
    }
    if let Some(path) = &args.journal {
        let text = serde_json::to_string_pretty(&journal).unwrap_or_default() + "\n";
        if let Err(e) = std::fs::write(path, text) {
            eprintln!("error: cannot write the journal to {}: {e}", path.display());
        }
    }
    ExitCode::from(outcome.exit_code())
}

/// Time since the run began.
struct Clock(time::Instant);

impl Clock {
    fn now(&self) -> Duration {
        time::now().saturating_duration_since(self.0)
    }
}

/// What one `[[load]]` entry sent, for the journal and the summary.
#[derive(Debug, Clone)]
struct LoadReport {
    url: String,
    rate: f64,
    sent: u64,
    failed: u64,
    achieved_rate: f64,
    p99_ms: f64,
    stopped_early: bool,
    error: Option<String>,
}

/// Starts the experiment's load, each entry at its offset into the method;
/// `stop` ends them all early (an abort, the end of the method).
fn start_load(
    experiment: &Experiment,
    stop: &tokio::sync::watch::Sender<bool>,
) -> Vec<tokio::task::JoinHandle<LoadReport>> {
    use levee_load::run::{ClientOptions, Plan, RequestSpec};
    use levee_load::schedule::{Model, Schedule};
    use levee_load::threshold::Evaluator;
    experiment
        .load
        .iter()
        .map(|step| {
            let step = step.clone();
            let mut stopped = stop.subscribe();
            tokio::spawn(async move {
                let mut report = LoadReport {
                    url: step.url.clone(),
                    rate: step.rate,
                    sent: 0,
                    failed: 0,
                    achieved_rate: 0.0,
                    p99_ms: 0.0,
                    stopped_early: false,
                    error: None,
                };
                tokio::select! {
                    _ = tokio::time::sleep(step.at) => {}
                    _ = stopped.wait_for(|s| *s) => return report,
                }
                let plan = (|| -> Result<Plan, String> {
                    Ok(Plan {
                        requests: vec![RequestSpec {
                            method: Method::GET,
                            uri: step.url.parse().map_err(|_| "not a URL".to_string())?,
                            headers: Default::default(),
                            body: Bytes::new(),
                            weight: 1,
                        }],
                        model: Model::Open(
                            Schedule::constant(step.rate, step.duration)
                                .map_err(|e| e.to_string())?,
                        ),
                        max_in_flight: levee_load::run::DEFAULT_MAX_IN_FLIGHT,
                        client: ClientOptions::default(),
                        evaluator: Evaluator::new(Vec::new(), Duration::from_secs(1)),
                    })
                })();
                let plan = match plan {
                    Ok(p) => p,
                    Err(e) => {
                        report.error = Some(e);
                        return report;
                    }
                };
                let interrupt = async move {
                    let _ = stopped.wait_for(|s| *s).await;
                };
                match levee_load::run::run(plan, |_| {}, interrupt).await {
                    Ok(r) => {
                        report.sent = r.recorder.sent_count();
                        report.failed = r.recorder.total().failed;
                        report.achieved_rate = levee_load::report::achieved_rate(&r);
                        report.p99_ms = r.recorder.total().quantile_ms(0.99);
                        report.stopped_early = r.interrupted;
                    }
                    Err(e) => report.error = Some(e.to_string()),
                }
                report
            })
        })
        .collect()
}

/// Runs the experiment to its end (rollbacks included), with its load.
async fn run(experiment: Experiment, target: Arc<Target>) -> (Engine, Vec<LoadReport>) {
    let (stop_load, _) = tokio::sync::watch::channel(false);
    let mut load = Vec::new();
    let mut load_started = false;
    let clock = Clock(time::now());
    let mut engine = Engine::new(experiment, time::unix_nanos());
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    while let Some(wake) = engine.next_wake() {
        let step = async {
            tokio::time::sleep_until(clock.0 + wake).await;
            let now = clock.now();
            if engine.wants_observation(now) {
                Some(observe(&target, engine.experiment()).await)
            } else {
                None
            }
        };
        let observed = tokio::select! {
            o = step => o,
            _ = &mut ctrl_c => {
                let actions = engine.interrupted(clock.now());
                perform(&mut engine, &clock, &target, actions).await;
                break;
            }
        };
        let actions = match observed {
            Some(Ok(o)) => engine.advance(clock.now(), Some(o)),
            Some(Err(why)) => engine.unreachable(clock.now(), why),
            None => engine.advance(clock.now(), None),
        };
        // Faults are set, removed and rolled back even if Ctrl-C comes
        // now: stopping halfway would leave them behind.
        perform(&mut engine, &clock, &target, actions).await;
        match engine.phase() {
            Phase::Method if !load_started => {
                load_started = true;
                load = start_load(engine.experiment(), &stop_load);
            }
            Phase::Method | Phase::Steady => {}
            // The method is over (ended or aborted): the load stops too.
            _ => {
                let _ = stop_load.send(true);
            }
        }
    }
    let _ = stop_load.send(true);
    let mut reports = Vec::new();
    for task in load {
        if let Ok(r) = task.await {
            reports.push(r);
        }
    }
    (engine, reports)
}

/// One observation: SLOs evaluated now and read, then every probe.
async fn observe(target: &Target, experiment: &Experiment) -> Result<Observation, String> {
    if !experiment.hypothesis.slos.is_empty() {
        let (status, body) = admin(target, Method::POST, "/api/v1/slos/evaluate", None).await?;
        if status != StatusCode::NO_CONTENT {
            return Err(unexpected(target, status, &body, "/api/v1/slos/evaluate"));
        }
    }
    let (status, body) = admin(target, Method::GET, "/api/v1/slos", None).await?;
    if status != StatusCode::OK {
        return Err(unexpected(target, status, &body, "/api/v1/slos"));
    }
    let value: Value = serde_json::from_slice(&body)
        .map_err(|_| format!("{} answered something that is not JSON", target.shown))?;
    let slos = value["slos"]
        .as_array()
        .map(|list| list.iter().map(snapshot).collect())
        .unwrap_or_default();
    let mut probes = Vec::new();
    for probe in &experiment.hypothesis.probes {
        let timeout = probe
            .max_latency
            .map_or(PROBE_TIMEOUT, |m| m + Duration::from_millis(500));
        let began = time::now();
        let answer = call(
            &probe.url,
            &probe.method,
            None,
            timeout,
            &format!("probe {}", probe.name),
        )
        .await;
        let latency_ms = u64::try_from((time::now() - began).as_millis()).unwrap_or(u64::MAX);
        probes.push(match answer {
            Ok(status) => ProbeResult {
                name: probe.name.clone(),
                status: Some(status.as_u16()),
                latency_ms,
                error: None,
            },
            Err(e) => ProbeResult {
                name: probe.name.clone(),
                status: None,
                latency_ms,
                error: Some(e),
            },
        });
    }
    Ok(Observation { slos, probes })
}

/// One objective of `GET /api/v1/slos`.
fn snapshot(v: &Value) -> SloSnapshot {
    let page_firing = v["alerts"].as_array().is_some_and(|alerts| {
        alerts
            .iter()
            .any(|a| a["severity"] == "page" && a["state"] == "firing")
    });
    SloSnapshot {
        id: v["id"].as_str().unwrap_or_default().to_string(),
        slo: v["slo"].as_str().unwrap_or_default().to_string(),
        events: v["events"].as_u64().unwrap_or(0),
        bad_events: v["bad_events"].as_u64().unwrap_or(0),
        objective: v["objective"].as_f64().unwrap_or(1.0),
        remaining_ratio: v["budget"]["remaining_ratio"].as_f64(),
        page_firing,
    }
}

/// One admin API call; an error when it cannot be made or is refused
/// (401).
async fn admin(
    target: &Target,
    method: Method,
    path: &str,
    body: Option<String>,
) -> Result<(StatusCode, Bytes), String> {
    let (status, body) = admin_client::send(target, method, path, body, ADMIN_TIMEOUT)
        .await
        .map_err(|e| e.message().to_string())?;
    if status == StatusCode::UNAUTHORIZED {
        return Err(admin_client::unauthorized(target));
    }
    Ok((status, body))
}

fn unexpected(target: &Target, status: StatusCode, body: &[u8], path: &str) -> String {
    let message = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v["message"].as_str().map(str::to_string));
    let hint = if status == StatusCode::NOT_FOUND && path.ends_with("/evaluate") {
        " (is it a Levee without experiments?)"
    } else {
        ""
    };
    format!(
        "{} answered {status} to {path}{}{hint}",
        target.shown,
        message.map(|m| format!(": {m}")).unwrap_or_default()
    )
}

/// An HTTP call to any plain URL (a probe, a rollback): its status.
async fn call(
    url: &str,
    method: &str,
    body: Option<String>,
    timeout: Duration,
    label: &str,
) -> Result<StatusCode, String> {
    let (target, path) = admin_client::plain(url, label)?;
    let method = Method::from_bytes(method.as_bytes()).map_err(|e| e.to_string())?;
    admin_client::send(&target, method, &path, body, timeout)
        .await
        .map(|(status, _)| status)
        .map_err(|e| e.message().to_string())
}

/// Carries out the engine's actions and reports back, until none is left.
async fn perform(engine: &mut Engine, clock: &Clock, target: &Arc<Target>, actions: Vec<Action>) {
    let mut queue: VecDeque<Action> = actions.into();
    while let Some(action) = queue.pop_front() {
        match action {
            Action::SetFault { step, expires_in } => {
                let body = engine.experiment().method[step]
                    .runtime_fault_json(expires_in)
                    .to_string();
                let more = match admin(target, Method::POST, "/api/v1/faults", Some(body)).await {
                    Ok((StatusCode::CREATED, body)) => {
                        let id = serde_json::from_slice::<Value>(&body)
                            .ok()
                            .and_then(|v| v["id"].as_u64());
                        match id {
                            Some(id) => {
                                engine.fault_set(clock.now(), step, id, expires_in);
                                engine.leftovers()
                            }
                            None => engine.unreachable(
                                clock.now(),
                                "the answer to POST /api/v1/faults has no id".into(),
                            ),
                        }
                    }
                    Ok((status, body)) => {
                        engine.fault_refused(clock.now(), step, refusal(status, &body))
                    }
                    Err(why) => engine.unreachable(clock.now(), why),
                };
                queue.extend(more);
            }
            Action::RemoveFault { step, id } => {
                // Every removal waiting goes out at once (an abort removes
                // all faults together).
                let mut batch = vec![(step, id)];
                queue.retain(|a| match a {
                    Action::RemoveFault { step, id } => {
                        batch.push((*step, *id));
                        false
                    }
                    _ => true,
                });
                let why = match engine.outcome() {
                    None => "ended",
                    Some((Outcome::Aborted, _)) => "abort",
                    Some(_) => "stopped",
                };
                let mut tasks = tokio::task::JoinSet::new();
                for (step, id) in batch {
                    let target = target.clone();
                    tasks.spawn(async move {
                        let path = format!("/api/v1/faults/{id}");
                        let result = match admin(&target, Method::DELETE, &path, None).await {
                            Ok((StatusCode::OK, _)) => None,
                            // Gone already (expired, or a reload cleared it).
                            Ok((StatusCode::NOT_FOUND, _)) => None,
                            Ok((status, body)) => Some(refusal(status, &body)),
                            Err(why) => Some(why),
                        };
                        (step, id, result)
                    });
                }
                while let Some(done) = tasks.join_next().await {
                    if let Ok((step, id, error)) = done {
                        engine.fault_removed(clock.now(), step, id, why, error);
                    }
                }
            }
            Action::RunRollbacks => {
                let rollbacks = engine.experiment().rollbacks.clone();
                for (index, r) in rollbacks.iter().enumerate() {
                    let label = format!("rollback {index}");
                    let answer =
                        call(&r.url, &r.method, r.body.clone(), ROLLBACK_TIMEOUT, &label).await;
                    let (status, error) = match answer {
                        Ok(s) => (Some(s.as_u16()), None),
                        Err(e) => (None, Some(e)),
                    };
                    engine.rollback_done(clock.now(), index, status, error);
                }
                engine.rollbacks_finished(clock.now());
            }
        }
    }
}

/// The target's reason for refusing a fault: its located diagnostics, or
/// its message.
fn refusal(status: StatusCode, body: &[u8]) -> String {
    let v: Value = serde_json::from_slice(body).unwrap_or_default();
    let detail = match v["rendered"].as_array() {
        Some(lines) => lines
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join("; "),
        None => v["message"].as_str().unwrap_or("").to_string(),
    };
    format!("{status}: {detail}")
}

/// The journal as written to `--journal` and printed by `--json`.
fn journal_json(engine: &Engine, args: &RunArgs, target: &Target) -> Value {
    let (outcome, reason) = engine.outcome().unwrap_or((Outcome::FailedToRun, ""));
    let e = engine.experiment();
    json!({
        "title": e.title,
        "experiment": args.experiment.display().to_string(),
        "target": target.shown,
        "started_at": engine.journal().first().map(|x| x.at.clone()),
        "outcome": outcome,
        "exit_code": outcome.exit_code(),
        "reason": reason,
        "chaos_budget": e.hypothesis.chaos_budget,
        "budgets": engine.baselines(),
        "entries": engine.journal(),
    })
}

/// The human summary.
fn summary(engine: &Engine, journal: Option<&PathBuf>) -> String {
    let e = engine.experiment();
    let (outcome, reason) = engine.outcome().unwrap_or((Outcome::FailedToRun, ""));
    let mut out = format!(
        "experiment: {}\noutcome:    {} (exit {})\n  {reason}\n",
        e.title,
        outcome.as_str().replace('_', " "),
        outcome.exit_code()
    );
    if !engine.baselines().is_empty() {
        out.push_str(
            "error budgets (spent of what was left at the start, against the chaos budget):\n",
        );
        for b in engine.baselines() {
            out.push_str(&format!(
                "  {}: {} spent of {:.2} bad events left, chaos budget {}\n",
                b.id,
                percent(b.max_spent),
                b.budget_events,
                percent(e.hypothesis.chaos_budget)
            ));
        }
    }
    let fault_lines: Vec<String> = engine.journal().iter().filter_map(fault_line).collect();
    if !fault_lines.is_empty() {
        out.push_str("faults:\n");
        for l in fault_lines {
            out.push_str(&format!("  {l}\n"));
        }
    }
    for probe in &e.hypothesis.probes {
        let runs: Vec<&ProbeResult> = engine
            .journal()
            .iter()
            .filter_map(|x| match &x.event {
                Event::Observation { probes, .. } => probes.iter().find(|p| p.name == probe.name),
                _ => None,
            })
            .collect();
        let ok = runs
            .iter()
            .filter(|r| {
                r.status == Some(probe.status)
                    && probe
                        .max_latency
                        .is_none_or(|m| Duration::from_millis(r.latency_ms) <= m)
            })
            .count();
        let max = runs.iter().map(|r| r.latency_ms).max().unwrap_or(0);
        out.push_str(&format!(
            "probe {}: {ok} of {} passed, slowest {max}ms\n",
            probe.name,
            runs.len()
        ));
    }
    for x in engine.journal() {
        if let Event::Rollback {
            url, status, error, ..
        } = &x.event
        {
            let result = match (status, error) {
                (Some(s), _) => s.to_string(),
                (None, Some(e)) => format!("failed: {e}"),
                _ => "-".into(),
            };
            out.push_str(&format!("rollback {url}: {result}\n"));
        }
    }
    if let Some(path) = journal {
        out.push_str(&format!("journal: {}\n", path.display()));
    }
    out
}

/// A fault change as one summary line.
fn fault_line(x: &Entry) -> Option<String> {
    let at = format!("+{:.3}s", x.offset_ms as f64 / 1000.0);
    match &x.event {
        Event::FaultSet {
            target,
            id,
            expires_in_ms,
            ..
        } => Some(format!(
            "{at} set     {target} (id {id}, expires in {:.1}s)",
            *expires_in_ms as f64 / 1000.0
        )),
        Event::FaultRemoved {
            target,
            id,
            why,
            error,
            ..
        } => Some(format!(
            "{at} removed {target} (id {id}, {why}){}",
            error
                .as_ref()
                .map(|e| format!(": FAILED, it expires by itself: {e}"))
                .unwrap_or_default()
        )),
        Event::FaultRefused {
            target, message, ..
        } => Some(format!("{at} refused {target}: {message}")),
        _ => None,
    }
}
