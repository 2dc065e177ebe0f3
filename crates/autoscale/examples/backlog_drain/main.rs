//! Issue 19's benchmark: time from a backlog burst to drained, shoal's policy against a
//! KEDA + HPA equivalent, simulated on the same traces with the same engine. Prints
//! Markdown.
//!
//! ```text
//! cargo run -p shoal-autoscale --example backlog_drain --release
//! cargo run -p shoal-autoscale --example backlog_drain --release -- --startup 5 --max 30
//! cargo run -p shoal-autoscale --example backlog_drain --release -- --timeline a keda-cached
//! ```
//!
//! Options: `--startup SECONDS` (repeatable; default 1, 5 and 10), `--per-replica N`
//! (repeatable; default 100 and 1000),
//! `--max N` (30), `--drain-within SECONDS` (10: the `shoal, drain_within` rows),
//! `--shoal-down-stabilization SECONDS` (shoal's `scale_down.stabilization`; 30), `--phases N`
//! (10: an N × N grid of clock phases per run), `--timeline TRACE POLICY` (every decision of
//! one run, at phase 0, with the first `--startup` and `--per-replica`; TRACE `a`, `a1`, `b`,
//! `c` or `d`; POLICY `shoal`, `shoal-drain`, `keda-cached` or `keda`).
//! The model is described in `sim.rs` and in docs/autoscaling.md.

mod sim;

use std::process::ExitCode;

use sim::{Controller, Outcome, Phase, RATE, Reads, Run, STEP_MS, Scenario, Trace};

#[derive(Debug)]
struct Options {
    startups: Vec<f64>,
    per_replica: Vec<u64>,
    max: u32,
    drain_within: u64,
    shoal_down_stabilization: Option<f64>,
    phases: u64,
    timeline: Option<(String, String)>,
}

fn parse() -> Result<Options, String> {
    let mut o = Options {
        startups: Vec::new(),
        per_replica: Vec::new(),
        max: 30,
        drain_within: 10,
        shoal_down_stabilization: None,
        phases: 10,
        timeline: None,
    };
    let mut args = std::env::args().skip(1);
    let number = |flag: &str, v: Option<String>| -> Result<f64, String> {
        let v = v.ok_or_else(|| format!("{flag} needs a value"))?;
        v.parse::<f64>()
            .ok()
            .filter(|n| n.is_finite() && *n >= 0.0)
            .ok_or_else(|| format!("{flag}: not a number: {v}"))
    };
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--startup" => o.startups.push(number(&arg, args.next())?),
            "--per-replica" => o
                .per_replica
                .push(number(&arg, args.next())?.max(1.0) as u64),
            "--max" => o.max = number(&arg, args.next())?.max(1.0) as u32,
            "--drain-within" => o.drain_within = number(&arg, args.next())?.max(1.0) as u64,
            "--shoal-down-stabilization" => {
                o.shoal_down_stabilization = Some(number(&arg, args.next())?);
            }
            "--phases" => o.phases = number(&arg, args.next())?.clamp(1.0, 30.0) as u64,
            "--timeline" => {
                let trace = args.next().ok_or("--timeline needs a trace and a policy")?;
                let policy = args.next().ok_or("--timeline needs a trace and a policy")?;
                o.timeline = Some((trace, policy));
            }
            "-h" | "--help" => {
                return Err(
                    "usage: backlog_drain [--startup S]... [--per-replica N] [--max N] \
                     [--drain-within S] [--shoal-down-stabilization S] [--phases N] [--timeline TRACE POLICY]"
                        .into(),
                );
            }
            other => return Err(format!("unknown argument {other} (try --help)")),
        }
    }
    if o.startups.is_empty() {
        o.startups = vec![1.0, 5.0, 10.0];
    }
    if o.per_replica.is_empty() {
        o.per_replica = vec![100, 1000];
    }
    Ok(o)
}

