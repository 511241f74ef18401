//! The operator dashboard at `/ui`: its static assets, compiled into the
//! binary and served with their content type, an ETag of the build,
//! `Cache-Control` and a strict Content-Security-Policy (scripts and styles
//! from this origin only, nothing inline); its login; and the server-side
//! session map that the admin API's token check also accepts.
//!
//! When the admin API has a token, `/ui` shows a login form until the
//! token is posted to `/ui/login` (compared in constant time). A correct
//! token opens a session: 256 random bits from the operating system, sent
//! back as an `HttpOnly`, `SameSite=Strict` cookie that lives 12 hours. The
//! token itself never leaves the form's body: it is not put in a URL, a
//! cookie, a log or a page. Sessions live in a bounded map (the oldest goes
//! when it is full), so a restart logs everyone out. A request carrying a
//! session cookie may read any protected endpoint; one that changes
//! something (any method but GET, HEAD and OPTIONS) must also come from
//! the dashboard's own origin (`Sec-Fetch-Site: same-origin`, or an
//! `Origin` naming this host), so another site cannot make a logged-in
//! browser act (CSRF). Without a token the dashboard opens directly.

use super::{constant_time_eq, AdminState};
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use levee_core::time::now;
use std::collections::HashMap;
use std::sync::{LazyLock, Mutex, PoisonError};
use std::time::Duration;
use tokio::time::Instant;

/// The session cookie's name.
pub(crate) const SESSION_COOKIE: &str = "levee_session";

/// How long a session lasts from login (not extended by use, so a stolen
/// cookie is worth half a day at most).
pub(crate) const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 3600);

/// Sessions kept at most; a login beyond this ends the oldest session.
pub(crate) const MAX_SESSIONS: usize = 1_000;

const INDEX_HTML: &str = include_str!("../ui/index.html");
const LOGIN_HTML: &str = include_str!("../ui/login.html");
const APP_JS: &str = include_str!("../ui/app.js");
const APP_CSS: &str = include_str!("../ui/app.css");
const FAVICON_SVG: &str = include_str!("../ui/favicon.svg");

/// Where `index.html` gets the logout button, when there is a login.
const LOGOUT_SLOT: &str = "<!-- logout -->";
const LOGOUT_FORM: &str = "<form class=\"logout\" method=\"post\" action=\"/ui/logout\">\
     <button type=\"submit\">Log out</button></form>";

/// Where `login.html` gets its message.
const MESSAGE_SLOT: &str = "<!-- message -->";
const WRONG_TOKEN: &str =
    "<p class=\"login-error\" role=\"alert\" data-testid=\"login-error\">That token was not accepted.</p>";

/// Scripts, styles, images and API calls from this origin only; no
/// inline script or style, no plugins, no framing, forms post here only.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; \
     form-action 'self'; frame-ancestors 'none'";

/// FNV-1a, evaluated at compile time over the assets: the ETag changes
/// exactly when a build changes what the dashboard serves.
const fn fnv1a(mut hash: u64, bytes: &[u8]) -> u64 {
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(0x0100_0000_01b3);
        i += 1;
    }
    hash
}

const BUILD_HASH: u64 = {
    let mut h = 0xcbf2_9ce4_8422_2325;
    h = fnv1a(h, env!("CARGO_PKG_VERSION").as_bytes());
    h = fnv1a(h, INDEX_HTML.as_bytes());
    h = fnv1a(h, LOGIN_HTML.as_bytes());
    h = fnv1a(h, APP_JS.as_bytes());
    h = fnv1a(h, APP_CSS.as_bytes());
    fnv1a(h, FAVICON_SVG.as_bytes())
};

/// The ETag of what this build serves under `/ui` (one hash for all the
/// assets, which change together; `variant` tells apart the forms of the
/// page).
fn build_etag(variant: &str) -> String {
    format!("\"{BUILD_HASH:016x}{variant}\"")
}

