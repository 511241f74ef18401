//! Async routes' queues on NATS JetStream (`[jobs] backend = "jetstream"`),
//! shared by every gateway that names the same server: any gateway accepts
//! a job, any delivers it, and one that dies mid-delivery loses nothing.
//!
//! This module owns what each route keeps on the server and the rules that
//! keep it consistent across gateways. For route `orders` and the default
//! prefix `LEVEE_JOBS`:
//!
//! - **Work stream** `LEVEE_JOBS_ORDERS` (work-queue retention) holds the
//!   jobs not yet delivered, one message each on `LEVEE_JOBS.orders.jobs.
//!   {tenant}.{partition}`: an envelope (id, tenant, acceptance time,
//!   callback) and the stored request. The route's `max_jobs` and
//!   `max_bytes` are its limits and `max_jobs_per_tenant` its per-subject
//!   limit, all discarding new messages, so a full queue refuses the
//!   publish and the client gets `Full`. A job is answered `202` only once
//!   the server acknowledged it. (Stream names upper-case the route and
//!   turn `.` into `_`; two routes that would share names are refused.)
//! - **Consumer** `levee`, durable and pulled by every gateway, with
//!   explicit acks and `ack_wait` a little over `delivery_timeout`: a job a
//!   gateway leased and never settled is handed to another after that.
//! - **Ordering** (`order_by`): a job goes to one of 16 partitions by its
//!   ordering key's hash (partition 0 on an unordered route), and an
//!   ordered route has one consumer per partition, `levee-0` to
//!   `levee-15`, each with one unsettled job at most: a key's jobs are
//!   delivered one at a time, in order, through failures and their
//!   backoff, while the partitions are delivered in parallel. Keys that
//!   share a partition wait for each other.
//! - **Records**, the KV bucket `LEVEE_JOBS_ORDERS`: `job.{id}` holds a
//!   job's status, attempts and last error (what `get` and `list` read),
//!   and `idem.{hash}` maps a tenant's `Idempotency-Key` to its job. The
//!   mapping is created only if absent, so two gateways accepting the same
//!   key race on one atomic write, and it lasts as long as the records, not
//!   just the server's two-minute duplicate window.
//! - **Results**, the KV bucket `LEVEE_JOBS_ORDERS_RESULTS`: `result.{id}`,
//!   kept `result_ttl` by the bucket's own expiry.
//! - **Dead letters**, the stream `LEVEE_JOBS_ORDERS_DEAD` (limits
//!   retention, oldest dropped when full): the request of each job out of
//!   attempts or age, until it is retried or purged.
//!
//! Every change of a job's record is a compare-and-set on its revision,
//! and the record carries JetStream's delivery count of the lease that
//! wrote it: a settle from a lease that expired and was handed on finds a
//! newer count and changes nothing (`Stale`). The record is written before
//! the message is acked, so a gateway that dies between the two leaves a
//! message whose record already says done (or dead), which the next lease
//! acks without delivering it again.
//!
//! JetStream counts every delivery, including the ones handed back unsent
//! (`Settle::NotSent`); the record counts those apart, and a job's attempt
//! is the delivery count less them. So the consumer redelivers without
//! limit and this module decides when a job is dead, including the job
//! whose gateway died on its last attempt (found dead at its next lease).
//!
//! Where it differs from the embedded queue, for what JetStream 2.9 can do:
//!
//! - Ordering is per partition, so unrelated keys can hold each other up;
//!   a retried dead job goes to the back of its partition; and on a route
//!   ordered by header, `max_jobs_per_tenant` applies per tenant and
//!   partition.
//! - Dead jobs do not count against `max_jobs` and `max_bytes`: they live
//!   in their own stream, bounded by the same numbers. (In the work stream
//!   a full queue could refuse a job its place among the dead.)
//! - `max_bytes_per_tenant` is not enforced: streams limit bytes per
//!   stream, not per subject. `max_jobs_per_tenant` is.
//! - Records and dead letters expire `max(max_age, result_ttl)` after
//!   their last change (a bucket's entries share one expiry before 2.11).
//! - In `stats`, `delivering` is the consumer's pending acks, which
//!   include failed jobs waiting out their backoff.

use async_nats::jetstream::{self, consumer, kv, stream, AckKind};
use bytes::Bytes;
use futures_util::future::{join_all, BoxFuture};
use futures_util::StreamExt as _;
use levee_config::{AsyncRoute, JetStream};
use levee_proxy::jobs::{
    Accepted, Delivery, JobBackend, JobId, JobQueue, JobStatus, JobView, NewJob, QueueError,
    QueueStats, Settle, Settled, StoredRequest, StoredResult,
};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What a client refused for a full queue is told to wait: the server
/// does not say when room frees, and a second keeps retries polite
/// without stalling them.
const FULL_RETRY_AFTER: Duration = Duration::from_secs(1);

/// The durable consumer every gateway pulls a route's jobs from; an
/// ordered route's partitions have `levee-0` to `levee-15` instead.
const CONSUMER: &str = "levee";

/// An ordered route's partitions: jobs with the same ordering key share
/// one, delivered one at a time; the partitions are delivered in parallel.
const PARTITIONS: u32 = 16;

/// Shortest waiting pull on an ordered route's partition.
const MIN_PULL: Duration = Duration::from_millis(50);

/// Room kept under the server's `max_payload` for a message's headers.
const HEADER_ROOM: usize = 1024;

/// Compare-and-set rounds on a job's record before an operation gives up
/// (each lost round means another gateway changed the job meanwhile).
const CAS_ROUNDS: usize = 4;

/// Messages read per request when scanning a stream (`list`, `purge_dead`).
const SCAN_BATCH: usize = 512;

/// A lease wait shorter than this is not worth a waiting pull request.
const MIN_WAIT: Duration = Duration::from_millis(10);

/// Above this many tenants' subjects, `stats` leaves `per_tenant` empty
/// rather than page through them on every call.
const PER_TENANT_MAX_SUBJECTS: u64 = 10_000;

/// Tenant tokens longer than this are replaced by a hash, to keep subjects
/// well under the server's control-line limit.
const MAX_TENANT_TOKEN: usize = 128;

/// Opens async routes' queues on one NATS server, connecting at the first
/// `open`. Each gateway has its own; they share the queues through the
/// server.
pub struct JetStreamBackend {
    settings: JetStream,
    connection: tokio::sync::Mutex<Option<Connection>>,
    queues: Mutex<HashMap<String, Arc<JetStreamQueue>>>,
}

#[derive(Clone)]
struct Connection {
    client: async_nats::Client,
    js: jetstream::Context,
}

impl std::fmt::Debug for JetStreamBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JetStreamBackend")
            .field("server", &redacted(self.settings.url.expose()))
            .field("stream_prefix", &self.settings.stream_prefix)
            .finish_non_exhaustive()
    }
}

impl JetStreamBackend {
    /// A backend for `settings`; nothing is contacted until a route opens.
    pub fn new(settings: &JetStream) -> Self {
        Self {
            settings: settings.clone(),
            connection: tokio::sync::Mutex::new(None),
            queues: Mutex::new(HashMap::new()),
        }
    }

    async fn connection(&self) -> Result<Connection, QueueError> {
        let mut slot = self.connection.lock().await;
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let c = connect(&self.settings).await?;
        *slot = Some(c.clone());
        Ok(c)
    }

    /// Refuses a route whose streams would be another open route's: names
    /// are upper-cased and `.` becomes `_`, so `a.b` and `A_B` would share.
    fn check_names(&self, route: &str, names: &Names) -> Result<(), QueueError> {
        let queues = self.queues.lock().expect("queues lock");
        let ours = names.streams();
        for (other, queue) in queues.iter().filter(|(other, _)| *other != route) {
            if let Some(clash) = queue.names.streams().iter().find(|s| ours.contains(s)) {
                return Err(QueueError(format!(
                    "routes `{route}` and `{other}` would share the JetStream stream `{clash}`; rename one"
                )));
            }
        }
        Ok(())
    }
}

