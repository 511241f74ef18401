//! Async routes as an operator meets them: the real `levee` binary killed
//! with SIGKILL in the middle of a drain loses no acknowledged job, and
//! `levee jobs` works the dead-letter queue through the admin API with the
//! exit codes it documents. The upstream (`JobSink`) records every
//! delivery and its `Idempotency-Key`: delivery is at least once, so after
//! a crash a job may arrive twice, and the key makes that once for an
//! upstream that de-duplicates.

use levee_testkit::{eventually, Client, JobSink, TestGateway};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

mod common;

use common::{Run, Spawned, LEVEE};

const TOKEN: &str = "jobs-cli-test-token-0123456789abcdef";

fn gateway_config(upstream: SocketAddr, async_table: &str, extra: &str) -> String {
    format!(
        r#"[admin]
listen = "127.0.0.1:0"
token = "{TOKEN}"

[runtime]
access_log = false
watch_config = false

[[listeners]]
name = "public"
listen = "127.0.0.1:0"

[[routes]]
name = "orders"
cluster = "orders"
async = {{ {async_table} }}

[[clusters]]
name = "orders"
endpoints = ["{upstream}"]

[jobs]
path = "jobs.db"
{extra}
"#
    )
}

async fn submit(proxy: SocketAddr, body: String) -> Option<String> {
    let req = http::Request::post(format!("http://{proxy}/orders"))
        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
        .unwrap();
    let reply = Client::http1().send(req).await.ok()?;
    (reply.status == 202).then(|| reply.header("levee-job-id").unwrap().to_string())
}

