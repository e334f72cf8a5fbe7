//! ExportStorage: stop the engine so its storage is consistent, then stream GNU tar of the
//! storage directory (xattrs, numeric owners, sparse files: what overlay2 trees need).

use std::process::Stdio;

use nix::fcntl::{fcntl, FcntlArg};
use tokio::io::AsyncReadExt;
use vcontainer_protocol::{AgentMsg, ErrorKind, ExitStatus, DATA_CHUNK_LEN};

use super::streaming::spawn_piped;
use super::OpError;
use crate::agent::Agent;
use crate::conn::FrameWriter;
use crate::fsops::TailBuffer;
use crate::process::{self, GroupKiller};
use crate::stream::{send_chunks, CHANNEL_DEPTH};

/// GNU tar arguments to archive `parent/name` to stdout.
pub fn export_args(parent: &str, name: &str) -> Vec<String> {
    [
        "--xattrs",
        "--xattrs-include=*",
        "--numeric-owner",
        "--sparse",
        "-cf",
        "-",
        "-C",
        parent,
        name,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

pub async fn export_storage(agent: &Agent, wr: &mut FrameWriter) -> Result<(), OpError> {
    agent.engine.stop().await?;
    nix::unistd::sync();
    let (parent, name) = agent.engine.export_root();
    if !parent.join(name).is_dir() {
        return Err(OpError::new(
            ErrorKind::NotFound,
            format!("{}: no storage to export", parent.join(name).display()),
        ));
    }
    let args = export_args(&parent.display().to_string(), name);
    let mut cmd = process::command("tar", &args, &[]);
    cmd.stdin(Stdio::null());
    let running = spawn_piped(agent, &mut cmd, "tar")?;
    let mut killer = GroupKiller::new(running.pid);
    let (Some(mut stdout), Some(mut stderr)) = (running.pipes.stdout, running.pipes.stderr) else {
        return Err(OpError::new(ErrorKind::Io, "tar pipes missing"));
    };
    // A bigger pipe means fewer wakeups per chunk; best effort.
    let _ = fcntl(&stdout, FcntlArg::F_SETPIPE_SZ(1 << 20));
    let stderr_task = tokio::spawn(async move {
        let mut tail = TailBuffer::new(8192);
        let mut buf = [0u8; 4096];
        while let Ok(n) = stderr.read(&mut buf).await {
            if n == 0 {
                break;
            }
            tail.push(&buf[..n]);
        }
        tail.text()
    });

    let (tx, rx) = tokio::sync::mpsc::channel::<Vec<u8>>(CHANNEL_DEPTH);
    let reader = tokio::spawn(async move {
        loop {
            // Full chunks: latency does not matter here, frame count does.
            let mut chunk = vec![0u8; DATA_CHUNK_LEN];
            let mut filled = 0;
            while filled < chunk.len() {
                match stdout.read(&mut chunk[filled..]).await {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) => return Err(OpError::io("reading tar output", e)),
                }
            }
            if filled == 0 {
                return Ok(());
            }
            chunk.truncate(filled);
            if tx.send(chunk).await.is_err() {
                return Ok(());
            }
        }
    });
    let end = send_chunks(wr, rx).await?;
    reader
        .await
        .map_err(|e| OpError::new(ErrorKind::Io, e.to_string()))??;
    let status = running
        .exit
        .await
        .map_err(|_| OpError::new(ErrorKind::Io, "lost tar's exit status"))?;
    killer.disarm();
    let stderr = stderr_task.await.unwrap_or_default();
    if status != ExitStatus::Code(0) {
        return Err(OpError::new(
            ErrorKind::Io,
            format!("tar exited with {status:?}: {stderr}"),
        ));
    }
    wr.send(&AgentMsg::End(end)).await?;
    Ok(())
}
