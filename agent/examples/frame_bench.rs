//! How fast the protocol crate encodes and decodes 256 KiB data frames (native; a TCG guest is
//! roughly 10–20x slower).
use std::time::Instant;
use vcontainer_protocol::{decode_payload, encode_frame, AgentMsg, DATA_CHUNK_LEN};

fn main() {
    let n = 256;
    let chunk = vec![0u8; DATA_CHUNK_LEN];
    let t0 = Instant::now();
    let mut last = Vec::new();
    for _ in 0..n {
        last = encode_frame(&AgentMsg::Data(chunk.clone())).expect("encode");
    }
    let mb = (n * DATA_CHUNK_LEN) as f64 / 1e6;
    println!("encode: {:.0} MB/s", mb / t0.elapsed().as_secs_f64());
    let t0 = Instant::now();
    for _ in 0..n {
        let _m: AgentMsg = decode_payload(&last[4..]).expect("decode");
    }
    println!("decode: {:.0} MB/s", mb / t0.elapsed().as_secs_f64());
}
