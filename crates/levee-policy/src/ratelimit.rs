//! Rate limiting by GCRA (the generic cell rate algorithm): a token bucket
//! with burst, kept as one number per key, the theoretical arrival time
//! (TAT). A key whose TAT is in the past has a full bucket, so idle keys
//! carry no state and may be forgotten at any time. [`KeyedLimiter`] holds
//! the TATs of many keys in a bounded, sharded table: idle keys are purged,
//! and when a shard is full of live keys the one closest to idle is evicted,
//! so a flood of unique keys cannot exhaust memory. Time is passed in.

use levee_core::Nanos;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// A limit: `rate` requests per `period`, with bursts of up to `burst`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gcra {
    /// Time one request "costs": period / rate.
    emission_ns: u64,
    /// How far ahead of now the TAT may run: burst × emission.
    tolerance_ns: u64,
    burst: u64,
}

/// The verdict on one request, with what the `RateLimit` headers report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request may go ahead.
    pub allowed: bool,
    /// Requests that could still go ahead at once after this one.
    pub remaining: u64,
    /// When refused: how long until it would be allowed.
    pub retry_after_ns: u64,
    /// How long until the bucket is full again.
    pub reset_ns: u64,
}

impl Gcra {
    /// `rate` requests per `period` (both at least 1), bursts of `burst`
    /// (at least 1) requests at once.
    pub fn new(rate: u64, period: Duration, burst: u64) -> Self {
        let emission_ns = (period.as_nanos() as u64 / rate.max(1)).max(1);
        let burst = burst.max(1);
        Self {
            emission_ns,
            tolerance_ns: emission_ns.saturating_mul(burst),
            burst,
        }
    }

    /// The burst size.
    pub fn burst(&self) -> u64 {
        self.burst
    }

    /// Time one request costs (period / rate), in nanoseconds.
    pub fn emission_ns(&self) -> u64 {
        self.emission_ns
    }

    /// How far ahead of now a key's TAT may run, in nanoseconds.
    pub fn tolerance_ns(&self) -> u64 {
        self.tolerance_ns
    }

    /// The same limit divided among `replicas` gateways (each allows its
    /// share of the rate and of the burst, at least one).
    pub fn scaled_down(&self, replicas: u32) -> Self {
        let n = u64::from(replicas.max(1));
        let burst = (self.burst / n).max(1);
        let emission_ns = self.emission_ns.saturating_mul(n);
        Self {
            emission_ns,
            tolerance_ns: emission_ns.saturating_mul(burst),
            burst,
        }
    }

    /// Decides a request of `cost` (usually 1) at `now` for a key whose TAT
    /// is `tat` (0 for a new key); returns the decision and the key's new
    /// TAT (unchanged when refused).
    pub fn decide(&self, tat: Nanos, now: Nanos, cost: u64) -> (Decision, Nanos) {
        self.decide_milli(tat, now, cost.saturating_mul(1_000))
    }

    /// As [`Gcra::decide`], with the cost in thousandths of a request (a
    /// warm-up makes requests cost more while the limit is cold).
    pub fn decide_milli(&self, tat: Nanos, now: Nanos, cost_milli: u64) -> (Decision, Nanos) {
        let base = tat.max(now);
        let increment = (u128::from(self.emission_ns) * u128::from(cost_milli) / 1_000) as u64;
        let new_tat = base.saturating_add(increment);
        let ahead = new_tat - now;
        // A request dearer than the whole burst still passes on a full
        // bucket (then the bucket refills at the dearer rate).
        let tolerance = self.tolerance_ns.max(increment);
        if ahead > tolerance {
            let current_ahead = base - now;
            return (
                Decision {
                    allowed: false,
                    remaining: 0,
                    retry_after_ns: ahead - tolerance,
                    reset_ns: current_ahead,
                },
                tat,
            );
        }
        (
            Decision {
                allowed: true,
                remaining: (tolerance - ahead) / self.emission_ns,
                retry_after_ns: 0,
                reset_ns: ahead,
            },
            new_tat,
        )
    }

    /// Whether a key with this TAT holds no state worth keeping at `now`
    /// (its bucket is full).
    pub fn is_idle(tat: Nanos, now: Nanos) -> bool {
        tat <= now
    }
}

