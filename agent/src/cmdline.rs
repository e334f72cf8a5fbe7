//! The `vcontainer.*` keys of the kernel command line, the host's only way to configure stage 1.

use std::path::PathBuf;

use thiserror::Error;
use vcontainer_protocol::EngineKind;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum CmdlineError {
    #[error("vcontainer.engine={0}: expected docker, podman or none")]
    BadEngine(String),
    #[error("vcontainer.control_port={0}: expected a port number")]
    BadPort(String),
}

/// What the host asked of this boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootArgs {
    pub engine: EngineKind,
    /// Block device of the persistent ext4 state disk; `None` means a tmpfs instead.
    pub state: Option<PathBuf>,
    /// Block device of the read-only root filesystem image.
    pub rootfs: PathBuf,
    /// Filesystem type of the root image (squashfs unless the image builder says otherwise).
    pub rootfs_type: String,
    /// Host vsock port to dial for the control connection. Per instance on kernel vhost-vsock,
    /// where host ports are global; the fixed default elsewhere.
    pub control_port: u32,
    pub debug: bool,
}

impl Default for BootArgs {
    fn default() -> Self {
        Self {
            engine: EngineKind::None,
            state: None,
            rootfs: PathBuf::from("/dev/vda"),
            rootfs_type: "squashfs".into(),
            control_port: vcontainer_protocol::CONTROL_PORT,
            debug: false,
        }
    }
}

pub fn parse_engine(value: &str) -> Result<EngineKind, CmdlineError> {
    match value {
        "docker" => Ok(EngineKind::Docker),
        "podman" => Ok(EngineKind::Podman),
        "none" | "" => Ok(EngineKind::None),
        other => Err(CmdlineError::BadEngine(other.into())),
    }
}

impl BootArgs {
    /// Parses `/proc/cmdline`. Keys other than `vcontainer.*` belong to the kernel and are ignored.
    pub fn parse(cmdline: &str) -> Result<Self, CmdlineError> {
        let mut args = Self::default();
        for word in cmdline.split_ascii_whitespace() {
            let Some((key, value)) = word.split_once('=') else {
                continue;
            };
            match key {
                "vcontainer.engine" => args.engine = parse_engine(value)?,
                "vcontainer.state" if !value.is_empty() => args.state = Some(value.into()),
                "vcontainer.rootfs" if !value.is_empty() => args.rootfs = value.into(),
                "vcontainer.rootfstype" if !value.is_empty() => args.rootfs_type = value.into(),
                "vcontainer.control_port" => {
                    args.control_port = value
                        .parse()
                        .map_err(|_| CmdlineError::BadPort(value.into()))?
                }
                "vcontainer.debug" => args.debug = matches!(value, "1" | "true" | "yes"),
                _ => {}
            }
        }
        Ok(args)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_without_keys() {
        let args = BootArgs::parse("console=ttyS0 quiet panic=-1\n").expect("parses");
        assert_eq!(args, BootArgs::default());
    }

    #[test]
    fn control_port() {
        let args = BootArgs::parse("vcontainer.control_port=4242").expect("parses");
        assert_eq!(args.control_port, 4242);
        assert!(BootArgs::parse("vcontainer.control_port=x").is_err());
    }

    #[test]
    fn all_keys() {
        let args = BootArgs::parse(
            "quiet vcontainer.engine=podman vcontainer.state=/dev/vdb vcontainer.rootfs=/dev/vdc \
             vcontainer.rootfstype=erofs vcontainer.debug=1 cryptomgr.notests\n",
        )
        .expect("parses");
        assert_eq!(args.engine, EngineKind::Podman);
        assert_eq!(args.state, Some(PathBuf::from("/dev/vdb")));
        assert_eq!(args.rootfs, PathBuf::from("/dev/vdc"));
        assert_eq!(args.rootfs_type, "erofs");
        assert!(args.debug);
    }

    #[test]
    fn last_value_wins_and_bad_engine_is_an_error() {
        let args = BootArgs::parse("vcontainer.engine=none vcontainer.engine=docker").expect("ok");
        assert_eq!(args.engine, EngineKind::Docker);
        assert_eq!(
            BootArgs::parse("vcontainer.engine=lxc"),
            Err(CmdlineError::BadEngine("lxc".into()))
        );
        assert!(!BootArgs::parse("vcontainer.debug=0").expect("ok").debug);
    }
}
