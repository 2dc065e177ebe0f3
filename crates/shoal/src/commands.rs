//! What each subcommand does. Exit codes: 0 success, 1 failure, 2 invalid stack file or usage.
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use hyper::Method;
use shoal_app::{ClusterOptions, Discovery, Shoal, StartOptions};
use shoal_config::{DEMO_STACK, Stack};
use shoal_core::{AutoscaleBacklog, EventKind};

use crate::admin_client::AdminClient;
use crate::cli::*;

/// Exit code for an invalid stack file.
pub(crate) const EXIT_BAD_CONFIG: u8 = 2;

pub(crate) fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let quiet = matches!(&cli.command, Command::Up(up) if up.quiet);
    init_tracing(cli.verbose, quiet);
    match cli.command {
        Command::Up(args) => up(args),
        Command::Check(args) => Ok(check(&args.file)),
        Command::Reload(args) => block_on(reload(args)),
        Command::Status(args) => block_on(status(args)),
        Command::Top(args) => crate::top::run(&args),
        Command::Scale(args) => block_on(scale(args)),
        Command::Rollout(args) => match args.command {
            RolloutCommand::Status(args) => block_on(rollout_status(args)),
            RolloutCommand::Undo(args) => block_on(rollout(args, "undo")),
            RolloutCommand::Restart(args) => block_on(rollout(args, "restart")),
        },
        Command::Weight(args) => block_on(weight(args)),
        Command::Events(args) => block_on(events(args)),
        Command::Logs(args) => block_on(logs(args)),
        Command::Down(args) => block_on(down(args)),
        Command::Restart(args) => block_on(rollout(args, "restart")),
        Command::Init(args) => init(&args),
        Command::SampleApp(args) => block_on(sample_app(args)),
        Command::Load(args) => load(&args),
        Command::Certs(args) => match args.command {
            CertsCommand::Dev(args) => crate::certs::dev(&args),
        },
        Command::K8s(args) => crate::k8s::run(args),
    }
}

/// Logs go to stderr: info by default, warnings and errors only with `up --quiet`, more
/// with `-v`; `RUST_LOG` overrides all of these. Events are not logged at info level (the
/// planes log them at debug): `shoal up` prints each event once, itself. rustls warns about
/// what a client sent (an IP address as SNI, say) once per connection: a client could flood
/// the log, so it is heard from at error level only, unless asked (`-vv`, `RUST_LOG`).
fn init_tracing(verbose: u8, quiet: bool) {
    let default = match verbose {
        0 if quiet => "warn,rustls=error",
        0 => "info,hyper=warn,rustls=error",
        1 => "debug,hyper=info,rustls=error",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // Colour only for a person at a terminal: a replica's stderr is a pipe to its log file.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_target(false)
        .with_writer(std::io::stderr)
        .try_init();
}

fn block_on<F: std::future::Future<Output = anyhow::Result<ExitCode>>>(
    f: F,
) -> anyhow::Result<ExitCode> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(f)
}

/// Load a stack file for `shoal up`, printing every problem on failure.
fn load_or_report(path: &Path) -> Result<Stack, ExitCode> {
    load_for_or_report(path, shoal_config::Runtime::Local, "started")
}

/// Load a stack file for `runtime`; on failure print every problem and that nothing was
/// `done` (started, rendered), and give the exit code for a bad file.
pub(crate) fn load_for_or_report(
    path: &Path,
    runtime: shoal_config::Runtime,
    done: &str,
) -> Result<Stack, ExitCode> {
    shoal_config::load_for(path, runtime).map_err(|diags| {
        eprintln!("{diags}");
        let n = diags.0.len();
        eprintln!(
            "{}: {n} problem{} found; nothing was {done}",
            path.display(),
            if n == 1 { "" } else { "s" }
        );
        ExitCode::from(EXIT_BAD_CONFIG)
    })
}

