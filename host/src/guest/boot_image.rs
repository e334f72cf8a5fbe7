//! Guest images: from a prebuilt image directory (`--blob-dir`) or, by default, built on first
//! use into the cache (kernel, initramfs with the agent, engines rootfs), showing progress.

use std::path::PathBuf;

use vcontainer_initramfs::image_dir::{BootShape, ImageDir};
use vcontainer_initramfs::{build, BuildRequest};
pub use vcontainer_initramfs::{BuildError, GuestImage};

use crate::guest::agent_binary::{agent_binary, AgentBinaryError};
use crate::util::progress::Reporter;
use vcontainer_initramfs::Arch;

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error(transparent)]
    Agent(#[from] AgentBinaryError),
    #[error("building the {arch} guest image failed: {source}")]
    Build { arch: Arch, source: BuildError },
    #[error(transparent)]
    ImageDir(BuildError),
    #[error("no cache directory: set $VCONTAINER_CACHE_DIR, $XDG_CACHE_HOME or $HOME")]
    NoCacheDir,
    #[error("the image build task failed: {0}")]
    Task(String),
}

/// Where a guest's boot images come from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageChoice {
    /// A prebuilt image directory (`--blob-dir`, `$VDKR_BLOB_DIR`, …) instead of the cache.
    pub blob_dir: Option<PathBuf>,
    /// `--offline` / `$VCONTAINER_OFFLINE=1`: never touch the network; a guest image not in the
    /// cache (or the image directory) fails at once, naming what is missing.
    pub offline: bool,
}

/// The one environment switch a build system sets for every command.
pub const OFFLINE_ENV: &str = "VCONTAINER_OFFLINE";

/// Whether a value of [`OFFLINE_ENV`] turns offline mode on.
pub fn offline_value(value: Option<&str>) -> bool {
    matches!(value, Some("1" | "true" | "yes"))
}

/// [`OFFLINE_ENV`] of this process.
pub fn offline_from_env() -> bool {
    offline_value(std::env::var(OFFLINE_ENV).ok().as_deref())
}

impl ImageChoice {
    /// The environment that makes a `vdkr` or `vpdmn` child process boot the same image.
    pub fn cli_env(&self) -> Vec<(&'static str, PathBuf)> {
        match &self.blob_dir {
            Some(dir) => vec![
                ("VDKR_BLOB_DIR", dir.clone()),
                ("VPDMN_BLOB_DIR", dir.clone()),
            ],
            None => vec![],
        }
    }
}

/// What QEMU boots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootImage {
    pub arch: Arch,
    pub kernel: PathBuf,
    /// `None`: the kernel has its drivers built in and runs the root image's agent as init.
    pub initramfs: Option<PathBuf>,
    pub rootfs: PathBuf,
    pub rootfs_type: String,
    /// The manifest that says what these files are.
    pub manifest: PathBuf,
    /// Engine name → package version, as the manifest records them (empty if it does not).
    pub engines: std::collections::BTreeMap<String, String>,
}

impl From<GuestImage> for BootImage {
    fn from(g: GuestImage) -> Self {
        BootImage {
            arch: g.arch,
            kernel: g.kernel,
            initramfs: Some(g.initramfs),
            rootfs: g.rootfs,
            rootfs_type: "squashfs".into(),
            engines: vcontainer_initramfs::manifest::Manifest::read(&g.manifest)
                .map(|m| m.engines)
                .unwrap_or_default(),
            manifest: g.manifest,
        }
    }
}

/// `$VCONTAINER_CACHE_DIR`, else `$XDG_CACHE_HOME/vcontainer`, else `~/.cache/vcontainer`.
pub fn cache_dir() -> Result<PathBuf, ImageError> {
    let nonempty = |v: &str| {
        std::env::var_os(v)
            .filter(|s| !s.is_empty())
            .map(PathBuf::from)
    };
    nonempty("VCONTAINER_CACHE_DIR")
        .or_else(|| nonempty("XDG_CACHE_HOME").map(|p| p.join("vcontainer")))
        .or_else(|| nonempty("HOME").map(|p| p.join(".cache/vcontainer")))
        .ok_or(ImageError::NoCacheDir)
}

