//! `ScriptedUpstream`: upstream endpoints in memory, for tests on paused
//! time. It is a [`Connector`]: the gateway's HTTP/1.1 connections to its
//! endpoints become in-memory pipes whose other end a real hyper HTTP/1.1
//! server task serves, so responses are genuine HTTP and everything the
//! gateway does after the socket runs unchanged. Each endpoint follows a
//! script of [`Step`]s (answer after a delay, hang, reset mid-body), per
//! path if wanted, and a [`Connect`] rule (accept, refuse, never complete).
//! Delays are tokio timers, so under `#[tokio::test(start_paused = true)]`
//! they cost no wall time.
//!
//! ```ignore
//! #[tokio::test(start_paused = true)]
//! async fn slow_then_fine() {
//!     let up = ScriptedUpstream::new();
//!     let a = up.endpoint("a"); // 192.0.2.1:80, answers 200 "a"
//!     up.script(a, [Step::status(503), Step::ok().after(Duration::from_secs(2))]);
//!     up.script_path(a, "/healthz", [Step::ok()]);
//!     let gw = TestGateway::start_with_connector(&config_naming(a), up.connector()).await;
//!     // ... requests over real loopback sockets; 2 s pass in no wall time ...
//!     assert_eq!(up.requests_to(a, "/work"), 2);
//!     up.set_connect(a, Connect::Refuse); // new connections refused
//!     up.close_connections(a);            // and the open ones dropped
//! }
//! ```

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use levee_core::time::Instant;
use levee_proxy::{ConnectFuture, Connector, UpstreamIo};
use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

type BoxBody = http_body_util::combinators::BoxBody<Bytes, std::io::Error>;

/// Bytes an in-memory connection buffers each way.
const PIPE_BYTES: usize = 64 * 1024;

/// One scripted answer to a request.
#[derive(Debug, Clone)]
pub struct Step {
    status: u16,
    delay: Duration,
    body: Option<Bytes>,
    headers: Vec<(String, String)>,
    action: Action,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Action {
    Respond,
    Hang,
    ResetMidBody,
}

impl Step {
    /// 200 with the endpoint's name as body.
    pub fn ok() -> Self {
        Self::status(200)
    }

    /// Answer with `status` (body: the endpoint's name).
    pub fn status(status: u16) -> Self {
        Self {
            status,
            delay: Duration::ZERO,
            body: None,
            headers: Vec::new(),
            action: Action::Respond,
        }
    }

    /// Never answer (the connection stays open).
    pub fn hang() -> Self {
        Self {
            action: Action::Hang,
            ..Self::ok()
        }
    }

    /// Send a 200 head and part of the body, then cut the connection.
    pub fn reset_mid_body() -> Self {
        Self {
            action: Action::ResetMidBody,
            ..Self::ok()
        }
    }

    /// Wait `delay` (tokio time) before answering.
    pub fn after(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// Answer with this body instead of the endpoint's name.
    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = Some(body.into());
        self
    }

    /// Add a response header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }
}

/// How an endpoint takes a new connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Connect {
    /// Connect at once.
    Accept,
    /// Refuse (`ECONNREFUSED`).
    Refuse,
    /// Never complete the connect: the gateway's connect timeout ends it.
    Never,
}

/// A request the upstream received.
#[derive(Debug, Clone)]
pub struct Arrival {
    /// The endpoint.
    pub addr: SocketAddr,
    /// The request path.
    pub path: String,
    /// When it arrived (virtual time under a paused test).
    pub at: Instant,
}

/// Steps taken in turn, the last repeating.
#[derive(Debug)]
struct Script {
    steps: Vec<Step>,
    next: usize,
}

impl Script {
    fn new(steps: Vec<Step>) -> Self {
        assert!(!steps.is_empty(), "a script needs at least one step");
        Self { steps, next: 0 }
    }

    fn take(&mut self) -> Step {
        let step = self.steps[self.next.min(self.steps.len() - 1)].clone();
        self.next += 1;
        step
    }
}