async fn connect(settings: &JetStream) -> Result<Connection, QueueError> {
    let url = settings.url.expose();
    let server = redacted(url);
    let options = async_nats::ConnectOptions::new()
        .name("levee")
        .connection_timeout(settings.timeout)
        .request_timeout(Some(settings.timeout));
    // The client's own timeout covers one TCP connect; this one also
    // covers DNS, TLS and the server's INFO.
    let client = match tokio::time::timeout(settings.timeout * 2, options.connect(url)).await {
        Err(_) => {
            return Err(QueueError(format!(
                "JetStream: no answer from the NATS server at {server} within {:?}",
                settings.timeout * 2
            )))
        }
        Ok(Err(e)) => {
            return Err(QueueError(format!(
                "JetStream: cannot connect to the NATS server at {server}: {}",
                scrub(&error_chain(&e), url)
            )))
        }
        Ok(Ok(client)) => client,
    };
    let js = jetstream::ContextBuilder::new()
        .timeout(settings.timeout)
        .build(client.clone());
    Ok(Connection { client, js })
}

impl JobBackend for JetStreamBackend {
    fn open<'a>(
        &'a self,
        route: &'a str,
        settings: &'a AsyncRoute,
    ) -> BoxFuture<'a, Result<Arc<dyn JobQueue>, QueueError>> {
        Box::pin(async move {
            let names = Names::of(&self.settings.stream_prefix, route);
            self.check_names(route, &names)?;
            let conn = self.connection().await?;
            let setup = provision(&conn, &names, route, settings, self.settings.replicas).await?;
            let mut queues = self.queues.lock().expect("queues lock");
            if let Some(queue) = queues.get(route) {
                queue.setup.store(Arc::new(setup));
                return Ok(queue.clone() as Arc<dyn JobQueue>);
            }
            let queue = Arc::new(JetStreamQueue {
                route: route.to_string(),
                names,
                js: conn.js.clone(),
                timeout: self.settings.timeout,
                setup: arc_swap::ArcSwap::from_pointee(setup),
                leases: Mutex::new(HashMap::new()),
                next_lease: AtomicU64::new(1),
                pulls: Arc::default(),
            });
            queues.insert(route.to_string(), queue.clone());
            Ok(queue as Arc<dyn JobQueue>)
        })
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let conn = self.connection.lock().await.clone();
            if let Some(conn) = conn {
                // Acks and naks are sent without waiting for an answer:
                // flushing puts the last ones on the wire.
                let _ = tokio::time::timeout(self.settings.timeout, conn.client.flush()).await;
            }
        })
    }
}

/// The names one route's queue takes on the server.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Names {
    work: String,
    dead: String,
    records: String,
    results: String,
    /// `{prefix}.{route}`: every subject of the route starts with it.
    subject: String,
}

impl Names {
    fn of(prefix: &str, route: &str) -> Self {
        // Route names may hold `.`, which separates subject tokens and is
        // not allowed in stream names.
        let token: String = route
            .chars()
            .map(|c| if c == '.' { '_' } else { c })
            .collect();
        let upper = token.to_ascii_uppercase();
        Self {
            work: format!("{prefix}_{upper}"),
            dead: format!("{prefix}_{upper}_DEAD"),
            records: format!("{prefix}_{upper}"),
            results: format!("{prefix}_{upper}_RESULTS"),
            subject: format!("{prefix}.{token}"),
        }
    }

    /// The streams these names take (a KV bucket is the stream `KV_{name}`).
    fn streams(&self) -> [String; 4] {
        [
            self.work.clone(),
            self.dead.clone(),
            format!("KV_{}", self.records),
            format!("KV_{}", self.results),
        ]
    }

    fn jobs_filter(&self) -> String {
        format!("{}.jobs.>", self.subject)
    }

    /// `{prefix}.{route}.jobs.{tenant}.{partition}`: the tenant token
    /// carries the per-tenant limit, the partition the ordering.
    fn jobs_subject(&self, tenant: &str, partition: u32) -> String {
        format!("{}.jobs.{}.{partition}", self.subject, tenant_token(tenant))
    }

    fn partition_filter(&self, partition: u32) -> String {
        format!("{}.jobs.*.{partition}", self.subject)
    }

    /// The tenant a job or dead-letter subject names.
    fn tenant_of_subject(&self, subject: &str) -> Option<String> {
        let rest = subject.strip_prefix(&self.subject)?.strip_prefix('.')?;
        let rest = rest
            .strip_prefix("jobs.")
            .or_else(|| rest.strip_prefix("dead."))?;
        Some(tenant_of_token(rest.split('.').next()?))
    }

    fn dead_filter(&self) -> String {
        format!("{}.dead.>", self.subject)
    }

    fn dead_subject(&self, tenant: &str) -> String {
        format!("{}.dead.{}", self.subject, tenant_token(tenant))
    }
}

/// What a route's queue works with, replaced whole when the route's
/// settings change on reload.
struct Setup {
    settings: AsyncRoute,
    work: stream::Stream<()>,
    dead: stream::Stream<()>,
    /// The route's one consumer, or an ordered route's one per partition.
    consumers: Vec<consumer::PullConsumer>,
    records: kv::Store,
    results: kv::Store,
    /// The server's largest message.
    max_payload: usize,
}

/// How long records and dead letters are kept: a queued job's record must
/// outlive its longest stay, and a done one its result.
fn keep_for(settings: &AsyncRoute) -> Duration {
    settings.max_age.max(settings.result_ttl) + settings.delivery_timeout
}

/// How long a lease lasts on the server: `delivery_timeout`, plus a grace
/// so that a delivery the loop gave up on at its timeout is settled before
/// JetStream hands the job to another gateway.
fn ack_wait_for(settings: &AsyncRoute) -> Duration {
    settings.delivery_timeout + (settings.delivery_timeout / 4).min(Duration::from_secs(5))
}

/// Creates the route's streams, buckets and consumer, or updates them to
/// `settings` (their contents are kept).
async fn provision(
    conn: &Connection,
    names: &Names,
    route: &str,
    settings: &AsyncRoute,
    replicas: u32,
) -> Result<Setup, QueueError> {
    let js = &conn.js;
    let replicas = replicas.max(1) as usize;
    let keep = keep_for(settings);
    let limit = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    let work = stream::Config {
        name: names.work.clone(),
        description: Some(format!(
            "Levee async route `{route}`: jobs not yet delivered"
        )),
        subjects: vec![names.jobs_filter()],
        retention: stream::RetentionPolicy::WorkQueue,
        max_messages: limit(settings.max_jobs),
        max_bytes: limit(settings.max_bytes),
        max_messages_per_subject: limit(settings.max_jobs_per_tenant),
        discard: stream::DiscardPolicy::New,
        discard_new_per_subject: true,
        storage: stream::StorageType::File,
        num_replicas: replicas,
        ..Default::default()
    };
    let dead = stream::Config {
        name: names.dead.clone(),
        description: Some(format!(
            "Levee async route `{route}`: dead jobs' requests, until retried or purged"
        )),
        subjects: vec![names.dead_filter()],
        retention: stream::RetentionPolicy::Limits,
        max_messages: limit(settings.max_jobs),
        max_bytes: limit(settings.max_bytes),
        // A dead job must always find room (the alternative is losing it
        // outright), so a full dead-letter stream drops its oldest.
        discard: stream::DiscardPolicy::Old,
        max_age: keep,
        storage: stream::StorageType::File,
        num_replicas: replicas,
        ..Default::default()
    };
    for config in [work, dead] {
        let name = config.name.clone();
        js.create_or_update_stream(config)
            .await
            .map_err(|e| fail(&format!("setting up stream `{name}`"), e))?;
    }
    let records = bucket(
        js,
        &names.records,
        format!("Levee async route `{route}`: job records"),
        keep,
        replicas,
    )
    .await?;
    let results = bucket(
        js,
        &names.results,
        format!("Levee async route `{route}`: delivered jobs' results"),
        settings.result_ttl,
        replicas,
    )
    .await?;
    let work = js
        .get_stream_no_info(&names.work)
        .await
        .map_err(|e| fail(&format!("opening stream `{}`", names.work), e))?;
    let dead = js
        .get_stream_no_info(&names.dead)
        .await
        .map_err(|e| fail(&format!("opening stream `{}`", names.dead), e))?;
    let consumers = consumers(&work, names, route, settings).await?;
    Ok(Setup {
        settings: settings.clone(),
        work,
        dead,
        consumers,
        records,
        results,
        max_payload: conn.client.server_info().max_payload,
    })
}

