//! The gateway as a whole: building a runtime snapshot from a validated
//! config, reloading it (hot, atomic, keeping unchanged clusters and their
//! pools), the state the admin API publishes, and graceful drain.

use crate::cluster::ClusterRuntime;
use crate::listener::{ListenerConfig, ListenerState};
use crate::metrics::GatewayMetrics;
use crate::router::{CompiledRoute, Router};
use arc_swap::ArcSwap;
use levee_config::{Config, Diagnostic, Diagnostics};
use levee_core::metrics::Registry;
use levee_core::MonotonicClock;
use serde::Serialize;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// Why the gateway could not start or apply a config.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The config is invalid.
    #[error("{0}")]
    Invalid(Diagnostics),
    /// A listener could not be bound.
    #[error("listener {name}: cannot bind {addr}: {source}")]
    Bind {
        /// Listener name.
        name: String,
        /// Address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// A route's fallback cannot be prepared (its body file is unreadable).
    #[error("route {route}: {message}")]
    Fallback {
        /// Route name.
        route: String,
        /// What is wrong.
        message: String,
    },
    /// Tenant key files (API keys, JWKS) cannot be read.
    #[error("tenants: {message}")]
    Tenants {
        /// What is wrong.
        message: String,
    },
    /// A TLS certificate or key is unusable.
    #[error("listener {name}: {message}")]
    Tls {
        /// Listener name.
        name: String,
        /// What is wrong.
        message: String,
    },
    /// An async route's queue cannot be opened (no backend, the NATS
    /// server unreachable, the file unwritable).
    #[error("route {route}: job queue: {message}")]
    Jobs {
        /// Route name.
        route: String,
        /// What is wrong.
        message: String,
    },
}

/// The outcome of the most recent reload, for the admin API.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReloadStatus {
    /// Unix time of the last successful load.
    pub last_success_unix: Option<u64>,
    /// Unix time of the last attempt.
    pub last_attempt_unix: Option<u64>,
    /// Every diagnostic of the last attempt if it failed.
    pub last_errors: Vec<Diagnostic>,
    /// Why the last attempt was rejected, in one line (invalid config,
    /// bind, TLS, key files), if it was.
    pub last_failure: Option<String>,
}

/// State shared by listeners, connections and requests.
#[derive(Debug)]
pub(crate) struct Shared {
    config: ArcSwap<Config>,
    clusters: Mutex<HashMap<String, Arc<ClusterRuntime>>>,
    listeners: Mutex<Vec<Arc<ListenerState>>>,
    pub(crate) registry: Arc<Registry>,
    pub(crate) metrics: GatewayMetrics,
    /// The process overload guard's level.
    pub(crate) pressure: crate::pressure::Pressure,
    pub(crate) clock: MonotonicClock,
    access_log: AtomicBool,
    draining: AtomicBool,
    drain: watch::Sender<bool>,
    reload_lock: tokio::sync::Mutex<()>,
    reload_status: Mutex<ReloadStatus>,
    config_path: Option<PathBuf>,
    /// Files merged over `config_path`, in order (`-c base.toml -c
    /// prod.toml`: `prod.toml`); reloads re-read them all.
    config_overlays: Vec<PathBuf>,
    /// Routes' stale caches, kept across reloads.
    stale_caches: Mutex<HashMap<String, Arc<crate::degrade::StaleCache>>>,
    /// Routes' rate limits, kept across reloads while unchanged.
    rate_limits: Mutex<HashMap<String, Vec<Arc<crate::admit::RouteLimit>>>>,
    /// Routes' mirrors, their counters kept while their config is unchanged.
    mirrors: Mutex<HashMap<String, Arc<crate::mirror::RouteMirror>>>,
    /// Opens async routes' queues (`None`: async routes are refused).
    job_backend: Option<Arc<dyn crate::jobs::JobBackend>>,
    /// Async routes' queues and delivery state, kept by route name.
    pub(crate) job_routes: Mutex<HashMap<String, Arc<crate::jobs::RouteJobs>>>,
    /// The Redis client for global limits, kept while its settings are.
    global: Mutex<Option<Arc<crate::global::GlobalLimits>>>,
    /// The SLO counters requests feed; a control loop drains them.
    slo_counters: Arc<crate::slo::SloCounters>,
    /// Runtime faults set through the admin API (cleared by each reload).
    pub(crate) faults: Arc<crate::fault::FaultBoard>,
    /// Routes' releases (two versions and the weights between them), kept
    /// across reloads while the route, both clusters and the kind are.
    releases: Mutex<HashMap<String, Arc<crate::release::Release>>>,
    /// Each route's counts for the latency history, kept by name for the
    /// gateway's life.
    route_counters: crate::traffic::RouteCounters,
    /// The control loops that take each committed config.
    control: Option<Arc<dyn crate::control::ControlPlane>>,
    /// Capacity utilisation as last sampled.
    capacity: ArcSwap<crate::capacity::CapacityReport>,
    /// Listening sockets a predecessor handed over, until listeners claim them.
    inherited: Mutex<crate::handover::InheritedSockets>,
    /// Opens clusters' HTTP/1.1 connections (TCP outside tests).
    connector: Arc<dyn crate::upstream::Connector>,
}

