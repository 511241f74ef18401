//! The admission queue in front of a concurrency limit: who runs next when a
//! slot frees, who waits, and who is told no at once. Priority classes are
//! served in strict order (a lower [`ClassId`] first); inside a class,
//! tenants share by weight through deficit round robin, and a tenant holding
//! more than its quota of the limit is served after tenants within theirs.
//! Each class bounds how long a request may wait, the whole queue bounds how
//! many may wait, and a full queue makes room for more important work by
//! shedding the least important. A request whose deadline would pass before
//! it could be served is refused at once rather than left to time out.
//!
//! A plain struct the proxy drives: it owns the waiting tasks and the limit,
//! and passes in the time, the requests in flight and the limit on each call.

use levee_core::Nanos;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

/// A priority class. Lower is more important: for example 0 critical,
/// 1 default, 2 sheddable. A class beyond the configured ones counts as the
/// last (least important) class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClassId(pub u8);

/// A tenant, as the proxy numbers them (it maps tenant names to ids).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantId(pub u32);

/// A queued request. Unique for the queue's lifetime; later tickets have
/// larger numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ticket(u64);

impl Ticket {
    /// The ticket's number, for logs.
    pub fn get(self) -> u64 {
        self.0
    }
}

/// Limits of one priority class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClassConfig {
    /// Longest a request of this class may wait (zero: it never waits).
    pub max_queue_time: Duration,
    /// Most requests of this class that may wait at once.
    pub max_queue_len: usize,
}

/// How the queue orders, bounds and sheds.
#[derive(Debug, Clone, PartialEq)]
pub struct AdmissionConfig {
    /// The classes, most important first: `classes[0]` is [`ClassId`] 0.
    /// An empty list means one class that never queues.
    pub classes: Vec<ClassConfig>,
    /// Each tenant's weight inside a class; tenants not listed weigh 1, and
    /// a weight of 0 counts as 1.
    pub tenant_weights: HashMap<TenantId, u32>,
    /// Most requests that may wait at once, over all classes.
    pub max_total_len: usize,
    /// The share of the concurrency limit one tenant may hold before it
    /// counts as over quota (its quota is this share of the limit, rounded
    /// up, at least 1). `None`: no quotas.
    pub tenant_quota_share: Option<f64>,
}

/// Why a request was refused or removed from the queue. Every one is
/// answered 503 by the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectReason {
    /// No room, and nothing queued that is less important to make room.
    QueueFull,
    /// Its deadline would pass before it could be served: refused on
    /// arrival, or removed from the queue when that became true.
    DeadlineTooShort,
    /// It was queued, then displaced from the full queue by more important
    /// work: a more important class, or in its own class a tenant within
    /// its quota (it was over), or a tenant with fewer requests waiting for
    /// its weight (its tenant had the most).
    ShedForMoreImportant,
    /// It waited its class's `max_queue_time` (or its class never waits).
    QueueTimeout,
}

impl RejectReason {
    /// The reason as the `levee-error` header and metrics spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::QueueFull => "queue_full",
            RejectReason::DeadlineTooShort => "deadline_too_short",
            RejectReason::ShedForMoreImportant => "shed_for_more_important",
            RejectReason::QueueTimeout => "queue_timeout",
        }
    }
}

/// The answer to [`AdmissionQueue::try_admit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Run now: there is capacity and nothing that should go first is
    /// waiting. It already counts as started for its tenant.
    Admit,
    /// Wait for [`AdmissionQueue::on_release`] to name the ticket.
    Queued {
        /// This request's place in the queue.
        ticket: Ticket,
        /// A less important request displaced to make room, to be answered
        /// with [`RejectReason::ShedForMoreImportant`].
        evicted: Option<Ticket>,
    },
    /// Answer at once.
    Reject(RejectReason),
}

/// What to do after capacity freed ([`AdmissionQueue::on_release`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Released {
    /// Tickets to wake and run, in order. Each already counts as started
    /// for its tenant.
    pub run: Vec<Ticket>,
    /// Tickets removed without running, to be answered with their reason.
    pub shed: Vec<(Ticket, RejectReason)>,
}

/// Weight of each new service-time observation in the running average: a
/// few dozen completions move the estimate, one outlier does not.
const SERVICE_WEIGHT: f64 = 1.0 / 8.0;

/// The admission queue of one concurrency limit.
#[derive(Debug, Clone)]
pub struct AdmissionQueue {
    classes: Vec<ClassQueue>,
    weights: HashMap<TenantId, u32>,
    max_total_len: usize,
    quota_share: Option<f64>,
    /// Every queued request, by ticket number.
    entries: HashMap<u64, Entry>,
    /// Queued requests by when they expire, so expiry never scans.
    expiry: BTreeSet<(Nanos, u64)>,
    /// Requests started and not finished, per tenant (no zero entries).
    in_flight: HashMap<TenantId, u32>,
    /// Running average of service time; `None` until the first observation.
    service_ns: Option<f64>,
    next_ticket: u64,
}

#[derive(Debug, Clone)]
struct ClassQueue {
    config: ClassConfig,
    /// Tenants with requests waiting in this class (no empty flows).
    flows: HashMap<TenantId, Flow>,
    /// The round-robin order of `flows`, keyed by position. A map rather
    /// than a list so that a flow emptied by a cancel or an expiry leaves
    /// the round in O(log n).
    order: BTreeMap<u64, TenantId>,
    next_pos: u64,
    len: usize,
    /// Sum of the weights of `flows`, for the expected wait.
    active_weight: u64,
}

#[derive(Debug, Clone)]
struct Flow {
    /// Waiting tickets; ticket numbers rise, so this is arrival order.
    tickets: BTreeSet<u64>,
    /// Requests this tenant may still be served in its current turn.
    deficit: u32,
    /// Its key in `ClassQueue::order`.
    pos: u64,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    class: usize,
    tenant: TenantId,
    /// When it has waited its class's `max_queue_time`.
    queue_expiry: Nanos,
    deadline: Option<Nanos>,
    /// The earlier of the two: its key in `AdmissionQueue::expiry`.
    expires_at: Nanos,
}

