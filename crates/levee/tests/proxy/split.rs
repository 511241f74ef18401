//! Traffic splits between two versions of a route: the share each version
//! gets, stickiness by header, cookie and client address, forcing rules,
//! and the per-version counts (canary, baseline, stable) the judge reads.

use levee_proxy::release::Arm;
use levee_testkit::{Client, Cluster, FakeUpstream, GatewayConfig, Route, TestGateway};

async fn two_versions(split: &str) -> (TestGateway, [FakeUpstream; 2]) {
    let ups = FakeUpstream::start_each(["v1", "v2"]).await;
    let config = GatewayConfig::new()
        .route(Route::new("api", "v1").raw(&format!("split = {split}")))
        .cluster(Cluster::new("v1").endpoint(&ups[0]))
        .cluster(Cluster::new("v2").endpoint(&ups[1]))
        .toml();
    (TestGateway::start(&config).await, ups)
}

#[tokio::test]
async fn a_split_sends_its_share_and_counts_each_version() {
    let (gw, _ups) = two_versions(r#"{ cluster = "v2", weight = 20 }"#).await;
    let counts = Client::http1().burst(&gw.url("public"), 1_000).await;
    let canary = counts.get("v2").copied().unwrap_or(0);
    // 20% of 1,000 is 200; the standard deviation is about 13.
    assert!((130..=270).contains(&canary), "{counts:?}");
    let release = gw.gateway.release("api").expect("the route has a release");
    let c = release.snapshot(Arm::Canary);
    let b = release.snapshot(Arm::Baseline);
    let s = release.snapshot(Arm::Stable);
    assert_eq!(c.total as usize, canary, "every canary answer is counted");
    assert_eq!(c.total + b.total + s.total, 1_000);
    // The baseline is a slice of stable traffic as large as the canary's.
    assert!((130..=270).contains(&b.total), "baseline {}", b.total);
    assert_eq!((c.bad, b.bad), (0, 0));
    assert_eq!(c.latency.count(), c.total);
}

#[tokio::test]
async fn a_header_keeps_a_user_on_one_version_and_users_spread() {
    let (gw, _ups) =
        two_versions(r#"{ cluster = "v2", weight = 50, stickiness = { header = "x-user-id" } }"#)
            .await;
    let c = Client::http1();
    let url = gw.url("public");
    let mut on_canary = 0;
    for user in 0..200 {
        let id = format!("user-{user}");
        let first = c.get_with(&url, &[("x-user-id", &id)]).await.body;
        for _ in 0..3 {
            let again = c.get_with(&url, &[("x-user-id", &id)]).await.body;
            assert_eq!(again, first, "{id} changed version");
        }
        on_canary += usize::from(first == "v2");
    }
    assert!((60..=140).contains(&on_canary), "{on_canary} of 200 users");
}

#[tokio::test]
async fn a_cookie_is_set_once_and_then_keeps_the_caller_on_its_version() {
    let (gw, _ups) =
        two_versions(r#"{ cluster = "v2", weight = 50, stickiness = { cookie = "levee-v" } }"#)
            .await;
    let c = Client::http1();
    let url = gw.url("public");
    let mut versions = std::collections::HashSet::new();
    for _ in 0..40 {
        let first = c.get(&url).await;
        let cookie = first
            .header("set-cookie")
            .expect("a cookie for a new caller");
        assert!(cookie.starts_with("levee-v="), "{cookie}");
        assert!(
            cookie.contains("HttpOnly") && cookie.contains("Max-Age="),
            "{cookie}"
        );
        let pair = cookie.split(';').next().unwrap().to_string();
        for _ in 0..3 {
            let again = c.get_with(&url, &[("cookie", &pair)]).await;
            assert_eq!(again.body, first.body, "the cookie keeps the version");
            assert!(again.header("set-cookie").is_none(), "set only once");
        }
        versions.insert(first.body);
    }
    assert_eq!(versions.len(), 2, "callers are spread over both versions");
}

#[tokio::test]
async fn forcing_rules_pick_a_version_by_exact_prefix_and_regex() {
    let (gw, _ups) = two_versions(
        r#"{ cluster = "v2", weight = 0.01, force = [{ header = "x-canary", exact = "always" }, { cookie = "beta", prefix = "yes" }, { header = "x-group", regex = "^qa-[0-9]+$" }, { header = "x-canary", exact = "never", to = "stable" }] }"#,
    )
    .await;
    let c = Client::http1();
    let url = gw.url("public");
    let cases: [(&[(&str, &str)], &str); 6] = [
        (&[("x-canary", "always")], "v2"),
        (&[("cookie", "a=1; beta=yes-please")], "v2"),
        (&[("x-group", "qa-17")], "v2"),
        (&[("x-group", "qa-x")], "v1"),
        (&[("x-canary", "sometimes")], "v1"),
        (&[("x-canary", "never")], "v1"),
    ];
    for (headers, want) in cases {
        for _ in 0..5 {
            let got = c.get_with(&url, headers).await.body;
            assert_eq!(got, want, "{headers:?}");
        }
    }
    let release = gw.gateway.release("api").unwrap();
    assert_eq!(release.forced(), 15, "forced requests are counted");
    assert_eq!(release.snapshot(Arm::Canary).total, 15);
}

#[tokio::test]
async fn client_address_stickiness_sends_one_client_to_one_version() {
    let (gw, _ups) =
        two_versions(r#"{ cluster = "v2", weight = 50, stickiness = "client_address" }"#).await;
    // Every request comes from 127.0.0.1: all on one version.
    let counts = Client::http1().burst(&gw.url("public"), 50).await;
    assert_eq!(counts.len(), 1, "{counts:?}");
}

#[tokio::test]
async fn a_reload_that_keeps_the_split_keeps_its_counts_and_a_new_weight_applies() {
    let ups = FakeUpstream::start_each(["v1", "v2"]).await;
    let config = |weight: u32, timeout: &str| {
        GatewayConfig::new()
            .route(Route::new("api", "v1").timeout(timeout).raw(&format!(
                "split = {{ cluster = \"v2\", weight = {weight} }}"
            )))
            .cluster(Cluster::new("v1").endpoint(&ups[0]))
            .cluster(Cluster::new("v2").endpoint(&ups[1]))
            .toml()
    };
    let gw = TestGateway::start(&config(100, "5s")).await;
    let c = Client::http1();
    let url = gw.url("public");
    assert_eq!(c.burst(&url, 10).await.get("v2"), Some(&10));
    let before = gw.gateway.release("api").unwrap();
    gw.gateway
        .reload(
            levee_config::load_str(&config(100, "6s"), levee_config::Format::Toml, "t").unwrap(),
        )
        .await
        .unwrap();
    let after = gw.gateway.release("api").unwrap();
    assert!(
        std::sync::Arc::ptr_eq(&before, &after),
        "kept across the reload"
    );
    assert_eq!(after.snapshot(Arm::Canary).total, 10);
    gw.gateway
        .reload(levee_config::load_str(&config(0, "6s"), levee_config::Format::Toml, "t").unwrap())
        .await
        .unwrap();
    assert_eq!(c.burst(&url, 10).await.get("v1"), Some(&10));
}
