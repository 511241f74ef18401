//! The data-plane side of SLOs (step 7): per-objective event counters fed
//! by each request's one outcome, and the bindings that say which counters
//! a route feeds. Recording is one relaxed atomic add per SLO that covers
//! the request; the evaluation loop (`levee-control`) drains the counters
//! into buckets every tick. The counters are the SLO state the data plane
//! publishes; this module is all of SLOs that sits on the request path.

use levee_config::{Config, Route, Sli, SloScope, Tier};
use levee_core::{ErrorKind, Outcome};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Events of one SLO objective not yet folded into its buckets: total in
/// the high 32 bits, good in the low 32, so one add records both and one
/// swap drains both consistently. Four billion events per tick is far
/// beyond any gateway.
#[derive(Debug, Default)]
pub struct SloCounter {
    pending: AtomicU64,
}

const ONE_EVENT: u64 = 1 << 32;

impl SloCounter {
    /// Counts one event.
    #[inline]
    pub fn record(&self, good: bool) {
        self.pending
            .fetch_add(ONE_EVENT | u64::from(good), Ordering::Relaxed);
    }

    /// Puts drained events back (they could not be shared with the fleet:
    /// the next drain takes them again).
    pub fn put_back(&self, good: u64, total: u64) {
        let good = good.min(total).min(0xffff_ffff);
        self.pending
            .fetch_add((total.min(0xffff_ffff) << 32) | good, Ordering::Relaxed);
    }

    /// Takes the events recorded since the last drain: `(good, total)`.
    pub fn drain(&self) -> (u64, u64) {
        let v = self.pending.swap(0, Ordering::Relaxed);
        (v & 0xffff_ffff, v >> 32)
    }
}

/// What makes one request a good event for a binding.
#[derive(Debug, Clone, Copy)]
enum GoodWhen {
    /// Not a server failure (`Outcome::is_server_failure`: a 5xx, the
    /// gateway's own included), nor, when configured, a 429.
    Available { rate_limited_is_bad: bool },
    /// Not a 5xx, and answered within the threshold.
    Within { threshold_ns: u64 },
}

/// One SLO objective a route's requests feed.
#[derive(Debug, Clone)]
pub(crate) struct SloBinding {
    counter: Arc<SloCounter>,
    /// Only this tenant's requests count, when set.
    tenant: Option<Arc<str>>,
    good_when: GoodWhen,
}

impl SloBinding {
    /// Counts one finished request. A client that left before its answer
    /// is not an event: the service was never judged.
    #[inline]
    pub(crate) fn record(&self, outcome: Outcome, elapsed_ns: u64, tenant: Option<&str>) {
        if let Some(want) = &self.tenant {
            if tenant != Some(&**want) {
                return;
            }
        }
        if outcome == Outcome::Failed(ErrorKind::ClientClosed) {
            return;
        }
        let good = match self.good_when {
            GoodWhen::Available {
                rate_limited_is_bad,
            } => !(outcome.is_server_failure() || (rate_limited_is_bad && outcome.status() == 429)),
            GoodWhen::Within { threshold_ns } => {
                !outcome.is_server_failure() && elapsed_ns <= threshold_ns
            }
        };
        self.counter.record(good);
    }
}

/// The id of the implicit availability series of a tier (status page).
pub fn tier_series_id(tier: Tier) -> &'static str {
    match tier {
        Tier::Core => "tier:core",
        Tier::Optional => "tier:optional",
    }
}

/// The counters of every SLO objective, kept by id across reloads so a
/// reload loses no events.
#[derive(Debug, Default)]
pub struct SloCounters {
    by_id: Mutex<HashMap<String, Arc<SloCounter>>>,
}

impl SloCounters {
    /// The counter of `id`, created on first use.
    pub fn get(&self, id: &str) -> Arc<SloCounter> {
        let mut map = self.by_id.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(id.to_string()).or_default().clone()
    }

    /// The bindings of every route in `config`, by route name: each SLO
    /// objective whose route, tier and cluster selectors match the route,
    /// and the route's tier series. (`job_completion` objectives are
    /// counted as jobs finish, not as requests: [`SloCounters::bind_jobs`].)
    pub(crate) fn bind(&self, config: &Config) -> HashMap<String, Arc<[SloBinding]>> {
        config
            .routes
            .iter()
            .map(|route| {
                let tier = SloBinding {
                    counter: self.get(tier_series_id(route.tier)),
                    tenant: None,
                    good_when: GoodWhen::Available {
                        rate_limited_is_bad: false,
                    },
                };
                let mut bindings = vec![tier];
                bindings.extend(self.objectives(config, route, false));
                (route.name.clone(), Arc::from(bindings))
            })
            .collect()
    }

