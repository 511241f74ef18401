//! Resilience end to end: circuit breakers (per endpoint and per cluster),
//! bulkheads, hedging, `Retry-After`, the `levee-overloaded` shedding mark
//! across Levee hops, the concurrent retry caps and the gRPC retry class.
//! Every check is on what a client (or the admin API) sees over real
//! sockets; waits use `eventually`, and durations appear only as generous
//! upper bounds or as the slowness of a scripted upstream.

use levee_core::time::Instant;
use levee_testkit::{
    eventually, Client, ClientReply, Cluster, ClusterState, EndpointState, FakeUpstream,
    GatewayConfig, Reply, Route, TestGateway,
};
use std::net::SocketAddr;
use std::time::Duration;

/// How long the scripted slow upstreams take: long enough that a loaded
/// two-core machine finishes the rest of a test step well within it.
const SLOW: Duration = Duration::from_secs(2);

/// How long `eventually` waits for state that should follow within
/// milliseconds.
const SOON: Duration = Duration::from_secs(10);

/// Cluster `c` as `GET /api/v1/clusters` shows it.
async fn cluster(gw: &TestGateway) -> ClusterState {
    gw.admin_api().cluster("c").await
}

/// The endpoint at `addr` as `GET /api/v1/clusters` shows it.
async fn endpoint(gw: &TestGateway, addr: SocketAddr) -> EndpointState {
    gw.admin_api()
        .endpoint(addr)
        .await
        .unwrap_or_else(|| panic!("{addr} is not listed"))
}

/// The state of the breaker of the endpoint at `addr`, as the admin API says.
async fn endpoint_breaker(gw: &TestGateway, addr: SocketAddr) -> String {
    let e = endpoint(gw, addr).await;
    e.circuit_breaker
        .clone()
        .unwrap_or_else(|| panic!("no breaker state for {addr}: {e:?}"))
}

/// The state of the cluster's breaker, as the admin API says.
async fn cluster_breaker(gw: &TestGateway) -> String {
    let c = cluster(gw).await;
    c.circuit_breaker
        .clone()
        .unwrap_or_else(|| panic!("no cluster breaker state: {c:?}"))
}

fn endpoint_breaker_series(metric: &str, addr: SocketAddr) -> String {
    format!("{metric}{{cluster=\"c\",endpoint=\"{addr}\",scope=\"endpoint\"}}")
}

fn errors_series(reason: &str) -> String {
    format!("levee_errors_total{{cluster=\"c\",reason=\"{reason}\"}}")
}

/// A GET in its own task (its own client, so its own connection).
fn spawn_get(url: String) -> tokio::task::JoinHandle<ClientReply> {
    tokio::spawn(async move { Client::http1().get(&url).await })
}

async fn join_all(handles: Vec<tokio::task::JoinHandle<ClientReply>>) -> Vec<ClientReply> {
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.expect("request task"));
    }
    out
}

/// Asserts that the gateway itself shed `r` with `reason`.
fn assert_shed(r: &ClientReply, reason: &str) {
    assert_eq!(r.status, 503, "{r:?}");
    assert_eq!(r.header("levee-error"), Some(reason), "{r:?}");
    assert_eq!(r.header("levee-overloaded"), Some("true"), "{r:?}");
}

// ---------------------------------------------------------------------------
// Circuit breakers

