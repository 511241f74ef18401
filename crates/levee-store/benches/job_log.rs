//! Acknowledged job inserts per second through [`JobLog`], the way an async
//! route uses it: each submitter sends one job with a 1 KiB request and
//! waits for its acknowledgement before the next (an HTTP client waiting
//! for its 202). 64 concurrent submitters show what group commit gives;
//! one submitter is the sequential reference.
//!
//! `nice cargo bench -p levee-store --bench job_log -j1 -- --warm-up-time 1 --measurement-time 5`
//!
//! The files go to Cargo's `target/tmp` (a real disk, so that fsync costs
//! what it costs), one per benchmark, removed at the end; each sample's
//! jobs are deleted after it, untimed. After each
//! benchmark a line gives the log's own counts: inserts per commit is the
//! batch size group commit reached.

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use levee_store::{JobDurability, JobLog, JobLogStats, JobRecord, JobRecordState, JobWrite};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::thread::{self, JoinHandle, Thread};
use std::time::Duration;

const SUBMITTERS: usize = 64;
/// Jobs each submitter sends per criterion iteration: enough that all 64
/// stay busy through a sample, and the ramp at its ends is small.
const JOBS_PER_SUBMITTER: u64 = 16;
const REQUEST_BYTES: usize = 1024;
const ROUTE: &str = "orders";

/// A unique directory under Cargo's `target/tmp`, removed when dropped.
struct BenchDir(PathBuf);

