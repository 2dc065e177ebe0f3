//! Leader election on a `coordination.k8s.io/v1` Lease, as client-go's leaderelection does it:
//! get, then create or replace with the read resourceVersion (optimistic concurrency).
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Api;
use kube::api::PostParams;
use shoal_core::EventKind;
use tokio::time::{Instant, MissedTickBehavior};

use super::LeaseSettings;
use super::driver::Shared;
use super::problem::{Failure, describe};

/// Whether, and until when, this gateway holds the Lease.
#[derive(Debug, Default)]
pub(crate) struct Leadership {
    /// Leader until then (tokio clock): the start of the last successful round plus the
    /// duration. None: not the leader.
    valid_until: Option<Instant>,
    /// The last failed round, to say why leadership was lost.
    last_error: Option<String>,
}

impl Leadership {
    pub(crate) fn holds_now(&self) -> bool {
        self.valid_until.is_some_and(|t| Instant::now() < t)
    }
}

/// What one round decided, from the Lease as read.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Plan {
    /// No Lease: create it, held by this gateway.
    Create,
    /// Held by this gateway: write a new renewTime.
    Renew,
    /// Free (released, or expired): take it, from `previous` if it had a holder.
    TakeOver {
        /// The holder whose claim expired.
        previous: Option<String>,
    },
    /// Held by another gateway whose claim is current.
    Follow {
        /// Its identity.
        holder: String,
    },
}

/// Decide from the Lease (`None`: there is none). `stale` says whether this gateway has seen
/// the record unchanged for a whole lease duration on its own clock.
pub(crate) fn plan(lease: Option<&Lease>, me: &str, now: Timestamp, stale: bool) -> Plan {
    let Some(lease) = lease else {
        return Plan::Create;
    };
    let spec = lease.spec.clone().unwrap_or_default();
    let holder = spec.holder_identity.filter(|h| !h.is_empty());
    match holder {
        None => Plan::TakeOver { previous: None },
        Some(h) if h == me => Plan::Renew,
        Some(h) => {
            let seconds = spec.lease_duration_seconds.unwrap_or(0).max(1);
            let last = spec.renew_time.or(spec.acquire_time);
            let expired = last.is_none_or(|t| {
                t.0.checked_add(SignedDuration::from_secs(i64::from(seconds)))
                    .is_ok_and(|end| end < now)
            });
            if expired || stale {
                Plan::TakeOver { previous: Some(h) }
            } else {
                Plan::Follow { holder: h }
            }
        }
    }
}

/// `leaseDurationSeconds` for a duration: whole seconds, rounded up, at least 1.
pub(crate) fn whole_seconds(d: Duration) -> i32 {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    i32::try_from(secs.max(1)).unwrap_or(i32::MAX)
}

/// The spec this gateway writes for `plan` (Create, Renew or TakeOver).
pub(crate) fn claim(
    previous: Option<&LeaseSpec>,
    plan: &Plan,
    me: &str,
    duration: Duration,
    now: Timestamp,
) -> LeaseSpec {
    let mut spec = previous.cloned().unwrap_or_default();
    spec.holder_identity = Some(me.to_owned());
    spec.lease_duration_seconds = Some(whole_seconds(duration));
    spec.renew_time = Some(MicroTime(now));
    match plan {
        Plan::Create => {
            spec.acquire_time = Some(MicroTime(now));
            spec.lease_transitions = Some(0);
        }
        Plan::TakeOver { .. } => {
            spec.acquire_time = Some(MicroTime(now));
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0).saturating_add(1));
        }
        Plan::Renew | Plan::Follow { .. } => {
            if spec.acquire_time.is_none() {
                spec.acquire_time = Some(MicroTime(now));
            }
        }
    }
    spec
}

/// How one round ended.
#[derive(Debug)]
enum Outcome {
    /// This gateway holds the Lease (having taken it from `took_from`, if it just took it).
    Leading { took_over: Option<Option<String>> },
    /// Another gateway holds it.
    Following { holder: String },
    /// Someone else wrote first (409): read again next round.
    Conflict,
}

