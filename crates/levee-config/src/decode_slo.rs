//! Decoding the SLO sections: `[[slos]]`, `[alerting]` (evaluation and
//! webhooks), `[store]`, `[status_page]` and `[capacity]`, and the checks
//! between them and the routes and clusters they name.

use crate::decode::{duration_or_zero, header_name, header_value, name_field, number_in};
use crate::diag::{closest, Decoder};
use crate::model::*;
use crate::node::{Node, Value};
use std::collections::HashSet;
use std::time::Duration;

/// The longest SLO period: a year (and a day), so history stays bounded.
/// Why a latency SLO cannot take `rate_limited_is_bad`, in a config or an
/// imported OpenSLO file.
pub(crate) const RATE_LIMITED_IS_AVAILABILITY_ONLY: &str =
    "only availability SLOs count 429s; a latency SLO counts every answer";

/// The shortest and longest rolling period an SLO may have.
pub(crate) const PERIODS: std::ops::RangeInclusive<Duration> =
    Duration::from_secs(3600)..=Duration::from_secs(366 * 86_400);

pub(crate) fn decode_slo(d: &mut Decoder<'_>, node: &Node, path: &str) -> Option<Slo> {
    let mut t = d.table(node, path)?;
    let name = d.req(&mut t, "name", name_field);
    let description = d.opt(&mut t, "description", Decoder::string);
    let display_name = d.opt(&mut t, "display_name", decode_display_name);
    let route = d.opt(&mut t, "route", Decoder::string);
    let tier = d.opt(&mut t, "tier", |d, n, p| {
        d.choice(n, p, &["core", "optional"])
    });
    let tenant = d.opt(&mut t, "tenant", name_field);
    let cluster = d.opt(&mut t, "cluster", Decoder::string);
    let sli = d.req(&mut t, "sli", |d, n, p| {
        d.choice(n, p, &["availability", "latency", "job_completion"])
    });
    let objective = d.opt(&mut t, "objective", objective_ppm);
    let threshold = d.opt(&mut t, "threshold", Decoder::duration);
    let objectives = d.opt(&mut t, "objectives", |d, n, p| {
        d.list(n, p, |d, n, p| {
            let mut o = d.table(n, p)?;
            let threshold = d.req(&mut o, "threshold", Decoder::duration);
            let objective = d.req(&mut o, "objective", objective_ppm);
            d.finish(o);
            Some((threshold?, objective?))
        })
    });
    let period = d.opt(&mut t, "period", decode_period);
    let rate_limited_is_bad = d.opt(&mut t, "rate_limited_is_bad", Decoder::bool);
    let budgeting = d.opt(&mut t, "budgeting", |d, n, p| {
        d.choice(n, p, &["occurrences", "timeslices", "ratio_timeslices"])
    });
    let timeslice = d.opt(&mut t, "timeslice", Decoder::duration);
    let timeslice_target = d.opt(&mut t, "timeslice_target", slice_target_ppm);
    let wrote_timeslice = t.has("timeslice");
    let wrote_timeslice_target = t.has("timeslice_target");
    let runbook = d.opt(&mut t, "runbook", |d, n, p| {
        let s = d.string(n, p)?;
        if s.starts_with("https://") || s.starts_with("http://") {
            Some(s)
        } else {
            d.error_help(
                n.loc,
                p,
                "not an http(s) URL",
                "for example `https://wiki.example.com/runbooks/checkout`",
            );
            None
        }
    });
    let labels = d.opt(&mut t, "labels", decode_labels);
    let alerting = d.opt(&mut t, "alerting", decode_slo_alerting);
    let wrote_objective = t.has("objective");
    let loc = t.loc;
    let at = |key: &str| node.loc_of(&[key]);
    d.finish(t);
    let name = name?;
    let period = period.unwrap_or(SloPeriod::Rolling(Duration::from_secs(30 * 86_400)));
    let sli = match sli? {
        kind @ ("latency" | "job_completion") => {
            if rate_limited_is_bad.is_some() {
                d.error(
                    at("rate_limited_is_bad"),
                    &format!("{path}.rate_limited_is_bad"),
                    RATE_LIMITED_IS_AVAILABILITY_ONLY,
                );
            }
            if kind == "latency" {
                Sli::Latency
            } else {
                Sli::JobCompletion
            }
        }
        _ => Sli::Availability {
            rate_limited_is_bad: rate_limited_is_bad.unwrap_or(false),
        },
    };
    let objectives = match (sli, objective, threshold, objectives) {
        (Sli::Availability { .. }, Some(ppm), None, None) => vec![SloObjective {
            id: name.clone(),
            objective_ppm: ppm,
            threshold: None,
        }],
        (Sli::Availability { .. }, _, threshold, objectives) => {
            if wrote_objective && objective.is_none() {
                // Already reported where it was written.
            } else if threshold.is_some() || objectives.is_some() {
                d.error_help(
                    node.loc_of(&["threshold", "objectives"]),
                    path,
                    "an availability SLO has no latency threshold",
                    "remove `threshold`/`objectives`, or set `sli = \"latency\"`",
                );
            } else {
                d.error_help(
                    loc,
                    &format!("{path}.objective"),
                    "missing required field `objective`",
                    "for example `objective = \"99.9%\"`",
                );
            }
            return None;
        }
        (Sli::Latency | Sli::JobCompletion, Some(ppm), Some(threshold), None) => {
            vec![SloObjective {
                id: name.clone(),
                objective_ppm: ppm,
                threshold: Some(threshold),
            }]
        }
        (Sli::Latency | Sli::JobCompletion, None, None, Some(list)) if !list.is_empty() => {
            let mut seen = HashSet::new();
            let mut out = Vec::new();
            for (i, (threshold, ppm)) in list.into_iter().enumerate() {
                if !seen.insert(threshold) {
                    let field = format!("objectives[{i}].threshold");
                    d.error(
                        at(&field),
                        &format!("{path}.{field}"),
                        format!("threshold {} is listed twice", format_duration(threshold)),
                    );
                }
                out.push(SloObjective {
                    id: format!("{name}:{}", format_duration(threshold)),
                    objective_ppm: ppm,
                    threshold: Some(threshold),
                });
            }
            out
        }
        _ if wrote_objective && objective.is_none() => return None,
        _ => {
            d.error_help(
                loc,
                path,
                format!(
                    "a {} SLO needs `threshold` and `objective`, or a non-empty `objectives` list (not both)",
                    if sli == Sli::JobCompletion { "job_completion" } else { "latency" }
                ),
                "`threshold = \"300ms\"` with `objective = \"99%\"`, or `objectives = [{ threshold = \"100ms\", objective = \"90%\" }, { threshold = \"1s\", objective = \"99%\" }]`",
            );
            return None;
        }
    };
    let budgeting = decode_budgeting(
        d,
        path,
        loc,
        &at,
        budgeting,
        (timeslice, wrote_timeslice),
        (timeslice_target, wrote_timeslice_target),
    )?;
    let mut alerting = alerting.unwrap_or(SloAlerting {
        rules: None,
        min_events: u64::MAX,
        pending_for: Duration::ZERO,
    });
    if let Some(rules) = &alerting.rules {
        for (rule, field) in rules.iter().zip(rule_fields(rules)) {
            if rule.long > period.max_len() {
                let field = format!("{field}.long");
                d.error(
                    at(&field),
                    &format!("{path}.{field}"),
                    format!(
                        "the window {} is longer than the SLO period",
                        format_duration(rule.long)
                    ),
                );
            }
        }
    }
    // `u64::MAX` marks "not set": the `[alerting]` default fills it in.
    if alerting.min_events == u64::MAX {
        alerting.min_events = MIN_EVENTS_UNSET;
    }
    Some(Slo {
        name,
        description,
        display_name,
        scope: SloScope {
            route,
            tier: tier.map(|t| {
                if t == "optional" {
                    Tier::Optional
                } else {
                    Tier::Core
                }
            }),
            tenant,
            cluster,
        },
        sli,
        objectives,
        period,
        budgeting,
        alerting,
        runbook,
        labels: labels.unwrap_or_default(),
    })
}