/// The images a guest of `arch` boots, as `choice` says.
pub async fn ensure_image(
    arch: Arch,
    choice: &ImageChoice,
    reporter: &Reporter,
) -> Result<BootImage, ImageError> {
    match &choice.blob_dir {
        Some(dir) => from_image_dir(arch, dir, reporter).await,
        None => build_image(
            arch,
            BuildOptions {
                offline: choice.offline,
                ..BuildOptions::default()
            },
            reporter,
        )
        .await
        .map(BootImage::from),
    }
}

/// Checks `dir/<arch>/` before anything boots; a modular kernel's modules initramfs is made
/// (once, cached) with this host's agent as init.
async fn from_image_dir(
    arch: Arch,
    dir: &std::path::Path,
    reporter: &Reporter,
) -> Result<BootImage, ImageError> {
    let image = ImageDir::open(dir, arch).map_err(ImageError::ImageDir)?;
    let initramfs = match &image.shape {
        BootShape::Initramfs(p) => Some(p.clone()),
        BootShape::BuiltIn => None,
        BootShape::Modules(modules) => {
            let agent = agent_binary(arch, reporter)?;
            let cache = cache_dir()?;
            let modules = modules.clone();
            let r = reporter.clone();
            let made = tokio::task::spawn_blocking(move || {
                vcontainer_initramfs::modules_initramfs(&cache, arch, &agent, &modules, &mut |p| {
                    r.debug(format!("image: {p}"))
                })
            })
            .await
            .map_err(|e| ImageError::Task(e.to_string()))?
            .map_err(ImageError::ImageDir)?;
            Some(made)
        }
    };
    reporter.debug(format!(
        "booting the image in {} ({})",
        image.dir.display(),
        match image.shape {
            BootShape::Initramfs(_) => "with its initramfs",
            BootShape::Modules(_) => "modules initramfs, the image's own agent",
            BootShape::BuiltIn => "no initramfs, the image's own agent",
        }
    ));
    Ok(BootImage {
        arch,
        kernel: image.kernel,
        initramfs,
        rootfs: image.rootfs,
        rootfs_type: image.manifest.rootfs.fstype,
        engines: image.manifest.engines,
        manifest: image.manifest_path,
    })
}

/// How `image build` makes our own image.
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    /// Never touch the network.
    pub offline: bool,
    /// Exactly these packages (`--lock`).
    pub lock: Option<vcontainer_initramfs::Lock>,
    /// Instead of the host's apt sources (`--mirror`, `--security-mirror`).
    pub mirrors: Option<vcontainer_initramfs::Mirrors>,
}

/// Our own image for `arch`, built on first use (minutes) and cached afterwards.
pub async fn build_image(
    arch: Arch,
    options: BuildOptions,
    reporter: &Reporter,
) -> Result<GuestImage, ImageError> {
    let agent = agent_binary(arch, reporter)?;
    let mut req = BuildRequest::new(arch, agent, cache_dir()?);
    let offline = options.offline;
    req.offline = offline;
    req.lock = options.lock;
    req.mirrors = options.mirrors;
    if let Some(image) = vcontainer_initramfs::cached(&req) {
        return Ok(image);
    }
    // Offline, only parts that need nothing from outside can still be made (an initramfs for a
    // changed agent) and the builder fails at once for the others: no "takes minutes" notice.
    if !offline {
        reporter.notice(format!(
            "building the {arch} guest image (first use: kernel, modules, engines rootfs; takes minutes, cached afterwards)"
        ));
    }
    let r = reporter.clone();
    tokio::task::spawn_blocking(move || {
        build(&req, &mut |p| {
            let line = format!("image: {p}");
            if offline {
                r.debug(line)
            } else {
                r.notice(line)
            }
        })
    })
    .await
    .map_err(|e| ImageError::Task(e.to_string()))?
    .map_err(|source| ImageError::Build { arch, source })
}
