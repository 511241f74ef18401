//! The delivery loop: one task per async route leases jobs from its queue
//! and sends each through the same cluster admission (breaker, bulkheads,
//! concurrency limit and admission queue) and attempts (endpoint pick,
//! per-try timeout, passive health) as a synchronous request, at most the
//! route's `concurrency` at once. So delivery runs at the pace the cluster
//! takes: while a backlog exists the cluster's limit is kept full, and
//! when the cluster refuses (breaker open, queue full) the job goes back
//! uncounted and the loop waits a moment before asking again.
//!
//! A delivery's answer settles the job: a final status (2xx, or a 4xx
//! other than 408 and 429) is its result; no answer, a 5xx, 408 or 429 is
//! a failure the queue retries after its backoff or sends to the dead
//! letters. Every delivery carries `Idempotency-Key: {job id}`, the same
//! on every attempt, and `Levee-Job-Attempt`.

use super::{callback, Delivery, RouteJobs, Settle, Settled, StoredRequest, StoredResult};
use crate::gateway::Shared;
use crate::listener::{ConnInfo, ListenerState};
use crate::pipeline::attempt::{send, Outbound};
use crate::pipeline::{Arrival, RequestContext};
use crate::record::Completion;
use crate::router::CompiledRoute;
use http::{HeaderName, HeaderValue};
use levee_core::{ErrorKind, Outcome};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::sync::Semaphore;

/// The header every delivery carries: the job's id, the same on each
/// attempt, for an upstream that de-duplicates.
const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
const JOB_ATTEMPT: HeaderName = HeaderName::from_static("levee-job-attempt");
const JOB_ID: HeaderName = HeaderName::from_static("levee-job-id");

/// How long the loop waits after the cluster refused a delivery, so a
/// full or broken cluster is asked again soon but not in a spin.
const REFUSED_PAUSE: Duration = Duration::from_millis(20);
/// How often the queue's gauges are refreshed.
const STATS_EVERY: Duration = Duration::from_secs(1);

/// Starts the delivery loop of each async route in `next` that has none
/// running (not in `running`).
pub(crate) fn start_new(
    shared: &Arc<Shared>,
    running: &HashMap<String, Arc<RouteJobs>>,
    next: &HashMap<String, Arc<RouteJobs>>,
) {
    for name in next.keys().filter(|n| !running.contains_key(*n)) {
        tokio::spawn(run(Arc::downgrade(shared), name.clone()));
    }
}

/// Where a route's jobs go out: a listener the route is on, and the route
/// as it is compiled there now.
type Outlet = (Arc<ListenerState>, Arc<CompiledRoute>);

/// The route's current settings, queue and outlet (none while the route is
/// on no listener), or `None` once the route is no longer async.
fn current(shared: &Shared, name: &str) -> Option<(Arc<RouteJobs>, Option<Outlet>)> {
    let jobs = shared.job_routes_lock().get(name).cloned()?;
    let found = shared.listener_states().into_iter().find_map(|l| {
        let route = l.current.load().router.by_name(name)?;
        Some((l, route))
    });
    Some((jobs, found))
}

