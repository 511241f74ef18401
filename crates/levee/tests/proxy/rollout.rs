//! Rollouts end to end in one process: a route's cluster changed by a
//! reload is moved progressively, judged on live traffic against its
//! baseline, promoted or rolled back, gated by the error budget, and
//! driven by hand through the admin API.

use levee_testkit::{
    eventually, Client, Cluster, FakeUpstream, GatewayConfig, Reply, Route, TestGateway,
};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Requests in a loop until stopped, counting answers by status and body.
struct Traffic {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<HashMap<(u16, String), usize>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Traffic {
    fn start(url: String, every: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(HashMap::new()));
        let task = tokio::spawn({
            let (stop, seen) = (stop.clone(), seen.clone());
            async move {
                let c = Client::http1();
                while !stop.load(Ordering::Relaxed) {
                    let r = c.get(&url).await;
                    *seen
                        .lock()
                        .unwrap()
                        .entry((r.status.as_u16(), r.body))
                        .or_insert(0) += 1;
                    tokio::time::sleep(every).await;
                }
            }
        });
        Self { stop, seen, task }
    }

    /// Waits until `n` more answers from `body` than now have arrived.
    async fn wait_for_more(&self, body: &str, n: usize) {
        let count = |seen: &HashMap<(u16, String), usize>| -> usize {
            seen.iter()
                .filter(|((_, b), _)| b == body)
                .map(|(_, n)| n)
                .sum()
        };
        let start = count(&self.seen.lock().unwrap());
        let what = format!("{n} more answers from {body}");
        eventually(Duration::from_secs(10), &what, || async {
            count(&self.seen.lock().unwrap()) >= start + n
        })
        .await;
    }

    async fn finish(self) -> HashMap<(u16, String), usize> {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap();
        Arc::try_unwrap(self.seen).unwrap().into_inner().unwrap()
    }
}

fn config(ups: &[FakeUpstream; 2], cluster: &str, rollout: &str, extra: &str) -> String {
    GatewayConfig::new()
        .route(Route::new("api", cluster).raw(&format!("rollout = {rollout}")))
        .cluster(Cluster::new("v1").endpoint(&ups[0]))
        .cluster(Cluster::new("v2").endpoint(&ups[1]))
        .raw(extra)
        .toml()
}

async fn move_to(gw: &TestGateway, toml: &str) {
    let config = levee_config::load_str(toml, levee_config::Format::Toml, "t").unwrap();
    gw.gateway.reload(config).await.unwrap();
}

async fn phase(gw: &TestGateway) -> String {
    gw.control
        .rollout("api")
        .map(|r| r.phase.name().to_string())
        .unwrap_or_default()
}

async fn wait_for_phase(gw: &TestGateway, want: &str, within: Duration) {
    let what = format!("the rollout is {want}");
    eventually(within, &what, || async { phase(gw).await == want }).await;
}

const FAST: &str = r#"{ steps = [{ weight = 20, pause = "1s" }, { weight = 50, pause = "1s" }], analysis = { min_samples = 20, interval = "200ms" } }"#;

#[tokio::test]
async fn an_identical_version_is_walked_through_its_steps_and_promoted() {
    let ups = [
        FakeUpstream::builder("v1").start().await,
        FakeUpstream::builder("v2").start().await,
    ];
    let gw = TestGateway::start(&config(&ups, "v1", FAST, "")).await;
    assert_eq!(phase(&gw).await, "idle");
    let traffic = Traffic::start(gw.url("public"), Duration::from_millis(4));
    move_to(&gw, &config(&ups, "v2", FAST, "")).await;
    wait_for_phase(&gw, "promoted", Duration::from_secs(20)).await;
    let seen = traffic.finish().await;
    assert!(
        seen.keys().all(|(status, _)| *status == 200),
        "no request failed: {seen:?}"
    );
    let state = gw.control.rollout("api").unwrap();
    assert_eq!(state.stable, "v2", "the new version is now the stable one");
    assert_eq!(state.previous_stable.as_deref(), Some("v1"));
    let outcomes: Vec<&str> = state.decisions.iter().map(|d| d.outcome.as_str()).collect();
    assert!(
        outcomes.contains(&"advance") && outcomes.ends_with(&["promote"]),
        "{outcomes:?}"
    );
    assert!(
        !state.last_checks.is_empty(),
        "analysis values are recorded"
    );
    let counts = Client::http1().burst(&gw.url("public"), 20).await;
    assert_eq!(counts.get("v2"), Some(&20), "{counts:?}");
    // The API shows it with every value beside its threshold.
    let api = Client::http1()
        .get(&format!("{}/api/v1/rollouts/api", gw.admin_url()))
        .await;
    assert_eq!(api.status, 200);
    let json = api.json();
    assert_eq!(json["phase"], "promoted");
    assert!(json["decisions"].as_array().unwrap().len() >= 3);
    assert!(gw.metric("levee_rollout_phase{route=\"api\",phase=\"promoted\"}") == 1.0);
}

