//! Clusters at run time: endpoints with their live state (health, in-flight,
//! latency estimate), the balancer over the current candidates, the upstream
//! connection pool, DNS re-resolution and the loops of endpoint discovery
//! (module `discovery`), active health checks, and passive health fed by
//! every attempt: outlier ejection and circuit breakers (per endpoint and
//! for the cluster) with the cluster's bulkheads.
//!
//! The candidate set, grouped by priority and zone with its balancers, is
//! one immutable [`ClusterView`] (module `view`) behind an atomic pointer,
//! rebuilt when anything changes it, so a pick takes no lock.
//!
//! The endpoint list itself changes only in `refresh_endpoints` (a new DNS
//! answer or discovered set): an endpoint whose address and placement stay
//! keeps its `EndpointState` (health, breaker, EWMA, in-flight count,
//! pooled connections, outlier record); a removed one leaves the view, and
//! requests already holding it finish on it.

use crate::body::UpstreamBody;
use crate::discovery::{Discovery, Offer, Source};
use crate::guard::{breaker_verdict, Bulkheads, GuardedBreaker};
use crate::metrics::ClusterMetrics;
use crate::upstream::{Connector, Http1Conn, IdleConnections, Transport};
use crate::view::{level_health, ClusterView, ViewContext};
use arc_swap::ArcSwap;
use levee_config::{BalancerKind, Cluster, HashOn};
use levee_core::metrics::{names, Gauge, Registry};
use levee_core::{Clock, MonotonicClock, Nanos};
use levee_core::{ErrorKind, Outcome};
use levee_policy::locality::PriorityFailover;
use levee_policy::outlier::{OutlierConfig, OutlierDetector};
use levee_policy::{Algorithm, EndpointLoad, PeakEwma};
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::task::JoinHandle;

/// Time constant of the peak-EWMA estimate.
const EWMA_DECAY_NS: f64 = 10e9;
/// Estimate for an endpoint that has not answered yet.
const EWMA_INITIAL_NS: f64 = 1e6;

/// One resolved endpoint and its live state.
#[derive(Debug)]
pub(crate) struct EndpointState {
    pub(crate) addr: SocketAddr,
    pub(crate) label: String,
    pub(crate) authority: http::uri::Authority,
    /// `ip:port` as a Host value, built once.
    pub(crate) host_value: http::HeaderValue,
    pub(crate) configured: String,
    /// Where it came from: the config, the file or SRV records.
    pub(crate) source: Source,
    pub(crate) weight: u32,
    pub(crate) zone: Option<String>,
    pub(crate) region: Option<String>,
    healthy: AtomicBool,
    /// Taken out of rotation by outlier detection.
    ejected: AtomicBool,
    ejected_gauge: Arc<Gauge>,
    successes: AtomicU32,
    failures: AtomicU32,
    pub(crate) in_flight: Arc<Gauge>,
    healthy_gauge: Arc<Gauge>,
    pub(crate) ewma: PeakEwma,
    /// Idle HTTP/1.1 connections to this endpoint.
    pub(crate) idle: IdleConnections,
    /// The endpoint's circuit breaker, when configured.
    pub(crate) breaker: Option<GuardedBreaker>,
    /// Kept out of the view while its breaker refuses everything.
    breaker_open: AtomicBool,
    pub(crate) priority: u32,
    /// When it last came back into rotation (0: in it from the start);
    /// slow start ramps its weight from there.
    returned_at: AtomicU64,
    /// Attempts awaiting an answer and its last progress: a frozen
    /// endpoint stops getting new requests (`ClusterRuntime::pick`).
    pub(crate) stall: levee_policy::stall::StallWatch,
}

impl EndpointState {
    fn new(
        registry: &Registry,
        cluster: &str,
        addr: SocketAddr,
        ep: &levee_config::Endpoint,
        source: Source,
        breaker: Option<&levee_config::BreakerSettings>,
        now: Nanos,
    ) -> Self {
        let label = addr.to_string();
        let labels = [("cluster", cluster), ("endpoint", label.as_str())];
        let healthy_gauge = registry.gauge(
            names::ENDPOINT_HEALTHY,
            "1 when the endpoint passes health checks (or has none).",
            &labels,
        );
        healthy_gauge.set(1);
        Self {
            addr,
            authority: label
                .parse()
                .unwrap_or_else(|_| http::uri::Authority::from_static("invalid")),
            host_value: http::HeaderValue::from_str(&label)
                .unwrap_or_else(|_| http::HeaderValue::from_static("invalid")),
            label: label.clone(),
            configured: ep.address.clone(),
            source,
            weight: ep.weight.max(1),
            zone: ep.zone.clone(),
            region: ep.region.clone(),
            healthy: AtomicBool::new(true),
            ejected: AtomicBool::new(false),
            ejected_gauge: registry.gauge(
                names::ENDPOINT_EJECTED,
                "1 while outlier detection keeps the endpoint out of rotation.",
                &labels,
            ),
            successes: AtomicU32::new(0),
            failures: AtomicU32::new(0),
            in_flight: registry.gauge(
                names::ENDPOINT_IN_FLIGHT,
                "Requests in flight to the endpoint.",
                &labels,
            ),
            healthy_gauge,
            ewma: PeakEwma::new(EWMA_INITIAL_NS, now),
            idle: IdleConnections::default(),
            breaker: breaker.map(|b| {
                GuardedBreaker::new(
                    b,
                    registry,
                    &[
                        ("cluster", cluster),
                        ("endpoint", label.as_str()),
                        ("scope", "endpoint"),
                    ],
                )
            }),
            breaker_open: AtomicBool::new(false),
            priority: ep.priority,
            returned_at: AtomicU64::new(0),
            stall: Default::default(),
        }
    }

    /// Whether this is the endpoint `ep` from `source` resolves to at
    /// `addr`: same address, source and placement. A changed weight, zone,
    /// region or priority makes a new endpoint.
    fn is(&self, addr: SocketAddr, source: Source, ep: &levee_config::Endpoint) -> bool {
        self.addr == addr
            && self.source == source
            && self.weight == ep.weight.max(1)
            && self.zone == ep.zone
            && self.region == ep.region
            && self.priority == ep.priority
    }

