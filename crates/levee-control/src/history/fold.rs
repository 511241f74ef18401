//! The history's arithmetic, as plain structs on passed-in time: what a
//! sample adds ([`Sampler`]: differences of the data plane's cumulative
//! counts), where it goes ([`History`]: a 10-second point kept an hour and
//! a 5-minute point kept a day, per route and version), and what retention
//! drops. No I/O; the loop in `mod.rs` feeds it and persists what changed.
//!
//! A point keeps only its non-empty latency buckets, in the judge's layout
//! (`levee_policy::judge::histogram`), so an idle step costs nothing and a
//! busy one tens of pairs rather than 432 counters; quantiles and heatmap
//! rows are computed from these fine buckets when a window is read
//! (`view.rs`).

use levee_policy::judge::histogram::BUCKETS;
use levee_policy::judge::LatencyHistogram;
use levee_proxy::release::VersionSnapshot;
use levee_proxy::traffic::RouteTraffic;
use std::collections::{BTreeMap, HashMap};

const SEC: u64 = 1_000_000_000;

/// The two resolutions a series is kept at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Resolution {
    /// 10-second points, kept an hour.
    Fine,
    /// 5-minute points, kept a day.
    Coarse,
}

impl Resolution {
    /// Both, fine first.
    pub const ALL: [Resolution; 2] = [Resolution::Fine, Resolution::Coarse];

    /// The width of one point.
    pub const fn step_ns(self) -> u64 {
        match self {
            Resolution::Fine => 10 * SEC,
            Resolution::Coarse => 300 * SEC,
        }
    }

    /// How far back points are kept: one window of the API.
    pub const fn keep_ns(self) -> u64 {
        match self {
            Resolution::Fine => 3_600 * SEC,
            Resolution::Coarse => 86_400 * SEC,
        }
    }

    /// The start of the step holding `at_ns`.
    pub const fn step_start(self, at_ns: u64) -> u64 {
        at_ns - at_ns % self.step_ns()
    }

    /// Points that start before this are dropped at `now_ns`: a whole
    /// window before the step now in progress, so every column a window
    /// ending with that step shows is still there.
    pub const fn keep_from(self, now_ns: u64) -> u64 {
        self.step_start(now_ns).saturating_sub(self.keep_ns())
    }
}

/// Which counts of a route a series holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Series {
    /// Everything the route answered.
    Route,
    /// A release's stable version, outside the baseline slice.
    Stable,
    /// The baseline slice of the stable version.
    Baseline,
    /// A release's new version.
    Canary,
}

impl Series {
    /// The name the store and the API use.
    pub const fn name(self) -> &'static str {
        match self {
            Series::Route => "route",
            Series::Stable => "stable",
            Series::Baseline => "baseline",
            Series::Canary => "canary",
        }
    }

    /// The series called `name`, if any.
    pub fn parse(name: &str) -> Option<Series> {
        [
            Series::Route,
            Series::Stable,
            Series::Baseline,
            Series::Canary,
        ]
        .into_iter()
        .find(|s| s.name() == name)
    }
}

/// What one series served in one step (or, as a sample, since the last
/// sample).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Point {
    /// Requests answered (a client that left before its answer is none).
    pub requests: u64,
    /// Those the SLO rules call failures: 5xx and the gateway's own.
    pub errors: u64,
    /// The non-empty buckets of the judge's layout as `(bucket, count)`,
    /// ascending by bucket.
    pub latency: Vec<(u16, u64)>,
}

impl Point {
    /// What `now` counted beyond `before`, two snapshots of the same
    /// cumulative counters. All of `now` when there is no `before`, or when
    /// the counters went back (they were rebuilt from zero).
    pub fn between(now: &VersionSnapshot, before: Option<&VersionSnapshot>) -> Point {
        let before = before.filter(|b| b.total <= now.total && b.bad <= now.bad);
        let latency = match before {
            Some(b) => now.latency.saturating_sub(&b.latency),
            None => now.latency.clone(),
        };
        Point {
            requests: now.total - before.map_or(0, |b| b.total),
            errors: now.bad - before.map_or(0, |b| b.bad),
            latency: sparse(&latency),
        }
    }

