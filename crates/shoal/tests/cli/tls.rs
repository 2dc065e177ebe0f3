//! HTTPS with the real binary: `shoal check` on certificates (an entrypoint's, and a
//! service's `tls.ca` bundle), `shoal certs dev`, and the `examples/tls` stack run by `shoal
//! up` (HTTPS over HTTP/1.1 and HTTP/2 with a rustls client trusting the development CA, the
//! 308 redirect, the rate-limited route, certificates replaced on disk and by `shoal
//! reload`).
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{CertificateParams, KeyPair};
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

use crate::support::{Stack, free_port, http, run_in, stderr, stdout, wait_for};

const T: Duration = Duration::from_secs(20);

fn example_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/tls")
        .canonicalize()
        .unwrap()
}

/// A self-signed certificate for `localhost` valid from `from` to `to` (y, m, d), written to
/// `DIR/NAME.pem` and `DIR/NAME-key.pem`.
fn self_signed(dir: &Path, name: &str, from: (i32, u8, u8), to: (i32, u8, u8)) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    params.not_before = rcgen::date_time_ymd(from.0, from.1, from.2);
    params.not_after = rcgen::date_time_ymd(to.0, to.1, to.2);
    let cert = params.self_signed(&key).unwrap();
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).unwrap();
    std::fs::write(dir.join(format!("{name}-key.pem")), key.serialize_pem()).unwrap();
}

