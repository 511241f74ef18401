//! The dashboard at `/ui` as an operator uses it, in a real headless
//! Chromium driven over WebDriver (`levee_testkit::Browser`), against a
//! gateway with an admin token, live traffic to a fake upstream, an SLO
//! made to page, a rollout under way and a runtime fault.
//!
//! Checked: the login refuses a wrong token and accepts the right one;
//! every page loads with no console error; the overview's figures are the
//! API's (the same JSON read by the test, compared with the DOM through
//! `data-testid` and `data-value`); the page follows traffic without a
//! reload; keyboard use (skip link, focus); logout. Screenshots of every
//! page at 1280 and 390 px wide land in `target/ui-screenshots/`.
//!
//! The latency heatmap is checked against a planted latency step when the
//! gateway has the history API (`GET /api/v1/history/routes` answers 200);
//! without it that test says loudly that it skipped.
//!
//! Chromium and chromedriver are Debian's. Without them the tests print a
//! note and pass, except under CI (`CI` set), where they fail.

use levee_testkit::{
    eventually, Browser, Client, ClientReply, Cluster, FakeUpstream, GatewayConfig, LogEntry,
    Reply, Route, Slo, TestGateway,
};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

const TOKEN: &str = "dashboard-ui-test-token-0123456789";

/// How long the dashboard may take to show something (it polls every 2 s).
const UI_WAIT: Duration = Duration::from_secs(20);

/// The pages and how the tests name their screenshots.
const PAGES: [(&str, &str); 5] = [
    ("overview", "#/overview"),
    ("routes", "#/routes"),
    ("incidents", "#/incidents"),
    ("clusters", "#/clusters"),
    ("rollouts", "#/rollouts"),
];

const WIDTHS: [u32; 2] = [1280, 390];

/// A rollout that stays on its first step for the whole test, analysed
/// often, so the rollouts page has values and a decision log.
const ROLLOUT: &str = r#"{ steps = [{ weight = 20, pause = "1h" }, { weight = 50, pause = "1h" }], analysis = { min_samples = 20, interval = "500ms" } }"#;

fn config(shop: &FakeUpstream, v1: &FakeUpstream, v2: &FakeUpstream, catalog: &str) -> String {
    GatewayConfig::new()
        .admin_token(TOKEN)
        .route(Route::new("checkout", "shop").tier("core").prefix("/checkout"))
        .route(
            Route::new("catalog", catalog)
                .tier("optional")
                .prefix("/catalog")
                .raw(&format!("rollout = {ROLLOUT}")),
        )
        .cluster(
            Cluster::new("shop")
                .endpoint(shop)
                .limits("max_requests = 40, max_pending = 10")
                .raw("concurrency = { algorithm = \"fixed\", limit = 20 }"),
        )
        .cluster(Cluster::new("catalog-v1").endpoint(v1))
        .cluster(Cluster::new("catalog-v2").endpoint(v2))
        .slo(
            Slo::availability("checkout-availability", "checkout", "99%")
                .description("Checkout answers without a server error.")
                .period("1h")
                .runbook("https://runbooks.example.com/checkout")
                .alerting(
                    "min_events = 5, page = [{ long = \"4s\", short = \"2s\", factor = 10 }], ticket = []",
                ),
        )
        .slo(
            Slo::new("checkout-latency", "latency", "checkout")
                .period("1h")
                .raw("objectives = [{ threshold = \"100ms\", objective = \"95%\" }]")
                .alerting("min_events = 5, page = [], ticket = [{ long = \"4s\", short = \"2s\", factor = 10 }]"),
        )
        .table("alerting", "evaluate_every = \"1s\"\nbucket = \"1s\"")
        .toml()
}

/// Requests in the background until dropped: good ones to both routes,
/// failing ones to checkout while `failing`, none while `paused`.
struct Traffic {
    paused: Arc<AtomicBool>,
    failing: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
}