    /// Whether nothing was counted.
    pub fn is_empty(&self) -> bool {
        self.requests == 0 && self.errors == 0 && self.latency.is_empty()
    }

    /// Adds every count of `other`.
    pub fn add(&mut self, other: &Point) {
        self.requests = self.requests.saturating_add(other.requests);
        self.errors = self.errors.saturating_add(other.errors);
        if other.latency.is_empty() {
            return;
        }
        let mut merged = Vec::with_capacity(self.latency.len() + other.latency.len());
        let (mut a, mut b) = (
            self.latency.iter().peekable(),
            other.latency.iter().peekable(),
        );
        loop {
            let next = match (a.peek(), b.peek()) {
                (Some(&&(i, n)), Some(&&(j, m))) if i == j => {
                    a.next();
                    b.next();
                    (i, n.saturating_add(m))
                }
                (Some(&&x), Some(&&y)) => {
                    if x.0 < y.0 {
                        a.next();
                        x
                    } else {
                        b.next();
                        y
                    }
                }
                (Some(&&x), None) => {
                    a.next();
                    x
                }
                (None, Some(&&y)) => {
                    b.next();
                    y
                }
                (None, None) => break,
            };
            merged.push(next);
        }
        self.latency = merged;
    }

    /// The latencies as the judge's histogram, for its quantiles.
    pub fn histogram(&self) -> LatencyHistogram {
        let mut h = LatencyHistogram::new();
        for &(bucket, n) in &self.latency {
            h.add_count(usize::from(bucket), n);
        }
        h
    }

    /// A point from stored parts: pairs sorted and merged, and buckets
    /// outside the layout refused (`None`).
    pub fn from_parts(requests: u64, errors: u64, mut latency: Vec<(u16, u64)>) -> Option<Point> {
        if latency.iter().any(|&(b, _)| usize::from(b) >= BUCKETS) {
            return None;
        }
        latency.sort_unstable_by_key(|&(b, _)| b);
        let mut point = Point {
            requests,
            errors,
            latency: Vec::with_capacity(latency.len()),
        };
        for (b, n) in latency {
            match point.latency.last_mut() {
                Some((last, m)) if *last == b => *m = m.saturating_add(n),
                _ if n > 0 => point.latency.push((b, n)),
                _ => {}
            }
        }
        Some(point)
    }
}

/// The non-empty buckets of `h`.
fn sparse(h: &LatencyHistogram) -> Vec<(u16, u64)> {
    let counts = h.counts();
    h.occupied()
        .filter(|&i| counts[i] > 0)
        // The layout has 432 buckets, so every index fits.
        .map(|i| (i as u16, counts[i]))
        .collect()
}

/// One series' points at both resolutions, by step start; a step in
/// which nothing was counted has no point.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct SeriesPoints {
    fine: BTreeMap<u64, Point>,
    coarse: BTreeMap<u64, Point>,
}

impl SeriesPoints {
    fn map_mut(&mut self, resolution: Resolution) -> &mut BTreeMap<u64, Point> {
        match resolution {
            Resolution::Fine => &mut self.fine,
            Resolution::Coarse => &mut self.coarse,
        }
    }

    /// The points at `resolution`, by step start.
    pub(crate) fn points(&self, resolution: Resolution) -> &BTreeMap<u64, Point> {
        match resolution {
            Resolution::Fine => &self.fine,
            Resolution::Coarse => &self.coarse,
        }
    }

    /// Every step from `from_ns` (a step start) up to `to_ns`, oldest
    /// first, with an empty point where nothing was counted.
    pub(crate) fn columns(
        &self,
        resolution: Resolution,
        from_ns: u64,
        to_ns: u64,
    ) -> Vec<(u64, Point)> {
        let step = resolution.step_ns();
        let points = self.points(resolution);
        let mut out = Vec::with_capacity(((to_ns.saturating_sub(from_ns)) / step) as usize);
        let mut start = from_ns;
        while start < to_ns {
            out.push((start, points.get(&start).cloned().unwrap_or_default()));
            start += step;
        }
        out
    }

    fn is_empty(&self) -> bool {
        self.fine.is_empty() && self.coarse.is_empty()
    }
}

