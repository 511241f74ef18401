//! Hedging's inputs: when a route sends its hedge. A fixed delay, or the
//! route's recently observed latency at a percentile, tracked by
//! [`LatencyQuantile`]: log-spaced buckets of atomic counters over two
//! rotating generations, so recording takes no lock and old traffic ages out.

use levee_config::Hedge;
use levee_core::metrics::{names, Counter, Registry};
use levee_core::Nanos;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Buckets per doubling of latency (resolution about 19%).
const PER_OCTAVE: u32 = 4;
/// Buckets from 1µs to about 2^26 µs (67 s).
const BUCKETS: usize = (26 * PER_OCTAVE) as usize;
/// Samples needed before a percentile is trusted; until then a percentile
/// policy does not hedge (no evidence that the first attempt is slow).
const MIN_SAMPLES: u64 = 20;

/// Recent response-head latencies of a route.
#[derive(Debug)]
pub(crate) struct LatencyQuantile {
    generations: [[AtomicU64; BUCKETS]; 2],
    /// Which generation takes new samples (the [`GENERATION_BIT`]), and
    /// since when (the other bits).
    epoch: AtomicU64,
    window_ns: u64,
}

/// The bit of `epoch` that says which generation takes new samples.
const GENERATION_BIT: u64 = 1 << 63;

/// The generation `epoch` names.
fn generation_of(epoch: u64) -> usize {
    usize::from(epoch & GENERATION_BIT != 0)
}

fn bucket_of(latency_ns: u64) -> usize {
    let micros = (latency_ns / 1_000).max(1);
    // log2 with PER_OCTAVE sub-steps, from the leading bits.
    let octave = 63 - micros.leading_zeros();
    let frac = if octave >= 2 {
        ((micros >> (octave - 2)) & 0b11) as u32
    } else {
        ((micros << (2 - octave)) & 0b11) as u32
    };
    ((octave * PER_OCTAVE + frac) as usize).min(BUCKETS - 1)
}

/// The upper bound of a bucket, in nanoseconds.
fn bucket_upper_ns(bucket: usize) -> u64 {
    let octave = bucket as u32 / PER_OCTAVE;
    let frac = bucket as u64 % u64::from(PER_OCTAVE);
    let base = 1u64 << octave;
    (base + (base * (frac + 1)) / u64::from(PER_OCTAVE)) * 1_000
}

impl LatencyQuantile {
    pub(crate) fn new(window: Duration) -> Self {
        Self {
            generations: std::array::from_fn(|_| std::array::from_fn(|_| AtomicU64::new(0))),
            epoch: AtomicU64::new(0),
            window_ns: window.as_nanos().max(1) as u64,
        }
    }

    /// Records one latency observed at `now`.
    pub(crate) fn observe(&self, latency_ns: u64, now: Nanos) {
        let current = self.rotate(now);
        self.generations[current][bucket_of(latency_ns)].fetch_add(1, Ordering::Relaxed);
    }

    /// Starts a new generation once a window has passed; returns the
    /// current generation's index.
    fn rotate(&self, now: Nanos) -> usize {
        let epoch = self.epoch.load(Ordering::Acquire);
        let current = generation_of(epoch);
        let since = epoch & !GENERATION_BIT;
        if now.saturating_sub(since) < self.window_ns {
            return current;
        }
        let next = 1 - current;
        let stamped = (now & !GENERATION_BIT) | if next == 1 { GENERATION_BIT } else { 0 };
        if self
            .epoch
            .compare_exchange(epoch, stamped, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            // The winner clears the generation it takes over; samples that
            // race with the clearing are few and only age early.
            for b in &self.generations[next] {
                b.store(0, Ordering::Relaxed);
            }
            next
        } else {
            generation_of(self.epoch.load(Ordering::Acquire))
        }
    }

