//! `levee slo import`: OpenSLO v1 files (in `tests/openslo/`) through the
//! real binary. Imported TOML is appended to a small config and must pass
//! `levee check`, and the values Levee then loads are compared with the
//! OpenSLO input; broken files must list every problem, with its document
//! and field path, in one run. A failure prints the command, its exit status
//! and its output.

use levee_config::{AlertSeverity, Config, Sli, Slo, SloPeriod, Tier};
use std::path::{Path, PathBuf};
use std::time::Duration;

mod common;

use common::Run;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/openslo")
        .join(name)
}

fn levee(args: &[&str]) -> Run {
    common::levee(args, &std::env::temp_dir())
}

fn import(fixture_name: &str) -> Run {
    levee(&["slo", "import", fixture(fixture_name).to_str().unwrap()])
}

/// Appends `toml` to `base.toml`, checks it with `levee check` and loads it.
fn check_with_base(test: &str, toml: &str) -> Config {
    let base = std::fs::read_to_string(fixture("base.toml")).expect("read base.toml");
    let path = common::scratch_dir("slo-import", test).join("levee.toml");
    std::fs::write(&path, format!("{base}\n{toml}")).expect("write config");
    levee(&["check", "-c", path.to_str().unwrap()])
        .expect_code(0)
        .expect_stdout("OK");
    levee_config::load_file(&path).unwrap_or_else(|d| panic!("{d}"))
}

fn slo<'c>(config: &'c Config, name: &str) -> &'c Slo {
    config
        .slos
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no SLO {name}"))
}

/// The burn-rate rules of an SLO as (severity, long, short, factor_milli).
fn rules(slo: &Slo) -> Vec<(AlertSeverity, Duration, Duration, u32)> {
    let rules = slo.alerting.rules.as_ref().expect("explicit rules");
    rules
        .iter()
        .map(|r| (r.severity, r.long, r.short, r.factor_milli))
        .collect()
}

const MIN: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(86_400);

