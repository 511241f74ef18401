//! The merge rules on real configs (what each rule does to a route, a
//! cluster, a removal, a clash) and, as properties against a naive model,
//! what merge order may and may not change.

use super::*;
use std::path::Path;
use std::time::Duration;

const BASE: &str = r#"
[[listeners]]
name = "public"
listen = "127.0.0.1:8080"

[[clusters]]
name = "orders"
endpoints = ["127.0.0.1:9000"]
timeout = "5s"

[[clusters]]
name = "catalog"
endpoints = ["127.0.0.1:9001", "127.0.0.1:9002"]

[[routes]]
name = "orders"
cluster = "orders"
match = { path = { prefix = "/orders/" } }
timeout = "2s"

[[routes]]
name = "catalog"
cluster = "catalog"
match = { path = { prefix = "/catalog/" } }
"#;

fn sources(files: &[(&str, &str)]) -> Vec<Source> {
    files
        .iter()
        .map(|(name, text)| Source {
            name: name.to_string(),
            text: text.to_string(),
            format: Format::from_path(Path::new(name)).expect("a known extension"),
        })
        .collect()
}

fn load_with_env(
    files: &[(&str, &str)],
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Loaded, Diagnostics> {
    load_sources(&sources(files), env)
}

fn load(files: &[(&str, &str)]) -> Result<Config, Diagnostics> {
    load_with_env(files, &|_| None).map(|l| l.config)
}

fn errors(files: &[(&str, &str)]) -> String {
    match load(files) {
        Ok(_) => panic!("the layers loaded, but errors were expected"),
        Err(diags) => diags.to_string(),
    }
}

fn route<'c>(config: &'c Config, name: &str) -> &'c crate::Route {
    config
        .routes
        .iter()
        .find(|r| r.name == name)
        .unwrap_or_else(|| panic!("no route {name}"))
}

fn names<T>(items: &[T], name: impl Fn(&T) -> &str) -> Vec<&str> {
    items.iter().map(name).collect()
}

#[test]
fn tables_merge_key_by_key_and_scalars_override() {
    let config = load(&[
        (
            "base.toml",
            &format!("{BASE}\n[runtime]\ndrain_timeout = \"30s\"\naccess_log = false\n"),
        ),
        ("prod.toml", "[runtime]\ndrain_timeout = \"10s\"\n"),
    ])
    .unwrap_or_else(|d| panic!("{d}"));
    assert_eq!(config.runtime.drain_timeout, Duration::from_secs(10));
    assert!(
        !config.runtime.access_log,
        "a key prod.toml leaves out stays"
    );
}

#[test]
fn named_entries_merge_by_name_and_new_names_are_appended() {
    let prod = r#"
[[routes]]
name = "search"
cluster = "catalog"
match = { path = { prefix = "/search/" } }

[[routes]]
name = "orders"
timeout = "1s"
"#;
    let config =
        load(&[("base.toml", BASE), ("prod.toml", prod)]).unwrap_or_else(|d| panic!("{d}"));
    assert_eq!(
        names(&config.routes, |r| &r.name),
        ["orders", "catalog", "search"],
        "known names keep their place; new ones follow in their file's order"
    );
    let orders = route(&config, "orders");
    assert_eq!(orders.timeout, Some(Duration::from_secs(1)));
    assert_eq!(orders.cluster, "orders", "fields prod.toml leaves out stay");
}

#[test]
fn other_lists_are_replaced_wholesale() {
    let prod = "[[clusters]]\nname = \"catalog\"\nendpoints = [\"127.0.0.1:9100\"]\n";
    let config =
        load(&[("base.toml", BASE), ("prod.toml", prod)]).unwrap_or_else(|d| panic!("{d}"));
    let catalog = config.cluster("catalog").expect("catalog");
    assert_eq!(catalog.endpoints.len(), 1, "{:?}", catalog.endpoints);
    assert!(format!("{:?}", catalog.endpoints[0]).contains("9100"));
    assert_eq!(names(&config.clusters, |c| &c.name), ["orders", "catalog"]);
}