impl Entry {
    fn expiry_reason(&self) -> RejectReason {
        match self.deadline {
            Some(d) if d <= self.queue_expiry => RejectReason::DeadlineTooShort,
            _ => RejectReason::QueueTimeout,
        }
    }
}

fn weight_of(weights: &HashMap<TenantId, u32>, tenant: TenantId) -> u32 {
    weights.get(&tenant).copied().unwrap_or(1).max(1)
}

impl ClassQueue {
    /// Sends the flow at the head of the round to the back, keeping its
    /// deficit.
    fn rotate_front(&mut self) {
        if let Some((_, tenant)) = self.order.pop_first() {
            let pos = self.next_pos;
            self.next_pos += 1;
            self.order.insert(pos, tenant);
            if let Some(flow) = self.flows.get_mut(&tenant) {
                flow.pos = pos;
            }
        }
    }
}

impl AdmissionQueue {
    /// An empty queue.
    pub fn new(config: AdmissionConfig) -> Self {
        let mut classes = config.classes;
        if classes.is_empty() {
            classes.push(ClassConfig {
                max_queue_time: Duration::ZERO,
                max_queue_len: 0,
            });
        }
        Self {
            classes: classes
                .into_iter()
                .map(|config| ClassQueue {
                    config,
                    flows: HashMap::new(),
                    order: BTreeMap::new(),
                    next_pos: 0,
                    len: 0,
                    active_weight: 0,
                })
                .collect(),
            weights: config.tenant_weights,
            max_total_len: config.max_total_len,
            quota_share: config.tenant_quota_share,
            entries: HashMap::new(),
            expiry: BTreeSet::new(),
            in_flight: HashMap::new(),
            service_ns: None,
            next_ticket: 0,
        }
    }

    /// Decides a new request of `class` from `tenant` at `now`, with an
    /// absolute `deadline` if it has one, while `in_flight` requests hold
    /// slots of `limit`.
    ///
    /// It is refused at once if its deadline would pass before it could be
    /// served ([`Self::expected_wait`] plus the service time). It runs at
    /// once if a slot is free and nothing in its class or a more important
    /// one is waiting. Otherwise it queues; when the queue is full it may
    /// displace a less important request, reported in the verdict.
    pub fn try_admit(
        &mut self,
        now: Nanos,
        class: ClassId,
        tenant: TenantId,
        deadline: Option<Nanos>,
        in_flight: u32,
        limit: u32,
    ) -> Verdict {
        let c = self.class_index(class);
        if let Some(deadline) = deadline {
            let needed = self
                .wait_ns(c, tenant, in_flight, limit)
                .saturating_add(self.service_time_ns());
            if deadline <= now || deadline - now < needed {
                return Verdict::Reject(RejectReason::DeadlineTooShort);
            }
        }
        if in_flight < limit && self.waiting_up_to(c) == 0 {
            self.start(tenant);
            return Verdict::Admit;
        }
        let config = self.classes[c].config;
        if config.max_queue_time.is_zero() {
            return Verdict::Reject(RejectReason::QueueTimeout);
        }
        let mut evicted = None;
        if self.classes[c].len >= config.max_queue_len || self.entries.len() >= self.max_total_len {
            match self.displaceable(c, tenant, limit) {
                Some(seq) => {
                    self.remove(seq);
                    evicted = Some(Ticket(seq));
                }
                None => return Verdict::Reject(RejectReason::QueueFull),
            }
        }
        let ticket = self.push(now, c, tenant, deadline);
        Verdict::Queued { ticket, evicted }
    }

    /// Which queued requests run now that `in_flight` requests hold slots
    /// of `limit` at `now`: at most the free slots, the most important
    /// class first, by weighted turns across tenants inside a class, and
    /// tenants within their quota before tenants over it. Expired requests,
    /// and requests whose deadline is now too close to be served, are
    /// shed on the way. Call it after each completion and whenever the
    /// limit may have grown.
    pub fn on_release(&mut self, now: Nanos, in_flight: u32, limit: u32) -> Released {
        let mut out = Released::default();
        self.expire_into(now, &mut out.shed);
        let mut free = limit.saturating_sub(in_flight);
        let service = self.service_time_ns();
        while free > 0 {
            let Some(seq) = self.next_in_line(limit) else {
                break;
            };
            let Some(entry) = self.remove(seq) else {
                break;
            };
            // Running it would spend a slot on an answer nobody waits for.
            if entry
                .deadline
                .is_some_and(|d| d.saturating_sub(now) < service)
            {
                out.shed.push((Ticket(seq), RejectReason::DeadlineTooShort));
                continue;
            }
            self.start(entry.tenant);
            out.run.push(Ticket(seq));
            free -= 1;
        }
        out
    }

    /// Removes the requests that have waited their class's
    /// `max_queue_time` or reached their deadline by `now`, oldest expiry
    /// first.
    pub fn expire(&mut self, now: Nanos) -> Vec<(Ticket, RejectReason)> {
        let mut out = Vec::new();
        self.expire_into(now, &mut out);
        out
    }

    /// When the next queued request expires, for the proxy's timer.
    pub fn next_expiry(&self) -> Option<Nanos> {
        self.expiry.first().map(|(at, _)| *at)
    }

    /// Removes a request whose client went away. False if the ticket is no
    /// longer queued: if [`Self::on_release`] already named it, it counts
    /// as started and its tenant must be [`Self::finished`].
    pub fn cancel(&mut self, ticket: Ticket) -> bool {
        self.remove(ticket.0).is_some()
    }

