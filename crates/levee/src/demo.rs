//! `levee demo`: the gateway on embedded defaults in front of three in-process
//! replicas of a small "catalog" service. The replicas differ in latency and
//! one fails a few percent of requests, so balancing, health checks and error
//! metrics have something to show.

use anyhow::Context as _;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::net::SocketAddr;
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

/// The demo's config: one listener, one catalog route, health-checked
/// replicas balanced by peak EWMA.
pub(crate) fn demo_config(
    listen: SocketAddr,
    admin: SocketAddr,
    replicas: &[SocketAddr],
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
access_log = true

[[listeners]]
name = "public"
listen = "{listen}"

[[routes]]
name = "catalog"
cluster = "catalog"
match = {{ path = {{ prefix = "/catalog" }} }}
rewrite = {{ strip_prefix = "/catalog" }}
timeout = "2s"

[[clusters]]
name = "catalog"
balancer = {{ kind = "peak_ewma" }}
endpoints = [
{}
]
health_check = {{ path = "/healthz", interval = "2s", timeout = "500ms" }}
"#,
        endpoints.join("\n")
    )
}

pub(crate) async fn run(listen: SocketAddr, admin: SocketAddr) -> anyhow::Result<()> {
    let mut addrs = Vec::new();
    for r in &REPLICAS {
        addrs.push(start_replica(r).await.context("starting a demo replica")?);
    }
    let text = demo_config(listen, admin, &addrs);
    let config = levee_config::load_str(&text, levee_config::Format::Toml, "<demo>")
        .map_err(|d| anyhow::anyhow!("the embedded demo config is invalid:\n{d}"))?;
    let (tx, rx) = tokio::sync::oneshot::channel();
    let gateway = tokio::spawn(crate::run(config, None, Some(tx), false));
    let (gw, admin_bound) = match rx.await {
        Ok(ready) => ready,
        Err(_) => return gateway.await.context("gateway task")?,
    };
    let bound = gw.listener_addr("public").unwrap_or(listen);
    println!("Levee demo is running.");
    println!();
    println!("  gateway    http://{bound}/catalog/products");
    println!("  metrics    http://{admin_bound}/metrics");
    println!("  clusters   http://{admin_bound}/api/v1/clusters");
    println!("  config     http://{admin_bound}/api/v1/config");
    println!();
    println!("Try:  curl -i http://{bound}/catalog/products/42");
    println!(
        "Three catalog replicas answer in about 5, 20 and 60 ms; catalog-c fails 4% of requests."
    );
    println!("Press Ctrl-C to stop.");
    gateway.await.context("gateway task")?
}
