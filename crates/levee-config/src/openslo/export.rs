//! Levee's SLOs as OpenSLO v1 (`levee slo export`): one `kind: SLO`
//! document per `[[slos]]` entry, with its SLI inline and measured by the
//! `Levee` metric source (the scope and SLI kind in its `spec`, exactly as
//! the importer reads them), its period, objectives, burn-rate rules as one
//! inline alert policy, labels, runbook and description. Importing the
//! output gives the same SLOs back: import, export and import again is
//! stable. What OpenSLO cannot say is written as a `#` comment above the
//! document: a short window other than a twelfth of the long one (the
//! importer's rule), `min_events`, a status page name, and windows shorter
//! than a minute (OpenSLO's smallest unit), which are rounded up.

use super::render::factor_text;
use crate::model::{AlertSeverity, Budgeting, Config, Sli, Slo, SloPeriod, Tier};
use std::fmt::Write as _;
use std::time::Duration;

/// The OpenSLO v1 YAML for every SLO in `config`, `---` between documents;
/// `source` names the config in the header comment.
pub fn export(config: &Config, source: &str) -> String {
    let mut out = format!(
        "# OpenSLO v1 for the SLOs of {source}, written by `levee slo export`.\n\
         # Levee measures these SLIs itself (metric source `type: Levee`);\n\
         # `levee slo import` reads this file back into the same [[slos]].\n"
    );
    if config.slos.is_empty() {
        out.push_str("# (no SLOs)\n");
    }
    for slo in &config.slos {
        if slo.sli == Sli::JobCompletion {
            // The importer has no form for it: leaving it out keeps the
            // round trip exact, and the comment says so.
            let _ = writeln!(
                out,
                "# SLO {} (sli = \"job_completion\", an async route's freshness) has no OpenSLO form; not exported.",
                quoted(&slo.name)
            );
            continue;
        }
        out.push_str("---\n");
        write_slo(&mut out, slo, config);
    }
    out
}

fn write_slo(out: &mut String, slo: &Slo, config: &Config) {
    let mut notes = Vec::new();
    let mut y = Yaml::default();
    y.line(0, "apiVersion: openslo/v1");
    y.line(0, "kind: SLO");
    y.line(0, "metadata:");
    y.line(1, &format!("name: {}", quoted(&slo.name)));
    if let Some(display) = &slo.display_name {
        notes.push(format!(
            "display_name = {} (the status page's name) has no OpenSLO field",
            quoted(display)
        ));
    }
    let (service, labels): (Vec<_>, Vec<_>) = slo.labels.iter().partition(|(k, _)| k == "service");
    if !labels.is_empty() {
        y.line(1, "labels:");
        for (k, v) in labels {
            // Label names are Prometheus names: plain YAML keys.
            y.line(2, &format!("{k}: {}", quoted(v)));
        }
    }
    if let Some(runbook) = &slo.runbook {
        y.line(1, "annotations:");
        y.line(2, &format!("openslo.com/runbook_url: {}", quoted(runbook)));
    }
    y.line(0, "spec:");
    if let Some(description) = &slo.description {
        y.line(1, &format!("description: {}", quoted(description)));
    }
    if let Some((_, service)) = service.first() {
        y.line(1, &format!("service: {}", quoted(service)));
    }
    write_indicator(&mut y, slo);
    write_time_window(&mut y, slo.period);
    write_budgeting(&mut y, slo.budgeting, &mut notes);
    write_objectives(&mut y, slo);
    write_alerting(&mut y, slo, config.alerting.min_events, &mut notes);
    for note in notes {
        let _ = writeln!(out, "# {note}");
    }
    out.push_str(&y.out);
}

/// The SLI, inline: a ratio of Levee's good and total events for
/// availability and single-threshold latency, a threshold metric in
/// milliseconds for latency with several thresholds.
fn write_indicator(y: &mut Yaml, slo: &Slo) {
    y.line(1, "indicator:");
    y.line(2, "metadata:");
    y.line(
        3,
        &format!("name: {}", quoted(&format!("{}-sli", slo.name))),
    );
    y.line(2, "spec:");
    let single_latency = match (slo.sli, slo.objectives.as_slice()) {
        (Sli::Latency, [one]) => one.threshold,
        _ => None,
    };
    if slo.sli == Sli::Latency && single_latency.is_none() {
        y.line(3, "thresholdMetric:");
        write_source(y, 4, slo, None);
        return;
    }
    y.line(3, "ratioMetric:");
    y.line(4, "counter: true");
    for part in ["good", "total"] {
        y.line(4, &format!("{part}:"));
        write_source(y, 5, slo, single_latency);
    }
}