    /// Whether health checks currently pass.
    pub(crate) fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Whether outlier detection keeps the endpoint out of rotation.
    pub(crate) fn is_ejected(&self) -> bool {
        self.ejected.load(Ordering::Relaxed)
    }

    /// Whether health checks and outlier detection let it take traffic.
    pub(crate) fn takes_traffic(&self) -> bool {
        self.is_healthy() && !self.is_ejected()
    }

    /// When it last came back into rotation (0: never left).
    pub(crate) fn returned_at(&self) -> Nanos {
        self.returned_at.load(Ordering::Relaxed)
    }

    /// Whether its breaker keeps the endpoint out of rotation.
    pub(crate) fn is_breaker_open(&self) -> bool {
        self.breaker_open.load(Ordering::Relaxed)
    }

    fn set_ejected(&self, ejected: bool) {
        self.ejected.store(ejected, Ordering::Relaxed);
        self.ejected_gauge.set(i64::from(ejected));
    }

    /// Records a probe result; returns true when the health state flipped.
    fn record_probe(&self, ok: bool, healthy_threshold: u32, unhealthy_threshold: u32) -> bool {
        if ok {
            self.failures.store(0, Ordering::Relaxed);
            let n = self.successes.fetch_add(1, Ordering::Relaxed) + 1;
            if !self.is_healthy() && n >= healthy_threshold {
                self.healthy.store(true, Ordering::Relaxed);
                self.healthy_gauge.set(1);
                return true;
            }
        } else {
            self.successes.store(0, Ordering::Relaxed);
            let n = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
            if self.is_healthy() && n >= unhealthy_threshold {
                self.healthy.store(false, Ordering::Relaxed);
                self.healthy_gauge.set(0);
                return true;
            }
        }
        false
    }
}

impl EndpointLoad for EndpointState {
    fn in_flight(&self) -> u64 {
        self.in_flight.get().max(0) as u64
    }
    fn weight(&self) -> u32 {
        self.weight
    }
    fn latency_cost(&self, now: Nanos) -> f64 {
        self.ewma.cost(now, EWMA_DECAY_NS)
    }
}

/// Settings from outside the cluster's own section that shape it: the
/// gateway's zone and the tenants' weights. A change rebuilds the cluster.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct ClusterContext {
    /// The gateway's own zone (`runtime.zone`).
    pub(crate) zone: Option<String>,
    /// Known tenants and their weights (`tenants.list`).
    pub(crate) tenants: Vec<levee_config::TenantConfig>,
    /// The config file's directory: where a relative discovery file is.
    pub(crate) base_dir: Option<PathBuf>,
}

/// A cluster's runtime: kept across reloads while its config is unchanged.
#[derive(Debug)]
pub(crate) struct ClusterRuntime {
    pub(crate) config: Cluster,
    pub(crate) transport: Transport,
    view: ArcSwap<ClusterView>,
    /// The endpoints now; the view is built from it. Held while a view is
    /// built and stored, so that a rebuild (health, breakers) never stores
    /// a view of a list that a refresh replaced meanwhile.
    members: Mutex<Vec<Arc<EndpointState>>>,
    /// One refresh at a time: a slow lookup's older answer must not
    /// overwrite a newer one.
    refresh_serial: tokio::sync::Mutex<()>,
    /// The last good addresses of each DNS name, used when a lookup fails.
    answers: Mutex<HashMap<String, Vec<IpAddr>>>,
    /// Endpoint sources besides the config, when configured.
    pub(crate) discovery: Option<Discovery>,
    pub(crate) metrics: ClusterMetrics,
    algorithm: Algorithm,
    /// What the cluster takes from the rest of the config.
    pub(crate) context: ClusterContext,
    /// Which priority levels take traffic, with the failback hold; touched
    /// only when the view is rebuilt.
    failover: Mutex<PriorityFailover>,
    registry: Arc<Registry>,
    clock: MonotonicClock,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    /// Passive health, when configured: per cluster, held for a few
    /// arithmetic operations per attempt.
    outlier: Option<Mutex<OutlierState>>,
    /// The cluster-wide breaker, when configured.
    pub(crate) breaker: Option<GuardedBreaker>,
    /// Caps on requests, pending requests, retries and connections.
    pub(crate) bulkheads: Bulkheads,
    /// The concurrency limit and admission queue, when configured.
    pub(crate) queue: Option<Arc<crate::queue::ClusterQueue>>,
    /// Recent response-head latency, the yardstick of stalls.
    recent_latency: levee_policy::stall::RecentLatency,
    /// Faults injected between Levee and the endpoints (`crate::fault`).
    pub(crate) faults: Arc<[Arc<crate::fault::AttemptFault>]>,
}

/// The outlier detector and the endpoints its indexes refer to.
#[derive(Debug)]
struct OutlierState {
    detector: OutlierDetector,
    endpoints: Vec<Arc<EndpointState>>,
}

fn outlier_config(o: &levee_config::OutlierDetection) -> OutlierConfig {
    OutlierConfig {
        consecutive_5xx: o.consecutive_5xx,
        consecutive_gateway: o.consecutive_gateway_errors,
        success_rate_stdev_factor: o.success_rate_stdev_factor,
        success_rate_min_hosts: o.success_rate_min_hosts as usize,
        success_rate_min_requests: o.success_rate_min_requests,
        base_ejection: o.base_ejection_time,
        max_ejection: o.max_ejection_time,
        max_ejection_percent: o.max_ejection_percent,
        latency_factor: o.latency_factor,
        latency_min_hosts: o.latency_min_hosts as usize,
        latency_min_requests: o.latency_min_requests,
    }
}

impl Drop for ClusterRuntime {
    fn drop(&mut self) {
        for task in self.tasks.get_mut().map(std::mem::take).unwrap_or_default() {
            task.abort();
        }
    }
}

