//! Options for one sample-app instance, and how they are read from a replica's environment.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use http::HeaderValue;

/// Environment variable holding the port to listen on (set by shoal for each replica).
pub const PORT_VAR: &str = "PORT";
/// Environment variable holding the replica index (set by shoal for each replica).
pub const REPLICA_VAR: &str = "SHOAL_REPLICA";
/// Environment variable holding the service name (set by shoal for each replica).
pub const SERVICE_VAR: &str = "SHOAL_SERVICE";
/// Environment variable naming the certificate chain (PEM) to serve HTTPS with; needs
/// [`TLS_KEY_VAR`] too.
pub const TLS_CERT_VAR: &str = "SAMPLE_TLS_CERT";
/// Environment variable naming the private key (PEM) of [`TLS_CERT_VAR`].
pub const TLS_KEY_VAR: &str = "SAMPLE_TLS_KEY";
/// Name used when [`SERVICE_VAR`] is unset or empty.
pub const DEFAULT_NAME: &str = "sample";
/// Default for [`Options::shutdown_grace`].
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Options for one sample-app instance.
#[derive(Debug, Clone)]
pub struct Options {
    /// Address to bind; port 0 picks a free port.
    pub listen: SocketAddr,
    /// Name reported by `/whoami` and in the `X-Sample-Name` response header (e.g. "users" or "r1").
    ///
    /// Must be a valid header value (no control characters); [`crate::SampleApp::start`]
    /// rejects others.
    pub name: String,
    /// Replica index reported by `/whoami` and in the `X-Sample-Replica` response header.
    pub replica: Option<u32>,
    /// Delay before the listener is bound (simulates slow start-up; readiness checks must wait
    /// for it). Default: none.
    pub startup_delay: Duration,
    /// Max time to let in-flight requests finish after shutdown is requested.
    /// Default: [`DEFAULT_SHUTDOWN_GRACE`] (5 s).
    pub shutdown_grace: Duration,
    /// At most this many `/work` and `/sleep` requests are served at once; the others queue
    /// (a replica with a fixed worker pool: its latency grows with its load, which is what
    /// an autoscaler must fix). Default: unlimited.
    pub capacity: Option<usize>,
    /// Serve HTTPS (TLS 1.2 and 1.3, ALPN `h2` and `http/1.1`) with this certificate
    /// instead of plain HTTP. Default: plain HTTP.
    pub tls: Option<TlsFiles>,
}

/// A certificate chain and its private key, PEM files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The chain, leaf first.
    pub cert: PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

impl TlsFiles {
    /// From [`TLS_CERT_VAR`] and [`TLS_KEY_VAR`]: both or neither.
    pub fn from_env(
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<TlsFiles>, OptionsError> {
        let nonempty = |var| lookup(var).filter(|v| !v.trim().is_empty());
        match (nonempty(TLS_CERT_VAR), nonempty(TLS_KEY_VAR)) {
            (None, None) => Ok(None),
            (Some(cert), Some(key)) => Ok(Some(TlsFiles {
                cert: cert.into(),
                key: key.into(),
            })),
            (Some(_), None) => Err(OptionsError::Missing { var: TLS_KEY_VAR }),
            (None, Some(_)) => Err(OptionsError::Missing { var: TLS_CERT_VAR }),
        }
    }
}

impl Default for Options {
    /// `127.0.0.1:0` (a free port), name [`DEFAULT_NAME`], no replica index, no start-up
    /// delay, [`DEFAULT_SHUTDOWN_GRACE`].
    fn default() -> Self {
        Options {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            name: DEFAULT_NAME.to_owned(),
            replica: None,
            startup_delay: Duration::ZERO,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            capacity: None,
            tls: None,
        }
    }
}

impl Options {
    /// Defaults for running as a replica under shoal: listen on `127.0.0.1:$PORT`
    /// ([`PORT_VAR`], required), replica index from [`REPLICA_VAR`] (optional), name from
    /// [`SERVICE_VAR`] or [`DEFAULT_NAME`], HTTPS if [`TLS_CERT_VAR`] and [`TLS_KEY_VAR`]
    /// are set. Other fields are as in [`Options::default`].
    ///
    /// Takes the environment as a lookup function so tests never touch the process
    /// environment; pass `|k| std::env::var(k).ok()` to read the real one.
    pub fn from_env(lookup: impl Fn(&str) -> Option<String>) -> Result<Options, OptionsError> {
        let port = match lookup(PORT_VAR) {
            None => return Err(OptionsError::Missing { var: PORT_VAR }),
            Some(value) => parse_var::<u16>(PORT_VAR, value, "expected a port number 0-65535")?,
        };
        let replica = lookup(REPLICA_VAR)
            .map(|value| parse_var::<u32>(REPLICA_VAR, value, "expected a replica index"))
            .transpose()?;
        let name = match lookup(SERVICE_VAR) {
            Some(value) if !value.trim().is_empty() => {
                if HeaderValue::from_str(&value).is_err() {
                    return Err(OptionsError::Invalid {
                        var: SERVICE_VAR,
                        value,
                        reason: "expected no control characters (it is sent as a header)"
                            .to_owned(),
                    });
                }
                value
            }
            _ => DEFAULT_NAME.to_owned(),
        };
        Ok(Options {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
            name,
            replica,
            tls: TlsFiles::from_env(&lookup)?,
            ..Options::default()
        })
    }

