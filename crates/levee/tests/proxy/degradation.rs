//! Graceful degradation end to end: a route's fallbacks (a stale copy of an
//! earlier GET, another cluster, a fixed response) answer what its cluster
//! cannot, marked `levee-degraded`; bad fallback configs are refused; and a
//! stalled response body is cut by the route's `stream_idle_timeout`.
//! Every check is on what a client sees over real sockets; durations appear
//! only as generous upper bounds or as the slowness of a scripted upstream.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use levee_testkit::{
    Client, ClientReply, Cluster, FakeUpstream, GatewayConfig, Reply, Route, TempDir, TestGateway,
};
use std::net::SocketAddr;
use std::time::Duration;

/// How long `eventually` waits for state that should follow within
/// milliseconds.
const SOON: Duration = Duration::from_secs(10);

/// One route `r` to cluster `c` over `endpoints`, with `fallback` as the
/// body of its `[routes.fallback]`.
fn config(endpoints: &[SocketAddr], fallback: &str) -> GatewayConfig {
    with_cluster(fallback, Cluster::new("c").endpoints(endpoints))
}

/// One route `r` to `cluster` (named `c`), with `fallback` as the body of
/// its `[routes.fallback]`.
fn with_cluster(fallback: &str, cluster: Cluster) -> GatewayConfig {
    GatewayConfig::new()
        .route(Route::new("r", "c").fallback(fallback))
        .cluster(cluster)
}

fn fallbacks_series(kind: &str) -> String {
    format!("levee_fallbacks_total{{route=\"r\",kind=\"{kind}\"}}")
}

fn post(url: &str, body: &'static [u8]) -> http::Request<Full<Bytes>> {
    http::Request::post(url)
        .body(Full::new(Bytes::from_static(body)))
        .unwrap()
}

// ---------------------------------------------------------------------------
// Serve stale

#[tokio::test]
async fn a_copy_made_for_one_authorized_client_is_not_served_to_another() {
    // RFC 9111 section 3.5: a shared cache does not reuse a response to a
    // request with Authorization unless the response allows it (public,
    // s-maxage, must-revalidate). Here it also carries Alice's cookie.
    let up = FakeUpstream::builder("u")
        .route(
            "/me",
            Reply::statuses(&[200, 503]).header("set-cookie", "session=alice"),
        )
        .start()
        .await;
    let gw =
        TestGateway::start(&config(&[up.addr()], "serve_stale = { max_entries = 100 }").toml())
            .await;
    let c = Client::http1();
    let url = format!("{}/me", gw.url("public"));
    let alice = c.get_with(&url, &[("authorization", "Bearer alice")]).await;
    assert_eq!(alice.status, 200, "{alice:?}");
    let bob = c.get_with(&url, &[("authorization", "Bearer bob")]).await;
    // Bob sees the upstream's own 503, not a copy of Alice's 200.
    assert_eq!(bob.status, 503, "Bob got Alice's cached answer: {bob:?}");
    bob.assert_not_degraded();
}

#[tokio::test]
async fn bodies_over_max_entry_bytes_are_not_kept() {
    let up = FakeUpstream::builder("u")
        .route("/small", Reply::statuses(&[200, 503]).body_size(1000))
        .route("/large", Reply::statuses(&[200, 503]).body_size(2000))
        .route(
            "/streamed",
            Reply::statuses(&[200, 503]).chunks(4, 500, Duration::from_millis(5)),
        )
        .start()
        .await;
    let gw = TestGateway::start(
        &config(&[up.addr()], "serve_stale = { max_entry_bytes = \"1KiB\" }").toml(),
    )
    .await;
    let c = Client::http1();
    let base = gw.url("public");
    for path in ["/small", "/large", "/streamed"] {
        let r = c.get(&format!("{base}{path}")).await;
        assert_eq!(r.status, 200, "{path}: {r:?}");
    }
    let r = c.get(&format!("{base}/small")).await;
    assert_eq!(r.assert_stale(&"x".repeat(1000)), 0);
    for path in ["/large", "/streamed"] {
        let r = c.get(&format!("{base}{path}")).await;
        assert_eq!(r.status, 503, "{path} was too large to keep: {r:?}");
        r.assert_not_degraded();
    }
}

