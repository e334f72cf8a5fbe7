//! Accept loops: every connection is one operation, served concurrently.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::UnixListener;
use tokio_vsock::VsockListener;

use crate::agent::Agent;
use crate::log;
use crate::ops::handle_connection;

pub async fn serve_unix(listener: UnixListener, agent: Arc<Agent>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(serve_one(stream, Arc::clone(&agent)));
            }
            Err(e) => accept_failed(e).await,
        }
    }
}

pub async fn serve_vsock(listener: VsockListener, agent: Arc<Agent>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(serve_one(stream, Arc::clone(&agent)));
            }
            Err(e) => accept_failed(e).await,
        }
    }
}

/// One operation, counted as activity while it runs.
async fn serve_one<S>(stream: S, agent: Arc<Agent>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let _busy = agent.activity.begin();
    handle_connection(stream, Arc::clone(&agent)).await;
}

/// Out of file descriptors and the like: back off a little instead of spinning.
async fn accept_failed(e: std::io::Error) {
    log!("accept: {e}");
    tokio::time::sleep(Duration::from_millis(50)).await;
}
