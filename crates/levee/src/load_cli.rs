//! `levee load`: the load generator's command line, over `levee_load`.
//! Turns flags, a scenario file and a Levee config's SLOs into a plan,
//! runs it, prints the summary and writes `--out` files.
//!
//! Exit codes (k6's where k6 has one): 0 every threshold passed (or there
//! were none); 99 a threshold failed, or an `abortOnFail` one stopped the
//! run; 2 a usage or config error (clap's, a threshold, scenario or
//! `--slo` config that does not parse); 1 the run could not start (the
//! target refused a connection before the first request, the CA bundle
//! could not be read) or its results could not be written; 130 Ctrl-C
//! stopped it (the summary and `--out` files are still written).

use bytes::Bytes;
use levee_load::run::{ClientOptions, Plan, RequestSpec, DEFAULT_MAX_IN_FLIGHT};
use levee_load::schedule::{Model, Schedule};
use levee_load::threshold::{Evaluator, Threshold};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// A threshold failed.
const EXIT_THRESHOLD: u8 = 99;
/// Interrupted (Ctrl-C): 128 + SIGINT, as shells report it.
const EXIT_INTERRUPTED: u8 = 130;
/// A usage or config error.
const EXIT_USAGE: u8 = 2;
/// The run could not start, or its results could not be written.
const EXIT_START: u8 = 1;

/// How long sending lasts when nothing says.
const DEFAULT_DURATION: Duration = Duration::from_secs(30);
/// Requests per second when nothing says.
const DEFAULT_RATE: f64 = 10.0;
/// The largest `--max-in-flight` accepted.
const MAX_IN_FLIGHT_LIMIT: usize = 1_000_000;
/// How often progress is printed when stderr is not a terminal.
const PLAIN_PROGRESS_EVERY: u64 = 5;

fn duration(s: &str) -> Result<Duration, String> {
    levee_config::parse_duration(s)
}

/// `levee load URL ...`
#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// The target URL (http:// or https://); a scenario's paths are joined
    /// to it.
    url: String,
    /// Requests per second, sent on schedule whatever the answers take
    /// (open model) [default: 10]. With --stages: the rate the first stage
    /// ramps from [default: 0].
    #[arg(long)]
    rate: Option<f64>,
    /// How long to send [default: 30s].
    #[arg(long, value_parser = duration)]
    duration: Option<Duration>,
    /// Closed model: this many virtual users, each sending its next
    /// request when the last one is answered.
    #[arg(long, conflicts_with = "stages")]
    vus: Option<u32>,
    /// Ramping rate: RATE:DURATION stages, each a linear ramp to RATE
    /// (`100:10s,500:20s`).
    #[arg(long, value_name = "STAGES")]
    stages: Option<String>,
    /// A scenario (TOML or YAML): weighted requests and stages or virtual
    /// users.
    #[arg(long, value_name = "FILE")]
    scenario: Option<PathBuf>,
    /// A threshold in k6's language (`http_req_duration: p(99)<250`,
    /// `http_req_failed: rate<0.01, abortOnFail`). Repeatable.
    #[arg(long = "threshold", value_name = "EXPR")]
    thresholds: Vec<String>,
    /// Every window of this length (whole seconds) must pass the
    /// thresholds too, not only the whole run.
    #[arg(long, value_parser = duration, value_name = "DURATION")]
    threshold_window: Option<Duration>,
    /// Add thresholds from a Levee config's SLOs: each latency objective
    /// becomes `http_req_duration: p(OBJECTIVE)<THRESHOLD`, each
    /// availability objective `http_req_failed: rate<(1-OBJECTIVE)`.
    #[arg(long, value_name = "CONFIG")]
    slo: Option<PathBuf>,
    /// Write results: `json=FILE` (everything, with per-second series) or
    /// `junit=FILE` (one test case per threshold). Repeatable.
    #[arg(long = "out", value_name = "FORMAT=FILE")]
    outs: Vec<String>,
    /// HTTP/2 only: h2c with prior knowledge for http://, ALPN h2 for https://.
    #[arg(long)]
    http2: bool,
    /// Accept any TLS certificate (self-signed test servers).
    #[arg(long)]
    insecure: bool,
    /// A new connection for every request (`Connection: close`).
    #[arg(long)]
    no_keepalive: bool,
    /// A request header, `Name: value`. Repeatable; with --scenario, added
    /// to every request.
    #[arg(short = 'H', long = "header", value_name = "NAME: VALUE")]
    headers: Vec<String>,
    /// The request method [default: GET].
    #[arg(long, short = 'X')]
    method: Option<String>,
    /// Send this file as the request body.
    #[arg(long, value_name = "FILE")]
    body_file: Option<PathBuf>,
    /// Requests in flight at most; a request due while this many are in
    /// flight is dropped (not sent, counted).
    #[arg(long, default_value_t = DEFAULT_MAX_IN_FLIGHT)]
    max_in_flight: usize,
    /// How long one request may take, connecting included.
    #[arg(long, value_parser = duration, default_value = "30s")]
    timeout: Duration,
}