#[tokio::test]
async fn the_stale_cache_survives_a_reload_that_keeps_its_settings() {
    let up = FakeUpstream::builder("v1")
        .route("/item", Reply::statuses(&[200, 503]))
        .start()
        .await;
    let cfg = |marker: &str, max_entries: u32| {
        GatewayConfig::new()
            .route(
                Route::new("r", "c")
                    .response_header("x-marker", marker)
                    .fallback(&format!("serve_stale = {{ max_entries = {max_entries} }}")),
            )
            .cluster(Cluster::new("c").endpoint(&up))
            .toml()
    };
    let gw = TestGateway::start_from_file(&cfg("one", 100)).await;
    let path = gw.config_path.clone().unwrap();
    let c = Client::http1();
    let url = format!("{}/item", gw.url("public"));
    assert_eq!(c.get(&url).await.body, "v1");

    // Another route setting changes: the copy is still there.
    std::fs::write(&path, cfg("two", 100)).unwrap();
    gw.gateway.reload_from_file().await.expect("reload");
    let r = c.get(&url).await;
    r.assert_stale("v1");
    assert_eq!(
        r.header("x-marker"),
        Some("two"),
        "the new config serves it"
    );

    // The cache settings change: it starts empty.
    std::fs::write(&path, cfg("three", 50)).unwrap();
    gw.gateway.reload_from_file().await.expect("reload");
    let r = c.get(&url).await;
    assert_eq!(r.status, 503, "{r:?}");
    r.assert_not_degraded();
    assert_eq!(r.header("x-marker"), Some("three"));
}

// ---------------------------------------------------------------------------
// Static response

const STATIC: &str = "response = { status = 503, headers = { \"retry-after\" = \"5\", \"content-type\" = \"application/json\" }, body = \"{\\\"degraded\\\":true}\" }";

fn assert_static(r: &ClientReply) {
    assert_eq!(r.status, 503, "{r:?}");
    assert_eq!(r.body, "{\"degraded\":true}", "{r:?}");
    assert_eq!(r.header("levee-degraded"), Some("static"), "{r:?}");
    assert_eq!(r.header("retry-after"), Some("5"), "{r:?}");
    assert_eq!(r.header("content-type"), Some("application/json"), "{r:?}");
    assert_eq!(r.header("levee-error"), None, "{r:?}");
}

#[tokio::test]
async fn a_dead_cluster_is_answered_with_the_static_response() {
    let dead = crate::closed_port().await;
    let gw = TestGateway::start(&config(&[dead], STATIC).toml()).await;
    let c = Client::http1();
    for _ in 0..3 {
        assert_static(&c.get(&format!("{}/x", gw.url("public"))).await);
    }
    let r = c
        .send(post(&format!("{}/orders", gw.url("public")), b"{}"))
        .await
        .unwrap();
    assert_static(&r);
    assert_eq!(gw.metric(&fallbacks_series("static")), 4.0);
}

#[tokio::test]
async fn only_statuses_in_on_statuses_fall_back() {
    let up = FakeUpstream::builder("u")
        .route("/boom", Reply::status(500))
        .route("/missing", Reply::status(404))
        .route("/teapot", Reply::status(418))
        .start()
        .await;
    let gw = TestGateway::start(&config(&[up.addr()], STATIC).toml()).await;
    let c = Client::http1();
    let base = gw.url("public");
    assert_static(&c.get(&format!("{base}/boom")).await);
    let r = c.get(&format!("{base}/missing")).await;
    assert_eq!(r.status, 404, "a 404 is an answer, not a failure: {r:?}");
    r.assert_not_degraded();
    assert_eq!(c.get(&format!("{base}/ok")).await.body, "u");

    // A route listing its own failure statuses.
    let gw =
        TestGateway::start(&config(&[up.addr()], &format!("{STATIC}\non_statuses = [418]")).toml())
            .await;
    let base = gw.url("public");
    assert_static(&c.get(&format!("{base}/teapot")).await);
    let r = c.get(&format!("{base}/boom")).await;
    assert_eq!(r.status, 500, "500 is not listed: {r:?}");
    r.assert_not_degraded();
}

