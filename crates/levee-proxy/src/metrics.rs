//! The proxy's metric handles, resolved once per route, cluster and endpoint
//! when a snapshot is built, so the request path only does atomic adds.

use levee_core::metrics::{names, Counter, Gauge, Histogram, Registry};
use levee_core::outcome::StatusClass;
use levee_core::ErrorKind;
use std::sync::Arc;

/// One counter per status class.
#[derive(Debug)]
pub(crate) struct PerStatusClass([Arc<Counter>; StatusClass::ALL.len()]);

impl PerStatusClass {
    fn new(counter: impl FnMut(StatusClass) -> Arc<Counter>) -> Self {
        Self(StatusClass::ALL.map(counter))
    }

    /// The counter of `class`.
    pub(crate) fn of(&self, class: StatusClass) -> &Counter {
        &self.0[class as usize]
    }
}

/// Per-route handles.
#[derive(Debug)]
pub(crate) struct RouteMetrics {
    pub(crate) requests: PerStatusClass,
    pub(crate) latency: Arc<Histogram>,
}

impl RouteMetrics {
    pub(crate) fn new(registry: &Registry, route: &str, cluster: &str) -> Self {
        Self {
            requests: PerStatusClass::new(|class| {
                registry.counter(
                    names::REQUESTS,
                    "Requests answered, by route, cluster and status class.",
                    &[
                        ("route", route),
                        ("cluster", cluster),
                        ("code", class.label()),
                    ],
                )
            }),
            latency: registry.histogram(
                names::ROUTE_LATENCY,
                "Time from request head to the end of the response, by route.",
                &[("route", route)],
            ),
        }
    }
}

/// Per-cluster handles.
#[derive(Debug)]
pub(crate) struct ClusterMetrics {
    pub(crate) upstream_requests: PerStatusClass,
    pub(crate) latency: Arc<Histogram>,
    errors: Vec<Arc<Counter>>,
    pub(crate) panic_mode: Arc<Gauge>,
    /// Endpoints the cluster has now.
    pub(crate) endpoints: Arc<Gauge>,
    pub(crate) health_ok: Arc<Counter>,
    pub(crate) health_failed: Arc<Counter>,
}

impl ClusterMetrics {
    pub(crate) fn new(registry: &Registry, cluster: &str) -> Self {
        Self {
            upstream_requests: PerStatusClass::new(|class| {
                registry.counter(
                    names::UPSTREAM_REQUESTS,
                    "Responses received from upstreams, by cluster and status class.",
                    &[("cluster", cluster), ("code", class.label())],
                )
            }),
            latency: registry.histogram(
                names::CLUSTER_LATENCY,
                "Time from sending an upstream request to its response head, by cluster.",
                &[("cluster", cluster)],
            ),
            errors: ErrorKind::ALL
                .iter()
                .map(|k| error_counter(registry, k.reason(), Some(cluster)))
                .collect(),
            panic_mode: registry.gauge(
                names::CLUSTER_PANIC,
                "1 when every endpoint is unhealthy and all of them take traffic.",
                &[("cluster", cluster)],
            ),
            endpoints: registry.gauge(
                names::CLUSTER_ENDPOINTS,
                "Endpoints the cluster has now: configured, resolved and discovered.",
                &[("cluster", cluster)],
            ),
            health_ok: registry.counter(
                names::HEALTH_CHECKS,
                "Active health check probes, by cluster and result.",
                &[("cluster", cluster), ("result", "success")],
            ),
            health_failed: registry.counter(
                names::HEALTH_CHECKS,
                "Active health check probes, by cluster and result.",
                &[("cluster", cluster), ("result", "failure")],
            ),
        }
    }

    pub(crate) fn error(&self, kind: ErrorKind) -> &Counter {
        let i = ErrorKind::ALL.iter().position(|k| *k == kind).unwrap_or(0);
        &self.errors[i]
    }
}

/// The counter for gateway-generated errors of `reason`.
pub(crate) fn error_counter(
    registry: &Registry,
    reason: &str,
    cluster: Option<&str>,
) -> Arc<Counter> {
    let help =
        "Responses the gateway generated itself, by reason (and cluster where one was chosen).";
    match cluster {
        Some(c) => registry.counter(names::ERRORS, help, &[("cluster", c), ("reason", reason)]),
        None => registry.counter(names::ERRORS, help, &[("reason", reason)]),
    }
}

/// Gateway-wide handles.
#[derive(Debug)]
pub(crate) struct GatewayMetrics {
    pub(crate) in_flight: Arc<Gauge>,
    /// Errors before a cluster is known, indexed like `ErrorKind::ALL`.
    errors: Vec<Arc<Counter>>,
    pub(crate) reload_ok: Arc<Counter>,
    pub(crate) reload_failed: Arc<Counter>,
    pub(crate) last_reload: Arc<Gauge>,
    pub(crate) last_reload_errors: Arc<Gauge>,
}

impl GatewayMetrics {
    pub(crate) fn new(registry: &Registry) -> Self {
        registry
            .gauge(
                names::BUILD_INFO,
                "Build information; the value is 1.",
                &[("version", env!("CARGO_PKG_VERSION"))],
            )
            .set(1);
        Self {
            in_flight: registry.gauge(names::IN_FLIGHT, "Requests in flight in the gateway.", &[]),
            errors: ErrorKind::ALL
                .iter()
                .map(|k| error_counter(registry, k.reason(), None))
                .collect(),
            reload_ok: registry.counter(
                names::RELOADS,
                "Configuration reloads, by result.",
                &[("result", "success")],
            ),
            reload_failed: registry.counter(
                names::RELOADS,
                "Configuration reloads, by result.",
                &[("result", "failure")],
            ),
            last_reload: registry.gauge(
                names::LAST_RELOAD,
                "Unix time of the last successful configuration load.",
                &[],
            ),
            last_reload_errors: registry.gauge(
                names::LAST_RELOAD_ERRORS,
                "Diagnostics of the last reload attempt (0 when it succeeded).",
                &[],
            ),
        }
    }

    pub(crate) fn error(&self, kind: ErrorKind) -> &Counter {
        let i = ErrorKind::ALL.iter().position(|k| *k == kind).unwrap_or(0);
        &self.errors[i]
    }
}

/// Per-listener handles.
#[derive(Debug)]
pub(crate) struct ListenerMetrics {
    pub(crate) active: Arc<Gauge>,
    pub(crate) accepted: Arc<Counter>,
    pub(crate) rejected: Arc<Counter>,
}

impl ListenerMetrics {
    pub(crate) fn new(registry: &Registry, listener: &str) -> Self {
        let labels = [("listener", listener)];
        Self {
            active: registry.gauge(names::ACTIVE_CONNECTIONS, "Open downstream connections.", &labels),
            accepted: registry.counter(names::CONNECTIONS, "Downstream connections accepted.", &labels),
            rejected: registry.counter(
                names::CONNECTIONS_REJECTED,
                "Downstream connections closed at accept because the listener was at max_connections.",
                &labels,
            ),
        }
    }
}
