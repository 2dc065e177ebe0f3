//! Passive health's ejections on their own: what ejects a backend, for how long, who is
//! never ejected, and the re-admission, under tokio's paused clock (an ejection ends on a
//! timer the gateway's runtime runs).
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use shoal_balance::{Backend, Balancer, Down, Policy};
use shoal_core::{EventKind, EventLog};
use tokio::time::Instant;

use super::{Outcome, ServiceHealth, ms_at};

/// A service of three backends `a`, `b`, `c` with `passive:` as given, its event log and
/// its balancer.
struct Fixture {
    health: Arc<ServiceHealth>,
    balancer: Balancer,
    events: Arc<EventLog>,
}

impl Fixture {
    fn new(passive: &str) -> Fixture {
        let yaml = format!(
            "services:\n  api:\n    servers: [http://a.test, http://b.test, http://c.test]\n    \
             health: false\n    passive: {passive}\n"
        );
        let stack = shoal_config::parse(&yaml, "shoal.yaml").unwrap();
        let events = Arc::new(EventLog::new(100));
        let health = ServiceHealth::new(&stack.services[0], Arc::clone(&events));
        let backends = ["http://a.test", "http://b.test", "http://c.test"]
            .iter()
            .map(|k| Backend::new(*k, "a.test:80", 1))
            .collect();
        Fixture {
            health,
            balancer: Balancer::with_backends(Policy::RoundRobin, backends),
            events,
        }
    }

    fn backend(&self, i: usize) -> Arc<Backend> {
        Arc::clone(&self.balancer.backends()[i])
    }

    fn observe(&self, i: usize, outcome: Outcome) {
        self.health
            .observe(&self.balancer, &self.backend(i), outcome);
    }

    fn answered(&self, i: usize, status: u16) {
        let at_ms = ms_at(Instant::now());
        self.observe(i, Outcome::Answered { status, at_ms });
    }

    fn refused(&self, i: usize) {
        self.observe(i, Outcome::Refused("connection refused".into()));
    }

    fn ejected(&self, i: usize) -> bool {
        self.backend(i).is_down_for(Down::Ejected)
    }

    fn reason(&self, i: usize) -> String {
        self.health
            .traffic(&self.backend(i))
            .reason
            .unwrap_or_default()
    }

    fn ejections(&self) -> u64 {
        self.health.counters.ejections.load(Ordering::Relaxed)
    }

    fn events(&self, kind: EventKind) -> Vec<String> {
        let events = self.events.since(0).into_iter();
        events
            .filter(|e| e.kind == kind)
            .map(|e| e.message)
            .collect()
    }

