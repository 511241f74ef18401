//! Step 5 of the life of a request: dispatch. [`dispatch`] prepares the
//! request (its body, read first when the route may send it twice), then
//! [`send`] runs the attempt loop: each attempt picks an endpoint, goes out
//! with a per-try timeout and the deadline left, and is classified; the
//! route's retry rules (`retry.rs`: which failures, the safety rule,
//! budgets, backoff, `Retry-After`) decide whether another follows, and
//! hedged routes race attempts (`hedge.rs` says when). Each attempt's
//! outcome feeds passive health, latency estimates and the cluster's
//! concurrency limit as it ends. A 101 answer starts a byte tunnel.

use crate::admit::ClusterAdmission;
use crate::body::RequestBody;
use crate::body::{ProxyBody, UpstreamBody};
use crate::cluster::{ClusterRuntime, EndpointState};
use crate::headers::{self, ForwardContext, GRPC_TIMEOUT, LEVEE_DEADLINE};
use crate::hedge::HedgePolicy;
use crate::pipeline::respond::Refusal;
use crate::pipeline::RequestContext;
use crate::record::Completion;
use crate::retry::RouteRetry;
use crate::router::CompiledRoute;
use crate::upstream::ResponseBody;
use http::{header, HeaderValue, Request, Response, StatusCode, Uri, Version};
use hyper_util::rt::TokioIo;
use levee_config::{HashOn, UpstreamProtocol};
use levee_core::outcome::StatusClass;
use levee_core::time::Instant;
use levee_core::{deadline, ErrorKind, Outcome};
use levee_policy::hash::hash64;
use std::sync::Arc;
use std::time::Duration;

/// The request body as attempts see it: bytes that can be sent again, or a
/// stream that can be sent once (unless its copy turns out complete).
enum AttemptBody {
    Replay(bytes::Bytes),
    /// Streamed once; with a capture, a body that ended within the route's
    /// buffer can be sent again.
    Stream {
        body: Option<RequestBody>,
        capture: Option<Capturing>,
    },
}

/// A streamed body's copy, kept while it stays within `max` bytes.
struct Capturing {
    copy: Arc<crate::body::Capture>,
    max: u64,
}

impl AttemptBody {
    fn stream(body: RequestBody) -> Self {
        AttemptBody::Stream {
            body: Some(body),
            capture: None,
        }
    }

    /// The body for the next attempt, if there is one to send.
    fn next(&mut self, limit: u64) -> Option<UpstreamBody> {
        match self {
            AttemptBody::Replay(bytes) => Some(UpstreamBody::replay(bytes.clone())),
            AttemptBody::Stream { body, capture } => match body.take() {
                Some(b) => {
                    let upstream = UpstreamBody::limited(b, limit);
                    Some(match capture {
                        Some(c) => upstream.capturing(c.copy.clone(), c.max),
                        None => upstream,
                    })
                }
                None => capture
                    .as_ref()
                    .and_then(|c| c.copy.replayable())
                    .map(UpstreamBody::replay),
            },
        }
    }

    /// Whether the next attempt can send the whole body again.
    fn replayable(&self) -> bool {
        match self {
            AttemptBody::Replay(_) => true,
            AttemptBody::Stream {
                body: None,
                capture: Some(c),
            } => c.copy.replayable().is_some(),
            AttemptBody::Stream { .. } => false,
        }
    }
}

/// The largest request body a route keeps for sending again (to a retry,
/// a hedge or a fallback cluster); `None` when it never sends twice.
fn replay_limit(route: &CompiledRoute, upgrade: bool) -> Option<u64> {
    if upgrade {
        return None;
    }
    let resend = match (&route.retry, &route.fallback_route) {
        (Some(r), _) => Some(r.policy.buffer_bytes),
        (None, Some(_)) => Some(levee_config::RetryPolicy::default().buffer_bytes),
        (None, None) => None,
    };
    // A mirrored route reads small bodies ahead too, so the copy has one.
    let mirror = route.config.mirror.as_ref().map(|m| m.max_body_bytes);
    resend.into_iter().chain(mirror).max()
}

