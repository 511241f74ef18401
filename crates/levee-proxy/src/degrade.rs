//! Step 6 of the life of a request: graceful degradation. When every attempt
//! failed, a breaker is open or the cluster shed the request, a route's
//! fallbacks answer instead ([`fallback`]), in order: a stale copy of an
//! earlier successful GET (RFC 5861 stale-if-error, marked
//! `levee-degraded: stale`), another cluster (admitted by it and dispatched
//! like the first), or a fixed response. Successful GETs on routes that
//! serve stale are copied into the cache as they stream ([`Tee`]).
//!
//! The stale cache is bounded by entries and bytes, keyed by host and target,
//! and kept across reloads while the route's cache settings stay the same.

use crate::body::ProxyBody;
use crate::pipeline::attempt::{self, Dispatched};
use crate::pipeline::respond::Refusal;
use crate::pipeline::RequestContext;
use crate::record::Completion;
use bytes::{Bytes, BytesMut};
use http::{header, HeaderMap, HeaderName, HeaderValue, Response, StatusCode};
use levee_config::{Fallback, ServeStale, StaticBody, StaticResponse};
use levee_core::metrics::{names, Counter, Registry};
use levee_core::Nanos;
use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::{Arc, Mutex};

/// The header that tells the client it got a degraded answer, and which.
pub(crate) const LEVEE_DEGRADED: HeaderName = HeaderName::from_static("levee-degraded");

/// Step 6: the cluster's answer, or the route's fallbacks' when the
/// cluster failed (an answer with a status the route lists, or a failure
/// that is not the client's own). A good answer to a GET on a route that
/// serves stale is copied into the cache as it streams.
pub(crate) async fn fallback(
    ctx: &RequestContext<'_>,
    dispatched: Dispatched,
    done: &mut Completion,
) -> Result<Response<ProxyBody>, Refusal<'static>> {
    let Dispatched {
        result,
        again,
        stale_key,
        authorized,
    } = dispatched;
    let Some(f) = ctx.route.fallback.as_deref() else {
        return result.map_err(Refusal::from);
    };
    let failed = match &result {
        Ok(resp) => f.fails(resp.status().as_u16()),
        Err((kind, _)) => kind.side() != levee_core::Side::Downstream,
    };
    match result {
        Ok(mut resp) if !failed => {
            if let (Some(key), Some(cache)) = (stale_key, &f.stale) {
                if storable(resp.status(), resp.headers(), authorized) {
                    let tee = Tee::new(
                        cache.clone(),
                        key,
                        resp.status(),
                        resp.headers().clone(),
                        ctx.route.cluster.now(),
                    );
                    resp.body_mut().tee(tee);
                }
            }
            Ok(resp)
        }
        // Boxed: the fallback cluster's attempt is a whole second dispatch,
        // which would otherwise size every request's future.
        result if failed => {
            match Box::pin(degrade(f, ctx, stale_key.as_deref(), again, done)).await {
                Some(degraded) => Ok(degraded),
                None => result.map_err(Refusal::from),
            }
        }
        result => result.map_err(Refusal::from),
    }
}

/// Tries the route's fallbacks in order (stale copy, fallback cluster,
/// static response) after its cluster failed; `None` when none can answer.
async fn degrade(
    fallback: &RouteFallback,
    ctx: &RequestContext<'_>,
    stale_key: Option<&str>,
    again: Option<attempt::Again>,
    done: &mut Completion,
) -> Option<Response<ProxyBody>> {
    let route = ctx.route;
    if let (Some(key), Some(cache)) = (stale_key, &fallback.stale) {
        let now = route.cluster.now();
        if let Some(entry) = cache.get(key, now) {
            fallback.count(FallbackKind::Stale);
            let mut resp = Response::new(ProxyBody::full(entry.body));
            *resp.status_mut() = entry.status;
            *resp.headers_mut() = entry.headers;
            // Age adds the copy's time here to any age it arrived with.
            let upstream_age = resp
                .headers()
                .get(header::AGE)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(0);
            let age = upstream_age + now.saturating_sub(entry.stored_at) / 1_000_000_000;
            resp.headers_mut()
                .insert(header::AGE, HeaderValue::from(age));
            resp.headers_mut()
                .insert(LEVEE_DEGRADED, FallbackKind::Stale.header_value());
            return Some(resp);
        }
    }
    let request = again.and_then(attempt::Again::outbound);
    if let (Some(other), Some(request)) = (&route.fallback_route, request) {
        done.cluster = Some(other.cluster.clone());
        let admission =
            crate::admit::cluster(other, ctx.caller_timeout, ctx.priority, &ctx.tenant, done).await;
        let sent = match admission.refused {
            None => attempt::send(ctx, other, admission.deadline, request, done).await,
            Some(refused) => Err(refused),
        };
        if let Ok(mut resp) = sent {
            if !fallback.fails(resp.status().as_u16()) {
                fallback.count(FallbackKind::Cluster);
                resp.headers_mut()
                    .insert(LEVEE_DEGRADED, FallbackKind::Cluster.header_value());
                return Some(resp);
            }
        }
    }
    let fixed = fallback.response.as_ref()?;
    fallback.count(FallbackKind::Static);
    let mut resp = Response::new(ProxyBody::full(fixed.body.clone()));
    *resp.status_mut() = fixed.status;
    for (k, v) in &fixed.headers {
        resp.headers_mut().insert(k.clone(), v.clone());
    }
    resp.headers_mut()
        .insert(LEVEE_DEGRADED, FallbackKind::Static.header_value());
    Some(resp)
}

