//! End-to-end tests of the data plane and admin API: a real gateway in
//! process, real upstreams on 127.0.0.1 ports, real HTTP clients.

mod admin;
mod balancing;
mod binary;
mod conformance;
mod deadlines;
mod degradation;
mod drain;
mod errors;
mod faults;
mod freeze;
mod health;
mod jobs;
mod limits;
mod locality;
mod mirror;
mod protocol;
mod ratelimit;
mod reload;
mod resilience;
mod retries;
mod rollout;
mod routing;
mod split;
mod streaming;
mod tls;
mod upstream_h1;

use levee_testkit::{Cluster, GatewayConfig, Route};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A config with one catch-all route (`all`) to cluster `c` with
/// `endpoints` and extra cluster settings `cluster_extra` (TOML lines).
pub fn single_cluster(endpoints: &[std::net::SocketAddr], cluster_extra: &str) -> String {
    GatewayConfig::new()
        .route(Route::new("all", "c").prefix("/"))
        .cluster(Cluster::new("c").endpoints(endpoints).raw(cluster_extra))
        .toml()
}

/// Writes raw bytes to `addr` and reads until the server closes or `wait`
/// passes; returns what was read.
pub async fn raw_exchange(addr: std::net::SocketAddr, request: &[u8], wait: Duration) -> String {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(request).await.expect("write");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(wait, s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads from `s` until EOF or an error, within `wait`; true if the server
/// closed the connection.
pub async fn closed_by_server(s: &mut TcpStream, wait: Duration) -> bool {
    let mut buf = [0u8; 4096];
    let deadline = levee_core::time::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

/// One HTTP/1.1 client connection to `addr`, driven in the background.
pub async fn http1_connection<B>(
    addr: std::net::SocketAddr,
) -> hyper::client::conn::http1::SendRequest<B>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    send
}

/// An address where nothing listens (a port just released).
pub async fn closed_port() -> std::net::SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = l.local_addr().expect("local addr");
    drop(l);
    addr
}
