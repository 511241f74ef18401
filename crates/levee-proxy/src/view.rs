//! A cluster's routing view: the endpoints that take traffic now, grouped by
//! priority level and zone, with a balancer per group. Immutable once built
//! and swapped atomically, so a pick takes no lock; rebuilt when health,
//! ejection, breakers, DNS, a slow-start ramp or a priority failback
//! changes it.
//!
//! A pick chooses a priority level by its load (failover with an
//! overprovisioning factor, `levee_policy::locality`), then a zone within it
//! (zone-aware routing: local first, spill proportional to spare capacity),
//! then an endpoint by the cluster's balancer. With one level and no zones
//! it is a single balancer over all candidates, as simple as before.

use crate::cluster::EndpointState;
use levee_config::{Locality, SlowStart};
use levee_core::Nanos;
use levee_policy::locality::{pick_level, weight_shares, ZoneInput, ZoneMode, ZoneRouting};
use levee_policy::{Algorithm, Balancer};
use std::sync::Arc;

/// Endpoints with the balancer built for them.
#[derive(Debug)]
pub(crate) struct Group {
    pub(crate) candidates: Vec<Arc<EndpointState>>,
    pub(crate) balancer: Balancer,
}

impl Group {
    fn new(algorithm: Algorithm, candidates: Vec<Arc<EndpointState>>, weights: &[u32]) -> Self {
        let keys: Vec<&str> = candidates.iter().map(|e| e.label.as_str()).collect();
        Self {
            balancer: Balancer::new(algorithm, &keys, weights),
            candidates,
        }
    }
}

/// One priority level: its candidates, and per zone when zone-aware.
#[derive(Debug)]
pub(crate) struct Level {
    pub(crate) priority: u32,
    group: Group,
    zones: Vec<Group>,
    pub(crate) zone_names: Vec<String>,
    pub(crate) routing: Option<ZoneRouting>,
}

/// What a view is built from, besides the endpoints.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ViewContext<'a> {
    pub(crate) algorithm: Algorithm,
    pub(crate) locality: &'a Locality,
    pub(crate) local_zone: Option<&'a str>,
    pub(crate) slow_start: Option<&'a SlowStart>,
    pub(crate) now: Nanos,
}

/// The endpoints that take traffic now, and how to choose among them.
#[derive(Debug)]
pub(crate) struct ClusterView {
    pub(crate) all: Vec<Arc<EndpointState>>,
    /// Every candidate: the single group when there are no levels or zones,
    /// and the last resort for retries.
    pub(crate) flat: Group,
    pub(crate) levels: Vec<Level>,
    /// Share of traffic per level, in `levels` order.
    pub(crate) loads: Vec<f64>,
    pub(crate) panic: bool,
    /// Every endpoint's breaker is open: nothing may be sent.
    pub(crate) all_breakers_open: bool,
    /// Some endpoint is still ramping up (slow start): rebuild soon.
    pub(crate) ramping: bool,
}

/// The healthy share of each priority level's weight, levels in ascending
/// priority order.
pub(crate) fn level_health(all: &[Arc<EndpointState>]) -> (Vec<u32>, Vec<f64>) {
    let mut priorities: Vec<u32> = all.iter().map(|e| e.priority).collect();
    priorities.sort_unstable();
    priorities.dedup();
    let shares = priorities
        .iter()
        .map(|p| {
            let (healthy, total) =
                all.iter()
                    .filter(|e| e.priority == *p)
                    .fold((0u64, 0u64), |(h, t), e| {
                        let w = u64::from(e.weight);
                        (h + if e.takes_traffic() { w } else { 0 }, t + w)
                    });
            if total == 0 {
                0.0
            } else {
                healthy as f64 / total as f64
            }
        })
        .collect();
    (priorities, shares)
}

impl ClusterView {
    /// Builds the view; `loads` are the priority levels' shares (from the
    /// cluster's failover state, in [`level_health`] order).
    pub(crate) fn build(
        ctx: ViewContext<'_>,
        all: Vec<Arc<EndpointState>>,
        loads: Vec<f64>,
    ) -> Self {
        // Open breakers are obeyed even in panic mode: they saw the
        // endpoint fail live traffic just now.
        let available: Vec<&Arc<EndpointState>> =
            all.iter().filter(|e| !e.is_breaker_open()).collect();
        let healthy: Vec<Arc<EndpointState>> = available
            .iter()
            .filter(|e| e.takes_traffic())
            .map(|e| (*e).clone())
            .collect();
        // With nothing healthy, sending to all beats sending to none: health
        // checks can be wrong, the upstream may still answer ("panic mode").
        let panic = healthy.is_empty() && !available.is_empty();
        let all_breakers_open = available.is_empty() && !all.is_empty();
        let candidates: Vec<Arc<EndpointState>> = if panic {
            available.into_iter().cloned().collect()
        } else {
            healthy
        };
        let mut ramping = false;
        // With slow start, weights are scaled so that a ramp has steps to
        // take even for weight 1 (the default).
        let weight = |e: &Arc<EndpointState>, ramping: &mut bool| match ctx.slow_start {
            Some(s) => {
                let full = e.weight.saturating_mul(SLOW_START_SCALE);
                let since = e.returned_at();
                if since > 0 && ctx.now < ramp_end(s, since) {
                    *ramping = true;
                    slow_start(s).ramped_weight(full, since, ctx.now)
                } else {
                    full
                }
            }
            None => e.weight,
        };
        let weights: Vec<u32> = candidates.iter().map(|e| weight(e, &mut ramping)).collect();
        let flat = Group::new(ctx.algorithm, candidates.clone(), &weights);

        let (priorities, _) = level_health(&all);
        let zone_aware = ctx.locality.zone_aware && ctx.local_zone.is_some();
        let levels = if priorities.len() <= 1 && !zone_aware {
            Vec::new()
        } else {
            priorities
                .iter()
                .map(|p| {
                    let members: Vec<(Arc<EndpointState>, u32)> = candidates
                        .iter()
                        .zip(&weights)
                        .filter(|(e, _)| e.priority == *p)
                        .map(|(e, w)| (e.clone(), *w))
                        .collect();
                    build_level(ctx, *p, &all, members, zone_aware)
                })
                .collect()
        };
        Self {
            all,
            flat,
            levels,
            loads,
            panic,
            all_breakers_open,
            ramping,
        }
    }

