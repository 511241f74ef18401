//! The life of a request, top to bottom: [`handle`] is the one function to
//! read. Each step is a call into a module with a small API; steps that later
//! issues add (faults, admission, retries, degradation) slot in where marked.

use crate::body::{ProxyBody, UpstreamBody};
use crate::cluster::{ClusterRuntime, EndpointState};
use crate::gateway::Shared;
use crate::headers::{self, ForwardContext, LEVEE_ERROR, REQUEST_ID};
use crate::listener::ConnInfo;
use crate::record::Completion;
use crate::router::CompiledRoute;
use http::{header, HeaderValue, Request, Response, StatusCode, Uri, Version};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use levee_config::{HashOn, UpstreamProtocol};
use levee_core::{deadline, ErrorKind, Outcome};
use levee_policy::hash::hash64;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

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

    // 1. Accept: protocol limits. (The codec refuses heads over twice the
    //    limit on its own; between the two, the answer is made here.)
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

    // 3. Inject faults and 4. admit: not yet configured (issues 3 and 4).

    // 5. Dispatch, retrying as the route allows (hedging arrives with issue 3).
    let result = dispatch(
        &cluster,
        &route,
        &conn,
        req,
        listener.limits.max_request_body_bytes,
        &mut done,
    )
    .await;

    // 6. Degrade: no fallbacks yet.
    let mut resp = match result {
        Ok(resp) => resp,
        Err((kind, detail)) => return Ok(reply_error(done, kind, &detail)),
    };
    headers::apply_ops(
        resp.headers_mut(),
        &route.response_remove,
        &route.response_set,
    );

    // 7. Record: when the response body ends.
    done.outcome = Outcome::Response(resp.status().as_u16());
    resp.body_mut().attach(done);
    Ok(resp)
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