/// Whether `drain_within` can make a difference: only when it asks for more replicas than
/// `per_replica` does, i.e. when one replica's share takes longer than `drain_within`.
fn drain_binds(sc: &Scenario, drain_within: u64) -> bool {
    sc.per_replica as f64 > RATE * drain_within as f64
}

/// The policies compared, each with its key for `--timeline`. The `shoal-drain` row only
/// where `drain_within` can bind (else it is the `shoal` row again), unless `always`.
fn controllers(
    sc: &Scenario,
    min: u32,
    drain_within: u64,
    always: bool,
) -> Vec<(&'static str, Controller)> {
    let mut list = vec![("shoal", Controller::shoal("shoal", sc, min, None))];
    if always || drain_binds(sc, drain_within) {
        list.push((
            "shoal-drain",
            Controller::shoal("shoal, drain_within", sc, min, Some(drain_within)),
        ));
    }
    list.extend([
        (
            "keda-cached",
            Controller::keda("KEDA, 30 s poll (cached)", sc, min, Reads::Every(30_000)),
        ),
        (
            "keda",
            Controller::keda("KEDA, read at each 15 s sync", sc, min, Reads::AtTick),
        ),
    ]);
    list
}

fn main() -> ExitCode {
    let options = match parse() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    if let Some((trace, policy)) = &options.timeline {
        return timeline(&options, trace, policy);
    }
    report(&options);
    ExitCode::SUCCESS
}

fn scenario(o: &Options, per_replica: u64, startup: f64) -> Scenario {
    Scenario {
        shoal_down_stabilization: o
            .shoal_down_stabilization
            .map(std::time::Duration::from_secs_f64),
        per_replica,
        max: o.max,
        startup: ((startup * 1000.0) as u64).div_ceil(STEP_MS) * STEP_MS,
    }
}

fn report(o: &Options) {
    println!("# Backlog drain: shoal vs a KEDA-equivalent policy, simulated\n");
    println!(
        "Same engine (`shoal_autoscale::Autoscaler`), same traces, same replicas: each ready \
         replica consumes {RATE} msg/s; `max: {}`; `drain_within: {}s` in the `shoal, \
         drain_within` rows (shown only where it can bind: `per_replica` above {RATE} × {} \
         messages). Cells: the median over a {n} × {n} grid of clock phases (reads or KEDA's \
         poll × ticks); times also give (min–max). Times count from the event's start; \
         replica-seconds and scale changes from the event to the end of the run. Drained: the \
         backlog, after its peak, back at or below its largest value of the minute before the \
         event plus one replica's per-second capacity ({RATE} messages). Max lag: the oldest \
         waiting message's age.\n",
        o.max,
        o.drain_within,
        o.drain_within,
        n = o.phases
    );
    if let Some(d) = o.shoal_down_stabilization {
        println!("The shoal rows run with `scale_down.stabilization: {d}s` (default 30s).\n");
    }
    println!("Traces:\n");
    for trace in Trace::all() {
        println!("- **{}**: {}", trace.name, trace.description);
    }
    for &per_replica in &o.per_replica {
        for &startup in &o.startups {
            let sc = scenario(o, per_replica, startup);
            println!(
                "\n## `per_replica: {per_replica}`, replica start-up {} s\n",
                sc.startup as f64 / 1000.0
            );
            println!(
                "| trace | policy | first scale-up (s) | drained (s) | peak backlog | max lag (s) | replica-seconds | scale changes (reversals) | peak replicas |"
            );
            println!("|---|---|---|---|---|---|---|---|---|");
            for trace in Trace::all() {
                for (_, ctl) in controllers(&sc, trace.min, o.drain_within, false) {
                    let outcomes: Vec<Outcome> = ctl
                        .phases(o.phases)
                        .into_iter()
                        .map(|phase| {
                            Run {
                                trace: &trace,
                                controller: &ctl,
                                scenario: sc,
                                phase,
                                all_decisions: false,
                            }
                            .simulate()
                        })
                        .collect();
                    println!(
                        "| {} | {} | {} |",
                        trace.name,
                        ctl.name,
                        row(&trace, &outcomes)
                    );
                }
            }
        }
    }
}