#[test]
fn three_layers_apply_in_order() {
    let staging = "[[routes]]\nname = \"orders\"\ntimeout = \"3s\"\nretry = { attempts = 2 }\n";
    let prod = "[[routes]]\nname = \"orders\"\ntimeout = \"1s\"\n";
    let config = load(&[
        ("base.toml", BASE),
        ("staging.toml", staging),
        ("prod.toml", prod),
    ])
    .unwrap_or_else(|d| panic!("{d}"));
    let orders = route(&config, "orders");
    assert_eq!(
        orders.timeout,
        Some(Duration::from_secs(1)),
        "the last file wins"
    );
    assert!(orders.retry.is_some(), "staging's retry survives prod");
}

#[test]
fn remove_deletes_an_entry_which_may_be_written_again() {
    let prod = r#"
[[routes]]
name = "catalog"
remove = true
"#;
    let config =
        load(&[("base.toml", BASE), ("prod.toml", prod)]).unwrap_or_else(|d| panic!("{d}"));
    assert_eq!(names(&config.routes, |r| &r.name), ["orders"]);

    // Removed then written again in the same file: a fresh entry, with
    // nothing left of the old one (its `match`), placed at the end.
    let again = r#"
[[routes]]
name = "orders"
remove = true

[[routes]]
name = "orders"
cluster = "catalog"
"#;
    let config =
        load(&[("base.toml", BASE), ("prod.toml", again)]).unwrap_or_else(|d| panic!("{d}"));
    assert_eq!(names(&config.routes, |r| &r.name), ["catalog", "orders"]);
    let orders = route(&config, "orders");
    assert_eq!(orders.cluster, "catalog");
    assert_eq!(orders.timeout, None);
}

#[test]
fn removing_a_name_no_earlier_file_has_suggests_the_closest() {
    let prod = "[[routes]]\nname = \"catalgo\"\nremove = true\n";
    assert_eq!(
        errors(&[("base.toml", BASE), ("prod.toml", prod)]),
        "prod.toml:3:10: routes[0].remove: no earlier file defines an entry named `catalgo` here to remove\n  help: did you mean `catalog`?\n1 error found"
    );
    // A list no earlier file has at all.
    let prod = "[[slos]]\nname = \"x\"\nremove = true\n";
    assert_eq!(
        errors(&[("base.toml", BASE), ("prod.toml", prod)]),
        "prod.toml:3:10: slos[0].remove: no earlier file defines an entry named `x` here to remove\n  help: no earlier file defines entries here\n1 error found"
    );
}

#[test]
fn a_removal_takes_only_true_and_the_name() {
    let prod = r#"
[[routes]]
name = "catalog"
remove = "yes"

[[routes]]
name = "orders"
remove = true
timeout = "1s"
"#;
    let err = errors(&[("base.toml", BASE), ("prod.toml", prod)]);
    assert!(
        err.contains(
            "prod.toml:4:10: routes[0].remove: `remove` takes only `true`, found a string"
        ),
        "{err}"
    );
    assert!(
        err.contains("prod.toml:9:1: routes[1].timeout: `timeout` next to `remove = true`: the entry is deleted, so this would be ignored"),
        "{err}"
    );
}

#[test]
fn remove_in_the_first_file_or_misspelt_is_an_unknown_field() {
    let first = format!("{BASE}remove = true\n");
    let alone = crate::load_str(&first, Format::Toml, "base.toml")
        .unwrap_err()
        .to_string();
    assert!(
        alone.contains("base.toml:25:1: routes[1].remove: unknown field `remove`\n  help: `remove = true` deletes the entry of this name that an earlier file defines, so it works only in a later file"),
        "{alone}"
    );
    assert_eq!(errors(&[("base.toml", &first), ("prod.toml", "")]), alone);

    let misspelt = "[[routes]]\nname = \"catalog\"\nremvoe = true\n";
    let err = errors(&[("base.toml", BASE), ("prod.toml", misspelt)]);
    assert!(
        err.contains("prod.toml:3:1: routes[1].remvoe: unknown field `remvoe`\n  help: did you mean `remove = true`?"),
        "{err}"
    );
}

