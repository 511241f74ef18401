//! What the history API shows: a window of columns, each a point's
//! requests, errors, heatmap row counts and quantiles, as the JSON
//! contract in `docs/dashboard.md` ("History API") gives them. Pure: built
//! from a [`History`] and a passed-in time.
//!
//! **Rows.** The heatmap's latency rows are unions of whole buckets of the
//! judge's layout: two per power of two of microseconds from 2^7 µs
//! (0.128 ms) to 2^26 µs (about 67 s), split at 23/16 of the power (1.4375,
//! within 2% of √2, so rows are close to equal on a log axis), plus one row
//! below 0.128 ms and one above 67 s: 40 rows. Every bucket of the layout
//! lies in exactly one row, so a row's count is exact.
//!
//! **Quantiles** come from the fine buckets, not the rows: the midpoint of
//! the bucket holding the request of rank ⌈q·n⌉
//! (`LatencyHistogram::quantile_micros`), within 3.2% of every latency in
//! that bucket, so within the layout's 6.25% of the exact quantile.

use super::fold::{History, Point, Resolution, Series};
use levee_policy::judge::histogram::{bucket_lower_micros, BUCKETS};
use serde::Serialize;

/// How far back a history read looks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Window {
    /// The last hour, in 360 columns of 10 seconds.
    Hour,
    /// The last day, in 288 columns of 5 minutes.
    Day,
}

impl Window {
    /// `1h` or `1d`.
    pub fn parse(text: &str) -> Option<Window> {
        match text {
            "1h" => Some(Window::Hour),
            "1d" => Some(Window::Day),
            _ => None,
        }
    }

    /// The name the API uses.
    pub const fn name(self) -> &'static str {
        match self {
            Window::Hour => "1h",
            Window::Day => "1d",
        }
    }

    /// The points each column shows.
    pub const fn resolution(self) -> Resolution {
        match self {
            Window::Hour => Resolution::Fine,
            Window::Day => Resolution::Coarse,
        }
    }
}

/// The smallest power of two (as an exponent of µs) the rows split.
const FIRST_EXPONENT: u32 = 7;
/// The power of two (as an exponent of µs) where the last bounded row ends.
const LAST_EXPONENT: u32 = 26;
/// Row bounds: two per power of two, then the last power itself.
const ROW_BOUNDS: usize = 2 * (LAST_EXPONENT - FIRST_EXPONENT) as usize + 1;

/// The heatmap rows' upper bounds in µs, exclusive, ascending; one more
/// row past the last holds everything slower.
pub const ROW_UPPER_MICROS: [u64; ROW_BOUNDS] = row_bounds();

/// Heatmap rows, the open-ended last one included.
pub const ROWS: usize = ROW_BOUNDS + 1;

const fn row_bounds() -> [u64; ROW_BOUNDS] {
    let mut bounds = [0u64; ROW_BOUNDS];
    let mut e = FIRST_EXPONENT;
    let mut i = 0;
    while e < LAST_EXPONENT {
        bounds[i] = 1 << e;
        // 23/16 of the power: a bucket boundary of the layout, whose
        // powers of two are cut into sixteenths.
        bounds[i + 1] = 23 << (e - 4);
        i += 2;
        e += 1;
    }
    bounds[i] = 1 << LAST_EXPONENT;
    bounds
}

/// The heatmap row that holds fine bucket `bucket`.
pub fn row_of_bucket(bucket: usize) -> usize {
    let lower = bucket_lower_micros(bucket.min(BUCKETS - 1));
    ROW_UPPER_MICROS.partition_point(|&upper| upper <= lower)
}

/// The rows' upper bounds in milliseconds; the last is unbounded (`None`,
/// `null` in JSON).
pub fn rows_ms() -> Vec<Option<f64>> {
    ROW_UPPER_MICROS
        .iter()
        .map(|&us| Some(us as f64 / 1_000.0))
        .chain([None])
        .collect()
}

/// One column of the heatmap.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HistoryPoint {
    /// The step's start, RFC 3339.
    pub t: String,
    /// The step's start, Unix nanoseconds.
    pub t_ns: u64,
    /// Requests answered in the step.
    pub requests: u64,
    /// Those the SLO rules call failures (5xx and the gateway's own).
    pub errors: u64,
    /// Requests per heatmap row (one entry per row of `rows_ms`).
    pub counts: Vec<u64>,
    /// The median latency, ms; `None` without requests.
    pub p50_ms: Option<f64>,
    /// The 95th percentile, ms.
    pub p95_ms: Option<f64>,
    /// The 99th percentile, ms.
    pub p99_ms: Option<f64>,
}

