//! Decoding the located tree into the typed model, then the checks that span
//! sections (unique names, references between routes, listeners and clusters,
//! the admin token rule). Every problem is collected.

use crate::decode_fault;
use crate::decode_jobs;
use crate::decode_release;
use crate::decode_slo;
use crate::diag::{closest, Decoder, Table};
use crate::model::*;
use crate::node::{Node, Value};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

pub(crate) fn decode_config(d: &mut Decoder<'_>, root: &Node) -> Option<Config> {
    let mut t = d.table(root, "")?;
    let admin = d.opt(&mut t, "admin", decode_admin);
    let runtime = d.opt(&mut t, "runtime", decode_runtime);
    let listeners = d.req(&mut t, "listeners", |d, n, p| d.list(n, p, decode_listener));
    let routes = d.opt(&mut t, "routes", |d, n, p| d.list(n, p, decode_route));
    let clusters = d.opt(&mut t, "clusters", |d, n, p| d.list(n, p, decode_cluster));
    let tenants = d.opt(&mut t, "tenants", decode_tenants);
    let redis = d.opt(&mut t, "redis", decode_redis);
    let slos = d.opt(&mut t, "slos", |d, n, p| {
        d.list(n, p, decode_slo::decode_slo)
    });
    let alerting = d.opt(&mut t, "alerting", decode_slo::decode_alerting);
    let store = d.opt(&mut t, "store", decode_slo::decode_store);
    let status_page = d.opt(&mut t, "status_page", decode_slo::decode_status_page);
    let capacity = d.opt(&mut t, "capacity", decode_slo::decode_capacity);
    let jobs = d.opt(&mut t, "jobs", decode_jobs::decode_jobs);
    let fleet = d.opt(&mut t, "fleet", decode_fleet);
    let remote_write = d.opt(&mut t, "remote_write", decode_remote_write);
    let fleet_loc = root.loc_of(&["fleet"]);
    d.finish(t);
    let mut config = Config {
        admin: admin.unwrap_or(Admin {
            listen: SocketAddr::from(([127, 0, 0, 1], 9901)),
            token: None,
            keda_listen: None,
        }),
        runtime: runtime.unwrap_or_else(default_runtime),
        listeners: listeners.unwrap_or_default(),
        routes: routes.unwrap_or_default(),
        clusters: clusters.unwrap_or_default(),
        tenants: tenants.unwrap_or_default(),
        redis,
        slos: slos.unwrap_or_default(),
        alerting: alerting.unwrap_or_default(),
        store: store.unwrap_or_default(),
        status_page: status_page.unwrap_or_default(),
        capacity: capacity.unwrap_or_default(),
        jobs: jobs.unwrap_or_default(),
        fleet,
        remote_write,
    };
    if config.fleet.is_some() && config.redis.is_none() {
        d.error_help(
            fleet_loc,
            "fleet",
            "a fleet shares its SLO counts through Redis, and `[redis]` is not set",
            "add `[redis]` with `url = \"redis://127.0.0.1:6379\"`",
        );
    }
    decode_slo::apply_slo_defaults(&mut config);
    // Only an empty list: items that failed are reported where they are.
    if matches!(root.find("listeners"), Some(Node { value: Value::Seq(items), .. }) if items.is_empty())
    {
        d.error(
            root.loc_of(&["listeners"]),
            "listeners",
            "at least one listener is required",
        );
    }
    Some(config)
}

fn default_runtime() -> Runtime {
    Runtime {
        drain_timeout: Duration::from_secs(30),
        watch_config: true,
        access_log: true,
        worker_threads: None,
        zone: None,
        region: None,
        overload: None,
        handover_socket: HandoverSocket::Default,
    }
}

fn decode_admin(d: &mut Decoder<'_>, node: &Node, path: &str) -> Option<Admin> {
    let mut t = d.table(node, path)?;
    let listen = d.opt(&mut t, "listen", Decoder::socket_addr);
    let token = d.opt(&mut t, "token", Decoder::secret);
    let keda_listen = d.opt(&mut t, "keda_listen", Decoder::socket_addr);
    d.finish(t);
    let admin = Admin {
        listen: listen.unwrap_or(SocketAddr::from(([127, 0, 0, 1], 9901))),
        token: token.map(Secret::new),
        keda_listen,
    };
    if !admin.listen.ip().is_loopback() && admin.token.is_none() {
        // The token is missing because of where the API listens.
        d.error_help(
            node.loc_of(&["listen"]),
            &format!("{path}.token"),
            format!(
                "the admin API listens on {}, which is not loopback, so a token is required",
                admin.listen
            ),
            "set `token = \"${LEVEE_ADMIN_TOKEN}\"`, or listen on 127.0.0.1",
        );
    }
    if admin
        .token
        .as_ref()
        .is_some_and(|t| t.expose().chars().count() < 16)
    {
        d.error(
            node.loc_of(&["token"]),
            &format!("{path}.token"),
            "the admin token must be at least 16 characters",
        );
    }
    Some(admin)
}

fn decode_runtime(d: &mut Decoder<'_>, node: &Node, path: &str) -> Option<Runtime> {
    let mut t = d.table(node, path)?;
    let def = default_runtime();
    let runtime = Runtime {
        drain_timeout: d
            .opt(&mut t, "drain_timeout", Decoder::duration)
            .unwrap_or(def.drain_timeout),
        watch_config: d
            .opt(&mut t, "watch_config", Decoder::bool)
            .unwrap_or(def.watch_config),
        access_log: d
            .opt(&mut t, "access_log", Decoder::bool)
            .unwrap_or(def.access_log),
        worker_threads: d
            .opt(&mut t, "worker_threads", |d, n, p| d.int_in(n, p, 1, 1024))
            .map(|n| n as usize),
        zone: d.opt(&mut t, "zone", Decoder::string),
        region: d.opt(&mut t, "region", Decoder::string),
        overload: d.opt(&mut t, "overload", decode_overload_guard),
        handover_socket: d
            .opt(&mut t, "handover_socket", decode_handover_socket)
            .unwrap_or(def.handover_socket),
    };
    d.finish(t);
    Some(runtime)
}

/// The longest Unix socket path the kernel takes (`sun_path` holds 108
/// bytes with its terminating NUL), less room for a relative path's base.
const MAX_SOCKET_PATH: usize = 100;

fn decode_handover_socket(d: &mut Decoder<'_>, node: &Node, path: &str) -> Option<HandoverSocket> {
    let s = d.string(node, path)?;
    if s == "off" {
        return Some(HandoverSocket::Off);
    }
    if s.is_empty() {
        d.error_help(
            node.loc,
            path,
            "the handover socket path is empty",
            "name a path such as \"/run/levee/handover.sock\", or \"off\" for no handover",
        );
        return None;
    }
    if s.len() > MAX_SOCKET_PATH {
        d.error_help(
            node.loc,
            path,
            format!(
                "a Unix socket path must be at most {MAX_SOCKET_PATH} bytes, got {}",
                s.len()
            ),
            "choose a shorter path, such as \"/run/levee/handover.sock\"",
        );
        return None;
    }
    Some(HandoverSocket::Path(s.into()))
}

fn decode_listener(d: &mut Decoder<'_>, node: &Node, path: &str) -> Option<Listener> {
    let mut t = d.table(node, path)?;
    let name = d.req(&mut t, "name", name_field);
    let listen = d.req(&mut t, "listen", Decoder::socket_addr);
    let tls = d.opt(&mut t, "tls", decode_tls);
    let limits = d.opt(&mut t, "limits", decode_limits);
    d.finish(t);
    Some(Listener {
        name: name?,
        listen: listen?,
        tls,
        limits: limits.unwrap_or_default(),
    })
}

/// Levee's names (of listeners, routes, clusters, SLOs, tenants): letters,
/// digits, `-`, `_`, `.`.
pub(crate) fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

pub(crate) fn name_field(d: &mut Decoder<'_>, node: &Node, path: &str) -> Option<String> {
    let s = d.string(node, path)?;
    if !is_name(&s) {
        d.error_help(
            node.loc,
            path,
            format!("`{s}` is not a valid name"),
            "use letters, digits, `-`, `_` and `.`",
        );
        return None;
    }
    Some(s)
}

fn decode_tls(d: &mut Decoder<'_>, node: &Node, path: &str) -> Option<Tls> {
    let mut t = d.table(node, path)?;
    let cert = d.req(&mut t, "cert", existing_file);
    let key = d.req(&mut t, "key", existing_file);
    d.finish(t);
    Some(Tls {
        cert: cert?,
        key: key?,
    })
}

fn existing_file(d: &mut Decoder<'_>, node: &Node, path: &str) -> Option<String> {
    let s = d.string(node, path)?;
    if std::fs::metadata(&s).is_err() {
        d.error(node.loc, path, format!("cannot read file `{s}`"));
        return None;
    }
    Some(s)
}

fn decode_limits(d: &mut Decoder<'_>, node: &Node, path: &str) -> Option<Limits> {
    let mut t = d.table(node, path)?;
    let def = Limits::default();
    let limits = Limits {
        max_connections: d
            .opt(&mut t, "max_connections", |d, n, p| {
                d.int_in(n, p, 1, 10_000_000)
            })
            .map_or(def.max_connections, |v| v as u32),
        max_request_header_bytes: d
            .opt(&mut t, "max_request_header_bytes", Decoder::size)
            .unwrap_or(def.max_request_header_bytes),
        max_request_body_bytes: d
            .opt(&mut t, "max_request_body_bytes", Decoder::size)
            .unwrap_or(def.max_request_body_bytes),
        header_read_timeout: d
            .opt(&mut t, "header_read_timeout", Decoder::duration)
            .unwrap_or(def.header_read_timeout),
        idle_timeout: d
            .opt(&mut t, "idle_timeout", Decoder::duration)
            .unwrap_or(def.idle_timeout),
        max_concurrent_streams: d
            .opt(&mut t, "max_concurrent_streams", |d, n, p| {
                d.int_in(n, p, 1, 65_535)
            })
            .map_or(def.max_concurrent_streams, |v| v as u32),
    };
    if limits.max_request_header_bytes < 8192 {
        d.error(
            node.loc_of(&["max_request_header_bytes"]),
            &format!("{path}.max_request_header_bytes"),
            format!(
                "must be at least 8KiB, got {} bytes",
                limits.max_request_header_bytes
            ),
        );
    }
    d.finish(t);
    Some(limits)
}

