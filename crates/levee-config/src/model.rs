//! The validated, typed configuration. Values here cannot hold invalid
//! states: durations are positive, regexes compile, names are unique and
//! every route points at a cluster that exists. Serializes (with secrets
//! redacted) for `GET /api/v1/config`.

use serde::Serialize;
use std::net::SocketAddr;
use std::time::Duration;

/// A whole Levee configuration.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Config {
    /// The admin API.
    pub admin: Admin,
    /// Process-wide settings.
    pub runtime: Runtime,
    /// Where clients connect.
    pub listeners: Vec<Listener>,
    /// Matched in declared order; the first match wins.
    pub routes: Vec<Route>,
    /// Upstream services.
    pub clusters: Vec<Cluster>,
    /// How a request's tenant is identified.
    pub tenants: Tenants,
    /// Shared state for several gateways (global rate limits).
    pub redis: Option<Redis>,
    /// Service level objectives, measured on what clients see.
    pub slos: Vec<Slo>,
    /// How SLOs are evaluated and who hears of their alerts.
    pub alerting: Alerting,
    /// Where SLO history, alert states and incidents are kept.
    pub store: StoreConfig,
    /// The customer-facing status page (uptime by tier).
    pub status_page: StatusPage,
    /// When capacity utilisation warns.
    pub capacity: Capacity,
    /// Where async routes keep their jobs.
    pub jobs: Jobs,
    /// Several gateways acting as one for SLOs (`[fleet]`, needs `[redis]`).
    pub fleet: Option<Fleet>,
    /// Pushing the metrics to a time-series store (`[remote_write]`).
    pub remote_write: Option<RemoteWrite>,
}

/// Prometheus remote-write of every series Levee exports, so history
/// outlives the gateway's own retention.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RemoteWrite {
    /// The receiver, `http://host:port/api/v1/write` (a secret: it may
    /// hold credentials).
    pub url: Secret,
    /// How often the series are pushed.
    #[serde(serialize_with = "ser_duration")]
    pub interval: Duration,
    /// Longest wait for one push.
    #[serde(serialize_with = "ser_duration")]
    pub timeout: Duration,
    /// Labels added to every series (e.g. `replica`), so several gateways'
    /// series stay apart.
    pub labels: Vec<(String, String)>,
}

/// Several gateways that share their SLO counts through Redis and
/// evaluate them once (docs/fleet.md).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Fleet {
    /// Names the fleet's keys in Redis: gateways with the same name count
    /// together.
    pub name: String,
    /// How long the evaluation leader's lease lasts without renewal: a
    /// dead leader is replaced within it.
    #[serde(serialize_with = "ser_duration")]
    pub lease: Duration,
}

/// The Redis server shared by the gateway replicas.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Redis {
    /// `redis://[user:password@]host:port[/db]` (a secret: it may hold a password).
    pub url: Secret,
    /// Longest wait for one decision; slower answers count as failures.
    #[serde(serialize_with = "ser_duration")]
    pub timeout: Duration,
    /// How many gateways share the limits (local fallback divides by it).
    pub replicas: u32,
    /// What a global limit does while Redis fails.
    pub on_failure: OnRedisFailure,
    /// After a failure, how long decisions stay local before Redis is tried again.
    #[serde(serialize_with = "ser_duration")]
    pub retry_after: Duration,
}

/// A global limit's behaviour while Redis is slow or down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OnRedisFailure {
    /// Limit locally at rate / replicas.
    Local,
    /// Admit everything.
    Open,
    /// Refuse everything (429).
    Closed,
}

/// Tenant identification: a verified JWT claim, else an API key, else a
/// trusted header, else the default tenant.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Tenants {
    /// The tenant of requests that identify none.
    pub default: String,
    /// A header naming the tenant, trusted as sent (put it behind auth).
    pub header: Option<String>,
    /// API keys mapped to tenants.
    pub api_keys: Option<ApiKeys>,
    /// JWTs whose claim names the tenant.
    pub jwt: Option<Jwt>,
    /// Known tenants and their weights (fair share).
    pub list: Vec<TenantConfig>,
}

impl Default for Tenants {
    fn default() -> Self {
        Self {
            default: "default".to_string(),
            header: None,
            api_keys: None,
            jwt: None,
            list: Vec::new(),
        }
    }
}

/// API keys, stored as SHA-256 digests.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ApiKeys {
    /// The header carrying the key.
    pub header: String,
    /// Keys written in the config.
    pub keys: Vec<ApiKey>,
    /// A TOML file with more `[[keys]]` (read when the config is applied).
    pub file: Option<std::path::PathBuf>,
}

/// One API key: the tenant it names and the key's SHA-256 (hex).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ApiKey {
    /// The tenant.
    pub tenant: String,
    /// Lowercase hex SHA-256 of the key.
    pub sha256: String,
}

/// JWT verification.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Jwt {
    /// The header carrying `Bearer <token>`.
    pub header: String,
    /// The claim naming the tenant.
    pub claim: String,
    /// Secrets for HS256.
    pub hs256_secrets: Vec<Secret>,
    /// A JWKS file with RS256 and ES256 public keys.
    pub jwks_file: Option<std::path::PathBuf>,
    /// Required `iss`, if set.
    pub issuer: Option<String>,
    /// Required `aud`, if set.
    pub audience: Option<String>,
    /// Clock skew allowed on `exp` and `nbf`.
    #[serde(serialize_with = "ser_duration")]
    pub leeway: Duration,
}

/// A known tenant.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TenantConfig {
    /// Its name.
    pub name: String,
    /// Its weight in fair sharing.
    pub weight: u32,
}

impl Config {
    /// The cluster named `name`.
    pub fn cluster(&self, name: &str) -> Option<&Cluster> {
        self.clusters.iter().find(|c| c.name == name)
    }
}

/// A value that never appears in logs or the admin API.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    /// The secret itself, for comparison.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("<redacted>")
    }
}

/// A compiled regular expression that compares and prints as its source.
#[derive(Debug, Clone)]
pub struct Pattern {
    source: String,
    regex: regex::Regex,
}

impl Pattern {
    /// Compiles `src`, matching anywhere in a value.
    pub fn new(src: &str) -> Result<Self, regex::Error> {
        Ok(Self {
            source: src.to_string(),
            regex: regex::Regex::new(src)?,
        })
    }

    /// Compiles `src` so that it must match the whole value (`^(?:src)$`),
    /// so alternatives like `/a|/a/b` behave as written.
    pub fn whole(src: &str) -> Result<Self, regex::Error> {
        regex::Regex::new(src)?;
        Ok(Self {
            source: src.to_string(),
            regex: regex::Regex::new(&format!("^(?:{src})$"))?,
        })
    }

    /// The compiled expression.
    pub fn regex(&self) -> &regex::Regex {
        &self.regex
    }
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.regex.as_str() == other.regex.as_str()
    }
}

impl Serialize for Pattern {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.source)
    }
}

fn ser_duration<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_duration(*d))
}

fn ser_opt_duration<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_str(&format_duration(*d)),
        None => s.serialize_none(),
    }
}

/// Formats a duration the way the config accepts it (`250ms`, `2s`, `5m`,
/// `6h`, `30d`), in the largest unit that divides it exactly.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    let secs = d.as_secs();
    if d.subsec_nanos() == 0 && secs > 0 {
        match secs {
            s if s % 86_400 == 0 => format!("{}d", s / 86_400),
            s if s % 3_600 == 0 => format!("{}h", s / 3_600),
            s if s % 60 == 0 => format!("{}m", s / 60),
            s => format!("{s}s"),
        }
    } else if d.subsec_millis() == 0 && secs > 0 {
        format!("{secs}s")
    } else if d.as_nanos().is_multiple_of(1_000_000) {
        format!("{ms}ms")
    } else {
        format!("{}us", d.as_micros())
    }
}

/// The admin API.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Admin {
    /// Where it listens; loopback by default.
    pub listen: SocketAddr,
    /// Bearer token; required when `listen` is not loopback.
    pub token: Option<Secret>,
    /// Where KEDA's external scaler gRPC service listens (h2c), if at all.
    pub keda_listen: Option<SocketAddr>,
}

