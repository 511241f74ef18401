//! Injected faults whose subject is time, on paused time: request delays
//! (with jitter), bandwidth limits, slow and hanging upstreams, and a
//! runtime fault that removes itself at its expiry.

use crate::{config, gateway, get};
use levee_testkit::{Client, ScriptedUpstream, Step};
use std::time::Duration;

const MS: Duration = Duration::from_millis(1);

#[tokio::test(start_paused = true)]
async fn a_delay_fault_holds_requests_in_scope_for_its_delay_and_jitter() {
    let up = ScriptedUpstream::new();
    let a = up.endpoint("a");
    let gw = gateway(
        &up,
        &config(
            &[a],
            "faults = [{ delay = \"250ms\", jitter = \"100ms\", when = { headers = [{ name = \"x-chaos\", exact = \"1\" }] } }]",
            "",
        ),
    )
    .await;
    let (r, took) = get(&gw, "/x").await;
    assert_eq!(
        (r.status.as_u16(), took),
        (200, Duration::ZERO),
        "out of scope"
    );
    let c = Client::http1();
    for _ in 0..10 {
        let started = crate::now();
        let r = c
            .get_with(&format!("{}/x", gw.url("public")), &[("x-chaos", "1")])
            .await;
        let took = crate::now() - started;
        assert_eq!(r.status, 200);
        // Jitter draws below 100 ms, and tokio's timer wheel rounds a sleep
        // up to its next millisecond: 349.6 ms of delay is seen as 350.
        assert!((250 * MS..=350 * MS).contains(&took), "{took:?}");
    }
    assert_eq!(
        gw.metric("levee_faults_injected_total{target=\"r\",fault=\"fault-0\"}"),
        10.0
    );
}

#[tokio::test(start_paused = true)]
async fn a_bandwidth_fault_paces_the_response_body() {
    let up = ScriptedUpstream::new();
    let a = up.endpoint("a");
    up.script(a, [Step::ok().body(vec![b'x'; 40 * 1024])]);
    let gw = gateway(
        &up,
        &config(&[a], "faults = [{ bandwidth = \"10KiB\" }]", ""),
    )
    .await;
    let (r, took) = get(&gw, "/x").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), 40 * 1024, "the whole body arrives");
    // 40 KiB at 10 KiB/s, sent in tenths of a second: about 4 s (the last
    // slice's wait ends after it is sent).
    assert!((3_800 * MS..=4_100 * MS).contains(&took), "{took:?}");
}

#[tokio::test(start_paused = true)]
async fn a_slow_upstream_fault_delays_each_attempt() {
    let up = ScriptedUpstream::new();
    let a = up.endpoint("a");
    let gw = gateway(
        &up,
        &config(
            &[a],
            "",
            "faults = [{ kind = \"slow\", delay = \"400ms\" }]",
        ),
    )
    .await;
    let (r, took) = get(&gw, "/x").await;
    assert_eq!(r.status, 200);
    assert_eq!(took, 400 * MS);
}

#[tokio::test(start_paused = true)]
async fn a_hanging_endpoint_meets_the_per_try_timeout_and_the_retry_goes_elsewhere() {
    let up = ScriptedUpstream::new();
    let a = up.endpoint("a");
    let b = up.endpoint("b");
    let gw = gateway(
        &up,
        &config(
            &[a, b],
            "retry = { attempts = 2, retry_on = [\"timeout\"], per_try_timeout = \"150ms\", backoff = { base = \"1ms\", max = \"1ms\" } }",
            &format!("faults = [{{ kind = \"hang\", endpoints = [\"{a}\"] }}]"),
        ),
    )
    .await;
    let mut hung = 0;
    for _ in 0..6 {
        let (r, took) = get(&gw, "/x").await;
        assert_eq!((r.status.as_u16(), r.body.as_str()), (200, "b"), "{r:?}");
        if !took.is_zero() {
            assert!((150 * MS..=151 * MS).contains(&took), "{took:?}");
            hung += 1;
        }
    }
    assert!(hung >= 1);
    assert_eq!(up.requests(a), 0, "the fault hangs before the endpoint");
    assert_eq!(gw.metric("levee_retries_total{route=\"r\"}"), hung as f64);
}

#[tokio::test(start_paused = true)]
async fn a_runtime_fault_removes_itself_at_its_expiry() {
    let up = ScriptedUpstream::new();
    let a = up.endpoint("a");
    let gw = gateway(&up, &config(&[a], "", "")).await;
    let c = Client::http1();
    let set = c
        .send(
            http::Request::post(format!("{}/api/v1/faults", gw.admin_url()))
                .body(
                    r#"{"route": "r", "fault": {"abort": {"status": 503}}, "expires_in": "2s"}"#
                        .into(),
                )
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(set.status, 201, "{}", set.body);
    let (r, _) = get(&gw, "/x").await;
    assert_eq!(r.status, 503);
    assert_eq!(r.header("levee-error"), Some("fault_injected"));
    tokio::time::sleep(Duration::from_millis(1_999)).await;
    assert_eq!(get(&gw, "/x").await.0.status, 503, "not yet expired");
    tokio::time::sleep(Duration::from_millis(2)).await;
    assert_eq!(get(&gw, "/x").await.0.status, 200, "expired");
    // The sweep removes it from the list within half a second.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let list = c
        .get(&format!("{}/api/v1/faults", gw.admin_url()))
        .await
        .json();
    assert_eq!(list["faults"].as_array().unwrap().len(), 0, "{list}");
    assert_eq!(gw.metric("levee_faults_runtime"), 0.0);
}
