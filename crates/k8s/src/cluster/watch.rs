//! The EndpointSlice watch: one `kube::runtime::watcher` over the namespace's Service slices,
//! a re-list buffered until it is complete, and a bounded back-off on errors.
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use kube::runtime::watcher::{self, Event};

use super::driver::{Shared, StoreChange};
use super::problem::{Failure, describe};
use super::slices::{SERVICE_LABEL, Slice};

/// The key under which watch failures are reported (once per outage).
const KEY: &str = "watch endpointslices";

/// First delay after an error.
pub(crate) const BACKOFF_MIN: Duration = Duration::from_millis(500);
/// Longest delay between attempts.
pub(crate) const BACKOFF_MAX: Duration = Duration::from_secs(10);

/// Watch until shutdown.
pub(crate) async fn run(shared: Arc<Shared>) {
    let mut stop = shared.stop.subscribe();
    let api: Api<EndpointSlice> =
        Api::namespaced(shared.cluster.client.clone(), shared.cluster.namespace());
    // Existence selector: every slice that belongs to a Service.
    let config = watcher::Config::default().labels(SERVICE_LABEL);
    let mut backoff = Backoff::new(BACKOFF_MIN, BACKOFF_MAX);
    loop {
        // A fresh watcher starts with a list (`Init` … `InitDone`).
        let mut stream = std::pin::pin!(watcher::watcher(api.clone(), config.clone()));
        let mut listing: Option<HashMap<String, Slice>> = None;
        loop {
            let next = tokio::select! {
                _ = stop.wait_for(|stopped| *stopped) => return,
                next = stream.next() => next,
            };
            let Some(next) = next else { break };
            match next {
                Ok(event) => {
                    backoff.reset();
                    shared.troubles.ok(KEY);
                    handle(&shared, &mut listing, event);
                }
                Err(e) => {
                    let relist = report(&shared, &e);
                    let delay = backoff.next_delay();
                    tokio::select! {
                        _ = stop.wait_for(|stopped| *stopped) => return,
                        () = tokio::time::sleep(delay) => {}
                    }
                    if relist {
                        break;
                    }
                }
            }
        }
    }
}

/// Apply one watch event. A list (`Init` … `InitDone`) is collected apart and replaces the
/// store only once complete; nothing changes before then.
fn handle(
    shared: &Shared,
    listing: &mut Option<HashMap<String, Slice>>,
    event: Event<EndpointSlice>,
) {
    match event {
        Event::Init => *listing = Some(HashMap::new()),
        Event::InitApply(object) => {
            if let (Some(list), Some(name), Some(slice)) = (
                listing.as_mut(),
                object.metadata.name.clone(),
                Slice::read(&object),
            ) {
                list.insert(name, slice);
            }
        }
        Event::InitDone => {
            let list = listing.take().unwrap_or_default();
            tracing::debug!(slices = list.len(), "endpointslices listed");
            shared.apply(StoreChange::Replace(list));
        }
        Event::Apply(object) => {
            let Some(name) = object.metadata.name.clone() else {
                return;
            };
            match Slice::read(&object) {
                Some(slice) => shared.apply(StoreChange::Upsert(name, slice)),
                None => shared.apply(StoreChange::Remove(name)),
            }
        }
        Event::Delete(object) => {
            if let Some(name) = object.metadata.name {
                shared.apply(StoreChange::Remove(name));
            }
        }
    }
}

/// Report a watch error (once per outage). Returns whether to start over with a fresh list:
/// the watcher re-lists by itself after a 410 in the stream, but keeps retrying the same
/// resourceVersion when the watch *request* is answered 410.
fn report(shared: &Shared, e: &watcher::Error) -> bool {
    let (verb, failure) = match e {
        watcher::Error::InitialListFailed(e) => ("list", Failure::from(e)),
        watcher::Error::WatchStartFailed(e) | watcher::Error::WatchFailed(e) => {
            ("watch", Failure::from(e))
        }
        watcher::Error::WatchError(status) => ("watch", Failure::Status(status.clone())),
        watcher::Error::NoResourceVersion => ("list", Failure::Other(e.to_string())),
    };
    if failure.is(410) {
        tracing::debug!("endpointslices: resourceVersion too old, listing again");
        return matches!(e, watcher::Error::WatchStartFailed(_));
    }
    let message = describe(
        &failure,
        verb,
        "endpointslices",
        shared.cluster.namespace(),
        "discovering pods; the gateway keeps the endpoints it last saw",
    );
    shared.troubles.failed(KEY, "", &failure, message);
    false
}

/// Exponential back-off with jitter: `min`, doubling, capped at `max`; each delay is
/// randomised by ±20 % so that gateways do not retry in step.
#[derive(Debug)]
pub(crate) struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub(crate) fn new(min: Duration, max: Duration) -> Backoff {
        Backoff {
            min,
            max,
            next: min,
        }
    }

    pub(crate) fn next_delay(&mut self) -> Duration {
        let base = self.next;
        self.next = (self.next * 2).min(self.max);
        base.mul_f64(0.8 + 0.4 * fastrand::f64()).min(self.max)
    }

    pub(crate) fn reset(&mut self) {
        self.next = self.min;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_bound_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(500), Duration::from_secs(10));
        let delays: Vec<Duration> = (0..8).map(|_| b.next_delay()).collect();
        assert!(delays[0] >= Duration::from_millis(400) && delays[0] <= Duration::from_millis(600));
        assert!(
            delays[1] >= Duration::from_millis(800) && delays[1] <= Duration::from_millis(1200)
        );
        assert!(delays.iter().all(|d| *d <= Duration::from_secs(10)));
        assert!(delays[7] >= Duration::from_secs(8));
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(600));
    }
}
