//! GetTar: send a guest path as a tar stream whose entries are named `basename(path)/…`.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use tokio::sync::mpsc;
use vcontainer_protocol::{AgentMsg, ErrorKind};

use super::OpError;
use crate::conn::FrameWriter;
use crate::stream::{send_chunks, ChannelWriter, CHANNEL_DEPTH};

pub async fn get_tar(path: &str, wr: &mut FrameWriter) -> Result<(), OpError> {
    let path = PathBuf::from(path);
    let name = check_path(&path)?;
    let (tx, rx) = mpsc::channel(CHANNEL_DEPTH);
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
    // On a send error `rx` is dropped and the builder stops at its next write.
    let end = send_chunks(wr, rx).await?;
    match builder.await {
        Ok(Ok(())) => wr.send(&AgentMsg::End(end)).await?,
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
