//! The status page: what operators posted (incidents with their updates,
//! scheduled maintenance), components by tier, uptime and error budget by
//! tier over the status period, and recent incidents, as JSON and as a
//! small self-contained HTML page (no scripts, no external assets) fit to
//! show customers. The Atom feed and the Statuspage-style summary
//! (`status_feed`) are built from the same [`StatusPage`], so no view can
//! show more than the page does.
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
use levee_control::status_board::{Impact, Post, PostKind};
use levee_control::Control;
use levee_core::markup::escape;
use levee_core::Nanos;
use levee_proxy::Gateway;
use serde::Serialize;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::Duration;

/// Incidents the page lists.
const RECENT_INCIDENTS: usize = 10;

/// Settled posts stay on the page this long (as "past incidents").
const PAST_POSTS: Nanos = 7 * 86_400 * 1_000_000_000;

/// How an incident of an SLO no longer in the config is named.
const RETIRED_SERVICE: &str = "Retired service";

const NO_DATA: &str = "No data yet";

/// What the status page shows.
#[derive(Debug, Serialize)]
pub(crate) struct StatusPage {
    pub(crate) title: String,
    /// `operational`, `degraded`, `outage` or `no_data`: the worst tier
    /// shown, `no_data` when none has enough data.
    pub(crate) status: &'static str,
    /// The status as a sentence ("All systems operational"; "An incident
    /// is ongoing" when one is and no tier says worse).
    pub(crate) headline: &'static str,
    /// No tier shown has enough data for an uptime yet.
    pub(crate) no_data: bool,
    /// When the figures were computed (RFC 3339), absent before the first
    /// evaluation.
    pub(crate) evaluated_at: Option<String>,
    /// The same, readable ("3 Dec 2026, 14:05 UTC").
    pub(crate) evaluated_at_text: Option<String>,
    pub(crate) tiers: Vec<PublicTier>,
    pub(crate) incidents: Vec<PublicIncident>,
    /// Components (services) grouped by tier, with their status now.
    pub(crate) components: Vec<ComponentGroup>,
    /// What operators posted: open incidents and maintenances not over,
    /// then those settled in the last 7 days; newest first in each part.
    pub(crate) posts: Vec<PublicPost>,
    /// The worst of the open posts and components: `none`, `minor`,
    /// `major`, `critical`, or `maintenance` when a maintenance is under
    /// way and nothing is worse (Statuspage's indicator).
    pub(crate) indicator: &'static str,
    /// When the page last changed (RFC 3339): the newest of the
    /// evaluation and the posts.
    pub(crate) updated_at: Option<String>,
}

/// The components of one tier.
#[derive(Debug, Serialize)]
pub(crate) struct ComponentGroup {
    /// `core` or `optional`.
    pub(crate) tier: &'static str,
    /// "Core services".
    pub(crate) name: &'static str,
    pub(crate) components: Vec<PublicComponent>,
}

/// One service as customers see it.
#[derive(Debug, Serialize)]
pub(crate) struct PublicComponent {
    /// A stable slug of its public name.
    pub(crate) id: String,
    /// Its public name (an SLO's display name, or its route or cluster).
    pub(crate) name: String,
    /// `operational`, `under_maintenance`, `degraded_performance`,
    /// `partial_outage` or `major_outage` (Statuspage's words).
    pub(crate) status: &'static str,
    /// The same, readable.
    pub(crate) status_text: &'static str,
}