#[tokio::test]
async fn an_endpoint_breaker_opens_probes_and_closes() {
    let flaky = FakeUpstream::builder("flaky")
        .otherwise(Reply::status(503))
        .start()
        .await;
    let flaky_addr = flaky.addr();
    let good = FakeUpstream::start("good").await;
    let gw = TestGateway::start(&GatewayConfig::new().route(Route::new("r", "c")).cluster(Cluster::new("c").endpoints([flaky_addr, good.addr()]).raw("circuit_breaker = { endpoint = { consecutive_failures = 3, base_open_time = \"2s\", max_open_time = \"10s\", half_open_probes = 1, ramp_time = \"0s\" } }")).toml())
    .await;
    let c = Client::http1();
    let url = format!("{}/", gw.url("public"));
    assert_eq!(endpoint_breaker(&gw, flaky_addr).await, "closed");

    // Round robin: the flaky endpoint answers every other request until its
    // third failure in a row opens its breaker.
    for _ in 0..6 {
        c.get(&url).await;
    }
    assert_eq!(flaky.requests(), 3, "opened after three failures in a row");
    assert_eq!(endpoint_breaker(&gw, flaky_addr).await, "open");
    assert_eq!(endpoint_breaker(&gw, good.addr()).await, "closed");
    let state = endpoint_breaker_series("levee_circuit_breaker_state", flaky_addr);
    let opened = endpoint_breaker_series("levee_circuit_breaker_opened_total", flaky_addr);
    assert_eq!(gw.metric(&state), 1.0);
    assert_eq!(gw.metric(&opened), 1.0);

    // While open, nothing reaches it.
    for _ in 0..10 {
        let r = c.get(&url).await;
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.body, "good");
    }
    assert_eq!(flaky.requests(), 3, "no request reaches an open breaker");

    // It recovers (same port). Once the open time has passed the breaker is
    // half-open, waiting for a probe...
    drop(flaky);
    let flaky = FakeUpstream::builder("flaky")
        .bind(flaky_addr)
        .start()
        .await;
    eventually(SOON, "the breaker turns half-open", || async {
        endpoint_breaker(&gw, flaky_addr).await == "half_open"
    })
    .await;
    assert_eq!(gw.metric(&state), 2.0);
    // ...and traffic probes it: one success closes it.
    eventually(SOON, "a probe closes the breaker", || async {
        let r = c.get(&url).await;
        assert_eq!(r.status, 200, "{r:?}");
        endpoint_breaker(&gw, flaky_addr).await == "closed"
    })
    .await;
    assert_eq!(gw.metric(&state), 0.0);
    assert!(flaky.requests() >= 1, "the probe reached the endpoint");
    let before = flaky.requests();
    for _ in 0..10 {
        assert_eq!(c.get(&url).await.status, 200);
    }
    assert!(
        flaky.requests() >= before + 4,
        "back in rotation: {} of 10",
        flaky.requests() - before
    );
    assert_eq!(gw.metric(&opened), 1.0, "it opened once");
}

#[tokio::test]
async fn a_cluster_breaker_sheds_everything_until_the_cluster_recovers() {
    let a = FakeUpstream::builder("a")
        .otherwise(Reply::status(503))
        .start()
        .await;
    let b = FakeUpstream::builder("b")
        .otherwise(Reply::status(503))
        .start()
        .await;
    let (a_addr, b_addr) = (a.addr(), b.addr());
    let gw = TestGateway::start(&GatewayConfig::new().route(Route::new("r", "c")).cluster(Cluster::new("c").endpoints([a_addr, b_addr]).raw("circuit_breaker = { cluster = { consecutive_failures = 4, base_open_time = \"2s\", max_open_time = \"10s\", half_open_probes = 2, ramp_time = \"0s\" } }")).toml())
    .await;
    let c = Client::http1();
    let url = format!("{}/", gw.url("public"));
    assert_eq!(cluster_breaker(&gw).await, "closed");

    // Four upstream failures in a row, passed through as they are...
    for _ in 0..4 {
        let r = c.get(&url).await;
        assert_eq!(r.status, 503);
        assert_eq!(r.header("levee-error"), None, "the upstream's own 503");
    }
    // ...then the cluster's breaker answers for it, without contacting it.
    for _ in 0..10 {
        assert_shed(&c.get(&url).await, "circuit_open");
    }
    assert_eq!(
        a.requests() + b.requests(),
        4,
        "no request passed the open breaker"
    );
    assert_eq!(cluster_breaker(&gw).await, "open");
    let state = "levee_circuit_breaker_state{cluster=\"c\",scope=\"cluster\"}";
    let opened = "levee_circuit_breaker_opened_total{cluster=\"c\",scope=\"cluster\"}";
    assert_eq!(gw.metric(state), 1.0);
    assert_eq!(gw.metric(opened), 1.0);
    assert_eq!(gw.metric(&errors_series("circuit_open")), 10.0);

    // The upstream recovers (same ports): half-open, then two good probes
    // close the breaker.
    drop((a, b));
    let a = FakeUpstream::builder("a").bind(a_addr).start().await;
    let b = FakeUpstream::builder("b").bind(b_addr).start().await;
    eventually(SOON, "the cluster breaker turns half-open", || async {
        cluster_breaker(&gw).await == "half_open"
    })
    .await;
    eventually(SOON, "probes close the cluster breaker", || async {
        let r = c.get(&url).await;
        assert_eq!(r.status, 200, "{r:?}");
        cluster_breaker(&gw).await == "closed"
    })
    .await;
    assert_eq!(gw.metric(state), 0.0);
    for _ in 0..10 {
        assert_eq!(c.get(&url).await.status, 200);
    }
    assert!(
        a.requests() > 0 && b.requests() > 0,
        "both take traffic again"
    );
    assert_eq!(gw.metric(opened), 1.0);
}