/// The record last read and when it was first seen as it is (to notice a holder that
/// stopped renewing without trusting its clock).
#[derive(Debug, Default)]
struct Observed {
    record: Option<(String, Instant)>,
}

impl Observed {
    /// Note the record's resourceVersion; whether it has been unchanged for `duration`.
    fn unchanged_for(&mut self, version: &str, duration: Duration) -> bool {
        let now = Instant::now();
        match &self.record {
            Some((v, since)) if v == version => now.duration_since(*since) >= duration,
            _ => {
                self.record = Some((version.to_owned(), now));
                false
            }
        }
    }
}

async fn round(
    api: &Api<Lease>,
    settings: &LeaseSettings,
    me: &str,
    observed: &mut Observed,
) -> Result<Outcome, (&'static str, kube::Error)> {
    let current = api.get_opt(&settings.name).await.map_err(|e| ("get", e))?;
    let now = Timestamp::now();
    let stale = match &current {
        Some(lease) => {
            let version = lease.metadata.resource_version.clone().unwrap_or_default();
            let seconds = lease
                .spec
                .as_ref()
                .and_then(|s| s.lease_duration_seconds)
                .filter(|s| *s > 0)
                .map_or(settings.duration, |s| Duration::from_secs(s as u64));
            observed.unchanged_for(&version, seconds)
        }
        None => false,
    };
    let decision = plan(current.as_ref(), me, now, stale);
    let spec = claim(
        current.as_ref().and_then(|l| l.spec.as_ref()),
        &decision,
        me,
        settings.duration,
        now,
    );
    let took_over = match &decision {
        Plan::Follow { holder } => {
            return Ok(Outcome::Following {
                holder: holder.clone(),
            });
        }
        Plan::TakeOver { previous } => Some(previous.clone()),
        Plan::Create | Plan::Renew => None,
    };
    let written = match current {
        None => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(settings.name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(spec),
            };
            api.create(&PostParams::default(), &lease)
                .await
                .map_err(|e| ("create", e))
        }
        Some(mut lease) => {
            lease.spec = Some(spec);
            api.replace(&settings.name, &PostParams::default(), &lease)
                .await
                .map_err(|e| ("update", e))
        }
    };
    match written {
        Ok(_) => Ok(Outcome::Leading { took_over }),
        Err((_, kube::Error::Api(status))) if status.code == 409 || status.is_already_exists() => {
            Ok(Outcome::Conflict)
        }
        Err(e) => Err(e),
    }
}

/// Give the Lease up (no holder, 1 s) if this gateway holds it.
async fn release(
    api: &Api<Lease>,
    settings: &LeaseSettings,
    me: &str,
) -> Result<bool, kube::Error> {
    let Some(mut lease) = api.get_opt(&settings.name).await? else {
        return Ok(false);
    };
    let mut spec = lease.spec.clone().unwrap_or_default();
    if spec.holder_identity.as_deref() != Some(me) {
        return Ok(false);
    }
    let now = Timestamp::now();
    spec.holder_identity = None;
    spec.lease_duration_seconds = Some(1);
    spec.renew_time = Some(MicroTime(now));
    spec.acquire_time = Some(MicroTime(now));
    lease.spec = Some(spec);
    api.replace(&settings.name, &PostParams::default(), &lease)
        .await?;
    Ok(true)
}

