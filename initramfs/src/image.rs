//! Putting the parts together: which part can be reused, building the missing ones under the
//! lock, and the manifest that names the result.

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::apt::PrivateApt;
use crate::arch::Arch;
use crate::cache::{self, key, part_dir, sha256_file, BuildLock, Staging, BUILDER_VERSION};
use crate::error::{BuildError, Result};
use crate::kernel::{self, KernelInfo, KernelPackage, KERNEL_SUITE, VMLINUZ};
use crate::lock::Lock;
use crate::manifest::{Artifact, Manifest};
use crate::modules::{OPTIONAL_MODULES, REQUIRED_MODULES};
use crate::progress::{Progress, Stage};
use crate::rootfs::{self, ROOTFS_SUITE};
use crate::sources::Mirrors;

/// What to build.
#[derive(Debug, Clone)]
pub struct BuildRequest {
    pub arch: Arch,
    /// Static musl agent binary for `arch`; becomes `/init`.
    pub agent: PathBuf,
    /// E.g. `~/.cache/vcontainer`.
    pub cache_dir: PathBuf,
    /// Ask the mirror for the current kernel even if one is cached (otherwise the kernel last
    /// resolved is reused and a build needs no network unless the rootfs is missing).
    pub refresh_kernel: bool,
    /// Never touch the network: a part that is not in the cache fails the build at once,
    /// naming it (an initramfs for a new agent is still made: it needs nothing from outside).
    pub offline: bool,
    /// Build exactly these package versions (kernel and root filesystem), and fail unless every
    /// `.deb` has the locked sha256.
    pub lock: Option<Lock>,
    /// The mirrors to use instead of the host's apt sources (`--mirror`).
    pub mirrors: Option<Mirrors>,
}

impl BuildRequest {
    pub fn new(arch: Arch, agent: impl Into<PathBuf>, cache_dir: impl Into<PathBuf>) -> Self {
        BuildRequest {
            arch,
            agent: agent.into(),
            cache_dir: cache_dir.into(),
            refresh_kernel: false,
            offline: false,
            lock: None,
            mirrors: None,
        }
    }

    fn images(&self) -> PathBuf {
        self.cache_dir.join("images").join(self.arch.name())
    }
}

/// A complete guest image: everything QEMU needs for one architecture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestImage {
    pub arch: Arch,
    pub kernel: PathBuf,
    pub initramfs: PathBuf,
    pub rootfs: PathBuf,
    pub manifest: PathBuf,
    pub kernel_version: String,
}

const CURRENT_KERNEL: &str = "current-kernel";
const INITRAMFS_FILE: &str = "initramfs.cpio";
const ROOTFS_FILE: &str = "rootfs.sqfs";
const MANIFEST_FILE: &str = "manifest.json";
const PACKAGES_FILE: &str = "packages.json";

fn kernel_key(arch: Arch, pkg: &KernelPackage) -> String {
    key(&[
        ("builder", BUILDER_VERSION),
        ("component", "kernel"),
        ("arch", arch.name()),
        ("suite", KERNEL_SUITE),
        ("package", &pkg.package),
        ("version", &pkg.version),
        ("sha256", &pkg.sha256),
        ("required_modules", &REQUIRED_MODULES.join(",")),
        ("optional_modules", &OPTIONAL_MODULES.join(",")),
    ])
}

/// A locked build's part is its own: the same recipe with exactly the lock's packages.
fn rootfs_key(arch: Arch, lock: Option<&Lock>) -> String {
    let recipe = key(&[
        ("builder", BUILDER_VERSION),
        ("component", "rootfs"),
        ("arch", arch.name()),
        ("suite", ROOTFS_SUITE),
        ("packages", &rootfs::packages().join(",")),
        ("path_excludes", &rootfs::PATH_EXCLUDES.join(",")),
        (
            "alternatives",
            &format!("{:?}", crate::sysfiles::ALTERNATIVES),
        ),
        ("groups", &crate::sysfiles::SYSTEM_GROUPS.join(",")),
        ("squashfs", rootfs::SQUASHFS_OPTIONS),
        ("clamp", &rootfs::SQUASHFS_CLAMP_EPOCH.to_string()),
        ("sources", "removed"),
    ]);
    match lock {
        Some(lock) => key(&[("recipe", &recipe), ("lock", &lock.packages_digest())]),
        None => recipe,
    }
}

