//! The listener's side of async routes: a request accepted as a job and
//! answered `202 Accepted` with its `Location`, a shed request turned into
//! a job for a client that asked (`Prefer: respond-async`, RFC 7240), and
//! `GET` on a job's location.
//!
//! A job's location is `{status_prefix}/{route}/{id}`. Its `GET` answers,
//! to the job's tenant only (any other gets 404, as for a job that never
//! was): while the job waits or is delivered, `202` with its state as JSON
//! and `Retry-After`; once delivered, the upstream's answer as it was kept
//! (status, headers, body up to `max_result_bytes`); once dead, `200` with
//! its state as JSON and `levee-job-status: dead`. `?status` always
//! answers the state as JSON.

use super::{Accepted, JobId, JobStatus, JobView, NewJob, RouteJobs, StoredRequest};
use crate::admit::Caller;
use crate::body::ProxyBody;
use crate::headers::REQUEST_ID;
use crate::pipeline::respond::{self, Refusal};
use crate::pipeline::Arrival;
use crate::record::Completion;
use crate::router::CompiledRoute;
use bytes::Bytes;
use http::{header, HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body_util::BodyExt as _;
use levee_config::OrderBy;
use levee_core::{ErrorKind, Outcome};

const JOB_ID: HeaderName = HeaderName::from_static("levee-job-id");
const JOB_STATUS: HeaderName = HeaderName::from_static("levee-job-status");
const PREFERENCE_APPLIED: HeaderName = HeaderName::from_static("preference-applied");
const IDEMPOTENCY_KEY: &str = "idempotency-key";
/// A client's `Idempotency-Key` at most (longer is refused, 400).
const MAX_IDEMPOTENCY_KEY: usize = 255;

/// Whether the client asked for an asynchronous answer (RFC 7240).
pub(crate) fn prefers_async(headers: &HeaderMap) -> bool {
    headers.get_all("prefer").iter().any(|v| {
        v.to_str().is_ok_and(|s| {
            s.split(',').any(|p| {
                p.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .eq_ignore_ascii_case("respond-async")
            })
        })
    })
}

/// The part of `path` after the listener's jobs prefix, if it is under it.
pub(crate) fn under_prefix<'a>(prefix: &str, path: &'a str) -> Option<&'a str> {
    path.strip_prefix(prefix)?.strip_prefix('/')
}

/// Accepts a request on an `always` async route as a job (step 4's first
/// half applies: tenant, overload guard, rate limits).
pub(crate) async fn accept(
    arrival: Arrival<'_>,
    route: &CompiledRoute,
    jobs: &RouteJobs,
    req: Request<crate::body::RequestBody>,
    mut done: Completion,
) -> Response<ProxyBody> {
    let caller = match crate::admit::caller(
        &arrival,
        route,
        req.headers(),
        req.version(),
        &mut done,
    )
    .await
    {
        Ok(caller) => caller,
        Err(refused) => return respond::refuse(done, refused),
    };
    let peer = arrival.conn.peer.ip();
    let prefix = arrival.listener.jobs_prefix.clone().unwrap_or_default();
    let (parts, body) = req.into_parts();
    let body = match read_body(&parts.headers, body, jobs.settings.max_body_bytes).await {
        Ok(body) => body,
        Err(refused) => {
            jobs.metrics.too_large.inc();
            return respond::refuse(done, refused);
        }
    };
    enqueue(jobs, &caller, &prefix, parts, body, peer, done).await
}

/// Turns a request the cluster would shed into a job, for a client that
/// sent `Prefer: respond-async` on an `overflow` async route.
pub(crate) async fn overflow(
    jobs: &RouteJobs,
    caller: &Caller<'_>,
    parts: http::request::Parts,
    body: Bytes,
    peer: std::net::IpAddr,
    done: Completion,
) -> Response<ProxyBody> {
    let prefix = prefix_of(&done).unwrap_or_default();
    enqueue(jobs, caller, &prefix, parts, body, peer, done).await
}

