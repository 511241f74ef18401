//! Dev-only test kit for Levee: real servers on 127.0.0.1 ports, never mocks.
//!
//! - [`FakeUpstream`]: an HTTP/1.1 + h2c server with scripted behaviour per
//!   path ([`Reply`]: status or status sequence, latency, body size, streamed
//!   chunks, trailers, connection reset, hang, close after headers, echo) and
//!   request counters.
//! - [`ScriptedUpstream`]: endpoints in memory behind the gateway's transport
//!   seam ([`levee_proxy::Connector`]), scripted per request ([`Step`]:
//!   status after a delay, hang, reset mid-body) and per connect
//!   ([`Connect`]: refuse, never complete), for tests on paused time.
//! - [`ScriptedUpstream`]: endpoints on in-memory pipes that follow scripts
//!   ([`Step`]: a status after a delay, hang, reset mid-body; [`Connect`]:
//!   refuse or never connect), for tests on paused time.
//! - [`TestGateway`]: a gateway (started through `levee_control::start`,
//!   so with its control plane) plus admin API in process, built from a
//!   config string, optionally on a [`ScriptedUpstream`]'s connector.
//! - [`GatewayConfig`] and its tables: a typed config builder.
//! - [`AdminApi`]: typed admin API state, read over HTTP.
//! - [`Promtool`]: runs promtool on rules, failing under CI without it.
//! - [`Browser`]: a headless Chromium driven over WebDriver, with its
//!   console log, failing under CI without it.
//! - [`RedisServer`]: a real redis-server on a free port.
//! - [`NatsServer`]: a real nats-server with JetStream on a free port,
//!   failing under CI without it.
//! - [`PostgresServer`]: a real PostgreSQL cluster (initdb) on a free port,
//!   run as an unprivileged user when tests run as root; failing under CI
//!   without it, skipped loudly elsewhere. Standard library only, so
//!   `levee-store`'s tests include the file by path.
//! - [`eventually`]: waits for asynchronous state with a deadline.
//! - [`Client`] helpers: a real HTTP client over real sockets.

mod browser;
mod client;
mod config;
mod job_sink;
mod nats;
mod postgres;
mod promtool;
mod redis;
mod scripted;
mod state;
mod upstream;

pub use browser::{Browser, LogEntry};
pub use client::{Client, Reply as ClientReply};
pub use config::{Cluster, Endpoint, GatewayConfig, Listener, RateLimit, Route, Slo};
pub use job_sink::{JobSink, Seen as JobDelivery};
pub use nats::NatsServer;
pub use postgres::PostgresServer;
pub use promtool::{Promtool, PromtoolRun, RULES_FILE, TEST_FILE};
pub use redis::RedisServer;
pub use scripted::{Arrival, Connect, ScriptedUpstream, Step};
pub use state::{
    AdminApi, Alert, Budget, Bulkheads, Capacity, ClusterCapacity, ClusterState, Clusters,
    DurationSummary, EndpointCapacity, EndpointState, Incident, Incidents, Level,
    RateLimitCapacity, ReloadOutcome, ReloadStatus, Resource, SloState, Slos, Window,
};
pub use upstream::{FakeUpstream, FakeUpstreamBuilder, Reply};

