//! The cluster's concurrency limit and admission queue on paused time:
//! with a limit of 1, a queued request is admitted the moment the first
//! finishes, and one that waits past its class's queue time is shed.

use crate::{config, gateway, get, now, settle, spawn_get};
use levee_testkit::{ClientReply, ScriptedUpstream, Step};
use std::sync::Arc;
use std::time::Duration;

const MS: Duration = Duration::from_millis(1);

fn limit_one(max_queue_time: &str) -> String {
    format!(
        "[clusters.concurrency]\nalgorithm = \"fixed\"\nlimit = 1\nmin_limit = 1\nmax_queue_len = 10\n\
         [clusters.concurrency.classes]\ndefault = {{ max_queue_time = \"{max_queue_time}\" }}\n"
    )
}

#[tokio::test(start_paused = true)]
async fn a_queued_request_is_admitted_when_the_one_in_flight_finishes() {
    let up = ScriptedUpstream::new();
    let a = up.endpoint("a");
    up.script(a, [Step::ok().after(300 * MS)]);
    let gw = Arc::new(gateway(&up, &config(&[a], "", &limit_one("2s"))).await);
    let started = now();
    let first = spawn_get(&gw, "/first").await;
    settle("the first request reaches the upstream", || {
        up.requests(a) == 1
    })
    .await;
    let second = spawn_get(&gw, "/second").await;
    settle("the second request is queued", || {
        gw.metric("levee_cluster_queued_requests{cluster=\"c\"}") == 1.0
    })
    .await;
    assert_eq!(up.requests(a), 1, "the limit holds the second back");

    let (r1, t1) = first.await.unwrap();
    assert_eq!(r1.status, 200, "{r1:?}");
    assert_eq!(t1, 300 * MS);
    let (r2, t2) = second.await.unwrap();
    assert_eq!(r2.status, 200, "{r2:?}");
    // Admitted at 300 ms, answered 300 ms later.
    assert_eq!(t2, 600 * MS);
    let arrivals = up.arrivals();
    assert_eq!(arrivals[1].path, "/second");
    assert_eq!(arrivals[1].at - started, 300 * MS);
}

/// A limit of 1 held for 2 s by the first request; the second, whose class
/// queues for 500 ms at most, is shed. Returns its reply and wait.
async fn shed_while_the_first_holds_the_limit() -> (ClientReply, Duration) {
    let up = ScriptedUpstream::new();
    let a = up.endpoint("a");
    up.script(a, [Step::ok().after(Duration::from_secs(2))]);
    let gw = Arc::new(gateway(&up, &config(&[a], "", &limit_one("500ms"))).await);
    let first = spawn_get(&gw, "/first").await;
    settle("the first request reaches the upstream", || {
        up.requests(a) == 1
    })
    .await;
    let (shed, waited) = get(&gw, "/second").await;
    assert_eq!(shed.status, 503, "{shed:?}");
    assert_eq!(shed.header("levee-error"), Some("overloaded"), "{shed:?}");
    assert_eq!(
        gw.metric("levee_cluster_shed_total{cluster=\"c\",reason=\"queue_timeout\"}"),
        1.0
    );
    assert_eq!(
        up.requests(a),
        1,
        "the shed request never reached the upstream"
    );
    let (r1, t1) = first.await.unwrap();
    assert_eq!(r1.status, 200, "{r1:?}");
    assert_eq!(t1, Duration::from_secs(2));
    (shed, waited)
}

#[tokio::test(start_paused = true)]
async fn a_request_that_waits_past_its_queue_time_is_shed() {
    let (_, waited) = shed_while_the_first_holds_the_limit().await;
    assert!(waited >= 500 * MS, "it waited its queue time: {waited:?}");
}

/// A waiter is shed the moment its class's `max_queue_time` is up, not
/// when the queue is next touched (before the fix, only when the first
/// request ended at 2 s: `ClusterQueue::admit` waited for the deadline).
#[tokio::test(start_paused = true)]
async fn a_request_is_shed_as_soon_as_it_has_waited_its_queue_time() {
    let (_, waited) = shed_while_the_first_holds_the_limit().await;
    assert_eq!(waited, 500 * MS);
}
