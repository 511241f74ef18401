//! Decoding a route's release tables: `split` (a fixed share to a second
//! cluster), `rollout` (how a change of `cluster` is moved and judged) and
//! `mirror` (copies to a shadow cluster), and the checks between them and
//! the clusters and SLOs they name.

use crate::decode::{header_name, name_field};
use crate::diag::{closest, Decoder};
use crate::model::*;
use crate::node::{Node, Value};
use std::time::Duration;

/// A weight: a percentage as Argo's `setWeight` writes it (`5`, `0.25`,
/// `"12.5%"`), in steps of 0.01%, as basis points of a percent.
pub(crate) fn weight(d: &mut Decoder<'_>, node: &Node, path: &str) -> Option<u32> {
    let percent = match &node.value {
        Value::Int(i) => Some(*i as f64),
        Value::Float(f) => Some(*f),
        Value::Str(_) => {
            let s = d.string(node, path)?;
            s.trim()
                .strip_suffix('%')
                .and_then(|n| n.trim().parse::<f64>().ok())
        }
        _ => None,
    };
    let Some(percent) = percent else {
        d.error_help(
            node.loc,
            path,
            format!("expected a weight, found {}", node.value.type_name()),
            "write a percentage such as `5` or `\"12.5%\"`",
        );
        return None;
    };
    if !(0.0..=100.0).contains(&percent) {
        d.error(
            node.loc,
            path,
            format!("must be between 0 and 100 (percent), got {percent}"),
        );
        return None;
    }
    let basis_points = (percent * 100.0).round();
    if (basis_points - percent * 100.0).abs() > 1e-6 {
        d.error_help(
            node.loc,
            path,
            format!("{percent}% is finer than the 0.01% steps weights take"),
            format!("write `{:.2}`", basis_points / 100.0),
        );
        return None;
    }
    Some(basis_points as u32)
}

fn stickiness(d: &mut Decoder<'_>, node: &Node, path: &str) -> Option<Stickiness> {
    // `stickiness = "client_address"` or `{ header = "x-user-id" }` or
    // `{ cookie = "levee-version" }`.
    if let Value::Str(_) = node.value {
        return match d.choice(node, path, &["request", "client_address"])? {
            "request" => Some(Stickiness::Request),
            _ => Some(Stickiness::ClientAddress),
        };
    }
    let mut t = d.table(node, path)?;
    let header = d.opt(&mut t, "header", header_name);
    let cookie = d.opt(&mut t, "cookie", cookie_name);
    let loc = t.loc;
    d.finish(t);
    match (header, cookie) {
        (Some(h), None) => Some(Stickiness::Header(h)),
        (None, Some(c)) => Some(Stickiness::Cookie(c)),
        _ => {
            d.error_help(
                loc,
                path,
                "stickiness names one header or one cookie",
                "for example `stickiness = { header = \"x-user-id\" }`, or `\"client_address\"`",
            );
            None
        }
    }
}

fn cookie_name(d: &mut Decoder<'_>, node: &Node, path: &str) -> Option<String> {
    let s = d.string(node, path)?;
    let token = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if !token {
        d.error(node.loc, path, format!("`{s}` is not a valid cookie name"));
        return None;
    }
    Some(s)
}

fn force_rule(d: &mut Decoder<'_>, node: &Node, path: &str) -> Option<ForceRule> {
    let mut t = d.table(node, path)?;
    // A comparison that was given but is invalid has its own error.
    let comparisons = ["exact", "prefix", "regex"]
        .iter()
        .filter(|k| t.has(k))
        .count();
    let header = d.opt(&mut t, "header", header_name);
    let cookie = d.opt(&mut t, "cookie", cookie_name);
    let exact = d.opt(&mut t, "exact", Decoder::string);
    let prefix = d.opt(&mut t, "prefix", Decoder::string);
    let regex = d.opt(&mut t, "regex", Decoder::regex);
    let to = d.opt(&mut t, "to", |d, n, p| {
        d.choice(n, p, &["canary", "stable"])
    });
    let loc = t.loc;
    d.finish(t);
    let source = match (header, cookie) {
        (Some(h), None) => ForceSource::Header(h),
        (None, Some(c)) => ForceSource::Cookie(c),
        _ => {
            d.error_help(
                loc,
                path,
                "a forcing rule reads one header or one cookie",
                "for example `{ header = \"x-canary\", exact = \"always\" }`",
            );
            return None;
        }
    };
    let value = match (exact, prefix, regex) {
        (Some(e), None, None) => ValueMatch::Exact(e),
        (None, Some(p), None) => ValueMatch::Prefix(p),
        (None, None, Some(r)) => ValueMatch::Regex(r),
        _ if comparisons == 1 => return None,
        _ => {
            d.error_help(
                loc,
                path,
                "a forcing rule needs exactly one of exact, prefix, regex",
                "for example `exact = \"always\"`",
            );
            return None;
        }
    };
    let to = match to {
        Some("stable") => Version::Stable,
        _ => Version::Canary,
    };
    Some(ForceRule { source, value, to })
}