/// The dashboard page with its logout button (for when there is a login).
static INDEX_WITH_LOGOUT: LazyLock<String> =
    LazyLock::new(|| INDEX_HTML.replacen(LOGOUT_SLOT, LOGOUT_FORM, 1));

/// The dashboard's routes.
pub(crate) fn routes() -> Router<AdminState> {
    Router::new()
        .route("/ui", get(page))
        .route("/ui/", get(page))
        .route("/ui/app.js", get(app_js))
        .route("/ui/app.css", get(app_css))
        .route("/ui/favicon.svg", get(favicon))
        .route("/ui/login", post(login).get(|| async { to_dashboard() }))
        .route("/ui/logout", post(logout))
}

/// A session id: 256 bits from the operating system's generator.
type SessionId = [u8; 32];

/// The open sessions, shared by the login handlers and the token check.
#[derive(Debug)]
pub(crate) struct Sessions {
    map: Mutex<SessionMap>,
}

impl Default for Sessions {
    fn default() -> Self {
        Self {
            map: Mutex::new(SessionMap::new(MAX_SESSIONS, SESSION_LIFETIME)),
        }
    }
}

impl Sessions {
    fn with<T>(&self, f: impl FnOnce(&mut SessionMap) -> T) -> T {
        f(&mut self.map.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Whether `headers` carry the cookie of a session open at `now`.
    fn is_open(&self, headers: &HeaderMap, at: Instant) -> bool {
        session_cookie(headers).is_some_and(|id| self.with(|m| m.is_open(&id, at)))
    }
}

/// Sessions by id with their expiry, bounded. Time is passed in.
#[derive(Debug)]
pub(crate) struct SessionMap {
    entries: HashMap<SessionId, Session>,
    capacity: usize,
    lifetime: Duration,
}

#[derive(Debug, Clone, Copy)]
struct Session {
    opened: Instant,
    expires: Instant,
}

impl SessionMap {
    /// An empty map of at most `capacity` sessions, each lasting `lifetime`.
    pub(crate) fn new(capacity: usize, lifetime: Duration) -> Self {
        Self {
            entries: HashMap::new(),
            capacity: capacity.max(1),
            lifetime,
        }
    }

    /// Opens session `id` at `at`. Expired sessions go first; if the map
    /// is still full, the oldest open one is ended to make room.
    pub(crate) fn open(&mut self, id: SessionId, at: Instant) {
        self.entries.retain(|_, s| s.expires > at);
        while self.entries.len() >= self.capacity {
            let Some(oldest) = self
                .entries
                .iter()
                .min_by_key(|(_, s)| s.opened)
                .map(|(id, _)| *id)
            else {
                break;
            };
            self.entries.remove(&oldest);
        }
        self.entries.insert(
            id,
            Session {
                opened: at,
                expires: at + self.lifetime,
            },
        );
    }

    /// Whether `id` is open at `at`; an expired session is forgotten.
    pub(crate) fn is_open(&mut self, id: &SessionId, at: Instant) -> bool {
        match self.entries.get(id) {
            Some(s) if s.expires > at => true,
            Some(_) => {
                self.entries.remove(id);
                false
            }
            None => false,
        }
    }

    /// Ends `id`; whether it was open.
    pub(crate) fn close(&mut self, id: &SessionId) -> bool {
        self.entries.remove(id).is_some()
    }

    /// Sessions held (some may have expired and not been swept yet).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

/// What a request's session cookie allows, for the admin API's token check.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum SessionAccess {
    /// An open session, and a safe method or a same-origin request.
    Granted,
    /// An open session, but a request that changes something from another
    /// origin (or from a client that does not say where it comes from).
    CrossOrigin,
    /// No open session.
    NoSession,
}

/// What the session cookie on `req` allows, if any.
pub(crate) fn session_access(sessions: &Sessions, req: &Request) -> SessionAccess {
    if !sessions.is_open(req.headers(), now()) {
        return SessionAccess::NoSession;
    }
    let safe = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if safe || same_origin(req.headers()) {
        SessionAccess::Granted
    } else {
        SessionAccess::CrossOrigin
    }
}

/// Whether a browser says the request comes from a page of this origin:
/// `Sec-Fetch-Site: same-origin` (which pages cannot forge), or, from
/// browsers that do not send it, an `Origin` naming this host. A request
/// with neither is not trusted with a cookie (scripts and tools use the
/// bearer token).
fn same_origin(headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site") {
        return site.as_bytes() == b"same-origin";
    }
    let (Some(origin), Some(host)) = (headers.get(header::ORIGIN), headers.get(header::HOST))
    else {
        return false;
    };
    let (Ok(origin), Ok(host)) = (origin.to_str(), host.to_str()) else {
        return false;
    };
    origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .is_some_and(|o| o.eq_ignore_ascii_case(host))
}

/// The session id in the request's `Cookie` headers, if well formed.
fn session_cookie(headers: &HeaderMap) -> Option<SessionId> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .and_then(|(_, value)| parse_id(value))
}

