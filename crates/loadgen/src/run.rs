//! Running a [`Plan`]: generator threads, their workers, and the collector.
//!
//! Like wrk, each generator thread runs its own single-threaded event loop with its share
//! of the connections, so nothing on the hot path is shared but one atomic counter: the
//! next request number, for `-n`, the open model's schedule and, through [`Rotation`], the
//! URL it goes to (so weighted URLs interleave across all connections). Each thread records
//! into its own [`Recorder`] (behind a lock that only that thread takes, so never
//! contended) and hands it to the collector once a second; the collector, on the
//! caller's runtime, merges those into per-second points and totals, samples the
//! generator's CPU, polls shoal's admin API and drives the progress bar.
//!
//! A scenario run (`--scenario`) has the same threads, workers and collector; a worker runs
//! user flows instead of single requests. The shared counter then numbers flows: it bounds
//! `-n`, times the open model's arrivals (`--rate` flows/s) and, through [`Rotation`] over
//! the user types' weights, picks each open-model flow's user type (closed model: user *k*
//! is of the type at position *k*, so the `-c` users split by weight). In the open model a
//! flow that waited for a free worker has its first step's latency counted from its due
//! time, like a plain request; later steps count from their send. Think time is not latency.
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, Sleep, sleep_until};

use crate::admin::AdminPoller;
use crate::client::{
    Answer, Client, Conn, ErrorKind, H2, PreflightError, SendError, StepRequest, TlsSetupError,
    preflight,
};
use crate::cpu;
use crate::h1::Keep;
use crate::pick::Rotation;
use crate::plan::{Model, Plan};
use crate::progress::Progress;
use crate::record::Recorder;
use crate::report::{Report, Second};
use crate::scenario::{self, CaptureFrom, Step};
use crate::schedule::Schedule;
use crate::schedule::user_start;

/// How to run, beyond the plan.
#[derive(Default)]
pub struct RunOptions {
    /// Show a live progress bar on stderr (the caller checks that stderr is a terminal).
    pub progress: bool,
    /// When this completes, stop early and report what was measured so far (Ctrl-C).
    pub interrupt: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
}

impl std::fmt::Debug for RunOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunOptions")
            .field("progress", &self.progress)
            .field("interrupt", &self.interrupt.is_some())
            .finish()
    }
}

