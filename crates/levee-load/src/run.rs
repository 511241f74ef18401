//! The engine: an HTTP client and the tasks that send a run's requests
//! on schedule and record them.
//!
//! The open model has one scheduler task. It sleeps until each request's
//! scheduled time (`tokio::time::sleep_until` on the clock seam's
//! `Instant`), then hands the request to a bounded pool of in-flight
//! requests (`max_in_flight`); when the pool is full the request is
//! **dropped**: not sent, counted and reported. It never waits for an
//! answer, so a slow server cannot slow the rate down. The closed model
//! runs `vus` tasks, each sending its next request when the last one is
//! answered.
//!
//! A ticker closes each second of the run in the [`Recorder`], judges the
//! sliding windows and `abortOnFail` thresholds ([`Evaluator`]) and
//! reports progress. Plain `http://` over HTTP/1.1 takes the fast path
//! in [`crate::h1`]: bytes serialized once, a virtual user's own
//! connection (closed model) or a pool of idle ones (open model). TLS and
//! HTTP/2 take hyper-util's pooled client over a connector of our own:
//! TLS through rustls with ALPN (`h2` with `http2`), and a verifier that
//! accepts any certificate with `insecure`.

use crate::h1;
use crate::record::{ErrorKind, Outcome, Recorder};
use crate::schedule::Model;
use crate::threshold::{Evaluator, Verdict};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Uri};
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use levee_core::time::{now, Instant};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// One kind of request the run sends.
#[derive(Debug, Clone)]
pub struct RequestSpec {
    pub method: Method,
    pub uri: Uri,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// Its share of the requests, against the others' weights.
    pub weight: u32,
}

/// How the client connects.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// HTTP/2 only: h2c with prior knowledge for `http://`, ALPN `h2` for
    /// `https://`.
    pub http2: bool,
    /// Accept any server certificate (self-signed test servers).
    pub insecure: bool,
    /// Reuse connections (HTTP/1.1 keep-alive); off sends
    /// `Connection: close` and keeps no idle connection.
    pub keepalive: bool,
    /// How long one request may take, connecting included.
    pub timeout: Duration,
    /// How long connecting may take (also the check before the run).
    pub connect_timeout: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            http2: false,
            insecure: false,
            keepalive: true,
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
        }
    }
}

/// Everything a run needs.
#[derive(Debug)]
pub struct Plan {
    /// At least one.
    pub requests: Vec<RequestSpec>,
    pub model: Model,
    /// Requests in flight at most (open model); more are dropped.
    pub max_in_flight: usize,
    pub client: ClientOptions,
    pub evaluator: Evaluator,
}

/// The last second of a run is judged in windows if it lasted this long.
const LAST_SECOND_JUDGED: Duration = Duration::from_millis(900);

/// Idle keep-alive connections kept per host between requests.
const IDLE_PER_HOST: usize = 256;

/// The default bound on requests in flight.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 10_000;

/// The state of a run once a second, for a progress line.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    pub elapsed: Duration,
    pub duration: Duration,
    pub sent: u64,
    pub completed: u64,
    pub failed: u64,
    pub dropped: u64,
    pub late: u64,
    /// 99th percentile latency so far, in ms.
    pub p99_ms: f64,
}

/// What a run measured and how its thresholds fared.
#[derive(Debug)]
pub struct RunResult {
    pub recorder: Recorder,
    pub verdicts: Vec<Verdict>,
    /// From the start to the last request finished.
    pub elapsed: Duration,
    /// How long requests were sent for (shorter than planned when aborted).
    pub sending: Duration,
    /// The `abortOnFail` threshold that stopped the run early.
    pub aborted_by: Option<String>,
    /// The caller's `interrupt` stopped the run early.
    pub interrupted: bool,
    pub model: Model,
    /// The window length thresholds were also judged over.
    pub window_secs: usize,
}

/// Why a run could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The client cannot be built (TLS roots, bad options).
    #[error("{0}")]
    Setup(String),
    /// The target refused or did not accept a connection before the run.
    #[error("{0}")]
    Unreachable(String),
}

fn lock(rec: &Mutex<Recorder>) -> std::sync::MutexGuard<'_, Recorder> {
    rec.lock().unwrap_or_else(PoisonError::into_inner)
}

type HttpClient = Client<Connector, Full<Bytes>>;

