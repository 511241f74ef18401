//! Levee's configuration: one model read from TOML or YAML (by file
//! extension), `${ENV}` interpolation, and validation that collects every
//! problem as `file:line:col: field.path: message` with a `help:` line where
//! a fix is likely.
//!
//! Loading is two steps, in the manner of raw then validated flags: parse the
//! text into a located tree ([`node`]), then decode and check it into the
//! typed [`Config`] ([`model`]), which cannot hold invalid states. Several
//! files are layered by merging their trees between the two steps
//! ([`layers`]).

mod decode;
mod decode_fault;
mod decode_jobs;
mod decode_release;
mod decode_slo;
mod diag;
mod discover;
pub mod experiment;
pub mod file_sd;
pub mod layers;
pub mod load_scenario;
pub mod model;
pub mod node;
pub mod openslo;

pub use decode_fault::{decode_runtime_fault, FaultTarget, RuntimeFault, MAX_RUNTIME_FAULT_LIFE};
pub use diag::{parse_duration, parse_size, Diagnostic, Diagnostics};
pub use discover::{discover, DiscoveryError, CONFIG_ENV, DEFAULT_NAMES};
pub use layers::{explain_files, load_files, Explained, Origin, REMOVE};
pub use model::*;

use std::path::Path;

/// The file formats Levee reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `.toml`
    Toml,
    /// `.yaml` or `.yml`
    Yaml,
}

impl Format {
    /// The format for a file name, by extension.
    pub fn from_path(path: &Path) -> Option<Format> {
        match path.extension()?.to_str()? {
            "toml" => Some(Format::Toml),
            "yaml" | "yml" => Some(Format::Yaml),
            _ => None,
        }
    }
}

/// Reads and validates the config file at `path`.
pub fn load_file(path: &Path) -> Result<Config, Diagnostics> {
    let name = path.display().to_string();
    let (src, format) = read_source(path, &name)?;
    load_str(&src, format, &name)
}

/// The text of the config file at `path` and its format, or why it cannot
/// be read; `name` labels the diagnostics.
pub(crate) fn read_source(path: &Path, name: &str) -> Result<(String, Format), Diagnostics> {
    let one = |message: String, help: Option<String>| {
        Diagnostics(vec![Diagnostic::whole_file(name, message, help)])
    };
    let Some(format) = Format::from_path(path) else {
        return Err(one(
            "unknown config format".into(),
            Some("name the file *.toml, *.yaml or *.yml".into()),
        ));
    };
    let src = std::fs::read_to_string(path)
        .map_err(|e| one(format!("cannot read config file: {e}"), None))?;
    Ok((src, format))
}

/// Validates config text; `name` is used in diagnostics. Reads `${VAR}` from
/// the process environment.
pub fn load_str(src: &str, format: Format, name: &str) -> Result<Config, Diagnostics> {
    load_str_with_env(src, format, name, &|k| std::env::var(k).ok())
}

/// Like [`load_str`] with an explicit environment, for tests.
pub fn load_str_with_env(
    src: &str,
    format: Format,
    name: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, Diagnostics> {
    let root = parse_source(src, format, name)?;
    decode_root(&root, vec![name], env).map(|decoded| decoded.config)
}

/// Config text parsed into a located tree, not yet decoded.
pub(crate) fn parse_source(
    src: &str,
    format: Format,
    name: &str,
) -> Result<node::Node, Diagnostics> {
    let parsed = match format {
        Format::Toml => node::parse_toml(src),
        Format::Yaml => node::parse_yaml(src),
    };
    let root = parsed.map_err(|e| syntax_error(name, &e))?;
    match toml_in_yaml(src, format, name, &root) {
        Some(diags) => Err(diags),
        None => Ok(root),
    }
}

/// A decoded config and the field paths of its secrets.
pub(crate) struct Decoded {
    pub(crate) config: Config,
    pub(crate) secrets: Vec<String>,
}

/// Decodes and checks a located tree read from `files` (one, or the
/// layers merged into it, in the order of [`node::Loc::file`]).
pub(crate) fn decode_root(
    root: &node::Node,
    files: Vec<&str>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Decoded, Diagnostics> {
    let mut decoder = diag::Decoder::layered(files.clone(), env);
    let config = decode::decode_config(&mut decoder, root);
    if let Some(config) = &config {
        decode::cross_check(&mut decoder, root, config);
    }
    let mut diags = decoder.diags;
    // In the order the files were given, then by position.
    let order = |file: &str| files.iter().position(|f| *f == file);
    diags.sort_by_key(|d| (order(&d.file), d.line, d.col));
    match config {
        Some(config) if diags.is_empty() => Ok(Decoded {
            config,
            secrets: decoder.secrets,
        }),
        _ => Err(Diagnostics(diags)),
    }
}

/// Reads an API key file: TOML with `[[keys]]` entries of `tenant` and
/// `sha256` (the key's digest, never the key itself). `name` labels the
/// diagnostics.
pub fn load_api_keys(src: &str, name: &str) -> Result<Vec<ApiKey>, Diagnostics> {
    let root = node::parse_toml(src).map_err(|e| syntax_error(name, &e))?;
    let mut decoder = diag::Decoder::new(name, &|_| None);
    let keys = decoder.table(&root, "").and_then(|mut t| {
        let keys = decoder.req(&mut t, "keys", |d, n, p| {
            d.list(n, p, decode::decode_api_key)
        });
        decoder.finish(t);
        keys
    });
    match keys {
        Some(keys) if decoder.diags.is_empty() => Ok(keys),
        _ => Err(Diagnostics(decoder.diags)),
    }
}

/// A YAML file whose root is not a table but whose text looks like TOML:
/// TOML's `key = "value"` alone reads as one YAML string, and "expected a
/// table" alone would not say why.
pub(crate) fn toml_in_yaml(
    src: &str,
    format: Format,
    name: &str,
    root: &node::Node,
) -> Option<Diagnostics> {
    let suspect = format == Format::Yaml
        && !matches!(root.value, node::Value::Map(_))
        && node::looks_like_toml(src);
    suspect.then(|| {
        Diagnostics(vec![Diagnostic {
            file: name.to_string(),
            line: root.loc.line,
            col: root.loc.col,
            path: String::new(),
            message: format!(
                "expected a table of settings, found {}",
                root.value.type_name()
            ),
            help: Some(node::TOML_IN_YAML.to_string()),
        }])
    })
}

pub(crate) fn syntax_error(name: &str, e: &node::SyntaxError) -> Diagnostics {
    Diagnostics(vec![Diagnostic {
        file: name.to_string(),
        line: e.loc.line,
        col: e.loc.col,
        path: String::new(),
        message: format!("syntax error: {}", e.message),
        help: e.help.clone(),
    }])
}
