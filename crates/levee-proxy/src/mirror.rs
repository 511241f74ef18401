//! Traffic mirroring (shadow traffic): a route's [`RouteMirror`] copies a
//! share of its requests to a shadow cluster, compares the shadow's answer
//! with the primary's, and throws the shadow's answer away.
//!
//! This module owns everything about it: which requests are copied (drawn
//! by weight; only bodies known whole and small; never upgrades), the
//! in-flight bound, the copy's head, sending it through the shadow cluster's
//! own pick and transport (one attempt, bounded by the mirror's timeout),
//! hashing the primary's response body as it streams ([`PrimaryWatch`],
//! carried by the request's `Completion`), the comparison, and the counters
//! (atomics, read by the control plane as [`MirrorStats`]) and metrics.
//!
//! The primary is never delayed, failed or retried because of its mirror:
//! the copy is spawned and takes none of the primary cluster's places. Of
//! the shadow cluster it skips admission (breaker, bulkheads, concurrency
//! limit, queue); it only picks an endpoint (whose breaker is consulted)
//! and opens or reuses a connection under the shadow's connection cap. It
//! feeds nothing back into the shadow's passive health or latency
//! estimates. A route without a mirror pays an `Option` check in dispatch
//! (and the record's empty `mirror` slot: a check per response chunk and
//! one when it is written).

use crate::body::UpstreamBody;
use crate::cluster::ClusterRuntime;
use crate::headers::{self, ForwardContext};
use crate::pipeline::attempt::Prepared;
use crate::pipeline::RequestContext;
use crate::record::Completion;
use crate::upstream::{Http1Conn, ResponseBody};
use bytes::Bytes;
use http::{header, HeaderMap, HeaderName, HeaderValue, Request, Uri, Version};
use levee_config::{Mirror, UpstreamProtocol, WEIGHT_SCALE};
use levee_core::metrics::{names, Counter, Histogram, Registry};
use levee_core::outcome::StatusClass;
use levee_core::time::Instant;
use levee_core::Outcome;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{oneshot, Semaphore};

/// The header that tells a shadow it got a copy.
pub(crate) const LEVEE_MIRROR: HeaderName = HeaderName::from_static("levee-mirror");

/// A route's mirror counters, as published to the control plane. Counts
/// start when the mirror's config last changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct MirrorStats {
    /// Copies sent to the shadow.
    pub sent: u64,
    /// Drawn, but not copied: a body streamed, of unknown length, or over
    /// `max_body_bytes`.
    pub skipped_body: u64,
    /// Drawn, but dropped: `max_in_flight` copies were already in flight.
    pub dropped_in_flight: u64,
    /// Copies the shadow failed: no endpoint, refused, timed out, or 5xx.
    pub shadow_errors: u64,
    /// Copies compared with a complete primary answer.
    pub compared: u64,
    /// Compared, with different status classes (2xx/3xx/4xx/5xx; a failure
    /// to answer is a class of its own).
    pub status_mismatch: u64,
    /// Compared, same status class, different body hashes.
    pub body_mismatch: u64,
    /// Compared without bodies: one was over `compare_body_bytes` or did
    /// not end (statuses still compared).
    pub body_not_compared: u64,
    /// Compared, and the shadow took over 1.5 times the primary's time and
    /// at least 10 ms more.
    pub shadow_slower: u64,
    /// Not compared: the primary's client left before the end, or the
    /// primary did not finish within the mirror's timeout.
    pub incomplete: u64,
}

impl MirrorStats {
    /// Mismatches (status or body) per comparison; `None` before any.
    pub fn mismatch_rate(&self) -> Option<f64> {
        (self.compared > 0)
            .then(|| (self.status_mismatch + self.body_mismatch) as f64 / self.compared as f64)
    }
}

/// How the shadow must be slower than the primary to count.
const SLOWER_FACTOR: f64 = 1.5;
const SLOWER_MIN: Duration = Duration::from_millis(10);