/// Runs `plan`; `progress` hears about it once a second. When `interrupt`
/// completes (Ctrl-C), sending stops, requests in flight get a second to
/// finish (a virtual user finishes its request), and the result is judged
/// as it stands.
pub async fn run(
    plan: Plan,
    mut progress: impl FnMut(&Progress) + Send + 'static,
    interrupt: impl Future<Output = ()> + Send + 'static,
) -> Result<RunResult, StartError> {
    let Plan {
        requests,
        model,
        max_in_flight,
        client: options,
        mut evaluator,
    } = plan;
    if requests.is_empty() {
        return Err(StartError::Setup("no request to send".into()));
    }
    let client = build_client(&options, &requests)?;
    probe(&requests[0].uri, options.connect_timeout).await?;
    let mut pools: Vec<(String, Arc<h1::Pool>)> = Vec::new();
    let requests: Arc<[Prepared]> = requests
        .iter()
        .map(|r| Prepared::new(r, &options, &mut pools))
        .collect::<Result<_, _>>()
        .map_err(StartError::Setup)?;
    let pools: Vec<Arc<h1::Pool>> = pools.into_iter().map(|(_, p)| p).collect();
    let picker = Arc::new(Picker::new(&requests));

    let start = now();
    let window_secs = evaluator.window_secs();
    let rec = Arc::new(Mutex::new(Recorder::new(start, window_secs)));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(None::<String>);
    let stop_tx = Arc::new(stop_tx);
    let interrupted = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let (stop_tx, interrupted) = (stop_tx.clone(), interrupted.clone());
        tokio::spawn(async move {
            interrupt.await;
            // The flag is set before the stop is told, so whoever wakes on
            // the stop reads it (else an interrupt could be reported as a
            // threshold's abort).
            stop_tx.send_if_modified(|s| {
                let first = s.is_none();
                if first {
                    interrupted.store(true, Ordering::Relaxed);
                    *s = Some("interrupted".into());
                }
                first
            });
        })
    };
    let (done_tx, mut done_rx) = tokio::sync::watch::channel(false);
    let planned = model.duration();

    // The ticker: closes seconds, judges windows and abortOnFail, reports.
    let ticker = {
        let (rec, pools) = (rec.clone(), pools.clone());
        tokio::spawn(async move {
            let mut tick =
                tokio::time::interval_at(start + Duration::from_secs(1), Duration::from_secs(1));
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = done_rx.changed() => break,
                }
                for pool in &pools {
                    pool.prune();
                }
                let elapsed = now() - start;
                let p = {
                    let mut r = lock(&rec);
                    r.roll();
                    if let Some(t) = evaluator.on_second(&r, elapsed) {
                        let source = t.source.clone();
                        stop_tx.send_if_modified(|s| {
                            let first = s.is_none();
                            if first {
                                *s = Some(source);
                            }
                            first
                        });
                    }
                    snapshot(&r, elapsed, planned)
                };
                progress(&p);
            }
            evaluator
        })
    };

    let sending = match &model {
        Model::Open(schedule) => {
            let max_in_flight = max_in_flight.clamp(1, tokio::sync::Semaphore::MAX_PERMITS);
            let sem = Arc::new(tokio::sync::Semaphore::new(max_in_flight));
            let mut stop = stop_rx.clone();
            open_loop(
                schedule,
                start,
                &sem,
                &mut stop,
                |i, at, permit| match permit {
                    Some(permit) => {
                        let kind = picker.pick(i);
                        let (client, rec, requests) =
                            (client.clone(), rec.clone(), requests.clone());
                        let (timeout, connect_timeout) = (options.timeout, options.connect_timeout);
                        tokio::spawn(async move {
                            let req = &requests[kind];
                            match &req.fast {
                                Some(fast) => {
                                    let exchange = async {
                                        let sent = h1::send_pooled(
                                            &fast.pool,
                                            &fast.wire,
                                            fast.closes,
                                            connect_timeout,
                                        );
                                        outcome(sent.await)
                                    };
                                    timed(&rec, at, timeout, exchange).await;
                                }
                                None => {
                                    let exchange = exchange(&client, req.request());
                                    timed(&rec, at, timeout, exchange).await;
                                }
                            }
                            drop(permit);
                        });
                    }
                    None => lock(&rec).dropped(),
                },
            )
            .await;
            let sending = now() - start;
            // Wait for what is in flight; each request is bounded by the timeout.
            let all = u32::try_from(max_in_flight).unwrap_or(u32::MAX);
            let wait = if interrupted.load(Ordering::Relaxed) {
                Duration::from_secs(1)
            } else {
                options.timeout + Duration::from_secs(1)
            };
            let _ = tokio::time::timeout(wait, sem.acquire_many(all)).await;
            sending
        }
        Model::Closed { vus, duration } => {
            let end = start + *duration;
            let counter = Arc::new(AtomicU64::new(0));
            let mut users = tokio::task::JoinSet::new();
            for _ in 0..*vus {
                let (client, rec, requests, picker) = (
                    client.clone(),
                    rec.clone(),
                    requests.clone(),
                    picker.clone(),
                );
                let (counter, stop) = (counter.clone(), stop_rx.clone());
                let (timeout, connect_timeout) = (options.timeout, options.connect_timeout);
                let pools = pools.len();
                users.spawn(async move {
                    // The user's own connection to each address it sends to.
                    let mut conns: Vec<Option<h1::Conn>> = (0..pools).map(|_| None).collect();
                    while now() < end && stop.borrow().is_none() {
                        let i = counter.fetch_add(1, Ordering::Relaxed);
                        let req = &requests[picker.pick(i)];
                        match &req.fast {
                            Some(fast) => {
                                let slot = &mut conns[fast.pool_index];
                                let exchange = async {
                                    let (sent, conn) = h1::send(
                                        slot.take(),
                                        &fast.wire,
                                        fast.closes,
                                        connect_timeout,
                                    )
                                    .await;
                                    *slot = conn;
                                    outcome(sent)
                                };
                                timed(&rec, now(), timeout, exchange).await;
                            }
                            None => {
                                timed(&rec, now(), timeout, exchange(&client, req.request())).await;
                            }
                        }
                    }
                });
            }
            while users.join_next().await.is_some() {}
            (now() - start).min(*duration)
        }
    };

    let _ = done_tx.send(true);
    let mut evaluator = match ticker.await {
        Ok(e) => e,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    };
    let elapsed = now() - start;
    watcher.abort();
    let interrupted = interrupted.load(Ordering::Relaxed);
    let aborted_by = stop_rx.borrow().clone().filter(|_| !interrupted);
    let mut recorder = match Arc::try_unwrap(rec) {
        Ok(m) => m.into_inner().unwrap_or_else(PoisonError::into_inner),
        // A request task outlived the wait (a timeout longer than ours):
        // take what was recorded.
        Err(shared) => lock(&shared).clone(),
    };
    // The last, partial second joins the series, and the windows when it
    // is nearly whole (the run usually ends a few ms past its last tick).
    let partial = elapsed.saturating_sub(Duration::from_secs(recorder.series().len() as u64));
    recorder.roll();
    if partial >= LAST_SECOND_JUDGED {
        let _ = evaluator.on_second(&recorder, elapsed);
    }
    let verdicts = evaluator.finish(&recorder, sending.max(Duration::from_millis(1)));
    Ok(RunResult {
        recorder,
        verdicts,
        elapsed,
        sending,
        aborted_by,
        interrupted,
        model,
        window_secs,
    })
}

