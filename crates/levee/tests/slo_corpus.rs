//! `levee slo import` on a corpus of real-world shapes (in
//! `tests/openslo/corpus/`): OpenSLO v1 measured by Prometheus, a
//! DataSource and `type: Any`, OpenSLO v1alpha, Sloth `prometheus/v1` and
//! its `PrometheusServiceLevel`, null lists, time-slice budgets. Each file
//! is imported through the real binary with the mapping the test gives; the
//! result, added to a base config that has the routes, must pass
//! `levee check`, and `levee slo rules` on it must pass
//! `promtool check rules`.

use levee_config::{Budgeting, Config, Sli, SloPeriod};
use levee_testkit::Promtool;
use std::path::{Path, PathBuf};
use std::time::Duration;

mod common;

use common::Run;

fn corpus(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/openslo/corpus")
        .join(name)
}

fn levee(args: &[&str]) -> Run {
    common::levee(args, &std::env::temp_dir())
}

/// `levee slo import FILE ARGS...`, which must succeed and print only TOML.
fn import(file: &str, args: &[&str]) -> String {
    let path = corpus(file);
    let mut all = vec!["slo", "import", path.to_str().unwrap()];
    all.extend_from_slice(args);
    let run = levee(&all);
    run.expect_code(0);
    assert!(run.stderr.is_empty(), "{}", run.context());
    run.stdout
}

/// The imported TOML added to `base.toml`: `levee check` accepts it,
/// `levee slo rules` on it passes promtool, and the config is returned.
fn check_and_rules(test: &str, toml: &str) -> Config {
    let base = std::fs::read_to_string(corpus("base.toml")).expect("read base.toml");
    let path = common::scratch_dir("slo-corpus", test).join("levee.toml");
    std::fs::write(&path, format!("{base}\n{toml}")).expect("write config");
    let config = path.to_str().unwrap();
    levee(&["check", "-c", config])
        .expect_code(0)
        .expect_stdout("OK");
    let rules = levee(&["slo", "rules", "-c", config]);
    rules.expect_code(0);
    if let Some(promtool) = Promtool::find(test) {
        promtool
            .check_rules(&rules.stdout)
            .expect_success("SUCCESS", "promtool refused the imported SLOs' rules");
    }
    levee_config::load_file(&path).unwrap_or_else(|d| panic!("{d}"))
}

fn slo<'c>(config: &'c Config, name: &str) -> &'c levee_config::Slo {
    config
        .slos
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no SLO {name}"))
}

fn label<'s>(slo: &'s levee_config::Slo, key: &str) -> Option<&'s str> {
    slo.labels
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

fn route(config: &Config, name: &str) -> Option<String> {
    slo(config, name).scope.route.clone()
}

#[test]
fn openslo_v1_with_prometheus_and_any_sources() {
    let mapping = corpus("mapping.toml");
    let toml = import(
        "v1_prometheus.yaml",
        &["--mapping", mapping.to_str().unwrap()],
    );
    // Where each query was written, and that it is not carried over.
    let file = corpus("v1_prometheus.yaml").display().to_string();
    assert!(
        toml.contains(&format!(
            "# Note: {file}:23:18: SLI checkout-ok: spec.ratioMetric.good.metricSource.spec.query: the Prometheus query `sum(rate(http_requests_total{{service=\"checkout\",code!~\"5..\"}}[5m]))` is not carried over: Levee measures route checkout itself (mapped by {}:2)",
            mapping.display()
        )),
        "{toml}"
    );
    assert!(
        toml.contains("the Any metric source is not carried over")
            || toml.contains("the Any note `"),
        "{toml}"
    );
    let config = check_and_rules("v1", &toml);
    assert_eq!(config.slos.len(), 3);
    let c = slo(&config, "checkout");
    assert_eq!(
        c.sli,
        Sli::Availability {
            rate_limited_is_bad: false
        }
    );
    assert_eq!(
        c.period,
        SloPeriod::Rolling(Duration::from_secs(28 * 86_400))
    );
    assert_eq!(c.objectives[0].objective_ppm, 999_000);
    assert_eq!(
        c.runbook.as_deref(),
        Some("https://wiki.example.com/runbooks/checkout")
    );
    let fast = slo(&config, "search-fast");
    assert_eq!(
        fast.sli,
        Sli::Latency,
        "a histogram bucket query is latency"
    );
    assert_eq!(
        fast.objectives[0].threshold,
        Some(Duration::from_millis(500))
    );
    assert_eq!(route(&config, "search-fast").as_deref(), Some("search"));
    let cart = slo(&config, "cart-answers");
    assert_eq!(cart.scope.route.as_deref(), Some("cart"));
    assert_eq!(cart.scope.tier, Some(levee_config::Tier::Core));
}

