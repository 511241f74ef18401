//! The status page for machines: an Atom feed (`/status/feed.atom`) of
//! operators' posts and detected incidents, and a summary in the shape
//! status aggregators read (`/api/v2/summary.json`, after Atlassian
//! Statuspage's). Both are rendered from a built [`StatusPage`], so they
//! carry only what the page shows customers: public names, no labels,
//! runbooks, SLO ids or addresses.

use crate::status::{slug, StatusPage};
use serde_json::{json, Value};
use std::fmt::Write as _;

/// The page's id in the summary (Statuspage gives each page one).
const PAGE_ID: &str = "levee";

/// Entries the feed carries at most.
const FEED_ENTRIES: usize = 50;

/// The Statuspage-shaped summary: `page`, `status` (indicator and
/// description), `components` (groups by tier, then their services),
/// unresolved `incidents` with their updates, and `scheduled_maintenances`
/// not yet completed.
pub(crate) fn summary(page: &StatusPage) -> Value {
    let updated = page.updated_at.clone();
    let mut components = Vec::new();
    let mut position = 0;
    for g in &page.components {
        position += 1;
        components.push(json!({
            "id": g.tier,
            "name": g.name,
            "status": g.components.iter().map(|c| c.status)
                .max_by_key(|s| rank(s)).unwrap_or("operational"),
            "created_at": null,
            "updated_at": updated,
            "position": position,
            "description": null,
            "showcase": false,
            "start_date": null,
            "group_id": null,
            "page_id": PAGE_ID,
            "group": true,
            "only_show_if_degraded": false,
            "components": g.components.iter().map(|c| component_id(g.tier, &c.id)).collect::<Vec<_>>(),
        }));
        for c in &g.components {
            position += 1;
            components.push(json!({
                "id": component_id(g.tier, &c.id),
                "name": c.name,
                "status": c.status,
                "created_at": null,
                "updated_at": updated,
                "position": position,
                "description": null,
                "showcase": true,
                "start_date": null,
                "group_id": g.tier,
                "page_id": PAGE_ID,
                "group": false,
                "only_show_if_degraded": false,
            }));
        }
    }
    let post = |p: &crate::status::PublicPost| {
        let affected: Vec<Value> = p
            .components
            .iter()
            .map(|name| json!({ "code": slug(name), "name": name }))
            .collect();
        let mut v = json!({
            "id": p.id.to_string(),
            "name": p.title,
            "status": p.status,
            "created_at": p.created_at,
            "updated_at": p.updated_at,
            "resolved_at": p.settled_at,
            "impact": p.impact,
            "shortlink": "/status",
            "started_at": p.created_at,
            "page_id": PAGE_ID,
            "components": affected,
            "incident_updates": p.updates.iter().enumerate().map(|(i, u)| json!({
                "id": format!("{}-{}", p.id, p.updates.len() - i),
                "status": u.status,
                "body": u.message,
                "incident_id": p.id.to_string(),
                "created_at": u.at,
                "updated_at": u.at,
                "display_at": u.at,
                "affected_components": affected,
            })).collect::<Vec<_>>(),
        });
        if p.kind == "maintenance" {
            v["scheduled_for"] = json!(p.starts_at);
            v["scheduled_until"] = json!(p.ends_at);
            v["excluded_from_budget"] = json!(p.excluded_from_budget);
        }
        v
    };
    let incidents: Vec<Value> = page
        .posts
        .iter()
        .filter(|p| p.kind == "incident" && p.settled_at.is_none())
        .map(post)
        .collect();
    let maintenances: Vec<Value> = page
        .posts
        .iter()
        .filter(|p| p.kind == "maintenance" && p.settled_at.is_none())
        .map(post)
        .collect();
    json!({
        "page": {
            "id": PAGE_ID,
            "name": page.title,
            "url": "/status",
            "time_zone": "Etc/UTC",
            "updated_at": updated,
        },
        "status": {
            "indicator": page.indicator,
            "description": match page.indicator {
                "critical" => "Major System Outage",
                "major" => "Partial System Outage",
                "minor" => "Minor Service Outage",
                "maintenance" => "Service Under Maintenance",
                _ => "All Systems Operational",
            },
        },
        "components": components,
        "incidents": incidents,
        "scheduled_maintenances": maintenances,
    })
}