/// The open model's scheduler: for each request of `schedule`, sleeps
/// until its time from `start`, then calls `dispatch` with its index, its
/// scheduled time and a place in the pool of requests in flight, or `None`
/// when the pool is full (the request is dropped). Stops early when `stop`
/// carries a reason. It never waits for a request to finish.
pub(crate) async fn open_loop(
    schedule: &crate::schedule::Schedule,
    start: Instant,
    pool: &Arc<tokio::sync::Semaphore>,
    stop: &mut tokio::sync::watch::Receiver<Option<String>>,
    mut dispatch: impl FnMut(u64, Instant, Option<tokio::sync::OwnedSemaphorePermit>),
) {
    let mut i = 0u64;
    while let Some(offset) = schedule.offset(i) {
        if stop.borrow().is_some() {
            break;
        }
        let at = start + offset;
        if at > now() {
            tokio::select! {
                _ = tokio::time::sleep_until(at) => {}
                _ = stop.changed() => break,
            }
        } else if i % 64 == 63 {
            // Far behind: let the request tasks run.
            tokio::task::yield_now().await;
        }
        dispatch(i, at, pool.clone().try_acquire_owned().ok());
        i += 1;
    }
}

fn snapshot(r: &Recorder, elapsed: Duration, duration: Duration) -> Progress {
    let t = r.total();
    Progress {
        elapsed,
        duration,
        sent: r.sent_count(),
        completed: t.completed,
        failed: t.failed,
        dropped: t.dropped,
        late: r.late(),
        p99_ms: t.quantile_ms(0.99),
    }
}

