//! `levee rollout` as an operator runs it: the real binary against a real
//! `levee run` whose route `api` moves from cluster `v1` to `v2` when its
//! config is rewritten and reloaded. With no traffic the judge never
//! decides, so the rollout stays `progressing` and the commands drive it:
//! status (text and JSON), pause and resume, abort, promote, undo, and the
//! exit codes for refusals, unknown routes, missing or wrong tokens and an
//! admin API that is not there. Gateways' answers show which version
//! serves after each command.

use levee_testkit::{Client, FakeUpstream};
use serde_json::Value;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

mod common;

use common::{Run, Spawned, LEVEE};

/// The admin token of the gateway under test.
const TOKEN: &str = "rollout-cli-test-token-0123456789";
/// How long anything asynchronous may take before a test fails.
const WAIT: Duration = Duration::from_secs(10);

/// A running `levee run` with its upstreams and the file it was started
/// from.
struct Gateway {
    process: Spawned,
    dir: PathBuf,
    config: PathBuf,
    v1: FakeUpstream,
    v2: FakeUpstream,
    proxy: SocketAddr,
    admin: SocketAddr,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn config_text(v1: SocketAddr, v2: SocketAddr, cluster: &str) -> String {
    format!(
        r#"[admin]
listen = "127.0.0.1:0"
token = "{TOKEN}"

[runtime]
watch_config = false
handover_socket = "off"
drain_timeout = "1s"

[store]
path = ":memory:"

[[listeners]]
name = "public"
listen = "127.0.0.1:0"

[[clusters]]
name = "v1"
endpoints = ["{v1}"]

[[clusters]]
name = "v2"
endpoints = ["{v2}"]

[[routes]]
name = "api"
cluster = "{cluster}"

[routes.rollout]
steps = [{{ weight = 10, pause = "1s" }}, {{ weight = 50, pause = "1s" }}]
"#
    )
}

impl Gateway {
    /// Starts `levee run` with route `api` on `v1`.
    async fn start(test: &str) -> Self {
        let [v1, v2] = FakeUpstream::start_each(["v1", "v2"]).await;
        let dir = common::scratch_dir("rollout-cli", test);
        let config = dir.join("levee.toml");
        std::fs::write(&config, config_text(v1.addr(), v2.addr(), "v1")).expect("write config");
        let (process, proxy, admin) = Spawned::levee_run(&config, &dir);
        Self {
            process,
            dir,
            config,
            v1,
            v2,
            proxy,
            admin,
        }
    }

    fn admin_url(&self) -> String {
        format!("http://{}", self.admin)
    }

    /// Rewrites the config with the route on `cluster` and reloads it
    /// through the admin API.
    async fn move_route_to(&mut self, cluster: &str) {
        std::fs::write(
            &self.config,
            config_text(self.v1.addr(), self.v2.addr(), cluster),
        )
        .expect("rewrite config");
        let request = http::Request::post(format!("{}/api/v1/reload", self.admin_url()))
            .header("authorization", format!("Bearer {TOKEN}"))
            .body(Default::default())
            .expect("request");
        let reply = Client::http1().send(request).await.expect("reload");
        assert_eq!(
            reply.status,
            200,
            "reload refused: {}\n{}",
            reply.body,
            self.process.output()
        );
    }

    /// `levee rollout ARGS --admin URL` with the token in the environment.
    async fn rollout(&self, args: &[&str]) -> Run {
        let mut all = vec!["rollout"];
        all.extend_from_slice(args);
        let admin = self.admin_url();
        all.extend_from_slice(&["--admin", &admin]);
        cli(&all, &self.dir, Some(TOKEN)).await
    }

    /// The rollout of `api` as `levee rollout status api --json` prints it.
    async fn state(&self) -> Value {
        let run = self.rollout(&["status", "api", "--json"]).await;
        run.expect_code(0);
        serde_json::from_str(&run.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e})\n{}", run.context()))
    }

    /// Waits until the rollout of `api` is in `phase`.
    async fn wait_for_phase(&self, phase: &str) -> Value {
        self.wait_for(&format!("phase {phase}"), |s| s["phase"] == phase)
            .await
    }

