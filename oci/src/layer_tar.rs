//! A layer's tar stream, written deterministically: entries in plan order (sorted paths, parents
//! first), GNU headers with numeric ids only, ownership by a fixed policy, modification times
//! clamped to `SOURCE_DATE_EPOCH` when it is set, hard links within a layer kept as links, and
//! extended attributes (file capabilities, `user.*`, …) as PAX `SCHILY.xattr.*` records, sorted
//! by name, the way GNU tar, umoci and the engines' own layer writers carry them.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use super::plan::{Entry, LayerPlan, OwnerPolicy};
use super::tree::{Node, NodeKind, Tree};
use super::xattrs::Xattr;
use super::OciError;

#[derive(Debug, Clone, Copy)]
pub struct TarOptions {
    pub owner: OwnerPolicy,
    /// `SOURCE_DATE_EPOCH`: no entry is newer than this.
    pub clamp_mtime: Option<i64>,
}

impl TarOptions {
    fn mtime(&self, t: i64) -> u64 {
        let t = match self.clamp_mtime {
            Some(c) => t.min(c),
            None => t,
        };
        t.max(0) as u64
    }
}

/// Writes `plan`'s entries as a tar stream into `out` and returns it.
pub fn write_layer<W: Write>(
    plan: &LayerPlan,
    tree: &Tree,
    opts: &TarOptions,
    out: W,
) -> Result<W, OciError> {
    let mut b = tar::Builder::new(out);
    b.follow_symlinks(false);
    // Hard-linked files already written in this layer: (dev, ino) → layer path.
    let mut links: HashMap<(u64, u64), PathBuf> = HashMap::new();
    for entry in &plan.entries {
        let path = entry.layer_path(tree);
        match entry {
            Entry::Rootfs(i) => {
                let node = &tree.nodes[*i];
                write_node(
                    &mut b,
                    node,
                    &tree.root.join(&node.path),
                    &path,
                    opts,
                    &mut links,
                )?;
            }
            Entry::Host { abs, node } => {
                write_node(&mut b, node, abs, &path, opts, &mut links)?;
            }
            Entry::SynthDir(_) => {
                let mut h = header(tar::EntryType::Directory, 0o755, 0, 0, opts.mtime(0));
                append(&mut b, &mut h, &dir_name(&path), io::empty())?;
            }
            Entry::Whiteout(_) => {
                let mut h = header(tar::EntryType::Regular, 0o644, 0, 0, opts.mtime(0));
                append(&mut b, &mut h, &path, io::empty())?;
            }
        }
    }
    b.into_inner().map_err(|e| OciError::io("layer tar", e))
}

fn header(kind: tar::EntryType, mode: u32, uid: u32, gid: u32, mtime: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_uid(uid.into());
    h.set_gid(gid.into());
    h.set_mtime(mtime);
    h.set_size(0);
    h
}

fn dir_name(p: &Path) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push("/");
    PathBuf::from(s)
}

fn append<W: Write, R: Read>(
    b: &mut tar::Builder<W>,
    h: &mut tar::Header,
    path: &Path,
    data: R,
) -> Result<(), OciError> {
    b.append_data(h, path, data)
        .map_err(|e| OciError::io(path, e))
}

fn write_node<W: Write>(
    b: &mut tar::Builder<W>,
    node: &Node,
    abs: &Path,
    path: &Path,
    opts: &TarOptions,
    links: &mut HashMap<(u64, u64), PathBuf>,
) -> Result<(), OciError> {
    let (uid, gid) = opts.owner.ids(node.uid, node.gid);
    let mtime = opts.mtime(node.mtime);
    match &node.kind {
        NodeKind::Dir => {
            append_xattrs(b, abs, path, mtime)?;
            let mut h = header(tar::EntryType::Directory, node.mode, uid, gid, mtime);
            append(b, &mut h, &dir_name(path), io::empty())
        }
        NodeKind::File => {
            if node.nlink > 1 {
                if let Some(first) = links.get(&(node.dev, node.ino)) {
                    let mut h = header(tar::EntryType::Link, node.mode, uid, gid, mtime);
                    return b
                        .append_link(&mut h, path, first)
                        .map_err(|e| OciError::io(path, e));
                }
                links.insert((node.dev, node.ino), path.to_path_buf());
            }
            append_xattrs(b, abs, path, mtime)?;
            let mut h = header(tar::EntryType::Regular, node.mode, uid, gid, mtime);
            h.set_size(node.size);
            let f = File::open(abs).map_err(|e| OciError::io(abs, e))?;
            append(
                b,
                &mut h,
                path,
                Exact {
                    inner: f,
                    left: node.size,
                    path: abs,
                },
            )
        }
        NodeKind::Symlink(target) => {
            append_xattrs(b, abs, path, mtime)?;
            let mut h = header(tar::EntryType::Symlink, 0o777, uid, gid, mtime);
            b.append_link(&mut h, path, target)
                .map_err(|e| OciError::io(path, e))
        }
        NodeKind::CharDevice | NodeKind::BlockDevice | NodeKind::Fifo => {
            let kind = match node.kind {
                NodeKind::CharDevice => tar::EntryType::Char,
                NodeKind::BlockDevice => tar::EntryType::Block,
                _ => tar::EntryType::Fifo,
            };
            append_xattrs(b, abs, path, mtime)?;
            let mut h = header(kind, node.mode, uid, gid, mtime);
            if kind != tar::EntryType::Fifo {
                h.set_device_major(rustix::fs::major(node.rdev))
                    .map_err(|e| OciError::io(path, e))?;
                h.set_device_minor(rustix::fs::minor(node.rdev))
                    .map_err(|e| OciError::io(path, e))?;
            }
            append(b, &mut h, path, io::empty())
        }
    }
}