#[test]
fn mapping_files_in_yaml_flags_and_route_names_agree() {
    let yaml = corpus("mapping.yaml");
    let toml = import("v1_prometheus.yaml", &["--mapping", yaml.to_str().unwrap()]);
    let config = check_and_rules("mapping-yaml", &toml);
    assert_eq!(
        slo(&config, "search-fast").objectives[0].threshold,
        Some(Duration::from_millis(400)),
        "the mapping's threshold wins over the bucket's"
    );

    let flags = import(
        "v1_prometheus.yaml",
        &[
            "--map",
            "checkout=route:checkout",
            "--map",
            "search=route:search,latency:300ms",
            "--map",
            "cart-answers=cluster:shop,availability",
        ],
    );
    let config = check_and_rules("mapping-flags", &flags);
    assert_eq!(
        slo(&config, "search-fast").objectives[0].threshold,
        Some(Duration::from_millis(300))
    );
    assert_eq!(
        slo(&config, "cart-answers").scope.cluster.as_deref(),
        Some("shop")
    );

    // With the config alone, SLO and service names that are routes map.
    let base = corpus("base.toml");
    let by_name = import("v1_prometheus.yaml", &["--config", base.to_str().unwrap()]);
    assert!(
        by_name.contains("(mapped by the config's route `cart`)"),
        "{by_name}"
    );
    let config = check_and_rules("mapping-routes", &by_name);
    for (slo_name, r) in [
        ("checkout", "checkout"),
        ("search-fast", "search"),
        ("cart-answers", "cart"),
    ] {
        assert_eq!(route(&config, slo_name).as_deref(), Some(r));
    }
}

#[test]
fn unmapped_sources_are_errors_naming_the_flag() {
    let path = corpus("v1_prometheus.yaml");
    let run = levee(&[
        "slo",
        "import",
        path.to_str().unwrap(),
        "--map",
        "checkout=route:checkout",
    ]);
    run.expect_code(1)
        .expect_stderr(&format!(
            "{}:83:19: SLO search-fast: spec.indicator.spec.ratioMetric: no Levee scope for this \"Prometheus\" metric source",
            path.display()
        ))
        .expect_stderr("help: map it: `--map search-fast=route:NAME`")
        .expect_stderr("2 errors found");
    assert!(run.stdout.is_empty(), "{}", run.context());

    levee(&[
        "slo",
        "import",
        path.to_str().unwrap(),
        "--map",
        "checkout=host:x",
    ])
    .expect_code(1)
    .expect_stderr("error: --map `checkout=host:x`: unknown target `host`");

    let bad = common::scratch_dir("slo-corpus", "bad-mapping").join("map.toml");
    std::fs::write(&bad, "[[map]]\nslo = \"x\"\nrout = \"checkout\"\n").unwrap();
    levee(&[
        "slo",
        "import",
        path.to_str().unwrap(),
        "--mapping",
        bad.to_str().unwrap(),
    ])
    .expect_code(1)
    .expect_stderr(&format!(
        "{}:3:1: map[0].rout: unknown field `rout`",
        bad.display()
    ))
    .expect_stderr("did you mean `route`?");
}

#[test]
fn openslo_v1alpha() {
    let toml = import("v1alpha.yaml", &["--map", "search=route:search"]);
    assert!(
        toml.contains(
            "budgeting = \"timeslices\"\ntimeslice = \"5m\"\ntimeslice_target = \"90%\"\n"
        ),
        "{toml}"
    );
    let config = check_and_rules("v1alpha", &toml);
    assert!(matches!(
        slo(&config, "search-latency").budgeting,
        Budgeting::Timeslices {
            target_ppm: 900_000,
            ..
        }
    ));
    let a = slo(&config, "search-availability");
    assert_eq!(
        a.period,
        SloPeriod::Rolling(Duration::from_secs(28 * 86_400))
    );
    assert_eq!(a.objectives[0].objective_ppm, 995_000);
    assert_eq!(a.description.as_deref(), Some("Searches that do not fail"));

    let by_hand = import("v1alpha.yaml", &["--map", "search=route:search,latency:1s"]);
    assert!(
        by_hand.contains("the mapping's threshold 1s is not used: a thresholdMetric's thresholds are its objectives' values"),
        "{by_hand}"
    );
    assert!(by_hand.contains("threshold = \"400ms\""), "{by_hand}");
}

