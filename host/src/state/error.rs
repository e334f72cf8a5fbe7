//! Errors of the state directory, lock and disk.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("HOME is not set; pass --state-dir")]
    NoHome,

    #[error(
        "invalid instance name {0:?}: use letters, digits, '.', '_' and '-', not starting with '.'"
    )]
    BadInstanceName(String),

    #[error("{path} is in use by another {tool} command{}", holder_text(*.holder))]
    Locked {
        tool: &'static str,
        path: PathBuf,
        holder: Option<u32>,
    },

    #[error("gave up after {waited_ms} ms waiting for another {tool} command using {path}{}", holder_text(*.holder))]
    LockTimeout {
        tool: &'static str,
        path: PathBuf,
        holder: Option<u32>,
        waited_ms: u128,
    },

    #[error("mke2fs not found in PATH, /sbin or /usr/sbin; install the package e2fsprogs")]
    Mke2fsMissing,

    #[error("mke2fs failed on {path} ({status}): {stderr}")]
    Mke2fsFailed {
        path: PathBuf,
        status: String,
        stderr: String,
    },

    #[error("invalid instance metadata {path}: {source}")]
    BadRecord {
        path: PathBuf,
        source: serde_json::Error,
    },

    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

fn holder_text(holder: Option<u32>) -> String {
    holder
        .map(|pid| format!(" (pid {pid})"))
        .unwrap_or_default()
}

impl StateError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        StateError::Io {
            action,
            path: path.into(),
            source,
        }
    }
}