#[tokio::test]
async fn every_endpoint_breaker_open_means_circuit_open() {
    let a = FakeUpstream::builder("a")
        .otherwise(Reply::status(503))
        .start()
        .await;
    let b = FakeUpstream::builder("b")
        .otherwise(Reply::status(503))
        .start()
        .await;
    let gw = TestGateway::start(&GatewayConfig::new().route(Route::new("r", "c")).cluster(Cluster::new("c").endpoints([a.addr(), b.addr()]).raw("circuit_breaker = { endpoint = { consecutive_failures = 2, base_open_time = \"10s\", max_open_time = \"20s\" } }")).toml())
    .await;
    let c = Client::http1();
    let url = format!("{}/", gw.url("public"));
    // a, b, a (a opens), b (b opens).
    for _ in 0..4 {
        let r = c.get(&url).await;
        assert_eq!(r.status, 503);
        assert_eq!(r.header("levee-error"), None, "the upstream's own 503");
    }
    assert_eq!((a.requests(), b.requests()), (2, 2));
    assert_eq!(endpoint_breaker(&gw, a.addr()).await, "open");
    assert_eq!(endpoint_breaker(&gw, b.addr()).await, "open");
    for _ in 0..10 {
        assert_shed(&c.get(&url).await, "circuit_open");
    }
    assert_eq!(
        a.requests() + b.requests(),
        4,
        "nothing reached either endpoint"
    );
    assert_eq!(gw.metric(&errors_series("circuit_open")), 10.0);
}

// ---------------------------------------------------------------------------
// Bulkheads

/// Route `r` to cluster `c` at `up`, with cluster `limits` (an inline
/// table's keys).
fn with_limits(up: &FakeUpstream, limits: &str) -> String {
    GatewayConfig::new()
        .route(Route::new("r", "c"))
        .cluster(Cluster::new("c").endpoint(up).limits(limits))
        .toml()
}

/// An upstream whose `/slow` takes [`SLOW`] and whose other paths answer at once.
async fn slow_and_fast(name: &str) -> FakeUpstream {
    FakeUpstream::builder(name)
        .route("/slow", Reply::ok().latency(SLOW))
        .start()
        .await
}

