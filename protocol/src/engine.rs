//! The engine a guest carries, and the layout it keeps image storage in. The target's engine
//! must find its images in the layout it is configured for (a podman set to `vfs` does not see
//! `overlay` storage), so the driver is chosen by the host and the guest's engine is started
//! with it.

use serde::{Deserialize, Serialize};

/// The container engine a guest image carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EngineKind {
    Docker,
    Podman,
    /// No engine: the agent runs on the host for tests, or an image without an engine.
    None,
}

impl EngineKind {
    pub fn name(self) -> &'static str {
        match self {
            EngineKind::Docker => "docker",
            EngineKind::Podman => "podman",
            EngineKind::None => "none",
        }
    }
}

impl std::fmt::Display for EngineKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// An engine-neutral storage driver: docker calls the overlay driver `overlay2`, podman
/// `overlay`; both call the copying driver `vfs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum StorageDriver {
    Overlay,
    Vfs,
}

impl StorageDriver {
    pub const ALL: [StorageDriver; 2] = [StorageDriver::Overlay, StorageDriver::Vfs];

    /// The driver's name in `engine`'s own configuration (`--storage-driver`, `storage.conf`).
    pub fn engine_name(self, engine: EngineKind) -> &'static str {
        match (self, engine) {
            (StorageDriver::Overlay, EngineKind::Docker) => "overlay2",
            (StorageDriver::Overlay, _) => "overlay",
            (StorageDriver::Vfs, _) => "vfs",
        }
    }

    /// The directory, relative to the engine's storage directory (`/var/lib/docker`,
    /// `/var/lib/containers/storage`), that the engine creates for its metadata when it first
    /// starts with this driver: its presence says the storage is in use with the driver (docker
    /// keeps image metadata per graph driver, podman one images directory per driver).
    pub fn metadata_dir(self, engine: EngineKind) -> String {
        match engine {
            EngineKind::Docker => format!("image/{}", self.engine_name(engine)),
            EngineKind::Podman | EngineKind::None => format!("{}-images", self.engine_name(engine)),
        }
    }

    /// What a target gets when nothing says otherwise: upstream's target configuration, which is
    /// docker with overlay2 and podman with vfs (meta-virtualization's container-host-config
    /// storage.conf; vfs because overlay storage does not survive extraction under pseudo).
    pub fn default_for(engine: EngineKind) -> StorageDriver {
        match engine {
            EngineKind::Podman => StorageDriver::Vfs,
            EngineKind::Docker | EngineKind::None => StorageDriver::Overlay,
        }
    }

    /// Reads a driver name as either engine writes it. Names of drivers vcontainer cannot write
    /// (btrfs, zfs, devicemapper, aufs, fuse-overlayfs …) are `None`.
    pub fn from_engine_name(name: &str) -> Option<StorageDriver> {
        match name.trim() {
            "overlay" | "overlay2" => Some(StorageDriver::Overlay),
            "vfs" => Some(StorageDriver::Vfs),
            _ => None,
        }
    }
}

impl std::fmt::Display for StorageDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StorageDriver::Overlay => "overlay",
            StorageDriver::Vfs => "vfs",
        })
    }
}

impl std::str::FromStr for StorageDriver {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        StorageDriver::from_engine_name(s).ok_or_else(|| {
            format!("unknown storage driver '{s}': expected overlay (docker: overlay2) or vfs")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_each_engine() {
        assert_eq!(
            StorageDriver::Overlay.engine_name(EngineKind::Docker),
            "overlay2"
        );
        assert_eq!(
            StorageDriver::Overlay.engine_name(EngineKind::Podman),
            "overlay"
        );
        assert_eq!(StorageDriver::Vfs.engine_name(EngineKind::Docker), "vfs");
        for d in StorageDriver::ALL {
            for e in [EngineKind::Docker, EngineKind::Podman] {
                assert_eq!(StorageDriver::from_engine_name(d.engine_name(e)), Some(d));
            }
            assert_eq!(d.to_string().parse::<StorageDriver>(), Ok(d));
        }
        assert!("btrfs".parse::<StorageDriver>().is_err());
        assert_eq!(
            StorageDriver::default_for(EngineKind::Podman),
            StorageDriver::Vfs
        );
        assert_eq!(
            StorageDriver::default_for(EngineKind::Docker),
            StorageDriver::Overlay
        );
    }
}