/// Why a run could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A target is unreachable.
    #[error(transparent)]
    Unreachable(#[from] PreflightError),
    /// Bad TLS settings.
    #[error(transparent)]
    Tls(#[from] TlsSetupError),
    /// A generator thread could not be started.
    #[error("cannot start a generator thread: {0}")]
    Thread(std::io::Error),
}

/// The timer's resolution: a request picked up later than this after its due time waited
/// for a connection.
const TIMER_TICK: Duration = Duration::from_millis(1);

/// What every generator thread shares.
#[derive(Debug)]
struct Shared {
    plan: Arc<Plan>,
    client: Client,
    /// When the run (second 0, request 0) starts.
    start: Instant,
    /// Closed model: the end (`-d`); open model: the end of the schedule.
    deadline: Option<Instant>,
    /// The next request number.
    next: AtomicU64,
    /// Request number → target.
    rotation: Rotation,
    stop: AtomicBool,
}

/// One thread's recorder, handed to the collector.
#[derive(Debug)]
struct Flush {
    thread: usize,
    second: u64,
    rec: Recorder,
    last: bool,
}

/// Run `plan` to its end (or until `opts.interrupt`), then report.
pub async fn run(mut plan: Plan, opts: RunOptions) -> Result<Report, RunError> {
    let connect_timeout = plan.timeout.min(Duration::from_secs(5));
    preflight(&mut plan, connect_timeout).await?;
    let plan = Arc::new(plan);
    let client = Client::new(plan.clone())?;
    let threads = plan.threads.min(plan.connections).max(1) as usize;
    // A little lead so that every thread is up before request 0 is due.
    let start = Instant::now() + Duration::from_millis(5);
    let deadline = match &plan.model {
        Model::Open(s) => Some(start + s.duration()),
        Model::Closed { .. } => plan.duration.map(|d| start + d),
    };
    let shared = Arc::new(Shared {
        plan: plan.clone(),
        client,
        start,
        deadline,
        next: AtomicU64::new(0),
        rotation: Rotation::new(&match &plan.scenario {
            Some(s) => s.users.iter().map(|u| u.weight).collect::<Vec<_>>(),
            None => plan.targets.iter().map(|t| t.weight).collect(),
        }),
        stop: AtomicBool::new(false),
    });
    let (tx, mut rx) = mpsc::unbounded_channel::<Flush>();
    let (stop_tx, stop_rx) = watch::channel(false);
    let cpu_before = cpu::process_cpu();
    let mut handles = Vec::with_capacity(threads);
    for t in 0..threads {
        let users: Vec<u32> = (0..plan.connections)
            .filter(|u| *u as usize % threads == t)
            .collect();
        let (shared, tx, stop_rx) = (shared.clone(), tx.clone(), stop_rx.clone());
        let h = std::thread::Builder::new()
            .name(format!("load-{t}"))
            .spawn(move || generator_thread(t, users, shared, tx, stop_rx))
            .map_err(RunError::Thread)?;
        handles.push(h);
    }
    drop(tx);

    let admin = plan.admin.clone().map(|a| AdminPoller::start(a, start));
    let mut progress = Progress::new(opts.progress, &plan);
    let mut collector = Collector::new(threads, blank(&plan));
    let mut interrupt = opts.interrupt;
    let mut interrupted = None;
    let mut tick = tokio::time::interval_at(start + Duration::from_secs(1), Duration::from_secs(1));
    let mut cpu_last = (Instant::now(), cpu_before);
    let mut cpu_series = Vec::new();
    loop {
        tokio::select! {
            msg = rx.recv() => match msg {
                Some(f) => {
                    for s in collector.add(f) {
                        progress.second(&s, shared.next.load(Ordering::Relaxed));
                    }
                }
                None => break,
            },
            _ = tick.tick() => {
                let now = Instant::now();
                let c = cpu::process_cpu();
                if let (Some(a), Some(b)) = (cpu_last.1, c) {
                    cpu_series.push(cpu::utilization(b.saturating_sub(a), now - cpu_last.0, threads as u32));
                }
                cpu_last = (now, c);
                progress.tick(now - start);
            }
            _ = async { interrupt.as_mut().expect("guarded").await }, if interrupt.is_some() && interrupted.is_none() => {
                interrupted = Some(Instant::now());
                shared.stop.store(true, Ordering::Relaxed);
                let _ = stop_tx.send(true);
            }
        }
    }
    for h in handles {
        let _ = h.join();
    }
    let end = Instant::now();
    progress.finish();
    let scaling = match admin {
        Some(a) => a.stop().await,
        None => Vec::new(),
    };
    let cpu_total = match (cpu_before, cpu::process_cpu()) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a)),
        _ => None,
    };
    let (total, series) = collector.finish();
    let elapsed = end.saturating_duration_since(start);
    let unsent = match &plan.model {
        Model::Open(s) => {
            let until = interrupted.map_or(s.duration(), |i| i.saturating_duration_since(start));
            let due = s.due_by(until).min(plan.requests.unwrap_or(u64::MAX));
            let begun = match &plan.scenario {
                Some(_) => total.flows.iter().map(|f| f.started).sum(),
                None => total.attempted,
            };
            due.saturating_sub(begun)
        }
        Model::Closed { .. } => 0,
    };
    Ok(Report::new(
        &plan,
        &total,
        series,
        scaling,
        crate::report::RunFacts {
            elapsed,
            interrupted: interrupted.is_some(),
            unsent,
            cpu: cpu_total.map(|c| cpu::utilization(c, elapsed, threads as u32)),
            cpu_series,
            threads: threads as u32,
        },
    ))
}

/// Merges the threads' recorders into per-second points and totals.
#[derive(Debug)]
struct Collector {
    total: Recorder,
    pending: BTreeMap<u64, Recorder>,
    /// Per thread: the last second it handed over, and whether it has finished.
    reported: Vec<(Option<u64>, bool)>,
    series: Vec<Second>,
    /// An empty recorder of the run's shape.
    blank: Recorder,
}

