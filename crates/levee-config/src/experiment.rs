//! Chaos experiments (`levee chaos run FILE`): a hypothesis about a running
//! Levee (its SLOs hold, HTTP probes answer), a timeline of runtime faults
//! (the method) and rollbacks, read from TOML or YAML with the config's
//! located diagnostics. Faults are written in the config's shape and
//! checked by the config's own fault decoders, so a fault the file accepts
//! is one the admin API accepts.

use crate::decode::name_field;
use crate::decode_fault::{decode_fault, decode_upstream_fault, FaultTarget};
use crate::diag::{Decoder, Table};
use crate::node::{Node, Value};
use crate::{syntax_error, Diagnostic, Diagnostics, Format};
use std::path::Path;
use std::time::Duration;

/// How long the hypothesis is checked after the method when the file does
/// not say.
pub const DEFAULT_AFTER: Duration = Duration::from_secs(5);

/// A validated experiment.
#[derive(Debug, Clone, PartialEq)]
pub struct Experiment {
    /// What it tests, in a sentence.
    pub title: String,
    /// What must hold before, during and after the method.
    pub hypothesis: Hypothesis,
    /// The faults, in file order (not sorted by start).
    pub method: Vec<MethodStep>,
    /// HTTP calls made at the end, whatever happened.
    pub rollbacks: Vec<HttpCall>,
    /// Load sent during the method (`levee load`'s open model).
    pub load: Vec<LoadStep>,
}

/// Load sent while the method runs: GETs of `url` at `rate` a second,
/// from `at` (after the method starts) for `duration`, stopped early when
/// the experiment is aborted.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadStep {
    /// A plain `http://` URL.
    pub url: String,
    /// Requests a second.
    pub rate: f64,
    /// When it starts, from the start of the method.
    pub at: Duration,
    /// How long it runs.
    pub duration: Duration,
}

impl Experiment {
    /// When the last fault ends, from the start of the method.
    pub fn method_length(&self) -> Duration {
        self.method
            .iter()
            .map(|s| s.at + s.duration)
            .max()
            .unwrap_or_default()
    }
}

/// The steady state the experiment expects to keep.
#[derive(Debug, Clone, PartialEq)]
pub struct Hypothesis {
    /// SLO names of the target Levee; none may have a page alert firing.
    pub slos: Vec<String>,
    /// The share (0 < x ≤ 1) of each SLO's remaining error budget the
    /// experiment may spend; 1 when no SLO is named.
    pub chaos_budget: f64,
    /// HTTP probes that must answer as expected.
    pub probes: Vec<Probe>,
    /// How long the hypothesis must hold before the method starts.
    pub steady_for: Duration,
    /// How long it is checked after the method.
    pub after: Duration,
}

/// An HTTP probe of the hypothesis.
#[derive(Debug, Clone, PartialEq)]
pub struct Probe {
    /// Its name in the journal.
    pub name: String,
    /// A plain `http://` URL.
    pub url: String,
    /// The method (GET unless written).
    pub method: String,
    /// The status expected (200 unless written).
    pub status: u16,
    /// The slowest answer that passes; none bounds only by the timeout.
    pub max_latency: Option<Duration>,
}

/// One fault of the method's timeline.
#[derive(Debug, Clone, PartialEq)]
pub struct MethodStep {
    /// When it is set, from the start of the method.
    pub at: Duration,
    /// How long it stays.
    pub duration: Duration,
    /// Where it applies and what it does (decoded as the admin API will).
    pub target: FaultTarget,
    /// The fault as written, in JSON, for the admin API's request body.
    pub fault: serde_json::Value,
}

impl MethodStep {
    /// `route checkout` or `cluster payments`.
    pub fn target_text(&self) -> String {
        match &self.target {
            FaultTarget::Route(r, _) => format!("route {r}"),
            FaultTarget::Cluster(c, _) => format!("cluster {c}"),
        }
    }