fn algorithm(kind: BalancerKind) -> Algorithm {
    match kind {
        BalancerKind::RoundRobin => Algorithm::RoundRobin,
        BalancerKind::LeastRequest => Algorithm::LeastRequest,
        BalancerKind::PeakEwma => Algorithm::PeakEwma,
        BalancerKind::RingHash => Algorithm::RingHash,
        BalancerKind::Maglev => Algorithm::Maglev,
    }
}

/// An endpoint as configured or discovered, before DNS.
type Declared = (Source, levee_config::Endpoint);

/// What resolving the declared endpoints gave.
struct Resolution {
    /// Each address, with the index of its declared endpoint; an address
    /// declared twice is kept once (the first).
    endpoints: Vec<(SocketAddr, usize)>,
    /// DNS names looked up.
    looked_up: usize,
    /// Names whose lookup failed with no earlier answer to fall back on.
    failed: usize,
}

/// Resolves the declared endpoints: IP addresses as they are, DNS names
/// through the system resolver, concurrently. A name whose lookup fails
/// keeps its last good addresses from `answers`.
async fn resolve(
    cluster: &str,
    declared: &[Declared],
    answers: &Mutex<HashMap<String, Vec<IpAddr>>>,
) -> Resolution {
    let mut names: Vec<&str> = declared
        .iter()
        .map(|(_, e)| e.host.as_str())
        .filter(|h| h.parse::<IpAddr>().is_err())
        .collect();
    names.sort_unstable();
    names.dedup();
    let lookups = names.iter().map(|name| async move {
        let found = tokio::net::lookup_host((*name, 0)).await.map(|addrs| {
            let mut ips: Vec<IpAddr> = addrs.map(|a| a.ip()).collect();
            ips.sort();
            ips.dedup();
            ips
        });
        (*name, found)
    });
    let results = futures_util::future::join_all(lookups).await;
    let mut failed = 0;
    let resolved: HashMap<&str, Vec<IpAddr>> = {
        let mut last = answers.lock().unwrap_or_else(|e| e.into_inner());
        let mut resolved = HashMap::new();
        for (name, found) in results {
            match found {
                Ok(ips) if !ips.is_empty() => {
                    last.insert(name.to_string(), ips.clone());
                    resolved.insert(name, ips);
                }
                other => {
                    let error = match other {
                        Err(e) => e.to_string(),
                        Ok(_) => "no addresses".to_string(),
                    };
                    match last.get(name) {
                        Some(ips) => {
                            tracing::warn!(cluster = %cluster, name = %name, error = %error, "DNS resolution failed; keeping the last answer");
                            resolved.insert(name, ips.clone());
                        }
                        None => {
                            tracing::warn!(cluster = %cluster, name = %name, error = %error, "DNS resolution failed");
                            failed += 1;
                        }
                    }
                }
            }
        }
        // Names no longer declared are forgotten.
        last.retain(|name, _| names.contains(&name.as_str()));
        resolved
    };
    let mut seen = HashSet::new();
    let mut endpoints = Vec::new();
    for (i, (_, ep)) in declared.iter().enumerate() {
        let ips = match ep.host.parse::<IpAddr>() {
            Ok(ip) => vec![ip],
            Err(_) => resolved.get(ep.host.as_str()).cloned().unwrap_or_default(),
        };
        for ip in ips {
            let addr = SocketAddr::new(ip, ep.port);
            if seen.insert(addr) {
                endpoints.push((addr, i));
            }
        }
    }
    Resolution {
        endpoints,
        looked_up: names.len(),
        failed,
    }
}

/// What a refresh did to the cluster's endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Refreshed {
    /// The endpoint list changed.
    pub(crate) changed: bool,
    /// Nothing resolved: the endpoints stayed as they were.
    pub(crate) kept: bool,
    /// DNS names looked up.
    pub(crate) looked_up: usize,
    /// Names that did not resolve (and had no earlier answer).
    pub(crate) failed: usize,
}

