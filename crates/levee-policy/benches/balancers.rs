//! Cost of one balancer choice, of building the consistent-hash tables, and
//! of the per-request locality choices (priority level, then zone).
//!
//! `cargo bench -p levee-policy --bench balancers -- --warm-up-time 1 --measurement-time 2`

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use levee_policy::hash::{hash64, mix64};
use levee_policy::locality::{pick_level, priority_load, ZoneInput, ZoneRouting};
use levee_policy::{Algorithm, Balancer, EndpointLoad};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};

/// An endpoint as the proxy sees it: atomics for load, a fixed weight.
struct Endpoint {
    in_flight: AtomicU64,
    weight: u32,
    ewma_nanos: AtomicU64,
}

impl EndpointLoad for Endpoint {
    fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Relaxed)
    }
    fn weight(&self) -> u32 {
        self.weight
    }
    fn latency_cost(&self, _now: u64) -> f64 {
        self.ewma_nanos.load(Ordering::Relaxed) as f64
    }
}

fn endpoints(n: usize) -> (Vec<Endpoint>, Vec<String>, Vec<u32>) {
    let eps: Vec<Endpoint> = (0..n)
        .map(|i| Endpoint {
            in_flight: AtomicU64::new((i as u64 * 7) % 13),
            weight: 1 + (i as u32 % 3),
            ewma_nanos: AtomicU64::new(1_000_000 + (i as u64 * 37_000) % 500_000),
        })
        .collect();
    let keys = (0..n)
        .map(|i| format!("10.0.{}.{}:8080", i / 250, i % 250 + 1))
        .collect();
    let weights = eps.iter().map(|e| e.weight).collect();
    (eps, keys, weights)
}

const ALGORITHMS: [(&str, Algorithm); 5] = [
    ("round_robin", Algorithm::RoundRobin),
    ("least_request", Algorithm::LeastRequest),
    ("peak_ewma", Algorithm::PeakEwma),
    ("ring_hash", Algorithm::RingHash),
    ("maglev", Algorithm::Maglev),
];

fn pick(c: &mut Criterion) {
    let mut group = c.benchmark_group("pick");
    group.throughput(Throughput::Elements(1));
    for n in [3usize, 16, 128] {
        let (eps, keys, weights) = endpoints(n);
        let key_refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        for (name, algorithm) in ALGORITHMS {
            let balancer = Balancer::new(algorithm, &key_refs, &weights);
            // A different request key and random word every iteration, as in
            // the proxy (where they come from the request and a fast RNG).
            let mut state = 0x1234_5678_9abc_def0_u64;
            group.bench_with_input(BenchmarkId::new(name, n), &n, |b, _| {
                b.iter(|| {
                    state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
                    let random = mix64(state);
                    black_box(balancer.pick(
                        black_box(&eps),
                        Some(random.rotate_left(17)),
                        random,
                        black_box(1_000_000_000),
                    ))
                })
            });
        }
    }
    group.finish();
}

fn hash_key(c: &mut Criterion) {
    // What a hashing route pays before the lookup: hashing a typical key.
    let key = b"session-3f2a9c1e-5d7b-4c61-9e02-7a1b2c3d4e5f";
    c.bench_function("hash64/44_byte_key", |b| b.iter(|| hash64(black_box(key))));
}

fn build(c: &mut Criterion) {
    let mut group = c.benchmark_group("build");
    group.sample_size(20);
    let (_, keys, weights) = endpoints(16);
    let key_refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    for (name, algorithm) in [
        ("ring_hash", Algorithm::RingHash),
        ("maglev", Algorithm::Maglev),
        ("round_robin", Algorithm::RoundRobin),
    ] {
        group.bench_function(BenchmarkId::new(name, 16), |b| {
            b.iter(|| Balancer::new(algorithm, black_box(&key_refs), black_box(&weights)))
        });
    }
    group.finish();
}

fn locality(c: &mut Criterion) {
    let mut group = c.benchmark_group("locality");
    group.throughput(Throughput::Elements(1));
    // A short local zone, so the pick walks the spill probabilities.
    let zones = ZoneRouting::new(&ZoneInput {
        local_zone: 0,
        healthy_weight: &[4, 3, 3],
        healthy_hosts: 10,
        fleet_share: &[0.5, 0.25, 0.25],
        min_cluster_size: 6,
    });
    let loads = priority_load(&[0.5, 1.0, 1.0], 1.4);
    let mut state = 0x0fed_cba9_8765_4321_u64;
    group.bench_function("pick_zone/3_spill", |b| {
        b.iter(|| {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            black_box(zones.pick_zone(state))
        })
    });
    group.bench_function("pick_level/3", |b| {
        b.iter(|| {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            black_box(pick_level(black_box(&loads), state))
        })
    });
    group.finish();
}

/// Per-decision cost of the local rate limiter (issue 4 targets <= 100 ns):
/// the bare GCRA step, and a keyed decision in a table of 10,000 live keys.
fn ratelimit(c: &mut Criterion) {
    use levee_policy::ratelimit::{Gcra, KeyedLimiter};
    use std::time::Duration;
    let mut group = c.benchmark_group("ratelimit");
    group.throughput(Throughput::Elements(1));
    let gcra = Gcra::new(1_000, Duration::from_secs(1), 100);
    group.bench_function("gcra_decide", |b| {
        let mut tat = 0;
        let mut now = 0u64;
        b.iter(|| {
            now += 1_000_000;
            let (d, t) = gcra.decide(std::hint::black_box(tat), now, 1);
            tat = t;
            d.allowed
        })
    });
    let table = KeyedLimiter::new(gcra, 100_000);
    for k in 0..10_000u64 {
        table.decide(levee_policy::hash::mix64(k), 1, 1);
    }
    group.bench_function("keyed_decide_10k_keys", |b| {
        let mut i = 0u64;
        let mut now = 1u64;
        b.iter(|| {
            i = (i + 1) % 10_000;
            now += 100;
            table.decide(levee_policy::hash::mix64(i), now, 1).allowed
        })
    });
    group.finish();
}

criterion_group!(benches, pick, hash_key, build, locality, ratelimit);
criterion_main!(benches);