    /// The body of `POST /api/v1/faults` for this step, living `expires_in`.
    pub fn runtime_fault_json(&self, expires_in: Duration) -> serde_json::Value {
        let (key, name) = match &self.target {
            FaultTarget::Route(r, _) => ("route", r),
            FaultTarget::Cluster(c, _) => ("cluster", c),
        };
        serde_json::json!({
            key: name,
            "fault": self.fault,
            "expires_in": format!("{}ms", expires_in.as_millis()),
        })
    }
}

/// An HTTP call (a rollback).
#[derive(Debug, Clone, PartialEq)]
pub struct HttpCall {
    /// A plain `http://` URL.
    pub url: String,
    /// The method (POST unless written).
    pub method: String,
    /// The request body, if any.
    pub body: Option<String>,
}

/// Reads and validates the experiment file at `path` (TOML or YAML by
/// extension).
pub fn load_experiment(path: &Path) -> Result<Experiment, Diagnostics> {
    let name = path.display().to_string();
    let one = |message: String, help: Option<String>| {
        Diagnostics(vec![Diagnostic::whole_file(&name, message, help)])
    };
    let Some(format) = Format::from_path(path) else {
        return Err(one(
            "unknown experiment format".into(),
            Some("name the file *.toml, *.yaml or *.yml".into()),
        ));
    };
    let src = std::fs::read_to_string(path)
        .map_err(|e| one(format!("cannot read experiment file: {e}"), None))?;
    load_experiment_str(&src, format, &name)
}

/// Validates experiment text; `name` is used in diagnostics. Strings are
/// taken as written (no `${VAR}`), as the admin API reads faults.
pub fn load_experiment_str(
    src: &str,
    format: Format,
    name: &str,
) -> Result<Experiment, Diagnostics> {
    let parsed = match format {
        Format::Toml => crate::node::parse_toml(src),
        Format::Yaml => crate::node::parse_yaml(src),
    };
    let root = parsed.map_err(|e| syntax_error(name, &e))?;
    let mut d = Decoder::literal(name);
    let experiment = decode_experiment(&mut d, &root);
    let mut diags = d.diags;
    diags.sort_by_key(|d| (d.line, d.col));
    match experiment {
        Some(e) if diags.is_empty() => Ok(e),
        _ => Err(Diagnostics(diags)),
    }
}

/// A duration that may be zero (`at = "0s"`, `steady_for = "0s"`).
fn offset(d: &mut Decoder<'_>, node: &Node, path: &str) -> Option<Duration> {
    if let Value::Str(s) = &node.value {
        if let Ok(z) = crate::parse_duration(s) {
            return Some(z);
        }
    }
    d.duration(node, path)
}

/// A plain `http://host[:port]/path` URL.
fn http_url(d: &mut Decoder<'_>, node: &Node, path: &str) -> Option<String> {
    let s = d.string(node, path)?;
    let ok = s
        .parse::<http::Uri>()
        .ok()
        .is_some_and(|u| u.scheme_str() == Some("http") && u.host().is_some());
    if !ok {
        d.error_help(
            node.loc,
            path,
            format!("`{s}` is not a plain http:// URL"),
            "write it like `http://127.0.0.1:8080/health` (https is not supported here)",
        );
        return None;
    }
    Some(s)
}

fn http_method(d: &mut Decoder<'_>, node: &Node, path: &str) -> Option<String> {
    let m = d.string(node, path)?.to_ascii_uppercase();
    if m.is_empty() || !m.bytes().all(|b| b.is_ascii_alphabetic()) {
        d.error(node.loc, path, format!("`{m}` is not an HTTP method"));
        return None;
    }
    Some(m)
}

fn decode_experiment(d: &mut Decoder<'_>, root: &Node) -> Option<Experiment> {
    let mut t = d.table(root, "")?;
    let title = d.req(&mut t, "title", Decoder::string);
    let hypothesis = d.req(&mut t, "hypothesis", decode_hypothesis);
    let method = d.req(&mut t, "method", |d, n, p| d.list(n, p, decode_step));
    let rollbacks = d.opt(&mut t, "rollbacks", |d, n, p| d.list(n, p, decode_call));
    let load = d.opt(&mut t, "load", |d, n, p| d.list(n, p, decode_load));
    let loc = t.loc;
    d.finish(t);
    let method = method?;
    if method.is_empty() {
        d.error_help(
            loc,
            "method",
            "an experiment needs at least one fault in its method",
            "add `[[method]]` with `at`, `duration`, `route` or `cluster`, and `fault`",
        );
        return None;
    }
    Some(Experiment {
        title: title?,
        hypothesis: hypothesis?,
        method,
        rollbacks: rollbacks.unwrap_or_default(),
        load: load.unwrap_or_default(),
    })
}

