//! The result of a run: one [`Report`] (serde), printed as a summary table, as JSON
//! (`--json`) or as an HTML page (`--report`, see [`crate::html`]). The three are views of
//! the same struct, so they cannot disagree.
use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::time::Duration;

use serde::Serialize;

use crate::admin::ScaleSample;
use crate::client::ErrorKind;
use crate::cpu;
use crate::plan::{HttpVersion, Model, Plan};
use crate::record::{Percentiles, Recorder};

/// Generator send lag (p99, ms) above which the open model's schedule is not being kept.
const LAG_LIMIT_MS: f64 = 10.0;

/// Everything a run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// What was asked for.
    pub plan: PlanSummary,
    /// Stopped early by Ctrl-C: a partial result.
    pub interrupted: bool,
    /// Seconds from the first due request to the last answer.
    pub elapsed_secs: f64,
    /// Request counts.
    pub requests: Counts,
    /// Rates over the whole run.
    pub throughput: Throughput,
    /// Latency of answered requests, in ms. Open model: corrected for coordinated
    /// omission — a request that waited for a busy connection counts from its due time, one
    /// the generator was free to send counts from its send (its timer lag is reported in
    /// `generator.send_lag`); closed model: from the send.
    pub latency: Percentiles,
    /// Open model only: latency from the actual send, as a closed-loop tool would report it.
    pub latency_uncorrected: Option<Percentiles>,
    /// Responses by status code.
    pub status_codes: BTreeMap<String, u64>,
    /// Requests without a response, by kind (refused, reset, closed, timeout, tls, …).
    pub errors: BTreeMap<String, u64>,
    /// Requests per URL.
    pub urls: Vec<UrlCount>,
    /// How the answers spread over replicas.
    pub spread: Spread,
    /// Whether the generator itself kept up.
    pub generator: Generator,
    /// One point per second of the run.
    pub series: Vec<Second>,
    /// Replica counts over time, from `--admin` (empty without it).
    pub scaling: Vec<ScaleSample>,
    /// `--scenario` runs: flows per user type and a row per step. Then `requests.ok` and
    /// `requests.failed` count steps' checks, and `latency` is over every step's answers.
    pub scenario: Option<ScenarioReport>,
}

/// A scenario run's user types and steps.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioReport {
    /// The file.
    pub file: String,
    /// Per user type, in file order.
    pub users: Vec<UserRow>,
    /// Per step, in file order.
    pub steps: Vec<StepRow>,
}

/// One user type's flows.
#[derive(Debug, Clone, Serialize)]
pub struct UserRow {
    /// Its name.
    pub name: String,
    /// Its weight.
    pub weight: u32,
    /// Flows begun.
    pub flows: u64,
    /// Flows whose every step passed.
    pub completed: u64,
    /// Flows ended by a failed step (the rest were cut off by the end of the run).
    pub failed: u64,
}

/// One step's requests.
#[derive(Debug, Clone, Serialize)]
pub struct StepRow {
    /// Its user type.
    pub user: String,
    /// Its name.
    pub name: String,
    /// Method.
    pub method: String,
    /// URL, as written in the file.
    pub url: String,
    /// Requests sent.
    pub requests: u64,
    /// Check passed.
    pub ok: u64,
    /// Check failed.
    pub failed: u64,
    /// Why, with counts.
    pub failures: BTreeMap<String, u64>,
    /// Latency of its answers, ms (corrected like the run's).
    pub latency: Percentiles,
}

fn scenario_report(plan: &Plan, total: &Recorder) -> Option<ScenarioReport> {
    let sc = plan.scenario.as_ref()?;
    let empty = crate::record::FlowRecord::default();
    Some(ScenarioReport {
        file: sc.file.clone(),
        users: sc
            .users
            .iter()
            .enumerate()
            .map(|(i, u)| {
                let f = total.flows.get(i).unwrap_or(&empty);
                UserRow {
                    name: u.name.clone(),
                    weight: u.weight,
                    flows: f.started,
                    completed: f.completed,
                    failed: f.failed,
                }
            })
            .collect(),
        steps: sc
            .steps
            .iter()
            .enumerate()
            .map(|(i, st)| {
                let r = total.steps.get(i);
                StepRow {
                    user: sc.users[st.user].name.clone(),
                    name: st.name.clone(),
                    method: st.method.to_string(),
                    url: st.url.clone(),
                    requests: r.map_or(0, |r| r.requests),
                    ok: r.map_or(0, |r| r.ok),
                    failed: r.map_or(0, |r| r.requests - r.ok),
                    failures: r.map(|r| r.failures.clone()).unwrap_or_default(),
                    latency: r.map_or_else(
                        || Percentiles::of(&crate::record::histogram()),
                        |r| Percentiles::of(&r.latency),
                    ),
                }
            })
            .collect(),
    })
}

