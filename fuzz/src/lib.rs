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
    // memchr's searcher, not `windows().position(==)`: every slice comparison would be a bcmp
    // that libFuzzer intercepts and records, and that was most of a run's time.
    let mut out = Vec::new();
    let mut start = 0;
    for i in memchr::memmem::find_iter(data, SEPARATOR) {
        if i >= start {
            out.push(&data[start..i]);
            start = i + SEPARATOR.len();
        }
    }
    out.push(&data[start..]);
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
    let n = parts.len();
    let mut out: Vec<Vec<u8>> = vec![Vec::new(); n];
    // (digest, size) of each resolved part j ≤ 9, filled from the back.
    let mut refs: Vec<Option<(String, String)>> = vec![None; n];
    for i in (0..n).rev() {
        out[i] = substitute(parts[i], |kind, j| {
            let j = usize::from(j);
            if j <= i || j >= n.min(10) {
                return None;
            }
            let (digest, size) = refs[j].as_ref()?;
            Some(if kind == b'D' { digest } else { size })
        });
        if i < 10 {
            refs[i] = Some((
                format!("sha256:{}", sha256_hex(&out[i])),
                out[i].len().to_string(),
            ));
        }
    }
    out
}

/// `part` with every `@D<digit>`/`@S<digit>` that `value(kind, digit)` knows replaced by it, in
/// one pass: a replacement is never read again, so it cannot complete another placeholder.
fn substitute<'a>(part: &[u8], value: impl Fn(u8, u8) -> Option<&'a String>) -> Vec<u8> {
    let mut out = Vec::with_capacity(part.len());
    let mut copied = 0;
    for at in memchr::memchr_iter(b'@', part) {
        if at < copied {
            continue;
        }
        let (Some(&kind), Some(&digit)) = (part.get(at + 1), part.get(at + 2)) else {
            continue;
        };
        if !(kind == b'D' || kind == b'S') || !digit.is_ascii_digit() {
            continue;
        }
        if let Some(v) = value(kind, digit - b'0') {
            out.extend_from_slice(&part[copied..at]);
            out.extend_from_slice(v.as_bytes());
            copied = at + 3;
        }
    }
    out.extend_from_slice(&part[copied..]);
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
        // Most runs leave removable trees: walk the tree fixing modes only when removal fails.
        if fs::remove_dir_all(&self.root).is_err() && self.root.exists() {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_split_at_every_separator() {
        let sep = std::str::from_utf8(SEPARATOR).expect("utf8");
        let data = format!("a{sep}{sep}b{sep}");
        assert_eq!(split_parts(data.as_bytes()), [&b"a"[..], b"", b"b", b""]);
        assert_eq!(split_parts(b"plain"), [&b"plain"[..]]);
    }

    #[test]
    fn placeholders_name_later_parts_only() {
        let parts: [&[u8]; 3] = [b"@D1 @S1 @D2 @D0 @X1 @D", b"{@D2} @S2", b"blob"];
        let out = resolve_parts(&parts);
        let blob = format!("sha256:{}", sha256_hex(b"blob"));
        assert_eq!(out[2], b"blob");
        assert_eq!(out[1], format!("{{{blob}}} 4").as_bytes());
        let one = format!("sha256:{}", sha256_hex(&out[1]));
        assert_eq!(
            out[0],
            format!("{one} {} {blob} @D0 @X1 @D", out[1].len()).as_bytes()
        );
    }
}
