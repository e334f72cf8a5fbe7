//! Fuzzes every protocol message type as one frame payload (the first byte picks the type, see
//! `vcontainer_protocol::fuzzing::MESSAGE_TYPES`): decode, re-encode, decode again, compare.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    vcontainer_protocol::fuzzing::decode_message(data);
});
