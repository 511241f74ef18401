//! What step 7 costs per route and request: the route's metrics as they
//! were before the latency history (a status-class counter and the
//! Prometheus histogram), the history's counts alone (a bucket in the
//! judge's layout, plus a failure counter on failures), and both, on one
//! thread. Latencies cycle through 1,024 values spread log-uniformly from
//! 100 µs to 100 ms, so the bucket searches see realistic inputs; one in
//! 64 answers is a 503.
//!
//! `cargo bench -p levee-proxy --bench record -- --warm-up-time 1 --measurement-time 3`

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use levee_core::Outcome;
use levee_proxy::bench_support::BenchRecord;
use std::hint::black_box;

fn inputs() -> Vec<(Outcome, u64)> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    (0..1024)
        .map(|i| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            // 100 µs × 1000^u for u in [0, 1): 100 µs to 100 ms.
            let u = (state >> 11) as f64 / (1u64 << 53) as f64;
            let nanos = (100_000.0 * 1000f64.powf(u)) as u64;
            let status = if i % 64 == 0 { 503 } else { 200 };
            (Outcome::Response(status), nanos)
        })
        .collect()
}

fn record(c: &mut Criterion) {
    let inputs = inputs();
    let counters = BenchRecord::default();
    let mut group = c.benchmark_group("record");
    group.throughput(Throughput::Elements(inputs.len() as u64));
    group.bench_function("route_metrics", |b| {
        b.iter(|| {
            for &(outcome, nanos) in &inputs {
                counters.route_metrics(black_box(outcome), black_box(nanos));
            }
        })
    });
    group.bench_function("history", |b| {
        b.iter(|| {
            for &(outcome, nanos) in &inputs {
                counters.history(black_box(outcome), black_box(nanos));
            }
        })
    });
    group.bench_function("route_metrics_and_history", |b| {
        b.iter(|| {
            for &(outcome, nanos) in &inputs {
                counters.route_metrics(black_box(outcome), black_box(nanos));
                counters.history(black_box(outcome), black_box(nanos));
            }
        })
    });
    group.finish();
}

criterion_group!(benches, record);
criterion_main!(benches);