fn initramfs_key(arch: Arch, kernel_key: &str, agent_sha256: &str) -> String {
    key(&[
        ("builder", BUILDER_VERSION),
        ("component", "initramfs"),
        ("arch", arch.name()),
        ("kernel", kernel_key),
        ("agent_sha256", agent_sha256),
    ])
}

fn image_key(kernel: &str, rootfs: &str, initramfs: &str) -> String {
    key(&[
        ("kernel", kernel),
        ("rootfs", rootfs),
        ("initramfs", initramfs),
    ])
}

/// The keys of a request, as far as they can be known without the network.
struct Keys {
    kernel: String,
    rootfs: String,
    initramfs: String,
    image: String,
}

/// The kernel part `current-kernel` points at, if it is still what this builder would make from
/// the same package: a changed module list changes the kernel key, and the part must then be
/// rebuilt (the pointer alone would keep serving the old module set).
fn current_kernel(images: &Path, arch: Arch) -> Option<(String, PathBuf, KernelInfo)> {
    let k = std::fs::read_to_string(images.join(CURRENT_KERNEL)).ok()?;
    let k = k.trim().to_string();
    let dir = part_dir(images, "kernel", &k);
    let info = kernel::read_info(&dir)?;
    (kernel_key(arch, &info.package) == k).then_some((k, dir, info))
}

/// The kernel part a lock names, if it is in the cache.
fn locked_kernel(images: &Path, arch: Arch, lock: &Lock) -> Option<(String, PathBuf, KernelInfo)> {
    let k = kernel_key(arch, &lock.kernel);
    let dir = part_dir(images, "kernel", &k);
    let info = kernel::read_info(&dir)?;
    (info.package == lock.kernel).then_some((k, dir, info))
}

fn offline_keys(req: &BuildRequest, agent_sha256: &str) -> Option<Keys> {
    let (kernel, _, _) = match &req.lock {
        Some(lock) => locked_kernel(&req.images(), req.arch, lock)?,
        None => current_kernel(&req.images(), req.arch)?,
    };
    let rootfs = rootfs_key(req.arch, req.lock.as_ref());
    let initramfs = initramfs_key(req.arch, &kernel, agent_sha256);
    let image = image_key(&kernel, &rootfs, &initramfs);
    Some(Keys {
        kernel,
        rootfs,
        initramfs,
        image,
    })
}

/// Cheap check: the image for this request is complete in the cache (manifest present, its keys
/// equal the request's, every artifact present with the recorded size). Hashes only the agent.
pub fn cached(req: &BuildRequest) -> Option<GuestImage> {
    let agent_sha = sha256_file(&req.agent).ok()?;
    let keys = offline_keys(req, &agent_sha)?;
    lookup(req, &keys)
}

fn lookup(req: &BuildRequest, keys: &Keys) -> Option<GuestImage> {
    let images = req.images();
    let manifest_path = part_dir(&images, "image", &keys.image).join(MANIFEST_FILE);
    let m = Manifest::read(&manifest_path)?;
    // A manifest of an older builder has no package list: rewrite it (all parts are reused).
    if m.kernel.key != keys.kernel
        || m.rootfs.key != keys.rootfs
        || m.initramfs.key != keys.initramfs
        || m.packages.is_empty()
    {
        return None;
    }
    for art in [&m.kernel, &m.initramfs, &m.rootfs] {
        let size = std::fs::metadata(images.join(&art.path)).ok()?.len();
        if size != art.size {
            return None;
        }
    }
    Some(GuestImage {
        arch: req.arch,
        kernel: images.join(&m.kernel.path),
        initramfs: images.join(&m.initramfs.path),
        rootfs: images.join(&m.rootfs.path),
        manifest: manifest_path,
        kernel_version: m.kernel_version,
    })
}

