//! Step 4 of the life of a request: admission, in one place, in this order.
//! [`request`] resolves who the request is for (its tenant, `tenant.rs`; 401
//! on bad credentials) and its priority class, asks the process overload
//! guard (`pressure.rs`; sheddable requests are refused first), applies the
//! route's rate limits, then asks the route's cluster ([`cluster`]): its
//! breaker and bulkheads (`guard.rs`), then its concurrency limit and
//! admission queue (`queue.rs`). The cluster's refusals are not answered
//! here: they go on to step 6, where a route's fallbacks may answer them.
//!
//! Rate limits are GCRA per key (`levee_policy::ratelimit`): every limit
//! must pass; a refusal is answered 429 with `Retry-After` and the IETF
//! `RateLimit` / `RateLimit-Policy` headers, and every answer on a limited
//! route reports the most constrained limit. A dry-run limit only counts
//! what it would refuse. Global limits decide in Redis (`global.rs`) and fall
//! back as configured when it cannot answer. Limiters are built once per
//! route and kept across reloads while their settings are unchanged.

use crate::body::RequestBody;
use crate::global::GlobalLimits;
use crate::pipeline::attempt::{prepare, Prepared};
use crate::pipeline::respond::Refusal;
use crate::pipeline::{Arrival, RequestContext};
use crate::record::Completion;
use crate::retry::{ActiveRequest, RouteRetry};
use crate::router::CompiledRoute;
use http::{HeaderMap, HeaderName, HeaderValue, Request, Version};
use levee_config::{OnRedisFailure, Priority};
use levee_config::{RateKey, RateLimit};
use levee_core::metrics::{names, Counter, Registry};
use levee_core::time::Instant;
use levee_core::{ErrorKind, Nanos};
use levee_policy::hash::{hash64, mix64};
use levee_policy::ratelimit::{Decision, Gcra, KeyedLimiter, WarmState, WarmUp};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

/// Who a request is for and whether the gateway takes it at all (the
/// first half of step 4, also all an async route asks before accepting a
/// job): its tenant and priority, the overload guard, the rate limits.
pub(crate) struct Caller<'a> {
    pub(crate) tenant: Arc<str>,
    pub(crate) priority: Priority,
    /// Under pressure: no keep-alive after this answer.
    pub(crate) close_after: bool,
    /// The route's most constrained rate limit, reported on the answer.
    pub(crate) rate_limit: Option<LimitReport<'a>>,
}

/// The first half of step 4: the tenant (401 on bad credentials), the
/// priority class, the process overload guard, the route's rate limits.
pub(crate) async fn caller<'a>(
    arrival: &Arrival<'a>,
    route: &'a CompiledRoute,
    headers: &HeaderMap,
    version: Version,
    done: &mut Completion,
) -> Result<Caller<'a>, Refusal<'a>> {
    let shared = arrival.conn.shared();
    // Who it is for: a verified JWT, an API key, a trusted header, or the
    // default tenant.
    let tenant = arrival
        .listener
        .tenants
        .resolve(headers, unix_now)
        .map_err(|why| Refusal::new(ErrorKind::Unauthorized, why))?;
    done.tenant = Some(tenant.clone());
    let priority = request_priority(route, headers);
    done.priority = Some(priority);

    // The process overload guard sheds the least important work first.
    let pressure = shared.pressure.level();
    if pressure >= crate::pressure::SHED && priority == Priority::Sheddable {
        return Err(Refusal::new(
            ErrorKind::Overloaded,
            "the gateway is under memory or connection pressure: sheddable requests are refused",
        ));
    }
    let close_after = pressure >= crate::pressure::CLOSE && version < Version::HTTP_2;

    // The route's rate limits.
    let mut rate_limit = None;
    if !route.rate_limits.is_empty() {
        let now = shared.clock.nanos_at(arrival.start);
        let client = arrival.conn.peer.ip();
        match check(&route.rate_limits, headers, client, &tenant, now).await {
            LimitVerdict::Limited(report) => {
                let detail = format!("rate limit `{}` exceeded", report.limit.config.name);
                return Err(Refusal::new(ErrorKind::RateLimited, detail).reporting(Some(report)));
            }
            LimitVerdict::Admitted(report) => rate_limit = report,
        }
    }
    Ok(Caller {
        tenant,
        priority,
        close_after,
        rate_limit,
    })
}

/// Admits a request for `route` (step 4): on success, the request's context
/// for the steps that follow, the cluster's answer, and the request ready
/// to go out.
pub(crate) async fn request<'a>(
    arrival: Arrival<'a>,
    route: &'a CompiledRoute,
    req: Request<RequestBody>,
    done: &mut Completion,
) -> Result<(RequestContext<'a>, ClusterAdmission<'a>, Prepared), Refusal<'a>> {
    let Caller {
        tenant,
        priority,
        close_after,
        rate_limit,
    } = caller(&arrival, route, req.headers(), req.version(), done).await?;
    let headers = req.headers();

    let upgrade = crate::headers::is_upgrade_request(headers) && req.version() == Version::HTTP_11;
    let caller_timeout = route
        .config
        .honor_deadlines
        .then(|| {
            crate::headers::caller_deadline(headers, &route.request_remove, &route.request_set)
        })
        .flatten();
    let dispatching = route
        .retry
        .as_ref()
        .filter(|_| !upgrade)
        .map(RouteRetry::enter);
    // A body the route may send twice is read before the cluster is asked,
    // so a slow upload holds no place in it.
    let body_limit = arrival.listener.limits.max_request_body_bytes;
    let prepared = prepare(route, arrival.conn, upgrade, body_limit, req).await?;
    // The cluster, last: its places are held until the response ends.
    let admission = cluster(route, caller_timeout, priority, &tenant, done)
        .await
        .counting(dispatching);
    let ctx = RequestContext {
        conn: arrival.conn,
        request_id: arrival.request_id,
        grpc: arrival.grpc,
        body_limit,
        route,
        tenant,
        priority,
        caller_timeout,
        deadline: admission.deadline,
        close_after,
        rate_limit,
    };
    Ok((ctx, admission, prepared))
}

