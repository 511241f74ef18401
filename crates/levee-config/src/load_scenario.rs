//! Scenario files of `levee load --scenario FILE`: weighted requests and
//! either ramping stages (open model) or virtual users (closed model), read
//! from TOML or YAML (by extension) with the config's located diagnostics.
//! This module owns the file's shape and its rules; it reads no body file
//! and knows nothing of how the load is sent (that is `levee-load`'s).
//!
//! ```toml
//! start_rate = 0          # open model: the rate the first stage ramps from
//! # vus = 20              # closed model instead of stages
//! # duration = "30s"      # closed model, or with `rate` for a constant rate
//! # rate = 100
//!
//! [[requests]]
//! method = "POST"         # default GET
//! path = "/api/orders"    # joined to the URL on the command line
//! headers = { "content-type" = "application/json" }
//! body_file = "order.json"  # relative to the scenario file
//! weight = 3              # default 1
//!
//! [[stages]]
//! rate = 100
//! duration = "10s"
//! ```
//!
//! The same in YAML:
//!
//! ```yaml
//! start_rate: 0
//! requests:
//!   - method: POST
//!     path: /api/orders
//!     headers: { content-type: application/json }
//!     body_file: order.json
//!     weight: 3
//! stages:
//!   - rate: 100
//!     duration: 10s
//! ```
//!
//! Unknown fields are refused, strings are taken as written (no `${VAR}`),
//! and every problem is collected, each as
//! `scenario.yaml:3:13: requests[0].method: ...`.

use crate::decode::header_table;
use crate::diag::Decoder;
use crate::node::{Loc, Node, Value};
use crate::{syntax_error, toml_in_yaml, Diagnostic, Diagnostics, Format};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A scenario file, validated; body files are named, not read.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ScenarioFile {
    /// The requests, in file order.
    pub requests: Vec<FileRequest>,
    /// Ramping stages (open model), in file order.
    pub stages: Vec<FileStage>,
    /// The rate the first stage ramps from (requests a second).
    pub start_rate: Option<f64>,
    /// A constant rate (requests a second), with `duration`.
    pub rate: Option<f64>,
    /// Virtual users (closed model), at least 1; never with `stages`.
    pub vus: Option<u32>,
    /// How long the constant rate or the virtual users run; may be zero.
    pub duration: Option<Duration>,
}

/// One request of a scenario file.
#[derive(Debug, Clone, PartialEq)]
pub struct FileRequest {
    /// An upper-case HTTP method token (`GET` unless written).
    pub method: String,
    /// Path and query, empty or starting with `/`.
    pub path: String,
    /// Header names (lower case) and values, in file order.
    pub headers: Vec<(String, String)>,
    /// The body's file as written, for the caller to resolve against the
    /// scenario file's directory.
    pub body_file: Option<PathBuf>,
    /// Where `body_file` is written (set whenever it is), so that a body
    /// that cannot be read is reported at its line.
    pub body_file_loc: Option<Loc>,
    /// Its share of the requests, at least 1.
    pub weight: u32,
}

/// One ramping stage: the rate reaches `rate` over `duration`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FileStage {
    /// The rate at the end of the stage, 0 or more requests a second.
    pub rate: f64,
    /// How long the ramp takes; zero jumps to `rate`.
    pub duration: Duration,
}

/// The format of the scenario file at `path`, by extension; any other
/// extension is a diagnostic on the whole file.
pub fn scenario_format(path: &Path) -> Result<Format, Diagnostics> {
    Format::from_path(path).ok_or_else(|| {
        Diagnostics(vec![Diagnostic::whole_file(
            &path.display().to_string(),
            "unknown scenario format".into(),
            Some("name the file *.toml, *.yaml or *.yml".into()),
        )])
    })
}

/// Reads and validates the scenario file at `path` (TOML or YAML by
/// extension).
pub fn load_scenario(path: &Path) -> Result<ScenarioFile, Diagnostics> {
    let format = scenario_format(path)?;
    let name = path.display().to_string();
    let src = std::fs::read_to_string(path).map_err(|e| {
        Diagnostics(vec![Diagnostic::whole_file(
            &name,
            format!("cannot read scenario file: {e}"),
            None,
        )])
    })?;
    load_scenario_str(&src, format, &name)
}

