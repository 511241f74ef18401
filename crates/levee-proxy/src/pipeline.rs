//! The life of a request, top to bottom: [`handle`] is the one function to
//! read. Each step is a call into a module with a small API; steps that later
//! issues add (faults, admission, retries, degradation) slot in where marked.

use crate::body::{ProxyBody, UpstreamBody};
use crate::cluster::{ClusterRuntime, EndpointState};
use crate::gateway::Shared;
use crate::headers::{self, ForwardContext, LEVEE_ERROR, REQUEST_ID};
use crate::listener::ConnInfo;
use crate::record::Completion;
use crate::retry::RouteRetry;
use crate::router::CompiledRoute;
use crate::upstream::Http1Conn;
use http::{header, HeaderValue, Request, Response, StatusCode, Uri, Version};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use levee_config::{HashOn, UpstreamProtocol};
use levee_core::time::Instant;
use levee_core::{deadline, ErrorKind, Outcome};
use levee_policy::hash::hash64;
use std::convert::Infallible;
use std::sync::Arc;

/// Serves one request.
pub(crate) async fn handle(
    shared: Arc<Shared>,
    conn: Arc<ConnInfo>,
    mut req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    let start = Instant::now();
    let listener = conn.listener.current.load_full();
    let mut done = Completion::new(
        shared,
        conn.clone(),
        start,
        req.method().clone(),
        req.uri().clone(),
        req.version(),
    );
    done.request_id = Some(headers::ensure_request_id(req.headers_mut()));
    done.grpc = headers::is_grpc(req.headers());

    // 1. Accept: protocol limits and framing. (The codec refuses heads over
    //    twice the limit on its own; between the two, the answer is made here.)
    if let Err(detail) = headers::check_host(&mut req) {
        return Ok(reply_error(done, ErrorKind::BadRequest, detail));
    }
    if head_size(&req) > listener.limits.max_request_header_bytes {
        let detail = "request head exceeds the listener's max_request_header_bytes";
        return Ok(reply_error(done, ErrorKind::HeadersTooLarge, detail));
    }
    if let Err(kind) = check_declared_body_size(&req, listener.limits.max_request_body_bytes) {
        return Ok(reply_error(
            done,
            kind,
            "request body exceeds the listener's max_request_body_bytes",
        ));
    }

    // 2. Route.
    let Some(route) = listener.router.find(&req).cloned() else {
        let detail = format!("no route for {} {}", req.method(), req.uri().path());
        return Ok(reply_error(done, ErrorKind::NoRoute, &detail));
    };
    let cluster = route.cluster.clone();
    done.route = Some(route.clone());
    done.cluster = Some(cluster.clone());

    // Who it is for: a verified JWT, an API key, a trusted header, or the
    // default tenant.
    let tenant = match listener.tenants.resolve(req.headers(), unix_now) {
        Ok(tenant) => tenant,
        Err(why) => return Ok(reply_error(done, ErrorKind::Unauthorized, &why)),
    };
    done.tenant = Some(tenant.clone());
    let priority = request_priority(&route, req.headers());
    done.priority = Some(priority);

    // The process overload guard sheds the least important work first.
    let pressure = done.shared.pressure.level();
    if pressure >= crate::pressure::SHED && priority == levee_config::Priority::Sheddable {
        return Ok(reply_error(
            done,
            ErrorKind::Overloaded,
            "the gateway is under memory or connection pressure: sheddable requests are refused",
        ));
    }
    let close_after = pressure >= crate::pressure::CLOSE && req.version() < Version::HTTP_2;

    // 3. Inject faults: not yet configured.

    // 4. Admit: the route's rate limits.
    let mut limit_report = None;
    if !route.rate_limits.is_empty() {
        let now = done.shared.clock.nanos_at(start);
        match crate::admit::check(
            &route.rate_limits,
            req.headers(),
            conn.peer.ip(),
            &tenant,
            now,
        )
        .await
        {
            crate::admit::Admission::Limited(limit, decision) => {
                let detail = format!("rate limit `{}` exceeded", limit.config.name);
                let mut resp = reply_error(done, ErrorKind::RateLimited, &detail);
                limit.write_headers(resp.headers_mut(), &decision);
                return Ok(resp);
            }
            crate::admit::Admission::Admitted(report) => limit_report = report,
        }
    }

    // 5. Dispatch, retrying and hedging as the route allows.
    let body_limit = listener.limits.max_request_body_bytes;
    let upgrade = headers::is_upgrade_request(req.headers()) && req.version() == Version::HTTP_11;
    // Plain HTTP/1.1 connections join upgraded sockets in their own task.
    let downstream_upgrade =
        (upgrade && !conn.manual_upgrades()).then(|| hyper::upgrade::on(&mut req));
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let (parts, body) = req.into_parts();
    let body = match attempt_body(body, declared, replay_limit(&route, upgrade), body_limit).await {
        Ok(body) => body,
        Err((kind, detail)) => return Ok(reply_error(done, kind, &detail)),
    };
    let fallback = route.fallback.as_deref();
    // What a fallback cluster would need: the request again (a streamed
    // body counts once its copy is complete, after dispatch).
    let second_chance = match (&route.fallback_route, &body) {
        (Some(_), AttemptBody::Replay(bytes)) => {
            Some((parts.clone(), SecondBody::Read(bytes.clone())))
        }
        (
            Some(_),
            AttemptBody::Stream {
                capture: Some((c, _)),
                ..
            },
        ) => Some((parts.clone(), SecondBody::Captured(c.clone()))),
        _ => None,
    };
    let stale_key = fallback
        .and_then(|f| f.stale.as_ref())
        .filter(|_| parts.method == http::Method::GET)
        .map(|_| crate::degrade::cache_key(parts.headers.get(header::HOST), &parts.uri));
    let authorized = parts.headers.contains_key(header::AUTHORIZATION);
    let request = Outbound {
        parts,
        body,
        upgrade,
        downstream_upgrade,
    };
    let result = dispatch(&cluster, &route, &conn, request, body_limit, &mut done).await;

    // 6. Degrade: a route's fallbacks answer what the cluster could not.
    let result = match (result, fallback) {
        (result, None) => result,
        (Ok(mut resp), Some(f)) if !f.fails(resp.status().as_u16()) => {
            if let (Some(key), Some(cache)) = (stale_key, &f.stale) {
                if crate::degrade::storable(resp.status(), resp.headers(), authorized) {
                    let tee = crate::degrade::Tee::new(
                        cache.clone(),
                        key,
                        resp.status(),
                        resp.headers().clone(),
                        cluster.now(),
                    );
                    resp.body_mut().tee(tee);
                }
            }
            Ok(resp)
        }
        // A failing answer, or a failure that is not the client's own.
        (result, Some(f))
            if result.as_ref().map_or_else(
                |(kind, _)| kind.side() != levee_core::Side::Downstream,
                |_| true,
            ) =>
        {
            let stale = stale_key.as_deref();
            let degraded = degrade(
                f,
                &route,
                &conn,
                stale,
                second_chance,
                body_limit,
                &mut done,
            )
            .await;
            degraded.map_or(result, Ok)
        }
        (result, Some(_)) => result,
    };
    let mut resp = match result {
        Ok(resp) => resp,
        Err((kind, detail)) => {
            let mut resp = reply_error(done, kind, &detail);
            if let Some((limit, decision)) = &limit_report {
                limit.write_headers(resp.headers_mut(), decision);
            }
            return Ok(resp);
        }
    };
    if let Some((limit, decision)) = &limit_report {
        limit.write_headers(resp.headers_mut(), decision);
    }
    headers::apply_ops(
        resp.headers_mut(),
        &route.response_remove,
        &route.response_set,
    );

    if close_after {
        // Under pressure: no keep-alive, so connections drain away.
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }

    if let Some(id) = &done.request_id {
        resp.headers_mut().insert(REQUEST_ID, id.clone());
    }
    if done.grpc {
        // A trailers-only answer carries its status in the head.
        done.grpc_status = crate::record::grpc_status(resp.headers());
    }

    // 7. Record: when the response body ends.
    done.outcome = Outcome::Response(resp.status().as_u16());
    resp.body_mut().attach(done);
    Ok(resp)
}