/// Prepares the body for a route that may send it twice: empty bodies and
/// bodies declared no larger than `replay_limit` are read now and can be
/// replayed; others stream once.
async fn attempt_body(
    body: RequestBody,
    declared: Option<u64>,
    replay_limit: Option<u64>,
    limit: u64,
) -> Result<AttemptBody, (ErrorKind, String)> {
    use http_body::Body as _;
    let Some(replay_limit) = replay_limit else {
        return Ok(AttemptBody::stream(body));
    };
    if body.is_end_stream() {
        return Ok(AttemptBody::Replay(bytes::Bytes::new()));
    }
    match declared {
        Some(n) if n <= replay_limit.min(limit) => {
            let collected = http_body_util::BodyExt::collect(body).await.map_err(|e| {
                let kind = crate::body::BodyError::from_downstream(e).kind();
                (kind, body_fault_detail(kind).to_string())
            })?;
            Ok(AttemptBody::Replay(collected.to_bytes()))
        }
        // Declared too large: never sent twice.
        Some(_) => Ok(AttemptBody::stream(body)),
        // Unknown length (chunked, HTTP/2 without content-length): streamed
        // at once, with a copy that makes it replayable if it ends in time.
        None => Ok(AttemptBody::Stream {
            body: Some(body),
            capture: Some(Capturing {
                copy: Arc::default(),
                max: replay_limit.min(limit),
            }),
        }),
    }
}

/// Why a request body stopped on the client's side, in Levee's words.
fn body_fault_detail(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::PayloadTooLarge => "request body exceeds the listener's max_request_body_bytes",
        ErrorKind::BadRequest => "the request body's framing is invalid",
        _ => "the client went away while sending the request body",
    }
}

/// One request counted in flight on an endpoint until dropped.
struct InFlight<'a>(&'a levee_core::metrics::Gauge);

impl<'a> InFlight<'a> {
    fn new(gauge: &'a levee_core::metrics::Gauge) -> Self {
        gauge.inc();
        Self(gauge)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// One attempt awaiting its answer on an endpoint's stall watch; a
/// cancelled attempt (a lost hedge, a client gone) counts as no answer.
struct Awaiting<'a>(Option<&'a levee_policy::stall::StallWatch>);

impl<'a> Awaiting<'a> {
    fn new(watch: &'a levee_policy::stall::StallWatch, now: levee_core::Nanos) -> Self {
        watch.started(now);
        Self(Some(watch))
    }

    fn finish(mut self, now: levee_core::Nanos, answered: bool) {
        if let Some(w) = self.0.take() {
            w.finished(now, answered);
        }
    }
}

impl Drop for Awaiting<'_> {
    fn drop(&mut self) {
        if let Some(w) = self.0.take() {
            w.abandoned();
        }
    }
}

/// A response head and its body (which owns an HTTP/1.1 connection).
type Sent = Response<ResponseBody>;

/// One attempt's result and the endpoint it went to.
struct Attempt {
    endpoint: Arc<EndpointState>,
    result: Result<Sent, (ErrorKind, String)>,
}

impl Attempt {
    /// Whether the answer can go to the client as it is (not one the
    /// route would retry).
    fn is_good(&self, retry: Option<&RouteRetry>) -> bool {
        match &self.result {
            Ok(resp) => {
                retry.is_none_or(|r| !r.retries_response(resp.status().as_u16(), resp.headers()))
            }
            Err(_) => false,
        }
    }
}

/// The endpoint a request went to first.
fn first_tried(tried: &[Arc<EndpointState>]) -> Arc<EndpointState> {
    tried
        .first()
        .cloned()
        .expect("a hedged request has tried its first endpoint")
}

/// A retry's (or hedge's) places, held while it is in flight: one under the
/// cluster's retry bulkhead, one under the route's retry budget.
struct RetryPlaces<'a> {
    _slot: crate::guard::RetrySlot<'a>,
    _budget: crate::retry::ActiveRetry<'a>,
}

/// How a hedged route races its attempts.
#[derive(Clone, Copy)]
struct Hedging<'a> {
    policy: &'a HedgePolicy,
    /// Hedges draw on the route's retry budgets.
    retry: &'a RouteRetry,
    /// How long an attempt runs before a hedge joins it.
    delay: Duration,
    /// The body every hedge sends.
    replay: &'a bytes::Bytes,
}

