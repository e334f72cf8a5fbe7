//! Image directories (`--blob-dir DIR`): prebuilt guest images, one `DIR/<arch>/` per
//! architecture, described by `DIR/<arch>/manifest.json`. `vcontainer image build --out DIR`
//! writes one; a Yocto build or a build farm can share it, or assemble one from its own kernel
//! and root filesystem.
//!
//! What a directory holds decides how the guest boots:
//! * `initramfs`: booted with it (our own images: the agent is the initramfs's `/init`, or a
//!   modules initramfs that hands over to the agent in the root image);
//! * `modules` (a kernel's `lib/modules`, compressed modules welcome): the host makes a small
//!   modules initramfs from it, cached, whose init loads the modules and hands over;
//! * neither: the kernel has the drivers built in, mounts the root image itself and runs the
//!   image's agent as init.
//!
//! Everything is checked before a VM starts: names stay inside the directory, files are what
//! their role needs (kernel header of the right arch, root filesystem superblock, initramfs
//! archive magic) and have the size the manifest records.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::arch::Arch;
use crate::error::{BuildError, Result};

/// The `format` value this version reads and writes.
pub const IMAGE_DIR_FORMAT: &str = "vcontainer-image-dir/1";
/// The manifest's file name inside `DIR/<arch>/`.
pub const IMAGE_DIR_MANIFEST: &str = "manifest.json";
/// A manifest is a few hundred bytes (a package list a few hundred KiB); more is not one.
const MAX_MANIFEST_BYTES: u64 = 4 << 20;

/// One file of the image, named relative to `DIR/<arch>/`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilePart {
    pub file: String,
    /// Checked before boot when present: a truncated copy fails here, not in the guest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// Recorded for provenance and `sha256sum -c`-style checks; not hashed at every boot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

/// The read-only root image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootfsPart {
    pub file: String,
    /// `squashfs` (default), `ext4` or `erofs`.
    #[serde(default = "default_fstype")]
    pub fstype: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

pub(crate) fn default_fstype() -> String {
    "squashfs".into()
}

/// `DIR/<arch>/manifest.json`. Unknown fields are ignored, so later writers can add some.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageDirManifest {
    pub format: String,
    pub arch: String,
    pub kernel: FilePart,
    pub rootfs: RootfsPart,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initramfs: Option<FilePart>,
    /// A directory holding the kernel's `lib/modules/<kver>/` tree.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modules: Option<String>,
    /// `uname -r` of the kernel, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_version: Option<String>,
    /// Engine name → version (docker, containerd, runc, podman, skopeo, …).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub engines: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub packages: Vec<crate::packages::PackagePin>,
    /// Free-form provenance: the builder and its version, the suite, the mirror.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub about: BTreeMap<String, String>,
}

/// How the guest gets from the kernel to the agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BootShape {
    /// Boot with this initramfs (`-initrd`).
    Initramfs(PathBuf),
    /// A modular kernel: the host makes a modules initramfs from this `lib/modules` directory.
    Modules(PathBuf),
    /// Drivers built in: no initramfs, the kernel mounts the root image and runs its agent.
    BuiltIn,
}

/// A checked `DIR/<arch>/`: every path exists, lies inside it and is what its role needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageDir {
    pub dir: PathBuf,
    pub manifest_path: PathBuf,
    pub manifest: ImageDirManifest,
    pub kernel: PathBuf,
    pub rootfs: PathBuf,
    pub shape: BootShape,
}

fn unusable(dir: &Path, detail: impl Into<String>) -> BuildError {
    BuildError::ImageDir {
        dir: dir.to_path_buf(),
        detail: detail.into(),
    }
}

