//! `levee slo rules`: the Prometheus rules it writes for the shipped SLO
//! example pass `promtool check rules`, name every objective and window,
//! escape what they must, and, run by `promtool test rules` on synthetic
//! counters from two replicas, page exactly when the SRE Workbook says they
//! should. Every test runs the real executable; a failure prints the
//! command, its working directory, exit status, stdout and stderr.
//!
//! promtool comes from Debian's `prometheus` package (`.ci/run` installs
//! it). Without it the promtool tests fail when `CI` is set, and otherwise
//! say loudly that they skipped.

use levee_testkit::Promtool;
use std::path::Path;

mod common;

use common::{levee, repo_root};

/// `levee slo rules` on `config` (a path relative to `cwd`), expected to
/// succeed silently.
fn rules(config: &str, cwd: &Path) -> String {
    let run = levee(&["slo", "rules", "-c", config], cwd);
    run.expect_code(0)
        .expect(run.stderr.is_empty(), "slo rules printed to stderr");
    run.stdout
}

/// `promtool check rules` on `yaml`, expected to pass with `rules` rules.
fn promtool_check(promtool: &Promtool, yaml: &str, rules: usize) {
    promtool.check_rules(yaml).expect_success(
        &format!("SUCCESS: {rules} rules found"),
        &format!("promtool did not find {rules} rules"),
    );
}

/// The groups of a rules file by name, each with its text.
fn groups(yaml: &str) -> Vec<(String, String)> {
    yaml.split("\n- name: ")
        .skip(1)
        .map(|g| {
            let (name, body) = g.split_once('\n').expect("a group has rules");
            (name.trim_matches('"').to_string(), body.to_string())
        })
        .collect()
}

fn group<'a>(groups: &'a [(String, String)], name: &str) -> &'a str {
    groups
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, body)| body.as_str())
        .unwrap_or_else(|| panic!("no group `{name}`"))
}

/// The recorded SLI windows of one objective, in order.
fn windows(body: &str) -> Vec<&str> {
    body.lines()
        .filter_map(|l| l.strip_prefix("  - record: \"slo:sli_error:ratio_rate"))
        .map(|w| w.trim_end_matches('"'))
        .collect()
}

const OBJECTIVES: [&str; 5] = [
    "checkout-availability",
    "checkout-latency:300ms",
    "checkout-latency:1s",
    "catalog-availability",
    "catalog-latency",
];

