//! `manifest.json` of a guest image: which parts it is made of and their digests, so the host can
//! record exactly what booted and `cached()` can tell a complete image from a partial one.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{BuildError, Result};

/// One artifact: its file (relative to the image cache dir), size and sha256.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Artifact {
    pub path: String,
    pub size: u64,
    pub sha256: String,
    /// The cache key of the part it belongs to.
    pub key: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub builder_version: String,
    pub arch: String,
    pub kernel_version: String,
    pub kernel_package: String,
    pub kernel_package_version: String,
    pub kernel: Artifact,
    pub initramfs: Artifact,
    pub rootfs: Artifact,
    /// Module paths inside the initramfs, in load order.
    pub modules: Vec<String>,
    pub rootfs_suite: String,
    /// Every package of the root filesystem (empty in manifests of older builders).
    #[serde(default)]
    pub packages: Vec<crate::packages::PackagePin>,
    /// Engine name → package version (docker, containerd, runc, podman, skopeo, crun).
    #[serde(default)]
    pub engines: std::collections::BTreeMap<String, String>,
}

impl Manifest {
    pub fn read(path: &Path) -> Option<Manifest> {
        let bytes = std::fs::read(path).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    pub fn write(&self, path: &Path) -> Result<()> {
        let mut bytes = serde_json::to_vec_pretty(self)
            .map_err(|e| BuildError::io("encoding manifest", path)(e.into()))?;
        bytes.push(b'\n');
        crate::cache::write_atomic(path, &bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_json() {
        let art = |p: &str| Artifact {
            path: p.into(),
            size: 3,
            sha256: "ab".into(),
            key: "k".into(),
        };
        let m = Manifest {
            builder_version: "1".into(),
            arch: "aarch64".into(),
            kernel_version: "6.1.0-37-cloud-arm64".into(),
            kernel_package: "linux-image-6.1.0-37-cloud-arm64".into(),
            kernel_package_version: "6.1.140-1".into(),
            kernel: art("kernel-x/vmlinuz"),
            initramfs: art("initramfs-y/initramfs.cpio"),
            rootfs: art("rootfs-z/rootfs.sqfs"),
            modules: vec!["/lib/modules/v/kernel/a.ko".into()],
            rootfs_suite: "trixie".into(),
            packages: vec![],
            engines: Default::default(),
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("manifest.json");
        m.write(&p).expect("write");
        assert_eq!(Manifest::read(&p), Some(m));
    }
}
