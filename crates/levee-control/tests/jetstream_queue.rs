//! The JetStream job queue against a real nats-server: what the delivery
//! loop and the HTTP side rely on (round trip, idempotency, limits, dead
//! letters), and what several gateways sharing one route rely on (any
//! gateway delivers, a lost one loses nothing). JetStream's timers run in
//! real time, so waits are short and every check polls to a deadline.

use bytes::Bytes;
use levee_config::{AsyncMode, AsyncRoute, JetStream, OrderBy, Secret};
use levee_control::jobs::jetstream::JetStreamBackend;
use levee_proxy::jobs::{
    Accepted, Delivery, JobBackend, JobId, JobQueue, JobStatus, NewJob, QueueError, Settle,
    Settled, StoredRequest, StoredResult,
};
use levee_testkit::NatsServer;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

const ROUTE: &str = "orders";

/// Longest any polled outcome may take; never reached when things work.
const DEADLINE: Duration = Duration::from_secs(20);

fn backend(server: &NatsServer) -> JetStreamBackend {
    JetStreamBackend::new(&JetStream {
        url: Secret::new(server.url()),
        stream_prefix: "TEST_JOBS".into(),
        replicas: 1,
        timeout: Duration::from_secs(5),
    })
}

fn settings() -> AsyncRoute {
    AsyncRoute {
        mode: AsyncMode::Always,
        max_body_bytes: 64 * 1024,
        max_jobs: 1000,
        max_bytes: 64 << 20,
        max_jobs_per_tenant: 1000,
        max_bytes_per_tenant: 64 << 20,
        max_attempts: 5,
        max_age: Duration::from_secs(3600),
        backoff_base: Duration::from_millis(10),
        backoff_max: Duration::from_millis(50),
        delivery_timeout: Duration::from_secs(1),
        result_ttl: Duration::from_secs(3600),
        max_result_bytes: 1 << 20,
        concurrency: 64,
        order_by: None,
        callback: None,
    }
}

fn job(tenant: &str, body: &str) -> NewJob {
    NewJob {
        tenant: tenant.into(),
        idempotency_key: None,
        ordering_key: None,
        callback: None,
        request: StoredRequest {
            method: "POST".into(),
            path_and_query: "/orders?source=test".into(),
            headers: vec![("content-type".into(), b"application/json".to_vec())],
            body: Bytes::from(body.to_string()),
            client_ip: "192.0.2.7".parse().unwrap(),
        },
    }
}

fn ok(body: &str) -> StoredResult {
    StoredResult {
        status: 201,
        headers: vec![("content-type".into(), b"text/plain".to_vec())],
        body: Bytes::from(body.to_string()),
        truncated: false,
    }
}

async fn open(backend: &JetStreamBackend, settings: &AsyncRoute) -> Arc<dyn JobQueue> {
    backend.open(ROUTE, settings).await.expect("route opens")
}

async fn submit_new(queue: &Arc<dyn JobQueue>, job: NewJob) -> JobId {
    match queue.submit(job).await.expect("submit") {
        Accepted::New(id) => id,
        other => panic!("expected a new job, got {other:?}"),
    }
}

/// Leases until `n` deliveries came, or the deadline.
async fn lease_n(queue: &Arc<dyn JobQueue>, n: usize) -> Vec<Delivery> {
    let deadline = levee_core::time::now() + DEADLINE;
    let mut out = Vec::new();
    while out.len() < n {
        assert!(
            levee_core::time::now() < deadline,
            "only {} of {n} deliveries came",
            out.len()
        );
        let got = queue
            .lease(n - out.len(), Duration::from_millis(200))
            .await
            .expect("lease");
        out.extend(got);
    }
    out
}

