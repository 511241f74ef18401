//! Step 4 of the life of a request: admission. For now, a route's rate
//! limits (GCRA per key, `levee_policy::ratelimit`): every limit must pass;
//! a refusal is answered 429 with `Retry-After` and the IETF `RateLimit` /
//! `RateLimit-Policy` headers, and every answer on a limited route reports
//! the most constrained limit. A dry-run limit only counts what it would
//! refuse. Global limits decide in Redis (`global.rs`) and fall back as
//! configured when it cannot answer. Limiters are built once per route and
//! kept across reloads while their settings are unchanged.

use crate::global::GlobalLimits;
use http::{HeaderMap, HeaderName, HeaderValue};
use levee_config::OnRedisFailure;
use levee_config::{RateKey, RateLimit};
use levee_core::metrics::{Counter, Registry};
use levee_core::Nanos;
use levee_policy::hash::{hash64, mix64};
use levee_policy::ratelimit::{Decision, Gcra, KeyedLimiter, WarmState, WarmUp};
use std::net::IpAddr;
use std::sync::Arc;

const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");

/// One configured limit of a route, with its table and counters.
#[derive(Debug)]
pub(crate) struct RouteLimit {
    pub(crate) config: RateLimit,
    pub(crate) limiter: Arc<KeyedLimiter>,
    /// Redis, for a global limit.
    global: Option<Arc<GlobalLimits>>,
    /// A global limit's local stand-in (rate / replicas) while Redis fails.
    fallback: Option<KeyedLimiter>,
    /// `levee:rl:<route>:<limit>:`, the Redis key prefix.
    redis_prefix: String,
    /// The warm-up and its state (per limit, not per key).
    warm: Option<(WarmUp, std::sync::Mutex<WarmState>)>,
    /// `"name";q=burst;w=seconds`, built once.
    policy: HeaderValue,
    allowed: Arc<Counter>,
    limited: Arc<Counter>,
    dry_run_limited: Arc<Counter>,
}

impl RouteLimit {
    /// Decisions so far: `(admitted, refused)`.
    pub(crate) fn decisions(&self) -> (u64, u64) {
        (self.allowed.get(), self.limited.get())
    }

    /// Builds the limit, reusing `previous`'s table when its settings match.
    pub(crate) fn new(
        route: &str,
        config: &RateLimit,
        previous: Option<&RouteLimit>,
        global: Option<&Arc<GlobalLimits>>,
        registry: &Registry,
    ) -> Self {
        let limiter = previous
            .filter(|p| p.config == *config)
            .map(|p| p.limiter.clone())
            .unwrap_or_else(|| {
                Arc::new(KeyedLimiter::new(
                    Gcra::new(config.rate, config.per, config.burst),
                    config.max_keys,
                ))
            });
        let window = config.per.as_secs().max(1);
        let policy = HeaderValue::from_str(&format!(
            "\"{}\";q={};w={window}",
            config.name, config.burst
        ))
        .unwrap_or_else(|_| HeaderValue::from_static("\"limit\""));
        let counter = |result: &str| {
            registry.counter(
                "levee_ratelimit_decisions_total",
                "Rate-limit decisions, by route, limit and result.",
                &[
                    ("route", route),
                    ("limit", &config.name),
                    ("result", result),
                ],
            )
        };
        let global = global.filter(|_| config.global).cloned();
        let fallback = global.as_ref().map(|g| {
            KeyedLimiter::new(
                limiter.gcra().scaled_down(g.config.replicas),
                config.max_keys,
            )
        });
        Self {
            config: config.clone(),
            limiter,
            global,
            fallback,
            redis_prefix: format!("levee:rl:{route}:{}:", config.name),
            warm: config.warm_up.as_ref().map(|w| {
                (
                    WarmUp {
                        cold_factor: w.cold_factor,
                        period: w.period,
                    },
                    std::sync::Mutex::new(WarmState::default()),
                )
            }),
            policy,
            allowed: counter("allowed"),
            limited: counter("limited"),
            dry_run_limited: counter("dry_run_limited"),
        }
    }

