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

/// Per-request cost of the admission queue at a busy steady state: 1,000
/// requests waiting from 100 tenants in one class, the limit full. Each
/// iteration queues one request, finishes one and releases one slot (with
/// quotas on, so the release checks them); and the idle path, where a
/// request is admitted at once and finished.
fn admission(c: &mut Criterion) {
    use levee_policy::admission::{
        AdmissionConfig, AdmissionQueue, ClassConfig, ClassId, TenantId, Verdict,
    };
    use std::collections::HashMap;
    use std::time::Duration;
    let mut group = c.benchmark_group("admission");
    group.throughput(Throughput::Elements(1));
    let class = ClassConfig {
        max_queue_time: Duration::from_secs(3_600),
        max_queue_len: 2_000,
    };
    let config = AdmissionConfig {
        classes: vec![class; 3],
        tenant_weights: (0..100)
            .map(|t| (TenantId(t), 1 + t % 3))
            .collect::<HashMap<_, _>>(),
        max_total_len: 2_000,
        tenant_quota_share: Some(0.1),
    };
    let limit = 64;
    let mut queue = AdmissionQueue::new(config.clone());
    queue.observe_service_time(1_000_000);
    // What the proxy keeps: each waiting ticket's tenant, and who runs.
    let mut tenant_of = HashMap::new();
    let mut running = std::collections::VecDeque::new();
    for i in 0..limit {
        queue.try_admit(0, ClassId(1), TenantId(i % 100), None, i, limit);
        running.push_back(TenantId(i % 100));
    }
    for i in 0..1_000u32 {
        if let Verdict::Queued { ticket, .. } =
            queue.try_admit(0, ClassId(1), TenantId(i % 100), None, limit, limit)
        {
            tenant_of.insert(ticket, TenantId(i % 100));
        }
    }
    group.bench_function("queue_and_release_1k_waiting", |b| {
        let mut i = 0u32;
        b.iter(|| {
            i = i.wrapping_add(1);
            let tenant = TenantId(i.wrapping_mul(37) % 100);
            let verdict = queue.try_admit(1, ClassId(1), tenant, Some(u64::MAX), limit, limit);
            if let Verdict::Queued { ticket, .. } = verdict {
                tenant_of.insert(ticket, tenant);
            }
            if let Some(done) = running.pop_front() {
                queue.finished(done);
            }
            for ticket in queue.on_release(1, limit - 1, limit).run {
                running.extend(tenant_of.remove(&ticket));
            }
            black_box(verdict)
        })
    });
    let mut idle = AdmissionQueue::new(config);
    group.bench_function("admit_idle", |b| {
        b.iter(|| {
            let v = idle.try_admit(1, ClassId(1), TenantId(7), None, 0, limit);
            idle.finished(TenantId(7));
            black_box(v)
        })
    });
    group.finish();
}

/// Per-sample cost of the adaptive concurrency limit, what the proxy pays
/// on every finished attempt: at 10,000 samples a second (one every 100 µs
/// of virtual time), so each 100 ms window holds 1,000 samples, thins its
/// buffer once and closes once; the closes are included, amortized.
fn concurrency(c: &mut Criterion) {
    use levee_policy::concurrency::{
        AdaptiveLimit, LimitAlgorithm, LimitConfig, Sample, SampleOutcome,
    };
    let mut group = c.benchmark_group("concurrency");
    group.throughput(Throughput::Elements(1));
    for (name, algorithm) in [
        ("gradient", LimitAlgorithm::Gradient),
        ("aimd", LimitAlgorithm::Aimd),
        ("vegas", LimitAlgorithm::Vegas),
    ] {
        let config = LimitConfig {
            algorithm,
            initial_limit: 100,
            latency_target: Some(std::time::Duration::from_millis(50)),
            ..LimitConfig::default()
        };
        let mut limit = AdaptiveLimit::new(config, 0, 42);
        let mut now = 0u64;
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        group.bench_function(BenchmarkId::new("on_sample", name), |b| {
            b.iter(|| {
                now += 100_000;
                state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
                let random = mix64(state);
                // Latency 10-20 ms, in flight around the limit, 0.1% drops.
                let sample = Sample {
                    rtt_ns: 10_000_000 + random % 10_000_000,
                    in_flight: limit.limit().saturating_sub((random >> 40) as u32 % 8),
                    outcome: if random.is_multiple_of(1_000) {
                        SampleOutcome::Dropped
                    } else {
                        SampleOutcome::Success
                    },
                };
                limit.on_sample(now, black_box(sample));
                black_box(limit.limit())
            })
        });
    }
    group.finish();
}

criterion_group!(
    benches,
    pick,
    hash_key,
    build,
    locality,
    ratelimit,
    admission,
    concurrency
);
criterion_main!(benches);