#[tokio::test]
async fn a_job_round_trips_through_submit_lease_and_settle() {
    let Some(server) = NatsServer::start("a_job_round_trips_through_submit_lease_and_settle").await
    else {
        return;
    };
    let backend = backend(&server);
    let queue = open(&backend, &settings()).await;
    let sent = job("acme", r#"{"sku":42}"#);
    let id = submit_new(&queue, sent.clone()).await;

    let view = queue.get(&id).await.unwrap().expect("the job is there");
    assert_eq!(view.status, JobStatus::Queued);
    assert_eq!((view.tenant.as_str(), view.attempts), ("acme", 0));
    assert_eq!(
        (view.method.as_str(), view.path.as_str()),
        ("POST", "/orders")
    );
    assert_eq!(view.bytes, sent.request.encode().len() as u64);

    let deliveries = lease_n(&queue, 1).await;
    let d = &deliveries[0];
    assert_eq!((d.id.clone(), d.attempt), (id.clone(), 1));
    assert_eq!(d.request, sent.request);
    assert_eq!(&*d.tenant, "acme");
    assert_eq!(d.accepted_at_ms, view.accepted_at_ms);
    let view = queue.get(&id).await.unwrap().unwrap();
    assert_eq!((view.status, view.attempts), (JobStatus::Delivering, 1));
    let stats = queue.stats().await.unwrap();
    assert_eq!((stats.queued, stats.delivering), (0, 1));

    let settled = queue.settle(d, Settle::Delivered(ok("made"))).await;
    assert_eq!(settled.unwrap(), Settled::Done);
    let view = queue.get(&id).await.unwrap().unwrap();
    assert_eq!(view.status, JobStatus::Done);
    assert_eq!(view.result, Some(ok("made")));
    assert!(view.finished_at_ms.is_some());
    // Settling again is stale: the lease is spent.
    let again = queue.settle(d, Settle::Delivered(ok("twice"))).await;
    assert_eq!(again.unwrap(), Settled::Stale);

    assert!(queue
        .lease(10, Duration::from_millis(100))
        .await
        .unwrap()
        .is_empty());
    let stats = queue.stats().await.unwrap();
    assert_eq!(
        (stats.queued, stats.delivering, stats.dead, stats.done),
        (0, 0, 0, 1)
    );
    assert_eq!(stats.oldest_undelivered, None);
    let listed = queue.list(Some(JobStatus::Done), 10).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].result, Some(ok("made")));
    let unknown = JobId::parse("nope").unwrap();
    assert_eq!(queue.get(&unknown).await.unwrap(), None);
}

#[tokio::test]
async fn an_idempotency_key_names_one_job_across_gateways() {
    let Some(server) = NatsServer::start("an_idempotency_key_names_one_job_across_gateways").await
    else {
        return;
    };
    let (one, two) = (backend(&server), backend(&server));
    let (a, b) = (open(&one, &settings()).await, open(&two, &settings()).await);
    let keyed = |tenant: &str| NewJob {
        idempotency_key: Some("order-7".into()),
        ..job(tenant, "{}")
    };
    let first = submit_new(&a, keyed("acme")).await;
    assert_eq!(
        b.submit(keyed("acme")).await.unwrap(),
        Accepted::Existing(first.clone())
    );
    // Another tenant's same key is another job.
    let other = submit_new(&b, keyed("globex")).await;
    assert_ne!(other, first);

    // Racing gateways: one job, the other answer names it.
    let race = |q: Arc<dyn JobQueue>| async move {
        q.submit(NewJob {
            idempotency_key: Some("race".into()),
            ..job("acme", "{}")
        })
        .await
        .unwrap()
    };
    let (x, y) = tokio::join!(race(a.clone()), race(b.clone()));
    match (x, y) {
        (Accepted::New(n), Accepted::Existing(e)) | (Accepted::Existing(e), Accepted::New(n)) => {
            assert_eq!(n, e)
        }
        other => panic!("expected one new job and one existing, got {other:?}"),
    }
    assert_eq!(a.stats().await.unwrap().queued, 3);
}