/// The counters behind [`MirrorStats`].
#[derive(Debug, Default)]
struct Counts {
    sent: AtomicU64,
    skipped_body: AtomicU64,
    dropped_in_flight: AtomicU64,
    shadow_errors: AtomicU64,
    compared: AtomicU64,
    status_mismatch: AtomicU64,
    body_mismatch: AtomicU64,
    body_not_compared: AtomicU64,
    shadow_slower: AtomicU64,
    incomplete: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// Pre-resolved metric handles of one route's mirror.
#[derive(Debug)]
struct MirrorMetrics {
    sent: Arc<Counter>,
    skipped_body: Arc<Counter>,
    dropped_in_flight: Arc<Counter>,
    shadow_error: Arc<Counter>,
    matched: Arc<Counter>,
    status_mismatch: Arc<Counter>,
    body_mismatch: Arc<Counter>,
    incomplete: Arc<Counter>,
    latency: Arc<Histogram>,
}

impl MirrorMetrics {
    fn new(registry: &Registry, route: &str) -> Self {
        let request = |result| {
            registry.counter(
                names::MIRROR_REQUESTS,
                "Requests drawn for mirroring, by route and result.",
                &[("route", route), ("result", result)],
            )
        };
        let comparison = |result| {
            registry.counter(
                names::MIRROR_COMPARISONS,
                "Mirrored requests compared with the primary's answer, by route and result.",
                &[("route", route), ("result", result)],
            )
        };
        Self {
            sent: request("sent"),
            skipped_body: request("skipped_body"),
            dropped_in_flight: request("dropped_in_flight"),
            shadow_error: request("shadow_error"),
            matched: comparison("match"),
            status_mismatch: comparison("status_mismatch"),
            body_mismatch: comparison("body_mismatch"),
            incomplete: comparison("incomplete"),
            latency: registry.histogram(
                names::MIRROR_LATENCY,
                "Time from dispatch to the end of the shadow's answer, by route.",
                &[("route", route)],
            ),
        }
    }
}

/// What a mirror keeps across reloads while its config is unchanged: the
/// counters and the in-flight bound.
#[derive(Debug)]
struct MirrorState {
    config: Mirror,
    in_flight: Arc<Semaphore>,
    counts: Counts,
    metrics: MirrorMetrics,
}

/// One route's mirror: its shadow cluster and its kept state. Built once
/// per route when a config is applied, shared by the route's listeners.
#[derive(Debug)]
pub(crate) struct RouteMirror {
    /// The shadow cluster as of this config.
    cluster: Arc<ClusterRuntime>,
    state: Arc<MirrorState>,
}

/// The mirrors of every route of `config` that has one (and whose shadow
/// cluster exists), keeping the state of those whose config is unchanged
/// in `previous`.
pub(crate) fn build(
    config: &levee_config::Config,
    clusters: &HashMap<String, Arc<ClusterRuntime>>,
    previous: &HashMap<String, Arc<RouteMirror>>,
    registry: &Registry,
) -> HashMap<String, Arc<RouteMirror>> {
    config
        .routes
        .iter()
        .filter_map(|r| {
            let m = r.mirror.as_ref()?;
            let cluster = clusters.get(&m.cluster)?.clone();
            let state = match previous.get(&r.name) {
                Some(p) if p.state.config == *m => p.state.clone(),
                _ => Arc::new(MirrorState {
                    config: m.clone(),
                    in_flight: Arc::new(Semaphore::new(m.max_in_flight as usize)),
                    counts: Counts::default(),
                    metrics: MirrorMetrics::new(registry, &r.name),
                }),
            };
            Some((r.name.clone(), Arc::new(RouteMirror { cluster, state })))
        })
        .collect()
}

impl RouteMirror {
    /// The counters now.
    pub(crate) fn stats(&self) -> MirrorStats {
        let c = &self.state.counts;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        MirrorStats {
            sent: get(&c.sent),
            skipped_body: get(&c.skipped_body),
            dropped_in_flight: get(&c.dropped_in_flight),
            shadow_errors: get(&c.shadow_errors),
            compared: get(&c.compared),
            status_mismatch: get(&c.status_mismatch),
            body_mismatch: get(&c.body_mismatch),
            body_not_compared: get(&c.body_not_compared),
            shadow_slower: get(&c.shadow_slower),
            incomplete: get(&c.incomplete),
        }
    }

