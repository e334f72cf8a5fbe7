//! One connection to the agent: Hello and version check, then typed frames both ways.

use std::time::Duration;

use tokio::io::{ReadHalf, WriteHalf};
use vcontainer_protocol::{
    read_frame_async, write_frame_async, AgentError, AgentMsg, Hello, HostMsg, MessageName,
    ProtocolError, Request,
};

use crate::transport::{BoxStream, Transport};

/// How long the agent may take to send `Hello` on a fresh operation connection.
const HELLO_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("cannot reach the agent over {transport}: {source}")]
    Connect {
        transport: String,
        source: std::io::Error,
    },
    #[error("the agent did not greet within {0:?}")]
    HelloTimeout(Duration),
    #[error("the agent did not answer {what} within {within:?}")]
    NoAnswer {
        what: &'static str,
        within: Duration,
    },
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    #[error("the agent reported an error: {0}")]
    Agent(AgentError),
    #[error("the guest sent nothing for {} s in the middle of a data stream (stalled); set {STALL_ENV} to wait longer", .0.as_secs())]
    Stalled(Duration),
}

/// Environment variable overriding [`DEFAULT_STALL_TIMEOUT`] (seconds).
pub const STALL_ENV: &str = "VCONTAINER_STALL_TIMEOUT_SECS";
/// How long a bulk data stream from the guest may go silent before the host gives up. Bulk
/// streams (storage exports, `cp`, `save`) send a frame at least every chunk; a silent one is a
/// hung or hostile guest, which must not hold a build forever. Interactive sessions have no
/// such limit (a shell may sit idle for hours).
pub const DEFAULT_STALL_TIMEOUT: Duration = Duration::from_secs(300);

/// [`DEFAULT_STALL_TIMEOUT`], or the [`STALL_ENV`] override.
pub fn stall_timeout() -> Duration {
    std::env::var(STALL_ENV)
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|s| *s > 0)
        .map_or(DEFAULT_STALL_TIMEOUT, Duration::from_secs)
}

impl SessionError {
    /// The connection to the agent was lost (closed, cut, silent, unreachable) rather than
    /// refused by it: the sign of a guest that may have died, which the caller should check.
    pub fn is_connection_lost(&self) -> bool {
        match self {
            SessionError::Connect { .. }
            | SessionError::HelloTimeout(_)
            | SessionError::NoAnswer { .. }
            | SessionError::Stalled(_) => true,
            SessionError::Protocol(p) => matches!(
                p,
                ProtocolError::Closed | ProtocolError::Truncated | ProtocolError::Io(_)
            ),
            SessionError::Agent(_) => false,
        }
    }

    /// An unexpected frame, named without its payload.
    pub fn unexpected(expected: &'static str, got: &AgentMsg) -> Self {
        match got {
            AgentMsg::Error(e) => SessionError::Agent(e.clone()),
            other => SessionError::Protocol(ProtocolError::Unexpected {
                expected,
                got: other.name(),
            }),
        }
    }
}

/// A connection to the agent after a successful handshake.
pub struct AgentConn {
    reader: ReadHalf<BoxStream>,
    writer: WriteHalf<BoxStream>,
    hello: Hello,
}

impl AgentConn {
    /// Reads the agent's `Hello` from a fresh stream and checks the protocol version.
    pub async fn handshake(stream: BoxStream) -> Result<Self, SessionError> {
        let (mut reader, writer) = tokio::io::split(stream);
        let first: AgentMsg = tokio::time::timeout(HELLO_TIMEOUT, read_frame_async(&mut reader))
            .await
            .map_err(|_| SessionError::HelloTimeout(HELLO_TIMEOUT))??;
        let hello = match first {
            AgentMsg::Hello(h) => h,
            other => return Err(SessionError::unexpected("Hello", &other)),
        };
        hello.check_version()?;
        Ok(Self {
            reader,
            writer,
            hello,
        })
    }

    /// Opens an operation connection and sends `request`.
    pub async fn request(
        transport: &dyn Transport,
        request: Request,
    ) -> Result<Self, SessionError> {
        let stream = transport
            .connect()
            .await
            .map_err(|source| SessionError::Connect {
                transport: transport.describe(),
                source,
            })?;
        let mut conn = Self::handshake(stream).await?;
        conn.send(&HostMsg::Request(request)).await?;
        Ok(conn)
    }

    pub fn hello(&self) -> &Hello {
        &self.hello
    }

    pub async fn send(&mut self, msg: &HostMsg) -> Result<(), SessionError> {
        send_frame(&mut self.writer, msg).await
    }

    pub async fn recv(&mut self) -> Result<AgentMsg, SessionError> {
        Ok(read_frame_async(&mut self.reader).await?)
    }

    /// Receives one frame that must be `Done`.
    pub async fn expect_done(&mut self) -> Result<(), SessionError> {
        match self.recv().await? {
            AgentMsg::Done => Ok(()),
            other => Err(SessionError::unexpected("Done", &other)),
        }
    }

    /// Splits into halves so sending and receiving can run concurrently.
    pub fn into_split(self) -> (ConnReader, ConnWriter, Hello) {
        (
            ConnReader {
                reader: self.reader,
            },
            ConnWriter {
                writer: self.writer,
            },
            self.hello,
        )
    }
}

/// Writes one frame. A write to an agent whose end is gone is reported as the closed connection
/// it is, not as "broken pipe".
async fn send_frame(writer: &mut WriteHalf<BoxStream>, msg: &HostMsg) -> Result<(), SessionError> {
    match write_frame_async(writer, msg).await {
        Err(ProtocolError::Io(e))
            if matches!(
                e.kind(),
                std::io::ErrorKind::BrokenPipe
                    | std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted
            ) =>
        {
            Err(SessionError::Protocol(ProtocolError::Closed))
        }
        r => Ok(r?),
    }
}

pub struct ConnReader {
    reader: ReadHalf<BoxStream>,
}

impl ConnReader {
    pub async fn recv(&mut self) -> Result<AgentMsg, SessionError> {
        Ok(read_frame_async(&mut self.reader).await?)
    }

    /// [`ConnReader::recv`] that gives up after `stall` of silence (bulk streams).
    pub async fn recv_within(&mut self, stall: Duration) -> Result<AgentMsg, SessionError> {
        tokio::time::timeout(stall, self.recv())
            .await
            .map_err(|_| SessionError::Stalled(stall))?
    }
}

pub struct ConnWriter {
    writer: WriteHalf<BoxStream>,
}

impl ConnWriter {
    pub async fn send(&mut self, msg: &HostMsg) -> Result<(), SessionError> {
        send_frame(&mut self.writer, msg).await
    }
}
