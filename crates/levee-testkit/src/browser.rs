//! A real headless Chromium for tests, driven by its `chromedriver` over
//! the W3C WebDriver protocol: plain JSON over HTTP with hyper's client,
//! no driver library. Both come from Debian (`chromium`,
//! `chromium-driver`), which CI installs (`.ci/run`). Missing either, a
//! test fails when `CI` is set and otherwise skips with a note on stderr
//! that cannot be overlooked (as [`crate::Promtool`] does).
//!
//! Each [`Browser`] starts its own chromedriver on a free loopback port and
//! one Chromium session with a fresh profile and no background network
//! traffic, and collects the page's console (`goog:loggingPrefs`), so a
//! test can insist on no errors.

use crate::TempDir;
use base64::Engine as _;
use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Longest one WebDriver command may take (a page load on a busy machine).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// Longest chromedriver may take to say which port it listens on.
const DRIVER_START: Duration = Duration::from_secs(20);

/// Chromium's flags: headless, and nothing that talks to the network on
/// its own (no updates, sync, field trials or QUIC probes).
const CHROMIUM_FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--hide-scrollbars",
    "--force-device-scale-factor=1",
    "--lang=en-US",
];

/// What the window chrome around the page takes, in CSS pixels (the
/// difference between a window's outer height and the page's viewport).
const WINDOW_FRAME_FALLBACK: u32 = 150;

/// A message from the page's console or the browser's network log.
#[derive(Debug, Clone)]
pub struct LogEntry {
    /// `SEVERE`, `WARNING`, `INFO` or `DEBUG`.
    pub level: String,
    /// `console-api` (the page called `console.*`), `javascript`
    /// (uncaught), `network` (a failed load), `security` (CSP)...
    pub source: String,
    /// The text, with the URL first for network entries.
    pub message: String,
}

impl LogEntry {
    /// Whether it is an error.
    pub fn is_error(&self) -> bool {
        self.level == "SEVERE"
    }
}

/// A headless Chromium session.
pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    client: hyper_util::client::legacy::Client<HttpConnector, Full<Bytes>>,
    _profile: TempDir,
}

impl std::fmt::Debug for Browser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Browser")
            .field("driver", &self.base)
            .field("session", &self.session)
            .finish()
    }
}

/// Where a program is on `PATH`, if anywhere.
fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// chromedriver and Chromium, or why not.
fn programs() -> Result<(PathBuf, PathBuf), String> {
    let driver = on_path("chromedriver")
        .ok_or("chromedriver is not on the PATH (Debian package `chromium-driver`)")?;
    let chromium = ["chromium", "chromium-browser"]
        .iter()
        .find_map(|n| on_path(n))
        .ok_or("chromium is not on the PATH (Debian package `chromium`)")?;
    Ok((driver, chromium))
}

/// Fails under CI; elsewhere prints a note naming `test` and what is
/// missing, past the harness's capture.
fn skip(test: &str, why: &str, ci: bool) {
    assert!(
        !ci,
        "{why}; CI must install it (`apt-get install chromium chromium-driver`, see .ci/run)"
    );
    let note = format!(
        "\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n\
         !!! SKIPPED {test}: {why}.\n\
         !!! Install `chromium` and `chromium-driver` to run this test.\n\
         !!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n"
    );
    let _ = std::io::stderr().write_all(note.as_bytes());
}

impl Browser {
    /// A fresh browser session, or `None` (after a loud note) when
    /// chromedriver or Chromium is missing and `CI` is not set; under CI a
    /// missing browser fails the test.
    pub async fn start(test: &str) -> Option<Browser> {
        let ci = std::env::var_os("CI").is_some();
        let (driver, chromium) = match programs() {
            Ok(found) => found,
            Err(why) => {
                skip(test, &why, ci);
                return None;
            }
        };
        Some(Self::launch(&driver, &chromium).await)
    }

