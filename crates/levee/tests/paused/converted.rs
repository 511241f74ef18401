//! Paused-time versions of end-to-end tests in `tests/proxy/` that slept
//! for seconds because what they test is timing: the failback hold and
//! slow start (`locality.rs`), stale-copy expiry (`degradation.rs`) and the
//! overload guard and admission under overload (`overload.rs`). Each
//! asserts at least what its original asserts, and where the original
//! could only bound a duration generously, this one pins it on the virtual
//! clock. Endpoints leave rotation the way production sees it: their
//! health checks fail (scripted on `/healthz`) while they still answer.

use crate::{cluster, gateway, now, LISTENER, PREAMBLE};
use levee_testkit::{eventually, Client, Connect, ScriptedUpstream, Step, TestGateway};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

const MS: Duration = Duration::from_millis(1);

/// Generous for `eventually` on virtual time (it costs no wall time).
const SOON: Duration = Duration::from_secs(10);

/// Probes every 100ms; an endpoint flips after two failures or two successes
/// in a row.
const HC: &str = "health_check = { path = \"/healthz\", interval = \"100ms\", jitter = \"10ms\", timeout = \"100ms\", healthy_threshold = 2, unhealthy_threshold = 2 }";

/// An endpoint entry: `{ address = "ADDR", EXTRA }`.
fn ep(addr: SocketAddr, extra: &str) -> String {
    if extra.is_empty() {
        format!("{{ address = \"{addr}\" }}")
    } else {
        format!("{{ address = \"{addr}\", {extra} }}")
    }
}

/// A catch-all route to cluster `c` with `endpoints` and `cluster_extra`.
fn locality_config(endpoints: &[String], cluster_extra: &str) -> String {
    format!(
        "{PREAMBLE}{LISTENER}[[routes]]\nname = \"r\"\ncluster = \"c\"\n\n[[clusters]]\nname = \"c\"\nendpoints = [\n  {}\n]\n{cluster_extra}\n",
        endpoints.join(",\n  ")
    )
}

/// Each priority level's load, in level order.
fn loads(cluster: &serde_json::Value) -> Vec<f64> {
    cluster["locality"]
        .as_array()
        .unwrap_or_else(|| panic!("no locality: {cluster}"))
        .iter()
        .map(|l| l["load"].as_f64().expect("a load"))
        .collect()
}

fn close_to(actual: &[f64], expected: &[f64]) -> bool {
    actual.len() == expected.len()
        && actual
            .iter()
            .zip(expected)
            .all(|(a, e)| (a - e).abs() < 0.01)
}

/// Whether the admin API lists the endpoint at `addr` with `healthy`.
fn endpoint_healthy(cluster: &serde_json::Value, addr: SocketAddr) -> bool {
    let addr = addr.to_string();
    cluster["endpoints"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["address"] == addr.as_str())
        .is_some_and(|e| e["healthy"] == true)
}

/// Steps the virtual clock by `step` until `check` holds; returns when.
async fn when<F, Fut>(
    limit: Duration,
    step: Duration,
    what: &str,
    mut check: F,
) -> levee_core::time::Instant
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = now() + limit;
    loop {
        if check().await {
            return now();
        }
        assert!(
            now() < deadline,
            "timed out after {limit:?} waiting for: {what}"
        );
        tokio::time::sleep(step).await;
    }
}

// ---------------------------------------------------------------------------
// locality.rs: the failback hold

/// `n` GETs to `/work`, each answered: how many each upstream served.
async fn burst(gw: &TestGateway, n: usize) -> HashMap<String, usize> {
    Client::http1()
        .burst(&format!("{}/work", gw.url("public")), n)
        .await
}