/// What every attempt of one request shares.
struct AttemptPlan<'a> {
    cluster: &'a Arc<ClusterRuntime>,
    /// Runtime faults, beside the cluster's configured ones.
    faults: &'a crate::fault::FaultBoard,
    route: &'a CompiledRoute,
    method: &'a http::Method,
    uri: &'a Uri,
    version: Version,
    original_host: Option<&'a HeaderValue>,
    relay_grpc_timeout: bool,
    upgrade: bool,
    connect_timeout: std::time::Duration,
    per_try: std::time::Duration,
    deadline: Instant,
}

impl AttemptPlan<'_> {
    /// Sends one attempt to `endpoint` and feeds its outcome to passive
    /// health, latency estimates and metrics.
    async fn run(
        &self,
        endpoint: Arc<EndpointState>,
        body: UpstreamBody,
        headers: http::HeaderMap,
    ) -> Attempt {
        let cluster = self.cluster;
        let sent = levee_core::time::now();
        let body_fault = body.fault();
        let mut upstream_req = Request::new(body);
        *upstream_req.method_mut() = self.method.clone();
        *upstream_req.uri_mut() = match upstream_uri(self.uri, self.route, &endpoint) {
            Ok(uri) => uri,
            Err(e) => {
                return Attempt {
                    endpoint,
                    result: Err(e),
                }
            }
        };
        *upstream_req.version_mut() = self.version;
        *upstream_req.headers_mut() = headers;
        headers::set_host(
            upstream_req.headers_mut(),
            &cluster.config.host_header,
            self.original_host,
            &endpoint.host_value,
        );
        let left = self.deadline.saturating_duration_since(sent);
        if self.route.config.honor_deadlines {
            // Tell the upstream how long the answer is still wanted.
            let headers = upstream_req.headers_mut();
            let millis = u64::try_from(left.as_millis()).unwrap_or(u64::MAX);
            headers.insert(LEVEE_DEADLINE, HeaderValue::from(millis));
            if self.relay_grpc_timeout {
                if let Ok(v) = HeaderValue::from_str(&deadline::format_grpc_timeout(left)) {
                    headers.insert(GRPC_TIMEOUT, v);
                }
            }
        }
        let timeout = self.per_try.min(left);
        // Counted while the head is awaited (also when the attempt is
        // cancelled: a lost hedge, a client that left); the response body's
        // time is counted by the request's record.
        let counted = InFlight::new(&endpoint.in_flight);
        let awaiting = Awaiting::new(&endpoint.stall, cluster.nanos_at(sent));
        let admitted = cluster.queue.as_ref().map_or(0, |q| q.in_flight());
        // An injected upstream fault acts here, below retries, breakers and
        // outlier detection, which see it as the endpoint's failure.
        let injected = crate::fault::attempt_fault(
            &cluster.faults,
            self.faults,
            cluster.name(),
            &endpoint.configured,
        );
        let send = async {
            use levee_config::UpstreamFaultKind as Kind;
            let transport = &cluster.transport;
            let (addr, idle) = (endpoint.addr, &endpoint.idle);
            match injected.as_ref().map(|i| i.kind) {
                None => {
                    transport
                        .send(addr, idle, upstream_req, self.upgrade, self.connect_timeout)
                        .await
                }
                Some(Kind::Refuse) => Err((
                    ErrorKind::ConnectRefused,
                    "connection refused (injected fault)".to_string(),
                )),
                Some(Kind::Hang) => std::future::pending().await,
                Some(Kind::Slow { delay }) => {
                    tokio::time::sleep(delay).await;
                    transport
                        .send(addr, idle, upstream_req, self.upgrade, self.connect_timeout)
                        .await
                }
                Some(Kind::Error { status }) => {
                    let fault = crate::upstream::IoFault::Answer(status);
                    transport
                        .send_faulted(addr, idle, upstream_req, self.connect_timeout, fault)
                        .await
                }
                Some(Kind::ResetMidBody { after_bytes }) => {
                    let fault = crate::upstream::IoFault::ResetAfter(after_bytes);
                    transport
                        .send_faulted(addr, idle, upstream_req, self.connect_timeout, fault)
                        .await
                }
            }
        };
        let result = match tokio::time::timeout(timeout, send).await {
            Err(_) => Err((
                ErrorKind::UpstreamTimeout,
                format!(
                    "{} did not answer within {}",
                    endpoint.label,
                    levee_config::format_duration(timeout)
                ),
            )),
            Ok(Err((kind, detail))) => Err((kind, format!("{}: {detail}", endpoint.label))),
            Ok(Ok(sent)) => Ok(sent),
        };
        // A request body that failed on the client's side is the client's
        // failure, however the upstream reacted to it (an HTTP/2 upstream
        // sees only a reset stream).
        let result = match (result, body_fault.as_deref().and_then(|f| f.kind())) {
            (Err(_), Some(kind)) => Err((kind, body_fault_detail(kind).to_string())),
            (result, _) => result,
        };
        // The attempt's outcome feeds passive health (failures of the
        // client's own making are not the endpoint's).
        let outcome = match &result {
            Ok(resp) => Some(Outcome::Response(resp.status().as_u16())),
            Err((kind, _)) if kind.side() != levee_core::Side::Downstream => {
                Some(Outcome::Failed(*kind))
            }
            Err(_) => None,
        };
        drop(counted);
        let finished = levee_core::time::now();
        let rtt = finished.duration_since(sent);
        let now = cluster.nanos_at(finished);
        // A timeout is no sign of life; an answer or a quick refusal is.
        let answered = !matches!(
            &result,
            Err((ErrorKind::UpstreamTimeout | ErrorKind::ConnectTimeout, _))
        );
        awaiting.finish(now, answered);
        if let Some(outcome) = outcome {
            cluster.record_outcome(&endpoint, outcome, rtt, now);
        }
        if let Some(queue) = &cluster.queue {
            let shed_mark = matches!(&result, Ok(resp) if crate::retry::is_shed(resp.headers()));
            queue.on_attempt(outcome, rtt, admitted, shed_mark);
        }
        if let Ok(resp) = &result {
            let rtt_ns = rtt.as_nanos() as u64;
            cluster.observe_latency(&endpoint, rtt_ns, now);
            cluster.metrics.latency.observe_nanos(rtt_ns);
            let class = StatusClass::of(resp.status().as_u16());
            cluster.metrics.upstream_requests.of(class).inc();
            if let Some(h) = &self.route.hedge {
                h.latency.observe(rtt_ns, now);
            }
        }
        Attempt { endpoint, result }
    }

    /// Sends the first attempt and, each time the hedging delay passes
    /// without a good answer, a hedge to another endpoint (within the retry
    /// budgets); the first good answer wins and the others are cancelled by
    /// dropping them. `tried` starts with `first`.
    async fn hedged(
        &self,
        first: Arc<EndpointState>,
        first_body: UpstreamBody,
        headers: &http::HeaderMap,
        hedging: &Hedging<'_>,
        tried: &mut Vec<Arc<EndpointState>>,
    ) -> Attempt {
        use futures_util::StreamExt as _;
        let Hedging {
            policy: hedge,
            retry,
            delay,
            replay,
        } = *hedging;
        let cluster = self.cluster;
        let mut racing = futures_util::stream::FuturesUnordered::new();
        racing.push(self.run(first, first_body, headers.clone()));
        let mut hedges_left = hedge.config.max_hedges;
        let mut guards = Vec::new();
        let mut last = None;
        let timer = tokio::time::sleep(delay);
        tokio::pin!(timer);
        loop {
            tokio::select! {
                finished = racing.next() => match finished {
                    Some(a) if a.is_good(Some(retry)) => {
                        if !tried.first().is_some_and(|first| Arc::ptr_eq(&a.endpoint, first)) {
                            hedge.won.inc();
                        }
                        return a;
                    }
                    Some(a) => {
                        last = Some(a);
                        if racing.is_empty() {
                            break;
                        }
                    }
                    None => break,
                },
                () = &mut timer, if hedges_left > 0 => {
                    hedges_left -= 1;
                    let now = levee_core::time::now();
                    timer.as_mut().reset(now + delay);
                    let Some(slot) = cluster.bulkheads.try_retry() else { continue };
                    let Some(budget) = retry.withdraw(cluster.nanos_at(now)) else { continue };
                    let Ok(endpoint) = cluster.pick_other(cluster.nanos_at(now), tried) else { continue };
                    if tried.iter().any(|t| Arc::ptr_eq(t, &endpoint)) {
                        continue;
                    }
                    hedge.sent.inc();
                    tried.push(endpoint.clone());
                    guards.push(RetryPlaces { _slot: slot, _budget: budget });
                    racing.push(self.run(endpoint, UpstreamBody::replay(replay.clone()), headers.clone()));
                }
            }
        }
        last.unwrap_or_else(|| Attempt {
            endpoint: first_tried(tried),
            result: Err((ErrorKind::Internal, "no attempt finished".to_string())),
        })
    }
}

