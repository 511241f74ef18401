//! Mapping one OpenSLO SLO (with the SLI, AlertPolicy and AlertCondition
//! documents it names) into what a Levee `[[slos]]` entry holds: the shared
//! types, the SLO itself, its period, budgeting, objectives and metadata.
//! The SLI and the alerting live in the submodules `indicator` and
//! `alerting`. Every problem goes to the config's `Decoder`.

mod alerting;
mod indicator;
mod sloth;

use super::mapping::Options;
use crate::Diagnostic;

use super::document_path;
use super::documents::Doc;
use crate::decode::is_name;
use crate::decode_slo::{is_label_name, PERIODS};
use crate::diag::{join_path, Decoder};
use crate::format_duration;
use crate::node::{Loc, Node, Value};
use std::collections::HashSet;
use std::time::Duration;

/// Objectives as (latency threshold, objective in ppm).
pub(super) type Objectives = Vec<(Option<Duration>, u32)>;

/// Label names and values, in order.
pub(super) type Labels = Vec<(String, String)>;

/// A Levee SLO ready to print.
pub(super) struct Entry {
    /// `SLO name (line N)`.
    pub(super) origin: String,
    /// What was approximated or left out.
    pub(super) notes: Vec<String>,
    pub(super) name: String,
    pub(super) description: Option<String>,
    pub(super) indicator: Indicator,
    pub(super) objectives: Objectives,
    pub(super) period: Option<Period>,
    pub(super) budgeting: Budgeting,
    pub(super) runbook: Option<String>,
    pub(super) labels: Labels,
    pub(super) alerting: Option<Alerting>,
    /// Each note as a diagnostic, for `--strict`: at what it is about when
    /// that is known, else at the SLO.
    pub(super) note_diags: Vec<Diagnostic>,
}

/// How the error budget is counted: events, or time slices of `slice`
/// (good when the SLI meets `target_ppm`, or weighted by their ratio).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Budgeting {
    Occurrences,
    Timeslices { slice: Duration, target_ppm: u32 },
    RatioTimeslices { slice: Duration },
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Period {
    Rolling(Duration),
    CalendarMonth,
}

impl Period {
    /// The longest the period can be, for checking alert windows.
    fn max_len(period: Option<Period>) -> Duration {
        match period {
            Some(Period::Rolling(d)) => d,
            Some(Period::CalendarMonth) => Duration::from_secs(31 * DAY),
            None => Duration::from_secs(30 * DAY),
        }
    }
}

