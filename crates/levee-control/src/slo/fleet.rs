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
//! A replica that joins (or restarts) takes the fleet's state before its
//! first evaluation: the buckets it missed, from the first one the fleet
//! counted (`since`) or the end of its own history, and what the leader
//! last published after its tick (`state`: every alert's state and the
//! recent incidents), so it evaluates exactly as the others do from then
//! on. Incidents are numbered for the fleet: every replica that opens the
//! incident of one firing gets the same id from Redis (`incident:{slo}:
//! {detect}`, allocated from `incident_seq` once, by a script). Operators'
//! actions taken on any replica go to a stream (`actions`) every replica
//! reads each tick, behind a check that the incident's next place in its
//! log is still free (`actions:{id}`), so two operators acknowledging on
//! two replicas at once get one acknowledgement and one conflict.
//!
//! Redis being away never stops counting: events that cannot be shared
//! are put back in the counters and shared with the next bucket; a bucket
//! whose totals cannot be read is evaluated empty on this replica; and
//! with no one able to know who leads, every replica sends its pages.

use crate::notify::Notification;
use levee_core::Nanos;
use levee_store::{AlertRow, IncidentActionRow, IncidentRow};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// How long a fleet bucket is kept in Redis: the longest alert window of
/// the workbook's policy (3 days) and an hour more.
pub(super) const BUCKET_TTL: Duration = Duration::from_secs(3 * 86_400 + 3600);
/// How long a notification's claim is kept.
const CLAIM_TTL: Duration = Duration::from_secs(86_400);
/// How long the fleet's incident numbers, published state and operators'
/// actions are kept without a change: a month.
const HISTORY_TTL: Duration = Duration::from_secs(31 * 86_400);
/// Operators' actions the stream keeps (roughly: trimmed with `~`).
const ACTIONS_KEPT: u64 = 10_000;
/// Buckets read in one round trip when catching up.
const BUCKETS_PER_READ: usize = 512;

/// The incident of one firing, numbered once for the fleet: the first
/// replica to ask allocates the next number (never below `ARGV[1]`, this
/// replica's own next number, so ids from before the fleet stay unique).
const INCIDENT_ID_LUA: &str = r#"
local id = redis.call('GET', KEYS[1])
if id then return tonumber(id) end
local n = redis.call('INCR', KEYS[2])
local floor = tonumber(ARGV[1])
if n < floor then
  n = floor
  redis.call('SET', KEYS[2], n)
end
redis.call('SET', KEYS[1], n, 'PX', ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return n
"#;

/// Appends an operator's action if the incident's next place (`KEYS[1]`)
/// is still `ARGV[1]`; 0 when another replica took it first.
const ACTION_LUA: &str = r#"
local next = tonumber(redis.call('GET', KEYS[1]) or '0')
if next ~= tonumber(ARGV[1]) then return 0 end
redis.call('SET', KEYS[1], next + 1, 'PX', ARGV[3])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], '*', 'row', ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
return 1
"#;

