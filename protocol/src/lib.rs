//! The wire protocol between the vcontainer host driver and the guest agent.
//!
//! Every connection carries frames: a `u32` little-endian payload length followed by a postcard
//! encoded message. The host sends [`HostMsg`], the agent sends [`AgentMsg`]. The agent speaks
//! first on every connection with [`AgentMsg::Hello`], so a version mismatch is found before any
//! work starts.
//!
//! Connections:
//! * **control** — the agent dials the host on [`CONTROL_PORT`] when the guest has booted, sends
//!   `Hello`, receives a [`BootConfig`], and answers [`AgentMsg::Ready`] once the engine runs.
//!   The host never polls a booting guest.
//! * **operation** — the host opens one connection to [`OPERATION_PORT`] per operation and sends one
//!   [`Request`]. Closing the connection cancels the operation.
//!
//! Bulk data travels as [`HostMsg::Data`]/[`AgentMsg::Data`] chunks and every stream ends with an
//! explicit end frame ([`StreamEnd`]: byte count + sha256) that the receiver checks with
//! [`StreamDigest`]. A half-closed connection is never taken as end of stream.
//!
//! This crate does no I/O policy of its own: it reads and writes frames on whatever `Read`/`Write`
//! (or, with the `tokio` feature, `AsyncRead`/`AsyncWrite`) it is given.

mod bytes;
mod digest;
mod engine;
mod error;
mod frame;
pub mod guest_image;
mod messages;

#[doc(hidden)]
pub mod fuzzing;
#[doc(hidden)]
pub mod seeds;

pub use digest::{StreamDigest, StreamEnd};
pub use engine::{EngineKind, StorageDriver};
pub use error::ProtocolError;
pub use frame::{decode_payload, encode_frame, read_frame, write_frame, FrameHeader};
#[cfg(feature = "tokio")]
pub use frame::{read_frame_async, write_frame_async};
pub use messages::*;

/// Version of the wire format. Bump on any incompatible change to the messages below.
pub const PROTOCOL_VERSION: u32 = 4;

/// vsock port the host listens on for the agent's control connection.
pub const CONTROL_PORT: u32 = 1024;

/// vsock port the agent listens on for operation connections.
pub const OPERATION_PORT: u32 = 1025;

/// Hard upper bound of one frame's payload. Anything larger is a protocol error and is never
/// allocated.
pub const MAX_FRAME_LEN: usize = 1024 * 1024 + 1024;

/// Size of the data chunks senders use for bulk streams (well below [`MAX_FRAME_LEN`]).
pub const DATA_CHUNK_LEN: usize = 256 * 1024;