impl Traffic {
    fn start(base: String) -> Self {
        let paused = Arc::new(AtomicBool::new(false));
        let failing = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        tokio::spawn({
            let (paused, failing, stop) = (paused.clone(), failing.clone(), stop.clone());
            async move {
                let c = Client::http1();
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    if !paused.load(Ordering::Relaxed) {
                        n += 1;
                        let _ = c.send(get(&format!("{base}/checkout/items/{n}"))).await;
                        let _ = c.send(get(&format!("{base}/catalog/items/{n}"))).await;
                        if failing.load(Ordering::Relaxed) {
                            for _ in 0..3 {
                                let _ = c.send(get(&format!("{base}/checkout/fail"))).await;
                            }
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(25)).await;
                }
            }
        });
        Self {
            paused,
            failing,
            stop,
        }
    }

    fn pause(&self, paused: bool) {
        self.paused.store(paused, Ordering::Relaxed);
    }

    fn fail(&self, failing: bool) {
        self.failing.store(failing, Ordering::Relaxed);
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn get(url: &str) -> http::Request<http_body_util::Full<bytes::Bytes>> {
    http::Request::get(url)
        .body(Default::default())
        .expect("request")
}

/// The admin API's JSON at `path`, read with the token.
async fn api(gw: &TestGateway, path: &str) -> Value {
    let auth = format!("Bearer {TOKEN}");
    let r = Client::http1()
        .get_with(
            &format!("{}{path}", gw.admin_url()),
            &[("authorization", &auth)],
        )
        .await;
    assert_eq!(r.status, 200, "{path}: {r:?}");
    r.json()
}

/// `target/ui-screenshots`, beside the test binary's `debug` directory.
fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::current_exe()
                .ok()?
                .ancestors()
                .nth(3)
                .map(PathBuf::from)
        })
        .unwrap_or_else(|| PathBuf::from("target"));
    target.join("ui-screenshots")
}

/// Whether `entry` is the one error the dashboard is allowed to cause: the
/// browser's own note that an optional API answered 404 (the history API,
/// on a gateway without it). The page shows a note instead; the app
/// itself logs nothing.
fn expected_404(entry: &LogEntry) -> bool {
    entry.source == "network"
        && entry.message.contains("/api/v1/history/")
        && entry.message.contains("404")
}

#[track_caller]
fn assert_no_console_errors(log: &[LogEntry], on: &str) {
    let errors: Vec<&LogEntry> = log
        .iter()
        .filter(|e| e.is_error() && !expected_404(e))
        .collect();
    assert!(errors.is_empty(), "console errors on {on}: {errors:#?}");
}

/// Every `data-testid` element's `data-value` and text.
async fn testids(browser: &Browser) -> BTreeMap<String, (Option<String>, String)> {
    let v = browser
        .execute(
            "const out = {}; \
             for (const el of document.querySelectorAll('[data-testid]')) \
               out[el.dataset.testid] = [el.getAttribute('data-value'), el.textContent.trim()]; \
             return out;",
            vec![],
        )
        .await;
    v.as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                (
                    v[0].as_str().map(str::to_string),
                    v[1].as_str().unwrap_or_default().to_string(),
                ),
            )
        })
        .collect()
}

/// Waits until page `page` has rendered (and refreshed once since).
async fn wait_for_page(browser: &Browser, page: &str) {
    let script = format!(
        "const p = document.querySelector('.page[data-page=\"{page}\"]'); \
         const u = document.getElementById('updated').getAttribute('data-value'); \
         if (!p || !u) return null; \
         if (!window.__seen || window.__seen.page !== '{page}') {{ window.__seen = {{ page: '{page}', at: u }}; return null; }} \
         return u !== window.__seen.at;"
    );
    browser
        .wait_for(
            &format!("page {page} to render and refresh"),
            UI_WAIT,
            &script,
        )
        .await;
}

/// The dashboard's way of showing a ratio as a percentage, floored.
fn pct_floor(r: f64) -> String {
    format!("{:.3}%", (r * 1e5 + 1e-6).floor() / 1e3)
}

/// A count as the dashboard writes it: "12,345".
fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn num(v: &Value) -> Option<f64> {
    v.as_f64()
}

/// The same figure, allowing for the last bit: the page computes in
/// JavaScript what the API computes in Rust, and the two can round a
/// ratio to neighbouring doubles.
fn same(dom: Option<f64>, api: Option<f64>) -> bool {
    match (dom, api) {
        (Some(a), Some(b)) => a == b || (a - b).abs() <= 1e-12 * a.abs().max(b.abs()).max(1.0),
        (a, b) => a == b,
    }
}