/// `stickiness` and `force`, read from the table `t` they sit in.
fn split_policy(d: &mut Decoder<'_>, t: &mut crate::diag::Table<'_>) -> SplitPolicy {
    let stickiness = d.opt(t, "stickiness", stickiness);
    let force = d.opt(t, "force", |d, n, p| d.list(n, p, force_rule));
    SplitPolicy {
        stickiness: stickiness.unwrap_or_default(),
        force: force.unwrap_or_default(),
    }
}

pub(crate) fn decode_split(d: &mut Decoder<'_>, node: &Node, path: &str) -> Option<Split> {
    let mut t = d.table(node, path)?;
    let cluster = d.req(&mut t, "cluster", Decoder::string);
    let weight = d.req(&mut t, "weight", weight);
    let policy = split_policy(d, &mut t);
    d.finish(t);
    Some(Split {
        cluster: cluster?,
        weight: weight?,
        policy,
    })
}

pub(crate) fn decode_mirror(d: &mut Decoder<'_>, node: &Node, path: &str) -> Option<Mirror> {
    let mut t = d.table(node, path)?;
    let cluster = d.req(&mut t, "cluster", Decoder::string);
    let share = d.opt(&mut t, "weight", weight);
    let max_body_bytes = d.opt(&mut t, "max_body_bytes", Decoder::size);
    let max_in_flight = d.opt(&mut t, "max_in_flight", |d, n, p| {
        d.int_in(n, p, 1, 100_000)
    });
    let timeout = d.opt(&mut t, "timeout", Decoder::duration);
    let compare_body_bytes = d.opt(&mut t, "compare_body_bytes", Decoder::size);
    d.finish(t);
    Some(Mirror {
        cluster: cluster?,
        weight: share.unwrap_or(WEIGHT_SCALE),
        max_body_bytes: max_body_bytes.unwrap_or(64 * 1024),
        max_in_flight: max_in_flight.map_or(64, |v| v as u32),
        timeout: timeout.unwrap_or(Duration::from_secs(5)),
        compare_body_bytes: compare_body_bytes.unwrap_or(1024 * 1024),
    })
}

fn canary_step(d: &mut Decoder<'_>, node: &Node, path: &str) -> Option<CanaryStep> {
    let mut t = d.table(node, path)?;
    let w = d.req(&mut t, "weight", weight);
    let pause = d.opt(&mut t, "pause", Decoder::duration);
    let manual = d.opt(&mut t, "manual", Decoder::bool);
    d.finish(t);
    Some(CanaryStep {
        weight: w?,
        pause: pause.unwrap_or(Duration::from_secs(30)),
        manual: manual.unwrap_or(false),
    })
}

