//! SLOs on paused time: the original end-to-end SLO test (a route whose
//! upstream turns to 500s pages, the webhook carries the runbook, the
//! incident opens and closes, a restart keeps it all) with the upstream in
//! memory and the clock virtual, so its windows of seconds cost no wall
//! time and its timing is asserted exactly: the page fires within the
//! short window of the first failure, and `levee_core::time::unix_nanos`
//! (which the engine's buckets use) moves with the virtual clock. The
//! store's writes run on a blocking thread, which holds the paused clock
//! (tokio does not auto-advance while a `spawn_blocking` task runs), so the
//! restart half runs unchanged. Also the capacity report, whose loop ticks
//! every 5 s.

use crate::{gateway, LISTENER, PREAMBLE};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use levee_testkit::{eventually, Client, ScriptedUpstream, Step, TestGateway};
use serde_json::Value;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const MS: Duration = Duration::from_millis(1);

/// One webhook delivery as received.
#[derive(Debug, Clone)]
pub(crate) struct Delivery {
    pub(crate) path: String,
    pub(crate) content_type: String,
    pub(crate) body: Value,
}

/// A webhook receiver: answers 503 to the first `fail_first` deliveries
/// (to prove retries), then 200, and keeps every accepted body.
pub(crate) struct Receiver {
    pub(crate) addr: SocketAddr,
    accepted: Arc<Mutex<Vec<Delivery>>>,
    attempts: Arc<AtomicUsize>,
}