/// The budgeting method from its three fields: `timeslice` is required
/// with either time-slice method, `timeslice_target` with `timeslices`
/// alone. How the slice fits the bucket layout and the alert windows is
/// checked in [`check_slos`], once `[alerting]` is known.
fn decode_budgeting(
    d: &mut Decoder<'_>,
    path: &str,
    loc: crate::node::Loc,
    at: &dyn Fn(&str) -> crate::node::Loc,
    method: Option<&str>,
    (slice, wrote_slice): (Option<Duration>, bool),
    (target, wrote_target): (Option<u32>, bool),
) -> Option<Budgeting> {
    let method = method.unwrap_or("occurrences");
    let time_sliced = method != "occurrences";
    if !time_sliced && wrote_slice {
        d.error_help(
            at("timeslice"),
            &format!("{path}.timeslice"),
            "`timeslice` needs a time-slice budgeting method",
            "add `budgeting = \"timeslices\"` (or `\"ratio_timeslices\"`), or remove `timeslice`",
        );
    }
    if method != "timeslices" && wrote_target {
        d.error_help(
            at("timeslice_target"),
            &format!("{path}.timeslice_target"),
            format!("`timeslice_target` only applies to `budgeting = \"timeslices\"`, not `{method}`"),
            if method == "ratio_timeslices" {
                "a ratio_timeslices SLO averages the slices' ratios and judges no slice: remove `timeslice_target`"
            } else {
                "add `budgeting = \"timeslices\"`, or remove `timeslice_target`"
            },
        );
    }
    if !time_sliced {
        return (!wrote_slice && !wrote_target).then_some(Budgeting::Occurrences);
    }
    if slice.is_none() {
        if !wrote_slice {
            d.error_help(
                loc,
                &format!("{path}.timeslice"),
                format!("missing required field `timeslice` (the slice width of `budgeting = \"{method}\"`)"),
                "for example `timeslice = \"1m\"`",
            );
        }
        return None;
    }
    let slice = slice?;
    if method == "ratio_timeslices" {
        return (!wrote_target).then_some(Budgeting::RatioTimeslices { slice });
    }
    match target {
        Some(target_ppm) => Some(Budgeting::Timeslices { slice, target_ppm }),
        None => {
            if !wrote_target {
                d.error_help(
                    loc,
                    &format!("{path}.timeslice_target"),
                    "missing required field `timeslice_target` (the share of good events a slice needs to be good)",
                    "for example `timeslice_target = \"95%\"`",
                );
            }
            None
        }
    }
}

/// A slice's target such as `"95%"`: above 0 %, up to 100 % (a slice may
/// require every event to be good), to a millionth.
fn slice_target_ppm(d: &mut Decoder<'_>, n: &Node, p: &str) -> Option<u32> {
    let share = d.percent(n, p)?;
    let ppm = (share * 1e6).round() as u32;
    if ppm == 0 || ppm > 1_000_000 {
        d.error_help(
            n.loc,
            p,
            "a slice target must be above 0% and at most 100%",
            "for example `timeslice_target = \"95%\"`: a slice is good when 95% of its events are",
        );
        return None;
    }
    Some(ppm)
}

/// The shortest alert window of the SRE Workbook's default rules (the
/// first page rule's short window), whatever the period.
const DEFAULT_SHORTEST_WINDOW: Duration = Duration::from_secs(300);

/// A time-slice SLO's slice must be whole buckets, tile the hour (so
/// slices never straddle the hourly coarse buckets that hold the period),
/// and fit in the shortest alert window (a window must hold a whole slice
/// to judge anything).
fn check_timeslice(
    d: &mut Decoder<'_>,
    root: &Node,
    slo: &Slo,
    raw_slo_names: &[String],
    bucket: Duration,
) {
    let Some(slice) = slo.budgeting.slice() else {
        return;
    };
    let i = raw_slo_names
        .iter()
        .position(|n| *n == slo.name)
        .unwrap_or(0);
    let path = format!("slos[{i}].timeslice");
    let loc = root.loc_of(&[&path]);
    let (slice_ns, bucket_ns) = (slice.as_nanos(), bucket.as_nanos().max(1));
    if slice_ns == 0 || !slice_ns.is_multiple_of(bucket_ns) {
        d.error_help(
            loc,
            &path,
            format!(
                "a slice must be a whole number of buckets ({}), got {}",
                format_duration(bucket),
                format_duration(slice)
            ),
            format!(
                "use a multiple of `[alerting] bucket`, such as `{}`",
                format_duration(bucket.max(Duration::from_secs(60)))
            ),
        );
        return;
    }
    if !(3_600_000_000_000u128).is_multiple_of(slice_ns) {
        d.error_help(
            loc,
            &path,
            format!(
                "a slice must divide an hour evenly, got {}",
                format_duration(slice)
            ),
            "`1m` and `5m` are usual; `10s`, `30s` and `2m` also work",
        );
        return;
    }
    let (shortest, field) = match slo.alerting.rules.as_deref() {
        Some(rules) => match rules
            .iter()
            .zip(rule_fields(rules))
            .min_by_key(|(r, _)| r.short)
        {
            Some((r, field)) => (r.short, format!("`{field}.short`")),
            None => return,
        },
        None => (
            DEFAULT_SHORTEST_WINDOW,
            "the default rules' first page window".to_string(),
        ),
    };
    if slice > shortest {
        d.error_help(
            loc,
            &path,
            format!(
                "the slice {} is longer than the shortest alert window ({}, {field})",
                format_duration(slice),
                format_duration(shortest)
            ),
            "a window must hold whole slices: shorten the slice, or lengthen the window",
        );
    }
}

