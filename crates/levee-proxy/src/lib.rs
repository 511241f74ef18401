//! Levee's data plane: listeners (HTTP/1.1, HTTP/2, TLS with ALPN), routing,
//! clusters with balancers, pools, DNS and health checks, the request
//! pipeline, hot reload and graceful drain.
//!
//! Start with [`pipeline`]: its `handle` function is the life of a request.
//! [`Gateway`] is the handle the binary, the admin API and tests hold.

mod admit;
mod body;
mod bufcache;
pub mod capacity;
mod cluster;
pub mod control;
mod degrade;
mod discovery;
mod dns;
pub mod fault;
mod gateway;
mod global;
mod guard;
pub mod handover;
mod headers;
mod hedge;
mod http1;
pub mod jobs;
mod listener;
mod metrics;
mod mirror;
pub mod pipeline;
mod pressure;
mod queue;
mod record;
pub mod release;
mod retry;
mod router;
pub mod slo;
mod tenant;
mod tls;
pub mod traffic;
mod upstream;
mod view;

pub use body::{BodyError, ProxyBody, UpstreamBody};
pub use control::{ControlPlane, Knob};
pub use discovery::DiscoveryStatus;
pub use gateway::{
    ApplyError, BulkheadStatus, ClusterStatus, EndpointStatus, Gateway, ListenerStatus,
    ReloadStatus, StartOptions,
};
pub use headers::LEVEE_ERROR;
pub use mirror::MirrorStats;
pub use upstream::{ConnectFuture, Connector, TcpConnector, UpstreamBodyError, UpstreamIo};

/// Route matching exposed for benchmarks only; not a stable API.
#[doc(hidden)]
pub mod bench_support {
    use crate::cluster::ClusterRuntime;
    use crate::router::{CompiledRoute, Router};
    use levee_core::metrics::Registry;
    use std::collections::HashMap;
    use std::sync::Arc;

    /// The router of the first listener of `config`.
    pub struct BenchRouter(Router);

    impl BenchRouter {
        /// Builds clusters (no I/O for IP endpoints without health checks) and routes.
        pub async fn new(config: &levee_config::Config) -> Self {
            let registry = Arc::new(Registry::new());
            let mut clusters = HashMap::new();
            for c in &config.clusters {
                let rt = ClusterRuntime::start(
                    c.clone(),
                    Default::default(),
                    registry.clone(),
                    levee_core::MonotonicClock::new(),
                    Arc::new(crate::upstream::TcpConnector),
                )
                .await;
                clusters.insert(c.name.clone(), rt);
            }
            let routes = config
                .routes
                .iter()
                .map(|r| {
                    Arc::new(CompiledRoute::new(
                        r.clone(),
                        clusters[&r.cluster].clone(),
                        &registry,
                    ))
                })
                .collect();
            Self(Router::new(routes))
        }

        /// The name of the route `req` matches.
        pub fn find<B>(&self, req: &http::Request<B>) -> Option<&str> {
            self.0.find(req).map(|r| r.config.name.as_str())
        }

        /// Chooses an endpoint of the matched route's cluster.
        pub fn pick<B>(&self, req: &http::Request<B>) -> Option<std::net::SocketAddr> {
            self.0
                .find(req)?
                .cluster
                .pick(Some(0x9e37_79b9), 0)
                .ok()
                .map(|e| e.addr)
        }
    }

    /// One route's counters as step 7 feeds them, for measuring what
    /// recording a request costs.
    pub struct BenchRecord {
        metrics: crate::metrics::RouteMetrics,
        served: crate::release::VersionCounters,
    }

    impl Default for BenchRecord {
        fn default() -> Self {
            Self {
                metrics: crate::metrics::RouteMetrics::new(&Registry::new(), "r", "c"),
                served: crate::release::VersionCounters::new(&[]),
            }
        }
    }

    impl BenchRecord {
        /// What step 7 adds per route without the latency history: the
        /// status-class counter and the Prometheus latency histogram.
        pub fn route_metrics(&self, outcome: levee_core::Outcome, nanos: u64) {
            self.metrics.requests.of(outcome.status_class()).inc();
            self.metrics.latency.observe_nanos(nanos);
        }

        /// The latency history's counts alone.
        pub fn history(&self, outcome: levee_core::Outcome, nanos: u64) {
            self.served.record(outcome, nanos);
        }
    }
}
