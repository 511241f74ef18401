//! Shared state in Redis when one gateway becomes many: global rate limits.
//! Each decision is one atomic Lua script (GCRA on Redis's own clock, so
//! every replica agrees on time), bounded by a timeout. When Redis is slow
//! or down, decisions fall back for `retry_after` (to local limits scaled
//! to the replica count, or open, or closed) and then go back to Redis by
//! themselves. The connection is made and remade in the background; no
//! request ever waits for a connect.

use arc_swap::ArcSwapOption;
use levee_config::{OnRedisFailure, Redis};
use levee_core::metrics::{names, Counter, Gauge, Registry};
use levee_core::{Clock, MonotonicClock, Nanos};
use levee_policy::ratelimit::{Decision, Gcra};
use redis::aio::ConnectionManager;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

/// GCRA in Redis. KEYS[1]: the key. ARGV: emission interval (µs),
/// tolerance (µs), cost (requests, fractional during a warm-up). Returns
/// {allowed, remaining, retry_after_µs, reset_µs}. The key expires when its
/// bucket is full again.
const GCRA_LUA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local emission = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local increment = emission * tonumber(ARGV[3])
if increment > tolerance then tolerance = increment end
local new_tat = tat + increment
local ahead = new_tat - now
if ahead > tolerance then
  return {0, 0, ahead - tolerance, tat - now}
end
redis.call('SET', KEYS[1], new_tat, 'PX', math.floor(ahead / 1000) + 1)
return {1, math.floor((tolerance - ahead) / emission), 0, ahead}
";

/// The gateway's Redis client for global limits.
pub(crate) struct GlobalLimits {
    pub(crate) config: Redis,
    conn: ArcSwapOption<ConnectionManager>,
    script: redis::Script,
    clock: MonotonicClock,
    /// Until when decisions stay local after a failure (0: use Redis).
    fallback_until: AtomicU64,
    failures: Arc<Counter>,
    fallbacks: Arc<Counter>,
    decisions: Arc<Counter>,
    connected: Arc<Gauge>,
}

impl std::fmt::Debug for GlobalLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GlobalLimits")
            .field("connected", &self.conn.load().is_some())
            .field("timeout", &self.config.timeout)
            .finish_non_exhaustive()
    }
}

impl GlobalLimits {
    /// Starts connecting in the background and returns at once.
    pub(crate) fn new(config: Redis, registry: &Registry, clock: MonotonicClock) -> Arc<Self> {
        Arc::new(Self {
            conn: ArcSwapOption::empty(),
            script: redis::Script::new(GCRA_LUA),
            clock,
            fallback_until: AtomicU64::new(0),
            failures: registry.counter(
                names::REDIS_FAILURES,
                "Redis calls for global limits that failed or timed out.",
                &[],
            ),
            fallbacks: registry.counter(
                names::REDIS_FALLBACK_DECISIONS,
                "Global rate-limit decisions made without Redis (its fallback).",
                &[],
            ),
            decisions: registry.counter(
                names::REDIS_DECISIONS,
                "Global rate-limit decisions made in Redis.",
                &[],
            ),
            connected: registry.gauge(
                names::REDIS_CONNECTED,
                "1 once the gateway has a connection to Redis.",
                &[],
            ),
            config,
        })
    }

    /// Starts connecting (and reconnecting) in the background; separate
    /// from [`GlobalLimits::new`] so a reload that is rejected after
    /// building its client never opens a connection.
    pub(crate) fn connect(self: &Arc<Self>) {
        tokio::spawn(connect_loop(Arc::downgrade(self)));
    }

    /// Decides a request costing `cost_milli` thousandths for `key` under
    /// `gcra` through Redis; `None` when Redis cannot answer in time (the
    /// caller falls back).
    pub(crate) async fn decide(&self, key: &str, gcra: &Gcra, cost_milli: u64) -> Option<Decision> {
        let now = self.clock.now();
        if now < self.fallback_until.load(Ordering::Relaxed) {
            self.fallbacks.inc();
            return None;
        }
        let Some(conn) = self.conn.load_full() else {
            self.fallbacks.inc();
            return None;
        };
        let mut conn = (*conn).clone();
        let mut invocation = self.script.key(key);
        invocation
            .arg(gcra.emission_ns().div_ceil(1_000).max(1))
            .arg(gcra.tolerance_ns() / 1_000)
            .arg(cost_milli as f64 / 1_000.0);
        let call = invocation.invoke_async::<(u64, u64, u64, u64)>(&mut conn);
        match tokio::time::timeout(self.config.timeout, call).await {
            Ok(Ok((allowed, remaining, retry_after_us, reset_us))) => {
                self.decisions.inc();
                Some(Decision {
                    allowed: allowed == 1,
                    remaining,
                    retry_after_ns: retry_after_us * 1_000,
                    reset_ns: reset_us * 1_000,
                })
            }
            outcome => {
                if let Ok(Err(e)) = &outcome {
                    tracing::warn!(error = %e, "Redis global limit call failed: deciding locally");
                } else {
                    tracing::warn!(timeout = ?self.config.timeout, "Redis global limit call timed out: deciding locally");
                }
                self.failures.inc();
                self.fallbacks.inc();
                self.back_off(now);
                None
            }
        }
    }

    fn back_off(&self, now: Nanos) {
        let until = now + self.config.retry_after.as_nanos() as u64;
        self.fallback_until.store(until, Ordering::Relaxed);
    }

    /// What a global limit does without Redis.
    pub(crate) fn on_failure(&self) -> OnRedisFailure {
        self.config.on_failure
    }
}

async fn connect_loop(me: Weak<GlobalLimits>) {
    let mut pause = Duration::from_millis(100);
    loop {
        let Some(limits) = me.upgrade() else { return };
        if limits.conn.load().is_some() {
            return;
        }
        let url = limits.config.url.expose().to_string();
        let timeout = limits.config.timeout.max(Duration::from_millis(500));
        let connected = async {
            let client = redis::Client::open(url).ok()?;
            tokio::time::timeout(timeout * 4, ConnectionManager::new(client))
                .await
                .ok()?
                .ok()
        }
        .await;
        match connected {
            Some(conn) => {
                tracing::info!("connected to Redis for global limits");
                limits.conn.store(Some(Arc::new(conn)));
                limits.connected.set(1);
                return;
            }
            None => {
                tracing::warn!(retry_in = ?pause, "cannot connect to Redis: global limits decide locally meanwhile");
            }
        }
        drop(limits);
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(5));
    }
}