/// The plan, as run.
#[derive(Debug, Clone, Serialize)]
pub struct PlanSummary {
    /// `closed` or `open`.
    pub model: &'static str,
    /// Connections (users); in the open model, the most requests in flight.
    pub connections: u32,
    /// Generator threads.
    pub threads: u32,
    /// Open model: the requested rate at the start, requests/s.
    pub rate: Option<f64>,
    /// Open model: requests due over the schedule.
    pub scheduled: Option<u64>,
    /// Closed model: users started per second.
    pub spawn_rate: Option<f64>,
    /// Duration bound, seconds.
    pub duration_secs: Option<f64>,
    /// Request-count bound.
    pub requests: Option<u64>,
    /// Method.
    pub method: String,
    /// HTTP version asked for.
    pub http: HttpVersion,
    /// Request timeout, seconds.
    pub timeout_secs: f64,
}

/// Request counts.
#[derive(Debug, Clone, Serialize)]
pub struct Counts {
    /// Requests sent (or attempted).
    pub sent: u64,
    /// Requests answered (any status).
    pub responses: u64,
    /// Answered 2xx or 3xx.
    pub ok: u64,
    /// No answer, or a 4xx/5xx one.
    pub failed: u64,
    /// Open model: requests due before the end that were never sent (the connections were
    /// all busy with a slow server); with a scenario, flows never started.
    pub unsent: u64,
}

/// Rates over the run.
#[derive(Debug, Clone, Serialize)]
pub struct Throughput {
    /// Answers per second.
    pub requests_per_sec: f64,
    /// 2xx/3xx answers per second.
    pub ok_per_sec: f64,
    /// Response body bytes.
    pub bytes: u64,
    /// Response body bytes per second.
    pub bytes_per_sec: f64,
}

/// Requests to one URL.
#[derive(Debug, Clone, Serialize)]
pub struct UrlCount {
    /// As given.
    pub url: String,
    /// Its weight.
    pub weight: u32,
    /// Requests sent to it.
    pub requests: u64,
}

/// The spread over replicas, from the replica header.
///
/// Replicas are judged against the other replicas of their service only: a replica named
/// `service/N` (shoal's `X-Shoal-Replica`) belongs to the service before the last `/`, so a
/// run over two services' URLs gets one verdict per service, not one that compares a
/// replica of one with a replica of the other.
#[derive(Debug, Clone, Serialize)]
pub struct Spread {
    /// The header read (`--replica-header`).
    pub header: String,
    /// Replicas by service, then by name.
    pub replicas: Vec<ReplicaRow>,
    /// Answers that did not carry the header.
    pub without_header: u64,
    /// One verdict per service, in the order of `replicas`.
    pub services: Vec<ServiceSpread>,
    /// All services together: balanced when every service is; the worst deviation and
    /// max/min ratio of any service. With one service, that service's verdict. `None` when
    /// no answer named a replica.
    pub verdict: Option<Verdict>,
}

/// Answers from one replica.
#[derive(Debug, Clone, Serialize)]
pub struct ReplicaRow {
    /// The header's value.
    pub name: String,
    /// Its service: the name's part before the last `/` (`None` without a `/`).
    pub service: Option<String>,
    /// Answers.
    pub requests: u64,
    /// Its share of the answers that its service's replicas gave (0–1).
    pub share: f64,
    /// Its latency, ms.
    pub latency: Percentiles,
}

/// The spread over one service's replicas.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceSpread {
    /// The service (`None`: replica names without a `/`).
    pub service: Option<String>,
    /// Answers from its replicas.
    pub requests: u64,
    /// Its replicas against an even share of its answers.
    pub verdict: Verdict,
}

/// Whether the replicas got even shares.
#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    /// Every replica within the tolerance of an even share.
    pub balanced: bool,
    /// The largest distance of a replica's share from an even share, as a fraction of the
    /// even share (0.067 = 6.7 %).
    pub max_deviation: f64,
    /// The tolerance used (`--balance-tolerance`), as a fraction.
    pub tolerance: f64,
    /// Most answers of a replica / fewest answers of a replica.
    pub max_min_ratio: f64,
    /// In words.
    pub text: String,
}

/// The generator's own health.
#[derive(Debug, Clone, Serialize)]
pub struct Generator {
    /// CPU used, as a share of the generator threads' capacity (0–1); `None` without /proc.
    pub cpu: Option<f64>,
    /// CPU per second, same unit.
    pub cpu_series: Vec<f64>,
    /// CPU at or above 90 % of its threads.
    pub cpu_saturated: bool,
    /// Open model: how late the generator sent requests it was free to send on time (ms).
    pub send_lag: Option<Percentiles>,
    /// Open model: requests that waited for a free connection.
    pub waited_for_connection: u64,
    /// The generator may be what limited this run: CPU saturated, or it could not keep
    /// its own schedule.
    pub bottleneck: bool,
    /// Everything worth a warning, in words.
    pub warnings: Vec<String>,
}

