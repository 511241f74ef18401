//! Layered configuration: several files (`levee run -c base.toml -c
//! prod.toml`) merged into one located tree, which is then decoded as one
//! file is. Owns the merge rules (docs/config.md, "Layered files"):
//!
//! - tables merge key by key, recursively;
//! - a list whose items are all tables with a string `name` merges by name:
//!   an item whose name an earlier file has merges into that entry, a new
//!   name is appended, and `{ name = "x", remove = true }` deletes `x`;
//! - any other list, and every scalar, is replaced by the later file's;
//! - a value that is a table in one file and a list or a scalar in another
//!   is an error naming both positions.
//!
//! Each value keeps its [`Loc`], whose `file` says which layer wrote it, so
//! the decoder's diagnostics and `levee check --explain` name the file and
//! position that set each value.

use crate::diag::{closest, join_path, Diagnostic, Diagnostics};
use crate::node::{Loc, Node, Value};
use crate::{Config, Format};
use std::collections::HashMap;
use std::path::PathBuf;

/// The key that, set to `true` in an entry of a list merged by name,
/// deletes the entry of that name an earlier file defines. No entry of a
/// named list has a field of this name, so the marker cannot be mistaken
/// for a setting (and a misspelt marker is an unknown field).
pub const REMOVE: &str = "remove";

/// Reads `paths` in order, merges them (later files over earlier ones) and
/// validates the result. One path reads exactly as [`crate::load_file`]
/// does. Diagnostics name the file each offending value came from.
pub fn load_files(paths: &[PathBuf]) -> Result<Config, Diagnostics> {
    let sources = read_sources(paths)?;
    load_sources(&sources, &|k| std::env::var(k).ok()).map(|loaded| loaded.config)
}

/// Like [`load_files`], and also where each value of the merged config was
/// set, for `levee check --explain`.
pub fn explain_files(paths: &[PathBuf]) -> Result<Explained, Diagnostics> {
    let sources = read_sources(paths)?;
    let loaded = load_sources(&sources, &|k| std::env::var(k).ok())?;
    Ok(loaded.explain())
}

/// A valid config and the origin of each of its written values.
#[derive(Debug, Clone)]
pub struct Explained {
    /// The merged, validated config.
    pub config: Config,
    /// Every leaf value of the merged tree (a scalar, an empty list or an
    /// empty table), in the tree's order: a table's keys as its first file
    /// lists them (TOML's sorted by name), then keys later files add.
    pub values: Vec<Origin>,
}

/// Where one value of a merged config was set.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Origin {
    /// Field path as diagnostics write it (`routes[2].retry.attempts`);
    /// indexes count in the merged lists.
    pub path: String,
    /// The value as written, before `${VAR}` interpolation; secrets (the
    /// fields the config keeps as [`crate::Secret`]) read `"<redacted>"`.
    pub value: serde_json::Value,
    /// The file that set it, named as given.
    pub file: String,
    /// Line, from 1.
    pub line: usize,
    /// Column, from 1.
    pub col: usize,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}:{}: {} = {}",
            self.file, self.line, self.col, self.path, self.value
        )
    }
}

/// One file's text, before parsing.
pub(crate) struct Source {
    pub(crate) name: String,
    pub(crate) text: String,
    pub(crate) format: Format,
}

/// A validated config with the merged tree it was decoded from.
pub(crate) struct Loaded {
    pub(crate) config: Config,
    pub(crate) root: Node,
    pub(crate) files: Vec<String>,
    pub(crate) secrets: Vec<String>,
}

/// Reads every file, reporting every one that cannot be read.
fn read_sources(paths: &[PathBuf]) -> Result<Vec<Source>, Diagnostics> {
    if paths.is_empty() {
        return Err(Diagnostics(vec![Diagnostic::whole_file(
            "",
            "no config file given".into(),
            None,
        )]));
    }
    let mut sources = Vec::new();
    let mut problems = Vec::new();
    for path in paths {
        let name = path.display().to_string();
        match crate::read_source(path, &name) {
            Ok((text, format)) => sources.push(Source { name, text, format }),
            Err(diags) => problems.extend(diags.0),
        }
    }
    if problems.is_empty() {
        Ok(sources)
    } else {
        Err(Diagnostics(problems))
    }
}