/// Reads a job's body, refusing one over `limit` (413).
async fn read_body(
    headers: &HeaderMap,
    body: crate::body::RequestBody,
    limit: u64,
) -> Result<Bytes, Refusal<'static>> {
    let too_large = || {
        Refusal::new(
            ErrorKind::PayloadTooLarge,
            "the request body exceeds the async route's max_body_bytes",
        )
    };
    if crate::headers::content_length(headers).is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    job_body(body, limit).await
}

/// A job's whole body, at most `limit` bytes (413 beyond; a client that
/// stops sending is its own failure). Also what an overflowed request's
/// streamed body is read with.
pub(crate) async fn job_body(
    body: crate::body::RequestBody,
    limit: u64,
) -> Result<Bytes, Refusal<'static>> {
    let limited = http_body_util::Limited::new(body, usize::try_from(limit).unwrap_or(usize::MAX));
    match limited.collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(Refusal::new(
            ErrorKind::PayloadTooLarge,
            "the request body exceeds the async route's max_body_bytes",
        )),
        Err(_) => Err(Refusal::new(
            ErrorKind::ClientClosed,
            "the client stopped sending the request body",
        )),
    }
}

/// Stores the request as a job and answers 202 (or why not).
async fn enqueue(
    jobs: &RouteJobs,
    caller: &Caller<'_>,
    prefix: &str,
    parts: http::request::Parts,
    body: Bytes,
    peer: std::net::IpAddr,
    done: Completion,
) -> Response<ProxyBody> {
    let m = &jobs.metrics;
    let job = match new_job(jobs, caller, &parts, body, peer) {
        Ok(job) => job,
        Err(refused) => return respond::refuse(done, refused),
    };
    let asked_async = prefers_async(&parts.headers);
    let (id, existing) = match jobs.queue.submit(job).await {
        Ok(Accepted::New(id)) => {
            m.accepted.inc();
            (id, false)
        }
        Ok(Accepted::Existing(id)) => {
            m.existing.inc();
            (id, true)
        }
        Ok(Accepted::Full { retry_after }) => {
            m.full.inc();
            let mut resp = respond::refuse(
                done,
                Refusal::new(
                    ErrorKind::JobQueueFull,
                    "the route's job queue is at a limit",
                ),
            );
            let secs = retry_after.as_secs().max(1);
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
            return resp;
        }
        Err(e) => {
            m.submit_error.inc();
            return respond::refuse(
                done,
                Refusal::new(ErrorKind::JobQueueUnavailable, format!("job queue: {e}")),
            );
        }
    };
    let location = format!("{prefix}/{}/{id}", jobs.route);
    let body = serde_json::json!({
        "id": id.as_str(),
        "status": "queued",
        "location": location,
    });
    let mut resp = json_response(StatusCode::ACCEPTED, &body);
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&location) {
        h.insert(header::LOCATION, v);
    }
    if let Ok(v) = HeaderValue::from_str(id.as_str()) {
        h.insert(JOB_ID, v);
    }
    if existing {
        h.insert("levee-job-existing", HeaderValue::from_static("true"));
    }
    if asked_async {
        h.insert(
            PREFERENCE_APPLIED,
            HeaderValue::from_static("respond-async"),
        );
    }
    if let Some(limit) = &caller.rate_limit {
        limit.write_headers(h);
    }
    finish(resp, done, StatusCode::ACCEPTED)
}