/// An empty recorder for `plan`: per URL, or per scenario step and user type.
fn blank(plan: &Plan) -> Recorder {
    match &plan.scenario {
        Some(s) => Recorder::for_scenario(s.steps.len(), s.users.len()),
        None => Recorder::new(plan.targets.len()),
    }
}

impl Collector {
    fn new(threads: usize, blank: Recorder) -> Collector {
        Collector {
            total: blank.empty_like(),
            pending: BTreeMap::new(),
            reported: vec![(None, false); threads],
            series: Vec::new(),
            blank,
        }
    }

    /// Take a thread's recorder; returns the seconds that became complete.
    fn add(&mut self, f: Flush) -> Vec<Second> {
        self.pending
            .entry(f.second)
            .or_insert_with(|| self.blank.empty_like())
            .merge(&f.rec);
        let r = &mut self.reported[f.thread];
        r.0 = Some(r.0.map_or(f.second, |s| s.max(f.second)));
        r.1 |= f.last;
        // A second is complete once every live thread has handed over that second.
        let complete = self
            .reported
            .iter()
            .filter(|(_, done)| !done)
            .map(|(s, _)| *s)
            .min();
        let upto = match complete {
            Some(None) => return Vec::new(),
            Some(Some(s)) => s,
            None => u64::MAX,
        };
        self.close_upto(upto)
    }

    fn close_upto(&mut self, upto: u64) -> Vec<Second> {
        let mut closed = Vec::new();
        while let Some(entry) = self.pending.first_entry() {
            if *entry.key() > upto {
                break;
            }
            let (t, rec) = entry.remove_entry();
            self.total.merge(&rec);
            let s = Second::of(t, &rec);
            self.series.push(s.clone());
            closed.push(s);
        }
        closed
    }

    fn finish(mut self) -> (Recorder, Vec<Second>) {
        self.close_upto(u64::MAX);
        (self.total, self.series)
    }
}

/// What the workers of one generator thread share.
struct Thread {
    shared: Arc<Shared>,
    rec: Mutex<Recorder>,
    /// HTTP/2 connections, one per origin, shared by this thread's workers.
    h2: Mutex<Vec<Option<H2>>>,
}

impl Thread {
    /// This thread's recorder. Only its own tasks and its once-a-second hand-over take the
    /// lock, all on this thread, so it is never contended.
    fn rec(&self) -> MutexGuard<'_, Recorder> {
        self.rec.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn h2(&self) -> MutexGuard<'_, Vec<Option<H2>>> {
        self.h2.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn generator_thread(
    index: usize,
    users: Vec<u32>,
    shared: Arc<Shared>,
    tx: mpsc::UnboundedSender<Flush>,
    mut stop: watch::Receiver<bool>,
) {
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        let _ = tx.send(Flush {
            thread: index,
            second: 0,
            rec: blank(&shared.plan),
            last: true,
        });
        return;
    };
    let thread = Arc::new(Thread {
        shared: shared.clone(),
        rec: Mutex::new(blank(&shared.plan)),
        h2: Mutex::new(vec![None; shared.plan.origins.len()]),
    });
    let second = Arc::new(AtomicU64::new(0));
    runtime.block_on({
        let (thread, second, tx) = (thread.clone(), second.clone(), tx.clone());
        async move {
            // Hand the recorder over at every second boundary.
            tokio::spawn({
                let (thread, second) = (thread.clone(), second.clone());
                async move {
                    loop {
                        let k = second.load(Ordering::Relaxed);
                        sleep_until(thread.shared.start + Duration::from_secs(k + 1)).await;
                        let rec = std::mem::replace(&mut *thread.rec(), blank(&thread.shared.plan));
                        second.store(k + 1, Ordering::Relaxed);
                        let _ = tx.send(Flush {
                            thread: index,
                            second: k,
                            rec,
                            last: false,
                        });
                    }
                }
            });
            let workers: Vec<_> = users
                .into_iter()
                .map(|u| tokio::spawn(worker(thread.clone(), u)))
                .collect();
            let all = async {
                for w in workers {
                    let _ = w.await;
                }
            };
            tokio::select! {
                _ = all => {}
                _ = stop.wait_for(|s| *s) => {}
            }
        }
    });
    // Drop every task (and connection) before the last hand-over.
    drop(runtime);
    let rec = std::mem::replace(&mut *thread.rec(), blank(&shared.plan));
    let _ = tx.send(Flush {
        thread: index,
        second: second.load(Ordering::Relaxed),
        rec,
        last: true,
    });
}

