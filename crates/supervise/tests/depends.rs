//! `depends_on`: start order between services, with real processes. Every wait polls
//! with a deadline; every port comes from the driver.
mod common;

use std::time::Duration;

use common::{Harness, eventually, fast, pids, sh};
use shoal_core::{Driver, DriverError, EventKind, ReplicaState, ServiceState};
use shoal_supervise::{Condition, Dependency, ServiceSpec};

fn on(service: &str, condition: Condition) -> Dependency {
    Dependency {
        service: service.into(),
        condition,
    }
}

/// A database that never becomes ready: it runs, but listens on nothing.
fn stuck(name: &str) -> ServiceSpec {
    fast(name, sh("sleep 30"))
}

/// Position of the first event of `service` of `kind` whose message contains `text`.
fn position(h: &Harness, service: &str, kind: EventKind, text: &str) -> Option<usize> {
    h.events
        .since(0)
        .iter()
        .position(|e| e.service == service && e.kind == kind && e.message.contains(text))
}

#[tokio::test]
async fn a_service_waits_until_its_dependency_is_ready() {
    let h = Harness::new();
    let mut db = h.server("db", 1);
    db.env.push(("DELAY".into(), "1".into())); // listens after a second
    let mut web = h.server("web", 2);
    web.depends_on = vec![on("db", Condition::Healthy)];
    // Listed before its dependency: the order of the list does not matter.
    h.sup.apply(vec![web, db]).await;

    let status = h.status("web").unwrap();
    assert_eq!(status.state, ServiceState::Progressing);
    assert_eq!((status.desired, status.ready), (2, 0));
    assert_eq!(status.replicas.len(), 2, "{status:?}");
    for r in &status.replicas {
        assert_eq!(r.state, ReplicaState::Starting);
        assert_eq!(r.pid, None, "started before db was ready");
        assert_eq!(r.message.as_deref(), Some("waiting for db to be ready"));
    }
    let waiting = h.events_of(EventKind::Waiting);
    assert_eq!(waiting.len(), 1, "{waiting:?}");
    assert_eq!(waiting[0].message, "waiting for db to be ready");

    eventually(20, "web ready", || {
        (h.sup.status().iter().find(|s| s.name == "web")?.ready == 2).then_some(())
    })
    .await;
    let db_ready = position(&h, "db", EventKind::Ready, "").unwrap();
    let web_started = position(&h, "web", EventKind::Started, "").unwrap();
    assert!(db_ready < web_started, "web started before db was ready");
    assert!(
        position(
            &h,
            "web",
            EventKind::Waiting,
            "dependencies there: db (service_healthy)"
        )
        .is_some()
    );
    h.shutdown().await;
}

#[tokio::test]
async fn service_started_waits_for_a_process_only() {
    let h = Harness::new();
    let mut web = h.server("web", 1);
    web.depends_on = vec![on("db", Condition::Started)];
    // db never becomes ready; a started process is enough.
    h.sup.apply(vec![stuck("db"), web]).await;
    eventually(20, "web ready", || {
        (h.status("web")?.ready == 1).then_some(())
    })
    .await;
    assert_eq!(h.status("db").unwrap().ready, 0);
    h.shutdown().await;
}

#[tokio::test]
async fn a_waiting_service_is_scaled_and_updated_but_not_rolled() {
    let h = Harness::new();
    let mut web = h.server("web", 1);
    web.depends_on = vec![on("db", Condition::Healthy)];
    h.sup.apply(vec![stuck("db"), web.clone()]).await;

    // Scaling a waiting service sets what it will start.
    h.sup.scale("web", 2).unwrap();
    let status = h.status("web").unwrap();
    assert_eq!(status.desired, 2);
    assert_eq!(status.replicas.len(), 2);
    assert!(pids(&status).is_empty());
    // Nothing to restart or undo yet.
    match h.sup.rollout_restart("web") {
        Err(DriverError::Invalid(m)) => assert!(m.contains("waiting for db"), "{m}"),
        other => panic!("{other:?}"),
    }
    // A new spec while waiting: no rollout, it starts with that spec.
    web.env.push(("VERSION".into(), "2".into()));
    web.replicas = 2;
    h.sup.apply(vec![stuck("db"), web.clone()]).await;
    assert!(h.status("web").unwrap().rollout.is_none());
    assert!(h.events_of(EventKind::Rollout).is_empty());

    // db rolls to a spec that gets ready: that rollout completes, then web starts.
    h.sup.apply(vec![h.server("db", 1), web.clone()]).await;
    eventually(30, "web ready", || {
        (h.status("web")?.ready == 2).then_some(())
    })
    .await;
    let web_status = h.status("web").unwrap();
    assert!(web_status.rollout.is_none(), "web was rolled");
    assert!(
        web_status
            .replicas
            .iter()
            .all(|r| r.version == Some(web.version())),
        "{web_status:?}"
    );
    eventually(20, "db's rollout completes", || {
        h.events_of(EventKind::Rollout)
            .iter()
            .any(|e| e.service == "db" && e.message.contains("complete"))
            .then_some(())
    })
    .await;
    h.shutdown().await;
}

#[tokio::test]
async fn a_running_service_never_waits_again() {
    let h = Harness::new();
    let web = h.server("web", 1);
    h.sup.apply(vec![web.clone()]).await;
    eventually(20, "web ready", || {
        (h.status("web")?.ready == 1).then_some(())
    })
    .await;
    let before = pids(&h.status("web").unwrap());
    // A reload adds a dependency that is never ready: start order only, nothing rolls.
    let mut with_dep = web.clone();
    with_dep.depends_on = vec![on("db", Condition::Healthy)];
    h.sup.apply(vec![stuck("db"), with_dep]).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let status = h.status("web").unwrap();
    assert_eq!(status.ready, 1);
    assert_eq!(pids(&status), before);
    assert!(h.events_of(EventKind::Waiting).is_empty());
    assert!(status.rollout.is_none());
    h.shutdown().await;
}