/// The consumers `settings` want on the work stream, created or updated;
/// the other kind is deleted first (a work-queue stream's consumers may not
/// overlap). A job in flight when the kind changes is delivered again.
async fn consumers(
    work: &stream::Stream<()>,
    names: &Names,
    route: &str,
    settings: &AsyncRoute,
) -> Result<Vec<consumer::PullConsumer>, QueueError> {
    let partitioned: Vec<(String, String)> = (0..PARTITIONS)
        .map(|p| (format!("{CONSUMER}-{p}"), names.partition_filter(p)))
        .collect();
    let shared = vec![(CONSUMER.to_string(), names.jobs_filter())];
    let (wanted, unwanted) = if settings.order_by.is_some() {
        (partitioned, shared)
    } else {
        (shared, partitioned)
    };
    // Absent ones answer "not found", which is what is wanted.
    join_all(unwanted.iter().map(|(name, _)| work.delete_consumer(name))).await;
    let created = join_all(wanted.into_iter().map(|(name, filter)| async move {
        work.create_consumer(consumer::pull::Config {
            durable_name: Some(name.clone()),
            description: Some(format!("Levee gateways delivering route `{route}`")),
            ack_policy: consumer::AckPolicy::Explicit,
            ack_wait: ack_wait_for(settings),
            // Unlimited: attempts are counted here, less unsent deliveries.
            max_deliver: -1,
            // A partition delivers one job at a time, holding the next
            // until it is settled (through its backoff too); otherwise each
            // gateway's `concurrency` bounds its own leases.
            max_ack_pending: if settings.order_by.is_some() { 1 } else { -1 },
            filter_subject: filter,
            ..Default::default()
        })
        .await
        .map_err(|e| {
            fail(
                &format!("setting up consumer `{name}` on `{}`", names.work),
                e,
            )
        })
    }))
    .await;
    created.into_iter().collect()
}

/// Creates or updates the KV bucket `name` (one value per key, expiring
/// after `max_age`). Its stream is written here as async-nats would write
/// it, because async-nats's own bucket creation first reads account
/// fields that 2.9 servers do not send.
async fn bucket(
    js: &jetstream::Context,
    name: &str,
    description: String,
    max_age: Duration,
    replicas: usize,
) -> Result<kv::Store, QueueError> {
    let config = stream::Config {
        name: format!("KV_{name}"),
        description: Some(description),
        subjects: vec![format!("$KV.{name}.>")],
        max_messages_per_subject: 1,
        max_age,
        discard: stream::DiscardPolicy::New,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        storage: stream::StorageType::File,
        num_replicas: replicas,
        ..Default::default()
    };
    js.create_or_update_stream(config)
        .await
        .map_err(|e| fail(&format!("setting up bucket `{name}`"), e))?;
    js.get_key_value(name)
        .await
        .map_err(|e| fail(&format!("opening bucket `{name}`"), e))
}

/// One async route's queue on the server.
pub struct JetStreamQueue {
    route: String,
    names: Names,
    js: jetstream::Context,
    timeout: Duration,
    setup: arc_swap::ArcSwap<Setup>,
    /// This gateway's leases, by `Delivery::lease`.
    leases: Mutex<HashMap<u64, Leased>>,
    next_lease: AtomicU64,
    /// An ordered route's jobs pulled ahead of a lease.
    pulls: Arc<Pulls>,
}

impl std::fmt::Debug for JetStreamQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JetStreamQueue")
            .field("route", &self.route)
            .field("stream", &self.names.work)
            .finish_non_exhaustive()
    }
}

/// An ordered route's jobs pulled ahead of a lease, and which partitions
/// have a pull waiting (at most one each).
#[derive(Default)]
struct Pulls {
    ready: Mutex<std::collections::VecDeque<(jetstream::Message, levee_core::time::Instant)>>,
    pulling: Mutex<std::collections::HashSet<usize>>,
    arrived: tokio::sync::Notify,
}

impl Pulls {
    /// Up to `max` pulled jobs that waited less than `fresh_for`.
    fn take(&self, max: usize, fresh_for: Duration) -> Vec<jetstream::Message> {
        let now = levee_core::time::now();
        let mut ready = self.ready.lock().expect("pulls lock");
        let mut out = Vec::new();
        while out.len() < max {
            let Some((message, pulled_at)) = ready.pop_front() else {
                break;
            };
            if now.saturating_duration_since(pulled_at) < fresh_for {
                out.push(message);
            }
        }
        out
    }

    /// Starts a pull, expiring after `expires`, on every partition that
    /// has none waiting.
    fn pull_idle(self: &Arc<Self>, setup: &Setup, expires: Duration) {
        let mut pulling = self.pulling.lock().expect("pulls lock");
        for (partition, consumer) in setup.consumers.iter().enumerate() {
            if !pulling.insert(partition) {
                continue;
            }
            let (pulls, consumer) = (self.clone(), consumer.clone());
            tokio::spawn(async move {
                let started = levee_core::time::now();
                match fetch(&consumer, 1, Some(expires)).await {
                    Ok(messages) if !messages.is_empty() => {
                        let now = levee_core::time::now();
                        pulls
                            .ready
                            .lock()
                            .expect("pulls lock")
                            .extend(messages.into_iter().map(|m| (m, now)));
                        pulls.pulling.lock().expect("pulls lock").remove(&partition);
                        pulls.arrived.notify_waiters();
                        return;
                    }
                    Ok(_) => {}
                    Err(e) => tracing::debug!(error = %e, "a partition's pull failed"),
                }
                // A pull that ended early and empty (refused, or the server
                // away) is not repeated before it would have expired.
                let waited = levee_core::time::now().saturating_duration_since(started);
                tokio::time::sleep(expires.saturating_sub(waited)).await;
                pulls.pulling.lock().expect("pulls lock").remove(&partition);
            });
        }
    }
}

/// A message this gateway leased and has not settled.
struct Leased {
    message: jetstream::Message,
    /// JetStream's delivery count of this lease.
    delivered: u64,
    leased_at: levee_core::time::Instant,
}

/// A job's message: the envelope, then the stored request.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Envelope {
    id: String,
    tenant: String,
    accepted_at_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    callback: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ordering_key: Option<String>,
}

const ENVELOPE_V1: u8 = 1;

/// `[version][envelope length, u32 BE][envelope JSON][request]`: the
/// envelope in the payload, not in headers, so a tenant or callback of any
/// bytes travels as it is.
fn encode_job(envelope: &Envelope, request: &[u8]) -> Bytes {
    let meta = serde_json::to_vec(envelope).expect("an envelope serializes");
    let mut out = Vec::with_capacity(5 + meta.len() + request.len());
    out.push(ENVELOPE_V1);
    out.extend_from_slice(&(meta.len() as u32).to_be_bytes());
    out.extend_from_slice(&meta);
    out.extend_from_slice(request);
    out.into()
}

fn decode_job(bytes: &[u8]) -> Result<(Envelope, StoredRequest), String> {
    let damaged = || "a job message is damaged".to_string();
    let (&version, rest) = bytes.split_first().ok_or_else(damaged)?;
    if version != ENVELOPE_V1 {
        return Err(format!("a job message has unknown version {version}"));
    }
    if rest.len() < 4 {
        return Err(damaged());
    }
    let (len, rest) = rest.split_at(4);
    let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
    if rest.len() < len {
        return Err(damaged());
    }
    let (meta, request) = rest.split_at(len);
    let envelope: Envelope = serde_json::from_slice(meta).map_err(|_| damaged())?;
    Ok((envelope, StoredRequest::decode(request)?))
}

/// A job's record: what `get` and `list` show, and the state the gateways
/// agree on through compare-and-set.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Record {
    tenant: String,
    status: JobStatus,
    attempts: u32,
    /// JetStream's delivery count of the lease that last wrote this (0
    /// before the first): a settle from an older lease is stale.
    delivered: u64,
    /// Deliveries handed back unsent: JetStream counted them, attempts do
    /// not.
    not_sent: u64,
    accepted_at_ms: u64,
    finished_at_ms: Option<u64>,
    next_attempt_at_ms: Option<u64>,
    ordering_key: Option<String>,
    bytes: u64,
    last_error: Option<String>,
    method: String,
    path: String,
    /// The idempotency key's entry, removed with the job.
    idempotency: Option<String>,
    /// Where the job's request lies in the dead-letter stream.
    dead_seq: Option<u64>,
}

