//! The edge of the stack file (issue 17): TLS at the entrypoints and to the replicas, the
//! HTTP → HTTPS redirect, and the edge middlewares with `chain`. Each rule has a test that
//! accepts and one that rejects, with the message and its place asserted.
use std::path::PathBuf;
use std::time::Duration;

use http::{HeaderName, Method};

use super::{errors, one_error};
use crate::*;

/// A folder of its own for a test's stack file and the files it names; removed at the end.
struct Dir(PathBuf);

impl Dir {
    fn new(test: &str) -> Dir {
        let dir = std::env::temp_dir().join(format!("shoal-edge-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Dir(dir)
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.0.join(rel)
    }

    /// Write `rel` (and its folders).
    fn file(&self, rel: &str, content: &str) -> &Dir {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
        self
    }

    /// The certificate files the examples name (their contents are the gateway's to check).
    fn certs(&self) -> &Dir {
        self.file("certs/localhost.pem", "cert")
            .file("certs/localhost-key.pem", "key")
            .file("certs/other.pem", "cert")
            .file("certs/other-key.pem", "key")
            .file("certs/ca.pem", "ca")
    }

    /// Load `yaml` as `shoal.yaml` in this folder for `runtime`; errors with the folder
    /// written `DIR`.
    fn load_for(&self, yaml: &str, runtime: Runtime) -> Result<Stack, Vec<String>> {
        let file = self.path("shoal.yaml");
        std::fs::write(&file, yaml).unwrap();
        let dir = self.0.display().to_string();
        load_for(&file, runtime).map_err(|d| {
            d.iter()
                .map(|d| d.to_string().replace(&dir, "DIR"))
                .collect()
        })
    }

    fn load(&self, yaml: &str) -> Result<Stack, Vec<String>> {
        self.load_for(yaml, Runtime::Local)
    }

    fn one_error(&self, yaml: &str) -> String {
        let e = self.load(yaml).unwrap_err();
        assert_eq!(e.len(), 1, "expected one error, got {e:#?}");
        e.into_iter().next().unwrap()
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const ENTRYPOINTS: &str = "gateway:
  entrypoints:
    web:
      listen: 127.0.0.1:8000
      redirect_to: websecure
    websecure:
      listen: 127.0.0.1:8443
      tls:
        certificates:
          - { cert: certs/localhost.pem, key: certs/localhost-key.pem }
          - { cert: certs/other.pem, key: certs/other-key.pem }
    internal:
      listen: 127.0.0.1:9443
      tls: { cert: certs/other.pem, key: certs/other-key.pem, min_version: 1.3 }
services:
  web:
    servers: [http://127.0.0.1:9001]
routes:
  - match: PathPrefix(`/`)
    service: web
    entrypoints: [websecure, internal]
";

#[test]
fn entrypoints_terminate_tls_and_redirect_to_https() {
    let dir = Dir::new("entrypoints");
    dir.certs();
    let s = dir.load(ENTRYPOINTS).unwrap();
    let [web, websecure, internal] = &s.gateway.entrypoints[..] else {
        panic!("{:?}", s.gateway.entrypoints)
    };
    assert_eq!(web.tls, None);
    assert_eq!(
        web.redirect_to,
        Some(RedirectHttps {
            entrypoint: "websecure".into(),
            port: 8443
        })
    );
    assert_eq!(
        websecure.tls,
        Some(EntrypointTls {
            certificates: vec![
                CertificateFiles {
                    cert: dir.path("certs/localhost.pem"),
                    key: dir.path("certs/localhost-key.pem"),
                },
                CertificateFiles {
                    cert: dir.path("certs/other.pem"),
                    key: dir.path("certs/other-key.pem"),
                },
            ],
            min_version: TlsVersion::Tls12,
        }),
        "the first certificate is the default; TLS 1.2 is the default minimum"
    );
    assert_eq!(websecure.redirect_to, None);
    let tls = internal.tls.as_ref().unwrap();
    assert_eq!(
        tls.certificates,
        [CertificateFiles {
            cert: dir.path("certs/other.pem"),
            key: dir.path("certs/other-key.pem"),
        }],
        "the shorthand is one certificate"
    );
    assert_eq!(tls.min_version, TlsVersion::Tls13, "`1.3` unquoted");
    // `min_version` quoted, `1.2` explicitly.
    let s = dir
        .load(&ENTRYPOINTS.replace("min_version: 1.3", "min_version: \"1.2\""))
        .unwrap();
    assert_eq!(
        s.gateway.entrypoints[2].tls.as_ref().unwrap().min_version,
        TlsVersion::Tls12
    );
    // An absolute path is kept as it is.
    let abs = dir.path("certs/ca.pem").display().to_string();
    let s = dir
        .load(&ENTRYPOINTS.replace(
            "{ cert: certs/other.pem, key: certs/other-key.pem, min_version",
            &format!("{{ cert: '{abs}', key: certs/other-key.pem, min_version"),
        ))
        .unwrap();
    assert_eq!(
        s.gateway.entrypoints[2].tls.as_ref().unwrap().certificates[0].cert,
        PathBuf::from(&abs)
    );
    // The `listen` shorthand stays plain HTTP.
    let s = parse("gateway:\n  listen: 127.0.0.1:8000\n", "shoal.yaml").unwrap();
    assert_eq!(s.gateway.entrypoints[0].tls, None);
    assert_eq!(s.gateway.entrypoints[0].redirect_to, None);
}

const TLS_VERSION: &str = "gateway:
  entrypoints:
    websecure:
      listen: 127.0.0.1:8443
      tls:
        cert: c.pem
        key: k.pem
        min_version: VERSION
";

#[test]
fn tls_1_0_and_1_1_are_refused_by_name() {
    let dir = Dir::new("versions");
    dir.file("c.pem", "c").file("k.pem", "k");
    for (version, shown) in [
        ("\"1.0\"", "1.0"),
        ("1.0", "1.0"),
        ("\"1.1\"", "1.1"),
        ("1.1", "1.1"),
        ("TLSv1.1", "1.1"),
    ] {
        let e = dir.one_error(&TLS_VERSION.replace("VERSION", version));
        assert_eq!(
            e,
            format!(
                "DIR/shoal.yaml:8:22: gateway.entrypoints.websecure.tls.min_version: TLS \
                 {shown} is refused: it is insecure, and RFC 8996 deprecates it; use `1.2` \
                 (the default) or `1.3`"
            ),
            "{version}"
        );
    }
    let e = dir.one_error(&TLS_VERSION.replace("VERSION", "1.4"));
    assert_eq!(
        e,
        "DIR/shoal.yaml:8:22: gateway.entrypoints.websecure.tls.min_version: unknown TLS \
         version `1.4`; expected `1.2` or `1.3`"
    );
    for (version, expected) in [("TLSv1.3", TlsVersion::Tls13), ("'1.2'", TlsVersion::Tls12)] {
        let s = dir.load(&TLS_VERSION.replace("VERSION", version)).unwrap();
        let tls = s.gateway.entrypoints[0].tls.as_ref().unwrap();
        assert_eq!(tls.min_version, expected, "{version}");
    }
}

#[test]
fn certificate_files_must_exist_and_be_files() {
    let dir = Dir::new("cert-files");
    dir.certs();
    std::fs::create_dir_all(dir.path("certs/folder.pem")).unwrap();
    let e = dir
        .one_error(&ENTRYPOINTS.replace("cert: certs/localhost.pem,", "cert: certs/missing.pem,"));
    assert_eq!(
        e,
        "DIR/shoal.yaml:10:21: gateway.entrypoints.websecure.tls.certificates[0].cert: no such \
         file: DIR/certs/missing.pem"
    );
    let e = dir.one_error(&ENTRYPOINTS.replace(
        "key: certs/other-key.pem, min_version",
        "key: certs/folder.pem, min_version",
    ));
    assert_eq!(
        e,
        "DIR/shoal.yaml:14:42: gateway.entrypoints.internal.tls.key: DIR/certs/folder.pem is \
         a folder, not a file"
    );
    // Both files of a pair are checked in one run.
    let e = dir
        .load(&ENTRYPOINTS.replace(
            "{ cert: certs/other.pem, key: certs/other-key.pem }",
            "{ cert: nope.pem, key: '' }",
        ))
        .unwrap_err();
    assert_eq!(
        e,
        [
            "DIR/shoal.yaml:11:21: gateway.entrypoints.websecure.tls.certificates[1].cert: no \
             such file: DIR/nope.pem",
            "DIR/shoal.yaml:11:36: gateway.entrypoints.websecure.tls.certificates[1].key: give \
             a file",
        ]
    );
}

#[test]
fn entrypoint_tls_needs_certificates_in_one_form() {
    let dir = Dir::new("tls-forms");
    dir.certs();
    let internal = "tls: { cert: certs/other.pem, key: certs/other-key.pem, min_version: 1.3 }";
    for (tls, expected) in [
        (
            "tls: { cert: certs/other.pem }",
            "DIR/shoal.yaml:14:14: gateway.entrypoints.internal.tls.cert: give `key` too: the \
             certificate's private key (a PEM file)",
        ),
        (
            "tls: { key: certs/other-key.pem }",
            "DIR/shoal.yaml:14:14: gateway.entrypoints.internal.tls.key: give `cert` too: the \
             certificate chain (a PEM file) the key belongs to",
        ),
        (
            "tls: {}",
            "DIR/shoal.yaml:14:7: gateway.entrypoints.internal.tls: needs a certificate: `cert` \
             and `key` (PEM files), or `certificates: [{ cert, key }, …]` to choose among \
             several by SNI",
        ),
        (
            "tls: { certificates: [] }",
            "DIR/shoal.yaml:14:28: gateway.entrypoints.internal.tls.certificates: needs at \
             least one certificate: `[{ cert: FILE, key: FILE }]`",
        ),
        (
            "tls: { certificates: [{ cert: certs/other.pem }] }",
            "DIR/shoal.yaml:14:31: gateway.entrypoints.internal.tls.certificates[0].cert: give \
             `key` too: the certificate's private key (a PEM file)",
        ),
        (
            "tls: { cert: certs/other.pem, key: certs/other-key.pem, certificates: [] }",
            "DIR/shoal.yaml:14:63: gateway.entrypoints.internal.tls.certificates: give `cert` \
             and `key` (one certificate) or `certificates` (a list), not both",
        ),
    ] {
        let e = dir.one_error(&ENTRYPOINTS.replace(internal, tls));
        assert_eq!(e, expected, "{tls}");
    }
    // Unknown fields in `tls` are reported like any other.
    let e = dir.one_error(&ENTRYPOINTS.replace("min_version: 1.3", "min_verson: 1.3"));
    assert!(
        e.contains("unknown field `min_verson`") && e.ends_with("did you mean `min_version`?"),
        "{e}"
    );
}

#[test]
fn redirect_to_names_another_entrypoint_with_tls() {
    let dir = Dir::new("redirects");
    dir.certs();
    for (to, expected) in [
        (
            "redirect_to: websecur",
            "DIR/shoal.yaml:5:20: gateway.entrypoints.web.redirect_to: unknown entrypoint \
             `websecur`; did you mean `websecure`?",
        ),
        (
            "redirect_to: web",
            "DIR/shoal.yaml:5:20: gateway.entrypoints.web.redirect_to: entrypoint `web` cannot \
             redirect to itself",
        ),
    ] {
        let e = dir.one_error(&ENTRYPOINTS.replace("redirect_to: websecure", to));
        assert_eq!(e, expected, "{to}");
    }
    // The target must serve HTTPS.
    let no_tls = "gateway:
  entrypoints:
    web: { listen: 127.0.0.1:8000, redirect_to: other }
    other: { listen: 127.0.0.1:8001 }
";
    let e = dir.one_error(no_tls);
    assert_eq!(
        e,
        "DIR/shoal.yaml:3:49: gateway.entrypoints.web.redirect_to: entrypoint `other` has no \
         `tls`: `redirect_to` sends clients to an HTTPS entrypoint; add `tls:` to `other`"
    );
    // An entrypoint cannot both serve HTTPS and redirect.
    let e = dir.one_error(&ENTRYPOINTS.replace(
        "      listen: 127.0.0.1:9443\n",
        "      listen: 127.0.0.1:9443\n      redirect_to: websecure\n",
    ));
    assert_eq!(
        e,
        "DIR/shoal.yaml:14:7: gateway.entrypoints.internal.redirect_to: an entrypoint with \
         `tls` serves HTTPS itself; `redirect_to` is for a plain HTTP entrypoint that sends \
         clients to an HTTPS one"
    );
    // The redirect's port is the target's, even when the target's certificate is bad (that
    // is reported once, at the certificate).
    let e = dir.one_error(&ENTRYPOINTS.replace("certs/localhost.pem", "certs/gone.pem"));
    assert!(e.contains("certificates[0].cert: no such file"), "{e}");
}

#[test]
fn routes_cannot_listen_on_a_redirecting_entrypoint() {
    let dir = Dir::new("redirect-routes");
    dir.certs();
    let e = dir.one_error(&ENTRYPOINTS.replace(
        "entrypoints: [websecure, internal]",
        "entrypoints: [internal, web]",
    ));
    assert_eq!(
        e,
        "DIR/shoal.yaml:21:29: routes[0].entrypoints[1]: entrypoint `web` redirects every \
         request to `websecure`; routes cannot listen on it; list `websecure` instead"
    );
    // A route on every entrypoint is fine: the redirecting one answers with the redirect.
    let s = dir
        .load(&ENTRYPOINTS.replace("    entrypoints: [websecure, internal]\n", ""))
        .unwrap();
    assert_eq!(s.routes[0].entrypoints, None);
}

const HTTPS_SERVICES: &str = "services:
  api:
    servers: [https://api.internal, 'https://127.0.0.1:9443']
  pinned:
    servers: [https://127.0.0.1:9444]
    protocol: h2
    tls:
      ca: certs/ca.pem
      server_name: api.internal
  lab:
    servers: [https://127.0.0.1:9445]
    tls: { insecure_skip_verify: true }
  local:
    command: shoal sample-app
    tls: true
  plain:
    command: shoal sample-app
    tls: false
";

#[test]
fn https_servers_and_tls_turn_tls_to_the_replicas_on() {
    let dir = Dir::new("upstream-tls");
    dir.certs();
    let s = dir.load(HTTPS_SERVICES).unwrap();
    let api = s.service("api").unwrap();
    assert_eq!(
        api.tls,
        Some(UpstreamTls::default()),
        "https:// turns TLS on"
    );
    let Source::Servers(servers) = &api.source else {
        panic!()
    };
    assert_eq!(
        servers[0].authority, "api.internal:443",
        "https's port is 443"
    );
    assert_eq!(servers[1].authority, "127.0.0.1:9443");
    assert_eq!(api.protocol, Protocol::Http1);
    let pinned = s.service("pinned").unwrap();
    assert_eq!(pinned.protocol, Protocol::H2);
    assert_eq!(
        pinned.tls,
        Some(UpstreamTls {
            ca: Some(dir.path("certs/ca.pem")),
            server_name: Some("api.internal".into()),
            insecure_skip_verify: false,
        })
    );
    assert_eq!(
        s.service("lab").unwrap().tls,
        Some(UpstreamTls {
            insecure_skip_verify: true,
            ..UpstreamTls::default()
        })
    );
    assert_eq!(
        s.service("local").unwrap().tls,
        Some(UpstreamTls::default())
    );
    assert_eq!(s.service("plain").unwrap().tls, None);
    // http:// servers stay plain, port 80 by default.
    let s = parse("services:\n  a:\n    servers: [http://h]\n", "shoal.yaml").unwrap();
    assert_eq!(s.services[0].tls, None);
    let Source::Servers(servers) = &s.services[0].source else {
        panic!()
    };
    assert_eq!(servers[0].authority, "h:80");
}

#[test]
fn kubernetes_services_take_tls_and_h2_too() {
    let src = "services:
  users:
    image: ghcr.io/acme/users:1.4
    port: 8443
    tls: { server_name: users.default.svc }
    protocol: h2
  legacy:
    servers: [https://10.0.0.5:8443]
";
    let s = parse_for(src, "shoal.yaml", Runtime::Kubernetes).unwrap();
    let users = s.service("users").unwrap();
    assert_eq!(users.protocol, Protocol::H2);
    assert_eq!(
        users.tls.as_ref().unwrap().server_name.as_deref(),
        Some("users.default.svc")
    );
    assert_eq!(
        s.service("legacy").unwrap().tls,
        Some(UpstreamTls::default())
    );
    let e = parse_for(
        &src.replace("    tls: { server_name: users.default.svc }\n", ""),
        "shoal.yaml",
        Runtime::Kubernetes,
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "error: shoal.yaml:5:15: services.users.protocol: `h2` is HTTP/2 over TLS, and this \
         service does not speak TLS to its replicas; write `protocol: h2c` for HTTP/2 without \
         TLS, or give `https://` servers or `tls: true`"
    );
}

#[test]
fn service_tls_errors_name_the_field() {
    let dir = Dir::new("upstream-tls-errors");
    dir.certs();
    for (from, to, expected) in [
        (
            "[https://api.internal, 'https://127.0.0.1:9443']",
            "[https://api.internal, 'http://127.0.0.1:9443']",
            "DIR/shoal.yaml:3:37: services.api.servers[1]: `http://127.0.0.1:9443` is \
             `http://` and `servers[0]` is `https://`: the servers of one service use one scheme",
        ),
        (
            "    servers: [https://127.0.0.1:9445]\n    tls: {",
            "    servers: [http://127.0.0.1:9445]\n    tls: {",
            "DIR/shoal.yaml:12:10: services.lab.tls: `tls` is for replicas that serve HTTPS, \
             and this service's servers are `http://`; write the servers as `https://HOST:PORT`",
        ),
        (
            "    servers: [https://127.0.0.1:9445]\n    tls: { insecure_skip_verify: true }",
            "    servers: [https://127.0.0.1:9445]\n    tls: false",
            "DIR/shoal.yaml:12:10: services.lab.tls: the servers are `https://`, which speaks \
             TLS; for plain HTTP write them as `http://`",
        ),
        (
            "ca: certs/ca.pem",
            "ca: certs/no-ca.pem",
            "DIR/shoal.yaml:8:11: services.pinned.tls.ca: no such file: DIR/certs/no-ca.pem",
        ),
        (
            "server_name: api.internal",
            "server_name: 'api internal'",
            "DIR/shoal.yaml:9:20: services.pinned.tls.server_name: `api internal` is not a DNS \
             name or an IP address",
        ),
        (
            "tls: { insecure_skip_verify: true }",
            "tls: { insecure_skip_verify: true, ca: certs/ca.pem }",
            "DIR/shoal.yaml:12:40: services.lab.tls.ca: `insecure_skip_verify: true` accepts \
             any certificate, so `ca` would not be used; keep one of them",
        ),
        (
            "    command: shoal sample-app\n    tls: true",
            "    command: shoal sample-app\n    tls: true\n    protocol: h2c",
            "DIR/shoal.yaml:16:15: services.local.protocol: `h2c` is HTTP/2 without TLS, and \
             this service speaks TLS to its replicas; write `protocol: h2` for HTTP/2 over TLS",
        ),
        (
            "    command: shoal sample-app\n    tls: false",
            "    command: shoal sample-app\n    tls: false\n    protocol: h2",
            "DIR/shoal.yaml:19:15: services.plain.protocol: `h2` is HTTP/2 over TLS, and this \
             service does not speak TLS to its replicas; write `protocol: h2c` for HTTP/2 \
             without TLS, or give `https://` servers or `tls: true`",
        ),
        (
            "    command: shoal sample-app\n    tls: false",
            "    command: shoal sample-app\n    tls: false\n    protocol: http3",
            "DIR/shoal.yaml:19:15: services.plain.protocol: unknown protocol `http3`; expected \
             `http`, `h2c` or `h2`; did you mean `http`?",
        ),
        (
            "  plain:\n    command: shoal sample-app\n    tls: false",
            "  plain:\n    kind: worker\n    command: shoal sample-app\n    tls: false",
            "DIR/shoal.yaml:19:5: services.plain.tls: a worker (`kind: worker`) has no port",
        ),
    ] {
        assert!(HTTPS_SERVICES.contains(from), "{from}");
        let e = dir.one_error(&HTTPS_SERVICES.replace(from, to));
        assert_eq!(e, expected, "{to}");
    }
}

/// A bcrypt hash as `htpasswd -B` writes it (`$2y$`), made by the library the gateway
/// verifies with.
fn bcrypt_hash(password: &str) -> String {
    bcrypt::hash_with_result(password, 4)
        .unwrap()
        .format_for_version(bcrypt::Version::TwoY)
}

/// An argon2id hash in the PHC format, made by the library the gateway verifies with.
fn argon2_hash(password: &str) -> String {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let salt = SaltString::encode_b64(b"sixteen byte slt").unwrap();
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .unwrap()
        .to_string()
}

/// Every new kind, as the docs show them.
fn edge_middlewares(alice: &str) -> String {
    format!(
        "services:
  api:
    servers: [http://127.0.0.1:9001]
middlewares:
  limited:   {{ rate_limit: {{ average: 10, period: 1s, burst: 20, key: client_ip, depth: 1, max_keys: 5000 }} }}
  by-key:    {{ rate_limit: {{ average: 100, period: 1m, key: \"header:X-Api-Key\" }} }}
  conc:      {{ in_flight_req: {{ amount: 10, key: route }} }}
  auth:      {{ basic_auth: {{ users: [\"alice:{alice}\"], users_file: users.htpasswd, realm: staff, remove_header: true, header_field: X-User }} }}
  office:    {{ ip_allow_list: {{ source_range: [10.0.0.0/8, 127.0.0.1, \"::1\"], depth: 2 }} }}
  to-https:  {{ redirect_scheme: {{ scheme: https, port: 8443 }} }}
  old-docs:  {{ redirect_regex: {{ regex: \"^https?://([^/]+)/docs/(.*)\", replacement: \"https://${{1}}/manual/${{2}}\" }} }}
  rewrite:   {{ replace_path_regex: {{ regex: \"^/api/v1/(?<rest>.*)\", replacement: \"/v2/$rest\" }} }}
  gz:        {{ compress: {{ encodings: [gzip, br], min_response_body_bytes: 2KiB, excluded_content_types: [Text/Event-Stream, image/*] }} }}
  small:     {{ buffering: {{ max_request_body_bytes: 1MiB }} }}
  web-cors:  {{ cors: {{ allow_origins: [\"https://App.example:8443\"], allow_methods: [GET, POST, PURGE], allow_headers: [Content-Type], expose_headers: [X-Request-Id], allow_credentials: true, max_age: 10m }} }}
  edge:      {{ chain: [limited, auth, gz] }}
routes:
  - match: PathPrefix(`/`)
    service: api
    middlewares: [edge, conc, by-key, office, to-https, old-docs, rewrite, small, web-cors]
"
    )
}

#[test]
fn edge_middlewares_parse_into_the_model() {
    let dir = Dir::new("middlewares");
    let bob = argon2_hash("bob's password");
    dir.file(
        "users.htpasswd",
        &format!("# staff\n\nbob:{bob}\r\n  carol:{}  \n", bcrypt_hash("c")),
    );
    let alice = bcrypt_hash("alice's password");
    let s = dir.load(&edge_middlewares(&alice)).unwrap();
    let m = &s.routes[0].middlewares;
    let kinds: Vec<&str> = m.iter().map(Middleware::kind).collect();
    assert_eq!(
        kinds,
        [
            "rate_limit",
            "basic_auth",
            "compress",
            "in_flight_req",
            "rate_limit",
            "ip_allow_list",
            "redirect_scheme",
            "redirect_regex",
            "replace_path_regex",
            "buffering",
            "cors",
        ],
        "the chain `edge` is expanded in place"
    );
    assert_eq!(
        m[0],
        Middleware::RateLimit(RateLimit {
            average: 10,
            period: Duration::from_secs(1),
            burst: 20,
            key: ClientKey::Ip { depth: 1 },
            max_keys: 5000,
        })
    );
    assert_eq!(
        m[1],
        Middleware::BasicAuth(BasicAuth {
            users: vec![
                ("alice".into(), alice),
                ("bob".into(), bob),
                ("carol".into(), m_user(&m[1], "carol")),
            ],
            realm: "staff".into(),
            remove_header: true,
            header_field: Some(HeaderName::from_static("x-user")),
        })
    );
    assert_eq!(
        m[2],
        Middleware::Compress(Compress {
            encodings: vec![Encoding::Gzip, Encoding::Brotli],
            min_response_body_bytes: 2048,
            excluded_content_types: vec!["text/event-stream".into(), "image/*".into()],
        })
    );
    assert_eq!(
        m[3],
        Middleware::InFlightReq(InFlightReq {
            amount: 10,
            key: ClientKey::Route,
        })
    );
    assert_eq!(
        m[4],
        Middleware::RateLimit(RateLimit {
            average: 100,
            period: Duration::from_secs(60),
            burst: 1,
            key: ClientKey::Header(HeaderName::from_static("x-api-key")),
            max_keys: 1_000_000,
        })
    );
    let Middleware::IpAllowList(office) = &m[5] else {
        panic!("{:?}", m[5])
    };
    assert_eq!(office.depth, 2);
    let ranges: Vec<String> = office
        .source_range
        .iter()
        .map(|r| format!("{}/{}", r.addr, r.prefix))
        .collect();
    assert_eq!(ranges, ["10.0.0.0/8", "127.0.0.1/32", "::1/128"]);
    assert_eq!(
        m[6],
        Middleware::RedirectScheme(RedirectScheme {
            scheme: "https".into(),
            port: Some(8443),
            permanent: true,
        })
    );
    let Middleware::RedirectRegex(r) = &m[7] else {
        panic!("{:?}", m[7])
    };
    assert_eq!(r.regex.source, "^https?://([^/]+)/docs/(.*)");
    assert_eq!(r.replacement, "https://${1}/manual/${2}");
    assert!(!r.permanent, "redirect_regex is temporary by default");
    let mut out = String::new();
    r.regex
        .regex
        .captures("http://example.com/docs/a/b?x=1")
        .unwrap()
        .expand(&r.replacement, &mut out);
    assert_eq!(out, "https://example.com/manual/a/b?x=1");
    let Middleware::ReplacePathRegex(p) = &m[8] else {
        panic!("{:?}", m[8])
    };
    assert_eq!(
        p.regex
            .regex
            .replace("/api/v1/users", p.replacement.as_str()),
        "/v2/users"
    );
    assert_eq!(
        m[9],
        Middleware::Buffering(Buffering {
            max_request_body_bytes: 1024 * 1024
        })
    );
    assert_eq!(
        m[10],
        Middleware::Cors(Cors {
            allow_origins: vec!["https://app.example:8443".into()],
            allow_methods: vec![
                Method::GET,
                Method::POST,
                Method::from_bytes(b"PURGE").unwrap()
            ],
            allow_headers: vec!["content-type".into()],
            expose_headers: vec!["x-request-id".into()],
            allow_credentials: true,
            max_age: Some(Duration::from_secs(600)),
        })
    );
}

/// The hash a basic_auth middleware holds for `user`.
fn m_user(m: &Middleware, user: &str) -> String {
    let Middleware::BasicAuth(a) = m else {
        panic!("{m:?}")
    };
    a.users.iter().find(|(u, _)| u == user).unwrap().1.clone()
}

#[test]
fn edge_middlewares_have_documented_defaults() {
    let hash = bcrypt_hash("pw");
    let src = format!(
        "services:
  api:
    servers: [http://127.0.0.1:9001]
middlewares:
  limited: {{ rate_limit: {{ average: 5 }} }}
  conc: {{ in_flight_req: {{ amount: 2 }} }}
  auth: {{ basic_auth: {{ users: [\"u:{hash}\"] }} }}
  office: {{ ip_allow_list: {{ source_range: [10.0.0.0/8] }} }}
  to-http: {{ redirect_scheme: {{ scheme: HTTP }} }}
  gz: {{ compress: true }}
  gz2: {{ compress: {{}} }}
  cors: {{ cors: {{ allow_origins: ['*'] }} }}
routes:
  - match: PathPrefix(`/`)
    service: api
    middlewares: [limited, conc, auth, office, to-http, gz, gz2, cors]
"
    );
    let s = parse(&src, "shoal.yaml").unwrap();
    let m = &s.routes[0].middlewares;
    assert_eq!(
        m[0],
        Middleware::RateLimit(RateLimit {
            average: 5,
            period: Duration::from_secs(1),
            burst: 1,
            key: ClientKey::Ip { depth: 0 },
            max_keys: 1_000_000,
        })
    );
    assert_eq!(
        m[1],
        Middleware::InFlightReq(InFlightReq {
            amount: 2,
            key: ClientKey::Ip { depth: 0 },
        })
    );
    assert_eq!(
        m[2],
        Middleware::BasicAuth(BasicAuth {
            users: vec![("u".into(), hash)],
            realm: "shoal".into(),
            remove_header: false,
            header_field: None,
        })
    );
    assert_eq!(
        m[3],
        Middleware::IpAllowList(IpAllowList {
            source_range: vec![IpRange {
                addr: "10.0.0.0".parse().unwrap(),
                prefix: 8
            }],
            depth: 0,
        })
    );
    assert_eq!(
        m[4],
        Middleware::RedirectScheme(RedirectScheme {
            scheme: "http".into(),
            port: None,
            permanent: true,
        })
    );
    let defaults = Compress::default();
    assert_eq!(
        defaults.encodings,
        [Encoding::Zstd, Encoding::Brotli, Encoding::Gzip]
    );
    assert_eq!(defaults.min_response_body_bytes, 1024);
    let excluded = &defaults.excluded_content_types;
    for t in [
        "image/png",
        "image/jpeg",
        "video/*",
        "audio/*",
        "font/woff2",
    ] {
        assert!(excluded.iter().any(|e| e == t), "{t} is excluded");
    }
    for t in ["image/svg+xml", "text/event-stream", "text/html"] {
        assert!(!excluded.iter().any(|e| e == t), "{t} is compressed");
    }
    assert_eq!(m[5], Middleware::Compress(defaults.clone()));
    assert_eq!(m[6], Middleware::Compress(defaults));
    assert_eq!(
        m[7],
        Middleware::Cors(Cors {
            allow_origins: vec!["*".into()],
            allow_methods: vec![Method::GET, Method::HEAD, Method::POST],
            allow_headers: vec![],
            expose_headers: vec![],
            allow_credentials: false,
            max_age: None,
        })
    );
}

/// A stack with one middleware `m` (written `DEF`) used by a route.
const ONE_MIDDLEWARE: &str = "services:
  api:
    servers: [http://127.0.0.1:9001]
middlewares:
  m: DEF
routes:
  - { match: PathPrefix(`/`), service: api, middlewares: [m] }
";

/// The single error of `ONE_MIDDLEWARE` with `def`; its place is line 5.
fn middleware_error(def: &str) -> String {
    one_error(&ONE_MIDDLEWARE.replace("DEF", def))
}

#[test]
fn rate_limit_and_in_flight_req_errors() {
    for (def, expected) in [
        (
            "{ rate_limit: { period: 1s } }",
            "shoal.yaml:5:8: middlewares.m.rate_limit: needs `average`: the requests allowed \
             per `period` (e.g. `average: 10`)",
        ),
        (
            "{ rate_limit: { average: 0 } }",
            "shoal.yaml:5:31: middlewares.m.rate_limit.average: must be at least 1 (requests \
             allowed per `period`)",
        ),
        (
            "{ rate_limit: { average: 1, burst: 0 } }",
            "shoal.yaml:5:41: middlewares.m.rate_limit.burst: must be at least 1 (a burst of 0 \
             would refuse every request)",
        ),
        (
            "{ rate_limit: { average: 1, period: 0s } }",
            "shoal.yaml:5:42: middlewares.m.rate_limit.period: must be greater than 0",
        ),
        (
            "{ rate_limit: { average: 1, period: 1 } }",
            "shoal.yaml:5:42: middlewares.m.rate_limit.period: `1` has no unit; write e.g. `1s` \
             or `1ms`",
        ),
        (
            "{ rate_limit: { average: 1, key: client-ip } }",
            "shoal.yaml:5:39: middlewares.m.rate_limit.key: unknown key `client-ip`; expected \
             `client_ip`, `route` or `header:NAME`; did you mean `client_ip`?",
        ),
        (
            "{ rate_limit: { average: 1, key: 'header:X Key' } }",
            "shoal.yaml:5:39: middlewares.m.rate_limit.key: `X Key` is not a valid header name",
        ),
        (
            "{ rate_limit: { average: 1, key: route, depth: 1 } }",
            "shoal.yaml:5:46: middlewares.m.rate_limit.depth: `depth` (trusted proxies in \
             `X-Forwarded-For`) applies to `key: client_ip`",
        ),
        (
            "{ rate_limit: { average: 1, max_keys: 0 } }",
            "shoal.yaml:5:44: middlewares.m.rate_limit.max_keys: must be between 1 and \
             100000000",
        ),
        (
            "{ in_flight_req: { key: route } }",
            "shoal.yaml:5:8: middlewares.m.in_flight_req: needs `amount`: the most requests in \
             flight per key (e.g. `amount: 10`)",
        ),
        (
            "{ in_flight_req: { amount: 0 } }",
            "shoal.yaml:5:33: middlewares.m.in_flight_req.amount: must be at least 1 (requests \
             in flight at once)",
        ),
        (
            "{ in_flight_req: { amount: 1, key: 'header:X-Key', depth: 1 } }",
            "shoal.yaml:5:57: middlewares.m.in_flight_req.depth: `depth` (trusted proxies in \
             `X-Forwarded-For`) applies to `key: client_ip`",
        ),
    ] {
        assert_eq!(middleware_error(def), expected, "{def}");
    }
    let s = parse(
        &ONE_MIDDLEWARE.replace(
            "DEF",
            "{ in_flight_req: { amount: 3, key: 'header:X-Tenant' } }",
        ),
        "f",
    )
    .unwrap();
    assert_eq!(
        s.routes[0].middlewares[0],
        Middleware::InFlightReq(InFlightReq {
            amount: 3,
            key: ClientKey::Header(HeaderName::from_static("x-tenant"))
        })
    );
}

#[test]
fn basic_auth_accepts_bcrypt_and_argon2_only_and_never_shows_a_hash() {
    let ok = bcrypt_hash("pw");
    let accepted = [
        ok.clone(),
        ok.replacen("$2y$", "$2b$", 1),
        ok.replacen("$2y$", "$2a$", 1),
        argon2_hash("pw"),
        argon2_hash("pw").replacen("$argon2id$", "$argon2i$", 1),
        argon2_hash("pw").replacen("$argon2id$", "$argon2d$", 1),
    ];
    for hash in &accepted {
        let s = parse(
            &ONE_MIDDLEWARE.replace(
                "DEF",
                &format!("{{ basic_auth: {{ users: ['u:{hash}'] }} }}"),
            ),
            "f",
        )
        .unwrap();
        assert_eq!(m_user(&s.routes[0].middlewares[0], "u"), *hash);
    }
    // `openssl passwd -apr1`, `htpasswd -s`, `openssl passwd -1`/`-5`/`-6`, crypt(3), and
    // plain text: each is named, and none is shown.
    for (hash, found) in [
        (
            "$apr1$abcdefgh$h9FWgUz3n9YxylKLlR5SQ/",
            "Apache MD5 (`$apr1$`)",
        ),
        ("{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ=", "SHA-1 (`{SHA}`)"),
        ("$1$abcdefgh$XxHp8Sm5ZymGkqqkSb9OW/", "MD5-crypt (`$1$`)"),
        (
            "$5$abcdefgh$8Wa9vRHtD6qFzBZXpRbP9y5f7h1jHxSZ0uaN2hVFfQ9",
            "SHA-256-crypt (`$5$`)",
        ),
        (
            "$6$abcdefgh$Wl0qSCwrOxBbpmPXZzZS8jRlv9GgNu4NqDZ9Hst5Mv1",
            "SHA-512-crypt (`$6$`)",
        ),
        ("abNANd1rDfiNc", "DES crypt (or plain text)"),
        ("hunter2!", "plain text or an unknown scheme"),
        (
            "$2y$05$tooShort",
            "a malformed bcrypt hash (expected `$2y$COST$` and 53 characters)",
        ),
        (
            "$argon2id$v=19$m=19456,t=2$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA",
            "a malformed argon2 hash (expected the PHC format `$argon2id$v=19$m=…,t=…,p=…$SALT$HASH`)",
        ),
        ("$7$secretish", "an unknown crypt scheme"),
    ] {
        let e = middleware_error(&format!("{{ basic_auth: {{ users: ['alice:{hash}'] }} }}"));
        assert_eq!(
            e,
            format!(
                "shoal.yaml:5:30: middlewares.m.basic_auth.users[0]: user `alice`: the password \
                 hash is {found}, which shoal does not accept; regenerate it with `htpasswd -B` \
                 (bcrypt), or use an argon2 hash"
            )
        );
        let secret = hash.trim_start_matches(['$', '{']);
        let secret = &secret[secret.len().min(6)..];
        assert!(!e.contains(secret), "the hash is never shown: {e}");
    }
    for (entry, expected) in [
        ("'alice'", "expected `user:hash` (htpasswd format)"),
        (
            "':x'",
            "expected `user:hash` with a user name before the `:`",
        ),
        ("'alice:'", "user `alice` has no password hash"),
    ] {
        let e = middleware_error(&format!("{{ basic_auth: {{ users: [{entry}] }} }}"));
        assert_eq!(
            e,
            format!(
                "shoal.yaml:5:30: middlewares.m.basic_auth.users[0]: {expected}; regenerate it \
                 with `htpasswd -B` (bcrypt), or use an argon2 hash"
            ),
            "{entry}"
        );
    }
    let e = middleware_error(&format!(
        "{{ basic_auth: {{ users: ['alice:{ok}', 'bob:{ok}', 'alice:{ok}'] }} }}"
    ));
    assert_eq!(
        e,
        "shoal.yaml:5:168: middlewares.m.basic_auth.users[2]: user `alice` is listed twice"
    );
    for (def, expected) in [
        (
            "{ basic_auth: { realm: x } }".to_owned(),
            "shoal.yaml:5:8: middlewares.m.basic_auth: needs at least one user: \
             `users: [\"NAME:HASH\"]` or `users_file: FILE` (htpasswd format)",
        ),
        (
            format!("{{ basic_auth: {{ users: ['u:{ok}'], realm: 'say \"hi\"' }} }}"),
            "shoal.yaml:5:104: middlewares.m.basic_auth.realm: a realm is non-empty text \
             without `\"` or control characters (it is sent quoted in `WWW-Authenticate`)",
        ),
        (
            format!("{{ basic_auth: {{ users: ['u:{ok}'], header_field: 'X User' }} }}"),
            "shoal.yaml:5:111: middlewares.m.basic_auth.header_field: `X User` is not a valid \
             header name",
        ),
    ] {
        assert_eq!(middleware_error(&def), expected, "{def}");
    }
}

#[test]
fn basic_auth_users_file_errors_name_its_line() {
    let dir = Dir::new("htpasswd");
    let ok = bcrypt_hash("pw");
    let src = ONE_MIDDLEWARE.replace(
        "DEF",
        "\n    basic_auth:\n      users_file: auth/users.htpasswd",
    );
    dir.file(
        "auth/users.htpasswd",
        &format!(
            "# the team\nalice:{ok}\n\nbob:$apr1$abcdefgh$h9FWgUz3n9YxylKLlR5SQ/\ncarol:plain\nalice:{ok}\n"
        ),
    );
    let e = dir.load(&src).unwrap_err();
    let regenerate = "regenerate it with `htpasswd -B` (bcrypt), or use an argon2 hash";
    assert_eq!(
        e,
        [
            format!(
                "DIR/shoal.yaml:7:19: middlewares.m.basic_auth.users_file: \
                 auth/users.htpasswd:4: user `bob`: the password hash is Apache MD5 \
                 (`$apr1$`), which shoal does not accept; {regenerate}"
            ),
            format!(
                "DIR/shoal.yaml:7:19: middlewares.m.basic_auth.users_file: \
                 auth/users.htpasswd:5: user `carol`: the password hash is plain text or an \
                 unknown scheme, which shoal does not accept; {regenerate}"
            ),
            "DIR/shoal.yaml:7:19: middlewares.m.basic_auth.users_file: auth/users.htpasswd:6: \
             user `alice` is listed twice"
                .to_owned(),
        ]
    );
    assert!(!e.concat().contains("h9FWgUz3n9Yxyl"), "never the hash");
    dir.file("auth/users.htpasswd", "# nobody yet\n\n");
    assert_eq!(
        dir.one_error(&src),
        "DIR/shoal.yaml:7:19: middlewares.m.basic_auth.users_file: lists no user (blank lines \
         and `#` comments do not count)"
    );
    std::fs::remove_file(dir.path("auth/users.htpasswd")).unwrap();
    assert_eq!(
        dir.one_error(&src),
        "DIR/shoal.yaml:7:19: middlewares.m.basic_auth.users_file: no such file: \
         DIR/auth/users.htpasswd"
    );
    // Users from the list and the file together; a user in both is listed twice.
    dir.file("auth/users.htpasswd", &format!("bob:{ok}\n"));
    let both = src.replace(
        "      users_file",
        &format!("      users: ['alice:{ok}']\n      users_file"),
    );
    let s = dir.load(&both).unwrap();
    let Middleware::BasicAuth(a) = &s.routes[0].middlewares[0] else {
        panic!()
    };
    let users: Vec<&str> = a.users.iter().map(|(u, _)| u.as_str()).collect();
    assert_eq!(users, ["alice", "bob"]);
    dir.file("auth/users.htpasswd", &format!("alice:{ok}\n"));
    assert_eq!(
        dir.one_error(&both),
        "DIR/shoal.yaml:8:19: middlewares.m.basic_auth.users_file: auth/users.htpasswd:1: \
         user `alice` is listed twice"
    );
}

#[test]
fn ip_allow_list_errors_point_at_the_list_item() {
    for (def, expected) in [
        (
            "{ ip_allow_list: { source_range: [10.0.0.0/8, 10.0.0.0/33] } }",
            "shoal.yaml:5:52: middlewares.m.ip_allow_list.source_range[1]: `10.0.0.0/33`: the \
             prefix length of an IPv4 range is 0 to 32",
        ),
        (
            "{ ip_allow_list: { source_range: ['fd00::/200'] } }",
            "shoal.yaml:5:40: middlewares.m.ip_allow_list.source_range[0]: `fd00::/200`: the \
             prefix length of an IPv6 range is 0 to 128",
        ),
        (
            "{ ip_allow_list: { source_range: [office] } }",
            "shoal.yaml:5:40: middlewares.m.ip_allow_list.source_range[0]: `office` is not an \
             address or a CIDR range like `10.0.0.0/8` or `fd00::/8`",
        ),
        (
            "{ ip_allow_list: { source_range: [] } }",
            "shoal.yaml:5:39: middlewares.m.ip_allow_list.source_range: needs at least one \
             address or CIDR range",
        ),
        (
            "{ ip_allow_list: { depth: 1 } }",
            "shoal.yaml:5:8: middlewares.m.ip_allow_list: needs `source_range`: the addresses \
             or CIDR ranges allowed, e.g. `[10.0.0.0/8, 127.0.0.1]`",
        ),
    ] {
        assert_eq!(middleware_error(def), expected, "{def}");
    }
}

#[test]
fn redirect_scheme_errors() {
    for (def, expected) in [
        (
            "{ redirect_scheme: { scheme: htps } }",
            "shoal.yaml:5:35: middlewares.m.redirect_scheme.scheme: unknown scheme `htps`; \
             expected `https` or `http`; did you mean `https`?",
        ),
        (
            "{ redirect_scheme: { port: 443 } }",
            "shoal.yaml:5:8: middlewares.m.redirect_scheme: needs `scheme`: `https` or `http`",
        ),
        (
            "{ redirect_scheme: { scheme: https, port: 0 } }",
            "shoal.yaml:5:48: middlewares.m.redirect_scheme.port: `0` is not a port; expected \
             1 to 65535",
        ),
        (
            "{ redirect_scheme: { scheme: https, port: 70000 } }",
            "shoal.yaml:5:48: middlewares.m.redirect_scheme.port: `70000` is not a port; \
             expected 1 to 65535",
        ),
    ] {
        assert_eq!(middleware_error(def), expected, "{def}");
    }
    let s = parse(
        &ONE_MIDDLEWARE.replace(
            "DEF",
            "{ redirect_scheme: { scheme: https, port: '8443', permanent: false } }",
        ),
        "f",
    )
    .unwrap();
    assert_eq!(
        s.routes[0].middlewares[0],
        Middleware::RedirectScheme(RedirectScheme {
            scheme: "https".into(),
            port: Some(8443),
            permanent: false
        })
    );
}

#[test]
fn regexes_compile_and_replacements_name_existing_groups() {
    for (def, expected) in [
        (
            "{ redirect_regex: { regex: '^/(a', replacement: /b } }",
            // The column is the unclosed `(`, inside the quoted regex.
            "shoal.yaml:5:36: middlewares.m.redirect_regex.regex: invalid regular expression: \
             unclosed group",
        ),
        (
            "{ replace_path_regex: { regex: '^/x/(.*)', replacement: '/y/$2' } }",
            "shoal.yaml:5:62: middlewares.m.replace_path_regex.replacement: `$2` refers to \
             group 2, and the regex has 1 group(s)",
        ),
        (
            "{ replace_path_regex: { regex: '^/x/(.*)', replacement: '/y/${rest}' } }",
            "shoal.yaml:5:62: middlewares.m.replace_path_regex.replacement: `$rest` refers to a \
             group named `rest`, which the regex does not have",
        ),
        (
            "{ replace_path_regex: { regex: '^/x/(.*)', replacement: '/y/$1a' } }",
            "shoal.yaml:5:62: middlewares.m.replace_path_regex.replacement: `$1a` refers to a \
             group named `1a`, which the regex does not have; to follow group 1 with `a`, \
             write `${1}a`",
        ),
        (
            "{ redirect_regex: { regex: '^/x' } }",
            "shoal.yaml:5:8: middlewares.m.redirect_regex: needs `regex` and `replacement`",
        ),
    ] {
        assert_eq!(middleware_error(def), expected, "{def}");
    }
    // `$$` is a dollar sign; `${1}a` is group 1 then `a`.
    let s = parse(
        &ONE_MIDDLEWARE.replace(
            "DEF",
            "{ replace_path_regex: { regex: '^/x/(.*)', replacement: '/$$/${1}a' } }",
        ),
        "f",
    )
    .unwrap();
    let Middleware::ReplacePathRegex(p) = &s.routes[0].middlewares[0] else {
        panic!()
    };
    assert_eq!(
        p.regex.regex.replace("/x/y", p.replacement.as_str()),
        "/$/ya"
    );
}

#[test]
fn compress_and_buffering_errors() {
    for (def, expected) in [
        (
            "{ compress: false }",
            "shoal.yaml:5:18: middlewares.m.compress: `compress: false` turns nothing off: \
             remove the middleware, or leave it out of the route's `middlewares`",
        ),
        (
            "{ compress: { encodings: [gzip, brotli] } }",
            "shoal.yaml:5:38: middlewares.m.compress.encodings[1]: unknown encoding `brotli`; \
             expected `zstd`, `br` or `gzip`; did you mean `br`?",
        ),
        (
            "{ compress: { encodings: [gzip, gzip] } }",
            "shoal.yaml:5:38: middlewares.m.compress.encodings[1]: `gzip` is listed twice",
        ),
        (
            "{ compress: { encodings: [] } }",
            "shoal.yaml:5:31: middlewares.m.compress.encodings: needs at least one of `zstd`, \
             `br`, `gzip`",
        ),
        (
            "{ compress: { min_response_body_bytes: 1kb } }",
            "shoal.yaml:5:45: middlewares.m.compress.min_response_body_bytes: `1kb` is not a \
             size; expected bytes or a number with a unit, like `10MiB`, `512KiB` or `10MB`",
        ),
        (
            "{ compress: { excluded_content_types: [image] } }",
            "shoal.yaml:5:45: middlewares.m.compress.excluded_content_types[0]: `image` is not \
             a media type; expected `type/subtype` or `type/*`, e.g. `image/png`",
        ),
        (
            "{ compress: { excluded_content_types: ['text/html; charset=utf-8'] } }",
            "shoal.yaml:5:45: middlewares.m.compress.excluded_content_types[0]: `text/html; \
             charset=utf-8`: give the media type without parameters (`type/subtype`)",
        ),
        (
            "{ compress: { excluded_content_types: ['*/*'] } }",
            "shoal.yaml:5:45: middlewares.m.compress.excluded_content_types[0]: `*/*` would \
             exclude every response: remove the middleware instead",
        ),
        (
            "{ buffering: { max_request_body_bytes: 0 } }",
            "shoal.yaml:5:45: middlewares.m.buffering.max_request_body_bytes: must be at least \
             1 byte",
        ),
        (
            "{ buffering: { max_request_body_bytes: lots } }",
            "shoal.yaml:5:45: middlewares.m.buffering.max_request_body_bytes: `lots` is not a \
             size; expected bytes or a number with a unit, like `10MiB`, `512KiB` or `10MB`",
        ),
        (
            "{ buffering: {} }",
            "shoal.yaml:5:8: middlewares.m.buffering: needs `max_request_body_bytes`: the \
             longest request body, e.g. `1MiB`",
        ),
    ] {
        assert_eq!(middleware_error(def), expected, "{def}");
    }
}

#[test]
fn cors_errors() {
    for (def, expected) in [
        (
            "{ cors: { allow_origins: ['https://app.example/'] } }",
            "shoal.yaml:5:32: middlewares.m.cors.allow_origins[0]: `https://app.example/`: an \
             origin has no path (browsers send `https://app.example`)",
        ),
        (
            "{ cors: { allow_origins: [app.example] } }",
            "shoal.yaml:5:32: middlewares.m.cors.allow_origins[0]: `app.example` is not an \
             origin; expected `scheme://host[:port]` like `https://app.example`, or `*`",
        ),
        (
            "{ cors: { allow_origins: ['*', 'https://a.example'] } }",
            "shoal.yaml:5:31: middlewares.m.cors.allow_origins: `*` allows every origin: list \
             origins, or `*` alone",
        ),
        (
            "{ cors: { allow_origins: [] } }",
            "shoal.yaml:5:31: middlewares.m.cors.allow_origins: needs at least one origin",
        ),
        (
            "{ cors: { allow_methods: [GET] } }",
            "shoal.yaml:5:8: middlewares.m.cors: needs `allow_origins`: the origins allowed, \
             e.g. `[\"https://app.example\"]`, or `[\"*\"]`",
        ),
        (
            "{ cors: { allow_origins: ['*'], allow_methods: [GET, post] } }",
            "shoal.yaml:5:59: middlewares.m.cors.allow_methods[1]: `post` is not `POST`: \
             methods are case-sensitive (RFC 9110 §9.1); did you mean `POST`?",
        ),
        (
            "{ cors: { allow_origins: ['*'], allow_methods: ['*'] } }",
            "shoal.yaml:5:54: middlewares.m.cors.allow_methods[0]: list the methods, e.g. \
             `[GET, POST]`",
        ),
        (
            "{ cors: { allow_origins: ['*'], allow_methods: ['GE T'] } }",
            "shoal.yaml:5:54: middlewares.m.cors.allow_methods[0]: `GE T` is not a method",
        ),
        (
            "{ cors: { allow_origins: ['*'], expose_headers: ['X Id'] } }",
            "shoal.yaml:5:55: middlewares.m.cors.expose_headers[0]: `X Id` is not a valid \
             header name",
        ),
        (
            "{ cors: { allow_origins: ['*'], max_age: 1500ms } }",
            "shoal.yaml:5:47: middlewares.m.cors.max_age: `Access-Control-Max-Age` is whole \
             seconds",
        ),
    ] {
        assert_eq!(middleware_error(def), expected, "{def}");
    }
}

const CHAINS: &str = "services:
  api:
    servers: [http://127.0.0.1:9001]
middlewares:
  strip: { strip_prefix: /api }
  add: { add_prefix: /v1 }
  gz: { compress: true }
  inner: { chain: [strip, add] }
  outer: { chain: [inner, gz, strip] }
routes:
  - match: PathPrefix(`/`)
    service: api
    middlewares: [outer, add]
";

#[test]
fn chains_expand_in_place_recursively() {
    let s = parse(CHAINS, "shoal.yaml").unwrap();
    let kinds: Vec<&str> = s.routes[0]
        .middlewares
        .iter()
        .map(Middleware::kind)
        .collect();
    assert_eq!(
        kinds,
        [
            "strip_prefix",
            "add_prefix",
            "compress",
            "strip_prefix",
            "add_prefix"
        ]
    );
    assert_eq!(
        s.routes[0].middlewares[1],
        Middleware::AddPrefix("/v1".into())
    );
}

#[test]
fn chain_errors_name_the_member_or_the_cycle() {
    let e = one_error(&CHAINS.replace("[inner, gz, strip]", "[inner, gzz, strip]"));
    assert_eq!(
        e,
        "shoal.yaml:9:27: middlewares.outer.chain[1]: unknown middleware `gzz`; did you mean \
         `gz`?"
    );
    let e = one_error(&CHAINS.replace("[strip, add]", "[strip, outer]"));
    assert_eq!(
        e,
        "shoal.yaml:8:27: middlewares.inner.chain[1]: the chain `inner` → `outer` → `inner` is \
         a cycle: a chain cannot include itself"
    );
    let e = one_error(&CHAINS.replace("[strip, add]", "[inner]"));
    assert_eq!(
        e,
        "shoal.yaml:8:20: middlewares.inner.chain[0]: the chain `inner` → `inner` is a cycle: a \
         chain cannot include itself"
    );
    let e = one_error(&CHAINS.replace("[strip, add]", "[]"));
    assert_eq!(
        e,
        "shoal.yaml:8:19: middlewares.inner.chain: needs at least one middleware"
    );
    // A member that is invalid is reported where it is written, once.
    let e = one_error(&CHAINS.replace("{ add_prefix: /v1 }", "{ add_prefix: v1 }"));
    assert_eq!(
        e,
        "shoal.yaml:6:22: middlewares.add.add_prefix: `v1` must start with `/`"
    );
    // Chains nest at most 32 deep.
    let mut deep = String::from(
        "services:\n  api:\n    servers: [http://127.0.0.1:9001]\nmiddlewares:\n  c0: { strip_prefix: /x }\n",
    );
    for i in 1..=40 {
        deep.push_str(&format!("  c{i}: {{ chain: [c{}] }}\n", i - 1));
    }
    let e = errors(&deep);
    assert!(
        e.iter()
            .any(|e| e.contains(".chain: chains nest more than 32 deep here")),
        "{e:#?}"
    );
}

#[test]
fn a_middleware_has_exactly_one_kind() {
    assert_eq!(
        middleware_error("{ compress: true, rate_limit: { average: 1 } }"),
        "shoal.yaml:5:3: middlewares.m: middleware `m` needs exactly one of the kinds, and has \
         `rate_limit` and `compress`"
    );
    assert_eq!(
        middleware_error("{}"),
        "shoal.yaml:5:3: middlewares.m: middleware `m` needs exactly one of `strip_prefix`, \
         `add_prefix`, `headers`, `rate_limit`, `in_flight_req`, `basic_auth`, \
         `ip_allow_list`, `redirect_scheme`, `redirect_regex`, `replace_path_regex`, \
         `compress`, `buffering`, `cors`, `chain`"
    );
    let e = middleware_error("{ rate_limt: { average: 1 } }");
    assert!(
        e.contains("unknown field `rate_limt`") && e.ends_with("did you mean `rate_limit`?"),
        "{e}"
    );
}

#[test]
fn every_unknown_field_in_the_edge_sections_in_one_run() {
    let dir = Dir::new("unknown-fields");
    dir.certs();
    let src = "gateway:
  entrypoints:
    websecure:
      listen: 127.0.0.1:8443
      tls:
        cert: certs/localhost.pem
        key: certs/localhost-key.pem
        min_versoin: '1.3'
services:
  api:
    servers: [https://127.0.0.1:9443]
    tls:
      ca: certs/ca.pem
      insecure: true
middlewares:
  limited:
    rate_limit:
      average: 10
      brust: 20
  gz:
    compress:
      min_response_body_bytes: 1KiB
      encoding: [gzip]
routes:
  - match: PathPrefix(`/`)
    service: api
    middlewares: [limited, gz]
";
    let e = dir.load(src).unwrap_err();
    let places: Vec<&str> = e.iter().map(|e| e.split(": ").next().unwrap()).collect();
    assert_eq!(
        places,
        [
            "DIR/shoal.yaml:8:9",
            "DIR/shoal.yaml:14:7",
            "DIR/shoal.yaml:19:7",
            "DIR/shoal.yaml:23:7"
        ],
        "{e:#?}"
    );
    assert!(e[0].ends_with("did you mean `min_version`?"), "{}", e[0]);
    assert!(e[1].contains("unknown field `insecure`"), "{}", e[1]);
    assert!(e[2].ends_with("did you mean `burst`?"), "{}", e[2]);
    assert!(e[3].ends_with("did you mean `encodings`?"), "{}", e[3]);
}

#[test]
fn files_are_resolved_like_other_paths_in_the_file() {
    // `parse` (no file) resolves against the working directory, as `access_log.path` does.
    let cwd = std::env::current_dir().unwrap().display().to_string();
    let e: Vec<String> = errors(
        "gateway:\n  entrypoints:\n    s: { listen: 127.0.0.1:0, tls: { cert: no-such-cert.pem, key: no-such-key.pem } }\n",
    )
    .iter()
    .map(|e| e.replace(&cwd, "CWD"))
    .collect();
    assert_eq!(
        e,
        [
            "shoal.yaml:3:44: gateway.entrypoints.s.tls.cert: no such file: CWD/no-such-cert.pem",
            "shoal.yaml:3:67: gateway.entrypoints.s.tls.key: no such file: CWD/no-such-key.pem",
        ]
    );
}

#[test]
fn named_files_are_regular_files() {
    // A device would never end (`/dev/zero`) or is no certificate: refused before reading.
    let e = one_error(&ONE_MIDDLEWARE.replace("DEF", "{ basic_auth: { users_file: /dev/zero } }"));
    assert_eq!(
        e,
        "shoal.yaml:5:34: middlewares.m.basic_auth.users_file: /dev/zero is not a regular file"
    );
}
