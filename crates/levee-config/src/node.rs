//! A format-neutral document tree where every value knows its line and
//! column, built from TOML or YAML. Decoding walks this tree (not serde) so
//! that every error is collected, not only the first, and each one points at
//! the place in the file.

use saphyr_parser::{Event, Parser, ScalarStyle};

/// A 1-based line and column, and the file they are in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Loc {
    /// Line, from 1.
    pub line: usize,
    /// Column, from 1.
    pub col: usize,
    /// Which file: the position of the file among the layers merged into
    /// one tree (`-c base.toml -c prod.toml`: 0 and 1), so that a merged
    /// value still points into the file that set it. Always 0 for a tree
    /// read from one file.
    pub file: u32,
}

impl Loc {
    /// Line `line`, column `col` of the first (or only) file.
    pub fn new(line: usize, col: usize) -> Self {
        Loc { line, col, file: 0 }
    }
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
    /// What the format expects there, when a likely fix is known.
    pub help: Option<String>,
}

fn loc_of_offset(src: &str, offset: usize) -> Loc {
    let mut offset = offset.min(src.len());
    while !src.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &src[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    Loc::new(line, before[line_start..].chars().count() + 1)
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
            node.loc = Loc::new(1, 1);
            Ok(node)
        }
        Err(e) => Err(SyntaxError {
            loc: loc_of_offset(src, e.span().map_or(0, |s| s.start)),
            message: e.message().trim().to_string(),
            help: None,
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
            loc: Loc::new(1, 1),
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
    // Each anchor's node and its size in nodes: aliases copy the node, so
    // what they add up to is bounded (nested aliases grow exponentially).
    let mut anchors: std::collections::HashMap<usize, (Node, usize)> = Default::default();
    let mut copied = 0usize;
    let mut pending_anchor: Vec<usize> = Vec::new();
    let mut parser = Parser::new_from_str(src);
    while let Some(ev) = parser.next_event() {
        let (event, span) = ev.map_err(|e| {
            let loc = Loc::new(e.marker().line(), e.marker().col() + 1);
            SyntaxError {
                loc,
                help: Some(yaml_hint(src, loc, e.info())),
                message: e.info().to_string(),
            }
        })?;
        let loc = Loc::new(span.start.line(), span.start.col() + 1);
        let node = match event {
            Event::Scalar(text, style, anchor, _tag) => {
                let value = if style == ScalarStyle::Plain {
                    plain_scalar(&text)
                } else {
                    Value::Str(text.into_owned())
                };
                let node = Node { value, loc };
                if anchor > 0 {
                    anchors.insert(anchor, (node.clone(), 1));
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
                        anchors.insert(anchor, (node.clone(), node.size()));
                    }
                }
                node
            }
            Event::Alias(id) => {
                let (node, size) = anchors.get(&id).ok_or(SyntaxError {
                    loc,
                    message: "alias refers to an unknown anchor".into(),
                    help: Some("define the anchor (`&name`) before the alias (`*name`)".into()),
                })?;
                copied = copied.saturating_add(*size);
                if copied > MAX_ALIAS_COPIES {
                    return Err(SyntaxError {
                        loc,
                        message: format!("aliases expand to more than {MAX_ALIAS_COPIES} values"),
                        help: Some(
                            "aliases of aliases multiply; write the repeated parts out".into(),
                        ),
                    });
                }
                node.clone()
            }
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
                            help: None,
                        })
                    }
                },
            },
        }
    }
    Ok(docs)
}

/// What YAML expects where its parser stopped, for the `help:` line: the
/// parser's own message names the grammar rule, not the likely slip.
fn yaml_hint(src: &str, loc: Loc, message: &str) -> String {
    if looks_like_toml(src) {
        return TOML_IN_YAML.to_string();
    }
    let lines: Vec<&str> = src.lines().collect();
    // The parser often notices a slip on the line after it.
    let here = loc.line.saturating_sub(1);
    let nearby = [here, here.saturating_sub(1)];
    if message.contains("tab") {
        return "YAML indents with spaces only: replace the tabs at the start of the line with spaces"
            .into();
    }
    if message.contains("quoted scalar") {
        return "a quoted value is not closed: end it with the same quote it starts with (`\"` or `'`)"
            .into();
    }
    if message.contains("flow sequence") {
        return "a `[` list is not closed: separate items with `,` and end the list with `]`"
            .into();
    }
    if message.contains("flow mapping") {
        return "a `{` table is not closed: separate entries with `,` and end the table with `}`"
            .into();
    }
    if message.contains("mapping values are not allowed") {
        if let Some((written, fixed)) = nearby
            .iter()
            .filter_map(|i| lines.get(*i))
            .find_map(|l| missing_space_after_colon(l))
        {
            return format!("YAML needs a space after the colon: write `{fixed}`, not `{written}`");
        }
        return "a value containing `: ` must be quoted (`key: \"a: b\"`); otherwise this line is indented further than the keys above it"
            .into();
    }
    if message.contains("block collection") || message.contains("block mapping") {
        return "the indentation does not match the lines above: keys of one table start in the same column, and items of one list start with `- ` in the same column"
            .into();
    }
    "YAML writes `key: value` (a space after the colon), nests by indenting with spaces, and lists items as `- item`"
        .into()
}