#[tokio::test(start_paused = true)]
async fn traffic_fails_over_to_the_next_priority_and_back_after_the_failback_delay() {
    let up = ScriptedUpstream::new();
    let a = up.endpoint("a");
    let b = up.endpoint("b");
    let c = up.endpoint("c");
    let gw = gateway(
        &up,
        &locality_config(
            &[ep(a, ""), ep(b, ""), ep(c, "priority = 1")],
            &format!("{HC}\nlocality = {{ failback_delay = \"1s\" }}"),
        ),
    )
    .await;
    let cl = cluster(&gw).await;
    assert_eq!(loads(&cl), [1.0, 0.0], "{cl}");
    assert_eq!(cl["locality"][0]["priority"], 0);
    assert_eq!(cl["locality"][1]["priority"], 1);
    let priorities: Vec<_> = cl["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["priority"].as_u64().unwrap())
        .collect();
    assert_eq!(priorities, [0, 0, 1]);

    let n = burst(&gw, 20).await;
    assert_eq!(n.get("c"), None, "level 1 is idle while level 0 is healthy");
    assert!(n.get("a") > Some(&0) && n.get("b") > Some(&0), "{n:?}");

    // Level 0 fails its health checks (while still answering traffic).
    let failed = now();
    up.script_path(a, "/healthz", [Step::status(503)]);
    up.script_path(b, "/healthz", [Step::status(503)]);
    let over = when(SOON, 10 * MS, "level 1 takes all traffic", || async {
        close_to(&loads(&cluster(&gw).await), &[0.0, 1.0])
    })
    .await;
    // Two failed probes, 100 ms (+ up to 10 ms of jitter) apart.
    assert!(
        over - failed <= 230 * MS,
        "failed over after {:?}",
        over - failed
    );
    let n = burst(&gw, 20).await;
    assert_eq!(n.get("c"), Some(&20), "{n:?}");

    // Level 0 recovers: traffic stays on level 1 for the failback delay,
    // counted from the moment the second endpoint passed (found to the
    // 10 ms here), and returns within a maintenance tick (100 ms) after.
    up.script_path(a, "/healthz", [Step::ok()]);
    up.script_path(b, "/healthz", [Step::ok()]);
    let recovered = when(SOON, 10 * MS, "a and b healthy again", || async {
        let cl = cluster(&gw).await;
        endpoint_healthy(&cl, a) && endpoint_healthy(&cl, b)
    })
    .await;
    let held = loads(&cluster(&gw).await);
    assert!(held[1] > 0.0, "failback is held: {held:?}");
    let n = burst(&gw, 5).await;
    assert!(
        n.get("c") > Some(&0),
        "level 1 still takes traffic right after recovery: {n:?}"
    );
    tokio::time::sleep_until(recovered + Duration::from_secs(1) - 20 * MS).await;
    let held = loads(&cluster(&gw).await);
    assert!(
        held[1] > 0.0,
        "still held just before the delay ends: {held:?}"
    );
    let back = when(SOON, 10 * MS, "traffic returns to level 0", || async {
        close_to(&loads(&cluster(&gw).await), &[1.0, 0.0])
    })
    .await;
    assert!(
        back - recovered <= Duration::from_millis(1110),
        "back after {:?}",
        back - recovered
    );
    let before = (up.requests_to(a, "/work"), up.requests_to(b, "/work"));
    let n = burst(&gw, 20).await;
    assert_eq!(n.get("c"), None, "level 1 is idle again: {n:?}");
    assert!(
        up.requests_to(a, "/work") > before.0 && up.requests_to(b, "/work") > before.1,
        "{n:?}"
    );
}

/// The region drill with endpoint breakers (RELIABILITY.md): when a whole
/// level fails back while its breakers are still open, half-open or
/// ramping, requests the breakers refuse go to the other level, never
/// `503 circuit_open` while an endpoint admits them.
#[tokio::test(start_paused = true)]
async fn a_level_failing_back_behind_its_breakers_sends_what_they_refuse_elsewhere() {
    let up = ScriptedUpstream::new();
    let primary = [up.endpoint("a"), up.endpoint("b"), up.endpoint("c")];
    let d = up.endpoint("d");
    let mut endpoints: Vec<String> = primary.iter().map(|p| ep(*p, "")).collect();
    endpoints.push(ep(d, "priority = 1"));
    let gw = gateway(
        &up,
        &locality_config(
            &endpoints,
            &format!(
                "{HC}\nbalancer = {{ kind = \"round_robin\" }}\nlocality = {{ failback_delay = \"0s\" }}\n\
                 circuit_breaker = {{ endpoint = {{ consecutive_failures = 2, base_open_time = \"2s\", \
                 max_open_time = \"2s\", half_open_probes = 1, ramp_time = \"5s\" }} }}"
            ),
        ),
    )
    .await;
    // The primary level dies: its answers and its health checks fail.
    for p in primary {
        up.script_path(p, "/work", [Step::status(503)]);
        up.script_path(p, "/healthz", [Step::status(503)]);
    }
    for _ in 0..12 {
        let _ = Client::http1()
            .get(&format!("{}/work", gw.url("public")))
            .await;
    }
    when(SOON, 10 * MS, "level 1 takes all traffic", || async {
        close_to(&loads(&cluster(&gw).await), &[0.0, 1.0])
    })
    .await;
    // It comes back: health checks pass long before the breakers have
    // closed and ramped up again.
    for p in primary {
        up.script_path(p, "/work", [Step::ok()]);
        up.script_path(p, "/healthz", [Step::ok()]);
    }
    when(SOON, 10 * MS, "level 0 takes all traffic again", || async {
        close_to(&loads(&cluster(&gw).await), &[1.0, 0.0])
    })
    .await;
    let n = burst(&gw, 60).await;
    assert!(
        n.get("d") > Some(&0),
        "d took what the breakers refused: {n:?}"
    );
    // Through the open time and the ramp, nothing fails either.
    for _ in 0..8 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        burst(&gw, 20).await;
    }
    let n = burst(&gw, 30).await;
    assert_eq!(
        n.get("d"),
        None,
        "after the ramp, level 0 has it all: {n:?}"
    );
}