#[test]
fn a_value_that_changes_kind_is_an_error_naming_both_positions() {
    let prod = "[[routes]]\nname = \"orders\"\ntimeout = { after = \"1s\" }\n\n[runtime]\nwatch_config = [true]\n";
    let base = format!("{BASE}\n[runtime]\nwatch_config = false\n");
    assert_eq!(
        errors(&[("base.toml", &base), ("prod.toml", prod)]),
        "\
prod.toml:3:11: routes[0].timeout: a table here, but a string in base.toml:19:11
  help: a later file may replace a value, or merge into a table or a list of named entries, but not change its kind
prod.toml:6:16: runtime.watch_config: a list here, but a boolean in base.toml:27:16
  help: a later file may replace a value, or merge into a table or a list of named entries, but not change its kind
2 errors found"
    );
    // A whole section written as something else.
    let err = errors(&[("base.toml", BASE), ("prod.yaml", "routes: {}\n")]);
    assert!(
        err.starts_with("prod.yaml:1:9: routes: a table here, but a list in base.toml:15:1"),
        "{err}"
    );
}

#[test]
fn a_name_written_twice_in_a_later_file_is_refused() {
    let prod = "[[routes]]\nname = \"orders\"\ntimeout = \"1s\"\n\n[[routes]]\nname = \"orders\"\ntimeout = \"3s\"\n";
    assert_eq!(
        errors(&[("base.toml", BASE), ("prod.toml", prod)]),
        "prod.toml:5:1: routes[1].name: `orders` is written twice (first at prod.toml:1:1)\n  help: write each entry once; entries of the same name in different files merge\n1 error found"
    );
}

#[test]
fn an_empty_list_clears_and_a_yaml_null_unsets() {
    let prod = "routes: []\nclusters:\n  - name: orders\n    timeout: ~\n";
    let config =
        load(&[("base.toml", BASE), ("prod.yaml", prod)]).unwrap_or_else(|d| panic!("{d}"));
    assert!(config.routes.is_empty());
    let orders = config.cluster("orders").expect("orders");
    let default = load(&[("base.toml", "[[listeners]]\nname = \"l\"\nlisten = \"127.0.0.1:1\"\n[[clusters]]\nname = \"orders\"\nendpoints = [\"127.0.0.1:9\"]\n")])
        .unwrap_or_else(|d| panic!("{d}"));
    assert_eq!(
        orders.timeout, default.clusters[0].timeout,
        "the default, not 5s"
    );
}

#[test]
fn diagnostics_point_at_the_file_and_line_that_set_the_value() {
    let base = BASE.replace(
        "timeout = \"5s\"",
        "timeout = \"5s\"\nconect_timeout = \"1s\"",
    );
    let prod =
        "# production\n\n[[routes]]\nname = \"orders\"\ntimeout = \"10\"\ncluster = \"ordres\"\n";
    assert_eq!(
        errors(&[("base.toml", &base), ("prod.toml", prod)]),
        "\
base.toml:10:1: clusters[0].conect_timeout: unknown field `conect_timeout`
  help: did you mean `connect_timeout`?
prod.toml:5:11: routes[0].timeout: `10` has a number without a unit
  help: write a number with a unit: `250ms`, `2s`, `5m`, `1h`
prod.toml:6:11: routes[0].cluster: unknown cluster `ordres`
  help: did you mean `orders`?
3 errors found"
    );
}

#[test]
fn yaml_and_toml_layers_mix_and_interpolate_after_merging() {
    let prod = "routes:\n  - name: orders\n    cluster: ${ORDERS_CLUSTER}\n";
    let env = |k: &str| (k == "ORDERS_CLUSTER").then(|| "catalog".to_string());
    let loaded = load_with_env(&[("base.toml", BASE), ("prod.yaml", prod)], &env)
        .unwrap_or_else(|d| panic!("{d}"));
    assert_eq!(route(&loaded.config, "orders").cluster, "catalog");
    let err = errors(&[("base.toml", BASE), ("prod.yaml", prod)]);
    assert!(
        err.starts_with(
            "prod.yaml:3:14: routes[0].cluster: environment variable `ORDERS_CLUSTER` is not set"
        ),
        "{err}"
    );
}

