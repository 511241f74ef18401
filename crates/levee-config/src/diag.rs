//! Diagnostics and the decoding toolkit: a `Decoder` walks the located tree,
//! converts leaves (strings with `${ENV}`, durations, sizes, addresses) and
//! collects every problem as a `Diagnostic` naming file, line, column and
//! field path, with a "did you mean" for misspelt keys.

use crate::node::{Loc, Node, Value};
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

/// One problem found in a config file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Diagnostic {
    /// The file's name as given.
    pub file: String,
    /// Line, from 1.
    pub line: usize,
    /// Column, from 1.
    pub col: usize,
    /// Field path such as `routes[2].match.path`. In a file of several
    /// documents (OpenSLO), it starts with the document:
    /// `SLO checkout: spec.indicatorRef`.
    pub path: String,
    /// What is wrong.
    pub message: String,
    /// A likely fix.
    pub help: Option<String>,
}

impl Diagnostic {
    /// A problem with a file as a whole (it cannot be read, it holds nothing
    /// usable), placed at its start.
    pub(crate) fn whole_file(file: &str, message: String, help: Option<String>) -> Self {
        Diagnostic {
            file: file.to_string(),
            line: 1,
            col: 1,
            path: String::new(),
            message,
            help,
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file, self.line, self.col)?;
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)?;
        if let Some(help) = &self.help {
            write!(f, "\n  help: {help}")?;
        }
        Ok(())
    }
}

/// Every diagnostic of a config that failed to load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in &self.0 {
            writeln!(f, "{d}")?;
        }
        write!(
            f,
            "{} error{} found",
            self.0.len(),
            if self.0.len() == 1 { "" } else { "s" }
        )
    }
}

impl std::error::Error for Diagnostics {}

/// A mapping being decoded; remembers which keys were asked for, so that
/// unknown keys can be reported with the closest known one.
pub(crate) struct Table<'n> {
    entries: &'n [(String, Loc, Node)],
    asked: Vec<&'static str>,
    path: String,
    pub(crate) loc: Loc,
}

impl<'n> Table<'n> {
    pub(crate) fn path(&self) -> &str {
        &self.path
    }

    /// Whether `key` is written (and not null).
    pub(crate) fn has(&self, key: &str) -> bool {
        self.entries
            .iter()
            .any(|(k, _, n)| k == key && n.value != Value::Null)
    }

    fn child_path(&self, key: &str) -> String {
        join_path(&self.path, key)
    }
}

/// The field path of `key` below `path` (`a.b` and `c` make `a.b.c`).
pub(crate) fn join_path(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// Looks up an environment variable for `${VAR}` in strings.
pub(crate) type Env<'f> = &'f dyn Fn(&str) -> Option<String>;

/// Walks a located tree, converting values and collecting diagnostics.
pub(crate) struct Decoder<'f> {
    /// The files the tree was read from, in the order of [`Loc::file`].
    files: Vec<&'f str>,
    pub(crate) diags: Vec<Diagnostic>,
    /// Where `${VAR}` in strings is looked up; `None` takes strings as
    /// written, for files that are not Levee configs (OpenSLO).
    env: Option<Env<'f>>,
    /// The field paths of the values decoded as secrets, so that what
    /// prints values as written (`levee check --explain`) redacts exactly
    /// what the typed config keeps as [`crate::Secret`].
    pub(crate) secrets: Vec<String>,
}

impl<'f> Decoder<'f> {
    pub(crate) fn new(file: &'f str, env: Env<'f>) -> Self {
        Self::layered(vec![file], env)
    }

    /// A decoder for a tree merged from `files` (see [`crate::layers`]).
    pub(crate) fn layered(files: Vec<&'f str>, env: Env<'f>) -> Self {
        Self {
            files,
            diags: Vec::new(),
            env: Some(env),
            secrets: Vec::new(),
        }
    }

    /// A decoder whose strings are taken as written, without `${VAR}`.
    pub(crate) fn literal(file: &'f str) -> Self {
        Self {
            files: vec![file],
            diags: Vec::new(),
            env: None,
            secrets: Vec::new(),
        }
    }

