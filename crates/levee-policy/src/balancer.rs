//! Load-balancer choice. A [`Balancer`] is built for one candidate set (the
//! healthy endpoints of a cluster, in a fixed order) and rebuilt when that set
//! changes; choosing is lock-free.
//!
//! - Smooth weighted round robin (NGINX's algorithm), precomputed into one
//!   cycle so that a pick is an atomic increment.
//! - Least request with two random choices (P2C), weighted.
//! - Peak EWMA with P2C: latency estimate times outstanding requests.
//! - Consistent hashing on a ring (Ketama style) or a Maglev table, keyed by
//!   each endpoint's stable identity (its address), so every gateway instance
//!   maps a key to the same endpoint and a removal moves only its own keys.

use crate::hash::{hash64, mix64};
use levee_core::Nanos;
use std::sync::atomic::{AtomicUsize, Ordering};

/// What a balancer reads from an endpoint at choice time.
pub trait EndpointLoad {
    /// Requests in flight to this endpoint.
    fn in_flight(&self) -> u64;
    /// Configured weight (at least 1).
    fn weight(&self) -> u32;
    /// Peak-EWMA latency estimate in nanoseconds at `now`.
    fn latency_cost(&self, now: Nanos) -> f64;
}

impl<T: EndpointLoad + ?Sized> EndpointLoad for std::sync::Arc<T> {
    fn in_flight(&self) -> u64 {
        (**self).in_flight()
    }
    fn weight(&self) -> u32 {
        (**self).weight()
    }
    fn latency_cost(&self, now: Nanos) -> f64 {
        (**self).latency_cost(now)
    }
}

/// The algorithms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// Smooth weighted round robin.
    RoundRobin,
    /// P2C on weighted in-flight requests.
    LeastRequest,
    /// P2C on latency estimate times load.
    PeakEwma,
    /// Consistent hashing on a ring.
    RingHash,
    /// Consistent hashing with a Maglev lookup table.
    Maglev,
}

/// A balancer for one candidate set.
#[derive(Debug)]
pub enum Balancer {
    /// See [`WeightedRoundRobin`].
    RoundRobin(WeightedRoundRobin),
    /// P2C least request.
    LeastRequest(Weights),
    /// P2C peak EWMA.
    PeakEwma(Weights),
    /// See [`HashRing`].
    RingHash(HashRing),
    /// See [`Maglev`].
    Maglev(Maglev),
}

impl Balancer {
    /// Builds `algorithm` for endpoints identified by `keys` with `weights`.
    pub fn new(algorithm: Algorithm, keys: &[&str], weights: &[u32]) -> Self {
        debug_assert_eq!(keys.len(), weights.len());
        match algorithm {
            Algorithm::RoundRobin => Balancer::RoundRobin(WeightedRoundRobin::new(weights)),
            Algorithm::LeastRequest => Balancer::LeastRequest(Weights::new(weights)),
            Algorithm::PeakEwma => Balancer::PeakEwma(Weights::new(weights)),
            Algorithm::RingHash => Balancer::RingHash(HashRing::new(keys, weights)),
            Algorithm::Maglev => Balancer::Maglev(Maglev::new(keys, weights, MAGLEV_TABLE_SIZE)),
        }
    }

