//! The incident workflow end to end on paused time: a route whose upstream
//! turns to 500s pages within seconds (1 s buckets, a 4 s / 2 s page
//! rule), and the admin API's actions on the incident it opens
//! (acknowledge, note, resolve, each refusal with its status and error
//! JSON, the token, a restart keeping them all); then alert routing and
//! escalation through real webhook receivers: the page reaches the
//! on-call webhook, reaches its escalation target `escalate_after` later
//! when no one acknowledges it and not at all when someone does, and the
//! resolution reaches every webhook that was paged.

use crate::slo::{traffic, Receiver};
use crate::LISTENER;
use bytes::Bytes;
use http_body_util::Full;
use levee_testkit::{eventually, Client, ClientReply, ScriptedUpstream, Step, TestGateway};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::time::Duration;

const TOKEN: &str = "incident-test-token-0123456789abcdef";

/// The checkout route and its availability SLO (labels `team =
/// payments`), with `webhooks` TOML under `[alerting]`.
fn config(upstream: SocketAddr, webhooks: &str) -> String {
    format!(
        r#"[admin]
listen = "127.0.0.1:0"
token = "{TOKEN}"
[runtime]
access_log = false
watch_config = false
{LISTENER}
[[routes]]
name = "checkout"
cluster = "shop"
match = {{ path = {{ prefix = "/" }} }}

[[clusters]]
name = "shop"
endpoints = ["{upstream}"]

[[slos]]
name = "checkout-availability"
sli = "availability"
route = "checkout"
objective = "99%"
period = "1h"
runbook = "https://runbooks.example.com/checkout"
labels = {{ team = "payments" }}
alerting = {{ min_events = 5, page = [{{ long = "4s", short = "2s", factor = 10 }}], ticket = [] }}

[alerting]
evaluate_every = "1s"
bucket = "1s"
{webhooks}

[store]
path = "state.db"
"#
    )
}

/// A request to the admin API with the token (or without, for `None`).
async fn admin(
    gw: &TestGateway,
    method: &str,
    path: &str,
    body: &str,
    token: Option<&str>,
) -> ClientReply {
    let mut req = http::Request::builder()
        .method(method)
        .uri(format!("{}{path}", gw.admin_url()))
        .header("content-type", "application/json");
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let req = req.body(Full::new(Bytes::from(body.to_string()))).unwrap();
    Client::http1()
        .send(req)
        .await
        .expect("the admin API answers")
}

async fn get(gw: &TestGateway, path: &str) -> Value {
    let reply = admin(gw, "GET", path, "", Some(TOKEN)).await;
    assert_eq!(reply.status, 200, "GET {path}: {}", reply.body);
    reply.json()
}

/// POSTs `body` to `path`; the status and the answer's JSON.
async fn post(gw: &TestGateway, path: &str, body: Value) -> (u16, Value) {
    let reply = admin(gw, "POST", path, &body.to_string(), Some(TOKEN)).await;
    let value = serde_json::from_str(&reply.body).unwrap_or(Value::Null);
    (reply.status.as_u16(), value)
}

/// Starts failing traffic and waits until incident `id` is open.
async fn page(gw: &TestGateway, id: u64) -> tokio::task::JoinHandle<()> {
    let url = gw.url("public");
    let failing =
        tokio::spawn(async move { traffic(&url, "/fail", 400, Duration::from_secs(20)).await });
    eventually(
        Duration::from_secs(10),
        "the incident opens",
        || async move {
            let v = get(gw, "/api/v1/incidents").await;
            v["incidents"][0]["id"] == id
        },
    )
    .await;
    failing
}

/// Heals the upstream's traffic until incident `id`'s alert resolves.
async fn heal(gw: &TestGateway, id: u64) {
    let url = gw.url("public");
    let healing =
        tokio::spawn(async move { traffic(&url, "/ok", 400, Duration::from_secs(20)).await });
    eventually(
        Duration::from_secs(20),
        "the alert resolves",
        || async move {
            let v = get(gw, &format!("/api/v1/incidents/{id}")).await;
            v["resolve"].is_string()
        },
    )
    .await;
    healing.abort();
}

