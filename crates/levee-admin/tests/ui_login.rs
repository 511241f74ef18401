//! The dashboard's HTTP side through the real admin router: its assets and
//! their headers, the login form, the session cookie, logout, and the
//! same-origin rule for changes made with a cookie (CSRF).

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::Full;
use levee_testkit::{Client, ClientReply, GatewayConfig, TestGateway};

const TOKEN: &str = "dashboard-test-token-0123456789";

async fn gateway(token: Option<&str>) -> TestGateway {
    let mut config = GatewayConfig::new();
    if let Some(t) = token {
        config = config.admin_token(t);
    }
    TestGateway::start(&config.toml()).await
}

async fn send(method: Method, url: &str, headers: &[(&str, &str)], body: &str) -> ClientReply {
    let mut req = Request::builder().method(method.clone()).uri(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("request");
    Client::http1()
        .send(req)
        .await
        .unwrap_or_else(|e| panic!("{method} {url}: {e}"))
}

async fn login(gw: &TestGateway, token: &str) -> ClientReply {
    let body = format!("token={}", token.replace('-', "%2D"));
    send(
        Method::POST,
        &format!("{}/ui/login", gw.admin_url()),
        &[("content-type", "application/x-www-form-urlencoded")],
        &body,
    )
    .await
}

/// The `name=value` part of the session cookie a login set.
fn session_cookie(reply: &ClientReply) -> String {
    let set = reply
        .header("set-cookie")
        .unwrap_or_else(|| panic!("a session cookie: {reply:?}"));
    set.split(';').next().unwrap().trim().to_string()
}

#[track_caller]
fn assert_secured(reply: &ClientReply) {
    let csp = reply
        .header("content-security-policy")
        .unwrap_or_else(|| panic!("a CSP: {reply:?}"));
    assert!(csp.contains("default-src 'self'"), "{csp}");
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert!(!csp.contains("unsafe-eval"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(reply.header("x-content-type-options"), Some("nosniff"));
}

#[tokio::test]
async fn without_a_token_the_dashboard_opens_and_serves_its_assets() {
    let gw = gateway(None).await;
    let admin = gw.admin_url();
    let c = Client::http1();
    for path in ["/ui", "/ui/"] {
        let page = c.get(&format!("{admin}{path}")).await;
        assert_eq!(page.status, 200, "{path}");
        assert_eq!(
            page.header("content-type"),
            Some("text/html; charset=utf-8")
        );
        assert_secured(&page);
        assert!(page.body.contains("<main id=\"main\""), "the dashboard");
        assert!(page.body.contains("/ui/app.js"), "its script");
        assert!(
            !page.body.contains("/ui/logout"),
            "no logout without a login"
        );
        assert!(!page.body.contains("name=\"token\""), "no login form");
    }
    for (path, kind, needle) in [
        (
            "/ui/app.js",
            "text/javascript; charset=utf-8",
            "function morph",
        ),
        (
            "/ui/app.css",
            "text/css; charset=utf-8",
            "prefers-color-scheme: dark",
        ),
        ("/ui/favicon.svg", "image/svg+xml", "<svg"),
    ] {
        let r = c.get(&format!("{admin}{path}")).await;
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.header("content-type"), Some(kind), "{path}");
        assert_eq!(r.header("cache-control"), Some("no-cache"), "{path}");
        assert!(r.body.contains(needle), "{path}");
        assert_secured(&r);
        let etag = r.header("etag").expect("an ETag").to_string();
        assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");
        let again = c
            .get_with(&format!("{admin}{path}"), &[("if-none-match", &etag)])
            .await;
        assert_eq!(again.status, 304, "{path} unchanged since this build");
        assert!(again.body.is_empty());
        let stale = c
            .get_with(
                &format!("{admin}{path}"),
                &[("if-none-match", "\"an-older-build\"")],
            )
            .await;
        assert_eq!(stale.status, 200, "{path} from another build");
    }
    // Logging in without a token to check goes straight to the dashboard.
    let r = login(&gw, "anything").await;
    assert_eq!(r.status, 303);
    assert_eq!(r.header("location"), Some("/ui/"));
    assert_eq!(r.header("set-cookie"), None);
    // And the API needs nothing.
    assert_eq!(c.get(&format!("{admin}/api/v1/slos")).await.status, 200);
}

#[tokio::test]
async fn a_wrong_token_gets_the_form_again_and_the_right_one_a_session() {
    let gw = gateway(Some(TOKEN)).await;
    let admin = gw.admin_url();
    let c = Client::http1();

    let form = c.get(&format!("{admin}/ui")).await;
    assert_eq!(form.status, 200);
    assert_secured(&form);
    assert_eq!(form.header("cache-control"), Some("no-store"));
    assert!(form.body.contains("name=\"token\""), "{}", form.body);
    assert!(form.body.contains("method=\"post\" action=\"/ui/login\""));
    assert!(
        !form.body.contains("/ui/app.js"),
        "no dashboard before login"
    );
    // The assets are the same for everyone and hold no figures.
    assert_eq!(c.get(&format!("{admin}/ui/app.css")).await.status, 200);
    assert_eq!(c.get(&format!("{admin}/ui/app.js")).await.status, 200);

    for wrong in ["dashboard-test-token-0123456780", "short", ""] {
        let r = login(&gw, wrong).await;
        assert_eq!(r.status, 401, "{wrong:?}");
        assert_eq!(r.header("set-cookie"), None);
        assert!(
            r.body.contains("That token was not accepted."),
            "{}",
            r.body
        );
        assert!(r.body.contains("name=\"token\""), "the form again");
        if !wrong.is_empty() {
            assert!(!r.body.contains(wrong), "the page never shows a token");
        }
    }
    // A body that is not a form is refused the same way.
    let r = send(
        Method::POST,
        &format!("{admin}/ui/login"),
        &[("content-type", "application/json")],
        &format!("{{\"token\":\"{TOKEN}\"}}"),
    )
    .await;
    assert_eq!(r.status, 401);

    let r = login(&gw, TOKEN).await;
    assert_eq!(r.status, 303, "{r:?}");
    assert_eq!(r.header("location"), Some("/ui/"));
    let set = r.header("set-cookie").unwrap();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=43200"] {
        assert!(set.contains(attribute), "{attribute} in {set}");
    }
    assert!(!set.contains(TOKEN), "the cookie is not the token");
    let cookie = session_cookie(&r);
    let (name, id) = cookie.split_once('=').unwrap();
    assert_eq!(name, "levee_session");
    assert_eq!(id.len(), 64, "256 bits in hex");
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
    for (_, v) in r.headers.iter() {
        assert!(
            !v.to_str().unwrap_or("").contains(TOKEN),
            "no header carries the token"
        );
    }

    let page = c
        .get_with(&format!("{admin}/ui/"), &[("cookie", &cookie)])
        .await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("/ui/app.js"), "the dashboard");
    assert!(
        page.body.contains("action=\"/ui/logout\""),
        "with a logout button"
    );
    assert!(!page.body.contains(TOKEN));
    assert_eq!(page.header("vary"), Some("Cookie"));

    for path in [
        "/api/v1/slos",
        "/api/v1/incidents",
        "/metrics",
        "/api/v1/config",
    ] {
        let with = c
            .get_with(&format!("{admin}{path}"), &[("cookie", &cookie)])
            .await;
        assert_eq!(with.status, 200, "{path} with a session");
        assert_eq!(c.get(&format!("{admin}{path}")).await.status, 401, "{path}");
    }
    // A second login opens a second session; both work.
    let other = session_cookie(&login(&gw, TOKEN).await);
    assert_ne!(other, cookie);
    for cookie in [&cookie, &other] {
        let r = c
            .get_with(&format!("{admin}/api/v1/slos"), &[("cookie", cookie)])
            .await;
        assert_eq!(r.status, 200);
    }
}

