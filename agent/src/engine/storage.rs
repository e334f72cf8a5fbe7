//! Where each engine keeps its storage, in one place: the guest path the engine expects, the
//! directory on the state disk bind-mounted there, and the top-level name of exported and seeded
//! storage tars (what the target's `/var/lib/docker` or `/var/lib/containers/storage` receives).

use vcontainer_protocol::EngineKind;

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
