//! Resilience end to end: circuit breakers (per endpoint and per cluster),
//! bulkheads, hedging, `Retry-After`, the `levee-overloaded` shedding mark
//! across Levee hops, the concurrent retry caps and the gRPC retry class.
//! Every check is on what a client (or the admin API) sees over real
//! sockets; waits use `eventually`, and durations appear only as generous
//! upper bounds or as the slowness of a scripted upstream.

use levee_testkit::{
    eventually, Client, ClientReply, Cluster, EndpointState, FakeUpstream, GatewayConfig, Reply,
    Route, TestGateway,
};
use std::net::SocketAddr;
use std::time::Duration;

/// How long the scripted slow upstreams take: long enough that a loaded
/// two-core machine finishes the rest of a test step well within it.
const SLOW: Duration = Duration::from_secs(2);

/// How long `eventually` waits for state that should follow within
/// milliseconds.
const SOON: Duration = Duration::from_secs(10);

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

fn errors_series(reason: &str) -> String {
    format!("levee_errors_total{{cluster=\"c\",reason=\"{reason}\"}}")
}

/// A GET in its own task (its own client, so its own connection).
fn spawn_get(url: String) -> tokio::task::JoinHandle<ClientReply> {
    tokio::spawn(async move { Client::http1().get(&url).await })
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

/// An upstream whose `/slow` takes [`SLOW`] and whose other paths answer at once.
async fn slow_and_fast(name: &str) -> FakeUpstream {
    FakeUpstream::builder(name)
        .route("/slow", Reply::ok().latency(SLOW))
        .start()
        .await
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
