//! A cluster's concurrency limit with its admission queue (the last part of
//! step 4, admission, after the cluster's breaker and bulkheads and before
//! any endpoint is chosen). The limit adapts to the upstream's latency and
//! drops (`levee_policy::concurrency`), or is fixed; requests over it wait
//! in a queue that serves priority classes strictly and tenants fairly
//! (`levee_policy::admission`), and is shed at once when waiting cannot
//! help: queue full, or a deadline shorter than the expected wait. Shed
//! requests are answered 503 `overloaded`, marked so Levees in front do
//! not retry them.
//!
//! One short mutex per cluster guards the queue and the waiters; the limit
//! and the in-flight count are mirrored in atomics for lock-free reads.

use levee_config::{Concurrency, ConcurrencyAlgorithm, Priority};
use levee_core::metrics::{names, Counter, Gauge, Registry};
use levee_core::time::Instant;
use levee_core::{Clock, ErrorKind, MonotonicClock, Outcome};
use levee_policy::admission::{
    AdmissionConfig, AdmissionQueue, ClassConfig, ClassId, RejectReason, TenantId, Ticket, Verdict,
};
use levee_policy::concurrency::{
    AdaptiveLimit, LimitAlgorithm, LimitConfig, Sample, SampleOutcome,
};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::oneshot;

/// What a waiter learns: run, or why it was shed.
type Wake = Result<(), RejectReason>;

#[derive(Debug)]
struct State {
    queue: AdmissionQueue,
    in_flight: u32,
    waiters: HashMap<Ticket, oneshot::Sender<Wake>>,
    tenants: HashMap<Arc<str>, TenantId>,
}

/// A cluster's limit and queue.
#[derive(Debug)]
pub(crate) struct ClusterQueue {
    state: Mutex<State>,
    limiter: Option<Mutex<AdaptiveLimit>>,
    limit: AtomicU32,
    in_flight: AtomicU32,
    /// Each class's `max_queue_time`, by class id: how long a queued
    /// request may wait before it is shed.
    max_queue_time: Vec<Duration>,
    clock: MonotonicClock,
    limit_gauge: Arc<Gauge>,
    in_flight_gauge: Arc<Gauge>,
    queued_gauge: Arc<Gauge>,
    shed: Vec<(RejectReason, Arc<Counter>)>,
}

/// A request's place under the limit; given back when dropped (at the end
/// of the response).
#[derive(Debug)]
pub(crate) struct Permit {
    owner: Arc<ClusterQueue>,
    tenant: TenantId,
    since: Instant,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let held = levee_core::time::now()
            .saturating_duration_since(self.since)
            .as_nanos() as u64;
        let mut state = self.owner.lock();
        state.queue.finished(self.tenant);
        state.queue.observe_service_time(held);
        state.in_flight = state.in_flight.saturating_sub(1);
        self.owner.release(&mut state);
    }
}

/// A queued request; if it is dropped while waiting (the client left), it
/// leaves the queue, or gives back the slot it was just handed.
struct Waiting {
    owner: Arc<ClusterQueue>,
    ticket: Ticket,
    tenant: TenantId,
    armed: bool,
}

impl Drop for Waiting {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let mut state = self.owner.lock();
        state.waiters.remove(&self.ticket);
        if !state.queue.cancel(self.ticket) {
            // Already released to run: it holds a slot it will not use.
            state.queue.finished(self.tenant);
            state.in_flight = state.in_flight.saturating_sub(1);
            self.owner.release(&mut state);
        }
    }
}

/// Distinct tenants a queue tracks by name.
const MAX_TENANTS: usize = 10_000;

const REASONS: [RejectReason; 4] = [
    RejectReason::QueueFull,
    RejectReason::DeadlineTooShort,
    RejectReason::ShedForMoreImportant,
    RejectReason::QueueTimeout,
];

