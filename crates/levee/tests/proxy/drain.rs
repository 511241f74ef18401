//! Graceful shutdown: readiness turns false, no new connections, in-flight
//! requests finish, bounded by the drain timeout.

use levee_testkit::{eventually, Client, FakeUpstream, Reply, TestGateway};
use std::time::Duration;

#[tokio::test]
async fn in_flight_requests_finish_during_drain() {
    let up = FakeUpstream::builder("u")
        .otherwise(Reply::ok().latency(Duration::from_millis(500)))
        .start()
        .await;
    let gw = TestGateway::start(&crate::single_cluster(&[up.addr()], "")).await;
    let url = format!("{}/slow", gw.url("public"));
    let addr = gw.addr("public");
    let in_flight = tokio::spawn(async move { Client::http1().get(&url).await });
    eventually(
        Duration::from_secs(5),
        "request reached the upstream",
        || async { up.requests() == 1 },
    )
    .await;

    let gateway = gw.gateway.clone();
    let drain = tokio::spawn(async move { gateway.shutdown(Duration::from_secs(10)).await });
    let admin = gw.admin_url();
    eventually(Duration::from_secs(5), "readyz turns 503", || {
        let admin = admin.clone();
        async move { Client::http1().get(&format!("{admin}/readyz")).await.status == 503 }
    })
    .await;
    eventually(
        Duration::from_secs(5),
        "new connections refused",
        || async move { tokio::net::TcpStream::connect(addr).await.is_err() },
    )
    .await;
    let reply = in_flight.await.unwrap();
    assert_eq!(reply.status, 200, "the in-flight request completed");
    assert_eq!(
        drain.await.unwrap(),
        0,
        "every connection closed before the timeout"
    );
}

#[tokio::test]
async fn drain_gives_up_after_its_timeout() {
    let up = FakeUpstream::builder("u")
        .otherwise(Reply::hang())
        .start()
        .await;
    let gw = TestGateway::start(&crate::single_cluster(&[up.addr()], "timeout = \"60s\"")).await;
    let url = format!("{}/hang", gw.url("public"));
    let _stuck = tokio::spawn(async move {
        let _ = Client::http1()
            .send(http::Request::get(url).body(Default::default()).unwrap())
            .await;
    });
    eventually(
        Duration::from_secs(5),
        "request reached the upstream",
        || async { up.requests() == 1 },
    )
    .await;
    let left = tokio::time::timeout(
        Duration::from_secs(10),
        gw.gateway.shutdown(Duration::from_millis(300)),
    )
    .await
    .expect("shutdown returns after its drain timeout");
    assert_eq!(left, 1, "the stuck connection is reported");
}