#[test]
fn full_example_imports_into_a_config_levee_accepts() {
    let run = import("full.yaml");
    run.expect_code(0)
        .expect_stdout("# Levee SLOs imported from ")
        .expect_stdout("full.yaml by `levee slo import`")
        // The objective as percent text, escaping, and the mapped windows.
        .expect_stdout("objective = \"99.95%\"")
        .expect_stdout(r#"description = "Checkout answers without a 5xx, \"quoted\" and \\ escaped""#)
        .expect_stdout("page = [{ long = \"1h\", short = \"5m\", factor = 14.4 }]")
        .expect_stdout("ticket = [{ long = \"3d\", short = \"6h\", factor = 1.0 }]")
        .expect_stdout("objectives = [{ threshold = \"100ms\", objective = \"90%\" }, { threshold = \"1s\", objective = \"99%\" }]")
        // What was left out is said, as comments.
        .expect_stdout(":77:5: AlertPolicy burn-fast-and-slow: spec.notificationTargets: notificationTargets are not imported")
        .expect_stdout("# Note: Skipped, Levee has no counterpart: Service checkout, AlertNotificationTarget pager");
    assert!(run.stderr.is_empty(), "{}", run.context());

    let config = check_with_base("full", &run.stdout);
    assert_eq!(config.slos.len(), 2);

    let a = slo(&config, "checkout-availability");
    assert_eq!(
        a.description.as_deref(),
        Some(r#"Checkout answers without a 5xx, "quoted" and \ escaped"#)
    );
    assert_eq!(
        a.sli,
        Sli::Availability {
            rate_limited_is_bad: true
        }
    );
    assert_eq!(a.scope.route.as_deref(), Some("checkout"));
    assert_eq!(a.objectives.len(), 1);
    assert_eq!(a.objectives[0].objective_ppm, 999_500);
    assert_eq!(a.period, SloPeriod::Rolling(28 * DAY), "4w is 28d");
    assert_eq!(
        a.runbook.as_deref(),
        Some("https://wiki.example.com/runbooks/checkout")
    );
    let mut labels: Vec<(&str, &str)> = a
        .labels
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    labels.sort();
    assert_eq!(
        labels,
        [
            ("env", "prod"),
            ("service", "checkout"),
            ("team", "payments")
        ]
    );
    assert_eq!(a.alerting.pending_for, 2 * MIN);
    assert_eq!(
        rules(a),
        [
            (AlertSeverity::Page, HOUR, 5 * MIN, 14_400),
            (AlertSeverity::Ticket, 3 * DAY, 6 * HOUR, 1_000),
        ]
    );

    let l = slo(&config, "checkout-latency");
    assert_eq!(l.sli, Sli::Latency);
    assert_eq!(l.description.as_deref(), Some("Fast; Not slow"));
    assert_eq!(l.scope.tier, Some(Tier::Core));
    assert_eq!(l.scope.cluster.as_deref(), Some("shop"));
    assert_eq!(l.period, SloPeriod::CalendarMonth);
    let objectives: Vec<(Option<Duration>, u32)> = l
        .objectives
        .iter()
        .map(|o| (o.threshold, o.objective_ppm))
        .collect();
    assert_eq!(
        objectives,
        [
            (Some(Duration::from_millis(100)), 900_000),
            (Some(Duration::from_secs(1)), 990_000),
        ]
    );
    assert_eq!(l.alerting.pending_for, Duration::ZERO);
    assert_eq!(
        rules(l),
        [(AlertSeverity::Page, 6 * HOUR, 30 * MIN, 6_000)],
        "`critical` pages; no ticket rules were asked for"
    );
}

#[test]
fn less_common_shapes_import_with_notes() {
    let run = import("variants.yaml");
    run.expect_code(0)
        .expect_stdout(":34:19: SLO checkout-fast: spec.timeWindow[0].duration: the rolling window `1M` is read as 30d")
        .expect_stdout("# Note: The label `team` has several values; they are joined as `payments,web`.")
        .expect_stdout(":46:20: AlertPolicy fast-page: spec.alertWhenNoData: alertWhenNoData is not applied")
        .expect_stdout("takes the shortest, 1m.")
        .expect_stdout(":109:19: SLO everything-monthly: spec.timeWindow[0].calendar.timeZone: Levee's calendar months run in UTC; the time zone Europe/Berlin is not applied.")
        .expect_stdout("# Note: No alertPolicies: Levee's default burn-rate alerts")
        .expect_stdout("covers every routed request")
        .expect_stdout("# Note: AlertCondition unused (line 77) is not used by any SLO; not imported.");

    let config = check_with_base("variants", &run.stdout);
    let fast = slo(&config, "checkout-fast");
    assert_eq!(fast.sli, Sli::Latency, "a latency ratioMetric");
    assert_eq!(fast.scope.tenant.as_deref(), Some("acme"));
    assert_eq!(fast.objectives.len(), 1);
    assert_eq!(
        fast.objectives[0].threshold,
        Some(Duration::from_millis(250))
    );
    assert_eq!(fast.objectives[0].objective_ppm, 995_000);
    assert_eq!(fast.period, SloPeriod::Rolling(30 * DAY));
    assert_eq!(fast.alerting.pending_for, MIN);
    assert_eq!(
        rules(fast),
        [
            (AlertSeverity::Page, HOUR, 5 * MIN, 13_440),
            (AlertSeverity::Page, 6 * HOUR, 30 * MIN, 5_600),
        ]
    );

    let monthly = slo(&config, "everything-monthly");
    assert_eq!(
        monthly.sli,
        Sli::Availability {
            rate_limited_is_bad: false
        }
    );
    assert_eq!(monthly.scope, Default::default());
    assert_eq!(monthly.period, SloPeriod::CalendarMonth);
    assert!(monthly.alerting.rules.is_none(), "the workbook defaults");
}

#[test]
fn output_file_holds_the_same_toml() {
    let out = common::scratch_dir("slo-import", "output").join("slos.toml");
    let run = levee(&[
        "slo",
        "import",
        fixture("full.yaml").to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    run.expect_code(0);
    assert!(run.stdout.is_empty(), "{}", run.context());
    let written = std::fs::read_to_string(&out).expect("read the output file");
    assert_eq!(written, import("full.yaml").stdout);
}

#[test]
fn every_problem_is_listed_in_one_run() {
    let run = import("errors.yaml");
    run.expect_code(1);
    assert!(
        run.stdout.is_empty(),
        "nothing printed on failure\n{}",
        run.context()
    );
    // (line:col, document, field path, what is wrong), in file order.
    let expected = [
        (
            "22:19",
            "SLO checkout",
            "spec.indicator.spec.ratioMetric.total.metricSource.type",
            "\"Prometheus\" cannot be combined with a Levee metric source",
        ),
        (
            "34:17",
            "SLO search",
            "spec.indicatorRef",
            "SLI `search-answers` is not in this file",
        ),
        (
            "36:17",
            "SLO search",
            "spec.timeWindow[0].duration",
            "a calendar-aligned window of `1Q` cannot be mapped",
        ),
        (
            "44:24",
            "SLO search",
            "spec.objectives[0].timeSliceWindow",
            "`soon` is not a time slice width",
        ),
        (
            "49:9",
            "SLO cart availability!",
            "metadata.name",
            "`cart availability!` is not a valid Levee SLO name",
        ),
        (
            "51:5",
            "SLO cart availability!",
            "metadata.labels.alertname",
            "`alertname` is a label Levee sets itself",
        ),
        (
            "52:5",
            "SLO cart availability!",
            "metadata.labels.team-name",
            "`team-name` is not a valid Prometheus label name",
        ),
        (
            "71:22",
            "SLO cart availability!",
            "spec.objectives[0].targetPercent",
            "the target must be above 0 and below 100",
        ),
        (
            "88:13",
            "AlertCondition cart-burn",
            "spec.severity",
            "severity `sev1` cannot be mapped",
        ),
        (
            "91:9",
            "AlertCondition cart-burn",
            "spec.condition.op",
            "`op: lt` cannot be mapped",
        ),
    ];
    let lines: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| !l.starts_with("  help: "))
        .collect();
    // Printed as `levee check` prints diagnostics: a count comes last.
    let (count, problems) = lines.split_last().expect("some output");
    assert_eq!(*count, "10 errors found", "{}", run.context());
    assert_eq!(
        problems.len(),
        expected.len(),
        "one line per problem, no more\n{}",
        run.context()
    );
    let file = fixture("errors.yaml").display().to_string();
    for (line, (at, doc, path, message)) in problems.iter().zip(expected) {
        let prefix = format!("{file}:{at}: {doc}: {path}: ");
        assert!(
            line.starts_with(&prefix) && line.contains(message),
            "expected {prefix}...{message}..., got {line}\n{}",
            run.context()
        );
    }
    run.expect_stderr("  help: give every metric source of the ratio `type: Levee`, or none")
        .expect_stderr("  help: write a duration such as `1m` or `5m`")
        .expect_stderr("such as `team_name`");
}

#[test]
fn a_file_that_is_not_yaml_is_refused() {
    let run = import("not_yaml.toml");
    run.expect_code(1).expect_stderr(&format!(
        "{}:3:1: not valid YAML: ",
        fixture("not_yaml.toml").display()
    ));
    assert!(run.stdout.is_empty(), "{}", run.context());

    let missing = levee(&["slo", "import", "/nonexistent/levee-openslo.yaml"]);
    missing
        .expect_code(1)
        .expect_stderr("/nonexistent/levee-openslo.yaml:1:1: cannot read the OpenSLO file");
}

#[test]
fn yaml_that_is_not_openslo_is_refused() {
    let run = import("not_openslo.yaml");
    let file = fixture("not_openslo.yaml").display().to_string();
    run.expect_code(1)
        .expect_stderr(&format!(
            "{file}:3:13: document 1: apiVersion: not an OpenSLO document: the apiVersion is `apps/v1`, not `openslo/v1`"
        ))
        // A Sloth spec is read, and what it lacks is said.
        .expect_stderr(&format!(
            "{file}:13:5: Sloth service checkout: slos[0].sli: missing required field `sli`"
        ))
        .expect_stderr(&format!(
            "{file}:16:1: document 3: not an OpenSLO document: missing `apiVersion`"
        ))
        .expect_stderr("3 errors found");
    assert!(
        !run.stderr.contains("Deployment"),
        "one problem per foreign document\n{}",
        run.context()
    );
    assert!(run.stdout.is_empty(), "{}", run.context());
}

#[test]
fn a_file_without_slos_is_refused() {
    let path = common::scratch_dir("slo-import", "no-slos").join("service.yaml");
    std::fs::write(
        &path,
        "apiVersion: openslo/v1\nkind: Service\nmetadata:\n  name: checkout\nspec: {}\n",
    )
    .expect("write the file");
    levee(&["slo", "import", path.to_str().unwrap()])
        .expect_code(1)
        .expect_stderr(&format!(
            "{}:1:1: no OpenSLO SLO document found",
            path.display()
        ));
}