impl Shared {
    pub(crate) fn access_log(&self) -> bool {
        self.access_log.load(Ordering::Relaxed)
    }

    pub(crate) fn drain_signal(&self) -> watch::Receiver<bool> {
        self.drain.subscribe()
    }

    /// The handed-over socket for listener `name` at `configured`, if any.
    pub(crate) fn take_inherited(
        &self,
        name: &str,
        configured: SocketAddr,
    ) -> Option<std::net::TcpListener> {
        lock(&self.inherited).take(name, configured)
    }
}

/// How [`Gateway::start_with`] starts: from scratch, or as the successor
/// in a handover (see [`crate::handover`]), and with which control loops.
#[derive(Debug, Default)]
pub struct StartOptions {
    /// Listening sockets from the predecessor, used instead of binding the
    /// same addresses; those the config no longer names are closed.
    pub inherited: crate::handover::InheritedSockets,
    /// The SLO counters to feed (shared with the loop that drains them);
    /// a fresh set when not given.
    pub slo_counters: Arc<crate::slo::SloCounters>,
    /// The control loops each reload commits its config to.
    pub control: Option<Arc<dyn crate::control::ControlPlane>>,
    /// How clusters open HTTP/1.1 connections (HTTP/2 clusters always use
    /// TCP); [`crate::TcpConnector`] when not given. Tests pass an
    /// in-memory upstream here.
    pub connector: Option<Arc<dyn crate::upstream::Connector>>,
    /// Opens async routes' queues; without one, a config with an async
    /// route is refused.
    pub job_backend: Option<Arc<dyn crate::jobs::JobBackend>>,
    /// Config files layered over `config_path`, in order: reloads read
    /// and merge them all, and the file watcher watches each one.
    pub config_overlays: Vec<PathBuf>,
}

/// A running gateway. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Gateway {
    shared: Arc<Shared>,
}

/// One endpoint as the admin API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct EndpointStatus {
    /// Resolved `ip:port`.
    pub address: String,
    /// As configured or discovered (may be a DNS name, or an SRV target).
    pub configured: String,
    /// Where it came from: `config`, `file` or `srv`.
    pub source: &'static str,
    /// Passing health checks.
    pub healthy: bool,
    /// Kept out of rotation by outlier detection.
    pub ejected: bool,
    /// Why (`consecutive_5xx`, `consecutive_gateway`, `success_rate`, `latency`).
    pub ejection_cause: Option<&'static str>,
    /// Requests in flight.
    pub in_flight: i64,
    /// Idle pooled HTTP/1.1 connections.
    pub idle_connections: usize,
    /// Peak-EWMA latency estimate, seconds.
    pub ewma_latency_seconds: f64,
    /// Weight.
    pub weight: u32,
    /// Zone label.
    pub zone: Option<String>,
    /// Region label.
    pub region: Option<String>,
    /// Priority level (0 first).
    pub priority: u32,
    /// The endpoint breaker's state (`closed`, `open`, `half_open`), if configured.
    pub circuit_breaker: Option<&'static str>,
}

/// A priority level's share of traffic and its zones' probabilities.
#[derive(Debug, Clone, Serialize)]
pub struct LevelStatus {
    /// Priority (0 first).
    pub priority: u32,
    /// Share of requests sent to this level now.
    pub load: f64,
    /// Zone-aware routing: each zone's share of this level's requests.
    pub zones: Vec<(String, f64)>,
}

/// A cluster's bulkhead usage now.
#[derive(Debug, Clone, Serialize)]
pub struct BulkheadStatus {
    /// Requests holding an in-flight slot (with `max_requests` set).
    pub requests_in_flight: Option<u32>,
    /// Requests waiting for a slot.
    pub pending: u32,
    /// Retries and hedges in flight.
    pub retries_in_flight: u32,
    /// Open HTTP/1.1 connections, idle included.
    pub connections: u32,
}

/// One cluster as the admin API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterStatus {
    /// Name.
    pub name: String,
    /// Balancer algorithm.
    pub balancer: levee_config::BalancerKind,
    /// Every endpoint unhealthy, all take traffic.
    pub panic_mode: bool,
    /// The cluster breaker's state, if configured.
    pub circuit_breaker: Option<&'static str>,
    /// Bulkhead usage.
    pub bulkheads: BulkheadStatus,
    /// Priority levels and zones, when the cluster has several of either.
    pub locality: Vec<LevelStatus>,
    /// Its discovery sources and what each last found (empty without
    /// `discovery`).
    pub discovery: Vec<crate::discovery::DiscoveryStatus>,
    /// Endpoints.
    pub endpoints: Vec<EndpointStatus>,
}

