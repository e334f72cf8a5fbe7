//! Where things live: the guest's fixed paths, or a state directory in host test mode.

use std::path::PathBuf;

use vcontainer_protocol::EngineKind;

use crate::engine::storage::{guest_storage_parent, storage_name};

#[derive(Debug, Clone)]
pub struct Layout {
    /// True in the guest (PID 1); false in host test mode.
    pub guest: bool,
    /// Persistent state: `/mnt/state` in the guest, `--state-dir` on the host.
    pub state_dir: PathBuf,
    /// Directory whose child [`Layout::storage_name`] is the engine's storage (the parent of
    /// what an export tars and a seed replaces).
    pub storage_parent: PathBuf,
    /// Top-level directory name of exported and seeded storage tars.
    pub storage_name: &'static str,
    /// Runtime files (sockets, pid files): `/run` in the guest.
    pub run_dir: PathBuf,
    /// Daemon logs: `/var/log` in the guest.
    pub log_dir: PathBuf,
    /// Configuration written at run time: `/etc` in the guest.
    pub etc_dir: PathBuf,
}

impl Layout {
    /// The guest: storage is bind-mounted from the state disk onto the engine's usual place, so
    /// exports are `-C /var/lib docker` or `-C /var/lib/containers storage`.
    pub fn guest(engine: EngineKind) -> Self {
        let storage_parent = guest_storage_parent(engine).unwrap_or("/mnt/state");
        Self {
            guest: true,
            state_dir: "/mnt/state".into(),
            storage_parent: storage_parent.into(),
            storage_name: storage_name(engine),
            run_dir: "/run".into(),
            log_dir: "/var/log".into(),
            etc_dir: "/etc".into(),
        }
    }

    /// Host test mode: everything below `state_dir` (storage is `state_dir/docker` or
    /// `state_dir/storage`).
    pub fn host(state_dir: PathBuf, engine: EngineKind) -> Self {
        Self {
            guest: false,
            storage_parent: state_dir.clone(),
            storage_name: storage_name(engine),
            run_dir: state_dir.join("run"),
            log_dir: state_dir.join("log"),
            etc_dir: state_dir.join("etc"),
            state_dir,
        }
    }

    pub fn storage_dir(&self) -> PathBuf {
        self.storage_parent.join(self.storage_name)
    }

    /// Staging area for imports, emptied at boot.
    pub fn staging_dir(&self) -> PathBuf {
        self.state_dir.join("tmp")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn export_roots() {
        let d = Layout::guest(EngineKind::Docker);
        assert_eq!(d.storage_dir(), PathBuf::from("/var/lib/docker"));
        let p = Layout::guest(EngineKind::Podman);
        assert_eq!(
            p.storage_dir(),
            PathBuf::from("/var/lib/containers/storage")
        );
        let h = Layout::host("/s".into(), EngineKind::None);
        assert_eq!(h.storage_dir(), PathBuf::from("/s/storage"));
        assert_eq!(h.staging_dir(), PathBuf::from("/s/tmp"));
    }
}
