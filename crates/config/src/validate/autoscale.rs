//! Raw → validated for `autoscale:` of a service: replica bounds, metric targets (CPU,
//! requests, latency, a queue's backlog through a broker), stabilization windows, rate
//! policies (with presets) and panic mode; every bound named here so that a typo cannot turn
//! scaling into a runaway (`docs/autoscaling.md`).
use std::path::Path;
use std::time::Duration;

use shoal_autoscale::{RatePolicy, Target};

use super::Cx;
use super::units::resolve;
use crate::duration::format_duration;
use crate::error::did_you_mean;
use crate::model::*;
use crate::raw::*;

impl Cx<'_> {
    /// `autoscale:` of a command service, and the queue of its backlog target if it has
    /// one. None if anything in it is invalid (each problem is reported).
    pub(super) fn autoscale(
        &mut self,
        path: &str,
        raw: RawAutoscale,
        worker: bool,
        base: &Path,
    ) -> Option<(Autoscale, Option<BacklogTrigger>)> {
        let before = self.diags.len();
        const PRESETS: [&str; 3] = ["shoal", "hpa", "kpa"];
        let preset = match raw.preset.as_deref().map(str::trim) {
            None => Preset::Shoal,
            Some(name) => match Preset::ALL.into_iter().find(|p| p.name() == name) {
                Some(p) => p,
                None => {
                    self.error_hint(
                        &format!("{path}.preset"),
                        format!("unknown preset `{name}`; expected `shoal`, `hpa` or `kpa`"),
                        did_you_mean(name, PRESETS),
                    );
                    Preset::Shoal
                }
            },
        };
        // The behaviour starts from the preset; the fields given replace its values.
        let mut policy = preset.policy();

        policy.min = raw.min.unwrap_or(1);
        match raw.max {
            None => self.misplaced(path, "needs `max`, the most replicas (1 to 1000)"),
            Some(0) => self.error(&format!("{path}.max"), "must be at least 1"),
            Some(max) if max > MAX_REPLICAS => self.error(
                &format!("{path}.max"),
                format!("at most {MAX_REPLICAS} replicas"),
            ),
            Some(max) if max < policy.min => self.error(
                &format!("{path}.max"),
                format!("must not be below `min` ({}), got {max}", policy.min),
            ),
            Some(max) => policy.max = max,
        }

        // Targets, in the documented order.
        let cpu_request = match raw.cpu_request {
            None => 1.0,
            Some(c) => self.cores(&format!("{path}.cpu_request"), c).unwrap_or(1.0),
        };
        let any_target = raw.cpu.is_some()
            || raw.memory.is_some()
            || raw.concurrency.is_some()
            || raw.rps.is_some()
            || raw.latency_p95.is_some()
            || raw.backlog.is_some();
        if worker {
            for (field, present) in [
                ("concurrency", raw.concurrency.is_some()),
                ("rps", raw.rps.is_some()),
                ("latency_p95", raw.latency_p95.is_some()),
            ] {
                if present {
                    self.misplaced(
                        &format!("{path}.{field}"),
                        "a worker (`kind: worker`) serves no requests: scale it on `backlog`, \
                         `cpu` or `memory`",
                    );
                }
            }
            if raw.hold.is_some() {
                self.misplaced(
                    &format!("{path}.hold"),
                    "`hold` keeps requests while a service wakes from zero, and a worker \
                     (`kind: worker`) gets none",
                );
            }
            if policy.min == 0 && raw.backlog.is_none() {
                self.error_hint(
                    &format!("{path}.min"),
                    "a worker at zero replicas can only be woken by its queue: `min: 0` needs \
                     `backlog`",
                    Some("add `backlog:`, or keep at least one replica with `min: 1`".into()),
                );
            }
        }
        let mut targets = Vec::new();
        if let Some(cpu) = raw.cpu
            && let Some(v) = self.fraction(
                &format!("{path}.cpu"),
                cpu,
                |v| v > 0.0 && v <= MAX_CPU_TARGET,
                "must be above 0% and at most 1000% (of `cpu_request`)",
            )
        {
            targets.push(Target::Cpu(v));
        }
        if let Some(memory) = raw.memory {
            let field = format!("{path}.memory");
            match self.size(&field, memory) {
                Some(0) => self.error(&field, "must be above 0 bytes"),
                Some(bytes) => targets.push(Target::Memory(bytes)),
                None => {}
            }
        }
        if let Some(c) = raw.concurrency
            && let Some(v) = self.positive_number(&format!("{path}.concurrency"), c, "10")
        {
            targets.push(Target::Concurrency(v));
        }
        if let Some(r) = raw.rps
            && let Some(v) = self.positive_number(&format!("{path}.rps"), r, "100")
        {
            targets.push(Target::Rps(v));
        }
        if let Some(l) = &raw.latency_p95 {
            let field = format!("{path}.latency_p95");
            let before = self.diags.len();
            let d = self.nonzero(&field, Some(l), Duration::ZERO);
            if self.diags.len() == before {
                targets.push(Target::LatencyP95(d));
            }
        }
        let mut trigger = None;
        if let Some(b) = raw.backlog
            && let Some((target, queue)) =
                self.backlog(&format!("{path}.backlog"), b, policy.max, base)
        {
            targets.push(Target::Backlog(target));
            trigger = Some(queue);
        }
        if !any_target {
            self.misplaced(
                path,
                "needs at least one target: `cpu`, `memory`, `concurrency`, `rps`, `latency_p95` \
                 or `backlog`",
            );
        }
        policy.targets = targets;

        // Behaviour.
        let tolerance_range = "must be at least 0 and below 1 (100%)";
        let in_tolerance = |v: f64| (0.0..1.0).contains(&v);
        match raw.tolerance {
            None => {}
            Some(NumberOr::Number(t)) => {
                if let Some(t) = self.fraction(
                    &format!("{path}.tolerance"),
                    t,
                    in_tolerance,
                    tolerance_range,
                ) {
                    policy.tolerance_up = t;
                    policy.tolerance_down = t;
                }
            }
            Some(NumberOr::Map(t)) => {
                if let Some(up) = t.up {
                    policy.tolerance_up = self
                        .fraction(
                            &format!("{path}.tolerance.up"),
                            up,
                            in_tolerance,
                            tolerance_range,
                        )
                        .unwrap_or(policy.tolerance_up);
                }
                if let Some(down) = t.down {
                    policy.tolerance_down = self
                        .fraction(
                            &format!("{path}.tolerance.down"),
                            down,
                            in_tolerance,
                            tolerance_range,
                        )
                        .unwrap_or(policy.tolerance_down);
                }
            }
        }
        if let Some(up) = raw.scale_up {
            self.scaling(
                &format!("{path}.scale_up"),
                up,
                &mut policy.up_stabilization,
                &mut policy.up_policies,
            );
        }
        if let Some(down) = raw.scale_down {
            self.scaling(
                &format!("{path}.scale_down"),
                down,
                &mut policy.down_stabilization,
                &mut policy.down_policies,
            );
        }
        match raw.panic {
            None => {}
            Some(BoolOr::Bool(false)) => policy.panic_threshold = f64::INFINITY,
            Some(on) => {
                if !policy.panic_threshold.is_finite() {
                    policy.panic_threshold = shoal_autoscale::Policy::default().panic_threshold;
                }
                if let BoolOr::Map(panic) = on {
                    if let Some(t) = panic.threshold {
                        policy.panic_threshold = self
                            .fraction(
                                &format!("{path}.panic.threshold"),
                                t,
                                |v| v > 1.0 && v <= MAX_PANIC_THRESHOLD,
                                "must be above 100% and at most 1000% (of the current replicas)",
                            )
                            .unwrap_or(policy.panic_threshold);
                    }
                    policy.panic_window = self.nonzero(
                        &format!("{path}.panic.window"),
                        panic.window.as_ref(),
                        policy.panic_window,
                    );
                    policy.panic_hold = self.duration(
                        &format!("{path}.panic.hold"),
                        panic.hold.as_ref(),
                        policy.panic_hold,
                    );
                }
            }
        }
        policy.scale_to_zero_after = self.nonzero(
            &format!("{path}.scale_to_zero_after"),
            raw.scale_to_zero_after.as_ref(),
            policy.scale_to_zero_after,
        );
        policy.warm_up = self.duration(
            &format!("{path}.warm_up"),
            raw.warm_up.as_ref(),
            policy.warm_up,
        );
        let tick_field = format!("{path}.tick");
        let tick = self.nonzero(&tick_field, raw.tick.as_ref(), preset.tick());
        if tick > MAX_TICK {
            self.error(
                &tick_field,
                format!("must be at most {}", format_duration(MAX_TICK)),
            );
        }
        let d = Hold::default();
        let hold = match raw.hold {
            None => d,
            Some(h) => Hold {
                queue: self.positive(&format!("{path}.hold.queue"), h.queue, d.queue),
                timeout: self.nonzero(
                    &format!("{path}.hold.timeout"),
                    h.timeout.as_ref(),
                    d.timeout,
                ),
            },
        };
        if self.diags.len() > before {
            return None;
        }
        // The engine's own check. Everything it checks is checked above with a more precise
        // message, so this only guards against the two drifting apart. `panic: false` is an
        // infinite threshold, which the engine handles but its check refuses.
        let mut check = policy.clone();
        if check.panic_threshold == f64::INFINITY {
            check.panic_threshold = shoal_autoscale::Policy::default().panic_threshold;
        }
        if let Err(e) = check.validate() {
            self.error(&policy_field(path, &e.field, &policy.targets), e.reason);
            return None;
        }
        Some((
            Autoscale {
                policy,
                cpu_request,
                tick,
                hold,
                preset,
            },
            trigger,
        ))
    }

    /// `autoscale.backlog:` the broker and queue (for the wiring), and the target (for the
    /// engine). None if anything in it is invalid (each problem is reported).
    fn backlog(
        &mut self,
        path: &str,
        raw: RawBacklog,
        max: u32,
        base: &Path,
    ) -> Option<(shoal_autoscale::Backlog, BacklogTrigger)> {
        let before = self.diags.len();
        let given: Vec<&str> = [
            ("redis", raw.redis.is_some()),
            ("rabbitmq", raw.rabbitmq.is_some()),
            ("kafka", raw.kafka.is_some()),
        ]
        .into_iter()
        .filter_map(|(name, given)| given.then_some(name))
        .collect();
        if given.len() > 1 {
            self.misplaced(
                &format!("{path}.{}", given[1]),
                format!(
                    "a backlog reads one queue: give one of `redis`, `rabbitmq` or `kafka` \
                     (`{}` is given too)",
                    given[0]
                ),
            );
        }
        let password_given = raw.password_env.is_some() || raw.password_file.is_some();
        let (source, idle_consumers) = if let Some(r) = raw.redis {
            let field = format!("{path}.redis");
            self.broker_url(&format!("{field}.url"), &r.url, &["redis"], &["rediss"]);
            self.nonempty(&format!("{field}.stream"), &r.stream, "stream");
            self.nonempty(&format!("{field}.group"), &r.group, "consumer group");
            let source = BacklogSource::Redis {
                url: r.url.trim().to_owned(),
                stream: r.stream,
                group: r.group,
            };
            (source, false)
        } else if let Some(r) = raw.rabbitmq {
            let field = format!("{path}.rabbitmq");
            let scheme = self.broker_url(
                &format!("{field}.url"),
                &r.url,
                &["amqp", "http"],
                &["amqps", "https"],
            );
            self.nonempty(&format!("{field}.queue"), &r.queue, "queue");
            let include_unacked = r.include_unacked.unwrap_or(false);
            if include_unacked && scheme.as_deref() == Some("amqp") {
                self.error_hint(
                    &format!("{field}.include_unacked"),
                    "AMQP does not count unacknowledged messages: `include_unacked` needs the \
                     management API",
                    Some("give its URL instead, e.g. `http://guest@127.0.0.1:15672/%2f`".into()),
                );
            }
            let source = BacklogSource::RabbitMq {
                url: r.url.trim().to_owned(),
                queue: r.queue,
                include_unacked,
            };
            (source, false)
        } else if let Some(k) = raw.kafka {
            let field = format!("{path}.kafka");
            if k.brokers.0.is_empty() {
                self.error(
                    &format!("{field}.brokers"),
                    "needs at least one broker, `host:port`",
                );
            }
            let list = k.brokers.0.len() > 1;
            for (i, b) in k.brokers.0.iter().enumerate() {
                let f = if list {
                    format!("{field}.brokers[{i}]")
                } else {
                    format!("{field}.brokers")
                };
                if let Err(e) = broker_address(b) {
                    self.error(&f, e);
                }
            }
            self.nonempty(&format!("{field}.topic"), &k.topic, "topic");
            self.nonempty(&format!("{field}.group"), &k.group, "consumer group");
            if password_given {
                let f = if raw.password_env.is_some() {
                    "password_env"
                } else {
                    "password_file"
                };
                self.misplaced(
                    &format!("{path}.{f}"),
                    "the Kafka reader does not authenticate yet (no SASL): leave the password out",
                );
            }
            let source = BacklogSource::Kafka {
                brokers: k.brokers.0.iter().map(|b| b.trim().to_owned()).collect(),
                topic: k.topic,
                group: k.group,
            };
            (source, k.allow_idle_consumers.unwrap_or(false))
        } else {
            self.misplaced(
                path,
                "needs the queue to read: `redis: { url, stream, group }`, \
                 `rabbitmq: { url, queue }` or `kafka: { brokers, topic, group }`",
            );
            return None;
        };
        let password = match (raw.password_env, raw.password_file) {
            (Some(_), Some(_)) => {
                self.misplaced(
                    &format!("{path}.password_file"),
                    "give the password in `password_env` or in `password_file`, not both",
                );
                None
            }
            (Some(var), None) => {
                if var.is_empty() || var.contains('=') || var.contains('\0') {
                    self.error(
                        &format!("{path}.password_env"),
                        format!("`{var}` is not a valid variable name"),
                    );
                }
                Some(SecretSource::Env(var))
            }
            (None, Some(file)) => {
                if file.trim().is_empty() {
                    self.error(&format!("{path}.password_file"), "give a file");
                }
                Some(SecretSource::File(resolve(base, file.trim())))
            }
            (None, None) => None,
        };
        let per_replica = match raw.per_replica {
            None => match source {
                // KEDA's defaults: `lagCount`/`pendingEntriesCount` 5, `queueLength` 20,
                // `lagThreshold` 10.
                BacklogSource::Redis { .. } => 5,
                BacklogSource::RabbitMq { .. } => 20,
                BacklogSource::Kafka { .. } => 10,
            },
            Some(0) => {
                self.error(
                    &format!("{path}.per_replica"),
                    "must be at least 1 (messages waiting per replica)",
                );
                1
            }
            Some(n) => n,
        };
        let defaults = shoal_autoscale::Backlog::new(per_replica);
        let drain_within = raw.drain_within.as_ref().map(|d| {
            self.nonzero(
                &format!("{path}.drain_within"),
                Some(d),
                Duration::from_secs(1),
            )
        });
        let poll = self.nonzero(&format!("{path}.poll"), raw.poll.as_ref(), DEFAULT_POLL);
        if poll > MAX_POLL {
            self.error(
                &format!("{path}.poll"),
                format!("must be at most {}", format_duration(MAX_POLL)),
            );
        }
        let smoothing = self.duration(
            &format!("{path}.smoothing"),
            raw.smoothing.as_ref(),
            defaults.smoothing,
        );
        let fallback = raw.fallback.map(|f| {
            let field = format!("{path}.fallback");
            let after = match f.after {
                None => DEFAULT_FALLBACK_AFTER,
                Some(0) => {
                    self.error(&format!("{field}.after"), "must be at least 1 failed read");
                    DEFAULT_FALLBACK_AFTER
                }
                Some(n) => n,
            };
            if f.replicas == 0 {
                self.error_hint(
                    &format!("{field}.replicas"),
                    "must be at least 1: a broker that cannot be read never scales a service to zero",
                    Some("leave `fallback` out to keep the current count while reads fail".into()),
                );
            } else if f.replicas > max {
                self.error(
                    &format!("{field}.replicas"),
                    format!("must not be above `max` ({max}), got {}", f.replicas),
                );
            }
            shoal_autoscale::Fallback {
                after,
                replicas: f.replicas,
            }
        });
        if self.diags.len() > before {
            return None;
        }
        let target = shoal_autoscale::Backlog {
            per_replica,
            activation: raw.activation.unwrap_or(defaults.activation),
            drain_within,
            smoothing,
            cap_at_partitions: !idle_consumers,
            fallback,
        };
        Some((
            target,
            BacklogTrigger {
                source,
                password,
                poll,
            },
        ))
    }

    /// A broker URL: `scheme://[user@]host[:port][/path]` with one of `schemes`; never a
    /// password (and never echoed, since it could hold one). Returns the scheme if valid.
    fn broker_url(
        &mut self,
        field: &str,
        url: &str,
        schemes: &[&str],
        unsupported: &[&str],
    ) -> Option<String> {
        let url = url.trim();
        let expected = schemes
            .iter()
            .map(|s| format!("`{s}://`"))
            .collect::<Vec<_>>()
            .join(" or ");
        let Some((scheme, rest)) = url.split_once("://") else {
            self.error(
                field,
                format!(
                    "expected a URL starting with {expected}, e.g. `{}://127.0.0.1`",
                    schemes[0]
                ),
            );
            return None;
        };
        let scheme = scheme.to_ascii_lowercase();
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        let (userinfo, host) = match authority.rsplit_once('@') {
            Some((user, host)) => (Some(user), host),
            None => (None, authority),
        };
        if userinfo.is_some_and(|u| u.contains(':')) {
            self.error_hint(
                field,
                "the URL has a password in it; a password never goes in the stack file",
                Some(
                    "keep the user name in the URL and give the password in `password_env` (a \
                     variable's name) or `password_file` (a file)"
                        .into(),
                ),
            );
            return None;
        }
        if unsupported.contains(&scheme.as_str()) {
            self.error(
                field,
                format!("`{scheme}://` (TLS) is not supported yet; use {expected}"),
            );
            return None;
        }
        if !schemes.contains(&scheme.as_str()) {
            self.error(
                field,
                format!("`{scheme}://` is not a scheme for this broker; use {expected}"),
            );
            return None;
        }
        if host.is_empty() || host.starts_with(':') {
            self.error(field, "the URL has no host");
            return None;
        }
        Some(scheme)
    }

    /// `scale_up:` or `scale_down:`: the stabilization window and the rate policies.
    fn scaling(
        &mut self,
        path: &str,
        raw: RawScaling,
        stabilization: &mut Duration,
        policies: &mut Vec<RatePolicy>,
    ) {
        *stabilization = self.duration(
            &format!("{path}.stabilization"),
            raw.stabilization.as_ref(),
            *stabilization,
        );
        let Some(list) = raw.policies else { return };
        policies.clear();
        for (i, p) in list.into_iter().enumerate() {
            let field = format!("{path}.policies[{i}]");
            let value = match (p.pods, p.percent) {
                (Some(_), Some(_)) => {
                    self.misplaced(
                        &format!("{field}.percent"),
                        "a policy has either `pods` or `percent`, not both",
                    );
                    None
                }
                (None, None) => {
                    self.error(
                        &field,
                        "a policy needs `pods: N` (replicas) or `percent: N` (of the current count), and `period`",
                    );
                    None
                }
                (Some(0), None) => {
                    self.error(&format!("{field}.pods"), "must be at least 1");
                    None
                }
                (Some(pods), None) => Some((true, pods)),
                (None, Some(percent)) => self
                    .whole_percent(&format!("{field}.percent"), percent)
                    .map(|v| (false, v)),
            };
            let period = match &p.period {
                None => {
                    if value.is_some() {
                        self.error(&field, "a policy needs `period`, e.g. `period: 15s`");
                    }
                    None
                }
                Some(text) => {
                    let before = self.diags.len();
                    let d = self.nonzero(&format!("{field}.period"), Some(text), Duration::ZERO);
                    (self.diags.len() == before).then_some(d)
                }
            };
            if let (Some((pods, value)), Some(period)) = (value, period) {
                policies.push(if pods {
                    RatePolicy::Pods { value, period }
                } else {
                    RatePolicy::Percent { value, period }
                });
            }
        }
    }
}

