//! `levee demo`: the whole product on embedded defaults. The gateway sits in
//! front of three in-process replicas of a small "catalog" service that
//! differ in latency, one of which fails 4% of its requests; availability
//! and latency SLOs watch the catalog route, so the failing replica burns
//! the availability budget and opens an incident within a minute or so,
//! and the status page, SLO, incident and capacity APIs and the metrics all
//! have something to show. A small built-in client sends light traffic so
//! nobody has to run curl (`--no-traffic` turns it off). State stays in
//! memory unless a store file is given.

use anyhow::Context as _;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// One demo replica's character.
struct Replica {
    name: &'static str,
    base_latency: Duration,
    failure_percent: u64,
}

const REPLICAS: [Replica; 3] = [
    Replica {
        name: "catalog-a",
        base_latency: Duration::from_millis(5),
        failure_percent: 0,
    },
    Replica {
        name: "catalog-b",
        base_latency: Duration::from_millis(20),
        failure_percent: 0,
    },
    Replica {
        name: "catalog-c",
        base_latency: Duration::from_millis(60),
        failure_percent: 4,
    },
];

const PRODUCTS: &str = r#"[{"id":1,"name":"sandbag","price":12.5},{"id":2,"name":"pump","price":340.0},{"id":3,"name":"floodgate","price":9800.0}]"#;

async fn replica_handler(
    replica: &'static Replica,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path();
    let json = |status: StatusCode, body: String| {
        let mut r = Response::new(Full::new(Bytes::from(body)));
        *r.status_mut() = status;
        r.headers_mut().insert(
            "content-type",
            http::HeaderValue::from_static("application/json"),
        );
        r.headers_mut()
            .insert("x-replica", http::HeaderValue::from_static(replica.name));
        Ok(r)
    };
    if path == "/healthz" {
        return json(StatusCode::OK, "{\"status\":\"ok\"}".into());
    }
    // Latency: the replica's base plus up to 50% jitter.
    let jitter = levee_core::ids::random_u64() % (replica.base_latency.as_millis() as u64 / 2 + 1);
    tokio::time::sleep(replica.base_latency + Duration::from_millis(jitter)).await;
    if replica.failure_percent > 0 && levee_core::ids::random_u64() % 100 < replica.failure_percent
    {
        return json(
            StatusCode::SERVICE_UNAVAILABLE,
            "{\"error\":\"injected demo failure\"}".into(),
        );
    }
    match path {
        "/products" | "/" => json(StatusCode::OK, PRODUCTS.into()),
        p if p.starts_with("/products/") => {
            let id = &p["/products/".len()..];
            json(
                StatusCode::OK,
                format!("{{\"id\":\"{id}\",\"served_by\":\"{}\"}}", replica.name),
            )
        }
        _ => json(StatusCode::NOT_FOUND, "{\"error\":\"not found\"}".into()),
    }
}

async fn start_replica(replica: &'static Replica) -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| replica_handler(replica, req));
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(addr)
}

/// Requests a second the built-in client sends.
const TRAFFIC_PER_SECOND: u64 = 5;

/// Longest a background request may take, body included.
const REQUEST_BOUND: Duration = Duration::from_secs(10);

/// How the demo runs, from the command line.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    /// Gateway address.
    pub(crate) listen: SocketAddr,
    /// Admin API address.
    pub(crate) admin: SocketAddr,
    /// Whether the built-in client sends background traffic.
    pub(crate) traffic: bool,
    /// The state store file; in memory when absent.
    pub(crate) store: Option<PathBuf>,
}

/// The demo's config: a core route (`/catalog`) and an optional one
/// (`/recommendations`) to the three replicas, balanced by least requests
/// (so each takes about a third at light load, and the failing replica
/// about 1.3% of all requests); an availability SLO on the catalog at
/// 99.9% whose page rule (10 min and 2 min windows, factor 1.5) fires
/// within seconds of the first failures and keeps firing while one failure
/// in 600 requests is seen every 2 minutes; a latency SLO the replicas
/// meet. Buckets of 5 s and evaluation every 5 s keep the figures fresh.
/// The access log is on only without background traffic, which would
/// flood it.
pub(crate) fn demo_config(
    listen: SocketAddr,
    admin: SocketAddr,
    replicas: &[SocketAddr],
    access_log: bool,
) -> String {
    let endpoints: Vec<String> = replicas
        .iter()
        .zip(["a", "b", "c"])
        .map(|(addr, zone)| format!("  {{ address = \"{addr}\", zone = \"zone-{zone}\" }},"))
        .collect();
    format!(
        r#"[admin]
listen = "{admin}"

[runtime]
drain_timeout = "5s"
access_log = {access_log}

[[listeners]]
name = "public"
listen = "{listen}"

[[routes]]
name = "catalog"
cluster = "catalog"
tier = "core"
match = {{ path = {{ prefix = "/catalog" }} }}
rewrite = {{ strip_prefix = "/catalog" }}
timeout = "2s"

[[routes]]
name = "recommendations"
cluster = "catalog"
tier = "optional"
match = {{ path = {{ prefix = "/recommendations" }} }}
rewrite = {{ strip_prefix = "/recommendations", add_prefix = "/products" }}
timeout = "2s"

[[clusters]]
name = "catalog"
balancer = {{ kind = "least_request" }}
endpoints = [
{}
]
health_check = {{ path = "/healthz", interval = "2s", timeout = "500ms" }}

[[slos]]
name = "catalog-availability"
display_name = "Product catalog"
description = "Catalog requests answered without a server error."
sli = "availability"
route = "catalog"
objective = "99.9%"
alerting = {{ min_events = 50, page = [{{ long = "10m", short = "2m", factor = 1.5 }}], ticket = [] }}

[[slos]]
name = "catalog-latency"
display_name = "Product catalog"
description = "Catalog requests answered without a server error, quickly."
sli = "latency"
route = "catalog"
objectives = [{{ threshold = "250ms", objective = "95%" }}, {{ threshold = "1s", objective = "98%" }}]
alerting = {{ min_events = 50, page = [], ticket = [{{ long = "10m", short = "2m", factor = 2 }}] }}

[alerting]
evaluate_every = "5s"
bucket = "5s"

[store]
path = ":memory:"

[status_page]
title = "Levee demo: service status"
"#,
        endpoints.join("\n")
    )
}