fn strategy(d: &mut Decoder<'_>, t: &mut crate::diag::Table<'_>, path: &str) -> Option<Strategy> {
    let kind = d.opt(t, "strategy", |d, n, p| {
        d.choice(n, p, &["canary", "blue_green", "ab"])
    });
    let steps = d.opt(t, "steps", |d, n, p| d.list(n, p, canary_step));
    let step_weight = d.opt(t, "step_weight", weight);
    let max_weight = d.opt(t, "max_weight", weight);
    let interval = d.opt(t, "step_interval", Decoder::duration);
    let preview = d.opt(t, "preview", Decoder::duration);
    let keep_old = d.opt(t, "keep_old", Decoder::duration);
    let duration = d.opt(t, "duration", Decoder::duration);
    let requests = d.opt(t, "requests", |d, n, p| d.int_in(n, p, 1, i64::MAX));
    let loc = t.loc;
    let misplaced = |d: &mut Decoder<'_>, key: &str, kind: &str| {
        let p = format!("{path}.{key}");
        d.error(
            loc,
            &p,
            format!("`{key}` does not apply to a {kind} rollout"),
        );
    };
    match kind.unwrap_or("canary") {
        "canary" => {
            for (key, set) in [
                ("preview", preview.is_some()),
                ("keep_old", keep_old.is_some()),
                ("duration", duration.is_some()),
                ("requests", requests.is_some()),
            ] {
                if set {
                    misplaced(d, key, "canary");
                }
            }
            for (key, set) in [
                ("max_weight", max_weight.is_some()),
                ("step_interval", interval.is_some()),
            ] {
                if set && step_weight.is_none() {
                    d.error_help(
                        loc,
                        &format!("{path}.{key}"),
                        format!("`{key}` does not apply without `step_weight`"),
                        "`step_weight`, `max_weight` and `step_interval` go together; `steps` say the same with a list",
                    );
                }
            }
            let steps = match (steps, step_weight) {
                (Some(_), Some(_)) => {
                    d.error_help(
                        loc,
                        path,
                        "write either `steps` or `step_weight`, not both",
                        "`step_weight = 10, max_weight = 50` is Flagger's shorthand for steps",
                    );
                    return None;
                }
                (Some(steps), None) => steps,
                (None, Some(step)) => {
                    let max = max_weight.unwrap_or(WEIGHT_SCALE / 2);
                    if step == 0 || step > max {
                        let p = format!("{path}.step_weight");
                        d.error(loc, &p, "must be above 0 and at most max_weight");
                        return None;
                    }
                    let pause = interval.unwrap_or(Duration::from_secs(30));
                    (1..)
                        .map(|i| step * i)
                        .take_while(|w| *w <= max)
                        .map(|weight| CanaryStep {
                            weight,
                            pause,
                            manual: false,
                        })
                        .collect()
                }
                (None, None) => vec![
                    CanaryStep {
                        weight: 500,
                        pause: Duration::from_secs(30),
                        manual: false,
                    },
                    CanaryStep {
                        weight: 2_500,
                        pause: Duration::from_secs(30),
                        manual: false,
                    },
                    CanaryStep {
                        weight: 5_000,
                        pause: Duration::from_secs(30),
                        manual: false,
                    },
                ],
            };
            if steps.is_empty() {
                d.error(
                    loc,
                    &format!("{path}.steps"),
                    "a canary needs at least one step",
                );
                return None;
            }
            if steps.windows(2).any(|w| w[1].weight < w[0].weight) {
                d.error_help(
                    loc,
                    &format!("{path}.steps"),
                    "step weights must not go down",
                    "a rollout moves traffic one way; `levee rollout abort` moves it back",
                );
                return None;
            }
            Some(Strategy::Canary { steps })
        }
        "blue_green" => {
            for (key, set) in [
                ("steps", steps.is_some()),
                ("step_weight", step_weight.is_some()),
                ("max_weight", max_weight.is_some()),
                ("step_interval", interval.is_some()),
                ("duration", duration.is_some()),
                ("requests", requests.is_some()),
            ] {
                if set {
                    misplaced(d, key, "blue_green");
                }
            }
            Some(Strategy::BlueGreen {
                preview: preview.unwrap_or(Duration::from_secs(60)),
                keep_old: keep_old.unwrap_or(Duration::from_secs(300)),
            })
        }
        _ => {
            for (key, set) in [
                ("steps", steps.is_some()),
                ("step_weight", step_weight.is_some()),
                ("max_weight", max_weight.is_some()),
                ("step_interval", interval.is_some()),
                ("preview", preview.is_some()),
                ("keep_old", keep_old.is_some()),
            ] {
                if set {
                    misplaced(d, key, "ab");
                }
            }
            if duration.is_none() && requests.is_none() {
                d.error_help(
                    loc,
                    path,
                    "an A/B rollout needs `duration` or `requests`",
                    "for example `duration = \"10m\"`",
                );
                return None;
            }
            Some(Strategy::Ab {
                duration,
                requests: requests.map(|r| r as u64),
            })
        }
    }
}

