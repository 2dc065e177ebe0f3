//! Clients: a pooled keep-alive client (HTTP/1.1 or h2c with prior knowledge) and one raw
//! HTTP/1.1 connection, plus [`Answer`], a response read whole.
use std::collections::BTreeMap;
use std::net::SocketAddr;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{HeaderMap, Request, Response, StatusCode, Version};
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};

/// Errors of request bodies and of the clients.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body of every request the harness sends.
pub type ReqBody = UnsyncBoxBody<Bytes, BoxError>;

/// Request bodies.
pub mod body {
    use bytes::Bytes;
    use futures_util::StreamExt;
    use http_body_util::{BodyExt, Empty, Full, StreamBody};
    use hyper::body::Frame;

    use super::ReqBody;

    /// No body.
    pub fn empty() -> ReqBody {
        Empty::new().map_err(|never| match never {}).boxed_unsync()
    }

    /// A body of known length (sent with `Content-Length`).
    pub fn full(bytes: impl Into<Bytes>) -> ReqBody {
        Full::new(bytes.into())
            .map_err(|never| match never {})
            .boxed_unsync()
    }

    /// `count` frames, each the same `chunk`, of unknown total length (HTTP/1.1 sends it
    /// chunked). Generated as it is sent: nothing is held but `chunk`.
    pub fn repeat(chunk: Bytes, count: usize) -> ReqBody {
        let frames = futures_util::stream::repeat(chunk)
            .take(count)
            .map(|b| Ok(Frame::data(b)));
        StreamBody::new(frames).boxed_unsync()
    }
}

/// A response, read whole.
#[derive(Debug, Clone)]
pub struct Answer {
    /// Status.
    pub status: StatusCode,
    /// HTTP version of the response.
    pub version: Version,
    /// Headers.
    pub headers: HeaderMap,
    /// The whole body.
    pub body: Bytes,
}

impl Answer {
    /// Read `response`'s body to the end.
    pub async fn read(response: Response<Incoming>) -> Result<Answer, BoxError> {
        let (parts, body) = response.into_parts();
        let body = body.collect().await?.to_bytes();
        Ok(Answer {
            status: parts.status,
            version: parts.version,
            headers: parts.headers,
            body,
        })
    }

    /// The body as text (lossy UTF-8).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; panics if it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.text()))
    }

    /// A response header's value, if present and text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// `x-shoal-replica`: the backend the gateway chose. Panics if absent.
    pub fn replica(&self) -> &str {
        self.header("x-shoal-replica")
            .unwrap_or_else(|| panic!("no x-shoal-replica in {self:?}"))
    }

    /// `x-sample-name`: the sample-app that answered. Panics if absent.
    pub fn served_by(&self) -> &str {
        self.header("x-sample-name")
            .unwrap_or_else(|| panic!("no x-sample-name in {self:?}"))
    }

    /// For a `/whoami` answer: the request header `name` as the backend received it.
    pub fn upstream_header(&self, name: &str) -> Option<String> {
        self.json()["headers"][name].as_str().map(str::to_owned)
    }
}

/// How many times each value occurs.
pub fn tally<S: Into<String>>(values: impl IntoIterator<Item = S>) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for v in values {
        *counts.entry(v.into()).or_insert(0) += 1;
    }
    counts
}

/// A pooled keep-alive client (hyper_util's legacy client).
#[derive(Debug, Clone)]
pub struct Client {
    inner: hyper_util::client::legacy::Client<HttpConnector, ReqBody>,
}

impl Client {
    /// HTTP/1.1 with keep-alive.
    pub fn http1() -> Client {
        Client {
            inner: hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    /// HTTP/2 without TLS, prior knowledge (h2c).
    pub fn h2c() -> Client {
        Client {
            inner: hyper_util::client::legacy::Client::builder(TokioExecutor::new())
                .http2_only(true)
                .build_http(),
        }
    }

    /// Send `req` and return the response as soon as its headers arrive.
    pub async fn send(&self, req: Request<ReqBody>) -> Result<Response<Incoming>, BoxError> {
        Ok(self.inner.request(req).await?)
    }

    /// Send `req` and read the whole response.
    pub async fn try_request(&self, req: Request<ReqBody>) -> Result<Answer, BoxError> {
        Answer::read(self.send(req).await?).await
    }

    /// Send `req` and read the whole response; panics on a transport error.
    pub async fn request(&self, req: Request<ReqBody>) -> Answer {
        let what = format!("{} {}", req.method(), req.uri());
        self.try_request(req)
            .await
            .unwrap_or_else(|e| panic!("{what}: {e:?}"))
    }

    /// `GET url`.
    pub async fn get(&self, url: &str) -> Answer {
        self.get_with(url, &[]).await
    }

    /// `GET url` with extra headers.
    pub async fn get_with(&self, url: &str, headers: &[(&str, &str)]) -> Answer {
        self.request(get(url, headers)).await
    }
}

/// A `GET` request with headers.
pub fn get(url: &str, headers: &[(&str, &str)]) -> Request<ReqBody> {
    let mut req = Request::get(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.body(body::empty()).expect("a valid request")
}

/// One HTTP/1.1 keep-alive connection, opened once: every request goes over it.
#[derive(Debug)]
pub struct Conn {
    sender: SendRequest<ReqBody>,
    host: HeaderValue,
}

impl Conn {
    /// Connect to `addr` and do the HTTP/1.1 handshake.
    pub async fn open(addr: SocketAddr) -> Conn {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("HTTP/1.1 handshake");
        tokio::spawn(connection);
        Conn {
            sender,
            host: HeaderValue::from_str(&addr.to_string()).expect("an address is a host"),
        }
    }

    /// Send `req` (its URI is a path; `Host` is added if missing) and read the whole response.
    pub async fn send(&mut self, mut req: Request<ReqBody>) -> Result<Answer, BoxError> {
        if !req.headers().contains_key(header::HOST) {
            req.headers_mut().insert(header::HOST, self.host.clone());
        }
        self.sender.ready().await?;
        Answer::read(self.sender.send_request(req).await?).await
    }

    /// `GET path_and_query` over this connection.
    pub async fn get(&mut self, path_and_query: &str) -> Result<Answer, BoxError> {
        self.send(get(path_and_query, &[])).await
    }

    /// Has the connection closed?
    pub fn is_closed(&self) -> bool {
        self.sender.is_closed()
    }
}