/// Process-wide settings.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Runtime {
    /// How long shutdown waits for in-flight requests.
    #[serde(serialize_with = "ser_duration")]
    pub drain_timeout: Duration,
    /// Reload when the config file changes.
    pub watch_config: bool,
    /// One log line per request.
    pub access_log: bool,
    /// Runtime worker threads (default: one per core).
    pub worker_threads: Option<usize>,
    /// The zone this gateway runs in, for zone-aware routing.
    pub zone: Option<String>,
    /// The region this gateway runs in.
    pub region: Option<String>,
    /// The process overload guard.
    pub overload: Option<OverloadGuard>,
    /// Where `levee run` waits for a successor (`levee run --takeover`).
    pub handover_socket: HandoverSocket,
}

/// The Unix socket through which a running gateway hands its listening
/// sockets to a new process (`runtime.handover_socket`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HandoverSocket {
    /// A path derived from the config file's (`$XDG_RUNTIME_DIR` or `/tmp`).
    Default,
    /// This path; a relative one is relative to the config file's directory.
    Path(std::path::PathBuf),
    /// No handover: `"off"`.
    Off,
}

/// Watermarks on the whole process: as memory or open connections near
/// their limit, first shed `sheddable` requests, then stop keep-alive,
/// then stop accepting connections.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OverloadGuard {
    /// Resident memory the process may use.
    pub max_memory: Option<u64>,
    /// Open downstream connections across all listeners.
    pub max_connections: Option<u64>,
    /// Share of a limit at which sheddable requests are refused.
    pub shed_at: f64,
    /// Share at which connections are closed after their response.
    pub close_at: f64,
    /// Share at which new connections are refused.
    pub refuse_at: f64,
}

/// A listening socket.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Listener {
    /// Unique name.
    pub name: String,
    /// Address to bind.
    pub listen: SocketAddr,
    /// TLS with ALPN (h2, http/1.1) when set.
    pub tls: Option<Tls>,
    /// Protection limits.
    pub limits: Limits,
}

/// PEM files for a TLS listener.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Tls {
    /// Certificate chain (PEM).
    pub cert: String,
    /// Private key (PEM).
    pub key: String,
}

/// Per-listener limits.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Limits {
    /// Open connections at once; more are closed at accept.
    pub max_connections: u32,
    /// Largest request head (request line and headers); larger gets 431.
    pub max_request_header_bytes: u64,
    /// Largest request body; larger gets 413.
    pub max_request_body_bytes: u64,
    /// Time to receive a complete request head (slowloris protection).
    #[serde(serialize_with = "ser_duration")]
    pub header_read_timeout: Duration,
    /// A connection with no request in flight and no traffic for this long is closed.
    #[serde(serialize_with = "ser_duration")]
    pub idle_timeout: Duration,
    /// HTTP/2 streams per connection.
    pub max_concurrent_streams: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 10_000,
            max_request_header_bytes: 64 * 1024,
            max_request_body_bytes: 10 * 1024 * 1024,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_concurrent_streams: 128,
        }
    }
}

/// A route: a match and where matching requests go.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Route {
    /// Unique name (metric label).
    pub name: String,
    /// Listeners this route applies to; empty means all.
    pub listeners: Vec<String>,
    /// What requests it takes.
    #[serde(rename = "match")]
    pub matcher: RouteMatch,
    /// The cluster that serves it.
    pub cluster: String,
    /// Path rewriting.
    pub rewrite: Rewrite,
    /// Headers added to or removed from the request.
    pub request_headers: HeaderOps,
    /// Headers added to or removed from the response.
    pub response_headers: HeaderOps,
    /// Time until the upstream's response head arrives, overriding the cluster's.
    #[serde(serialize_with = "ser_opt_duration")]
    pub timeout: Option<Duration>,
    /// Time to establish an upstream HTTP/1.1 connection, overriding the cluster's.
    #[serde(serialize_with = "ser_opt_duration")]
    pub connect_timeout: Option<Duration>,
    /// Retries, when configured.
    pub retry: Option<RetryPolicy>,
    /// Honour an incoming `grpc-timeout` or `levee-deadline-ms`.
    pub honor_deadlines: bool,
    /// No attempt starts with less time than this left before the deadline.
    #[serde(serialize_with = "ser_duration")]
    pub min_attempt_time: Duration,
    /// Longest pause between two chunks of the upstream's response body.
    #[serde(serialize_with = "ser_duration")]
    pub stream_idle_timeout: Duration,
    /// A second attempt sent while the first is still out.
    pub hedge: Option<Hedge>,
    /// What answers when the cluster cannot.
    pub fallback: Option<Fallback>,
    /// Request rate limits; all must pass.
    pub rate_limits: Vec<RateLimit>,
    /// Whether the route is core to the product or optional.
    pub tier: Tier,
    /// The priority class of its requests.
    pub priority: Priority,
    /// A header through which a caller may lower (never raise) a request's
    /// priority.
    pub priority_header: Option<String>,
    /// A fixed share of traffic sent to a second cluster (A/B, static canary).
    pub split: Option<Split>,
    /// How a change of `cluster` is rolled out (progressively, judged).
    pub rollout: Option<Rollout>,
    /// A share of requests copied to a shadow cluster.
    pub mirror: Option<Mirror>,
    /// Faults injected into this route's requests (step 3).
    pub faults: Vec<Fault>,
    /// Envoy's fault-filter request headers, honoured within these caps.
    pub fault_headers: Option<FaultHeaders>,
    /// Requests accepted as jobs and delivered later (`[routes.async]`).
    #[serde(rename = "async")]
    pub async_jobs: Option<AsyncRoute>,
}

/// How much a route matters to the product.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    /// Must keep working.
    Core,
    /// May degrade first.
    Optional,
}

/// Priority classes, most important first: under overload, the least
/// important work is shed first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    /// Shed last.
    Critical,
    /// The default.
    Default,
    /// Shed first.
    Sheddable,
}

impl Priority {
    /// Every class, most important first.
    pub const ALL: [Priority; 3] = [Priority::Critical, Priority::Default, Priority::Sheddable];

    /// Its name in config, headers and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Priority::Critical => "critical",
            Priority::Default => "default",
            Priority::Sheddable => "sheddable",
        }
    }

    /// The class named `name`.
    pub fn from_name(name: &str) -> Option<Priority> {
        Priority::ALL.into_iter().find(|p| p.name() == name)
    }
}

/// A rate limit: `rate` requests per `per`, bursts of `burst`, counted per
/// key.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RateLimit {
    /// Name, for headers and metrics.
    pub name: String,
    /// Requests per period.
    pub rate: u64,
    /// The period.
    #[serde(serialize_with = "ser_duration")]
    pub per: Duration,
    /// Requests allowed at once.
    pub burst: u64,
    /// What the limit is counted per (all parts together); empty: the route.
    pub key: Vec<RateKey>,
    /// Count what would be refused, refuse nothing.
    pub dry_run: bool,
    /// Most keys tracked at once (memory bound).
    pub max_keys: usize,
    /// Counted across every gateway through Redis (`[redis]`).
    pub global: bool,
    /// Start slow after an idle period (cold start).
    pub warm_up: Option<WarmUpConfig>,
}

/// A rate limit's warm-up: after `period` idle it starts at `1 /
/// cold_factor` of its rate and ramps back over `period`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WarmUpConfig {
    /// How much slower it starts.
    pub cold_factor: f64,
    /// Idle time that makes it cold, and the ramp's length.
    #[serde(serialize_with = "ser_duration")]
    pub period: Duration,
}

/// A part of a rate-limit key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RateKey {
    /// The client's IP address.
    ClientIp,
    /// A request header's value (absent counts as one shared value).
    Header(String),
    /// The request's tenant.
    Tenant,
}

