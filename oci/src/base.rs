//! A base image (two-layer mode, upstream OCI_BASE_IMAGE): its manifest and config, whose layers
//! are kept as they are, and its merged filesystem view, against which the new layers are
//! computed — unchanged files are not repeated, deleted ones become whiteouts.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Component, Path, PathBuf};

use oci_spec::image::{Descriptor, ImageConfiguration, ImageIndex, ImageManifest, MediaType};
use sha2::{Digest, Sha256};

use super::blob::{self, read_json};
use super::tree::{Node, NodeKind};
use super::OciError;

const WHITEOUT: &str = ".wh.";
const OPAQUE: &str = ".wh..wh..opq";

/// What the base has at a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BaseKind {
    Dir,
    File { size: u64, sha256: [u8; 32] },
    Symlink(PathBuf),
    CharDevice(u64, u64),
    BlockDevice(u64, u64),
    Fifo,
}

#[derive(Debug, Clone)]
pub struct BaseEntry {
    pub kind: BaseKind,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    /// The base layer that last wrote the entry (an opaque marker hides lower layers only).
    layer: usize,
}

/// The base image: kept layers, config and the merged view.
#[derive(Debug)]
pub struct BaseImage {
    pub root: PathBuf,
    pub manifest: ImageManifest,
    pub config: ImageConfiguration,
    pub view: BTreeMap<PathBuf, BaseEntry>,
}

impl BaseImage {
    /// Opens the image in layout `root` for `oci_arch`: the manifest tagged `tag` if given, else
    /// the only manifest (or the `oci_arch` one of a multi-arch index).
    pub fn open(root: &Path, tag: Option<&str>, oci_arch: &str) -> Result<BaseImage, OciError> {
        let base = |reason: String| OciError::Base {
            path: root.to_path_buf(),
            reason,
        };
        let index: ImageIndex = read_json(&root.join("index.json"))?;
        let mut candidates: Vec<Descriptor> = index
            .manifests()
            .iter()
            .filter(|d| match tag {
                Some(t) => d
                    .annotations()
                    .as_ref()
                    .and_then(|a| a.get("org.opencontainers.image.ref.name"))
                    .is_some_and(|n| n == t),
                None => true,
            })
            .cloned()
            .collect();
        // A nested index (oci-multiarch.bbclass writes one): its entries are the candidates.
        if candidates.len() == 1 && *candidates[0].media_type() == MediaType::ImageIndex {
            let nested: ImageIndex = read_json(&blob_path(root, &candidates[0])?)?;
            candidates = nested.manifests().clone();
        }
        let desc = match candidates.len() {
            0 => {
                return Err(base(match tag {
                    Some(t) => format!("no image tagged '{t}' in index.json"),
                    None => "index.json lists no image".into(),
                }))
            }
            1 => candidates.remove(0),
            _ => candidates
                .iter()
                .find(|d| {
                    d.platform()
                        .as_ref()
                        .is_some_and(|p| p.architecture().to_string() == oci_arch)
                })
                .cloned()
                .ok_or_else(|| {
                    base(format!(
                        "{} images and none is for {oci_arch}; name one with a tag",
                        candidates.len()
                    ))
                })?,
        };
        let manifest: ImageManifest = read_json(&blob_path(root, &desc)?)?;
        let config: ImageConfiguration = read_json(&blob_path(root, manifest.config())?)?;
        let arch = config.architecture().to_string();
        if arch != oci_arch {
            return Err(base(format!(
                "the base image is for {arch}, the image being built for {oci_arch}"
            )));
        }
        if config.rootfs().diff_ids().len() != manifest.layers().len() {
            return Err(base(
                "the config's diff_ids do not match the manifest's layers".into(),
            ));
        }
        let mut view = BTreeMap::new();
        for (i, layer) in manifest.layers().iter().enumerate() {
            let path = blob_path(root, layer)?;
            apply_layer(&path, i, &mut view).map_err(|e| base(format!("layer {i}: {e}")))?;
        }
        Ok(BaseImage {
            root: root.to_path_buf(),
            manifest,
            config,
            view,
        })
    }

    /// Does the base already have `node` exactly as the new layer would write it (`uid`/`gid`
    /// after the owner policy)? Then no layer needs to carry it. Times are not compared.
    pub fn has_same(&self, node: &Node, abs: &Path, uid: u32, gid: u32) -> Result<bool, OciError> {
        let Some(e) = self.view.get(&node.path) else {
            return Ok(false);
        };
        if e.mode != node.mode || e.uid != u64::from(uid) || e.gid != u64::from(gid) {
            return Ok(false);
        }
        Ok(match (&e.kind, &node.kind) {
            (BaseKind::Dir, NodeKind::Dir) | (BaseKind::Fifo, NodeKind::Fifo) => true,
            (BaseKind::Symlink(a), NodeKind::Symlink(b)) => a == b,
            (BaseKind::CharDevice(ma, mi), NodeKind::CharDevice)
            | (BaseKind::BlockDevice(ma, mi), NodeKind::BlockDevice) => {
                (*ma, *mi)
                    == (
                        rustix::fs::major(node.rdev).into(),
                        rustix::fs::minor(node.rdev).into(),
                    )
            }
            (BaseKind::File { size, sha256 }, NodeKind::File) => {
                *size == node.size && file_sha256(abs)? == *sha256
            }
            _ => false,
        })
    }