impl ClusterRuntime {
    /// Builds the cluster (resolving DNS names) and starts its background
    /// tasks. Its HTTP/1.1 connections are opened by `connector`.
    pub(crate) async fn start(
        config: Cluster,
        context: ClusterContext,
        registry: Arc<Registry>,
        clock: MonotonicClock,
        connector: Arc<dyn Connector>,
    ) -> Arc<Self> {
        let discovery = config.discovery.as_ref().map(|d| {
            Discovery::new(
                &config.name,
                d,
                context.base_dir.as_deref(),
                registry.clone(),
            )
        });
        let file_watch = discovery
            .as_ref()
            .and_then(|d| d.file_path())
            .map(crate::discovery::watch_file);
        if let Some(d) = &discovery {
            // The first sets before the first view: the cluster serves
            // from its first request.
            for (source, offer) in [
                (Source::File, d.read_file().await),
                (Source::Srv, d.query_srv().await),
            ] {
                if offer == Offer::Changed {
                    d.count(source.as_str(), "applied");
                }
            }
        }
        let answers = Mutex::new(HashMap::new());
        let declared = declared(&config, discovery.as_ref());
        let resolved = resolve(&config.name, &declared, &answers).await;
        let now = clock.now();
        let endpoint_breaker = config.circuit_breaker.endpoint.as_ref();
        let endpoints: Vec<Arc<EndpointState>> = resolved
            .endpoints
            .iter()
            .map(|(addr, i)| {
                let (source, ep) = &declared[*i];
                Arc::new(EndpointState::new(
                    &registry,
                    &config.name,
                    *addr,
                    ep,
                    *source,
                    endpoint_breaker,
                    now,
                ))
            })
            .collect();
        let members = Mutex::new(endpoints.clone());
        let algorithm = algorithm(config.balancer.kind);
        let endpoints_for_outlier = endpoints.clone();
        let (levels, shares) = level_health(&endpoints);
        let mut failover = PriorityFailover::new(levels.len(), config.locality.failback_delay);
        let loads = failover
            .update(now, &shares, config.locality.overprovisioning)
            .to_vec();
        let view = ClusterView::build(
            ViewContext {
                algorithm,
                locality: &config.locality,
                local_zone: context.zone.as_deref(),
                slow_start: config.slow_start.as_ref(),
                now,
            },
            endpoints,
            loads,
        );
        let metrics = ClusterMetrics::new(&registry, &config.name);
        metrics.panic_mode.set(i64::from(view.panic));
        metrics.endpoints.set(view.all.len() as i64);
        let bulkheads = Bulkheads::new(&config.limits, &registry, &config.name);
        let runtime = Arc::new(Self {
            faults: crate::fault::compile_cluster_faults(&config, &registry),
            transport: Transport::new(&config, bulkheads.connections.clone(), connector),
            breaker: config.circuit_breaker.cluster.as_ref().map(|b| {
                GuardedBreaker::new(
                    b,
                    &registry,
                    &[("cluster", config.name.as_str()), ("scope", "cluster")],
                )
            }),
            bulkheads,
            queue: config.concurrency.as_ref().map(|c| {
                crate::queue::ClusterQueue::new(c, &context.tenants, &config.name, &registry, clock)
            }),
            context,
            view: ArcSwap::from_pointee(view),
            members,
            refresh_serial: tokio::sync::Mutex::new(()),
            answers,
            discovery,
            recent_latency: Default::default(),
            metrics,
            algorithm,
            failover: Mutex::new(failover),
            registry,
            clock,
            tasks: Mutex::new(Vec::new()),
            outlier: config.outlier_detection.as_ref().map(|o| {
                Mutex::new(OutlierState {
                    detector: OutlierDetector::new(outlier_config(o), endpoints_for_outlier.len()),
                    endpoints: endpoints_for_outlier,
                })
            }),
            config,
        });
        let mut tasks = Vec::new();
        if runtime.config.health_check.is_some() {
            tasks.push(tokio::spawn(health_loop(Arc::downgrade(&runtime))));
        }
        // Discovered endpoints may be DNS names too.
        let names = runtime
            .config
            .endpoints
            .iter()
            .any(|e| e.host.parse::<IpAddr>().is_err());
        if names || runtime.discovery.is_some() {
            tasks.push(tokio::spawn(dns_loop(Arc::downgrade(&runtime))));
        }
        if let Some(watch) = file_watch {
            tasks.push(tokio::spawn(crate::discovery::file_loop(
                Arc::downgrade(&runtime),
                watch,
            )));
        }
        if let Some(d) = &runtime.discovery {
            if d.has_srv() {
                tasks.push(tokio::spawn(crate::discovery::srv_loop(Arc::downgrade(
                    &runtime,
                ))));
            }
        }
        if runtime.outlier.is_some() {
            tasks.push(tokio::spawn(outlier_loop(Arc::downgrade(&runtime))));
        }
        if let Some(tick) = runtime.maintenance_tick() {
            tasks.push(tokio::spawn(maintenance_loop(
                Arc::downgrade(&runtime),
                tick,
            )));
        }
        if let Ok(mut t) = runtime.tasks.lock() {
            *t = tasks;
        }
        runtime
    }

    /// The cluster's name.
    pub(crate) fn name(&self) -> &str {
        &self.config.name
    }

    /// Chooses an endpoint for a request with hash key `hash`, skipping
    /// endpoints whose (half-open or ramping) breaker refuses the call.
    pub(crate) fn pick(
        &self,
        hash: Option<u64>,
        now: Nanos,
    ) -> Result<Arc<EndpointState>, (ErrorKind, String)> {
        self.pick_avoiding(hash, now, &[])
    }

    /// Chooses an endpoint for a retry or hedge: another one than those
    /// `tried` where the balancer offers one within a few draws (hash keys
    /// are not used: the hashed endpoint is the one that failed).
    pub(crate) fn pick_other(
        &self,
        now: Nanos,
        tried: &[Arc<EndpointState>],
    ) -> Result<Arc<EndpointState>, (ErrorKind, String)> {
        self.pick_avoiding(None, now, tried)
    }

    fn pick_avoiding(
        &self,
        hash: Option<u64>,
        now: Nanos,
        tried: &[Arc<EndpointState>],
    ) -> Result<Arc<EndpointState>, (ErrorKind, String)> {
        let view = self.view.load();
        let mut fallback = None;
        let mut refused = 0;
        let stall_after = self.config.stall_detection.map(|s| {
            levee_policy::stall::stall_threshold(
                self.recent_latency.get(),
                s.factor,
                u64::try_from(s.min.as_nanos()).unwrap_or(u64::MAX),
            )
        });
        for draw in 0..6 {
            // The hash decides the first draw only: on a refusal the next
            // endpoints are drawn as the balancer likes. The first draws
            // respect priority and zone; the last ones take any candidate.
            let key = if draw == 0 { hash } else { None };
            let random = levee_core::ids::random_u64();
            let group = if draw < 3 {
                view.choose(random)
            } else {
                &view.flat
            };
            let Some(i) = group
                .balancer
                .pick(&group.candidates, key, random.rotate_left(13), now)
            else {
                continue;
            };
            let candidate = &group.candidates[i];
            if tried.iter().any(|t| Arc::ptr_eq(t, candidate)) {
                fallback.get_or_insert_with(|| candidate.clone());
                continue;
            }
            if stall_after.is_some_and(|t| candidate.stall.stalled(now, t)) {
                // Frozen, by the look of its waiting requests: another
                // endpoint, unless every draw finds a stalled one.
                fallback.get_or_insert_with(|| candidate.clone());
                continue;
            }
            if candidate.breaker.as_ref().is_some_and(|b| !b.allow(now)) {
                refused += 1;
                continue;
            }
            return Ok(candidate.clone());
        }
        if refused > 0 {
            // Breakers refused every draw. Half-open breakers admit only
            // their probes and ramping ones a share, so a few random draws
            // can miss the endpoints that would take the request (a region
            // failing back has all of them): look at each once, the
            // chosen level's first, and refuse only when none admits.
            let start = levee_core::ids::random_u64();
            for group in [view.choose(start), &view.flat] {
                let n = group.candidates.len();
                for k in 0..n {
                    let candidate = &group.candidates[(start as usize).wrapping_add(k) % n];
                    let skip = tried.iter().any(|t| Arc::ptr_eq(t, candidate))
                        || stall_after.is_some_and(|t| candidate.stall.stalled(now, t));
                    if !skip && candidate.breaker.as_ref().is_none_or(|b| b.allow(now)) {
                        return Ok(candidate.clone());
                    }
                }
            }
        }
        if let Some(f) = fallback.filter(|f| f.breaker.as_ref().is_none_or(|b| b.allow(now))) {
            return Ok(f);
        }
        Err(if view.all_breakers_open || refused > 0 {
            (
                ErrorKind::CircuitOpen,
                format!(
                    "the circuit breakers of cluster {}'s endpoints refuse traffic",
                    self.config.name
                ),
            )
        } else {
            (
                ErrorKind::NoEndpoints,
                format!("cluster {} has no endpoints", self.config.name),
            )
        })
    }