#[test]
fn syntax_errors_of_every_layer_are_reported_together() {
    let err = errors(&[
        ("base.toml", "[[listeners]\n"),
        ("ok.toml", ""),
        ("prod.yaml", "a: [1, 2\n"),
    ]);
    assert!(err.starts_with("base.toml:1:"), "{err}");
    assert!(err.contains("\nprod.yaml:"), "{err}");
    assert!(err.ends_with("2 errors found"), "{err}");
}

#[test]
fn one_file_loads_exactly_as_load_str() {
    for text in [
        BASE,
        "[admin]\nlisten = \"0.0.0.0:1\"\n[[listeners]]\nname = 7\n",
    ] {
        let alone = crate::load_str_with_env(text, Format::Toml, "levee.toml", &|_| None);
        let layered = load(&[("levee.toml", text)]);
        assert_eq!(alone, layered);
    }
}

#[test]
fn explain_names_the_layer_that_set_each_value_and_redacts_secrets() {
    let base = format!(
        r#"{BASE}
[admin]
token = "base-admin-token-0123456789"

[redis]
url = "redis://:hunter2@127.0.0.1:6379"

[tenants.jwt]
hs256_secrets = ["0123456789abcdef0123456789abcdef"]

[[alerting.webhooks]]
name = "oncall"
url = "http://user:pw@127.0.0.1:8085/hook"
headers = {{ authorization = "Bearer xyz" }}

[jobs]
backend = "jetstream"
jetstream = {{ url = "nats://tok3n@127.0.0.1:4222" }}
"#
    );
    let prod = r#"
[admin]
token = "${ADMIN_TOKEN}"

[[routes]]
name = "orders"
timeout = "1s"
[routes.async.callback]
allowed_hosts = ["hooks.example.com"]
secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
"#;
    let env = |k: &str| (k == "ADMIN_TOKEN").then(|| "prod-admin-token-0123456789".to_string());
    let explained = load_with_env(&[("base.toml", &base), ("prod.toml", prod)], &env)
        .unwrap_or_else(|d| panic!("{d}"))
        .explain();
    let text: Vec<String> = explained.values.iter().map(ToString::to_string).collect();
    let text = text.join("\n");
    for expected in [
        r#"base.toml:3:8: listeners[0].name = "public""#,
        r#"base.toml:13:32: clusters[1].endpoints[1] = "127.0.0.1:9002""#,
        r#"prod.toml:7:11: routes[0].timeout = "1s""#,
        r#"base.toml:16:8: routes[0].name = "orders""#,
        r#"base.toml:17:11: routes[0].cluster = "orders""#,
        r#"prod.toml:3:9: admin.token = "<redacted>""#,
        r#"base.toml:30:7: redis.url = "<redacted>""#,
        r#"base.toml:33:18: tenants.jwt.hs256_secrets[0] = "<redacted>""#,
        r#"base.toml:37:7: alerting.webhooks[0].url = "<redacted>""#,
        r#"base.toml:38:29: alerting.webhooks[0].headers.authorization = "<redacted>""#,
        r#"base.toml:42:21: jobs.jetstream.url = "<redacted>""#,
        r#"prod.toml:10:10: routes[0].async.callback.secret = "<redacted>""#,
        r#"prod.toml:9:18: routes[0].async.callback.allowed_hosts[0] = "hooks.example.com""#,
    ] {
        assert!(text.contains(expected), "missing {expected}\nin:\n{text}");
    }
    for secret in [
        "hunter2",
        "0123456789abcdef",
        "xyz",
        "tok3n",
        "whsec_",
        "admin-token",
        "user:pw",
    ] {
        assert!(!text.contains(secret), "{secret} leaked:\n{text}");
    }
    let origin = explained
        .values
        .iter()
        .find(|o| o.path == "listeners[0].name")
        .expect("listeners[0].name");
    assert_eq!(
        serde_json::to_value(origin).expect("serialises"),
        serde_json::json!({"path": "listeners[0].name", "value": "public", "file": "base.toml", "line": 3, "col": 8})
    );
}