    pub(crate) fn error(&mut self, loc: Loc, path: &str, message: impl Into<String>) {
        self.push(loc, path, message.into(), None);
    }

    pub(crate) fn error_help(
        &mut self,
        loc: Loc,
        path: &str,
        message: impl Into<String>,
        help: impl Into<String>,
    ) {
        self.push(loc, path, message.into(), Some(help.into()));
    }

    fn push(&mut self, loc: Loc, path: &str, message: String, help: Option<String>) {
        let file = self
            .files
            .get(loc.file as usize)
            .or(self.files.first())
            .copied()
            .unwrap_or_default();
        self.diags.push(Diagnostic {
            file: file.to_string(),
            line: loc.line,
            col: loc.col,
            path: path.to_string(),
            message,
            help,
        });
    }

    pub(crate) fn type_error(&mut self, node: &Node, path: &str, expected: &str) {
        self.error(
            node.loc,
            path,
            format!("expected {expected}, found {}", node.value.type_name()),
        );
    }

    /// Opens a mapping for decoding.
    pub(crate) fn table<'n>(&mut self, node: &'n Node, path: &str) -> Option<Table<'n>> {
        match &node.value {
            Value::Map(entries) => Some(Table {
                entries,
                asked: Vec::new(),
                path: path.to_string(),
                loc: node.loc,
            }),
            Value::Str(s) => {
                let message = format!("expected a table, found {}", node.value.type_name());
                // YAML reads `name:value` without a space as one string.
                match crate::node::missing_space_after_colon(s) {
                    Some((_, fixed)) => self.error_help(
                        node.loc,
                        path,
                        message,
                        format!("YAML needs a space after the colon: write `{fixed}`"),
                    ),
                    None => self.error(node.loc, path, message),
                }
                None
            }
            _ => {
                self.type_error(node, path, "a table");
                None
            }
        }
    }

    /// Decodes an optional field; a present but invalid value is reported and yields `None`.
    pub(crate) fn opt<'n, T>(
        &mut self,
        t: &mut Table<'n>,
        key: &'static str,
        f: impl FnOnce(&mut Self, &'n Node, &str) -> Option<T>,
    ) -> Option<T> {
        t.asked.push(key);
        let (_, _, node) = t.entries.iter().find(|(k, _, _)| k == key)?;
        if node.value == Value::Null {
            return None;
        }
        let path = t.child_path(key);
        f(self, node, &path)
    }

    /// Decodes a required field; a missing one is reported at the table.
    pub(crate) fn req<'n, T>(
        &mut self,
        t: &mut Table<'n>,
        key: &'static str,
        f: impl FnOnce(&mut Self, &'n Node, &str) -> Option<T>,
    ) -> Option<T> {
        let present = t
            .entries
            .iter()
            .any(|(k, _, n)| k == key && n.value != Value::Null);
        if !present {
            t.asked.push(key);
            let path = t.child_path(key);
            self.error(t.loc, &path, "missing required field");
            return None;
        }
        self.opt(t, key, f)
    }

    /// Reports keys nobody asked for, suggesting the closest known key.
    pub(crate) fn finish(&mut self, t: Table<'_>) {
        for (key, loc, _) in t.entries {
            if t.asked.iter().any(|k| k == key) {
                continue;
            }
            let path = t.child_path(key);
            // An entry of a named list may carry the layers' removal marker
            // where it means nothing: in the first file, or misspelt.
            let marker = crate::layers::REMOVE;
            let near_marker = t.has("name")
                && closest(key, &[t.asked.as_slice(), &[marker]].concat()) == Some(marker);
            if near_marker {
                let help = if key == marker {
                    format!("`{marker} = true` deletes the entry of this name that an earlier file defines, so it works only in a later file (`-c base.toml -c this.toml`)")
                } else {
                    format!("did you mean `{marker} = true`? It deletes the entry of this name that an earlier file defines")
                };
                self.error_help(*loc, &path, format!("unknown field `{key}`"), help);
                continue;
            }
            match closest(key, &t.asked) {
                Some(s) => self.error_help(
                    *loc,
                    &path,
                    format!("unknown field `{key}`"),
                    format!("did you mean `{s}`?"),
                ),
                None => self.error_help(
                    *loc,
                    &path,
                    format!("unknown field `{key}`"),
                    format!("expected one of: {}", t.asked.join(", ")),
                ),
            }
        }
    }

    /// Decodes a list, each item with `f` at path `path[i]`.
    pub(crate) fn list<'n, T>(
        &mut self,
        node: &'n Node,
        path: &str,
        mut f: impl FnMut(&mut Self, &'n Node, &str) -> Option<T>,
    ) -> Option<Vec<T>> {
        let items = self.items(node, path)?;
        // Items that fail are reported and left out, so checks across
        // sections still run on the rest (one pass finds everything).
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            if let Some(v) = f(self, item, &format!("{path}[{i}]")) {
                out.push(v);
            }
        }
        Some(out)
    }

    /// The items of a list, for callers that walk them themselves.
    pub(crate) fn items<'n>(&mut self, node: &'n Node, path: &str) -> Option<&'n [Node]> {
        match &node.value {
            Value::Seq(items) => Some(items),
            _ => {
                self.type_error(node, path, "a list");
                None
            }
        }
    }

    /// A string as written, without `${VAR}` interpolation.
    pub(crate) fn str<'n>(&mut self, node: &'n Node, path: &str) -> Option<&'n str> {
        match &node.value {
            Value::Str(s) => Some(s),
            _ => {
                self.type_error(node, path, "a string");
                None
            }
        }
    }

    /// A string, with `${VAR}` and `${VAR:-default}` taken from the
    /// environment (when this decoder has one).
    pub(crate) fn string(&mut self, node: &Node, path: &str) -> Option<String> {
        let raw = self.str(node, path)?;
        let Some(env) = self.env.filter(|_| raw.contains('$')) else {
            return Some(raw.to_string());
        };
        let mut out = String::with_capacity(raw.len());
        let mut rest = raw;
        while let Some(i) = rest.find('$') {
            out.push_str(&rest[..i]);
            rest = &rest[i..];
            if let Some(after) = rest.strip_prefix("$$") {
                out.push('$');
                rest = after;
            } else if let Some(after) = rest.strip_prefix("${") {
                let Some(end) = after.find('}') else {
                    self.error_help(
                        node.loc,
                        path,
                        "unterminated `${` in string",
                        "write `$$` for a literal dollar sign",
                    );
                    return None;
                };
                let expr = &after[..end];
                let (name, default) = match expr.split_once(":-") {
                    Some((n, d)) => (n, Some(d)),
                    None => (expr, None),
                };
                // As in the shell, `:-` also replaces a set but empty variable.
                let value = env(name).filter(|v| !v.is_empty() || default.is_none());
                match (value, default) {
                    (Some(v), _) => out.push_str(&v),
                    (None, Some(d)) => out.push_str(d),
                    (None, None) => {
                        self.error_help(
                            node.loc,
                            path,
                            format!("environment variable `{name}` is not set"),
                            format!("set it, or give a default: `${{{name}:-value}}`"),
                        );
                        return None;
                    }
                }
                rest = &after[end + 1..];
            } else {
                out.push('$');
                rest = &rest[1..];
            }
        }
        out.push_str(rest);
        Some(out)
    }

    /// A string that is a secret (a token, a password-bearing URL, a
    /// signing key): decoded as [`Decoder::string`], its path remembered.
    pub(crate) fn secret(&mut self, node: &Node, path: &str) -> Option<String> {
        self.secrets.push(path.to_string());
        self.string(node, path)
    }

    pub(crate) fn bool(&mut self, node: &Node, path: &str) -> Option<bool> {
        match node.value {
            Value::Bool(b) => Some(b),
            _ => {
                self.type_error(node, path, "a boolean (true or false)");
                None
            }
        }
    }

    /// Any finite number, integer or float.
    pub(crate) fn number(&mut self, node: &Node, path: &str) -> Option<f64> {
        match node.value {
            Value::Int(i) => Some(i as f64),
            Value::Float(f) if f.is_finite() => Some(f),
            _ => {
                self.type_error(node, path, "a number");
                None
            }
        }
    }

    /// An integer within `min..=max`.
    pub(crate) fn int_in(&mut self, node: &Node, path: &str, min: i64, max: i64) -> Option<i64> {
        match node.value {
            Value::Int(i) if (min..=max).contains(&i) => Some(i),
            Value::Int(i) => {
                self.error(
                    node.loc,
                    path,
                    format!("must be between {min} and {max}, got {i}"),
                );
                None
            }
            _ => {
                self.type_error(node, path, "an integer");
                None
            }
        }
    }

    /// A share written `20%` (or as a fraction such as `0.2`), 0% to 100%.
    pub(crate) fn percent(&mut self, node: &Node, path: &str) -> Option<f64> {
        let value = match &node.value {
            Value::Float(f) => Some(*f * 100.0),
            Value::Int(i) => Some(*i as f64 * 100.0),
            Value::Str(_) => {
                let s = self.string(node, path)?;
                s.trim()
                    .strip_suffix('%')
                    .and_then(|n| n.trim().parse::<f64>().ok())
            }
            _ => None,
        };
        match value {
            Some(p) if (0.0..=100.0).contains(&p) => Some(p / 100.0),
            Some(p) => {
                self.error(
                    node.loc,
                    path,
                    format!("must be between 0% and 100%, got {p}%"),
                );
                None
            }
            None => {
                self.error_help(
                    node.loc,
                    path,
                    format!("expected a percentage, found {}", node.value.type_name()),
                    "write it like `\"20%\"`",
                );
                None
            }
        }
    }

    /// A positive duration such as `250ms`, `2s`, `1m30s`.
    pub(crate) fn duration(&mut self, node: &Node, path: &str) -> Option<Duration> {
        match &node.value {
            Value::Str(_) => match parse_duration(&self.string(node, path)?) {
                Ok(d) if d.is_zero() => {
                    self.error(node.loc, path, "must be greater than zero");
                    None
                }
                Ok(d) => Some(d),
                Err(msg) => {
                    self.error_help(
                        node.loc,
                        path,
                        msg,
                        "write a number with a unit: `250ms`, `2s`, `5m`, `1h`",
                    );
                    None
                }
            },
            Value::Int(i) => {
                self.error_help(
                    node.loc,
                    path,
                    format!("a duration needs a unit, got the bare number {i}"),
                    format!("write `\"{i}s\"` or `\"{i}ms\"`"),
                );
                None
            }
            _ => {
                self.type_error(node, path, "a duration string like \"2s\"");
                None
            }
        }
    }

    /// A size in bytes: a plain integer or `64KiB`, `1MiB`, `10MB`.
    pub(crate) fn size(&mut self, node: &Node, path: &str) -> Option<u64> {
        match &node.value {
            Value::Int(i) if *i > 0 => Some(*i as u64),
            Value::Int(_) => {
                self.error(node.loc, path, "must be greater than zero");
                None
            }
            Value::Str(_) => {
                let s = self.string(node, path)?;
                match parse_size(&s) {
                    Ok(0) => {
                        self.error(node.loc, path, "must be greater than zero");
                        None
                    }
                    Ok(n) => Some(n),
                    Err(msg) => {
                        let help = match whole_size(&s) {
                            Some(whole) => format!("write `{whole}`"),
                            None if s.contains('.') => {
                                "it is not a whole number of bytes either; write bytes or a smaller unit: `100`, `64KiB`".into()
                            }
                            None => "write bytes or a unit: `512`, `64KiB`, `1MiB`, `10MB`".into(),
                        };
                        self.error_help(node.loc, path, msg, help);
                        None
                    }
                }
            }
            Value::Float(f) => {
                self.error_help(
                    node.loc,
                    path,
                    format!("sizes are whole numbers, got {f}"),
                    "write bytes or a unit: `512`, `64KiB`, `1MiB`, `10MB`",
                );
                None
            }
            _ => {
                self.type_error(node, path, "a size like \"64KiB\"");
                None
            }
        }
    }

    /// A socket address `ip:port`.
    pub(crate) fn socket_addr(&mut self, node: &Node, path: &str) -> Option<SocketAddr> {
        let s = self.string(node, path)?;
        match s.parse() {
            Ok(a) => Some(a),
            Err(_) if port_out_of_range(&s).is_some() => {
                let port = port_out_of_range(&s).unwrap_or_default();
                self.error_help(
                    node.loc,
                    path,
                    format!("port {port} is out of range (0-65535)"),
                    "for example `127.0.0.1:8080` or `[::1]:8080`",
                );
                None
            }
            Err(_) => {
                self.error_help(
                    node.loc,
                    path,
                    format!("`{s}` is not an address of the form ip:port"),
                    "for example `127.0.0.1:8080` or `[::1]:8080`",
                );
                None
            }
        }
    }

    /// One of `choices`.
    pub(crate) fn choice(
        &mut self,
        node: &Node,
        path: &str,
        choices: &[&'static str],
    ) -> Option<&'static str> {
        let s = self.string(node, path)?;
        if let Some(c) = choices.iter().find(|c| **c == s) {
            return Some(c);
        }
        let help = match closest(&s, choices) {
            Some(c) => format!("did you mean `{c}`?"),
            None => format!("expected one of: {}", choices.join(", ")),
        };
        self.error_help(node.loc, path, format!("unknown value `{s}`"), help);
        None
    }

    /// A regular expression that may match anywhere in a value.
    pub(crate) fn regex(&mut self, node: &Node, path: &str) -> Option<crate::Pattern> {
        self.compile_regex(node, path, false)
    }

    /// A regular expression that must match a whole value.
    pub(crate) fn whole_regex(&mut self, node: &Node, path: &str) -> Option<crate::Pattern> {
        self.compile_regex(node, path, true)
    }

    fn compile_regex(&mut self, node: &Node, path: &str, whole: bool) -> Option<crate::Pattern> {
        let s = self.string(node, path)?;
        let compiled = if whole {
            crate::Pattern::whole(&s)
        } else {
            crate::Pattern::new(&s)
        };
        match compiled {
            Ok(p) => Some(p),
            Err(e) => {
                let text = e.to_string();
                let last = text.lines().last().unwrap_or("invalid").trim();
                let line = last.strip_prefix("error: ").unwrap_or(last);
                self.error(
                    node.loc,
                    path,
                    format!("invalid regular expression: {line}"),
                );
                None
            }
        }
    }
}