impl ImageDir {
    /// Reads and checks `blob_dir/<arch>/`.
    pub fn open(blob_dir: &Path, arch: Arch) -> Result<ImageDir> {
        let dir = blob_dir.join(arch.name());
        if !dir.is_dir() {
            return Err(unusable(
                &dir,
                format!(
                    "no such directory: an image directory holds one subdirectory per architecture ({}/ for this one); `vcontainer image build -a {} --out {}` writes it",
                    arch.name(),
                    arch.name(),
                    blob_dir.display()
                ),
            ));
        }
        let manifest_path = dir.join(IMAGE_DIR_MANIFEST);
        let manifest = read_manifest(&dir, &manifest_path)?;
        if manifest.format != IMAGE_DIR_FORMAT {
            return Err(unusable(
                &dir,
                format!(
                    "{IMAGE_DIR_MANIFEST} has format {:?}; this vcontainer reads {IMAGE_DIR_FORMAT:?}",
                    manifest.format
                ),
            ));
        }
        if manifest.arch != arch.name() {
            return Err(unusable(
                &dir,
                format!(
                    "{IMAGE_DIR_MANIFEST} describes a {} image, this directory is for {}",
                    manifest.arch,
                    arch.name()
                ),
            ));
        }
        let kernel = inside(&dir, &manifest.kernel.file, "kernel")?;
        check_size(&dir, &kernel, "kernel", manifest.kernel.size)?;
        crate::kernel::check_kernel_image(&kernel, arch)
            .map_err(|e| unusable(&dir, format!("kernel: {e}")))?;

        let rootfs = inside(&dir, &manifest.rootfs.file, "rootfs")?;
        check_size(&dir, &rootfs, "rootfs", manifest.rootfs.size)?;
        check_rootfs(&dir, &rootfs, &manifest.rootfs.fstype)?;

        let shape = match (&manifest.initramfs, &manifest.modules) {
            (Some(_), Some(_)) => {
                return Err(unusable(
                    &dir,
                    "both an initramfs and a modules directory: name one (the modules belong in the initramfs)",
                ))
            }
            (Some(part), None) => {
                let path = inside(&dir, &part.file, "initramfs")?;
                check_size(&dir, &path, "initramfs", part.size)?;
                check_initramfs(&dir, &path)?;
                BootShape::Initramfs(path)
            }
            (None, Some(modules)) => {
                let path = inside(&dir, modules, "modules")?;
                if !path.is_dir() {
                    return Err(unusable(
                        &dir,
                        format!("modules: {} is not a directory", path.display()),
                    ));
                }
                BootShape::Modules(path)
            }
            (None, None) => BootShape::BuiltIn,
        };
        Ok(ImageDir {
            dir,
            manifest_path,
            manifest,
            kernel,
            rootfs,
            shape,
        })
    }
}

