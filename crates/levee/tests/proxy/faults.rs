//! Injected faults as clients see them: aborts by status, gRPC status and
//! reset; scopes, shares and `first`; Envoy's fault headers within their
//! caps; runtime faults through the admin API (bad input refused, removed
//! by hand or by a reload); and upstream faults that Levee's own retries
//! and breakers react to.

use levee_testkit::{Client, Cluster, FakeUpstream, GatewayConfig, Reply, Route, TestGateway};

fn one_route(route_extra: &str, cluster_extra: &str, up: &FakeUpstream) -> String {
    GatewayConfig::new()
        .route(Route::new("r", "c").raw(route_extra))
        .cluster(Cluster::new("c").endpoint(up).raw(cluster_extra))
        .toml()
}

#[tokio::test]
async fn an_abort_answers_its_status_to_requests_in_scope_only() {
    let up = FakeUpstream::start("up").await;
    let toml = one_route(
        r#"faults = [{ name = "boom", abort = { status = 503 }, when = { headers = [{ name = "x-chaos", exact = "1" }], methods = ["POST"] } }]"#,
        "",
        &up,
    );
    let gw = TestGateway::start(&toml).await;
    let c = Client::http1();
    let url = format!("{}/x", gw.url("public"));
    let post = |headers: &[(&str, &str)]| {
        let mut b = http::Request::post(&url);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(Default::default()).unwrap()
    };
    let hit = c.send(post(&[("x-chaos", "1")])).await.unwrap();
    assert_eq!(hit.status, 503);
    assert_eq!(hit.header("levee-error"), Some("fault_injected"));
    assert!(hit.header("x-request-id").is_some());
    assert!(hit.body.contains("fault_injected"), "{}", hit.body);
    assert_eq!(c.send(post(&[])).await.unwrap().status, 200, "no header");
    let get = c.get_with(&url, &[("x-chaos", "1")]).await;
    assert_eq!(get.status, 200, "not a POST");
    assert_eq!(
        up.requests(),
        2,
        "the aborted request never reached the upstream"
    );
    assert_eq!(
        gw.metric("levee_faults_injected_total{target=\"r\",fault=\"boom\"}"),
        1.0
    );
}

#[tokio::test]
async fn a_share_and_first_limit_which_requests_are_faulted() {
    let up = FakeUpstream::start("up").await;
    let toml = one_route(
        r#"faults = [{ name = "half", percent = 50, abort = { status = 500 } }]"#,
        "",
        &up,
    );
    let gw = TestGateway::start(&toml).await;
    let c = Client::http1();
    let url = format!("{}/x", gw.url("public"));
    let mut failed = 0;
    for _ in 0..400 {
        failed += usize::from(c.get(&url).await.status == 500);
    }
    assert!((140..=260).contains(&failed), "{failed} of 400");

    let up = FakeUpstream::start("up").await;
    let toml = one_route(
        r#"faults = [{ first = 3, abort = { status = 502 } }]"#,
        "",
        &up,
    );
    let gw = TestGateway::start(&toml).await;
    let url = format!("{}/x", gw.url("public"));
    let statuses: Vec<u16> = {
        let mut v = Vec::new();
        for _ in 0..6 {
            v.push(c.get(&url).await.status.as_u16());
        }
        v
    };
    assert_eq!(statuses, [502, 502, 502, 200, 200, 200]);
}

