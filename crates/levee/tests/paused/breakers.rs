//! An endpoint's circuit breaker on paused time: it opens after its
//! consecutive failures, refuses for its open time (2 s plus up to 25%
//! jitter), lets a probe through within a maintenance tick once that time
//! is up, and closes on the probe's success.

use crate::{config, gateway, get, now};
use levee_testkit::{ScriptedUpstream, Step, TestGateway};
use std::net::SocketAddr;
use std::time::Duration;

const MS: Duration = Duration::from_millis(1);

/// The breaker state of the endpoint at `addr`, as the admin API says.
async fn breaker(gw: &TestGateway, addr: SocketAddr) -> String {
    let e = gw
        .admin_api()
        .endpoint(addr)
        .await
        .unwrap_or_else(|| panic!("{addr} is not listed"));
    e.circuit_breaker
        .clone()
        .unwrap_or_else(|| panic!("no breaker state for {addr}: {e:?}"))
}

#[tokio::test(start_paused = true)]
async fn an_endpoint_breaker_opens_refuses_for_its_open_time_then_probes_and_closes() {
    let up = ScriptedUpstream::new();
    let flaky = up.endpoint("flaky");
    let good = up.endpoint("good");
    up.script(flaky, [Step::status(503)]);
    let gw = gateway(
        &up,
        &config(
            &[flaky, good],
            "",
            "circuit_breaker = { endpoint = { consecutive_failures = 3, base_open_time = \"2s\", max_open_time = \"10s\", half_open_probes = 1, ramp_time = \"0s\" } }",
        ),
    )
    .await;
    assert_eq!(breaker(&gw, flaky).await, "closed");

    // Round robin: every other request fails until the third failure in a
    // row opens the breaker.
    for _ in 0..6 {
        get(&gw, "/x").await;
    }
    let opened = now();
    assert_eq!(
        up.requests(flaky),
        3,
        "opened after three failures in a row"
    );
    assert_eq!(breaker(&gw, flaky).await, "open");
    assert_eq!(breaker(&gw, good).await, "closed");
    let series = format!(
        "levee_circuit_breaker_opened_total{{cluster=\"c\",endpoint=\"{flaky}\",scope=\"endpoint\"}}"
    );
    let state = format!(
        "levee_circuit_breaker_state{{cluster=\"c\",endpoint=\"{flaky}\",scope=\"endpoint\"}}"
    );
    assert_eq!(gw.metric(&series), 1.0);
    assert_eq!(gw.metric(&state), 1.0);

    // The endpoint recovers, but the breaker refuses it for its open time:
    // up to the last millisecond of it, nothing reaches the endpoint.
    up.script(flaky, [Step::ok()]);
    tokio::time::sleep_until(opened + Duration::from_secs(2) - MS).await;
    for _ in 0..10 {
        let (r, _) = get(&gw, "/x").await;
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.body, "good");
    }
    assert_eq!(up.requests(flaky), 3, "no request reaches an open breaker");
    assert_eq!(breaker(&gw, flaky).await, "open");

    // The open time is 2 s plus up to 25% jitter: it turns half-open
    // somewhere in [2 s, 2.5 s] (found to the 10 ms), and the next
    // maintenance tick (every 200 ms, a tenth of the open time) puts the
    // endpoint back in rotation, where the first request is the probe.
    tokio::time::sleep_until(opened + Duration::from_secs(2)).await;
    let half_open = loop {
        if breaker(&gw, flaky).await == "half_open" {
            break now();
        }
        assert!(now() - opened <= Duration::from_millis(2500), "still open");
        tokio::time::sleep(10 * MS).await;
    };
    assert_eq!(up.requests(flaky), 3, "nothing reached it while open");
    assert_eq!(gw.metric(&state), 2.0);
    tokio::time::sleep(200 * MS).await;
    let mut probe_at = None;
    for _ in 0..2 {
        let (r, _) = get(&gw, "/x").await;
        assert_eq!(r.status, 200, "{r:?}");
        if r.body == "flaky" {
            probe_at = Some(now());
        }
    }
    let probe_at = probe_at.expect("a request probed the half-open endpoint");
    assert!(
        probe_at - half_open <= 210 * MS,
        "probed within a tick: {:?}",
        probe_at - half_open
    );
    assert_eq!(up.requests(flaky), 4);
    assert_eq!(breaker(&gw, flaky).await, "closed", "one success closes it");
    assert_eq!(gw.metric(&state), 0.0);
    for _ in 0..10 {
        assert_eq!(get(&gw, "/x").await.0.status, 200);
    }
    assert_eq!(up.requests(flaky), 4 + 5, "back in rotation");
    assert_eq!(gw.metric(&series), 1.0, "it opened once");
}

