//! Endpoint discovery end to end, on real sockets and files: a gateway
//! (`Gateway::start`, no control plane) in front of real HTTP upstreams,
//! fed by a Prometheus file_sd file that is rewritten, broken and swapped
//! the way Kubernetes swaps a ConfigMap, and by a real UDP DNS server
//! answering SRV questions.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use levee_proxy::{ClusterStatus, Gateway};
use std::collections::BTreeSet;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// An HTTP/1.1 upstream that answers with its name, after `?delay_ms=N`.
struct Upstream {
    addr: SocketAddr,
    hits: Arc<AtomicUsize>,
}

impl Upstream {
    async fn start(name: &'static str) -> Upstream {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let counted = hits.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let hits = counted.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(
                        move |req: hyper::Request<hyper::body::Incoming>| {
                            let hits = hits.clone();
                            async move {
                                hits.fetch_add(1, Ordering::SeqCst);
                                let delay = req
                                    .uri()
                                    .query()
                                    .and_then(|q| q.strip_prefix("delay_ms="))
                                    .and_then(|ms| ms.parse::<u64>().ok())
                                    .unwrap_or(0);
                                tokio::time::sleep(Duration::from_millis(delay)).await;
                                Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from(
                                    name,
                                ))))
                            }
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Upstream { addr, hits }
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

/// A directory of its own under the system's temporary directory.
struct Scratch(PathBuf);

