//! In-process backends: `shoal-sample-app` instances named `r1`, `r2`, … on `127.0.0.1:0`.
use std::net::{Ipv4Addr, SocketAddr};
use std::ops::Index;

use shoal_sample_app::{Options, SampleApp};

/// One running sample-app.
#[derive(Debug)]
pub struct Backend {
    name: String,
    url: String,
    app: SampleApp,
}

impl Backend {
    /// Start a sample-app named `name` (its `X-Sample-Name`).
    pub async fn start(name: &str) -> Backend {
        let app = SampleApp::start(Options {
            name: name.to_owned(),
            ..Options::default()
        })
        .await
        .unwrap_or_else(|e| panic!("backend {name} starts: {e}"));
        Backend {
            name: name.to_owned(),
            url: format!("http://{}", app.local_addr()),
            app,
        }
    }

    /// Its name, as sent in `X-Sample-Name`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `http://127.0.0.1:PORT`: what goes in `servers:`, and what the gateway's replica header
    /// names for a static server.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.app.local_addr()
    }

    /// Requests it is serving right now.
    pub fn in_flight(&self) -> usize {
        self.app.in_flight()
    }

    /// Stop it gracefully; its port then refuses connections.
    pub async fn shutdown(self) {
        self.app.shutdown().await;
    }
}

/// A few backends, started together: `r1`, `r2`, …
#[derive(Debug)]
pub struct Backends {
    all: Vec<Backend>,
}

impl Backends {
    /// Start `n` backends named `r1` … `rN`.
    pub async fn start(n: usize) -> Backends {
        let names: Vec<String> = (1..=n).map(|i| format!("r{i}")).collect();
        Backends::named(&names.iter().map(String::as_str).collect::<Vec<_>>()).await
    }

    /// Start one backend per name.
    pub async fn named(names: &[&str]) -> Backends {
        let mut all = Vec::with_capacity(names.len());
        for name in names {
            all.push(Backend::start(name).await);
        }
        Backends { all }
    }

    /// Start one more, named `r{len+1}`, and return it.
    pub async fn add(&mut self) -> &Backend {
        let name = format!("r{}", self.all.len() + 1);
        self.all.push(Backend::start(&name).await);
        self.all.last().expect("just pushed")
    }

    /// The backend named `name`.
    pub fn by_name(&self, name: &str) -> &Backend {
        self.all
            .iter()
            .find(|b| b.name == name)
            .unwrap_or_else(|| panic!("no backend named {name}"))
    }

    /// The backend whose URL is `url` (e.g. an `x-shoal-replica` value).
    pub fn by_url(&self, url: &str) -> &Backend {
        self.all
            .iter()
            .find(|b| b.url == url)
            .unwrap_or_else(|| panic!("no backend at {url}"))
    }

    /// How many.
    pub fn len(&self) -> usize {
        self.all.len()
    }

    /// None at all?
    pub fn is_empty(&self) -> bool {
        self.all.is_empty()
    }

    /// All of them, in start order.
    pub fn iter(&self) -> std::slice::Iter<'_, Backend> {
        self.all.iter()
    }

    /// Stop them all.
    pub async fn shutdown(self) {
        for b in self.all {
            b.shutdown().await;
        }
    }
}

impl Index<usize> for Backends {
    type Output = Backend;
    fn index(&self, i: usize) -> &Backend {
        &self.all[i]
    }
}

impl<'a> IntoIterator for &'a Backends {
    type Item = &'a Backend;
    type IntoIter = std::slice::Iter<'a, Backend>;
    fn into_iter(self) -> Self::IntoIter {
        self.all.iter()
    }
}

/// Anything that can fill a service's `servers:` list.
pub trait ServerList {
    /// The server URLs.
    fn urls(&self) -> Vec<String>;
}

impl ServerList for Backends {
    fn urls(&self) -> Vec<String> {
        self.all.iter().map(|b| b.url.clone()).collect()
    }
}

impl ServerList for str {
    fn urls(&self) -> Vec<String> {
        vec![self.to_owned()]
    }
}

impl ServerList for Backend {
    fn urls(&self) -> Vec<String> {
        vec![self.url.clone()]
    }
}

impl ServerList for [&Backend] {
    fn urls(&self) -> Vec<String> {
        self.iter().map(|b| b.url.clone()).collect()
    }
}

impl<const N: usize> ServerList for [&Backend; N] {
    fn urls(&self) -> Vec<String> {
        self.as_slice().urls()
    }
}

impl ServerList for Vec<&Backend> {
    fn urls(&self) -> Vec<String> {
        self.as_slice().urls()
    }
}

impl ServerList for [String] {
    fn urls(&self) -> Vec<String> {
        self.to_vec()
    }
}

impl ServerList for Vec<String> {
    fn urls(&self) -> Vec<String> {
        self.clone()
    }
}

/// The URL of a loopback port with nothing listening: bound on `127.0.0.1:0`, then closed.
/// Connecting to it is refused at once.
pub fn dead_url() -> String {
    let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind a port");
    let addr = listener.local_addr().expect("local addr");
    drop(listener);
    format!("http://{addr}")
}

/// The URL of a server that accepts connections and never answers: a hung process (the
/// kernel still completes the TCP handshake, so a TCP check passes it). It holds what it
/// accepts until the task is dropped or aborted.
pub async fn silent_server() -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("bind a port");
    let url = format!("http://{}", listener.local_addr().expect("local addr"));
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    (url, task)
}
