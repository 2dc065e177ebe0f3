//! A small client for the admin API, used by `status`, `scale`, `events`, `logs`, `reload`,
//! `down`, `rollout`, `weight` and `top`.
use std::net::SocketAddr;

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::cli::AdminArgs;

/// Where the admin API is and how to authenticate.
#[derive(Debug, Clone)]
pub(crate) struct AdminClient {
    pub(crate) addr: SocketAddr,
    pub(crate) token: Option<String>,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl AdminClient {
    pub(crate) fn new(addr: SocketAddr, token: Option<String>) -> AdminClient {
        AdminClient {
            addr,
            token,
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    /// Admin address and token: flags, else the stack file's admin section, else the
    /// default.
    pub(crate) fn from_args(args: &AdminArgs) -> AdminClient {
        let from_file = shoal_config::peek_admin(&args.file);
        let addr = args
            .admin
            .or_else(|| from_file.as_ref().map(|a| a.listen))
            .unwrap_or(shoal_config::DEFAULT_ADMIN_LISTEN);
        let token = args
            .token
            .clone()
            .or_else(|| from_file.and_then(|a| a.token));
        AdminClient::new(addr, token)
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> anyhow::Result<Response<Incoming>> {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.addr));
        if let Some(t) = &self.token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let body = match body {
            Some(v) => {
                req = req.header("content-type", "application/json");
                Full::new(Bytes::from(v.to_string()))
            }
            None => Full::new(Bytes::new()),
        };
        let req = req.body(body)?;
        self.client.request(req).await.with_context(|| {
            format!("cannot reach the admin API at {} — is `shoal up` running? (set --admin or SHOAL_ADMIN)", self.addr)
        })
    }

    /// Send a request and parse the JSON answer; non-2xx answers become errors with the API's message.
    pub(crate) async fn json(
        &self,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> anyhow::Result<serde_json::Value> {
        let resp = self.send(method, path, body).await?;
        let status = resp.status();
        let bytes = resp.into_body().collect().await?.to_bytes();
        let value: serde_json::Value = serde_json::from_slice(&bytes).with_context(|| {
            format!("the admin API answered {status} with something that is not JSON")
        })?;
        if !status.is_success() {
            let msg = value
                .get("error")
                .and_then(|e| e.as_str())
                .unwrap_or("(no message)");
            bail!("{msg}");
        }
        Ok(value)
    }

    /// Stream newline-delimited JSON, calling `each` per value, until the server closes.
    pub(crate) async fn follow(
        &self,
        path: &str,
        mut each: impl FnMut(serde_json::Value),
    ) -> anyhow::Result<()> {
        let resp = self.send(Method::GET, path, None).await?;
        let status = resp.status();
        if !status.is_success() {
            let bytes = resp.into_body().collect().await?.to_bytes();
            let value: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
            match value.get("error").and_then(|e| e.as_str()) {
                Some(msg) => bail!("{msg}"),
                None => bail!("the admin API answered {status}"),
            }
        }
        let mut body = resp.into_body();
        let mut buf: Vec<u8> = Vec::new();
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame?.into_data() {
                buf.extend_from_slice(&data);
                while let Some(i) = buf.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = buf.drain(..=i).collect();
                    if let Ok(v) = serde_json::from_slice(&line) {
                        each(v);
                    }
                }
            }
        }
        Ok(())
    }
}