async fn worker(thread: Arc<Thread>, user: u32) {
    let shared = thread.shared.clone();
    let plan = &shared.plan;
    if plan.scenario.is_some() {
        return flow_worker(thread, user).await;
    }
    let mut conns: Vec<Option<Conn>> = plan.origins.iter().map(|_| None).collect();
    // One timer per worker, re-armed for each request.
    let timer = tokio::time::sleep(plan.timeout);
    tokio::pin!(timer);
    match &plan.model {
        Model::Closed { spawn_rate } => {
            sleep_until(shared.start + user_start(user, *spawn_rate)).await;
            loop {
                let begin = Instant::now();
                if shared.stop.load(Ordering::Relaxed)
                    || shared.deadline.is_some_and(|d| begin >= d)
                {
                    break;
                }
                let i = shared.next.fetch_add(1, Ordering::Relaxed);
                if plan.requests.is_some_and(|n| i >= n) {
                    break;
                }
                let t = shared.rotation.target(i);
                let outcome =
                    request(&thread, &mut conns, &mut timer, What::Target(t), begin).await;
                let latency = Instant::now() - begin;
                thread.rec().record(t, &outcome, latency, None);
            }
        }
        Model::Open(schedule) => {
            while let Some(Due {
                i,
                due,
                sent,
                waited,
            }) = next_due(&thread, schedule).await
            {
                let t = shared.rotation.target(i);
                let outcome = request(&thread, &mut conns, &mut timer, What::Target(t), sent).await;
                let end = Instant::now();
                let from = if waited { due } else { sent };
                thread
                    .rec()
                    .record(t, &outcome, end - from, Some(end - sent));
            }
        }
    }
}

/// The open model's next request (or flow) to send, once it is due.
struct Due {
    /// Its number in the schedule.
    i: u64,
    /// When the schedule wanted it sent.
    due: Instant,
    /// When it is sent.
    sent: Instant,
    /// It waited for a connection or a free worker (the earlier requests were slow): the
    /// server's doing, so its latency counts from `due`.
    waited: bool,
}

/// Take the open model's next place in the schedule, sleep until it is due and record the
/// send lag; None once the run is over (stopped, all sent, past the schedule's end).
async fn next_due(thread: &Thread, schedule: &Schedule) -> Option<Due> {
    let shared = &thread.shared;
    if shared.stop.load(Ordering::Relaxed) {
        return None;
    }
    let i = shared.next.fetch_add(1, Ordering::Relaxed);
    if shared.plan.requests.is_some_and(|n| i >= n) {
        return None;
    }
    let due = shared.start + schedule.time_of(i)?;
    let ready = Instant::now();
    // Past the end of the schedule, a backlog is reported as unsent, not sent.
    if shared.deadline.is_some_and(|d| ready >= d) {
        return None;
    }
    if due > ready {
        sleep_until(due).await;
    }
    let sent = Instant::now();
    // Waiting is the server's doing and counts from the due time; a timer that fired late
    // (tokio's timer has 1 ms ticks) is the generator's, reported as send lag instead.
    let waited = ready > due + TIMER_TICK;
    thread
        .rec()
        .record_send(sent.saturating_duration_since(due), waited);
    Some(Due {
        i,
        due,
        sent,
        waited,
    })
}

/// What a request sends: a URL of the command line, or a scenario step's request.
#[derive(Debug, Clone, Copy)]
enum What<'a> {
    Target(usize),
    Step(&'a StepRequest, &'a Keep),
}

