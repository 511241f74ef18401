//! Each balancer's distribution over real upstreams.

use levee_testkit::{
    Client, Cluster, Endpoint, FakeUpstream, GatewayConfig, Reply, Route, TestGateway,
};
use std::collections::HashMap;
use std::time::Duration;

#[tokio::test]
async fn weighted_round_robin_gives_exact_shares() {
    let ups = FakeUpstream::start_many("u", 3).await;
    let eps = ups
        .iter()
        .zip([1, 2, 3])
        .map(|(u, w)| Endpoint::new(u.addr()).weight(w));
    let config = GatewayConfig::new()
        .route(Route::new("r", "c"))
        .cluster(Cluster::new("c").endpoints(eps).balancer("round_robin"));
    let gw = TestGateway::start(&config.toml()).await;
    let c = Client::http1();
    let url = format!("{}/", gw.url("public"));
    for _ in 0..600 {
        assert_eq!(c.get(&url).await.status, 200);
    }
    let counts: Vec<u64> = ups.iter().map(FakeUpstream::requests).collect();
    assert_eq!(counts, vec![100, 200, 300]);
}

#[tokio::test]
async fn least_request_avoids_the_busy_endpoint() {
    let slow = FakeUpstream::builder("slow")
        .otherwise(Reply::ok().latency(Duration::from_millis(300)))
        .start()
        .await;
    let fast = FakeUpstream::start("fast").await;
    let gw = TestGateway::start(&crate::single_cluster(
        &[slow.addr(), fast.addr()],
        "balancer = { kind = \"least_request\" }",
    ))
    .await;
    let url = format!("{}/", gw.url("public"));
    // 8 clients in parallel, 10 requests each: the slow endpoint holds its
    // requests longer, so P2C sees it busier and sends it less.
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            let c = Client::http1();
            for _ in 0..10 {
                assert_eq!(c.get(&url).await.status, 200);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(slow.requests() + fast.requests(), 80);
    assert!(
        slow.requests() * 3 < fast.requests(),
        "slow {} fast {}",
        slow.requests(),
        fast.requests()
    );
}

#[tokio::test]
async fn peak_ewma_prefers_the_faster_endpoint() {
    let slow = FakeUpstream::builder("slow")
        .otherwise(Reply::ok().latency(Duration::from_millis(40)))
        .start()
        .await;
    let fast = FakeUpstream::start("fast").await;
    let gw = TestGateway::start(&crate::single_cluster(
        &[slow.addr(), fast.addr()],
        "balancer = { kind = \"peak_ewma\" }",
    ))
    .await;
    let c = Client::http1();
    let url = format!("{}/", gw.url("public"));
    for _ in 0..100 {
        assert_eq!(c.get(&url).await.status, 200);
    }
    // With two endpoints P2C compares both each time: once the slow one has
    // answered once, its cost stays far above the fast one's.
    assert!(
        slow.requests() <= 5,
        "slow endpoint got {} of 100",
        slow.requests()
    );
    let cluster = gw.admin_api().cluster("c").await;
    let ewma = |up: &FakeUpstream| cluster.endpoint(up.addr()).unwrap().ewma_latency_seconds;
    assert!(ewma(&slow) > ewma(&fast));
}

async fn hashing_case(
    kind: &str,
    hash_on: &str,
    request_for_key: impl Fn(&str) -> Vec<(String, String)>,
    path_for_key: impl Fn(&str) -> String,
) {
    let ups = FakeUpstream::start_many("u", 4).await;
    let addrs: Vec<_> = ups.iter().map(FakeUpstream::addr).collect();
    let gw = TestGateway::start(&crate::single_cluster(
        &addrs,
        &format!("balancer = {{ kind = \"{kind}\", hash_on = {hash_on} }}"),
    ))
    .await;
    let c = Client::http1();
    let mut owner: HashMap<String, String> = HashMap::new();
    for round in 0..3 {
        for k in 0..40 {
            let key = format!("key-{k}");
            let headers = request_for_key(&key);
            let refs: Vec<(&str, &str)> = headers
                .iter()
                .map(|(a, b)| (a.as_str(), b.as_str()))
                .collect();
            let r = c
                .get_with(
                    &format!("{}{}", gw.url("public"), path_for_key(&key)),
                    &refs,
                )
                .await;
            assert_eq!(r.status, 200);
            let served = r.body.clone();
            if round == 0 {
                owner.insert(key, served);
            } else {
                assert_eq!(owner[&key], served, "{kind} {hash_on}: key {key} moved");
            }
        }
    }
    let distinct: std::collections::HashSet<&String> = owner.values().collect();
    assert!(
        distinct.len() >= 3,
        "{kind}: 40 keys landed on only {distinct:?}"
    );
}

#[tokio::test]
async fn ring_hash_on_header_is_sticky_and_spread() {
    hashing_case(
        "ring_hash",
        "{ header = \"x-user\" }",
        |k| vec![("x-user".into(), k.into())],
        |_| "/".into(),
    )
    .await;
}

#[tokio::test]
async fn maglev_on_cookie_is_sticky_and_spread() {
    hashing_case(
        "maglev",
        "{ cookie = \"session\" }",
        |k| vec![("cookie".into(), format!("theme=dark; session={k}"))],
        |_| "/".into(),
    )
    .await;
}

#[tokio::test]
async fn maglev_on_path_is_sticky_and_spread() {
    hashing_case("maglev", "\"path\"", |_| vec![], |k| format!("/shard/{k}")).await;
}

#[tokio::test]
async fn hashing_on_client_ip_sends_one_client_to_one_endpoint() {
    let ups = FakeUpstream::start_many("u", 3).await;
    let addrs: Vec<_> = ups.iter().map(FakeUpstream::addr).collect();
    let gw = TestGateway::start(&crate::single_cluster(
        &addrs,
        "balancer = { kind = \"ring_hash\", hash_on = \"client_ip\" }",
    ))
    .await;
    let c = Client::http1();
    for _ in 0..30 {
        c.get(&format!("{}/", gw.url("public"))).await;
    }
    let mut counts: Vec<u64> = ups.iter().map(FakeUpstream::requests).collect();
    counts.sort();
    assert_eq!(counts, vec![0, 0, 30]);
}
