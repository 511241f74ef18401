//! Releases on the request path: a route served by two versions (two
//! clusters), the choice between them in step 2, and what is counted per
//! version for the judge in `levee-control`.
//!
//! - **Choice** ([`RouteSplit::choose`]): forcing rules first (a header or
//!   cookie sends a request to one version: previews, A/B groups), then a
//!   point in `0..10_000` drawn from the stickiness key (a header, a cookie
//!   Levee sets, the client address) hashed with the release's salt, or at
//!   random per request. Points below the canary weight go to the canary;
//!   the next `baseline` points stay on the stable version but are counted
//!   as the **baseline**: a hash-chosen slice of stable traffic as large as
//!   the canary's, from the same moments, which the judge compares the
//!   canary with. A caller's point never changes during a release, so as
//!   the weight grows callers only ever move from stable to canary.
//! - **Weights** are a [`Knob`]: the config gives them (a fixed split) or a
//!   rollout turns them; the request path reads them with one load.
//! - **Counts** per version ([`VersionCounters`]): requests, availability
//!   failures as the SLO engine counts them, answers within each latency
//!   SLO threshold of the route, and a latency histogram in the judge's
//!   bucket layout (`levee_policy::judge::histogram`), fine enough for a
//!   rank test. All relaxed atomics, cumulative; the loop takes
//!   differences of snapshots. The same counters, without thresholds,
//!   count every route as a whole for the latency history
//!   (`crate::traffic`).
//!
//! A [`Release`] is kept across reloads while its route, both clusters and
//! its kind are unchanged, so a reload in the middle of a rollout loses
//! neither weights nor counts.

use crate::control::Knob;
use crate::router::CompiledRoute;
use http::{HeaderName, HeaderValue, Request};
use levee_config::{ForceSource, SplitPolicy, Stickiness, ValueMatch, Version, WEIGHT_SCALE};
use levee_core::{ErrorKind, Outcome};
use levee_policy::judge::histogram::{bucket_of, LatencyHistogram, BUCKETS};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Which version served a request, as the judge counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arm {
    /// The stable version, outside the baseline slice.
    Stable,
    /// The stable version, inside the baseline slice.
    Baseline,
    /// The new version.
    Canary,
}

/// The weights in force, in basis points of a percent
/// ([`WEIGHT_SCALE`] is everything).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Weights {
    /// The canary's share.
    pub canary: u32,
    /// The baseline slice of stable traffic just above it.
    pub baseline: u32,
    /// Whether the forcing rules apply (off before a rollout starts and
    /// after it ends).
    pub forcing: bool,
}

impl Weights {
    /// A canary share with a baseline as large (or all that is left).
    pub fn canary(canary: u32) -> Self {
        let canary = canary.min(WEIGHT_SCALE);
        Self {
            canary,
            baseline: canary.min(WEIGHT_SCALE - canary),
            forcing: true,
        }
    }
}

/// Whether a release is a fixed split or a rollout's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReleaseKind {
    /// `[routes.split]`: the config's weight, unless a person turns it.
    Split,
    /// `[routes.rollout]`: the rollout loop turns the weights.
    Rollout,
}

/// What one version has served since its release began (or a whole
/// route since the gateway started, see `crate::traffic`).
#[derive(Debug)]
pub struct VersionCounters {
    bad: AtomicU64,
    /// Answers within each latency SLO threshold of the route.
    within: Box<[(u64, AtomicU64)]>,
    /// Every counted request lands in exactly one bucket, so the buckets'
    /// sum is the request count: no separate total to add to.
    latency: Box<[AtomicU64]>,
}

/// A copy of [`VersionCounters`] at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct VersionSnapshot {
    /// Requests answered.
    pub total: u64,
    /// Availability failures (5xx, the gateway's own included).
    pub bad: u64,
    /// For each latency SLO threshold of the route, the good events.
    pub within: Vec<(Duration, u64)>,
    /// Latencies, in the judge's buckets.
    pub latency: LatencyHistogram,
}

