//! Typed views of what the admin API returns, read over HTTP as an
//! operator's tools read it (never through the proxy's Rust types), so a
//! test says `cluster.endpoints[1].ejected` instead of indexing JSON.
//!
//! The structs name the fields tests read; serde ignores the rest, so a
//! field added to the API breaks no test. [`AdminApi`] fetches them, from a
//! [`TestGateway`] (`gw.admin_api()`) or from any admin address (a `levee`
//! process a test started).

use crate::{Client, ClientReply, TestGateway};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;

/// `GET /api/v1/clusters`.
#[derive(Debug, Clone, Deserialize)]
pub struct Clusters {
    /// Every cluster, in config order.
    pub clusters: Vec<ClusterState>,
}

/// One cluster as the admin API shows it.
#[derive(Debug, Clone, Deserialize)]
pub struct ClusterState {
    /// Its name.
    pub name: String,
    /// Whether panic mode (all endpoints used despite health) is on.
    pub panic_mode: bool,
    /// The cluster breaker's state (`closed`, `open` or `half_open`), if
    /// it has one.
    pub circuit_breaker: Option<String>,
    /// Bulkhead usage now.
    pub bulkheads: Bulkheads,
    /// Priority levels with their loads and zone probabilities.
    pub locality: Vec<Level>,
    /// Every endpoint, in config order.
    pub endpoints: Vec<EndpointState>,
}

impl ClusterState {
    /// The endpoint at `addr`, if listed.
    pub fn endpoint(&self, addr: SocketAddr) -> Option<&EndpointState> {
        let addr = addr.to_string();
        self.endpoints.iter().find(|e| e.address == addr)
    }

    /// Each priority level's load, in level order.
    pub fn loads(&self) -> Vec<f64> {
        self.locality.iter().map(|l| l.load).collect()
    }
}

/// A cluster's bulkhead usage.
#[derive(Debug, Clone, Deserialize)]
pub struct Bulkheads {
    /// Requests holding an in-flight slot (with `max_requests` set).
    pub requests_in_flight: Option<u32>,
    /// Requests waiting for a slot.
    pub pending: u32,
    /// Retries and hedges in flight.
    pub retries_in_flight: u32,
    /// Open HTTP/1.1 connections.
    pub connections: u32,
}

/// One priority level of a cluster.
#[derive(Debug, Clone, Deserialize)]
pub struct Level {
    /// The level (0 first).
    pub priority: u32,
    /// The share of traffic it takes.
    pub load: f64,
    /// Zone names with the probability of each.
    pub zones: Vec<(String, f64)>,
}

/// One endpoint of a cluster.
#[derive(Debug, Clone, Deserialize)]
pub struct EndpointState {
    /// The resolved address (`ip:port`).
    pub address: String,
    /// As written in the config.
    pub configured: String,
    /// Whether health checks pass.
    pub healthy: bool,
    /// Whether outlier detection took it out.
    pub ejected: bool,
    /// Why it was ejected (`consecutive_5xx`, `latency`...), while it is.
    pub ejection_cause: Option<String>,
    /// Requests in flight to it.
    pub in_flight: i64,
    /// Idle pooled connections.
    pub idle_connections: usize,
    /// Its peak-EWMA latency estimate.
    pub ewma_latency_seconds: f64,
    /// Its weight.
    pub weight: u32,
    /// Its zone, if configured.
    pub zone: Option<String>,
    /// Its priority level.
    pub priority: u32,
    /// Its breaker's state, if the cluster has endpoint breakers.
    pub circuit_breaker: Option<String>,
}

/// `GET /api/v1/slos`.
#[derive(Debug, Clone, Deserialize)]
pub struct Slos {
    /// When the engine last evaluated (RFC 3339), if it has.
    pub evaluated_at: Option<String>,
    /// Every objective (a latency SLO has one per threshold).
    pub slos: Vec<SloState>,
}

impl Slos {
    /// The objective with id `id` (`name`, or `name:threshold`).
    pub fn get(&self, id: &str) -> &SloState {
        self.slos
            .iter()
            .find(|s| s.id == id)
            .unwrap_or_else(|| panic!("no SLO objective {id}: {self:#?}"))
    }
}

/// One objective as the admin API shows it.
#[derive(Debug, Clone, Deserialize)]
pub struct SloState {
    /// `name`, or `name:threshold` for latency objectives.
    pub id: String,
    /// The SLO's name.
    pub slo: String,
    /// `availability` or `latency`.
    pub sli: String,
    /// The latency threshold, for latency objectives.
    pub threshold: Option<String>,
    /// The objective as a ratio (0.999).
    pub objective: f64,
    /// The period (`30d`).
    pub period: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Its runbook, if any.
    pub runbook: Option<String>,
    /// `ok`, `burning` (an alert fires), `exhausted` or `no_data`.
    pub status: String,
    /// Events over the period.
    pub events: u64,
    /// Bad events over the period.
    pub bad_events: u64,
    /// The error budget.
    pub budget: Budget,
    /// Each alert window's figures.
    pub windows: Vec<Window>,
    /// Each alert severity's state.
    pub alerts: Vec<Alert>,
}