/// Hedging: for idempotent requests, a second attempt to another endpoint
/// when the first is slow; the first good answer wins.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Hedge {
    /// Send the hedge after this long...
    #[serde(serialize_with = "ser_opt_duration")]
    pub delay: Option<Duration>,
    /// ...or after the route's observed latency at this percentile (0..1).
    pub percentile: Option<f64>,
    /// Never hedge sooner than this (percentile mode).
    #[serde(serialize_with = "ser_duration")]
    pub min_delay: Duration,
    /// Hedges per request beyond the first attempt.
    pub max_hedges: u32,
}

/// A route's fallbacks, tried in this order: a stale cached copy, another
/// cluster, a fixed response.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Fallback {
    /// Serve a stale copy of a successful GET (RFC 5861 stale-if-error).
    pub serve_stale: Option<ServeStale>,
    /// Send the request to this cluster instead.
    pub cluster: Option<String>,
    /// Answer with this.
    pub response: Option<StaticResponse>,
    /// Upstream statuses that count as failures (default 500, 502, 503, 504).
    pub on_statuses: Vec<u16>,
}

/// The bounded cache behind serve-stale.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServeStale {
    /// Most responses kept.
    pub max_entries: usize,
    /// Most body bytes kept in all.
    pub max_bytes: u64,
    /// Responses with larger bodies are not kept.
    pub max_entry_bytes: u64,
    /// Oldest copy that may be served.
    #[serde(serialize_with = "ser_duration")]
    pub max_stale: Duration,
}

/// A fixed fallback response.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StaticResponse {
    /// Its status.
    pub status: u16,
    /// Its headers.
    pub headers: Vec<(String, String)>,
    /// Its body: inline text or a file read when the config is applied.
    pub body: StaticBody,
}

/// Where a static response's body comes from.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StaticBody {
    /// No body.
    Empty,
    /// This text.
    Inline(String),
    /// This file's content (resolved against the config file's directory).
    File(std::path::PathBuf),
}

/// When and how a route retries a failed attempt.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (2 = one retry).
    pub attempts: u32,
    /// Which failures are retried.
    pub retry_on: Vec<RetryOn>,
    /// Response statuses retried when `retry_on` has `status`.
    pub statuses: Vec<u16>,
    /// Time one attempt may take to its response head.
    #[serde(serialize_with = "ser_opt_duration")]
    pub per_try_timeout: Option<Duration>,
    /// Ceiling of the first retry's random wait (full jitter).
    #[serde(serialize_with = "ser_duration")]
    pub backoff_base: Duration,
    /// Ceiling of any retry's wait.
    #[serde(serialize_with = "ser_duration")]
    pub backoff_max: Duration,
    /// Upstream statuses retried when `retry_on` has `grpc` (gRPC codes).
    pub grpc_statuses: Vec<u32>,
    /// A `Retry-After` up to this long is waited for; longer ones stop
    /// retrying (zero: ignored).
    #[serde(serialize_with = "ser_duration")]
    pub retry_after_max: Duration,
    /// Retries may be this share of the route's recent requests...
    pub budget_ratio: f64,
    /// ...plus this many per second.
    pub budget_min_per_second: u32,
    /// The window the budget looks back over.
    #[serde(serialize_with = "ser_duration")]
    pub budget_window: Duration,
    /// Retries in flight may be at most this share of requests in flight...
    pub budget_max_concurrent_ratio: f64,
    /// ...but at least this many.
    pub budget_min_concurrent: u32,
    /// Treat every request on this route as idempotent.
    pub idempotent: bool,
    /// Request bodies up to this size are kept for replay; larger ones are
    /// streamed and not retried once sent.
    pub buffer_bytes: u64,
}

impl Default for RetryPolicy {
    /// The documented defaults (docs/config.md, `[routes.retry]`).
    fn default() -> Self {
        Self {
            attempts: 2,
            retry_on: vec![RetryOn::ConnectFailure, RetryOn::GatewayError],
            statuses: Vec::new(),
            grpc_statuses: vec![14],
            retry_after_max: Duration::from_secs(1),
            per_try_timeout: None,
            backoff_base: Duration::from_millis(25),
            backoff_max: Duration::from_millis(250),
            budget_ratio: 0.2,
            budget_min_per_second: 10,
            budget_window: Duration::from_secs(10),
            budget_max_concurrent_ratio: 0.2,
            budget_min_concurrent: 3,
            idempotent: false,
            buffer_bytes: 64 * 1024,
        }
    }
}

/// Failure classes a route may retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RetryOn {
    /// Connecting failed, was refused or timed out (nothing was sent).
    ConnectFailure,
    /// The upstream reset or closed the connection, or sent invalid HTTP.
    Reset,
    /// The attempt passed its timeout.
    Timeout,
    /// An HTTP/2 stream refused by the upstream (REFUSED_STREAM: not processed).
    RefusedStream,
    /// Any 5xx response.
    #[serde(rename = "5xx")]
    ServerError,
    /// 502, 503 or 504 responses, and the failures above.
    GatewayError,
    /// The statuses listed in `statuses`.
    Status,
    /// gRPC responses whose `grpc-status` is listed in `grpc_statuses`.
    Grpc,
}

/// Conditions that must all hold.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct RouteMatch {
    /// Any of these hosts (empty: any host).
    pub hosts: Vec<HostPattern>,
    /// The path condition (none: any path).
    pub path: Option<PathMatch>,
    /// Any of these methods (empty: any method).
    pub methods: Vec<String>,
    /// All of these header conditions.
    pub headers: Vec<HeaderMatch>,
}

/// A host condition, compared case-insensitively without the port.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HostPattern {
    /// `api.example.com`
    Exact(String),
    /// `*.example.com`, stored as `.example.com`; matches any subdomain.
    Suffix(String),
}

/// A path condition.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PathMatch {
    /// The whole path equals this.
    Exact(String),
    /// The path starts with this.
    Prefix(String),
    /// The whole path matches this expression (it is anchored at both ends).
    Regex(Pattern),
}

/// A header condition.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HeaderMatch {
    /// Lowercase header name.
    pub name: String,
    /// The condition on its value.
    pub rule: HeaderRule,
}

/// A condition on a header value.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HeaderRule {
    /// Equal to this.
    Exact(String),
    /// Present with any value.
    Present,
    /// Matches this expression anywhere in the value (anchor with `^...$`).
    Regex(Pattern),
}

/// Path rewriting.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Rewrite {
    /// Removed from the start of the path when present.
    pub strip_prefix: Option<String>,
    /// Put in front of the path (after stripping).
    pub add_prefix: Option<String>,
}

/// Header changes.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct HeaderOps {
    /// Set (replacing any existing value).
    pub set: Vec<(String, String)>,
    /// Removed.
    pub remove: Vec<String>,
}

/// Stall detection: an endpoint with attempts in flight whose last answer
/// (or start of work) is older than `factor` times the cluster's recent
/// latency, and at least `min`, gets no new requests until it answers.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct StallDetection {
    /// Multiples of the cluster's recent response-head latency.
    pub factor: u32,
    /// The shortest stall that counts, whatever the latency.
    #[serde(serialize_with = "ser_duration")]
    pub min: Duration,
}

impl Default for StallDetection {
    fn default() -> Self {
        Self {
            factor: 8,
            min: Duration::from_millis(50),
        }
    }
}