/// Where the DOM and the API disagree on the overview, if anywhere.
fn overview_differences(
    slos: &Value,
    status: &Value,
    incidents: &Value,
    dom: &BTreeMap<String, (Option<String>, String)>,
) -> Vec<String> {
    let mut diffs = Vec::new();
    let value = |id: &str| -> Option<f64> { dom.get(id)?.0.as_deref()?.parse().ok() };
    let text = |id: &str| dom.get(id).map(|d| d.1.clone()).unwrap_or_default();
    for slo in slos["slos"].as_array().unwrap() {
        let id = slo["id"].as_str().unwrap();
        let sli = num(&slo["sli_value"]);
        if !same(value(&format!("slo-{id}-sli")), sli) {
            diffs.push(format!(
                "{id} SLI: DOM {:?}, API {sli:?}",
                value(&format!("slo-{id}-sli"))
            ));
        }
        if let Some(sli) = sli {
            if text(&format!("slo-{id}-sli")) != pct_floor(sli) {
                diffs.push(format!(
                    "{id} SLI text {:?}",
                    text(&format!("slo-{id}-sli"))
                ));
            }
        }
        let events = num(&slo["events"]);
        if !same(value(&format!("slo-{id}-events")), events) {
            diffs.push(format!(
                "{id} events: DOM {:?}, API {events:?}",
                value(&format!("slo-{id}-events"))
            ));
        }
        let events_text = text(&format!("slo-{id}-events"));
        let bad = slo["bad_events"].as_u64().unwrap();
        if !events_text.ends_with(&format!("({} bad)", grouped(bad))) {
            diffs.push(format!("{id} bad events: DOM {events_text:?}, API {bad}"));
        }
        let ratio = num(&slo["budget"]["remaining_ratio"]);
        if !same(value(&format!("slo-{id}-budget")), ratio) {
            diffs.push(format!(
                "{id} budget: DOM {:?}, API {ratio:?}",
                value(&format!("slo-{id}-budget"))
            ));
        }
        if let Some(left) = slo["budget"]["remaining_text"].as_str() {
            let shown = text(&format!("slo-{id}-budget"));
            if !shown.ends_with(&left.replace('-', "−")) {
                diffs.push(format!("{id} budget time: DOM {shown:?}, API {left:?}"));
            }
        }
        for w in slo["windows"].as_array().unwrap() {
            let key = format!("slo-{id}-burn-{}", w["window"].as_str().unwrap());
            if !same(value(&key), num(&w["burn_rate"])) {
                diffs.push(format!(
                    "{key}: DOM {:?}, API {}",
                    value(&key),
                    w["burn_rate"]
                ));
            }
        }
        for a in slo["alerts"].as_array().unwrap() {
            let key = format!("slo-{id}-alert-{}", a["severity"].as_str().unwrap());
            let shown = dom.get(&key).and_then(|d| d.0.clone());
            if shown.as_deref() != a["state"].as_str() {
                diffs.push(format!("{key}: DOM {shown:?}, API {}", a["state"]));
            }
        }
        let key = format!("slo-{id}-status");
        let shown = dom.get(&key).and_then(|d| d.0.clone());
        if shown.as_deref() != slo["status"].as_str() {
            diffs.push(format!("{key}: DOM {shown:?}, API {}", slo["status"]));
        }
    }
    for tier in status["tiers"].as_array().unwrap() {
        let t = tier["tier"].as_str().unwrap();
        let key = format!("tier-{t}-uptime");
        if !same(value(&key), num(&tier["uptime"]))
            || text(&key) != tier["uptime_text"].as_str().unwrap()
        {
            diffs.push(format!(
                "{key}: DOM {:?}, API {} {}",
                dom.get(&key),
                tier["uptime"],
                tier["uptime_text"]
            ));
        }
        let key = format!("tier-{t}-budget");
        if text(&key) != tier["budget_text"].as_str().unwrap() {
            diffs.push(format!(
                "{key}: DOM {:?}, API {}",
                dom.get(&key),
                tier["budget_text"]
            ));
        }
    }
    let open = incidents["incidents"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| {
            matches!(
                i["state"].as_str(),
                Some("open" | "recovered" | "alert_resolved")
            )
        })
        .count();
    if value("open-incidents-count") != Some(open as f64) {
        diffs.push(format!(
            "open incidents: DOM {:?}, API {open}",
            value("open-incidents-count")
        ));
    }
    diffs
}

