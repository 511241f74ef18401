//! The embedded job queue: no other server. Each async route's jobs live
//! in a `levee_policy::jobs::Ledger` (the rules) under one lock per
//! route, and every change the ledger makes is written to the
//! `levee_store::JobLog` (its own SQLite file, group commit). A job is
//! answered 202 only once its insert has committed (and with
//! `durability = "fsync"` reached the disk), and it is not delivered
//! before that either: until then the ledger holds it. At start every
//! stored job is put back; deliveries that were under way are queued
//! again, so a `kill -9` loses no acknowledged job and delivers at most
//! the jobs in flight a second time (with the same `Idempotency-Key`).
//!
//! A job's public id is its number in the route and 64 random bits
//! (`{seq:x}-{token:016x}`): the number finds it, the token proves the
//! asker was given it.
//!
//! Settling writes (delivered, retried, dead) are not waited for: a crash
//! before one commits delivers the job again, which the idempotency key
//! covers. Jobs are held in memory too (bounded by the route's
//! `max_bytes`), so delivery never reads the file.

use levee_config::AsyncRoute;
use levee_policy::jobs::{AfterFailure, Job, JobLimits, JobState, Ledger, Submitted};
use levee_policy::retry::Backoff;
use levee_proxy::jobs::{
    Accepted, Delivery, JobBackend, JobId, JobQueue, JobStatus, JobView, NewJob, QueueError,
    QueueStats, Settle, Settled, StoredRequest, StoredResult,
};
use levee_store::{JobLog, JobRecord, JobRecordState, JobWrite};
use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

const MS: u64 = 1_000_000;

fn now_nanos() -> u64 {
    levee_core::time::unix_nanos()
}

/// 64 bits from the operating system's generator: a job's token must not
/// be predictable from other ids the gateway hands out.
fn secret_token() -> u64 {
    let mut bytes = [0u8; 8];
    let rng = ring::rand::SystemRandom::new();
    if ring::rand::SecureRandom::fill(&rng, &mut bytes).is_err() {
        // The OS generator does not fail on Linux; if it ever did, a
        // per-thread generator seeded from it is the next best.
        return levee_core::ids::random_u64();
    }
    u64::from_le_bytes(bytes)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The ledger's rules from a route's settings.
pub(crate) fn limits(settings: &AsyncRoute) -> JobLimits {
    let clamp = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
    JobLimits {
        max_jobs: clamp(settings.max_jobs),
        max_bytes: settings.max_bytes,
        max_jobs_per_tenant: clamp(settings.max_jobs_per_tenant),
        max_bytes_per_tenant: settings.max_bytes_per_tenant,
        max_attempts: settings.max_attempts,
        max_age: settings.max_age,
        backoff: Backoff {
            base: settings.backoff_base,
            max: settings.backoff_max,
        },
        lease: settings.delivery_timeout,
        result_ttl: settings.result_ttl,
    }
}

/// Opens every async route's queue on one job log (or in memory). The
/// file is opened, and its jobs loaded, when the first async route asks:
/// a gateway without async routes never creates it.
#[derive(Debug)]
pub struct EmbeddedBackend {
    /// The log's file and durability; `None`: in memory only.
    file: Option<(PathBuf, levee_store::JobDurability)>,
    opened: tokio::sync::OnceCell<Opened>,
    queues: Mutex<HashMap<String, Arc<EmbeddedQueue>>>,
}

#[derive(Debug)]
struct Opened {
    log: Option<Arc<JobLog>>,
    /// Stored jobs by route, until the route's queue is opened.
    stored: Mutex<HashMap<String, Vec<JobRecord>>>,
}

impl EmbeddedBackend {
    /// A backend on the job log at `file` (`None`: in memory only).
    pub fn new(file: Option<(PathBuf, levee_store::JobDurability)>) -> Self {
        Self {
            file,
            opened: tokio::sync::OnceCell::new(),
            queues: Mutex::new(HashMap::new()),
        }
    }

    async fn opened(&self) -> Result<&Opened, QueueError> {
        self.opened
            .get_or_try_init(|| async {
                let Some((path, durability)) = self.file.clone() else {
                    return Ok(Opened {
                        log: None,
                        stored: Mutex::new(HashMap::new()),
                    });
                };
                let (log, records) = tokio::task::spawn_blocking(move || {
                    let log = JobLog::open(&path, durability)?;
                    let records = log.load()?;
                    Ok::<_, levee_store::StoreError>((log, records))
                })
                .await
                .map_err(|e| QueueError(format!("opening the job log: {e}")))?
                .map_err(|e| QueueError(e.to_string()))?;
                let mut stored: HashMap<String, Vec<JobRecord>> = HashMap::new();
                for record in records {
                    stored.entry(record.route.clone()).or_default().push(record);
                }
                Ok(Opened {
                    log: Some(Arc::new(log)),
                    stored: Mutex::new(stored),
                })
            })
            .await
    }
}

impl JobBackend for EmbeddedBackend {
    fn open<'a>(
        &'a self,
        route: &'a str,
        settings: &'a AsyncRoute,
    ) -> BoxFuture<'a, Result<Arc<dyn JobQueue>, QueueError>> {
        Box::pin(async move {
            let opened = self.opened().await?;
            let mut queues = lock(&self.queues);
            if let Some(queue) = queues.get(route) {
                lock(&queue.state).ledger.set_limits(limits(settings));
                return Ok(queue.clone() as Arc<dyn JobQueue>);
            }
            let records = lock(&opened.stored).remove(route).unwrap_or_default();
            let queue = Arc::new(EmbeddedQueue::new(
                route,
                limits(settings),
                opened.log.clone(),
                records,
            )?);
            queues.insert(route.to_string(), queue.clone());
            Ok(queue as Arc<dyn JobQueue>)
        })
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            if let Some(log) = self.opened.get().and_then(|o| o.log.clone()) {
                let _ = tokio::task::spawn_blocking(move || log.flush()).await;
            }
        })
    }
}