/// One cached response.
#[derive(Debug, Clone)]
pub(crate) struct StaleEntry {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
    pub(crate) stored_at: Nanos,
}

/// A bounded cache of successful responses, oldest evicted first.
#[derive(Debug)]
pub(crate) struct StaleCache {
    config: ServeStale,
    // Held for a map operation on GETs of routes with serve_stale only.
    inner: Mutex<CacheInner>,
}

#[derive(Debug, Default)]
struct CacheInner {
    entries: HashMap<String, StaleEntry>,
    /// Insertion order, for eviction (a key may appear more than once;
    /// stale positions are skipped).
    order: VecDeque<(String, Nanos)>,
    bytes: u64,
}

impl StaleCache {
    pub(crate) fn new(config: ServeStale) -> Self {
        Self {
            config,
            inner: Mutex::new(CacheInner::default()),
        }
    }

    /// The largest body kept.
    pub(crate) fn max_entry_bytes(&self) -> u64 {
        self.config.max_entry_bytes
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CacheInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stores a complete response, evicting the oldest entries to stay
    /// within the bounds.
    pub(crate) fn insert(&self, key: String, entry: StaleEntry) {
        let size = entry.body.len() as u64;
        if size > self.config.max_entry_bytes || size > self.config.max_bytes {
            return;
        }
        let mut inner = self.lock();
        let stamp = entry.stored_at;
        if let Some(old) = inner.entries.insert(key.clone(), entry) {
            inner.bytes -= old.body.len() as u64;
        }
        inner.bytes += size;
        inner.order.push_back((key, stamp));
        while inner.entries.len() > self.config.max_entries || inner.bytes > self.config.max_bytes {
            let Some((oldest, at)) = inner.order.pop_front() else {
                break;
            };
            // Only the newest position of a key evicts it.
            if inner
                .entries
                .get(&oldest)
                .is_some_and(|e| e.stored_at == at)
            {
                if let Some(e) = inner.entries.remove(&oldest) {
                    inner.bytes -= e.body.len() as u64;
                }
            }
        }
        // Positions of overwritten entries are dropped once they dominate.
        if inner.order.len() > 2 * inner.entries.len() + 16 {
            let CacheInner { entries, order, .. } = &mut *inner;
            order.retain(|(k, at)| entries.get(k).is_some_and(|e| e.stored_at == *at));
        }
    }

    /// A copy no older than `max_stale` at `now`.
    pub(crate) fn get(&self, key: &str, now: Nanos) -> Option<StaleEntry> {
        let inner = self.lock();
        let e = inner.entries.get(key)?;
        let age = now.saturating_sub(e.stored_at);
        (age <= self.config.max_stale.as_nanos() as u64).then(|| e.clone())
    }

    /// Entries and bytes held, for tests and the admin API.
    #[cfg(test)]
    pub(crate) fn usage(&self) -> (usize, u64) {
        let inner = self.lock();
        (inner.entries.len(), inner.bytes)
    }
}

/// The cache key of a request: host and target.
pub(crate) fn cache_key(host: Option<&HeaderValue>, uri: &http::Uri) -> String {
    let host = host
        .and_then(|h| h.to_str().ok())
        .or_else(|| uri.host())
        .unwrap_or("");
    let target = uri.path_and_query().map_or("/", |pq| pq.as_str());
    let mut key = String::with_capacity(host.len() + target.len() + 1);
    key.push_str(host);
    key.push(' ');
    key.push_str(target);
    key
}

/// Whether a response may be kept in this shared cache (RFC 9111 §3): a
/// 200 the origin did not forbid storing or sharing, without `Vary: *` or
/// a `Set-Cookie` (one user's session must never reach another), and, for a
/// request with `Authorization`, only when the origin marked it shareable
/// (`public`, `s-maxage` or `must-revalidate`, §3.5).
pub(crate) fn storable(status: StatusCode, headers: &HeaderMap, authorized: bool) -> bool {
    if status != StatusCode::OK || headers.contains_key(http::header::SET_COOKIE) {
        return false;
    }
    if headers.get_all(http::header::VARY).iter().any(|v| {
        v.to_str()
            .is_ok_and(|v| v.split(',').any(|f| f.trim() == "*"))
    }) {
        return false;
    }
    let mut shareable = false;
    for d in headers
        .get_all(http::header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
    {
        let d = d.trim();
        let name = d.split('=').next().unwrap_or("").trim();
        if name.eq_ignore_ascii_case("no-store") || name.eq_ignore_ascii_case("private") {
            return false;
        }
        shareable |= ["public", "s-maxage", "must-revalidate"]
            .iter()
            .any(|s| name.eq_ignore_ascii_case(s));
    }
    !authorized || shareable
}

/// Copies a response body into the cache as it streams to the client; the
/// copy is stored only if the body ends cleanly within the size bound.
#[derive(Debug)]
pub(crate) struct Tee {
    cache: Arc<StaleCache>,
    key: String,
    status: StatusCode,
    headers: HeaderMap,
    buf: BytesMut,
    started: Nanos,
}

impl Tee {
    pub(crate) fn new(
        cache: Arc<StaleCache>,
        key: String,
        status: StatusCode,
        headers: HeaderMap,
        now: Nanos,
    ) -> Self {
        Self {
            cache,
            key,
            status,
            headers,
            buf: BytesMut::new(),
            started: now,
        }
    }

    /// Adds a chunk; false once the body is too large to keep.
    pub(crate) fn push(&mut self, data: &[u8]) -> bool {
        if (self.buf.len() + data.len()) as u64 > self.cache.max_entry_bytes() {
            return false;
        }
        self.buf.extend_from_slice(data);
        true
    }

    /// Stores the complete body.
    pub(crate) fn finish(self) {
        let Tee {
            cache,
            key,
            status,
            headers,
            buf,
            started,
        } = self;
        cache.insert(
            key,
            StaleEntry {
                status,
                headers,
                body: buf.freeze(),
                stored_at: started,
            },
        );
    }
}

/// A route's fallbacks, resolved when the config is applied.
#[derive(Debug)]
pub(crate) struct RouteFallback {
    pub(crate) config: Fallback,
    pub(crate) stale: Option<Arc<StaleCache>>,
    pub(crate) response: Option<PreparedResponse>,
    /// Requests each kind answered, indexed by [`FallbackKind`].
    served: [Arc<Counter>; FallbackKind::ALL.len()],
}

/// The kinds of fallback, in the order they are tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FallbackKind {
    Stale,
    Cluster,
    Static,
}

impl FallbackKind {
    /// Every kind, in declaration order (the order of `served`).
    const ALL: [FallbackKind; 3] = [
        FallbackKind::Stale,
        FallbackKind::Cluster,
        FallbackKind::Static,
    ];

