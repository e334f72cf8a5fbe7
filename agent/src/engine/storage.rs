//! Where each engine keeps its storage, in one place: the guest path the engine expects, the
//! directory on the state disk bind-mounted there, and the top-level name of exported and seeded
//! storage tars (what the target's `/var/lib/docker` or `/var/lib/containers/storage` receives).

use std::path::Path;

use thiserror::Error;
use vcontainer_protocol::{EngineKind, StorageDriver};

/// The top-level name of the engine's storage: its directory and the first component of every
/// entry of a storage tar.
pub fn storage_name(engine: EngineKind) -> &'static str {
    match engine {
        EngineKind::Docker => "docker",
        EngineKind::Podman | EngineKind::None => "storage",
    }
}

/// The guest directory holding [`storage_name`] (`/var/lib`, `/var/lib/containers`); `None`
/// without an engine.
pub fn guest_storage_parent(engine: EngineKind) -> Option<&'static str> {
    match engine {
        EngineKind::Docker => Some("/var/lib"),
        EngineKind::Podman => Some("/var/lib/containers"),
        EngineKind::None => None,
    }
}

/// The engine's directory on the state disk, bind-mounted over its guest storage directory.
pub fn state_disk_dir(engine: EngineKind) -> Option<&'static str> {
    match engine {
        EngineKind::Docker => Some("docker"),
        EngineKind::Podman => Some("containers"),
        EngineKind::None => None,
    }
}

/// The drivers whose metadata the storage directory holds (none for an empty storage).
pub fn drivers_present(engine: EngineKind, storage_dir: &Path) -> Vec<StorageDriver> {
    StorageDriver::ALL
        .into_iter()
        .filter(|d| {
            storage_dir
                .join(d.metadata_dir(engine))
                .symlink_metadata()
                .is_ok_and(|m| m.is_dir())
        })
        .collect()
}

/// Storage written with one driver, asked to start with another: the engine would start on an
/// empty store (docker) or refuse (podman), and the images would look lost.
#[derive(Debug, Error, PartialEq, Eq)]
#[error(
    "the {engine} storage holds {found} storage, but {requested} was asked for: start with \
     --storage-driver {found}, or use another state (--stateless, --state-dir) for {requested}"
)]
pub struct DriverConflict {
    pub engine: EngineKind,
    pub requested: StorageDriver,
    pub found: StorageDriver,
}

/// The driver to start with: the requested one, else the one the storage already holds, else
/// the engine's default. A storage holding only another driver's metadata conflicts with a
/// request; a storage holding both (switched by hand) takes the request or the default.
pub fn choose_driver(
    engine: EngineKind,
    requested: Option<StorageDriver>,
    present: &[StorageDriver],
) -> Result<StorageDriver, DriverConflict> {
    match (requested, present) {
        (Some(r), [found]) if *found != r => Err(DriverConflict {
            engine,
            requested: r,
            found: *found,
        }),
        (Some(r), _) => Ok(r),
        (None, [found]) => Ok(*found),
        (None, _) => Ok(StorageDriver::default_for(engine)),
    }
}

/// [`choose_driver`] for the storage in `storage_dir`, recorded in `slot` for the engine's start.
pub fn configure(
    engine: EngineKind,
    storage_dir: &Path,
    requested: Option<StorageDriver>,
    slot: &std::sync::Mutex<StorageDriver>,
) -> Result<StorageDriver, DriverConflict> {
    let driver = choose_driver(engine, requested, &drivers_present(engine, storage_dir))?;
    if let Ok(mut s) = slot.lock() {
        *s = driver;
    }
    Ok(driver)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_driver_follows_request_then_storage_then_default() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        let podman = EngineKind::Podman;
        assert_eq!(drivers_present(podman, d), vec![]);
        assert_eq!(choose_driver(podman, None, &[]), Ok(StorageDriver::Vfs));
        assert_eq!(
            choose_driver(EngineKind::Docker, None, &[]),
            Ok(StorageDriver::Overlay)
        );

        std::fs::create_dir(d.join("overlay-images")).expect("mkdir");
        let present = drivers_present(podman, d);
        assert_eq!(present, vec![StorageDriver::Overlay]);
        assert_eq!(
            choose_driver(podman, None, &present),
            Ok(StorageDriver::Overlay)
        );
        let conflict = choose_driver(podman, Some(StorageDriver::Vfs), &present)
            .expect_err("vfs on overlay storage");
        assert!(conflict.to_string().contains("--storage-driver overlay"));

        std::fs::create_dir_all(d.join("image/vfs")).expect("mkdir");
        assert_eq!(
            drivers_present(EngineKind::Docker, d),
            vec![StorageDriver::Vfs]
        );
        // A file of that name is not a driver's metadata.
        std::fs::write(d.join("vfs-images"), b"").expect("write");
        assert_eq!(drivers_present(podman, d), vec![StorageDriver::Overlay]);
        std::fs::remove_file(d.join("vfs-images")).expect("rm");
        std::fs::create_dir(d.join("vfs-images")).expect("mkdir");
        let both = drivers_present(podman, d);
        assert_eq!(both.len(), 2);
        assert_eq!(
            choose_driver(podman, Some(StorageDriver::Overlay), &both),
            Ok(StorageDriver::Overlay)
        );
        assert_eq!(choose_driver(podman, None, &both), Ok(StorageDriver::Vfs));
    }
}
