//! Routing: host, path, method and header matches in declared order, rewrites,
//! header edits, forwarding headers, request ids, Host handling, 404.

use crate::raw_exchange;
use levee_testkit::{Client, Cluster, FakeUpstream, GatewayConfig, Reply, Route, TestGateway};
use std::time::Duration;

/// Method, host, path, extra headers, expected upstream (None: 404).
type Case<'a> = (
    &'a str,
    &'a str,
    &'a str,
    &'a [(&'a str, &'a str)],
    Option<&'a str>,
);

#[tokio::test]
async fn routes_match_in_declared_order_by_host_path_method_and_header() {
    let matches = [
        (
            "exact",
            r#"hosts = ["api.example.com"], path = { exact = "/v1/items" }"#,
        ),
        (
            "wild",
            r#"hosts = ["*.example.com"], path = { prefix = "/v1/" }"#,
        ),
        ("regex", r#"path = { regex = "/users/[0-9]+" }"#),
        ("method", r#"methods = ["DELETE"]"#),
        (
            "header",
            r#"headers = [{ name = "x-canary", exact = "on" }]"#,
        ),
        ("fallback", r#"path = { prefix = "/static/" }"#),
    ];
    // Each route goes to a cluster of its own name, served by an upstream
    // of that name.
    let mut config = GatewayConfig::new();
    let mut ups = Vec::new();
    for (name, _) in matches {
        ups.push(FakeUpstream::start(name).await);
    }
    for (name, m) in matches {
        config = config.route(Route::new(name, name).matches(m));
    }
    for ((name, _), up) in matches.iter().zip(&ups) {
        config = config.cluster(Cluster::new(name).endpoint(up));
    }
    let gw = TestGateway::start(&config.toml()).await;
    let base = gw.url("public");
    let c = Client::http1();
    let cases: [Case<'_>; 9] = [
        ("GET", "api.example.com", "/v1/items", &[], Some("exact")),
        ("GET", "API.Example.com:80", "/v1/items", &[], Some("exact")),
        ("GET", "shop.example.com", "/v1/items", &[], Some("wild")),
        ("GET", "api.example.com", "/v1/other", &[], Some("wild")),
        ("GET", "x.test", "/users/42", &[], Some("regex")),
        ("DELETE", "x.test", "/users/x", &[], Some("method")),
        (
            "GET",
            "x.test",
            "/anything",
            &[("x-canary", "on")],
            Some("header"),
        ),
        ("GET", "x.test", "/static/app.js", &[], Some("fallback")),
        ("GET", "x.test", "/nothing", &[], None),
    ];
    for (method, host, path, headers, expected) in cases {
        let mut b = http::Request::builder()
            .method(method)
            .uri(format!("{base}{path}"))
            .header("host", host);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let reply = c.send(b.body(Default::default()).unwrap()).await.unwrap();
        match expected {
            Some(name) => {
                assert_eq!(reply.status, 200, "{method} {host}{path}");
                assert_eq!(reply.body, name, "{method} {host}{path}");
            }
            None => {
                assert_eq!(reply.status, 404);
                assert_eq!(reply.header("levee-error"), Some("no_route"));
                assert_eq!(reply.header("content-type"), Some("application/json"));
                let json = reply.json();
                assert_eq!(json["error"], "no_route");
                assert!(json["message"].as_str().unwrap().contains("/nothing"));
            }
        }
    }
    assert_eq!(
        gw.metric("levee_errors_total{reason=\"no_route\"}"),
        1.0,
        "no-route answers are counted by reason"
    );
}

#[tokio::test]
async fn rewrite_and_header_edits_apply() {
    let up = FakeUpstream::builder("echo")
        .otherwise(Reply::echo().header("x-internal", "secret"))
        .start()
        .await;
    let config = GatewayConfig::new()
        .route(Route::new("api", "c").prefix("/api").raw(
            r#"rewrite = { strip_prefix = "/api", add_prefix = "/v2" }
request_headers = { set = { "x-env" = "test" }, remove = ["x-drop-me"] }
response_headers = { set = { "x-served-by" = "levee" }, remove = ["x-internal"] }"#,
        ))
        .cluster(Cluster::new("c").endpoint(&up));
    let gw = TestGateway::start(&config.toml()).await;
    let reply = Client::http1()
        .get_with(
            &format!("{}/api/items?page=2", gw.url("public")),
            &[("x-drop-me", "1")],
        )
        .await;
    assert_eq!(reply.status, 200);
    let seen = reply.json();
    assert_eq!(seen["uri"], "/v2/items?page=2");
    assert_eq!(seen["headers"]["x-env"], "test");
    assert!(seen["headers"].get("x-drop-me").is_none());
    assert_eq!(reply.header("x-served-by"), Some("levee"));
    assert_eq!(reply.header("x-internal"), None);
}

#[tokio::test]
async fn forwarding_headers_request_id_and_hop_by_hop() {
    let up = FakeUpstream::builder("echo")
        .otherwise(Reply::echo())
        .start()
        .await;
    let gw = TestGateway::start(&crate::single_cluster(&[up.addr()], "")).await;
    let addr = gw.addr("public");

    // Raw request, so hop-by-hop headers arrive exactly as written.
    let request = "GET /x HTTP/1.1\r\nHost: shop.example.com\r\nConnection: close, x-hop\r\nx-hop: 1\r\nKeep-Alive: timeout=5\r\nProxy-Authorization: Basic Zm9v\r\nTE: gzip\r\nx-forwarded-for: 203.0.113.9\r\n\r\n";
    let text = raw_exchange(addr, request.as_bytes(), Duration::from_secs(5)).await;
    let body = &text[text.find("\r\n\r\n").expect("response head") + 4..];
    let seen: serde_json::Value = serde_json::from_str(body).expect("json body");
    let h = &seen["headers"];
    assert_eq!(h["x-forwarded-for"], "203.0.113.9, 127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["x-forwarded-host"], "shop.example.com");
    assert_eq!(
        h["host"], "shop.example.com",
        "Host is preserved by default"
    );
    for hop in ["x-hop", "keep-alive", "proxy-authorization", "te"] {
        assert!(h.get(hop).is_none(), "{hop} must not be forwarded: {h}");
    }
    let id = h["x-request-id"].as_str().expect("request id generated");
    assert_eq!(id.len(), 32);

    // A client's own request id is passed on unchanged.
    let reply = Client::http1()
        .get_with(
            &format!("{}/y", gw.url("public")),
            &[("x-request-id", "abc-123")],
        )
        .await;
    assert_eq!(reply.json()["headers"]["x-request-id"], "abc-123");
}

#[tokio::test]
async fn host_header_is_preserved_or_rewritten_per_cluster() {
    let up = FakeUpstream::builder("echo")
        .otherwise(Reply::echo())
        .start()
        .await;
    let config = GatewayConfig::new()
        .route(Route::new("endpoint", "endpoint").prefix("/endpoint"))
        .route(Route::new("fixed", "fixed").prefix("/fixed"))
        .cluster(
            Cluster::new("endpoint")
                .endpoint(&up)
                .raw("host_header = \"endpoint\""),
        )
        .cluster(
            Cluster::new("fixed")
                .endpoint(&up)
                .raw("host_rewrite = \"catalog.internal\""),
        );
    let gw = TestGateway::start(&config.toml()).await;
    let c = Client::http1();
    let r = c
        .get_with(
            &format!("{}/endpoint", gw.url("public")),
            &[("host", "public.example")],
        )
        .await;
    assert_eq!(r.json()["headers"]["host"], up.addr().to_string());
    let r = c
        .get_with(
            &format!("{}/fixed", gw.url("public")),
            &[("host", "public.example")],
        )
        .await;
    assert_eq!(r.json()["headers"]["host"], "catalog.internal");
    assert_eq!(r.json()["headers"]["x-forwarded-host"], "public.example");
}

#[tokio::test]
async fn h2c_clients_are_served_and_upstream_protocol_follows_the_cluster() {
    let up = FakeUpstream::builder("echo")
        .otherwise(Reply::echo())
        .start()
        .await;
    let config = GatewayConfig::new()
        .route(Route::new("h1", "h1").prefix("/h1"))
        .route(Route::new("h2", "h2").prefix("/h2"))
        .cluster(Cluster::new("h1").endpoint(&up))
        .cluster(Cluster::new("h2").endpoint(&up).protocol("http2"));
    let gw = TestGateway::start(&config.toml()).await;
    let h2 = Client::h2c();
    let r = h2.get(&format!("{}/h1", gw.url("public"))).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["version"], "HTTP/1.1");
    let r = Client::http1()
        .get(&format!("{}/h2", gw.url("public")))
        .await;
    assert_eq!(r.json()["version"], "HTTP/2.0");
    assert_eq!(up.h2_requests(), 1);
}

#[tokio::test]
async fn dns_named_endpoints_are_resolved() {
    let up = FakeUpstream::start("named").await;
    let named = format!("localhost:{}", up.addr().port());
    let config = GatewayConfig::new().route(Route::new("r", "c")).cluster(
        Cluster::new("c")
            .endpoint(levee_testkit::Endpoint::new(&named))
            .raw("dns_refresh = \"100ms\""),
    );
    let gw = TestGateway::start(&config.toml()).await;
    let c = Client::http1();
    // localhost may resolve to ::1 as well, where nothing listens; the
    // IPv4 endpoint must be among those resolved and serve.
    let eps = gw.admin_api().cluster("c").await.endpoints;
    assert!(eps.iter().all(|e| e.configured == named));
    assert!(
        eps.iter().any(|e| e.address == up.addr().to_string()),
        "{eps:?}"
    );
    let mut served = 0;
    for _ in 0..6 {
        if c.get(&format!("{}/", gw.url("public"))).await.body == "named" {
            served += 1;
        }
    }
    assert!(served >= 3, "the resolved endpoint serves ({served}/6)");
    // Re-resolution keeps the endpoints (same answer, same state).
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(gw.admin_api().cluster("c").await.endpoints.len(), eps.len());
}
