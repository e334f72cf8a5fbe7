//! Host-side check of an OCI image layout before anything is sent to the guest: a missing blob or
//! a digest mismatch is reported here, with the file that is wrong, instead of as an engine error.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use oci_spec::image::{Descriptor, ImageIndex, ImageManifest, MediaType};
use sha2::{Digest as _, Sha256};

use crate::blob::{self, BlobError, MAX_JSON};

#[derive(Debug, thiserror::Error)]
pub enum OciLayoutError {
    #[error("{0} does not exist")]
    Missing(PathBuf),
    #[error("{0} is not an OCI image layout: it has no 'oci-layout' file (expected oci-layout, index.json and blobs/)")]
    NotALayout(PathBuf),
    #[error("{path} is malformed: {reason}")]
    Malformed { path: PathBuf, reason: String },
    #[error("{path}: the layout names blob {digest}, which is missing")]
    MissingBlob { path: PathBuf, digest: String },
    #[error("blob {digest} is corrupt: expected {expected_size} bytes with that sha256, found {actual_size} bytes with sha256:{actual}")]
    DigestMismatch {
        digest: String,
        expected_size: u64,
        actual_size: u64,
        actual: String,
    },
    #[error("unsupported digest '{0}' (only sha256 is supported)")]
    BadDigest(String),
    #[error("{path} lists no images")]
    Empty { path: PathBuf },
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

/// What the check found.
#[derive(Debug, Clone)]
pub struct ValidatedLayout {
    pub root: PathBuf,
    pub manifests: usize,
    pub blobs: usize,
    pub total_bytes: u64,
}

/// Checks `root`: the layout marker, `index.json`, and every blob reachable from it (size and
/// sha256), following nested indexes.
pub fn validate_oci_layout(root: &Path) -> Result<ValidatedLayout, OciLayoutError> {
    if !root.exists() {
        return Err(OciLayoutError::Missing(root.to_path_buf()));
    }
    if !root.join("oci-layout").is_file() {
        return Err(OciLayoutError::NotALayout(root.to_path_buf()));
    }
    let index_path = root.join("index.json");
    let index = parse_index(&index_path, &read_limited(&index_path)?)?;
    if index.manifests().is_empty() {
        return Err(OciLayoutError::Empty { path: index_path });
    }
    let mut v = ValidatedLayout {
        root: root.to_path_buf(),
        manifests: 0,
        blobs: 0,
        total_bytes: 0,
    };
    for d in index.manifests() {
        check_descriptor_tree(root, &index_path, d, &mut v, 0)?;
    }
    Ok(v)
}

const MAX_NESTING: usize = 4;

fn check_descriptor_tree(
    root: &Path,
    referrer: &Path,
    d: &Descriptor,
    v: &mut ValidatedLayout,
    depth: usize,
) -> Result<(), OciLayoutError> {
    let path = blob_path(root, referrer, d)?;
    let bytes = verify_blob(&path, d)?;
    v.blobs += 1;
    v.total_bytes += d.size();
    match d.media_type() {
        MediaType::ImageIndex if depth < MAX_NESTING => {
            let bytes = bytes.unwrap_or_default();
            let nested = parse_index(&path, &bytes)?;
            for child in nested.manifests() {
                check_descriptor_tree(root, &path, child, v, depth + 1)?;
            }
        }
        MediaType::ImageManifest | MediaType::Other(_) => {
            let bytes = bytes.unwrap_or_default();
            let manifest: ImageManifest =
                serde_json::from_slice(&bytes).map_err(|e| OciLayoutError::Malformed {
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
            v.manifests += 1;
            for blob in std::iter::once(manifest.config()).chain(manifest.layers()) {
                let p = blob_path(root, &path, blob)?;
                verify_blob(&p, blob)?;
                v.blobs += 1;
                v.total_bytes += blob.size();
            }
        }
        _ => {}
    }
    Ok(())
}

fn parse_index(path: &Path, bytes: &[u8]) -> Result<ImageIndex, OciLayoutError> {
    serde_json::from_slice(bytes).map_err(|e| OciLayoutError::Malformed {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// `blobs/sha256/<64 hex>`; any other digest shape is refused, so a digest can never name a path
/// outside `blobs/`.
fn blob_path(root: &Path, referrer: &Path, d: &Descriptor) -> Result<PathBuf, OciLayoutError> {
    let digest = d.digest().to_string();
    let path = blob::blob_path(root, d).map_err(|_| OciLayoutError::BadDigest(digest.clone()))?;
    if !path.is_file() {
        return Err(OciLayoutError::MissingBlob {
            path: referrer.to_path_buf(),
            digest,
        });
    }
    Ok(path)
}

/// Hashes the blob; returns its bytes when it is small enough to be JSON we must parse.
fn verify_blob(path: &Path, d: &Descriptor) -> Result<Option<Vec<u8>>, OciLayoutError> {
    let io_err = |source| OciLayoutError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = File::open(path).map_err(io_err)?;
    let keep = d.size() <= MAX_JSON;
    let mut kept = Vec::new();
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = file.read(&mut buf).map_err(io_err)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        size += n as u64;
        if keep && size <= MAX_JSON {
            kept.extend_from_slice(&buf[..n]);
        }
    }
    let actual = hex::encode(hasher.finalize());
    let digest = d.digest().to_string();
    if size != d.size() || digest.strip_prefix("sha256:") != Some(actual.as_str()) {
        return Err(OciLayoutError::DigestMismatch {
            digest,
            expected_size: d.size(),
            actual_size: size,
            actual,
        });
    }
    Ok(keep.then_some(kept))
}

fn read_limited(path: &Path) -> Result<Vec<u8>, OciLayoutError> {
    blob::read_json_bytes(path).map_err(|e| match e {
        BlobError::Io(source) => OciLayoutError::Io {
            path: path.to_path_buf(),
            source,
        },
        other => OciLayoutError::Malformed {
            path: path.to_path_buf(),
            reason: other.to_string(),
        },
    })
}
