//! The Redis Streams reader against a real `redis-server` on loopback.

use std::time::Duration;

use redis::AsyncCommands as _;
use shoal_backlog::{BacklogError, Credentials, Reader, Reading, Secret, Source};
use shoal_test_support::brokers::{RedisServer, free_port, temp_dir};
use tokio::time::Instant;

fn redis_binary() -> Option<std::path::PathBuf> {
    RedisServer::binary()
}

fn source(server: &RedisServer, stream: &str, group: &str) -> Source {
    Source::Redis {
        url: server.url(),
        stream: stream.into(),
        group: group.into(),
    }
}

/// Group `agg` of stream `sales` (made if missing), reading from `start`: `0` for the
/// entries already there, `$` for those added next.
async fn create_group(conn: &mut redis::aio::MultiplexedConnection, start: &str) {
    let _: () = redis::cmd("XGROUP")
        .arg(&["CREATE", "sales", "agg", start, "MKSTREAM"])
        .query_async(conn)
        .await
        .unwrap();
}

async fn xadd(conn: &mut redis::aio::MultiplexedConnection, stream: &str, n: usize) {
    for i in 0..n {
        let _: String = conn.xadd(stream, "*", &[("sale", i)]).await.unwrap();
    }
}

/// Consumer `c1` of group `agg` reads up to `n` new entries of `sales`; their IDs.
async fn deliver(conn: &mut redis::aio::MultiplexedConnection, n: usize) -> Vec<String> {
    let read: redis::streams::StreamReadReply = conn
        .xread_options(
            &["sales"],
            &[">"],
            &redis::streams::StreamReadOptions::default()
                .group("agg", "c1")
                .count(n),
        )
        .await
        .unwrap();
    read.keys[0].ids.iter().map(|e| e.id.clone()).collect()
}

#[tokio::test]
async fn backlog_is_the_groups_lag_and_consumed_its_entries_read() {
    let Some(binary) = redis_binary() else { return };
    let dir = temp_dir("shoal-redis-");
    let server = RedisServer::start(&binary, free_port(), dir.path(), &[]).await;
    let mut conn = server.client().await;
    create_group(&mut conn, "$").await;
    let mut reader = Reader::new(source(&server, "sales", "agg"), Credentials::default());
    assert_eq!(
        reader.read().await.unwrap(),
        Reading {
            backlog: 0,
            consumed: None,
            partitions: None
        }
    );

    xadd(&mut conn, "sales", 10).await;
    let reading = reader.read().await.unwrap();
    assert_eq!(reading.backlog, 10);

    // A consumer reads 4 and acknowledges 3: 6 left undelivered, 4 read.
    let ids = deliver(&mut conn, 4).await;
    assert_eq!(ids.len(), 4);
    let acked: usize = conn.xack("sales", "agg", &ids[..3]).await.unwrap();
    assert_eq!(acked, 3);
    assert_eq!(
        reader.read().await.unwrap(),
        Reading {
            backlog: 6,
            consumed: Some(4),
            partitions: None
        }
    );

    // Deleting an entry past the group's position makes Redis's lag unknown (nil): the
    // reader counts what waits after the position itself, 5 (not the 1 pending).
    let last: redis::streams::StreamRangeReply =
        conn.xrevrange_count("sales", "+", "-", 1).await.unwrap();
    let _: usize = conn.xdel("sales", &[&last.ids[0].id]).await.unwrap();
    assert!(lag_is_nil(&mut conn).await);
    assert_eq!(
        reader.read().await.unwrap(),
        Reading {
            backlog: 5,
            consumed: Some(4),
            partitions: None
        }
    );
}

/// Whether Redis says it cannot tell group `agg`'s lag on `sales` (`lag` is nil).
async fn lag_is_nil(conn: &mut redis::aio::MultiplexedConnection) -> bool {
    let info: redis::Value = redis::cmd("XINFO")
        .arg(&["GROUPS", "sales"])
        .query_async(conn)
        .await
        .unwrap();
    let redis::Value::Array(groups) = &info else {
        panic!("XINFO GROUPS: {info:?}")
    };
    let redis::Value::Array(fields) = &groups[0] else {
        panic!("XINFO GROUPS: {info:?}")
    };
    let lag = fields
        .chunks_exact(2)
        .find(|kv| kv[0] == redis::Value::BulkString(b"lag".to_vec()))
        .map(|kv| &kv[1]);
    eprintln!("XINFO GROUPS sales: lag {lag:?}");
    lag == Some(&redis::Value::Nil)
}