fn component_id(tier: &str, id: &str) -> String {
    format!("{tier}-{id}")
}

fn rank(status: &str) -> u8 {
    match status {
        "major_outage" => 4,
        "partial_outage" => 3,
        "degraded_performance" => 2,
        "under_maintenance" => 1,
        _ => 0,
    }
}

/// The Atom feed: one entry per post (updated when it last changed, its
/// updates as the content) and per detected incident, newest first.
pub(crate) fn atom(page: &StatusPage) -> String {
    struct Entry {
        id: String,
        title: String,
        updated: String,
        content: String,
    }
    let mut entries: Vec<Entry> = page
        .posts
        .iter()
        .map(|p| {
            let mut content = String::new();
            if let (Some(from), Some(to)) = (&p.starts_at_text, &p.ends_at_text) {
                let _ = write!(content, "Scheduled from {from} to {to}");
                if p.excluded_from_budget {
                    content.push_str(" (excluded from the error budget)");
                }
                content.push_str(".\n\n");
            }
            let _ = writeln!(content, "Affects: {}.", p.components.join(", "));
            for u in &p.updates {
                let _ = write!(
                    content,
                    "\n{} ({}): {}\n",
                    u.status_text, u.at_text, u.message
                );
            }
            Entry {
                id: format!("urn:levee:status:post:{}", p.id),
                title: format!("{} — {}", p.title, p.status_text),
                updated: p.updated_at.clone(),
                content,
            }
        })
        .collect();
    entries.extend(page.incidents.iter().map(|i| {
        let resolved = i.state == "resolved";
        Entry {
            id: format!("urn:levee:status:incident:{}", i.id),
            title: format!(
                "{}: {}",
                i.service,
                if resolved {
                    "resolved"
                } else {
                    "incident ongoing"
                }
            ),
            updated: i.recover.clone().unwrap_or_else(|| i.start.clone()),
            content: match &i.recover_text {
                Some(r) => format!(
                    "Began {}, back to normal {} ({}).",
                    i.start_text, r, i.duration_text
                ),
                None => format!("Began {}; ongoing.", i.start_text),
            },
        }
    }));
    entries.sort_by(|a, b| b.updated.cmp(&a.updated));
    entries.truncate(FEED_ENTRIES);
    let feed_updated = entries
        .first()
        .map(|e| e.updated.clone())
        .or_else(|| page.updated_at.clone())
        .unwrap_or_else(|| "1970-01-01T00:00:00.000Z".to_string());
    let mut out = String::with_capacity(1024 + entries.len() * 512);
    let _ = write!(
        out,
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n\
         <feed xmlns=\"http://www.w3.org/2005/Atom\">\n\
         <id>urn:levee:status:{}</id>\n<title>{}</title>\n<updated>{}</updated>\n\
         <link rel=\"alternate\" type=\"text/html\" href=\"/status\"/>\n\
         <link rel=\"self\" type=\"application/atom+xml\" href=\"/status/feed.atom\"/>\n\
         <author><name>{}</name></author>\n",
        slug(&page.title),
        levee_core::markup::escape(&page.title),
        feed_updated,
        levee_core::markup::escape(&page.title),
    );
    for e in entries {
        let _ = write!(
            out,
            "<entry>\n<id>{}</id>\n<title>{}</title>\n<updated>{}</updated>\n\
             <link rel=\"alternate\" type=\"text/html\" href=\"/status\"/>\n\
             <content type=\"text\">{}</content>\n</entry>\n",
            e.id,
            levee_core::markup::escape(&e.title),
            e.updated,
            levee_core::markup::escape(&e.content),
        );
    }
    out.push_str("</feed>\n");
    out
}