/// Where results go.
enum Out {
    Json(PathBuf),
    Junit(PathBuf),
}

/// Everything checked before running.
struct Prepared {
    plan: Plan,
    outs: Vec<Out>,
    notes: Vec<String>,
    target: String,
}

fn usage(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(EXIT_USAGE)
}

/// Runs `levee load` and gives the exit code.
pub(crate) fn main(args: Args) -> ExitCode {
    let prepared = match prepare(args) {
        Ok(p) => p,
        Err(message) => return usage(message),
    };
    // One worker per core this process may run on (taskset and cgroups
    // included): two threads pinned to one core only take turns.
    // On one core the single-threaded scheduler spares the work-stealing
    // bookkeeping (atomics, a second queue) on every wake-up.
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut builder = if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(threads);
        b
    };
    let runtime = match builder.thread_name("levee-load").enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::from(EXIT_START);
        }
    };
    let Prepared {
        plan,
        outs,
        notes,
        target,
    } = prepared;
    let what = match &plan.model {
        Model::Open(s) => format!(
            "{} requests over {:.1}s",
            s.len(),
            s.duration().as_secs_f64()
        ),
        Model::Closed { vus, duration } => {
            format!("{vus} virtual users for {:.1}s", duration.as_secs_f64())
        }
    };
    eprintln!("levee load: {what} against {target}");
    let run = async {
        // The handler is in place before the first request leaves, so a
        // Ctrl-C at any moment of the run stops it rather than killing the
        // process (`ctrl_c()` would only register when first polled).
        #[cfg(unix)]
        let interrupt = {
            let sigint = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt());
            async move {
                match sigint {
                    Ok(mut s) => {
                        s.recv().await;
                    }
                    // Without a handler, never interrupt.
                    Err(_) => std::future::pending::<()>().await,
                }
            }
        };
        #[cfg(not(unix))]
        let interrupt = async {
            if tokio::signal::ctrl_c().await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        levee_load::run::run(plan, progress_printer(), interrupt).await
    };
    let result = match runtime.block_on(run) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: the run could not start: {e}");
            return ExitCode::from(EXIT_START);
        }
    };
    if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        eprintln!(); // ends the progress line
    }
    print!("{}", levee_load::report::summary(&result, &notes));
    let mut code = if result.interrupted {
        ExitCode::from(EXIT_INTERRUPTED)
    } else if result.aborted_by.is_some() || result.verdicts.iter().any(|v| !v.passed) {
        ExitCode::from(EXIT_THRESHOLD)
    } else {
        ExitCode::SUCCESS
    };
    for out in outs {
        let (path, text) = match out {
            Out::Json(p) => {
                let doc = levee_load::report::json(&result);
                let text = serde_json::to_string_pretty(&doc).unwrap_or_default();
                (p, text)
            }
            Out::Junit(p) => (p, levee_load::report::junit(&result)),
        };
        if let Err(e) = std::fs::write(&path, text) {
            eprintln!("error: cannot write {}: {e}", path.display());
            code = ExitCode::from(EXIT_START);
        }
    }
    code
}

/// Progress on stderr: one line rewritten each second at a terminal, a
/// plain line every few seconds otherwise.
fn progress_printer() -> impl FnMut(&levee_load::run::Progress) + Send + 'static {
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
    move |p| {
        let line = levee_load::report::progress_line(p);
        if terminal {
            eprint!("\r\x1b[2K{line}");
        } else if p.elapsed.as_secs().is_multiple_of(PLAIN_PROGRESS_EVERY) {
            eprintln!("{line}");
        }
    }
}

