//! An upstream for async routes' tests: it records every delivery (path,
//! `Idempotency-Key`, attempt, tenant, Standard Webhooks headers, body) so
//! a test can check that each job arrived exactly once per key, and
//! answers as told: the first `fail_first` deliveries of each key and
//! every path under `/always-fail` answer 503, `/slow` takes 300 ms,
//! others answer 201 with `done:{body}`.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One delivery as the upstream saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub path: String,
    pub key: Option<String>,
    pub attempt: Option<String>,
    pub tenant: Option<String>,
    /// Standard Webhooks' headers, on a callback.
    pub webhook: Option<(String, String, String)>,
    pub body: Bytes,
}

/// An upstream that records deliveries and answers as told: `fail_first`
/// deliveries of each key answer 503, paths under `/always-fail` always
/// do, `/slow` takes a while, others answer 201 with `done:{body}`.
#[derive(Clone, Default)]
pub struct JobSink {
    seen: Arc<Mutex<Vec<Seen>>>,
    /// Deliveries of each key answered 503 before one succeeds.
    pub fail_first: Arc<AtomicU32>,
    in_flight: Arc<AtomicUsize>,
    /// Every answer waits this many milliseconds (an upstream of bounded
    /// throughput).
    pub delay_ms: Arc<std::sync::atomic::AtomicU64>,
    /// The most deliveries it ever held at once.
    pub most_in_flight: Arc<AtomicUsize>,
}

impl JobSink {
    /// Serves on a fresh 127.0.0.1 port.
    pub async fn start(&self) -> SocketAddr {
        self.start_on("127.0.0.1:0".parse().unwrap()).await
    }

    /// Serves on `addr`.
    pub async fn start_on(&self, addr: SocketAddr) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let sink = self.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let sink = sink.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let sink = sink.clone();
                        async move { Ok::<_, std::convert::Infallible>(sink.answer(req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        addr
    }

    async fn answer(
        &self,
        req: http::Request<hyper::body::Incoming>,
    ) -> http::Response<Full<Bytes>> {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.most_in_flight.fetch_max(now, Ordering::SeqCst);
        let header = |n: &str| {
            req.headers()
                .get(n)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let (key, attempt, tenant) = (
            header("idempotency-key"),
            header("levee-job-attempt"),
            header("x-tenant"),
        );
        let webhook = match (
            header("webhook-id"),
            header("webhook-timestamp"),
            header("webhook-signature"),
        ) {
            (Some(i), Some(t), Some(s)) => Some((i, t, s)),
            _ => None,
        };
        let path = req.uri().path().to_string();
        let body = req.into_body().collect().await.unwrap().to_bytes();
        let earlier = {
            let mut seen = self.seen.lock().unwrap();
            let earlier = seen.iter().filter(|s| s.key == key).count() as u32;
            seen.push(Seen {
                path: path.clone(),
                key,
                attempt,
                tenant,
                webhook,
                body: body.clone(),
            });
            earlier
        };
        let delay = self.delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        if path == "/slow" {
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        let failing =
            path.starts_with("/always-fail") || earlier < self.fail_first.load(Ordering::SeqCst);
        let (status, text) = if failing {
            (503, Bytes::from_static(b"upstream says no"))
        } else {
            let mut t = b"done:".to_vec();
            t.extend_from_slice(&body);
            (201, Bytes::from(t))
        };
        http::Response::builder()
            .status(status)
            .header("x-upstream", "sink")
            .body(Full::new(text))
            .unwrap()
    }

    /// Every delivery so far, in arrival order.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// The distinct idempotency keys delivered: the jobs an upstream that
    /// de-duplicates by key has processed.
    pub fn distinct_keys(&self) -> std::collections::BTreeSet<String> {
        self.seen().into_iter().filter_map(|s| s.key).collect()
    }
}