/// One second of the run.
#[derive(Debug, Clone, Serialize)]
pub struct Second {
    /// Seconds since the start (this point covers `t`..`t+1`).
    pub t: u64,
    /// Answers.
    pub responses: u64,
    /// 2xx/3xx answers.
    pub ok: u64,
    /// No answer, or 4xx/5xx.
    pub failed: u64,
    /// Body bytes.
    pub bytes: u64,
    /// Latency percentiles of the answers in this second, ms.
    pub p50: f64,
    /// 90th.
    pub p90: f64,
    /// 99th.
    pub p99: f64,
    /// Slowest.
    pub max: f64,
    /// Open model: uncorrected 99th.
    pub p99_uncorrected: Option<f64>,
    /// Answers per replica.
    pub replicas: BTreeMap<String, u64>,
}

impl Second {
    /// The point for second `t`.
    pub fn of(t: u64, rec: &Recorder) -> Second {
        let p = Percentiles::of(&rec.latency);
        Second {
            t,
            responses: rec.responses(),
            ok: rec.ok(),
            failed: rec.failed(),
            bytes: rec.bytes,
            p50: p.p50,
            p90: p.p90,
            p99: p.p99,
            max: p.max,
            p99_uncorrected: (!rec.uncorrected.is_empty())
                .then(|| Percentiles::of(&rec.uncorrected).p99),
            replicas: rec
                .replicas
                .iter()
                .map(|r| (String::from_utf8_lossy(&r.name).into_owned(), r.requests))
                .collect(),
        }
    }
}

/// Facts about the run that are not in the recorders.
#[derive(Debug)]
pub(crate) struct RunFacts {
    pub(crate) elapsed: Duration,
    pub(crate) interrupted: bool,
    pub(crate) unsent: u64,
    pub(crate) cpu: Option<f64>,
    pub(crate) cpu_series: Vec<f64>,
    pub(crate) threads: u32,
}

impl Report {
    pub(crate) fn new(
        plan: &Plan,
        total: &Recorder,
        series: Vec<Second>,
        scaling: Vec<ScaleSample>,
        facts: RunFacts,
    ) -> Report {
        let open = plan.is_open();
        let secs = facts.elapsed.as_secs_f64().max(1e-9);
        let (rate, scheduled) = match &plan.model {
            Model::Open(s) => (
                Some(s.rate_at(Duration::ZERO)),
                Some(s.total().min(plan.requests.unwrap_or(u64::MAX))),
            ),
            Model::Closed { .. } => (None, None),
        };
        let spread = spread(plan, total);
        let generator = generator(plan, total, &facts);
        Report {
            plan: PlanSummary {
                model: if open { "open" } else { "closed" },
                connections: plan.connections,
                threads: facts.threads,
                rate,
                scheduled,
                spawn_rate: match plan.model {
                    Model::Closed { spawn_rate } => spawn_rate,
                    Model::Open(_) => None,
                },
                duration_secs: plan.duration.map(|d| d.as_secs_f64()),
                requests: plan.requests,
                method: plan.method.to_string(),
                http: plan.http,
                timeout_secs: plan.timeout.as_secs_f64(),
            },
            interrupted: facts.interrupted,
            elapsed_secs: facts.elapsed.as_secs_f64(),
            requests: Counts {
                sent: total.attempted,
                responses: total.responses(),
                ok: total.ok(),
                failed: total.failed(),
                unsent: facts.unsent,
            },
            throughput: Throughput {
                requests_per_sec: total.responses() as f64 / secs,
                ok_per_sec: total.ok() as f64 / secs,
                bytes: total.bytes,
                bytes_per_sec: total.bytes as f64 / secs,
            },
            latency: Percentiles::of(&total.latency),
            latency_uncorrected: open.then(|| Percentiles::of(&total.uncorrected)),
            status_codes: total
                .statuses
                .iter()
                .map(|(s, n)| (s.to_string(), *n))
                .collect(),
            errors: ErrorKind::ALL
                .iter()
                .filter_map(|k| total.errors.get(k).map(|n| (k.name().to_owned(), *n)))
                .collect(),
            urls: plan
                .targets
                .iter()
                .zip(&total.per_target)
                .map(|(t, n)| UrlCount {
                    url: t.url.clone(),
                    weight: t.weight,
                    requests: *n,
                })
                .collect(),
            spread,
            generator,
            series,
            scaling,
            scenario: scenario_report(plan, total),
        }
    }