    /// Chooses an index into `endpoints` (the set this balancer was built for).
    /// `hash` is the request's key for the hashing algorithms (without one they
    /// fall back to a random choice); `random` supplies random bits.
    pub fn pick<E: EndpointLoad>(
        &self,
        endpoints: &[E],
        hash: Option<u64>,
        random: u64,
        now: Nanos,
    ) -> Option<usize> {
        let n = endpoints.len();
        if n == 0 {
            return None;
        }
        if n == 1 {
            return Some(0);
        }
        match self {
            Balancer::RoundRobin(rr) => rr.next(),
            Balancer::LeastRequest(w) => {
                let (a, b) = w.two_choices(n, random);
                let (ea, eb) = (&endpoints[a], &endpoints[b]);
                // in_flight / weight compared without division.
                let la = ea.in_flight() * u64::from(w.of(b, eb));
                let lb = eb.in_flight() * u64::from(w.of(a, ea));
                Some(if lb < la { b } else { a })
            }
            Balancer::PeakEwma(w) => {
                let (a, b) = w.two_choices(n, random);
                let score = |i: usize, e: &E| {
                    (e.latency_cost(now) + 1.0) * (e.in_flight() + 1) as f64 / f64::from(w.of(i, e))
                };
                Some(if score(b, &endpoints[b]) < score(a, &endpoints[a]) {
                    b
                } else {
                    a
                })
            }
            Balancer::RingHash(ring) => Some(ring.lookup(hash.unwrap_or(random))),
            Balancer::Maglev(m) => Some(m.lookup(hash.unwrap_or(random))),
        }
    }
}

/// The weights a P2C balancer was built with. They can differ from the
/// endpoints' configured weights (slow start ramps them), so picks use these.
/// With unequal weights the two choices are drawn in proportion to weight,
/// so that idle endpoints still share traffic by weight.
#[derive(Debug)]
pub struct Weights {
    weights: Vec<u32>,
    /// Running sums, only when the weights differ (uniform draws otherwise).
    cumulative: Option<Vec<u64>>,
}

impl Weights {
    fn new(weights: &[u32]) -> Self {
        let uniform = weights.windows(2).all(|w| w[0] == w[1]);
        let cumulative = (!uniform).then(|| {
            weights
                .iter()
                .scan(0u64, |sum, w| {
                    *sum += u64::from((*w).max(1));
                    Some(*sum)
                })
                .collect()
        });
        Self {
            weights: weights.to_vec(),
            cumulative,
        }
    }

    /// The weight of candidate `i` (the endpoint's own if not built with one).
    fn of<E: EndpointLoad>(&self, i: usize, e: &E) -> u32 {
        self.weights
            .get(i)
            .copied()
            .unwrap_or_else(|| e.weight())
            .max(1)
    }

    /// Two distinct indices in `0..n` (n ≥ 2), by weight when weights differ.
    fn two_choices(&self, n: usize, random: u64) -> (usize, usize) {
        let Some(cumulative) = self.cumulative.as_ref().filter(|c| c.len() == n) else {
            return two_choices(n, random);
        };
        let total = cumulative[n - 1];
        let draw = |r: u64| cumulative.partition_point(|&c| c <= r % total).min(n - 1);
        let a = draw(random & 0xffff_ffff);
        let mut b = draw(random >> 32);
        if b == a {
            // Redraw the second uniformly among the others.
            b = (a + 1 + ((random >> 16) as usize) % (n - 1)) % n;
        }
        (a, b)
    }
}

/// Two distinct indices in `0..n` (n ≥ 2) from one random word.
fn two_choices(n: usize, random: u64) -> (usize, usize) {
    let a = (random as u32 as usize) % n;
    let mut b = ((random >> 32) as usize) % (n - 1);
    if b >= a {
        b += 1;
    }
    (a, b)
}

/// Longest precomputed round-robin cycle; larger weight sums are scaled down.
const MAX_CYCLE: u64 = 1 << 16;

/// Smooth weighted round robin, precomputed as one full cycle.
#[derive(Debug)]
pub struct WeightedRoundRobin {
    cycle: Vec<u32>,
    next: AtomicUsize,
}

impl WeightedRoundRobin {
    /// The cycle for `weights` (each ≥ 1).
    pub fn new(weights: &[u32]) -> Self {
        let total: u64 = weights.iter().map(|&w| u64::from(w.max(1))).sum();
        let weights: Vec<i64> = weights
            .iter()
            .map(|&w| {
                let w = u64::from(w.max(1));
                let scaled = if total > MAX_CYCLE {
                    (w * MAX_CYCLE / total).max(1)
                } else {
                    w
                };
                scaled as i64
            })
            .collect();
        let g = weights.iter().fold(0, |acc, &w| gcd(acc, w));
        let weights: Vec<i64> = weights.iter().map(|w| w / g.max(1)).collect();
        let total: i64 = weights.iter().sum();
        let mut current = vec![0i64; weights.len()];
        let mut cycle = Vec::with_capacity(total as usize);
        for _ in 0..total {
            let mut best = 0;
            for i in 0..weights.len() {
                current[i] += weights[i];
                if current[i] > current[best] {
                    best = i;
                }
            }
            current[best] -= total;
            cycle.push(best as u32);
        }
        Self {
            cycle,
            next: AtomicUsize::new(0),
        }
    }

