//! A layer's tar stream, written deterministically: entries in plan order (sorted paths, parents
//! first), GNU headers with numeric ids only, ownership by a fixed policy, modification times
//! clamped to `SOURCE_DATE_EPOCH` when it is set, hard links within a layer kept as links.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use super::plan::{Entry, LayerPlan};
use super::tree::{Node, NodeKind, Tree};
use super::OciError;

/// Who owns the files in the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OwnerPolicy {
    /// Everything `0:0`: a rootfs built by an unprivileged user belongs to root in the image
    /// (upstream's `--no-preserve=ownership`).
    #[default]
    Root,
    /// The ids the rootfs has (a rootfs staged under fakeroot/pseudo, read under the same).
    Preserve,
}

impl OwnerPolicy {
    pub fn ids(self, uid: u32, gid: u32) -> (u32, u32) {
        match self {
            OwnerPolicy::Root => (0, 0),
            OwnerPolicy::Preserve => (uid, gid),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            OwnerPolicy::Root => "root",
            OwnerPolicy::Preserve => "preserve",
        }
    }
}

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
