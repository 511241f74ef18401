//! The process overload guard: as open connections near the limit, first
//! sheddable requests are refused, then connections close after each
//! response, then new connections are refused; and it all recovers.

use levee_testkit::{eventually, Client, Cluster, FakeUpstream, GatewayConfig, Route, TestGateway};
use std::time::Duration;
use tokio::net::TcpStream;

#[tokio::test]
async fn pressure_sheds_sheddable_then_closes_then_refuses_and_recovers() {
    let up = FakeUpstream::start("u").await;
    let src = GatewayConfig::new()
        .table(
            "runtime.overload",
            "max_connections = 10\nshed_at = \"30%\"\nclose_at = \"60%\"\nrefuse_at = \"90%\"",
        )
        .route(
            Route::new("cheap", "c")
                .raw("priority = \"sheddable\"")
                .prefix("/cheap"),
        )
        .route(Route::new("main", "c"))
        .cluster(Cluster::new("c").endpoint(&up));
    let gw = TestGateway::start(&src.toml()).await;
    let base = gw.url("public");
    let fresh = || async { Client::http1() };
    assert_eq!(
        fresh().await.get(&format!("{base}/cheap")).await.status,
        200
    );

    // Three idle connections: 30% of 10 → sheddable work is refused.
    let mut idle = Vec::new();
    for _ in 0..3 {
        idle.push(TcpStream::connect(gw.addr("public")).await.unwrap());
    }
    eventually(Duration::from_secs(5), "level 1", || async {
        gw.metric("levee_overload_level") >= 1.0
    })
    .await;
    let shed = fresh().await.get(&format!("{base}/cheap")).await;
    assert_eq!(shed.status, 503, "{shed:?}");
    assert_eq!(shed.header("levee-error"), Some("overloaded"));
    assert_eq!(shed.header("levee-overloaded"), Some("true"));
    assert_eq!(shed.header("retry-after"), Some("1"));
    let kept = fresh().await.get(&format!("{base}/main")).await;
    assert_eq!(kept.status, 200, "default-priority work still flows");
    assert_eq!(kept.header("connection"), None);

    // Six: connections close after their response.
    for _ in 0..3 {
        idle.push(TcpStream::connect(gw.addr("public")).await.unwrap());
    }
    eventually(Duration::from_secs(5), "level 2", || async {
        gw.metric("levee_overload_level") >= 2.0
    })
    .await;
    let r = fresh().await.get(&format!("{base}/main")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("connection"), Some("close"));

    // Nine: new connections are refused.
    for _ in 0..3 {
        idle.push(TcpStream::connect(gw.addr("public")).await.unwrap());
    }
    eventually(Duration::from_secs(5), "level 3", || async {
        gw.metric("levee_overload_level") >= 3.0
    })
    .await;
    let rejected_before =
        gw.metric("levee_downstream_connections_rejected_total{listener=\"public\"}");
    let mut s = TcpStream::connect(gw.addr("public")).await.unwrap();
    assert!(
        crate::closed_by_server(&mut s, Duration::from_secs(5)).await,
        "a new connection is closed at once"
    );
    assert!(
        gw.metric("levee_downstream_connections_rejected_total{listener=\"public\"}")
            > rejected_before
    );

    // Pressure gone: everything flows again.
    drop(idle);
    eventually(Duration::from_secs(10), "level 0", || async {
        gw.metric("levee_overload_level") == 0.0
    })
    .await;
    assert_eq!(
        fresh().await.get(&format!("{base}/cheap")).await.status,
        200
    );
}

/// One request's class, tenant and result.
struct Shot {
    class: &'static str,
    tenant: &'static str,
    status: u16,
    reason: Option<String>,
    latency: Duration,
}

fn success(shots: &[Shot], keep: impl Fn(&Shot) -> bool) -> (usize, usize) {
    let picked: Vec<&Shot> = shots.iter().filter(|s| keep(s)).collect();
    (
        picked.iter().filter(|s| s.status == 200).count(),
        picked.len(),
    )
}

fn rate((ok, n): (usize, usize)) -> f64 {
    if n == 0 {
        1.0
    } else {
        ok as f64 / n as f64
    }
}

