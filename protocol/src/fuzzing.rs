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

/// The message types [`decode_message`] selects by its first byte, in that order.
pub const MESSAGE_TYPES: &[&str] = &[
    "HostMsg",
    "AgentMsg",
    "BootConfig",
    "RegistryConfig",
    "Request",
    "ExecRequest",
    "Hello",
    "ReadyInfo",
    "StatusInfo",
    "AgentError",
    "ExitStatus",
    "WindowSize",
    "StreamEnd",
];

/// The body of the `messages` fuzz target: `data[0]` picks a message type (modulo
/// [`MESSAGE_TYPES`]), the rest is decoded as one frame payload of that type. A payload that
/// decodes must re-encode to bytes that decode to the same value, and re-encoding that must give
/// the same bytes again (the encoding of a value is canonical). Returns whether it decoded.
pub fn decode_message(data: &[u8]) -> bool {
    use crate::{
        AgentError, BootConfig, ExecRequest, ExitStatus, Hello, ReadyInfo, RegistryConfig, Request,
        StatusInfo, StreamEnd, WindowSize,
    };
    let Some((&selector, payload)) = data.split_first() else {
        return false;
    };
    match usize::from(selector) % MESSAGE_TYPES.len() {
        0 => round_trip::<HostMsg>(payload),
        1 => round_trip::<AgentMsg>(payload),
        2 => round_trip::<BootConfig>(payload),
        3 => round_trip::<RegistryConfig>(payload),
        4 => round_trip::<Request>(payload),
        5 => round_trip::<ExecRequest>(payload),
        6 => round_trip::<Hello>(payload),
        7 => round_trip::<ReadyInfo>(payload),
        8 => round_trip::<StatusInfo>(payload),
        9 => round_trip::<AgentError>(payload),
        10 => round_trip::<ExitStatus>(payload),
        11 => round_trip::<WindowSize>(payload),
        _ => round_trip::<StreamEnd>(payload),
    }
}

fn round_trip<T>(payload: &[u8]) -> bool
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let Ok(msg) = crate::decode_payload::<T>(payload) else {
        return false;
    };
    let again = postcard::to_allocvec(&msg).expect("a decoded message re-encodes");
    let back: T = crate::decode_payload(&again).expect("a re-encoded message decodes");
    assert_eq!(back, msg, "decode/encode round trip changed the message");
    let third = postcard::to_allocvec(&back).expect("re-encodes");
    assert_eq!(third, again, "the encoding of a value is not canonical");
    // The whole frame path agrees with the payload path.
    let frame = crate::encode_frame(&msg).expect("a decoded message fits a frame");
    assert_eq!(&frame[4..], &again[..]);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_seeds_round_trip_and_truncations_do_not_panic() {
        for seed in crate::seeds::seed_payloads() {
            decode_message(&seed);
            for cut in 0..seed.len() {
                decode_message(&seed[..cut]);
            }
        }
    }

    #[test]
    fn every_message_seed_decodes() {
        for seed in crate::seeds::seed_payloads() {
            let name = MESSAGE_TYPES[usize::from(seed[0])];
            assert!(decode_message(&seed), "{name} seed does not decode");
        }
    }
}