/// Validates scenario text; `name` is used in diagnostics.
pub fn load_scenario_str(
    src: &str,
    format: Format,
    name: &str,
) -> Result<ScenarioFile, Diagnostics> {
    let parsed = match format {
        Format::Toml => crate::node::parse_toml(src),
        Format::Yaml => crate::node::parse_yaml(src),
    };
    let root = parsed.map_err(|e| syntax_error(name, &e))?;
    if let Some(diags) = toml_in_yaml(src, format, name, &root) {
        return Err(diags);
    }
    let mut d = Decoder::literal(name);
    let scenario = decode_scenario(&mut d, &root);
    let mut diags = d.diags;
    diags.sort_by_key(|d| (d.line, d.col));
    match scenario {
        Some(s) if diags.is_empty() => Ok(s),
        _ => Err(Diagnostics(diags)),
    }
}

fn decode_scenario(d: &mut Decoder<'_>, root: &Node) -> Option<ScenarioFile> {
    let mut t = d.table(root, "")?;
    let requests = d.opt(&mut t, "requests", |d, n, p| d.list(n, p, decode_request));
    let stages = d.opt(&mut t, "stages", |d, n, p| d.list(n, p, decode_stage));
    let start_rate = d.opt(&mut t, "start_rate", rate_per_second);
    let rate = d.opt(&mut t, "rate", rate_per_second);
    let vus = d.opt(&mut t, "vus", at_least_one);
    let duration = d.opt(&mut t, "duration", duration_or_zero);
    d.finish(t);
    // Judged on what is written, so that the clash is reported even when a
    // stage or `vus` itself is invalid.
    let stages_written = matches!(
        root.get("stages").map(|n| &n.value),
        Some(Value::Seq(items)) if !items.is_empty()
    );
    if let Some(vus_node) = root.get("vus").filter(|n| n.value != Value::Null) {
        if stages_written {
            d.error_help(
                vus_node.loc,
                "vus",
                "vus (closed model) and stages (open model) cannot be combined",
                "keep `vus` (with `duration`) for virtual users, or `stages` for a ramping rate",
            );
            return None;
        }
    }
    Some(ScenarioFile {
        requests: requests.unwrap_or_default(),
        stages: stages.unwrap_or_default(),
        start_rate,
        rate,
        vus,
        duration,
    })
}

fn decode_request(d: &mut Decoder<'_>, node: &Node, path: &str) -> Option<FileRequest> {
    let mut t = d.table(node, path)?;
    let method = d.opt(&mut t, "method", http_method);
    let request_path = d.opt(&mut t, "path", path_and_query);
    let headers = d.opt(&mut t, "headers", header_table);
    let body_file = d.opt(&mut t, "body_file", |d, n, p| {
        file_name(d, n, p).map(|f| (f, n.loc))
    });
    let weight = d.opt(&mut t, "weight", at_least_one);
    d.finish(t);
    // An invalid value falls back to its default here, but its diagnostic
    // makes the whole file fail, so the default is never used.
    let (body_file, body_file_loc) = body_file.unzip();
    Some(FileRequest {
        method: method.unwrap_or_else(|| "GET".into()),
        path: request_path.unwrap_or_default(),
        headers: headers.unwrap_or_default(),
        body_file,
        body_file_loc,
        weight: weight.unwrap_or(1),
    })
}

fn decode_stage(d: &mut Decoder<'_>, node: &Node, path: &str) -> Option<FileStage> {
    let mut t = d.table(node, path)?;
    let rate = d.req(&mut t, "rate", rate_per_second);
    let duration = d.req(&mut t, "duration", duration_or_zero);
    d.finish(t);
    Some(FileStage {
        rate: rate?,
        duration: duration?,
    })
}