// ---------------------------------------------------------------------------
// locality.rs: slow start

/// Two endpoints with `weight` and `balancer`; the second fails its health
/// checks, then passes again. Returns the share of a burst it gets right
/// after it returned, halfway through the 6 s window, and after it.
async fn slow_start_shares(weight: u32, balancer: &str) -> (f64, f64, f64) {
    let up = ScriptedUpstream::new();
    let a = up.endpoint("a");
    let b = up.endpoint("b");
    let w = format!("weight = {weight}");
    let gw = gateway(
        &up,
        &locality_config(
            &[ep(a, &w), ep(b, &w)],
            &format!(
                "{HC}\nbalancer = {{ kind = \"{balancer}\" }}\nslow_start = {{ window = \"6s\", min_weight_percent = 10 }}"
            ),
        ),
    )
    .await;
    let n = burst(&gw, 20).await;
    assert!(n.get("b") > Some(&0) && n.get("a") > Some(&0), "{n:?}");

    up.script_path(b, "/healthz", [Step::status(503)]);
    eventually(SOON, "b leaves rotation", || async {
        !endpoint_healthy(&cluster(&gw).await, b)
    })
    .await;
    assert_eq!(burst(&gw, 10).await.get("b"), None);

    up.script_path(b, "/healthz", [Step::ok()]);
    let returned = when(SOON, MS, "b returns", || async {
        endpoint_healthy(&cluster(&gw).await, b)
    })
    .await;
    let share =
        |n: &HashMap<String, usize>, of: usize| n.get("b").copied().unwrap_or(0) as f64 / of as f64;
    let early = share(&burst(&gw, 20).await, 20);
    tokio::time::sleep_until(returned + Duration::from_secs(3)).await;
    let half = share(&burst(&gw, 40).await, 40);
    // Past the window: 6 s from the return, exactly (plus a ramp tick).
    tokio::time::sleep_until(returned + Duration::from_millis(6300)).await;
    let late = share(&burst(&gw, 40).await, 40);
    (early, half, late)
}

