//! Traffic mirroring end to end: a route's `mirror` copies a share of its
//! requests to a shadow cluster whose answers are compared and discarded.
//! The client only ever sees the primary's answer, never waits for the
//! shadow, and the counters (`Gateway::mirror_stats`, metrics) say what
//! happened. Durations appear only as a shadow's scripted slowness, checked
//! by ordering (the primary's batch ends before the first shadow answer
//! could), never as tight timings.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use levee_proxy::MirrorStats;
use levee_testkit::{
    eventually, Client, Cluster, FakeUpstream, GatewayConfig, Reply, Route, TestGateway,
};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long `eventually` waits for state that follows within moments.
const SOON: Duration = Duration::from_secs(10);

/// Route `r` (prefix `/`) to cluster `c` over `primary`, mirrored to
/// cluster `shadow` over `shadow` with `mirror` (the inline table's keys
/// after `cluster`), plus `extra` route keys (TOML lines).
fn config(primary: &[SocketAddr], shadow: &[SocketAddr], mirror: &str, extra: &str) -> String {
    GatewayConfig::new()
        .route(mirrored_route("r", "/", mirror).raw(extra))
        .cluster(Cluster::new("c").endpoints(primary))
        .cluster(Cluster::new("shadow").endpoints(shadow))
        .toml()
}

fn mirrored_route(name: &str, prefix: &str, mirror: &str) -> Route {
    let sep = if mirror.is_empty() { "" } else { ", " };
    Route::new(name, "c")
        .prefix(prefix)
        .raw(&format!("mirror = {{ cluster = \"shadow\"{sep}{mirror} }}"))
}

fn stats(gw: &TestGateway, route: &str) -> MirrorStats {
    gw.gateway
        .mirror_stats(route)
        .unwrap_or_else(|| panic!("route {route} has a mirror"))
}

fn post(url: &str, body: impl Into<Bytes>) -> http::Request<Full<Bytes>> {
    http::Request::post(url)
        .body(Full::new(body.into()))
        .unwrap()
}

/// A request as a [`Recorder`] received it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    target: String,
    headers: http::HeaderMap,
    body: Bytes,
}

/// A shadow that records every request it receives, whole, and answers
/// 200 "shadow".
struct Recorder {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Recorder {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let log = seen.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let log = log.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(
                        move |req: http::Request<hyper::body::Incoming>| {
                            let log = log.clone();
                            async move {
                                let (parts, body) = req.into_parts();
                                let body = body.collect().await?.to_bytes();
                                log.lock().unwrap().push(Seen {
                                    method: parts.method.to_string(),
                                    target: parts.uri.to_string(),
                                    headers: parts.headers,
                                    body,
                                });
                                Ok::<_, hyper::Error>(http::Response::new(Full::new(
                                    Bytes::from_static(b"shadow"),
                                )))
                            }
                        },
                    );
                    let io = hyper_util::rt::TokioIo::new(stream);
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, service)
                        .await;
                });
            }
        });
        Self { addr, seen }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

#[tokio::test]
async fn at_full_weight_every_request_reaches_the_shadow_and_the_client_sees_the_primary() {
    let primary = FakeUpstream::start("primary").await;
    let shadow = Recorder::start().await;
    // Retries make the route read small bodies in advance: those can be
    // mirrored.
    let gw = TestGateway::start(&config(
        &[primary.addr()],
        &[shadow.addr],
        "weight = 100",
        "retry = { attempts = 2 }\nrewrite = { strip_prefix = \"/api\" }",
    ))
    .await;
    let c = Client::http1();
    let base = gw.url("public");
    for i in 0..3 {
        let r = c
            .get_with(&format!("{base}/api/items/{i}?q=x"), &[("x-trace", "t1")])
            .await;
        assert_eq!(
            (r.status.as_u16(), r.body.as_str()),
            (200, "primary"),
            "{r:?}"
        );
    }
    let r = c
        .send(post(&format!("{base}/api/orders"), "hello shadow"))
        .await
        .unwrap();
    assert_eq!(
        (r.status.as_u16(), r.body.as_str()),
        (200, "primary"),
        "{r:?}"
    );
    assert_eq!(primary.requests(), 4);

    eventually(SOON, "the shadow receives all four copies", || async {
        shadow.seen().len() == 4
    })
    .await;
    let mut seen = shadow.seen();
    seen.sort_by(|a, b| a.target.cmp(&b.target));
    let targets: Vec<(&str, &str)> = seen
        .iter()
        .map(|s| (s.method.as_str(), s.target.as_str()))
        .collect();
    assert_eq!(
        targets,
        [
            ("GET", "/items/0?q=x"),
            ("GET", "/items/1?q=x"),
            ("GET", "/items/2?q=x"),
            ("POST", "/orders"),
        ],
        "method, path and query after the route's rewrite"
    );
    for s in &seen {
        assert_eq!(s.headers.get("levee-mirror").unwrap(), "1", "{s:?}");
        assert!(s.headers.contains_key("x-forwarded-for"), "{s:?}");
    }
    assert_eq!(seen[0].headers.get("x-trace").unwrap(), "t1");
    assert_eq!(seen[3].body, Bytes::from_static(b"hello shadow"));
    eventually(SOON, "four copies compared", || async {
        stats(&gw, "r").compared == 4
    })
    .await;
    let s = stats(&gw, "r");
    assert_eq!(
        (s.sent, s.skipped_body, s.dropped_in_flight),
        (4, 0, 0),
        "{s:?}"
    );
    assert_eq!(
        gw.metric("levee_mirror_requests_total{route=\"r\",result=\"sent\"}"),
        4.0
    );
}

