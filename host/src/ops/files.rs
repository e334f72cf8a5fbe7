//! Copying trees into and out of the guest as tar streams.

use std::path::Path;

use vcontainer_protocol::Request;

use super::stream::{request_to_file, send_dir_as_tar, StreamProgress, MAX_RECEIVE_BYTES};
use super::OpError;
use crate::session::AgentConn;
use crate::transport::Transport;

/// Copies the contents of the host directory `src` into the guest directory `dest`.
pub async fn put_dir(
    transport: &dyn Transport,
    src: &Path,
    dest: &str,
    progress: StreamProgress<'_>,
) -> Result<u64, OpError> {
    let conn = AgentConn::request(
        transport,
        Request::PutTar {
            dest: dest.to_string(),
        },
    )
    .await?;
    let (mut reader, mut writer, _) = conn.into_split();
    let sent = send_dir_as_tar(&mut writer, src, progress).await?;
    match reader.recv().await? {
        vcontainer_protocol::AgentMsg::Done => Ok(sent),
        other => Err(crate::session::SessionError::unexpected("Done", &other).into()),
    }
}

/// Writes the guest path `path` as a tar archive to the host file `dest` (atomically).
pub async fn get_tar(
    transport: &dyn Transport,
    path: &str,
    dest: &Path,
    progress: StreamProgress<'_>,
) -> Result<u64, OpError> {
    let request = Request::GetTar {
        path: path.to_string(),
    };
    request_to_file(transport, request, dest, MAX_RECEIVE_BYTES, progress).await
}