fn decode_route(d: &mut Decoder<'_>, node: &Node, path: &str) -> Option<Route> {
    let mut t = d.table(node, path)?;
    let name = d.req(&mut t, "name", name_field);
    let listeners = d.opt(&mut t, "listeners", |d, n, p| d.list(n, p, Decoder::string));
    let matcher = d.opt(&mut t, "match", decode_match);
    let cluster = d.req(&mut t, "cluster", Decoder::string);
    let rewrite = d.opt(&mut t, "rewrite", decode_rewrite);
    let request_headers = d.opt(&mut t, "request_headers", decode_header_ops);
    let response_headers = d.opt(&mut t, "response_headers", decode_header_ops);
    let timeout = d.opt(&mut t, "timeout", Decoder::duration);
    let connect_timeout = d.opt(&mut t, "connect_timeout", Decoder::duration);
    let retry = d.opt(&mut t, "retry", decode_retry);
    let honor_deadlines = d.opt(&mut t, "honor_deadlines", Decoder::bool);
    let min_attempt_time = d.opt(&mut t, "min_attempt_time", Decoder::duration);
    let stream_idle_timeout = d.opt(&mut t, "stream_idle_timeout", Decoder::duration);
    let hedge = d.opt(&mut t, "hedge", decode_hedge);
    let fallback = d.opt(&mut t, "fallback", decode_fallback);
    let rate_limits = d.opt(&mut t, "rate_limits", |d, n, p| {
        d.list(n, p, decode_rate_limit)
    });
    let tier = d.opt(&mut t, "tier", |d, n, p| {
        d.choice(n, p, &["core", "optional"])
    });
    let priority = d.opt(&mut t, "priority", |d, n, p| {
        d.choice(n, p, &["critical", "default", "sheddable"])
            .and_then(Priority::from_name)
    });
    let priority_header = d.opt(&mut t, "priority_header", header_name);
    let split = d.opt(&mut t, "split", decode_release::decode_split);
    let rollout = d.opt(&mut t, "rollout", decode_release::decode_rollout);
    let mirror = d.opt(&mut t, "mirror", decode_release::decode_mirror);
    let faults = d.opt(&mut t, "faults", |d, n, p| {
        d.list(n, p, decode_fault::decode_fault)
    });
    let fault_headers = d.opt(&mut t, "fault_headers", decode_fault::decode_fault_headers);
    let async_jobs = d.opt(&mut t, "async", decode_jobs::decode_async_route);
    d.finish(t);
    Some(Route {
        name: name?,
        listeners: listeners.unwrap_or_default(),
        matcher: matcher.unwrap_or_default(),
        cluster: cluster?,
        rewrite: rewrite.unwrap_or_default(),
        request_headers: request_headers.unwrap_or_default(),
        response_headers: response_headers.unwrap_or_default(),
        timeout,
        connect_timeout,
        retry,
        honor_deadlines: honor_deadlines.unwrap_or(true),
        min_attempt_time: min_attempt_time.unwrap_or(Duration::from_millis(5)),
        stream_idle_timeout: stream_idle_timeout.unwrap_or(Duration::from_secs(300)),
        hedge,
        fallback,
        rate_limits: rate_limits.unwrap_or_default(),
        tier: match tier {
            Some("optional") => Tier::Optional,
            _ => Tier::Core,
        },
        priority: priority.unwrap_or(Priority::Default),
        priority_header,
        split,
        rollout,
        mirror,
        faults: faults.unwrap_or_default(),
        fault_headers,
        async_jobs,
    })
}

fn decode_retry(d: &mut Decoder<'_>, node: &Node, path: &str) -> Option<RetryPolicy> {
    let mut t = d.table(node, path)?;
    let attempts = d.opt(&mut t, "attempts", |d, n, p| d.int_in(n, p, 1, 10));
    let retry_on = d.opt(&mut t, "retry_on", |d, n, p| {
        d.list(n, p, |d, n, p| {
            let choice = d.choice(
                n,
                p,
                &[
                    "connect-failure",
                    "reset",
                    "timeout",
                    "5xx",
                    "gateway-error",
                    "status",
                    "refused-stream",
                    "grpc",
                ],
            )?;
            Some(match choice {
                "connect-failure" => RetryOn::ConnectFailure,
                "reset" => RetryOn::Reset,
                "timeout" => RetryOn::Timeout,
                "5xx" => RetryOn::ServerError,
                "gateway-error" => RetryOn::GatewayError,
                "refused-stream" => RetryOn::RefusedStream,
                "grpc" => RetryOn::Grpc,
                _ => RetryOn::Status,
            })
        })
    });
    let statuses = d.opt(&mut t, "statuses", |d, n, p| {
        d.list(n, p, |d, n, p| d.int_in(n, p, 100, 599).map(|s| s as u16))
    });
    let grpc_statuses = d.opt(&mut t, "grpc_statuses", |d, n, p| d.list(n, p, grpc_code));
    let retry_after_max = d.opt(&mut t, "retry_after_max", duration_or_zero);
    let per_try_timeout = d.opt(&mut t, "per_try_timeout", Decoder::duration);
    let backoff = d.opt(&mut t, "backoff", |d, n, p| {
        let mut b = d.table(n, p)?;
        let base = d.opt(&mut b, "base", Decoder::duration);
        let max = d.opt(&mut b, "max", Decoder::duration);
        d.finish(b);
        Some((base, max))
    });
    let budget = d.opt(&mut t, "budget", |d, n, p| {
        let mut b = d.table(n, p)?;
        let ratio = d.opt(&mut b, "ratio", Decoder::percent);
        let min = d.opt(&mut b, "min_per_second", |d, n, p| {
            d.int_in(n, p, 0, 100_000)
        });
        let window = d.opt(&mut b, "window", Decoder::duration);
        let concurrent = d.opt(&mut b, "max_concurrent_ratio", Decoder::percent);
        let min_concurrent = d.opt(&mut b, "min_concurrent", |d, n, p| {
            d.int_in(n, p, 0, 100_000)
        });
        d.finish(b);
        Some((ratio, min, window, concurrent, min_concurrent))
    });
    let idempotent = d.opt(&mut t, "idempotent", Decoder::bool);
    let buffer_bytes = d.opt(&mut t, "buffer_bytes", Decoder::size);
    d.finish(t);
    let (base, max) = backoff.unwrap_or((None, None));
    let (ratio, min, window, concurrent, min_concurrent) =
        budget.unwrap_or((None, None, None, None, None));
    let def = RetryPolicy::default();
    let policy = RetryPolicy {
        attempts: attempts.map_or(def.attempts, |a| a as u32),
        retry_on: retry_on.unwrap_or(def.retry_on),
        statuses: statuses.unwrap_or(def.statuses),
        grpc_statuses: grpc_statuses.unwrap_or(def.grpc_statuses),
        retry_after_max: retry_after_max.unwrap_or(def.retry_after_max),
        per_try_timeout,
        backoff_base: base.unwrap_or(def.backoff_base),
        backoff_max: max.unwrap_or(def.backoff_max),
        budget_ratio: ratio.unwrap_or(def.budget_ratio),
        budget_min_per_second: min.map_or(def.budget_min_per_second, |m| m as u32),
        budget_window: window.unwrap_or(def.budget_window),
        budget_max_concurrent_ratio: concurrent.unwrap_or(def.budget_max_concurrent_ratio),
        budget_min_concurrent: min_concurrent.map_or(def.budget_min_concurrent, |m| m as u32),
        idempotent: idempotent.unwrap_or(def.idempotent),
        buffer_bytes: buffer_bytes.unwrap_or(def.buffer_bytes),
    };
    if policy.retry_on.contains(&RetryOn::Status) && policy.statuses.is_empty() {
        d.error_help(
            node.loc_of(&["statuses", "retry_on"]),
            &format!("{path}.statuses"),
            "retry_on has `status` but no statuses are listed",
            "add `statuses = [409, 429]`, or drop `status` from retry_on",
        );
    }
    if policy.backoff_base > policy.backoff_max {
        d.error(
            node.loc_of(&["backoff.base", "backoff.max", "backoff"]),
            &format!("{path}.backoff"),
            format!(
                "base ({}) must not exceed max ({})",
                format_duration(policy.backoff_base),
                format_duration(policy.backoff_max)
            ),
        );
    }
    Some(policy)
}

fn decode_match(d: &mut Decoder<'_>, node: &Node, path: &str) -> Option<RouteMatch> {
    let mut t = d.table(node, path)?;
    let hosts = d.opt(&mut t, "hosts", |d, n, p| d.list(n, p, decode_host));
    let path_match = d.opt(&mut t, "path", decode_path_match);
    let methods = d.opt(&mut t, "methods", |d, n, p| d.list(n, p, decode_method));
    let headers = d.opt(&mut t, "headers", |d, n, p| {
        d.list(n, p, decode_header_match)
    });
    d.finish(t);
    Some(RouteMatch {
        hosts: hosts.unwrap_or_default(),
        path: path_match,
        methods: methods.unwrap_or_default(),
        headers: headers.unwrap_or_default(),
    })
}

