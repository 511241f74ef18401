//! `levee slo import`: OpenSLO v1 documents into Levee's `[[slos]]`.
//!
//! The input is one YAML file of `apiVersion: openslo/v1` documents,
//! separated by `---` (a document that is a list of objects also works).
//! Kinds `SLO`, `SLI`, `AlertPolicy` and `AlertCondition` are read;
//! `Service`, `DataSource`, `AlertNotificationTarget` and `BudgetAdjustment`
//! may appear and are skipped (a `DataSource` is consulted only to find the
//! `type` of a metric source that names it by `metricSourceRef`). The output
//! is TOML to paste into a Levee config: a header comment naming the input,
//! then one `[[slos]]` entry per SLO, each preceded by `#` notes on what was
//! approximated or ignored. Anything that cannot be mapped is an error; every
//! error in the file is reported in one run, as
//! `file:line:col: Kind name: field.path: message` with a `help:` line where
//! a fix is likely.
//!
//! # The Levee metric source
//!
//! Levee measures its SLIs itself, from the requests it routes, so a metric
//! source cannot be a query. Every metric source of an imported SLI must be
//! `type: Levee` (any case; or a `metricSourceRef` to a `DataSource` of that
//! type), and its `spec` says which traffic it covers:
//!
//! ```yaml
//! metricSource:
//!   type: Levee
//!   spec:
//!     route: checkout          # any of route, tier (core/optional), tenant,
//!     tier: core               # cluster; none means every routed request
//!     sli: availability        # or latency; optional, must match the metric
//!     rate_limited_is_bad: false  # availability only
//!     threshold: 300ms         # latency ratioMetric only
//!     unit: ms                 # thresholdMetric only: ms (default) or s
//! ```
//!
//! In a `ratioMetric`, `good`, `bad`, `total` and `raw` must all carry the
//! same Levee spec: Levee counts good and all events over the same requests.
//!
//! # Mapping
//!
//! | OpenSLO | Levee |
//! |---|---|
//! | SLO `metadata.name` | `name` (letters, digits, `-`, `_`, `.`) |
//! | `spec.description`, else `metadata.displayName`, else the objectives' `displayName`s | `description` |
//! | `spec.indicator` or `spec.indicatorRef` (an SLI in the same file) | the SLI below |
//! | `ratioMetric` | `sli = "availability"` (`sli: latency` with `threshold` in the Levee spec: a latency SLO with that one threshold) |
//! | `thresholdMetric` | `sli = "latency"`; each objective's `op` is `lt`/`lte` and its `value` the threshold in `unit` |
//! | Levee spec `route`, `tier`, `tenant`, `cluster` | the same scope selectors |
//! | `timeWindow` rolling `m`/`h`/`d`/`w` | `period` (`w` = 7 days), 1h to 366d |
//! | `timeWindow` rolling `M`/`Q`/`Y` | `period` of 30/90/365 days per unit, as OpenSLO's reference library counts them, with a note |
//! | `timeWindow` calendar `1M` (`isRolling: false`) | `period = "calendar_month"` (UTC; another `timeZone` gets a note) |
//! | other calendar windows | error |
//! | no `timeWindow` | no `period` (Levee's 30d default), with a note |
//! | `budgetingMethod: Occurrences` | (how Levee budgets) |
//! | `Timeslices`, `RatioTimeslices` | error |
//! | objective `target` (0.999) or `targetPercent` (99.9) | `objective = "99.9%"`, to a millionth |
//! | several objectives | `objectives = [{ threshold, objective }, ...]` (thresholdMetric only; a ratio SLI has one) |
//! | `metadata.labels` | `labels` (Prometheus label names; a list value is joined with `,`) |
//! | `spec.service` | `labels.service` |
//! | annotation `runbook`, `runbook_url`, `runbook-url` or `runbookUrl` (any prefix) | `runbook` (an http(s) URL) |
//! | `alertPolicies` (inline, `alertPolicyRef` or a plain name) with conditions inline or by `conditionRef` | `alerting` |
//! | condition `kind: burnrate`, `op: gt`/`gte` | one burn-rate rule |
//! | `threshold` | `factor` |
//! | `lookbackWindow` | `long`; `short` is a twelfth of it, the SRE Workbook's ratio (1h and 5m) |
//! | `alertAfter` | `pending_for` (one per SLO: the shortest, with a note when they differ) |
//! | `severity` page, critical, high / ticket, warning, medium, low | `page` / `ticket` rules; others are errors |
//! | no `alertPolicies` | no `alerting` (the Workbook's default rules), with a note |
//! | `notificationTargets`, `alertWhenNoData` | ignored with a note: Levee's webhooks are global in `[alerting]` |
//! | `alertWhenBreaching: false` | the policy is skipped, with a note |
//!
//! Route and cluster names cannot be checked here; `levee check` checks
//! them once the entries are in a config.

use levee_config::node::{Loc, Node, Value};
use levee_config::{format_duration, parse_duration};
use std::collections::HashSet;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

/// The `[[slos]]` TOML for the OpenSLO documents in `path`, or every
/// problem found.
pub(crate) fn import_file(path: &Path) -> Result<String, Vec<String>> {
    let file = path.display().to_string();
    let src = std::fs::read_to_string(path)
        .map_err(|e| vec![format!("{file}: cannot read the OpenSLO file: {e}")])?;
    import_str(&src, &file)
}

