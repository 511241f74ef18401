//! A typed builder for the TOML configs tests start gateways from, so a
//! test says which routes, clusters and limits it needs instead of
//! formatting TOML by hand.
//!
//! ```
//! use levee_testkit::{Cluster, GatewayConfig, Route};
//! let addr: std::net::SocketAddr = "127.0.0.1:8080".parse().unwrap();
//! let toml = GatewayConfig::new()
//!     .route(Route::new("r", "c").timeout("10s").retry("attempts = 2, retry_on = [\"5xx\"]"))
//!     .cluster(Cluster::new("c").endpoints([addr]).raw("limits = { max_requests = 2 }"))
//!     .toml();
//! assert!(levee_config::load_str(&toml, levee_config::Format::Toml, "t.toml").is_ok());
//! ```
//!
//! The builder models what many tests set; anything else goes in as raw
//! TOML with `raw` on the table it belongs to (a listener, route, cluster,
//! SLO, or the top level). Raw text is written after the typed keys of its
//! table and before the table's sub-tables, so it may hold keys and
//! sub-tables of its own.

use crate::FakeUpstream;
use std::fmt::Write as _;
use std::net::SocketAddr;

/// A whole gateway config: admin API and listeners on free ports, the
/// access log and the file watcher off (tests run many requests and
/// reload explicitly).
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    admin_listen: String,
    admin_token: Option<String>,
    runtime: Vec<String>,
    listeners: Vec<Listener>,
    routes: Vec<Route>,
    clusters: Vec<Cluster>,
    slos: Vec<Slo>,
    tables: Vec<String>,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self::new()
    }
}

impl GatewayConfig {
    /// Admin on `127.0.0.1:0` and one listener, `public`, on `127.0.0.1:0`.
    pub fn new() -> Self {
        Self::without_listeners().listener(Listener::new("public"))
    }

    /// Admin on `127.0.0.1:0`, no listener yet.
    pub fn without_listeners() -> Self {
        Self {
            admin_listen: "127.0.0.1:0".into(),
            admin_token: None,
            runtime: vec!["access_log = false".into(), "watch_config = false".into()],
            listeners: Vec::new(),
            routes: Vec::new(),
            clusters: Vec::new(),
            slos: Vec::new(),
            tables: Vec::new(),
        }
    }

    /// The admin API listens on `addr` instead of a free loopback port.
    pub fn admin_listen(mut self, addr: impl ToString) -> Self {
        self.admin_listen = addr.to_string();
        self
    }

    /// Requires this bearer token on the admin API.
    pub fn admin_token(mut self, token: &str) -> Self {
        self.admin_token = Some(token.to_string());
        self
    }

    /// The zone this gateway runs in (`[runtime] zone`).
    pub fn zone(self, zone: &str) -> Self {
        self.runtime(&format!("zone = {}", quote(zone)))
    }

    /// A raw line (or lines) in `[runtime]`.
    pub fn runtime(mut self, toml: &str) -> Self {
        self.runtime.push(toml.to_string());
        self
    }

    /// Adds a listener.
    pub fn listener(mut self, listener: Listener) -> Self {
        self.listeners.push(listener);
        self
    }

    /// Adds a route (routes match in the order they are added).
    pub fn route(mut self, route: Route) -> Self {
        self.routes.push(route);
        self
    }

    /// Adds a cluster.
    pub fn cluster(mut self, cluster: Cluster) -> Self {
        self.clusters.push(cluster);
        self
    }

    /// Adds an SLO.
    pub fn slo(mut self, slo: Slo) -> Self {
        self.slos.push(slo);
        self
    }

    /// `[store] path = PATH`.
    pub fn store(self, path: &str) -> Self {
        self.table("store", &format!("path = {}", quote(path)))
    }

    /// A top-level table `[NAME]` with `body` (raw TOML), e.g.
    /// `table("alerting", "evaluate_every = \"1s\"")`.
    pub fn table(mut self, name: &str, body: &str) -> Self {
        self.tables.push(format!("[{name}]\n{body}"));
        self
    }

    /// Raw top-level TOML, written after everything else (it should start
    /// with a table header).
    pub fn raw(mut self, toml: &str) -> Self {
        self.tables.push(toml.to_string());
        self
    }

