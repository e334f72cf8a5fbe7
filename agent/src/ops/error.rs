//! How an operation fails: a failure the host is told about, or a broken conversation.

use std::fmt::Display;
use std::io;

use thiserror::Error;
use vcontainer_protocol::{ErrorKind, ProtocolError};

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
    pub(super) fn is_disconnect(&self) -> bool {
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