/// Most replicas of a service (`replicas`, `autoscale.max`).
const MAX_REPLICAS: u32 = 1000;

/// Highest `autoscale.cpu` target: 1000% of `cpu_request`.
const MAX_CPU_TARGET: f64 = 10.0;

/// Highest `autoscale.panic.threshold`: 1000% (Knative's upper bound too).
const MAX_PANIC_THRESHOLD: f64 = 10.0;

/// Longest `autoscale.tick`.
const MAX_TICK: Duration = Duration::from_secs(60);

/// Default `autoscale.backlog.poll` (KEDA: 30 s).
const DEFAULT_POLL: Duration = Duration::from_secs(1);

/// Longest `autoscale.backlog.poll`.
const MAX_POLL: Duration = Duration::from_secs(300);

/// Default `autoscale.backlog.fallback.after` (KEDA's `failureThreshold`).
const DEFAULT_FALLBACK_AFTER: u32 = 3;

/// A Kafka bootstrap broker: `host:port`, no scheme.
fn broker_address(text: &str) -> Result<(), String> {
    let t = text.trim();
    if t.contains("://") {
        return Err(format!("`{t}`: a broker is `host:port`, without a scheme"));
    }
    match t.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0) => {
            Ok(())
        }
        _ => Err(format!(
            "`{t}` is not a broker address; expected `host:port`, e.g. `127.0.0.1:9092`"
        )),
    }
}

