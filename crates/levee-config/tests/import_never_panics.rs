//! `levee slo import` never panics, whatever it is fed: documents in the
//! shapes it reads (OpenSLO v1 and v1alpha, Sloth, with their keys) whose
//! values are drawn from a pool of right and wrong ones, with and without
//! a mapping and `--strict`. Each import must end in TOML or in diagnostics
//! that point into the file.

use levee_config::openslo::{import_str, Options};
use proptest::prelude::*;

/// A generated value, written as YAML flow (JSON-like) text.
#[derive(Debug, Clone)]
enum V {
    Null,
    Int(i64),
    Float(f64),
    Str(String),
    List(Vec<V>),
    Map(Vec<(String, V)>),
}

impl V {
    fn yaml(&self) -> String {
        match self {
            V::Null => "null".into(),
            V::Int(i) => i.to_string(),
            V::Float(f) if f.is_finite() => format!("{f:?}"),
            V::Float(_) => ".nan".into(),
            V::Str(s) => format!("{s:?}"),
            V::List(items) => format!(
                "[{}]",
                items.iter().map(V::yaml).collect::<Vec<_>>().join(", ")
            ),
            V::Map(entries) => format!(
                "{{{}}}",
                entries
                    .iter()
                    .map(|(k, v)| format!("{k:?}: {}", v.yaml()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
}

/// Every key the importer reads, so generated maps reach its branches.
const KEYS: &[&str] = &[
    "apiVersion",
    "kind",
    "metadata",
    "name",
    "spec",
    "labels",
    "annotations",
    "displayName",
    "description",
    "service",
    "indicator",
    "indicatorRef",
    "ratioMetric",
    "ratioMetrics",
    "thresholdMetric",
    "good",
    "bad",
    "total",
    "raw",
    "metricSource",
    "metricSourceRef",
    "type",
    "query",
    "source",
    "route",
    "tier",
    "tenant",
    "cluster",
    "sli",
    "threshold",
    "unit",
    "timeWindow",
    "timeWindows",
    "duration",
    "isRolling",
    "calendar",
    "timeZone",
    "count",
    "budgetingMethod",
    "objectives",
    "target",
    "targetPercent",
    "op",
    "value",
    "timeSliceTarget",
    "timeSliceWindow",
    "alertPolicies",
    "alertPolicyRef",
    "conditions",
    "conditionRef",
    "severity",
    "condition",
    "lookbackWindow",
    "alertAfter",
    "alertWhenBreaching",
    "alertWhenNoData",
    "notificationTargets",
    "version",
    "slos",
    "objective",
    "events",
    "error_query",
    "total_query",
    "error_ratio_query",
    "plugin",
    "id",
    "alerting",
    "page_alert",
    "ticket_alert",
    "disable",
];

const STRINGS: &[&str] = &[
    "openslo/v1",
    "openslo/v1alpha",
    "prometheus/v1",
    "sloth.slok.dev/v1",
    "PrometheusServiceLevel",
    "SLO",
    "SLI",
    "AlertPolicy",
    "AlertCondition",
    "DataSource",
    "Service",
    "Levee",
    "Prometheus",
    "Any",
    "Occurrences",
    "Timeslices",
    "RatioTimeslices",
    "checkout",
    "core",
    "latency",
    "availability",
    "28d",
    "1M",
    "0m",
    "1m",
    "5m",
    "99x",
    "Day",
    "Month",
    "Second",
    "page",
    "ticket",
    "burnrate",
    "lte",
    "gt",
    "300ms",
    "",
    "sum(rate(x_bucket{le=\"0.3\"}[5m]))",
    "le=",
    "le=\"1e309\"",
    "_bucket le=9999999",
    "https://wiki.example.com/r",
    "Europe/Berlin",
    "true",
    "a b!",
];

fn leaf() -> impl Strategy<Value = V> {
    prop_oneof![
        Just(V::Null),
        any::<i64>().prop_map(V::Int),
        prop_oneof![
            Just(0.999),
            Just(99.9),
            Just(-1.0),
            Just(1e300),
            any::<f64>()
        ]
        .prop_map(V::Float),
        prop::sample::select(STRINGS).prop_map(|s| V::Str(s.to_string())),
        ".{0,12}".prop_map(V::Str),
    ]
}

fn value() -> impl Strategy<Value = V> {
    leaf().prop_recursive(5, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(V::List),
            prop::collection::vec((prop::sample::select(KEYS), inner), 0..6)
                .prop_map(|e| { V::Map(e.into_iter().map(|(k, v)| (k.to_string(), v)).collect()) }),
        ]
    })
}

/// A document with a known header, so most reach the mapping code.
fn document() -> impl Strategy<Value = String> {
    let header = prop_oneof![
        Just("apiVersion: openslo/v1\nkind: SLO\nmetadata: {name: checkout}\n"),
        Just("apiVersion: openslo/v1\nkind: SLI\nmetadata: {name: checkout}\n"),
        Just("apiVersion: openslo/v1\nkind: AlertPolicy\nmetadata: {name: checkout}\n"),
        Just("apiVersion: openslo/v1alpha\nkind: SLO\nmetadata: {name: checkout}\n"),
        Just("version: prometheus/v1\nservice: checkout\n"),
        Just("apiVersion: sloth.slok.dev/v1\nkind: PrometheusServiceLevel\nmetadata: {name: c}\n"),
        Just(""),
    ];
    (
        header,
        prop::collection::vec((prop::sample::select(KEYS), value()), 0..6),
    )
        .prop_map(|(h, entries)| {
            let mut out = h.to_string();
            for (k, v) in entries {
                out.push_str(&format!("{k:?}: {}\n", v.yaml()));
            }
            out
        })
}

fn check(src: &str, opts: &Options) {
    match import_str(src, "in.yaml", opts) {
        Ok(imported) => assert!(imported.toml.starts_with("# Levee SLOs imported")),
        Err(diags) => {
            assert!(!diags.0.is_empty());
            let lines = src.lines().count().max(1) + 1;
            for d in &diags.0 {
                assert!(
                    d.line >= 1 && d.line <= lines,
                    "{d} outside the file:\n{src}"
                );
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn import_never_panics(docs in prop::collection::vec(document(), 1..4), strict: bool, mapped: bool) {
        let src = docs.join("---\n");
        let mut opts = Options { strict, ..Options::default() };
        if mapped {
            opts.mapping.add_flag("checkout=route:checkout,latency:300ms").unwrap();
            opts.mapping.add_routes(["c".to_string()]);
        }
        check(&src, &opts);
    }
}
