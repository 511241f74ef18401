//! The latency bucket layout the data plane and the canary judge share, and
//! the histogram snapshot the judge reads.
//!
//! The layout is log-linear: values below 32 µs get one bucket each (exact),
//! then every power of two is cut into [`SUB_BUCKETS`] equal parts, up to
//! 2^30 µs (about 17.9 minutes); anything longer lands in the last bucket.
//! A bucket is at most 1/16 (6.25%) of its lower bound wide, so its midpoint,
//! which is what [`LatencyHistogram::quantile`] reports, is within 3.2% of
//! every value in it.
//!
//! Why 16 and not 32 parts per power of two: 32 parts (3.1% wide buckets)
//! from 32 µs to 10 minutes take 32 + 25 × 32 = 832 buckets, and no layout
//! with buckets at most 3.1% wide fits that range in 512. The data plane
//! keeps one `AtomicU64` per bucket per version, so the count is kept at
//! [`BUCKETS`] = 432.
//!
//! [`bucket_of`] runs on every request: a comparison, `leading_zeros`, a
//! shift and a mask.

use std::ops::Range;
use std::time::Duration;

/// log2 of [`SUB_BUCKETS`].
const SUB_BITS: u32 = 4;
/// Equal parts each power of two is cut into.
pub const SUB_BUCKETS: usize = 1 << SUB_BITS;
/// Values below this get a bucket of their own.
const EXACT_BELOW: u64 = 2 * SUB_BUCKETS as u64;
/// The first power of two (as an exponent) past the layout's range.
const TOP_EXPONENT: u32 = 30;
/// Buckets in the layout; the last also holds everything past 2^30 µs.
pub const BUCKETS: usize = (TOP_EXPONENT as usize - SUB_BITS as usize + 1) * SUB_BUCKETS;
// The data plane's per-version counter budget.
const _: () = assert!(BUCKETS <= 512);

/// The bucket holding a latency of `micros`.
#[inline]
pub fn bucket_of(micros: u64) -> usize {
    if micros < EXACT_BELOW {
        return micros as usize;
    }
    let exponent = 63 - micros.leading_zeros();
    if exponent >= TOP_EXPONENT {
        return BUCKETS - 1;
    }
    let sub = (micros >> (exponent - SUB_BITS)) as usize & (SUB_BUCKETS - 1);
    (exponent - SUB_BITS + 1) as usize * SUB_BUCKETS + sub
}

/// The smallest value bucket `i` holds (`i` is clamped to the layout).
pub fn bucket_lower_micros(i: usize) -> u64 {
    let i = i.min(BUCKETS - 1);
    if i < EXACT_BELOW as usize {
        return i as u64;
    }
    let exponent = (i / SUB_BUCKETS) as u32 + SUB_BITS - 1;
    let sub = (i % SUB_BUCKETS) as u64;
    (SUB_BUCKETS as u64 + sub) << (exponent - SUB_BITS)
}

/// The largest value bucket `i` holds; the last bucket is open-ended.
pub fn bucket_upper_micros(i: usize) -> u64 {
    if i >= BUCKETS - 1 {
        return u64::MAX;
    }
    bucket_lower_micros(i + 1) - 1
}

/// The value reported for bucket `i`: its midpoint, or the lower bound of
/// the open-ended last bucket (anything else would be invented).
pub fn bucket_mid_micros(i: usize) -> f64 {
    let lower = bucket_lower_micros(i);
    if i >= BUCKETS - 1 {
        return lower as f64;
    }
    (lower as f64 + bucket_upper_micros(i) as f64) / 2.0
}

/// Bucket `i` seen as a continuous interval `[from, to)`: the integer
/// values it holds, each widened by half a microsecond either side, so that
/// adjacent buckets tile the line. The last bucket is given the width its
/// neighbour has, since its real extent is unknown.
pub(crate) fn bucket_span(i: usize) -> (f64, f64) {
    let lower = bucket_lower_micros(i) as f64 - 0.5;
    if i >= BUCKETS - 1 {
        let width = (bucket_lower_micros(i) - bucket_lower_micros(i - 1)) as f64;
        return (lower, lower + width);
    }
    (lower, bucket_upper_micros(i) as f64 + 0.5)
}

