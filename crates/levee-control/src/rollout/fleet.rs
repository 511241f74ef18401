//! Rollouts across several gateways sharing one Redis: one replica leads
//! each rollout, every replica serves the leader's weights.
//!
//! - **Lease**: `levee:rollout:{route}:leader` holds the leader's instance
//!   id with a 3 s expiry, taken with `SET NX PX` and renewed every tick
//!   only by its holder (a compare-and-extend script). A dead leader's
//!   lease runs out and the next replica to ask takes it over, continuing
//!   from the shared state.
//! - **State**: the leader writes the whole `RolloutState` (JSON, with a
//!   growing `revision`) to `levee:rollout:{route}:state` after each
//!   decision; followers read it every tick and adopt a newer revision,
//!   turning their own weights knob, so every replica serves the same
//!   weights within a tick of a decision. A replica that starts mid-
//!   rollout reads the state before it builds its routes.
//! - **Counts**: each replica writes its per-version counts (canary and
//!   baseline: requests, bad, within each threshold, latency buckets) to
//!   the hash `levee:rollout:{route}:{stable}:{canary}:counts` under its
//!   instance id; the leader judges the sum, so the verdict sees the whole
//!   fleet's traffic.
//! - **Commands** given to a follower are queued on
//!   `levee:rollout:{route}:commands` for the leader to carry out.
//!
//! Redis being away never stops traffic: each replica keeps serving its
//! last weights, and a leader that cannot renew its lease stops deciding.

use super::{Command, RolloutState};
use levee_policy::judge::histogram::LatencyHistogram;
use levee_proxy::release::VersionSnapshot;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// How long a rollout's shared counts outlive their last update.
const COUNTS_TTL: Duration = Duration::from_secs(24 * 3600);

/// How long a leader's lease lasts without renewal.
pub(crate) const LEASE: Duration = Duration::from_secs(3);

/// One replica's counts of one version, as shared.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct SharedCounts {
    pub(crate) total: u64,
    pub(crate) bad: u64,
    /// Good answers within each threshold, in nanoseconds.
    pub(crate) within: Vec<(u64, u64)>,
    /// Non-empty latency buckets: (bucket, count).
    pub(crate) latency: Vec<(usize, u64)>,
}

impl SharedCounts {
    pub(crate) fn of(s: &VersionSnapshot) -> Self {
        let r = s.latency.occupied();
        Self {
            total: s.total,
            bad: s.bad,
            within: s
                .within
                .iter()
                .map(|(d, n)| (u64::try_from(d.as_nanos()).unwrap_or(u64::MAX), *n))
                .collect(),
            latency: s.latency.counts()[r.clone()]
                .iter()
                .enumerate()
                .filter(|(_, n)| **n > 0)
                .map(|(i, n)| (r.start + i, *n))
                .collect(),
        }
    }

    /// Adds `other` into `into`.
    pub(crate) fn add_to(&self, into: &mut VersionSnapshot) {
        into.total += self.total;
        into.bad += self.bad;
        for (t, n) in &self.within {
            let t = Duration::from_nanos(*t);
            match into.within.iter_mut().find(|(d, _)| *d == t) {
                Some((_, m)) => *m += n,
                None => into.within.push((t, *n)),
            }
        }
        for (bucket, n) in &self.latency {
            if *bucket < levee_policy::judge::histogram::BUCKETS {
                into.latency.add_count(*bucket, *n);
            }
        }
    }
}

/// A replica's counts of a rollout's canary and baseline.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct ReplicaCounts {
    pub(crate) canary: SharedCounts,
    pub(crate) baseline: SharedCounts,
}

/// An empty snapshot to sum into.
pub(crate) fn empty_snapshot() -> VersionSnapshot {
    VersionSnapshot {
        total: 0,
        bad: 0,
        within: Vec::new(),
        latency: LatencyHistogram::new(),
    }
}

/// This replica's link to the fleet, for rollouts (the keys above).
#[derive(Debug, Clone)]
pub(crate) struct Fleet(crate::fleet::Link);

impl std::ops::Deref for Fleet {
    type Target = crate::fleet::Link;
    fn deref(&self) -> &crate::fleet::Link {
        &self.0
    }
}

