//! A real `nats-server` with JetStream for tests, on a free loopback port
//! with its storage in a fresh directory; killed when dropped. It comes
//! from Debian's `nats-server` package (installed in `/usr/sbin`), which
//! CI installs (`.ci/run`). Missing, a test fails when `CI` is set and
//! otherwise skips with a note on stderr that cannot be overlooked (as
//! [`crate::Promtool`] does).

use crate::TempDir;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Where Debian puts the binary (not on a normal user's `PATH`).
const DEBIAN_PATH: &str = "/usr/sbin/nats-server";

/// A running NATS server with JetStream enabled.
#[derive(Debug)]
pub struct NatsServer {
    child: Option<Child>,
    port: u16,
    _store: TempDir,
}

impl NatsServer {
    /// Starts one and waits until it accepts connections. When
    /// `nats-server` is missing: under CI (`CI` set) the test fails;
    /// elsewhere this prints a skip note naming `test` and returns `None`,
    /// and the caller skips what needs it.
    pub async fn start(test: &str) -> Option<NatsServer> {
        let program = find(test, std::env::var_os("CI").is_some())?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let store = TempDir::new();
        let child = Command::new(&program)
            .arg("-js")
            .args(["-a", "127.0.0.1", "-p", &port.to_string()])
            .arg("-sd")
            .arg(&store.path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
        let server = NatsServer {
            child: Some(child),
            port,
            _store: store,
        };
        // A real process starts in real time, even in a test that paused
        // tokio's clock: count attempts, not time.
        let mut attempts = 0;
        while tokio::net::TcpStream::connect(server.addr()).await.is_err() {
            attempts += 1;
            assert!(attempts < 500, "nats-server did not start on {port}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Some(server)
    }

    /// Its address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Kills it at once (as a crash would).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn find(test: &str, ci: bool) -> Option<PathBuf> {
    let candidates = [PathBuf::from("nats-server"), PathBuf::from(DEBIAN_PATH)];
    if let Some(found) = candidates.iter().find(|p| runs(p)) {
        return Some(found.clone());
    }
    let why = "nats-server is not installed";
    assert!(
        !ci,
        "{why}; CI must install it (Debian package `nats-server`, see .ci/run)"
    );
    // Straight to stderr: the test harness captures `eprintln!` of passing
    // tests, and this note must not be missed.
    let note = format!(
        "\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n\
         !!! SKIPPED {test}: {why}.\n\
         !!! Install it (`apt-get install nats-server`) to run this test.\n\
         !!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n"
    );
    let _ = std::io::stderr().write_all(note.as_bytes());
    None
}

fn runs(program: &Path) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
