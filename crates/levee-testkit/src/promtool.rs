//! Prometheus's `promtool`, to check the rules `levee slo rules` writes and
//! to run unit tests on them. It comes from Debian's `prometheus` package,
//! which CI installs (`.ci/run`). Missing, it fails the test when `CI` is
//! set and otherwise skips it with a note on stderr that cannot be
//! overlooked.

use crate::TempDir;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};

/// The name the rules file gets in the run's directory (unit tests list it
/// in `rule_files`).
pub const RULES_FILE: &str = "rules.yaml";

/// The name the unit-test file gets in the run's directory.
pub const TEST_FILE: &str = "test.yaml";

/// A `promtool` that runs.
#[derive(Debug, Clone)]
pub struct Promtool {
    program: PathBuf,
}

impl Promtool {
    /// `promtool` from `PATH`, if it runs. When it does not: under CI (`CI`
    /// set) the test fails; elsewhere this prints a skip note naming `test`
    /// and returns `None`, and the caller skips what needs it.
    pub fn find(test: &str) -> Option<Promtool> {
        Self::find_in(
            Path::new("promtool"),
            test,
            std::env::var_os("CI").is_some(),
        )
    }

    fn find_in(program: &Path, test: &str, ci: bool) -> Option<Promtool> {
        let why = match Command::new(program).arg("--version").output() {
            Ok(out) if out.status.success() => {
                return Some(Promtool {
                    program: program.to_path_buf(),
                })
            }
            Ok(out) => format!("`promtool --version` exited with {}", out.status),
            Err(e) => format!("cannot run promtool: {e}"),
        };
        assert!(
            !ci,
            "{why}; CI must install it (Debian package `prometheus`, see .ci/run)"
        );
        // Straight to stderr: the test harness captures `eprintln!` of
        // passing tests, and this note must not be missed.
        let note = format!(
            "\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n\
             !!! SKIPPED {test}: {why}.\n\
             !!! Install promtool (`apt-get install prometheus`) to run this test.\n\
             !!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n"
        );
        let _ = std::io::stderr().write_all(note.as_bytes());
        None
    }

    /// `promtool check rules rules.yaml` on `rules` written to a fresh
    /// directory.
    pub fn check_rules(&self, rules: &str) -> PromtoolRun {
        let dir = TempDir::new();
        write(&dir.path, RULES_FILE, rules);
        self.run(dir, &["check", "rules", RULES_FILE])
    }

    /// `promtool test rules test.yaml` with `rules` as `rules.yaml` beside
    /// it (so `test` names it in `rule_files`).
    pub fn test_rules(&self, rules: &str, test: &str) -> PromtoolRun {
        let dir = TempDir::new();
        write(&dir.path, RULES_FILE, rules);
        write(&dir.path, TEST_FILE, test);
        self.run(dir, &["test", "rules", TEST_FILE])
    }

    fn run(&self, dir: TempDir, args: &[&str]) -> PromtoolRun {
        let out = Command::new(&self.program)
            .args(args)
            .current_dir(&dir.path)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.program.display()));
        PromtoolRun {
            command: format!("{} {}", self.program.display(), args.join(" ")),
            status: out.status,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            dir,
        }
    }
}

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text)
        .unwrap_or_else(|e| panic!("write {}: {e}", dir.join(name).display()));
}

/// A finished promtool run. Its directory (with the files it read) lives
/// as long as the run, so a failure message can point at it.
#[derive(Debug)]
pub struct PromtoolRun {
    /// The command line.
    pub command: String,
    /// Its exit status.
    pub status: ExitStatus,
    /// What it printed to stdout.
    pub stdout: String,
    /// What it printed to stderr.
    pub stderr: String,
    dir: TempDir,
}

impl PromtoolRun {
    /// The directory it ran in.
    pub fn dir(&self) -> &Path {
        &self.dir.path
    }

    /// Whether it exited 0.
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// Everything about the run, for an assertion message.
    pub fn context(&self) -> String {
        format!(
            "command: {}\ncwd: {}\nstatus: {}\n--- stdout ---\n{}\n--- stderr ---\n{}\n--------------",
            self.command,
            self.dir().display(),
            self.status,
            self.stdout,
            self.stderr
        )
    }

    /// Asserts it exited 0 and printed `needle` to stdout; `what` says
    /// what failed otherwise.
    #[track_caller]
    pub fn expect_success(&self, needle: &str, what: &str) -> &Self {
        assert_eq!(
            self.status.code(),
            Some(0),
            "expected exit code 0\n{}",
            self.context()
        );
        assert!(self.stdout.contains(needle), "{what}\n{}", self.context());
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_promtool_fails_the_test_under_ci() {
        // (Outside CI it prints a note past the harness's capture, so that
        // half is left to the tests that need promtool.)
        let missing = Path::new("/nonexistent/promtool");
        let under_ci = std::panic::catch_unwind(|| Promtool::find_in(missing, "ci", true));
        let message = under_ci.expect_err("CI fails the test");
        let message = message
            .downcast_ref::<String>()
            .cloned()
            .unwrap_or_default();
        assert!(message.contains("CI must install it"), "{message}");
    }
}