fn decode_load(d: &mut Decoder<'_>, node: &Node, path: &str) -> Option<LoadStep> {
    let mut t = d.table(node, path)?;
    let url = d.req(&mut t, "url", http_url);
    let rate = d.req(&mut t, "rate", |d, n, p| {
        let r = d.number(n, p)?;
        if r > 0.0 && r <= 1_000_000.0 {
            Some(r)
        } else {
            d.error(
                n.loc,
                p,
                "a rate above 0 and at most 1,000,000 requests a second",
            );
            None
        }
    });
    let at = d.opt(&mut t, "at", offset);
    let duration = d.req(&mut t, "duration", Decoder::duration);
    d.finish(t);
    Some(LoadStep {
        url: url?,
        rate: rate?,
        at: at.unwrap_or_default(),
        duration: duration?,
    })
}

fn decode_hypothesis(d: &mut Decoder<'_>, node: &Node, path: &str) -> Option<Hypothesis> {
    let mut t = d.table(node, path)?;
    let slos = d.opt(&mut t, "slos", |d, n, p| d.list(n, p, name_field));
    let budget = d.opt(&mut t, "chaos_budget", |d, n, p| {
        let share = d.percent(n, p)?;
        if share <= 0.0 {
            d.error_help(
                n.loc,
                p,
                "a chaos budget of 0% stops the experiment at the first bad event",
                "give a share of the remaining error budget above 0%, such as `\"10%\"`",
            );
            return None;
        }
        Some(share)
    });
    let probes = d.opt(&mut t, "probes", |d, n, p| d.list(n, p, decode_probe));
    let steady_for = d.opt(&mut t, "steady_for", offset);
    let after = d.opt(&mut t, "after", offset);
    let loc = t.loc;
    let budget_written = t.has("chaos_budget");
    d.finish(t);
    let slos = slos.unwrap_or_default();
    let probes = probes.unwrap_or_default();
    if slos.is_empty() && probes.is_empty() && !d.diags.iter().any(|x| x.path.starts_with(path)) {
        d.error_help(
            loc,
            path,
            "a hypothesis needs an SLO or a probe to check",
            "add `slos = [\"checkout-availability\"]` or `probes = [{ name = \"home\", url = \"http://127.0.0.1:8080/\" }]`",
        );
        return None;
    }
    if !slos.is_empty() && !budget_written {
        d.error_help(
            loc,
            &format!("{path}.chaos_budget"),
            "an experiment on SLOs needs a chaos budget",
            "say how much of each SLO's remaining error budget it may spend: `chaos_budget = \"10%\"`",
        );
        return None;
    }
    Some(Hypothesis {
        slos,
        chaos_budget: budget.unwrap_or(1.0),
        probes,
        steady_for: steady_for.unwrap_or_default(),
        after: after.unwrap_or(DEFAULT_AFTER),
    })
}

fn decode_probe(d: &mut Decoder<'_>, node: &Node, path: &str) -> Option<Probe> {
    let mut t = d.table(node, path)?;
    let name = d.req(&mut t, "name", name_field);
    let url = d.req(&mut t, "url", http_url);
    let method = d.opt(&mut t, "method", http_method);
    let status = d.opt(&mut t, "status", |d, n, p| d.int_in(n, p, 100, 599));
    let max_latency = d.opt(&mut t, "max_latency", Decoder::duration);
    d.finish(t);
    Some(Probe {
        name: name?,
        url: url?,
        method: method.unwrap_or_else(|| "GET".into()),
        status: status.map_or(200, |s| s as u16),
        max_latency,
    })
}