pub(crate) const TOML_IN_YAML: &str =
    "this looks like TOML (`[section]`, `key = value`), but the file is read as YAML, which writes `key: value` and nests by indentation; name the file *.toml, or convert it";

/// Whether `src` has TOML's table headers or `key = value` lines at the
/// top level (and no YAML `key:` line that would explain them).
pub(crate) fn looks_like_toml(src: &str) -> bool {
    let mut toml = false;
    for line in src.lines() {
        let line = line.trim_end();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let header = line.strip_prefix('[').and_then(|l| l.strip_suffix(']'));
        let header = header.map(|h| h.trim_start_matches('[').trim_end_matches(']'));
        if header.is_some_and(|h| !h.is_empty() && h.chars().all(is_key_char)) {
            toml = true;
            continue;
        }
        if let Some((key, _)) = line.split_once('=') {
            let key = key.trim();
            if !line.starts_with(' ') && !key.is_empty() && key.chars().all(is_key_char) {
                toml = true;
                continue;
            }
        }
        if !line.starts_with(' ')
            && line
                .split_once(':')
                .is_some_and(|(k, _)| k.chars().all(is_key_char))
        {
            return false;
        }
    }
    toml
}

fn is_key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '"')
}

/// `name:public` (a key, a colon, no space) and its fix `name: public`.
pub(crate) fn missing_space_after_colon(line: &str) -> Option<(String, String)> {
    let body = line.trim_start();
    let body = body.strip_prefix("- ").unwrap_or(body).trim_start();
    let (key, value) = body.split_once(':')?;
    let valid_key = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    let glued = value.chars().next().is_some_and(|c| !c.is_whitespace());
    (valid_key && glued && !value.starts_with("//"))
        .then(|| (format!("{key}:{value}"), format!("{key}: {value}")))
}

/// How many values YAML aliases may copy in one file, in total. Far above
/// what a config repeats, far below what exhausts memory.
const MAX_ALIAS_COPIES: usize = 100_000;

impl Node {
    /// The value of `key` when this node is a mapping that has it.
    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.value {
            Value::Map(entries) => entries.iter().find(|(k, _, _)| k == key).map(|(_, _, v)| v),
            _ => None,
        }
    }

    /// The node at field path `path` below this one (`backoff.base`,
    /// `rate_limits[2].global`), if it is written.
    pub fn find(&self, path: &str) -> Option<&Node> {
        let mut node = self;
        for segment in path.split('.').filter(|s| !s.is_empty()) {
            let (key, mut indexes) = match segment.find('[') {
                Some(i) => (&segment[..i], &segment[i..]),
                None => (segment, ""),
            };
            if !key.is_empty() {
                node = node.get(key)?;
            }
            while let Some(rest) = indexes.strip_prefix('[') {
                let (index, after) = rest.split_once(']')?;
                let Value::Seq(items) = &node.value else {
                    return None;
                };
                node = items.get(index.parse::<usize>().ok()?)?;
                indexes = after;
            }
        }
        Some(node)
    }

    /// Where the first of `paths` that is written starts, or this node's
    /// own position: a problem with a value points at the value.
    pub fn loc_of(&self, paths: &[&str]) -> Loc {
        paths
            .iter()
            .find_map(|p| self.find(p).filter(|n| n.value != Value::Null))
            .map_or(self.loc, |n| n.loc)
    }

    /// The number of values in this node, itself included.
    fn size(&self) -> usize {
        1 + match &self.value {
            Value::Seq(items) => items.iter().map(Node::size).sum(),
            Value::Map(entries) => entries.iter().map(|(_, _, n)| n.size()).sum(),
            _ => 0,
        }
    }
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
        assert_eq!(c.loc, Loc::new(4, 5));
    }

    #[test]
    fn yaml_locations_and_types() {
        let src = "a: 1\nb:\n  c: x\n  d: [true, 2.5, '3']\n  e: ~\n";
        let root = parse_yaml(src).unwrap();
        assert_eq!(get(&root, "a").value, Value::Int(1));
        let b = get(&root, "b");
        let c = get(b, "c");
        assert_eq!(c.value, Value::Str("x".into()));
        assert_eq!(c.loc, Loc::new(3, 6));
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
    fn find_walks_field_paths() {
        let src = "a = 1\n[b]\nc = [{ d = 2 }, { d = [3, 4] }]\n";
        let root = parse_toml(src).unwrap();
        assert_eq!(root.find("b.c[1].d[1]").unwrap().value, Value::Int(4));
        assert_eq!(root.find("b.c[1].d[1]").unwrap().loc, Loc::new(3, 27));
        assert!(root.find("b.c[2]").is_none());
        assert!(root.find("a.x").is_none());
        assert_eq!(root.loc_of(&["b.x", "b.c[0].d"]), Loc::new(3, 12));
        assert_eq!(root.loc_of(&["nowhere"]), root.loc);
    }

    #[test]
    fn syntax_errors_have_locations() {
        let e = parse_toml("a = 1\nb = \n").unwrap_err();
        assert_eq!(e.loc.line, 2);
        let e = parse_yaml("a: [1, 2\nb: 3\n").unwrap_err();
        assert!(e.loc.line >= 1);
    }
}