    /// Its metric label and `levee-degraded` value.
    pub(crate) fn name(self) -> &'static str {
        match self {
            FallbackKind::Stale => "stale",
            FallbackKind::Cluster => "cluster",
            FallbackKind::Static => "static",
        }
    }

    fn header_value(self) -> HeaderValue {
        HeaderValue::from_static(self.name())
    }
}

/// A fixed response with its body loaded.
#[derive(Debug, Clone)]
pub(crate) struct PreparedResponse {
    pub(crate) status: StatusCode,
    pub(crate) headers: Vec<(HeaderName, HeaderValue)>,
    pub(crate) body: Bytes,
}

impl RouteFallback {
    /// Resolves a route's fallbacks: loads a body file (relative paths
    /// against `base`) and reuses `previous_cache` when the cache settings
    /// did not change.
    pub(crate) fn new(
        route: &str,
        config: &Fallback,
        base: Option<&Path>,
        previous_cache: Option<Arc<StaleCache>>,
        registry: &Registry,
    ) -> Result<Self, String> {
        let response = config
            .response
            .as_ref()
            .map(|r| prepare(r, base))
            .transpose()?;
        let stale = config.serve_stale.as_ref().map(|s| {
            previous_cache
                .filter(|c| c.config == *s)
                .unwrap_or_else(|| Arc::new(StaleCache::new(s.clone())))
        });
        Ok(Self {
            config: config.clone(),
            stale,
            response,
            served: FallbackKind::ALL.map(|kind| {
                registry.counter(
                    names::FALLBACKS,
                    "Requests answered by a fallback, by route and kind.",
                    &[("route", route), ("kind", kind.name())],
                )
            }),
        })
    }