/// The cluster breaker's state, as the admin API says.
async fn cluster_breaker(gw: &TestGateway) -> String {
    let c = crate::cluster(gw).await;
    c["circuit_breaker"]
        .as_str()
        .unwrap_or_else(|| panic!("no cluster breaker state: {c}"))
        .to_string()
}

#[tokio::test(start_paused = true)]
async fn a_cluster_breaker_sheds_everything_until_the_cluster_recovers() {
    let up = ScriptedUpstream::new();
    let a = up.endpoint("a");
    let b = up.endpoint("b");
    up.script(a, [Step::status(503)]);
    up.script(b, [Step::status(503)]);
    let gw = gateway(
        &up,
        &config(
            &[a, b],
            "",
            "circuit_breaker = { cluster = { consecutive_failures = 4, base_open_time = \"2s\", max_open_time = \"10s\", half_open_probes = 2, ramp_time = \"0s\" } }",
        ),
    )
    .await;
    assert_eq!(cluster_breaker(&gw).await, "closed");

    // Four upstream failures in a row, passed through as they are...
    for _ in 0..4 {
        let (r, _) = get(&gw, "/").await;
        assert_eq!(r.status, 503);
        assert_eq!(r.header("levee-error"), None, "the upstream's own 503");
    }
    let opened = now();
    // ...then the cluster's breaker answers for it, without contacting it.
    for _ in 0..10 {
        let (r, _) = get(&gw, "/").await;
        assert_eq!(r.status, 503, "{r:?}");
        assert_eq!(r.header("levee-error"), Some("circuit_open"), "{r:?}");
        assert_eq!(r.header("levee-overloaded"), Some("true"), "{r:?}");
    }
    assert_eq!(
        up.requests(a) + up.requests(b),
        4,
        "no request passed the open breaker"
    );
    assert_eq!(cluster_breaker(&gw).await, "open");
    let state = "levee_circuit_breaker_state{cluster=\"c\",scope=\"cluster\"}";
    let opened_total = "levee_circuit_breaker_opened_total{cluster=\"c\",scope=\"cluster\"}";
    assert_eq!(gw.metric(state), 1.0);
    assert_eq!(gw.metric(opened_total), 1.0);
    assert_eq!(
        gw.metric("levee_errors_total{cluster=\"c\",reason=\"circuit_open\"}"),
        10.0
    );

    // The upstream recovers: still open until 2 s (plus up to 25% jitter)
    // have passed, half-open then, and two good probes close it.
    up.script(a, [Step::ok()]);
    up.script(b, [Step::ok()]);
    tokio::time::sleep_until(opened + Duration::from_secs(2) - MS).await;
    assert_eq!(cluster_breaker(&gw).await, "open");
    assert_eq!(
        get(&gw, "/").await.0.header("levee-error"),
        Some("circuit_open")
    );
    tokio::time::sleep_until(opened + Duration::from_millis(2500)).await;
    assert_eq!(cluster_breaker(&gw).await, "half_open");
    for _ in 0..2 {
        assert_eq!(get(&gw, "/").await.0.status, 200);
    }
    assert_eq!(cluster_breaker(&gw).await, "closed");
    assert_eq!(gw.metric(state), 0.0);
    for _ in 0..10 {
        assert_eq!(get(&gw, "/").await.0.status, 200);
    }
    assert!(
        up.requests(a) > 2 && up.requests(b) > 2,
        "both take traffic again"
    );
    assert_eq!(gw.metric(opened_total), 1.0);
}