/// Each rule's field path below its SLO (`alerting.ticket[0]`): the rules
/// are one list, page rules first, each severity numbered from 0.
fn rule_fields(rules: &[BurnRule]) -> Vec<String> {
    let mut seen = Vec::new();
    rules
        .iter()
        .map(|r| {
            let i = seen.iter().filter(|s| **s == r.severity).count();
            seen.push(r.severity);
            format!("alerting.{}[{i}]", r.severity.name())
        })
        .collect()
}

/// The longest `display_name`, in characters: it heads a column of the
/// status page.
const MAX_DISPLAY_NAME: usize = 80;

/// A name shown to customers: not blank, at most [`MAX_DISPLAY_NAME`]
/// characters, on one line. Surrounding spaces are trimmed.
fn decode_display_name(d: &mut Decoder<'_>, n: &Node, p: &str) -> Option<String> {
    let s = d.string(n, p)?;
    let name = s.trim();
    if name.is_empty() {
        d.error_help(
            n.loc,
            p,
            "a display name must not be empty",
            "remove `display_name` to name incidents by the SLO's route, or write a name such as `Checkout`",
        );
        return None;
    }
    let chars = name.chars().count();
    if chars > MAX_DISPLAY_NAME {
        d.error_help(
            n.loc,
            p,
            format!("a display name must be at most {MAX_DISPLAY_NAME} characters, got {chars}"),
            "put the details in `description`",
        );
        return None;
    }
    if name.chars().any(char::is_control) {
        d.error(n.loc, p, "a display name must be one line of text");
        return None;
    }
    Some(name.to_string())
}

/// Placeholder for an SLO's `min_events` left unset, replaced by
/// `[alerting] min_events` once both are decoded.
pub(crate) const MIN_EVENTS_UNSET: u64 = u64::MAX;

/// An objective such as `"99.9%"`: above 0 % and below 100 %, to a
/// millionth.
fn objective_ppm(d: &mut Decoder<'_>, n: &Node, p: &str) -> Option<u32> {
    let share = d.percent(n, p)?;
    let ppm = (share * 1e6).round() as u32;
    if ppm == 0 || ppm >= 1_000_000 {
        d.error_help(
            n.loc,
            p,
            "an objective must be above 0% and below 100%",
            "100% leaves no error budget; `99.9%` allows 43 min of errors in 30 days",
        );
        return None;
    }
    Some(ppm)
}

fn decode_period(d: &mut Decoder<'_>, n: &Node, p: &str) -> Option<SloPeriod> {
    if let Value::Str(s) = &n.value {
        if s == "calendar_month" || s == "month" {
            return Some(SloPeriod::CalendarMonth);
        }
    }
    let len = d.duration(n, p)?;
    if !PERIODS.contains(&len) {
        d.error_help(
            n.loc,
            p,
            format!(
                "a period must be from 1h to 366d, got {}",
                format_duration(len)
            ),
            "`30d` and `28d` are usual; `calendar_month` follows the calendar",
        );
        return None;
    }
    Some(SloPeriod::Rolling(len))
}

/// A Prometheus label name that is not reserved for Prometheus itself:
/// letters, digits and `_`, not starting with a digit or `__`.
pub(crate) fn is_label_name(k: &str) -> bool {
    k.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !k.starts_with("__")
}

/// The entries of a `label = value` table whose keys are label names,
/// each with its field path; a bad key is reported and left out.
fn label_entries<'n>(
    d: &mut Decoder<'_>,
    n: &'n Node,
    p: &str,
) -> Option<Vec<(&'n String, &'n crate::node::Loc, &'n Node, String)>> {
    let Value::Map(entries) = &n.value else {
        d.error(
            n.loc,
            p,
            format!(
                "expected a table of label = value, found {}",
                n.value.type_name()
            ),
        );
        return None;
    };
    let mut out = Vec::new();
    for (k, kloc, v) in entries {
        let kp = format!("{p}.{k}");
        if !is_label_name(k) {
            d.error_help(
                *kloc,
                &kp,
                format!("`{k}` is not a valid label name"),
                "use letters, digits and `_`, not starting with a digit or `__`",
            );
            continue;
        }
        out.push((k, kloc, v, kp));
    }
    Some(out)
}

pub(crate) fn decode_labels(
    d: &mut Decoder<'_>,
    n: &Node,
    p: &str,
) -> Option<Vec<(String, String)>> {
    let mut out = Vec::new();
    for (k, kloc, v, kp) in label_entries(d, n, p)? {
        if RESERVED_SLO_LABELS.contains(&k.as_str()) {
            d.error(*kloc, &kp, format!("`{k}` is set by Levee itself"));
            continue;
        }
        if let Some(value) = d.string(v, &kp) {
            out.push((k.clone(), value));
        }
    }
    Some(out)
}

fn decode_slo_alerting(d: &mut Decoder<'_>, n: &Node, p: &str) -> Option<SloAlerting> {
    let mut t = d.table(n, p)?;
    let min_events = d.opt(&mut t, "min_events", |d, n, p| {
        d.int_in(n, p, 0, 1_000_000_000).map(|v| v as u64)
    });
    let pending_for = d.opt(&mut t, "pending_for", duration_or_zero);
    let page = d.opt(&mut t, "page", |d, n, p| {
        d.list(n, p, |d, n, p| {
            decode_burn_rule(d, n, p, AlertSeverity::Page)
        })
    });
    let ticket = d.opt(&mut t, "ticket", |d, n, p| {
        d.list(n, p, |d, n, p| {
            decode_burn_rule(d, n, p, AlertSeverity::Ticket)
        })
    });
    d.finish(t);
    // Either list may be given alone: the other keeps no rules then, so
    // `page = []` silences paging and `ticket = [...]` alone only tickets.
    let rules = match (page, ticket) {
        (None, None) => None,
        (page, ticket) => Some(
            page.unwrap_or_default()
                .into_iter()
                .chain(ticket.unwrap_or_default())
                .collect(),
        ),
    };
    Some(SloAlerting {
        rules,
        min_events: min_events.unwrap_or(MIN_EVENTS_UNSET),
        pending_for: pending_for.unwrap_or(Duration::ZERO),
    })
}