impl Record {
    fn queued(envelope: &Envelope, request: &StoredRequest, bytes: usize) -> Self {
        let path = request
            .path_and_query
            .split('?')
            .next()
            .unwrap_or_default()
            .to_string();
        Self {
            tenant: envelope.tenant.clone(),
            status: JobStatus::Queued,
            attempts: 0,
            delivered: 0,
            not_sent: 0,
            accepted_at_ms: envelope.accepted_at_ms,
            finished_at_ms: None,
            next_attempt_at_ms: None,
            ordering_key: envelope.ordering_key.clone(),
            bytes: bytes as u64,
            last_error: None,
            method: request.method.clone(),
            path,
            idempotency: None,
            dead_seq: None,
        }
    }

    fn view(self, id: JobId, result: Option<StoredResult>) -> JobView {
        JobView {
            id,
            tenant: self.tenant,
            status: self.status,
            attempts: self.attempts,
            accepted_at_ms: self.accepted_at_ms,
            finished_at_ms: self.finished_at_ms,
            next_attempt_at_ms: self.next_attempt_at_ms,
            ordering_key: self.ordering_key,
            bytes: self.bytes,
            last_error: self.last_error,
            result,
            method: self.method,
            path: self.path,
        }
    }
}

fn record_key(id: &str) -> String {
    format!("job.{id}")
}

fn result_key(id: &str) -> String {
    format!("result.{id}")
}

/// The records bucket's key for a tenant's idempotency key: a hash, so any
/// bytes make a valid key and none are stored in clear.
fn idempotency_key(tenant: &str, key: &str) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(tenant.as_bytes());
    ctx.update(&[0]);
    ctx.update(key.as_bytes());
    format!("idem.{}", hex(ctx.finish().as_ref()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A fresh job id: 128 bits from the system's secure generator (the id is
/// the capability to read the job's result).
fn new_job_id() -> Result<String, QueueError> {
    use ring::rand::SecureRandom as _;
    let mut bytes = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| QueueError("the system's random generator failed".into()))?;
    Ok(hex(&bytes))
}

/// A tenant as one subject token: `[A-Za-z0-9_-]` kept and any other byte
/// as `=XX`, so per-tenant counts can name the tenant again; the empty
/// tenant is `=`, and a very long one a hash.
fn tenant_token(tenant: &str) -> String {
    if tenant.is_empty() {
        return "=".into();
    }
    let mut out = String::with_capacity(tenant.len());
    for b in tenant.bytes() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("={b:02X}"));
        }
    }
    if out.len() > MAX_TENANT_TOKEN {
        let digest = ring::digest::digest(&ring::digest::SHA256, tenant.as_bytes());
        return format!("=H{}", &hex(digest.as_ref())[..32]);
    }
    out
}

/// The tenant a token names; a hashed token names itself.
fn tenant_of_token(token: &str) -> String {
    if token == "=" {
        return String::new();
    }
    let mut out = Vec::with_capacity(token.len());
    let bytes = token.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'=' {
            let Some(b) = token
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            else {
                return token.to_string();
            };
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap_or_else(|_| token.to_string())
}

/// The partition of an ordering key: the same on every gateway.
fn partition_of(key: &str) -> u32 {
    let digest = ring::digest::digest(&ring::digest::SHA256, key.as_bytes());
    let d = digest.as_ref();
    u32::from_be_bytes([d[0], d[1], d[2], d[3]]) % PARTITIONS
}

/// Where a job goes: partition 0 on an unordered route (so a tenant has
/// one subject, and its limit is exact); on an ordered one its key's
/// partition, or for a job without a key, one spread by its id.
fn job_partition(settings: &AsyncRoute, envelope: &Envelope) -> u32 {
    if settings.order_by.is_none() {
        return 0;
    }
    partition_of(envelope.ordering_key.as_deref().unwrap_or(&envelope.id))
}

fn now_ms() -> u64 {
    levee_core::time::unix_nanos() / 1_000_000
}

/// Full-jitter exponential backoff: uniform in `[0, min(max, base·2^(n-1))]`.
fn backoff(attempt: u32, base: Duration, max: Duration) -> Duration {
    let doublings = attempt.saturating_sub(1).min(31);
    let ceiling = base.saturating_mul(1u32 << doublings).min(max);
    let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
    if nanos == 0 {
        return Duration::ZERO;
    }
    Duration::from_nanos(levee_core::ids::random_u64() % nanos.saturating_add(1))
}

/// An error's message with its causes, as async-nats nests them.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}

fn fail(what: &str, e: impl std::error::Error) -> QueueError {
    QueueError(format!("JetStream: {what}: {}", error_chain(&e)))
}

/// `url` without its credentials: `scheme://host:port`.
fn redacted(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("nats", url));
    let authority = rest.split(['/', '?']).next().unwrap_or(rest);
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    format!("{scheme}://{host}")
}

/// `text` with `url`'s credentials (user, password or token) masked, in
/// case a client error quotes them.
fn scrub(text: &str, url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?']).next().unwrap_or(rest);
    let Some((userinfo, _)) = authority.rsplit_once('@') else {
        return text.to_string();
    };
    let mut out = text.replace(userinfo, "<redacted>");
    for part in userinfo.split(':').filter(|p| p.len() >= 3) {
        out = out.replace(part, "<redacted>");
    }
    out
}

/// The live record under `key` and its revision; `None` when there is
/// none, it was deleted, or it cannot be read.
async fn read_record(store: &kv::Store, key: &str) -> Result<Option<(Record, u64)>, QueueError> {
    let entry = store
        .entry(key)
        .await
        .map_err(|e| fail(&format!("reading `{key}`"), e))?;
    Ok(entry
        .filter(|e| e.operation == kv::Operation::Put)
        .and_then(|e| match serde_json::from_slice(&e.value) {
            Ok(record) => Some((record, e.revision)),
            Err(err) => {
                tracing::warn!(key, error = %err, "unreadable job record");
                None
            }
        }))
}

/// Writes `record` if `key` is still at `revision` (with `None`: if it
/// holds no record); the new revision, or `None` when another write came
/// first.
async fn write_record(
    store: &kv::Store,
    key: &str,
    record: &Record,
    revision: Option<u64>,
) -> Result<Option<u64>, QueueError> {
    let value = Bytes::from(serde_json::to_vec(record).expect("a record serializes"));
    match revision {
        Some(revision) => match store.update(key, value, revision).await {
            Ok(r) => Ok(Some(r)),
            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => Ok(None),
            Err(e) => Err(fail(&format!("writing `{key}`"), e)),
        },
        None => match store.create(key, value).await {
            Ok(r) => Ok(Some(r)),
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => Ok(None),
            Err(e) => Err(fail(&format!("writing `{key}`"), e)),
        },
    }
}

/// What a publish to a stream led to.
enum Published {
    Stored,
    Full,
}

/// Reads every message of `stream` on `filter` as `policy` picks them,
/// through a short-lived consumer.
async fn scan<I>(
    stream: &stream::Stream<I>,
    filter: String,
    policy: consumer::DeliverPolicy,
) -> Result<Vec<jetstream::Message>, QueueError> {
    let consumer: consumer::PullConsumer = stream
        .create_consumer(consumer::pull::Config {
            ack_policy: consumer::AckPolicy::None,
            deliver_policy: policy,
            filter_subject: filter,
            inactive_threshold: Duration::from_secs(60),
            memory_storage: true,
            ..Default::default()
        })
        .await
        .map_err(|e| fail("starting a scan", e))?;
    let expected = consumer.cached_info().num_pending;
    let name = consumer.cached_info().name.clone();
    let mut out = Vec::new();
    let read = async {
        while (out.len() as u64) < expected {
            let mut batch = consumer
                .fetch()
                .max_messages(SCAN_BATCH)
                .messages()
                .await
                .map_err(|e| fail("scanning", e))?;
            let before = out.len();
            while let Some(message) = batch.next().await {
                match message {
                    Ok(m) => out.push(m),
                    Err(_) => break,
                }
            }
            if out.len() == before {
                break;
            }
        }
        Ok::<(), QueueError>(())
    };
    let outcome = read.await;
    let _ = stream.delete_consumer(&name).await;
    outcome.map(|()| out)
}