fn check(path: &Path) -> ExitCode {
    match load_or_report(path) {
        Ok(stack) => {
            // Certificates are read and checked as loading them would: every problem is an
            // error, certificates expiring within 30 days are warnings.
            let mut problems = 0;
            for ep in &stack.gateway.entrypoints {
                let Some(tls) = &ep.tls else {
                    continue;
                };
                let found = shoal_proxy::tls::check(tls);
                for e in &found.errors {
                    eprintln!("{}: entrypoint `{}`: {e}", path.display(), ep.name);
                }
                for w in &found.warnings {
                    eprintln!("{}: warning: entrypoint `{}`: {w}", path.display(), ep.name);
                }
                problems += found.errors.len();
            }
            problems += check_service_tls(path, &stack);
            if problems > 0 {
                eprintln!(
                    "{}: {problems} certificate problem{} found",
                    path.display(),
                    if problems == 1 { "" } else { "s" }
                );
                return ExitCode::from(EXIT_BAD_CONFIG);
            }
            let eps: Vec<String> = stack
                .gateway
                .entrypoints
                .iter()
                .map(|e| {
                    let kind = if e.tls.is_some() {
                        " (https)"
                    } else if e.redirect_to.is_some() {
                        " (redirects to https)"
                    } else {
                        ""
                    };
                    format!("{} on {}{kind}", e.name, e.listen)
                })
                .collect();
            println!(
                "{}: ok — {} service{}, {} route{}, entrypoint{} {}",
                path.display(),
                stack.services.len(),
                if stack.services.len() == 1 { "" } else { "s" },
                stack.routes.len(),
                if stack.routes.len() == 1 { "" } else { "s" },
                if eps.len() == 1 { "" } else { "s" },
                eps.join(", ")
            );
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

/// The services' `tls:` settings, built as the gateway builds them: a `ca` bundle that
/// cannot be read or holds no usable certificate is an error naming the service and the
/// file (the gateway would answer the service's requests with 502s);
/// `insecure_skip_verify: true` is a warning. Returns the number of errors.
fn check_service_tls(path: &Path, stack: &Stack) -> usize {
    let mut errors = 0;
    for service in &stack.services {
        let Some(tls) = &service.tls else {
            continue;
        };
        if tls.insecure_skip_verify {
            eprintln!(
                "{}: warning: service `{}`: tls.insecure_skip_verify is on: the replicas' \
                 certificates are NOT verified (encrypted, but anyone on the path can pose as \
                 a replica)",
                path.display(),
                service.name
            );
        }
        // Without `ca` the system's roots are used: nothing in the stack file to check.
        if tls.ca.is_none() {
            continue;
        }
        let settings = shoal_health::tls::TlsSettings {
            ca: tls.ca.clone(),
            server_name: tls.server_name.clone(),
            insecure_skip_verify: tls.insecure_skip_verify,
            alpn: Vec::new(),
        };
        if let Err(e) = shoal_health::ClientTls::new(settings) {
            eprintln!("{}: service `{}`: tls: {e}", path.display(), service.name);
            errors += 1;
        }
    }
    errors
}

fn up(args: UpArgs) -> anyhow::Result<ExitCode> {
    let discovery = match args.discovery {
        DiscoveryArg::Local => {
            for (flag, given) in [
                ("--kubeconfig", args.kubeconfig.is_some()),
                ("--namespace", args.namespace.is_some()),
            ] {
                if given {
                    eprintln!("error: {flag} is for `--discovery kubernetes` only");
                    return Ok(ExitCode::from(EXIT_USAGE));
                }
            }
            Discovery::Local
        }
        DiscoveryArg::Kubernetes => {
            if args.file.is_none() {
                eprintln!(
                    "error: `--discovery kubernetes` needs the stack file: --file FILE (the \
                     services' `image:` and `port:` say which pods to balance over)"
                );
                return Ok(ExitCode::from(EXIT_USAGE));
            }
            Discovery::Kubernetes(ClusterOptions {
                kubeconfig: args.kubeconfig.clone(),
                namespace: args.namespace.clone(),
                identity: None,
            })
        }
    };
    let runtime = discovery.runtime();
    let default_file = PathBuf::from("shoal.yaml");
    let (stack, path) = match (&args.file, args.demo) {
        (Some(f), _) => match load_for_or_report(f, runtime, "started") {
            Ok(s) => (s, Some(f.clone())),
            Err(code) => return Ok(code),
        },
        (None, false) if default_file.exists() => match load_or_report(&default_file) {
            Ok(s) => (s, Some(default_file.clone())),
            Err(code) => return Ok(code),
        },
        _ => (
            shoal_config::parse(DEMO_STACK, "<demo>").map_err(|d| anyhow::anyhow!("{d}"))?,
            None,
        ),
    };
    let state_dir = args
        .state_dir
        .clone()
        .unwrap_or_else(|| state_dir_for(path.as_deref()));
    let workers = stack.gateway.workers;
    let runtime = if workers == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        if workers > 0 {
            b.worker_threads(workers);
        }
        b.enable_all().build()?
    };
    let quiet = args.quiet;
    runtime.block_on(async move {
        let stack_desc = match &path {
            Some(p) => p.display().to_string(),
            None => "built-in demo stack (`shoal init` writes it to shoal.yaml)".to_owned(),
        };
        let n_services = stack.services.len();
        let schemes: Vec<(String, &str)> = stack
            .gateway
            .entrypoints
            .iter()
            .map(|e| {
                let scheme = if e.tls.is_some() {
                    "https"
                } else if e.redirect_to.is_some() {
                    "redirect"
                } else {
                    "http"
                };
                (e.name.clone(), scheme)
            })
            .collect();
        let routes = route_lines(&stack.routes);
        let opts = StartOptions {
            stack,
            // The demo adopts ./shoal.yaml on reload once `shoal init` has written it.
            demo_file: path.is_none().then(|| default_file.clone()),
            stack_path: path,
            state_dir,
            echo_logs: !args.quiet,
            color: std::io::IsTerminal::is_terminal(&std::io::stdout()),
            shoal_exe: std::env::current_exe().context("cannot find the shoal binary's own path")?,
            discovery,
        };
        let shoal = match Shoal::start(opts).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("error: {e}");
                return Ok(ExitCode::from(1));
            }
        };
        println!("shoal {} — {stack_desc}: {n_services} services, {} routes", env!("CARGO_PKG_VERSION"), routes.len());
        for line in &routes {
            println!("  route       {line}");
        }
        for (name, addr) in shoal.gateway_addrs() {
            match schemes.iter().find(|(n, _)| n == name).map(|(_, s)| *s) {
                Some("https") => println!("  gateway     https://{addr}/   (entrypoint {name})"),
                Some("redirect") => println!("  gateway     http://{addr}/   (entrypoint {name}, redirects to https)"),
                _ => println!("  gateway     http://{addr}/   (entrypoint {name})"),
            }
        }
        println!("  admin API   http://{}/api/v1/services", shoal.admin_addr());
        println!("  dashboard   http://{}/dashboard/", shoal.admin_addr());
        println!("  metrics     http://{}/metrics", shoal.admin_addr());
        if !quiet {
            println!("  try         shoal top · shoal status · shoal scale SERVICE N · shoal logs SERVICE -f · Ctrl-C or shoal down to stop");
        }
        let _ = std::io::stdout().flush();
        // Each event once, here (the planes log events at debug only); with --quiet, only
        // trouble.
        let mut events = shoal.events().subscribe();
        tokio::spawn(async move {
            use tokio::sync::broadcast::error::RecvError;
            loop {
                match events.recv().await {
                    Ok(e) if quiet && !e.kind.is_trouble() => {}
                    Ok(e) => println!("{}", format_event(&serde_json::to_value(&e).unwrap_or_default())),
                    Err(RecvError::Lagged(n)) => println!("({n} events not shown; `shoal events` has them)"),
                    Err(RecvError::Closed) => break,
                }
            }
        });
        shoal.run_until_signal().await?;
        println!("shoal stopped");
        Ok(ExitCode::SUCCESS)
    })
}

