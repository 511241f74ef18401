//! Endpoint files in Prometheus's `file_sd` format, so that the generators
//! that already write them for Prometheus (consul-template, Terraform,
//! inventory scripts) can feed a cluster: a JSON or YAML list of groups,
//! each `{ "targets": ["host:port", ...], "labels": { ... } }`.
//!
//! Of the labels, Levee reads [`LABELS_READ`] and ignores the rest (a file
//! shared with Prometheus carries `job`, `env` and the like). Problems are
//! [`Diagnostic`]s with the file, line, column and a path such as
//! `[1].labels.weight`, as the config's are.

use crate::decode::split_host_port;
use crate::diag::{port_out_of_range, Decoder};
use crate::model::Endpoint;
use crate::node::{Node, Value};
use crate::{Diagnostic, Diagnostics};
use std::path::Path;

/// The labels that shape an endpoint: `zone` and `region` (locality; an
/// empty value is no label, as in Prometheus), `weight` (1 to 1000) and
/// `priority` (0 to 9), the last two as strings of digits since label
/// values are strings.
pub const LABELS_READ: [&str; 4] = ["zone", "region", "weight", "priority"];

/// How a targets file is read, chosen by its extension as Prometheus does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetsFormat {
    /// `.json`
    Json,
    /// `.yaml` or `.yml`
    Yaml,
}

impl TargetsFormat {
    /// The format of a file name, by extension.
    pub fn from_path(path: &Path) -> Option<TargetsFormat> {
        match path.extension()?.to_str()? {
            "json" => Some(TargetsFormat::Json),
            "yaml" | "yml" => Some(TargetsFormat::Yaml),
            _ => None,
        }
    }
}

/// Reads the targets file at `path`. An empty file, an empty list and
/// groups without targets give an empty list: whether that may empty a
/// cluster is the caller's decision.
pub fn load_targets(path: &Path) -> Result<Vec<Endpoint>, Diagnostics> {
    let name = path.display().to_string();
    let one = |message: String, help: Option<String>| {
        Diagnostics(vec![Diagnostic::whole_file(&name, message, help)])
    };
    let Some(format) = TargetsFormat::from_path(path) else {
        return Err(one(
            "unknown targets file format".into(),
            Some("name the file *.json, *.yaml or *.yml".into()),
        ));
    };
    let src = std::fs::read_to_string(path)
        .map_err(|e| one(format!("cannot read targets file: {e}"), None))?;
    parse_targets(&src, format, &name)
}

/// Decodes targets file text; `name` is used in diagnostics.
pub fn parse_targets(
    src: &str,
    format: TargetsFormat,
    name: &str,
) -> Result<Vec<Endpoint>, Diagnostics> {
    if src.trim().is_empty() {
        return Ok(Vec::new());
    }
    let src = match format {
        TargetsFormat::Yaml => std::borrow::Cow::Borrowed(src),
        TargetsFormat::Json => {
            // JSON's own parser places JSON syntax errors best. Once the
            // text is valid JSON it is read as YAML (a superset) for
            // located values; YAML refuses tabs where JSON allows them, and
            // valid JSON has tabs only as whitespace (never raw in a
            // string), so they become spaces, column for column.
            if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(src) {
                return Err(Diagnostics(vec![Diagnostic {
                    file: name.to_string(),
                    line: e.line().max(1),
                    col: e.column().max(1),
                    path: String::new(),
                    message: format!("JSON syntax error: {}", json_message(&e)),
                    help: None,
                }]));
            }
            std::borrow::Cow::Owned(src.replace('\t', " "))
        }
    };
    let root = crate::node::parse_yaml(&src).map_err(|e| crate::syntax_error(name, &e))?;
    let mut d = Decoder::literal(name);
    let groups = match &root.value {
        Value::Seq(_) => d.list(&root, "", decode_group),
        _ => {
            d.error_help(
                root.loc,
                "",
                format!(
                    "expected a list of target groups, found {}",
                    root.value.type_name()
                ),
                "write `[{ \"targets\": [\"10.0.0.7:8080\"], \"labels\": { \"zone\": \"a\" } }]`",
            );
            None
        }
    };
    match groups {
        Some(groups) if d.diags.is_empty() => Ok(groups.into_iter().flatten().collect()),
        _ => {
            let mut diags = d.diags;
            diags.sort_by_key(|d| (d.line, d.col));
            Err(Diagnostics(diags))
        }
    }
}

