//! Route matching: the compiled form of `[[routes]]` for one listener, matched
//! first to last. Hosts compare case-insensitively without the port; methods
//! and headers are pre-parsed so a match allocates nothing.

use crate::cluster::ClusterRuntime;
use crate::metrics::RouteMetrics;
use http::{HeaderName, Method, Request};
use levee_config::{HeaderRule, HostPattern, PathMatch, Route};
use levee_core::metrics::Registry;
use std::sync::Arc;

/// A route's compiled faults and Envoy fault-header caps.
pub(crate) type RouteFaults = (
    Arc<[Arc<crate::fault::RequestFault>]>,
    Option<Arc<(levee_config::FaultHeaders, crate::fault::HeaderBudget)>>,
);

/// A route ready to match, with everything the pipeline needs resolved.
#[derive(Debug)]
pub(crate) struct CompiledRoute {
    pub(crate) config: Route,
    pub(crate) cluster: Arc<ClusterRuntime>,
    pub(crate) metrics: RouteMetrics,
    pub(crate) retry: Option<crate::retry::RouteRetry>,
    pub(crate) hedge: Option<crate::hedge::HedgePolicy>,
    pub(crate) fallback: Option<Arc<crate::degrade::RouteFallback>>,
    /// The route as sent to its fallback cluster (no retries of its own).
    pub(crate) fallback_route: Option<Arc<CompiledRoute>>,
    /// Step 4's rate limits, shared by the route's listeners.
    pub(crate) rate_limits: Vec<Arc<crate::admit::RouteLimit>>,
    /// The SLO objectives (and tier series) this route's requests feed.
    pub(crate) slos: Arc<[crate::slo::SloBinding]>,
    /// A second version and how requests are drawn between the two.
    pub(crate) split: Option<crate::release::RouteSplit>,
    /// Faults configured on the route (step 3).
    pub(crate) faults: Arc<[Arc<crate::fault::RequestFault>]>,
    /// Envoy's fault headers, when allowed, with their budget.
    pub(crate) fault_headers: Option<Arc<(levee_config::FaultHeaders, crate::fault::HeaderBudget)>>,
    /// Copies of a share of requests to a shadow cluster (`mirror.rs`).
    pub(crate) mirror: Option<Arc<crate::mirror::RouteMirror>>,
    /// What the route has served, for the latency history (`traffic.rs`);
    /// shared by both versions of a split. `None` on a fallback cluster's
    /// route, whose requests count on the route they came in on.
    pub(crate) served: Option<Arc<crate::release::VersionCounters>>,
    /// An async route's queue and settings (`jobs`).
    pub(crate) jobs: Option<Arc<crate::jobs::RouteJobs>>,
    /// The `job_completion` objectives its jobs feed as they finish.
    pub(crate) job_slos: Arc<[crate::slo::SloBinding]>,
    methods: Vec<Method>,
    headers: Vec<(HeaderName, HeaderRule)>,
    pub(crate) request_set: Vec<(HeaderName, http::HeaderValue)>,
    pub(crate) request_remove: Vec<HeaderName>,
    pub(crate) response_set: Vec<(HeaderName, http::HeaderValue)>,
    pub(crate) response_remove: Vec<HeaderName>,
}

fn header_ops(
    ops: &levee_config::HeaderOps,
) -> (Vec<(HeaderName, http::HeaderValue)>, Vec<HeaderName>) {
    // Validated by levee-config, so these conversions cannot fail.
    let set = ops
        .set
        .iter()
        .filter_map(|(k, v)| Some((k.parse().ok()?, v.parse().ok()?)))
        .collect();
    let remove = ops.remove.iter().filter_map(|k| k.parse().ok()).collect();
    (set, remove)
}

