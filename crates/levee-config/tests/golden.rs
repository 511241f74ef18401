//! Golden tests for configuration diagnostics: each broken config under
//! `tests/golden/` (`*.toml`, `*.yaml`, `*.yml`) is loaded and the rendered
//! `Diagnostics` text is compared with the `*.expected` file beside it, byte
//! for byte, so the wording, field paths, lines and columns users see are
//! pinned.
//!
//! The environment is a fixed table (see [`env`]), never the process's, and
//! files are named by their file name alone, so results do not depend on the
//! machine.
//!
//! To regenerate the expectations after an intended change, run
//! `LEVEE_BLESS=1 cargo test -p levee-config --test golden` and review the
//! diff of the `.expected` files before committing it.

use levee_config::{load_str_with_env, Format};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The environment every golden config sees.
fn env(name: &str) -> Option<String> {
    match name {
        "SHORT_TOKEN" => Some("short-token".into()),
        "DEPLOY_ENV" => Some("staging".into()),
        "EMPTY" => Some(String::new()),
        _ => None,
    }
}

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn bless() -> bool {
    std::env::var_os("LEVEE_BLESS").is_some_and(|v| !v.is_empty() && v != "0")
}

/// Every config case in the golden directory, sorted by name.
fn cases() -> Vec<(PathBuf, Format)> {
    let mut out: Vec<(PathBuf, Format)> = std::fs::read_dir(golden_dir())
        .expect("tests/golden exists")
        .map(|e| e.expect("readable directory entry").path())
        .filter_map(|p| Format::from_path(&p).map(|f| (p, f)))
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .and_then(|n| n.to_str())
        .expect("golden file names are UTF-8")
        .to_string()
}

/// What the user sees for `path`: the diagnostics, one trailing newline.
fn render(path: &Path, format: Format) -> Result<String, String> {
    let src = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let name = file_name(path);
    match load_str_with_env(&src, format, &name, &env) {
        Ok(_) => Err(format!(
            "{name}: loaded without errors, but golden configs must be invalid"
        )),
        Err(diags) => Ok(format!("{diags}\n")),
    }
}

/// A readable line diff (expected vs actual) for a failure message.
fn diff(expected: &str, actual: &str) -> String {
    let e: Vec<&str> = expected.lines().collect();
    let a: Vec<&str> = actual.lines().collect();
    let mut out = String::new();
    for i in 0..e.len().max(a.len()) {
        match (e.get(i), a.get(i)) {
            (Some(x), Some(y)) if x == y => {
                let _ = writeln!(out, "   {x}");
            }
            (x, y) => {
                if let Some(x) = x {
                    let _ = writeln!(out, " - {x}");
                }
                if let Some(y) = y {
                    let _ = writeln!(out, " + {y}");
                }
            }
        }
    }
    out
}

#[test]
fn diagnostics_match_golden_files() {
    let cases = cases();
    assert!(
        !cases.is_empty(),
        "no golden configs in {}",
        golden_dir().display()
    );
    let bless = bless();
    let mut failures = Vec::new();
    for (path, format) in &cases {
        let expected_path = path.with_extension("expected");
        let actual = match render(path, *format) {
            Ok(a) => a,
            Err(e) => {
                failures.push(e);
                continue;
            }
        };
        if bless {
            std::fs::write(&expected_path, &actual).expect("write .expected");
            continue;
        }
        match std::fs::read_to_string(&expected_path) {
            Ok(expected) if expected == actual => {}
            Ok(expected) => failures.push(format!(
                "{}: diagnostics differ from {} (- expected, + actual):\n{}",
                file_name(path),
                file_name(&expected_path),
                diff(&expected, &actual)
            )),
            Err(_) => failures.push(format!(
                "{}: no {} (run with LEVEE_BLESS=1 to create it); actual output:\n{actual}",
                file_name(path),
                file_name(&expected_path)
            )),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} golden cases failed:\n\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn every_expected_file_has_a_config() {
    let configs: Vec<PathBuf> = cases().into_iter().map(|(p, _)| p).collect();
    let mut orphans = Vec::new();
    for entry in std::fs::read_dir(golden_dir()).expect("tests/golden exists") {
        let path = entry.expect("readable directory entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("expected") {
            continue;
        }
        let has_config = configs.iter().any(|c| c.with_extension("expected") == path);
        if !has_config {
            orphans.push(file_name(&path));
        }
    }
    assert!(
        orphans.is_empty(),
        "expected files without a config: {orphans:?}"
    );
}

/// The cases the suite promises to cover; deleting one by accident fails here.
#[test]
fn the_representative_cases_are_present() {
    let names: Vec<String> = cases().iter().map(|(p, _)| file_name(p)).collect();
    for required in [
        "unknown_key.toml",
        "unknown_cluster.toml",
        "bad_duration.toml",
        "bad_size.toml",
        "bad_address.toml",
        "missing_required.toml",
        "bad_regex.toml",
        "two_match_kinds.toml",
        "duplicate_names.toml",
        "admin_no_token.toml",
        "unset_env.toml",
        "toml_syntax.toml",
        "many_errors.yaml",
    ] {
        assert!(
            names.iter().any(|n| n == required),
            "missing golden case {required}"
        );
    }
}

/// The diagnostics of one load are sorted by position and each names the
/// file it was given, so a multi-error file reads top to bottom.
#[test]
fn diagnostics_are_in_file_order() {
    for (path, format) in cases() {
        let src = std::fs::read_to_string(&path).expect("readable golden file");
        let name = file_name(&path);
        let Err(diags) = load_str_with_env(&src, format, &name, &env) else {
            panic!("{name} loaded without errors");
        };
        let positions: Vec<(usize, usize)> = diags.0.iter().map(|d| (d.line, d.col)).collect();
        let mut sorted = positions.clone();
        sorted.sort();
        assert_eq!(positions, sorted, "{name}: diagnostics out of order");
        assert!(diags.0.iter().all(|d| d.file == name));
        assert!(
            diags.0.iter().all(|d| d.line >= 1 && d.col >= 1),
            "{name}: positions are 1-based"
        );
    }
}