    /// Records a response head that took `rtt_ns` from `endpoint`.
    pub(crate) fn observe_latency(&self, endpoint: &EndpointState, rtt_ns: u64, now: Nanos) {
        endpoint.ewma.observe(rtt_ns, now, EWMA_DECAY_NS);
        if self.config.stall_detection.is_some() {
            self.recent_latency.observe(rtt_ns);
        }
    }

    /// Now on this cluster's clock.
    pub(crate) fn now(&self) -> Nanos {
        self.clock.now()
    }

    /// `instant` on this cluster's clock (one clock read serves several uses).
    pub(crate) fn nanos_at(&self, instant: levee_core::time::Instant) -> Nanos {
        self.clock.nanos_at(instant)
    }

    /// Current view, for the admin API.
    pub(crate) fn view(&self) -> arc_swap::Guard<Arc<ClusterView>> {
        self.view.load()
    }

    /// The EWMA estimate of `endpoint` now, in seconds.
    pub(crate) fn ewma_seconds(&self, endpoint: &EndpointState) -> f64 {
        endpoint.ewma.cost(self.clock.now(), EWMA_DECAY_NS) / 1e9
    }

    /// Builds the view again from the endpoints now (health, ejections,
    /// breakers or a ramp changed what it holds).
    fn rebuild_view(&self) {
        let members = self.members.lock().unwrap_or_else(|e| e.into_inner());
        self.build_view(members.clone());
    }

    /// Builds and stores the view of `all`; called with `members` held.
    fn build_view(&self, all: Vec<Arc<EndpointState>>) {
        let now = self.clock.now();
        let previous = self.view.load();
        // Endpoints coming back into rotation start their slow-start ramp.
        if self.config.slow_start.is_some() {
            for e in &all {
                let was_in = previous.flat.candidates.iter().any(|c| Arc::ptr_eq(c, e));
                let back = e.takes_traffic() && !e.is_breaker_open();
                if back && !was_in && !previous.all.is_empty() {
                    e.returned_at.store(now.max(1), Ordering::Relaxed);
                }
            }
        }
        let (_, shares) = level_health(&all);
        let loads = {
            let mut f = self.failover.lock().unwrap_or_else(|e| e.into_inner());
            if f.loads().len() != shares.len() {
                *f = PriorityFailover::new(shares.len(), self.config.locality.failback_delay);
            }
            f.update(now, &shares, self.config.locality.overprovisioning)
                .to_vec()
        };
        let view = ClusterView::build(
            ViewContext {
                algorithm: self.algorithm,
                locality: &self.config.locality,
                local_zone: self.context.zone.as_deref(),
                slow_start: self.config.slow_start.as_ref(),
                now,
            },
            all,
            loads,
        );
        if view.panic {
            tracing::warn!(cluster = %self.config.name, "every endpoint is unhealthy: panic mode, routing to all");
        }
        self.metrics.panic_mode.set(i64::from(view.panic));
        self.metrics.endpoints.set(view.all.len() as i64);
        self.view.store(Arc::new(view));
    }

    /// Whether the cluster's hash key is needed for balancing.
    pub(crate) fn hash_on(&self) -> Option<&HashOn> {
        self.config.balancer.hash_on.as_ref()
    }
}

impl ClusterRuntime {
    /// Probes every endpoint once, concurrently, and rebuilds the view if any
    /// endpoint's health flipped.
    pub(crate) async fn run_health_checks(&self) {
        let Some(hc) = &self.config.health_check else {
            return;
        };
        let all = self.view.load().all.clone();
        let probes = all.iter().map(|ep| async move {
            let ok = self.probe(ep, &hc.path, hc.timeout).await;
            if ok {
                self.metrics.health_ok.inc();
            } else {
                self.metrics.health_failed.inc();
            }
            let flipped = ep.record_probe(ok, hc.healthy_threshold, hc.unhealthy_threshold);
            if flipped {
                tracing::info!(
                    cluster = %self.config.name,
                    endpoint = %ep.label,
                    healthy = ep.is_healthy(),
                    "endpoint health changed"
                );
            }
            flipped
        });
        let flipped = futures_util::future::join_all(probes).await;
        if flipped.into_iter().any(|f| f) {
            self.rebuild_view();
        }
    }

    async fn probe(&self, ep: &EndpointState, path: &str, timeout: Duration) -> bool {
        let host = match &self.config.host_header {
            levee_config::HostHeader::Value(v) => v.as_str(),
            _ => ep.label.as_str(),
        };
        let Ok(req) = http::Request::get(format!("http://{}{}", ep.label, path))
            .header(http::header::HOST, host)
            .header(http::header::USER_AGENT, "levee-health-check")
            .body(UpstreamBody::empty())
        else {
            return false;
        };
        let probe = async {
            let resp = self
                .transport
                .send(ep.addr, &ep.idle, req, false, self.config.connect_timeout)
                .await
                .ok()?;
            let ok = resp.status().is_success() || resp.status().is_redirection();
            // Read the (small) body so the connection can be reused.
            if let Some(conn) = crate::upstream::drain(resp.into_body()).await {
                self.release(ep, conn);
            }
            Some(ok)
        };
        matches!(tokio::time::timeout(timeout, probe).await, Ok(Some(true)))
    }