/// An objective's error budget.
#[derive(Debug, Clone, Deserialize)]
pub struct Budget {
    /// The share left (may be negative), once there are events.
    pub remaining_ratio: Option<f64>,
    /// The budget left in seconds of full outage, once there are events.
    pub remaining_seconds: Option<f64>,
}

/// An objective's figures over one alert window.
#[derive(Debug, Clone, Deserialize)]
pub struct Window {
    /// The window (`5m`).
    pub window: String,
    /// Events in it.
    pub events: u64,
    /// Bad events in it.
    pub bad_events: u64,
    /// The burn rate, once there are events.
    pub burn_rate: Option<f64>,
}

/// One alert severity's state.
#[derive(Debug, Clone, Deserialize)]
pub struct Alert {
    /// `page` or `ticket`.
    pub severity: String,
    /// `inactive`, `pending` or `firing`.
    pub state: String,
}

/// `GET /api/v1/incidents`.
#[derive(Debug, Clone, Deserialize)]
pub struct Incidents {
    /// Every incident, newest first.
    pub incidents: Vec<Incident>,
    /// Time to detect over closed incidents, once there is one.
    pub mttd: Option<DurationSummary>,
    /// Time to recover over closed incidents, once there is one.
    pub mttr: Option<DurationSummary>,
}

/// One incident.
#[derive(Debug, Clone, Deserialize)]
pub struct Incident {
    /// Its id.
    pub id: u64,
    /// The objective it is about.
    pub slo: String,
    /// The severity that opened it.
    pub severity: String,
    /// `open`, `recovered`, `alert_resolved` or `closed`.
    pub state: String,
    /// When the failures began (RFC 3339).
    pub start: String,
    /// When the alert fired.
    pub detect: String,
    /// When the error ratio fell back, if it has.
    pub recover: Option<String>,
    /// When the alert resolved, if it has.
    pub resolve: Option<String>,
    /// `detect - start`.
    pub time_to_detect_seconds: f64,
    /// `recover - start`, once recovered.
    pub time_to_recover_seconds: Option<f64>,
    /// Bad events during it.
    pub bad_events: u64,
    /// The SLO's runbook, if any.
    pub runbook: Option<String>,
}

/// A distribution of durations.
#[derive(Debug, Clone, Deserialize)]
pub struct DurationSummary {
    /// How many.
    pub count: usize,
    /// The median.
    pub median_seconds: f64,
    /// The largest.
    pub max_seconds: f64,
}

/// `GET /api/v1/capacity`.
#[derive(Debug, Clone, Deserialize)]
pub struct Capacity {
    /// Every cluster, in config order.
    pub clusters: Vec<ClusterCapacity>,
    /// Every rate limit, route by route.
    pub rate_limits: Vec<RateLimitCapacity>,
}

impl Capacity {
    /// The cluster named `name`.
    pub fn cluster(&self, name: &str) -> &ClusterCapacity {
        self.clusters
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("no cluster {name} in capacity: {self:#?}"))
    }
}

/// One cluster's use of its limits.
#[derive(Debug, Clone, Deserialize)]
pub struct ClusterCapacity {
    /// Its name.
    pub name: String,
    /// `unlimited`, `ok`, `warning` or `critical`.
    pub status: String,
    /// Each limited resource.
    pub resources: Vec<Resource>,
    /// Each endpoint's share.
    pub endpoints: Vec<EndpointCapacity>,
}

impl ClusterCapacity {
    /// The resource named `name` (`requests`, `pending`, `connections`...).
    pub fn resource(&self, name: &str) -> &Resource {
        self.resources
            .iter()
            .find(|r| r.resource == name)
            .unwrap_or_else(|| panic!("no resource {name}: {self:#?}"))
    }
}

/// One limited resource of a cluster.
#[derive(Debug, Clone, Deserialize)]
pub struct Resource {
    /// Which (`requests`...).
    pub resource: String,
    /// In use now.
    pub used: f64,
    /// The limit.
    pub limit: f64,
    /// `used / limit`.
    pub utilisation: f64,
    /// `ok`, `warning` or `critical`.
    pub status: String,
}

/// One endpoint's share of its cluster's limit.
#[derive(Debug, Clone, Deserialize)]
pub struct EndpointCapacity {
    /// Its address.
    pub address: String,
    /// Requests in flight to it.
    pub in_flight: i64,
    /// Its share of the cluster's request limit, if there is one.
    pub limit: Option<f64>,
    /// `in_flight / limit`.
    pub utilisation: Option<f64>,
    /// `unlimited`, `ok`, `warning` or `critical`.
    pub status: String,
}

/// One rate limit's use.
#[derive(Debug, Clone, Deserialize)]
pub struct RateLimitCapacity {
    /// Its route.
    pub route: String,
    /// Its name.
    pub limit: String,
    /// Admitted requests per second lately.
    pub rate_per_second: f64,
    /// The limit per second.
    pub limit_per_second: f64,
    /// `rate / limit`.
    pub utilisation: f64,
    /// `ok`, `warning` or `critical`.
    pub status: String,
}

