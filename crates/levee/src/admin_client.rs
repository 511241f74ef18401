//! What every admin API client of the binary shares (`levee rollout`,
//! `levee incident`, `levee chaos run`): finding the API and its token,
//! one HTTP/1.1 exchange with it, and for the operator commands (`levee
//! rollout`, `levee incident`) their flags, what an answer means for the
//! exit code, and plain-text tables.
//!
//! Exit codes of the operator commands: 0 done; 1 the server refused
//! (404 for an unknown object, 409 for an action that does not apply
//! now), with its message on stderr; 2 a usage error (clap's, a token file
//! or config that cannot be read, or input the server calls invalid,
//! 400); 3 the admin API cannot be reached or answered something
//! unexpected (401 and 503 included).
//!
//! Where the API is: `--admin URL`, else the `[admin] listen` of the config
//! (`-c FILE` or discovery), else `http://127.0.0.1:9901`. The token:
//! `--token-file FILE`, else `$LEVEE_ADMIN_TOKEN`, else the config's
//! `[admin] token`. There is no `--token` flag, so the token never shows in
//! `ps`, and it is never printed.

use bytes::Bytes;
use http::{header, HeaderValue, Method, StatusCode};
use http_body_util::{BodyExt as _, Full, Limited};
use serde_json::Value;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

/// The environment variable the token is read from.
pub(crate) const TOKEN_ENV: &str = "LEVEE_ADMIN_TOKEN";
/// Where the admin API listens when nothing says otherwise.
const DEFAULT_ADMIN: &str = "http://127.0.0.1:9901";
/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest answer read.
const MAX_BODY: usize = 16 << 20;

/// Why a client could not talk to the admin API.
#[derive(Debug)]
pub(crate) enum ClientError {
    /// Bad flags, token file or config.
    Usage(String),
    /// The admin API cannot be reached or did not answer in time.
    Unreachable(String),
}

impl ClientError {
    /// The message, whichever it is.
    pub(crate) fn message(&self) -> &str {
        match self {
            ClientError::Usage(m) | ClientError::Unreachable(m) => m,
        }
    }
}

/// Where a token came from, to name it when the server refuses it.
#[derive(Debug, Clone)]
pub(crate) enum TokenSource {
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
pub(crate) struct Target {
    /// `host:port`, to connect to and send as Host.
    pub(crate) authority: String,
    /// A path prefix from `--admin`, without a trailing slash.
    pub(crate) base_path: String,
    /// The URL as shown in messages.
    pub(crate) shown: String,
    /// What it is, in messages (`the admin API`, `probe home`).
    pub(crate) label: String,
    /// Whether nothing named the address (neither `--admin` nor a config).
    pub(crate) defaulted: bool,
    /// The bearer token (never printed) and where it came from.
    pub(crate) token: Option<(HeaderValue, TokenSource)>,
}

/// Where the admin API is and the token, from the flags, the environment
/// and the config (read only when one of them is still missing).
pub(crate) fn target(
    admin: Option<&str>,
    token_file: Option<&Path>,
    config: Option<&Path>,
) -> Result<Target, ClientError> {
    let mut token = match token_file {
        Some(path) => Some((
            read_token_file(path)?,
            TokenSource::File(path.to_path_buf()),
        )),
        None => std::env::var(TOKEN_ENV)
            .ok()
            .filter(|t| !t.trim().is_empty())
            .map(|t| (t.trim().to_string(), TokenSource::Env)),
    };
    let mut admin = admin.map(str::to_string);
    if admin.is_none() || token.is_none() {
        if let Some((config, path)) = read_config(config)? {
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
                ClientError::Usage(format!(
                    "the token from {source} holds characters an HTTP header cannot carry"
                ))
            })?,
            source,
        )),
        None => None,
    };
    Ok(Target {
        shown: format!("http://{authority}{base_path}"),
        label: "the admin API".into(),
        defaulted,
        authority,
        base_path,
        token,
    })
}