fn decode_host(d: &mut Decoder<'_>, node: &Node, path: &str) -> Option<HostPattern> {
    let s = d.string(node, path)?.to_ascii_lowercase();
    if let Some(rest) = s.strip_prefix("*.") {
        if rest.is_empty() || rest.contains('*') {
            d.error(node.loc, path, format!("`{s}` is not a valid host pattern"));
            return None;
        }
        return Some(HostPattern::Suffix(format!(".{rest}")));
    }
    if s.contains(':') {
        let bare = s.rsplit_once(':').map_or(s.as_str(), |(h, _)| h);
        d.error_help(
            node.loc,
            path,
            format!("`{s}` has a port, but hosts are matched without one"),
            format!("write `{bare}`"),
        );
        return None;
    }
    if s.is_empty() || s.contains('*') || s.contains('/') {
        d.error_help(
            node.loc,
            path,
            format!("`{s}` is not a valid host"),
            "write an exact host `api.example.com` or a wildcard `*.example.com`",
        );
        return None;
    }
    Some(HostPattern::Exact(s))
}

fn decode_method(d: &mut Decoder<'_>, node: &Node, path: &str) -> Option<String> {
    let s = d.string(node, path)?;
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_uppercase()) {
        d.error_help(
            node.loc,
            path,
            format!("`{s}` is not an HTTP method"),
            format!("methods are upper case, e.g. `{}`", s.to_ascii_uppercase()),
        );
        return None;
    }
    Some(s)
}

/// Exactly one of `keys` must be present in table `t`; returns which.
fn one_of<'n>(
    d: &mut Decoder<'_>,
    t: &Table<'n>,
    node: &'n Node,
    keys: &[&'static str],
) -> Option<(&'static str, &'n Node)> {
    let Value::Map(entries) = &node.value else {
        return None;
    };
    let found: Vec<_> = keys
        .iter()
        .filter_map(|k| {
            entries
                .iter()
                .find(|(ek, _, _)| ek == k)
                .map(|(_, _, n)| (*k, n))
        })
        .collect();
    match found.as_slice() {
        [one] => Some(*one),
        [] => {
            d.error_help(
                t.loc,
                t.path(),
                format!("one of {} is required", keys.join(", ")),
                format!("for example `{{ {} = ... }}`", keys[0]),
            );
            None
        }
        _ => {
            d.error(
                t.loc,
                t.path(),
                format!("only one of {} may be set", keys.join(", ")),
            );
            None
        }
    }
}

fn decode_path_match(d: &mut Decoder<'_>, node: &Node, path: &str) -> Option<PathMatch> {
    if let Value::Str(s) = &node.value {
        d.error_help(
            node.loc,
            path,
            "expected a table with exact, prefix or regex",
            format!("write `path = {{ prefix = \"{s}\" }}` or `{{ exact = \"{s}\" }}`"),
        );
        return None;
    }
    let mut t = d.table(node, path)?;
    let which = one_of(d, &t, node, &["prefix", "exact", "regex"]);
    let exact = d.opt(&mut t, "exact", abs_path);
    let prefix = d.opt(&mut t, "prefix", abs_path);
    let regex = d.opt(&mut t, "regex", Decoder::whole_regex);
    d.finish(t);
    match which?.0 {
        "exact" => exact.map(PathMatch::Exact),
        "prefix" => prefix.map(PathMatch::Prefix),
        _ => regex.map(PathMatch::Regex),
    }
}

fn abs_path(d: &mut Decoder<'_>, node: &Node, path: &str) -> Option<String> {
    let s = d.string(node, path)?;
    if !s.starts_with('/') {
        d.error_help(
            node.loc,
            path,
            format!("`{s}` must start with `/`"),
            format!("write `/{s}`"),
        );
        return None;
    }
    Some(s)
}

pub(crate) fn header_name(d: &mut Decoder<'_>, node: &Node, path: &str) -> Option<String> {
    let s = d.string(node, path)?.to_ascii_lowercase();
    if http::HeaderName::from_bytes(s.as_bytes()).is_err() {
        d.error(node.loc, path, format!("`{s}` is not a valid header name"));
        return None;
    }
    Some(s)
}

pub(crate) fn header_value(d: &mut Decoder<'_>, node: &Node, path: &str) -> Option<String> {
    let s = d.string(node, path)?;
    if http::HeaderValue::from_str(&s).is_err() {
        d.error(
            node.loc,
            path,
            "not a valid header value (control characters?)",
        );
        return None;
    }
    Some(s)
}

pub(crate) fn decode_header_match(
    d: &mut Decoder<'_>,
    node: &Node,
    path: &str,
) -> Option<HeaderMatch> {
    let mut t = d.table(node, path)?;
    let which = one_of(d, &t, node, &["exact", "present", "regex"]);
    let name = d.req(&mut t, "name", header_name);
    let exact = d.opt(&mut t, "exact", Decoder::string);
    let present = d.opt(&mut t, "present", Decoder::bool);
    let regex = d.opt(&mut t, "regex", Decoder::regex);
    d.finish(t);
    let rule = match which?.0 {
        "exact" => HeaderRule::Exact(exact?),
        "present" => {
            if present == Some(false) {
                d.error(
                    node.loc_of(&["present"]),
                    &format!("{path}.present"),
                    "only `present = true` is supported",
                );
                return None;
            }
            HeaderRule::Present
        }
        _ => HeaderRule::Regex(regex?),
    };
    Some(HeaderMatch { name: name?, rule })
}

fn decode_rewrite(d: &mut Decoder<'_>, node: &Node, path: &str) -> Option<Rewrite> {
    let mut t = d.table(node, path)?;
    let rw = Rewrite {
        strip_prefix: d.opt(&mut t, "strip_prefix", abs_path),
        add_prefix: d.opt(&mut t, "add_prefix", abs_path),
    };
    d.finish(t);
    Some(rw)
}

fn decode_header_ops(d: &mut Decoder<'_>, node: &Node, path: &str) -> Option<HeaderOps> {
    let mut t = d.table(node, path)?;
    let set = d.opt(&mut t, "set", header_table);
    let remove = d.opt(&mut t, "remove", |d, n, p| d.list(n, p, header_name));
    d.finish(t);
    Some(HeaderOps {
        set: set.unwrap_or_default(),
        remove: remove.unwrap_or_default(),
    })
}

const NO_ENDPOINTS_HELP: &str = "list endpoints, or find them with `discovery = { file = \"targets.json\" }` or `discovery = { srv = \"_http._tcp.name\" }`";

fn decode_cluster(d: &mut Decoder<'_>, node: &Node, path: &str) -> Option<Cluster> {
    let mut t = d.table(node, path)?;
    let name = d.req(&mut t, "name", name_field);
    // With discovery, the config's own list may be missing or empty: what
    // discovery finds is the cluster.
    let discovers = t.has("discovery");
    let listed = t.has("endpoints");
    let endpoints = d.opt(&mut t, "endpoints", |d, n, p| {
        let list = d.list(n, p, decode_endpoint)?;
        if !discovers && matches!(&n.value, Value::Seq(items) if items.is_empty()) {
            d.error_help(
                n.loc,
                p,
                "at least one endpoint is required",
                NO_ENDPOINTS_HELP,
            );
        }
        Some(list)
    });
    let endpoints = match endpoints {
        None if discovers && !listed => Some(Vec::new()),
        None if !listed => {
            d.error_help(
                t.loc,
                &crate::diag::join_path(path, "endpoints"),
                "missing required field",
                NO_ENDPOINTS_HELP,
            );
            None
        }
        other => other,
    };
    let discovery = d.opt(&mut t, "discovery", decode_discovery);
    let dns_refresh = d.opt(&mut t, "dns_refresh", Decoder::duration);
    let balancer = d.opt(&mut t, "balancer", decode_balancer);
    let protocol = d.opt(&mut t, "protocol", |d, n, p| {
        d.choice(n, p, &["http1", "http2"])
    });
    let connect_timeout = d.opt(&mut t, "connect_timeout", Decoder::duration);
    let timeout = d.opt(&mut t, "timeout", Decoder::duration);
    let pool = d.opt(&mut t, "pool", decode_pool);
    let health_check = d.opt(&mut t, "health_check", decode_health_check);
    let outlier_detection = d.opt(&mut t, "outlier_detection", decode_outlier);
    let circuit_breaker = d.opt(&mut t, "circuit_breaker", |d, n, p| {
        let mut b = d.table(n, p)?;
        let endpoint = d.opt(&mut b, "endpoint", decode_breaker);
        let cluster = d.opt(&mut b, "cluster", decode_breaker);
        d.finish(b);
        Some(CircuitBreakers { endpoint, cluster })
    });
    let limits = d.opt(&mut t, "limits", decode_cluster_limits);
    let slow_start = d.opt(&mut t, "slow_start", decode_slow_start);
    let locality = d.opt(&mut t, "locality", decode_locality);
    let concurrency = d.opt(&mut t, "concurrency", decode_concurrency);
    let host_header = d.opt(&mut t, "host_header", |d, n, p| {
        d.choice(n, p, &["preserve", "endpoint"])
    });
    let host_rewrite = d.opt(&mut t, "host_rewrite", Decoder::string);
    let stall_detection = d.opt(&mut t, "stall_detection", decode_stall_detection);
    let faults = d.opt(&mut t, "faults", |d, n, p| {
        d.list(n, p, decode_fault::decode_upstream_fault)
    });
    d.finish(t);
    let endpoints = endpoints?;
    let hashing = matches!(
        balancer.as_ref().map(|b| b.kind),
        Some(BalancerKind::RingHash | BalancerKind::Maglev)
    );
    if hashing && slow_start.is_some() {
        d.error_help(
            node.loc_of(&["slow_start"]),
            &format!("{path}.slow_start"),
            "slow start changes weights, which moves keys between endpoints with ring_hash or maglev",
            "use slow_start with round_robin, least_request or peak_ewma",
        );
    }
    let host_header = match (host_header, host_rewrite) {
        (Some(_), Some(_)) => {
            d.error(
                node.loc_of(&["host_rewrite"]),
                &format!("{path}.host_rewrite"),
                "set either host_header or host_rewrite, not both",
            );
            HostHeader::Preserve
        }
        (_, Some(v)) => HostHeader::Value(v),
        (Some("endpoint"), None) => HostHeader::Endpoint,
        _ => HostHeader::Preserve,
    };
    Some(Cluster {
        name: name?,
        endpoints,
        discovery,
        dns_refresh: dns_refresh.unwrap_or(Duration::from_secs(30)),
        balancer: balancer.unwrap_or(BalancerConfig {
            kind: BalancerKind::RoundRobin,
            hash_on: None,
        }),
        protocol: match protocol {
            Some("http2") => UpstreamProtocol::Http2,
            _ => UpstreamProtocol::Http1,
        },
        connect_timeout: connect_timeout.unwrap_or(Duration::from_secs(2)),
        timeout: timeout.unwrap_or(Duration::from_secs(30)),
        pool: pool.unwrap_or(Pool {
            max_idle_per_endpoint: 64,
            idle_timeout: Duration::from_secs(90),
        }),
        health_check,
        outlier_detection,
        circuit_breaker: circuit_breaker.unwrap_or_default(),
        limits: limits.unwrap_or_default(),
        slow_start,
        locality: locality.unwrap_or_default(),
        concurrency,
        host_header,
        stall_detection: stall_detection.unwrap_or(Some(StallDetection::default())),
        faults: faults.unwrap_or_default(),
    })
}