/// A `metricSource` of type Levee for `slo`'s scope and SLI kind.
fn write_source(y: &mut Yaml, depth: usize, slo: &Slo, threshold: Option<Duration>) {
    y.line(depth, "metricSource:");
    y.line(depth + 1, "type: Levee");
    y.line(depth + 1, "spec:");
    let d = depth + 2;
    let scope = &slo.scope;
    if let Some(route) = &scope.route {
        y.line(d, &format!("route: {}", quoted(route)));
    }
    if let Some(tier) = scope.tier {
        let name = match tier {
            Tier::Core => "core",
            Tier::Optional => "optional",
        };
        y.line(d, &format!("tier: {name}"));
    }
    if let Some(tenant) = &scope.tenant {
        y.line(d, &format!("tenant: {}", quoted(tenant)));
    }
    if let Some(cluster) = &scope.cluster {
        y.line(d, &format!("cluster: {}", quoted(cluster)));
    }
    match slo.sli {
        Sli::Availability {
            rate_limited_is_bad,
        } => {
            y.line(d, "sli: availability");
            y.line(d, &format!("rate_limited_is_bad: {rate_limited_is_bad}"));
        }
        Sli::Latency | Sli::JobCompletion => {
            y.line(d, "sli: latency");
            match threshold {
                Some(t) => y.line(d, &format!("threshold: {}", crate::format_duration(t))),
                None => y.line(d, "unit: ms"),
            }
        }
    }
}

fn write_time_window(y: &mut Yaml, period: SloPeriod) {
    y.line(1, "timeWindow:");
    match period {
        SloPeriod::Rolling(d) => {
            y.line(2, &format!("- duration: {}", window_text(d)));
            y.line(3, "isRolling: true");
        }
        SloPeriod::CalendarMonth => {
            y.line(2, "- duration: 1M");
            y.line(3, "isRolling: false");
            y.line(3, "calendar:");
            y.line(4, "startTime: \"2020-01-01 00:00:00\"");
            y.line(4, "timeZone: UTC");
        }
    }
}

fn write_budgeting(y: &mut Yaml, budgeting: Budgeting, notes: &mut Vec<String>) {
    let (method, slice) = match budgeting {
        Budgeting::Occurrences => ("Occurrences", None),
        Budgeting::Timeslices { slice, .. } => ("Timeslices", Some(slice)),
        Budgeting::RatioTimeslices { slice } => ("RatioTimeslices", Some(slice)),
    };
    if let Some(slice) = slice.filter(|s| s.as_secs() % 60 != 0 || s.subsec_nanos() != 0) {
        notes.push(format!(
            "timeslice = {} is not whole minutes, OpenSLO's smallest unit; written as {}",
            crate::format_duration(slice),
            window_text(slice)
        ));
    }
    y.line(1, &format!("budgetingMethod: {method}"));
}

/// The objectives; a time-slice SLO's slice width and target go on each,
/// where OpenSLO puts them.
fn write_objectives(y: &mut Yaml, slo: &Slo) {
    y.line(1, "objectives:");
    let thresholds = slo.sli == Sli::Latency && slo.objectives.len() > 1;
    for o in &slo.objectives {
        y.line(2, &format!("- target: {}", target_text(o.objective_ppm)));
        if let (true, Some(t)) = (thresholds, o.threshold) {
            y.line(3, "op: lte");
            y.line(3, &format!("value: {}", millis_text(t)));
        }
        match slo.budgeting {
            Budgeting::Occurrences => {}
            Budgeting::Timeslices { slice, target_ppm } => {
                y.line(3, &format!("timeSliceTarget: {}", target_text(target_ppm)));
                y.line(3, &format!("timeSliceWindow: {}", window_text(slice)));
            }
            Budgeting::RatioTimeslices { slice } => {
                y.line(3, &format!("timeSliceWindow: {}", window_text(slice)));
            }
        }
    }
}

