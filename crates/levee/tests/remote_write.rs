//! `[remote_write]` against a real Prometheus (Debian's `prometheus`,
//! started with its remote-write receiver on a free port): the gateway's
//! series arrive with the configured labels and read back with PromQL.
//! Without the binary the test fails under CI and skips loudly elsewhere.

use levee_testkit::{eventually, Client, FakeUpstream, TestGateway};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

struct Prometheus {
    child: Child,
    port: u16,
    dir: std::path::PathBuf,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_prometheus() -> Option<Prometheus> {
    let dir = std::env::temp_dir().join(format!("levee-rw-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("prometheus.yml"),
        "global:\n  scrape_interval: 1m\n",
    )
    .unwrap();
    let port = free_port();
    let child = Command::new("prometheus")
        .arg(format!(
            "--config.file={}",
            dir.join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--web.enable-remote-write-receiver")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    match child {
        Ok(child) => Some(Prometheus { child, port, dir }),
        Err(e) => {
            assert!(
                std::env::var_os("CI").is_none(),
                "prometheus cannot run ({e}); CI must install it (Debian package `prometheus`)"
            );
            eprintln!("\n!!! SKIPPED remote_write: prometheus cannot run ({e})\n");
            None
        }
    }
}

#[tokio::test]
async fn series_are_pushed_and_read_back_with_promql() {
    let Some(prom) = start_prometheus() else {
        return;
    };
    let base = format!("http://127.0.0.1:{}", prom.port);
    let port = prom.port;
    eventually(
        Duration::from_secs(30),
        "prometheus listens",
        || async move {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
        },
    )
    .await;
    eventually(Duration::from_secs(30), "prometheus is ready", || async {
        Client::http1().get(&format!("{base}/-/ready")).await.status == 200
    })
    .await;
    let upstream = FakeUpstream::start("shop").await;
    let gw = TestGateway::start(&format!(
        r#"[admin]
listen = "127.0.0.1:0"
[[listeners]]
name = "public"
listen = "127.0.0.1:0"
[[routes]]
name = "checkout"
cluster = "shop"
[[clusters]]
name = "shop"
endpoints = ["{}"]
[remote_write]
url = "{base}/api/v1/write"
interval = "1s"
labels = {{ replica = "r1" }}
"#,
        upstream.addr()
    ))
    .await;
    for _ in 0..7 {
        assert_eq!(
            Client::http1()
                .get(&format!("{}/", gw.url("public")))
                .await
                .status,
            200
        );
    }
    let query = format!(
        "{base}/api/v1/query?query=sum(levee_requests_total%7Broute%3D%22checkout%22%2Creplica%3D%22r1%22%7D)"
    );
    eventually(
        Duration::from_secs(30),
        "Prometheus holds the 7 requests",
        || async {
            let v = Client::http1().get(&query).await.json();
            v["data"]["result"][0]["value"][1].as_str() == Some("7")
        },
    )
    .await;
    assert!(gw.metric("levee_remote_writes_total{result=\"ok\"}") >= 1.0);
}