#[tokio::test(start_paused = true)]
async fn a_returning_endpoint_ramps_up_over_the_slow_start_window() {
    let (early, half, late) = slow_start_shares(1, "round_robin").await;
    assert!(early < 0.35, "right after its return: {early}");
    assert!(early <= half && half <= late, "{early} {half} {late}");
    assert!((0.35..=0.65).contains(&late), "after the window: {late}");
}

#[tokio::test(start_paused = true)]
async fn a_returning_heavy_endpoint_ramps_up_over_the_slow_start_window() {
    let (early, half, late) = slow_start_shares(100, "round_robin").await;
    assert!(early < 0.35, "right after its return: {early}");
    assert!(early <= half && half <= late, "{early} {half} {late}");
    assert!((0.35..=0.65).contains(&late), "after the window: {late}");
}

#[tokio::test(start_paused = true)]
async fn a_returning_endpoint_ramps_up_with_least_request_too() {
    let (early, _, late) = slow_start_shares(100, "least_request").await;
    assert!(early < 0.35, "right after its return: {early}");
    assert!((0.2..=0.8).contains(&late), "after the window: {late}");
}

// ---------------------------------------------------------------------------
// degradation.rs: stale copies

fn stale_config(endpoint: SocketAddr, serve_stale: &str) -> String {
    format!(
        "{PREAMBLE}{LISTENER}[[routes]]\nname = \"r\"\ncluster = \"c\"\n[routes.fallback]\nserve_stale = {serve_stale}\n[[clusters]]\nname = \"c\"\nendpoints = [\"{endpoint}\"]\n"
    )
}

fn fallbacks_stale() -> &'static str {
    "levee_fallbacks_total{route=\"r\",kind=\"stale\"}"
}

#[tokio::test(start_paused = true)]
async fn a_failing_upstream_is_answered_with_the_last_good_copy() {
    let up = ScriptedUpstream::new();
    let addr = up.endpoint("v1");
    up.script(addr, [Step::status(503)]);
    up.script_path(addr, "/item", [Step::ok(), Step::status(503)]);
    up.script_path(
        addr,
        "/private",
        [
            Step::ok().header("cache-control", "no-store"),
            Step::status(503).header("cache-control", "no-store"),
        ],
    );
    let gw = gateway(&up, &stale_config(addr, "{ max_entries = 100 }")).await;
    let c = Client::http1();
    let base = gw.url("public");

    let fresh = c.get(&format!("{base}/item")).await;
    assert_eq!(fresh.status, 200, "{fresh:?}");
    assert_eq!(fresh.body, "v1");
    fresh.assert_not_degraded();
    assert_eq!(fresh.header("age"), None);

    // The upstream now answers 503: the copy answers instead.
    let stale = c.get(&format!("{base}/item")).await;
    assert_eq!(stale.assert_stale("v1"), 0, "no time has passed: {stale:?}");
    assert_eq!(
        stale.header("x-upstream"),
        Some("v1"),
        "the copy keeps the upstream's headers"
    );
    assert_eq!(
        up.requests_to(addr, "/item"),
        2,
        "the upstream was asked first"
    );

    // Nothing was ever fetched here: the upstream's own 503 comes through.
    let never = c.get(&format!("{base}/never")).await;
    assert_eq!(never.status, 503, "{never:?}");
    never.assert_not_degraded();

    // A response that says `no-store` is not kept.
    let private = c.get(&format!("{base}/private")).await;
    assert_eq!(private.status, 200, "{private:?}");
    let private = c.get(&format!("{base}/private")).await;
    assert_eq!(private.status, 503, "no-store is never served stale");
    private.assert_not_degraded();
    assert_eq!(gw.metric(fallbacks_stale()), 1.0);

    // The age grows with the copy, in whole seconds.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let older = c.get(&format!("{base}/item")).await;
    assert_eq!(older.assert_stale("v1"), 1, "{older:?}");
    tokio::time::sleep(Duration::from_secs(5)).await;
    let older = c.get(&format!("{base}/item")).await;
    assert_eq!(older.assert_stale("v1"), 6, "{older:?}");

    // The upstream goes away (connection refused): still the copy...
    up.set_connect(addr, Connect::Refuse);
    up.close_connections(addr);
    let r = c.get(&format!("{base}/item")).await;
    r.assert_stale("v1");
    // ...but nothing for a target never fetched: the gateway's own error.
    let r = c.get(&format!("{base}/unknown")).await;
    assert!(r.status.is_server_error(), "{r:?}");
    assert_eq!(r.header("levee-error"), Some("connect_refused"), "{r:?}");
    r.assert_not_degraded();

    // Back, with new content: fresh answers again...
    up.script_path(addr, "/item", [Step::ok().body("v2")]);
    up.set_connect(addr, Connect::Accept);
    let r = c.get(&format!("{base}/item")).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body, "v2");
    r.assert_not_degraded();
    // ...and the copy was refreshed along the way.
    up.set_connect(addr, Connect::Refuse);
    up.close_connections(addr);
    let r = c.get(&format!("{base}/item")).await;
    assert_eq!(r.assert_stale("v2"), 0, "{r:?}");
    assert_eq!(gw.metric(fallbacks_stale()), 5.0);
}