/// Adds `n` entries to `stream` in one pipeline.
async fn xadd_many(conn: &mut redis::aio::MultiplexedConnection, stream: &str, n: usize) {
    let mut pipe = redis::pipe();
    for i in 0..n {
        pipe.xadd(stream, "*", &[("sale", i)]).ignore();
    }
    let () = pipe.query_async(conn).await.unwrap();
}

/// The outage story's trap: a Redis restarted from its append-only file forgets the group's
/// `entries-read`, so its lag stays nil while new messages arrive. The reader counts them
/// itself (a page of 1,000 at a time, up to 10,000) instead of reading 0.
#[tokio::test]
async fn after_a_restart_from_disk_the_waiting_messages_are_counted_not_lost() {
    let Some(binary) = redis_binary() else { return };
    let dir = temp_dir("shoal-redis-");
    let port = free_port();
    let durable = ["--appendonly", "yes", "--appendfsync", "always"];
    let server = RedisServer::start(&binary, port, dir.path(), &durable).await;
    let mut conn = server.client().await;
    create_group(&mut conn, "$").await;
    xadd(&mut conn, "sales", 20).await;
    // A consumer takes all 20 and acknowledges them: nothing waits.
    let ids = deliver(&mut conn, 20).await;
    let _: usize = conn.xack("sales", "agg", &ids).await.unwrap();
    let mut reader = Reader::new(source(&server, "sales", "agg"), Credentials::default());
    assert_eq!(reader.read().await.unwrap().backlog, 0);

    server.process.kill();
    let server = RedisServer::start(&binary, port, dir.path(), &durable).await;
    let mut conn = server.client().await;
    xadd_many(&mut conn, "sales", 2_500).await;
    assert!(
        lag_is_nil(&mut conn).await,
        "Redis knows its lag after all: this test no longer covers the count"
    );
    let until = Instant::now() + Duration::from_secs(5);
    let reading = loop {
        match reader.read().await {
            Ok(reading) => break reading,
            Err(e) if Instant::now() < until => {
                eprintln!("not yet: {e}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("no read after the restart: {e}"),
        }
    };
    assert_eq!(
        reading,
        Reading {
            backlog: 2_500,
            consumed: None,
            partitions: None
        }
    );

    // Past 10,000 the count stops: a larger backlog reads as 10,000.
    xadd_many(&mut conn, "sales", 7_600).await;
    assert_eq!(reader.read().await.unwrap().backlog, 10_000);
}

#[tokio::test]
async fn a_missing_group_or_stream_is_not_found_with_a_clear_message() {
    let Some(binary) = redis_binary() else { return };
    let dir = temp_dir("shoal-redis-");
    let server = RedisServer::start(&binary, free_port(), dir.path(), &[]).await;
    let mut conn = server.client().await;
    xadd(&mut conn, "sales", 1).await;

    let mut reader = Reader::new(source(&server, "sales", "agg"), Credentials::default());
    let error = reader.read().await.unwrap_err();
    assert!(matches!(error, BacklogError::NotFound { .. }), "{error:?}");
    let port = server.port;
    assert_eq!(
        error.to_string(),
        format!(
            "redis 127.0.0.1:{port} stream sales group agg: not found: \
             no consumer group 'agg' on stream 'sales' (XINFO GROUPS)"
        )
    );

    let mut reader = Reader::new(source(&server, "nope", "agg"), Credentials::default());
    let error = reader.read().await.unwrap_err();
    assert!(matches!(error, BacklogError::NotFound { .. }), "{error:?}");
    assert!(
        error.to_string().ends_with("not found: ERR no such key"),
        "{error}"
    );
}

#[tokio::test]
async fn a_killed_server_is_an_error_and_the_same_reader_reads_again_after_a_restart() {
    let Some(binary) = redis_binary() else { return };
    let dir = temp_dir("shoal-redis-");
    let port = free_port();
    let server = RedisServer::start(&binary, port, dir.path(), &[]).await;
    let setup = async |server: &RedisServer, n: usize| {
        let mut conn = server.client().await;
        create_group(&mut conn, "0").await;
        xadd(&mut conn, "sales", n).await;
    };
    setup(&server, 3).await;
    let mut reader = Reader::new(source(&server, "sales", "agg"), Credentials::default());
    assert_eq!(reader.read().await.unwrap().backlog, 3);

    server.process.kill();
    let error = reader.read().await.unwrap_err();
    assert!(
        matches!(error, BacklogError::Unreachable { .. }),
        "after a kill: {error:?}"
    );
    assert!(error.is_transient());
    // Still down: the reconnect fails too, quickly and as unreachable.
    let error = reader.read().await.unwrap_err();
    assert!(
        matches!(error, BacklogError::Unreachable { .. }),
        "{error:?}"
    );

    // The same port again (data is gone: it kept none on disk).
    let server = RedisServer::start(&binary, port, dir.path(), &[]).await;
    setup(&server, 5).await;
    assert_eq!(reader.read().await.unwrap().backlog, 5);
}

#[tokio::test]
async fn a_hung_server_is_a_timeout_not_a_hang() {
    let Some(binary) = redis_binary() else { return };
    let dir = temp_dir("shoal-redis-");
    let server = RedisServer::start(&binary, free_port(), dir.path(), &[]).await;
    let mut conn = server.client().await;
    create_group(&mut conn, "0").await;
    let mut reader = Reader::new(source(&server, "sales", "agg"), Credentials::default())
        .with_timeout(Duration::from_millis(300));
    assert_eq!(reader.read().await.unwrap().backlog, 0);

    // A frozen server keeps its socket open and answers nothing.
    server.process.freeze();
    let started = Instant::now();
    let deadline = started + Duration::from_secs(5);
    loop {
        match reader.read().await {
            Err(BacklogError::Timeout { .. }) => break,
            other => assert!(Instant::now() < deadline, "no timeout: {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The 300 ms timeout, not a hang (slack for a busy machine).
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    server.process.thaw();
    // Once the server answers again, so does the reader (on a new connection).
    let deadline = Instant::now() + Duration::from_secs(5);
    while let Err(error) = reader.read().await {
        assert!(Instant::now() < deadline, "does not read again: {error}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn credentials_authenticate_and_never_show_in_errors() {
    let Some(binary) = redis_binary() else { return };
    let dir = temp_dir("shoal-redis-");
    let password = "hunter2-very-secret";
    let server = RedisServer::start(
        &binary,
        free_port(),
        dir.path(),
        &["--requirepass", password],
    )
    .await;
    let mut conn = redis::Client::open(format!("redis://:{password}@127.0.0.1:{}", server.port))
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    create_group(&mut conn, "0").await;
    xadd(&mut conn, "sales", 2).await;

    let mut anonymous = Reader::new(source(&server, "sales", "agg"), Credentials::default());
    let error = anonymous.read().await.unwrap_err();
    assert!(matches!(error, BacklogError::Auth { .. }), "{error:?}");
    assert!(error.to_string().contains("NOAUTH"), "{error}");

    let wrong = Credentials {
        username: None,
        password: Some(Secret::new("not-the-password".into())),
    };
    let mut reader = Reader::new(source(&server, "sales", "agg"), wrong);
    let error = reader.read().await.unwrap_err();
    assert!(matches!(error, BacklogError::Auth { .. }), "{error:?}");
    assert!(error.to_string().contains("WRONGPASS"), "{error}");
    assert!(!error.to_string().contains("not-the-password"), "{error}");
    assert!(
        !format!("{error:?}").contains("not-the-password"),
        "{error:?}"
    );

    let right = Credentials {
        username: None,
        password: Some(Secret::new(password.into())),
    };
    let mut reader = Reader::new(source(&server, "sales", "agg"), right.clone());
    assert_eq!(reader.read().await.unwrap().backlog, 2);
    assert!(!format!("{reader:?}").contains(password));

    // An ACL user, named in the URL or in the credentials.
    let _: () = redis::cmd("ACL")
        .arg(&["SETUSER", "app", "on", ">app-password-42", "~*", "+@all"])
        .query_async(&mut conn)
        .await
        .unwrap();
    let app_password = Some(Secret::new("app-password-42".into()));
    let in_url = Source::Redis {
        url: format!("redis://app@127.0.0.1:{}", server.port),
        stream: "sales".into(),
        group: "agg".into(),
    };
    let credentials = Credentials {
        username: None,
        password: app_password.clone(),
    };
    assert_eq!(
        Reader::new(in_url, credentials)
            .read()
            .await
            .unwrap()
            .backlog,
        2
    );
    let credentials = Credentials {
        username: Some("app".into()),
        password: app_password,
    };
    let mut named = Reader::new(source(&server, "sales", "agg"), credentials);
    assert_eq!(named.read().await.unwrap().backlog, 2);

    // Another database: SELECT after AUTH. Database 3 has no such stream.
    let mut other_db = Reader::new(
        Source::Redis {
            url: format!("{}/3", server.url()),
            stream: "sales".into(),
            group: "agg".into(),
        },
        right,
    );
    let error = other_db.read().await.unwrap_err();
    assert!(
        error.to_string().ends_with("not found: ERR no such key"),
        "{error}"
    );
}
