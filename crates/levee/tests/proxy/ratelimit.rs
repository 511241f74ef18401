//! Rate limits (step 4): GCRA per key, every limit must pass, 429 with
//! Retry-After and the IETF RateLimit headers, dry run, and accuracy over
//! time.

use levee_testkit::{Client, Cluster, FakeUpstream, GatewayConfig, RateLimit, Route, TestGateway};
use std::net::SocketAddr;

/// Route `r` with rate `limits` to cluster `c` at `upstream`.
fn config(upstream: SocketAddr, limits: impl IntoIterator<Item = RateLimit>) -> GatewayConfig {
    let route = limits
        .into_iter()
        .fold(Route::new("r", "c"), Route::rate_limit);
    GatewayConfig::new()
        .route(route)
        .cluster(Cluster::new("c").endpoint(upstream))
}

#[tokio::test]
async fn a_burst_over_the_limit_gets_429_with_rate_limit_headers() {
    let up = FakeUpstream::start("u").await;
    let gw = TestGateway::start(
        &config(
            up.addr(),
            [RateLimit::new("per-route", 5).per("10s").burst(5)],
        )
        .toml(),
    )
    .await;
    let c = Client::http1();
    let url = format!("{}/x", gw.url("public"));
    let mut ok = 0;
    let mut limited = Vec::new();
    for _ in 0..10 {
        let r = c.get(&url).await;
        match r.status.as_u16() {
            200 => {
                ok += 1;
                assert_eq!(r.header("ratelimit-policy"), Some("\"per-route\";q=5;w=10"));
                assert!(r
                    .header("ratelimit")
                    .is_some_and(|v| v.starts_with("\"per-route\";r=")));
            }
            429 => limited.push(r),
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(ok, 5, "the burst");
    assert_eq!(limited.len(), 5);
    assert_eq!(
        up.requests(),
        5,
        "refused requests never reach the upstream"
    );
    let r = &limited[0];
    assert_eq!(r.header("levee-error"), Some("rate_limited"));
    assert_eq!(r.header("ratelimit"), Some("\"per-route\";r=0;t=10"));
    // One request every 2 s: the next fits in 2 s.
    assert_eq!(r.header("retry-after"), Some("2"));
    assert_eq!(
        gw.metric(
            "levee_ratelimit_decisions_total{route=\"r\",limit=\"per-route\",result=\"limited\"}"
        ),
        5.0
    );
}

#[tokio::test]
async fn keys_are_counted_apart_and_every_limit_must_pass() {
    let up = FakeUpstream::start("u").await;
    let gw = TestGateway::start(
        &config(
            up.addr(),
            [
                RateLimit::new("per-key", 2)
                    .per("1m")
                    .keyed_by(&["header:x-api-key"]),
                RateLimit::new("total", 5).per("1m"),
            ],
        )
        .toml(),
    )
    .await;
    let c = Client::http1();
    let url = format!("{}/x", gw.url("public"));
    let status = |key: &'static str| {
        let c = c.clone();
        let url = url.clone();
        async move { c.get_with(&url, &[("x-api-key", key)]).await.status }
    };
    assert_eq!(status("a").await, 200);
    assert_eq!(status("a").await, 200);
    assert_eq!(status("a").await, 429, "key a has used its 2");
    assert_eq!(status("b").await, 200, "key b has its own bucket");
    assert_eq!(status("b").await, 200);
    assert_eq!(
        status("c").await,
        200,
        "fifth admitted request of the route"
    );
    let r = c.get_with(&url, &[("x-api-key", "d")]).await;
    assert_eq!(r.status, 429, "the route's total is spent");
    assert!(r.body.contains("total"), "{r:?}");
}

#[tokio::test]
async fn a_dry_run_limit_counts_but_refuses_nothing() {
    let up = FakeUpstream::start("u").await;
    let gw = TestGateway::start(
        &config(up.addr(), [RateLimit::new("trial", 3).per("1m").dry_run()]).toml(),
    )
    .await;
    let c = Client::http1();
    for _ in 0..8 {
        assert_eq!(c.get(&format!("{}/x", gw.url("public"))).await.status, 200);
    }
    assert_eq!(
        gw.metric("levee_ratelimit_decisions_total{route=\"r\",limit=\"trial\",result=\"dry_run_limited\"}"),
        5.0
    );
}

/// Tenants from API keys (stored hashed) and a trusted header; limits per
/// tenant; bad credentials are refused with 401.
#[tokio::test]
async fn limits_per_tenant_and_bad_credentials_get_401() {
    let up = FakeUpstream::start("u").await;
    let src = config(
        up.addr(),
        [RateLimit::new("per-tenant", 2).per("1m").keyed_by(&["tenant"])],
    )
    .table(
        "tenants",
        &format!(
            "default = \"anonymous\"\nheader = \"x-tenant\"\n\
             api_keys = {{ header = \"x-api-key\", keys = [{{ tenant = \"acme\", sha256 = \"{ACME_KEY_SHA256}\" }}] }}\n\
             jwt = {{ hs256_secrets = [\"0123456789abcdef0123456789abcdef\"] }}"
        ),
    );
    let gw = TestGateway::start(&src.toml()).await;
    let c = Client::http1();
    let url = format!("{}/x", gw.url("public"));
    let get = |h: &'static [(&'static str, &'static str)]| {
        let c = c.clone();
        let url = url.clone();
        async move { c.get_with(&url, h).await }
    };
    assert_eq!(get(&[("x-api-key", "k-acme")]).await.status, 200);
    assert_eq!(get(&[("x-api-key", "k-acme")]).await.status, 200);
    assert_eq!(
        get(&[("x-api-key", "k-acme")]).await.status,
        429,
        "acme used its 2"
    );
    // The trusted header names the same tenant: the same bucket.
    assert_eq!(get(&[("x-tenant", "acme")]).await.status, 429);
    assert_eq!(
        get(&[("x-tenant", "globex")]).await.status,
        200,
        "another tenant"
    );
    assert_eq!(get(&[]).await.status, 200, "the default tenant");
    let bad_key = get(&[("x-api-key", "k-stolen")]).await;
    assert_eq!(bad_key.status, 401);
    assert_eq!(bad_key.header("levee-error"), Some("unauthorized"));
    assert!(bad_key.body.contains("unknown API key"), "{bad_key:?}");
    let bad_jwt = get(&[("authorization", "Bearer e30.e30.c2ln")]).await;
    assert_eq!(bad_jwt.status, 401);
    assert!(bad_jwt.body.contains("signature"), "{bad_jwt:?}");
    assert_eq!(
        up.requests(),
        4,
        "refused requests never reach the upstream"
    );
}