    /// The config as TOML.
    pub fn toml(&self) -> String {
        let mut out = String::from("[admin]\n");
        key(&mut out, "listen", &quote(&self.admin_listen));
        if let Some(token) = &self.admin_token {
            line(&mut out, &format!("token = {}", quote(token)));
        }
        out.push_str("[runtime]\n");
        for l in &self.runtime {
            line(&mut out, l);
        }
        for l in &self.listeners {
            l.render(&mut out);
        }
        for r in &self.routes {
            r.render(&mut out);
        }
        for c in &self.clusters {
            c.render(&mut out);
        }
        for s in &self.slos {
            s.render(&mut out);
        }
        for t in &self.tables {
            line(&mut out, t);
        }
        out
    }
}

impl std::fmt::Display for GatewayConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.toml())
    }
}

/// One `[[listeners]]` entry, on `127.0.0.1:0` unless told otherwise.
#[derive(Debug, Clone)]
pub struct Listener {
    name: String,
    listen: String,
    raw: Vec<String>,
}

impl Listener {
    /// A listener named `name` on a free port.
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_string(),
            listen: "127.0.0.1:0".into(),
            raw: Vec::new(),
        }
    }

    /// Listens on `addr` (e.g. a port another socket holds).
    pub fn listen(mut self, addr: impl ToString) -> Self {
        self.listen = addr.to_string();
        self
    }

    /// `limits = { INLINE }`.
    pub fn limits(self, inline: &str) -> Self {
        self.raw(&format!("limits = {{ {inline} }}"))
    }

    /// Serves TLS with the PEM files at `cert` and `key`.
    pub fn tls(self, cert: &std::path::Path, key: &std::path::Path) -> Self {
        let (cert, key) = (cert.display().to_string(), key.display().to_string());
        self.raw(&format!(
            "tls = {{ cert = {}, key = {} }}",
            quote(&cert),
            quote(&key)
        ))
    }

    /// Raw TOML in this listener's table.
    pub fn raw(mut self, toml: &str) -> Self {
        self.raw.push(toml.to_string());
        self
    }

    fn render(&self, out: &mut String) {
        out.push_str("[[listeners]]\n");
        key(out, "name", &quote(&self.name));
        key(out, "listen", &quote(&self.listen));
        for r in &self.raw {
            line(out, r);
        }
    }
}

/// One `[[routes]]` entry.
#[derive(Debug, Clone)]
pub struct Route {
    keys: Vec<(String, String)>,
    set_headers: Vec<(String, String)>,
    raw: Vec<String>,
    fallback: Option<String>,
    rate_limits: Vec<RateLimit>,
}

impl Route {
    /// A route named `name` to `cluster`, matching every request unless
    /// given a match.
    pub fn new(name: &str, cluster: &str) -> Self {
        Self {
            keys: vec![
                ("name".into(), quote(name)),
                ("cluster".into(), quote(cluster)),
            ],
            set_headers: Vec::new(),
            raw: Vec::new(),
            fallback: None,
            rate_limits: Vec::new(),
        }
    }

    fn key(mut self, k: &str, v: String) -> Self {
        self.keys.push((k.to_string(), v));
        self
    }

    /// `match = { path = { prefix = PREFIX } }`.
    pub fn prefix(self, prefix: &str) -> Self {
        self.key(
            "match",
            format!("{{ path = {{ prefix = {} }} }}", quote(prefix)),
        )
    }

    /// `match = { INLINE }`, for matches [`prefix`](Self::prefix) and
    /// [`hosts`](Self::hosts) do not cover (exact paths, regexes,
    /// methods, headers, several at once).
    pub fn matches(self, inline: &str) -> Self {
        self.key("match", format!("{{ {inline} }}"))
    }

    /// `match = { hosts = [HOSTS] }`.
    pub fn hosts(self, hosts: &[&str]) -> Self {
        self.key("match", format!("{{ hosts = {} }}", list(hosts)))
    }

    /// `timeout = DURATION`.
    pub fn timeout(self, duration: &str) -> Self {
        self.key("timeout", quote(duration))
    }

    /// `retry = { INLINE }`.
    pub fn retry(self, inline: &str) -> Self {
        self.key("retry", format!("{{ {inline} }}"))
    }

    /// `hedge = { INLINE }`.
    pub fn hedge(self, inline: &str) -> Self {
        self.key("hedge", format!("{{ {inline} }}"))
    }