#[tokio::test]
async fn requests_beyond_max_requests_are_shed_at_once() {
    let up = slow_and_fast("u").await;
    let gw = TestGateway::start(&with_limits(&up, "max_requests = 2, max_pending = 0")).await;
    let base = gw.url("public");
    let slow: Vec<_> = (0..2).map(|_| spawn_get(format!("{base}/slow"))).collect();
    eventually(SOON, "two requests in flight", || async {
        up.requests() == 2
    })
    .await;
    assert_eq!(cluster(&gw).await.bulkheads.requests_in_flight, Some(2));

    let shed = join_all((0..3).map(|_| spawn_get(format!("{base}/fast"))).collect()).await;
    for r in &shed {
        assert_shed(r, "overflow_requests");
    }
    for r in join_all(slow).await {
        assert_eq!(r.status, 200, "{r:?}");
    }
    assert_eq!(up.requests(), 2, "shed requests never reached the upstream");
    assert_eq!(gw.metric(&errors_series("overflow_requests")), 3.0);
    eventually(SOON, "the in-flight slots are released", || async {
        cluster(&gw).await.bulkheads.requests_in_flight == Some(0)
    })
    .await;
    let r = Client::http1().get(&format!("{base}/fast")).await;
    assert_eq!(r.status, 200, "room again: {r:?}");
}

#[tokio::test]
async fn pending_requests_wait_for_a_slot_and_the_queue_is_bounded() {
    let up = slow_and_fast("u").await;
    let gw = TestGateway::start(&with_limits(&up, "max_requests = 2, max_pending = 2")).await;
    let base = gw.url("public");
    let slow: Vec<_> = (0..2).map(|_| spawn_get(format!("{base}/slow"))).collect();
    eventually(SOON, "two requests in flight", || async {
        up.requests_to("/slow") == 2
    })
    .await;
    let queued: Vec<_> = (0..2).map(|_| spawn_get(format!("{base}/fast"))).collect();
    eventually(SOON, "two requests queued", || async {
        cluster(&gw).await.bulkheads.pending == 2
    })
    .await;
    assert_eq!(
        gw.metric("levee_cluster_pending_requests{cluster=\"c\"}"),
        2.0
    );
    // The queue is full: the next one is shed.
    assert_shed(
        &Client::http1().get(&format!("{base}/fast")).await,
        "overflow_requests",
    );
    assert_eq!(up.requests_to("/fast"), 0, "queued requests wait");

    for r in join_all(slow).await {
        assert_eq!(r.status, 200, "{r:?}");
    }
    for r in join_all(queued).await {
        assert_eq!(r.status, 200, "a queued request is served: {r:?}");
        assert_eq!(r.body, "u");
    }
    assert_eq!(up.requests_to("/fast"), 2);
    assert_eq!(
        gw.metric("levee_cluster_pending_requests{cluster=\"c\"}"),
        0.0
    );
    assert_eq!(gw.metric(&errors_series("overflow_requests")), 1.0);
}

#[tokio::test]
async fn max_connections_caps_upstream_connections() {
    let up = slow_and_fast("u").await;
    let gw = TestGateway::start(&with_limits(&up, "max_connections = 1")).await;
    let base = gw.url("public");
    let slow = spawn_get(format!("{base}/slow"));
    eventually(SOON, "one request in flight", || async {
        up.requests() == 1
    })
    .await;
    // HTTP/1.1: the one connection is busy and no other may be opened.
    assert_shed(
        &Client::http1().get(&format!("{base}/fast")).await,
        "overflow_connections",
    );
    assert_eq!(cluster(&gw).await.bulkheads.connections, 1);
    assert_eq!(
        gw.metric("levee_cluster_upstream_connections{cluster=\"c\"}"),
        1.0
    );
    assert_eq!(slow.await.unwrap().status, 200);

    // Once idle, the connection is reused.
    eventually(SOON, "the connection is idle in the pool", || async {
        endpoint(&gw, up.addr()).await.idle_connections == 1
    })
    .await;
    for _ in 0..3 {
        let r = Client::http1().get(&format!("{base}/fast")).await;
        assert_eq!(r.status, 200, "{r:?}");
    }
    assert_eq!(up.connections(), 1, "never more than one connection");
    assert_eq!(up.requests(), 4);
    assert_eq!(gw.metric(&errors_series("overflow_connections")), 1.0);
}

