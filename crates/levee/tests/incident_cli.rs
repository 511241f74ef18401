//! `levee incident` as an operator runs it: the real binary against a
//! gateway in this process whose route turns to 500s, on paused time so
//! the page fires within virtual seconds (the clock holds while the
//! binary runs, because it runs on a blocking thread). List, show, ack,
//! note and resolve, as text and JSON, with the exit codes for refusals
//! (1), usage errors (2, from clap, a missing name or the server's 400)
//! and an admin API that refuses the token or is not there (3).

use levee_testkit::{eventually, Client, ScriptedUpstream, Step, TestGateway};
use serde_json::Value;
use std::path::PathBuf;
use std::time::Duration;

mod common;

use common::{Run, LEVEE};

/// The admin token of the gateway under test.
const TOKEN: &str = "incident-cli-test-token-0123456789";

fn config(upstream: std::net::SocketAddr) -> String {
    format!(
        r#"[admin]
listen = "127.0.0.1:0"
token = "{TOKEN}"

[runtime]
access_log = false
watch_config = false

[[listeners]]
name = "public"
listen = "127.0.0.1:0"

[[routes]]
name = "checkout"
cluster = "shop"

[[clusters]]
name = "shop"
endpoints = ["{upstream}"]

[[slos]]
name = "checkout-availability"
sli = "availability"
route = "checkout"
objective = "99%"
period = "1h"
runbook = "https://runbooks.example.com/checkout"
labels = {{ team = "payments" }}
alerting = {{ min_events = 5, page = [{{ long = "4s", short = "2s", factor = 10 }}], ticket = [] }}

[alerting]
evaluate_every = "1s"
bucket = "1s"

[store]
path = "state.db"
"#
    )
}

/// How a run finds the token.
#[derive(Clone, Copy)]
enum Token {
    Env,
    Missing,
}

/// `levee incident ARGS --admin URL` with `USER` set to `user` (or unset),
/// run on a blocking thread so the paused clock holds meanwhile.
async fn incident(gw: &TestGateway, args: &[&str], user: Option<&str>, token: Token) -> Run {
    let mut all: Vec<String> = vec!["incident".into()];
    all.extend(args.iter().map(|a| a.to_string()));
    all.extend(["--admin".into(), gw.admin_url()]);
    let user = user.map(str::to_string);
    let cwd: PathBuf = std::env::temp_dir();
    tokio::task::spawn_blocking(move || {
        let mut cmd = common::command(LEVEE, &[], &cwd);
        cmd.args(&all);
        match &user {
            Some(u) => cmd.env("USER", u),
            None => cmd.env_remove("USER"),
        };
        if let Token::Env = token {
            cmd.env("LEVEE_ADMIN_TOKEN", TOKEN);
        }
        let out = cmd.output().expect("run levee");
        Run::of(format!("USER={user:?} {LEVEE} {}", all.join(" ")), cwd, out)
    })
    .await
    .expect("cli thread")
}

async fn as_alice(gw: &TestGateway, args: &[&str]) -> Run {
    incident(gw, args, Some("alice"), Token::Env).await
}

/// Sends `n` requests to `path` on the gateway, spread over `over`.
async fn traffic(gw: &TestGateway, path: &str, n: u32, over: Duration) {
    let client = Client::http1();
    for _ in 0..n {
        let _ = client.get(&format!("{}{path}", gw.url("public"))).await;
        tokio::time::sleep(over / n).await;
    }
}