    /// Feeds an attempt's outcome to passive health: the endpoint's and the
    /// cluster's breakers and outlier detection. An opened endpoint breaker
    /// or an ejection takes the endpoint out of rotation at once.
    pub(crate) fn record_outcome(
        &self,
        endpoint: &Arc<EndpointState>,
        outcome: Outcome,
        latency: Duration,
        now: Nanos,
    ) {
        if let Some(success) = breaker_verdict(outcome) {
            if let Some(b) = &self.breaker {
                if b.record(now, success, latency) {
                    tracing::warn!(cluster = %self.config.name, "cluster circuit breaker opened");
                }
            }
            if let Some(b) = &endpoint.breaker {
                if b.record(now, success, latency) {
                    endpoint.breaker_open.store(true, Ordering::Relaxed);
                    tracing::warn!(cluster = %self.config.name, endpoint = %endpoint.label, "endpoint circuit breaker opened");
                    self.rebuild_view();
                }
            }
        }
        let Some(outlier) = &self.outlier else {
            return;
        };
        let ejected = outlier.lock().is_ok_and(|mut state| {
            let index = state
                .endpoints
                .iter()
                .position(|e| Arc::ptr_eq(e, endpoint));
            index.is_some_and(|i| {
                if let Outcome::Response(_) = outcome {
                    state.detector.record_latency(i, latency.as_nanos() as u64);
                }
                state.detector.record(i, now, outcome)
            })
        });
        if ejected {
            endpoint.set_ejected(true);
            tracing::warn!(cluster = %self.config.name, endpoint = %endpoint.label, "outlier ejected");
            self.rebuild_view();
        }
    }

    /// The periodic outlier sweep: success-rate ejections and expiries.
    fn sweep_outliers(&self) {
        let Some(outlier) = &self.outlier else {
            return;
        };
        let now = self.clock.now();
        let changed = outlier.lock().is_ok_and(|mut state| {
            state.detector.sweep(now);
            let mut changed = false;
            for (i, e) in state.endpoints.iter().enumerate() {
                let ejected = state.detector.is_ejected(i, now);
                if ejected != e.is_ejected() {
                    e.set_ejected(ejected);
                    tracing::info!(cluster = %self.config.name, endpoint = %e.label, ejected, "outlier state changed");
                    changed = true;
                }
            }
            changed
        });
        if changed {
            self.rebuild_view();
        }
    }

    /// Lets endpoints whose breaker's open time ended back into the view,
    /// where half-open probes reach them.
    fn sweep_breakers(&self) {
        let now = self.clock.now();
        let view = self.view.load();
        let mut changed = false;
        for e in &view.all {
            if let Some(b) = &e.breaker {
                let open = b.is_open(now);
                b.state_value(now);
                if e.is_breaker_open() && !open {
                    e.breaker_open.store(false, Ordering::Relaxed);
                    tracing::info!(cluster = %self.config.name, endpoint = %e.label, "endpoint circuit breaker half-open");
                    changed = true;
                }
            }
        }
        if changed {
            self.rebuild_view();
        }
    }

    /// How often time-driven state is looked at (breakers' open time, slow
    /// start ramps, failback holds), if anything here is time-driven.
    fn maintenance_tick(&self) -> Option<Duration> {
        let mut tick: Option<Duration> = None;
        let mut want = |d: Duration| {
            let d = d.clamp(Duration::from_millis(10), Duration::from_secs(1));
            tick = Some(tick.map_or(d, |t| t.min(d)));
        };
        if let Some(b) = &self.config.circuit_breaker.endpoint {
            want(b.base_open_time / 10);
        }
        if let Some(s) = &self.config.slow_start {
            want(s.window / 20);
        }
        // Discovered endpoints may bring priority levels at any time.
        if self.discovery.is_some() || self.config.endpoints.iter().any(|e| e.priority > 0) {
            want(self.config.locality.failback_delay / 10);
        }
        tick
    }

    /// One maintenance tick: breakers whose open time ended let their
    /// endpoint back in; ramps and failback holds move the view on.
    fn maintain(&self) {
        self.sweep_breakers();
        let view = self.view.load();
        let failback_due = {
            let f = self.failover.lock().unwrap_or_else(|e| e.into_inner());
            f.failback_pending() && f.next_change().is_some_and(|t| t <= self.clock.now())
        };
        if view.ramping || failback_due {
            self.rebuild_view();
        }
    }

    /// Per level: priority, load, and per zone the routing probability.
    pub(crate) fn locality_status(&self) -> Vec<crate::gateway::LevelStatus> {
        let view = self.view.load();
        view.levels
            .iter()
            .zip(&view.loads)
            .map(|(level, load)| {
                let zones = match &level.routing {
                    Some(r) => level
                        .zone_names
                        .iter()
                        .cloned()
                        .zip(r.probabilities().iter().copied())
                        .collect(),
                    None => Vec::new(),
                };
                crate::gateway::LevelStatus {
                    priority: level.priority,
                    load: *load,
                    zones,
                }
            })
            .collect()
    }

