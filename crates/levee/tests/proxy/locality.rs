//! Where traffic goes inside a cluster, end to end: priority levels (failover
//! with an overprovisioning factor, failback after a hold), zone-aware
//! routing, latency outlier ejection and slow start. Endpoints are taken out
//! of rotation the way production does it (health checks failing while the
//! endpoint still answers, or live latency), and every check is on which
//! upstream answered, on what the admin API reports, or both. Durations
//! appear only as generous upper bounds, as the slowness of a scripted
//! upstream, or as waits past a configured window. What is timed (the
//! failback hold, slow-start ramps) is tested on paused time in
//! `tests/paused/converted.rs`.

use levee_testkit::{
    eventually, Client, Cluster, ClusterState, Endpoint, FakeUpstream, GatewayConfig, Reply, Route,
    TestGateway,
};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How long `eventually` waits for state that should follow within a few
/// health-check rounds.
const SOON: Duration = Duration::from_secs(10);

/// Probes every 100ms; an endpoint flips after two failures or two successes
/// in a row.
const HC: &str = "path = \"/healthz\", interval = \"100ms\", jitter = \"10ms\", timeout = \"100ms\", healthy_threshold = 2, unhealthy_threshold = 2";

/// A catch-all route to `cluster` (named `c`); the gateway runs in `zone`.
fn config(zone: Option<&str>, cluster: Cluster) -> String {
    let config = match zone {
        Some(z) => GatewayConfig::new().zone(z),
        None => GatewayConfig::new(),
    };
    config.route(Route::new("r", "c")).cluster(cluster).toml()
}

/// Cluster `c` over `endpoints`, health-checked every 100ms.
fn checked(endpoints: impl IntoIterator<Item = Endpoint>) -> Cluster {
    Cluster::new("c").endpoints(endpoints).health_check(HC)
}

/// An upstream on `addr` (a restart on the same port) that answers traffic
/// but fails its health checks.
async fn failing_checks(name: &str, addr: SocketAddr) -> FakeUpstream {
    FakeUpstream::builder(name)
        .bind(addr)
        .route("/healthz", Reply::status(503))
        .start()
        .await
}

/// Cluster `c` as `GET /api/v1/clusters` shows it.
async fn cluster(gw: &TestGateway) -> ClusterState {
    gw.admin_api().cluster("c").await
}

/// The zone probabilities of priority level 0.
fn zones(cluster: &ClusterState) -> Vec<(String, f64)> {
    cluster
        .locality
        .first()
        .unwrap_or_else(|| panic!("no zones: {cluster:?}"))
        .zones
        .clone()
}

fn close_to(actual: &[f64], expected: &[f64]) -> bool {
    actual.len() == expected.len()
        && actual
            .iter()
            .zip(expected)
            .all(|(a, e)| (a - e).abs() < 0.01)
}

/// Requests answered by upstreams whose name starts with `prefix`.
fn count(counts: &HashMap<String, usize>, prefix: &str) -> usize {
    counts
        .iter()
        .filter(|(name, _)| name.starts_with(prefix))
        .map(|(_, n)| n)
        .sum()
}

// ---------------------------------------------------------------------------
// Priority levels

/// `n` GETs to `/work`, each answered: how many each upstream served.
async fn burst(gw: &TestGateway, n: usize) -> HashMap<String, usize> {
    Client::http1()
        .burst(&format!("{}/work", gw.url("public")), n)
        .await
}