impl Receiver {
    pub(crate) async fn start(fail_first: usize) -> Self {
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

    pub(crate) fn accepted(&self) -> Vec<Delivery> {
        self.accepted.lock().unwrap().clone()
    }
}

fn config(upstream: SocketAddr, receiver: SocketAddr) -> String {
    format!(
        r#"{PREAMBLE}{LISTENER}
[[routes]]
name = "checkout"
cluster = "shop"
tier = "core"
match = {{ path = {{ prefix = "/" }} }}

[[clusters]]
name = "shop"
endpoints = ["{upstream}"]

[[slos]]
name = "checkout-availability"
description = "Checkout answers without server errors"
sli = "availability"
route = "checkout"
objective = "99%"
period = "1h"
runbook = "https://runbooks.example.com/checkout"
labels = {{ team = "payments" }}
alerting = {{ min_events = 5, page = [{{ long = "4s", short = "2s", factor = 10 }}], ticket = [] }}

[[slos]]
name = "checkout-latency"
sli = "latency"
route = "checkout"
objectives = [{{ threshold = "1s", objective = "90%" }}, {{ threshold = "5s", objective = "99%" }}]
period = "1h"
alerting = {{ page = [] }}

[alerting]
evaluate_every = "1s"
bucket = "1s"
webhooks = [
  {{ name = "am", url = "http://{receiver}/api/v2/alerts", backoff = "50ms", max_attempts = 5 }},
  {{ name = "raw", url = "http://{receiver}/levee", format = "levee" }},
]

[store]
path = "state.db"

[status_page]
title = "Shop <status>"
period = "1h"
"#
    )
}

/// Sends `n` requests to `path`, spread over about `over`.
pub(crate) async fn traffic(gw_url: &str, path: &str, n: usize, over: Duration) {
    let client = Client::http1();
    for _ in 0..n {
        let _ = client.get(&format!("{gw_url}{path}")).await;
        tokio::time::sleep(over / n as u32).await;
    }
}

async fn admin_json(gw: &TestGateway, path: &str) -> Value {
    Client::http1()
        .get(&format!("{}{path}", gw.admin_url()))
        .await
        .json()
}

#[tokio::test(start_paused = true)]
async fn a_failing_upstream_pages_with_the_runbook_opens_an_incident_and_a_restart_keeps_it() {
    let up = ScriptedUpstream::new();
    let shop = up.endpoint("shop");
    up.script_path(shop, "/fail", [Step::status(500)]);
    let receiver = Receiver::start(1).await;
    let gw =
        TestGateway::start_from_file_with_connector(&config(shop, receiver.addr), up.connector())
            .await;
    let url = gw.url("public");

    // Healthy traffic: no alert.
    traffic(&url, "/ok", 40, Duration::from_secs(2)).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let slos = admin_json(&gw, "/api/v1/slos").await;
    let availability = &slos["slos"][0];
    assert_eq!(availability["id"], "checkout-availability");
    assert_eq!(availability["status"], "ok", "{availability:#}");
    assert_eq!(availability["bad_events"], 0);
    assert!(receiver.accepted().is_empty());

    // The upstream starts failing: every request answers 500.
    // Half way through a wall-clock second, so the first failures fall in
    // a bucket of their own: a tick drains the counters 5 ms after each
    // boundary, and failures sent in those 5 ms would count in the bucket
    // before (the same race the real-time original has, once in 200 runs).
    let into_second = levee_core::time::unix_nanos() % 1_000_000_000;
    tokio::time::sleep(Duration::from_nanos(
        (1_500_000_000 - into_second) % 1_000_000_000,
    ))
    .await;
    let failing_from_nanos = levee_core::time::unix_nanos();
    let failing_from_instant = levee_core::time::now();
    let failing_from = levee_slo::calendar::rfc3339(failing_from_nanos);
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
    // Virtual time: the failures began half way through a bucket; the
    // tick 5 ms after its end found 10 bad events of 10 (over `min_events`,
    // both windows burning far beyond 10x) and paged, and the webhook
    // arrived after its one refused delivery (a retry within 50 ms) and
    // this test's 20 ms poll. The original, on real time, allowed 6 s.
    let paged_after = levee_core::time::now() - failing_from_instant;
    assert!(
        (505 * MS..=600 * MS).contains(&paged_after),
        "paged after {paged_after:?}"
    );
    let wall_moved = levee_core::time::unix_nanos() - failing_from_nanos;
    assert!(
        wall_moved.abs_diff(paged_after.as_nanos() as u64) < 100_000_000,
        "unix_nanos follows virtual time: {wall_moved} ns vs {paged_after:?}"
    );
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
    let incidents = admin_json(&gw, "/api/v1/incidents").await;
    let incident = incidents["incidents"][0].clone();
    assert_eq!(incident["slo"], "checkout-availability", "{incidents:#}");
    assert_eq!(incident["severity"], "page");
    assert_eq!(incident["runbook"], "https://runbooks.example.com/checkout");
    let start = incident["start"].as_str().unwrap().to_string();
    let detect = incident["detect"].as_str().unwrap().to_string();
    assert!(start <= detect, "{incident:#}");
    assert_eq!(
        start,
        format!("{}.000Z", &failing_from[..19]),
        "the incident starts with the bucket the failures began in ({failing_from})"
    );
    assert_eq!(
        incident["time_to_detect_seconds"].as_f64(),
        Some(1.0),
        "detected at the end of that bucket: {incident:#}"
    );
    assert!(incident["bad_events"].as_u64().unwrap() > 0);

    // Healthy again: the alert resolves (a second webhook), the incident
    // recovers and resolves.
    let healing = {
        let url = url.clone();
        tokio::spawn(async move { traffic(&url, "/ok", 300, Duration::from_secs(15)).await })
    };
    eventually(Duration::from_secs(15), "the incident is closed", || {
        let gw_admin = gw.admin_url();
        async move {
            let v: Value = Client::http1()
                .get(&format!("{gw_admin}/api/v1/incidents"))
                .await
                .json();
            v["incidents"][0]["state"] == "closed"
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
    let incidents = admin_json(&gw, "/api/v1/incidents").await;
    let incident = incidents["incidents"][0].clone();
    assert!(incident["recover"].is_string(), "{incident:#}");
    assert!(incident["time_to_recover_seconds"].as_f64().unwrap() > 0.0);
    assert_eq!(incidents["mttd"]["count"], 1);
    assert_eq!(incidents["mttr"]["count"], 1);

    // SLO figures, metrics and the status page.
    gw.control.evaluate_slos().await;
    let slos = admin_json(&gw, "/api/v1/slos").await;
    let availability = slos["slos"][0].clone();
    let budget_left = availability["budget"]["remaining_ratio"].as_f64().unwrap();
    assert!(budget_left < 1.0, "{availability:#}");
    assert!(availability["budget"]["remaining_seconds"].is_number());
    let windows: Vec<&str> = availability["windows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["window"].as_str().unwrap())
        .collect();
    assert_eq!(windows, ["2s", "4s"]);
    assert_eq!(availability["alerts"][0]["severity"], "page");
    let latency: Vec<&str> = slos["slos"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["sli"] == "latency")
        .map(|s| s["id"].as_str().unwrap())
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
    let status = admin_json(&gw, "/api/v1/status").await;
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
    let before_events = availability["events"].as_u64().unwrap();
    let before_bad = availability["bad_events"].as_u64().unwrap();
    let gw = gw.restart().await;
    gw.control.evaluate_slos().await;
    let after = admin_json(&gw, "/api/v1/slos").await["slos"][0].clone();
    assert_eq!(
        after["events"].as_u64().unwrap(),
        before_events,
        "{after:#}"
    );
    assert_eq!(after["bad_events"].as_u64().unwrap(), before_bad);
    assert_eq!(
        after["alerts"][0]["state"],
        availability["alerts"][0]["state"]
    );
    let after_incidents = admin_json(&gw, "/api/v1/incidents").await;
    assert_eq!(after_incidents["incidents"][0]["id"], incident["id"]);
    assert_eq!(after_incidents["incidents"][0]["start"], incident["start"]);
    assert_eq!(
        after_incidents["incidents"][0]["detect"],
        incident["detect"]
    );
    assert_eq!(
        after_incidents["incidents"][0]["resolve"],
        incident["resolve"]
    );
    assert_eq!(after_incidents["mttr"]["count"], 1);
}

/// Capacity: a cluster at its request limit is `critical`, its endpoint at
/// its share too, and a route-wide rate limit driven near its rate warns;
/// all in the API and the metrics.
#[tokio::test(start_paused = true)]
async fn capacity_shows_limits_in_use_with_warning_levels() {
    let up = ScriptedUpstream::new();
    let slow = up.endpoint("slow");
    let fast = up.endpoint("fast");
    up.script(slow, [Step::ok().after(Duration::from_secs(8))]);
    let gw = gateway(
        &up,
        &format!(
            r#"{PREAMBLE}{LISTENER}
[[routes]]
name = "slow"
cluster = "shop"
match = {{ path = {{ prefix = "/slow" }} }}

[[routes]]
name = "metered"
cluster = "fast"
match = {{ path = {{ prefix = "/metered" }} }}
[[routes.rate_limits]]
name = "all"
rate = 10
per = "1s"
burst = 10

[[clusters]]
name = "shop"
endpoints = ["{}"]
limits = {{ max_requests = 4 }}

[[clusters]]
name = "fast"
endpoints = ["{}"]

[capacity]
warn_at = "50%"
critical_at = "90%"
"#,
            slow, fast
        ),
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
            let admin = gw.admin_url();
            async move {
                let v: Value = Client::http1()
                    .get(&format!("{admin}/api/v1/capacity"))
                    .await
                    .json();
                let shop = &v["clusters"][1];
                let limit = &v["rate_limits"][0];
                shop["status"] == "critical"
                    && shop["endpoints"][0]["status"] == "critical"
                    && limit["status"] == "warning"
            }
        },
    )
    .await;
    let v = admin_json(&gw, "/api/v1/capacity").await;
    let shop = &v["clusters"][1];
    assert_eq!(shop["name"], "shop");
    let requests = shop["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["resource"] == "requests")
        .unwrap();
    assert_eq!(requests["used"], 4.0, "{v:#}");
    assert_eq!(requests["limit"], 4.0);
    assert_eq!(shop["endpoints"][0]["limit"], 4.0);
    assert_eq!(v["clusters"][0]["status"], "unlimited", "{v:#}");
    let rate = v["rate_limits"][0]["utilisation"].as_f64().unwrap();
    assert!((0.5..0.9).contains(&rate), "{v:#}");
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