/// A bound listener.
#[derive(Debug, Clone, Serialize)]
pub struct ListenerStatus {
    /// Name.
    pub name: String,
    /// The bound address (the real port when 0 was configured).
    pub address: SocketAddr,
    /// TLS enabled.
    pub tls: bool,
    /// Open connections.
    pub active_connections: usize,
}

impl Gateway {
    /// Starts a gateway: resolves clusters, binds every listener, starts
    /// health checks. `config_path` is where reloads read from.
    pub async fn start(
        config: Config,
        config_path: Option<PathBuf>,
    ) -> Result<Gateway, ApplyError> {
        Self::start_with_registry(config, config_path, Arc::new(Registry::new())).await
    }

    /// Like [`Gateway::start`], recording metrics into `registry`.
    pub async fn start_with_registry(
        config: Config,
        config_path: Option<PathBuf>,
        registry: Arc<Registry>,
    ) -> Result<Gateway, ApplyError> {
        Self::start_with(config, config_path, registry, StartOptions::default()).await
    }

    /// Like [`Gateway::start_with_registry`], on sockets handed over by a
    /// predecessor and with the SLO store's load deferred, as `options` say.
    pub async fn start_with(
        config: Config,
        config_path: Option<PathBuf>,
        registry: Arc<Registry>,
        options: StartOptions,
    ) -> Result<Gateway, ApplyError> {
        let (drain, _) = watch::channel(false);
        let fault_registry = registry.clone();
        let shared = Arc::new(Shared {
            slo_counters: options.slo_counters,
            control: options.control,
            metrics: GatewayMetrics::new(&registry),
            pressure: crate::pressure::Pressure::new(&registry),
            access_log: AtomicBool::new(config.runtime.access_log),
            config: ArcSwap::from_pointee(config.clone()),
            clusters: Mutex::new(HashMap::new()),
            listeners: Mutex::new(Vec::new()),
            registry,
            clock: MonotonicClock::new(),
            draining: AtomicBool::new(false),
            drain,
            reload_lock: tokio::sync::Mutex::new(()),
            reload_status: Mutex::new(ReloadStatus::default()),
            config_path,
            config_overlays: options.config_overlays,
            stale_caches: Mutex::new(HashMap::new()),
            rate_limits: Mutex::new(HashMap::new()),
            releases: Mutex::new(HashMap::new()),
            route_counters: Default::default(),
            faults: Arc::new(crate::fault::FaultBoard::new(fault_registry)),
            mirrors: Mutex::new(HashMap::new()),
            job_backend: options.job_backend,
            job_routes: Mutex::new(HashMap::new()),
            global: Mutex::new(None),
            capacity: ArcSwap::from_pointee(Default::default()),
            inherited: Mutex::new(options.inherited),
            connector: options
                .connector
                .unwrap_or_else(|| Arc::new(crate::upstream::TcpConnector)),
        });
        let gateway = Gateway { shared };
        let applied = gateway.apply(config).await;
        for left in lock(&gateway.shared.inherited).unclaimed() {
            tracing::info!(listener = %left.name, address = %left.bound, "the new config has no listener for this handed-over socket; closing it");
        }
        applied?;
        tokio::spawn(pressure_loop(Arc::downgrade(&gateway.shared)));
        tokio::spawn(capacity_loop(Arc::downgrade(&gateway.shared)));
        tokio::spawn(crate::fault::sweep_loop(Arc::downgrade(
            &gateway.shared.faults,
        )));
        Ok(gateway)
    }