/// The banner's route lines, in the order routes are tried: `rule → service`, with the
/// entrypoints a route is limited to.
fn route_lines(routes: &[shoal_config::Route]) -> Vec<String> {
    routes
        .iter()
        .map(|r| {
            let to = match &r.split {
                Some(split) => split
                    .targets
                    .iter()
                    .map(|t| format!("{}={}", t.service, t.weight))
                    .collect::<Vec<_>>()
                    .join(" "),
                None => r.service.clone(),
            };
            let mut line = format!("{} → {to}", r.rule.source());
            if let Some(eps) = &r.entrypoints {
                line.push_str(&format!("   (entrypoints {})", eps.join(", ")));
            }
            line
        })
        .collect()
}

/// `.shoal` next to the stack file, or in the current folder for the demo.
fn state_dir_for(stack: Option<&Path>) -> PathBuf {
    match stack.and_then(Path::parent) {
        Some(dir) if !dir.as_os_str().is_empty() => dir.join(".shoal"),
        _ => PathBuf::from(".shoal"),
    }
}

/// Admin address and token: flags, else the stack file's admin section, else the default.
pub(crate) fn admin_client(args: &AdminArgs) -> AdminClient {
    let from_file = shoal_config::peek_admin(&args.file);
    let addr = args
        .admin
        .or_else(|| from_file.as_ref().map(|a| a.listen))
        .unwrap_or(shoal_config::DEFAULT_ADMIN_LISTEN);
    let token = args
        .token
        .clone()
        .or_else(|| from_file.and_then(|a| a.token));
    AdminClient::new(addr, token)
}

async fn reload(args: AdminArgs) -> anyhow::Result<ExitCode> {
    let client = admin_client(&args);
    match client.json(Method::POST, "/api/v1/reload", None).await {
        Ok(v) => {
            println!("{}", v["message"].as_str().unwrap_or("reloaded"));
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("reload rejected; the previous configuration keeps serving:\n{e}");
            Ok(ExitCode::from(EXIT_BAD_CONFIG))
        }
    }
}

async fn status(args: AdminArgs) -> anyhow::Result<ExitCode> {
    let client = admin_client(&args);
    let v = client.json(Method::GET, "/api/v1/services", None).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    print!("{}", status_table(&v));
    Ok(ExitCode::SUCCESS)
}

/// A service's failover counters, when anything happened: "12 retries, 3 hedges, ...".
fn failover_line(t: &serde_json::Value) -> Option<String> {
    let count = |k: &str| t[k].as_u64().unwrap_or(0);
    let mut parts: Vec<String> = [
        ("retries_total", "retries"),
        ("hedges_total", "hedges"),
        ("retries_refused_total", "retries over budget"),
        ("ejections_total", "ejections"),
        ("breaker_rejected_total", "rejected by the breaker"),
    ]
    .iter()
    .filter(|(k, _)| count(k) > 0)
    .map(|(k, label)| format!("{} {label}", count(k)))
    .collect();
    if let Some(b) = t["breaker"].as_str()
        && b != "closed"
    {
        parts.push(format!("circuit breaker {b}"));
    }
    (!parts.is_empty()).then(|| parts.join(", "))
}

/// A rollout in progress or rolled back, in one line ("rollout to v2: 1 of 3 replicas
/// updated, 0 ready"); None for none, or a complete one (the VERSION column tells).
fn rollout_line(r: &serde_json::Value) -> Option<String> {
    let version = r["version"].as_str()?;
    let why = r["message"]
        .as_str()
        .map(|m| format!(": {m}"))
        .unwrap_or_default();
    match r["state"].as_str()? {
        "progressing" => Some(format!(
            "rollout to {version} progressing: {} of {} replicas updated, {} ready{why}",
            r["updated"], r["desired"], r["updated_ready"]
        )),
        "rolledback" => Some(format!(
            "rollout to {version} rolled back{}{why}",
            r["previous"]
                .as_str()
                .map(|p| format!(" to {p}"))
                .unwrap_or_default()
        )),
        _ => None,
    }
}

