//! What the split and mirror tests share: replicas that count what they get, a gateway on
//! `127.0.0.1:0` started from a stack file's text, and clients for both request paths —
//! HTTP/1.1 keep-alive (the relay) and HTTP/2 prior knowledge (the full stack).
#![allow(dead_code)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use shoal_config::Stack;
use shoal_proxy::{Gateway, Listeners, ServeSettings, Serving, TlsEntrypoints};
use tokio::net::{TcpListener, TcpStream};

/// Longest any single wait in these tests may take.
pub(crate) const DEADLINE: Duration = Duration::from_secs(10);

/// A request as a replica received it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Seen {
    pub(crate) method: Method,
    pub(crate) path: String,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

/// A replica answering `200` with its name, counting and keeping what it received.
pub(crate) struct Replica {
    pub(crate) name: String,
    pub(crate) addr: SocketAddr,
    count: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Replica {
    pub(crate) async fn start(name: &str) -> Replica {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let count = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (c, s, n) = (Arc::clone(&count), Arc::clone(&seen), name.to_owned());
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (c, s, n) = (Arc::clone(&c), Arc::clone(&s), n.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let (c, s, n) = (Arc::clone(&c), Arc::clone(&s), n.clone());
                        async move {
                            let (parts, body) = req.into_parts();
                            let body = body.collect().await.map(|b| b.to_bytes());
                            s.lock().unwrap().push(Seen {
                                method: parts.method,
                                path: parts.uri.to_string(),
                                headers: parts.headers,
                                body: body.unwrap_or_default(),
                            });
                            c.fetch_add(1, Ordering::SeqCst);
                            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(n))))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Replica {
            name: name.to_owned(),
            addr,
            count,
            seen,
        }
    }

    /// Requests answered so far.
    pub(crate) fn count(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }

    /// What it received, in order.
    pub(crate) fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

/// A gateway serving a stack on `127.0.0.1:0`.
pub(crate) struct Gw {
    pub(crate) addr: SocketAddr,
    pub(crate) gateway: Arc<Gateway>,
    serving: Option<Serving>,
}

impl Drop for Gw {
    fn drop(&mut self) {
        if let Some(s) = self.serving.take() {
            tokio::spawn(s.shutdown(Duration::from_secs(1)));
        }
    }
}

/// A stack from its text, listening on `127.0.0.1:0`.
pub(crate) fn stack(yaml: &str) -> Stack {
    let yaml = format!("gateway:\n  listen: 127.0.0.1:0\n{yaml}");
    shoal_config::parse(&yaml, "shoal.yaml").unwrap_or_else(|e| panic!("{e}\n{yaml}"))
}

pub(crate) fn serve(stack: &Stack) -> Gw {
    let gateway = Gateway::new(stack);
    let listeners = Listeners::bind(&stack.gateway.entrypoints).expect("bind 127.0.0.1:0");
    let addr = listeners.local_addrs()[0].1;
    let settings = ServeSettings::of(&stack.gateway);
    let serving = Serving::start(
        Arc::clone(&gateway),
        listeners,
        settings,
        &TlsEntrypoints::default(),
    );
    Gw {
        addr,
        gateway,
        serving: Some(serving),
    }
}

/// A gateway serving: the addresses it bound by entrypoint, the entrypoints' certificates
/// (to reload or watch), the server.
pub(crate) struct Started {
    pub(crate) addrs: Vec<(String, SocketAddr)>,
    pub(crate) certs: Arc<TlsEntrypoints>,
    pub(crate) serving: Serving,
}

/// `gateway` serving the entrypoints of `stack` (on `127.0.0.1:0` in tests), with the
/// certificates their `tls:` names.
pub(crate) fn start_serving(gateway: &Arc<Gateway>, stack: &Stack) -> Started {
    let certs = TlsEntrypoints::load(&stack.gateway.entrypoints).expect("entrypoint certificates");
    let listeners = Listeners::bind(&stack.gateway.entrypoints).expect("bind 127.0.0.1:0");
    let addrs = listeners.local_addrs();
    let serving = Serving::start(
        Arc::clone(gateway),
        listeners,
        ServeSettings::of(&stack.gateway),
        &certs,
    );
    Started {
        addrs,
        certs,
        serving,
    }
}

/// An answer: status, headers, body as text.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: String,
}

/// How a client reaches the gateway.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Path {
    /// HTTP/1.1 keep-alive: served by the relay.
    Relay,
    /// HTTP/2 prior knowledge: served by the full stack.
    Full,
}

/// One client connection.
pub(crate) enum Client {
    H1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
}

impl Client {
    pub(crate) async fn connect(addr: SocketAddr, path: Path) -> Client {
        let io = TokioIo::new(TcpStream::connect(addr).await.unwrap());
        match path {
            Path::Relay => {
                let (send, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
                tokio::spawn(conn);
                Client::H1(send)
            }
            Path::Full => {
                let (send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                    .await
                    .unwrap();
                tokio::spawn(conn);
                Client::H2(send)
            }
        }
    }

    /// Send a request (`headers` added) and read the whole answer, within [`DEADLINE`].
    pub(crate) async fn send(
        &mut self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: &'static [u8],
    ) -> Answer {
        let mut req = Request::builder().method(method);
        req = match self {
            Client::H1(_) => req.uri(path).header("host", "test.local"),
            Client::H2(_) => req.uri(format!("http://test.local{path}")),
        };
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        let req = req.body(Full::new(Bytes::from_static(body))).unwrap();
        let exchange = async {
            let resp = match self {
                Client::H1(send) => {
                    send.ready().await.unwrap();
                    send.send_request(req).await.unwrap()
                }
                Client::H2(send) => {
                    send.ready().await.unwrap();
                    send.send_request(req).await.unwrap()
                }
            };
            let (parts, body) = resp.into_parts();
            let body = body.collect().await.unwrap().to_bytes();
            Answer {
                status: parts.status,
                headers: parts.headers,
                body: String::from_utf8_lossy(&body).into_owned(),
            }
        };
        tokio::time::timeout(DEADLINE, exchange)
            .await
            .expect("an answer in time")
    }

    pub(crate) async fn get(&mut self, path: &str, headers: &[(&str, &str)]) -> Answer {
        self.send(Method::GET, path, headers, b"").await
    }
}
