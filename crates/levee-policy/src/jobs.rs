//! The rules of an async route's jobs (issue 16), as a plain struct on
//! passed-in time: what is accepted and what is refused as full, which job
//! is delivered next, what a delivery's success or failure does, when a job
//! is retried, dead-lettered or forgotten, and who may read its result.
//! The embedded queue persists what this decides; the delivery loop only
//! wires it to sockets.
//!
//! - **Accept.** A job is accepted only within the route's limits (jobs and
//!   bytes, in all and per tenant); past them [`Ledger::submit`] says
//!   `Full` with a `Retry-After`, and nothing accepted is ever dropped. The
//!   same tenant's `Idempotency-Key` returns the job it first made.
//! - **Deliver.** [`Ledger::lease`] hands out the job whose turn came first, one at a
//!   time per ordering key (jobs with the same key are delivered in order,
//!   the next only once the one before is done or purged), and none past
//!   a key's turn. A lease expires: a delivery whose gateway died is handed
//!   out again ([`Ledger::expire`]).
//! - **Finish.** Success keeps the result for `result_ttl`. A failure is
//!   retried after an exponential backoff with full jitter, until
//!   `max_attempts` deliveries or `max_age` since acceptance; then the job
//!   is dead, with its last error, until retried or purged by hand. A dead
//!   job keeps its ordering key's turn: what follows it waits, since
//!   delivering it out of order is what the key forbids.
//! - **Read.** A result is read by its tenant only; to another it does not
//!   exist.

use crate::retry::Backoff;
use levee_core::Nanos;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::time::Duration;

/// A route's limits and delivery rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobLimits {
    /// Jobs not yet done (queued, delivering or dead) at most.
    pub max_jobs: usize,
    /// Their request bytes at most.
    pub max_bytes: u64,
    /// The same, per tenant.
    pub max_jobs_per_tenant: usize,
    pub max_bytes_per_tenant: u64,
    /// Deliveries at most before a job is dead.
    pub max_attempts: u32,
    /// Age (since acceptance) after which a failed job is not retried.
    pub max_age: Duration,
    /// The wait before each retry.
    pub backoff: Backoff,
    /// How long a delivery may take before it is handed out again.
    pub lease: Duration,
    /// How long a finished job's result is kept.
    pub result_ttl: Duration,
}

/// A job's number, unique in its route's ledger and never reused.
pub type JobId = u64;

/// Where a job is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobState {
    /// Waiting, deliverable from `ready_at`.
    Queued { ready_at: Nanos },
    /// Handed out for delivery `attempt` (from 1) until `until`.
    Delivering { attempt: u32, until: Nanos },
    /// Delivered: the upstream answered `status` at `at`.
    Done { status: u16, at: Nanos },
    /// Given up on at `at`, after its last error.
    Dead { at: Nanos },
}

/// One job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub id: JobId,
    pub tenant: String,
    /// The ordering key, when the route orders by one.
    pub key: Option<String>,
    /// The client's `Idempotency-Key`, if it gave one.
    pub idempotency_key: Option<String>,
    /// The stored request's size.
    pub bytes: u64,
    pub accepted_at: Nanos,
    /// Deliveries started so far.
    pub attempts: u32,
    pub state: JobState,
    /// Why the last delivery failed.
    pub last_error: Option<String>,
}

impl Job {
    /// Whether it still counts against the limits (not yet delivered).
    pub fn pending(&self) -> bool {
        !matches!(self.state, JobState::Done { .. })
    }
}

/// What [`Ledger::submit`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Submitted {
    /// A new job.
    Accepted(JobId),
    /// The tenant's idempotency key named this job already.
    Existing(JobId),
    /// Over a limit: nothing was stored; try again after this long.
    Full { retry_after: Duration },
}

/// A delivery to make: job `id`, its `attempt`-th.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    pub id: JobId,
    pub attempt: u32,
}