/// An upstream service.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Cluster {
    /// Faults injected between Levee and this cluster's endpoints.
    pub faults: Vec<UpstreamFault>,
    /// Endpoints that stop answering (frozen) stop getting new requests;
    /// `None` when turned off (long-poll clusters).
    pub stall_detection: Option<StallDetection>,
    /// Unique name.
    pub name: String,
    /// Where it runs, as written in the config (may be empty when
    /// `discovery` finds the endpoints).
    pub endpoints: Vec<Endpoint>,
    /// Where more endpoints are found while the gateway runs.
    pub discovery: Option<EndpointDiscovery>,
    /// How often DNS names (in `endpoints` and discovered) are resolved
    /// again, and SRV names and discovery files read again.
    #[serde(serialize_with = "ser_duration")]
    pub dns_refresh: Duration,
    /// How to choose an endpoint.
    pub balancer: BalancerConfig,
    /// HTTP version towards the upstream.
    pub protocol: UpstreamProtocol,
    /// Time to establish a connection.
    #[serde(serialize_with = "ser_duration")]
    pub connect_timeout: Duration,
    /// Time for the whole response head to arrive.
    #[serde(serialize_with = "ser_duration")]
    pub timeout: Duration,
    /// Connection pooling.
    pub pool: Pool,
    /// Active health checking.
    pub health_check: Option<HealthCheck>,
    /// Passive health: ejecting endpoints that fail live traffic.
    pub outlier_detection: Option<OutlierDetection>,
    /// Circuit breakers per endpoint and for the whole cluster.
    pub circuit_breaker: CircuitBreakers,
    /// Bulkheads: caps on what the cluster may hold at once.
    pub limits: ClusterLimits,
    /// Weight ramp for endpoints returning to rotation.
    pub slow_start: Option<SlowStart>,
    /// Zone-aware routing and priority failover.
    pub locality: Locality,
    /// An adaptive (or fixed) limit on requests in flight, with a priority
    /// admission queue in front of it.
    pub concurrency: Option<Concurrency>,
    /// What the upstream sees as `Host`.
    pub host_header: HostHeader,
}

/// Outlier ejection settings.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OutlierDetection {
    /// 5xx answers or gateway errors in a row that eject (0: off).
    pub consecutive_5xx: u32,
    /// Gateway errors (502, 503, 504, failed connects) in a row that eject (0: off).
    pub consecutive_gateway_errors: u32,
    /// How often success rates are compared and ejections expire.
    #[serde(serialize_with = "ser_duration")]
    pub interval: Duration,
    /// Ejection time of a first ejection; repeats multiply it.
    #[serde(serialize_with = "ser_duration")]
    pub base_ejection_time: Duration,
    /// Longest ejection.
    #[serde(serialize_with = "ser_duration")]
    pub max_ejection_time: Duration,
    /// Most endpoints ejected at once, in percent (below 100, one always stays).
    pub max_ejection_percent: u32,
    /// k in mean − k·σ for success-rate ejection (0: off).
    pub success_rate_stdev_factor: f64,
    /// Endpoints with enough requests before success rates compare.
    pub success_rate_min_hosts: u32,
    /// Requests in an interval for an endpoint to be compared.
    pub success_rate_min_requests: u64,
    /// Eject an endpoint whose mean latency exceeds this many times its
    /// peers' median (0: off).
    pub latency_factor: f64,
    /// Endpoints with enough samples before latencies compare.
    pub latency_min_hosts: u32,
    /// Samples an endpoint needs in the interval to be compared.
    pub latency_min_requests: u64,
}

/// The breakers of a cluster: one per endpoint, one for the cluster.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct CircuitBreakers {
    /// Each endpoint's breaker.
    pub endpoint: Option<BreakerSettings>,
    /// The cluster's breaker.
    pub cluster: Option<BreakerSettings>,
}

/// When a breaker opens and how it closes again.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BreakerSettings {
    /// Failures in a row that open it (0: off).
    pub consecutive_failures: u32,
    /// Failure share over `window` that opens it (0: off).
    pub failure_ratio: f64,
    /// Share of calls slower than `slow_call_threshold` that opens it (0: off).
    pub slow_call_ratio: f64,
    /// What counts as slow.
    #[serde(serialize_with = "ser_duration")]
    pub slow_call_threshold: Duration,
    /// Calls in the window before ratios apply.
    pub min_requests: u64,
    /// The sliding window for ratios.
    #[serde(serialize_with = "ser_duration")]
    pub window: Duration,
    /// Open time after a first trip; repeats double it, with jitter.
    #[serde(serialize_with = "ser_duration")]
    pub base_open_time: Duration,
    /// Longest open time.
    #[serde(serialize_with = "ser_duration")]
    pub max_open_time: Duration,
    /// Probes admitted while half-open; all must succeed to close.
    pub half_open_probes: u32,
    /// After closing, admitted traffic ramps from nothing to all over this.
    #[serde(serialize_with = "ser_duration")]
    pub ramp_time: Duration,
}

/// Per-cluster bulkheads (none: unlimited).
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct ClusterLimits {
    /// Open upstream connections, idle included.
    pub max_connections: Option<u32>,
    /// Requests waiting for an in-flight slot.
    pub max_pending: Option<u32>,
    /// Requests in flight to the cluster.
    pub max_requests: Option<u32>,
    /// Retries (and hedges) in flight to the cluster.
    pub max_retries: Option<u32>,
}

/// A cluster's concurrency limit and admission queue.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Concurrency {
    /// How the limit moves.
    pub algorithm: ConcurrencyAlgorithm,
    /// The starting limit (the limit itself for `fixed`).
    pub limit: u32,
    /// Lowest limit.
    pub min_limit: u32,
    /// Highest limit.
    pub max_limit: u32,
    /// The limit shrinks whenever the observed p99 exceeds this.
    #[serde(serialize_with = "ser_opt_duration")]
    pub latency_target: Option<Duration>,
    /// Queued requests in all.
    pub max_queue_len: usize,
    /// Per priority class, most important first.
    pub classes: Vec<QueueClass>,
    /// A tenant holding more than this share of the limit is served after
    /// tenants within theirs.
    pub tenant_quota: Option<f64>,
}

/// Concurrency limit algorithms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ConcurrencyAlgorithm {
    /// Envoy's gradient formula, minimum latency learned from live traffic.
    Gradient,
    /// Additive increase, multiplicative decrease.
    Aimd,
    /// TCP Vegas style queue estimation.
    Vegas,
    /// A fixed limit.
    Fixed,
}

/// How one priority class waits.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueueClass {
    /// Longest wait in the queue.
    #[serde(serialize_with = "ser_duration")]
    pub max_queue_time: Duration,
    /// Most waiting requests of the class.
    pub max_queue_len: usize,
}

/// Slow start: an endpoint's weight ramps up when it returns to rotation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SlowStart {
    /// Time to full weight.
    #[serde(serialize_with = "ser_duration")]
    pub window: Duration,
    /// 1.0 ramps linearly; higher ramps faster at first.
    pub aggression: f64,
    /// Weight at the start, in percent of the full weight.
    pub min_weight_percent: u32,
}

/// Zone-aware routing and priority failover.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Locality {
    /// Prefer endpoints in the gateway's zone while they have capacity.
    pub zone_aware: bool,
    /// Fewer endpoints than this: spread by weight, ignoring zones.
    pub min_cluster_size: usize,
    /// Share of the gateway fleet per zone (default: as the endpoints are spread).
    pub fleet_zones: Vec<(String, f64)>,
    /// A priority level counts as fully available at 1/this healthy share.
    pub overprovisioning: f64,
    /// Traffic returns to a recovered priority level after it stayed healthy this long.
    #[serde(serialize_with = "ser_duration")]
    pub failback_delay: Duration,
}

impl Default for Locality {
    fn default() -> Self {
        Self {
            zone_aware: true,
            min_cluster_size: 6,
            fleet_zones: Vec::new(),
            overprovisioning: 1.4,
            failback_delay: Duration::from_secs(30),
        }
    }
}

/// Endpoint sources besides the config's own list; at least one is set.
/// What they find is added to `endpoints`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EndpointDiscovery {
    /// A Prometheus `file_sd` file (JSON or YAML, by extension), as
    /// written; a relative path is relative to the config file's directory.
    pub file: Option<String>,
    /// A DNS SRV name, looked up as written (search domains are not
    /// applied).
    pub srv: Option<String>,
    /// The DNS server SRV queries go to (a Consul agent's `127.0.0.1:8600`);
    /// `None`: the servers in `/etc/resolv.conf`.
    pub nameserver: Option<SocketAddr>,
}

/// An endpoint as configured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Endpoint {
    /// `host:port`, where host is an IP or a DNS name.
    pub address: String,
    /// The host part.
    #[serde(skip)]
    pub host: String,
    /// The port.
    #[serde(skip)]
    pub port: u16,
    /// Relative share of traffic (1..=1000).
    pub weight: u32,
    /// Locality labels.
    pub zone: Option<String>,
    /// Locality labels.
    pub region: Option<String>,
    /// Priority level: 0 takes traffic first; higher levels take what lower
    /// ones cannot (failover).
    pub priority: u32,
}

