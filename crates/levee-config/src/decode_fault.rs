//! Decoding faults: a route's `faults` and `fault_headers`, a cluster's
//! `faults`, and a fault set at runtime through the admin API (JSON, read
//! with the same located diagnostics as the config).

use crate::decode::{decode_header_match, name_field};
use crate::decode_release::weight;
use crate::diag::{Decoder, Table};
use crate::model::*;
use crate::node::{Node, Value};
use crate::Diagnostics;
use std::time::Duration;

/// The longest a runtime fault may live: a forgotten experiment must end.
pub const MAX_RUNTIME_FAULT_LIFE: Duration = Duration::from_secs(24 * 3600);

fn network(d: &mut Decoder<'_>, node: &Node, path: &str) -> Option<IpNetwork> {
    let s = d.string(node, path)?;
    let (addr, prefix) = match s.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (s.as_str(), None),
    };
    let Ok(addr) = addr.trim().parse::<std::net::IpAddr>() else {
        d.error_help(
            node.loc,
            path,
            format!("`{s}` is not an IP address or network"),
            "write `10.0.0.0/8`, `192.168.1.7` or `::1/128`",
        );
        return None;
    };
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix.map(|p| p.trim().parse::<u8>()) {
        None => max,
        Some(Ok(p)) if p <= max => p,
        Some(_) => {
            d.error(
                node.loc,
                path,
                format!("the prefix length of `{s}` must be 0 to {max}"),
            );
            return None;
        }
    };
    Some(IpNetwork { addr, prefix })
}

fn scope(d: &mut Decoder<'_>, node: &Node, path: &str) -> Option<FaultScope> {
    let mut t = d.table(node, path)?;
    let headers = d.opt(&mut t, "headers", |d, n, p| {
        d.list(n, p, decode_header_match)
    });
    let tenants = d.opt(&mut t, "tenants", |d, n, p| d.list(n, p, name_field));
    let clients = d.opt(&mut t, "clients", |d, n, p| d.list(n, p, network));
    let methods = d.opt(&mut t, "methods", |d, n, p| {
        d.list(n, p, |d, n, p| {
            let m = d.string(n, p)?.to_ascii_uppercase();
            if m.is_empty() || !m.bytes().all(|b| b.is_ascii_alphabetic()) {
                d.error(n.loc, p, format!("`{m}` is not an HTTP method"));
                return None;
            }
            Some(m)
        })
    });
    d.finish(t);
    Some(FaultScope {
        headers: headers.unwrap_or_default(),
        tenants: tenants.unwrap_or_default(),
        clients: clients.unwrap_or_default(),
        methods: methods.unwrap_or_default(),
    })
}

fn abort(d: &mut Decoder<'_>, node: &Node, path: &str) -> Option<FaultAbort> {
    if let Value::Str(_) = node.value {
        d.choice(node, path, &["reset"])?;
        return Some(FaultAbort::Reset);
    }
    let mut t = d.table(node, path)?;
    let status = d.opt(&mut t, "status", |d, n, p| d.int_in(n, p, 200, 599));
    let grpc = d.opt(&mut t, "grpc_status", |d, n, p| d.int_in(n, p, 1, 16));
    let loc = t.loc;
    d.finish(t);
    match (status, grpc) {
        (Some(s), None) => Some(FaultAbort::Status(s as u16)),
        (None, Some(g)) => Some(FaultAbort::Grpc(g as u32)),
        _ => {
            d.error_help(
                loc,
                path,
                "an abort is one of `{ status = N }`, `{ grpc_status = N }` or `\"reset\"`",
                "for example `abort = { status = 503 }`",
            );
            None
        }
    }
}

/// `first` and `max_active`, shared by both kinds of fault.
fn limits(d: &mut Decoder<'_>, t: &mut Table<'_>) -> (Option<u64>, Option<u32>) {
    let first = d.opt(t, "first", |d, n, p| d.int_in(n, p, 1, i64::MAX));
    let max_active = d.opt(t, "max_active", |d, n, p| d.int_in(n, p, 1, 1_000_000));
    (first.map(|v| v as u64), max_active.map(|v| v as u32))
}

