//! Faults in the config and at runtime: what they decode to, and the
//! located errors for what is wrong in them.

use levee_config::*;
use std::time::Duration;

fn load(route: &str, cluster: &str) -> Result<Config, Diagnostics> {
    let src = format!(
        "[[listeners]]\nname = \"public\"\nlisten = \"127.0.0.1:0\"\n\n[[clusters]]\nname = \"c\"\nendpoints = [\"127.0.0.1:9001\", \"127.0.0.1:9002\"]\n{cluster}\n\n[[routes]]\nname = \"r\"\ncluster = \"c\"\n{route}\n"
    );
    load_str_with_env(&src, Format::Toml, "levee.toml", &|_| None)
}

fn first_error(route: &str, cluster: &str) -> Diagnostic {
    match load(route, cluster) {
        Ok(_) => panic!("expected an error for {route} {cluster}"),
        Err(d) => d.0[0].clone(),
    }
}

#[test]
fn route_faults_decode_with_scope_actions_and_limits() {
    let config = load(
        r#"faults = [{ name = "slow-qa", percent = 12.5, delay = "200ms", jitter = "50ms", bandwidth = "64KiB", first = 10, max_active = 2, when = { headers = [{ name = "x-chaos", exact = "1" }], tenants = ["acme"], clients = ["10.0.0.0/8", "::1"], methods = ["post"] } }, { abort = "reset" }, { abort = { grpc_status = 14 } }]
fault_headers = { max_percent = 50, max_delay = "2s" }"#,
        "",
    )
    .unwrap();
    let f = &config.routes[0].faults;
    assert_eq!(f[0].name, "slow-qa");
    assert_eq!(f[0].weight, 1250);
    assert_eq!(f[0].delay, Some(Duration::from_millis(200)));
    assert_eq!(f[0].bandwidth, Some(64 * 1024));
    assert_eq!((f[0].first, f[0].max_active), (Some(10), Some(2)));
    assert_eq!(f[0].when.methods, ["POST"]);
    assert!(f[0].when.clients[0].contains("10.1.2.3".parse().unwrap()));
    assert!(!f[0].when.clients[0].contains("11.0.0.1".parse().unwrap()));
    assert!(f[0].when.clients[1].contains("::1".parse().unwrap()));
    assert_eq!(f[1].abort, Some(FaultAbort::Reset));
    assert_eq!(f[1].name, "fault-1");
    assert_eq!(f[2].abort, Some(FaultAbort::Grpc(14)));
    let h = config.routes[0].fault_headers.clone().unwrap();
    assert_eq!((h.max_weight, h.max_delay), (5000, Duration::from_secs(2)));
}

#[test]
fn cluster_faults_decode_and_name_their_endpoints() {
    let config = load(
        "",
        r#"faults = [{ kind = "refuse", endpoints = ["127.0.0.1:9001"] }, { kind = "slow", delay = "1s", percent = 20 }, { kind = "error", status = 503 }, { kind = "reset_mid_body", after_bytes = "1KiB" }, { kind = "hang" }]"#,
    )
    .unwrap();
    let f = &config.clusters[0].faults;
    assert_eq!(f[0].kind, UpstreamFaultKind::Refuse);
    assert_eq!(
        f[1].kind,
        UpstreamFaultKind::Slow {
            delay: Duration::from_secs(1)
        }
    );
    assert_eq!(f[2].kind, UpstreamFaultKind::Error { status: 503 });
    assert_eq!(
        f[3].kind,
        UpstreamFaultKind::ResetMidBody { after_bytes: 1024 }
    );
    let e = first_error(
        "",
        r#"faults = [{ kind = "refuse", endpoints = ["127.0.0.1:9999"] }]"#,
    );
    assert_eq!(e.path, "clusters[0].faults[0].endpoints[0]");
    assert!(e.help.unwrap().contains("127.0.0.1:9001"));
}

#[test]
fn incomplete_or_wrong_faults_are_refused_with_their_field() {
    let e = first_error("faults = [{ percent = 10 }]", "");
    assert!(
        e.message.contains("needs `delay`, `abort` or `bandwidth`"),
        "{e:?}"
    );
    let e = first_error(
        "faults = [{ abort = { status = 503, grpc_status = 14 } }]",
        "",
    );
    assert_eq!(e.path, "routes[0].faults[0].abort");
    let e = first_error(
        r#"faults = [{ delay = "1s", when = { clients = ["10.0.0.0/40"] } }]"#,
        "",
    );
    assert_eq!(e.path, "routes[0].faults[0].when.clients[0]");
    let e = first_error("", r#"faults = [{ kind = "slow" }]"#);
    assert_eq!(e.path, "clusters[0].faults[0].delay");
    let e = first_error("", r#"faults = [{ kind = "teleport" }]"#);
    assert_eq!(e.path, "clusters[0].faults[0].kind");
}

#[test]
fn runtime_faults_need_a_target_and_an_expiry() {
    let f = decode_runtime_fault(
        r#"{"route": "r", "fault": {"abort": {"status": 503}, "percent": 50}, "expires_in": "90s"}"#,
    )
    .unwrap();
    assert_eq!(f.expires_in, Duration::from_secs(90));
    let FaultTarget::Route(route, fault) = f.target else {
        panic!("a route fault")
    };
    assert_eq!((route.as_str(), fault.weight), ("r", 5000));
    let f = decode_runtime_fault(
        r#"{"cluster": "c", "fault": {"kind": "refuse"}, "expires_in": "1m"}"#,
    )
    .unwrap();
    assert!(matches!(f.target, FaultTarget::Cluster(..)));
    let e = decode_runtime_fault(r#"{"route": "r", "fault": {"delay": "1s"}}"#).unwrap_err();
    assert_eq!(e.0[0].path, "expires_in");
    let e = decode_runtime_fault(r#"{"fault": {"delay": "1s"}, "expires_in": "1m"}"#).unwrap_err();
    assert!(
        e.0[0].message.contains("one `route` or one `cluster`"),
        "{e:?}"
    );
    let e = decode_runtime_fault("{not json").unwrap_err();
    assert_eq!(e.0[0].file, "request body");
}