/// Identifies one stored point: route, series, resolution, step start.
pub(crate) type PointKey = (String, Series, Resolution, u64);

/// Every route's series.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct History {
    series: BTreeMap<(String, Series), SeriesPoints>,
    /// The latest time a sample went into (its `at_ns`): a window ends
    /// with the step holding it, even when that step is still in progress.
    newest_ns: Option<u64>,
}

impl History {
    /// Notes that a sample went into the steps holding `at_ns`, whether or
    /// not anything was counted: windows end with that step.
    pub(crate) fn sampled(&mut self, at_ns: u64) {
        self.newest_ns = Some(self.newest_ns.map_or(at_ns, |n| n.max(at_ns)));
    }

    /// Adds `delta` to the fine and the coarse step holding `at_ns`, and
    /// returns the keys of the two points it changed (none for an empty
    /// delta).
    pub(crate) fn fold(
        &mut self,
        route: &str,
        series: Series,
        at_ns: u64,
        delta: &Point,
    ) -> Vec<PointKey> {
        if delta.is_empty() {
            return Vec::new();
        }
        let points = self.series.entry((route.to_string(), series)).or_default();
        Resolution::ALL
            .into_iter()
            .map(|resolution| {
                let start = resolution.step_start(at_ns);
                points
                    .map_mut(resolution)
                    .entry(start)
                    .or_default()
                    .add(delta);
                (route.to_string(), series, resolution, start)
            })
            .collect()
    }

    /// Adds a stored point to what is held for its step (a handover's
    /// successor may already have counted into the same step). A point
    /// outside its step grid or past retention is refused (`false`). A
    /// restored step counts as sampled, so a gateway restarted in the
    /// middle of a step shows what its predecessor wrote into it.
    pub(crate) fn restore(&mut self, key: PointKey, point: &Point, now_ns: u64) -> bool {
        let (route, series, resolution, start) = key;
        if start % resolution.step_ns() != 0 || start < resolution.keep_from(now_ns) {
            return false;
        }
        if start <= now_ns {
            // Not a step ahead of the clock (one that went back): windows
            // never end in the future.
            self.sampled(start);
        }
        if point.is_empty() {
            return true;
        }
        self.series
            .entry((route, series))
            .or_default()
            .map_mut(resolution)
            .entry(start)
            .or_default()
            .add(point);
        true
    }

    /// Drops points past retention at `now_ns`, and series left empty.
    pub(crate) fn retain(&mut self, now_ns: u64) {
        for points in self.series.values_mut() {
            for resolution in Resolution::ALL {
                let from = resolution.keep_from(now_ns);
                let map = points.map_mut(resolution);
                *map = map.split_off(&from);
            }
        }
        self.series.retain(|_, points| !points.is_empty());
    }

    /// The point stored under `key`, if anything was counted there.
    pub(crate) fn point(&self, key: &PointKey) -> Option<&Point> {
        let (route, series, resolution, start) = key;
        self.series
            .get(&(route.clone(), *series))?
            .points(*resolution)
            .get(start)
    }

    /// One series of `route`.
    pub(crate) fn series(&self, route: &str, series: Series) -> Option<&SeriesPoints> {
        self.series.get(&(route.to_string(), series))
    }

    /// Whether anything of `route` is held.
    pub(crate) fn has_route(&self, route: &str) -> bool {
        self.series
            .range((route.to_string(), Series::Route)..)
            .next()
            .is_some_and(|((r, _), _)| r == route)
    }

    /// Where a window at `resolution` read at `now_ns` ends (exclusive):
    /// after the step holding the latest sample, and never before the
    /// start of the step now in progress (so a restarted gateway shows the
    /// time it was down as empty columns).
    pub(crate) fn window_end(&self, resolution: Resolution, now_ns: u64) -> u64 {
        let now_step = resolution.step_start(now_ns);
        let sampled = self
            .newest_ns
            .map_or(0, |n| resolution.step_start(n) + resolution.step_ns());
        now_step.max(sampled)
    }
}

/// The cumulative counts seen at the last sample, per route and per
/// release, so each sample folds only what is new.
#[derive(Debug, Default)]
pub(crate) struct Sampler {
    routes: HashMap<String, VersionSnapshot>,
    /// By route: the release's serial and its stable, baseline and canary
    /// counts.
    releases: HashMap<String, (u64, [VersionSnapshot; 3])>,
}

