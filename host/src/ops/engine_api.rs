//! A local unix socket that stands in for the guest engine's API socket: every connection to it
//! becomes one `Request::EngineApi` connection to the agent, bytes pumped both ways. A host-side
//! engine CLI pointed at it (`DOCKER_HOST=unix://…`) talks to the guest's daemon.
//!
//! Half-close travels: the client's EOF becomes `StdinEnd` (the agent half-closes the engine
//! socket) and the agent's `Done` becomes `shutdown(Write)` towards the client, each direction
//! on its own, so hijacked HTTP streams (`attach`, `exec`, `logs -f`) keep working after one side
//! has finished sending.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{UnixListener, UnixStream};
use tokio::task::{JoinHandle, JoinSet};
use vcontainer_protocol::{AgentMsg, HostMsg, Request, DATA_CHUNK_LEN};

use crate::session::{AgentConn, ConnReader, ConnWriter, SessionError};
use crate::transport::Transport;

/// Name of the socket inside the proxy's private directory.
const SOCKET_NAME: &str = "engine.sock";

/// How long a refused client may keep sending before we close on it.
const REFUSED_DRAIN: Duration = Duration::from_secs(5);

/// A running proxy. Dropping it stops accepting, ends its connections and removes its directory.
pub struct ApiProxy {
    socket: PathBuf,
    task: JoinHandle<()>,
    // Dropped after `task` is aborted (fields drop after `Drop::drop`).
    _dir: tempfile::TempDir,
}

impl ApiProxy {
    /// Binds the socket in a fresh private (0700) directory and starts accepting. Must be called
    /// inside a tokio runtime.
    pub fn start(transport: Arc<dyn Transport>) -> io::Result<ApiProxy> {
        let handle = tokio::runtime::Handle::try_current()
            .map_err(|e| io::Error::other(format!("the engine API proxy needs a runtime: {e}")))?;
        let dir = tempfile::Builder::new()
            .prefix("vcontainer-api-")
            .tempdir_in(socket_parent())?;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))?;
        let socket = dir.path().join(SOCKET_NAME);
        let listener = {
            let _guard = handle.enter();
            UnixListener::bind(&socket)?
        };
        let task = handle.spawn(accept_loop(listener, transport));
        Ok(ApiProxy {
            socket,
            task,
            _dir: dir,
        })
    }

    pub fn socket_path(&self) -> &Path {
        &self.socket
    }
}

impl Drop for ApiProxy {
    fn drop(&mut self) {
        // Aborting the accept task drops its JoinSet, which aborts every connection.
        self.task.abort();
    }
}

/// `$TMPDIR` unless that would make the socket path too long for `sun_path` (108 bytes).
fn socket_parent() -> PathBuf {
    let tmp = std::env::temp_dir();
    // "/vcontainer-api-XXXXXX/engine.sock" plus the NUL.
    if tmp.as_os_str().len() + 40 < 108 {
        tmp
    } else {
        PathBuf::from("/tmp")
    }
}

async fn accept_loop(listener: UnixListener, transport: Arc<dyn Transport>) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((client, _)) => {
                    conns.spawn(serve_client(client, Arc::clone(&transport)));
                }
                Err(_) => {
                    // Out of descriptors and the like: back off instead of spinning.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum PumpError {
    #[error(transparent)]
    Session(#[from] SessionError),
    #[error("writing to the client: {0}")]
    Client(io::Error),
}

async fn serve_client(client: UnixStream, transport: Arc<dyn Transport>) {
    let conn = match open(&*transport).await {
        Ok(conn) => conn,
        Err(e) => {
            // The client is told why (an HTTP 502 with the reason); nobody else needs to know.
            refuse(client, &e.to_string()).await;
            return;
        }
    };
    let (agent_rd, agent_wr, _) = conn.into_split();
    let (client_rd, client_wr) = client.into_split();
    let pumped = tokio::try_join!(
        client_to_agent(client_rd, agent_wr),
        agent_to_client(agent_rd, client_wr)
    );
    // A connection that ends in an error ends for its client only: the engine's CLI reports
    // it, and the proxy goes on serving the others.
    let _ = pumped;
}

/// An EngineApi connection the agent has confirmed (engine running, socket connected).
async fn open(transport: &dyn Transport) -> Result<AgentConn, SessionError> {
    let mut conn = AgentConn::request(transport, Request::EngineApi).await?;
    conn.expect_done().await?;
    Ok(conn)
}

/// Client bytes → `Data` frames; the client's EOF (or a read error) → `StdinEnd`.
async fn client_to_agent(
    mut client: OwnedReadHalf,
    mut agent: ConnWriter,
) -> Result<(), PumpError> {
    let mut buf = vec![0u8; DATA_CHUNK_LEN];
    loop {
        let n = match client.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => n,
            // A client that cannot be read any more has ended its request.
            Err(_) => break,
        };
        agent.send(&HostMsg::Data(buf[..n].to_vec())).await?;
    }
    agent.send(&HostMsg::StdinEnd).await?;
    Ok(())
}

/// Agent `Data` frames → client bytes; `Done` → half-close towards the client. If the client no
/// longer takes bytes, the rest is read and dropped so the agent can finish its direction.
async fn agent_to_client(
    mut agent: ConnReader,
    mut client: OwnedWriteHalf,
) -> Result<(), PumpError> {
    let mut open = true;
    loop {
        match agent.recv().await? {
            AgentMsg::Data(bytes) => {
                if open {
                    // A client that stopped reading gets no more bytes; see above.
                    if client.write_all(&bytes).await.is_err() {
                        open = false;
                    }
                }
            }
            AgentMsg::Done => {
                if open {
                    // shutdown() on an OwnedWriteHalf is shutdown(Write): reading goes on.
                    client.shutdown().await.map_err(PumpError::Client)?;
                }
                return Ok(());
            }
            other => return Err(SessionError::unexpected("Data or Done", &other).into()),
        }
    }
}

/// The agent could not connect us: answer with an HTTP error the engine CLI shows as
/// `Error response from daemon: …` rather than a bare EOF.
async fn refuse(mut client: UnixStream, message: &str) {
    let body = serde_json::json!({ "message": message }).to_string();
    let response = format!(
        "HTTP/1.1 502 Bad Gateway\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    if client.write_all(response.as_bytes()).await.is_err() {
        return;
    }
    let _ = client.shutdown().await;
    // Let the client finish sending its request before the socket closes under it.
    let mut sink = [0u8; 4096];
    let _ = tokio::time::timeout(REFUSED_DRAIN, async {
        while let Ok(n) = client.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
}
