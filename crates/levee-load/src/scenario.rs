//! The scenario file of `levee load --scenario FILE`, ready to send:
//! levee-config reads and checks the file (TOML or YAML by extension, see
//! [`levee_config::load_scenario`] for the format); this module reads the
//! body files, relative to the scenario file, and turns names and values
//! into the `http` types the sender uses.
//!
//! ```yaml
//! start_rate: 0            # open model: the rate the first stage ramps from
//! requests:
//!   - method: POST         # default GET
//!     path: /api/orders    # joined to the URL on the command line
//!     headers: { content-type: application/json }
//!     body_file: order.json  # relative to the scenario file
//!     weight: 3            # default 1
//! stages:
//!   - { rate: 100, duration: 10s }
//! ```
//!
//! Every error carries the file, line, column and field, as the config's
//! do (`scenario.yaml:3:13: requests[0].method: ...`), and all of them are
//! reported at once.

use levee_config::load_scenario::{
    load_scenario, load_scenario_str, scenario_format, ScenarioFile,
};
use levee_config::{Diagnostic, Diagnostics};
use std::path::Path;
use std::time::Duration;

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

/// Reads and checks the scenario at `path`, body files included.
pub fn load(path: &Path) -> Result<Scenario, String> {
    let file = load_scenario(path).map_err(|d| d.to_string())?;
    ready(file, path)
}

/// Checks scenario `text` read from `path`: the format is the path's
/// extension, and body files are relative to it.
pub fn parse(text: &str, path: &Path) -> Result<Scenario, String> {
    let format = scenario_format(path).map_err(|d| d.to_string())?;
    let file =
        load_scenario_str(text, format, &path.display().to_string()).map_err(|d| d.to_string())?;
    ready(file, path)
}