/// Builds whatever part of the image is missing and returns the complete image.
pub fn build(req: &BuildRequest, progress: &mut dyn FnMut(Progress)) -> Result<GuestImage> {
    let images = req.images();
    let agent =
        std::fs::read(&req.agent).map_err(BuildError::io("reading agent binary", &req.agent))?;
    crate::agent::check(&req.agent, &agent, req.arch)?;
    if let Some(lock) = &req.lock {
        if lock.rootfs_suite != ROOTFS_SUITE || lock.kernel_suite != KERNEL_SUITE {
            return Err(BuildError::Package {
                what: "building from the lock file".into(),
                detail: format!(
                    "it locks {} (kernel {}), this builder makes {ROOTFS_SUITE} (kernel {KERNEL_SUITE}): write a new lock with this version",
                    lock.rootfs_suite, lock.kernel_suite
                ),
            });
        }
    }
    let agent_sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&agent));

    let _lock = BuildLock::acquire(&images, &mut || {
        progress(Progress::new(
            Stage::Cache,
            format!(
                "waiting for another build of {} (lock {})",
                req.arch,
                images.join(".lock").display()
            ),
        ))
    })?;
    if !req.refresh_kernel {
        if let Some(keys) = offline_keys(req, &agent_sha) {
            if let Some(img) = lookup(req, &keys) {
                progress(Progress::new(
                    Stage::Cache,
                    format!("up to date: {}", img.manifest.display()),
                ));
                return Ok(img);
            }
        }
    }
    let mut mirrors: Option<Mirrors> = None;
    let mut mirrors = |missing: &str| -> Result<Mirrors> {
        if req.offline {
            return Err(BuildError::Offline {
                arch: req.arch.name().into(),
                missing: missing.into(),
                cache: images.clone(),
            });
        }
        if mirrors.is_none() {
            let mut m = match &req.mirrors {
                Some(m) => m.clone(),
                None => Mirrors::from_host()?,
            };
            m.allow_expired = req.lock.is_some();
            mirrors = Some(m);
        }
        mirrors.clone().ok_or_else(|| BuildError::NoMirror {
            looked_in: "host".into(),
        })
    };

    let (kkey, kdir, kinfo) = ensure_kernel(req, &images, &mut mirrors, progress)?;
    let rkey = rootfs_key(req.arch, req.lock.as_ref());
    let rdir = ensure_rootfs(req, &images, &rkey, &mut mirrors, progress)?;
    let ikey = initramfs_key(req.arch, &kkey, &agent_sha);
    let idir = ensure_initramfs(req, &images, &ikey, &kdir, &kinfo, progress)?;

    progress(Progress::new(Stage::Cache, "writing the manifest…"));
    let packages = rootfs_packages(&rdir)?;
    let art = |dir: &Path, file: &str, key: &str| -> Result<Artifact> {
        let path = dir.join(file);
        let size = std::fs::metadata(&path)
            .map_err(BuildError::io("reading artifact", &path))?
            .len();
        let rel = path
            .strip_prefix(&images)
            .unwrap_or(&path)
            .to_string_lossy()
            .into_owned();
        Ok(Artifact {
            path: rel,
            size,
            sha256: cache::part_file_sha256(&path)?,
            key: key.to_string(),
        })
    };
    let manifest = Manifest {
        builder_version: BUILDER_VERSION.to_string(),
        arch: req.arch.name().to_string(),
        kernel_version: kinfo.kernel_version.clone(),
        kernel_package: kinfo.package.package.clone(),
        kernel_package_version: kinfo.package.version.clone(),
        kernel: art(&kdir, VMLINUZ, &kkey)?,
        initramfs: art(&idir, INITRAMFS_FILE, &ikey)?,
        rootfs: art(&rdir, ROOTFS_FILE, &rkey)?,
        modules: crate::initramfs::modules_order(&kinfo)
            .lines()
            .map(str::to_string)
            .collect(),
        rootfs_suite: ROOTFS_SUITE.to_string(),
        engines: crate::packages::engines(&packages),
        packages,
    };
    let keys = Keys {
        image: image_key(&kkey, &rkey, &ikey),
        kernel: kkey,
        rootfs: rkey,
        initramfs: ikey,
    };
    let idir_final = part_dir(&images, "image", &keys.image);
    let staging = Staging::new(&idir_final)?;
    manifest.write(&staging.tmp.join(MANIFEST_FILE))?;
    staging.publish()?;
    lookup(req, &keys).ok_or_else(|| BuildError::Package {
        what: "checking the finished image".into(),
        detail: format!(
            "{} does not describe the artifacts just built",
            idir_final.join(MANIFEST_FILE).display()
        ),
    })
}