impl JetStreamQueue {
    async fn publish(
        &self,
        subject: String,
        payload: Bytes,
        message_id: &str,
    ) -> Result<Published, QueueError> {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(async_nats::header::NATS_MESSAGE_ID, message_id);
        let ack = match self
            .js
            .publish_with_headers(subject, headers, payload)
            .await
        {
            Ok(ack) => ack.await,
            Err(e) => Err(e),
        };
        use jetstream::context::PublishErrorKind as Kind;
        match ack {
            Ok(_) => Ok(Published::Stored),
            Err(e) => {
                let text = error_chain(&e);
                if text.contains("maximum messages") || text.contains("maximum bytes") {
                    return Ok(Published::Full);
                }
                Err(QueueError(match e.kind() {
                    Kind::TimedOut => format!(
                        "JetStream: the server did not acknowledge within {:?}",
                        self.timeout
                    ),
                    Kind::StreamNotFound => format!(
                        "JetStream: stream `{}` is missing on the server; a reload creates it again",
                        self.names.work
                    ),
                    _ => format!("JetStream: publishing to `{}`: {text}", self.names.work),
                }))
            }
        }
    }

    async fn submit_job(&self, job: NewJob) -> Result<Accepted, QueueError> {
        let setup = self.setup.load_full();
        let id = new_job_id()?;
        let request = job.request.encode();
        let envelope = Envelope {
            id: id.clone(),
            tenant: job.tenant.to_string(),
            accepted_at_ms: now_ms(),
            callback: job.callback.clone(),
            ordering_key: job.ordering_key.clone(),
        };
        let payload = encode_job(&envelope, &request);
        if payload.len() + HEADER_ROOM > setup.max_payload {
            return Err(QueueError(format!(
                "JetStream: a job of {} bytes is over the NATS server's max_payload of {} bytes \
                 (raise `max_payload` on the server, or lower the route's max_body_bytes)",
                payload.len(),
                setup.max_payload
            )));
        }
        let idempotency = job
            .idempotency_key
            .as_deref()
            .map(|key| idempotency_key(&job.tenant, key));
        if let Some(key) = &idempotency {
            match setup.records.create(key, Bytes::from(id.clone())).await {
                Ok(_) => {}
                Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {
                    let existing = setup
                        .records
                        .get(key)
                        .await
                        .map_err(|e| fail("reading an idempotency key", e))?;
                    return existing
                        .and_then(|v| JobId::parse(std::str::from_utf8(&v).ok()?))
                        .map(Accepted::Existing)
                        .ok_or_else(|| {
                            QueueError(
                                "JetStream: an idempotency key's job was removed while it was read"
                                    .into(),
                            )
                        });
                }
                Err(e) => return Err(fail("recording an idempotency key", e)),
            }
        }
        let mut record = Record::queued(&envelope, &job.request, request.len());
        record.idempotency = idempotency.clone();
        let key = record_key(&id);
        let subject = self
            .names
            .jobs_subject(&job.tenant, job_partition(&setup.settings, &envelope));
        // The record and the message are written together: a lease that
        // comes first writes the record itself, from the envelope.
        let (published, recorded) = tokio::join!(
            self.publish(subject, payload, &id),
            write_record(&setup.records, &key, &record, None)
        );
        match published {
            Ok(Published::Stored) => {
                if let Err(e) = recorded {
                    // The job is stored and will run; its first lease
                    // writes the record.
                    tracing::warn!(route = %self.route, job = %id, error = %e, "job stored without its record");
                }
                Ok(Accepted::New(
                    JobId::parse(&id).expect("a fresh id is valid"),
                ))
            }
            refused => {
                // Nothing is kept of a job the server refused, so the same
                // idempotency key may try again. (A publish that timed out
                // may still have been stored: then it runs without a record
                // until its first lease writes one.)
                if matches!(recorded, Ok(Some(_))) {
                    let _ = setup.records.delete(&key).await;
                }
                if let Some(key) = &idempotency {
                    let _ = setup.records.delete(key).await;
                }
                refused.map(|_| Accepted::Full {
                    retry_after: FULL_RETRY_AFTER,
                })
            }
        }
    }