fn decode_burn_rule(
    d: &mut Decoder<'_>,
    n: &Node,
    p: &str,
    severity: AlertSeverity,
) -> Option<BurnRule> {
    let mut t = d.table(n, p)?;
    let long = d.req(&mut t, "long", Decoder::duration);
    let short = d.req(&mut t, "short", Decoder::duration);
    let factor = d.req(&mut t, "factor", |d, n, p| {
        number_in(d, n, p, 0.001, 1_000_000.0)
    });
    d.finish(t);
    let (long, short, factor) = (long?, short?, factor?);
    if short >= long {
        d.error_help(
            n.loc_of(&["short"]),
            &format!("{p}.short"),
            "the short window must be shorter than the long one",
            "the workbook uses a twelfth: `long = \"1h\"` with `short = \"5m\"`",
        );
        return None;
    }
    Some(BurnRule {
        severity,
        long,
        short,
        factor_milli: (factor * 1000.0).round() as u32,
    })
}

pub(crate) fn decode_alerting(d: &mut Decoder<'_>, node: &Node, path: &str) -> Option<Alerting> {
    let mut t = d.table(node, path)?;
    let def = Alerting::default();
    let evaluate_every = d.opt(&mut t, "evaluate_every", Decoder::duration);
    let bucket = d.opt(&mut t, "bucket", |d, n, p| {
        let b = d.duration(n, p)?;
        let ms = b.as_millis() as u64;
        let valid = b.subsec_nanos() % 1_000_000 == 0
            && (1_000..=3_600_000).contains(&ms)
            && 3_600_000 % ms == 0;
        if !valid {
            d.error_help(
                n.loc,
                p,
                format!(
                    "a bucket must divide an hour evenly, from 1s to 1h, got {}",
                    format_duration(b)
                ),
                "`10s` is the default; `1s`, `5s`, `30s` and `1m` also work",
            );
            return None;
        }
        Some(b)
    });
    let min_events = d.opt(&mut t, "min_events", |d, n, p| {
        d.int_in(n, p, 0, 1_000_000_000).map(|v| v as u64)
    });
    let webhooks = d.opt(&mut t, "webhooks", |d, n, p| d.list(n, p, decode_webhook));
    d.finish(t);
    Some(Alerting {
        evaluate_every: evaluate_every.unwrap_or(def.evaluate_every),
        bucket: bucket.unwrap_or(def.bucket),
        min_events: min_events.unwrap_or(def.min_events),
        webhooks: webhooks.unwrap_or_default(),
    })
}

fn decode_webhook(d: &mut Decoder<'_>, node: &Node, path: &str) -> Option<Webhook> {
    let mut t = d.table(node, path)?;
    let name = d.req(&mut t, "name", name_field);
    let url = d.req(&mut t, "url", |d, n, p| {
        let s = d.secret(n, p)?;
        match s.parse::<http::Uri>() {
            Ok(uri) if uri.scheme_str() == Some("http") && uri.host().is_some() => Some(s),
            Ok(uri) if uri.scheme_str() == Some("https") => {
                d.error_help(
                    n.loc,
                    p,
                    "https webhooks are not supported yet",
                    "send to a local relay or Alertmanager over http://",
                );
                None
            }
            _ => {
                d.error_help(
                    n.loc,
                    p,
                    "not an http:// URL",
                    "for example `http://127.0.0.1:9093/api/v2/alerts`",
                );
                None
            }
        }
    });
    let format = d.opt(&mut t, "format", |d, n, p| {
        d.choice(n, p, &["alertmanager", "levee"])
    });
    let severities = d.opt(&mut t, "severities", |d, n, p| {
        d.list(n, p, |d, n, p| {
            d.choice(n, p, &["page", "ticket"]).map(|s| match s {
                "ticket" => AlertSeverity::Ticket,
                _ => AlertSeverity::Page,
            })
        })
    });
    let exact = d.opt(&mut t, "match", |d, n, p| {
        decode_matchers(d, n, p, |d, n, p| d.string(n, p).map(ValueMatch::Exact))
    });
    let regex = d.opt(&mut t, "match_re", |d, n, p| {
        decode_matchers(d, n, p, |d, n, p| {
            d.whole_regex(n, p).map(ValueMatch::Regex)
        })
    });
    let escalate_after = d.opt(&mut t, "escalate_after", Decoder::duration);
    let escalate_to = d.opt(&mut t, "escalate_to", name_field);
    let escalation_only = d.opt(&mut t, "escalation_only", Decoder::bool);
    let escalation = match (escalate_after, escalate_to) {
        (Some(after), Some(to)) => Some(Escalation { after, to }),
        (None, None) => None,
        (Some(_), None) => {
            d.error_help(
                node.loc_of(&["escalate_after"]),
                &format!("{path}.escalate_after"),
                "`escalate_after` needs `escalate_to`: the webhook a page goes to next",
                "name another webhook in `escalate_to`, or remove `escalate_after`",
            );
            None
        }
        (None, Some(_)) => {
            d.error_help(
                node.loc_of(&["escalate_to"]),
                &format!("{path}.escalate_to"),
                "`escalate_to` needs `escalate_after`: how long a page waits for an acknowledgement",
                "for example `escalate_after = \"10m\"`",
            );
            None
        }
    };
    let headers = d.opt(&mut t, "headers", |d, n, p| {
        // Every value below is a secret (an API key, a bearer token).
        d.secrets.push(p.to_string());
        let Value::Map(entries) = &n.value else {
            d.error(n.loc, p, "expected a table of header = value");
            return None;
        };
        let mut out = Vec::new();
        for (k, kloc, v) in entries {
            let kp = format!("{p}.{k}");
            let key = Node {
                value: Value::Str(k.clone()),
                loc: *kloc,
            };
            if let (Some(name), Some(value)) = (header_name(d, &key, &kp), header_value(d, v, &kp))
            {
                out.push((name, Secret::new(value)));
            }
        }
        Some(out)
    });
    let timeout = d.opt(&mut t, "timeout", Decoder::duration);
    let max_attempts = d.opt(&mut t, "max_attempts", |d, n, p| d.int_in(n, p, 1, 100));
    let backoff = d.opt(&mut t, "backoff", Decoder::duration);
    let backoff_max = d.opt(&mut t, "backoff_max", Decoder::duration);
    d.finish(t);
    Some(Webhook {
        name: name?,
        url: Secret::new(url?),
        format: match format {
            Some("levee") => WebhookFormat::Levee,
            _ => WebhookFormat::Alertmanager,
        },
        severities: severities.unwrap_or_else(|| vec![AlertSeverity::Page, AlertSeverity::Ticket]),
        matchers: exact
            .unwrap_or_default()
            .into_iter()
            .chain(regex.unwrap_or_default())
            .collect(),
        escalation,
        escalation_only: escalation_only.unwrap_or(false),
        headers: headers.unwrap_or_default(),
        timeout: timeout.unwrap_or(Duration::from_secs(5)),
        max_attempts: max_attempts.map_or(6, |v| v as u32),
        backoff: backoff.unwrap_or(Duration::from_secs(1)),
        backoff_max: backoff_max.unwrap_or(Duration::from_secs(60)),
    })
}