    /// Step 5, just before the primary is sent: draws the request by
    /// weight and, if its body is known and small and a place is free,
    /// spawns its copy and leaves a [`PrimaryWatch`] in `done`. Never waits.
    pub(crate) fn copy(
        &self,
        ctx: &RequestContext<'_>,
        prepared: &Prepared,
        done: &mut Completion,
    ) {
        let state = &self.state;
        let config = &state.config;
        if config.weight < WEIGHT_SCALE
            && levee_core::ids::random_u64() % u64::from(WEIGHT_SCALE) >= u64::from(config.weight)
        {
            return;
        }
        let (parts, upgrade, body) = prepared.for_mirror();
        if upgrade {
            return;
        }
        let Some(body) = body.filter(|b| b.len() as u64 <= config.max_body_bytes) else {
            bump(&state.counts.skipped_body);
            state.metrics.skipped_body.inc();
            return;
        };
        let Ok(permit) = state.in_flight.clone().try_acquire_owned() else {
            bump(&state.counts.dropped_in_flight);
            state.metrics.dropped_in_flight.inc();
            return;
        };
        let Some(head) = Head::new(ctx, parts) else {
            return;
        };
        bump(&state.counts.sent);
        state.metrics.sent.inc();
        let (tx, rx) = oneshot::channel();
        done.mirror = Some(Box::new(PrimaryWatch::new(tx, config.compare_body_bytes)));
        let started = levee_core::time::now();
        let cluster = self.cluster.clone();
        let state = state.clone();
        tokio::spawn(async move {
            let deadline = started + state.config.timeout;
            let shadow = async {
                let compare = state.config.compare_body_bytes;
                let sent = tokio::time::timeout_at(deadline, shadow(&cluster, head, body, compare));
                let answer = sent.await.unwrap_or(Answer {
                    status: None,
                    digest: Digest::NotCompared,
                });
                // The place is given back as soon as the shadow is done.
                drop(permit);
                (answer, levee_core::time::now())
            };
            let primary = async { tokio::time::timeout_at(deadline, rx).await.ok()?.ok() };
            let ((answer, shadow_end), primary) = tokio::join!(shadow, primary);
            state.judge(started, answer, shadow_end, primary);
        });
    }
}

impl MirrorState {
    /// Counts the shadow's answer and compares it with the primary's.
    fn judge(
        &self,
        started: Instant,
        shadow: Answer,
        shadow_end: Instant,
        primary: Option<PrimaryEnd>,
    ) {
        let c = &self.counts;
        let m = &self.metrics;
        let shadow_time = shadow_end.saturating_duration_since(started);
        m.latency.observe_nanos(shadow_time.as_nanos() as u64);
        let shadow_class = match shadow.status {
            Some(status) => Class::Status(StatusClass::of(status)),
            None => Class::Failed,
        };
        if matches!(
            shadow_class,
            Class::Failed | Class::Status(StatusClass::ServerError)
        ) {
            bump(&c.shadow_errors);
            m.shadow_error.inc();
        }
        let Some(primary) = primary.filter(|p| p.complete) else {
            bump(&c.incomplete);
            m.incomplete.inc();
            return;
        };
        bump(&c.compared);
        let primary_time = primary.finished.saturating_duration_since(started);
        if shadow_time.as_secs_f64() > primary_time.as_secs_f64() * SLOWER_FACTOR
            && shadow_time >= primary_time + SLOWER_MIN
        {
            bump(&c.shadow_slower);
        }
        if Class::of(primary.outcome) != shadow_class {
            bump(&c.status_mismatch);
            m.status_mismatch.inc();
            return;
        }
        match (primary.digest, shadow.digest) {
            (Digest::Hash(a), Digest::Hash(b)) if a != b => {
                bump(&c.body_mismatch);
                m.body_mismatch.inc();
                return;
            }
            (Digest::Hash(_), Digest::Hash(_)) => {}
            _ => bump(&c.body_not_compared),
        }
        m.matched.inc();
    }
}

/// A status class, or no answer at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Status(StatusClass),
    Failed,
}

impl Class {
    fn of(outcome: Outcome) -> Self {
        match outcome {
            Outcome::Response(status) => Class::Status(StatusClass::of(status)),
            // A gRPC failure travels in an HTTP 200.
            Outcome::Grpc(_) => Class::Status(StatusClass::Success),
            Outcome::Failed(_) => Class::Failed,
        }
    }
}

/// A response body's hash, when it was read whole within the bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Digest {
    Hash(u64),
    /// Over `compare_body_bytes`, or it did not end.
    NotCompared,
}

/// FNV-1a, 64 bits: fast, chunking-independent, and fixed across
/// processes (no keys), which is all a comparison needs.
#[derive(Debug, Clone, Copy)]
struct Fnv(u64);

