//! One connection as a frame reader and a frame writer, whatever the transport (vsock, unix).

use tokio::io::{AsyncRead, AsyncWrite, BufReader};
use vcontainer_protocol::{
    read_frame_async, write_frame_async, AgentError, AgentMsg, ErrorKind, Hello, HostMsg,
    ProtocolError, PROTOCOL_VERSION,
};

use crate::CAPABILITIES;

pub type BoxRead = Box<dyn AsyncRead + Unpin + Send>;
pub type BoxWrite = Box<dyn AsyncWrite + Unpin + Send>;

pub struct FrameReader {
    inner: BufReader<BoxRead>,
}

pub struct FrameWriter {
    inner: BoxWrite,
}

/// Splits a stream into its frame halves.
pub fn split<S>(stream: S) -> (FrameReader, FrameWriter)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (rd, wr) = tokio::io::split(stream);
    (
        FrameReader {
            // Buffered: small frames cost one read instead of two.
            inner: BufReader::with_capacity(64 * 1024, Box::new(rd)),
        },
        FrameWriter {
            inner: Box::new(wr),
        },
    )
}

impl FrameReader {
    pub async fn recv(&mut self) -> Result<HostMsg, ProtocolError> {
        read_frame_async(&mut self.inner).await
    }
}

impl FrameWriter {
    pub async fn send(&mut self, msg: &AgentMsg) -> Result<(), ProtocolError> {
        write_frame_async(&mut self.inner, msg).await
    }

    /// Best effort: the peer may already be gone.
    pub async fn send_error(&mut self, kind: ErrorKind, message: impl Into<String>) {
        let msg = AgentMsg::Error(AgentError {
            kind,
            message: message.into(),
        });
        let _ = self.send(&msg).await;
    }
}

/// The `Hello` this agent sends first on every connection.
pub fn hello(engine: vcontainer_protocol::EngineKind) -> AgentMsg {
    let arch = nix::sys::utsname::uname()
        .map(|u| u.machine().to_string_lossy().into_owned())
        .unwrap_or_else(|_| std::env::consts::ARCH.into());
    AgentMsg::Hello(Hello {
        protocol: PROTOCOL_VERSION,
        agent_version: env!("CARGO_PKG_VERSION").into(),
        arch,
        engine,
        capabilities: CAPABILITIES.iter().map(|c| c.to_string()).collect(),
    })
}
