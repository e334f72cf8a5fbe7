//! Framing: `u32` little-endian payload length, then the postcard payload.
//!
//! The length is checked against [`MAX_FRAME_LEN`] before anything is allocated, so a hostile peer
//! cannot make the reader allocate what it declares.

use std::io::{Read, Write};

use serde::{de::DeserializeOwned, Serialize};

use crate::{ProtocolError, MAX_FRAME_LEN};

/// The 4-byte frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    pub len: usize,
}

impl FrameHeader {
    /// Parses and bounds-checks a header.
    pub fn parse(bytes: [u8; 4]) -> Result<Self, ProtocolError> {
        let len = u32::from_le_bytes(bytes) as usize;
        if len > MAX_FRAME_LEN {
            return Err(ProtocolError::FrameTooLarge {
                len,
                max: MAX_FRAME_LEN,
            });
        }
        Ok(Self { len })
    }
}

/// Encodes one message as a complete frame (header + payload).
pub fn encode_frame<T: Serialize>(msg: &T) -> Result<Vec<u8>, ProtocolError> {
    let mut buf = vec![0u8; 4];
    let mut buf = postcard::to_extend(msg, std::mem::take(&mut buf))?;
    let len = buf.len() - 4;
    if len > MAX_FRAME_LEN {
        return Err(ProtocolError::FrameTooLarge {
            len,
            max: MAX_FRAME_LEN,
        });
    }
    buf[..4].copy_from_slice(&(len as u32).to_le_bytes());
    Ok(buf)
}

/// Decodes a frame payload; trailing bytes after the message are rejected.
pub fn decode_payload<T: DeserializeOwned>(payload: &[u8]) -> Result<T, ProtocolError> {
    let (msg, rest) = postcard::take_from_bytes(payload)?;
    if !rest.is_empty() {
        return Err(ProtocolError::Malformed(
            postcard::Error::DeserializeBadEncoding,
        ));
    }
    Ok(msg)
}

/// Writes one frame and flushes.
pub fn write_frame<W: Write, T: Serialize>(w: &mut W, msg: &T) -> Result<(), ProtocolError> {
    w.write_all(&encode_frame(msg)?)?;
    w.flush()?;
    Ok(())
}

/// Reads one frame. A clean end of stream before the header is [`ProtocolError::Closed`]; inside
/// a frame it is [`ProtocolError::Truncated`].
pub fn read_frame<R: Read, T: DeserializeOwned>(r: &mut R) -> Result<T, ProtocolError> {
    let mut header = [0u8; 4];
    read_exact_or(r, &mut header, true)?;
    let header = FrameHeader::parse(header)?;
    let mut payload = vec![0u8; header.len];
    read_exact_or(r, &mut payload, false)?;
    decode_payload(&payload)
}

fn read_exact_or<R: Read>(r: &mut R, buf: &mut [u8], at_start: bool) -> Result<(), ProtocolError> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) if filled == 0 && at_start => return Err(ProtocolError::Closed),
            Ok(0) => return Err(ProtocolError::Truncated),
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

#[cfg(feature = "tokio")]
mod async_io {
    use serde::{de::DeserializeOwned, Serialize};
    use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

    use super::{decode_payload, encode_frame, FrameHeader};
    use crate::ProtocolError;

    /// Writes one frame and flushes.
    pub async fn write_frame_async<W, T>(w: &mut W, msg: &T) -> Result<(), ProtocolError>
    where
        W: AsyncWrite + Unpin,
        T: Serialize,
    {
        w.write_all(&encode_frame(msg)?).await?;
        w.flush().await?;
        Ok(())
    }

    /// Reads one frame; see [`super::read_frame`] for the end-of-stream rules.
    pub async fn read_frame_async<R, T>(r: &mut R) -> Result<T, ProtocolError>
    where
        R: AsyncRead + Unpin,
        T: DeserializeOwned,
    {
        let mut header = [0u8; 4];
        let mut filled = 0;
        while filled < 4 {
            match r.read(&mut header[filled..]).await? {
                0 if filled == 0 => return Err(ProtocolError::Closed),
                0 => return Err(ProtocolError::Truncated),
                n => filled += n,
            }
        }
        let header = FrameHeader::parse(header)?;
        let mut payload = vec![0u8; header.len];
        r.read_exact(&mut payload).await.map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                ProtocolError::Truncated
            } else {
                e.into()
            }
        })?;
        decode_payload(&payload)
    }
}

