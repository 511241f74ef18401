//! The status page: uptime and error budget by tier over the status
//! period, and recent incidents, as JSON and as a small self-contained
//! HTML page (no scripts, no external assets) fit to show customers.
//!
//! Both are built here from the SLO report and the config, and both say
//! only what a customer should read: incidents are named by their SLO's
//! `display_name` (or its route, cluster or tier), never by its internal
//! id; budgets stop at zero ("budget exhausted"), never below; times and
//! durations read as "3 Dec 2026, 14:05 UTC" and "1 h 4 min"; and a tier
//! with too little traffic for an uptime figure says "No data yet" (the
//! rule is the engine's, see [`levee_control::slo::TIER_MIN_EVENTS`]).

use levee_config::{Config, Slo, Tier};
use levee_control::slo::{IncidentStatus, SloReport, TierStatus};
use levee_control::Control;
use levee_proxy::Gateway;
use serde::Serialize;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::Duration;

/// Incidents the page lists.
const RECENT_INCIDENTS: usize = 10;

/// How an incident of an SLO no longer in the config is named.
const RETIRED_SERVICE: &str = "Retired service";

const NO_DATA: &str = "No data yet";

/// What the status page shows.
#[derive(Debug, Serialize)]
pub(crate) struct StatusPage {
    title: String,
    /// `operational`, `degraded`, `outage` or `no_data`: the worst tier
    /// shown, `no_data` when none has enough data.
    status: &'static str,
    /// The status as a sentence ("All systems operational"; "An incident
    /// is ongoing" when one is and no tier says worse).
    headline: &'static str,
    /// No tier shown has enough data for an uptime yet.
    no_data: bool,
    /// When the figures were computed (RFC 3339), absent before the first
    /// evaluation.
    evaluated_at: Option<String>,
    /// The same, readable ("3 Dec 2026, 14:05 UTC").
    evaluated_at_text: Option<String>,
    tiers: Vec<PublicTier>,
    incidents: Vec<PublicIncident>,
}

/// One tier as customers see it.
#[derive(Debug, Serialize)]
struct PublicTier {
    /// `core` or `optional`.
    tier: &'static str,
    /// "Core services".
    name: &'static str,
    /// `operational`, `degraded`, `outage` or `no_data`.
    status: &'static str,
    /// Too little traffic yet for an uptime (the uptime and budget are
    /// then absent).
    no_data: bool,
    /// Good / all requests over what has been observed of the period.
    uptime: Option<f64>,
    /// "99.95% over 30 days", "98.667% over the last 12 min" or
    /// "No data yet".
    uptime_text: String,
    /// The objective, as a ratio.
    objective: f64,
    /// The objective as text ("99.9%").
    objective_text: String,
    /// The status period ("30 days").
    period: String,
    /// Share of the budget left, from 1 down to 0 (never below).
    budget_remaining_ratio: Option<f64>,
    /// Downtime left in the period, in seconds, never below 0.
    budget_remaining_seconds: Option<f64>,
    /// The budget is spent.
    budget_exhausted: bool,
    /// "1 h 4 min of downtime left", "Budget exhausted" or "No data yet".
    budget_text: String,
}

/// An incident as customers see it.
#[derive(Debug, Serialize)]
struct PublicIncident {
    /// Its number.
    id: u64,
    /// What was affected: the SLO's display name, or its route, cluster
    /// or tier.
    service: String,
    /// `ongoing` or `resolved` (service back to normal).
    state: &'static str,
    /// When it began (RFC 3339).
    start: String,
    /// The same, readable.
    start_text: String,
    /// When service was back to normal (RFC 3339).
    recover: Option<String>,
    /// The same, readable.
    recover_text: Option<String>,
    /// From start to recovery, in seconds.
    duration_seconds: Option<f64>,
    /// "1 h 4 min", or "Ongoing".
    duration_text: String,
}

impl StatusPage {
    pub(crate) fn of(control: &Control, gateway: &Gateway) -> Self {
        Self::build(&control.slo_report(), &gateway.config())
    }