/// `n` concurrent GETs to a cluster of `a`, which answers 503 at once, and
/// `b`, which answers 200 after [`SLOW`], on a route that retries 5xx once.
/// Requests whose first attempt hit `a` want a retry; the first one granted
/// goes to `b` and stays in flight for [`SLOW`], while the others ask.
async fn failures_racing_for_retries(
    retry_extra: &str,
    cluster_extra: &str,
    n: usize,
) -> (TestGateway, FakeUpstream, FakeUpstream, Vec<ClientReply>) {
    let a = FakeUpstream::builder("a")
        .otherwise(Reply::status(503))
        .start()
        .await;
    let b = FakeUpstream::builder("b")
        .otherwise(Reply::ok().latency(SLOW))
        .start()
        .await;
    let gw = TestGateway::start(
        &GatewayConfig::new()
            .route(
                Route::new("r", "c")
                    .retry(&format!("attempts = 2, retry_on = [\"5xx\"]{retry_extra}")),
            )
            .cluster(
                Cluster::new("c")
                    .endpoints([a.addr(), b.addr()])
                    .raw(cluster_extra),
            )
            .toml(),
    )
    .await;
    let base = gw.url("public");
    let handles: Vec<_> = (0..n).map(|_| spawn_get(format!("{base}/x"))).collect();
    let gauge = "levee_cluster_retries_in_flight{cluster=\"c\"}";
    eventually(SOON, "a retry in flight", || async {
        gw.metric(gauge) == 1.0
    })
    .await;
    assert_eq!(cluster(&gw).await.bulkheads.retries_in_flight, 1);
    let replies = join_all(handles).await;
    eventually(SOON, "no retry in flight", || async {
        gw.metric(gauge) == 0.0
    })
    .await;
    assert_eq!(cluster(&gw).await.bulkheads.retries_in_flight, 0);
    (gw, a, b, replies)
}

/// What both concurrent retry caps guarantee in [`failures_racing_for_retries`]:
/// exactly one retry, and every other failure answered as it was.
fn assert_one_retry(gw: &TestGateway, a: &FakeUpstream, b: &FakeUpstream, replies: &[ClientReply]) {
    let n = replies.len() as u64;
    let failed_first = a.requests();
    assert!(
        failed_first >= 2,
        "round robin sent several first attempts to a"
    );
    assert_eq!(gw.metric("levee_retries_total{route=\"r\"}"), 1.0);
    assert_eq!(b.requests(), n - failed_first + 1, "one retry went to b");
    let ok = replies.iter().filter(|r| r.status == 200).count() as u64;
    let unavailable = replies
        .iter()
        .filter(|r| r.status == 503 && r.header("levee-error").is_none())
        .count() as u64;
    assert_eq!(ok, n - failed_first + 1, "{replies:?}");
    assert_eq!(unavailable, failed_first - 1, "{replies:?}");
}

#[tokio::test]
async fn max_retries_caps_retries_in_flight_for_the_cluster() {
    // The route's own concurrent cap is far away: the cluster's applies.
    let (gw, a, b, replies) = failures_racing_for_retries(
        ", budget = { min_concurrent = 100 }",
        "limits = { max_retries = 1 }",
        6,
    )
    .await;
    assert_one_retry(&gw, &a, &b, &replies);
    // Refused by the bulkhead, not by the route's budget.
    assert_eq!(
        gw.metric("levee_retry_budget_exhausted_total{route=\"r\"}"),
        0.0
    );
}

#[tokio::test]
async fn the_route_budget_caps_concurrent_retries() {
    let (gw, a, b, replies) = failures_racing_for_retries(
        ", budget = { max_concurrent_ratio = \"0%\", min_concurrent = 1 }",
        "",
        6,
    )
    .await;
    assert_one_retry(&gw, &a, &b, &replies);
    assert_eq!(
        gw.metric("levee_retry_budget_exhausted_total{route=\"r\"}"),
        (a.requests() - 1) as f64,
        "every refused retry is counted"
    );
}

