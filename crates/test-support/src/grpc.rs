//! A real gRPC service for end-to-end tests: tonic's server and client machinery with
//! hand-written prost messages (no `protoc`, no build script), so gRPC tests go through the
//! framing, trailers and status handling of a real gRPC stack.
//!
//! The service, `shoal.test.Greeter`, as a `.proto` file would declare it:
//!
//! ```text
//! service Greeter {
//!   rpc SayHello (HelloRequest) returns (HelloReply);          // unary
//!   rpc SayMany (HelloRequest) returns (stream HelloReply);    // `count` replies
//!   rpc Sum (stream Number) returns (Total);                   // sum and count of the numbers
//!   rpc Echo (stream HelloRequest) returns (stream HelloReply); // one reply per request, in turn
//! }
//! ```
//!
//! A [`HelloRequest`] says how to answer: `delay_ms` makes the server wait before answering
//! (before its first reply for `SayMany`); a non-zero `fail_code` makes it fail with that
//! status (for `SayMany`, after its `count` replies, so that the status travels in real
//! HTTP/2 trailers), with a message and binary metadata ([`DETAIL_BIN`], [`DETAILS`]). Every
//! reply names the replica that served it and the `grpc-timeout` it received.
//!
//! [`GrpcServer`] runs the service in-process on `127.0.0.1:0`, counting calls and calls the
//! client cancelled. [`run`] runs it as a replica process: the test binary run again as one
//! `#[ignore]`d test (as [`crate::worker`] does), listening on `PORT`, so a test can SIGKILL or
//! SIGSTOP it; [`replica_service`] is the stack file's service for it. The server speaks
//! HTTP/1.1 too, for the supervisor's health check (`GET /health`).
//!
//! [`GreeterClient`] calls it over any tonic transport: [`GreeterClient::channel`] (a tonic
//! `Channel`, one HTTP/2 connection, as applications use; it enforces deadlines itself and
//! reports its own expiry as `CANCELLED`) or [`GreeterClient::plain`] (hyper's HTTP/2 client,
//! which only sends the deadline as `grpc-timeout`: whatever enforces it is the gateway or the
//! server).
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use http::uri::PathAndQuery;
use http::{Request, Response, Uri};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tonic::client::GrpcService;
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::{Code, Status, Streaming};
use tonic_prost::ProstCodec;

use crate::client::BoxError;
use crate::stack::Service;

pub use tonic;

/// The variable that makes [`run`] serve.
pub const ENV: &str = "SHOAL_TEST_GRPC";

/// The binary metadata a failing call carries (in its trailers).
pub const DETAIL_BIN: &str = "x-detail-bin";

/// The value of [`DETAIL_BIN`]: not text (a NUL, a CR LF, bytes above 0x7f).
pub const DETAIL: &[u8] = &[0x00, 0x9f, 0xff, 0x0d, 0x0a, 0x7f, b'd', b'e', b't'];

/// The `grpc-status-details-bin` a failing call carries.
pub const DETAILS: &[u8] = &[0x08, 0x03, 0x12, 0x04, 0xde, 0xad, 0xbe, 0xef];

/// The service's name, as in paths.
pub const SERVICE: &str = "shoal.test.Greeter";

const SAY_HELLO: &str = "/shoal.test.Greeter/SayHello";
const SAY_MANY: &str = "/shoal.test.Greeter/SayMany";
const SUM: &str = "/shoal.test.Greeter/Sum";
const ECHO: &str = "/shoal.test.Greeter/Echo";

/// A greeting to make, and how to answer it.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HelloRequest {
    /// Who to greet.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Wait this long before answering.
    #[prost(uint32, tag = "2")]
    pub delay_ms: u32,
    /// Non-zero: fail with this gRPC status code.
    #[prost(int32, tag = "3")]
    pub fail_code: i32,
    /// `SayMany`: how many replies.
    #[prost(uint32, tag = "4")]
    pub count: u32,
}

