//! What a reader reads ([`Source`]), and with which credentials ([`Credentials`]).

use std::fmt;

use crate::BacklogError;
use crate::error::Failure;

/// Where a backlog is read. No secret in here: it is printed in status and events.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// Redis Streams consumer group: `XINFO GROUPS stream` → the group's `lag` (Redis ≥ 7);
    /// when lag is nil or absent, the entries after the group's `last-delivered-id` counted
    /// with `XRANGE` (up to 10,000); `entries-read` as the consumed counter.
    Redis {
        /// `redis://host:port[/db]`, with an optional username (`redis://user@host:port`)
        /// but never a password.
        url: String,
        /// The stream's key.
        stream: String,
        /// The consumer group's name.
        group: String,
    },
    /// RabbitMQ queue: messages ready, through AMQP (`amqp://…`: a passive
    /// `queue.declare`) or the management API (`http://…`), which can also count the
    /// unacknowledged ones and the consumed ones. See the crate doc.
    RabbitMq {
        /// `amqp://user@host:port/vhost` (vhost percent-encoded, `%2f` for `/`; no path =
        /// `/`), or `http://user@host:port[/vhost]` for the management API. Never a
        /// password.
        url: String,
        /// The queue's name.
        queue: String,
        /// Count the messages delivered but not yet acknowledged too (management API only).
        include_unacked: bool,
    },
    /// Kafka consumer group: the sum over the topic's partitions of high watermark −
    /// committed offset; partitions = the topic's partition count; consumed = the sum of
    /// committed offsets. See the crate doc for partitions without a committed offset.
    Kafka {
        /// Bootstrap brokers, `host:port`; the first that answers is used.
        brokers: Vec<String>,
        /// The topic.
        topic: String,
        /// The consumer group.
        group: String,
    },
}

/// How a reader authenticates. Empty (the default) means no authentication, or the
/// username in the URL without a password.
#[derive(Clone, Default, Debug)]
pub struct Credentials {
    /// Overrides the URL's username when set.
    pub username: Option<String>,
    /// The password (or Redis `AUTH` password); never printed.
    pub password: Option<Secret>,
}

/// A string that is never printed: `Debug` and `Display` show `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(s: String) -> Secret {
        Secret(s)
    }

    /// The value itself, to hand to a broker and nowhere else.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// A URL cut at its delimiters; enough for the URLs this crate takes (no parsing of
/// network bytes: these come from the stack file).
#[derive(Debug, PartialEq)]
pub(crate) struct UrlParts<'a> {
    pub(crate) scheme: &'a str,
    pub(crate) userinfo: Option<&'a str>,
    pub(crate) host_port: &'a str,
    /// Everything after the authority, `/` included; may be empty.
    pub(crate) path: &'a str,
}

pub(crate) fn split_url(url: &str) -> Option<UrlParts<'_>> {
    let (scheme, rest) = url.split_once("://")?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    let (userinfo, host_port) = match authority.rsplit_once('@') {
        Some((userinfo, host_port)) => (Some(userinfo), host_port),
        None => (None, authority),
    };
    Some(UrlParts {
        scheme,
        userinfo,
        host_port,
        path,
    })
}

/// The URL's host, port and path, without its user information.
fn shown(url: &str) -> String {
    match split_url(url) {
        Some(parts) => {
            let path = parts.path.split(['?', '#']).next().unwrap_or("");
            let path = if path == "/" || path == "/0" {
                ""
            } else {
                path
            };
            format!("{}{path}", parts.host_port)
        }
        None => "(invalid URL)".to_owned(),
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Redis { url, stream, group } => {
                write!(f, "redis {} stream {stream} group {group}", shown(url))
            }
            Source::RabbitMq {
                url,
                queue,
                include_unacked,
            } => {
                let api = match split_url(url) {
                    Some(parts) if parts.scheme.starts_with("http") => " management",
                    _ => "",
                };
                let unacked = if *include_unacked {
                    " (ready+unacked)"
                } else {
                    ""
                };
                write!(f, "rabbitmq{api} {} queue {queue}{unacked}", shown(url))
            }
            Source::Kafka {
                brokers,
                topic,
                group,
            } => write!(f, "kafka {} topic {topic} group {group}", brokers.join(",")),
        }
    }
}