/// A table of label = condition (`match`, `match_re`), each condition
/// decoded by `value`.
fn decode_matchers(
    d: &mut Decoder<'_>,
    n: &Node,
    p: &str,
    value: impl Fn(&mut Decoder<'_>, &Node, &str) -> Option<ValueMatch>,
) -> Option<Vec<LabelMatcher>> {
    let mut out = Vec::new();
    for (k, _, v, kp) in label_entries(d, n, p)? {
        if let Some(value) = value(d, v, &kp) {
            out.push(LabelMatcher {
                label: k.clone(),
                value,
            });
        }
    }
    Some(out)
}

pub(crate) fn decode_store(d: &mut Decoder<'_>, node: &Node, path: &str) -> Option<StoreConfig> {
    let mut t = d.table(node, path)?;
    let def = StoreConfig::default();
    let backend = d.opt(&mut t, "backend", |d, n, p| {
        d.choice(n, p, &["sqlite", "postgres"])
    });
    let file = d.opt(&mut t, "path", |d, n, p| Some((d.string(n, p)?, n.loc)));
    let url = d.opt(&mut t, "url", |d, n, p| {
        let s = d.secret(n, p)?;
        if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            Some((s, n.loc))
        } else {
            // Never echo the value: it may hold a password.
            d.error_help(
                n.loc,
                p,
                "not a PostgreSQL URL",
                "for example `postgres://levee:${LEVEE_PG_PASSWORD}@db:5432/levee`",
            );
            None
        }
    });
    let connect_timeout = d.opt(&mut t, "connect_timeout", Decoder::duration);
    let statement_timeout = d.opt(&mut t, "statement_timeout", Decoder::duration);
    let incident_retention = d.opt(&mut t, "incident_retention", Decoder::duration);
    let max_incidents = d.opt(&mut t, "max_incidents", |d, n, p| {
        d.int_in(n, p, 1, 10_000_000)
    });
    let loc = t.loc;
    d.finish(t);
    let backend = match backend {
        Some("postgres") => StoreBackend::Postgres,
        _ => StoreBackend::Sqlite,
    };
    match (backend, &file, &url) {
        (StoreBackend::Postgres, _, None) => d.error_help(
            loc,
            path,
            "`backend = \"postgres\"` needs the database's URL",
            "add `url = \"${LEVEE_PG_URL}\"` (postgres://user:password@host:5432/db)",
        ),
        (StoreBackend::Postgres, Some((_, file_loc)), Some(_)) => d.error_help(
            *file_loc,
            &format!("{path}.path"),
            "`path` is the SQLite file; this store is PostgreSQL",
            "remove `path`, or `backend = \"postgres\"` to keep state in SQLite",
        ),
        (StoreBackend::Sqlite, _, Some((_, url_loc))) => d.error_help(
            *url_loc,
            &format!("{path}.url"),
            "`url` names a PostgreSQL database, but the backend is SQLite",
            "add `backend = \"postgres\"`, or remove `url`",
        ),
        _ => {}
    }
    Some(StoreConfig {
        backend,
        path: match (backend, file) {
            (StoreBackend::Postgres, _) => None,
            (_, Some((s, _))) if s == ":memory:" => None,
            (_, Some((s, _))) => Some(s.into()),
            (_, None) => def.path,
        },
        url: url.map(|(s, _)| Secret::new(s)),
        connect_timeout: connect_timeout.unwrap_or(def.connect_timeout),
        statement_timeout: statement_timeout.unwrap_or(def.statement_timeout),
        incident_retention: incident_retention.unwrap_or(def.incident_retention),
        max_incidents: max_incidents.map_or(def.max_incidents, |v| v as usize),
    })
}

pub(crate) fn decode_status_page(
    d: &mut Decoder<'_>,
    node: &Node,
    path: &str,
) -> Option<StatusPage> {
    let mut t = d.table(node, path)?;
    let def = StatusPage::default();
    let title = d.opt(&mut t, "title", Decoder::string);
    let period = d.opt(&mut t, "period", |d, n, p| match decode_period(d, n, p)? {
        SloPeriod::Rolling(len) => Some(len),
        SloPeriod::CalendarMonth => {
            d.error(
                n.loc,
                p,
                "the status page shows a rolling period, such as `30d`",
            );
            None
        }
    });
    let core = d.opt(&mut t, "core_objective", objective_ppm);
    let optional = d.opt(&mut t, "optional_objective", objective_ppm);
    d.finish(t);
    Some(StatusPage {
        title: title.unwrap_or(def.title),
        period: period.unwrap_or(def.period),
        core_objective_ppm: core.unwrap_or(def.core_objective_ppm),
        optional_objective_ppm: optional.unwrap_or(def.optional_objective_ppm),
    })
}

pub(crate) fn decode_capacity(d: &mut Decoder<'_>, node: &Node, path: &str) -> Option<Capacity> {
    let mut t = d.table(node, path)?;
    let def = Capacity::default();
    let warn_at = d.opt(&mut t, "warn_at", Decoder::percent);
    let critical_at = d.opt(&mut t, "critical_at", Decoder::percent);
    d.finish(t);
    let c = Capacity {
        warn_at: warn_at.unwrap_or(def.warn_at),
        critical_at: critical_at.unwrap_or(def.critical_at),
    };
    if c.warn_at > c.critical_at {
        d.error(
            node.loc_of(&["warn_at", "critical_at"]),
            &format!("{path}.warn_at"),
            "warn_at must not be above critical_at",
        );
    }
    Some(c)
}

/// Gives SLOs that left `min_events` unset the `[alerting]` default.
pub(crate) fn apply_slo_defaults(config: &mut Config) {
    let default_min = config.alerting.min_events;
    for slo in &mut config.slos {
        if slo.alerting.min_events == MIN_EVENTS_UNSET {
            slo.alerting.min_events = default_min;
        }
    }
}