    /// The key of a request under this limit.
    fn key(&self, headers: &HeaderMap, client: IpAddr, tenant: &str) -> u64 {
        self.config.key.iter().fold(0x5eed, |acc, part| {
            let h = match part {
                RateKey::ClientIp => match client {
                    IpAddr::V4(ip) => hash64(&ip.octets()),
                    IpAddr::V6(ip) => hash64(&ip.octets()),
                },
                RateKey::Header(name) => headers
                    .get(name.as_str())
                    .map_or(0x00ab_5e17, |v| hash64(v.as_bytes())),
                RateKey::Tenant => hash64(tenant.as_bytes()),
            };
            mix64(acc ^ h)
        })
    }

    /// Writes `RateLimit-Policy` and `RateLimit` for `decision` (and
    /// `Retry-After` when it refused).
    pub(crate) fn write_headers(&self, headers: &mut HeaderMap, decision: &Decision) {
        let secs = |ns: u64| ns.div_ceil(1_000_000_000);
        headers.insert(RATELIMIT_POLICY, self.policy.clone());
        if let Ok(v) = HeaderValue::from_str(&format!(
            "\"{}\";r={};t={}",
            self.config.name,
            decision.remaining,
            secs(decision.reset_ns)
        )) {
            headers.insert(RATELIMIT, v);
        }
        if !decision.allowed {
            headers.insert(
                http::header::RETRY_AFTER,
                HeaderValue::from(secs(decision.retry_after_ns).max(1)),
            );
        }
    }
}

/// The outcome of a route's limits for one request.
pub(crate) enum Admission<'a> {
    /// Go ahead; report this limit's state on the response (if any limit).
    Admitted(Option<(&'a RouteLimit, Decision)>),
    /// Refused by this limit.
    Limited(&'a RouteLimit, Decision),
}

impl RouteLimit {
    /// Decides for `key`: in Redis for a global limit (with its fallback),
    /// else in the local table.
    async fn decide(&self, key: u64, now: Nanos) -> Decision {
        let cost = self.warm.as_ref().map_or(1_000, |(w, state)| {
            let mut state = state.lock().unwrap_or_else(|e| e.into_inner());
            w.cost_milli(&mut state, now)
        });
        let Some(global) = &self.global else {
            return self.limiter.decide_milli(key, now, cost);
        };
        let redis_key = format!("{}{key:016x}", self.redis_prefix);
        if let Some(d) = global.decide(&redis_key, self.limiter.gcra(), cost).await {
            return d;
        }
        match global.on_failure() {
            OnRedisFailure::Local => match &self.fallback {
                Some(local) => local.decide_milli(key, now, cost),
                None => self.limiter.decide_milli(key, now, cost),
            },
            OnRedisFailure::Open => Decision {
                allowed: true,
                remaining: self.limiter.gcra().burst(),
                retry_after_ns: 0,
                reset_ns: 0,
            },
            OnRedisFailure::Closed => Decision {
                allowed: false,
                remaining: 0,
                retry_after_ns: global.config.retry_after.as_nanos() as u64,
                reset_ns: 0,
            },
        }
    }
}

/// Applies every limit of a route to a request at `now`.
pub(crate) async fn check<'a>(
    limits: &'a [Arc<RouteLimit>],
    headers: &HeaderMap,
    client: IpAddr,
    tenant: &str,
    now: Nanos,
) -> Admission<'a> {
    let mut tightest: Option<(&RouteLimit, Decision)> = None;
    for limit in limits {
        let decision = limit.decide(limit.key(headers, client, tenant), now).await;
        if !decision.allowed {
            if limit.config.dry_run {
                limit.dry_run_limited.inc();
                continue;
            }
            limit.limited.inc();
            return Admission::Limited(limit, decision);
        }
        limit.allowed.inc();
        if tightest.is_none_or(|(_, d)| decision.remaining < d.remaining) {
            tightest = Some((limit, decision));
        }
    }
    Admission::Admitted(tightest)
}