#[tokio::test]
async fn a_body_file_is_read_relative_to_the_config_file() {
    let dead = crate::closed_port().await;
    let dir = TempDir::new();
    std::fs::create_dir_all(dir.path.join("pages")).unwrap();
    std::fs::write(
        dir.path.join("pages/maintenance.html"),
        "<h1>Back soon</h1>\n",
    )
    .unwrap();
    let path = dir.path.join("levee.toml");
    std::fs::write(
        &path,
        config(
            &[dead],
            "response = { status = 200, headers = { \"content-type\" = \"text/html\" }, body_file = \"pages/maintenance.html\" }",
        )
        .toml(),
    )
    .unwrap();
    let loaded = levee_config::load_file(&path).unwrap_or_else(|d| panic!("{d}"));
    let gw = levee_proxy::Gateway::start(loaded, Some(path))
        .await
        .unwrap_or_else(|e| panic!("gateway failed to start: {e}"));
    let url = format!("http://{}/", gw.listener_addr("public").unwrap());
    let r = Client::http1().get(&url).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body, "<h1>Back soon</h1>\n");
    assert_eq!(r.header("content-type"), Some("text/html"));
    assert_eq!(r.header("levee-degraded"), Some("static"));
}

// ---------------------------------------------------------------------------
// Fallback cluster

/// A route whose cluster answers `primary_reply`, with a fallback cluster
/// ("dr") that echoes what it receives.
async fn with_fallback_cluster(primary_reply: Reply) -> (FakeUpstream, FakeUpstream, TestGateway) {
    let primary = FakeUpstream::builder("primary")
        .otherwise(primary_reply)
        .start()
        .await;
    let dr = FakeUpstream::builder("dr")
        .otherwise(Reply::echo())
        .start()
        .await;
    let gw = TestGateway::start(
        &config(&[primary.addr()], "cluster = \"dr\"")
            .cluster(Cluster::new("dr").endpoint(&dr))
            .toml(),
    )
    .await;
    (primary, dr, gw)
}

#[tokio::test]
async fn a_failing_cluster_hands_the_request_to_the_fallback_cluster() {
    let (primary, dr, gw) = with_fallback_cluster(Reply::status(503)).await;
    let c = Client::http1();
    let base = gw.url("public");

    let r = c.get(&format!("{base}/orders?page=2")).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("levee-degraded"), Some("cluster"), "{r:?}");
    assert_eq!(r.header("x-upstream"), Some("dr"));
    let seen = r.json();
    assert_eq!(seen["method"], "GET");
    assert_eq!(seen["uri"], "/orders?page=2");
    assert_eq!(seen["body_len"], 0);

    let r = c
        .send(post(&format!("{base}/orders"), b"{\"qty\":3}"))
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("levee-degraded"), Some("cluster"), "{r:?}");
    let seen = r.json();
    assert_eq!(seen["method"], "POST");
    assert_eq!(seen["uri"], "/orders");
    assert_eq!(seen["body_len"], 9, "the body went along: {seen}");
    assert!(
        seen["headers"]["x-forwarded-for"].is_string(),
        "forwarded as usual: {seen}"
    );

    assert_eq!(
        primary.requests_to("/orders"),
        2,
        "the primary was asked first"
    );
    assert_eq!(dr.requests_to("/orders"), 2);
    assert_eq!(gw.metric(&fallbacks_series("cluster")), 2.0);
}

#[tokio::test]
async fn a_small_chunked_body_goes_to_the_fallback_cluster_too() {
    // No content-length: the body streams, and ends well within the 64 KiB
    // the route keeps to send again. The primary reads it all, then fails.
    let (primary, dr, gw) = with_fallback_cluster(Reply::echo().answering(503)).await;
    let mut send = crate::http1_connection(gw.addr("public")).await;
    let chunks = futures_util::stream::iter([
        Ok::<_, std::convert::Infallible>(hyper::body::Frame::data(Bytes::from_static(
            b"{\"qty\"",
        ))),
        Ok(hyper::body::Frame::data(Bytes::from_static(b":3}"))),
    ]);
    let req = http::Request::post("/orders")
        .header("host", "x")
        .body(http_body_util::StreamBody::new(chunks))
        .unwrap();
    let resp = tokio::time::timeout(SOON, send.send_request(req))
        .await
        .expect("an answer")
        .expect("a response");
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.expect("a body").to_bytes();
    let text = String::from_utf8_lossy(&body);
    assert_eq!(primary.requests_to("/orders"), 1, "the primary was asked");
    assert_eq!(dr.requests_to("/orders"), 1, "{parts:?} {text}");
    assert_eq!(parts.status, 200, "{parts:?} {text}");
    assert_eq!(
        parts.headers.get("levee-degraded").map(|v| v.as_bytes()),
        Some(&b"cluster"[..]),
        "{parts:?}"
    );
    let seen: serde_json::Value = serde_json::from_slice(&body).expect("echo JSON");
    assert_eq!(seen["method"], "POST");
    assert_eq!(seen["body_len"], 9, "the body went along: {seen}");
}

