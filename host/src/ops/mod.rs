//! Operations the host runs against an agent, one connection each.

mod auth;
mod copy;
mod engine_api;
mod exec;
mod export;
mod files;
mod import;
mod interactive;
pub mod oci_import;
pub mod partial;
mod simple;
mod stream;

pub use auth::set_auth;
pub use copy::{copy_in, copy_out};
pub use engine_api::ApiProxy;
pub use exec::{exec, ExecIo};
pub use export::export_storage;
pub use files::{get_tar, put_dir};
pub use import::import_oci;
pub use interactive::{exec_interactive, exec_on_terminal, TtyIo};
pub use simple::{raw_source, raw_source_with_progress, shutdown, status};
pub use stream::{
    receive_to_file, send_dir_as_tar, send_file, ReceiveError, StreamProgress, MAX_RECEIVE_BYTES,
};

use vcontainer_protocol::ProtocolError;

use vcontainer_oci::validate::OciLayoutError;

use crate::session::SessionError;

/// Failure of an operation.
#[derive(Debug, thiserror::Error)]
pub enum OpError {
    #[error(transparent)]
    Session(#[from] SessionError),
    #[error(transparent)]
    Receive(#[from] ReceiveError),
    #[error(transparent)]
    Layout(#[from] OciLayoutError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
}

impl OpError {
    /// The operation failed because the connection to the agent was lost (see
    /// [`SessionError::is_connection_lost`]).
    pub fn is_connection_lost(&self) -> bool {
        match self {
            OpError::Session(e) => e.is_connection_lost(),
            OpError::Receive(e) => e.is_connection_lost(),
            _ => false,
        }
    }
}

impl From<ProtocolError> for OpError {
    fn from(e: ProtocolError) -> Self {
        OpError::Session(SessionError::Protocol(e))
    }
}
