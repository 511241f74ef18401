//! A real `redis-server` for tests, on a free loopback port, without
//! persistence; stopped (killed) when dropped. CI installs the Debian
//! package (`.ci/run`); a missing binary is a clear panic, not a skip.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running Redis server.
#[derive(Debug)]
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
}

impl RedisServer {
    /// Starts one on a free port and waits until it accepts connections.
    pub async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        Self::start_on(port).await
    }

    /// Starts one on `port` (to restart a stopped one where it was).
    pub async fn start_on(port: u16) -> Self {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (apt-get install redis-server; .ci/run does)");
        let server = Self {
            child: Some(child),
            port,
        };
        // A real process starts in real time, even in a test that paused
        // tokio's clock.
        #[allow(clippy::disallowed_methods)]
        let deadline = Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(server.addr()).await.is_err() {
            #[allow(clippy::disallowed_methods)]
            let waiting = Instant::now() < deadline;
            assert!(waiting, "redis-server did not start on {port}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        server
    }

    /// Its address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills it at once (as a crash would).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