impl CompiledRoute {
    pub(crate) fn new(config: Route, cluster: Arc<ClusterRuntime>, registry: &Registry) -> Self {
        let methods = config
            .matcher
            .methods
            .iter()
            .filter_map(|m| Method::from_bytes(m.as_bytes()).ok())
            .collect();
        let headers = config
            .matcher
            .headers
            .iter()
            .filter_map(|h| {
                Some((
                    HeaderName::from_bytes(h.name.as_bytes()).ok()?,
                    h.rule.clone(),
                ))
            })
            .collect();
        let (request_set, request_remove) = header_ops(&config.request_headers);
        let (response_set, response_remove) = header_ops(&config.response_headers);
        Self {
            metrics: RouteMetrics::new(registry, &config.name, &config.cluster),
            // Hedges draw on the retry budget: a hedging route without
            // retries still gets one (with a single attempt).
            retry: config
                .retry
                .clone()
                .or_else(|| {
                    config.hedge.as_ref().map(|_| levee_config::RetryPolicy {
                        attempts: 1,
                        ..Default::default()
                    })
                })
                .map(|p| crate::retry::RouteRetry::new(p, &config.name, registry)),
            hedge: config
                .hedge
                .clone()
                .map(|h| crate::hedge::HedgePolicy::new(h, &config.name, registry)),
            fallback: None,
            fallback_route: None,
            rate_limits: Vec::new(),
            slos: Arc::from(Vec::new()),
            split: None,
            faults: Arc::from(Vec::new()),
            fault_headers: None,
            mirror: None,
            jobs: None,
            job_slos: Arc::from(Vec::new()),
            served: None,
            config,
            cluster,
            methods,
            headers,
            request_set,
            request_remove,
            response_set,
            response_remove,
        }
    }

    /// Adds the route's fallbacks; a fallback cluster gets a route of its
    /// own: the same request handling, without retries, hedges or
    /// fallbacks of its own.
    pub(crate) fn with_fallback(
        mut self,
        fallback: Arc<crate::degrade::RouteFallback>,
        fallback_cluster: Option<Arc<ClusterRuntime>>,
        registry: &Registry,
    ) -> Self {
        self.fallback_route = fallback_cluster.map(|cluster| {
            let config = Route {
                name: format!("{}.fallback", self.config.name),
                cluster: cluster.name().to_string(),
                retry: None,
                hedge: None,
                fallback: None,
                ..self.config.clone()
            };
            Arc::new(CompiledRoute::new(config, cluster, registry))
        });
        self.fallback = Some(fallback);
        self
    }

    /// Adds the route's rate limits.
    pub(crate) fn with_rate_limits(mut self, limits: Vec<Arc<crate::admit::RouteLimit>>) -> Self {
        self.rate_limits = limits;
        self
    }

    /// Adds a second version (a split or a rollout's canary).
    pub(crate) fn with_split(mut self, split: crate::release::RouteSplit) -> Self {
        self.split = Some(split);
        self
    }

    /// Adds the route's faults (compiled once per route, shared by its
    /// listeners and versions).
    pub(crate) fn with_faults(mut self, faults: &RouteFaults) -> Self {
        self.faults = faults.0.clone();
        self.fault_headers = faults.1.clone();
        self
    }

    /// Adds the route's mirror.
    pub(crate) fn with_mirror(mut self, mirror: Arc<crate::mirror::RouteMirror>) -> Self {
        self.mirror = Some(mirror);
        self
    }

    /// Makes the route async: its requests become jobs in this queue,
    /// whose completions feed `slos`.
    pub(crate) fn with_jobs(
        mut self,
        jobs: Arc<crate::jobs::RouteJobs>,
        slos: Arc<[crate::slo::SloBinding]>,
    ) -> Self {
        self.jobs = Some(jobs);
        self.job_slos = slos;
        self
    }

    /// Adds the route's counters for the latency history.
    pub(crate) fn with_served(mut self, served: Arc<crate::release::VersionCounters>) -> Self {
        self.served = Some(served);
        self
    }

    pub(crate) fn with_slos(mut self, slos: Arc<[crate::slo::SloBinding]>) -> Self {
        self.slos = slos;
        self
    }