/// A fixed-capacity upstream (2 at once, 100 ms each: 20 requests/s)
/// driven at 2×, 5× and 10× its capacity with three priority classes and
/// three tenants, one of them abusive: critical traffic keeps succeeding,
/// sheddable work is shed first, the abusive tenant does not starve the
/// others, and admitted requests keep a bounded latency.
#[tokio::test]
async fn overload_sheds_the_least_important_work_first_and_shares_fairly() {
    let up = FakeUpstream::builder("u")
        .capacity(2)
        .otherwise(levee_testkit::Reply::ok().latency(Duration::from_millis(100)))
        .start()
        .await;
    let src = GatewayConfig::new()
        .table("tenants", "header = \"x-tenant\"")
        .route(
            Route::new("api", "c")
                .raw("priority = \"critical\"\npriority_header = \"x-priority\"")
                .timeout("5s"),
        )
        .cluster(Cluster::new("c").endpoint(&up).timeout("5s").raw(
            "[clusters.concurrency]\nalgorithm = \"fixed\"\nlimit = 2\nmin_limit = 1\nmax_queue_len = 40\ntenant_quota = \"50%\"\n\
             [clusters.concurrency.classes]\ncritical = { max_queue_time = \"2s\" }\ndefault = { max_queue_time = \"600ms\" }\nsheddable = { max_queue_time = \"50ms\" }",
        ));
    let gw = TestGateway::start(&src.toml()).await;
    let url = format!("{}/work", gw.url("public"));
    for load in [2u32, 5, 10] {
        let per_second = 20 * load;
        let interval = Duration::from_secs_f64(1.0 / f64::from(per_second));
        let total = per_second as usize * 3 / 2; // 1.5 s of arrivals
        let mut tasks = Vec::new();
        let mut tick = tokio::time::interval(interval);
        for i in 0..total {
            tick.tick().await;
            // 10% critical, 45% default, 45% sheddable; default traffic is
            // 20% tenant a, 20% tenant b, 60% the abusive tenant c.
            let class = match i % 20 {
                0 | 10 => "critical",
                n if n % 2 == 1 => "default",
                _ => "sheddable",
            };
            let tenant = match i % 5 {
                0 => "a",
                1 => "b",
                _ => "c",
            };
            let url = url.clone();
            tasks.push(tokio::spawn(async move {
                let started = levee_core::time::now();
                let r = Client::http1()
                    .get_with(&url, &[("x-priority", class), ("x-tenant", tenant)])
                    .await;
                Shot {
                    class,
                    tenant,
                    status: r.status.as_u16(),
                    reason: r.header("levee-error").map(str::to_string),
                    latency: started.elapsed(),
                }
            }));
        }
        let mut shots = Vec::new();
        for t in tasks {
            shots.push(t.await.unwrap());
        }
        let critical = rate(success(&shots, |s| s.class == "critical"));
        let default = rate(success(&shots, |s| s.class == "default"));
        let sheddable = rate(success(&shots, |s| s.class == "sheddable"));
        let summary = format!(
            "at {load}x: critical {critical:.2}, default {default:.2}, sheddable {sheddable:.2}"
        );
        eprintln!("{summary}");
        assert!(critical >= 0.9, "critical keeps succeeding {summary}");
        assert!(
            sheddable <= default + 0.05,
            "sheddable is shed first {summary}"
        );
        if load >= 5 {
            assert!(sheddable < 0.25, "{summary}");
        }
        // Inside the default class, the abusive tenant gets no more than a
        // fair share: the light tenants succeed at least as often.
        let light = rate(success(&shots, |s| s.class == "default" && s.tenant != "c"));
        let abusive = rate(success(&shots, |s| s.class == "default" && s.tenant == "c"));
        assert!(
            light + 0.05 >= abusive,
            "light {light:.2} vs abusive {abusive:.2} {summary}"
        );
        for s in &shots {
            if s.status == 200 {
                assert!(
                    s.latency < Duration::from_secs(4),
                    "admitted latency is bounded: {:?}",
                    s.latency
                );
            } else {
                assert_eq!(s.status, 503, "{summary}");
                assert_eq!(s.reason.as_deref(), Some("overloaded"), "{summary}");
            }
        }
        // Let the queue drain before the next level.
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    assert!(gw.metric("levee_cluster_shed_total{cluster=\"c\",reason=\"queue_timeout\"}") > 0.0);
}
