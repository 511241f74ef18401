//! Running the real `levee` binary (and other programs) from integration
//! tests: each finished run keeps what explains a failure (command,
//! working directory, exit status, stdout and stderr).

// Each test crate uses part of this module.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output};

/// The binary under test.
pub(crate) const LEVEE: &str = env!("CARGO_BIN_EXE_levee");

/// Variables the examples interpolate or that change logging; removed so
/// results do not depend on whoever runs the tests.
pub(crate) const SCRUBBED_ENV: [&str; 5] = [
    "LEVEE_CONFIG",
    "LEVEE_ADMIN_TOKEN",
    "LEVEE_ADMIN_LISTEN",
    "DEPLOY_ENV",
    "RUST_LOG",
];

/// The workspace root, where `examples/` lives.
pub(crate) fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the workspace root exists")
}

/// A fresh, empty directory for one test's files, named after the test
/// crate (`suite`) and the test.
pub(crate) fn scratch_dir(suite: &str, test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("levee-{suite}-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

/// `program ARGS` in `cwd`, with the scrubbed environment.
pub(crate) fn command(program: &str, args: &[&str], cwd: &Path) -> Command {
    let mut cmd = Command::new(program);
    cmd.args(args).current_dir(cwd);
    for var in SCRUBBED_ENV {
        cmd.env_remove(var);
    }
    cmd
}

/// A finished run of a program.
pub(crate) struct Run {
    pub(crate) command: String,
    pub(crate) cwd: PathBuf,
    pub(crate) status: ExitStatus,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl Run {
    /// The finished run described by `command` in `cwd`.
    pub(crate) fn of(command: String, cwd: PathBuf, output: Output) -> Self {
        Self {
            command,
            cwd,
            status: output.status,
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Everything about the run, for an assertion message.
    pub(crate) fn context(&self) -> String {
        format!(
            "command: {}\ncwd: {}\nstatus: {}\n--- stdout ---\n{}\n--- stderr ---\n{}\n--------------",
            self.command,
            self.cwd.display(),
            self.status,
            self.stdout,
            self.stderr
        )
    }

    #[track_caller]
    pub(crate) fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.status.code(),
            Some(code),
            "expected exit code {code}\n{}",
            self.context()
        );
        self
    }

    #[track_caller]
    pub(crate) fn expect(&self, ok: bool, what: &str) -> &Self {
        assert!(ok, "{what}\n{}", self.context());
        self
    }

    #[track_caller]
    pub(crate) fn expect_stdout(&self, needle: &str) -> &Self {
        assert!(
            self.stdout.contains(needle),
            "stdout lacks {needle:?}\n{}",
            self.context()
        );
        self
    }

    #[track_caller]
    pub(crate) fn expect_stderr(&self, needle: &str) -> &Self {
        assert!(
            self.stderr.contains(needle),
            "stderr lacks {needle:?}\n{}",
            self.context()
        );
        self
    }
}

/// Runs `program ARGS` in `cwd` to completion.
pub(crate) fn run(program: &str, args: &[&str], cwd: &Path) -> Run {
    let Output {
        status,
        stdout,
        stderr,
    } = command(program, args, cwd)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    Run {
        command: format!("{program} {}", args.join(" ")),
        cwd: cwd.to_path_buf(),
        status,
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

/// Runs `levee ARGS` in `cwd` to completion.
pub(crate) fn levee(args: &[&str], cwd: &Path) -> Run {
    run(LEVEE, args, cwd)
}

/// A `levee` process left running, its stdout and stderr read line by line
/// in the background; killed when dropped.
pub(crate) struct Spawned {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
    /// Every line read so far, for failure messages.
    pub(crate) seen: Vec<String>,
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Spawned {
    /// Starts `levee ARGS` in `cwd` with the scrubbed environment.
    pub(crate) fn levee(args: &[&str], cwd: &Path) -> Self {
        use std::io::BufRead as _;
        let mut child = command(LEVEE, args, cwd)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start levee: {e}"));
        let (tx, lines) = std::sync::mpsc::channel();
        let stdout: Box<dyn std::io::Read + Send> = Box::new(child.stdout.take().expect("piped"));
        let stderr: Box<dyn std::io::Read + Send> = Box::new(child.stderr.take().expect("piped"));
        for stream in [stdout, stderr] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(stream)
                    .lines()
                    .map_while(Result::ok)
                {
                    let _ = tx.send(line);
                }
            });
        }
        Self {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Lines up to and including the first containing `needle`, read
    /// within `wait`; panics with everything seen otherwise.
    pub(crate) fn lines_until(&mut self, needle: &str, wait: std::time::Duration) -> Vec<String> {
        let deadline = levee_core::time::now() + wait;
        let mut out = Vec::new();
        while let Some(left) = deadline.checked_duration_since(levee_core::time::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    let done = line.contains(needle);
                    out.push(line);
                    if done {
                        return out;
                    }
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => break,
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    let status = self.child.wait().ok();
                    panic!(
                        "levee exited ({status:?}) before printing {needle:?}; output:\n{}",
                        self.seen.join("\n")
                    );
                }
            }
        }
        panic!(
            "levee never printed {needle:?} within {wait:?}; output:\n{}",
            self.seen.join("\n")
        );
    }

    /// The output so far, for assertion messages.
    pub(crate) fn output(&mut self) -> String {
        while let Ok(line) = self.lines.try_recv() {
            self.seen.push(line);
        }
        self.seen.join("\n")
    }

    /// `levee --log-format json run -c CONFIG` in `cwd`, once its admin
    /// API listens: the process, the address of listener `public` and the
    /// admin API's, read from the JSON log.
    pub(crate) fn levee_run(config: &Path, cwd: &Path) -> (Self, SocketAddr, SocketAddr) {
        let arg = config.to_str().expect("UTF-8 temp path");
        let mut process = Self::levee(&["--log-format", "json", "run", "-c", arg], cwd);
        let lines = process.lines_until("admin API listening", std::time::Duration::from_secs(30));
        let proxy = logged_address(&lines, "listening", Some("public"))
            .unwrap_or_else(|| panic!("no listening line:\n{}", process.output()));
        let admin = logged_address(&lines, "admin API listening", None)
            .unwrap_or_else(|| panic!("no admin line:\n{}", process.output()));
        (process, proxy, admin)
    }

    /// The process, to signal it or wait for its exit.
    pub(crate) fn process(&mut self) -> &mut std::process::Child {
        &mut self.child
    }
}

/// The `address` of the first JSON log line whose `message` is `message`
/// (and, for listeners, whose `listener` is `listener`).
pub(crate) fn logged_address(
    lines: &[String],
    message: &str,
    listener: Option<&str>,
) -> Option<SocketAddr> {
    lines.iter().find_map(|l| {
        let v: serde_json::Value = serde_json::from_str(l).ok()?;
        let matches = v["message"] == message && listener.is_none_or(|name| v["listener"] == name);
        matches
            .then(|| v["address"].as_str()?.parse().ok())
            .flatten()
    })
}