/// The election loop: a round every `renew_every` until shutdown, then release.
pub(crate) async fn run(shared: Arc<Shared>, settings: LeaseSettings) {
    let mut stop = shared.stop.subscribe();
    let api: Api<Lease> =
        Api::namespaced(shared.cluster.client.clone(), shared.cluster.namespace());
    let me = shared.cluster.identity().to_owned();
    let name = settings.name.clone();
    let call_timeout = settings
        .renew_every
        .max(Duration::from_secs(1))
        .min(settings.duration / 2);
    let mut observed = Observed::default();
    let mut ticker = tokio::time::interval(settings.renew_every);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut holder_seen: Option<String> = None;
    loop {
        tokio::select! {
            _ = stop.wait_for(|stopped| *stopped) => break,
            _ = ticker.tick() => {}
        }
        step_down_if_expired(&shared, &settings);
        let started = Instant::now();
        let result = tokio::select! {
            _ = stop.wait_for(|stopped| *stopped) => break,
            r = tokio::time::timeout(call_timeout, round(&api, &settings, &me, &mut observed)) => r,
        };
        match result {
            Ok(Ok(Outcome::Leading { took_over })) => {
                shared.troubles.ok("lease");
                let was = {
                    let mut l = shared.leadership.lock().unwrap_or_else(|e| e.into_inner());
                    let was = l.holds_now();
                    l.valid_until = Some(started + settings.duration);
                    l.last_error = None;
                    was
                };
                holder_seen = Some(me.clone());
                if !was {
                    let from = match took_over {
                        Some(Some(previous)) => {
                            format!(", taking over from {previous} (its claim expired)")
                        }
                        _ => String::new(),
                    };
                    shared.events.emit(
                        "",
                        None,
                        EventKind::Leader,
                        format!(
                            "this gateway ({me}) now holds the Lease {name} and scales the services{from}"
                        ),
                    );
                }
            }
            Ok(Ok(Outcome::Following { holder })) => {
                shared.troubles.ok("lease");
                let was = {
                    let mut l = shared.leadership.lock().unwrap_or_else(|e| e.into_inner());
                    let was = l.holds_now();
                    l.valid_until = None;
                    was
                };
                if was {
                    shared.events.emit(
                        "",
                        None,
                        EventKind::Leader,
                        format!(
                            "this gateway ({me}) lost the Lease {name} to {holder}: it no longer scales"
                        ),
                    );
                } else if holder_seen.as_ref() != Some(&holder) {
                    tracing::info!(lease = %name, %holder, "another gateway holds the Lease and scales");
                }
                holder_seen = Some(holder);
            }
            Ok(Ok(Outcome::Conflict)) => {
                shared.troubles.ok("lease");
                tracing::debug!(lease = %name, "Lease written by another gateway first; reading it again");
            }
            Ok(Err((verb, e))) => {
                let failure = Failure::from(e);
                lease_failed(&shared, &name, verb, failure);
            }
            Err(_) => {
                let failure = Failure::Unreachable(format!(
                    "no answer within {:.1}s",
                    call_timeout.as_secs_f64()
                ));
                lease_failed(&shared, &name, "update", failure);
            }
        }
        step_down_if_expired(&shared, &settings);
    }
    // Shutting down: stop claiming at once, then hand the Lease over.
    let was = {
        let mut l = shared.leadership.lock().unwrap_or_else(|e| e.into_inner());
        let was = l.holds_now();
        l.valid_until = None;
        was
    };
    if was {
        match tokio::time::timeout(call_timeout, release(&api, &settings, &me)).await {
            Ok(Ok(true)) => {
                shared.events.emit(
                    "",
                    None,
                    EventKind::Leader,
                    format!(
                        "this gateway ({me}) released the Lease {name} (shutting down): another gateway takes over"
                    ),
                );
            }
            Ok(Ok(false)) => {}
            Ok(Err(e)) => {
                tracing::warn!(lease = %name, error = %Failure::from(e).detail(), "could not release the Lease; it expires on its own");
            }
            Err(_) => {
                tracing::warn!(lease = %name, "could not release the Lease in time; it expires on its own");
            }
        }
    }
}

fn lease_failed(shared: &Shared, name: &str, verb: &str, failure: Failure) {
    let namespace = shared.cluster.namespace();
    let purpose = format!("electing the gateway that scales through the Lease {name}");
    let message = describe(&failure, verb, "leases", namespace, &purpose);
    shared
        .leadership
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .last_error = Some(failure.detail());
    shared.troubles.failed("lease", "", &failure, message);
}