#[tokio::test(start_paused = true)]
async fn list_show_ack_note_and_resolve_with_their_exit_codes() {
    let up = ScriptedUpstream::new();
    let shop = up.endpoint("shop");
    up.script_path(shop, "/fail", [Step::status(500)]);
    let gw = TestGateway::start_from_file_with_connector(&config(shop), up.connector()).await;

    // Nothing yet.
    as_alice(&gw, &["list"])
        .await
        .expect_code(0)
        .expect_stdout("no incidents");
    as_alice(&gw, &["show", "1"])
        .await
        .expect_code(1)
        .expect_stderr("no incident 1");
    as_alice(&gw, &["show", "one"]).await.expect_code(2);
    as_alice(&gw, &["ack"]).await.expect_code(2);

    // The upstream fails; the page opens incident 1.
    let failing = {
        let (url, client) = (gw.url("public"), Client::http1());
        tokio::spawn(async move {
            for _ in 0..400 {
                let _ = client.get(&format!("{url}/fail")).await;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    eventually(Duration::from_secs(10), "incident 1 opens", || async {
        !gw.control.slo_report().incidents.is_empty()
    })
    .await;

    let run = as_alice(&gw, &["list"]).await;
    run.expect_code(0)
        .expect_stdout("checkout-availability")
        .expect_stdout("triggered")
        .expect_stdout("MTTD: mean 1s")
        .expect_stdout("MTTA: -")
        .expect(run.stderr.is_empty(), "list printed to stderr");
    let run = as_alice(&gw, &["list", "--json"]).await;
    run.expect_code(0);
    let listed: Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e})\n{}", run.context()));
    assert_eq!(listed["incidents"][0]["id"], 1, "{listed:#}");

    // Acknowledge as $USER; a second acknowledgement is refused.
    as_alice(&gw, &["ack", "1"])
        .await
        .expect_code(0)
        .expect_stdout("incident 1 acknowledged by alice");
    incident(&gw, &["ack", "1", "--by", "bob"], None, Token::Env)
        .await
        .expect_code(1)
        .expect_stderr("incident 1 was acknowledged by alice at ");
    // No name at all: a usage error before anything is sent.
    incident(&gw, &["note", "1", "hello"], None, Token::Env)
        .await
        .expect_code(2)
        .expect_stderr("--by NAME");
    // Input the server refuses: a usage error with its reason.
    let long = "x".repeat(4_001);
    as_alice(&gw, &["note", "1", &long])
        .await
        .expect_code(2)
        .expect_stderr("longer than 4000");
    incident(
        &gw,
        &["note", "1", "shop answers 500; rolling back", "--by", "bob"],
        None,
        Token::Env,
    )
    .await
    .expect_code(0)
    .expect_stdout("note added to incident 1 (1 in its log)");
    as_alice(&gw, &["resolve", "1", "--message", "rolled back"])
        .await
        .expect_code(0)
        .expect_stdout("incident 1 resolved by alice; its alert still fires");
    as_alice(&gw, &["resolve", "1"])
        .await
        .expect_code(1)
        .expect_stderr("was resolved by alice");
    as_alice(&gw, &["ack", "7"])
        .await
        .expect_code(1)
        .expect_stderr("no incident 7");

    let run = as_alice(&gw, &["show", "1"]).await;
    run.expect_code(0)
        .expect_stdout("status:      resolved (signal: open)")
        .expect_stdout("runbook:     https://runbooks.example.com/checkout")
        .expect_stdout("labels:      team=payments")
        .expect_stdout("ack:         by alice at ")
        .expect_stdout("resolved:    by alice at ")
        .expect_stdout("acknowledge  alice")
        .expect_stdout("note         bob    shop answers 500; rolling back")
        .expect_stdout("resolve      alice  rolled back")
        .expect_stdout("deploys:      none around it");
    let run = as_alice(&gw, &["show", "1", "--json"]).await;
    run.expect_code(0);
    let shown: Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e})\n{}", run.context()));
    assert_eq!(shown["workflow"], "resolved");
    assert_eq!(shown["timeline"].as_array().unwrap().len(), 5, "{shown:#}");
    let run = as_alice(&gw, &["list"]).await;
    run.expect_code(0).expect_stdout("MTTA: mean ");
    failing.abort();
    traffic(&gw, "/ok", 10, Duration::from_secs(1)).await;

    // The token: missing, or an admin API that is not there.
    incident(&gw, &["list"], Some("alice"), Token::Missing)
        .await
        .expect_code(3)
        .expect_stderr("needs a token");
    let run = tokio::task::spawn_blocking(|| {
        common::levee(
            &["incident", "list", "--admin", "http://127.0.0.1:1"],
            &std::env::temp_dir(),
        )
    })
    .await
    .unwrap();
    run.expect_code(3)
        .expect_stderr("cannot reach the admin API");
}