/// The gateway's own answer: status, `levee-error` reason and a JSON body.
pub(crate) fn error_response(
    kind: ErrorKind,
    detail: &str,
    request_id: Option<&HeaderValue>,
) -> Response<ProxyBody> {
    let mut resp = Response::new(ProxyBody::full(kind.json_body(detail)));
    *resp.status_mut() = kind.status();
    let h = resp.headers_mut();
    h.insert(LEVEE_ERROR, HeaderValue::from_static(kind.reason()));
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(id) = request_id {
        h.insert(REQUEST_ID, id.clone());
    }
    if matches!(
        kind,
        ErrorKind::PayloadTooLarge | ErrorKind::HeadersTooLarge
    ) {
        // The unread body makes the connection unusable for another request.
        h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}

fn reply_error(mut done: Completion, kind: ErrorKind, detail: &str) -> Response<ProxyBody> {
    let mut resp = error_response(kind, detail, done.request_id.as_ref());
    done.outcome = Outcome::Failed(kind);
    resp.body_mut().attach(done);
    resp
}

/// The request body as attempts see it: bytes that can be sent again, or a
/// stream that can be sent once.
enum AttemptBody {
    Replay(bytes::Bytes),
    Stream(Option<Incoming>),
}

impl AttemptBody {
    /// The body for the next attempt, if there is one to send.
    fn next(&mut self, limit: u64) -> Option<UpstreamBody> {
        match self {
            AttemptBody::Replay(bytes) => Some(UpstreamBody::replay(bytes.clone())),
            AttemptBody::Stream(body) => body.take().map(|b| UpstreamBody::limited(b, limit)),
        }
    }
}

/// Prepares the body for a route that retries: empty bodies and bodies
/// declared no larger than the route's buffer are read now and can be
/// replayed; others stream once.
async fn attempt_body(
    body: Incoming,
    declared: Option<u64>,
    retry: Option<&crate::retry::RouteRetry>,
    limit: u64,
) -> Result<AttemptBody, (ErrorKind, String)> {
    use http_body::Body as _;
    let Some(retry) = retry else {
        return Ok(AttemptBody::Stream(Some(body)));
    };
    if body.is_end_stream() {
        return Ok(AttemptBody::Replay(bytes::Bytes::new()));
    }
    match declared {
        Some(n) if n <= retry.policy.buffer_bytes.min(limit) => {
            let collected = http_body_util::BodyExt::collect(body).await.map_err(|e| {
                (
                    ErrorKind::ClientClosed,
                    format!("reading the request body: {e}"),
                )
            })?;
            Ok(AttemptBody::Replay(collected.to_bytes()))
        }
        _ => Ok(AttemptBody::Stream(Some(body))),
    }
}

/// Sends the request to endpoints of `cluster` (several when the route
/// retries) and returns the response head, or the last classified failure.
async fn dispatch(
    cluster: &Arc<ClusterRuntime>,
    route: &CompiledRoute,
    conn: &ConnInfo,
    mut req: Request<Incoming>,
    body_limit: u64,
    done: &mut Completion,
) -> Result<Response<ProxyBody>, (ErrorKind, String)> {
    let start = Instant::now();
    let hash = cluster
        .hash_on()
        .and_then(|key| request_hash(key, &req, conn.peer.ip()));
    let upgrade = headers::is_upgrade_request(req.headers()) && req.version() == Version::HTTP_11;
    // Plain HTTP/1.1 connections join upgraded sockets in their own task.
    let downstream_upgrade =
        (upgrade && !conn.manual_upgrades()).then(|| hyper::upgrade::on(&mut req));
    let retry = route.retry.as_ref().filter(|_| !upgrade);
    let idempotent = retry.is_some_and(|r| r.policy.idempotent)
        || crate::retry::idempotent_method(req.method())
        || req.headers().contains_key("idempotency-key");
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let (mut parts, body) = req.into_parts();
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
    let mut body = attempt_body(body, declared, retry, body_limit).await?;

    let per_try = retry
        .and_then(|r| r.policy.per_try_timeout)
        .unwrap_or(total);
    let deadline = start + total;
    let connect_timeout = route
        .config
        .connect_timeout
        .unwrap_or(cluster.config.connect_timeout);
    let attempts = retry.map_or(1, |r| r.policy.attempts);
    if let Some(r) = retry {
        r.record_request(cluster.nanos_at(start));
    }
    let mut tried: Vec<Arc<EndpointState>> = Vec::new();
    let mut attempt = 0;
    let (mut resp, upstream_conn, endpoint) = loop {
        attempt += 1;
        let sent = Instant::now();
        let picked = if attempt == 1 {
            cluster.pick(hash, cluster.nanos_at(sent))
        } else {
            cluster.pick_other(cluster.nanos_at(sent), &tried)
        };
        let Some(endpoint) = picked else {
            return Err((
                ErrorKind::NoEndpoints,
                format!("cluster {} has no endpoints", cluster.name()),
            ));
        };
        done.set_endpoint(endpoint.clone());
        if retry.is_some() {
            // Only routes that retry need to remember (and allocate).
            tried.push(endpoint.clone());
        }
        let last = attempt >= attempts;
        let Some(attempt_body) = body.next(body_limit) else {
            // A streamed body was spent by the previous attempt.
            break Err((
                ErrorKind::UpstreamReset,
                "the request body cannot be sent again".to_string(),
            ));
        };
        let mut upstream_req = Request::new(attempt_body);
        *upstream_req.method_mut() = parts.method.clone();
        *upstream_req.uri_mut() = upstream_uri(&parts.uri, route, &endpoint)?;
        *upstream_req.version_mut() = version;
        *upstream_req.headers_mut() = if last {
            std::mem::take(&mut parts.headers)
        } else {
            parts.headers.clone()
        };
        headers::set_host(
            upstream_req.headers_mut(),
            &cluster.config.host_header,
            original_host.as_ref(),
            &endpoint.host_value,
        );

        let left = deadline.saturating_duration_since(sent);
        if route.config.honor_deadlines {
            // Tell the upstream how long the answer is still wanted.
            let headers = upstream_req.headers_mut();
            let millis = u64::try_from(left.as_millis()).unwrap_or(u64::MAX);
            headers.insert(LEVEE_DEADLINE, HeaderValue::from(millis));
            if relay_grpc_timeout {
                if let Ok(v) = HeaderValue::from_str(&deadline::format_grpc_timeout(left)) {
                    headers.insert(GRPC_TIMEOUT, v);
                }
            }
        }
        let timeout = per_try.min(left);
        let send = cluster.transport.send(
            endpoint.addr,
            &endpoint.idle,
            upstream_req,
            upgrade,
            connect_timeout,
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
            Ok(Ok((resp, upstream_conn))) => Ok((resp, upstream_conn)),
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
        let finished = Instant::now();
        if let Some(outcome) = outcome {
            cluster.record_outcome(&endpoint, outcome, cluster.nanos_at(finished));
        }
        if let Ok((resp, _)) = &result {
            let rtt = finished.duration_since(sent).as_nanos() as u64;
            cluster.observe_latency(&endpoint, rtt, cluster.nanos_at(finished));
            cluster.metrics.latency.observe_nanos(rtt);
            cluster.metrics.upstream_requests
                [levee_core::outcome::status_class_index(resp.status().as_u16())]
            .inc();
        }

        // Retry? Only what the route lists, only when safe, within budget
        // and deadline.
        let Some(r) = retry.filter(|_| !last) else {
            break result.map(|(resp, c)| (resp, c, endpoint));
        };
        let (wanted, nothing_sent) = match &result {
            Ok((resp, _)) => (r.retries_status(resp.status().as_u16()), false),
            Err((kind, _)) => (r.retries_error(*kind), kind.nothing_sent()),
        };
        let safe = nothing_sent || (idempotent && matches!(body, AttemptBody::Replay(_)));
        let now = Instant::now();
        let wait = r.backoff(attempt - 1);
        let too_late = now + wait + route.config.min_attempt_time >= deadline;
        if !wanted || !safe || too_late || !r.withdraw(cluster.nanos_at(now)) {
            break result.map(|(resp, c)| (resp, c, endpoint));
        }
        // The failed response (and its connection) is dropped here.
        drop(result);
        tokio::time::sleep(wait).await;
    }?;

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
    Ok(resp.map(|body| ProxyBody::upstream(body, upstream_conn)))
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
    Uri::from_parts(parts).map_err(|e| {
        (
            ErrorKind::BadRequest,
            format!("invalid request target: {e}"),
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
fn request_hash<B>(key: &HashOn, req: &Request<B>, client_ip: std::net::IpAddr) -> Option<u64> {
    match key {
        HashOn::Header(name) => req
            .headers()
            .get(name.as_str())
            .map(|v| hash64(v.as_bytes())),
        HashOn::Cookie(name) => req
            .headers()
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|s| s.split(';'))
            .find_map(|pair| {
                let (k, v) = pair.trim().split_once('=')?;
                (k == name).then(|| hash64(v.as_bytes()))
            }),
        HashOn::Path => Some(hash64(req.uri().path().as_bytes())),
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