impl Source {
    /// Checks what can be checked without a broker: the URL's scheme and shape, no password
    /// in it, names not empty, and what this crate does not support. [`crate::Reader::read`]
    /// returns the same error; configuration calls this to refuse a stack file early.
    pub fn validate(&self) -> Result<(), BacklogError> {
        self.check()
            .map_err(|failure| failure.into_error(self.to_string(), None))
    }

    pub(crate) fn check(&self) -> Result<(), Failure> {
        match self {
            Source::Redis { url, stream, group } => {
                let parts = check_url(url, &["redis"], &["rediss"])?;
                let db = parts.path.trim_start_matches('/');
                if !db.is_empty() && db.parse::<u32>().is_err() {
                    return Err(Failure::Invalid(format!(
                        "the path of {url:?} must be a database number"
                    )));
                }
                not_empty("stream", stream)?;
                not_empty("group", group)
            }
            Source::RabbitMq {
                url,
                queue,
                include_unacked,
            } => {
                let parts = check_url(url, &["amqp", "http"], &["amqps", "https"])?;
                not_empty("queue", queue)?;
                if *include_unacked && parts.scheme == "amqp" {
                    return Err(Failure::Unsupported(
                        "AMQP cannot count unacknowledged messages: give the management \
                         API's http:// URL to include them"
                            .to_owned(),
                    ));
                }
                Ok(())
            }
            Source::Kafka {
                brokers,
                topic,
                group,
            } => {
                if brokers.is_empty() {
                    return Err(Failure::Invalid("no bootstrap broker".to_owned()));
                }
                for broker in brokers {
                    let port = broker.rsplit_once(':').map(|(_, port)| port.parse::<u16>());
                    if !matches!(port, Some(Ok(_))) || broker.contains('/') {
                        return Err(Failure::Invalid(format!(
                            "broker {broker:?} is not host:port"
                        )));
                    }
                }
                not_empty("topic", topic)?;
                not_empty("group", group)
            }
        }
    }
}

fn check_url<'a>(url: &'a str, schemes: &[&str], tls: &[&str]) -> Result<UrlParts<'a>, Failure> {
    let Some(parts) = split_url(url) else {
        return Err(Failure::Invalid(format!(
            "{:?} is not a URL (expected {}://host:port)",
            shown(url),
            schemes[0]
        )));
    };
    if tls.contains(&parts.scheme) {
        return Err(Failure::Unsupported(format!(
            "TLS ({}://) is not supported",
            parts.scheme
        )));
    }
    if !schemes.contains(&parts.scheme) {
        return Err(Failure::Invalid(format!(
            "scheme {}:// (expected {})",
            parts.scheme,
            schemes
                .iter()
                .map(|s| format!("{s}://"))
                .collect::<Vec<_>>()
                .join(" or ")
        )));
    }
    if parts
        .userinfo
        .is_some_and(|userinfo| userinfo.contains(':'))
    {
        return Err(Failure::Invalid(
            "the URL has a password: give it as a credential (env or file), not in the URL"
                .to_owned(),
        ));
    }
    if parts.host_port.is_empty() {
        return Err(Failure::Invalid("the URL has no host".to_owned()));
    }
    Ok(parts)
}

