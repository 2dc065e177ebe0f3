//! Real brokers on loopback for tests: Redis, RabbitMQ and a Kafka-compatible broker
//! (`tansu`), each on ports found free, started by the test in its own process group and
//! killed with that group (by the id of the process the test started) when dropped.
//!
//! Broker binaries are the machine's: `redis-server` and `rabbitmq-server` from Debian,
//! `tansu` from crates.io (`cargo install --locked tansu --features dynostore`; its
//! in-memory storage needs that feature). `scripts/test.sh` installs what is missing. A test
//! whose broker is missing is skipped with a printed message ([`require`] returns `None`),
//! unless `SHOAL_REQUIRE_BROKERS` is set (as `scripts/test.sh` does), where it fails. Each
//! binary can be named by a variable instead: `SHOAL_REDIS_SERVER`, `SHOAL_RABBITMQ_SERVER`
//! (and `SHOAL_EPMD`), `SHOAL_TANSU`.
//!
//! ```no_run
//! # async fn story() {
//! use shoal_test_support::brokers::{RedisServer, free_port, temp_dir};
//!
//! let Some(binary) = RedisServer::binary() else { return }; // skipped: not installed
//! let dir = temp_dir("shoal-redis-");
//! let redis = RedisServer::start(&binary, free_port(), dir.path(), &[]).await;
//! redis.create_group("sales", "agg").await;
//! redis.publish("sales", ["m-0", "m-1"]).await;
//! # }
//! ```
pub mod kafka;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;
use tokio::time::Instant;

pub use crate::port::free_port;

/// The path of `name`: the variable `env_override` if set, else the first found on `PATH`
/// then in `extra_dirs`; or `None` with a printed message when it is missing. With
/// `SHOAL_REQUIRE_BROKERS` set, a missing binary panics, saying how to `install` it.
pub fn require(
    name: &str,
    env_override: &str,
    extra_dirs: &[&str],
    install: &str,
) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(env_override) {
        return Some(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path)
        .chain(extra_dirs.iter().map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file());
    if found.is_none() {
        if std::env::var_os("SHOAL_REQUIRE_BROKERS").is_some() {
            panic!(
                "{name} is not installed and SHOAL_REQUIRE_BROKERS is set: install it ({install}) \
                 or set {env_override} to its path"
            );
        }
        eprintln!(
            "SKIPPED: {name} is not installed ({install}; or set {env_override}); \
             set SHOAL_REQUIRE_BROKERS=1 to make this a failure"
        );
    }
    found
}

/// A temporary directory for one broker's files.
pub fn temp_dir(prefix: &str) -> TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("temp dir")
}

/// A child process in its own process group, killed with the group when dropped.
#[derive(Debug)]
pub struct Process {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Process {
    /// Starts `command` in a new process group, its output to `log`.
    pub fn spawn(name: &str, mut command: Command, log: &Path) -> Process {
        use std::os::unix::process::CommandExt as _;
        let out = std::fs::File::create(log).expect("create log");
        let err = out.try_clone().expect("clone log");
        command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0);
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        Process {
            name: name.to_owned(),
            child,
            log: log.to_owned(),
        }
    }

    /// The log's last lines, for failure messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Waits until `port` accepts connections, polling; panics with the log at the deadline
    /// or if the process exits. Returns how long it took.
    pub async fn wait_for_port(&mut self, port: u16, within: Duration) -> Duration {
        let start = Instant::now();
        let deadline = start + within;
        loop {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return start.elapsed();
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "{} exited ({status}) before listening on {port}:\n{}",
                    self.name,
                    self.log_tail()
                );
            }
            assert!(
                Instant::now() < deadline,
                "{} did not listen on {port} within {within:?}:\n{}",
                self.name,
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Freezes the process (SIGSTOP): it keeps its sockets but answers nothing.
    pub fn freeze(&self) {
        self.signal(nix::sys::signal::Signal::SIGSTOP);
    }

    /// Lets a frozen process run again (SIGCONT).
    pub fn thaw(&self) {
        self.signal(nix::sys::signal::Signal::SIGCONT);
    }

    fn signal(&self, signal: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, signal).expect("signal our child");
    }

