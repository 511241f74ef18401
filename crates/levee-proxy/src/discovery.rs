//! Where a cluster finds endpoints besides its config while it runs
//! (`clusters[].discovery`): a Prometheus `file_sd` file, watched and read
//! again every `dns_refresh` in case a change event was missed, and DNS SRV
//! records, asked again every `dns_refresh` (sooner when their TTL is
//! shorter).
//!
//! Each source keeps its last good set. A file that does not parse, a
//! failed query and an empty answer change nothing: they are logged,
//! counted and shown by the admin API, because an empty or half-written
//! file is far more often a generator's failure than a wish to stop
//! serving. A source's new set goes through
//! `ClusterRuntime::refresh_endpoints`, the path a changed DNS answer
//! takes, so endpoints that stay keep their state.

use crate::cluster::ClusterRuntime;
use crate::dns;
use levee_config::{Endpoint, EndpointDiscovery};
use levee_core::metrics::{names, Counter, Registry};
use serde::Serialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

/// Where an endpoint came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// The config's `endpoints`.
    Config,
    /// The `file_sd` file.
    File,
    /// SRV records.
    Srv,
}

impl Source {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Source::Config => "config",
            Source::File => "file",
            Source::Srv => "srv",
        }
    }
}

/// A discovery source as the admin API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct DiscoveryStatus {
    /// `file` or `srv`.
    pub source: &'static str,
    /// The file's path, or the SRV name.
    pub target: String,
    /// Endpoints in its last good set (a DNS name counts once).
    pub endpoints: usize,
    /// Unix time of the last read or answer that was used.
    pub last_success_unix: Option<u64>,
    /// Unix time its set last changed.
    pub last_change_unix: Option<u64>,
    /// Why the last read or query was not used, if it was not.
    pub last_error: Option<String>,
}

/// What a read or query did to a source's set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Offer {
    /// A new set: the cluster's endpoints must be refreshed.
    Changed,
    /// The same set as before.
    Unchanged,
    /// Nothing usable: the last good set stays.
    Kept,
}

/// What a source last found.
#[derive(Debug, Default)]
struct SourceState {
    /// The last good set; `None` until one was read.
    endpoints: Option<Vec<Endpoint>>,
    last_success_unix: Option<u64>,
    last_change_unix: Option<u64>,
    last_error: Option<String>,
    /// How long the last SRV answer may be kept (its smallest TTL).
    ttl: Option<Duration>,
}

#[derive(Debug)]
struct SrvQuery {
    name: String,
    /// `None`: the servers in resolv.conf, read at each query.
    nameserver: Option<SocketAddr>,
}

/// One cluster's discovery sources and what each last found.
#[derive(Debug)]
pub(crate) struct Discovery {
    cluster: String,
    registry: Arc<Registry>,
    file: Option<(PathBuf, Mutex<SourceState>)>,
    srv: Option<(SrvQuery, Mutex<SourceState>)>,
}

/// A relative `file` is relative to the config file's directory.
fn resolve_path(file: &str, base: Option<&Path>) -> PathBuf {
    let path = Path::new(file);
    match base {
        Some(dir) if path.is_relative() && !dir.as_os_str().is_empty() => dir.join(path),
        _ => path.to_path_buf(),
    }
}

const RESULTS: [&str; 3] = ["applied", "unchanged", "error"];

/// The longest one SRV lookup may take, over every server and attempt
/// resolv.conf allows: the first one holds the cluster's start (and so a
/// reload).
const SRV_LOOKUP_LIMIT: Duration = Duration::from_secs(5);

impl Discovery {
    /// The sources of `config`, nothing read yet. `base` is the config
    /// file's directory.
    pub(crate) fn new(
        cluster: &str,
        config: &EndpointDiscovery,
        base: Option<&Path>,
        registry: Arc<Registry>,
    ) -> Discovery {
        let discovery = Discovery {
            cluster: cluster.to_string(),
            file: config
                .file
                .as_deref()
                .map(|f| (resolve_path(f, base), Mutex::default())),
            srv: config.srv.as_ref().map(|name| {
                let query = SrvQuery {
                    name: name.clone(),
                    nameserver: config.nameserver,
                };
                (query, Mutex::default())
            }),
            registry,
        };
        // Every series from the start, so that rates and alerts see zeros.
        for source in discovery.sources() {
            for result in RESULTS {
                discovery.counter(source.as_str(), result);
            }
        }
        discovery
    }

