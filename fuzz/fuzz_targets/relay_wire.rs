//! Feeds arbitrary bytes to the HTTP/1.1 relay's wire parsers: as a client's request stream,
//! as a replica's response head, and as a chunked body (whole and in pieces). Looks for
//! panics and for parsers that disagree with themselves (see
//! `shoal_proxy::fuzzing::relay_wire`).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    shoal_proxy::fuzzing::relay_wire(data);
});
