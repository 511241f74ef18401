//! Async routes (issue 16, `docs/async.md`): a request accepted as a job,
//! answered `202 Accepted` with a `Location` to poll, and delivered to the
//! route's cluster later, at the pace its limits allow.
//!
//! This module is the data plane's side: the contract every queue backend
//! meets ([`JobQueue`], opened per route by a [`JobBackend`]), the stored
//! forms of a request and its result ([`StoredRequest`], [`StoredResult`]),
//! accepting a job and reading it back on the listener (`submit`), the
//! delivery loop that sends jobs through the cluster's admission and
//! attempts (`deliver`), result callbacks signed as Standard Webhooks are
//! (`callback`), and the queue's metrics (`metrics`). The backends (the
//! embedded durable queue, NATS JetStream) live in `levee-control`, which
//! hands one to the gateway at start.
//!
//! Delivery is at least once: a job is settled only after its upstream
//! answered, so a gateway that dies mid-delivery delivers it again. Every
//! delivery of a job carries the same `Idempotency-Key`, so an upstream
//! that de-duplicates by it sees each job exactly once.

pub(crate) mod callback;
pub(crate) mod deliver;
pub(crate) mod metrics;
pub(crate) mod submit;
mod wire;

use futures_util::future::BoxFuture;
use levee_config::AsyncRoute;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

/// A job's public id: 1 to 64 of `[0-9A-Za-z_-]`, unguessable (it is the
/// capability to read the job's result, together with the tenant).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobId(Arc<str>);

impl JobId {
    /// `s` as a job id, if it has the shape of one.
    pub fn parse(s: &str) -> Option<Self> {
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        ok.then(|| Self(s.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for JobId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A request as stored in a job: what the upstream will get.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRequest {
    pub method: String,
    /// As the client sent it (the route's rewrite applies at delivery).
    pub path_and_query: String,
    /// End-to-end headers only (hop-by-hop ones are dropped at accept).
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: bytes::Bytes,
    /// The client's address, for `X-Forwarded-For` at delivery.
    pub client_ip: IpAddr,
}

impl StoredRequest {
    /// Its bytes in the queue (the job's size against the limits).
    pub fn encode(&self) -> Vec<u8> {
        wire::encode_request(self)
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        wire::decode_request(bytes)
    }
}

/// What the upstream answered a job's delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResult {
    pub status: u16,
    pub headers: Vec<(String, Vec<u8>)>,
    /// Up to the route's `max_result_bytes`.
    pub body: bytes::Bytes,
    /// The body was longer and was cut.
    pub truncated: bool,
}

impl StoredResult {
    pub fn encode(&self) -> Vec<u8> {
        wire::encode_result(self)
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        wire::decode_result(bytes)
    }
}

/// A job to accept.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub tenant: Arc<str>,
    /// The client's `Idempotency-Key`: the same tenant and key name the
    /// same job.
    pub idempotency_key: Option<String>,
    /// Jobs with the same key are delivered one at a time, in order.
    pub ordering_key: Option<String>,
    /// Where the result is pushed (already checked against the route's
    /// allowed hosts).
    pub callback: Option<String>,
    pub request: StoredRequest,
}

/// What [`JobQueue::submit`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Accepted {
    /// Stored (durably, as the backend promises) as a new job.
    New(JobId),
    /// The tenant's idempotency key named this job already.
    Existing(JobId),
    /// Over a limit: nothing stored; try again after this long.
    Full { retry_after: Duration },
}

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    Queued,
    Delivering,
    Done,
    Dead,
}

impl JobStatus {
    pub fn name(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Delivering => "delivering",
            Self::Done => "done",
            Self::Dead => "dead",
        }
    }

    pub fn from_name(s: &str) -> Option<Self> {
        [Self::Queued, Self::Delivering, Self::Done, Self::Dead]
            .into_iter()
            .find(|st| st.name() == s)
    }
}

/// One job as the admin API and its client see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobView {
    pub id: JobId,
    pub tenant: String,
    pub status: JobStatus,
    /// Deliveries started so far.
    pub attempts: u32,
    pub accepted_at_ms: u64,
    /// When it was delivered or given up on.
    pub finished_at_ms: Option<u64>,
    /// A queued job's next delivery (after a failure's backoff).
    pub next_attempt_at_ms: Option<u64>,
    pub ordering_key: Option<String>,
    /// The stored request's size.
    pub bytes: u64,
    /// Why the last delivery failed (the gateway's own words, never an
    /// upstream's body).
    pub last_error: Option<String>,
    /// A delivered job's answer, while kept.
    pub result: Option<StoredResult>,
    /// The request's method and path.
    pub method: String,
    pub path: String,
}

/// A delivery to make.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub id: JobId,
    /// From 1.
    pub attempt: u32,
    pub tenant: Arc<str>,
    pub accepted_at_ms: u64,
    pub request: StoredRequest,
    pub callback: Option<String>,
    /// The backend's own handle on the lease (a sequence, a message).
    pub lease: u64,
}

/// How a delivery ended.
#[derive(Debug, Clone)]
pub enum Settle {
    /// The upstream answered with a final status (2xx, or a 4xx other than
    /// 408 and 429): the job is done, this is its result.
    Delivered(StoredResult),
    /// It failed (no answer, 5xx, 408, 429): retried after the backoff, or
    /// dead when out of attempts or age.
    Failed(String),
    /// It was not sent (the cluster refused it: breaker open, limit full):
    /// queued again at once, the attempt not counted.
    NotSent,
}

/// What settling a delivery led to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    Done,
    /// Queued again, delivered after this long.
    Retry(Duration),
    Dead,
    /// The lease was no longer current (it expired and the job went to
    /// another delivery): nothing changed.
    Stale,
}