/// Converts OpenSLO YAML text; `file` names it in messages and the header.
fn import_str(src: &str, file: &str) -> Result<String, Vec<String>> {
    let roots = levee_config::node::parse_yaml_documents(src).map_err(|e| {
        vec![format!(
            "{file}:{}:{}: not valid YAML: {}",
            e.loc.line, e.loc.col, e.message
        )]
    })?;
    let mut report = Report {
        file: file.to_string(),
        problems: Vec::new(),
        errors: 0,
    };
    let docs = index_documents(&mut report, &roots);
    let mut imp = Importer {
        docs: &docs,
        report,
        used: HashSet::new(),
    };
    let mut entries = Vec::new();
    for d in docs.iter().filter(|d| d.kind == "SLO") {
        if let Some(e) = imp.slo(d) {
            entries.push(e);
        }
    }
    let mut problems = std::mem::take(&mut imp.report.problems);
    problems.sort_by_key(|(loc, _)| (loc.line, loc.col));
    let mut problems: Vec<String> = problems.into_iter().map(|(_, p)| p).collect();
    if !docs.iter().any(|d| d.kind == "SLO") {
        problems.push(format!(
            "{file}: no OpenSLO SLO document found\n  help: an OpenSLO v1 file holds documents such as `apiVersion: openslo/v1` with `kind: SLO`, separated by `---`"
        ));
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let mut header_notes = Vec::new();
    let mut skipped = Vec::new();
    for d in &docs {
        let key = (d.kind, d.name.clone());
        match d.kind {
            "SLI" | "AlertPolicy" | "AlertCondition" if !imp.used.contains(&key) => {
                header_notes.push(format!(
                    "{} (line {}) is not used by any SLO; not imported.",
                    d.label, d.loc.line
                ));
            }
            "Service" | "AlertNotificationTarget" | "BudgetAdjustment" => skipped.push(&d.label),
            _ => {}
        }
    }
    if !skipped.is_empty() {
        let list: Vec<&str> = skipped.iter().map(|s| s.as_str()).collect();
        header_notes.push(format!(
            "Skipped, Levee has no counterpart: {}.",
            list.join(", ")
        ));
    }
    Ok(render(file, &header_notes, &entries))
}

// ---------------------------------------------------------------------------
// Documents and problems.
// ---------------------------------------------------------------------------

/// The kinds of OpenSLO v1, as written.
const KINDS: [&str; 8] = [
    "SLO",
    "SLI",
    "AlertPolicy",
    "AlertCondition",
    "AlertNotificationTarget",
    "Service",
    "DataSource",
    "BudgetAdjustment",
];

/// One OpenSLO object with a known kind and name.
struct Doc<'n> {
    kind: &'static str,
    name: String,
    /// `Kind name`, how messages name the document.
    label: String,
    node: &'n Node,
    loc: Loc,
}

/// Every problem found, formatted, in the order found.
struct Report {
    file: String,
    /// Each with where it was found, for sorting by position.
    problems: Vec<(Loc, String)>,
    /// Errors raised, repeats included (a shared SLI's problem is listed
    /// once but fails every SLO using it).
    errors: usize,
}

impl Report {
    fn push(&mut self, loc: Loc, doc: &str, path: &str, message: &str, help: Option<&str>) {
        self.errors += 1;
        let mut p = format!("{}:{}:{}: ", self.file, loc.line, loc.col);
        for part in [doc, path] {
            if !part.is_empty() {
                p.push_str(part);
                p.push_str(": ");
            }
        }
        p.push_str(message);
        if let Some(help) = help {
            p.push_str("\n  help: ");
            p.push_str(help);
        }
        if !self.problems.iter().any(|(_, q)| *q == p) {
            self.problems.push((loc, p));
        }
    }
}

