//! Capacity utilisation: how close each cluster is to its limits (requests
//! in flight, the adaptive concurrency limit, the pending queue,
//! connections), each endpoint to its weighted share of the cluster's
//! request limit, and each route-wide rate limit to its rate; with the
//! configured warning and critical thresholds. Sampled every few seconds
//! off the request path into gauges and a report for the admin API.

use crate::cluster::ClusterRuntime;
use levee_config::Capacity as Thresholds;
use levee_core::metrics::{names, FloatGauge, Registry};
use levee_core::time::Instant;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::Arc;

/// Capacity as of the last sample.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CapacityReport {
    /// Utilisation from which a resource is `warning`.
    pub warn_at: f64,
    /// Utilisation from which it is `critical`.
    pub critical_at: f64,
    /// Per cluster, sorted by name.
    pub clusters: Vec<ClusterCapacity>,
    /// Per route rate limit.
    pub rate_limits: Vec<RateLimitCapacity>,
}

/// One cluster's utilisation.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterCapacity {
    /// Cluster name.
    pub name: String,
    /// The worst of its resources: `ok`, `warning` or `critical`;
    /// `unlimited` when no limit is configured.
    pub status: &'static str,
    /// Each limited resource.
    pub resources: Vec<Resource>,
    /// Each endpoint's share.
    pub endpoints: Vec<EndpointCapacity>,
}

/// One limited resource.
#[derive(Debug, Clone, Serialize)]
pub struct Resource {
    /// `requests`, `concurrency`, `pending` or `connections`.
    pub resource: &'static str,
    /// In use now.
    pub used: f64,
    /// The limit.
    pub limit: f64,
    /// `used / limit`.
    pub utilisation: f64,
    /// `ok`, `warning` or `critical`.
    pub status: &'static str,
}

/// One endpoint's utilisation of its share of the cluster's request limit
/// (the limit split by weight among the endpoints taking traffic).
#[derive(Debug, Clone, Serialize)]
pub struct EndpointCapacity {
    /// `ip:port`.
    pub address: String,
    /// Requests in flight.
    pub in_flight: i64,
    /// Its share of the cluster limit; absent without one.
    pub limit: Option<f64>,
    /// `in_flight / limit`.
    pub utilisation: Option<f64>,
    /// `ok`, `warning`, `critical` or `unlimited`.
    pub status: &'static str,
}

/// One route-wide rate limit's utilisation.
#[derive(Debug, Clone, Serialize)]
pub struct RateLimitCapacity {
    /// Route.
    pub route: String,
    /// Limit name.
    pub limit: String,
    /// Requests per second reaching the limit (admitted and refused) over
    /// the last sample interval.
    pub rate_per_second: f64,
    /// The limit's rate per second (per key for keyed limits).
    pub limit_per_second: f64,
    /// `rate / limit`; for keyed limits, the share refused instead.
    pub utilisation: f64,
    /// Whether the limit is kept per key.
    pub keyed: bool,
    /// `ok`, `warning` or `critical`.
    pub status: &'static str,
}

fn status(utilisation: f64, t: &Thresholds) -> &'static str {
    if utilisation >= t.critical_at {
        "critical"
    } else if utilisation >= t.warn_at {
        "warning"
    } else {
        "ok"
    }
}

fn worst<'a>(statuses: impl Iterator<Item = &'a str>) -> &'static str {
    let mut out = "unlimited";
    for s in statuses {
        out = match (out, s) {
            (_, "critical") | ("critical", _) => "critical",
            (_, "warning") | ("warning", _) => "warning",
            (_, "ok") | ("ok", _) => "ok",
            _ => out,
        };
    }
    out
}

/// The previous counter readings of the rate limits, for rates.
#[derive(Debug, Default)]
pub(crate) struct Sampler {
    previous: HashMap<(String, String), (u64, u64, Instant)>,
    gauges: HashMap<(String, String, String), Arc<FloatGauge>>,
}

impl Sampler {
    fn gauge(&mut self, registry: &Registry, kind: &str, a: &str, b: &str) -> Arc<FloatGauge> {
        self.gauges
            .entry((kind.to_string(), a.to_string(), b.to_string()))
            .or_insert_with(|| match kind {
                "rate" => registry.float_gauge(
                    names::RATE_LIMIT_UTILISATION,
                    "Request rate over the rate limit's rate (refused share for keyed limits).",
                    &[("route", a), ("limit", b)],
                ),
                "endpoint" => registry.float_gauge(
                    names::CAPACITY_UTILISATION,
                    "Utilisation of a cluster's or endpoint's limits.",
                    &[("cluster", a), ("endpoint", b), ("resource", "requests")],
                ),
                _ => registry.float_gauge(
                    names::CAPACITY_UTILISATION,
                    "Utilisation of a cluster's or endpoint's limits.",
                    &[("cluster", a), ("endpoint", ""), ("resource", b)],
                ),
            })
            .clone()
    }