    /// The `job_completion` objectives of each async route, by route name:
    /// a job delivered within the threshold of its acceptance is good, one
    /// delivered later or given up on is bad.
    pub(crate) fn bind_jobs(&self, config: &Config) -> HashMap<String, Arc<[SloBinding]>> {
        config
            .routes
            .iter()
            .filter(|r| r.async_jobs.is_some())
            .map(|route| {
                let bindings: Vec<_> = self.objectives(config, route, true).collect();
                (route.name.clone(), Arc::from(bindings))
            })
            .collect()
    }

    /// The objectives covering `route`: of jobs (`job_completion`) or of
    /// requests (the others).
    fn objectives<'a>(
        &'a self,
        config: &'a Config,
        route: &'a Route,
        jobs: bool,
    ) -> impl Iterator<Item = SloBinding> + 'a {
        config
            .slos
            .iter()
            .filter(move |s| covers(&s.scope, route) && (s.sli == Sli::JobCompletion) == jobs)
            .flat_map(move |slo| {
                let tenant: Option<Arc<str>> = slo.scope.tenant.as_deref().map(Arc::from);
                slo.objectives.iter().filter_map(move |objective| {
                    let good_when = match (slo.sli, objective.threshold) {
                        (Sli::Latency | Sli::JobCompletion, Some(t)) => GoodWhen::Within {
                            threshold_ns: u64::try_from(t.as_nanos()).unwrap_or(u64::MAX),
                        },
                        (
                            Sli::Availability {
                                rate_limited_is_bad,
                            },
                            _,
                        ) => GoodWhen::Available {
                            rate_limited_is_bad,
                        },
                        // Decoding gives every latency objective a threshold.
                        (Sli::Latency | Sli::JobCompletion, None) => return None,
                    };
                    Some(SloBinding {
                        counter: self.get(&objective.id),
                        tenant: tenant.clone(),
                        good_when,
                    })
                })
            })
    }
}

/// Whether an SLO's route, tier and cluster selectors all match `route`
/// (the tenant selector is checked per request).
fn covers(scope: &SloScope, route: &Route) -> bool {
    scope.route.as_ref().is_none_or(|r| *r == route.name)
        && scope.tier.is_none_or(|t| t == route.tier)
        && scope.cluster.as_ref().is_none_or(|c| *c == route.cluster)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(good_when: GoodWhen, tenant: Option<&str>) -> (SloBinding, Arc<SloCounter>) {
        let counter = Arc::new(SloCounter::default());
        (
            SloBinding {
                counter: counter.clone(),
                tenant: tenant.map(Arc::from),
                good_when,
            },
            counter,
        )
    }

    #[test]
    fn availability_counts_5xx_and_gateway_errors_as_bad_and_429_as_configured() {
        for rate_limited_is_bad in [false, true] {
            let (b, c) = binding(
                GoodWhen::Available {
                    rate_limited_is_bad,
                },
                None,
            );
            b.record(Outcome::Response(200), 0, None);
            b.record(Outcome::Response(404), 0, None);
            b.record(Outcome::Response(503), 0, None);
            b.record(Outcome::Failed(ErrorKind::Overloaded), 0, None);
            b.record(Outcome::Failed(ErrorKind::RateLimited), 0, None);
            b.record(Outcome::Failed(ErrorKind::ClientClosed), 0, None);
            let good = if rate_limited_is_bad { 2 } else { 3 };
            assert_eq!(
                c.drain(),
                (good, 5),
                "rate_limited_is_bad = {rate_limited_is_bad}"
            );
            assert_eq!(c.drain(), (0, 0), "drained");
        }
    }

    #[test]
    fn latency_needs_a_fast_answer_without_a_5xx() {
        let (b, c) = binding(GoodWhen::Within { threshold_ns: 100 }, None);
        b.record(Outcome::Response(200), 100, None);
        b.record(Outcome::Response(200), 101, None);
        b.record(Outcome::Response(500), 1, None);
        b.record(Outcome::Response(429), 1, None);
        assert_eq!(c.drain(), (2, 4));
    }

    #[test]
    fn a_tenant_slo_counts_only_its_tenant() {
        let (b, c) = binding(
            GoodWhen::Available {
                rate_limited_is_bad: false,
            },
            Some("acme"),
        );
        b.record(Outcome::Response(500), 0, Some("acme"));
        b.record(Outcome::Response(500), 0, Some("other"));
        b.record(Outcome::Response(500), 0, None);
        assert_eq!(c.drain(), (0, 1));
    }
}