/// Parses, merges and decodes `sources`; `env` answers `${VAR}`.
pub(crate) fn load_sources(
    sources: &[Source],
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Loaded, Diagnostics> {
    let files: Vec<String> = sources.iter().map(|s| s.name.clone()).collect();
    // Every file's syntax errors at once: each stops only its own parse.
    let mut layers = Vec::new();
    let mut problems = Vec::new();
    for (i, source) in sources.iter().enumerate() {
        match crate::parse_source(&source.text, source.format, &source.name) {
            Ok(mut root) => {
                set_file(&mut root, u32::try_from(i).unwrap_or(u32::MAX));
                layers.push(root);
            }
            Err(diags) => problems.extend(diags.0),
        }
    }
    if !problems.is_empty() {
        return Err(Diagnostics(problems));
    }
    let root = merge_layers(layers, &files)?;
    let names: Vec<&str> = files.iter().map(String::as_str).collect();
    let decoded = crate::decode_root(&root, names, env)?;
    Ok(Loaded {
        config: decoded.config,
        root,
        files,
        secrets: decoded.secrets,
    })
}

/// Merges located trees, later over earlier; `files` names them in the
/// order of [`Loc::file`].
pub(crate) fn merge_layers(layers: Vec<Node>, files: &[String]) -> Result<Node, Diagnostics> {
    let mut layers = layers.into_iter();
    let mut root = layers.next().unwrap_or(Node {
        value: Value::Map(Vec::new()),
        loc: Loc::new(1, 1),
    });
    let mut merger = Merger {
        files,
        diags: Vec::new(),
    };
    for later in layers {
        merger.merge(&mut root, later, "");
    }
    if merger.diags.is_empty() {
        return Ok(root);
    }
    // A tree that did not merge cleanly is not decoded: its errors would be
    // about the merge's leftovers, not about the files.
    let mut diags = merger.diags;
    let order = |file: &str| files.iter().position(|f| f == file);
    diags.sort_by_key(|d| (order(&d.file), d.line, d.col));
    Err(Diagnostics(diags))
}

impl Loaded {
    /// The config and where each of its leaf values was written.
    pub(crate) fn explain(self) -> Explained {
        let mut values = Vec::new();
        self.leaves(&self.root, "", &mut values);
        Explained {
            config: self.config,
            values,
        }
    }

    fn leaves(&self, node: &Node, path: &str, out: &mut Vec<Origin>) {
        let value = match &node.value {
            Value::Map(entries) if !entries.is_empty() => {
                for (key, _, child) in entries {
                    self.leaves(child, &join_path(path, key), out);
                }
                return;
            }
            Value::Seq(items) if !items.is_empty() => {
                for (i, item) in items.iter().enumerate() {
                    self.leaves(item, &format!("{path}[{i}]"), out);
                }
                return;
            }
            _ if self.is_secret(path) => serde_json::Value::from("<redacted>"),
            Value::Map(_) => serde_json::json!({}),
            Value::Seq(_) => serde_json::json!([]),
            Value::Null => serde_json::Value::Null,
            Value::Bool(b) => serde_json::Value::from(*b),
            Value::Int(i) => serde_json::Value::from(*i),
            // JSON has no NaN or infinity; the text keeps what was meant.
            Value::Float(f) => serde_json::Number::from_f64(*f)
                .map_or_else(|| serde_json::Value::from(f.to_string()), Into::into),
            Value::Str(s) => serde_json::Value::from(s.as_str()),
        };
        out.push(Origin {
            path: path.to_string(),
            value,
            file: self.file_name(node.loc).to_string(),
            line: node.loc.line,
            col: node.loc.col,
        });
    }

    /// Whether `path` is a secret or lies inside one (a webhook's headers).
    fn is_secret(&self, path: &str) -> bool {
        self.secrets.iter().any(|s| {
            path.strip_prefix(s.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
        })
    }

    fn file_name(&self, loc: Loc) -> &str {
        self.files.get(loc.file as usize).map_or("", String::as_str)
    }
}

/// Marks every position in `node` as being in file `file`.
fn set_file(node: &mut Node, file: u32) {
    node.loc.file = file;
    match &mut node.value {
        Value::Map(entries) => {
            for (_, loc, child) in entries {
                loc.file = file;
                set_file(child, file);
            }
        }
        Value::Seq(items) => items.iter_mut().for_each(|item| set_file(item, file)),
        _ => {}
    }
}

/// What a value is, for the merge: values of one kind replace or merge
/// into each other; a null (YAML `~`) goes with any kind.
#[derive(PartialEq, Eq)]
enum Kind {
    Null,
    Scalar,
    List,
    Table,
}

fn kind(value: &Value) -> Kind {
    match value {
        Value::Null => Kind::Null,
        Value::Seq(_) => Kind::List,
        Value::Map(_) => Kind::Table,
        _ => Kind::Scalar,
    }
}

/// The `name` of a list item that is a table with a string name.
fn name_of(item: &Node) -> Option<&str> {
    match &item.get("name")?.value {
        Value::Str(s) => Some(s),
        _ => None,
    }
}

/// Whether `later` merges into `earlier` by name: every item of both is a
/// named table. An empty later list is not merged but replaces (clears).
fn merges_by_name(earlier: &[Node], later: &[Node]) -> bool {
    !later.is_empty()
        && later.iter().all(|i| name_of(i).is_some())
        && earlier.iter().all(|i| name_of(i).is_some())
}

/// Merges layers, collecting what cannot be merged as diagnostics.
struct Merger<'a> {
    files: &'a [String],
    diags: Vec<Diagnostic>,
}

impl Merger<'_> {
    fn at(&self, loc: Loc) -> String {
        let file = self.files.get(loc.file as usize).map_or("", String::as_str);
        format!("{file}:{}:{}", loc.line, loc.col)
    }

    fn error(&mut self, loc: Loc, path: &str, message: String, help: Option<String>) {
        let file = self.files.get(loc.file as usize).map_or("", String::as_str);
        self.diags.push(Diagnostic {
            file: file.to_string(),
            line: loc.line,
            col: loc.col,
            path: path.to_string(),
            message,
            help,
        });
    }

    /// Merges `later` over `earlier`, in place. Returns whether the later
    /// value replaced the earlier one (rather than merging into it, or
    /// clashing with it), so that the caller can move the key's position.
    fn merge(&mut self, earlier: &mut Node, later: Node, path: &str) -> bool {
        let old = std::mem::replace(&mut earlier.value, Value::Null);
        let (value, replaced) = match (old, later.value) {
            (Value::Map(mut entries), Value::Map(more)) => {
                self.merge_tables(&mut entries, more, path);
                (Value::Map(entries), false)
            }
            (Value::Seq(mut items), Value::Seq(more)) if merges_by_name(&items, &more) => {
                self.merge_named(&mut items, more, path);
                (Value::Seq(items), false)
            }
            (old, new)
                if kind(&old) != kind(&new)
                    && kind(&old) != Kind::Null
                    && kind(&new) != Kind::Null =>
            {
                self.error(
                    later.loc,
                    path,
                    format!(
                        "{} here, but {} in {}",
                        new.type_name(),
                        old.type_name(),
                        self.at(earlier.loc)
                    ),
                    Some(
                        "a later file may replace a value, or merge into a table or a list of named entries, but not change its kind"
                            .into(),
                    ),
                );
                (old, false)
            }
            (_, new) => {
                earlier.loc = later.loc;
                (self.fresh(new, path), true)
            }
        };
        earlier.value = value;
        replaced
    }

    fn merge_tables(
        &mut self,
        entries: &mut Vec<(String, Loc, Node)>,
        more: Vec<(String, Loc, Node)>,
        path: &str,
    ) {
        for (key, key_loc, node) in more {
            let child = join_path(path, &key);
            match entries.iter_mut().find(|(k, _, _)| *k == key) {
                Some((_, earlier_key_loc, earlier)) => {
                    if self.merge(earlier, node, &child) {
                        *earlier_key_loc = key_loc;
                    }
                }
                None => {
                    let loc = node.loc;
                    let value = self.fresh(node.value, &child);
                    entries.push((key, key_loc, Node { value, loc }));
                }
            }
        }
    }

    /// Merges the named entries `more` into `items`: by name, appending
    /// new names, deleting those marked [`REMOVE`].
    fn merge_named(&mut self, items: &mut Vec<Node>, more: Vec<Node>, path: &str) {
        // Each name's last entry in this file and whether it was a removal:
        // a name may be removed and written again, not written twice.
        let mut seen: HashMap<String, (Loc, bool)> = HashMap::new();
        for (i, mut item) in more.into_iter().enumerate() {
            let item_path = format!("{path}[{i}]");
            let Some(name) = name_of(&item).map(str::to_string) else {
                continue;
            };
            let removal = item.get(REMOVE).is_some();
            if let Some((first, false)) = seen.get(&name) {
                let message = format!("`{name}` is written twice (first at {})", self.at(*first));
                self.error(
                    item.loc,
                    &join_path(&item_path, "name"),
                    message,
                    Some(
                        "write each entry once; entries of the same name in different files merge"
                            .into(),
                    ),
                );
                continue;
            }
            seen.insert(name.clone(), (item.loc, removal));
            let existing = items.iter().position(|n| name_of(n) == Some(name.as_str()));
            if removal {
                if !self.check_removal(&item, &item_path) {
                    continue;
                }
                match existing {
                    Some(at) => {
                        items.remove(at);
                    }
                    None => self.nothing_to_remove(items, &item, &name, &item_path),
                }
                continue;
            }
            match existing {
                Some(at) => {
                    // The entry keeps the name's position in the file that
                    // created it: merging by name does not set the name.
                    if let Value::Map(entries) = &mut item.value {
                        entries.retain(|(k, _, _)| k != "name");
                    }
                    self.merge(&mut items[at], item, &item_path);
                }
                None => {
                    let loc = item.loc;
                    let value = self.fresh(item.value, &item_path);
                    items.push(Node { value, loc });
                }
            }
        }
    }

    /// Whether a [`REMOVE`] entry is well formed: `remove = true` and the
    /// name, nothing else (a field next to it would be silently dropped).
    fn check_removal(&mut self, item: &Node, path: &str) -> bool {
        let Value::Map(entries) = &item.value else {
            return false;
        };
        let mut ok = true;
        for (key, key_loc, value) in entries {
            if key == REMOVE && value.value != Value::Bool(true) {
                self.error(
                    value.loc,
                    &join_path(path, REMOVE),
                    format!("`{REMOVE}` takes only `true`, found {}", value.value.type_name()),
                    Some(format!(
                        "`{REMOVE} = true` deletes the entry of this name that an earlier file defines; to keep it, delete this entry"
                    )),
                );
                ok = false;
            } else if key != REMOVE && key != "name" {
                self.error(
                    *key_loc,
                    &join_path(path, key),
                    format!("`{key}` next to `{REMOVE} = true`: the entry is deleted, so this would be ignored"),
                    Some(format!(
                        "write only `name` and `{REMOVE} = true`, or leave `{REMOVE}` out to change the entry"
                    )),
                );
                ok = false;
            }
        }
        ok
    }

    fn nothing_to_remove(&mut self, items: &[Node], item: &Node, name: &str, path: &str) {
        let names: Vec<&str> = items.iter().filter_map(name_of).collect();
        let help = match closest(name, &names) {
            Some(near) => format!("did you mean `{near}`?"),
            None if names.is_empty() => "no earlier file defines entries here".to_string(),
            None => format!("the earlier files define: {}", names.join(", ")),
        };
        let loc = item.get(REMOVE).map_or(item.loc, |n| n.loc);
        self.error(
            loc,
            &join_path(path, REMOVE),
            format!("no earlier file defines an entry named `{name}` here to remove"),
            Some(help),
        );
    }

    /// A value a later file adds where the earlier ones have nothing (or
    /// replaces wholesale): kept as written, except that [`REMOVE`]
    /// entries in it, which have nothing to remove, are reported.
    fn fresh(&mut self, value: Value, path: &str) -> Value {
        match value {
            Value::Map(entries) => {
                let mut out = Vec::with_capacity(entries.len());
                self.merge_tables(&mut out, entries, path);
                Value::Map(out)
            }
            Value::Seq(items) if merges_by_name(&[], &items) => {
                let mut out = Vec::with_capacity(items.len());
                self.merge_named(&mut out, items, path);
                Value::Seq(out)
            }
            Value::Seq(items) => Value::Seq(
                items
                    .into_iter()
                    .enumerate()
                    .map(|(i, item)| Node {
                        loc: item.loc,
                        value: self.fresh(item.value, &format!("{path}[{i}]")),
                    })
                    .collect(),
            ),
            scalar => scalar,
        }
    }
}

#[cfg(test)]
mod tests;