    /// Samples every cluster and rate limit now.
    pub(crate) fn sample(
        &mut self,
        clusters: &[Arc<ClusterRuntime>],
        limits: &[(String, Arc<crate::admit::RouteLimit>)],
        thresholds: &Thresholds,
        registry: &Registry,
    ) -> CapacityReport {
        let mut out = CapacityReport {
            warn_at: thresholds.warn_at,
            critical_at: thresholds.critical_at,
            ..Default::default()
        };
        for c in clusters {
            let bulk = c.bulkheads.status();
            let view = c.view();
            let in_flight: i64 = view.all.iter().map(|e| e.in_flight.get()).sum();
            let l = &c.config.limits;
            let mut resources = Vec::new();
            let mut push = |resource: &'static str, used: f64, limit: Option<f64>| {
                if let Some(limit) = limit.filter(|l| *l > 0.0) {
                    let utilisation = used / limit;
                    resources.push(Resource {
                        resource,
                        used,
                        limit,
                        utilisation,
                        status: status(utilisation, thresholds),
                    });
                }
            };
            push(
                "requests",
                bulk.requests_in_flight.map_or(in_flight as f64, f64::from),
                l.max_requests.map(f64::from),
            );
            if let Some(q) = &c.queue {
                push(
                    "concurrency",
                    f64::from(q.in_flight()),
                    Some(f64::from(q.limit())),
                );
            }
            push(
                "pending",
                f64::from(bulk.pending),
                l.max_pending.map(f64::from),
            );
            push(
                "connections",
                f64::from(bulk.connections),
                l.max_connections.map(f64::from),
            );
            for r in &resources {
                self.gauge(registry, "cluster", c.name(), r.resource)
                    .set(r.utilisation);
            }
            // The request limit an endpoint shares: the tighter of the
            // bulkhead and the concurrency limit.
            let cluster_limit = [
                l.max_requests.map(f64::from),
                c.queue.as_ref().map(|q| f64::from(q.limit())),
            ]
            .into_iter()
            .flatten()
            .reduce(f64::min);
            let serving: Vec<_> = view
                .all
                .iter()
                .filter(|e| e.is_healthy() && !e.is_ejected())
                .collect();
            let total_weight: f64 = serving.iter().map(|e| f64::from(e.weight)).sum();
            let endpoints = view
                .all
                .iter()
                .map(|e| {
                    let serves = serving.iter().any(|s| Arc::ptr_eq(s, e));
                    let limit = cluster_limit
                        .filter(|_| serves && total_weight > 0.0)
                        .map(|l| l * f64::from(e.weight) / total_weight);
                    let utilisation = limit.map(|l| e.in_flight.get() as f64 / l);
                    if let Some(u) = utilisation {
                        self.gauge(registry, "endpoint", c.name(), &e.label).set(u);
                    }
                    EndpointCapacity {
                        address: e.label.clone(),
                        in_flight: e.in_flight.get(),
                        limit,
                        utilisation,
                        status: utilisation.map_or("unlimited", |u| status(u, thresholds)),
                    }
                })
                .collect();
            out.clusters.push(ClusterCapacity {
                name: c.name().to_string(),
                status: worst(resources.iter().map(|r| r.status)),
                resources,
                endpoints,
            });
        }
        out.clusters.sort_by(|a, b| a.name.cmp(&b.name));
        let now = levee_core::time::now();
        for (route, limit) in limits {
            let (allowed, limited) = limit.decisions();
            let key = (route.clone(), limit.config.name.clone());
            let (rate, refused_share) = match self.previous.insert(key, (allowed, limited, now)) {
                Some((a0, l0, t0)) if now > t0 => {
                    let (da, dl) = (allowed.saturating_sub(a0), limited.saturating_sub(l0));
                    let secs = now.duration_since(t0).as_secs_f64();
                    let share = if da + dl == 0 {
                        0.0
                    } else {
                        dl as f64 / (da + dl) as f64
                    };
                    ((da + dl) as f64 / secs, share)
                }
                _ => (0.0, 0.0),
            };
            let per = limit.config.per.as_secs_f64();
            let limit_rate = limit.config.rate as f64 / per;
            let keyed = !limit.config.key.is_empty();
            let utilisation = if keyed {
                refused_share
            } else {
                rate / limit_rate
            };
            self.gauge(registry, "rate", route, &limit.config.name)
                .set(utilisation);
            out.rate_limits.push(RateLimitCapacity {
                route: route.clone(),
                limit: limit.config.name.clone(),
                rate_per_second: rate,
                limit_per_second: limit_rate,
                utilisation,
                keyed,
                status: status(utilisation, thresholds),
            });
        }
        out
    }
}