    async fn lease_jobs(&self, max: usize, wait: Duration) -> Result<Vec<Delivery>, QueueError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let setup = self.setup.load_full();
        self.forget_abandoned(&setup);
        let messages = match &setup.consumers[..] {
            [consumer] => fetch_shared(consumer, max, wait).await?,
            _ => self.fetch_ordered(&setup, max, wait).await,
        };
        let prepared = join_all(messages.into_iter().map(|m| self.prepare(&setup, m))).await;
        let mut deliveries = Vec::with_capacity(prepared.len());
        let mut failure = None;
        for p in prepared {
            match p {
                Ok(Some(d)) => deliveries.push(d),
                Ok(None) => {}
                Err(e) => {
                    // Its lease runs out and another delivery takes it.
                    tracing::warn!(route = %self.route, error = %e, "a leased job could not be prepared");
                    failure.get_or_insert(e);
                }
            }
        }
        match failure {
            Some(e) if deliveries.is_empty() => Err(e),
            _ => Ok(deliveries),
        }
    }

    /// Up to `max` jobs from an ordered route's partitions, waiting up to
    /// `wait` for the first. Every partition idle here gets a waiting pull
    /// whose job, when it comes, waits in `pulls` for a lease: leases
    /// return at the first job, and a partition's next job is on its way
    /// while this one is delivered. A job that waited past half its lease
    /// is dropped (its lease runs out and it is delivered again), so a job
    /// is never handed out once another gateway may hold it.
    async fn fetch_ordered(
        &self,
        setup: &Setup,
        max: usize,
        wait: Duration,
    ) -> Vec<jetstream::Message> {
        let deadline = levee_core::time::now() + wait;
        let fresh_for = ack_wait_for(&setup.settings) / 2;
        loop {
            let arrived = self.pulls.arrived.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            let ready = self.pulls.take(max, fresh_for);
            let remaining = deadline.saturating_duration_since(levee_core::time::now());
            self.pulls.pull_idle(setup, remaining.max(MIN_PULL));
            if !ready.is_empty() || remaining.is_zero() {
                return ready;
            }
            tokio::select! {
                _ = arrived => {}
                _ = tokio::time::sleep(remaining) => {}
            }
        }
    }

    /// Drops local leases long past their server-side expiry (a delivery
    /// that was never settled).
    fn forget_abandoned(&self, setup: &Setup) {
        let horizon = ack_wait_for(&setup.settings) * 2;
        let now = levee_core::time::now();
        self.leases
            .lock()
            .expect("leases lock")
            .retain(|_, l| now.saturating_duration_since(l.leased_at) < horizon);
    }

    /// Turns a fetched message into a delivery, recording the lease; `None`
    /// when the message needs no delivery (already done or dead, out of
    /// attempts, damaged, or superseded by a newer delivery of it).
    async fn prepare(
        &self,
        setup: &Setup,
        message: jetstream::Message,
    ) -> Result<Option<Delivery>, QueueError> {
        let delivered = message
            .info()
            .map(|i| u64::try_from(i.delivered).unwrap_or(1).max(1))
            .map_err(|e| QueueError(format!("JetStream: a delivery without metadata: {e}")))?;
        let decoded = decode_job(&message.payload).and_then(|(envelope, request)| {
            let id = JobId::parse(&envelope.id).ok_or("a job message has an invalid id")?;
            Ok((id, envelope, request))
        });
        let (id, envelope, request) = match decoded {
            Ok(job) => job,
            Err(e) => {
                tracing::error!(route = %self.route, error = %e, "dropping a damaged job message");
                acknowledge(&message, AckKind::Term).await;
                return Ok(None);
            }
        };
        let key = record_key(id.as_str());
        for _ in 0..CAS_ROUNDS {
            let (mut record, revision) = match read_record(&setup.records, &key).await? {
                Some((record, revision)) => (record, Some(revision)),
                None => (
                    Record::queued(&envelope, &request, request_size(&message)),
                    None,
                ),
            };
            match record.status {
                // Settled already; only the ack was lost.
                JobStatus::Done => {
                    acknowledge(&message, AckKind::Ack).await;
                    return Ok(None);
                }
                JobStatus::Dead => {
                    acknowledge(&message, AckKind::Term).await;
                    return Ok(None);
                }
                JobStatus::Queued | JobStatus::Delivering => {}
            }
            if delivered < record.delivered {
                return Ok(None);
            }
            let attempt = u32::try_from(delivered.saturating_sub(record.not_sent))
                .unwrap_or(u32::MAX)
                .max(1);
            if attempt > setup.settings.max_attempts {
                // The gateway that held its last attempt never settled it.
                const UNSETTLED: &str =
                    "its last attempt had no outcome within the delivery timeout";
                record.last_error = Some(match record.last_error.take() {
                    Some(earlier) => format!("{earlier}; then {UNSETTLED}"),
                    None => UNSETTLED.to_string(),
                });
                if self.bury(setup, &message, record, revision).await? {
                    return Ok(None);
                }
                continue;
            }
            record.status = JobStatus::Delivering;
            record.attempts = attempt;
            record.delivered = delivered;
            record.next_attempt_at_ms = None;
            if write_record(&setup.records, &key, &record, revision)
                .await?
                .is_none()
            {
                continue;
            }
            let lease = self.next_lease.fetch_add(1, Ordering::Relaxed);
            self.leases.lock().expect("leases lock").insert(
                lease,
                Leased {
                    message,
                    delivered,
                    leased_at: levee_core::time::now(),
                },
            );
            return Ok(Some(Delivery {
                id,
                attempt,
                tenant: envelope.tenant.into(),
                accepted_at_ms: envelope.accepted_at_ms,
                request,
                callback: envelope.callback,
                lease,
            }));
        }
        Err(QueueError(format!(
            "JetStream: job {id}'s record kept changing while it was leased"
        )))
    }

    /// Moves a job to the dead-letter stream and marks it dead, if its
    /// record is still at `revision`; `false` when another write came
    /// first (nothing is changed then).
    async fn bury(
        &self,
        setup: &Setup,
        message: &jetstream::Message,
        mut record: Record,
        revision: Option<u64>,
    ) -> Result<bool, QueueError> {
        let ack = self
            .js
            .publish(
                self.names.dead_subject(&record.tenant),
                message.payload.clone(),
            )
            .await;
        let ack = match ack {
            Ok(ack) => ack.await,
            Err(e) => Err(e),
        };
        let seq = ack
            .map_err(|e| fail(&format!("moving a job to `{}`", self.names.dead), e))?
            .sequence;
        let id = decode_job(&message.payload)
            .map(|(envelope, _)| envelope.id)
            .unwrap_or_default();
        record.status = JobStatus::Dead;
        record.finished_at_ms = Some(now_ms());
        record.next_attempt_at_ms = None;
        record.dead_seq = Some(seq);
        if write_record(&setup.records, &record_key(&id), &record, revision)
            .await?
            .is_none()
        {
            let _ = setup.dead.delete_message(seq).await;
            return Ok(false);
        }
        acknowledge(message, AckKind::Term).await;
        Ok(true)
    }

    async fn settle_job(
        &self,
        delivery: &Delivery,
        outcome: Settle,
    ) -> Result<Settled, QueueError> {
        let leased = self
            .leases
            .lock()
            .expect("leases lock")
            .remove(&delivery.lease);
        let Some(leased) = leased else {
            return Ok(Settled::Stale);
        };
        let setup = self.setup.load_full();
        let settled = self.finish(&setup, delivery, &leased, &outcome).await;
        if settled.is_err() {
            // Settling may be tried again while the lease lasts.
            self.leases
                .lock()
                .expect("leases lock")
                .insert(delivery.lease, leased);
        }
        settled
    }

    async fn finish(
        &self,
        setup: &Setup,
        delivery: &Delivery,
        leased: &Leased,
        outcome: &Settle,
    ) -> Result<Settled, QueueError> {
        let id = delivery.id.as_str();
        let key = record_key(id);
        let mut result_written = false;
        for _ in 0..CAS_ROUNDS {
            let Some((mut record, revision)) = read_record(&setup.records, &key).await? else {
                // Purged or expired meanwhile: nothing to settle.
                return Ok(Settled::Stale);
            };
            if record.status != JobStatus::Delivering || record.delivered != leased.delivered {
                return Ok(Settled::Stale);
            }
            let revision = Some(revision);
            match outcome {
                Settle::Delivered(result) => {
                    if !result_written {
                        // Before the record says done, so a reader that
                        // sees `done` finds the result.
                        let bytes = fit_result(result, setup.max_payload);
                        setup
                            .results
                            .put(result_key(id), bytes.into())
                            .await
                            .map_err(|e| fail("storing a result", e))?;
                        result_written = true;
                    }
                    record.status = JobStatus::Done;
                    record.finished_at_ms = Some(now_ms());
                    record.next_attempt_at_ms = None;
                    if write_record(&setup.records, &key, &record, revision)
                        .await?
                        .is_none()
                    {
                        continue;
                    }
                    acknowledge(&leased.message, AckKind::Ack).await;
                    return Ok(Settled::Done);
                }
                Settle::Failed(error) => {
                    record.last_error = Some(error.clone());
                    let age = Duration::from_millis(now_ms().saturating_sub(record.accepted_at_ms));
                    if record.attempts >= setup.settings.max_attempts
                        || age >= setup.settings.max_age
                    {
                        if self.bury(setup, &leased.message, record, revision).await? {
                            return Ok(Settled::Dead);
                        }
                        continue;
                    }
                    let wait = backoff(
                        record.attempts,
                        setup.settings.backoff_base,
                        setup.settings.backoff_max,
                    );
                    record.status = JobStatus::Queued;
                    record.next_attempt_at_ms = Some(now_ms() + wait.as_millis() as u64);
                    if write_record(&setup.records, &key, &record, revision)
                        .await?
                        .is_none()
                    {
                        continue;
                    }
                    acknowledge(&leased.message, AckKind::Nak(Some(wait))).await;
                    return Ok(Settled::Retry(wait));
                }
                Settle::NotSent => {
                    record.status = JobStatus::Queued;
                    record.not_sent += 1;
                    if write_record(&setup.records, &key, &record, revision)
                        .await?
                        .is_none()
                    {
                        continue;
                    }
                    acknowledge(&leased.message, AckKind::Nak(None)).await;
                    return Ok(Settled::Retry(Duration::ZERO));
                }
            }
        }
        Err(QueueError(format!(
            "JetStream: job {id}'s record kept changing while it was settled"
        )))
    }

    async fn get_job(&self, id: &JobId) -> Result<Option<JobView>, QueueError> {
        let setup = self.setup.load_full();
        let Some((record, _)) = read_record(&setup.records, &record_key(id.as_str())).await? else {
            return Ok(None);
        };
        let result = if record.status == JobStatus::Done {
            read_result(&setup, id.as_str()).await?
        } else {
            None
        };
        Ok(Some(record.view(id.clone(), result)))
    }

    async fn list_jobs(
        &self,
        status: Option<JobStatus>,
        limit: usize,
    ) -> Result<Vec<JobView>, QueueError> {
        let setup = self.setup.load_full();
        let prefix = format!("{}job.", setup.records.prefix);
        let messages = scan(
            &setup.records.stream,
            format!("{prefix}>"),
            consumer::DeliverPolicy::LastPerSubject,
        )
        .await?;
        let mut jobs: Vec<(JobId, Record)> = messages
            .iter()
            .filter_map(|m| {
                let id = JobId::parse(m.subject.as_str().strip_prefix(&prefix)?)?;
                // Deleted records are markers with an empty payload.
                let record: Record = serde_json::from_slice(&m.payload).ok()?;
                Some((id, record))
            })
            .filter(|(_, r)| status.is_none_or(|s| r.status == s))
            .collect();
        jobs.sort_by(|(a, ra), (b, rb)| (ra.accepted_at_ms, a).cmp(&(rb.accepted_at_ms, b)));
        jobs.truncate(limit);
        let views = jobs.into_iter().map(|(id, record)| {
            let setup = &setup;
            async move {
                let result = if record.status == JobStatus::Done {
                    read_result(setup, id.as_str()).await?
                } else {
                    None
                };
                Ok::<_, QueueError>(record.view(id, result))
            }
        });
        join_all(views).await.into_iter().collect()
    }

    async fn retry_job(&self, id: &JobId) -> Result<bool, QueueError> {
        let setup = self.setup.load_full();
        let key = record_key(id.as_str());
        for _ in 0..CAS_ROUNDS {
            let Some((mut record, revision)) = read_record(&setup.records, &key).await? else {
                return Ok(false);
            };
            if record.status != JobStatus::Dead {
                return Ok(false);
            }
            let Some(seq) = record.dead_seq else {
                return Err(QueueError(format!(
                    "JetStream: dead job {id} has no request kept to retry"
                )));
            };
            let stored = match setup.dead.get_raw_message(seq).await {
                Ok(m) => m,
                Err(e) if e.kind() == stream::RawMessageErrorKind::NoMessageFound => {
                    return Err(QueueError(format!(
                        "JetStream: dead job {id}'s request is no longer in `{}` \
                         (dropped when that stream was full, or expired)",
                        self.names.dead
                    )))
                }
                Err(e) => return Err(fail(&format!("reading `{}`", self.names.dead), e)),
            };
            let dead = record.clone();
            record.status = JobStatus::Queued;
            record.attempts = 0;
            record.delivered = 0;
            record.not_sent = 0;
            record.finished_at_ms = None;
            record.next_attempt_at_ms = None;
            record.dead_seq = None;
            // Queued before it is published: a lease that saw `dead` would
            // drop the new message.
            let Some(revision) =
                write_record(&setup.records, &key, &record, Some(revision)).await?
            else {
                continue;
            };
            let (envelope, _) = decode_job(&stored.payload).map_err(QueueError)?;
            let partition = job_partition(&setup.settings, &envelope);
            let published = self
                .publish(
                    self.names.jobs_subject(&record.tenant, partition),
                    stored.payload,
                    &format!("{id}.retry.{seq}"),
                )
                .await;
            match published {
                Ok(Published::Stored) => {
                    if let Err(e) = setup.dead.delete_message(seq).await {
                        tracing::warn!(route = %self.route, job = %id, error = %e, "retried job left in the dead-letter stream");
                    }
                    return Ok(true);
                }
                refused => {
                    let _ = write_record(&setup.records, &key, &dead, Some(revision)).await;
                    return Err(match refused {
                        Ok(_) => QueueError(format!(
                            "JetStream: dead job {id} cannot be queued again: the queue is full"
                        )),
                        Err(e) => e,
                    });
                }
            }
        }
        Ok(false)
    }

    async fn purge_dead_jobs(&self) -> Result<u64, QueueError> {
        let setup = self.setup.load_full();
        let messages = scan(
            &setup.dead,
            self.names.dead_filter(),
            consumer::DeliverPolicy::All,
        )
        .await?;
        let Some(last) = messages
            .iter()
            .filter_map(|m| m.info().ok().map(|i| i.stream_sequence))
            .max()
        else {
            return Ok(0);
        };
        // Records first: a request left without its record is removed by
        // the next purge, while a dead record left without its request
        // could never be retried nor purged.
        let ids: Vec<String> = messages
            .iter()
            .filter_map(|m| decode_job(&m.payload).ok().map(|(e, _)| e.id))
            .collect();
        let setup_ref: &Setup = &setup;
        let forgets = futures_util::stream::iter(ids)
            .map(|id| async move { forget_dead(setup_ref, &id).await })
            .buffer_unordered(32)
            .collect::<Vec<_>>()
            .await;
        forgets.into_iter().collect::<Result<(), _>>()?;
        let purged = setup
            .dead
            .purge()
            .sequence(last + 1)
            .await
            .map_err(|e| fail(&format!("purging `{}`", self.names.dead), e))?;
        Ok(purged.purged)
    }

    async fn queue_stats(&self) -> Result<QueueStats, QueueError> {
        let setup = self.setup.load_full();
        let (work, consumers, dead, results) = tokio::join!(
            setup.work.get_info(),
            join_all(setup.consumers.iter().map(|c| c.get_info())),
            setup.dead.get_info(),
            setup.results.stream.get_info()
        );
        let work = work.map_err(|e| fail(&format!("reading `{}`", self.names.work), e))?;
        let mut delivering = 0;
        for consumer in consumers {
            let consumer = consumer.map_err(|e| fail("reading the consumer", e))?;
            delivering += consumer.num_ack_pending as u64;
        }
        let dead = dead.map_err(|e| fail(&format!("reading `{}`", self.names.dead), e))?;
        let results = results.map_err(|e| fail(&format!("reading `{}`", self.names.results), e))?;
        let oldest_undelivered = (work.state.messages > 0).then(|| {
            let first = work.state.first_timestamp.unix_timestamp_nanos();
            let now = i128::from(levee_core::time::unix_nanos());
            Duration::from_nanos(u64::try_from(now - first).unwrap_or(0))
        });
        let subjects = work.state.subjects_count + dead.state.subjects_count;
        let per_tenant = if subjects <= PER_TENANT_MAX_SUBJECTS {
            self.per_tenant(&setup).await?
        } else {
            Vec::new()
        };
        Ok(QueueStats {
            queued: work.state.messages.saturating_sub(delivering),
            delivering,
            dead: dead.state.messages,
            done: results.state.messages,
            bytes: work.state.bytes,
            oldest_undelivered,
            per_tenant,
        })
    }

    /// Jobs per tenant, from the per-tenant subjects' counts.
    async fn per_tenant(&self, setup: &Setup) -> Result<Vec<(String, u64)>, QueueError> {
        let mut counts: HashMap<String, u64> = HashMap::new();
        for (stream, filter) in [
            (&setup.work, self.names.jobs_filter()),
            (&setup.dead, self.names.dead_filter()),
        ] {
            let mut subjects = stream
                .info_with_subjects(filter)
                .await
                .map_err(|e| fail("reading per-tenant counts", e))?;
            while let Some(entry) = subjects.next().await {
                let (subject, count) = entry.map_err(|e| fail("reading per-tenant counts", e))?;
                if let Some(tenant) = self.names.tenant_of_subject(&subject) {
                    *counts.entry(tenant).or_default() += count as u64;
                }
            }
        }
        let mut counts: Vec<(String, u64)> = counts.into_iter().collect();
        counts.sort();
        Ok(counts)
    }
}