/// Sends 20 GETs one after another; every answer is the primary's 200.
async fn twenty_primary_answers(gw: &TestGateway) {
    let c = Client::http1();
    let url = format!("{}/x", gw.url("public"));
    for _ in 0..20 {
        let r = c.get(&url).await;
        assert_eq!(
            (r.status.as_u16(), r.body.as_str()),
            (200, "primary"),
            "{r:?}"
        );
    }
}

#[tokio::test]
async fn a_slow_shadow_delays_no_primary_answer() {
    let primary = FakeUpstream::start("primary").await;
    let slow = FakeUpstream::builder("slow")
        .otherwise(Reply::ok().latency(Duration::from_secs(3)))
        .start()
        .await;
    let gw = TestGateway::start(&config(
        &[primary.addr()],
        &[slow.addr()],
        "timeout = \"20s\"",
        "",
    ))
    .await;
    twenty_primary_answers(&gw).await;
    // Had any primary waited for its copy, the batch would have taken a
    // minute; instead all 20 are back before the first copy is answered.
    let s = stats(&gw, "r");
    assert_eq!(s.sent, 20, "{s:?}");
    assert_eq!(
        (s.compared, s.incomplete, s.shadow_errors),
        (0, 0, 0),
        "no copy has been answered yet: {s:?}"
    );
    eventually(
        Duration::from_secs(20),
        "the slow copies are compared",
        || async { stats(&gw, "r").compared == 20 },
    )
    .await;
    let s = stats(&gw, "r");
    assert_eq!(s.shadow_slower, 20, "{s:?}");
    assert_eq!((s.status_mismatch, s.shadow_errors), (0, 0), "{s:?}");
}

#[tokio::test]
async fn a_failing_shadow_fails_no_primary_answer() {
    let primary = FakeUpstream::start("primary").await;
    let failing = FakeUpstream::builder("failing")
        .otherwise(Reply::status(500))
        .start()
        .await;
    let gw = TestGateway::start(&config(&[primary.addr()], &[failing.addr()], "", "")).await;
    twenty_primary_answers(&gw).await;
    eventually(SOON, "20 shadow errors", || async {
        stats(&gw, "r").shadow_errors == 20
    })
    .await;
    let s = stats(&gw, "r");
    assert_eq!((s.compared, s.status_mismatch), (20, 20), "{s:?}");
    assert_eq!(s.mismatch_rate(), Some(1.0));
    assert_eq!(failing.requests(), 20, "one attempt each, no retries");
    assert_eq!(
        gw.metric("levee_mirror_requests_total{route=\"r\",result=\"shadow_error\"}"),
        20.0
    );
    assert_eq!(
        gw.metric("levee_mirror_comparisons_total{route=\"r\",result=\"status_mismatch\"}"),
        20.0
    );
}

#[tokio::test]
async fn a_shadow_on_a_closed_port_fails_no_primary_answer() {
    let primary = FakeUpstream::start("primary").await;
    let closed = crate::closed_port().await;
    let gw = TestGateway::start(&config(&[primary.addr()], &[closed], "", "")).await;
    twenty_primary_answers(&gw).await;
    eventually(SOON, "20 shadow errors", || async {
        stats(&gw, "r").shadow_errors == 20
    })
    .await;
    let s = stats(&gw, "r");
    assert_eq!(
        (s.sent, s.compared, s.status_mismatch),
        (20, 20, 20),
        "no answer is a class of its own: {s:?}"
    );
    assert_eq!(primary.requests(), 20);
}