#[tokio::test]
async fn a_version_that_fails_requests_is_rolled_back_and_stays_out() {
    let ups = [
        FakeUpstream::builder("v1").start().await,
        FakeUpstream::builder("v2")
            .otherwise(Reply::cycle(&[200, 200, 200, 200, 500]))
            .start()
            .await,
    ];
    let slow = r#"{ steps = [{ weight = 20, pause = "30s" }], analysis = { min_samples = 20, interval = "200ms" }, gates = { max_budget_spend = "100%" } }"#;
    let slo = "[alerting]\nevaluate_every = \"1s\"\n\n[[slos]]\nname = \"api\"\nroute = \"api\"\nsli = \"availability\"\nobjective = \"90%\"\n";
    let gw = TestGateway::start(&config(&ups, "v1", slow, slo)).await;
    let traffic = Traffic::start(gw.url("public"), Duration::from_millis(4));
    move_to(&gw, &config(&ups, "v2", slow, slo)).await;
    wait_for_phase(&gw, "rolled_back", Duration::from_secs(20)).await;
    let seen = traffic.finish().await;
    let state = gw.control.rollout("api").unwrap();
    // The error-rate check or the budget the errors spent, whichever
    // decides first.
    let reason = state.reason.as_deref().unwrap_or("");
    assert!(
        reason.contains("error_rate") || reason.contains("budget"),
        "{reason}"
    );
    assert_eq!(state.stable, "v1");
    assert!(
        seen.keys().any(|(s, _)| *s == 500),
        "v2 failed some: {seen:?}"
    );
    // Until the config changes again, the old version serves everything.
    let counts = Client::http1().burst(&gw.url("public"), 20).await;
    assert_eq!(counts.get("v1"), Some(&20), "{counts:?}");
    move_to(&gw, &config(&ups, "v2", slow, slo)).await;
    assert_eq!(
        phase(&gw).await,
        "rolled_back",
        "an unchanged config does not retry"
    );
    // The SLO report names the deploy and what its canary cost. The whole
    // test can take less than one evaluation interval: evaluate now.
    gw.control.evaluate_slos().await;
    let slos = Client::http1()
        .get(&format!("{}/api/v1/slos", gw.admin_url()))
        .await
        .json();
    let deploy = &slos["slos"][0]["deploys"][0];
    assert_eq!(deploy["from"], "v1");
    assert_eq!(deploy["to"], "v2");
    assert_eq!(deploy["phase"], "rolled_back");
    assert!(
        deploy["canary_bad_requests"].as_u64().unwrap() > 0,
        "{deploy:#}"
    );
    let outcomes: Vec<&str> = deploy["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["outcome"].as_str())
        .collect();
    assert!(outcomes.ends_with(&["rollback"]), "{outcomes:?}");
}

#[tokio::test]
async fn commands_through_the_admin_api_pause_abort_and_undo() {
    let ups = [
        FakeUpstream::builder("v1").start().await,
        FakeUpstream::builder("v2").start().await,
    ];
    let held = r#"{ steps = [{ weight = 20, pause = "1h" }], analysis = { min_samples = 20, interval = "200ms" } }"#;
    let gw = TestGateway::start(&config(&ups, "v1", held, "")).await;
    move_to(&gw, &config(&ups, "v2", held, "")).await;
    wait_for_phase(&gw, "progressing", Duration::from_secs(5)).await;
    let c = Client::http1();
    let post = |action: &'static str| {
        let url = format!("{}/api/v1/rollouts/api/{action}", gw.admin_url());
        let c = c.clone();
        async move {
            c.send(http::Request::post(url).body(Default::default()).unwrap())
                .await
                .unwrap()
        }
    };
    assert_eq!(post("pause").await.status, 200);
    let again = post("pause").await;
    assert_eq!(again.status, 409);
    assert!(again.json()["message"].as_str().unwrap().contains("paused"));
    assert_eq!(post("resume").await.status, 200);
    assert_eq!(post("promote").await.status, 200);
    assert_eq!(phase(&gw).await, "promoted");
    assert_eq!(c.burst(&gw.url("public"), 10).await.get("v2"), Some(&10));
    // Undo goes back to the version before the promotion at once.
    let undone = post("undo").await;
    assert_eq!(undone.status, 200, "{}", undone.body);
    assert_eq!(undone.json()["phase"], "rolled_back");
    assert_eq!(c.burst(&gw.url("public"), 10).await.get("v1"), Some(&10));
    assert_eq!(post("bogus").await.status, 404);
    let missing = c
        .send(
            http::Request::post(format!("{}/api/v1/rollouts/nope/abort", gw.admin_url()))
                .body(Default::default())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(missing.status, 404);
}

#[tokio::test]
async fn a_rollout_does_not_start_while_the_error_budget_is_spent() {
    let ups = [
        FakeUpstream::builder("v1")
            .route("/fail", Reply::status(500))
            .start()
            .await,
        FakeUpstream::builder("v2").start().await,
    ];
    let slo = r#"
[alerting]
evaluate_every = "1s"

[[slos]]
name = "api-availability"
route = "api"
sli = "availability"
objective = "99%"
"#;
    let gw = TestGateway::start(&config(&ups, "v1", FAST, slo)).await;
    let c = Client::http1();
    for _ in 0..50 {
        c.get(&format!("{}/fail", gw.url("public"))).await;
    }
    gw.control.evaluate_slos().await;
    move_to(&gw, &config(&ups, "v2", FAST, slo)).await;
    let traffic = Traffic::start(gw.url("public"), Duration::from_millis(5));
    // The gate's decision is on record (the loop has looked), and traffic
    // goes on meanwhile.
    eventually(
        Duration::from_secs(10),
        "the gate holds the start",
        || async {
            gw.control
                .rollout("api")
                .and_then(|r| r.reason)
                .is_some_and(|r| r.contains("budget") || r.contains("page alert"))
        },
    )
    .await;
    traffic.wait_for_more("v1", 200).await;
    let seen = traffic.finish().await;
    let state = gw.control.rollout("api").unwrap();
    assert_eq!(state.phase.name(), "waiting", "{:?}", state.reason);
    let reason = state.reason.unwrap_or_default();
    assert!(
        reason.contains("budget") || reason.contains("page alert"),
        "{reason}"
    );
    assert!(
        seen.keys().all(|(_, body)| body == "v1"),
        "nothing reached v2: {seen:?}"
    );
}

#[tokio::test]
async fn a_restart_in_the_middle_resumes_at_the_same_step() {
    let ups = [
        FakeUpstream::builder("v1").start().await,
        FakeUpstream::builder("v2").start().await,
    ];
    let steps = r#"{ steps = [{ weight = 10, pause = "500ms" }, { weight = 50, pause = "1h" }], analysis = { min_samples = 10, interval = "100ms" } }"#;
    let store = "[store]\npath = \"levee.db\"\n";
    let gw = TestGateway::start_from_file(&config(&ups, "v1", steps, store)).await;
    let path = gw.config_path.clone().unwrap();
    std::fs::write(&path, config(&ups, "v2", steps, store)).unwrap();
    gw.gateway.reload_from_file().await.unwrap();
    let traffic = Traffic::start(gw.url("public"), Duration::from_millis(3));
    eventually(
        Duration::from_secs(15),
        "the rollout reaches step 2",
        || async { gw.control.rollout("api").is_some_and(|r| r.step == 1) },
    )
    .await;
    traffic.finish().await;
    let before = gw.control.rollout("api").unwrap();
    let gw = gw.restart().await;
    let after = gw.control.rollout("api").expect("restored from the store");
    assert_eq!(
        (after.phase, after.step, after.weight),
        (before.phase, 1, 5_000)
    );
    let log = |s: &levee_control::RolloutState| -> Vec<(u64, String, String)> {
        s.decisions
            .iter()
            .map(|d| (d.at_ns, d.outcome.clone(), d.reason.clone()))
            .collect()
    };
    assert_eq!(log(&after), log(&before), "the decision log survives");
    let counts = Client::http1().burst(&gw.url("public"), 400).await;
    let v2 = counts.get("v2").copied().unwrap_or(0);
    assert!((140..=260).contains(&v2), "half to v2 at once: {counts:?}");
}

#[tokio::test]
async fn blue_green_judges_preview_traffic_then_switches_with_no_failed_request() {
    let ups = [
        FakeUpstream::builder("v1").start().await,
        FakeUpstream::builder("v2").start().await,
    ];
    let bg = r#"{ strategy = "blue_green", preview = "1s", keep_old = "1h", force = [{ header = "x-preview", exact = "1" }], analysis = { min_samples = 20, interval = "100ms" } }"#;
    let gw = TestGateway::start(&config(&ups, "v1", bg, "")).await;
    let url = gw.url("public");
    // The preview header means nothing before the rollout.
    let c = Client::http1();
    assert_eq!(c.get_with(&url, &[("x-preview", "1")]).await.body, "v1");
    let traffic = Traffic::start(url.clone(), Duration::from_millis(3));
    move_to(&gw, &config(&ups, "v2", bg, "")).await;
    wait_for_phase(&gw, "progressing", Duration::from_secs(5)).await;
    // Preview: only requests with the header reach the new version.
    let previews = tokio::spawn({
        let url = url.clone();
        async move {
            let c = Client::http1();
            let mut bodies = Vec::new();
            for _ in 0..60 {
                bodies.push(c.get_with(&url, &[("x-preview", "1")]).await.body);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            bodies
        }
    });
    wait_for_phase(&gw, "switched", Duration::from_secs(15)).await;
    let previews = previews.await.unwrap();
    assert!(previews.iter().all(|b| b == "v2"), "{previews:?}");
    traffic.wait_for_more("v2", 20).await;
    // Switch back at once: `abort` while the old version is still warm.
    let abort = c
        .send(
            http::Request::post(format!("{}/api/v1/rollouts/api/abort", gw.admin_url()))
                .body(Default::default())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(abort.status, 200);
    traffic.wait_for_more("v1", 20).await;
    let seen = traffic.finish().await;
    assert!(
        seen.keys().all(|(s, _)| *s == 200),
        "no request failed: {seen:?}"
    );
    let plain: usize = seen
        .iter()
        .filter(|((_, b), _)| b == "v2")
        .map(|(_, n)| n)
        .sum();
    assert!(plain > 0, "after the switch everyone reached v2: {seen:?}");
    assert_eq!(
        c.burst(&url, 10).await.get("v1"),
        Some(&10),
        "switched back"
    );
}

#[tokio::test]
async fn webhooks_gate_the_start_and_hear_the_rollback() {
    use std::sync::atomic::AtomicU16;
    // A hook receiver: answers `status` to every POST and records phases.
    let status = Arc::new(AtomicU16::new(503));
    let phases = Arc::new(Mutex::new(Vec::<String>::new()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook_addr = listener.local_addr().unwrap();
    tokio::spawn({
        let (status, phases) = (status.clone(), phases.clone());
        async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (status, phases) = (status.clone(), phases.clone());
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(
                        move |req: http::Request<hyper::body::Incoming>| {
                            let (status, phases) = (status.clone(), phases.clone());
                            async move {
                                use http_body_util::BodyExt;
                                let body = req.into_body().collect().await.unwrap().to_bytes();
                                let json: serde_json::Value =
                                    serde_json::from_slice(&body).unwrap();
                                phases
                                    .lock()
                                    .unwrap()
                                    .push(json["phase"].as_str().unwrap().to_string());
                                let code = status.load(Ordering::Relaxed);
                                Ok::<_, std::convert::Infallible>(
                                    http::Response::builder()
                                        .status(code)
                                        .body(http_body_util::Full::new(bytes::Bytes::new()))
                                        .unwrap(),
                                )
                            }
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                        .await;
                });
            }
        }
    });
    let ups = [
        FakeUpstream::builder("v1").start().await,
        FakeUpstream::builder("v2")
            .otherwise(Reply::status(500))
            .start()
            .await,
    ];
    let hooked = format!(
        r#"{{ steps = [{{ weight = 50, pause = "1h" }}], analysis = {{ min_samples = 10, interval = "100ms" }}, webhooks = [{{ phase = "confirm-rollout", url = "http://{hook_addr}/confirm" }}, {{ phase = "rollback", url = "http://{hook_addr}/rollback" }}] }}"#
    );
    let gw = TestGateway::start(&config(&ups, "v1", &hooked, "")).await;
    move_to(&gw, &config(&ups, "v2", &hooked, "")).await;
    let traffic = Traffic::start(gw.url("public"), Duration::from_millis(3));
    eventually(
        Duration::from_secs(10),
        "the hook's refusal is on record",
        || async {
            gw.control
                .rollout("api")
                .and_then(|r| r.reason)
                .is_some_and(|r| r.contains("confirm-rollout"))
        },
    )
    .await;
    assert_eq!(
        phase(&gw).await,
        "waiting",
        "a 503 from confirm-rollout holds the start"
    );
    let reason = gw.control.rollout("api").unwrap().reason.unwrap();
    assert!(
        reason.contains("confirm-rollout") && reason.contains("503"),
        "{reason}"
    );
    status.store(200, Ordering::Relaxed);
    wait_for_phase(&gw, "rolled_back", Duration::from_secs(10)).await;
    traffic.finish().await;
    eventually(
        Duration::from_secs(5),
        "the rollback hook is called",
        || async { phases.lock().unwrap().iter().any(|p| p == "rollback") },
    )
    .await;
    assert!(phases
        .lock()
        .unwrap()
        .iter()
        .any(|p| p == "confirm-rollout"));
}

#[tokio::test]
async fn a_version_twice_as_slow_is_rolled_back_by_the_rank_test() {
    let ups = [
        FakeUpstream::builder("v1")
            .otherwise(Reply::ok().latency(Duration::from_millis(10)))
            .start()
            .await,
        FakeUpstream::builder("v2")
            .otherwise(Reply::ok().latency(Duration::from_millis(20)))
            .start()
            .await,
    ];
    let judged = r#"{ steps = [{ weight = 50, pause = "1h" }], analysis = { min_samples = 20, interval = "200ms" } }"#;
    let gw = TestGateway::start(&config(&ups, "v1", judged, "")).await;
    // Two callers, so the baseline and the canary see the same load.
    let traffic = [
        Traffic::start(gw.url("public"), Duration::from_millis(1)),
        Traffic::start(gw.url("public"), Duration::from_millis(1)),
    ];
    move_to(&gw, &config(&ups, "v2", judged, "")).await;
    wait_for_phase(&gw, "rolled_back", Duration::from_secs(20)).await;
    for t in traffic {
        t.finish().await;
    }
    let state = gw.control.rollout("api").unwrap();
    let failed: Vec<&str> = state
        .last_checks
        .iter()
        .filter(|c| c.outcome == "failed")
        .map(|c| c.name.as_str())
        .collect();
    assert!(
        failed.iter().any(|n| n.contains("latency")),
        "{:?}",
        state.last_checks
    );
    assert_eq!(state.canary_bad, 0, "no errors: latency alone failed it");
}

#[tokio::test]
async fn a_second_rollout_after_a_promotion_starts_from_zero() {
    let ups = [
        FakeUpstream::builder("v1").start().await,
        FakeUpstream::builder("v2").start().await,
    ];
    let v3 = FakeUpstream::builder("v3").start().await;
    let with_v3 = |cluster: &str, rollout: &str| {
        GatewayConfig::new()
            .route(Route::new("api", cluster).raw(&format!("rollout = {rollout}")))
            .cluster(Cluster::new("v1").endpoint(&ups[0]))
            .cluster(Cluster::new("v2").endpoint(&ups[1]))
            .cluster(Cluster::new("v3").endpoint(&v3))
            .toml()
    };
    let gw = TestGateway::start(&with_v3("v1", FAST)).await;
    move_to(&gw, &with_v3("v2", FAST)).await;
    let c = Client::http1();
    let promote = format!("{}/api/v1/rollouts/api/promote", gw.admin_url());
    wait_for_phase(&gw, "progressing", Duration::from_secs(5)).await;
    let r = c
        .send(
            http::Request::post(&promote)
                .body(Default::default())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["stable"], "v2", "the answer shows the promotion");
    // Next: v3, held at the start by a webhook nobody answers.
    let held = r#"{ steps = [{ weight = 50, pause = "1h" }], webhooks = [{ phase = "confirm-rollout", url = "http://127.0.0.1:9/never", timeout = "100ms" }] }"#;
    move_to(&gw, &with_v3("v3", held)).await;
    assert_eq!(phase(&gw).await, "waiting");
    let counts = c.burst(&gw.url("public"), 20).await;
    assert_eq!(
        counts.get("v2"),
        Some(&20),
        "nothing reaches v3 yet: {counts:?}"
    );
    // A promote given to a route without a rollout under way is refused.
    move_to(&gw, &with_v3("v2", held)).await;
    let r = c
        .send(
            http::Request::post(&promote)
                .body(Default::default())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 409, "{}", r.body);
}