    fn sources(&self) -> impl Iterator<Item = Source> {
        let file = self.file.as_ref().map(|_| Source::File);
        let srv = self.srv.as_ref().map(|_| Source::Srv);
        file.into_iter().chain(srv)
    }

    fn counter(&self, source: &str, result: &str) -> Arc<Counter> {
        update_counter(&self.registry, &self.cluster, source, result)
    }

    /// Counts one update of `source`.
    pub(crate) fn count(&self, source: &str, result: &str) {
        self.counter(source, result).inc();
    }

    /// The watched file, if the cluster has one.
    pub(crate) fn file_path(&self) -> Option<&Path> {
        self.file.as_ref().map(|(p, _)| p.as_path())
    }

    /// Whether SRV records are asked for.
    pub(crate) fn has_srv(&self) -> bool {
        self.srv.is_some()
    }

    /// Each source's last good set, file first.
    pub(crate) fn declared(&self) -> Vec<(Source, Endpoint)> {
        let mut out = Vec::new();
        for (source, state) in [
            (Source::File, self.file.as_ref().map(|(_, s)| s)),
            (Source::Srv, self.srv.as_ref().map(|(_, s)| s)),
        ] {
            let Some(state) = state else { continue };
            let state = lock(state);
            for e in state.endpoints.iter().flatten() {
                out.push((source, e.clone()));
            }
        }
        out
    }

    /// Reads the file; a changed, non-empty set becomes its last good set.
    pub(crate) async fn read_file(&self) -> Offer {
        let Some((path, state)) = &self.file else {
            return Offer::Unchanged;
        };
        let owned = path.clone();
        let read = tokio::task::spawn_blocking(move || levee_config::file_sd::load_targets(&owned))
            .await
            .unwrap_or_else(|e| {
                Err(levee_config::Diagnostics(vec![levee_config::Diagnostic {
                    file: path.display().to_string(),
                    line: 1,
                    col: 1,
                    path: String::new(),
                    message: format!("reading the file failed: {e}"),
                    help: None,
                }]))
            });
        let found = match read {
            Ok(endpoints) => Ok(endpoints),
            Err(diags) => {
                let first = diags.0.first().map(|d| {
                    let mut line = format!("{}:{}:{}: ", d.file, d.line, d.col);
                    if !d.path.is_empty() {
                        line.push_str(&d.path);
                        line.push_str(": ");
                    }
                    line.push_str(&d.message);
                    line
                });
                let more = diags.0.len().saturating_sub(1);
                let summary = match (first, more) {
                    (Some(f), 0) => f,
                    (Some(f), n) => format!("{f} (and {n} more)"),
                    (None, _) => "the file was rejected".to_string(),
                };
                // Read again every dns_refresh, a file that stays broken
                // is logged in full once, not every time.
                let news = lock(state).last_error.as_deref() != Some(summary.as_str());
                for d in &diags.0 {
                    if news {
                        tracing::error!(
                            cluster = %self.cluster,
                            file = %path.display(),
                            diagnostic = %d,
                            "targets file rejected; keeping the last good endpoints"
                        );
                    } else {
                        tracing::debug!(cluster = %self.cluster, diagnostic = %d, "targets file still rejected");
                    }
                }
                Err(summary)
            }
        };
        self.offer(Source::File, state, found, None)
    }

