//! The initramfs: the agent as `/init`, the module closure, the load order file, and the
//! directories and `/dev/console` node the agent expects before it has mounted anything.

use std::fs::File;
use std::io::BufWriter;
use std::path::Path;

use crate::cpio::CpioWriter;
use crate::error::{BuildError, Result};
use crate::kernel::{KernelInfo, MODULES_DIR};

/// Where the agent finds the load order: absolute paths inside the initramfs, one per line.
pub const MODULES_ORDER_PATH: &str = "/etc/vcontainer/modules.order";

/// Mount points and scratch directories that exist before the agent mounts anything.
const DIRS: &[&str] = &[
    "dev", "proc", "sys", "newroot", "lower", "upper", "run", "tmp",
];

/// `modules.order` text: `/lib/modules/<kver>/<rel>` per line.
pub fn modules_order(info: &KernelInfo) -> String {
    info.module_order
        .iter()
        .map(|rel| format!("/lib/modules/{}/{rel}\n", info.kernel_version))
        .collect()
}

/// Writes the newc archive to `out`. Directories are emitted before their contents; all entries
/// are root-owned with mtime 0, so the same inputs give the same bytes.
pub fn write(out: &Path, agent: &Path, kernel_dir: &Path, info: &KernelInfo) -> Result<()> {
    let agent_bytes =
        std::fs::read(agent).map_err(BuildError::io("reading agent binary", agent))?;
    let file = File::create(out).map_err(BuildError::io("creating initramfs", out))?;
    let mut w = CpioWriter::new(BufWriter::new(file));
    let io = |e| BuildError::io("writing initramfs", out)(e);

    for dir in DIRS {
        let perm = if *dir == "tmp" { 0o1777 } else { 0o755 };
        w.dir(dir, perm).map_err(io)?;
    }
    w.char_device("dev/console", 0o600, 5, 1).map_err(io)?;
    w.dir("etc", 0o755).map_err(io)?;
    w.dir("etc/vcontainer", 0o755).map_err(io)?;
    w.file(MODULES_ORDER_PATH, 0o644, modules_order(info).as_bytes())
        .map_err(io)?;
    w.file("init", 0o755, &agent_bytes).map_err(io)?;

    // Module files, with every parent directory once, in sorted order.
    let base = format!("lib/modules/{}", info.kernel_version);
    let mut paths: Vec<&String> = info.module_order.iter().collect();
    paths.sort();
    let mut dirs = std::collections::BTreeSet::new();
    for rel in &paths {
        let full = format!("{base}/{rel}");
        let mut prefix = String::new();
        for part in full
            .split('/')
            .collect::<Vec<_>>()
            .split_last()
            .map(|(_, d)| d.to_vec())
            .unwrap_or_default()
        {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(part);
            dirs.insert(prefix.clone());
        }
    }
    for dir in &dirs {
        w.dir(dir, 0o755).map_err(io)?;
    }
    for rel in paths {
        let src = kernel_dir.join(MODULES_DIR).join(rel);
        let bytes = std::fs::read(&src).map_err(BuildError::io("reading module", &src))?;
        w.file(&format!("{base}/{rel}"), 0o644, &bytes)
            .map_err(io)?;
    }
    let mut sink = w.finish().map_err(io)?;
    std::io::Write::flush(&mut sink).map_err(io)?;
    sink.into_inner()
        .map_err(|e| io(e.into_error()))?
        .sync_all()
        .map_err(io)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpio::{read_entries, S_IFCHR, S_IFDIR, S_IFREG};
    use crate::kernel::KernelPackage;

    #[test]
    fn archive_has_init_modules_order_and_console() {
        let dir = tempfile::tempdir().expect("tempdir");
        let kdir = dir.path().join("k");
        std::fs::create_dir_all(kdir.join("modules/kernel/fs/overlayfs")).expect("mkdir");
        std::fs::create_dir_all(kdir.join("modules/kernel/drivers/virtio")).expect("mkdir");
        std::fs::write(kdir.join("modules/kernel/fs/overlayfs/overlay.ko"), b"O").expect("w");
        std::fs::write(kdir.join("modules/kernel/drivers/virtio/virtio.ko"), b"V").expect("w");
        let agent = dir.path().join("agent");
        std::fs::write(&agent, b"\x7fELF").expect("w");
        let info = KernelInfo {
            package: KernelPackage {
                package: "p".into(),
                version: "1".into(),
                sha256: "0".into(),
            },
            kernel_version: "6.1.0-1-cloud-amd64".into(),
            module_order: vec![
                "kernel/drivers/virtio/virtio.ko".into(),
                "kernel/fs/overlayfs/overlay.ko".into(),
            ],
            builtin: vec![],
        };
        let out = dir.path().join("initramfs.cpio");
        write(&out, &agent, &kdir, &info).expect("write");
        let bytes = std::fs::read(&out).expect("read");
        let entries = read_entries(&bytes).expect("parse");
        let get = |n: &str| {
            entries
                .iter()
                .find(|(name, _, _)| name == n)
                .unwrap_or_else(|| panic!("{n} missing"))
        };
        assert_eq!(get("init").1.mode, S_IFREG | 0o755);
        assert_eq!(get("init").2, b"\x7fELF");
        assert_eq!(get("dev/console").1.mode, S_IFCHR | 0o600);
        assert_eq!(get("tmp").1.mode, S_IFDIR | 0o1777);
        assert_eq!(
            get("etc/vcontainer/modules.order").2,
            b"/lib/modules/6.1.0-1-cloud-amd64/kernel/drivers/virtio/virtio.ko\n/lib/modules/6.1.0-1-cloud-amd64/kernel/fs/overlayfs/overlay.ko\n"
        );
        assert_eq!(
            get("lib/modules/6.1.0-1-cloud-amd64/kernel/fs/overlayfs/overlay.ko").2,
            b"O"
        );
        // parents come before children
        let pos = |n: &str| {
            entries
                .iter()
                .position(|(name, _, _)| name == n)
                .expect("present")
        };
        assert!(
            pos("lib") < pos("lib/modules")
                && pos("lib/modules/6.1.0-1-cloud-amd64/kernel/fs")
                    < pos("lib/modules/6.1.0-1-cloud-amd64/kernel/fs/overlayfs/overlay.ko")
        );
        for d in ["newroot", "lower", "upper", "run", "proc", "sys"] {
            get(d);
        }
        // determinism
        let again = dir.path().join("again.cpio");
        write(&again, &agent, &kdir, &info).expect("write");
        assert_eq!(std::fs::read(&again).expect("read"), bytes);
    }
}