    /// Blob paths of the kept layers, config excluded.
    pub fn layer_blobs(&self) -> Result<Vec<(Descriptor, PathBuf)>, OciError> {
        self.manifest
            .layers()
            .iter()
            .map(|d| Ok((d.clone(), blob_path(&self.root, d)?)))
            .collect()
    }
}

/// Whiteouts for what the base has and the rootfs does not: the outermost missing path only (a
/// deleted directory takes its contents with it). A path whose parent in the rootfs is not a
/// directory gets none: that parent replaces the base's directory whole — the merged-usr case,
/// `bin/` in the base and `bin -> usr/bin` in the rootfs, where upstream left whiteouts under
/// the symlink that engines then choke on.
pub fn whiteouts(
    view: &BTreeMap<PathBuf, BaseEntry>,
    exists: impl Fn(&Path) -> Option<bool>,
) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    for path in view.keys() {
        if exists(path).is_some() {
            continue;
        }
        if out.last().is_some_and(|w| path.starts_with(w)) {
            continue; // inside a directory already whited out
        }
        let parent_is_dir = match path.parent().filter(|p| !p.as_os_str().is_empty()) {
            None => true,
            Some(p) => exists(p) == Some(true),
        };
        if parent_is_dir {
            out.push(path.clone());
        }
    }
    out
}

/// The whiteout entry name for `path`: `dir/.wh.name`.
pub fn whiteout_name(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    match path.parent() {
        Some(p) => p.join(format!("{WHITEOUT}{name}")),
        None => PathBuf::from(format!("{WHITEOUT}{name}")),
    }
}

fn blob_path(root: &Path, d: &Descriptor) -> Result<PathBuf, OciError> {
    blob::blob_path(root, d).map_err(|e| OciError::Base {
        path: root.to_path_buf(),
        reason: e.to_string(),
    })
}

pub(crate) fn file_sha256(path: &Path) -> Result<[u8; 32], OciError> {
    let mut f = File::open(path).map_err(|e| OciError::io(path, e))?;
    let mut h = Sha256::new();
    io::copy(&mut f, &mut h).map_err(|e| OciError::io(path, e))?;
    Ok(h.finalize().into())
}

/// A layer blob as a tar stream, gzip or not (by its magic bytes).
pub(crate) fn open_layer(path: &Path) -> io::Result<Box<dyn Read>> {
    let mut f = BufReader::new(File::open(path)?);
    let magic = {
        use std::io::BufRead;
        f.fill_buf()?
            .get(..2)
            .map(|m| m == [0x1f, 0x8b])
            .unwrap_or(false)
    };
    Ok(if magic {
        Box::new(flate2::bufread::MultiGzDecoder::new(f))
    } else {
        Box::new(f)
    })
}

fn normalise(p: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir | Component::RootDir => {}
            _ => return None,
        }
    }
    Some(out)
}

fn remove_subtree(view: &mut BTreeMap<PathBuf, BaseEntry>, dir: &Path, below_layer: Option<usize>) {
    let doomed: Vec<PathBuf> = view
        .range(dir.to_path_buf()..)
        .skip_while(|(p, _)| p.as_path() == dir)
        .take_while(|(p, _)| p.starts_with(dir))
        .filter(|(_, e)| below_layer.is_none_or(|l| e.layer < l))
        .map(|(p, _)| p.clone())
        .collect();
    for p in doomed {
        view.remove(&p);
    }
}