/// Submits `n` jobs from 16 clients, returning the ids of those
/// acknowledged (202): the ones that must never be lost.
async fn submit_many(proxy: SocketAddr, n: usize) -> Vec<String> {
    submit_many_from(proxy, n, 0, 16).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_in_the_middle_of_a_drain_loses_no_acknowledged_job() {
    for durability in ["fsync", "os"] {
        let dir = common::scratch_dir("async_jobs", &format!("kill9-{durability}"));
        let sink = JobSink::default();
        // An upstream of about 200 jobs/s (4 at a time, 20 ms each): the
        // backlog lasts about two seconds, so the kill lands while jobs
        // are queued and in flight.
        sink.delay_ms.store(20, std::sync::atomic::Ordering::SeqCst);
        let upstream = sink.start().await;
        let config = dir.join("levee.toml");
        std::fs::write(
            &config,
            gateway_config(
                upstream,
                "concurrency = 4, backoff_base = \"20ms\", backoff_max = \"100ms\", max_attempts = 1000",
                &format!("durability = \"{durability}\""),
            ),
        )
        .unwrap();
        let (mut first, proxy, _) = Spawned::levee_run(&config, &dir);
        let acknowledged = submit_many(proxy, 400).await;
        assert_eq!(acknowledged.len(), 400, "every job accepted");
        eventually(
            Duration::from_secs(10),
            "the drain is under way",
            || async { !sink.seen().is_empty() },
        )
        .await;
        first.process().kill().expect("SIGKILL");
        let _ = first.process().wait();
        let delivered_before = sink.distinct_keys().len();
        assert!(
            delivered_before < acknowledged.len(),
            "the kill landed mid-drain ({delivered_before} of {} delivered)",
            acknowledged.len()
        );

        let (_second, _, _) = Spawned::levee_run(&config, &dir);
        eventually(
            Duration::from_secs(60),
            "every acknowledged job is delivered",
            || async { sink.distinct_keys().len() >= acknowledged.len() },
        )
        .await;
        let keys = sink.distinct_keys();
        for id in &acknowledged {
            assert!(keys.contains(id), "{durability}: job {id} was lost");
        }
        assert_eq!(
            keys.len(),
            acknowledged.len(),
            "no job that was not accepted"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}

fn cli(args: &[&str], admin: &str, token: bool, cwd: &Path) -> Run {
    let mut cmd = common::command(LEVEE, &["jobs"], cwd);
    cmd.args(args).args(["--admin", admin]);
    if token {
        cmd.env("LEVEE_ADMIN_TOKEN", TOKEN);
    }
    let out = cmd.output().expect("run levee");
    Run {
        command: format!("{LEVEE} jobs {} --admin {admin}", args.join(" ")),
        cwd: cwd.to_path_buf(),
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

async fn cli_async(args: &[&str], gw: &TestGateway, token: bool) -> Run {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let admin = gw.admin_url();
    let cwd: PathBuf = std::env::temp_dir();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        cli(&args, &admin, token, &cwd)
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn levee_jobs_lists_shows_retries_and_purges_dead_letters() {
    let sink = JobSink::default();
    let upstream = sink.start().await;
    let gw = TestGateway::start(
        &gateway_config(upstream, "max_attempts = 1", "")
            .replace("[jobs]\npath = \"jobs.db\"\n", ""),
    )
    .await;
    let mut ids = Vec::new();
    for i in 0..2 {
        let req = http::Request::post(format!("{}/always-fail/{i}", gw.url("public")))
            .body(http_body_util::Full::new(bytes::Bytes::from("x")))
            .unwrap();
        let reply = Client::http1().send(req).await.unwrap();
        assert_eq!(reply.status, 202);
        ids.push(reply.header("levee-job-id").unwrap().to_string());
    }
    let queue = gw.gateway.job_queue("orders").unwrap();
    eventually(Duration::from_secs(10), "both jobs are dead", || async {
        queue.stats().await.unwrap().dead == 2
    })
    .await;

    let list = cli_async(&["list"], &gw, true).await;
    list.expect_code(0);
    assert!(list.stdout.contains("ROUTE"), "{}", list.context());
    let line = list
        .stdout
        .lines()
        .find(|l| l.starts_with("orders"))
        .unwrap();
    let cols: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(cols[3], "2", "two dead: {}", list.context());

    let dead = cli_async(&["list", "orders", "--status", "dead"], &gw, true).await;
    dead.expect_code(0);
    for id in &ids {
        assert!(dead.stdout.contains(id.as_str()), "{}", dead.context());
    }
    assert!(
        dead.stdout.contains("the upstream answered 503"),
        "{}",
        dead.context()
    );

    let show = cli_async(&["show", "orders", &ids[0]], &gw, true).await;
    show.expect_code(0);
    assert!(
        show.stdout.contains("status:      dead"),
        "{}",
        show.context()
    );
    assert!(
        show.stdout.contains("POST /always-fail/0"),
        "{}",
        show.context()
    );

    let json = cli_async(&["show", "orders", &ids[0], "--json"], &gw, true).await;
    json.expect_code(0);
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(v["attempts"], 1);

    let missing = cli_async(&["retry", "orders", "nope"], &gw, true).await;
    missing.expect_code(1);
    let retried = cli_async(&["retry", "orders", &ids[0]], &gw, true).await;
    retried.expect_code(0);
    assert!(
        retried.stdout.contains("queued again"),
        "{}",
        retried.context()
    );
    eventually(
        Duration::from_secs(10),
        "the retried job was delivered again",
        || async { sink.seen().len() >= 3 },
    )
    .await;

    let purge = cli_async(&["purge", "orders"], &gw, true).await;
    purge.expect_code(0);
    assert!(
        purge.stdout.contains("dead job(s) of route orders purged"),
        "{}",
        purge.context()
    );
    assert_eq!(queue.stats().await.unwrap().dead, 0);

    cli_async(&["list", "nosuch"], &gw, true)
        .await
        .expect_code(1);
    cli_async(&["list"], &gw, false).await.expect_code(3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_gateways_on_jetstream_lose_nothing_when_one_is_killed_mid_delivery() {
    let Some(nats) = levee_testkit::NatsServer::start("async_jobs_jetstream").await else {
        return;
    };
    let dir = common::scratch_dir("async_jobs", "jetstream-3");
    let sink = JobSink::default();
    // About 200 jobs/s in all: a backlog that outlives the kill.
    sink.delay_ms.store(20, std::sync::atomic::Ordering::SeqCst);
    let upstream = sink.start().await;
    let config = dir.join("levee.toml");
    std::fs::write(
        &config,
        gateway_config(
            upstream,
            "concurrency = 2, delivery_timeout = \"2s\", backoff_base = \"20ms\", backoff_max = \"100ms\", max_attempts = 1000",
            &format!("backend = \"jetstream\"\n[jobs.jetstream]\nurl = \"{}\"\n", nats.url()),
        ),
    )
    .unwrap();
    let mut replicas: Vec<_> = (0..3).map(|_| Spawned::levee_run(&config, &dir)).collect();
    // Any replica accepts: spread the jobs over all three.
    let mut acknowledged = Vec::new();
    for (i, (_, proxy, _)) in replicas.iter().enumerate() {
        let proxy = *proxy;
        let ids = submit_many_from(proxy, 150, i * 1000, 8).await;
        acknowledged.extend(ids);
    }
    assert_eq!(acknowledged.len(), 450, "every job accepted");
    eventually(
        Duration::from_secs(10),
        "the drain is under way",
        || async { sink.seen().len() >= 20 },
    )
    .await;
    // One replica dies mid-delivery: its leased jobs come back to the
    // others after the lease.
    let (mut killed, _, _) = replicas.remove(0);
    killed.process().kill().expect("SIGKILL");
    let _ = killed.process().wait();
    assert!(
        sink.distinct_keys().len() < acknowledged.len(),
        "killed mid-drain"
    );
    eventually(
        Duration::from_secs(60),
        "every acknowledged job is delivered",
        || async { sink.distinct_keys().len() >= acknowledged.len() },
    )
    .await;
    let keys = sink.distinct_keys();
    for id in &acknowledged {
        assert!(keys.contains(id), "job {id} was lost");
    }
    drop(replicas);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Submits `n` jobs (bodies numbered from `first`) from `clients`
/// concurrent clients; the ids acknowledged.
async fn submit_many_from(
    proxy: SocketAddr,
    n: usize,
    first: usize,
    clients: usize,
) -> Vec<String> {
    let mut tasks = Vec::new();
    for c in 0..clients {
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for i in (c..n).step_by(clients) {
                if let Some(id) = submit(proxy, format!("job-{}", first + i)).await {
                    ids.push(id);
                }
            }
            ids
        }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        ids.extend(t.await.unwrap());
    }
    ids
}