/// A cluster's answer to one request, carried from step 4 to step 5.
#[derive(Debug)]
pub(crate) struct ClusterAdmission<'a> {
    /// Until when the cluster may answer: the route's total timeout (or
    /// the cluster's), shortened by the caller's.
    pub(crate) deadline: Instant,
    /// Why the cluster refused (breaker open, bulkheads full, shed by its
    /// queue, a deadline too short to try), for step 6's fallbacks; `None`
    /// when it admitted the request (its places are held by the record).
    pub(crate) refused: Option<(ErrorKind, String)>,
    /// The request counted in dispatch on its route, for the retry budget.
    _dispatching: Option<ActiveRequest<'a>>,
}

impl<'a> ClusterAdmission<'a> {
    fn counting(self, dispatching: Option<ActiveRequest<'a>>) -> Self {
        Self {
            _dispatching: dispatching,
            ..self
        }
    }
}

/// Asks `route`'s cluster to take a request: the deadline first (a caller
/// that leaves less than the route's `min_attempt_time` is not sent), then
/// the cluster's breaker and bulkheads, then its concurrency limit and
/// admission queue. Also used for a fallback cluster (step 6).
pub(crate) async fn cluster(
    route: &CompiledRoute,
    caller_timeout: Option<Duration>,
    priority: Priority,
    tenant: &Arc<str>,
    done: &mut Completion,
) -> ClusterAdmission<'static> {
    let start = levee_core::time::now();
    let cluster = &route.cluster;
    let route_total = route.config.timeout.unwrap_or(cluster.config.timeout);
    let total = caller_timeout.map_or(route_total, |c| c.min(route_total));
    let deadline = start + total;
    let refused = async {
        if caller_timeout.is_some_and(|c| c < route.config.min_attempt_time) {
            return Err((
                ErrorKind::DeadlineExceeded,
                format!(
                    "the caller's deadline leaves less than the route's min_attempt_time ({})",
                    levee_config::format_duration(route.config.min_attempt_time)
                ),
            ));
        }
        cluster.admit_breaker(cluster.nanos_at(start))?;
        done.request_slot = cluster.bulkheads.admit(deadline).await?;
        if let Some(queue) = &cluster.queue {
            done.admission = Some(queue.admit(priority, tenant, deadline).await?);
        }
        Ok(())
    }
    .await
    .err();
    ClusterAdmission {
        deadline,
        refused,
        _dispatching: None,
    }
}

/// The request's priority class: the route's, lowered (never raised) by the
/// route's priority header when the caller sent one.
fn request_priority(route: &CompiledRoute, headers: &HeaderMap) -> Priority {
    let asked = route
        .config
        .priority_header
        .as_deref()
        .and_then(|h| headers.get(h))
        .and_then(|v| v.to_str().ok())
        .and_then(|v| Priority::from_name(v.trim()));
    match asked {
        Some(p) if p > route.config.priority => p,
        _ => route.config.priority,
    }
}

/// Seconds since the Unix epoch, for token expiry (read only when a JWT is
/// checked).
fn unix_now() -> u64 {
    levee_core::time::unix_secs()
}

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
                names::RATELIMIT_DECISIONS,
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
    fn write_headers(&self, headers: &mut HeaderMap, decision: &Decision) {
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

/// One limit's decision, reported on the answer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LimitReport<'a> {
    pub(crate) limit: &'a RouteLimit,
    pub(crate) decision: Decision,
}

impl LimitReport<'_> {
    /// Writes `RateLimit-Policy` and `RateLimit` (and `Retry-After` when
    /// the limit refused).
    pub(crate) fn write_headers(&self, headers: &mut HeaderMap) {
        self.limit.write_headers(headers, &self.decision);
    }
}

/// The verdict of a route's limits on one request.
enum LimitVerdict<'a> {
    /// Go ahead; report this limit's state on the response (if any limit).
    Admitted(Option<LimitReport<'a>>),
    /// Refused by this limit.
    Limited(LimitReport<'a>),
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
async fn check<'a>(
    limits: &'a [Arc<RouteLimit>],
    headers: &HeaderMap,
    client: IpAddr,
    tenant: &str,
    now: Nanos,
) -> LimitVerdict<'a> {
    let mut tightest: Option<LimitReport<'a>> = None;
    for limit in limits {
        let decision = limit.decide(limit.key(headers, client, tenant), now).await;
        if !decision.allowed {
            if limit.config.dry_run {
                limit.dry_run_limited.inc();
                continue;
            }
            limit.limited.inc();
            return LimitVerdict::Limited(LimitReport { limit, decision });
        }
        limit.allowed.inc();
        if tightest.is_none_or(|t| decision.remaining < t.decision.remaining) {
            tightest = Some(LimitReport { limit, decision });
        }
    }
    LimitVerdict::Admitted(tightest)
}
