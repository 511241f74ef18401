//! Fault injection: what step 3 does to a request, and what an attempt
//! meets between Levee and an upstream.
//!
//! - **Request faults** (`[[routes.faults]]`, runtime faults on a route,
//!   and Envoy's `x-envoy-fault-*` headers where the route allows them): a
//!   request in a fault's scope (headers, tenant, client network, method)
//!   is drawn with the fault's weight and gets a delay (with jitter), an
//!   abort (an HTTP status, a gRPC status, or a reset), a response bandwidth
//!   limit, or several. `first` limits a fault to its first N requests;
//!   `max_active` to N requests faulted at once.
//! - **Upstream faults** (`[[clusters.faults]]` and runtime faults on a
//!   cluster): an attempt to an endpoint in scope is refused, hangs, is
//!   slowed, has its response body reset after some bytes, or is answered
//!   with an error status, all below the attempt loop, so retries,
//!   breakers and outlier detection react as to a real failure.
//! - **Runtime faults** ([`FaultBoard`]): set through the admin API with a
//!   mandatory expiry; swept when they expire and cleared by every
//!   reload, so a fault never outlives its expiry, a reload or a restart.
//!
//! A route with no fault pays one length check and one relaxed load.

use crate::router::CompiledRoute;
use http::{HeaderName, Method, Request};
use levee_config::{
    Fault, FaultAbort, FaultHeaders, HeaderRule, UpstreamFault, UpstreamFaultKind, WEIGHT_SCALE,
};
use levee_core::metrics::{names, Counter, Registry};
use levee_core::time::Instant;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Closing a connection (HTTP/1.1) or resetting a stream (HTTP/2) without
/// an answer: the error the service returns for a `reset` abort.
#[derive(Debug)]
pub(crate) struct Reset;

impl std::fmt::Display for Reset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("reset by an injected fault")
    }
}

impl std::error::Error for Reset {}

/// Draws true with `weight` basis points of a percent.
fn draw(weight: u32) -> bool {
    weight >= WEIGHT_SCALE
        || (levee_core::ids::random_u64() % u64::from(WEIGHT_SCALE)) < u64::from(weight)
}

/// `first` and `max_active` of one fault, and its count.
#[derive(Debug)]
struct Budget {
    first: Option<u64>,
    taken: AtomicU64,
    max_active: Option<u32>,
    active: Arc<AtomicU32>,
    injected: Arc<Counter>,
}

impl Budget {
    fn new(first: Option<u64>, max_active: Option<u32>, injected: Arc<Counter>) -> Self {
        Self {
            first,
            taken: AtomicU64::new(0),
            max_active,
            active: Arc::new(AtomicU32::new(0)),
            injected,
        }
    }

    /// A place for one more faulted request, if the fault has one left.
    fn take(&self) -> Option<Active> {
        if let Some(first) = self.first {
            if self.taken.fetch_add(1, Ordering::Relaxed) >= first {
                return None;
            }
        }
        let now = self.active.fetch_add(1, Ordering::Relaxed);
        if self.max_active.is_some_and(|max| now >= max) {
            self.active.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        self.injected.inc();
        Some(Active(self.active.clone()))
    }
}

/// A faulted request or attempt, counted against `max_active` until dropped.
#[derive(Debug)]
pub(crate) struct Active(Arc<AtomicU32>);

impl Drop for Active {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A request fault ready to match.
#[derive(Debug)]
pub(crate) struct RequestFault {
    config: Fault,
    headers: Vec<(HeaderName, HeaderRule)>,
    methods: Vec<Method>,
    expires: Option<Instant>,
    budget: Budget,
}

impl RequestFault {
    pub(crate) fn new(
        config: Fault,
        target: &str,
        expires: Option<Instant>,
        registry: &Registry,
    ) -> Self {
        let headers = config
            .when
            .headers
            .iter()
            .filter_map(|h| {
                Some((
                    HeaderName::from_bytes(h.name.as_bytes()).ok()?,
                    h.rule.clone(),
                ))
            })
            .collect();
        let methods = config
            .when
            .methods
            .iter()
            .filter_map(|m| Method::from_bytes(m.as_bytes()).ok())
            .collect();
        let injected = registry.counter(
            names::FAULTS_INJECTED,
            "Requests and attempts faults were injected into, by target and fault.",
            &[("target", target), ("fault", &config.name)],
        );
        Self {
            budget: Budget::new(config.first, config.max_active, injected),
            headers,
            methods,
            expires,
            config,
        }
    }