/// Runs `exchange`, one request due at `scheduled`, within `timeout`, and
/// records it.
async fn timed(
    rec: &Mutex<Recorder>,
    scheduled: Instant,
    timeout: Duration,
    exchange: impl Future<Output = Outcome>,
) {
    lock(rec).sent(scheduled, now());
    let outcome = tokio::time::timeout(timeout, exchange)
        .await
        .unwrap_or(Outcome::Error(ErrorKind::Timeout));
    lock(rec).finished(scheduled, now(), outcome);
}

fn outcome(sent: Result<u16, ErrorKind>) -> Outcome {
    match sent {
        Ok(status) => Outcome::Status(status),
        Err(kind) => Outcome::Error(kind),
    }
}

/// The request and its answer, the body read to its end and thrown away.
async fn exchange(client: &HttpClient, req: Request<Full<Bytes>>) -> Outcome {
    match client.request(req).await {
        Ok(resp) => {
            let status = resp.status().as_u16();
            let mut body = resp.into_body();
            while let Some(frame) = body.frame().await {
                if frame.is_err() {
                    return Outcome::Error(ErrorKind::Protocol);
                }
            }
            Outcome::Status(status)
        }
        Err(e) if e.is_connect() => Outcome::Error(ErrorKind::Connect),
        Err(_) => Outcome::Error(ErrorKind::Protocol),
    }
}

/// A request ready to clone for each send, and serialized for the fast
/// path when it can take it.
struct Prepared {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
    weight: u32,
    fast: Option<Fast>,
}

/// A plain `http://` HTTP/1.1 request: its bytes and the idle connections
/// to its address.
struct Fast {
    wire: h1::Wire,
    /// The request says `Connection: close` (keep-alive off).
    closes: bool,
    pool: Arc<h1::Pool>,
    /// The pool's place in the run's list, for a virtual user's own
    /// connections.
    pool_index: usize,
}

impl Prepared {
    /// `pools` collects one pool of idle connections per address.
    fn new(
        spec: &RequestSpec,
        options: &ClientOptions,
        pools: &mut Vec<(String, Arc<h1::Pool>)>,
    ) -> Result<Self, String> {
        let mut headers = spec.headers.clone();
        headers
            .entry(http::header::USER_AGENT)
            .or_insert(HeaderValue::from_static(concat!(
                "levee-load/",
                env!("CARGO_PKG_VERSION")
            )));
        if !options.keepalive && !options.http2 {
            headers.insert(http::header::CONNECTION, HeaderValue::from_static("close"));
        }
        let fast = if spec.uri.scheme_str() == Some("http") && !options.http2 {
            let wire = h1::Wire::new(&spec.method, &spec.uri, &headers, &spec.body)?;
            let pool_index = match pools.iter().position(|(a, _)| *a == wire.addr) {
                Some(i) => i,
                None => {
                    let max_idle = if options.keepalive { IDLE_PER_HOST } else { 0 };
                    pools.push((wire.addr.clone(), Arc::new(h1::Pool::new(max_idle))));
                    pools.len() - 1
                }
            };
            Some(Fast {
                closes: h1::Wire::closes(&headers),
                pool: pools[pool_index].1.clone(),
                pool_index,
                wire,
            })
        } else {
            None
        };
        Ok(Self {
            method: spec.method.clone(),
            uri: spec.uri.clone(),
            headers,
            body: spec.body.clone(),
            weight: spec.weight.max(1),
            fast,
        })
    }

    fn request(&self) -> Request<Full<Bytes>> {
        let mut req = Request::new(Full::new(self.body.clone()));
        *req.method_mut() = self.method.clone();
        *req.uri_mut() = self.uri.clone();
        *req.headers_mut() = self.headers.clone();
        req
    }
}

/// Chooses request kinds in proportion to their weights, in a fixed
/// interleaved order: request `i` takes slot `i mod Σweights`.
#[derive(Debug)]
struct Picker {
    /// Cumulative weights.
    bounds: Vec<u64>,
}