/// What a failed delivery led to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterFailure {
    /// Retried from then.
    RetryAt(Nanos),
    /// Out of attempts or age: dead.
    Dead,
    /// The lease was not current (expired and handed out again, or the job
    /// settled): nothing changed.
    Stale,
}

/// The jobs of one async route.
///
/// Every operation is O(log n) in the jobs held: the next job to deliver,
/// the leases to expire, the results to forget and the oldest undelivered
/// job are each kept in an ordered index, so a backlog of a million jobs
/// costs no more per delivery than a backlog of ten.
#[derive(Debug, Clone)]
pub struct Ledger {
    limits: JobLimits,
    jobs: BTreeMap<JobId, Job>,
    next_id: JobId,
    by_idempotency_key: HashMap<(String, String), JobId>,
    /// Per ordering key, its pending jobs in acceptance order.
    keys: HashMap<String, VecDeque<JobId>>,
    /// Queued jobs whose turn it is, by when they may go.
    ready: BTreeSet<(Nanos, JobId)>,
    /// Deliveries, by when their lease runs out.
    leases: BTreeSet<(Nanos, JobId)>,
    /// Delivered jobs, by when they were delivered (their results' TTL).
    delivered: BTreeSet<(Nanos, JobId)>,
    /// Jobs neither delivered nor dead, by acceptance.
    undelivered: BTreeSet<(Nanos, JobId)>,
    dead: BTreeSet<JobId>,
    pending_jobs: usize,
    pending_bytes: u64,
    per_tenant: HashMap<String, (usize, u64)>,
}

/// What [`Ledger::expire`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expired {
    /// Deliveries whose lease ran out, queued again.
    pub handed_back: Vec<JobId>,
    /// Delivered jobs whose result outlived its TTL, removed.
    pub forgotten: Vec<JobId>,
}

/// How many jobs are where.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub queued: usize,
    pub delivering: usize,
    pub done: usize,
    pub dead: usize,
}

