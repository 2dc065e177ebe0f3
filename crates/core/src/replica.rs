//! Replicas, their endpoints and their standing.
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// An address the gateway can send requests to, with the stable key of the replica behind it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Endpoint {
    /// Stable identity, `SERVICE/INDEX` for local replicas (e.g. `users/0`).
    pub key: String,
    /// Where to connect.
    pub addr: SocketAddr,
}

/// Where a replica is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReplicaState {
    /// Process started, readiness check not yet passed: not in the balancer.
    Starting,
    /// Readiness passed: in the balancer.
    Ready,
    /// Out of the balancer, finishing in-flight requests before it is stopped.
    Draining,
    /// The process has exited; it may be restarted after a back-off.
    Exited,
    /// Given up: restart attempts exhausted, or the command cannot be started.
    Failed,
}

impl std::fmt::Display for ReplicaState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ReplicaState::Starting => "starting",
            ReplicaState::Ready => "ready",
            ReplicaState::Draining => "draining",
            ReplicaState::Exited => "exited",
            ReplicaState::Failed => "failed",
        })
    }
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExitStatus {
    /// Exited with this code.
    Code(i32),
    /// Killed by this signal number.
    Signal(i32),
}

impl std::fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExitStatus::Code(c) => write!(f, "exit code {c}"),
            ExitStatus::Signal(s) => write!(f, "signal {s}"),
        }
    }
}

/// One replica as a driver reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplicaStatus {
    /// Index within the service, from 0.
    pub index: u32,
    /// Current state.
    pub state: ReplicaState,
    /// OS process id while running.
    pub pid: Option<u32>,
    /// Port the replica was told to listen on.
    pub port: Option<u16>,
    /// Endpoint, once assigned.
    pub endpoint: Option<Endpoint>,
    /// How many times this replica has been restarted.
    pub restarts: u32,
    /// Seconds since the current process started (0 when not running).
    pub uptime_secs: f64,
    /// CPU use of the process group over the last sample, in percent of one core.
    pub cpu_percent: Option<f64>,
    /// Resident memory of the process group, in bytes.
    pub rss_bytes: Option<u64>,
    /// How the last process ended, if one did.
    pub last_exit: Option<ExitStatus>,
    /// Human-readable reason for the current state (e.g. why it failed).
    pub message: Option<String>,
}

/// A service's overall standing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceState {
    /// All desired replicas ready.
    Running,
    /// Some replicas not ready yet (starting, restarting, scaling).
    Progressing,
    /// Given up on: no further restarts until the service is scaled or reloaded.
    Failed,
    /// Desired replicas is zero.
    Stopped,
}

/// One service as a driver reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceStatus {
    /// Service name.
    pub name: String,
    /// Replicas the driver aims at.
    pub desired: u32,
    /// Replicas in the balancer.
    pub ready: u32,
    /// Overall standing.
    pub state: ServiceState,
    /// The replicas, by index.
    pub replicas: Vec<ReplicaStatus>,
}