#[tokio::test(start_paused = true)]
async fn a_copy_older_than_max_stale_is_not_served() {
    let up = ScriptedUpstream::new();
    let addr = up.endpoint("v1");
    up.script_path(addr, "/item", [Step::ok(), Step::status(503)]);
    let gw = gateway(&up, &stale_config(addr, "{ max_stale = \"1s\" }")).await;
    let c = Client::http1();
    let url = format!("{}/item", gw.url("public"));
    let stored = now();
    assert_eq!(c.get(&url).await.body, "v1");
    c.get(&url).await.assert_stale("v1");

    // Served up to exactly `max_stale` after it was fetched...
    tokio::time::sleep_until(stored + Duration::from_secs(1)).await;
    assert_eq!(c.get(&url).await.assert_stale("v1"), 1);
    // ...and not a millisecond longer.
    tokio::time::sleep(MS).await;
    let r = c.get(&url).await;
    assert_eq!(r.status, 503, "the copy is too old: {r:?}");
    r.assert_not_degraded();
    assert_eq!(up.requests_to(addr, "/item"), 4);
    assert_eq!(gw.metric(fallbacks_stale()), 2.0);
}

// ---------------------------------------------------------------------------
// overload.rs: the process overload guard

#[tokio::test(start_paused = true)]
async fn pressure_sheds_sheddable_then_closes_then_refuses_and_recovers() {
    let up = ScriptedUpstream::new();
    let u = up.endpoint("u");
    let src = format!(
        "{PREAMBLE}[runtime.overload]\nmax_connections = 10\nshed_at = \"30%\"\nclose_at = \"60%\"\nrefuse_at = \"90%\"\n\
         {LISTENER}\
         [[routes]]\nname = \"cheap\"\ncluster = \"c\"\npriority = \"sheddable\"\nmatch = {{ path = {{ prefix = \"/cheap\" }} }}\n\
         [[routes]]\nname = \"main\"\ncluster = \"c\"\n\
         [[clusters]]\nname = \"c\"\nendpoints = [\"{u}\"]\n"
    );
    let gw = gateway(&up, &src).await;
    let base = gw.url("public");
    let fresh = || async { Client::http1() };
    let level = || gw.metric("levee_overload_level");
    assert_eq!(
        fresh().await.get(&format!("{base}/cheap")).await.status,
        200
    );

    // Three idle connections: 30% of 10 → sheddable work is refused, from
    // the guard's next sample on.
    let mut idle = Vec::new();
    more_pressure(&gw, &mut idle, 1.0).await;
    let shed = fresh().await.get(&format!("{base}/cheap")).await;
    assert_eq!(shed.status, 503, "{shed:?}");
    assert_eq!(shed.header("levee-error"), Some("overloaded"));
    assert_eq!(shed.header("levee-overloaded"), Some("true"));
    assert_eq!(shed.header("retry-after"), Some("1"));
    let kept = fresh().await.get(&format!("{base}/main")).await;
    assert_eq!(kept.status, 200, "default-priority work still flows");
    assert_eq!(kept.header("connection"), None);

    // Six: connections close after their response.
    more_pressure(&gw, &mut idle, 2.0).await;
    let r = fresh().await.get(&format!("{base}/main")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("connection"), Some("close"));

    // Nine: new connections are refused.
    more_pressure(&gw, &mut idle, 3.0).await;
    let rejected = || gw.metric("levee_downstream_connections_rejected_total{listener=\"public\"}");
    let rejected_before = rejected();
    let mut s = tokio::net::TcpStream::connect(gw.addr("public"))
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    let closed = tokio::time::timeout(
        Duration::from_secs(5),
        tokio::io::AsyncReadExt::read(&mut s, &mut buf),
    )
    .await;
    assert!(
        matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
        "a new connection is closed at once: {closed:?}"
    );
    assert!(rejected() > rejected_before);

    // Pressure gone: everything flows again.
    drop(idle);
    let dropped = now();
    let calm = when(SOON, MS, "level 0", || async { level() == 0.0 }).await;
    assert!(
        calm - dropped <= SAMPLE_EVERY + MS,
        "within a sample: {:?}",
        calm - dropped
    );
    assert_eq!(
        fresh().await.get(&format!("{base}/cheap")).await.status,
        200
    );
}