// ---------------------------------------------------------------------------
// Hedging

async fn hedging_setup() -> (FakeUpstream, FakeUpstream, TestGateway) {
    let slow = FakeUpstream::builder("slow")
        .otherwise(Reply::ok().latency(SLOW))
        .start()
        .await;
    let fast = FakeUpstream::start("fast").await;
    let gw = TestGateway::start(
        &GatewayConfig::new()
            .route(Route::new("r", "c").hedge("delay = \"50ms\""))
            .cluster(Cluster::new("c").endpoints([slow.addr(), fast.addr()]))
            .toml(),
    )
    .await;
    (slow, fast, gw)
}

#[tokio::test]
async fn a_slow_first_attempt_is_hedged_to_another_endpoint() {
    let (slow, fast, gw) = hedging_setup().await;
    let c = Client::http1();
    let url = format!("{}/x", gw.url("public"));
    for _ in 0..10 {
        let started = Instant::now();
        let r = c.get(&url).await;
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.body, "fast", "the hedge's answer wins");
        assert!(
            started.elapsed() < Duration::from_millis(1500),
            "nobody waited for the slow endpoint: {:?}",
            started.elapsed()
        );
    }
    let hedges = gw.metric("levee_hedges_total{route=\"r\"}");
    let wins = gw.metric("levee_hedge_wins_total{route=\"r\"}");
    // Round robin gives the slow endpoint at least every other first attempt.
    assert!(wins >= 5.0, "hedge wins {wins}");
    assert!(hedges >= wins, "hedges {hedges}, wins {wins}");
    assert!(slow.requests() >= 5);
    assert_eq!(
        fast.requests(),
        10,
        "every answer came from the fast endpoint"
    );
    eventually(SOON, "no hedge in flight", || async {
        gw.metric("levee_cluster_retries_in_flight{cluster=\"c\"}") == 0.0
    })
    .await;

    // A POST is not idempotent: it is never hedged and waits for its endpoint.
    let mut bodies = Vec::new();
    for _ in 0..2 {
        let post = http::Request::post(url.clone())
            .body(http_body_util::Full::new(bytes::Bytes::from_static(b"{}")))
            .unwrap();
        let r = c.send(post).await.unwrap();
        assert_eq!(r.status, 200, "{r:?}");
        bodies.push(r.body);
    }
    bodies.sort();
    assert_eq!(
        bodies,
        ["fast", "slow"],
        "one POST waited for the slow endpoint"
    );
    assert_eq!(gw.metric("levee_hedges_total{route=\"r\"}"), hedges);
}

#[tokio::test]
async fn cancelled_hedged_attempts_leave_nothing_in_flight() {
    let (slow, _fast, gw) = hedging_setup().await;
    let c = Client::http1();
    let url = format!("{}/x", gw.url("public"));
    for _ in 0..4 {
        assert_eq!(c.get(&url).await.body, "fast");
    }
    assert!(gw.metric("levee_hedge_wins_total{route=\"r\"}") >= 1.0);
    // The lost attempts were cancelled; no request is in flight any more.
    let series = format!(
        "levee_endpoint_requests_in_flight{{cluster=\"c\",endpoint=\"{}\"}}",
        slow.addr()
    );
    eventually(SOON, "the slow endpoint has nothing in flight", || async {
        endpoint(&gw, slow.addr()).await.in_flight == 0 && gw.metric(&series) == 0.0
    })
    .await;
}