/// Reads the body files of a checked scenario from `path`'s directory and
/// converts it to the sender's types.
fn ready(file: ScenarioFile, path: &Path) -> Result<Scenario, String> {
    let name = path.display().to_string();
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut unreadable = Vec::new();
    let mut requests = Vec::with_capacity(file.requests.len());
    for (i, r) in file.requests.into_iter().enumerate() {
        let at = |field: &str| format!("requests[{i}].{field}");
        // levee-config checked these with the same crate; a refusal here
        // would be a bug between the two, reported rather than unwrapped.
        let method = http::Method::from_bytes(r.method.as_bytes())
            .map_err(|e| format!("{name}: {}: {e}", at("method")))?;
        let mut headers = Vec::with_capacity(r.headers.len());
        for (k, v) in &r.headers {
            let refused = |e: &dyn std::fmt::Display| format!("{name}: {}.{k}: {e}", at("headers"));
            let header_name =
                http::HeaderName::from_bytes(k.as_bytes()).map_err(|e| refused(&e))?;
            let header_value = http::HeaderValue::from_str(v).map_err(|e| refused(&e))?;
            headers.push((header_name, header_value));
        }
        let body = match &r.body_file {
            None => None,
            Some(p) => {
                let full = dir.join(p);
                match std::fs::read(&full) {
                    Ok(bytes) => Some(bytes),
                    Err(e) => {
                        let loc = r.body_file_loc.unwrap_or_default();
                        unreadable.push(Diagnostic {
                            file: name.clone(),
                            line: loc.line,
                            col: loc.col,
                            path: at("body_file"),
                            message: format!("cannot read {}: {e}", full.display()),
                            help: None,
                        });
                        None
                    }
                }
            }
        };
        requests.push(ScenarioRequest {
            method,
            path: r.path,
            headers,
            body,
            weight: r.weight,
        });
    }
    if !unreadable.is_empty() {
        return Err(Diagnostics(unreadable).to_string());
    }
    Ok(Scenario {
        requests,
        stages: file
            .stages
            .iter()
            .map(|s| crate::schedule::Stage {
                target: s.rate,
                duration: s.duration,
            })
            .collect(),
        start_rate: file.start_rate,
        rate: file.rate,
        vus: file.vus,
        duration: file.duration,
    })
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
        assert_eq!(s.requests[0].method, http::Method::GET);
        assert_eq!(s.requests[1].method, http::Method::POST);
        assert_eq!(s.requests[1].headers[0].0, "content-type");
        assert_eq!(s.requests[1].headers[0].1, "application/json");
        assert_eq!(s.stages[0].target, 100.0);
        assert_eq!(s.stages[1].duration, Duration::from_secs(60));
        assert_eq!(s.start_rate, Some(10.0));
    }

    #[test]
    fn yaml_reads_the_same() {
        let toml = parse(
            "vus = 4\nduration = \"2s\"\n[[requests]]\nmethod = \"PUT\"\npath = \"/p\"\n",
            Path::new("s.toml"),
        )
        .unwrap();
        let yaml = parse(
            "vus: 4\nduration: 2s\nrequests:\n  - method: PUT\n    path: /p\n",
            Path::new("s.yml"),
        )
        .unwrap();
        assert_eq!(toml, yaml);
        assert_eq!(yaml.vus, Some(4));
    }

    #[test]
    fn errors_name_the_file_the_place_and_the_field() {
        let cases = [
            (
                "[[requests]]\nmethod = \"G T\"",
                "s.toml:2:10: requests[0].method: `G T`",
            ),
            (
                "[[requests]]\npath = \"a\"",
                "s.toml:2:8: requests[0].path: `a` must start with /",
            ),
            (
                "[[requests]]\nweight = 0",
                "s.toml:2:10: requests[0].weight: must be at least 1",
            ),
            (
                "[[requests]]\nbody_file = \"nope.json\"",
                "s.toml:2:13: requests[0].body_file: cannot read nope.json",
            ),
            (
                "[[stages]]\nrate = 1\nduration = \"1x\"",
                "s.toml:3:12: stages[0].duration:",
            ),
            (
                "vus = 2\n[[stages]]\nrate = 1\nduration = \"1s\"",
                "s.toml:1:7: vus: vus (closed model) and stages (open model) cannot be combined",
            ),
            (
                "[[requests]]\nwieght = 2",
                "s.toml:2:1: requests[0].wieght: unknown field `wieght`",
            ),
        ];
        for (text, want) in cases {
            let e = parse(text, Path::new("s.toml")).unwrap_err();
            assert!(e.contains(want), "{text}: {e}");
            assert!(e.starts_with("s.toml:"), "{e}");
        }
    }

    #[test]
    fn body_files_are_read_next_to_the_scenario() {
        let dir = std::env::temp_dir().join(format!("levee-scenario-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("body.json"), "{\"n\":1}").unwrap();
        let scenario = dir.join("s.yaml");
        std::fs::write(
            &scenario,
            "requests:\n  - body_file: body.json\n  - body_file: gone.json\n  - body_file: gone2.json\n",
        )
        .unwrap();
        let e = load(&scenario).unwrap_err();
        std::fs::write(&scenario, "requests:\n  - body_file: body.json\n").unwrap();
        let s = load(&scenario);
        std::fs::remove_dir_all(&dir).unwrap();
        // Every unreadable body is reported, not only the first.
        assert!(
            e.contains(":3:16: requests[1].body_file: cannot read"),
            "{e}"
        );
        assert!(
            e.contains(":4:16: requests[2].body_file: cannot read"),
            "{e}"
        );
        assert!(e.ends_with("2 errors found"), "{e}");
        assert_eq!(
            s.unwrap().requests[0].body.as_deref(),
            Some(&b"{\"n\":1}"[..])
        );
    }

    #[test]
    fn unknown_extensions_are_refused() {
        let e = parse("rate = 1", Path::new("s.json")).unwrap_err();
        assert!(e.contains("s.json:1:1: unknown scenario format"), "{e}");
    }
}