/// The job to store for a request: its end-to-end headers, the ordering
/// key, the idempotency key and a callback the route allows.
fn new_job(
    jobs: &RouteJobs,
    caller: &Caller<'_>,
    parts: &http::request::Parts,
    body: Bytes,
    peer: std::net::IpAddr,
) -> Result<NewJob, Refusal<'static>> {
    let h = &parts.headers;
    let idempotency_key = match h.get(IDEMPOTENCY_KEY) {
        None => None,
        Some(v) => {
            let key = v
                .to_str()
                .ok()
                .map(str::trim)
                .filter(|k| !k.is_empty() && k.len() <= MAX_IDEMPOTENCY_KEY);
            let Some(key) = key else {
                return Err(Refusal::new(
                    ErrorKind::BadRequest,
                    "Idempotency-Key must be 1 to 255 visible ASCII characters",
                ));
            };
            Some(key.to_string())
        }
    };
    let ordering_key = match &jobs.settings.order_by {
        None => None,
        Some(OrderBy::Tenant) => Some(caller.tenant.to_string()),
        Some(OrderBy::Header(name)) => h
            .get(name.as_str())
            .and_then(|v| v.to_str().ok())
            .map(|v| v.trim().to_string()),
    };
    let callback = match (&jobs.callback, &jobs.settings.callback) {
        (Some(signer), Some(_)) => match h.get(&signer.header) {
            None => None,
            Some(v) => {
                let url = v.to_str().unwrap_or("");
                if let Err(why) = signer.check(url) {
                    return Err(Refusal::new(ErrorKind::BadRequest, why));
                }
                Some(url.to_string())
            }
        },
        _ => None,
    };
    let callback_header = jobs.callback.as_ref().map(|s| &s.header);
    let headers = h
        .iter()
        .filter(|(n, _)| {
            !crate::headers::is_hop_by_hop(n)
                && *n != header::CONTENT_LENGTH
                && *n != header::TRANSFER_ENCODING
                && Some(*n) != callback_header
                && n.as_str() != IDEMPOTENCY_KEY
                && n.as_str() != "prefer"
        })
        .map(|(n, v)| (n.as_str().to_string(), v.as_bytes().to_vec()))
        .collect();
    Ok(NewJob {
        tenant: caller.tenant.clone(),
        idempotency_key,
        ordering_key,
        callback,
        request: StoredRequest {
            method: parts.method.as_str().to_string(),
            path_and_query: parts
                .uri
                .path_and_query()
                .map_or("/", |p| p.as_str())
                .to_string(),
            headers,
            body,
            client_ip: peer,
        },
    })
}

fn prefix_of(done: &Completion) -> Option<String> {
    done.listener_jobs_prefix()
}

