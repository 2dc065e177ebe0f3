//! Tests that run the real `shoal` binary: one temp folder, one stack file and free ports
//! per test; every wait polls with a deadline.
//!
//! - `supervise`: readiness gating, crash recovery, crash-loop give-up, scaling, shutdown,
//!   scale persistence, bad commands;
//! - `autoscale`: a load step up and down, scale to zero and back, manual scale clamped;
//! - `black_friday`: the `examples/black-friday` pipeline, a crash and a kill losing no sale;
//! - `commands`: `check`, `init`, `logs`, a taken port, an exposed admin API;
//! - `examples`: the examples of `examples/` as their READMEs run them (static-failover);
//! - `output`: what `shoal up` prints: each event once, `--quiet`, one line per event;
//! - `k8s`: `shoal k8s render`: the golden stream, `-o DIR`, errors, `--explain`, and the
//!   gateway's derived stack file run by `shoal up`;
//! - `failover`: kill -9, SIGSTOP and 500s of one replica under load, all replicas dead;
//! - `rollout`: a broken version rolled back after its deadline, `rollout undo`/`restart`
//!   under load, split weights and `shoal weight`, the automated canary;
//! - `logs`: `shoal logs` from any folder (`-f`, `--color`), `shoal down`, `shoal restart`;
//! - `load`: `shoal load` against a real `shoal up`, bad input, Ctrl-C;
//! - `prometheus`: a real Prometheus scraping `shoal up`, dashboard queries over known traffic;
//! - `tls`: `shoal check` on certificates, `shoal certs dev`, and `examples/tls` served over
//!   HTTPS (h1, h2), its redirect and rate limit, certificates replaced on disk and by reload;
//! - `top`: `shoal top` under tmux: the live screen, `+` to scale, `q` to quit, a bad address;
//! - `tour`: README.md's "Two commands" and quick tour, every line run and checked;
//! - `figures`: start-up, restart and memory figures (`--ignored`, run on a release build).
mod autoscale;
mod black_friday;
mod commands;
mod examples;
mod failover;
mod figures;
mod k8s;
mod load;
mod logs;
mod output;
mod prometheus;
mod rollout;
mod supervise;
mod support;
mod tls;
mod top;
mod tour;

/// A service of the built-in sample app with short test intervals.
pub(crate) fn sample_service(name: &str, replicas: u32, extra_args: &str) -> String {
    format!(
        "  {name}:
    command: [shoal, sample-app{extra_args}]
    replicas: {replicas}
    health: {{ path: /health, interval: 100ms }}
    restart: {{ policy: on-failure, delay: 100ms }}
    stop: {{ drain_timeout: 1s, grace: 1s }}
"
    )
}