/// What step 6 may need once the request went out: the cluster's answer,
/// and what a fallback needs of the request.
pub(crate) struct Dispatched {
    /// The response head, or the last classified failure.
    pub(crate) result: Result<Response<ProxyBody>, (ErrorKind, String)>,
    /// The request again, for a fallback cluster (only on routes with one;
    /// a streamed body counts once its copy turns out complete).
    pub(crate) again: Option<Again>,
    /// The stale cache's key, for a GET on a route that serves stale.
    pub(crate) stale_key: Option<String>,
    /// Whether the request carried `Authorization` (shared caching rules).
    pub(crate) authorized: bool,
}

/// The request as a fallback cluster would get it.
pub(crate) struct Again {
    parts: http::request::Parts,
    body: SecondBody,
}

/// The request body kept for a fallback cluster.
enum SecondBody {
    /// Read before the first attempt.
    Read(bytes::Bytes),
    /// Copied while streaming; usable if it ended within the buffer.
    Captured(Arc<crate::body::Capture>),
}

impl Again {
    /// The request for a fallback cluster, if its body can be sent again.
    pub(crate) fn outbound(self) -> Option<Outbound> {
        let bytes = match self.body {
            SecondBody::Read(bytes) => bytes,
            SecondBody::Captured(c) => c.replayable()?,
        };
        Some(Outbound {
            parts: self.parts,
            body: AttemptBody::Replay(bytes),
            upgrade: false,
            downstream_upgrade: None,
        })
    }
}