/// The lock file of a built image: its kernel package (from the kernel part's record, which has
/// the `.deb` sha256) and every root filesystem package.
pub fn lock_of(image: &GuestImage) -> Result<Lock> {
    let manifest = Manifest::read(&image.manifest).ok_or_else(|| BuildError::Package {
        what: "writing the lock file".into(),
        detail: format!("cannot read {}", image.manifest.display()),
    })?;
    let images = image
        .manifest
        .parent()
        .and_then(Path::parent)
        .unwrap_or(Path::new("."));
    let kernel = kernel::read_info(&part_dir(images, "kernel", &manifest.kernel.key))
        .ok_or_else(|| BuildError::Package {
            what: "writing the lock file".into(),
            detail: format!("the kernel part of {} is gone", image.manifest.display()),
        })?
        .package;
    let lock = Lock {
        format: crate::lock::LOCK_FORMAT.into(),
        arch: manifest.arch,
        rootfs_suite: manifest.rootfs_suite,
        kernel_suite: KERNEL_SUITE.into(),
        kernel,
        packages: manifest.packages,
    };
    lock.check(image.arch.name())
        .map_err(|detail| BuildError::Package {
            what: "writing the lock file".into(),
            detail,
        })?;
    Ok(lock)
}

/// The locked versions apt could not find, from mmdebstrap's log (`Version '…' for '…' was not
/// found`): the usual failure of a lock against a mirror that moved on.
fn missing_locked_versions(log: &Path) -> Option<BuildError> {
    let text = std::fs::read_to_string(log).ok()?;
    let differences: Vec<String> = text
        .lines()
        .filter_map(|l| {
            let rest = l.split("Version '").nth(1)?;
            let (version, rest) = rest.split_once("' for '")?;
            let (name, _) = rest.split_once("' was not found")?;
            Some(format!("{name} {version}: not on the mirror"))
        })
        .collect();
    (!differences.is_empty()).then(|| BuildError::NotAsLocked {
        what: "the engines root filesystem".into(),
        differences,
    })
}

/// The packages of a rootfs part, as its build recorded them.
fn rootfs_packages(rdir: &Path) -> Result<Vec<crate::packages::PackagePin>> {
    let path = rdir.join(PACKAGES_FILE);
    let bytes = std::fs::read(&path).map_err(BuildError::io("reading the package list", &path))?;
    serde_json::from_slice(&bytes).map_err(|e| BuildError::Package {
        what: format!("reading {}", path.display()),
        detail: e.to_string(),
    })
}

/// Pins every `.deb` named in `list` (what the build used) to its sha256, while the package
/// cache certainly holds them, and writes the result as the part's `packages.json`.
fn record_packages(list: &Path, debs: &Path, out: &Path) -> Result<()> {
    let text = std::fs::read_to_string(list).map_err(BuildError::io("reading", list))?;
    let packages = crate::packages::newest_of_each(
        text.lines()
            .filter_map(crate::packages::parse_deb_file_name),
    );
    if packages.is_empty() {
        return Err(BuildError::Package {
            what: "recording the image's packages".into(),
            detail: format!("{} names no .deb", list.display()),
        });
    }
    let pins = crate::packages::pins(&packages, debs);
    let bytes = serde_json::to_vec_pretty(&pins)
        .map_err(|e| BuildError::io("encoding the package list", out)(e.into()))?;
    cache::write_atomic(out, &bytes)
}

