//! The engine choice, mapped in one place: the tool (`vdkr`, `vpdmn`), the engine in its guest
//! (`docker`, `podman`), the protocol's [`EngineKind`], and the names derived from them. The
//! bundling library's `Runtime` (an engine named in BUNDLED_CONTAINERS) converts through here.

use std::path::{Path, PathBuf};

use vcontainer_protocol::EngineKind;

/// Which tool owns the state: the two never share a directory, since their state disks hold
/// different engines' storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tool {
    Vdkr,
    Vpdmn,
}

impl Tool {
    pub fn name(self) -> &'static str {
        match self {
            Tool::Vdkr => "vdkr",
            Tool::Vpdmn => "vpdmn",
        }
    }

    /// The container engine in the guest, as passed to the agent.
    pub fn engine(self) -> &'static str {
        match self {
            Tool::Vdkr => "docker",
            Tool::Vpdmn => "podman",
        }
    }

    /// `~/.vdkr` or `~/.vpdmn`, upstream's base directory.
    pub fn default_base(self, home: &Path) -> PathBuf {
        home.join(format!(".{}", self.name()))
    }

    /// The engine as the protocol names it to the agent.
    pub fn engine_kind(self) -> EngineKind {
        match self {
            Tool::Vdkr => EngineKind::Docker,
            Tool::Vpdmn => EngineKind::Podman,
        }
    }

    /// The tool whose guest runs the engine called `engine` (`docker`, `podman`).
    pub fn from_engine(engine: &str) -> Option<Tool> {
        [Tool::Vdkr, Tool::Vpdmn]
            .into_iter()
            .find(|t| t.engine() == engine)
    }

    /// The engine's CLI inside the guest.
    pub fn engine_cli(self) -> &'static str {
        self.engine()
    }

    /// Prefix of the tool's environment variables (`VDKR_ARCH`, …).
    pub fn env_prefix(self) -> &'static str {
        match self {
            Tool::Vdkr => "VDKR",
            Tool::Vpdmn => "VPDMN",
        }
    }

    /// The tool an executable name selects, and the arch a `vdkr-<arch>` name selects.
    pub fn from_argv0(argv0: &str) -> Option<(Tool, Option<&str>)> {
        let base = argv0.rsplit('/').next().unwrap_or(argv0);
        let (name, arch) = match base.split_once('-') {
            Some((n, a)) => (n, Some(a)),
            None => (base, None),
        };
        let tool = match name {
            "vdkr" => Tool::Vdkr,
            "vpdmn" => Tool::Vpdmn,
            _ => return None,
        };
        Some((tool, arch))
    }

    pub(super) fn state_image(self) -> &'static str {
        match self {
            Tool::Vdkr => "docker-state.img",
            Tool::Vpdmn => "podman-state.img",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argv0_selects_tool_and_arch() {
        assert_eq!(
            Tool::from_argv0("/usr/bin/vdkr-aarch64"),
            Some((Tool::Vdkr, Some("aarch64")))
        );
        assert_eq!(Tool::from_argv0("vpdmn"), Some((Tool::Vpdmn, None)));
        assert_eq!(Tool::from_argv0("/x/vcontainer"), None);
    }

    #[test]
    fn engine_names_map_back_to_their_tool() {
        for t in [Tool::Vdkr, Tool::Vpdmn] {
            assert_eq!(Tool::from_engine(t.engine()), Some(t));
        }
        assert_eq!(Tool::from_engine("containerd"), None);
    }
}
