//! `--admin`: poll shoal's admin API (`GET /api/v1/services`, read-only) once a second
//! during the run, so the report shows each service's replica count over time next to the
//! load — one run shows scaling.
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http::header::{AUTHORIZATION, HOST};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::plan::AdminTarget;

/// Replica counts of every service at one moment.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ScaleSample {
    /// Seconds since the start of the run.
    pub t: f64,
    /// By service name.
    pub services: BTreeMap<String, ServiceCount>,
}

/// One service's replica counts.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct ServiceCount {
    /// Replicas asked for.
    pub desired: u64,
    /// Replicas serving.
    pub ready: u64,
}

/// The polling task.
#[derive(Debug)]
pub(crate) struct AdminPoller {
    task: JoinHandle<()>,
    samples: Arc<Mutex<Vec<ScaleSample>>>,
}

impl AdminPoller {
    pub(crate) fn start(target: AdminTarget, start: Instant) -> AdminPoller {
        let samples = Arc::new(Mutex::new(Vec::new()));
        let task = tokio::spawn({
            let samples = samples.clone();
            async move {
                let mut tick = tokio::time::interval_at(start, Duration::from_secs(1));
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
                loop {
                    tick.tick().await;
                    let t = start.elapsed().as_secs_f64();
                    let got = tokio::time::timeout(Duration::from_secs(1), fetch(&target)).await;
                    if let Ok(Some(services)) = got {
                        samples
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push(ScaleSample { t, services });
                    }
                }
            }
        });
        AdminPoller { task, samples }
    }

    /// Stop polling and return the samples.
    pub(crate) async fn stop(self) -> Vec<ScaleSample> {
        self.task.abort();
        let _ = self.task.await;
        std::mem::take(&mut *self.samples.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

async fn fetch(target: &AdminTarget) -> Option<BTreeMap<String, ServiceCount>> {
    let authority = target.services_uri.authority()?.clone();
    let tcp = TcpStream::connect(authority.as_str()).await.ok()?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .ok()?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut req = Request::get(target.services_uri.path()).header(HOST, authority.as_str());
    if let Some(t) = &target.token {
        req = req.header(AUTHORIZATION, format!("Bearer {t}"));
    }
    let resp = send
        .send_request(req.body(Empty::<Bytes>::new()).ok()?)
        .await
        .ok()?;
    if !resp.status().is_success() {
        return None;
    }
    let body = resp.into_body().collect().await.ok()?.to_bytes();
    parse_services(&body)
}

/// `[{"name": "web", "desired": 3, "ready": 2, …}, …]` (docs/admin-api.md).
pub(crate) fn parse_services(body: &[u8]) -> Option<BTreeMap<String, ServiceCount>> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let list = v.as_array().or_else(|| v.get("services")?.as_array())?;
    Some(
        list.iter()
            .filter_map(|s| {
                Some((
                    s.get("name")?.as_str()?.to_owned(),
                    ServiceCount {
                        desired: s.get("desired").and_then(|d| d.as_u64()).unwrap_or(0),
                        ready: s.get("ready").and_then(|d| d.as_u64()).unwrap_or(0),
                    },
                ))
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_admin_api_shape() {
        let body = br#"[{"name":"users","desired":3,"ready":2,"state":"progressing","replicas":[]},
                        {"name":"web","desired":1,"ready":1,"replicas":[]}]"#;
        let s = parse_services(body).unwrap();
        assert_eq!(
            s["users"],
            ServiceCount {
                desired: 3,
                ready: 2
            }
        );
        assert_eq!(s["web"].ready, 1);
        assert!(parse_services(b"not json").is_none());
    }
}
