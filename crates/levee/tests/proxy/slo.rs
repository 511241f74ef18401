//! SLOs end to end: a route whose upstream starts failing burns its error
//! budget, the page alert fires a webhook (Alertmanager's format, with the
//! runbook) received by a real HTTP server here, the incident appears in
//! the admin API with its times, and a restart keeps events, alert states
//! and incidents. Buckets and windows are seconds long so the test runs in
//! seconds; the math is the same as with the workbook's hours.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use levee_testkit::{
    eventually, Client, Cluster, FakeUpstream, GatewayConfig, RateLimit, Reply, Route, Slo,
    TestGateway,
};
use serde_json::Value;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One webhook delivery as received.
#[derive(Debug, Clone)]
struct Delivery {
    path: String,
    content_type: String,
    body: Value,
}

/// A webhook receiver: answers 503 to the first `fail_first` deliveries
/// (to prove retries), then 200, and keeps every accepted body.
struct Receiver {
    addr: SocketAddr,
    accepted: Arc<Mutex<Vec<Delivery>>>,
    attempts: Arc<AtomicUsize>,
}

impl Receiver {
    async fn start(fail_first: usize) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted: Arc<Mutex<Vec<Delivery>>> = Arc::default();
        let attempts = Arc::new(AtomicUsize::new(0));
        let (acc, att) = (accepted.clone(), attempts.clone());
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (acc, att) = (acc.clone(), att.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let (acc, att) = (acc.clone(), att.clone());
                        async move {
                            let path = req.uri().path().to_string();
                            let content_type = req
                                .headers()
                                .get("content-type")
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or("")
                                .to_string();
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            let n = att.fetch_add(1, Ordering::SeqCst);
                            let status = if n < fail_first {
                                503
                            } else {
                                let body =
                                    serde_json::from_slice(&body).expect("webhook body is JSON");
                                acc.lock().unwrap().push(Delivery {
                                    path,
                                    content_type,
                                    body,
                                });
                                200
                            };
                            Ok::<_, std::convert::Infallible>(
                                hyper::Response::builder()
                                    .status(status)
                                    .body(Full::new(Bytes::new()))
                                    .unwrap(),
                            )
                        }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Self {
            addr,
            accepted,
            attempts,
        }
    }

    fn accepted(&self) -> Vec<Delivery> {
        self.accepted.lock().unwrap().clone()
    }
}

fn config(upstream: SocketAddr, receiver: SocketAddr) -> String {
    GatewayConfig::new()
        .route(Route::new("checkout", "shop").tier("core").prefix("/"))
        .cluster(Cluster::new("shop").endpoint(upstream))
        .slo(
            Slo::availability("checkout-availability", "checkout", "99%")
                .description("Checkout answers without server errors")
                .period("1h")
                .runbook("https://runbooks.example.com/checkout")
                .labels(&[("team", "payments")])
                .alerting(
                    "min_events = 5, page = [{ long = \"4s\", short = \"2s\", factor = 10 }], ticket = []",
                ),
        )
        .slo(
            Slo::new("checkout-latency", "latency", "checkout")
                .raw("objectives = [{ threshold = \"1s\", objective = \"90%\" }, { threshold = \"5s\", objective = \"99%\" }]")
                .period("1h")
                .alerting("page = []"),
        )
        .table(
            "alerting",
            &format!(
                r#"evaluate_every = "1s"
bucket = "1s"
webhooks = [
  {{ name = "am", url = "http://{receiver}/api/v2/alerts", backoff = "50ms", max_attempts = 5 }},
  {{ name = "raw", url = "http://{receiver}/levee", format = "levee" }},
]"#
            ),
        )
        .store("state.db")
        .table("status_page", "title = \"Shop <status>\"\nperiod = \"1h\"")
        .toml()
}

