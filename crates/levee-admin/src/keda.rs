//! KEDA's external scaler, served over gRPC (h2c) on `[admin] keda_listen`:
//! the service `externalscaler.ExternalScaler` of KEDA's
//! `externalscaler.proto` (`IsActive`, `StreamIsActive`, `GetMetricSpec`,
//! `GetMetrics`; the optional `StreamMetricSpec` answers UNIMPLEMENTED, so
//! KEDA polls), with signals only the gateway has. A ScaledObject's
//! `metadata` picks one:
//!
//! | `signal` | needs | value | default `target` |
//! |---|---|---|---|
//! | `burn_rate` | `slo` (an objective id) | the highest burn rate among its windows | 1 |
//! | `latency_headroom` | `slo` (a latency objective) | the route's p99 over the last 10 s step, as a share of the threshold (1 = at the threshold) | 0.8 |
//! | `concurrency` | `route` | requests in flight the arrival rate needs by Little's law: arrivals per second × mean latency, over the last complete 10 s step of the route's history | the route's cluster concurrency limit, else 100 |
//! | `queue_age` | `route` (async) | seconds the oldest undelivered job has waited | 30 |
//!
//! `target` and `activation` (the value above which the scaler is active;
//! default 0) may be given. The HPA then asks for `ceil(value / target)`
//! replicas' worth. Messages are hand-written prost structs with the
//! proto's field numbers (no protoc at build time); the test checks them
//! against the proto file with Debian's `protoc`.

use crate::AdminState;
use futures_util::Stream;
use http::{Request, Response};
use hyper::body::Incoming;
use levee_control::history::Window;
use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;
use tonic::server::{ServerStreamingService, UnaryService};
use tonic::Status;
use tonic_prost::ProstCodec;

