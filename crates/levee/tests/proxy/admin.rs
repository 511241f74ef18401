//! The admin API: health, readiness, metrics, config (redacted), clusters,
//! and the bearer token.

use levee_testkit::{Client, FakeUpstream, GatewayConfig, TestGateway};

#[tokio::test]
async fn admin_endpoints_publish_state() {
    let up = FakeUpstream::start("u").await;
    let gw = TestGateway::start(&crate::single_cluster(&[up.addr()], "")).await;
    let c = Client::http1();
    c.get(&format!("{}/x", gw.url("public"))).await;
    let admin = gw.admin_url();
    assert_eq!(c.get(&format!("{admin}/healthz")).await.status, 200);
    assert_eq!(c.get(&format!("{admin}/readyz")).await.status, 200);
    let metrics = c.get(&format!("{admin}/metrics")).await;
    assert!(metrics
        .header("content-type")
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    for family in [
        "# TYPE levee_requests_total counter",
        "# TYPE levee_request_duration_seconds histogram",
        "# TYPE levee_upstream_request_duration_seconds histogram",
        "# TYPE levee_errors_total counter",
        "# TYPE levee_downstream_connections_active gauge",
        "# TYPE levee_endpoint_healthy gauge",
        "# TYPE levee_config_reloads_total counter",
        "# TYPE levee_build_info gauge",
    ] {
        assert!(metrics.body.contains(family), "missing {family}");
    }
    assert!(metrics
        .body
        .contains("levee_requests_total{route=\"all\",cluster=\"c\",code=\"2xx\"} 1"));
    assert!(metrics
        .body
        .contains("levee_request_duration_seconds_count{route=\"all\"} 1"));

    let clusters = c.get(&format!("{admin}/api/v1/clusters")).await.json();
    let ep = &clusters["clusters"][0]["endpoints"][0];
    assert_eq!(ep["address"], up.addr().to_string());
    assert_eq!(ep["healthy"], true);
    assert_eq!(ep["in_flight"], 0);

    let listeners = c.get(&format!("{admin}/api/v1/listeners")).await.json();
    assert_eq!(listeners["listeners"][0]["name"], "public");

    let missing = c.get(&format!("{admin}/nope")).await;
    assert_eq!(missing.status, 404);
}

#[tokio::test]
async fn token_protects_everything_but_probes_and_is_never_shown() {
    let up = FakeUpstream::start("u").await;
    let token = "s3cret-token-0123456789";
    let config = format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\ntoken = \"{token}\"\n[runtime]\naccess_log = false\n\
         [[listeners]]\nname = \"public\"\nlisten = \"127.0.0.1:0\"\n[[routes]]\nname = \"r\"\ncluster = \"c\"\n[[clusters]]\nname = \"c\"\nendpoints = [\"{}\"]\n",
        up.addr()
    );
    let gw = TestGateway::start(&config).await;
    let c = Client::http1();
    let admin = gw.admin_url();
    for path in ["/metrics", "/api/v1/config", "/api/v1/clusters"] {
        let r = c.get(&format!("{admin}{path}")).await;
        assert_eq!(r.status, 401, "{path} without a token");
        assert_eq!(r.header("www-authenticate"), Some("Bearer"));
        let r = c
            .get_with(
                &format!("{admin}{path}"),
                &[("authorization", "Bearer wrong-token-000000000")],
            )
            .await;
        assert_eq!(r.status, 401, "{path} with a wrong token");
    }
    let auth = format!("Bearer {token}");
    let r = c
        .get_with(
            &format!("{admin}/api/v1/config"),
            &[("authorization", &auth)],
        )
        .await;
    assert_eq!(r.status, 200);
    assert!(
        !r.body.contains(token),
        "the token never appears in the API"
    );
    assert_eq!(r.json()["admin"]["token"], "<redacted>");
    assert_eq!(
        c.get(&format!("{admin}/healthz")).await.status,
        200,
        "probes need no token"
    );
    assert_eq!(c.get(&format!("{admin}/readyz")).await.status, 200);
}

#[test]
fn non_loopback_admin_without_token_is_refused() {
    let config = GatewayConfig::new().admin_listen("0.0.0.0:9901").toml();
    let err = levee_config::load_str(&config, levee_config::Format::Toml, "t.toml").unwrap_err();
    assert!(err.to_string().contains("admin.token"), "{err}");
}
