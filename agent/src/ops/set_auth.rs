//! SetAuth: the registry auth file arrives as a data stream (never on a command line, never in a
//! log) and is written atomically, mode 0600 in a 0700 directory, where the engine's tools read
//! it: docker `/root/.docker/config.json`, podman `/run/containers/0/auth.json`.

use tokio::sync::mpsc;
use vcontainer_protocol::{AgentMsg, ErrorKind, MAX_AUTH_FILE_LEN};

use super::OpError;
use crate::agent::Agent;
use crate::conn::{FrameReader, FrameWriter};
use crate::engine::registry::write_private_file;
use crate::log;
use crate::stream::{receive_stream, Chunk, CHANNEL_DEPTH};

pub async fn set_auth(
    agent: &Agent,
    rd: &mut FrameReader,
    wr: &mut FrameWriter,
) -> Result<(), OpError> {
    let path = agent.engine.auth_file();
    let (tx, rx) = mpsc::channel(CHANNEL_DEPTH);
    // The stream is read to its end whatever happens, so the host gets an answer, not a broken
    // pipe; the collector stops keeping bytes past the limit.
    let (received, collected) = tokio::join!(receive_stream(rd, Some(tx)), collect(rx));
    received?;
    let Some(path) = path else {
        return Err(OpError::new(
            ErrorKind::BadRequest,
            format!(
                "the {} engine reads no registry auth file",
                agent.engine.name()
            ),
        ));
    };
    let bytes = collected?;
    let target = path.clone();
    tokio::task::spawn_blocking(move || write_private_file(&target, &bytes))
        .await
        .map_err(|e| OpError::new(ErrorKind::Io, e.to_string()))?
        .map_err(|e| OpError::io(path.display(), e))?;
    log!("registry auth file installed at {}", path.display());
    wr.send(&AgentMsg::Done).await?;
    Ok(())
}

/// The stream's bytes, at most [`MAX_AUTH_FILE_LEN`]; an aborted stream is an error.
async fn collect(mut rx: mpsc::Receiver<Chunk>) -> Result<Vec<u8>, OpError> {
    let mut bytes = Vec::new();
    while let Some(chunk) = rx.recv().await {
        match chunk {
            Chunk::Data(d) => {
                if (bytes.len() + d.len()) as u64 > MAX_AUTH_FILE_LEN {
                    return Err(OpError::new(
                        ErrorKind::BadRequest,
                        format!("registry auth file exceeds {MAX_AUTH_FILE_LEN} bytes"),
                    ));
                }
                bytes.extend_from_slice(&d);
            }
            Chunk::End => return Ok(bytes),
        }
    }
    Err(OpError::new(
        ErrorKind::Protocol,
        "registry auth stream aborted before its end frame",
    ))
}
