//! Decoding of async routes: the top-level `[jobs]` table (the queue's
//! backend, its file and durability, where clients read a job) and a
//! route's `[routes.async]` table (which requests become jobs, the queue's
//! limits, delivery, ordering and result callbacks), with the checks
//! between them (`check`).

use crate::decode::header_name;
use crate::diag::Decoder;
use crate::model::*;
use crate::node::Node;
use std::time::Duration;

/// A `job_completion` SLO measures one async route's jobs: it must name
/// that route.
pub(crate) fn check_slos(
    d: &mut Decoder<'_>,
    config: &Config,
    raw_slo_names: &[String],
    loc_of: &dyn Fn(&str, usize, &str) -> crate::node::Loc,
) {
    for slo in config.slos.iter().filter(|s| s.sli == Sli::JobCompletion) {
        let i = raw_slo_names
            .iter()
            .position(|n| *n == slo.name)
            .unwrap_or(0);
        let async_route = slo.scope.route.as_ref().and_then(|r| {
            config
                .routes
                .iter()
                .find(|x| x.name == *r)
                .map(|x| x.async_jobs.is_some())
        });
        let problem = match (&slo.scope.route, async_route) {
            (None, _) => "a job_completion SLO measures one async route: set `route`",
            (Some(_), Some(false)) => "the route is not async (it has no `[routes.async]`)",
            _ => continue,
        };
        d.error(
            loc_of("slos", i, "route"),
            &format!("slos[{i}].route"),
            problem,
        );
    }
}

pub(crate) fn decode_jobs(d: &mut Decoder<'_>, node: &Node, path: &str) -> Option<Jobs> {
    let mut t = d.table(node, path)?;
    let def = Jobs::default();
    let backend = d.opt(&mut t, "backend", |d, n, p| {
        d.choice(n, p, &["embedded", "jetstream"])
    });
    let file = d.opt(&mut t, "path", Decoder::string);
    let durability = d.opt(&mut t, "durability", |d, n, p| {
        d.choice(n, p, &["fsync", "os"])
    });
    let status_prefix = d.opt(&mut t, "status_prefix", |d, n, p| {
        let s = d.string(n, p)?;
        let valid = s.starts_with('/')
            && s.len() > 1
            && !s.ends_with('/')
            && s.bytes()
                .all(|b| b.is_ascii_graphic() && b != b'?' && b != b'#');
        if !valid {
            d.error_help(
                n.loc,
                p,
                "not a path prefix",
                "a path such as `/_levee/jobs`, without a trailing `/`, query or fragment",
            );
            return None;
        }
        Some(s)
    });
    let jetstream = d.opt(&mut t, "jetstream", decode_jetstream);
    let loc = t.loc;
    d.finish(t);
    let backend = match backend {
        Some("jetstream") => JobBackend::Jetstream,
        _ => JobBackend::Embedded,
    };
    if backend == JobBackend::Jetstream && jetstream.is_none() {
        d.error_help(
            loc,
            path,
            "`backend = \"jetstream\"` needs a NATS server",
            "add `[jobs.jetstream]` with `url = \"nats://127.0.0.1:4222\"`",
        );
    }
    Some(Jobs {
        backend,
        path: match file {
            Some(s) if s == ":memory:" => None,
            Some(s) => Some(s.into()),
            None => def.path,
        },
        durability: match durability {
            Some("os") => JobDurabilityMode::Os,
            _ => JobDurabilityMode::Fsync,
        },
        status_prefix: status_prefix.unwrap_or(def.status_prefix),
        jetstream,
    })
}

fn decode_jetstream(d: &mut Decoder<'_>, node: &Node, path: &str) -> Option<JetStream> {
    let mut t = d.table(node, path)?;
    let url = d.req(&mut t, "url", |d, n, p| {
        let s = d.secret(n, p)?;
        if s.starts_with("nats://") || s.starts_with("tls://") {
            Some(s)
        } else {
            d.error_help(
                n.loc,
                p,
                "not a NATS URL",
                "for example `nats://127.0.0.1:4222`",
            );
            None
        }
    });
    let stream_prefix = d.opt(&mut t, "stream_prefix", |d, n, p| {
        let s = d.string(n, p)?;
        if s.is_empty()
            || !s
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            d.error(
                n.loc,
                p,
                "a stream name prefix: letters, digits, `_` and `-` only",
            );
            return None;
        }
        Some(s)
    });
    let replicas = d.opt(&mut t, "replicas", |d, n, p| d.int_in(n, p, 1, 5));
    let timeout = d.opt(&mut t, "timeout", Decoder::duration);
    d.finish(t);
    Some(JetStream {
        url: Secret::new(url?),
        stream_prefix: stream_prefix.unwrap_or_else(|| "LEVEE_JOBS".to_string()),
        replicas: replicas.map_or(1, |r| r as u32),
        timeout: timeout.unwrap_or(Duration::from_secs(5)),
    })
}

