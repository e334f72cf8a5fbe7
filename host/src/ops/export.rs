//! Engine storage export: the engine is stopped cleanly and its storage directory arrives as a tar.

use std::path::Path;

use vcontainer_protocol::Request;

use super::stream::{receive_to_file, StreamProgress};
use super::OpError;
use crate::session::AgentConn;
use crate::transport::Transport;

/// Writes the engine's storage tar to `dest` (atomically); returns its size.
pub async fn export_storage(
    transport: &dyn Transport,
    dest: &Path,
    progress: StreamProgress<'_>,
) -> Result<u64, OpError> {
    let conn = AgentConn::request(transport, Request::ExportStorage).await?;
    let (mut reader, _writer, _) = conn.into_split();
    Ok(receive_to_file(
        &mut reader,
        dest,
        super::stream::MAX_RECEIVE_BYTES,
        progress,
    )
    .await?)
}