/// The SLO's own burn-rate rules as one inline alert policy; none when it
/// takes the SRE Workbook's defaults (which the importer gives back).
/// `min_events` differing from the config's default is noted.
fn write_alerting(y: &mut Yaml, slo: &Slo, default_min_events: u64, notes: &mut Vec<String>) {
    if slo.alerting.min_events != default_min_events {
        notes.push(format!(
            "min_events = {} has no OpenSLO field",
            slo.alerting.min_events
        ));
    }
    let Some(rules) = &slo.alerting.rules else {
        return;
    };
    if rules.is_empty() {
        notes.push("no burn-rate rules (alerting off) has no OpenSLO form; importing this file gives the SRE Workbook's rules".into());
        return;
    }
    y.line(1, "alertPolicies:");
    y.line(2, "- kind: AlertPolicy");
    y.line(3, "metadata:");
    y.line(
        4,
        &format!("name: {}", quoted(&format!("{}-burn-rate", slo.name))),
    );
    y.line(3, "spec:");
    y.line(4, "alertWhenBreaching: true");
    y.line(4, "conditions:");
    for (i, r) in rules.iter().enumerate() {
        let severity = match r.severity {
            AlertSeverity::Page => "page",
            AlertSeverity::Ticket => "ticket",
        };
        if r.short * 12 != r.long {
            notes.push(format!(
                "rule {} ({severity}, long {}): its short window {} is not a twelfth of the long one, which is what an import assumes",
                i + 1,
                crate::format_duration(r.long),
                crate::format_duration(r.short)
            ));
        }
        y.line(5, "- kind: AlertCondition");
        y.line(6, "metadata:");
        y.line(
            7,
            &format!(
                "name: {}",
                quoted(&format!("{}-{severity}-{}", slo.name, i + 1))
            ),
        );
        y.line(6, "spec:");
        y.line(7, &format!("severity: {severity}"));
        y.line(7, "condition:");
        y.line(8, "kind: burnrate");
        y.line(8, "op: gte");
        y.line(8, &format!("threshold: {}", factor_text(r.factor_milli)));
        y.line(8, &format!("lookbackWindow: {}", window_text(r.long)));
        if !slo.alerting.pending_for.is_zero() {
            y.line(
                8,
                &format!("alertAfter: {}", window_text(slo.alerting.pending_for)),
            );
        }
    }
}

/// A duration in OpenSLO's shorthand, whose smallest unit is the minute:
/// the largest whole unit among weeks, days, hours and minutes; anything
/// shorter than a minute, or not whole minutes, is rounded up.
fn window_text(d: Duration) -> String {
    let minutes = d.as_secs().div_ceil(60).max(1);
    for (unit, per) in [('w', 7 * 24 * 60), ('d', 24 * 60), ('h', 60)] {
        if minutes.is_multiple_of(per) {
            return format!("{}{unit}", minutes / per);
        }
    }
    format!("{minutes}m")
}

/// An objective in ppm as OpenSLO's `target`: 999_500 is `0.9995`.
fn target_text(ppm: u32) -> String {
    let (whole, fraction) = (ppm / 1_000_000, ppm % 1_000_000);
    if fraction == 0 {
        return whole.to_string();
    }
    let digits = format!("{fraction:06}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

/// A latency threshold in milliseconds: `300`, or `0.5` below a millisecond.
fn millis_text(d: Duration) -> String {
    let micros = d.as_micros();
    if micros.is_multiple_of(1000) {
        (micros / 1000).to_string()
    } else {
        let text = format!("{}.{:03}", micros / 1000, micros % 1000);
        text.trim_end_matches('0').to_string()
    }
}

/// A YAML double-quoted scalar (JSON's escaping is valid YAML).
fn quoted(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// Indented YAML lines, two spaces a level.
#[derive(Default)]
struct Yaml {
    out: String,
}

impl Yaml {
    fn line(&mut self, depth: usize, text: &str) {
        for _ in 0..depth {
            self.out.push_str("  ");
        }
        self.out.push_str(text);
        self.out.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_windows_and_thresholds_read_as_openslo_writes_them() {
        assert_eq!(target_text(999_500), "0.9995");
        assert_eq!(target_text(990_000), "0.99");
        assert_eq!(target_text(1), "0.000001");
        assert_eq!(target_text(1_000_000), "1");
        assert_eq!(window_text(Duration::from_secs(3600)), "1h");
        assert_eq!(window_text(Duration::from_secs(28 * 86_400)), "4w");
        assert_eq!(window_text(Duration::from_secs(300)), "5m");
        assert_eq!(window_text(Duration::from_secs(30)), "1m");
        assert_eq!(window_text(Duration::from_secs(90)), "2m");
        assert_eq!(millis_text(Duration::from_millis(300)), "300");
        assert_eq!(millis_text(Duration::from_micros(500)), "0.5");
    }
}