    /// The latency at quantile `q` (0..1) over the last one to two windows,
    /// once enough samples exist.
    pub(crate) fn quantile(&self, q: f64) -> Option<Duration> {
        let counts: Vec<u64> = (0..BUCKETS)
            .map(|i| {
                self.generations
                    .iter()
                    .map(|g| g[i].load(Ordering::Relaxed))
                    .sum()
            })
            .collect();
        let total: u64 = counts.iter().sum();
        if total < MIN_SAMPLES {
            return None;
        }
        let rank = ((total as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, c) in counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(Duration::from_nanos(bucket_upper_ns(i)));
            }
        }
        None
    }
}

/// When a route hedges.
#[derive(Debug)]
pub(crate) struct HedgePolicy {
    pub(crate) config: Hedge,
    pub(crate) latency: LatencyQuantile,
    /// Hedges sent.
    pub(crate) sent: Arc<Counter>,
    /// Requests a hedge answered first.
    pub(crate) won: Arc<Counter>,
}

impl HedgePolicy {
    pub(crate) fn new(config: Hedge, route: &str, registry: &Registry) -> Self {
        Self {
            config,
            latency: LatencyQuantile::new(Duration::from_secs(30)),
            sent: registry.counter(
                names::HEDGES,
                "Hedged attempts sent, by route.",
                &[("route", route)],
            ),
            won: registry.counter(
                names::HEDGE_WINS,
                "Requests whose hedge answered first, by route.",
                &[("route", route)],
            ),
        }
    }

    /// How long to wait for the first attempt before hedging; `None` while
    /// a percentile policy has too little evidence.
    pub(crate) fn delay(&self) -> Option<Duration> {
        match (self.config.delay, self.config.percentile) {
            (Some(d), _) => Some(d),
            (None, Some(q)) => self
                .latency
                .quantile(q)
                .map(|d| d.max(self.config.min_delay)),
            (None, None) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn quantiles_follow_the_samples() {
        let q = LatencyQuantile::new(Duration::from_secs(10));
        for i in 0..100u64 {
            // 1..=100 ms
            q.observe((i + 1) * MS, 0);
        }
        let p50 = q.quantile(0.5).unwrap();
        let p95 = q.quantile(0.95).unwrap();
        assert!(
            p50 >= Duration::from_millis(50) && p50 <= Duration::from_millis(62),
            "{p50:?}"
        );
        assert!(
            p95 >= Duration::from_millis(95) && p95 <= Duration::from_millis(120),
            "{p95:?}"
        );
    }

    #[test]
    fn too_few_samples_give_nothing() {
        let q = LatencyQuantile::new(Duration::from_secs(10));
        for _ in 0..(MIN_SAMPLES - 1) {
            q.observe(MS, 0);
        }
        assert_eq!(q.quantile(0.5), None);
    }

    #[test]
    fn old_samples_age_out_after_two_windows() {
        let q = LatencyQuantile::new(Duration::from_secs(10));
        for _ in 0..100 {
            q.observe(500 * MS, 0);
        }
        for _ in 0..100 {
            q.observe(2 * MS, 11_000 * MS);
        }
        // One window later the slow samples still count...
        assert!(q.quantile(0.9).unwrap() >= Duration::from_millis(400));
        for _ in 0..100 {
            q.observe(2 * MS, 22_000 * MS);
        }
        // ...two windows later they are gone.
        assert!(q.quantile(0.99).unwrap() <= Duration::from_millis(3));
    }

    proptest! {
        /// A bucket's upper bound is at least the latency put in it, and at
        /// most about 25% above it.
        #[test]
        fn buckets_bound_their_samples(ns in 1_000u64..60_000_000_000) {
            let upper = bucket_upper_ns(bucket_of(ns));
            prop_assert!(upper >= ns / 1_000 * 1_000, "{} < {}", upper, ns);
            prop_assert!(upper as f64 <= (ns as f64) * 1.26 + 1_000.0);
        }
    }
}