/// A queue's numbers now, for metrics, the SLIs and the admin API.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Waiting for delivery (ready or backing off).
    pub queued: u64,
    pub delivering: u64,
    pub dead: u64,
    /// Delivered, result still kept.
    pub done: u64,
    /// Bytes of the jobs not yet delivered.
    pub bytes: u64,
    /// Age of the oldest job neither delivered nor dead: the lag an
    /// autoscaler reads and the freshness SLI.
    pub oldest_undelivered: Option<Duration>,
    /// Per tenant: jobs not yet delivered (queued, delivering, dead).
    pub per_tenant: Vec<(String, u64)>,
}

/// Why a queue could not answer (its backend is down, a write failed).
/// The message is for logs and the admin API; clients get a 503 with
/// `levee-error: job_queue_unavailable` and nothing of it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct QueueError(pub String);

/// One async route's queue. Every method may be called from any task.
pub trait JobQueue: std::fmt::Debug + Send + Sync + 'static {
    /// Stores `job`; answers only once it is stored as the backend
    /// promises (on disk, or acknowledged by the NATS server).
    fn submit(&self, job: NewJob) -> BoxFuture<'_, Result<Accepted, QueueError>>;

    /// Job `id` (of any tenant: the caller checks who asks).
    fn get<'a>(&'a self, id: &'a JobId) -> BoxFuture<'a, Result<Option<JobView>, QueueError>>;

    /// Up to `max` deliveries ready now, each leased for the route's
    /// `delivery_timeout`; waits up to `wait` for the first.
    fn lease(&self, max: usize, wait: Duration)
        -> BoxFuture<'_, Result<Vec<Delivery>, QueueError>>;

    /// Ends `delivery` as `outcome` says.
    fn settle<'a>(
        &'a self,
        delivery: &'a Delivery,
        outcome: Settle,
    ) -> BoxFuture<'a, Result<Settled, QueueError>>;

    /// Jobs in `status` (all when `None`), oldest first, at most `limit`.
    fn list(
        &self,
        status: Option<JobStatus>,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<JobView>, QueueError>>;

    /// A dead job queued again with its attempts reset; `false` when it is
    /// not dead (or not there).
    fn retry<'a>(&'a self, id: &'a JobId) -> BoxFuture<'a, Result<bool, QueueError>>;

    /// Removes every dead job; how many.
    fn purge_dead(&self) -> BoxFuture<'_, Result<u64, QueueError>>;

    /// Its numbers now.
    fn stats(&self) -> BoxFuture<'_, Result<QueueStats, QueueError>>;
}

/// Opens async routes' queues. Implemented in `levee-control` (embedded,
/// JetStream); a gateway without one refuses configs with async routes.
pub trait JobBackend: std::fmt::Debug + Send + Sync + 'static {
    /// The queue of `route` with `settings`. Called at start and at each
    /// reload for every async route: the same route gets its same queue
    /// back, with the new settings applied (its jobs are kept).
    fn open<'a>(
        &'a self,
        route: &'a str,
        settings: &'a AsyncRoute,
    ) -> BoxFuture<'a, Result<Arc<dyn JobQueue>, QueueError>>;

    /// The gateway is shutting down: flush what is pending.
    fn close(&self) -> BoxFuture<'_, ()>;
}

/// Whether an upstream's status ends a job (a final answer) or is retried.
pub fn is_final_status(status: u16) -> bool {
    !(status >= 500 || status == 408 || status == 429)
}

/// An async route as the gateway runs it: its settings, its queue and its
/// metrics, kept by route name across reloads.
#[derive(Debug)]
pub(crate) struct RouteJobs {
    pub(crate) route: String,
    pub(crate) settings: AsyncRoute,
    pub(crate) queue: Arc<dyn JobQueue>,
    pub(crate) metrics: Arc<metrics::JobMetrics>,
    /// The result callbacks' signer, when the route has callbacks.
    pub(crate) callback: Option<Arc<callback::Signer>>,
}

/// The async routes of `config`, each with its queue: the running one when
/// its settings are unchanged, else opened (or reconfigured) through
/// `backend`.
pub(crate) async fn open_routes(
    config: &levee_config::Config,
    backend: Option<&Arc<dyn JobBackend>>,
    running: &std::collections::HashMap<String, Arc<RouteJobs>>,
    registry: &Arc<levee_core::metrics::Registry>,
) -> Result<std::collections::HashMap<String, Arc<RouteJobs>>, crate::ApplyError> {
    let mut routes = std::collections::HashMap::new();
    for r in &config.routes {
        let Some(settings) = &r.async_jobs else {
            continue;
        };
        let failed = |message: String| crate::ApplyError::Jobs {
            route: r.name.clone(),
            message,
        };
        if let Some(kept) = running.get(&r.name).filter(|j| j.settings == *settings) {
            routes.insert(r.name.clone(), kept.clone());
            continue;
        }
        let backend = backend.ok_or_else(|| {
            failed("this gateway has no job queue (start it through levee-control)".into())
        })?;
        let queue = backend
            .open(&r.name, settings)
            .await
            .map_err(|e| failed(e.0))?;
        let metrics = match running.get(&r.name) {
            Some(previous) => previous.metrics.clone(),
            None => Arc::new(metrics::JobMetrics::new(registry, &r.name)),
        };
        let callback = settings
            .callback
            .as_ref()
            .map(|c| callback::Signer::new(c).map(Arc::new))
            .transpose()
            .map_err(failed)?;
        routes.insert(
            r.name.clone(),
            Arc::new(RouteJobs {
                route: r.name.clone(),
                settings: settings.clone(),
                queue,
                metrics,
                callback,
            }),
        );
    }
    Ok(routes)
}