#[tokio::test]
async fn fallbacks_are_tried_in_order_stale_cluster_static() {
    let primary = FakeUpstream::builder("primary")
        .route("/cached", Reply::statuses(&[200, 503]))
        .otherwise(Reply::status(503))
        .start()
        .await;
    let dr = FakeUpstream::start("dr").await;
    let gw = TestGateway::start(
        &config(
            &[primary.addr()],
            &format!("{STATIC}\nserve_stale = {{ max_entries = 10 }}\ncluster = \"dr\""),
        )
        .cluster(Cluster::new("dr").endpoint(&dr))
        .toml(),
    )
    .await;
    let c = Client::http1();
    let base = gw.url("public");
    assert_eq!(c.get(&format!("{base}/cached")).await.body, "primary");

    // A copy exists: it comes before the fallback cluster.
    c.get(&format!("{base}/cached"))
        .await
        .assert_stale("primary");
    assert_eq!(dr.requests(), 0);
    // No copy: the fallback cluster.
    let r = c.get(&format!("{base}/fresh")).await;
    assert_eq!(r.header("levee-degraded"), Some("cluster"), "{r:?}");
    assert_eq!(r.body, "dr");
    // The fallback cluster fails too: the static response.
    drop(dr);
    assert_static(&c.get(&format!("{base}/fresh")).await);
    assert_eq!(gw.metric(&fallbacks_series("stale")), 1.0);
    assert_eq!(gw.metric(&fallbacks_series("cluster")), 1.0);
    assert_eq!(gw.metric(&fallbacks_series("static")), 1.0);
}

// ---------------------------------------------------------------------------
// Shed requests

#[tokio::test]
async fn an_open_cluster_breaker_is_answered_with_the_static_response() {
    let up = FakeUpstream::builder("u")
        .otherwise(Reply::status(503))
        .start()
        .await;
    let gw = TestGateway::start(
        &with_cluster(
            STATIC,
            Cluster::new("c").endpoint(&up).raw(
                "circuit_breaker = { cluster = { consecutive_failures = 3, base_open_time = \"30s\", max_open_time = \"60s\" } }",
            ),
        )
        .toml(),
    )
    .await;
    let c = Client::http1();
    let url = format!("{}/x", gw.url("public"));
    // The upstream's 503s are failures the fallback answers...
    for _ in 0..3 {
        assert_static(&c.get(&url).await);
    }
    assert_eq!(up.requests(), 3);
    // ...and once they open the breaker, so are the requests it refuses.
    for _ in 0..5 {
        assert_static(&c.get(&url).await);
    }
    assert_eq!(up.requests(), 3, "the open breaker sent nothing");
    assert_eq!(gw.metric(&fallbacks_series("static")), 8.0);
}

// ---------------------------------------------------------------------------
// Bad configs

#[tokio::test]
async fn bad_fallback_configs_are_refused_with_a_diagnostic() {
    let up = FakeUpstream::start("u").await;
    let load = |fallback: &str| {
        levee_config::load_str(
            &config(&[up.addr()], fallback)
                .cluster(Cluster::new("dr").endpoint(&up))
                .toml(),
            levee_config::Format::Toml,
            "levee.toml",
        )
    };
    let err = load("cluster = \"dr-east\"")
        .expect_err("unknown fallback cluster")
        .to_string();
    assert!(err.contains("routes[0].fallback.cluster"), "{err}");
    assert!(err.contains("unknown cluster `dr-east`"), "{err}");
    let err = load("cluster = \"drr\"")
        .expect_err("misspelt fallback cluster")
        .to_string();
    assert!(err.contains("unknown cluster `drr`"), "{err}");
    assert!(err.contains("did you mean `dr`?"), "{err}");

    let err = load("cluster = \"c\"")
        .expect_err("fallback to the route's own cluster")
        .to_string();
    assert!(err.contains("routes[0].fallback.cluster"), "{err}");
    assert!(err.contains("own cluster"), "{err}");

    let err = load("on_statuses = [503]")
        .expect_err("a fallback with nothing to answer")
        .to_string();
    assert!(
        err.contains("a fallback needs serve_stale, cluster or response"),
        "{err}"
    );

    let err = load("response = { status = 503, body = \"x\", body_file = \"x.html\" }")
        .expect_err("both body and body_file")
        .to_string();
    assert!(err.contains("either body or body_file"), "{err}");

    assert!(load("cluster = \"dr\"").is_ok());
}

