//! A scan of the target rootfs: every entry (never following symlinks), in a fixed depth-first
//! order with names sorted bytewise, so that the layers written from it are the same from one
//! build to the next. Paths named in layer specs and package lists are resolved inside the rootfs
//! (symlinks followed relative to the rootfs, never out of it; loops are an error).

use std::collections::{HashMap, VecDeque};
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Component, Path, PathBuf};

use super::OciError;

/// Symlink hops allowed while resolving one path (Linux allows 40).
const MAX_HOPS: usize = 40;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeKind {
    Dir,
    File,
    Symlink(PathBuf),
    CharDevice,
    BlockDevice,
    Fifo,
}

/// One rootfs entry, with what a layer needs of its metadata.
#[derive(Debug, Clone)]
pub struct Node {
    /// Relative to the rootfs (no leading `/`).
    pub path: PathBuf,
    pub kind: NodeKind,
    /// Permission bits including setuid/setgid/sticky.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub mtime: i64,
    pub dev: u64,
    pub ino: u64,
    pub nlink: u64,
    pub rdev: u64,
    /// Index one past this node's subtree in [`Tree::nodes`] (itself + descendants).
    pub end: usize,
}

impl Node {
    /// Reads `abs`'s metadata (not following a symlink) as a node at `rel`.
    pub fn from_path(abs: &Path, rel: PathBuf) -> Result<Option<Node>, OciError> {
        let md = fs::symlink_metadata(abs).map_err(|e| OciError::io(abs, e))?;
        let ft = md.file_type();
        let kind = if ft.is_dir() {
            NodeKind::Dir
        } else if ft.is_file() {
            NodeKind::File
        } else if ft.is_symlink() {
            NodeKind::Symlink(fs::read_link(abs).map_err(|e| OciError::io(abs, e))?)
        } else if ft.is_char_device() {
            NodeKind::CharDevice
        } else if ft.is_block_device() {
            NodeKind::BlockDevice
        } else if ft.is_fifo() {
            NodeKind::Fifo
        } else {
            // Sockets: a live socket in a rootfs is an accident of the build; images carry none.
            return Ok(None);
        };
        Ok(Some(Node {
            path: rel,
            size: if kind == NodeKind::File { md.len() } else { 0 },
            kind,
            mode: md.mode() & 0o7777,
            uid: md.uid(),
            gid: md.gid(),
            mtime: md.mtime(),
            dev: md.dev(),
            ino: md.ino(),
            nlink: md.nlink(),
            rdev: md.rdev(),
            end: 0,
        }))
    }
}

/// The scanned rootfs.
#[derive(Debug)]
pub struct Tree {
    pub root: PathBuf,
    pub nodes: Vec<Node>,
    index: HashMap<PathBuf, usize>,
    /// E.g. sockets left out.
    pub warnings: Vec<String>,
}

