//! Seeding engine storage at boot from the host's tar (a previous export): GNU tar restores what
//! overlay2 trees hold (whiteout device nodes, xattrs, owners) more faithfully than the tar crate.

use std::fs;
use std::process::Stdio;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use vcontainer_protocol::{ErrorKind, ExitStatus};

use super::streaming::spawn_piped;
use super::OpError;
use crate::agent::Agent;
use crate::conn::FrameReader;
use crate::fsops::{remove_dir_contents, TailBuffer};
use crate::process::{self, GroupKiller};
use crate::stream::{receive_stream, Chunk, CHANNEL_DEPTH};

/// GNU tar arguments extracting only `name/…` from stdin into `parent` (a tar whose top level is
/// not the storage directory extracts nothing and fails).
pub fn seed_args(parent: &str, name: &str) -> Vec<String> {
    [
        "--xattrs",
        "--xattrs-include=*",
        "--numeric-owner",
        "-xpf",
        "-",
        "-C",
        parent,
        name,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Replaces the engine's storage with the tar stream that follows. On a bad digest or a tar
/// failure the storage is left empty and the error returned.
pub async fn seed_storage(agent: &Agent, rd: &mut FrameReader) -> Result<(), OpError> {
    agent.engine.stop().await?;
    let (parent, name) = agent.engine.export_root();
    let dir = parent.join(name);
    fs::create_dir_all(&dir).map_err(|e| OpError::io(dir.display(), e))?;
    remove_dir_contents(&dir).map_err(|e| OpError::io(format!("emptying {}", dir.display()), e))?;

    let mut cmd = process::command("tar", &seed_args(&parent.display().to_string(), name), &[]);
    cmd.stdin(Stdio::piped());
    let running = spawn_piped(agent, &mut cmd, "tar")?;
    let mut killer = GroupKiller::new(running.pid);
    let (Some(mut stdin), Some(mut stderr)) = (running.pipes.stdin, running.pipes.stderr) else {
        return Err(OpError::new(ErrorKind::Io, "tar pipes missing"));
    };
    drop(running.pipes.stdout);
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
    let (tx, mut rx) = mpsc::channel(CHANNEL_DEPTH);
    let feeder = tokio::spawn(async move {
        while let Some(chunk) = rx.recv().await {
            match chunk {
                Chunk::Data(data) => {
                    if stdin.write_all(&data).await.is_err() {
                        return false;
                    }
                }
                Chunk::End => return true, // dropping stdin is tar's EOF
            }
        }
        false
    });

    let received = receive_stream(rd, Some(tx)).await;
    let fed = feeder.await.unwrap_or(false);
    if let Err(e) = received {
        killer.kill_now();
        let _ = running.exit.await;
        let _ = remove_dir_contents(&dir);
        return Err(e.into());
    }
    let status = running
        .exit
        .await
        .map_err(|_| OpError::new(ErrorKind::Io, "lost tar's exit status"))?;
    killer.disarm();
    let stderr = stderr_task.await.unwrap_or_default();
    if status != ExitStatus::Code(0) || !fed {
        let _ = remove_dir_contents(&dir);
        return Err(OpError::new(
            ErrorKind::Io,
            format!(
                "seeding {}: tar exited with {status:?}: {stderr}",
                dir.display()
            ),
        ));
    }
    Ok(())
}
