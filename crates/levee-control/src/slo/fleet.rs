//! SLOs for a fleet (`[fleet]`, with `[redis]`): several gateways count as
//! one. Each tick every replica adds the events it drained to the fleet's
//! bucket in Redis (`HINCRBY` on `levee:fleet:{name}:slo:{bucket end}`,
//! fields `{objective}:g` and `{objective}:t`), then evaluates the bucket
//! before it, which every replica has finished writing by then: so every
//! replica's buckets, burn rates, alert states and report are the
//! fleet's, and identical, one evaluation interval behind a single
//! gateway's.
//!
//! Pages are sent once: one replica leads (a lease in Redis that expires
//! when it dies) and only it sends; each notification is also claimed with
//! `SET NX` under a key naming its objective, severity and transition
//! time, so a new leader that replays what the others decided meanwhile
//! (they keep it for two leases) sends only what the old leader had not:
//! no page is lost or sent twice across a hand-over (a leader that dies
//! between its claim and its send loses that one page).
//!
//! Redis being away never stops counting: events that cannot be shared
//! are put back in the counters and shared with the next bucket; a bucket
//! whose totals cannot be read is evaluated empty on this replica; and
//! with no one able to know who leads, every replica sends its pages.

use crate::notify::Notification;
use levee_core::Nanos;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// How long a fleet bucket is kept in Redis: the longest alert window of
/// the workbook's policy (3 days) and an hour more.
const BUCKET_TTL: Duration = Duration::from_secs(3 * 86_400 + 3600);
/// How long a notification's claim is kept.
const CLAIM_TTL: Duration = Duration::from_secs(86_400);

/// This replica's part in the fleet's SLO evaluation.
#[derive(Debug)]
pub(crate) struct SloFleet {
    link: crate::fleet::Link,
    name: String,
    lease: Duration,
    leading: AtomicBool,
    /// Notifications decided while not leading, by when: a new leader
    /// sends those nobody claimed.
    undelivered: Mutex<VecDeque<(Nanos, Notification)>>,
}

impl SloFleet {
    /// Joins `fleet` through `redis`; `None` when Redis cannot be reached
    /// (the gateway then evaluates alone, and says so).
    pub(crate) async fn join(
        fleet: &levee_config::Fleet,
        redis: &levee_config::Redis,
    ) -> Option<Self> {
        let link = crate::fleet::Link::connect(redis).await?;
        tracing::info!(fleet = %fleet.name, instance = %link.instance, "SLOs counted with the fleet through Redis");
        Some(Self {
            link,
            name: fleet.name.clone(),
            lease: fleet.lease,
            leading: AtomicBool::new(false),
            undelivered: Mutex::new(VecDeque::new()),
        })
    }

    fn key(&self, what: &str) -> String {
        format!("levee:fleet:{}:slo:{what}", self.name)
    }

    /// Adds this replica's `counts` (objective, good, total) to the fleet's
    /// bucket ending at `end`; false when Redis did not take them.
    pub(crate) async fn share(&self, end: Nanos, counts: &[(String, u64, u64)]) -> bool {
        let counts: Vec<_> = counts.iter().filter(|(_, _, t)| *t > 0).collect();
        if counts.is_empty() {
            return true;
        }
        let key = self.key(&end.to_string());
        let mut pipe = redis::pipe();
        pipe.atomic();
        for (id, good, total) in counts {
            pipe.cmd("HINCRBY")
                .arg(&key)
                .arg(format!("{id}:g"))
                .arg(*good)
                .ignore()
                .cmd("HINCRBY")
                .arg(&key)
                .arg(format!("{id}:t"))
                .arg(*total)
                .ignore();
        }
        pipe.cmd("PEXPIRE")
            .arg(&key)
            .arg(BUCKET_TTL.as_millis() as u64)
            .ignore();
        self.link.pipe::<()>(&pipe).await.is_some()
    }

    /// The fleet's events of the bucket ending at `end`, by objective.
    pub(crate) async fn totals(&self, end: Nanos) -> Option<HashMap<String, (u64, u64)>> {
        let fields: HashMap<String, u64> = self
            .link
            .run(redis::cmd("HGETALL").arg(self.key(&end.to_string())))
            .await?;
        let mut out: HashMap<String, (u64, u64)> = HashMap::new();
        for (field, n) in fields {
            let Some((id, kind)) = field.rsplit_once(':') else {
                continue;
            };
            let entry = out.entry(id.to_string()).or_default();
            match kind {
                "g" => entry.0 = n,
                "t" => entry.1 = n,
                _ => {}
            }
        }
        Some(out)
    }

    /// The claim of one notification: its objective, severity and the
    /// transition's time, which every replica computes alike.
    fn claim_key(&self, n: &Notification) -> String {
        let at = if n.firing {
            n.starts_at
        } else {
            n.ends_at.unwrap_or(n.starts_at)
        };
        self.key(&format!(
            "sent:{}:{}:{}:{at}",
            n.slo,
            n.severity.name(),
            if n.firing { "firing" } else { "resolved" }
        ))
    }

    /// Whether this replica may send `n`: it claimed it first, or Redis
    /// did not answer (a page sent twice beats a page lost).
    async fn claim(&self, n: &Notification) -> bool {
        let claimed: Option<redis::Value> = self
            .link
            .run(
                redis::cmd("SET")
                    .arg(self.claim_key(n))
                    .arg(&self.link.instance)
                    .arg("NX")
                    .arg("PX")
                    .arg(CLAIM_TTL.as_millis() as u64),
            )
            .await;
        !matches!(claimed, Some(redis::Value::Nil))
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// Whether this replica led at its last tick.
    pub(crate) fn leads(&self) -> bool {
        self.leading.load(Ordering::Relaxed)
    }

    /// Sends what this tick decided, if this replica leads: refreshes as
    /// they are, pages and resolutions once for the fleet. A replica that
    /// does not lead keeps them for a later leader.
    pub(crate) async fn dispatch(
        &self,
        notifications: Vec<Notification>,
        at: Nanos,
        send: impl Fn(Notification),
    ) {
        let was = self.leading.load(Ordering::Relaxed);
        // Redis away: no one can know who leads, so every replica sends
        // (a page twice rather than none).
        let leads = self
            .link
            .try_lead(&self.key("leader"), self.lease)
            .await
            .unwrap_or(true);
        self.leading.store(leads, Ordering::Relaxed);
        if leads != was {
            tracing::info!(fleet = %self.name, instance = %self.link.instance, leads, "SLO evaluation leadership changed");
        }
        let mut pending = Vec::new();
        {
            let mut kept = self.undelivered.lock().unwrap_or_else(|e| e.into_inner());
            let horizon = at.saturating_sub(2 * self.lease.as_nanos() as u64);
            while kept.front().is_some_and(|(t, _)| *t < horizon) {
                kept.pop_front();
            }
            if leads {
                // What the others decided while another led (or none
                // did): sent unless already claimed.
                pending.extend(kept.drain(..).map(|(_, n)| n));
            } else {
                for n in notifications.into_iter().filter(|n| !n.refresh) {
                    kept.push_back((at, n));
                }
                return;
            }
        }
        pending.extend(notifications);
        for n in pending {
            if n.refresh || self.claim(&n).await {
                send(n);
            }
        }
    }

    /// Gives the lease up (a clean shutdown).
    pub(crate) async fn resign(&self) {
        self.link.resign(&self.key("leader")).await;
    }
}