#[tokio::test]
async fn a_client_that_goes_away_leaves_nothing_in_flight() {
    let slow = FakeUpstream::builder("slow")
        .otherwise(Reply::ok().latency(SLOW))
        .start()
        .await;
    let gw = TestGateway::start(
        &GatewayConfig::new()
            .route(Route::new("r", "c"))
            .cluster(Cluster::new("c").endpoints([slow.addr()]))
            .toml(),
    )
    .await;
    // The client gives up long before the upstream answers.
    let r = crate::raw_exchange(
        gw.addr("public"),
        b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n",
        Duration::from_millis(200),
    )
    .await;
    assert_eq!(r, "", "no answer yet");
    eventually(SOON, "the request reached the upstream", || async {
        slow.requests() == 1
    })
    .await;
    eventually(SOON, "the endpoint has nothing in flight", || async {
        endpoint(&gw, slow.addr()).await.in_flight == 0
    })
    .await;
}

// ---------------------------------------------------------------------------
// Retry-After and the shedding mark

#[tokio::test]
async fn retry_after_beyond_the_cap_stops_retries() {
    let upstream = |name: &'static str| {
        FakeUpstream::builder(name)
            .route("/later", Reply::status(503).header("retry-after", "30"))
            .route("/soon", Reply::status(503).header("retry-after", "1"))
            .route("/now", Reply::status(503).header("retry-after", "0"))
            .otherwise(Reply::status(503))
    };
    let a = upstream("a").start().await;
    let b = upstream("b").start().await;
    let gw = TestGateway::start(
        &GatewayConfig::new()
            .route(
                Route::new("r", "c")
                    .retry("attempts = 2, retry_on = [\"5xx\"], retry_after_max = \"1s\""),
            )
            .cluster(Cluster::new("c").endpoints([a.addr(), b.addr()]))
            .toml(),
    )
    .await;
    let c = Client::http1();
    let base = gw.url("public");
    let sent = |path: &str| a.requests_to(path) + b.requests_to(path);
    for _ in 0..4 {
        assert_eq!(c.get(&format!("{base}/later")).await.status, 503);
    }
    assert_eq!(
        sent("/later"),
        4,
        "a 30 s wait is beyond retry_after_max: no retry"
    );
    assert_eq!(gw.metric("levee_retries_total{route=\"r\"}"), 0.0);
    for path in ["/now", "/plain"] {
        for _ in 0..4 {
            assert_eq!(c.get(&format!("{base}{path}")).await.status, 503);
        }
        assert_eq!(sent(path), 8, "{path} is retried once per request");
    }
    // Within the cap, the retry waits as asked, then goes.
    assert_eq!(c.get(&format!("{base}/soon")).await.status, 503);
    assert_eq!(sent("/soon"), 2);
    assert_eq!(gw.metric("levee_retries_total{route=\"r\"}"), 9.0);
}

#[tokio::test]
async fn responses_marked_overloaded_are_never_retried() {
    let upstream = |name: &'static str| {
        FakeUpstream::builder(name)
            .route(
                "/shed",
                Reply::status(503).header("levee-overloaded", "true"),
            )
            .otherwise(Reply::status(503))
    };
    let a = upstream("a").start().await;
    let b = upstream("b").start().await;
    let gw = TestGateway::start(
        &GatewayConfig::new()
            .route(Route::new("r", "c").retry("attempts = 3, retry_on = [\"5xx\"]"))
            .cluster(Cluster::new("c").endpoints([a.addr(), b.addr()]))
            .toml(),
    )
    .await;
    let c = Client::http1();
    let base = gw.url("public");
    for _ in 0..6 {
        let r = c.get(&format!("{base}/shed")).await;
        assert_eq!(r.status, 503);
        assert_eq!(r.header("levee-overloaded"), Some("true"), "passed through");
        assert_eq!(r.header("levee-error"), None, "the upstream's answer");
    }
    assert_eq!(
        a.requests_to("/shed") + b.requests_to("/shed"),
        6,
        "one attempt per request"
    );
    assert_eq!(gw.metric("levee_retries_total{route=\"r\"}"), 0.0);
    // The same 503 without the mark is retried.
    for _ in 0..2 {
        assert_eq!(c.get(&format!("{base}/plain")).await.status, 503);
    }
    assert_eq!(a.requests_to("/plain") + b.requests_to("/plain"), 6);
}