impl Sampler {
    /// What each route, and each version of a route's release, served
    /// since the last call: `(route, series, delta)`, empty deltas left
    /// out.
    pub(crate) fn deltas(&mut self, traffic: &[RouteTraffic]) -> Vec<(String, Series, Point)> {
        let mut out = Vec::new();
        for t in traffic {
            let delta = Point::between(&t.served, self.routes.get(&t.route));
            if !delta.is_empty() {
                out.push((t.route.clone(), Series::Route, delta));
            }
            // Kept for routes a reload removed too: the data plane keeps
            // their counters, so a route that comes back continues them.
            self.routes.insert(t.route.clone(), t.served.clone());
            let Some(versions) = &t.versions else {
                self.releases.remove(&t.route);
                continue;
            };
            let now = [
                versions.stable.clone(),
                versions.baseline.clone(),
                versions.canary.clone(),
            ];
            let before = self
                .releases
                .get(&t.route)
                .filter(|(serial, _)| *serial == versions.release)
                .map(|(_, counts)| counts);
            for (i, series) in [Series::Stable, Series::Baseline, Series::Canary]
                .into_iter()
                .enumerate()
            {
                let delta = Point::between(&now[i], before.map(|b| &b[i]));
                if !delta.is_empty() {
                    out.push((t.route.clone(), series, delta));
                }
            }
            self.releases
                .insert(t.route.clone(), (versions.release, now));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use levee_policy::judge::histogram::bucket_of;
    use levee_proxy::traffic::VersionsTraffic;
    use proptest::prelude::*;

    const T0: u64 = 1_800_000_000 * SEC;

    fn snapshot(latencies_us: &[u64], bad: u64) -> VersionSnapshot {
        let mut latency = LatencyHistogram::new();
        for &v in latencies_us {
            latency.record(v);
        }
        VersionSnapshot {
            total: latency.count(),
            bad,
            within: Vec::new(),
            latency,
        }
    }

    fn point(latencies_us: &[u64], errors: u64) -> Point {
        Point::between(&snapshot(latencies_us, errors), None)
    }

    fn traffic(route: &str, served: VersionSnapshot) -> RouteTraffic {
        RouteTraffic {
            route: route.to_string(),
            cluster: "c".to_string(),
            listeners: vec!["public".to_string()],
            served,
            versions: None,
        }
    }

    #[test]
    fn a_sample_is_what_came_since_the_last_one() {
        let mut sampler = Sampler::default();
        let first = sampler.deltas(&[traffic("a", snapshot(&[1_000, 1_000, 40_000], 1))]);
        assert_eq!(first.len(), 1);
        assert_eq!((first[0].2.requests, first[0].2.errors), (3, 1));
        assert_eq!(
            first[0].2.latency,
            vec![(bucket_of(1_000) as u16, 2), (bucket_of(40_000) as u16, 1)]
        );
        // Nothing new: nothing to fold.
        assert!(sampler
            .deltas(&[traffic("a", snapshot(&[1_000, 1_000, 40_000], 1))])
            .is_empty());
        let later = sampler.deltas(&[traffic("a", snapshot(&[1_000, 1_000, 40_000, 7], 1))]);
        assert_eq!(later[0].2, point(&[7], 0));
        // Counters that went back were rebuilt: all of them is new.
        let reset = sampler.deltas(&[traffic("a", snapshot(&[9], 0))]);
        assert_eq!(reset[0].2, point(&[9], 0));
    }

    #[test]
    fn a_new_release_starts_its_versions_from_zero() {
        let mut sampler = Sampler::default();
        let with = |serial: u64, canary: &[u64]| {
            let mut t = traffic("a", snapshot(&[], 0));
            t.versions = Some(VersionsTraffic {
                release: serial,
                stable: snapshot(&[], 0),
                baseline: snapshot(&[], 0),
                canary: snapshot(canary, 0),
            });
            t
        };
        let first = sampler.deltas(&[with(1, &[5, 5])]);
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].1, Series::Canary);
        assert_eq!(first[0].2.requests, 2);
        assert_eq!(sampler.deltas(&[with(1, &[5, 5, 5])])[0].2.requests, 1);
        // Another release with more counts than the last: not a difference.
        assert_eq!(sampler.deltas(&[with(2, &[5, 5, 5, 5])])[0].2.requests, 4);
        // The release ends; a later one with the same serial cannot happen,
        // but one that reuses nothing starts from zero too.
        assert!(sampler.deltas(&[traffic("a", snapshot(&[], 0))]).is_empty());
        assert_eq!(sampler.deltas(&[with(3, &[5])])[0].2.requests, 1);
    }

