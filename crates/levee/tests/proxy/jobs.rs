//! Async routes end to end: a real gateway (embedded job queue, in a real
//! SQLite file when started from a file), a real upstream that records
//! every delivery and de-duplicates by `Idempotency-Key`, real HTTP
//! clients. Waits are for outcomes (`eventually`), never timings.

use bytes::Bytes;
use http_body_util::Full;
use levee_testkit::{eventually, Client, Cluster, GatewayConfig, JobSink, Route, TestGateway};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

const SOON: Duration = Duration::from_secs(10);

fn config(upstream: SocketAddr, async_table: &str, extra: &str) -> String {
    GatewayConfig::new()
        .route(
            Route::new("orders", "c")
                .prefix("/")
                .raw(&format!("async = {{ {async_table} }}")),
        )
        .cluster(Cluster::new("c").endpoints([upstream]))
        .raw(extra)
        .toml()
}

const TENANTS: &str = "[tenants]\ndefault = \"anonymous\"\nheader = \"x-tenant\"\n";

fn post(url: &str, body: &str, headers: &[(&str, &str)]) -> http::Request<Full<Bytes>> {
    let mut req = http::Request::post(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.body(Full::new(Bytes::from(body.to_string()))).unwrap()
}

async fn submit(gw: &TestGateway, path: &str, body: &str, headers: &[(&str, &str)]) -> String {
    let url = format!("{}{path}", gw.url("public"));
    let reply = Client::http1()
        .send(post(&url, body, headers))
        .await
        .unwrap();
    assert_eq!(reply.status, 202, "{reply:?}");
    let location = reply.header("location").expect("a Location").to_string();
    let id = reply.header("levee-job-id").expect("a job id").to_string();
    assert!(location.ends_with(&format!("/orders/{id}")), "{location}");
    location
}

async fn read(
    gw: &TestGateway,
    location: &str,
    tenant: Option<&str>,
) -> levee_testkit::ClientReply {
    let url = format!("{}{location}", gw.url("public"));
    let headers: Vec<(&str, &str)> = tenant.map(|t| ("x-tenant", t)).into_iter().collect();
    Client::http1().get_with(&url, &headers).await
}

#[tokio::test]
async fn a_request_becomes_a_job_delivered_once_with_a_stable_key_and_its_result_is_kept() {
    let sink = JobSink::default();
    let up = sink.start().await;
    let gw = TestGateway::start(&config(up, "", "")).await;
    let location = submit(&gw, "/orders?x=1", "widget", &[("prefer", "respond-async")]).await;
    eventually(SOON, "the job is delivered", || async {
        read(&gw, &location, None).await.status == 201
    })
    .await;
    let reply = read(&gw, &location, None).await;
    assert_eq!(reply.body, "done:widget");
    assert_eq!(reply.header("x-upstream"), Some("sink"));
    assert_eq!(reply.header("levee-job-status"), Some("done"));
    let seen = sink.seen();
    assert_eq!(seen.len(), 1, "delivered exactly once: {seen:?}");
    assert_eq!(seen[0].path, "/orders");
    assert_eq!(seen[0].body, "widget");
    let id = location.rsplit('/').next().unwrap();
    assert_eq!(
        seen[0].key.as_deref(),
        Some(id),
        "Idempotency-Key is the job id"
    );
    assert_eq!(seen[0].attempt.as_deref(), Some("1"));
    let status = Client::http1()
        .get(&format!("{}{location}?status", gw.url("public")))
        .await;
    assert_eq!(status.status, 200);
    let v = status.json();
    assert_eq!(v["status"], "done");
    assert_eq!(v["result_status"], 201);
    assert!(gw.metric("levee_job_deliveries_total{route=\"orders\",result=\"delivered\"}") >= 1.0);
}

#[tokio::test]
async fn a_failing_upstream_gets_the_same_key_on_each_retry_until_it_answers() {
    let sink = JobSink::default();
    sink.fail_first.store(2, Ordering::SeqCst);
    let up = sink.start().await;
    let gw = TestGateway::start(&config(
        up,
        "backoff_base = \"10ms\", backoff_max = \"50ms\"",
        "",
    ))
    .await;
    let location = submit(&gw, "/", "a", &[]).await;
    eventually(SOON, "the third delivery succeeds", || async {
        read(&gw, &location, None).await.status == 201
    })
    .await;
    let seen = sink.seen();
    assert_eq!(seen.len(), 3);
    let keys: Vec<_> = seen.iter().map(|s| s.key.clone().unwrap()).collect();
    assert!(keys.iter().all(|k| *k == keys[0]), "one key: {keys:?}");
    let attempts: Vec<_> = seen.iter().map(|s| s.attempt.clone().unwrap()).collect();
    assert_eq!(attempts, ["1", "2", "3"]);
}

#[tokio::test]
async fn a_job_out_of_attempts_is_dead_with_its_last_error_and_can_be_retried() {
    let sink = JobSink::default();
    let up = sink.start().await;
    let gw = TestGateway::start(&config(
        up,
        "max_attempts = 3, backoff_base = \"10ms\", backoff_max = \"20ms\"",
        "",
    ))
    .await;
    let location = submit(&gw, "/always-fail", "a", &[]).await;
    eventually(SOON, "the job is dead", || async {
        read(&gw, &location, None).await.header("levee-job-status") == Some("dead")
    })
    .await;
    let reply = read(&gw, &location, None).await;
    assert_eq!(reply.status, 200);
    let v = reply.json();
    assert_eq!(v["attempts"], 3);
    assert_eq!(v["last_error"], "the upstream answered 503");
    assert_eq!(sink.seen().len(), 3, "no delivery after the last attempt");
    let queue = gw.gateway.job_queue("orders").unwrap();
    let dead = queue
        .list(Some(levee_proxy::jobs::JobStatus::Dead), 10)
        .await
        .unwrap();
    assert_eq!(dead.len(), 1);
    assert!(queue.retry(&dead[0].id).await.unwrap());
    eventually(SOON, "the retried job is delivered again", || async {
        sink.seen().len() >= 4
    })
    .await;
}

#[tokio::test]
async fn a_job_is_the_tenants_only_and_an_idempotency_key_names_one_job() {
    let sink = JobSink::default();
    let up = sink.start().await;
    let gw = TestGateway::start(&config(up, "", TENANTS)).await;
    let acme = [("x-tenant", "acme"), ("idempotency-key", "order-7")];
    let first = submit(&gw, "/", "a", &acme).await;
    let again = submit(&gw, "/", "a", &acme).await;
    assert_eq!(first, again, "the same key returns the same job");
    let other = submit(
        &gw,
        "/",
        "a",
        &[("x-tenant", "globex"), ("idempotency-key", "order-7")],
    )
    .await;
    assert_ne!(first, other, "keys are per tenant");
    eventually(SOON, "both jobs are delivered", || async {
        read(&gw, &first, Some("acme")).await.status == 201
            && read(&gw, &other, Some("globex")).await.status == 201
    })
    .await;
    let stranger = read(&gw, &first, Some("globex")).await;
    assert_eq!(stranger.status, 404, "another tenant's job does not exist");
    assert_eq!(stranger.header("levee-error"), Some("job_not_found"));
    assert_eq!(read(&gw, &first, None).await.status, 404);
    // The same number with another token: not the job.
    let last = if first.ends_with('0') { '1' } else { '0' };
    let forged = format!("{}{last}", &first[..first.len() - 1]);
    assert_eq!(read(&gw, &forged, Some("acme")).await.status, 404);
    assert_eq!(sink.seen().len(), 2);
    let tenants: Vec<_> = sink.seen().iter().map(|s| s.tenant.clone()).collect();
    assert!(tenants.contains(&Some("acme".into())) && tenants.contains(&Some("globex".into())));
}

#[tokio::test]
async fn a_full_queue_answers_503_with_retry_after_and_loses_nothing_it_accepted() {
    let sink = JobSink::default();
    let up = sink.start().await;
    // One delivery at a time to a slow path: the queue fills.
    let gw = TestGateway::start(&config(up, "max_jobs = 3, concurrency = 1", "")).await;
    let mut accepted = Vec::new();
    let mut refused = 0;
    for i in 0..8 {
        let url = format!("{}/slow", gw.url("public"));
        let reply = Client::http1()
            .send(post(&url, &i.to_string(), &[]))
            .await
            .unwrap();
        match reply.status.as_u16() {
            202 => accepted.push(reply.header("location").unwrap().to_string()),
            503 => {
                assert_eq!(reply.header("levee-error"), Some("job_queue_full"));
                assert!(reply.header("retry-after").is_some());
                refused += 1;
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert!(refused > 0, "some were refused");
    eventually(SOON, "every accepted job is delivered", || async {
        let mut all = true;
        for l in &accepted {
            all &= read(&gw, l, None).await.status == 201;
        }
        all
    })
    .await;
    assert_eq!(sink.seen().len(), accepted.len());
}

#[tokio::test]
async fn a_body_over_the_limit_is_413_and_a_foreign_callback_400() {
    let sink = JobSink::default();
    let up = sink.start().await;
    let gw = TestGateway::start(&config(
        up,
        "max_body_bytes = 16, callback = { allowed_hosts = [\"127.0.0.1:1\"], secret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\" }",
        "",
    ))
    .await;
    let url = format!("{}/", gw.url("public"));
    let big = Client::http1()
        .send(post(&url, &"x".repeat(17), &[]))
        .await
        .unwrap();
    assert_eq!(big.status, 413);
    let foreign = Client::http1()
        .send(post(
            &url,
            "a",
            &[("levee-callback", "http://169.254.169.254/x")],
        ))
        .await
        .unwrap();
    assert_eq!(foreign.status, 400);
    assert!(foreign.body.contains("not allowed"), "{foreign:?}");
    assert!(sink.seen().is_empty());
}

#[tokio::test]
async fn a_delivered_result_is_pushed_to_the_callback_signed() {
    let sink = JobSink::default();
    let up = sink.start().await;
    let hooks = JobSink::default();
    let hook_addr = hooks.start().await;
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let gw = TestGateway::start(&config(
        up,
        &format!("callback = {{ allowed_hosts = [\"{hook_addr}\"], secret = \"{secret}\" }}"),
        "",
    ))
    .await;
    let callback = format!("http://{hook_addr}/hooks/done");
    let location = submit(&gw, "/", "paid", &[("levee-callback", &callback)]).await;
    eventually(SOON, "the callback arrives", || async {
        !hooks.seen().is_empty()
    })
    .await;
    let got = hooks.seen().remove(0);
    assert_eq!(got.path, "/hooks/done");
    let payload: serde_json::Value = serde_json::from_slice(&got.body).unwrap();
    let id = location.rsplit('/').next().unwrap();
    assert_eq!(payload["job_id"], id);
    assert_eq!(payload["status"], 201);
    // The receiver checks the signature as Standard Webhooks says.
    let (msg_id, timestamp, signature) = got.webhook.expect("signed");
    assert_eq!(msg_id, id);
    let key = base64_decode(secret.strip_prefix("whsec_").unwrap());
    let mut signed = format!("{msg_id}.{timestamp}.").into_bytes();
    signed.extend_from_slice(&got.body);
    let expected = hmac_sha256_base64(&key, &signed);
    assert_eq!(signature, format!("v1,{expected}"));
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}

fn hmac_sha256_base64(key: &[u8], msg: &[u8]) -> String {
    use base64::Engine as _;
    let tag = ring::hmac::sign(&ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key), msg);
    base64::engine::general_purpose::STANDARD.encode(tag.as_ref())
}

#[tokio::test]
async fn overflow_turns_shed_requests_into_jobs_only_for_clients_that_asked() {
    let sink = JobSink::default();
    let up = sink.start().await;
    let toml = GatewayConfig::new()
        .route(
            Route::new("orders", "c")
                .prefix("/")
                .raw("async = { mode = \"overflow\" }"),
        )
        .cluster(Cluster::new("c").endpoints([up]).raw(
            "concurrency = { algorithm = \"fixed\", limit = 1, min_limit = 1, max_queue_len = 0 }",
        ))
        .toml();
    let gw = TestGateway::start(&toml).await;
    let url = format!("{}/slow", gw.url("public"));
    // One request holds the only place; the others are shed unless they
    // asked for an asynchronous answer.
    let holder = {
        let url = url.clone();
        tokio::spawn(async move { Client::http1().send(post(&url, "first", &[])).await })
    };
    eventually(SOON, "the first request is at the upstream", || async {
        !sink.seen().is_empty()
    })
    .await;
    let plain = Client::http1()
        .send(post(&url, "plain", &[]))
        .await
        .unwrap();
    assert_eq!(plain.status, 503, "{plain:?}");
    let asked = Client::http1()
        .send(post(&url, "asked", &[("prefer", "respond-async")]))
        .await
        .unwrap();
    assert_eq!(asked.status, 202, "{asked:?}");
    assert_eq!(asked.header("preference-applied"), Some("respond-async"));
    assert_eq!(holder.await.unwrap().unwrap().status, 201);
    let location = asked.header("location").unwrap().to_string();
    eventually(SOON, "the overflowed job is delivered", || async {
        read(&gw, &location, None).await.status == 201
    })
    .await;
    let bodies: Vec<_> = sink.seen().iter().map(|s| s.body.clone()).collect();
    assert!(bodies.contains(&Bytes::from("asked")));
    assert!(!bodies.contains(&Bytes::from("plain")));
}

#[tokio::test]
async fn accepted_jobs_survive_a_restart_and_are_delivered_after_it() {
    let sink = JobSink::default();
    let up = sink.start().await;
    // Deliveries go to a closed port until the restart moves the cluster.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let toml = config(
        closed,
        "backoff_base = \"50ms\", backoff_max = \"100ms\", max_attempts = 1000",
        "[jobs]\npath = \"jobs.db\"\n",
    );
    let gw = TestGateway::start_from_file(&toml).await;
    let mut locations = Vec::new();
    for i in 0..20 {
        locations.push(submit(&gw, "/", &format!("job-{i}"), &[]).await);
    }
    // Point the cluster at the real upstream, then restart.
    let path = gw.config_path.clone().unwrap();
    std::fs::write(
        &path,
        config(
            up,
            "backoff_base = \"50ms\", backoff_max = \"100ms\", max_attempts = 1000",
            "[jobs]\npath = \"jobs.db\"\n",
        ),
    )
    .unwrap();
    let gw = gw.restart().await;
    eventually(SOON, "every job is delivered after the restart", || async {
        let mut all = true;
        for l in &locations {
            all &= read(&gw, l, None).await.status == 201;
        }
        all
    })
    .await;
    let mut bodies: Vec<_> = sink.seen().iter().map(|s| s.body.clone()).collect();
    bodies.sort();
    bodies.dedup();
    assert_eq!(bodies.len(), 20);
}

#[tokio::test]
async fn a_freshness_slo_counts_jobs_delivered_in_time_as_good_and_dead_ones_as_bad() {
    let sink = JobSink::default();
    let up = sink.start().await;
    let toml = config(
        up,
        "max_attempts = 2, backoff_base = \"10ms\", backoff_max = \"20ms\"",
        "[[slos]]\nname = \"orders-fresh\"\nsli = \"job_completion\"\nroute = \"orders\"\nthreshold = \"30s\"\nobjective = \"99%\"\n",
    );
    let gw = TestGateway::start(&toml).await;
    let done = submit(&gw, "/", "ok", &[]).await;
    let dead = submit(&gw, "/always-fail", "no", &[]).await;
    eventually(SOON, "one job delivered, one dead", || async {
        read(&gw, &done, None).await.status == 201
            && read(&gw, &dead, None).await.header("levee-job-status") == Some("dead")
    })
    .await;
    gw.control.evaluate_slos().await;
    let slos = gw.admin_api().slos().await;
    let fresh = slos.get("orders-fresh");
    assert_eq!(fresh.sli, "job_completion");
    assert_eq!((fresh.events, fresh.bad_events), (2, 1), "{fresh:?}");
    // The 202s were requests, not job completions: they count nowhere here.
    let text = gw.gateway.registry().encode();
    assert!(
        text.contains("levee_jobs_oldest_age_seconds{route=\"orders\"}"),
        "the lag gauge is exported"
    );
}
