//! The guest kernel and its module closure, from Debian bookworm's cloud kernel (small, virtio
//! drivers as modules, boots fast under TCG). The metapackage `linux-image-cloud-<arch>` names the
//! current ABI package; we download that `.deb` with a private apt setup and take from it the
//! kernel image, `modules.builtin` and the `.ko` files of the closure. Modules may be shipped
//! compressed (`.ko.xz`, `.ko.zst`, `.ko.gz`, as Debian from trixie on and most Yocto kernels do):
//! they are indexed and written uncompressed, under their plain `.ko` paths (`modfile`).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::apt::PrivateApt;
use crate::arch::Arch;
use crate::error::{BuildError, Result};
use crate::modfile::{self, Compression};
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

/// The module closure of `suite`'s cloud kernel for `arch`, extracted into `out` (which must
/// exist), the package downloaded into `cache_dir`'s package cache unless it is there. What an
/// image build does for its own suite (`KERNEL_SUITE`), for any suite: e.g. trixie's, whose
/// modules are compressed.
pub fn fetch_closure(
    arch: Arch,
    cache_dir: &Path,
    suite: &str,
    out: &Path,
    progress: &mut dyn FnMut(Progress),
) -> Result<KernelInfo> {
    let apt = crate::package_file::fetching_apt(arch, cache_dir, suite)?;
    // The lists may be missing or stale; one update is enough to find the kernel.
    let stanza = match resolve(&apt, arch) {
        Ok(s) => s,
        Err(_) => {
            apt.update()?;
            resolve(&apt, arch)?
        }
    };
    let package = KernelPackage {
        package: stanza.require("Package")?.to_string(),
        version: stanza.require("Version")?.to_string(),
        sha256: stanza.require("SHA256")?.to_string(),
    };
    let deb = apt.download(&stanza)?;
    extract(&deb, package, arch, out, progress)
}

/// A kernel's files laid out as its package installs them (`boot/vmlinuz-<kver>`,
/// `lib/modules/<kver>/…`).
#[derive(Debug, Clone, Copy)]
pub enum KernelTree<'a> {
    /// A Debian kernel package.
    Deb(&'a Path),
    /// A directory that is a kernel's `lib/modules` (one `<kver>/` inside): an image directory's
    /// modules, from a Yocto build or any other distribution. It has no kernel image.
    ModulesDir(&'a Path),
}

impl KernelTree<'_> {
    fn describe(&self) -> String {
        match self {
            KernelTree::Deb(p) | KernelTree::ModulesDir(p) => p.display().to_string(),
        }
    }

    /// Calls `visit(path, reader)` for every regular file, paths as in the package.
    fn for_each_file(
        &self,
        visit: &mut dyn FnMut(&str, &mut dyn Read) -> Result<()>,
    ) -> Result<()> {
        match self {
            KernelTree::Deb(deb) => crate::deb::for_each_file(deb, visit),
            KernelTree::ModulesDir(dir) => walk_files(dir, "lib/modules", visit),
        }
    }
}

/// Regular files below `dir`, depth first in name order, as `prefix/<relative path>`. Symlinks
/// are not followed (a kernel's `build` and `source` links point into a build tree).
fn walk_files(
    dir: &Path,
    prefix: &str,
    visit: &mut dyn FnMut(&str, &mut dyn Read) -> Result<()>,
) -> Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(BuildError::io("reading the modules directory", dir))?
        .collect::<std::io::Result<_>>()
        .map_err(BuildError::io("reading the modules directory", dir))?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let name = entry.file_name();
        let rel = format!("{prefix}/{}", name.to_string_lossy());
        let kind = entry
            .file_type()
            .map_err(BuildError::io("reading the modules directory", &path))?;
        if kind.is_dir() {
            walk_files(&path, &rel, visit)?;
        } else if kind.is_file() {
            let mut file =
                std::fs::File::open(&path).map_err(BuildError::io("reading module", &path))?;
            visit(&rel, &mut file)?;
        }
    }
    Ok(())
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
    extract_tree(KernelTree::Deb(deb), package, arch, out, progress)
}