/// An operator's post as customers see it.
#[derive(Debug, Serialize)]
pub(crate) struct PublicPost {
    pub(crate) id: u64,
    /// `incident` or `maintenance`.
    pub(crate) kind: &'static str,
    pub(crate) title: String,
    /// `none`, `minor`, `major` or `critical`; `maintenance` for one.
    pub(crate) impact: &'static str,
    /// Its state now: `investigating`, `identified`, `monitoring`,
    /// `resolved`; `scheduled`, `in_progress`, `verifying`, `completed`,
    /// `cancelled`.
    pub(crate) status: String,
    pub(crate) status_text: &'static str,
    /// Public names of what it affects ("All services" when it names none).
    pub(crate) components: Vec<String>,
    pub(crate) created_at: String,
    pub(crate) updated_at: String,
    /// When it was resolved, completed or cancelled.
    pub(crate) settled_at: Option<String>,
    /// A maintenance's window.
    pub(crate) starts_at: Option<String>,
    pub(crate) starts_at_text: Option<String>,
    pub(crate) ends_at: Option<String>,
    pub(crate) ends_at_text: Option<String>,
    /// A maintenance whose requests do not count against the error budget
    /// (the page says so).
    pub(crate) excluded_from_budget: bool,
    /// Newest first.
    pub(crate) updates: Vec<PublicUpdate>,
}

/// One update of a post.
#[derive(Debug, Serialize)]
pub(crate) struct PublicUpdate {
    pub(crate) status: String,
    pub(crate) status_text: &'static str,
    pub(crate) message: String,
    pub(crate) at: String,
    pub(crate) at_text: String,
}

/// One tier as customers see it.
#[derive(Debug, Serialize)]
pub(crate) struct PublicTier {
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
pub(crate) struct PublicIncident {
    /// Its number.
    pub(crate) id: u64,
    /// What was affected: the SLO's display name, or its route, cluster
    /// or tier.
    pub(crate) service: String,
    /// `ongoing` or `resolved` (service back to normal).
    pub(crate) state: &'static str,
    /// When it began (RFC 3339).
    pub(crate) start: String,
    /// The same, readable.
    pub(crate) start_text: String,
    /// When service was back to normal (RFC 3339).
    pub(crate) recover: Option<String>,
    /// The same, readable.
    pub(crate) recover_text: Option<String>,
    /// From start to recovery, in seconds.
    pub(crate) duration_seconds: Option<f64>,
    /// "1 h 4 min", or "Ongoing".
    pub(crate) duration_text: String,
}

impl StatusPage {
    pub(crate) fn of(control: &Control, gateway: &Gateway) -> Self {
        Self::build(
            &control.slo_report(),
            &gateway.config(),
            &control.status_board().posts(),
            levee_core::time::unix_nanos(),
        )
    }