/// The stack-file path of a [`shoal_autoscale::Policy`] field named by
/// [`shoal_autoscale::InvalidPolicy`], under the `autoscale` section at `path`; the section
/// itself when there is no closer field.
fn policy_field(path: &str, field: &str, targets: &[Target]) -> String {
    let indexed = |prefix: &str| -> Option<usize> {
        field
            .strip_prefix(prefix)?
            .strip_prefix('[')?
            .strip_suffix(']')?
            .parse()
            .ok()
    };
    if let Some(i) = indexed("targets") {
        return match targets.get(i) {
            Some(t) => format!("{path}.{}", t.name()),
            None => path.to_owned(),
        };
    }
    if let Some(i) = indexed("up_policies") {
        return format!("{path}.scale_up.policies[{i}]");
    }
    if let Some(i) = indexed("down_policies") {
        return format!("{path}.scale_down.policies[{i}]");
    }
    match field {
        "min" | "max" => format!("{path}.{field}"),
        "tolerance_up" => format!("{path}.tolerance.up"),
        "tolerance_down" => format!("{path}.tolerance.down"),
        "up_stabilization" => format!("{path}.scale_up.stabilization"),
        "down_stabilization" => format!("{path}.scale_down.stabilization"),
        "panic_threshold" => format!("{path}.panic.threshold"),
        "panic_window" => format!("{path}.panic.window"),
        "panic_hold" => format!("{path}.panic.hold"),
        "scale_to_zero_after" | "warm_up" => format!("{path}.{field}"),
        _ => path.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_fields_map_to_stack_file_paths() {
        let p = "services.api.autoscale";
        let targets = [Target::Rps(1.0), Target::LatencyP95(Duration::from_secs(1))];
        for (field, path) in [
            ("max", "services.api.autoscale.max"),
            ("min", "services.api.autoscale.min"),
            ("targets", "services.api.autoscale"),
            ("targets[1]", "services.api.autoscale.latency_p95"),
            ("targets[7]", "services.api.autoscale"),
            ("tolerance_down", "services.api.autoscale.tolerance.down"),
            (
                "up_policies[2]",
                "services.api.autoscale.scale_up.policies[2]",
            ),
            (
                "down_policies[0]",
                "services.api.autoscale.scale_down.policies[0]",
            ),
            ("panic_threshold", "services.api.autoscale.panic.threshold"),
            ("something_new", "services.api.autoscale"),
        ] {
            assert_eq!(policy_field(p, field, &targets), path, "{field}");
        }
    }

    #[test]
    fn every_preset_is_a_valid_policy() {
        for preset in Preset::ALL {
            let mut policy = preset.policy();
            if policy.panic_threshold == f64::INFINITY {
                policy.panic_threshold = 2.0;
            }
            assert_eq!(policy.validate(), Ok(()), "{preset:?}");
            assert!(preset.tick() <= MAX_TICK);
        }
    }
}
