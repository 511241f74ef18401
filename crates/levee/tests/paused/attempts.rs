//! The attempt loop on paused time: the per-try timeout, backoff (and
//! `Retry-After`), the route's total timeout, the retry budget, and
//! hedging, each asserted to the virtual millisecond.

use crate::{config, gateway, get};
use levee_testkit::{ClientReply, ScriptedUpstream, Step, TestGateway};
use std::time::Duration;

const MS: Duration = Duration::from_millis(1);

#[tokio::test(start_paused = true)]
async fn a_hanging_endpoint_is_cut_at_the_per_try_timeout_and_retried_on_the_other() {
    let up = ScriptedUpstream::new();
    let hang = up.endpoint("hang");
    let ok = up.endpoint("ok");
    up.script(hang, [Step::hang()]);
    let gw = gateway(
        &up,
        &config(
            &[hang, ok],
            "retry = { attempts = 2, retry_on = [\"timeout\"], per_try_timeout = \"150ms\", backoff = { base = \"1ms\", max = \"1ms\" } }",
            "",
        ),
    )
    .await;
    let mut slow = 0;
    for _ in 0..6 {
        let (r, took) = get(&gw, "/x").await;
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.body, "ok");
        if took.is_zero() {
            continue;
        }
        // Cut at exactly 150 ms, then at most the 1 ms backoff.
        assert!(
            (150 * MS..=151 * MS).contains(&took),
            "per-try timeout then retry: {took:?}"
        );
        slow += 1;
    }
    // (A retry takes a turn of the round robin too, so with two endpoints
    // the first attempts keep landing on the same one.)
    assert!(slow >= 1);
    assert_eq!(up.requests(hang), slow, "each slow answer was one hang");
    assert_eq!(up.requests(ok), 6);
    assert_eq!(gw.metric("levee_retries_total{route=\"r\"}"), slow as f64);
}

#[tokio::test(start_paused = true)]
async fn backoff_waits_with_full_jitter_and_retry_after_sets_a_floor() {
    let up = ScriptedUpstream::new();
    let failing = up.endpoint("failing");
    let ok = up.endpoint("ok");
    up.script(failing, [Step::status(503)]);
    up.script_path(
        failing,
        "/later",
        [Step::status(503).header("retry-after", "1")],
    );
    let gw = gateway(
        &up,
        &config(
            &[failing, ok],
            "retry = { attempts = 2, retry_on = [\"5xx\"], backoff = { base = \"400ms\", max = \"400ms\" }, retry_after_max = \"2s\" }",
            "",
        ),
    )
    .await;
    // Full jitter: the wait is anywhere in [0, 400ms].
    let mut waits = Vec::new();
    for _ in 0..20 {
        let (r, took) = get(&gw, "/now").await;
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.body, "ok");
        assert!(took <= 400 * MS, "the backoff's ceiling: {took:?}");
        waits.push(took);
    }
    assert_eq!(
        gw.metric("levee_retries_total{route=\"r\"}"),
        up.requests(failing) as f64
    );
    let mut distinct = waits.clone();
    distinct.sort();
    distinct.dedup();
    assert!(distinct.len() >= 3, "jittered waits: {waits:?}");

    // `Retry-After: 1` is longer than any backoff here: exactly 1 s.
    for _ in 0..4 {
        let (r, took) = get(&gw, "/later").await;
        assert_eq!(r.status, 200, "{r:?}");
        assert!(
            took.is_zero() || took == Duration::from_secs(1),
            "the upstream's Retry-After is the wait: {took:?}"
        );
    }
    // The upstream saw the retry exactly one second after the failure.
    let arrivals = up.arrivals();
    let later: Vec<_> = arrivals.iter().filter(|a| a.path == "/later").collect();
    for pair in later.windows(2) {
        if pair[0].addr == failing && pair[1].addr == ok {
            assert_eq!(pair[1].at - pair[0].at, Duration::from_secs(1));
        }
    }
}

#[tokio::test(start_paused = true)]
async fn the_total_timeout_bounds_every_attempt_and_wait() {
    let up = ScriptedUpstream::new();
    let eps: Vec<_> = ["h1", "h2", "h3"].iter().map(|n| up.endpoint(n)).collect();
    for &e in &eps {
        up.script(e, [Step::hang()]);
    }
    let gw = gateway(
        &up,
        &config(
            &eps,
            "timeout = \"1s\"\nretry = { attempts = 5, retry_on = [\"timeout\"], per_try_timeout = \"400ms\", backoff = { base = \"1ms\", max = \"1ms\" } }",
            "",
        ),
    )
    .await;
    let (r, took) = get(&gw, "/x").await;
    assert_eq!(r.status, 504, "{r:?}");
    assert_eq!(r.header("levee-error"), Some("upstream_timeout"), "{r:?}");
    // Two full tries (400 ms each, plus at most 1 ms of backoff each), then
    // a third cut short by the deadline: the client waited exactly 1 s.
    assert_eq!(took, Duration::from_secs(1), "{r:?}");
    let arrivals = up.arrivals();
    assert_eq!(arrivals.len(), 3, "three endpoints, one try each");
    let start = arrivals[0].at;
    assert!((400 * MS..=401 * MS).contains(&(arrivals[1].at - start)));
    assert!((800 * MS..=802 * MS).contains(&(arrivals[2].at - start)));
}