/// A `kubectl get pods`-like table.
pub(crate) fn status_table(services: &serde_json::Value) -> String {
    let mut rows: Vec<[String; 11]> = vec![
        [
            "NAME", "STATE", "HEALTH", "READY", "PID", "PORT", "RESTARTS", "UPTIME", "CPU",
            "MEMORY", "VERSION",
        ]
        .map(String::from),
    ];
    let mut notes = Vec::new();
    for s in services.as_array().into_iter().flatten() {
        let name = s["name"].as_str().unwrap_or("?");
        rows.push([
            name.to_owned(),
            s["state"].as_str().unwrap_or("?").to_owned(),
            String::new(),
            format!("{}/{}", s["ready"], s["desired"]),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
        ]);
        for r in s["replicas"].as_array().into_iter().flatten() {
            let opt = |v: &serde_json::Value| {
                if v.is_null() {
                    "-".to_owned()
                } else {
                    v.to_string()
                }
            };
            let cpu = r["cpu_percent"]
                .as_f64()
                .map_or("-".into(), |c| format!("{c:.1}%"));
            let mem = r["rss_bytes"]
                .as_u64()
                .map_or("-".into(), |b| format!("{:.1}MiB", b as f64 / 1048576.0));
            let up = r["uptime_secs"]
                .as_f64()
                .filter(|u| *u > 0.0)
                .map_or("-".into(), human_duration);
            let health = r["traffic"]["health"].as_str().unwrap_or("-");
            // A pod (Kubernetes mode) in place of a process: its name, and its node where
            // the PID would be.
            let (who, pid_or_node) = match r["pod"]["name"].as_str() {
                Some(pod) => (
                    pod.to_owned(),
                    r["pod"]["node"].as_str().unwrap_or("-").to_owned(),
                ),
                None => (r["index"].to_string(), opt(&r["pid"])),
            };
            rows.push([
                format!("  {name}/{who}"),
                r["state"].as_str().unwrap_or("?").to_owned(),
                health.to_owned(),
                String::new(),
                pid_or_node,
                opt(&r["port"]),
                r["restarts"].to_string(),
                up,
                cpu,
                mem,
                r["version"].as_str().unwrap_or("-").to_owned(),
            ]);
            if let Some(m) = r["message"].as_str()
                && r["state"] != "ready"
            {
                notes.push(format!("{name}/{}: {m}", r["index"]));
            }
            if let Some(reason) = r["traffic"]["reason"].as_str() {
                notes.push(format!("{name}/{}: {reason}", r["index"]));
            }
        }
        if let Some(line) = failover_line(&s["traffic"]) {
            notes.push(format!("{name}: {line}"));
        }
        if let Some(line) = rollout_line(&s["rollout"]) {
            notes.push(format!("{name}: {line}"));
        }
    }
    // Kubernetes mode: the replicas are pods, and the column names their nodes.
    let pods = services
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| s["replicas"].as_array().into_iter().flatten())
        .any(|r| r["pod"].is_object());
    if pods {
        rows[0][4] = "NODE".to_owned();
    }
    let mut out = aligned(&rows, &notes);
    out.push_str(&autoscale_table(services));
    out
}

/// Rows as columns padded to their widest cell, then the notes, one per line.
fn aligned<const N: usize>(rows: &[[String; N]], notes: &[String]) -> String {
    let widths: Vec<usize> = (0..N)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    for n in notes {
        out.push_str(n);
        out.push('\n');
    }
    out
}

/// Autoscaled services, like `kubectl get hpa`: TARGETS as current/target per metric.
fn autoscale_table(services: &serde_json::Value) -> String {
    let mut rows = vec![
        [
            "AUTOSCALED",
            "TARGETS",
            "MIN",
            "MAX",
            "REPLICAS",
            "LAST SCALED",
        ]
        .map(String::from),
    ];
    let mut notes = Vec::new();
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    for s in services.as_array().into_iter().flatten() {
        let a = &s["autoscale"];
        if a.is_null() {
            continue;
        }
        let name = s["name"].as_str().unwrap_or("?");
        let last = a["last_scaled_ms"].as_u64().map_or("-".into(), |t| {
            format!(
                "{} ago",
                human_duration(now_ms.saturating_sub(t) as f64 / 1000.0)
            )
        });
        rows.push([
            name.to_owned(),
            a["targets"].as_str().unwrap_or("-").to_owned(),
            a["min"].to_string(),
            a["max"].to_string(),
            format!("{}/{}", s["ready"], s["desired"]),
            last,
        ]);
        let mut note = format!("{name}: {}", a["reason"].as_str().unwrap_or(""));
        if a["panic"] == true {
            note.push_str(" [panic mode]");
        }
        if a["held"].as_u64().unwrap_or(0) > 0 {
            note.push_str(&format!(" [{} requests held while it starts]", a["held"]));
        }
        notes.push(note);
        if let Ok(b) = serde_json::from_value::<AutoscaleBacklog>(a["backlog"].clone()) {
            let consumers = s["ready"].as_u64().unwrap_or(0) as u32;
            notes.push(format!("{name}: {}", backlog_summary(&b, consumers)));
        }
    }
    if rows.len() == 1 {
        return String::new();
    }
    format!("\n{}", aligned(&rows, &notes))
}

/// The queue behind a backlog target in one line: `backlog 1,234 (redis … group g), 4
/// consumers, 48.2/s per replica`, or why it is unknown.
pub(crate) fn backlog_summary(b: &AutoscaleBacklog, consumers: u32) -> String {
    if b.failures > 0 {
        let fallback = if b.fallback {
            " [fallback replica count in force]"
        } else {
            ""
        };
        return format!(
            "backlog unknown: {} failed read{} in a row: {}{fallback}",
            b.failures,
            if b.failures == 1 { "" } else { "s" },
            b.error.as_deref().unwrap_or("?")
        );
    }
    let Some(messages) = b.messages else {
        return format!("backlog not read yet ({})", b.source);
    };
    let mut line = format!(
        "backlog {} ({}), {consumers} consumer{}",
        thousands(messages),
        b.source,
        if consumers == 1 { "" } else { "s" }
    );
    if let Some(p) = b.partitions {
        line.push_str(&format!(" on {p} partitions"));
    }
    if let Some(rate) = b.rate_per_replica {
        line.push_str(&format!(", {rate:.1}/s per replica"));
    }
    line
}

/// `4,210`.
pub(crate) fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

pub(crate) fn human_duration(secs: f64) -> String {
    let s = secs as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{}s", s / 60, s % 60),
        _ => format!("{}h{}m", s / 3600, (s % 3600) / 60),
    }
}

async fn scale(args: ScaleArgs) -> anyhow::Result<ExitCode> {
    let client = admin_client(&args.admin);
    let path = format!("/api/v1/services/{}/scale", args.service);
    let done = client
        .json(
            Method::POST,
            &path,
            Some(serde_json::json!({ "replicas": args.replicas })),
        )
        .await?;
    let replicas = done["replicas"].as_u64().unwrap_or(args.replicas.into());
    println!("{}: scaled to {replicas} replicas", args.service);
    if let Some(note) = done["note"].as_str() {
        println!("{note}");
    }
    Ok(ExitCode::SUCCESS)
}