/// The cells of one row: medians over the phases, with the range of the times.
fn row(trace: &Trace, outcomes: &[Outcome]) -> String {
    let times = |f: &dyn Fn(&Outcome) -> Option<f64>| {
        let mut v: Vec<Option<f64>> = outcomes.iter().map(f).collect();
        // `None` (never) sorts last.
        v.sort_by(|a, b| match (a, b) {
            (Some(a), Some(b)) => a.total_cmp(b),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => std::cmp::Ordering::Equal,
        });
        let show = |x: &Option<f64>| x.map_or("never".to_owned(), |x| format!("{x:.1}"));
        let (lo, mid, hi) = (&v[0], &v[v.len() / 2], &v[v.len() - 1]);
        if lo == hi {
            show(mid)
        } else {
            format!("{} ({}–{})", show(mid), show(lo), show(hi))
        }
    };
    let median = |f: &dyn Fn(&Outcome) -> f64| {
        let mut v: Vec<f64> = outcomes.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let drained = if !trace.drains {
        "—".to_owned()
    } else if outcomes.iter().all(|o| !o.backed_up) {
        "— (never backed up)".to_owned()
    } else {
        times(&|o: &Outcome| o.drained)
    };
    format!(
        "{} | {} | {:.0} | {:.1} | {:.0} | {:.0} ({:.0}) | {:.0}",
        times(&|o: &Outcome| o.first_scale_up),
        drained,
        median(&|o: &Outcome| o.peak_backlog),
        median(&|o: &Outcome| o.max_lag),
        median(&|o: &Outcome| o.replica_seconds),
        median(&|o: &Outcome| f64::from(o.changes)),
        median(&|o: &Outcome| f64::from(o.reversals)),
        median(&|o: &Outcome| f64::from(o.peak_replicas)),
    )
}

fn timeline(o: &Options, trace: &str, policy: &str) -> ExitCode {
    let trace = match trace {
        "a" => Trace::burst(0),
        "a1" => Trace::burst(1),
        "b" => Trace::spike(),
        "c" => Trace::ramp(),
        "d" => Trace::steady(),
        other => {
            eprintln!("unknown trace {other}: a, a1, b, c or d");
            return ExitCode::from(2);
        }
    };
    let sc = scenario(o, o.per_replica[0], o.startups[0]);
    let Some((_, ctl)) = controllers(&sc, trace.min, o.drain_within, true)
        .into_iter()
        .find(|(key, _)| *key == policy)
    else {
        eprintln!("unknown policy {policy}: shoal, shoal-drain, keda-cached or keda");
        return ExitCode::from(2);
    };
    let out = Run {
        trace: &trace,
        controller: &ctl,
        scenario: sc,
        phase: Phase::default(),
        all_decisions: true,
    }
    .simulate();
    println!(
        "{} under {}, phase 0, start-up {} ms\n",
        trace.name, ctl.name, sc.startup
    );
    println!("| t (s) | backlog | ready | count | reason |");
    println!("|---|---|---|---|---|");
    for c in &out.log {
        println!(
            "| {:.1} | {:.0} | {} | {} → {} | {} |",
            c.at, c.backlog, c.ready, c.from, c.to, c.reason
        );
    }
    println!(
        "\nfirst scale-up {:?} s, drained {:?} s (threshold {:.0}), peak backlog {:.0}, max lag {:.1} s, \
         {:.0} replica-seconds, {} changes ({} reversals), peak {} replicas, {:.0} left",
        out.first_scale_up,
        out.drained,
        out.threshold,
        out.peak_backlog,
        out.max_lag,
        out.replica_seconds,
        out.changes,
        out.reversals,
        out.peak_replicas,
        out.left
    );
    ExitCode::SUCCESS
}