/// The request's priority class: the route's, lowered (never raised) by the
/// route's priority header when the caller sent one.
fn request_priority(route: &CompiledRoute, headers: &http::HeaderMap) -> levee_config::Priority {
    let asked = route
        .config
        .priority_header
        .as_deref()
        .and_then(|h| headers.get(h))
        .and_then(|v| v.to_str().ok())
        .and_then(|v| levee_config::Priority::from_name(v.trim()));
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

/// The size of the request head as sent: request line and header lines.
fn head_size<B>(req: &Request<B>) -> u64 {
    let target = req.uri().path_and_query().map_or(1, |pq| pq.as_str().len());
    let line = req.method().as_str().len() + target + 12;
    let headers: usize = req
        .headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum();
    (line + headers) as u64
}

/// A declared Content-Length over the limit is refused before any routing.
fn check_declared_body_size<B>(req: &Request<B>, limit: u64) -> Result<(), ErrorKind> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.parse::<u64>().ok());
    match declared {
        Some(n) if n > limit => Err(ErrorKind::PayloadTooLarge),
        _ => Ok(()),
    }
}

/// The gateway's own answer: status, `levee-error` reason and a JSON body
/// with a public message; for a gRPC caller, a trailers-only answer with
/// `grpc-status` and `grpc-message` instead.
pub(crate) fn error_response(
    kind: ErrorKind,
    message: &str,
    request_id: Option<&HeaderValue>,
    grpc: bool,
) -> Response<ProxyBody> {
    let mut resp = if grpc {
        let mut resp = Response::new(ProxyBody::empty());
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc"),
        );
        h.insert(
            "grpc-status",
            HeaderValue::from(u16::from(kind.grpc_status())),
        );
        if let Ok(v) = HeaderValue::from_str(&headers::grpc_percent_encode(message)) {
            h.insert("grpc-message", v);
        }
        resp
    } else {
        let mut resp = Response::new(ProxyBody::full(kind.json_body(message)));
        *resp.status_mut() = kind.status();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        resp
    };
    let h = resp.headers_mut();
    h.insert(LEVEE_ERROR, HeaderValue::from_static(kind.reason()));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(id) = request_id {
        h.insert(REQUEST_ID, id.clone());
    }
    if kind.is_shedding() {
        // Callers (another Levee among them) must not retry shed load.
        h.insert(crate::retry::OVERLOADED, HeaderValue::from_static("true"));
        h.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    if matches!(
        kind,
        ErrorKind::PayloadTooLarge | ErrorKind::HeadersTooLarge | ErrorKind::BadRequest
    ) {
        // An unread or malformed body makes the connection unusable for
        // another request.
        h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}

/// Answers for the gateway: the client gets the reason and a public
/// message; the full `detail` (addresses, library errors) goes to the log
/// and the access log with the request id.
fn reply_error(mut done: Completion, kind: ErrorKind, detail: &str) -> Response<ProxyBody> {
    let message = if kind.detail_is_public() {
        detail
    } else {
        kind.public_message()
    };
    let mut resp = error_response(kind, message, done.request_id.as_ref(), done.grpc);
    if kind.side() != levee_core::Side::Downstream {
        tracing::info!(
            target: "levee::error",
            reason = kind.reason(),
            request_id = done.request_id.as_ref().and_then(|v| v.to_str().ok()).unwrap_or("-"),
            detail,
            "answered for the upstream"
        );
    }
    done.detail = Some(detail.to_string());
    done.outcome = Outcome::Failed(kind);
    resp.body_mut().attach(done);
    resp
}

/// The request body as attempts see it: bytes that can be sent again, or a
/// stream that can be sent once (unless its copy turns out complete).
enum AttemptBody {
    Replay(bytes::Bytes),
    /// Streamed once; with a capture, a body that ended within the route's
    /// buffer can be sent again.
    Stream {
        body: Option<Incoming>,
        capture: Option<(Arc<crate::body::Capture>, u64)>,
    },
}

impl AttemptBody {
    fn stream(body: Incoming) -> Self {
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
                        Some((c, max)) => upstream.capturing(c.clone(), *max),
                        None => upstream,
                    })
                }
                None => capture
                    .as_ref()
                    .and_then(|(c, _)| c.replayable())
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
                capture: Some((c, _)),
            } => c.replayable().is_some(),
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
    match (&route.retry, &route.fallback_route) {
        (Some(r), _) => Some(r.policy.buffer_bytes),
        (None, Some(_)) => Some(levee_config::RetryPolicy::default().buffer_bytes),
        (None, None) => None,
    }
}

