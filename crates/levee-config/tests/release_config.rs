//! A route's release tables (`split`, `rollout`, `mirror`): what they decode
//! to, their defaults, and the located errors for what is wrong in them.

use levee_config::*;
use std::time::Duration;

const BASE: &str = r#"
[[listeners]]
name = "public"
listen = "127.0.0.1:0"

[[clusters]]
name = "api-v1"
endpoints = ["127.0.0.1:9001"]

[[clusters]]
name = "api-v2"
endpoints = ["127.0.0.1:9002"]

[[clusters]]
name = "shadow"
endpoints = ["127.0.0.1:9003"]

[[slos]]
name = "api-availability"
route = "api"
sli = "availability"
objective = "99.9%"
"#;

fn load(route_tables: &str) -> Result<Config, Diagnostics> {
    let src = format!("{BASE}\n[[routes]]\nname = \"api\"\ncluster = \"api-v2\"\n{route_tables}");
    load_str_with_env(&src, Format::Toml, "levee.toml", &|_| None)
}

fn errors(route_tables: &str) -> Vec<Diagnostic> {
    match load(route_tables) {
        Ok(_) => panic!("expected errors for:\n{route_tables}"),
        Err(d) => d.0,
    }
}

#[test]
fn a_canary_rollout_decodes_with_its_steps_gates_and_hooks() {
    let config = load(
        r#"
[routes.rollout]
strategy = "canary"
steps = [{ weight = 5, pause = "10s" }, { weight = "12.5%", pause = "20s" }, { weight = 50, manual = true }]
stickiness = { header = "x-user-id" }
force = [{ header = "x-canary", exact = "always" }, { cookie = "beta", prefix = "no", to = "stable" }, { header = "x-group", regex = "^qa-" }]
analysis = { confidence = "99%", min_samples = 100, max_error_rate = "2%", latency = [{ percentile = 99, max = "500ms", max_ratio = 1.5 }], on_failure = "pause" }
gates = { slos = ["api-availability"], min_budget_left = "30%", max_budget_spend = "5%" }
webhooks = [{ phase = "pre-rollout", url = "http://127.0.0.1:9999/check" }, { phase = "confirm-promotion", url = "http://127.0.0.1:9999/ok", timeout = "2s" }]
"#,
    )
    .unwrap();
    let rollout = config.routes[0].rollout.clone().unwrap();
    let Strategy::Canary { steps } = &rollout.strategy else {
        panic!("not a canary: {:?}", rollout.strategy)
    };
    let weights: Vec<u32> = steps.iter().map(|s| s.weight).collect();
    assert_eq!(weights, [500, 1250, 5000]);
    assert_eq!(steps[1].pause, Duration::from_secs(20));
    assert!(steps[2].manual);
    assert_eq!(
        rollout.policy.stickiness,
        Stickiness::Header("x-user-id".into())
    );
    assert_eq!(rollout.policy.force.len(), 3);
    assert_eq!(rollout.policy.force[1].to, Version::Stable);
    assert!(rollout.policy.force[2].value.matches("qa-team"));
    assert!(!rollout.policy.force[2].value.matches("prod"));
    assert_eq!(rollout.analysis.confidence, 0.99);
    assert_eq!(rollout.analysis.max_error_rate, Some(0.02));
    assert_eq!(rollout.analysis.on_failure, OnFailure::Pause);
    assert_eq!(rollout.analysis.latency[0].quantile, 0.99);
    assert_eq!(rollout.gates.min_budget_left, 0.30);
    assert_eq!(rollout.webhooks[0].on_failure, HookFailure::Fail);
    assert_eq!(rollout.webhooks[1].on_failure, HookFailure::Hold);
}

#[test]
fn flaggers_step_weight_shorthand_expands_to_steps() {
    let config =
        load("[routes.rollout]\nstep_weight = 10\nmax_weight = 30\nstep_interval = \"15s\"\n")
            .unwrap();
    let Some(Strategy::Canary { steps }) = config.routes[0].rollout.as_ref().map(|r| &r.strategy)
    else {
        panic!("no canary")
    };
    let weights: Vec<u32> = steps.iter().map(|s| s.weight).collect();
    assert_eq!(weights, [1000, 2000, 3000]);
    assert!(steps.iter().all(|s| s.pause == Duration::from_secs(15)));
}

#[test]
fn a_split_and_a_mirror_decode_with_their_defaults() {
    let config = load(
        "[routes.split]\ncluster = \"api-v1\"\nweight = 0.01\nstickiness = \"client_address\"\n\n[routes.mirror]\ncluster = \"shadow\"\nweight = 25\n",
    )
    .unwrap();
    let split = config.routes[0].split.clone().unwrap();
    assert_eq!(split.weight, 1, "0.01% is one basis point");
    assert_eq!(split.policy.stickiness, Stickiness::ClientAddress);
    let mirror = config.routes[0].mirror.clone().unwrap();
    assert_eq!(mirror.weight, 2500);
    assert_eq!(mirror.max_in_flight, 64);
    assert_eq!(mirror.max_body_bytes, 64 * 1024);
}

