//! An SLO's indicator: the SLI (inline or by `indicatorRef`), its
//! `ratioMetric` or `thresholdMetric`, and the Levee metric source that
//! says which traffic it covers.

use super::super::mapping::{Names, SliChoice};
use super::*;
use crate::decode_slo::RATE_LIMITED_IS_AVAILABILITY_ONLY;
use crate::parse_duration;

impl<'a, 'n, 'f> Importer<'a, 'n, 'f> {
    // --- SLI ---------------------------------------------------------------

    pub(super) fn indicator(&mut self, doc: &str, spec: &Node) -> Option<Indicator> {
        match (spec.get("indicator"), spec.get("indicatorRef")) {
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
    pub(super) fn sli_shape(&self, spec: &Node) -> Option<SliKind> {
        let sli = match (spec.get("indicator"), spec.get("indicatorRef")) {
            (Some(inline), _) => inline.get("spec")?,
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
                d.node.get("spec")?
            }
            _ => return None,
        };
        match (sli.get("ratioMetric"), sli.get("thresholdMetric")) {
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
        match (s.get("ratioMetric"), s.get("thresholdMetric")) {
            (Some(_), Some(t)) => {
                self.error(
                    doc,
                    t.loc,
                    &join_path(path, "thresholdMetric"),
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
            (Some(r), None) => self.ratio_metric(doc, r, &join_path(path, "ratioMetric")),
            (None, Some(t)) => {
                let tpath = join_path(path, "thresholdMetric");
                if !self.is_map(doc, t, &tpath) {
                    return None;
                }
                let ms = self.required(doc, t, &tpath, "metricSource")?;
                let mpath = join_path(&tpath, "metricSource");
                let (src, spec_loc) = self.levee_source(doc, ms, &mpath)?;
                if let Some(f) = src.foreign {
                    return self.foreign_indicator(doc, spec_loc, &mpath, f, false);
                }
                let spath = join_path(&mpath, "spec");
                let mut ok = true;
                if src.sli == Some("availability") {
                    self.error_help(
                        doc,
                        spec_loc,
                        &join_path(&spath, "sli"),
                        "a thresholdMetric measures latency",
                        "set `sli: latency`, or measure availability with a ratioMetric",
                    );
                    ok = false;
                }
                if src.threshold.is_some() {
                    self.error_help(
                        doc,
                        spec_loc,
                        &join_path(&spath, "threshold"),
                        "a thresholdMetric takes its thresholds from the objectives",
                        "remove it and give each objective `op: lte` and `value` (milliseconds, or `unit`)",
                    );
                    ok = false;
                }
                if src.rate_limited_is_bad.is_some() {
                    self.error(
                        doc,
                        spec_loc,
                        &join_path(&spath, "rate_limited_is_bad"),
                        RATE_LIMITED_IS_AVAILABILITY_ONLY,
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
            let Some(part) = r.get(key) else { continue };
            let ppath = join_path(rpath, key);
            if !self.is_map(doc, part, &ppath) {
                ok = false;
                continue;
            }
            let Some(ms) = self.required(doc, part, &ppath, "metricSource") else {
                ok = false;
                continue;
            };
            let mpath = join_path(&ppath, "metricSource");
            match (self.levee_source(doc, ms, &mpath), &mut first) {
                (Some((src, loc)), None) => first = Some((src, loc, join_path(&mpath, "spec"))),
                (Some((src, _)), Some((f, _, _)))
                    if src.foreign.is_some() && f.foreign.is_some() =>
                {
                    // Queries of another system: each part is its own query,
                    // and all of them become one Levee scope.
                    if let (Some(add), Some(to)) = (src.foreign, f.foreign.as_mut()) {
                        to.queries.extend(add.queries);
                    }
                }
                (Some((src, loc)), Some((f, floc, fpath)))
                    if src.foreign.is_some() != f.foreign.is_some() =>
                {
                    // Point at the foreign one, whichever came first.
                    let (ty, at, path) = match (&src.foreign, &f.foreign) {
                        (Some(x), _) => (x.ty.clone(), loc, join_path(&mpath, "type")),
                        (_, Some(x)) => {
                            let first = fpath.strip_suffix(".spec").unwrap_or(fpath);
                            (x.ty.clone(), *floc, join_path(first, "type"))
                        }
                        _ => unreachable!("one of them is foreign"),
                    };
                    self.error_help(
                        doc,
                        at,
                        &path,
                        format!("{ty:?} cannot be combined with a Levee metric source in one ratio"),
                        "give every metric source of the ratio `type: Levee`, or none (and map the SLI with `--map`)",
                    );
                    ok = false;
                }
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
        if let Some(f) = src.foreign {
            return self.foreign_indicator(doc, spec_loc, rpath, f, true);
        }
        let kind = if src.sli == Some("latency") {
            if src.rate_limited_is_bad.is_some() {
                self.error(
                    doc,
                    spec_loc,
                    &join_path(&spath, "rate_limited_is_bad"),
                    RATE_LIMITED_IS_AVAILABILITY_ONLY,
                );
            }
            if src.unit.is_some() {
                self.error(
                    doc,
                    spec_loc,
                    &join_path(&spath, "unit"),
                    "`unit` applies to thresholdMetric values; write `threshold` with its unit, such as `300ms`",
                );
            }
            match src.threshold {
                Some(threshold) => SliKind::LatencyRatio { threshold },
                None => {
                    self.error_help(
                        doc,
                        spec_loc,
                        &join_path(&spath, "threshold"),
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
                    self.error(doc, spec_loc, &join_path(&spath, key), what);
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
        let type_path = join_path(path, "type");
        match (ms.get("type"), ms.get("metricSourceRef")) {
            (Some(t), _) => {
                let ty = self.string(doc, t, &type_path)?;
                if !ty.eq_ignore_ascii_case("levee") {
                    return Some((foreign_source(ty, ms, path), t.loc));
                }
            }
            (None, Some(r)) => {
                let ref_path = join_path(path, "metricSourceRef");
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
                let ty = ds
                    .node
                    .get("spec")
                    .and_then(|s| s.get("type"))
                    .and_then(|t| match &t.value {
                        Value::Str(s) => Some(s.as_str()),
                        _ => None,
                    });
                if !ty.is_some_and(|t| t.eq_ignore_ascii_case("levee")) {
                    let ty = ty.unwrap_or(name);
                    return Some((foreign_source(ty, ms, path), r.loc));
                }
            }
            (None, None) => {
                self.error_help(doc, ms.loc, &type_path, "missing `type`", LEVEE_SOURCE_HELP);
                return None;
            }
        }
        let spec_path = join_path(path, "spec");
        let Some(spec) = ms.get("spec") else {
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
            let p = join_path(&spec_path, key);
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
                    Some(s) if is_name(s) => {
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
}

/// A metric source of another system: its type and every string of its
/// `spec` (the queries), which Levee does not run.
fn foreign_source(ty: &str, ms: &Node, path: &str) -> Source {
    let mut queries = Vec::new();
    if let Some(spec) = ms.get("spec") {
        strings(spec, &join_path(path, "spec"), &mut queries, 0);
    }
    Source {
        foreign: Some(Foreign {
            ty: ty.to_string(),
            queries,
        }),
        ..Source::default()
    }
}

fn strings(n: &Node, path: &str, out: &mut Vec<(String, Loc, String)>, depth: usize) {
    match &n.value {
        Value::Str(s) => out.push((path.to_string(), n.loc, s.clone())),
        Value::Map(entries) if depth < 8 => {
            // `queryType: promql` says how to read a query; it is not one.
            for (k, _, v) in entries.iter().filter(|(k, _, _)| k != "queryType") {
                strings(v, &join_path(path, k), out, depth + 1);
            }
        }
        Value::Seq(items) if depth < 8 => {
            for (i, v) in items.iter().enumerate() {
                strings(v, &format!("{path}[{i}]"), out, depth + 1);
            }
        }
        _ => {}
    }
}

/// The latency threshold a query counts within, when it reads a histogram
/// bucket: `le="0.3"` (seconds, as Prometheus histograms are) is 300ms.
pub(super) fn bucket_threshold(query: &str) -> Option<Duration> {
    if !query.contains("_bucket") {
        return None;
    }
    let at = query.find("le=")?;
    let rest = query[at + 3..].trim_start_matches(['"', '\'', '~']);
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    let secs: f64 = rest[..end].parse().ok()?;
    let nanos = (secs * 1e9).round();
    (1e6..=3600e9)
        .contains(&nanos)
        .then(|| Duration::from_nanos(nanos as u64))
}

/// How a scope is said in notes: `route checkout, tenant acme`.
pub(super) fn scope_text(scope: &Scope) -> String {
    let parts: Vec<String> = [
        ("route", &scope.route),
        ("tier", &scope.tier),
        ("tenant", &scope.tenant),
        ("cluster", &scope.cluster),
    ]
    .iter()
    .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k} {v}")))
    .collect();
    parts.join(", ")
}

impl Importer<'_, '_, '_> {
    /// The Levee scope of an SLO's foreign metric source, from the mapping
    /// rules or a route of the same name; its kind from the mapping or, when
    /// the queries read a histogram bucket, latency within that bucket.
    /// `loc`/`path`: the metric source, for problems and notes.
    pub(super) fn foreign_resolve(
        &mut self,
        doc: &str,
        loc: Loc,
        path: &str,
        ty: &str,
    ) -> Option<(Scope, Option<SliChoice>, String)> {
        let cur = self.current.clone();
        let names = Names {
            slo: &cur.slo,
            sli: cur.sli.as_deref(),
            service: cur.service.as_deref(),
        };
        if let Some((i, rule)) = self.opts.mapping.find(&names) {
            let found = (rule.scope.clone(), rule.sli, rule.origin.clone());
            self.used_rules.insert(i);
            return Some(found);
        }
        if let Some(route) = self.opts.mapping.route_named(&names) {
            let scope = Scope {
                route: Some(route.to_string()),
                ..Scope::default()
            };
            return Some((scope, None, format!("the config's route `{route}`")));
        }
        self.error_help(
            doc,
            loc,
            path,
            format!("no Levee scope for this {ty:?} metric source: Levee measures its own traffic"),
            format!(
                "map it: `--map {}=route:NAME` (or tier:, tenant:, cluster:), a `--mapping` file, or `--config` with a route named `{}`",
                cur.slo, cur.slo
            ),
        );
        None
    }

    pub(super) fn foreign_indicator(
        &mut self,
        doc: &str,
        loc: Loc,
        path: &str,
        f: Foreign,
        ratio: bool,
    ) -> Option<Indicator> {
        let (scope, choice, how) = self.foreign_resolve(doc, loc, path, &f.ty)?;
        let inferred = f.queries.iter().find_map(|(_, _, q)| bucket_threshold(q));
        let kind = if ratio {
            match (choice, inferred) {
                (Some(SliChoice::Availability), _) => SliKind::Availability {
                    rate_limited_is_bad: None,
                },
                (Some(SliChoice::Latency(Some(threshold))), _)
                | (Some(SliChoice::Latency(None)) | None, Some(threshold)) => {
                    SliKind::LatencyRatio { threshold }
                }
                (Some(SliChoice::Latency(None)), None) => {
                    self.error_help(
                        doc,
                        loc,
                        path,
                        "a latency SLI needs the threshold a good answer is within",
                        "give it in the mapping: `latency:300ms`",
                    );
                    return None;
                }
                (None, None) => SliKind::Availability {
                    rate_limited_is_bad: None,
                },
            }
        } else {
            if choice == Some(SliChoice::Availability) {
                self.error_help(
                    doc,
                    loc,
                    path,
                    "a thresholdMetric measures latency, but the mapping says availability",
                    "map it with `latency`, or measure availability with a ratio",
                );
                return None;
            }
            self.note_at(
                doc,
                loc,
                path,
                "the objectives' values are read as milliseconds of latency".into(),
            );
            if let Some(SliChoice::Latency(Some(t))) = choice {
                self.note_at(
                    doc,
                    loc,
                    path,
                    format!(
                        "the mapping's threshold {} is not used: a thresholdMetric's thresholds are its objectives' values",
                        format_duration(t)
                    ),
                );
            }
            SliKind::LatencyThreshold { unit_ms: 1.0 }
        };
        let scope_desc = scope_text(&scope);
        for (qpath, qloc, text) in &f.queries {
            let key = qpath.rsplit('.').next().unwrap_or(qpath);
            let mut shown: String = text.chars().take(80).collect();
            if shown.len() < text.len() {
                shown.push_str("...");
            }
            self.note_at(
                doc,
                *qloc,
                qpath,
                format!(
                    "the {} {key} `{shown}` is not carried over: Levee measures {scope_desc} itself (mapped by {how})",
                    f.ty
                ),
            );
        }
        if f.queries.is_empty() {
            self.note_at(
                doc,
                loc,
                path,
                format!(
                    "the {} metric source is not carried over: Levee measures {scope_desc} itself (mapped by {how})",
                    f.ty
                ),
            );
        }
        if let (SliKind::LatencyRatio { threshold }, None | Some(SliChoice::Latency(None))) =
            (kind, choice)
        {
            self.note_at(
                doc,
                loc,
                path,
                format!(
                    "read as a latency SLI within {}: the query counts a histogram bucket",
                    format_duration(threshold)
                ),
            );
        }
        Some(Indicator { kind, scope })
    }
}
