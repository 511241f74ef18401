//! The life of a request, top to bottom: `handle` is the one function to
//! read, the seven steps of DESIGN.md as seven calls. Each step is a call
//! into a module with a small API; what the steps decide about a request
//! travels down as one `RequestContext`, and what is recorded about it
//! travels with the response as one `Completion`.
//!
//! | step | where |
//! |---|---|
//! | 1. accept | `accept` here (and the listener's codec limits) |
//! | 2. route | `route` here, over `router.rs` |
//! | 3. faults | `faults` here: the marked place for fault injection |
//! | 4. admit | `admit::request`: tenant, overload guard, rate limits, then the cluster's breaker, bulkheads, concurrency limit and queue |
//! | 5. dispatch | `attempt::dispatch`: attempts, retries, hedges |
//! | 6. degrade | `degrade::fallback`: stale copy, fallback cluster, fixed response |
//! | 7. record | `record` here: the answer's last headers; `record.rs` writes the record when the body ends |
//!
//! Answers the gateway writes itself come from `respond`.

pub(crate) mod attempt;
pub(crate) mod respond;

use crate::admit::LimitReport;
use crate::body::ProxyBody;
use crate::body::RequestBody;
use crate::headers::{self, REQUEST_ID};
use crate::listener::{ConnInfo, ListenerConfig};
use crate::record::Completion;
use crate::router::CompiledRoute;
use http::{header, HeaderValue, Request, Response};
use levee_core::time::Instant;
use levee_core::{ErrorKind, Outcome};
use respond::Refusal;
use std::sync::Arc;

pub(crate) use attempt::tunnel;

/// Serves one request: the seven steps of DESIGN.md, in order.
pub(crate) async fn handle(
    conn: Arc<ConnInfo>,
    mut req: Request<RequestBody>,
) -> Result<Response<ProxyBody>, crate::fault::Reset> {
    let listener = conn.listener.current.load_full();
    let arrival = Arrival::new(&conn, &listener, &mut req);
    let mut done = Completion::new(conn.clone(), &arrival, &req);
    // 1. Accept: protocol limits and framing, before any route.
    if let Err(refused) = accept(&listener, &mut req) {
        return Ok(respond::refuse(done, refused));
    }
    // An async route's job, read back at its location.
    if let Some(prefix) = &listener.jobs_prefix {
        let path = req.uri().path();
        if let Some(rest) = crate::jobs::submit::under_prefix(prefix, path) {
            let rest = rest.to_string();
            return Ok(crate::jobs::submit::read(arrival, &rest, &req, done).await);
        }
    }
    // 2. Route: the first of the listener's routes that takes the request,
    //    then, on a route with two versions, which version serves it.
    let route = match route(&listener, &req) {
        Ok(route) => {
            let route = version(route, &req, &conn, &mut done);
            done.routed(route)
        }
        Err(refused) => return Ok(respond::refuse(done, refused)),
    };
    // 3. Faults: a delay, an abort or a bandwidth limit, when one is
    //    configured or set for this route and draws this request.
    if let Some(injection) = faults(&route, &listener, &conn, &req) {
        if let Some(delay) = injection.delay {
            tokio::time::sleep(delay).await;
        }
        match injection.abort {
            Some(levee_config::FaultAbort::Reset) => {
                done.outcome = Outcome::Failed(ErrorKind::UpstreamReset);
                done.detail = Some("reset by an injected fault".into());
                return Err(crate::fault::Reset);
            }
            Some(abort) => {
                let (mut resp, outcome) = crate::fault::abort_response(abort, &arrival.request_id);
                done.outcome = outcome;
                done.detail = Some("answered by an injected fault".into());
                resp.body_mut().attach(done);
                return Ok(resp);
            }
            None => done.fault = Some(injection),
        }
    }
    // 4. Admit: tenant, overload guard, rate limits, a body to replay
    //    read, then the cluster. An async route takes the request as a job
    //    instead (`jobs`), after the same tenant, guard and rate limits.
    if let Some(jobs) = route
        .jobs
        .as_ref()
        .filter(|j| j.settings.mode == levee_config::AsyncMode::Always)
    {
        return Ok(crate::jobs::submit::accept(arrival, &route, jobs, req, done).await);
    }
    let (ctx, admission, prepared) =
        match crate::admit::request(arrival, &route, req, &mut done).await {
            Ok(admitted) => admitted,
            Err(refused) => return Ok(respond::refuse(done, refused)),
        };
    // A request the cluster sheds becomes a job on an overflow route, for
    // a client that asked for an asynchronous answer.
    if let Some(jobs) = overflow_to_job(&ctx, &admission, &prepared) {
        let caller = crate::admit::Caller {
            tenant: ctx.tenant.clone(),
            priority: ctx.priority,
            close_after: ctx.close_after,
            rate_limit: None,
        };
        let peer = ctx.conn.peer.ip();
        drop(admission);
        return Ok(
            match prepared.into_whole(jobs.settings.max_body_bytes).await {
                Ok((parts, body)) => {
                    crate::jobs::submit::overflow(jobs, &caller, parts, body, peer, done).await
                }
                Err(refused) => respond::refuse(done, refused),
            },
        );
    }
    // 5. Dispatch, retrying and hedging as the route allows.
    let dispatched = attempt::dispatch(&ctx, admission, prepared, &mut done).await;
    // 6. Degrade: the route's fallbacks answer what the cluster could not.
    let answer = crate::degrade::fallback(&ctx, dispatched, &mut done).await;
    // 7. Record: when the response body ends (or the client leaves).
    Ok(record(&ctx, answer, done))
}