/// `stall_detection = false`, or `{ factor = 8, min = "50ms" }`.
fn decode_stall_detection(
    d: &mut Decoder<'_>,
    n: &Node,
    p: &str,
) -> Option<Option<StallDetection>> {
    if let Value::Bool(on) = &n.value {
        return Some(on.then(StallDetection::default));
    }
    let mut t = d.table(n, p)?;
    let factor = d.opt(&mut t, "factor", |d, n, p| number_in(d, n, p, 2.0, 1000.0));
    let min = d.opt(&mut t, "min", Decoder::duration);
    d.finish(t);
    let default = StallDetection::default();
    Some(Some(StallDetection {
        factor: factor.map_or(default.factor, |f| f as u32),
        min: min.unwrap_or(default.min),
    }))
}

fn decode_endpoint(d: &mut Decoder<'_>, node: &Node, path: &str) -> Option<Endpoint> {
    let (address, weight, zone, region, priority) = if let Value::Str(_) = node.value {
        (d.string(node, path), Some(1), None, None, 0)
    } else {
        let mut t = d.table(node, path)?;
        let address = d.req(&mut t, "address", Decoder::string);
        let weight = d
            .opt(&mut t, "weight", |d, n, p| d.int_in(n, p, 1, 1000))
            .map_or(Some(1), |w| Some(w as u32));
        let zone = d.opt(&mut t, "zone", Decoder::string);
        let region = d.opt(&mut t, "region", Decoder::string);
        let priority = d
            .opt(&mut t, "priority", |d, n, p| d.int_in(n, p, 0, 9))
            .map_or(0, |v| v as u32);
        d.finish(t);
        (address, weight, zone, region, priority)
    };
    let address = address?;
    if let Some(port) = crate::diag::port_out_of_range(&address) {
        d.error_help(
            node.loc_of(&["address"]),
            path,
            format!("port {port} is out of range (1-65535)"),
            "for example `10.0.0.7:8080` or `catalog.internal:8080`",
        );
        return None;
    }
    let Some((host, port)) = split_host_port(&address) else {
        d.error_help(
            node.loc_of(&["address"]),
            path,
            format!("`{address}` is not host:port"),
            "for example `10.0.0.7:8080` or `catalog.internal:8080`",
        );
        return None;
    };
    Some(Endpoint {
        host,
        port,
        address,
        weight: weight?,
        zone,
        region,
        priority,
    })
}

/// `{ file = "targets.json" }`, `{ srv = "_http._tcp.orders.svc" }`, or
/// both, with the SRV queries' `nameserver` optionally.
fn decode_discovery(d: &mut Decoder<'_>, node: &Node, path: &str) -> Option<EndpointDiscovery> {
    let mut t = d.table(node, path)?;
    let file = d.opt(&mut t, "file", targets_file);
    let srv = d.opt(&mut t, "srv", srv_name);
    let nameserver = d.opt(&mut t, "nameserver", nameserver);
    let (has_file, has_srv, has_nameserver) = (t.has("file"), t.has("srv"), t.has("nameserver"));
    d.finish(t);
    if !has_file && !has_srv {
        d.error_help(
            node.loc,
            path,
            "discovery needs a source",
            "set `file` (a Prometheus file_sd file), `srv` (a DNS SRV name), or both",
        );
        return None;
    }
    if has_nameserver && !has_srv {
        d.error_help(
            node.loc_of(&["nameserver"]),
            &format!("{path}.nameserver"),
            "`nameserver` is where SRV queries go, and `srv` is not set",
            "add `srv = \"_http._tcp.name\"`, or remove `nameserver`",
        );
    }
    Some(EndpointDiscovery {
        file: if has_file { Some(file?) } else { None },
        srv: if has_srv { Some(srv?) } else { None },
        nameserver,
    })
}

/// A file_sd path: its extension says how it is read, as Prometheus does.
fn targets_file(d: &mut Decoder<'_>, node: &Node, path: &str) -> Option<String> {
    let s = d.string(node, path)?;
    if crate::file_sd::TargetsFormat::from_path(std::path::Path::new(&s)).is_none() {
        d.error_help(
            node.loc,
            path,
            format!("`{s}` is neither a .json nor a .yaml file"),
            "name the targets file *.json, *.yaml or *.yml (Prometheus file_sd formats)",
        );
        return None;
    }
    Some(s)
}

/// A DNS name for SRV lookup: labels of 1 to 63 letters, digits, `-` or
/// `_`, 253 characters in all; one trailing dot is allowed.
fn srv_name(d: &mut Decoder<'_>, node: &Node, path: &str) -> Option<String> {
    let s = d.string(node, path)?;
    let name = s.strip_suffix('.').unwrap_or(&s);
    let label_ok = |l: &str| {
        (1..=63).contains(&l.len())
            && l.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    };
    if name.is_empty() || name.len() > 253 || !name.split('.').all(label_ok) {
        d.error_help(
            node.loc,
            path,
            format!("`{s}` is not a DNS name"),
            "for example `_http._tcp.orders.default.svc.cluster.local` or `orders.service.consul`",
        );
        return None;
    }
    Some(name.to_string())
}

/// `ip:port`, or an IP alone for port 53.
fn nameserver(d: &mut Decoder<'_>, node: &Node, path: &str) -> Option<SocketAddr> {
    let s = d.string(node, path)?;
    if let Ok(ip) = s.parse::<std::net::IpAddr>() {
        return Some(SocketAddr::new(ip, 53));
    }
    d.socket_addr(node, path)
}

/// Splits `host:port` or `[v6]:port`.
pub(crate) fn split_host_port(s: &str) -> Option<(String, u16)> {
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return (addr.port() != 0).then(|| (addr.ip().to_string(), addr.port()));
    }
    let (host, port) = s.rsplit_once(':')?;
    let port: u16 = port.parse().ok().filter(|p| *p > 0)?;
    let valid = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
    valid.then(|| (host.to_string(), port))
}

fn decode_balancer(d: &mut Decoder<'_>, node: &Node, path: &str) -> Option<BalancerConfig> {
    let mut t = d.table(node, path)?;
    let kind = d.opt(&mut t, "kind", |d, n, p| {
        d.choice(
            n,
            p,
            &[
                "round_robin",
                "least_request",
                "peak_ewma",
                "ring_hash",
                "maglev",
            ],
        )
    });
    let hash_on_written =
        matches!(&node.value, Value::Map(m) if m.iter().any(|(k, _, _)| k == "hash_on"));
    let hash_on = d.opt(&mut t, "hash_on", decode_hash_on);
    d.finish(t);
    let kind = match kind.unwrap_or("round_robin") {
        "least_request" => BalancerKind::LeastRequest,
        "peak_ewma" => BalancerKind::PeakEwma,
        "ring_hash" => BalancerKind::RingHash,
        "maglev" => BalancerKind::Maglev,
        _ => BalancerKind::RoundRobin,
    };
    let hashing = matches!(kind, BalancerKind::RingHash | BalancerKind::Maglev);
    if hashing && hash_on.is_none() && !hash_on_written {
        d.error_help(
            node.loc_of(&["kind"]),
            &format!("{path}.hash_on"),
            "ring_hash and maglev need a hash key",
            "add `hash_on = \"client_ip\"`, `\"path\"`, `{ header = \"x-user\" }` or `{ cookie = \"session\" }`",
        );
    }
    if !hashing && hash_on.is_some() {
        d.error(
            node.loc_of(&["hash_on"]),
            &format!("{path}.hash_on"),
            "hash_on is only used by the ring_hash and maglev balancers",
        );
    }
    Some(BalancerConfig { kind, hash_on })
}