fn not_empty(what: &str, value: &str) -> Result<(), Failure> {
    if value.is_empty() {
        Err(Failure::Invalid(format!("empty {what}")))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_host_and_objects_never_user_info() {
        let source = Source::Redis {
            url: "redis://app@127.0.0.1:6379".into(),
            stream: "sales".into(),
            group: "agg".into(),
        };
        assert_eq!(
            source.to_string(),
            "redis 127.0.0.1:6379 stream sales group agg"
        );
        let source = Source::Redis {
            url: "redis://10.0.0.1:6380/2".into(),
            stream: "s".into(),
            group: "g".into(),
        };
        assert_eq!(source.to_string(), "redis 10.0.0.1:6380/2 stream s group g");
        let source = Source::RabbitMq {
            url: "amqp://guest@localhost:5672/%2f".into(),
            queue: "orders".into(),
            include_unacked: false,
        };
        assert_eq!(
            source.to_string(),
            "rabbitmq localhost:5672/%2f queue orders"
        );
        let source = Source::RabbitMq {
            url: "http://guest@localhost:15672".into(),
            queue: "orders".into(),
            include_unacked: true,
        };
        assert_eq!(
            source.to_string(),
            "rabbitmq management localhost:15672 queue orders (ready+unacked)"
        );
        let source = Source::Kafka {
            brokers: vec!["a:9092".into(), "b:9092".into()],
            topic: "sales".into(),
            group: "agg".into(),
        };
        assert_eq!(
            source.to_string(),
            "kafka a:9092,b:9092 topic sales group agg"
        );
    }

    #[test]
    fn a_password_in_a_url_is_refused_and_not_printed() {
        let source = Source::Redis {
            url: "redis://app:hunter2secret@127.0.0.1:6379".into(),
            stream: "s".into(),
            group: "g".into(),
        };
        assert!(!source.to_string().contains("hunter2secret"));
        let error = source.validate().unwrap_err();
        assert!(matches!(error, BacklogError::Invalid { .. }), "{error:?}");
        assert!(!error.to_string().contains("hunter2secret"), "{error}");
        assert!(!format!("{error:?}").contains("hunter2secret"), "{error:?}");
        let source = Source::RabbitMq {
            url: "amqp://guest:hunter2secret@localhost:5672".into(),
            queue: "q".into(),
            include_unacked: false,
        };
        assert!(!source.to_string().contains("hunter2secret"));
        assert!(
            !source
                .validate()
                .unwrap_err()
                .to_string()
                .contains("hunter2secret")
        );
    }

    #[test]
    fn secrets_print_as_stars() {
        let credentials = Credentials {
            username: Some("app".into()),
            password: Some(Secret::new("hunter2secret".into())),
        };
        let debug = format!("{credentials:?}");
        assert!(!debug.contains("hunter2secret"), "{debug}");
        assert!(debug.contains("***"), "{debug}");
        let secret = Secret::new("hunter2secret".into());
        assert_eq!(secret.to_string(), "***");
        assert_eq!(format!("{secret:?}"), "***");
        assert_eq!(secret.expose(), "hunter2secret");
    }

    #[test]
    fn validate_refuses_what_is_not_supported() {
        let unacked_over_amqp = Source::RabbitMq {
            url: "amqp://localhost:5672".into(),
            queue: "q".into(),
            include_unacked: true,
        };
        assert!(matches!(
            unacked_over_amqp.validate(),
            Err(BacklogError::Unsupported { .. })
        ));
        let tls = Source::Redis {
            url: "rediss://localhost:6379".into(),
            stream: "s".into(),
            group: "g".into(),
        };
        assert!(matches!(
            tls.validate(),
            Err(BacklogError::Unsupported { .. })
        ));
        let bad_broker = Source::Kafka {
            brokers: vec!["localhost".into()],
            topic: "t".into(),
            group: "g".into(),
        };
        assert!(matches!(
            bad_broker.validate(),
            Err(BacklogError::Invalid { .. })
        ));
        let ok = Source::Kafka {
            brokers: vec!["localhost:9092".into()],
            topic: "t".into(),
            group: "g".into(),
        };
        assert!(ok.validate().is_ok());
        let wrong_scheme = Source::Redis {
            url: "http://localhost:6379".into(),
            stream: "s".into(),
            group: "g".into(),
        };
        let error = wrong_scheme.validate().unwrap_err().to_string();
        assert!(error.contains("expected redis://"), "{error}");
    }

    #[test]
    fn urls_split_at_their_delimiters() {
        assert_eq!(
            split_url("amqp://u@h:1/v?x=1"),
            Some(UrlParts {
                scheme: "amqp",
                userinfo: Some("u"),
                host_port: "h:1",
                path: "/v?x=1"
            })
        );
        assert_eq!(split_url("h:1"), None);
    }
}