/// Parses `250ms`, `2s`, `1m30s`, `1.5s`, `100us`, `1h`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("empty duration".into());
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("`{s}` has a number without a unit"))?;
        if num_end == 0 {
            return Err(format!("`{s}` is not a duration"));
        }
        let value: f64 = rest[..num_end]
            .parse()
            .map_err(|_| format!("`{s}` is not a duration"))?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let nanos_per = match &rest[..unit_end] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            "d" => 86400e9,
            u => return Err(format!("`{s}` has an unknown unit `{u}`")),
        };
        rest = &rest[unit_end..];
        total += Duration::from_nanos((value * nanos_per) as u64);
    }
    Ok(total)
}

/// The port of `host:port` when it is a number above 65535.
pub(crate) fn port_out_of_range(s: &str) -> Option<&str> {
    let (_, port) = s.rsplit_once(':')?;
    let digits = !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit());
    // Longer than u64 is out of range too.
    (digits && port.parse::<u64>().map_or(true, |p| p > 65_535)).then_some(port)
}

/// The size unit named `unit` in bytes.
fn size_unit(unit: &str) -> Option<u64> {
    Some(match unit {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        _ => return None,
    })
}

/// A fractional size such as `1.5MiB` written as a whole number in the
/// largest unit of the same kind that holds it (`1536KiB`), or `None` when
/// it is not a whole number of bytes.
pub(crate) fn whole_size(s: &str) -> Option<String> {
    let s = s.trim();
    let num_end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (whole, frac) = s[..num_end].split_once('.')?;
    let unit = s[num_end..].trim();
    let mult = u128::from(size_unit(unit)?);
    let digits: u128 = format!("{whole}{frac}").parse().ok()?;
    let scale = 10u128.checked_pow(u32::try_from(frac.len()).ok()?)?;
    let scaled = digits.checked_mul(mult)?;
    if scaled % scale != 0 {
        return None;
    }
    let bytes = scaled / scale;
    let units: &[(&str, u128)] = if unit.contains('i') {
        &[("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)]
    } else {
        &[("GB", 1_000_000_000), ("MB", 1_000_000), ("KB", 1_000)]
    };
    let fit = units
        .iter()
        .find(|(_, m)| bytes >= *m && bytes % m == 0)
        .map_or_else(|| bytes.to_string(), |(u, m)| format!("{}{u}", bytes / m));
    Some(fit)
}

/// Parses `512`, `64KiB`, `1MiB`, `1GiB`, `10KB`, `10MB`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let num_end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    if num_end == 0 {
        return Err(format!("`{s}` is not a size"));
    }
    if s[num_end..].starts_with('.') {
        return Err(format!("`{s}` has a fraction, but sizes are whole numbers"));
    }
    let n: u64 = s[..num_end]
        .parse()
        .map_err(|_| format!("`{s}` is too large"))?;
    let unit = s[num_end..].trim();
    let mult = size_unit(unit).ok_or_else(|| format!("`{s}` has an unknown unit `{unit}`"))?;
    n.checked_mul(mult)
        .ok_or_else(|| format!("`{s}` is too large"))
}