    /// Why outlier detection ejected `endpoint`, while it is ejected.
    pub(crate) fn ejection_cause(&self, endpoint: &Arc<EndpointState>) -> Option<&'static str> {
        let outlier = self.outlier.as_ref()?;
        let state = outlier.lock().unwrap_or_else(|e| e.into_inner());
        let i = state
            .endpoints
            .iter()
            .position(|e| Arc::ptr_eq(e, endpoint))?;
        state
            .detector
            .ejection_cause(i, self.clock.now())
            .map(|c| c.as_str())
    }

    /// The cluster breaker's verdict on a new request.
    pub(crate) fn admit_breaker(&self, now: Nanos) -> Result<(), (ErrorKind, String)> {
        match &self.breaker {
            Some(b) if !b.allow(now) => Err((
                ErrorKind::CircuitOpen,
                format!(
                    "the circuit breaker of cluster {} is open",
                    self.config.name
                ),
            )),
            _ => Ok(()),
        }
    }

    /// Puts an HTTP/1.1 connection back in `endpoint`'s idle stack.
    pub(crate) fn release(&self, endpoint: &EndpointState, conn: Http1Conn) {
        endpoint.idle.put(
            conn,
            self.config.pool.max_idle_per_endpoint,
            self.config.pool.idle_timeout,
        );
    }

    /// Resolves the cluster's endpoints again (configured, and each
    /// discovery source's last good set) and applies the answer if it
    /// changed: endpoints that stay keep their state, new ones join (slow
    /// start ramps them when configured), removed ones leave the view and
    /// their metric series, while requests already sent to them finish.
    /// An answer with nothing in it keeps the endpoints as they are.
    pub(crate) async fn refresh_endpoints(&self) -> Refreshed {
        let _serial = self.refresh_serial.lock().await;
        let declared = declared(&self.config, self.discovery.as_ref());
        let resolved = resolve(&self.config.name, &declared, &self.answers).await;
        let mut refreshed = Refreshed {
            changed: false,
            kept: false,
            looked_up: resolved.looked_up,
            failed: resolved.failed,
        };
        if resolved.endpoints.is_empty() {
            // Keep the last good answer rather than emptying the cluster.
            refreshed.kept = true;
            return refreshed;
        }
        let mut members = self.members.lock().unwrap_or_else(|e| e.into_inner());
        let stays = |addr: SocketAddr, i: usize| {
            let (source, ep) = &declared[i];
            members.iter().find(|e| e.is(addr, *source, ep)).cloned()
        };
        let same = resolved.endpoints.len() == members.len()
            && resolved
                .endpoints
                .iter()
                .all(|(addr, i)| stays(*addr, *i).is_some());
        if same {
            return refreshed;
        }
        let now = self.clock.now();
        let next: Vec<Arc<EndpointState>> = resolved
            .endpoints
            .iter()
            .map(|(addr, i)| {
                stays(*addr, *i).unwrap_or_else(|| {
                    let (source, ep) = &declared[*i];
                    Arc::new(EndpointState::new(
                        &self.registry,
                        &self.config.name,
                        *addr,
                        ep,
                        *source,
                        self.config.circuit_breaker.endpoint.as_ref(),
                        now,
                    ))
                })
            })
            .collect();
        let added: Vec<&str> = next
            .iter()
            .filter(|e| !members.iter().any(|m| Arc::ptr_eq(m, e)))
            .map(|e| e.label.as_str())
            .collect();
        let removed: Vec<&str> = members
            .iter()
            .filter(|m| !next.iter().any(|e| Arc::ptr_eq(m, e)))
            .map(|e| e.label.as_str())
            .collect();
        tracing::info!(cluster = %self.config.name, ?added, ?removed, endpoints = next.len(), "endpoints changed");
        // An address that stays under a new placement keeps its series.
        for gone in members
            .iter()
            .filter(|m| !next.iter().any(|e| e.addr == m.addr))
        {
            for name in [
                names::ENDPOINT_HEALTHY,
                names::ENDPOINT_IN_FLIGHT,
                names::ENDPOINT_EJECTED,
                names::BREAKER_STATE,
                names::BREAKER_OPENED,
            ] {
                self.registry.remove_series_matching(
                    name,
                    &[
                        ("cluster", self.config.name.as_str()),
                        ("endpoint", gone.label.as_str()),
                    ],
                );
            }
        }
        if let Some(outlier) = &self.outlier {
            let mut state = outlier.lock().unwrap_or_else(|e| e.into_inner());
            let previous: Vec<Option<usize>> = next
                .iter()
                .map(|e| state.endpoints.iter().position(|o| Arc::ptr_eq(o, e)))
                .collect();
            *state = OutlierState {
                detector: state.detector.carried_over(&previous),
                endpoints: next.clone(),
            };
        }
        *members = next.clone();
        self.build_view(next);
        refreshed.changed = true;
        refreshed
    }

    /// Applies what a discovery source offered and counts the update.
    pub(crate) async fn take_offer(&self, source: Source, offer: Offer) {
        let Some(d) = &self.discovery else { return };
        if offer != Offer::Changed {
            // The source counted it.
            return;
        }
        let refreshed = self.refresh_endpoints().await;
        let result = if refreshed.kept { "error" } else { "applied" };
        d.count(source.as_str(), result);
    }

    /// Resolves DNS names again and counts the update (source `dns`).
    async fn refresh_dns(&self) {
        let refreshed = self.refresh_endpoints().await;
        if refreshed.looked_up > 0 {
            let result = if refreshed.kept || refreshed.failed > 0 {
                "error"
            } else if refreshed.changed {
                "applied"
            } else {
                "unchanged"
            };
            crate::discovery::count_update(&self.registry, &self.config.name, "dns", result);
        }
    }
}

/// The endpoints the config lists, then each discovery source's.
fn declared(config: &Cluster, discovery: Option<&Discovery>) -> Vec<Declared> {
    let mut out: Vec<Declared> = config
        .endpoints
        .iter()
        .map(|e| (Source::Config, e.clone()))
        .collect();
    if let Some(d) = discovery {
        out.extend(d.declared());
    }
    out
}

async fn health_loop(cluster: Weak<ClusterRuntime>) {
    loop {
        let pause = {
            let Some(c) = cluster.upgrade() else { return };
            c.run_health_checks().await;
            let Some(hc) = &c.config.health_check else {
                return;
            };
            let jitter_ns = hc.jitter.as_nanos() as u64;
            let extra = if jitter_ns == 0 {
                0
            } else {
                levee_core::ids::random_u64() % jitter_ns
            };
            hc.interval + Duration::from_nanos(extra)
        };
        tokio::time::sleep(pause).await;
    }
}

