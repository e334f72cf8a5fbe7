//! The guest kernel and its module closure, from Debian bookworm's cloud kernel (small, virtio
//! drivers as modules, boots fast under TCG). The metapackage `linux-image-cloud-<arch>` names the
//! current ABI package; we download that `.deb` with a private apt setup and take from it the
//! kernel image, `modules.builtin` and the `.ko` files of the closure.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::apt::PrivateApt;
use crate::arch::Arch;
use crate::error::{BuildError, Result};
use crate::modinfo::{name_of_path, ModInfo};
use crate::modules::{load_order, ModuleIndex, OPTIONAL_MODULES, REQUIRED_MODULES};
use crate::progress::{Progress, Stage};

/// The Debian suite the kernel comes from.
pub const KERNEL_SUITE: &str = "bookworm";

/// File names inside a kernel cache directory.
pub const VMLINUZ: &str = "vmlinuz";
pub const MODULES_DIR: &str = "modules";
pub const KERNEL_INFO: &str = "kernel.json";

/// The kernel package chosen for a build (what the kernel cache key is made of).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelPackage {
    pub package: String,
    pub version: String,
    pub sha256: String,
}

/// What a kernel cache directory holds, written as `kernel.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelInfo {
    pub package: KernelPackage,
    /// `uname -r` of the kernel, e.g. `6.1.0-37-cloud-arm64`.
    pub kernel_version: String,
    /// Module paths relative to `lib/modules/<kernel_version>/`, in load order.
    pub module_order: Vec<String>,
    /// Required modules the kernel has built in (not loaded, listed for the record).
    pub builtin: Vec<String>,
}

/// Resolves `linux-image-cloud-<arch>` to the ABI package and its index entry.
pub fn resolve(apt: &PrivateApt, arch: Arch) -> Result<crate::apt::Stanza> {
    let meta = format!("linux-image-cloud-{}", arch.debian());
    let stanza = apt.show(&meta)?;
    let image = stanza
        .depends()
        .into_iter()
        .find(|d| d.starts_with("linux-image-") && d != &meta)
        .ok_or_else(|| BuildError::Package {
            what: format!("resolving {meta}"),
            detail: format!(
                "its Depends ({:?}) name no linux-image package",
                stanza.get("Depends")
            ),
        })?;
    apt.show(&image)
}