/// Applies one layer to the view, with OCI whiteout semantics.
fn apply_layer(
    path: &Path,
    layer: usize,
    view: &mut BTreeMap<PathBuf, BaseEntry>,
) -> io::Result<()> {
    let mut archive = tar::Archive::new(open_layer(path)?);
    for entry in archive.entries()? {
        let mut entry = entry?;
        let raw = entry.path()?.into_owned();
        let Some(p) = normalise(&raw) else {
            return Err(io::Error::other(format!("unsafe path {}", raw.display())));
        };
        if p.as_os_str().is_empty() {
            continue;
        }
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let parent = p.parent().map(Path::to_path_buf).unwrap_or_default();
        if name == OPAQUE {
            remove_subtree(view, &parent, Some(layer));
            continue;
        }
        if let Some(hidden) = name.strip_prefix(WHITEOUT) {
            let gone = parent.join(hidden);
            view.remove(&gone);
            remove_subtree(view, &gone, None);
            continue;
        }
        let h = entry.header();
        let mode = h.mode()? & 0o7777;
        let (uid, gid) = (h.uid()?, h.gid()?);
        let kind = match h.entry_type() {
            tar::EntryType::Directory => BaseKind::Dir,
            tar::EntryType::Symlink => BaseKind::Symlink(
                entry
                    .link_name()?
                    .map(|l| l.into_owned())
                    .unwrap_or_default(),
            ),
            tar::EntryType::Link => {
                let target = entry
                    .link_name()?
                    .and_then(|l| normalise(&l))
                    .ok_or_else(|| io::Error::other("hard link without a target"))?;
                match view.get(&target) {
                    Some(t) => t.kind.clone(),
                    None => continue,
                }
            }
            tar::EntryType::Char => BaseKind::CharDevice(
                h.device_major()?.unwrap_or(0).into(),
                h.device_minor()?.unwrap_or(0).into(),
            ),
            tar::EntryType::Block => BaseKind::BlockDevice(
                h.device_major()?.unwrap_or(0).into(),
                h.device_minor()?.unwrap_or(0).into(),
            ),
            tar::EntryType::Fifo => BaseKind::Fifo,
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let mut hasher = Sha256::new();
                let size = io::copy(&mut entry, &mut hasher)?;
                BaseKind::File {
                    size,
                    sha256: hasher.finalize().into(),
                }
            }
            _ => continue, // PAX/GNU metadata entries are consumed by the tar reader
        };
        // A non-directory replaces a directory with everything in it.
        if kind != BaseKind::Dir {
            remove_subtree(view, &p, None);
        }
        view.insert(
            p,
            BaseEntry {
                kind,
                mode,
                uid,
                gid,
                layer,
            },
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(kind: BaseKind) -> BaseEntry {
        BaseEntry {
            kind,
            mode: 0o755,
            uid: 0,
            gid: 0,
            layer: 0,
        }
    }

    #[test]
    fn whiteouts_are_outermost_and_none_under_a_dir_that_became_a_symlink() {
        let mut view = BTreeMap::new();
        for p in [
            "bin",
            "bin/ls",
            "bin/cat",
            "etc",
            "etc/gone",
            "etc/gone/x",
            "etc/kept",
            "opt",
            "opt/a",
        ] {
            view.insert(PathBuf::from(p), entry(BaseKind::Dir));
        }
        // The rootfs: bin is a symlink now (merged usr), etc/gone is deleted, opt is deleted.
        let rootfs: BTreeMap<&str, bool> = [
            ("bin", false),
            ("etc", true),
            ("etc/kept", false),
            ("usr", true),
        ]
        .into();
        let w = whiteouts(&view, |p| rootfs.get(p.to_str().expect("utf8")).copied());
        assert_eq!(w, vec![PathBuf::from("etc/gone"), PathBuf::from("opt")]);
        assert_eq!(
            whiteout_name(Path::new("etc/gone")),
            PathBuf::from("etc/.wh.gone")
        );
        assert_eq!(whiteout_name(Path::new("opt")), PathBuf::from(".wh.opt"));
    }

    #[test]
    fn layers_apply_with_whiteouts_and_opaque_markers() {
        let d = tempfile::tempdir().expect("tmp");
        let mk = |name: &str, entries: &[(&str, Option<&str>)]| -> PathBuf {
            let mut b = tar::Builder::new(Vec::new());
            for (p, content) in entries {
                let mut h = tar::Header::new_gnu();
                match content {
                    None => {
                        h.set_entry_type(tar::EntryType::Directory);
                        h.set_size(0);
                    }
                    Some(c) => h.set_size(c.len() as u64),
                }
                h.set_mode(0o755);
                h.set_uid(0);
                h.set_gid(0);
                h.set_mtime(0);
                b.append_data(&mut h, p, content.unwrap_or("").as_bytes())
                    .expect("append");
            }
            let path = d.path().join(name);
            std::fs::write(&path, b.into_inner().expect("tar")).expect("write");
            path
        };
        let l0 = mk(
            "l0",
            &[
                ("a/", None),
                ("a/x", Some("x")),
                ("a/y", Some("y")),
                ("b/", None),
                ("b/z", Some("z")),
            ],
        );
        let l1 = mk(
            "l1",
            &[
                ("a/", None),
                ("a/.wh..wh..opq", Some("")),
                ("a/new", Some("n")),
                ("./.wh.b", Some("")),
            ],
        );
        let mut view = BTreeMap::new();
        apply_layer(&l0, 0, &mut view).expect("l0");
        apply_layer(&l1, 1, &mut view).expect("l1");
        let paths: Vec<_> = view.keys().map(|p| p.display().to_string()).collect();
        assert_eq!(paths, ["a", "a/new"]);
    }
}
