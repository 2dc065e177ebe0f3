//! Differential fuzzing of HTTP/1.1 framing: the same bytes through the relay's parsers and
//! through hyper's, failing when they disagree on accept/reject or on where a message ends
//! (see `shoal_proxy::fuzzing::framing_diff_request` and `framing_diff_chunked`).
//!
//! The first byte picks the check: even, the rest is a client's request stream (relay vs
//! hyper's server); odd, the rest is a replica's chunked body (`ChunkedEnd` vs hyper's
//! client). Seeds start with `R` (0x52) or `C` (0x43).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    if pick % 2 == 0 {
        shoal_proxy::fuzzing::framing_diff_request(rest);
    } else {
        shoal_proxy::fuzzing::framing_diff_chunked(rest);
    }
});
