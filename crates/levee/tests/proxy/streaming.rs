//! Streaming both ways without buffering, large bodies, and trailers.

use crate::single_cluster;
use bytes::Bytes;
use http_body_util::channel::Channel;
use http_body_util::BodyExt;
use levee_testkit::{Client, FakeUpstream, Reply, TestGateway};
use std::time::Duration;

const BOUND: Duration = Duration::from_secs(10);

#[tokio::test]
async fn response_chunks_arrive_while_the_upstream_is_still_sending() {
    // The upstream sends one chunk and then waits an hour before the next:
    // if Levee buffered the body, the client would see nothing.
    let up = FakeUpstream::builder("u")
        .otherwise(Reply::ok().chunks(2, 1024, Duration::from_secs(3600)))
        .start()
        .await;
    let gw = TestGateway::start(&single_cluster(&[up.addr()], "")).await;
    let mut send = crate::http1_connection(gw.addr("public")).await;
    let req = http::Request::get("/stream")
        .header("host", "x")
        .body(http_body_util::Empty::<Bytes>::new())
        .unwrap();
    let resp = tokio::time::timeout(BOUND, send.send_request(req))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers().get("content-length").is_none(),
        "streamed, so chunked"
    );
    let mut body = resp.into_body();
    let frame = tokio::time::timeout(BOUND, body.frame())
        .await
        .expect("first chunk arrives before the upstream finishes")
        .unwrap()
        .unwrap();
    assert_eq!(frame.into_data().unwrap().len(), 1024);
}

#[tokio::test]
async fn request_body_streams_upstream_and_echo_streams_back() {
    let up = FakeUpstream::builder("u")
        .otherwise(Reply::echo_body())
        .start()
        .await;
    let gw = TestGateway::start(&single_cluster(&[up.addr()], "")).await;
    let mut send = crate::http1_connection(gw.addr("public")).await;
    let (mut tx, body) = Channel::<Bytes, std::convert::Infallible>::new(1);
    let req = http::Request::post("/echo")
        .header("host", "x")
        .body(body)
        .unwrap();
    let pending = tokio::spawn(async move { send.send_request(req).await });
    tx.send_data(Bytes::from_static(b"first")).await.unwrap();
    let resp = tokio::time::timeout(BOUND, pending)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let mut resp_body = resp.into_body();
    // The echo of the first chunk comes back while the request is still open:
    // nothing on the path waited for the whole request body.
    let echoed = tokio::time::timeout(BOUND, resp_body.frame())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(echoed.into_data().unwrap(), Bytes::from_static(b"first"));
    tx.send_data(Bytes::from_static(b"second")).await.unwrap();
    let echoed = tokio::time::timeout(BOUND, resp_body.frame())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(echoed.into_data().unwrap(), Bytes::from_static(b"second"));
    drop(tx);
    let rest = tokio::time::timeout(BOUND, resp_body.collect())
        .await
        .unwrap()
        .unwrap();
    assert!(rest.to_bytes().is_empty());
}

#[tokio::test]
async fn one_mebibyte_bodies_pass_intact_both_ways() {
    let up = FakeUpstream::builder("u")
        .route("/big", Reply::ok().body_size(1 << 20))
        .route("/upload", Reply::echo())
        .start()
        .await;
    let gw = TestGateway::start(&single_cluster(&[up.addr()], "")).await;
    let c = Client::http1();
    let r = c.get(&format!("{}/big", gw.url("public"))).await;
    assert_eq!(r.body.len(), 1 << 20);
    assert_eq!(r.header("content-length"), Some("1048576"));
    let req = http::Request::post(format!("{}/upload", gw.url("public")))
        .body(http_body_util::Full::new(Bytes::from(vec![7u8; 1 << 20])))
        .unwrap();
    let r = c.send(req).await.unwrap();
    assert_eq!(r.json()["body_len"], 1 << 20);
}

#[tokio::test]
async fn trailers_pass_through_over_http2() {
    let up = FakeUpstream::builder("u")
        .otherwise(
            Reply::ok()
                .chunks(3, 10, Duration::from_millis(1))
                .trailer("grpc-status", "0")
                .trailer("x-checksum", "abc"),
        )
        .start()
        .await;
    let gw = TestGateway::start(&single_cluster(&[up.addr()], "protocol = \"http2\"")).await;
    let r = Client::h2c().get(&format!("{}/t", gw.url("public"))).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), 30);
    let trailers = r.trailers.expect("trailers arrive");
    assert_eq!(trailers.get("grpc-status").unwrap(), "0");
    assert_eq!(trailers.get("x-checksum").unwrap(), "abc");
}

#[tokio::test]
async fn chunked_request_bodies_pass_through_http1() {
    let up = FakeUpstream::builder("u")
        .otherwise(Reply::echo())
        .start()
        .await;
    let gw = TestGateway::start(&single_cluster(&[up.addr()], "")).await;
    let request = b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
    let text = crate::raw_exchange(gw.addr("public"), request, BOUND).await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("\"body_len\":11"), "{text}");
}
