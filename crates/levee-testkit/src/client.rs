//! A small real HTTP client for tests: hyper over TCP, HTTP/1.1 or h2c.

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::time::Duration;

/// A response read completely.
#[derive(Debug, Clone)]
pub struct Reply {
    /// Status.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// Body as text (lossy).
    pub body: String,
    /// Trailers, if any.
    pub trailers: Option<HeaderMap>,
}

impl Reply {
    /// A header's value as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body parsed as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    /// Asserts that this is an answer from the route's cluster, not a
    /// fallback.
    pub fn assert_not_degraded(&self) {
        assert_eq!(self.header("levee-degraded"), None, "{self:?}");
    }

    /// Asserts that this is a stale copy with `body`, and returns its age
    /// in seconds.
    pub fn assert_stale(&self, body: &str) -> u64 {
        assert_eq!(self.status, 200, "{self:?}");
        assert_eq!(self.body, body, "{self:?}");
        assert_eq!(self.header("levee-degraded"), Some("stale"), "{self:?}");
        let age = self
            .header("age")
            .unwrap_or_else(|| panic!("a stale copy carries its age: {self:?}"));
        age.parse()
            .unwrap_or_else(|_| panic!("age is whole seconds: {self:?}"))
    }
}

/// A pooled HTTP client.
#[derive(Clone, Debug)]
pub struct Client {
    inner: hyper_util::client::legacy::Client<HttpConnector, Full<Bytes>>,
}

impl Client {
    /// HTTP/1.1 with keep-alive.
    pub fn http1() -> Self {
        Self {
            inner: hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    /// HTTP/2 with prior knowledge (h2c).
    pub fn h2c() -> Self {
        Self {
            inner: hyper_util::client::legacy::Client::builder(TokioExecutor::new())
                .http2_only(true)
                .build_http(),
        }
    }

    /// Sends `n` GETs to `url` one after another; each must succeed.
    /// Returns how many each body answered (upstreams that answer with
    /// their name: how many each upstream served).
    pub async fn burst(&self, url: &str, n: usize) -> std::collections::HashMap<String, usize> {
        let mut counts = std::collections::HashMap::new();
        for _ in 0..n {
            let r = self.get(url).await;
            assert_eq!(r.status, 200, "no request fails: {r:?}");
            *counts.entry(r.body).or_insert(0) += 1;
        }
        counts
    }

    /// GET `url`.
    pub async fn get(&self, url: &str) -> Reply {
        self.send(Request::get(url).body(Full::default()).expect("request"))
            .await
            .unwrap_or_else(|e| panic!("GET {url} failed: {e}"))
    }

    /// GET `url` with extra headers.
    pub async fn get_with(&self, url: &str, headers: &[(&str, &str)]) -> Reply {
        let mut b = Request::get(url);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        self.send(b.body(Full::default()).expect("request"))
            .await
            .unwrap_or_else(|e| panic!("GET {url} failed: {e}"))
    }

    /// Sends `req` and reads the whole response (with a 30 s safety limit).
    pub async fn send(&self, req: Request<Full<Bytes>>) -> Result<Reply, String> {
        let fut = async {
            let resp = self
                .inner
                .request(req)
                .await
                .map_err(|e| format!("{e:?}"))?;
            let (parts, body) = resp.into_parts();
            let collected = body.collect().await.map_err(|e| format!("body: {e}"))?;
            let trailers = collected.trailers().cloned();
            let bytes = collected.to_bytes();
            Ok(Reply {
                status: parts.status,
                headers: parts.headers,
                body: String::from_utf8_lossy(&bytes).into_owned(),
                trailers,
            })
        };
        tokio::time::timeout(Duration::from_secs(30), fut)
            .await
            .map_err(|_| "request did not finish within 30s".to_string())?
    }
}
