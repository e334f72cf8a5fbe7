//! The modules initramfs for an image directory whose kernel is modular (`BootShape::Modules`):
//! the agent as `/init` plus the module closure taken from the directory's `lib/modules` tree.
//! The agent loads the modules, mounts the root image and hands over to the image's own agent.
//! Made on first boot and cached under the image cache, keyed by the agent and a fingerprint of
//! the modules tree (paths, sizes, modification times: hashing ~100 MB of modules at every boot
//! would cost more than the cache saves).

use std::fmt::Write as _;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::arch::Arch;
use crate::cache::{key, part_dir, sha256_file, BuildLock, Staging, BUILDER_VERSION};
use crate::error::{BuildError, Result};
use crate::kernel::{extract_tree, KernelPackage, KernelTree};
use crate::modules::{OPTIONAL_MODULES, REQUIRED_MODULES};
use crate::progress::{Progress, Stage};

const INITRAMFS_FILE: &str = "initramfs.cpio";

/// Paths, sizes and mtimes of every file below `dir`, sorted.
fn fingerprint(dir: &Path) -> Result<String> {
    fn walk(dir: &Path, rel: &str, out: &mut Vec<String>) -> Result<()> {
        for entry in std::fs::read_dir(dir).map_err(BuildError::io("reading", dir))? {
            let entry = entry.map_err(BuildError::io("reading", dir))?;
            let meta = entry
                .metadata()
                .map_err(BuildError::io("reading", entry.path()))?;
            let name = format!("{rel}/{}", entry.file_name().to_string_lossy());
            if meta.is_dir() {
                walk(&entry.path(), &name, out)?;
            } else if meta.is_file() {
                out.push(format!("{name} {} {}", meta.len(), meta.mtime()));
            }
        }
        Ok(())
    }
    let mut lines = Vec::new();
    walk(dir, "", &mut lines)?;
    lines.sort();
    let mut text = String::new();
    for l in lines {
        let _ = writeln!(text, "{l}");
    }
    Ok(key(&[("files", &text)]))
}

/// The modules initramfs for `modules_dir` (a kernel's `lib/modules`), built unless cached.
pub fn modules_initramfs(
    cache_dir: &Path,
    arch: Arch,
    agent: &Path,
    modules_dir: &Path,
    progress: &mut dyn FnMut(Progress),
) -> Result<PathBuf> {
    let agent_bytes =
        std::fs::read(agent).map_err(BuildError::io("reading agent binary", agent))?;
    crate::agent::check(agent, &agent_bytes, arch)?;
    let images = cache_dir.join("images").join(arch.name());
    let k = key(&[
        ("builder", BUILDER_VERSION),
        ("component", "modules-initramfs"),
        ("arch", arch.name()),
        ("agent_sha256", &sha256_file(agent)?),
        ("modules", &fingerprint(modules_dir)?),
        ("required_modules", &REQUIRED_MODULES.join(",")),
        ("optional_modules", &OPTIONAL_MODULES.join(",")),
    ]);
    let dir = part_dir(&images, "modinitramfs", &k);
    let out = dir.join(INITRAMFS_FILE);
    if out.is_file() {
        return Ok(out);
    }
    std::fs::create_dir_all(&images).map_err(BuildError::io("creating", &images))?;
    let _lock = BuildLock::acquire(&images, &mut || {
        progress(Progress::new(
            Stage::Cache,
            format!("waiting for another build of {arch}"),
        ))
    })?;
    if out.is_file() {
        return Ok(out);
    }
    progress(Progress::new(
        Stage::Modules,
        format!("modules initramfs from {}", modules_dir.display()),
    ));
    let staging = Staging::new(&dir)?;
    let kdir = staging.tmp.join("kernel");
    std::fs::create_dir(&kdir).map_err(BuildError::io("creating", &kdir))?;
    let package = KernelPackage {
        package: modules_dir.display().to_string(),
        version: String::new(),
        sha256: String::new(),
    };
    let info = extract_tree(
        KernelTree::ModulesDir(modules_dir),
        package,
        arch,
        &kdir,
        progress,
    )?;
    crate::initramfs::write(&staging.tmp.join(INITRAMFS_FILE), agent, &kdir, &info)?;
    crate::cache::remove_tree(&kdir)?;
    Ok(staging.publish()?.join(INITRAMFS_FILE))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fingerprint_follows_sizes_and_names() {
        let t = tempfile::tempdir().expect("tempdir");
        let m = t.path().join("6.12.0-1-arm64/kernel");
        std::fs::create_dir_all(&m).expect("mkdir");
        std::fs::write(m.join("a.ko.xz"), b"1").expect("w");
        let a = fingerprint(t.path()).expect("fp");
        assert_eq!(a, fingerprint(t.path()).expect("fp"));
        std::fs::write(m.join("a.ko.xz"), b"12").expect("w");
        let b = fingerprint(t.path()).expect("fp");
        assert_ne!(a, b);
        std::fs::write(m.join("b.ko.xz"), b"1").expect("w");
        assert_ne!(b, fingerprint(t.path()).expect("fp"));
    }
}
