//! Hybrid vsock: vhost-device-vsock (and Firecracker, Cloud Hypervisor) expose the guest's vsock
//! as a unix socket. Host → guest: connect to the socket, send `CONNECT <port>\n`, read
//! `OK <host port>\n`, then raw bytes. Guest → host: the backend connects to `<socket>_<port>`,
//! where the host must already listen.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use vcontainer_protocol::{CONTROL_PORT, OPERATION_PORT};

use super::unix::UnixControlListener;
use super::{BoxFuture, BoxStream, ControlListener, Transport};

/// The longest `OK <port>\n` reply we accept before calling the backend broken.
const MAX_REPLY_LEN: usize = 32;
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct HybridVsock {
    uds: PathBuf,
}

impl HybridVsock {
    /// `uds` is the backend's `uds-path`.
    pub fn new(uds: impl Into<PathBuf>) -> Self {
        Self { uds: uds.into() }
    }

    /// Where the host listens for guest connections to `port`.
    pub fn listen_path(uds: &Path, port: u32) -> PathBuf {
        let mut s = uds.as_os_str().to_owned();
        s.push(format!("_{port}"));
        PathBuf::from(s)
    }
}

impl Transport for HybridVsock {
    fn connect(&self) -> BoxFuture<'_, io::Result<BoxStream>> {
        Box::pin(async move {
            let mut s = UnixStream::connect(&self.uds).await?;
            tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake(&mut s, OPERATION_PORT))
                .await
                .map_err(|_| {
                    io::Error::new(
                        io::ErrorKind::TimedOut,
                        "vsock backend did not answer CONNECT",
                    )
                })??;
            Ok(Box::new(s) as BoxStream)
        })
    }

    fn describe(&self) -> String {
        format!("vhost-user vsock via {}", self.uds.display())
    }
}

/// Sends `CONNECT <port>` and reads the reply byte by byte, so no payload byte is consumed.
async fn handshake(s: &mut UnixStream, port: u32) -> io::Result<()> {
    s.write_all(format!("CONNECT {port}\n").as_bytes()).await?;
    let mut line = Vec::with_capacity(MAX_REPLY_LEN);
    loop {
        let b = s.read_u8().await.map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                io::Error::new(
                    io::ErrorKind::ConnectionRefused,
                    format!(
                        "nothing listens on guest vsock port {port} (the agent is not running)"
                    ),
                )
            } else {
                e
            }
        })?;
        if b == b'\n' {
            break;
        }
        line.push(b);
        if line.len() > MAX_REPLY_LEN {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "vsock backend sent an overlong CONNECT reply",
            ));
        }
    }
    parse_reply(&line)
}

fn parse_reply(line: &[u8]) -> io::Result<()> {
    let text = String::from_utf8_lossy(line);
    let mut words = text.split_ascii_whitespace();
    match (
        words.next(),
        words.next().map(str::parse::<u32>),
        words.next(),
    ) {
        (Some("OK"), Some(Ok(_)), None) => Ok(()),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("unexpected vsock backend reply {text:?}"),
        )),
    }
}

/// Listens on `<uds>_<CONTROL_PORT>` for the agent's dial-in.
pub struct HybridControlListener {
    inner: UnixControlListener,
}

impl HybridControlListener {
    pub fn bind(uds: &Path) -> io::Result<Self> {
        Ok(Self {
            inner: UnixControlListener::bind(&HybridVsock::listen_path(uds, CONTROL_PORT))?,
        })
    }
}

impl ControlListener for HybridControlListener {
    fn accept(&mut self) -> BoxFuture<'_, io::Result<BoxStream>> {
        self.inner.accept()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_parsing() {
        assert!(parse_reply(b"OK 1073741824").is_ok());
        assert!(parse_reply(b"OK").is_err());
        assert!(parse_reply(b"ERR 5").is_err());
        assert!(parse_reply(b"OK 12 extra").is_err());
    }

    #[test]
    fn listen_path_appends_port() {
        assert_eq!(
            HybridVsock::listen_path(Path::new("/s/vsock.sock"), 1024),
            PathBuf::from("/s/vsock.sock_1024")
        );
    }

    #[tokio::test]
    async fn connect_speaks_the_connect_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let uds = dir.path().join("v.sock");
        let listener = tokio::net::UnixListener::bind(&uds).expect("bind");
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.expect("accept");
            let mut buf = [0u8; 13];
            s.read_exact(&mut buf).await.expect("read");
            assert_eq!(&buf, b"CONNECT 1025\n");
            s.write_all(b"OK 99\npayload").await.expect("write");
        });
        let t = HybridVsock::new(&uds);
        let mut s = t.connect().await.expect("connect");
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).await.expect("read");
        assert_eq!(rest, b"payload");
        server.await.expect("server");
    }
}