use levee_control::Control;
use levee_core::metrics::Registry;
use levee_proxy::Gateway;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Polls `check` until it returns true, failing the test after `timeout`.
pub async fn eventually<F, Fut>(timeout: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = levee_core::time::now() + timeout;
    loop {
        if check().await {
            return;
        }
        if levee_core::time::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A gateway and its admin API running in this process.
pub struct TestGateway {
    /// The gateway handle.
    pub gateway: Gateway,
    /// Its control plane (SLO engine).
    pub control: Control,
    /// The admin API's bound address.
    pub admin: SocketAddr,
    /// The config file, when built from one.
    pub config_path: Option<std::path::PathBuf>,
    _admin_stop: tokio::sync::oneshot::Sender<()>,
    _dir: Option<TempDir>,
    /// How clusters connect (TCP when `None`); kept for [`TestGateway::restart`].
    connector: Option<Arc<dyn levee_proxy::Connector>>,
}

impl TestGateway {
    /// Starts from TOML text (listeners and admin on `127.0.0.1:0` are fine).
    pub async fn start(toml: &str) -> TestGateway {
        let config = levee_config::load_str(toml, levee_config::Format::Toml, "test.toml")
            .unwrap_or_else(|d| panic!("test config is invalid:\n{d}"));
        Self::from_config(config, None, None, None).await
    }

    /// Starts from TOML text, with clusters' HTTP/1.1 connections opened by
    /// `connector` (a [`ScriptedUpstream`] for tests on paused time).
    pub async fn start_with_connector(
        toml: &str,
        connector: Arc<dyn levee_proxy::Connector>,
    ) -> TestGateway {
        let config = levee_config::load_str(toml, levee_config::Format::Toml, "test.toml")
            .unwrap_or_else(|d| panic!("test config is invalid:\n{d}"));
        Self::from_config(config, None, None, Some(connector)).await
    }

    /// Starts from TOML written to a real file, so reloads can read it.
    pub async fn start_from_file(toml: &str) -> TestGateway {
        Self::file_with(toml, None).await
    }

    /// Like [`TestGateway::start_from_file`], with clusters' HTTP/1.1
    /// connections opened by `connector` (kept across [`TestGateway::restart`]).
    pub async fn start_from_file_with_connector(
        toml: &str,
        connector: Arc<dyn levee_proxy::Connector>,
    ) -> TestGateway {
        Self::file_with(toml, Some(connector)).await
    }

    async fn file_with(
        toml: &str,
        connector: Option<Arc<dyn levee_proxy::Connector>>,
    ) -> TestGateway {
        let dir = TempDir::new();
        let path = dir.path.join("levee.toml");
        std::fs::write(&path, toml).expect("write config");
        let config = levee_config::load_file(&path)
            .unwrap_or_else(|d| panic!("test config is invalid:\n{d}"));
        Self::from_config(config, Some(path), Some(dir), connector).await
    }

    async fn from_config(
        config: levee_config::Config,
        path: Option<std::path::PathBuf>,
        dir: Option<TempDir>,
        connector: Option<Arc<dyn levee_proxy::Connector>>,
    ) -> TestGateway {
        let admin_addr = config.admin.listen;
        let token = config.admin.token.clone();
        let (gateway, control) = levee_control::start(
            config,
            path.clone(),
            Arc::new(Registry::new()),
            levee_control::StartOptions {
                connector: connector.clone(),
                ..Default::default()
            },
        )
        .await
        .unwrap_or_else(|e| panic!("gateway failed to start: {e}"));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let (admin, _) = levee_admin::serve(
            gateway.clone(),
            control.clone(),
            admin_addr,
            token,
            async move {
                let _ = rx.await;
            },
        )
        .await
        .expect("admin API binds");
        TestGateway {
            gateway,
            control,
            admin,
            config_path: path,
            _admin_stop: tx,
            _dir: dir,
            connector,
        }
    }

    /// Shuts this gateway down gracefully (it persists its state) and
    /// starts a new one from the same config file, as a restart of the
    /// process would. Listeners on port 0 get new ports.
    pub async fn restart(mut self) -> TestGateway {
        self.gateway.shutdown(Duration::from_secs(5)).await;
        let path = self
            .config_path
            .clone()
            .expect("restart needs a gateway started from a file");
        let dir = self._dir.take();
        let connector = self.connector.take();
        drop(self);
        let config = levee_config::load_file(&path)
            .unwrap_or_else(|d| panic!("test config is invalid:\n{d}"));
        Self::from_config(config, Some(path), dir, connector).await
    }

    /// The bound address of listener `name`.
    pub fn addr(&self, name: &str) -> SocketAddr {
        self.gateway
            .listener_addr(name)
            .unwrap_or_else(|| panic!("no listener named {name}"))
    }

    /// `http://ADDR` of listener `name`.
    pub fn url(&self, name: &str) -> String {
        format!("http://{}", self.addr(name))
    }

    /// `http://ADMIN`.
    pub fn admin_url(&self) -> String {
        format!("http://{}", self.admin)
    }

    /// The value of the metric series whose line starts with `prefix`
    /// (name and labels as rendered), or 0.
    pub fn metric(&self, prefix: &str) -> f64 {
        metric_value(&self.gateway.registry().encode(), prefix)
    }
}

/// Finds `prefix` (a series name with labels) in Prometheus text and parses its value.
pub fn metric_value(text: &str, prefix: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(prefix) && l[prefix.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// A temporary directory removed on drop.
#[derive(Debug)]
pub struct TempDir {
    /// Its path.
    pub path: std::path::PathBuf,
}

impl TempDir {
    /// A fresh, empty directory under the system temp dir.
    pub fn new() -> Self {
        let path =
            std::env::temp_dir().join(format!("levee-test-{}", levee_core::ids::request_id()));
        std::fs::create_dir_all(&path).expect("create temp dir");
        Self { path }
    }
}

impl Default for TempDir {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}