/// `shoal rollout undo|restart SERVICE`.
async fn rollout(args: RolloutServiceArgs, action: &str) -> anyhow::Result<ExitCode> {
    let client = admin_client(&args.admin);
    let path = format!("/api/v1/services/{}/rollout", args.service);
    let done = client
        .json(
            Method::POST,
            &path,
            Some(serde_json::json!({ "action": action })),
        )
        .await?;
    match done["message"].as_str() {
        Some(m) => println!("{}: {m}", args.service),
        None => println!("{}: rollout {action} started", args.service),
    }
    println!("follow it with `shoal rollout status {}`", args.service);
    Ok(ExitCode::SUCCESS)
}

/// What `shoal rollout status` makes of a service now: a line to print when it changes,
/// and whether (and how) it is over.
#[derive(Debug, PartialEq)]
pub(crate) enum RolloutView {
    /// Still rolling: this progress line.
    Waiting(String),
    /// Finished well (exit 0): this line.
    Done(String),
    /// Rolled back (exit 1): this line.
    Failed(String),
}

/// `service` as `GET /api/v1/services/{name}` answers it, as `shoal rollout status` sees it.
pub(crate) fn rollout_view(service: &serde_json::Value) -> RolloutView {
    let name = service["name"].as_str().unwrap_or("?");
    let r = &service["rollout"];
    let n = |k: &str| r[k].as_u64().unwrap_or(0);
    let Some(version) = r["version"].as_str() else {
        let mut versions: Vec<&str> = service["replicas"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r["version"].as_str())
            .collect();
        versions.sort_unstable();
        versions.dedup();
        return RolloutView::Done(match versions.as_slice() {
            [] => format!("{name} has had no rollout"),
            [one] => format!("{name} has had no rollout; it runs version {one}"),
            many => format!(
                "{name} has had no rollout; its replicas run versions {}",
                many.join(", ")
            ),
        });
    };
    let why = r["message"]
        .as_str()
        .map(|m| format!(": {m}"))
        .unwrap_or_default();
    match r["state"].as_str().unwrap_or("") {
        "complete" => RolloutView::Done(format!(
            "rollout of {name} to version {version} complete: {} of {} replicas updated and ready",
            n("updated_ready"),
            n("desired")
        )),
        "rolledback" => {
            let to = r["previous"]
                .as_str()
                .map(|p| format!(" to {p}"))
                .unwrap_or_default();
            // The supervisor's message says it again ("v2 rolled back to v1: why").
            let said = format!(": {version} rolled back{to}: ");
            let why = why
                .strip_prefix(&said)
                .map_or(why.clone(), |w| format!(": {w}"));
            RolloutView::Failed(format!(
                "rollout of {name} to version {version} was rolled back{to}{why}"
            ))
        }
        _ if n("updated") < n("desired") => RolloutView::Waiting(format!(
            "Waiting for rollout of {name} to finish: {} of {} replicas updated to {version}...",
            n("updated"),
            n("desired")
        )),
        _ => RolloutView::Waiting(format!(
            "Waiting for rollout of {name} to finish: {} of {} updated replicas are ready...",
            n("updated_ready"),
            n("desired")
        )),
    }
}