    /// `tier = TIER`.
    pub fn tier(self, tier: &str) -> Self {
        self.key("tier", quote(tier))
    }

    /// Sets response header `name` to `value` (`response_headers.set`).
    pub fn response_header(mut self, name: &str, value: &str) -> Self {
        self.set_headers.push((name.to_string(), value.to_string()));
        self
    }

    /// `[routes.fallback]` with `body` (raw TOML, e.g.
    /// `serve_stale = { max_entries = 100 }`).
    pub fn fallback(mut self, body: &str) -> Self {
        self.fallback = Some(body.to_string());
        self
    }

    /// Adds a `[[routes.rate_limits]]` entry.
    pub fn rate_limit(mut self, limit: RateLimit) -> Self {
        self.rate_limits.push(limit);
        self
    }

    /// Raw TOML in this route's table.
    pub fn raw(mut self, toml: &str) -> Self {
        self.raw.push(toml.to_string());
        self
    }

    fn render(&self, out: &mut String) {
        out.push_str("[[routes]]\n");
        for (k, v) in &self.keys {
            key(out, k, v);
        }
        if !self.set_headers.is_empty() {
            let set: Vec<String> = self
                .set_headers
                .iter()
                .map(|(k, v)| format!("{} = {}", quote(k), quote(v)))
                .collect();
            key(
                out,
                "response_headers",
                &format!("{{ set = {{ {} }} }}", set.join(", ")),
            );
        }
        for r in &self.raw {
            line(out, r);
        }
        if let Some(body) = &self.fallback {
            out.push_str("[routes.fallback]\n");
            line(out, body);
        }
        for l in &self.rate_limits {
            l.render(out);
        }
    }
}

/// One `[[routes.rate_limits]]` entry.
#[derive(Debug, Clone)]
pub struct RateLimit {
    keys: Vec<(String, String)>,
    raw: Vec<String>,
}

impl RateLimit {
    /// A limit named `name` of `rate` requests (per second unless `per`).
    pub fn new(name: &str, rate: u64) -> Self {
        Self {
            keys: vec![
                ("name".into(), quote(name)),
                ("rate".into(), rate.to_string()),
            ],
            raw: Vec::new(),
        }
    }

    fn key(mut self, k: &str, v: String) -> Self {
        self.keys.push((k.to_string(), v));
        self
    }

    /// `per = DURATION`.
    pub fn per(self, duration: &str) -> Self {
        self.key("per", quote(duration))
    }

    /// `burst = N`.
    pub fn burst(self, n: u64) -> Self {
        self.key("burst", n.to_string())
    }

    /// `key = [PARTS]`, e.g. `["header:x-api-key"]` or `["tenant"]`.
    pub fn keyed_by(self, parts: &[&str]) -> Self {
        self.key("key", list(parts))
    }

    /// `dry_run = true`.
    pub fn dry_run(self) -> Self {
        self.key("dry_run", "true".into())
    }

    /// `global = true` (shared through Redis).
    pub fn global(self) -> Self {
        self.key("global", "true".into())
    }

    /// Raw TOML in this limit's table.
    pub fn raw(mut self, toml: &str) -> Self {
        self.raw.push(toml.to_string());
        self
    }

    fn render(&self, out: &mut String) {
        out.push_str("[[routes.rate_limits]]\n");
        for (k, v) in &self.keys {
            key(out, k, v);
        }
        for r in &self.raw {
            line(out, r);
        }
    }
}

/// One `[[clusters]]` entry.
#[derive(Debug, Clone)]
pub struct Cluster {
    name: String,
    endpoints: Vec<Endpoint>,
    keys: Vec<(String, String)>,
    raw: Vec<String>,
}