impl ClusterQueue {
    pub(crate) fn new(
        config: &Concurrency,
        tenants: &[levee_config::TenantConfig],
        cluster: &str,
        registry: &Registry,
        clock: MonotonicClock,
    ) -> Arc<Self> {
        let now = clock.now();
        let limiter = match config.algorithm {
            ConcurrencyAlgorithm::Fixed => None,
            a => Some(Mutex::new(AdaptiveLimit::new(
                LimitConfig {
                    algorithm: match a {
                        ConcurrencyAlgorithm::Aimd => LimitAlgorithm::Aimd,
                        ConcurrencyAlgorithm::Vegas => LimitAlgorithm::Vegas,
                        _ => LimitAlgorithm::Gradient,
                    },
                    min_limit: config.min_limit,
                    max_limit: config.max_limit,
                    initial_limit: config.limit,
                    latency_target: config.latency_target,
                    ..LimitConfig::default()
                },
                now,
                levee_core::ids::random_u64(),
            ))),
        };
        let initial = limiter.as_ref().map_or(config.limit, |l| {
            l.lock().map_or(config.limit, |l| l.limit())
        });
        let labels = [("cluster", cluster)];
        let queue = AdmissionQueue::new(AdmissionConfig {
            classes: config
                .classes
                .iter()
                .map(|c| ClassConfig {
                    max_queue_time: c.max_queue_time,
                    max_queue_len: c.max_queue_len,
                })
                .collect(),
            // Known tenants get the first ids, with their weights.
            tenant_weights: tenants
                .iter()
                .enumerate()
                .map(|(i, t)| (TenantId(i as u32), t.weight))
                .collect(),
            max_total_len: config.max_queue_len,
            tenant_quota_share: config.tenant_quota,
        });
        let max_queue_time = config.classes.iter().map(|c| c.max_queue_time).collect();
        let me = Arc::new(Self {
            max_queue_time,
            state: Mutex::new(State {
                queue,
                in_flight: 0,
                waiters: HashMap::new(),
                tenants: tenants
                    .iter()
                    .enumerate()
                    .map(|(i, t)| (Arc::from(t.name.as_str()), TenantId(i as u32)))
                    .collect(),
            }),
            limiter,
            limit: AtomicU32::new(initial),
            in_flight: AtomicU32::new(0),
            clock,
            limit_gauge: registry.gauge(
                names::CLUSTER_CONCURRENCY_LIMIT,
                "The cluster's current concurrency limit.",
                &labels,
            ),
            in_flight_gauge: registry.gauge(
                names::CLUSTER_ADMITTED_IN_FLIGHT,
                "Requests holding a place under the cluster's concurrency limit.",
                &labels,
            ),
            queued_gauge: registry.gauge(
                names::CLUSTER_QUEUED,
                "Requests waiting in the cluster's admission queue.",
                &labels,
            ),
            shed: REASONS
                .iter()
                .map(|r| {
                    (
                        *r,
                        registry.counter(
                            names::CLUSTER_SHED,
                            "Requests the admission queue shed, by cluster and reason.",
                            &[("cluster", cluster), ("reason", r.as_str())],
                        ),
                    )
                })
                .collect(),
        });
        me.limit_gauge.set(i64::from(initial));
        me
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The current limit.
    pub(crate) fn limit(&self) -> u32 {
        self.limit.load(Ordering::Relaxed)
    }

    /// Requests admitted now.
    pub(crate) fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }

    fn count_shed(&self, reason: RejectReason) {
        if let Some((_, c)) = self.shed.iter().find(|(r, _)| *r == reason) {
            c.inc();
        }
    }

    /// Hands freed places to queued requests and wakes them; wakes the
    /// ones the queue gave up on with their reason.
    fn release(&self, state: &mut State) {
        let now = self.clock.now();
        let released = state.queue.on_release(now, state.in_flight, self.limit());
        for ticket in released.run {
            state.in_flight += 1;
            match state.waiters.remove(&ticket) {
                Some(tx) => {
                    if tx.send(Ok(())).is_err() {
                        // Its waiter is gone; its drop will find the ticket
                        // released and give the slot back.
                    }
                }
                None => {
                    // Nobody waits for it any more: give the slot back.
                    state.in_flight -= 1;
                }
            }
        }
        for (ticket, reason) in released.shed {
            self.count_shed(reason);
            if let Some(tx) = state.waiters.remove(&ticket) {
                let _ = tx.send(Err(reason));
            }
        }
        self.publish(state);
    }

    fn publish(&self, state: &State) {
        self.in_flight.store(state.in_flight, Ordering::Relaxed);
        self.in_flight_gauge.set(i64::from(state.in_flight));
        self.queued_gauge.set(state.queue.len() as i64);
    }

