//! A format-neutral document tree where every value knows its line and
//! column, built from TOML or YAML. Decoding walks this tree (not serde) so
//! that every error is collected, not only the first, and each one points at
//! the place in the file.

use saphyr_parser::{Event, Parser, ScalarStyle};

/// A 1-based line and column in the source file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Loc {
    /// Line, from 1.
    pub line: usize,
    /// Column, from 1.
    pub col: usize,
}

/// A value with its location.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// The value.
    pub value: Value,
    /// Where the value starts.
    pub loc: Loc,
}

/// A document value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// YAML `~`/`null` or an empty value.
    Null,
    /// A boolean.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// A string (after `${ENV}` interpolation).
    Str(String),
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping, in file order, with each key's own location.
    Map(Vec<(String, Loc, Node)>),
}

impl Value {
    /// A short name of the type for messages ("a string", "a table").
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a float",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a table",
        }
    }
}

/// A syntax error with its location.
#[derive(Debug, Clone, PartialEq)]
pub struct SyntaxError {
    /// Where it was found.
    pub loc: Loc,
    /// What is wrong.
    pub message: String,
}

fn loc_of_offset(src: &str, offset: usize) -> Loc {
    let offset = offset.min(src.len());
    let before = &src[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    Loc {
        line,
        col: before[line_start..].chars().count() + 1,
    }
}

/// Parses TOML into a located tree.
pub fn parse_toml(src: &str) -> Result<Node, SyntaxError> {
    use toml::de::{DeTable, DeValue};
    use toml::Spanned;

    fn convert(src: &str, v: &Spanned<DeValue<'_>>) -> Node {
        let loc = loc_of_offset(src, v.span().start);
        let value = match v.get_ref() {
            DeValue::String(s) => Value::Str(s.to_string()),
            DeValue::Integer(i) => {
                match i64::from_str_radix(&i.as_str().replace('_', ""), i.radix()) {
                    Ok(n) => Value::Int(n),
                    Err(_) => Value::Str(i.as_str().to_string()),
                }
            }
            DeValue::Float(f) => {
                Value::Float(f.as_str().replace('_', "").parse().unwrap_or(f64::NAN))
            }
            DeValue::Boolean(b) => Value::Bool(*b),
            DeValue::Datetime(d) => Value::Str(d.to_string()),
            DeValue::Array(a) => Value::Seq(a.iter().map(|x| convert(src, x)).collect()),
            DeValue::Table(t) => Value::Map(
                t.iter()
                    .map(|(k, v)| {
                        (
                            k.get_ref().to_string(),
                            loc_of_offset(src, k.span().start),
                            convert(src, v),
                        )
                    })
                    .collect(),
            ),
        };
        Node { value, loc }
    }

    match DeTable::parse(src) {
        Ok(table) => {
            let root = Spanned::new(table.span(), DeValue::Table(table.into_inner()));
            let mut node = convert(src, &root);
            node.loc = Loc { line: 1, col: 1 };
            Ok(node)
        }
        Err(e) => Err(SyntaxError {
            loc: loc_of_offset(src, e.span().map_or(0, |s| s.start)),
            message: e.message().trim().to_string(),
        }),
    }
}

/// Parses YAML (the first document) into a located tree; an empty stream
/// is an empty mapping.
pub fn parse_yaml(src: &str) -> Result<Node, SyntaxError> {
    Ok(parse_yaml_documents(src)?
        .into_iter()
        .next()
        .unwrap_or(Node {
            value: Value::Map(Vec::new()),
            loc: Loc { line: 1, col: 1 },
        }))
}

/// Parses every YAML document in `src` into located trees (a stream
/// separated by `---`, as OpenSLO files are). Plain scalars resolve by
/// YAML 1.2's core schema.
pub fn parse_yaml_documents(src: &str) -> Result<Vec<Node>, SyntaxError> {
    enum Frame {
        Seq(Loc, Vec<Node>),
        Map(Loc, Vec<(String, Loc, Node)>, Option<(String, Loc)>),
    }
    let mut docs = Vec::new();
    let mut stack: Vec<Frame> = Vec::new();
    let mut anchors: std::collections::HashMap<usize, Node> = Default::default();
    let mut pending_anchor: Vec<usize> = Vec::new();
    let mut parser = Parser::new_from_str(src);
    while let Some(ev) = parser.next_event() {
        let (event, span) = ev.map_err(|e| SyntaxError {
            loc: Loc {
                line: e.marker().line(),
                col: e.marker().col() + 1,
            },
            message: e.info().to_string(),
        })?;
        let loc = Loc {
            line: span.start.line(),
            col: span.start.col() + 1,
        };
        let node = match event {
            Event::Scalar(text, style, anchor, _tag) => {
                let value = if style == ScalarStyle::Plain {
                    plain_scalar(&text)
                } else {
                    Value::Str(text.into_owned())
                };
                let node = Node { value, loc };
                if anchor > 0 {
                    anchors.insert(anchor, node.clone());
                }
                node
            }
            Event::SequenceStart(anchor, _) => {
                pending_anchor.push(anchor);
                stack.push(Frame::Seq(loc, Vec::new()));
                continue;
            }
            Event::MappingStart(anchor, _) => {
                pending_anchor.push(anchor);
                stack.push(Frame::Map(loc, Vec::new(), None));
                continue;
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let node = match stack.pop() {
                    Some(Frame::Seq(l, items)) => Node {
                        value: Value::Seq(items),
                        loc: l,
                    },
                    Some(Frame::Map(l, entries, _)) => Node {
                        value: Value::Map(entries),
                        loc: l,
                    },
                    None => continue,
                };
                if let Some(anchor) = pending_anchor.pop() {
                    if anchor > 0 {
                        anchors.insert(anchor, node.clone());
                    }
                }
                node
            }
            Event::Alias(id) => anchors.get(&id).cloned().ok_or(SyntaxError {
                loc,
                message: "alias refers to an unknown anchor".into(),
            })?,
            _ => continue,
        };
        // A node finished with nothing open is a document's root.
        match stack.last_mut() {
            None => docs.push(node),
            Some(Frame::Seq(_, items)) => items.push(node),
            Some(Frame::Map(_, entries, key)) => match key.take() {
                Some((k, kloc)) => entries.push((k, kloc, node)),
                None => match node.value {
                    Value::Str(s) => *key = Some((s, node.loc)),
                    Value::Int(i) => *key = Some((i.to_string(), node.loc)),
                    Value::Bool(b) => *key = Some((b.to_string(), node.loc)),
                    other => {
                        return Err(SyntaxError {
                            loc: node.loc,
                            message: format!(
                                "mapping keys must be strings, found {}",
                                other.type_name()
                            ),
                        })
                    }
                },
            },
        }
    }
    Ok(docs)
}

/// Resolves a plain YAML scalar the way YAML 1.2's core schema does.
fn plain_scalar(text: &str) -> Value {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        _ => {}
    }
    if let Ok(i) = text.parse::<i64>() {
        return Value::Int(i);
    }
    if text.contains('.')
        && text
            .chars()
            .all(|c| c.is_ascii_digit() || "+-.eE".contains(c))
    {
        if let Ok(f) = text.parse::<f64>() {
            return Value::Float(f);
        }
    }
    Value::Str(text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get<'a>(n: &'a Node, key: &str) -> &'a Node {
        match &n.value {
            Value::Map(m) => &m.iter().find(|(k, _, _)| k == key).unwrap().2,
            _ => panic!("not a map"),
        }
    }

    #[test]
    fn toml_locations() {
        let src = "a = 1\n\n[b]\nc = \"x\"\nd = [true, 2.5]\n";
        let root = parse_toml(src).unwrap();
        assert_eq!(get(&root, "a").value, Value::Int(1));
        let c = get(get(&root, "b"), "c");
        assert_eq!(c.value, Value::Str("x".into()));
        assert_eq!(c.loc, Loc { line: 4, col: 5 });
    }

    #[test]
    fn yaml_locations_and_types() {
        let src = "a: 1\nb:\n  c: x\n  d: [true, 2.5, '3']\n  e: ~\n";
        let root = parse_yaml(src).unwrap();
        assert_eq!(get(&root, "a").value, Value::Int(1));
        let b = get(&root, "b");
        let c = get(b, "c");
        assert_eq!(c.value, Value::Str("x".into()));
        assert_eq!(c.loc, Loc { line: 3, col: 6 });
        match &get(b, "d").value {
            Value::Seq(items) => {
                assert_eq!(items[0].value, Value::Bool(true));
                assert_eq!(items[1].value, Value::Float(2.5));
                assert_eq!(items[2].value, Value::Str("3".into()));
            }
            _ => panic!(),
        }
        assert_eq!(get(b, "e").value, Value::Null);
    }

    #[test]
    fn syntax_errors_have_locations() {
        let e = parse_toml("a = 1\nb = \n").unwrap_err();
        assert_eq!(e.loc.line, 2);
        let e = parse_yaml("a: [1, 2\nb: 3\n").unwrap_err();
        assert!(e.loc.line >= 1);
    }
}
