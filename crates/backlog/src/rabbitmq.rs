//! RabbitMQ: ready messages through AMQP (a passive `queue.declare`), or ready (+
//! unacknowledged) and acknowledged counts through the management API.

use base64::Engine as _;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use lapin::options::QueueDeclareOptions;
use lapin::protocol::{AMQPError, AMQPErrorKind, AMQPHardError, AMQPSoftError};
use lapin::types::FieldTable;
use lapin::uri::AMQPUri;
use lapin::{Channel, Connection, ConnectionProperties};

use crate::error::Failure;
use crate::source::split_url;
use crate::{Credentials, Reading, Source};

/// The largest management API answer read (one queue's JSON is a few KiB).
const MAX_BODY: usize = 1 << 20;

pub(crate) struct Reader {
    source: Source,
    url: String,
    queue: String,
    include_unacked: bool,
    credentials: Credentials,
    amqp: Option<(Connection, Channel)>,
    http: Option<SendRequest<Empty<bytes::Bytes>>>,
}

impl Reader {
    pub(crate) fn new(
        url: String,
        queue: String,
        include_unacked: bool,
        credentials: Credentials,
    ) -> Reader {
        Reader {
            source: Source::RabbitMq {
                url: url.clone(),
                queue: queue.clone(),
                include_unacked,
            },
            url,
            queue,
            include_unacked,
            credentials,
            amqp: None,
            http: None,
        }
    }

    pub(crate) fn credentials(&self) -> &Credentials {
        &self.credentials
    }

    pub(crate) fn disconnect(&mut self) {
        // lapin closes the connection when its last handle is dropped.
        self.amqp = None;
        self.http = None;
    }

    pub(crate) async fn read(&mut self) -> Result<Reading, Failure> {
        self.source.check()?;
        if self.url.starts_with("http://") {
            self.read_management().await
        } else {
            self.read_amqp().await
        }
    }

    async fn read_amqp(&mut self) -> Result<Reading, Failure> {
        let channel = match &self.amqp {
            Some((_, channel)) => channel,
            None => {
                let connection =
                    Connection::connect_uri(self.amqp_uri()?, ConnectionProperties::default())
                        .await
                        .map_err(classify_amqp)?;
                let channel = connection.create_channel().await.map_err(classify_amqp)?;
                &self.amqp.insert((connection, channel)).1
            }
        };
        let options = QueueDeclareOptions {
            passive: true,
            ..QueueDeclareOptions::default()
        };
        let queue = channel
            .queue_declare(self.queue.as_str().into(), options, FieldTable::default())
            .await
            .map_err(classify_amqp)?;
        Ok(Reading {
            backlog: u64::from(queue.message_count()),
            consumed: None,
            partitions: None,
        })
    }

    fn amqp_uri(&self) -> Result<AMQPUri, Failure> {
        let mut uri: AMQPUri = self.url.parse().map_err(Failure::Invalid)?;
        // `AMQPUri` keeps only domain names as hosts (an IP address becomes "localhost",
        // which may resolve to ::1): take the host as written.
        if let Some(parts) = split_url(&self.url) {
            let host = match parts.host_port.rsplit_once(':') {
                Some((host, port)) if port.parse::<u16>().is_ok() => host,
                _ => parts.host_port,
            };
            uri.authority.host = host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned();
        }
        if let Some(username) = &self.credentials.username {
            uri.authority.userinfo.username = username.clone();
        }
        if let Some(password) = &self.credentials.password {
            uri.authority.userinfo.password = password.expose().to_owned();
        }
        Ok(uri)
    }

    async fn read_management(&mut self) -> Result<Reading, Failure> {
        let parts = split_url(&self.url).ok_or_else(|| Failure::Invalid("bad URL".into()))?;
        let path = parts.path.split(['?', '#']).next().unwrap_or("");
        let (prefix, vhost) = match path.trim_matches('/').rsplit_once('/') {
            Some((prefix, vhost)) => (format!("/{prefix}"), vhost.to_owned()),
            None if path.trim_matches('/').is_empty() => (String::new(), "%2F".to_owned()),
            None => (String::new(), path.trim_matches('/').to_owned()),
        };
        let target = format!(
            "{prefix}/api/queues/{vhost}/{}",
            percent_encode(&self.queue)
        );
        let username = self
            .credentials
            .username
            .clone()
            .or_else(|| parts.userinfo.map(str::to_owned))
            .unwrap_or_else(|| "guest".to_owned());
        let password = match &self.credentials.password {
            Some(password) => password.expose().to_owned(),
            None => String::new(),
        };
        let authorization = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"))
        );
        let request = hyper::Request::get(target)
            .header(hyper::header::HOST, parts.host_port)
            .header(hyper::header::AUTHORIZATION, authorization)
            .header(hyper::header::ACCEPT, "application/json")
            .body(Empty::new())
            .map_err(|e| Failure::Invalid(e.to_string()))?;