fn decode_hash_on(d: &mut Decoder<'_>, node: &Node, path: &str) -> Option<HashOn> {
    if let Value::Str(_) = node.value {
        return match d.choice(node, path, &["path", "client_ip"])? {
            "path" => Some(HashOn::Path),
            _ => Some(HashOn::ClientIp),
        };
    }
    let mut t = d.table(node, path)?;
    let which = one_of(d, &t, node, &["header", "cookie"]);
    let header = d.opt(&mut t, "header", header_name);
    let cookie = d.opt(&mut t, "cookie", Decoder::string);
    d.finish(t);
    match which?.0 {
        "header" => header.map(HashOn::Header),
        _ => cookie.map(HashOn::Cookie),
    }
}

fn decode_pool(d: &mut Decoder<'_>, node: &Node, path: &str) -> Option<Pool> {
    let mut t = d.table(node, path)?;
    let pool = Pool {
        max_idle_per_endpoint: d
            .opt(&mut t, "max_idle_per_endpoint", |d, n, p| {
                d.int_in(n, p, 0, 100_000)
            })
            .map_or(64, |v| v as usize),
        idle_timeout: d
            .opt(&mut t, "idle_timeout", Decoder::duration)
            .unwrap_or(Duration::from_secs(90)),
    };
    d.finish(t);
    Some(pool)
}

fn decode_health_check(d: &mut Decoder<'_>, node: &Node, path: &str) -> Option<HealthCheck> {
    let mut t = d.table(node, path)?;
    let hc_path = d.req(&mut t, "path", abs_path);
    let interval = d.opt(&mut t, "interval", Decoder::duration);
    let jitter = d.opt(&mut t, "jitter", Decoder::duration);
    let timeout = d.opt(&mut t, "timeout", Decoder::duration);
    let healthy = d.opt(&mut t, "healthy_threshold", |d, n, p| {
        d.int_in(n, p, 1, 100)
    });
    let unhealthy = d.opt(&mut t, "unhealthy_threshold", |d, n, p| {
        d.int_in(n, p, 1, 100)
    });
    d.finish(t);
    let hc = HealthCheck {
        path: hc_path?,
        interval: interval.unwrap_or(Duration::from_secs(5)),
        jitter: jitter.unwrap_or(Duration::from_millis(500)),
        timeout: timeout.unwrap_or(Duration::from_secs(1)),
        healthy_threshold: healthy.map_or(2, |v| v as u32),
        unhealthy_threshold: unhealthy.map_or(3, |v| v as u32),
    };
    if hc.timeout > hc.interval {
        d.error(
            node.loc_of(&["timeout", "interval"]),
            &format!("{path}.timeout"),
            format!(
                "the probe timeout ({}) must not exceed the interval ({})",
                format_duration(hc.timeout),
                format_duration(hc.interval)
            ),
        );
    }
    Some(hc)
}

/// Checks that span sections: unique names and addresses, references.
pub(crate) fn cross_check(d: &mut Decoder<'_>, root: &Node, config: &Config) {
    // Locations for cross-section errors come from the tree, by path.
    let loc_of = |section: &str, index: usize, key: &str| {
        let Value::Map(entries) = &root.value else {
            return root.loc;
        };
        let Some((_, sloc, snode)) = entries.iter().find(|(k, _, _)| k == section) else {
            return root.loc;
        };
        let Value::Seq(items) = &snode.value else {
            return *sloc;
        };
        let Some(item) = items.get(index) else {
            return *sloc;
        };
        match &item.value {
            Value::Map(fields) => fields
                .iter()
                .find(|(k, _, _)| k == key)
                .map_or(item.loc, |(_, _, n)| n.loc),
            _ => item.loc,
        }
    };

    let mut seen = HashSet::new();
    let mut addrs = HashSet::new();
    for (i, l) in config.listeners.iter().enumerate() {
        if !seen.insert(l.name.as_str()) {
            d.error(
                loc_of("listeners", i, "name"),
                &format!("listeners[{i}].name"),
                format!("duplicate listener name `{}`", l.name),
            );
        }
        // Port 0 asks the OS for a free port, so it never collides.
        if l.listen.port() != 0 && (!addrs.insert(l.listen) || l.listen == config.admin.listen) {
            d.error(
                loc_of("listeners", i, "listen"),
                &format!("listeners[{i}].listen"),
                format!("address {} is used twice", l.listen),
            );
        }
    }
    // References are checked against every name written in the file, so an
    // item that failed to decode does not also make its references "unknown".
    let raw_listeners = raw_names(root, "listeners");
    let raw_clusters = raw_names(root, "clusters");
    let listener_names: Vec<&str> = raw_listeners.iter().map(String::as_str).collect();
    let raw_routes = raw_names(root, "routes");
    let route_names: Vec<&str> = raw_routes.iter().map(String::as_str).collect();
    let cluster_names: Vec<&str> = raw_clusters.iter().map(String::as_str).collect();

    let mut seen = HashSet::new();
    for (i, c) in config.clusters.iter().enumerate() {
        if !seen.insert(c.name.as_str()) {
            d.error(
                loc_of("clusters", i, "name"),
                &format!("clusters[{i}].name"),
                format!("duplicate cluster name `{}`", c.name),
            );
        }
    }
    let mut seen = HashSet::new();
    for (i, r) in config.routes.iter().enumerate() {
        if !seen.insert(r.name.as_str()) {
            d.error(
                loc_of("routes", i, "name"),
                &format!("routes[{i}].name"),
                format!("duplicate route name `{}`", r.name),
            );
        }
        if !cluster_names.contains(&r.cluster.as_str()) {
            let loc = loc_of("routes", i, "cluster");
            let path = format!("routes[{i}].cluster");
            let msg = format!("unknown cluster `{}`", r.cluster);
            match closest(&r.cluster, &cluster_names) {
                Some(s) => d.error_help(loc, &path, msg, format!("did you mean `{s}`?")),
                None if cluster_names.is_empty() => {
                    d.error_help(loc, &path, msg, "define it under [[clusters]]")
                }
                None => d.error_help(
                    loc,
                    &path,
                    msg,
                    format!("defined clusters: {}", cluster_names.join(", ")),
                ),
            }
        }
        for (j, l) in r.listeners.iter().enumerate() {
            if !listener_names.contains(&l.as_str()) {
                let path = format!("routes[{i}].listeners[{j}]");
                let loc = root.loc_of(&[&path]);
                let msg = format!("unknown listener `{l}`");
                match closest(l, &listener_names) {
                    Some(s) => d.error_help(loc, &path, msg, format!("did you mean `{s}`?")),
                    None => d.error(loc, &path, msg),
                }
            }
        }
        if config.redis.is_none() {
            if let Some(j) = r.rate_limits.iter().position(|l| l.global) {
                let path = format!("routes[{i}].rate_limits[{j}].global");
                d.error_help(
                    root.loc_of(&[&path]),
                    &path,
                    "a global limit needs a Redis server",
                    "add `[redis] url = \"redis://127.0.0.1:6379\"`",
                );
            }
        }
        let fallback_cluster = r.fallback.as_ref().and_then(|f| f.cluster.as_deref());
        if let Some(fc) = fallback_cluster {
            let path = format!("routes[{i}].fallback.cluster");
            let loc = root.loc_of(&[&path]);
            if !cluster_names.contains(&fc) {
                let msg = format!("unknown cluster `{fc}`");
                match closest(fc, &cluster_names) {
                    Some(s) => d.error_help(loc, &path, msg, format!("did you mean `{s}`?")),
                    None => d.error(loc, &path, msg),
                }
            } else if fc == r.cluster {
                d.error(
                    loc,
                    &path,
                    "the fallback cluster is the route's own cluster",
                );
            }
        }
    }
    let slo_names: Vec<&str> = config.slos.iter().map(|s| s.name.as_str()).collect();
    for (i, r) in config.routes.iter().enumerate() {
        decode_release::check_route(d, root, i, r, &cluster_names, &slo_names);
    }
    for (i, c) in config.clusters.iter().enumerate() {
        decode_fault::check_cluster(d, root, i, c);
    }
    let raw_slos = raw_names(root, "slos");
    decode_slo::check_slos(d, root, config, &raw_slos, &route_names, &cluster_names);
}

/// The `name` strings of the items of list `section`, as written.
fn raw_names(root: &Node, section: &str) -> Vec<String> {
    let Value::Map(entries) = &root.value else {
        return Vec::new();
    };
    let Some((
        _,
        _,
        Node {
            value: Value::Seq(items),
            ..
        },
    )) = entries.iter().find(|(k, _, _)| k == section)
    else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|item| match &item.value {
            Value::Map(fields) => fields.iter().find_map(|(k, _, v)| match (&**k, &v.value) {
                ("name", Value::Str(s)) => Some(s.clone()),
                _ => None,
            }),
            _ => None,
        })
        .collect()
}

