//! Real gRPC through Levee: a tonic server behind the gateway and a tonic
//! client in front of it, speaking h2c on both hops.
//!
//! No protoc: the messages are hand-written prost structs, the server is
//! tonic's `server::Grpc` dispatching by path (what codegen produces), served
//! by hyper's HTTP/2 server, and the client is tonic's `client::Grpc` over
//! hyper-util's HTTP/2 (prior knowledge) client.

use futures_util::{Stream, StreamExt};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use levee_testkit::{eventually, TestGateway};
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;
use tokio::net::TcpListener;
use tonic::codec::Streaming;
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::server::{ServerStreamingService, StreamingService, UnaryService};
use tonic::{Code, Request, Response, Status};
use tonic_prost::ProstCodec;

/// Bounds every await of a test: a bug fails the test, never hangs it.
const LIMIT: Duration = Duration::from_secs(10);

#[derive(Clone, PartialEq, prost::Message)]
struct HelloRequest {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(uint32, tag = "2")]
    count: u32,
}

#[derive(Clone, PartialEq, prost::Message)]
struct HelloReply {
    #[prost(string, tag = "1")]
    message: String,
    #[prost(uint32, tag = "2")]
    index: u32,
}

const GREET: &str = "/levee.test.Greeter/Greet";
const GREET_MANY: &str = "/levee.test.Greeter/GreetMany";
const CHAT: &str = "/levee.test.Greeter/Chat";

type ReplyFuture<T> = Pin<Box<dyn Future<Output = Result<Response<T>, Status>> + Send>>;
type ReplyStream = Pin<Box<dyn Stream<Item = Result<HelloReply, Status>> + Send>>;

/// Unary: greets `name`; the name "missing" is answered with NOT_FOUND.
/// Echoes the caller's `x-caller` metadata back as `x-greeter-saw`.
struct Greet;

impl UnaryService<HelloRequest> for Greet {
    type Response = HelloReply;
    type Future = ReplyFuture<HelloReply>;

    fn call(&mut self, req: Request<HelloRequest>) -> Self::Future {
        let caller = req.metadata().get("x-caller").cloned();
        let name = req.into_inner().name;
        Box::pin(async move {
            if name == "missing" {
                return Err(Status::not_found("no greeter named missing"));
            }
            if name == "down" {
                return Err(Status::unavailable("the greeter is down"));
            }
            if name == "slow" {
                tokio::time::sleep(Duration::from_secs(3)).await;
            }
            let mut resp = Response::new(HelloReply {
                message: format!("hello, {name}"),
                index: 0,
            });
            if let Some(caller) = caller {
                resp.metadata_mut().insert("x-greeter-saw", caller);
            }
            Ok(resp)
        })
    }
}

/// Server streaming: `count` replies in order; for the name "vanishing" the
/// stream then ends with NOT_FOUND (and metadata), which travels in trailers.
struct GreetMany;

impl ServerStreamingService<HelloRequest> for GreetMany {
    type Response = HelloReply;
    type ResponseStream = ReplyStream;
    type Future = ReplyFuture<ReplyStream>;

    fn call(&mut self, req: Request<HelloRequest>) -> Self::Future {
        let HelloRequest { name, count } = req.into_inner();
        Box::pin(async move {
            let mut items: Vec<Result<HelloReply, Status>> = (0..count)
                .map(|i| {
                    Ok(HelloReply {
                        message: format!("hello #{i}, {name}"),
                        index: i,
                    })
                })
                .collect();
            if name == "vanishing" {
                let mut md = MetadataMap::new();
                md.insert("x-detail", MetadataValue::from_static("gone"));
                items.push(Err(Status::with_metadata(
                    Code::NotFound,
                    "greeter vanished",
                    md,
                )));
            }
            let stream: ReplyStream = Box::pin(futures_util::stream::iter(items));
            Ok(Response::new(stream))
        })
    }
}

/// Bidirectional streaming: one reply per request message, as it arrives.
struct Chat;

impl StreamingService<HelloRequest> for Chat {
    type Response = HelloReply;
    type ResponseStream = ReplyStream;
    type Future = ReplyFuture<ReplyStream>;

    fn call(&mut self, req: Request<Streaming<HelloRequest>>) -> Self::Future {
        let incoming = req.into_inner();
        Box::pin(async move {
            let stream: ReplyStream = Box::pin(incoming.map(|m| {
                m.map(|m| HelloReply {
                    message: format!("echo: {}", m.name),
                    index: m.count,
                })
            }));
            Ok(Response::new(stream))
        })
    }
}

