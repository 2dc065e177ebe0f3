//! Scenario tests of the controller, in fake time (plain `Duration`s, 1 s ticks).

use std::time::Duration;

use crate::{Autoscaler, Limit, Policy, RatePolicy, ReplicaSample, Sample, Target};

fn s(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// A replica ready long ago with this concurrency.
fn busy(in_flight: f64) -> ReplicaSample {
    ReplicaSample::ready(s(600)).with_concurrency(in_flight)
}

/// `current` ready replicas sharing a total concurrency of `total`, with traffic.
fn load(now: u64, current: u32, total: f64) -> Sample {
    Sample {
        now: s(now),
        current,
        replicas: vec![busy(total / f64::from(current)); current as usize],
        requests: 100,
        ..Sample::default()
    }
}

/// A policy without panic mode, to look at one stage at a time.
fn calm(policy: Policy) -> Policy {
    Policy {
        panic_threshold: 1000.0,
        ..policy
    }
}

#[test]
fn tolerance_band_holds_small_changes() {
    let mut a = Autoscaler::new(Policy::default(), s(0));
    // Ratio 1.05: inside ±10%.
    let d = a.tick(&load(1, 4, 42.0));
    assert_eq!(d.desired, 4);
    assert_eq!(d.limited_by, Some(Limit::Tolerance));
    assert!(d.reason.contains("within tolerance"), "{}", d.reason);
    // Ratio 1.2: ceil(1.2 × 4) = 5.
    let d = a.tick(&load(2, 4, 48.0));
    assert_eq!(
        (d.desired, d.recommendation, d.limited_by),
        (5, Some(5), None)
    );
    assert!(!d.panic);
}

#[test]
fn tolerance_is_per_direction() {
    let policy = calm(Policy {
        max: 50,
        tolerance_down: 0.3,
        down_stabilization: Duration::ZERO,
        ..Policy::default()
    });
    let mut a = Autoscaler::new(policy, s(0));
    // Ratio 0.8 is within the 30% down band; ratio 1.15 is outside the 10% up band.
    assert_eq!(a.tick(&load(1, 10, 80.0)).desired, 10);
    assert_eq!(a.tick(&load(2, 10, 115.0)).desired, 12);
}

#[test]
fn down_stabilization_keeps_the_largest_recommendation_of_the_window() {
    let mut a = Autoscaler::new(calm(Policy::default()), s(0));
    for t in 0..=40 {
        assert_eq!(a.tick(&load(t, 10, 100.0)).desired, 10);
    }
    // A 10 s dip to half the load inside the 30 s window: no scale-down.
    for t in 41..=50 {
        let d = a.tick(&load(t, 10, 50.0));
        assert_eq!(d.recommendation, Some(5));
        assert_eq!(
            (d.desired, d.limited_by),
            (10, Some(Limit::DownStabilization))
        );
    }
    for t in 51..=100 {
        assert_eq!(a.tick(&load(t, 10, 100.0)).desired, 10);
    }
    // A lasting drop: held until the last 10 leaves the window (recorded at 100, outside
    // from 130), then halved by the down policy (Percent 50 per 5 s).
    for t in 101..=129 {
        assert_eq!(a.tick(&load(t, 10, 50.0)).desired, 10, "t={t}");
    }
    let d = a.tick(&load(130, 10, 50.0));
    assert_eq!(d.desired, 5);
    assert_eq!(d.limited_by, None);
}

#[test]
fn a_new_autoscaler_cannot_scale_down_before_a_full_window() {
    // Restarted at t=100 with 10 replicas and almost no load: it behaves as if 10 had been
    // recommended at 100.
    let mut a = Autoscaler::new(calm(Policy::default()), s(100));
    for t in 100..130 {
        let d = a.tick(&load(t, 10, 5.0));
        assert_eq!(d.recommendation, Some(1));
        assert_eq!(
            (d.desired, d.limited_by),
            (10, Some(Limit::DownStabilization))
        );
    }
    let d = a.tick(&load(130, 10, 5.0));
    assert_eq!((d.desired, d.limited_by), (5, Some(Limit::DownRatePolicy)));
    assert!(
        d.reason
            .contains("scale-down limited to 5 by policy Percent 50 per 5s"),
        "{}",
        d.reason
    );
}

#[test]
fn up_rate_policies_cap_each_step() {
    // From 2 toward 40 with +4 pods or +100% per 1 s (the larger): 6, 12, 24, then 40.
    let mut a = Autoscaler::new(
        calm(Policy {
            max: 50,
            ..Policy::default()
        }),
        s(0),
    );
    let mut current = 2;
    let mut seen = vec![current];
    for t in 1..=5 {
        let d = a.tick(&load(t, current, 400.0));
        assert_eq!(d.recommendation, Some(40));
        if d.desired < 40 {
            assert_eq!(d.limited_by, Some(Limit::UpRatePolicy), "{}", d.reason);
        }
        current = d.desired;
        seen.push(current);
    }
    assert_eq!(seen, vec![2, 6, 12, 24, 40, 40]);
}

#[test]
fn up_rate_policy_over_a_longer_period_spends_its_budget_once() {
    let policy = calm(Policy {
        up_policies: vec![RatePolicy::Pods {
            value: 4,
            period: s(3),
        }],
        ..Policy::default()
    });
    let mut a = Autoscaler::new(policy, s(0));
    let mut current = 2;
    let mut seen = vec![];
    for t in 0..7 {
        current = a.tick(&load(t, current, 100.0)).desired;
        seen.push(current);
    }
    // +4 at 0, nothing while that step is inside the 3 s period, +4 at 3, at 6 reaches 10.
    assert_eq!(seen, vec![6, 6, 6, 10, 10, 10, 10]);
}

#[test]
fn down_rate_policy_halves_per_period() {
    let policy = calm(Policy {
        down_stabilization: Duration::ZERO,
        ..Policy::default()
    });
    let mut a = Autoscaler::new(policy, s(0));
    let mut current = 20;
    let mut seen = vec![];
    for t in 0..=12 {
        current = a.tick(&load(t, current, 15.0)).desired;
        seen.push(current);
    }
    // Recommendation 2; Percent 50 per 5 s: 20 → 10 at 0, → 5 at 5, → 2 at 10.
    assert_eq!(seen, vec![10, 10, 10, 10, 10, 5, 5, 5, 5, 5, 2, 2, 2]);
}

#[test]
fn missing_metrics_block_scale_down() {
    let policy = calm(Policy {
        down_stabilization: Duration::ZERO,
        ..Policy::default()
    });
    let mut a = Autoscaler::new(policy, s(0));
    let mut sample = load(1, 4, 4.0);
    sample.replicas[3].concurrency = None;
    let d = a.tick(&sample);
    assert_eq!((d.desired, d.limited_by), (4, Some(Limit::MissingMetrics)));
    assert_eq!(d.readings[0].missing, 1);
    assert!(d.reason.contains("scale-down forbidden"), "{}", d.reason);
    // The missing replica was counted at the target, so the raw recommendation was 2,
    // not 1, and it is not remembered.
    assert_eq!(d.recommendation, Some(2));
    // Once every replica reports, it scales down.
    let d = a.tick(&load(2, 4, 4.0));
    assert_eq!(d.desired, 2);
}

#[test]
fn missing_metrics_do_not_block_scale_up() {
    let mut a = Autoscaler::new(Policy::default(), s(0));
    let mut sample = load(1, 4, 60.0); // 15 each
    sample.replicas[3].concurrency = None;
    // Three at 15, one missing counted as 0: 45 / 4 / 10 = 1.125 → ceil(4.5) = 5.
    let d = a.tick(&sample);
    assert_eq!((d.desired, d.limited_by), (5, None));
}

#[test]
fn missing_latency_blocks_scale_down_only_under_traffic() {
    let policy = calm(Policy {
        targets: vec![
            Target::Concurrency(10.0),
            Target::LatencyP95(Duration::from_millis(200)),
        ],
        down_stabilization: Duration::ZERO,
        ..Policy::default()
    });
    let mut a = Autoscaler::new(policy.clone(), s(0));
    let d = a.tick(&load(1, 4, 4.0));
    assert_eq!((d.desired, d.limited_by), (4, Some(Limit::MissingMetrics)));
    assert_eq!(d.targets_column(), "1/10, <unknown>/200ms");

    let mut a = Autoscaler::new(policy, s(0));
    let mut idle = load(1, 4, 4.0);
    idle.requests = 0;
    assert_eq!(a.tick(&idle).desired, 2);
}

#[test]
fn no_data_at_all_holds_the_current_count() {
    let mut a = Autoscaler::new(calm(Policy::default()), s(0));
    let sample = Sample {
        now: s(40),
        current: 3,
        replicas: vec![ReplicaSample::ready(s(600)); 3],
        requests: 10,
        ..Sample::default()
    };
    let d = a.tick(&sample);
    assert_eq!((d.desired, d.recommendation), (3, None));
    assert_eq!(d.limited_by, Some(Limit::MissingMetrics));
    assert!(d.reason.contains("no target has data"), "{}", d.reason);
}

#[test]
fn starting_replicas_count_as_zero_on_scale_up() {
    // 2 ready at 30 each, 5 more starting, 7 asked for. The ready ones alone say ratio 3 →
    // ceil(3 × 2) = 6, below the 7 already coming. Counting the starting ones at zero:
    // 60 / 7 / 10 = 0.86 < 1 flips the direction → hold at 7 while they start.
    let mut a = Autoscaler::new(Policy::default(), s(0));
    let mut sample = load(1, 7, 0.0);
    sample.replicas = vec![busy(30.0), busy(30.0)];
    sample.replicas.extend(vec![ReplicaSample::starting(); 5]);
    let d = a.tick(&sample);
    assert_eq!((d.desired, d.limited_by), (7, Some(Limit::WarmingUp)));
    assert!(
        d.reason
            .contains("5 replicas starting or warming up, holding at 7"),
        "{}",
        d.reason
    );

    // 2 ready at 30, 4 starting: 60 / 6 / 10 = 1.0 → within tolerance, no more replicas
    // (the naive 3 × … would keep adding while the new ones start).
    let mut a = Autoscaler::new(Policy::default(), s(0));
    let mut sample = load(1, 6, 0.0);
    sample.replicas = vec![busy(30.0), busy(30.0)];
    sample.replicas.extend(vec![ReplicaSample::starting(); 4]);
    let d = a.tick(&sample);
    assert_eq!((d.desired, d.limited_by), (6, Some(Limit::Tolerance)));
}

#[test]
fn starting_replicas_are_left_out_on_scale_down() {
    let policy = calm(Policy {
        down_stabilization: Duration::ZERO,
        down_policies: vec![],
        ..Policy::default()
    });
    let mut a = Autoscaler::new(policy, s(0));
    let mut sample = load(1, 6, 0.0);
    sample.replicas = vec![busy(4.0), busy(4.0)];
    sample.replicas.extend(vec![ReplicaSample::starting(); 4]);
    // ratio 0.4 over the 2 ready → ceil(0.8) = 1.
    assert_eq!(a.tick(&sample).desired, 1);
}

#[test]
fn warm_up_cpu_samples_are_ignored() {
    let policy = calm(Policy {
        targets: vec![Target::Cpu(0.5)],
        ..Policy::default()
    });
    let mut a = Autoscaler::new(policy, s(0));
    let settled = ReplicaSample::ready(s(600)).with_cpu(0.5);
    let sample = |now, spike_ready_for| Sample {
        now: s(now),
        current: 2,
        replicas: vec![
            settled.clone(),
            ReplicaSample::ready(s(spike_ready_for)).with_cpu(1.0),
        ],
        requests: 10,
        ..Sample::default()
    };
    // The start-up spike (ready for 2 s < 5 s) is ignored: 50%/50% → hold at 2.
    let d = a.tick(&sample(1, 2));
    assert_eq!((d.desired, d.targets_column()), (2, "50%/50%".to_owned()));
    // Once warm, the same sample counts: 75% / 50% = 1.5 → 3.
    let d = a.tick(&sample(2, 10));
    assert_eq!((d.desired, d.targets_column()), (3, "75%/50%".to_owned()));
}

#[test]
fn several_targets_take_the_largest() {
    let policy = Policy {
        targets: vec![Target::Cpu(0.5), Target::Concurrency(10.0)],
        ..Policy::default()
    };
    let mut a = Autoscaler::new(policy, s(0));
    let mut sample = load(1, 4, 60.0); // 15 in flight each: 1.5 → 6
    for r in &mut sample.replicas {
        r.cpu = Some(0.6); // 120% of the 50% target → ceil(4.8) = 5
    }
    let d = a.tick(&sample);
    assert_eq!(d.desired, 6);
    assert_eq!(d.readings[0].recommendation, Some(5));
    assert_eq!(d.readings[1].recommendation, Some(6));
    assert_eq!(d.targets_column(), "60%/50%, 15/10");
    assert_eq!(
        d.reason,
        "cpu 60%/50% → 5, concurrency 15/10 per replica → 6: largest 6 replicas"
    );
}

#[test]
fn panic_on_a_burst_jumps_past_the_up_policy() {
    let mut a = Autoscaler::new(
        Policy {
            max: 50,
            ..Policy::default()
        },
        s(0),
    );
    for t in 0..=5 {
        let d = a.tick(&load(t, 4, 40.0));
        assert_eq!((d.desired, d.panic), (4, false));
    }
    // 3× the load: 12 wanted, 12 ≥ 2 × 4 ready. The up policy alone would allow 8.
    let d = a.tick(&load(6, 4, 120.0));
    assert!(d.panic, "{}", d.reason);
    assert_eq!(d.desired, 12);
    assert!(d.reason.contains("panic mode"), "{}", d.reason);
}

#[test]
fn panic_never_scales_down_and_ends_after_the_hold() {
    let policy = Policy {
        max: 50,
        down_stabilization: Duration::ZERO,
        down_policies: vec![],
        ..Policy::default()
    };
    let mut a = Autoscaler::new(policy, s(0));
    a.tick(&load(0, 4, 40.0));
    let d = a.tick(&load(1, 4, 120.0));
    assert_eq!((d.desired, d.panic), (12, true));
    // The burst is over at once; the threshold was last reached at 1.
    for t in 2..11 {
        let d = a.tick(&load(t, 12, 40.0));
        assert_eq!(d.recommendation, Some(4));
        assert_eq!((d.desired, d.panic), (12, true), "t={t}");
        assert_eq!(d.limited_by, Some(Limit::Panic));
    }
    // 10 s (panic_hold) after the threshold was last reached: out of panic, and with no
    // down stabilization or policy, straight to the recommendation.
    let d = a.tick(&load(11, 12, 40.0));
    assert_eq!((d.desired, d.panic), (4, false));
}

#[test]
fn panic_ratchet_keeps_the_highest_count() {
    let mut a = Autoscaler::new(
        Policy {
            max: 50,
            ..Policy::default()
        },
        s(0),
    );
    let d = a.tick(&load(0, 2, 100.0)); // 10 wanted ≥ 2 × 2
    assert_eq!((d.desired, d.panic), (10, true));
    // Load drops while the 10 is still in the panic window and 10 ≥ 2 × 4 ready:
    // still panicking, never below 10.
    let mut sample = load(1, 10, 40.0);
    sample.replicas.truncate(4);
    sample.replicas.extend(vec![ReplicaSample::starting(); 6]);
    let d = a.tick(&sample);
    assert_eq!((d.desired, d.panic), (10, true));
}

#[test]
fn scale_to_zero_after_the_idle_period() {
    let policy = Policy {
        min: 0,
        ..Policy::default()
    };
    let mut a = Autoscaler::new(policy, s(0));
    let idle = |now, current| {
        let mut x = load(now, current, 0.0);
        x.requests = 0;
        x
    };
    let mut current = 2;
    current = a.tick(&load(10, current, 5.0)).desired; // the last request, at 10
    for t in 11..70 {
        let d = a.tick(&idle(t, current));
        assert!(d.desired >= 1, "t={t}: {}", d.reason);
        current = d.desired;
    }
    assert_eq!(current, 1); // scaled down by the normal path meanwhile, kept at 1
    let d = a.tick(&idle(70, current));
    assert_eq!((d.desired, d.limited_by), (0, None));
    assert!(d.reason.contains("idle for 60s"), "{}", d.reason);
    // Stays at zero while idle.
    let zero = |now| Sample {
        now: s(now),
        ..Sample::default()
    };
    assert_eq!(a.tick(&zero(71)).desired, 0);
    // A queued request wakes it at once.
    let d = a.tick(&Sample {
        queued: 3,
        ..zero(75)
    });
    assert_eq!(d.desired, 1);
    assert!(d.reason.contains("waking to 1"), "{}", d.reason);
}

#[test]
fn traffic_restarts_the_idle_clock_and_keeps_at_least_one() {
    let policy = Policy {
        min: 0,
        ..Policy::default()
    };
    let mut a = Autoscaler::new(policy, s(0));
    for t in 0..200 {
        // A trickle every 30 s: never idle for 60 s, so never zero (and never below 1).
        let mut x = load(t, 1, 0.0);
        x.requests = u64::from(t % 30 == 0);
        let d = a.tick(&x);
        assert_eq!(d.desired, 1, "t={t}");
    }
}

#[test]
fn wake_returns_the_count_at_once_and_holds_off_scale_to_zero() {
    let policy = Policy {
        min: 0,
        ..Policy::default()
    };
    let mut a = Autoscaler::new(policy, s(0));
    let zero = |now| Sample {
        now: s(now),
        ..Sample::default()
    };
    assert_eq!(a.tick(&zero(1)).desired, 0);
    assert_eq!(a.wake(s(100)), 1);
    // The wiring has not applied it yet: the tick still says 1.
    assert_eq!(a.tick(&zero(101)).desired, 1);
    // The replica is starting; no request reached it yet. Not idle for 60 s: stays at 1.
    for t in 102..160 {
        let x = Sample {
            now: s(t),
            current: 1,
            replicas: vec![ReplicaSample::starting()],
            ..Sample::default()
        };
        assert_eq!(a.tick(&x).desired, 1, "t={t}");
    }
    let x = Sample {
        now: s(160),
        current: 1,
        replicas: vec![busy(0.0)],
        ..Sample::default()
    };
    assert_eq!(a.tick(&x).desired, 0);

    // With min 2, waking goes to 2.
    let mut a = Autoscaler::new(
        Policy {
            min: 2,
            ..Policy::default()
        },
        s(0),
    );
    assert_eq!(a.wake(s(5)), 2);
}

#[test]
fn min_and_max_clamp() {
    let mut a = Autoscaler::new(
        Policy {
            max: 5,
            ..Policy::default()
        },
        s(0),
    );
    let d = a.tick(&load(1, 4, 80.0)); // 8 wanted
    assert_eq!((d.desired, d.limited_by), (5, Some(Limit::Max)));
    assert!(
        d.reason
            .ends_with("capped at max 5; panic mode: 8 recommended within 6s ≥ 2 × 4 ready"),
        "{}",
        d.reason
    );
    // A count above max (after a policy change) is brought down to it.
    let d = a.tick(&load(2, 8, 80.0));
    assert_eq!((d.desired, d.limited_by), (5, Some(Limit::Max)));

    let policy = calm(Policy {
        min: 3,
        down_stabilization: Duration::ZERO,
        down_policies: vec![],
        ..Policy::default()
    });
    let mut a = Autoscaler::new(policy, s(0));
    let d = a.tick(&load(1, 4, 1.0));
    assert_eq!((d.desired, d.limited_by), (3, Some(Limit::Min)));
    // A count below min is raised to it, from zero too.
    let d = a.tick(&Sample {
        now: s(2),
        ..Sample::default()
    });
    assert_eq!((d.desired, d.limited_by), (3, Some(Limit::Min)));
}

#[test]
fn set_policy_keeps_history() {
    let slow_up = calm(Policy {
        max: 20,
        up_policies: vec![RatePolicy::Pods {
            value: 4,
            period: s(10),
        }],
        ..Policy::default()
    });
    let mut a = Autoscaler::new(slow_up.clone(), s(0));
    assert_eq!(a.tick(&load(1, 2, 200.0)).desired, 6);
    a.set_policy(Policy {
        max: 30,
        ..slow_up.clone()
    });
    assert_eq!(a.policy().max, 30);
    // The +4 at 1 is remembered: no more scale-up within its 10 s period.
    let d = a.tick(&load(2, 6, 200.0));
    assert_eq!((d.desired, d.limited_by), (6, Some(Limit::UpRatePolicy)));
    // A fresh autoscaler would have allowed it.
    let mut fresh = Autoscaler::new(slow_up, s(0));
    assert_eq!(fresh.tick(&load(2, 6, 200.0)).desired, 10);
}

#[test]
fn the_reason_reads_like_a_sentence() {
    let policy = calm(Policy {
        up_policies: vec![RatePolicy::Pods {
            value: 2,
            period: s(1),
        }],
        ..Policy::default()
    });
    let mut a = Autoscaler::new(policy, s(0));
    let d = a.tick(&load(1, 2, 47.0));
    assert_eq!(d.desired, 4);
    assert_eq!(
        d.reason,
        "concurrency 23.5/10 per replica → 5 replicas; scale-up limited to 4 by policy Pods 2 per 1s"
    );
    let json = serde_json::to_value(&d).unwrap();
    assert_eq!(json["limited_by"], "up-rate-policy");
    assert_eq!(json["readings"][0]["name"], "concurrency");
    assert_eq!(json["readings"][0]["recommendation"], 5);
}

// Backlog targets (KEDA's queue triggers). Reads come once per tick, at the tick's time.

use crate::{Backlog, BacklogRead, BacklogSample, Fallback};

/// A worker scaled on a backlog alone, `min: 0`, without panic mode unless asked.
fn worker(backlog: Backlog) -> Policy {
    calm(Policy {
        min: 0,
        max: 50,
        targets: vec![Target::Backlog(backlog)],
        ..Policy::default()
    })
}

/// `current` running workers (no requests: they have no port) and this read at `now`.
fn queue(now: u64, current: u32, read: BacklogSample) -> Sample {
    Sample {
        now: s(now),
        current,
        replicas: vec![ReplicaSample::ready(s(600)); current as usize],
        backlog: Some(BacklogRead::ok(s(now), read)),
        ..Sample::default()
    }
}

fn lag(messages: u64) -> BacklogSample {
    BacklogSample::new(messages)
}

/// The same, with a failed read at `now`.
fn unreadable(now: u64, current: u32) -> Sample {
    Sample {
        backlog: Some(BacklogRead::failed(s(now), "connection refused")),
        ..queue(now, current, lag(0))
    }
}

#[test]
fn backlog_proposes_ceil_backlog_over_per_replica() {
    let mut a = Autoscaler::new(
        Policy {
            up_policies: vec![],
            ..worker(Backlog {
                smoothing: Duration::ZERO,
                ..Backlog::new(100)
            })
        },
        s(0),
    );
    let d = a.tick(&queue(1, 4, lag(4210)));
    assert_eq!(
        (d.desired, d.recommendation, d.limited_by),
        (43, Some(43), None)
    );
    assert_eq!(d.reason, "backlog 4,210 over 100/replica → 43 replicas");
    // The column is per replica at the current count, as Kubernetes shows an
    // `AverageValue` external metric.
    assert_eq!(d.targets_column(), "1052.5/100");
    let status = d.backlog.unwrap();
    assert_eq!((status.messages, status.active), (Some(4210), true));
    // Within the tolerance band of the current count: no change. 4,500 / (100 × 43) = 1.05.
    let d = a.tick(&queue(2, 43, lag(4500)));
    assert_eq!((d.desired, d.limited_by), (43, Some(Limit::Tolerance)));
    // Not per ready replica: starting workers do not change what the queue calls for.
    let mut sample = queue(3, 43, lag(6000));
    sample.replicas = vec![ReplicaSample::starting(); 43];
    assert_eq!(a.tick(&sample).desired, 50); // 60, capped at max
}

#[test]
fn backlog_is_capped_at_the_partitions_unless_idle_consumers_are_allowed() {
    let policy = |cap_at_partitions| Policy {
        up_policies: vec![],
        ..worker(Backlog {
            cap_at_partitions,
            ..Backlog::new(100)
        })
    };
    let mut a = Autoscaler::new(policy(true), s(0));
    let d = a.tick(&queue(1, 4, lag(4210).with_partitions(12)));
    assert_eq!(
        (d.desired, d.recommendation, d.limited_by),
        (12, Some(12), None)
    );
    assert_eq!(
        d.reason,
        "backlog 4,210: 43 at 100/replica, capped by 12 partitions → 12 replicas"
    );
    let mut a = Autoscaler::new(policy(false), s(0));
    assert_eq!(
        a.tick(&queue(1, 4, lag(4210).with_partitions(12))).desired,
        43
    );

    // One below the partition count with a large lag: the tolerance compares the need
    // (1,000 replicas) with 63, so the last partition gets its consumer (KEDA stays at 63,
    // kedacore#2908).
    let mut a = Autoscaler::new(
        Policy {
            max: 100,
            ..policy(true)
        },
        s(0),
    );
    let d = a.tick(&queue(1, 63, lag(100_000).with_partitions(64)));
    assert_eq!(d.desired, 64);
}

#[test]
fn activation_threshold_wakes_from_zero_and_lets_a_small_backlog_go_to_zero() {
    let policy = Policy {
        scale_to_zero_after: s(30),
        ..worker(Backlog {
            activation: 50,
            ..Backlog::new(10)
        })
    };
    let mut a = Autoscaler::new(policy.clone(), s(0));
    // At zero, 50 messages are not above the threshold: stay.
    let d = a.tick(&queue(1, 0, lag(50)));
    assert_eq!(d.desired, 0);
    assert!(
        d.reason
            .starts_with("idle at zero replicas (backlog 50 at or below activation 50"),
        "{}",
        d.reason
    );
    // 51 are: wake to what they call for (6), within the up rate policy (+4 from 0).
    let d = a.tick(&queue(2, 0, lag(51)));
    assert_eq!(d.desired, 4);
    assert_eq!(
        d.reason,
        "backlog 51 above activation 50 at zero replicas → waking to 4 (the backlog calls \
         for 6; scale-up limited by policy Pods 4 per 1s)"
    );

    // Running, with 40 waiting (at or below 50): the service is idle for KEDA's purposes
    // and goes to zero after `scale_to_zero_after`, messages or not.
    let mut a = Autoscaler::new(policy, s(0));
    let mut current = 2;
    for t in 1..30 {
        let d = a.tick(&queue(t, current, lag(40)));
        assert!(d.desired >= 1, "t={t}: {}", d.reason);
        current = d.desired;
    }
    let d = a.tick(&queue(30, current, lag(40)));
    assert_eq!(d.desired, 0);
    assert_eq!(
        d.reason,
        "idle for 30s (backlog 40 at or below activation 50, and no request received or \
         queued; scale to zero after 30s) → 0 replicas"
    );

    // With min 1 the threshold does not apply: never zero.
    let mut a = Autoscaler::new(
        Policy {
            min: 1,
            ..worker(Backlog::new(10))
        },
        s(0),
    );
    for t in 0..200 {
        assert_eq!(a.tick(&queue(t, 1, lag(0))).desired, 1, "t={t}");
    }
}

#[test]
fn a_worker_scales_to_zero_after_the_cooldown_and_back_on_backlog() {
    let mut a = Autoscaler::new(
        Policy {
            scale_to_zero_after: s(30),
            panic_threshold: Policy::default().panic_threshold,
            ..worker(Backlog::new(100))
        },
        s(0),
    );
    let mut current = 0;
    let mut trace = Vec::new();
    // Idle at zero, then 800 messages at 5 s, consumed from 7 s on (the workers take a
    // second to start) at 100/s per replica.
    let mut backlog: u64 = 0;
    for t in 0..=80 {
        match t {
            5 => backlog = 800,
            6 => {}
            _ => backlog = backlog.saturating_sub(100 * u64::from(current)),
        }
        let d = a.tick(&queue(t, current, lag(backlog)));
        current = d.desired;
        trace.push(current);
    }
    assert!(trace[..5].iter().all(|&n| n == 0), "{trace:?}");
    // Woken at once at 5, to 4 (the up rate policy from zero), then 8 a tick later (in
    // panic mode: the raw 800 calls for 2 × the 4 replicas; the smoothed backlog, about
    // 506, would have asked for 6).
    assert_eq!(&trace[5..7], &[4, 8], "{trace:?}");
    assert_eq!(trace[7], 8, "{trace:?}");
    // The backlog is empty from 7 on: the count comes down (down stabilization 30 s,
    // then -50% per 5 s) and reaches zero 30 s after the last read above the threshold.
    let last_busy = 6;
    assert!(
        trace[7..last_busy + 30].iter().all(|&n| n >= 1),
        "{trace:?}"
    );
    assert_eq!(trace[last_busy + 30], 0, "{trace:?}");
    assert!(trace[last_busy + 30..].iter().all(|&n| n == 0), "{trace:?}");

    // And back: one message wakes it.
    let d = a.tick(&queue(81, 0, lag(1)));
    assert_eq!(d.desired, 1);
    assert!(d.reason.contains("waking to 1"), "{}", d.reason);
}

#[test]
fn failed_reads_hold_the_count_then_fall_back_and_never_go_to_zero() {
    let b = Backlog {
        fallback: Some(Fallback {
            after: 3,
            replicas: 2,
        }),
        ..Backlog::new(100)
    };
    let policy = Policy {
        down_stabilization: Duration::ZERO,
        scale_to_zero_after: s(10),
        ..worker(b)
    };
    let mut a = Autoscaler::new(policy.clone(), s(0));
    assert_eq!(a.tick(&queue(1, 5, lag(500))).desired, 5);
    // Two failures: no data, so no scale-down; the broker's message is in the reason.
    for t in 2..=3 {
        let d = a.tick(&unreadable(t, 5));
        assert_eq!((d.desired, d.limited_by), (5, Some(Limit::MissingMetrics)));
        assert_eq!(d.readings[0].value, None);
    }
    let d = a.tick(&unreadable(3, 5));
    assert_eq!(d.backlog.unwrap().failures, 2, "the same read counts once");
    assert!(
        d.reason
            .starts_with("backlog unknown (2 failed reads in a row: connection refused)"),
        "{}",
        d.reason
    );
    // The third: the fallback count, 2 (reached within the down rate policy: 50% of 5).
    let d = a.tick(&unreadable(4, 5));
    assert_eq!((d.desired, d.recommendation), (2, Some(2)));
    assert!(
        d.reason.starts_with(
            "backlog unknown (3 failed reads in a row: connection refused), fallback → 2 replicas"
        ),
        "{}",
        d.reason
    );
    let status = d.backlog.unwrap();
    assert!(status.fallback);
    assert_eq!(status.error.as_deref(), Some("connection refused"));
    // A long outage never scales a `min: 0` worker to zero.
    for t in 5..100 {
        assert_eq!(a.tick(&unreadable(t, 2)).desired, 2, "t={t}");
    }
    // The first good read ends it (9 wanted, +4 allowed per second).
    let d = a.tick(&queue(100, 2, lag(900)));
    assert_eq!((d.desired, d.limited_by), (6, Some(Limit::UpRatePolicy)));
    assert!(!d.backlog.unwrap().fallback);

    // Without a fallback: the count is held whatever happens, never zero.
    let mut a = Autoscaler::new(
        Policy {
            down_stabilization: Duration::ZERO,
            scale_to_zero_after: s(10),
            ..worker(Backlog::new(100))
        },
        s(0),
    );
    a.tick(&queue(0, 3, lag(0)));
    for t in 1..100 {
        assert_eq!(a.tick(&unreadable(t, 3)).desired, 3, "t={t}");
    }

    // At zero, failing reads wake a worker to the fallback count once it applies.
    let mut a = Autoscaler::new(policy, s(0));
    assert_eq!(a.tick(&queue(0, 0, lag(0))).desired, 0);
    let d = a.tick(&unreadable(1, 0));
    assert_eq!(d.desired, 0);
    assert_eq!(
        d.reason,
        "staying at zero replicas: backlog unknown (1 failed read: connection refused) (only a \
         read above the activation threshold, or the fallback, wakes it)"
    );
    assert_eq!(a.tick(&unreadable(2, 0)).desired, 0);
    let d = a.tick(&unreadable(3, 0));
    assert_eq!(d.desired, 2);
    assert_eq!(
        d.reason,
        "backlog unknown (3 failed reads in a row: connection refused) at zero replicas: \
         fallback, waking to 2"
    );
}

#[test]
fn time_to_drain_uses_the_measured_rate_per_replica() {
    // 4 workers consume 50 messages/s each; 200/s arrive, so the backlog stays at 6,000.
    // 1,000 per replica asks for 6; draining 6,000 within 10 s at 50/s asks for 12.
    let b = Backlog {
        drain_within: Some(s(10)),
        smoothing: Duration::ZERO,
        ..Backlog::new(1000)
    };
    let mut a = Autoscaler::new(
        Policy {
            up_policies: vec![],
            ..worker(b)
        },
        s(0),
    );
    let read = |consumed: u64| lag(6000).with_consumed(consumed);
    // The first read has no rate yet: per_replica alone.
    let d = a.tick(&queue(0, 4, read(10_000)));
    assert_eq!(d.desired, 6);
    assert_eq!(
        d.reason,
        "backlog 6,000: 6 at 1,000/replica, no drain rate measured yet → 6 replicas"
    );
    // One second later: 200 consumed by 4 replicas, 50/s each.
    let d = a.tick(&queue(1, 4, read(10_200)));
    assert_eq!(d.desired, 12);
    assert_eq!(
        d.reason,
        "backlog 6,000: 6 at 1,000/replica, 12 to drain within 10s at 50/s per replica → \
         12 replicas"
    );
    assert_eq!(d.backlog.unwrap().rate_per_replica, Some(50.0));

    // Run it: 12 workers at 50/s drain 400/s net; the proposal follows the backlog down
    // and the rate stays 50 (the 4 that were ready at 1 consumed until 2; the 8 started at
    // 1 became ready just as the read at 2 was taken, so they count from then on).
    let (mut current, mut ready, mut backlog, mut consumed) = (12u32, 4u64, 6000u64, 10_200);
    for t in 2..=10 {
        consumed += 50 * ready;
        backlog = backlog + 200 - 50 * ready;
        let mut sample = queue(t, current, lag(backlog).with_consumed(consumed));
        for r in sample.replicas.iter_mut().skip(ready as usize) {
            r.ready_for = Duration::ZERO;
        }
        let d = a.tick(&sample);
        assert_eq!(
            d.backlog.as_ref().unwrap().rate_per_replica,
            Some(50.0),
            "t={t}"
        );
        current = d.desired;
        ready = u64::from(current);
    }
    // 6,000 − 400 × 8 = 2,800 at 10 → ceil(2,800 / 500) = 6 wanted, held by the down
    // stabilization meanwhile.
    assert_eq!(backlog, 2800);
    assert_eq!(current, 12);
}

#[test]
fn a_noisy_backlog_keeps_the_count() {
    // A lag of 1,000, then jumping ±20% around it at every read; 100 per replica: 10
    // replicas.
    let trace = |smoothing: Duration| {
        let mut a = Autoscaler::new(
            worker(Backlog {
                smoothing,
                ..Backlog::new(100)
            }),
            s(0),
        );
        let mut current = 10;
        let mut counts = Vec::new();
        for t in 0..300 {
            let noisy = match t {
                0 => 1000,
                _ if t % 2 == 1 => 1200,
                _ => 800,
            };
            current = a.tick(&queue(t, current, lag(noisy))).desired;
            counts.push(current);
        }
        counts
    };
    let smoothed = trace(Backlog::new(1).smoothing);
    assert!(smoothed.iter().all(|&n| n == 10), "{smoothed:?}");
    // Without smoothing the first peak alone adds 2 replicas, which the down
    // stabilization then keeps: not a flap, but not the steady count either.
    let raw = trace(Duration::ZERO);
    assert_eq!(raw[0], 10, "{raw:?}");
    assert!(raw[1..].iter().all(|&n| n == 12), "{raw:?}");

    // Time-to-drain on a noisy counter and a noisy lag: consumption alternates 600/400
    // per second for 10 replicas (50/s each on average), lag 5,000, then ± 20%; draining
    // within 10 s asks for 10 and keeps asking for it.
    let mut a = Autoscaler::new(
        worker(Backlog {
            drain_within: Some(s(10)),
            ..Backlog::new(10_000)
        }),
        s(0),
    );
    let (mut current, mut consumed) = (10, 0u64);
    for t in 0..300 {
        consumed += if t % 2 == 1 { 600 } else { 400 };
        let noisy = match t {
            0 => 5000,
            _ if t % 2 == 1 => 6000,
            _ => 4000,
        };
        let d = a.tick(&queue(t, current, lag(noisy).with_consumed(consumed)));
        current = d.desired;
        assert_eq!(current, 10, "t={t}: {}", d.reason);
    }
}

#[test]
fn a_burst_jumps_at_once_despite_the_smoothing() {
    // Panic mode sees the raw backlog: 2,000 messages on 2 replicas (20 wanted ≥ 2 × 2).
    let mut a = Autoscaler::new(
        Policy {
            panic_threshold: 2.0,
            ..worker(Backlog::new(100))
        },
        s(0),
    );
    for t in 0..5 {
        assert_eq!(a.tick(&queue(t, 2, lag(200))).desired, 2);
    }
    let d = a.tick(&queue(5, 2, lag(2000)));
    assert!(d.panic, "{}", d.reason);
    assert_eq!(d.desired, 20);
    // The smoothed backlog (about 526) alone would have asked for 6.
    assert_eq!(d.recommendation, Some(6));
}

#[test]
fn backlog_combines_with_other_targets_and_no_read_yet_holds() {
    let policy = calm(Policy {
        targets: vec![
            Target::Concurrency(10.0),
            Target::Backlog(Backlog::new(100)),
        ],
        ..Policy::default()
    });
    let mut a = Autoscaler::new(policy, s(0));
    // No read yet: the backlog has no data, which forbids scaling down.
    let mut sample = load(1, 4, 8.0);
    let d = a.tick(&sample);
    assert_eq!((d.desired, d.limited_by), (4, Some(Limit::MissingMetrics)));
    assert_eq!(
        d.reason,
        "concurrency 2/10 per replica → 1, backlog unknown (not read yet): largest 1 \
         replicas; 1 missing readings: scale-down forbidden, holding at 4"
    );
    // The larger proposal wins: the queue's 7 over the requests' 1.
    sample.now = s(2);
    sample.backlog = Some(BacklogRead::ok(s(2), lag(650)));
    let d = a.tick(&sample);
    assert_eq!(d.desired, 7);
    assert_eq!(
        d.reason,
        "concurrency 2/10 per replica → 1, backlog 650 over 100/replica → 7: largest 7 replicas"
    );
    assert_eq!(d.targets_column(), "2/10, 162.5/100");
}

/// A queue that workers consume at `RATE` messages a second each, one second at a time:
/// the second's arrivals join it, the broker is read (catching the messages about to be
/// taken), then the ready workers consume what they can.
struct Fluid {
    backlog: u64,
    consumed: u64,
}

impl Fluid {
    const RATE: u64 = 50;

    fn second(&mut self, arrivals: u64, ready: u32) -> BacklogSample {
        self.backlog += arrivals;
        let read = lag(self.backlog).with_consumed(self.consumed);
        let taken = self.backlog.min(u64::from(ready) * Fluid::RATE);
        self.backlog -= taken;
        self.consumed += taken;
        read
    }
}

/// 4 workers, a backlog of 1,000 at 250 per replica (their share) draining at 150 msg/s
/// for 20 s, then exactly their capacity, 200 msg/s, until `until`: ticks of `a` from 0,
/// the count applied at once (workers start instantly). Returns the decisions.
fn at_capacity(a: &mut Autoscaler, until: u64) -> Vec<crate::Decision> {
    let mut queue_ = Fluid {
        backlog: 850,
        consumed: 0,
    };
    let mut current = 4;
    let mut decisions = Vec::new();
    for t in 0..until {
        let arrivals = if t < 20 { 150 } else { 200 };
        let read = queue_.second(arrivals, current);
        let d = a.tick(&queue(t, current, read));
        current = d.desired;
        decisions.push(d);
    }
    decisions
}

#[test]
fn a_steady_flow_at_exactly_n_replicas_capacity_keeps_n() {
    // Once the backlog is gone, reads see the second's 200 messages and `per_replica`
    // alone calls for 1 (and, short of it, the count would cycle as the backlog rebuilds);
    // the arrivals at the rate measured while the queue was deep keep the 4 that keep up.
    let mut a = Autoscaler::new(
        Policy {
            min: 1,
            panic_threshold: Policy::default().panic_threshold,
            ..worker(Backlog::new(250))
        },
        s(0),
    );
    let decisions = at_capacity(&mut a, 600);
    for (t, d) in decisions.iter().enumerate() {
        assert_eq!(d.desired, 4, "t={t}: {}", d.reason);
    }
    let last = decisions.last().unwrap();
    assert_eq!(
        last.reason,
        "backlog 200: 1 at 250/replica, 4 to keep up with 200/s arriving at 50/s per replica \
         → 4 replicas"
    );
    let status = last.backlog.as_ref().unwrap();
    assert_eq!(status.arrival_rate, Some(200.0));
    // Measured while the backlog was deep; the idle moments of the drain's end (150 msg/s
    // for 4 workers) did not lower it.
    assert_eq!(status.rate_per_replica, Some(50.0));
}

#[test]
fn the_keep_up_floor_goes_to_zero_when_the_flow_stops() {
    for min in [0, 1] {
        let mut a = Autoscaler::new(
            Policy {
                min,
                ..worker(Backlog::new(250))
            },
            s(0),
        );
        let decisions = at_capacity(&mut a, 300);
        assert_eq!(decisions.last().unwrap().desired, 4);
        // Nothing arrives from 300 on (and nothing waits: the workers took the last
        // second's messages).
        let mut current = 4;
        for t in 300..400 {
            let d = a.tick(&queue(t, current, lag(0).with_consumed(59_000)));
            let arrivals = d.backlog.as_ref().unwrap().arrival_rate;
            if t >= 310 {
                assert_eq!(arrivals, Some(0.0), "t={t}");
            }
            current = d.desired;
            match (min, t) {
                // Held by the down stabilization for 30 s, then down to `min`...
                (_, ..330) => assert_eq!(current, 4, "t={t}: {}", d.reason),
                (1, 345..) => assert_eq!(current, 1, "t={t}: {}", d.reason),
                // ...and to zero once idle for `scale_to_zero_after` (60 s).
                (0, 330..359) => assert!(current >= 1, "t={t}: {}", d.reason),
                (0, 359..) => assert_eq!(current, 0, "t={t}: {}", d.reason),
                _ => {}
            }
        }
    }
}

#[test]
fn the_keep_up_floor_neither_wakes_nor_holds_a_worker_below_activation() {
    // 40 msg/s, taken at once by 1 worker: reads of 40, at or below the activation
    // threshold of 50. The floor asks for 1 replica while the service runs, but the service
    // is idle for KEDA's purposes and goes to zero after `scale_to_zero_after`; at zero,
    // only a read above 50 wakes it.
    let mut a = Autoscaler::new(
        Policy {
            scale_to_zero_after: s(30),
            ..worker(Backlog {
                activation: 50,
                ..Backlog::new(100)
            })
        },
        s(0),
    );
    // A backlog of 1,000 first, which measures the rate, gone by 3.
    let mut queue_ = Fluid {
        backlog: 1000,
        consumed: 0,
    };
    let mut current = 2;
    let mut decisions = Vec::new();
    for t in 0..=35 {
        let arrivals = if t < 10 { 0 } else { 40 };
        let read = queue_.second(arrivals, current);
        let d = a.tick(&queue(t, current, read));
        current = d.desired;
        decisions.push(d);
    }
    // The last read above 50 was at 3 (100 waiting): zero 30 s later, with 40/s arriving.
    let d = &decisions[33];
    assert_eq!(d.desired, 0, "{}", d.reason);
    let status = d.backlog.as_ref().unwrap();
    assert_eq!(status.rate_per_replica, Some(50.0));
    let arrivals = status.arrival_rate.unwrap();
    assert!((39.0..=41.0).contains(&arrivals), "{arrivals}");
    assert_eq!(
        d.reason,
        "idle for 30s (backlog 40 at or below activation 50, and no request received or \
         queued; scale to zero after 30s) → 0 replicas"
    );
    // At zero, 40 arriving and 40 waiting: no wake; 80 waiting: a wake, to the count the
    // floor also asks for.
    assert_eq!(decisions[34].desired, 0, "{}", decisions[34].reason);
    assert_eq!(
        decisions[35].reason,
        "backlog 80 above activation 50 at zero replicas → waking to 1"
    );
}

#[test]
fn replicas_that_just_started_count_from_when_they_became_ready() {
    // Local workers are ready within milliseconds: after 1 → 4 at 5 s, four consume at 50/s
    // each from about 5 s on. Counting only the one that was there for the interval (the
    // fewer of the two reads' counts) measured 200/s per replica here.
    let mut a = Autoscaler::new(worker(Backlog::new(10)), s(0));
    let mut consumed = 0;
    for t in 0..=5 {
        consumed += if t == 0 { 0 } else { 50 };
        a.tick(&queue(t, 1, lag(5000).with_consumed(consumed)));
    }
    for t in 6..=8 {
        consumed += 200;
        let mut sample = queue(t, 4, lag(5000).with_consumed(consumed));
        for r in sample.replicas.iter_mut().skip(1) {
            r.ready_for = s(t - 5);
        }
        let d = a.tick(&sample);
        let rate = d.backlog.unwrap().rate_per_replica.unwrap();
        assert!((rate - 50.0).abs() < 0.01, "t={t}: {rate}/s per replica");
    }
}