fn decode_outlier(d: &mut Decoder<'_>, node: &Node, path: &str) -> Option<OutlierDetection> {
    let mut t = d.table(node, path)?;
    let count = |d: &mut Decoder<'_>, n: &Node, p: &str| d.int_in(n, p, 0, 1000).map(|v| v as u32);
    let o = OutlierDetection {
        consecutive_5xx: d.opt(&mut t, "consecutive_5xx", count).unwrap_or(5),
        consecutive_gateway_errors: d
            .opt(&mut t, "consecutive_gateway_errors", count)
            .unwrap_or(5),
        interval: d
            .opt(&mut t, "interval", Decoder::duration)
            .unwrap_or(Duration::from_secs(10)),
        base_ejection_time: d
            .opt(&mut t, "base_ejection_time", Decoder::duration)
            .unwrap_or(Duration::from_secs(30)),
        max_ejection_time: d
            .opt(&mut t, "max_ejection_time", Decoder::duration)
            .unwrap_or(Duration::from_secs(300)),
        max_ejection_percent: d
            .opt(&mut t, "max_ejection_percent", |d, n, p| {
                d.int_in(n, p, 0, 100)
            })
            .map_or(50, |v| v as u32),
        success_rate_stdev_factor: d
            .opt(&mut t, "success_rate_stdev_factor", |d, n, p| {
                number_in(d, n, p, 0.0, 10.0)
            })
            .unwrap_or(1.9),
        success_rate_min_hosts: d
            .opt(&mut t, "success_rate_min_hosts", |d, n, p| {
                d.int_in(n, p, 2, 10_000)
            })
            .map_or(5, |v| v as u32),
        success_rate_min_requests: d
            .opt(&mut t, "success_rate_min_requests", |d, n, p| {
                d.int_in(n, p, 1, 1_000_000)
            })
            .map_or(100, |v| v as u64),
        latency_factor: d
            .opt(&mut t, "latency_factor", |d, n, p| {
                number_in(d, n, p, 0.0, 1000.0)
            })
            .unwrap_or(0.0),
        latency_min_hosts: d
            .opt(&mut t, "latency_min_hosts", |d, n, p| {
                d.int_in(n, p, 2, 10_000)
            })
            .map_or(3, |v| v as u32),
        latency_min_requests: d
            .opt(&mut t, "latency_min_requests", |d, n, p| {
                d.int_in(n, p, 1, 1_000_000)
            })
            .map_or(20, |v| v as u64),
    };
    d.finish(t);
    if o.latency_factor > 0.0 && o.latency_factor < 1.5 {
        d.error_help(
            node.loc_of(&["latency_factor"]),
            &format!("{path}.latency_factor"),
            format!(
                "{} would eject endpoints of ordinary speed",
                o.latency_factor
            ),
            "use 0 (off) or 1.5 and above; 2 to 5 is usual",
        );
    }
    if o.base_ejection_time > o.max_ejection_time {
        d.error(
            node.loc_of(&["base_ejection_time", "max_ejection_time"]),
            &format!("{path}.base_ejection_time"),
            "must not exceed max_ejection_time",
        );
    }
    Some(o)
}

/// A number (integer or float) within `min..=max`.
pub(crate) fn number_in(d: &mut Decoder<'_>, n: &Node, p: &str, min: f64, max: f64) -> Option<f64> {
    let v = match n.value {
        Value::Float(f) => f,
        Value::Int(i) => i as f64,
        _ => {
            d.error(n.loc, p, format!("expected a number from {min} to {max}"));
            return None;
        }
    };
    if (min..=max).contains(&v) {
        Some(v)
    } else {
        d.error(
            n.loc,
            p,
            format!("must be between {min} and {max}, got {v}"),
        );
        None
    }
}

/// A duration where `0s` (or `0`) is allowed and means "off".
pub(crate) fn duration_or_zero(d: &mut Decoder<'_>, n: &Node, p: &str) -> Option<Duration> {
    match &n.value {
        Value::Int(0) => Some(Duration::ZERO),
        Value::Str(s) if s.trim().trim_end_matches(|c: char| c.is_ascii_alphabetic()) == "0" => {
            Some(Duration::ZERO)
        }
        _ => d.duration(n, p),
    }
}

/// gRPC status names (RFC-style, as in grpc/status.h) and their codes.
const GRPC_CODES: [&str; 17] = [
    "ok",
    "cancelled",
    "unknown",
    "invalid_argument",
    "deadline_exceeded",
    "not_found",
    "already_exists",
    "permission_denied",
    "resource_exhausted",
    "failed_precondition",
    "aborted",
    "out_of_range",
    "unimplemented",
    "internal",
    "unavailable",
    "data_loss",
    "unauthenticated",
];

/// A gRPC status: a code from 0 to 16 or its name (`unavailable`).
fn grpc_code(d: &mut Decoder<'_>, n: &Node, p: &str) -> Option<u32> {
    if let Value::Int(_) = n.value {
        return d.int_in(n, p, 0, 16).map(|v| v as u32);
    }
    let name = d.choice(n, p, &GRPC_CODES)?;
    GRPC_CODES.iter().position(|c| *c == name).map(|i| i as u32)
}

fn decode_breaker(d: &mut Decoder<'_>, node: &Node, path: &str) -> Option<BreakerSettings> {
    let mut t = d.table(node, path)?;
    let b = BreakerSettings {
        consecutive_failures: d
            .opt(&mut t, "consecutive_failures", |d, n, p| {
                d.int_in(n, p, 0, 10_000)
            })
            .map_or(5, |v| v as u32),
        failure_ratio: d
            .opt(&mut t, "failure_ratio", Decoder::percent)
            .unwrap_or(0.5),
        slow_call_ratio: d
            .opt(&mut t, "slow_call_ratio", Decoder::percent)
            .unwrap_or(0.0),
        slow_call_threshold: d
            .opt(&mut t, "slow_call_threshold", Decoder::duration)
            .unwrap_or(Duration::from_secs(1)),
        min_requests: d
            .opt(&mut t, "min_requests", |d, n, p| {
                d.int_in(n, p, 1, 1_000_000)
            })
            .map_or(20, |v| v as u64),
        window: d
            .opt(&mut t, "window", Decoder::duration)
            .unwrap_or(Duration::from_secs(10)),
        base_open_time: d
            .opt(&mut t, "base_open_time", Decoder::duration)
            .unwrap_or(Duration::from_secs(5)),
        max_open_time: d
            .opt(&mut t, "max_open_time", Decoder::duration)
            .unwrap_or(Duration::from_secs(60)),
        half_open_probes: d
            .opt(&mut t, "half_open_probes", |d, n, p| {
                d.int_in(n, p, 1, 1000)
            })
            .map_or(3, |v| v as u32),
        ramp_time: d
            .opt(&mut t, "ramp_time", duration_or_zero)
            .unwrap_or(Duration::from_secs(10)),
    };
    let loc = t.loc;
    d.finish(t);
    if b.base_open_time > b.max_open_time {
        d.error(
            node.loc_of(&["base_open_time", "max_open_time"]),
            &format!("{path}.base_open_time"),
            "must not exceed max_open_time",
        );
    }
    if b.consecutive_failures == 0 && b.failure_ratio == 0.0 && b.slow_call_ratio == 0.0 {
        d.error_help(
            loc,
            path,
            "this breaker can never open",
            "set consecutive_failures, failure_ratio or slow_call_ratio, or remove the breaker",
        );
    }
    Some(b)
}

fn decode_cluster_limits(d: &mut Decoder<'_>, node: &Node, path: &str) -> Option<ClusterLimits> {
    let mut t = d.table(node, path)?;
    let cap =
        |d: &mut Decoder<'_>, n: &Node, p: &str| d.int_in(n, p, 0, 1_000_000).map(|v| v as u32);
    let limits = ClusterLimits {
        max_connections: d.opt(&mut t, "max_connections", cap),
        max_pending: d.opt(&mut t, "max_pending", cap),
        max_requests: d.opt(&mut t, "max_requests", cap),
        max_retries: d.opt(&mut t, "max_retries", cap),
    };
    d.finish(t);
    Some(limits)
}

fn decode_slow_start(d: &mut Decoder<'_>, node: &Node, path: &str) -> Option<SlowStart> {
    let mut t = d.table(node, path)?;
    let window = d.req(&mut t, "window", Decoder::duration);
    let aggression = d.opt(&mut t, "aggression", |d, n, p| {
        number_in(d, n, p, 0.1, 10.0)
    });
    let min_weight_percent = d.opt(&mut t, "min_weight_percent", |d, n, p| {
        d.int_in(n, p, 1, 100)
    });
    d.finish(t);
    Some(SlowStart {
        window: window?,
        aggression: aggression.unwrap_or(1.0),
        min_weight_percent: min_weight_percent.map_or(10, |v| v as u32),
    })
}

fn decode_locality(d: &mut Decoder<'_>, node: &Node, path: &str) -> Option<Locality> {
    let mut t = d.table(node, path)?;
    let def = Locality::default();
    let zone_aware = d.opt(&mut t, "zone_aware", Decoder::bool);
    let min_cluster_size = d.opt(&mut t, "min_cluster_size", |d, n, p| {
        d.int_in(n, p, 1, 100_000)
    });
    let fleet_zones = d.opt(&mut t, "fleet_zones", |d, n, p| {
        let Value::Map(entries) = &n.value else {
            d.error(n.loc, p, "expected a table of zone = share");
            return None;
        };
        let mut out = Vec::new();
        for (k, _, v) in entries {
            let share = number_in(d, v, &format!("{p}.{k}"), 0.0, 1e9)?;
            out.push((k.clone(), share));
        }
        Some(out)
    });
    let overprovisioning = d.opt(&mut t, "overprovisioning", |d, n, p| {
        number_in(d, n, p, 1.0, 10.0)
    });
    let failback_delay = d.opt(&mut t, "failback_delay", duration_or_zero);
    d.finish(t);
    Some(Locality {
        zone_aware: zone_aware.unwrap_or(def.zone_aware),
        min_cluster_size: min_cluster_size.map_or(def.min_cluster_size, |v| v as usize),
        fleet_zones: fleet_zones.unwrap_or_default(),
        overprovisioning: overprovisioning.unwrap_or(def.overprovisioning),
        failback_delay: failback_delay.unwrap_or(def.failback_delay),
    })
}