#[tokio::test]
async fn copies_over_max_in_flight_are_dropped_and_the_primary_is_unaffected() {
    let primary = FakeUpstream::start("primary").await;
    let hanging = FakeUpstream::builder("hanging")
        .otherwise(Reply::hang())
        .start()
        .await;
    let gw = TestGateway::start(&config(
        &[primary.addr()],
        &[hanging.addr()],
        "max_in_flight = 2, timeout = \"60s\"",
        "",
    ))
    .await;
    twenty_primary_answers(&gw).await;
    let s = stats(&gw, "r");
    assert_eq!((s.sent, s.dropped_in_flight), (2, 18), "{s:?}");
    eventually(SOON, "the two copies reach the shadow", || async {
        hanging.requests() == 2
    })
    .await;
    assert_eq!(primary.requests(), 20);
    assert_eq!(
        gw.metric("levee_mirror_requests_total{route=\"r\",result=\"dropped_in_flight\"}"),
        18.0
    );
}

#[tokio::test]
async fn bodies_within_max_body_bytes_are_read_ahead_and_mirrored_larger_ones_are_not() {
    let primary = FakeUpstream::start("primary").await;
    let shadow = Recorder::start().await;
    let mirror = "max_body_bytes = 1024";
    let toml = GatewayConfig::new()
        // Retries read bodies up to 64 KiB in advance.
        .route(mirrored_route("buffered", "/buffered", mirror).retry("attempts = 2"))
        // Without retries, the mirror reads bodies within its bound ahead.
        .route(mirrored_route("streamed", "/streamed", mirror))
        .cluster(Cluster::new("c").endpoints([primary.addr()]))
        .cluster(Cluster::new("shadow").endpoints([shadow.addr]))
        .toml();
    let gw = TestGateway::start(&toml).await;
    let c = Client::http1();
    let base = gw.url("public");
    let small = Bytes::from(vec![b's'; 100]);
    let large = Bytes::from(vec![b'l'; 4000]);
    for (path, body) in [
        ("/buffered/small", small.clone()),
        ("/buffered/large", large.clone()),
        ("/streamed/small", small.clone()),
        ("/streamed/large", large.clone()),
    ] {
        let r = c.send(post(&format!("{base}{path}"), body)).await.unwrap();
        assert_eq!(
            (r.status.as_u16(), r.body.as_str()),
            (200, "primary"),
            "{path}: {r:?}"
        );
    }
    assert_eq!(primary.requests(), 4);
    eventually(SOON, "the small bodies' copies arrive", || async {
        shadow.seen().len() == 2
    })
    .await;
    let buffered = stats(&gw, "buffered");
    assert_eq!(
        (buffered.sent, buffered.skipped_body),
        (1, 1),
        "{buffered:?}"
    );
    let streamed = stats(&gw, "streamed");
    assert_eq!(
        (streamed.sent, streamed.skipped_body),
        (1, 1),
        "{streamed:?}"
    );
    let mut seen = shadow.seen();
    seen.sort_by(|a, b| a.target.cmp(&b.target));
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[0].target, "/buffered/small");
    assert_eq!(seen[1].target, "/streamed/small");
    assert!(
        seen.iter().all(|s| s.body == small),
        "the copies carry the same body"
    );
    assert_eq!(
        gw.metric("levee_mirror_requests_total{route=\"buffered\",result=\"skipped_body\"}"),
        1.0
    );
}

/// Starts a gateway mirroring to `shadow`, sends 10 GETs and waits until
/// all 10 copies are compared; returns the counters.
async fn compared_against(shadow: FakeUpstream) -> MirrorStats {
    let primary = FakeUpstream::start("primary").await;
    let gw = TestGateway::start(&config(&[primary.addr()], &[shadow.addr()], "", "")).await;
    let c = Client::http1();
    let url = format!("{}/x", gw.url("public"));
    for _ in 0..10 {
        let r = c.get(&url).await;
        assert_eq!(
            (r.status.as_u16(), r.body.as_str()),
            (200, "primary"),
            "{r:?}"
        );
    }
    eventually(SOON, "10 copies compared", || async {
        stats(&gw, "r").compared == 10
    })
    .await;
    stats(&gw, "r")
}