/// Properties of the merge on generated trees that keep each key's kind
/// (as real layers of one config do), against a naive model: the merged
/// tree's values are the earlier file's, overridden value by value by the
/// later file's, where a plain list is one value and a named list's
/// entries are addressed by name.
mod properties {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    const NAMES: [&str; 4] = ["a", "b", "c", "d"];

    fn node(value: Value) -> Node {
        Node {
            value,
            loc: Loc::new(1, 1),
        }
    }

    fn scalar() -> impl Strategy<Value = Value> {
        prop_oneof![
            any::<i64>().prop_map(Value::Int),
            any::<bool>().prop_map(Value::Bool),
            "[a-z]{0,3}".prop_map(Value::Str),
        ]
    }

    /// A table of optional scalars `s1`, `s2`, a plain list `plain`, a
    /// named list `items` and, `depth` levels down, a table `t`.
    fn table(depth: u32) -> BoxedStrategy<Node> {
        let inner = if depth == 0 {
            Just(None).boxed()
        } else {
            proptest::option::of(table(depth - 1)).boxed()
        };
        let items = proptest::option::of(named_list(depth));
        (
            proptest::option::of(scalar()),
            proptest::option::of(scalar()),
            proptest::option::of(proptest::collection::vec(any::<i8>(), 0..3)),
            items,
            inner,
        )
            .prop_map(|(s1, s2, plain, items, t)| {
                let mut entries = Vec::new();
                let mut put =
                    |k: &str, v: Value| entries.push((k.to_string(), Loc::new(1, 1), node(v)));
                if let Some(v) = s1 {
                    put("s1", v);
                }
                if let Some(v) = s2 {
                    put("s2", v);
                }
                if let Some(v) = plain {
                    put(
                        "plain",
                        Value::Seq(v.into_iter().map(|i| node(Value::Int(i.into()))).collect()),
                    );
                }
                if let Some(v) = items {
                    put("items", v);
                }
                if let Some(t) = t {
                    put("t", t.value);
                }
                node(Value::Map(entries))
            })
            .boxed()
    }

    /// A non-empty list of tables with distinct names, in any order.
    fn named_list(depth: u32) -> BoxedStrategy<Value> {
        let body = if depth == 0 {
            Just(node(Value::Map(Vec::new()))).boxed()
        } else {
            table(depth - 1)
        };
        (
            proptest::sample::subsequence(NAMES.to_vec(), 1..=NAMES.len()).prop_shuffle(),
            proptest::collection::vec(body, NAMES.len()),
        )
            .prop_map(|(names, bodies)| {
                Value::Seq(
                    names
                        .into_iter()
                        .zip(bodies)
                        .map(|(name, body)| {
                            let Value::Map(mut entries) = body.value else {
                                unreachable!("tables are maps")
                            };
                            entries.insert(
                                0,
                                ("name".into(), Loc::new(1, 1), node(Value::Str(name.into()))),
                            );
                            node(Value::Map(entries))
                        })
                        .collect(),
                )
            })
            .boxed()
    }

    /// Every value by its logical path (named entries by name, a plain
    /// list as one value), with the file that wrote it.
    fn flatten(n: &Node, path: &str, out: &mut BTreeMap<String, (Value, u32)>) {
        match &n.value {
            Value::Map(entries) => {
                for (k, _, v) in entries {
                    flatten(v, &format!("{path}.{k}"), out);
                }
            }
            Value::Seq(items)
                if items.iter().all(|i| name_of(i).is_some()) && !items.is_empty() =>
            {
                for item in items {
                    let name = name_of(item).unwrap_or_default();
                    let Value::Map(entries) = &item.value else {
                        continue;
                    };
                    // The name is the entry's address, not one of its values.
                    for (k, _, v) in entries.iter().filter(|(k, _, _)| k != "name") {
                        flatten(v, &format!("{path}[{name}].{k}"), out);
                    }
                }
            }
            other => {
                out.insert(path.to_string(), (strip_locs(other), n.loc.file));
            }
        }
    }

