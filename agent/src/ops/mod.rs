//! Operations: one per connection. The agent sends `Hello`, reads one `Request`, and answers.

mod engine_api;
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

use std::fmt::Display;
use std::io;
use std::sync::Arc;

use thiserror::Error;
use tokio::io::{AsyncRead, AsyncWrite};
use vcontainer_protocol::{ErrorKind, HostMsg, MessageName, ProtocolError, Request};

use crate::agent::Agent;
use crate::conn;
use crate::debug;
use crate::engine::EngineError;

/// How an operation failed: a reportable failure, or a broken conversation.
#[derive(Debug, Error)]
pub enum OpError {
    #[error("{message}")]
    Failed { kind: ErrorKind, message: String },
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
}

impl OpError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self::Failed {
            kind,
            message: message.into(),
        }
    }

    /// An I/O failure with context; a full disk is `NoSpace` so the host can say so.
    pub fn io(context: impl Display, err: io::Error) -> Self {
        let kind = match err.raw_os_error() {
            Some(libc::ENOSPC) | Some(libc::EDQUOT) => ErrorKind::NoSpace,
            _ if err.kind() == io::ErrorKind::NotFound => ErrorKind::NotFound,
            _ => ErrorKind::Io,
        };
        Self::new(kind, format!("{context}: {err}"))
    }

    pub fn kind(&self) -> ErrorKind {
        match self {
            OpError::Failed { kind, .. } => *kind,
            OpError::Protocol(_) => ErrorKind::Protocol,
        }
    }

    /// The peer is gone: nothing can be reported.
    fn is_disconnect(&self) -> bool {
        matches!(
            self,
            OpError::Protocol(ProtocolError::Closed)
                | OpError::Protocol(ProtocolError::Truncated)
                | OpError::Protocol(ProtocolError::Io(_))
        )
    }
}

impl From<EngineError> for OpError {
    fn from(e: EngineError) -> Self {
        OpError::new(ErrorKind::Engine, e.to_string())
    }
}

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
