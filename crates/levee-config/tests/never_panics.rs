//! The config decoder never panics, whatever it is fed: arbitrary text and
//! bytes through the TOML and YAML loaders, and documents of the right shape
//! (every section and field Levee knows) whose values are drawn from a pool
//! of wrong ones — negative and huge numbers, empty and very long strings,
//! odd durations and sizes, unicode, the wrong types, tables where scalars
//! belong. Each load must end in a config or in diagnostics that point into
//! the file; a panic fails the property and proptest shrinks it.
//!
//! The regression tests at the end pin inputs that once panicked or could
//! exhaust the process (deep nesting, alias bombs).

use levee_config::{load_str_with_env, Diagnostics, Format};
use proptest::prelude::*;
use proptest::strategy::BoxedStrategy;

/// A generated document, rendered as TOML or YAML.
#[derive(Debug, Clone)]
enum Doc {
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    List(Vec<Doc>),
    Map(Vec<(String, Doc)>),
}

/// Escapes `s` as a double-quoted string that TOML and YAML both read the
/// same way: anything outside printable ASCII becomes `\UXXXXXXXX`.
fn quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            ' '..='~' => out.push(c),
            c => out.push_str(&format!("\\U{:08X}", c as u32)),
        }
    }
    out.push('"');
    out
}

/// A float as TOML writes it (`nan`, `inf`, always with a fraction or exponent).
fn toml_float(f: f64) -> String {
    if f.is_nan() {
        "nan".into()
    } else if f.is_infinite() {
        if f > 0.0 { "inf" } else { "-inf" }.into()
    } else {
        format!("{f:?}")
    }
}

impl Doc {
    /// TOML: one `"key" = value` line per top-level entry, inline below.
    fn toml(&self) -> String {
        match self {
            Doc::Map(entries) => entries
                .iter()
                .map(|(k, v)| format!("{} = {}\n", quoted(k), v.toml_inline()))
                .collect(),
            other => format!("value = {}\n", other.toml_inline()),
        }
    }