/// A request on its way to a cluster.
pub(crate) struct Outbound {
    parts: http::request::Parts,
    body: AttemptBody,
    upgrade: bool,
    downstream_upgrade: Option<hyper::upgrade::OnUpgrade>,
}

impl Outbound {
    /// A request whose body is known whole (a job's, at delivery).
    pub(crate) fn whole(parts: http::request::Parts, body: bytes::Bytes) -> Self {
        Self {
            parts,
            body: AttemptBody::Replay(body),
            upgrade: false,
            downstream_upgrade: None,
        }
    }
}

/// A request ready to go out: its body read when the route may send it
/// twice, and what a fallback would need of it.
pub(crate) struct Prepared {
    request: Outbound,
    again: Option<Again>,
    stale_key: Option<String>,
    authorized: bool,
}

impl Prepared {
    /// The request's headers.
    pub(crate) fn headers(&self) -> &http::HeaderMap {
        &self.request.parts.headers
    }

    /// The request's head and whole body (read now if it streams), for a
    /// job; over `limit` bytes is refused (413).
    pub(crate) async fn into_whole(
        self,
        limit: u64,
    ) -> Result<(http::request::Parts, bytes::Bytes), Refusal<'static>> {
        let too_large = || {
            Refusal::new(
                ErrorKind::PayloadTooLarge,
                "the request body exceeds the async route's max_body_bytes",
            )
        };
        let Outbound { parts, body, .. } = self.request;
        let bytes = match body {
            AttemptBody::Replay(bytes) => bytes,
            AttemptBody::Stream { body: None, .. } => bytes::Bytes::new(),
            AttemptBody::Stream { body: Some(b), .. } => {
                crate::jobs::submit::job_body(b, limit).await?
            }
        };
        if bytes.len() as u64 > limit {
            return Err(too_large());
        }
        Ok((parts, bytes))
    }

    /// What a mirror copies: the head, whether it is an upgrade, and the
    /// body when known whole (none, or read in advance); `None` when it
    /// streams.
    pub(crate) fn for_mirror(&self) -> (&http::request::Parts, bool, Option<bytes::Bytes>) {
        let body = match &self.request.body {
            AttemptBody::Replay(bytes) => Some(bytes.clone()),
            AttemptBody::Stream { body: Some(b), .. } if http_body::Body::is_end_stream(b) => {
                Some(bytes::Bytes::new())
            }
            AttemptBody::Stream { .. } => None,
        };
        (&self.request.parts, self.request.upgrade, body)
    }
}