/// Prepares the body for a route that may send it twice: empty bodies and
/// bodies declared no larger than `replay_limit` are read now and can be
/// replayed; others stream once.
async fn attempt_body(
    body: Incoming,
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
            capture: Some((Arc::default(), replay_limit.min(limit))),
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

/// A response head with the HTTP/1.1 connection its body still needs.
type Sent = (Response<Incoming>, Option<Http1Conn>);

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
            Ok((resp, _)) => {
                retry.is_none_or(|r| !r.retries_response(resp.status().as_u16(), resp.headers()))
            }
            Err(_) => false,
        }
    }
}

/// What every attempt of one request shares.
struct AttemptPlan<'a> {
    cluster: &'a Arc<ClusterRuntime>,
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
        let sent = Instant::now();
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
        let send = cluster.transport.send(
            endpoint.addr,
            &endpoint.idle,
            upstream_req,
            self.upgrade,
            self.connect_timeout,
        );
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
            Ok((resp, _)) => Some(Outcome::Response(resp.status().as_u16())),
            Err((kind, _)) if kind.side() != levee_core::Side::Downstream => {
                Some(Outcome::Failed(*kind))
            }
            Err(_) => None,
        };
        drop(counted);
        let finished = Instant::now();
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
            let shed_mark =
                matches!(&result, Ok((resp, _)) if crate::retry::is_shed(resp.headers()));
            queue.on_attempt(outcome, rtt, admitted, shed_mark);
        }
        if let Ok((resp, _)) = &result {
            let rtt_ns = rtt.as_nanos() as u64;
            cluster.observe_latency(&endpoint, rtt_ns, now);
            cluster.metrics.latency.observe_nanos(rtt_ns);
            cluster.metrics.upstream_requests
                [levee_core::outcome::status_class_index(resp.status().as_u16())]
            .inc();
            if let Some(h) = &self.route.hedge {
                h.latency.observe(rtt_ns, now);
            }
        }
        Attempt { endpoint, result }
    }

    /// Sends the first attempt and, each time `delay` passes without a good
    /// answer, a hedge to another endpoint (within the retry budgets); the
    /// first good answer wins and the others are cancelled by dropping them.
    #[allow(clippy::too_many_arguments)]
    async fn hedged(
        &self,
        first: Arc<EndpointState>,
        first_body: UpstreamBody,
        replay: &bytes::Bytes,
        headers: &http::HeaderMap,
        delay: std::time::Duration,
        hedge: &crate::hedge::HedgePolicy,
        retry: &RouteRetry,
        tried: &mut Vec<Arc<EndpointState>>,
    ) -> Attempt {
        use futures_util::StreamExt as _;
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
                        if !Arc::ptr_eq(&a.endpoint, &tried[0]) {
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
                    let now = Instant::now();
                    timer.as_mut().reset(now + delay);
                    let Some(slot) = cluster.bulkheads.try_retry() else { continue };
                    let Some(budget) = retry.withdraw(cluster.nanos_at(now)) else { continue };
                    let Ok(endpoint) = cluster.pick_other(cluster.nanos_at(now), tried) else { continue };
                    if tried.iter().any(|t| Arc::ptr_eq(t, &endpoint)) {
                        continue;
                    }
                    hedge.sent.inc();
                    tried.push(endpoint.clone());
                    guards.push((slot, budget));
                    racing.push(self.run(endpoint, UpstreamBody::replay(replay.clone()), headers.clone()));
                }
            }
        }
        last.unwrap_or_else(|| Attempt {
            endpoint: tried[0].clone(),
            result: Err((ErrorKind::Internal, "no attempt finished".to_string())),
        })
    }
}