/// Removes a purged dead job's record (if it is still dead) and its
/// idempotency key.
async fn forget_dead(setup: &Setup, id: &str) -> Result<(), QueueError> {
    let key = record_key(id);
    let Some((record, revision)) = read_record(&setup.records, &key).await? else {
        return Ok(());
    };
    if record.status != JobStatus::Dead {
        return Ok(());
    }
    match setup
        .records
        .delete_expect_revision(&key, Some(revision))
        .await
    {
        Ok(()) => {}
        // Retried meanwhile: it is no longer this purge's.
        Err(_)
            if read_record(&setup.records, &key)
                .await?
                .is_some_and(|(r, _)| r.status != JobStatus::Dead) =>
        {
            return Ok(())
        }
        Err(e) => return Err(fail(&format!("removing `{key}`"), e)),
    }
    if let Some(idempotency) = &record.idempotency {
        setup
            .records
            .delete(idempotency)
            .await
            .map_err(|e| fail("removing an idempotency key", e))?;
    }
    Ok(())
}

async fn read_result(setup: &Setup, id: &str) -> Result<Option<StoredResult>, QueueError> {
    let bytes = setup
        .results
        .get(result_key(id))
        .await
        .map_err(|e| fail("reading a result", e))?;
    Ok(bytes.and_then(|b| match StoredResult::decode(&b) {
        Ok(r) => Some(r),
        Err(e) => {
            tracing::warn!(job = id, error = %e, "unreadable job result");
            None
        }
    }))
}

/// `result` encoded, its body cut (and marked so) to fit in one message.
fn fit_result(result: &StoredResult, max_payload: usize) -> Vec<u8> {
    let bytes = result.encode();
    let room = max_payload.saturating_sub(HEADER_ROOM);
    if bytes.len() <= room {
        return bytes;
    }
    let keep = result.body.len().saturating_sub(bytes.len() - room);
    StoredResult {
        body: result.body.slice(..keep),
        truncated: true,
        ..result.clone()
    }
    .encode()
}

