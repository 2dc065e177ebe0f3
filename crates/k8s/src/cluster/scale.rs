//! Scaling through `deployments/{name}/scale`: one task per followed service sends the
//! latest requested count, and a refresher reads every Deployment's count every few seconds.
//!
//! The refresher reads the Deployment itself (`get deployments`), not its scale subresource:
//! the rendered Role lets the gateway read every replicated service's Deployment but touch
//! the scale subresource only of those shoal's autoscaler owns.
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v1::Scale;
use kube::Api;
use kube::api::{Patch, PatchParams};
use tokio::sync::watch;

use super::driver::Shared;
use super::problem::{Failure, describe};

/// How often the Deployments' replica counts are read.
pub(crate) const DESIRED_REFRESH: Duration = Duration::from_secs(5);
/// Longest wait for one API call (other than the watch).
pub(crate) const CALL_TIMEOUT: Duration = Duration::from_secs(10);

fn replicas_of(scale: &Scale) -> Option<u32> {
    scale
        .spec
        .as_ref()
        .and_then(|s| s.replicas)
        .and_then(|n| u32::try_from(n).ok())
}

async fn call<T>(
    f: impl std::future::Future<Output = Result<T, kube::Error>>,
) -> Result<T, Failure> {
    match tokio::time::timeout(CALL_TIMEOUT, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(Failure::from(e)),
        Err(_) => Err(Failure::Unreachable(format!(
            "no answer within {}s",
            CALL_TIMEOUT.as_secs()
        ))),
    }
}

/// The scale task of one service: sends each requested count (the latest, when several
/// were asked for while a patch was in flight). A failure is an event and is not retried.
pub(crate) async fn worker(
    shared: Arc<Shared>,
    service: String,
    mut requests: watch::Receiver<Option<(u32, u64)>>,
) {
    let api: Api<Deployment> =
        Api::namespaced(shared.cluster.client.clone(), shared.cluster.namespace());
    while requests.changed().await.is_ok() {
        let Some((replicas, generation)) = *requests.borrow_and_update() else {
            continue;
        };
        let result = patch(&shared, &api, &service, replicas).await;
        shared.scale_settled(&service, generation, result);
    }
}

/// Patch the scale subresource; on 409 read it again and try once more. Returns the
/// Deployment's replicas after success.
async fn patch(
    shared: &Shared,
    api: &Api<Deployment>,
    service: &str,
    replicas: u32,
) -> Option<u32> {
    let namespace = shared.cluster.namespace();
    let key = format!("patch deployments/scale {service}");
    let body = Patch::Merge(serde_json::json!({ "spec": { "replicas": replicas } }));
    let params = PatchParams::default();
    let mut result = call(api.patch_scale(service, &params, &body)).await;
    let mut seen_after_conflict = None;
    if let Err(failure) = &result
        && failure.is(409)
    {
        tracing::info!(
            service,
            replicas,
            "conflict scaling: someone else changed the Deployment; reading it again"
        );
        seen_after_conflict = call(api.get_scale(service))
            .await
            .ok()
            .map(|s| replicas_of(&s));
        result = call(api.patch_scale(service, &params, &body)).await;
    }
    let purpose = format!("scaling {service} to {replicas}");
    match result {
        Ok(scale) => {
            shared.troubles.ok(&key);
            let now = replicas_of(&scale);
            tracing::info!(service, replicas, "scaled deployments/{service}/scale");
            now.or(Some(replicas))
        }
        Err(failure) => {
            let message = match &failure {
                f if f.is(404) => format!(
                    "no Deployment named {service} in namespace {namespace} ({purpose}): {}",
                    f.detail()
                ),
                f if f.is(409) => format!(
                    "conflict {purpose}: someone else changed deployments/{service}/scale{} and \
                     the retry after reading it again conflicted too: {}",
                    match seen_after_conflict.flatten() {
                        Some(n) => format!(" (it was at {n})"),
                        None => String::new(),
                    },
                    f.detail()
                ),
                f if f.is(403) => format!(
                    "{} (the rendered Role allows it only for the services shoal's autoscaler owns)",
                    describe(f, "patch", "deployments/scale", namespace, &purpose)
                ),
                f => describe(f, "patch", "deployments/scale", namespace, &purpose),
            };
            shared
                .troubles
                .failed_call(&key, service, &failure, format!("{message}; not scaled"));
            None
        }
    }
}

/// Read every followed Deployment's `spec.replicas` every [`DESIRED_REFRESH`] (and at once
/// when a service is added), until shutdown.
pub(crate) async fn refresh_desired(shared: Arc<Shared>) {
    let mut stop = shared.stop.subscribe();
    let api: Api<Deployment> =
        Api::namespaced(shared.cluster.client.clone(), shared.cluster.namespace());
    let namespace = shared.cluster.namespace().to_owned();
    loop {
        for (service, generation) in shared.scale_generations() {
            let key = format!("get deployments {service}");
            let purpose = format!("reading the replica count of {service}");
            match call(api.get(&service)).await {
                Ok(deployment) => {
                    shared.troubles.ok(&key);
                    // Absent means 1, as the API server defaults it.
                    let replicas = deployment
                        .spec
                        .replicas
                        .map_or(Some(1), |n| u32::try_from(n).ok());
                    shared.refreshed(&service, generation, replicas);
                }
                Err(failure) if failure.is(404) => {
                    shared.refreshed(&service, generation, None);
                    let message = format!(
                        "no Deployment named {service} in namespace {namespace} ({purpose}): {}",
                        failure.detail()
                    );
                    shared.troubles.failed(&key, &service, &failure, message);
                }
                Err(failure) => {
                    let message = describe(&failure, "get", "deployments", &namespace, &purpose);
                    let service = if matches!(failure, Failure::Unreachable(_)) {
                        ""
                    } else {
                        service.as_str()
                    };
                    shared.troubles.failed(&key, service, &failure, message);
                }
            }
        }
        tokio::select! {
            _ = stop.wait_for(|stopped| *stopped) => return,
            () = tokio::time::sleep(DESIRED_REFRESH) => {}
            () = shared.refresh.notified() => {}
        }
    }
}