/// sha256("k-acme").
const ACME_KEY_SHA256: &str = "0b131655124822cb1cf254042086d2bf26a4f1c6cd82727aab583e915346aca3";

fn global_config(upstream: SocketAddr, redis: &str, limit: RateLimit) -> String {
    config(upstream, [limit.global()])
        .table(
            "redis",
            &format!(
                "url = \"{redis}\"\ntimeout = \"200ms\"\nreplicas = 3\nretry_after = \"200ms\""
            ),
        )
        .toml()
}

async fn connected(gw: &TestGateway) {
    levee_testkit::eventually(
        std::time::Duration::from_secs(10),
        "connected to Redis",
        || async { gw.metric("levee_redis_connected") == 1.0 },
    )
    .await;
}

/// Three gateways share one limit through one Redis: together they admit
/// exactly its burst.
#[tokio::test]
async fn three_gateways_share_a_global_limit_through_redis() {
    let redis = levee_testkit::RedisServer::start().await;
    let up = FakeUpstream::start("u").await;
    let src = global_config(
        up.addr(),
        &redis.url(),
        RateLimit::new("shared", 12).per("1h"),
    );
    let gateways = [
        TestGateway::start(&src).await,
        TestGateway::start(&src).await,
        TestGateway::start(&src).await,
    ];
    for gw in &gateways {
        connected(gw).await;
    }
    let c = Client::http1();
    let mut admitted = 0;
    for i in 0..36 {
        let gw = &gateways[i % 3];
        if c.get(&format!("{}/x", gw.url("public"))).await.status == 200 {
            admitted += 1;
        }
    }
    assert_eq!(admitted, 12, "12 per hour across all three, not 12 each");
    assert_eq!(up.requests(), 12);
    for gw in &gateways {
        assert_eq!(gw.metric("levee_redis_fallback_decisions_total"), 0.0);
    }
}

/// Redis dies mid-run: no request fails for it (decisions go local at
/// rate / replicas), and once Redis is back the gateway uses it again by
/// itself.
#[tokio::test]
async fn requests_keep_flowing_when_redis_dies_and_return_to_it() {
    let mut redis = levee_testkit::RedisServer::start().await;
    let port = redis.port();
    let up = FakeUpstream::start("u").await;
    let gw = TestGateway::start(&global_config(
        up.addr(),
        &redis.url(),
        RateLimit::new("shared", 100000),
    ))
    .await;
    connected(&gw).await;
    let c = Client::http1();
    let url = format!("{}/x", gw.url("public"));
    for _ in 0..20 {
        assert_eq!(c.get(&url).await.status, 200);
    }
    let in_redis = gw.metric("levee_redis_decisions_total");
    assert_eq!(in_redis, 20.0);
    redis.kill();
    for _ in 0..50 {
        let r = c.get(&url).await;
        assert_eq!(r.status, 200, "Redis being down costs no request: {r:?}");
    }
    assert!(gw.metric("levee_redis_fallback_decisions_total") >= 1.0);
    assert!(gw.metric("levee_redis_failures_total") >= 1.0);
    let _redis = levee_testkit::RedisServer::start_on(port).await;
    levee_testkit::eventually(
        std::time::Duration::from_secs(15),
        "decisions back in Redis",
        || async {
            assert_eq!(c.get(&url).await.status, 200);
            gw.metric("levee_redis_decisions_total") > in_redis
        },
    )
    .await;
}

/// A cold limit with a warm-up admits a fraction of its burst at first.
#[tokio::test]
async fn a_cold_limit_with_warm_up_starts_slow() {
    let up = FakeUpstream::start("u").await;
    let gw = TestGateway::start(
        &config(
            up.addr(),
            [RateLimit::new("warm", 10)
                .burst(10)
                .raw("warm_up = { cold_factor = 5, period = \"30s\" }")],
        )
        .toml(),
    )
    .await;
    let c = Client::http1();
    let mut admitted = 0;
    for _ in 0..10 {
        if c.get(&format!("{}/x", gw.url("public"))).await.status == 200 {
            admitted += 1;
        }
    }
    // A request costs five while cold: two of the burst of ten fit.
    assert!(admitted <= 3, "admitted {admitted} of a cold burst");
    assert!(admitted >= 1);
}