/// Checks SLO and webhook names, and the routes and clusters SLOs name.
pub(crate) fn check_slos(
    d: &mut Decoder<'_>,
    root: &Node,
    config: &Config,
    raw_slo_names: &[String],
    route_names: &[&str],
    cluster_names: &[&str],
) {
    let loc_of =
        |section: &str, i: usize, key: &str| root.loc_of(&[&format!("{section}[{i}].{key}")]);
    let mut seen = HashSet::new();
    for (n, slo) in config.slos.iter().enumerate() {
        // The position in the file: SLOs that failed to decode are not in
        // `config.slos`, so its positions can be earlier.
        let i = raw_slo_names
            .iter()
            .enumerate()
            .filter(|(_, name)| **name == slo.name)
            .map(|(i, _)| i)
            .nth(
                config.slos[..n]
                    .iter()
                    .filter(|s| s.name == slo.name)
                    .count(),
            )
            .unwrap_or(n);
        if !seen.insert(slo.name.as_str()) {
            d.error(
                loc_of("slos", i, "name"),
                &format!("slos[{i}].name"),
                format!("duplicate SLO name `{}`", slo.name),
            );
        }
        let scope = &slo.scope;
        for (key, value, known) in [
            ("route", &scope.route, route_names),
            ("cluster", &scope.cluster, cluster_names),
        ] {
            let Some(v) = value else { continue };
            if known.contains(&v.as_str()) {
                continue;
            }
            let loc = loc_of("slos", i, key);
            let path = format!("slos[{i}].{key}");
            let msg = format!("unknown {key} `{v}`");
            match closest(v, known) {
                Some(s) => d.error_help(loc, &path, msg, format!("did you mean `{s}`?")),
                None => d.error(loc, &path, msg),
            }
        }
    }
    crate::decode_jobs::check_slos(d, config, raw_slo_names, &loc_of);
    let bucket = config.alerting.bucket;
    if config.alerting.evaluate_every > bucket {
        d.error_help(
            root.loc_of(&["alerting.evaluate_every", "alerting.bucket"]),
            "alerting.evaluate_every",
            format!(
                "evaluating every {} with {} buckets would pour several buckets' events into one",
                format_duration(config.alerting.evaluate_every),
                format_duration(bucket)
            ),
            "evaluate at least once per bucket",
        );
    }
    for slo in &config.slos {
        check_timeslice(d, root, slo, raw_slo_names, bucket);
        let rules = slo.alerting.rules.as_deref().unwrap_or_default();
        let too_short = rules
            .iter()
            .zip(rule_fields(rules))
            .find(|(r, _)| r.short < bucket);
        if let Some((r, field)) = too_short {
            let i = raw_slo_names
                .iter()
                .position(|n| *n == slo.name)
                .unwrap_or(0);
            let path = format!("slos[{i}].{field}.short");
            d.error_help(
                root.loc_of(&[&path]),
                &path,
                format!(
                    "the window {} is shorter than one bucket ({})",
                    format_duration(r.short),
                    format_duration(bucket)
                ),
                "lengthen the window, or set a smaller `[alerting] bucket`",
            );
        }
    }
    let mut seen = HashSet::new();
    for (i, w) in config.alerting.webhooks.iter().enumerate() {
        if !seen.insert(w.name.as_str()) {
            let path = format!("alerting.webhooks[{i}].name");
            d.error(
                root.loc_of(&[&path]),
                &path,
                format!("duplicate webhook name `{}`", w.name),
            );
        }
    }
    check_escalations(d, root, &config.alerting.webhooks);
}