    /// Kills the process group now and reaps the child.
    pub fn kill(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        // The group has our child's id (process_group(0)): only what it started is in it.
        let _ = nix::sys::signal::killpg(pid, nix::sys::signal::Signal::SIGKILL);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A `redis-server` of the test's own: no persistence unless `extra` asks for it.
#[derive(Debug)]
pub struct RedisServer {
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// The server process.
    pub process: Process,
    password: Option<String>,
}

impl RedisServer {
    /// How long a server may take to listen.
    pub const START_WITHIN: Duration = Duration::from_secs(10);

    /// `redis-server` (see [`require`]).
    pub fn binary() -> Option<PathBuf> {
        require(
            "redis-server",
            "SHOAL_REDIS_SERVER",
            &["/usr/sbin", "/usr/local/bin"],
            "apt-get install redis-server",
        )
    }

    /// Starts `binary` on `port`, its files in `dir`, with `extra` arguments (e.g.
    /// `["--requirepass", "pw"]`, which [`RedisServer::client`] then uses, or
    /// `["--appendonly", "yes", "--appendfsync", "always"]` to survive a kill), and waits
    /// until it listens.
    pub async fn start(binary: &Path, port: u16, dir: &Path, extra: &[&str]) -> RedisServer {
        let mut command = Command::new(binary);
        command
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(dir)
            .args(extra);
        let mut process = Process::spawn("redis-server", command, &dir.join("redis.log"));
        let took = process.wait_for_port(port, Self::START_WITHIN).await;
        eprintln!("redis-server on 127.0.0.1:{port} accepted connections after {took:?}");
        let password = extra
            .iter()
            .position(|a| *a == "--requirepass")
            .and_then(|i| extra.get(i + 1))
            .map(|p| (*p).to_owned());
        RedisServer {
            port,
            process,
            password,
        }
    }

    /// `redis://127.0.0.1:PORT`: no password, as a stack file gives it.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// A connection, authenticated with `--requirepass`'s password if there was one.
    pub async fn client(&self) -> redis::aio::MultiplexedConnection {
        let url = match &self.password {
            Some(pw) => format!("redis://:{pw}@127.0.0.1:{}", self.port),
            None => self.url(),
        };
        redis::Client::open(url)
            .expect("redis URL")
            .get_multiplexed_async_connection()
            .await
            .expect("connect to redis-server")
    }

    /// `XGROUP CREATE stream group 0 MKSTREAM`: a group that will read the stream from its
    /// start.
    pub async fn create_group(&self, stream: &str, group: &str) {
        let mut conn = self.client().await;
        let () = redis::cmd("XGROUP")
            .arg(&["CREATE", stream, group, "0", "MKSTREAM"])
            .query_async(&mut conn)
            .await
            .expect("XGROUP CREATE");
    }

    /// How many clients are connected, not counting the connection that asks.
    pub async fn clients(&self) -> usize {
        let mut conn = self.client().await;
        let list: String = redis::cmd("CLIENT")
            .arg("LIST")
            .query_async(&mut conn)
            .await
            .expect("CLIENT LIST");
        list.lines().count().saturating_sub(1)
    }

    /// Appends one entry per id to `stream`, each `{id: ID}`, in one pipeline.
    pub async fn publish<S: AsRef<str>>(&self, stream: &str, ids: impl IntoIterator<Item = S>) {
        let mut conn = self.client().await;
        let mut pipe = redis::pipe();
        for id in ids {
            pipe.cmd("XADD")
                .arg(stream)
                .arg("*")
                .arg("id")
                .arg(id.as_ref())
                .ignore();
        }
        let () = pipe.query_async(&mut conn).await.expect("XADD");
    }
}

/// A RabbitMQ node of the test's own: its own epmd, node name, ports, Mnesia and logs in a
/// temporary directory; user `guest`, password `guest`.
#[derive(Debug)]
pub struct RabbitMq {
    /// AMQP's port on 127.0.0.1.
    pub amqp_port: u16,
    /// The management API's port on 127.0.0.1, if it was started with it.
    pub management_port: Option<u16>,
    // Dropped in this order: the broker, then its epmd, then the files.
    /// The broker process.
    pub broker: Process,
    _epmd: Process,
    _dir: TempDir,
}

impl RabbitMq {
    /// How long a node may take to listen (Erlang's start is slow on two cores).
    pub const START_WITHIN: Duration = Duration::from_secs(60);

    /// `rabbitmq-server` and `epmd` (see [`require`]). Debian's `/usr/sbin/rabbitmq-server`
    /// switches to the `rabbitmq` user; the script under `/usr/lib/rabbitmq/bin` is used
    /// when it exists.
    pub fn binaries() -> Option<(PathBuf, PathBuf)> {
        let server = require(
            "rabbitmq-server",
            "SHOAL_RABBITMQ_SERVER",
            &["/usr/lib/rabbitmq/bin"],
            "apt-get install rabbitmq-server",
        )?;
        let server = match PathBuf::from("/usr/lib/rabbitmq/bin/rabbitmq-server") {
            real if real.is_file() && std::env::var_os("SHOAL_RABBITMQ_SERVER").is_none() => real,
            _ => server,
        };
        let epmd = require("epmd", "SHOAL_EPMD", &[], "apt-get install erlang-base")?;
        Some((server, epmd))
    }

    /// Starts a node (with the management API if `management`) and waits until it listens.
    /// The management plugin's statistics are collected every 500 ms, so that its figures
    /// are fresh for 1 s polling.
    pub async fn start(server: PathBuf, epmd: PathBuf, management: bool) -> RabbitMq {
        let dir = temp_dir("shoal-rabbitmq-");
        let path = dir.path();
        let [epmd_port, amqp_port, dist_port, management_port] =
            [free_port(), free_port(), free_port(), free_port()];

        // An epmd of our own, in the foreground, so that no daemon outlives the test.
        let mut command = Command::new(epmd);
        command.args(["-port", &epmd_port.to_string(), "-address", "127.0.0.1"]);
        let mut epmd = Process::spawn("epmd", command, &path.join("epmd.log"));
        epmd.wait_for_port(epmd_port, Self::START_WITHIN).await;

        let mut conf = format!("listeners.tcp.default = 127.0.0.1:{amqp_port}\n");
        if management {
            conf.push_str(&format!(
                "management.tcp.ip = 127.0.0.1\n\
                 management.tcp.port = {management_port}\n\
                 collect_statistics_interval = 500\n\
                 management.sample_retention_policies.global.minute = 1\n\
                 management.sample_retention_policies.basic.minute = 1\n\
                 management.sample_retention_policies.detailed.10 = 1\n"
            ));
        }
        std::fs::write(path.join("rabbitmq.conf"), conf).expect("write rabbitmq.conf");
        let plugins = if management {
            "[rabbitmq_management].\n"
        } else {
            "[].\n"
        };
        std::fs::write(path.join("enabled_plugins"), plugins).expect("write enabled_plugins");
        std::fs::write(path.join("rabbitmq-env.conf"), "").expect("write rabbitmq-env.conf");
        let mut command = Command::new(server);
        command
            .env("HOME", path)
            .env("ERL_EPMD_PORT", epmd_port.to_string())
            .env("RABBITMQ_NODENAME", format!("shoal{amqp_port}@localhost"))
            .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
            .env("RABBITMQ_NODE_PORT", amqp_port.to_string())
            .env("RABBITMQ_DIST_PORT", dist_port.to_string())
            .env("RABBITMQ_CONFIG_FILE", path.join("rabbitmq"))
            .env("RABBITMQ_CONF_ENV_FILE", path.join("rabbitmq-env.conf"))
            .env(
                "RABBITMQ_ENABLED_PLUGINS_FILE",
                path.join("enabled_plugins"),
            )
            .env("RABBITMQ_MNESIA_BASE", path.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", path.join("log"))
            .env("RABBITMQ_PID_FILE", path.join("rabbitmq.pid"))
            .env("RABBITMQ_LOGS", "-")
            // `exec erl` instead of a shell that traps signals around it: one process.
            .env("RUNNING_UNDER_SYSTEMD", "true");
        let mut broker = Process::spawn("rabbitmq-server", command, &path.join("rabbitmq.log"));
        let amqp = broker.wait_for_port(amqp_port, Self::START_WITHIN).await;
        eprintln!("rabbitmq-server: AMQP on 127.0.0.1:{amqp_port} after {amqp:?}");
        if management {
            let took = broker
                .wait_for_port(management_port, Self::START_WITHIN)
                .await;
            eprintln!(
                "rabbitmq-server: management API on 127.0.0.1:{management_port} after {took:?}"
            );
        }
        RabbitMq {
            amqp_port,
            management_port: management.then_some(management_port),
            broker,
            _epmd: epmd,
            _dir: dir,
        }
    }

    /// `amqp://guest@127.0.0.1:PORT/%2f`: no password, as a stack file gives it.
    pub fn amqp_url(&self) -> String {
        format!("amqp://guest@127.0.0.1:{}/%2f", self.amqp_port)
    }

    /// `http://guest@127.0.0.1:PORT`: the management API, no password. Panics if the node
    /// was started without it.
    pub fn management_url(&self) -> String {
        let port = self
            .management_port
            .expect("started with the management API");
        format!("http://guest@127.0.0.1:{port}")
    }

    /// The AMQP URL with the password, for clients.
    pub fn client_url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.amqp_port)
    }

    /// Declares `queue` (not durable) and publishes one message per id, its body the id,
    /// each confirmed by the broker.
    pub async fn publish<S: AsRef<str>>(&self, queue: &str, ids: impl IntoIterator<Item = S>) {
        use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions};
        use lapin::types::FieldTable;
        let connection =
            lapin::Connection::connect(&self.client_url(), lapin::ConnectionProperties::default())
                .await
                .expect("connect to rabbitmq-server");
        let channel = connection.create_channel().await.expect("a channel");
        channel
            .queue_declare(
                queue.into(),
                QueueDeclareOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("queue.declare");
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .expect("confirm.select");
        let mut confirms = Vec::new();
        for id in ids {
            let confirm = channel
                .basic_publish(
                    "".into(),
                    queue.into(),
                    BasicPublishOptions::default(),
                    id.as_ref().as_bytes(),
                    lapin::BasicProperties::default(),
                )
                .await
                .expect("basic.publish");
            confirms.push(confirm);
        }
        for confirm in confirms {
            confirm.await.expect("publish confirmed");
        }
        let _ = connection.close(200, "bye".into()).await;
    }
}

/// Starts `tansu` (a Kafka-compatible broker) on `port` with in-memory storage, its log in
/// `dir`, and waits until it listens.
pub async fn start_tansu(binary: &Path, port: u16, dir: &Path) -> Process {
    let url = format!("tcp://127.0.0.1:{port}");
    let mut command = Command::new(binary);
    command
        .arg("broker")
        .args(["--listener-url", &url, "--advertised-listener-url", &url])
        .args(["--storage-engine", "memory://tansu/"]);
    let mut process = Process::spawn("tansu", command, &dir.join("tansu.log"));
    let took = process.wait_for_port(port, Duration::from_secs(30)).await;
    eprintln!("tansu on 127.0.0.1:{port} accepted connections after {took:?}");
    process
}

/// `tansu` (see [`require`]): on `PATH`, in `~/.cargo/bin` (where `cargo install` puts it),
/// or named by `SHOAL_TANSU`.
pub fn tansu_binary() -> Option<PathBuf> {
    let cargo_bin = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .map(|home| home.join("bin"));
    let extra: Vec<&str> = cargo_bin
        .as_deref()
        .and_then(Path::to_str)
        .into_iter()
        .collect();
    require(
        "tansu",
        "SHOAL_TANSU",
        &extra,
        "cargo install --locked tansu --version 0.6.0 --features dynostore",
    )
}