/// Sends `n` requests to `path`, spread over about `over`.
async fn traffic(gw_url: &str, path: &str, n: usize, over: Duration) {
    let client = Client::http1();
    for _ in 0..n {
        let _ = client.get(&format!("{gw_url}{path}")).await;
        tokio::time::sleep(over / n as u32).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_upstream_pages_with_the_runbook_opens_an_incident_and_a_restart_keeps_it() {
    let upstream = FakeUpstream::builder("shop")
        .route("/fail", Reply::status(500))
        .otherwise(Reply::ok())
        .start()
        .await;
    let receiver = Receiver::start(1).await;
    let gw = TestGateway::start_from_file(&config(upstream.addr(), receiver.addr)).await;
    let url = gw.url("public");

    // Healthy traffic: no alert.
    traffic(&url, "/ok", 40, Duration::from_secs(2)).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let slos = gw.admin_api().slos().await;
    let availability = &slos.slos[0];
    assert_eq!(availability.id, "checkout-availability");
    assert_eq!(availability.status, "ok", "{availability:#?}");
    assert_eq!(availability.bad_events, 0);
    assert!(receiver.accepted().is_empty());

    // The upstream starts failing: every request answers 500.
    let failing_from = levee_slo::calendar::rfc3339(unix_nanos());
    let failing = {
        let url = url.clone();
        tokio::spawn(async move { traffic(&url, "/fail", 200, Duration::from_secs(10)).await })
    };
    eventually(Duration::from_secs(15), "the page webhook arrives", || {
        let got = receiver.accepted();
        async move { got.iter().any(|d| d.path == "/api/v2/alerts") }
    })
    .await;
    failing.abort();
    let page = receiver
        .accepted()
        .into_iter()
        .find(|d| d.path == "/api/v2/alerts")
        .unwrap();
    assert_eq!(page.content_type, "application/json");
    let alert = &page.body[0];
    assert_eq!(
        alert["labels"]["alertname"], "LeveeSLOPageBurn",
        "as `levee slo rules` names it"
    );
    assert_eq!(alert["labels"]["slo"], "checkout-availability");
    assert_eq!(alert["labels"]["severity"], "page");
    assert_eq!(alert["labels"]["team"], "payments");
    assert_eq!(
        alert["annotations"]["runbook_url"],
        "https://runbooks.example.com/checkout"
    );
    assert!(alert["startsAt"].as_str().unwrap().ends_with('Z'));
    assert!(
        alert["endsAt"].as_str().unwrap() > alert["startsAt"].as_str().unwrap(),
        "a firing alert is valid for a while: {alert:#}"
    );
    assert!(
        receiver.attempts.load(Ordering::SeqCst) > receiver.accepted().len(),
        "the first delivery was refused and retried"
    );
    // Levee's own payload went to the other webhook.
    eventually(Duration::from_secs(5), "the levee-format webhook", || {
        let got = receiver.accepted();
        async move { got.iter().any(|d| d.path == "/levee") }
    })
    .await;
    let own = receiver
        .accepted()
        .into_iter()
        .find(|d| d.path == "/levee")
        .unwrap();
    assert_eq!(own.body["status"], "firing");
    assert_eq!(
        own.body["runbook_url"],
        "https://runbooks.example.com/checkout"
    );
    assert!(
        own.body["slo_status"]["budget"]["remaining_ratio"]
            .as_f64()
            .unwrap()
            < 1.0
    );

    // The incident is in the API, opened by the page, starting when the
    // failures did (to the bucket) and detected after.
    let incidents = gw.admin_api().incidents().await;
    let incident = incidents.incidents[0].clone();
    assert_eq!(incident.slo, "checkout-availability", "{incidents:#?}");
    assert_eq!(incident.severity, "page");
    assert_eq!(
        incident.runbook.as_deref(),
        Some("https://runbooks.example.com/checkout")
    );
    let start = incident.start.clone();
    let detect = incident.detect.clone();
    assert!(start <= detect, "{incident:#?}");
    assert!(
        start.as_str() >= &failing_from[..19],
        "start {start} is not before the failures began at {failing_from}"
    );
    assert!(incident.time_to_detect_seconds <= 6.0, "{incident:#?}");
    assert!(incident.bad_events > 0);

    // Healthy again: the alert resolves (a second webhook), the incident
    // recovers and resolves.
    let healing = {
        let url = url.clone();
        tokio::spawn(async move { traffic(&url, "/ok", 300, Duration::from_secs(15)).await })
    };
    eventually(Duration::from_secs(15), "the incident is closed", || {
        let admin = gw.admin_api();
        async move {
            let v = admin.incidents().await;
            v.incidents.first().is_some_and(|i| i.state == "closed")
        }
    })
    .await;
    healing.abort();
    eventually(Duration::from_secs(10), "the resolved webhook", || {
        let got = receiver.accepted();
        async move {
            got.iter()
                .any(|d| d.path == "/levee" && d.body["status"] == "resolved")
        }
    })
    .await;
    let incidents = gw.admin_api().incidents().await;
    let incident = incidents.incidents[0].clone();
    assert!(incident.recover.is_some(), "{incident:#?}");
    assert!(incident.time_to_recover_seconds.unwrap() > 0.0);
    assert_eq!(incidents.mttd.map(|m| m.count), Some(1));
    assert_eq!(incidents.mttr.map(|m| m.count), Some(1));

    // SLO figures, metrics and the status page.
    gw.control.evaluate_slos().await;
    let slos = gw.admin_api().slos().await;
    let availability = slos.slos[0].clone();
    let budget_left = availability.budget.remaining_ratio.unwrap();
    assert!(budget_left < 1.0, "{availability:#?}");
    assert!(availability.budget.remaining_seconds.is_some());
    let windows: Vec<&str> = availability
        .windows
        .iter()
        .map(|w| w.window.as_str())
        .collect();
    assert_eq!(windows, ["2s", "4s"]);
    assert_eq!(availability.alerts[0].severity, "page");
    let latency: Vec<&str> = slos
        .slos
        .iter()
        .filter(|s| s.sli == "latency")
        .map(|s| s.id.as_str())
        .collect();
    assert_eq!(latency, ["checkout-latency:1s", "checkout-latency:5s"]);
    let metrics = Client::http1()
        .get(&format!("{}/metrics", gw.admin_url()))
        .await
        .body;
    assert!(metrics.contains("levee_slo_events_total{slo=\"checkout-availability\"}"));
    assert!(
        metrics.contains("levee_slo_error_budget_remaining_ratio{slo=\"checkout-availability\"}")
    );
    assert!(metrics.contains("levee_slo_burn_rate{slo=\"checkout-availability\",window=\"2s\"}"));
    assert!(metrics
        .contains("levee_slo_alert_firing{slo=\"checkout-availability\",severity=\"page\"} 0"));
    assert!(metrics.contains("levee_slo_incidents_total{slo=\"checkout-availability\"} 1"));
    assert!(metrics.contains("levee_tier_uptime_ratio{tier=\"core\"}"));
    let status: Value = gw.admin_api().json("/api/v1/status").await;
    let core = status["tiers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["tier"] == "core")
        .unwrap()
        .clone();
    // Seconds of traffic are too little for an uptime on the public page
    // (the metric has it all the same).
    assert_eq!(core["no_data"], true, "{status:#}");
    assert!(core["uptime"].is_null(), "{status:#}");
    assert!(gw.metric("levee_tier_uptime_ratio{tier=\"core\"}") < 1.0);
    assert_eq!(
        status["incidents"][0]["service"], "checkout",
        "named by its route, not by the SLO's id"
    );
    assert!(
        status["incidents"][0].get("runbook").is_none(),
        "no internals on the status page"
    );
    let html = Client::http1()
        .get(&format!("{}/status", gw.admin_url()))
        .await;
    assert!(html
        .header("content-type")
        .unwrap()
        .starts_with("text/html"));
    let html = html.body;
    assert!(html.contains("Shop &lt;status&gt;"), "the title is escaped");
    assert!(html.contains("Recent incidents"));

    // Restart: events, budget, alert states and the incident survive.
    let before_events = availability.events;
    let before_bad = availability.bad_events;
    let gw = gw.restart().await;
    gw.control.evaluate_slos().await;
    let after = gw.admin_api().slos().await.slos[0].clone();
    assert_eq!(after.events, before_events, "{after:#?}");
    assert_eq!(after.bad_events, before_bad);
    assert_eq!(after.alerts[0].state, availability.alerts[0].state);
    let after_incidents = gw.admin_api().incidents().await;
    let after_incident = &after_incidents.incidents[0];
    assert_eq!(after_incident.id, incident.id);
    assert_eq!(after_incident.start, incident.start);
    assert_eq!(after_incident.detect, incident.detect);
    assert_eq!(after_incident.resolve, incident.resolve);
    assert_eq!(after_incidents.mttr.map(|m| m.count), Some(1));
}

fn unix_nanos() -> u64 {
    levee_core::time::unix_nanos()
}

/// Capacity: a cluster at its request limit is `critical`, its endpoint at
/// its share too, and a route-wide rate limit driven near its rate warns;
/// all in the API and the metrics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capacity_shows_limits_in_use_with_warning_levels() {
    let slow = FakeUpstream::builder("slow")
        .otherwise(Reply::ok().latency(Duration::from_secs(8)))
        .start()
        .await;
    let fast = FakeUpstream::start("fast").await;
    let gw = TestGateway::start(
        &GatewayConfig::new()
            .route(Route::new("slow", "shop").prefix("/slow"))
            .route(
                Route::new("metered", "fast")
                    .prefix("/metered")
                    .rate_limit(RateLimit::new("all", 10).per("1s").burst(10)),
            )
            .cluster(
                Cluster::new("shop")
                    .endpoint(&slow)
                    .limits("max_requests = 4"),
            )
            .cluster(Cluster::new("fast").endpoint(&fast))
            .table("capacity", "warn_at = \"50%\"\ncritical_at = \"90%\"")
            .toml(),
    )
    .await;
    let url = gw.url("public");
    // Four slow requests hold the cluster's four places.
    let mut held = Vec::new();
    for _ in 0..4 {
        let url = url.clone();
        held.push(tokio::spawn(async move {
            Client::http1().get(&format!("{url}/slow")).await
        }));
    }
    // About 7 requests a second against a limit of 10 a second.
    let metered = {
        let url = url.clone();
        tokio::spawn(async move { traffic(&url, "/metered", 100, Duration::from_secs(14)).await })
    };
    eventually(
        Duration::from_secs(15),
        "capacity shows the cluster full",
        || {
            let admin = gw.admin_api();
            async move {
                let v = admin.capacity().await;
                let shop = &v.clusters[1];
                let limit = &v.rate_limits[0];
                shop.status == "critical"
                    && shop.endpoints[0].status == "critical"
                    && limit.status == "warning"
            }
        },
    )
    .await;
    let v = gw.admin_api().capacity().await;
    let shop = &v.clusters[1];
    assert_eq!(shop.name, "shop");
    let requests = shop.resource("requests");
    assert_eq!(requests.used, 4.0, "{v:#?}");
    assert_eq!(requests.limit, 4.0);
    assert_eq!(shop.endpoints[0].limit, Some(4.0));
    assert_eq!(v.clusters[0].status, "unlimited", "{v:#?}");
    let rate = v.rate_limits[0].utilisation;
    assert!((0.5..0.9).contains(&rate), "{v:#?}");
    assert!(
        gw.metric(
            "levee_capacity_utilisation_ratio{cluster=\"shop\",endpoint=\"\",resource=\"requests\"}"
        ) >= 1.0
    );
    assert!(gw.metric("levee_rate_limit_utilisation_ratio{route=\"metered\",limit=\"all\"}") > 0.5);
    metered.abort();
    for h in held {
        h.abort();
    }
}