/// One request on this worker's connection to the target's origin, opening it if needed
/// (and once more if the server had closed it while idle), within the request timeout.
async fn request(
    thread: &Thread,
    conns: &mut [Option<Conn>],
    timer: &mut Pin<&mut Sleep>,
    what: What<'_>,
    begin: Instant,
) -> Result<Answer, ErrorKind> {
    let shared = &thread.shared;
    let origin = match what {
        What::Target(t) => shared.plan.targets[t].origin,
        What::Step(r, _) => r.origin,
    };
    let slot = &mut conns[origin];
    let deadline = begin + shared.plan.timeout;
    if timer.is_elapsed() {
        timer.as_mut().reset(deadline);
    }
    let attempt = async {
        for _ in 0..2 {
            if !slot.as_ref().is_some_and(Conn::is_open) {
                *slot = Some(connect(thread, origin).await?);
            }
            let conn = slot.as_mut().expect("just set");
            let sent = match what {
                What::Target(t) => shared.client.send(conn, t).await,
                What::Step(r, keep) => shared.client.send_step(conn, r, keep).await,
            };
            match sent {
                Ok(a) => return Ok(a),
                Err(SendError::Stale) => *slot = None,
                Err(SendError::Failed(kind)) => return Err(kind),
            }
        }
        Err(ErrorKind::Closed)
    };
    // The timer is re-armed only when it fires (to this request's deadline, if that is
    // later): re-arming it for every request costs more than the request's own parsing.
    let result = {
        let mut attempt = pin!(attempt);
        loop {
            tokio::select! {
                biased;
                r = &mut attempt => break r,
                () = timer.as_mut() => {
                    if Instant::now() >= deadline {
                        break Err(ErrorKind::Timeout);
                    }
                    timer.as_mut().reset(deadline);
                }
            }
        }
    };
    if result.is_err() {
        *slot = None;
    }
    result
}

/// A new connection; HTTP/2 ones are shared by the thread's workers.
async fn connect(thread: &Thread, origin: usize) -> Result<Conn, ErrorKind> {
    let shared_h2 = thread.h2()[origin].clone().filter(|h| !h.is_closed());
    if let Some(h) = shared_h2 {
        return Ok(Conn::H2(h));
    }
    let c = thread.shared.client.connect(origin).await?;
    if let Conn::H2(h) = &c {
        thread.h2()[origin] = Some(h.clone());
    }
    Ok(c)
}

/// Think times: xorshift64*, seeded per worker (no need for more).
#[derive(Debug)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng((seed + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Past the run's end, or stopped?
fn over(shared: &Shared, now: Instant) -> bool {
    shared.stop.load(Ordering::Relaxed) || shared.deadline.is_some_and(|d| now >= d)
}

/// A scenario worker: closed model, one user looping its flow; open model, one slot that
/// runs the flows due, one at a time.
async fn flow_worker(thread: Arc<Thread>, user: u32) {
    let shared = thread.shared.clone();
    let plan = &shared.plan;
    let mut conns: Vec<Option<Conn>> = plan.origins.iter().map(|_| None).collect();
    let timer = tokio::time::sleep(plan.timeout);
    tokio::pin!(timer);
    let mut rng = Rng::new(u64::from(user));
    let mut w = FlowWorker {
        thread: &thread,
        conns: &mut conns,
        timer: &mut timer,
        rng: &mut rng,
    };
    match &plan.model {
        Model::Closed { spawn_rate } => {
            sleep_until(shared.start + user_start(user, *spawn_rate)).await;
            let kind = shared.rotation.target(u64::from(user));
            loop {
                if over(&shared, Instant::now()) {
                    break;
                }
                let i = shared.next.fetch_add(1, Ordering::Relaxed);
                if plan.requests.is_some_and(|n| i >= n) {
                    break;
                }
                w.flow(kind, u64::from(user), i, None).await;
            }
        }
        Model::Open(schedule) => {
            while let Some(Due { i, due, waited, .. }) = next_due(&thread, schedule).await {
                let kind = shared.rotation.target(i);
                w.flow(kind, i, i, Some((due, waited))).await;
            }
        }
    }
}

/// What one scenario worker owns.
struct FlowWorker<'a, 't> {
    thread: &'a Thread,
    conns: &'a mut [Option<Conn>],
    timer: &'a mut Pin<&'t mut Sleep>,
    rng: &'a mut Rng,
}