fn parse_id(hex: &str) -> Option<SessionId> {
    let bytes = hex.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut id = [0u8; 32];
    for (i, byte) in id.iter_mut().enumerate() {
        *byte = nibble(bytes[2 * i])? << 4 | nibble(bytes[2 * i + 1])?;
    }
    Some(id)
}

fn format_id(id: &SessionId) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

/// A fresh session id from the operating system's generator (not the
/// per-thread one request ids use: a session id is a credential).
fn new_session_id() -> Option<SessionId> {
    use rand::TryRngCore as _;
    let mut id = [0u8; 32];
    rand::rngs::OsRng.try_fill_bytes(&mut id).ok()?;
    Some(id)
}

/// Headers every dashboard response carries.
fn secured(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    resp
}

/// A build asset, or 304 when the browser's copy is this build's.
/// `no-cache` makes browsers ask each time: asset URLs carry no version,
/// so a cached copy must never outlive an upgrade.
fn asset(
    request: &HeaderMap,
    content_type: &'static str,
    body: &'static str,
    etag_suffix: &str,
) -> Response {
    let etag = build_etag(etag_suffix);
    let fresh = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .map(str::trim)
                .any(|t| t == "*" || t.trim_start_matches("W/") == etag)
        });
    let mut resp = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, content_type)], body).into_response()
    };
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    secured(resp)
}

async fn app_js(headers: HeaderMap) -> Response {
    asset(&headers, "text/javascript; charset=utf-8", APP_JS, "")
}

async fn app_css(headers: HeaderMap) -> Response {
    asset(&headers, "text/css; charset=utf-8", APP_CSS, "")
}

async fn favicon(headers: HeaderMap) -> Response {
    asset(&headers, "image/svg+xml", FAVICON_SVG, "")
}

/// `/ui`: the dashboard, or the login form when a token is configured and
/// the request has no open session.
async fn page(State(state): State<AdminState>, headers: HeaderMap) -> Response {
    if state.token.is_none() {
        return asset(&headers, "text/html; charset=utf-8", INDEX_HTML, "-open");
    }
    if state.sessions.is_open(&headers, now()) {
        let mut resp = asset(
            &headers,
            "text/html; charset=utf-8",
            &INDEX_WITH_LOGOUT,
            "-session",
        );
        resp.headers_mut()
            .insert(header::VARY, HeaderValue::from_static("Cookie"));
        return resp;
    }
    login_page(StatusCode::OK, "")
}

fn login_page(status: StatusCode, message: &str) -> Response {
    let body = LOGIN_HTML.replacen(MESSAGE_SLOT, message, 1);
    secured(
        (
            status,
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            body,
        )
            .into_response(),
    )
}

fn to_dashboard() -> Response {
    secured((StatusCode::SEE_OTHER, [(header::LOCATION, "/ui/")]).into_response())
}

/// The login form's fields.
#[derive(serde::Deserialize)]
struct LoginForm {
    #[serde(default)]
    token: String,
}