/// `shoal rollout status SERVICE`: follow until it finishes, is rolled back, or times out.
async fn rollout_status(args: RolloutStatusArgs) -> anyhow::Result<ExitCode> {
    let client = admin_client(&args.admin);
    let path = format!("/api/v1/services/{}", args.service);
    let deadline = args.timeout.map(|t| tokio::time::Instant::now() + t);
    let mut last = String::new();
    loop {
        let service = client.json(Method::GET, &path, None).await?;
        if args.admin.json {
            // The rollout as the API has it, once it is over.
            if !matches!(rollout_view(&service), RolloutView::Waiting(_)) {
                println!("{}", serde_json::to_string_pretty(&service["rollout"])?);
            }
        }
        match rollout_view(&service) {
            RolloutView::Done(line) => {
                if !args.admin.json {
                    println!("{line}");
                }
                return Ok(ExitCode::SUCCESS);
            }
            RolloutView::Failed(line) => {
                eprintln!("error: {line}");
                return Ok(ExitCode::from(1));
            }
            RolloutView::Waiting(line) => {
                if line != last && !args.admin.json {
                    println!("{line}");
                    let _ = std::io::stdout().flush();
                }
                last = line;
            }
        }
        if let (Some(deadline), Some(timeout)) = (deadline, args.timeout)
            && tokio::time::Instant::now() >= deadline
        {
            eprintln!(
                "error: timed out after {} waiting for the rollout of {} ({})",
                shoal_config::format_duration(timeout),
                args.service,
                last.trim_end_matches("...")
            );
            return Ok(ExitCode::from(1));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// `shoal weight ROUTE SERVICE=W...`.
async fn weight(args: WeightArgs) -> anyhow::Result<ExitCode> {
    let client = admin_client(&args.admin);
    let path = format!("/api/v1/routes/{}/weights", args.route);
    let weights: serde_json::Map<String, serde_json::Value> = args
        .weights
        .iter()
        .map(|(s, w)| (s.clone(), serde_json::Value::from(*w)))
        .collect();
    let done = client
        .json(
            Method::POST,
            &path,
            Some(serde_json::json!({ "weights": weights })),
        )
        .await?;
    if args.admin.json {
        println!("{}", serde_json::to_string_pretty(&done)?);
        return Ok(ExitCode::SUCCESS);
    }
    let now: Vec<String> = done["weights"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|w| format!("{}={}", w["service"].as_str().unwrap_or("?"), w["weight"]))
        .collect();
    println!("route {}: {}", args.route, now.join(" "));
    Ok(ExitCode::SUCCESS)
}

async fn events(args: EventsArgs) -> anyhow::Result<ExitCode> {
    let client = admin_client(&args.admin);
    if args.follow {
        client
            .follow("/api/v1/events/follow", |e| {
                println!("{}", format_event(&e));
            })
            .await?;
    } else {
        let v = client.json(Method::GET, "/api/v1/events", None).await?;
        for e in v.as_array().into_iter().flatten() {
            println!("{}", format_event(e));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `HH:MM:SS  users/0  ready  message` (UTC), on one line: line breaks in the message are
/// drawn as ` ⏎ `.
pub(crate) fn format_event(e: &serde_json::Value) -> String {
    let secs = e["at_ms"].as_u64().unwrap_or(0) / 1000;
    let (h, m, s) = ((secs / 3600) % 24, (secs / 60) % 60, secs % 60);
    let who = match (e["service"].as_str().unwrap_or(""), e["replica"].as_u64()) {
        ("", _) => "shoal".to_owned(),
        (svc, Some(i)) => format!("{svc}/{i}"),
        (svc, None) => svc.to_owned(),
    };
    let kind_width = EventKind::ALL
        .iter()
        .map(|k| k.as_str().len())
        .max()
        .unwrap_or(0);
    let message = e["message"]
        .as_str()
        .unwrap_or("")
        .trim_end_matches(['\n', '\r'])
        .replace("\r\n", "\n")
        .replace(['\n', '\r'], " ⏎ ");
    format!(
        "{h:02}:{m:02}:{s:02}  {who:<12} {:<kind_width$} {message}",
        e["kind"].as_str().unwrap_or("?"),
    )
}

/// `shoal logs`: the replicas' output through the admin API, so from any folder; `-f`
/// keeps the answer open and prints lines as the replicas write them. Lines are prefixed
/// `web.0 | ` unless `--replica` picks one; escape codes are kept or stripped as `--color`
/// says (the files keep them).
async fn logs(args: LogsArgs) -> anyhow::Result<ExitCode> {
    let client = admin_client(&args.admin);
    let mut path = format!(
        "/api/v1/services/{}/logs?tail={}&follow={}",
        args.service, args.lines, args.follow
    );
    if let Some(r) = args.replica {
        path.push_str(&format!("&replica={r}"));
    }
    let color = match args.color {
        ColorArg::Always => true,
        ColorArg::Never => false,
        ColorArg::Auto => {
            std::io::IsTerminal::is_terminal(&std::io::stdout())
                && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
        }
    };
    let mut out = std::io::stdout().lock();
    let mut printed = 0u64;
    let mut closed = false;
    client
        .follow(&path, |v| {
            if closed {
                return;
            }
            printed += 1;
            let line = v["line"].as_str().unwrap_or("");
            let written = if args.admin.json {
                writeln!(out, "{v}")
            } else {
                let text = if color {
                    std::borrow::Cow::Borrowed(line)
                } else {
                    shoal_supervise::strip_ansi(line)
                };
                match (args.replica, v["replica"].as_u64()) {
                    (None, Some(r)) => {
                        let r = u32::try_from(r).unwrap_or(u32::MAX);
                        let prefix = shoal_supervise::line_prefix(&args.service, r, color);
                        writeln!(out, "{prefix}{text}")
                    }
                    _ => writeln!(out, "{text}"),
                }
            };
            // A closed pipe (`| head`) ends the output quietly.
            closed = written.and_then(|()| out.flush()).is_err();
        })
        .await?;
    if printed == 0 && !args.follow && args.lines > 0 {
        eprintln!("`{}` has written no output yet", args.service);
    }
    Ok(ExitCode::SUCCESS)
}

/// `shoal down`: ask the running shoal to stop (`POST /api/v1/shutdown`), then wait until
/// its admin address stops answering — the admin API is the last thing a shoal stops.
async fn down(args: DownArgs) -> anyhow::Result<ExitCode> {
    let client = admin_client(&args.admin);
    let answer = client.json(Method::POST, "/api/v1/shutdown", None).await?;
    let addr = client.addr;
    // No pooled connection of ours may keep the admin server waiting.
    drop(client);
    println!(
        "shoal at {addr}: {}",
        answer["message"].as_str().unwrap_or("stopping")
    );
    let started = tokio::time::Instant::now();
    while tokio::net::TcpStream::connect(addr).await.is_ok() {
        if started.elapsed() >= args.timeout {
            eprintln!(
                "error: shoal at {addr} still answers after {} (still draining? `shoal status` \
                 shows what is left; a longer --timeout waits more)",
                shoal_config::format_duration(args.timeout)
            );
            return Ok(ExitCode::from(1));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("shoal stopped");
    Ok(ExitCode::SUCCESS)
}

fn init(args: &InitArgs) -> anyhow::Result<ExitCode> {
    if args.file.exists() && !args.force {
        eprintln!(
            "{} already exists; use --force to overwrite it",
            args.file.display()
        );
        return Ok(ExitCode::from(1));
    }
    std::fs::write(&args.file, DEMO_STACK)
        .with_context(|| format!("cannot write {}", args.file.display()))?;
    println!(
        "wrote {} — the demo stack. Start it with `shoal up`; a demo already running picks it up with `shoal reload`.",
        args.file.display()
    );
    Ok(ExitCode::SUCCESS)
}

async fn sample_app(args: SampleAppArgs) -> anyhow::Result<ExitCode> {
    let mut opts = match args.listen {
        Some(_) => shoal_sample_app::Options::default(),
        None => shoal_sample_app::Options::from_env(|k| std::env::var(k).ok())
            .context("run it under shoal, or pass --listen ADDR")?,
    };
    if let Some(l) = args.listen {
        opts.listen = l;
    }
    if let Some(n) = args.name {
        opts.name = n;
    }
    if let Some(d) = args.startup_delay {
        opts.startup_delay = d;
    }
    opts.capacity = args.capacity.map(|n| n as usize);
    match (args.tls_cert, args.tls_key) {
        (Some(cert), Some(key)) => opts.tls = Some(shoal_sample_app::TlsFiles { cert, key }),
        _ if opts.tls.is_none() => {
            opts.tls = shoal_sample_app::TlsFiles::from_env(|k| std::env::var(k).ok())?;
        }
        _ => {}
    }
    shoal_sample_app::run_until_signal(opts).await?;
    Ok(ExitCode::SUCCESS)
}

/// Exit code for unusable arguments (as clap uses).
const EXIT_USAGE: u8 = 2;

/// `shoal load`: validate, run, print. Exit 1 if no request got a 2xx/3xx answer.
fn load(args: &LoadArgs) -> anyhow::Result<ExitCode> {
    use std::io::IsTerminal;
    let plan = match shoal_loadgen::Plan::from_args(args) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(EXIT_USAGE));
        }
    };
    let opts = shoal_loadgen::RunOptions {
        progress: !args.no_progress && std::io::stderr().is_terminal(),
        // Ctrl-C stops the run; what was measured so far is still reported.
        interrupt: Some(Box::pin(async {
            if tokio::signal::ctrl_c().await.is_err() {
                std::future::pending::<()>().await;
            }
        })),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let report = match runtime.block_on(shoal_loadgen::run(plan, opts)) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(1));
        }
    };
    if let Some(path) = &args.report {
        std::fs::write(path, shoal_loadgen::html::render(&report))
            .with_context(|| format!("--report: cannot write {}", path.display()))?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.summary());
        if let Some(path) = &args.report {
            println!("  report     {}", path.display());
        }
    }
    Ok(if report.requests.ok == 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_banner_lists_each_route_as_rule_to_service() {
        let stack = shoal_config::parse(
            "services:
  users: { servers: [http://127.0.0.1:9001] }
  web: { servers: [http://127.0.0.1:9002] }
gateway:
  entrypoints: { web: { listen: 127.0.0.1:0 }, internal: { listen: 127.0.0.2:0 } }
routes:
  - { match: PathPrefix(`/api/users`), service: users }
  - { match: PathPrefix(`/canary`), services: [{ name: users, weight: 90 }, { name: web, weight: 10 }] }
  - { match: PathPrefix(`/`), service: web, entrypoints: [internal] }
",
            "f",
        )
        .unwrap();
        assert_eq!(
            route_lines(&stack.routes),
            [
                "PathPrefix(`/api/users`) → users",
                "PathPrefix(`/canary`) → users=90 web=10",
                "PathPrefix(`/`) → web   (entrypoints internal)",
            ]
        );
    }

    #[test]
    fn an_event_with_a_multi_line_message_is_one_aligned_line() {
        let rejected = serde_json::json!({
            "seq": 3, "at_ms": 3_661_000, "service": "", "replica": null,
            "kind": "reloadfailed",
            "message": "shoal.yaml:8:14: routes[0].service: unknown service `wbe`\r\nshoal.yaml:10:14: routes[1].service: unknown service `wbe`\n"
        });
        let line = format_event(&rejected);
        assert_eq!(
            line,
            "01:01:01  shoal        reloadfailed  shoal.yaml:8:14: routes[0].service: unknown service `wbe` ⏎ shoal.yaml:10:14: routes[1].service: unknown service `wbe`"
        );
        let scaled = serde_json::json!({
            "seq": 4, "at_ms": 3_662_000, "service": "web", "replica": null,
            "kind": "scaled", "message": "1 -> 2"
        });
        let other = format_event(&scaled);
        assert_eq!(
            other.find("1 -> 2"),
            line.find("shoal.yaml"),
            "messages start in one column:\n{line}\n{other}"
        );
    }

    #[test]
    fn in_kubernetes_mode_the_status_table_shows_pods_and_their_nodes() {
        let services = serde_json::json!([{
            "name": "web", "state": "running", "ready": 1, "desired": 2,
            "replicas": [
                { "index": 0, "state": "ready", "pid": null, "port": 8080, "restarts": 0,
                  "pod": { "name": "web-7d9f-abcde", "node": "node-1", "terminating": false } },
                { "index": 1, "state": "draining", "pid": null, "port": 8080, "restarts": 0,
                  "pod": { "name": "web-7d9f-fghij", "node": null, "terminating": true } }
            ]
        }]);
        let table = status_table(&services);
        let header = table.lines().next().unwrap();
        assert!(
            header.contains("NODE") && !header.contains("PID"),
            "{table}"
        );
        let row = table
            .lines()
            .find(|l| l.contains("web/web-7d9f-abcde"))
            .unwrap();
        assert!(row.contains("node-1"), "{table}");
        assert!(table.contains("web/web-7d9f-fghij"), "{table}");
    }

    #[test]
    fn a_worker_shows_no_port_and_its_backlog_rate_and_consumers() {
        let backlog = |failures: u32| {
            serde_json::json!({
                "source": "redis 127.0.0.1:6379 stream jobs group workers",
                "messages": 1234, "smoothed": 1100.0, "consumed": 5000, "partitions": null,
                "rate_per_replica": 48.21, "active": true, "failures": failures,
                "error": (failures > 0).then_some(
                    "redis 127.0.0.1:6379 stream jobs group workers: cannot reach the broker: \
                     connection refused"
                ),
                "fallback": false, "read_at_ms": 1
            })
        };
        let services = |failures: u32| {
            serde_json::json!([{
                "name": "jobs", "state": "running", "ready": 3, "desired": 3, "worker": true,
                "replicas": [
                    { "index": 0, "state": "ready", "pid": 10, "port": null, "restarts": 0,
                      "traffic": null }
                ],
                "autoscale": {
                    "min": 0, "max": 8, "desired": 3, "targets": "411.3/100", "readings": [],
                    "panic": false, "reason": "backlog 1,234 over 100/replica → 13 replicas",
                    "limited_by": null, "last_scaled_ms": null, "held": 0,
                    "backlog": backlog(failures)
                }
            }])
        };
        let table = status_table(&services(0));
        let row = table.lines().find(|l| l.contains("jobs/0")).unwrap();
        assert!(!row.contains("null"), "{table}");
        assert!(
            table.contains(
                "jobs: backlog 1,234 (redis 127.0.0.1:6379 stream jobs group workers), \
                 3 consumers, 48.2/s per replica"
            ),
            "{table}"
        );
        let table = status_table(&services(3));
        assert!(
            table.contains(
                "jobs: backlog unknown: 3 failed reads in a row: redis 127.0.0.1:6379 stream \
                 jobs group workers: cannot reach the broker: connection refused"
            ),
            "{table}"
        );
    }

    #[test]
    fn rollout_status_reads_progress_completion_and_rollback() {
        let service = |rollout: serde_json::Value| {
            serde_json::json!({
                "name": "api", "state": "progressing", "ready": 3, "desired": 3,
                "replicas": [
                    { "index": 0, "state": "ready", "version": "v1" },
                    { "index": 3, "state": "ready", "version": "v2" }
                ],
                "rollout": rollout
            })
        };
        let rollout = |state: &str, updated: u32, ready: u32, message: serde_json::Value| {
            serde_json::json!({
                "version": "v2", "previous": "v1", "state": state, "updated": updated,
                "updated_ready": ready, "desired": 3, "message": message, "started_ms": 1
            })
        };
        let none = serde_json::Value::Null;
        assert_eq!(
            rollout_view(&service(rollout("progressing", 1, 0, none.clone()))),
            RolloutView::Waiting(
                "Waiting for rollout of api to finish: 1 of 3 replicas updated to v2...".into()
            )
        );
        assert_eq!(
            rollout_view(&service(rollout("progressing", 3, 2, none.clone()))),
            RolloutView::Waiting(
                "Waiting for rollout of api to finish: 2 of 3 updated replicas are ready...".into()
            )
        );
        assert_eq!(
            rollout_view(&service(rollout("complete", 3, 3, none.clone()))),
            RolloutView::Done(
                "rollout of api to version v2 complete: 3 of 3 replicas updated and ready".into()
            )
        );
        let why = serde_json::json!(
            "v2 rolled back to v1: no new replica ready within 2s: api/3 exited with code 3"
        );
        assert_eq!(
            rollout_view(&service(rollout("rolledback", 1, 0, why))),
            RolloutView::Failed(
                "rollout of api to version v2 was rolled back to v1: no new replica ready \
                 within 2s: api/3 exited with code 3"
                    .into()
            )
        );
        assert_eq!(
            rollout_view(&service(none)),
            RolloutView::Done("api has had no rollout; its replicas run versions v1, v2".into())
        );
    }

    #[test]
    fn the_status_table_shows_versions_and_a_rollout_in_progress() {
        let services = serde_json::json!([{
            "name": "api", "state": "progressing", "ready": 2, "desired": 2,
            "replicas": [
                { "index": 0, "state": "ready", "pid": 10, "port": 20001, "restarts": 0,
                  "version": "v1" },
                { "index": 2, "state": "starting", "pid": 12, "port": 20003, "restarts": 0,
                  "version": "v2" }
            ],
            "rollout": { "version": "v2", "previous": "v1", "state": "progressing",
                "updated": 1, "updated_ready": 0, "desired": 2, "message": null,
                "started_ms": 1 }
        }]);
        let table = status_table(&services);
        assert!(
            table.lines().next().unwrap().ends_with("VERSION"),
            "{table}"
        );
        let row = |who: &str| table.lines().find(|l| l.contains(who)).unwrap().to_owned();
        assert!(row("api/0").ends_with("v1"), "{table}");
        assert!(row("api/2").ends_with("v2"), "{table}");
        assert!(
            table.contains("api: rollout to v2 progressing: 1 of 2 replicas updated, 0 ready"),
            "{table}"
        );
    }

    #[test]
    fn the_status_table_shows_health_reasons_and_failover_counters() {
        let services = serde_json::json!([{
            "name": "web", "state": "running", "ready": 2, "desired": 2,
            "traffic": { "retries_total": 3, "hedges_total": 0, "ejections_total": 1, "breaker": "closed" },
            "replicas": [
                { "index": 0, "state": "ready", "pid": 10, "port": 20001, "restarts": 0,
                  "traffic": { "health": "healthy" } },
                { "index": 1, "state": "ready", "pid": 11, "port": 20002, "restarts": 0,
                  "traffic": { "health": "ejected", "reason": "ejected for 1000ms: connection refused" } }
            ]
        }]);
        let table = status_table(&services);
        let header = table.lines().next().unwrap();
        assert!(header.contains("HEALTH"), "{table}");
        let row = table.lines().find(|l| l.contains("web/1")).unwrap();
        assert!(row.contains("ejected"), "{table}");
        assert!(
            table.contains("web/1: ejected for 1000ms: connection refused"),
            "{table}"
        );
        assert!(table.contains("web: 3 retries, 1 ejections"), "{table}");
        assert!(
            !table.contains("breaker"),
            "a closed breaker is not news: {table}"
        );
    }
}