/// Extended attributes that never belong in an image: the build host's SELinux label, overlayfs'
/// own bookkeeping (an image says "opaque" with a whiteout file, not an xattr), and ACLs
/// (`system.*`, which layer formats carry differently and the engines do not restore).
fn image_xattr(name: &[u8]) -> bool {
    !(name == b"security.selinux"
        || name.starts_with(b"trusted.overlay.")
        || name.starts_with(b"system."))
}

/// The image-worthy extended attributes of `abs` (not following a symlink), sorted by name.
pub fn read_xattrs(abs: &Path) -> Result<Vec<Xattr>, OciError> {
    super::xattrs::read_all(abs, image_xattr).map_err(|e| OciError::io(abs, e))
}

/// Writes the PAX extended header that carries `abs`'s xattrs for the entry `path` that follows;
/// nothing when it has none.
fn append_xattrs<W: Write>(
    b: &mut tar::Builder<W>,
    abs: &Path,
    path: &Path,
    mtime: u64,
) -> Result<(), OciError> {
    let xattrs = read_xattrs(abs)?;
    if xattrs.is_empty() {
        return Ok(());
    }
    let mut data = Vec::new();
    for (name, value) in &xattrs {
        let mut key = b"SCHILY.xattr.".to_vec();
        key.extend_from_slice(name);
        pax_record(&mut data, &key, value);
    }
    let mut h = header(tar::EntryType::XHeader, 0o644, 0, 0, mtime);
    h.set_size(data.len() as u64);
    append(b, &mut h, &pax_header_name(path), &data[..])
}

/// One PAX record, `"LEN KEY=VALUE\n"`, where LEN counts the whole record including its own
/// digits. Values are raw bytes (a capability is binary), as GNU tar writes them.
pub fn pax_record(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    let rest = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = rest + 1;
    loop {
        let with_digits = rest + len.to_string().len();
        if with_digits == len {
            break;
        }
        len = with_digits;
    }
    out.extend_from_slice(format!("{len} ").as_bytes());
    out.extend_from_slice(key);
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
}

/// The extended header's own name: readers ignore it; short, so it needs no long-name entry,
/// and derived from the entry's name, so the layer stays reproducible.
fn pax_header_name(path: &Path) -> PathBuf {
    use std::os::unix::ffi::OsStrExt;
    let base = path.file_name().map_or(&b""[..], |n| n.as_bytes());
    let mut name = b"PaxHeaders/".to_vec();
    name.extend_from_slice(&base[..base.len().min(80)]);
    PathBuf::from(std::ffi::OsStr::from_bytes(&name))
}

/// Reads exactly the size the scan saw: a file that shrank or grew since is an error, not a
/// corrupt archive.
struct Exact<'a> {
    inner: File,
    left: u64,
    path: &'a Path,
}

impl Read for Exact<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            let mut probe = [0u8; 1];
            if self.inner.read(&mut probe)? != 0 {
                return Err(changed(self.path));
            }
            return Ok(0);
        }
        let want = buf.len().min(self.left.min(usize::MAX as u64) as usize);
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(changed(self.path));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

fn changed(path: &Path) -> io::Error {
    io::Error::other(format!(
        "{} changed size while the layer was being written",
        path.display()
    ))
}