/// The request body kept for a fallback cluster.
enum SecondBody {
    /// Read before the first attempt.
    Read(bytes::Bytes),
    /// Copied while streaming; usable if it ended within the buffer.
    Captured(Arc<crate::body::Capture>),
}

/// A request on its way to a cluster.
struct Outbound {
    parts: http::request::Parts,
    body: AttemptBody,
    upgrade: bool,
    downstream_upgrade: Option<hyper::upgrade::OnUpgrade>,
}

/// Tries the route's fallbacks in order (stale copy, fallback cluster,
/// static response) after `route`'s cluster failed; `None` when none can
/// answer.
async fn degrade(
    fallback: &crate::degrade::RouteFallback,
    route: &CompiledRoute,
    conn: &ConnInfo,
    stale_key: Option<&str>,
    second_chance: Option<(http::request::Parts, SecondBody)>,
    body_limit: u64,
    done: &mut Completion,
) -> Option<Response<ProxyBody>> {
    use crate::degrade::LEVEE_DEGRADED;
    if let (Some(key), Some(cache)) = (stale_key, &fallback.stale) {
        let now = route.cluster.now();
        if let Some(entry) = cache.get(key, now) {
            fallback.served[0].inc();
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
                .insert(LEVEE_DEGRADED, HeaderValue::from_static("stale"));
            return Some(resp);
        }
    }
    let second_chance = second_chance.and_then(|(parts, body)| match body {
        SecondBody::Read(bytes) => Some((parts, bytes)),
        SecondBody::Captured(c) => c.replayable().map(|bytes| (parts, bytes)),
    });
    if let (Some(other), Some((parts, bytes))) = (&route.fallback_route, second_chance) {
        let request = Outbound {
            parts,
            body: AttemptBody::Replay(bytes),
            upgrade: false,
            downstream_upgrade: None,
        };
        done.cluster = Some(other.cluster.clone());
        if let Ok(mut resp) = dispatch(&other.cluster, other, conn, request, body_limit, done).await
        {
            if !fallback.fails(resp.status().as_u16()) {
                fallback.served[1].inc();
                resp.headers_mut()
                    .insert(LEVEE_DEGRADED, HeaderValue::from_static("cluster"));
                return Some(resp);
            }
        }
    }
    let fixed = fallback.response.as_ref()?;
    fallback.served[2].inc();
    let mut resp = Response::new(ProxyBody::full(fixed.body.clone()));
    *resp.status_mut() = fixed.status;
    for (k, v) in &fixed.headers {
        resp.headers_mut().insert(k.clone(), v.clone());
    }
    resp.headers_mut()
        .insert(LEVEE_DEGRADED, HeaderValue::from_static("static"));
    Some(resp)
}