    /// The summary table, as printed at the end of a run.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        let _ = self.write_summary(&mut out);
        out
    }

    fn write_summary(&self, o: &mut String) -> fmt::Result {
        let p = &self.plan;
        let sc = self.scenario.as_ref();
        let model = match (p.model, p.rate, sc) {
            ("open", Some(r), None) => format!("open model, {} req/s", num(r)),
            ("open", Some(r), Some(_)) => format!("open model, {} flows/s", num(r)),
            (_, _, None) => format!("closed model, {} connections", p.connections),
            (_, _, Some(_)) => format!("closed model, {} users", p.connections),
        };
        let counted = if sc.is_some() { "flows" } else { "requests" };
        let mut urls: Vec<&str> = self.urls.iter().map(|u| u.url.as_str()).collect();
        if let Some(sc) = sc {
            urls.push(&sc.file);
        }
        writeln!(
            o,
            "shoal load: {model}, {} thread{}, {} — {}",
            p.threads,
            if p.threads == 1 { "" } else { "s" },
            match (p.duration_secs, p.requests) {
                (Some(d), Some(n)) => format!("{}s or {n} {counted}", num(d)),
                (Some(d), None) => format!("{}s", num(d)),
                (None, Some(n)) => format!("{n} {counted}"),
                (None, None) => String::new(),
            },
            urls.join(", ")
        )?;
        if self.interrupted {
            writeln!(o, "  (interrupted: partial results)")?;
        }
        let r = &self.requests;
        let t = &self.throughput;
        writeln!(
            o,
            "  requests   {} sent, {} ok, {} failed in {:.2}s — {} req/s, {}/s",
            r.sent,
            r.ok,
            r.failed,
            self.elapsed_secs,
            num(t.requests_per_sec),
            bytes(t.bytes_per_sec)
        )?;
        if r.unsent > 0 {
            writeln!(
                o,
                "  unsent     {} {} were due but never {}",
                r.unsent,
                if sc.is_some() { "flows" } else { "requests" },
                if sc.is_some() { "started" } else { "sent" }
            )?;
        }
        match &self.latency_uncorrected {
            None => writeln!(o, "  latency    {}", percentiles(&self.latency))?,
            Some(u) => {
                writeln!(
                    o,
                    "  latency    {}  (corrected)",
                    percentiles(&self.latency)
                )?;
                writeln!(o, "  from send  {}  (uncorrected)", percentiles(u))?;
            }
        }
        if let Some(sc) = sc {
            write_scenario(o, sc)?;
        }
        let codes: Vec<String> = self
            .status_codes
            .iter()
            .map(|(s, n)| format!("{s} ×{n}"))
            .collect();
        writeln!(
            o,
            "  status     {}",
            if codes.is_empty() {
                "none".into()
            } else {
                codes.join(", ")
            }
        )?;
        if !self.errors.is_empty() {
            let e: Vec<String> = self
                .errors
                .iter()
                .map(|(k, n)| format!("{k} ×{n}"))
                .collect();
            writeln!(o, "  errors     {}", e.join(", "))?;
        }
        if self.urls.len() > 1 {
            for u in &self.urls {
                writeln!(
                    o,
                    "  url        {} (weight {}): {}",
                    u.url, u.weight, u.requests
                )?;
            }
        }
        let s = &self.spread;
        if s.replicas.is_empty() {
            writeln!(o, "  replicas   no answer carried {}", s.header)?;
        } else {
            let w = s
                .replicas
                .iter()
                .map(|r| r.name.len())
                .max()
                .unwrap_or(0)
                .max(7);
            writeln!(
                o,
                "  {:<w$}  {:>9}  {:>6}  {:>9}  {:>9}",
                "replica", "requests", "share", "p50", "p99"
            )?;
            for rr in &s.replicas {
                writeln!(
                    o,
                    "  {:<w$}  {:>9}  {:>5.1}%  {:>9}  {:>9}",
                    rr.name,
                    rr.requests,
                    rr.share * 100.0,
                    ms(rr.latency.p50),
                    ms(rr.latency.p99)
                )?;
            }
            if s.without_header > 0 {
                writeln!(o, "  ({} answers without {})", s.without_header, s.header)?;
            }
            match s.services.as_slice() {
                [one] => writeln!(o, "  spread     {}", one.verdict.text)?,
                several => {
                    for sv in several {
                        writeln!(o, "  spread     {}: {}", service_label(sv), sv.verdict.text)?;
                    }
                }
            }
        }
        let g = &self.generator;
        if let Some(c) = g.cpu {
            writeln!(
                o,
                "  generator  CPU {:.0}% of {} thread{}",
                c * 100.0,
                p.threads,
                if p.threads == 1 { "" } else { "s" }
            )?;
        }
        for w in &g.warnings {
            writeln!(o, "  warning: {w}")?;
        }
        Ok(())
    }
}

