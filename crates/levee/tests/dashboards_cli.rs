//! `levee dashboards grafana` through the binary: the files it writes,
//! that each is a Grafana dashboard whose every query is valid PromQL
//! (checked by `promtool`, with Grafana's variables filled in), and its
//! exit codes on a bad config or an unwritable directory.

use levee_testkit::Promtool;
use serde_json::Value;

mod common;
use common::{levee, repo_root, scratch_dir};

const FILES: [&str; 3] = [
    "levee-slos.json",
    "levee-routes.json",
    "levee-clusters.json",
];

/// Every query of `model`, with Grafana's template variables replaced by
/// what a selection of "All" and a 5-minute interval send Prometheus.
fn queries(model: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for p in model["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().into_iter().flatten() {
            if let Some(e) = t["expr"].as_str() {
                out.push(
                    e.replace("$__rate_interval", "5m")
                        .replace("$service", ".*")
                        .replace("$slo", ".*")
                        .replace("$route", ".*")
                        .replace("$cluster", ".*"),
                );
            }
        }
    }
    out
}

#[test]
fn grafana_dashboards_are_written_and_every_query_is_promql() {
    let dir = scratch_dir("dashboards", "grafana");
    let out = dir.join("grafana");
    let config = repo_root().join("examples/slo.toml");
    let run = levee(
        &[
            "dashboards",
            "grafana",
            "-c",
            config.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
        &dir,
    );
    run.expect_code(0);
    let mut all = Vec::new();
    for file in FILES {
        run.expect_stdout(file);
        let text = std::fs::read_to_string(out.join(file)).expect("the file is written");
        let model: Value = serde_json::from_str(&text).expect("valid JSON");
        assert!(model["uid"]
            .as_str()
            .is_some_and(|u| u.starts_with("levee-")));
        assert!(model["title"]
            .as_str()
            .is_some_and(|t| t.starts_with("Levee ")));
        assert_eq!(model["templating"]["list"][0]["name"], "datasource");
        let qs = queries(&model);
        assert!(qs.len() >= 5, "{file}: {qs:?}");
        all.extend(qs);
    }
    let heatmaps = std::fs::read_to_string(out.join("levee-routes.json")).unwrap();
    assert!(heatmaps.contains("\"type\": \"heatmap\""));
    assert!(heatmaps.contains("levee_request_duration_seconds_bucket"));

    if let Some(promtool) =
        Promtool::find("grafana_dashboards_are_written_and_every_query_is_promql")
    {
        // Each query as a recording rule: `promtool check rules` parses it.
        let mut rules = String::from("groups:\n  - name: levee-dashboards\n    rules:\n");
        for (i, q) in all.iter().enumerate() {
            let q = serde_json::to_string(q).unwrap();
            rules.push_str(&format!(
                "      - record: levee_dashboard_query_{i}\n        expr: {q}\n"
            ));
        }
        promtool.check_rules(&rules).expect_success(
            &format!("SUCCESS: {} rules found", all.len()),
            "a dashboard query is not PromQL",
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_bad_config_or_an_unwritable_directory_exits_1() {
    let dir = scratch_dir("dashboards", "errors");
    std::fs::write(dir.join("bad.toml"), "[[routes]]\nname = 1\n").unwrap();
    levee(&["dashboards", "grafana", "-c", "bad.toml"], &dir)
        .expect_code(1)
        .expect_stderr("bad.toml:2:");
    std::fs::write(dir.join("blocker"), "a file, not a directory").unwrap();
    let config = repo_root().join("examples/slo.toml");
    levee(
        &[
            "dashboards",
            "grafana",
            "-c",
            config.to_str().unwrap(),
            "--out",
            "blocker/x",
        ],
        &dir,
    )
    .expect_code(1)
    .expect_stderr("cannot create blocker/x");
    let _ = std::fs::remove_dir_all(&dir);
}