/// `POST /ui/login`: a correct token opens a session and goes to the
/// dashboard; anything else shows the form again with a message that
/// does not say what was wrong.
async fn login(
    State(state): State<AdminState>,
    form: Result<Form<LoginForm>, FormRejection>,
) -> Response {
    let Some(token) = &state.token else {
        return to_dashboard();
    };
    let accepted = form
        .as_ref()
        .is_ok_and(|Form(f)| constant_time_eq(f.token.as_bytes(), token.expose().as_bytes()));
    if !accepted {
        tracing::warn!("dashboard login refused");
        return login_page(StatusCode::UNAUTHORIZED, WRONG_TOKEN);
    }
    let Some(id) = new_session_id() else {
        tracing::error!("dashboard login failed: the operating system's random generator failed");
        return secured(
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "cannot open a session now\n",
            )
                .into_response(),
        );
    };
    state.sessions.with(|m| m.open(id, now()));
    tracing::info!("dashboard session opened");
    let cookie = format!(
        "{SESSION_COOKIE}={}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}",
        format_id(&id),
        SESSION_LIFETIME.as_secs()
    );
    let mut resp = to_dashboard();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

/// `POST /ui/logout`: ends the session (from the dashboard's own origin
/// only, so another site cannot log an operator out) and clears the
/// cookie.
async fn logout(State(state): State<AdminState>, headers: HeaderMap) -> Response {
    if let Some(id) = session_cookie(&headers) {
        if !same_origin(&headers) {
            return cross_origin();
        }
        if state.sessions.with(|m| m.close(&id)) {
            tracing::info!("dashboard session closed");
        }
    }
    let mut resp = to_dashboard();
    resp.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("levee_session=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"),
    );
    resp
}

