//! The scenario file (TOML): several weighted requests and either ramping
//! stages (open model) or a number of virtual users (closed model).
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
//! Decoding is serde's with unknown fields refused; every error names the
//! file and the field (`scenario.toml: requests[1].method: ...`).

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    #[serde(default)]
    requests: Vec<RawRequest>,
    #[serde(default)]
    stages: Vec<RawStage>,
    start_rate: Option<f64>,
    rate: Option<f64>,
    vus: Option<u32>,
    duration: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRequest {
    method: Option<String>,
    #[serde(default)]
    path: String,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    body_file: Option<PathBuf>,
    weight: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStage {
    rate: f64,
    duration: String,
}

/// One request of a scenario, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct ScenarioRequest {
    pub method: http::Method,
    /// Path and query, joined to the base URL.
    pub path: String,
    pub headers: Vec<(http::HeaderName, http::HeaderValue)>,
    /// The body read from `body_file`.
    pub body: Option<Vec<u8>>,
    pub weight: u32,
}

/// A scenario file, checked.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Scenario {
    pub requests: Vec<ScenarioRequest>,
    /// Ramping stages (`rate`, `duration`).
    pub stages: Vec<crate::schedule::Stage>,
    pub start_rate: Option<f64>,
    pub rate: Option<f64>,
    pub vus: Option<u32>,
    pub duration: Option<Duration>,
}

/// Reads and checks the scenario at `path`.
pub fn load(path: &Path) -> Result<Scenario, String> {
    let file = path.display();
    let text = std::fs::read_to_string(path).map_err(|e| format!("{file}: cannot read: {e}"))?;
    parse(&text, path)
}

/// Checks scenario `text` read from `path` (body files are relative to it).
pub fn parse(text: &str, path: &Path) -> Result<Scenario, String> {
    let file = path.display();
    let raw: Raw = toml::from_str(text).map_err(|e| format!("{file}: {e}"))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut out = Scenario {
        start_rate: raw.start_rate,
        rate: raw.rate,
        vus: raw.vus,
        ..Default::default()
    };
    if let Some(d) = raw.duration {
        out.duration =
            Some(levee_config::parse_duration(&d).map_err(|e| format!("{file}: duration: {e}"))?);
    }
    if raw.vus.is_some() && !raw.stages.is_empty() {
        return Err(format!(
            "{file}: vus (closed model) and stages (open model) cannot be combined"
        ));
    }
    if raw.vus == Some(0) {
        return Err(format!("{file}: vus: must be at least 1"));
    }
    for (i, s) in raw.stages.iter().enumerate() {
        let duration = levee_config::parse_duration(&s.duration)
            .map_err(|e| format!("{file}: stages[{i}].duration: {e}"))?;
        if !(s.rate.is_finite() && s.rate >= 0.0) {
            return Err(format!(
                "{file}: stages[{i}].rate: {} is not a rate",
                s.rate
            ));
        }
        out.stages.push(crate::schedule::Stage {
            target: s.rate,
            duration,
        });
    }
    for (i, r) in raw.requests.into_iter().enumerate() {
        let at = |field: &str| format!("{file}: requests[{i}].{field}");
        let method = match r.method {
            None => http::Method::GET,
            Some(m) => http::Method::from_bytes(m.to_ascii_uppercase().as_bytes())
                .map_err(|_| format!("{}: `{m}` is not an HTTP method", at("method")))?,
        };
        if !(r.path.is_empty() || r.path.starts_with('/')) {
            return Err(format!("{}: `{}` must start with /", at("path"), r.path));
        }
        let mut headers = Vec::new();
        for (k, v) in r.headers {
            let name = http::HeaderName::from_bytes(k.as_bytes())
                .map_err(|_| format!("{}: `{k}` is not a header name", at("headers")))?;
            let value = http::HeaderValue::from_str(&v)
                .map_err(|_| format!("{}.{k}: not a valid header value", at("headers")))?;
            headers.push((name, value));
        }
        let body = match r.body_file {
            None => None,
            Some(p) => {
                let full = dir.join(&p);
                Some(std::fs::read(&full).map_err(|e| {
                    format!("{}: cannot read {}: {e}", at("body_file"), full.display())
                })?)
            }
        };
        let weight = r.weight.unwrap_or(1);
        if weight == 0 {
            return Err(format!("{}: must be at least 1", at("weight")));
        }
        out.requests.push(ScenarioRequest {
            method,
            path: r.path,
            headers,
            body,
            weight,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_requests_and_stages() {
        let s = parse(
            r#"
start_rate = 10
[[requests]]
path = "/a"
weight = 3
[[requests]]
method = "post"
path = "/b?x=1"
headers = { "content-type" = "application/json" }
[[stages]]
rate = 100
duration = "10s"
[[stages]]
rate = 0
duration = "1m"
"#,
            Path::new("s.toml"),
        )
        .unwrap();
        assert_eq!(s.requests.len(), 2);
        assert_eq!(s.requests[0].weight, 3);
        assert_eq!(s.requests[1].method, http::Method::POST);
        assert_eq!(s.requests[1].headers[0].0, "content-type");
        assert_eq!(s.stages[1].duration, Duration::from_secs(60));
        assert_eq!(s.start_rate, Some(10.0));
    }

    #[test]
    fn errors_name_the_file_and_the_field() {
        let cases = [
            (
                "[[requests]]\nmethod = \"G T\"",
                "s.toml: requests[0].method: `G T`",
            ),
            (
                "[[requests]]\npath = \"a\"",
                "s.toml: requests[0].path: `a` must start with /",
            ),
            (
                "[[requests]]\nweight = 0",
                "s.toml: requests[0].weight: must be at least 1",
            ),
            (
                "[[requests]]\nbody_file = \"nope.json\"",
                "s.toml: requests[0].body_file: cannot read",
            ),
            (
                "[[stages]]\nrate = 1\nduration = \"1x\"",
                "s.toml: stages[0].duration:",
            ),
            (
                "vus = 2\n[[stages]]\nrate = 1\nduration = \"1s\"",
                "cannot be combined",
            ),
            ("[[requests]]\nwieght = 2", "unknown field `wieght`"),
        ];
        for (text, want) in cases {
            let e = parse(text, Path::new("s.toml")).unwrap_err();
            assert!(e.contains(want), "{text}: {e}");
            assert!(e.starts_with("s.toml: "), "{e}");
        }
    }
}