fn read_token_file(path: &Path) -> Result<String, ClientError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ClientError::Usage(format!("cannot read --token-file {}: {e}", path.display()))
    })?;
    let token = text.trim();
    if token.is_empty() {
        return Err(ClientError::Usage(format!(
            "--token-file {} is empty",
            path.display()
        )));
    }
    Ok(token.to_string())
}

/// The config named with `-c`, or the one discovery finds (none is fine:
/// the defaults apply).
fn read_config(
    named: Option<&Path>,
) -> Result<Option<(levee_config::Config, PathBuf)>, ClientError> {
    let path = match named {
        Some(p) => p.to_path_buf(),
        None => {
            let env = std::env::var_os(levee_config::CONFIG_ENV);
            match levee_config::discover(Path::new(""), env) {
                Ok(p) => p,
                Err(levee_config::DiscoveryError::NotFound) => return Ok(None),
                Err(e) => return Err(ClientError::Usage(format!("{e}\n  help: {}", e.help()))),
            }
        }
    };
    match levee_config::load_file(&path) {
        Ok(c) => Ok(Some((c, path))),
        Err(diags) => Err(ClientError::Usage(format!(
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
fn parse_admin(url: &str) -> Result<(String, String), ClientError> {
    let bad = |why: &str| ClientError::Usage(format!("--admin {url}: {why}"));
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
pub(crate) fn encode(segment: &str) -> String {
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

/// One request to the admin API, with a JSON body if given, within
/// `timeout`: the status and body of whatever it answered.
pub(crate) async fn send(
    target: &Target,
    method: Method,
    path: &str,
    body: Option<String>,
    timeout: Duration,
) -> Result<(StatusCode, Bytes), ClientError> {
    let unreachable = |why: String| {
        let help = if target.defaulted {
            "\n  help: no config was found to read `[admin] listen` from; name the API with --admin URL or the config with -c FILE"
        } else {
            ""
        };
        ClientError::Unreachable(format!(
            "cannot reach {} at {}: {why}{help}",
            target.label, target.shown
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
            .header(header::CONTENT_TYPE, "application/json")
            .header(
                header::USER_AGENT,
                concat!("levee/", env!("CARGO_PKG_VERSION")),
            )
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| ClientError::Usage(format!("cannot build the request: {e}")))?;
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
        Ok::<_, ClientError>((status, body))
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| unreachable(format!("no answer within {timeout:?}")))?
}

/// Any plain `http://` URL as a target without a token, labelled `label`
/// in messages: the path and query to send.
pub(crate) fn plain(url: &str, label: &str) -> Result<(Target, String), String> {
    let uri: http::Uri = url.parse().map_err(|_| format!("`{url}` is not a URL"))?;
    let host = uri.host().ok_or_else(|| format!("`{url}` names no host"))?;
    let authority = format!("{host}:{}", uri.port_u16().unwrap_or(80));
    let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
    Ok((
        Target {
            shown: url.to_string(),
            label: label.to_string(),
            defaulted: false,
            authority,
            base_path: String::new(),
            token: None,
        },
        path,
    ))
}

/// What a 401 means, naming where the token came from.
pub(crate) fn unauthorized(target: &Target) -> String {
    match &target.token {
        None => format!(
            "the admin API at {} needs a token: set {TOKEN_ENV} (or --token-file FILE) to its `[admin] token`",
            target.shown
        ),
        Some((_, source)) => format!(
            "the admin API at {} refused the token from {source}: set {TOKEN_ENV} (or --token-file FILE) to its `[admin] token`",
            target.shown
        ),
    }
}

/// The exit code when the server refused the command or knows no such
/// object.
pub(crate) const EXIT_REFUSED: u8 = 1;
/// The exit code for usage errors (clap's own).
pub(crate) const EXIT_USAGE: u8 = 2;
/// The exit code when the admin API cannot be reached or answered
/// something unexpected.
pub(crate) const EXIT_UNREACHABLE: u8 = 3;

/// Where the admin API is and how to authenticate to it: the flags every
/// operator command takes (after any of its subcommands).
#[derive(clap::Args, Debug)]
pub(crate) struct ConnectArgs {
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
}

/// Why an operator command stopped; each becomes a message on stderr and
/// an exit code.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The server refused (409) or has no such object (404).
    Refused(String),
    /// Bad arguments, token file or config, or input the server refused
    /// as invalid (400).
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
    /// Prints the message; the exit code.
    pub(crate) fn exit(self) -> ExitCode {
        let (code, message) = match self {
            Failure::Refused(m) => (EXIT_REFUSED, m),
            Failure::Usage(m) => (EXIT_USAGE, m),
            Failure::Unreachable(m) => (EXIT_UNREACHABLE, m),
        };
        eprintln!("error: {message}");
        ExitCode::from(code)
    }
}

/// Runs an operator command: finds the admin API from `connect`, runs
/// `act` against it on a one-thread runtime, prints the text it returns;
/// the exit code.
pub(crate) fn run_command<F, Fut>(connect: &ConnectArgs, act: F) -> ExitCode
where
    F: FnOnce(Target) -> Fut,
    Fut: Future<Output = Result<String, Failure>>,
{
    let target = match target(
        connect.admin.as_deref(),
        connect.token_file.as_deref(),
        connect.config.as_deref(),
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
    match runtime.block_on(act(target)) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(f) => f.exit(),
    }
}

/// What an answer means for the exit code: the body of a 200, or the
/// failure. `what` names the endpoints asked for (`rollout`, `incident`)
/// when the API does not have them at all.
pub(crate) fn judge(
    target: &Target,
    status: StatusCode,
    body: Bytes,
    what: &str,
) -> Result<Bytes, Failure> {
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
                "the admin API at {} has no {what} endpoints (is it an older Levee?)",
                target.shown
            ))),
        },
        StatusCode::BAD_REQUEST => {
            Err(Failure::Usage(message.unwrap_or_else(|| {
                "the admin API called the request invalid".into()
            })))
        }
        StatusCode::UNAUTHORIZED => Err(Failure::Unreachable(unauthorized(target))),
        other => Err(Failure::Unreachable(format!(
            "the admin API at {} answered {other}{}",
            target.shown,
            message.map(|m| format!(": {m}")).unwrap_or_default()
        ))),
    }
}

/// An answer's body as text ending in a newline, for `--json`.
pub(crate) fn json_text(body: &[u8]) -> String {
    let mut text = String::from_utf8_lossy(body).into_owned();
    if !text.ends_with('\n') {
        text.push('\n');
    }
    text
}

/// An answer's body as JSON, or the failure that it is not.
pub(crate) fn parse_json(target: &Target, body: &[u8]) -> Result<Value, Failure> {
    serde_json::from_slice(body).map_err(|_| {
        Failure::Unreachable(format!(
            "the admin API at {} answered something that is not JSON",
            target.shown
        ))
    })
}

/// Rows as columns padded to their widest cell, each line after `indent`.
pub(crate) fn table<const N: usize>(rows: &[[String; N]], indent: &str) -> String {
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
pub(crate) fn text(v: &Value) -> String {
    v.as_str().map_or_else(|| "-".to_string(), str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_pad_columns_to_the_widest_cell() {
        let rows = [
            ["ID".to_string(), "SLO".into(), "BY".into()],
            ["12".to_string(), "checkout-availability".into(), "".into()],
        ];
        assert_eq!(
            table(&rows, "  "),
            "  ID  SLO                    BY\n  12  checkout-availability\n"
        );
    }

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
        assert!(matches!(
            parse_admin("https://x:1"),
            Err(ClientError::Usage(_))
        ));
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
    fn route_names_are_percent_encoded() {
        assert_eq!(encode("a b/c"), "a%20b%2Fc");
    }
}
