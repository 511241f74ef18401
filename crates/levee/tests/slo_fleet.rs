//! Three gateways as one fleet (`[fleet]` over a real Redis): their SLO
//! counts are the fleet's, a failing upstream pages exactly once, and when
//! the replica that sends pages stops, another takes over within the
//! lease without paging again. Real gateways in this process, a real
//! Redis, a real webhook receiver (`JobSink` records each POST).

use levee_testkit::{eventually, Client, FakeUpstream, JobSink, RedisServer, Reply, TestGateway};
use std::net::SocketAddr;
use std::time::Duration;

fn config(upstream: SocketAddr, redis: &str, hook: SocketAddr) -> String {
    format!(
        r#"[admin]
listen = "127.0.0.1:0"
[runtime]
access_log = false
watch_config = false

[[listeners]]
name = "public"
listen = "127.0.0.1:0"

[[routes]]
name = "checkout"
cluster = "shop"

[[clusters]]
name = "shop"
endpoints = ["{upstream}"]

[redis]
url = "{redis}"

[fleet]
name = "test-fleet"
lease = "2s"

[[slos]]
name = "checkout-availability"
sli = "availability"
route = "checkout"
objective = "99%"
period = "1h"
alerting = {{ min_events = 5, page = [{{ long = "4s", short = "2s", factor = 10 }}], ticket = [] }}

[alerting]
evaluate_every = "1s"
bucket = "1s"

[[alerting.webhooks]]
name = "oncall"
url = "http://{hook}/oncall"
format = "levee"
severities = ["page"]
"#
    )
}

async fn slos(gw: &TestGateway) -> serde_json::Value {
    Client::http1()
        .get(&format!("{}/api/v1/slos", gw.admin_url()))
        .await
        .json()
}

fn firing_pages(hook: &JobSink) -> usize {
    hook.seen()
        .iter()
        .filter(|s| {
            let v: serde_json::Value = serde_json::from_slice(&s.body).unwrap_or_default();
            v["status"] == "firing" || v.to_string().contains("\"status\":\"firing\"")
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_counts_as_one_and_pages_once_across_a_leader_change() {
    let redis = RedisServer::start().await;
    let upstream = FakeUpstream::builder("shop")
        .otherwise(Reply::status(500))
        .start()
        .await;
    let hook = JobSink::default();
    let hook_addr = hook.start().await;
    let toml = config(upstream.addr(), &redis.url(), hook_addr);
    let mut gateways = Vec::new();
    for _ in 0..3 {
        gateways.push(TestGateway::start(&toml).await);
    }
    // Failures round robin over the replicas, from start to end, so the
    // alert keeps firing across the hand-over.
    let urls: Vec<String> = gateways
        .iter()
        .map(|g| format!("{}/", g.url("public")))
        .collect();
    let targets = std::sync::Arc::new(std::sync::Mutex::new(urls));
    let served = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let traffic = {
        let (targets, served, stop) = (targets.clone(), served.clone(), stop.clone());
        tokio::spawn(async move {
            let client = Client::http1();
            let mut i = 0usize;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let url = {
                    let t = targets.lock().unwrap();
                    t[i % t.len()].clone()
                };
                i += 1;
                if client.get(&url).await.status == 500 {
                    served.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    eventually(Duration::from_secs(20), "the fleet pages", || async {
        firing_pages(&hook) >= 1
    })
    .await;
    let leaders = leaders_of(&gateways).await;
    assert_eq!(
        leaders.iter().filter(|l| **l).count(),
        1,
        "one leader: {leaders:?}"
    );
    // The leader stops; another takes over within the lease, and the
    // alert, still firing, is not paged again.
    let leader = leaders.iter().position(|l| *l).unwrap();
    targets.lock().unwrap().remove(leader);
    let stopped = gateways.remove(leader);
    stopped.gateway.shutdown(Duration::from_secs(5)).await;
    drop(stopped);
    eventually(Duration::from_secs(10), "another replica leads", || async {
        leaders_of(&gateways).await.contains(&true)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    traffic.await.unwrap();
    assert_eq!(
        firing_pages(&hook),
        1,
        "paged exactly once: {} posts",
        hook.seen().len()
    );
    // Every replica reports the fleet's events: the sum of what all served.
    let served = served.load(std::sync::atomic::Ordering::SeqCst);
    eventually(
        Duration::from_secs(10),
        "every replica shows the fleet's count",
        || async {
            let mut all = true;
            for gw in &gateways {
                let events = slos(gw).await["slos"][0]["events"].as_u64().unwrap_or(0);
                all &= events == served;
            }
            all
        },
    )
    .await;
}

async fn leaders_of(gateways: &[TestGateway]) -> Vec<bool> {
    let mut l = Vec::new();
    for gw in gateways {
        l.push(slos(gw).await["fleet"]["leader"].as_bool().unwrap_or(false));
    }
    l
}