/// The stored request's size, from a job message.
fn request_size(message: &jetstream::Message) -> usize {
    let payload = &message.payload;
    let meta = payload
        .get(1..5)
        .map_or(0, |l| u32::from_be_bytes([l[0], l[1], l[2], l[3]]) as usize);
    payload.len().saturating_sub(5 + meta)
}

/// Acks (or naks, or terminates) `message` and waits for the server to
/// confirm, so what settle answered is what the next reader sees. A lost
/// ack is only logged: the record already says what happened, and a
/// redelivery of the message finds it.
async fn acknowledge(message: &jetstream::Message, kind: AckKind) {
    if let Err(e) = message.double_ack_with(kind).await {
        tracing::warn!(subject = %message.subject, error = %e, "JetStream: an ack went unconfirmed");
    }
}

/// Up to `max` jobs from a route's one consumer, waiting up to `wait` for
/// the first.
async fn fetch_shared(
    consumer: &consumer::PullConsumer,
    max: usize,
    wait: Duration,
) -> Result<Vec<jetstream::Message>, QueueError> {
    let mut messages = fetch(consumer, max, None).await?;
    if messages.is_empty() && wait >= MIN_WAIT {
        // Wait for one, then take what else is ready: a waiting pull for
        // `max` would hold the first until `max` arrived.
        messages = fetch(consumer, 1, Some(wait)).await?;
        if !messages.is_empty() && max > 1 {
            messages.extend(fetch(consumer, max - 1, None).await?);
        }
    }
    Ok(messages)
}

/// Up to `max` messages: those ready now, or with `wait`, the first to
/// come within it.
async fn fetch(
    consumer: &consumer::PullConsumer,
    max: usize,
    wait: Option<Duration>,
) -> Result<Vec<jetstream::Message>, QueueError> {
    let batch = match wait {
        None => consumer.fetch().max_messages(max).messages().await,
        Some(wait) => {
            consumer
                .batch()
                .max_messages(max)
                .expires(wait)
                .messages()
                .await
        }
    };
    let mut batch = batch.map_err(|e| fail("pulling jobs", e))?;
    let mut out = Vec::new();
    while let Some(message) = batch.next().await {
        match message {
            Ok(m) => out.push(m),
            // The pull ended with a status (timeout, no messages).
            Err(_) => break,
        }
    }
    Ok(out)
}

impl JobQueue for JetStreamQueue {
    fn submit(&self, job: NewJob) -> BoxFuture<'_, Result<Accepted, QueueError>> {
        Box::pin(self.submit_job(job))
    }

    fn get<'a>(&'a self, id: &'a JobId) -> BoxFuture<'a, Result<Option<JobView>, QueueError>> {
        Box::pin(self.get_job(id))
    }

    fn lease(
        &self,
        max: usize,
        wait: Duration,
    ) -> BoxFuture<'_, Result<Vec<Delivery>, QueueError>> {
        Box::pin(self.lease_jobs(max, wait))
    }

    fn settle<'a>(
        &'a self,
        delivery: &'a Delivery,
        outcome: Settle,
    ) -> BoxFuture<'a, Result<Settled, QueueError>> {
        Box::pin(self.settle_job(delivery, outcome))
    }

    fn list(
        &self,
        status: Option<JobStatus>,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<JobView>, QueueError>> {
        Box::pin(self.list_jobs(status, limit))
    }

    fn retry<'a>(&'a self, id: &'a JobId) -> BoxFuture<'a, Result<bool, QueueError>> {
        Box::pin(self.retry_job(id))
    }

    fn purge_dead(&self) -> BoxFuture<'_, Result<u64, QueueError>> {
        Box::pin(self.purge_dead_jobs())
    }

    fn stats(&self) -> BoxFuture<'_, Result<QueueStats, QueueError>> {
        Box::pin(self.queue_stats())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_keep_routes_apart_and_valid() {
        let n = Names::of("LEVEE_JOBS", "orders.v2");
        assert_eq!(n.work, "LEVEE_JOBS_ORDERS_V2");
        assert_eq!(n.dead, "LEVEE_JOBS_ORDERS_V2_DEAD");
        assert_eq!(n.results, "LEVEE_JOBS_ORDERS_V2_RESULTS");
        assert_eq!(
            n.jobs_subject("a.b", 3),
            "LEVEE_JOBS.orders_v2.jobs.a=2Eb.3"
        );
        assert_eq!(
            n.tenant_of_subject("LEVEE_JOBS.orders_v2.jobs.a=2Eb.3")
                .as_deref(),
            Some("a.b")
        );
        assert_eq!(
            n.tenant_of_subject("LEVEE_JOBS.orders_v2.dead.acme")
                .as_deref(),
            Some("acme")
        );
        // `x`'s dead letters and route `x_dead`'s jobs would share a stream:
        // the backend refuses the second route rather than mix them.
        let x = Names::of("P", "x");
        let x_dead = Names::of("P", "x_dead");
        assert!(x.streams().iter().any(|s| x_dead.streams().contains(s)));
    }

    #[test]
    fn tenant_tokens_are_subject_safe_and_reversible() {
        for tenant in ["acme", "", "a.b", "*", ">", "with space", "ünï", "a=b"] {
            let token = tenant_token(tenant);
            assert!(!token.is_empty());
            assert!(token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-=".contains(&b)));
            assert_eq!(tenant_of_token(&token), tenant, "{token}");
        }
        let long = "x".repeat(500);
        assert!(tenant_token(&long).len() <= MAX_TENANT_TOKEN);
    }

    #[test]
    fn job_messages_round_trip_and_damage_is_an_error() {
        let envelope = Envelope {
            id: "abc".into(),
            tenant: "acme\ncorp".into(),
            accepted_at_ms: 7,
            callback: Some("https://hooks.example/x".into()),
            ordering_key: None,
        };
        let request = StoredRequest {
            method: "POST".into(),
            path_and_query: "/orders?x=1".into(),
            headers: vec![("content-type".into(), b"application/json".to_vec())],
            body: Bytes::from_static(b"{}"),
            client_ip: "127.0.0.1".parse().unwrap(),
        };
        let bytes = encode_job(&envelope, &request.encode());
        let (e, r) = decode_job(&bytes).unwrap();
        assert_eq!((e.id.as_str(), e.tenant.as_str()), ("abc", "acme\ncorp"));
        assert_eq!(r, request);
        assert!(decode_job(&bytes[..bytes.len() / 2]).is_err());
        assert!(decode_job(&[]).is_err());
        assert!(decode_job(&[9, 0, 0, 0, 0]).is_err());
    }

    #[test]
    fn backoff_stays_within_its_ceiling() {
        let (base, max) = (Duration::from_millis(100), Duration::from_secs(1));
        for attempt in 1..40 {
            let ceiling = (base * 2u32.pow((attempt - 1).min(20))).min(max);
            assert!(backoff(attempt, base, max) <= ceiling);
        }
        assert_eq!(backoff(3, Duration::ZERO, Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn credentials_never_show() {
        let url = "nats://levee:s3cret-pass@nats.internal:4222";
        assert_eq!(redacted(url), "nats://nats.internal:4222");
        let text = scrub("auth failed for levee:s3cret-pass (s3cret-pass)", url);
        assert!(!text.contains("s3cret"), "{text}");
        assert_eq!(redacted("tls://tok3n@host:1"), "tls://host:1");
        assert_eq!(redacted("nats://host:4222"), "nats://host:4222");
    }

    #[test]
    fn results_too_large_for_a_message_are_cut_and_marked() {
        let result = StoredResult {
            status: 200,
            headers: vec![],
            body: Bytes::from(vec![b'x'; 10_000]),
            truncated: false,
        };
        let fitted = StoredResult::decode(&fit_result(&result, 4096)).unwrap();
        assert!(fitted.truncated);
        assert!(fitted.encode().len() <= 4096 - HEADER_ROOM);
        let small = StoredResult::decode(&fit_result(&result, 1 << 20)).unwrap();
        assert_eq!(small, result);
    }
}