    /// Records that a request of `tenant` that was admitted or released has
    /// ended (or was never run after all), freeing its share of the quota.
    pub fn finished(&mut self, tenant: TenantId) {
        if let Some(n) = self.in_flight.get_mut(&tenant) {
            *n -= 1;
            if *n == 0 {
                self.in_flight.remove(&tenant);
            }
        }
    }

    /// Records how long a completed request held its slot, for the
    /// expected wait and deadline shedding.
    pub fn observe_service_time(&mut self, ns: u64) {
        let ns = ns as f64;
        self.service_ns = Some(match self.service_ns {
            None => ns,
            Some(avg) => avg + (ns - avg) * SERVICE_WEIGHT,
        });
    }

    /// The running average of service time, in nanoseconds (0 before any
    /// observation).
    pub fn service_time_ns(&self) -> u64 {
        self.service_ns.map_or(0, |avg| avg as u64)
    }

    /// How long, in nanoseconds, a new request of `class` from `tenant`
    /// would wait before running. Every request ahead of it needs a slot,
    /// and slots free at about `limit` per service time. Ahead of it are
    /// all requests of more important classes, and in its own class about
    /// as many as weighted turns serve before its own turn comes (not the
    /// whole class, so a light tenant behind a flood is not refused for the
    /// flood's sake). Requests that arrive later in more important classes
    /// cannot be foreseen.
    pub fn expected_wait(
        &self,
        class: ClassId,
        tenant: TenantId,
        in_flight: u32,
        limit: u32,
    ) -> u64 {
        self.wait_ns(self.class_index(class), tenant, in_flight, limit)
    }

    /// Requests waiting, over all classes.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Requests waiting in `class`.
    pub fn class_len(&self, class: ClassId) -> usize {
        self.classes[self.class_index(class)].len
    }

    /// Whether `ticket` is still waiting.
    pub fn contains(&self, ticket: Ticket) -> bool {
        self.entries.contains_key(&ticket.0)
    }

    /// Requests of `tenant` admitted or released and not yet finished.
    pub fn in_flight(&self, tenant: TenantId) -> u32 {
        self.in_flight.get(&tenant).copied().unwrap_or(0)
    }

    /// Whether `tenant` holds at least its quota of `limit`, so that one
    /// more request would put it over.
    pub fn over_quota(&self, tenant: TenantId, limit: u32) -> bool {
        let Some(share) = self.quota_share else {
            return false;
        };
        let quota = (share * f64::from(limit)).ceil();
        // NaN and negative shares fall to the floor of 1.
        let quota = if quota >= 1.0 { quota as u32 } else { 1 };
        self.in_flight(tenant) >= quota
    }

    fn class_index(&self, class: ClassId) -> usize {
        usize::from(class.0).min(self.classes.len() - 1)
    }

    fn weight(&self, tenant: TenantId) -> u32 {
        weight_of(&self.weights, tenant)
    }

    fn start(&mut self, tenant: TenantId) {
        *self.in_flight.entry(tenant).or_insert(0) += 1;
    }

    /// Requests waiting in class `c` and every more important class.
    fn waiting_up_to(&self, c: usize) -> usize {
        self.classes[..=c].iter().map(|q| q.len).sum()
    }

    fn wait_ns(&self, c: usize, tenant: TenantId, in_flight: u32, limit: u32) -> u64 {
        let more_important: usize = self.classes[..c].iter().map(|q| q.len).sum();
        let queue = &self.classes[c];
        let weight = u64::from(self.weight(tenant));
        let (own, active_weight) = match queue.flows.get(&tenant) {
            Some(flow) => (flow.tickets.len() as u64, queue.active_weight),
            None => (0, queue.active_weight + weight),
        };
        // Its turn comes in round `rounds`; each round serves at most every
        // active tenant's weight.
        let rounds = (own + 1).div_ceil(weight);
        let same_class =
            (queue.len as u64).min(rounds.saturating_mul(active_weight).saturating_sub(1));
        let ahead = more_important as u64 + same_class;
        let free = u64::from(limit.saturating_sub(in_flight));
        let completions = (ahead + 1).saturating_sub(free);
        let wait =
            u128::from(completions) * u128::from(self.service_time_ns()) / u128::from(limit.max(1));
        u64::try_from(wait).unwrap_or(u64::MAX)
    }

    fn push(&mut self, now: Nanos, c: usize, tenant: TenantId, deadline: Option<Nanos>) -> Ticket {
        let seq = self.next_ticket;
        self.next_ticket += 1;
        let weight = self.weight(tenant);
        let queue = &mut self.classes[c];
        let max_wait = u64::try_from(queue.config.max_queue_time.as_nanos()).unwrap_or(u64::MAX);
        let queue_expiry = now.saturating_add(max_wait);
        let expires_at = deadline.map_or(queue_expiry, |d| d.min(queue_expiry));
        let ClassQueue {
            flows,
            order,
            next_pos,
            len,
            active_weight,
            ..
        } = queue;
        let flow = flows.entry(tenant).or_insert_with(|| {
            // A tenant that starts waiting joins the back of the round.
            let pos = *next_pos;
            *next_pos += 1;
            order.insert(pos, tenant);
            *active_weight += u64::from(weight);
            Flow {
                tickets: BTreeSet::new(),
                deficit: 0,
                pos,
            }
        });
        flow.tickets.insert(seq);
        *len += 1;
        self.entries.insert(
            seq,
            Entry {
                class: c,
                tenant,
                queue_expiry,
                deadline,
                expires_at,
            },
        );
        self.expiry.insert((expires_at, seq));
        Ticket(seq)
    }

    fn remove(&mut self, seq: u64) -> Option<Entry> {
        let entry = self.entries.remove(&seq)?;
        self.expiry.remove(&(entry.expires_at, seq));
        let weight = self.weight(entry.tenant);
        let queue = &mut self.classes[entry.class];
        queue.len -= 1;
        if let Some(flow) = queue.flows.get_mut(&entry.tenant) {
            flow.tickets.remove(&seq);
            if flow.tickets.is_empty() {
                // Leaving the round forfeits any deficit, as in DRR: an idle
                // tenant does not bank turns.
                let pos = flow.pos;
                queue.flows.remove(&entry.tenant);
                queue.order.remove(&pos);
                queue.active_weight -= u64::from(weight);
            }
        }
        Some(entry)
    }

