//! `vcontainer image build --out DIR`: a built image, copied out of the cache as an image
//! directory (`image_dir`) another machine boots with `--blob-dir`.

use std::collections::BTreeMap;
use std::path::Path;

use crate::error::{BuildError, Result};
use crate::image::GuestImage;
use crate::image_dir::{
    default_fstype, FilePart, ImageDir, ImageDirManifest, RootfsPart, IMAGE_DIR_FORMAT,
    IMAGE_DIR_MANIFEST,
};

/// Copies a built image (the cache's parts) to `out/<arch>/` with its manifest. The directory is
/// assembled beside its final name and renamed into place: an interrupted export never leaves
/// a directory that looks complete.
pub fn export(image: &GuestImage, out: &Path) -> Result<ImageDir> {
    let arch = image.arch;
    let built =
        crate::manifest::Manifest::read(&image.manifest).ok_or_else(|| BuildError::Package {
            what: "exporting the guest image".into(),
            detail: format!("{} is missing or unreadable", image.manifest.display()),
        })?;
    std::fs::create_dir_all(out).map_err(BuildError::io("creating the image directory", out))?;
    let staging = crate::cache::Staging::new(&out.join(arch.name()))?;
    let copy = |from: &Path, name: &str, sha256: &str| -> Result<FilePart> {
        let to = staging.tmp.join(name);
        let size = std::fs::copy(from, &to).map_err(BuildError::io("copying", from))?;
        Ok(FilePart {
            file: name.into(),
            size: Some(size),
            sha256: Some(sha256.into()),
        })
    };
    let kernel = copy(&image.kernel, "vmlinuz", &built.kernel.sha256)?;
    let initramfs = copy(&image.initramfs, "initramfs.cpio", &built.initramfs.sha256)?;
    let rootfs = copy(&image.rootfs, "rootfs.sqfs", &built.rootfs.sha256)?;
    let mut about = BTreeMap::new();
    about.insert(
        "builder".into(),
        format!("vcontainer {}", env!("CARGO_PKG_VERSION")),
    );
    about.insert("builder_version".into(), built.builder_version.clone());
    about.insert("rootfs_suite".into(), built.rootfs_suite.clone());
    about.insert(
        "kernel_package".into(),
        format!("{} {}", built.kernel_package, built.kernel_package_version),
    );
    about.insert("agent".into(), "initramfs".into());
    let manifest = ImageDirManifest {
        format: IMAGE_DIR_FORMAT.into(),
        arch: arch.name().into(),
        kernel,
        rootfs: RootfsPart {
            file: rootfs.file,
            fstype: default_fstype(),
            size: rootfs.size,
            sha256: rootfs.sha256,
        },
        initramfs: Some(initramfs),
        modules: None,
        kernel_version: Some(built.kernel_version.clone()),
        engines: built.engines.clone(),
        packages: built.packages.clone(),
        about,
    };
    manifest.write(&staging.tmp.join(IMAGE_DIR_MANIFEST))?;
    staging.publish()?;
    ImageDir::open(out, arch)
}
