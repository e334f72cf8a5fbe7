//! Stream integrity: every bulk stream ends with a [`StreamEnd`] that the receiver checks.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::ProtocolError;

/// The explicit end of a data stream: how many bytes were sent and their sha256.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamEnd {
    pub bytes: u64,
    pub sha256: [u8; 32],
}

impl StreamEnd {
    pub fn sha256_hex(&self) -> String {
        hex::encode(self.sha256)
    }
}

/// Running byte count and sha256 of a stream, kept by both sender and receiver.
#[derive(Clone, Default)]
pub struct StreamDigest {
    bytes: u64,
    hasher: Sha256,
}

impl StreamDigest {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn update(&mut self, chunk: &[u8]) {
        self.bytes += chunk.len() as u64;
        self.hasher.update(chunk);
    }

    /// Adds `chunk`, failing once the stream has grown past `limit` bytes.
    pub fn update_capped(&mut self, chunk: &[u8], limit: u64) -> Result<(), ProtocolError> {
        if self.bytes.saturating_add(chunk.len() as u64) > limit {
            return Err(ProtocolError::StreamTooLarge { limit });
        }
        self.update(chunk);
        Ok(())
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The end frame a sender sends after the last chunk.
    pub fn finish(self) -> StreamEnd {
        StreamEnd {
            bytes: self.bytes,
            sha256: self.hasher.finalize().into(),
        }
    }

    /// Checks the sender's end frame against what was received.
    pub fn verify(self, declared: &StreamEnd) -> Result<StreamEnd, ProtocolError> {
        let received = self.finish();
        if received == *declared {
            Ok(received)
        } else {
            Err(ProtocolError::DigestMismatch {
                received_bytes: received.bytes,
                received: received.sha256_hex(),
                declared_bytes: declared.bytes,
                declared: declared.sha256_hex(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matching_stream_verifies() {
        let mut tx = StreamDigest::new();
        let mut rx = StreamDigest::new();
        for chunk in [&b"hello "[..], b"world"] {
            tx.update(chunk);
            rx.update(chunk);
        }
        let end = tx.finish();
        assert_eq!(end.bytes, 11);
        assert_eq!(
            end.sha256_hex(),
            "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"
        );
        assert_eq!(rx.verify(&end).expect("verifies"), end);
    }

    #[test]
    fn corrupted_or_truncated_stream_is_rejected() {
        let mut tx = StreamDigest::new();
        tx.update(b"hello world");
        let end = tx.finish();

        let mut corrupted = StreamDigest::new();
        corrupted.update(b"hello worle");
        assert!(matches!(
            corrupted.verify(&end),
            Err(ProtocolError::DigestMismatch { .. })
        ));

        let mut truncated = StreamDigest::new();
        truncated.update(b"hello");
        let err = truncated.verify(&end).expect_err("short stream");
        assert!(err.to_string().contains("received 5 bytes"), "{err}");
    }

    #[test]
    fn cap_is_enforced() {
        let mut d = StreamDigest::new();
        d.update_capped(&[0; 10], 16).expect("under the cap");
        assert!(matches!(
            d.update_capped(&[0; 10], 16),
            Err(ProtocolError::StreamTooLarge { limit: 16 })
        ));
    }
}