    /// Whether this route takes a request for `host` (lowercase, no port).
    pub(crate) fn matches<B>(&self, host: &str, req: &Request<B>) -> bool {
        let m = &self.config.matcher;
        if !m.hosts.is_empty() && !m.hosts.iter().any(|h| host_matches(h, host)) {
            return false;
        }
        if let Some(p) = &m.path {
            let path = req.uri().path();
            let ok = match p {
                PathMatch::Exact(e) => path == e,
                PathMatch::Prefix(prefix) => path.starts_with(prefix.as_str()),
                PathMatch::Regex(r) => r.regex().is_match(path),
            };
            if !ok {
                return false;
            }
        }
        if !self.methods.is_empty() && !self.methods.contains(req.method()) {
            return false;
        }
        self.headers.iter().all(|(name, rule)| {
            let mut values = req.headers().get_all(name).iter();
            match rule {
                HeaderRule::Present => values.next().is_some(),
                HeaderRule::Exact(v) => values.any(|x| x.as_bytes() == v.as_bytes()),
                HeaderRule::Regex(r) => {
                    values.any(|x| x.to_str().is_ok_and(|s| r.regex().is_match(s)))
                }
            }
        })
    }

    /// The upstream path and query after `rewrite`.
    pub(crate) fn rewrite_path_and_query(&self, uri: &http::Uri) -> Option<String> {
        let rw = &self.config.rewrite;
        if rw.strip_prefix.is_none() && rw.add_prefix.is_none() {
            return None;
        }
        let mut path = uri.path();
        if let Some(strip) = &rw.strip_prefix {
            if let Some(rest) = path.strip_prefix(strip.as_str()) {
                path = rest;
            }
        }
        let mut out = String::with_capacity(uri.path().len() + 16);
        if let Some(add) = &rw.add_prefix {
            out.push_str(add.trim_end_matches('/'));
        }
        if !path.starts_with('/') {
            out.push('/');
        }
        out.push_str(path);
        if let Some(q) = uri.query() {
            out.push('?');
            out.push_str(q);
        }
        Some(out)
    }
}

fn host_matches(pattern: &HostPattern, host: &str) -> bool {
    match pattern {
        HostPattern::Exact(h) => h == host,
        HostPattern::Suffix(suffix) => host.len() > suffix.len() && host.ends_with(suffix.as_str()),
    }
}

/// The routes that apply to one listener, in declared order.
#[derive(Debug, Default)]
pub(crate) struct Router {
    routes: Vec<Arc<CompiledRoute>>,
}

impl Router {
    pub(crate) fn new(routes: Vec<Arc<CompiledRoute>>) -> Self {
        Self { routes }
    }

    /// The route named `name`, if this listener has it.
    pub(crate) fn by_name(&self, name: &str) -> Option<Arc<CompiledRoute>> {
        self.routes.iter().find(|r| r.config.name == name).cloned()
    }

    /// The first route that takes the request.
    pub(crate) fn find<B>(&self, req: &Request<B>) -> Option<&Arc<CompiledRoute>> {
        let host = request_host(req);
        let mut buf = [0u8; 256];
        let host = lowercase_host(host, &mut buf);
        self.routes.iter().find(|r| r.matches(host, req))
    }
}

/// The request's host: the Host header, else the URI authority (HTTP/2).
pub(crate) fn request_host<B>(req: &Request<B>) -> &str {
    req.headers()
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()))
        .unwrap_or("")
}

