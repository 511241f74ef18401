//! What each route has served since the gateway started, published for the
//! control plane's latency and traffic history (`levee_control::history`):
//! requests, failures as the SLO rules count them (5xx and the gateway's
//! own failures; a client that left is no request), and latencies in the
//! judge's 432-bucket layout (`levee_policy::judge::histogram`). While a
//! release serves a route, its per-version counts (`release.rs`) come
//! along.
//!
//! A route's counters are a [`VersionCounters`] without SLO thresholds,
//! resolved when a snapshot is built and held by the route's
//! `CompiledRoute` (both versions of a split hold the same one). Step 7
//! records through a pointer it already holds: one relaxed atomic add to
//! the latency bucket (found with a comparison, `leading_zeros`, a shift
//! and a mask), one more for a failure. No lock, no lookup, no allocation;
//! the request count is the buckets' sum, so it costs nothing of its own.
//!
//! Counters are kept by route name for the life of the gateway, as the
//! route's registry series are, so no reload resets them; readers take
//! differences of cumulative snapshots.

use crate::release::{Arm, Release, VersionCounters, VersionSnapshot};
use levee_config::Config;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// One route of the running config and what it has served so far
/// (cumulative since the gateway started).
#[derive(Debug, Clone)]
pub struct RouteTraffic {
    /// The route's name.
    pub route: String,
    /// Its configured cluster.
    pub cluster: String,
    /// The listeners that serve it, in config order.
    pub listeners: Vec<String>,
    /// Everything the route answered, whichever version served it.
    pub served: VersionSnapshot,
    /// Per version, while two versions serve the route.
    pub versions: Option<VersionsTraffic>,
}

/// What each version of a route's release has served since the release
/// began.
#[derive(Debug, Clone)]
pub struct VersionsTraffic {
    /// The release's [`Release::serial`]: another number means the counts
    /// below started again from zero.
    pub release: u64,
    /// The stable version outside the baseline slice.
    pub stable: VersionSnapshot,
    /// The baseline slice of the stable version.
    pub baseline: VersionSnapshot,
    /// The new version.
    pub canary: VersionSnapshot,
}

impl VersionsTraffic {
    pub(crate) fn of(release: &Release) -> Self {
        Self {
            release: release.serial(),
            stable: release.snapshot(Arm::Stable),
            baseline: release.snapshot(Arm::Baseline),
            canary: release.snapshot(Arm::Canary),
        }
    }
}

/// Every route's counters by name, kept across reloads.
#[derive(Debug, Default)]
pub(crate) struct RouteCounters {
    by_route: Mutex<HashMap<String, Arc<VersionCounters>>>,
}

impl RouteCounters {
    /// Counters for each route of `config`: the running ones by name, new
    /// ones at zero. New ones are kept only once [`RouteCounters::keep`]
    /// commits them, so a rejected reload leaves nothing behind.
    pub(crate) fn for_config(&self, config: &Config) -> HashMap<String, Arc<VersionCounters>> {
        let running = lock(&self.by_route);
        config
            .routes
            .iter()
            .map(|r| {
                let counters = running
                    .get(&r.name)
                    .cloned()
                    .unwrap_or_else(|| Arc::new(VersionCounters::new(&[])));
                (r.name.clone(), counters)
            })
            .collect()
    }

    /// Keeps the counters a committed reload built.
    pub(crate) fn keep(&self, built: &HashMap<String, Arc<VersionCounters>>) {
        let mut running = lock(&self.by_route);
        for (route, counters) in built {
            running
                .entry(route.clone())
                .or_insert_with(|| counters.clone());
        }
    }

    /// The cumulative counts of `route`, if it was ever configured.
    pub(crate) fn snapshot(&self, route: &str) -> Option<VersionSnapshot> {
        let counters = lock(&self.by_route).get(route).cloned()?;
        Some(counters.snapshot())
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What each route of `config` has served, with its release's counts.
pub(crate) fn report(
    config: &Config,
    counters: &RouteCounters,
    releases: &HashMap<String, Arc<Release>>,
) -> Vec<RouteTraffic> {
    config
        .routes
        .iter()
        .map(|r| {
            let listeners = if r.listeners.is_empty() {
                config.listeners.iter().map(|l| l.name.clone()).collect()
            } else {
                r.listeners.clone()
            };
            RouteTraffic {
                route: r.name.clone(),
                cluster: r.cluster.clone(),
                listeners,
                served: counters
                    .snapshot(&r.name)
                    .unwrap_or_else(|| VersionCounters::new(&[]).snapshot()),
                versions: releases
                    .get(&r.name)
                    .map(|release| VersionsTraffic::of(release)),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use levee_core::{ErrorKind, Outcome};

    fn config(routes: &[&str]) -> Config {
        let mut src = String::from(
            "[[listeners]]\nname = \"l\"\nlisten = \"127.0.0.1:1\"\n[[clusters]]\nname = \"c\"\nendpoints = [\"127.0.0.1:2\"]\n",
        );
        for r in routes {
            src.push_str(&format!("[[routes]]\nname = \"{r}\"\ncluster = \"c\"\n"));
        }
        levee_config::load_str(&src, levee_config::Format::Toml, "t.toml").unwrap()
    }

    #[test]
    fn counters_carry_over_by_name_once_kept() {
        let counters = RouteCounters::default();
        let first = counters.for_config(&config(&["a"]));
        first["a"].record(Outcome::Response(200), 1_000_000);
        first["a"].record(Outcome::Response(503), 40_000_000);
        first["a"].record(Outcome::Failed(ErrorKind::ClientClosed), 1_000);
        // Not committed yet: a rejected reload leaves nothing.
        assert!(counters.snapshot("a").is_none());
        counters.keep(&first);
        let s = counters.snapshot("a").unwrap();
        assert_eq!((s.total, s.bad, s.latency.count()), (2, 1, 2));

        // A reload that drops the route and one that brings it back: the
        // same counters, never reset.
        counters.keep(&counters.for_config(&config(&["b"])));
        let again = counters.for_config(&config(&["a", "b"]));
        assert!(Arc::ptr_eq(&again["a"], &first["a"]));
        let report = report(&config(&["a", "b"]), &counters, &HashMap::new());
        assert_eq!(report[0].served.total, 2);
        assert_eq!(report[0].listeners, ["l"]);
        assert_eq!(report[1].served.total, 0);
        assert!(report[1].versions.is_none());
    }
}