/// Extracts the kernel image and the module closure from `deb` into `out` (which must exist)
/// and returns what it wrote.
pub fn extract(
    deb: &Path,
    package: KernelPackage,
    arch: Arch,
    out: &Path,
    progress: &mut dyn FnMut(Progress),
) -> Result<KernelInfo> {
    progress(Progress::new(
        Stage::Modules,
        format!("reading module info from {}", package.package),
    ));
    // Pass 1: kernel image, built-in list, every module's .modinfo.
    let mut kernel_version = None;
    let mut index = ModuleIndex::default();
    let mut compressed_modules = 0usize;
    let vmlinuz_path = out.join(VMLINUZ);
    crate::deb::for_each_file(deb, &mut |path, reader| {
        if let Some(kver) = path.strip_prefix("boot/vmlinuz-") {
            kernel_version = Some(kver.to_string());
            let mut file = std::fs::File::create(&vmlinuz_path)
                .map_err(BuildError::io("writing kernel", &vmlinuz_path))?;
            std::io::copy(reader, &mut file)
                .map_err(BuildError::io("writing kernel", &vmlinuz_path))?;
            return Ok(());
        }
        let Some(rest) = path
            .strip_prefix("lib/modules/")
            .or_else(|| path.strip_prefix("usr/lib/modules/"))
        else {
            return Ok(());
        };
        let Some((_kver, rel)) = rest.split_once('/') else {
            return Ok(());
        };
        if rel == "modules.builtin" {
            let mut text = String::new();
            reader
                .read_to_string(&mut text)
                .map_err(BuildError::io("reading modules.builtin", deb))?;
            index.add_builtin_list(&text);
        } else if rel.ends_with(".ko.xz") || rel.ends_with(".ko.zst") || rel.ends_with(".ko.gz") {
            compressed_modules += 1;
        } else if let Some(name) = name_of_path(rel) {
            let mut bytes = Vec::new();
            reader
                .read_to_end(&mut bytes)
                .map_err(BuildError::io("reading module", deb))?;
            let info = ModInfo::from_elf(&bytes)
                .map_err(|e| BuildError::Modules(format!("{rel}: {e}")))?;
            index.modules.insert(name, (rel.to_string(), info));
        }
        Ok(())
    })?;
    let kernel_version = kernel_version.ok_or_else(|| BuildError::Package {
        what: format!("unpacking {}", deb.display()),
        detail: "the package has no boot/vmlinuz-*".to_string(),
    })?;
    check_kernel_image(&vmlinuz_path, arch)?;
    if index.modules.is_empty() && compressed_modules > 0 {
        return Err(BuildError::Modules(format!(
            "{} ships {compressed_modules} compressed modules (.ko.xz/.ko.zst); the builder only handles uncompressed .ko",
            package.package
        )));
    }

    let order =
        load_order(&index, REQUIRED_MODULES, OPTIONAL_MODULES).map_err(BuildError::Modules)?;
    let builtin: Vec<String> = REQUIRED_MODULES
        .iter()
        .chain(OPTIONAL_MODULES)
        .map(|m| crate::modinfo::normalize(m))
        .filter(|m| index.builtin.contains(m))
        .collect();
    for (name, (_, info)) in &index.modules {
        if order.iter().any(|(n, _)| n == name) {
            if let Some(vm) = &info.vermagic {
                if !vm.starts_with(&format!("{kernel_version} ")) && vm != &kernel_version {
                    return Err(BuildError::Modules(format!(
                        "{name}: vermagic {vm:?} does not match kernel {kernel_version}"
                    )));
                }
            }
        }
    }
    progress(Progress::new(
        Stage::Modules,
        format!(
            "{} modules to load: {}",
            order.len(),
            order
                .iter()
                .map(|(n, _)| n.as_str())
                .collect::<Vec<_>>()
                .join(" ")
        ),
    ));

    // Pass 2: copy the closure's .ko files.
    let wanted: BTreeMap<&str, ()> = order.iter().map(|(_, p)| (p.as_str(), ())).collect();
    let modules_dir = out.join(MODULES_DIR);
    crate::deb::for_each_file(deb, &mut |path, reader| {
        let rel = path
            .strip_prefix("lib/modules/")
            .or_else(|| path.strip_prefix("usr/lib/modules/"))
            .and_then(|r| r.split_once('/'))
            .map(|(_, rel)| rel);
        let Some(rel) = rel.filter(|r| wanted.contains_key(r)) else {
            return Ok(());
        };
        let dest = modules_dir.join(rel);
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent)
                .map_err(BuildError::io("creating module dir", parent))?;
        }
        let mut file =
            std::fs::File::create(&dest).map_err(BuildError::io("writing module", &dest))?;
        std::io::copy(reader, &mut file).map_err(BuildError::io("writing module", &dest))?;
        Ok(())
    })?;
    let info = KernelInfo {
        package,
        kernel_version,
        module_order: order.into_iter().map(|(_, p)| p).collect(),
        builtin,
    };
    for rel in &info.module_order {
        let p = modules_dir.join(rel);
        if !p.is_file() {
            return Err(BuildError::Modules(format!(
                "{} was not extracted",
                p.display()
            )));
        }
    }
    let json = out.join(KERNEL_INFO);
    let text = serde_json::to_vec_pretty(&info)
        .map_err(|e| BuildError::io("encoding kernel.json", &json)(e.into()))?;
    std::fs::write(&json, text).map_err(BuildError::io("writing kernel.json", &json))?;
    Ok(info)
}

/// Reads `kernel.json` of a finished kernel directory.
pub fn read_info(dir: &Path) -> Option<KernelInfo> {
    let text = std::fs::read(dir.join(KERNEL_INFO)).ok()?;
    serde_json::from_slice(&text).ok()
}

/// Checks the image is what `-kernel` expects for the arch: an arm64 `Image` ("ARM\x64" at
/// 0x38; Debian ships it uncompressed) or an x86 bzImage ("HdrS" at 0x202).
fn check_kernel_image(path: &PathBuf, arch: Arch) -> Result<()> {
    let mut head = [0u8; 0x210];
    let mut f = std::fs::File::open(path).map_err(BuildError::io("reading kernel", path))?;
    f.read_exact(&mut head)
        .map_err(BuildError::io("reading kernel header", path))?;
    let ok = match arch {
        Arch::Aarch64 => &head[0x38..0x3c] == b"ARM\x64",
        Arch::X86_64 => &head[0x202..0x206] == b"HdrS",
    };
    if ok {
        Ok(())
    } else {
        Err(BuildError::Package {
            what: format!("checking {}", path.display()),
            detail: format!("not a bootable {arch} kernel image (compressed or wrong arch?)"),
        })
    }
}