/// The route's jobs, when the cluster shed this request, the route turns
/// shed requests into jobs and the client asked for that.
fn overflow_to_job<'r>(
    ctx: &RequestContext<'r>,
    admission: &crate::admit::ClusterAdmission<'_>,
    prepared: &attempt::Prepared,
) -> Option<&'r crate::jobs::RouteJobs> {
    let jobs = ctx.route.jobs.as_deref()?;
    let shed = matches!(
        admission.refused,
        Some((ErrorKind::Overloaded | ErrorKind::OverflowRequests, _))
    );
    (shed
        && jobs.settings.mode == levee_config::AsyncMode::Overflow
        && crate::jobs::submit::prefers_async(prepared.headers()))
    .then_some(jobs)
}

/// What is known of a request as its head arrives.
pub(crate) struct Arrival<'a> {
    pub(crate) start: Instant,
    pub(crate) conn: &'a ConnInfo,
    pub(crate) listener: &'a ListenerConfig,
    /// The caller's `x-request-id`, or a new one (set on the request).
    pub(crate) request_id: HeaderValue,
    /// A gRPC call (`content-type: application/grpc*`).
    pub(crate) grpc: bool,
}

impl<'a> Arrival<'a> {
    fn new(
        conn: &'a ConnInfo,
        listener: &'a ListenerConfig,
        req: &mut Request<RequestBody>,
    ) -> Self {
        Self {
            start: levee_core::time::now(),
            conn,
            listener,
            request_id: headers::ensure_request_id(req.headers_mut()),
            grpc: headers::is_grpc(req.headers()),
        }
    }
}

/// Everything the steps after admission know about a request, decided
/// once and passed down by reference.
#[derive(Debug)]
pub(crate) struct RequestContext<'a> {
    pub(crate) conn: &'a ConnInfo,
    pub(crate) request_id: HeaderValue,
    pub(crate) grpc: bool,
    /// The listener's `max_request_body_bytes`.
    pub(crate) body_limit: u64,
    pub(crate) route: &'a CompiledRoute,
    pub(crate) tenant: Arc<str>,
    pub(crate) priority: levee_config::Priority,
    /// What the caller allowed (`grpc-timeout`, `levee-deadline-ms`), on
    /// routes that honour deadlines.
    pub(crate) caller_timeout: Option<std::time::Duration>,
    /// Until when the route's cluster may answer.
    pub(crate) deadline: Instant,
    /// Under memory or connection pressure: no keep-alive after this answer.
    pub(crate) close_after: bool,
    /// The route's most constrained rate limit, reported on the answer.
    pub(crate) rate_limit: Option<LimitReport<'a>>,
}

