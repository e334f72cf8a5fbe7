//! The builder's one error type: every message names the input at fault.

use std::io;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum OciError {
    #[error("invalid layer spec '{entry}': {reason}")]
    LayerSpec { entry: String, reason: String },
    // Not `source`: the message already carries the OS error, and `{:#}` would print it twice.
    #[error("{path}: {err}")]
    Io { path: PathBuf, err: io::Error },
    #[error("{0}")]
    Invalid(String),
    #[error("package '{package}' is not installed according to the {db} database in {rootfs}")]
    UnknownPackage {
        package: String,
        db: &'static str,
        rootfs: PathBuf,
    },
    #[error("{rootfs} has no package database (looked for var/lib/dpkg/status, var/lib/opkg/status and var/lib/rpm); packages layers need one — keep it in the image (e.g. IMAGE_FEATURES += \"package-management\") or use files/directories layers")]
    NoPackageDb { rootfs: PathBuf },
    #[error("{path}: too many levels of symbolic links (a symlink loop)")]
    SymlinkLoop { path: PathBuf },
    #[error("base image {path}: {reason}")]
    Base { path: PathBuf, reason: String },
    #[error("the rootfs changed while the image was being built ({path}); build from a tree nobody writes to")]
    Changed { path: PathBuf },
}

impl OciError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        OciError::Io {
            path: path.into(),
            err: source,
        }
    }
}