pub(crate) fn decode_async_route(
    d: &mut Decoder<'_>,
    node: &Node,
    path: &str,
) -> Option<AsyncRoute> {
    let mut t = d.table(node, path)?;
    let mode = d.opt(&mut t, "mode", |d, n, p| {
        d.choice(n, p, &["always", "overflow"])
    });
    let max_body_bytes = d.opt(&mut t, "max_body_bytes", Decoder::size);
    let count =
        |d: &mut Decoder<'_>, n: &Node, p: &str| d.int_in(n, p, 1, 100_000_000).map(|v| v as u64);
    let max_jobs = d.opt(&mut t, "max_jobs", count);
    let max_bytes = d.opt(&mut t, "max_bytes", Decoder::size);
    let max_jobs_per_tenant = d.opt(&mut t, "max_jobs_per_tenant", count);
    let max_bytes_per_tenant = d.opt(&mut t, "max_bytes_per_tenant", Decoder::size);
    let max_attempts = d.opt(&mut t, "max_attempts", |d, n, p| d.int_in(n, p, 1, 1000));
    let max_age = d.opt(&mut t, "max_age", Decoder::duration);
    let backoff_base = d.opt(&mut t, "backoff_base", Decoder::duration);
    let backoff_max = d.opt(&mut t, "backoff_max", Decoder::duration);
    let delivery_timeout = d.opt(&mut t, "delivery_timeout", Decoder::duration);
    let result_ttl = d.opt(&mut t, "result_ttl", Decoder::duration);
    let max_result_bytes = d.opt(&mut t, "max_result_bytes", Decoder::size);
    let concurrency = d.opt(&mut t, "concurrency", |d, n, p| d.int_in(n, p, 1, 10_000));
    let order_by = d.opt(&mut t, "order_by", |d, n, p| {
        let s = d.string(n, p)?;
        if s == "tenant" {
            return Some(OrderBy::Tenant);
        }
        if let Some(h) = s.strip_prefix("header:") {
            let node = Node {
                value: crate::node::Value::Str(h.trim().to_string()),
                loc: n.loc,
            };
            return header_name(d, &node, p).map(OrderBy::Header);
        }
        d.error_help(
            n.loc,
            p,
            format!("unknown ordering `{s}`"),
            "`tenant`, or `header:NAME` for the jobs with the same value of a request header",
        );
        None
    });
    let callback = d.opt(&mut t, "callback", decode_callback);
    let loc = t.loc;
    d.finish(t);
    let max_jobs = max_jobs.unwrap_or(100_000);
    let max_bytes = max_bytes.unwrap_or(1 << 30);
    let route = AsyncRoute {
        mode: match mode {
            Some("overflow") => AsyncMode::Overflow,
            _ => AsyncMode::Always,
        },
        max_body_bytes: max_body_bytes.unwrap_or(1 << 20),
        max_jobs,
        max_bytes,
        max_jobs_per_tenant: max_jobs_per_tenant.unwrap_or(max_jobs),
        max_bytes_per_tenant: max_bytes_per_tenant.unwrap_or(max_bytes),
        max_attempts: max_attempts.map_or(10, |v| v as u32),
        max_age: max_age.unwrap_or(Duration::from_secs(24 * 3600)),
        backoff_base: backoff_base.unwrap_or(Duration::from_millis(500)),
        backoff_max: backoff_max.unwrap_or(Duration::from_secs(300)),
        delivery_timeout: delivery_timeout.unwrap_or(Duration::from_secs(60)),
        result_ttl: result_ttl.unwrap_or(Duration::from_secs(3600)),
        max_result_bytes: max_result_bytes.unwrap_or(1 << 20),
        concurrency: concurrency.map_or(64, |v| v as u32),
        order_by,
        callback,
    };
    if route.backoff_max < route.backoff_base {
        d.error(
            loc,
            &format!("{path}.backoff_max"),
            "must be at least backoff_base",
        );
    }
    if route.max_body_bytes > route.max_bytes_per_tenant {
        d.error(
            loc,
            &format!("{path}.max_body_bytes"),
            "larger than max_bytes_per_tenant: no job of that size could ever be accepted",
        );
    }
    Some(route)
}

