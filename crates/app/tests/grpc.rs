//! gRPC-style traffic: HTTP/2 to `protocol: h2c` services, with trailers passed through.
use std::convert::Infallible;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use shoal_test_support::{Client, Service, TestGateway, body};

/// An HTTP/2-only server (prior knowledge) that answers like a gRPC server: the echoed
/// request body as data, then trailers with `grpc-status`. It reports the HTTP version and
/// `TE` header it received in response headers.
async fn grpc_like_server() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(|req: Request<Incoming>| async move {
                    let version = format!("{:?}", req.version());
                    let te = req
                        .headers()
                        .get("te")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_owned();
                    let received = req.into_body().collect().await.map(|c| c.to_bytes());
                    let echoed = format!(
                        "echo:{}",
                        String::from_utf8_lossy(&received.unwrap_or_default())
                    );
                    let mut trailers = HeaderMap::new();
                    trailers.insert("grpc-status", HeaderValue::from_static("0"));
                    trailers.insert("grpc-message", HeaderValue::from_static("ok"));
                    let frames = vec![
                        Ok::<_, Infallible>(Frame::data(Bytes::from(echoed))),
                        Ok(Frame::trailers(trailers)),
                    ];
                    let resp = Response::builder()
                        .header("content-type", "application/grpc")
                        .header("x-upstream-version", version)
                        .header("x-upstream-te", te)
                        .body(StreamBody::new(futures_util::stream::iter(frames)))
                        .unwrap();
                    Ok::<_, Infallible>(resp)
                });
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn h2c_services_get_http2_and_trailers_pass_through() {
    let upstream = grpc_like_server().await;
    let gw = TestGateway::builder()
        .service_with(
            "grpc",
            Service::servers(upstream.as_str()).with("protocol: h2c"),
        )
        .route("PathPrefix(`/`)", "grpc")
        .start()
        .await;

    // A gRPC client: HTTP/2, `TE: trailers`, a request body.
    let req = Request::post(gw.url("/helloworld.Greeter/SayHello"))
        .header("te", "trailers")
        .header("content-type", "application/grpc")
        .body(body::full("ping"))
        .unwrap();
    let resp = Client::h2c().send(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.version(), Version::HTTP_2);
    assert_eq!(
        resp.headers()["x-upstream-version"],
        "HTTP/2.0",
        "h2c upstream"
    );
    assert_eq!(
        resp.headers()["x-upstream-te"],
        "trailers",
        "TE: trailers kept for gRPC"
    );
    let collected = resp.into_body().collect().await.unwrap();
    let trailers = collected
        .trailers()
        .cloned()
        .expect("trailers reach the client");
    assert_eq!(trailers["grpc-status"], "0");
    assert_eq!(trailers["grpc-message"], "ok");
    assert_eq!(collected.to_bytes(), "echo:ping");

    // HTTP/1.1 clients reach the same service over HTTP/2 upstream.
    let a = gw.get("/plain").await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.header("x-upstream-version"), Some("HTTP/2.0"));
    assert_eq!(a.text(), "echo:");
}