#[tokio::test]
async fn gateways_share_a_route_and_a_lost_gateway_loses_nothing() {
    let Some(server) =
        NatsServer::start("gateways_share_a_route_and_a_lost_gateway_loses_nothing").await
    else {
        return;
    };
    let backends: Vec<_> = (0..3).map(|_| backend(&server)).collect();
    let mut queues = Vec::new();
    for b in &backends {
        queues.push(open(b, &settings()).await);
    }
    let mut submitted = BTreeSet::new();
    for (i, queue) in queues.iter().enumerate() {
        for n in 0..10 {
            submitted.insert(submit_new(queue, job("acme", &format!("{i}-{n}"))).await);
        }
    }
    // The third gateway takes five and dies without settling them.
    let lost: BTreeSet<JobId> = lease_n(&queues[2], 5)
        .await
        .into_iter()
        .map(|d| d.id)
        .collect();
    let dead_gateway = queues.pop().unwrap();
    drop(dead_gateway);
    drop(backends.into_iter().nth(2));

    // The other two deliver everything, the lost five once their leases
    // run out.
    let mut delivered = BTreeSet::new();
    let mut by_gateway = [0usize; 2];
    let deadline = levee_core::time::now() + DEADLINE;
    while delivered.len() < submitted.len() {
        assert!(
            levee_core::time::now() < deadline,
            "delivered {} of {}",
            delivered.len(),
            submitted.len()
        );
        for (g, queue) in queues.iter().enumerate() {
            for d in queue.lease(4, Duration::from_millis(100)).await.unwrap() {
                let settled = queue.settle(&d, Settle::Delivered(ok("ok"))).await;
                assert_eq!(settled.unwrap(), Settled::Done);
                assert!(delivered.insert(d.id.clone()), "{} delivered twice", d.id);
                by_gateway[g] += 1;
                if lost.contains(&d.id) {
                    assert_eq!(d.attempt, 2, "the lost lease counted as an attempt");
                }
            }
        }
    }
    assert_eq!(delivered, submitted);
    assert!(
        by_gateway.iter().all(|n| *n > 0),
        "both gateways delivered: {by_gateway:?}"
    );
    let stats = queues[0].stats().await.unwrap();
    assert_eq!((stats.queued, stats.delivering, stats.done), (0, 0, 30));
}