fn analysis(d: &mut Decoder<'_>, node: &Node, path: &str) -> Option<Analysis> {
    let mut t = d.table(node, path)?;
    let def = Analysis::default();
    let interval = d.opt(&mut t, "interval", Decoder::duration);
    let confidence = d.opt(&mut t, "confidence", Decoder::percent);
    let min_samples = d.opt(&mut t, "min_samples", |d, n, p| {
        d.int_in(n, p, 1, 10_000_000)
    });
    let max_error_rate = d.opt(&mut t, "max_error_rate", Decoder::percent);
    let max_error_increase = d.opt(&mut t, "max_error_increase", Decoder::percent);
    let latency_tolerance = d.opt(&mut t, "latency_tolerance", Decoder::percent);
    let latency = d.opt(&mut t, "latency", |d, n, p| d.list(n, p, latency_limit));
    let max_mirror_mismatch = d.opt(&mut t, "max_mirror_mismatch", Decoder::percent);
    let on_failure = d.opt(&mut t, "on_failure", |d, n, p| {
        d.choice(n, p, &["rollback", "pause"])
    });
    let loc = t.loc;
    d.finish(t);
    if let Some(c) = confidence {
        if !(0.5..1.0).contains(&c) {
            d.error(
                loc,
                &format!("{path}.confidence"),
                "must be at least 50% and below 100%",
            );
        }
    }
    Some(Analysis {
        interval: interval.unwrap_or(def.interval),
        confidence: confidence.unwrap_or(def.confidence),
        min_samples: min_samples.map_or(def.min_samples, |v| v as u64),
        // An explicit 100% switches a check off.
        max_error_rate: max_error_rate.map_or(def.max_error_rate, off_at_full),
        max_error_increase: max_error_increase.map_or(def.max_error_increase, off_at_full),
        latency_tolerance: latency_tolerance.map_or(def.latency_tolerance, off_at_full),
        latency: latency.unwrap_or_default(),
        max_mirror_mismatch,
        on_failure: match on_failure {
            Some("pause") => OnFailure::Pause,
            _ => OnFailure::Rollback,
        },
    })
}

fn off_at_full(share: f64) -> Option<f64> {
    (share < 1.0).then_some(share)
}

fn latency_limit(d: &mut Decoder<'_>, node: &Node, path: &str) -> Option<LatencyLimit> {
    let mut t = d.table(node, path)?;
    let quantile = d.req(&mut t, "percentile", |d, n, p| {
        let v = d.number(n, p)?;
        if v > 0.0 && v < 100.0 {
            Some(v / 100.0)
        } else {
            d.error(n.loc, p, "a percentile between 0 and 100, such as `99`");
            None
        }
    });
    let max = d.opt(&mut t, "max", Decoder::duration);
    let max_ratio = d.opt(&mut t, "max_ratio", |d, n, p| {
        let v = d.number(n, p)?;
        if v >= 1.0 {
            Some(v)
        } else {
            d.error(n.loc, p, "a ratio of at least 1, such as `1.5`");
            None
        }
    });
    let loc = t.loc;
    d.finish(t);
    if max.is_none() && max_ratio.is_none() {
        d.error_help(
            loc,
            path,
            "a latency limit needs `max` or `max_ratio`",
            "for example `{ percentile = 99, max = \"500ms\", max_ratio = 1.5 }`",
        );
        return None;
    }
    Some(LatencyLimit {
        quantile: quantile?,
        max,
        max_ratio,
    })
}

fn gates(d: &mut Decoder<'_>, node: &Node, path: &str) -> Option<Gates> {
    let mut t = d.table(node, path)?;
    let def = Gates::default();
    let slos = d.opt(&mut t, "slos", |d, n, p| d.list(n, p, name_field));
    let min_budget_left = d.opt(&mut t, "min_budget_left", Decoder::percent);
    let block_on_page = d.opt(&mut t, "block_on_page", Decoder::bool);
    let max_budget_spend = d.opt(&mut t, "max_budget_spend", Decoder::percent);
    d.finish(t);
    Some(Gates {
        slos: slos.unwrap_or_default(),
        min_budget_left: min_budget_left.unwrap_or(def.min_budget_left),
        block_on_page: block_on_page.unwrap_or(def.block_on_page),
        max_budget_spend: max_budget_spend.unwrap_or(def.max_budget_spend),
    })
}

fn hook(d: &mut Decoder<'_>, node: &Node, path: &str) -> Option<RolloutHook> {
    let mut t = d.table(node, path)?;
    let phase = d.req(&mut t, "phase", |d, n, p| {
        let name = d.choice(
            n,
            p,
            &[
                "confirm-rollout",
                "pre-rollout",
                "rollout",
                "confirm-promotion",
                "post-rollout",
                "rollback",
                "event",
            ],
        )?;
        Some(match name {
            "confirm-rollout" => HookPhase::ConfirmRollout,
            "pre-rollout" => HookPhase::PreRollout,
            "rollout" => HookPhase::Rollout,
            "confirm-promotion" => HookPhase::ConfirmPromotion,
            "post-rollout" => HookPhase::PostRollout,
            "rollback" => HookPhase::Rollback,
            _ => HookPhase::Event,
        })
    });
    let url = d.req(&mut t, "url", |d, n, p| {
        let s = d.string(n, p)?;
        if s.starts_with("http://") && s.parse::<http::Uri>().is_ok() {
            Some(s)
        } else {
            d.error_help(
                n.loc,
                p,
                "not a plain http:// URL",
                "webhooks speak plain http:// to a local relay",
            );
            None
        }
    });
    let timeout = d.opt(&mut t, "timeout", Decoder::duration);
    let on_failure = d.opt(&mut t, "on_failure", |d, n, p| {
        d.choice(n, p, &["hold", "fail"])
    });
    d.finish(t);
    let phase = phase?;
    Some(RolloutHook {
        phase,
        url: url?,
        timeout: timeout.unwrap_or(Duration::from_secs(5)),
        on_failure: match on_failure {
            Some("fail") => HookFailure::Fail,
            Some(_) => HookFailure::Hold,
            // Flagger: a failing pre-rollout check fails; gates hold.
            None if phase == HookPhase::PreRollout || phase == HookPhase::Rollout => {
                HookFailure::Fail
            }
            None => HookFailure::Hold,
        },
    })
}