    /// Asks for the SRV records; a changed, non-empty answer becomes its
    /// last good set.
    pub(crate) async fn query_srv(&self) -> Offer {
        let Some((query, state)) = &self.srv else {
            return Offer::Unchanged;
        };
        let servers = match query.nameserver {
            Some(addr) => dns::Servers::one(addr),
            None => dns::Servers::system(),
        };
        let lookup = dns::lookup_srv(&servers, &query.name);
        let answered = tokio::time::timeout(SRV_LOOKUP_LIMIT, lookup)
            .await
            .unwrap_or_else(|_| {
                Err(dns::LookupError::Timeout {
                    servers: "any server".into(),
                    timeout: SRV_LOOKUP_LIMIT,
                    attempts: servers.attempts,
                })
            });
        let (found, ttl) = match answered {
            Ok(answer) => {
                let (endpoints, ttl) = srv_endpoints(&answer);
                (Ok(endpoints), ttl)
            }
            Err(e) => {
                tracing::warn!(
                    cluster = %self.cluster,
                    srv = %query.name,
                    error = %e,
                    "SRV lookup failed; keeping the last good endpoints"
                );
                (Err(format!("SRV lookup of {}: {e}", query.name)), None)
            }
        };
        self.offer(Source::Srv, state, found, ttl)
    }

    /// Takes a read's or query's result as `source`'s new set if it is one.
    fn offer(
        &self,
        source: Source,
        state: &Mutex<SourceState>,
        found: Result<Vec<Endpoint>, String>,
        ttl: Option<Duration>,
    ) -> Offer {
        let now = levee_core::time::unix_secs();
        let mut state = lock(state);
        let offer = match found {
            Err(message) => {
                state.last_error = Some(message);
                Offer::Kept
            }
            Ok(endpoints) if endpoints.is_empty() => {
                let kept = state.endpoints.as_ref().map_or(0, Vec::len);
                tracing::warn!(
                    cluster = %self.cluster,
                    source = source.as_str(),
                    kept,
                    "discovery found no endpoints; keeping the last good ones"
                );
                state.last_error = Some(format!(
                    "no endpoints found; kept the last good set ({kept})"
                ));
                Offer::Kept
            }
            Ok(endpoints) => {
                state.last_error = None;
                state.last_success_unix = Some(now);
                state.ttl = ttl;
                if state.endpoints.as_ref() == Some(&endpoints) {
                    Offer::Unchanged
                } else {
                    tracing::info!(
                        cluster = %self.cluster,
                        source = source.as_str(),
                        endpoints = endpoints.len(),
                        "discovery found a new set of endpoints"
                    );
                    state.endpoints = Some(endpoints);
                    state.last_change_unix = Some(now);
                    Offer::Changed
                }
            }
        };
        drop(state);
        match offer {
            Offer::Kept => self.count(source.as_str(), "error"),
            Offer::Unchanged => self.count(source.as_str(), "unchanged"),
            // Counted once the cluster has applied it (or failed to
            // resolve it).
            Offer::Changed => {}
        }
        offer
    }

    /// How long until the SRV records are asked for again: `dns_refresh`,
    /// or the answer's TTL when shorter, but not below a second (a TTL of
    /// 0 must not become a query loop).
    pub(crate) fn srv_pause(&self, dns_refresh: Duration) -> Duration {
        let ttl = self.srv.as_ref().and_then(|(_, s)| lock(s).ttl);
        match ttl {
            Some(ttl) => dns_refresh.min(ttl.max(Duration::from_secs(1))),
            None => dns_refresh,
        }
    }

    /// Each source for the admin API.
    pub(crate) fn status(&self) -> Vec<DiscoveryStatus> {
        let one = |source: Source, target: String, state: &Mutex<SourceState>| {
            let state = lock(state);
            DiscoveryStatus {
                source: source.as_str(),
                target,
                endpoints: state.endpoints.as_ref().map_or(0, Vec::len),
                last_success_unix: state.last_success_unix,
                last_change_unix: state.last_change_unix,
                last_error: state.last_error.clone(),
            }
        };
        let mut out = Vec::new();
        if let Some((path, state)) = &self.file {
            out.push(one(Source::File, path.display().to_string(), state));
        }
        if let Some((query, state)) = &self.srv {
            out.push(one(Source::Srv, query.name.clone(), state));
        }
        out
    }
}

/// How long a burst of change events from one save is gathered before the
/// file is read (as the config file's watcher does).
const DEBOUNCE: Duration = Duration::from_millis(200);

/// A watch on a discovery file's directory and the events it sends.
#[derive(Debug)]
pub(crate) struct FileWatch {
    /// `None` when the directory could not be watched: the file is then
    /// read every `dns_refresh` only.
    watcher: Option<notify::RecommendedWatcher>,
    events: tokio::sync::mpsc::UnboundedReceiver<()>,
}

