//! Active health checks: ejection, restoration and panic mode.

use levee_testkit::{eventually, Client, FakeUpstream, TestGateway};
use std::time::Duration;

const HC: &str = "health_check = { path = \"/healthz\", interval = \"50ms\", jitter = \"10ms\", timeout = \"40ms\", healthy_threshold = 2, unhealthy_threshold = 2 }";

async fn endpoint_healthy(gw: &TestGateway, addr: std::net::SocketAddr) -> Option<bool> {
    Some(gw.admin_api().endpoint(addr).await?.healthy)
}

#[tokio::test]
async fn failing_endpoint_leaves_rotation_and_returns() {
    let [a, b] = FakeUpstream::start_each(["a", "b"]).await;
    let a_addr = a.addr();
    let gw = TestGateway::start(&crate::single_cluster(&[a_addr, b.addr()], HC)).await;
    eventually(Duration::from_secs(5), "health checks probe a", || async {
        a.requests_to("/healthz") >= 2
    })
    .await;

    drop(a); // a stops: probes are refused
    eventually(Duration::from_secs(5), "a marked unhealthy", || async {
        endpoint_healthy(&gw, a_addr).await == Some(false)
    })
    .await;
    let series = format!("levee_endpoint_healthy{{cluster=\"c\",endpoint=\"{a_addr}\"}}");
    assert_eq!(gw.metric(&series), 0.0);
    let c = Client::http1();
    for _ in 0..20 {
        let r = c.get(&format!("{}/", gw.url("public"))).await;
        assert_eq!(r.status, 200, "no request goes to the ejected endpoint");
        assert_eq!(r.body, "b");
    }

    // a comes back on the same port: it returns to rotation.
    let a = FakeUpstream::builder("a").bind(a_addr).start().await;
    eventually(Duration::from_secs(5), "a healthy again", || async {
        endpoint_healthy(&gw, a_addr).await == Some(true)
    })
    .await;
    for _ in 0..10 {
        c.get(&format!("{}/", gw.url("public"))).await;
    }
    assert!(
        a.requests_to("/") > 0,
        "restored endpoint takes traffic again"
    );
    assert!(gw.metric("levee_health_checks_total{cluster=\"c\",result=\"failure\"}") >= 2.0);
}

#[tokio::test]
async fn all_unhealthy_means_panic_mode_routing_to_all() {
    // Both answer traffic but fail their health endpoint.
    let a = FakeUpstream::builder("a")
        .route("/healthz", levee_testkit::Reply::status(503))
        .start()
        .await;
    let b = FakeUpstream::builder("b")
        .route("/healthz", levee_testkit::Reply::status(503))
        .start()
        .await;
    let gw = TestGateway::start(&crate::single_cluster(&[a.addr(), b.addr()], HC)).await;
    eventually(Duration::from_secs(5), "panic mode", || async {
        gw.metric("levee_cluster_panic_mode{cluster=\"c\"}") == 1.0
    })
    .await;
    let c = Client::http1();
    for _ in 0..20 {
        assert_eq!(c.get(&format!("{}/", gw.url("public"))).await.status, 200);
    }
    assert!(
        a.requests_to("/") > 0 && b.requests_to("/") > 0,
        "panic mode routes to every endpoint"
    );
    assert!(gw.admin_api().cluster("c").await.panic_mode);
}

#[tokio::test]
async fn failing_endpoints_are_ejected_by_live_traffic_and_return() {
    let bad = FakeUpstream::builder("bad")
        .otherwise(levee_testkit::Reply::status(500))
        .start()
        .await;
    let good = FakeUpstream::start("good").await;
    let gw = TestGateway::start(&crate::single_cluster(
        &[bad.addr(), good.addr()],
        "outlier_detection = { consecutive_5xx = 3, interval = \"50ms\", base_ejection_time = \"300ms\", max_ejection_time = \"1s\" }",
    ))
    .await;
    let c = Client::http1();
    let url = format!("{}/", gw.url("public"));
    // Round robin: the bad endpoint answers every other request until its
    // third 500 in a row ejects it.
    for _ in 0..6 {
        c.get(&url).await;
    }
    assert_eq!(bad.requests(), 3, "ejected after three 5xx in a row");
    let series = format!(
        "levee_endpoint_outlier_ejected{{cluster=\"c\",endpoint=\"{}\"}}",
        bad.addr()
    );
    assert_eq!(gw.metric(&series), 1.0);
    let status = gw.admin_api().endpoint(bad.addr()).await.unwrap();
    assert!(status.ejected);
    assert_eq!(status.ejection_cause.as_deref(), Some("consecutive_5xx"));
    for _ in 0..10 {
        assert_eq!(
            c.get(&url).await.body,
            "good",
            "no traffic to the ejected endpoint"
        );
    }
    // The ejection expires: the endpoint gets traffic again.
    eventually(Duration::from_secs(5), "ejection expired", || async {
        gw.metric(&series) == 0.0
    })
    .await;
    for _ in 0..4 {
        c.get(&url).await;
    }
    assert!(
        bad.requests() > 3,
        "back in rotation after its ejection time"
    );
}
