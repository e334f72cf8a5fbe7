use thiserror::Error;

/// Everything that can go wrong while reading or checking frames.
#[derive(Debug, Error)]
pub enum ProtocolError {
    #[error("connection closed by peer")]
    Closed,
    #[error("connection closed in the middle of a frame")]
    Truncated,
    #[error("frame of {len} bytes exceeds the maximum of {max} bytes")]
    FrameTooLarge { len: usize, max: usize },
    #[error("malformed frame: {0}")]
    Malformed(#[from] postcard::Error),
    #[error("unexpected message: expected {expected}, got {got}")]
    Unexpected { expected: &'static str, got: String },
    #[error(
        "protocol version mismatch: host speaks version {host}, agent {agent_version} speaks version {agent}; \
         rebuild the guest image so host and agent match: `vcontainer image build` (with `--out DIR` for an image directory), or for a root filesystem of your own `vcontainer image add-agent --rootfs DIR -a ARCH` and repack it"
    )]
    VersionMismatch {
        host: u32,
        agent: u32,
        agent_version: String,
    },
    #[error("stream digest mismatch: received {received_bytes} bytes with sha256 {received}, sender declared {declared_bytes} bytes with sha256 {declared}")]
    DigestMismatch {
        received_bytes: u64,
        received: String,
        declared_bytes: u64,
        declared: String,
    },
    #[error("stream exceeded its limit of {limit} bytes")]
    StreamTooLarge { limit: u64 },
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}
