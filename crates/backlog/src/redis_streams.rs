//! Redis Streams: a consumer group's lag through `XINFO GROUPS`.
//!
//! Redis reports the lag as nil when it cannot tell it: after a restart that loaded the
//! stream from disk (the group's `entries-read` is lost) and after entries were deleted
//! past the group's position. Redis 6 has no lag at all. Then the reader counts the entries
//! after the group's `last-delivered-id` itself (`XRANGE`, [`PAGE`] at a time, up to
//! [`COUNT_UP_TO`]): the messages still waiting, which the pending count is not.

use redis::aio::MultiplexedConnection;
use redis::{IntoConnectionInfo, RedisError, Value};

use crate::error::Failure;
use crate::{Credentials, Reading, Source};

/// Entries asked for per `XRANGE` when counting what waits after the group's position.
const PAGE: usize = 1_000;

/// The most entries counted when Redis cannot tell the lag; a larger backlog reads as this.
const COUNT_UP_TO: u64 = 10_000;

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
        let backlog = match group.lag {
            Some(lag) => lag,
            None => count_after(connection, &self.stream, &group.last_delivered).await?,
        };
        Ok(Reading {
            backlog,
            consumed: group.entries_read,
            partitions: None,
        })
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

/// How many entries `stream` holds after `id` (at most [`COUNT_UP_TO`]): `XRANGE` from the
/// next possible ID, a page at a time. Works on every Redis with streams (the exclusive `(`
/// range needs 6.2).
async fn count_after(
    connection: &mut MultiplexedConnection,
    stream: &str,
    id: &StreamId,
) -> Result<u64, Failure> {
    let mut counted = 0;
    let mut from = id.next();
    while let Some(start) = from {
        let page: Value = redis::cmd("XRANGE")
            .arg(stream)
            .arg(start.to_string())
            .arg("+")
            .arg("COUNT")
            .arg(PAGE)
            .query_async(connection)
            .await
            .map_err(classify)?;
        let (len, last) = page_summary(&page).map_err(Failure::Protocol)?;
        counted += len;
        if counted >= COUNT_UP_TO {
            return Ok(COUNT_UP_TO);
        }
        from = match last {
            Some(last) if len == PAGE as u64 => last.next(),
            _ => None,
        };
    }
    Ok(counted)
}

/// An `XRANGE` reply (an array of `[id, fields]`): how many entries, and the last one's ID
/// (`None` when the page is empty).
fn page_summary(page: &Value) -> Result<(u64, Option<StreamId>), String> {
    let Value::Array(entries) = page else {
        return Err(format!("XRANGE: expected an array, got {page:?}"));
    };
    let len = entries.len() as u64;
    let Some(last) = entries.last() else {
        return Ok((len, None));
    };
    let id = match last {
        Value::Array(parts) => parts.first().and_then(text),
        _ => None,
    };
    let id = id.ok_or_else(|| format!("XRANGE: an entry without an ID: {last:?}"))?;
    let last = id
        .parse()
        .map_err(|e| format!("XRANGE: entry ID {id:?}: {e}"))?;
    Ok((len, Some(last)))
}

/// A stream entry ID, `<milliseconds>-<sequence>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct StreamId {
    ms: u64,
    seq: u64,
}

impl StreamId {
    /// The smallest ID after this one; `None` after the largest possible.
    fn next(self) -> Option<StreamId> {
        match self.seq.checked_add(1) {
            Some(seq) => Some(StreamId { ms: self.ms, seq }),
            None => self.ms.checked_add(1).map(|ms| StreamId { ms, seq: 0 }),
        }
    }
}

impl std::str::FromStr for StreamId {
    type Err = String;

    fn from_str(id: &str) -> Result<StreamId, String> {
        let (ms, seq) = id.split_once('-').ok_or("not <milliseconds>-<sequence>")?;
        let number = |part: &str| part.parse::<u64>().map_err(|e| e.to_string());
        Ok(StreamId {
            ms: number(ms)?,
            seq: number(seq)?,
        })
    }
}

impl std::fmt::Display for StreamId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
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
    /// `last-delivered-id`: the group's position in the stream.
    last_delivered: StreamId,
    /// `entries-read` (Redis ≥ 7); nil when Redis cannot tell.
    entries_read: Option<u64>,
    /// `lag` (Redis ≥ 7); nil when Redis cannot tell.
    lag: Option<u64>,
}