#[tokio::test]
async fn a_missing_body_file_stops_the_gateway_from_starting() {
    let up = FakeUpstream::start("u").await;
    let dir = TempDir::new();
    let path = dir.path.join("levee.toml");
    std::fs::write(
        &path,
        config(
            &[up.addr()],
            "response = { status = 503, body_file = \"missing-page.html\" }",
        )
        .toml(),
    )
    .unwrap();
    let loaded = levee_config::load_file(&path).expect("the file itself is valid");
    let err = match levee_proxy::Gateway::start(loaded, Some(path)).await {
        Ok(_) => panic!("started with a missing body file"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("route r"), "names the route: {err}");
    assert!(err.contains("missing-page.html"), "names the file: {err}");
}

// ---------------------------------------------------------------------------
// Stream idle timeout

#[tokio::test]
async fn a_stalled_response_body_is_cut_by_the_stream_idle_timeout() {
    let up = FakeUpstream::builder("u")
        // The first chunk, then nothing for a minute.
        .route(
            "/short/stall",
            Reply::ok().chunks(2, 16, Duration::from_secs(60)),
        )
        // Pauses well within the short route's timeout: the timer restarts
        // with every chunk, so the whole body may take longer than it.
        .route(
            "/short/trickle",
            Reply::ok().chunks(8, 16, Duration::from_millis(40)),
        )
        // Pauses beyond the short route's timeout, within the default.
        .route(
            "/long/trickle",
            Reply::ok().chunks(3, 16, Duration::from_millis(400)),
        )
        .start()
        .await;
    let toml = GatewayConfig::new()
        .route(
            Route::new("short", "c")
                .prefix("/short/")
                .raw("stream_idle_timeout = \"200ms\""),
        )
        .route(Route::new("long", "c"))
        .cluster(Cluster::new("c").endpoint(&up))
        .toml();
    let gw = TestGateway::start(&toml).await;

    // Head and first chunk arrive; then the body ends in an error, long
    // before the upstream would have sent the rest.
    let started = levee_core::time::now();
    let mut send = crate::http1_connection(gw.addr("public")).await;
    let req = http::Request::get("/short/stall")
        .header("host", "x")
        .body(http_body_util::Empty::<Bytes>::new())
        .unwrap();
    let resp = tokio::time::timeout(SOON, send.send_request(req))
        .await
        .expect("the head arrives")
        .expect("a response");
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let first = tokio::time::timeout(SOON, body.frame())
        .await
        .expect("the first chunk arrives")
        .expect("a frame")
        .expect("the first chunk is intact");
    assert_eq!(first.into_data().unwrap().len(), 16);
    let end = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match body.frame().await {
                Some(Ok(f)) if f.is_data() => {
                    panic!("no more data was sent, got {:?}", f.into_data())
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(e),
                None => return Ok(()),
            }
        }
    })
    .await
    .expect("the body ends instead of hanging");
    assert!(
        end.is_err(),
        "a cut body ends in an error, not a clean end (it is incomplete)"
    );
    let took = levee_core::time::now() - started;
    assert!(
        took < Duration::from_secs(10),
        "cut well before the upstream's minute: {took:?}"
    );

    let c = Client::http1();
    let r = c.get(&format!("{}/short/trickle", gw.url("public"))).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body.len(), 8 * 16, "every chunk arrived");
    let r = c.get(&format!("{}/long/trickle", gw.url("public"))).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body.len(), 3 * 16, "the default timeout waits longer");
}