/// The candidate within edit distance 2 (or a third of the word) of `word`.
pub(crate) fn closest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let limit = (word.len() / 3).max(2);
    candidates
        .iter()
        .map(|c| (levenshtein(word, c), *c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2s").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("5 parsecs").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64KiB").unwrap(), 65536);
        assert_eq!(parse_size("1MiB").unwrap(), 1 << 20);
        assert_eq!(parse_size("10MB").unwrap(), 10_000_000);
        assert_eq!(parse_size("512").unwrap(), 512);
        assert!(parse_size("12 potatoes").is_err());
        assert_eq!(
            parse_size("1.5MiB").unwrap_err(),
            "`1.5MiB` has a fraction, but sizes are whole numbers"
        );
    }

    #[test]
    fn fractional_sizes_suggest_a_whole_number() {
        assert_eq!(whole_size("1.5MiB").as_deref(), Some("1536KiB"));
        assert_eq!(whole_size("0.5KiB").as_deref(), Some("512"));
        assert_eq!(whole_size("2.0GiB").as_deref(), Some("2GiB"));
        assert_eq!(whole_size("1.5MB").as_deref(), Some("1500KB"));
        assert_eq!(whole_size("1.25GB").as_deref(), Some("1250MB"));
        assert_eq!(whole_size("0.1KiB"), None, "102.4 bytes");
        assert_eq!(whole_size("1.5B"), None);
        assert_eq!(whole_size("1.5 potatoes"), None);
        assert_eq!(whole_size("15MiB"), None, "not fractional");
    }

    #[test]
    fn ports_out_of_range() {
        assert_eq!(port_out_of_range("0.0.0.0:70000"), Some("70000"));
        assert_eq!(port_out_of_range("[::1]:65536"), Some("65536"));
        assert_eq!(
            port_out_of_range("h:99999999999999999999999"),
            Some("99999999999999999999999")
        );
        assert_eq!(port_out_of_range("0.0.0.0:65535"), None);
        assert_eq!(port_out_of_range("0.0.0.0:http"), None);
        assert_eq!(port_out_of_range("0.0.0.0"), None);
    }

    #[test]
    fn suggestions() {
        assert_eq!(closest("clustr", &["cluster", "routes"]), Some("cluster"));
        assert_eq!(closest("zzzzzz", &["cluster", "routes"]), None);
    }
}