#[derive(Debug)]
struct Endpoint {
    name: String,
    connect: Connect,
    default: Script,
    paths: HashMap<String, Script>,
    connects: u64,
    /// Requests it works on at once, when limited.
    capacity: Option<Arc<tokio::sync::Semaphore>>,
    /// Bumped to close every open connection.
    closer: tokio::sync::watch::Sender<u64>,
}

#[derive(Debug, Default)]
struct State {
    endpoints: HashMap<SocketAddr, Endpoint>,
    arrivals: Vec<Arrival>,
}

/// In-memory upstream endpoints with scripted behaviour; a [`Connector`].
/// Cheap to clone (clones share the endpoints).
#[derive(Debug, Clone, Default)]
pub struct ScriptedUpstream {
    state: Arc<Mutex<State>>,
}

impl ScriptedUpstream {
    /// No endpoints yet.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds an endpoint named `name` that answers 200 with its name, and
    /// returns its address (`192.0.2.N:80`, a documentation range no real
    /// connect would reach) for the gateway's config.
    pub fn endpoint(&self, name: &str) -> SocketAddr {
        let mut state = self.lock();
        let n = u8::try_from(state.endpoints.len() + 1).expect("at most 255 endpoints");
        let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, n)), 80);
        state.endpoints.insert(
            addr,
            Endpoint {
                name: name.to_string(),
                connect: Connect::Accept,
                default: Script::new(vec![Step::ok()]),
                paths: HashMap::new(),
                connects: 0,
                capacity: None,
                closer: tokio::sync::watch::Sender::new(0),
            },
        );
        addr
    }

    fn with<T>(&self, addr: SocketAddr, f: impl FnOnce(&mut Endpoint) -> T) -> T {
        let mut state = self.lock();
        let ep = state
            .endpoints
            .get_mut(&addr)
            .unwrap_or_else(|| panic!("no scripted endpoint at {addr}"));
        f(ep)
    }

    /// From now on, requests to `addr` (on paths without a script of their
    /// own) take `steps` in turn, the last repeating.
    pub fn script(&self, addr: SocketAddr, steps: impl IntoIterator<Item = Step>) {
        let script = Script::new(steps.into_iter().collect());
        self.with(addr, |ep| ep.default = script);
    }

    /// From now on, requests to `addr` for `path` take `steps` in turn.
    pub fn script_path(&self, addr: SocketAddr, path: &str, steps: impl IntoIterator<Item = Step>) {
        let script = Script::new(steps.into_iter().collect());
        self.with(addr, |ep| {
            ep.paths.insert(path.to_string(), script);
        });
    }

    /// How `addr` takes new connections from now on (open ones stay).
    pub fn set_connect(&self, addr: SocketAddr, connect: Connect) {
        self.with(addr, |ep| ep.connect = connect);
    }

    /// `addr` works on at most `n` requests at once; the others wait their
    /// turn before their step's delay starts (a fixed-capacity server).
    pub fn capacity(&self, addr: SocketAddr, n: usize) {
        let sem = Arc::new(tokio::sync::Semaphore::new(n));
        self.with(addr, |ep| ep.capacity = Some(sem));
    }

    /// Closes every open connection to `addr` (as a process that exits
    /// would); with [`Connect::Refuse`] the endpoint is then down.
    pub fn close_connections(&self, addr: SocketAddr) {
        self.with(addr, |ep| ep.closer.send_modify(|g| *g += 1));
    }

    /// Requests `addr` received (every path).
    pub fn requests(&self, addr: SocketAddr) -> usize {
        self.lock()
            .arrivals
            .iter()
            .filter(|a| a.addr == addr)
            .count()
    }

    /// Requests `addr` received for `path`.
    pub fn requests_to(&self, addr: SocketAddr, path: &str) -> usize {
        self.lock()
            .arrivals
            .iter()
            .filter(|a| a.addr == addr && a.path == path)
            .count()
    }

    /// Connections `addr` was asked for (accepted or not).
    pub fn connects(&self, addr: SocketAddr) -> u64 {
        self.with(addr, |ep| ep.connects)
    }

    /// Every request received so far, in order of arrival.
    pub fn arrivals(&self) -> Vec<Arrival> {
        self.lock().arrivals.clone()
    }

    /// This upstream as the gateway's connector.
    pub fn connector(&self) -> Arc<dyn Connector> {
        Arc::new(self.clone())
    }

    /// Records a request and picks its step.
    fn arrive(
        &self,
        addr: SocketAddr,
        path: &str,
    ) -> (String, Step, Option<Arc<tokio::sync::Semaphore>>) {
        let mut state = self.lock();
        state.arrivals.push(Arrival {
            addr,
            path: path.to_string(),
            at: levee_core::time::now(),
        });
        let ep = state.endpoints.get_mut(&addr).expect("connected endpoint");
        let step = match ep.paths.get_mut(path) {
            Some(script) => script.take(),
            None => ep.default.take(),
        };
        (ep.name.clone(), step, ep.capacity.clone())
    }
}

