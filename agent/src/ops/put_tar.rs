//! PutTar: unpack the host's tar stream into a guest directory. The tar crate refuses entries
//! that escape the destination (`..`, absolute paths).

use std::collections::HashSet;
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};

use tokio::sync::mpsc;
use vcontainer_protocol::{AgentMsg, ErrorKind};

use super::OpError;
use crate::conn::{FrameReader, FrameWriter};
use crate::stream::{receive_stream, ChannelReader, CHANNEL_DEPTH};

pub async fn put_tar(
    dest: &str,
    rd: &mut FrameReader,
    wr: &mut FrameWriter,
) -> Result<(), OpError> {
    let dest = PathBuf::from(dest);
    let before = match prepare_dest(&dest) {
        Ok(b) => b,
        Err(e) => {
            // Read the host's stream to its end so it gets this answer, not a broken pipe.
            let _ = receive_stream(rd, None).await;
            return Err(e);
        }
    };
    if let Err(e) = unpack_stream(rd, dest.clone()).await {
        remove_new_entries(&dest, before.as_ref());
        return Err(e);
    }
    wr.send(&AgentMsg::Done).await?;
    Ok(())
}

/// Creates `dest`; returns the names already in it (`None`: it is new), for cleanup on failure.
fn prepare_dest(dest: &Path) -> Result<Option<HashSet<OsString>>, OpError> {
    if !dest.is_absolute() {
        return Err(OpError::new(
            ErrorKind::BadRequest,
            format!("{}: destination must be absolute", dest.display()),
        ));
    }
    match fs::symlink_metadata(dest) {
        Ok(meta) if meta.is_dir() => {
            let names = fs::read_dir(dest)
                .map_err(|e| OpError::io(dest.display(), e))?
                .filter_map(|e| e.ok().map(|e| e.file_name()))
                .collect();
            Ok(Some(names))
        }
        Ok(_) => Err(OpError::new(
            ErrorKind::BadRequest,
            format!("{}: not a directory", dest.display()),
        )),
        Err(_) => {
            fs::create_dir_all(dest).map_err(|e| OpError::io(dest.display(), e))?;
            Ok(None)
        }
    }
}

/// Removes what a failed unpack added: all of `dest` if it was new, else the top-level entries
/// that were not there before (files replaced inside existing directories cannot be restored).
fn remove_new_entries(dest: &Path, before: Option<&HashSet<OsString>>) {
    let Some(before) = before else {
        let _ = fs::remove_dir_all(dest);
        return;
    };
    let Ok(entries) = fs::read_dir(dest) else {
        return;
    };
    for entry in entries.flatten() {
        if before.contains(&entry.file_name()) {
            continue;
        }
        let path = entry.path();
        let _ = match entry.file_type() {
            Ok(t) if t.is_dir() => fs::remove_dir_all(&path),
            _ => fs::remove_file(&path),
        };
    }
}

/// Receives a tar stream and unpacks it into `dest` while it arrives; fails on a bad digest
/// (the caller removes what was unpacked).
pub async fn unpack_stream(rd: &mut FrameReader, dest: PathBuf) -> Result<(), OpError> {
    let (tx, rx) = mpsc::channel(CHANNEL_DEPTH);
    let target = dest.clone();
    let unpacker = tokio::task::spawn_blocking(move || {
        let mut archive = tar::Archive::new(ChannelReader::new(rx));
        archive.set_preserve_permissions(true);
        archive.set_preserve_mtime(true);
        archive.set_overwrite(true);
        archive.set_preserve_ownerships(nix::unistd::geteuid().is_root());
        archive.unpack(&target)
    });
    let received = receive_stream(rd, Some(tx)).await;
    let unpacked = unpacker
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))
        .and_then(|r| r);
    received?;
    unpacked.map_err(|e| OpError::io(format!("unpacking into {}", dest.display()), e))
}