    fn expire_into(&mut self, now: Nanos, out: &mut Vec<(Ticket, RejectReason)>) {
        while let Some(&(at, seq)) = self.expiry.first() {
            if at > now {
                break;
            }
            if let Some(entry) = self.remove(seq) {
                out.push((Ticket(seq), entry.expiry_reason()));
            }
        }
    }

    /// Chooses the next ticket to serve and charges its tenant's turn; the
    /// caller removes it.
    fn next_in_line(&mut self, limit: u32) -> Option<u64> {
        let c = self.classes.iter().position(|q| q.len > 0)?;
        // Tenants over quota step aside (to the back of the round, keeping
        // their deficit) while a tenant within quota waits; if all are over,
        // plain turns apply.
        let skip = if self.quota_share.is_some() {
            self.classes[c]
                .order
                .values()
                .position(|t| !self.over_quota(*t, limit))
                .unwrap_or(0)
        } else {
            0
        };
        let queue = &mut self.classes[c];
        for _ in 0..skip {
            queue.rotate_front();
        }
        let tenant = *queue.order.first_key_value()?.1;
        let flow = queue.flows.get_mut(&tenant)?;
        if flow.deficit == 0 {
            // A new turn: with every request costing 1, a tenant is served
            // `weight` requests per round.
            flow.deficit = weight_of(&self.weights, tenant);
        }
        let seq = *flow.tickets.first()?;
        flow.deficit -= 1;
        if flow.deficit == 0 {
            queue.rotate_front();
        }
        Some(seq)
    }

    /// The request to displace so that a new one of class `c` from `tenant`
    /// fits, if the new one is more important. The victim comes from the
    /// new request's class if that class is full, else from the least
    /// important class with anything waiting. Inside that class: a tenant
    /// over quota first, then the tenant with the most requests waiting for
    /// its weight (the flood), its newest request. Scans the tenants waiting
    /// in that class, which only a full queue pays for.
    fn displaceable(&self, c: usize, tenant: TenantId, limit: u32) -> Option<u64> {
        let vc = if self.classes[c].len >= self.classes[c].config.max_queue_len {
            c
        } else {
            self.classes.iter().rposition(|q| q.len > 0)?
        };
        if vc < c {
            return None;
        }
        struct Candidate {
            over: bool,
            backlog: u128,
            weight: u128,
            newest: u64,
        }
        let mut best: Option<Candidate> = None;
        for (t, flow) in &self.classes[vc].flows {
            let Some(&newest) = flow.tickets.last() else {
                continue;
            };
            let cand = Candidate {
                over: self.over_quota(*t, limit),
                backlog: flow.tickets.len() as u128,
                weight: u128::from(self.weight(*t)),
                newest,
            };
            let better = match &best {
                None => true,
                Some(b) => {
                    (cand.over, cand.backlog * b.weight, cand.newest)
                        > (b.over, b.backlog * cand.weight, b.newest)
                }
            };
            if better {
                best = Some(cand);
            }
        }
        let victim = best?;
        if vc > c {
            return Some(victim.newest);
        }
        let victim_tenant = self.entries.get(&victim.newest)?.tenant;
        if victim_tenant == tenant {
            return None;
        }
        let over = self.over_quota(tenant, limit);
        let own = self.classes[c]
            .flows
            .get(&tenant)
            .map_or(0, |f| f.tickets.len()) as u128;
        let weight = u128::from(self.weight(tenant));
        // Displace only what is strictly less entitled, so two tenants
        // cannot take a place back and forth: the victim keeps more waiting
        // for its weight than the newcomer will once it is queued.
        let displace = (victim.over && !over)
            || (victim.over == over && victim.backlog * weight > (own + 1) * victim.weight);
        displace.then_some(victim.newest)
    }

