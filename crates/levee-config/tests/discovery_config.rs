//! `clusters[].discovery`: which sources a cluster may take, that a cluster
//! with discovery needs no endpoints of its own, and the diagnostics of a
//! section written wrong.

use levee_config::{load_str, Config, Diagnostics, Format};
use std::net::SocketAddr;

fn load(cluster_tail: &str) -> Result<Config, Diagnostics> {
    let src = format!(
        r#"
[[listeners]]
name = "public"
listen = "127.0.0.1:8080"

[[routes]]
name = "orders"
cluster = "orders"

[[clusters]]
name = "orders"
{cluster_tail}
"#
    );
    load_str(&src, Format::Toml, "levee.toml")
}

fn errors(cluster_tail: &str) -> Vec<String> {
    load(cluster_tail)
        .expect_err("the config is invalid")
        .0
        .iter()
        .map(|d| d.to_string())
        .collect()
}

#[test]
fn a_file_source_needs_no_endpoints_of_its_own() {
    let config = load(r#"discovery = { file = "targets.json" }"#).unwrap();
    let c = &config.clusters[0];
    assert!(c.endpoints.is_empty());
    let d = c.discovery.as_ref().unwrap();
    assert_eq!(d.file.as_deref(), Some("targets.json"));
    assert_eq!((d.srv.as_deref(), d.nameserver), (None, None));
}

#[test]
fn srv_with_a_nameserver_and_static_endpoints_beside_it() {
    let config = load(
        r#"endpoints = []
discovery = { srv = "_http._tcp.orders.default.svc.cluster.local.", nameserver = "127.0.0.1:8600", file = "targets.yml" }"#,
    )
    .unwrap();
    let d = config.clusters[0].discovery.as_ref().unwrap();
    assert_eq!(
        d.srv.as_deref(),
        Some("_http._tcp.orders.default.svc.cluster.local")
    );
    assert_eq!(d.nameserver, Some("127.0.0.1:8600".parse().unwrap()));
    assert_eq!(d.file.as_deref(), Some("targets.yml"));

    let bare =
        load(r#"discovery = { srv = "orders.service.consul", nameserver = "10.0.0.2" }"#).unwrap();
    let ns = bare.clusters[0].discovery.as_ref().unwrap().nameserver;
    assert_eq!(ns, Some(SocketAddr::from(([10, 0, 0, 2], 53))));
}

#[test]
fn without_discovery_endpoints_stay_required() {
    let missing = errors(r#"dns_refresh = "5s""#);
    assert_eq!(missing.len(), 1, "{missing:?}");
    assert!(
        missing[0].starts_with("levee.toml:10:1: clusters[0].endpoints: missing required field"),
        "{missing:?}"
    );
    assert!(missing[0].contains("discovery = { file"), "{missing:?}");
    let empty = errors("endpoints = []");
    assert!(
        empty[0].contains("clusters[0].endpoints: at least one endpoint is required"),
        "{empty:?}"
    );
}

#[test]
fn a_discovery_section_written_wrong_is_placed() {
    let errs = errors(
        r#"discovery = { file = "targets.txt", srv = "_http._tcp.bad name", nameservr = "1.1.1.1" }"#,
    );
    let first_lines: Vec<&str> = errs.iter().map(|e| e.lines().next().unwrap()).collect();
    assert_eq!(
        first_lines,
        [
            "levee.toml:12:22: clusters[0].discovery.file: `targets.txt` is neither a .json nor a .yaml file",
            "levee.toml:12:43: clusters[0].discovery.srv: `_http._tcp.bad name` is not a DNS name",
            "levee.toml:12:66: clusters[0].discovery.nameservr: unknown field `nameservr`",
        ]
    );
    assert!(errs[2].contains("did you mean `nameserver`?"), "{errs:?}");

    let none = errors("discovery = { }");
    assert!(
        none[0].contains("clusters[0].discovery: discovery needs a source"),
        "{none:?}"
    );
    let orphan = errors(r#"discovery = { file = "t.json", nameserver = "127.0.0.1:53" }"#);
    assert!(
        orphan[0]
            .contains("clusters[0].discovery.nameserver: `nameserver` is where SRV queries go"),
        "{orphan:?}"
    );
}

#[test]
fn yaml_configs_take_discovery_too() {
    let src = r#"
listeners:
  - name: public
    listen: 127.0.0.1:8080
clusters:
  - name: orders
    discovery:
      file: targets/orders.yaml
"#;
    let config = load_str(src, Format::Yaml, "levee.yaml").unwrap();
    assert_eq!(
        config.clusters[0]
            .discovery
            .as_ref()
            .unwrap()
            .file
            .as_deref(),
        Some("targets/orders.yaml")
    );
}

#[test]
fn the_shipped_targets_file_reads() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/targets/orders.json");
    let endpoints = levee_config::file_sd::load_targets(&path).unwrap();
    let summary: Vec<(&str, u32, u32, Option<&str>)> = endpoints
        .iter()
        .map(|e| (e.address.as_str(), e.weight, e.priority, e.zone.as_deref()))
        .collect();
    assert_eq!(
        summary,
        [
            ("127.0.0.1:9601", 1, 0, Some("eu-west-1a")),
            ("127.0.0.1:9602", 1, 0, Some("eu-west-1a")),
            ("127.0.0.1:9603", 2, 0, Some("eu-west-1b")),
            ("orders-dr.internal:8080", 1, 1, None),
        ]
    );
}