/// What the queue keeps of a job beside the ledger's view of it.
#[derive(Debug)]
struct Held {
    token: u64,
    request: StoredRequest,
    callback: Option<String>,
    accepted_at_ms: u64,
    result: Option<StoredResult>,
}

#[derive(Debug)]
struct State {
    ledger: Ledger,
    held: HashMap<u64, Held>,
}

/// One async route's embedded queue.
#[derive(Debug)]
pub struct EmbeddedQueue {
    route: String,
    log: Option<Arc<JobLog>>,
    state: Mutex<State>,
    /// Woken when a job becomes deliverable.
    ready: tokio::sync::Notify,
}

impl EmbeddedQueue {
    fn new(
        route: &str,
        limits: JobLimits,
        log: Option<Arc<JobLog>>,
        records: Vec<JobRecord>,
    ) -> Result<Self, QueueError> {
        let mut ledger = Ledger::new(limits);
        let mut held = HashMap::new();
        let now = now_nanos();
        for r in records {
            let request = StoredRequest::decode(&r.request).map_err(|e| {
                QueueError(format!(
                    "route {route}: stored job {} is damaged: {e}",
                    r.seq
                ))
            })?;
            let (state, result) = match r.state {
                JobRecordState::Queued { ready_at_ms } => (
                    JobState::Queued {
                        ready_at: ready_at_ms.saturating_mul(MS),
                    },
                    None,
                ),
                JobRecordState::Done { at_ms, result } => (
                    JobState::Done {
                        status: 0,
                        at: at_ms.saturating_mul(MS),
                    },
                    StoredResult::decode(&result).ok(),
                ),
                JobRecordState::Dead { at_ms } => (
                    JobState::Dead {
                        at: at_ms.saturating_mul(MS),
                    },
                    None,
                ),
            };
            let state = match (state, &result) {
                (JobState::Done { at, .. }, Some(res)) => JobState::Done {
                    status: res.status,
                    at,
                },
                (state, _) => state,
            };
            ledger.restore(
                Job {
                    id: r.seq,
                    tenant: r.tenant,
                    key: r.ordering_key,
                    idempotency_key: r.idempotency_key,
                    bytes: r.request.len() as u64,
                    accepted_at: r.accepted_at_ms.saturating_mul(MS),
                    attempts: r.attempts,
                    state,
                    last_error: r.last_error,
                },
                now,
            );
            held.insert(
                r.seq,
                Held {
                    token: r.token,
                    request,
                    callback: r.callback,
                    accepted_at_ms: r.accepted_at_ms,
                    result,
                },
            );
        }
        if !held.is_empty() {
            tracing::info!(route, jobs = held.len(), "stored jobs loaded");
        }
        Ok(Self {
            route: route.to_string(),
            log,
            state: Mutex::new(State { ledger, held }),
            ready: tokio::sync::Notify::new(),
        })
    }