impl HistoryPoint {
    /// The column of the step starting at `start_ns` holding `point`.
    pub fn of(start_ns: u64, point: &Point) -> Self {
        let mut counts = vec![0u64; ROWS];
        for &(bucket, n) in &point.latency {
            let row = &mut counts[row_of_bucket(usize::from(bucket))];
            *row = row.saturating_add(n);
        }
        let histogram = point.histogram();
        let quantile = |q: f64| histogram.quantile_micros(q).map(|us| us / 1_000.0);
        Self {
            t: levee_slo::calendar::rfc3339(start_ns),
            t_ns: start_ns,
            requests: point.requests,
            errors: point.errors,
            counts,
            p50_ms: quantile(0.50),
            p95_ms: quantile(0.95),
            p99_ms: quantile(0.99),
        }
    }
}

/// Each version's columns, while two versions serve a route.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct VersionColumns {
    /// The stable version outside the baseline slice.
    pub stable: Vec<HistoryPoint>,
    /// The new version.
    pub canary: Vec<HistoryPoint>,
    /// The baseline slice of the stable version, as large as the canary's
    /// share.
    pub baseline: Vec<HistoryPoint>,
}

/// One route's history over a window: `GET /api/v1/history/routes/{route}`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RouteHistory {
    /// The route's name.
    pub route: String,
    /// `1h` or `1d`.
    pub window: &'static str,
    /// The width of a column: 10 or 300.
    pub step_seconds: u64,
    /// The first column's start, RFC 3339.
    pub from: String,
    /// The same, Unix nanoseconds.
    pub from_ns: u64,
    /// The end of the last column (exclusive), RFC 3339.
    pub to: String,
    /// The same, Unix nanoseconds.
    pub to_ns: u64,
    /// The rows' upper bounds, ms, ascending; the last is unbounded.
    pub rows_ms: Vec<Option<f64>>,
    /// One per step, oldest first, every step present.
    pub points: Vec<HistoryPoint>,
    /// Present only while two versions serve the route.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub versions: Option<VersionColumns>,
}

/// `route`'s history over `window` read at `now_ns`, with its versions'
/// columns when `with_versions` (while a release serves the route).
pub(crate) fn route_history(
    history: &History,
    route: &str,
    window: Window,
    now_ns: u64,
    with_versions: bool,
) -> RouteHistory {
    let resolution = window.resolution();
    let to_ns = history.window_end(resolution, now_ns);
    let from_ns = to_ns.saturating_sub(resolution.keep_ns());
    let columns = |series: Series| -> Vec<HistoryPoint> {
        let columns = match history.series(route, series) {
            Some(points) => points.columns(resolution, from_ns, to_ns),
            None => super::fold::SeriesPoints::default().columns(resolution, from_ns, to_ns),
        };
        columns
            .iter()
            .map(|(start, point)| HistoryPoint::of(*start, point))
            .collect()
    };
    RouteHistory {
        route: route.to_string(),
        window: window.name(),
        step_seconds: resolution.step_ns() / 1_000_000_000,
        from: levee_slo::calendar::rfc3339(from_ns),
        from_ns,
        to: levee_slo::calendar::rfc3339(to_ns),
        to_ns,
        rows_ms: rows_ms(),
        points: columns(Series::Route),
        versions: with_versions.then(|| VersionColumns {
            stable: columns(Series::Stable),
            canary: columns(Series::Canary),
            baseline: columns(Series::Baseline),
        }),
    }
}