impl BenchDir {
    fn new(name: &str) -> Self {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("levee-job-log-bench-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for BenchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn job(seq: u64, request: &[u8]) -> JobRecord {
    JobRecord {
        route: ROUTE.to_owned(),
        seq,
        token: seq.wrapping_mul(0x9E37_79B9_7F4A_7C15),
        tenant: "tenant-a".to_owned(),
        ordering_key: None,
        idempotency_key: Some(format!("key-{seq}")),
        callback: None,
        accepted_at_ms: 1_800_000_000_000 + seq,
        request: request.to_vec(),
        attempts: 0,
        state: JobRecordState::Queued {
            ready_at_ms: 1_800_000_000_000 + seq,
        },
        last_error: None,
    }
}

/// Inserts one job and parks until its `done` has run.
fn insert_and_wait(log: &JobLog, seq: u64, request: &[u8], acked: &Arc<AtomicBool>) {
    let (flag, me): (Arc<AtomicBool>, Thread) = (Arc::clone(acked), thread::current());
    log.write(
        JobWrite::Insert(job(seq, request)),
        Some(Box::new(move |result| {
            if let Err(error) = result {
                // The submitter would wait for ever: end the benchmark.
                eprintln!("insert failed: {error}");
                std::process::exit(1);
            }
            flag.store(true, Ordering::Release);
            me.unpark();
        })),
    );
    while !acked.swap(false, Ordering::Acquire) {
        thread::park();
    }
}

/// Submitter threads that live across samples: each is told how many jobs
/// to send, sends them one at a time, and reports when it is through.
struct Submitters {
    orders: Vec<Sender<u64>>,
    through: Receiver<()>,
    threads: Vec<JoinHandle<()>>,
}

impl Submitters {
    fn start(log: &Arc<JobLog>, next_seq: &Arc<AtomicU64>) -> Self {
        let (report, through) = mpsc::channel();
        let mut orders = Vec::new();
        let mut threads = Vec::new();
        for _ in 0..SUBMITTERS {
            let (order, jobs) = mpsc::channel::<u64>();
            let (log, next_seq, report) = (Arc::clone(log), Arc::clone(next_seq), report.clone());
            threads.push(thread::spawn(move || {
                let request = vec![b'x'; REQUEST_BYTES];
                let acked = Arc::new(AtomicBool::new(false));
                for count in jobs {
                    for _ in 0..count {
                        let seq = next_seq.fetch_add(1, Ordering::Relaxed);
                        insert_and_wait(&log, seq, &request, &acked);
                    }
                    report.send(()).unwrap();
                }
            }));
            orders.push(order);
        }
        Self {
            orders,
            through,
            threads,
        }
    }

    /// Runs `per_submitter` jobs on every submitter; the time until the
    /// last is acknowledged.
    fn run(&self, per_submitter: u64) -> Duration {
        let start = levee_core::time::now();
        for order in &self.orders {
            order.send(per_submitter).unwrap();
        }
        for _ in 0..self.orders.len() {
            self.through.recv().unwrap();
        }
        levee_core::time::now() - start
    }

    fn stop(self) {
        drop(self.orders);
        for thread in self.threads {
            thread.join().unwrap();
        }
    }
}

/// Deletes the jobs `seqs`, untimed between samples, as the delivery
/// loop eventually does: the file stays the size of one sample's jobs
/// instead of growing by gigabytes on a disk shared with other work.
/// Adds the writes and commits this took to `purged`.
fn purge(log: &JobLog, seqs: std::ops::Range<u64>, purged: &mut JobLogStats) {
    let before = log.stats();
    log.write(
        JobWrite::Delete {
            route: ROUTE.to_owned(),
            seqs: seqs.collect(),
        },
        None,
    );
    log.flush().unwrap();
    let after = log.stats();
    purged.writes += after.writes - before.writes;
    purged.commits += after.commits - before.commits;
}

/// The inserts' batch sizes: the log's counts less the purges'.
fn report(name: &str, log: &JobLog, purged: &JobLogStats) {
    let stats = log.stats();
    let (writes, commits) = (stats.writes - purged.writes, stats.commits - purged.commits);
    eprintln!(
        "{name}: {writes} inserts in {commits} commits, {:.1} per commit",
        writes as f64 / commits.max(1) as f64,
    );
}

fn durabilities() -> [(&'static str, JobDurability); 2] {
    [("fsync", JobDurability::Fsync), ("os", JobDurability::Os)]
}

fn concurrent(c: &mut Criterion) {
    let mut group = c.benchmark_group("job_log_64_submitters");
    // Samples are long (thousands of jobs): equal ones, and few.
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(10);
    group.throughput(Throughput::Elements(SUBMITTERS as u64 * JOBS_PER_SUBMITTER));
    for (name, durability) in durabilities() {
        let dir = BenchDir::new(name);
        let log = Arc::new(JobLog::open(&dir.0.join("jobs.db"), durability).unwrap());
        let next_seq = Arc::new(AtomicU64::new(0));
        let submitters = Submitters::start(&log, &next_seq);
        let mut purged = JobLogStats::default();
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let first = next_seq.load(Ordering::Relaxed);
                let elapsed = submitters.run(iters * JOBS_PER_SUBMITTER);
                purge(&log, first..next_seq.load(Ordering::Relaxed), &mut purged);
                elapsed
            })
        });
        submitters.stop();
        report(&format!("64 submitters, {name}"), &log, &purged);
    }
    group.finish();
}

fn sequential(c: &mut Criterion) {
    let mut group = c.benchmark_group("job_log_1_submitter");
    group.throughput(Throughput::Elements(1));
    for (name, durability) in durabilities() {
        let dir = BenchDir::new(name);
        let log = JobLog::open(&dir.0.join("jobs.db"), durability).unwrap();
        let request = vec![b'x'; REQUEST_BYTES];
        let acked = Arc::new(AtomicBool::new(false));
        let mut next_seq = 0;
        let mut purged = JobLogStats::default();
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let first = next_seq;
                let start = levee_core::time::now();
                for _ in 0..iters {
                    insert_and_wait(&log, next_seq, &request, &acked);
                    next_seq += 1;
                }
                let elapsed = levee_core::time::now() - start;
                purge(&log, first..next_seq, &mut purged);
                elapsed
            })
        });
        report(&format!("1 submitter, {name}"), &log, &purged);
    }
    group.finish();
}

criterion_group!(benches, concurrent, sequential);
criterion_main!(benches);