impl Picker {
    fn new(requests: &[Prepared]) -> Self {
        let mut sum = 0;
        let bounds = requests
            .iter()
            .map(|r| {
                sum += u64::from(r.weight);
                sum
            })
            .collect();
        Self { bounds }
    }

    fn pick(&self, i: u64) -> usize {
        let total = self.bounds.last().copied().unwrap_or(1);
        let slot = i % total;
        self.bounds.partition_point(|b| *b <= slot)
    }
}

/// Connects once to the first request's host before the run, so an
/// unreachable target is a start error, not a run full of failures.
async fn probe(uri: &Uri, timeout: Duration) -> Result<(), StartError> {
    let addr = authority(uri).map_err(StartError::Setup)?;
    match tokio::time::timeout(timeout, TcpStream::connect(&addr)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(StartError::Unreachable(format!(
            "cannot connect to {addr}: {e}"
        ))),
        Err(_) => Err(StartError::Unreachable(format!(
            "cannot connect to {addr}: no connection within {timeout:?}"
        ))),
    }
}

/// `host:port` of an `http` or `https` URL.
fn authority(uri: &Uri) -> Result<String, String> {
    let tls = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        _ => {
            return Err(format!(
                "`{uri}`: the URL must start with http:// or https://"
            ))
        }
    };
    let host = uri
        .host()
        .ok_or_else(|| format!("`{uri}`: the URL has no host"))?;
    let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
    Ok(format!("{host}:{port}"))
}

fn build_client(
    options: &ClientOptions,
    requests: &[RequestSpec],
) -> Result<HttpClient, StartError> {
    for r in requests {
        authority(&r.uri).map_err(StartError::Setup)?;
    }
    let tls = if requests.iter().any(|r| r.uri.scheme_str() == Some("https")) {
        Some(Arc::new(tls_config(options).map_err(StartError::Setup)?))
    } else {
        None
    };
    let mut b = Client::builder(TokioExecutor::new());
    // Connections opened during a latency spike are not kept afterwards:
    // idle ones close after 2 s and at most IDLE_PER_HOST wait, so memory
    // follows the load instead of the worst moment of the run.
    b.pool_idle_timeout(Duration::from_secs(2));
    b.pool_max_idle_per_host(if options.keepalive { IDLE_PER_HOST } else { 0 });
    b.http2_only(options.http2);
    Ok(b.build(Connector {
        tls,
        connect_timeout: options.connect_timeout,
    }))
}

fn tls_config(options: &ClientOptions) -> Result<rustls::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?;
    let mut config = if options.insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
            .with_no_client_auth()
    } else {
        builder
            .with_root_certificates(system_roots()?)
            .with_no_client_auth()
    };
    config.alpn_protocols = if options.http2 {
        vec![b"h2".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    Ok(config)
}

/// The system's CA bundle: `$SSL_CERT_FILE`, else Debian's
/// `/etc/ssl/certs/ca-certificates.crt`.
fn system_roots() -> Result<rustls::RootCertStore, String> {
    use rustls_pki_types::pem::PemObject as _;
    let path = std::env::var_os("SSL_CERT_FILE").map_or_else(
        || "/etc/ssl/certs/ca-certificates.crt".into(),
        std::path::PathBuf::from,
    );
    let certs = rustls_pki_types::CertificateDer::pem_file_iter(&path)
        .map_err(|e| format!("TLS: cannot read the CA bundle {}: {e} (set SSL_CERT_FILE, or --insecure for a test server)", path.display()))?
        .filter_map(Result::ok);
    let mut roots = rustls::RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(format!(
            "TLS: no certificate in the CA bundle {}",
            path.display()
        ));
    }
    Ok(roots)
}