impl Fnv {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;

    fn new() -> Self {
        Self(Self::OFFSET)
    }

    fn write(&mut self, data: &[u8]) {
        let mut h = self.0;
        for b in data {
            h ^= u64::from(*b);
            h = h.wrapping_mul(Self::PRIME);
        }
        self.0 = h;
    }
}

/// A body hashed while it passes, up to a bound.
#[derive(Debug)]
struct BoundedHash {
    hash: Fnv,
    seen: u64,
    limit: u64,
}

impl BoundedHash {
    fn new(limit: u64) -> Self {
        Self {
            hash: Fnv::new(),
            seen: 0,
            limit,
        }
    }

    /// Adds a chunk; false once the body is over the bound.
    fn push(&mut self, data: &[u8]) -> bool {
        self.seen += data.len() as u64;
        if self.seen > self.limit {
            return false;
        }
        self.hash.write(data);
        true
    }

    fn digest(&self, complete: bool) -> Digest {
        if complete && self.seen <= self.limit {
            Digest::Hash(self.hash.0)
        } else {
            Digest::NotCompared
        }
    }
}

/// The primary's side of a mirrored request, carried by its `Completion`:
/// the response body hashed as it streams to the client (nothing is kept
/// or waited for), and the result sent to the mirror task when the record
/// is written.
#[derive(Debug)]
pub(crate) struct PrimaryWatch {
    tx: oneshot::Sender<PrimaryEnd>,
    body: BoundedHash,
}

/// How the primary ended, for the comparison.
#[derive(Debug)]
struct PrimaryEnd {
    outcome: Outcome,
    /// The body reached the client whole.
    complete: bool,
    digest: Digest,
    finished: Instant,
}

impl PrimaryWatch {
    fn new(tx: oneshot::Sender<PrimaryEnd>, compare_body_bytes: u64) -> Self {
        Self {
            tx,
            body: BoundedHash::new(compare_body_bytes),
        }
    }

    /// A chunk of the primary's response body, as it goes to the client.
    pub(crate) fn push(&mut self, data: &[u8]) {
        // Past the bound, only the count moves (the digest is settled).
        self.body.push(data);
    }

    /// The primary's record is written: tells the mirror task how it
    /// ended. A mirror task that gave up already is not told.
    pub(crate) fn finish(self, outcome: Outcome, complete: bool, finished: Instant) {
        let _ = self.tx.send(PrimaryEnd {
            outcome,
            complete,
            digest: self.body.digest(complete),
            finished,
        });
    }
}

/// The copy's head, built on the request path from the primary's (so the
/// task needs nothing of the route).
struct Head {
    method: http::Method,
    path_and_query: http::uri::PathAndQuery,
    headers: HeaderMap,
    original_host: Option<HeaderValue>,
}

impl Head {
    /// The head as the primary's cluster gets it (hop-by-hop headers
    /// stripped, `X-Forwarded-*` set, the route's edits and rewrite
    /// applied), marked `levee-mirror: 1`. `None` if the rewritten target
    /// is invalid (the primary fails the same way).
    fn new(ctx: &RequestContext<'_>, parts: &http::request::Parts) -> Option<Self> {
        let route = ctx.route;
        let path_and_query = match route.rewrite_path_and_query(&parts.uri) {
            Some(pq) => pq.parse().ok()?,
            None => parts
                .uri
                .path_and_query()
                .cloned()
                .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/")),
        };
        let original_host = parts.headers.get(header::HOST).cloned().or_else(|| {
            parts
                .uri
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        });
        let mut headers = parts.headers.clone();
        headers::remove_hop_by_hop(&mut headers, false);
        headers::set_forwarding(
            &mut headers,
            &ForwardContext {
                client_ip: ctx.conn.peer.ip(),
                tls: ctx.conn.tls,
                original_host: original_host.as_ref(),
            },
        );
        headers::apply_ops(&mut headers, &route.request_remove, &route.request_set);
        headers.insert(LEVEE_MIRROR, HeaderValue::from_static("1"));
        Some(Self {
            method: parts.method.clone(),
            path_and_query,
            headers,
            original_host,
        })
    }
}

/// What the shadow answered.
#[derive(Debug)]
struct Answer {
    /// `None`: no answer (no endpoint, refused, reset, timed out).
    status: Option<u16>,
    digest: Digest,
}

