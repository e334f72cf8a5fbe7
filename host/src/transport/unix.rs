use std::io;
use std::path::{Path, PathBuf};

use tokio::net::{UnixListener, UnixStream};

use super::{BoxFuture, BoxStream, ControlListener, Transport};

/// The agent listening on a plain unix socket (tests, or the agent run on the host).
#[derive(Debug, Clone)]
pub struct UnixTransport {
    path: PathBuf,
}

impl UnixTransport {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }
}

impl Transport for UnixTransport {
    fn connect(&self) -> BoxFuture<'_, io::Result<BoxStream>> {
        Box::pin(async move {
            let s = UnixStream::connect(&self.path).await?;
            Ok(Box::new(s) as BoxStream)
        })
    }

    fn describe(&self) -> String {
        format!("unix socket {}", self.path.display())
    }
}

/// Listens on a unix socket path for the agent's control connection.
pub struct UnixControlListener {
    listener: UnixListener,
}

impl UnixControlListener {
    /// Binds `path`, replacing a stale socket file left by an earlier run.
    pub fn bind(path: &Path) -> io::Result<Self> {
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let listener = UnixListener::bind(path)?;
        // Whoever connects here speaks for the guest: owner only.
        crate::util::private::make_private(path)?;
        Ok(Self { listener })
    }
}

impl ControlListener for UnixControlListener {
    fn accept(&mut self) -> BoxFuture<'_, io::Result<BoxStream>> {
        Box::pin(async move {
            let (s, _) = self.listener.accept().await?;
            Ok(Box::new(s) as BoxStream)
        })
    }
}
