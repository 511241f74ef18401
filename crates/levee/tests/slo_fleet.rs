//! Three gateways as one fleet (`[fleet]` over a real Redis): their SLO
//! counts are the fleet's, a failing upstream pages exactly once, and when
//! the replica that sends pages stops, another takes over within the
//! lease without paging again. Then the same with three `levee run`
//! processes sharing Redis and PostgreSQL: one incident number on every
//! replica, an acknowledgement on one seen on all, a leader killed with
//! SIGKILL, a replica that joins late (with no store) catching up, and a
//! restart of the whole fleet keeping the history. A real Redis, a real
//! PostgreSQL, a real webhook receiver (`JobSink` records each POST).

mod common;

use common::{Spawned, LEVEE};
use levee_testkit::{
    eventually, Client, FakeUpstream, JobSink, PostgresServer, RedisServer, Reply, TestGateway,
};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
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

/// A Redis, an upstream that answers 500 to everything, and a webhook
/// receiver with its address.
async fn failing_shop() -> (RedisServer, FakeUpstream, JobSink, SocketAddr) {
    let redis = RedisServer::start().await;
    let upstream = FakeUpstream::builder("shop")
        .otherwise(Reply::status(500))
        .start()
        .await;
    let hook = JobSink::default();
    let hook_addr = hook.start().await;
    (redis, upstream, hook, hook_addr)
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
    let (redis, upstream, hook, hook_addr) = failing_shop().await;
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

/// The fleet's config for `levee run`, with `store` as its `[store]` table.
fn process_config(upstream: SocketAddr, redis: &str, hook: SocketAddr, store: &str) -> String {
    config(upstream, redis, hook).replace("[redis]", &format!("[store]\n{store}\n\n[redis]"))
}

async fn get_json(admin: SocketAddr, path: &str) -> serde_json::Value {
    Client::http1()
        .get(&format!("http://{admin}{path}"))
        .await
        .json()
}

/// What each replica's API says: the SLO's events, the incidents' ids and
/// who acknowledged them, and whether it leads.
async fn views(admins: &[SocketAddr]) -> Vec<(u64, Vec<(u64, Option<String>)>, bool)> {
    let mut out = Vec::new();
    for admin in admins {
        let slos = get_json(*admin, "/api/v1/slos").await;
        let incidents = get_json(*admin, "/api/v1/incidents").await;
        let listed = incidents["incidents"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|i| {
                        (
                            i["id"].as_u64().unwrap_or(0),
                            i["acknowledged"]["by"].as_str().map(str::to_string),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.push((
            slos["slos"][0]["events"].as_u64().unwrap_or(0),
            listed,
            slos["fleet"]["leader"].as_bool().unwrap_or(false),
        ));
    }
    out
}

/// Waits until every replica shows `served` events and the one incident
/// `id`, acknowledged by alice.
async fn all_show(admins: &[SocketAddr], served: u64, id: &str, wait: Duration, what: &str) {
    eventually(wait, what, || async {
        views(admins).await.iter().all(|(events, incidents, _)| {
            *events == served
                && incidents.len() == 1
                && incidents[0].0.to_string() == id
                && incidents[0].1.as_deref() == Some("alice")
        })
    })
    .await;
}

/// `levee incident ARGS --admin http://ADMIN` as `alice`, on a blocking
/// thread.
async fn incident_cli(admin: SocketAddr, args: &[&str]) -> common::Run {
    let mut all: Vec<String> = vec!["incident".into()];
    all.extend(args.iter().map(|a| a.to_string()));
    all.extend(["--admin".into(), format!("http://{admin}")]);
    tokio::task::spawn_blocking(move || {
        let cwd = std::env::temp_dir();
        let mut cmd = common::command(LEVEE, &[], &cwd);
        cmd.args(&all).env("USER", "alice");
        let out = cmd.output().expect("run levee");
        common::Run::of(format!("USER=alice {LEVEE} {}", all.join(" ")), cwd, out)
    })
    .await
    .expect("cli thread")
}

/// Opens a status page incident on the replica at `admin`; its id.
async fn post_status(admin: SocketAddr, title: &str) -> u64 {
    let body = serde_json::json!({ "title": title, "message": "We are looking into it." });
    let req = hyper::Request::post(format!("http://{admin}/api/v1/status/incidents"))
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from(
            body.to_string(),
        )))
        .unwrap();
    let reply = Client::http1().send(req).await.expect("POST a status post");
    assert_eq!(reply.status, 201, "{}", reply.body);
    reply.json()["id"].as_u64().expect("an id")
}

/// The status page posts a replica has: ids and titles.
async fn status_titles(admin: SocketAddr) -> Vec<(u64, String)> {
    get_json(admin, "/api/v1/status/posts").await["posts"]
        .as_array()
        .map(|posts| {
            posts
                .iter()
                .map(|p| {
                    (
                        p["id"].as_u64().unwrap_or(0),
                        p["title"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Stops a `levee run` with SIGTERM (a clean shutdown) and waits for it.
fn terminate(mut process: Spawned) {
    let pid = process.process().id().to_string();
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status();
    assert!(sent.is_ok_and(|s| s.success()), "kill -TERM {pid}");
    let deadline = levee_core::time::now() + Duration::from_secs(20);
    while levee_core::time::now() < deadline {
        if process.process().try_wait().ok().flatten().is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!(
        "levee still running 20 s after SIGTERM:\n{}",
        process.output()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_processes_on_redis_and_postgres_act_as_one_gateway() {
    let Some(pg) = PostgresServer::start("slo_fleet") else {
        return;
    };
    let (redis, upstream, hook, hook_addr) = failing_shop().await;
    let dir = common::scratch_dir("slo_fleet", "processes");
    let shared = dir.join("fleet.toml");
    let store = format!("backend = \"postgres\"\nurl = \"{}\"", pg.url());
    std::fs::write(
        &shared,
        process_config(upstream.addr(), &redis.url(), hook_addr, &store),
    )
    .unwrap();
    let mut replicas: Vec<(Spawned, SocketAddr, SocketAddr)> =
        (0..3).map(|_| Spawned::levee_run(&shared, &dir)).collect();

    // A round-robin client over the replicas' listeners, counting what
    // they answered (every answer is a failure the SLO counts).
    let targets = Arc::new(Mutex::new(replicas.iter().map(|r| r.1).collect::<Vec<_>>()));
    let served = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = {
        let (targets, served, stop) = (targets.clone(), served.clone(), stop.clone());
        tokio::spawn(async move {
            let client = Client::http1();
            let mut i = 0usize;
            while !stop.load(Ordering::SeqCst) {
                let to = {
                    let t = targets.lock().unwrap();
                    t[i % t.len()]
                };
                i += 1;
                if client.get(&format!("http://{to}/")).await.status == 500 {
                    served.fetch_add(1, Ordering::SeqCst);
                }
                tokio::time::sleep(Duration::from_millis(40)).await;
            }
        })
    };
    eventually(Duration::from_secs(30), "the fleet pages", || async {
        firing_pages(&hook) >= 1
    })
    .await;

    // One incident, with one number, on every replica.
    let admins: Vec<SocketAddr> = replicas.iter().map(|r| r.2).collect();
    eventually(
        Duration::from_secs(10),
        "every replica lists the same one incident",
        || async {
            let v = views(&admins).await;
            v.iter()
                .all(|(_, i, _)| i.len() == 1 && i[0].0 == v[0].1[0].0)
        },
    )
    .await;
    let id = views(&admins).await[0].1[0].0.to_string();

    // Acknowledged on one replica: every replica shows it, and a second
    // acknowledgement on another is refused, naming the first.
    incident_cli(admins[0], &["ack", &id])
        .await
        .expect_code(0)
        .expect_stdout(&format!("incident {id} acknowledged by alice"));
    eventually(
        Duration::from_secs(10),
        "every replica shows the acknowledgement",
        || async {
            views(&admins)
                .await
                .iter()
                .all(|(_, i, _)| i[0].1.as_deref() == Some("alice"))
        },
    )
    .await;
    incident_cli(admins[1], &["ack", &id, "--by", "bob"])
        .await
        .expect_code(1)
        .expect_stderr(&format!("incident {id} was acknowledged by alice at "));

    // A status page post written on one replica is on every replica's
    // page, and one written next on another is numbered after it.
    let first = post_status(admins[0], "Checkout errors").await;
    eventually(
        Duration::from_secs(15),
        "every replica has the status post",
        || async {
            let mut all = true;
            for admin in &admins {
                all &= status_titles(*admin)
                    .await
                    .contains(&(first, "Checkout errors".into()));
            }
            all
        },
    )
    .await;
    let second = post_status(admins[2], "Payments delayed").await;
    assert_eq!(second, first + 1, "numbered after the other replica's post");
    assert_eq!(
        status_titles(admins[2]).await,
        vec![
            (first, "Checkout errors".to_string()),
            (second, "Payments delayed".to_string())
        ]
    );

    // The leader is killed (no clean hand-over): another replica leads
    // once its lease runs out, and pages nothing again.
    let leader = views(&admins)
        .await
        .iter()
        .position(|(_, _, leads)| *leads)
        .expect("a replica leads");
    targets.lock().unwrap().retain(|t| *t != replicas[leader].1);
    // Its last requests are shared by its next tick (every second); a
    // kill before that would lose them, as it would in production.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (mut killed, _, _) = replicas.remove(leader);
    killed.process().kill().expect("SIGKILL");
    let _ = killed.process().wait();
    let admins: Vec<SocketAddr> = replicas.iter().map(|r| r.2).collect();
    eventually(Duration::from_secs(10), "another replica leads", || async {
        views(&admins).await.iter().any(|(_, _, leads)| *leads)
    })
    .await;

    // A replica joins late, with no store of its own: it catches up from
    // Redis (the buckets, the alert, the incident and its acknowledgement).
    let alone = dir.join("joining.toml");
    std::fs::write(
        &alone,
        process_config(
            upstream.addr(),
            &redis.url(),
            hook_addr,
            "path = \":memory:\"",
        ),
    )
    .unwrap();
    replicas.push(Spawned::levee_run(&alone, &dir));
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::SeqCst);
    traffic.await.unwrap();
    let served = served.load(Ordering::SeqCst);
    let admins: Vec<SocketAddr> = replicas.iter().map(|r| r.2).collect();
    all_show(
        &admins,
        served,
        &id,
        Duration::from_secs(10),
        "every replica, the late one too, shows the fleet's events and incident",
    )
    .await;
    assert_eq!(
        firing_pages(&hook),
        1,
        "paged exactly once across the kill and the join: {} posts",
        hook.seen().len()
    );

    // The whole fleet stops and starts again: the history is kept.
    for (process, _, _) in replicas.drain(..) {
        terminate(process);
    }
    let replicas: Vec<(Spawned, SocketAddr, SocketAddr)> =
        (0..3).map(|_| Spawned::levee_run(&shared, &dir)).collect();
    let admins: Vec<SocketAddr> = replicas.iter().map(|r| r.2).collect();
    all_show(
        &admins,
        served,
        &id,
        Duration::from_secs(15),
        "after a restart of all, every replica shows the same history",
    )
    .await;
    let _ = std::fs::remove_dir_all(&dir);
}
