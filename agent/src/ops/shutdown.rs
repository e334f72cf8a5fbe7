//! Shutdown: stop the engine, sync, unmount, answer `Done`, and power off only after the host
//! acknowledged it (bytes written just before power-off can be lost on the way out).

use std::time::Duration;

use vcontainer_protocol::{AgentMsg, ErrorKind, HostMsg};

use super::OpError;
use crate::agent::Agent;
use crate::conn::{FrameReader, FrameWriter};
use crate::log;

const ACK_WAIT: Duration = Duration::from_secs(5);

pub async fn shutdown(
    agent: &Agent,
    rd: &mut FrameReader,
    wr: &mut FrameWriter,
) -> Result<(), OpError> {
    if let Err(e) = agent.prepare_shutdown().await {
        // Still power off: the host asked for it, and the sync has happened.
        log!("shutdown: {e}");
        wr.send_error(ErrorKind::Engine, format!("stopping the engine: {e}"))
            .await;
    } else {
        wr.send(&AgentMsg::Done).await?;
    }
    match tokio::time::timeout(ACK_WAIT, rd.recv()).await {
        Ok(Ok(HostMsg::Ack)) | Ok(Err(_)) => {}
        Ok(Ok(_)) => log!("shutdown: expected Ack"),
        Err(_) => log!("shutdown: no Ack within {} s", ACK_WAIT.as_secs()),
    }
    log!("powering off");
    agent.finish_shutdown();
    Ok(())
}