pub(crate) fn decode_rollout(d: &mut Decoder<'_>, node: &Node, path: &str) -> Option<Rollout> {
    let mut t = d.table(node, path)?;
    let strategy = strategy(d, &mut t, path);
    let policy = split_policy(d, &mut t);
    let analysis = d.opt(&mut t, "analysis", analysis);
    let gates = d.opt(&mut t, "gates", gates);
    let webhooks = d.opt(&mut t, "webhooks", |d, n, p| d.list(n, p, hook));
    let loc = t.loc;
    d.finish(t);
    let strategy = strategy?;
    let needs_group = matches!(strategy, Strategy::BlueGreen { .. } | Strategy::Ab { .. });
    if needs_group && !policy.force.iter().any(|f| f.to == Version::Canary) {
        d.error_help(
            loc,
            &format!("{path}.force"),
            "blue/green previews and A/B groups are chosen by a forcing rule",
            "for example `force = [{ header = \"x-preview\", exact = \"1\" }]`",
        );
    }
    Some(Rollout {
        strategy,
        policy,
        analysis: analysis.unwrap_or_default(),
        gates: gates.unwrap_or_default(),
        webhooks: webhooks.unwrap_or_default(),
    })
}

/// Cross-checks of a route's release tables against the clusters and SLOs.
pub(crate) fn check_route(
    d: &mut Decoder<'_>,
    root: &Node,
    i: usize,
    route: &Route,
    cluster_names: &[&str],
    slo_names: &[&str],
) {
    let cluster_ref = |d: &mut Decoder<'_>, field: &str, name: &str| {
        let path = format!("routes[{i}].{field}");
        let loc = root.loc_of(&[&path]);
        if !cluster_names.contains(&name) {
            let msg = format!("unknown cluster `{name}`");
            match closest(name, cluster_names) {
                Some(s) => d.error_help(loc, &path, msg, format!("did you mean `{s}`?")),
                None => d.error(loc, &path, msg),
            }
        } else if name == route.cluster {
            d.error(loc, &path, "this is the route's own cluster");
        }
    };
    if let Some(split) = &route.split {
        cluster_ref(d, "split.cluster", &split.cluster);
    }
    if let Some(mirror) = &route.mirror {
        cluster_ref(d, "mirror.cluster", &mirror.cluster);
    }
    if route.split.is_some() && route.rollout.is_some() {
        let path = format!("routes[{i}].split");
        d.error_help(
            root.loc_of(&[&path]),
            &path,
            "a route with a rollout policy cannot also have a fixed split",
            "the rollout sets the weights; put `stickiness` and `force` in [routes.rollout]",
        );
    }
    if let Some(rollout) = &route.rollout {
        if rollout.analysis.max_mirror_mismatch.is_some() && route.mirror.is_none() {
            let path = format!("routes[{i}].rollout.analysis.max_mirror_mismatch");
            d.error_help(
                root.loc_of(&[&path]),
                &path,
                "the route has no mirror to compare answers with",
                "add `[routes.mirror]` with the shadow cluster, or remove this limit",
            );
        }
        for (j, slo) in rollout.gates.slos.iter().enumerate() {
            if !slo_names.contains(&slo.as_str()) {
                let path = format!("routes[{i}].rollout.gates.slos[{j}]");
                let msg = format!("unknown SLO `{slo}`");
                match closest(slo, slo_names) {
                    Some(s) => d.error_help(
                        root.loc_of(&[&path]),
                        &path,
                        msg,
                        format!("did you mean `{s}`?"),
                    ),
                    None => d.error(root.loc_of(&[&path]), &path, msg),
                }
            }
        }
    }
}