#[tokio::test]
async fn a_partly_healthy_level_keeps_its_overprovisioned_share() {
    let mut ups = Vec::new();
    let mut endpoints = Vec::new();
    // Level 0: five endpoints, the last three failing health checks.
    for i in 0..5 {
        let mut b = FakeUpstream::builder(&format!("p0-{i}"));
        if i >= 2 {
            b = b.route("/healthz", Reply::status(503));
        }
        let up = b.start().await;
        endpoints.push(Endpoint::new(up.addr()));
        ups.push(up);
    }
    // Level 1: two healthy endpoints.
    for i in 0..2 {
        let up = FakeUpstream::start(&format!("p1-{i}")).await;
        endpoints.push(Endpoint::new(up.addr()).priority(1));
        ups.push(up);
    }
    let gw = TestGateway::start(&config(None, checked(endpoints))).await;
    // 2 of 5 healthy: 40% × 1.4 = 56% stays on level 0, 44% fails over.
    eventually(SOON, "loads of 0.56 and 0.44", || async {
        close_to(&cluster(&gw).await.loads(), &[0.56, 0.44])
    })
    .await;
    let n = burst(&gw, 60).await;
    assert!(count(&n, "p0-") > 0, "level 0 takes its share: {n:?}");
    assert!(count(&n, "p1-") > 0, "level 1 takes the rest: {n:?}");
    for i in 2..5 {
        assert_eq!(n.get(&format!("p0-{i}")), None, "unhealthy: {n:?}");
    }
}

// ---------------------------------------------------------------------------
// Zones

/// Starts upstreams `a1..` in zone a and `b1..` in zone b.
async fn zoned(per_zone: usize) -> (Vec<FakeUpstream>, Vec<FakeUpstream>, Vec<Endpoint>) {
    let mut endpoints = Vec::new();
    let mut zones = (Vec::new(), Vec::new());
    for zone in ["a", "b"] {
        for i in 1..=per_zone {
            let up = FakeUpstream::start(&format!("{zone}{i}")).await;
            endpoints.push(Endpoint::new(up.addr()).zone(zone));
            if zone == "a" {
                zones.0.push(up);
            } else {
                zones.1.push(up);
            }
        }
    }
    (zones.0, zones.1, endpoints)
}

/// Restarts zone a's upstreams from index `from` on, failing their health
/// checks.
async fn fail_zone_a_from(zone: &mut Vec<FakeUpstream>, from: usize) {
    let gone: Vec<FakeUpstream> = zone.drain(from..).collect();
    let addrs: Vec<SocketAddr> = gone.iter().map(FakeUpstream::addr).collect();
    drop(gone);
    for (i, addr) in addrs.into_iter().enumerate() {
        let name = format!("a{}", from + i + 1);
        zone.push(failing_checks(&name, addr).await);
    }
}

#[tokio::test]
async fn zone_aware_routing_stays_local_and_spills_by_spare_capacity() {
    // Four endpoints per zone: after two of zone a fail, six stay healthy,
    // still at min_cluster_size (6).
    let (mut a, _b, endpoints) = zoned(4).await;
    let gw = TestGateway::start(&config(Some("a"), checked(endpoints))).await;
    let cl = cluster(&gw).await;
    assert_eq!(
        zones(&cl),
        [("a".to_string(), 1.0), ("b".to_string(), 0.0)],
        "{cl:?}"
    );
    let n = burst(&gw, 30).await;
    assert_eq!(count(&n, "a"), 30, "all traffic stays in zone a: {n:?}");

    // Zone a loses half its endpoints: it has 2/6 of the healthy capacity
    // and the fleet (as the endpoints are configured) 1/2 of its traffic, so
    // (1/3) / (1/2) = 2/3 stays local and 1/3 spills to zone b.
    fail_zone_a_from(&mut a, 2).await;
    eventually(SOON, "zone a spills a third to zone b", || async {
        let z = zones(&cluster(&gw).await);
        z.len() == 2 && close_to(&[z[0].1, z[1].1], &[2.0 / 3.0, 1.0 / 3.0])
    })
    .await;
    let n = burst(&gw, 60).await;
    assert!(count(&n, "a") > 0 && count(&n, "b") > 0, "{n:?}");
    assert_eq!(n.get("a3"), None, "{n:?}");
    assert_eq!(n.get("a4"), None, "{n:?}");
}

