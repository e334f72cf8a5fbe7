//! The body of the frame-decoder fuzz target (`fuzz/fuzz_targets/frame_decoder.rs`), kept here so
//! that a stable test runs the same code over the seed corpus and generated inputs in CI.

use std::io::Cursor;

use crate::{encode_frame, read_frame, AgentMsg, HostMsg, ProtocolError, StreamDigest};

/// Decodes `data` as a stream of frames, first as the host reads it (agent messages), then as the
/// agent reads it (host messages). Every decoded message must re-encode to a frame that decodes to
/// the same message, and no input may panic or allocate beyond the frame limit.
pub fn decode_stream(data: &[u8]) {
    decode_all::<AgentMsg>(data);
    decode_all::<HostMsg>(data);
    // Stream digests over arbitrary chunks must never panic.
    let mut d = StreamDigest::new();
    for chunk in data.chunks(7) {
        let _ = d.update_capped(chunk, 1 << 20);
    }
    let _ = d.finish();
}

fn decode_all<T>(data: &[u8])
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let mut cursor = Cursor::new(data);
    // A frame consumes at least its 4-byte header, so this ends.
    loop {
        match read_frame::<_, T>(&mut cursor) {
            Ok(msg) => {
                let again = encode_frame(&msg).expect("a decoded message re-encodes");
                let back: T = read_frame(&mut &again[..]).expect("a re-encoded frame decodes");
                assert_eq!(back, msg, "decode/encode round trip changed the message");
            }
            Err(ProtocolError::Malformed(_)) => {
                // The frame was consumed; the next one may still be valid.
            }
            Err(_) => return,
        }
    }
}