/// The server's method table (what tonic codegen would generate).
async fn greeter(
    req: http::Request<Incoming>,
) -> Result<http::Response<tonic::body::Body>, Infallible> {
    let codec = ProstCodec::<HelloReply, HelloRequest>::default;
    let mut grpc = tonic::server::Grpc::new(codec());
    Ok(match req.uri().path() {
        GREET => grpc.unary(Greet, req).await,
        GREET_MANY => grpc.server_streaming(GreetMany, req).await,
        CHAT => grpc.streaming(Chat, req).await,
        _ => Status::unimplemented("no such method").into_http(),
    })
}

/// A gRPC server (HTTP/2 only, as gRPC servers are) on 127.0.0.1:0.
async fn start_greeter() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind greeter");
    let addr = listener.local_addr().expect("greeter addr");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service_fn(greeter))
                    .await;
            });
        }
    });
    addr
}

async fn start_gateway(greeter: SocketAddr) -> TestGateway {
    TestGateway::start(&format!(
        r#"
[admin]
listen = "127.0.0.1:0"

[[listeners]]
name = "public"
listen = "127.0.0.1:0"

[[routes]]
name = "grpc"
cluster = "greeter"
match = {{ path = {{ prefix = "/" }} }}

[[clusters]]
name = "greeter"
protocol = "http2"
endpoints = ["{greeter}"]
"#
    ))
    .await
}

type Channel = hyper_util::client::legacy::Client<HttpConnector, tonic::body::Body>;

/// A tonic client connected to `url` over h2c (prior knowledge).
fn client(url: &str) -> tonic::client::Grpc<Channel> {
    let http = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http();
    tonic::client::Grpc::with_origin(http, url.parse().expect("origin"))
}

fn codec() -> ProstCodec<HelloRequest, HelloReply> {
    ProstCodec::default()
}

fn hello(name: &str, count: u32) -> HelloRequest {
    HelloRequest {
        name: name.to_string(),
        count,
    }
}

async fn within<F: Future>(what: &str, f: F) -> F::Output {
    tokio::time::timeout(LIMIT, f)
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within {LIMIT:?}"))
}

async fn unary(
    grpc: &mut tonic::client::Grpc<Channel>,
    req: Request<HelloRequest>,
) -> Result<Response<HelloReply>, Status> {
    call_path(grpc, GREET, req).await
}