/// The flows, a row per step, and why steps failed.
fn write_scenario(o: &mut String, sc: &ScenarioReport) -> fmt::Result {
    let flows: Vec<String> = sc
        .users
        .iter()
        .map(|u| {
            let mut t = format!("{} ×{}: {} completed", u.name, u.flows, u.completed);
            if u.failed > 0 {
                let _ = write!(t, ", {} failed", u.failed);
            }
            let cut = u.flows.saturating_sub(u.completed + u.failed);
            if cut > 0 {
                let _ = write!(t, ", {cut} cut off by the end");
            }
            t
        })
        .collect();
    writeln!(o, "  flows      {}", flows.join("; "))?;
    let label = |s: &StepRow| format!("{} {}", s.user, s.name);
    let w = sc
        .steps
        .iter()
        .map(|s| label(s).chars().count())
        .max()
        .unwrap_or(0)
        .max(4);
    writeln!(
        o,
        "  {:<w$}  {:>9}  {:>7}  {:>9}  {:>9}  {:>9}",
        "step", "requests", "failed", "p50", "p95", "p99"
    )?;
    for s in &sc.steps {
        let l = |v: f64| {
            if s.latency.count == 0 {
                "-".to_owned()
            } else {
                ms(v)
            }
        };
        writeln!(
            o,
            "  {:<w$}  {:>9}  {:>7}  {:>9}  {:>9}  {:>9}",
            label(s),
            s.requests,
            s.failed,
            l(s.latency.p50),
            l(s.latency.p95),
            l(s.latency.p99)
        )?;
    }
    for s in &sc.steps {
        for (why, n) in &s.failures {
            writeln!(o, "  failed     {}: {why} ×{n}", label(s))?;
        }
    }
    Ok(())
}

fn spread(plan: &Plan, total: &Recorder) -> Spread {
    let replicas = total
        .replicas
        .iter()
        .map(|r| {
            let name = String::from_utf8_lossy(&r.name).into_owned();
            (name, r.requests, Percentiles::of(&r.latency))
        })
        .collect();
    let (replicas, services) = by_service(replicas, plan.balance_tolerance);
    Spread {
        header: plan.replica_header.to_string(),
        verdict: overall(&services, plan.balance_tolerance),
        replicas,
        without_header: total.no_replica,
        services,
    }
}

/// `users/0` → `users`; `r1` → none.
fn service_of(replica: &str) -> Option<&str> {
    replica.rsplit_once('/').map(|(s, _)| s)
}

/// How a service is named in the summary.
pub(crate) fn service_label(s: &ServiceSpread) -> &str {
    s.service.as_deref().unwrap_or("(no service)")
}

/// Replicas (name, answers, latency) → rows sorted by service then name, each with its share
/// of its service, and a verdict per service.
pub(crate) fn by_service(
    replicas: Vec<(String, u64, Percentiles)>,
    tolerance: f64,
) -> (Vec<ReplicaRow>, Vec<ServiceSpread>) {
    let mut rows: Vec<ReplicaRow> = replicas
        .into_iter()
        .map(|(name, requests, latency)| ReplicaRow {
            service: service_of(&name).map(str::to_owned),
            name,
            requests,
            share: 0.0,
            latency,
        })
        .collect();
    rows.sort_by(|a, b| (&a.service, natural(&a.name)).cmp(&(&b.service, natural(&b.name))));
    let mut services = Vec::new();
    let mut start = 0;
    while start < rows.len() {
        let service = rows[start].service.clone();
        let len = rows[start..]
            .iter()
            .take_while(|r| r.service == service)
            .count();
        let group = &mut rows[start..start + len];
        let requests: u64 = group.iter().map(|r| r.requests).sum();
        for r in group.iter_mut() {
            r.share = r.requests as f64 / requests.max(1) as f64;
        }
        if let Some(verdict) = verdict(group, tolerance) {
            services.push(ServiceSpread {
                service,
                requests,
                verdict,
            });
        }
        start += len;
    }
    (rows, services)
}

/// All services' verdicts in one: balanced when each service is.
fn overall(services: &[ServiceSpread], tolerance: f64) -> Option<Verdict> {
    match services {
        [] => None,
        [one] => Some(one.verdict.clone()),
        several => {
            let worst = |f: fn(&Verdict) -> f64| {
                several.iter().map(|s| f(&s.verdict)).fold(0.0f64, f64::max)
            };
            let max_deviation = worst(|v| v.max_deviation);
            let unbalanced: Vec<String> = several
                .iter()
                .filter(|s| !s.verdict.balanced)
                .map(|s| {
                    let detail = s.verdict.text.trim_start_matches("unbalanced: ");
                    format!("{}: {detail}", service_label(s))
                })
                .collect();
            let text = if unbalanced.is_empty() {
                format!(
                    "balanced: each of {} services within {:.1}% of an even share of its answers",
                    several.len(),
                    max_deviation * 100.0
                )
            } else {
                format!("unbalanced: {}", unbalanced.join("; "))
            };
            Some(Verdict {
                balanced: unbalanced.is_empty(),
                max_deviation,
                tolerance,
                max_min_ratio: worst(|v| v.max_min_ratio),
                text,
            })
        }
    }
}

