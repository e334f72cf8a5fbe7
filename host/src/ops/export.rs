//! Engine storage export: the engine is stopped cleanly and its storage directory arrives as a tar.

use std::path::Path;

use vcontainer_protocol::Request;

use super::stream::{request_to_file, StreamProgress, MAX_RECEIVE_BYTES};
use super::OpError;
use crate::transport::Transport;

/// Writes the engine's storage tar to `dest` (atomically); returns its size.
pub async fn export_storage(
    transport: &dyn Transport,
    dest: &Path,
    progress: StreamProgress<'_>,
) -> Result<u64, OpError> {
    request_to_file(
        transport,
        Request::ExportStorage,
        dest,
        MAX_RECEIVE_BYTES,
        progress,
    )
    .await
}