#[tokio::test(start_paused = true)]
async fn the_retry_budget_refuses_retries_until_its_window_has_passed() {
    let up = ScriptedUpstream::new();
    let a = up.endpoint("a");
    let b = up.endpoint("b");
    up.script(a, [Step::status(503)]);
    up.script(b, [Step::status(503)]);
    let gw = gateway(
        &up,
        &config(
            &[a, b],
            "retry = { attempts = 2, retry_on = [\"gateway-error\"], backoff = { base = \"1ms\", max = \"1ms\" }, budget = { ratio = \"10%\", min_per_second = 1, window = \"10s\" } }",
            "",
        ),
    )
    .await;
    let retries = || gw.metric("levee_retries_total{route=\"r\"}");
    let exhausted = || gw.metric("levee_retry_budget_exhausted_total{route=\"r\"}");
    for _ in 0..50 {
        assert_eq!(get(&gw, "/x").await.0.status, 503);
    }
    // Time barely moves (a millisecond of backoff per retry), so the window
    // holds all 50 requests: the floor (1/s over 10 s) plus 10% of 50.
    assert_eq!(retries(), 15.0);
    assert_eq!(exhausted(), 35.0);
    assert_eq!(up.requests(a) + up.requests(b), 50 + 15);

    // Once the window has passed, the budget has room again.
    tokio::time::sleep(Duration::from_secs(11)).await;
    assert_eq!(get(&gw, "/x").await.0.status, 503);
    assert_eq!(retries(), 16.0, "retried again after the window");
}

#[tokio::test(start_paused = true)]
async fn a_slow_first_attempt_is_hedged_after_the_delay_and_the_hedge_wins() {
    let up = ScriptedUpstream::new();
    let slow = up.endpoint("slow");
    let fast = up.endpoint("fast");
    up.script(slow, [Step::ok().after(Duration::from_secs(2))]);
    let gw = gateway(
        &up,
        &config(&[slow, fast], "hedge = { delay = \"50ms\" }", ""),
    )
    .await;
    let mut hedged = 0;
    for _ in 0..10 {
        let (r, took) = get(&gw, "/x").await;
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.body, "fast", "the hedge's answer wins");
        if !took.is_zero() {
            assert_eq!(took, 50 * MS, "answered as soon as the hedge was");
            hedged += 1;
        }
    }
    // Round robin gives `slow` at least every other first attempt (all of
    // them, as a hedge takes a turn of the round robin too).
    assert!(hedged >= 5, "hedged {hedged}");
    assert_eq!(up.requests(slow), hedged, "each hedge followed a slow try");
    assert_eq!(up.requests(fast), 10);
    assert_eq!(gw.metric("levee_hedges_total{route=\"r\"}"), hedged as f64);
    assert_eq!(
        gw.metric("levee_hedge_wins_total{route=\"r\"}"),
        hedged as f64
    );
    // Each hedge reached `fast` 50 ms after its first attempt reached `slow`.
    let arrivals = up.arrivals();
    for pair in arrivals.windows(2) {
        if pair[0].addr == slow {
            assert_eq!(pair[1].addr, fast);
            assert_eq!(pair[1].at - pair[0].at, 50 * MS);
        }
    }
    // The lost attempts were cancelled at once: nothing is left in flight.
    assert_eq!(
        gw.metric("levee_cluster_retries_in_flight{cluster=\"c\"}"),
        0.0
    );
    let in_flight =
        format!("levee_endpoint_requests_in_flight{{cluster=\"c\",endpoint=\"{slow}\"}}");
    assert_eq!(gw.metric(&in_flight), 0.0);
    assert_eq!(gw.admin_api().endpoint(slow).await.unwrap().in_flight, 0);

    // A POST is not idempotent: it is never hedged and waits for its
    // endpoint (2 s on `slow`).
    let url = format!("{}/x", gw.url("public"));
    let mut answers = Vec::new();
    for _ in 0..2 {
        let post = http::Request::post(url.clone())
            .body(http_body_util::Full::new(bytes::Bytes::from_static(b"{}")))
            .unwrap();
        let started = crate::now();
        let r = levee_testkit::Client::http1().send(post).await.unwrap();
        assert_eq!(r.status, 200, "{r:?}");
        answers.push((r.body, crate::now() - started));
    }
    answers.sort();
    assert_eq!(
        answers,
        [
            ("fast".to_string(), Duration::ZERO),
            ("slow".to_string(), Duration::from_secs(2))
        ],
        "one POST waited for the slow endpoint"
    );
    assert_eq!(
        gw.metric("levee_hedges_total{route=\"r\"}"),
        hedged as f64,
        "no POST was hedged"
    );
}