/// A greeting.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HelloReply {
    /// `Hello, NAME!` (`SayMany`: `Hello, NAME! #I`).
    #[prost(string, tag = "1")]
    pub message: String,
    /// The replica that answered: its name, or `SERVICE/INDEX` for a supervised replica.
    #[prost(string, tag = "2")]
    pub replica: String,
    /// The `grpc-timeout` the call arrived with, empty if none.
    #[prost(string, tag = "3")]
    pub grpc_timeout: String,
}

/// One number of a `Sum`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Number {
    /// The number.
    #[prost(int64, tag = "1")]
    pub value: i64,
}

/// What `Sum` saw.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Total {
    /// The sum of the numbers.
    #[prost(int64, tag = "1")]
    pub sum: i64,
    /// How many numbers.
    #[prost(uint64, tag = "2")]
    pub count: u64,
    /// The replica that answered.
    #[prost(string, tag = "3")]
    pub replica: String,
}

/// A request to greet `name`, answered at once.
pub fn hello(name: &str) -> HelloRequest {
    HelloRequest {
        name: name.to_owned(),
        ..HelloRequest::default()
    }
}

/// `msg` as one gRPC message on the wire: uncompressed flag, length (big-endian), bytes.
pub fn frame(msg: &impl prost::Message) -> Bytes {
    let encoded = msg.encode_to_vec();
    let mut framed = Vec::with_capacity(5 + encoded.len());
    framed.push(0);
    framed.extend_from_slice(&u32::try_from(encoded.len()).expect("small").to_be_bytes());
    framed.extend_from_slice(&encoded);
    Bytes::from(framed)
}

/// What the server saw, for tests that check it.
#[derive(Debug, Default)]
pub struct Stats {
    calls: AtomicU64,
    cancelled: AtomicU64,
}

impl Stats {
    /// Calls received (any method).
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }

    /// Calls given up before their answer was made: the client (or the gateway) reset the
    /// stream, or the connection closed.
    pub fn cancelled(&self) -> u64 {
        self.cancelled.load(Ordering::SeqCst)
    }
}

/// Counts a call as cancelled unless it finished.
struct CallGuard {
    stats: Arc<Stats>,
    finished: bool,
}