#[tokio::test]
async fn a_forged_or_malformed_cookie_opens_nothing() {
    let gw = gateway(Some(TOKEN)).await;
    let admin = gw.admin_url();
    let c = Client::http1();
    let forged = format!("levee_session={}", "ab".repeat(32));
    for cookie in [
        forged.as_str(),
        "levee_session=",
        "levee_session=zz",
        "levee_session=dashboard-test-token-0123456789",
        "other=1",
    ] {
        let r = c
            .get_with(&format!("{admin}/api/v1/slos"), &[("cookie", cookie)])
            .await;
        assert_eq!(r.status, 401, "{cookie}");
        let page = c
            .get_with(&format!("{admin}/ui"), &[("cookie", cookie)])
            .await;
        assert!(
            page.body.contains("name=\"token\""),
            "the login form for {cookie}"
        );
    }
}

#[tokio::test]
async fn a_session_changes_things_only_from_the_dashboards_origin() {
    let gw = gateway(Some(TOKEN)).await;
    let admin = gw.admin_url();
    let host = gw.admin.to_string();
    let own_origin = format!("http://{host}");
    let cookie = session_cookie(&login(&gw, TOKEN).await);
    let evaluate = format!("{admin}/api/v1/slos/evaluate");

    let refused: &[&[(&str, &str)]] = &[
        &[],
        &[("origin", "http://evil.example")],
        &[("origin", "http://127.0.0.1:1")],
        &[("origin", "null")],
        &[("sec-fetch-site", "cross-site")],
        &[("sec-fetch-site", "same-site")],
        &[("sec-fetch-site", "none")],
        &[("sec-fetch-site", "cross-site"), ("origin", &own_origin)],
    ];
    for extra in refused {
        let mut headers = vec![("cookie", cookie.as_str())];
        headers.extend_from_slice(extra);
        let r = send(Method::POST, &evaluate, &headers, "").await;
        assert_eq!(r.status, 403, "{extra:?}: {r:?}");
        assert_eq!(r.json()["error"], "forbidden");
        let r = send(
            Method::DELETE,
            &format!("{admin}/api/v1/faults/1"),
            &headers,
            "",
        )
        .await;
        assert_eq!(r.status, 403, "DELETE {extra:?}");
    }
    let allowed: &[&[(&str, &str)]] = &[
        &[("origin", &own_origin)],
        &[("sec-fetch-site", "same-origin")],
        &[("sec-fetch-site", "same-origin"), ("origin", &own_origin)],
    ];
    for extra in allowed {
        let mut headers = vec![("cookie", cookie.as_str())];
        headers.extend_from_slice(extra);
        let r = send(Method::POST, &evaluate, &headers, "").await;
        assert_eq!(r.status, 204, "{extra:?}: {r:?}");
        let r = send(
            Method::DELETE,
            &format!("{admin}/api/v1/faults/1"),
            &headers,
            "",
        )
        .await;
        assert_eq!(r.status, 404, "past the check, no such fault: {extra:?}");
    }
    // Reads need no origin; tools with the bearer token need none either.
    let r = send(
        Method::GET,
        &format!("{admin}/api/v1/slos"),
        &[("cookie", &cookie)],
        "",
    )
    .await;
    assert_eq!(r.status, 200);
    let bearer = format!("Bearer {TOKEN}");
    let r = send(Method::POST, &evaluate, &[("authorization", &bearer)], "").await;
    assert_eq!(r.status, 204);
    // Without a session, a cross-origin change is simply unauthorised.
    let r = send(Method::POST, &evaluate, &[("origin", &own_origin)], "").await;
    assert_eq!(r.status, 401);
}

