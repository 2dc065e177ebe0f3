//! Scale from zero: a request for a service that has no replica right now, but can get one
//! (its autoscaler allows `min: 0`), is held here while the service wakes, instead of being
//! answered 503 at once.
//!
//! The first held request calls the service's wake callback (the app asks the autoscaler and
//! starts a replica at once, without waiting for the next tick). Held requests wait until
//! the service has an endpoint, then go on as usual. The wait is bounded twice: at most
//! `queue` requests are held per service (the next gets 503 at once), and each waits at most
//! `timeout` (then 503). Like Knative's activator, but inside the gateway: no extra hop.
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::watch;

/// What the gateway calls to wake a service at zero. Must return quickly.
pub type WakeFn = Arc<dyn Fn() + Send + Sync>;

/// Holding settings of one service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HoldSettings {
    /// Most requests held at once.
    pub queue: u64,
    /// Longest a request is held.
    pub timeout: Duration,
}

/// One service's holding pen. Survives reloads (kept by the gateway by service name).
pub struct Activator {
    settings: HoldSettings,
    wake: WakeFn,
    /// Requests held now.
    waiting: AtomicU64,
    /// Requests ever held.
    held_total: AtomicU64,
    /// Bumped whenever the service's endpoints change.
    endpoints: watch::Sender<u64>,
}

impl std::fmt::Debug for Activator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Activator")
            .field("settings", &self.settings)
            .field("waiting", &self.waiting)
            .finish_non_exhaustive()
    }
}

/// Why a held request was not let through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HoldError {
    /// `queue` requests are already held.
    Full,
    /// No endpoint within `timeout`.
    TimedOut(Duration),
}

impl Activator {
    pub(crate) fn new(settings: HoldSettings, wake: WakeFn) -> Arc<Activator> {
        Arc::new(Activator {
            settings,
            wake,
            waiting: AtomicU64::new(0),
            held_total: AtomicU64::new(0),
            endpoints: watch::Sender::new(0),
        })
    }

    /// The holding settings.
    pub fn settings(&self) -> HoldSettings {
        self.settings
    }

    /// Requests held right now (the autoscaler counts them as demand).
    pub fn waiting(&self) -> u64 {
        self.waiting.load(Ordering::Relaxed)
    }

    /// Requests held since the start.
    pub fn held_total(&self) -> u64 {
        self.held_total.load(Ordering::Relaxed)
    }

    /// The service's endpoints changed: held requests look again.
    pub(crate) fn endpoints_changed(&self) {
        self.endpoints.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Hold the caller until `ready()` says the service has an endpoint, waking the service
    /// first. `ready` is checked after subscribing, so no change can be missed.
    pub(crate) async fn hold(&self, ready: impl Fn() -> bool) -> Result<(), HoldError> {
        let mut changes = self.endpoints.subscribe();
        if ready() {
            return Ok(());
        }
        if self.waiting.fetch_add(1, Ordering::Relaxed) >= self.settings.queue {
            self.waiting.fetch_sub(1, Ordering::Relaxed);
            return Err(HoldError::Full);
        }
        let _left = Leave(&self.waiting);
        self.held_total.fetch_add(1, Ordering::Relaxed);
        (self.wake)();
        let wait = async {
            loop {
                if ready() {
                    return;
                }
                if changes.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        };
        tokio::time::timeout(self.settings.timeout, wait)
            .await
            .map_err(|_| HoldError::TimedOut(self.settings.timeout))
    }
}

/// Counts a held request out when it leaves, however it leaves.
struct Leave<'a>(&'a AtomicU64);

impl Drop for Leave<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;

    fn activator(queue: u64, timeout: Duration) -> (Arc<Activator>, Arc<AtomicU64>) {
        let woken = Arc::new(AtomicU64::new(0));
        let w = woken.clone();
        let a = Activator::new(
            HoldSettings { queue, timeout },
            Arc::new(move || {
                w.fetch_add(1, Ordering::Relaxed);
            }),
        );
        (a, woken)
    }

    #[tokio::test]
    async fn a_held_request_wakes_the_service_and_goes_on_when_it_has_an_endpoint() {
        let (a, woken) = activator(10, Duration::from_secs(5));
        let up = Arc::new(AtomicBool::new(false));
        let held = {
            let (a, up) = (a.clone(), up.clone());
            tokio::spawn(async move { a.hold(|| up.load(Ordering::Relaxed)).await })
        };
        // Wait until it is held (it woke the service), then bring an endpoint.
        while woken.load(Ordering::Relaxed) == 0 {
            tokio::task::yield_now().await;
        }
        assert_eq!(a.waiting(), 1);
        up.store(true, Ordering::Relaxed);
        a.endpoints_changed();
        assert_eq!(held.await.unwrap(), Ok(()));
        assert_eq!(a.waiting(), 0);
        assert_eq!(a.held_total(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn holding_is_bounded_in_count_and_time() {
        let (a, _) = activator(1, Duration::from_secs(2));
        let first = {
            let a = a.clone();
            tokio::spawn(async move { a.hold(|| false).await })
        };
        while a.waiting() == 0 {
            tokio::task::yield_now().await;
        }
        assert_eq!(a.hold(|| false).await, Err(HoldError::Full));
        assert_eq!(
            first.await.unwrap(),
            Err(HoldError::TimedOut(Duration::from_secs(2)))
        );
        assert_eq!(a.waiting(), 0);
    }

    #[tokio::test]
    async fn a_service_already_up_is_not_held() {
        let (a, woken) = activator(1, Duration::from_secs(1));
        assert_eq!(a.hold(|| true).await, Ok(()));
        assert_eq!(woken.load(Ordering::Relaxed), 0);
    }
}