/// Checks each document's envelope (`apiVersion`, `kind`, `metadata.name`)
/// and indexes the good ones.
fn index_documents<'n>(r: &mut Report, roots: &'n [Node]) -> Vec<Doc<'n>> {
    let mut candidates: Vec<(String, &Node)> = Vec::new();
    for (i, root) in roots.iter().enumerate() {
        match &root.value {
            Value::Null => {}
            Value::Seq(items) => {
                for (j, item) in items.iter().enumerate() {
                    candidates.push((format!("document {}, item {}", i + 1, j + 1), item));
                }
            }
            _ => candidates.push((format!("document {}", i + 1), root)),
        }
    }
    let mut docs: Vec<Doc<'n>> = Vec::new();
    for (at, node) in candidates {
        if !matches!(node.value, Value::Map(_)) {
            r.push(
                node.loc,
                &at,
                "",
                &format!(
                    "not an OpenSLO document: expected a mapping with `apiVersion`, `kind`, `metadata` and `spec`, found {}",
                    node.value.type_name()
                ),
                None,
            );
            continue;
        }
        match get(node, "apiVersion").map(|n| (n, &n.value)) {
            Some((_, Value::Str(v))) if v == "openslo/v1" => {}
            Some((n, Value::Str(v))) if v.starts_with("openslo/") => {
                r.push(
                    n.loc,
                    &at,
                    "apiVersion",
                    &format!("only OpenSLO v1 can be imported, found `{v}`"),
                    Some("write the documents as `apiVersion: openslo/v1`"),
                );
                continue;
            }
            Some((n, v)) => {
                let found = match v {
                    Value::Str(s) => format!("`{s}`"),
                    other => other.type_name().to_string(),
                };
                r.push(
                    n.loc,
                    &at,
                    "apiVersion",
                    &format!(
                        "not an OpenSLO document: the apiVersion is {found}, not `openslo/v1`"
                    ),
                    None,
                );
                continue;
            }
            None => {
                r.push(
                    node.loc,
                    &at,
                    "",
                    "not an OpenSLO document: missing `apiVersion`",
                    Some("OpenSLO v1 documents start with `apiVersion: openslo/v1` and a `kind` such as `SLO`"),
                );
                continue;
            }
        }
        let kind = match get(node, "kind") {
            Some(n) => match &n.value {
                Value::Str(k) => match KINDS.iter().find(|known| known.eq_ignore_ascii_case(k)) {
                    Some(known) => Some(*known),
                    None => {
                        r.push(
                            n.loc,
                            &at,
                            "kind",
                            &format!("unknown OpenSLO kind `{k}`"),
                            Some(&format!("the v1 kinds are {}", KINDS.join(", "))),
                        );
                        None
                    }
                },
                other => {
                    r.push(
                        n.loc,
                        &at,
                        "kind",
                        &format!("expected a string, found {}", other.type_name()),
                        None,
                    );
                    None
                }
            },
            None => {
                r.push(node.loc, &at, "kind", "missing required field `kind`", None);
                None
            }
        };
        let name = match get(node, "metadata").and_then(|m| get(m, "name")) {
            Some(Node {
                value: Value::Str(s),
                ..
            }) if !s.is_empty() => Some(s.clone()),
            Some(n) => {
                r.push(
                    n.loc,
                    &at,
                    "metadata.name",
                    &format!("expected a name, found {}", n.value.type_name()),
                    None,
                );
                None
            }
            None => {
                r.push(
                    node.loc,
                    &at,
                    "metadata.name",
                    "missing required field `metadata.name`",
                    None,
                );
                None
            }
        };
        let (Some(kind), Some(name)) = (kind, name) else {
            continue;
        };
        let label = format!("{kind} {name}");
        if let Some(first) = docs.iter().find(|d| d.kind == kind && d.name == name) {
            let first_line = first.loc.line;
            r.push(
                node.loc,
                &label,
                "metadata.name",
                &format!("a second {kind} named `{name}` (the first is on line {first_line})"),
                None,
            );
            continue;
        }
        docs.push(Doc {
            kind,
            name,
            label,
            node,
            loc: node.loc,
        });
    }
    docs
}