    /// Checks the internal bookkeeping agrees with itself.
    #[cfg(test)]
    fn check_invariants(&self) {
        assert!(self.entries.len() <= self.max_total_len);
        assert_eq!(self.expiry.len(), self.entries.len());
        let mut total = 0;
        for (c, queue) in self.classes.iter().enumerate() {
            assert!(queue.len <= queue.config.max_queue_len);
            let in_flows: usize = queue.flows.values().map(|f| f.tickets.len()).sum();
            assert_eq!(in_flows, queue.len);
            assert_eq!(queue.order.len(), queue.flows.len());
            let weights: u64 = queue.flows.keys().map(|t| u64::from(self.weight(*t))).sum();
            assert_eq!(weights, queue.active_weight);
            for (t, flow) in &queue.flows {
                assert!(!flow.tickets.is_empty());
                assert_eq!(queue.order.get(&flow.pos), Some(t));
                assert!(flow.deficit <= self.weight(*t));
                for seq in &flow.tickets {
                    let e = &self.entries[seq];
                    assert_eq!((e.class, e.tenant), (c, *t));
                }
            }
            total += queue.len;
        }
        assert_eq!(total, self.entries.len());
        assert!(self.in_flight.values().all(|n| *n > 0));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MS: u64 = 1_000_000;
    const A: TenantId = TenantId(1);
    const B: TenantId = TenantId(2);
    const C: TenantId = TenantId(3);

    fn class(ms: u64, len: usize) -> ClassConfig {
        ClassConfig {
            max_queue_time: Duration::from_millis(ms),
            max_queue_len: len,
        }
    }

    /// Three classes (critical, default, sheddable), roomy, no quotas.
    fn config() -> AdmissionConfig {
        AdmissionConfig {
            classes: vec![class(1_000, 100), class(1_000, 100), class(1_000, 100)],
            tenant_weights: HashMap::new(),
            max_total_len: 100,
            tenant_quota_share: None,
        }
    }

    fn queued(v: Verdict) -> Ticket {
        match v {
            Verdict::Queued { ticket, .. } => ticket,
            other => panic!("expected to queue, got {other:?}"),
        }
    }

    /// Releases one slot and returns whom it went to.
    fn release_one(q: &mut AdmissionQueue, now: Nanos) -> Option<Ticket> {
        let r = q.on_release(now, 0, 1);
        assert!(r.run.len() <= 1);
        r.run.first().copied()
    }

    #[test]
    fn admits_while_there_is_capacity_and_nobody_waits() {
        let mut q = AdmissionQueue::new(config());
        assert_eq!(q.try_admit(0, ClassId(1), A, None, 0, 2), Verdict::Admit);
        assert_eq!(q.try_admit(0, ClassId(1), A, None, 1, 2), Verdict::Admit);
        assert_eq!(q.in_flight(A), 2);
        let t = queued(q.try_admit(0, ClassId(1), A, None, 2, 2));
        // A slot frees, but the waiting request goes first: a newcomer does
        // not jump the queue even if it arrives before on_release.
        q.finished(A);
        assert!(matches!(
            q.try_admit(0, ClassId(1), B, None, 1, 2),
            Verdict::Queued { .. }
        ));
        let r = q.on_release(0, 1, 2);
        assert_eq!(r.run, vec![t]);
        // A less important class does not hold back a more important one.
        let mut q = AdmissionQueue::new(config());
        queued(q.try_admit(0, ClassId(2), A, None, 1, 1));
        assert_eq!(q.try_admit(0, ClassId(0), A, None, 0, 1), Verdict::Admit);
    }

    #[test]
    fn strict_priority_between_classes() {
        let mut q = AdmissionQueue::new(config());
        let low: Vec<Ticket> = (0..3)
            .map(|_| queued(q.try_admit(0, ClassId(2), A, None, 1, 1)))
            .collect();
        let mid = queued(q.try_admit(1, ClassId(1), B, None, 1, 1));
        let high = queued(q.try_admit(2, ClassId(0), C, None, 1, 1));
        let order: Vec<Ticket> = (0..5).filter_map(|_| release_one(&mut q, 3)).collect();
        assert_eq!(order, [vec![high, mid], low].concat());
        assert!(q.is_empty());
        // An unknown class counts as the least important.
        let t = queued(q.try_admit(4, ClassId(9), A, None, 1, 1));
        assert_eq!(q.class_len(ClassId(2)), 1);
        assert!(q.contains(t));
    }

    #[test]
    fn tenants_take_weighted_turns() {
        let mut q = AdmissionQueue::new(AdmissionConfig {
            tenant_weights: HashMap::from([(A, 3)]),
            ..config()
        });
        let mut tenant_of = HashMap::new();
        for i in 0..8 {
            tenant_of.insert(queued(q.try_admit(i, ClassId(1), A, None, 1, 1)), 'A');
            tenant_of.insert(queued(q.try_admit(i, ClassId(1), B, None, 1, 1)), 'B');
        }
        let served: String = (0..16)
            .filter_map(|_| release_one(&mut q, 10))
            .map(|t| tenant_of[&t])
            .collect();
        assert_eq!(served, "AAABAAABAABBBBBB");
    }

    #[test]
    fn a_flood_does_not_starve_a_light_tenant() {
        let mut q = AdmissionQueue::new(AdmissionConfig {
            max_total_len: 1_000,
            classes: vec![class(1_000, 1_000)],
            ..config()
        });
        for _ in 0..900 {
            queued(q.try_admit(0, ClassId(0), A, None, 1, 1));
        }
        release_one(&mut q, 1);
        let b = queued(q.try_admit(2, ClassId(0), B, None, 1, 1));
        let position = (1..=3).find(|_| release_one(&mut q, 3) == Some(b));
        assert!(position.is_some_and(|p| p <= 2), "{position:?}");
    }

    #[test]
    fn waiting_too_long_expires() {
        let mut q = AdmissionQueue::new(AdmissionConfig {
            classes: vec![class(100, 10), class(500, 10)],
            ..config()
        });
        let fast = queued(q.try_admit(0, ClassId(0), A, None, 1, 1));
        let slow = queued(q.try_admit(0, ClassId(1), A, None, 1, 1));
        let by_deadline = queued(q.try_admit(10, ClassId(1), B, Some(60 * MS), 1, 1));
        assert_eq!(q.next_expiry(), Some(60 * MS));
        assert_eq!(q.expire(59 * MS), vec![]);
        assert_eq!(
            q.expire(60 * MS),
            vec![(by_deadline, RejectReason::DeadlineTooShort)]
        );
        assert_eq!(q.expire(99 * MS), vec![]);
        assert_eq!(q.expire(100 * MS), vec![(fast, RejectReason::QueueTimeout)]);
        // on_release sheds what expired before it hands out slots.
        let r = q.on_release(500 * MS, 0, 1);
        assert_eq!(r.shed, vec![(slow, RejectReason::QueueTimeout)]);
        assert!(r.run.is_empty() && q.is_empty() && q.next_expiry().is_none());
        assert_eq!(q.in_flight(A), 0, "shed requests do not count as started");
        // A class that never waits refuses instead of queueing.
        let mut q = AdmissionQueue::new(AdmissionConfig {
            classes: vec![class(0, 10)],
            ..config()
        });
        assert_eq!(
            q.try_admit(0, ClassId(0), A, None, 1, 1),
            Verdict::Reject(RejectReason::QueueTimeout)
        );
    }

    #[test]
    fn deadlines_too_short_for_the_expected_wait_are_refused_at_once() {
        let mut q = AdmissionQueue::new(config());
        q.observe_service_time(10 * MS);
        assert_eq!(q.service_time_ns(), 10 * MS);
        // Idle: the request needs only its own service time.
        assert_eq!(
            q.try_admit(0, ClassId(1), A, Some(9 * MS), 0, 2),
            Verdict::Reject(RejectReason::DeadlineTooShort)
        );
        assert_eq!(
            q.try_admit(0, ClassId(1), A, Some(10 * MS), 0, 2),
            Verdict::Admit
        );
        // Four waiting, two slots busy: five completions at two per 10 ms
        // is 25 ms of waiting, plus 10 ms of service.
        for _ in 0..4 {
            queued(q.try_admit(0, ClassId(1), A, None, 2, 2));
        }
        assert_eq!(q.expected_wait(ClassId(1), A, 2, 2), 25 * MS);
        assert_eq!(
            q.try_admit(0, ClassId(1), A, Some(34 * MS), 2, 2),
            Verdict::Reject(RejectReason::DeadlineTooShort)
        );
        queued(q.try_admit(0, ClassId(1), A, Some(35 * MS), 2, 2));
        // Another tenant's turn comes after one of A's, not after all five.
        assert_eq!(q.expected_wait(ClassId(1), B, 2, 2), 10 * MS);
        queued(q.try_admit(0, ClassId(1), B, Some(20 * MS), 2, 2));
        // A more important class waits only for its own kind.
        assert_eq!(q.expected_wait(ClassId(0), A, 2, 2), 5 * MS);
        // A less important class waits for all six ahead, plus a slot.
        assert_eq!(q.expected_wait(ClassId(2), A, 2, 2), 35 * MS);
        // A deadline already past is refused even with no estimate.
        let mut q = AdmissionQueue::new(config());
        assert_eq!(
            q.try_admit(5, ClassId(1), A, Some(5), 0, 1),
            Verdict::Reject(RejectReason::DeadlineTooShort)
        );
    }

    #[test]
    fn release_sheds_requests_whose_deadline_got_too_close() {
        let mut q = AdmissionQueue::new(config());
        q.observe_service_time(10 * MS);
        let doomed = queued(q.try_admit(0, ClassId(1), A, Some(50 * MS), 1, 1));
        let fine = queued(q.try_admit(0, ClassId(1), B, None, 1, 1));
        let r = q.on_release(45 * MS, 0, 1);
        assert_eq!(r.shed, vec![(doomed, RejectReason::DeadlineTooShort)]);
        assert_eq!(r.run, vec![fine], "the slot still goes to someone");
    }

    #[test]
    fn a_full_queue_sheds_less_important_work() {
        let mut q = AdmissionQueue::new(AdmissionConfig {
            max_total_len: 4,
            ..config()
        });
        let low1 = queued(q.try_admit(0, ClassId(2), A, None, 1, 1));
        let low2 = queued(q.try_admit(0, ClassId(2), B, None, 1, 1));
        let mid = queued(q.try_admit(0, ClassId(1), A, None, 1, 1));
        let high = queued(q.try_admit(0, ClassId(0), A, None, 1, 1));
        // As important as the least important waiting, and no tenant there
        // holds more than its share: no room.
        assert_eq!(
            q.try_admit(0, ClassId(2), C, None, 1, 1),
            Verdict::Reject(RejectReason::QueueFull)
        );
        // More important: the newest of the least important class goes.
        let v = q.try_admit(0, ClassId(1), B, None, 1, 1);
        assert!(matches!(v, Verdict::Queued { evicted: Some(t), .. } if t == low2));
        let v = q.try_admit(0, ClassId(0), B, None, 1, 1);
        assert!(matches!(v, Verdict::Queued { evicted: Some(t), .. } if t == low1));
        assert_eq!(q.len(), 4);
        assert!(!q.contains(low1) && q.contains(mid) && q.contains(high));
        // Class-0 requests fill the queue; nothing less important is left.
        queued(q.try_admit(0, ClassId(0), C, None, 1, 1));
        queued(q.try_admit(0, ClassId(0), C, None, 1, 1));
        assert_eq!(q.class_len(ClassId(1)), 0);
        // A full class refuses its own kind even when the total has room.
        let mut q = AdmissionQueue::new(AdmissionConfig {
            classes: vec![class(1_000, 1), class(1_000, 10)],
            ..config()
        });
        queued(q.try_admit(0, ClassId(0), A, None, 1, 1));
        assert_eq!(
            q.try_admit(0, ClassId(0), A, None, 1, 1),
            Verdict::Reject(RejectReason::QueueFull)
        );
    }

    #[test]
    fn a_full_class_sheds_the_flood_for_a_light_tenant() {
        let mut q = AdmissionQueue::new(AdmissionConfig {
            classes: vec![class(1_000, 6)],
            ..config()
        });
        let flood: Vec<Ticket> = (0..6)
            .map(|_| queued(q.try_admit(0, ClassId(0), A, None, 1, 1)))
            .collect();
        assert_eq!(
            q.try_admit(0, ClassId(0), A, None, 1, 1),
            Verdict::Reject(RejectReason::QueueFull),
            "a tenant never displaces itself"
        );
        // B takes places from A's newest until they hold equal shares.
        for i in 0..3 {
            let v = q.try_admit(0, ClassId(0), B, None, 1, 1);
            assert!(
                matches!(v, Verdict::Queued { evicted: Some(t), .. } if t == flood[5 - i]),
                "{v:?}"
            );
        }
        assert_eq!(
            q.try_admit(0, ClassId(0), B, None, 1, 1),
            Verdict::Reject(RejectReason::QueueFull)
        );
    }

    #[test]
    fn over_quota_tenants_are_served_and_shed_first_and_last() {
        // Limit 4, quota 50%: a tenant holding 2 is at its quota.
        let mut q = AdmissionQueue::new(AdmissionConfig {
            tenant_quota_share: Some(0.5),
            max_total_len: 3,
            ..config()
        });
        assert_eq!(q.try_admit(0, ClassId(1), A, None, 0, 4), Verdict::Admit);
        assert_eq!(q.try_admit(0, ClassId(1), A, None, 1, 4), Verdict::Admit);
        assert_eq!(q.try_admit(0, ClassId(1), B, None, 2, 4), Verdict::Admit);
        assert_eq!(q.try_admit(0, ClassId(1), C, None, 3, 4), Verdict::Admit);
        assert!(q.over_quota(A, 4) && !q.over_quota(B, 4));
        let a1 = queued(q.try_admit(0, ClassId(1), A, None, 4, 4));
        let a2 = queued(q.try_admit(0, ClassId(1), A, None, 4, 4));
        let b1 = queued(q.try_admit(0, ClassId(1), B, None, 4, 4));
        // Full: a within-quota tenant displaces the over-quota one's newest.
        let v = q.try_admit(0, ClassId(1), C, None, 4, 4);
        assert_eq!(
            v,
            Verdict::Queued {
                ticket: Ticket(3),
                evicted: Some(a2)
            }
        );
        let c1 = Ticket(3);
        // But an over-quota tenant cannot displace anyone in its class.
        assert_eq!(
            q.try_admit(0, ClassId(1), A, None, 4, 4),
            Verdict::Reject(RejectReason::QueueFull)
        );
        // B finishes: A waited first, but B and C are within quota.
        q.finished(B);
        assert_eq!(q.on_release(0, 3, 4).run, vec![b1]);
        q.finished(C);
        assert_eq!(q.on_release(0, 3, 4).run, vec![c1]);
        // Only A is left waiting: over quota, it still gets a free slot.
        assert!(q.over_quota(A, 4));
        assert_eq!(q.on_release(0, 3, 4).run, vec![a1]);
        assert_eq!(q.in_flight(A), 3);
        assert!(q.is_empty());
        q.check_invariants();
    }

    #[test]
    fn release_fills_every_free_slot_and_counts_quotas_as_it_goes() {
        let mut q = AdmissionQueue::new(AdmissionConfig {
            tenant_quota_share: Some(0.25),
            ..config()
        });
        let a: Vec<Ticket> = (0..3)
            .map(|_| queued(q.try_admit(0, ClassId(1), A, None, 4, 4)))
            .collect();
        let b = queued(q.try_admit(0, ClassId(1), B, None, 4, 4));
        // Four slots free; quota is one each. A's first makes A over quota,
        // so B goes next, then A's rest (all over quota: plain turns).
        let r = q.on_release(0, 0, 4);
        assert_eq!(r.run, vec![a[0], b, a[1], a[2]]);
        assert_eq!((q.in_flight(A), q.in_flight(B)), (3, 1));
    }

    #[test]
    fn cancel_removes_a_waiting_request() {
        let mut q = AdmissionQueue::new(config());
        let a = queued(q.try_admit(0, ClassId(1), A, None, 1, 1));
        let b = queued(q.try_admit(0, ClassId(1), B, None, 1, 1));
        assert!(q.cancel(a));
        assert!(!q.cancel(a), "only once");
        assert_eq!(q.len(), 1);
        assert_eq!(release_one(&mut q, 0), Some(b));
        assert!(!q.cancel(b), "already running: the caller must finish it");
        assert_eq!(q.in_flight(B), 1);
        q.finished(B);
        q.finished(B);
        assert_eq!(q.in_flight(B), 0);
        q.check_invariants();
    }

    #[test]
    fn service_time_is_a_running_average() {
        let mut q = AdmissionQueue::new(config());
        assert_eq!(q.service_time_ns(), 0);
        q.observe_service_time(80 * MS);
        q.observe_service_time(0);
        assert_eq!(q.service_time_ns(), 70 * MS);
    }

    #[test]
    fn no_classes_means_no_queueing() {
        let mut q = AdmissionQueue::new(AdmissionConfig {
            classes: Vec::new(),
            ..config()
        });
        assert_eq!(q.try_admit(0, ClassId(0), A, None, 0, 1), Verdict::Admit);
        assert!(matches!(
            q.try_admit(0, ClassId(3), A, None, 1, 1),
            Verdict::Reject(_)
        ));
    }

    proptest! {
        /// Two tenants continuously backlogged in one class: after any
        /// prefix of n dequeues, each has been served within max(w1, w2) of
        /// its share of n by weight (the fluid model, where tenant i gets
        /// exactly n·wi/(w1+w2)).
        #[test]
        fn weighted_shares_stay_close_to_the_fluid_model(
            w1 in 1u32..10,
            w2 in 1u32..10,
            arrivals in prop::collection::vec(any::<bool>(), 0..40),
            n in 1usize..300,
        ) {
            let mut q = AdmissionQueue::new(AdmissionConfig {
                classes: vec![class(1_000, 1_000)],
                tenant_weights: HashMap::from([(A, w1), (B, w2)]),
                max_total_len: 1_000,
                tenant_quota_share: None,
            });
            let mut tenant_of = HashMap::new();
            // Random arrival order first (it decides who starts), then
            // enough of both that neither runs dry.
            let order = arrivals.into_iter().chain((0..2 * n).map(|i| i % 2 == 0));
            for is_a in order {
                let t = if is_a { A } else { B };
                tenant_of.insert(queued(q.try_admit(0, ClassId(0), t, None, 1, 1)), t);
            }
            let backlog = |q: &AdmissionQueue, t: TenantId| q.classes[0].flows.get(&t).map_or(0, |f| f.tickets.len());
            let (mut s1, mut s2) = (0i64, 0i64);
            let total = i64::from(w1 + w2);
            let bound = i64::from(w1.max(w2)) * total;
            for k in 1..=n as i64 {
                prop_assert!(backlog(&q, A) > 0 && backlog(&q, B) > 0);
                let t = release_one(&mut q, 1).unwrap();
                if tenant_of[&t] == A { s1 += 1 } else { s2 += 1 }
                prop_assert!((s1 * total - k * i64::from(w1)).abs() <= bound, "A served {} of {}", s1, k);
                prop_assert!((s2 * total - k * i64::from(w2)).abs() <= bound, "B served {} of {}", s2, k);
            }
        }

        /// However hard one tenant floods a class, and whatever the other
        /// tenants' weights, a request from a tenant with nothing waiting is
        /// served within the sum of the others' weights plus one dequeues.
        #[test]
        fn a_newcomer_is_served_within_one_round(
            weights in prop::collection::vec(1u32..8, 1..6),
            flood in 1usize..300,
            others in prop::collection::vec(0usize..20, 6),
            before in 0usize..100,
            newcomer_weight in 1u32..8,
        ) {
            let newcomer = TenantId(99);
            let mut tenant_weights: HashMap<TenantId, u32> = weights
                .iter()
                .enumerate()
                .map(|(i, w)| (TenantId(i as u32), *w))
                .collect();
            tenant_weights.insert(newcomer, newcomer_weight);
            let mut q = AdmissionQueue::new(AdmissionConfig {
                classes: vec![class(1_000, 10_000)],
                tenant_weights,
                max_total_len: 10_000,
                tenant_quota_share: None,
            });
            for _ in 0..flood {
                queued(q.try_admit(0, ClassId(0), TenantId(0), None, 1, 1));
            }
            for (i, n) in others.iter().enumerate().take(weights.len()).skip(1) {
                for _ in 0..*n {
                    queued(q.try_admit(0, ClassId(0), TenantId(i as u32), None, 1, 1));
                }
            }
            for _ in 0..before {
                release_one(&mut q, 1);
            }
            let t = queued(q.try_admit(2, ClassId(0), newcomer, None, 1, 1));
            let bound = weights.iter().sum::<u32>() as usize + 1;
            let served_at = (1..=bound).find(|_| release_one(&mut q, 3) == Some(t));
            prop_assert!(served_at.is_some(), "not served within {} dequeues", bound);
        }

        /// Under any sequence of operations the queue stays within its
        /// bounds and agrees with a naive model that keeps every waiting
        /// ticket in a list: a ticket leaves exactly once (run, shed,
        /// expired, evicted or cancelled), released tickets come from the
        /// most important class waiting, and nothing runs beyond the free
        /// slots.
        #[test]
        fn bounded_and_consistent_under_any_operations(
            ops in prop::collection::vec((0u8..6, 0u8..4, 0u32..4, 0u64..50, 0u32..5), 1..300),
            quota in prop::option::of(0.1f64..1.0),
            total in 0usize..12,
        ) {
            let mut q = AdmissionQueue::new(AdmissionConfig {
                classes: vec![class(40, 5), class(60, 8), class(100, 8)],
                tenant_weights: HashMap::from([(TenantId(0), 3), (TenantId(1), 2)]),
                max_total_len: total,
                tenant_quota_share: quota,
            });
            // The naive model: waiting tickets with their class and tenant.
            let mut waiting: Vec<(Ticket, usize, TenantId)> = Vec::new();
            let mut running: Vec<TenantId> = Vec::new();
            let limit = 3u32;
            let mut now = 0;
            let leave = |waiting: &mut Vec<(Ticket, usize, TenantId)>, t: Ticket| {
                let i = waiting.iter().position(|w| w.0 == t).expect("left once");
                waiting.remove(i)
            };
            for (op, c, tenant, dt, x) in ops {
                now += dt * MS;
                let tenant = TenantId(tenant);
                let in_flight = running.len() as u32;
                match op {
                    0 | 1 => {
                        let deadline = (x > 0).then(|| now + u64::from(x) * 20 * MS);
                        match q.try_admit(now, ClassId(c), tenant, deadline, in_flight, limit) {
                            Verdict::Admit => {
                                prop_assert!(in_flight < limit);
                                let c = usize::from(c).min(2);
                                prop_assert!(waiting.iter().all(|w| w.1 > c));
                                running.push(tenant);
                            }
                            Verdict::Queued { ticket, evicted } => {
                                if let Some(e) = evicted {
                                    leave(&mut waiting, e);
                                }
                                waiting.push((ticket, usize::from(c).min(2), tenant));
                            }
                            Verdict::Reject(_) => {}
                        }
                    }
                    2 => {
                        let r = q.on_release(now, in_flight, limit);
                        prop_assert!(r.run.len() as u32 <= limit - in_flight);
                        for (t, _) in &r.shed {
                            leave(&mut waiting, *t);
                        }
                        let mut ran = Vec::new();
                        for t in &r.run {
                            let w = leave(&mut waiting, *t);
                            running.push(w.2);
                            ran.push(w);
                        }
                        for r in &ran {
                            prop_assert!(waiting.iter().all(|w| w.1 >= r.1), "strict priority");
                        }
                        // Either every slot is used or nobody waits.
                        prop_assert!(running.len() as u32 == limit || waiting.is_empty());
                    }
                    3 => {
                        for (t, _) in q.expire(now) {
                            leave(&mut waiting, t);
                        }
                        prop_assert!(q.next_expiry().is_none_or(|at| at > now));
                    }
                    4 => {
                        if !waiting.is_empty() {
                            let t = waiting[x as usize % waiting.len()].0;
                            prop_assert!(q.cancel(t));
                            leave(&mut waiting, t);
                        }
                    }
                    _ => {
                        if !running.is_empty() {
                            let t = running.remove(x as usize % running.len());
                            q.finished(t);
                            q.observe_service_time(u64::from(x) * 5 * MS);
                        }
                    }
                }
                q.check_invariants();
                prop_assert!(q.len() <= total);
                prop_assert_eq!(q.len(), waiting.len());
                for w in &waiting {
                    prop_assert!(q.contains(w.0));
                }
                for t in 0..4 {
                    let n = running.iter().filter(|r| r.0 == t).count() as u32;
                    prop_assert_eq!(q.in_flight(TenantId(t)), n);
                }
            }
        }
    }
}