impl Cluster {
    /// A cluster named `name` (add at least one endpoint).
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_string(),
            endpoints: Vec::new(),
            keys: Vec::new(),
            raw: Vec::new(),
        }
    }

    fn key(mut self, k: &str, v: String) -> Self {
        self.keys.push((k.to_string(), v));
        self
    }

    /// Adds one endpoint: an address, a [`FakeUpstream`], or an
    /// [`Endpoint`] with a zone, priority or weight.
    pub fn endpoint(mut self, endpoint: impl Into<Endpoint>) -> Self {
        self.endpoints.push(endpoint.into());
        self
    }

    /// Adds endpoints in order.
    pub fn endpoints<E: Into<Endpoint>>(mut self, endpoints: impl IntoIterator<Item = E>) -> Self {
        self.endpoints.extend(endpoints.into_iter().map(Into::into));
        self
    }

    /// `balancer = { kind = KIND }`.
    pub fn balancer(self, kind: &str) -> Self {
        self.key("balancer", format!("{{ kind = {} }}", quote(kind)))
    }

    /// `health_check = { INLINE }`.
    pub fn health_check(self, inline: &str) -> Self {
        self.key("health_check", format!("{{ {inline} }}"))
    }

    /// `limits = { INLINE }`.
    pub fn limits(self, inline: &str) -> Self {
        self.key("limits", format!("{{ {inline} }}"))
    }

    /// `protocol = PROTOCOL` (`"http2"` for gRPC upstreams).
    pub fn protocol(self, protocol: &str) -> Self {
        self.key("protocol", quote(protocol))
    }

    /// `timeout = DURATION`.
    pub fn timeout(self, duration: &str) -> Self {
        self.key("timeout", quote(duration))
    }

    /// Raw TOML in this cluster's table.
    pub fn raw(mut self, toml: &str) -> Self {
        self.raw.push(toml.to_string());
        self
    }

    fn render(&self, out: &mut String) {
        out.push_str("[[clusters]]\n");
        key(out, "name", &quote(&self.name));
        let eps: Vec<String> = self.endpoints.iter().map(Endpoint::render).collect();
        if self.endpoints.iter().all(|e| e.extra.is_empty()) {
            key(out, "endpoints", &format!("[{}]", eps.join(", ")));
        } else {
            key(out, "endpoints", &format!("[\n  {},\n]", eps.join(",\n  ")));
        }
        for (k, v) in &self.keys {
            key(out, k, v);
        }
        for r in &self.raw {
            line(out, r);
        }
    }
}

/// A cluster endpoint: an address, with a zone, priority or weight if set.
#[derive(Debug, Clone)]
pub struct Endpoint {
    address: String,
    extra: Vec<(String, String)>,
}

impl Endpoint {
    /// The endpoint at `address` (`host:port`).
    pub fn new(address: impl ToString) -> Self {
        Self {
            address: address.to_string(),
            extra: Vec::new(),
        }
    }

    /// `zone = ZONE`.
    pub fn zone(mut self, zone: &str) -> Self {
        self.extra.push(("zone".into(), quote(zone)));
        self
    }

    /// `priority = LEVEL` (0 is tried first).
    pub fn priority(mut self, level: u32) -> Self {
        self.extra.push(("priority".into(), level.to_string()));
        self
    }

    /// `weight = WEIGHT`.
    pub fn weight(mut self, weight: u32) -> Self {
        self.extra.push(("weight".into(), weight.to_string()));
        self
    }

    fn render(&self) -> String {
        if self.extra.is_empty() {
            return quote(&self.address);
        }
        let mut s = format!("{{ address = {}", quote(&self.address));
        for (k, v) in &self.extra {
            let _ = write!(s, ", {k} = {v}");
        }
        s.push_str(" }");
        s
    }
}

impl From<SocketAddr> for Endpoint {
    fn from(addr: SocketAddr) -> Self {
        Endpoint::new(addr)
    }
}

impl From<&SocketAddr> for Endpoint {
    fn from(addr: &SocketAddr) -> Self {
        Endpoint::new(addr)
    }
}

impl From<&FakeUpstream> for Endpoint {
    fn from(up: &FakeUpstream) -> Self {
        Endpoint::new(up.addr())
    }
}

/// One `[[slos]]` entry.
#[derive(Debug, Clone)]
pub struct Slo {
    keys: Vec<(String, String)>,
    raw: Vec<String>,
}

impl Slo {
    /// An SLO named `name` on `route` with indicator `sli`
    /// (`"availability"` or `"latency"`).
    pub fn new(name: &str, sli: &str, route: &str) -> Self {
        Self {
            keys: vec![
                ("name".into(), quote(name)),
                ("sli".into(), quote(sli)),
                ("route".into(), quote(route)),
            ],
            raw: Vec::new(),
        }
    }

    /// An availability SLO with `objective` (e.g. `"99%"`).
    pub fn availability(name: &str, route: &str, objective: &str) -> Self {
        Self::new(name, "availability", route).objective(objective)
    }

