//! The process overload guard: as open connections near the limit, first
//! sheddable requests are refused, then connections close after each
//! response, then new connections are refused; and it all recovers.

use crate::{LISTENER, PREAMBLE};
use levee_testkit::{eventually, Client, FakeUpstream, TestGateway};
use std::time::Duration;
use tokio::net::TcpStream;

#[tokio::test]
async fn pressure_sheds_sheddable_then_closes_then_refuses_and_recovers() {
    let up = FakeUpstream::start("u").await;
    let src = format!(
        "{PREAMBLE}[runtime.overload]\nmax_connections = 10\nshed_at = \"30%\"\nclose_at = \"60%\"\nrefuse_at = \"90%\"\n\
         {LISTENER}\
         [[routes]]\nname = \"cheap\"\ncluster = \"c\"\npriority = \"sheddable\"\nmatch = {{ path = {{ prefix = \"/cheap\" }} }}\n\
         [[routes]]\nname = \"main\"\ncluster = \"c\"\n\
         [[clusters]]\nname = \"c\"\nendpoints = [\"{}\"]\n",
        up.addr()
    );
    let gw = TestGateway::start(&src).await;
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
