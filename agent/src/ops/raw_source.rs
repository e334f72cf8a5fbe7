//! RawSource: zero bytes as data frames, hashed like a real stream, to measure the transport.

use vcontainer_protocol::{AgentMsg, DATA_CHUNK_LEN};

use super::OpError;
use crate::conn::FrameWriter;
use crate::stream::{send_chunks, CHANNEL_DEPTH};

pub async fn raw_source(bytes: u64, wr: &mut FrameWriter) -> Result<(), OpError> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Vec<u8>>(CHANNEL_DEPTH);
    tokio::spawn(async move {
        let mut left = bytes;
        while left > 0 {
            let n = left.min(DATA_CHUNK_LEN as u64) as usize;
            if tx.send(vec![0u8; n]).await.is_err() {
                return;
            }
            left -= n as u64;
        }
    });
    let end = send_chunks(wr, rx).await?;
    wr.send(&AgentMsg::End(end)).await?;
    Ok(())
}
