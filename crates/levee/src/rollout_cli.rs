//! `levee rollout`: the operator's command line for rollouts, a client of
//! the admin API (`/api/v1/rollouts`) over plain HTTP/1.1.
//!
//! Where the API is: `--admin URL`, else the `[admin] listen` of the config
//! (`-c FILE` or discovery), else `http://127.0.0.1:9901`. The token:
//! `--token-file FILE`, else `$LEVEE_ADMIN_TOKEN`, else the config's
//! `[admin] token`. There is no `--token` flag, so the token never shows in
//! `ps`, and it is never printed.
//!
//! Exit codes: 0 done; 1 the server refused the command (409) or the route
//! has no rollout (404), with its message on stderr; 2 a usage error
//! (clap's, or a token file or config that cannot be read); 3 the admin API
//! cannot be reached or answered something unexpected (401 included).

use bytes::Bytes;
use http::{header, HeaderValue, Method, StatusCode};
use http_body_util::{BodyExt as _, Empty, Limited};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

/// The environment variable the token is read from.
const TOKEN_ENV: &str = "LEVEE_ADMIN_TOKEN";
/// Where the admin API listens when nothing says otherwise.
const DEFAULT_ADMIN: &str = "http://127.0.0.1:9901";
/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a whole exchange may take (`undo` rebuilds the route).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest answer read.
const MAX_BODY: usize = 16 << 20;
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

/// Where a token came from, to name it when the server refuses it.
#[derive(Debug, Clone)]
enum TokenSource {
    File(PathBuf),
    Env,
    Config(PathBuf),
}

impl std::fmt::Display for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenSource::File(p) => write!(f, "--token-file {}", p.display()),
            TokenSource::Env => write!(f, "${TOKEN_ENV}"),
            TokenSource::Config(p) => write!(f, "`[admin] token` in {}", p.display()),
        }
    }
}

/// The admin API to talk to.
struct Target {
    /// `host:port`, to connect to and send as Host.
    authority: String,
    /// A path prefix from `--admin`, without a trailing slash.
    base_path: String,
    /// The URL as shown in messages.
    shown: String,
    /// Whether nothing named the address (neither `--admin` nor a config).
    defaulted: bool,
    /// The bearer token (never printed) and where it came from.
    token: Option<(HeaderValue, TokenSource)>,
}

/// Runs `levee rollout ...` and gives the exit code.
pub(crate) fn main(args: Args) -> ExitCode {
    let target = match target(&args) {
        Ok(t) => t,
        Err(f) => return f.exit(),
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

/// Where the admin API is and the token, from the flags, the environment
/// and the config (read only when one of them is still missing).
fn target(args: &Args) -> Result<Target, Failure> {
    let mut token = match &args.token_file {
        Some(path) => Some((read_token_file(path)?, TokenSource::File(path.clone()))),
        None => std::env::var(TOKEN_ENV)
            .ok()
            .filter(|t| !t.trim().is_empty())
            .map(|t| (t.trim().to_string(), TokenSource::Env)),
    };
    let mut admin = args.admin.clone();
    if admin.is_none() || token.is_none() {
        if let Some((config, path)) = read_config(args.config.as_deref())? {
            if admin.is_none() {
                admin = Some(admin_url(config.admin.listen));
            }
            if token.is_none() {
                token = config
                    .admin
                    .token
                    .map(|t| (t.expose().to_string(), TokenSource::Config(path)));
            }
        }
    }
    let defaulted = admin.is_none();
    let admin = admin.unwrap_or_else(|| DEFAULT_ADMIN.to_string());
    let (authority, base_path) = parse_admin(&admin)?;
    let token = match token {
        Some((t, source)) => Some((
            HeaderValue::from_str(&format!("Bearer {t}")).map_err(|_| {
                Failure::Usage(format!(
                    "the token from {source} holds characters an HTTP header cannot carry"
                ))
            })?,
            source,
        )),
        None => None,
    };
    Ok(Target {
        shown: format!("http://{authority}{base_path}"),
        defaulted,
        authority,
        base_path,
        token,
    })
}

fn read_token_file(path: &Path) -> Result<String, Failure> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Failure::Usage(format!("cannot read --token-file {}: {e}", path.display())))?;
    let token = text.trim();
    if token.is_empty() {
        return Err(Failure::Usage(format!(
            "--token-file {} is empty",
            path.display()
        )));
    }
    Ok(token.to_string())
}

/// The config named with `-c`, or the one discovery finds (none is fine:
/// the defaults apply).
fn read_config(named: Option<&Path>) -> Result<Option<(levee_config::Config, PathBuf)>, Failure> {
    let path = match named {
        Some(p) => p.to_path_buf(),
        None => {
            let env = std::env::var_os(levee_config::CONFIG_ENV);
            match levee_config::discover(Path::new(""), env) {
                Ok(p) => p,
                Err(levee_config::DiscoveryError::NotFound) => return Ok(None),
                Err(e) => return Err(Failure::Usage(format!("{e}\n  help: {}", e.help()))),
            }
        }
    };
    match levee_config::load_file(&path) {
        Ok(c) => Ok(Some((c, path))),
        Err(diags) => Err(Failure::Usage(format!(
            "cannot read the admin address from {}:\n{diags}",
            path.display()
        ))),
    }
}