/// Requests a second: a finite number, 0 or more.
fn rate_per_second(d: &mut Decoder<'_>, node: &Node, path: &str) -> Option<f64> {
    if let Value::Float(f) = node.value {
        if !f.is_finite() {
            d.error(node.loc, path, format!("`{f}` is not a rate"));
            return None;
        }
    }
    let r = d.number(node, path)?;
    if r < 0.0 {
        d.error(
            node.loc,
            path,
            format!("must be 0 or more requests a second, got {r}"),
        );
        return None;
    }
    Some(r)
}

/// A count of at least 1 (virtual users, a weight).
fn at_least_one(d: &mut Decoder<'_>, node: &Node, path: &str) -> Option<u32> {
    let Value::Int(i) = node.value else {
        d.type_error(node, path, "an integer");
        return None;
    };
    match u32::try_from(i) {
        Ok(n) if n >= 1 => Some(n),
        _ if i < 1 => {
            d.error(node.loc, path, format!("must be at least 1, got {i}"));
            None
        }
        _ => {
            d.error(
                node.loc,
                path,
                format!("must be at most {}, got {i}", u32::MAX),
            );
            None
        }
    }
}

/// A duration that may be zero: a stage of `0s` jumps to its rate.
fn duration_or_zero(d: &mut Decoder<'_>, node: &Node, path: &str) -> Option<Duration> {
    if let Value::Str(s) = &node.value {
        if let Ok(duration) = crate::parse_duration(s) {
            return Some(duration);
        }
    }
    // Not a duration: the config's own reading explains why.
    d.duration(node, path)
}

/// A method, upper-cased, that HTTP accepts as a method token.
fn http_method(d: &mut Decoder<'_>, node: &Node, path: &str) -> Option<String> {
    let written = d.string(node, path)?;
    let method = written.to_ascii_uppercase();
    if http::Method::from_bytes(method.as_bytes()).is_err() {
        d.error_help(
            node.loc,
            path,
            format!("`{written}` is not an HTTP method"),
            "for example `GET`, `POST` or `PUT`",
        );
        return None;
    }
    Some(method)
}

/// Path and query, joined to the URL of the command line.
fn path_and_query(d: &mut Decoder<'_>, node: &Node, path: &str) -> Option<String> {
    let s = d.string(node, path)?;
    if !(s.is_empty() || s.starts_with('/')) {
        d.error_help(
            node.loc,
            path,
            format!("`{s}` must start with /"),
            format!("write `/{s}`"),
        );
        return None;
    }
    Some(s)
}