/// The kernel part: reused from `current-kernel` unless missing or a refresh is asked for.
fn ensure_kernel(
    req: &BuildRequest,
    images: &Path,
    mirrors: &mut dyn FnMut(&str) -> Result<Mirrors>,
    progress: &mut dyn FnMut(Progress),
) -> Result<(String, PathBuf, KernelInfo)> {
    let pointer = images.join(CURRENT_KERNEL);
    if let Some(lock) = &req.lock {
        if let Some(found) = locked_kernel(images, req.arch, lock) {
            progress(Progress::new(
                Stage::Kernel,
                format!("cached {} (locked)", found.2.kernel_version),
            ));
            return Ok(found);
        }
    } else if !req.refresh_kernel {
        if let Some((k, dir, info)) = current_kernel(images, req.arch) {
            progress(Progress::new(
                Stage::Kernel,
                format!(
                    "cached {} ({} {})",
                    info.kernel_version, info.package.package, info.package.version
                ),
            ));
            return Ok((k, dir, info));
        }
    }
    let started = Instant::now();
    let debarch = req.arch.debian();
    let apt = PrivateApt::create(
        &req.cache_dir
            .join("apt")
            .join(format!("{KERNEL_SUITE}-{debarch}")),
        &req.cache_dir
            .join("debs")
            .join(format!("{KERNEL_SUITE}-{debarch}")),
        KERNEL_SUITE,
        debarch,
        &mirrors(&format!(
            "the kernel (linux-image-cloud-{debarch} from {KERNEL_SUITE})"
        ))?,
    )?;
    progress(Progress::new(
        Stage::Kernel,
        format!("apt-get update ({KERNEL_SUITE}, {debarch})…"),
    ));
    apt.update()?;
    let stanza = match &req.lock {
        Some(lock) => locked_kernel_stanza(&apt, lock)?,
        None => kernel::resolve(&apt, req.arch)?,
    };
    let pkg = KernelPackage {
        package: stanza.require("Package")?.to_string(),
        version: stanza.require("Version")?.to_string(),
        sha256: stanza.require("SHA256")?.to_string(),
    };
    let kkey = kernel_key(req.arch, &pkg);
    let dir = part_dir(images, "kernel", &kkey);
    let info = match kernel::read_info(&dir) {
        Some(info) => info,
        None => {
            progress(Progress::new(
                Stage::Kernel,
                format!("downloading {} {}…", pkg.package, pkg.version),
            ));
            let deb = apt.download(&stanza)?;
            let staging = Staging::new(&dir)?;
            let info = kernel::extract(&deb, pkg, req.arch, &staging.tmp, progress)?;
            staging.publish()?;
            info
        }
    };
    // A locked kernel is found by its lock; the pointer stays the newest one resolved.
    if req.lock.is_none() {
        cache::write_atomic(&pointer, format!("{kkey}\n").as_bytes())?;
    }
    progress(Progress::new(
        Stage::Kernel,
        format!(
            "{} ready in {:.1} s",
            info.kernel_version,
            started.elapsed().as_secs_f64()
        ),
    ));
    Ok((kkey, dir, info))
}

/// The index stanza of the locked kernel package, refused unless the mirror's sha256 is the
/// locked one.
fn locked_kernel_stanza(apt: &PrivateApt, lock: &Lock) -> Result<crate::apt::Stanza> {
    let k = &lock.kernel;
    let not_as_locked = |detail: String| BuildError::NotAsLocked {
        what: "the kernel package".into(),
        differences: vec![detail],
    };
    let stanza = apt
        .show(&format!("{}={}", k.package, k.version))
        .map_err(|_| not_as_locked(format!("{} {}: not on the mirror", k.package, k.version)))?;
    let sha = stanza.require("SHA256")?;
    if sha != k.sha256 {
        return Err(not_as_locked(format!(
            "{} {}: the mirror's .deb has sha256 {sha}, the lock {}",
            k.package, k.version, k.sha256
        )));
    }
    Ok(stanza)
}

fn ensure_rootfs(
    req: &BuildRequest,
    images: &Path,
    rkey: &str,
    mirrors: &mut dyn FnMut(&str) -> Result<Mirrors>,
    progress: &mut dyn FnMut(Progress),
) -> Result<PathBuf> {
    let dir = part_dir(images, "rootfs", rkey);
    // A part made before packages were recorded is remade (from the package cache, in seconds).
    if dir.join(ROOTFS_FILE).is_file() && dir.join(PACKAGES_FILE).is_file() {
        progress(Progress::new(
            Stage::Rootfs,
            format!("cached {}", dir.display()),
        ));
        return Ok(dir);
    }
    let mirrors = mirrors(&format!(
        "the engines root filesystem ({ROOTFS_SUITE} packages)"
    ))?;
    let started = Instant::now();
    let staging = Staging::new(&dir)?;
    let tree = staging.tmp.join("tree");
    let log = staging.tmp.join("build.log");
    let debs = req
        .cache_dir
        .join("debs")
        .join(format!("{ROOTFS_SUITE}-{}", req.arch.debian()));
    let deb_list = staging.tmp.join("debs.list");
    let include = match &req.lock {
        Some(lock) => lock.include_args(),
        None => rootfs::packages().iter().map(|p| p.to_string()).collect(),
    };
    rootfs::unpack(
        req.arch, &mirrors, &include, &tree, &debs, &deb_list, &log, progress,
    )
    .map_err(|e| match &req.lock {
        Some(_) => missing_locked_versions(&log).unwrap_or(e),
        None => e,
    })?;
    record_packages(&deb_list, &debs, &staging.tmp.join(PACKAGES_FILE))?;
    if let Some(lock) = &req.lock {
        let used = rootfs_packages(&staging.tmp)?;
        let differences = crate::lock::differences(&lock.packages, &used);
        if !differences.is_empty() {
            return Err(BuildError::NotAsLocked {
                what: "the engines root filesystem".into(),
                differences,
            });
        }
    }
    let unpacked = started.elapsed();
    progress(Progress::new(
        Stage::Rootfs,
        format!(
            "unpacked in {:.1} s; writing users, groups, alternatives, CA bundle",
            unpacked.as_secs_f64()
        ),
    ));
    crate::sysfiles::apply(&tree)?;
    let squash_start = Instant::now();
    rootfs::squash(&tree, &staging.tmp.join(ROOTFS_FILE), &log, progress)?;
    cache::remove_tree(&tree)?;
    let size = std::fs::metadata(staging.tmp.join(ROOTFS_FILE))
        .map(|m| m.len())
        .unwrap_or(0);
    progress(Progress::new(
        Stage::Squashfs,
        format!(
            "{} MB in {:.1} s",
            size / 1_000_000,
            squash_start.elapsed().as_secs_f64()
        ),
    ));
    staging.publish()
}