    /// The page for `report` under `config`, with the operators' `posts`,
    /// at `now`.
    pub(crate) fn build(report: &SloReport, config: &Config, posts: &[Post], now: Nanos) -> Self {
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
        let components = component_groups(report, config, posts, now);
        let shown: Vec<&Post> = shown_posts(posts, now);
        let public_posts: Vec<PublicPost> = shown
            .iter()
            .map(|p| PublicPost::of(p, config, now))
            .collect();
        let worst_impact = shown
            .iter()
            .filter(|p| p.kind == PostKind::Incident && !p.settled(now))
            .map(|p| p.impact)
            .max();
        let maintaining = shown.iter().any(|p| {
            p.kind == PostKind::Maintenance && matches!(p.state(now), "in_progress" | "verifying")
        });
        let worst_component = components
            .iter()
            .flat_map(|g| &g.components)
            .map(|c| component_rank(c.status))
            .max()
            .unwrap_or(0);
        let indicator = indicator(worst_impact, worst_component, maintaining);
        // An ongoing incident outweighs "operational" or too little data
        // in the headline; the tiers keep their own figures.
        let ongoing = incidents.iter().any(|i| i.state == "ongoing") || worst_impact.is_some();
        // The worst of what the tiers measure and what operators posted.
        let headline = match (status, indicator) {
            ("outage", _) => headline("outage"),
            (_, "critical") => "Major outage",
            (_, "major") => "Partial outage",
            ("degraded", _) => headline("degraded"),
            _ if ongoing => "An incident is ongoing",
            (_, "maintenance") => "Maintenance in progress",
            (s, _) => headline(s),
        };
        let updated_at = shown
            .iter()
            .map(|p| p.changed_ns(now))
            .max()
            .map(levee_slo::calendar::rfc3339)
            .into_iter()
            .chain(report.evaluated_at.clone())
            .max();
        Self {
            title: config.status_page.title.clone(),
            status,
            headline,
            no_data: tiers.iter().all(|t| t.no_data),
            evaluated_at: report.evaluated_at.clone(),
            evaluated_at_text: report.evaluated_at.as_deref().map(readable_time),
            tiers,
            incidents,
            components,
            posts: public_posts,
            indicator,
            updated_at,
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
             <link rel=\"alternate\" type=\"application/atom+xml\" title=\"{title}\" href=\"/status/feed.atom\">\
             <style>body{{font:16px/1.5 system-ui,sans-serif;max-width:48rem;margin:2rem auto;padding:0 1rem;color:#222}}\
             .operational{{color:#1a7f37}}.degraded,.degraded_performance,.under_maintenance{{color:#9a6700}}\
             .outage,.partial_outage,.major_outage{{color:#cf222e}}.no_data{{color:#666}}\
             .post{{border-left:4px solid #9a6700;padding:.2rem .8rem;margin:1rem 0}}.post.maintenance{{border-color:#0969da}}\
             .post h3{{margin:.2rem 0}}.post p{{margin:.3rem 0}}\
             table{{border-collapse:collapse;width:100%}}td,th{{text-align:left;padding:.3rem .5rem;border-bottom:1px solid #ddd}}\
             @media (prefers-color-scheme: dark){{body{{background:#111;color:#ddd}}td,th{{border-color:#333}}}}</style>\
             </head><body><h1>{title}</h1><p class=\"{s}\"><strong>{}</strong></p>",
            self.headline,
            s = match self.indicator {
                "critical" => "major_outage",
                "major" => "partial_outage",
                "minor" => "degraded",
                "maintenance" => "under_maintenance",
                _ => self.status,
            },
        );
        let (current, past): (Vec<&PublicPost>, Vec<&PublicPost>) =
            self.posts.iter().partition(|p| p.settled_at.is_none());
        let (incidents, maintenances): (Vec<&PublicPost>, Vec<&PublicPost>) =
            current.into_iter().partition(|p| p.kind == "incident");
        if !incidents.is_empty() {
            out.push_str("<h2>Current incidents</h2>");
            incidents.iter().for_each(|p| post_html(&mut out, p));
        }
        if !maintenances.is_empty() {
            out.push_str("<h2>Scheduled maintenance</h2>");
            maintenances.iter().for_each(|p| post_html(&mut out, p));
        }
        if !self.components.is_empty() {
            out.push_str("<h2>Components</h2><table><tr><th>Service</th><th>Status</th></tr>");
            for g in &self.components {
                let _ = write!(out, "<tr><th colspan=\"2\">{}</th></tr>", g.name);
                for c in &g.components {
                    let _ = write!(
                        out,
                        "<tr><td>{}</td><td class=\"{}\">{}</td></tr>",
                        escape(&c.name),
                        c.status,
                        c.status_text
                    );
                }
            }
            out.push_str("</table>");
        }
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
        if !past.is_empty() {
            out.push_str("<h2>Past incidents and maintenance</h2>");
            past.iter().for_each(|p| post_html(&mut out, p));
        }
        out.push_str("<p><small><a href=\"/status/feed.atom\">Subscribe (Atom)</a></small></p>");
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

/// One post: its title, state, what it affects, its window, and its
/// updates, newest first.
fn post_html(out: &mut String, p: &PublicPost) {
    let _ = write!(
        out,
        "<section class=\"post {}\"><h3>{}</h3><p><strong>{}</strong> &middot; {}</p>",
        p.kind,
        escape(&p.title),
        p.status_text,
        escape(&p.components.join(", ")),
    );
    if let (Some(from), Some(to)) = (&p.starts_at_text, &p.ends_at_text) {
        let _ = write!(out, "<p>Scheduled from {} to {}", escape(from), escape(to));
        if p.excluded_from_budget {
            out.push_str(" (excluded from the error budget)");
        }
        out.push_str("</p>");
    }
    for u in &p.updates {
        let _ = write!(
            out,
            "<p><strong>{}</strong> <small>{}</small><br>{}</p>",
            u.status_text,
            escape(&u.at_text),
            escape(&u.message).replace('\n', "<br>"),
        );
    }
    out.push_str("</section>");
}

/// The posts the page shows: open incidents and maintenances not over,
/// then those settled within [`PAST_POSTS`]; newest first in each part.
fn shown_posts(posts: &[Post], now: Nanos) -> Vec<&Post> {
    let mut open: Vec<&Post> = posts.iter().filter(|p| !p.settled(now)).collect();
    let mut past: Vec<&Post> = posts
        .iter()
        .filter(|p| {
            p.settled_ns(now)
                .is_some_and(|t| now.saturating_sub(t) <= PAST_POSTS)
        })
        .collect();
    // Incidents newest first, then maintenances by start.
    open.sort_by_key(|p| {
        (
            p.kind == PostKind::Maintenance,
            p.window.map_or(0, |w| w.starts_ns),
            std::cmp::Reverse(p.id),
        )
    });
    past.sort_by_key(|p| std::cmp::Reverse(p.settled_ns(now)));
    open.extend(past);
    open
}

impl PublicPost {
    fn of(p: &Post, config: &Config, now: Nanos) -> Self {
        let time = |ns: Nanos| levee_slo::calendar::rfc3339(ns);
        let status = p.state(now).to_string();
        Self {
            id: p.id,
            kind: match p.kind {
                PostKind::Incident => "incident",
                PostKind::Maintenance => "maintenance",
            },
            title: p.title.clone(),
            impact: match p.kind {
                PostKind::Maintenance => "maintenance",
                PostKind::Incident => impact_name(p.impact),
            },
            status_text: post_status_text(&status),
            status,
            components: post_components(p, config),
            created_at: time(p.created_ns),
            updated_at: time(p.changed_ns(now)),
            settled_at: p.settled_ns(now).map(time),
            starts_at: p.window.map(|w| time(w.starts_ns)),
            starts_at_text: p.window.map(|w| readable_time(&time(w.starts_ns))),
            ends_at: p.window.map(|w| time(w.ends_ns)),
            ends_at_text: p.window.map(|w| readable_time(&time(w.ends_ns))),
            excluded_from_budget: p.exclude_from_budget,
            updates: p
                .updates
                .iter()
                .rev()
                .map(|u| PublicUpdate {
                    status: u.status.clone(),
                    status_text: post_status_text(&u.status),
                    message: u.message.clone(),
                    at: time(u.at_ns),
                    at_text: readable_time(&time(u.at_ns)),
                })
                .collect(),
        }
    }
}

pub(crate) fn impact_name(i: Impact) -> &'static str {
    match i {
        Impact::None => "none",
        Impact::Minor => "minor",
        Impact::Major => "major",
        Impact::Critical => "critical",
    }
}

pub(crate) fn post_status_text(s: &str) -> &'static str {
    match s {
        "investigating" => "Investigating",
        "identified" => "Identified",
        "monitoring" => "Monitoring",
        "resolved" => "Resolved",
        "scheduled" => "Scheduled",
        "in_progress" => "In progress",
        "verifying" => "Verifying",
        "completed" => "Completed",
        "cancelled" => "Cancelled",
        _ => "Update",
    }
}

/// The public names of what a post names: SLOs by their public name,
/// tiers by theirs, and "All services" for none. Unknown names (an SLO
/// since removed) are left out rather than shown as written.
fn post_components(p: &Post, config: &Config) -> Vec<String> {
    if p.components.is_empty() {
        return vec!["All services".to_string()];
    }
    let mut out: Vec<String> = Vec::new();
    for c in &p.components {
        let name = match c.as_str() {
            "core" => Some("Core services".to_string()),
            "optional" => Some("Optional services".to_string()),
            _ => config.slos.iter().find(|s| s.name == *c).map(public_name),
        };
        if let Some(n) = name.filter(|n| !out.contains(n)) {
            out.push(n);
        }
    }
    out
}

/// The tier an SLO's service is listed under: its scope's tier, else the
/// tier of its route (or of the first route on its cluster), else core.
fn slo_tier(config: &Config, slo: &Slo) -> Tier {
    let scope = &slo.scope;
    if let Some(t) = scope.tier {
        return t;
    }
    let route = match (&scope.route, &scope.cluster) {
        (Some(r), _) => config.routes.iter().find(|x| x.name == *r),
        (None, Some(c)) => config.routes.iter().find(|x| x.cluster == *c),
        (None, None) => None,
    };
    route.map_or(Tier::Core, |r| r.tier)
}

fn tier_key(t: Tier) -> &'static str {
    match t {
        Tier::Core => "core",
        Tier::Optional => "optional",
    }
}

