//! A rollout shared by a fleet: three `levee run` processes on one Redis
//! move route `api` from `v1` to `v2`. One replica leads; every replica
//! serves the leader's weights; killing the leader mid-rollout hands the
//! lease to another, which finishes the rollout; a replica started in the
//! middle joins at the current step.

use levee_testkit::{Client, FakeUpstream, RedisServer};
use serde_json::Value;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

mod common;

use common::Spawned;

const TOKEN: &str = "rollout-fleet-test-token-0123456789";

fn config_text(redis: &str, v1: SocketAddr, v2: SocketAddr, cluster: &str) -> String {
    format!(
        r#"[admin]
listen = "127.0.0.1:0"
token = "{TOKEN}"

[runtime]
watch_config = false
handover_socket = "off"
drain_timeout = "1s"

[redis]
url = "{redis}"

[[listeners]]
name = "public"
listen = "127.0.0.1:0"

[[clusters]]
name = "v1"
endpoints = ["{v1}"]

[[clusters]]
name = "v2"
endpoints = ["{v2}"]

[[routes]]
name = "api"
cluster = "{cluster}"

[routes.rollout]
steps = [{{ weight = 20, pause = "2s" }}, {{ weight = 50, pause = "4s" }}, {{ weight = 80, pause = "2s" }}]
analysis = {{ min_samples = 20, interval = "250ms" }}
"#
    )
}

struct Replica {
    process: Spawned,
    config: PathBuf,
    proxy: SocketAddr,
    admin: SocketAddr,
}

impl Replica {
    fn start(name: &str, text: &str) -> Self {
        let dir = common::scratch_dir("rollout-fleet", name);
        let config = dir.join("levee.toml");
        std::fs::write(&config, text).unwrap();
        let (process, proxy, admin) = Spawned::levee_run(&config, &dir);
        Self {
            process,
            config,
            proxy,
            admin,
        }
    }

    async fn admin(&self, method: &str, path: &str) -> levee_testkit::ClientReply {
        let request = http::Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.admin))
            .header("authorization", format!("Bearer {TOKEN}"))
            .body(Default::default())
            .unwrap();
        Client::http1().send(request).await.unwrap()
    }

    async fn reload(&self, text: &str) {
        std::fs::write(&self.config, text).unwrap();
        let reply = self.admin("POST", "/api/v1/reload").await;
        assert_eq!(reply.status, 200, "{}", reply.body);
    }

    async fn rollout(&self) -> Value {
        self.admin("GET", "/api/v1/rollouts/api").await.json()
    }
}

/// (phase, step, canary percent served now) of every replica.
async fn views(replicas: &[&Replica]) -> Vec<(String, u64, f64)> {
    let mut out = Vec::new();
    for r in replicas {
        let v = r.rollout().await;
        out.push((
            v["phase"].as_str().unwrap_or("").to_string(),
            v["step"].as_u64().unwrap_or(0),
            v["serving"]["canary_percent"].as_f64().unwrap_or(-1.0),
        ));
    }
    out
}

async fn leader_of(replicas: &[&Replica]) -> Option<usize> {
    for (i, r) in replicas.iter().enumerate() {
        if r.rollout().await["fleet"]["leader"] == true {
            return Some(i);
        }
    }
    None
}

/// Polls `check` every 100 ms for up to `within`.
async fn until<F, Fut>(within: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let deadline = levee_core::time::now() + within;
    loop {
        let last = match check().await {
            Ok(()) => return,
            Err(e) => e,
        };
        assert!(levee_core::time::now() < deadline, "{what}: {last}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_share_one_rollout_and_survive_the_leaders_death() {
    let redis = RedisServer::start().await;
    let [v1, v2] = FakeUpstream::start_each(["v1", "v2"]).await;
    let text = |cluster: &str| config_text(&redis.url(), v1.addr(), v2.addr(), cluster);
    let mut replicas: Vec<Replica> = (0..3)
        .map(|i| Replica::start(&format!("r{i}"), &text("v1")))
        .collect();

    // Traffic to every replica, a few hundred requests a second in all.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let targets: Vec<String> = replicas
        .iter()
        .map(|r| format!("http://{}/", r.proxy))
        .collect();
    let mut drivers = Vec::new();
    for url in targets {
        let stop = stop.clone();
        drivers.push(tokio::spawn(async move {
            let c = Client::http1();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = c
                    .send(http::Request::get(&url).body(Default::default()).unwrap())
                    .await;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }));
    }

    for r in &replicas {
        r.reload(&text("v2")).await;
    }
    let all: Vec<&Replica> = replicas.iter().collect();
    until(Duration::from_secs(10), "one replica leads", || async {
        leader_of(&all).await.map(|_| ()).ok_or("no leader".into())
    })
    .await;
    // Every replica serves the same weights within a second of a decision:
    // once the leader is at step 2, within a second all are.
    until(
        Duration::from_secs(15),
        "the leader reaches step 2",
        || async {
            let v = views(&all).await;
            v.iter()
                .any(|(_, step, _)| *step >= 1)
                .then_some(())
                .ok_or(format!("{v:?}"))
        },
    )
    .await;
    until(
        Duration::from_secs(1),
        "every replica serves the leader's weights",
        || async {
            let v = views(&all).await;
            let first = &v[0];
            v.iter()
                .all(|x| x.1 == first.1 && x.2 == first.2 && x.2 >= 50.0)
                .then_some(())
                .ok_or(format!("{v:?}"))
        },
    )
    .await;

    // Kill the leader mid-rollout (as a crash would).
    let leader = leader_of(&all).await.expect("a leader");
    let phase_then = views(&all).await[leader].clone();
    assert_eq!(phase_then.0, "progressing", "{phase_then:?}");
    drop(all);
    let mut dead = replicas.remove(leader);
    let _ = dead.process.process().kill();
    let _ = dead.process.process().wait();

    // A replica started now joins at the current step.
    let late = Replica::start("late", &text("v2"));
    let rest: Vec<&Replica> = replicas.iter().chain(std::iter::once(&late)).collect();
    let joined = late.rollout().await;
    assert!(
        joined["step"].as_u64().unwrap_or(0) >= 1,
        "the late replica starts at the fleet's step: {joined:#}"
    );

    // Another replica takes the lease over and finishes the rollout.
    until(
        Duration::from_secs(30),
        "the survivors promote v2",
        || async {
            let v = views(&rest).await;
            v.iter()
                // 100% on v2, or rebuilt with v2 alone (no split left: -1).
                .all(|(phase, _, served)| {
                    phase == "promoted" && (*served == 100.0 || *served < 0.0)
                })
                .then_some(())
                .ok_or(format!("{v:?}"))
        },
    )
    .await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for d in drivers {
        let _ = d.await;
    }
    for r in &rest {
        let counts = Client::http1()
            .burst(&format!("http://{}/", r.proxy), 10)
            .await;
        assert_eq!(counts.get("v2"), Some(&10), "{counts:?}");
    }
    let decisions = late.rollout().await["decisions"].clone();
    let outcomes: Vec<&str> = decisions
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|d| d["outcome"].as_str())
        .collect();
    assert!(outcomes.ends_with(&["promote"]), "{outcomes:?}");
    drop(redis);
}
