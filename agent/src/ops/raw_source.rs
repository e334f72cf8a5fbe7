//! RawSource: zero bytes as data frames, hashed like a real stream, to measure the transport.

use vcontainer_protocol::{AgentMsg, StreamDigest, DATA_CHUNK_LEN};

use super::OpError;
use crate::conn::FrameWriter;

pub async fn raw_source(bytes: u64, wr: &mut FrameWriter) -> Result<(), OpError> {
    let mut digest = StreamDigest::new();
    let mut left = bytes;
    let mut buf = vec![0u8; DATA_CHUNK_LEN];
    while left > 0 {
        let n = left.min(DATA_CHUNK_LEN as u64) as usize;
        buf.truncate(n);
        digest.update(&buf);
        let msg = AgentMsg::Data(buf);
        wr.send(&msg).await?;
        // Take the buffer back: one allocation for the whole stream.
        buf = match msg {
            AgentMsg::Data(b) => b,
            _ => Vec::new(),
        };
        left -= n as u64;
    }
    wr.send(&AgentMsg::End(digest.finish())).await?;
    Ok(())
}