fn fault_name(d: &mut Decoder<'_>, t: &mut Table<'_>, path: &str) -> String {
    d.opt(t, "name", name_field).unwrap_or_else(|| {
        // `routes[0].faults[2]` is named `fault-2`.
        let index = path
            .rsplit_once('[')
            .map_or("0", |(_, i)| i.trim_end_matches(']'));
        format!("fault-{index}")
    })
}

pub(crate) fn decode_fault(d: &mut Decoder<'_>, node: &Node, path: &str) -> Option<Fault> {
    let mut t = d.table(node, path)?;
    // An action that was given but is invalid has its own error.
    let acts = ["delay", "abort", "bandwidth"].iter().any(|k| t.has(k));
    let name = fault_name(d, &mut t, path);
    let share = d.opt(&mut t, "percent", weight);
    let when = d.opt(&mut t, "when", scope);
    let delay = d.opt(&mut t, "delay", Decoder::duration);
    let jitter = d.opt(&mut t, "jitter", Decoder::duration);
    let abort = d.opt(&mut t, "abort", abort);
    let bandwidth = d.opt(&mut t, "bandwidth", Decoder::size);
    let (first, max_active) = limits(d, &mut t);
    let loc = t.loc;
    d.finish(t);
    if delay.is_none() && abort.is_none() && bandwidth.is_none() {
        if acts {
            return None;
        }
        d.error_help(
            loc,
            path,
            "a fault needs `delay`, `abort` or `bandwidth`",
            "for example `{ percent = 10, abort = { status = 503 } }`",
        );
        return None;
    }
    if jitter.is_some() && delay.is_none() {
        d.error(loc, &format!("{path}.jitter"), "`jitter` adds to a `delay`");
    }
    if bandwidth == Some(0) {
        d.error(
            loc,
            &format!("{path}.bandwidth"),
            "a bandwidth of zero never ends",
        );
    }
    Some(Fault {
        name,
        weight: share.unwrap_or(WEIGHT_SCALE),
        when: when.unwrap_or_default(),
        delay,
        jitter: jitter.unwrap_or(Duration::ZERO),
        abort,
        bandwidth,
        first,
        max_active,
    })
}

pub(crate) fn decode_upstream_fault(
    d: &mut Decoder<'_>,
    node: &Node,
    path: &str,
) -> Option<UpstreamFault> {
    let mut t = d.table(node, path)?;
    let name = fault_name(d, &mut t, path);
    let share = d.opt(&mut t, "percent", weight);
    let endpoints = d.opt(&mut t, "endpoints", |d, n, p| d.list(n, p, Decoder::string));
    let kind = d.req(&mut t, "kind", |d, n, p| {
        d.choice(n, p, &["refuse", "hang", "slow", "reset_mid_body", "error"])
    });
    let delay = d.opt(&mut t, "delay", Decoder::duration);
    let after_bytes = d.opt(&mut t, "after_bytes", Decoder::size);
    let status = d.opt(&mut t, "status", |d, n, p| d.int_in(n, p, 400, 599));
    let (first, max_active) = limits(d, &mut t);
    let loc = t.loc;
    d.finish(t);
    let needs = |d: &mut Decoder<'_>, key: &str, kind: &str| {
        d.error_help(
            loc,
            &format!("{path}.{key}"),
            format!("a `{kind}` fault needs `{key}`"),
            format!("for example `{{ kind = \"{kind}\", {key} = ... }}`"),
        );
    };
    let kind = match kind? {
        "refuse" => UpstreamFaultKind::Refuse,
        "hang" => UpstreamFaultKind::Hang,
        "slow" => match delay {
            Some(delay) => UpstreamFaultKind::Slow { delay },
            None => {
                needs(d, "delay", "slow");
                return None;
            }
        },
        "reset_mid_body" => UpstreamFaultKind::ResetMidBody {
            after_bytes: after_bytes.unwrap_or(0),
        },
        _ => match status {
            Some(s) => UpstreamFaultKind::Error { status: s as u16 },
            None => {
                needs(d, "status", "error");
                return None;
            }
        },
    };
    Some(UpstreamFault {
        name,
        weight: share.unwrap_or(WEIGHT_SCALE),
        endpoints: endpoints.unwrap_or_default(),
        kind,
        first,
        max_active,
    })
}