/// `--insecure`: any certificate is accepted, but the handshake's
/// signatures are still checked.
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls_pki_types::CertificateDer<'_>,
        _intermediates: &[rustls_pki_types::CertificateDer<'_>],
        _server_name: &rustls_pki_types::ServerName<'_>,
        _ocsp: &[u8],
        _now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Opens TCP connections, wrapped in TLS for `https` URLs.
#[derive(Clone)]
struct Connector {
    tls: Option<Arc<rustls::ClientConfig>>,
    connect_timeout: Duration,
}

impl tower_service::Service<Uri> for Connector {
    type Response = TokioIo<Conn>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let invalid = |m: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, m);
            let addr = authority(&uri).map_err(invalid)?;
            let tcp = tokio::time::timeout(this.connect_timeout, TcpStream::connect(&addr))
                .await
                .map_err(|_| {
                    std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timeout")
                })??;
            let _ = tcp.set_nodelay(true);
            if uri.scheme_str() != Some("https") {
                return Ok(TokioIo::new(Conn::Plain(tcp)));
            }
            let config = this
                .tls
                .clone()
                .ok_or_else(|| invalid("no TLS configuration".into()))?;
            let host = uri.host().unwrap_or_default().trim_matches(['[', ']']);
            let name = rustls_pki_types::ServerName::try_from(host.to_string())
                .map_err(|e| invalid(format!("`{host}`: {e}")))?;
            let tls = tokio_rustls::TlsConnector::from(config)
                .connect(name, tcp)
                .await?;
            Ok(TokioIo::new(Conn::Tls(Box::new(tls))))
        })
    }
}

/// A connection, plain or TLS.
enum Conn {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl Connection for Conn {
    fn connected(&self) -> Connected {
        match self {
            Conn::Plain(_) => Connected::new(),
            Conn::Tls(s) if s.get_ref().1.alpn_protocol() == Some(b"h2") => {
                Connected::new().negotiated_h2()
            }
            Conn::Tls(_) => Connected::new(),
        }
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_flush(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::Schedule;

    /// Runs the open model's scheduler on paused time with requests that
    /// each take `service`; (when each was dispatched, its scheduled time)
    /// for those sent, and the number dropped.
    async fn simulate(
        rate: f64,
        max_in_flight: usize,
        service: Duration,
    ) -> (Vec<(Instant, Instant)>, u64) {
        let schedule = Schedule::constant(rate, Duration::from_secs(1)).unwrap();
        let pool = Arc::new(tokio::sync::Semaphore::new(max_in_flight));
        let (_tx, mut stop) = tokio::sync::watch::channel(None);
        let start = now();
        let mut sent = Vec::new();
        let mut dropped = 0;
        open_loop(
            &schedule,
            start,
            &pool,
            &mut stop,
            |_, at, permit| match permit {
                Some(permit) => {
                    sent.push((now(), at));
                    tokio::spawn(async move {
                        tokio::time::sleep(service).await;
                        drop(permit);
                    });
                }
                None => dropped += 1,
            },
        )
        .await;
        (sent, dropped)
    }

    #[tokio::test(start_paused = true)]
    async fn the_open_model_sends_on_schedule_however_slow_the_answers() {
        let start = now();
        // Answers take 500 ms, 50 times the interval: the rate holds.
        let (sent, dropped) = simulate(100.0, 10_000, Duration::from_millis(500)).await;
        assert_eq!((sent.len(), dropped), (100, 0));
        for (i, (at, due)) in sent.iter().enumerate() {
            assert_eq!(*due, start + Duration::from_millis(10 * i as u64));
            assert_eq!(at, due, "request {i} left at its time");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_pool_drops_instead_of_waiting() {
        // Each request holds its place for 80 ms at 100/s: 8 would be in
        // flight, the pool has 5, so some are dropped, and none is delayed.
        let (sent, dropped) = simulate(100.0, 5, Duration::from_millis(80)).await;
        assert_eq!(sent.len() as u64 + dropped, 100);
        assert!(
            dropped > 0 && sent.len() >= 50,
            "{} sent, {dropped} dropped",
            sent.len()
        );
        assert!(sent.iter().all(|(at, due)| at == due));
    }

    #[test]
    fn weights_interleave_in_proportion() {
        let spec = |w| Prepared {
            method: Method::GET,
            uri: Uri::from_static("http://x/"),
            headers: HeaderMap::new(),
            body: Bytes::new(),
            weight: w,
            fast: None,
        };
        let p = Picker::new(&[spec(3), spec(1)]);
        let picks: Vec<usize> = (0..8).map(|i| p.pick(i)).collect();
        assert_eq!(picks, [0, 0, 0, 1, 0, 0, 0, 1]);
    }

    #[test]
    fn urls_need_a_scheme_and_host() {
        assert_eq!(
            authority(&Uri::from_static("http://a:8080/x")).unwrap(),
            "a:8080"
        );
        assert_eq!(authority(&Uri::from_static("https://a/")).unwrap(), "a:443");
        assert!(authority(&Uri::from_static("ftp://a/")).is_err());
        assert!(authority(&Uri::from_static("/x")).is_err());
    }
}
