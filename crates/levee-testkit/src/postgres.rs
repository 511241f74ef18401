//! A real PostgreSQL server for tests: a fresh cluster (`initdb`) in a
//! temporary directory, on a free loopback port, stopped and removed when
//! dropped.
//!
//! PostgreSQL refuses to run as root, and CI runs as root: then the
//! cluster belongs to, and the server runs as, an unprivileged user
//! (`LEVEE_PG_USER`, else `nobody`), switched to by the child process
//! itself, so the process the fixture kills is the server. Binaries come
//! from `LEVEE_PG_BIN`, else the newest `/usr/lib/postgresql/*/bin`
//! (Debian's layout), else `PATH`. Missing binaries fail the test under
//! `CI=true` and skip it, loudly, elsewhere.
//!
//! Only the standard library, so that `levee-store`'s tests can include
//! this file (`#[path]`) without depending on the whole test kit.

use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running PostgreSQL server with a `levee` superuser and no password
/// (trust authentication, loopback only).
#[derive(Debug)]
pub struct PostgresServer {
    child: Option<Child>,
    port: u16,
    bin: PathBuf,
    dir: PathBuf,
    /// `(uid, gid)` the server runs as, when the tests run as root.
    user: Option<(u32, u32)>,
}

impl PostgresServer {
    /// A new cluster for `test` (named in its directory), started and
    /// accepting connections; `None` when PostgreSQL is not installed and
    /// this is not CI (the test should return early: it was skipped).
    pub fn start(test: &str) -> Option<Self> {
        let Some(bin) = find_binaries() else {
            let message = "PostgreSQL is not installed (initdb and postgres not found in \
                           LEVEE_PG_BIN, /usr/lib/postgresql/*/bin or PATH); \
                           apt-get install postgresql (.ci/run does)";
            assert!(std::env::var("CI").as_deref() != Ok("true"), "{message}");
            eprintln!("SKIPPED {test}: {message}");
            return None;
        };
        let dir = std::env::temp_dir().join(format!(
            "levee-pg-{test}-{}-{}",
            std::process::id(),
            std::time::SystemTime::UNIX_EPOCH
                .elapsed()
                .map_or(0, |d| d.as_nanos())
        ));
        std::fs::create_dir_all(&dir).expect("a temporary directory for PostgreSQL");
        let user = if running_as_root() {
            let (uid, gid) = unprivileged_user();
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid))
                .expect("giving the cluster's directory to the unprivileged user");
            Some((uid, gid))
        } else {
            None
        };
        let port = free_port();
        let mut server = Self {
            child: None,
            port,
            bin,
            dir,
            user,
        };
        let initdb = server
            .command("initdb")
            .args(["-D"])
            .arg(server.data_dir())
            .args([
                "-U",
                "levee",
                "--auth=trust",
                "--encoding=UTF8",
                "--no-locale",
                "--no-sync",
            ])
            .output()
            .expect("running initdb");
        assert!(
            initdb.status.success(),
            "initdb failed: {}\n{}",
            String::from_utf8_lossy(&initdb.stdout),
            String::from_utf8_lossy(&initdb.stderr)
        );
        server.start_again();
        Some(server)
    }

    /// Starts the server again on the same port and data (after
    /// [`PostgresServer::stop`]), and waits until it accepts connections.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "the server is running already");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("server.log"))
            .expect("the server's log file");
        let child = self
            .command("postgres")
            .arg("-D")
            .arg(self.data_dir())
            .args(["-p", &self.port.to_string(), "-k"])
            .arg(&self.dir)
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                // A test's data need not survive a power loss, but must
                // survive the server's crash (`stop`): commits stay
                // synchronous, written to the OS without fsync.
                "-c",
                "fsync=off",
                "-c",
                "full_page_writes=off",
            ])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting postgres");
        self.child = Some(child);
        self.wait_until_ready();
    }

    /// Stops the server at once (PostgreSQL's immediate shutdown, as a
    /// crash would) and waits for it to exit. Its data stays.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // SIGQUIT: the server ends its backends and exits without a
        // checkpoint; SIGKILL would leave them holding shared memory.
        let _ = Command::new("kill")
            .args(["-QUIT", &child.id().to_string()])
            .status();
        #[allow(clippy::disallowed_methods)] // a real process, in real time
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            #[allow(clippy::disallowed_methods)]
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Freezes the server (SIGSTOP): connections stay open and nothing
    /// answers, as with a hung host or a network that drops packets.
    pub fn freeze(&self) {
        self.signal("-STOP");
    }

    /// Undoes [`PostgresServer::freeze`].
    pub fn thaw(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        if let Some(child) = &self.child {
            // The postmaster and its backends: they share its process group
            // only when it leads one, so signal the backends by parent.
            let pid = child.id().to_string();
            let _ = Command::new("pkill").args([signal, "-P", &pid]).status();
            let _ = Command::new("kill").args([signal, &pid]).status();
        }
    }

    /// `postgres://levee@127.0.0.1:<port>/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://levee@127.0.0.1:{}/postgres", self.port)
    }

    /// Its address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The directory of PostgreSQL's binaries in use (for `psql`,
    /// `pg_dump`, ...).
    pub fn bin(&self) -> &Path {
        &self.bin
    }

    /// Runs `psql` with `sql` on the server's `postgres` database and
    /// returns its output (unaligned, tuples only); panics if it fails.
    pub fn psql(&self, sql: &str) -> String {
        let out = Command::new(self.tool("psql"))
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d"])
            .arg(self.url())
            .args(["-c", sql])
            .output()
            .expect("running psql");
        assert!(
            out.status.success(),
            "psql {sql:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn tool(&self, name: &str) -> PathBuf {
        let path = self.bin.join(name);
        if path.exists() {
            path
        } else {
            PathBuf::from(name)
        }
    }

    /// `name` from the binaries, as the unprivileged user when root.
    fn command(&self, name: &str) -> Command {
        let mut command = Command::new(self.tool(name));
        command.current_dir(&self.dir);
        if let Some((uid, gid)) = self.user {
            // The child switches before exec: no wrapper process between
            // the fixture and the server, and no supplementary groups.
            command.uid(uid).gid(gid);
        }
        command
    }

    fn wait_until_ready(&mut self) {
        #[allow(clippy::disallowed_methods)] // a real process, in real time
        let deadline = Instant::now() + Duration::from_secs(30);
        let ready = self.bin.join("pg_isready");
        loop {
            let up = if ready.exists() {
                Command::new(&ready)
                    .args(["-q", "-h", "127.0.0.1", "-p", &self.port.to_string()])
                    .status()
                    .is_ok_and(|s| s.success())
            } else {
                TcpStream::connect(self.addr()).is_ok()
            };
            if up {
                return;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!(
                    "postgres exited ({status}) on port {}: {}",
                    self.port,
                    std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
                );
            }
            #[allow(clippy::disallowed_methods)]
            let waiting = Instant::now() < deadline;
            assert!(waiting, "postgres did not start on port {}", self.port);
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The directory holding `initdb` and `postgres`, if any.
fn find_binaries() -> Option<PathBuf> {
    let has_both = |dir: &Path| dir.join("initdb").exists() && dir.join("postgres").exists();
    if let Some(dir) = std::env::var_os("LEVEE_PG_BIN").map(PathBuf::from) {
        return has_both(&dir).then_some(dir);
    }
    // Debian keeps the server's binaries out of PATH, one directory per
    // major version: the newest wins.
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let major = e.file_name().to_str()?.parse().ok()?;
            Some((major, e.path().join("bin")))
        })
        .filter(|(_, bin)| has_both(bin))
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Some(bin);
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .find(|dir| has_both(dir))
}

fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

/// `LEVEE_PG_USER` (else `nobody`) from `/etc/passwd`, as `(uid, gid)`.
fn unprivileged_user() -> (u32, u32) {
    let name = std::env::var("LEVEE_PG_USER").unwrap_or_else(|_| "nobody".to_owned());
    let passwd = std::fs::read_to_string("/etc/passwd").expect("reading /etc/passwd");
    passwd
        .lines()
        .find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            (fields.first() == Some(&name.as_str()) && fields.len() > 3)
                .then(|| Some((fields[2].parse().ok()?, fields[3].parse().ok()?)))
                .flatten()
        })
        .unwrap_or_else(|| panic!("no user {name} in /etc/passwd to run PostgreSQL as"))
}