#[test]
fn sloth_prometheus_v1() {
    let toml = import("sloth.yaml", &["--map", "checkout=route:checkout"]);
    let file = corpus("sloth.yaml").display().to_string();
    assert!(
        toml.contains(&format!("# Note: {file}:18:13: Sloth service checkout: slos[0].alerting.name: the alert name is not carried over")),
        "{toml}"
    );
    let config = check_and_rules("sloth", &toml);
    let a = slo(&config, "checkout-requests-availability");
    assert_eq!(a.objectives[0].objective_ppm, 999_000);
    assert_eq!(label(a, "owner"), Some("payments"));
    assert_eq!(label(a, "category"), Some("availability"));
    assert_eq!(
        a.runbook.as_deref(),
        Some("https://wiki.example.com/runbooks/checkout")
    );
    let rules = a
        .alerting
        .rules
        .as_ref()
        .expect("the ticket alert is disabled");
    assert_eq!(rules.len(), 2, "the two page rules");
    let l = slo(&config, "checkout-requests-latency");
    assert_eq!(l.sli, Sli::Latency);
    assert_eq!(l.objectives[0].threshold, Some(Duration::from_millis(250)));
    assert_eq!(
        l.alerting.rules.as_ref().map(Vec::len),
        Some(0),
        "both alerts are disabled"
    );
}

#[test]
fn sloth_kubernetes_resource_and_null_lists() {
    let toml = import("sloth_k8s.yaml", &["--map", "cart=route:cart"]);
    assert!(
        toml.contains("# Note: No alertPolicies"),
        "`alertPolicies:` is an empty list: {toml}"
    );
    let config = check_and_rules("sloth-k8s", &toml);
    let errors = slo(&config, "cart-errors");
    assert_eq!(errors.objectives[0].objective_ppm, 995_000);
    assert!(
        errors.alerting.rules.is_none(),
        "both alerts on: the Workbook's rules"
    );
    assert_eq!(route(&config, "cart-any").as_deref(), Some("cart"));
}

#[test]
fn time_slice_budgets_are_written() {
    let toml = import(
        "timeslices.yaml",
        &[
            "--map",
            "checkout=route:checkout",
            "--map",
            "search=route:search",
        ],
    );
    assert!(toml.contains("period = \"7d\"\nbudgeting = \"timeslices\"\ntimeslice = \"1m\"\ntimeslice_target = \"95%\"\n"), "{toml}");
    assert!(
        toml.contains(
            "objective = \"98%\"\nbudgeting = \"ratio_timeslices\"\ntimeslice = \"5m\"\n"
        ),
        "{toml}"
    );
    // Levee takes them as they are: `levee check`, and rules promtool reads.
    let config = check_and_rules("timeslices", &toml);
    assert_eq!(
        slo(&config, "checkout-minutes").budgeting,
        Budgeting::Timeslices {
            slice: Duration::from_secs(60),
            target_ppm: 950_000
        }
    );
    assert_eq!(
        slo(&config, "search-ratio-minutes").budgeting,
        Budgeting::RatioTimeslices {
            slice: Duration::from_secs(300)
        }
    );
}

#[test]
fn strict_turns_notes_into_errors() {
    let path = corpus("sloth.yaml");
    let run = levee(&[
        "slo",
        "import",
        path.to_str().unwrap(),
        "--map",
        "checkout=route:checkout",
        "--strict",
    ]);
    run.expect_code(1)
        .expect_stderr(&format!(
            "{}:15:22: Sloth service checkout: slos[0].sli.events.error_query: the Prometheus error_query",
            path.display()
        ))
        .expect_stderr(&format!(
            "{}:8:5: Sloth service checkout: slos[0]: Sloth sets the SLO period",
            path.display()
        ));
    assert!(run.stdout.is_empty(), "{}", run.context());
}