/// Balancer algorithm and its key.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BalancerConfig {
    /// The algorithm.
    pub kind: BalancerKind,
    /// The hash key for `ring_hash` and `maglev`.
    pub hash_on: Option<HashOn>,
}

/// Balancer algorithms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BalancerKind {
    /// Smooth weighted round robin.
    RoundRobin,
    /// Power of two choices by in-flight requests.
    LeastRequest,
    /// Power of two choices by peak-EWMA latency times load.
    PeakEwma,
    /// Consistent hashing on a ring.
    RingHash,
    /// Consistent hashing with a Maglev table.
    Maglev,
}

/// What a consistent-hash balancer hashes.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HashOn {
    /// A request header's value.
    Header(String),
    /// A cookie's value.
    Cookie(String),
    /// The request path.
    Path,
    /// The client's IP address.
    ClientIp,
}

/// HTTP version towards the upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UpstreamProtocol {
    /// HTTP/1.1 with keep-alive.
    Http1,
    /// HTTP/2 with prior knowledge (h2c), needed for gRPC.
    Http2,
}

/// Connection pool settings.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Pool {
    /// Idle connections kept per endpoint.
    pub max_idle_per_endpoint: usize,
    /// How long an idle connection is kept.
    #[serde(serialize_with = "ser_duration")]
    pub idle_timeout: Duration,
}

/// Active HTTP health checking.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HealthCheck {
    /// Path probed with GET.
    pub path: String,
    /// Time between probes.
    #[serde(serialize_with = "ser_duration")]
    pub interval: Duration,
    /// Up to this much is added at random to each interval.
    #[serde(serialize_with = "ser_duration")]
    pub jitter: Duration,
    /// Time a probe may take.
    #[serde(serialize_with = "ser_duration")]
    pub timeout: Duration,
    /// Successes in a row to become healthy.
    pub healthy_threshold: u32,
    /// Failures in a row to become unhealthy.
    pub unhealthy_threshold: u32,
}

/// What the upstream sees as `Host`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HostHeader {
    /// The client's Host, unchanged.
    Preserve,
    /// The endpoint's `host:port`.
    Endpoint,
    /// A fixed value.
    Value(String),
}

/// One SLO: which requests it covers, what makes one good, the objective
/// over the period, and how burning its budget alerts.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Slo {
    /// Unique among SLOs; also the metric label `slo`.
    pub name: String,
    /// Free text shown in the API, alerts and the status page.
    pub description: Option<String>,
    /// The name the public status page gives this SLO's incidents
    /// (`Checkout`); without it the page names them by the SLO's route,
    /// cluster or tier, never by its `name`.
    pub display_name: Option<String>,
    /// Which requests count (all selectors must match; none means every
    /// routed request).
    pub scope: SloScope,
    /// What makes an event good.
    pub sli: Sli,
    /// The objectives: one for availability, one per threshold for latency.
    pub objectives: Vec<SloObjective>,
    /// The period the objective and the error budget are measured over.
    pub period: SloPeriod,
    /// What the objective counts: events, or time slices judged one by one.
    pub budgeting: Budgeting,
    /// How budget burn becomes alerts.
    pub alerting: SloAlerting,
    /// A link passed into every alert of this SLO.
    pub runbook: Option<String>,
    /// Labels passed into every alert of this SLO (and its Prometheus
    /// rules); metrics carry only the `slo` label.
    pub labels: Vec<(String, String)>,
}

/// Label names Levee sets itself on SLO alerts and metrics, so an SLO's
/// own labels may not use them.
pub const RESERVED_SLO_LABELS: [&str; 7] = [
    "slo",
    "slo_name",
    "severity",
    "alertname",
    "objective",
    "le",
    "window",
];

/// Which requests an SLO covers; every selector set must match.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SloScope {
    /// Only this route.
    pub route: Option<String>,
    /// Only routes of this tier.
    pub tier: Option<Tier>,
    /// Only this tenant's requests.
    pub tenant: Option<String>,
    /// Only routes sending to this cluster.
    pub cluster: Option<String>,
}

/// What makes an event good.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Sli {
    /// Good unless the client got a 5xx (Levee's own shedding and
    /// timeouts included).
    Availability {
        /// Whether 429s (a rate limit's refusals, Levee's or the
        /// upstream's) are bad events.
        rate_limited_is_bad: bool,
    },
    /// Good when answered without a 5xx within the objective's threshold.
    Latency,
    /// An async route's jobs: good when a job is delivered within the
    /// objective's threshold of its acceptance (a freshness objective);
    /// a job given up on (dead) is bad. Counted when a job finishes.
    JobCompletion,
}

/// One objective of an SLO, tracked and alerted on its own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SloObjective {
    /// `name` for a single objective, `name:threshold` for each of several.
    pub id: String,
    /// The share of good events aimed for, in parts per million (below
    /// 1,000,000).
    pub objective_ppm: u32,
    /// Latency SLIs: the threshold an answer must be within.
    #[serde(serialize_with = "ser_opt_duration")]
    pub threshold: Option<Duration>,
}

/// What an SLO's objective and budget count (OpenSLO's `budgetingMethod`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "method")]
pub enum Budgeting {
    /// Every event counts once: the SLI is good events over all events.
    Occurrences,
    /// Time is cut into slices of `slice`; a slice is good when the share
    /// of good events in it meets `target_ppm`, and the SLI is good slices
    /// over judged slices (slices without events are not judged).
    Timeslices {
        /// The slice width: a whole multiple of `alerting.bucket`.
        #[serde(serialize_with = "ser_duration")]
        slice: Duration,
        /// The share of good events a slice needs to be good, in parts
        /// per million (up to 1,000,000).
        target_ppm: u32,
    },
    /// Time is cut into slices of `slice`, and the SLI is the average of
    /// the slices' good-event ratios (slices without events are not
    /// judged).
    RatioTimeslices {
        /// The slice width: a whole multiple of `alerting.bucket`.
        #[serde(serialize_with = "ser_duration")]
        slice: Duration,
    },
}

impl Budgeting {
    /// The slice width, for the time-slice methods.
    pub fn slice(self) -> Option<Duration> {
        match self {
            Budgeting::Occurrences => None,
            Budgeting::Timeslices { slice, .. } | Budgeting::RatioTimeslices { slice } => {
                Some(slice)
            }
        }
    }

    /// Its name in config and in the API.
    pub fn name(self) -> &'static str {
        match self {
            Budgeting::Occurrences => "occurrences",
            Budgeting::Timeslices { .. } => "timeslices",
            Budgeting::RatioTimeslices { .. } => "ratio_timeslices",
        }
    }
}

/// The period an SLO's budget is measured over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SloPeriod {
    /// The last `duration`, sliding.
    Rolling(#[serde(serialize_with = "ser_duration")] Duration),
    /// The current calendar month (UTC).
    CalendarMonth,
}

impl SloPeriod {
    /// The longest this period can be: what history must cover.
    pub fn max_len(self) -> Duration {
        match self {
            SloPeriod::Rolling(d) => d,
            SloPeriod::CalendarMonth => Duration::from_secs(31 * 86_400),
        }
    }
}

/// How an SLO's budget burn becomes alerts.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SloAlerting {
    /// The multiwindow burn-rate rules; `None` takes the SRE Workbook's
    /// defaults scaled to the period.
    pub rules: Option<Vec<BurnRule>>,
    /// Events each window needs before its burn rate counts.
    pub min_events: u64,
    /// How long a condition holds before its alert fires.
    #[serde(serialize_with = "ser_duration")]
    pub pending_for: Duration,
}

/// One multiwindow burn-rate rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct BurnRule {
    /// `page` or `ticket`.
    pub severity: AlertSeverity,
    /// The long window.
    #[serde(serialize_with = "ser_duration")]
    pub long: Duration,
    /// The short window.
    #[serde(serialize_with = "ser_duration")]
    pub short: Duration,
    /// The burn rate both windows must exceed, in thousandths.
    pub factor_milli: u32,
}

