//! Step 7 of the life of a request: one record per request, written once when
//! the response body ends (or the client leaves), feeding route and cluster
//! metrics, the route's latency-history counts (`traffic.rs`), SLO
//! counters, endpoint load, the in-flight gauge and the access log from the
//! same outcome, so they never disagree.

use crate::cluster::{ClusterRuntime, EndpointState};
use crate::listener::ConnInfo;
use crate::pipeline::Arrival;
use crate::router::CompiledRoute;
use levee_core::time::Instant;
use levee_core::{ErrorKind, Outcome};
use std::sync::Arc;

/// Everything known about a request by the time its response is sent.
#[derive(Debug)]
pub(crate) struct Completion {
    conn: Arc<ConnInfo>,
    pub(crate) start: Instant,
    pub(crate) method: http::Method,
    pub(crate) uri: http::Uri,
    pub(crate) request_id: Option<http::HeaderValue>,
    pub(crate) route: Option<Arc<CompiledRoute>>,
    pub(crate) cluster: Option<Arc<ClusterRuntime>>,
    pub(crate) endpoint: Option<Arc<EndpointState>>,
    pub(crate) outcome: Outcome,
    pub(crate) bytes: u64,
    pub(crate) body_complete: bool,
    /// The cluster's in-flight slot (bulkhead), freed with this record.
    pub(crate) request_slot: Option<crate::guard::RequestSlot>,
    /// The request's tenant, once identified.
    pub(crate) tenant: Option<std::sync::Arc<str>>,
    /// Its priority class, once known.
    pub(crate) priority: Option<levee_config::Priority>,
    /// Its place under the cluster's concurrency limit, given back with
    /// this record.
    pub(crate) admission: Option<crate::queue::Permit>,
    /// A gRPC call (`content-type: application/grpc*`).
    pub(crate) grpc: bool,
    /// The upstream's `grpc-status`, from trailers or a trailers-only head.
    pub(crate) grpc_status: Option<u8>,
    /// What went wrong, in full, when the gateway answered itself: for the
    /// log, never for the client.
    pub(crate) detail: Option<String>,
    /// On a route with two versions: the release and where it counts this
    /// request.
    pub(crate) release: Option<(Arc<crate::release::Release>, crate::release::Arm)>,
    /// A stickiness cookie step 2 drew for a caller without one.
    pub(crate) set_cookie: Option<http::HeaderValue>,
    /// The fault step 3 injected (held until the record is written, for
    /// the fault's `max_active`).
    pub(crate) fault: Option<crate::fault::Injection>,
    /// A mirrored request's primary side: its body hashed as it streams,
    /// told to the mirror task when this record is written (`mirror.rs`).
    pub(crate) mirror: Option<Box<crate::mirror::PrimaryWatch>>,
}

/// The `grpc-status` in `headers`, if present and valid.
pub(crate) fn grpc_status(headers: &http::HeaderMap) -> Option<u8> {
    let v = headers.get("grpc-status")?.to_str().ok()?;
    v.trim().parse().ok()
}

impl Completion {
    /// Opens the record of a request that just arrived.
    pub(crate) fn new<B>(
        conn: Arc<ConnInfo>,
        arrival: &Arrival<'_>,
        req: &http::Request<B>,
    ) -> Self {
        conn.shared().metrics.in_flight.inc();
        conn.request_started(req.version());
        Self {
            conn,
            start: arrival.start,
            method: req.method().clone(),
            uri: req.uri().clone(),
            request_id: Some(arrival.request_id.clone()),
            route: None,
            cluster: None,
            endpoint: None,
            // Until an answer is chosen, a dropped request means the client
            // went away (its connection closed mid-request).
            outcome: Outcome::Failed(ErrorKind::ClientClosed),
            bytes: 0,
            body_complete: false,
            request_slot: None,
            tenant: None,
            priority: None,
            admission: None,
            grpc: arrival.grpc,
            grpc_status: None,
            detail: None,
            release: None,
            set_cookie: None,
            fault: None,
            mirror: None,
        }
    }

