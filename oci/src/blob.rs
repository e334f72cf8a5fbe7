//! Reading the blobs of an OCI layout someone else wrote, by one rule for every reader (layout
//! validation, platform selection, base images, index assembly, fetched images):
//!
//! - a digest names a blob only as `sha256:` and 64 lower-case hex digits, so no digest can name
//!   a path outside `blobs/sha256/` (and none aliases another by case);
//! - JSON (index, manifest, config) is read up to [`MAX_JSON`] bytes and refused beyond, so a
//!   hostile layout cannot make a reader allocate what it likes.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use oci_spec::image::Descriptor;

use crate::OciError;

/// The most JSON one index, manifest or config may hold. Real ones are a few KiB; an image
/// config with a long history stays well under 1 MiB.
pub const MAX_JSON: u64 = 4 * 1024 * 1024;

/// Why a blob could not be located or read.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("unsupported digest {0}")]
    BadDigest(String),
    #[error("larger than {MAX_JSON} bytes")]
    TooLarge,
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// The 64 lower-case hex digits of a `sha256:` digest; `None` for any other digest.
pub fn sha256_hex(digest: &str) -> Option<&str> {
    digest.strip_prefix("sha256:").filter(|h| {
        h.len() == 64
            && h.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// Where the blob `d` names lives in the layout at `root` (whether it exists is the caller's
/// question).
pub fn blob_path(root: &Path, d: &Descriptor) -> Result<PathBuf, BlobError> {
    let digest = d.digest().to_string();
    let hex = sha256_hex(&digest).ok_or_else(|| BlobError::BadDigest(digest.clone()))?;
    Ok(root.join("blobs").join("sha256").join(hex))
}

/// The bytes of a JSON file of a layout, at most [`MAX_JSON`] of them.
pub fn read_json_bytes(path: &Path) -> Result<Vec<u8>, BlobError> {
    let mut bytes = Vec::new();
    File::open(path)?
        .take(MAX_JSON + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_JSON {
        return Err(BlobError::TooLarge);
    }
    Ok(bytes)
}

/// A JSON file of a layout, parsed: the builder's readers (base images, index assembly) report
/// any failure as an [`OciError`] naming the file.
pub(crate) fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, OciError> {
    let bytes = read_json_bytes(path).map_err(|e| match e {
        BlobError::Io(e) => OciError::io(path, e),
        other => OciError::Invalid(format!("{}: {other}", path.display())),
    })?;
    serde_json::from_slice(&bytes)
        .map_err(|e| OciError::Invalid(format!("{}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_lower_case_sha256_digests_name_a_blob() {
        let hex = "a".repeat(64);
        assert_eq!(sha256_hex(&format!("sha256:{hex}")), Some(hex.as_str()));
        for bad in [
            format!("sha256:{}", "A".repeat(64)),
            format!("sha256:{}", "a".repeat(63)),
            format!("sha256:{}/..", "a".repeat(61)),
            format!("sha512:{hex}"),
            hex.clone(),
        ] {
            assert_eq!(sha256_hex(&bad), None, "{bad}");
        }
    }

    #[test]
    fn json_beyond_the_cap_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("index.json");
        std::fs::write(&p, vec![b' '; MAX_JSON as usize + 1]).expect("write");
        assert!(matches!(read_json_bytes(&p), Err(BlobError::TooLarge)));
        std::fs::write(&p, b"{}").expect("write");
        assert_eq!(read_json_bytes(&p).expect("small"), b"{}");
    }
}