fn decode_hedge(d: &mut Decoder<'_>, node: &Node, path: &str) -> Option<Hedge> {
    let mut t = d.table(node, path)?;
    let delay = d.opt(&mut t, "delay", Decoder::duration);
    let percentile = d.opt(&mut t, "percentile", |d, n, p| {
        let v = d.percent(n, p)?;
        if v <= 0.0 || v >= 1.0 {
            d.error(n.loc, p, "must be above 0% and below 100%");
            return None;
        }
        Some(v)
    });
    let min_delay = d.opt(&mut t, "min_delay", Decoder::duration);
    let max_hedges = d.opt(&mut t, "max_hedges", |d, n, p| d.int_in(n, p, 1, 3));
    d.finish(t);
    if delay.is_some() == percentile.is_some() {
        // Both written: point at the second; neither: at the table.
        d.error_help(
            node.loc_of(&["percentile"]),
            path,
            "set exactly one of `delay` and `percentile`",
            "`delay = \"50ms\"` hedges after a fixed time; `percentile = \"95%\"` after the route's observed p95",
        );
    }
    Some(Hedge {
        delay,
        percentile,
        min_delay: min_delay.unwrap_or(Duration::from_millis(5)),
        max_hedges: max_hedges.map_or(1, |v| v as u32),
    })
}

fn decode_fallback(d: &mut Decoder<'_>, node: &Node, path: &str) -> Option<Fallback> {
    let mut t = d.table(node, path)?;
    let serve_stale = d.opt(&mut t, "serve_stale", |d, n, p| {
        let mut s = d.table(n, p)?;
        let max_entries = d.opt(&mut s, "max_entries", |d, n, p| {
            d.int_in(n, p, 1, 10_000_000)
        });
        let max_bytes = d.opt(&mut s, "max_bytes", Decoder::size);
        let max_entry_bytes = d.opt(&mut s, "max_entry_bytes", Decoder::size);
        let max_stale = d.opt(&mut s, "max_stale", Decoder::duration);
        d.finish(s);
        Some(ServeStale {
            max_entries: max_entries.map_or(1000, |v| v as usize),
            max_bytes: max_bytes.unwrap_or(16 * 1024 * 1024),
            max_entry_bytes: max_entry_bytes.unwrap_or(256 * 1024),
            max_stale: max_stale.unwrap_or(Duration::from_secs(3600)),
        })
    });
    let cluster = d.opt(&mut t, "cluster", Decoder::string);
    let response = d.opt(&mut t, "response", decode_static_response);
    let on_statuses = d.opt(&mut t, "on_statuses", |d, n, p| {
        d.list(n, p, |d, n, p| d.int_in(n, p, 100, 599).map(|s| s as u16))
    });
    let loc = t.loc;
    d.finish(t);
    if serve_stale.is_none() && cluster.is_none() && response.is_none() {
        d.error_help(
            loc,
            path,
            "a fallback needs serve_stale, cluster or response",
            "for example `response = { status = 503, body = \"try again later\" }`",
        );
    }
    Some(Fallback {
        serve_stale,
        cluster,
        response,
        on_statuses: on_statuses.unwrap_or_else(|| vec![500, 502, 503, 504]),
    })
}

fn decode_static_response(d: &mut Decoder<'_>, node: &Node, path: &str) -> Option<StaticResponse> {
    let mut t = d.table(node, path)?;
    let status = d.req(&mut t, "status", |d, n, p| d.int_in(n, p, 200, 599));
    let headers = d.opt(&mut t, "headers", header_table);
    let body = d.opt(&mut t, "body", Decoder::string);
    let body_file = d.opt(&mut t, "body_file", Decoder::string);
    d.finish(t);
    let body = match (body, body_file) {
        (Some(_), Some(_)) => {
            d.error(
                node.loc_of(&["body_file"]),
                &format!("{path}.body_file"),
                "set either body or body_file, not both",
            );
            StaticBody::Empty
        }
        (Some(b), None) => StaticBody::Inline(b),
        (None, Some(f)) => StaticBody::File(f.into()),
        (None, None) => StaticBody::Empty,
    };
    Some(StaticResponse {
        status: status? as u16,
        headers: headers.unwrap_or_default(),
        body,
    })
}

/// A table of header name = value (names and values validated).
pub(crate) fn header_table(
    d: &mut Decoder<'_>,
    n: &Node,
    p: &str,
) -> Option<Vec<(String, String)>> {
    let Value::Map(entries) = &n.value else {
        d.error(
            n.loc,
            p,
            format!(
                "expected a table of header = value, found {}",
                n.value.type_name()
            ),
        );
        return None;
    };
    let mut out = Vec::new();
    for (k, kloc, v) in entries {
        let kp = format!("{p}.{k}");
        let key_node = Node {
            value: Value::Str(k.clone()),
            loc: *kloc,
        };
        if let (Some(name), Some(value)) = (header_name(d, &key_node, &kp), header_value(d, v, &kp))
        {
            out.push((name, value));
        }
    }
    Some(out)
}

fn decode_rate_limit(d: &mut Decoder<'_>, node: &Node, path: &str) -> Option<RateLimit> {
    let mut t = d.table(node, path)?;
    let name = d.req(&mut t, "name", name_field);
    let rate = d.req(&mut t, "rate", |d, n, p| d.int_in(n, p, 1, 1_000_000_000));
    let per = d.opt(&mut t, "per", Decoder::duration);
    let burst = d.opt(&mut t, "burst", |d, n, p| d.int_in(n, p, 1, 1_000_000_000));
    let key = d.opt(&mut t, "key", |d, n, p| {
        d.list(n, p, |d, n, p| {
            let s = d.string(n, p)?;
            match s.as_str() {
                "client_ip" => Some(RateKey::ClientIp),
                "tenant" => Some(RateKey::Tenant),
                other => match other.strip_prefix("header:") {
                    Some(h) if http::HeaderName::from_bytes(h.as_bytes()).is_ok() => {
                        Some(RateKey::Header(h.to_ascii_lowercase()))
                    }
                    _ => {
                        d.error_help(
                            n.loc,
                            p,
                            format!("unknown rate-limit key `{other}`"),
                            "use `client_ip`, `tenant` or `header:NAME` (no key: one bucket for the route)",
                        );
                        None
                    }
                },
            }
        })
    });
    let dry_run = d.opt(&mut t, "dry_run", Decoder::bool);
    let max_keys = d.opt(&mut t, "max_keys", |d, n, p| d.int_in(n, p, 1, 100_000_000));
    let global = d.opt(&mut t, "global", Decoder::bool);
    let warm_up = d.opt(&mut t, "warm_up", |d, n, p| {
        let mut w = d.table(n, p)?;
        let factor = d.opt(&mut w, "cold_factor", |d, n, p| {
            number_in(d, n, p, 1.0, 100.0)
        });
        let period = d.req(&mut w, "period", Decoder::duration);
        d.finish(w);
        Some(WarmUpConfig {
            cold_factor: factor.unwrap_or(3.0),
            period: period?,
        })
    });
    d.finish(t);
    let rate = rate? as u64;
    Some(RateLimit {
        name: name?,
        rate,
        per: per.unwrap_or(Duration::from_secs(1)),
        burst: burst.map_or(rate, |b| b as u64),
        key: key.unwrap_or_default(),
        dry_run: dry_run.unwrap_or(false),
        max_keys: max_keys.map_or(100_000, |m| m as usize),
        global: global.unwrap_or(false),
        warm_up,
    })
}

fn decode_tenants(d: &mut Decoder<'_>, node: &Node, path: &str) -> Option<Tenants> {
    let mut t = d.table(node, path)?;
    let def = Tenants::default();
    let default = d.opt(&mut t, "default", name_field);
    let header = d.opt(&mut t, "header", header_name);
    let api_keys = d.opt(&mut t, "api_keys", |d, n, p| {
        let mut a = d.table(n, p)?;
        let header = d.opt(&mut a, "header", header_name);
        let keys = d.opt(&mut a, "keys", |d, n, p| d.list(n, p, decode_api_key));
        let file = d.opt(&mut a, "file", Decoder::string);
        d.finish(a);
        Some(ApiKeys {
            header: header.unwrap_or_else(|| "x-api-key".to_string()),
            keys: keys.unwrap_or_default(),
            file: file.map(Into::into),
        })
    });
    let jwt = d.opt(&mut t, "jwt", decode_jwt);
    let list = d.opt(&mut t, "list", |d, n, p| {
        d.list(n, p, |d, n, p| {
            let mut e = d.table(n, p)?;
            let name = d.req(&mut e, "name", name_field);
            let weight = d.opt(&mut e, "weight", |d, n, p| d.int_in(n, p, 1, 1000));
            d.finish(e);
            Some(TenantConfig {
                name: name?,
                weight: weight.map_or(1, |w| w as u32),
            })
        })
    });
    d.finish(t);
    Some(Tenants {
        default: default.unwrap_or(def.default),
        header,
        api_keys,
        jwt,
        list: list.unwrap_or_default(),
    })
}

/// One `{ tenant, sha256 }` API key entry.
pub(crate) fn decode_api_key(d: &mut Decoder<'_>, n: &Node, p: &str) -> Option<ApiKey> {
    let mut k = d.table(n, p)?;
    let tenant = d.req(&mut k, "tenant", name_field);
    let sha256 = d.req(&mut k, "sha256", |d, n, p| {
        let s = d.string(n, p)?.to_ascii_lowercase();
        if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
            Some(s)
        } else {
            d.error_help(
                n.loc,
                p,
                "expected the key's SHA-256 as 64 hex digits",
                "keys are stored hashed: `printf %s \"$KEY\" | sha256sum`",
            );
            None
        }
    });
    d.finish(k);
    Some(ApiKey {
        tenant: tenant?,
        sha256: sha256?,
    })
}