async fn expect_requests_counted(gw: &TestGateway, code: &str) {
    let series = format!(r#"levee_requests_total{{route="grpc",cluster="greeter",code="{code}"}}"#);
    eventually(LIMIT, &format!("{series} > 0"), || async {
        gw.metric(&series) > 0.0
    })
    .await;
}

#[tokio::test]
async fn unary_call_passes_through_with_metadata_and_trailers() {
    let gw = start_gateway(start_greeter().await).await;
    let mut grpc = client(&gw.url("public"));

    let mut req = Request::new(hello("levee", 0));
    req.metadata_mut()
        .insert("x-caller", MetadataValue::from_static("grpc-test"));
    let resp = unary(&mut grpc, req).await.expect("unary call succeeds");

    assert_eq!(resp.get_ref().message, "hello, levee");
    // Response headers made it back...
    assert_eq!(
        resp.metadata()
            .get("x-greeter-saw")
            .map(|v| v.to_str().unwrap()),
        Some("grpc-test")
    );
    // ...and so did the trailers (tonic merges them into the metadata of a
    // unary response; without a grpc-status trailer the call would fail).
    assert_eq!(
        resp.metadata()
            .get("grpc-status")
            .map(|v| v.to_str().unwrap()),
        Some("0")
    );

    // A second call on the same client reuses the h2 connection.
    let resp = unary(&mut grpc, Request::new(hello("again", 0)))
        .await
        .expect("second unary call succeeds");
    assert_eq!(resp.get_ref().message, "hello, again");

    expect_requests_counted(&gw, "2xx").await;
}

#[tokio::test]
async fn server_streaming_returns_every_message_in_order() {
    const N: u32 = 50;
    let gw = start_gateway(start_greeter().await).await;
    let mut grpc = client(&gw.url("public"));

    let mut stream = within("server-streaming call", async {
        grpc.ready().await.expect("client ready");
        grpc.server_streaming(
            Request::new(hello("stream", N)),
            GREET_MANY.parse().expect("path"),
            codec(),
        )
        .await
    })
    .await
    .expect("server-streaming call starts")
    .into_inner();

    let mut got = Vec::new();
    while let Some(reply) = within("next stream message", stream.message())
        .await
        .expect("stream message")
    {
        got.push(reply);
    }
    let indexes: Vec<u32> = got.iter().map(|r| r.index).collect();
    assert_eq!(indexes, (0..N).collect::<Vec<_>>());
    assert_eq!(got[7].message, "hello #7, stream");

    let trailers = within("trailers", stream.trailers())
        .await
        .expect("trailers")
        .expect("the stream ended with trailers");
    assert_eq!(
        trailers.get("grpc-status").map(|v| v.to_str().unwrap()),
        Some("0")
    );

    expect_requests_counted(&gw, "2xx").await;
}

#[tokio::test]
async fn error_status_reaches_the_client() {
    let gw = start_gateway(start_greeter().await).await;
    let mut grpc = client(&gw.url("public"));

    // A handler error: tonic answers "trailers-only" (grpc-status in the one
    // HEADERS frame, which ends the stream).
    let status = unary(&mut grpc, Request::new(hello("missing", 0)))
        .await
        .expect_err("NOT_FOUND expected");
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    assert_eq!(status.message(), "no greeter named missing");

    // An unknown method.
    let status = within("unknown method", async {
        grpc.ready().await.expect("client ready");
        grpc.unary::<_, HelloReply, _>(
            Request::new(hello("x", 0)),
            "/levee.test.Greeter/Nope".parse().expect("path"),
            codec(),
        )
        .await
    })
    .await
    .expect_err("UNIMPLEMENTED expected");
    assert_eq!(status.code(), Code::Unimplemented, "{status:?}");

    // gRPC errors are HTTP 200s: Levee counts them as such.
    expect_requests_counted(&gw, "2xx").await;
}

#[tokio::test]
async fn error_status_after_messages_travels_in_trailers() {
    let gw = start_gateway(start_greeter().await).await;
    let mut grpc = client(&gw.url("public"));

    let mut stream = within("server-streaming call", async {
        grpc.ready().await.expect("client ready");
        grpc.server_streaming(
            Request::new(hello("vanishing", 3)),
            GREET_MANY.parse().expect("path"),
            codec(),
        )
        .await
    })
    .await
    .expect("the call starts: its status is not in the headers")
    .into_inner();

    for i in 0..3 {
        let reply = within("stream message", stream.message())
            .await
            .expect("message before the error")
            .expect("stream not over yet");
        assert_eq!(reply.index, i);
    }
    // The status, its message and custom metadata arrive in the HTTP/2
    // trailers, after the DATA frames: only a proxy that forwards trailers
    // lets the client see them.
    let status = within("final status", stream.message())
        .await
        .expect_err("the stream ends with NOT_FOUND");
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    assert_eq!(status.message(), "greeter vanished");
    assert_eq!(
        status
            .metadata()
            .get("x-detail")
            .map(|v| v.to_str().unwrap()),
        Some("gone")
    );
}

#[tokio::test]
async fn bidirectional_stream_is_relayed_message_by_message() {
    let gw = start_gateway(start_greeter().await).await;
    let mut grpc = client(&gw.url("public"));

    let (tx, rx) = tokio::sync::mpsc::channel::<HelloRequest>(1);
    let outbound =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|m| (m, rx)) });
    // The first message is queued before the call starts, so the call does
    // not depend on when the server sends its response head.
    tx.send(hello("m0", 0)).await.expect("send first");
    let mut inbound = within("bidi call", async {
        grpc.ready().await.expect("client ready");
        grpc.streaming(Request::new(outbound), CHAT.parse().expect("path"), codec())
            .await
    })
    .await
    .expect("bidi call starts")
    .into_inner();

    // Lock step: each reply must arrive before the next request is sent, so
    // neither direction can be buffered until the end of the stream.
    for i in 0..5u32 {
        if i > 0 {
            within("send", tx.send(hello(&format!("m{i}"), i)))
                .await
                .expect("request stream open");
        }
        let reply = within("reply", inbound.message())
            .await
            .expect("reply")
            .expect("stream open");
        assert_eq!(reply.message, format!("echo: m{i}"));
        assert_eq!(reply.index, i);
    }
    drop(tx); // half-close: the server's stream ends, then its status follows
    let end = within("end of stream", inbound.message())
        .await
        .expect("clean end");
    assert!(end.is_none());
    let trailers = within("trailers", inbound.trailers())
        .await
        .expect("trailers")
        .expect("trailers present");
    assert_eq!(
        trailers.get("grpc-status").map(|v| v.to_str().unwrap()),
        Some("0")
    );

    expect_requests_counted(&gw, "2xx").await;
}