fn key(route: &str, what: &str) -> String {
    format!("levee:rollout:{route}:{what}")
}

impl Fleet {
    /// Connects to `redis`; `None` when it cannot, so the gateway starts
    /// anyway and rolls out on its own.
    pub(crate) async fn connect(redis: &levee_config::Redis) -> Option<Self> {
        crate::fleet::Link::connect(redis).await.map(Self)
    }

    /// Takes or renews the lease of `route`'s rollout; true while this
    /// replica leads it.
    pub(crate) async fn lead(&self, route: &str) -> bool {
        self.0.lead(&key(route, "leader"), LEASE).await
    }

    /// Gives the lease up (a clean shutdown), so another takes over now.
    pub(crate) async fn resign(&self, route: &str) {
        self.0.resign(&key(route, "leader")).await;
    }

    /// The shared state of `route`'s rollout.
    pub(crate) async fn state(&self, route: &str) -> Option<RolloutState> {
        let text: Option<String> = self.run(redis::cmd("GET").arg(key(route, "state"))).await?;
        serde_json::from_str(&text?).ok()
    }

    /// Publishes `state` (the leader, after a decision).
    pub(crate) async fn publish(&self, state: &RolloutState) -> bool {
        let Ok(text) = serde_json::to_string(state) else {
            return false;
        };
        self.run::<()>(redis::cmd("SET").arg(key(&state.route, "state")).arg(text))
            .await
            .is_some()
    }

    /// Forgets `route`'s shared rollout (it has no rollout policy any more).
    pub(crate) async fn forget(&self, route: &str) {
        let _: Option<i64> = self
            .run(
                redis::cmd("DEL")
                    .arg(key(route, "state"))
                    .arg(key(route, "commands")),
            )
            .await;
    }

    /// One rollout's counts: by route, both clusters and its start, so a
    /// later rollout between the same clusters never sums old counts.
    fn counts_key(state: &RolloutState) -> String {
        key(
            &state.route,
            &format!(
                "{}:{}:{}:counts",
                state.stable,
                state.canary.as_deref().unwrap_or(""),
                state.started_ns
            ),
        )
    }

    /// Shares this replica's counts of the rollout in `state`.
    pub(crate) async fn share_counts(&self, state: &RolloutState, counts: &ReplicaCounts) {
        let Ok(text) = serde_json::to_string(counts) else {
            return;
        };
        let k = Self::counts_key(state);
        let mut pipe = redis::pipe();
        pipe.cmd("HSET")
            .arg(&k)
            .arg(&self.instance)
            .arg(text)
            .ignore()
            .cmd("PEXPIRE")
            .arg(&k)
            .arg(COUNTS_TTL.as_millis() as u64)
            .ignore();
        let _: Option<()> = self.pipe(&pipe).await;
    }

    /// Every replica's counts of the rollout in `state`.
    pub(crate) async fn fleet_counts(&self, state: &RolloutState) -> Option<Vec<ReplicaCounts>> {
        let all: std::collections::HashMap<String, String> = self
            .run(redis::cmd("HGETALL").arg(Self::counts_key(state)))
            .await?;
        Some(
            all.values()
                .filter_map(|v| serde_json::from_str(v).ok())
                .collect(),
        )
    }

    /// Queues `command` for the leader.
    pub(crate) async fn queue(&self, route: &str, command: Command) -> bool {
        self.run::<i64>(
            redis::cmd("RPUSH")
                .arg(key(route, "commands"))
                .arg(command.name()),
        )
        .await
        .is_some()
    }

    /// Takes the commands queued for `route` (the leader).
    pub(crate) async fn take_commands(&self, route: &str) -> Vec<Command> {
        let k = key(route, "commands");
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("LRANGE")
            .arg(&k)
            .arg(0)
            .arg(-1)
            .cmd("DEL")
            .arg(&k)
            .ignore();
        let taken: Option<(Vec<String>,)> = self.pipe(&pipe).await;
        taken
            .map(|(names,)| names.iter().filter_map(|n| Command::parse(n)).collect())
            .unwrap_or_default()
    }
}