    /// Backend `i`, ejected now, is still out just before `time` and back just after: its
    /// re-admission timer runs on the (paused) clock.
    async fn out_for(&self, i: usize, time: Duration) -> bool {
        let ms = Duration::from_millis(1);
        let out_before = self.ejected(i);
        tokio::time::sleep(time - ms).await;
        let out_until = self.ejected(i);
        tokio::time::sleep(2 * ms).await;
        out_before && out_until && !self.ejected(i)
    }
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

#[tokio::test(start_paused = true)]
async fn consecutive_5xx_eject_and_the_replica_is_back_after_base_ejection() {
    let f = Fixture::new("{ consecutive_5xx: 3, base_ejection: 1s }");
    f.answered(0, 503);
    f.answered(0, 500);
    assert!(!f.ejected(0), "two in a row");
    f.answered(0, 502);
    assert!(f.ejected(0), "three in a row");
    assert!(
        f.reason(0)
            .contains("ejected for 1000ms: 3 responses in a row with status 5xx (last 502)"),
        "{}",
        f.reason(0)
    );
    assert!(f.out_for(0, secs(1)).await);
    assert!(f.backend(0).is_available());
    assert_eq!(f.ejections(), 1);
    assert_eq!(f.events(EventKind::Ejected).len(), 1);
    assert_eq!(
        f.events(EventKind::Readmitted),
        ["http://a.test: back in rotation after 1000ms"]
    );
}

#[tokio::test(start_paused = true)]
async fn a_success_between_5xx_starts_the_count_over() {
    let f = Fixture::new("{ consecutive_5xx: 2 }");
    for _ in 0..5 {
        f.answered(0, 503);
        f.answered(0, 200);
    }
    assert!(!f.ejected(0));
    f.answered(0, 503);
    f.answered(0, 503);
    assert!(f.ejected(0));
}

#[tokio::test(start_paused = true)]
async fn gateway_failures_in_a_row_eject_and_a_4xx_is_a_success() {
    let f = Fixture::new("{ consecutive_failures: 2 }");
    f.observe(0, Outcome::Failed("reset".into()));
    f.answered(0, 404);
    f.observe(0, Outcome::Failed("reset".into()));
    assert!(!f.ejected(0), "the 404 started the count over");
    f.observe(
        0,
        Outcome::Failed("no response headers within 100ms".into()),
    );
    assert!(f.ejected(0));
    let reason = f.reason(0);
    assert!(
        reason.contains("2 failures in a row (last: no response headers within 100ms)"),
        "{reason}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_refused_connection_ejects_at_once() {
    let f = Fixture::new("{}");
    f.refused(1);
    assert!(f.ejected(1));
    assert!(
        f.reason(1).contains("connection refused"),
        "{}",
        f.reason(1)
    );
    assert!(!f.ejected(0) && !f.ejected(2));
}

#[tokio::test(start_paused = true)]
async fn each_ejection_in_a_row_lasts_twice_as_long_up_to_max_ejection() {
    let f = Fixture::new("{ base_ejection: 1s, max_ejection: 3s }");
    for (n, time) in [secs(1), secs(2), secs(3), secs(3)].into_iter().enumerate() {
        f.refused(0);
        assert!(f.out_for(0, time).await, "ejection {n}: {time:?}");
    }
    assert_eq!(f.ejections(), 4);
}

#[tokio::test(start_paused = true)]
async fn an_answer_after_re_admission_resets_the_doubling() {
    let f = Fixture::new("{ base_ejection: 1s }");
    f.refused(0);
    assert!(f.out_for(0, secs(1)).await);
    f.refused(0);
    assert!(f.out_for(0, secs(2)).await);
    f.answered(0, 200);
    f.refused(0);
    assert!(f.out_for(0, secs(1)).await);
}

#[tokio::test(start_paused = true)]
async fn at_most_max_ejected_percent_of_the_backends_are_ejected() {
    // 3 × 50% = 1 backend.
    let f = Fixture::new("{ max_ejected_percent: 50 }");
    f.refused(0);
    f.refused(1);
    assert!(f.ejected(0));
    assert!(!f.ejected(1), "at the cap");
    assert_eq!(f.ejections(), 1);
    // Once the first is back, the second can go.
    assert!(f.out_for(0, secs(1)).await);
    f.refused(1);
    assert!(f.ejected(1));
}

#[tokio::test(start_paused = true)]
async fn the_last_backend_in_rotation_is_never_ejected() {
    let f = Fixture::new("{ max_ejected_percent: 100 }");
    f.refused(0);
    f.refused(1);
    f.refused(2);
    assert!(f.ejected(0) && f.ejected(1));
    assert!(!f.ejected(2), "the last one in rotation");
    // Out of rotation for another reason (failing its checks) counts too.
    let f = Fixture::new("{ max_ejected_percent: 100 }");
    f.backend(1).set_down(Down::Check, true);
    f.backend(2).set_down(Down::Check, true);
    f.refused(0);
    assert!(!f.ejected(0));
}

#[tokio::test(start_paused = true)]
async fn passive_false_ejects_nobody() {
    let f = Fixture::new("false");
    f.refused(0);
    for _ in 0..10 {
        f.answered(1, 503);
        f.observe(2, Outcome::Failed("reset".into()));
    }
    assert!(!f.ejected(0) && !f.ejected(1) && !f.ejected(2));
    assert_eq!(f.ejections(), 0);
}

/// Silent tries while the others answer count towards `consecutive_failures` with the
/// gateway failures, and leave rotation for `base_ejection` like any other.
#[tokio::test(start_paused = true)]
async fn silent_tries_and_resets_add_up_and_the_black_hole_is_back_after_its_ejection() {
    let f = Fixture::new("{ consecutive_failures: 3, base_ejection: 2s }");
    ms_at(Instant::now());
    let step = Duration::from_millis(100);
    f.observe(0, Outcome::Failed("reset".into()));
    for _ in 0..2 {
        let started = Instant::now();
        tokio::time::advance(Duration::from_millis(1)).await;
        f.answered(1, 200);
        tokio::time::advance(step).await;
        let now = Instant::now();
        f.observe(0, Outcome::Slow { started, now });
    }
    assert!(f.ejected(0), "{}", f.reason(0));
    assert!(
        f.reason(0).contains("3 tries in a row without a response"),
        "{}",
        f.reason(0)
    );
    assert!(f.out_for(0, secs(2)).await);
}