/// Reads the body when the route may send it twice (retry, hedge,
/// fallback cluster) and it is small enough, and keeps what a fallback
/// would need. Part of admission (step 4), before the cluster is asked,
/// so a slow upload holds no place in the cluster. A body the client fails
/// to send is refused at once.
pub(crate) async fn prepare(
    route: &CompiledRoute,
    conn: &crate::listener::ConnInfo,
    upgrade: bool,
    body_limit: u64,
    mut req: Request<RequestBody>,
) -> Result<Prepared, Refusal<'static>> {
    // Plain HTTP/1.1 connections join upgraded sockets in their own task.
    let downstream_upgrade =
        (upgrade && !conn.manual_upgrades()).then(|| hyper::upgrade::on(&mut req));
    let declared = headers::content_length(req.headers());
    let (parts, body) = req.into_parts();
    let replay = replay_limit(route, upgrade);
    let body = attempt_body(body, declared, replay, body_limit).await?;
    let again = route.fallback_route.as_ref().and_then(|_| {
        let body = match &body {
            AttemptBody::Replay(bytes) => SecondBody::Read(bytes.clone()),
            AttemptBody::Stream {
                capture: Some(capture),
                ..
            } => SecondBody::Captured(capture.copy.clone()),
            AttemptBody::Stream { .. } => return None,
        };
        Some(Again {
            parts: parts.clone(),
            body,
        })
    });
    let stale_key = route
        .fallback
        .as_deref()
        .and_then(|f| f.stale.as_ref())
        .filter(|_| parts.method == http::Method::GET)
        .map(|_| crate::degrade::cache_key(parts.headers.get(header::HOST), &parts.uri));
    let authorized = parts.headers.contains_key(header::AUTHORIZATION);
    Ok(Prepared {
        request: Outbound {
            parts,
            body,
            upgrade,
            downstream_upgrade,
        },
        again,
        stale_key,
        authorized,
    })
}

/// Step 5: sends the prepared request to the route's cluster if it was
/// admitted, retrying and hedging as the route allows.
pub(crate) async fn dispatch(
    ctx: &RequestContext<'_>,
    admission: ClusterAdmission<'_>,
    prepared: Prepared,
    done: &mut Completion,
) -> Dispatched {
    let result = match admission.refused {
        None => {
            // A copy for the route's shadow cluster, never waited for.
            if let Some(mirror) = &ctx.route.mirror {
                mirror.copy(ctx, &prepared, done);
            }
            send(ctx, ctx.route, ctx.deadline, prepared.request, done).await
        }
        Some(refused) => Err(refused),
    };
    Dispatched {
        result,
        again: prepared.again,
        stale_key: prepared.stale_key,
        authorized: prepared.authorized,
    }
}

