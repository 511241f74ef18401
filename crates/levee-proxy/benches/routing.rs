//! Cost of route matching on a realistic table of 50 routes: hosts (exact and
//! wildcard), path prefixes, exact paths, regular expressions, methods and
//! header conditions. The router tries routes in order, so the figures are a
//! request that hits the first route, one that hits the last (after 49
//! misses), and one that matches none.
//!
//! `cargo bench -p levee-proxy --bench routing -- --warm-up-time 1 --measurement-time 2`

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use levee_proxy::bench_support::BenchRouter;
use std::fmt::Write;
use std::hint::black_box;

const SERVICES: [&str; 8] = [
    "users", "orders", "billing", "search", "catalog", "cart", "media", "auth",
];

/// 50 routes; the first matches `GET api.example.com/v1/users/...` with an
/// `x-tenant` header, the last is a catch-all for `static.example.net`.
fn config_text() -> String {
    let mut t = String::from(
        r#"
[admin]
listen = "127.0.0.1:0"
[[listeners]]
name = "bench"
listen = "127.0.0.1:0"
[[clusters]]
name = "c1"
endpoints = ["127.0.0.1:18081", "127.0.0.1:18082"]
[[clusters]]
name = "c2"
endpoints = ["127.0.0.1:18083"]
"#,
    );
    let mut n = 0;
    let mut route = |t: &mut String, matcher: &str| {
        n += 1;
        let cluster = if n % 2 == 0 { "c1" } else { "c2" };
        write!(
            t,
            "[[routes]]\nname = \"r{n:02}\"\ncluster = \"{cluster}\"\nmatch = {{ {matcher} }}\n"
        )
        .unwrap();
    };
    // 1: the first route, a tenant-scoped API call.
    route(
        &mut t,
        r#"hosts = ["api.example.com"], path = { prefix = "/v1/users/" }, methods = ["GET", "HEAD"], headers = [{ name = "x-tenant", present = true }]"#,
    );
    // 2-17: per-service prefixes on the API host, v1 and v2.
    for v in ["v1", "v2"] {
        for s in SERVICES {
            route(
                &mut t,
                &format!(r#"hosts = ["api.example.com"], path = {{ prefix = "/{v}/{s}/" }}"#),
            );
        }
    }
    // 18-25: regular expressions on ids.
    for s in SERVICES {
        route(
            &mut t,
            &format!(
                r#"hosts = ["api.example.com", "api.example.org"], path = {{ regex = "/v3/{s}/[0-9]+(/[a-z]+)?" }}"#
            ),
        );
    }
    // 26-33: canary routes chosen by header.
    for s in SERVICES {
        route(
            &mut t,
            &format!(
                r#"hosts = ["*.example.com"], path = {{ prefix = "/{s}" }}, headers = [{{ name = "x-canary", exact = "1" }}]"#
            ),
        );
    }
    // 34-41: exact health and well-known paths, with methods.
    for s in SERVICES {
        route(
            &mut t,
            &format!(
                r#"hosts = ["{s}.internal.example.com"], path = {{ exact = "/healthz" }}, methods = ["GET"]"#
            ),
        );
    }
    // 42-49: wildcard hosts per region.
    for r in [
        "eu-west", "eu-north", "us-east", "us-west", "ap-south", "ap-east", "sa-east", "af-south",
    ] {
        route(
            &mut t,
            &format!(r#"hosts = ["*.{r}.example.com"], path = {{ prefix = "/" }}"#),
        );
    }
    // 50: the last route.
    route(
        &mut t,
        r#"hosts = ["static.example.net", "*.cdn.example.net"], path = { prefix = "/assets/" }"#,
    );
    assert_eq!(n, 50);
    t
}

fn request(method: &str, host: &str, path: &str, headers: &[(&str, &str)]) -> http::Request<()> {
    let mut b = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", host)
        .header("user-agent", "bench/1.0")
        .header("accept", "*/*");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(()).unwrap()
}

fn routing(c: &mut Criterion) {
    let config = levee_config::load_str(&config_text(), levee_config::Format::Toml, "bench.toml")
        .unwrap_or_else(|d| panic!("bench config: {d:?}"));
    assert_eq!(config.routes.len(), 50);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let router = rt.block_on(BenchRouter::new(&config));

    let first = request(
        "GET",
        "api.example.com",
        "/v1/users/42?fields=name",
        &[("x-tenant", "acme")],
    );
    let last = request(
        "GET",
        "Static.Example.NET:8443",
        "/assets/app.3f2a9c.js",
        &[],
    );
    let regex = request("GET", "api.example.org", "/v3/cart/123456/items", &[]);
    let none = request("POST", "unknown.example.io", "/nothing/here", &[]);
    assert_eq!(router.find(&first), Some("r01"));
    assert_eq!(router.find(&last), Some("r50"));
    assert_eq!(router.find(&regex), Some("r23"));
    assert_eq!(router.find(&none), None);

    let mut group = c.benchmark_group("route_50");
    group.throughput(Throughput::Elements(1));
    group.bench_function("first", |b| {
        b.iter(|| router.find(black_box(&first)).is_some())
    });
    group.bench_function("regex_r23", |b| {
        b.iter(|| router.find(black_box(&regex)).is_some())
    });
    group.bench_function("last", |b| {
        b.iter(|| router.find(black_box(&last)).is_some())
    });
    group.bench_function("none", |b| {
        b.iter(|| router.find(black_box(&none)).is_some())
    });
    group.bench_function("last_and_pick", |b| {
        b.iter(|| router.pick(black_box(&last)).is_some())
    });
    group.finish();
    drop(router);
    drop(rt);
}

criterion_group!(benches, routing);
criterion_main!(benches);