/// Statuspage's component statuses, least to most severe.
const COMPONENT_STATUSES: [(&str, &str); 5] = [
    ("operational", "Operational"),
    ("under_maintenance", "Under maintenance"),
    ("degraded_performance", "Degraded performance"),
    ("partial_outage", "Partial outage"),
    ("major_outage", "Major outage"),
];

fn component_rank(status: &str) -> usize {
    COMPONENT_STATUSES
        .iter()
        .position(|(s, _)| *s == status)
        .unwrap_or(0)
}

/// One component per public name, grouped by tier: its status is the worst
/// of its SLOs' firing alerts (a ticket degrades, a page is a partial
/// outage), the open incidents posted on it (by impact) and maintenance
/// under way.
fn component_groups(
    report: &SloReport,
    config: &Config,
    posts: &[Post],
    now: Nanos,
) -> Vec<ComponentGroup> {
    let mut groups: Vec<ComponentGroup> = Vec::new();
    for slo in &config.slos {
        let tier = slo_tier(config, slo);
        let key = tier_key(tier);
        let mut rank = 0;
        for s in report.slos.iter().filter(|s| s.slo == slo.name) {
            for a in s.alerts.iter().filter(|a| a.state == "firing") {
                rank = rank.max(if a.severity == "page" { 3 } else { 2 });
            }
        }
        for p in posts.iter().filter(|p| p.covers(&slo.name, Some(key))) {
            let state = p.state(now);
            rank = rank.max(match (p.kind, state) {
                (PostKind::Maintenance, "in_progress" | "verifying") => 1,
                (PostKind::Incident, s) if s != "resolved" => match p.impact {
                    Impact::None => 0,
                    Impact::Minor => 2,
                    Impact::Major => 3,
                    Impact::Critical => 4,
                },
                _ => 0,
            });
        }
        let group = match groups.iter_mut().position(|g| g.tier == key) {
            Some(i) => &mut groups[i],
            None => {
                groups.push(ComponentGroup {
                    tier: key,
                    name: if key == "optional" {
                        "Optional services"
                    } else {
                        "Core services"
                    },
                    components: Vec::new(),
                });
                groups.last_mut().expect("just pushed")
            }
        };
        let name = public_name(slo);
        match group.components.iter_mut().find(|c| c.name == name) {
            Some(c) if component_rank(c.status) >= rank => {}
            Some(c) => (c.status, c.status_text) = COMPONENT_STATUSES[rank],
            None => group.components.push(PublicComponent {
                id: slug(&name),
                name,
                status: COMPONENT_STATUSES[rank].0,
                status_text: COMPONENT_STATUSES[rank].1,
            }),
        }
    }
    groups.sort_by_key(|g| g.tier != "core");
    groups
}