    /// The page for `report` under `config`.
    fn build(report: &SloReport, config: &Config) -> Self {
        let rank = |s: &str| match s {
            "outage" => 3,
            "degraded" => 2,
            "operational" => 1,
            _ => 0,
        };
        let tiers: Vec<PublicTier> = report
            .tiers
            .iter()
            .filter(|t| t.events > 0 || has_routes(config, t.tier))
            .map(|t| PublicTier::of(t, config))
            .collect();
        let status = tiers
            .iter()
            .map(|t| t.status)
            .max_by_key(|s| rank(s))
            .unwrap_or("no_data");
        let names = public_names(config);
        let incidents: Vec<PublicIncident> = report
            .incidents
            .iter()
            .take(RECENT_INCIDENTS)
            .map(|i| PublicIncident::of(i, &names))
            .collect();
        // An ongoing incident outweighs "operational" or too little data
        // in the headline; the tiers keep their own figures.
        let ongoing = incidents.iter().any(|i| i.state == "ongoing");
        let headline = match status {
            "operational" | "no_data" if ongoing => "An incident is ongoing",
            s => headline(s),
        };
        Self {
            title: config.status_page.title.clone(),
            status,
            headline,
            no_data: tiers.iter().all(|t| t.no_data),
            evaluated_at: report.evaluated_at.clone(),
            evaluated_at_text: report.evaluated_at.as_deref().map(readable_time),
            tiers,
            incidents,
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
             <style>body{{font:16px/1.5 system-ui,sans-serif;max-width:48rem;margin:2rem auto;padding:0 1rem;color:#222}}\
             .operational{{color:#1a7f37}}.degraded{{color:#9a6700}}.outage{{color:#cf222e}}.no_data{{color:#666}}\
             table{{border-collapse:collapse;width:100%}}td,th{{text-align:left;padding:.3rem .5rem;border-bottom:1px solid #ddd}}</style>\
             </head><body><h1>{title}</h1><p class=\"{s}\"><strong>{}</strong></p>",
            self.headline,
            s = self.status,
        );
        out.push_str(
            "<h2>Uptime</h2><table><tr><th>Service</th><th>Status</th><th>Uptime</th>\
             <th>Objective</th><th>Error budget</th></tr>",
        );
        for t in &self.tiers {
            let _ = write!(
                out,
                "<tr><td>{}</td><td class=\"{}\">{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                t.name,
                t.status,
                status_text(t.status),
                escape(&t.uptime_text),
                escape(&t.objective_text),
                escape(&t.budget_text),
            );
        }
        out.push_str("</table><h2>Recent incidents</h2>");
        if self.incidents.is_empty() {
            out.push_str("<p>No incidents.</p>");
        } else {
            out.push_str(
                "<table><tr><th>Service</th><th>Status</th><th>Started</th><th>Duration</th></tr>",
            );
            for i in &self.incidents {
                let _ = write!(
                    out,
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    escape(&i.service),
                    if i.state == "ongoing" {
                        "Ongoing"
                    } else {
                        "Resolved"
                    },
                    escape(&i.start_text),
                    escape(&i.duration_text),
                );
            }
            out.push_str("</table>");
        }
        let updated = self
            .evaluated_at_text
            .as_deref()
            .map_or("Waiting for the first update".to_string(), |t| {
                format!("Updated {}", escape(t))
            });
        let _ = writeln!(out, "<p><small>{updated}</small></p></body></html>");
        out
    }
}

impl PublicTier {
    fn of(t: &TierStatus, config: &Config) -> Self {
        let period = config.status_page.period;
        let observed = Duration::from_secs_f64(t.observed_seconds.max(0.0));
        let uptime = t.uptime.filter(|_| !t.no_data);
        let uptime_text = match uptime {
            None => NO_DATA.to_string(),
            Some(u) if observed < period => format!(
                "{} over the last {}",
                percent_floor(u),
                readable_duration(observed)
            ),
            Some(u) => format!("{} over {}", percent_floor(u), readable_duration(period)),
        };
        let (ratio, seconds) = if t.no_data {
            (None, None)
        } else {
            (
                t.budget.remaining_ratio.map(|r| r.clamp(0.0, 1.0)),
                t.budget.remaining_seconds.map(|s| s.max(0.0)),
            )
        };
        let exhausted = seconds.is_some_and(|s| s < 1.0);
        let budget_text = match seconds {
            None => NO_DATA.to_string(),
            Some(_) if exhausted => "Budget exhausted".to_string(),
            Some(s) => format!(
                "{} of downtime left",
                readable_duration(Duration::from_secs_f64(s))
            ),
        };
        Self {
            tier: t.tier,
            name: match t.tier {
                "optional" => "Optional services",
                _ => "Core services",
            },
            status: t.status,
            no_data: t.no_data,
            uptime,
            uptime_text,
            objective: t.objective,
            objective_text: percent_exact(t.objective),
            period: readable_duration(period),
            budget_remaining_ratio: ratio,
            budget_remaining_seconds: seconds,
            budget_exhausted: exhausted,
            budget_text,
        }
    }
}

impl PublicIncident {
    fn of(i: &IncidentStatus, names: &HashMap<&str, String>) -> Self {
        let resolved = matches!(i.state, "recovered" | "closed");
        let duration = i.time_to_recover_seconds.filter(|_| resolved);
        Self {
            id: i.id,
            service: names
                .get(i.slo.as_str())
                .cloned()
                .unwrap_or_else(|| RETIRED_SERVICE.to_string()),
            state: if resolved { "resolved" } else { "ongoing" },
            start: i.start.clone(),
            start_text: readable_time(&i.start),
            recover: i.recover.clone().filter(|_| resolved),
            recover_text: i.recover.as_deref().filter(|_| resolved).map(readable_time),
            duration_seconds: duration,
            duration_text: duration.map_or("Ongoing".to_string(), |s| {
                readable_duration(Duration::from_secs_f64(s.max(0.0)))
            }),
        }
    }
}

/// Whether any route of the config is of `tier` (`core`, `optional`): a
/// tier no route has stays off the page until it sees traffic.
fn has_routes(config: &Config, tier: &str) -> bool {
    config.routes.iter().any(|r| {
        matches!(
            (r.tier, tier),
            (Tier::Core, "core") | (Tier::Optional, "optional")
        )
    })
}

/// The public name of each configured objective id.
fn public_names(config: &Config) -> HashMap<&str, String> {
    config
        .slos
        .iter()
        .flat_map(|slo| {
            let name = public_name(slo);
            slo.objectives
                .iter()
                .map(move |o| (o.id.as_str(), name.clone()))
        })
        .collect()
}

/// What customers call an SLO's service: its display name, else its
/// route, cluster or tier. Never its `name`, which is for operators.
fn public_name(slo: &Slo) -> String {
    if let Some(name) = &slo.display_name {
        return name.clone();
    }
    let scope = &slo.scope;
    if let Some(route) = scope.route.as_ref().or(scope.cluster.as_ref()) {
        return route.clone();
    }
    match scope.tier {
        Some(Tier::Optional) => "Optional services".to_string(),
        Some(Tier::Core) => "Core services".to_string(),
        None => "All services".to_string(),
    }
}

fn headline(status: &str) -> &'static str {
    match status {
        "operational" => "All systems operational",
        "degraded" => "Degraded performance",
        "outage" => "Service outage",
        _ => NO_DATA,
    }
}

fn status_text(status: &str) -> &'static str {
    match status {
        "operational" => "Operational",
        "degraded" => "Degraded",
        "outage" => "Outage",
        _ => NO_DATA,
    }
}

/// A ratio as a percentage floored to a thousandth of a percent, so that
/// any failure shows below 100 % ("99.999%" rather than "100.000%").
fn percent_floor(ratio: f64) -> String {
    // The small addend keeps binary rounding (0.987 × 10⁵ = 98 699.99…)
    // from taking a thousandth off a figure that is exact.
    let milli = (ratio.clamp(0.0, 1.0) * 100_000.0 + 1e-6).floor() as u64;
    if milli == 100_000 {
        return "100%".to_string();
    }
    format!("{}.{:03}%", milli / 1000, milli % 1000)
}

/// An objective as written ("99.9%", "99.95%").
fn percent_exact(ratio: f64) -> String {
    let s = format!("{:.4}", ratio * 100.0);
    let s = s.trim_end_matches('0').trim_end_matches('.');
    format!("{s}%")
}

/// "3 Dec 2026, 14:05 UTC" from Levee's RFC 3339 UTC times
/// (`2026-12-03T14:05:09.000Z`); the input unchanged if it is not one.
fn readable_time(rfc3339: &str) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let field = |range: std::ops::Range<usize>| -> Option<usize> {
        rfc3339.get(range).and_then(|s| s.parse().ok())
    };
    let parsed = (|| {
        let b = rfc3339.as_bytes();
        if b.len() < 17 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' {
            return None;
        }
        let month = MONTHS.get(field(5..7)?.checked_sub(1)?)?;
        Some(format!(
            "{} {month} {}, {:02}:{:02} UTC",
            field(8..10)?,
            field(0..4)?,
            field(11..13)?,
            field(14..16)?
        ))
    })();
    parsed.unwrap_or_else(|| rfc3339.to_string())
}

/// "1 h 4 min", "3 days 2 h", "42 s": the two largest units, rounded
/// down, as customers read durations.
fn readable_duration(d: Duration) -> String {
    let s = d.as_secs();
    let (days, h, m, sec) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    let unit = |n: u64, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    match (days, h, m) {
        (0, 0, 0) if sec == 0 => "less than 1 s".to_string(),
        (0, 0, 0) => format!("{sec} s"),
        (0, 0, _) if sec == 0 => format!("{m} min"),
        (0, 0, _) => format!("{m} min {sec} s"),
        (0, _, 0) => format!("{h} h"),
        (0, _, _) => format!("{h} h {m} min"),
        (_, 0, _) => unit(days, "day", "days"),
        _ => format!("{} {h} h", unit(days, "day", "days")),
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
    use super::*;
    use levee_control::slo::BudgetStatus;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            escape("<a href='x'>&\"</a>"),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;&lt;/a&gt;"
        );
    }

    #[test]
    fn times_and_durations_read_well() {
        assert_eq!(
            readable_time("2026-12-03T14:05:09.123Z"),
            "3 Dec 2026, 14:05 UTC"
        );
        assert_eq!(
            readable_time("2027-01-31T00:00:00.000Z"),
            "31 Jan 2027, 00:00 UTC"
        );
        assert_eq!(readable_time("not a time"), "not a time");
        let secs = Duration::from_secs;
        assert_eq!(readable_duration(secs(3_840)), "1 h 4 min");
        assert_eq!(readable_duration(secs(3_600)), "1 h");
        assert_eq!(readable_duration(secs(90)), "1 min 30 s");
        assert_eq!(readable_duration(secs(720)), "12 min");
        assert_eq!(readable_duration(secs(42)), "42 s");
        assert_eq!(
            readable_duration(Duration::from_millis(300)),
            "less than 1 s"
        );
        assert_eq!(readable_duration(secs(30 * 86_400)), "30 days");
        assert_eq!(readable_duration(secs(86_400 + 7_200 + 60)), "1 day 2 h");
        assert_eq!(percent_floor(0.999_996), "99.999%");
        assert_eq!(percent_floor(1.0), "100%");
        assert_eq!(percent_floor(0.986_67), "98.667%");
        assert_eq!(percent_floor(0.987), "98.700%");
        assert_eq!(percent_exact(0.999), "99.9%");
        assert_eq!(percent_exact(0.9995), "99.95%");
    }

    fn config() -> Config {
        levee_config::load_str(
            r#"
[[listeners]]
name = "public"
listen = "127.0.0.1:0"
[[routes]]
name = "checkout"
cluster = "shop"
tier = "core"
[[clusters]]
name = "shop"
endpoints = ["127.0.0.1:9"]
[[slos]]
name = "checkout-availability"
display_name = "Checkout"
sli = "availability"
route = "checkout"
objective = "99.9%"
[[slos]]
name = "shop-latency"
sli = "latency"
cluster = "shop"
objectives = [{ threshold = "1s", objective = "99%" }]
[[slos]]
name = "core-availability"
sli = "availability"
tier = "core"
objective = "99%"
"#,
            levee_config::Format::Toml,
            "t.toml",
        )
        .unwrap()
    }

    fn tier(
        events: u64,
        no_data: bool,
        remaining_seconds: f64,
        remaining_ratio: f64,
    ) -> TierStatus {
        TierStatus {
            tier: "core",
            period: "30d".to_string(),
            uptime: Some(0.987),
            objective: 0.999,
            budget: BudgetStatus {
                remaining_ratio: Some(remaining_ratio),
                remaining_seconds: Some(remaining_seconds),
                remaining_text: Some("-1d 1h".to_string()),
                ..BudgetStatus::default()
            },
            status: if no_data { "no_data" } else { "degraded" },
            events,
            no_data,
            observed_seconds: 720.0,
        }
    }

    fn incident(id: u64, slo: &str, state: &'static str) -> IncidentStatus {
        IncidentStatus {
            id,
            slo: slo.to_string(),
            severity: "page".to_string(),
            state,
            start: "2026-12-03T14:05:09.000Z".to_string(),
            start_clipped: false,
            detect: "2026-12-03T14:06:00.000Z".to_string(),
            recover: Some("2026-12-03T15:09:09.000Z".to_string()),
            resolve: None,
            time_to_detect_seconds: 51.0,
            time_to_recover_seconds: Some(3_840.0),
            bad_events: 10,
            budget_spent_ratio: 0.1,
            runbook: Some("https://runbooks.example.com/x".to_string()),
            labels: Default::default(),
            workflow: "triggered",
            acknowledged: None,
            resolved_by: None,
            notes: Vec::new(),
            time_to_acknowledge_seconds: None,
        }
    }

    /// An overspent budget is shown as exhausted, at zero, never negative,
    /// in the JSON and on the page; incidents carry public names only.
    #[test]
    fn budgets_stop_at_zero_and_incidents_have_public_names() {
        let report = SloReport {
            evaluated_at: Some("2026-12-03T15:10:00.000Z".to_string()),
            tiers: vec![tier(5_000, false, -3_840.0, -11.5)],
            incidents: vec![
                incident(4, "checkout-availability", "open"),
                incident(3, "shop-latency:1s", "closed"),
                incident(2, "core-availability", "recovered"),
                incident(1, "gone", "closed"),
            ],
            ..SloReport::default()
        };
        let page = StatusPage::build(&report, &config());
        let json = serde_json::to_value(&page).unwrap();
        let t = &json["tiers"][0];
        assert_eq!(t["budget_remaining_seconds"], 0.0, "{json:#}");
        assert_eq!(t["budget_remaining_ratio"], 0.0);
        assert_eq!(t["budget_exhausted"], true);
        assert_eq!(t["budget_text"], "Budget exhausted");
        assert_eq!(t["uptime_text"], "98.700% over the last 12 min");
        assert_eq!(t["objective_text"], "99.9%");
        assert_eq!(json["no_data"], false);
        assert_eq!(json["evaluated_at_text"], "3 Dec 2026, 15:10 UTC");
        let services: Vec<&str> = json["incidents"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["service"].as_str().unwrap())
            .collect();
        assert_eq!(
            services,
            ["Checkout", "shop", "Core services", RETIRED_SERVICE]
        );
        assert_eq!(json["incidents"][0]["state"], "ongoing");
        assert_eq!(json["incidents"][0]["duration_text"], "Ongoing");
        assert!(json["incidents"][0]["recover"].is_null());
        assert_eq!(json["incidents"][1]["state"], "resolved");
        assert_eq!(json["incidents"][1]["duration_text"], "1 h 4 min");
        assert_eq!(json["incidents"][1]["start_text"], "3 Dec 2026, 14:05 UTC");
        let text = json.to_string();
        for internal in ["checkout-availability", "shop-latency", "runbook", "-1d"] {
            assert!(!text.contains(internal), "{internal} leaked: {text}");
        }
        let html = page.html();
        assert!(html.contains("Budget exhausted"), "{html}");
        assert!(!html.contains("-1d") && !html.contains("checkout-availability"));
    }

    /// A tier without enough data shows "No data yet", not 100 %; a tier
    /// no route has and no request reached is left off the page.
    #[test]
    fn too_little_data_reads_no_data_yet() {
        let mut optional = tier(0, true, 0.0, 1.0);
        optional.tier = "optional";
        optional.uptime = None;
        let report = SloReport {
            tiers: vec![tier(40, true, 2_000.0, 1.0), optional],
            ..SloReport::default()
        };
        let page = StatusPage::build(&report, &config());
        let json = serde_json::to_value(&page).unwrap();
        assert_eq!(json["tiers"].as_array().unwrap().len(), 1, "{json:#}");
        let core = &json["tiers"][0];
        assert_eq!(core["uptime"], serde_json::Value::Null);
        assert_eq!(core["uptime_text"], NO_DATA);
        assert_eq!(core["budget_text"], NO_DATA);
        assert_eq!(json["no_data"], true);
        assert_eq!(json["status"], "no_data");
        let html = page.html();
        assert!(html.contains(NO_DATA), "{html}");
        assert!(
            !html.contains("100%<") && !html.contains("100% over"),
            "{html}"
        );
        assert!(html.contains("Waiting for the first update"));

        let with_incident = SloReport {
            tiers: vec![tier(40, true, 2_000.0, 1.0)],
            incidents: vec![incident(1, "checkout-availability", "open")],
            ..SloReport::default()
        };
        let page = StatusPage::build(&with_incident, &config());
        assert_eq!(page.headline, "An incident is ongoing");
        assert_eq!(page.status, "no_data");
    }
}
