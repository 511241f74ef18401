//! The status page: uptime and error budget by tier over the status
//! period, and recent incidents, as JSON and as a small self-contained
//! HTML page (no scripts, no external assets) fit to show customers.

use levee_proxy::slo_engine::{SloReport, TierStatus};
use levee_proxy::Gateway;
use serde::Serialize;
use std::fmt::Write as _;

/// Incidents the page lists.
const RECENT_INCIDENTS: usize = 10;

/// What the status page shows.
#[derive(Debug, Serialize)]
pub(crate) struct StatusPage {
    title: String,
    /// `operational`, `degraded`, `outage` or `no_data`: the worst tier.
    status: &'static str,
    evaluated_at: Option<String>,
    tiers: Vec<TierStatus>,
    incidents: Vec<PublicIncident>,
}

/// An incident as customers see it.
#[derive(Debug, Serialize)]
struct PublicIncident {
    id: u64,
    /// The affected SLO.
    service: String,
    state: &'static str,
    start: String,
    recover: Option<String>,
    resolve: Option<String>,
    duration_seconds: Option<f64>,
}

impl StatusPage {
    pub(crate) fn of(gateway: &Gateway) -> Self {
        let report: std::sync::Arc<SloReport> = gateway.slo_report();
        let config = gateway.config();
        let rank = |s: &str| match s {
            "outage" => 3,
            "degraded" => 2,
            "operational" => 1,
            _ => 0,
        };
        let status = report
            .tiers
            .iter()
            .map(|t| t.status)
            .max_by_key(|s| rank(s))
            .unwrap_or("no_data");
        Self {
            title: config.status_page.title.clone(),
            status,
            evaluated_at: report.evaluated_at.clone(),
            tiers: report.tiers.clone(),
            incidents: report
                .incidents
                .iter()
                .take(RECENT_INCIDENTS)
                .map(|i| PublicIncident {
                    id: i.id,
                    service: i.slo.clone(),
                    state: i.state,
                    start: i.start.clone(),
                    recover: i.recover.clone(),
                    resolve: i.resolve.clone(),
                    duration_seconds: i.time_to_recover_seconds,
                })
                .collect(),
        }
    }

    pub(crate) fn html(&self) -> String {
        let mut out = String::with_capacity(4096);
        let title = escape(&self.title);
        let _ = write!(
            out,
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
             <meta http-equiv=\"refresh\" content=\"30\"><title>{title}</title>\
             <style>body{{font:16px/1.5 system-ui,sans-serif;max-width:44rem;margin:2rem auto;padding:0 1rem;color:#222}}\
             .operational{{color:#1a7f37}}.degraded{{color:#9a6700}}.outage{{color:#cf222e}}.no_data{{color:#666}}\
             table{{border-collapse:collapse;width:100%}}td,th{{text-align:left;padding:.3rem .5rem;border-bottom:1px solid #ddd}}</style>\
             </head><body><h1>{title}</h1><p class=\"{s}\"><strong>{}</strong></p>",
            headline(self.status),
            s = self.status,
        );
        out.push_str("<h2>Uptime</h2><table><tr><th>Service tier</th><th>Status</th><th>Uptime</th><th>Objective</th><th>Error budget left</th></tr>");
        for t in &self.tiers {
            let _ = write!(
                out,
                "<tr><td>{}</td><td class=\"{}\">{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                t.tier,
                t.status,
                t.status.replace('_', " "),
                t.uptime.map_or("–".to_string(), |u| format!(
                    "{:.3}% over {}",
                    u * 100.0,
                    t.period
                )),
                format_args!("{:.3}%", t.objective * 100.0),
                t.budget
                    .remaining_text
                    .as_deref()
                    .map_or("–".to_string(), |r| format!("{} of downtime", escape(r))),
            );
        }
        out.push_str("</table><h2>Recent incidents</h2>");
        if self.incidents.is_empty() {
            out.push_str("<p>No incidents.</p>");
        } else {
            out.push_str("<table><tr><th>#</th><th>Service</th><th>State</th><th>Started</th><th>Recovered</th></tr>");
            for i in &self.incidents {
                let _ = write!(
                    out,
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    i.id,
                    escape(&i.service),
                    i.state,
                    escape(&i.start),
                    escape(i.recover.as_deref().unwrap_or("–")),
                );
            }
            out.push_str("</table>");
        }
        let _ = writeln!(
            out,
            "<p><small>Updated {}</small></p></body></html>",
            escape(self.evaluated_at.as_deref().unwrap_or("–"))
        );
        out
    }
}

fn headline(status: &str) -> &'static str {
    match status {
        "operational" => "All systems operational",
        "degraded" => "Degraded performance",
        "outage" => "Service outage",
        _ => "No data yet",
    }
}

/// HTML-escapes text (config titles and SLO names come from operators,
/// but the page must stay well-formed whatever they hold).
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            escape("<a href='x'>&\"</a>"),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;&lt;/a&gt;"
        );
    }
}