        if self.http.as_ref().is_some_and(|sender| sender.is_closed()) {
            self.http = None;
        }
        let sender = match &mut self.http {
            Some(sender) => sender,
            None => {
                let tcp = tokio::net::TcpStream::connect(parts.host_port)
                    .await
                    .map_err(|e| Failure::Unreachable(format!("connect: {e}")))?;
                let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
                    .await
                    .map_err(|e| Failure::Unreachable(e.to_string()))?;
                tokio::spawn(connection);
                self.http.insert(sender)
            }
        };
        sender
            .ready()
            .await
            .map_err(|e| Failure::Unreachable(e.to_string()))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| Failure::Unreachable(e.to_string()))?;
        let status = response.status();
        let body = Limited::new(response.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|e| Failure::Unreachable(format!("reading the answer: {e}")))?
            .to_bytes();
        if !status.is_success() {
            let reason = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|json| {
                    let error = json.get("error")?.as_str()?.to_owned();
                    let reason = json.get("reason").and_then(|r| r.as_str()).unwrap_or("");
                    Some(format!("{error}: {reason}"))
                })
                .unwrap_or_default();
            let message = format!("HTTP {status} {reason}");
            return Err(match status.as_u16() {
                401 | 403 => Failure::Auth(message),
                404 => Failure::NotFound(format!(
                    "{message} (queue '{}' in vhost {vhost})",
                    self.queue
                )),
                _ => Failure::Protocol(message),
            });
        }
        management_reading(&body, self.include_unacked)
    }
}

/// Reads a `GET /api/queues/{vhost}/{queue}` answer.
fn management_reading(body: &[u8], include_unacked: bool) -> Result<Reading, Failure> {
    let json: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| Failure::Protocol(format!("management API answer is not JSON: {e}")))?;
    let field = |name: &str| json.get(name).and_then(serde_json::Value::as_u64);
    let Some(ready) = field("messages_ready") else {
        return Err(Failure::Protocol(
            "the management API has no message counts for this queue yet (statistics are \
             collected every collect_statistics_interval)"
                .to_owned(),
        ));
    };
    let unacked = if include_unacked {
        field("messages_unacknowledged").unwrap_or(0)
    } else {
        0
    };
    let consumed = json.get("message_stats").map(|stats| {
        ["ack", "deliver_no_ack", "get_no_ack"]
            .iter()
            .filter_map(|name| stats.get(name).and_then(serde_json::Value::as_u64))
            .sum()
    });
    Ok(Reading {
        backlog: ready + unacked,
        consumed,
        partitions: None,
    })
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for byte in s.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn classify_amqp(error: lapin::Error) -> Failure {
    match error.kind() {
        lapin::ErrorKind::ProtocolError(amqp) => classify_amqp_error(amqp),
        lapin::ErrorKind::IOError(io) => Failure::Unreachable(io.to_string()),
        lapin::ErrorKind::MissingHeartbeatError
        | lapin::ErrorKind::InvalidConnectionState(_)
        | lapin::ErrorKind::InvalidChannelState(..) => Failure::Unreachable(error.to_string()),
        lapin::ErrorKind::AuthProviderError(message) => Failure::Auth(message.clone()),
        _ => Failure::Protocol(error.to_string()),
    }
}

fn classify_amqp_error(error: &AMQPError) -> Failure {
    let message = error.get_message().to_string();
    match error.kind() {
        AMQPErrorKind::Soft(AMQPSoftError::NOTFOUND) => Failure::NotFound(message),
        AMQPErrorKind::Soft(AMQPSoftError::ACCESSREFUSED)
        | AMQPErrorKind::Hard(AMQPHardError::NOTALLOWED) => Failure::Auth(message),
        AMQPErrorKind::Hard(AMQPHardError::CONNECTIONFORCED) => Failure::Unreachable(message),
        _ => Failure::Protocol(message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn management_answers_count_ready_unacked_and_acked() {
        let body = br#"{"name":"q","messages_ready":7,"messages_unacknowledged":3,
            "message_stats":{"ack":40,"ack_details":{"rate":2.0},"deliver_get":43,"get_no_ack":2}}"#;
        assert_eq!(
            management_reading(body, false).unwrap(),
            Reading {
                backlog: 7,
                consumed: Some(42),
                partitions: None
            }
        );
        assert_eq!(management_reading(body, true).unwrap().backlog, 10);
        let fresh = br#"{"name":"q","messages_ready":0,"messages_unacknowledged":0}"#;
        assert_eq!(management_reading(fresh, true).unwrap().consumed, None);
        let no_stats_yet = br#"{"name":"q","arguments":{}}"#;
        assert!(matches!(
            management_reading(no_stats_yet, false),
            Err(Failure::Protocol(_))
        ));
    }

    #[test]
    fn queue_names_are_percent_encoded() {
        assert_eq!(percent_encode("orders.v1"), "orders.v1");
        assert_eq!(percent_encode("a b/c"), "a%20b%2Fc");
    }
}