impl CallGuard {
    fn new(stats: &Arc<Stats>) -> CallGuard {
        stats.calls.fetch_add(1, Ordering::SeqCst);
        CallGuard {
            stats: Arc::clone(stats),
            finished: false,
        }
    }
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        if !self.finished {
            self.stats.cancelled.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// The service's implementation.
#[derive(Debug, Clone)]
struct Greeter {
    replica: Arc<str>,
    stats: Arc<Stats>,
}

/// The status a request with `fail_code` gets.
fn failure(code: i32, name: &str) -> Status {
    let mut metadata = MetadataMap::new();
    metadata.insert_bin(DETAIL_BIN, MetadataValue::from_bytes(DETAIL));
    metadata.insert("x-detail", MetadataValue::from_static("plain text"));
    Status::with_details_and_metadata(
        Code::from(code),
        format!("failed as asked for {name}"),
        Bytes::from_static(DETAILS),
        metadata,
    )
}

fn grpc_timeout_of(metadata: &MetadataMap) -> String {
    metadata
        .get("grpc-timeout")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

type Reply<T> = Result<tonic::Response<T>, Status>;
type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;
type ReplyStream = Pin<Box<dyn Stream<Item = Result<HelloReply, Status>> + Send>>;

impl Greeter {
    async fn say_hello(self, req: tonic::Request<HelloRequest>) -> Reply<HelloReply> {
        let mut guard = CallGuard::new(&self.stats);
        let grpc_timeout = grpc_timeout_of(req.metadata());
        let req = req.into_inner();
        tokio::time::sleep(Duration::from_millis(req.delay_ms.into())).await;
        guard.finished = true;
        if req.fail_code != 0 {
            return Err(failure(req.fail_code, &req.name));
        }
        Ok(tonic::Response::new(HelloReply {
            message: format!("Hello, {}!", req.name),
            replica: self.replica.to_string(),
            grpc_timeout,
        }))
    }

    async fn say_many(self, req: tonic::Request<HelloRequest>) -> Reply<ReplyStream> {
        let mut guard = CallGuard::new(&self.stats);
        let grpc_timeout = grpc_timeout_of(req.metadata());
        let req = req.into_inner();
        tokio::time::sleep(Duration::from_millis(req.delay_ms.into())).await;
        guard.finished = true;
        let (replica, name) = (self.replica.to_string(), req.name.clone());
        let replies = (1..=req.count).map(move |i| {
            Ok(HelloReply {
                message: format!("Hello, {name}! #{i}"),
                replica: replica.clone(),
                grpc_timeout: grpc_timeout.clone(),
            })
        });
        let end = (req.fail_code != 0).then(|| Err(failure(req.fail_code, &req.name)));
        let stream = futures_util::stream::iter(replies.chain(end));
        Ok(tonic::Response::new(Box::pin(stream)))
    }

    async fn sum(self, req: tonic::Request<Streaming<Number>>) -> Reply<Total> {
        let mut guard = CallGuard::new(&self.stats);
        let mut numbers = req.into_inner();
        let (mut sum, mut count) = (0i64, 0u64);
        while let Some(n) = numbers.next().await {
            sum += n?.value;
            count += 1;
        }
        guard.finished = true;
        Ok(tonic::Response::new(Total {
            sum,
            count,
            replica: self.replica.to_string(),
        }))
    }

    async fn echo(self, req: tonic::Request<Streaming<HelloRequest>>) -> Reply<ReplyStream> {
        let mut guard = CallGuard::new(&self.stats);
        guard.finished = true;
        let grpc_timeout = grpc_timeout_of(req.metadata());
        let replica = self.replica.to_string();
        let replies = req.into_inner().map(move |r| {
            r.map(|r| HelloReply {
                message: r.name,
                replica: replica.clone(),
                grpc_timeout: grpc_timeout.clone(),
            })
        });
        Ok(tonic::Response::new(Box::pin(replies)))
    }

    /// Answer one HTTP request: a gRPC call, or `GET /health`.
    async fn handle(self, req: Request<Incoming>) -> Response<tonic::body::Body> {
        let path = req.uri().path().to_owned();
        let methods = Methods(self);
        match path.as_str() {
            SAY_HELLO => {
                let codec = ProstCodec::<HelloReply, HelloRequest>::default();
                tonic::server::Grpc::new(codec).unary(methods, req).await
            }
            SAY_MANY => {
                let codec = ProstCodec::<HelloReply, HelloRequest>::default();
                tonic::server::Grpc::new(codec)
                    .server_streaming(methods, req)
                    .await
            }
            SUM => {
                let codec = ProstCodec::<Total, Number>::default();
                tonic::server::Grpc::new(codec)
                    .client_streaming(methods, req)
                    .await
            }
            ECHO => {
                let codec = ProstCodec::<HelloReply, HelloRequest>::default();
                tonic::server::Grpc::new(codec)
                    .streaming(methods, req)
                    .await
            }
            "/health" => Response::new(tonic::body::Body::new(Full::new(Bytes::from("ok")))),
            path => Status::unimplemented(format!("no method {path}")).into_http(),
        }
    }
}

/// The service's methods, as tonic's server traits want them (as generated code has them).
struct Methods(Greeter);

impl tonic::server::UnaryService<HelloRequest> for Methods {
    type Response = HelloReply;
    type Future = BoxFuture<Reply<HelloReply>>;

    fn call(&mut self, request: tonic::Request<HelloRequest>) -> Self::Future {
        Box::pin(self.0.clone().say_hello(request))
    }
}

impl tonic::server::ServerStreamingService<HelloRequest> for Methods {
    type Response = HelloReply;
    type ResponseStream = ReplyStream;
    type Future = BoxFuture<Reply<ReplyStream>>;

    fn call(&mut self, request: tonic::Request<HelloRequest>) -> Self::Future {
        Box::pin(self.0.clone().say_many(request))
    }
}

impl tonic::server::ClientStreamingService<Number> for Methods {
    type Response = Total;
    type Future = BoxFuture<Reply<Total>>;

    fn call(&mut self, request: tonic::Request<Streaming<Number>>) -> Self::Future {
        Box::pin(self.0.clone().sum(request))
    }
}

impl tonic::server::StreamingService<HelloRequest> for Methods {
    type Response = HelloReply;
    type ResponseStream = ReplyStream;
    type Future = BoxFuture<Reply<ReplyStream>>;

    fn call(&mut self, request: tonic::Request<Streaming<HelloRequest>>) -> Self::Future {
        Box::pin(self.0.clone().echo(request))
    }
}

/// Serve `greeter` on `listener` (HTTP/2 with prior knowledge, or HTTP/1.1) until `stop`
/// turns true; then stop accepting, send every connection a GOAWAY, and return once their
/// open calls are answered (at most `grace` later).
async fn serve(
    greeter: Greeter,
    listener: TcpListener,
    mut stop: watch::Receiver<bool>,
    grace: Duration,
) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let stream = tokio::select! {
            _ = stop.wait_for(|s| *s) => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => continue,
            },
        };
        let _ = stream.set_nodelay(true);
        let greeter = greeter.clone();
        let svc = hyper::service::service_fn(move |req| {
            let greeter = greeter.clone();
            async move { Ok::<_, Infallible>(greeter.handle(req).await) }
        });
        let conn = auto::Builder::new(TokioExecutor::new())
            .serve_connection(TokioIo::new(stream), svc)
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            let _ = conn.await;
        });
    }
    drop(listener);
    let _ = tokio::time::timeout(grace, graceful.shutdown()).await;
}