    /// The next index in the cycle.
    pub fn next(&self) -> Option<usize> {
        if self.cycle.is_empty() {
            return None;
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.cycle.len();
        Some(self.cycle[i] as usize)
    }

    /// One full cycle, for tests.
    pub fn cycle(&self) -> &[u32] {
        &self.cycle
    }
}

fn gcd(a: i64, b: i64) -> i64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// A Ketama-style ring: each endpoint owns points proportional to its weight.
#[derive(Debug)]
pub struct HashRing {
    points: Vec<(u64, u32)>,
}

impl HashRing {
    /// A ring of 160 points per unit of weight. The count per endpoint does
    /// not depend on the others, so removing one moves only its keys; only
    /// rings over 2^20 points are scaled down (and then lose that property).
    pub fn new(keys: &[&str], weights: &[u32]) -> Self {
        const PER_WEIGHT: u64 = 160;
        const MAX_POINTS: u64 = 1 << 20;
        let total_weight: u64 = weights.iter().map(|&w| u64::from(w.max(1))).sum();
        let per_weight = if total_weight * PER_WEIGHT > MAX_POINTS {
            (MAX_POINTS / total_weight).max(1)
        } else {
            PER_WEIGHT
        };
        let mut points = Vec::with_capacity((total_weight * per_weight) as usize);
        for (i, key) in keys.iter().enumerate() {
            let share = per_weight * u64::from(weights[i].max(1));
            let base = hash64(key.as_bytes());
            for j in 0..share {
                points.push((mix64(base ^ mix64(j + 1)), i as u32));
            }
        }
        points.sort_unstable();
        Self { points }
    }

    /// The endpoint owning `hash`: the first point at or after it, wrapping.
    pub fn lookup(&self, hash: u64) -> usize {
        let i = self.points.partition_point(|&(p, _)| p < hash);
        let (_, idx) = self.points[if i == self.points.len() { 0 } else { i }];
        idx as usize
    }
}

/// Maglev table size: a prime, so every skip visits every slot.
pub const MAGLEV_TABLE_SIZE: usize = 65_537;

/// Google's Maglev consistent hashing, with weights as in Envoy: endpoints
/// take turns filling their preferred free slots, each in proportion to its
/// weight.
#[derive(Debug)]
pub struct Maglev {
    table: Vec<u32>,
}

impl Maglev {
    /// A table of `size` slots (prime) for endpoints `keys` with `weights`.
    pub fn new(keys: &[&str], weights: &[u32], size: usize) -> Self {
        let n = keys.len();
        let mut table = vec![u32::MAX; size];
        if n == 0 {
            return Self { table: Vec::new() };
        }
        let m = size as u64;
        let perms: Vec<(u64, u64)> = keys
            .iter()
            .map(|k| {
                let h = hash64(k.as_bytes());
                let offset = h % m;
                let skip = mix64(h ^ 0x9e37_79b9_7f4a_7c15) % (m - 1) + 1;
                (offset, skip)
            })
            .collect();
        let max_w = f64::from(weights.iter().copied().max().unwrap_or(1).max(1));
        let mut next = vec![0u64; n];
        let mut target = vec![0f64; n];
        let mut filled = 0;
        'outer: loop {
            for i in 0..n {
                target[i] += f64::from(weights[i].max(1)) / max_w;
                while target[i] >= 1.0 {
                    target[i] -= 1.0;
                    let (offset, skip) = perms[i];
                    loop {
                        let slot = ((offset + next[i] * skip) % m) as usize;
                        next[i] += 1;
                        if table[slot] == u32::MAX {
                            table[slot] = i as u32;
                            filled += 1;
                            break;
                        }
                    }
                    if filled == size {
                        break 'outer;
                    }
                }
            }
        }
        Self { table }
    }