/// Sends about [`TRAFFIC_PER_SECOND`] requests a second to the gateway,
/// mostly to the catalog and some to recommendations, until the gateway
/// stops being ready (it drains).
async fn background_traffic(gateway: levee_proxy::Gateway, base: String) {
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let mut tick = tokio::time::interval(Duration::from_millis(1000 / TRAFFIC_PER_SECOND));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut n: u64 = 0;
    while gateway.is_ready() {
        tick.tick().await;
        n += 1;
        let path = match n % 4 {
            0 => format!("/recommendations/{}", n % 50),
            1 => "/catalog/products".to_string(),
            _ => format!("/catalog/products/{}", n % 100),
        };
        let Ok(uri) = format!("{base}{path}").parse::<http::Uri>() else {
            return;
        };
        let request = client.get(uri);
        // Each request on its own task: a slow answer does not hold up the
        // pace, and a failed one is only a data point. The route times out
        // after 2 s; the bound here only keeps the tasks few whatever happens.
        tokio::spawn(tokio::time::timeout(REQUEST_BOUND, async move {
            if let Ok(response) = request.await {
                let _ = http_body_util::BodyExt::collect(response.into_body()).await;
            }
        }));
    }
}

pub(crate) async fn run(options: Options) -> anyhow::Result<()> {
    let mut addrs = Vec::new();
    for r in &REPLICAS {
        addrs.push(start_replica(r).await.context("starting a demo replica")?);
    }
    let text = demo_config(options.listen, options.admin, &addrs, !options.traffic);
    let mut config = levee_config::load_str(&text, levee_config::Format::Toml, "<demo>")
        .map_err(|d| anyhow::anyhow!("the embedded demo config is invalid:\n{d}"))?;
    let store = match &options.store {
        Some(path) => Some(
            std::path::absolute(path)
                .with_context(|| format!("cannot resolve the store path {}", path.display()))?,
        ),
        None => None,
    };
    config.store.path = store.clone();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let gateway = tokio::spawn(crate::run(config, Vec::new(), Some(tx), false));
    let (gw, admin_bound) = match rx.await {
        Ok(ready) => ready,
        Err(_) => return gateway.await.context("gateway task")?,
    };
    let bound = gw.listener_addr("public").unwrap_or(options.listen);
    let admin = format!("http://{admin_bound}");
    println!("Levee demo is running.");
    println!();
    println!("  gateway    http://{bound}/catalog/products");
    println!("             http://{bound}/recommendations/7 (an optional-tier route)");
    println!("  dashboard  {admin}/ui (SLOs, incidents, clusters and rollouts, live)");
    println!(
        "  status     {admin}/status (the public status page; uptime shows after 5 min of traffic)"
    );
    println!("  SLOs       {admin}/api/v1/slos");
    println!("  incidents  {admin}/api/v1/incidents");
    println!("  clusters   {admin}/api/v1/clusters");
    println!("  capacity   {admin}/api/v1/capacity");
    println!("  metrics    {admin}/metrics");
    println!("  config     {admin}/api/v1/config");
    println!();
    println!("Try:  curl -i http://{bound}/catalog/products/42");
    println!(
        "Three catalog replicas answer in about 5, 20 and 60 ms; catalog-c fails 4% of its requests,"
    );
    println!(
        "about 1.3% of all: more than the 99.9% availability SLO allows, so its budget burns and"
    );
    println!("a page opens an incident (\"Product catalog\") within a minute or so of traffic.");
    if options.traffic {
        println!(
            "Background traffic: about {TRAFFIC_PER_SECOND} requests a second from a built-in client (--no-traffic turns it off)."
        );
        tokio::spawn(background_traffic(gw.clone(), format!("http://{bound}")));
    } else {
        println!("No background traffic (--no-traffic): send your own requests.");
    }
    match &store {
        Some(path) => println!("State is kept in {}.", path.display()),
        None => println!("State is kept in memory (--store FILE keeps it across runs)."),
    }
    println!("Press Ctrl-C to stop.");
    gateway.await.context("gateway task")?
}
