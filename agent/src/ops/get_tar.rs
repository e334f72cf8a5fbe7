//! GetTar: send a guest path as a tar stream whose entries are named `basename(path)/…`.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use tokio::sync::mpsc;
use vcontainer_protocol::{AgentMsg, ErrorKind, StreamDigest};

use super::OpError;
use crate::conn::FrameWriter;
use crate::stream::{send_data, ChannelWriter, CHANNEL_DEPTH};

pub async fn get_tar(path: &str, wr: &mut FrameWriter) -> Result<(), OpError> {
    let path = PathBuf::from(path);
    let name = check_path(&path)?;
    let (tx, mut rx) = mpsc::channel(CHANNEL_DEPTH);
    let builder = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        let mut tar = tar::Builder::new(ChannelWriter::new(tx));
        // Symlinks travel as symlinks; following them could leave the requested tree.
        tar.follow_symlinks(false);
        if fs::symlink_metadata(&path)?.is_dir() {
            tar.append_dir_all(&name, &path)?;
        } else {
            tar.append_path_with_name(&path, &name)?;
        }
        tar.into_inner()?.flush()
    });
    let mut digest = StreamDigest::new();
    while let Some(chunk) = rx.recv().await {
        // On a send error `rx` is dropped with this function and the builder stops at its next
        // write.
        send_data(wr, &mut digest, chunk).await?;
    }
    match builder.await {
        Ok(Ok(())) => wr.send(&AgentMsg::End(digest.finish())).await?,
        Ok(Err(e)) => return Err(OpError::io("building the tar stream", e)),
        Err(e) => return Err(OpError::new(ErrorKind::Io, e.to_string())),
    }
    Ok(())
}

/// The entry name for `path` (its last component); the path must exist.
fn check_path(path: &Path) -> Result<PathBuf, OpError> {
    if !path.is_absolute() {
        return Err(OpError::new(
            ErrorKind::BadRequest,
            format!("{}: path must be absolute", path.display()),
        ));
    }
    let Some(name) = path.file_name() else {
        return Err(OpError::new(
            ErrorKind::BadRequest,
            format!("{}: path has no last component", path.display()),
        ));
    };
    if fs::symlink_metadata(path).is_err() {
        return Err(OpError::new(
            ErrorKind::NotFound,
            format!("{}: no such file or directory", path.display()),
        ));
    }
    Ok(PathBuf::from(name))
}