/// The leader that could not renew for a whole duration stops claiming, and says so.
fn step_down_if_expired(shared: &Shared, settings: &LeaseSettings) {
    let reason = {
        let mut l = shared.leadership.lock().unwrap_or_else(|e| e.into_inner());
        match l.valid_until {
            Some(until) if Instant::now() >= until => {
                l.valid_until = None;
                Some(
                    l.last_error
                        .clone()
                        .unwrap_or_else(|| "no answer".to_owned()),
                )
            }
            _ => None,
        }
    };
    if let Some(reason) = reason {
        shared.events.emit(
            "",
            None,
            EventKind::Leader,
            format!(
                "this gateway ({}) lost the Lease {}: could not renew it for {:.0}s ({reason}); it no longer scales",
                shared.cluster.identity(),
                settings.name,
                settings.duration.as_secs_f64()
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(holder: Option<&str>, renewed: Timestamp, seconds: i32) -> Lease {
        Lease {
            metadata: ObjectMeta {
                name: Some("shoal-gateway".into()),
                resource_version: Some("7".into()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: holder.map(str::to_owned),
                lease_duration_seconds: Some(seconds),
                renew_time: Some(MicroTime(renewed)),
                acquire_time: Some(MicroTime(renewed)),
                lease_transitions: Some(3),
                ..LeaseSpec::default()
            }),
        }
    }

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + secs).unwrap()
    }

    #[test]
    fn the_election_rules() {
        assert_eq!(plan(None, "a", at(0), false), Plan::Create);
        let held_by_b = lease(Some("b"), at(0), 15);
        assert_eq!(
            plan(Some(&held_by_b), "a", at(10), false),
            Plan::Follow { holder: "b".into() }
        );
        assert_eq!(
            plan(Some(&held_by_b), "a", at(16), false),
            Plan::TakeOver {
                previous: Some("b".into())
            },
            "renewTime + duration in the past"
        );
        assert_eq!(
            plan(Some(&held_by_b), "a", at(1), true),
            Plan::TakeOver {
                previous: Some("b".into())
            },
            "unchanged for a duration on this gateway's clock"
        );
        assert_eq!(plan(Some(&held_by_b), "b", at(100), false), Plan::Renew);
        let released = lease(None, at(0), 1);
        assert_eq!(
            plan(Some(&released), "a", at(0), false),
            Plan::TakeOver { previous: None }
        );
        let empty = lease(Some(""), at(0), 15);
        assert_eq!(
            plan(Some(&empty), "a", at(0), false),
            Plan::TakeOver { previous: None }
        );
    }

    #[test]
    fn claims_count_transitions_and_keep_the_acquire_time_on_renewal() {
        let d = Duration::from_millis(1500);
        let created = claim(None, &Plan::Create, "a", d, at(0));
        assert_eq!(created.holder_identity.as_deref(), Some("a"));
        assert_eq!(created.lease_duration_seconds, Some(2));
        assert_eq!(created.lease_transitions, Some(0));
        let renewed = claim(Some(&created), &Plan::Renew, "a", d, at(5));
        assert_eq!(renewed.acquire_time, Some(MicroTime(at(0))));
        assert_eq!(renewed.renew_time, Some(MicroTime(at(5))));
        assert_eq!(renewed.lease_transitions, Some(0));
        let taken = claim(
            Some(&renewed),
            &Plan::TakeOver {
                previous: Some("a".into()),
            },
            "b",
            d,
            at(9),
        );
        assert_eq!(taken.holder_identity.as_deref(), Some("b"));
        assert_eq!(taken.acquire_time, Some(MicroTime(at(9))));
        assert_eq!(taken.lease_transitions, Some(1));
    }

    #[test]
    fn whole_seconds_round_up() {
        assert_eq!(whole_seconds(Duration::from_secs(15)), 15);
        assert_eq!(whole_seconds(Duration::from_millis(1)), 1);
        assert_eq!(whole_seconds(Duration::from_millis(2001)), 3);
        assert_eq!(whole_seconds(Duration::ZERO), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_record_unchanged_for_a_duration_is_stale() {
        let mut o = Observed::default();
        let d = Duration::from_secs(15);
        assert!(!o.unchanged_for("1", d));
        tokio::time::advance(Duration::from_secs(14)).await;
        assert!(!o.unchanged_for("1", d));
        assert!(!o.unchanged_for("2", d), "a new version restarts the count");
        tokio::time::advance(Duration::from_secs(15)).await;
        assert!(o.unchanged_for("2", d));
    }
}