fn decode_jwt(d: &mut Decoder<'_>, node: &Node, path: &str) -> Option<Jwt> {
    let mut t = d.table(node, path)?;
    let header = d.opt(&mut t, "header", header_name);
    let claim = d.opt(&mut t, "claim", Decoder::string);
    let secrets = d.opt(&mut t, "hs256_secrets", |d, n, p| {
        d.list(n, p, |d, n, p| {
            let s = d.secret(n, p)?;
            if s.len() < 32 {
                d.error(n.loc, p, "an HS256 secret must be at least 32 bytes");
                return None;
            }
            Some(s)
        })
    });
    let jwks_file = d.opt(&mut t, "jwks_file", Decoder::string);
    let issuer = d.opt(&mut t, "issuer", Decoder::string);
    let audience = d.opt(&mut t, "audience", Decoder::string);
    let leeway = d.opt(&mut t, "leeway", duration_or_zero);
    // Secrets written but refused are reported where they are written.
    let t_has_secrets = t.has("hs256_secrets");
    let loc = t.loc;
    d.finish(t);
    let secrets: Vec<Secret> = secrets
        .unwrap_or_default()
        .into_iter()
        .map(Secret::new)
        .collect();
    if secrets.is_empty() && jwks_file.is_none() && !t_has_secrets {
        d.error_help(
            loc,
            path,
            "no key to verify tokens with",
            "set `hs256_secrets = [\"${JWT_SECRET}\"]` or `jwks_file = \"jwks.json\"`",
        );
    }
    Some(Jwt {
        header: header.unwrap_or_else(|| "authorization".to_string()),
        claim: claim.unwrap_or_else(|| "tenant".to_string()),
        hs256_secrets: secrets,
        jwks_file: jwks_file.map(Into::into),
        issuer,
        audience,
        leeway: leeway.unwrap_or(Duration::from_secs(30)),
    })
}

fn decode_remote_write(d: &mut Decoder<'_>, node: &Node, path: &str) -> Option<RemoteWrite> {
    let mut t = d.table(node, path)?;
    let url = d.req(&mut t, "url", |d, n, p| {
        let s = d.secret(n, p)?;
        if s.starts_with("http://") {
            Some(s)
        } else {
            d.error_help(
                n.loc,
                p,
                "not an http:// URL",
                "for example `http://prometheus:9090/api/v1/write` (https is not supported yet)",
            );
            None
        }
    });
    let interval = d.opt(&mut t, "interval", Decoder::duration);
    let timeout = d.opt(&mut t, "timeout", Decoder::duration);
    let labels = d.opt(&mut t, "labels", decode_slo::decode_labels);
    d.finish(t);
    Some(RemoteWrite {
        url: Secret::new(url?),
        interval: interval
            .unwrap_or(Duration::from_secs(15))
            .max(Duration::from_secs(1)),
        timeout: timeout.unwrap_or(Duration::from_secs(5)),
        labels: labels.unwrap_or_default(),
    })
}

fn decode_fleet(d: &mut Decoder<'_>, node: &Node, path: &str) -> Option<Fleet> {
    let mut t = d.table(node, path)?;
    let name = d.opt(&mut t, "name", name_field);
    let lease = d.opt(&mut t, "lease", Decoder::duration);
    let loc = t.loc;
    d.finish(t);
    let lease = lease.unwrap_or(Duration::from_secs(10));
    if lease < Duration::from_secs(1) || lease > Duration::from_secs(300) {
        d.error(
            loc,
            &format!("{path}.lease"),
            format!(
                "a lease must be from 1s to 5m, got {}",
                format_duration(lease)
            ),
        );
    }
    Some(Fleet {
        name: name.unwrap_or_else(|| "default".to_string()),
        lease,
    })
}

fn decode_redis(d: &mut Decoder<'_>, node: &Node, path: &str) -> Option<Redis> {
    let mut t = d.table(node, path)?;
    let url = d.req(&mut t, "url", |d, n, p| {
        let s = d.secret(n, p)?;
        if s.starts_with("redis://") || s.starts_with("rediss://") {
            Some(s)
        } else {
            d.error_help(
                n.loc,
                p,
                "not a Redis URL",
                "for example `redis://127.0.0.1:6379`",
            );
            None
        }
    });
    let timeout = d.opt(&mut t, "timeout", Decoder::duration);
    let replicas = d.opt(&mut t, "replicas", |d, n, p| d.int_in(n, p, 1, 10_000));
    let on_failure = d.opt(&mut t, "on_failure", |d, n, p| {
        d.choice(n, p, &["local", "open", "closed"])
    });
    let retry_after = d.opt(&mut t, "retry_after", Decoder::duration);
    d.finish(t);
    Some(Redis {
        url: Secret::new(url?),
        timeout: timeout.unwrap_or(Duration::from_millis(25)),
        replicas: replicas.map_or(1, |r| r as u32),
        on_failure: match on_failure {
            Some("open") => OnRedisFailure::Open,
            Some("closed") => OnRedisFailure::Closed,
            _ => OnRedisFailure::Local,
        },
        retry_after: retry_after.unwrap_or(Duration::from_secs(1)),
    })
}

fn decode_overload_guard(d: &mut Decoder<'_>, node: &Node, path: &str) -> Option<OverloadGuard> {
    let mut t = d.table(node, path)?;
    let max_memory = d.opt(&mut t, "max_memory", Decoder::size);
    let max_connections = d.opt(&mut t, "max_connections", |d, n, p| {
        d.int_in(n, p, 1, 100_000_000).map(|v| v as u64)
    });
    let shed_at = d.opt(&mut t, "shed_at", Decoder::percent);
    let close_at = d.opt(&mut t, "close_at", Decoder::percent);
    let refuse_at = d.opt(&mut t, "refuse_at", Decoder::percent);
    let loc = t.loc;
    d.finish(t);
    let g = OverloadGuard {
        max_memory,
        max_connections,
        shed_at: shed_at.unwrap_or(0.8),
        close_at: close_at.unwrap_or(0.9),
        refuse_at: refuse_at.unwrap_or(0.95),
    };
    if g.max_memory.is_none() && g.max_connections.is_none() {
        d.error_help(
            loc,
            path,
            "the overload guard watches nothing",
            "set `max_memory = \"2GiB\"` and/or `max_connections = 20000`",
        );
    }
    if !(g.shed_at <= g.close_at && g.close_at <= g.refuse_at) {
        // Point at the watermark that breaks the order.
        let first_break = if g.shed_at > g.close_at {
            ["close_at", "shed_at"]
        } else {
            ["refuse_at", "close_at"]
        };
        d.error(
            node.loc_of(&first_break),
            path,
            "watermarks must rise: shed_at <= close_at <= refuse_at",
        );
    }
    Some(g)
}

fn decode_concurrency(d: &mut Decoder<'_>, node: &Node, path: &str) -> Option<Concurrency> {
    let mut t = d.table(node, path)?;
    let count =
        |d: &mut Decoder<'_>, n: &Node, p: &str| d.int_in(n, p, 1, 1_000_000).map(|v| v as u32);
    let algorithm = d.opt(&mut t, "algorithm", |d, n, p| {
        d.choice(n, p, &["gradient", "aimd", "vegas", "fixed"])
    });
    let limit = d.opt(&mut t, "limit", count);
    let min_limit = d.opt(&mut t, "min_limit", count);
    let max_limit = d.opt(&mut t, "max_limit", count);
    let latency_target = d.opt(&mut t, "latency_target", Decoder::duration);
    let max_queue_len = d.opt(&mut t, "max_queue_len", |d, n, p| {
        d.int_in(n, p, 0, 1_000_000)
    });
    let tenant_quota = d.opt(&mut t, "tenant_quota", Decoder::percent);
    let classes = d.opt(&mut t, "classes", |d, n, p| {
        let mut c = d.table(n, p)?;
        let mut out = Vec::new();
        for (name, time, len) in [
            ("critical", 1_000, 1_000),
            ("default", 500, 1_000),
            ("sheddable", 100, 100),
        ] {
            let class = d.opt(&mut c, name, |d, n, p| {
                let mut q = d.table(n, p)?;
                let time = d.opt(&mut q, "max_queue_time", duration_or_zero);
                let len = d.opt(&mut q, "max_queue_len", |d, n, p| {
                    d.int_in(n, p, 0, 1_000_000)
                });
                d.finish(q);
                Some((time, len))
            });
            let (t, l) = class.unwrap_or((None, None));
            out.push(QueueClass {
                max_queue_time: t.unwrap_or(Duration::from_millis(time)),
                max_queue_len: l.map_or(len, |v| v as usize),
            });
        }
        d.finish(c);
        Some(out)
    });
    d.finish(t);
    let c = Concurrency {
        algorithm: match algorithm {
            Some("aimd") => ConcurrencyAlgorithm::Aimd,
            Some("vegas") => ConcurrencyAlgorithm::Vegas,
            Some("fixed") => ConcurrencyAlgorithm::Fixed,
            _ => ConcurrencyAlgorithm::Gradient,
        },
        limit: limit.unwrap_or(20),
        min_limit: min_limit.unwrap_or(3),
        max_limit: max_limit.unwrap_or(1_000),
        latency_target,
        max_queue_len: max_queue_len.map_or(1_000, |v| v as usize),
        classes: classes.unwrap_or_else(|| {
            vec![
                QueueClass {
                    max_queue_time: Duration::from_secs(1),
                    max_queue_len: 1_000,
                },
                QueueClass {
                    max_queue_time: Duration::from_millis(500),
                    max_queue_len: 1_000,
                },
                QueueClass {
                    max_queue_time: Duration::from_millis(100),
                    max_queue_len: 100,
                },
            ]
        }),
        tenant_quota,
    };
    if c.min_limit > c.max_limit || !(c.min_limit..=c.max_limit).contains(&c.limit) {
        d.error(
            node.loc_of(&["limit", "min_limit", "max_limit"]),
            path,
            format!(
                "limits must satisfy min_limit <= limit <= max_limit (got {} <= {} <= {})",
                c.min_limit, c.limit, c.max_limit
            ),
        );
    }
    Some(c)
}
