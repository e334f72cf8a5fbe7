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
                tokio::spawn(handle_connection(stream, Arc::clone(&agent)));
            }
            Err(e) => accept_failed(e).await,
        }
    }
}

pub async fn serve_vsock(listener: VsockListener, agent: Arc<Agent>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(handle_connection(stream, Arc::clone(&agent)));
            }
            Err(e) => accept_failed(e).await,
        }
    }
}

/// Out of file descriptors and the like: back off a little instead of spinning.
async fn accept_failed(e: std::io::Error) {
    log!("accept: {e}");
    tokio::time::sleep(Duration::from_millis(50)).await;
}
