//! Small request/response operations.

use std::time::Duration;

use vcontainer_protocol::{AgentMsg, HostMsg, Request, StatusInfo};

use super::stream::request_to_file;
use super::OpError;
use crate::session::{AgentConn, SessionError};
use crate::transport::Transport;

pub async fn status(transport: &dyn Transport) -> Result<StatusInfo, OpError> {
    let mut conn = AgentConn::request(transport, Request::Status).await?;
    match conn.recv().await? {
        AgentMsg::Status(s) => Ok(s),
        other => Err(SessionError::unexpected("Status", &other).into()),
    }
}

/// Asks the agent to stop the engine, sync and unmount; acknowledges its `Done` so it may
/// power off (bytes written right before power-off can otherwise be lost).
pub async fn shutdown(transport: &dyn Transport) -> Result<(), OpError> {
    let mut conn = AgentConn::request(transport, Request::Shutdown).await?;
    let done = tokio::time::timeout(Duration::from_secs(120), conn.expect_done())
        .await
        .map_err(|_| OpError::Io {
            context: "guest shutdown".into(),
            source: std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the agent did not finish stopping the engine within 120 s",
            ),
        })?;
    done?;
    // The agent may already be powering off; a failed ack is not an error.
    let _ = conn.send(&HostMsg::Ack).await;
    Ok(())
}

/// Receives `bytes` bytes of plain data frames into `sink_path` (benchmark of the raw transport,
/// through the same receive path as a storage export).
pub async fn raw_source(
    transport: &dyn Transport,
    bytes: u64,
    sink_path: &std::path::Path,
) -> Result<u64, OpError> {
    raw_source_with_progress(transport, bytes, sink_path, &mut |_| {}).await
}

pub async fn raw_source_with_progress(
    transport: &dyn Transport,
    bytes: u64,
    sink_path: &std::path::Path,
    progress: super::StreamProgress<'_>,
) -> Result<u64, OpError> {
    request_to_file(
        transport,
        Request::RawSource { bytes },
        sink_path,
        bytes,
        progress,
    )
    .await
}