fn get<'n>(n: &'n Node, key: &str) -> Option<&'n Node> {
    match &n.value {
        Value::Map(entries) => entries.iter().find(|(k, _, _)| k == key).map(|(_, _, v)| v),
        _ => None,
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

// ---------------------------------------------------------------------------
// What an SLO becomes.
// ---------------------------------------------------------------------------

/// Objectives as (latency threshold, objective in ppm).
type Objectives = Vec<(Option<Duration>, u32)>;

/// Label names and values, in order.
type Labels = Vec<(String, String)>;

/// A Levee SLO ready to print.
struct Entry {
    /// `SLO name (line N)`.
    origin: String,
    notes: Vec<String>,
    name: String,
    description: Option<String>,
    indicator: Indicator,
    objectives: Objectives,
    period: Option<Period>,
    runbook: Option<String>,
    labels: Labels,
    alerting: Option<Alerting>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Period {
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
struct Indicator {
    kind: SliKind,
    scope: Scope,
}

#[derive(Debug, Clone, PartialEq, Default)]
struct Scope {
    route: Option<String>,
    tier: Option<String>,
    tenant: Option<String>,
    cluster: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum SliKind {
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

struct Alerting {
    pending_for: Duration,
    page: Vec<(Duration, Duration, u32)>,
    ticket: Vec<(Duration, Duration, u32)>,
}

/// The contents of one Levee metric source's `spec`.
#[derive(Debug, Clone, PartialEq, Default)]
struct Source {
    scope: Scope,
    sli: Option<&'static str>,
    rate_limited_is_bad: Option<bool>,
    threshold: Option<Duration>,
    unit: Option<&'static str>,
}

const DAY: u64 = 86_400;

const LEVEE_SOURCE_HELP: &str = "Levee measures its own traffic: use `type: Levee` with `spec.route`, `spec.tier`, `spec.tenant` or `spec.cluster` (and `spec.sli: availability` or `latency`)";

const SOURCE_KEYS: &str =
    "route, tier, tenant, cluster, sli, rate_limited_is_bad, threshold (latency ratioMetric), unit (thresholdMetric)";

// ---------------------------------------------------------------------------
// Mapping.
// ---------------------------------------------------------------------------

struct Importer<'a, 'n> {
    docs: &'a [Doc<'n>],
    report: Report,
    /// `(kind, name)` of every document an SLO used.
    used: HashSet<(&'static str, String)>,
}

impl<'a, 'n> Importer<'a, 'n> {
    // --- problems and typed access ---------------------------------------

    fn error(&mut self, doc: &str, loc: Loc, path: &str, message: impl AsRef<str>) {
        self.report.push(loc, doc, path, message.as_ref(), None);
    }

    fn error_help(
        &mut self,
        doc: &str,
        loc: Loc,
        path: &str,
        message: impl AsRef<str>,
        help: impl AsRef<str>,
    ) {
        self.report
            .push(loc, doc, path, message.as_ref(), Some(help.as_ref()));
    }

    fn type_error(&mut self, doc: &str, n: &Node, path: &str, expected: &str) {
        self.error(
            doc,
            n.loc,
            path,
            format!("expected {expected}, found {}", n.value.type_name()),
        );
    }

    fn is_map(&mut self, doc: &str, n: &Node, path: &str) -> bool {
        let ok = matches!(n.value, Value::Map(_));
        if !ok {
            self.type_error(doc, n, path, "a mapping");
        }
        ok
    }

    fn string<'x>(&mut self, doc: &str, n: &'x Node, path: &str) -> Option<&'x str> {
        match &n.value {
            Value::Str(s) => Some(s),
            _ => {
                self.type_error(doc, n, path, "a string");
                None
            }
        }
    }

    fn number(&mut self, doc: &str, n: &Node, path: &str) -> Option<f64> {
        match n.value {
            Value::Int(i) => Some(i as f64),
            Value::Float(f) if f.is_finite() => Some(f),
            _ => {
                self.type_error(doc, n, path, "a number");
                None
            }
        }
    }

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

    fn list<'x>(&mut self, doc: &str, n: &'x Node, path: &str) -> Option<&'x [Node]> {
        match &n.value {
            Value::Seq(items) => Some(items),
            _ => {
                self.type_error(doc, n, path, "a list");
                None
            }
        }
    }

    /// `parent.key`, or an error naming it as missing.
    fn required<'x>(
        &mut self,
        doc: &str,
        parent: &'x Node,
        parent_path: &str,
        key: &str,
    ) -> Option<&'x Node> {
        let found = get(parent, key);
        if found.is_none() {
            self.error(
                doc,
                parent.loc,
                &join(parent_path, key),
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

    fn slo(&mut self, d: &'a Doc<'n>) -> Option<Entry> {
        let doc = d.label.as_str();
        let errors_before = self.report.errors;
        let mut notes = Vec::new();
        if !valid_name(&d.name) {
            let loc = get(d.node, "metadata")
                .and_then(|m| get(m, "name"))
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
        let indicator = self.indicator(doc, spec);
        let period = self.period(doc, spec, &mut notes);
        self.budgeting(doc, spec);
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
        let description = match get(spec, "description") {
            Some(n) => self.string(doc, n, "spec.description").map(str::to_string),
            None => None,
        }
        .or_else(
            || match get(d.node, "metadata").and_then(|m| get(m, "displayName")) {
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
        if self.report.errors > errors_before {
            return None;
        }
        let indicator = indicator?;
        if indicator.scope == Scope::default() {
            notes.push(
                "The Levee metric source names no route, tier, tenant or cluster: this SLO covers every routed request."
                    .into(),
            );
        }
        Some(Entry {
            origin: format!("{} (line {})", d.label, d.loc.line),
            notes,
            name: d.name.clone(),
            description,
            indicator,
            objectives: objectives?.0,
            period: period?,
            runbook: runbook?,
            labels: labels?,
            alerting: alerting?,
        })
    }

    // --- SLI ---------------------------------------------------------------

    fn indicator(&mut self, doc: &str, spec: &Node) -> Option<Indicator> {
        match (get(spec, "indicator"), get(spec, "indicatorRef")) {
            (Some(_), Some(r)) => {
                self.error(
                    doc,
                    r.loc,
                    "spec.indicatorRef",
                    "give `indicator` or `indicatorRef`, not both",
                );
                None
            }
            (Some(inline), None) => {
                if !self.is_map(doc, inline, "spec.indicator") {
                    return None;
                }
                let s = self.required(doc, inline, "spec.indicator", "spec")?;
                self.sli_spec(doc, s, "spec.indicator.spec")
            }
            (None, Some(r)) => {
                let name = self.string(doc, r, "spec.indicatorRef")?;
                match self.find("SLI", name) {
                    Some(sli) => {
                        let s = self.required(&sli.label, sli.node, "", "spec")?;
                        self.sli_spec(&sli.label, s, "spec")
                    }
                    None => {
                        self.error_help(
                            doc,
                            r.loc,
                            "spec.indicatorRef",
                            format!("SLI `{name}` is not in this file"),
                            "add the SLI document to this file (separated by `---`), or write it inline as `spec.indicator`",
                        );
                        None
                    }
                }
            }
            (None, None) => {
                self.error_help(
                    doc,
                    spec.loc,
                    "spec",
                    "missing `indicator` or `indicatorRef`",
                    "name an SLI document with `indicatorRef`, or write it inline as `spec.indicator`",
                );
                None
            }
        }
    }

    /// The kind of SLI an SLO's indicator has by its shape alone.
    fn sli_shape(&self, spec: &Node) -> Option<SliKind> {
        let sli = match (get(spec, "indicator"), get(spec, "indicatorRef")) {
            (Some(inline), _) => get(inline, "spec")?,
            (
                None,
                Some(Node {
                    value: Value::Str(name),
                    ..
                }),
            ) => {
                let d = self
                    .docs
                    .iter()
                    .find(|d| d.kind == "SLI" && d.name == *name)?;
                get(d.node, "spec")?
            }
            _ => return None,
        };
        match (get(sli, "ratioMetric"), get(sli, "thresholdMetric")) {
            (Some(_), None) => Some(SliKind::Availability {
                rate_limited_is_bad: None,
            }),
            (None, Some(_)) => Some(SliKind::LatencyThreshold { unit_ms: 1.0 }),
            _ => None,
        }
    }

    /// An SLI's `spec` (`ratioMetric` or `thresholdMetric`) at `path` of `doc`.
    fn sli_spec(&mut self, doc: &str, s: &Node, path: &str) -> Option<Indicator> {
        if !self.is_map(doc, s, path) {
            return None;
        }
        match (get(s, "ratioMetric"), get(s, "thresholdMetric")) {
            (Some(_), Some(t)) => {
                self.error(
                    doc,
                    t.loc,
                    &join(path, "thresholdMetric"),
                    "give `ratioMetric` or `thresholdMetric`, not both",
                );
                None
            }
            (None, None) => {
                self.error_help(
                    doc,
                    s.loc,
                    path,
                    "missing `ratioMetric` or `thresholdMetric`",
                    "`ratioMetric` (good and total events) maps to an availability SLO, `thresholdMetric` to a latency SLO",
                );
                None
            }
            (Some(r), None) => self.ratio_metric(doc, r, &join(path, "ratioMetric")),
            (None, Some(t)) => {
                let tpath = join(path, "thresholdMetric");
                if !self.is_map(doc, t, &tpath) {
                    return None;
                }
                let ms = self.required(doc, t, &tpath, "metricSource")?;
                let mpath = join(&tpath, "metricSource");
                let (src, spec_loc) = self.levee_source(doc, ms, &mpath)?;
                let spath = join(&mpath, "spec");
                let mut ok = true;
                if src.sli == Some("availability") {
                    self.error_help(
                        doc,
                        spec_loc,
                        &join(&spath, "sli"),
                        "a thresholdMetric measures latency",
                        "set `sli: latency`, or measure availability with a ratioMetric",
                    );
                    ok = false;
                }
                if src.threshold.is_some() {
                    self.error_help(
                        doc,
                        spec_loc,
                        &join(&spath, "threshold"),
                        "a thresholdMetric takes its thresholds from the objectives",
                        "remove it and give each objective `op: lte` and `value` (milliseconds, or `unit`)",
                    );
                    ok = false;
                }
                if src.rate_limited_is_bad.is_some() {
                    self.error(
                        doc,
                        spec_loc,
                        &join(&spath, "rate_limited_is_bad"),
                        "only availability SLOs count 429s; a latency SLO counts every answer",
                    );
                    ok = false;
                }
                let unit_ms = if src.unit == Some("s") { 1000.0 } else { 1.0 };
                ok.then_some(Indicator {
                    kind: SliKind::LatencyThreshold { unit_ms },
                    scope: src.scope,
                })
            }
        }
    }

    fn ratio_metric(&mut self, doc: &str, r: &Node, rpath: &str) -> Option<Indicator> {
        if !self.is_map(doc, r, rpath) {
            return None;
        }
        let mut first: Option<(Source, Loc, String)> = None;
        let mut ok = true;
        for key in ["good", "bad", "total", "raw"] {
            let Some(part) = get(r, key) else { continue };
            let ppath = join(rpath, key);
            if !self.is_map(doc, part, &ppath) {
                ok = false;
                continue;
            }
            let Some(ms) = self.required(doc, part, &ppath, "metricSource") else {
                ok = false;
                continue;
            };
            let mpath = join(&ppath, "metricSource");
            match (self.levee_source(doc, ms, &mpath), &first) {
                (Some((src, loc)), None) => first = Some((src, loc, join(&mpath, "spec"))),
                (Some((src, _)), Some((f, _, fpath))) => {
                    if src != *f {
                        let fpath = fpath.clone();
                        self.error_help(
                            doc,
                            ms.loc,
                            &mpath,
                            format!("selects other traffic than `{fpath}`"),
                            "Levee counts good and all events over the same requests: give every metric source of the ratio the same spec",
                        );
                        ok = false;
                    }
                }
                (None, _) => ok = false,
            }
        }
        if first.is_none() && ok {
            self.error_help(
                doc,
                r.loc,
                rpath,
                "no metric source",
                "give `good` and `total`, each with `metricSource: {type: Levee, spec: {...}}`",
            );
        }
        let (src, spec_loc, spath) = first?;
        if !ok {
            return None;
        }
        let kind = if src.sli == Some("latency") {
            if src.rate_limited_is_bad.is_some() {
                self.error(
                    doc,
                    spec_loc,
                    &join(&spath, "rate_limited_is_bad"),
                    "only availability SLOs count 429s; a latency SLO counts every answer",
                );
            }
            if src.unit.is_some() {
                self.error(
                    doc,
                    spec_loc,
                    &join(&spath, "unit"),
                    "`unit` applies to thresholdMetric values; write `threshold` with its unit, such as `300ms`",
                );
            }
            match src.threshold {
                Some(threshold) => SliKind::LatencyRatio { threshold },
                None => {
                    self.error_help(
                        doc,
                        spec_loc,
                        &join(&spath, "threshold"),
                        "a latency ratioMetric needs the threshold a good answer is within",
                        "add `threshold: 300ms` to the Levee metric source, or use a thresholdMetric",
                    );
                    return None;
                }
            }
        } else {
            for (set, key, what) in [
                (
                    src.threshold.is_some(),
                    "threshold",
                    "`threshold` applies to `sli: latency`",
                ),
                (
                    src.unit.is_some(),
                    "unit",
                    "`unit` applies to thresholdMetric values",
                ),
            ] {
                if set {
                    self.error(doc, spec_loc, &join(&spath, key), what);
                }
            }
            if src.threshold.is_some() || src.unit.is_some() {
                return None;
            }
            SliKind::Availability {
                rate_limited_is_bad: src.rate_limited_is_bad,
            }
        };
        Some(Indicator {
            kind,
            scope: src.scope,
        })
    }

    /// A `metricSource`, which must be Levee's; its spec and the location
    /// of that spec.
    fn levee_source(&mut self, doc: &str, ms: &Node, path: &str) -> Option<(Source, Loc)> {
        if !self.is_map(doc, ms, path) {
            return None;
        }
        let type_path = join(path, "type");
        match (get(ms, "type"), get(ms, "metricSourceRef")) {
            (Some(t), _) => {
                let ty = self.string(doc, t, &type_path)?;
                if !ty.eq_ignore_ascii_case("levee") {
                    self.error_help(
                        doc,
                        t.loc,
                        &type_path,
                        format!("{ty:?} cannot be measured by Levee"),
                        LEVEE_SOURCE_HELP,
                    );
                    return None;
                }
            }
            (None, Some(r)) => {
                let ref_path = join(path, "metricSourceRef");
                let name = self.string(doc, r, &ref_path)?;
                let Some(ds) = self.find("DataSource", name) else {
                    self.error_help(
                        doc,
                        r.loc,
                        &ref_path,
                        format!("DataSource `{name}` is not in this file, and the metric source has no `type`"),
                        LEVEE_SOURCE_HELP,
                    );
                    return None;
                };
                let ty = get(ds.node, "spec")
                    .and_then(|s| get(s, "type"))
                    .and_then(|t| match &t.value {
                        Value::Str(s) => Some(s.as_str()),
                        _ => None,
                    });
                if !ty.is_some_and(|t| t.eq_ignore_ascii_case("levee")) {
                    self.error_help(
                        doc,
                        r.loc,
                        &ref_path,
                        format!(
                            "DataSource `{name}` has type {}, which cannot be measured by Levee",
                            ty.map_or("(none)".to_string(), |t| format!("{t:?}"))
                        ),
                        LEVEE_SOURCE_HELP,
                    );
                    return None;
                }
            }
            (None, None) => {
                self.error_help(doc, ms.loc, &type_path, "missing `type`", LEVEE_SOURCE_HELP);
                return None;
            }
        }
        let spec_path = join(path, "spec");
        let Some(spec) = get(ms, "spec") else {
            return Some((Source::default(), ms.loc));
        };
        if matches!(spec.value, Value::Null) {
            return Some((Source::default(), spec.loc));
        }
        let Value::Map(entries) = &spec.value else {
            self.type_error(doc, spec, &spec_path, "a mapping");
            return None;
        };
        let mut src = Source::default();
        let mut ok = true;
        for (key, kloc, v) in entries {
            let p = join(&spec_path, key);
            let good = match key.as_str() {
                "route" | "cluster" => match self.string(doc, v, &p) {
                    Some("") => {
                        self.error(doc, v.loc, &p, "must not be empty");
                        false
                    }
                    Some(s) => {
                        let slot = if key.as_str() == "route" {
                            &mut src.scope.route
                        } else {
                            &mut src.scope.cluster
                        };
                        *slot = Some(s.to_string());
                        true
                    }
                    None => false,
                },
                "tenant" => match self.string(doc, v, &p) {
                    Some(s) if valid_name(s) => {
                        src.scope.tenant = Some(s.to_string());
                        true
                    }
                    Some(s) => {
                        self.error_help(
                            doc,
                            v.loc,
                            &p,
                            format!("`{s}` is not a valid tenant name"),
                            "use letters, digits, `-`, `_` and `.`",
                        );
                        false
                    }
                    None => false,
                },
                "tier" => match self.choice(doc, v, &p, &["core", "optional"]) {
                    Some(t) => {
                        src.scope.tier = Some(t.to_string());
                        true
                    }
                    None => false,
                },
                "sli" => match self.choice(doc, v, &p, &["availability", "latency"]) {
                    Some(s) => {
                        src.sli = Some(s);
                        true
                    }
                    None => false,
                },
                "unit" => match self.choice(doc, v, &p, &["ms", "s"]) {
                    Some(u) => {
                        src.unit = Some(u);
                        true
                    }
                    None => false,
                },
                "rate_limited_is_bad" => match self.boolean(doc, v, &p) {
                    Some(b) => {
                        src.rate_limited_is_bad = Some(b);
                        true
                    }
                    None => false,
                },
                "threshold" => {
                    let parsed = match &v.value {
                        Value::Str(s) => parse_duration(s).ok().filter(|d| !d.is_zero()),
                        _ => None,
                    };
                    match parsed {
                        Some(d) => {
                            src.threshold = Some(d);
                            true
                        }
                        None => {
                            self.error_help(
                                doc,
                                v.loc,
                                &p,
                                format!("{} is not a latency threshold", describe(v)),
                                "write a duration with a unit, such as `300ms` or `1s`",
                            );
                            false
                        }
                    }
                }
                other => {
                    self.error_help(
                        doc,
                        *kloc,
                        &p,
                        format!("unknown key `{other}` in a Levee metric source"),
                        format!("the keys are {SOURCE_KEYS}"),
                    );
                    false
                }
            };
            ok &= good;
        }
        ok.then_some((src, spec.loc))
    }

    fn choice(
        &mut self,
        doc: &str,
        n: &Node,
        path: &str,
        options: &[&'static str],
    ) -> Option<&'static str> {
        let s = self.string(doc, n, path)?;
        let found = options.iter().find(|o| o.eq_ignore_ascii_case(s)).copied();
        if found.is_none() {
            let list: Vec<String> = options.iter().map(|o| format!("`{o}`")).collect();
            self.error(
                doc,
                n.loc,
                path,
                format!("`{s}` is not one of {}", list.join(", ")),
            );
        }
        found
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
        let Some(tw) = get(spec, "timeWindow") else {
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
        let calendar = get(w, "calendar");
        let rolling = match get(w, "isRolling") {
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
            let tz = calendar.and_then(|c| get(c, "timeZone"));
            if let Some(Node {
                value: Value::Str(tz),
                ..
            }) = tz
            {
                if !matches!(tz.as_str(), "UTC" | "Etc/UTC" | "GMT" | "Etc/GMT" | "Z") {
                    notes.push(format!(
                        "Levee's calendar months run in UTC; the time zone {tz} is not applied."
                    ));
                }
            }
            return Some(Some(Period::CalendarMonth));
        }
        if calendar.is_some() {
            notes.push("The calendar of a rolling time window is not used.".into());
        }
        let len = shorthand_len(n, unit);
        if matches!(unit, 'M' | 'Q' | 'Y') {
            notes.push(format!(
                "The rolling window `{text}` is read as {} (a month is 30 days, a quarter 90, a year 365, as OpenSLO's reference library counts them).",
                len.map_or("?".to_string(), format_duration)
            ));
        }
        match len {
            Some(len)
                if len >= Duration::from_secs(3600) && len <= Duration::from_secs(366 * DAY) =>
            {
                Some(Some(Period::Rolling(len)))
            }
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

    fn budgeting(&mut self, doc: &str, spec: &Node) {
        let path = "spec.budgetingMethod";
        let help = "Levee budgets by events: use `budgetingMethod: Occurrences`";
        let Some(n) = get(spec, "budgetingMethod") else {
            self.error_help(
                doc,
                spec.loc,
                path,
                "missing required field `budgetingMethod`",
                help,
            );
            return;
        };
        let Some(m) = self.string(doc, n, path) else {
            return;
        };
        if m.eq_ignore_ascii_case("occurrences") {
            return;
        }
        if m.eq_ignore_ascii_case("timeslices") || m.eq_ignore_ascii_case("ratiotimeslices") {
            self.error_help(
                doc,
                n.loc,
                path,
                format!("`{m}` cannot be mapped: Levee's error budget counts events (good over all), not time slices"),
                help,
            );
        } else {
            self.error_help(
                doc,
                n.loc,
                path,
                format!("unknown budgeting method `{m}`"),
                help,
            );
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
            if let Some(n) = get(o, "displayName") {
                match self.string(doc, n, &join(&p, "displayName")) {
                    Some(s) => names.push(s.to_string()),
                    None => ok = false,
                }
            }
            let ppm = self.target(doc, o, &p);
            let threshold = match kind {
                Some(SliKind::LatencyThreshold { unit_ms }) => {
                    match self.threshold(doc, o, &p, unit_ms) {
                        Some(t) => {
                            let vpath = join(&p, "value");
                            if let Some((_, first)) = seen.iter().find(|(d, _)| *d == t) {
                                let first = first.clone();
                                self.error(
                                    doc,
                                    get(o, "value").map_or(o.loc, |v| v.loc),
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
                && (get(o, "op").is_some() || get(o, "value").is_some())
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
        let (n, path, scale) = match (get(o, "target"), get(o, "targetPercent")) {
            (Some(_), Some(tp)) => {
                self.error(
                    doc,
                    tp.loc,
                    &join(p, "targetPercent"),
                    "give `target` or `targetPercent`, not both",
                );
                return None;
            }
            (Some(t), None) => (t, join(p, "target"), 1e6),
            (None, Some(tp)) => (tp, join(p, "targetPercent"), 1e4),
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
        let op_ok = match get(o, "op") {
            None => {
                self.error_help(doc, o.loc, &join(p, "op"), "missing `op`", help);
                false
            }
            Some(n) => match self.string(doc, n, &join(p, "op")) {
                Some("lt" | "lte") => true,
                Some(op) => {
                    self.error_help(
                        doc,
                        n.loc,
                        &join(p, "op"),
                        format!("`op: {op}` cannot be mapped: a Levee latency objective counts answers at or below the threshold"),
                        help,
                    );
                    false
                }
                None => false,
            },
        };
        let vpath = join(p, "value");
        let value = match get(o, "value") {
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
        let metadata = get(node, "metadata");
        if let Some(l) = metadata.and_then(|m| get(m, "labels")) {
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
        if let Some(s) = get(spec, "service") {
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
        if let Some(a) = metadata.and_then(|m| get(m, "annotations")) {
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
        let valid = key.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !key.starts_with("__");
        if !valid {
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
        if levee_config::RESERVED_SLO_LABELS.contains(&key) {
            self.error_help(
                doc,
                kloc,
                p,
                format!("`{key}` is a label Levee sets itself"),
                format!(
                    "rename it; the reserved labels are {}",
                    levee_config::RESERVED_SLO_LABELS.join(", ")
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

    // --- alerting --------------------------------------------------------------

    /// `Some(None)`: no alert policies; `None`: an error was reported.
    fn alerting(
        &mut self,
        doc: &str,
        spec: &Node,
        max_window: Duration,
        notes: &mut Vec<String>,
    ) -> Option<Option<Alerting>> {
        let none = "No alertPolicies: Levee's default burn-rate alerts (the SRE Workbook's) apply.";
        let Some(ap) = get(spec, "alertPolicies") else {
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
                Value::Map(_) => match get(item, "alertPolicyRef") {
                    Some(r) => {
                        let rp = join(&p, "alertPolicyRef");
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
                    Some(pd) => self.policy(&pd.label, pd.node, "", &mut conds, notes),
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
                None => self.policy(doc, item, &p, &mut conds, notes),
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
    /// conditions are appended to `conds`. False on error.
    fn policy(
        &mut self,
        doc: &str,
        node: &Node,
        prefix: &str,
        conds: &mut Vec<Condition>,
        notes: &mut Vec<String>,
    ) -> bool {
        if !self.is_map(doc, node, prefix) {
            return false;
        }
        if !self.inline_kind(doc, node, prefix, "AlertPolicy") {
            return false;
        }
        let name = match get(node, "metadata").and_then(|m| get(m, "name")) {
            Some(Node {
                value: Value::Str(s),
                ..
            }) if prefix.is_empty() => format!("AlertPolicy {s}"),
            Some(Node {
                value: Value::Str(s),
                ..
            }) => format!("AlertPolicy {s} ({doc})"),
            _ => format!("The AlertPolicy at {prefix} ({doc})"),
        };
        let sp = join(prefix, "spec");
        let Some(spec) = self.required(doc, node, prefix, "spec") else {
            return false;
        };
        if !self.is_map(doc, spec, &sp) {
            return false;
        }
        let mut flag = |key: &str| match get(spec, key) {
            None => Ok(None),
            Some(n) => self.boolean(doc, n, &join(&sp, key)).map(Some).ok_or(()),
        };
        let (Ok(breaching), Ok(no_data)) = (flag("alertWhenBreaching"), flag("alertWhenNoData"))
        else {
            return false;
        };
        if breaching == Some(false) {
            notes.push(format!(
                "{name} has alertWhenBreaching: false; its conditions are not imported."
            ));
            return true;
        }
        if no_data == Some(true) {
            notes.push(format!(
                "{name}: alertWhenNoData is not applied; Levee alerts on budget burn, and `min_events` keeps quiet windows from alerting."
            ));
        }
        if let Some(Node {
            value: Value::Seq(targets),
            ..
        }) = get(spec, "notificationTargets")
        {
            if !targets.is_empty() {
                notes.push(format!(
                    "{name}: notificationTargets are not imported; Levee sends every alert to the webhooks in [alerting]."
                ));
            }
        }
        let Some(cn) = self.required(doc, spec, &sp, "conditions") else {
            return false;
        };
        let cpath = join(&sp, "conditions");
        let Some(items) = self.list(doc, cn, &cpath) else {
            return false;
        };
        let mut ok = true;
        for (j, c) in items.iter().enumerate() {
            let p = format!("{cpath}[{j}]");
            let cond = match get(c, "conditionRef") {
                Some(r) => {
                    let rp = join(&p, "conditionRef");
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
        match get(node, "kind") {
            None => true,
            Some(k) => match self.string(doc, k, &join(prefix, "kind")) {
                Some(s) if s == expected => true,
                Some(s) => {
                    self.error(
                        doc,
                        k.loc,
                        &join(prefix, "kind"),
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
        let sp = join(prefix, "spec");
        let spec = self.required(doc, node, prefix, "spec")?;
        if !self.is_map(doc, spec, &sp) {
            return None;
        }
        let severity = self.required(doc, spec, &sp, "severity").and_then(|n| {
            let path = join(&sp, "severity");
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
        let cp = join(&sp, "condition");
        let cond = self.required(doc, spec, &sp, "condition")?;
        if !self.is_map(doc, cond, &cp) {
            return None;
        }
        let mut ok = true;
        if let Some(k) = get(cond, "kind") {
            let path = join(&cp, "kind");
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
        if let Some(o) = get(cond, "op") {
            let path = join(&cp, "op");
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
            let path = join(&cp, "threshold");
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
        let long_path = join(&cp, "lookbackWindow");
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
        let alert_after = match get(cond, "alertAfter") {
            None => Some(Duration::ZERO),
            Some(n) => {
                let path = join(&cp, "alertAfter");
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

// ---------------------------------------------------------------------------
// Small parsers and formatting.
// ---------------------------------------------------------------------------

/// Levee's names: letters, digits, `-`, `_`, `.`.
fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

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

/// A duration as Levee's config writes it, with zero as `0s`.
fn duration_text(d: Duration) -> String {
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
fn factor_text(milli: u32) -> String {
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

fn render(file: &str, header_notes: &[String], entries: &[Entry]) -> String {
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

    #[test]
    fn every_document_of_the_stream() {
        let docs = levee_config::node::parse_yaml_documents(
            "a: 1\n---\nb: [x]\n---\n# empty\n...\n---\n- c\n",
        )
        .unwrap();
        let kinds: Vec<&str> = docs.iter().map(|d| d.value.type_name()).collect();
        assert_eq!(kinds, ["a table", "a table", "null", "a list"]);
        assert_eq!(docs[1].loc.line, 3);
        assert!(levee_config::node::parse_yaml_documents("a: [1\n").is_err());
    }
}