fn tls_stack(dir: &Path, cert: &str) {
    std::fs::write(
        dir.join("shoal.yaml"),
        format!(
            "gateway:
  entrypoints:
    websecure:
      listen: 127.0.0.1:{}
      tls: {{ cert: certs/{cert}.pem, key: certs/{cert}-key.pem }}
admin:
  listen: 127.0.0.1:{}
services:
  web:
    servers: [http://127.0.0.1:9]
routes:
  - match: PathPrefix(`/`)
    service: web
",
            free_port(),
            free_port()
        ),
    )
    .unwrap();
}

#[test]
fn check_refuses_an_expired_certificate_naming_the_file_and_the_date() {
    let dir = tempfile::tempdir().unwrap();
    self_signed(
        &dir.path().join("certs"),
        "old",
        (2024, 1, 1),
        (2025, 1, 31),
    );
    tls_stack(dir.path(), "old");
    let out = run_in(dir.path(), &["check"]);
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(
        err.contains(
            "shoal.yaml: entrypoint `websecure`: certs/old.pem: the certificate expired on 2025-01-31 00:00:00 UTC (notAfter)"
        ),
        "{err}"
    );
    assert!(err.contains("1 certificate problem found"), "{err}");

    // One that expires within 30 days: a warning, and `check` passes.
    let soon = time_in_days(10);
    self_signed(&dir.path().join("certs"), "soon", (2024, 1, 1), soon);
    tls_stack(dir.path(), "soon");
    let out = run_in(dir.path(), &["check"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(
            "warning: entrypoint `websecure`: certs/soon.pem: the certificate expires on "
        ),
        "{err}"
    );
    assert!(err.contains("renew it soon"), "{err}");
    assert!(
        stdout(&out).contains("websecure on 127.0.0.1:"),
        "{}",
        stdout(&out)
    );

    // A valid one: no warning.
    self_signed(
        &dir.path().join("certs"),
        "good",
        (2024, 1, 1),
        (2999, 1, 1),
    );
    tls_stack(dir.path(), "good");
    let out = run_in(dir.path(), &["check"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stderr(&out).contains("warning"), "{}", stderr(&out));
    assert!(stdout(&out).contains("(https)"), "{}", stdout(&out));
}

/// A stack whose service `ledger` speaks TLS to its server with `tls` (YAML flow map).
fn service_tls_stack(dir: &Path, tls: &str) {
    std::fs::write(
        dir.join("shoal.yaml"),
        format!(
            "gateway:
  entrypoints:
    web: {{ listen: 127.0.0.1:{} }}
admin:
  listen: 127.0.0.1:{}
services:
  ledger:
    servers: [https://127.0.0.1:9]
    tls: {tls}
routes:
  - match: PathPrefix(`/`)
    service: ledger
",
            free_port(),
            free_port()
        ),
    )
    .unwrap();
}

#[test]
fn check_reads_a_services_ca_bundle_and_warns_about_insecure_skip_verify() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    std::fs::create_dir_all(&certs).unwrap();

    // A PEM block whose contents are no certificate (3 zero bytes): the file exists, so
    // loading the stack accepts it; building the client config does not.
    std::fs::write(
        certs.join("broken-ca.pem"),
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    service_tls_stack(dir.path(), "{ ca: certs/broken-ca.pem }");
    let out = run_in(dir.path(), &["check"]);
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(
        err.lines().any(
            |l| l.starts_with("shoal.yaml: service `ledger`: tls: CA bundle ")
                && l.contains("certs/broken-ca.pem: certificate 1: ")
        ),
        "{err}"
    );
    assert!(err.contains("1 certificate problem found"), "{err}");
    assert!(stdout(&out).is_empty(), "{}", stdout(&out));

    // A file with no PEM certificate in it.
    std::fs::write(certs.join("empty-ca.pem"), "not a certificate\n").unwrap();
    service_tls_stack(dir.path(), "{ ca: certs/empty-ca.pem }");
    let out = run_in(dir.path(), &["check"]);
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(
        err.contains("certs/empty-ca.pem: no certificate in it (expected PEM"),
        "{err}"
    );

    // A real CA: ok, no warning.
    self_signed(&certs, "ca", (2024, 1, 1), (2999, 1, 1));
    service_tls_stack(dir.path(), "{ ca: certs/ca.pem }");
    let out = run_in(dir.path(), &["check"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stderr(&out).contains("warning"), "{}", stderr(&out));

    // insecure_skip_verify: a warning naming the service, and `check` passes.
    service_tls_stack(dir.path(), "{ insecure_skip_verify: true }");
    let out = run_in(dir.path(), &["check"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(
            "shoal.yaml: warning: service `ledger`: tls.insecure_skip_verify is on: the replicas' certificates are NOT verified"
        ),
        "{err}"
    );
    assert!(stdout(&out).contains(": ok"), "{}", stdout(&out));
}

/// The date `days` from now, as (year, month, day).
fn time_in_days(days: u64) -> (i32, u8, u8) {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + days * 86_400;
    let date = (rcgen::date_time_ymd(1970, 1, 1) + Duration::from_secs(secs)).date();
    (date.year(), date.month() as u8, date.day())
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn certs_dev_makes_a_ca_once_and_certificates_where_the_stack_file_says() {
    let dir = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        std::process::Command::new(crate::support::SHOAL)
            .args(args)
            .current_dir(dir.path())
            .env("XDG_DATA_HOME", data.path())
            .output()
            .unwrap()
    };

    // No stack file: ./localhost.pem, the CA in $XDG_DATA_HOME/shoal/dev-ca.
    let out = run(&["certs", "dev"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let ca_dir = data.path().join("shoal/dev-ca");
    let ca = ca_dir.join("ca.pem");
    let text = stdout(&out);
    assert!(text.contains("(made now)"), "{text}");
    assert!(
        text.contains("a certificate for localhost, 127.0.0.1, ::1"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "sudo cp {} /usr/local/share/ca-certificates/shoal-dev-ca.crt && sudo update-ca-certificates",
            ca.display()
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!("curl --cacert {}", ca.display())),
        "{text}"
    );
    assert_eq!(mode(&ca_dir.join("ca-key.pem")), 0o600);
    assert_eq!(mode(&dir.path().join("localhost-key.pem")), 0o600);
    let ca_pem = std::fs::read(&ca).unwrap();
    assert_signed_by(&dir.path().join("localhost.pem"), &ca, &["localhost"]);

    // A stack file with a TLS entrypoint: its files (folders made), the CA reused, --hosts.
    std::fs::write(
        dir.path().join("shoal.yaml"),
        "gateway:\n  entrypoints:\n    websecure:\n      listen: 127.0.0.1:9443\n      tls: { cert: certs/site.pem, key: certs/site-key.pem }\n",
    )
    .unwrap();
    let out = run(&["certs", "dev", "--hosts", "app.test,10.1.2.3"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("(reused)"), "{text}");
    assert!(text.contains("certs/site.pem"), "{text}");
    assert!(text.contains("https://localhost:9443/"), "{text}");
    assert_eq!(std::fs::read(&ca).unwrap(), ca_pem, "the CA is kept");
    assert_signed_by(&dir.path().join("certs/site.pem"), &ca, &["app.test"]);
    assert_eq!(mode(&dir.path().join("certs/site-key.pem")), 0o600);

    // --ca-dir elsewhere: another CA, which refuses to overwrite what the first one signed.
    let other = dir.path().join("other-ca");
    let out = run(&["certs", "dev", "--ca-dir", other.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out)
            .contains("certs/site.pem exists and was not made by `shoal certs dev` with this CA"),
        "{}",
        stderr(&out)
    );
    assert_signed_by(&dir.path().join("certs/site.pem"), &ca, &["app.test"]);
}

/// `cert` is signed by the CA in `ca`, valid for `names` as a TLS server.
fn assert_signed_by(cert: &Path, ca: &Path, names: &[&str]) {
    let ca = CertificateDer::from_pem_file(ca).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca).unwrap();
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
    )
    .build()
    .unwrap();
    let leaf = CertificateDer::from_pem_file(cert).unwrap();
    for name in names {
        verifier
            .verify_server_cert(
                &leaf,
                &[],
                &ServerName::try_from(*name).unwrap(),
                &[],
                rustls::pki_types::UnixTime::now(),
            )
            .unwrap_or_else(|e| panic!("{}: not valid for {name}: {e}", cert.display()));
    }
}

/// An HTTPS answer and the certificate it came with.
struct Answer {
    status: u16,
    version: http::Version,
    headers: http::HeaderMap,
    cert: Vec<u8>,
}

/// One GET over a new TLS connection to `addr`, trusting `ca`, offering `alpn` only.
fn https_get(addr: SocketAddr, ca: &Path, alpn: &[u8], path: &str) -> Result<Answer, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_file(ca).map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
        let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        config.alpn_protocols = vec![alpn.to_vec()];
        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| e.to_string())?;
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .map_err(|e| e.to_string())?;
        let cert = tls.get_ref().1.peer_certificates().unwrap()[0].to_vec();
        let io = TokioIo::new(tls);
        let req = http::Request::get(format!("https://localhost:{}{path}", addr.port()))
            .body(Empty::<Bytes>::new())
            .unwrap();
        let resp = if alpn == b"h2" {
            let (mut send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                .await
                .map_err(|e| e.to_string())?;
            tokio::spawn(conn);
            send.send_request(req).await
        } else {
            let (mut send, conn) = hyper::client::conn::http1::handshake(io)
                .await
                .map_err(|e| e.to_string())?;
            tokio::spawn(conn);
            let (mut parts, body) = req.into_parts();
            parts.uri = path.parse().unwrap();
            parts.headers.insert(
                http::header::HOST,
                http::HeaderValue::from_static("localhost"),
            );
            send.send_request(http::Request::from_parts(parts, body))
                .await
        }
        .map_err(|e| e.to_string())?;
        let (parts, body) = resp.into_parts();
        body.collect().await.map_err(|e| e.to_string())?;
        Ok(Answer {
            status: parts.status.as_u16(),
            version: parts.version,
            headers: parts.headers,
            cert,
        })
    })
}

/// `text` with `from` replaced by `to`, which must occur once.
fn replace_once(text: &str, from: &str, to: &str) -> String {
    assert_eq!(
        text.matches(from).count(),
        1,
        "examples/tls/shoal.yaml: `{from}`"
    );
    text.replace(from, to)
}

#[test]
fn the_tls_example_serves_https_over_h1_and_h2_and_redirects_http() {
    // The example folder, copied, on free ports; its certificates from `shoal certs dev`.
    let https: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let plain: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let stack = Stack {
        dir: tempfile::tempdir().unwrap(),
        gateway: plain,
        admin,
    };
    let yaml = std::fs::read_to_string(example_dir().join("shoal.yaml")).unwrap();
    let yaml = replace_once(&yaml, "listen: 127.0.0.1:8443", &format!("listen: {https}"));
    let yaml = replace_once(&yaml, "listen: 127.0.0.1:8000", &format!("listen: {plain}"));
    let yaml = replace_once(&yaml, "listen: 127.0.0.1:8080", &format!("listen: {admin}"));
    std::fs::write(stack.path().join("shoal.yaml"), yaml).unwrap();
    let ca_dir = stack.path().join("dev-ca");
    let certs_dev = || stack.run(&["certs", "dev", "--ca-dir", ca_dir.to_str().unwrap()]);
    let out = certs_dev();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("certs/localhost.pem"),
        "{}",
        stdout(&out)
    );
    let ca = ca_dir.join("ca.pem");
    let out = stack.run(&["check"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));

    let mut up = stack.up();
    up.wait_listening(&stack);
    stack.wait_ready("app", 3, T);
    let banner = up.stdout();
    assert!(banner.contains(&format!("https://{https}/")), "{banner}");

    // HTTPS over HTTP/2 and HTTP/1.1, to the replicas.
    let h2 = wait_for("HTTPS answers", T, || {
        https_get(https, &ca, b"h2", "/whoami").ok()
    });
    assert_eq!(h2.status, 200);
    assert_eq!(h2.version, http::Version::HTTP_2);
    assert!(h2.headers.contains_key("x-shoal-replica"));
    let h1 = https_get(https, &ca, b"http/1.1", "/whoami").unwrap();
    assert_eq!(h1.status, 200);
    assert_eq!(h1.version, http::Version::HTTP_11);

    // Plain HTTP: 308 to the HTTPS port, same path and query.
    let r = http(plain, "GET", "/a/b?c=d", None).unwrap();
    assert_eq!(r.status, 308, "{}", r.text());
    assert_eq!(
        r.header("location"),
        Some(format!("https://127.0.0.1:{}/a/b?c=d", https.port()).as_str())
    );
    assert_eq!(r.header("content-length"), Some("0"));

    // `shoal load` over HTTP/2 and TLS: every request of a bounded run answered.
    let url = format!("https://{https}/");
    let out = stack.run(&[
        "load",
        "--http",
        "2",
        "--insecure",
        "-n",
        "400",
        "-c",
        "8",
        "--json",
        &url,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(report["requests"]["ok"], 400, "{report:#}");
    assert_eq!(report["status_codes"]["200"], 400, "{report:#}");

    // /limited: 10 requests/s per client, burst 1 — 20 at once get some 429s, with Retry-After.
    let answers: Vec<Answer> = (0..20)
        .map(|_| https_get(https, &ca, b"h2", "/limited").unwrap())
        .collect();
    let limited = answers.iter().filter(|a| a.status == 429).count();
    assert!(limited > 0, "no 429 in 20 quick requests");
    assert!(answers.iter().all(|a| a.status == 200 || a.status == 429));
    let a429 = answers.iter().find(|a| a.status == 429).unwrap();
    assert!(a429.headers.contains_key("retry-after"));

    // New certificates on disk (`shoal certs dev` again): picked up without a restart.
    let before = h1.cert;
    let out = certs_dev();
    assert!(out.status.success(), "{}", stderr(&out));
    let renewed = CertificateDer::from_pem_file(stack.path().join("certs/localhost.pem"))
        .unwrap()
        .to_vec();
    assert_ne!(renewed, before);
    wait_for("the new certificate served", T, || {
        https_get(https, &ca, b"h2", "/")
            .ok()
            .filter(|a| a.cert == renewed)
    });
    assert!(
        stack.events().iter().any(|e| e["kind"] == "reloaded"
            && e["message"]
                .as_str()
                .unwrap_or("")
                .contains("certificates reloaded")),
        "{:?}",
        stack.events()
    );

    // `shoal reload` reloads them too; a broken key is refused and the old ones keep serving.
    let key = stack.path().join("certs/localhost-key.pem");
    std::fs::write(&key, "not a key\n").unwrap();
    let out = stack.run(&["reload"]);
    assert_ne!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("entrypoint `websecure`:")
            && stderr(&out).contains("localhost-key.pem"),
        "{}",
        stderr(&out)
    );
    let still = https_get(https, &ca, b"h2", "/").unwrap();
    assert_eq!((still.status, still.cert == renewed), (200, true));
    let out = certs_dev();
    assert!(out.status.success(), "{}", stderr(&out));
    let out = stack.run(&["reload"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("certificates reloaded for `websecure`"),
        "{}",
        stdout(&out)
    );
    let third = CertificateDer::from_pem_file(stack.path().join("certs/localhost.pem"))
        .unwrap()
        .to_vec();
    assert_eq!(https_get(https, &ca, b"http/1.1", "/").unwrap().cert, third);
}