fn decode_call(d: &mut Decoder<'_>, node: &Node, path: &str) -> Option<HttpCall> {
    let mut t = d.table(node, path)?;
    let url = d.req(&mut t, "url", http_url);
    let method = d.opt(&mut t, "method", http_method);
    let body = d.opt(&mut t, "body", Decoder::string);
    d.finish(t);
    Some(HttpCall {
        url: url?,
        method: method.unwrap_or_else(|| "POST".into()),
        body,
    })
}

fn decode_step(d: &mut Decoder<'_>, node: &Node, path: &str) -> Option<MethodStep> {
    let mut t: Table<'_> = d.table(node, path)?;
    let at = d.req(&mut t, "at", offset);
    let duration = d.req(&mut t, "duration", Decoder::duration);
    let route = d.opt(&mut t, "route", name_field);
    let cluster = d.opt(&mut t, "cluster", name_field);
    let fault_node = d.req(&mut t, "fault", |_, n, _| Some(n));
    let (loc, has_route, has_cluster) = (t.loc, t.has("route"), t.has("cluster"));
    d.finish(t);
    let fault_node = fault_node?;
    let fault_path = format!("{path}.fault");
    // Unnamed faults are named after their step (`method[1]` is `chaos-1`),
    // so the target's fault list shows where each came from.
    let named = matches!(&fault_node.value, Value::Map(m) if m.iter().any(|(k, _, _)| k == "name"));
    let default_name = format!(
        "chaos-{}",
        path.rsplit_once('[')
            .map_or("0", |(_, i)| i.trim_end_matches(']'))
    );
    let target = match (has_route, has_cluster) {
        (true, false) => {
            let mut fault = decode_fault(d, fault_node, &fault_path)?;
            if !named {
                fault.name = default_name.clone();
            }
            FaultTarget::Route(route?, fault)
        }
        (false, true) => {
            let mut fault = decode_upstream_fault(d, fault_node, &fault_path)?;
            if !named {
                fault.name = default_name.clone();
            }
            FaultTarget::Cluster(cluster?, fault)
        }
        _ => {
            d.error_help(
                loc,
                path,
                "a method step names one `route` or one `cluster`",
                "`route = \"checkout\"` for a route fault, `cluster = \"payments\"` for an upstream fault",
            );
            return None;
        }
    };
    let duration = duration?;
    if duration > crate::MAX_RUNTIME_FAULT_LIFE {
        d.error(loc, &format!("{path}.duration"), "at most 24h");
        return None;
    }
    let mut fault = to_json(fault_node);
    if let (false, Some(map)) = (named, fault.as_object_mut()) {
        map.insert("name".into(), default_name.into());
    }
    Some(MethodStep {
        at: at?,
        duration,
        target,
        fault,
    })
}