    /// Waits until the rollout of `api` is as `check` wants it.
    async fn wait_for(&self, what: &str, check: impl Fn(&Value) -> bool) -> Value {
        let deadline = levee_core::time::now() + WAIT;
        loop {
            let state = self.state().await;
            if check(&state) {
                return state;
            }
            assert!(
                levee_core::time::now() < deadline,
                "the rollout never reached {what}; last state:\n{state:#}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until `n` requests in a row to the gateway are all answered by
    /// `version`.
    async fn wait_for_all_on(&self, version: &str, n: usize) {
        let client = Client::http1();
        let url = format!("http://{}/", self.proxy);
        let deadline = levee_core::time::now() + WAIT;
        loop {
            let served = client.burst(&url, n).await;
            if served.get(version) == Some(&n) {
                return;
            }
            if levee_core::time::now() >= deadline {
                let state = self.state().await;
                panic!("requests are not all answered by {version}: {served:?}; the rollout:\n{state:#}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// `levee ARGS` in `cwd`, with `LEVEE_ADMIN_TOKEN` set to `token` when
/// given, run off the async workers.
async fn cli(args: &[&str], cwd: &Path, token: Option<&str>) -> Run {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let cwd = cwd.to_path_buf();
    let token = token.map(str::to_string);
    tokio::task::spawn_blocking(move || {
        let mut cmd = common::command(LEVEE, &[], &cwd);
        cmd.args(&args);
        if let Some(t) = &token {
            cmd.env("LEVEE_ADMIN_TOKEN", t);
        }
        let out = cmd.output().expect("run levee");
        Run::of(
            format!(
                "{}{LEVEE} {}",
                if token.is_some() {
                    "LEVEE_ADMIN_TOKEN=... "
                } else {
                    ""
                },
                args.join(" ")
            ),
            cwd,
            out,
        )
    })
    .await
    .expect("cli thread")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_pause_resume_abort_promote_and_undo() {
    let mut gw = Gateway::start("drive").await;
    gw.wait_for_all_on("v1", 5).await;
    gw.move_route_to("v2").await;
    // The first step's pause ends, and the judge has no samples.
    gw.wait_for("no decision yet", |s| {
        s["phase"] == "progressing"
            && s["reason"]
                .as_str()
                .is_some_and(|r| r.starts_with("no decision yet"))
    })
    .await;

    // 1. Status, as text and as JSON.
    let run = gw.rollout(&["status"]).await;
    run.expect_code(0)
        .expect_stdout("api")
        .expect_stdout("progressing")
        .expect_stdout("v1 → v2")
        .expect(run.stderr.is_empty(), "status printed to stderr");
    let run = gw.rollout(&["status", "--json"]).await;
    run.expect_code(0);
    let all: Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e})\n{}", run.context()));
    run.expect(
        all["rollouts"][0]["phase"] == "progressing" && all["rollouts"][0]["route"] == "api",
        "rollouts[0] is not api, progressing",
    );
    let run = gw.rollout(&["status", "api"]).await;
    run.expect_code(0)
        .expect_stdout("phase:     progressing")
        .expect_stdout("versions:  v1 → v2")
        .expect_stdout("steps [10%] → 50% → promote")
        .expect_stdout("no decision yet")
        .expect_stdout("decisions (last");

    // 2. Pause, a refused second pause, resume.
    let run = gw.rollout(&["pause", "api"]).await;
    run.expect_code(0)
        .expect_stdout("rollout of route api paused at 10% on v2");
    assert_eq!(gw.state().await["phase"], "paused");
    let run = gw.rollout(&["status", "api"]).await;
    run.expect_stdout("phase:     paused (by manual)");
    let run = gw.rollout(&["pause", "api"]).await;
    run.expect_code(1)
        .expect_stderr("error: a rollout that is paused cannot be paused")
        .expect(run.stdout.is_empty(), "a refusal printed to stdout");
    let run = gw.rollout(&["resume", "api"]).await;
    run.expect_code(0)
        .expect_stdout("rollout of route api resumed: progressing, 10% on v2");

    // 3. Abort: everything back on v1.
    let run = gw.rollout(&["abort", "api"]).await;
    run.expect_code(0)
        .expect_stdout("rollout of route api aborted: all traffic back on v1");
    let state = gw.state().await;
    assert_eq!(state["phase"], "rolled_back", "{state:#}");
    assert_eq!(state["weight_percent"], 0.0, "{state:#}");
    gw.wait_for_all_on("v1", 10).await;
    let run = gw.rollout(&["abort", "api"]).await;
    run.expect_code(1)
        .expect_stderr("error: the rollout is already rolled back");

    // 4. A fresh rollout (back to v1, then to v2 again), promoted by hand,
    // then undone.
    gw.move_route_to("v1").await;
    gw.wait_for_phase("idle").await;
    gw.move_route_to("v2").await;
    gw.wait_for_phase("progressing").await;
    let run = gw.rollout(&["promote", "api"]).await;
    run.expect_code(0)
        .expect_stdout("rollout of route api promoted: all traffic on v2");
    let state = gw.wait_for_phase("promoted").await;
    assert_eq!(state["stable"], "v2", "{state:#}");
    gw.wait_for_all_on("v2", 10).await;
    let run = gw.rollout(&["status", "api"]).await;
    run.expect_code(0)
        .expect_stdout("phase:     promoted")
        .expect_stdout("versions:  v2 (stable)")
        .expect_stdout("previous:  v1 (undo goes back to it)");

    let run = gw.rollout(&["undo", "api"]).await;
    run.expect_code(0)
        .expect_stdout("rollout of route api undone: all traffic back on v1");
    let state = gw.wait_for_phase("rolled_back").await;
    assert_eq!(state["stable"], "v1", "{state:#}");
    assert_eq!(state["weight_percent"], 0.0, "{state:#}");
    // Which version serves after the undo: see the test below.
    let run = gw.rollout(&["undo", "api"]).await;
    run.expect_code(1)
        .expect_stderr("error: the rollout is already rolled back");
}

/// Scenario 4's traffic after `undo`: the state says `v1` serves again,
/// but the data plane keeps the promoted weights (canary 100%), because
/// the undo rebuilds the route through a reload whose configured weights
/// did not change, so the knob keeps its turned value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_promote_and_undo_requests_are_answered_by_v1_again() {
    let mut gw = Gateway::start("undo-traffic").await;
    gw.move_route_to("v2").await;
    gw.wait_for_phase("progressing").await;
    gw.rollout(&["promote", "api"]).await.expect_code(0);
    gw.wait_for_all_on("v2", 10).await;
    gw.rollout(&["undo", "api"]).await.expect_code(0);
    let state = gw.wait_for_phase("rolled_back").await;
    assert_eq!(state["stable"], "v1", "{state:#}");
    gw.wait_for_all_on("v1", 10).await;
    let state = gw.state().await;
    assert_eq!(state["serving"]["canary_percent"], 0.0, "{state:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_addresses_and_unknown_routes() {
    let gw = Gateway::start("errors").await;
    let admin = gw.admin_url();

    // No token (and no config here to find one in).
    let elsewhere = common::scratch_dir("rollout-cli", "errors-elsewhere");
    let run = cli(&["rollout", "status", "--admin", &admin], &elsewhere, None).await;
    run.expect_code(3)
        .expect_stderr("LEVEE_ADMIN_TOKEN")
        .expect_stderr("needs a token")
        .expect(run.stdout.is_empty(), "printed to stdout");

    // A wrong token: named by its source, never echoed.
    let wrong = "wrong-token-wrong-token-wrong";
    let run = cli(
        &["rollout", "pause", "api", "--admin", &admin],
        &gw.dir,
        Some(wrong),
    )
    .await;
    run.expect_code(3)
        .expect_stderr("LEVEE_ADMIN_TOKEN")
        .expect_stderr("refused the token")
        .expect(
            !run.stderr.contains(wrong) && !run.stdout.contains(wrong),
            "the token was printed",
        );

    // The token from a file wins over the environment.
    let token_file = gw.dir.join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).expect("write token");
    let token_arg = token_file.to_str().expect("UTF-8 temp path");
    let run = cli(
        &[
            "rollout",
            "status",
            "--admin",
            &admin,
            "--token-file",
            token_arg,
        ],
        &gw.dir,
        Some(wrong),
    )
    .await;
    run.expect_code(0).expect_stdout("api");

    // The address and the token from a config naming them.
    let client_config = gw.dir.join("client.toml");
    std::fs::write(
        &client_config,
        format!(
            "[admin]\nlisten = \"{}\"\ntoken = \"{TOKEN}\"\n\n[[listeners]]\nname = \"public\"\nlisten = \"127.0.0.1:0\"\n",
            gw.admin
        ),
    )
    .expect("write client config");
    let run = cli(&["rollout", "status", "-c", "client.toml"], &gw.dir, None).await;
    run.expect_code(0).expect_stdout("idle");
    // Found without -c: the working directory's levee.toml (the gateway's,
    // listening on port 0) gives the token; --admin the address.
    let run = cli(&["rollout", "status", "--admin", &admin], &gw.dir, None).await;
    run.expect_code(0).expect_stdout("idle");

    // Nothing listening.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    };
    let run = cli(
        &["rollout", "status", "--admin", &format!("http://{closed}")],
        &gw.dir,
        Some(TOKEN),
    )
    .await;
    run.expect_code(3)
        .expect_stderr("cannot reach the admin API at")
        .expect(!run.stderr.contains("Os {"), "Rust debug output");

    // An unknown route, for status and for a command.
    for args in [["status", "nope"].as_slice(), ["abort", "nope"].as_slice()] {
        let run = gw.rollout(args).await;
        run.expect_code(1)
            .expect_stderr("error: no rollout for route `nope`");
    }

    // Usage errors are clap's.
    let run = gw.rollout(&["pause"]).await;
    run.expect_code(2);
    let run = cli(
        &["rollout", "status", "--admin", "https://127.0.0.1:1"],
        &gw.dir,
        Some(TOKEN),
    )
    .await;
    run.expect_code(2).expect_stderr("plain http://");
    let _ = std::fs::remove_dir_all(&elsewhere);
}