    /// The jobs prefix of the listener the request came in on.
    pub(crate) fn listener_jobs_prefix(&self) -> Option<String> {
        self.conn.listener.current.load().jobs_prefix.clone()
    }

    /// Notes the route (and its cluster) the request is for.
    pub(crate) fn routed(&mut self, route: Arc<CompiledRoute>) -> Arc<CompiledRoute> {
        self.cluster = Some(route.cluster.clone());
        self.route = Some(route.clone());
        route
    }

    /// Claims an in-flight slot on `endpoint`, released when this record is
    /// written.
    /// A retry moves the slot to the new attempt's endpoint.
    pub(crate) fn set_endpoint(&mut self, endpoint: Arc<EndpointState>) {
        endpoint.in_flight.inc();
        if let Some(previous) = self.endpoint.replace(endpoint) {
            previous.in_flight.dec();
        }
    }
}

impl Drop for Completion {
    fn drop(&mut self) {
        let end = levee_core::time::now();
        let elapsed = end.duration_since(self.start);
        let nanos = elapsed.as_nanos() as u64;
        // A gRPC call ended by a non-zero status counts as that status,
        // not as the HTTP 200 it travelled in.
        if let (Outcome::Response(200), Some(code)) = (self.outcome, self.grpc_status) {
            if code != 0 {
                self.outcome = Outcome::Grpc(code);
            }
        }
        if let Some(mirror) = self.mirror.take() {
            mirror.finish(self.outcome, self.body_complete, end);
        }
        let class = self.outcome.status_class();
        self.conn.shared().metrics.in_flight.dec();
        self.conn
            .request_finished(self.conn.shared().clock.nanos_at(end));
        if let Some(ep) = &self.endpoint {
            ep.in_flight.dec();
        }
        if let Some(route) = &self.route {
            route.metrics.requests.of(class).inc();
            route.metrics.latency.observe_nanos(nanos);
            // The latency history's counts: one relaxed add to a bucket
            // through a pointer resolved at reload (two on a failure).
            if let Some(served) = &route.served {
                served.record(self.outcome, nanos);
            }
            for slo in route.slos.iter() {
                slo.record(self.outcome, nanos, self.tenant.as_deref());
            }
            if let Some((release, arm)) = &self.release {
                release.counters(*arm).record(self.outcome, nanos);
            }
            if let Outcome::Grpc(code) = self.outcome {
                // Only failed calls reach the registry (and its lock).
                let code = code.to_string();
                self.conn
                    .shared()
                    .registry
                    .counter(
                        levee_core::metrics::names::GRPC_STATUS,
                        "gRPC calls ended with a non-zero grpc-status, by route and code.",
                        &[
                            ("route", route.config.name.as_str()),
                            ("grpc_status", &code),
                        ],
                    )
                    .inc();
            }
        }
        if let Some(kind) = self.outcome.error() {
            match &self.cluster {
                Some(c) => c.metrics.error(kind).inc(),
                None => self.conn.shared().metrics.error(kind).inc(),
            }
        }
        if !self.conn.shared().access_log() {
            return;
        }
        let none = "-";
        tracing::info!(
            target: "levee::access",
            method = %self.method,
            path = %self.uri.path(),
            route = self.route.as_ref().map_or(none, |r| r.config.name.as_str()),
            cluster = self.cluster.as_ref().map_or(none, |c| c.name()),
            tenant = self.tenant.as_deref().unwrap_or(none),
            priority = self.priority.map_or(none, |p| p.name()),
            endpoint = self.endpoint.as_ref().map_or(none, |e| e.label.as_str()),
            status = self.outcome.status(),
            duration_ms = elapsed.as_secs_f64() * 1e3,
            bytes = self.bytes,
            request_id = self.request_id.as_ref().and_then(|v| v.to_str().ok()).unwrap_or(none),
            error = self.outcome.error().map_or(none, |k| k.reason()),
            grpc_status = self.grpc_status.map_or(-1, i16::from),
            detail = self.detail.as_deref().unwrap_or(none),
            complete = self.body_complete,
        );
    }
}