#[tokio::test]
async fn failures_are_retried_then_dead_with_the_last_error() {
    let Some(server) =
        NatsServer::start("failures_are_retried_then_dead_with_the_last_error").await
    else {
        return;
    };
    let backend = backend(&server);
    let queue = open(
        &backend,
        &AsyncRoute {
            max_attempts: 3,
            ..settings()
        },
    )
    .await;
    let id = submit_new(&queue, job("acme", "{}")).await;

    let mut outcomes = Vec::new();
    let mut attempts = Vec::new();
    let deadline = levee_core::time::now() + DEADLINE;
    while outcomes.last() != Some(&Settled::Dead) {
        assert!(levee_core::time::now() < deadline, "not dead: {outcomes:?}");
        for d in queue.lease(1, Duration::from_millis(200)).await.unwrap() {
            attempts.push(d.attempt);
            // Once, the cluster refuses it: that attempt does not count.
            if attempts.len() == 2 {
                let settled = queue.settle(&d, Settle::NotSent).await.unwrap();
                assert_eq!(settled, Settled::Retry(Duration::ZERO));
                continue;
            }
            let error = format!("upstream answered 503 (attempt {})", d.attempt);
            let settled = queue.settle(&d, Settle::Failed(error)).await.unwrap();
            if let Settled::Retry(wait) = settled {
                assert!(wait <= Duration::from_millis(50), "{wait:?}");
                let view = queue.get(&id).await.unwrap().unwrap();
                assert_eq!(view.status, JobStatus::Queued);
                assert!(view.next_attempt_at_ms.is_some());
            }
            outcomes.push(settled);
        }
    }
    assert_eq!(attempts, [1, 2, 2, 3]);
    assert!(matches!(
        outcomes[..],
        [Settled::Retry(_), Settled::Retry(_), Settled::Dead]
    ));
    let view = queue.get(&id).await.unwrap().unwrap();
    assert_eq!((view.status, view.attempts), (JobStatus::Dead, 3));
    assert_eq!(
        view.last_error.as_deref(),
        Some("upstream answered 503 (attempt 3)")
    );
    let stats = queue.stats().await.unwrap();
    assert_eq!(
        (stats.queued, stats.delivering, stats.dead, stats.done),
        (0, 0, 1, 0)
    );
    assert_eq!(stats.per_tenant, [("acme".to_string(), 1)]);
    assert!(queue
        .lease(1, Duration::from_millis(100))
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn a_job_whose_last_attempt_was_never_settled_is_dead() {
    let Some(server) =
        NatsServer::start("a_job_whose_last_attempt_was_never_settled_is_dead").await
    else {
        return;
    };
    let backend = backend(&server);
    let queue = open(
        &backend,
        &AsyncRoute {
            max_attempts: 1,
            ..settings()
        },
    )
    .await;
    let id = submit_new(&queue, job("acme", "{}")).await;
    let _abandoned = lease_n(&queue, 1).await;
    // Its lease runs out; the next lease finds it out of attempts.
    let deadline = levee_core::time::now() + DEADLINE;
    loop {
        assert!(levee_core::time::now() < deadline, "never declared dead");
        assert!(queue
            .lease(1, Duration::from_millis(200))
            .await
            .unwrap()
            .is_empty());
        let view = queue.get(&id).await.unwrap().unwrap();
        if view.status == JobStatus::Dead {
            assert!(view.last_error.unwrap().contains("delivery timeout"));
            break;
        }
    }
    assert_eq!(queue.stats().await.unwrap().dead, 1);
}

#[tokio::test]
async fn dead_jobs_are_retried_and_purged() {
    let Some(server) = NatsServer::start("dead_jobs_are_retried_and_purged").await else {
        return;
    };
    let backend = backend(&server);
    let queue = open(
        &backend,
        &AsyncRoute {
            max_attempts: 1,
            ..settings()
        },
    )
    .await;
    let keep = submit_new(&queue, job("acme", "keep")).await;
    let purge = submit_new(
        &queue,
        NewJob {
            idempotency_key: Some("k".into()),
            ..job("acme", "purge")
        },
    )
    .await;
    for d in lease_n(&queue, 2).await {
        let settled = queue.settle(&d, Settle::Failed("reset".into())).await;
        assert_eq!(settled.unwrap(), Settled::Dead);
    }
    assert_eq!(
        queue.list(Some(JobStatus::Dead), 10).await.unwrap().len(),
        2
    );

    assert!(queue.retry(&keep).await.unwrap());
    assert!(!queue.retry(&keep).await.unwrap(), "no longer dead");
    let view = queue.get(&keep).await.unwrap().unwrap();
    assert_eq!((view.status, view.attempts), (JobStatus::Queued, 0));
    let d = lease_n(&queue, 1).await.pop().unwrap();
    assert_eq!((d.id.clone(), d.attempt), (keep.clone(), 1));
    assert_eq!(d.request.body, "keep");
    let settled = queue.settle(&d, Settle::Delivered(ok("at last"))).await;
    assert_eq!(settled.unwrap(), Settled::Done);

    assert_eq!(queue.purge_dead().await.unwrap(), 1);
    assert_eq!(queue.get(&purge).await.unwrap(), None);
    assert!(!queue.retry(&purge).await.unwrap());
    let stats = queue.stats().await.unwrap();
    assert_eq!((stats.dead, stats.done), (0, 1));
    assert_eq!(queue.purge_dead().await.unwrap(), 0);
    // The purged job's idempotency key is free again.
    let again = queue
        .submit(NewJob {
            idempotency_key: Some("k".into()),
            ..job("acme", "purge")
        })
        .await
        .unwrap();
    assert!(matches!(again, Accepted::New(id) if id != purge));
}

#[tokio::test]
async fn a_full_queue_refuses_new_jobs_until_room_frees() {
    let Some(server) = NatsServer::start("a_full_queue_refuses_new_jobs_until_room_frees").await
    else {
        return;
    };
    let backend = backend(&server);
    let queue = open(
        &backend,
        &AsyncRoute {
            max_jobs: 3,
            max_jobs_per_tenant: 2,
            ..settings()
        },
    )
    .await;
    submit_new(&queue, job("acme", "1")).await;
    submit_new(&queue, job("acme", "2")).await;
    // The tenant is at its limit, the route is not.
    assert!(matches!(
        queue.submit(job("acme", "3")).await.unwrap(),
        Accepted::Full { .. }
    ));
    submit_new(&queue, job("globex", "1")).await;
    // Now the route is.
    assert!(matches!(
        queue.submit(job("initech", "1")).await.unwrap(),
        Accepted::Full { .. }
    ));
    let stats = queue.stats().await.unwrap();
    assert_eq!(stats.queued, 3);
    assert_eq!(
        stats.per_tenant,
        [("acme".to_string(), 2), ("globex".to_string(), 1)]
    );
    assert!(stats.bytes > 0);
    assert!(stats.oldest_undelivered.is_some());
    // A refused keyed job keeps nothing: the key is free for a retry.
    let keyed = NewJob {
        idempotency_key: Some("later".into()),
        ..job("initech", "1")
    };
    assert!(matches!(
        queue.submit(keyed.clone()).await.unwrap(),
        Accepted::Full { .. }
    ));

    let d = lease_n(&queue, 1).await.pop().unwrap();
    queue.settle(&d, Settle::Delivered(ok(""))).await.unwrap();
    submit_new(&queue, keyed).await;
}

#[tokio::test]
async fn reopening_a_route_keeps_its_queue_and_jobs() {
    let Some(server) = NatsServer::start("reopening_a_route_keeps_its_queue_and_jobs").await else {
        return;
    };
    let backend = backend(&server);
    let queue = open(&backend, &settings()).await;
    let id = submit_new(&queue, job("acme", "{}")).await;
    let reopened = open(
        &backend,
        &AsyncRoute {
            max_jobs: 10,
            delivery_timeout: Duration::from_secs(30),
            result_ttl: Duration::from_secs(60),
            ..settings()
        },
    )
    .await;
    assert!(Arc::ptr_eq(&queue, &reopened), "the same queue");
    // The server took the new settings (a 2.9 server ignores what it
    // cannot update only silently, so read them back).
    let js = async_nats::jetstream::new(async_nats::connect(server.url()).await.unwrap());
    let mut work = js.get_stream("TEST_JOBS_ORDERS").await.unwrap();
    assert_eq!(work.info().await.unwrap().config.max_messages, 10);
    let consumer = work.consumer_info("levee").await.unwrap();
    assert_eq!(consumer.config.ack_wait, Duration::from_secs(35));
    let results = js.get_stream("KV_TEST_JOBS_ORDERS_RESULTS").await.unwrap();
    assert_eq!(
        results.cached_info().config.max_age,
        Duration::from_secs(60)
    );
    // A new gateway opening it finds the job too.
    let other = self::backend(&server);
    let from_other = open(&other, &settings()).await;
    assert_eq!(lease_n(&from_other, 1).await[0].id, id);
}

#[tokio::test]
async fn clashing_routes_and_a_missing_server_are_clear_errors() {
    let Some(server) =
        NatsServer::start("clashing_routes_and_a_missing_server_are_clear_errors").await
    else {
        return;
    };
    let backend = backend(&server);
    // Two routes that would share streams.
    open(&backend, &settings()).await;
    let QueueError(e) = backend.open("ORDERS", &settings()).await.unwrap_err();
    assert!(e.contains("rename one"), "{e}");

    // A server that is not there, reached with credentials in its URL.
    let port = server.addr().port();
    drop(server);
    let gone = JetStreamBackend::new(&JetStream {
        url: Secret::new(format!("nats://levee:hunter2-secret@127.0.0.1:{port}")),
        stream_prefix: "TEST_JOBS".into(),
        replicas: 1,
        timeout: Duration::from_millis(500),
    });
    let QueueError(e) = gone.open(ROUTE, &settings()).await.unwrap_err();
    assert!(e.contains(&format!("127.0.0.1:{port}")), "{e}");
    assert!(!e.contains("hunter2") && !e.contains("levee:"), "{e}");
    assert!(!format!("{gone:?}").contains("hunter2"));
}

fn keyed(key: &str, body: &str) -> NewJob {
    NewJob {
        ordering_key: Some(key.into()),
        ..job("acme", body)
    }
}

#[tokio::test]
async fn an_ordered_route_delivers_each_key_in_order_one_at_a_time() {
    let Some(server) =
        NatsServer::start("an_ordered_route_delivers_each_key_in_order_one_at_a_time").await
    else {
        return;
    };
    let ordered = AsyncRoute {
        order_by: Some(OrderBy::Tenant),
        ..settings()
    };
    let (one, two) = (backend(&server), backend(&server));
    let gateways = [open(&one, &ordered).await, open(&two, &ordered).await];
    let keys = ["a", "b", "c", "d"];
    for n in 0..4 {
        for key in keys {
            submit_new(&gateways[n % 2], keyed(key, &format!("{key}{n}"))).await;
        }
    }
    // Both gateways lease as fast as they can; each key's first job fails
    // once. Per key, deliveries must come one at a time and in order.
    let mut attempts: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    let mut done = 0;
    let deadline = levee_core::time::now() + DEADLINE;
    while done < 16 {
        assert!(
            levee_core::time::now() < deadline,
            "done {done} of 16: {attempts:?}"
        );
        let (x, y) = tokio::join!(
            gateways[0].lease(8, Duration::from_millis(100)),
            gateways[1].lease(8, Duration::from_millis(100))
        );
        let leased: Vec<(usize, Delivery)> = x
            .unwrap()
            .into_iter()
            .map(|d| (0, d))
            .chain(y.unwrap().into_iter().map(|d| (1, d)))
            .collect();
        let mut held = BTreeSet::new();
        for (_, d) in &leased {
            let body = String::from_utf8(d.request.body.to_vec()).unwrap();
            let key = body[..1].to_string();
            assert!(
                held.insert(key.clone()),
                "two jobs of key {key} out at once"
            );
            attempts.entry(key).or_default().push(body);
        }
        for (g, d) in leased {
            let first_try = d.request.body.ends_with(b"0") && d.attempt == 1;
            let outcome = if first_try {
                Settle::Failed("upstream answered 503".into())
            } else {
                Settle::Delivered(ok("ok"))
            };
            let settled = gateways[g].settle(&d, outcome).await.unwrap();
            if settled == Settled::Done {
                done += 1;
            }
        }
    }
    for key in keys {
        let expected: Vec<String> = [0, 0, 1, 2, 3]
            .iter()
            .map(|n| format!("{key}{n}"))
            .collect();
        assert_eq!(attempts[key], expected, "key {key}");
    }
}

#[tokio::test]
async fn a_route_can_become_ordered_and_back_with_jobs_queued() {
    let Some(server) =
        NatsServer::start("a_route_can_become_ordered_and_back_with_jobs_queued").await
    else {
        return;
    };
    let backend = backend(&server);
    let ordered = AsyncRoute {
        order_by: Some(OrderBy::Tenant),
        ..settings()
    };
    let queue = open(&backend, &settings()).await;
    let mut queued = BTreeSet::new();
    for n in 0..3 {
        queued.insert(submit_new(&queue, keyed("a", &n.to_string())).await);
    }
    open(&backend, &ordered).await;
    for n in 3..6 {
        queued.insert(submit_new(&queue, keyed("b", &n.to_string())).await);
    }
    let mut delivered = BTreeSet::new();
    for _ in 0..3 {
        for d in lease_n(&queue, 1).await {
            queue.settle(&d, Settle::Delivered(ok(""))).await.unwrap();
            delivered.insert(d.id);
        }
    }
    open(&backend, &settings()).await;
    for d in lease_n(&queue, 3).await {
        queue.settle(&d, Settle::Delivered(ok(""))).await.unwrap();
        delivered.insert(d.id);
    }
    assert_eq!(delivered, queued);
    let stats = queue.stats().await.unwrap();
    assert_eq!((stats.queued, stats.delivering, stats.done), (0, 0, 6));
}

/// How many submits per second one queue sustains with 64 concurrent
/// submitters. Run in release: `cargo test --release -p levee-control
/// --test jetstream_queue -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a check"]
async fn submit_throughput_with_64_submitters() {
    let Some(server) = NatsServer::start("submit_throughput_with_64_submitters").await else {
        return;
    };
    let backend = backend(&server);
    let queue = open(
        &backend,
        &AsyncRoute {
            max_jobs: 1_000_000,
            max_jobs_per_tenant: 1_000_000,
            max_bytes: 1 << 30,
            ..settings()
        },
    )
    .await;
    let body = "x".repeat(512);
    for keyed in [false, true] {
        let per_task = 400;
        let start = levee_core::time::now();
        let tasks: Vec<_> = (0..64)
            .map(|t| {
                let queue = queue.clone();
                let body = body.clone();
                tokio::spawn(async move {
                    for n in 0..per_task {
                        let mut job = job(&format!("tenant-{}", t % 8), &body);
                        if keyed {
                            job.idempotency_key = Some(format!("{t}-{n}"));
                        }
                        let accepted = queue.submit(job).await.expect("submit");
                        assert!(matches!(accepted, Accepted::New(_)));
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        let elapsed = levee_core::time::now() - start;
        let total = 64 * per_task;
        println!(
            "{total} submits ({}) by 64 submitters in {elapsed:.2?}: {:.0} submits/s",
            if keyed {
                "with idempotency keys"
            } else {
                "without keys"
            },
            total as f64 / elapsed.as_secs_f64()
        );
    }
}
