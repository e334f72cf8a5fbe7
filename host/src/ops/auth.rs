//! SetAuth: hands the guest a registry auth file as a data stream (never on a command line).

use vcontainer_protocol::{HostMsg, Request, StreamDigest, DATA_CHUNK_LEN, MAX_AUTH_FILE_LEN};

use super::OpError;
use crate::session::AgentConn;
use crate::transport::Transport;

/// Installs `auth` (docker `config.json` / podman `auth.json` contents, at most
/// [`MAX_AUTH_FILE_LEN`] bytes) where the guest's engine reads registry credentials.
pub async fn set_auth(transport: &dyn Transport, auth: &[u8]) -> Result<(), OpError> {
    if auth.len() as u64 > MAX_AUTH_FILE_LEN {
        return Err(OpError::Io {
            context: "registry auth file".into(),
            source: std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("{} bytes, at most {MAX_AUTH_FILE_LEN} allowed", auth.len()),
            ),
        });
    }
    let mut conn = AgentConn::request(transport, Request::SetAuth).await?;
    let mut digest = StreamDigest::new();
    for chunk in auth.chunks(DATA_CHUNK_LEN) {
        digest.update(chunk);
        conn.send(&HostMsg::Data(chunk.to_vec())).await?;
    }
    conn.send(&HostMsg::End(digest.finish())).await?;
    conn.expect_done().await?;
    Ok(())
}
