//! Guest images on first use: find (or build) the agent, then build or reuse the cached kernel,
//! initramfs and rootfs for the target arch, showing progress.

use std::path::PathBuf;

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
    #[error("no cache directory: set $VCONTAINER_CACHE_DIR, $XDG_CACHE_HOME or $HOME")]
    NoCacheDir,
    #[error("the image build task failed: {0}")]
    Task(String),
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

/// The guest image for `arch`, built on first use (minutes) and cached afterwards.
pub async fn ensure_image(arch: Arch, reporter: &Reporter) -> Result<GuestImage, ImageError> {
    let agent = agent_binary(arch, reporter)?;
    let req = BuildRequest::new(arch, agent, cache_dir()?);
    if let Some(image) = vcontainer_initramfs::cached(&req) {
        return Ok(image);
    }
    reporter.notice(format!(
        "building the {arch} guest image (first use: kernel, modules, engines rootfs; takes minutes, cached afterwards)"
    ));
    let r = reporter.clone();
    tokio::task::spawn_blocking(move || build(&req, &mut |p| r.notice(format!("image: {p}"))))
        .await
        .map_err(|e| ImageError::Task(e.to_string()))?
        .map_err(|source| ImageError::Build { arch, source })
}