async fn run(shared: Weak<Shared>, name: String) {
    tracing::debug!(route = %name, "job delivery loop started");
    // The loop's own bound, resized when a reload changes `concurrency`.
    let mut slots = Arc::new(Semaphore::new(0));
    let mut size = 0u32;
    let mut last_stats = levee_core::time::now() - STATS_EVERY;
    loop {
        let Some(strong) = shared.upgrade() else {
            return;
        };
        if strong.is_draining() {
            return;
        }
        let Some((jobs, found)) = current(&strong, &name) else {
            return;
        };
        if size != jobs.settings.concurrency {
            // In-flight deliveries hold permits of the old semaphore and
            // give them back there; the new one starts full.
            size = jobs.settings.concurrency;
            slots = Arc::new(Semaphore::new(size as usize));
        }
        if levee_core::time::now().duration_since(last_stats) >= STATS_EVERY {
            last_stats = levee_core::time::now();
            if let Ok(stats) = jobs.queue.stats().await {
                jobs.metrics.observe(&stats);
            }
        }
        tracing::trace!(route = %name, on_listener = found.is_some(), "job delivery loop turn");
        let Some((listener, route)) = found else {
            // The route is on no listener now (a reload moved it): wait.
            drop(strong);
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        drop(strong);
        // Wait for one free slot, then take every other free one.
        let Ok(first) = slots.clone().acquire_owned().await else {
            continue;
        };
        let mut permits = vec![first];
        // No more than the cluster's concurrency limit has room for (and
        // its queue's worth besides): leasing what it would refuse only
        // hands jobs back, which costs a round trip on JetStream.
        let room = route.cluster.queue.as_ref().map_or(usize::MAX, |q| {
            let free = q.limit().saturating_sub(q.in_flight()) as usize;
            free + q.limit() as usize
        });
        while permits.len() < room.max(1) {
            let Ok(p) = slots.clone().try_acquire_owned() else {
                break;
            };
            permits.push(p);
        }
        let leased = match jobs.queue.lease(permits.len(), STATS_EVERY).await {
            Ok(leased) => leased,
            Err(e) => {
                tracing::warn!(route = %name, error = %e, "cannot lease jobs; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        let Some(shared) = shared.upgrade() else {
            return;
        };
        for delivery in leased {
            let Some(permit) = permits.pop() else { break };
            let (shared, listener, route, jobs) = (
                shared.clone(),
                listener.clone(),
                route.clone(),
                jobs.clone(),
            );
            tokio::spawn(async move {
                let refused = deliver(shared, listener, &route, jobs, delivery).await;
                if refused {
                    tokio::time::sleep(REFUSED_PAUSE).await;
                }
                drop(permit);
            });
        }
    }
}

/// Delivers one job and settles it; `true` when the cluster refused it
/// (not sent).
async fn deliver(
    shared: Arc<Shared>,
    listener: Arc<ListenerState>,
    route: &CompiledRoute,
    jobs: Arc<RouteJobs>,
    delivery: Delivery,
) -> bool {
    let outcome = send_job(shared, listener, route, &jobs, &delivery).await;
    let refused = matches!(outcome, Settle::NotSent);
    let result = match &outcome {
        Settle::Delivered(result) => Some(result.clone()),
        _ => None,
    };
    let m = &jobs.metrics;
    let waited_ns = levee_core::time::unix_millis()
        .saturating_sub(delivery.accepted_at_ms)
        .saturating_mul(1_000_000);
    match jobs.queue.settle(&delivery, outcome).await {
        Ok(Settled::Done) => {
            m.delivered.inc();
            m.completion.observe_nanos(waited_ns);
            let status = result.as_ref().map_or(200, |r| r.status);
            for slo in route.job_slos.iter() {
                slo.record(Outcome::Response(status), waited_ns, Some(&delivery.tenant));
            }
            if let (Some(result), Some(_), Some(_)) = (
                result,
                delivery.callback.as_deref(),
                jobs.callback.as_deref(),
            ) {
                // Its retries must not hold a delivery's place.
                let jobs = jobs.clone();
                tokio::spawn(async move { push_result(&jobs, &delivery, &result).await });
            }
        }
        Ok(Settled::Retry(_)) if refused => m.not_sent.inc(),
        Ok(Settled::Retry(_)) => m.retried.inc(),
        Ok(Settled::Dead) => {
            m.dead.inc();
            // Given up on: a bad event for every freshness objective.
            for slo in route.job_slos.iter() {
                slo.record(
                    Outcome::Failed(ErrorKind::Internal),
                    waited_ns,
                    Some(&delivery.tenant),
                );
            }
        }
        Ok(Settled::Stale) => m.stale.inc(),
        Err(e) => {
            // The lease runs out and the job is delivered again.
            tracing::warn!(route = %jobs.route, job = %delivery.id, error = %e, "cannot settle a delivered job");
        }
    }
    refused
}

async fn push_result(jobs: &RouteJobs, delivery: &Delivery, result: &StoredResult) {
    let (Some(signer), Some(url)) = (jobs.callback.as_deref(), delivery.callback.as_deref()) else {
        return;
    };
    let Ok(uri) = signer.check(url) else {
        return;
    };
    let body = callback::payload(&jobs.route, &delivery.id, result);
    let (taken, attempts) = callback::send(signer, &uri, &delivery.id, body).await;
    let m = &jobs.metrics;
    for _ in 1..attempts {
        m.callback_failed.inc();
    }
    if taken {
        m.callback_sent.inc();
    } else {
        m.callback_failed.inc();
        m.callback_gave_up.inc();
        tracing::warn!(route = %jobs.route, job = %delivery.id, attempts, "a job's result callback was not taken; giving up");
    }
}

/// Sends the job through the cluster's admission and the route's attempts
/// and reads the answer up to the route's `max_result_bytes`.
async fn send_job(
    shared: Arc<Shared>,
    listener: Arc<ListenerState>,
    route: &CompiledRoute,
    jobs: &RouteJobs,
    delivery: &Delivery,
) -> Settle {
    let request = &delivery.request;
    let Some(parts) = request_parts(request, delivery) else {
        // A stored request that cannot be rebuilt will never go out.
        return Settle::Failed("the stored request cannot be rebuilt".into());
    };
    let conn = Arc::new(ConnInfo::internal(
        shared,
        listener.clone(),
        SocketAddr::new(request.client_ip, 0),
    ));
    let config = listener.current.load_full();
    let request_id = HeaderValue::from_str(delivery.id.as_str())
        .unwrap_or_else(|_| HeaderValue::from_static("-"));
    let arrival = Arrival {
        start: levee_core::time::now(),
        conn: &conn,
        listener: &config,
        request_id: request_id.clone(),
        grpc: false,
    };
    let head = http::Request::from_parts(parts.clone(), ());
    let mut done = Completion::new(conn.clone(), &arrival, &head);
    done.cluster = Some(route.cluster.clone());
    done.tenant = Some(delivery.tenant.clone());
    done.detail = Some(format!(
        "delivery {} of job {}",
        delivery.attempt, delivery.id
    ));
    let admission = crate::admit::cluster(
        route,
        Some(jobs.settings.delivery_timeout),
        route.config.priority,
        &delivery.tenant,
        &mut done,
    )
    .await;
    if let Some((kind, why)) = admission.refused {
        done.outcome = Outcome::Failed(kind);
        return match kind {
            // Refused before any attempt: not the job's fault.
            ErrorKind::Overloaded
            | ErrorKind::CircuitOpen
            | ErrorKind::OverflowRequests
            | ErrorKind::OverflowConnections
            | ErrorKind::DeadlineExceeded => Settle::NotSent,
            _ => Settle::Failed(why),
        };
    }
    let ctx = RequestContext {
        conn: &conn,
        request_id,
        grpc: false,
        body_limit: u64::MAX,
        route,
        tenant: delivery.tenant.clone(),
        priority: route.config.priority,
        caller_timeout: Some(jobs.settings.delivery_timeout),
        deadline: admission.deadline,
        close_after: false,
        rate_limit: None,
    };
    let outbound = Outbound::whole(parts, request.body.clone());
    let answer = send(&ctx, route, admission.deadline, outbound, &mut done).await;
    let mut resp = match answer {
        Ok(resp) => resp,
        Err((kind, detail)) => {
            done.outcome = Outcome::Failed(kind);
            return Settle::Failed(format!("{}: {detail}", kind.reason()));
        }
    };
    let status = resp.status().as_u16();
    done.outcome = Outcome::Response(status);
    let headers = resp
        .headers()
        .iter()
        .filter(|(n, _)| !crate::headers::is_hop_by_hop(n))
        .map(|(n, v)| (n.as_str().to_string(), v.as_bytes().to_vec()))
        .collect();
    resp.body_mut().attach(done);
    let (body, truncated) =
        match read_limited(resp.into_body(), jobs.settings.max_result_bytes).await {
            Ok(read) => read,
            Err(why) => return Settle::Failed(why),
        };
    if !super::is_final_status(status) {
        return Settle::Failed(format!("the upstream answered {status}"));
    }
    Settle::Delivered(StoredResult {
        status,
        headers,
        body,
        truncated,
    })
}

/// The stored request's head as the cluster gets it, with the job's
/// idempotency key and attempt.
fn request_parts(request: &StoredRequest, delivery: &Delivery) -> Option<http::request::Parts> {
    let mut builder = http::Request::builder()
        .method(request.method.as_str())
        .uri(request.path_and_query.as_str());
    for (name, value) in &request.headers {
        builder = builder.header(name.as_str(), value.as_slice());
    }
    let (mut parts, ()) = builder.body(()).ok()?.into_parts();
    let h = &mut parts.headers;
    h.insert(
        IDEMPOTENCY_KEY,
        HeaderValue::from_str(delivery.id.as_str()).ok()?,
    );
    h.insert(JOB_ID, HeaderValue::from_str(delivery.id.as_str()).ok()?);
    h.insert(JOB_ATTEMPT, HeaderValue::from(delivery.attempt));
    h.insert(
        http::header::CONTENT_LENGTH,
        HeaderValue::from(request.body.len()),
    );
    Some(parts)
}

/// Reads a response body up to `limit` bytes: the bytes, and whether more
/// was cut. A body that fails midway is a failed delivery.
async fn read_limited(
    mut body: crate::ProxyBody,
    limit: u64,
) -> Result<(bytes::Bytes, bool), String> {
    use http_body_util::BodyExt as _;
    let mut kept = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| "the upstream's answer broke off".to_string())?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        let room = (limit as usize).saturating_sub(kept.len());
        if data.len() > room {
            kept.extend_from_slice(&data[..room]);
            return Ok((kept.freeze(), true));
        }
        kept.extend_from_slice(&data);
    }
    Ok((kept.freeze(), false))
}