    /// The endpoint for `hash`.
    pub fn lookup(&self, hash: u64) -> usize {
        self.table[(hash % self.table.len() as u64) as usize] as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    struct Ep {
        in_flight: u64,
        weight: u32,
        cost: f64,
    }

    impl EndpointLoad for Ep {
        fn in_flight(&self) -> u64 {
            self.in_flight
        }
        fn weight(&self) -> u32 {
            self.weight
        }
        fn latency_cost(&self, _now: Nanos) -> f64 {
            self.cost
        }
    }

    fn eps(loads: &[(u64, u32, f64)]) -> Vec<Ep> {
        loads
            .iter()
            .map(|&(in_flight, weight, cost)| Ep {
                in_flight,
                weight,
                cost,
            })
            .collect()
    }

    #[test]
    fn smooth_round_robin_interleaves() {
        // NGINX's documented example: weights 5, 1, 1 give a a b a c a a.
        let rr = WeightedRoundRobin::new(&[5, 1, 1]);
        assert_eq!(rr.cycle(), &[0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn least_request_prefers_the_idle_endpoint() {
        let e = eps(&[(10, 1, 0.0), (0, 1, 0.0)]);
        let b = Balancer::new(Algorithm::LeastRequest, &["a", "b"], &[1, 1]);
        for r in 0..100u64 {
            assert_eq!(b.pick(&e, None, mix64(r), 0), Some(1));
        }
    }

    #[test]
    fn least_request_shares_idle_traffic_by_the_weights_it_was_built_with() {
        // Configured weights are equal; the balancer's (ramped) ones are not.
        let e = eps(&[(0, 1, 0.0), (0, 1, 0.0)]);
        let b = Balancer::new(Algorithm::LeastRequest, &["a", "b"], &[1, 9]);
        let mut counts = [0usize; 2];
        for r in 0..10_000u64 {
            counts[b.pick(&e, None, mix64(r), 0).unwrap()] += 1;
        }
        assert!(share_within(&counts, &[0.1, 0.9], 0.03), "{counts:?}");
    }

    #[test]
    fn peak_ewma_prefers_the_fast_endpoint() {
        let e = eps(&[(0, 1, 50e6), (0, 1, 1e6)]);
        let b = Balancer::new(Algorithm::PeakEwma, &["a", "b"], &[1, 1]);
        assert_eq!(b.pick(&e, None, 7, 0), Some(1));
        // ...until it has many more requests outstanding.
        let e = eps(&[(0, 1, 50e6), (100, 1, 1e6)]);
        assert_eq!(b.pick(&e, None, 7, 0), Some(0));
    }

    #[test]
    fn hashing_without_a_key_still_chooses() {
        let e = eps(&[(0, 1, 0.0), (0, 1, 0.0), (0, 1, 0.0)]);
        let b = Balancer::new(Algorithm::RingHash, &["a", "b", "c"], &[1, 1, 1]);
        assert!(b.pick(&e, None, 12345, 0).is_some());
    }

    fn share_within(counts: &[usize], expected: &[f64], tolerance: f64) -> bool {
        let total: usize = counts.iter().sum();
        counts
            .iter()
            .zip(expected)
            .all(|(&c, &e)| ((c as f64 / total as f64) - e).abs() <= tolerance)
    }

    #[test]
    fn ring_and_maglev_spread_keys_by_weight() {
        let keys = ["10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80", "10.0.0.4:80"];
        let weights = [1, 1, 2, 4];
        let expected = [0.125, 0.125, 0.25, 0.5];
        let ring = HashRing::new(&keys, &weights);
        let maglev = Maglev::new(&keys, &weights, MAGLEV_TABLE_SIZE);
        let mut rc = [0usize; 4];
        let mut mc = [0usize; 4];
        for k in 0..40_000u64 {
            let h = hash64(&k.to_le_bytes());
            rc[ring.lookup(h)] += 1;
            mc[maglev.lookup(h)] += 1;
        }
        assert!(share_within(&rc, &expected, 0.04), "ring {rc:?}");
        assert!(share_within(&mc, &expected, 0.02), "maglev {mc:?}");
    }

    fn keys_for(n: usize) -> Vec<String> {
        (0..n)
            .map(|i| format!("10.1.{}.{}:8080", i / 250, i % 250))
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// Over one cycle, round robin gives each endpoint exactly its weight
        /// (reduced by the common divisor), the naive model of "weight".
        #[test]
        fn round_robin_cycle_matches_weights(weights in prop::collection::vec(1u32..50, 1..12)) {
            let rr = WeightedRoundRobin::new(&weights);
            let g = weights.iter().fold(0i64, |a, &w| gcd(a, i64::from(w)));
            let mut counts = vec![0i64; weights.len()];
            for &i in rr.cycle() { counts[i as usize] += 1; }
            for (c, w) in counts.iter().zip(&weights) {
                prop_assert_eq!(*c, i64::from(*w) / g);
            }
        }

        /// P2C never returns an index out of range, and never the more loaded
        /// of its two choices.
        #[test]
        fn p2c_picks_in_range(loads in prop::collection::vec(0u64..100, 1..20), r in any::<u64>()) {
            let e: Vec<Ep> = loads.iter().map(|&l| Ep { in_flight: l, weight: 1, cost: 0.0 }).collect();
            let keys: Vec<&str> = loads.iter().map(|_| "k").collect();
            let w: Vec<u32> = loads.iter().map(|_| 1).collect();
            let b = Balancer::new(Algorithm::LeastRequest, &keys, &w);
            let i = b.pick(&e, None, r, 0).unwrap();
            prop_assert!(i < e.len());
            if e.len() > 1 {
                let (a, bb) = two_choices(e.len(), r);
                prop_assert!(i == a || i == bb);
                prop_assert!(e[i].in_flight <= e[a].in_flight.max(e[bb].in_flight));
            }
        }

        /// Ring hash: removing an endpoint moves only the keys it owned.
        #[test]
        fn ring_removal_moves_only_owned_keys(n in 2usize..12, removed in 0usize..12, seeds in prop::collection::vec(any::<u64>(), 64)) {
            let removed = removed % n;
            let keys = keys_for(n);
            let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
            let weights = vec![1; n];
            let before = HashRing::new(&refs, &weights);
            let kept: Vec<&str> = refs.iter().enumerate().filter(|(i, _)| *i != removed).map(|(_, k)| *k).collect();
            let after = HashRing::new(&kept, &weights[1..]);
            for s in seeds {
                let b = before.lookup(s);
                if b != removed {
                    prop_assert_eq!(kept[after.lookup(s)], refs[b]);
                }
            }
        }

        /// Maglev: removing one of n endpoints moves few keys it did not own.
        #[test]
        fn maglev_removal_is_mostly_stable(n in 3usize..10, removed in 0usize..10) {
            let removed = removed % n;
            let keys = keys_for(n);
            let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
            let weights = vec![1; n];
            let size = 4099; // prime; smaller than production for test speed
            let before = Maglev::new(&refs, &weights, size);
            let kept: Vec<&str> = refs.iter().enumerate().filter(|(i, _)| *i != removed).map(|(_, k)| *k).collect();
            let after = Maglev::new(&kept, &weights[1..], size);
            let mut moved = 0;
            let total = 4000;
            for k in 0..total as u64 {
                let h = hash64(&k.to_le_bytes());
                let b = before.lookup(h);
                if b != removed && kept[after.lookup(h)] != refs[b] { moved += 1; }
            }
            prop_assert!((moved as f64) / (total as f64) < 0.15, "moved {}", moved);
        }
    }
}