pub(crate) fn decode_fault_headers(
    d: &mut Decoder<'_>,
    node: &Node,
    path: &str,
) -> Option<FaultHeaders> {
    let mut t = d.table(node, path)?;
    let max_weight = d.opt(&mut t, "max_percent", weight);
    let max_delay = d.opt(&mut t, "max_delay", Decoder::duration);
    let max_active = d.opt(&mut t, "max_active", |d, n, p| d.int_in(n, p, 1, 1_000_000));
    d.finish(t);
    Some(FaultHeaders {
        max_weight: max_weight.unwrap_or(WEIGHT_SCALE),
        max_delay: max_delay.unwrap_or(Duration::from_secs(10)),
        max_active: max_active.map_or(1_000, |v| v as u32),
    })
}

/// Checks a cluster's faults name its endpoints.
pub(crate) fn check_cluster(d: &mut Decoder<'_>, root: &Node, i: usize, cluster: &Cluster) {
    // Discovered endpoints are known only at run time.
    if cluster.discovery.is_some() {
        return;
    }
    for (j, fault) in cluster.faults.iter().enumerate() {
        for (k, e) in fault.endpoints.iter().enumerate() {
            if !cluster.endpoints.iter().any(|c| c.address == *e) {
                let path = format!("clusters[{i}].faults[{j}].endpoints[{k}]");
                let known: Vec<&str> = cluster
                    .endpoints
                    .iter()
                    .map(|c| c.address.as_str())
                    .collect();
                d.error_help(
                    root.loc_of(&[&path]),
                    &path,
                    format!("`{e}` is not an endpoint of cluster `{}`", cluster.name),
                    format!("its endpoints: {}", known.join(", ")),
                );
            }
        }
    }
}

/// A fault set at runtime: on a route or a cluster, for a while.
#[derive(Debug, Clone, PartialEq)]
pub struct RuntimeFault {
    /// What it applies to.
    pub target: FaultTarget,
    /// How long it lives (it removes itself then).
    pub expires_in: Duration,
}

/// Where a runtime fault applies.
#[derive(Debug, Clone, PartialEq)]
pub enum FaultTarget {
    /// A route's requests.
    Route(String, Fault),
    /// The attempts to a cluster's endpoints.
    Cluster(String, UpstreamFault),
}

/// Reads a runtime fault, as the admin API receives it (JSON):
/// `{"route": "api", "fault": {...}, "expires_in": "60s"}` or
/// `{"cluster": "c", "fault": {...}, "expires_in": "60s"}`, the fault in
/// the config's shape. `expires_in` is required, at most a day.
pub fn decode_runtime_fault(text: &str) -> Result<RuntimeFault, Diagnostics> {
    const NAME: &str = "request body";
    let root = crate::node::parse_yaml(text).map_err(|e| crate::syntax_error(NAME, &e))?;
    let mut d = Decoder::literal(NAME);
    let decoded = (|| {
        let d = &mut d;
        let mut t = d.table(&root, "")?;
        let route = d.opt(&mut t, "route", name_field);
        let cluster = d.opt(&mut t, "cluster", name_field);
        let expires_in = d.req(&mut t, "expires_in", Decoder::duration);
        let fault_node = d.req(&mut t, "fault", |_, n, _| Some(n));
        let loc = t.loc;
        d.finish(t);
        let fault_node = fault_node?;
        let target = match (route, cluster) {
            (Some(r), None) => FaultTarget::Route(r, decode_fault(d, fault_node, "fault")?),
            (None, Some(c)) => {
                FaultTarget::Cluster(c, decode_upstream_fault(d, fault_node, "fault")?)
            }
            _ => {
                d.error_help(
                    loc,
                    "",
                    "a runtime fault names one `route` or one `cluster`",
                    "for example `{\"route\": \"api\", \"fault\": {\"abort\": {\"status\": 503}}, \"expires_in\": \"60s\"}`",
                );
                return None;
            }
        };
        let expires_in = expires_in?;
        if expires_in > MAX_RUNTIME_FAULT_LIFE {
            d.error(loc, "expires_in", "at most 24h: a forgotten fault must end");
            return None;
        }
        Some(RuntimeFault { target, expires_in })
    })();
    match decoded {
        Some(f) if d.diags.is_empty() => Ok(f),
        _ => Err(Diagnostics(d.diags)),
    }
}