/// Which traffic an SLI covers and what makes an event good.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Indicator {
    pub(super) kind: SliKind,
    pub(super) scope: Scope,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub(super) struct Scope {
    pub(super) route: Option<String>,
    pub(super) tier: Option<String>,
    pub(super) tenant: Option<String>,
    pub(super) cluster: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum SliKind {
    Availability {
        rate_limited_is_bad: Option<bool>,
    },
    /// A `ratioMetric` counting answers within one threshold.
    LatencyRatio {
        threshold: Duration,
    },
    /// A `thresholdMetric`: thresholds come from the objectives' values.
    LatencyThreshold {
        unit_ms: f64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Severity {
    Page,
    Ticket,
}

/// One mapped burn-rate condition.
struct Condition {
    severity: Severity,
    long: Duration,
    factor_milli: u32,
    alert_after: Duration,
    /// Where its `lookbackWindow` was written, for messages.
    doc: String,
    long_path: String,
    long_loc: Loc,
}

pub(super) struct Alerting {
    pub(super) pending_for: Duration,
    /// Rules as (long, short, factor in thousandths).
    pub(super) page: Vec<(Duration, Duration, u32)>,
    pub(super) ticket: Vec<(Duration, Duration, u32)>,
}

/// The contents of one Levee metric source's `spec`.
#[derive(Debug, Clone, PartialEq, Default)]
struct Source {
    scope: Scope,
    sli: Option<&'static str>,
    rate_limited_is_bad: Option<bool>,
    threshold: Option<Duration>,
    unit: Option<&'static str>,
    /// A metric source Levee cannot measure: its type and queries.
    foreign: Option<Foreign>,
}

/// A metric source of another system, mapped to a Levee scope by the
/// import's `Mapping`.
#[derive(Debug, Clone, PartialEq, Default)]
struct Foreign {
    ty: String,
    /// Every string in its `spec` (queries), as (field path, location, text).
    queries: Vec<(String, Loc, String)>,
}

/// The names the SLO being mapped is known by, for the `Mapping`.
#[derive(Debug, Clone, Default)]
pub(super) struct Current {
    pub(super) slo: String,
    pub(super) sli: Option<String>,
    pub(super) service: Option<String>,
}

const DAY: u64 = 86_400;

pub(super) const LEVEE_SOURCE_HELP: &str = "Levee measures its own traffic: use `type: Levee` with `spec.route`, `spec.tier`, `spec.tenant` or `spec.cluster` (and `spec.sli: availability` or `latency`)";

const SOURCE_KEYS: &str =
    "route, tier, tenant, cluster, sli, rate_limited_is_bad, threshold (latency ratioMetric), unit (thresholdMetric)";

/// Maps the SLO documents of one file, collecting every problem in `d`.
pub(super) struct Importer<'a, 'n, 'f> {
    docs: &'a [Doc<'n>],
    /// The config's decoder, with strings taken as written; its
    /// diagnostics' paths start with the document (`document_path`).
    pub(super) d: Decoder<'f>,
    /// `(kind, name)` of every document an SLO used.
    pub(super) used: HashSet<(&'static str, String)>,
    pub(super) opts: Options,
    /// The mapping rules some SLO used, by index.
    pub(super) used_rules: HashSet<usize>,
    file: String,
    pub(super) current: Current,
    /// Notes found while mapping parts of the current SLO (its SLI).
    pub(super) pending: Vec<String>,
    /// Notes that point at what they are about, with that position.
    positioned: Vec<(String, Diagnostic)>,
}

impl<'a, 'n, 'f> Importer<'a, 'n, 'f> {
    pub(super) fn new(docs: &'a [Doc<'n>], d: Decoder<'f>, file: &str, opts: Options) -> Self {
        Self {
            docs,
            d,
            used: HashSet::new(),
            opts,
            used_rules: HashSet::new(),
            file: file.to_string(),
            current: Current::default(),
            pending: Vec::new(),
            positioned: Vec::new(),
        }
    }

    /// A note on what could not carry over, naming where it was written
    /// (`file:line:col: SLO x: path: ...`); `--strict` makes it an error.
    pub(super) fn note_at(&mut self, doc: &str, loc: Loc, path: &str, message: String) {
        let diag = Diagnostic {
            file: self.file.clone(),
            line: loc.line,
            col: loc.col,
            path: document_path(doc, path),
            message,
            help: None,
        };
        let text = diag.to_string();
        self.pending.push(text.clone());
        self.positioned.push((text, diag));
    }

    /// Every note of an SLO as a diagnostic, for `--strict`.
    /// `at` names the SLO (`SLO x`, or `Sloth service y: slos[0]`).
    pub(super) fn note_diags(&self, notes: &[String], at: &str, loc: Loc) -> Vec<Diagnostic> {
        notes
            .iter()
            .map(|n| {
                self.positioned
                    .iter()
                    .find(|(t, _)| t == n)
                    .map(|(_, d)| d.clone())
                    .unwrap_or_else(|| Diagnostic {
                        file: self.file.clone(),
                        line: loc.line,
                        col: loc.col,
                        path: at.to_string(),
                        message: n.clone(),
                        help: None,
                    })
            })
            .collect()
    }

    // --- problems and typed access, at a path inside document `doc` -------

    fn error(&mut self, doc: &str, loc: Loc, path: &str, message: impl Into<String>) {
        self.d.error(loc, &document_path(doc, path), message);
    }

    fn error_help(
        &mut self,
        doc: &str,
        loc: Loc,
        path: &str,
        message: impl Into<String>,
        help: impl Into<String>,
    ) {
        self.d
            .error_help(loc, &document_path(doc, path), message, help);
    }

    fn type_error(&mut self, doc: &str, n: &Node, path: &str, expected: &str) {
        self.d.type_error(n, &document_path(doc, path), expected);
    }

    /// Whether `n` is a mapping; null is an empty one, whose required
    /// fields are then reported as missing.
    fn is_map(&mut self, doc: &str, n: &Node, path: &str) -> bool {
        let ok = matches!(n.value, Value::Map(_) | Value::Null);
        if !ok {
            self.type_error(doc, n, path, "a mapping");
        }
        ok
    }

    fn string<'x>(&mut self, doc: &str, n: &'x Node, path: &str) -> Option<&'x str> {
        self.d.str(n, &document_path(doc, path))
    }

    fn number(&mut self, doc: &str, n: &Node, path: &str) -> Option<f64> {
        self.d.number(n, &document_path(doc, path))
    }

    /// A boolean; OpenSLO files often quote them (`"true"`).
    fn boolean(&mut self, doc: &str, n: &Node, path: &str) -> Option<bool> {
        match &n.value {
            Value::Bool(b) => Some(*b),
            Value::Str(s) if s == "true" || s == "false" => Some(s == "true"),
            _ => {
                self.type_error(doc, n, path, "true or false");
                None
            }
        }
    }

    /// A list; YAML files often leave an empty one as null (`alertPolicies:`),
    /// which is read as empty.
    fn list<'x>(&mut self, doc: &str, n: &'x Node, path: &str) -> Option<&'x [Node]> {
        if matches!(n.value, Value::Null) {
            return Some(&[]);
        }
        self.d.items(n, &document_path(doc, path))
    }

    /// `parent.key`, or an error naming it as missing.
    fn required<'x>(
        &mut self,
        doc: &str,
        parent: &'x Node,
        parent_path: &str,
        key: &str,
    ) -> Option<&'x Node> {
        let found = parent.get(key);
        if found.is_none() {
            self.error(
                doc,
                parent.loc,
                &join_path(parent_path, key),
                format!("missing required field `{key}`"),
            );
        }
        found
    }

    /// The document of `kind` named `name`, marked as used.
    fn find(&mut self, kind: &'static str, name: &str) -> Option<&'a Doc<'n>> {
        let docs = self.docs;
        let found = docs.iter().find(|d| d.kind == kind && d.name == name)?;
        self.used.insert((kind, name.to_string()));
        Some(found)
    }

    /// A duration shorthand (`5m`, `28d`, `1M`) as its number and unit.
    fn shorthand(&mut self, doc: &str, n: &Node, path: &str) -> Option<(u64, char)> {
        let parsed = match &n.value {
            Value::Str(s) => parse_shorthand(s),
            Value::Int(0) => Some((0, 'm')),
            _ => None,
        };
        if parsed.is_none() {
            self.error_help(
                doc,
                n.loc,
                path,
                format!("{} is not an OpenSLO duration", describe(n)),
                "write a whole number and one of m, h, d, w, M, Q, Y: `5m`, `28d`, `4w`, `1M`",
            );
        }
        parsed
    }

    // --- SLO ---------------------------------------------------------------

    pub(super) fn slo(&mut self, d: &'a Doc<'n>) -> Option<Entry> {
        let doc = d.label.as_str();
        let errors_before = self.d.diags.len();
        let mut notes = Vec::new();
        if !is_name(&d.name) {
            let loc = d
                .node
                .get("metadata")
                .and_then(|m| m.get("name"))
                .map_or(d.loc, |n| n.loc);
            self.error_help(
                doc,
                loc,
                "metadata.name",
                format!("`{}` is not a valid Levee SLO name", d.name),
                "use letters, digits, `-`, `_` and `.`",
            );
        }
        let spec = self.required(doc, d.node, "", "spec")?;
        if !self.is_map(doc, spec, "spec") {
            return None;
        }
        let text = |n: Option<&Node>| match n {
            Some(Node {
                value: Value::Str(s),
                ..
            }) => Some(s.clone()),
            _ => None,
        };
        self.current = Current {
            slo: d.name.clone(),
            sli: text(spec.get("indicatorRef")).or_else(|| {
                text(
                    spec.get("indicator")
                        .and_then(|i| i.get("metadata"))
                        .and_then(|m| m.get("name")),
                )
            }),
            service: text(spec.get("service")),
        };
        self.pending.clear();
        let indicator = self.indicator(doc, spec);
        notes.append(&mut self.pending);
        let period = self.period(doc, spec, &mut notes);
        let budgeting = self.budgeting(doc, spec, &mut notes);
        // When the SLI is broken, its shape still decides how objectives
        // are checked, so their problems are reported in the same run.
        let kind = indicator
            .as_ref()
            .map(|i| i.kind)
            .or_else(|| self.sli_shape(spec));
        let objectives = self.objectives(doc, spec, kind, &mut notes);
        let (labels, runbook) = self.metadata(doc, d.node, spec, &mut notes);
        let max_window = Period::max_len(period.unwrap_or(None));
        let alerting = self.alerting(doc, spec, max_window, &mut notes);
        let description = match spec.get("description") {
            Some(n) => self.string(doc, n, "spec.description").map(str::to_string),
            None => None,
        }
        .or_else(
            || match d.node.get("metadata").and_then(|m| m.get("displayName")) {
                Some(Node {
                    value: Value::Str(s),
                    ..
                }) => Some(s.clone()),
                _ => None,
            },
        )
        .or_else(|| {
            let names = &objectives.as_ref()?.1;
            (!names.is_empty()).then(|| names.join("; "))
        });
        if self.d.diags.len() > errors_before {
            return None;
        }
        let indicator = indicator?;
        if indicator.scope == Scope::default() {
            notes.push(
                "The Levee metric source names no route, tier, tenant or cluster: this SLO covers every routed request."
                    .into(),
            );
        }
        notes.append(&mut self.pending);
        let note_diags = self.note_diags(&notes, doc, d.loc);
        Some(Entry {
            origin: format!("{} (line {})", d.label, d.loc.line),
            note_diags,
            notes,
            name: d.name.clone(),
            description,
            indicator,
            objectives: objectives?.0,
            period: period?,
            budgeting: budgeting?,
            runbook: runbook?,
            labels: labels?,
            alerting: alerting?,
        })
    }

    // --- period and budgeting ----------------------------------------------

    /// `Some(None)`: no time window; `None`: an error was reported.
    fn period(
        &mut self,
        doc: &str,
        spec: &Node,
        notes: &mut Vec<String>,
    ) -> Option<Option<Period>> {
        let missing = "No timeWindow: Levee's default period of 30d applies.";
        let Some(tw) = spec.get("timeWindow") else {
            notes.push(missing.into());
            return Some(None);
        };
        let items = self.list(doc, tw, "spec.timeWindow")?;
        let w = match items {
            [] => {
                notes.push(missing.into());
                return Some(None);
            }
            [w] => w,
            _ => {
                self.error(
                    doc,
                    tw.loc,
                    "spec.timeWindow",
                    format!(
                        "Levee measures one period; found {} time windows",
                        items.len()
                    ),
                );
                return None;
            }
        };
        let wpath = "spec.timeWindow[0]";
        if !self.is_map(doc, w, wpath) {
            return None;
        }
        let dpath = format!("{wpath}.duration");
        let dur = self.required(doc, w, wpath, "duration")?;
        let (n, unit) = self.shorthand(doc, dur, &dpath)?;
        let calendar = w.get("calendar");
        let rolling = match w.get("isRolling") {
            Some(b) => self.boolean(doc, b, &format!("{wpath}.isRolling"))?,
            None => calendar.is_none(),
        };
        let text = format!("{n}{unit}");
        if !rolling {
            if (n, unit) != (1, 'M') {
                self.error_help(
                    doc,
                    dur.loc,
                    &dpath,
                    format!("a calendar-aligned window of `{text}` cannot be mapped: Levee's calendar period is one month"),
                    "use `duration: 1M` with `isRolling: false`, or a rolling window such as `28d` with `isRolling: true`",
                );
                return None;
            }
            let tz = calendar.and_then(|c| c.get("timeZone"));
            if let Some(Node {
                value: Value::Str(tz),
                loc,
            }) = tz
            {
                if !matches!(tz.as_str(), "UTC" | "Etc/UTC" | "GMT" | "Etc/GMT" | "Z") {
                    self.note_at(
                        doc,
                        *loc,
                        &format!("{wpath}.calendar.timeZone"),
                        format!("Levee's calendar months run in UTC; the time zone {tz} is not applied."),
                    );
                }
            }
            return Some(Some(Period::CalendarMonth));
        }
        if let Some(c) = calendar {
            self.note_at(
                doc,
                c.loc,
                &format!("{wpath}.calendar"),
                "the calendar of a rolling time window is not used.".into(),
            );
        }
        let len = shorthand_len(n, unit);
        if matches!(unit, 'M' | 'Q' | 'Y') {
            self.note_at(
                doc,
                dur.loc,
                &dpath,
                format!(
                    "the rolling window `{text}` is read as {} (a month is 30 days, a quarter 90, a year 365, as OpenSLO's reference library counts them).",
                    len.map_or("?".to_string(), format_duration)
                ),
            );
        }
        match len {
            Some(len) if PERIODS.contains(&len) => Some(Some(Period::Rolling(len))),
            _ => {
                self.error_help(
                    doc,
                    dur.loc,
                    &dpath,
                    format!("a period must be from 1h to 366d, got `{text}`"),
                    "`28d` and `30d` are usual; a calendar month is `duration: 1M` with `isRolling: false`",
                );
                None
            }
        }
    }

    /// `budgetingMethod`, with the time slice and its target for
    /// `Timeslices` and `RatioTimeslices` (from the objectives'
    /// `timeSliceWindow` and `timeSliceTarget`, which Levee has once per SLO).
    fn budgeting(&mut self, doc: &str, spec: &Node, notes: &mut Vec<String>) -> Option<Budgeting> {
        let path = "spec.budgetingMethod";
        let help = "the methods are `Occurrences`, `Timeslices` and `RatioTimeslices`";
        let Some(n) = spec.get("budgetingMethod") else {
            self.error_help(
                doc,
                spec.loc,
                path,
                "missing required field `budgetingMethod`",
                help,
            );
            return None;
        };
        let m = self.string(doc, n, path)?;
        let method = m.to_ascii_lowercase();
        if !matches!(
            method.as_str(),
            "occurrences" | "timeslices" | "ratiotimeslices"
        ) {
            self.error_help(
                doc,
                n.loc,
                path,
                format!("unknown budgeting method `{m}`"),
                help,
            );
            return None;
        }
        // Every objective's slice settings, as (window, target).
        let mut windows: Vec<(Duration, Loc, String)> = Vec::new();
        let mut targets: Vec<(u32, Loc, String)> = Vec::new();
        let mut ok = true;
        if let Some(Node {
            value: Value::Seq(items),
            ..
        }) = spec.get("objectives")
        {
            for (i, o) in items.iter().enumerate() {
                let Value::Map(entries) = &o.value else {
                    continue;
                };
                for (k, _, v) in entries {
                    let p = format!("spec.objectives[{i}].{k}");
                    if k.eq_ignore_ascii_case("timeSliceWindow") {
                        let d = match &v.value {
                            Value::Str(s) => crate::parse_duration(s).ok().filter(|d| !d.is_zero()),
                            _ => None,
                        };
                        match d {
                            Some(d) => windows.push((d, v.loc, p)),
                            None => {
                                self.error_help(
                                    doc,
                                    v.loc,
                                    &p,
                                    format!("{} is not a time slice width", describe(v)),
                                    "write a duration such as `1m` or `5m`",
                                );
                                ok = false;
                            }
                        }
                    } else if k.eq_ignore_ascii_case("timeSliceTarget") {
                        let ppm = self.number(doc, v, &p).map(|x| (x * 1e6).round());
                        match ppm {
                            Some(ppm) if (1.0..1e6).contains(&ppm) => {
                                targets.push((ppm as u32, v.loc, p))
                            }
                            Some(_) => {
                                self.error_help(
                                    doc,
                                    v.loc,
                                    &p,
                                    "a time slice target must be above 0 and below 1",
                                    "for example `timeSliceTarget: 0.95`",
                                );
                                ok = false;
                            }
                            None => ok = false,
                        }
                    }
                }
            }
        }
        for (what, values) in [
            (
                "timeSliceWindow",
                windows
                    .iter()
                    .map(|w| (w.0.as_nanos() as u64, w.1, &w.2))
                    .collect::<Vec<_>>(),
            ),
            (
                "timeSliceTarget",
                targets
                    .iter()
                    .map(|t| (u64::from(t.0), t.1, &t.2))
                    .collect(),
            ),
        ] {
            if let Some((first, _, first_path)) = values.first() {
                if let Some((_, loc, p)) = values.iter().find(|(v, _, _)| v != first) {
                    let p = (*p).clone();
                    let first_path = (*first_path).clone();
                    self.error(
                        doc,
                        *loc,
                        &p,
                        format!("Levee has one {what} per SLO; {first_path} gives another"),
                    );
                    ok = false;
                }
            }
        }
        if !ok {
            return None;
        }
        let window = windows.first().map(|w| w.0);
        let target = targets.first().map(|t| t.0);
        let missing = |this: &mut Self, key: &str, example: &str| {
            this.error_help(
                doc,
                n.loc,
                path,
                format!("`{m}` needs the objectives' `{key}`"),
                format!("add `{key}: {example}` to the objective"),
            );
        };
        match method.as_str() {
            "occurrences" => {
                if window.is_some() || target.is_some() {
                    notes.push("The objectives' timeSliceWindow and timeSliceTarget are not used: the budget counts occurrences.".into());
                }
                Some(Budgeting::Occurrences)
            }
            "timeslices" => match (window, target) {
                (Some(slice), Some(target_ppm)) => {
                    Some(Budgeting::Timeslices { slice, target_ppm })
                }
                (None, _) => {
                    missing(self, "timeSliceWindow", "1m");
                    None
                }
                (_, None) => {
                    missing(self, "timeSliceTarget", "0.95");
                    None
                }
            },
            _ => match window {
                Some(slice) => {
                    if target.is_some() {
                        notes.push("timeSliceTarget is not used: with RatioTimeslices each slice counts by its ratio.".into());
                    }
                    Some(Budgeting::RatioTimeslices { slice })
                }
                None => {
                    missing(self, "timeSliceWindow", "1m");
                    None
                }
            },
        }
    }

    // --- objectives ----------------------------------------------------------

    /// The objectives as (threshold, ppm), and their display names.
    fn objectives(
        &mut self,
        doc: &str,
        spec: &Node,
        kind: Option<SliKind>,
        notes: &mut Vec<String>,
    ) -> Option<(Objectives, Vec<String>)> {
        let node = self.required(doc, spec, "spec", "objectives")?;
        let items = self.list(doc, node, "spec.objectives")?;
        if items.is_empty() {
            self.error(
                doc,
                node.loc,
                "spec.objectives",
                "needs at least one objective",
            );
            return None;
        }
        if matches!(
            kind,
            Some(SliKind::Availability { .. } | SliKind::LatencyRatio { .. })
        ) && items.len() > 1
        {
            self.error_help(
                doc,
                node.loc,
                "spec.objectives",
                format!("a ratio SLI has one objective in Levee, found {}", items.len()),
                "split it into one SLO per objective, or measure latency with a thresholdMetric and one `value` per objective",
            );
            return None;
        }
        let mut out = Vec::new();
        let mut names = Vec::new();
        let mut ok = true;
        let mut seen: Vec<(Duration, String)> = Vec::new();
        let mut ignored_op = false;
        for (i, o) in items.iter().enumerate() {
            let p = format!("spec.objectives[{i}]");
            if !self.is_map(doc, o, &p) {
                ok = false;
                continue;
            }
            if let Some(n) = o.get("displayName") {
                match self.string(doc, n, &join_path(&p, "displayName")) {
                    Some(s) => names.push(s.to_string()),
                    None => ok = false,
                }
            }
            let ppm = self.target(doc, o, &p);
            let threshold = match kind {
                Some(SliKind::LatencyThreshold { unit_ms }) => {
                    match self.threshold(doc, o, &p, unit_ms) {
                        Some(t) => {
                            let vpath = join_path(&p, "value");
                            if let Some((_, first)) = seen.iter().find(|(d, _)| *d == t) {
                                let first = first.clone();
                                self.error(
                                    doc,
                                    o.get("value").map_or(o.loc, |v| v.loc),
                                    &vpath,
                                    format!(
                                        "threshold {} is already the objective at {first}",
                                        format_duration(t)
                                    ),
                                );
                                ok = false;
                            }
                            seen.push((t, vpath));
                            Some(t)
                        }
                        None => {
                            ok = false;
                            None
                        }
                    }
                }
                Some(SliKind::LatencyRatio { threshold }) => Some(threshold),
                _ => None,
            };
            if !matches!(kind, Some(SliKind::LatencyThreshold { .. }))
                && (o.get("op").is_some() || o.get("value").is_some())
            {
                ignored_op = true;
            }
            match ppm {
                Some(ppm) => out.push((threshold, ppm)),
                None => ok = false,
            }
        }
        if ignored_op && kind.is_some() {
            notes.push(
                "The objectives' `op` and `value` are not used: a ratio SLI's objective is its target alone."
                    .into(),
            );
        }
        ok.then_some((out, names))
    }

    /// `target` or `targetPercent` in parts per million.
    fn target(&mut self, doc: &str, o: &Node, p: &str) -> Option<u32> {
        let (n, path, scale) = match (o.get("target"), o.get("targetPercent")) {
            (Some(_), Some(tp)) => {
                self.error(
                    doc,
                    tp.loc,
                    &join_path(p, "targetPercent"),
                    "give `target` or `targetPercent`, not both",
                );
                return None;
            }
            (Some(t), None) => (t, join_path(p, "target"), 1e6),
            (None, Some(tp)) => (tp, join_path(p, "targetPercent"), 1e4),
            (None, None) => {
                self.error_help(
                    doc,
                    o.loc,
                    p,
                    "missing `target` or `targetPercent`",
                    "for example `target: 0.999` or `targetPercent: 99.9`",
                );
                return None;
            }
        };
        let v = self.number(doc, n, &path)?;
        let ppm = (v * scale).round();
        if !(1.0..1e6).contains(&ppm) {
            let range = if scale == 1e6 {
                "above 0 and below 1"
            } else {
                "above 0 and below 100"
            };
            self.error_help(
                doc,
                n.loc,
                &path,
                format!("the target must be {range}, to a millionth; got {v}"),
                "a target of 100% leaves no error budget; `target: 0.999` allows 43 min of errors in 30 days",
            );
            return None;
        }
        Some(ppm as u32)
    }

    /// A thresholdMetric objective's `op` and `value` as a latency threshold.
    fn threshold(&mut self, doc: &str, o: &Node, p: &str, unit_ms: f64) -> Option<Duration> {
        let help = "an answer is good when its latency is at most `value` (milliseconds unless the Levee metric source sets `unit: s`): write `op: lte`";
        let op_ok = match o.get("op") {
            None => {
                self.error_help(doc, o.loc, &join_path(p, "op"), "missing `op`", help);
                false
            }
            Some(n) => match self.string(doc, n, &join_path(p, "op")) {
                Some("lt" | "lte") => true,
                Some(op) => {
                    self.error_help(
                        doc,
                        n.loc,
                        &join_path(p, "op"),
                        format!("`op: {op}` cannot be mapped: a Levee latency objective counts answers at or below the threshold"),
                        help,
                    );
                    false
                }
                None => false,
            },
        };
        let vpath = join_path(p, "value");
        let value = match o.get("value") {
            None => {
                self.error_help(doc, o.loc, &vpath, "missing `value`", help);
                None
            }
            Some(n) => self.number(doc, n, &vpath).map(|v| (v, n.loc)),
        };
        let (v, vloc) = value?;
        let nanos = (v * unit_ms * 1e6).round();
        if !(1.0..=3600e9).contains(&nanos) {
            self.error_help(
                doc,
                vloc,
                &vpath,
                format!("a latency threshold must be above 0 and at most an hour, got {v}"),
                help,
            );
            return None;
        }
        op_ok.then(|| Duration::from_nanos(nanos as u64))
    }

    // --- metadata --------------------------------------------------------------

    /// Labels (with `spec.service`) and the runbook; each `None` on error.
    fn metadata(
        &mut self,
        doc: &str,
        node: &Node,
        spec: &Node,
        notes: &mut Vec<String>,
    ) -> (Option<Labels>, Option<Option<String>>) {
        let mut labels = Vec::new();
        let mut labels_ok = true;
        let mut runbook: Option<(String, String)> = None;
        let mut runbook_ok = true;
        let metadata = node.get("metadata");
        if let Some(l) = metadata.and_then(|m| m.get("labels")) {
            match &l.value {
                Value::Map(entries) => {
                    for (k, kloc, v) in entries {
                        let p = format!("metadata.labels.{k}");
                        match self.label(doc, k, *kloc, v, &p, notes) {
                            Some(value) => labels.push((k.clone(), value)),
                            None => labels_ok = false,
                        }
                    }
                }
                Value::Null => {}
                _ => {
                    self.type_error(doc, l, "metadata.labels", "a mapping of label: value");
                    labels_ok = false;
                }
            }
        }
        if let Some(s) = spec.get("service") {
            match self.string(doc, s, "spec.service") {
                Some(service) => {
                    match labels.iter().find(|(k, _)| k == "service") {
                        Some((_, v)) if v != service => {
                            self.error(
                            doc,
                            s.loc,
                            "spec.service",
                            format!("becomes the label `service`, but metadata.labels.service is `{v}`"),
                        );
                            labels_ok = false;
                        }
                        Some(_) => {}
                        None => labels.push(("service".into(), service.to_string())),
                    }
                }
                None => labels_ok = false,
            }
        }
        if let Some(a) = metadata.and_then(|m| m.get("annotations")) {
            if let Value::Map(entries) = &a.value {
                for (k, _, v) in entries {
                    let short = k.rsplit('/').next().unwrap_or(k);
                    if !["runbook", "runbook_url", "runbook-url", "runbookurl"]
                        .iter()
                        .any(|r| r.eq_ignore_ascii_case(short))
                    {
                        continue;
                    }
                    let p = format!("metadata.annotations.{k}");
                    let Some(url) = self.string(doc, v, &p) else {
                        runbook_ok = false;
                        continue;
                    };
                    if !(url.starts_with("https://") || url.starts_with("http://")) {
                        self.error_help(
                            doc,
                            v.loc,
                            &p,
                            "a runbook must be an http(s) URL",
                            "for example `https://wiki.example.com/runbooks/checkout`",
                        );
                        runbook_ok = false;
                        continue;
                    }
                    match &runbook {
                        Some((first, fpath)) if first != url => {
                            let fpath = fpath.clone();
                            self.error(
                                doc,
                                v.loc,
                                &p,
                                format!("a second runbook; {fpath} already gives one"),
                            );
                            runbook_ok = false;
                        }
                        Some(_) => {}
                        None => runbook = Some((url.to_string(), p)),
                    }
                }
            }
        }
        (
            labels_ok.then_some(labels),
            runbook_ok.then(|| runbook.map(|(url, _)| url)),
        )
    }

    fn label(
        &mut self,
        doc: &str,
        key: &str,
        kloc: Loc,
        v: &Node,
        p: &str,
        notes: &mut Vec<String>,
    ) -> Option<String> {
        if !is_label_name(key) {
            let suggestion: String = key
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                .collect();
            self.error_help(
                doc,
                kloc,
                p,
                format!("`{key}` is not a valid Prometheus label name"),
                format!(
                    "use letters, digits and `_`, not starting with a digit or `__`, such as `{}`",
                    suggestion.trim_start_matches('_')
                ),
            );
            return None;
        }
        if crate::RESERVED_SLO_LABELS.contains(&key) {
            self.error_help(
                doc,
                kloc,
                p,
                format!("`{key}` is a label Levee sets itself"),
                format!(
                    "rename it; the reserved labels are {}",
                    crate::RESERVED_SLO_LABELS.join(", ")
                ),
            );
            return None;
        }
        match &v.value {
            Value::Seq(items) => {
                let mut parts = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    parts.push(self.scalar_text(doc, item, &format!("{p}[{i}]"))?);
                }
                let joined = parts.join(",");
                if parts.len() > 1 {
                    notes.push(format!(
                        "The label `{key}` has several values; they are joined as `{joined}`."
                    ));
                }
                Some(joined)
            }
            _ => self.scalar_text(doc, v, p),
        }
    }

    fn scalar_text(&mut self, doc: &str, v: &Node, p: &str) -> Option<String> {
        match &v.value {
            Value::Str(s) => Some(s.clone()),
            Value::Int(i) => Some(i.to_string()),
            Value::Float(f) => Some(f.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => {
                self.type_error(doc, v, p, "a string");
                None
            }
        }
    }
}