fn read_manifest(dir: &Path, path: &Path) -> Result<ImageDirManifest> {
    let file = std::fs::File::open(path)
        .map_err(|e| unusable(dir, format!("cannot read {}: {e}", path.display())))?;
    let mut bytes = Vec::new();
    file.take(MAX_MANIFEST_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(BuildError::io("reading the image manifest", path))?;
    if bytes.len() as u64 > MAX_MANIFEST_BYTES {
        return Err(unusable(
            dir,
            format!("{IMAGE_DIR_MANIFEST} is larger than {MAX_MANIFEST_BYTES} bytes"),
        ));
    }
    serde_json::from_slice(&bytes)
        .map_err(|e| unusable(dir, format!("{IMAGE_DIR_MANIFEST} is malformed: {e}")))
}

/// `dir/name`, refusing absolute names, `..` and links that lead out of `dir`.
fn inside(dir: &Path, name: &str, role: &str) -> Result<PathBuf> {
    let rel = Path::new(name);
    if name.is_empty() || !rel.components().all(|c| matches!(c, Component::Normal(_))) {
        return Err(unusable(
            dir,
            format!("{role}: {name:?} must be a relative name inside the directory"),
        ));
    }
    let path = dir.join(rel);
    let real = std::fs::canonicalize(&path)
        .map_err(|e| unusable(dir, format!("{role}: {}: {e}", path.display())))?;
    let base = std::fs::canonicalize(dir).map_err(BuildError::io("resolving", dir))?;
    if !real.starts_with(&base) {
        return Err(unusable(
            dir,
            format!(
                "{role}: {name:?} leads out of the directory (to {})",
                real.display()
            ),
        ));
    }
    Ok(path)
}

fn check_size(dir: &Path, path: &Path, role: &str, want: Option<u64>) -> Result<()> {
    let meta = std::fs::metadata(path).map_err(BuildError::io("reading", path))?;
    if !meta.is_file() || meta.len() == 0 {
        return Err(unusable(
            dir,
            format!("{role}: {} is not a non-empty file", path.display()),
        ));
    }
    match want {
        Some(size) if size != meta.len() => Err(unusable(
            dir,
            format!(
                "{role}: {} has {} bytes, the manifest says {size} (truncated or replaced?)",
                path.display(),
                meta.len()
            ),
        )),
        _ => Ok(()),
    }
}

fn read_head(path: &Path, len: usize) -> Result<Vec<u8>> {
    let mut head = Vec::with_capacity(len);
    std::fs::File::open(path)
        .map_err(BuildError::io("reading", path))?
        .take(len as u64)
        .read_to_end(&mut head)
        .map_err(BuildError::io("reading", path))?;
    Ok(head)
}

/// Where each supported root filesystem keeps its magic number.
fn rootfs_magic(fstype: &str) -> Option<(usize, &'static [u8])> {
    match fstype {
        "squashfs" => Some((0, b"hsqs")),
        "ext4" => Some((1080, &[0x53, 0xef])),
        "erofs" => Some((1024, &[0xe2, 0xe1, 0xf5, 0xe0])),
        _ => None,
    }
}

fn check_rootfs(dir: &Path, path: &Path, fstype: &str) -> Result<()> {
    let (offset, magic) = rootfs_magic(fstype).ok_or_else(|| {
        unusable(
            dir,
            format!("rootfs: fstype {fstype:?} is not one of squashfs, ext4, erofs"),
        )
    })?;
    let head = read_head(path, offset + magic.len())?;
    if head.get(offset..) != Some(magic) {
        return Err(unusable(
            dir,
            format!("rootfs: {} is not a {fstype} image", path.display()),
        ));
    }
    Ok(())
}

/// A newc cpio archive, plain or compressed with anything a distro kernel unpacks.
fn check_initramfs(dir: &Path, path: &Path) -> Result<()> {
    const MAGICS: &[&[u8]] = &[
        b"070701",
        b"070702",
        &[0x1f, 0x8b],
        &[0x28, 0xb5, 0x2f, 0xfd],
        &[0xfd, b'7', b'z', b'X', b'Z'],
        &[0x02, 0x21, 0x4c, 0x18],
        b"BZh",
        &[0x5d, 0x00, 0x00],
    ];
    let head = read_head(path, 6)?;
    if MAGICS.iter().any(|m| head.starts_with(m)) {
        Ok(())
    } else {
        Err(unusable(
            dir,
            format!(
                "initramfs: {} is neither a cpio archive nor a compressed one",
                path.display()
            ),
        ))
    }
}

impl ImageDirManifest {
    pub fn write(&self, path: &Path) -> Result<()> {
        let mut bytes = serde_json::to_vec_pretty(self)
            .map_err(|e| BuildError::io("encoding the image manifest", path)(e.into()))?;
        bytes.push(b'\n');
        crate::cache::write_atomic(path, &bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal valid x86_64 directory: bzImage header, squashfs magic, cpio magic.
    fn write_dir(root: &Path, initramfs: bool) -> ImageDirManifest {
        let dir = root.join("x86_64");
        std::fs::create_dir_all(&dir).expect("mkdir");
        let mut kernel = vec![0u8; 0x300];
        kernel[0x202..0x206].copy_from_slice(b"HdrS");
        std::fs::write(dir.join("vmlinuz"), &kernel).expect("kernel");
        let mut rootfs = b"hsqs".to_vec();
        rootfs.resize(4096, 0);
        std::fs::write(dir.join("rootfs.sqfs"), &rootfs).expect("rootfs");
        std::fs::write(dir.join("initramfs.cpio"), b"070701rest").expect("initramfs");
        let m = ImageDirManifest {
            format: IMAGE_DIR_FORMAT.into(),
            arch: "x86_64".into(),
            kernel: FilePart {
                file: "vmlinuz".into(),
                size: Some(kernel.len() as u64),
                sha256: None,
            },
            rootfs: RootfsPart {
                file: "rootfs.sqfs".into(),
                fstype: "squashfs".into(),
                size: Some(4096),
                sha256: None,
            },
            initramfs: initramfs.then(|| FilePart {
                file: "initramfs.cpio".into(),
                size: None,
                sha256: None,
            }),
            modules: None,
            kernel_version: None,
            engines: BTreeMap::new(),
            packages: vec![],
            about: BTreeMap::new(),
        };
        m.write(&dir.join(IMAGE_DIR_MANIFEST)).expect("manifest");
        m
    }

    fn rewrite(root: &Path, f: impl FnOnce(&mut ImageDirManifest)) {
        let path = root.join("x86_64").join(IMAGE_DIR_MANIFEST);
        let mut m: ImageDirManifest =
            serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("parse");
        f(&mut m);
        m.write(&path).expect("write");
    }

    fn open_err(root: &Path) -> String {
        ImageDir::open(root, Arch::X86_64)
            .expect_err("must be refused")
            .to_string()
    }

    #[test]
    fn a_valid_directory_opens_with_its_boot_shape() {
        let t = tempfile::tempdir().expect("tempdir");
        write_dir(t.path(), true);
        let d = ImageDir::open(t.path(), Arch::X86_64).expect("open");
        assert_eq!(
            d.shape,
            BootShape::Initramfs(t.path().join("x86_64/initramfs.cpio"))
        );
        rewrite(t.path(), |m| m.initramfs = None);
        assert_eq!(
            ImageDir::open(t.path(), Arch::X86_64).expect("open").shape,
            BootShape::BuiltIn
        );
        std::fs::create_dir(t.path().join("x86_64/modules")).expect("mkdir");
        rewrite(t.path(), |m| m.modules = Some("modules".into()));
        assert_eq!(
            ImageDir::open(t.path(), Arch::X86_64).expect("open").shape,
            BootShape::Modules(t.path().join("x86_64/modules"))
        );
    }

    #[test]
    fn missing_or_wrong_parts_are_named() {
        let t = tempfile::tempdir().expect("tempdir");
        assert!(
            open_err(t.path()).contains("image build"),
            "{}",
            open_err(t.path())
        );
        write_dir(t.path(), true);
        assert!(ImageDir::open(t.path(), Arch::Aarch64)
            .expect_err("no aarch64 dir")
            .to_string()
            .contains("aarch64"));

        rewrite(t.path(), |m| m.rootfs.size = Some(1));
        assert!(
            open_err(t.path()).contains("truncated"),
            "{}",
            open_err(t.path())
        );
        rewrite(t.path(), |m| m.rootfs.size = None);

        rewrite(t.path(), |m| m.rootfs.fstype = "ext4".into());
        assert!(
            open_err(t.path()).contains("not a ext4 image"),
            "{}",
            open_err(t.path())
        );
        rewrite(t.path(), |m| m.rootfs.fstype = "btrfs".into());
        assert!(open_err(t.path()).contains("btrfs"));
        rewrite(t.path(), |m| m.rootfs.fstype = "squashfs".into());

        rewrite(t.path(), |m| m.arch = "aarch64".into());
        assert!(open_err(t.path()).contains("describes a aarch64 image"));
        rewrite(t.path(), |m| m.arch = "x86_64".into());

        rewrite(t.path(), |m| m.format = "vcontainer-image-dir/9".into());
        assert!(open_err(t.path()).contains("format"));
        rewrite(t.path(), |m| m.format = IMAGE_DIR_FORMAT.into());

        std::fs::write(t.path().join("x86_64/initramfs.cpio"), b"garbage").expect("w");
        assert!(
            open_err(t.path()).contains("cpio"),
            "{}",
            open_err(t.path())
        );

        std::fs::write(t.path().join("x86_64/vmlinuz"), vec![0u8; 0x300]).expect("w");
        rewrite(t.path(), |m| m.kernel.size = None);
        assert!(
            open_err(t.path()).contains("kernel"),
            "{}",
            open_err(t.path())
        );

        std::fs::remove_file(t.path().join("x86_64/rootfs.sqfs")).expect("rm");
        let e = open_err(t.path());
        assert!(e.contains("rootfs") || e.contains("kernel"), "{e}");

        std::fs::write(t.path().join("x86_64").join(IMAGE_DIR_MANIFEST), b"{").expect("w");
        assert!(open_err(t.path()).contains("malformed"));
    }

    #[test]
    fn names_never_lead_out_of_the_directory() {
        let t = tempfile::tempdir().expect("tempdir");
        write_dir(t.path(), false);
        for bad in ["../x86_64/vmlinuz", "/etc/passwd", "", "./vmlinuz"] {
            rewrite(t.path(), |m| m.kernel.file = bad.into());
            assert!(
                open_err(t.path()).contains("relative name"),
                "{bad}: {}",
                open_err(t.path())
            );
        }
        std::fs::write(t.path().join("outside"), b"x").expect("w");
        std::os::unix::fs::symlink("../outside", t.path().join("x86_64/link")).expect("link");
        rewrite(t.path(), |m| m.kernel.file = "link".into());
        assert!(
            open_err(t.path()).contains("leads out"),
            "{}",
            open_err(t.path())
        );
    }

    #[test]
    fn an_oversized_manifest_is_refused_unread() {
        let t = tempfile::tempdir().expect("tempdir");
        write_dir(t.path(), false);
        let big = vec![b' '; (MAX_MANIFEST_BYTES + 10) as usize];
        std::fs::write(t.path().join("x86_64").join(IMAGE_DIR_MANIFEST), big).expect("w");
        assert!(open_err(t.path()).contains("larger than"));
    }
}
