//! Reading an OpenSLO stream: each document's envelope (`apiVersion`,
//! `kind`, `metadata.name`) is checked, and the good ones are indexed by kind
//! and name so that references (`indicatorRef`, `alertPolicyRef`,
//! `conditionRef`, `metricSourceRef`) can be followed.

use super::document_path;
use crate::diag::Decoder;
use crate::node::{Loc, Node, Value};

/// A Sloth `prometheus/v1` file (no `apiVersion`; `version`, `service`,
/// `slos`), named by its service.
pub(super) const SLOTH: &str = "Sloth";
/// Sloth's Kubernetes resource (`apiVersion: sloth.slok.dev/v1`).
pub(super) const SLOTH_K8S: &str = "PrometheusServiceLevel";

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
pub(super) struct Doc<'n> {
    pub(super) kind: &'static str,
    pub(super) name: String,
    /// `Kind name`, how diagnostics name the document.
    pub(super) label: String,
    pub(super) node: &'n Node,
    pub(super) loc: Loc,
}

/// Checks each document's envelope (`apiVersion`, `kind`, `metadata.name`)
/// and indexes the good ones.
pub(super) fn index_documents<'n>(d: &mut Decoder<'_>, roots: &'n [Node]) -> Vec<Doc<'n>> {
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
            report(
                d,
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
        if let (
            None,
            Some(Node {
                value: Value::Str(v),
                loc: vloc,
            }),
        ) = (node.get("apiVersion"), node.get("version"))
        {
            if v != "prometheus/v1" {
                report(
                    d,
                    *vloc,
                    &at,
                    "version",
                    &format!("only Sloth's `prometheus/v1` can be imported, found `{v}`"),
                    None,
                );
                continue;
            }
            let name = match node.get("service") {
                Some(Node {
                    value: Value::Str(s),
                    ..
                }) if !s.is_empty() => s.clone(),
                Some(n) => {
                    d.type_error(n, &document_path(&at, "service"), "a service name");
                    continue;
                }
                None => {
                    report(
                        d,
                        node.loc,
                        &at,
                        "service",
                        "missing required field `service`",
                        None,
                    );
                    continue;
                }
            };
            docs.push(Doc {
                kind: SLOTH,
                label: format!("Sloth service {name}"),
                name,
                node,
                loc: node.loc,
            });
            continue;
        }
        match node.get("apiVersion").map(|n| (n, &n.value)) {
            Some((_, Value::Str(v))) if v == "openslo/v1" => {}
            Some((_, Value::Str(v))) if v == "sloth.slok.dev/v1" => {
                match (
                    node.get("kind"),
                    node.get("metadata").and_then(|m| m.get("name")),
                ) {
                    (
                        Some(Node {
                            value: Value::Str(k),
                            ..
                        }),
                        Some(Node {
                            value: Value::Str(name),
                            ..
                        }),
                    ) if k == SLOTH_K8S => {
                        docs.push(Doc {
                            kind: SLOTH_K8S,
                            label: format!("{SLOTH_K8S} {name}"),
                            name: name.clone(),
                            node,
                            loc: node.loc,
                        });
                    }
                    (Some(k), _) if k.value != Value::Str(SLOTH_K8S.into()) => report(
                        d,
                        k.loc,
                        &at,
                        "kind",
                        &format!("only Sloth's `kind: {SLOTH_K8S}` can be imported"),
                        None,
                    ),
                    _ => report(
                        d,
                        node.loc,
                        &at,
                        "metadata.name",
                        "missing required field `metadata.name`",
                        None,
                    ),
                }
                continue;
            }
            Some((n, Value::Str(v))) if v.starts_with("openslo/") => {
                report(
                    d,
                    n.loc,
                    &at,
                    "apiVersion",
                    &format!("only OpenSLO v1 and v1alpha can be imported, found `{v}`"),
                    Some("write the documents as `apiVersion: openslo/v1`"),
                );
                continue;
            }
            Some((n, v)) => {
                let found = match v {
                    Value::Str(s) => format!("`{s}`"),
                    other => other.type_name().to_string(),
                };
                report(
                    d,
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
                report(
                d,
                    node.loc,
                    &at,
                    "",
                    "not an OpenSLO document: missing `apiVersion`",
                    Some("OpenSLO v1 documents start with `apiVersion: openslo/v1` and a `kind` such as `SLO`"),
                );
                continue;
            }
        }
        let kind = match node.get("kind") {
            Some(n) => match &n.value {
                Value::Str(k) => match KINDS.iter().find(|known| known.eq_ignore_ascii_case(k)) {
                    Some(known) => Some(*known),
                    None => {
                        report(
                            d,
                            n.loc,
                            &at,
                            "kind",
                            &format!("unknown OpenSLO kind `{k}`"),
                            Some(&format!("the v1 kinds are {}", KINDS.join(", "))),
                        );
                        None
                    }
                },
                _ => {
                    d.type_error(n, &document_path(&at, "kind"), "a string");
                    None
                }
            },
            None => {
                report(
                    d,
                    node.loc,
                    &at,
                    "kind",
                    "missing required field `kind`",
                    None,
                );
                None
            }
        };
        let name = match node.get("metadata").and_then(|m| m.get("name")) {
            Some(Node {
                value: Value::Str(s),
                ..
            }) if !s.is_empty() => Some(s.clone()),
            Some(n) => {
                d.type_error(n, &document_path(&at, "metadata.name"), "a name");
                None
            }
            None => {
                report(
                    d,
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
            report(
                d,
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

/// One envelope problem of document `doc` (`document 2`, `SLO checkout`).
fn report(d: &mut Decoder<'_>, loc: Loc, doc: &str, path: &str, message: &str, help: Option<&str>) {
    let path = document_path(doc, path);
    match help {
        Some(help) => d.error_help(loc, &path, message, help),
        None => d.error(loc, &path, message),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_document_of_the_stream() {
        let docs =
            crate::node::parse_yaml_documents("a: 1\n---\nb: [x]\n---\n# empty\n...\n---\n- c\n")
                .unwrap();
        let kinds: Vec<&str> = docs.iter().map(|d| d.value.type_name()).collect();
        assert_eq!(kinds, ["a table", "a table", "null", "a list"]);
        assert_eq!(docs[1].loc.line, 3);
        assert!(crate::node::parse_yaml_documents("a: [1\n").is_err());
    }
}
