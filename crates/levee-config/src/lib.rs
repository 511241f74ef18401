//! Levee's configuration: one model read from TOML or YAML (by file
//! extension), `${ENV}` interpolation, and validation that collects every
//! problem as `file:line:col: field.path: message` with a `help:` line where
//! a fix is likely.
//!
//! Loading is two steps, in the manner of raw then validated flags: parse the
//! text into a located tree ([`node`]), then decode and check it into the
//! typed [`Config`] ([`model`]), which cannot hold invalid states.

mod decode;
mod decode_fault;
mod decode_jobs;
mod decode_release;
mod decode_slo;
mod diag;
mod discover;
pub mod experiment;
pub mod file_sd;
pub mod load_scenario;
pub mod model;
pub mod node;
pub mod openslo;

pub use decode_fault::{decode_runtime_fault, FaultTarget, RuntimeFault, MAX_RUNTIME_FAULT_LIFE};
pub use diag::{parse_duration, parse_size, Diagnostic, Diagnostics};
pub use discover::{discover, DiscoveryError, CONFIG_ENV, DEFAULT_NAMES};
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
    let one = |message: String, help: Option<String>| {
        Diagnostics(vec![Diagnostic::whole_file(&name, message, help)])
    };
    let Some(format) = Format::from_path(path) else {
        return Err(one(
            "unknown config format".into(),
            Some("name the file *.toml, *.yaml or *.yml".into()),
        ));
    };
    let src = std::fs::read_to_string(path)
        .map_err(|e| one(format!("cannot read config file: {e}"), None))?;
    load_str(&src, format, &name)
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
    let parsed = match format {
        Format::Toml => node::parse_toml(src),
        Format::Yaml => node::parse_yaml(src),
    };
    let root = parsed.map_err(|e| syntax_error(name, &e))?;
    if let Some(diags) = toml_in_yaml(src, format, name, &root) {
        return Err(diags);
    }
    let mut decoder = diag::Decoder::new(name, env);
    let config = decode::decode_config(&mut decoder, &root);
    if let Some(config) = &config {
        decode::cross_check(&mut decoder, &root, config);
    }
    let mut diags = decoder.diags;
    diags.sort_by_key(|d| (d.line, d.col));
    match config {
        Some(config) if diags.is_empty() => Ok(config),
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