#[cfg(feature = "tokio")]
pub use async_io::{read_frame_async, write_frame_async};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AgentMsg, ExecRequest, ExitStatus, HostMsg, Request, StreamDigest};

    fn roundtrip<T>(msg: &T) -> T
    where
        T: Serialize + DeserializeOwned,
    {
        let bytes = encode_frame(msg).expect("encode");
        read_frame(&mut &bytes[..]).expect("decode")
    }

    #[test]
    fn messages_roundtrip() {
        let req = HostMsg::Request(Request::Exec(ExecRequest {
            argv: vec!["sh".into(), "-c".into(), "echo 'a b' \"$X\"".into()],
            env: vec![("X".into(), "y z".into())],
            cwd: Some("/".into()),
            stdin: true,
            engine: false,
            tty: Some(crate::WindowSize {
                rows: 40,
                cols: 120,
            }),
        }));
        assert_eq!(roundtrip(&req), req);
        let mut d = StreamDigest::new();
        d.update(b"abc");
        let end = AgentMsg::End(d.finish());
        assert_eq!(roundtrip(&end), end);
        let exit = AgentMsg::Exited(ExitStatus::Signal(9));
        assert_eq!(roundtrip(&exit), exit);
    }

    #[test]
    fn oversized_header_is_rejected_without_allocating() {
        let bytes = (u32::MAX).to_le_bytes();
        let err = read_frame::<_, HostMsg>(&mut &bytes[..]).expect_err("too large");
        assert!(matches!(err, ProtocolError::FrameTooLarge { .. }), "{err}");
    }

    #[test]
    fn end_of_stream_is_closed_or_truncated() {
        let empty: &[u8] = &[];
        assert!(matches!(
            read_frame::<_, HostMsg>(&mut &empty[..]),
            Err(ProtocolError::Closed)
        ));
        let bytes = encode_frame(&HostMsg::Data(vec![1; 100])).expect("encode");
        assert!(matches!(
            read_frame::<_, HostMsg>(&mut &bytes[..50]),
            Err(ProtocolError::Truncated)
        ));
        assert!(matches!(
            read_frame::<_, HostMsg>(&mut &bytes[..2]),
            Err(ProtocolError::Truncated)
        ));
    }

    #[test]
    fn garbage_and_trailing_bytes_are_malformed() {
        // Variant index 200 does not exist.
        let mut bytes = vec![1, 0, 0, 0, 200];
        assert!(matches!(
            read_frame::<_, HostMsg>(&mut &bytes[..]),
            Err(ProtocolError::Malformed(_))
        ));
        // A valid Ack followed by a stray byte inside the same frame.
        bytes = vec![2, 0, 0, 0, 7, 0];
        assert!(matches!(
            read_frame::<_, HostMsg>(&mut &bytes[..]),
            Err(ProtocolError::Malformed(_))
        ));
    }

    #[test]
    fn encoder_refuses_frames_over_the_limit() {
        let err = encode_frame(&HostMsg::Data(vec![0; crate::MAX_FRAME_LEN + 1])).expect_err("big");
        assert!(matches!(err, ProtocolError::FrameTooLarge { .. }));
    }

    #[tokio::test]
    async fn async_roundtrip() {
        let (mut a, mut b) = tokio::io::duplex(64);
        let msg = AgentMsg::Stdout(vec![7; 1000]);
        let sent = msg.clone();
        let writer = tokio::spawn(async move { write_frame_async(&mut a, &sent).await });
        let got: AgentMsg = read_frame_async(&mut b).await.expect("read");
        writer.await.expect("join").expect("write");
        assert_eq!(got, msg);
    }
}