    #[test]
    fn a_sample_lands_in_its_fine_and_coarse_step() {
        let mut h = History::default();
        let at = T0 + 305 * SEC;
        let keys = h.fold("a", Series::Route, at, &point(&[1_000], 0));
        assert_eq!(
            keys,
            vec![
                (
                    "a".to_string(),
                    Series::Route,
                    Resolution::Fine,
                    T0 + 300 * SEC
                ),
                (
                    "a".to_string(),
                    Series::Route,
                    Resolution::Coarse,
                    T0 + 300 * SEC
                ),
            ]
        );
        h.fold("a", Series::Route, at + 10 * SEC, &point(&[2_000], 1));
        // Windows end with the step of the latest sample...
        assert_eq!(
            h.window_end(Resolution::Fine, at + 10 * SEC),
            T0 + 310 * SEC
        );
        h.sampled(at + 10 * SEC);
        h.sampled(at);
        let fine = h
            .series("a", Series::Route)
            .unwrap()
            .points(Resolution::Fine);
        assert_eq!(fine.len(), 2);
        let coarse = h.point(&keys[1]).unwrap();
        assert_eq!((coarse.requests, coarse.errors), (2, 1));
        assert!(h.has_route("a") && !h.has_route("b") && !h.has_route(""));
        assert_eq!(
            h.window_end(Resolution::Fine, at + 10 * SEC),
            T0 + 320 * SEC
        );
        assert_eq!(h.window_end(Resolution::Coarse, at), T0 + 600 * SEC);
        // ...or, later, with the step now in progress.
        assert_eq!(
            h.window_end(Resolution::Fine, T0 + 999 * SEC),
            T0 + 990 * SEC
        );
    }

    #[test]
    fn retention_keeps_a_window_of_each_resolution() {
        let mut h = History::default();
        for minute in 0..(25 * 60) {
            h.fold(
                "a",
                Series::Route,
                T0 + minute * 60 * SEC,
                &point(&[1_000], 0),
            );
        }
        let now = T0 + 25 * 3_600 * SEC;
        h.retain(now);
        let s = h.series("a", Series::Route).unwrap();
        let fine = s.points(Resolution::Fine);
        let coarse = s.points(Resolution::Coarse);
        assert_eq!(*fine.keys().next().unwrap(), now - 3_600 * SEC);
        assert_eq!(fine.len(), 60);
        assert_eq!(*coarse.keys().next().unwrap(), now - 86_400 * SEC);
        assert_eq!(coarse.len(), 288);
        // Stored points past retention are not taken back.
        let old = ("a".to_string(), Series::Route, Resolution::Fine, T0);
        assert!(!h.restore(old, &point(&[1], 0), now));
        let misaligned = (
            "a".to_string(),
            Series::Route,
            Resolution::Coarse,
            now - 10 * SEC,
        );
        assert!(!h.restore(misaligned, &point(&[1], 0), now));
        // Everything gone: the series goes too.
        h.retain(now + 2 * 86_400 * SEC);
        assert!(!h.has_route("a"));
    }

    #[test]
    fn restored_points_add_to_what_was_counted_meanwhile() {
        let mut h = History::default();
        let at = T0 + 15 * SEC;
        h.fold("a", Series::Canary, at, &point(&[1_000], 0));
        let key = (
            "a".to_string(),
            Series::Canary,
            Resolution::Fine,
            T0 + 10 * SEC,
        );
        assert!(h.restore(key.clone(), &point(&[1_000, 3_000], 1), at));
        assert_eq!(h.point(&key), Some(&point(&[1_000, 1_000, 3_000], 1)));
    }