fn decode_callback(d: &mut Decoder<'_>, node: &Node, path: &str) -> Option<JobCallback> {
    let mut t = d.table(node, path)?;
    let header = d.opt(&mut t, "header", header_name);
    let allowed_hosts = d.req(&mut t, "allowed_hosts", |d, n, p| {
        let hosts = d.list(n, p, Decoder::string)?;
        if hosts.is_empty() {
            d.error_help(
                n.loc,
                p,
                "no host allowed",
                "name the hosts callbacks may go to, e.g. `[\"hooks.example.com\"]`",
            );
            return None;
        }
        Some(hosts)
    });
    let secret = d.req(&mut t, "secret", |d, n, p| {
        let s = d.secret(n, p)?;
        if s.len() < 16 {
            d.error_help(
                n.loc,
                p,
                "too short to sign with",
                "use at least 16 bytes, e.g. `secret = \"${LEVEE_WEBHOOK_SECRET}\"` holding `whsec_` and base64",
            );
            return None;
        }
        Some(s)
    });
    let max_attempts = d.opt(&mut t, "max_attempts", |d, n, p| d.int_in(n, p, 1, 100));
    let timeout = d.opt(&mut t, "timeout", Decoder::duration);
    d.finish(t);
    Some(JobCallback {
        header: header.unwrap_or_else(|| "levee-callback".to_string()),
        allowed_hosts: allowed_hosts?,
        secret: Secret::new(secret?),
        max_attempts: max_attempts.map_or(5, |v| v as u32),
        timeout: timeout.unwrap_or(Duration::from_secs(5)),
    })
}

#[cfg(test)]
mod tests {
    use crate::{load_str, Diagnostics, Format};

    const BASE: &str = r#"
[[listeners]]
name = "public"
listen = "127.0.0.1:8080"

[[clusters]]
name = "orders"
endpoints = ["127.0.0.1:9000"]
"#;

    fn parse(extra: &str) -> Result<crate::Config, Diagnostics> {
        load_str(&format!("{BASE}{extra}"), Format::Toml, "levee.toml")
    }

    #[test]
    fn an_async_route_takes_defaults_and_its_settings() {
        let config = parse(
            r#"
[[routes]]
name = "orders"
cluster = "orders"
[routes.async]
max_jobs = 500
order_by = "header:X-Account"
backoff_base = "1s"
[routes.async.callback]
allowed_hosts = ["hooks.example.com"]
secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
"#,
        )
        .unwrap();
        let a = config.routes[0].async_jobs.as_ref().unwrap();
        assert_eq!(a.mode, crate::AsyncMode::Always);
        assert_eq!(a.max_jobs, 500);
        assert_eq!(a.max_jobs_per_tenant, 500);
        assert_eq!(a.order_by, Some(crate::OrderBy::Header("x-account".into())));
        assert_eq!(a.callback.as_ref().unwrap().header, "levee-callback");
        assert_eq!(config.jobs.backend, crate::JobBackend::Embedded);
        assert_eq!(config.jobs.status_prefix, "/_levee/jobs");
    }

    #[test]
    fn mistakes_are_named_with_their_field_path() {
        let err = parse(
            r#"
[jobs]
backend = "jetstream"
status_prefix = "jobs/"

[[routes]]
name = "orders"
cluster = "orders"
[routes.async]
order_by = "account"
backoff_base = "10s"
backoff_max = "1s"
"#,
        )
        .unwrap_err()
        .to_string();
        for expected in [
            "jobs: `backend = \"jetstream\"` needs a NATS server",
            "jobs.status_prefix: not a path prefix",
            "routes[0].async.order_by: unknown ordering `account`",
            "routes[0].async.backoff_max: must be at least backoff_base",
        ] {
            assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
        }
    }

    #[test]
    fn a_callback_needs_allowed_hosts_and_a_real_secret() {
        let err = parse(
            r#"
[[routes]]
name = "orders"
cluster = "orders"
[routes.async.callback]
allowed_hosts = []
secret = "short"
"#,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("routes[0].async.callback.allowed_hosts: no host allowed"));
        assert!(err.contains("routes[0].async.callback.secret: too short to sign with"));
        assert!(!err.contains("\"short\""), "the secret leaked: {err}");
    }

    #[test]
    fn a_job_completion_slo_must_name_an_async_route() {
        let err = parse(
            r#"
[[routes]]
name = "sync"
cluster = "orders"

[[slos]]
name = "a"
sli = "job_completion"
threshold = "30s"
objective = "99%"

[[slos]]
name = "b"
sli = "job_completion"
route = "sync"
threshold = "30s"
objective = "99%"
"#,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("slos[0].route: a job_completion SLO measures one async route"),
            "{err}"
        );
        assert!(
            err.contains("slos[1].route: the route is not async"),
            "{err}"
        );
    }
}
