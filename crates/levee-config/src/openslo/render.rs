//! Writing imported SLOs as TOML for a Levee config: a header naming the
//! input, then one `[[slos]]` entry per SLO, each after `#` notes on what was
//! approximated or left out. Numbers are written from Levee's integers
//! (ppm, thousandths), never through a float.

use super::map::{Budgeting, Entry, Period, SliKind};
use crate::format_duration;
use std::fmt::Write as _;
use std::time::Duration;

/// A duration as Levee's config writes it, with zero as `0s`.
pub(super) fn duration_text(d: Duration) -> String {
    if d.is_zero() {
        "0s".into()
    } else {
        format_duration(d)
    }
}

/// An objective in ppm as Levee's percent text: 999_500 is `99.95%`.
fn percent_text(ppm: u32) -> String {
    let (whole, frac) = (ppm / 10_000, ppm % 10_000);
    if frac == 0 {
        format!("{whole}%")
    } else {
        let digits = format!("{frac:04}");
        format!("{whole}.{}%", digits.trim_end_matches('0'))
    }
}

/// A burn-rate factor in thousandths as a TOML float: 14_400 is `14.4`.
pub(super) fn factor_text(milli: u32) -> String {
    let (whole, frac) = (milli / 1000, milli % 1000);
    let digits = format!("{frac:03}");
    let frac = digits.trim_end_matches('0');
    format!("{whole}.{}", if frac.is_empty() { "0" } else { frac })
}

/// A TOML basic string, quoted and escaped.
fn toml_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Text made safe for one `#` comment line.
fn comment(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

pub(super) fn render(file: &str, header_notes: &[String], entries: &[Entry]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Levee SLOs imported from {} by `levee slo import`.",
        comment(file)
    );
    out.push_str("# Add them to a Levee config; `levee check -c CONFIG` then checks that the\n");
    out.push_str("# routes and clusters they name exist.\n");
    for note in header_notes {
        let _ = writeln!(out, "# Note: {}", comment(note));
    }
    for e in entries {
        out.push('\n');
        let _ = writeln!(out, "# From {}.", comment(&e.origin));
        for note in &e.notes {
            let _ = writeln!(out, "# Note: {}", comment(note));
        }
        out.push_str("[[slos]]\n");
        let _ = writeln!(out, "name = {}", toml_str(&e.name));
        if let Some(d) = &e.description {
            let _ = writeln!(out, "description = {}", toml_str(d));
        }
        let sli = match e.indicator.kind {
            SliKind::Availability { .. } => "availability",
            _ => "latency",
        };
        let _ = writeln!(out, "sli = {}", toml_str(sli));
        let scope = &e.indicator.scope;
        for (key, value) in [
            ("route", &scope.route),
            ("tier", &scope.tier),
            ("tenant", &scope.tenant),
            ("cluster", &scope.cluster),
        ] {
            if let Some(v) = value {
                let _ = writeln!(out, "{key} = {}", toml_str(v));
            }
        }
        match e.objectives.as_slice() {
            [(threshold, ppm)] => {
                if let Some(t) = threshold {
                    let _ = writeln!(out, "threshold = {}", toml_str(&format_duration(*t)));
                }
                let _ = writeln!(out, "objective = {}", toml_str(&percent_text(*ppm)));
            }
            many => {
                let items: Vec<String> = many
                    .iter()
                    .map(|(t, ppm)| {
                        format!(
                            "{{ threshold = {}, objective = {} }}",
                            toml_str(&t.map_or_else(String::new, format_duration)),
                            toml_str(&percent_text(*ppm))
                        )
                    })
                    .collect();
                let _ = writeln!(out, "objectives = [{}]", items.join(", "));
            }
        }
        match e.period {
            Some(Period::Rolling(d)) => {
                let _ = writeln!(out, "period = {}", toml_str(&format_duration(d)));
            }
            Some(Period::CalendarMonth) => out.push_str("period = \"calendar_month\"\n"),
            None => {}
        }
        match e.budgeting {
            Budgeting::Occurrences => {}
            Budgeting::Timeslices { slice, target_ppm } => {
                out.push_str("budgeting = \"timeslices\"\n");
                let _ = writeln!(out, "timeslice = {}", toml_str(&format_duration(slice)));
                let _ = writeln!(
                    out,
                    "timeslice_target = {}",
                    toml_str(&percent_text(target_ppm))
                );
            }
            Budgeting::RatioTimeslices { slice } => {
                out.push_str("budgeting = \"ratio_timeslices\"\n");
                let _ = writeln!(out, "timeslice = {}", toml_str(&format_duration(slice)));
            }
        }
        if let SliKind::Availability {
            rate_limited_is_bad: Some(b),
        } = e.indicator.kind
        {
            let _ = writeln!(out, "rate_limited_is_bad = {b}");
        }
        if let Some(r) = &e.runbook {
            let _ = writeln!(out, "runbook = {}", toml_str(r));
        }
        if !e.labels.is_empty() {
            let items: Vec<String> = e
                .labels
                .iter()
                .map(|(k, v)| format!("{k} = {}", toml_str(v)))
                .collect();
            let _ = writeln!(out, "labels = {{ {} }}", items.join(", "));
        }
        if let Some(a) = &e.alerting {
            let rules = |list: &[(Duration, Duration, u32)]| {
                let items: Vec<String> = list
                    .iter()
                    .map(|(long, short, f)| {
                        format!(
                            "{{ long = {}, short = {}, factor = {} }}",
                            toml_str(&format_duration(*long)),
                            toml_str(&format_duration(*short)),
                            factor_text(*f)
                        )
                    })
                    .collect();
                format!("[{}]", items.join(", "))
            };
            let _ = writeln!(
                out,
                "alerting = {{ pending_for = {}, page = {}, ticket = {} }}",
                toml_str(&duration_text(a.pending_for)),
                rules(&a.page),
                rules(&a.ticket)
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_as_levee_writes_them() {
        assert_eq!(percent_text(999_000), "99.9%");
        assert_eq!(percent_text(999_950), "99.995%");
        assert_eq!(percent_text(900_000), "90%");
        assert_eq!(percent_text(1), "0.0001%");
        assert_eq!(factor_text(14_400), "14.4");
        assert_eq!(factor_text(2_000), "2.0");
        assert_eq!(factor_text(1), "0.001");
        assert_eq!(duration_text(Duration::ZERO), "0s");
    }

    #[test]
    fn toml_strings_escape() {
        assert_eq!(toml_str("a\"b\\c\nd\u{1}"), "\"a\\\"b\\\\c\\nd\\u0001\"");
    }
}
