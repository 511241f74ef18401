//! The route history on paused time, end to end: a route's upstream
//! answers in 1 ms for two 10-second steps, then in 40 ms (two of them
//! failing) for two more; the history loop samples after each step on its
//! own, `Control::sample_history_now` takes the step in progress, and
//! `GET /api/v1/history/routes/{route}` shows the fast requests in the
//! heatmap row holding 1 ms, the slow ones in the row holding 40 ms in
//! the later columns, and p99 moving with them. A split route shows each
//! version's columns. A reload in between changes nothing in the counts.
//! After a restart on the same store file the columns are still there,
//! before the new process has sampled anything. Virtual
//! time makes the steps exact: every request falls in the step it was
//! sent in, and latencies are the scripted delays to the microsecond.

use crate::{LISTENER, PREAMBLE};
use levee_testkit::{Client, ScriptedUpstream, Step, TestGateway};
use serde_json::Value;
use std::net::SocketAddr;
use std::time::Duration;

const STEP: Duration = Duration::from_secs(10);

fn config(shop: SocketAddr, v1: SocketAddr, v2: SocketAddr) -> String {
    format!(
        r#"{PREAMBLE}{LISTENER}
[[routes]]
name = "api"
cluster = "v1"
match = {{ path = {{ prefix = "/api" }} }}
split = {{ cluster = "v2", weight = 20 }}

[[routes]]
name = "checkout"
cluster = "shop"
match = {{ path = {{ prefix = "/" }} }}

[[clusters]]
name = "shop"
endpoints = ["{shop}"]

[[clusters]]
name = "v1"
endpoints = ["{v1}"]

[[clusters]]
name = "v2"
endpoints = ["{v2}"]

[store]
path = "state.db"
"#
    )
}

async fn admin(gw: &TestGateway, path: &str) -> (u16, Value) {
    let reply = Client::http1()
        .get(&format!("{}{path}", gw.admin_url()))
        .await;
    (reply.status.as_u16(), reply.json())
}

/// Sleeps until `offset` into the next 10-second step of the wall clock
/// (which follows virtual time), and returns that step's start.
async fn into_next_step(offset: Duration) -> u64 {
    let now = levee_core::time::unix_nanos();
    let step = STEP.as_nanos() as u64;
    let start = now - now % step + step;
    tokio::time::sleep(Duration::from_nanos(start - now) + offset).await;
    start
}

