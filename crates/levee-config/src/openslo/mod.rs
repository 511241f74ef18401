//! OpenSLO and Sloth documents into Levee's `[[slos]]` (`levee slo import`).
//!
//! The input is one YAML file of documents separated by `---` (a document
//! that is a list of objects also works): OpenSLO `v1`, OpenSLO `v1alpha`
//! (rewritten into the v1 shape first, in `v1alpha`), Sloth's
//! `prometheus/v1` and its Kubernetes `PrometheusServiceLevel` (in
//! `map::sloth`). OpenSLO kinds `SLO`, `SLI`, `AlertPolicy` and
//! `AlertCondition` are read; `Service`, `DataSource`,
//! `AlertNotificationTarget` and `BudgetAdjustment` may appear and are
//! skipped (a `DataSource` is consulted only to find the `type` of a metric
//! source that names it by `metricSourceRef`). Lists and mappings left as
//! YAML null are empty. The output is TOML to paste into a Levee config: a
//! header comment naming the input, then one `[[slos]]` entry per SLO, each
//! preceded by `#` notes on what was approximated or did not carry over;
//! notes about something written in the file start with its position
//! (`file:line:col: SLO x: field.path: ...`), and `Options::strict` makes
//! every SLO's notes errors. What cannot be mapped is an error; every error
//! in the file is reported in one run, as the config's [`Diagnostic`]s
//! (file, line, column, field path, message, help), whose field path starts
//! with the document: `file:line:col: SLO checkout: spec.indicatorRef: ...`.
//!
//! The stream is read in `documents`, each SLO mapped in `map` (its SLI
//! in `map::indicator`, its alerting in `map::alerting`), and the TOML
//! written in `render`. The other way, `export` writes Levee's SLOs as
//! OpenSLO v1 that this importer reads back unchanged.
//!
//! # Metric sources
//!
//! Levee measures its SLIs itself, from the requests it routes, so a query
//! is never run. A metric source of `type: Levee` (any case; or a
//! `metricSourceRef` to a `DataSource` of that type) says in its `spec`
//! which traffic it covers:
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
//! Any other source (Prometheus, Datadog, `Any`, Sloth's queries) is mapped
//! to a scope by the import's [`Mapping`] (`mapping`): `--map` rules,
//! a mapping file, or a route named like the SLO, its SLI or its service.
//! Its kind comes from the mapping, else from the queries (one that reads a
//! histogram bucket `le="0.3"` is latency within 300ms; other ratios are
//! availability; a `thresholdMetric` is latency in milliseconds). Every
//! string of its `spec` (the queries) becomes a note.
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
//! | `budgetingMethod: Occurrences` | (Levee's default budgeting) |
//! | `Timeslices` | `budgeting = "timeslices"`, `timeslice` (objectives' `timeSliceWindow`), `timeslice_target` (`timeSliceTarget`); one of each per SLO |
//! | `RatioTimeslices` | `budgeting = "ratio_timeslices"`, `timeslice` |
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
//! | no `alertPolicies` (or null, or empty) | no `alerting` (the Workbook's default rules), with a note |
//! | `notificationTargets`, `alertWhenNoData` | ignored with a note: Levee's webhooks are global in `[alerting]` |
//! | `alertWhenBreaching: false` | the policy is skipped, with a note |
//!
//! Route and cluster names cannot be checked here; `levee check` checks
//! them once the entries are in a config.

mod documents;
mod export;
mod map;
mod mapping;
mod render;
mod v1alpha;

pub use mapping::{Mapping, Options};

pub use export::export;

use crate::diag::Decoder;
use crate::{Diagnostic, Diagnostics};
use std::path::Path;

const NO_SLO_HELP: &str = "an OpenSLO file holds documents such as `apiVersion: openslo/v1` with `kind: SLO`, separated by `---`; a Sloth file starts with `version: prometheus/v1` or `apiVersion: sloth.slok.dev/v1`";