    fn public_id(seq: u64, token: u64) -> JobId {
        JobId::parse(&format!("{seq:x}-{token:016x}")).expect("hex digits and a dash are an id")
    }

    /// The job `id` names, if its token matches.
    fn find(state: &State, id: &JobId) -> Option<u64> {
        let (seq, token) = id.as_str().split_once('-')?;
        let seq = u64::from_str_radix(seq, 16).ok()?;
        let token = u64::from_str_radix(token, 16).ok()?;
        (state.held.get(&seq)?.token == token).then_some(seq)
    }

    fn view(&self, state: &State, seq: u64) -> Option<JobView> {
        let job = state.ledger.get(seq)?;
        let held = state.held.get(&seq)?;
        let (status, finished, next) = match job.state {
            JobState::Queued { ready_at } => (
                JobStatus::Queued,
                None,
                (ready_at != u64::MAX).then_some(ready_at / MS),
            ),
            JobState::Delivering { .. } => (JobStatus::Delivering, None, None),
            JobState::Done { at, .. } => (JobStatus::Done, Some(at / MS), None),
            JobState::Dead { at } => (JobStatus::Dead, Some(at / MS), None),
        };
        let path = held
            .request
            .path_and_query
            .split('?')
            .next()
            .unwrap_or("/")
            .to_string();
        Some(JobView {
            id: Self::public_id(seq, held.token),
            tenant: job.tenant.clone(),
            status,
            attempts: job.attempts,
            accepted_at_ms: held.accepted_at_ms,
            finished_at_ms: finished,
            next_attempt_at_ms: next,
            ordering_key: job.key.clone(),
            bytes: job.bytes,
            last_error: job.last_error.clone(),
            result: held.result.clone(),
            method: held.request.method.clone(),
            path,
        })
    }

    /// Writes `write` to the log without waiting for it.
    fn record(&self, write: JobWrite) {
        if let Some(log) = &self.log {
            log.write(write, None);
        }
    }

    fn update(&self, seq: u64, job: &Job, result: Option<&StoredResult>) -> Option<JobWrite> {
        let state = match job.state {
            JobState::Queued { ready_at } => JobRecordState::Queued {
                ready_at_ms: ready_at / MS,
            },
            // A delivery under way is stored as queued: after a restart it
            // goes again.
            JobState::Delivering { .. } => JobRecordState::Queued {
                ready_at_ms: now_nanos() / MS,
            },
            JobState::Done { at, .. } => JobRecordState::Done {
                at_ms: at / MS,
                result: result.map(StoredResult::encode).unwrap_or_default(),
            },
            JobState::Dead { at } => JobRecordState::Dead { at_ms: at / MS },
        };
        Some(JobWrite::Update {
            route: self.route.clone(),
            seq,
            attempts: job.attempts,
            state,
            last_error: job.last_error.clone(),
        })
    }

    /// Hands back expired leases and forgets old results, at `now`.
    fn expire(&self, state: &mut State, now: u64) {
        let expired = state.ledger.expire(now);
        if !expired.handed_back.is_empty() {
            self.ready.notify_one();
        }
        if !expired.forgotten.is_empty() {
            for seq in &expired.forgotten {
                state.held.remove(seq);
            }
            self.record(JobWrite::Delete {
                route: self.route.clone(),
                seqs: expired.forgotten,
            });
        }
    }
}