/// `n` GETs of `path`, 300 ms apart.
async fn send(gw: &TestGateway, path: &str, n: usize, status: u16) {
    let client = Client::http1();
    for _ in 0..n {
        let r = client.get(&format!("{}{path}", gw.url("public"))).await;
        assert_eq!(r.status, status, "{path}: {r:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// The heatmap row holding `ms`, by the rows' upper bounds.
fn row_of(rows_ms: &[Value], ms: f64) -> usize {
    rows_ms
        .iter()
        .position(|upper| upper.as_f64().is_none_or(|upper| ms < upper))
        .unwrap()
}

/// The column of the step starting at `t_ns`.
fn column(points: &[Value], t_ns: u64) -> &Value {
    points
        .iter()
        .find(|p| p["t_ns"] == t_ns)
        .unwrap_or_else(|| panic!("no column at {t_ns}"))
}

fn near(got: &Value, want_ms: f64) -> bool {
    got.as_f64()
        .is_some_and(|got| (got - want_ms).abs() <= 0.0625 * want_ms)
}

#[tokio::test(start_paused = true)]
async fn a_latency_step_shows_in_the_heatmap_and_survives_a_restart() {
    let up = ScriptedUpstream::new();
    let shop = up.endpoint("shop");
    let (v1, v2) = (up.endpoint("v1"), up.endpoint("v2"));
    up.script_path(shop, "/fast", [Step::ok().after(Duration::from_millis(1))]);
    up.script_path(shop, "/slow", [Step::ok().after(Duration::from_millis(40))]);
    up.script_path(
        shop,
        "/fail",
        [Step::status(500).after(Duration::from_millis(40))],
    );
    let gw =
        TestGateway::start_from_file_with_connector(&config(shop, v1, v2), up.connector()).await;

    // Two fast steps (the split route gets traffic in the first), then two
    // slow ones; the loop samples each just after it ends.
    let mut steps = Vec::new();
    for _ in 0..2 {
        steps.push(into_next_step(Duration::from_secs(1)).await);
        send(&gw, "/fast", 20, 200).await;
        if steps.len() == 1 {
            send(&gw, "/api/items", 10, 200).await;
        }
    }
    // A reload keeps each route's cumulative counts: nothing is lost or
    // counted twice.
    let served = |gw: &TestGateway| {
        let traffic = gw.gateway.route_traffic();
        let checkout = traffic.iter().find(|t| t.route == "checkout").unwrap();
        (checkout.served.total, checkout.served.latency.count())
    };
    assert_eq!(served(&gw), (40, 40));
    gw.gateway.reload_from_file().await.unwrap();
    assert_eq!(served(&gw), (40, 40));
    for _ in 0..2 {
        steps.push(into_next_step(Duration::from_secs(1)).await);
        send(&gw, "/slow", 20, 200).await;
        send(&gw, "/fail", 2, 500).await;
    }
    // The last step is still in progress: sample it now.
    gw.control.sample_history_now().await;

    let (status, h) = admin(&gw, "/api/v1/history/routes/checkout").await;
    assert_eq!(status, 200, "{h:#}");
    assert_eq!(h["route"], "checkout");
    assert_eq!(h["window"], "1h");
    assert_eq!(h["step_seconds"], 10);
    let rows = h["rows_ms"].as_array().unwrap();
    assert_eq!(rows.len(), 40);
    assert_eq!(rows[39], Value::Null);
    let points = h["points"].as_array().unwrap();
    assert_eq!(points.len(), 360);
    let last = steps[3];
    assert_eq!(
        h["to_ns"],
        last + 10_000_000_000,
        "ends with the step sampled"
    );
    assert_eq!(h["from_ns"], last + 10_000_000_000 - 3_600_000_000_000);
    assert_eq!(points[359]["t_ns"], last);
    assert!(h["to"].as_str().unwrap().ends_with('Z'));
    assert!(h.get("versions").is_none(), "one version serves checkout");

    let (fast_row, slow_row) = (row_of(rows, 1.0), row_of(rows, 40.0));
    assert!(fast_row < slow_row);
    for &t in &steps[..2] {
        let p = column(points, t);
        assert_eq!(
            (p["requests"].as_u64(), p["errors"].as_u64()),
            (Some(20), Some(0)),
            "{p:#}"
        );
        assert_eq!(
            p["counts"][fast_row], 20,
            "fast requests in the 1 ms row: {p:#}"
        );
        assert!(near(&p["p50_ms"], 1.0) && near(&p["p99_ms"], 1.0), "{p:#}");
    }
    for &t in &steps[2..] {
        let p = column(points, t);
        assert_eq!(
            (p["requests"].as_u64(), p["errors"].as_u64()),
            (Some(22), Some(2)),
            "{p:#}"
        );
        assert_eq!(
            p["counts"][slow_row], 22,
            "slow requests in the 40 ms row: {p:#}"
        );
        assert!(
            near(&p["p95_ms"], 40.0) && near(&p["p99_ms"], 40.0),
            "{p:#}"
        );
    }
    let p99 = |t: u64| column(points, t)["p99_ms"].as_f64().unwrap();
    assert!(
        p99(steps[2]) > 30.0 * p99(steps[1]),
        "p99 moves with the step"
    );
    for p in points {
        let counts: u64 = p["counts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_u64().unwrap())
            .sum();
        assert_eq!(Some(counts), p["requests"].as_u64(), "{p:#}");
        if !steps.contains(&p["t_ns"].as_u64().unwrap()) {
            assert_eq!(p["requests"], 0);
            assert_eq!(p["p50_ms"], Value::Null);
        }
    }

    // The day: 5-minute columns hold the same requests.
    let (_, day) = admin(&gw, "/api/v1/history/routes/checkout?window=1d").await;
    assert_eq!(day["step_seconds"], 300);
    let day_points = day["points"].as_array().unwrap();
    assert_eq!(day_points.len(), 288);
    let total: u64 = day_points
        .iter()
        .map(|p| p["requests"].as_u64().unwrap())
        .sum();
    assert_eq!(total, 2 * 20 + 2 * 22);

    // The split route: each version's columns, summing to the route's.
    let (_, api) = admin(&gw, "/api/v1/history/routes/api").await;
    let versions = &api["versions"];
    let in_first = |series: &Value| {
        column(series.as_array().unwrap(), steps[0])["requests"]
            .as_u64()
            .unwrap()
    };
    assert_eq!(in_first(&api["points"]), 10);
    assert_eq!(
        in_first(&versions["stable"])
            + in_first(&versions["baseline"])
            + in_first(&versions["canary"]),
        10,
        "{versions:#}"
    );
    assert_eq!(versions["canary"].as_array().unwrap().len(), 360);

    // The route list, errors.
    let (_, list) = admin(&gw, "/api/v1/history/routes").await;
    assert_eq!(
        list,
        serde_json::json!({"routes": [
            {"route": "api", "listener": "public", "listeners": ["public"], "cluster": "v1", "has_release": true},
            {"route": "checkout", "listener": "public", "listeners": ["public"], "cluster": "shop", "has_release": false},
        ]})
    );
    assert_eq!(
        admin(&gw, "/api/v1/history/routes/checkout?window=5m").await,
        (
            400,
            serde_json::json!({"error": "bad_request", "message": "window is 1h or 1d"})
        )
    );
    let (status, missing) = admin(&gw, "/api/v1/history/routes/nope").await;
    assert_eq!(
        (status, &missing["error"]),
        (404, &Value::from("not_found"))
    );

    // A restart on the same store: the columns are read back before the
    // new process samples anything.
    let before: Vec<Value> = steps.iter().map(|&t| column(points, t).clone()).collect();
    let gw = gw.restart().await;
    let (_, h) = admin(&gw, "/api/v1/history/routes/checkout").await;
    let points = h["points"].as_array().unwrap();
    assert_eq!(points.len(), 360);
    let after: Vec<Value> = steps.iter().map(|&t| column(points, t).clone()).collect();
    assert_eq!(after, before);
}