impl VersionCounters {
    /// Counters at zero, tracking answers within each of `thresholds`.
    pub(crate) fn new(thresholds: &[Duration]) -> Self {
        Self {
            bad: AtomicU64::new(0),
            within: thresholds
                .iter()
                .map(|t| {
                    (
                        u64::try_from(t.as_nanos()).unwrap_or(u64::MAX),
                        AtomicU64::new(0),
                    )
                })
                .collect(),
            latency: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Counts one finished request as the SLO engine would: a client that
    /// left is no event; a server failure is bad; a latency threshold is
    /// met by a good answer in time.
    #[inline]
    pub(crate) fn record(&self, outcome: Outcome, elapsed_ns: u64) {
        if outcome == Outcome::Failed(ErrorKind::ClientClosed) {
            return;
        }
        let failed = outcome.is_server_failure();
        // The bucket before the failure, and `snapshot` reads in the other
        // order, so a snapshot does not see a failure without its request
        // (on x86's ordering; elsewhere at worst for a moment).
        self.latency[bucket_of(elapsed_ns / 1_000)].fetch_add(1, Ordering::Relaxed);
        if failed {
            self.bad.fetch_add(1, Ordering::Relaxed);
        }
        for (threshold, within) in self.within.iter() {
            if !failed && elapsed_ns <= *threshold {
                within.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// The counts now.
    pub fn snapshot(&self) -> VersionSnapshot {
        let bad = self.bad.load(Ordering::Relaxed);
        let mut latency = LatencyHistogram::new();
        for (i, c) in self.latency.iter().enumerate() {
            let n = c.load(Ordering::Relaxed);
            if n > 0 {
                latency.add_count(i, n);
            }
        }
        VersionSnapshot {
            total: latency.count(),
            bad,
            within: self
                .within
                .iter()
                .map(|(t, n)| (Duration::from_nanos(*t), n.load(Ordering::Relaxed)))
                .collect(),
            latency,
        }
    }
}

/// One route's release: its two versions, the weights between them and
/// what each has served. The control plane reads and turns it through
/// [`crate::Gateway::releases`].
#[derive(Debug)]
pub struct Release {
    route: String,
    stable: String,
    canary: String,
    kind: ReleaseKind,
    /// Mixed into stickiness hashes: derived from the route and both
    /// clusters, so every replica and every restart draws the same callers.
    salt: u64,
    weights: Knob<Weights>,
    stable_counts: VersionCounters,
    baseline_counts: VersionCounters,
    canary_counts: VersionCounters,
    /// Requests a forcing rule sent to the canary (counted as canary too).
    forced: AtomicU64,
    /// Unique in the process: a reader of cumulative counts sees from a
    /// new serial that they started again from zero.
    serial: u64,
}

/// The next [`Release::serial`].
static NEXT_SERIAL: AtomicU64 = AtomicU64::new(1);

impl Release {
    pub(crate) fn new(
        route: &str,
        stable: &str,
        canary: &str,
        kind: ReleaseKind,
        configured: Weights,
        thresholds: &[Duration],
    ) -> Self {
        let salt = levee_policy::hash::hash64(format!("{route}\0{stable}\0{canary}").as_bytes());
        Self {
            route: route.to_string(),
            stable: stable.to_string(),
            canary: canary.to_string(),
            kind,
            salt,
            weights: Knob::new(configured),
            stable_counts: VersionCounters::new(thresholds),
            baseline_counts: VersionCounters::new(thresholds),
            canary_counts: VersionCounters::new(thresholds),
            forced: AtomicU64::new(0),
            serial: NEXT_SERIAL.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// Whether this release can serve `route` between these clusters as
    /// this kind (else a reload builds a new one).
    pub(crate) fn is_for(
        &self,
        route: &str,
        stable: &str,
        canary: &str,
        kind: ReleaseKind,
    ) -> bool {
        self.route == route && self.stable == stable && self.canary == canary && self.kind == kind
    }

    /// The route's name.
    pub fn route(&self) -> &str {
        &self.route
    }

    /// The cluster serving when the canary weight is zero.
    pub fn stable_cluster(&self) -> &str {
        &self.stable
    }

    /// The new version's cluster.
    pub fn canary_cluster(&self) -> &str {
        &self.canary
    }

    /// A fixed split or a rollout's.
    pub fn kind(&self) -> ReleaseKind {
        self.kind
    }

    /// The weights knob: read by the request path, turned by a loop.
    pub fn weights(&self) -> &Knob<Weights> {
        &self.weights
    }

    /// The counts of one arm now.
    pub fn snapshot(&self, arm: Arm) -> VersionSnapshot {
        self.counters(arm).snapshot()
    }

    /// This release's number, unique in the process: its counts began at
    /// zero when it was built, so a reader that finds another serial for
    /// a route starts its differences afresh.
    pub fn serial(&self) -> u64 {
        self.serial
    }

    /// Requests forcing rules sent to the canary so far.
    pub fn forced(&self) -> u64 {
        self.forced.load(Ordering::Relaxed)
    }

    pub(crate) fn counters(&self, arm: Arm) -> &VersionCounters {
        match arm {
            Arm::Stable => &self.stable_counts,
            Arm::Baseline => &self.baseline_counts,
            Arm::Canary => &self.canary_counts,
        }
    }
}

/// A route's split as compiled for one snapshot: the release, the route
/// as sent to the canary's cluster, and the rules that pick.
#[derive(Debug)]
pub(crate) struct RouteSplit {
    pub(crate) release: Arc<Release>,
    pub(crate) canary_route: Arc<CompiledRoute>,
    stickiness: Sticky,
    force: Vec<Force>,
}

#[derive(Debug)]
enum Sticky {
    Request,
    ClientAddress,
    Header(HeaderName),
    Cookie(String),
}

#[derive(Debug)]
struct Force {
    source: Source,
    value: ValueMatch,
    to: Version,
}

#[derive(Debug)]
enum Source {
    Header(HeaderName),
    Cookie(String),
}

/// What step 2 decided for a split route.
#[derive(Debug)]
pub(crate) struct Choice {
    /// The route as sent to the chosen version's cluster.
    pub(crate) route: Option<Arc<CompiledRoute>>,
    /// Where the request is counted.
    pub(crate) arm: Arm,
    /// A stickiness cookie to set on the answer.
    pub(crate) set_cookie: Option<HeaderValue>,
}

/// How long a stickiness cookie lasts: longer than any rollout.
const COOKIE_MAX_AGE_SECS: u64 = 7 * 86_400;

impl RouteSplit {
    pub(crate) fn new(
        release: Arc<Release>,
        canary_route: Arc<CompiledRoute>,
        policy: &SplitPolicy,
    ) -> Self {
        // Validated by levee-config, so header names parse.
        let header = |name: &str| HeaderName::from_bytes(name.as_bytes()).ok();
        let stickiness = match &policy.stickiness {
            Stickiness::Request => Sticky::Request,
            Stickiness::ClientAddress => Sticky::ClientAddress,
            Stickiness::Header(h) => header(h).map_or(Sticky::Request, Sticky::Header),
            Stickiness::Cookie(c) => Sticky::Cookie(c.clone()),
        };
        let force = policy
            .force
            .iter()
            .filter_map(|f| {
                let source = match &f.source {
                    ForceSource::Header(h) => Source::Header(header(h)?),
                    ForceSource::Cookie(c) => Source::Cookie(c.clone()),
                };
                Some(Force {
                    source,
                    value: f.value.clone(),
                    to: f.to,
                })
            })
            .collect();
        Self {
            release,
            canary_route,
            stickiness,
            force,
        }
    }

    /// Picks the version for `req`: forcing rules, then the weights. The
    /// stable version is the route itself (`route: None`).
    pub(crate) fn choose<B>(&self, req: &Request<B>, peer: IpAddr) -> Choice {
        let weights = **self.release.weights.get();
        let rules = if weights.forcing {
            &self.force[..]
        } else {
            &[]
        };
        for rule in rules {
            let hit = match &rule.source {
                Source::Header(name) => req
                    .headers()
                    .get_all(name)
                    .iter()
                    .any(|v| v.to_str().is_ok_and(|s| rule.value.matches(s))),
                Source::Cookie(name) => {
                    cookie(req.headers(), name).is_some_and(|v| rule.value.matches(v))
                }
            };
            if hit {
                return match rule.to {
                    Version::Canary => {
                        self.release.forced.fetch_add(1, Ordering::Relaxed);
                        self.to(Arm::Canary, None)
                    }
                    Version::Stable => self.to(Arm::Stable, None),
                };
            }
        }
        if weights.canary == 0 && weights.baseline == 0 {
            return self.to(Arm::Stable, None);
        }
        let salt = self.release.salt;
        let (key, set_cookie) = match &self.stickiness {
            Sticky::Request => (random_u64(), None),
            Sticky::ClientAddress => (hash_ip(peer, salt), None),
            Sticky::Header(name) => match req.headers().get(name) {
                Some(v) => (levee_policy::hash::hash64(v.as_bytes()) ^ salt, None),
                None => (random_u64(), None),
            },
            Sticky::Cookie(name) => match cookie(req.headers(), name) {
                Some(v) => (levee_policy::hash::hash64(v.as_bytes()) ^ salt, None),
                None => {
                    let value = format!("{:016x}{:016x}", random_u64(), random_u64());
                    let key = levee_policy::hash::hash64(value.as_bytes()) ^ salt;
                    let header = format!(
                        "{name}={value}; Path=/; Max-Age={COOKIE_MAX_AGE_SECS}; HttpOnly; SameSite=Lax"
                    );
                    (key, HeaderValue::from_str(&header).ok())
                }
            },
        };
        let point = (levee_policy::hash::mix64(key) % u64::from(WEIGHT_SCALE)) as u32;
        let arm = if point < weights.canary {
            Arm::Canary
        } else if point < weights.canary.saturating_add(weights.baseline) {
            Arm::Baseline
        } else {
            Arm::Stable
        };
        self.to(arm, set_cookie)
    }

    fn to(&self, arm: Arm, set_cookie: Option<HeaderValue>) -> Choice {
        Choice {
            route: (arm == Arm::Canary).then(|| self.canary_route.clone()),
            arm,
            set_cookie,
        }
    }
}

/// The value of cookie `name` in the request's `Cookie` headers.
fn cookie<'h>(headers: &'h http::HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k == name).then_some(v.trim_matches('"'))
        })
}

fn hash_ip(ip: IpAddr, salt: u64) -> u64 {
    let h = match ip {
        IpAddr::V4(v4) => levee_policy::hash::hash64(&v4.octets()),
        IpAddr::V6(v6) => levee_policy::hash::hash64(&v6.octets()),
    };
    h ^ salt
}

/// A per-thread SplitMix64 sequence: random enough to draw a request's
/// version, and far cheaper than an OS or cryptographic generator.
fn random_u64() -> u64 {
    use std::cell::Cell;
    thread_local! {
        static STATE: Cell<u64> = Cell::new({
            let here = &() as *const () as u64;
            levee_policy::hash::mix64(levee_core::time::unix_nanos() ^ here)
        });
    }
    STATE.with(|s| {
        let next = s.get().wrapping_add(0x9e37_79b9_7f4a_7c15);
        s.set(next);
        levee_policy::hash::mix64(next)
    })
}

/// The distinct latency thresholds of the SLOs covering `route`, which the
/// per-version counts track.
pub(crate) fn slo_thresholds(
    config: &levee_config::Config,
    route: &levee_config::Route,
) -> Vec<Duration> {
    let mut out: Vec<Duration> = config
        .slos
        .iter()
        .filter(|s| matches!(s.sli, levee_config::Sli::Latency))
        .filter(|s| s.scope.route.as_ref().is_none_or(|r| *r == route.name))
        .flat_map(|s| s.objectives.iter().filter_map(|o| o.threshold))
        .collect();
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn cookies_are_found_among_several_headers_and_pairs() {
        let h = headers(&[("cookie", "a=1; beta=yes"), ("cookie", "c=\"3\"")]);
        assert_eq!(cookie(&h, "beta"), Some("yes"));
        assert_eq!(cookie(&h, "c"), Some("3"));
        assert_eq!(cookie(&h, "b"), None);
    }

    #[test]
    fn a_baseline_is_as_large_as_the_canary_until_stable_runs_out() {
        let w = |c: u32| (Weights::canary(c).canary, Weights::canary(c).baseline);
        assert_eq!(w(500), (500, 500));
        assert_eq!(w(7_000), (7_000, 3_000));
        assert_eq!(w(20_000), (10_000, 0));
    }

    #[test]
    fn counts_follow_the_slo_rules() {
        let c = VersionCounters::new(&[Duration::from_millis(100)]);
        c.record(Outcome::Response(200), 50_000_000);
        c.record(Outcome::Response(200), 150_000_000);
        c.record(Outcome::Response(503), 1_000_000);
        c.record(Outcome::Failed(ErrorKind::ClientClosed), 1_000_000);
        let s = c.snapshot();
        assert_eq!((s.total, s.bad), (3, 1));
        assert_eq!(s.within, vec![(Duration::from_millis(100), 1)]);
        assert_eq!(s.latency.count(), 3);
    }

    #[test]
    fn the_random_draw_spreads_evenly() {
        let n = 100_000;
        let below = (0..n)
            .filter(|_| levee_policy::hash::mix64(random_u64()) % 10_000 < 500)
            .count();
        // 5% of 100,000 is 5,000; six standard deviations is about 400.
        assert!((4_600..=5_400).contains(&below), "{below}");
    }
}
