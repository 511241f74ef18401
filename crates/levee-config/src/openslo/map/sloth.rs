//! Sloth's `prometheus/v1` spec and its Kubernetes `PrometheusServiceLevel`
//! (whose `spec` is the same): each of `slos` becomes one Levee SLO.
//!
//! | Sloth | Levee |
//! |---|---|
//! | `service` and `slos[].name` | `name = "SERVICE-NAME"` (Sloth's SLO id), `labels.service` |
//! | `labels`, `slos[].labels` | `labels` (the SLO's win) |
//! | `slos[].objective` (99.9) | `objective = "99.9%"` |
//! | `slos[].description` | `description` |
//! | `sli.events` (`error_query`, `total_query`), `sli.raw`, `sli.plugin` | the mapped scope; latency when a query reads a histogram bucket (`le="0.25"`) |
//! | `alerting.page_alert` / `ticket_alert` with `disable: true` | the Workbook's rules without that severity (Sloth's are the same) |
//! | alert `name`, `labels`, `annotations` | notes; an annotation `runbook`/`runbook_url` becomes `runbook` |
//! | (no period) | Levee's 30d default, which is Sloth's too |

use super::super::documents::SLOTH_K8S;
use super::*;

const MINUTE: u64 = 60;

/// The Workbook's rules (Sloth's too), as (long, short, factor in thousandths).
fn workbook(severity: Severity) -> Vec<(Duration, Duration, u32)> {
    let r = |long: u64, short: u64, f: u32| {
        (
            Duration::from_secs(long * MINUTE),
            Duration::from_secs(short * MINUTE),
            f,
        )
    };
    match severity {
        Severity::Page => vec![r(60, 5, 14_400), r(360, 30, 6_000)],
        Severity::Ticket => vec![r(1440, 120, 3_000), r(4320, 360, 1_000)],
    }
}

impl<'a, 'n, 'f> Importer<'a, 'n, 'f> {
    /// Every SLO of one Sloth document.
    pub(in super::super) fn sloth(&mut self, d: &'a Doc<'n>) -> Vec<Entry> {
        let doc = d.label.as_str();
        let (spec, prefix) = if d.kind == SLOTH_K8S {
            match self.required(doc, d.node, "", "spec") {
                Some(s) if self.is_map(doc, s, "spec") => (s, "spec"),
                _ => return Vec::new(),
            }
        } else {
            (d.node, "")
        };
        let Some(service) = spec
            .get("service")
            .and_then(|s| self.string(doc, s, &join_path(prefix, "service")))
            .map(str::to_string)
        else {
            if spec.get("service").is_none() {
                self.error(
                    doc,
                    spec.loc,
                    &join_path(prefix, "service"),
                    "missing required field `service`",
                );
            }
            return Vec::new();
        };
        let mut notes = Vec::new();
        let mut common = Vec::new();
        if let Some(l) = spec.get("labels") {
            common = self.sloth_labels(doc, l, &join_path(prefix, "labels"), &mut notes);
        }
        let spath = join_path(prefix, "slos");
        let Some(slos) = self.required(doc, spec, prefix, "slos") else {
            return Vec::new();
        };
        let Some(items) = self.list(doc, slos, &spath) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (i, slo) in items.iter().enumerate() {
            let p = format!("{spath}[{i}]");
            if let Some(e) = self.sloth_slo(d, slo, &p, &service, &common, notes.clone()) {
                out.push(e);
            }
        }
        out
    }

    fn sloth_labels(&mut self, doc: &str, l: &Node, p: &str, notes: &mut Vec<String>) -> Labels {
        let mut out = Vec::new();
        match &l.value {
            Value::Map(entries) => {
                for (k, kloc, v) in entries {
                    if let Some(value) = self.label(doc, k, *kloc, v, &join_path(p, k), notes) {
                        out.push((k.clone(), value));
                    }
                }
            }
            Value::Null => {}
            _ => self.type_error(doc, l, p, "a mapping of label: value"),
        }
        out
    }