impl JobQueue for EmbeddedQueue {
    fn submit(&self, job: NewJob) -> BoxFuture<'_, Result<Accepted, QueueError>> {
        Box::pin(async move {
            let encoded = job.request.encode();
            let now = now_nanos();
            let (seq, token, record) = {
                let mut state = lock(&self.state);
                let submitted = state.ledger.submit(
                    &job.tenant,
                    job.idempotency_key.as_deref(),
                    job.ordering_key.as_deref(),
                    encoded.len() as u64,
                    now,
                );
                let seq = match submitted {
                    Submitted::Accepted(seq) => seq,
                    Submitted::Existing(seq) => {
                        let token = state.held.get(&seq).map_or(0, |h| h.token);
                        return Ok(Accepted::Existing(Self::public_id(seq, token)));
                    }
                    Submitted::Full { retry_after } => return Ok(Accepted::Full { retry_after }),
                };
                let token = secret_token();
                // Not delivered before it is stored.
                if self.log.is_some() {
                    state.ledger.reschedule(seq, u64::MAX);
                }
                state.held.insert(
                    seq,
                    Held {
                        token,
                        request: job.request,
                        callback: job.callback.clone(),
                        accepted_at_ms: now / MS,
                        result: None,
                    },
                );
                let record = JobRecord {
                    route: self.route.clone(),
                    seq,
                    token,
                    tenant: job.tenant.to_string(),
                    ordering_key: job.ordering_key,
                    idempotency_key: job.idempotency_key,
                    callback: job.callback,
                    accepted_at_ms: now / MS,
                    request: encoded,
                    attempts: 0,
                    state: JobRecordState::Queued {
                        ready_at_ms: now / MS,
                    },
                    last_error: None,
                };
                (seq, token, record)
            };
            if let Some(log) = &self.log {
                let (tx, rx) = tokio::sync::oneshot::channel();
                log.write(
                    JobWrite::Insert(record),
                    Some(Box::new(move |result| {
                        let _ = tx.send(result);
                    })),
                );
                let stored = match rx.await {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err("the job log stopped".to_string()),
                };
                let mut state = lock(&self.state);
                if let Err(e) = stored {
                    state.ledger.withdraw(seq);
                    state.held.remove(&seq);
                    return Err(QueueError(e));
                }
                state.ledger.reschedule(seq, now_nanos());
            }
            self.ready.notify_one();
            Ok(Accepted::New(Self::public_id(seq, token)))
        })
    }

    fn get<'a>(&'a self, id: &'a JobId) -> BoxFuture<'a, Result<Option<JobView>, QueueError>> {
        Box::pin(async move {
            let state = lock(&self.state);
            Ok(Self::find(&state, id).and_then(|seq| self.view(&state, seq)))
        })
    }

    fn lease(
        &self,
        max: usize,
        wait: Duration,
    ) -> BoxFuture<'_, Result<Vec<Delivery>, QueueError>> {
        Box::pin(async move {
            let deadline = levee_core::time::now() + wait;
            loop {
                let notified = self.ready.notified();
                let next_turn = {
                    let mut state = lock(&self.state);
                    let now = now_nanos();
                    self.expire(&mut state, now);
                    let mut out = Vec::new();
                    while out.len() < max {
                        let Some(lease) = state.ledger.lease(now) else {
                            break;
                        };
                        let (Some(job), Some(held)) =
                            (state.ledger.get(lease.id), state.held.get(&lease.id))
                        else {
                            continue;
                        };
                        out.push(Delivery {
                            id: Self::public_id(lease.id, held.token),
                            attempt: lease.attempt,
                            tenant: job.tenant.as_str().into(),
                            accepted_at_ms: held.accepted_at_ms,
                            request: held.request.clone(),
                            callback: held.callback.clone(),
                            lease: lease.id,
                        });
                    }
                    if !out.is_empty() {
                        // Others may be ready too: let another waiter look.
                        self.ready.notify_one();
                        return Ok(out);
                    }
                    state.ledger.next_turn()
                };
                let now = levee_core::time::now();
                if now >= deadline {
                    return Ok(Vec::new());
                }
                // Sleep until woken, the next job's turn, or the deadline.
                let mut until = deadline;
                if let Some(at) = next_turn.filter(|at| *at != u64::MAX) {
                    let in_ns = at.saturating_sub(now_nanos());
                    until = until.min(now + Duration::from_nanos(in_ns));
                }
                let _ = tokio::time::timeout_at(until, notified).await;
            }
        })
    }

    fn settle<'a>(
        &'a self,
        delivery: &'a Delivery,
        outcome: Settle,
    ) -> BoxFuture<'a, Result<Settled, QueueError>> {
        Box::pin(async move {
            let lease = levee_policy::jobs::Lease {
                id: delivery.lease,
                attempt: delivery.attempt,
            };
            let now = now_nanos();
            let mut state = lock(&self.state);
            let settled = match outcome {
                Settle::Delivered(result) => {
                    if !state.ledger.succeed(lease, result.status, now) {
                        return Ok(Settled::Stale);
                    }
                    if let Some(held) = state.held.get_mut(&lease.id) {
                        held.result = Some(result);
                    }
                    Settled::Done
                }
                Settle::Failed(error) => {
                    match state
                        .ledger
                        .fail(lease, &error, now, levee_core::ids::random_u64())
                    {
                        AfterFailure::RetryAt(at) => {
                            Settled::Retry(Duration::from_nanos(at.saturating_sub(now)))
                        }
                        AfterFailure::Dead => Settled::Dead,
                        AfterFailure::Stale => return Ok(Settled::Stale),
                    }
                }
                Settle::NotSent => {
                    if !state.ledger.give_back(lease, now) {
                        return Ok(Settled::Stale);
                    }
                    // Nothing stored changed: the attempt did not count.
                    return Ok(Settled::Retry(Duration::ZERO));
                }
            };
            if let Some(job) = state.ledger.get(lease.id) {
                let result = state.held.get(&lease.id).and_then(|h| h.result.as_ref());
                if let Some(write) = self.update(lease.id, job, result) {
                    self.record(write);
                }
            }
            if matches!(settled, Settled::Done) {
                // The key's next job (if any) may go now.
                self.ready.notify_one();
            }
            Ok(settled)
        })
    }

    fn list(
        &self,
        status: Option<JobStatus>,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<JobView>, QueueError>> {
        Box::pin(async move {
            let state = lock(&self.state);
            Ok(state
                .ledger
                .jobs()
                .filter_map(|j| self.view(&state, j.id))
                .filter(|v| status.is_none_or(|s| v.status == s))
                .take(limit)
                .collect())
        })
    }

    fn retry<'a>(&'a self, id: &'a JobId) -> BoxFuture<'a, Result<bool, QueueError>> {
        Box::pin(async move {
            let mut state = lock(&self.state);
            let Some(seq) = Self::find(&state, id) else {
                return Ok(false);
            };
            if !state.ledger.revive(seq, now_nanos()) {
                return Ok(false);
            }
            if let Some(job) = state.ledger.get(seq) {
                if let Some(write) = self.update(seq, job, None) {
                    self.record(write);
                }
            }
            self.ready.notify_one();
            Ok(true)
        })
    }

    fn purge_dead(&self) -> BoxFuture<'_, Result<u64, QueueError>> {
        Box::pin(async move {
            let mut state = lock(&self.state);
            let purged = state.ledger.purge_dead();
            for seq in &purged {
                state.held.remove(seq);
            }
            let n = purged.len() as u64;
            if !purged.is_empty() {
                self.record(JobWrite::Delete {
                    route: self.route.clone(),
                    seqs: purged,
                });
                self.ready.notify_one();
            }
            Ok(n)
        })
    }

    fn stats(&self) -> BoxFuture<'_, Result<QueueStats, QueueError>> {
        Box::pin(async move {
            let state = lock(&self.state);
            let counts = state.ledger.counts();
            let now = now_nanos();
            Ok(QueueStats {
                queued: counts.queued as u64,
                delivering: counts.delivering as u64,
                dead: counts.dead as u64,
                done: counts.done as u64,
                bytes: state.ledger.pending().1,
                oldest_undelivered: state.ledger.oldest_undelivered_age(now),
                per_tenant: state
                    .ledger
                    .pending_by_tenant()
                    .map(|(t, n, _)| (t.to_string(), n as u64))
                    .collect(),
            })
        })
    }
}
