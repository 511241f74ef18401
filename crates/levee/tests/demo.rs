//! `levee demo` through the real binary: its banner lists every page to
//! open and each answers; its SLOs count the built-in background traffic,
//! and the failing replica burns the availability budget and opens an
//! incident the status page names by the SLO's display name. Without
//! traffic it stays quiet; with `--store` its history survives a restart.

mod common;

use common::{scratch_dir, Spawned};
use levee_testkit::{eventually, AdminApi, Client};
use serde_json::Value;
use std::time::Duration;

/// Long enough for a debug build on a busy machine to start and print.
const BANNER_WAIT: Duration = Duration::from_secs(60);

/// Admin pages the banner must list, by path.
const PAGES: [&str; 7] = [
    "/ui",
    "/status",
    "/api/v1/slos",
    "/api/v1/incidents",
    "/api/v1/clusters",
    "/api/v1/capacity",
    "/metrics",
];

fn demo(args: &[&str], test: &str) -> (Spawned, Vec<String>) {
    let dir = scratch_dir("demo", test);
    let mut all = vec![
        "demo",
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
    ];
    all.extend_from_slice(args);
    let mut levee = Spawned::levee(&all, &dir);
    let banner = levee.lines_until("Press Ctrl-C", BANNER_WAIT);
    (levee, banner)
}

/// Every `http://` URL in `lines`.
fn urls(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .flat_map(|l| l.split_whitespace())
        .filter(|w| w.starts_with("http://"))
        .map(|w| w.trim_end_matches([',', '.', ')']).to_string())
        .collect()
}

/// The admin API's base URL, from the banner's `/status` line.
fn admin_base(urls: &[String]) -> String {
    urls.iter()
        .find_map(|u| u.strip_suffix("/status"))
        .expect("the banner lists /status")
        .to_string()
}

async fn get_json(url: &str) -> Value {
    let reply = Client::http1().get(url).await;
    assert_eq!(reply.status.as_u16(), 200, "{url}: {}", reply.body);
    reply.json()
}