    fn in_scope<B>(
        &self,
        req: &Request<B>,
        peer: IpAddr,
        tenant: &mut dyn FnMut() -> Option<Arc<str>>,
    ) -> bool {
        let when = &self.config.when;
        if !self.methods.is_empty() && !self.methods.contains(req.method()) {
            return false;
        }
        if !when.clients.is_empty() && !when.clients.iter().any(|n| n.contains(peer)) {
            return false;
        }
        let headers_match = self.headers.iter().all(|(name, rule)| {
            let mut values = req.headers().get_all(name).iter();
            match rule {
                HeaderRule::Present => values.next().is_some(),
                HeaderRule::Exact(v) => values.any(|x| x.as_bytes() == v.as_bytes()),
                HeaderRule::Regex(r) => {
                    values.any(|x| x.to_str().is_ok_and(|s| r.regex().is_match(s)))
                }
            }
        });
        if !headers_match {
            return false;
        }
        when.tenants.is_empty() || tenant().is_some_and(|t| when.tenants.iter().any(|w| **w == *t))
    }

    fn injection(&self, active: Active) -> Injection {
        let c = &self.config;
        let jitter = if c.jitter.is_zero() {
            Duration::ZERO
        } else {
            let nanos = u64::try_from(c.jitter.as_nanos()).unwrap_or(u64::MAX);
            Duration::from_nanos(levee_core::ids::random_u64() % nanos.max(1))
        };
        Injection {
            delay: c.delay.map(|d| d + jitter),
            abort: c.abort,
            bandwidth: c.bandwidth,
            _active: active,
        }
    }
}

/// What step 3 does to one request.
#[derive(Debug)]
pub(crate) struct Injection {
    pub(crate) delay: Option<Duration>,
    pub(crate) abort: Option<FaultAbort>,
    pub(crate) bandwidth: Option<u64>,
    /// Held until the request's record is written.
    _active: Active,
}

/// An upstream fault ready to match.
#[derive(Debug)]
pub(crate) struct AttemptFault {
    config: UpstreamFault,
    expires: Option<Instant>,
    budget: Budget,
}

impl AttemptFault {
    pub(crate) fn new(
        config: UpstreamFault,
        target: &str,
        expires: Option<Instant>,
        registry: &Registry,
    ) -> Self {
        let injected = registry.counter(
            names::FAULTS_INJECTED,
            "Requests and attempts faults were injected into, by target and fault.",
            &[("target", target), ("fault", &config.name)],
        );
        Self {
            budget: Budget::new(config.first, config.max_active, injected),
            expires,
            config,
        }
    }
}

/// What an attempt meets (see [`attempt_fault`]).
#[derive(Debug)]
pub(crate) struct AttemptInjection {
    pub(crate) kind: UpstreamFaultKind,
    pub(crate) _active: Active,
}

/// Runtime faults, by route and by cluster, published for the request
/// path (one load) and changed by the admin API.
#[derive(Debug)]
pub struct FaultBoard {
    any: AtomicBool,
    routes: arc_swap::ArcSwap<HashMap<String, Arc<[Arc<RequestFault>]>>>,
    clusters: arc_swap::ArcSwap<HashMap<String, Arc<[Arc<AttemptFault>]>>>,
    entries: Mutex<Vec<RuntimeEntry>>,
    next_id: AtomicU64,
    registry: Arc<Registry>,
}

#[derive(Debug, Clone)]
enum RuntimeKind {
    Route(Arc<RequestFault>),
    Cluster(Arc<AttemptFault>),
}

#[derive(Debug, Clone)]
struct RuntimeEntry {
    id: u64,
    target: String,
    kind: RuntimeKind,
    expires: Instant,
    expires_unix_secs: u64,
}

/// A runtime fault as the admin API lists it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RuntimeFaultStatus {
    /// Its id (for `DELETE /api/v1/faults/{id}`).
    pub id: u64,
    /// `route` or `cluster`.
    pub on: &'static str,
    /// The route's or cluster's name.
    pub target: String,
    /// Its name.
    pub name: String,
    /// When it removes itself (UNIX seconds).
    pub expires_unix: u64,
    /// Seconds left.
    pub expires_in_seconds: f64,
    /// Requests or attempts it was injected into.
    pub injected: u64,
    /// Faulted at this moment.
    pub active: u32,
}

impl FaultBoard {
    pub(crate) fn new(registry: Arc<Registry>) -> Self {
        Self {
            any: AtomicBool::new(false),
            routes: Default::default(),
            clusters: Default::default(),
            entries: Mutex::new(Vec::new()),
            next_id: AtomicU64::new(1),
            registry,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<RuntimeEntry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds `fault` (the admin API has checked that its target exists).
    pub fn add(&self, fault: levee_config::RuntimeFault) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let expires = levee_core::time::now() + fault.expires_in;
        let expires_unix_secs = levee_core::time::unix_secs() + fault.expires_in.as_secs();
        let (target, kind) = match fault.target {
            levee_config::FaultTarget::Route(route, f) => {
                let f = RequestFault::new(f, &route, Some(expires), &self.registry);
                (route, RuntimeKind::Route(Arc::new(f)))
            }
            levee_config::FaultTarget::Cluster(cluster, f) => {
                let f = AttemptFault::new(f, &cluster, Some(expires), &self.registry);
                (cluster, RuntimeKind::Cluster(Arc::new(f)))
            }
        };
        let mut entries = self.lock();
        entries.push(RuntimeEntry {
            id,
            target,
            kind,
            expires,
            expires_unix_secs,
        });
        self.publish(&entries);
        id
    }

    /// Removes fault `id`; false when there is none.
    pub fn remove(&self, id: u64) -> bool {
        let mut entries = self.lock();
        let before = entries.len();
        entries.retain(|e| e.id != id);
        let removed = entries.len() != before;
        self.publish(&entries);
        removed
    }

    /// Removes every runtime fault (a reload commits).
    pub(crate) fn clear(&self) {
        let mut entries = self.lock();
        entries.clear();
        self.publish(&entries);
    }

    /// Removes expired faults; returns how many are left.
    pub(crate) fn sweep(&self) -> usize {
        let now = levee_core::time::now();
        let mut entries = self.lock();
        let before = entries.len();
        entries.retain(|e| e.expires > now);
        if entries.len() != before {
            self.publish(&entries);
        }
        entries.len()
    }

    /// The runtime faults now.
    pub fn list(&self) -> Vec<RuntimeFaultStatus> {
        self.sweep();
        let now = levee_core::time::now();
        self.lock()
            .iter()
            .map(|e| {
                let (on, name, budget) = match &e.kind {
                    RuntimeKind::Route(f) => ("route", f.config.name.clone(), &f.budget),
                    RuntimeKind::Cluster(f) => ("cluster", f.config.name.clone(), &f.budget),
                };
                RuntimeFaultStatus {
                    id: e.id,
                    on,
                    target: e.target.clone(),
                    name,
                    expires_unix: e.expires_unix_secs,
                    expires_in_seconds: e.expires.saturating_duration_since(now).as_secs_f64(),
                    injected: budget.injected.get(),
                    active: budget.active.load(Ordering::Relaxed),
                }
            })
            .collect()
    }

    fn publish(&self, entries: &[RuntimeEntry]) {
        let mut routes: HashMap<String, Vec<Arc<RequestFault>>> = HashMap::new();
        let mut clusters: HashMap<String, Vec<Arc<AttemptFault>>> = HashMap::new();
        for e in entries {
            match &e.kind {
                RuntimeKind::Route(f) => {
                    routes.entry(e.target.clone()).or_default().push(f.clone())
                }
                RuntimeKind::Cluster(f) => clusters
                    .entry(e.target.clone())
                    .or_default()
                    .push(f.clone()),
            }
        }
        self.routes.store(Arc::new(
            routes.into_iter().map(|(k, v)| (k, Arc::from(v))).collect(),
        ));
        self.clusters.store(Arc::new(
            clusters
                .into_iter()
                .map(|(k, v)| (k, Arc::from(v)))
                .collect(),
        ));
        self.any.store(!entries.is_empty(), Ordering::Relaxed);
        self.registry
            .gauge(
                names::FAULTS_RUNTIME,
                "Runtime faults set through the admin API, not yet expired.",
                &[],
            )
            .set(i64::try_from(entries.len()).unwrap_or(i64::MAX));
    }
}

fn live(expires: Option<Instant>) -> bool {
    expires.is_none_or(|at| levee_core::time::now() < at)
}

/// Step 3: the fault this request gets, if any: the route's configured
/// faults, then its runtime faults, then Envoy's headers where allowed.
pub(crate) fn request_fault<B>(
    route: &CompiledRoute,
    board: &FaultBoard,
    req: &Request<B>,
    peer: IpAddr,
    mut tenant: impl FnMut() -> Option<Arc<str>>,
) -> Option<Injection> {
    let runtime = board.any.load(Ordering::Relaxed);
    if route.faults.is_empty() && !runtime && route.fault_headers.is_none() {
        return None;
    }
    let runtime_faults = runtime
        .then(|| board.routes.load().get(&route.config.name).cloned())
        .flatten();
    let candidates = route
        .faults
        .iter()
        .chain(runtime_faults.iter().flat_map(|f| f.iter()));
    for fault in candidates {
        if !live(fault.expires)
            || !fault.in_scope(req, peer, &mut tenant)
            || !draw(fault.config.weight)
        {
            continue;
        }
        if let Some(active) = fault.budget.take() {
            return Some(fault.injection(active));
        }
    }
    let headers = route.fault_headers.as_ref()?;
    envoy_headers(&headers.0, &headers.1, req)
}

/// Envoy's fault-filter headers, within the route's caps.
fn envoy_headers<B>(
    caps: &FaultHeaders,
    budget: &HeaderBudget,
    req: &Request<B>,
) -> Option<Injection> {
    let h = req.headers();
    let number = |name: &str| -> Option<u64> { h.get(name)?.to_str().ok()?.trim().parse().ok() };
    // Percentages are whole percents; missing means all.
    let share = |name: &str| -> u32 {
        let asked = number(name).map_or(WEIGHT_SCALE, |p| (p.min(100) as u32) * 100);
        asked.min(caps.max_weight)
    };
    let delay = number("x-envoy-fault-delay-request")
        .filter(|_| draw(share("x-envoy-fault-delay-request-percentage")))
        .map(|ms| Duration::from_millis(ms).min(caps.max_delay));
    let abort = match (
        number("x-envoy-fault-abort-request"),
        number("x-envoy-fault-abort-grpc-request"),
    ) {
        (Some(status), _) if (200..600).contains(&status) => {
            Some(FaultAbort::Status(status as u16))
        }
        (_, Some(code)) if (1..=16).contains(&code) => Some(FaultAbort::Grpc(code as u32)),
        _ => None,
    }
    .filter(|_| draw(share("x-envoy-fault-abort-request-percentage")));
    // Envoy's throughput header is in KiB per second.
    let bandwidth = number("x-envoy-fault-throughput-response")
        .filter(|kib| *kib > 0)
        .map(|kib| kib * 1024);
    if delay.is_none() && abort.is_none() && bandwidth.is_none() {
        return None;
    }
    let active = budget.take()?;
    Some(Injection {
        delay,
        abort,
        bandwidth,
        _active: active,
    })
}

/// The place and count of faults asked for by headers on one route.
#[derive(Debug)]
pub(crate) struct HeaderBudget(Budget);

impl HeaderBudget {
    pub(crate) fn new(caps: &FaultHeaders, route: &str, registry: &Registry) -> Self {
        let injected = registry.counter(
            names::FAULTS_INJECTED,
            "Requests and attempts faults were injected into, by target and fault.",
            &[("target", route), ("fault", "envoy-headers")],
        );
        Self(Budget::new(None, Some(caps.max_active), injected))
    }