    /// `name` or `name#replica`, as printed in logs and the listening line.
    pub(crate) fn label(&self) -> String {
        match self.replica {
            Some(replica) => format!("{}#{replica}", self.name),
            None => self.name.clone(),
        }
    }
}

fn parse_var<T: std::str::FromStr>(
    var: &'static str,
    value: String,
    expected: &str,
) -> Result<T, OptionsError> {
    match value.trim().parse() {
        Ok(parsed) => Ok(parsed),
        Err(_) => Err(OptionsError::Invalid {
            var,
            value,
            reason: expected.to_owned(),
        }),
    }
}

/// Why [`Options::from_env`] could not build options.
#[derive(Debug, thiserror::Error)]
pub enum OptionsError {
    /// A required environment variable is not set.
    #[error("environment variable {var} is not set")]
    Missing {
        /// The variable's name.
        var: &'static str,
    },
    /// An environment variable holds a value that cannot be used.
    #[error("environment variable {var}={value:?} is invalid: {reason}")]
    Invalid {
        /// The variable's name.
        var: &'static str,
        /// The value found.
        value: String,
        /// What was expected instead.
        reason: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |key| map.get(key).cloned()
    }

    #[test]
    fn reads_port_replica_and_name() {
        let opts = Options::from_env(env(&[
            ("PORT", "40123"),
            ("SHOAL_REPLICA", "2"),
            ("SHOAL_SERVICE", "users"),
        ]))
        .unwrap();
        assert_eq!(opts.listen, "127.0.0.1:40123".parse().unwrap());
        assert_eq!(opts.replica, Some(2));
        assert_eq!(opts.name, "users");
        assert_eq!(opts.startup_delay, Duration::ZERO);
        assert_eq!(opts.shutdown_grace, DEFAULT_SHUTDOWN_GRACE);
        assert_eq!(opts.label(), "users#2");
    }

    #[test]
    fn replica_and_name_are_optional() {
        let opts = Options::from_env(env(&[("PORT", "0"), ("SHOAL_SERVICE", "  ")])).unwrap();
        assert_eq!(opts.replica, None);
        assert_eq!(opts.name, "sample");
        assert_eq!(opts.label(), "sample");
    }

    #[test]
    fn missing_port_names_the_variable() {
        let err = Options::from_env(env(&[])).unwrap_err();
        assert!(
            matches!(err, OptionsError::Missing { var: "PORT" }),
            "{err:?}"
        );
        assert_eq!(err.to_string(), "environment variable PORT is not set");
    }

    #[test]
    fn bad_port_names_the_variable_and_value() {
        for bad in ["", "http", "65536", "-1"] {
            let err = Options::from_env(env(&[("PORT", bad)])).unwrap_err();
            let OptionsError::Invalid { var, value, .. } = &err else {
                panic!("expected Invalid, got {err:?}");
            };
            assert_eq!((*var, value.as_str()), ("PORT", bad));
            assert!(err.to_string().contains(&format!("PORT={bad:?}")), "{err}");
        }
    }

    #[test]
    fn bad_replica_names_the_variable_and_value() {
        let err = Options::from_env(env(&[("PORT", "1"), ("SHOAL_REPLICA", "two")])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "environment variable SHOAL_REPLICA=\"two\" is invalid: expected a replica index"
        );
    }

    #[test]
    fn name_that_cannot_be_a_header_is_rejected() {
        let err = Options::from_env(env(&[("PORT", "1"), ("SHOAL_SERVICE", "a\nb")])).unwrap_err();
        assert!(
            matches!(
                err,
                OptionsError::Invalid {
                    var: "SHOAL_SERVICE",
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn tls_needs_both_files() {
        let opts = Options::from_env(env(&[("PORT", "1")])).unwrap();
        assert_eq!(opts.tls, None);
        let both = [
            ("PORT", "1"),
            ("SAMPLE_TLS_CERT", "c.pem"),
            ("SAMPLE_TLS_KEY", "k.pem"),
        ];
        assert_eq!(
            Options::from_env(env(&both)).unwrap().tls,
            Some(TlsFiles {
                cert: "c.pem".into(),
                key: "k.pem".into()
            })
        );
        let err =
            Options::from_env(env(&[("PORT", "1"), ("SAMPLE_TLS_CERT", "c.pem")])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "environment variable SAMPLE_TLS_KEY is not set"
        );
    }
}