/// Answers `GET {prefix}/{route}/{id}` (see the module's doc).
pub(crate) async fn read(
    arrival: Arrival<'_>,
    rest: &str,
    req: &Request<crate::body::RequestBody>,
    done: Completion,
) -> Response<ProxyBody> {
    let not_found = |done| {
        respond::refuse(
            done,
            Refusal::new(ErrorKind::JobNotFound, "no such job for this tenant"),
        )
    };
    if req.method() != http::Method::GET && req.method() != http::Method::HEAD {
        return respond::refuse(
            done,
            Refusal::new(ErrorKind::BadRequest, "a job is read with GET"),
        );
    }
    let Some((route, id)) = rest.split_once('/') else {
        return not_found(done);
    };
    let Some(id) = JobId::parse(id) else {
        return not_found(done);
    };
    let shared = arrival.conn.shared();
    let Some(jobs) = shared.job_routes_lock().get(route).cloned() else {
        return not_found(done);
    };
    let tenant = match arrival
        .listener
        .tenants
        .resolve(req.headers(), levee_core::time::unix_secs)
    {
        Ok(tenant) => tenant,
        Err(why) => return respond::refuse(done, Refusal::new(ErrorKind::Unauthorized, why)),
    };
    let job = match jobs.queue.get(&id).await {
        Ok(Some(job)) if *job.tenant == *tenant => job,
        Ok(_) => return not_found(done),
        Err(e) => {
            return respond::refuse(
                done,
                Refusal::new(ErrorKind::JobQueueUnavailable, format!("job queue: {e}")),
            )
        }
    };
    let status_only = req
        .uri()
        .query()
        .is_some_and(|q| q.split('&').any(|p| p == "status"));
    let mut resp = match (&job.status, &job.result) {
        (JobStatus::Done, Some(result)) if !status_only => {
            let mut resp = Response::new(ProxyBody::full(result.body.clone()));
            *resp.status_mut() =
                StatusCode::from_u16(result.status).unwrap_or(StatusCode::BAD_GATEWAY);
            for (name, value) in &result.headers {
                if let (Ok(n), Ok(v)) = (
                    HeaderName::from_bytes(name.as_bytes()),
                    HeaderValue::from_bytes(value),
                ) {
                    if n != header::CONTENT_LENGTH && n != header::TRANSFER_ENCODING {
                        resp.headers_mut().append(n, v);
                    }
                }
            }
            if result.truncated {
                resp.headers_mut().insert(
                    "levee-job-result-truncated",
                    HeaderValue::from_static("true"),
                );
            }
            resp
        }
        (JobStatus::Queued | JobStatus::Delivering, _) => {
            let mut resp = json_response(StatusCode::ACCEPTED, &public_view(&jobs.route, &job));
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            resp
        }
        _ => json_response(StatusCode::OK, &public_view(&jobs.route, &job)),
    };
    let h = resp.headers_mut();
    h.insert(JOB_STATUS, HeaderValue::from_static(job.status.name()));
    if let Ok(v) = HeaderValue::from_str(id.as_str()) {
        h.insert(JOB_ID, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    let status = resp.status();
    finish(resp, done, status)
}

/// A job as its client may see it: no tenant, and of a failure only its
/// reason (the part Levee names, never an address or an upstream's text).
fn public_view(route: &str, job: &JobView) -> serde_json::Value {
    let last_error = job
        .last_error
        .as_deref()
        .map(|e| e.split(':').next().unwrap_or(e).trim());
    serde_json::json!({
        "id": job.id.as_str(),
        "route": route,
        "status": job.status.name(),
        "attempts": job.attempts,
        "accepted_at_ms": job.accepted_at_ms,
        "finished_at_ms": job.finished_at_ms,
        "next_attempt_at_ms": job.next_attempt_at_ms,
        "last_error": last_error,
        "result_status": job.result.as_ref().map(|r| r.status),
    })
}

fn json_response(status: StatusCode, body: &serde_json::Value) -> Response<ProxyBody> {
    let mut text = serde_json::to_vec(body).unwrap_or_default();
    text.push(b'\n');
    let mut resp = Response::new(ProxyBody::full(Bytes::from(text)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// The request id on the answer, and the record riding in its body.
fn finish(
    mut resp: Response<ProxyBody>,
    mut done: Completion,
    status: StatusCode,
) -> Response<ProxyBody> {
    if let Some(id) = done.request_id.clone() {
        resp.headers_mut().insert(REQUEST_ID, id);
    }
    done.outcome = Outcome::Response(status.as_u16());
    resp.body_mut().attach(done);
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn respond_async_is_found_among_preferences() {
        let mut h = HeaderMap::new();
        assert!(!prefers_async(&h));
        h.insert(
            "prefer",
            HeaderValue::from_static("return=minimal, Respond-Async; wait=10"),
        );
        assert!(prefers_async(&h));
        h.insert("prefer", HeaderValue::from_static("respond-asynchronously"));
        assert!(!prefers_async(&h));
    }

    #[test]
    fn only_paths_under_the_prefix_are_jobs() {
        assert_eq!(
            under_prefix("/_levee/jobs", "/_levee/jobs/orders/abc"),
            Some("orders/abc")
        );
        assert_eq!(under_prefix("/_levee/jobs", "/_levee/jobsx/a"), None);
        assert_eq!(under_prefix("/_levee/jobs", "/_levee/jobs"), None);
    }
}