/// How often the overload guard samples (`pressure::SAMPLE_EVERY` in
/// levee-proxy, private): the bound on how late a level change may show.
const SAMPLE_EVERY: Duration = Duration::from_millis(100);

/// Opens three more idle connections to the gateway and checks that the
/// guard reaches `level` at its next sample.
async fn more_pressure(gw: &TestGateway, idle: &mut Vec<tokio::net::TcpStream>, level: f64) {
    for _ in 0..3 {
        let s = tokio::net::TcpStream::connect(gw.addr("public")).await;
        idle.push(s.expect("connect"));
    }
    let opened = now();
    let raised = when(SOON, MS, "the next level", || async {
        gw.metric("levee_overload_level") >= level
    })
    .await;
    assert!(
        raised - opened <= SAMPLE_EVERY + MS,
        "level {level} within a sample: {:?}",
        raised - opened
    );
}

/// One request's class, tenant and result.
struct Shot {
    class: &'static str,
    tenant: &'static str,
    status: u16,
    reason: Option<String>,
    latency: Duration,
}

fn success(shots: &[Shot], keep: impl Fn(&Shot) -> bool) -> (usize, usize) {
    let picked: Vec<&Shot> = shots.iter().filter(|s| keep(s)).collect();
    (
        picked.iter().filter(|s| s.status == 200).count(),
        picked.len(),
    )
}

fn rate((ok, n): (usize, usize)) -> f64 {
    if n == 0 {
        1.0
    } else {
        ok as f64 / n as f64
    }
}

// ---------------------------------------------------------------------------
// overload.rs: admission under overload