/// The URL to reach an admin API listening on `listen` from this host.
fn admin_url(listen: std::net::SocketAddr) -> String {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}", std::net::SocketAddr::new(ip, listen.port()))
}

/// `http://host:port/prefix` (or `host:port`) as the authority with a port
/// and the path prefix.
fn parse_admin(url: &str) -> Result<(String, String), Failure> {
    let bad = |why: &str| Failure::Usage(format!("--admin {url}: {why}"));
    let full = if url.contains("://") {
        url.to_string()
    } else {
        format!("http://{url}")
    };
    let uri: http::Uri = full
        .parse()
        .map_err(|_| bad("not a URL like http://127.0.0.1:9901"))?;
    if uri.scheme_str() != Some("http") {
        return Err(bad("the admin API speaks plain http://"));
    }
    let host = uri
        .host()
        .ok_or_else(|| bad("no host, as in http://127.0.0.1:9901"))?;
    let authority = format!("{host}:{}", uri.port_u16().unwrap_or(80));
    Ok((authority, uri.path().trim_end_matches('/').to_string()))
}

/// Percent-encodes a route name for a path segment.
fn encode(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// One request to the admin API; the body of a 200, or the failure the
/// answer means.
async fn exchange(target: &Target, method: Method, path: &str) -> Result<Bytes, Failure> {
    let unreachable = |why: String| {
        let help = if target.defaulted {
            "\n  help: no config was found to read `[admin] listen` from; name the API with --admin URL or the config with -c FILE"
        } else {
            ""
        };
        Failure::Unreachable(format!(
            "cannot reach the admin API at {}: {why}{help}",
            target.shown
        ))
    };
    let stream = tokio::time::timeout(
        CONNECT_TIMEOUT,
        tokio::net::TcpStream::connect(&target.authority),
    )
    .await
    .map_err(|_| unreachable(format!("no connection within {CONNECT_TIMEOUT:?}")))?
    .map_err(|e| unreachable(e.to_string()))?;
    let exchange = async {
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| unreachable(e.to_string()))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let mut request = http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", target.base_path))
            .header(header::HOST, &target.authority)
            .header(header::ACCEPT, "application/json")
            .header(
                header::USER_AGENT,
                concat!("levee/", env!("CARGO_PKG_VERSION")),
            )
            .body(Empty::<Bytes>::new())
            .map_err(|e| Failure::Usage(format!("cannot build the request: {e}")))?;
        if let Some((token, _)) = &target.token {
            let mut token = token.clone();
            token.set_sensitive(true);
            request.headers_mut().insert(header::AUTHORIZATION, token);
        }
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        let status = response.status();
        let body = Limited::new(response.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|e| unreachable(format!("reading the answer: {e}")))?
            .to_bytes();
        Ok::<_, Failure>((status, body))
    };
    let (status, body) = tokio::time::timeout(REQUEST_TIMEOUT, exchange)
        .await
        .map_err(|_| unreachable(format!("no answer within {REQUEST_TIMEOUT:?}")))??;
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
        StatusCode::UNAUTHORIZED => Err(Failure::Unreachable(match &target.token {
            None => format!(
                "the admin API at {} needs a token: set {TOKEN_ENV} (or --token-file FILE) to its `[admin] token`",
                target.shown
            ),
            Some((_, source)) => format!(
                "the admin API at {} refused the token from {source}: set {TOKEN_ENV} (or --token-file FILE) to its `[admin] token`",
                target.shown
            ),
        })),
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
    fn admin_urls_take_a_scheme_or_not_and_keep_a_prefix() {
        let ok = |u: &str| parse_admin(u).unwrap_or_else(|_| panic!("{u} refused"));
        assert_eq!(
            ok("http://127.0.0.1:9901"),
            ("127.0.0.1:9901".into(), "".into())
        );
        assert_eq!(ok("127.0.0.1:9901"), ("127.0.0.1:9901".into(), "".into()));
        assert_eq!(
            ok("http://admin.internal/levee/"),
            ("admin.internal:80".into(), "/levee".into())
        );
        assert_eq!(ok("http://[::1]:9901"), ("[::1]:9901".into(), "".into()));
        assert!(matches!(parse_admin("https://x:1"), Err(Failure::Usage(_))));
    }

    #[test]
    fn an_unspecified_listen_address_is_reached_on_loopback() {
        assert_eq!(
            admin_url("0.0.0.0:9901".parse().unwrap()),
            "http://127.0.0.1:9901"
        );
        assert_eq!(admin_url("[::]:9901".parse().unwrap()), "http://[::1]:9901");
        assert_eq!(
            admin_url("10.0.0.1:80".parse().unwrap()),
            "http://10.0.0.1:80"
        );
    }

    #[test]
    fn numbers_print_without_trailing_zeros() {
        assert_eq!(trim(10.0, 2), "10");
        assert_eq!(trim(12.5, 2), "12.5");
        assert_eq!(trim(0.012345, 4), "0.0123");
        assert_eq!(encode("a b/c"), "a%20b%2Fc");
    }
}
