//! A backend that answers every path with what it received, for tests of path rewriting.
use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::task::JoinHandle;

use crate::backends::ServerList;

/// Answers any request with 200 and JSON `{"method", "path", "query", "headers"}`, the same
/// shape as the sample-app's `/whoami` (which only answers on `/whoami`). Stops when dropped.
#[derive(Debug)]
pub struct Recorder {
    url: String,
    task: JoinHandle<()>,
}

impl Recorder {
    /// Listen on `127.0.0.1:0`.
    pub async fn start() -> Recorder {
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind the recorder");
        let addr: SocketAddr = listener.local_addr().expect("local addr");
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let service =
                        service_fn(|req| async move { Ok::<_, Infallible>(record(&req)) });
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Recorder {
            url: format!("http://{addr}"),
            task,
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ServerList for Recorder {
    fn urls(&self) -> Vec<String> {
        vec![self.url.clone()]
    }
}

fn record(req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let headers = shoal_sample_app::headers_json(req.headers());
    let json = serde_json::json!({
        "method": req.method().as_str(),
        "path": req.uri().path(),
        "query": req.uri().query(),
        "headers": headers,
    });
    Response::new(Full::new(Bytes::from(json.to_string())))
}