/// The greeter, served in-process on `127.0.0.1:0` until dropped.
#[derive(Debug)]
pub struct GrpcServer {
    url: String,
    name: String,
    stats: Arc<Stats>,
    stop: watch::Sender<bool>,
}

impl GrpcServer {
    /// Start a greeter that names itself `name` in its replies.
    pub async fn start(name: &str) -> GrpcServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("local addr"));
        let stats = Arc::new(Stats::default());
        let greeter = Greeter {
            replica: name.into(),
            stats: Arc::clone(&stats),
        };
        let (stop, stopped) = watch::channel(false);
        tokio::spawn(serve(greeter, listener, stopped, Duration::ZERO));
        GrpcServer {
            url,
            name: name.to_owned(),
            stats,
            stop,
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The name it gives in its replies.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// What it saw.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }
}

impl Drop for GrpcServer {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

impl crate::ServerList for GrpcServer {
    fn urls(&self) -> Vec<String> {
        vec![self.url.clone()]
    }
}

/// The stack file's service whose replicas run the greeter as test `test` of the current
/// test binary (see [`run`]): `protocol: h2c`, checked with `GET /health`. Add `replicas:`
/// and the rest with [`Service::with`].
pub fn replica_service(test: &str) -> Service {
    let quote = |s: &str| serde_json::to_string(s).expect("a string");
    let argv: Vec<String> = crate::worker::command(test)
        .iter()
        .map(|a| quote(a))
        .collect();
    Service::command(&format!("[{}]", argv.join(", ")))
        .with(&format!("env: {{ {ENV}: '1' }}"))
        .with("protocol: h2c")
}

/// Serve the greeter on `PORT` as replica `SHOAL_SERVICE/SHOAL_REPLICA` until SIGTERM, then
/// shut down gracefully (GOAWAY, open calls answered, at most 5 s); without [`ENV`] (the
/// test run as a test), return at once.
pub fn run() {
    if std::env::var_os(ENV).is_none() {
        return;
    }
    let var = |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set"));
    let port: u16 = var("PORT").parse().expect("PORT");
    let replica = format!("{}/{}", var("SHOAL_SERVICE"), var("SHOAL_REPLICA"));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async move {
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap_or_else(|e| panic!("bind 127.0.0.1:{port}: {e}"));
        let (stop_tx, stop) = watch::channel(false);
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("a SIGTERM handler");
        tokio::spawn(async move {
            term.recv().await;
            let _ = stop_tx.send(true);
        });
        println!("greeter {replica}: serving on 127.0.0.1:{port}");
        let greeter = Greeter {
            replica: replica.as_str().into(),
            stats: Arc::default(),
        };
        serve(greeter, listener, stop, Duration::from_secs(5)).await;
        println!("greeter {replica}: SIGTERM: done");
    });
}