/// Sort key: `web-10` after `web-9`.
fn natural(s: &str) -> (String, u64, String) {
    let head = s.trim_end_matches(|c: char| c.is_ascii_digit());
    let n = s[head.len()..].parse().unwrap_or(0);
    (head.to_owned(), n, s.to_owned())
}

/// Balanced when every replica's share is within `tolerance` (a fraction of the even
/// share) of an even share. `replicas` are one service's, with shares of its answers.
pub(crate) fn verdict(replicas: &[ReplicaRow], tolerance: f64) -> Option<Verdict> {
    let k = replicas.len();
    if k == 0 {
        return None;
    }
    let max = replicas.iter().map(|r| r.requests).max().unwrap_or(0);
    let min = replicas.iter().map(|r| r.requests).min().unwrap_or(0);
    let ratio = if min == 0 {
        f64::INFINITY
    } else {
        max as f64 / min as f64
    };
    if k == 1 {
        return Some(Verdict {
            balanced: true,
            max_deviation: 0.0,
            tolerance,
            max_min_ratio: 1.0,
            text: format!("one replica ({}) served every answer", replicas[0].name),
        });
    }
    let even = 1.0 / k as f64;
    let (worst, dev) = replicas
        .iter()
        .map(|r| (r, (r.share - even).abs() / even))
        .fold((&replicas[0], -1.0), |a, b| if b.1 > a.1 { b } else { a });
    let balanced = dev <= tolerance + 1e-12;
    let text = if balanced {
        format!(
            "balanced: every replica within {:.1}% of an even share (max/min {:.2})",
            dev * 100.0,
            ratio
        )
    } else {
        format!(
            "unbalanced: {} is {:.1}% {} an even share of {:.1}% (max/min {:.2}, tolerance {:.0}%)",
            worst.name,
            dev * 100.0,
            if worst.share > even { "above" } else { "below" },
            even * 100.0,
            ratio,
            tolerance * 100.0
        )
    };
    Some(Verdict {
        balanced,
        max_deviation: dev,
        tolerance,
        max_min_ratio: ratio,
        text,
    })
}

fn generator(plan: &Plan, total: &Recorder, facts: &RunFacts) -> Generator {
    let open = plan.is_open();
    let cpu_saturated = facts.cpu.is_some_and(|c| c >= cpu::SATURATED);
    let send_lag = (open && !total.send_lag.is_empty()).then(|| Percentiles::of(&total.send_lag));
    let behind = send_lag.is_some_and(|l| l.p99 > LAG_LIMIT_MS);
    let mut warnings = Vec::new();
    if cpu_saturated {
        warnings.push(format!(
            "the generator used {:.0}% of its {} thread{}' CPU: it may be the bottleneck, and \
             the figures understate the server (try more --threads)",
            facts.cpu.unwrap_or(0.0) * 100.0,
            facts.threads,
            if facts.threads == 1 { "" } else { "s" }
        ));
    }
    if let Some(l) = send_lag.filter(|_| behind) {
        warnings.push(format!(
            "the generator fell behind its own schedule (send lag p99 {}, max {}): its timers \
             or CPU are late, and corrected latency includes that",
            ms(l.p99),
            ms(l.max)
        ));
    }
    let flows: u64 = total.flows.iter().map(|f| f.started).sum();
    if open && total.waited_for_connection > 0 && plan.scenario.is_some() {
        let share = total.waited_for_connection as f64 / flows.max(1) as f64;
        warnings.push(format!(
            "{} flows ({:.1}%) started late: all {} users were busy (a flow holds one through \
             its steps and think times); corrected latency counts the wait (raise -c to at \
             least the rate × a flow's length)",
            total.waited_for_connection,
            share * 100.0,
            plan.connections
        ));
    } else if open && total.waited_for_connection > 0 {
        let share = total.waited_for_connection as f64 / total.attempted.max(1) as f64;
        warnings.push(format!(
            "{} requests ({:.1}%) waited for a free connection: all {} were busy; corrected \
             latency counts the wait (raise -c to let more requests reach the server at once)",
            total.waited_for_connection,
            share * 100.0,
            plan.connections
        ));
    }
    if facts.unsent > 0 && plan.scenario.is_some() {
        warnings.push(format!(
            "{} flows were due before the end but never started: every one of the {} users \
             was busy",
            facts.unsent, plan.connections
        ));
    } else if facts.unsent > 0 {
        warnings.push(format!(
            "{} requests were due before the end but never sent: the server did not keep up \
             with the rate on {} connections",
            facts.unsent, plan.connections
        ));
    }
    Generator {
        cpu: facts.cpu,
        cpu_series: facts.cpu_series.clone(),
        cpu_saturated,
        send_lag,
        waited_for_connection: total.waited_for_connection,
        bottleneck: cpu_saturated || behind,
        warnings,
    }
}

fn percentiles(p: &Percentiles) -> String {
    format!(
        "p50 {}  p90 {}  p95 {}  p99 {}  p99.9 {}  max {}",
        ms(p.p50),
        ms(p.p90),
        ms(p.p95),
        ms(p.p99),
        ms(p.p999),
        ms(p.max)
    )
}