    fn sloth_slo(
        &mut self,
        d: &'a Doc<'n>,
        slo: &Node,
        p: &str,
        service: &str,
        common: &Labels,
        mut notes: Vec<String>,
    ) -> Option<Entry> {
        let doc = d.label.as_str();
        let errors_before = self.d.diags.len();
        if !self.is_map(doc, slo, p) {
            return None;
        }
        let short = self
            .required(doc, slo, p, "name")
            .and_then(|n| self.string(doc, n, &join_path(p, "name")))
            .map(str::to_string);
        let name = short.as_ref().map(|s| format!("{service}-{s}"));
        if let (Some(name), Some(n)) = (&name, slo.get("name")) {
            if !is_name(name) {
                self.error_help(
                    doc,
                    n.loc,
                    &join_path(p, "name"),
                    format!("`{name}` is not a valid Levee SLO name"),
                    "use letters, digits, `-`, `_` and `.`",
                );
            }
        }
        let objective = self.required(doc, slo, p, "objective").and_then(|n| {
            let op = join_path(p, "objective");
            let v = self.number(doc, n, &op)?;
            let ppm = (v * 1e4).round();
            if !(1.0..1e6).contains(&ppm) {
                self.error_help(
                    doc,
                    n.loc,
                    &op,
                    format!("the objective must be above 0 and below 100, to a millionth; got {v}"),
                    "Sloth's objective is a percentage, such as `99.9`",
                );
                return None;
            }
            Some(ppm as u32)
        });
        let description = match slo.get("description") {
            Some(n) => self
                .string(doc, n, &join_path(p, "description"))
                .map(str::to_string),
            None => None,
        };
        let mut labels: Labels = vec![("service".into(), service.to_string())];
        for (k, v) in common.iter().cloned() {
            labels.retain(|(x, _)| *x != k);
            labels.push((k, v));
        }
        if let Some(l) = slo.get("labels") {
            for (k, v) in self.sloth_labels(doc, l, &join_path(p, "labels"), &mut notes) {
                labels.retain(|(x, _)| *x != k);
                labels.push((k, v));
            }
        }
        self.current = Current {
            slo: name.clone().unwrap_or_default(),
            sli: short.clone(),
            service: Some(service.to_string()),
        };
        self.pending.clear();
        let indicator = self.sloth_sli(doc, slo, p);
        notes.append(&mut self.pending);
        let (alerting, runbook) = self.sloth_alerting(doc, slo, p);
        notes.append(&mut self.pending);
        notes.push("Sloth sets the SLO period when it generates rules (30d by default); Levee's default period of 30d applies.".into());
        if self.d.diags.len() > errors_before {
            return None;
        }
        let line = slo.loc.line;
        let note_diags = self.note_diags(&notes, &document_path(doc, p), slo.loc);
        let indicator = indicator?;
        let threshold = match indicator.kind {
            SliKind::LatencyRatio { threshold } => Some(threshold),
            _ => None,
        };
        Some(Entry {
            origin: format!(
                "{doc}, SLO {} (line {line})",
                short.as_deref().unwrap_or("?")
            ),
            notes,
            note_diags,
            name: name?,
            description,
            indicator,
            objectives: vec![(threshold, objective?)],
            period: None,
            budgeting: Budgeting::Occurrences,
            runbook,
            labels,
            alerting: alerting?,
        })
    }