fn ensure_initramfs(
    req: &BuildRequest,
    images: &Path,
    ikey: &str,
    kdir: &Path,
    kinfo: &KernelInfo,
    progress: &mut dyn FnMut(Progress),
) -> Result<PathBuf> {
    let dir = part_dir(images, "initramfs", ikey);
    if dir.join(INITRAMFS_FILE).is_file() {
        progress(Progress::new(
            Stage::Initramfs,
            format!("cached {}", dir.display()),
        ));
        return Ok(dir);
    }
    progress(Progress::new(
        Stage::Initramfs,
        format!(
            "writing cpio ({} modules + agent)",
            kinfo.module_order.len()
        ),
    ));
    let staging = Staging::new(&dir)?;
    crate::initramfs::write(&staging.tmp.join(INITRAMFS_FILE), &req.agent, kdir, kinfo)?;
    staging.publish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_change_changes_only_the_initramfs_key() {
        let pkg = KernelPackage {
            package: "linux-image-6.1.0-37-cloud-arm64".into(),
            version: "6.1.140-1".into(),
            sha256: "aa".into(),
        };
        let k = kernel_key(Arch::Aarch64, &pkg);
        assert_eq!(k, kernel_key(Arch::Aarch64, &pkg));
        assert_ne!(k, kernel_key(Arch::X86_64, &pkg));
        assert_eq!(
            rootfs_key(Arch::Aarch64, None),
            rootfs_key(Arch::Aarch64, None)
        );
        assert_ne!(
            rootfs_key(Arch::Aarch64, None),
            rootfs_key(Arch::X86_64, None)
        );
        assert_ne!(
            initramfs_key(Arch::Aarch64, &k, "a1"),
            initramfs_key(Arch::Aarch64, &k, "a2")
        );
    }

    #[test]
    fn offline_with_nothing_cached_fails_naming_the_part_and_the_fix() {
        let dir = tempfile::tempdir().expect("tempdir");
        let agent = dir.path().join("agent");
        std::fs::write(
            &agent,
            crate::agent::static_elf(object::Architecture::X86_64),
        )
        .expect("write");
        let mut req = BuildRequest::new(Arch::X86_64, &agent, dir.path());
        req.offline = true;
        let err = build(&req, &mut |_| {}).expect_err("nothing cached");
        let text = err.to_string();
        assert!(matches!(err, BuildError::Offline { .. }), "{text}");
        assert!(
            text.contains("linux-image-cloud-amd64")
                && text.contains("vcontainer image build -a x86_64")
                && text.contains("--blob-dir"),
            "{text}"
        );
        // nothing half-made was left behind
        let images = dir.path().join("images/x86_64");
        let left: Vec<_> = std::fs::read_dir(&images)
            .map(|d| d.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(
            left.iter().all(|n| n == ".lock"),
            "{left:?} in {}",
            images.display()
        );
    }

    #[test]
    fn cached_is_none_for_an_empty_cache() {
        let dir = tempfile::tempdir().expect("tempdir");
        let agent = dir.path().join("agent");
        std::fs::write(&agent, b"x").expect("write");
        assert!(cached(&BuildRequest::new(Arch::X86_64, &agent, dir.path())).is_none());
    }
}