/// The overall indicator, in Statuspage's words.
fn indicator(
    worst_impact: Option<Impact>,
    worst_component: usize,
    maintaining: bool,
) -> &'static str {
    let from_components = match worst_component {
        4 => 3,
        3 => 2,
        2 => 1,
        _ => 0,
    };
    let from_posts = match worst_impact {
        Some(Impact::Critical) => 3,
        Some(Impact::Major) => 2,
        Some(Impact::Minor) => 1,
        _ => 0,
    };
    match from_components.max(from_posts) {
        3 => "critical",
        2 => "major",
        1 => "minor",
        _ if maintaining => "maintenance",
        _ => "none",
    }
}

/// A lowercase ASCII slug ("Checkout API" → "checkout-api").
pub(crate) fn slug(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    let trimmed = out.trim_end_matches('-');
    if trimmed.is_empty() {
        "service".to_string()
    } else {
        trimmed.to_string()
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

#[cfg(test)]
mod tests {
    use super::*;
    use levee_control::slo::BudgetStatus;

    /// 2026-12-03T15:10:00Z.
    const NOW: Nanos = 1_796_310_600_000_000_000;

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
        let page = StatusPage::build(&report, &config(), &[], NOW);
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
        let page = StatusPage::build(&report, &config(), &[], NOW);
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
        let page = StatusPage::build(&with_incident, &config(), &[], NOW);
        assert_eq!(page.headline, "An incident is ongoing");
        assert_eq!(page.status, "no_data");
    }

    /// The golden incident: an operator's incident with three updates on
    /// checkout, a maintenance under way on search that leaves the budget,
    /// one announced for next week, one resolved yesterday, a detected
    /// incident, and a ticket firing on the shop's latency SLO.
    fn golden() -> StatusPage {
        use levee_control::slo::{AlertStatus, SloStatus};
        use levee_control::status_board::{Board, NewIncident, NewMaintenance, NewUpdate};
        let mut config = config();
        let mut search = config.slos[0].clone();
        search.name = "search-availability".into();
        search.display_name = Some("Search".into());
        search.scope.route = None;
        search.scope.tier = Some(Tier::Optional);
        search.runbook = Some("https://runbooks.internal.example/search".into());
        for o in &mut search.objectives {
            o.id = o.id.replace("checkout-availability", "search-availability");
        }
        config.slos.push(search);
        let known = [
            "checkout-availability",
            "shop-latency",
            "core-availability",
            "search-availability",
            "core",
            "optional",
        ];
        const S: Nanos = 1_000_000_000;
        let ago = |secs: u64| NOW - secs * S;
        let mut b = Board::default();
        let update = |status: &str, message: &str| NewUpdate {
            status: status.into(),
            message: message.into(),
        };
        let id = b
            .open_incident(
                &NewIncident {
                    title: "Checkout errors <for some cards>".into(),
                    impact: Some("major".into()),
                    components: vec!["checkout-availability".into()],
                    status: None,
                    message: "We are investigating failed payments.".into(),
                },
                &known,
                ago(3_600),
            )
            .unwrap();
        b.update(
            id,
            &update("identified", "A card processor is timing out."),
            ago(2_400),
        )
        .unwrap();
        b.update(
            id,
            &update(
                "monitoring",
                "Traffic moved to the second processor.\nWatching.",
            ),
            ago(600),
        )
        .unwrap();
        let maintenance = |title: &str, starts: Nanos, ends: Nanos, exclude| NewMaintenance {
            title: title.into(),
            components: vec!["search-availability".into()],
            starts: levee_slo::calendar::rfc3339(starts),
            ends: levee_slo::calendar::rfc3339(ends),
            message: "Search may answer slowly.".into(),
            exclude_from_budget: exclude,
        };
        b.schedule_maintenance(
            &maintenance("Search index rebuild", ago(1_800), NOW + 1_800 * S, true),
            &known,
            ago(86_400),
        )
        .unwrap();
        b.schedule_maintenance(
            &maintenance(
                "Database upgrade",
                NOW + 7 * 86_400 * S,
                NOW + 7 * 86_400 * S + 7_200 * S,
                false,
            ),
            &known,
            ago(60),
        )
        .unwrap();
        let old = b
            .open_incident(
                &NewIncident {
                    title: "Slow pages".into(),
                    impact: Some("minor".into()),
                    components: vec![],
                    status: None,
                    message: "Pages load slowly.".into(),
                },
                &known,
                ago(90_000),
            )
            .unwrap();
        b.update(old, &update("resolved", "Back to normal."), ago(86_000))
            .unwrap();
        let report = SloReport {
            evaluated_at: Some("2026-12-03T15:09:58.000Z".to_string()),
            tiers: vec![tier(5_000, false, 2_000.0, 0.7)],
            incidents: vec![incident(4, "checkout-availability", "recovered")],
            slos: vec![SloStatus {
                id: "shop-latency:1s".into(),
                slo: "shop-latency".into(),
                runbook: Some("https://runbooks.example.com/x".into()),
                alerts: vec![AlertStatus {
                    severity: "ticket",
                    state: "firing",
                    since: None,
                }],
                ..SloStatus::default()
            }],
            ..SloReport::default()
        };
        StatusPage::build(&report, &config, b.posts(), NOW)
    }

    fn check_golden(name: &str, actual: &str) {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("src/testdata")
            .join(name);
        if std::env::var_os("LEVEE_BLESS").is_some_and(|v| !v.is_empty() && v != "0") {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, actual).unwrap();
            return;
        }
        let expected = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (LEVEE_BLESS=1 writes it)", path.display()));
        assert!(
            expected == actual,
            "{name} differs from the golden file (LEVEE_BLESS=1 rewrites it):\n{actual}"
        );
    }

    #[test]
    fn the_golden_incident_reads_the_same_on_the_page_the_feed_and_the_summary() {
        let page = golden();
        let json = serde_json::to_string_pretty(&page).unwrap();
        let summary = serde_json::to_string_pretty(&crate::status_feed::summary(&page)).unwrap();
        let atom = crate::status_feed::atom(&page);
        let html = page.html();
        check_golden("status.json", &json);
        check_golden("summary.json", &summary);
        check_golden("feed.atom", &atom);
        check_golden("status.html", &html);

        assert_eq!(page.indicator, "major");
        assert_eq!(page.headline, "Partial outage");
        let statuses: Vec<(&str, &str)> = page
            .components
            .iter()
            .flat_map(|g| g.components.iter().map(|c| (c.name.as_str(), c.status)))
            .collect();
        assert_eq!(
            statuses,
            [
                ("Checkout", "partial_outage"),
                ("shop", "degraded_performance"),
                ("Core services", "operational"),
                ("Search", "under_maintenance"),
            ]
        );
        assert!(html.contains("excluded from the error budget"));
        assert!(html.contains("Checkout errors &lt;for some cards&gt;"));
        assert!(atom.contains("Checkout errors &lt;for some cards&gt; — Monitoring"));
        let v: serde_json::Value = serde_json::from_str(&summary).unwrap();
        assert_eq!(v["status"]["indicator"], "major");
        assert_eq!(
            v["incidents"].as_array().unwrap().len(),
            1,
            "resolved ones are not listed"
        );
        assert_eq!(
            v["incidents"][0]["incident_updates"]
                .as_array()
                .unwrap()
                .len(),
            3
        );
        assert_eq!(
            v["incidents"][0]["incident_updates"][0]["status"], "monitoring",
            "newest first"
        );
        assert_eq!(v["scheduled_maintenances"].as_array().unwrap().len(), 2);

        // Nothing internal, in any of the four.
        for (what, text) in [
            ("json", &json),
            ("summary", &summary),
            ("atom", &atom),
            ("html", &html),
        ] {
            for internal in [
                "checkout-availability",
                "search-availability",
                "shop-latency",
                "core-availability",
                "runbook",
                "127.0.0.1",
                "labels",
                "severity",
            ] {
                assert!(!text.contains(internal), "{what} leaks {internal}");
            }
        }
    }
}