impl Tree {
    /// Scans `root` (which must be a directory).
    pub fn scan(root: &Path) -> Result<Tree, OciError> {
        let md = fs::metadata(root).map_err(|e| OciError::io(root, e))?;
        if !md.is_dir() {
            return Err(OciError::Invalid(format!(
                "{}: the rootfs must be a directory",
                root.display()
            )));
        }
        let mut tree = Tree {
            root: root.to_path_buf(),
            nodes: Vec::new(),
            index: HashMap::new(),
            warnings: Vec::new(),
        };
        tree.scan_dir(Path::new(""))?;
        tree.index = tree
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.path.clone(), i))
            .collect();
        Ok(tree)
    }

    fn scan_dir(&mut self, rel: &Path) -> Result<(), OciError> {
        let abs = self.root.join(rel);
        let mut names: Vec<_> = fs::read_dir(&abs)
            .map_err(|e| OciError::io(&abs, e))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()
            .map_err(|e| OciError::io(&abs, e))?;
        names.sort_by(|a, b| a.as_encoded_bytes().cmp(b.as_encoded_bytes()));
        for name in names {
            let child = rel.join(&name);
            let Some(node) = Node::from_path(&abs.join(&name), child.clone())? else {
                self.warnings
                    .push(format!("left out /{} (a socket)", child.display()));
                continue;
            };
            let at = self.nodes.len();
            let is_dir = node.kind == NodeKind::Dir;
            self.nodes.push(node);
            if is_dir {
                self.scan_dir(&child)?;
            }
            self.nodes[at].end = self.nodes.len();
        }
        Ok(())
    }

    pub fn get(&self, rel: &Path) -> Option<usize> {
        self.index.get(rel).copied()
    }

    /// The nodes a spec path names: the entry itself and, if it is a symlink, what it resolves
    /// to; symlinks in the middle of the path are followed (inside the rootfs) and named too, so
    /// the path works in the image. `Ok(None)` if the path does not exist.
    pub fn resolve(&self, rel: &Path) -> Result<Option<Vec<usize>>, OciError> {
        let mut named = Vec::new();
        let Some(last) = self.walk(rel, false, &mut named)? else {
            return Ok(None);
        };
        named.push(last);
        if let NodeKind::Symlink(_) = self.nodes[last].kind {
            if let Some(target) = self.walk(rel, true, &mut named)? {
                named.push(target);
            }
        }
        named.sort_unstable();
        named.dedup();
        Ok(Some(named))
    }

    /// The node at `rel`, following symlinks in the middle of the path but not the last one
    /// (package lists name `/bin/ls` where `bin` may be a symlink to `usr/bin`).
    pub fn locate(&self, rel: &Path) -> Result<Option<usize>, OciError> {
        if let Some(i) = self.get(rel) {
            return Ok(Some(i));
        }
        self.walk(rel, false, &mut Vec::new())
    }

    /// Where `rel` ends up with every symlink followed (inside the rootfs).
    pub fn follow(&self, rel: &Path) -> Result<Option<usize>, OciError> {
        self.walk(rel, true, &mut Vec::new())
    }

    /// Walks `rel` from the root; symlinks in the middle are followed (and recorded in `via`),
    /// the last component only if `follow_last`.
    fn walk(
        &self,
        rel: &Path,
        follow_last: bool,
        via: &mut Vec<usize>,
    ) -> Result<Option<usize>, OciError> {
        let mut rest: VecDeque<PathBuf> = components(rel).into();
        let mut cur = PathBuf::new();
        let mut hops = 0;
        let mut found = None;
        while let Some(c) = rest.pop_front() {
            if c.as_os_str() == ".." {
                cur.pop();
                found = self.get(&cur);
                continue;
            }
            let cand = cur.join(&c);
            let Some(i) = self.get(&cand) else {
                return Ok(None);
            };
            match &self.nodes[i].kind {
                NodeKind::Symlink(target) if !rest.is_empty() || follow_last => {
                    hops += 1;
                    if hops > MAX_HOPS {
                        return Err(OciError::SymlinkLoop {
                            path: self.root.join(rel),
                        });
                    }
                    via.push(i);
                    if target.is_absolute() {
                        cur = PathBuf::new();
                    }
                    for t in components(target).into_iter().rev() {
                        rest.push_front(t);
                    }
                    found = None;
                }
                _ => {
                    cur = cand;
                    found = Some(i);
                }
            }
        }
        Ok(found)
    }

    /// The ancestors of node `i` (directories), outermost first.
    pub fn ancestors(&self, i: usize) -> Vec<usize> {
        let mut out: Vec<usize> = self.nodes[i]
            .path
            .ancestors()
            .skip(1)
            .filter(|p| !p.as_os_str().is_empty())
            .filter_map(|p| self.get(p))
            .collect();
        out.reverse();
        out
    }
}

/// A path's normal and `..` components (root and `.` dropped).
fn components(p: &Path) -> Vec<PathBuf> {
    p.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(PathBuf::from(n)),
            Component::ParentDir => Some(PathBuf::from("..")),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn sample() -> tempfile::TempDir {
        let d = tempfile::tempdir().expect("tmp");
        let r = d.path();
        fs::create_dir_all(r.join("usr/bin")).expect("mkdir");
        fs::write(r.join("usr/bin/dash"), "x").expect("w");
        symlink("dash", r.join("usr/bin/sh")).expect("ln");
        symlink("usr/bin", r.join("bin")).expect("ln");
        symlink("/loop-b", r.join("loop-a")).expect("ln");
        symlink("loop-a", r.join("loop-b")).expect("ln");
        fs::create_dir(r.join("etc")).expect("mkdir");
        fs::write(r.join("etc/b"), "b").expect("w");
        fs::write(r.join("etc/a"), "a").expect("w");
        d
    }

    #[test]
    fn scan_is_depth_first_sorted_with_subtree_ends() {
        let d = sample();
        let t = Tree::scan(d.path()).expect("scan");
        let paths: Vec<_> = t
            .nodes
            .iter()
            .map(|n| n.path.display().to_string())
            .collect();
        assert_eq!(
            paths,
            [
                "bin",
                "etc",
                "etc/a",
                "etc/b",
                "loop-a",
                "loop-b",
                "usr",
                "usr/bin",
                "usr/bin/dash",
                "usr/bin/sh"
            ]
        );
        let usr = t.get(Path::new("usr")).expect("usr");
        assert_eq!(t.nodes[usr].end, t.nodes.len());
        assert_eq!(
            t.ancestors(t.get(Path::new("usr/bin/sh")).expect("sh"))
                .len(),
            2
        );
    }

    #[test]
    fn resolve_follows_symlinks_inside_the_rootfs() {
        let d = sample();
        let t = Tree::scan(d.path()).expect("scan");
        let names = |v: Vec<usize>| -> Vec<String> {
            v.into_iter()
                .map(|i| t.nodes[i].path.display().to_string())
                .collect()
        };
        // /bin/sh: via the bin symlink, the sh symlink, and dash.
        assert_eq!(
            names(t.resolve(Path::new("bin/sh")).expect("ok").expect("found")),
            ["bin", "usr/bin/dash", "usr/bin/sh"]
        );
        assert_eq!(
            names(t.resolve(Path::new("bin")).expect("ok").expect("found")),
            ["bin", "usr/bin"]
        );
        assert!(t.resolve(Path::new("nope/x")).expect("ok").is_none());
        assert!(matches!(
            t.resolve(Path::new("loop-a")),
            Err(OciError::SymlinkLoop { .. })
        ));
    }
}
