//! An SLO's `alertPolicies`: AlertPolicy and AlertCondition documents
//! (inline or by reference) as Levee burn-rate rules and one `pending_for`.

use super::super::render::duration_text;
use super::*;

impl<'a, 'n, 'f> Importer<'a, 'n, 'f> {
    // --- alerting --------------------------------------------------------------

    /// `Some(None)`: no alert policies; `None`: an error was reported.
    pub(super) fn alerting(
        &mut self,
        doc: &str,
        spec: &Node,
        max_window: Duration,
        notes: &mut Vec<String>,
    ) -> Option<Option<Alerting>> {
        let none = "No alertPolicies: Levee's default burn-rate alerts (the SRE Workbook's) apply.";
        let Some(ap) = spec.get("alertPolicies") else {
            notes.push(none.into());
            return Some(None);
        };
        let items = self.list(doc, ap, "spec.alertPolicies")?;
        if items.is_empty() {
            notes.push(none.into());
            return Some(None);
        }
        let mut conds = Vec::new();
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            let p = format!("spec.alertPolicies[{i}]");
            let reference = match &item.value {
                Value::Str(name) => Some((name.as_str(), item.loc, p.clone())),
                Value::Map(_) => match item.get("alertPolicyRef") {
                    Some(r) => {
                        let rp = join_path(&p, "alertPolicyRef");
                        match self.string(doc, r, &rp) {
                            Some(name) => Some((name, r.loc, rp)),
                            None => {
                                ok = false;
                                continue;
                            }
                        }
                    }
                    None => None,
                },
                _ => {
                    self.type_error(doc, item, &p, "an AlertPolicy or `alertPolicyRef`");
                    ok = false;
                    continue;
                }
            };
            ok &= match reference {
                Some((name, loc, rp)) => match self.find("AlertPolicy", name) {
                    Some(pd) => self.policy(&pd.label, pd.node, "", &mut conds),
                    None => {
                        self.error_help(
                            doc,
                            loc,
                            &rp,
                            format!("AlertPolicy `{name}` is not in this file"),
                            "add the AlertPolicy document to this file (separated by `---`), or write it inline",
                        );
                        false
                    }
                },
                None => self.policy(doc, item, &p, &mut conds),
            };
        }
        if !ok {
            return None;
        }
        let mut fits = true;
        for c in &conds {
            if c.long > max_window {
                let msg = format!(
                    "the window {} is longer than the SLO's period ({})",
                    format_duration(c.long),
                    format_duration(max_window)
                );
                self.error(&c.doc, c.long_loc, &c.long_path, msg);
                fits = false;
            }
        }
        if !fits {
            return None;
        }
        let pending_for = conds
            .iter()
            .map(|c| c.alert_after)
            .min()
            .unwrap_or(Duration::ZERO);
        if conds.iter().any(|c| c.alert_after != pending_for) {
            notes.push(format!(
                "The conditions wait different times (alertAfter); Levee has one pending_for per SLO and takes the shortest, {}.",
                duration_text(pending_for)
            ));
        }
        let mut alerting = Alerting {
            pending_for,
            page: Vec::new(),
            ticket: Vec::new(),
        };
        for c in &conds {
            let rule = (c.long, c.long / 12, c.factor_milli);
            let list = match c.severity {
                Severity::Page => &mut alerting.page,
                Severity::Ticket => &mut alerting.ticket,
            };
            if !list.contains(&rule) {
                list.push(rule);
            }
        }
        if conds.is_empty() {
            notes.push("No burn-rate condition applies: this SLO does not alert.".into());
        } else {
            notes.push(
                "Each condition's lookbackWindow is the long window; the short window is a twelfth of it (the SRE Workbook's 1h/5m ratio)."
                    .into(),
            );
        }
        Some(Some(alerting))
    }

    /// One AlertPolicy (a document, or inline at `prefix` of `doc`); its
    /// conditions are appended to `conds`, its notes to the pending ones.
    /// False on error.
    fn policy(&mut self, doc: &str, node: &Node, prefix: &str, conds: &mut Vec<Condition>) -> bool {
        if !self.is_map(doc, node, prefix) {
            return false;
        }
        if !self.inline_kind(doc, node, prefix, "AlertPolicy") {
            return false;
        }
        let sp = join_path(prefix, "spec");
        let Some(spec) = self.required(doc, node, prefix, "spec") else {
            return false;
        };
        if !self.is_map(doc, spec, &sp) {
            return false;
        }
        let mut flag = |key: &str| match spec.get(key) {
            None => Ok(None),
            Some(n) => self
                .boolean(doc, n, &join_path(&sp, key))
                .map(Some)
                .ok_or(()),
        };
        let (Ok(breaching), Ok(no_data)) = (flag("alertWhenBreaching"), flag("alertWhenNoData"))
        else {
            return false;
        };
        let at = |key: &str| spec.get(key).map_or(spec.loc, |n| n.loc);
        if breaching == Some(false) {
            self.note_at(
                doc,
                at("alertWhenBreaching"),
                &join_path(&sp, "alertWhenBreaching"),
                "alertWhenBreaching is false: this policy's conditions are not imported.".into(),
            );
            return true;
        }
        if no_data == Some(true) {
            self.note_at(
                doc,
                at("alertWhenNoData"),
                &join_path(&sp, "alertWhenNoData"),
                "alertWhenNoData is not applied; Levee alerts on budget burn, and `min_events` keeps quiet windows from alerting.".into(),
            );
        }
        if let Some(Node {
            value: Value::Seq(targets),
            loc,
        }) = spec.get("notificationTargets")
        {
            if !targets.is_empty() {
                self.note_at(
                    doc,
                    *loc,
                    &join_path(&sp, "notificationTargets"),
                    "notificationTargets are not imported; Levee sends every alert to the webhooks in [alerting].".into(),
                );
            }
        }
        let Some(cn) = self.required(doc, spec, &sp, "conditions") else {
            return false;
        };
        let cpath = join_path(&sp, "conditions");
        let Some(items) = self.list(doc, cn, &cpath) else {
            return false;
        };
        let mut ok = true;
        for (j, c) in items.iter().enumerate() {
            let p = format!("{cpath}[{j}]");
            let cond = match c.get("conditionRef") {
                Some(r) => {
                    let rp = join_path(&p, "conditionRef");
                    let Some(cname) = self.string(doc, r, &rp) else {
                        ok = false;
                        continue;
                    };
                    match self.find("AlertCondition", cname) {
                        Some(cd) => self.condition(&cd.label, cd.node, ""),
                        None => {
                            self.error_help(
                                doc,
                                r.loc,
                                &rp,
                                format!("AlertCondition `{cname}` is not in this file"),
                                "add the AlertCondition document to this file (separated by `---`), or write it inline",
                            );
                            None
                        }
                    }
                }
                None => self.condition(doc, c, &p),
            };
            match cond {
                Some(cond) => conds.push(cond),
                None => ok = false,
            }
        }
        ok
    }

    /// An inline object's optional `kind` must be `expected`.
    fn inline_kind(&mut self, doc: &str, node: &Node, prefix: &str, expected: &str) -> bool {
        if prefix.is_empty() {
            return true; // A document: its kind was checked when indexed.
        }
        match node.get("kind") {
            None => true,
            Some(k) => match self.string(doc, k, &join_path(prefix, "kind")) {
                Some(s) if s == expected => true,
                Some(s) => {
                    self.error(
                        doc,
                        k.loc,
                        &join_path(prefix, "kind"),
                        format!("expected an {expected} here, found `{s}`"),
                    );
                    false
                }
                None => false,
            },
        }
    }

    /// One AlertCondition (a document, or inline at `prefix` of `doc`).
    fn condition(&mut self, doc: &str, node: &Node, prefix: &str) -> Option<Condition> {
        if !self.is_map(doc, node, prefix) || !self.inline_kind(doc, node, prefix, "AlertCondition")
        {
            return None;
        }
        let sp = join_path(prefix, "spec");
        let spec = self.required(doc, node, prefix, "spec")?;
        if !self.is_map(doc, spec, &sp) {
            return None;
        }
        let severity = self.required(doc, spec, &sp, "severity").and_then(|n| {
            let path = join_path(&sp, "severity");
            let s = self.string(doc, n, &path)?.to_ascii_lowercase();
            match s.as_str() {
                "page" | "critical" | "high" => Some(Severity::Page),
                "ticket" | "warning" | "medium" | "low" => Some(Severity::Ticket),
                _ => {
                    self.error_help(
                        doc,
                        n.loc,
                        &path,
                        format!("severity `{s}` cannot be mapped"),
                        "Levee has two severities: `page` (also critical, high) and `ticket` (also warning, medium, low)",
                    );
                    None
                }
            }
        });
        let cp = join_path(&sp, "condition");
        let cond = self.required(doc, spec, &sp, "condition")?;
        if !self.is_map(doc, cond, &cp) {
            return None;
        }
        let mut ok = true;
        if let Some(k) = cond.get("kind") {
            let path = join_path(&cp, "kind");
            match self.string(doc, k, &path) {
                Some(s) if s.eq_ignore_ascii_case("burnrate") => {}
                Some(s) => {
                    self.error_help(
                        doc,
                        k.loc,
                        &path,
                        format!("a `{s}` condition cannot be mapped"),
                        "Levee alerts on budget burn: use `kind: burnrate`",
                    );
                    ok = false;
                }
                None => ok = false,
            }
        }
        if let Some(o) = cond.get("op") {
            let path = join_path(&cp, "op");
            match self.string(doc, o, &path) {
                Some("gt" | "gte") => {}
                Some(op) => {
                    self.error_help(
                        doc,
                        o.loc,
                        &path,
                        format!("`op: {op}` cannot be mapped: Levee alerts when the burn rate is above the threshold"),
                        "use `op: gt`",
                    );
                    ok = false;
                }
                None => ok = false,
            }
        }
        let factor = self.required(doc, cond, &cp, "threshold").and_then(|n| {
            let path = join_path(&cp, "threshold");
            let v = self.number(doc, n, &path)?;
            if !(0.001..=1_000_000.0).contains(&v) {
                self.error_help(
                    doc,
                    n.loc,
                    &path,
                    format!("a burn-rate threshold must be from 0.001 to 1000000, got {v}"),
                    "the workbook pages at 14.4 over 1h and tickets at 1 over 3d",
                );
                return None;
            }
            Some((v * 1000.0).round() as u32)
        });
        let long_path = join_path(&cp, "lookbackWindow");
        let long = self
            .required(doc, cond, &cp, "lookbackWindow")
            .and_then(|n| {
                let (count, unit) = self.shorthand(doc, n, &long_path)?;
                match shorthand_len(count, unit) {
                    Some(d) if !d.is_zero() => Some((d, n.loc)),
                    _ => {
                        self.error(
                            doc,
                            n.loc,
                            &long_path,
                            "must be greater than zero and at most a year",
                        );
                        None
                    }
                }
            });
        let alert_after = match cond.get("alertAfter") {
            None => Some(Duration::ZERO),
            Some(n) => {
                let path = join_path(&cp, "alertAfter");
                self.shorthand(doc, n, &path)
                    .and_then(|(count, unit)| shorthand_len(count, unit))
            }
        };
        let (severity, factor_milli, (long, long_loc), alert_after) =
            (severity?, factor?, long?, alert_after?);
        ok.then(|| Condition {
            severity,
            long,
            factor_milli,
            alert_after,
            doc: doc.to_string(),
            long_path,
            long_loc,
        })
    }
}