    /// A plain list compared by its values, not their positions.
    fn strip_locs(v: &Value) -> Value {
        match v {
            Value::Seq(items) => {
                Value::Seq(items.iter().map(|i| node(strip_locs(&i.value))).collect())
            }
            other => other.clone(),
        }
    }

    fn flat(n: &Node) -> BTreeMap<String, (Value, u32)> {
        let mut out = BTreeMap::new();
        flatten(n, "", &mut out);
        out
    }

    fn merged(a: &Node, b: &Node) -> Node {
        let files = ["a.toml".to_string(), "b.toml".to_string()];
        let (mut a, mut b) = (a.clone(), b.clone());
        set_file(&mut a, 0);
        set_file(&mut b, 1);
        merge_layers(vec![a, b], &files).unwrap_or_else(|d| panic!("{d}"))
    }

    /// The names of the named list at `items` in each table, in order.
    fn orders(n: &Node, path: &str, out: &mut BTreeMap<String, Vec<String>>) {
        if let Value::Map(entries) = &n.value {
            for (k, _, v) in entries {
                let here = format!("{path}.{k}");
                if let Value::Seq(items) = &v.value {
                    if k == "items" {
                        out.insert(
                            here.clone(),
                            items.iter().filter_map(name_of).map(String::from).collect(),
                        );
                        for item in items {
                            let name = name_of(item).unwrap_or_default();
                            orders(item, &format!("{here}[{name}]"), out);
                        }
                    }
                } else {
                    orders(v, &here, out);
                }
            }
        }
    }

    proptest! {
        #[test]
        fn merging_a_file_with_itself_gives_the_file(a in table(2)) {
            let files = ["a.toml".to_string()];
            prop_assert_eq!(merge_layers(vec![a.clone(), a.clone()], &files).unwrap_or_else(|d| panic!("{d}")), a);
        }

        #[test]
        fn the_later_file_wins_value_by_value(a in table(2), b in table(2)) {
            let m = merged(&a, &b);
            let mut model: BTreeMap<String, (Value, u32)> = flat(&a)
                .into_iter()
                .map(|(k, (v, _))| (k, (v, 0)))
                .collect();
            model.extend(flat(&b).into_iter().map(|(k, (v, _))| (k, (v, 1))));
            prop_assert_eq!(flat(&m), model);
        }

        #[test]
        fn named_entries_keep_the_earlier_order_then_the_later_files_new_names(a in table(2), b in table(2)) {
            let m = merged(&a, &b);
            let (mut oa, mut ob, mut om) = Default::default();
            orders(&a, "", &mut oa);
            orders(&b, "", &mut ob);
            orders(&m, "", &mut om);
            for (path, got) in om {
                let first: Vec<String> = oa.get(&path).cloned().unwrap_or_default();
                let mut want = first.clone();
                for n in ob.get(&path).into_iter().flatten() {
                    if !first.contains(n) {
                        want.push(n.clone());
                    }
                }
                prop_assert_eq!(got, want, "at {}", path);
            }
        }

        #[test]
        fn order_matters_only_where_both_files_set_a_value(a in table(2), b in table(2)) {
            let (fa, fb) = (flat(&a), flat(&b));
            let ab = flat(&merged(&a, &b));
            let ba = flat(&merged(&b, &a));
            for (path, (value, _)) in &ab {
                let other = &ba[path].0;
                if fa.contains_key(path) && fb.contains_key(path) {
                    prop_assert_eq!(value, &fb[path].0);
                    prop_assert_eq!(other, &fa[path].0);
                } else {
                    prop_assert_eq!(value, other, "at {}", path);
                }
            }
            prop_assert_eq!(ab.len(), ba.len());
        }
    }
}