/// What an OpenSLO file becomes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imported {
    /// The TOML to add to a Levee config: a header, then one `[[slos]]`
    /// entry per SLO, with every note below written as a `#` comment.
    pub toml: String,
    /// Notes on the file as a whole: documents no SLO uses, kinds skipped.
    pub file_notes: Vec<String>,
    /// For each SLO imported, in file order, where it came from
    /// (`SLO checkout (line 3)`) and what was approximated or left out.
    pub slo_notes: Vec<(String, Vec<String>)>,
}

/// Imports the OpenSLO file at `path`, or gives every problem found.
pub fn import_file(path: &Path, opts: &Options) -> Result<Imported, Diagnostics> {
    let file = path.display().to_string();
    let src = std::fs::read_to_string(path).map_err(|e| {
        let message = format!("cannot read the OpenSLO file: {e}");
        Diagnostics(vec![Diagnostic::whole_file(&file, message, None)])
    })?;
    import_str(&src, &file, opts)
}

/// Imports OpenSLO YAML text; `file` names it in diagnostics and in the
/// TOML's header.
pub fn import_str(src: &str, file: &str, opts: &Options) -> Result<Imported, Diagnostics> {
    let roots = crate::node::parse_yaml_documents(src).map_err(|e| {
        Diagnostics(vec![Diagnostic {
            file: file.to_string(),
            line: e.loc.line,
            col: e.loc.col,
            path: String::new(),
            message: format!("not valid YAML: {}", e.message),
            help: None,
        }])
    })?;
    let roots: Vec<crate::node::Node> = roots.into_iter().map(v1alpha::upgrade).collect();
    let mut decoder = Decoder::literal(file);
    let docs = documents::index_documents(&mut decoder, &roots);
    let mut importer = map::Importer::new(&docs, decoder, file, opts.clone());
    let is_slo = |kind: &str| matches!(kind, "SLO" | documents::SLOTH | documents::SLOTH_K8S);
    let mut entries: Vec<map::Entry> = Vec::new();
    for d in &docs {
        match d.kind {
            "SLO" => entries.extend(importer.slo(d)),
            documents::SLOTH | documents::SLOTH_K8S => entries.extend(importer.sloth(d)),
            _ => {}
        }
    }
    // A problem in a document that several SLOs use is listed once.
    let mut diags: Vec<Diagnostic> = Vec::new();
    let strict: Vec<Diagnostic> = if opts.strict {
        entries.iter().flat_map(|e| e.note_diags.clone()).collect()
    } else {
        Vec::new()
    };
    for d in importer.d.diags.into_iter().chain(strict) {
        if !diags.contains(&d) {
            diags.push(d);
        }
    }
    diags.sort_by_key(|d| (d.line, d.col));
    if !docs.iter().any(|d| is_slo(d.kind)) {
        diags.push(Diagnostic::whole_file(
            file,
            "no OpenSLO SLO document found".into(),
            Some(NO_SLO_HELP.into()),
        ));
    }
    if !diags.is_empty() {
        return Err(Diagnostics(diags));
    }
    let mut file_notes = Vec::new();
    let mut skipped = Vec::new();
    for d in &docs {
        let key = (d.kind, d.name.clone());
        match d.kind {
            "SLI" | "AlertPolicy" | "AlertCondition" if !importer.used.contains(&key) => {
                file_notes.push(format!(
                    "{} (line {}) is not used by any SLO; not imported.",
                    d.label, d.loc.line
                ));
            }
            "Service" | "AlertNotificationTarget" | "BudgetAdjustment" => {
                skipped.push(d.label.as_str())
            }
            _ => {}
        }
    }
    for (i, rule) in opts.mapping.rules.iter().enumerate() {
        if !importer.used_rules.contains(&i) {
            file_notes.push(format!(
                "The mapping `{}` ({}) matched no SLO that needed one.",
                rule.name, rule.origin
            ));
        }
    }
    if !skipped.is_empty() {
        file_notes.push(format!(
            "Skipped, Levee has no counterpart: {}.",
            skipped.join(", ")
        ));
    }
    Ok(Imported {
        toml: render::render(file, &file_notes, &entries),
        slo_notes: entries.into_iter().map(|e| (e.origin, e.notes)).collect(),
        file_notes,
    })
}