    async fn launch(driver: &Path, chromium: &Path) -> Browser {
        let mut child = Command::new(driver)
            .args(["--port=0", "--log-level=WARNING"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", driver.display()));
        let stdout = child.stdout.take().expect("chromedriver's stdout");
        let Ok(Some(port)) = tokio::task::spawn_blocking(move || read_port(stdout)).await else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromedriver did not report its port within {DRIVER_START:?}");
        };
        let base = format!("http://127.0.0.1:{port}");
        let profile = TempDir::new();
        let mut args: Vec<String> = CHROMIUM_FLAGS.iter().map(|s| s.to_string()).collect();
        args.push(format!("--user-data-dir={}", profile.path.display()));
        args.push("--window-size=1280,900".into());
        let capabilities = json!({
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": {
                        "binary": chromium.display().to_string(),
                        "args": args,
                    },
                    "goog:loggingPrefs": { "browser": "ALL" },
                    "timeouts": { "pageLoad": 60_000, "script": 30_000 },
                }
            }
        });
        let mut browser = Browser {
            driver: child,
            base,
            session: String::new(),
            client: hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http(),
            _profile: profile,
        };
        // chromedriver names its port a moment before it accepts on it.
        let deadline = levee_core::time::now() + DRIVER_START;
        let created = loop {
            match browser
                .raw(Method::POST, "/session", Some(capabilities.clone()))
                .await
            {
                Ok(created) => break created,
                Err(e) if e.contains("Connect") && levee_core::time::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("chromedriver could not start chromium: {e}"),
            }
        };
        browser.session = created["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session id in {created}"))
            .to_string();
        browser
    }

    /// One WebDriver call outside the session (`path` from the root).
    async fn raw(&self, method: Method, path: &str, body: Option<Value>) -> Result<Value, String> {
        let payload = body.map(|b| b.to_string()).unwrap_or_default();
        let mut req = Request::builder()
            .method(method.clone())
            .uri(format!("{}{path}", self.base));
        if !payload.is_empty() {
            req = req.header("content-type", "application/json; charset=utf-8");
        }
        let req = req
            .body(Full::new(Bytes::from(payload)))
            .map_err(|e| e.to_string())?;
        let call = async {
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| format!("{method} {path}: {e}"))?;
            let status = resp.status();
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| format!("{method} {path}: {e}"))?
                .to_bytes();
            let value: Value = serde_json::from_slice(&body).map_err(|e| {
                format!(
                    "{method} {path}: not JSON ({e}): {}",
                    String::from_utf8_lossy(&body)
                )
            })?;
            if !status.is_success() {
                return Err(format!(
                    "{method} {path}: {status}: {} {}",
                    value["value"]["error"], value["value"]["message"]
                ));
            }
            Ok(value["value"].clone())
        };
        tokio::time::timeout(COMMAND_TIMEOUT, call)
            .await
            .map_err(|_| format!("{method} {path}: no answer within {COMMAND_TIMEOUT:?}"))?
    }

    /// One command of this session; a failure fails the test.
    async fn cmd(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let path = format!("/session/{}{path}", self.session);
        self.raw(method, &path, body)
            .await
            .unwrap_or_else(|e| panic!("WebDriver: {e}"))
    }

    /// Opens `url` and waits for it to load.
    pub async fn goto(&self, url: &str) {
        self.cmd(Method::POST, "/url", Some(json!({ "url": url })))
            .await;
    }

    /// The page's URL now.
    pub async fn url(&self) -> String {
        self.cmd(Method::GET, "/url", None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Runs `script` (a function body; `arguments` holds `args`) in the
    /// page and returns what it returns.
    pub async fn execute(&self, script: &str, args: Vec<Value>) -> Value {
        self.cmd(
            Method::POST,
            "/execute/sync",
            Some(json!({ "script": script, "args": args })),
        )
        .await
    }

    /// Polls `script` until it returns something other than `null`,
    /// `false` or `undefined`, and returns that; fails after `timeout`
    /// saying `what` was awaited.
    pub async fn wait_for(&self, what: &str, timeout: Duration, script: &str) -> Value {
        let deadline = levee_core::time::now() + timeout;
        loop {
            let v = self.execute(script, vec![]).await;
            if !(v.is_null() || v == Value::Bool(false)) {
                return v;
            }
            if levee_core::time::now() >= deadline {
                let url = self.url().await;
                panic!("timed out after {timeout:?} waiting for {what} on {url}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The element matching `css`, if any (its WebDriver reference).
    pub async fn find(&self, css: &str) -> Option<String> {
        let path = format!("/session/{}/element", self.session);
        let found = self
            .raw(
                Method::POST,
                &path,
                Some(json!({ "using": "css selector", "value": css })),
            )
            .await
            .ok()?;
        found
            .as_object()?
            .values()
            .next()?
            .as_str()
            .map(str::to_string)
    }

    async fn element(&self, css: &str) -> String {
        self.find(css)
            .await
            .unwrap_or_else(|| panic!("no element matches `{css}`"))
    }

    /// Types `text` into the element matching `css` (after clearing it).
    pub async fn type_into(&self, css: &str, text: &str) {
        let el = self.element(css).await;
        self.cmd(
            Method::POST,
            &format!("/element/{el}/clear"),
            Some(json!({})),
        )
        .await;
        self.cmd(
            Method::POST,
            &format!("/element/{el}/value"),
            Some(json!({ "text": text })),
        )
        .await;
    }

    /// Clicks the element matching `css`.
    pub async fn click(&self, css: &str) {
        let el = self.element(css).await;
        self.cmd(
            Method::POST,
            &format!("/element/{el}/click"),
            Some(json!({})),
        )
        .await;
    }

    /// The rendered text of the element matching `css`.
    pub async fn text(&self, css: &str) -> String {
        let el = self.element(css).await;
        self.cmd(Method::GET, &format!("/element/{el}/text"), None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Presses keys as a keyboard would (WebDriver key codes such as
    /// `"\u{E004}"` for Tab and `"\u{E007}"` for Enter), one after another,
    /// into whatever has focus.
    pub async fn press(&self, keys: &[&str]) {
        let actions: Vec<Value> = keys
            .iter()
            .flat_map(|k| {
                [
                    json!({ "type": "keyDown", "value": k }),
                    json!({ "type": "keyUp", "value": k }),
                ]
            })
            .collect();
        self.cmd(
            Method::POST,
            "/actions",
            Some(json!({ "actions": [{ "type": "key", "id": "keyboard", "actions": actions }] })),
        )
        .await;
        self.cmd(Method::DELETE, "/actions", None).await;
    }

    /// Sets the window's outer size.
    pub async fn set_window_size(&self, width: u32, height: u32) {
        self.cmd(
            Method::POST,
            "/window/rect",
            Some(json!({ "width": width, "height": height })),
        )
        .await;
    }

    /// Makes the page see `prefers-color-scheme: dark` (or light again),
    /// through the DevTools protocol chromedriver passes on.
    pub async fn prefer_dark(&self, dark: bool) {
        let scheme = if dark { "dark" } else { "light" };
        self.cmd(
            Method::POST,
            "/goog/cdp/execute",
            Some(json!({
                "cmd": "Emulation.setEmulatedMedia",
                "params": { "features": [{ "name": "prefers-color-scheme", "value": scheme }] },
            })),
        )
        .await;
    }

    /// A PNG of the viewport.
    pub async fn screenshot(&self) -> Vec<u8> {
        let b64 = self.cmd(Method::GET, "/screenshot", None).await;
        base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().unwrap_or_default())
            .unwrap_or_else(|e| panic!("screenshot is not base64: {e}"))
    }

    /// A PNG of the whole page at `width` CSS pixels (up to `max_height`
    /// tall), written to `path`: the window is made as tall as the page
    /// first, then put back to `width` × 900.
    pub async fn screenshot_page(&self, width: u32, max_height: u32, path: &Path) {
        self.set_window_size(width, 900).await;
        let frame = self
            .execute("return window.outerHeight - window.innerHeight", vec![])
            .await
            .as_u64()
            .map_or(WINDOW_FRAME_FALLBACK, |f| f as u32);
        let page = self
            .execute("return document.documentElement.scrollHeight", vec![])
            .await
            .as_u64()
            .unwrap_or(900) as u32;
        self.set_window_size(width, page.min(max_height) + frame)
            .await;
        // A resize re-renders; let layout settle on a frame boundary.
        self.execute_async_frames(2).await;
        let png = self.screenshot().await;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        }
        std::fs::write(path, png).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        self.set_window_size(width, 900).await;
    }

    /// Waits for `n` animation frames in the page.
    async fn execute_async_frames(&self, n: u32) {
        self.cmd(
            Method::POST,
            "/execute/async",
            Some(json!({
                "script": "const done = arguments[arguments.length - 1]; let n = arguments[0]; \
                           const step = () => (n-- > 0 ? requestAnimationFrame(step) : done(true)); step();",
                "args": [n],
            })),
        )
        .await;
    }

    /// The console and network log since the last call (chromedriver
    /// hands each entry out once).
    pub async fn log(&self) -> Vec<LogEntry> {
        let entries = self
            .cmd(Method::POST, "/se/log", Some(json!({ "type": "browser" })))
            .await;
        entries
            .as_array()
            .map(|list| {
                list.iter()
                    .map(|e| LogEntry {
                        level: e["level"].as_str().unwrap_or_default().to_string(),
                        source: e["source"].as_str().unwrap_or_default().to_string(),
                        message: e["message"].as_str().unwrap_or_default().to_string(),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Ends the session and chromedriver.
    pub async fn quit(mut self) {
        let path = format!("/session/{}", self.session);
        let _ = self.raw(Method::DELETE, &path, None).await;
        self.session.clear();
        // Drop stops chromedriver.
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // A test that panicked did not quit: end the session so chromedriver
        // closes Chromium, then stop chromedriver. Blocking is fine here
        // (a test is ending) and needs no runtime.
        if !self.session.is_empty() {
            let _ = delete_session_blocking(&self.base, &self.session);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn delete_session_blocking(base: &str, session: &str) -> std::io::Result<()> {
    let addr = base.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "DELETE /session/{session} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut sink = Vec::new();
    let _ = stream.read_to_end(&mut sink);
    Ok(())
}

/// Reads chromedriver's "...started successfully on port N." line, if it
/// comes within [`DRIVER_START`]. Blocks: run it off the runtime.
fn read_port(stdout: std::process::ChildStdout) -> Option<u16> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        let mut sent = false;
        for line in lines.by_ref().map_while(Result::ok) {
            if !sent {
                if let Some(port) = line
                    // Not the "Starting ChromeDriver ... on port 0" line before it.
                    .split("started successfully on port ")
                    .nth(1)
                    .and_then(|rest| rest.trim_end_matches('.').trim().parse::<u16>().ok())
                {
                    let _ = tx.send(port);
                    sent = true;
                }
            }
            // Keep reading so chromedriver never blocks on a full pipe.
        }
    });
    rx.recv_timeout(DRIVER_START).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_browser_fails_the_test_under_ci() {
        let under_ci = std::panic::catch_unwind(|| skip("ci", "chromedriver is missing", true));
        let message = under_ci.expect_err("CI fails the test");
        let message = message
            .downcast_ref::<String>()
            .cloned()
            .unwrap_or_default();
        assert!(message.contains("CI must install it"), "{message}");
    }
}