async fn dns_loop(cluster: Weak<ClusterRuntime>) {
    loop {
        let pause = match cluster.upgrade() {
            Some(c) => c.config.dns_refresh,
            None => return,
        };
        tokio::time::sleep(pause).await;
        let Some(c) = cluster.upgrade() else { return };
        c.refresh_dns().await;
    }
}

async fn outlier_loop(cluster: Weak<ClusterRuntime>) {
    loop {
        let pause = match cluster.upgrade() {
            Some(c) => c
                .config
                .outlier_detection
                .as_ref()
                .map_or(Duration::from_secs(10), |o| o.interval),
            None => return,
        };
        tokio::time::sleep(pause).await;
        let Some(c) = cluster.upgrade() else { return };
        c.sweep_outliers();
    }
}

async fn maintenance_loop(cluster: Weak<ClusterRuntime>, tick: Duration) {
    loop {
        tokio::time::sleep(tick).await;
        let Some(c) = cluster.upgrade() else { return };
        c.maintain();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(address: &str) -> levee_config::Endpoint {
        let (host, port) = address.rsplit_once(':').unwrap();
        levee_config::Endpoint {
            address: address.to_string(),
            host: host.to_string(),
            port: port.parse().unwrap(),
            weight: 1,
            zone: None,
            region: None,
            priority: 0,
        }
    }

    // `.invalid` never resolves (RFC 6761), wherever the test runs.
    const GONE: &str = "levee-gone.invalid";

    #[tokio::test]
    async fn a_name_that_stops_resolving_keeps_its_last_answer() {
        let declared = vec![
            (Source::Config, endpoint("10.0.0.1:80")),
            (Source::File, endpoint(&format!("{GONE}:8080"))),
        ];
        let last = Mutex::new(HashMap::from([(
            GONE.to_string(),
            vec!["127.0.0.9".parse().unwrap()],
        )]));
        let r = resolve("c", &declared, &last).await;
        let addrs: Vec<String> = r.endpoints.iter().map(|(a, _)| a.to_string()).collect();
        assert_eq!(addrs, ["10.0.0.1:80", "127.0.0.9:8080"]);
        assert_eq!((r.looked_up, r.failed), (1, 0));

        let never = resolve("c", &declared, &Mutex::default()).await;
        let addrs: Vec<String> = never.endpoints.iter().map(|(a, _)| a.to_string()).collect();
        assert_eq!(addrs, ["10.0.0.1:80"]);
        assert_eq!((never.looked_up, never.failed), (1, 1));
    }

    #[tokio::test]
    async fn an_address_found_twice_counts_once_where_first_found() {
        let declared = vec![
            (Source::Config, endpoint("10.0.0.1:80")),
            (Source::File, endpoint("10.0.0.1:80")),
            (Source::Srv, endpoint("10.0.0.2:80")),
        ];
        let last = Mutex::new(HashMap::from([(
            "forgotten.invalid".to_string(),
            vec!["127.0.0.1".parse().unwrap()],
        )]));
        let r = resolve("c", &declared, &last).await;
        assert_eq!(
            r.endpoints,
            [
                ("10.0.0.1:80".parse().unwrap(), 0),
                ("10.0.0.2:80".parse().unwrap(), 2)
            ]
        );
        assert_eq!(r.looked_up, 0);
        assert!(
            last.lock().unwrap().is_empty(),
            "names no longer declared are forgotten"
        );
    }

    #[tokio::test]
    async fn discovered_endpoints_join_on_a_slow_start_ramp_and_the_rest_keep_their_state() {
        let dir = std::env::temp_dir().join(format!("levee-cluster-ramp-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("targets.json");
        std::fs::write(&file, r#"[{"targets": ["127.0.0.1:1", "127.0.0.1:2"]}]"#).unwrap();
        let src = format!(
            "[[listeners]]\nname = \"l\"\nlisten = \"127.0.0.1:0\"\n[[clusters]]\nname = \"c\"\ndiscovery = {{ file = \"{}\" }}\nslow_start = {{ window = \"30s\" }}\noutlier_detection = {{ consecutive_gateway_errors = 2 }}\ndns_refresh = \"1h\"\n",
            file.display()
        );
        let config = levee_config::load_str(&src, levee_config::Format::Toml, "t.toml").unwrap();
        let cluster = ClusterRuntime::start(
            config.clusters[0].clone(),
            Default::default(),
            Arc::new(Registry::new()),
            MonotonicClock::new(),
            Arc::new(crate::upstream::TcpConnector),
        )
        .await;
        let first = cluster.view().all.clone();
        assert_eq!(first.len(), 2);
        assert!(
            first.iter().all(|e| e.returned_at() == 0),
            "the first set does not ramp"
        );
        // Endpoint :2 is ejected before the change; it must stay ejected.
        let now = cluster.now();
        for _ in 0..2 {
            cluster.record_outcome(
                &first[1],
                Outcome::Response(503),
                Duration::from_millis(1),
                now,
            );
        }
        assert!(first[1].is_ejected());

        std::fs::write(&file, r#"[{"targets": ["127.0.0.1:2", "127.0.0.1:3"]}]"#).unwrap();
        let offer = cluster.discovery.as_ref().unwrap().read_file().await;
        cluster.take_offer(Source::File, offer).await;
        let next = cluster.view().all.clone();
        let labels: Vec<&str> = next.iter().map(|e| e.label.as_str()).collect();
        assert_eq!(labels, ["127.0.0.1:2", "127.0.0.1:3"]);
        assert!(
            Arc::ptr_eq(&next[0], &first[1]),
            "the endpoint that stayed is the same one"
        );
        assert!(next[0].is_ejected(), "and keeps its ejection");
        assert_eq!(
            cluster.ejection_cause(&next[0]),
            Some("consecutive_gateway")
        );
        assert!(next[1].returned_at() > 0, "the new one ramps");
        assert!(cluster.view().ramping);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