/// serde_json's message without its own " at line L column C" (the
/// diagnostic places it).
fn json_message(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.rfind(" at line ") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

/// What a group's labels say about its endpoints.
struct Placement {
    zone: Option<String>,
    region: Option<String>,
    weight: u32,
    priority: u32,
}

fn decode_group(d: &mut Decoder<'_>, node: &Node, path: &str) -> Option<Vec<Endpoint>> {
    let mut t = d.table(node, path)?;
    let targets = d.req(&mut t, "targets", |d, n, p| d.list(n, p, decode_target));
    let placement = d.opt(&mut t, "labels", decode_labels);
    let labelled = t.has("labels");
    d.finish(t);
    let placement = match placement {
        Some(p) => p,
        // Labels that failed are reported; the group is not used.
        None if labelled => return None,
        None => Placement {
            zone: None,
            region: None,
            weight: 1,
            priority: 0,
        },
    };
    let endpoints = targets?
        .into_iter()
        .map(|(address, host, port)| Endpoint {
            address,
            host,
            port,
            weight: placement.weight,
            zone: placement.zone.clone(),
            region: placement.region.clone(),
            priority: placement.priority,
        })
        .collect();
    Some(endpoints)
}

/// `host:port`, split; Levee needs the port (Prometheus would take the
/// scheme's).
fn decode_target(d: &mut Decoder<'_>, node: &Node, path: &str) -> Option<(String, String, u16)> {
    let address = d.string(node, path)?;
    if let Some(port) = port_out_of_range(&address) {
        d.error_help(
            node.loc,
            path,
            format!("port {port} is out of range (1-65535)"),
            "for example `10.0.0.7:8080` or `orders-0.orders.internal:8080`",
        );
        return None;
    }
    let Some((host, port)) = split_host_port(&address) else {
        d.error_help(
            node.loc,
            path,
            format!("`{address}` is not host:port"),
            "a target needs its port: `10.0.0.7:8080` or `orders-0.orders.internal:8080`",
        );
        return None;
    };
    Some((address, host, port))
}

fn decode_labels(d: &mut Decoder<'_>, node: &Node, path: &str) -> Option<Placement> {
    let Value::Map(entries) = &node.value else {
        d.type_error(node, path, "a table of labels");
        return None;
    };
    let mut placement = Placement {
        zone: None,
        region: None,
        weight: 1,
        priority: 0,
    };
    let mut ok = true;
    for (key, _, value) in entries {
        let label_path = crate::diag::join_path(path, key);
        // Prometheus label values are strings; other labels are only
        // checked for that.
        let Some(text) = d.str(value, &label_path) else {
            ok = false;
            continue;
        };
        let text = text.trim();
        let number = |d: &mut Decoder<'_>, max: u32, min: u32| match text.parse::<u32>() {
            Ok(n) if (min..=max).contains(&n) => Some(n),
            _ => {
                d.error_help(
                    value.loc,
                    &label_path,
                    format!(
                        "label `{key}` must be a whole number from {min} to {max}, got `{text}`"
                    ),
                    format!(
                        "Levee reads the labels {}; rename other uses of `{key}`",
                        LABELS_READ.join(", ")
                    ),
                );
                None
            }
        };
        match key.as_str() {
            "zone" => placement.zone = (!text.is_empty()).then(|| text.to_string()),
            "region" => placement.region = (!text.is_empty()).then(|| text.to_string()),
            "weight" => match number(d, 1000, 1) {
                Some(w) => placement.weight = w,
                None => ok = false,
            },
            "priority" => match number(d, 9, 0) {
                Some(p) => placement.priority = p,
                None => ok = false,
            },
            _ => {}
        }
    }
    ok.then_some(placement)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(src: &str) -> Result<Vec<Endpoint>, Diagnostics> {
        parse_targets(src, TargetsFormat::Json, "targets.json")
    }

    fn yaml(src: &str) -> Result<Vec<Endpoint>, Diagnostics> {
        parse_targets(src, TargetsFormat::Yaml, "targets.yaml")
    }

    fn rendered(r: Result<Vec<Endpoint>, Diagnostics>) -> String {
        r.expect_err("the file is broken").to_string()
    }

    #[test]
    fn prometheus_json_with_labels() {
        let src = r#"[
  { "targets": ["10.0.0.1:8080", "orders-1.internal:8080"],
    "labels": { "job": "orders", "zone": "eu-1a", "weight": "3", "priority": "1" } },
  { "targets": ["[::1]:9000"] }
]"#;
        let eps = json(src).unwrap();
        assert_eq!(eps.len(), 3);
        assert_eq!(eps[0].host, "10.0.0.1");
        assert_eq!(eps[0].port, 8080);
        assert_eq!(eps[0].zone.as_deref(), Some("eu-1a"));
        assert_eq!((eps[0].weight, eps[0].priority), (3, 1));
        assert_eq!(eps[1].host, "orders-1.internal");
        assert_eq!(eps[1].address, "orders-1.internal:8080");
        assert_eq!(eps[1].weight, 3);
        assert_eq!((eps[2].host.as_str(), eps[2].port), ("::1", 9000));
        assert_eq!(
            (eps[2].weight, eps[2].priority, eps[2].zone.clone()),
            (1, 0, None)
        );
    }

    #[test]
    fn yaml_groups_and_empty_values() {
        let src = "- targets:\n    - 10.0.0.1:80\n  labels:\n    zone: \"\"\n    region: eu\n- targets: []\n";
        let eps = yaml(src).unwrap();
        assert_eq!(eps.len(), 1);
        assert_eq!(eps[0].zone, None);
        assert_eq!(eps[0].region.as_deref(), Some("eu"));
    }

    #[test]
    fn empty_files_and_lists_are_empty() {
        assert!(json("").unwrap().is_empty());
        assert!(json(" [ ] ").unwrap().is_empty());
        assert!(yaml("\n").unwrap().is_empty());
        assert!(yaml("[]").unwrap().is_empty());
    }

    #[test]
    fn tabs_in_json_are_whitespace() {
        let src = "[\n\t{\n\t\t\"targets\": [\"10.0.0.1:80\"]\n\t}\n]";
        assert_eq!(json(src).unwrap().len(), 1);
        let broken = "[\n\t{\n\t\t\"targets\": [\"10.0.0.1\"]\n\t}\n]";
        assert!(rendered(json(broken))
            .starts_with("targets.json:3:15: [0].targets[0]: `10.0.0.1` is not host:port"));
    }

    #[test]
    fn json_syntax_errors_name_line_and_column() {
        let src = "[\n  { \"targets\": [\"10.0.0.1:80\",] }\n]";
        let text = rendered(json(src));
        assert!(text.starts_with("targets.json:2:"), "{text}");
        assert!(text.contains("JSON syntax error"), "{text}");
        assert!(!text.contains(" at line "), "{text}");
    }

    #[test]
    fn bad_values_are_placed_with_their_path() {
        let src = r#"[
  { "targets": ["10.0.0.1:80", "10.0.0.2:99999"] },
  { "targets": ["10.0.0.3:80"], "labels": { "weight": "heavy", "priority": 3 } },
  { "target": ["10.0.0.4:80"] }
]"#;
        let text = rendered(json(src));
        let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with("  help")).collect();
        assert_eq!(
            lines,
            [
                "targets.json:2:32: [0].targets[1]: port 99999 is out of range (1-65535)",
                "targets.json:3:55: [1].labels.weight: label `weight` must be a whole number from 1 to 1000, got `heavy`",
                "targets.json:3:76: [1].labels.priority: expected a string, found an integer",
                "targets.json:4:3: [2].targets: missing required field",
                "targets.json:4:5: [2].target: unknown field `target`",
                "5 errors found",
            ],
            "{text}"
        );
    }

    #[test]
    fn the_root_must_be_a_list() {
        let text = rendered(yaml("targets: [\"10.0.0.1:80\"]\n"));
        assert!(
            text.starts_with("targets.yaml:1:1: expected a list of target groups, found a table"),
            "{text}"
        );
    }

    #[test]
    fn yaml_syntax_errors_are_placed() {
        let text = rendered(yaml("- targets: [\"10.0.0.1:80\"\n- labels: {}\n"));
        assert!(text.starts_with("targets.yaml:"), "{text}");
        assert!(text.contains("syntax error"), "{text}");
    }

    #[test]
    fn formats_by_extension() {
        assert_eq!(
            TargetsFormat::from_path(Path::new("a/t.json")),
            Some(TargetsFormat::Json)
        );
        assert_eq!(
            TargetsFormat::from_path(Path::new("t.yml")),
            Some(TargetsFormat::Yaml)
        );
        assert_eq!(TargetsFormat::from_path(Path::new("t.toml")), None);
        let missing = load_targets(Path::new("/nonexistent/levee-targets.json")).unwrap_err();
        assert!(
            missing.to_string().contains("cannot read targets file"),
            "{missing}"
        );
    }

    proptest::proptest! {
        /// Whatever a generator writes, reading it answers: endpoints or
        /// diagnostics, never a panic.
        #[test]
        fn any_text_is_read_without_panicking(
            src in "[\\[\\]{}:,\"\\t \\n0-9a-z.-]{0,80}",
            noise in proptest::collection::vec(proptest::prelude::any::<char>(), 0..20),
        ) {
            let with_noise: String = src.chars().chain(noise).collect();
            for text in [src.as_str(), with_noise.as_str()] {
                let _ = json(text);
                let _ = yaml(text);
            }
        }

        /// Well-formed groups read back as written.
        #[test]
        fn written_groups_read_back(
            groups in proptest::collection::vec(
                (proptest::collection::vec((1u8..255, 1u16..65535), 0..4), 1u32..=1000, 0u32..=9),
                0..4,
            ),
        ) {
            let text = serde_json::to_string(&groups.iter().map(|(targets, weight, priority)| {
                serde_json::json!({
                    "targets": targets.iter().map(|(h, p)| format!("10.0.0.{h}:{p}")).collect::<Vec<_>>(),
                    "labels": { "weight": weight.to_string(), "priority": priority.to_string() },
                })
            }).collect::<Vec<_>>()).unwrap();
            let read = json(&text).unwrap();
            let expected: Vec<(String, u32, u32)> = groups
                .iter()
                .flat_map(|(targets, w, p)| targets.iter().map(move |(h, port)| (format!("10.0.0.{h}:{port}"), *w, *p)))
                .collect();
            let got: Vec<(String, u32, u32)> = read.iter().map(|e| (e.address.clone(), e.weight, e.priority)).collect();
            proptest::prop_assert_eq!(got, expected);
        }
    }
}
