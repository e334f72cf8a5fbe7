//! Run a process in the guest: argv in, stdout/stderr out separately, exit status back.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use vcontainer_protocol::{AgentMsg, ExecRequest, ExitStatus, HostMsg, Request, DATA_CHUNK_LEN};

use super::OpError;
use crate::session::{AgentConn, SessionError};
use crate::transport::Transport;

/// Where a remote process's streams go (and come from).
pub struct ExecIo<'a> {
    pub stdout: &'a mut (dyn AsyncWrite + Unpin + Send),
    pub stderr: &'a mut (dyn AsyncWrite + Unpin + Send),
    /// Forwarded to the process; `None` gives it `/dev/null`.
    pub stdin: Option<Box<dyn AsyncRead + Unpin + Send>>,
    /// Signals to deliver to the process (e.g. the CLI's own SIGINT).
    pub signals: Option<mpsc::Receiver<i32>>,
}

/// Runs `req` and returns the process's exit status once both output streams ended.
pub async fn exec(
    transport: &dyn Transport,
    mut req: ExecRequest,
    io: ExecIo<'_>,
) -> Result<ExitStatus, OpError> {
    req.stdin = io.stdin.is_some();
    let conn = AgentConn::request(transport, Request::Exec(req)).await?;
    let (mut reader, mut writer, _) = conn.into_split();

    // One task owns the write half; stdin and signal forwarders feed it through a channel.
    let (tx, mut rx) = mpsc::channel::<HostMsg>(8);
    let writer_task = tokio::spawn(async move {
        while let Some(msg) = rx.recv().await {
            if writer.send(&msg).await.is_err() {
                break;
            }
        }
        writer
    });
    if let Some(mut stdin) = io.stdin {
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; DATA_CHUNK_LEN];
            loop {
                match stdin.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if tx.send(HostMsg::Stdin(buf[..n].to_vec())).await.is_err() {
                            return;
                        }
                    }
                }
            }
            let _ = tx.send(HostMsg::StdinEnd).await;
        });
    }
    if let Some(mut signals) = io.signals {
        let tx = tx.clone();
        tokio::spawn(async move {
            while let Some(sig) = signals.recv().await {
                if tx.send(HostMsg::Signal(sig)).await.is_err() {
                    return;
                }
            }
        });
    }
    drop(tx);

    let result = loop {
        match reader.recv().await? {
            AgentMsg::Stdout(chunk) => write_chunk(io.stdout, &chunk).await?,
            AgentMsg::Stderr(chunk) => write_chunk(io.stderr, &chunk).await?,
            AgentMsg::Exited(status) => break Ok(status),
            other => break Err(SessionError::unexpected("Stdout, Stderr or Exited", &other).into()),
        }
    };
    writer_task.abort();
    result
}

pub(super) async fn write_chunk(
    w: &mut (dyn AsyncWrite + Unpin + Send),
    chunk: &[u8],
) -> Result<(), OpError> {
    let res = async {
        w.write_all(chunk).await?;
        w.flush().await
    }
    .await;
    match res {
        Ok(()) => Ok(()),
        // The reader of our output went away (e.g. `| head`): keep draining, like a pipe would
        // make the process stop; the exit status still arrives.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(source) => Err(OpError::Io {
            context: "writing the command's output".into(),
            source,
        }),
    }
}