/// A warm-up (Sentinel's cold start): after the limit has been idle for a
/// `period`, it starts at `1 / cold_factor` of its rate and ramps linearly
/// back to the full rate over `period`, so a cold upstream (empty caches,
/// cold JIT, few connections) is not hit at full rate at once. Pure: the
/// caller keeps it per limit and passes time in.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WarmUp {
    /// How much slower the limit starts (≥ 1).
    pub cold_factor: f64,
    /// Idle time that makes it cold, and the length of the ramp.
    pub period: Duration,
}

/// The warm-up's state: when traffic last came and when the ramp began.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WarmState {
    last_seen: Option<Nanos>,
    ramp_start: Nanos,
}

impl WarmUp {
    /// The cost of one request at `now`, in thousandths (1,000 when warm),
    /// updating `state` for this request.
    pub fn cost_milli(&self, state: &mut WarmState, now: Nanos) -> u64 {
        let period = self.period.as_nanos() as u64;
        let idle = state
            .last_seen
            .is_none_or(|t| now.saturating_sub(t) >= period);
        if idle {
            state.ramp_start = now;
        }
        state.last_seen = Some(now);
        let progress =
            (now.saturating_sub(state.ramp_start) as f64 / period.max(1) as f64).min(1.0);
        let factor = self.cold_factor.max(1.0);
        let cost = factor - (factor - 1.0) * progress;
        (cost * 1_000.0).round() as u64
    }
}

/// Shards of the keyed table: a decision locks one, for a map lookup.
const SHARDS: usize = 16;

/// One limit applied per key (a hash of the key's parts), in bounded memory.
#[derive(Debug)]
pub struct KeyedLimiter {
    gcra: Gcra,
    max_keys_per_shard: usize,
    shards: Vec<Mutex<HashMap<u64, Nanos>>>,
}

impl KeyedLimiter {
    /// A table for `gcra` holding at most about `max_keys` keys.
    pub fn new(gcra: Gcra, max_keys: usize) -> Self {
        Self {
            gcra,
            max_keys_per_shard: max_keys.div_ceil(SHARDS).max(1),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }

    /// The limit.
    pub fn gcra(&self) -> &Gcra {
        &self.gcra
    }

    /// Decides a request of `cost` for the key hashed to `key` at `now`.
    pub fn decide(&self, key: u64, now: Nanos, cost: u64) -> Decision {
        self.decide_milli(key, now, cost.saturating_mul(1_000))
    }

    /// As [`KeyedLimiter::decide`], with the cost in thousandths.
    pub fn decide_milli(&self, key: u64, now: Nanos, cost_milli: u64) -> Decision {
        let shard = &self.shards[(key as usize) % SHARDS];
        let mut map = shard.lock().unwrap_or_else(|e| e.into_inner());
        let tat = map.get(&key).copied().unwrap_or(0);
        let (decision, new_tat) = self.gcra.decide_milli(tat, now, cost_milli);
        if decision.allowed {
            if map.len() >= self.max_keys_per_shard && !map.contains_key(&key) {
                make_room(&mut map, now);
            }
            map.insert(key, new_tat);
        }
        decision
    }

    /// Keys held now (all shards).
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().map_or(0, |m| m.len()))
            .sum()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets idle keys (their buckets are full); callers may run this
    /// periodically, though a full shard also purges itself.
    pub fn purge(&self, now: Nanos) {
        for s in &self.shards {
            if let Ok(mut m) = s.lock() {
                m.retain(|_, tat| !Gcra::is_idle(*tat, now));
            }
        }
    }
}

