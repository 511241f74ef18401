//! OpenSLO `v1alpha` documents, rewritten into the `v1` shape the importer
//! reads. Each value keeps the location it was written at, so diagnostics
//! and notes point into the original file (their field paths are the v1
//! ones: `spec.timeWindow[0].duration` for `spec.timeWindows[0]`).
//!
//! | v1alpha | v1 |
//! |---|---|
//! | `timeWindows: [{unit: Day, count: 28, isRolling}]` | `timeWindow: [{duration: 28d, isRolling}]` |
//! | `objectives[].ratioMetrics: {good, total}` of `{source, query}` | `indicator.spec.ratioMetric` with `metricSource: {type: source, spec: {query}}` |
//! | `indicator.thresholdMetric: {source, query}` | `indicator.spec.thresholdMetric.metricSource` |
//! | `objectives[].target`, `op`, `value`, `timeSliceTarget` | the same |

use crate::node::{Loc, Node, Value};

/// The document as v1 when it is v1alpha; otherwise unchanged.
pub(super) fn upgrade(root: Node) -> Node {
    let is_alpha = matches!(
        root.get("apiVersion"),
        Some(Node { value: Value::Str(v), .. }) if v == "openslo/v1alpha"
    );
    if !is_alpha {
        return root;
    }
    let Value::Map(entries) = root.value else {
        return root;
    };
    let is_slo = entries
        .iter()
        .any(|(k, _, v)| k == "kind" && v.value == Value::Str("SLO".into()));
    let out = entries
        .into_iter()
        .map(|(k, kloc, v)| match k.as_str() {
            "apiVersion" => (k, kloc, str_node("openslo/v1", v.loc)),
            "spec" if is_slo => (k, kloc, slo_spec(v)),
            _ => (k, kloc, v),
        })
        .collect();
    Node {
        value: Value::Map(out),
        loc: root.loc,
    }
}

fn str_node(s: &str, loc: Loc) -> Node {
    Node {
        value: Value::Str(s.to_string()),
        loc,
    }
}

fn map_node(entries: Vec<(&str, Node)>, loc: Loc) -> Node {
    Node {
        value: Value::Map(
            entries
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.loc, v))
                .collect(),
        ),
        loc,
    }
}

/// `{source, queryType, query, ...}` as `{metricSource: {type, spec}}`.
fn metric_source(m: &Node) -> Node {
    let Value::Map(entries) = &m.value else {
        return m.clone();
    };
    let ty = m
        .get("source")
        .cloned()
        .unwrap_or_else(|| str_node("unknown", m.loc));
    let spec: Vec<(String, Loc, Node)> = entries
        .iter()
        .filter(|(k, _, _)| k != "source")
        .cloned()
        .collect();
    let spec = Node {
        value: Value::Map(spec),
        loc: m.loc,
    };
    map_node(
        vec![(
            "metricSource",
            map_node(vec![("type", ty), ("spec", spec)], m.loc),
        )],
        m.loc,
    )
}

fn slo_spec(spec: Node) -> Node {
    let loc = spec.loc;
    let Value::Map(entries) = spec.value else {
        return spec;
    };
    let mut out: Vec<(String, Loc, Node)> = Vec::new();
    let mut indicator: Option<(Loc, Node)> = None;
    for (k, kloc, v) in entries {
        match k.as_str() {
            "timeWindows" => out.push(("timeWindow".into(), kloc, time_windows(v))),
            "indicator" => {
                if let Some(t) = v.get("thresholdMetric") {
                    let inner = map_node(vec![("thresholdMetric", metric_source(t))], t.loc);
                    let node = map_node(vec![("spec", inner)], v.loc);
                    indicator = Some((kloc, node));
                } else {
                    out.push((k, kloc, v));
                }
            }
            "objectives" => {
                let Value::Seq(items) = v.value else {
                    out.push((k, kloc, v));
                    continue;
                };
                let mut objectives = Vec::new();
                for o in items {
                    let Value::Map(fields) = o.value else {
                        objectives.push(o);
                        continue;
                    };
                    let mut kept = Vec::new();
                    for (fk, fkloc, fv) in fields {
                        if fk == "ratioMetrics" {
                            if indicator.is_none() {
                                let parts: Vec<(String, Loc, Node)> = match &fv.value {
                                    Value::Map(p) => p
                                        .iter()
                                        .filter(|(pk, _, _)| pk != "incremental" && pk != "counter")
                                        .map(|(pk, pl, pv)| (pk.clone(), *pl, metric_source(pv)))
                                        .collect(),
                                    _ => Vec::new(),
                                };
                                let ratio = Node {
                                    value: Value::Map(parts),
                                    loc: fv.loc,
                                };
                                let inner = map_node(vec![("ratioMetric", ratio)], fv.loc);
                                indicator = Some((fkloc, map_node(vec![("spec", inner)], fv.loc)));
                            }
                        } else {
                            kept.push((fk, fkloc, fv));
                        }
                    }
                    objectives.push(Node {
                        value: Value::Map(kept),
                        loc: o.loc,
                    });
                }
                out.push((
                    k,
                    kloc,
                    Node {
                        value: Value::Seq(objectives),
                        loc: v.loc,
                    },
                ));
            }
            _ => out.push((k, kloc, v)),
        }
    }
    if let Some((kloc, node)) = indicator {
        out.push(("indicator".into(), kloc, node));
    }
    Node {
        value: Value::Map(out),
        loc,
    }
}

/// `[{unit: Day, count: 28, isRolling, calendar}]` as
/// `[{duration: 28d, isRolling, calendar}]`.
fn time_windows(v: Node) -> Node {
    let Value::Seq(items) = v.value else {
        return v;
    };
    let windows = items
        .into_iter()
        .map(|w| {
            let Value::Map(fields) = &w.value else {
                return w;
            };
            let count = match w.get("count").map(|c| &c.value) {
                Some(Value::Int(n)) => n.to_string(),
                Some(Value::Str(s)) => s.clone(),
                _ => "?".into(),
            };
            let unit = match w.get("unit").map(|u| &u.value) {
                Some(Value::Str(u)) => match u.to_ascii_lowercase().as_str() {
                    "minute" => "m".to_string(),
                    "hour" => "h".into(),
                    "day" => "d".into(),
                    "week" => "w".into(),
                    "month" => "M".into(),
                    "quarter" => "Q".into(),
                    "year" => "Y".into(),
                    other => format!(" {other}"),
                },
                _ => " (no unit)".into(),
            };
            let at = w.get("count").map_or(w.loc, |c| c.loc);
            let mut out: Vec<(String, Loc, Node)> = vec![(
                "duration".into(),
                at,
                str_node(&format!("{count}{unit}"), at),
            )];
            out.extend(
                fields
                    .iter()
                    .filter(|(k, _, _)| k != "unit" && k != "count")
                    .cloned(),
            );
            Node {
                value: Value::Map(out),
                loc: w.loc,
            }
        })
        .collect();
    Node {
        value: Value::Seq(windows),
        loc: v.loc,
    }
}