/// Events and bad events of `catalog-availability` (0 and 0 until listed).
async fn availability_events(admin: &str) -> (u64, u64) {
    let slos = AdminApi::at_url(admin).slos().await;
    slos.slos
        .iter()
        .find(|s| s.id == "catalog-availability")
        .map_or((0, 0), |s| (s.events, s.bad_events))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_banner_lists_every_page_and_the_failing_replica_burns_the_budget() {
    let (mut levee, banner) = demo(&[], "pages");
    let listed = urls(&banner);
    let admin = admin_base(&listed);
    for page in PAGES {
        assert!(
            listed.contains(&format!("{admin}{page}")),
            "the banner lists {page}:\n{}",
            banner.join("\n")
        );
    }
    let gateway = listed
        .iter()
        .find(|u| u.ends_with("/catalog/products"))
        .expect("the banner lists the gateway");
    assert!(
        banner
            .iter()
            .any(|l| l.contains("Background traffic") && l.contains("--no-traffic")),
        "the banner says traffic is sent and how to stop it:\n{}",
        banner.join("\n")
    );

    // Every listed URL answers 200; gateway requests may hit the failing
    // replica (4% of a third), so they get a few tries.
    let client = Client::http1();
    for url in &listed {
        let tries = if url.starts_with(&admin) { 1 } else { 5 };
        let mut statuses = Vec::new();
        for _ in 0..tries {
            let reply = client.get(url).await;
            statuses.push(reply.status.as_u16());
            if reply.status == 200 {
                break;
            }
        }
        assert_eq!(
            statuses.last(),
            Some(&200),
            "{url} answered {statuses:?}\n{}",
            levee.output()
        );
    }

    // The built-in client's traffic alone is counted by the SLOs (the
    // requests above were few and are not enough for this).
    eventually(
        Duration::from_secs(60),
        "the demo's own traffic is counted",
        || {
            let admin = admin.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(250)).await;
                availability_events(&admin).await.0 > 30
            }
        },
    )
    .await;
    let slos = AdminApi::at_url(&admin).slos().await;
    for id in [
        "catalog-availability",
        "catalog-latency:250ms",
        "catalog-latency:1s",
    ] {
        let s = slos
            .slos
            .iter()
            .find(|s| s.id == id)
            .unwrap_or_else(|| panic!("{id} is listed: {slos:#?}"));
        assert!(s.events > 0, "{s:#?}");
    }

    // More traffic, so that catalog-c's 4% failures surely show: 1,500
    // requests leave about 20 failures (none at all has odds near 10⁻⁹).
    let mut senders = Vec::new();
    for t in 0..10 {
        let gateway = gateway.clone();
        senders.push(tokio::spawn(async move {
            let client = Client::http1();
            for i in 0..150 {
                let _ = client.get(&format!("{gateway}/{}", t * 150 + i)).await;
            }
        }));
    }
    for s in senders {
        s.await.unwrap();
    }
    let status_url = format!("{admin}/api/v1/status");
    eventually(
        Duration::from_secs(90),
        "bad events burn the budget and the page names the incident",
        || {
            let (admin, status_url) = (admin.clone(), status_url.clone());
            async move {
                tokio::time::sleep(Duration::from_millis(250)).await;
                let (_, bad) = availability_events(&admin).await;
                let status = get_json(&status_url).await;
                bad > 0 && status["incidents"][0]["service"] == "Product catalog"
            }
        },
    )
    .await;
    let slos = AdminApi::at_url(&admin).slos().await;
    let availability = slos.get("catalog-availability");
    assert!(
        availability.budget.remaining_ratio.unwrap() < 1.0,
        "{availability:#?}"
    );
    let status = Client::http1().get(&status_url).await.body;
    assert!(
        !status.contains("catalog-availability"),
        "no internal SLO id on the public status: {status}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_traffic_it_stays_quiet_and_a_store_file_keeps_its_history() {
    let dir = scratch_dir("demo", "store");
    let db = dir.join("demo.db");
    let db_arg = db.to_str().unwrap().to_string();
    let (mut levee, banner) = demo(&["--no-traffic", "--store", &db_arg], "quiet");
    let text = banner.join("\n");
    assert!(text.contains("No background traffic"), "{text}");
    assert!(
        text.contains(&format!("State is kept in {}", db.display())),
        "{text}"
    );
    assert!(db.exists(), "the store file is created");
    let listed = urls(&banner);
    let admin = admin_base(&listed);
    let gateway = listed
        .iter()
        .find(|u| u.ends_with("/catalog/products"))
        .unwrap()
        .clone();

    // An evaluation passes and nothing was counted: nobody sent anything.
    let first = AdminApi::at_url(&admin).slos().await.evaluated_at;
    eventually(Duration::from_secs(30), "a later evaluation", || {
        let (admin, first) = (admin.clone(), first.clone());
        async move {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let now = AdminApi::at_url(&admin).slos().await.evaluated_at;
            now.is_some() && now != first
        }
    })
    .await;
    assert_eq!(
        availability_events(&admin).await,
        (0, 0),
        "{}",
        levee.output()
    );

    let client = Client::http1();
    for i in 0..20 {
        let _ = client.get(&format!("{gateway}/{i}")).await;
    }
    eventually(Duration::from_secs(30), "the 20 requests counted", || {
        let admin = admin.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(250)).await;
            availability_events(&admin).await.0 == 20
        }
    })
    .await;
    drop(levee);

    // A new demo on the same file starts from that history.
    let (_again, banner) = demo(&["--no-traffic", "--store", &db_arg], "quiet-again");
    let admin = admin_base(&urls(&banner));
    eventually(Duration::from_secs(30), "the history is restored", || {
        let admin = admin.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(250)).await;
            availability_events(&admin).await.0 == 20
        }
    })
    .await;
}