#[tokio::test]
async fn an_outer_levee_does_not_retry_what_an_inner_levee_shed() {
    let up = slow_and_fast("u").await;
    let inner = TestGateway::start(&crate::single_cluster(
        &[up.addr()],
        "limits = { max_requests = 1, max_pending = 0 }",
    ))
    .await;
    let outer = TestGateway::start(
        &GatewayConfig::new()
            .route(Route::new("r", "c").retry("attempts = 3, retry_on = [\"5xx\"]"))
            .cluster(Cluster::new("c").endpoints([inner.addr("public")]))
            .toml(),
    )
    .await;
    let slow = spawn_get(format!("{}/slow", outer.url("public")));
    eventually(SOON, "the inner slot is taken", || async {
        up.requests() == 1
    })
    .await;
    let r = Client::http1()
        .get(&format!("{}/fast", outer.url("public")))
        .await;
    assert_shed(&r, "overflow_requests");
    assert_eq!(
        inner.metric(&errors_series("overflow_requests")),
        1.0,
        "the outer gateway sent the request once"
    );
    assert_eq!(outer.metric("levee_retries_total{route=\"r\"}"), 0.0);
    assert_eq!(slow.await.unwrap().status, 200);
    assert_eq!(up.requests(), 1);
}

// ---------------------------------------------------------------------------
// gRPC

#[tokio::test]
async fn grpc_unavailable_in_the_head_is_retried_on_another_endpoint() {
    let grpc = |status: &str| {
        Reply::ok()
            .header("content-type", "application/grpc")
            .header("grpc-status", status)
    };
    let down = FakeUpstream::builder("down")
        .route("/svc.Greeter/Invalid", grpc("3"))
        .otherwise(grpc("14"))
        .start()
        .await;
    let up = FakeUpstream::builder("up")
        .otherwise(grpc("0"))
        .start()
        .await;
    let gw = TestGateway::start(
        &GatewayConfig::new()
            // gRPC calls are POSTs: the route declares them safe to repeat.
            .route(
                Route::new("r", "c")
                    .retry("attempts = 2, retry_on = [\"grpc\"], idempotent = true"),
            )
            .cluster(
                Cluster::new("c")
                    .endpoints([down.addr(), up.addr()])
                    .protocol("http2"),
            )
            .toml(),
    )
    .await;
    let c = Client::h2c();
    let call = |method: &str| {
        http::Request::post(format!("{}/svc.Greeter/{method}", gw.url("public")))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(http_body_util::Full::new(bytes::Bytes::from_static(
                b"\0\0\0\0\0",
            )))
            .unwrap()
    };
    for _ in 0..6 {
        let r = c.send(call("SayHello")).await.unwrap();
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.header("grpc-status"), Some("0"), "{r:?}");
        assert_eq!(r.header("x-upstream"), Some("up"));
    }
    let unavailable = down.requests_to("/svc.Greeter/SayHello");
    assert!(unavailable >= 2, "round robin reached the failing endpoint");
    assert_eq!(up.requests_to("/svc.Greeter/SayHello"), 6);
    assert_eq!(
        gw.metric("levee_retries_total{route=\"r\"}"),
        unavailable as f64
    );
    // A status not listed in grpc_statuses (default: unavailable) is final.
    let mut invalid = 0;
    for _ in 0..4 {
        let r = c.send(call("Invalid")).await.unwrap();
        if r.header("grpc-status") == Some("3") {
            invalid += 1;
        }
    }
    assert_eq!(invalid, down.requests_to("/svc.Greeter/Invalid"));
    assert!(invalid >= 1);
    assert_eq!(
        gw.metric("levee_retries_total{route=\"r\"}"),
        unavailable as f64
    );
}