/// Frees a place in a full shard: idle keys go first; if none is idle, the
/// key closest to idle (smallest TAT) among a sample.
fn make_room(map: &mut HashMap<u64, Nanos>, now: Nanos) {
    let before = map.len();
    map.retain(|_, tat| !Gcra::is_idle(*tat, now));
    if map.len() < before {
        return;
    }
    if let Some(victim) = map
        .iter()
        .take(8)
        .min_by_key(|(_, tat)| **tat)
        .map(|(k, _)| *k)
    {
        map.remove(&victim);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn a_burst_then_the_rate() {
        // 10 per second, bursts of 5.
        let g = Gcra::new(10, Duration::from_secs(1), 5);
        let mut tat = 0;
        let now = 1_000 * MS;
        for i in 0..5 {
            let (d, t) = g.decide(tat, now, 1);
            assert!(d.allowed, "request {i} of the burst");
            assert_eq!(d.remaining, 4 - i);
            tat = t;
        }
        let (d, _) = g.decide(tat, now, 1);
        assert!(!d.allowed);
        assert_eq!(d.retry_after_ns, 100 * MS, "one emission interval");
        // 100 ms later one more fits.
        let (d, t) = g.decide(tat, now + 100 * MS, 1);
        assert!(d.allowed);
        assert_eq!(d.remaining, 0);
        tat = t;
        // After a full second the bucket is full again: the key is idle.
        assert!(Gcra::is_idle(tat, now + 600 * MS));
    }

    #[test]
    fn refusals_do_not_consume() {
        let g = Gcra::new(1, Duration::from_secs(1), 1);
        let (_, tat) = g.decide(0, 0, 1);
        for _ in 0..100 {
            let (d, t) = g.decide(tat, 10 * MS, 1);
            assert!(!d.allowed);
            assert_eq!(t, tat);
        }
        assert!(g.decide(tat, 1_000 * MS, 1).0.allowed);
    }

    #[test]
    fn a_flood_of_unique_keys_stays_bounded() {
        let l = KeyedLimiter::new(Gcra::new(1, Duration::from_secs(60), 1), 1_000);
        for k in 0..100_000u64 {
            assert!(l.decide(crate::hash::mix64(k), k, 1).allowed);
        }
        assert!(l.len() <= 1_000 + SHARDS, "{}", l.len());
    }

    #[test]
    fn keys_are_limited_apart() {
        let l = KeyedLimiter::new(Gcra::new(2, Duration::from_secs(1), 2), 100);
        assert!(l.decide(1, 0, 1).allowed);
        assert!(l.decide(1, 0, 1).allowed);
        assert!(!l.decide(1, 0, 1).allowed);
        assert!(l.decide(2, 0, 1).allowed, "another key has its own bucket");
        l.purge(2_000 * MS);
        assert!(l.is_empty(), "full buckets are forgotten");
    }

    #[test]
    fn warm_up_starts_slow_and_ramps_to_the_full_rate() {
        let w = WarmUp {
            cold_factor: 3.0,
            period: Duration::from_secs(10),
        };
        let mut st = WarmState::default();
        assert_eq!(
            w.cost_milli(&mut st, 0),
            3_000,
            "cold: a request costs three"
        );
        assert_eq!(w.cost_milli(&mut st, 5_000 * MS), 2_000, "half way");
        assert_eq!(w.cost_milli(&mut st, 10_000 * MS), 1_000, "warm");
        assert_eq!(w.cost_milli(&mut st, 15_000 * MS), 1_000);
        // Idle for a whole period: cold again.
        assert_eq!(w.cost_milli(&mut st, 26_000 * MS), 3_000);
        // A cold limit of 10/s admits a third as many at first.
        let g = Gcra::new(10, Duration::from_secs(1), 1);
        let (mut tat, mut admitted) = (0, 0);
        for i in 0..100u64 {
            let now = 1_000_000_000_000 + i * 10 * MS;
            let (d, t) = g.decide_milli(tat, now, 3_000);
            tat = t;
            admitted += u64::from(d.allowed);
        }
        assert!(
            (3..=5).contains(&admitted),
            "{admitted} in 1 s at a third of 10/s"
        );
    }

    proptest! {
        /// Against an exact token bucket (tokens refill continuously at one
        /// per emission interval, capped at the burst), GCRA admits exactly
        /// the same requests, over many windows.
        #[test]
        fn matches_an_exact_token_bucket(
            gaps in prop::collection::vec(0u64..400, 1..400),
            rate in 1u64..50,
            burst in 1u64..20,
        ) {
            let g = Gcra::new(rate, Duration::from_secs(1), burst);
            let t = g.emission_ns as u128;
            // Tokens scaled by the emission interval to stay in integers.
            let cap = burst as u128 * t;
            let mut tokens = cap;
            let mut last = 0u128;
            let mut tat = 0;
            let mut now = 0u64;
            let mut admitted = 0u64;
            for gap in gaps {
                now += gap * MS;
                let n = now as u128;
                tokens = (tokens + (n - last)).min(cap);
                last = n;
                let model = tokens >= t;
                if model {
                    tokens -= t;
                }
                let (d, new_tat) = g.decide(tat, now, 1);
                prop_assert_eq!(d.allowed, model, "at {} ms", now / MS);
                tat = new_tat;
                admitted += u64::from(d.allowed);
            }
            // And never more than burst + rate × elapsed time.
            let bound = burst + (now as u128 * rate as u128 / 1_000_000_000) as u64 + 1;
            prop_assert!(admitted <= bound);
        }
    }
}
