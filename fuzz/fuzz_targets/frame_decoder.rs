//! Fuzzes the frame decoder with bytes as a hostile guest (or host) could send them.
//! Run: `cargo +nightly fuzz run frame_decoder fuzz/seeds/frame_decoder`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    vcontainer_protocol::fuzzing::decode_stream(data);
});