    /// Builds everything `config` needs beside the running state, then swaps
    /// it in. Unchanged clusters (same config) keep their runtime and pools;
    /// unchanged listeners keep their sockets and connections.
    async fn apply(&self, config: Config) -> Result<(), ApplyError> {
        let shared = &self.shared;
        let _serial = shared.reload_lock.lock().await;

        // Clusters: reuse what did not change.
        let context = crate::cluster::ClusterContext {
            zone: config.runtime.zone.clone(),
            tenants: config.tenants.list.clone(),
            base_dir: shared
                .config_path
                .as_deref()
                .and_then(Path::parent)
                .map(Path::to_path_buf),
        };
        let previous: HashMap<String, Arc<ClusterRuntime>> = lock(&shared.clusters).clone();
        let mut clusters = HashMap::new();
        for c in &config.clusters {
            let runtime = match previous.get(&c.name) {
                Some(old) if old.config == *c && old.context == context => old.clone(),
                _ => {
                    ClusterRuntime::start(
                        c.clone(),
                        context.clone(),
                        shared.registry.clone(),
                        shared.clock,
                        shared.connector.clone(),
                    )
                    .await
                }
            };
            clusters.insert(c.name.clone(), runtime);
        }

        // Fallbacks, once per route (shared by its listeners): body files
        // loaded, stale caches kept while their settings are unchanged.
        let previous_caches = lock(&shared.stale_caches).clone();
        let base = shared.config_path.as_deref().and_then(Path::parent);
        let mut fallbacks = HashMap::new();
        for r in &config.routes {
            let Some(f) = &r.fallback else { continue };
            let previous = previous_caches.get(&r.name).cloned();
            let resolved =
                crate::degrade::RouteFallback::new(&r.name, f, base, previous, &shared.registry)
                    .map_err(|message| ApplyError::Fallback {
                        route: r.name.clone(),
                        message,
                    })?;
            fallbacks.insert(r.name.clone(), Arc::new(resolved));
        }

        // Tenant identification: key files and JWKS read now.
        let tenants = Arc::new(
            crate::tenant::TenantResolver::new(&config.tenants, base)
                .map_err(|message| ApplyError::Tenants { message })?,
        );

        // Redis for global limits: the running client while unchanged.
        let running_global = lock(&shared.global).clone();
        let global = config.redis.as_ref().map(|r| {
            match running_global.as_ref().filter(|g| g.config == *r) {
                Some(g) => g.clone(),
                None => crate::global::GlobalLimits::new(r.clone(), &shared.registry, shared.clock),
            }
        });

        // Rate limits, once per route, keeping the tables of unchanged ones.
        let previous_limits = lock(&shared.rate_limits).clone();
        let limits: HashMap<String, Vec<Arc<crate::admit::RouteLimit>>> = config
            .routes
            .iter()
            .filter(|r| !r.rate_limits.is_empty())
            .map(|r| {
                let before = previous_limits.get(&r.name);
                let built = r
                    .rate_limits
                    .iter()
                    .map(|l| {
                        let prev = before
                            .and_then(|b| b.iter().find(|p| p.config.name == l.name))
                            .map(|p| p.as_ref());
                        Arc::new(crate::admit::RouteLimit::new(
                            &r.name,
                            l,
                            prev,
                            global.as_ref(),
                            &shared.registry,
                        ))
                    })
                    .collect();
                (r.name.clone(), built)
            })
            .collect();

        // Mirrors, once per route, keeping the counters of unchanged ones.
        let mirrors = crate::mirror::build(
            &config,
            &clusters,
            &lock(&shared.mirrors).clone(),
            &shared.registry,
        );

        // SLOs: counters and bindings for each route (the engine takes the
        // new objectives only at the commit below).
        let slo_bindings = shared.slo_counters.bind(&config);
        let job_slo_bindings = shared.slo_counters.bind_jobs(&config);

        // Faults, once per route (a reload starts them afresh).
        let route_faults: HashMap<String, crate::router::RouteFaults> = config
            .routes
            .iter()
            .filter(|r| !r.faults.is_empty() || r.fault_headers.is_some())
            .map(|r| {
                let headers = r.fault_headers.as_ref().map(|caps| {
                    let budget = crate::fault::HeaderBudget::new(caps, &r.name, &shared.registry);
                    Arc::new((caps.clone(), budget))
                });
                let compiled = crate::fault::compile_route_faults(r, &shared.registry);
                (r.name.clone(), (compiled, headers))
            })
            .collect();

        // Releases: routes served by two versions (a fixed split, or a
        // rollout from the cluster the control plane last saw fully
        // serving the route), each kept while unchanged.
        let previous_releases = lock(&shared.releases).clone();
        let releases: HashMap<String, Arc<crate::release::Release>> = config
            .routes
            .iter()
            .filter_map(|r| {
                let (stable, canary, kind, weights) = release_plan(r, shared.control.as_deref())?;
                if !clusters.contains_key(&stable) || !clusters.contains_key(&canary) {
                    return None;
                }
                let kept = previous_releases
                    .get(&r.name)
                    .filter(|rel| rel.is_for(&r.name, &stable, &canary, kind))
                    .cloned();
                let release = match kept {
                    Some(rel) => {
                        rel.weights().reconcile(weights);
                        rel
                    }
                    None => Arc::new(crate::release::Release::new(
                        &r.name,
                        &stable,
                        &canary,
                        kind,
                        weights,
                        &crate::release::slo_thresholds(&config, r),
                    )),
                };
                Some((r.name.clone(), release))
            })
            .collect();

        // The latency history's counters, once per route (kept by name).
        let route_counters = shared.route_counters.for_config(&config);

        // Async routes' queues, opened (or found again) through the backend.
        let running_jobs = lock(&shared.job_routes).clone();
        let job_routes = crate::jobs::open_routes(
            &config,
            shared.job_backend.as_ref(),
            &running_jobs,
            &shared.registry,
        )
        .await?;

        // Listener configs (TLS acceptors and routers), built before any swap.
        let mut listener_configs = Vec::new();
        for l in &config.listeners {
            let tls = match &l.tls {
                Some(t) => Some(crate::tls::acceptor(t).map_err(|message| ApplyError::Tls {
                    name: l.name.clone(),
                    message,
                })?),
                None => None,
            };
            let routes: Vec<Arc<CompiledRoute>> = config
                .routes
                .iter()
                .filter(|r| r.listeners.is_empty() || r.listeners.contains(&l.name))
                .filter_map(|r| {
                    // The route as sent to one cluster, with its fallbacks,
                    // limits and SLOs (shared by both versions of a split).
                    let compile = |cluster_name: &str| {
                        let cluster = clusters.get(cluster_name)?.clone();
                        let config = levee_config::Route {
                            cluster: cluster_name.to_string(),
                            ..r.clone()
                        };
                        let route = CompiledRoute::new(config, cluster, &shared.registry);
                        let route = match route_counters.get(&r.name) {
                            Some(c) => route.with_served(c.clone()),
                            None => route,
                        };
                        let route = match fallbacks.get(&r.name) {
                            Some(f) => {
                                let other = r
                                    .fallback
                                    .as_ref()
                                    .and_then(|f| f.cluster.as_ref())
                                    .and_then(|c| clusters.get(c).cloned());
                                route.with_fallback(f.clone(), other, &shared.registry)
                            }
                            None => route,
                        };
                        let route = match limits.get(&r.name) {
                            Some(l) => route.with_rate_limits(l.clone()),
                            None => route,
                        };
                        let route = match mirrors.get(&r.name) {
                            Some(m) => route.with_mirror(m.clone()),
                            None => route,
                        };
                        let route = match route_faults.get(&r.name) {
                            Some(f) => route.with_faults(f),
                            None => route,
                        };
                        let route = match job_routes.get(&r.name) {
                            Some(j) => {
                                let slos = job_slo_bindings.get(&r.name).cloned();
                                route.with_jobs(
                                    j.clone(),
                                    slos.unwrap_or_else(|| Arc::from(Vec::new())),
                                )
                            }
                            None => route,
                        };
                        Some(match slo_bindings.get(&r.name) {
                            Some(b) => route.with_slos(b.clone()),
                            None => route,
                        })
                    };
                    let Some(release) = releases.get(&r.name) else {
                        return compile(&r.cluster).map(Arc::new);
                    };
                    let stable = compile(release.stable_cluster())?;
                    let canary = Arc::new(compile(release.canary_cluster())?);
                    let policy = match (&r.split, &r.rollout) {
                        (Some(split), _) => split.policy.clone(),
                        (None, Some(rollout)) => rollout.policy.clone(),
                        (None, None) => Default::default(),
                    };
                    let split = crate::release::RouteSplit::new(release.clone(), canary, &policy);
                    Some(Arc::new(stable.with_split(split)))
                })
                .collect();
            let jobs_prefix = routes
                .iter()
                .any(|r| r.jobs.is_some())
                .then(|| config.jobs.status_prefix.clone());
            listener_configs.push(ListenerConfig {
                limits: l.limits.clone(),
                tls,
                router: Router::new(routes),
                tenants: tenants.clone(),
                jobs_prefix,
            });
        }

        // Listeners: bind new ones first, so a bind failure changes nothing.
        let existing: Vec<Arc<ListenerState>> = lock(&shared.listeners).clone();
        let mut next_listeners = Vec::new();
        let mut to_update = Vec::new();
        for (l, lc) in config.listeners.iter().zip(listener_configs) {
            match existing
                .iter()
                .find(|e| e.name == l.name && e.configured == l.listen)
            {
                Some(e) => {
                    to_update.push((e.clone(), lc));
                    next_listeners.push(e.clone());
                }
                None => {
                    let started = ListenerState::start(shared, l.name.clone(), l.listen, lc)
                        .await
                        .map_err(|source| ApplyError::Bind {
                            name: l.name.clone(),
                            addr: l.listen,
                            source,
                        });
                    match started {
                        Ok(s) => next_listeners.push(s),
                        Err(e) => {
                            // Undo listeners bound in this attempt.
                            for s in &next_listeners {
                                if !existing.iter().any(|x| Arc::ptr_eq(x, s)) {
                                    s.stop_accepting();
                                }
                            }
                            return Err(e);
                        }
                    }
                }
            }
        }

        // Commit: from here on nothing fails. Shared state changes only
        // now, so a rejected reload leaves every part of it as it was.
        *lock(&shared.stale_caches) = fallbacks
            .iter()
            .filter_map(|(name, f)| Some((name.clone(), f.stale.clone()?)))
            .collect();
        if let Some(g) = &global {
            if !running_global.as_ref().is_some_and(|r| Arc::ptr_eq(r, g)) {
                g.connect();
            }
        }
        *lock(&shared.global) = global;
        *lock(&shared.rate_limits) = limits;
        *lock(&shared.releases) = releases;
        shared.route_counters.keep(&route_counters);
        // A runtime fault never outlives a reload.
        shared.faults.clear();
        *lock(&shared.mirrors) = mirrors;
        // Published before the loops start: a loop that finds its route
        // missing takes it as removed and stops.
        *lock(&shared.job_routes) = job_routes.clone();
        crate::jobs::deliver::start_new(shared, &running_jobs, &job_routes);
        let config = Arc::new(config);
        if let Some(control) = &shared.control {
            control.commit(&config).await;
        }
        for (listener, lc) in to_update {
            listener.current.store(Arc::new(lc));
        }
        for old in &existing {
            if !next_listeners.iter().any(|n| Arc::ptr_eq(n, old)) {
                old.stop_accepting();
            }
        }
        *lock(&shared.listeners) = next_listeners;
        *lock(&shared.clusters) = clusters;
        shared
            .access_log
            .store(config.runtime.access_log, Ordering::Relaxed);
        shared.config.store(config);
        let now = levee_core::time::unix_secs();
        shared.metrics.last_reload.set(now as i64);
        shared.metrics.last_reload_errors.set(0);
        Ok(())
    }