impl FlowWorker<'_, '_> {
    /// One flow of user type `kind`, step after step, until a step fails or the run ends.
    /// `arrival`: open model, its due time and whether it waited for this worker.
    async fn flow(&mut self, kind: usize, user: u64, flow: u64, arrival: Option<(Instant, bool)>) {
        let shared = &self.thread.shared;
        let plan = &shared.plan;
        let sc = plan.scenario.as_ref().expect("a scenario run");
        let ut = &sc.users[kind];
        let mut vars = vec![String::new(); ut.vars.len()];
        vars[0] = user.to_string();
        vars[1] = flow.to_string();
        self.thread.rec().flows[kind].started += 1;
        let count = ut.steps.len();
        for (k, si) in ut.steps.clone().enumerate() {
            let step = &sc.steps[si];
            if over(shared, Instant::now()) {
                // Cut off by the end of the run: neither completed nor failed.
                return;
            }
            let req = match build(step, &vars, &plan.headers) {
                Ok(r) => r,
                Err(why) => {
                    let mut rec = self.thread.rec();
                    rec.record_unsendable(si, why);
                    rec.flows[kind].failed += 1;
                    return;
                }
            };
            let keep = Keep {
                body: step.keep_body,
                headers: step
                    .captures
                    .iter()
                    .filter_map(|c| match &c.from {
                        CaptureFrom::Header(h) => Some(h.clone()),
                        _ => None,
                    })
                    .collect(),
            };
            let sent = Instant::now();
            let outcome = request(
                self.thread,
                self.conns,
                self.timer,
                What::Step(&req, &keep),
                sent,
            )
            .await;
            let end = Instant::now();
            let from = match arrival {
                Some((due, true)) if k == 0 => due,
                _ => sent,
            };
            let failure = check(step, &outcome, &mut vars);
            let failed = failure.is_some();
            {
                let mut rec = self.thread.rec();
                rec.record_step(
                    si,
                    &outcome,
                    end - from,
                    arrival.is_some().then(|| end - sent),
                    failure,
                );
                if failed {
                    rec.flows[kind].failed += 1;
                    return;
                }
            }
            // Think after each step; an open-model flow ends with its last step.
            let ends_flow = k + 1 == count && arrival.is_some();
            let pause = step.think.at(self.rng.unit());
            if !ends_flow && !pause.is_zero() {
                let wake = Instant::now() + pause;
                sleep_until(shared.deadline.map_or(wake, |d| wake.min(d))).await;
            }
        }
        self.thread.rec().flows[kind].completed += 1;
    }
}

/// A step's request with the flow's variables filled in; why not, if they make it invalid.
fn build(step: &Step, vars: &[String], extra: &http::HeaderMap) -> Result<StepRequest, String> {
    let path = step.path.render(vars);
    let path = http::uri::PathAndQuery::try_from(path.as_str())
        .map_err(|_| format!("invalid URL after substitution: {path}"))?;
    let mut headers = extra.clone();
    for (name, t) in &step.headers {
        let v = http::HeaderValue::from_str(&t.render(vars))
            .map_err(|_| format!("invalid {name} header after substitution"))?;
        headers.insert(name.clone(), v);
    }
    Ok(StepRequest {
        origin: step.origin,
        method: step.method.clone(),
        path,
        headers,
        body: scenario::render_body(step, vars),
    })
}

/// A step's check: the expected status, then every capture (stored in `vars`). `None` if
/// it passed, else why not.
fn check(step: &Step, outcome: &Result<Answer, ErrorKind>, vars: &mut [String]) -> Option<String> {
    let a = match outcome {
        Ok(a) => a,
        Err(kind) => return Some(kind.name().to_owned()),
    };
    if !step.expected(a.status) {
        return Some(format!(
            "status {} (expected {})",
            a.status,
            step.expect_text()
        ));
    }
    let (body, headers) = a
        .kept
        .as_deref()
        .map_or((&[][..], &[][..]), |k| (&k.body[..], &k.headers[..]));
    for c in &step.captures {
        match c.extract(body, headers) {
            Some(v) => vars[c.slot] = v,
            None => return Some(format!("capture `{}` not found", c.name)),
        }
    }
    None
}