// ---------------------------------------------------------------------------
// OpenSLO durations.
// ---------------------------------------------------------------------------

/// An OpenSLO duration shorthand: digits then one of `m h d w M Q Y`.
fn parse_shorthand(s: &str) -> Option<(u64, char)> {
    let unit = s.chars().last()?;
    if !"mhdwMQY".contains(unit) {
        return None;
    }
    let digits = &s[..s.len() - 1];
    if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    Some((digits.parse().ok()?, unit))
}

/// The length of a shorthand; `None` when longer than 100 years.
fn shorthand_len(count: u64, unit: char) -> Option<Duration> {
    let secs = match unit {
        'm' => 60,
        'h' => 3600,
        'd' => DAY,
        'w' => 7 * DAY,
        'M' => 30 * DAY,
        'Q' => 90 * DAY,
        _ => 365 * DAY,
    };
    count
        .checked_mul(secs)
        .filter(|s| *s <= 100 * 365 * DAY)
        .map(Duration::from_secs)
}

fn describe(n: &Node) -> String {
    match &n.value {
        Value::Str(s) => format!("`{s}`"),
        Value::Int(i) => format!("the bare number {i}"),
        other => other.type_name().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shorthands() {
        assert_eq!(parse_shorthand("28d"), Some((28, 'd')));
        assert_eq!(parse_shorthand("1M"), Some((1, 'M')));
        assert_eq!(parse_shorthand("0m"), Some((0, 'm')));
        for bad in ["", "d", "1.5h", "1s", "-1d", "1dd", "28 d"] {
            assert_eq!(parse_shorthand(bad), None, "{bad}");
        }
        assert_eq!(shorthand_len(4, 'w'), Some(Duration::from_secs(28 * DAY)));
        assert_eq!(shorthand_len(u64::MAX, 'Y'), None);
    }
}