/// A located tree as JSON, for the admin API.
fn to_json(node: &Node) -> serde_json::Value {
    use serde_json::Value as J;
    match &node.value {
        Value::Null => J::Null,
        Value::Bool(b) => J::Bool(*b),
        Value::Int(i) => J::from(*i),
        Value::Float(f) => J::from(*f),
        Value::Str(s) => J::String(s.clone()),
        Value::Seq(items) => J::Array(items.iter().map(to_json).collect()),
        Value::Map(entries) => J::Object(
            entries
                .iter()
                .map(|(k, _, v)| (k.clone(), to_json(v)))
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
title = "checkout survives a slow payment service"
[hypothesis]
slos = ["checkout-availability"]
chaos_budget = "10%"
steady_for = "2s"
probes = [{ name = "home", url = "http://127.0.0.1:8080/", status = 200, max_latency = "500ms" }]
[[method]]
at = "0s"
duration = "20s"
route = "checkout"
fault = { percent = 10, abort = { status = 503 } }
[[method]]
at = "5s"
duration = "10s"
cluster = "payments"
fault = { kind = "slow", delay = "300ms" }
[[rollbacks]]
url = "http://127.0.0.1:9999/restore"
"#;

    fn load(src: &str) -> Result<Experiment, Diagnostics> {
        load_experiment_str(src, Format::Toml, "exp.toml")
    }

    #[test]
    fn a_full_experiment_decodes() {
        let e = load(GOOD).unwrap_or_else(|d| panic!("{d}"));
        assert_eq!(e.hypothesis.chaos_budget, 0.1);
        assert_eq!(e.hypothesis.steady_for, Duration::from_secs(2));
        assert_eq!(e.hypothesis.after, DEFAULT_AFTER);
        assert_eq!(
            e.hypothesis.probes[0].max_latency,
            Some(Duration::from_millis(500))
        );
        assert_eq!(e.method.len(), 2);
        assert_eq!(e.method_length(), Duration::from_secs(20));
        assert_eq!(e.rollbacks[0].method, "POST");
        let body = e.method[1].runtime_fault_json(Duration::from_secs(12));
        assert_eq!(body["cluster"], "payments");
        assert_eq!(body["fault"]["delay"], "300ms");
        assert_eq!(body["expires_in"], "12000ms");
        let back = crate::decode_runtime_fault(&body.to_string()).expect("the admin API reads it");
        assert_eq!(back.target, e.method[1].target);
    }

    #[test]
    fn the_same_in_yaml() {
        let yaml = "title: t\nhypothesis:\n  probes:\n    - name: p\n      url: http://127.0.0.1:1/\nmethod:\n  - at: 1s\n    duration: 2s\n    route: r\n    fault: { delay: 100ms }\n";
        let e = load_experiment_str(yaml, Format::Yaml, "e.yaml").unwrap_or_else(|d| panic!("{d}"));
        assert_eq!(e.hypothesis.chaos_budget, 1.0);
        assert_eq!(e.method[0].at, Duration::from_secs(1));
    }

    fn errors(src: &str) -> String {
        load(src).expect_err("invalid").to_string()
    }

    #[test]
    fn mistakes_are_located() {
        let e = errors(
            "title = \"t\"\n[hypothesis]\nslos = [\"a\"]\nchaos_budget = \"0%\"\n[[method]]\nat = \"1s\"\nduration = \"soon\"\nroute = \"r\"\nfault = { percent = 10 }\n",
        );
        assert!(
            e.contains("exp.toml:4:16: hypothesis.chaos_budget: a chaos budget of 0%"),
            "{e}"
        );
        assert!(e.contains("exp.toml:7:12: method[0].duration:"), "{e}");
        assert!(
            e.contains("method[0].fault: a fault needs `delay`, `abort` or `bandwidth`"),
            "{e}"
        );
    }

    #[test]
    fn an_experiment_needs_something_to_check_and_something_to_do() {
        let e = errors("title = \"t\"\nmethod = []\n[hypothesis]\nsteady_for = \"1s\"\n");
        assert!(
            e.contains("hypothesis: a hypothesis needs an SLO or a probe"),
            "{e}"
        );
        assert!(
            e.contains("method: an experiment needs at least one fault"),
            "{e}"
        );
        let e = errors("title = \"t\"\n[hypothesis]\nslos = [\"a\"]\n[[method]]\nat = \"0s\"\nduration = \"1s\"\nroute = \"r\"\ncluster = \"c\"\nfault = { delay = \"1s\" }\n");
        assert!(
            e.contains("hypothesis.chaos_budget: an experiment on SLOs needs a chaos budget"),
            "{e}"
        );
        assert!(
            e.contains("method[0]: a method step names one `route` or one `cluster`"),
            "{e}"
        );
    }

    #[test]
    fn budgets_over_all_and_unknown_keys_are_refused() {
        let e = errors("title = \"t\"\n[hypothesis]\nslos = [\"a\"]\nchaos_budget = \"150%\"\n[[method]]\nat = \"0s\"\nduration = \"1s\"\ncluster = \"c\"\nfault = { kind = \"slow\" }\nstart = \"1s\"\n");
        assert!(e.contains("must be between 0% and 100%"), "{e}");
        assert!(e.contains("a `slow` fault needs `delay`"), "{e}");
        assert!(e.contains("unknown field `start`"), "{e}");
    }
}
