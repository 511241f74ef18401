//! A replica's link to the fleet's shared Redis, for the loops that act
//! once for the whole fleet (rollouts, SLO evaluation): one connection,
//! this process's instance id, commands bounded by the configured timeout,
//! and leases. A lease is a key holding its leader's instance id with an
//! expiry, taken with `SET NX PX` and extended only by its holder (one
//! script), so a dead leader's lease runs out and the next replica to ask
//! takes over. Redis being away never stops traffic: a command that
//! cannot finish in time is `None`, and each loop says what it does then.

use redis::aio::ConnectionManager;
use std::time::Duration;

/// Extends the lease if `ARGV[1]` holds it, or takes it if free.
const LEAD_LUA: &str = r#"
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
elseif not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"#;

/// This replica's link to the fleet.
#[derive(Clone)]
pub(crate) struct Link {
    conn: ConnectionManager,
    /// This replica's id: unique per process.
    pub(crate) instance: String,
    timeout: Duration,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("instance", &self.instance)
            .finish_non_exhaustive()
    }
}

impl Link {
    /// Connects to `redis` (within a few timeouts); `None` when it cannot,
    /// so the gateway starts anyway and acts on its own.
    pub(crate) async fn connect(redis: &levee_config::Redis) -> Option<Self> {
        let timeout = redis.timeout.max(Duration::from_millis(500));
        let client = redis::Client::open(redis.url.expose()).ok()?;
        let conn = tokio::time::timeout(timeout * 4, ConnectionManager::new(client))
            .await
            .ok()?
            .ok()?;
        let instance = format!(
            "{}-{:016x}",
            std::process::id(),
            levee_policy::hash::mix64(levee_core::time::unix_nanos())
        );
        Some(Self {
            conn,
            instance,
            timeout,
        })
    }

    /// Runs `cmd` within the timeout.
    pub(crate) async fn run<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Option<T> {
        let mut conn = self.conn.clone();
        tokio::time::timeout(self.timeout, cmd.query_async(&mut conn))
            .await
            .ok()?
            .ok()
    }

    /// Runs `pipe` within the timeout.
    pub(crate) async fn pipe<T: redis::FromRedisValue>(&self, pipe: &redis::Pipeline) -> Option<T> {
        let mut conn = self.conn.clone();
        tokio::time::timeout(self.timeout, pipe.query_async(&mut conn))
            .await
            .ok()?
            .ok()
    }

    /// Runs the script invocation `inv` within the timeout.
    pub(crate) async fn invoke<T: redis::FromRedisValue>(
        &self,
        inv: &redis::ScriptInvocation<'_>,
    ) -> Option<T> {
        let mut conn = self.conn.clone();
        tokio::time::timeout(self.timeout, inv.invoke_async(&mut conn))
            .await
            .ok()?
            .ok()
    }

    /// Takes or renews the lease `key` for `lease`; true while this
    /// replica holds it.
    pub(crate) async fn lead(&self, key: &str, lease: Duration) -> bool {
        self.try_lead(key, lease).await == Some(true)
    }

    /// Like [`Link::lead`], `None` when Redis did not answer (so no one
    /// can know who leads).
    pub(crate) async fn try_lead(&self, key: &str, lease: Duration) -> Option<bool> {
        let script = redis::Script::new(LEAD_LUA);
        let mut inv = script.key(key);
        inv.arg(&self.instance).arg(lease.as_millis() as u64);
        Some(self.invoke::<i64>(&inv).await? == 1)
    }

    /// Who holds the lease `key` now.
    pub(crate) async fn holder(&self, key: &str) -> Option<String> {
        self.run(redis::cmd("GET").arg(key)).await
    }

    /// Gives the lease `key` up if this replica holds it (a clean
    /// shutdown), so another takes over at once.
    pub(crate) async fn resign(&self, key: &str) {
        if self.holder(key).await.as_deref() == Some(self.instance.as_str()) {
            let _: Option<i64> = self.run(redis::cmd("DEL").arg(key)).await;
        }
    }
}
