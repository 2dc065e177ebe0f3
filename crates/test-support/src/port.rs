//! Ports for a process a test starts and must tell where to listen (a `shoal up`, a
//! broker): everything in-process binds `127.0.0.1:0` instead and reads its address.
use std::net::TcpListener;

/// A loopback port that was free a moment ago, for another process to bind.
///
/// Drawn at random from 10000–19999 and checked free, not from `bind(:0)`: a port from the
/// kernel's ephemeral range, once released, is soon reused for some outgoing connection (the
/// gateway's, a health probe's), and the process would then fail with "address in use".
/// Replicas draw from 20000–32767, so neither collides with the other.
pub fn free_port() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    for _ in 0..256 {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(std::process::id().into());
        let port = 10_000 + (h.finish() % 10_000) as u16;
        if let Ok(l) = TcpListener::bind(("127.0.0.1", port)) {
            return l.local_addr().unwrap().port();
        }
    }
    panic!("no free port in 10000-19999");
}