impl Scratch {
    fn new(test: &str) -> Scratch {
        let dir =
            std::env::temp_dir().join(format!("levee-discovery-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// file_sd JSON listing `addrs` in one group.
fn targets(addrs: &[SocketAddr]) -> String {
    let list: Vec<String> = addrs.iter().map(|a| format!("\"{a}\"")).collect();
    format!(
        "[\n  {{ \"targets\": [{}], \"labels\": {{ \"job\": \"orders\" }} }}\n]\n",
        list.join(", ")
    )
}

/// Replaces `path` as generators should: write aside, then rename.
fn replace(path: &Path, text: &str) {
    let aside = path.with_extension("tmp");
    std::fs::write(&aside, text).unwrap();
    std::fs::rename(&aside, path).unwrap();
}

/// Starts a gateway from `levee.toml` in `dir`, whose one cluster `orders`
/// ends with `cluster_tail`.
async fn gateway(dir: &Scratch, cluster_tail: &str) -> (Gateway, String) {
    let config = format!(
        r#"
[[listeners]]
name = "public"
listen = "127.0.0.1:0"

[[routes]]
name = "orders"
cluster = "orders"

[[clusters]]
name = "orders"
{cluster_tail}
"#
    );
    let path = dir.path("levee.toml");
    std::fs::write(&path, config).unwrap();
    let config = levee_config::load_file(&path).unwrap();
    let gateway = Gateway::start(config, Some(path)).await.unwrap();
    let base = format!("http://{}", gateway.listener_addr("public").unwrap());
    (gateway, base)
}

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Empty<Bytes>>;

fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// The status and body of `GET url`.
async fn get(client: &HttpClient, url: &str) -> (u16, String) {
    let resp = client.get(url.parse().unwrap()).await.unwrap();
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

fn orders(gateway: &Gateway) -> ClusterStatus {
    gateway
        .clusters()
        .into_iter()
        .find(|c| c.name == "orders")
        .unwrap()
}

fn endpoints(gateway: &Gateway) -> BTreeSet<String> {
    orders(gateway)
        .endpoints
        .into_iter()
        .map(|e| e.address)
        .collect()
}

fn set(addrs: &[SocketAddr]) -> BTreeSet<String> {
    addrs.iter().map(|a| a.to_string()).collect()
}

/// Waits up to 10 s for `check`, polling.
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..500 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}");
}

/// The value of the series `name{labels}` in the gateway's metrics.
fn metric(gateway: &Gateway, series: &str) -> Option<f64> {
    gateway
        .registry()
        .encode()
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rewritten_file_moves_traffic_without_failing_requests_in_flight() {
    let (a, b, c) = (
        Upstream::start("a").await,
        Upstream::start("b").await,
        Upstream::start("c").await,
    );
    let dir = Scratch::new("rewrite");
    std::fs::write(dir.path("targets.json"), targets(&[a.addr, b.addr])).unwrap();
    // A long dns_refresh: only the watcher can make this test pass in time.
    // No stall detection: the slow requests are meant to be slow.
    let (gateway, base) = gateway(
        &dir,
        "discovery = { file = \"targets.json\" }\ndns_refresh = \"1h\"\nstall_detection = false",
    )
    .await;
    assert_eq!(endpoints(&gateway), set(&[a.addr, b.addr]));
    let client = client();
    for _ in 0..10 {
        assert_eq!(get(&client, &format!("{base}/")).await.0, 200);
    }
    assert!(a.hits() > 0 && b.hits() > 0 && c.hits() == 0);

    // Slow requests in the air on A and B while the file changes.
    let slow: Vec<_> = (0..16)
        .map(|_| {
            let client = client.clone();
            let url = format!("{base}/slow?delay_ms=1200");
            tokio::spawn(async move { get(&client, &url).await })
        })
        .collect();
    eventually("the slow requests to reach the upstreams", || {
        a.hits() + b.hits() >= 10 + 16
    })
    .await;
    replace(&dir.path("targets.json"), &targets(&[b.addr, c.addr]));
    eventually("the new set", || {
        endpoints(&gateway) == set(&[b.addr, c.addr])
    })
    .await;
    for request in slow {
        let (status, body) = request.await.unwrap();
        assert_eq!(status, 200, "a request in flight failed: {body}");
        assert!(body == "a" || body == "b", "{body}");
    }

    let a_before = a.hits();
    let c_before = c.hits();
    for _ in 0..10 {
        let (status, body) = get(&client, &format!("{base}/")).await;
        assert_eq!(status, 200);
        assert!(body == "b" || body == "c", "{body}");
    }
    assert_eq!(a.hits(), a_before, "A left the view");
    assert!(c.hits() > c_before, "C takes traffic");

    // B stayed the same endpoint: its latency estimate still remembers
    // the slow requests (a new one would start from 1 ms).
    let status = orders(&gateway);
    let b_status = status
        .endpoints
        .iter()
        .find(|e| e.address == b.addr.to_string())
        .unwrap();
    assert!(
        b_status.ewma_latency_seconds > 0.1,
        "{}",
        b_status.ewma_latency_seconds
    );
    assert_eq!(b_status.source, "file");
    assert_eq!(status.discovery.len(), 1);
    assert_eq!(status.discovery[0].source, "file");
    assert_eq!(status.discovery[0].endpoints, 2);
    assert!(status.discovery[0].last_error.is_none());
    let shown = serde_json::to_value(&status).unwrap();
    assert_eq!(shown["discovery"][0]["source"], "file");

    assert_eq!(
        metric(
            &gateway,
            r#"levee_discovery_updates_total{cluster="orders",source="file",result="applied"}"#
        ),
        Some(2.0),
        "one set at start, one after the rewrite"
    );
    assert_eq!(
        metric(&gateway, r#"levee_cluster_endpoints{cluster="orders"}"#),
        Some(2.0)
    );
    let text = gateway.registry().encode();
    assert!(
        !text.contains(&format!("endpoint=\"{}\"", a.addr)),
        "A's series are gone"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_or_empty_file_keeps_the_last_good_set_and_says_where() {
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    let dir = Scratch::new("broken");
    let file = dir.path("targets.json");
    std::fs::write(&file, targets(&[a.addr])).unwrap();
    let (gateway, base) = gateway(
        &dir,
        "discovery = { file = \"targets.json\" }\ndns_refresh = \"1h\"",
    )
    .await;
    let client = client();
    let error = || orders(&gateway).discovery[0].last_error.clone();

    replace(
        &file,
        &format!(
            "[\n  {{ \"targets\": [\"{}\",\n    \"{}\"] }}\n]\n",
            b.addr, "orders-2.internal"
        ),
    );
    eventually("the error", || error().is_some()).await;
    let message = error().unwrap();
    assert!(
        message.contains("targets.json:3:5: [0].targets[1]: `orders-2.internal` is not host:port"),
        "{message}"
    );
    assert_eq!(endpoints(&gateway), set(&[a.addr]));
    assert_eq!(
        get(&client, &format!("{base}/")).await,
        (200, "a".to_string())
    );

    replace(&file, "[]\n");
    eventually("the empty file noticed", || {
        error().is_some_and(|e| e.contains("no endpoints found"))
    })
    .await;
    assert_eq!(endpoints(&gateway), set(&[a.addr]));
    assert_eq!(
        get(&client, &format!("{base}/")).await,
        (200, "a".to_string())
    );
    let errors = metric(
        &gateway,
        r#"levee_discovery_updates_total{cluster="orders",source="file",result="error"}"#,
    );
    assert!(errors.is_some_and(|n| n >= 2.0), "{errors:?}");

    replace(&file, &targets(&[b.addr]));
    eventually("the fixed file", || endpoints(&gateway) == set(&[b.addr])).await;
    assert!(error().is_none());
    assert_eq!(
        get(&client, &format!("{base}/")).await,
        (200, "b".to_string())
    );
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configmap_style_symlink_swap_is_followed() {
    use std::os::unix::fs::symlink;
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    let dir = Scratch::new("configmap");
    let yaml = |addr: SocketAddr| format!("- targets: [\"{addr}\"]\n  labels:\n    zone: eu-1a\n");
    // What the kubelet lays out: a timestamped directory, `..data`
    // pointing at it, and the key as a symlink through `..data`.
    std::fs::create_dir(dir.path("..2026_01_01_00_00_00.1")).unwrap();
    std::fs::write(
        dir.path("..2026_01_01_00_00_00.1/targets.yaml"),
        yaml(a.addr),
    )
    .unwrap();
    symlink("..2026_01_01_00_00_00.1", dir.path("..data")).unwrap();
    symlink("..data/targets.yaml", dir.path("targets.yaml")).unwrap();
    let (gateway, base) = gateway(
        &dir,
        "discovery = { file = \"targets.yaml\" }\ndns_refresh = \"1h\"",
    )
    .await;
    assert_eq!(endpoints(&gateway), set(&[a.addr]));
    assert_eq!(orders(&gateway).endpoints[0].zone.as_deref(), Some("eu-1a"));

    // The update: a new directory, a new `..data` renamed over the old.
    std::fs::create_dir(dir.path("..2026_01_01_00_01_00.2")).unwrap();
    std::fs::write(
        dir.path("..2026_01_01_00_01_00.2/targets.yaml"),
        yaml(b.addr),
    )
    .unwrap();
    symlink("..2026_01_01_00_01_00.2", dir.path("..data_tmp")).unwrap();
    std::fs::rename(dir.path("..data_tmp"), dir.path("..data")).unwrap();
    std::fs::remove_dir_all(dir.path("..2026_01_01_00_00_00.1")).unwrap();

    eventually("the swapped set", || endpoints(&gateway) == set(&[b.addr])).await;
    assert_eq!(
        get(&client(), &format!("{base}/")).await,
        (200, "b".to_string())
    );
}

/// What the test DNS server answers: SRV records for `orders.test`
/// targets on 127.0.0.1, or SERVFAIL.
#[derive(Clone)]
enum Zone {
    Records(Vec<(u16, u16, u16)>),
    ServFail,
}

const SRV_NAME: &str = "_http._tcp.orders.test";

/// A UDP DNS server answering SRV questions from `zone`: each record's
/// target is `upstream-N.orders.test`, with an A record for 127.0.0.1 in
/// the additional section, TTL 1.
async fn dns_server(zone: Arc<Mutex<Zone>>, questions: Arc<AtomicUsize>) -> SocketAddr {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = [0u8; 512];
        while let Ok((n, from)) = socket.recv_from(&mut buf).await {
            questions.fetch_add(1, Ordering::SeqCst);
            let query = &buf[..n];
            // The question: the name's labels, its zero byte, type, class.
            let mut end = 12;
            while end < n && query[end] != 0 {
                end += 1 + usize::from(query[end]);
            }
            let question = &query[12..end + 5];
            let zone = zone.lock().unwrap().clone();
            let records = match &zone {
                Zone::Records(r) => r.clone(),
                Zone::ServFail => Vec::new(),
            };
            let mut out = Vec::new();
            out.extend_from_slice(&query[..2]);
            let flags: u16 = if matches!(zone, Zone::ServFail) {
                0x8182
            } else {
                0x8580
            };
            out.extend_from_slice(&flags.to_be_bytes());
            let count = records.len() as u16;
            for c in [1, count, 0, count] {
                out.extend_from_slice(&u16::to_be_bytes(c));
            }
            out.extend_from_slice(question);
            let target = |i: usize| {
                let mut name = Vec::new();
                for label in [format!("upstream-{i}"), "orders".into(), "test".into()] {
                    name.push(label.len() as u8);
                    name.extend_from_slice(label.as_bytes());
                }
                name.push(0);
                name
            };
            for (i, (priority, weight, port)) in records.iter().enumerate() {
                out.extend_from_slice(&[0xC0, 12, 0, 33, 0, 1, 0, 0, 0, 1]);
                let mut data = Vec::new();
                for v in [priority, weight, port] {
                    data.extend_from_slice(&v.to_be_bytes());
                }
                data.extend_from_slice(&target(i));
                out.extend_from_slice(&(data.len() as u16).to_be_bytes());
                out.extend_from_slice(&data);
            }
            for i in 0..records.len() {
                out.extend_from_slice(&target(i));
                out.extend_from_slice(&[0, 1, 0, 1, 0, 0, 0, 1, 0, 4, 127, 0, 0, 1]);
            }
            let _ = socket.send_to(&out, from).await;
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn srv_answers_from_a_dns_server_feed_the_cluster() {
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    let zone = Arc::new(Mutex::new(Zone::Records(vec![(10, 1, a.addr.port())])));
    let questions = Arc::new(AtomicUsize::new(0));
    let server = dns_server(zone.clone(), questions.clone()).await;
    let dir = Scratch::new("srv");
    let (gateway, base) = gateway(
        &dir,
        &format!("discovery = {{ srv = \"{SRV_NAME}\", nameserver = \"{server}\" }}\ndns_refresh = \"200ms\""),
    )
    .await;
    assert_eq!(endpoints(&gateway), set(&[a.addr]));
    let client = client();
    assert_eq!(
        get(&client, &format!("{base}/")).await,
        (200, "a".to_string())
    );
    let shown = orders(&gateway);
    assert_eq!(
        shown.endpoints[0].configured,
        format!("upstream-0.orders.test:{}", a.addr.port())
    );
    assert_eq!(shown.endpoints[0].source, "srv");
    assert_eq!(shown.discovery[0].target, SRV_NAME);

    // B joins at the same priority; a third record, at a worse priority,
    // becomes a failover level.
    *zone.lock().unwrap() = Zone::Records(vec![
        (10, 1, a.addr.port()),
        (10, 1, b.addr.port()),
        (20, 1, 1),
    ]);
    let both = {
        let mut s = set(&[a.addr, b.addr]);
        s.insert("127.0.0.1:1".to_string());
        s
    };
    eventually("the new answer", || endpoints(&gateway) == both).await;
    let status = orders(&gateway);
    let priority = |port: u16| {
        status
            .endpoints
            .iter()
            .find(|e| e.address.ends_with(&format!(":{port}")))
            .unwrap()
            .priority
    };
    assert_eq!(
        (
            priority(a.addr.port()),
            priority(b.addr.port()),
            priority(1)
        ),
        (0, 0, 1)
    );
    let b_before = b.hits();
    for _ in 0..10 {
        assert_eq!(get(&client, &format!("{base}/")).await.0, 200);
    }
    assert!(b.hits() > b_before, "B takes traffic");

    // A failing server changes nothing.
    *zone.lock().unwrap() = Zone::ServFail;
    let asked = questions.load(Ordering::SeqCst);
    eventually("the failure noticed", || {
        orders(&gateway).discovery[0]
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("RCODE 2"))
    })
    .await;
    eventually("more questions", || {
        questions.load(Ordering::SeqCst) > asked + 2
    })
    .await;
    assert_eq!(endpoints(&gateway), both);
    assert_eq!(get(&client, &format!("{base}/")).await.0, 200);
    let errors = metric(
        &gateway,
        r#"levee_discovery_updates_total{cluster="orders",source="srv",result="error"}"#,
    );
    assert!(errors.is_some_and(|n| n >= 1.0), "{errors:?}");
}