/// How loudly an alert speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertSeverity {
    /// Wake someone now.
    Page,
    /// Look at it in working hours.
    Ticket,
}

impl AlertSeverity {
    /// Its name in config, alerts and metrics.
    pub fn name(self) -> &'static str {
        match self {
            AlertSeverity::Page => "page",
            AlertSeverity::Ticket => "ticket",
        }
    }
}

/// How SLOs are evaluated and notified.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Alerting {
    /// How often counts are folded into buckets and alerts evaluated.
    #[serde(serialize_with = "ser_duration")]
    pub evaluate_every: Duration,
    /// Width of the fine buckets (the precision of short windows).
    #[serde(serialize_with = "ser_duration")]
    pub bucket: Duration,
    /// Default `min_events` of every SLO.
    pub min_events: u64,
    /// Where firing and resolved alerts are sent.
    pub webhooks: Vec<Webhook>,
}

impl Default for Alerting {
    fn default() -> Self {
        Self {
            evaluate_every: Duration::from_secs(10),
            bucket: Duration::from_secs(10),
            min_events: 10,
            webhooks: Vec::new(),
        }
    }
}

/// A webhook receiving alert notifications.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Webhook {
    /// Unique among webhooks; shown in logs and metrics.
    pub name: String,
    /// `http://` URL to POST to.
    pub url: Secret,
    /// The payload shape.
    pub format: WebhookFormat,
    /// Which severities it receives.
    pub severities: Vec<AlertSeverity>,
    /// Which alerts it receives by their labels (the SLO's labels and
    /// `alertname`, `slo`, `slo_name`, `severity`): every matcher must
    /// match; none takes every alert.
    pub matchers: Vec<LabelMatcher>,
    /// Where a page it received goes when no one acknowledges its incident
    /// in time.
    pub escalation: Option<Escalation>,
    /// Receives only the pages escalated to it, none directly.
    pub escalation_only: bool,
    /// Extra request headers (values are secrets).
    pub headers: Vec<(String, Secret)>,
    /// Time allowed per delivery attempt.
    #[serde(serialize_with = "ser_duration")]
    pub timeout: Duration,
    /// Attempts per notification before it is dropped (and counted).
    pub max_attempts: u32,
    /// First retry delay, doubled per attempt with full jitter.
    #[serde(serialize_with = "ser_duration")]
    pub backoff: Duration,
    /// Longest retry delay.
    #[serde(serialize_with = "ser_duration")]
    pub backoff_max: Duration,
}

/// One label condition of a webhook: the alert's label `label` (absent
/// counts as empty) equals a value (`match`) or matches a whole-value
/// regular expression (`match_re`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LabelMatcher {
    /// The label's name.
    pub label: String,
    /// What its value must be.
    pub value: ValueMatch,
}

impl LabelMatcher {
    /// Whether `labels` satisfy it.
    pub fn matches<'a>(&self, mut labels: impl Iterator<Item = (&'a str, &'a str)>) -> bool {
        let value = labels
            .find(|(name, _)| *name == self.label)
            .map_or("", |(_, v)| v);
        self.value.matches(value)
    }
}

/// A page not acknowledged within `after` of reaching a webhook goes to
/// the webhook `to` as well.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Escalation {
    /// How long the page may wait for an acknowledgement.
    #[serde(serialize_with = "ser_duration")]
    pub after: Duration,
    /// The next webhook's name.
    pub to: String,
}

/// A webhook's payload shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WebhookFormat {
    /// A JSON array of alerts as Alertmanager's `POST /api/v2/alerts`
    /// takes them.
    Alertmanager,
    /// Levee's own JSON object with the SLO's figures.
    Levee,
}

/// Where persistent state is kept.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoreConfig {
    /// Which database holds it.
    pub backend: StoreBackend,
    /// The SQLite file, relative to the config file's directory; `None`
    /// keeps state in memory only (`path = ":memory:"`), and is always
    /// `None` with the PostgreSQL backend.
    pub path: Option<std::path::PathBuf>,
    /// The PostgreSQL database, `postgres://user:password@host:port/db`
    /// (a secret: it may hold a password); set exactly when `backend` is
    /// PostgreSQL. A `connect_timeout` in the URL wins over
    /// `connect_timeout` here.
    pub url: Option<Secret>,
    /// How long connecting to PostgreSQL may take.
    #[serde(serialize_with = "ser_duration")]
    pub connect_timeout: Duration,
    /// PostgreSQL's `statement_timeout`; a call without an answer a
    /// second after it is abandoned and its connection dropped.
    #[serde(serialize_with = "ser_duration")]
    pub statement_timeout: Duration,
    /// How long resolved incidents are kept.
    #[serde(serialize_with = "ser_duration")]
    pub incident_retention: Duration,
    /// The most incidents kept.
    pub max_incidents: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            backend: StoreBackend::Sqlite,
            path: Some("levee.db".into()),
            url: None,
            connect_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(5),
            incident_retention: Duration::from_secs(400 * 86_400),
            max_incidents: 10_000,
        }
    }
}

/// The database behind `[store]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StoreBackend {
    /// One SQLite file per gateway (or memory only).
    Sqlite,
    /// A PostgreSQL database that every gateway of a fleet shares.
    Postgres,
}

/// The status page: uptime and budget by tier.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatusPage {
    /// Its heading.
    pub title: String,
    /// The period uptime is shown over.
    #[serde(serialize_with = "ser_duration")]
    pub period: Duration,
    /// The objective of core routes, in ppm.
    pub core_objective_ppm: u32,
    /// The objective of optional routes, in ppm.
    pub optional_objective_ppm: u32,
}

impl Default for StatusPage {
    fn default() -> Self {
        Self {
            title: "Service status".to_string(),
            period: Duration::from_secs(30 * 86_400),
            core_objective_ppm: 999_000,
            optional_objective_ppm: 990_000,
        }
    }
}

/// When capacity utilisation warns.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Capacity {
    /// Utilisation (0 to 1) from which a cluster or endpoint is `warning`.
    pub warn_at: f64,
    /// Utilisation from which it is `critical`.
    pub critical_at: f64,
}

impl Default for Capacity {
    fn default() -> Self {
        Self {
            warn_at: 0.8,
            critical_at: 0.95,
        }
    }
}

// ---------------------------------------------------------------------------
// Releases: traffic splits, rollouts and mirroring (docs/releases.md).

/// Weights are kept in basis points of a percent: 10,000 is all traffic,
/// 1 is 0.01%.
pub const WEIGHT_SCALE: u32 = 10_000;

/// What keeps a caller on one version across requests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "snake_case", tag = "by", content = "name")]
pub enum Stickiness {
    /// Each request is drawn on its own.
    #[default]
    Request,
    /// The client's address (the direct peer).
    ClientAddress,
    /// A request header, such as a user id; requests without it are drawn
    /// on their own.
    Header(String),
    /// A cookie; Levee sets it (with a random value) when it is missing.
    Cookie(String),
}

/// Which version a forcing rule sends a request to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Version {
    /// The version serving most traffic.
    Stable,
    /// The new version.
    Canary,
}

/// How a forcing rule compares a value.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ValueMatch {
    /// Equal to this.
    Exact(String),
    /// Starting with this.
    Prefix(String),
    /// Matching this expression anywhere (anchor with `^...$`).
    Regex(Pattern),
}

impl ValueMatch {
    /// Whether `value` satisfies the rule.
    pub fn matches(&self, value: &str) -> bool {
        match self {
            ValueMatch::Exact(e) => value == e,
            ValueMatch::Prefix(p) => value.starts_with(p.as_str()),
            ValueMatch::Regex(r) => r.regex().is_match(value),
        }
    }
}

/// Where a forcing rule looks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "in", content = "name")]
pub enum ForceSource {
    /// A request header (lowercase).
    Header(String),
    /// A cookie.
    Cookie(String),
}