/// A field path inside one document of the stream, as diagnostics write it:
/// `SLO checkout: spec.indicatorRef`, or the document alone.
fn document_path(doc: &str, path: &str) -> String {
    match (doc.is_empty(), path.is_empty()) {
        (_, true) => doc.to_string(),
        (true, false) => path.to_string(),
        (false, false) => format!("{doc}: {path}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An SLO whose SLI is a separate document, so that both can be broken.
    fn slo_with_sli(description: &str, sli_type: &str) -> String {
        format!(
            "apiVersion: openslo/v1
kind: SLO
metadata:
  name: checkout
spec:
  description: {description:?}
  budgetingMethod: Occurrences
  indicatorRef: answers
  objectives:
    - target: 0.999
---
apiVersion: openslo/v1
kind: SLO
metadata:
  name: checkout-again
spec:
  budgetingMethod: Occurrences
  indicatorRef: answers
  objectives:
    - target: 0.99
---
apiVersion: openslo/v1
kind: SLI
metadata:
  name: answers
spec:
  ratioMetric:
    good:
      metricSource:
        type: {sli_type}
        spec: {{ route: checkout }}
    total:
      metricSource:
        type: {sli_type}
        spec: {{ route: checkout }}
"
        )
    }

    #[test]
    fn imports_into_toml_with_notes_per_slo() {
        let imported = import_str(
            &slo_with_sli("Checkout ${NOT_AN_ENV}", "Levee"),
            "in.yaml",
            &Options::default(),
        )
        .unwrap_or_else(|d| panic!("{d}"));
        assert!(imported.toml.contains("[[slos]]\nname = \"checkout\"\n"));
        assert!(
            imported
                .toml
                .contains("description = \"Checkout ${NOT_AN_ENV}\""),
            "OpenSLO strings are taken as written: {}",
            imported.toml
        );
        assert!(imported.file_notes.is_empty(), "{:?}", imported.file_notes);
        let origins: Vec<&str> = imported.slo_notes.iter().map(|(o, _)| o.as_str()).collect();
        assert_eq!(
            origins,
            ["SLO checkout (line 1)", "SLO checkout-again (line 12)"]
        );
        let notes = &imported.slo_notes[0].1;
        assert!(
            notes.iter().any(|n| n.starts_with("No timeWindow")),
            "{notes:?}"
        );
        for (_, notes) in &imported.slo_notes {
            for note in notes {
                assert!(imported.toml.contains(&format!("# Note: {note}")));
            }
        }
    }

    #[test]
    fn problems_are_diagnostics_naming_the_document() {
        let diags = import_str(
            &slo_with_sli("Checkout", "Prometheus"),
            "in.yaml",
            &Options::default(),
        )
        .unwrap_err();
        let at = |line, col, doc: &str| (line, col, format!("{doc}: spec.ratioMetric"));
        let found: Vec<(usize, usize, String)> = diags
            .0
            .iter()
            .map(|d| (d.line, d.col, d.path.clone()))
            .collect();
        assert_eq!(
            found,
            [at(30, 15, "SLI answers"), at(30, 15, "SLI answers")],
            "each SLO that uses the SLI needs its own scope"
        );
        assert!(diags.0[1]
            .help
            .as_deref()
            .unwrap()
            .contains("--map checkout-again=route:NAME"));
        assert!(
            diags.0[0]
                .message
                .starts_with("no Levee scope for this \"Prometheus\" metric source"),
            "{diags}"
        );
        assert!(diags.0[0]
            .help
            .as_deref()
            .unwrap()
            .contains("--map checkout=route:NAME"));
    }

    #[test]
    fn foreign_sources_map_by_rule_or_route_name() {
        let src = slo_with_sli("Checkout", "Prometheus");
        let mut opts = Options::default();
        opts.mapping.add_flag("answers=tier:core").unwrap();
        opts.mapping.add_flag("answer=route:typo").unwrap();
        let imported = import_str(&src, "in.yaml", &opts).unwrap_or_else(|d| panic!("{d}"));
        assert_eq!(
            imported.file_notes,
            ["The mapping `answer` (--map answer=route:typo) matched no SLO that needed one."]
        );
        assert_eq!(
            imported.toml.matches("tier = \"core\"").count(),
            2,
            "{}",
            imported.toml
        );
        let notes = &imported.slo_notes[0].1;
        assert!(
            notes.iter().any(|n| n.starts_with("in.yaml:31:24: SLI answers: spec.ratioMetric.good.metricSource.spec.route: the Prometheus route `checkout` is not carried over: Levee measures tier core itself (mapped by --map answers=tier:core)")),
            "{notes:?}"
        );

        let mut opts = Options::default();
        opts.mapping.add_routes(["checkout".to_string()]);
        let diags = import_str(&src, "in.yaml", &opts).unwrap_err();
        assert_eq!(diags.0.len(), 1, "checkout-again has no route: {diags}");
        assert!(diags.0[0]
            .help
            .as_deref()
            .unwrap()
            .contains("checkout-again"));

        opts.mapping
            .add_flag("checkout-again=route:checkout,latency:250ms")
            .unwrap();
        let imported = import_str(&src, "in.yaml", &opts).unwrap_or_else(|d| panic!("{d}"));
        assert!(
            imported
                .toml
                .contains("route = \"checkout\"\nthreshold = \"250ms\"\nobjective = \"99%\""),
            "{}",
            imported.toml
        );
    }

    #[test]
    fn histogram_buckets_are_latency_and_strict_refuses_notes() {
        let src = "apiVersion: openslo/v1
kind: SLO
metadata: { name: search }
spec:
  budgetingMethod: Occurrences
  timeWindow:
  alertPolicies:
  indicator:
    metadata: { name: search-fast }
    spec:
      ratioMetric:
        good:
          metricSource:
            type: Prometheus
            spec:
              query: sum(rate(http_request_duration_seconds_bucket{le=\"0.3\"}[5m]))
        total:
          metricSource:
            type: Prometheus
            spec:
              query: sum(rate(http_request_duration_seconds_count[5m]))
  objectives:
    - target: 0.99
";
        let mut opts = Options::default();
        opts.mapping.add_flag("search=route:search").unwrap();
        let imported = import_str(src, "in.yaml", &opts).unwrap_or_else(|d| panic!("{d}"));
        assert!(
            imported
                .toml
                .contains("sli = \"latency\"\nroute = \"search\"\nthreshold = \"300ms\""),
            "{}",
            imported.toml
        );
        assert!(imported.toml.contains("# Note: in.yaml:16:22: SLO search: spec.indicator.spec.ratioMetric.good.metricSource.spec.query: the Prometheus query `sum(rate("), "{}", imported.toml);
        assert!(
            imported.toml.contains("# Note: No alertPolicies"),
            "null is an empty list"
        );

        opts.strict = true;
        let diags = import_str(src, "in.yaml", &opts).unwrap_err();
        let at: Vec<(usize, usize)> = diags.0.iter().map(|d| (d.line, d.col)).collect();
        assert_eq!(
            at,
            [(1, 1), (1, 1), (14, 19), (16, 22), (21, 22)],
            "{diags}"
        );
    }

    #[test]
    fn time_slice_budgets_are_rendered() {
        let doc = |method: &str, extra: &str| {
            format!(
                "apiVersion: openslo/v1
kind: SLO
metadata: {{ name: api }}
spec:
  budgetingMethod: {method}
  indicator:
    spec:
      ratioMetric:
        good: {{ metricSource: {{ type: Levee, spec: {{ route: api }} }} }}
        total: {{ metricSource: {{ type: Levee, spec: {{ route: api }} }} }}
  objectives:
    - target: 0.99
{extra}"
            )
        };
        let toml = |src: &str| {
            import_str(src, "in.yaml", &Options::default())
                .unwrap_or_else(|d| panic!("{d}"))
                .toml
        };
        let both = "      timeSliceTarget: 0.95\n      timeSliceWindow: 1m\n";
        assert!(toml(&doc("Timeslices", both)).contains(
            "objective = \"99%\"\nbudgeting = \"timeslices\"\ntimeslice = \"1m\"\ntimeslice_target = \"95%\"\n"
        ));
        let ratio = toml(&doc("RatioTimeslices", both));
        assert!(
            ratio.contains("budgeting = \"ratio_timeslices\"\ntimeslice = \"1m\"\n"),
            "{ratio}"
        );
        assert!(
            ratio.contains("# Note: timeSliceTarget is not used"),
            "{ratio}"
        );
        let occurrences = toml(&doc("Occurrences", both));
        assert!(!occurrences.contains("budgeting"), "{occurrences}");

        let diags = import_str(
            &doc("Timeslices", "      timeSliceWindow: 5m\n"),
            "in.yaml",
            &Options::default(),
        )
        .unwrap_err();
        assert_eq!(diags.0.len(), 1, "{diags}");
        assert_eq!((diags.0[0].line, diags.0[0].col), (5, 20));
        assert!(diags.0[0]
            .message
            .contains("needs the objectives' `timeSliceTarget`"));
        let diags = import_str(
            &format!(
                "{}    - target: 0.9\n      timeSliceWindow: 5m\n",
                doc("RatioTimeslices", "      timeSliceWindow: 1m\n")
            ),
            "in.yaml",
            &Options::default(),
        )
        .unwrap_err();
        assert!(
            diags.0.iter().any(|d| d
                .message
                .starts_with("Levee has one timeSliceWindow per SLO")),
            "{diags}"
        );
    }

    #[test]
    fn lists_and_mappings_left_null_are_empty() {
        let src = "apiVersion: openslo/v1
kind: SLO
metadata:
  name: api
  labels:
  annotations:
spec:
  budgetingMethod: Occurrences
  timeWindow:
  indicator:
    metadata:
    spec:
      ratioMetric:
        good: { metricSource: { type: Levee, spec: { route: api } } }
        total: { metricSource: { type: Levee, spec: { route: api } } }
  objectives:
    - target: 0.99
  alertPolicies:
    - kind: AlertPolicy
      metadata: { name: quiet }
      spec:
        notificationTargets:
        conditions:
";
        let imported =
            import_str(src, "in.yaml", &Options::default()).unwrap_or_else(|d| panic!("{d}"));
        let notes = &imported.slo_notes[0].1;
        assert!(
            notes.iter().any(|n| n.starts_with("No timeWindow")),
            "{notes:?}"
        );
        assert!(
            notes
                .iter()
                .any(|n| n.starts_with("No burn-rate condition applies")),
            "{notes:?}"
        );
        assert!(
            imported.toml.contains("page = [], ticket = []"),
            "{}",
            imported.toml
        );

        // A null that stands for something required says what is missing.
        let diags = import_str(
            &src.replace("      ratioMetric:\n        good: { metricSource: { type: Levee, spec: { route: api } } }\n        total: { metricSource: { type: Levee, spec: { route: api } } }\n", ""),
            "in.yaml",
            &Options::default(),
        )
        .unwrap_err();
        assert_eq!(diags.0.len(), 1, "{diags}");
        assert!(
            diags.0[0]
                .message
                .contains("missing `ratioMetric` or `thresholdMetric`"),
            "{diags}"
        );
    }

    #[test]
    fn files_without_slos_are_refused() {
        let diags = import_str("", "empty.yaml", &Options::default()).unwrap_err();
        assert_eq!(
            diags.0,
            [Diagnostic::whole_file(
                "empty.yaml",
                "no OpenSLO SLO document found".into(),
                Some(NO_SLO_HELP.into())
            )]
        );
        let diags = import_str("a: [1\n", "broken.yaml", &Options::default()).unwrap_err();
        assert_eq!((diags.0[0].line, diags.0[0].col), (2, 1));
        assert!(diags.0[0].message.starts_with("not valid YAML: "));
    }
}