#[tokio::test]
async fn a_reset_abort_closes_the_connection_without_an_answer() {
    let up = FakeUpstream::start("up").await;
    let toml = one_route(r#"faults = [{ abort = "reset" }]"#, "", &up);
    let gw = TestGateway::start(&toml).await;
    let answered = crate::raw_exchange(
        gw.addr("public"),
        b"GET /x HTTP/1.1\r\nhost: t\r\n\r\n",
        std::time::Duration::from_secs(2),
    )
    .await;
    assert_eq!(answered, "", "nothing was answered");
    assert_eq!(up.requests(), 0);
}

#[tokio::test]
async fn a_grpc_abort_is_a_trailers_only_answer() {
    let up = FakeUpstream::start("up").await;
    let toml = one_route(r#"faults = [{ abort = { grpc_status = 14 } }]"#, "", &up);
    let gw = TestGateway::start(&toml).await;
    let r = Client::h2c()
        .send(
            http::Request::post(format!("{}/pkg.Svc/Call", gw.url("public")))
                .header("content-type", "application/grpc")
                .body(Default::default())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("grpc-status"), Some("14"));
    assert_eq!(r.header("levee-error"), Some("fault_injected"));
}

#[tokio::test]
async fn envoy_fault_headers_work_only_where_allowed_and_within_caps() {
    let up = FakeUpstream::start("up").await;
    let toml = GatewayConfig::new()
        .route(
            Route::new("allowed", "c")
                .prefix("/allowed")
                .raw("fault_headers = { max_delay = \"50ms\", max_percent = 100 }"),
        )
        .route(Route::new("plain", "c").prefix("/"))
        .cluster(Cluster::new("c").endpoint(&up))
        .toml();
    let gw = TestGateway::start(&toml).await;
    let c = Client::http1();
    let base = gw.url("public");
    let abort = [("x-envoy-fault-abort-request", "418")];
    assert_eq!(
        c.get_with(&format!("{base}/allowed"), &abort).await.status,
        418
    );
    assert_eq!(
        c.get_with(&format!("{base}/other"), &abort).await.status,
        200,
        "not allowed"
    );
    let grpc = [
        ("x-envoy-fault-abort-grpc-request", "8"),
        ("content-type", "application/grpc"),
    ];
    let r = c.get_with(&format!("{base}/allowed"), &grpc).await;
    assert_eq!(r.header("grpc-status"), Some("8"));
    let zero = [
        ("x-envoy-fault-abort-request", "503"),
        ("x-envoy-fault-abort-request-percentage", "0"),
    ];
    assert_eq!(
        c.get_with(&format!("{base}/allowed"), &zero).await.status,
        200
    );
    // A delay asked for beyond the cap is cut to it (50 ms), so a 10 minute
    // ask still answers.
    let long = [("x-envoy-fault-delay-request", "600000")];
    assert_eq!(
        c.get_with(&format!("{base}/allowed"), &long).await.status,
        200
    );
    assert_eq!(
        gw.metric("levee_faults_injected_total{target=\"allowed\",fault=\"envoy-headers\"}"),
        3.0
    );
}

#[tokio::test]
async fn runtime_faults_are_set_listed_removed_and_cleared_by_a_reload() {
    let up = FakeUpstream::start("up").await;
    let toml = one_route("", "", &up);
    let gw = TestGateway::start(&toml).await;
    let c = Client::http1();
    let admin = gw.admin_url();
    let post = |body: &str| {
        http::Request::post(format!("{admin}/api/v1/faults"))
            .body(body.to_string().into())
            .unwrap()
    };
    // Bad input: a located error, nothing set.
    let bad = c
        .send(post(
            r#"{"route": "r", "fault": {"abort": {"status": 99}}, "expires_in": "1m"}"#,
        ))
        .await
        .unwrap();
    assert_eq!(bad.status, 400);
    assert_eq!(bad.json()["diagnostics"][0]["path"], "fault.abort.status");
    let no_expiry = c
        .send(post(
            r#"{"route": "r", "fault": {"abort": {"status": 503}}}"#,
        ))
        .await
        .unwrap();
    assert_eq!(no_expiry.status, 400);
    assert!(no_expiry.body.contains("expires_in"), "{}", no_expiry.body);
    let too_long = c
        .send(post(
            r#"{"route": "r", "fault": {"abort": {"status": 503}}, "expires_in": "2d"}"#,
        ))
        .await
        .unwrap();
    assert_eq!(too_long.status, 400);
    let unknown = c
        .send(post(
            r#"{"route": "nope", "fault": {"abort": {"status": 503}}, "expires_in": "1m"}"#,
        ))
        .await
        .unwrap();
    assert_eq!(unknown.status, 404);
    // Set, seen, removed by hand.
    let set = c
        .send(post(r#"{"route": "r", "fault": {"name": "drill", "abort": {"status": 503}}, "expires_in": "10m"}"#))
        .await
        .unwrap();
    assert_eq!(set.status, 201, "{}", set.body);
    let id = set.json()["id"].as_u64().unwrap();
    let url = format!("{}/x", gw.url("public"));
    assert_eq!(c.get(&url).await.status, 503);
    let list = c.get(&format!("{admin}/api/v1/faults")).await.json();
    assert_eq!(list["faults"][0]["name"], "drill");
    assert_eq!(list["faults"][0]["injected"], 1);
    let del = c
        .send(
            http::Request::delete(format!("{admin}/api/v1/faults/{id}"))
                .body(Default::default())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(del.status, 200);
    assert_eq!(c.get(&url).await.status, 200);
    // Set again, then a reload clears it.
    assert_eq!(
        c.send(post(
            r#"{"route": "r", "fault": {"abort": {"status": 503}}, "expires_in": "10m"}"#
        ))
        .await
        .unwrap()
        .status,
        201
    );
    assert_eq!(c.get(&url).await.status, 503);
    gw.gateway
        .reload(levee_config::load_str(&toml, levee_config::Format::Toml, "t").unwrap())
        .await
        .unwrap();
    assert_eq!(
        c.get(&url).await.status,
        200,
        "a fault never outlives a reload"
    );
}

#[tokio::test]
async fn upstream_faults_are_met_by_retries_and_breakers_as_real_failures() {
    let [a, b] = FakeUpstream::start_each(["a", "b"]).await;
    // `a` refuses connections: every request still succeeds, through retries.
    let toml = GatewayConfig::new()
        .route(Route::new("r", "c").retry("attempts = 3, retry_on = [\"connect-failure\"]"))
        .cluster(
            Cluster::new("c")
                .endpoints([a.addr(), b.addr()])
                .raw(&format!(
                    "faults = [{{ kind = \"refuse\", endpoints = [\"{}\"] }}]",
                    a.addr()
                )),
        )
        .toml();
    let gw = TestGateway::start(&toml).await;
    let counts = Client::http1().burst(&gw.url("public"), 20).await;
    assert_eq!(counts.get("b"), Some(&20), "{counts:?}");
    assert_eq!(a.requests(), 0);
    assert!(gw.metric("levee_retries_total{route=\"r\"}") >= 1.0);

    // An `error` fault answers in the endpoint's place and opens its breaker.
    let up = FakeUpstream::start("up").await;
    let toml = one_route(
        "",
        "faults = [{ kind = \"error\", status = 503 }]\ncircuit_breaker = { cluster = { consecutive_failures = 5, base_open_time = \"30s\" } }",
        &up,
    );
    let gw = TestGateway::start(&toml).await;
    let c = Client::http1();
    let url = format!("{}/x", gw.url("public"));
    let mut statuses = Vec::new();
    for _ in 0..8 {
        let r = c.get(&url).await;
        statuses.push((
            r.status.as_u16(),
            r.header("levee-error").map(str::to_string),
        ));
    }
    assert_eq!(up.requests(), 0, "the endpoint never saw them");
    assert!(statuses[..5].iter().all(|(s, _)| *s == 503), "{statuses:?}");
    assert!(
        statuses[5..]
            .iter()
            .all(|(_, e)| e.as_deref() == Some("circuit_open")),
        "the breaker opened: {statuses:?}"
    );

    // A body reset mid-way reaches the client as a broken body.
    let big = FakeUpstream::builder("big")
        .otherwise(Reply::ok().body_size(100_000))
        .start()
        .await;
    let toml = one_route(
        "",
        "faults = [{ kind = \"reset_mid_body\", after_bytes = 1000 }]",
        &big,
    );
    let gw = TestGateway::start(&toml).await;
    let sent = c
        .send(
            http::Request::get(format!("{}/x", gw.url("public")))
                .body(Default::default())
                .unwrap(),
        )
        .await;
    assert!(sent.is_err(), "the body broke off: {sent:?}");
}
