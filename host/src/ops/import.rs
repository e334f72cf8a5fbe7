//! Import an OCI image layout into the guest engine.

use std::path::Path;

use tokio::io::AsyncWrite;
use vcontainer_protocol::{AgentMsg, ExitStatus, Request};

use super::stream::{send_dir_as_tar, StreamProgress};
use super::OpError;
use crate::session::{AgentConn, SessionError};
use crate::transport::Transport;

/// Streams the (already validated) layout at `layout` to the agent, which imports it as
/// `reference` with the engine; the engine's output goes to `out`/`err`.
pub async fn import_oci(
    transport: &dyn Transport,
    layout: &Path,
    reference: &str,
    out: &mut (dyn AsyncWrite + Unpin + Send),
    err: &mut (dyn AsyncWrite + Unpin + Send),
    progress: StreamProgress<'_>,
) -> Result<ExitStatus, OpError> {
    let conn = AgentConn::request(
        transport,
        Request::ImportOci {
            reference: reference.to_string(),
        },
    )
    .await?;
    let (mut reader, mut writer, _) = conn.into_split();
    send_dir_as_tar(&mut writer, layout, progress).await?;
    relay_import_output(&mut reader, out, err).await
}

/// The engine's output during an import, until its exit status.
pub(super) async fn relay_import_output(
    reader: &mut crate::session::ConnReader,
    out: &mut (dyn AsyncWrite + Unpin + Send),
    err: &mut (dyn AsyncWrite + Unpin + Send),
) -> Result<ExitStatus, OpError> {
    loop {
        match reader.recv().await? {
            AgentMsg::Stdout(c) => super::exec::write_chunk(out, &c).await?,
            AgentMsg::Stderr(c) => super::exec::write_chunk(err, &c).await?,
            AgentMsg::Exited(status) => return Ok(status),
            other => return Err(SessionError::unexpected("import output or Exited", &other).into()),
        }
    }
}