impl Connector for ScriptedUpstream {
    fn connect(&self, addr: SocketAddr) -> ConnectFuture {
        let connect = {
            let mut state = self.lock();
            state.endpoints.get_mut(&addr).map(|ep| {
                ep.connects += 1;
                (ep.connect, ep.closer.subscribe())
            })
        };
        let upstream = self.clone();
        Box::pin(async move {
            match connect {
                None | Some((Connect::Refuse, _)) => Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionRefused,
                    format!("scripted: {addr} refuses connections"),
                )),
                Some((Connect::Never, _)) => std::future::pending().await,
                Some((Connect::Accept, closed)) => {
                    let (ours, theirs) = tokio::io::duplex(PIPE_BYTES);
                    tokio::spawn(serve(upstream, addr, theirs, closed));
                    Ok(UpstreamIo::Memory(ours))
                }
            }
        })
    }
}

/// Serves one in-memory connection with hyper's HTTP/1.1 server, until
/// it ends or the endpoint's connections are closed.
async fn serve(
    upstream: ScriptedUpstream,
    addr: SocketAddr,
    io: tokio::io::DuplexStream,
    mut closed: tokio::sync::watch::Receiver<u64>,
) {
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let upstream = upstream.clone();
        async move { respond(&upstream, addr, req).await }
    });
    let conn =
        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(io), service);
    tokio::select! {
        _ = conn => {}
        _ = closed.changed() => {}
    }
}

async fn respond(
    upstream: &ScriptedUpstream,
    addr: SocketAddr,
    req: Request<Incoming>,
) -> Result<Response<BoxBody>, Infallible> {
    let (name, step, capacity) = upstream.arrive(addr, req.uri().path());
    // Read the request body, as a real server would, before answering.
    let _ = req.into_body().collect().await;
    let _slot = match capacity {
        Some(sem) => sem.acquire_owned().await.ok(),
        None => None,
    };
    if !step.delay.is_zero() {
        tokio::time::sleep(step.delay).await;
    }
    let mut head = Response::builder()
        .status(StatusCode::from_u16(step.status).unwrap_or(StatusCode::OK))
        .header("x-upstream", name.as_str());
    for (k, v) in &step.headers {
        head = head.header(k.as_str(), v.as_str());
    }
    let body = match step.action {
        Action::Hang => std::future::pending().await,
        Action::ResetMidBody => {
            head = head.header("content-length", "1000000");
            // The pause lets hyper flush the head and first bytes before
            // the error makes it drop the connection.
            let chunks = futures_util::stream::unfold(0u8, |step| async move {
                match step {
                    0 => Some((Ok(Frame::data(Bytes::from_static(b"partial"))), 1)),
                    1 => {
                        tokio::task::yield_now().await;
                        Some((Err(std::io::Error::other("scripted reset mid-body")), 2))
                    }
                    _ => None,
                }
            });
            StreamBody::new(chunks).boxed()
        }
        Action::Respond => Full::new(step.body.unwrap_or_else(|| Bytes::from(name)))
            .map_err(|never: Infallible| match never {})
            .boxed(),
    };
    Ok(head.body(body).expect("valid scripted response"))
}
