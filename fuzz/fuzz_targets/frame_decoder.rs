//! Fuzzes the frame decoder with bytes as a hostile guest (or host) could send them.
//! Run from `fuzz/`: `cargo +nightly fuzz run frame_decoder corpus/frame_decoder seeds/frame_decoder`
//! (new inputs go to the first, git-ignored directory; `seeds/` stays as committed).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    vcontainer_protocol::fuzzing::decode_stream(data);
});