    /// Counts a request `kind` answered.
    fn count(&self, kind: FallbackKind) {
        self.served[kind as usize].inc();
    }

    /// Whether an upstream answer with `status` calls for the fallback.
    pub(crate) fn fails(&self, status: u16) -> bool {
        self.config.on_statuses.contains(&status)
    }
}

fn prepare(r: &StaticResponse, base: Option<&Path>) -> Result<PreparedResponse, String> {
    let body = match &r.body {
        StaticBody::Empty => Bytes::new(),
        StaticBody::Inline(s) => Bytes::from(s.clone()),
        StaticBody::File(path) => {
            let full = match base {
                Some(dir) if path.is_relative() => dir.join(path),
                _ => path.clone(),
            };
            std::fs::read(&full)
                .map(Bytes::from)
                .map_err(|e| format!("fallback body_file {}: {e}", full.display()))?
        }
    };
    Ok(PreparedResponse {
        status: StatusCode::from_u16(r.status).map_err(|e| e.to_string())?,
        headers: r
            .headers
            .iter()
            .filter_map(|(k, v)| Some((k.parse().ok()?, v.parse().ok()?)))
            .collect(),
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const S: u64 = 1_000_000_000;

    fn cache(max_entries: usize, max_bytes: u64) -> StaleCache {
        StaleCache::new(ServeStale {
            max_entries,
            max_bytes,
            max_entry_bytes: 100,
            max_stale: Duration::from_secs(60),
        })
    }

    fn entry(body: &'static str, at: Nanos) -> StaleEntry {
        StaleEntry {
            status: StatusCode::OK,
            headers: HeaderMap::new(),
            body: Bytes::from_static(body.as_bytes()),
            stored_at: at,
        }
    }

    #[test]
    fn bounded_by_entries_and_bytes_oldest_first() {
        let c = cache(2, 1000);
        c.insert("a".into(), entry("1", 0));
        c.insert("b".into(), entry("2", 1));
        c.insert("c".into(), entry("3", 2));
        assert!(c.get("a", 2).is_none());
        assert_eq!(c.usage(), (2, 2));
        let c = cache(10, 5);
        c.insert("a".into(), entry("123", 0));
        c.insert("b".into(), entry("456", 1));
        assert!(c.get("a", 1).is_none());
        assert_eq!(c.get("b", 1).unwrap().body, "456");
        assert_eq!(c.usage(), (1, 3));
    }

    #[test]
    fn overwriting_keeps_the_newest_and_counts_bytes_once() {
        let c = cache(2, 1000);
        for i in 0..50 {
            c.insert("a".into(), entry("xx", i));
        }
        c.insert("b".into(), entry("y", 51));
        assert_eq!(c.usage(), (2, 3));
        assert_eq!(c.get("a", 60).unwrap().stored_at, 49);
    }

    #[test]
    fn too_old_is_not_served_and_too_large_not_kept() {
        let c = cache(10, 1000);
        c.insert("a".into(), entry("1", 0));
        assert!(c.get("a", 60 * S).is_some());
        assert!(c.get("a", 61 * S).is_none());
        let big: &'static str = Box::leak("x".repeat(101).into_boxed_str());
        c.insert("big".into(), entry(big, 0));
        assert!(c.get("big", 0).is_none());
    }

    #[test]
    fn no_store_and_errors_are_not_storable() {
        let mut h = HeaderMap::new();
        assert!(storable(StatusCode::OK, &h, false));
        assert!(!storable(StatusCode::INTERNAL_SERVER_ERROR, &h, false));
        assert!(
            !storable(StatusCode::OK, &h, true),
            "authorized, not public"
        );
        h.insert(
            http::header::CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=60"),
        );
        assert!(storable(StatusCode::OK, &h, true));
        h.insert(
            http::header::CACHE_CONTROL,
            HeaderValue::from_static("max-age=0, No-Store"),
        );
        assert!(!storable(StatusCode::OK, &h, false));
        let mut h = HeaderMap::new();
        h.insert(http::header::SET_COOKIE, HeaderValue::from_static("s=1"));
        assert!(!storable(StatusCode::OK, &h, false));
        let mut h = HeaderMap::new();
        h.insert(http::header::VARY, HeaderValue::from_static("accept, *"));
        assert!(!storable(StatusCode::OK, &h, false));
    }
}