    /// `sli.events`, `sli.raw` or `sli.plugin`: queries Levee does not run,
    /// mapped to a scope.
    fn sloth_sli(&mut self, doc: &str, slo: &Node, p: &str) -> Option<Indicator> {
        let sp = join_path(p, "sli");
        let sli = self.required(doc, slo, p, "sli")?;
        if !self.is_map(doc, sli, &sp) {
            return None;
        }
        let mut queries = Vec::new();
        let mut ty = "Prometheus".to_string();
        let (part, keys): (&str, &[&str]) = if sli.get("events").is_some() {
            ("events", &["error_query", "total_query"])
        } else if sli.get("raw").is_some() {
            ("raw", &["error_ratio_query"])
        } else if sli.get("plugin").is_some() {
            ("plugin", &["id"])
        } else {
            self.error_help(
                doc,
                sli.loc,
                &sp,
                "missing `events`, `raw` or `plugin`",
                "Sloth SLIs are `events` (`error_query` and `total_query`), `raw` (`error_ratio_query`) or `plugin`",
            );
            return None;
        };
        let pp = join_path(&sp, part);
        let node = sli.get(part)?;
        if !self.is_map(doc, node, &pp) {
            return None;
        }
        for key in keys {
            let Some(q) = self.required(doc, node, &pp, key) else {
                continue;
            };
            let qp = join_path(&pp, key);
            if let Some(text) = self.string(doc, q, &qp) {
                if part == "plugin" {
                    ty = format!("Sloth plugin {text}");
                }
                queries.push((qp, q.loc, text.to_string()));
            }
        }
        if queries.len() < keys.len() {
            return None;
        }
        if part == "raw" {
            self.note_at(
                doc,
                node.loc,
                &pp,
                "a raw error ratio has no event counts; Levee counts the scope's events".into(),
            );
        }
        self.foreign_indicator(doc, node.loc, &pp, Foreign { ty, queries }, true)
    }

    /// `alerting`: which of the page and ticket alerts are on, and the
    /// runbook among its annotations. `None` on error; `Some(None)`: the
    /// Workbook's rules, which are Sloth's.
    fn sloth_alerting(
        &mut self,
        doc: &str,
        slo: &Node,
        p: &str,
    ) -> (Option<Option<Alerting>>, Option<String>) {
        let ap = join_path(p, "alerting");
        let Some(a) = slo.get("alerting") else {
            return (Some(None), None);
        };
        if a.value == Value::Null {
            return (Some(None), None);
        }
        if !self.is_map(doc, a, &ap) {
            return (None, None);
        }
        let mut runbook = None;
        let mut ok = true;
        for (key, what) in [
            ("name", "the alert name is"),
            ("labels", "alert labels are"),
            ("annotations", "alert annotations are"),
        ] {
            let Some(n) = a.get(key) else { continue };
            if n.value == Value::Null || n.value == Value::Map(Vec::new()) {
                continue;
            }
            if key == "annotations" {
                if let Value::Map(entries) = &n.value {
                    for (k, _, v) in entries {
                        if matches!(
                            k.as_str(),
                            "runbook" | "runbook_url" | "runbook-url" | "runbookUrl"
                        ) {
                            if let Value::Str(url) = &v.value {
                                if url.starts_with("https://") || url.starts_with("http://") {
                                    runbook = Some(url.clone());
                                }
                            }
                        }
                    }
                }
            }
            self.note_at(
                doc,
                n.loc,
                &join_path(&ap, key),
                format!("{what} not carried over: Levee names and labels its alerts itself"),
            );
        }
        let mut on = |this: &mut Self, key: &str| -> bool {
            let kp = join_path(&ap, key);
            let Some(alert) = a.get(key) else { return true };
            if alert.value == Value::Null {
                return true;
            }
            if !this.is_map(doc, alert, &kp) {
                ok = false;
                return true;
            }
            let disabled = match alert.get("disable") {
                Some(n) => match this.boolean(doc, n, &join_path(&kp, "disable")) {
                    Some(b) => b,
                    None => {
                        ok = false;
                        false
                    }
                },
                None => false,
            };
            for extra in ["labels", "annotations"] {
                if let Some(n) = alert.get(extra) {
                    if !disabled && n.value != Value::Null && n.value != Value::Map(Vec::new()) {
                        this.note_at(
                            doc,
                            n.loc,
                            &join_path(&kp, extra),
                            format!("the {key}'s {extra} are not carried over: Levee sends every alert to the webhooks in [alerting]"),
                        );
                    }
                }
            }
            !disabled
        };
        let page = on(self, "page_alert");
        let ticket = on(self, "ticket_alert");
        if !ok {
            return (None, runbook);
        }
        let alerting = if page && ticket {
            None
        } else {
            Some(Alerting {
                pending_for: Duration::ZERO,
                page: if page {
                    workbook(Severity::Page)
                } else {
                    Vec::new()
                },
                ticket: if ticket {
                    workbook(Severity::Ticket)
                } else {
                    Vec::new()
                },
            })
        };
        (Some(alerting), runbook)
    }
}
