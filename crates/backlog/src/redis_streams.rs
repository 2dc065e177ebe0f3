//! Redis Streams: a consumer group's lag through `XINFO GROUPS`.

use redis::aio::MultiplexedConnection;
use redis::{IntoConnectionInfo, RedisError, Value};

use crate::error::Failure;
use crate::{Credentials, Reading, Source};

pub(crate) struct Reader {
    source: Source,
    stream: String,
    group: String,
    url: String,
    credentials: Credentials,
    connection: Option<MultiplexedConnection>,
}

impl Reader {
    pub(crate) fn new(
        url: String,
        stream: String,
        group: String,
        credentials: Credentials,
    ) -> Reader {
        Reader {
            source: Source::Redis {
                url: url.clone(),
                stream: stream.clone(),
                group: group.clone(),
            },
            stream,
            group,
            url,
            credentials,
            connection: None,
        }
    }

    pub(crate) fn credentials(&self) -> &Credentials {
        &self.credentials
    }

    pub(crate) fn disconnect(&mut self) {
        self.connection = None;
    }

    pub(crate) async fn read(&mut self) -> Result<Reading, Failure> {
        let connection = match &mut self.connection {
            Some(connection) => connection,
            None => {
                let connection = self.connect().await?;
                self.connection.insert(connection)
            }
        };
        let reply: Value = redis::cmd("XINFO")
            .arg("GROUPS")
            .arg(&self.stream)
            .query_async(connection)
            .await
            .map_err(classify)?;
        let groups = parse_groups(&reply).map_err(Failure::Protocol)?;
        let Some(group) = groups.into_iter().find(|g| g.name == self.group) else {
            return Err(Failure::NotFound(format!(
                "no consumer group '{}' on stream '{}' (XINFO GROUPS)",
                self.group, self.stream
            )));
        };
        Ok(group.reading())
    }

    async fn connect(&self) -> Result<MultiplexedConnection, Failure> {
        self.source.check()?;
        let info = self
            .url
            .as_str()
            .into_connection_info()
            .map_err(|e| Failure::Invalid(e.to_string()))?;
        // We send AUTH ourselves rather than through the client's handshake, whose error
        // replaces Redis's own words ("WRONGPASS invalid username-password pair …").
        let username = self
            .credentials
            .username
            .clone()
            .or_else(|| info.redis_settings().username().map(str::to_owned));
        // SELECT comes after AUTH, so it is ours too.
        let db = info.redis_settings().db();
        let settings = info
            .redis_settings()
            .clone()
            .set_skip_set_lib_name()
            .set_db(0);
        let client = redis::Client::open(info.set_redis_settings(settings))
            .map_err(|e| Failure::Invalid(e.to_string()))?;
        let mut connection = client
            .get_multiplexed_async_connection()
            .await
            .map_err(classify)?;
        if let Some(password) = &self.credentials.password {
            let mut auth = redis::cmd("AUTH");
            if let Some(username) = &username {
                auth.arg(username);
            }
            auth.arg(password.expose())
                .query_async::<()>(&mut connection)
                .await
                .map_err(classify)?;
        }
        if db != 0 {
            redis::cmd("SELECT")
                .arg(db)
                .query_async::<()>(&mut connection)
                .await
                .map_err(classify)?;
        }
        Ok(connection)
    }
}

/// Sorts a Redis error by origin, keeping Redis's own words (`NOGROUP No such key …`).
fn classify(error: RedisError) -> Failure {
    let message = match (error.code(), error.detail()) {
        (Some(code), Some(detail)) => format!("{code} {detail}"),
        _ => error.to_string(),
    };
    let code = error.code().unwrap_or("");
    if error.kind() == redis::ErrorKind::AuthenticationFailed
        || matches!(code, "WRONGPASS" | "NOAUTH" | "NOPERM")
    {
        Failure::Auth(message)
    } else if error.is_io_error() || error.is_connection_refusal() || error.is_connection_dropped()
    {
        Failure::Unreachable(message)
    } else if code == "NOGROUP" || error.detail().is_some_and(|d| d.contains("no such key")) {
        Failure::NotFound(message)
    } else {
        Failure::Protocol(message)
    }
}

/// One entry of `XINFO GROUPS`.
#[derive(Debug, PartialEq)]
struct GroupInfo {
    name: String,
    pending: u64,
    /// `entries-read` (Redis ≥ 7); nil when Redis cannot tell.
    entries_read: Option<u64>,
    /// `lag` (Redis ≥ 7); nil when Redis cannot tell.
    lag: Option<u64>,
}

impl GroupInfo {
    fn reading(&self) -> Reading {
        Reading {
            backlog: self.lag.unwrap_or(self.pending),
            consumed: self.entries_read,
            partitions: None,
        }
    }
}

/// Parses an `XINFO GROUPS` reply: an array of groups, each a flat key/value array (RESP2)
/// or a map (RESP3). Unknown fields are ignored; `name` and `pending` are required.
fn parse_groups(reply: &Value) -> Result<Vec<GroupInfo>, String> {
    let Value::Array(groups) = reply else {
        return Err(format!("XINFO GROUPS: expected an array, got {reply:?}"));
    };
    groups.iter().map(parse_group).collect()
}