/// Sends the copy to one endpoint of the shadow cluster (one attempt) and
/// reads its body up to `compare` bytes, hashing it; the rest is dropped.
async fn shadow(cluster: &ClusterRuntime, head: Head, body: Bytes, compare: u64) -> Answer {
    let failed = Answer {
        status: None,
        digest: Digest::NotCompared,
    };
    let Ok(endpoint) = cluster.pick(None, cluster.now()) else {
        return failed;
    };
    let Ok(uri) = Uri::builder()
        .scheme(http::uri::Scheme::HTTP)
        .authority(endpoint.authority.clone())
        .path_and_query(head.path_and_query)
        .build()
    else {
        return failed;
    };
    let mut req = Request::new(UpstreamBody::replay(body));
    *req.method_mut() = head.method;
    *req.uri_mut() = uri;
    *req.version_mut() = match cluster.config.protocol {
        UpstreamProtocol::Http1 => Version::HTTP_11,
        UpstreamProtocol::Http2 => Version::HTTP_2,
    };
    *req.headers_mut() = head.headers;
    headers::set_host(
        req.headers_mut(),
        &cluster.config.host_header,
        head.original_host.as_ref(),
        &endpoint.host_value,
    );
    let sent = cluster.transport.send(
        endpoint.addr,
        &endpoint.idle,
        req,
        false,
        cluster.config.connect_timeout,
    );
    let resp = match sent.await {
        Ok(answer) => answer,
        Err((kind, detail)) => {
            tracing::debug!(cluster = %cluster.name(), reason = kind.reason(), %detail, "mirrored request failed");
            return failed;
        }
    };
    let status = resp.status().as_u16();
    let (digest, conn) = read_body(resp.into_body(), compare).await;
    if let Some(conn) = conn {
        cluster.release(&endpoint, conn);
    }
    Answer {
        status: Some(status),
        digest,
    }
}

/// Reads a shadow's body, hashing up to `limit` bytes. The connection
/// comes back only when the body ended cleanly (so it can be pooled).
async fn read_body(mut body: ResponseBody, limit: u64) -> (Digest, Option<Http1Conn>) {
    use http_body::Body as _;
    use std::pin::Pin;
    let mut hash = BoundedHash::new(limit);
    loop {
        match std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    if !hash.push(data) {
                        // Over the bound: not compared, and not read further.
                        return (Digest::NotCompared, None);
                    }
                }
            }
            Some(Err(_)) => return (Digest::NotCompared, None),
            None => return (hash.digest(true), body.take_connection()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use levee_core::ErrorKind;

    #[test]
    fn fnv_is_independent_of_chunking() {
        let mut whole = BoundedHash::new(100);
        whole.push(b"hello, world");
        let mut parts = BoundedHash::new(100);
        parts.push(b"hel");
        parts.push(b"");
        parts.push(b"lo, world");
        assert_eq!(whole.digest(true), parts.digest(true));
        let mut other = BoundedHash::new(100);
        other.push(b"hello, world!");
        assert_ne!(whole.digest(true), other.digest(true));
    }

    #[test]
    fn bodies_over_the_bound_or_unfinished_are_not_compared() {
        let mut h = BoundedHash::new(4);
        assert!(h.push(b"abcd"));
        assert!(matches!(h.digest(true), Digest::Hash(_)));
        assert_eq!(h.digest(false), Digest::NotCompared);
        assert!(!h.push(b"e"));
        assert_eq!(h.digest(true), Digest::NotCompared);
    }

    #[test]
    fn mismatch_rate_counts_status_and_body_mismatches() {
        assert_eq!(MirrorStats::default().mismatch_rate(), None);
        let s = MirrorStats {
            compared: 10,
            status_mismatch: 1,
            body_mismatch: 2,
            ..Default::default()
        };
        assert_eq!(s.mismatch_rate(), Some(0.3));
    }

    #[test]
    fn a_failure_to_answer_is_its_own_class() {
        assert_eq!(
            Class::of(Outcome::Response(503)),
            Class::Status(StatusClass::ServerError)
        );
        assert_eq!(
            Class::of(Outcome::Failed(ErrorKind::UpstreamTimeout)),
            Class::Failed
        );
        assert_ne!(Class::of(Outcome::Response(504)), Class::Failed);
    }
}