#[tokio::test]
async fn comparisons_tell_status_and_body_mismatches_from_matches() {
    let other_status = FakeUpstream::builder("primary")
        .otherwise(Reply::status(404))
        .start()
        .await;
    let s = compared_against(other_status).await;
    assert_eq!((s.status_mismatch, s.body_mismatch), (10, 0), "{s:?}");

    // The same status, another body ("other" instead of "primary").
    let other_body = FakeUpstream::start("other").await;
    let s = compared_against(other_body).await;
    assert_eq!((s.status_mismatch, s.body_mismatch), (0, 10), "{s:?}");
    assert_eq!(s.mismatch_rate(), Some(1.0));

    let identical = FakeUpstream::start("primary").await;
    let s = compared_against(identical).await;
    assert_eq!(
        (
            s.status_mismatch,
            s.body_mismatch,
            s.body_not_compared,
            s.shadow_errors
        ),
        (0, 0, 0, 0),
        "{s:?}"
    );
    assert_eq!(s.mismatch_rate(), Some(0.0));
}

#[tokio::test]
async fn a_quarter_weight_mirrors_about_a_quarter_of_requests() {
    let primary = FakeUpstream::start("primary").await;
    let shadow = FakeUpstream::start("shadow").await;
    let gw = TestGateway::start(&config(
        &[primary.addr()],
        &[shadow.addr()],
        "weight = 25",
        "",
    ))
    .await;
    let c = Client::http1();
    let url = format!("{}/x", gw.url("public"));
    for _ in 0..400 {
        assert_eq!(c.get(&url).await.status, 200);
    }
    let sent = stats(&gw, "r").sent;
    assert!((60..=140).contains(&sent), "{sent} of 400 mirrored");
    eventually(SOON, "every copy reaches the shadow", || async {
        shadow.requests() == sent
    })
    .await;
    assert_eq!(primary.requests(), 400);
}

#[tokio::test]
async fn a_reload_keeps_the_counters_of_an_unchanged_mirror() {
    let primary = FakeUpstream::start("primary").await;
    let shadow = FakeUpstream::start("shadow").await;
    let toml = config(&[primary.addr()], &[shadow.addr()], "", "");
    let gw = TestGateway::start(&toml).await;
    let c = Client::http1();
    let url = format!("{}/x", gw.url("public"));
    for _ in 0..3 {
        assert_eq!(c.get(&url).await.status, 200);
    }
    let load = |t: &str| levee_config::load_str(t, levee_config::Format::Toml, "t.toml").unwrap();
    gw.gateway.reload(load(&toml)).await.unwrap();
    assert_eq!(stats(&gw, "r").sent, 3, "unchanged: kept");
    let changed = config(&[primary.addr()], &[shadow.addr()], "max_in_flight = 8", "");
    gw.gateway.reload(load(&changed)).await.unwrap();
    assert_eq!(stats(&gw, "r").sent, 0, "changed: counted afresh");
    assert_eq!(c.get(&url).await.status, 200);
    assert_eq!(stats(&gw, "r").sent, 1);
}

#[tokio::test]
async fn a_client_that_leaves_early_makes_the_comparison_incomplete_not_a_mismatch() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let primary = FakeUpstream::builder("primary")
        .otherwise(Reply::ok().chunks(50, 1000, Duration::from_millis(50)))
        .start()
        .await;
    let shadow = FakeUpstream::start("shadow").await;
    let gw = TestGateway::start(&config(
        &[primary.addr()],
        &[shadow.addr()],
        "timeout = \"20s\"",
        "",
    ))
    .await;
    let mut s = tokio::net::TcpStream::connect(gw.addr("public"))
        .await
        .unwrap();
    s.write_all(b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 512];
    let n = s.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    // Gone after the head, long before the primary's body ends.
    drop(s);
    eventually(SOON, "the comparison is counted incomplete", || async {
        stats(&gw, "r").incomplete == 1
    })
    .await;
    let s = stats(&gw, "r");
    assert_eq!(
        (s.sent, s.compared, s.status_mismatch, s.body_mismatch),
        (1, 0, 0, 0),
        "{s:?}"
    );
    assert_eq!(
        gw.metric("levee_mirror_comparisons_total{route=\"r\",result=\"incomplete\"}"),
        1.0
    );
}
