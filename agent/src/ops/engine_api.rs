//! EngineApi: this connection becomes a byte pipe to the engine's API socket, so a host-side
//! engine CLI (native, fast to start) can talk to the guest's daemon.
//!
//! Each direction ends on its own: the host's `StdinEnd` half-closes the socket (the daemon sees
//! EOF on its read side and can still answer: hijacked `attach`/`exec` streams rely on that), and
//! the socket's EOF ends our direction with `Done`. The op is over once both have ended.

use std::path::Path;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;
use vcontainer_protocol::{
    AgentMsg, ErrorKind, HostMsg, MessageName, ProtocolError, DATA_CHUNK_LEN,
};

use super::OpError;
use crate::agent::Agent;
use crate::conn::{FrameReader, FrameWriter};
use crate::debug;

pub async fn engine_api(
    agent: &Agent,
    rd: &mut FrameReader,
    wr: &mut FrameWriter,
) -> Result<(), OpError> {
    let engine = &agent.engine;
    let Some(path) = engine.api_socket() else {
        return Err(OpError::new(
            ErrorKind::BadRequest,
            format!("the {} engine has no API socket", engine.name()),
        ));
    };
    engine.start().await?;
    let socket = connect(&path).await?;
    wr.send(&AgentMsg::Done).await?;
    let (socket_rd, socket_wr) = socket.into_split();
    tokio::try_join!(host_to_engine(rd, socket_wr), engine_to_host(socket_rd, wr))?;
    Ok(())
}

async fn connect(path: &Path) -> Result<UnixStream, OpError> {
    UnixStream::connect(path)
        .await
        .map_err(|e| OpError::io(format!("connecting to {}", path.display()), e))
}

/// Host `Data` → socket until `StdinEnd`, then half-close. Once the socket refuses writes (the
/// engine closed it) further data is dropped: the other direction may still carry its answer.
async fn host_to_engine(rd: &mut FrameReader, mut socket: OwnedWriteHalf) -> Result<(), OpError> {
    let mut open = true;
    loop {
        match rd.recv().await? {
            HostMsg::Data(bytes) => {
                if open {
                    if let Err(e) = socket.write_all(&bytes).await {
                        debug!("engine api: writing to the engine: {e}; dropping further input");
                        open = false;
                    }
                }
            }
            HostMsg::StdinEnd => {
                if open {
                    // Only shutdown(Write): the read half stays open for the engine's answer.
                    if let Err(e) = socket.shutdown().await {
                        debug!("engine api: half-closing the engine socket: {e}");
                    }
                }
                return Ok(());
            }
            other => {
                return Err(OpError::Protocol(ProtocolError::Unexpected {
                    expected: "Data or StdinEnd",
                    got: other.name(),
                }))
            }
        }
    }
}

/// Socket → host `Data` in bounded chunks; EOF (or a read error, e.g. a reset) ends with `Done`.
async fn engine_to_host(mut socket: OwnedReadHalf, wr: &mut FrameWriter) -> Result<(), OpError> {
    let mut buf = vec![0u8; DATA_CHUNK_LEN];
    loop {
        let n = match socket.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => {
                debug!("engine api: reading from the engine: {e}");
                break;
            }
        };
        wr.send(&AgentMsg::Data(buf[..n].to_vec())).await?;
    }
    wr.send(&AgentMsg::Done).await?;
    Ok(())
}