/// The answer to a cookie-authenticated change from another origin.
pub(crate) fn cross_origin() -> Response {
    (
        StatusCode::FORBIDDEN,
        axum::Json(serde_json::json!({
            "error": "forbidden",
            "message": "a dashboard session may change things only from the dashboard's own origin",
        })),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> SessionId {
        [n; 32]
    }

    #[test]
    fn a_session_expires_after_its_lifetime() {
        let start = now();
        let mut m = SessionMap::new(10, Duration::from_secs(60));
        m.open(id(1), start);
        assert!(m.is_open(&id(1), start + Duration::from_secs(59)));
        assert!(!m.is_open(&id(1), start + Duration::from_secs(60)));
        assert_eq!(m.len(), 0, "an expired session is forgotten once seen");
        assert!(!m.is_open(&id(2), start), "an unknown id is not open");
    }

    #[test]
    fn use_does_not_extend_a_session() {
        let start = now();
        let mut m = SessionMap::new(10, Duration::from_secs(60));
        m.open(id(1), start);
        for s in [10, 30, 50] {
            assert!(m.is_open(&id(1), start + Duration::from_secs(s)));
        }
        assert!(!m.is_open(&id(1), start + Duration::from_secs(61)));
    }

    #[test]
    fn a_full_map_ends_the_oldest_session() {
        let start = now();
        let mut m = SessionMap::new(3, Duration::from_secs(3600));
        for n in 1..=3 {
            m.open(id(n), start + Duration::from_secs(u64::from(n)));
        }
        m.open(id(4), start + Duration::from_secs(10));
        assert_eq!(m.len(), 3);
        let at = start + Duration::from_secs(11);
        assert!(!m.is_open(&id(1), at), "the oldest went");
        for n in 2..=4 {
            assert!(m.is_open(&id(n), at), "session {n} stays");
        }
    }

    #[test]
    fn expired_sessions_make_room_before_open_ones_are_ended() {
        let start = now();
        let mut m = SessionMap::new(2, Duration::from_secs(60));
        m.open(id(1), start);
        m.open(id(2), start + Duration::from_secs(30));
        // At 70 s the first has expired: the second survives the third.
        m.open(id(3), start + Duration::from_secs(70));
        let at = start + Duration::from_secs(71);
        assert!(m.is_open(&id(2), at));
        assert!(m.is_open(&id(3), at));
    }

    #[test]
    fn the_bound_holds_under_many_logins() {
        let start = now();
        let mut m = SessionMap::new(MAX_SESSIONS, SESSION_LIFETIME);
        for n in 0..(MAX_SESSIONS as u32 + 500) {
            let mut sid = [0u8; 32];
            sid[..4].copy_from_slice(&n.to_be_bytes());
            m.open(sid, start + Duration::from_millis(u64::from(n)));
        }
        assert_eq!(m.len(), MAX_SESSIONS);
    }

    #[test]
    fn closing_ends_a_session() {
        let start = now();
        let mut m = SessionMap::new(10, Duration::from_secs(60));
        m.open(id(1), start);
        assert!(m.close(&id(1)));
        assert!(!m.close(&id(1)));
        assert!(!m.is_open(&id(1), start));
    }

    #[test]
    fn session_ids_round_trip_as_hex_and_are_distinct() {
        let a = new_session_id().unwrap();
        let b = new_session_id().unwrap();
        assert_ne!(a, b);
        let text = format_id(&a);
        assert_eq!(text.len(), 64);
        assert_eq!(parse_id(&text), Some(a));
        assert_eq!(parse_id(&text[..63]), None);
        assert_eq!(parse_id(&text.to_uppercase()), None);
    }

    #[test]
    fn the_cookie_is_found_among_others() {
        let sid = id(7);
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("a=1; {SESSION_COOKIE}={}; b=2", format_id(&sid)))
                .unwrap(),
        );
        assert_eq!(session_cookie(&h), Some(sid));
        let mut bad = HeaderMap::new();
        bad.insert(header::COOKIE, HeaderValue::from_static("levee_session=zz"));
        assert_eq!(session_cookie(&bad), None);
    }

    #[test]
    fn same_origin_needs_the_browser_to_say_so() {
        let headers = |pairs: &[(&'static str, &'static str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.insert(*k, HeaderValue::from_static(v));
            }
            h
        };
        assert!(same_origin(&headers(&[("sec-fetch-site", "same-origin")])));
        assert!(!same_origin(&headers(&[("sec-fetch-site", "same-site")])));
        assert!(!same_origin(&headers(&[("sec-fetch-site", "cross-site")])));
        assert!(
            !same_origin(&headers(&[
                ("sec-fetch-site", "cross-site"),
                ("origin", "http://127.0.0.1:9901"),
                ("host", "127.0.0.1:9901"),
            ])),
            "Sec-Fetch-Site decides when present"
        );
        assert!(same_origin(&headers(&[
            ("origin", "http://127.0.0.1:9901"),
            ("host", "127.0.0.1:9901"),
        ])));
        assert!(!same_origin(&headers(&[
            ("origin", "http://127.0.0.1:8080"),
            ("host", "127.0.0.1:9901"),
        ])));
        assert!(!same_origin(&headers(&[("origin", "null"), ("host", "x")])));
        assert!(!same_origin(&headers(&[("host", "127.0.0.1:9901")])));
    }

    #[test]
    fn the_etag_is_quoted_hex_of_the_build() {
        let etag = build_etag("");
        assert_eq!(etag.len(), 18);
        assert!(etag.starts_with('"') && etag.ends_with('"'));
        assert_ne!(build_etag("-open"), build_etag("-session"));
        assert!(INDEX_HTML.contains(LOGOUT_SLOT));
        assert!(LOGIN_HTML.contains(MESSAGE_SLOT));
        assert!(INDEX_WITH_LOGOUT.contains("/ui/logout"));
    }

    #[test]
    fn the_pages_have_no_inline_script_or_style() {
        for page in [INDEX_HTML, LOGIN_HTML] {
            assert!(!page.contains("<script>"), "inline script");
            assert!(!page.contains("style="), "inline style");
            assert!(!page.contains("<style"), "inline style sheet");
            for handler in ["onclick=", "onload=", "onsubmit=", "javascript:"] {
                assert!(!page.contains(handler), "inline handler {handler}");
            }
        }
    }
}