fn file_name(d: &mut Decoder<'_>, node: &Node, path: &str) -> Option<PathBuf> {
    let s = d.string(node, path)?;
    if s.is_empty() {
        d.error(node.loc, path, "must name a file");
        return None;
    }
    Some(PathBuf::from(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOML: &str = r#"
start_rate = 10
[[requests]]
path = "/a"
weight = 3
[[requests]]
method = "post"
path = "/b?x=1"
headers = { "content-type" = "application/json", "x-run" = "ci" }
body_file = "body.json"
[[stages]]
rate = 100
duration = "10s"
[[stages]]
rate = 0
duration = "0s"
"#;

    const YAML: &str = r#"
start_rate: 10
requests:
  - path: /a
    weight: 3
  - method: post
    path: "/b?x=1"
    headers:
      content-type: application/json
      x-run: ci
    body_file: body.json
stages:
  - { rate: 100, duration: 10s }
  - rate: 0
    duration: 0s
"#;

    fn toml(src: &str) -> Result<ScenarioFile, Diagnostics> {
        load_scenario_str(src, Format::Toml, "s.toml")
    }

    fn toml_errors(src: &str) -> String {
        toml(src).expect_err("invalid").to_string()
    }

    fn yaml_errors(src: &str) -> String {
        load_scenario_str(src, Format::Yaml, "s.yaml")
            .expect_err("invalid")
            .to_string()
    }

    #[test]
    fn a_full_scenario_decodes() {
        let s = toml(TOML).unwrap_or_else(|d| panic!("{d}"));
        assert_eq!(s.start_rate, Some(10.0));
        assert_eq!(s.requests.len(), 2);
        let (a, b) = (&s.requests[0], &s.requests[1]);
        assert_eq!(
            (a.method.as_str(), a.path.as_str(), a.weight),
            ("GET", "/a", 3)
        );
        assert_eq!(
            (b.method.as_str(), b.path.as_str(), b.weight),
            ("POST", "/b?x=1", 1)
        );
        assert_eq!(
            b.headers,
            [
                ("content-type".to_string(), "application/json".to_string()),
                ("x-run".to_string(), "ci".to_string()),
            ]
        );
        assert_eq!(b.body_file.as_deref(), Some(Path::new("body.json")));
        assert_eq!(b.body_file_loc, Some(Loc::new(10, 13)));
        assert_eq!(
            s.stages,
            [
                FileStage {
                    rate: 100.0,
                    duration: Duration::from_secs(10)
                },
                FileStage {
                    rate: 0.0,
                    duration: Duration::ZERO
                },
            ]
        );
    }

    #[test]
    fn yaml_decodes_to_the_same_scenario() {
        let from_toml = toml(TOML).unwrap_or_else(|d| panic!("{d}"));
        let from_yaml =
            load_scenario_str(YAML, Format::Yaml, "s.yaml").unwrap_or_else(|d| panic!("{d}"));
        let without_locs = |mut s: ScenarioFile| {
            for r in &mut s.requests {
                r.body_file_loc = None;
            }
            s
        };
        assert_eq!(without_locs(from_yaml), without_locs(from_toml));
    }

    #[test]
    fn the_models_decode() {
        let closed = toml("vus = 20\nduration = \"30s\"\n").unwrap_or_else(|d| panic!("{d}"));
        assert_eq!(closed.vus, Some(20));
        assert_eq!(closed.duration, Some(Duration::from_secs(30)));
        let constant = load_scenario_str("rate: 2.5\nduration: 1m\n", Format::Yaml, "c.yml")
            .unwrap_or_else(|d| panic!("{d}"));
        assert_eq!(constant.rate, Some(2.5));
        assert_eq!(constant.duration, Some(Duration::from_secs(60)));
        assert_eq!(
            toml("").unwrap_or_else(|d| panic!("{d}")),
            ScenarioFile::default()
        );
        assert_eq!(
            load_scenario_str("", Format::Yaml, "e.yaml").unwrap_or_else(|d| panic!("{d}")),
            ScenarioFile::default()
        );
    }

    #[test]
    fn errors_are_located_and_name_the_field() {
        let cases = [
            (
                "[[requests]]\nmethod = \"G T\"",
                "s.toml:2:10: requests[0].method: `G T` is not an HTTP method",
            ),
            (
                "[[requests]]\npath = \"a\"",
                "s.toml:2:8: requests[0].path: `a` must start with /",
            ),
            (
                "[[requests]]\nweight = 0",
                "s.toml:2:10: requests[0].weight: must be at least 1, got 0",
            ),
            (
                "[[requests]]\nheaders = { \"bad name\" = \"x\" }",
                "s.toml:2:13: requests[0].headers.bad name: `bad name` is not a valid header name",
            ),
            (
                "[[requests]]\nheaders = { x = \"a\\nb\" }",
                "s.toml:2:17: requests[0].headers.x: not a valid header value",
            ),
            (
                "[[requests]]\nbody_file = \"\"",
                "s.toml:2:13: requests[0].body_file: must name a file",
            ),
            (
                "[[stages]]\nrate = 1\nduration = \"1x\"",
                "s.toml:3:12: stages[0].duration: `1x` has an unknown unit `x`",
            ),
            (
                "[[stages]]\nrate = -1\nduration = \"1s\"",
                "s.toml:2:8: stages[0].rate: must be 0 or more requests a second, got -1",
            ),
            (
                "[[stages]]\nrate = inf\nduration = \"1s\"",
                "s.toml:2:8: stages[0].rate: `inf` is not a rate",
            ),
            (
                "[[stages]]\nduration = \"1s\"",
                "s.toml:1:1: stages[0].rate: missing required field",
            ),
            (
                "vus = 2\n[[stages]]\nrate = 1\nduration = \"1s\"",
                "s.toml:1:7: vus: vus (closed model) and stages (open model) cannot be combined",
            ),
            ("vus = 0", "s.toml:1:7: vus: must be at least 1, got 0"),
            (
                "vus = 5000000000",
                "s.toml:1:7: vus: must be at most 4294967295",
            ),
            (
                "duration = 30",
                "s.toml:1:12: duration: a duration needs a unit, got the bare number 30",
            ),
            (
                "rate = \"fast\"",
                "s.toml:1:8: rate: expected a number, found a string",
            ),
            (
                "[[requests]]\nwieght = 2",
                "s.toml:2:1: requests[0].wieght: unknown field `wieght`\n  help: did you mean `weight`?",
            ),
            (
                "requests = { path = \"/\" }",
                "s.toml:1:12: requests: expected a list, found a table",
            ),
        ];
        for (src, want) in cases {
            let e = toml_errors(src);
            assert!(e.contains(want), "{src}:\n{e}");
        }
    }

    #[test]
    fn yaml_errors_are_located_too() {
        let e = yaml_errors("requests:\n  - method: G T\n    path: a\n");
        assert!(
            e.contains("s.yaml:2:13: requests[0].method: `G T` is not an HTTP method"),
            "{e}"
        );
        assert!(
            e.contains("s.yaml:3:11: requests[0].path: `a` must start with /"),
            "{e}"
        );
        let e = yaml_errors("requests:\n  - path: /a\n   weight: 2\n");
        assert!(e.starts_with("s.yaml:3:"), "{e}");
        assert!(e.contains("syntax error"), "{e}");
        let e = yaml_errors("rate = 10\n[[requests]]\npath = \"/\"\n");
        assert!(e.contains("this looks like TOML"), "{e}");
    }

    #[test]
    fn every_error_is_reported_at_once() {
        let e = toml_errors(
            "vus = 0\nstart = 1\n[[requests]]\nmethod = \"G T\"\nweight = 0\n[[requests]]\npath = \"x\"\n[[stages]]\nrate = -1\nduration = \"soon\"\n",
        );
        for want in [
            "s.toml:1:7: vus: must be at least 1",
            "s.toml:1:7: vus: vus (closed model) and stages (open model) cannot be combined",
            "s.toml:2:1: start: unknown field `start`",
            "s.toml:4:10: requests[0].method:",
            "s.toml:5:10: requests[0].weight:",
            "s.toml:7:8: requests[1].path:",
            "s.toml:9:8: stages[0].rate:",
            "s.toml:10:12: stages[0].duration:",
            "8 errors found",
        ] {
            assert!(e.contains(want), "{want}:\n{e}");
        }
        // In file order.
        let lines: Vec<&str> = e.lines().filter(|l| l.starts_with("s.toml:")).collect();
        let mut sorted = lines.clone();
        sorted.sort_by_key(|l| {
            let mut at = l
                .split(':')
                .skip(1)
                .map(|n| n.parse::<usize>().unwrap_or(0));
            (at.next(), at.next())
        });
        assert_eq!(lines, sorted);
    }

    #[test]
    fn unknown_extensions_and_missing_files_are_whole_file_errors() {
        let e = load_scenario(Path::new("scenario.json"))
            .expect_err("unknown extension")
            .to_string();
        assert!(
            e.starts_with("scenario.json:1:1: unknown scenario format\n  help: name the file *.toml, *.yaml or *.yml"),
            "{e}"
        );
        let e = load_scenario(Path::new("/nonexistent/levee/scenario.yml"))
            .expect_err("missing")
            .to_string();
        assert!(
            e.starts_with("/nonexistent/levee/scenario.yml:1:1: cannot read scenario file:"),
            "{e}"
        );
    }
}