#[tokio::test]
async fn zone_awareness_is_off_below_min_cluster_size() {
    // Three per zone: six healthy endpoints, zone-aware.
    let (mut a, _b, endpoints) = zoned(3).await;
    let gw = TestGateway::start(&config(Some("a"), checked(endpoints))).await;
    let cl = cluster(&gw).await;
    assert_eq!(
        zones(&cl),
        [("a".to_string(), 1.0), ("b".to_string(), 0.0)],
        "{cl:?}"
    );
    let n = burst(&gw, 30).await;
    assert_eq!(count(&n, "a"), 30, "{n:?}");

    // Two of zone a fail: four healthy endpoints are below min_cluster_size
    // (healthy endpoints count, as in Envoy), so zones are ignored and
    // traffic spreads by weight: 1/4 to zone a, 3/4 to zone b.
    fail_zone_a_from(&mut a, 1).await;
    eventually(SOON, "traffic spread by weight", || async {
        let z = zones(&cluster(&gw).await);
        z.len() == 2 && close_to(&[z[0].1, z[1].1], &[0.25, 0.75])
    })
    .await;
    let n = burst(&gw, 40).await;
    assert!(count(&n, "a") > 0 && count(&n, "b") > 0, "{n:?}");
    assert_eq!(count(&n, "a"), n.get("a1").copied().unwrap_or(0), "{n:?}");

    // Too small from the start: both zones share the traffic.
    let (_a, _b, endpoints) = zoned(2).await;
    let gw = TestGateway::start(&config(Some("a"), Cluster::new("c").endpoints(endpoints))).await;
    let cl = cluster(&gw).await;
    assert_eq!(
        zones(&cl),
        [("a".to_string(), 0.5), ("b".to_string(), 0.5)],
        "{cl:?}"
    );
    let n = burst(&gw, 20).await;
    assert_eq!(count(&n, "a"), 10, "round robin over all four: {n:?}");
    assert_eq!(count(&n, "b"), 10, "{n:?}");
}

// ---------------------------------------------------------------------------
// Latency outliers

#[tokio::test]
async fn a_slow_endpoint_is_ejected_for_its_latency() {
    let [fast1, fast2] = FakeUpstream::start_each(["fast1", "fast2"]).await;
    let slow = FakeUpstream::builder("slow")
        .otherwise(Reply::ok().latency(Duration::from_millis(300)))
        .start()
        .await;
    let gw = TestGateway::start(&crate::single_cluster(
        &[fast1.addr(), fast2.addr(), slow.addr()],
        "outlier_detection = { consecutive_5xx = 0, consecutive_gateway_errors = 0, interval = \"200ms\", base_ejection_time = \"60s\", max_ejection_time = \"60s\", latency_factor = 3, latency_min_hosts = 3, latency_min_requests = 5 }",
    ))
    .await;
    let admin = gw.admin_api();
    assert!(!admin.endpoint(slow.addr()).await.unwrap().ejected);

    // Steady concurrent traffic, so that every endpoint (the slow one too)
    // answers at least five requests within one 200ms interval.
    let stop = Arc::new(AtomicBool::new(false));
    let url = format!("{}/work", gw.url("public"));
    let workers: Vec<_> = (0..20)
        .map(|_| {
            let (stop, url) = (stop.clone(), url.clone());
            tokio::spawn(async move {
                let c = Client::http1();
                let mut failed = 0;
                while !stop.load(Ordering::Relaxed) {
                    if c.get(&url).await.status != 200 {
                        failed += 1;
                    }
                }
                failed
            })
        })
        .collect();
    eventually(SOON, "the slow endpoint is ejected", || async {
        admin.endpoint(slow.addr()).await.unwrap().ejected
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    let status = admin.endpoint(slow.addr()).await.unwrap();
    assert_eq!(
        status.ejection_cause.as_deref(),
        Some("latency"),
        "{status:?}"
    );
    for w in workers {
        assert_eq!(w.await.unwrap(), 0, "no request failed");
    }
    for fast in [&fast1, &fast2] {
        assert!(
            !admin.endpoint(fast.addr()).await.unwrap().ejected,
            "fast endpoints stay"
        );
    }
    let series = format!(
        "levee_endpoint_outlier_ejected{{cluster=\"c\",endpoint=\"{}\"}}",
        slow.addr()
    );
    assert_eq!(gw.metric(&series), 1.0);

    let before = slow.requests();
    let n = burst(&gw, 20).await;
    assert_eq!(slow.requests(), before, "traffic avoids it: {n:?}");
    assert_eq!(count(&n, "fast"), 20);
}

// ---------------------------------------------------------------------------
// Slow start