/// Whether the history API is there: the heatmap test runs only then.
async fn history_api(gw: &TestGateway, auth: Option<&str>) -> bool {
    let url = format!("{}/api/v1/history/routes", gw.admin_url());
    let c = Client::http1();
    let r: ClientReply = match auth {
        Some(a) => c.get_with(&url, &[("authorization", a)]).await,
        None => c.get(&url).await,
    };
    r.status == 200
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_logs_in_shows_the_apis_figures_and_follows_traffic() {
    let Some(browser) = Browser::start(
        "dashboard_ui::the_dashboard_logs_in_shows_the_apis_figures_and_follows_traffic",
    )
    .await
    else {
        return;
    };
    let shop = FakeUpstream::builder("shop")
        .route("/checkout/fail", Reply::status(500))
        .otherwise(Reply::ok().latency(Duration::from_millis(3)))
        .start()
        .await;
    let v1 = FakeUpstream::start("catalog-v1").await;
    let v2 = FakeUpstream::start("catalog-v2").await;
    let gw = TestGateway::start(&config(&shop, &v1, &v2, "catalog-v1")).await;
    let admin = gw.admin_url();
    let traffic = Traffic::start(gw.url("public"));

    // A rollout of the catalog to v2, and a runtime fault (an experiment).
    let moved = levee_config::load_str(
        &config(&shop, &v1, &v2, "catalog-v2"),
        levee_config::Format::Toml,
        "moved.toml",
    )
    .unwrap();
    gw.gateway.reload(moved).await.unwrap();
    eventually(
        Duration::from_secs(10),
        "the catalog rollout progresses",
        || async {
            gw.control
                .rollout("catalog")
                .is_some_and(|r| r.phase.name() == "progressing" && !r.last_checks.is_empty())
        },
    )
    .await;
    let fault = Client::http1()
        .send(
            http::Request::post(format!("{admin}/api/v1/faults"))
                .header("authorization", format!("Bearer {TOKEN}"))
                .body(http_body_util::Full::new(bytes::Bytes::from(
                    json!({"route": "catalog", "fault": {"name": "catalog-delay", "percent": 20, "delay": "2ms"}, "expires_in": "10m"}).to_string(),
                )))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(fault.status, 201, "{fault:?}");

    // Login: a wrong token gets the form again, the right one the dashboard.
    browser.goto(&format!("{admin}/ui")).await;
    browser
        .wait_for(
            "the login form",
            UI_WAIT,
            "return document.querySelector('#token') !== null",
        )
        .await;
    assert_no_console_errors(&browser.log().await, "the login form");
    browser
        .type_into("#token", "not-the-token-0000000000")
        .await;
    browser.click("button[type=submit]").await;
    browser
        .wait_for(
            "the refusal",
            UI_WAIT,
            "return document.querySelector('[data-testid=login-error]') !== null",
        )
        .await;
    let refused = browser.text("main").await;
    assert!(
        refused.contains("That token was not accepted."),
        "{refused}"
    );
    assert!(
        !refused.contains("not-the-token"),
        "the page never shows a token"
    );
    assert!(
        !browser.url().await.contains("token"),
        "no token in the URL"
    );
    assert!(browser.find("#token").await.is_some(), "the form again");
    // The refusal is a 401, which the browser notes as a failed load; the
    // note is the only one.
    let refusal: Vec<LogEntry> = browser.log().await;
    let (noted, others): (Vec<_>, Vec<_>) = refusal.into_iter().partition(|e| {
        e.source == "network" && e.message.contains("/ui/login") && e.message.contains("401")
    });
    assert_eq!(noted.len(), 1, "the refusal was a 401: {noted:?}");
    assert_no_console_errors(&others, "the refused login");
    browser.type_into("#token", TOKEN).await;
    browser.click("button[type=submit]").await;
    browser
        .wait_for(
            "the overview",
            UI_WAIT,
            "return document.querySelector('[data-testid=evaluated-at]') !== null",
        )
        .await;
    let url = browser.url().await;
    assert!(url.ends_with("/ui/"), "back on the dashboard: {url}");
    assert!(!url.contains(TOKEN));
    let cookie_visible = browser.execute("return document.cookie", vec![]).await;
    assert_eq!(cookie_visible, json!(""), "the session cookie is HttpOnly");

    // The SLO pages: a first incident opens and closes.
    traffic.fail(true);
    eventually(
        Duration::from_secs(30),
        "the checkout SLO pages",
        || async {
            let incidents = api(&gw, "/api/v1/incidents").await;
            !incidents["incidents"].as_array().unwrap().is_empty()
        },
    )
    .await;
    // The overview shows the page firing, as the API does.
    browser
        .wait_for(
            "the page alert firing on the overview",
            UI_WAIT,
            "return document.querySelector('[data-testid=\"slo-checkout-availability-alert-page\"]')?.getAttribute('data-value') === 'firing'",
        )
        .await;
    traffic.fail(false);
    eventually(
        Duration::from_secs(30),
        "the first incident closes",
        || async { api(&gw, "/api/v1/incidents").await["incidents"][0]["state"] == "closed" },
    )
    .await;

    // With traffic paused the overview settles on the API's figures.
    traffic.pause(true);
    let mut last = Vec::new();
    let settled = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let dom = testids(&browser).await;
            let (slos, status, incidents) = (
                api(&gw, "/api/v1/slos").await,
                api(&gw, "/api/v1/status").await,
                api(&gw, "/api/v1/incidents").await,
            );
            last = overview_differences(&slos, &status, &incidents, &dom);
            if last.is_empty() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(
        settled.is_ok(),
        "the overview never showed the API's figures: {last:#?}"
    );

    // Traffic again: the figures grow without a reload.
    let before = testids(&browser).await["slo-checkout-availability-events"]
        .0
        .clone()
        .unwrap()
        .parse::<u64>()
        .unwrap();
    browser
        .execute("window.__notReloaded = true; return true", vec![])
        .await;
    traffic.pause(false);
    browser
        .wait_for(
            "the event count to grow by 40",
            UI_WAIT,
            &format!(
                "return window.__notReloaded === true && \
                 Number(document.querySelector('[data-testid=\"slo-checkout-availability-events\"]').getAttribute('data-value')) >= {}",
                before + 40
            ),
        )
        .await;

    // A second incident, still failing while the pages are photographed.
    traffic.fail(true);
    eventually(
        Duration::from_secs(30),
        "a second incident opens",
        || async {
            let incidents = api(&gw, "/api/v1/incidents").await;
            incidents["incidents"].as_array().unwrap().len() >= 2
        },
    )
    .await;
    assert_no_console_errors(&browser.log().await, "the overview");

    let history = history_api(&gw, Some(&format!("Bearer {TOKEN}"))).await;
    let dir = screenshot_dir();
    for width in WIDTHS {
        browser.set_window_size(width, 900).await;
        for (name, hash) in PAGES {
            browser.goto(&format!("{admin}/ui/{hash}")).await;
            let page = if name == "routes" { "routes" } else { name };
            wait_for_page(&browser, page).await;
            check_page(&browser, &gw, name, history).await;
            browser
                .screenshot_page(width, 6000, &dir.join(format!("{name}-{width}.png")))
                .await;
            assert_no_console_errors(&browser.log().await, &format!("{name} at {width} px"));
        }
        if history {
            browser.goto(&format!("{admin}/ui/#/routes/checkout")).await;
            wait_for_page(&browser, "route").await;
            browser
                .screenshot_page(width, 6000, &dir.join(format!("route-{width}.png")))
                .await;
            assert_no_console_errors(&browser.log().await, &format!("route at {width} px"));
        }
    }

    traffic.fail(false);

    // Dark mode renders without errors too.
    browser.set_window_size(1280, 900).await;
    browser.prefer_dark(true).await;
    for (name, hash) in [("overview", "#/overview"), ("incidents", "#/incidents")] {
        browser.goto(&format!("{admin}/ui/{hash}")).await;
        wait_for_page(&browser, name).await;
        browser
            .screenshot_page(1280, 6000, &dir.join(format!("{name}-dark-1280.png")))
            .await;
        assert_no_console_errors(&browser.log().await, &format!("{name} in dark mode"));
    }
    browser.prefer_dark(false).await;

    // Keyboard: the first Tab reaches the skip link, which moves focus to
    // the content; the navigation is a list of links with a focus style.
    // (A fresh load: a hash change alone moves focus to the page's heading.)
    browser.goto("about:blank").await;
    browser.goto(&format!("{admin}/ui/#/clusters")).await;
    wait_for_page(&browser, "clusters").await;
    browser.press(&["\u{E004}"]).await;
    let focused = browser
        .execute(
            "const a = document.activeElement; \
             return [a.className, getComputedStyle(a).outlineStyle, a.getBoundingClientRect().top >= 0];",
            vec![],
        )
        .await;
    assert_eq!(focused[0], "skip-link", "{focused}");
    assert_ne!(focused[1], "none", "the focused link shows it: {focused}");
    assert_eq!(focused[2], true, "and is on screen: {focused}");
    browser.press(&["\u{E007}"]).await;
    let focused = browser
        .execute("return document.activeElement.id", vec![])
        .await;
    assert_eq!(
        focused, "main",
        "Enter on the skip link moves focus to the content"
    );
    assert!(
        browser.url().await.ends_with("#/clusters"),
        "and keeps the page"
    );
    let nav = browser
        .execute(
            "return [...document.querySelectorAll('nav ul > li > a')].map(a => a.getAttribute('href'))",
            vec![],
        )
        .await;
    assert_eq!(
        nav,
        json!([
            "#/overview",
            "#/routes",
            "#/incidents",
            "#/clusters",
            "#/rollouts"
        ])
    );
    let current = browser
        .execute(
            "return document.querySelector('nav a[aria-current=page]').getAttribute('href')",
            vec![],
        )
        .await;
    assert_eq!(current, "#/clusters");

    // Logout: back to the form, and the old session opens nothing.
    browser.click(".logout button").await;
    browser
        .wait_for(
            "the login form after logout",
            UI_WAIT,
            "return document.querySelector('#token') !== null",
        )
        .await;
    browser.goto(&format!("{admin}/ui/#/overview")).await;
    assert!(browser.find("#token").await.is_some(), "logged out");
    assert_no_console_errors(&browser.log().await, "logout");
    drop(traffic);
    browser.quit().await;
    let _ = writeln!(
        std::io::stderr(),
        "dashboard screenshots: {}",
        dir.display()
    );
}

/// What each page must show of the API's state.
async fn check_page(browser: &Browser, gw: &TestGateway, page: &str, history: bool) {
    let dom = testids(browser).await;
    assert!(
        !dom.contains_key("render-error") && !dom.contains_key("api-error"),
        "{page} shows an error: {dom:#?}"
    );
    match page {
        "routes" => {
            if history {
                assert!(browser
                    .find("a[href=\"#/routes/checkout\"]")
                    .await
                    .is_some());
            } else {
                let note = &dom["history-unavailable"].1;
                assert!(note.contains("not available"), "{note}");
            }
            for route in ["checkout", "catalog"] {
                assert!(
                    dom.contains_key(&format!("route-{route}-requests")),
                    "{route} listed"
                );
            }
        }
        "incidents" => {
            let incidents = api(gw, "/api/v1/incidents").await;
            for i in incidents["incidents"].as_array().unwrap() {
                let id = i["id"].as_u64().unwrap();
                assert!(
                    dom.contains_key(&format!("incident-{id}")),
                    "incident {id} shown"
                );
            }
            assert!(dom.contains_key("incident-heatmap"), "{dom:#?}");
            let median = incidents["mttd"]["median_seconds"].as_f64().unwrap();
            let shown: f64 = dom["mttd-median"].0.as_deref().unwrap().parse().unwrap();
            assert_eq!(shown, median, "MTTD median");
        }
        "clusters" => {
            let clusters = api(gw, "/api/v1/clusters").await;
            for c in clusters["clusters"].as_array().unwrap() {
                let name = c["name"].as_str().unwrap();
                let rows = browser
                    .execute(
                        &format!("return document.querySelectorAll('[data-testid=\"endpoints-{name}\"] tbody tr').length"),
                        vec![],
                    )
                    .await;
                assert_eq!(
                    rows.as_u64(),
                    Some(c["endpoints"].as_array().unwrap().len() as u64),
                    "{name}"
                );
            }
            assert!(
                dom.contains_key("cluster-shop-limit"),
                "shop's concurrency limit from /metrics"
            );
            assert_eq!(dom["cluster-shop-limit"].1, "20");
        }
        "rollouts" => {
            let rollouts = api(gw, "/api/v1/rollouts").await;
            let r = &rollouts["rollouts"][0];
            assert_eq!(
                dom["rollout-catalog-phase"].0.as_deref(),
                r["phase"].as_str(),
                "phase"
            );
            assert!(
                dom.contains_key("rollout-catalog-analysis"),
                "analysis values shown"
            );
            assert!(
                dom.contains_key("rollout-catalog-decisions"),
                "the decision log"
            );
            assert!(dom.contains_key("runtime-faults"), "the runtime fault");
        }
        _ => {
            assert!(dom.contains_key("evaluated-at"));
        }
    }
}

/// Relative luminance of `#rrggbb` (0 black, 1 white).
fn luminance(hex: &str) -> f64 {
    let c = |i: usize| {
        let v = f64::from(u8::from_str_radix(&hex[i..i + 2], 16).unwrap()) / 255.0;
        if v <= 0.03928 {
            v / 12.92
        } else {
            ((v + 0.055) / 1.055).powf(2.4)
        }
    };
    0.2126 * c(1) + 0.7152 * c(3) + 0.0722 * c(5)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_latency_heatmap_darkens_the_cells_of_a_planted_latency_step() {
    const SLOW: Duration = Duration::from_millis(150);
    let shop = FakeUpstream::builder("shop")
        .route("/checkout/slow", Reply::ok().latency(SLOW))
        .start()
        .await;
    let toml = GatewayConfig::new()
        .route(
            Route::new("checkout", "shop")
                .tier("core")
                .prefix("/checkout"),
        )
        .cluster(Cluster::new("shop").endpoint(&shop))
        .table("alerting", "evaluate_every = \"1s\"\nbucket = \"1s\"")
        .toml();
    let gw = TestGateway::start(&toml).await;
    if !history_api(&gw, None).await {
        let note = "\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n\
             !!! SKIPPED dashboard_ui::the_latency_heatmap_darkens_the_cells_of_a_planted_latency_step:\n\
             !!! GET /api/v1/history/routes answered 404: this gateway has no history API yet.\n\
             !!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n";
        let _ = std::io::stderr().write_all(note.as_bytes());
        return;
    }
    let Some(browser) = Browser::start(
        "dashboard_ui::the_latency_heatmap_darkens_the_cells_of_a_planted_latency_step",
    )
    .await
    else {
        return;
    };
    let admin = gw.admin_url();
    let base = gw.url("public");
    let c = Client::http1();
    let history = |window: &'static str| {
        let url = format!("{admin}/api/v1/history/routes/checkout?window={window}");
        async move { Client::http1().get(&url).await.json() }
    };
    let total = |h: &Value| -> u64 {
        h["points"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["requests"].as_u64().unwrap())
            .sum()
    };
    // Fast requests, then, a step later, slow ones: the latency step.
    for _ in 0..30 {
        c.get(&format!("{base}/checkout/fast")).await;
    }
    eventually(
        Duration::from_secs(30),
        "the fast requests in the history",
        || async { total(&history("1h").await) >= 30 },
    )
    .await;
    // Columns move left as time passes: cells are placed by their step's time.
    let fast = history("1h").await;
    let step = fast["step_seconds"].as_u64().unwrap();
    let fast_last_t = fast["points"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["requests"].as_u64().unwrap() > 0)
        .map(|p| p["t_ns"].as_u64().unwrap())
        .max()
        .unwrap();
    // The slow requests go into a later step: wait for the next one to begin.
    let next_step = fast_last_t + step * 1_000_000_000;
    let now = levee_core::time::unix_nanos();
    tokio::time::sleep(Duration::from_nanos(next_step.saturating_sub(now))).await;
    let slow: Vec<_> = (0..30)
        .map(|_| {
            let (c, url) = (c.clone(), format!("{base}/checkout/slow"));
            tokio::spawn(async move { c.get(&url).await })
        })
        .collect();
    for s in slow {
        assert_eq!(s.await.unwrap().status, 200);
    }
    eventually(
        Duration::from_secs(30),
        "the slow requests in the history",
        || async { total(&history("1h").await) >= 60 },
    )
    .await;

    browser.goto(&format!("{admin}/ui/#/routes/checkout")).await;
    wait_for_page(&browser, "route").await;
    assert_no_console_errors(&browser.log().await, "the route page");
    let api_now = history("1h").await;
    let cells = browser
        .execute(
            "return [...document.querySelectorAll('[data-testid=\"chart-latency\"] rect[data-count]')] \
               .map(r => [r.dataset.t, Number(r.dataset.row), Number(r.dataset.count), r.getAttribute('fill')])",
            vec![],
        )
        .await;
    // (step time in ns, row, requests, colour)
    let cells: Vec<(u64, usize, u64, String)> = cells
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c[0].as_str().unwrap().parse().unwrap(),
                c[1].as_u64().unwrap() as usize,
                c[2].as_u64().unwrap(),
                c[3].as_str().unwrap().to_string(),
            )
        })
        .collect();
    // Every cell is the API's count for its step and row (the page may be
    // a refresh behind on the latest step, never ahead).
    let points = api_now["points"].as_array().unwrap();
    for (t, row, count, _) in &cells {
        let Some(point) = points.iter().find(|p| p["t_ns"].as_u64() == Some(*t)) else {
            continue; // slid out of the window since the page drew it
        };
        let api_count = point["counts"][*row].as_u64().unwrap();
        assert!(
            api_count >= *count,
            "cell ({t}, {row}) shows {count}, the API {api_count}"
        );
    }
    let rows: Vec<Option<f64>> = api_now["rows_ms"]
        .as_array()
        .unwrap()
        .iter()
        .map(Value::as_f64)
        .collect();
    let slow_ms = SLOW.as_secs_f64() * 1e3;
    let first_slow_row = rows
        .iter()
        .position(|ub| ub.is_none_or(|ub| ub >= slow_ms))
        .unwrap();
    let slow_cells: Vec<_> = cells.iter().filter(|c| c.1 >= first_slow_row).collect();
    assert_eq!(
        slow_cells.iter().map(|c| c.2).sum::<u64>(),
        30,
        "the 30 slow requests are in the rows from {slow_ms} ms up: {cells:?}"
    );
    for (t, row, count, fill) in &slow_cells {
        assert!(*t > fast_last_t, "slow cell ({t}, {row}) after the step");
        if *count >= 10 {
            assert!(
                luminance(fill) < 0.2,
                "a cell with {count} requests is dark: {fill} ({})",
                luminance(fill)
            );
        }
    }
    let fast_cells: u64 = cells
        .iter()
        .filter(|c| c.0 <= fast_last_t)
        .map(|c| c.2)
        .sum();
    assert_eq!(fast_cells, 30, "the fast requests, before the step");
    let empty_before = cells
        .iter()
        .filter(|c| c.0 <= fast_last_t && c.1 >= first_slow_row)
        .count();
    assert_eq!(empty_before, 0, "no slow cell before the step");
    let lines = browser
        .execute(
            "return [...document.querySelectorAll('[data-testid=\"chart-latency\"] [data-line]')].map(p => p.dataset.line)",
            vec![],
        )
        .await;
    assert_eq!(lines, json!(["p50_ms", "p95_ms", "p99_ms"]));

    // The day view draws the same requests in 5-minute steps.
    browser.click("[data-testid=window-1d]").await;
    browser
        .wait_for(
            "the day view",
            UI_WAIT,
            "return location.hash.endsWith('window=1d') && \
                    [...document.querySelectorAll('[data-testid=\"chart-latency\"] rect[data-count]')] \
                      .reduce((a, r) => a + Number(r.dataset.count), 0) >= 60",
        )
        .await;
    assert_no_console_errors(&browser.log().await, "the day view");
    browser.quit().await;
}