/// Starts watching `path`'s directory. Called before the file is first
/// read, so that no change can fall between the read and the watch.
///
/// The directory, not the file: editors and generators replace a file by
/// renaming another over it, and Kubernetes updates a mounted ConfigMap by
/// swapping its `..data` symlink, neither of which a watch on the file
/// itself would follow.
pub(crate) fn watch_file(path: &Path) -> FileWatch {
    use notify::event::{AccessKind, AccessMode};
    use notify::{EventKind, Watcher};
    let (tx, events) = tokio::sync::mpsc::unbounded_channel();
    let file_name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let handler = move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        // Reads (Levee's own among them) change nothing; a write being
        // closed is the moment it is complete.
        if matches!(event.kind, EventKind::Access(kind) if kind != AccessKind::Close(AccessMode::Write))
        {
            return;
        }
        let ours = event.paths.iter().any(|p| {
            p.file_name().is_some_and(|n| {
                n == file_name.as_os_str() || n.to_string_lossy().starts_with("..data")
            })
        });
        if ours {
            let _ = tx.send(());
        }
    };
    let watched = notify::recommended_watcher(handler).and_then(|mut w| {
        w.watch(dir, notify::RecursiveMode::NonRecursive)?;
        Ok(w)
    });
    let watcher = match watched {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!(
                file = %path.display(),
                error = %e,
                "cannot watch the targets file's directory; reading it every dns_refresh instead"
            );
            None
        }
    };
    FileWatch { watcher, events }
}

/// Reads the discovery file whenever it changes, and every `dns_refresh`
/// in case a change went unseen (network file systems, a watcher that
/// could not start, a symlink whose target changed in another directory).
pub(crate) async fn file_loop(cluster: Weak<ClusterRuntime>, mut watch: FileWatch) {
    loop {
        let every = match cluster.upgrade() {
            Some(c) => c.config.dns_refresh,
            None => return,
        };
        tokio::select! {
            got = watch.events.recv(), if watch.watcher.is_some() => {
                if got.is_none() {
                    watch.watcher = None;
                    continue;
                }
                tokio::time::sleep(DEBOUNCE).await;
                while watch.events.try_recv().is_ok() {}
            }
            () = tokio::time::sleep(every) => {}
        }
        let Some(c) = cluster.upgrade() else { return };
        let Some(d) = &c.discovery else { return };
        let offer = d.read_file().await;
        c.take_offer(Source::File, offer).await;
    }
}

/// Asks for the SRV records again every `dns_refresh`, or sooner when the
/// last answer's TTL is shorter.
pub(crate) async fn srv_loop(cluster: Weak<ClusterRuntime>) {
    loop {
        let pause = match cluster.upgrade() {
            Some(c) => match &c.discovery {
                Some(d) => d.srv_pause(c.config.dns_refresh),
                None => return,
            },
            None => return,
        };
        tokio::time::sleep(pause).await;
        let Some(c) = cluster.upgrade() else { return };
        let Some(d) = &c.discovery else { return };
        let offer = d.query_srv().await;
        c.take_offer(Source::Srv, offer).await;
    }
}

fn update_counter(registry: &Registry, cluster: &str, source: &str, result: &str) -> Arc<Counter> {
    registry.counter(
        names::DISCOVERY_UPDATES,
        "Endpoint discovery updates, by cluster, source (file, srv, dns: names resolved again) and result (applied, unchanged, error).",
        &[("cluster", cluster), ("source", source), ("result", result)],
    )
}