/// A header or cookie that sends a request to one version whatever the
/// weights say (A/B groups, previews: `x-canary: always`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ForceRule {
    /// Where the value is read.
    pub source: ForceSource,
    /// What it must be.
    pub value: ValueMatch,
    /// The version it sends the request to.
    pub to: Version,
}

/// How a route's traffic is divided between two versions, shared by
/// static splits and rollouts.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct SplitPolicy {
    /// What keeps a caller on one version.
    pub stickiness: Stickiness,
    /// Rules that force a version, tried in order before the weights.
    pub force: Vec<ForceRule>,
}

/// A fixed split: `weight` of the route's traffic goes to `cluster`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Split {
    /// The second version's cluster.
    pub cluster: String,
    /// Its share, in basis points of a percent (see [`WEIGHT_SCALE`]).
    pub weight: u32,
    /// Stickiness and forcing rules.
    pub policy: SplitPolicy,
}

/// How a rollout moves traffic.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Strategy {
    /// Steps of weight, each held and judged before the next.
    Canary {
        /// The steps, in order; promotion follows the last.
        steps: Vec<CanaryStep>,
    },
    /// Preview traffic (forced by a header or cookie) is judged, then all
    /// traffic switches at once; the old version is kept warm for
    /// `keep_old`, during which switching back is instant.
    BlueGreen {
        /// How long preview traffic is judged before the switch.
        #[serde(serialize_with = "ser_duration")]
        preview: Duration,
        /// How long the old version stays ready after the switch.
        #[serde(serialize_with = "ser_duration")]
        keep_old: Duration,
    },
    /// A header or cookie group (the forcing rules) is served by the new
    /// version for a fixed time or number of requests, then judged.
    Ab {
        /// How long the group is served, at most.
        #[serde(serialize_with = "ser_opt_duration")]
        duration: Option<Duration>,
        /// How many of the group's requests end the test.
        requests: Option<u64>,
    },
}

/// One canary step.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CanaryStep {
    /// The canary's share during the step (basis points of a percent).
    pub weight: u32,
    /// How long the step is held (and judged) at least.
    #[serde(serialize_with = "ser_duration")]
    pub pause: Duration,
    /// Wait for `levee rollout resume` after the pause.
    pub manual: bool,
}

/// What the analysis compares, and how sure it must be.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Analysis {
    /// How often the judge looks.
    #[serde(serialize_with = "ser_duration")]
    pub interval: Duration,
    /// Confidence of a failing verdict (0.98: 2% of identical versions may
    /// be failed at most).
    pub confidence: f64,
    /// Requests each side needs before anything passes.
    pub min_samples: u64,
    /// The canary's error rate may not exceed this (0..1).
    pub max_error_rate: Option<f64>,
    /// ...nor the baseline's by more than this (0..1, absolute points).
    pub max_error_increase: Option<f64>,
    /// The canary's latencies may be this much slower than the baseline's
    /// (relative, 0.1 = 10%), judged by a rank test.
    pub latency_tolerance: Option<f64>,
    /// Percentile limits, absolute or relative to the baseline.
    pub latency: Vec<LatencyLimit>,
    /// Mirrored requests whose answer differed (status class or body) may
    /// not exceed this share (0..1).
    pub max_mirror_mismatch: Option<f64>,
    /// What a failed analysis does.
    pub on_failure: OnFailure,
}

impl Default for Analysis {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(1),
            confidence: 0.98,
            min_samples: 50,
            max_error_rate: Some(0.01),
            max_error_increase: Some(0.01),
            latency_tolerance: Some(0.10),
            latency: Vec::new(),
            max_mirror_mismatch: None,
            on_failure: OnFailure::Rollback,
        }
    }
}

/// A limit on one latency percentile of the canary.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LatencyLimit {
    /// The percentile, as a fraction (0.99).
    pub quantile: f64,
    /// At most this long.
    #[serde(serialize_with = "ser_opt_duration")]
    pub max: Option<Duration>,
    /// At most this many times the baseline's same percentile.
    pub max_ratio: Option<f64>,
}

/// What a failed analysis (or webhook) does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OnFailure {
    /// Send all traffic back to the stable version at once.
    Rollback,
    /// Hold the current weights and wait for a person.
    Pause,
}

/// Error-budget gates of a rollout.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Gates {
    /// The SLOs whose budget is read; empty: every SLO that names the route.
    pub slos: Vec<String>,
    /// Do not start or advance while less than this share of budget is left.
    pub min_budget_left: f64,
    /// Do not start or advance while a page alert fires.
    pub block_on_page: bool,
    /// Roll back once the canary has spent this share of the budget that
    /// was left when it started.
    pub max_budget_spend: f64,
}

impl Default for Gates {
    fn default() -> Self {
        Self {
            slos: Vec::new(),
            min_budget_left: 0.25,
            block_on_page: true,
            max_budget_spend: 0.10,
        }
    }
}

/// The phases a rollout webhook can be called at, as Flagger names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum HookPhase {
    /// Before anything moves; not 2xx holds the rollout.
    ConfirmRollout,
    /// Before the first step; not 2xx fails (or holds) it.
    PreRollout,
    /// At each analysis; not 2xx counts as a failed check.
    Rollout,
    /// Before promotion; not 2xx holds it.
    ConfirmPromotion,
    /// After promotion.
    PostRollout,
    /// After a rollback.
    Rollback,
    /// Every event, for information.
    Event,
}

impl HookPhase {
    /// The name in config and payloads.
    pub fn name(self) -> &'static str {
        match self {
            HookPhase::ConfirmRollout => "confirm-rollout",
            HookPhase::PreRollout => "pre-rollout",
            HookPhase::Rollout => "rollout",
            HookPhase::ConfirmPromotion => "confirm-promotion",
            HookPhase::PostRollout => "post-rollout",
            HookPhase::Rollback => "rollback",
            HookPhase::Event => "event",
        }
    }
}

/// A rollout webhook.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RolloutHook {
    /// When it is called.
    pub phase: HookPhase,
    /// Where (plain `http://`).
    pub url: String,
    /// How long an answer may take; no answer is not 2xx.
    #[serde(serialize_with = "ser_duration")]
    pub timeout: Duration,
    /// What not 2xx does at a phase that can fail: hold or fail.
    pub on_failure: HookFailure,
}

/// What a webhook's refusal does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HookFailure {
    /// Wait and ask again at the next analysis.
    Hold,
    /// Fail the rollout (and act as `analysis.on_failure` says).
    Fail,
}

/// A rollout policy: applies when the route's `cluster` changes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rollout {
    /// How traffic moves.
    pub strategy: Strategy,
    /// Stickiness and forcing rules during the rollout.
    pub policy: SplitPolicy,
    /// How the new version is judged.
    pub analysis: Analysis,
    /// Error-budget gates.
    pub gates: Gates,
    /// Webhooks by phase.
    pub webhooks: Vec<RolloutHook>,
}

/// Copies of a share of requests sent to a shadow cluster; answers are
/// compared with the primary's and discarded.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Mirror {
    /// The shadow cluster.
    pub cluster: String,
    /// Share of requests mirrored (basis points of a percent).
    pub weight: u32,
    /// Requests with larger (or unknown-length) bodies are not mirrored.
    pub max_body_bytes: u64,
    /// Mirrors in flight at once; the excess is dropped and counted.
    pub max_in_flight: u32,
    /// How long a mirrored request may take.
    #[serde(serialize_with = "ser_duration")]
    pub timeout: Duration,
    /// Compare response bodies (by hash) up to this size; 0: status and
    /// latency only.
    pub compare_body_bytes: u64,
}

// ---------------------------------------------------------------------------
// Faults: injected into requests (step 3) or between Levee and an upstream
// (docs/chaos.md).

/// Which requests a fault takes.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct FaultScope {
    /// All must match.
    pub headers: Vec<HeaderMatch>,
    /// Any of these tenants; empty: every tenant.
    pub tenants: Vec<String>,
    /// Any of these client networks; empty: every client.
    pub clients: Vec<IpNetwork>,
    /// Any of these methods; empty: every method.
    pub methods: Vec<String>,
}

