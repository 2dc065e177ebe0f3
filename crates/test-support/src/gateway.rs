//! A whole shoal, started in-process on its stack file in a temp dir.
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use shoal_app::{ReloadError, Shoal, StartOptions};
use tempfile::TempDir;

use crate::ServerList;
use crate::client::{Answer, Client};
use crate::stack::StackBuilder;

/// Write `yaml` to `dir/shoal.yaml` and start a whole shoal on it, its state in
/// `dir/state`, as `shoal up` would: for a stack file written by hand, next to the scripts
/// it names.
pub async fn start_shoal(dir: &Path, yaml: &str) -> Shoal {
    let stack_path = dir.join("shoal.yaml");
    std::fs::write(&stack_path, yaml).expect("write the stack file");
    let stack = shoal_config::parse(yaml, "shoal.yaml")
        .unwrap_or_else(|e| panic!("invalid test stack:\n{e}\n--- file ---\n{yaml}"));
    Shoal::start(StartOptions {
        stack,
        stack_path: Some(stack_path),
        state_dir: dir.join("state"),
        echo_logs: false,
        color: false,
        shoal_exe: PathBuf::from("/nonexistent/shoal"),
        demo_file: None,
        discovery: Default::default(),
    })
    .await
    .expect("shoal starts")
}

/// A running shoal (gateway, driver, admin API) and a client pointed at its gateway.
#[derive(Debug)]
pub struct TestGateway {
    shoal: Shoal,
    addr: SocketAddr,
    client: Client,
    stack_path: PathBuf,
    _dir: TempDir,
}

impl TestGateway {
    /// Start building a stack; finish with [`StackBuilder::start`].
    pub fn builder() -> StackBuilder {
        StackBuilder::new()
    }

    /// The simplest stack: one service `web` with `servers` as its servers, and a route that
    /// sends every request to it.
    pub async fn in_front_of(servers: &(impl ServerList + ?Sized)) -> TestGateway {
        TestGateway::builder()
            .service("web", servers)
            .route("PathPrefix(`/`)", "web")
            .start()
            .await
    }

    /// Write `stack` to `DIR/shoal.yaml` and start a shoal on it, as `shoal up` would.
    pub async fn start(stack: &StackBuilder) -> TestGateway {
        let dir = tempfile::tempdir().expect("temp dir");
        let shoal = start_shoal(dir.path(), &stack.yaml()).await;
        let stack_path = dir.path().join("shoal.yaml");
        let addr = shoal.gateway_addr();
        TestGateway {
            shoal,
            addr,
            client: Client::http1(),
            stack_path,
            _dir: dir,
        }
    }

    /// Where the gateway listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://GATEWAY` followed by `path_and_query`.
    pub fn url(&self, path_and_query: &str) -> String {
        format!("http://{}{path_and_query}", self.addr)
    }

    /// The running shoal.
    pub fn shoal(&self) -> &Shoal {
        &self.shoal
    }

    /// A pooled HTTP/1.1 keep-alive client, shared by [`TestGateway::get`].
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// `GET path_and_query` through the gateway.
    pub async fn get(&self, path_and_query: &str) -> Answer {
        self.client.get(&self.url(path_and_query)).await
    }

    /// `GET` with extra request headers.
    pub async fn get_with(&self, path_and_query: &str, headers: &[(&str, &str)]) -> Answer {
        self.client
            .get_with(&self.url(path_and_query), headers)
            .await
    }

    /// The stack file the shoal reloads from.
    pub fn stack_path(&self) -> &Path {
        &self.stack_path
    }

    /// Rewrite the stack file as `stack` and reload, as `shoal reload` would.
    pub fn reload(&self, stack: &StackBuilder) -> Result<String, ReloadError> {
        self.reload_text(&stack.yaml())
    }

    /// Rewrite the stack file with `text` (valid or not) and reload.
    pub fn reload_text(&self, text: &str) -> Result<String, ReloadError> {
        std::fs::write(&self.stack_path, text).expect("write the stack file");
        self.shoal.reload()
    }

    /// Graceful shutdown: in-flight requests finish, then everything stops.
    pub async fn shutdown(self) {
        self.shoal.shutdown().await;
    }
}