    /// Validates and applies `config`; on any error the running config stays.
    pub async fn reload(&self, config: Config) -> Result<(), ApplyError> {
        let result = self.apply(config).await;
        self.record_reload(&result);
        result
    }

    /// The files the config is read from: the one given at start, then
    /// the layers merged over it. Empty when not started from a file.
    pub fn config_files(&self) -> Vec<PathBuf> {
        let shared = &self.shared;
        shared
            .config_path
            .iter()
            .chain(&shared.config_overlays)
            .cloned()
            .collect()
    }

    /// Reads the config file (every layer) again and applies it. Every
    /// diagnostic of an invalid file is logged, counted and kept for the
    /// admin API.
    pub async fn reload_from_file(&self) -> Result<(), ApplyError> {
        let files = self.config_files();
        if files.is_empty() {
            let e = ApplyError::Invalid(Diagnostics(vec![Diagnostic {
                file: "<memory>".into(),
                line: 1,
                col: 1,
                path: String::new(),
                message: "this gateway was not started from a file".into(),
                help: None,
            }]));
            self.record_reload(&Err(ApplyError::Invalid(Diagnostics(vec![]))));
            return Err(e);
        }
        let result = match levee_config::load_files(&files) {
            Ok(config) => self.apply(config).await,
            Err(diags) => Err(ApplyError::Invalid(diags)),
        };
        self.record_reload(&result);
        result
    }

