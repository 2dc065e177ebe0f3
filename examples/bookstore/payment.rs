//! The bookstore's payment service in Rust, the standard library only: the same API as
//! payment.py, so that the gateway can send it a share of the charges.
//!
//!   GET  /health           200 while the process runs (even while charges fail: the
//!                          card network is down, not this process)
//!   POST /charge           {"paid": true, "by": "payment-rs", "charge": "rs-7"}; with an
//!                          Idempotency-Key, the same key gets the same charge
//!   POST /admin/fail?on=1  from now on, charges wait 100 ms and fail with 503 (on=0 heals)
//!
//! Built by the stack itself at start (`rustc -O payment.rs`, a few seconds); listens on
//! 127.0.0.1:$PAYMENT_PORT, one thread per connection, HTTP/1.1 keep-alive.
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Default)]
struct State {
    failing: AtomicBool,
    charges: AtomicU64,
    by_key: Mutex<HashMap<String, u64>>,
}

fn main() {
    let port = std::env::var("PAYMENT_PORT").unwrap_or_else(|_| "9102".into());
    let listener = TcpListener::bind(("127.0.0.1", port.parse::<u16>().expect("PAYMENT_PORT")))
        .expect("bind 127.0.0.1:$PAYMENT_PORT");
    println!("payment-rs listening on 127.0.0.1:{port}");
    let state = Arc::new(State::default());
    for stream in listener.incoming().flatten() {
        let state = Arc::clone(&state);
        std::thread::spawn(move || {
            let _ = serve(stream, &state);
        });
    }
}

/// Answers the requests of one connection until the client closes it.
fn serve(stream: TcpStream, state: &State) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut out = stream;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let mut parts = line.split_whitespace();
        let (method, target) = (
            parts.next().unwrap_or("").to_owned(),
            parts.next().unwrap_or("").to_owned(),
        );
        let (mut length, mut key, mut close) = (0usize, None, false);
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header)? == 0 {
                return Ok(());
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            let (name, value) = header.split_once(':').unwrap_or((header, ""));
            let value = value.trim();
            match name.to_ascii_lowercase().as_str() {
                "content-length" => length = value.parse().unwrap_or(0),
                "idempotency-key" => key = Some(value.to_owned()),
                "connection" => close = value.eq_ignore_ascii_case("close"),
                _ => {}
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body)?;
        let (status, json) = handle(state, &method, &target, key);
        let reason = match status {
            200 => "OK",
            404 => "Not Found",
            _ => "Service Unavailable",
        };
        write!(
            out,
            "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{json}",
            json.len()
        )?;
        out.flush()?;
        if close {
            return Ok(());
        }
    }
}

fn handle(state: &State, method: &str, target: &str, key: Option<String>) -> (u16, String) {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    match (method, path) {
        ("GET", "/health") => (200, r#"{"ok": true}"#.into()),
        ("POST", "/admin/fail") => {
            let on = query.split('&').any(|p| p == "on=1");
            state.failing.store(on, Ordering::SeqCst);
            println!("payment-rs: failing = {on}");
            (200, format!(r#"{{"by": "payment-rs", "failing": {on}}}"#))
        }
        ("POST", "/charge") => {
            if state.failing.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(100)); // the card network times out
                return (
                    503,
                    r#"{"error": "card network unavailable", "by": "payment-rs"}"#.into(),
                );
            }
            let new = || state.charges.fetch_add(1, Ordering::SeqCst) + 1;
            let charge = match key {
                Some(key) => *state.by_key.lock().unwrap().entry(key).or_insert_with(new),
                None => new(),
            };
            (
                200,
                format!(r#"{{"paid": true, "by": "payment-rs", "charge": "rs-{charge}"}}"#),
            )
        }
        _ => (404, format!(r#"{{"error": "no such path: {path}"}}"#)),
    }
}