/// A latency in ms as the summary prints it: `0.31 ms`, `12.4 ms`, `1.27 s`.
pub fn ms(v: f64) -> String {
    if v >= 1000.0 {
        format!("{:.2} s", v / 1000.0)
    } else if v >= 10.0 {
        format!("{v:.1} ms")
    } else {
        format!("{v:.2} ms")
    }
}

pub(crate) fn num(v: f64) -> String {
    if v >= 100.0 || v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

pub(crate) fn bytes(v: f64) -> String {
    if v >= 1024.0 * 1024.0 {
        format!("{:.1} MiB", v / 1024.0 / 1024.0)
    } else if v >= 1024.0 {
        format!("{:.1} KiB", v / 1024.0)
    } else {
        format!("{v:.0} B")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::Answer;

    fn rows(counts: &[u64]) -> Vec<ReplicaRow> {
        let total: u64 = counts.iter().sum();
        counts
            .iter()
            .enumerate()
            .map(|(i, &n)| ReplicaRow {
                name: format!("r{i}"),
                service: None,
                requests: n,
                share: n as f64 / total as f64,
                latency: Percentiles::of(&crate::record::histogram()),
            })
            .collect()
    }

    #[test]
    fn sixteen_and_fourteen_is_balanced_at_ten_percent() {
        let v = verdict(&rows(&[16, 14]), 0.10).unwrap();
        assert!(v.balanced, "{v:?}");
        assert!((v.max_deviation - 1.0 / 15.0).abs() < 1e-9);
        assert!(v.text.starts_with("balanced"), "{}", v.text);
    }

    #[test]
    fn a_hot_replica_is_unbalanced_and_named() {
        let v = verdict(&rows(&[50, 25, 25]), 0.10).unwrap();
        assert!(!v.balanced);
        assert!((v.max_deviation - 0.5).abs() < 1e-9);
        assert!((v.max_min_ratio - 2.0).abs() < 1e-9);
        assert!(v.text.contains("r0 is 50.0% above"), "{}", v.text);
    }

    /// Named replicas' answer counts → (rows, per-service verdicts) at 10 %.
    fn services(counts: &[(&str, u64)]) -> (Vec<ReplicaRow>, Vec<ServiceSpread>) {
        let replicas = counts
            .iter()
            .map(|&(n, c)| {
                let p = Percentiles::of(&crate::record::histogram());
                (n.to_owned(), c, p)
            })
            .collect();
        by_service(replicas, 0.10)
    }

    #[test]
    fn each_service_is_judged_against_its_own_even_share() {
        // users gets 30 times music's traffic; within each service the replicas are even.
        // Judged together, music/0 would be 93 % below an even fifth.
        let counts = [
            ("users/2", 990),
            ("music/0", 40),
            ("users/0", 1000),
            ("music/1", 41),
            ("users/1", 1010),
        ];
        let (sorted, svcs) = services(&counts);
        let names: Vec<&str> = sorted.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            names,
            ["music/0", "music/1", "users/0", "users/1", "users/2"]
        );
        assert!(
            (sorted[0].share - 40.0 / 81.0).abs() < 1e-9,
            "share of its service"
        );
        assert!((sorted[3].share - 1010.0 / 3000.0).abs() < 1e-9);
        let per: Vec<(Option<&str>, u64, bool)> = svcs
            .iter()
            .map(|s| (s.service.as_deref(), s.requests, s.verdict.balanced))
            .collect();
        assert_eq!(
            per,
            [(Some("music"), 81, true), (Some("users"), 3000, true)]
        );
        let all = overall(&svcs, 0.10).unwrap();
        assert!(all.balanced, "{}", all.text);
        assert!(
            all.text
                .starts_with("balanced: each of 2 services within 1.2%"),
            "{}",
            all.text
        );
        // Today's mixed verdict, for contrast: one pool of five replicas is unbalanced.
        let mixed = verdict(&rows(&[40, 41, 1000, 1010, 990]), 0.10).unwrap();
        assert!(!mixed.balanced);
    }

    #[test]
    fn an_unbalanced_service_is_named_and_the_other_is_not_blamed() {
        let counts = [
            ("music/0", 60),
            ("music/1", 20),
            ("users/0", 500),
            ("users/1", 500),
            ("users/2", 510),
        ];
        let (_, svcs) = services(&counts);
        assert!(!svcs[0].verdict.balanced && svcs[1].verdict.balanced);
        assert!(
            svcs[0]
                .verdict
                .text
                .starts_with("unbalanced: music/0 is 50.0% above an even share of 50.0%"),
            "{}",
            svcs[0].verdict.text
        );
        let all = overall(&svcs, 0.10).unwrap();
        assert!(!all.balanced);
        assert!((all.max_deviation - 0.5).abs() < 1e-9);
        assert!((all.max_min_ratio - 3.0).abs() < 1e-9);
        assert!(
            all.text
                .starts_with("unbalanced: music: music/0 is 50.0% above an even share of 50.0%"),
            "{}",
            all.text
        );
        assert!(!all.text.contains("users"), "{}", all.text);
    }

    #[test]
    fn the_summary_json_and_page_show_a_line_per_service() {
        let mut rec = Recorder::new(1);
        for (name, n) in [
            ("music/0", 30),
            ("music/1", 10),
            ("users/0", 200),
            ("users/1", 200),
        ] {
            for _ in 0..n {
                let answer = Answer {
                    status: 200,
                    bytes: 0,
                    replica: Some(http::HeaderValue::from_static(name)),
                    kept: None,
                };
                rec.record(0, &Ok(answer), Duration::from_millis(1), None);
            }
        }
        let r = Report::new(&plan(&[]), &rec, Vec::new(), Vec::new(), facts(0.1, 0));
        let text = r.summary();
        let spread: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("  spread "))
            .collect();
        assert_eq!(spread.len(), 2, "{text}");
        assert!(
            spread[0].starts_with("  spread     music: unbalanced: music/0 is 50.0% above"),
            "{text}"
        );
        assert!(
            spread[1].starts_with("  spread     users: balanced: every replica within 0.0%"),
            "{text}"
        );
        assert!(text.contains("  music/0         30   75.0%"), "{text}");

        let json = serde_json::to_value(&r).unwrap();
        let svcs = json["spread"]["services"].as_array().unwrap();
        assert_eq!(svcs.len(), 2);
        assert_eq!(svcs[0]["service"], "music");
        assert_eq!(svcs[0]["requests"], 40);
        assert_eq!(svcs[0]["verdict"]["balanced"], false);
        assert_eq!(svcs[1]["service"], "users");
        assert_eq!(svcs[1]["verdict"]["balanced"], true);
        assert_eq!(json["spread"]["replicas"][2]["service"], "users");
        assert_eq!(json["spread"]["verdict"]["balanced"], false);

        let page = crate::html::render(&r);
        assert!(page.contains("<h3>music (40 answers)</h3>"), "{page}");
        assert!(page.contains("<h3>users (400 answers)</h3>"), "{page}");
        for sv in &r.spread.services {
            assert!(
                page.contains(&format!("<b>{}</b>", sv.verdict.text)),
                "{page}"
            );
        }
    }

    fn plan(args: &[&str]) -> Plan {
        let a = crate::LoadArgs {
            urls: vec!["http://127.0.0.1:9/".into()],
            connections: 8,
            timeout: "30s".into(),
            http: "auto".into(),
            method: "GET".into(),
            replica_header: "x-shoal-replica".into(),
            balance_tolerance: 10.0,
            rate: args.contains(&"open").then_some(100.0),
            ..crate::LoadArgs::default()
        };
        Plan::from_args(&a).unwrap()
    }

    fn facts(cpu: f64, unsent: u64) -> RunFacts {
        RunFacts {
            elapsed: Duration::from_secs(2),
            interrupted: false,
            unsent,
            cpu: Some(cpu),
            cpu_series: vec![cpu],
            threads: 1,
        }
    }

    #[test]
    fn a_saturated_generator_says_it_may_be_the_bottleneck() {
        let rec = Recorder::new(1);
        let g = generator(&plan(&[]), &rec, &facts(0.97, 0));
        assert!(g.cpu_saturated && g.bottleneck);
        assert!(
            g.warnings[0].contains("97% of its 1 thread"),
            "{:?}",
            g.warnings
        );
        let g = generator(&plan(&[]), &rec, &facts(0.5, 0));
        assert!(!g.bottleneck && g.warnings.is_empty());
    }

    #[test]
    fn an_open_run_behind_schedule_says_so() {
        let mut rec = Recorder::new(1);
        for _ in 0..100 {
            rec.record_send(Duration::from_millis(40), false);
        }
        rec.record_send(Duration::from_millis(300), true);
        let g = generator(&plan(&["open"]), &rec, &facts(0.5, 7));
        assert!(g.bottleneck, "{g:?}");
        let all = g.warnings.join("\n");
        assert!(all.contains("fell behind its own schedule"), "{all}");
        assert!(
            all.contains("1 requests (") && all.contains("waited for a free connection"),
            "{all}"
        );
        assert!(
            all.contains("7 requests were due before the end but never sent"),
            "{all}"
        );
    }

    #[test]
    fn formats() {
        assert_eq!(ms(0.314), "0.31 ms");
        assert_eq!(ms(12.44), "12.4 ms");
        assert_eq!(ms(1270.0), "1.27 s");
        assert_eq!(bytes(2048.0), "2.0 KiB");
        assert!(natural("web-10") > natural("web-9"));
    }
}