    /// Admits a request of `priority` for `tenant`, waiting in the queue
    /// when the limit is reached, until `deadline` at most.
    pub(crate) async fn admit(
        self: &Arc<Self>,
        priority: Priority,
        tenant: &Arc<str>,
        deadline: Instant,
    ) -> Result<Permit, (ErrorKind, String)> {
        let class = class_of(priority);
        let now = self.clock.now();
        let deadline_ns = self.clock.nanos_at(deadline);
        let (tenant_id, rx, ticket) = {
            let mut state = self.lock();
            let tenant_id = match state.tenants.get(tenant) {
                Some(id) => *id,
                // Tenant names can come from a header: past a bound, new
                // names share one id rather than grow the map without end.
                None if state.tenants.len() >= MAX_TENANTS => TenantId(u32::MAX),
                None => {
                    let id = TenantId(state.tenants.len() as u32);
                    state.tenants.insert(tenant.clone(), id);
                    id
                }
            };
            let in_flight = state.in_flight;
            let verdict = state.queue.try_admit(
                now,
                class,
                tenant_id,
                Some(deadline_ns),
                in_flight,
                self.limit(),
            );
            match verdict {
                Verdict::Admit => {
                    state.in_flight += 1;
                    self.publish(&state);
                    return Ok(self.permit(tenant_id));
                }
                Verdict::Reject(reason) => {
                    self.count_shed(reason);
                    return Err(shed(reason, priority));
                }
                Verdict::Queued { ticket, evicted } => {
                    let (tx, rx) = oneshot::channel();
                    state.waiters.insert(ticket, tx);
                    if let Some(e) = evicted {
                        self.count_shed(RejectReason::ShedForMoreImportant);
                        if let Some(tx) = state.waiters.remove(&e) {
                            let _ = tx.send(Err(RejectReason::ShedForMoreImportant));
                        }
                    }
                    if state.in_flight < self.limit() {
                        self.release(&mut state);
                    } else {
                        self.publish(&state);
                    }
                    (tenant_id, rx, ticket)
                }
            }
        };
        let mut waiting = Waiting {
            owner: self.clone(),
            ticket,
            tenant: tenant_id,
            armed: true,
        };
        // Until the deadline or the class's queue time, whichever is first:
        // a waiting request is shed the moment its queue time is up.
        let class_wait = self
            .max_queue_time
            .get(usize::from(class.0))
            .copied()
            .unwrap_or(Duration::MAX);
        let max_wait = deadline
            .saturating_duration_since(levee_core::time::now())
            .min(class_wait);
        let woke = tokio::time::timeout(max_wait, rx).await;
        match woke {
            Ok(Ok(Ok(()))) => {
                waiting.armed = false;
                Ok(self.permit(tenant_id))
            }
            Ok(Ok(Err(reason))) => {
                waiting.armed = false;
                Err(shed(reason, priority))
            }
            // Timed out (queue time or deadline), or the sender vanished: the drop of
            // `waiting` leaves the queue or gives back a late slot.
            _ => {
                self.count_shed(RejectReason::QueueTimeout);
                Err(shed(RejectReason::QueueTimeout, priority))
            }
        }
    }

    fn permit(self: &Arc<Self>, tenant: TenantId) -> Permit {
        Permit {
            owner: self.clone(),
            tenant,
            since: levee_core::time::now(),
        }
    }

    /// Feeds an attempt's outcome to the adaptive limit; a limit that grew
    /// lets queued requests in.
    pub(crate) fn on_attempt(
        &self,
        outcome: Option<Outcome>,
        rtt: Duration,
        in_flight: u32,
        shed_mark: bool,
    ) {
        let Some(limiter) = &self.limiter else {
            return;
        };
        let Some(outcome) = sample_outcome(outcome, shed_mark) else {
            return;
        };
        let now = self.clock.now();
        let new_limit = {
            let mut l = limiter.lock().unwrap_or_else(|e| e.into_inner());
            l.on_sample(
                now,
                Sample {
                    rtt_ns: rtt.as_nanos() as u64,
                    in_flight: in_flight.max(1),
                    outcome,
                },
            );
            l.limit()
        };
        let old = self.limit.swap(new_limit, Ordering::Relaxed);
        if new_limit != old {
            self.limit_gauge.set(i64::from(new_limit));
        }
        if new_limit > old {
            let mut state = self.lock();
            self.release(&mut state);
        }
    }
}

/// How an attempt counts for the limit: drops are congestion (timeouts,
/// refused or reset connections, 503/429/504, answers another Levee shed);
/// 500 and 501 are application errors and not counted; the client's own
/// failures are not the upstream's.
fn sample_outcome(outcome: Option<Outcome>, shed_mark: bool) -> Option<SampleOutcome> {
    if shed_mark {
        return Some(SampleOutcome::Dropped);
    }
    match outcome? {
        Outcome::Response(429 | 503 | 504) => Some(SampleOutcome::Dropped),
        Outcome::Response(500 | 501) => None,
        Outcome::Response(_) | Outcome::Grpc(_) => Some(SampleOutcome::Success),
        Outcome::Failed(kind) if kind.side() == levee_core::Side::Downstream => None,
        Outcome::Failed(_) => Some(SampleOutcome::Dropped),
    }
}

/// The queue's class for a priority: classes are configured in
/// `Priority::ALL` order, most important first.
fn class_of(priority: Priority) -> ClassId {
    let position = Priority::ALL.iter().position(|p| *p == priority);
    ClassId(position.map_or(DEFAULT_CLASS, |i| i as u8))
}

/// The class of `Priority::Default`.
const DEFAULT_CLASS: u8 = 1;

fn shed(reason: RejectReason, priority: Priority) -> (ErrorKind, String) {
    (
        ErrorKind::Overloaded,
        format!(
            "the cluster is at its concurrency limit: {} request shed ({})",
            priority.name(),
            reason.as_str()
        ),
    )
}