/// Sends the request to endpoints of `route`'s cluster (several when the
/// route retries or hedges) until `deadline`, and returns the response
/// head, or the last classified failure.
pub(crate) async fn send(
    ctx: &RequestContext<'_>,
    route: &CompiledRoute,
    deadline: Instant,
    request: Outbound,
    done: &mut Completion,
) -> Result<Response<ProxyBody>, (ErrorKind, String)> {
    let start = levee_core::time::now();
    let cluster = &route.cluster;
    let conn = ctx.conn;
    let Outbound {
        mut parts,
        mut body,
        upgrade,
        downstream_upgrade,
    } = request;
    let hash = cluster
        .hash_on()
        .and_then(|key| request_hash(key, &parts, conn.peer.ip()));
    let retry = route.retry.as_ref().filter(|_| !upgrade);
    let idempotent = retry.is_some_and(|r| r.policy.idempotent)
        || crate::retry::idempotent_method(&parts.method)
        || parts.headers.contains_key("idempotency-key");
    let original_host = parts.headers.get(header::HOST).cloned().or_else(|| {
        parts
            .uri
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    });
    let version = match cluster.config.protocol {
        UpstreamProtocol::Http1 => Version::HTTP_11,
        UpstreamProtocol::Http2 => Version::HTTP_2,
    };
    headers::remove_hop_by_hop(&mut parts.headers, upgrade);
    headers::set_forwarding(
        &mut parts.headers,
        &ForwardContext {
            client_ip: conn.peer.ip(),
            tls: conn.tls,
            original_host: original_host.as_ref(),
        },
    );
    headers::apply_ops(
        &mut parts.headers,
        &route.request_remove,
        &route.request_set,
    );
    let relay_grpc_timeout = parts.headers.contains_key(GRPC_TIMEOUT);
    let body_limit = ctx.body_limit;

    let plan = AttemptPlan {
        cluster,
        faults: &conn.shared().faults,
        route,
        method: &parts.method,
        uri: &parts.uri,
        version,
        original_host: original_host.as_ref(),
        relay_grpc_timeout,
        upgrade,
        connect_timeout: route
            .config
            .connect_timeout
            .unwrap_or(cluster.config.connect_timeout),
        // Without a per-try timeout, the deadline bounds every try.
        per_try: retry
            .and_then(|r| r.policy.per_try_timeout)
            .unwrap_or(Duration::MAX),
        deadline,
    };
    let hedge = route
        .hedge
        .as_ref()
        .zip(retry)
        .filter(|_| idempotent && matches!(body, AttemptBody::Replay(_)));
    let attempts = retry.map_or(1, |r| r.policy.attempts);
    if let Some(r) = retry {
        r.record_request(cluster.nanos_at(start));
    }
    let mut headers = parts.headers;
    let mut tried: Vec<Arc<EndpointState>> = Vec::new();
    let mut attempt = 0;
    // The place of the retry in flight, held through its attempt.
    let mut _retry_guards = None;
    let mut endpoint = cluster.pick(hash, cluster.nanos_at(start))?;
    let Attempt { endpoint, result } = loop {
        attempt += 1;
        if retry.is_some() {
            // Only routes that retry need to remember (and allocate).
            tried.push(endpoint.clone());
        }
        let last = attempt >= attempts;
        let Some(attempt_body) = body.next(body_limit) else {
            // A streamed body was spent by the previous attempt.
            break Attempt {
                endpoint,
                result: Err((
                    ErrorKind::UpstreamReset,
                    "the request body cannot be sent again".to_string(),
                )),
            };
        };
        let hedging = match (hedge, &body) {
            (Some((policy, retry)), AttemptBody::Replay(replay)) => {
                policy.delay().map(|delay| Hedging {
                    policy,
                    retry,
                    delay,
                    replay,
                })
            }
            _ => None,
        };
        let outcome = match hedging {
            // Boxed: racing attempts hold several attempts' states, which
            // would otherwise size every request's future.
            Some(hedging) => {
                Box::pin(plan.hedged(endpoint, attempt_body, &headers, &hedging, &mut tried)).await
            }
            None => {
                let headers = if last {
                    std::mem::take(&mut headers)
                } else {
                    headers.clone()
                };
                plan.run(endpoint, attempt_body, headers).await
            }
        };

        // Retry? Only what the route lists, only when safe, within budgets
        // and deadline.
        let Some(r) = retry.filter(|_| !last) else {
            break outcome;
        };
        let (wanted, nothing_sent, asked_wait) = match &outcome.result {
            Ok(resp) => (
                r.retries_response(resp.status().as_u16(), resp.headers()),
                false,
                r.retry_after(resp.headers()),
            ),
            Err((kind, _)) => (r.retries_error(*kind), kind.nothing_sent(), Ok(None)),
        };
        let safe = nothing_sent || (idempotent && body.replayable());
        let now = levee_core::time::now();
        let wait = match asked_wait {
            Ok(asked) => asked.map_or(r.backoff(attempt - 1), |a| a.max(r.backoff(attempt - 1))),
            // The upstream asked for longer than the route will wait.
            Err(_) => break outcome,
        };
        let too_late = now + wait + route.config.min_attempt_time >= deadline;
        if !wanted || !safe || too_late {
            break outcome;
        }
        // A previous retry is over: its places go back before the wait, and
        // the next one takes places only when it is sent, so that backoff
        // does not count as a retry in flight. The failed answer is kept
        // meanwhile: it is the reply if no retry can be sent after all.
        _retry_guards = None;
        tokio::time::sleep(wait).await;
        let now = cluster.nanos_at(levee_core::time::now());
        let Some(slot) = cluster.bulkheads.try_retry() else {
            break outcome;
        };
        let Some(budget) = r.withdraw(now) else {
            break outcome;
        };
        let Ok(next) = cluster.pick_other(now, &tried) else {
            break outcome;
        };
        _retry_guards = Some(RetryPlaces {
            _slot: slot,
            _budget: budget,
        });
        // The failed response (and its connection) is dropped here.
        drop(outcome);
        endpoint = next;
    };
    done.set_endpoint(endpoint.clone());
    let mut resp = result?;

    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        if upgrade && conn.manual_upgrades() {
            conn.set_pending_upgrade(crate::listener::PendingUpgrade {
                upstream: hyper::upgrade::on(&mut resp),
                endpoint: endpoint.clone(),
            });
        } else if let Some(downstream) = downstream_upgrade {
            let upstream = hyper::upgrade::on(&mut resp);
            tokio::spawn(async move {
                if let Ok(down) = downstream.await {
                    tunnel(TokioIo::new(down), upstream, endpoint).await;
                }
            });
        }
        headers::remove_hop_by_hop(resp.headers_mut(), true);
    } else {
        headers::remove_hop_by_hop(resp.headers_mut(), false);
    }
    let idle = route.config.stream_idle_timeout;
    Ok(resp.map(|body| ProxyBody::upstream(body, idle)))
}