#[test]
fn example_rules_pass_promtool_check() {
    let root = repo_root();
    let check = levee(&["check", "-c", "examples/slo.toml"], &root);
    check.expect_code(0);
    let yaml = rules("examples/slo.toml", &root);
    assert!(yaml.contains("\ngroups:\n"), "no groups:\n{yaml}");

    // `-o` writes the same text.
    let dir = common::scratch_dir("slo-rules", "example");
    let out = dir.join("rules.yaml");
    let run = levee(
        &[
            "slo",
            "rules",
            "-c",
            "examples/slo.toml",
            "-o",
            out.to_str().expect("utf-8 path"),
        ],
        &root,
    );
    run.expect_code(0)
        .expect(run.stdout.is_empty(), "-o also printed to stdout");
    let written = std::fs::read_to_string(&out).expect("read -o file");
    assert_eq!(written, yaml, "-o differs from stdout");

    if let Some(promtool) = Promtool::find("example_rules_pass_promtool_check") {
        // Per objective: 8 SLI windows (11 for catalog-availability, with
        // its custom 20m, 4h and 2d), 7 meta recordings, and an alert per
        // severity with rules (catalog-latency only tickets).
        let expected = 5 * (8 + 7) + 3 + 4 * 2 + 1;
        promtool_check(&promtool, &written, expected);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn example_rules_cover_every_objective_window_and_rule() {
    let yaml = rules("examples/slo.toml", &repo_root());
    let groups = groups(&yaml);
    let names: Vec<&str> = groups.iter().map(|(n, _)| n.as_str()).collect();
    let mut expected = Vec::new();
    for id in OBJECTIVES {
        expected.push(format!("sloth-slo-sli-recordings-{id}"));
        expected.push(format!("sloth-slo-meta-recordings-{id}"));
        expected.push(format!("sloth-slo-alerts-{id}"));
    }
    assert_eq!(names, expected, "groups in config order");

    // Sloth's windows, the period, and custom rule windows.
    let standard = ["5m", "30m", "1h", "2h", "6h", "1d", "3d"];
    let sli = |id: &str| windows(group(&groups, &format!("sloth-slo-sli-recordings-{id}")));
    assert_eq!(
        sli("checkout-availability"),
        [&standard[..], &["30d"]].concat()
    );
    assert_eq!(
        sli("checkout-latency:1s"),
        [&standard[..], &["4w"]].concat()
    );
    assert_eq!(
        sli("catalog-availability"),
        ["5m", "20m", "30m", "1h", "2h", "4h", "6h", "1d", "2d", "3d", "30d"],
        "custom windows and a calendar month as 30d"
    );
    assert_eq!(sli("catalog-latency"), [&standard[..], &["1w"]].concat());

    // Ratios from Levee's counters, summed over replicas; the period from
    // the 5m ratio, as Sloth does.
    let checkout = group(&groups, "sloth-slo-sli-recordings-checkout-availability");
    assert!(checkout.contains(
        "(sum(rate(levee_slo_bad_events_total{slo=\"checkout-availability\"}[1h])) or (0 * sum(rate(levee_slo_events_total{slo=\"checkout-availability\"}[1h]))))\n      /\n      ((sum(rate(levee_slo_events_total{slo=\"checkout-availability\"}[1h]))) > 0)"
    ));
    assert!(checkout.contains(
        "sum_over_time(slo:sli_error:ratio_rate5m{sloth_id=\"shop-checkout-availability\", sloth_service=\"shop\", sloth_slo=\"checkout-availability\"}[30d])"
    ));
    for label in [
        "sloth_id: \"shop-checkout-availability\"",
        "sloth_service: \"shop\"",
        "sloth_slo: \"checkout-availability\"",
        "sloth_window: \"30d\"",
        "team: \"payments\"",
    ] {
        assert!(checkout.contains(label), "missing {label}:\n{checkout}");
    }
    let latency = group(&groups, "sloth-slo-sli-recordings-checkout-latency:300ms");
    assert!(latency.contains("{slo=\"checkout-latency:300ms\"}[5m]"));
    // No `service` label: Levee is the service.
    let catalog = group(&groups, "sloth-slo-meta-recordings-catalog-availability");
    assert!(catalog.contains("sloth_id: \"levee-catalog-availability\""));
    assert!(
        catalog.contains("expr: \"vector(30)\""),
        "calendar month as 30 days"
    );
    assert!(catalog.contains("expr: \"vector(0.995)\""));
    assert!(catalog.contains("expr: \"vector(0.005)\""));
    assert!(catalog.contains("sloth_objective: \"99.5\""));
    let meta = group(&groups, "sloth-slo-meta-recordings-checkout-latency:300ms");
    assert!(meta.contains("expr: \"vector(28)\""));
    for record in [
        "slo:objective:ratio",
        "slo:error_budget:ratio",
        "slo:time_period:days",
        "slo:current_burn_rate:ratio",
        "slo:period_burn_rate:ratio",
        "slo:period_error_budget_remaining:ratio",
        "sloth_slo_info",
    ] {
        assert!(
            meta.contains(&format!("- record: \"{record}\"")),
            "{record}"
        );
    }

    // Factors: the workbook's for 30 and 28 days, custom ones as written,
    // never with float noise.
    let alerts = |id: &str| group(&groups, &format!("sloth-slo-alerts-{id}"));
    let a = alerts("checkout-availability");
    for f in [
        "(14.4 * 0.001)",
        "(6 * 0.001)",
        "(3 * 0.001)",
        "(1 * 0.001)",
    ] {
        assert!(a.contains(f), "missing {f}:\n{a}");
    }
    let l = alerts("checkout-latency:300ms");
    for f in [
        "(13.44 * 0.01)",
        "(5.6 * 0.01)",
        "(2.8 * 0.01)",
        "(0.933 * 0.01)",
    ] {
        assert!(l.contains(f), "missing {f}:\n{l}");
    }
    let c = alerts("catalog-availability");
    for f in [
        "ratio_rate20m{sloth_id=\"levee-catalog-availability\", sloth_service=\"levee\", sloth_slo=\"catalog-availability\"} > (7.5 * 0.005)",
        "ratio_rate4h{sloth_id=\"levee-catalog-availability\", sloth_service=\"levee\", sloth_slo=\"catalog-availability\"} > (7.5 * 0.005)",
        "ratio_rate2d{sloth_id=\"levee-catalog-availability\", sloth_service=\"levee\", sloth_slo=\"catalog-availability\"} > (1.5 * 0.005)",
        "(14.4 * 0.005)",
    ] {
        assert!(c.contains(f), "missing {f}:\n{c}");
    }
    assert!(!yaml.contains("99999"), "float noise:\n{yaml}");

    // Page and ticket alerts; a severity without rules has none.
    for id in OBJECTIVES {
        let body = alerts(id);
        let page = body.contains("- alert: \"LeveeSLOPageBurn\"");
        assert_eq!(page, id != "catalog-latency", "page alert of {id}");
        assert!(body.contains("- alert: \"LeveeSLOTicketBurn\""), "{id}");
        assert!(body.contains(&format!("slo: \"{id}\"")), "{id}");
    }
    // min_events: the SLO's 20, else [alerting]'s 10.
    assert!(a.contains(
        "and on()\n          (sum(increase(levee_slo_events_total{slo=\"checkout-availability\"}[5m])) >= 20)"
    ));
    assert!(c.contains(
        "(sum(increase(levee_slo_events_total{slo=\"catalog-availability\"}[20m])) >= 10)"
    ));
    // pending_for, severities, runbooks.
    assert_eq!(a.matches("    for: \"2m\"\n").count(), 2);
    assert!(
        !l.contains("    for: "),
        "no pending time unless configured"
    );
    assert!(a.contains("      severity: \"page\"\n      sloth_severity: \"page\"\n"));
    assert_eq!(
        a.matches("runbook_url: \"https://wiki.example.com/runbooks/checkout-availability\"")
            .count(),
        2
    );
    assert!(l.contains("runbook_url: \"https://wiki.example.com/runbooks/checkout-latency\""));
    assert!(!c.contains("runbook_url"), "no runbook configured");
    assert!(a.contains("description: \"Checkout requests answered without a server error. Objective: 99.9% of requests answered without a 5xx, over 30d."));
}

#[test]
fn labels_and_names_are_escaped() {
    let dir = common::scratch_dir("slo-rules", "escape");
    std::fs::write(
        dir.join("levee.toml"),
        r#"[[listeners]]
name = "public"
listen = "127.0.0.1:8080"

[[routes]]
name = "checkout"
cluster = "shop"

[[clusters]]
name = "shop"
endpoints = ["127.0.0.1:9001"]

[[slos]]
name = "odd"
description = "Says {{ $value }} and \"quotes\""
sli = "latency"
objectives = [{ threshold = "250ms", objective = "99%" }]
runbook = "https://wiki.example.com/run?a=1&b={{x}}"
labels = { service = "web \"shop\"", team = "a\\b {{ .x }}", yes = "line\nbreak", sloth_slo = "clash" }
alerting = { min_events = 0 }
"#,
    )
    .expect("write config");
    let yaml = rules("levee.toml", &dir);
    // PromQL strings, YAML strings and templates each escaped their way.
    for expected in [
        r#"sloth_id="web \"shop\"-odd:250ms", sloth_service="web \"shop\"", sloth_slo="odd:250ms""#,
        r#"      sloth_service: "web \"shop\"""#,
        r#"      team: "a\\b {{ .x }}""#,
        r#"      "yes": "line\nbreak""#,
        r#"      team: "a\\b {{ \"{{\" }} .x }}""#,
        r#"runbook_url: "https://wiki.example.com/run?a=1&b={{ \"{{\" }}x}}""#,
        r#"description: "Says {{ \"{{\" }} $value }} and \"quotes\". Objective"#,
    ] {
        assert!(yaml.contains(expected), "missing {expected}:\n{yaml}");
    }
    assert!(!yaml.contains("clash"), "a sloth_ label overrode Sloth's");
    assert!(!yaml.contains("and on()"), "min_events = 0 needs no guard");
    if let Some(promtool) = Promtool::find("labels_and_names_are_escaped") {
        promtool_check(&promtool, &yaml, 8 + 7 + 2);
        // Every request failing: the page fires, and its labels and
        // annotations come out exactly as configured, braces and all.
        promtool
            .test_rules(&yaml, ESCAPE_TEST)
            .expect_success("SUCCESS", "promtool test rules failed");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A promtool unit test for the rules of `labels_and_names_are_escaped`.
const ESCAPE_TEST: &str = r#"rule_files: [rules.yaml]
evaluation_interval: 1m
group_eval_order:
  - "sloth-slo-sli-recordings-odd:250ms"
  - "sloth-slo-meta-recordings-odd:250ms"
  - "sloth-slo-alerts-odd:250ms"
tests:
  - interval: 1m
    input_series:
      - series: 'levee_slo_events_total{slo="odd:250ms"}'
        values: '0+100x30'
      - series: 'levee_slo_bad_events_total{slo="odd:250ms"}'
        values: '0+100x30'
    alert_rule_test:
      - eval_time: 20m
        alertname: LeveeSLOPageBurn
        exp_alerts:
          - exp_labels:
              severity: page
              sloth_severity: page
              slo: "odd:250ms"
              sloth_id: "web \"shop\"-odd:250ms"
              sloth_service: "web \"shop\""
              sloth_slo: "odd:250ms"
              service: "web \"shop\""
              team: "a\\b {{ .x }}"
              "yes": "line\nbreak"
            exp_annotations:
              title: "(page) web \"shop\" odd:250ms SLO error budget burn rate is too fast."
              summary: "web \"shop\" odd:250ms SLO error budget burn rate is over expected."
              description: "Says {{ $value }} and \"quotes\". Objective: 99% of requests answered within 250ms without a 5xx, over 30d. Error budget: 1% of events. Fires when the error ratio is above 14.4 times the budget over both 1h and 5m, or 6 times the budget over both 6h and 30m."
              runbook_url: "https://wiki.example.com/run?a=1&b={{x}}"
"#;

#[test]
fn no_slos_make_an_empty_valid_file() {
    let dir = common::scratch_dir("slo-rules", "empty");
    std::fs::write(
        dir.join("levee.yaml"),
        "listeners: [{ name: public, listen: \"127.0.0.1:8080\" }]\n\
         clusters: [{ name: shop, endpoints: [\"127.0.0.1:9001\"] }]\n\
         routes: [{ name: all, cluster: shop }]\n",
    )
    .expect("write config");
    let yaml = rules("levee.yaml", &dir);
    assert!(yaml.ends_with("\ngroups: []\n"), "{yaml}");
    if let Some(promtool) = Promtool::find("no_slos_make_an_empty_valid_file") {
        promtool_check(&promtool, &yaml, 0);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn rules_refuse_an_invalid_config() {
    let dir = common::scratch_dir("slo-rules", "invalid");
    std::fs::write(
        dir.join("levee.toml"),
        r#"[[listeners]]
name = "public"
listen = "127.0.0.1:8080"

[[routes]]
name = "checkout"
cluster = "shop"

[[clusters]]
name = "shop"
endpoints = ["127.0.0.1:9001"]

[[slos]]
name = "checkout"
sli = "availability"
objective = "100%"

[[slos]]
name = "checkout-latency"
sli = "latency"
route = "chekout"
threshold = "300ms"
objective = "99%"
"#,
    )
    .expect("write config");
    let run = levee(&["slo", "rules", "-c", "levee.toml"], &dir);
    run.expect_code(1)
        .expect(run.stdout.is_empty(), "rules printed for an invalid config")
        .expect(
            run.stderr.contains(
                "levee.toml:16:13: slos[0].objective: an objective must be above 0% and below 100%",
            ),
            "no diagnostic for the objective",
        )
        .expect(
            run.stderr.contains("unknown route `chekout`")
                && run.stderr.contains("did you mean `checkout`?"),
            "no diagnostic for the route",
        )
        .expect(run.stderr.ends_with("\n2 errors found\n"), "no error count");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The config of the burn test: three 99.9% availability SLOs over 30
/// days with the workbook's rules, and a fourth without `min_events`.
const BURN_CONFIG: &str = r#"[[listeners]]
name = "public"
listen = "127.0.0.1:8080"

[[routes]]
name = "checkout"
cluster = "shop"

[[clusters]]
name = "shop"
endpoints = ["127.0.0.1:9001"]

[alerting]
min_events = 10

[[slos]]
name = "checkout"
sli = "availability"
objective = "99.9%"
labels = { team = "payments" }

[[slos]]
name = "catalog"
sli = "availability"
objective = "99.9%"

[[slos]]
name = "quiet"
sli = "availability"
objective = "99.9%"

[[slos]]
name = "unguarded"
sli = "availability"
objective = "99.9%"
alerting = { min_events = 0 }
"#;

/// Minutes of healthy traffic before checkout starts failing: long enough
/// that every page window (up to 6h) starts out full and clean.
const HEALTHY_MINUTES: u64 = 420;

#[test]
fn page_fires_when_the_workbook_predicts() {
    let Some(promtool) = Promtool::find("page_fires_when_the_workbook_predicts") else {
        return;
    };
    let dir = common::scratch_dir("slo-rules", "burn");
    std::fs::write(dir.join("levee.toml"), BURN_CONFIG).expect("write config");
    let yaml = rules("levee.toml", &dir);

    // Checkout: two replicas, 500 requests a minute each, 10% failing from
    // minute HEALTHY_MINUTES on (the first failures land in the scrape at
    // that minute, so they began after the one before).
    let onset = HEALTHY_MINUTES - 1;
    // The SRE Workbook's detection time, `(1 − SLO) / error ratio × window
    // × burn rate`: 0.001 / 0.1 × 60 min × 14.4 = 8.64 min, in thousandths
    // of a minute. The 1h/5m rule burns strictly after it, so the alert
    // fires at the first evaluation (every minute) past it.
    let detect_milli_minutes = 1_000 * 60 * 14_400 / 100_000;
    assert_eq!(detect_milli_minutes, 8_640);
    let fires_at = onset + detect_milli_minutes / 1_000 + 1;
    let end = HEALTHY_MINUTES + 180;

    let page = |slo: &str, team: &str| {
        format!(
            "'ALERTS{{alertname=\"LeveeSLOPageBurn\",alertstate=\"firing\",severity=\"page\",slo=\"{slo}\",sloth_id=\"levee-{slo}\",sloth_service=\"levee\",sloth_severity=\"page\",sloth_slo=\"{slo}\"{team}}}'"
        )
    };
    let ticket = |slo: &str, team: &str| {
        format!(
            "'ALERTS{{alertname=\"LeveeSLOTicketBurn\",alertstate=\"firing\",severity=\"ticket\",slo=\"{slo}\",sloth_id=\"levee-{slo}\",sloth_service=\"levee\",sloth_severity=\"ticket\",sloth_slo=\"{slo}\"{team}}}'"
        )
    };
    let team = ",team=\"payments\"";
    let firing = |name: &str, at: u64, series: &[String]| {
        let mut s = format!(
            "      - expr: 'ALERTS{{alertname=\"{name}\",alertstate=\"firing\"}}'\n        eval_time: {at}m\n        exp_samples:"
        );
        if series.is_empty() {
            s.push_str(" []\n");
        }
        for labels in series {
            s.push_str(&format!(
                "\n          - labels: {labels}\n            value: 1"
            ));
        }
        s.push('\n');
        s
    };
    let mut order = String::new();
    for id in ["checkout", "catalog", "quiet", "unguarded"] {
        for kind in ["sli-recordings", "meta-recordings", "alerts"] {
            order.push_str(&format!("  - sloth-slo-{kind}-{id}\n"));
        }
    }
    let failing_after = end - HEALTHY_MINUTES;
    let test = format!(
        r#"rule_files: [rules.yaml]
evaluation_interval: 1m
# Recordings before the alerts that read them, as at steady state.
group_eval_order:
{order}tests:
  - interval: 1m
    input_series:
      - series: 'levee_slo_events_total{{slo="checkout",instance="a"}}'
        values: '0+500x{end}'
      - series: 'levee_slo_events_total{{slo="checkout",instance="b"}}'
        values: '0+500x{end}'
      - series: 'levee_slo_bad_events_total{{slo="checkout",instance="a"}}'
        values: '0x{onset} 50+50x{failing_after}'
      - series: 'levee_slo_bad_events_total{{slo="checkout",instance="b"}}'
        values: '0x{onset} 50+50x{failing_after}'
      # Healthy: 0.05% failing, half the budget.
      - series: 'levee_slo_events_total{{slo="catalog",instance="a"}}'
        values: '0+1000x{end}'
      - series: 'levee_slo_bad_events_total{{slo="catalog",instance="a"}}'
        values: '0+0.5x{end}'
      # One request every 5 minutes, all failing: below min_events (10)
      # in 5m and 30m, so no page; 24 in 2h, so a ticket.
      - series: 'levee_slo_events_total{{slo="quiet",instance="a"}}'
        values: '0+0.2x{end}'
      - series: 'levee_slo_bad_events_total{{slo="quiet",instance="a"}}'
        values: '0+0.2x{end}'
    alert_rule_test:
      - eval_time: {before}m
        alertname: LeveeSLOPageBurn
        exp_alerts: []
      - eval_time: {fires_at}m
        alertname: LeveeSLOPageBurn
        exp_alerts:
          - exp_labels:
              severity: page
              sloth_severity: page
              slo: checkout
              sloth_id: levee-checkout
              sloth_service: levee
              sloth_slo: checkout
              team: payments
            exp_annotations:
              title: "(page) levee checkout SLO error budget burn rate is too fast."
              summary: "levee checkout SLO error budget burn rate is over expected."
              description: "Objective: 99.9% of requests answered without a 5xx, over 30d. Error budget: 0.1% of events. Fires when the error ratio is above 14.4 times the budget over both 1h and 5m, or 6 times the budget over both 6h and 30m; the short window needs at least 10 events."
    promql_expr_test:
{page_before}{page_onset}{page_fires}{page_end}{ticket_end}
  # The same quiet traffic without min_events pages at once.
  - interval: 1m
    input_series:
      - series: 'levee_slo_events_total{{slo="unguarded",instance="a"}}'
        values: '0+0.2x60'
      - series: 'levee_slo_bad_events_total{{slo="unguarded",instance="a"}}'
        values: '0+0.2x60'
    promql_expr_test:
{unguarded}"#,
        before = fires_at - 1,
        page_before = firing("LeveeSLOPageBurn", fires_at - 1, &[]),
        page_onset = firing("LeveeSLOPageBurn", onset, &[]),
        page_fires = firing("LeveeSLOPageBurn", fires_at, &[page("checkout", team)]),
        page_end = firing("LeveeSLOPageBurn", end, &[page("checkout", team)]),
        ticket_end = firing(
            "LeveeSLOTicketBurn",
            end,
            &[ticket("checkout", team), ticket("quiet", "")]
        ),
        unguarded = firing("LeveeSLOPageBurn", 30, &[page("unguarded", "")]),
    );
    promtool.test_rules(&yaml, &test).expect_success(
        "SUCCESS",
        &format!("promtool test rules failed; test.yaml:\n{test}"),
    );
    let _ = std::fs::remove_dir_all(&dir);
}

const SLICES_CONFIG: &str = r#"
[[listeners]]
name = "public"
listen = "127.0.0.1:8080"

[[routes]]
name = "checkout"
cluster = "shop"

[[clusters]]
name = "shop"
endpoints = ["127.0.0.1:9001"]

[[slos]]
name = "minutes"
sli = "availability"
objective = "99%"
budgeting = "timeslices"
timeslice = "1m"
timeslice_target = "95%"

[[slos]]
name = "averaged"
sli = "latency"
threshold = "300ms"
objective = "99%"
budgeting = "ratio_timeslices"
timeslice = "1m"
"#;

/// A time-slice SLO's rules pass `promtool check rules`, say on stderr and
/// in the file what PromQL cannot express, and, on synthetic counters,
/// count bad one-minute slices: 10 % errors from minute 420 on (above the
/// 5 % a slice allows) make every slice after it bad, so the 5m ratio is 1
/// and the 1h ratio 10 bad slices of 60 ten minutes on, while the averaged
/// SLO's ratio is the slices' mean error ratio, 0.1; the page fires at
/// the slice the multiwindow formula names.
#[test]
fn time_slice_rules_count_bad_slices() {
    let dir = common::scratch_dir("slo-rules", "slices");
    std::fs::write(dir.join("levee.toml"), SLICES_CONFIG).expect("write config");
    let run = levee(&["slo", "rules", "-c", "levee.toml"], &dir);
    run.expect_code(0);
    for id in ["minutes", "averaged"] {
        run.expect(
            run.stderr.contains(&format!(
                "note: SLO {id}: Time slices of 1m, judged by PromQL"
            )),
            "the limits are said on stderr",
        );
    }
    let yaml = run.stdout.clone();
    assert!(
        yaml.contains("# Time slices of 1m, judged by PromQL, not exactly as Levee judges them:"),
        "{yaml}"
    );
    assert!(yaml.contains(") > bool 0.05\n"), "{yaml}");
    assert!(yaml.contains(")[4m59s999ms:1m])"), "{yaml}");
    assert!(
        !yaml.contains("increase(levee_slo_events_total{slo=\"minutes\"}[5m])) >="),
        "no min_events guard on slices:\n{yaml}"
    );
    let Some(promtool) = Promtool::find("time_slice_rules_count_bad_slices") else {
        return;
    };
    // Per objective: 8 SLI windows, 7 meta recordings, page and ticket.
    promtool_check(&promtool, &yaml, 2 * (8 + 7 + 2));
    let ratio = |window: &str, id: &str, at: &str, value: &str| {
        format!(
            "      - expr: 'slo:sli_error:ratio_rate{window}{{sloth_slo=\"{id}\"}}'\n        eval_time: {at}\n        exp_samples:\n          - labels: 'slo:sli_error:ratio_rate{window}{{sloth_id=\"levee-{id}\",sloth_service=\"levee\",sloth_slo=\"{id}\",sloth_window=\"{window}\"}}'\n            value: {value}\n"
        )
    };
    let mut order = String::new();
    for id in ["minutes", "averaged"] {
        for kind in ["sli-recordings", "meta-recordings", "alerts"] {
            order.push_str(&format!("  - sloth-slo-{kind}-{id}\n"));
        }
    }
    let mut exprs = String::new();
    for id in ["minutes", "averaged"] {
        exprs.push_str(&ratio("5m", id, "418m", "0"));
    }
    exprs.push_str(&ratio("5m", "minutes", "430m", "1"));
    exprs.push_str(&ratio("1h", "minutes", "430m", "0.16666666666666666"));
    exprs.push_str(&ratio("5m", "averaged", "430m", "0.1"));
    // The page (1h / 5m at 14.4, β = 1 %) fires when the workbook's
    // formula says, in slices: t = β / e · W · f = 0.01 / 1 · 60 min · 14.4
    // = 8.64 min after the onset, so at the end of the ninth bad slice.
    let page = |at: &str, firing: bool| {
        let mut s = format!(
            "      - expr: 'ALERTS{{alertname=\"LeveeSLOPageBurn\",alertstate=\"firing\"}}'\n        eval_time: {at}\n        exp_samples:"
        );
        if firing {
            s.push_str("\n          - labels: 'ALERTS{alertname=\"LeveeSLOPageBurn\",alertstate=\"firing\",severity=\"page\",slo=\"minutes\",sloth_id=\"levee-minutes\",sloth_service=\"levee\",sloth_severity=\"page\",sloth_slo=\"minutes\"}'\n            value: 1\n");
        } else {
            s.push_str(" []\n");
        }
        s
    };
    exprs.push_str(&page("428m", false));
    exprs.push_str(&page("429m", true));
    // 15 s scrapes, 150 events each, 15 bad from minute 420 on (every
    // page window starts out full and clean).
    let test = format!(
        r#"rule_files: [rules.yaml]
evaluation_interval: 1m
group_eval_order:
{order}tests:
  - interval: 15s
    input_series:
      - series: 'levee_slo_events_total{{slo="minutes",instance="a"}}'
        values: '0+150x2000'
      - series: 'levee_slo_bad_events_total{{slo="minutes",instance="a"}}'
        values: '0x1680 15+15x319'
      - series: 'levee_slo_events_total{{slo="averaged",instance="a"}}'
        values: '0+150x2000'
      - series: 'levee_slo_bad_events_total{{slo="averaged",instance="a"}}'
        values: '0x1680 15+15x319'
    promql_expr_test:
{exprs}"#
    );
    promtool.test_rules(&yaml, &test).expect_success(
        "SUCCESS",
        &format!("promtool test rules failed; test.yaml:\n{test}"),
    );
    let _ = std::fs::remove_dir_all(&dir);
}
