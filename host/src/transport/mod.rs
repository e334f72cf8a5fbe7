//! Byte-stream transports between the host and the agent.
//!
//! Three implementations sit behind [`Transport`] (operation connections, host → agent) and
//! [`ControlListener`] (the agent's boot-time dial-in, agent → host):
//! * [`HybridVsock`] — vhost-user-vsock through `vhost-device-vsock`: a unix socket plus the
//!   `CONNECT <port>` line (Firecracker's hybrid vsock protocol). Used wherever
//!   `/dev/vhost-vsock` is not usable.
//! * [`KernelVsock`] — AF_VSOCK through the kernel's vhost-vsock.
//! * [`UnixTransport`] — a plain unix socket, for tests and the agent running on the host.
//!
//! Nothing above this module knows which one it has.

mod hybrid;
mod kernel;
mod unix;

use std::future::Future;
use std::io;
use std::pin::Pin;

use tokio::io::{AsyncRead, AsyncWrite};

pub use hybrid::{HybridControlListener, HybridVsock};
pub use kernel::{KernelControlListener, KernelVsock};
pub use unix::{UnixControlListener, UnixTransport};

/// A connected byte stream to or from the agent.
pub trait AgentStream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> AgentStream for T {}

pub type BoxStream = Box<dyn AgentStream>;
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Opens operation connections to a running agent.
pub trait Transport: Send + Sync {
    /// Connects to the agent's operation port.
    fn connect(&self) -> BoxFuture<'_, io::Result<BoxStream>>;
    /// Human description for messages, e.g. `vhost-user vsock via /path/vsock.sock`.
    fn describe(&self) -> String;
}

/// Accepts the agent's control connection when the guest has booted.
pub trait ControlListener: Send {
    fn accept(&mut self) -> BoxFuture<'_, io::Result<BoxStream>>;
}