/// Strips the port and lowercases into `buf` without allocating.
fn lowercase_host<'a>(host: &'a str, buf: &'a mut [u8; 256]) -> &'a str {
    let host = if host.starts_with('[') {
        host.split_once(']')
            .map_or(host, |(h, _)| &host[..h.len() + 1])
    } else {
        host.split_once(':').map_or(host, |(h, _)| h)
    };
    if !host.bytes().any(|b| b.is_ascii_uppercase()) || host.len() > buf.len() {
        return host;
    }
    let out = &mut buf[..host.len()];
    out.copy_from_slice(host.as_bytes());
    out.make_ascii_lowercase();
    std::str::from_utf8(out).unwrap_or(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn router(toml_routes: &str) -> Router {
        let src = format!(
            "[[listeners]]\nname = \"l\"\nlisten = \"127.0.0.1:1\"\n[[clusters]]\nname = \"c\"\nendpoints = [\"127.0.0.1:2\"]\n{toml_routes}"
        );
        let config = levee_config::load_str(&src, levee_config::Format::Toml, "t.toml").unwrap();
        let registry = Arc::new(Registry::new());
        let cluster = ClusterRuntime::start(
            config.clusters[0].clone(),
            Default::default(),
            registry.clone(),
            levee_core::MonotonicClock::new(),
            Arc::new(crate::upstream::TcpConnector),
        )
        .await;
        Router::new(
            config
                .routes
                .into_iter()
                .map(|r| Arc::new(CompiledRoute::new(r, cluster.clone(), &registry)))
                .collect(),
        )
    }

    fn req(method: &str, host: &str, path: &str, headers: &[(&str, &str)]) -> Request<()> {
        let mut b = Request::builder()
            .method(method)
            .uri(path)
            .header("host", host);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap()
    }

    fn name(r: &Router, q: &Request<()>) -> Option<String> {
        r.find(q).map(|r| r.config.name.clone())
    }

    #[tokio::test]
    async fn first_match_in_declared_order() {
        let r = router(
            r#"
[[routes]]
name = "exact"
cluster = "c"
match = { hosts = ["api.example.com"], path = { exact = "/v1/items" } }
[[routes]]
name = "wild"
cluster = "c"
match = { hosts = ["*.example.com"], path = { prefix = "/v1" }, methods = ["GET"] }
[[routes]]
name = "regex"
cluster = "c"
match = { path = { regex = "/users/[0-9]+|/people/[0-9]+" }, headers = [{ name = "x-canary", exact = "1" }] }
[[routes]]
name = "present"
cluster = "c"
match = { headers = [{ name = "x-debug", present = true }, { name = "user-agent", regex = "^curl/" }] }
"#,
        )
        .await;
        assert_eq!(
            name(&r, &req("GET", "API.example.com:8080", "/v1/items", &[])).as_deref(),
            Some("exact")
        );
        assert_eq!(
            name(&r, &req("GET", "shop.example.com", "/v1/items", &[])).as_deref(),
            Some("wild")
        );
        assert_eq!(
            name(&r, &req("POST", "shop.example.com", "/v1/x", &[])),
            None
        );
        assert_eq!(
            name(&r, &req("GET", "example.com", "/v1/x", &[])),
            None,
            "wildcard needs a subdomain"
        );
        assert_eq!(
            name(&r, &req("GET", "x", "/users/42", &[("x-canary", "1")])).as_deref(),
            Some("regex")
        );
        assert_eq!(
            name(&r, &req("GET", "x", "/users/42/more", &[("x-canary", "1")])),
            None,
            "regex matches the whole path"
        );
        assert_eq!(
            name(&r, &req("GET", "x", "/users/42", &[("x-canary", "0")])),
            None
        );
        assert_eq!(
            name(
                &r,
                &req(
                    "GET",
                    "x",
                    "/",
                    &[("x-debug", ""), ("user-agent", "curl/8")]
                )
            )
            .as_deref(),
            Some("present")
        );
    }

    #[tokio::test]
    async fn rewrite_strips_and_adds_prefix() {
        let r = router(
            r#"
[[routes]]
name = "r"
cluster = "c"
match = { path = { prefix = "/api" } }
rewrite = { strip_prefix = "/api", add_prefix = "/v2" }
"#,
        )
        .await;
        let q = req("GET", "x", "/api/items?a=1", &[]);
        let route = r.find(&q).unwrap();
        assert_eq!(
            route.rewrite_path_and_query(q.uri()).as_deref(),
            Some("/v2/items?a=1")
        );
    }
}