#[derive(Clone, PartialEq, prost::Message)]
pub struct ScaledObjectRef {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub namespace: String,
    #[prost(map = "string, string", tag = "3")]
    pub scaler_metadata: HashMap<String, String>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct IsActiveResponse {
    #[prost(bool, tag = "1")]
    pub result: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct GetMetricSpecResponse {
    #[prost(message, repeated, tag = "1")]
    pub metric_specs: Vec<MetricSpec>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct MetricSpec {
    #[prost(string, tag = "1")]
    pub metric_name: String,
    #[prost(int64, tag = "2")]
    pub target_size: i64,
    #[prost(double, tag = "3")]
    pub target_size_float: f64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct GetMetricsRequest {
    #[prost(message, optional, tag = "1")]
    pub scaled_object_ref: Option<ScaledObjectRef>,
    #[prost(string, tag = "2")]
    pub metric_name: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct GetMetricsResponse {
    #[prost(message, repeated, tag = "1")]
    pub metric_values: Vec<MetricValue>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct MetricValue {
    #[prost(string, tag = "1")]
    pub metric_name: String,
    #[prost(int64, tag = "2")]
    pub metric_value: i64,
    #[prost(double, tag = "3")]
    pub metric_value_float: f64,
}

const SERVICE: &str = "/externalscaler.ExternalScaler/";
/// How often `StreamIsActive` says whether the scaler is active.
const STREAM_EVERY: Duration = Duration::from_secs(5);

type Reply<T> = Pin<Box<dyn Future<Output = Result<tonic::Response<T>, Status>> + Send>>;
type ActiveStream = Pin<Box<dyn Stream<Item = Result<IsActiveResponse, Status>> + Send>>;

/// One ScaledObject's question: which signal, about what, against what.
#[derive(Debug, Clone, PartialEq)]
struct Question {
    signal: Signal,
    subject: String,
    target: f64,
    activation: f64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Signal {
    BurnRate,
    LatencyHeadroom,
    Concurrency,
    QueueAge,
}

impl Signal {
    fn name(self) -> &'static str {
        match self {
            Signal::BurnRate => "burn_rate",
            Signal::LatencyHeadroom => "latency_headroom",
            Signal::Concurrency => "concurrency",
            Signal::QueueAge => "queue_age",
        }
    }
}

fn number(meta: &HashMap<String, String>, key: &str) -> Result<Option<f64>, Status> {
    match meta.get(key) {
        None => Ok(None),
        Some(v) => v
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|n| n.is_finite() && *n >= 0.0)
            .map(Some)
            .ok_or_else(|| Status::invalid_argument(format!("metadata {key} is not a number"))),
    }
}

impl Question {
    fn of(state: &AdminState, r: &ScaledObjectRef) -> Result<Self, Status> {
        let meta = &r.scaler_metadata;
        let need = |key: &str| {
            meta.get(key)
                .cloned()
                .ok_or_else(|| Status::invalid_argument(format!("metadata {key} is required")))
        };
        let (signal, subject, default_target) = match meta.get("signal").map(String::as_str) {
            Some("burn_rate") => (Signal::BurnRate, need("slo")?, 1.0),
            Some("latency_headroom") => (Signal::LatencyHeadroom, need("slo")?, 0.8),
            Some("concurrency") => {
                let route = need("route")?;
                let limit = concurrency_limit(state, &route).unwrap_or(100.0);
                (Signal::Concurrency, route, limit)
            }
            Some("queue_age") => (Signal::QueueAge, need("route")?, 30.0),
            _ => {
                return Err(Status::invalid_argument(
                    "metadata signal is burn_rate, latency_headroom, concurrency or queue_age",
                ))
            }
        };
        let target = number(meta, "target")?.unwrap_or(default_target);
        if target <= 0.0 {
            return Err(Status::invalid_argument("metadata target must be above 0"));
        }
        Ok(Self {
            signal,
            subject,
            target,
            activation: number(meta, "activation")?.unwrap_or(0.0),
        })
    }

    fn metric_name(&self) -> String {
        let subject: String = self
            .subject
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '-'
                }
            })
            .collect();
        format!("levee-{}-{subject}", self.signal.name().replace('_', "-"))
    }

    /// The signal's value now.
    async fn value(&self, state: &AdminState) -> Result<f64, Status> {
        match self.signal {
            Signal::BurnRate => {
                let configured = state
                    .gateway
                    .config()
                    .slos
                    .iter()
                    .any(|s| s.objectives.iter().any(|o| o.id == self.subject));
                if !configured {
                    return Err(Status::not_found(format!(
                        "no SLO objective {}",
                        self.subject
                    )));
                }
                // Not evaluated yet (just started): nothing burns.
                let report = state.control.slo_report();
                Ok(report
                    .slos
                    .iter()
                    .find(|s| s.id == self.subject)
                    .map_or(0.0, |slo| {
                        slo.windows
                            .iter()
                            .filter_map(|w| w.burn_rate)
                            .fold(0.0, f64::max)
                    }))
            }
            Signal::LatencyHeadroom => {
                let config = state.gateway.config();
                let slo = config
                    .slos
                    .iter()
                    .flat_map(|s| s.objectives.iter().map(move |o| (s, o)))
                    .find(|(_, o)| o.id == self.subject)
                    .ok_or_else(|| {
                        Status::not_found(format!("no SLO objective {}", self.subject))
                    })?;
                let (Some(threshold), Some(route)) = (slo.1.threshold, slo.0.scope.route.clone())
                else {
                    return Err(Status::failed_precondition(
                        "latency_headroom needs a latency objective scoped to a route",
                    ));
                };
                let Some(step) = last_step(state, &route).await else {
                    return Ok(0.0);
                };
                let p99 = step.p99_ms.unwrap_or(0.0);
                Ok(p99 / (threshold.as_secs_f64() * 1000.0))
            }
            Signal::Concurrency => {
                let Some((step, seconds, rows)) = last_step_with_rows(state, &self.subject).await
                else {
                    return Ok(0.0);
                };
                let arrivals = step.requests as f64 / seconds as f64;
                Ok(arrivals * mean_seconds(&step, &rows))
            }
            Signal::QueueAge => {
                let queue = state
                    .gateway
                    .job_queue(&self.subject)
                    .ok_or_else(|| Status::not_found(format!("no async route {}", self.subject)))?;
                let stats = queue
                    .stats()
                    .await
                    .map_err(|_| Status::unavailable("the job queue cannot answer now"))?;
                Ok(stats.oldest_undelivered.map_or(0.0, |d| d.as_secs_f64()))
            }
        }
    }
}

/// The route's cluster's concurrency limit now, if it has one.
fn concurrency_limit(state: &AdminState, route: &str) -> Option<f64> {
    let config = state.gateway.config();
    let cluster = &config.routes.iter().find(|r| r.name == route)?.cluster;
    let capacity = state.gateway.capacity();
    let c = capacity.clusters.iter().find(|c| c.name == *cluster)?;
    c.resources
        .iter()
        .find(|r| r.resource == "concurrency")
        .map(|r| r.limit)
}

/// The route's last complete 10-second step.
async fn last_step(
    state: &AdminState,
    route: &str,
) -> Option<levee_control::history::HistoryPoint> {
    last_step_with_rows(state, route).await.map(|(p, _, _)| p)
}

async fn last_step_with_rows(
    state: &AdminState,
    route: &str,
) -> Option<(levee_control::history::HistoryPoint, u64, Vec<Option<f64>>)> {
    let history = state.control.route_history(route, Window::Hour).await?;
    let n = history.points.len();
    // The last point is the step under way; the one before is whole.
    let point = history
        .points
        .get(n.checked_sub(2)?)
        .cloned()
        .filter(|p| p.requests > 0)?;
    Some((point, history.step_seconds.max(1), history.rows_ms))
}

/// The step's mean latency in seconds, from its heatmap rows (each row's
/// lower bound, so slightly low), else its median.
fn mean_seconds(step: &levee_control::history::HistoryPoint, rows_ms: &[Option<f64>]) -> f64 {
    let (mut sum, mut n) = (0.0, 0u64);
    for (count, row) in step.counts.iter().zip(rows_ms) {
        if let Some(ms) = row {
            sum += *count as f64 * ms;
            n += count;
        }
    }
    if n > 0 {
        sum / n as f64 / 1000.0
    } else {
        step.p50_ms.unwrap_or(0.0) / 1000.0
    }
}

#[derive(Clone)]
struct IsActive(AdminState);

impl UnaryService<ScaledObjectRef> for IsActive {
    type Response = IsActiveResponse;
    type Future = Reply<IsActiveResponse>;
    fn call(&mut self, req: tonic::Request<ScaledObjectRef>) -> Self::Future {
        let state = self.0.clone();
        Box::pin(async move {
            let q = Question::of(&state, req.get_ref())?;
            let value = q.value(&state).await?;
            Ok(tonic::Response::new(IsActiveResponse {
                result: value > q.activation,
            }))
        })
    }
}

#[derive(Clone)]
struct StreamIsActive(AdminState);

impl ServerStreamingService<ScaledObjectRef> for StreamIsActive {
    type Response = IsActiveResponse;
    type ResponseStream = ActiveStream;
    type Future = Reply<ActiveStream>;
    fn call(&mut self, req: tonic::Request<ScaledObjectRef>) -> Self::Future {
        let state = self.0.clone();
        Box::pin(async move {
            let q = Question::of(&state, req.get_ref())?;
            let stream =
                futures_util::stream::unfold((state, q, true), |(state, q, first)| async move {
                    if !first {
                        tokio::time::sleep(STREAM_EVERY).await;
                    }
                    let item = q.value(&state).await.map(|v| IsActiveResponse {
                        result: v > q.activation,
                    });
                    Some((item, (state, q, false)))
                });
            Ok(tonic::Response::new(Box::pin(stream) as ActiveStream))
        })
    }
}

#[derive(Clone)]
struct GetMetricSpec(AdminState);

impl UnaryService<ScaledObjectRef> for GetMetricSpec {
    type Response = GetMetricSpecResponse;
    type Future = Reply<GetMetricSpecResponse>;
    fn call(&mut self, req: tonic::Request<ScaledObjectRef>) -> Self::Future {
        let state = self.0.clone();
        Box::pin(async move {
            let q = Question::of(&state, req.get_ref())?;
            Ok(tonic::Response::new(GetMetricSpecResponse {
                metric_specs: vec![MetricSpec {
                    metric_name: q.metric_name(),
                    target_size: q.target.ceil() as i64,
                    target_size_float: q.target,
                }],
            }))
        })
    }
}

#[derive(Clone)]
struct GetMetrics(AdminState);

impl UnaryService<GetMetricsRequest> for GetMetrics {
    type Response = GetMetricsResponse;
    type Future = Reply<GetMetricsResponse>;
    fn call(&mut self, req: tonic::Request<GetMetricsRequest>) -> Self::Future {
        let state = self.0.clone();
        Box::pin(async move {
            let r = req.into_inner();
            let so = r
                .scaled_object_ref
                .ok_or_else(|| Status::invalid_argument("scaledObjectRef is required"))?;
            let q = Question::of(&state, &so)?;
            let value = q.value(&state).await?;
            Ok(tonic::Response::new(GetMetricsResponse {
                metric_values: vec![MetricValue {
                    metric_name: q.metric_name(),
                    metric_value: value.ceil() as i64,
                    metric_value_float: value,
                }],
            }))
        })
    }
}

/// The service's method table (what tonic codegen would generate).
async fn dispatch(
    state: AdminState,
    req: Request<Incoming>,
) -> Result<Response<tonic::body::Body>, Infallible> {
    let method = req
        .uri()
        .path()
        .strip_prefix(SERVICE)
        .unwrap_or("")
        .to_string();
    Ok(match method.as_str() {
        "IsActive" => {
            let mut grpc = tonic::server::Grpc::new(
                ProstCodec::<IsActiveResponse, ScaledObjectRef>::default(),
            );
            grpc.unary(IsActive(state), req).await
        }
        "StreamIsActive" => {
            let mut grpc = tonic::server::Grpc::new(
                ProstCodec::<IsActiveResponse, ScaledObjectRef>::default(),
            );
            grpc.server_streaming(StreamIsActive(state), req).await
        }
        "GetMetricSpec" => {
            let mut grpc = tonic::server::Grpc::new(ProstCodec::<
                GetMetricSpecResponse,
                ScaledObjectRef,
            >::default());
            grpc.unary(GetMetricSpec(state), req).await
        }
        "GetMetrics" => {
            let mut grpc = tonic::server::Grpc::new(ProstCodec::<
                GetMetricsResponse,
                GetMetricsRequest,
            >::default());
            grpc.unary(GetMetrics(state), req).await
        }
        _ => Status::unimplemented("no such method").into_http(),
    })
}

/// Serves the external scaler on `listener` (HTTP/2 prior knowledge, as
/// KEDA's gRPC client speaks) until `shutdown` resolves.
pub fn serve_keda(
    gateway: levee_proxy::Gateway,
    control: levee_control::Control,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    let state = AdminState::for_scaler(gateway, control);
    tokio::spawn(async move {
        tokio::pin!(shutdown);
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                () = &mut shutdown => return,
            };
            let Ok((stream, _)) = accepted else { continue };
            let state = state.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| dispatch(state.clone(), req));
                let _ =
                    hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
            });
        }
    })
}