    fn key(mut self, k: &str, v: String) -> Self {
        self.keys.push((k.to_string(), v));
        self
    }

    /// `objective = OBJECTIVE`.
    pub fn objective(self, objective: &str) -> Self {
        self.key("objective", quote(objective))
    }

    /// `period = DURATION`.
    pub fn period(self, period: &str) -> Self {
        self.key("period", quote(period))
    }

    /// `runbook = URL`.
    pub fn runbook(self, url: &str) -> Self {
        self.key("runbook", quote(url))
    }

    /// `description = TEXT`.
    pub fn description(self, text: &str) -> Self {
        self.key("description", quote(text))
    }

    /// `labels = { NAME = VALUE, ... }`.
    pub fn labels(self, labels: &[(&str, &str)]) -> Self {
        let pairs: Vec<String> = labels
            .iter()
            .map(|(k, v)| format!("{} = {}", quote(k), quote(v)))
            .collect();
        self.key("labels", format!("{{ {} }}", pairs.join(", ")))
    }

    /// `alerting = { INLINE }`.
    pub fn alerting(self, inline: &str) -> Self {
        self.key("alerting", format!("{{ {inline} }}"))
    }

    /// Raw TOML in this SLO's table.
    pub fn raw(mut self, toml: &str) -> Self {
        self.raw.push(toml.to_string());
        self
    }

    fn render(&self, out: &mut String) {
        out.push_str("[[slos]]\n");
        for (k, v) in &self.keys {
            key(out, k, v);
        }
        for r in &self.raw {
            line(out, r);
        }
    }
}

/// A TOML string, quoted and escaped.
fn quote(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// A TOML array of strings.
fn list(items: &[&str]) -> String {
    let items: Vec<String> = items.iter().map(|s| quote(s)).collect();
    format!("[{}]", items.join(", "))
}

fn key(out: &mut String, k: &str, v: &str) {
    let _ = writeln!(out, "{k} = {v}");
}

/// Appends `text`, ending it with a newline.
fn line(out: &mut String, text: &str) {
    out.push_str(text);
    if !text.ends_with('\n') {
        out.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parses(toml: &str) -> levee_config::Config {
        levee_config::load_str(toml, levee_config::Format::Toml, "t.toml")
            .unwrap_or_else(|d| panic!("{d}\n{toml}"))
    }

    #[test]
    fn every_part_renders_to_a_valid_config() {
        let toml = GatewayConfig::new()
            .admin_token("0123456789abcdef0123456789abcdef")
            .zone("a")
            .listener(Listener::new("second").limits("max_connections = 2"))
            .route(
                Route::new("r", "c")
                    .prefix("/x")
                    .timeout("10s")
                    .retry("attempts = 2, retry_on = [\"5xx\"]")
                    .response_header("x-marker", "one \"quoted\"")
                    .raw("honor_deadlines = false")
                    .fallback("serve_stale = { max_entries = 10 }")
                    .rate_limit(
                        RateLimit::new("per-key", 2)
                            .per("1m")
                            .burst(2)
                            .keyed_by(&["header:x-api-key"]),
                    ),
            )
            .route(Route::new("h", "d").hosts(&["a.example"]).tier("core"))
            .cluster(
                Cluster::new("c")
                    .endpoint(Endpoint::new("127.0.0.1:1").zone("a").priority(1))
                    .endpoint("127.0.0.1:2".parse::<SocketAddr>().unwrap())
                    .balancer("round_robin")
                    .limits("max_requests = 2"),
            )
            .cluster(Cluster::new("d").endpoints(["127.0.0.1:3".parse::<SocketAddr>().unwrap()]))
            .slo(
                Slo::availability("r-availability", "r", "99%")
                    .period("1h")
                    .description("Says \"hi\"")
                    .labels(&[("team", "pay\\ments \"a'b\""), ("yes", "line\nbreak")])
                    .alerting("page = []"),
            )
            .table("alerting", "evaluate_every = \"1s\"")
            .toml();
        let c = parses(&toml);
        assert_eq!(c.listeners.len(), 2);
        assert_eq!(c.routes.len(), 2);
        assert_eq!(c.clusters.len(), 2);
        let labels: Vec<(&str, &str)> = c.slos[0]
            .labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            labels,
            [("team", "pay\\ments \"a'b\""), ("yes", "line\nbreak")],
            "{toml}"
        );
    }
}
