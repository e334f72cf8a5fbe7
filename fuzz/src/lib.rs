//! Helpers shared by the fuzz targets: turning one fuzz input into files on disk (an OCI layout,
//! layer blobs) and cleaning up between runs. The on-disk formats are what the host reads from
//! files and from the guest; see `README.md` for each target's input format.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// Separates the parts of a multi-file input (index.json, blobs, layers).
pub const SEPARATOR: &[u8] = b"\n--8<--\n";

/// `data` split at every [`SEPARATOR`].
pub fn split_parts(data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut rest = data;
    while let Some(i) = find(rest, SEPARATOR) {
        out.push(&rest[..i]);
        rest = &rest[i + SEPARATOR.len()..];
    }
    out.push(rest);
    out
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn replace_all(hay: &[u8], needle: &[u8], with: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(hay.len());
    let mut rest = hay;
    while let Some(i) = find(rest, needle) {
        out.extend_from_slice(&rest[..i]);
        out.extend_from_slice(with);
        rest = &rest[i + needle.len()..];
    }
    out.extend_from_slice(rest);
    out
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Resolves the placeholders of a layout input: in part `i`, `@D<j>` becomes `sha256:<hex>` and
/// `@S<j>` the size of part `j` (resolved itself), for `i < j ≤ 9`. Later parts are resolved
/// first, so an index can name a manifest that names a config and layers, and every digest
/// matches without the fuzzer having to compute sha256.
pub fn resolve_parts(parts: &[&[u8]]) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = parts.iter().map(|p| p.to_vec()).collect();
    for i in (0..out.len()).rev() {
        for j in (i + 1..out.len().min(10)).rev() {
            let digest = format!("sha256:{}", sha256_hex(&out[j]));
            let size = out[j].len().to_string();
            let d = replace_all(&out[i], format!("@D{j}").as_bytes(), digest.as_bytes());
            out[i] = replace_all(&d, format!("@S{j}").as_bytes(), size.as_bytes());
        }
    }
    out
}

/// Writes an OCI layout at `root` (which must not exist) from a layout input: part 0 is
/// `index.json`, every further part a blob under `blobs/sha256/<its digest>`.
pub fn write_layout(root: &Path, data: &[u8]) -> io::Result<()> {
    let parts = resolve_parts(&split_parts(data));
    let blobs = root.join("blobs/sha256");
    fs::create_dir_all(&blobs)?;
    fs::write(
        root.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )?;
    fs::write(root.join("index.json"), &parts[0])?;
    for p in &parts[1..] {
        fs::write(blobs.join(sha256_hex(p)), p)?;
    }
    Ok(())
}

/// A scratch directory for one fuzz process, removed and recreated empty by [`Scratch::reset`].
pub struct Scratch {
    pub root: PathBuf,
}

impl Scratch {
    /// `$TMPDIR/vcontainer-fuzz-<name>-<pid>`: one per process, so parallel jobs do not collide.
    pub fn new(name: &str) -> Scratch {
        let root =
            std::env::temp_dir().join(format!("vcontainer-fuzz-{name}-{}", std::process::id()));
        let s = Scratch { root };
        s.reset();
        s
    }

    /// Empties the scratch directory (whatever modes the previous run left).
    pub fn reset(&self) {
        if self.root.exists() {
            make_removable(&self.root);
            fs::remove_dir_all(&self.root).expect("scratch directory removable");
        }
        fs::create_dir_all(&self.root).expect("scratch directory");
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        make_removable(&self.root);
        let _ = fs::remove_dir_all(&self.root);
    }
}

/// Gives the owner rwx on every directory below `dir` (symlinks are not followed).
pub fn make_removable(dir: &Path) {
    if let Ok(m) = fs::symlink_metadata(dir) {
        if m.is_dir() {
            let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o700));
            if let Ok(rd) = fs::read_dir(dir) {
                for e in rd.flatten() {
                    make_removable(&e.path());
                }
            }
        }
    }
}