#[tokio::test(start_paused = true)]
async fn refused_and_unfinished_connects_and_a_reset_body_are_classified() {
    let up = ScriptedUpstream::new();
    let refusing = up.endpoint("refusing");
    let silent = up.endpoint("silent");
    let resetting = up.endpoint("resetting");
    up.set_connect(refusing, levee_testkit::Connect::Refuse);
    up.set_connect(silent, levee_testkit::Connect::Never);
    up.script(resetting, [Step::reset_mid_body()]);
    let toml = format!(
        "{}{}\
         [[routes]]\nname = \"refused\"\ncluster = \"refusing\"\nmatch = {{ path = {{ prefix = \"/refused\" }} }}\n\
         [[routes]]\nname = \"silent\"\ncluster = \"silent\"\nmatch = {{ path = {{ prefix = \"/silent\" }} }}\n\
         [[routes]]\nname = \"reset\"\ncluster = \"resetting\"\n\
         [[clusters]]\nname = \"refusing\"\nendpoints = [\"{refusing}\"]\n\
         [[clusters]]\nname = \"silent\"\nendpoints = [\"{silent}\"]\nconnect_timeout = \"300ms\"\n\
         [[clusters]]\nname = \"resetting\"\nendpoints = [\"{resetting}\"]\n",
        crate::PREAMBLE,
        crate::LISTENER
    );
    let gw = gateway(&up, &toml).await;

    let (r, took) = get(&gw, "/refused").await;
    assert_eq!(r.header("levee-error"), Some("connect_refused"), "{r:?}");
    assert!(r.status.is_server_error(), "{r:?}");
    assert!(took.is_zero());
    assert_eq!(up.connects(refusing), 1);
    assert_eq!(up.requests(refusing), 0);

    let (r, took) = get(&gw, "/silent").await;
    assert_eq!(r.header("levee-error"), Some("connect_timeout"), "{r:?}");
    assert!(r.status.is_server_error(), "{r:?}");
    assert_eq!(took, 300 * MS, "cut at the cluster's connect timeout");

    // The head went out before the body broke: the client's response
    // ends early, and the upstream's connection is not reused.
    let result = levee_testkit::Client::http1()
        .send(
            http::Request::get(format!("{}/reset", gw.url("public")))
                .body(Default::default())
                .unwrap(),
        )
        .await;
    assert!(result.is_err(), "a truncated body is an error: {result:?}");
    let _ = levee_testkit::Client::http1()
        .send(
            http::Request::get(format!("{}/reset", gw.url("public")))
                .body(Default::default())
                .unwrap(),
        )
        .await;
    assert_eq!(up.requests(resetting), 2);
    assert_eq!(
        up.connects(resetting),
        2,
        "a broken connection is not pooled"
    );
}

/// `n` concurrent GETs to a cluster of `a`, which answers 503 at once, and
/// `b`, which answers 200 after 2 s, on a route that retries 5xx once.
/// Requests whose first attempt hit `a` want a retry; the first one granted
/// goes to `b` and stays in flight for 2 s, while the others ask.
async fn failures_racing_for_retries(
    retry_extra: &str,
    cluster_extra: &str,
    n: usize,
) -> (
    TestGateway,
    ScriptedUpstream,
    [std::net::SocketAddr; 2],
    Vec<ClientReply>,
) {
    let up = ScriptedUpstream::new();
    let a = up.endpoint("a");
    let b = up.endpoint("b");
    up.script(a, [Step::status(503)]);
    up.script(b, [Step::ok().after(Duration::from_secs(2))]);
    let gw = std::sync::Arc::new(
        gateway(
            &up,
            &config(
                &[a, b],
                &format!("retry = {{ attempts = 2, retry_on = [\"5xx\"]{retry_extra} }}"),
                cluster_extra,
            ),
        )
        .await,
    );
    let mut handles = Vec::new();
    for _ in 0..n {
        handles.push(crate::spawn_get(&gw, "/x").await);
    }
    let gauge = "levee_cluster_retries_in_flight{cluster=\"c\"}";
    // Every first attempt arrives before the clock moves; then the retries
    // wait their backoff (25 ms at most): step the clock through it.
    crate::settle("every first attempt arrives", || {
        up.requests(a) + up.requests(b) >= n
    })
    .await;
    for _ in 0..30 {
        if gw.metric(gauge) == 1.0 {
            break;
        }
        tokio::time::sleep(MS).await;
    }
    assert_eq!(gw.metric(gauge), 1.0, "a retry in flight");
    let retries_in_flight =
        || async { crate::cluster(&gw).await["bulkheads"]["retries_in_flight"].clone() };
    assert_eq!(retries_in_flight().await, 1);
    let mut replies = Vec::new();
    for h in handles {
        replies.push(h.await.unwrap().0);
    }
    assert_eq!(gw.metric(gauge), 0.0, "no retry in flight");
    assert_eq!(retries_in_flight().await, 0);
    let gw = std::sync::Arc::into_inner(gw).expect("the requests are done");
    (gw, up, [a, b], replies)
}