/// Step 1: protocol limits and framing. (The codec refuses heads over
/// twice the limit on its own; between the two, the answer is made here.)
fn accept(
    listener: &ListenerConfig,
    req: &mut Request<RequestBody>,
) -> Result<(), Refusal<'static>> {
    headers::check_host(req).map_err(|detail| Refusal::new(ErrorKind::BadRequest, detail))?;
    if headers::head_size(req) > listener.limits.max_request_header_bytes {
        return Err(Refusal::new(
            ErrorKind::HeadersTooLarge,
            "request head exceeds the listener's max_request_header_bytes",
        ));
    }
    // A declared Content-Length over the limit is refused before any routing.
    if headers::content_length(req.headers())
        .is_some_and(|n| n > listener.limits.max_request_body_bytes)
    {
        return Err(Refusal::new(
            ErrorKind::PayloadTooLarge,
            "request body exceeds the listener's max_request_body_bytes",
        ));
    }
    Ok(())
}

/// Step 2: the first route that takes the request.
fn route(
    listener: &ListenerConfig,
    req: &Request<RequestBody>,
) -> Result<Arc<CompiledRoute>, Refusal<'static>> {
    listener.router.find(req).cloned().ok_or_else(|| {
        let detail = format!("no route for {} {}", req.method(), req.uri().path());
        Refusal::new(ErrorKind::NoRoute, detail)
    })
}

/// Step 2, on a route with two versions: the version that serves the
/// request (`release.rs`), noted in the record for the judge's counts.
fn version(
    route: Arc<CompiledRoute>,
    req: &Request<RequestBody>,
    conn: &ConnInfo,
    done: &mut Completion,
) -> Arc<CompiledRoute> {
    let Some(split) = &route.split else {
        return route;
    };
    let choice = split.choose(req, conn.peer.ip());
    done.release = Some((split.release.clone(), choice.arm));
    done.set_cookie = choice.set_cookie;
    choice.route.unwrap_or(route)
}

/// Step 3: the fault this request gets, if any (`fault.rs`).
fn faults(
    route: &CompiledRoute,
    listener: &ListenerConfig,
    conn: &ConnInfo,
    req: &Request<RequestBody>,
) -> Option<crate::fault::Injection> {
    // The tenant is resolved here only for a fault scoped by tenant.
    let tenant = || {
        listener
            .tenants
            .resolve(req.headers(), levee_core::time::unix_secs)
            .ok()
    };
    crate::fault::request_fault(route, &conn.shared().faults, req, conn.peer.ip(), tenant)
}

/// Step 7: the answer's last headers (rate limit, the route's response
/// edits, `Connection: close` under pressure, the request id), then the
/// record rides in the response body until it ends.
fn record(
    ctx: &RequestContext<'_>,
    answer: Result<Response<ProxyBody>, Refusal<'_>>,
    mut done: Completion,
) -> Response<ProxyBody> {
    let mut resp = match answer {
        Ok(resp) => resp,
        Err(refused) => return respond::refuse(done, refused.reporting(ctx.rate_limit)),
    };
    if let Some(limit) = &ctx.rate_limit {
        limit.write_headers(resp.headers_mut());
    }
    let route = ctx.route;
    headers::apply_ops(
        resp.headers_mut(),
        &route.response_remove,
        &route.response_set,
    );
    if ctx.close_after {
        // Under pressure: no keep-alive, so connections drain away.
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp.headers_mut()
        .insert(REQUEST_ID, ctx.request_id.clone());
    if let Some(bandwidth) = done.fault.as_ref().and_then(|f| f.bandwidth) {
        resp.body_mut().throttle(bandwidth);
    }
    if let Some(cookie) = done.set_cookie.take() {
        // Keeps a caller on the version drawn for it (cookie stickiness).
        resp.headers_mut().append(header::SET_COOKIE, cookie);
    }
    if ctx.grpc {
        // A trailers-only answer carries its status in the head.
        done.grpc_status = crate::record::grpc_status(resp.headers());
    }
    done.outcome = Outcome::Response(resp.status().as_u16());
    resp.body_mut().attach(done);
    resp
}