/// Extracts the module closure (and the kernel image, when the tree has one) into `out`.
pub fn extract_tree(
    tree: KernelTree<'_>,
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
    let mut module_versions = std::collections::BTreeSet::new();
    let mut index = ModuleIndex::default();
    // Plain `….ko` path → the file in the package and its compression.
    let mut packed: BTreeMap<String, (String, Option<Compression>)> = BTreeMap::new();
    let vmlinuz_path = out.join(VMLINUZ);
    tree.for_each_file(&mut |path, reader| {
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
        let Some((kver, rel)) = rest.split_once('/') else {
            return Ok(());
        };
        module_versions.insert(kver.to_string());
        if rel == "modules.builtin" {
            let mut text = String::new();
            reader
                .read_to_string(&mut text)
                .map_err(BuildError::io("reading modules.builtin", tree.describe()))?;
            index.add_builtin_list(&text);
        } else if let Some((plain, compression)) = modfile::split(rel) {
            let Some(name) = name_of_path(plain) else {
                return Ok(());
            };
            let bytes = modfile::read(reader, compression)
                .map_err(|e| BuildError::Modules(format!("{rel}: {e}")))?;
            let info = ModInfo::from_elf(&bytes)
                .map_err(|e| BuildError::Modules(format!("{rel}: {e}")))?;
            index.modules.insert(name, (plain.to_string(), info));
            packed.insert(plain.to_string(), (rel.to_string(), compression));
        }
        Ok(())
    })?;
    let kernel_version = match (tree, kernel_version) {
        (KernelTree::Deb(_), Some(kver)) => {
            check_kernel_image(&vmlinuz_path, arch)?;
            kver
        }
        (KernelTree::Deb(deb), None) => {
            return Err(BuildError::Package {
                what: format!("unpacking {}", deb.display()),
                detail: "the package has no boot/vmlinuz-*".to_string(),
            })
        }
        (KernelTree::ModulesDir(dir), _) => {
            let mut versions = module_versions.into_iter();
            match (versions.next(), versions.next()) {
                (Some(kver), None) => kver,
                (None, _) => {
                    return Err(BuildError::Modules(format!(
                        "{} holds no <kernel version>/ directory with modules",
                        dir.display()
                    )))
                }
                (Some(a), Some(b)) => {
                    return Err(BuildError::Modules(format!(
                        "{} holds modules of more than one kernel ({a}, {b}, …); keep only the booted kernel's",
                        dir.display()
                    )))
                }
            }
        }
    };
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

    // Pass 2: write the closure's modules, uncompressed, under their plain `.ko` paths.
    let wanted: BTreeMap<&str, (&str, Option<Compression>)> = order
        .iter()
        .filter_map(|(_, plain)| {
            packed
                .get(plain)
                .map(|(file, c)| (file.as_str(), (plain.as_str(), *c)))
        })
        .collect();
    let modules_dir = out.join(MODULES_DIR);
    tree.for_each_file(&mut |path, reader| {
        let rel = path
            .strip_prefix("lib/modules/")
            .or_else(|| path.strip_prefix("usr/lib/modules/"))
            .and_then(|r| r.split_once('/'))
            .map(|(_, rel)| rel);
        let Some(&(plain, compression)) = rel.and_then(|r| wanted.get(r)) else {
            return Ok(());
        };
        let dest = modules_dir.join(plain);
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent)
                .map_err(BuildError::io("creating module dir", parent))?;
        }
        let bytes = modfile::read(reader, compression)
            .map_err(|e| BuildError::Modules(format!("{plain}: {e}")))?;
        std::fs::write(&dest, bytes).map_err(BuildError::io("writing module", &dest))?;
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
pub(crate) fn check_kernel_image(path: &Path, arch: Arch) -> Result<()> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;
    use std::process::{Command, Stdio};

    use object::write::{Object as WObject, StandardSection};
    use object::{Architecture, BinaryFormat, Endianness, SectionKind};

    const KVER: &str = "6.12.0-test-amd64";

    /// A relocatable ELF with a `.modinfo`, as a `.ko` is.
    fn module(name: &str, depends: &str) -> Vec<u8> {
        let mut obj = WObject::new(BinaryFormat::Elf, Architecture::X86_64, Endianness::Little);
        let text = obj.section_id(StandardSection::Text);
        obj.append_section_data(text, &[0u8; 4], 4);
        let info = obj.add_section(Vec::new(), b".modinfo".to_vec(), SectionKind::ReadOnlyData);
        let data = format!("depends={depends}\0name={name}\0vermagic={KVER} SMP mod_unload \0");
        obj.append_section_data(info, data.as_bytes(), 1);
        obj.write().expect("elf")
    }

    fn compress(tool: &str, data: &[u8], dest: &Path) {
        std::fs::write(dest, modfile::compress_with(tool, data)).expect("write");
    }

    /// A kernel package the way trixie ships one: every required module built in except a
    /// few, which are `.ko.xz`, `.ko.zst` and `.ko.gz` files.
    fn compressed_kernel_deb(dir: &Path) -> PathBuf {
        let root = dir.join("pkg");
        let mods = root.join("usr/lib/modules").join(KVER);
        let drivers = mods.join("kernel/drivers/virtio");
        std::fs::create_dir_all(&drivers).expect("mkdir");
        std::fs::create_dir_all(root.join("boot")).expect("mkdir");
        std::fs::create_dir_all(root.join("DEBIAN")).expect("mkdir");
        std::fs::write(
            root.join("DEBIAN/control"),
            "Package: linux-image-test\nVersion: 1\nArchitecture: amd64\nMaintainer: t <t@t>\nDescription: t\n",
        )
        .expect("control");
        let mut vmlinuz = vec![0u8; 0x400];
        vmlinuz[0x202..0x206].copy_from_slice(b"HdrS");
        std::fs::write(root.join(format!("boot/vmlinuz-{KVER}")), vmlinuz).expect("kernel");
        let as_modules = ["virtio", "virtio_ring", "virtio_rng"];
        let builtin: String = REQUIRED_MODULES
            .iter()
            .filter(|m| !as_modules.contains(m))
            .map(|m| format!("kernel/builtin/{m}.ko\n"))
            .collect();
        std::fs::write(mods.join("modules.builtin"), builtin).expect("builtin");
        compress(
            "zstd",
            &module("virtio_ring", ""),
            &drivers.join("virtio_ring.ko.zst"),
        );
        compress(
            "xz",
            &module("virtio", "virtio_ring"),
            &drivers.join("virtio.ko.xz"),
        );
        compress(
            "gzip",
            &module("virtio_rng", "virtio"),
            &drivers.join("virtio-rng.ko.gz"),
        );
        let deb = dir.join("kernel.deb");
        let st = Command::new("dpkg-deb")
            .args(["--root-owner-group", "--build"])
            .arg(&root)
            .arg(&deb)
            .stdout(Stdio::null())
            .status()
            .expect("dpkg-deb");
        assert!(st.success(), "dpkg-deb --build");
        deb
    }

    #[test]
    fn compressed_modules_are_indexed_and_written_uncompressed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let deb = compressed_kernel_deb(dir.path());
        let out = dir.path().join("out");
        std::fs::create_dir_all(&out).expect("mkdir");
        let package = KernelPackage {
            package: "linux-image-test".into(),
            version: "1".into(),
            sha256: String::new(),
        };
        let info = extract(&deb, package, Arch::X86_64, &out, &mut |_| {}).expect("extract");
        assert_eq!(info.kernel_version, KVER);
        assert_eq!(
            info.module_order,
            [
                "kernel/drivers/virtio/virtio_ring.ko",
                "kernel/drivers/virtio/virtio.ko",
                "kernel/drivers/virtio/virtio-rng.ko",
            ]
        );
        for (rel, name) in info
            .module_order
            .iter()
            .zip(["virtio_ring", "virtio", "virtio_rng"])
        {
            let bytes = std::fs::read(out.join(MODULES_DIR).join(rel)).expect("written");
            let m = ModInfo::from_elf(&bytes).expect("plain ELF");
            assert_eq!(m.name.as_deref(), Some(name));
        }
    }
}
