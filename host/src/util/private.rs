//! Files only their owner can read: logs may hold engine output and sockets give control of a
//! VM, so the 0700 state directory is the first line, not the only one.

use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Creates (or truncates) a state file only its owner can read: logs may hold engine output, and
/// the state directory's 0700 is the first line, not the only one.
pub fn create_private_file(path: &Path) -> std::io::Result<std::fs::File> {
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    // An older file keeps its mode on open: narrow it.
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    Ok(f)
}

/// Narrows an existing path (a socket another process created) to 0600.
pub fn make_private(path: &Path) -> std::io::Result<()> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
}