/// What the leader publishes after each tick, for replicas that join: the
/// end of the bucket it evaluated, every alert's state, and the incidents
/// still changing or recent.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub(crate) struct Published {
    pub(crate) end: Nanos,
    pub(crate) alerts: Vec<AlertRow>,
    pub(crate) incidents: Vec<IncidentRow>,
}

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
    /// The last operators' action read from the stream ("0": none yet).
    actions_read: Mutex<String>,
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
            actions_read: Mutex::new("0".to_string()),
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
        // The first bucket the fleet counted: where a replica that joins
        // starts catching up.
        pipe.cmd("SET")
            .arg(self.key("since"))
            .arg(end)
            .arg("NX")
            .ignore();
        self.link.pipe::<()>(&pipe).await.is_some()
    }

    /// The end of the first bucket the fleet counted, if any.
    pub(crate) async fn since(&self) -> Option<Nanos> {
        self.link
            .run::<Option<Nanos>>(redis::cmd("GET").arg(self.key("since")))
            .await
            .flatten()
    }

    /// The fleet's buckets ending at `ends`, in order, with their events
    /// by objective; `None` when Redis did not answer them all.
    pub(crate) async fn history(
        &self,
        ends: impl Iterator<Item = Nanos>,
    ) -> Option<Vec<(Nanos, HashMap<String, (u64, u64)>)>> {
        let ends: Vec<Nanos> = ends.collect();
        let mut out = Vec::new();
        for chunk in ends.chunks(BUCKETS_PER_READ) {
            let mut pipe = redis::pipe();
            for end in chunk {
                pipe.cmd("HGETALL").arg(self.key(&end.to_string()));
            }
            let answers: Vec<HashMap<String, u64>> = self.link.pipe(&pipe).await?;
            for (end, fields) in chunk.iter().zip(answers) {
                if !fields.is_empty() {
                    out.push((*end, by_objective(fields)));
                }
            }
        }
        Some(out)
    }

    /// The fleet's events of the bucket ending at `end`, by objective.
    pub(crate) async fn totals(&self, end: Nanos) -> Option<HashMap<String, (u64, u64)>> {
        let fields: HashMap<String, u64> = self
            .link
            .run(redis::cmd("HGETALL").arg(self.key(&end.to_string())))
            .await?;
        Some(by_objective(fields))
    }

    /// Publishes what this tick decided, for replicas that join; only the
    /// leader does.
    pub(crate) async fn publish(&self, state: &Published) {
        if !self.leads() {
            return;
        }
        let Ok(json) = serde_json::to_string(state) else {
            return;
        };
        let _: Option<()> = self
            .link
            .run(
                redis::cmd("SET")
                    .arg(self.key("state"))
                    .arg(json)
                    .arg("PX")
                    .arg(HISTORY_TTL.as_millis() as u64),
            )
            .await;
    }

    /// What the leader last published.
    pub(crate) async fn published(&self) -> Option<Published> {
        let json: Option<String> = self
            .link
            .run(redis::cmd("GET").arg(self.key("state")))
            .await?;
        match serde_json::from_str(&json?) {
            Ok(p) => Some(p),
            Err(e) => {
                tracing::warn!(fleet = %self.name, error = %e, "the fleet's published SLO state is unreadable; ignored");
                None
            }
        }
    }

    /// The fleet's number for the incident `slo`'s page firing at
    /// `detect` opens: the same on every replica. `floor`: this replica's
    /// own next number. `None` when Redis did not answer.
    pub(crate) async fn incident_id(&self, slo: &str, detect: Nanos, floor: u64) -> Option<u64> {
        let script = redis::Script::new(INCIDENT_ID_LUA);
        let mut inv = script.key(self.key(&format!("incident:{slo}:{detect}")));
        inv.key(self.key("incident_seq"))
            .arg(floor)
            .arg(HISTORY_TTL.as_millis() as u64);
        self.link.invoke::<u64>(&inv).await
    }

    /// Shares an operator's action with the fleet: `Some(false)` when
    /// another replica took the incident's next place first (read the
    /// actions again and check anew), `None` when Redis did not answer.
    pub(crate) async fn append_action(&self, row: &IncidentActionRow) -> Option<bool> {
        let json = serde_json::to_string(row).ok()?;
        let script = redis::Script::new(ACTION_LUA);
        let mut inv = script.key(self.key(&format!("actions:{}", row.incident_id)));
        inv.key(self.key("actions"))
            .arg(row.seq)
            .arg(json)
            .arg(HISTORY_TTL.as_millis() as u64)
            .arg(ACTIONS_KEPT);
        Some(self.link.invoke::<i64>(&inv).await? == 1)
    }

    /// Operators' actions taken on any replica since the last call (all
    /// the stream keeps, on the first), in order.
    pub(crate) async fn actions(&self) -> Option<Vec<IncidentActionRow>> {
        let mut rows = Vec::new();
        loop {
            let after = self
                .actions_read
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            // Each entry: its id, then its fields and values in turn.
            let read: Vec<(String, Vec<String>)> = self
                .link
                .run(
                    redis::cmd("XRANGE")
                        .arg(self.key("actions"))
                        .arg(format!("({after}"))
                        .arg("+")
                        .arg("COUNT")
                        .arg(BUCKETS_PER_READ),
                )
                .await?;
            let Some(last) = read.last().map(|(id, _)| id.clone()) else {
                return Some(rows);
            };
            let more = read.len() == BUCKETS_PER_READ;
            for (id, fields) in read {
                let row = fields
                    .chunks(2)
                    .find(|kv| kv[0] == "row")
                    .and_then(|kv| kv.get(1))
                    .and_then(|json| serde_json::from_str(json).ok());
                match row {
                    Some(row) => rows.push(row),
                    None => {
                        tracing::warn!(fleet = %self.name, entry = %id, "an unreadable operator action in the fleet's stream; skipped");
                    }
                }
            }
            *self.actions_read.lock().unwrap_or_else(|e| e.into_inner()) = last;
            if !more {
                return Some(rows);
            }
        }
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

    /// The leader's lease, in nanoseconds.
    pub(crate) fn lease_ns(&self) -> Nanos {
        u64::try_from(self.lease.as_nanos()).unwrap_or(u64::MAX)
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

/// A fleet bucket's fields (`{objective}:g`, `{objective}:t`) as good and
/// total events by objective.
fn by_objective(fields: HashMap<String, u64>) -> HashMap<String, (u64, u64)> {
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
    out
}