/// Escalation chains: each `escalate_to` names another webhook, no chain
/// comes back to a webhook it passed (each loop is reported once, at its
/// first webhook in the file), only webhooks that take pages escalate, and
/// an `escalation_only` webhook is escalated to.
fn check_escalations(d: &mut Decoder<'_>, root: &Node, webhooks: &[Webhook]) {
    let names: Vec<&str> = webhooks.iter().map(|w| w.name.as_str()).collect();
    let index = |name: &str| names.iter().position(|n| *n == name);
    let field = |i: usize, key: &str| format!("alerting.webhooks[{i}].{key}");
    let mut in_reported_loop = vec![false; webhooks.len()];
    for (i, w) in webhooks.iter().enumerate() {
        let Some(escalation) = &w.escalation else {
            continue;
        };
        let path = field(i, "escalate_to");
        let loc = root.loc_of(&[&path]);
        let Some(next) = index(&escalation.to) else {
            let msg = format!("unknown webhook `{}`", escalation.to);
            match closest(&escalation.to, &names) {
                Some(s) => d.error_help(loc, &path, msg, format!("did you mean `{s}`?")),
                None => d.error(loc, &path, msg),
            }
            continue;
        };
        if !w.severities.contains(&AlertSeverity::Page) {
            let path = field(i, "escalate_after");
            d.error_help(
                root.loc_of(&[&path]),
                &path,
                "only pages escalate, and this webhook takes none",
                "add \"page\" to `severities`, or remove `escalate_after` and `escalate_to`",
            );
        }
        // Follow the chain; a webhook seen twice closes a loop.
        let mut chain = vec![i];
        let mut at = next;
        loop {
            if let Some(start) = chain.iter().position(|&c| c == at) {
                let cycle = &chain[start..];
                if cycle.contains(&i) && !in_reported_loop[i] {
                    for &c in cycle {
                        in_reported_loop[c] = true;
                    }
                    let mut route: Vec<&str> = cycle.iter().map(|&c| names[c]).collect();
                    route.push(names[cycle[0]]);
                    d.error_help(
                        loc,
                        &path,
                        format!("escalation loop: {}", route.join(" → ")),
                        "end the chain at a webhook without `escalate_to`",
                    );
                }
                break;
            }
            chain.push(at);
            match webhooks[at].escalation.as_ref().and_then(|e| index(&e.to)) {
                Some(n) => at = n,
                None => break,
            }
        }
    }
    for (i, w) in webhooks.iter().enumerate() {
        let escalated_to = webhooks
            .iter()
            .any(|o| o.escalation.as_ref().is_some_and(|e| e.to == w.name));
        if w.escalation_only && !escalated_to {
            let path = field(i, "escalation_only");
            d.error_help(
                root.loc_of(&[&path]),
                &path,
                format!(
                    "webhook `{}` would never receive anything: it takes only escalations, and no webhook escalates to it",
                    w.name
                ),
                format!("set `escalate_to = \"{}\"` on the webhook whose pages should reach it", w.name),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::model::*;
    use crate::{load_str_with_env, Format};
    use std::time::Duration;

    const BASE: &str = r#"
[[listeners]]
name = "public"
listen = "127.0.0.1:8080"

[[routes]]
name = "checkout"
cluster = "shop"
tier = "core"

[[clusters]]
name = "shop"
endpoints = ["127.0.0.1:9001"]
"#;

    fn load(extra: &str) -> Config {
        let src = format!("{BASE}{extra}");
        let env = |name: &str| (name == "PD_KEY").then(|| "secret-key".to_string());
        load_str_with_env(&src, Format::Toml, "t.toml", &env).expect("valid config")
    }

    fn load_err(extra: &str) -> String {
        let src = format!("{BASE}{extra}");
        let env = |name: &str| (name == "LEVEE_PG_URL").then(|| "postgres://l:pw@db/levee".into());
        load_str_with_env(&src, Format::Toml, "t.toml", &env)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn the_store_is_sqlite_by_default_or_postgres_by_url() {
        let c = load("");
        assert_eq!(c.store.backend, StoreBackend::Sqlite);
        assert_eq!(c.store.url, None);
        let src = format!(
            "{BASE}\n[store]\nbackend = \"postgres\"\nurl = \"${{LEVEE_PG_URL}}\"\nconnect_timeout = \"2s\"\nstatement_timeout = \"3s\"\n"
        );
        let env = |name: &str| (name == "LEVEE_PG_URL").then(|| "postgres://l:pw@db/levee".into());
        let c = load_str_with_env(&src, Format::Toml, "t.toml", &env).unwrap();
        assert_eq!(c.store.backend, StoreBackend::Postgres);
        assert_eq!(
            c.store.url.as_ref().map(Secret::expose),
            Some("postgres://l:pw@db/levee")
        );
        assert_eq!(c.store.path, None, "no SQLite file with PostgreSQL");
        assert_eq!(c.store.connect_timeout, Duration::from_secs(2));
        assert_eq!(c.store.statement_timeout, Duration::from_secs(3));
        // Serialized (as --explain and the admin API show it) redacted.
        let shown = serde_json::to_string(&c.store).unwrap();
        assert!(!shown.contains("pw"), "{shown}");
    }

    #[test]
    fn store_mistakes_name_their_field_and_never_the_url() {
        let err = load_err("\n[store]\nbackend = \"postgres\"\n");
        assert!(
            err.contains("store: `backend = \"postgres\"` needs the database's URL"),
            "{err}"
        );
        let err = load_err("\n[store]\nbackend = \"postgress\"\n");
        assert!(
            err.contains("store.backend: unknown value `postgress`"),
            "{err}"
        );
        assert!(err.contains("did you mean `postgres`?"), "{err}");
        let err = load_err("\n[store]\nurl = \"${LEVEE_PG_URL}\"\n");
        assert!(
            err.contains("store.url: `url` names a PostgreSQL database, but the backend is SQLite"),
            "{err}"
        );
        let err = load_err(
            "\n[store]\nbackend = \"postgres\"\nurl = \"${LEVEE_PG_URL}\"\npath = \"x.db\"\n",
        );
        assert!(
            err.contains("store.path: `path` is the SQLite file"),
            "{err}"
        );
        let err = load_err("\n[store]\nbackend = \"postgres\"\nurl = \"mysql://root:pw@db/x\"\n");
        assert!(err.contains("store.url: not a PostgreSQL URL"), "{err}");
        assert!(!err.contains("pw@"), "{err}");
    }

    #[test]
    fn defaults_without_slo_sections() {
        let c = load("");
        assert!(c.slos.is_empty());
        assert_eq!(c.alerting, Alerting::default());
        assert_eq!(
            c.store.path.as_deref(),
            Some(std::path::Path::new("levee.db"))
        );
        assert_eq!(c.status_page.core_objective_ppm, 999_000);
    }

    #[test]
    fn every_slo_knob_decodes() {
        let c = load(
            r#"
[[slos]]
name = "checkout-availability"
description = "Checkout answers"
display_name = "  Checkout  "
sli = "availability"
route = "checkout"
tenant = "acme"
objective = "99.95%"
period = "28d"
rate_limited_is_bad = true
runbook = "https://wiki.example.com/runbooks/checkout"
labels = { team = "payments" }
alerting = { min_events = 50, pending_for = "1m", page = [{ long = "1h", short = "5m", factor = 13.44 }] }

[[slos]]
name = "checkout-latency"
sli = "latency"
tier = "core"
cluster = "shop"
period = "calendar_month"
objectives = [{ threshold = "100ms", objective = "90%" }, { threshold = "1s", objective = "99%" }]

[alerting]
evaluate_every = "5s"
bucket = "5s"
min_events = 20
webhooks = [{ name = "am", url = "http://127.0.0.1:9093/api/v2/alerts", headers = { authorization = "Bearer ${PD_KEY}" }, severities = ["page"], max_attempts = 3 }]

[store]
path = ":memory:"

[status_page]
title = "Acme"
optional_objective = "99.5%"

[capacity]
warn_at = "70%"
"#,
        );
        let a = &c.slos[0];
        assert_eq!(a.objectives.len(), 1);
        assert_eq!(a.objectives[0].id, "checkout-availability");
        assert_eq!(a.display_name.as_deref(), Some("Checkout"), "trimmed");
        assert_eq!(a.objectives[0].objective_ppm, 999_500);
        assert_eq!(
            a.period,
            SloPeriod::Rolling(Duration::from_secs(28 * 86_400))
        );
        assert_eq!(
            a.sli,
            Sli::Availability {
                rate_limited_is_bad: true
            }
        );
        assert_eq!(a.scope.tenant.as_deref(), Some("acme"));
        assert_eq!(a.alerting.min_events, 50);
        assert_eq!(a.alerting.pending_for, Duration::from_secs(60));
        let rules = a.alerting.rules.as_ref().unwrap();
        assert_eq!(rules.len(), 1);
        assert_eq!(rules[0].factor_milli, 13_440);
        assert_eq!(a.labels, vec![("team".to_string(), "payments".to_string())]);

        let l = &c.slos[1];
        assert_eq!(l.sli, Sli::Latency);
        assert_eq!(l.display_name, None);
        assert_eq!(l.period, SloPeriod::CalendarMonth);
        assert_eq!(l.scope.tier, Some(Tier::Core));
        let ids: Vec<_> = l.objectives.iter().map(|o| o.id.as_str()).collect();
        assert_eq!(ids, ["checkout-latency:100ms", "checkout-latency:1s"]);
        assert_eq!(l.objectives[1].threshold, Some(Duration::from_secs(1)));
        assert_eq!(l.alerting.min_events, 20, "the [alerting] default applies");
        assert!(l.alerting.rules.is_none(), "workbook defaults");

        assert_eq!(c.alerting.bucket, Duration::from_secs(5));
        let w = &c.alerting.webhooks[0];
        assert_eq!(w.headers[0].1.expose(), "Bearer secret-key");
        assert_eq!(w.severities, vec![AlertSeverity::Page]);
        assert_eq!(w.max_attempts, 3);
        assert_eq!(c.store.path, None);
        assert_eq!(c.status_page.optional_objective_ppm, 995_000);
        assert_eq!(c.capacity.warn_at, 0.7);
        assert_eq!(a.budgeting, Budgeting::Occurrences, "the default");
        // Secrets stay out of the serialized config.
        let json = serde_json::to_string(&c).unwrap();
        assert!(!json.contains("secret-key"), "{json}");
    }

    #[test]
    fn time_slice_budgeting_decodes() {
        let c = load(
            r#"
[[slos]]
name = "sliced"
sli = "availability"
objective = "99%"
budgeting = "timeslices"
timeslice = "1m"
timeslice_target = "95%"

[[slos]]
name = "ratio"
sli = "latency"
threshold = "300ms"
objective = "99%"
budgeting = "ratio_timeslices"
timeslice = "5m"

[[slos]]
name = "events"
sli = "availability"
objective = "99%"
budgeting = "occurrences"
"#,
        );
        assert_eq!(
            c.slos[0].budgeting,
            Budgeting::Timeslices {
                slice: Duration::from_secs(60),
                target_ppm: 950_000
            }
        );
        assert_eq!(
            c.slos[1].budgeting,
            Budgeting::RatioTimeslices {
                slice: Duration::from_secs(300)
            }
        );
        assert_eq!(c.slos[1].budgeting.slice(), Some(Duration::from_secs(300)));
        assert_eq!(c.slos[2].budgeting, Budgeting::Occurrences);
        assert_eq!(c.slos[0].budgeting.name(), "timeslices");
        let json = serde_json::to_value(c.slos[0].budgeting).unwrap();
        assert_eq!(
            json,
            serde_json::json!({ "method": "timeslices", "slice": "1m", "target_ppm": 950000 })
        );
    }

    /// The rendered diagnostics of a config that must be refused.
    fn refused(extra: &str) -> String {
        let src = format!("{BASE}{extra}");
        let env = |_: &str| None;
        match load_str_with_env(&src, Format::Toml, "t.toml", &env) {
            Ok(_) => panic!("accepted:\n{extra}"),
            Err(diags) => diags.to_string(),
        }
    }

    #[test]
    fn webhooks_route_by_labels_and_escalate_in_chains() {
        let c = load(
            r#"
[[alerting.webhooks]]
name = "payments-oncall"
url = "http://127.0.0.1:9093/a"
severities = ["page"]
match = { team = "payments" }
match_re = { slo = "checkout-.*" }
escalate_after = "10m"
escalate_to = "payments-secondary"

[[alerting.webhooks]]
name = "payments-secondary"
url = "http://127.0.0.1:9093/b"
escalation_only = true
escalate_after = "15m"
escalate_to = "manager"

[[alerting.webhooks]]
name = "manager"
url = "http://127.0.0.1:9093/c"
escalation_only = true
"#,
        );
        let [oncall, secondary, manager] = &c.alerting.webhooks[..] else {
            panic!("three webhooks")
        };
        assert_eq!(oncall.matchers.len(), 2);
        let labels = [("team", "payments"), ("slo", "checkout-availability")];
        assert!(oncall
            .matchers
            .iter()
            .all(|m| m.matches(labels.into_iter())));
        let other = [("team", "search"), ("slo", "checkout-availability")];
        assert!(!oncall.matchers.iter().all(|m| m.matches(other.into_iter())));
        // The regex must match the whole value.
        let partial = [("team", "payments"), ("slo", "my-checkout-x")];
        assert!(!oncall.matchers[1].matches(partial.into_iter()));
        assert_eq!(
            oncall.escalation,
            Some(Escalation {
                after: Duration::from_secs(600),
                to: "payments-secondary".into()
            })
        );
        assert!(!oncall.escalation_only);
        assert!(secondary.escalation_only);
        assert_eq!(secondary.escalation.as_ref().unwrap().to, "manager");
        assert!(manager.escalation.is_none() && manager.matchers.is_empty());
        let json = serde_json::to_value(oncall).unwrap();
        assert_eq!(json["escalation"]["after"], "10m");
        assert_eq!(json["matchers"][1]["value"]["regex"], "checkout-.*");
    }

    #[test]
    fn escalation_mistakes_are_located() {
        let looped = refused(
            r#"
[[alerting.webhooks]]
name = "a"
url = "http://127.0.0.1:9093/a"
escalate_after = "5m"
escalate_to = "b"

[[alerting.webhooks]]
name = "b"
url = "http://127.0.0.1:9093/b"
escalate_after = "5m"
escalate_to = "a"

[[alerting.webhooks]]
name = "c"
url = "http://127.0.0.1:9093/c"
escalate_after = "5m"
escalate_to = "c"
"#,
        );
        assert!(
            looped.contains(
                "t.toml:19:15: alerting.webhooks[0].escalate_to: escalation loop: a → b → a"
            ),
            "{looped}"
        );
        assert!(
            looped.contains("alerting.webhooks[2].escalate_to: escalation loop: c → c"),
            "{looped}"
        );
        assert_eq!(looped.matches("escalation loop").count(), 2, "{looped}");

        let others = refused(
            r#"
[[alerting.webhooks]]
name = "tickets"
url = "http://127.0.0.1:9093/a"
severities = ["ticket"]
escalate_after = "5m"
escalate_to = "pagr"
match = { "9team" = "x" }
match_re = { team = "(" }

[[alerting.webhooks]]
name = "pager"
url = "http://127.0.0.1:9093/b"
escalate_after = "0s"
escalate_to = "tickets"

[[alerting.webhooks]]
name = "lonely"
url = "http://127.0.0.1:9093/c"
escalation_only = true
escalate_to = "pager"
"#,
        );
        for expected in [
            "alerting.webhooks[0].escalate_to: unknown webhook `pagr`",
            "help: did you mean `pager`?",
            "alerting.webhooks[0].match.9team: `9team` is not a valid label name",
            "alerting.webhooks[0].match_re.team: invalid regular expression",
            "alerting.webhooks[1].escalate_after: must be greater than zero",
            "alerting.webhooks[2].escalate_to: `escalate_to` needs `escalate_after`",
        ] {
            assert!(
                others.contains(expected),
                "missing {expected:?} in:\n{others}"
            );
        }
        // With a valid chain, the other checks: a ticket-only webhook does
        // not escalate, and an escalation-only one must be escalated to.
        let unreachable = refused(
            r#"
[[alerting.webhooks]]
name = "tickets"
url = "http://127.0.0.1:9093/a"
severities = ["ticket"]
escalate_after = "5m"
escalate_to = "pager"

[[alerting.webhooks]]
name = "pager"
url = "http://127.0.0.1:9093/b"

[[alerting.webhooks]]
name = "lonely"
url = "http://127.0.0.1:9093/c"
escalation_only = true
"#,
        );
        for expected in [
            "alerting.webhooks[0].escalate_after: only pages escalate, and this webhook takes none",
            "alerting.webhooks[2].escalation_only: webhook `lonely` would never receive anything",
            "help: set `escalate_to = \"lonely\"`",
        ] {
            assert!(
                unreachable.contains(expected),
                "missing {expected:?} in:\n{unreachable}"
            );
        }
    }
}
