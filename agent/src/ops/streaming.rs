//! Runs a spawned child against the connection: stdout and stderr out as separate frames as soon
//! as they are read, stdin and signals in, and the child's process group killed if the host goes
//! away. Shared by Exec and ImportOci.

use std::io;
use std::process::{Child, Command, Stdio};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::pipe;
use tokio::sync::{mpsc, oneshot};
use vcontainer_protocol::{
    AgentMsg, ErrorKind, ExitStatus, HostMsg, MessageName, ProtocolError, DATA_CHUNK_LEN,
};

use super::OpError;
use crate::agent::Agent;
use crate::conn::{FrameReader, FrameWriter};
use crate::debug;
use crate::process::{async_pipes, AsyncPipes, GroupKiller};

/// A child with its pipes and the receiver of its exit status.
pub struct Running {
    pub pid: u32,
    pub pipes: AsyncPipes,
    pub exit: oneshot::Receiver<ExitStatus>,
}

/// Spawns `cmd` with stdout and stderr piped (stdin as the caller set it) through the reaper.
/// A missing program is `NotFound` with the shell's wording.
pub fn spawn_piped(agent: &Agent, cmd: &mut Command, argv0: &str) -> Result<Running, OpError> {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let (mut child, exit): (Child, _) = agent.reaper.spawn(cmd).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => {
            OpError::new(ErrorKind::NotFound, format!("{argv0}: command not found"))
        }
        io::ErrorKind::PermissionDenied => {
            OpError::new(ErrorKind::BadRequest, format!("{argv0}: permission denied"))
        }
        _ => OpError::io(format!("{argv0}: cannot run"), e),
    })?;
    let pid = child.id();
    let pipes = async_pipes(&mut child).map_err(|e| OpError::io("child pipes", e))?;
    Ok(Running { pid, pipes, exit })
}

async fn read_some(pipe: &mut Option<pipe::Receiver>, buf: &mut [u8]) -> io::Result<usize> {
    match pipe {
        Some(p) => p.read(buf).await,
        None => Ok(0),
    }
}

/// An owned permit, so the select! loop may drop its sender while the future exists.
async fn reserve(tx: Option<mpsc::Sender<Vec<u8>>>) -> Option<mpsc::OwnedPermit<Vec<u8>>> {
    tx?.reserve_owned().await.ok()
}

fn deliver_signal(pid: u32, n: i32) {
    match Signal::try_from(n) {
        Ok(sig) => {
            let _ = kill(Pid::from_raw(pid as i32), sig);
        }
        Err(_) => debug!("ignoring unknown signal {n}"),
    }
}

/// Streams the child until both output pipes hit EOF and it was reaped; returns its status (the
/// caller sends `Exited`). Any early return kills the child's process group.
pub async fn stream_child(
    running: Running,
    mut rd: FrameReader,
    wr: &mut FrameWriter,
) -> Result<ExitStatus, OpError> {
    let Running {
        pid,
        pipes,
        mut exit,
    } = running;
    let mut killer = GroupKiller::new(pid);

    // Host frames are read by their own task: a frame read is not cancel-safe inside select!.
    let (host_tx, mut host_rx) = mpsc::channel::<Result<HostMsg, ProtocolError>>(4);
    let reader = tokio::spawn(async move {
        loop {
            let msg = rd.recv().await;
            let last = msg.is_err();
            if host_tx.send(msg).await.is_err() || last {
                break;
            }
        }
    });
    let _reader_guard = AbortOnDrop(reader);

    // stdin is written by its own task so a child that does not read it cannot stall the
    // forwarding of its output. The bounded channel (plus `pending`) is the back-pressure: while
    // the child does not consume stdin, the host's frames are not read either.
    let stdin_allowed = pipes.stdin.is_some();
    let mut stdin_tx = pipes.stdin.map(|mut pipe| {
        let (tx, mut rx) = mpsc::channel::<Vec<u8>>(4);
        tokio::spawn(async move {
            while let Some(chunk) = rx.recv().await {
                if pipe.write_all(&chunk).await.is_err() {
                    break;
                }
            }
        });
        tx
    });
    let mut pending: Option<Vec<u8>> = None;

    let mut stdout = pipes.stdout;
    let mut stderr = pipes.stderr;
    let mut out_buf = vec![0u8; DATA_CHUNK_LEN];
    let mut err_buf = vec![0u8; DATA_CHUNK_LEN];
    let mut status = None;
    let mut host_open = true;

    while stdout.is_some() || stderr.is_some() || status.is_none() {
        tokio::select! {
            r = read_some(&mut stdout, &mut out_buf), if stdout.is_some() => match r {
                Ok(n) if n > 0 => wr.send(&AgentMsg::Stdout(out_buf[..n].to_vec())).await?,
                _ => stdout = None,
            },
            r = read_some(&mut stderr, &mut err_buf), if stderr.is_some() => match r {
                Ok(n) if n > 0 => wr.send(&AgentMsg::Stderr(err_buf[..n].to_vec())).await?,
                _ => stderr = None,
            },
            s = &mut exit, if status.is_none() => {
                status = Some(s.map_err(|_| OpError::new(ErrorKind::Io, "lost the child's exit status"))?);
            }
            permit = reserve(stdin_tx.clone()), if pending.is_some() => match (permit, pending.take()) {
                (Some(permit), Some(chunk)) => {
                    permit.send(chunk);
                }
                // The child closed its stdin: the rest of the host's stdin goes nowhere.
                _ => stdin_tx = None,
            },
            m = host_rx.recv(), if host_open && pending.is_none() => match m {
                Some(Ok(HostMsg::Stdin(bytes))) if stdin_allowed => {
                    if stdin_tx.is_some() {
                        pending = Some(bytes);
                    }
                }
                Some(Ok(HostMsg::StdinEnd)) if stdin_allowed => stdin_tx = None,
                Some(Ok(HostMsg::Signal(n))) => deliver_signal(pid, n),
                Some(Ok(other)) => {
                    return Err(ProtocolError::Unexpected {
                        expected: "Stdin, StdinEnd or Signal",
                        got: other.name(),
                    }
                    .into())
                }
                // The host closed the connection (or broke it): cancel the child.
                Some(Err(e)) => return Err(e.into()),
                None => host_open = false,
            },
        }
    }
    killer.disarm();
    status.ok_or_else(|| OpError::new(ErrorKind::Io, "no exit status"))
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