#[test]
fn weights_finer_than_a_hundredth_of_a_percent_are_refused_with_a_fix() {
    let e = errors("[routes.split]\ncluster = \"api-v1\"\nweight = 0.005\n");
    assert_eq!(e[0].path, "routes[0].split.weight");
    assert!(e[0].message.contains("0.01%"), "{}", e[0].message);
    assert_eq!(
        e[0].help.as_deref(),
        Some("write `0.01`").or(e[0].help.as_deref())
    );
    let e = errors("[routes.split]\ncluster = \"api-v1\"\nweight = 150\n");
    assert!(
        e[0].message.contains("between 0 and 100"),
        "{}",
        e[0].message
    );
}

#[test]
fn clusters_and_slos_a_release_names_must_exist() {
    let e = errors("[routes.split]\ncluster = \"api-v3\"\nweight = 5\n");
    assert_eq!(e[0].path, "routes[0].split.cluster");
    assert!(e[0].message.contains("unknown cluster `api-v3`"));
    assert_eq!(e[0].help.as_deref(), Some("did you mean `api-v1`?"));
    assert!(e[0].line > 0);

    let e = errors("[routes.mirror]\ncluster = \"api-v2\"\n");
    assert!(e[0].message.contains("route's own cluster"), "{e:?}");

    let e = errors("[routes.rollout]\ngates = { slos = [\"api-availabilty\"] }\n");
    assert_eq!(e[0].path, "routes[0].rollout.gates.slos[0]");
    assert_eq!(
        e[0].help.as_deref(),
        Some("did you mean `api-availability`?")
    );
}

#[test]
fn a_blue_green_rollout_needs_a_preview_rule_and_keeps_its_own_keys() {
    let e = errors("[routes.rollout]\nstrategy = \"blue_green\"\n");
    assert_eq!(e[0].path, "routes[0].rollout.force");
    assert!(e[0].message.contains("forcing rule"), "{e:?}");

    let e = errors(
        "[routes.rollout]\nstrategy = \"blue_green\"\nsteps = [{ weight = 5 }]\nforce = [{ header = \"x-preview\", exact = \"1\" }]\n",
    );
    assert!(e[0].message.contains("`steps` does not apply"), "{e:?}");

    let config = load(
        "[routes.rollout]\nstrategy = \"blue_green\"\npreview = \"30s\"\nkeep_old = \"2m\"\nforce = [{ header = \"x-preview\", exact = \"1\" }]\n",
    )
    .unwrap();
    assert_eq!(
        config.routes[0].rollout.as_ref().unwrap().strategy,
        Strategy::BlueGreen {
            preview: Duration::from_secs(30),
            keep_old: Duration::from_secs(120)
        }
    );
}

#[test]
fn steps_that_go_down_and_a_split_beside_a_rollout_are_refused() {
    let e = errors("[routes.rollout]\nsteps = [{ weight = 20 }, { weight = 10 }]\n");
    assert!(e[0].message.contains("must not go down"), "{e:?}");
    let e = errors(
        "[routes.split]\ncluster = \"api-v1\"\nweight = 5\n\n[routes.rollout]\nstep_weight = 5\n",
    );
    assert!(
        e.iter()
            .any(|d| d.message.contains("cannot also have a fixed split")),
        "{e:?}"
    );
}

#[test]
fn a_forcing_rule_takes_one_source_and_one_comparison() {
    let e = errors("[routes.split]\ncluster = \"api-v1\"\nweight = 5\nforce = [{ header = \"x-a\", cookie = \"b\", exact = \"1\" }]\n");
    assert_eq!(e[0].path, "routes[0].split.force[0]");
    let e = errors("[routes.split]\ncluster = \"api-v1\"\nweight = 5\nforce = [{ header = \"x-a\", exact = \"1\", prefix = \"2\" }]\n");
    assert!(e[0].message.contains("exactly one of exact, prefix, regex"));
    let e = errors("[routes.split]\ncluster = \"api-v1\"\nweight = 5\nforce = [{ header = \"x-a\", regex = \"(\" }]\n");
    assert!(e[0].message.contains("invalid regular expression"), "{e:?}");
}

#[test]
fn knobs_that_do_not_apply_are_refused_not_ignored() {
    let e = errors("[routes.rollout]\nmax_weight = 50\n");
    assert!(
        e[0].message.contains("`max_weight` does not apply"),
        "{e:?}"
    );
    let e = errors("[routes.rollout]\nstrategy = \"ab\"\nrequests = 100\nstep_interval = \"5s\"\nforce = [{ header = \"x-group\", exact = \"b\" }]\n");
    assert!(
        e[0].message.contains("`step_interval` does not apply"),
        "{e:?}"
    );
    let e = errors("[routes.rollout]\nanalysis = { max_mirror_mismatch = \"5%\" }\n");
    assert_eq!(e[0].path, "routes[0].rollout.analysis.max_mirror_mismatch");
    assert!(e[0].message.contains("no mirror"), "{e:?}");
}
