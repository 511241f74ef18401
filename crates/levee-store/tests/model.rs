//! Random batches against a naive in-memory model: upserts, retention with
//! unsigned comparisons (values on both sides of 2^63), the largest id.

use levee_store::{
    AlertRow, Batch, BucketRow, IncidentRow, Retention, Snapshot, SqliteStore, Store,
};
use proptest::prelude::*;
use std::collections::BTreeMap;

#[derive(Default)]
struct Model {
    buckets: BTreeMap<(String, bool, u64), (u64, u64)>,
    alerts: BTreeMap<(String, String), (String, u64)>,
    incidents: BTreeMap<u64, IncidentRow>,
    max_id: Option<u64>,
}

impl Model {
    fn apply(&mut self, b: &Batch) {
        for r in &b.buckets {
            self.buckets
                .insert((r.slo.clone(), r.coarse, r.start_ns), (r.good, r.total));
        }
        for a in &b.alerts {
            self.alerts.insert(
                (a.slo.clone(), a.severity.clone()),
                (a.state.clone(), a.since_ns),
            );
        }
        for i in &b.incidents {
            self.incidents.insert(i.id, i.clone());
            self.max_id = self.max_id.max(Some(i.id));
        }
        if let Some(r) = &b.prune {
            self.buckets.retain(|(_, coarse, start), _| {
                *start
                    >= if *coarse {
                        r.coarse_before_ns
                    } else {
                        r.fine_before_ns
                    }
            });
            self.incidents
                .retain(|_, i| i.resolve_ns.is_none_or(|t| t >= r.incidents_before_ns));
            while self.incidents.len() > r.max_incidents {
                self.incidents.pop_first();
            }
        }
    }

    fn snapshot(&self) -> Snapshot {
        Snapshot {
            buckets: self
                .buckets
                .iter()
                .map(|((slo, coarse, start_ns), (good, total))| BucketRow {
                    slo: slo.clone(),
                    coarse: *coarse,
                    start_ns: *start_ns,
                    good: *good,
                    total: *total,
                })
                .collect(),
            alerts: self
                .alerts
                .iter()
                .map(|((slo, severity), (state, since_ns))| AlertRow {
                    slo: slo.clone(),
                    severity: severity.clone(),
                    state: state.clone(),
                    since_ns: *since_ns,
                })
                .collect(),
            incidents: self.incidents.values().cloned().collect(),
            max_incident_id: self.max_id,
        }
    }
}

/// The store lists by SQLite's signed order; the model by unsigned order.
fn normalized(mut s: Snapshot) -> Snapshot {
    s.buckets
        .sort_by(|a, b| (&a.slo, a.coarse, a.start_ns).cmp(&(&b.slo, b.coarse, b.start_ns)));
    s.incidents.sort_by_key(|i| i.id);
    s
}

/// Values on both sides of 2^63 and at the edges.
fn value() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0u64),
        Just(1),
        Just(i64::MAX as u64),
        Just(i64::MAX as u64 + 1),
        Just(u64::MAX),
        0u64..20,
        (i64::MAX as u64 - 10)..=(i64::MAX as u64 + 10),
        any::<u64>(),
    ]
}

fn name() -> impl Strategy<Value = String> {
    prop_oneof![Just("a"), Just("b"), Just("c")].prop_map(str::to_owned)
}

fn bucket() -> impl Strategy<Value = BucketRow> {
    (name(), any::<bool>(), value(), value(), value()).prop_map(|(slo, coarse, start_ns, x, y)| {
        BucketRow {
            slo,
            coarse,
            start_ns,
            good: x.min(y),
            total: x.max(y),
        }
    })
}

fn alert() -> impl Strategy<Value = AlertRow> {
    (name(), name(), name(), value()).prop_map(|(slo, severity, state, since_ns)| AlertRow {
        slo,
        severity,
        state,
        since_ns,
    })
}

fn incident() -> impl Strategy<Value = IncidentRow> {
    (
        prop_oneof![
            0u64..8,
            Just(i64::MAX as u64),
            Just(i64::MAX as u64 + 1),
            Just(u64::MAX)
        ],
        name(),
        (value(), any::<bool>(), value()),
        (proptest::option::of(value()), proptest::option::of(value())),
        (value(), value()),
        proptest::option::of(name()),
        proptest::collection::vec((name(), name()), 0..3),
    )
        .prop_map(
            |(
                id,
                slo,
                (start_ns, start_clipped, detect_ns),
                (recover_ns, resolve_ns),
                (bad_events, budget_spent_ppm),
                runbook,
                labels,
            )| {
                IncidentRow {
                    id,
                    slo,
                    severity: "page".to_owned(),
                    start_ns,
                    start_clipped,
                    detect_ns,
                    recover_ns,
                    resolve_ns,
                    bad_events,
                    budget_spent_ppm,
                    runbook,
                    labels,
                }
            },
        )
}

fn retention() -> impl Strategy<Value = Retention> {
    (value(), value(), value(), 0usize..6).prop_map(|(f, c, i, m)| Retention {
        fine_before_ns: f,
        coarse_before_ns: c,
        incidents_before_ns: i,
        max_incidents: m,
    })
}

fn batch() -> impl Strategy<Value = Batch> {
    (
        proptest::collection::vec(bucket(), 0..8),
        proptest::collection::vec(alert(), 0..3),
        proptest::collection::vec(incident(), 0..3),
        proptest::option::weighted(0.3, retention()),
    )
        .prop_map(|(buckets, alerts, incidents, prune)| Batch {
            buckets,
            alerts,
            incidents,
            prune,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn the_store_matches_a_naive_model(batches in proptest::collection::vec(batch(), 1..12)) {
        let mut store = SqliteStore::in_memory().unwrap();
        let mut model = Model::default();
        for b in &batches {
            store.write(b).unwrap();
            model.apply(b);
            prop_assert_eq!(normalized(store.load().unwrap()), model.snapshot());
        }
    }
}