fn upstream_uri(
    uri: &Uri,
    route: &CompiledRoute,
    endpoint: &EndpointState,
) -> Result<Uri, (ErrorKind, String)> {
    let mut parts = http::uri::Parts::default();
    parts.scheme = Some(http::uri::Scheme::HTTP);
    parts.authority = Some(endpoint.authority.clone());
    parts.path_and_query = match route.rewrite_path_and_query(uri) {
        Some(pq) => Some(pq.parse().map_err(|_| {
            (
                ErrorKind::BadRequest,
                "rewritten path is invalid".to_string(),
            )
        })?),
        None => Some(
            uri.path_and_query()
                .cloned()
                .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/")),
        ),
    };
    Uri::from_parts(parts).map_err(|_| {
        (
            ErrorKind::BadRequest,
            "the request target is invalid".to_string(),
        )
    })
}

/// The consistent-hash key of a request, if it has one.
fn request_hash(
    key: &HashOn,
    req: &http::request::Parts,
    client_ip: std::net::IpAddr,
) -> Option<u64> {
    match key {
        HashOn::Header(name) => req.headers.get(name.as_str()).map(|v| hash64(v.as_bytes())),
        HashOn::Cookie(name) => req
            .headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|s| s.split(';'))
            .find_map(|pair| {
                let (k, v) = pair.trim().split_once('=')?;
                (k == name).then(|| hash64(v.as_bytes()))
            }),
        HashOn::Path => Some(hash64(req.uri.path().as_bytes())),
        HashOn::ClientIp => Some(match client_ip {
            std::net::IpAddr::V4(ip) => hash64(&ip.octets()),
            std::net::IpAddr::V6(ip) => hash64(&ip.octets()),
        }),
    }
}

/// Copies bytes both ways between an upgraded client connection and the
/// upstream's, once the upstream's upgrade completes.
pub(crate) async fn tunnel<D>(
    mut down: D,
    upstream: hyper::upgrade::OnUpgrade,
    endpoint: Arc<EndpointState>,
) where
    D: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let Ok(up) = upstream.await else {
        tracing::debug!(endpoint = %endpoint.label, "upstream upgrade did not complete");
        return;
    };
    let mut up = TokioIo::new(up);
    endpoint.in_flight.inc();
    let result = tokio::io::copy_bidirectional(&mut down, &mut up).await;
    endpoint.in_flight.dec();
    if let Err(e) = result {
        tracing::debug!(endpoint = %endpoint.label, error = %e, "upgraded connection ended with an error");
    }
}