fn nanos(d: Duration) -> Nanos {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl Ledger {
    pub fn new(limits: JobLimits) -> Self {
        Self {
            limits,
            jobs: BTreeMap::new(),
            next_id: 1,
            by_idempotency_key: HashMap::new(),
            keys: HashMap::new(),
            ready: BTreeSet::new(),
            leases: BTreeSet::new(),
            delivered: BTreeSet::new(),
            undelivered: BTreeSet::new(),
            dead: BTreeSet::new(),
            pending_jobs: 0,
            pending_bytes: 0,
            per_tenant: HashMap::new(),
        }
    }

    pub fn limits(&self) -> &JobLimits {
        &self.limits
    }

    /// New limits (a reload): jobs already accepted stay, even over them.
    pub fn set_limits(&mut self, limits: JobLimits) {
        self.limits = limits;
    }

    pub fn get(&self, id: JobId) -> Option<&Job> {
        self.jobs.get(&id)
    }

    /// Job `id` as `tenant` may see it: another tenant's is not there.
    pub fn get_for(&self, id: JobId, tenant: &str) -> Option<&Job> {
        self.jobs.get(&id).filter(|j| j.tenant == tenant)
    }

    /// Jobs not yet delivered (queued, delivering or dead) and their bytes.
    pub fn pending(&self) -> (usize, u64) {
        (self.pending_jobs, self.pending_bytes)
    }

    /// Per tenant, its jobs not yet delivered and their bytes.
    pub fn pending_by_tenant(&self) -> impl Iterator<Item = (&str, usize, u64)> {
        self.per_tenant
            .iter()
            .map(|(t, (n, b))| (t.as_str(), *n, *b))
    }

    /// How many jobs are in each state.
    pub fn counts(&self) -> Counts {
        Counts {
            queued: self.undelivered.len() - self.leases.len(),
            delivering: self.leases.len(),
            done: self.delivered.len(),
            dead: self.dead.len(),
        }
    }

    /// Every job, by id.
    pub fn jobs(&self) -> impl Iterator<Item = &Job> {
        self.jobs.values()
    }

    /// Accepts a job of `bytes` for `tenant` at `now`, unless over a limit
    /// or already made under the tenant's `idempotency_key`.
    pub fn submit(
        &mut self,
        tenant: &str,
        idempotency_key: Option<&str>,
        key: Option<&str>,
        bytes: u64,
        now: Nanos,
    ) -> Submitted {
        if let Some(k) = idempotency_key {
            if let Some(id) = self
                .by_idempotency_key
                .get(&(tenant.to_string(), k.to_string()))
            {
                return Submitted::Existing(*id);
            }
        }
        let (t_jobs, t_bytes) = self.per_tenant.get(tenant).copied().unwrap_or((0, 0));
        let l = &self.limits;
        if self.pending_jobs >= l.max_jobs
            || self.pending_bytes.saturating_add(bytes) > l.max_bytes
            || t_jobs >= l.max_jobs_per_tenant
            || t_bytes.saturating_add(bytes) > l.max_bytes_per_tenant
        {
            return Submitted::Full {
                retry_after: self.retry_after(now),
            };
        }
        let id = self.next_id;
        self.next_id += 1;
        self.insert(Job {
            id,
            tenant: tenant.to_string(),
            key: key.map(str::to_string),
            idempotency_key: idempotency_key.map(str::to_string),
            bytes,
            accepted_at: now,
            attempts: 0,
            state: JobState::Queued { ready_at: now },
            last_error: None,
        });
        Submitted::Accepted(id)
    }

    /// Puts back a job as it was stored (at start, from the queue's file),
    /// in id order. A delivery that was under way is queued again (its
    /// gateway stopped); ids continue after the largest.
    pub fn restore(&mut self, mut job: Job, now: Nanos) {
        if let JobState::Delivering { .. } = job.state {
            job.state = JobState::Queued { ready_at: now };
        }
        self.next_id = self.next_id.max(job.id + 1);
        self.insert(job);
    }

    /// Adds `job` with every index it belongs in.
    fn insert(&mut self, job: Job) {
        let id = job.id;
        if let Some(k) = &job.idempotency_key {
            self.by_idempotency_key
                .insert((job.tenant.clone(), k.clone()), id);
        }
        if job.pending() {
            if let Some(k) = &job.key {
                self.keys.entry(k.clone()).or_default().push_back(id);
            }
            self.count(&job.tenant, 1, job.bytes as i128);
        }
        match job.state {
            JobState::Queued { ready_at } => {
                self.undelivered.insert((job.accepted_at, id));
                if self.its_turn(&job) {
                    self.ready.insert((ready_at, id));
                }
            }
            JobState::Delivering { until, .. } => {
                self.undelivered.insert((job.accepted_at, id));
                self.leases.insert((until, id));
            }
            JobState::Done { at, .. } => {
                self.delivered.insert((at, id));
            }
            JobState::Dead { .. } => {
                self.dead.insert(id);
            }
        }
        self.jobs.insert(id, job);
    }

    /// When a full queue may have room: the next delivery's turn or lease
    /// end, at least a second.
    fn retry_after(&self, now: Nanos) -> Duration {
        let soonest = [self.ready.first(), self.leases.first()]
            .into_iter()
            .flatten()
            .map(|(at, _)| at.saturating_sub(now))
            .min()
            .unwrap_or(0);
        Duration::from_nanos(soonest).max(Duration::from_secs(1))
    }

    fn count(&mut self, tenant: &str, jobs: i64, bytes: i128) {
        let apply = |n: usize, b: u64| {
            (
                (n as i64 + jobs).max(0) as usize,
                (b as i128 + bytes).max(0) as u64,
            )
        };
        (self.pending_jobs, self.pending_bytes) = apply(self.pending_jobs, self.pending_bytes);
        let t = self.per_tenant.entry(tenant.to_string()).or_default();
        *t = apply(t.0, t.1);
        if *t == (0, 0) {
            self.per_tenant.remove(tenant);
        }
    }

    /// Whether job `id` is first in line for its ordering key.
    fn its_turn(&self, job: &Job) -> bool {
        match &job.key {
            None => true,
            Some(k) => self.keys.get(k).and_then(|q| q.front()) == Some(&job.id),
        }
    }

    /// Hands out the job whose turn came first, among those ready at
    /// `now`, leased for [`JobLimits::lease`].
    pub fn lease(&mut self, now: Nanos) -> Option<Lease> {
        let &(ready_at, id) = self.ready.first()?;
        if ready_at > now {
            return None;
        }
        self.ready.remove(&(ready_at, id));
        let until = now.saturating_add(nanos(self.limits.lease));
        let job = self.jobs.get_mut(&id)?;
        job.attempts += 1;
        job.state = JobState::Delivering {
            attempt: job.attempts,
            until,
        };
        self.leases.insert((until, id));
        Some(Lease {
            id,
            attempt: job.attempts,
        })
    }

    /// The lease's end, when `lease` is the job's current delivery.
    fn current(&self, lease: Lease) -> Option<Nanos> {
        match self.jobs.get(&lease.id).map(|j| &j.state) {
            Some(JobState::Delivering { attempt, until }) if *attempt == lease.attempt => {
                Some(*until)
            }
            _ => None,
        }
    }

    /// The delivery of `lease` succeeded with `status` at `now`; `false`
    /// when the lease was not current (nothing changed).
    pub fn succeed(&mut self, lease: Lease, status: u16, now: Nanos) -> bool {
        let Some(until) = self.current(lease) else {
            return false;
        };
        self.leases.remove(&(until, lease.id));
        let Some(job) = self.jobs.get_mut(&lease.id) else {
            return false;
        };
        job.state = JobState::Done { status, at: now };
        let (tenant, key, bytes, accepted) = (
            job.tenant.clone(),
            job.key.clone(),
            job.bytes,
            job.accepted_at,
        );
        self.undelivered.remove(&(accepted, lease.id));
        self.delivered.insert((now, lease.id));
        self.count(&tenant, -1, -(bytes as i128));
        self.leave_key(key.as_deref(), lease.id);
        true
    }

    /// The delivery of `lease` failed with `error` at `now`; `random`
    /// draws the backoff's jitter.
    pub fn fail(&mut self, lease: Lease, error: &str, now: Nanos, random: u64) -> AfterFailure {
        let Some(until) = self.current(lease) else {
            return AfterFailure::Stale;
        };
        self.leases.remove(&(until, lease.id));
        let limits = self.limits;
        let Some(job) = self.jobs.get_mut(&lease.id) else {
            return AfterFailure::Stale;
        };
        job.last_error = Some(error.chars().take(512).collect());
        let retry_at = now.saturating_add(nanos(
            limits.backoff.delay(job.attempts.saturating_sub(1), random),
        ));
        let too_old = retry_at.saturating_sub(job.accepted_at) >= nanos(limits.max_age);
        if job.attempts >= limits.max_attempts || too_old {
            job.state = JobState::Dead { at: now };
            let accepted = job.accepted_at;
            self.undelivered.remove(&(accepted, lease.id));
            self.dead.insert(lease.id);
            return AfterFailure::Dead;
        }
        job.state = JobState::Queued { ready_at: retry_at };
        // It was delivering, so it is its key's first: its turn stays.
        self.ready.insert((retry_at, lease.id));
        AfterFailure::RetryAt(retry_at)
    }

    /// A delivery that was never sent (the cluster refused it) goes back
    /// as it was, its attempt not counted; `false` if the lease was stale.
    pub fn give_back(&mut self, lease: Lease, now: Nanos) -> bool {
        let Some(until) = self.current(lease) else {
            return false;
        };
        self.leases.remove(&(until, lease.id));
        let Some(job) = self.jobs.get_mut(&lease.id) else {
            return false;
        };
        job.attempts = job.attempts.saturating_sub(1);
        job.state = JobState::Queued { ready_at: now };
        self.ready.insert((now, lease.id));
        true
    }

    /// Takes job `id` off its key's line; the next of the key, if any,
    /// gets its turn.
    fn leave_key(&mut self, key: Option<&str>, id: JobId) {
        let Some(k) = key else { return };
        let Some(q) = self.keys.get_mut(k) else {
            return;
        };
        let was_first = q.front() == Some(&id);
        q.retain(|x| *x != id);
        let next = q.front().copied();
        if q.is_empty() {
            self.keys.remove(k);
        }
        if let (true, Some(next)) = (was_first, next) {
            if let Some(JobState::Queued { ready_at }) = self.jobs.get(&next).map(|j| &j.state) {
                self.ready.insert((*ready_at, next));
            }
        }
    }

    /// At `now`: deliveries past their lease are queued again (their
    /// gateway is gone; the attempt counts), and results past their TTL
    /// are forgotten.
    pub fn expire(&mut self, now: Nanos) -> Expired {
        let mut back = Vec::new();
        let mut forgotten = Vec::new();
        while let Some(&(until, id)) = self.leases.first() {
            if until > now {
                break;
            }
            self.leases.remove(&(until, id));
            if let Some(job) = self.jobs.get_mut(&id) {
                job.state = JobState::Queued { ready_at: now };
                job.last_error = Some("the delivery's lease expired".into());
                self.ready.insert((now, id));
                back.push(id);
            }
        }
        let ttl = nanos(self.limits.result_ttl);
        while let Some(&(at, id)) = self.delivered.first() {
            if now.saturating_sub(at) < ttl {
                break;
            }
            self.delivered.remove(&(at, id));
            if let Some(job) = self.jobs.remove(&id) {
                if let Some(k) = job.idempotency_key {
                    self.by_idempotency_key.remove(&(job.tenant, k));
                }
                forgotten.push(id);
            }
        }
        Expired {
            handed_back: back,
            forgotten,
        }
    }

    /// A queued job's next turn moved to `ready_at` (`Nanos::MAX` holds
    /// it until moved again: a job not yet stored durably is not
    /// delivered); `false` when it is not queued.
    pub fn reschedule(&mut self, id: JobId, ready_at: Nanos) -> bool {
        let Some(job) = self.jobs.get_mut(&id) else {
            return false;
        };
        let JobState::Queued { ready_at: was } = job.state else {
            return false;
        };
        job.state = JobState::Queued { ready_at };
        if self.ready.remove(&(was, id)) {
            self.ready.insert((ready_at, id));
        }
        true
    }

    /// Takes back a queued job that was never delivered, as if it had
    /// never been accepted (its storing failed, so its client was told
    /// no); `false` when it is not queued.
    pub fn withdraw(&mut self, id: JobId) -> bool {
        match self.jobs.get(&id).map(|j| &j.state) {
            Some(JobState::Queued { ready_at }) => {
                let ready_at = *ready_at;
                self.ready.remove(&(ready_at, id));
            }
            _ => return false,
        }
        let Some(job) = self.jobs.remove(&id) else {
            return false;
        };
        self.undelivered.remove(&(job.accepted_at, id));
        self.count(&job.tenant, -1, -(job.bytes as i128));
        self.leave_key(job.key.as_deref(), id);
        if let Some(k) = job.idempotency_key {
            self.by_idempotency_key.remove(&(job.tenant, k));
        }
        true
    }

    /// A dead job queued again at `now` with its attempts reset (by hand:
    /// `levee jobs retry`); `false` if it is not dead.
    pub fn revive(&mut self, id: JobId, now: Nanos) -> bool {
        if !self.dead.remove(&id) {
            return false;
        }
        let Some(job) = self.jobs.get_mut(&id) else {
            return false;
        };
        job.state = JobState::Queued { ready_at: now };
        job.attempts = 0;
        job.accepted_at = now;
        self.undelivered.insert((now, id));
        // A dead job kept its key's turn.
        self.ready.insert((now, id));
        true
    }

    /// Removes dead jobs (by hand: `levee jobs purge`); their ids.
    pub fn purge_dead(&mut self) -> Vec<JobId> {
        let dead: Vec<JobId> = std::mem::take(&mut self.dead).into_iter().collect();
        for id in &dead {
            if let Some(job) = self.jobs.remove(id) {
                self.count(&job.tenant, -1, -(job.bytes as i128));
                self.leave_key(job.key.as_deref(), job.id);
                if let Some(k) = job.idempotency_key {
                    self.by_idempotency_key.remove(&(job.tenant, k));
                }
            }
        }
        dead
    }

    /// When the next queued job's turn comes (`Nanos::MAX` for one held).
    pub fn next_turn(&self) -> Option<Nanos> {
        self.ready.first().map(|(at, _)| *at)
    }

    /// The age at `now` of the oldest job not yet delivered and not dead:
    /// the freshness SLI and the autoscaling lag.
    pub fn oldest_undelivered_age(&self, now: Nanos) -> Option<Duration> {
        self.undelivered
            .first()
            .map(|(accepted, _)| Duration::from_nanos(now.saturating_sub(*accepted)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const S: Nanos = 1_000_000_000;

    fn limits() -> JobLimits {
        JobLimits {
            max_jobs: 100,
            max_bytes: 10_000,
            max_jobs_per_tenant: 50,
            max_bytes_per_tenant: 5_000,
            max_attempts: 3,
            max_age: Duration::from_secs(3600),
            backoff: Backoff {
                base: Duration::from_secs(1),
                max: Duration::from_secs(60),
            },
            lease: Duration::from_secs(30),
            result_ttl: Duration::from_secs(600),
        }
    }

    fn accepted(s: Submitted) -> JobId {
        match s {
            Submitted::Accepted(id) => id,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_job_is_delivered_once_and_its_result_is_the_tenants_only() {
        let mut l = Ledger::new(limits());
        let id = accepted(l.submit("acme", None, None, 100, 0));
        let lease = l.lease(S).unwrap();
        assert_eq!(lease, Lease { id, attempt: 1 });
        assert_eq!(l.lease(S), None, "one delivery at a time");
        assert!(l.succeed(lease, 201, 2 * S));
        assert!(!l.succeed(lease, 201, 2 * S), "only once");
        assert_eq!(l.pending(), (0, 0));
        assert!(l.get_for(id, "acme").is_some());
        assert!(
            l.get_for(id, "globex").is_none(),
            "another tenant sees nothing"
        );
        assert_eq!(l.expire(2 * S + 600 * S).forgotten, vec![id]);
        assert!(l.get(id).is_none(), "the result is forgotten after its TTL");
    }

    #[test]
    fn the_same_idempotency_key_returns_the_same_job() {
        let mut l = Ledger::new(limits());
        let id = accepted(l.submit("acme", Some("k1"), None, 10, 0));
        assert_eq!(
            l.submit("acme", Some("k1"), None, 10, S),
            Submitted::Existing(id)
        );
        let other = accepted(l.submit("globex", Some("k1"), None, 10, S));
        assert_ne!(other, id, "keys are per tenant");
        assert_eq!(l.pending().0, 2);
    }

    #[test]
    fn limits_refuse_with_retry_after_and_keep_what_was_accepted() {
        let mut l = Ledger::new(JobLimits {
            max_jobs_per_tenant: 2,
            ..limits()
        });
        accepted(l.submit("acme", None, None, 10, 0));
        accepted(l.submit("acme", None, None, 10, 0));
        match l.submit("acme", None, None, 10, 0) {
            Submitted::Full { retry_after } => assert!(retry_after >= Duration::from_secs(1)),
            other => panic!("{other:?}"),
        }
        accepted(l.submit("globex", None, None, 10, 0));
        assert!(matches!(
            l.submit("globex", None, None, 6_000, 0),
            Submitted::Full { .. }
        ));
        assert_eq!(l.pending(), (3, 30));
    }

    #[test]
    fn failures_back_off_then_die_with_their_last_error() {
        let mut l = Ledger::new(limits());
        let id = accepted(l.submit("acme", None, None, 10, 0));
        let mut now = 0;
        for attempt in 1..=3 {
            let lease = l.lease(now).unwrap_or_else(|| panic!("attempt {attempt}"));
            assert_eq!(lease.attempt, attempt);
            // The jitter drawn at its ceiling.
            let ceiling = S << (attempt - 1);
            match l.fail(lease, "503 from upstream", now, ceiling) {
                AfterFailure::RetryAt(at) => {
                    assert_eq!(at - now, ceiling, "1 s, then 2 s");
                    assert_eq!(l.lease(at - 1), None, "not before its time");
                    now = at;
                }
                AfterFailure::Dead => assert_eq!(attempt, 3),
                AfterFailure::Stale => panic!("stale"),
            }
        }
        let job = l.get(id).unwrap();
        assert!(matches!(job.state, JobState::Dead { .. }));
        assert_eq!(job.last_error.as_deref(), Some("503 from upstream"));
        assert_eq!(l.pending().0, 1, "a dead job still counts until purged");
        assert!(l.revive(id, now));
        assert_eq!(l.lease(now).unwrap().attempt, 1);
    }

    #[test]
    fn an_expired_lease_is_handed_out_again_and_its_late_answer_ignored() {
        let mut l = Ledger::new(limits());
        accepted(l.submit("acme", None, None, 10, 0));
        let first = l.lease(0).unwrap();
        assert_eq!(l.expire(29 * S).handed_back, vec![]);
        assert_eq!(l.expire(30 * S).handed_back, vec![first.id]);
        let second = l.lease(30 * S).unwrap();
        assert_eq!(second.attempt, 2);
        assert!(
            !l.succeed(first, 200, 31 * S),
            "the first gateway's late answer"
        );
        assert_eq!(l.fail(first, "x", 31 * S, 0), AfterFailure::Stale);
        assert!(l.succeed(second, 200, 31 * S));
    }

    #[test]
    fn jobs_with_one_key_go_in_order_others_in_parallel() {
        let mut l = Ledger::new(limits());
        let a1 = accepted(l.submit("acme", None, Some("acme"), 1, 0));
        let a2 = accepted(l.submit("acme", None, Some("acme"), 1, 0));
        let b1 = accepted(l.submit("globex", None, Some("globex"), 1, 0));
        let free = accepted(l.submit("acme", None, None, 1, 0));
        let leased: Vec<JobId> = std::iter::from_fn(|| l.lease(0)).map(|x| x.id).collect();
        assert_eq!(leased, [a1, b1, free], "a2 waits for a1");
        let lease_a1 = Lease { id: a1, attempt: 1 };
        // A failure keeps the key's turn: a2 still waits.
        assert!(matches!(
            l.fail(lease_a1, "x", 0, 0),
            AfterFailure::RetryAt(_)
        ));
        assert_eq!(l.lease(0).map(|x| x.id), Some(a1));
        assert!(l.succeed(Lease { id: a1, attempt: 2 }, 200, S));
        assert_eq!(l.lease(S).map(|x| x.id), Some(a2));
    }

    #[test]
    fn a_held_job_waits_and_a_withdrawn_one_leaves_no_trace() {
        let mut l = Ledger::new(limits());
        let a = accepted(l.submit("acme", Some("k"), Some("acme"), 10, 0));
        let b = accepted(l.submit("acme", None, Some("acme"), 10, 0));
        assert!(l.reschedule(a, Nanos::MAX));
        assert_eq!(l.lease(S), None, "held until stored");
        assert!(l.withdraw(a));
        assert_eq!(l.pending(), (1, 10));
        assert_eq!(l.lease(S).map(|x| x.id), Some(b), "the key's next goes");
        assert!(matches!(
            l.submit("acme", Some("k"), None, 10, S),
            Submitted::Accepted(_)
        ));
    }

    proptest! {
        /// Whatever happens, every accepted job is in exactly one state,
        /// the pending counts are the sums over the jobs, no two jobs of
        /// one key are delivered at once, and a job succeeds at most once.
        #[test]
        fn nothing_accepted_is_lost_or_double_counted(
            ops in prop::collection::vec((0u8..6, 0u8..4, 1u64..300, any::<u64>()), 1..200)
        ) {
            let mut l = Ledger::new(JobLimits { max_jobs: 20, max_bytes: 3_000, max_jobs_per_tenant: 12, max_bytes_per_tenant: 2_000, ..limits() });
            let mut now: Nanos = 0;
            let mut accepted_ids = Vec::new();
            let mut leases: Vec<Lease> = Vec::new();
            let mut succeeded = std::collections::HashSet::new();
            let mut purged = std::collections::HashSet::new();
            for (op, who, n, r) in ops {
                now += n * S / 10;
                let tenant = ["a", "b", "c", "d"][who as usize];
                match op {
                    0 | 1 => {
                        let key = (op == 1).then_some(tenant);
                        let idem = (r % 3 == 0).then(|| format!("k{}", r % 5));
                        if let Submitted::Accepted(id) = l.submit(tenant, idem.as_deref(), key, n, now) {
                            accepted_ids.push(id);
                        }
                    }
                    2 => leases.extend(l.lease(now)),
                    3 => if let Some(lease) = leases.pop() {
                        if l.succeed(lease, 200, now) { prop_assert!(succeeded.insert(lease.id)); }
                    },
                    4 => if let Some(lease) = leases.pop() {
                        if r % 4 == 0 { l.give_back(lease, now); } else { let _ = l.fail(lease, "e", now, r); }
                    },
                    5 if r % 7 == 0 => { purged.extend(l.purge_dead()); }
                    5 if r % 7 == 1 => {
                        if let Some(id) = l.dead.iter().next().copied() { prop_assert!(l.revive(id, now)); }
                    }
                    _ => { l.expire(now); }
                }
                // The indexes say what a scan of the jobs says.
                let ready: BTreeSet<(Nanos, JobId)> = l.jobs().filter_map(|j| match j.state {
                    JobState::Queued { ready_at } if l.its_turn(j) => Some((ready_at, j.id)),
                    _ => None,
                }).collect();
                prop_assert_eq!(&l.ready, &ready);
                let c = l.counts();
                prop_assert_eq!(c.queued, l.jobs().filter(|j| matches!(j.state, JobState::Queued { .. })).count());
                prop_assert_eq!(c.delivering, l.jobs().filter(|j| matches!(j.state, JobState::Delivering { .. })).count());
                prop_assert_eq!(c.dead, l.jobs().filter(|j| matches!(j.state, JobState::Dead { .. })).count());
                prop_assert_eq!(c.done, l.jobs().filter(|j| matches!(j.state, JobState::Done { .. })).count());
                let oldest = l.jobs().filter(|j| matches!(j.state, JobState::Queued { .. } | JobState::Delivering { .. })).map(|j| now - j.accepted_at).max();
                prop_assert_eq!(l.oldest_undelivered_age(now), oldest.map(Duration::from_nanos));
                let pending: Vec<&Job> = l.jobs().filter(|j| j.pending()).collect();
                prop_assert_eq!(l.pending(), (pending.len(), pending.iter().map(|j| j.bytes).sum::<u64>()));
                let mut delivering_keys = std::collections::HashSet::new();
                for j in l.jobs() {
                    if let (JobState::Delivering { .. }, Some(k)) = (&j.state, &j.key) {
                        prop_assert!(delivering_keys.insert(k.clone()), "two of key {} at once", k);
                    }
                }
                // Accepted and not yet delivered: still there.
                for id in &accepted_ids {
                    if !succeeded.contains(id) && !purged.contains(id) { prop_assert!(l.get(*id).is_some(), "job {} lost", id); }
                }
            }
        }
    }
}
