//! `levee slo export`: a config's SLOs as OpenSLO v1 through the real
//! binary, read back by `levee slo import` into the same SLOs. The round
//! trip is checked both ways: a Levee config exported and imported gives
//! its SLOs back field for field, and an OpenSLO file imported, exported
//! and imported again gives the same SLOs as the first import. A failure
//! prints the command, its exit status and its output.

use levee_config::{Config, Slo};
use std::path::{Path, PathBuf};

mod common;

use common::Run;

fn levee(args: &[&str]) -> Run {
    common::levee(args, &std::env::temp_dir())
}

/// The routes and clusters every SLO below points at.
const BASE: &str = r#"
[[listeners]]
name = "public"
listen = "127.0.0.1:0"

[[routes]]
name = "checkout"
cluster = "shop"
tier = "core"

[[routes]]
name = "search"
cluster = "shop"
tier = "optional"

[[clusters]]
name = "shop"
endpoints = ["127.0.0.1:9001"]
"#;

/// SLOs in every shape OpenSLO can carry: scopes, both SLIs, one and
/// several thresholds, rolling and calendar periods, own and default
/// alert rules, labels, a service, a runbook, a description, and both
/// time-slice budgets.
const SLOS: &str = r#"
[[slos]]
name = "checkout-availability"
description = "Checkout answers without a 5xx, \"quoted\" and \\ escaped"
sli = "availability"
rate_limited_is_bad = true
route = "checkout"
objective = "99.95%"
period = "28d"
runbook = "https://wiki.example.com/runbooks/checkout"
labels = { team = "payments", service = "checkout" }
alerting = { pending_for = "2m", page = [{ long = "1h", short = "5m", factor = 14.4 }], ticket = [{ long = "3d", short = "6h", factor = 1 }] }

[[slos]]
name = "shop-latency"
sli = "latency"
tier = "core"
cluster = "shop"
objectives = [{ threshold = "100ms", objective = "90%" }, { threshold = "1s", objective = "99%" }]
period = "calendar_month"

[[slos]]
name = "search-fast"
sli = "latency"
route = "search"
threshold = "250ms"
objective = "95%"
period = "7d"

[[slos]]
name = "checkout-minutes"
sli = "availability"
route = "checkout"
objective = "99%"
period = "7d"
budgeting = "timeslices"
timeslice = "1m"
timeslice_target = "95%"

[[slos]]
name = "search-ratio-minutes"
sli = "availability"
route = "search"
objective = "98%"
period = "7d"
budgeting = "ratio_timeslices"
timeslice = "5m"
"#;

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write");
    path
}

/// `levee check`s BASE plus `slos` and loads it.
fn checked(dir: &Path, name: &str, slos: &str) -> Config {
    let path = write(dir, name, &format!("{BASE}\n{slos}"));
    levee(&["check", "-c", path.to_str().unwrap()])
        .expect_code(0)
        .expect_stdout("OK");
    levee_config::load_file(&path).unwrap_or_else(|d| panic!("{d}"))
}

fn export(config: &Path) -> String {
    let run = levee(&["slo", "export", "-c", config.to_str().unwrap()]);
    run.expect_code(0);
    run.stdout.clone()
}

fn import(file: &Path) -> String {
    let run = levee(&["slo", "import", file.to_str().unwrap()]);
    run.expect_code(0);
    run.stdout.clone()
}

#[test]
fn a_config_exported_and_imported_gives_its_slos_back() {
    let dir = common::scratch_dir("slo-export", "config-round-trip");
    let original = checked(&dir, "original.toml", SLOS);
    let yaml = export(&dir.join("original.toml"));
    assert!(yaml.contains("apiVersion: openslo/v1"), "{yaml}");
    assert_eq!(yaml.matches("kind: SLO\n").count(), 5, "{yaml}");
    assert!(yaml.contains("budgetingMethod: Timeslices"), "{yaml}");
    assert!(yaml.contains("timeSliceTarget: 0.95"), "{yaml}");
    assert!(yaml.contains("type: Levee"), "{yaml}");
    // Everything here has an OpenSLO form, so nothing is noted.
    assert!(!yaml.contains("no OpenSLO field"), "{yaml}");

    let exported = write(&dir, "exported.yaml", &yaml);
    let back = checked(&dir, "back.toml", &import(&exported));
    assert_eq!(back.slos.len(), original.slos.len());
    for (want, got) in original.slos.iter().zip(&back.slos) {
        assert_eq!(want, got, "{} after export and import", want.name);
    }

    // And exporting the result again writes the same documents.
    let again = export(&dir.join("back.toml"));
    assert_eq!(strip_header(&again), strip_header(&yaml));
}

#[test]
fn an_openslo_file_imported_exported_and_imported_again_is_stable() {
    let dir = common::scratch_dir("slo-export", "openslo-round-trip");
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/openslo/full.yaml");
    let base = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/openslo/base.toml"),
    )
    .expect("read base.toml");
    let first_toml = import(&fixture);
    let first_path = write(&dir, "first.toml", &format!("{base}\n{first_toml}"));
    let first = levee_config::load_file(&first_path).unwrap_or_else(|d| panic!("{d}"));

    let yaml = write(&dir, "exported.yaml", &export(&first_path));
    let second_path = write(&dir, "second.toml", &format!("{base}\n{}", import(&yaml)));
    levee(&["check", "-c", second_path.to_str().unwrap()]).expect_code(0);
    let second = levee_config::load_file(&second_path).unwrap_or_else(|d| panic!("{d}"));
    let names = |c: &Config| c.slos.iter().map(|s| s.name.clone()).collect::<Vec<_>>();
    assert_eq!(names(&first), names(&second));
    let same: Vec<(&Slo, &Slo)> = first.slos.iter().zip(&second.slos).collect();
    for (a, b) in same {
        assert_eq!(a, b, "{} after import, export and import", a.name);
    }
}

#[test]
fn what_openslo_cannot_say_is_noted_above_the_document() {
    let dir = common::scratch_dir("slo-export", "notes");
    let slos = r#"
[[slos]]
name = "checkout-availability"
display_name = "Checkout"
sli = "availability"
route = "checkout"
objective = "99.9%"
alerting = { min_events = 50, page = [{ long = "1h", short = "10m", factor = 10 }], ticket = [] }
"#;
    checked(&dir, "levee.toml", slos);
    let yaml = export(&dir.join("levee.toml"));
    assert!(yaml.contains("# display_name = \"Checkout\""), "{yaml}");
    assert!(
        yaml.contains("# min_events = 50 has no OpenSLO field"),
        "{yaml}"
    );
    assert!(
        yaml.contains("its short window 10m is not a twelfth of the long one"),
        "{yaml}"
    );
    // The notes are comments: the file still imports.
    let exported = write(&dir, "exported.yaml", &yaml);
    checked(&dir, "back.toml", &import(&exported));
}

#[test]
fn an_invalid_config_is_refused_with_its_diagnostics() {
    let dir = common::scratch_dir("slo-export", "invalid");
    let path = write(&dir, "levee.toml", "[[routes]]\nname = 3\n");
    levee(&["slo", "export", "-c", path.to_str().unwrap()]).expect_code(1);
}

/// The documents without the header comment, which names the source file.
fn strip_header(yaml: &str) -> String {
    yaml.lines()
        .skip_while(|l| l.starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n")
}