fn parse_group(group: &Value) -> Result<GroupInfo, String> {
    let pairs: Vec<(&Value, &Value)> = match group {
        Value::Array(items) if items.len() % 2 == 0 => {
            items.chunks_exact(2).map(|kv| (&kv[0], &kv[1])).collect()
        }
        Value::Map(pairs) => pairs.iter().map(|(k, v)| (k, v)).collect(),
        other => return Err(format!("XINFO GROUPS: unexpected group entry {other:?}")),
    };
    let mut name = None;
    let mut pending = None;
    let mut entries_read = None;
    let mut lag = None;
    for (key, value) in pairs {
        match text(key).as_deref() {
            Some("name") => name = text(value),
            Some("pending") => pending = Some(count(value, "pending")?),
            Some("entries-read") => entries_read = optional_count(value, "entries-read")?,
            Some("lag") => lag = optional_count(value, "lag")?,
            _ => {}
        }
    }
    Ok(GroupInfo {
        name: name.ok_or("XINFO GROUPS: a group without a name")?,
        pending: pending.ok_or("XINFO GROUPS: a group without a pending count")?,
        entries_read,
        lag,
    })
}

fn text(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => Some(String::from_utf8_lossy(bytes).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

fn optional_count(value: &Value, field: &str) -> Result<Option<u64>, String> {
    match value {
        Value::Nil => Ok(None),
        other => count(other, field).map(Some),
    }
}

fn count(value: &Value, field: &str) -> Result<u64, String> {
    let parsed = match value {
        Value::Int(n) => u64::try_from(*n).ok(),
        other => text(other).and_then(|s| s.parse().ok()),
    };
    parsed.ok_or_else(|| format!("XINFO GROUPS: {field} is not a count: {value:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    /// A Redis 7 reply (RESP2), as `redis-cli XINFO GROUPS sales` shows it.
    fn redis7_group(name: &str, pending: i64, entries_read: Value, lag: Value) -> Value {
        Value::Array(vec![
            bulk("name"),
            bulk(name),
            bulk("consumers"),
            Value::Int(2),
            bulk("pending"),
            Value::Int(pending),
            bulk("last-delivered-id"),
            bulk("1700000000000-4"),
            bulk("entries-read"),
            entries_read,
            bulk("lag"),
            lag,
        ])
    }

    #[test]
    fn lag_is_the_backlog_and_entries_read_the_consumed_counter() {
        let reply = Value::Array(vec![
            redis7_group("other", 0, Value::Int(1), Value::Int(0)),
            redis7_group("agg", 3, Value::Int(5), Value::Int(7)),
        ]);
        let groups = parse_groups(&reply).unwrap();
        assert_eq!(groups.len(), 2);
        assert_eq!(
            groups[1],
            GroupInfo {
                name: "agg".into(),
                pending: 3,
                entries_read: Some(5),
                lag: Some(7)
            }
        );
        assert_eq!(
            groups[1].reading(),
            Reading {
                backlog: 7,
                consumed: Some(5),
                partitions: None
            }
        );
    }

    #[test]
    fn a_nil_lag_falls_back_to_pending() {
        let reply = Value::Array(vec![redis7_group("agg", 4, Value::Nil, Value::Nil)]);
        let reading = parse_groups(&reply).unwrap()[0].reading();
        assert_eq!(
            reading,
            Reading {
                backlog: 4,
                consumed: None,
                partitions: None
            }
        );
    }

    #[test]
    fn redis6_has_no_lag_field_and_falls_back_to_pending() {
        let reply = Value::Array(vec![Value::Array(vec![
            bulk("name"),
            bulk("agg"),
            bulk("consumers"),
            Value::Int(1),
            bulk("pending"),
            Value::Int(9),
            bulk("last-delivered-id"),
            bulk("0-0"),
        ])]);
        let reading = parse_groups(&reply).unwrap()[0].reading();
        assert_eq!(reading.backlog, 9);
        assert_eq!(reading.consumed, None);
    }

    #[test]
    fn resp3_maps_parse_like_flat_arrays() {
        let reply = Value::Array(vec![Value::Map(vec![
            (bulk("name"), bulk("agg")),
            (bulk("pending"), Value::Int(1)),
            (bulk("entries-read"), Value::Int(10)),
            (bulk("lag"), Value::Int(2)),
        ])]);
        let reading = parse_groups(&reply).unwrap()[0].reading();
        assert_eq!(
            reading,
            Reading {
                backlog: 2,
                consumed: Some(10),
                partitions: None
            }
        );
    }

    #[test]
    fn no_groups_is_an_empty_list_and_garbage_is_an_error() {
        assert_eq!(parse_groups(&Value::Array(vec![])).unwrap(), vec![]);
        assert!(parse_groups(&Value::Int(3)).is_err());
        assert!(parse_groups(&Value::Array(vec![Value::Array(vec![bulk("name")])])).is_err());
        let negative = Value::Array(vec![redis7_group("g", -1, Value::Nil, Value::Nil)]);
        assert!(parse_groups(&negative).unwrap_err().contains("pending"));
        let no_name = Value::Array(vec![Value::Array(vec![bulk("pending"), Value::Int(1)])]);
        assert!(parse_groups(&no_name).unwrap_err().contains("name"));
    }
}