/// Counts one update of `cluster`'s endpoints from `source`; `dns` is the
/// periodic resolution of DNS names, with or without discovery.
pub(crate) fn count_update(registry: &Registry, cluster: &str, source: &str, result: &str) {
    update_counter(registry, cluster, source, result).inc();
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Levee's endpoints for an SRV answer, and how long it may be kept.
///
/// - Targets of `.` (not available, RFC 2782) are left out.
/// - SRV priorities become Levee's priority levels by rank: the lowest
///   value is level 0, the next level 1, and so on (9 at most), so
///   failover follows the records' order.
/// - Weights (0 to 65535) keep their proportions within 1 to 1000: scaled
///   down when one is above 1000; 0 becomes 1, since Levee has no weight 0
///   (RFC 2782's "very small chance" is near enough).
/// - A target's addresses come from the answer's additional section when
///   the server sent them (CoreDNS and Consul do); otherwise the target is
///   a DNS name the system resolver resolves, as configured names are.
pub(crate) fn srv_endpoints(answer: &dns::wire::Answer) -> (Vec<Endpoint>, Option<Duration>) {
    let records: Vec<&dns::wire::Srv> =
        answer.srv.iter().filter(|s| !s.target.is_empty()).collect();
    let mut priorities: Vec<u16> = records.iter().map(|s| s.priority).collect();
    priorities.sort_unstable();
    priorities.dedup();
    let max_weight = records
        .iter()
        .map(|s| u32::from(s.weight))
        .max()
        .unwrap_or(0);
    let weight = |w: u16| {
        let w = u32::from(w);
        let scaled = if max_weight > 1000 {
            (w * 1000 + max_weight / 2) / max_weight
        } else {
            w
        };
        scaled.clamp(1, 1000)
    };
    let mut ttl: Option<u32> = None;
    let mut keep = |t: u32| ttl = Some(ttl.map_or(t, |m| m.min(t)));
    let mut out = Vec::new();
    for s in &records {
        keep(s.ttl);
        let rank = priorities
            .iter()
            .position(|p| *p == s.priority)
            .unwrap_or(0);
        let priority = rank.min(9) as u32;
        let address = format!("{}:{}", s.target, s.port);
        let endpoint = |host: String| Endpoint {
            address: address.clone(),
            host,
            port: s.port,
            weight: weight(s.weight),
            zone: None,
            region: None,
            priority,
        };
        let addresses: Vec<_> = answer
            .addresses
            .iter()
            .filter(|a| a.name == s.target)
            .collect();
        if addresses.is_empty() {
            out.push(endpoint(s.target.clone()));
        } else {
            for a in addresses {
                keep(a.ttl);
                out.push(endpoint(a.ip.to_string()));
            }
        }
    }
    (out, ttl.map(|t| Duration::from_secs(u64::from(t))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::wire::{Address, Answer, Srv};

    fn srv(priority: u16, weight: u16, port: u16, target: &str, ttl: u32) -> Srv {
        Srv {
            priority,
            weight,
            port,
            target: target.into(),
            ttl,
        }
    }

    #[test]
    fn srv_priorities_become_levels_by_rank_and_weights_keep_proportions() {
        let answer = Answer {
            srv: vec![
                srv(10, 60000, 80, "a.svc", 30),
                srv(10, 30000, 80, "b.svc", 30),
                srv(20, 0, 81, "c.svc", 30),
                srv(5, 7, 82, "d.svc", 30),
                srv(1, 1, 1, "", 30),
            ],
            addresses: vec![],
        };
        let (eps, ttl) = srv_endpoints(&answer);
        let got: Vec<(&str, u32, u32)> = eps
            .iter()
            .map(|e| (e.address.as_str(), e.priority, e.weight))
            .collect();
        assert_eq!(
            got,
            [
                ("a.svc:80", 1, 1000),
                ("b.svc:80", 1, 500),
                ("c.svc:81", 2, 1),
                ("d.svc:82", 0, 1)
            ]
        );
        assert_eq!(eps[0].host, "a.svc", "no addresses: the name is resolved");
        assert_eq!(ttl, Some(Duration::from_secs(30)));
    }

    #[test]
    fn small_weights_are_kept_and_addresses_come_from_the_answer() {
        let answer = Answer {
            srv: vec![srv(0, 3, 8080, "a.svc", 30), srv(0, 1, 8080, "b.svc", 60)],
            addresses: vec![
                Address {
                    name: "a.svc".into(),
                    ip: "10.0.0.1".parse().unwrap(),
                    ttl: 5,
                },
                Address {
                    name: "a.svc".into(),
                    ip: "fd00::1".parse().unwrap(),
                    ttl: 20,
                },
            ],
        };
        let (eps, ttl) = srv_endpoints(&answer);
        let got: Vec<(&str, &str, u32)> = eps
            .iter()
            .map(|e| (e.address.as_str(), e.host.as_str(), e.weight))
            .collect();
        assert_eq!(
            got,
            [
                ("a.svc:8080", "10.0.0.1", 3),
                ("a.svc:8080", "fd00::1", 3),
                ("b.svc:8080", "b.svc", 1)
            ]
        );
        assert_eq!(ttl, Some(Duration::from_secs(5)), "the smallest TTL used");
    }

    #[test]
    fn many_priorities_share_the_last_level() {
        let answer = Answer {
            srv: (0..12).map(|p| srv(p, 1, 80, "a.svc", 1)).collect(),
            addresses: vec![],
        };
        let levels: Vec<u32> = srv_endpoints(&answer)
            .0
            .iter()
            .map(|e| e.priority)
            .collect();
        assert_eq!(levels, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9]);
        assert_eq!(srv_endpoints(&Answer::default()), (vec![], None));
    }

    #[test]
    fn srv_pauses_follow_short_ttls_but_not_below_a_second() {
        let registry = Arc::new(Registry::new());
        let config = EndpointDiscovery {
            file: None,
            srv: Some("_http._tcp.a".into()),
            nameserver: None,
        };
        let d = Discovery::new("c", &config, None, registry.clone());
        let refresh = Duration::from_secs(30);
        assert_eq!(d.srv_pause(refresh), refresh);
        let state = &d.srv.as_ref().unwrap().1;
        lock(state).ttl = Some(Duration::from_secs(5));
        assert_eq!(d.srv_pause(refresh), Duration::from_secs(5));
        lock(state).ttl = Some(Duration::ZERO);
        assert_eq!(d.srv_pause(refresh), Duration::from_secs(1));
        assert_eq!(
            d.srv_pause(Duration::from_millis(200)),
            Duration::from_millis(200)
        );
        // The counters exist before anything happened.
        let text = registry.encode();
        assert!(
            text.contains(
                r#"levee_discovery_updates_total{cluster="c",source="srv",result="error"} 0"#
            ),
            "{text}"
        );
    }

    #[test]
    fn relative_files_are_found_beside_the_config() {
        assert_eq!(
            resolve_path("targets.json", Some(Path::new("/etc/levee"))),
            Path::new("/etc/levee/targets.json")
        );
        assert_eq!(
            resolve_path("/srv/t.json", Some(Path::new("/etc/levee"))),
            Path::new("/srv/t.json")
        );
        assert_eq!(
            resolve_path("t.json", Some(Path::new(""))),
            Path::new("t.json")
        );
        assert_eq!(resolve_path("t.json", None), Path::new("t.json"));
    }

    #[tokio::test]
    async fn a_file_that_fails_or_empties_keeps_the_last_good_set() {
        let dir = std::env::temp_dir().join(format!("levee-discovery-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let config = EndpointDiscovery {
            file: Some("keep.json".into()),
            srv: None,
            nameserver: None,
        };
        let d = Discovery::new("c", &config, Some(&dir), Arc::new(Registry::new()));
        let file = dir.join("keep.json");
        std::fs::write(&file, r#"[{"targets": ["10.0.0.1:80"]}]"#).unwrap();
        assert_eq!(d.read_file().await, Offer::Changed);
        assert_eq!(d.read_file().await, Offer::Unchanged);
        std::fs::write(&file, "[{\"targets\": [\n  \"10.0.0.1\"]}]").unwrap();
        assert_eq!(d.read_file().await, Offer::Kept);
        let status = &d.status()[0];
        let error = status.last_error.as_deref().unwrap();
        assert!(
            error.contains("keep.json:2:3: [0].targets[0]: `10.0.0.1` is not host:port"),
            "{error}"
        );
        assert_eq!(status.endpoints, 1);
        std::fs::write(&file, "[]").unwrap();
        assert_eq!(d.read_file().await, Offer::Kept);
        std::fs::remove_file(&file).unwrap();
        assert_eq!(d.read_file().await, Offer::Kept);
        assert_eq!(d.declared().len(), 1);
        assert_eq!(d.declared()[0].1.address, "10.0.0.1:80");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