/// The bucket holding a continuous value (the inverse of [`bucket_span`]).
pub(crate) fn bucket_of_f64(micros: f64) -> usize {
    if micros.is_nan() || micros < 0.5 {
        return 0;
    }
    // `as` saturates, so huge values land in the last bucket.
    bucket_of((micros + 0.5) as u64)
}

/// Latency counts per bucket: a snapshot of the data plane's counters, or
/// the difference of two snapshots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LatencyHistogram {
    counts: Vec<u64>,
    /// The sum of `counts`, kept so the judge need not add 432 numbers for
    /// every question it asks.
    total: u64,
    /// The buckets from the first to the last non-empty one (empty: 0..0);
    /// latencies cluster, so the statistics only walk this.
    occupied: Range<usize>,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self::new()
    }
}

impl LatencyHistogram {
    /// An empty histogram.
    pub fn new() -> Self {
        Self {
            counts: vec![0; BUCKETS],
            total: 0,
            occupied: 0..0,
        }
    }

    /// Counts one request that took `micros`.
    pub fn record(&mut self, micros: u64) {
        self.add_count(bucket_of(micros), 1);
    }

    /// Adds `n` requests to bucket `bucket` (clamped to the layout), as when
    /// copying the data plane's counters.
    pub fn add_count(&mut self, bucket: usize, n: u64) {
        if n == 0 {
            return;
        }
        let bucket = bucket.min(BUCKETS - 1);
        let slot = &mut self.counts[bucket];
        *slot = slot.saturating_add(n);
        self.total = self.total.saturating_add(n);
        self.occupied = if self.occupied.is_empty() {
            bucket..bucket + 1
        } else {
            self.occupied.start.min(bucket)..self.occupied.end.max(bucket + 1)
        };
    }

    /// Adds every count of `other`.
    pub fn merge(&mut self, other: &LatencyHistogram) {
        for bucket in other.occupied() {
            self.add_count(bucket, other.counts[bucket]);
        }
    }

    /// Requests counted.
    pub fn count(&self) -> u64 {
        self.total
    }

    /// The buckets from the first non-empty one to the last (empty when
    /// nothing was counted).
    pub fn occupied(&self) -> Range<usize> {
        self.occupied.clone()
    }

    /// Counts per bucket, [`BUCKETS`] of them.
    pub fn counts(&self) -> &[u64] {
        &self.counts
    }

    /// What happened between `earlier` and this snapshot of the same
    /// cumulative counters. A counter that went backwards (a reset) gives 0
    /// rather than wrapping.
    pub fn saturating_sub(&self, earlier: &LatencyHistogram) -> LatencyHistogram {
        let mut difference = LatencyHistogram::new();
        for bucket in self.occupied() {
            difference.add_count(
                bucket,
                self.counts[bucket].saturating_sub(earlier.counts[bucket]),
            );
        }
        difference
    }