#[tokio::test]
async fn logging_out_ends_the_session_from_the_dashboards_origin_only() {
    let gw = gateway(Some(TOKEN)).await;
    let admin = gw.admin_url();
    let own_origin = format!("http://{}", gw.admin);
    let cookie = session_cookie(&login(&gw, TOKEN).await);
    let slos = format!("{admin}/api/v1/slos");
    let logout = format!("{admin}/ui/logout");

    let r = send(
        Method::POST,
        &logout,
        &[("cookie", &cookie), ("origin", "http://evil.example")],
        "",
    )
    .await;
    assert_eq!(r.status, 403, "another site cannot log an operator out");
    let r = send(Method::GET, &slos, &[("cookie", &cookie)], "").await;
    assert_eq!(r.status, 200, "the session is still open");

    let r = send(
        Method::POST,
        &logout,
        &[("cookie", &cookie), ("origin", &own_origin)],
        "",
    )
    .await;
    assert_eq!(r.status, 303);
    assert_eq!(r.header("location"), Some("/ui/"));
    let cleared = r.header("set-cookie").expect("the cookie is cleared");
    assert!(cleared.starts_with("levee_session=;"), "{cleared}");
    assert!(cleared.contains("Max-Age=0"), "{cleared}");

    let r = send(Method::GET, &slos, &[("cookie", &cookie)], "").await;
    assert_eq!(r.status, 401, "the old cookie opens nothing");
    let page = send(
        Method::GET,
        &format!("{admin}/ui"),
        &[("cookie", &cookie)],
        "",
    )
    .await;
    assert!(page.body.contains("name=\"token\""), "back to the form");
    // Logging out again, or without a session, is harmless.
    let r = send(Method::POST, &logout, &[], "").await;
    assert_eq!(r.status, 303);
}