fn prepare(args: Args) -> Result<Prepared, String> {
    let base: http::Uri = args
        .url
        .parse()
        .map_err(|e| format!("`{}` is not a URL: {e}", args.url))?;
    if !matches!(base.scheme_str(), Some("http" | "https")) || base.host().is_none() {
        return Err(format!(
            "`{}`: the URL must start with http:// or https:// and name a host",
            args.url
        ));
    }
    if !(1..=MAX_IN_FLIGHT_LIMIT).contains(&args.max_in_flight) {
        return Err(format!(
            "--max-in-flight must be from 1 to {MAX_IN_FLIGHT_LIMIT}"
        ));
    }
    let scenario = match &args.scenario {
        Some(p) => levee_load::scenario::load(p)?,
        None => Default::default(),
    };

    // Requests.
    let mut extra = http::HeaderMap::new();
    for h in &args.headers {
        let (name, value) = h
            .split_once(':')
            .ok_or_else(|| format!("-H `{h}`: expected `Name: value`"))?;
        let name = http::HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|_| format!("-H `{h}`: `{}` is not a header name", name.trim()))?;
        let value = http::HeaderValue::from_str(value.trim())
            .map_err(|_| format!("-H `{h}`: not a valid header value"))?;
        extra.append(name, value);
    }
    let mut requests = Vec::new();
    if scenario.requests.is_empty() {
        let method = match &args.method {
            None => http::Method::GET,
            Some(m) => http::Method::from_bytes(m.to_ascii_uppercase().as_bytes())
                .map_err(|_| format!("--method `{m}` is not an HTTP method"))?,
        };
        let body = match &args.body_file {
            None => Bytes::new(),
            Some(p) => Bytes::from(
                std::fs::read(p).map_err(|e| format!("--body-file {}: {e}", p.display()))?,
            ),
        };
        requests.push(RequestSpec {
            method,
            uri: base.clone(),
            headers: extra,
            body,
            weight: 1,
        });
    } else {
        if args.method.is_some() || args.body_file.is_some() {
            return Err(
                "--method and --body-file describe the single request; with a scenario's [[requests]] set them per request"
                    .into(),
            );
        }
        let prefix = args.url.trim_end_matches('/');
        for r in scenario.requests {
            let url = format!("{prefix}{}", r.path);
            let uri = url
                .parse()
                .map_err(|e| format!("scenario request `{}`: `{url}` is not a URL: {e}", r.path))?;
            let mut headers = extra.clone();
            for (k, v) in r.headers {
                headers.append(k, v);
            }
            requests.push(RequestSpec {
                method: r.method,
                uri,
                headers,
                body: r.body.map(Bytes::from).unwrap_or_default(),
                weight: r.weight,
            });
        }
    }

    // The model: virtual users, stages, or a constant rate.
    let duration = args.duration.or(scenario.duration);
    let vus = args.vus.or(scenario.vus);
    let stages = match &args.stages {
        Some(s) => {
            Some(levee_load::schedule::parse_stages(s).map_err(|e| format!("--stages: {e}"))?)
        }
        None => (!scenario.stages.is_empty()).then_some(scenario.stages),
    };
    let model = match (vus, stages) {
        (Some(_), _) if args.rate.is_some() => {
            return Err("--vus (closed model) and --rate (open model) cannot be combined".into())
        }
        (Some(0), _) => return Err("--vus must be at least 1".into()),
        (Some(vus), None) => Model::Closed {
            vus,
            duration: duration.unwrap_or(DEFAULT_DURATION),
        },
        (Some(_), Some(_)) => {
            return Err(
                "virtual users (closed model) and stages (open model) cannot be combined".into(),
            )
        }
        (None, Some(stages)) => {
            if args.duration.is_some() {
                return Err(
                    "--duration and stages cannot be combined: the stages say how long".into(),
                );
            }
            let start = args.rate.or(scenario.start_rate).unwrap_or(0.0);
            Model::Open(Schedule::ramping(start, &stages).map_err(|e| format!("stages: {e}"))?)
        }
        (None, None) => {
            let rate = args.rate.or(scenario.rate).unwrap_or(DEFAULT_RATE);
            let duration = duration.unwrap_or(DEFAULT_DURATION);
            Model::Open(Schedule::constant(rate, duration).map_err(|e| format!("--rate: {e}"))?)
        }
    };

    // Thresholds.
    let mut thresholds: Vec<Threshold> = Vec::new();
    for t in &args.thresholds {
        thresholds.push(levee_load::threshold::parse(t).map_err(|e| e.to_string())?);
    }
    let mut notes = Vec::new();
    if let Some(path) = &args.slo {
        let config =
            levee_config::load_file(path).map_err(|d| format!("--slo {}:\n{d}", path.display()))?;
        let from = levee_load::threshold::from_slos(&config);
        if from.is_empty() {
            notes.push(format!(
                "--slo {}: no SLO objective to turn into a threshold",
                path.display()
            ));
        }
        for (t, origin) in from {
            notes.push(format!(
                "threshold `{t}` from {origin} in {} (--slo)",
                path.display()
            ));
            thresholds.push(t);
        }
        notes.push(
            "http_req_failed counts every status of 400 or more and every request without an answer; Levee's availability SLIs count 5xx only"
                .into(),
        );
    }
    let window = args.threshold_window.unwrap_or(Duration::ZERO);
    if window > Duration::ZERO && window < Duration::from_secs(1) {
        return Err("--threshold-window must be at least 1s (windows are whole seconds)".into());
    }

    let mut outs = Vec::new();
    for o in &args.outs {
        match o.split_once('=') {
            Some(("json", f)) if !f.is_empty() => outs.push(Out::Json(f.into())),
            Some(("junit", f)) if !f.is_empty() => outs.push(Out::Junit(f.into())),
            _ => return Err(format!("--out `{o}`: expected json=FILE or junit=FILE")),
        }
    }

    Ok(Prepared {
        plan: Plan {
            requests,
            model,
            max_in_flight: args.max_in_flight,
            client: ClientOptions {
                http2: args.http2,
                insecure: args.insecure,
                keepalive: !args.no_keepalive,
                timeout: args.timeout,
                ..ClientOptions::default()
            },
            evaluator: Evaluator::new(thresholds, window),
        },
        outs,
        notes,
        target: args.url,
    })
}