/// `GET /api/v1/reload`: the outcome of the most recent reload.
#[derive(Debug, Clone, Deserialize)]
pub struct ReloadStatus {
    /// Unix time of the last successful load.
    pub last_success_unix: Option<u64>,
    /// Unix time of the last attempt.
    pub last_attempt_unix: Option<u64>,
    /// Every diagnostic of the last attempt, if it failed (as JSON: their
    /// shape belongs to `levee check --format json`).
    pub last_errors: Vec<serde_json::Value>,
    /// Why the last attempt was rejected, if it was.
    pub last_failure: Option<String>,
}

/// `POST /api/v1/reload`'s answer.
#[derive(Debug, Clone, Deserialize)]
pub struct ReloadOutcome {
    /// `reloaded` or `rejected`.
    pub status: String,
    /// Why it was rejected.
    pub message: Option<String>,
    /// Each diagnostic, rendered as `levee check` prints it.
    #[serde(default)]
    pub rendered: Vec<String>,
}

/// A client for one admin API.
#[derive(Debug, Clone)]
pub struct AdminApi {
    base: String,
    token: Option<String>,
    client: Client,
}

impl AdminApi {
    /// The admin API at `addr`.
    pub fn at(addr: SocketAddr) -> Self {
        Self::at_url(&format!("http://{addr}"))
    }

    /// The admin API at `base` (`http://HOST:PORT`), as a process's banner
    /// or log names it.
    pub fn at_url(base: &str) -> Self {
        Self {
            base: base.trim_end_matches('/').to_string(),
            token: None,
            client: Client::http1(),
        }
    }

    /// Sends `Authorization: Bearer TOKEN` with every request.
    pub fn with_token(mut self, token: &str) -> Self {
        self.token = Some(token.to_string());
        self
    }

    /// `GET PATH`, whatever the status.
    pub async fn get(&self, path: &str) -> ClientReply {
        let url = format!("{}{path}", self.base);
        match &self.token {
            Some(t) => {
                let auth = format!("Bearer {t}");
                self.client
                    .get_with(&url, &[("authorization", auth.as_str())])
                    .await
            }
            None => self.client.get(&url).await,
        }
    }

    /// `POST PATH` with `body` as JSON, whatever the status.
    pub async fn post(&self, path: &str, body: &serde_json::Value) -> ClientReply {
        let mut req = http::Request::post(format!("{}{path}", self.base))
            .header("content-type", "application/json");
        if let Some(t) = &self.token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let req = req
            .body(body.to_string().into())
            .expect("a request from a valid path");
        self.client
            .send(req)
            .await
            .unwrap_or_else(|e| panic!("POST {path}: {e}"))
    }

    /// `GET PATH`, expected to answer 200 with JSON of type `T`.
    pub async fn json<T: DeserializeOwned>(&self, path: &str) -> T {
        let r = self.get(path).await;
        assert_eq!(r.status, 200, "GET {path}: {r:?}");
        serde_json::from_str(&r.body)
            .unwrap_or_else(|e| panic!("GET {path}: unexpected shape ({e}): {}", r.body))
    }

    /// Every cluster.
    pub async fn clusters(&self) -> Vec<ClusterState> {
        self.json::<Clusters>("/api/v1/clusters").await.clusters
    }

    /// The cluster named `name`.
    pub async fn cluster(&self, name: &str) -> ClusterState {
        let all = self.clusters().await;
        all.iter()
            .find(|c| c.name == name)
            .cloned()
            .unwrap_or_else(|| panic!("no cluster {name}: {all:#?}"))
    }

    /// The endpoint at `addr` in any cluster, if listed.
    pub async fn endpoint(&self, addr: SocketAddr) -> Option<EndpointState> {
        self.clusters()
            .await
            .iter()
            .find_map(|c| c.endpoint(addr).cloned())
    }

    /// The SLO report.
    pub async fn slos(&self) -> Slos {
        self.json("/api/v1/slos").await
    }

    /// Incidents with MTTD and MTTR.
    pub async fn incidents(&self) -> Incidents {
        self.json("/api/v1/incidents").await
    }

    /// The capacity report.
    pub async fn capacity(&self) -> Capacity {
        self.json("/api/v1/capacity").await
    }

    /// The outcome of the most recent reload.
    pub async fn reload_status(&self) -> ReloadStatus {
        self.json("/api/v1/reload").await
    }

    /// `POST /api/v1/reload`: its status (200 or 422) and answer.
    pub async fn reload(&self) -> (u16, ReloadOutcome) {
        let mut req = http::Request::post(format!("{}/api/v1/reload", self.base));
        if let Some(t) = &self.token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let r = self
            .client
            .send(req.body(Default::default()).expect("request"))
            .await
            .unwrap_or_else(|e| panic!("POST /api/v1/reload: {e}"));
        let outcome = serde_json::from_str(&r.body)
            .unwrap_or_else(|e| panic!("POST /api/v1/reload: unexpected shape ({e}): {r:?}"));
        (r.status.as_u16(), outcome)
    }
}

impl TestGateway {
    /// A client for this gateway's admin API (without a token).
    pub fn admin_api(&self) -> AdminApi {
        AdminApi::at(self.admin)
    }
}