/// What both concurrent retry caps guarantee in [`failures_racing_for_retries`]:
/// exactly one retry, and every other failure answered as it was.
fn assert_one_retry(
    gw: &TestGateway,
    up: &ScriptedUpstream,
    [a, b]: [std::net::SocketAddr; 2],
    replies: &[ClientReply],
) {
    let n = replies.len();
    let failed_first = up.requests(a);
    assert!(failed_first >= 2, "several first attempts went to a");
    assert_eq!(gw.metric("levee_retries_total{route=\"r\"}"), 1.0);
    assert_eq!(up.requests(b), n - failed_first + 1, "one retry went to b");
    let ok = replies.iter().filter(|r| r.status == 200).count();
    let unavailable = replies
        .iter()
        .filter(|r| r.status == 503 && r.header("levee-error").is_none())
        .count();
    assert_eq!(ok, n - failed_first + 1, "{replies:?}");
    assert_eq!(unavailable, failed_first - 1, "{replies:?}");
}

#[tokio::test(start_paused = true)]
async fn max_retries_caps_retries_in_flight_for_the_cluster() {
    // The route's own concurrent cap is far away: the cluster's applies.
    let (gw, up, eps, replies) = failures_racing_for_retries(
        ", budget = { min_concurrent = 100 }",
        "limits = { max_retries = 1 }",
        6,
    )
    .await;
    assert_one_retry(&gw, &up, eps, &replies);
    // Refused by the bulkhead, not by the route's budget.
    assert_eq!(
        gw.metric("levee_retry_budget_exhausted_total{route=\"r\"}"),
        0.0
    );
}

#[tokio::test(start_paused = true)]
async fn the_route_budget_caps_concurrent_retries() {
    let (gw, up, eps, replies) = failures_racing_for_retries(
        ", budget = { max_concurrent_ratio = \"0%\", min_concurrent = 1 }",
        "",
        6,
    )
    .await;
    assert_one_retry(&gw, &up, eps, &replies);
    assert_eq!(
        gw.metric("levee_retry_budget_exhausted_total{route=\"r\"}"),
        (up.requests(eps[0]) - 1) as f64,
        "every refused retry is counted"
    );
}

#[tokio::test(start_paused = true)]
async fn retry_after_beyond_the_cap_stops_retries() {
    let up = ScriptedUpstream::new();
    let eps = [up.endpoint("a"), up.endpoint("b")];
    for e in eps {
        up.script(e, [Step::status(503)]);
        up.script_path(e, "/later", [Step::status(503).header("retry-after", "30")]);
        up.script_path(e, "/soon", [Step::status(503).header("retry-after", "1")]);
        up.script_path(e, "/now", [Step::status(503).header("retry-after", "0")]);
    }
    let gw = gateway(
        &up,
        &config(
            &eps,
            "retry = { attempts = 2, retry_on = [\"5xx\"], retry_after_max = \"1s\" }",
            "",
        ),
    )
    .await;
    let sent = |path: &str| up.requests_to(eps[0], path) + up.requests_to(eps[1], path);
    for _ in 0..4 {
        let (r, took) = get(&gw, "/later").await;
        assert_eq!(r.status, 503);
        assert!(took.is_zero(), "nothing waited: {took:?}");
    }
    assert_eq!(
        sent("/later"),
        4,
        "a 30 s wait is beyond retry_after_max: no retry"
    );
    assert_eq!(gw.metric("levee_retries_total{route=\"r\"}"), 0.0);
    for path in ["/now", "/plain"] {
        for _ in 0..4 {
            let (r, took) = get(&gw, path).await;
            assert_eq!(r.status, 503);
            assert!(took <= 25 * MS, "at most the default backoff: {took:?}");
        }
        assert_eq!(sent(path), 8, "{path} is retried once per request");
    }
    // Within the cap, the retry waits as asked (exactly 1 s), then goes.
    let (r, took) = get(&gw, "/soon").await;
    assert_eq!(r.status, 503);
    assert_eq!(took, Duration::from_secs(1));
    assert_eq!(sent("/soon"), 2);
    assert_eq!(gw.metric("levee_retries_total{route=\"r\"}"), 9.0);
}