    /// The `q` quantile in microseconds (`q` clamped to 0..=1): the midpoint
    /// of the bucket holding the request of rank ⌈q·n⌉. `None` when empty.
    pub fn quantile_micros(&self, q: f64) -> Option<f64> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let q = if q.is_nan() { 0.5 } else { q.clamp(0.0, 1.0) };
        let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0u64;
        for i in self.occupied() {
            seen = seen.saturating_add(self.counts[i]);
            if seen >= rank {
                return Some(bucket_mid_micros(i));
            }
        }
        Some(bucket_mid_micros(BUCKETS - 1))
    }

    /// The `q` quantile as a duration (see [`Self::quantile_micros`]).
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        self.quantile_micros(q)
            .map(|micros| Duration::from_nanos((micros * 1000.0) as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn small_values_are_exact_and_the_range_reaches_ten_minutes() {
        for v in 0..EXACT_BELOW {
            let i = bucket_of(v);
            assert_eq!((bucket_lower_micros(i), bucket_upper_micros(i)), (v, v));
        }
        let ten_minutes = 600_000_000;
        assert!(bucket_of(ten_minutes) < BUCKETS - 1);
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
        assert_eq!(bucket_of(1 << TOP_EXPONENT), BUCKETS - 1);
        assert_eq!(bucket_of((1 << TOP_EXPONENT) - 1), BUCKETS - 1);
    }

    #[test]
    fn buckets_tile_the_line() {
        for i in 0..BUCKETS - 1 {
            assert_eq!(bucket_upper_micros(i) + 1, bucket_lower_micros(i + 1));
            assert_eq!(bucket_of(bucket_lower_micros(i)), i);
            assert_eq!(bucket_of(bucket_upper_micros(i)), i);
            let (from, to) = bucket_span(i);
            assert_eq!(bucket_of_f64(from + 1e-6), i);
            assert_eq!(bucket_of_f64(to - 1e-6), i);
        }
    }

    #[test]
    fn quantiles_and_differences() {
        let mut h = LatencyHistogram::new();
        assert_eq!(h.quantile(0.5), None);
        for v in 1..=100 {
            h.record(v * 1000);
        }
        let median = h.quantile_micros(0.5).unwrap();
        assert!((median - 50_000.0).abs() / 50_000.0 < 0.035, "{median}");
        let earlier = h.clone();
        h.record(7);
        let diff = h.saturating_sub(&earlier);
        assert_eq!(diff.count(), 1);
        assert_eq!(diff.quantile(1.0), Some(Duration::from_micros(7)));
        assert_eq!(earlier.saturating_sub(&h).count(), 0);
        let mut merged = diff.clone();
        merged.merge(&earlier);
        assert_eq!(merged, h);
        assert_eq!(diff.occupied(), 7..8);
        assert_eq!(h.occupied(), 7..bucket_of(100_000) + 1);
        assert_eq!(LatencyHistogram::new().occupied(), 0..0);
    }

    proptest! {
        #[test]
        fn bucket_of_is_monotone(a in any::<u64>(), b in any::<u64>()) {
            let (low, high) = if a <= b { (a, b) } else { (b, a) };
            prop_assert!(bucket_of(low) <= bucket_of(high));
        }

        #[test]
        fn values_lie_in_narrow_buckets(v in prop_oneof![0u64..100_000, 0u64..(1 << 31), any::<u64>()]) {
            let i = bucket_of(v);
            prop_assert!(i < BUCKETS);
            prop_assert!(bucket_lower_micros(i) <= v && v <= bucket_upper_micros(i));
            if i < BUCKETS - 1 {
                let width = (bucket_upper_micros(i) - bucket_lower_micros(i) + 1) as f64;
                prop_assert!(width / bucket_lower_micros(i).max(1) as f64 <= 1.0 / SUB_BUCKETS as f64
                    || width == 1.0);
                let mid = bucket_mid_micros(i);
                prop_assert!((mid - v as f64).abs() <= 0.032 * v as f64 + 0.5);
            }
        }

        #[test]
        fn quantiles_lie_in_the_bucket_of_the_true_quantile(
            mut values in prop::collection::vec(0u64..10_000_000, 1..200),
            q in 0.0f64..=1.0,
        ) {
            let mut h = LatencyHistogram::new();
            for v in &values {
                h.record(*v);
            }
            values.sort_unstable();
            let rank = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len());
            let truth = values[rank - 1];
            let bucket = bucket_of(truth);
            let estimate = h.quantile_micros(q).unwrap();
            prop_assert!(bucket_lower_micros(bucket) as f64 <= estimate);
            prop_assert!(estimate <= bucket_upper_micros(bucket) as f64);
        }
    }
}