#[tokio::test(start_paused = true)]
async fn operators_ack_note_and_resolve_through_the_admin_api_and_a_restart_keeps_it() {
    let up = ScriptedUpstream::new();
    let shop = up.endpoint("shop");
    up.script_path(shop, "/fail", [Step::status(500)]);
    let gw = TestGateway::start_from_file_with_connector(&config(shop, ""), up.connector()).await;

    // Before any incident.
    let reply = admin(&gw, "GET", "/api/v1/incidents/1", "", Some(TOKEN)).await;
    assert_eq!(reply.status, 404, "{}", reply.body);
    assert_eq!(reply.json()["error"], "not_found");
    let reply = admin(&gw, "GET", "/api/v1/incidents/one", "", Some(TOKEN)).await;
    assert_eq!(reply.status, 400);
    assert_eq!(reply.json()["error"], "invalid_request");
    assert!(reply.json()["message"]
        .as_str()
        .unwrap()
        .contains("`one` is not an incident id"));
    let (status, _) = post(&gw, "/api/v1/incidents/1/ack", json!({"by": "alice"})).await;
    assert_eq!(status, 404);
    let list = get(&gw, "/api/v1/incidents").await;
    assert_eq!(list["incidents"], json!([]));
    assert!(list["mtta"].is_null());

    let failing = page(&gw, 1).await;
    let opened = get(&gw, "/api/v1/incidents/1").await;
    assert_eq!(opened["workflow"], "triggered", "{opened:#}");
    assert_eq!(opened["runbook"], "https://runbooks.example.com/checkout");
    assert_eq!(opened["alerts"][0]["severity"], "page");
    assert_eq!(opened["alerts"][0]["fired"], opened["detect"]);
    assert_eq!(opened["slo_alerts"][0]["state"], "firing");
    assert_eq!(opened["deploys"], json!([]));

    // The token guards actions like every internal endpoint.
    let reply = admin(
        &gw,
        "POST",
        "/api/v1/incidents/1/ack",
        r#"{"by":"eve"}"#,
        None,
    )
    .await;
    assert_eq!(reply.status, 401);
    let reply = admin(
        &gw,
        "POST",
        "/api/v1/incidents/1/ack",
        r#"{"by":"eve"}"#,
        Some("wrong-token-wrong-token-wrong-token"),
    )
    .await;
    assert_eq!(reply.status, 401);

    // Malformed requests: 400 with the API's error shape and a reason.
    for (path, body, why) in [
        ("/api/v1/incidents/1/ack", json!({}), "`by` is required"),
        (
            "/api/v1/incidents/1/ack",
            json!({"by": "  "}),
            "`by` is empty",
        ),
        (
            "/api/v1/incidents/1/ack",
            json!({"by": "a", "message": "m"}),
            "takes no message",
        ),
        (
            "/api/v1/incidents/1/ack",
            json!({"by": "a", "who": "b"}),
            "unknown field `who`",
        ),
        (
            "/api/v1/incidents/1/note",
            json!({"by": "a"}),
            "`message` is required",
        ),
        (
            "/api/v1/incidents/1/note",
            json!({"by": "a", "message": "x".repeat(4001)}),
            "longer than 4000",
        ),
        (
            "/api/v1/incidents/x/note",
            json!({"by": "a", "message": "m"}),
            "not an incident id",
        ),
    ] {
        let (status, v) = post(&gw, path, body.clone()).await;
        assert_eq!(
            (status, v["error"].as_str()),
            (400, Some("invalid_request")),
            "{path} {body}: {v}"
        );
        assert!(
            v["message"].as_str().unwrap().contains(why),
            "{path} {body}: {v}"
        );
    }
    let reply = admin(
        &gw,
        "POST",
        "/api/v1/incidents/1/ack",
        "not json",
        Some(TOKEN),
    )
    .await;
    assert_eq!(reply.status, 400);
    let (status, v) = post(&gw, "/api/v1/incidents/1/snooze", json!({"by": "a"})).await;
    assert_eq!((status, v["error"].as_str()), (404, Some("not_found")));

    // Acknowledge, once.
    let detect = opened["detect"].as_str().unwrap().to_string();
    let (status, acked) = post(&gw, "/api/v1/incidents/1/ack", json!({"by": "alice"})).await;
    assert_eq!(status, 200, "{acked}");
    assert_eq!(acked["workflow"], "acknowledged");
    assert_eq!(acked["acknowledged"]["by"], "alice");
    assert!(acked["acknowledged"]["at"].as_str().unwrap() >= detect.as_str());
    assert!(acked["time_to_acknowledge_seconds"].as_f64().unwrap() >= 0.0);
    let (status, v) = post(&gw, "/api/v1/incidents/1/ack", json!({"by": "bob"})).await;
    assert_eq!(
        (status, v["error"].as_str()),
        (409, Some("conflict")),
        "{v}"
    );
    assert!(v["message"]
        .as_str()
        .unwrap()
        .starts_with("incident 1 was acknowledged by alice at "));

    // Notes, then resolution while the alert still fires.
    let (status, noted) = post(
        &gw,
        "/api/v1/incidents/1/note",
        json!({"by": "bob", "message": "upstream shop answers 500; rolling back"}),
    )
    .await;
    assert_eq!(status, 200, "{noted}");
    assert_eq!(noted["notes"][0]["by"], "bob");
    let (status, resolved) = post(
        &gw,
        "/api/v1/incidents/1/resolve",
        json!({"by": "alice", "message": "rolled back"}),
    )
    .await;
    assert_eq!(status, 200, "{resolved}");
    assert_eq!(resolved["workflow"], "resolved");
    assert_eq!(resolved["resolved_by"]["message"], "rolled back");
    assert!(
        resolved["resolve"].is_null(),
        "the alert still fires: {resolved:#}"
    );
    assert_eq!(resolved["slo_alerts"][0]["state"], "firing");
    let (status, v) = post(&gw, "/api/v1/incidents/1/resolve", json!({"by": "bob"})).await;
    assert_eq!(status, 409, "{v}");
    assert!(v["message"].as_str().unwrap().contains("resolved by alice"));
    let events: Vec<&str> = resolved["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        events,
        ["start", "detect", "acknowledge", "note", "resolve"]
    );

    // The list keeps its fields and gains the new ones.
    let list = get(&gw, "/api/v1/incidents").await;
    let listed = &list["incidents"][0];
    for field in [
        "id",
        "slo",
        "severity",
        "state",
        "start",
        "start_clipped",
        "detect",
        "recover",
        "resolve",
        "time_to_detect_seconds",
        "time_to_recover_seconds",
        "bad_events",
        "budget_spent_ratio",
        "runbook",
        "labels",
        "deploys",
        "workflow",
        "acknowledged",
        "resolved_by",
        "notes",
        "time_to_acknowledge_seconds",
    ] {
        assert!(listed.get(field).is_some(), "`{field}` missing: {listed:#}");
    }
    assert_eq!(list["mtta"]["count"], 1, "{list:#}");
    assert!(list["mttd"]["mean_seconds"].is_number());

    // Still failing: the same firing opens no new incident; notes go on.
    traffic(&gw.url("public"), "/fail", 20, Duration::from_secs(2)).await;
    assert_eq!(
        get(&gw, "/api/v1/incidents").await["incidents"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    failing.abort();

    // A restart keeps every action.
    let gw = gw.restart().await;
    let after = get(&gw, "/api/v1/incidents/1").await;
    assert_eq!(after["acknowledged"], resolved["acknowledged"]);
    assert_eq!(after["notes"], resolved["notes"]);
    assert_eq!(after["resolved_by"], resolved["resolved_by"]);
    assert_eq!(after["workflow"], "resolved");
    let (status, _) = post(
        &gw,
        "/api/v1/incidents/1/note",
        json!({"by": "carol", "message": "postmortem: PM-12"}),
    )
    .await;
    assert_eq!(status, 200);

    // Its alert resolves onto it; the next firing opens incident 2.
    heal(&gw, 1).await;
    let failing = page(&gw, 2).await;
    failing.abort();
    let second = get(&gw, "/api/v1/incidents/2").await;
    assert_eq!(second["workflow"], "triggered");
}

/// Deliveries of `status` (`firing`, `resolved`) for `incident` on `path`.
fn deliveries(receiver: &Receiver, path: &str, status: &str, incident: u64) -> Vec<Value> {
    receiver
        .accepted()
        .into_iter()
        .filter(|d| d.path == path && d.body["status"] == status && d.body["incident"] == incident)
        .map(|d| d.body)
        .collect()
}

#[tokio::test(start_paused = true)]
async fn an_unacknowledged_page_escalates_and_everyone_paged_hears_it_resolved() {
    let up = ScriptedUpstream::new();
    let shop = up.endpoint("shop");
    up.script_path(shop, "/fail", [Step::status(500)]);
    let receiver = Receiver::start(0).await;
    let r = receiver.addr;
    let webhooks = format!(
        r#"
[[alerting.webhooks]]
name = "payments-oncall"
url = "http://{r}/oncall"
format = "levee"
severities = ["page"]
match = {{ team = "payments" }}
escalate_after = "3s"
escalate_to = "payments-secondary"

[[alerting.webhooks]]
name = "payments-secondary"
url = "http://{r}/secondary"
format = "levee"
escalation_only = true

[[alerting.webhooks]]
name = "search-oncall"
url = "http://{r}/search"
format = "levee"
match_re = {{ team = "search|discovery" }}
"#
    );
    let gw =
        TestGateway::start_from_file_with_connector(&config(shop, &webhooks), up.connector()).await;

    // Incident 1: no one acknowledges it.
    let failing = page(&gw, 1).await;
    eventually(
        Duration::from_secs(5),
        "the on-call webhook is paged",
        || {
            let got = deliveries(&receiver, "/oncall", "firing", 1);
            async move { !got.is_empty() }
        },
    )
    .await;
    let paged_at = levee_core::time::now();
    assert!(deliveries(&receiver, "/secondary", "firing", 1).is_empty());
    eventually(Duration::from_secs(10), "the page escalates", || {
        let got = deliveries(&receiver, "/secondary", "firing", 1);
        async move { !got.is_empty() }
    })
    .await;
    // Virtual time: 3 s after the page, give or take this test's 20 ms
    // polls.
    let escalated_after = levee_core::time::now() - paged_at;
    assert!(
        (Duration::from_millis(2_950)..=Duration::from_millis(3_050)).contains(&escalated_after),
        "escalated after {escalated_after:?}"
    );
    let escalated = &deliveries(&receiver, "/secondary", "firing", 1)[0];
    assert_eq!(escalated["escalated_from"], "payments-oncall");
    assert_eq!(
        escalated["runbook_url"],
        "https://runbooks.example.com/checkout"
    );
    assert_eq!(
        deliveries(&receiver, "/oncall", "firing", 1)[0]["escalated_from"],
        Value::Null
    );
    assert!(
        receiver.accepted().iter().all(|d| d.path != "/search"),
        "another team's webhook hears nothing"
    );
    failing.abort();
    heal(&gw, 1).await;
    eventually(
        Duration::from_secs(5),
        "both paged webhooks hear it resolved",
        || {
            let (oncall, secondary) = (
                deliveries(&receiver, "/oncall", "resolved", 1),
                deliveries(&receiver, "/secondary", "resolved", 1),
            );
            async move { oncall.len() == 1 && secondary.len() == 1 }
        },
    )
    .await;
    let resolved = &deliveries(&receiver, "/secondary", "resolved", 1)[0];
    assert_eq!(
        resolved["runbook_url"],
        "https://runbooks.example.com/checkout"
    );

    // Incident 2: acknowledged at once, so it never escalates.
    let failing = page(&gw, 2).await;
    eventually(
        Duration::from_secs(5),
        "the on-call webhook is paged again",
        || {
            let got = deliveries(&receiver, "/oncall", "firing", 2);
            async move { !got.is_empty() }
        },
    )
    .await;
    let (status, v) = post(&gw, "/api/v1/incidents/2/ack", json!({"by": "alice"})).await;
    assert_eq!(status, 200, "{v}");
    // Twice the escalation's wait, still failing.
    failing.abort();
    traffic(&gw.url("public"), "/fail", 60, Duration::from_secs(6)).await;
    assert_eq!(
        get(&gw, "/api/v1/incidents/2").await["slo_alerts"][0]["state"],
        "firing"
    );
    assert!(
        deliveries(&receiver, "/secondary", "firing", 2).is_empty(),
        "an acknowledged page does not escalate"
    );
    heal(&gw, 2).await;
    eventually(
        Duration::from_secs(5),
        "the on-call webhook hears it resolved",
        || {
            let got = deliveries(&receiver, "/oncall", "resolved", 2);
            async move { got.len() == 1 }
        },
    )
    .await;
    assert!(
        deliveries(&receiver, "/secondary", "resolved", 2).is_empty(),
        "only webhooks that were paged hear the resolution"
    );
}