/// One route in `GET /api/v1/history/routes`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RouteEntry {
    /// The route's name.
    pub route: String,
    /// The first listener that serves it.
    pub listener: String,
    /// Every listener that serves it, in config order.
    pub listeners: Vec<String>,
    /// Its configured cluster.
    pub cluster: String,
    /// Whether two versions serve it now (a split or a rollout).
    pub has_release: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use levee_policy::judge::histogram::{bucket_of, bucket_upper_micros};
    use levee_policy::judge::LatencyHistogram;
    use proptest::prelude::*;

    const SEC: u64 = 1_000_000_000;
    const T0: u64 = 1_800_000_000 * SEC;

    fn point(latencies_us: &[u64], errors: u64) -> Point {
        let mut h = LatencyHistogram::new();
        for &v in latencies_us {
            h.record(v);
        }
        let latency = h
            .counts()
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .map(|(i, n)| (i as u16, *n))
            .collect();
        Point {
            requests: latencies_us.len() as u64,
            errors,
            latency,
        }
    }

    /// The row `micros` falls in, by the bounds alone.
    fn row_by_bounds(micros: u64) -> usize {
        ROW_UPPER_MICROS.partition_point(|&upper| upper <= micros)
    }

    #[test]
    fn rows_are_whole_buckets_two_per_power_of_two() {
        assert_eq!(ROWS, 40);
        assert_eq!(ROW_UPPER_MICROS[..4], [128, 184, 256, 368]);
        assert_eq!(ROW_UPPER_MICROS[ROW_BOUNDS - 1], 67_108_864);
        let ms = rows_ms();
        assert_eq!(ms.len(), ROWS);
        assert_eq!(ms[0], Some(0.128));
        assert_eq!(ms[ROWS - 1], None);
        assert!(ROW_UPPER_MICROS.windows(2).all(|w| w[0] < w[1]));
        for bound in ROW_UPPER_MICROS {
            assert_eq!(
                bucket_lower_micros(bucket_of(bound)),
                bound,
                "{bound} µs starts a bucket"
            );
        }
        for bucket in 0..BUCKETS {
            let row = row_of_bucket(bucket);
            assert_eq!(row, row_by_bounds(bucket_lower_micros(bucket)));
            assert_eq!(row, row_by_bounds(bucket_upper_micros(bucket)), "{bucket}");
        }
        assert_eq!(row_of_bucket(bucket_of(1_000)), 6, "1 ms: 0.736..1.024 ms");
        assert_eq!(
            row_of_bucket(bucket_of(40_000)),
            17,
            "40 ms: 32.768..47.104 ms"
        );
        assert_eq!(row_of_bucket(BUCKETS - 1), ROWS - 1);
    }

    #[test]
    fn an_empty_step_has_zeros_and_no_quantiles() {
        let p = HistoryPoint::of(T0, &Point::default());
        assert_eq!((p.requests, p.errors), (0, 0));
        assert_eq!(p.counts, vec![0; ROWS]);
        assert_eq!((p.p50_ms, p.p95_ms, p.p99_ms), (None, None, None));
        assert_eq!(p.t, "2027-01-15T08:00:00.000Z");
    }

    #[test]
    fn a_window_has_every_step_and_versions_only_when_asked() {
        let mut h = History::default();
        let at = T0 + 3_600 * SEC + 5 * SEC;
        h.fold("a", Series::Route, at, &point(&[1_000, 40_000], 1));
        h.fold("a", Series::Canary, at, &point(&[40_000], 0));
        h.sampled(at);
        let v = route_history(&h, "a", Window::Hour, at, false);
        assert_eq!(v.points.len(), 360);
        assert_eq!(v.step_seconds, 10);
        assert_eq!(v.to_ns, T0 + 3_610 * SEC);
        assert_eq!(v.from_ns, T0 + 10 * SEC);
        let last = v.points.last().unwrap();
        assert_eq!(
            (last.t_ns, last.requests, last.errors),
            (T0 + 3_600 * SEC, 2, 1)
        );
        assert_eq!(last.counts[6] + last.counts[17], 2);
        assert!(v.points[..359].iter().all(|p| p.requests == 0));
        assert!(v.versions.is_none());
        let json = serde_json::to_value(&v).unwrap();
        assert!(json.get("versions").is_none());
        assert_eq!(json["rows_ms"][39], serde_json::Value::Null);
        assert_eq!(json["points"][0]["p99_ms"], serde_json::Value::Null);

        let day = route_history(&h, "a", Window::Day, at, true);
        assert_eq!((day.points.len(), day.step_seconds), (288, 300));
        let versions = day.versions.unwrap();
        assert_eq!(versions.canary.last().unwrap().requests, 1);
        assert_eq!(versions.stable.len(), 288);
        assert!(versions.stable.iter().all(|p| p.requests == 0));
    }

    proptest! {
        /// The rows hold every request of the point exactly once, each in
        /// the row whose bounds hold its latency.
        #[test]
        fn rows_sum_to_requests(values in prop::collection::vec(
            prop_oneof![0u64..200, 200u64..1_000_000, 1_000_000u64..200_000_000, any::<u64>()],
            0..200,
        )) {
            let p = HistoryPoint::of(T0, &point(&values, 0));
            prop_assert_eq!(p.counts.iter().sum::<u64>(), values.len() as u64);
            let mut by_bounds = vec![0u64; ROWS];
            for &v in &values {
                by_bounds[row_by_bounds(v)] += 1;
            }
            prop_assert_eq!(p.counts, by_bounds);
        }

        /// Quantiles of planted latencies (1 µs to 100 s) are within the
        /// layout's 6.25% of the exact quantile (rank ⌈q·n⌉).
        #[test]
        fn quantiles_are_within_the_layouts_error(
            mut values in prop::collection::vec(
                prop_oneof![1u64..1_000, 1_000u64..100_000, 100_000u64..100_000_000],
                1..300,
            ),
        ) {
            let p = HistoryPoint::of(T0, &point(&values, 0));
            values.sort_unstable();
            for (q, got) in [(0.50, p.p50_ms), (0.95, p.p95_ms), (0.99, p.p99_ms)] {
                let rank = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len());
                let exact_ms = values[rank - 1] as f64 / 1_000.0;
                let got = got.unwrap();
                prop_assert!(
                    (got - exact_ms).abs() <= 0.0625 * exact_ms,
                    "p{} {} ms, exact {} ms", q * 100.0, got, exact_ms
                );
            }
        }
    }
}