    fn toml_inline(&self) -> String {
        match self {
            Doc::Bool(b) => b.to_string(),
            Doc::Int(i) => i.to_string(),
            Doc::Float(f) => toml_float(*f),
            Doc::Str(s) => quoted(s),
            Doc::List(items) => format!(
                "[{}]",
                items
                    .iter()
                    .map(Doc::toml_inline)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Doc::Map(entries) => format!(
                "{{ {} }}",
                entries
                    .iter()
                    .map(|(k, v)| format!("{} = {}", quoted(k), v.toml_inline()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }

    /// YAML in flow style (floats YAML cannot spell plainly become strings).
    fn yaml(&self) -> String {
        match self {
            Doc::Bool(b) => b.to_string(),
            Doc::Int(i) => i.to_string(),
            Doc::Float(f) if f.is_finite() => format!("{f:?}"),
            Doc::Float(_) => ".nan".into(),
            Doc::Str(s) => quoted(s),
            Doc::List(items) => format!(
                "[{}]",
                items.iter().map(Doc::yaml).collect::<Vec<_>>().join(", ")
            ),
            Doc::Map(entries) => format!(
                "{{{}}}",
                entries
                    .iter()
                    .map(|(k, v)| format!("{}: {}", quoted(k), v.yaml()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
}

/// The shape of the config: what each section and field holds.
enum Shape {
    /// A leaf: any value from the pool.
    Scalar,
    /// A table with these fields.
    Table(Vec<(&'static str, Shape)>),
    /// A list of items of one shape.
    List(Box<Shape>),
}

fn t(fields: Vec<(&'static str, Shape)>) -> Shape {
    Shape::Table(fields)
}

fn list(item: Shape) -> Shape {
    Shape::List(Box::new(item))
}

/// Scalar fields named `names`.
fn scalars(names: &[&'static str]) -> Vec<(&'static str, Shape)> {
    names.iter().map(|n| (*n, Shape::Scalar)).collect()
}

fn with(mut base: Vec<(&'static str, Shape)>, more: Vec<(&'static str, Shape)>) -> Shape {
    base.extend(more);
    Shape::Table(base)
}

/// Every section and field of Levee's config, as the decoder reads them.
/// The keys of a forcing rule (`split.force`, `rollout.force`).
const FORCE_KEYS: &[&str] = &["header", "cookie", "exact", "prefix", "regex", "to"];

fn config_shape() -> Shape {
    let headers = || t(scalars(&["x-a", "Bad Header", "x-b"]));
    let header_ops = || {
        with(
            vec![("set", headers())],
            vec![("remove", list(Shape::Scalar))],
        )
    };
    let breaker = || {
        t(scalars(&[
            "consecutive_failures",
            "failure_ratio",
            "slow_call_ratio",
            "slow_call_threshold",
            "min_requests",
            "window",
            "base_open_time",
            "max_open_time",
            "half_open_probes",
            "ramp_time",
        ]))
    };
    let queue_class = || t(scalars(&["max_queue_time", "max_queue_len"]));
    let burn_rule = || t(scalars(&["long", "short", "factor"]));
    t(vec![
        ("admin", t(scalars(&["listen", "token"]))),
        (
            "runtime",
            with(
                scalars(&[
                    "drain_timeout",
                    "watch_config",
                    "access_log",
                    "worker_threads",
                    "zone",
                    "region",
                ]),
                vec![(
                    "overload",
                    t(scalars(&[
                        "max_memory",
                        "max_connections",
                        "shed_at",
                        "close_at",
                        "refuse_at",
                    ])),
                )],
            ),
        ),
        (
            "listeners",
            list(with(
                scalars(&["name", "listen"]),
                vec![
                    ("tls", t(scalars(&["cert", "key"]))),
                    (
                        "limits",
                        t(scalars(&[
                            "max_connections",
                            "max_request_header_bytes",
                            "max_request_body_bytes",
                            "header_read_timeout",
                            "idle_timeout",
                            "max_concurrent_streams",
                        ])),
                    ),
                ],
            )),
        ),
        (
            "routes",
            list(with(
                scalars(&[
                    "name",
                    "cluster",
                    "timeout",
                    "connect_timeout",
                    "honor_deadlines",
                    "min_attempt_time",
                    "stream_idle_timeout",
                    "tier",
                    "priority",
                    "priority_header",
                ]),
                vec![
                    ("listeners", list(Shape::Scalar)),
                    (
                        "match",
                        t(vec![
                            ("hosts", list(Shape::Scalar)),
                            ("path", t(scalars(&["prefix", "exact", "regex"]))),
                            ("methods", list(Shape::Scalar)),
                            (
                                "headers",
                                list(t(scalars(&["name", "exact", "present", "regex"]))),
                            ),
                        ]),
                    ),
                    ("rewrite", t(scalars(&["strip_prefix", "add_prefix"]))),
                    ("request_headers", header_ops()),
                    ("response_headers", header_ops()),
                    (
                        "retry",
                        with(
                            scalars(&[
                                "attempts",
                                "retry_after_max",
                                "per_try_timeout",
                                "idempotent",
                                "buffer_bytes",
                            ]),
                            vec![
                                ("retry_on", list(Shape::Scalar)),
                                ("statuses", list(Shape::Scalar)),
                                ("grpc_statuses", list(Shape::Scalar)),
                                ("backoff", t(scalars(&["base", "max"]))),
                                (
                                    "budget",
                                    t(scalars(&[
                                        "ratio",
                                        "min_per_second",
                                        "window",
                                        "max_concurrent_ratio",
                                        "min_concurrent",
                                    ])),
                                ),
                            ],
                        ),
                    ),
                    (
                        "hedge",
                        t(scalars(&["delay", "percentile", "min_delay", "max_hedges"])),
                    ),
                    (
                        "fallback",
                        with(
                            scalars(&["cluster"]),
                            vec![
                                (
                                    "serve_stale",
                                    t(scalars(&[
                                        "max_entries",
                                        "max_bytes",
                                        "max_entry_bytes",
                                        "max_stale",
                                    ])),
                                ),
                                (
                                    "response",
                                    with(
                                        scalars(&["status", "body", "body_file"]),
                                        vec![("headers", headers())],
                                    ),
                                ),
                                ("on_statuses", list(Shape::Scalar)),
                            ],
                        ),
                    ),
                    (
                        "rate_limits",
                        list(with(
                            scalars(&[
                                "name", "rate", "per", "burst", "dry_run", "max_keys", "global",
                            ]),
                            vec![
                                ("key", list(Shape::Scalar)),
                                ("warm_up", t(scalars(&["cold_factor", "period"]))),
                            ],
                        )),
                    ),
                    (
                        "split",
                        with(
                            scalars(&["cluster", "weight", "stickiness"]),
                            vec![("force", list(t(scalars(FORCE_KEYS))))],
                        ),
                    ),
                    (
                        "rollout",
                        with(
                            scalars(&[
                                "strategy",
                                "step_weight",
                                "max_weight",
                                "step_interval",
                                "preview",
                                "keep_old",
                                "duration",
                                "requests",
                                "stickiness",
                            ]),
                            vec![
                                ("steps", list(t(scalars(&["weight", "pause", "manual"])))),
                                ("force", list(t(scalars(FORCE_KEYS)))),
                                (
                                    "analysis",
                                    with(
                                        scalars(&[
                                            "interval",
                                            "confidence",
                                            "min_samples",
                                            "max_error_rate",
                                            "max_error_increase",
                                            "latency_tolerance",
                                            "max_mirror_mismatch",
                                            "on_failure",
                                        ]),
                                        vec![(
                                            "latency",
                                            list(t(scalars(&["percentile", "max", "max_ratio"]))),
                                        )],
                                    ),
                                ),
                                (
                                    "gates",
                                    with(
                                        scalars(&[
                                            "min_budget_left",
                                            "block_on_page",
                                            "max_budget_spend",
                                        ]),
                                        vec![("slos", list(Shape::Scalar))],
                                    ),
                                ),
                                (
                                    "webhooks",
                                    list(t(scalars(&["phase", "url", "timeout", "on_failure"]))),
                                ),
                            ],
                        ),
                    ),
                    (
                        "faults",
                        list(with(
                            scalars(&[
                                "name",
                                "percent",
                                "delay",
                                "jitter",
                                "bandwidth",
                                "first",
                                "max_active",
                            ]),
                            vec![
                                ("abort", t(scalars(&["status", "grpc_status"]))),
                                (
                                    "when",
                                    with(
                                        scalars(&[]),
                                        vec![
                                            (
                                                "headers",
                                                list(t(scalars(&[
                                                    "name", "exact", "present", "regex",
                                                ]))),
                                            ),
                                            ("tenants", list(Shape::Scalar)),
                                            ("clients", list(Shape::Scalar)),
                                            ("methods", list(Shape::Scalar)),
                                        ],
                                    ),
                                ),
                            ],
                        )),
                    ),
                    (
                        "fault_headers",
                        t(scalars(&["max_percent", "max_delay", "max_active"])),
                    ),
                    (
                        "mirror",
                        t(scalars(&[
                            "cluster",
                            "weight",
                            "max_body_bytes",
                            "max_in_flight",
                            "timeout",
                            "compare_body_bytes",
                        ])),
                    ),
                ],
            )),
        ),
        (
            "clusters",
            list(with(
                scalars(&[
                    "name",
                    "dns_refresh",
                    "protocol",
                    "connect_timeout",
                    "timeout",
                    "host_header",
                    "host_rewrite",
                ]),
                vec![
                    (
                        "endpoints",
                        list(t(scalars(&[
                            "address", "weight", "zone", "region", "priority",
                        ]))),
                    ),
                    ("discovery", t(scalars(&["file", "srv", "nameserver"]))),
                    (
                        "faults",
                        list(with(
                            scalars(&[
                                "name",
                                "percent",
                                "kind",
                                "delay",
                                "after_bytes",
                                "status",
                                "first",
                                "max_active",
                            ]),
                            vec![("endpoints", list(Shape::Scalar))],
                        )),
                    ),
                    (
                        "balancer",
                        t(vec![
                            ("kind", Shape::Scalar),
                            ("hash_on", t(scalars(&["header", "cookie"]))),
                        ]),
                    ),
                    (
                        "pool",
                        t(scalars(&["max_idle_per_endpoint", "idle_timeout"])),
                    ),
                    (
                        "health_check",
                        t(scalars(&[
                            "path",
                            "interval",
                            "jitter",
                            "timeout",
                            "healthy_threshold",
                            "unhealthy_threshold",
                        ])),
                    ),
                    (
                        "outlier_detection",
                        t(scalars(&[
                            "consecutive_5xx",
                            "consecutive_gateway_errors",
                            "interval",
                            "base_ejection_time",
                            "max_ejection_time",
                            "max_ejection_percent",
                            "success_rate_stdev_factor",
                            "success_rate_min_hosts",
                            "success_rate_min_requests",
                            "latency_factor",
                            "latency_min_hosts",
                            "latency_min_requests",
                        ])),
                    ),
                    (
                        "circuit_breaker",
                        t(vec![("endpoint", breaker()), ("cluster", breaker())]),
                    ),
                    (
                        "limits",
                        t(scalars(&[
                            "max_connections",
                            "max_pending",
                            "max_requests",
                            "max_retries",
                        ])),
                    ),
                    (
                        "slow_start",
                        t(scalars(&["window", "aggression", "min_weight_percent"])),
                    ),
                    (
                        "locality",
                        with(
                            scalars(&[
                                "zone_aware",
                                "min_cluster_size",
                                "overprovisioning",
                                "failback_delay",
                            ]),
                            vec![("fleet_zones", t(scalars(&["a", "b"])))],
                        ),
                    ),
                    (
                        "concurrency",
                        with(
                            scalars(&[
                                "algorithm",
                                "limit",
                                "min_limit",
                                "max_limit",
                                "latency_target",
                                "max_queue_len",
                                "tenant_quota",
                            ]),
                            vec![(
                                "classes",
                                t(vec![
                                    ("critical", queue_class()),
                                    ("default", queue_class()),
                                    ("sheddable", queue_class()),
                                ]),
                            )],
                        ),
                    ),
                ],
            )),
        ),
        (
            "tenants",
            with(
                scalars(&["default", "header"]),
                vec![
                    (
                        "api_keys",
                        with(
                            scalars(&["header", "file"]),
                            vec![("keys", list(t(scalars(&["tenant", "sha256"]))))],
                        ),
                    ),
                    (
                        "jwt",
                        with(
                            scalars(&[
                                "header",
                                "claim",
                                "jwks_file",
                                "issuer",
                                "audience",
                                "leeway",
                            ]),
                            vec![("hs256_secrets", list(Shape::Scalar))],
                        ),
                    ),
                    ("list", list(t(scalars(&["name", "weight"])))),
                ],
            ),
        ),
        (
            "redis",
            t(scalars(&[
                "url",
                "timeout",
                "replicas",
                "on_failure",
                "retry_after",
            ])),
        ),
        (
            "slos",
            list(with(
                scalars(&[
                    "name",
                    "description",
                    "route",
                    "tier",
                    "tenant",
                    "cluster",
                    "sli",
                    "objective",
                    "threshold",
                    "period",
                    "rate_limited_is_bad",
                    "runbook",
                    "budgeting",
                    "timeslice",
                    "timeslice_target",
                ]),
                vec![
                    ("objectives", list(t(scalars(&["threshold", "objective"])))),
                    ("labels", t(scalars(&["team", "__reserved", "slo_name"]))),
                    (
                        "alerting",
                        with(
                            scalars(&["min_events", "pending_for"]),
                            vec![("page", list(burn_rule())), ("ticket", list(burn_rule()))],
                        ),
                    ),
                ],
            )),
        ),
        (
            "alerting",
            with(
                scalars(&["evaluate_every", "bucket", "min_events"]),
                vec![(
                    "webhooks",
                    list(with(
                        scalars(&[
                            "name",
                            "url",
                            "format",
                            "timeout",
                            "max_attempts",
                            "backoff",
                            "backoff_max",
                            "escalate_after",
                            "escalate_to",
                            "escalation_only",
                        ]),
                        vec![
                            ("severities", list(Shape::Scalar)),
                            ("headers", headers()),
                            ("match", t(scalars(&["team", "9bad", "slo"]))),
                            ("match_re", t(scalars(&["team", "severity"]))),
                        ],
                    )),
                )],
            ),
        ),
        (
            "store",
            t(scalars(&["path", "incident_retention", "max_incidents"])),
        ),
        (
            "status_page",
            t(scalars(&[
                "title",
                "period",
                "core_objective",
                "optional_objective",
            ])),
        ),
        ("capacity", t(scalars(&["warn_at", "critical_at"]))),
    ])
}

/// Values that fit somewhere (so checks past the first one run) and values
/// that fit nowhere.
fn fixed_values() -> Vec<Doc> {
    let s = |v: &str| Doc::Str(v.to_string());
    vec![
        // Plausible values, so that cross-section checks are reached.
        s("public"),
        s("catalog"),
        s("127.0.0.1:8080"),
        s("0.0.0.0:9901"),
        s("10.0.0.7:8080"),
        s("1s"),
        s("250ms"),
        s("30d"),
        s("64KiB"),
        s("99.9%"),
        s("50%"),
        s("/api/"),
        s("round_robin"),
        s("ring_hash"),
        s("latency"),
        s("availability"),
        s("calendar_month"),
        s("http://127.0.0.1:9093/api/v2/alerts"),
        s("redis://127.0.0.1:6379"),
        s("https://wiki.example.com/runbook"),
        s("client_ip"),
        s("header:x-user"),
        s("GET"),
        s("*.example.com"),
        s("core"),
        s("optional"),
        s("sheddable"),
        s("5xx"),
        s(":memory:"),
        Doc::Int(1),
        Doc::Int(3),
        Doc::Int(503),
        Doc::Bool(true),
        // Wrong values.
        Doc::Int(-1),
        Doc::Int(0),
        Doc::Int(i64::MAX),
        Doc::Int(i64::MIN),
        Doc::Float(-0.5),
        Doc::Float(1e308),
        Doc::Float(f64::NAN),
        Doc::Float(f64::INFINITY),
        Doc::Float(f64::NEG_INFINITY),
        Doc::Bool(false),
        s(""),
        s(" "),
        s("0s"),
        s("-1s"),
        s("0"),
        s("99999999999h"),
        s("99999999999h99999999999h99999999999h"),
        s("18446744073709551615ns"),
        s("1.5MiB"),
        s("0.5KiB"),
        s("18446744073709551615GiB"),
        s("99999999999999999999999"),
        s("1e400%"),
        s("NaN%"),
        s("inf%"),
        s("-5%"),
        s("250%"),
        s("100%"),
        s("0.0.0.0:70000"),
        s("[::1]:99999"),
        s("localhost:http"),
        s("::::"),
        s("${UNSET}"),
        s("${"),
        s("${SET:-}"),
        s("$$"),
        s("é🦀\u{0}\u{7}\u{202e}"),
        s("(unclosed"),
        s("a{99999}{99999}"),
        s(&"x".repeat(5_000)),
        s(&"é".repeat(1_000)),
        s("http://"),
        s("https://"),
        s("1m30s1h2d"),
        s(".s"),
        s("1.2.3s"),
        Doc::List(vec![]),
        Doc::List(vec![Doc::Int(1), s("a"), Doc::List(vec![])]),
        Doc::Map(vec![]),
        Doc::Map(vec![(
            "a".into(),
            Doc::Map(vec![("b".into(), Doc::Map(vec![]))]),
        )]),
    ]
}

fn scalar() -> BoxedStrategy<Doc> {
    prop_oneof![
        6 => proptest::sample::select(fixed_values()),
        1 => any::<i64>().prop_map(Doc::Int),
        1 => any::<f64>().prop_map(Doc::Float),
        1 => any::<String>().prop_map(Doc::Str),
        1 => "[0-9]{1,25}(\\.[0-9]{0,3})?(ns|us|ms|s|m|h|d|B|KiB|MiB|GiB|KB|MB|GB|%)?"
            .prop_map(Doc::Str),
    ]
    .boxed()
}

/// Documents of `shape`: each field present or not, sometimes replaced by
/// a scalar of the wrong kind, sometimes with an unknown field beside.
fn of_shape(shape: &Shape) -> BoxedStrategy<Doc> {
    match shape {
        Shape::Scalar => scalar(),
        Shape::List(item) => {
            let items = proptest::collection::vec(of_shape(item), 0..3).prop_map(Doc::List);
            prop_oneof![9 => items, 1 => scalar()].boxed()
        }
        Shape::Table(fields) => {
            let fields: Vec<BoxedStrategy<Option<(String, Doc)>>> = fields
                .iter()
                .map(|(name, shape)| {
                    let name = name.to_string();
                    proptest::option::weighted(0.4, of_shape(shape))
                        .prop_map(move |v| v.map(|v| (name.clone(), v)))
                        .boxed()
                })
                .collect();
            let unknown = proptest::option::weighted(
                0.1,
                ("[a-z_]{1,12}", scalar()).prop_map(|(k, v)| (format!("zz_{k}"), v)),
            );
            let table = (fields, unknown).prop_map(|(fields, unknown)| {
                Doc::Map(fields.into_iter().flatten().chain(unknown).collect())
            });
            prop_oneof![12 => table, 1 => scalar()].boxed()
        }
    }
}

fn env(name: &str) -> Option<String> {
    match name {
        "SET" => Some("set-value".into()),
        "EMPTY" => Some(String::new()),
        _ => None,
    }
}

/// Loads `src`; a panic escapes to proptest, which reports and shrinks it.
fn load(src: &str, format: Format) -> Result<(), Diagnostics> {
    load_str_with_env(src, format, "prop", &env).map(|_| ())
}

/// Diagnostics point into the file and say something.
fn well_formed(src: &str, diags: &Diagnostics) -> Result<(), TestCaseError> {
    // YAML also breaks lines at a lone `\r`; one more for the end of file.
    let lines = src.matches(['\n', '\r']).count() + 2;
    prop_assert!(!diags.0.is_empty(), "an error without diagnostics");
    for d in &diags.0 {
        prop_assert!(
            d.line >= 1 && d.line <= lines && d.col >= 1,
            "position {}:{} outside the file: {d}",
            d.line,
            d.col
        );
        prop_assert!(!d.message.is_empty(), "empty message: {d:?}");
    }
    Ok(())
}

/// Text with the tokens of both formats, so the parsers get past the first
/// character more often than with uniform noise.
fn token_soup() -> impl Strategy<Value = String> {
    let tokens = proptest::sample::select(vec![
        "[",
        "]",
        "[[",
        "]]",
        "{",
        "}",
        "=",
        ":",
        ": ",
        "- ",
        ",",
        "\"",
        "'",
        "\n",
        "\n  ",
        "\t",
        " ",
        "#",
        "&a ",
        "*a",
        "!!str ",
        "---\n",
        "...",
        "|",
        ">",
        "listeners",
        "routes",
        "name",
        "listen",
        "1",
        "-1",
        "1.5",
        "1e9",
        "true",
        "\"x\"",
        "'y'",
        "\\",
        "\\u",
        "é",
        "🦀",
        "\r",
        "\u{0}",
        "${A}",
        "a.b",
        "~",
        "null",
        "0x1F",
        "0o7",
        "0b1",
        "1979-05-27",
        "inf",
        "nan",
        "\"\"\"",
        "'''",
        "? ",
        "%YAML 1.2\n",
        "\u{feff}",
    ]);
    proptest::collection::vec(tokens, 0..60).prop_map(|t| t.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(384))]

    #[test]
    fn arbitrary_text_never_panics(src in any::<String>()) {
        for format in [Format::Toml, Format::Yaml] {
            if let Err(diags) = load(&src, format) {
                well_formed(&src, &diags)?;
            }
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let src = String::from_utf8_lossy(&bytes);
        for format in [Format::Toml, Format::Yaml] {
            if let Err(diags) = load(&src, format) {
                well_formed(&src, &diags)?;
            }
        }
    }

    #[test]
    fn token_soup_never_panics(src in token_soup()) {
        for format in [Format::Toml, Format::Yaml] {
            if let Err(diags) = load(&src, format) {
                well_formed(&src, &diags)?;
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn wrong_values_in_the_right_shape_never_panic(doc in of_shape(&config_shape())) {
        let toml = doc.toml();
        let yaml = doc.yaml();
        for (src, format) in [(&toml, Format::Toml), (&yaml, Format::Yaml)] {
            if let Err(diags) = load(src, format) {
                well_formed(src, &diags)?;
                // The generator writes valid syntax, so the decoder (not the
                // parser) is what these cases reach.
                prop_assert!(
                    !diags.0.iter().any(|d| d.message.starts_with("syntax error")),
                    "generated {format:?} does not parse: {diags}\n{src}"
                );
            }
        }
    }
}

#[test]
fn deep_nesting_is_a_syntax_error_not_a_stack_overflow() {
    let deep = |open: &str, close: &str| {
        format!(
            "a{}{}1{}\n",
            if open == "[" { " = " } else { ": " },
            open.repeat(100_000),
            close.repeat(100_000)
        )
    };
    for (src, format) in [
        (deep("[", "]"), Format::Toml),
        (deep("[", "]").replace(" = ", ": "), Format::Yaml),
        (deep("{a: ", "}"), Format::Yaml),
    ] {
        let diags = load(&src, format).expect_err("100,000 levels are refused");
        assert!(
            diags.0[0].message.starts_with("syntax error: ")
                && diags.0[0].message.contains("recurs"),
            "{diags}"
        );
    }
}

#[test]
fn an_alias_bomb_is_refused_before_it_exhausts_memory() {
    // Ten aliases of ten aliases, nine levels deep: 10^9 values once copied.
    let mut src = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..9 {
        let p = format!("*a{}", i - 1);
        let items = [p.as_str(); 10].join(", ");
        src.push_str(&format!("a{i}: &a{i} [{items}]\n"));
    }
    let diags = load(&src, Format::Yaml).expect_err("an alias bomb is refused");
    assert_eq!(diags.0.len(), 1, "{diags}");
    let d = &diags.0[0];
    assert_eq!(
        d.message, "syntax error: aliases expand to more than 100000 values",
        "{diags}"
    );
    assert_eq!(d.line, 5, "the alias that crosses the limit: {diags}");
    assert!(d
        .help
        .as_deref()
        .is_some_and(|h| h.contains("write the repeated parts out")));
}

#[test]
fn ordinary_aliases_still_work() {
    let src = "defaults: &limits { idle_timeout: 30s }\nlisteners:\n  - { name: a, listen: \"127.0.0.1:0\", limits: *limits }\n  - { name: b, listen: \"127.0.0.1:0\", limits: *limits }\n";
    let diags = load(src, Format::Yaml).expect_err("`defaults` is not a known section");
    assert_eq!(diags.0.len(), 1, "only the unknown key: {diags}");
    assert!(
        diags.0[0].message.contains("unknown field `defaults`"),
        "{diags}"
    );
}