    /// The group a request draws its endpoint from.
    pub(crate) fn choose(&self, random: u64) -> &Group {
        if self.levels.is_empty() {
            return &self.flat;
        }
        let level = &self.levels[pick_level(&self.loads, random).min(self.levels.len() - 1)];
        if level.group.candidates.is_empty() {
            return &self.flat;
        }
        match &level.routing {
            Some(r) if r.mode() != ZoneMode::Spread => level
                .zones
                .get(r.pick_zone(random.rotate_left(29)))
                .filter(|g| !g.candidates.is_empty())
                .unwrap_or(&level.group),
            _ => &level.group,
        }
    }
}

/// Weight resolution of slow-start ramps (5% steps).
const SLOW_START_SCALE: u32 = 20;

fn slow_start(s: &SlowStart) -> levee_policy::slow_start::SlowStart {
    levee_policy::slow_start::SlowStart {
        window: s.window,
        aggression: s.aggression,
        min_weight_percent: s.min_weight_percent,
    }
}

fn ramp_end(s: &SlowStart, since: Nanos) -> Nanos {
    slow_start(s).ends_at(since)
}

fn build_level(
    ctx: ViewContext<'_>,
    priority: u32,
    all: &[Arc<EndpointState>],
    members: Vec<(Arc<EndpointState>, u32)>,
    zone_aware: bool,
) -> Level {
    let weights: Vec<u32> = members.iter().map(|(_, w)| *w).collect();
    let group = Group::new(
        ctx.algorithm,
        members.iter().map(|(e, _)| e.clone()).collect(),
        &weights,
    );
    let local = ctx.local_zone.filter(|_| zone_aware);
    // Zones as configured on the level's endpoints (healthy or not), then
    // zones only the gateway fleet has.
    let mut zone_names: Vec<String> = all
        .iter()
        .filter(|e| e.priority == priority)
        .filter_map(|e| e.zone.clone())
        .collect();
    zone_names.sort();
    zone_names.dedup();
    let Some(local_index) = local.and_then(|z| zone_names.iter().position(|n| n == z)) else {
        return Level {
            priority,
            group,
            zones: Vec::new(),
            zone_names,
            routing: None,
        };
    };
    let endpoint_zones = zone_names.len();
    for (z, _) in &ctx.locality.fleet_zones {
        if !zone_names.contains(z) {
            zone_names.push(z.clone());
        }
    }
    let zones: Vec<Group> = zone_names
        .iter()
        .map(|z| {
            let (eps, ws): (Vec<_>, Vec<_>) = members
                .iter()
                .filter(|(e, _)| e.zone.as_deref() == Some(z.as_str()))
                .map(|(e, w)| (e.clone(), *w))
                .unzip();
            Group::new(ctx.algorithm, eps, &ws)
        })
        .collect();
    let healthy_weight: Vec<u64> = zones
        .iter()
        .map(|g| g.candidates.iter().map(|e| u64::from(e.weight)).sum())
        .collect();
    let fleet_share = if ctx.locality.fleet_zones.is_empty() {
        let configured: Vec<u64> = zone_names[..endpoint_zones]
            .iter()
            .map(|z| {
                all.iter()
                    .filter(|e| e.priority == priority && e.zone.as_deref() == Some(z.as_str()))
                    .map(|e| u64::from(e.weight))
                    .sum()
            })
            .collect();
        weight_shares(&configured)
    } else {
        zone_names
            .iter()
            .map(|z| {
                ctx.locality
                    .fleet_zones
                    .iter()
                    .find(|(n, _)| n == z)
                    .map_or(0.0, |(_, s)| *s)
            })
            .collect()
    };
    let routing = ZoneRouting::new(&ZoneInput {
        local_zone: local_index,
        healthy_weight: &healthy_weight,
        healthy_hosts: members.len(),
        fleet_share: &fleet_share,
        min_cluster_size: ctx.locality.min_cluster_size,
    });
    Level {
        priority,
        group,
        zones,
        zone_names,
        routing: Some(routing),
    }
}