    #[test]
    fn restored_steps_end_windows_unless_they_are_ahead_of_the_clock() {
        let mut h = History::default();
        let now = T0 + 3 * SEC;
        assert_eq!(h.window_end(Resolution::Fine, now), T0);
        let key = |start| ("a".to_string(), Series::Route, Resolution::Fine, start);
        assert!(h.restore(key(T0), &point(&[1_000], 0), now));
        assert_eq!(h.window_end(Resolution::Fine, now), T0 + 10 * SEC);
        assert!(h.restore(key(T0 + 60 * SEC), &point(&[1_000], 0), now));
        assert_eq!(h.window_end(Resolution::Fine, now), T0 + 10 * SEC);
    }

    #[test]
    fn stored_parts_are_checked_and_normalised() {
        assert_eq!(
            Point::from_parts(3, 0, vec![(7, 1), (3, 2), (7, 0), (3, 0)]),
            Some(Point {
                requests: 3,
                errors: 0,
                latency: vec![(3, 2), (7, 1)]
            })
        );
        assert_eq!(Point::from_parts(1, 0, vec![(BUCKETS as u16, 1)]), None);
        assert_eq!(Series::parse("canary"), Some(Series::Canary));
        assert_eq!(Series::parse("Canary"), None);
    }

    fn arb_latencies() -> impl Strategy<Value = Vec<u64>> {
        prop::collection::vec(
            prop_oneof![
                0u64..100,
                100u64..100_000,
                100_000u64..100_000_000,
                any::<u64>()
            ],
            0..40,
        )
    }

    proptest! {
        /// Adding sparse points is adding their histograms.
        #[test]
        fn adding_points_adds_their_buckets(a in arb_latencies(), b in arb_latencies()) {
            let mut sum = point(&a, 0);
            sum.add(&point(&b, 0));
            let mut both = a.clone();
            both.extend(&b);
            prop_assert_eq!(&sum, &point(&both, 0));
            prop_assert!(sum.latency.windows(2).all(|w| w[0].0 < w[1].0));
        }

        /// Samples at arbitrary times, folded: while nothing has aged out,
        /// each resolution holds every request once, each coarse point is
        /// the sum of the fine points in it, and every point's buckets sum
        /// to its requests.
        #[test]
        fn folding_loses_and_invents_nothing(
            samples in prop::collection::vec((0u64..3_500, arb_latencies(), 0u64..3), 1..30),
        ) {
            let mut counters: Vec<u64> = Vec::new();
            let mut bad = 0;
            let mut sampler = Sampler::default();
            let mut h = History::default();
            let mut times: Vec<u64> = samples.iter().map(|s| T0 + s.0 * SEC).collect();
            times.sort_unstable();
            for (at, (_, latencies, errors)) in times.iter().zip(&samples) {
                counters.extend(latencies);
                bad += (*errors).min(latencies.len() as u64);
                for (route, series, delta) in sampler.deltas(&[traffic("a", snapshot(&counters, bad))]) {
                    h.fold(&route, series, *at, &delta);
                }
            }
            h.retain(*times.last().unwrap());
            let total = counters.len() as u64;
            let s = h.series("a", Series::Route);
            let sum = |r: Resolution| -> (u64, u64) {
                s.map_or((0, 0), |s| s.points(r).values().fold((0, 0), |(n, e), p| (n + p.requests, e + p.errors)))
            };
            prop_assert_eq!(sum(Resolution::Fine), (total, bad));
            prop_assert_eq!(sum(Resolution::Coarse), (total, bad));
            if let Some(s) = s {
                for (start, coarse) in s.points(Resolution::Coarse) {
                    let mut fine_sum = Point::default();
                    for p in s.points(Resolution::Fine).range(*start..start + 300 * SEC).map(|(_, p)| p) {
                        fine_sum.add(p);
                    }
                    prop_assert_eq!(&fine_sum, coarse);
                }
                for r in Resolution::ALL {
                    for p in s.points(r).values() {
                        prop_assert_eq!(p.latency.iter().map(|(_, n)| n).sum::<u64>(), p.requests);
                    }
                }
            }
        }
    }
}