/// Sends the request to endpoints of `cluster` (several when the route
/// retries or hedges) and returns the response head, or the last classified
/// failure.
async fn dispatch(
    cluster: &Arc<ClusterRuntime>,
    route: &CompiledRoute,
    conn: &ConnInfo,
    request: Outbound,
    body_limit: u64,
    done: &mut Completion,
) -> Result<Response<ProxyBody>, (ErrorKind, String)> {
    let start = Instant::now();
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
    let _active = retry.map(RouteRetry::enter);
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
    // The deadline: the route's total timeout, shortened by the caller's.
    let caller = route
        .config
        .honor_deadlines
        .then(|| caller_deadline(&parts.headers))
        .flatten();
    let relay_grpc_timeout = parts.headers.contains_key(GRPC_TIMEOUT);
    let route_total = route.config.timeout.unwrap_or(cluster.config.timeout);
    let total = caller.map_or(route_total, |c| c.min(route_total));
    if caller.is_some_and(|c| c < route.config.min_attempt_time) {
        return Err((
            ErrorKind::DeadlineExceeded,
            format!(
                "the caller's deadline leaves less than the route's min_attempt_time ({})",
                levee_config::format_duration(route.config.min_attempt_time)
            ),
        ));
    }
    let deadline = start + total;

    // The cluster's breaker and bulkheads, before anything is read or sent.
    cluster.admit_breaker(cluster.nanos_at(start))?;
    done.request_slot = cluster.bulkheads.admit(deadline).await?;
    if let Some(queue) = &cluster.queue {
        let priority = done.priority.unwrap_or(levee_config::Priority::Default);
        let tenant = done.tenant.clone().unwrap_or_else(|| Arc::from("default"));
        done.admission = Some(queue.admit(priority, &tenant, deadline).await?);
    }

    let plan = AttemptPlan {
        cluster,
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
        per_try: retry
            .and_then(|r| r.policy.per_try_timeout)
            .unwrap_or(total),
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
        let delay = hedge.and_then(|(h, _)| h.delay());
        let outcome = match (hedge, delay, &body) {
            (Some((h, r)), Some(delay), AttemptBody::Replay(bytes)) => {
                plan.hedged(
                    endpoint,
                    attempt_body,
                    bytes,
                    &headers,
                    delay,
                    h,
                    r,
                    &mut tried,
                )
                .await
            }
            _ => {
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
            Ok((resp, _)) => (
                r.retries_response(resp.status().as_u16(), resp.headers()),
                false,
                r.retry_after(resp.headers()),
            ),
            Err((kind, _)) => (r.retries_error(*kind), kind.nothing_sent(), Ok(None)),
        };
        let safe = nothing_sent || (idempotent && body.replayable());
        let now = Instant::now();
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
        let now = cluster.nanos_at(Instant::now());
        let Some(slot) = cluster.bulkheads.try_retry() else {
            break outcome;
        };
        let Some(budget) = r.withdraw(now) else {
            break outcome;
        };
        let Ok(next) = cluster.pick_other(now, &tried) else {
            break outcome;
        };
        _retry_guards = Some((slot, budget));
        // The failed response (and its connection) is dropped here.
        drop(outcome);
        endpoint = next;
    };
    done.set_endpoint(endpoint.clone());
    let (mut resp, upstream_conn) = result?;

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
    Ok(resp.map(|body| ProxyBody::upstream(body, upstream_conn, idle)))
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

const GRPC_TIMEOUT: http::HeaderName = http::HeaderName::from_static("grpc-timeout");
const LEVEE_DEADLINE: http::HeaderName =
    http::HeaderName::from_static(deadline::LEVEE_DEADLINE_HEADER);

/// The caller's deadline: the shorter of `grpc-timeout` and
/// `levee-deadline-ms`, when either is present and valid.
fn caller_deadline(headers: &http::HeaderMap) -> Option<std::time::Duration> {
    let grpc = headers
        .get(GRPC_TIMEOUT)
        .and_then(|v| v.to_str().ok())
        .and_then(deadline::parse_grpc_timeout);
    let levee = headers
        .get(LEVEE_DEADLINE)
        .and_then(|v| v.to_str().ok())
        .and_then(deadline::parse_levee_deadline);
    match (grpc, levee) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
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