    fn take(&self) -> Option<Active> {
        self.0.take()
    }
}

/// The upstream fault an attempt to `endpoint` (as configured) meets, if
/// any: the cluster's configured faults, then its runtime faults.
pub(crate) fn attempt_fault(
    configured: &[Arc<AttemptFault>],
    board: &FaultBoard,
    cluster: &str,
    endpoint: &str,
) -> Option<AttemptInjection> {
    let runtime = board.any.load(Ordering::Relaxed);
    if configured.is_empty() && !runtime {
        return None;
    }
    let runtime_faults = runtime
        .then(|| board.clusters.load().get(cluster).cloned())
        .flatten();
    let candidates = configured
        .iter()
        .chain(runtime_faults.iter().flat_map(|f| f.iter()));
    for fault in candidates {
        let c = &fault.config;
        let in_scope = c.endpoints.is_empty() || c.endpoints.iter().any(|e| e == endpoint);
        if !live(fault.expires) || !in_scope || !draw(c.weight) {
            continue;
        }
        if let Some(active) = fault.budget.take() {
            return Some(AttemptInjection {
                kind: c.kind,
                _active: active,
            });
        }
    }
    None
}

/// The gateway's answer for an `abort` (not a reset): the status, or the
/// gRPC status in a trailers-only answer, marked `levee-error:
/// fault_injected`.
pub(crate) fn abort_response(
    abort: FaultAbort,
    request_id: &http::HeaderValue,
) -> (http::Response<crate::body::ProxyBody>, levee_core::Outcome) {
    use http::{header, HeaderValue};
    let (mut resp, outcome) = match abort {
        FaultAbort::Grpc(code) => {
            let mut resp = http::Response::new(crate::body::ProxyBody::empty());
            let h = resp.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/grpc"),
            );
            h.insert("grpc-status", HeaderValue::from(code));
            h.insert("grpc-message", HeaderValue::from_static("fault%20injected"));
            (resp, levee_core::Outcome::Grpc(code as u8))
        }
        other => {
            // A reset never gets here; answer it as a 503 if it did.
            let status = match other {
                FaultAbort::Status(s) => s,
                _ => 503,
            };
            let body = bytes::Bytes::from_static(
                b"{\"error\":\"fault_injected\",\"message\":\"this answer is an injected fault\"}\n",
            );
            let mut resp = http::Response::new(crate::body::ProxyBody::full(body));
            *resp.status_mut() =
                http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::SERVICE_UNAVAILABLE);
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            (resp, levee_core::Outcome::Response(status))
        }
    };
    let h = resp.headers_mut();
    h.insert(
        crate::headers::LEVEE_ERROR,
        HeaderValue::from_static("fault_injected"),
    );
    h.insert(crate::headers::REQUEST_ID, request_id.clone());
    (resp, outcome)
}

/// Sweeps expired runtime faults every half second while the gateway runs.
pub(crate) async fn sweep_loop(board: std::sync::Weak<FaultBoard>) {
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let Some(board) = board.upgrade() else { return };
        board.sweep();
    }
}

/// Compiles a route's configured faults.
pub(crate) fn compile_route_faults(
    route: &levee_config::Route,
    registry: &Registry,
) -> Arc<[Arc<RequestFault>]> {
    route
        .faults
        .iter()
        .map(|f| Arc::new(RequestFault::new(f.clone(), &route.name, None, registry)))
        .collect()
}

/// Compiles a cluster's configured faults.
pub(crate) fn compile_cluster_faults(
    cluster: &levee_config::Cluster,
    registry: &Registry,
) -> Arc<[Arc<AttemptFault>]> {
    cluster
        .faults
        .iter()
        .map(|f| Arc::new(AttemptFault::new(f.clone(), &cluster.name, None, registry)))
        .collect()
}