/// A gateway in front of `greeter` with an availability SLO on its route,
/// and a route that no gRPC method matches.
async fn start_gateway_with_slo(greeter: SocketAddr) -> TestGateway {
    TestGateway::start(&format!(
        r#"
[admin]
listen = "127.0.0.1:0"
[runtime]
access_log = false

[[listeners]]
name = "public"
listen = "127.0.0.1:0"

[[routes]]
name = "grpc"
cluster = "greeter"
match = {{ path = {{ prefix = "/levee.test." }} }}

[[routes]]
name = "gone"
cluster = "nowhere"
match = {{ path = {{ prefix = "/levee.gone." }} }}

[[clusters]]
name = "greeter"
protocol = "http2"
endpoints = ["{greeter}"]

[[clusters]]
name = "nowhere"
protocol = "http2"
endpoints = ["127.0.0.1:9"]

[[slos]]
name = "grpc-availability"
sli = "availability"
route = "grpc"
objective = "99%"
period = "1h"
"#
    ))
    .await
}

async fn call_path(
    grpc: &mut tonic::client::Grpc<Channel>,
    path: &'static str,
    req: Request<HelloRequest>,
) -> Result<Response<HelloReply>, Status> {
    within("unary call", async {
        grpc.ready().await.expect("client ready");
        grpc.unary(req, path.parse().expect("path"), codec()).await
    })
    .await
}

#[tokio::test]
async fn levee_answers_grpc_callers_in_grpc() {
    let gw = start_gateway_with_slo(start_greeter().await).await;
    let mut grpc = client(&gw.url("public"));

    // A passed deadline is DEADLINE_EXCEEDED, not a retryable UNAVAILABLE.
    let mut req = Request::new(hello("slow", 0));
    req.metadata_mut()
        .insert("grpc-timeout", MetadataValue::from_static("200m"));
    let status = unary(&mut grpc, req)
        .await
        .expect_err("the deadline passes");
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert_eq!(
        status
            .metadata()
            .get("levee-error")
            .map(|v| v.to_str().unwrap()),
        Some("upstream_timeout")
    );

    // No route is UNIMPLEMENTED.
    let status = call_path(
        &mut grpc,
        "/other.Service/Call",
        Request::new(hello("x", 0)),
    )
    .await
    .expect_err("no route");
    assert_eq!(status.code(), Code::Unimplemented, "{status:?}");

    // A refused connection is UNAVAILABLE, and says nothing of addresses
    // or the OS error.
    let status = call_path(
        &mut grpc,
        "/levee.gone.Service/Call",
        Request::new(hello("x", 0)),
    )
    .await
    .expect_err("the upstream is down");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(!status.message().contains("127.0.0.1"), "{status:?}");
    assert!(!status.message().contains("os error"), "{status:?}");
    assert!(status.metadata().get("x-request-id").is_some());
}

#[tokio::test]
async fn grpc_errors_in_trailers_count_as_the_failures_they_are() {
    let gw = start_gateway_with_slo(start_greeter().await).await;
    let mut grpc = client(&gw.url("public"));
    assert!(unary(&mut grpc, Request::new(hello("ok", 0))).await.is_ok());
    let down = unary(&mut grpc, Request::new(hello("down", 0))).await;
    assert_eq!(down.expect_err("UNAVAILABLE").code(), Code::Unavailable);
    let missing = unary(&mut grpc, Request::new(hello("missing", 0))).await;
    assert_eq!(missing.expect_err("NOT_FOUND").code(), Code::NotFound);
    // A stream that ends with an error after its messages: the status
    // travels in trailers.
    let mut stream = within("stream", async {
        grpc.ready().await.unwrap();
        grpc.server_streaming(
            Request::new(hello("vanishing", 2)),
            GREET_MANY.parse().unwrap(),
            codec(),
        )
        .await
    })
    .await
    .expect("stream starts")
    .into_inner();
    let mut last = None;
    while let Some(item) = within("next", stream.next()).await {
        if let Err(status) = item {
            last = Some(status.code());
        }
    }
    assert_eq!(last, Some(Code::NotFound));

    let series =
        |code: &str| format!(r#"levee_grpc_status_total{{route="grpc",grpc_status="{code}"}}"#);
    eventually(LIMIT, "gRPC statuses counted", || async {
        gw.metric(&series("14")) == 1.0 && gw.metric(&series("5")) == 2.0
    })
    .await;
    // UNAVAILABLE is the server's failure; NOT_FOUND is the caller's.
    gw.control.evaluate_slos().await;
    let report = gw.control.slo_report();
    let slo = report
        .slos
        .iter()
        .find(|s| s.slo == "grpc-availability")
        .expect("the SLO is reported");
    assert_eq!((slo.events, slo.bad_events), (4, 1), "{slo:?}");
}