/// A fixed-capacity upstream (2 at once, 100 ms each: 20 requests/s)
/// driven at 2×, 5× and 10× its capacity with three priority classes and
/// three tenants, one of them abusive: critical traffic keeps succeeding,
/// sheddable work is shed first, the abusive tenant does not starve the
/// others, and admitted requests keep a bounded latency.
#[tokio::test(start_paused = true)]
async fn overload_sheds_the_least_important_work_first_and_shares_fairly() {
    let up = ScriptedUpstream::new();
    let u = up.endpoint("u");
    up.capacity(u, 2);
    up.script(u, [Step::ok().after(Duration::from_millis(100))]);
    let src = format!(
        "{PREAMBLE}{LISTENER}\
         [tenants]\nheader = \"x-tenant\"\n\
         [[routes]]\nname = \"api\"\ncluster = \"c\"\npriority = \"critical\"\npriority_header = \"x-priority\"\ntimeout = \"5s\"\n\
         [[clusters]]\nname = \"c\"\nendpoints = [\"{}\"]\ntimeout = \"5s\"\n\
         [clusters.concurrency]\nalgorithm = \"fixed\"\nlimit = 2\nmin_limit = 1\nmax_queue_len = 40\ntenant_quota = \"50%\"\n\
         [clusters.concurrency.classes]\ncritical = {{ max_queue_time = \"2s\" }}\ndefault = {{ max_queue_time = \"600ms\" }}\nsheddable = {{ max_queue_time = \"50ms\" }}\n",
        u
    );
    let gw = gateway(&up, &src).await;
    let url = format!("{}/work", gw.url("public"));
    for load in [2u32, 5, 10] {
        let per_second = 20 * load;
        let interval = Duration::from_secs_f64(1.0 / f64::from(per_second));
        let total = per_second as usize * 3 / 2; // 1.5 s of arrivals
        let mut tasks = Vec::new();
        let mut tick = tokio::time::interval(interval);
        for i in 0..total {
            tick.tick().await;
            // 10% critical, 45% default, 45% sheddable; default traffic is
            // 20% tenant a, 20% tenant b, 60% the abusive tenant c.
            let class = match i % 20 {
                0 | 10 => "critical",
                n if n % 2 == 1 => "default",
                _ => "sheddable",
            };
            let tenant = match i % 5 {
                0 => "a",
                1 => "b",
                _ => "c",
            };
            let url = url.clone();
            tasks.push(tokio::spawn(async move {
                let started = now();
                let r = Client::http1()
                    .get_with(&url, &[("x-priority", class), ("x-tenant", tenant)])
                    .await;
                Shot {
                    class,
                    tenant,
                    status: r.status.as_u16(),
                    reason: r.header("levee-error").map(str::to_string),
                    latency: now() - started,
                }
            }));
        }
        let mut shots = Vec::new();
        for t in tasks {
            shots.push(t.await.unwrap());
        }
        let critical = rate(success(&shots, |s| s.class == "critical"));
        let default = rate(success(&shots, |s| s.class == "default"));
        let sheddable = rate(success(&shots, |s| s.class == "sheddable"));
        let summary = format!(
            "at {load}x: critical {critical:.2}, default {default:.2}, sheddable {sheddable:.2}"
        );
        eprintln!("{summary}");
        assert!(critical >= 0.9, "critical keeps succeeding {summary}");
        assert!(
            sheddable <= default + 0.05,
            "sheddable is shed first {summary}"
        );
        if load >= 5 {
            assert!(sheddable < 0.25, "{summary}");
        }
        // Inside the default class, the abusive tenant gets no more than a
        // fair share: the light tenants succeed at least as often.
        let light = rate(success(&shots, |s| s.class == "default" && s.tenant != "c"));
        let abusive = rate(success(&shots, |s| s.class == "default" && s.tenant == "c"));
        assert!(
            light + 0.05 >= abusive,
            "light {light:.2} vs abusive {abusive:.2} {summary}"
        );
        for s in &shots {
            if s.status == 200 {
                assert!(
                    s.latency < Duration::from_secs(4),
                    "admitted latency is bounded: {:?}",
                    s.latency
                );
            } else {
                assert_eq!(s.status, 503, "{summary}");
                assert_eq!(s.reason.as_deref(), Some("overloaded"), "{summary}");
            }
        }
        // Admitted requests waited at most the critical class's queue time
        // (2 s) plus their own 100 ms, on the virtual clock.
        let slowest = shots
            .iter()
            .filter(|s| s.status == 200)
            .map(|s| s.latency)
            .max();
        assert!(
            slowest.is_some_and(|l| l <= Duration::from_millis(2100)),
            "{slowest:?} {summary}"
        );
        // Let the queue drain before the next level.
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    assert!(gw.metric("levee_cluster_shed_total{cluster=\"c\",reason=\"queue_timeout\"}") > 0.0);
}