/// hyper's HTTP/2 client (prior knowledge): a transport that sends a call's deadline as
/// `grpc-timeout` and nothing more.
pub type Plain = hyper_util::client::legacy::Client<HttpConnector, tonic::body::Body>;

/// A client of the greeter over transport `T`. Cheap to clone: clones share `T`'s
/// connections.
#[derive(Debug, Clone)]
pub struct GreeterClient<T> {
    grpc: tonic::client::Grpc<T>,
}

impl GreeterClient<tonic::transport::Channel> {
    /// A tonic `Channel` to `url` (`http://HOST:PORT`): one HTTP/2 connection, opened now.
    pub async fn channel(url: &str) -> Result<Self, tonic::transport::Error> {
        let channel = tonic::transport::Endpoint::from_shared(url.to_owned())?
            .connect()
            .await?;
        Ok(GreeterClient {
            grpc: tonic::client::Grpc::new(channel),
        })
    }
}

impl GreeterClient<Plain> {
    /// hyper's HTTP/2 client to `url` (`http://HOST:PORT`): deadlines are left to the
    /// gateway and the server.
    pub fn plain(url: &str) -> Self {
        let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
            .http2_only(true)
            .build_http();
        let origin: Uri = url.parse().expect("a URL");
        GreeterClient {
            grpc: tonic::client::Grpc::with_origin(client, origin),
        }
    }
}

impl<T> GreeterClient<T>
where
    T: GrpcService<tonic::body::Body>,
    T::ResponseBody: http_body::Body<Data = Bytes> + Send + 'static,
    <T::ResponseBody as http_body::Body>::Error: Into<BoxError> + Send,
{
    async fn ready(&mut self) -> Result<(), Status> {
        self.grpc
            .ready()
            .await
            .map_err(|e| Status::unknown(format!("transport not ready: {}", e.into())))
    }

    /// `SayHello`.
    pub async fn say_hello(
        &mut self,
        req: tonic::Request<HelloRequest>,
    ) -> Result<tonic::Response<HelloReply>, Status> {
        self.ready().await?;
        let path = PathAndQuery::from_static(SAY_HELLO);
        self.grpc.unary(req, path, ProstCodec::default()).await
    }

    /// `SayMany`: the replies as they come.
    pub async fn say_many(
        &mut self,
        req: tonic::Request<HelloRequest>,
    ) -> Result<tonic::Response<Streaming<HelloReply>>, Status> {
        self.ready().await?;
        let path = PathAndQuery::from_static(SAY_MANY);
        self.grpc
            .server_streaming(req, path, ProstCodec::default())
            .await
    }

    /// `Sum` of `numbers`.
    pub async fn sum(
        &mut self,
        numbers: impl Stream<Item = Number> + Send + 'static,
    ) -> Result<tonic::Response<Total>, Status> {
        self.ready().await?;
        let path = PathAndQuery::from_static(SUM);
        self.grpc
            .client_streaming(tonic::Request::new(numbers), path, ProstCodec::default())
            .await
    }

    /// `Echo`: the requests come from `requests` as they are sent.
    pub async fn echo(
        &mut self,
        requests: mpsc::Receiver<HelloRequest>,
    ) -> Result<tonic::Response<Streaming<HelloReply>>, Status> {
        self.ready().await?;
        let path = PathAndQuery::from_static(ECHO);
        let stream = futures_util::stream::unfold(requests, |mut rx| async move {
            rx.recv().await.map(|r| (r, rx))
        });
        self.grpc
            .streaming(tonic::Request::new(stream), path, ProstCodec::default())
            .await
    }
}