/// Parses an `XINFO GROUPS` reply: an array of groups, each a flat key/value array (RESP2)
/// or a map (RESP3). Unknown fields are ignored; `name` and `last-delivered-id` are required.
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
    let mut last_delivered = None;
    let mut entries_read = None;
    let mut lag = None;
    for (key, value) in pairs {
        match text(key).as_deref() {
            Some("name") => name = text(value),
            Some("last-delivered-id") => {
                let id = text(value).ok_or("XINFO GROUPS: last-delivered-id is not text")?;
                let parsed = id
                    .parse()
                    .map_err(|e| format!("XINFO GROUPS: last-delivered-id {id:?}: {e}"))?;
                last_delivered = Some(parsed);
            }
            Some("entries-read") => entries_read = optional_count(value, "entries-read")?,
            Some("lag") => lag = optional_count(value, "lag")?,
            _ => {}
        }
    }
    Ok(GroupInfo {
        name: name.ok_or("XINFO GROUPS: a group without a name")?,
        last_delivered: last_delivered
            .ok_or("XINFO GROUPS: a group without a last-delivered-id")?,
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

    fn id(ms: u64, seq: u64) -> StreamId {
        StreamId { ms, seq }
    }

    /// A Redis 7 reply (RESP2), as `redis-cli XINFO GROUPS sales` shows it.
    fn redis7_group(name: &str, entries_read: Value, lag: Value) -> Value {
        Value::Array(vec![
            bulk("name"),
            bulk(name),
            bulk("consumers"),
            Value::Int(2),
            bulk("pending"),
            Value::Int(3),
            bulk("last-delivered-id"),
            bulk("1700000000000-4"),
            bulk("entries-read"),
            entries_read,
            bulk("lag"),
            lag,
        ])
    }

    #[test]
    fn lag_entries_read_and_the_groups_position_are_read() {
        let reply = Value::Array(vec![
            redis7_group("other", Value::Int(1), Value::Int(0)),
            redis7_group("agg", Value::Int(5), Value::Int(7)),
        ]);
        let groups = parse_groups(&reply).unwrap();
        assert_eq!(groups.len(), 2);
        assert_eq!(
            groups[1],
            GroupInfo {
                name: "agg".into(),
                last_delivered: id(1_700_000_000_000, 4),
                entries_read: Some(5),
                lag: Some(7)
            }
        );
    }

    #[test]
    fn a_nil_lag_is_unknown_not_zero() {
        let reply = Value::Array(vec![redis7_group("agg", Value::Nil, Value::Nil)]);
        let group = &parse_groups(&reply).unwrap()[0];
        assert_eq!((group.lag, group.entries_read), (None, None));
    }

    #[test]
    fn redis6_has_no_lag_field() {
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
        let group = &parse_groups(&reply).unwrap()[0];
        assert_eq!(group.lag, None);
        assert_eq!(group.last_delivered, id(0, 0));
    }

    #[test]
    fn resp3_maps_parse_like_flat_arrays() {
        let reply = Value::Array(vec![Value::Map(vec![
            (bulk("name"), bulk("agg")),
            (bulk("pending"), Value::Int(1)),
            (bulk("last-delivered-id"), bulk("12-0")),
            (bulk("entries-read"), Value::Int(10)),
            (bulk("lag"), Value::Int(2)),
        ])]);
        let group = &parse_groups(&reply).unwrap()[0];
        assert_eq!((group.lag, group.entries_read), (Some(2), Some(10)));
        assert_eq!(group.last_delivered, id(12, 0));
    }

    #[test]
    fn no_groups_is_an_empty_list_and_garbage_is_an_error() {
        assert_eq!(parse_groups(&Value::Array(vec![])).unwrap(), vec![]);
        assert!(parse_groups(&Value::Int(3)).is_err());
        assert!(parse_groups(&Value::Array(vec![Value::Array(vec![bulk("name")])])).is_err());
        let negative = Value::Array(vec![redis7_group("g", Value::Int(-1), Value::Nil)]);
        assert!(
            parse_groups(&negative)
                .unwrap_err()
                .contains("entries-read")
        );
        let no_name = Value::Array(vec![Value::Array(vec![
            bulk("last-delivered-id"),
            bulk("0-0"),
        ])]);
        assert!(parse_groups(&no_name).unwrap_err().contains("name"));
        let no_position = Value::Array(vec![Value::Array(vec![bulk("name"), bulk("g")])]);
        assert!(
            parse_groups(&no_position)
                .unwrap_err()
                .contains("last-delivered-id")
        );
        let bad_position = Value::Array(vec![Value::Array(vec![
            bulk("name"),
            bulk("g"),
            bulk("last-delivered-id"),
            bulk("12"),
        ])]);
        assert!(parse_groups(&bad_position).unwrap_err().contains("\"12\""));
    }

    #[test]
    fn the_next_id_carries_the_sequence_into_the_milliseconds() {
        assert_eq!(id(5, 0).next(), Some(id(5, 1)));
        assert_eq!(id(5, u64::MAX).next(), Some(id(6, 0)));
        assert_eq!(id(u64::MAX, u64::MAX).next(), None);
        assert_eq!("1700000000000-4".parse(), Ok(id(1_700_000_000_000, 4)));
        assert_eq!(id(1_700_000_000_000, 4).to_string(), "1700000000000-4");
        for bad in [
            "",
            "12",
            "-1",
            "1-",
            "a-1",
            "1-2-3",
            "18446744073709551616-0",
        ] {
            assert!(bad.parse::<StreamId>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_last_entry_of_a_page_is_its_position() {
        let entry = |i: &str| Value::Array(vec![bulk(i), Value::Array(vec![bulk("k"), bulk("v")])]);
        let page = Value::Array(vec![entry("1-0"), entry("1-1"), entry("2-0")]);
        assert_eq!(page_summary(&page), Ok((3, Some(id(2, 0)))));
        assert_eq!(page_summary(&Value::Array(vec![])), Ok((0, None)));
        assert!(page_summary(&Value::Int(1)).is_err());
        assert!(page_summary(&Value::Array(vec![Value::Int(1)])).is_err());
    }
}