/// An IP network (`10.0.0.0/8`, `::1/128`; a bare address is one host).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct IpNetwork {
    /// The network's address.
    pub addr: std::net::IpAddr,
    /// Its prefix length.
    pub prefix: u8,
}

impl IpNetwork {
    /// Whether `ip` is in the network.
    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        use std::net::IpAddr;
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// How a request fault ends the request early.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultAbort {
    /// Answer this HTTP status.
    Status(u16),
    /// Answer this gRPC status (a trailers-only answer).
    Grpc(u32),
    /// Reset the stream (HTTP/2) or close the connection without an answer.
    Reset,
}

/// One fault on a route's requests: a delay, an abort, a bandwidth limit,
/// or several (the delay first).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Fault {
    /// A label for metrics and the API.
    pub name: String,
    /// Share of the requests in scope that get it (basis points of a
    /// percent, see [`WEIGHT_SCALE`]).
    pub weight: u32,
    /// Which requests are in scope.
    pub when: FaultScope,
    /// Wait this long before going on.
    #[serde(serialize_with = "ser_opt_duration")]
    pub delay: Option<Duration>,
    /// Plus up to this much more, uniformly.
    #[serde(serialize_with = "ser_duration")]
    pub jitter: Duration,
    /// End the request with this.
    pub abort: Option<FaultAbort>,
    /// Send the response at most this many bytes a second.
    pub bandwidth: Option<u64>,
    /// Only the first this many requests in scope (then the fault stops).
    pub first: Option<u64>,
    /// At most this many requests faulted at once (the rest pass).
    pub max_active: Option<u32>,
}

/// What an upstream fault does to an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum UpstreamFaultKind {
    /// The connection is refused.
    Refuse,
    /// Nothing answers (until the attempt's timeout).
    Hang,
    /// The answer comes this much later.
    Slow {
        /// Added before the attempt is sent.
        #[serde(serialize_with = "ser_duration")]
        delay: Duration,
    },
    /// The response body breaks off after this many bytes.
    ResetMidBody {
        /// Bytes passed before the reset.
        after_bytes: u64,
    },
    /// The upstream answers this status instead.
    Error {
        /// The status.
        status: u16,
    },
}

/// One fault between Levee and a cluster's endpoints, which Levee's
/// retries, breakers and outlier detection see as a real failure.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UpstreamFault {
    /// A label for metrics and the API.
    pub name: String,
    /// Share of attempts that get it (basis points of a percent).
    pub weight: u32,
    /// Only these endpoints (as configured); empty: all.
    pub endpoints: Vec<String>,
    /// What it does.
    pub kind: UpstreamFaultKind,
    /// Only the first this many attempts (then the fault stops).
    pub first: Option<u64>,
    /// At most this many attempts faulted at once.
    pub max_active: Option<u32>,
}

/// Envoy's fault-filter headers (`x-envoy-fault-abort-request`,
/// `x-envoy-fault-delay-request`, their `-percentage`s,
/// `x-envoy-fault-abort-grpc-request`, `x-envoy-fault-throughput-response`),
/// off unless configured, and capped here.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FaultHeaders {
    /// The largest share a header may ask for (basis points).
    pub max_weight: u32,
    /// The longest delay a header may ask for.
    #[serde(serialize_with = "ser_duration")]
    pub max_delay: Duration,
    /// At most this many requests faulted by headers at once.
    pub max_active: u32,
}

// ---------------------------------------------------------------------------
// Async routes (docs/async.md): requests accepted as jobs, answered 202 and
// delivered later at the upstream's pace.

/// Where async routes keep their jobs, and how clients reach them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Jobs {
    /// The queue's backend.
    pub backend: JobBackend,
    /// The embedded queue's SQLite file (relative to the config file's
    /// directory); `None` keeps jobs in memory only (`path = ":memory:"`),
    /// which a restart loses.
    pub path: Option<std::path::PathBuf>,
    /// When an accepted job counts as stored (embedded queue).
    pub durability: JobDurabilityMode,
    /// The path prefix under which a job's status and result are read
    /// (`GET {status_prefix}/{id}`), on every listener with an async route.
    pub status_prefix: String,
    /// NATS JetStream, for several gateways.
    pub jetstream: Option<JetStream>,
}

impl Default for Jobs {
    fn default() -> Self {
        Self {
            backend: JobBackend::Embedded,
            path: Some("levee-jobs.db".into()),
            durability: JobDurabilityMode::Fsync,
            status_prefix: "/_levee/jobs".to_string(),
            jetstream: None,
        }
    }
}

/// The queue's backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JobBackend {
    /// A durable queue in Levee's own file: no other server.
    Embedded,
    /// NATS JetStream streams shared by several gateways.
    Jetstream,
}

/// When an accepted job counts as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JobDurabilityMode {
    /// On disk (fsync, grouped across concurrent requests) before the 202.
    Fsync,
    /// Handed to the operating system before the 202: survives a crash of
    /// Levee, not of the machine.
    Os,
}

/// The NATS server async routes share.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JetStream {
    /// `nats://host:port` (a secret: it may hold credentials).
    pub url: Secret,
    /// Streams are named `{stream_prefix}_{ROUTE}`.
    pub stream_prefix: String,
    /// Stream replicas in a NATS cluster.
    pub replicas: u32,
    /// Longest wait for the server to acknowledge a job.
    #[serde(serialize_with = "ser_duration")]
    pub timeout: Duration,
}

/// Which requests of a route become jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AsyncMode {
    /// Every request.
    Always,
    /// Only a request the cluster's admission would shed whose client sent
    /// `Prefer: respond-async` (RFC 7240); others are served as usual.
    Overflow,
}

/// What orders a route's jobs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderBy {
    /// The tenant's jobs one at a time, in order.
    Tenant,
    /// The jobs with the same value of this request header, in order.
    Header(String),
}

/// An async route's settings (`[routes.async]`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AsyncRoute {
    pub mode: AsyncMode,
    /// Largest request body a job may hold (413 beyond).
    pub max_body_bytes: u64,
    /// Jobs not yet delivered (queued, delivering or dead), in all.
    pub max_jobs: u64,
    /// Their bytes, in all.
    pub max_bytes: u64,
    /// The same, per tenant.
    pub max_jobs_per_tenant: u64,
    pub max_bytes_per_tenant: u64,
    /// Deliveries at most before a job is dead.
    pub max_attempts: u32,
    /// Age after which a failed job is not retried.
    #[serde(serialize_with = "ser_duration")]
    pub max_age: Duration,
    /// First wait before a retry, doubled each time (full jitter).
    #[serde(serialize_with = "ser_duration")]
    pub backoff_base: Duration,
    #[serde(serialize_with = "ser_duration")]
    pub backoff_max: Duration,
    /// How long one delivery may take before it is handed out again.
    #[serde(serialize_with = "ser_duration")]
    pub delivery_timeout: Duration,
    /// How long a finished job's result is kept.
    #[serde(serialize_with = "ser_duration")]
    pub result_ttl: Duration,
    /// Largest result body kept (the rest is cut and marked).
    pub max_result_bytes: u64,
    /// Deliveries in flight at most (the cluster's limits also apply).
    pub concurrency: u32,
    /// Jobs with the same key are delivered one at a time, in order.
    pub order_by: Option<OrderBy>,
    /// Results pushed to a URL the client names.
    pub callback: Option<JobCallback>,
}

/// Results pushed to the client's URL, signed as Standard Webhooks are.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobCallback {
    /// The request header a client names its URL in.
    pub header: String,
    /// Hosts (`host` or `host:port`) a callback may go to; others are
    /// refused with 400, so a client cannot aim the gateway elsewhere.
    pub allowed_hosts: Vec<String>,
    /// `whsec_` and base64, or any string (its bytes are the key).
    pub secret: Secret,
    /// Attempts at most.
    pub max_attempts: u32,
    /// Each attempt's timeout.
    #[serde(serialize_with = "ser_duration")]
    pub timeout: Duration,
}