    fn record_reload(&self, result: &Result<(), ApplyError>) {
        let m = &self.shared.metrics;
        let mut status = lock(&self.shared.reload_status);
        let now = levee_core::time::unix_secs();
        status.last_attempt_unix = Some(now);
        match result {
            Ok(()) => {
                m.reload_ok.inc();
                status.last_success_unix = Some(now);
                status.last_errors.clear();
                status.last_failure = None;
                tracing::info!("configuration reloaded");
            }
            Err(ApplyError::Invalid(diags)) => {
                m.reload_failed.inc();
                m.last_reload_errors.set(diags.0.len() as i64);
                for d in &diags.0 {
                    tracing::error!(diagnostic = %d, "reload rejected; keeping the running configuration");
                }
                status.last_errors = diags.0.clone();
                status.last_failure = Some(match diags.0.len() {
                    1 => "the configuration is invalid: 1 error".to_string(),
                    n => format!("the configuration is invalid: {n} errors"),
                });
            }
            Err(other) => {
                m.reload_failed.inc();
                m.last_reload_errors.set(1);
                tracing::error!(error = %other, "reload failed; keeping the running configuration");
                status.last_errors.clear();
                status.last_failure = Some(other.to_string());
            }
        }
    }

    /// Reloads whenever the config file, or any layer over it, changes
    /// (debounced), until the gateway drains.
    pub fn watch_config_file(&self) -> Result<(), String> {
        use notify::Watcher;
        let files = self.config_files();
        if files.is_empty() {
            return Err("no config file to watch".into());
        }
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let file_names: Vec<_> = files
            .iter()
            .filter_map(|p| p.file_name().map(|f| f.to_os_string()))
            .collect();
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                if let Ok(event) = event {
                    // A Kubernetes ConfigMap volume changes by swapping its
                    // `..data` symlink; the file's own name sees no event.
                    let ours = event.paths.iter().any(|p| {
                        p.file_name().is_some_and(|f| {
                            f == std::ffi::OsStr::new("..data") || file_names.iter().any(|n| n == f)
                        })
                    });
                    if ours && !matches!(event.kind, notify::EventKind::Access(_)) {
                        let _ = tx.send(());
                    }
                }
            })
            .map_err(|e| e.to_string())?;
        // Watch the directories: editors replace files by renaming.
        let mut dirs: Vec<&Path> = Vec::new();
        for file in &files {
            let dir = file
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            if !dirs.contains(&dir) {
                dirs.push(dir);
            }
        }
        for dir in dirs {
            watcher
                .watch(dir, notify::RecursiveMode::NonRecursive)
                .map_err(|e| format!("cannot watch {}: {e}", dir.display()))?;
        }
        let path = files
            .iter()
            .map(|f| f.display().to_string())
            .collect::<Vec<_>>()
            .join(" ");
        let gateway = self.clone();
        let mut drain = self.shared.drain_signal();
        tokio::spawn(async move {
            let _watcher = watcher;
            loop {
                tokio::select! {
                    _ = drain.changed() => return,
                    got = rx.recv() => {
                        if got.is_none() { return; }
                        // Debounce bursts of events from one save.
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        while rx.try_recv().is_ok() {}
                        tracing::info!(path = %path, "config file changed; reloading");
                        let _ = gateway.reload_from_file().await;
                    }
                }
            }
        });
        Ok(())
    }

    /// Graceful shutdown: readiness turns false, listeners stop accepting,
    /// connections finish their in-flight requests (HTTP/2 gets GOAWAY),
    /// waiting at most `timeout`. Returns the connections still open then.
    pub async fn shutdown(&self, timeout: Duration) -> usize {
        self.shared.draining.store(true, Ordering::SeqCst);
        let listeners = lock(&self.shared.listeners).clone();
        for l in &listeners {
            l.stop_accepting();
        }
        self.shared.drain.send_replace(true);
        let deadline = levee_core::time::now() + timeout;
        loop {
            let open: usize = listeners.iter().map(|l| l.active_connections()).sum();
            if open == 0 || levee_core::time::now() >= deadline {
                // The control loops persist what a restart must not lose.
                if let Some(control) = &self.shared.control {
                    control.drained().await;
                }
                return open;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Duplicates of every listening socket, described for a successor
    /// (see [`crate::handover`]).
    pub fn listening_sockets(&self) -> Vec<(crate::handover::SocketEntry, std::os::fd::OwnedFd)> {
        lock(&self.shared.listeners)
            .iter()
            .filter_map(|l| {
                let fd = l.dup_socket()?;
                let entry = crate::handover::SocketEntry {
                    role: crate::handover::SocketRole::Listener,
                    name: l.name.clone(),
                    configured: Some(l.configured),
                    bound: Some(l.addr),
                };
                Some((entry, fd))
            })
            .collect()
    }

    /// Capacity utilisation as of the last sample (every 5 s).
    pub fn capacity(&self) -> Arc<crate::capacity::CapacityReport> {
        self.shared.capacity.load_full()
    }

    /// Runtime faults: add, list and remove them (the admin API).
    pub fn faults(&self) -> &Arc<crate::fault::FaultBoard> {
        &self.shared.faults
    }

    /// Every route's release (routes served by two versions), as committed.
    pub fn releases(&self) -> Vec<Arc<crate::release::Release>> {
        lock(&self.shared.releases).values().cloned().collect()
    }

    /// The release of `route`, when two versions serve it.
    pub fn release(&self, route: &str) -> Option<Arc<crate::release::Release>> {
        lock(&self.shared.releases).get(route).cloned()
    }

    /// What each route of the running config has served since the gateway
    /// started (and each version, while a release serves it), cumulative:
    /// the latency history takes differences of these (see
    /// [`crate::traffic`]). Copies 432 buckets per route and version; takes
    /// no lock the request path takes.
    pub fn route_traffic(&self) -> Vec<crate::traffic::RouteTraffic> {
        let config = self.config();
        let releases = lock(&self.shared.releases).clone();
        crate::traffic::report(&config, &self.shared.route_counters, &releases)
    }

    /// The SLO counters requests feed, for the loop that drains them.
    pub fn slo_counters(&self) -> &Arc<crate::slo::SloCounters> {
        &self.shared.slo_counters
    }

    /// The async routes, by name, in config order.
    pub fn job_routes(&self) -> Vec<String> {
        let running = lock(&self.shared.job_routes);
        self.config()
            .routes
            .iter()
            .filter(|r| running.contains_key(&r.name))
            .map(|r| r.name.clone())
            .collect()
    }

    /// The queue of async route `route`.
    pub fn job_queue(&self, route: &str) -> Option<Arc<dyn crate::jobs::JobQueue>> {
        lock(&self.shared.job_routes)
            .get(route)
            .map(|j| j.queue.clone())
    }

    /// The mirror counters of route `route`, if it has a mirror.
    pub fn mirror_stats(&self, route: &str) -> Option<crate::mirror::MirrorStats> {
        lock(&self.shared.mirrors).get(route).map(|m| m.stats())
    }

    /// Turns true when draining begins.
    pub fn drain_signal(&self) -> watch::Receiver<bool> {
        self.shared.drain_signal()
    }

    /// False once draining has begun.
    pub fn is_ready(&self) -> bool {
        !self.shared.draining.load(Ordering::SeqCst)
    }

    /// The running configuration.
    pub fn config(&self) -> Arc<Config> {
        self.shared.config.load_full()
    }

    /// The metric registry.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.shared.registry
    }

    /// The last reload's outcome.
    pub fn reload_status(&self) -> ReloadStatus {
        lock(&self.shared.reload_status).clone()
    }

    /// Bound listeners.
    pub fn listeners(&self) -> Vec<ListenerStatus> {
        lock(&self.shared.listeners)
            .iter()
            .map(|l| ListenerStatus {
                name: l.name.clone(),
                address: l.addr,
                tls: l.current.load().tls.is_some(),
                active_connections: l.active_connections(),
            })
            .collect()
    }

    /// The bound address of listener `name`.
    pub fn listener_addr(&self, name: &str) -> Option<SocketAddr> {
        lock(&self.shared.listeners)
            .iter()
            .find(|l| l.name == name)
            .map(|l| l.addr)
    }

    /// Clusters with their endpoints' live state.
    pub fn clusters(&self) -> Vec<ClusterStatus> {
        let clusters = lock(&self.shared.clusters).clone();
        let mut out: Vec<ClusterStatus> = clusters
            .values()
            .map(|c| {
                let view = c.view();
                let now = c.now();
                let breaker_state =
                    |b: &crate::guard::GuardedBreaker| crate::guard::state_name(b.state_value(now));
                ClusterStatus {
                    name: c.name().to_string(),
                    balancer: c.config.balancer.kind,
                    panic_mode: view.panic,
                    circuit_breaker: c.breaker.as_ref().map(breaker_state),
                    bulkheads: c.bulkheads.status(),
                    locality: c.locality_status(),
                    discovery: c.discovery.as_ref().map(|d| d.status()).unwrap_or_default(),
                    endpoints: view
                        .all
                        .iter()
                        .map(|e| EndpointStatus {
                            address: e.label.clone(),
                            configured: e.configured.clone(),
                            source: e.source.as_str(),
                            healthy: e.is_healthy(),
                            ejected: e.is_ejected(),
                            ejection_cause: c.ejection_cause(e),
                            in_flight: e.in_flight.get(),
                            idle_connections: e.idle.len(),
                            ewma_latency_seconds: c.ewma_seconds(e),
                            weight: e.weight,
                            zone: e.zone.clone(),
                            region: e.region.clone(),
                            priority: e.priority,
                            circuit_breaker: e.breaker.as_ref().map(breaker_state),
                        })
                        .collect(),
                }
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }
}

/// Whether `route` is served by two versions, and which: a fixed split
/// (the route's cluster and the split's), or a rollout from the cluster
/// the control plane last saw fully serving the route to the configured
/// one. Returns (stable, canary, kind, configured weights).
fn release_plan(
    route: &levee_config::Route,
    control: Option<&dyn crate::control::ControlPlane>,
) -> Option<(
    String,
    String,
    crate::release::ReleaseKind,
    crate::release::Weights,
)> {
    use crate::release::{ReleaseKind, Weights};
    if let Some(split) = &route.split {
        return Some((
            route.cluster.clone(),
            split.cluster.clone(),
            ReleaseKind::Split,
            Weights::canary(split.weight),
        ));
    }
    route.rollout.as_ref()?;
    let (stable, weights) = control?.rollout_base(&route.name, &route.cluster)?;
    (stable != route.cluster)
        .then(|| (stable, route.cluster.clone(), ReleaseKind::Rollout, weights))
}

impl Shared {
    /// Async routes' running state, by route name.
    pub(crate) fn job_routes_lock(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<String, Arc<crate::jobs::RouteJobs>>> {
        lock(&self.job_routes)
    }

    /// The listeners now.
    pub(crate) fn listener_states(&self) -> Vec<Arc<ListenerState>> {
        lock(&self.listeners).clone()
    }

    /// Whether draining has begun.
    pub(crate) fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// How often capacity utilisation is sampled.
const CAPACITY_EVERY: Duration = Duration::from_secs(5);

/// Samples capacity utilisation until the gateway is dropped.
async fn capacity_loop(shared: std::sync::Weak<Shared>) {
    let mut sampler = crate::capacity::Sampler::default();
    loop {
        let Some(s) = shared.upgrade() else {
            return;
        };
        let clusters: Vec<Arc<ClusterRuntime>> = lock(&s.clusters).values().cloned().collect();
        let limits: Vec<(String, Arc<crate::admit::RouteLimit>)> = lock(&s.rate_limits)
            .iter()
            .flat_map(|(route, ls)| ls.iter().map(move |l| (route.clone(), l.clone())))
            .collect();
        let thresholds = s.config.load().capacity;
        let report = sampler.sample(&clusters, &limits, &thresholds, &s.registry);
        s.capacity.store(Arc::new(report));
        drop(s);
        tokio::time::sleep(CAPACITY_EVERY).await;
    }
}

/// Samples memory and connections for the overload guard until the gateway
/// is dropped.
async fn pressure_loop(shared: std::sync::Weak<Shared>) {
    loop {
        tokio::time::sleep(crate::pressure::SAMPLE_EVERY).await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let config = shared.config.load();
        let guard = config.runtime.overload.as_ref();
        let connections: usize = lock(&shared.listeners)
            .iter()
            .map(|l| l.active_connections())
            .sum();
        shared.pressure.update(
            guard,
            crate::pressure::resident_memory(),
            connections as u64,
        );
    }
}
