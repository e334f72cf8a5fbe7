//! Operations: one per connection. The agent sends `Hello`, reads one `Request`, and answers.

mod engine_api;
mod error;
mod exec;
mod export;
mod get_tar;
mod import_oci;
mod pty;
mod put_tar;
mod raw_source;
pub mod seed;
mod set_auth;
mod shutdown;
mod status;
mod streaming;

pub use error::OpError;

use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};
use vcontainer_protocol::{ErrorKind, HostMsg, MessageName, ProtocolError, Request};

use crate::agent::Agent;
use crate::conn;
use crate::debug;

/// Serves one operation connection to its end.
pub async fn handle_connection<S>(stream: S, agent: Arc<Agent>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut rd, mut wr) = conn::split(stream);
    if wr.send(&agent.hello()).await.is_err() {
        return;
    }
    let request = match rd.recv().await {
        Ok(HostMsg::Request(r)) => r,
        Ok(other) => {
            let msg = format!("expected a Request, got {}", other.name());
            wr.send_error(ErrorKind::Protocol, msg).await;
            return;
        }
        Err(ProtocolError::Closed) => return,
        Err(e) => {
            wr.send_error(ErrorKind::Protocol, e.to_string()).await;
            return;
        }
    };
    let name = request.name();
    debug!("op {name}");
    let result = match request {
        Request::Exec(req) => exec::exec(&agent, req, rd, &mut wr).await,
        Request::PutTar { dest } => put_tar::put_tar(&dest, &mut rd, &mut wr).await,
        Request::GetTar { path } => get_tar::get_tar(&path, &mut wr).await,
        Request::ImportOci { reference } => {
            import_oci::import_oci(&agent, &reference, rd, &mut wr).await
        }
        Request::ExportStorage => export::export_storage(&agent, &mut wr).await,
        Request::Status => status::status(&agent, &mut wr).await,
        Request::Shutdown => shutdown::shutdown(&agent, &mut rd, &mut wr).await,
        Request::RawSource { bytes } => raw_source::raw_source(bytes, &mut wr).await,
        Request::SetAuth => set_auth::set_auth(&agent, &mut rd, &mut wr).await,
        Request::EngineApi => engine_api::engine_api(&agent, &mut rd, &mut wr).await,
    };
    if let Err(e) = result {
        if e.is_disconnect() {
            debug!("op {name}: connection lost: {e}");
        } else {
            debug!("op {name} failed: {e}");
            wr.send_error(e.kind(), e.to_string()).await;
        }
    }
}
