//! Podman: daemonless. "Starting" it means writing the configuration a systemd-less, network-less
//! guest needs; every podman/skopeo process then uses the storage directly.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use vcontainer_protocol::{EngineKind, RegistryConfig, StorageDriver};

use super::{registry, storage, BoxFuture, Engine, EngineError};
use crate::layout::Layout;

/// A drop-in (always written) rather than containers.conf itself, so it wins over whatever the
/// rootfs packages ship. No systemd in the guest: cgroupfs and file events. `netns = "none"`:
/// containers get their own loopback only, like docker's `--bridge=none`, so no netavark,
/// bridge module or firewall is needed.
pub const CONTAINERS_CONF: &str = "\
[containers]
netns = \"none\"

[engine]
cgroup_manager = \"cgroupfs\"
events_logger = \"file\"
";

/// Always written over whatever the rootfs ships: the graph root is the state disk and the
/// driver the one chosen for this boot (a target-style `storage.conf` in a foreign image would
/// otherwise pick them).
pub fn storage_conf(driver: StorageDriver, graphroot: &Path, runroot: &Path) -> String {
    format!(
        "[storage]\ndriver = \"{}\"\ngraphroot = \"{}\"\nrunroot = \"{}\"\n",
        driver.engine_name(EngineKind::Podman),
        graphroot.display(),
        runroot.display()
    )
}

pub struct Podman {
    layout: Layout,
    prepared: AtomicBool,
    storage_driver: Mutex<StorageDriver>,
}

impl Podman {
    pub fn new(layout: Layout) -> Self {
        Self {
            layout,
            prepared: AtomicBool::new(false),
            storage_driver: Mutex::new(StorageDriver::default_for(EngineKind::Podman)),
        }
    }

    fn prepare(&self) -> Result<(), EngineError> {
        let conf_dir = self.layout.etc_dir.join("containers");
        let dropin_dir = conf_dir.join("containers.conf.d");
        let err = |path: &Path| {
            let path = path.display().to_string();
            move |source| EngineError::Config {
                engine: "podman",
                path,
                source,
            }
        };
        fs::create_dir_all(&dropin_dir).map_err(err(&dropin_dir))?;
        let dropin = dropin_dir.join("50-vcontainer.conf");
        fs::write(&dropin, CONTAINERS_CONF).map_err(err(&dropin))?;
        let storage = conf_dir.join("storage.conf");
        let driver = self
            .storage_driver
            .lock()
            .map(|d| *d)
            .unwrap_or(StorageDriver::default_for(EngineKind::Podman));
        let conf = storage_conf(
            driver,
            &self.layout.storage_dir(),
            &self.layout.run_dir.join("containers/storage"),
        );
        // Replace, not truncate: a packaged storage.conf may be a link into /usr.
        let _ = fs::remove_file(&storage);
        fs::write(&storage, conf).map_err(err(&storage))?;
        let dir = self.layout.storage_dir();
        fs::create_dir_all(&dir).map_err(err(&dir))?;
        Ok(())
    }
}

impl Engine for Podman {
    fn kind(&self) -> EngineKind {
        EngineKind::Podman
    }

    fn layout(&self) -> &Layout {
        &self.layout
    }

    fn cli(&self) -> Option<&'static str> {
        Some("podman")
    }

    fn import_destination(&self, reference: &str) -> Option<String> {
        Some(format!("containers-storage:{reference}"))
    }

    fn start(&self) -> BoxFuture<'_, Result<(), EngineError>> {
        Box::pin(async move {
            if !self.prepared.load(Ordering::SeqCst) {
                self.prepare()?;
                self.prepared.store(true, Ordering::SeqCst);
            }
            Ok(())
        })
    }

    fn stop(&self) -> BoxFuture<'_, Result<(), EngineError>> {
        // Nothing runs between commands; the caller syncs.
        Box::pin(async move {
            self.prepared.store(false, Ordering::SeqCst);
            Ok(())
        })
    }

    fn is_running(&self) -> bool {
        self.prepared.load(Ordering::SeqCst)
    }

    /// containers/image's default for root when XDG_RUNTIME_DIR is unset (podman and skopeo
    /// read it without REGISTRY_AUTH_FILE): `/run/containers/0/auth.json`.
    fn auth_file(&self) -> Option<PathBuf> {
        Some(self.layout.run_dir.join("containers/0/auth.json"))
    }

    /// A `registries.conf.d` drop-in (insecure registries, the default for short names) and the
    /// CA in `/etc/containers/certs.d/<host>/ca.crt`.
    fn configure_registry(&self, registry: &RegistryConfig) -> Result<(), EngineError> {
        let conf_dir = self.layout.etc_dir.join("containers");
        let err = |path: &Path| {
            let path = path.display().to_string();
            move |source| EngineError::Config {
                engine: "podman",
                path,
                source,
            }
        };
        let certs_d = conf_dir.join("certs.d");
        registry::install_ca(&certs_d, registry).map_err(err(&certs_d))?;
        let dropin_dir = conf_dir.join("registries.conf.d");
        let dropin = dropin_dir.join(registry::PODMAN_DROPIN);
        match registry::podman_registries_conf(registry) {
            Some(conf) => {
                fs::create_dir_all(&dropin_dir).map_err(err(&dropin_dir))?;
                fs::write(&dropin, conf).map_err(err(&dropin))?;
            }
            None => {
                let _ = fs::remove_file(&dropin);
            }
        }
        Ok(())
    }

    fn configure_storage(
        &self,
        requested: Option<StorageDriver>,
    ) -> Result<StorageDriver, EngineError> {
        Ok(storage::configure(
            EngineKind::Podman,
            &self.storage_dir(),
            requested,
            &self.storage_driver,
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn start_writes_config_and_replaces_a_packaged_storage_conf() {
        let dir = tempfile::tempdir().expect("tempdir");
        let layout = Layout::host(dir.path().to_path_buf(), EngineKind::Podman);
        let etc = dir.path().join("etc/containers");
        fs::create_dir_all(&etc).expect("mkdir");
        fs::write(etc.join("storage.conf"), "# packaged\n").expect("write");
        let podman = Podman::new(layout);
        podman.start().await.expect("start");
        assert!(podman.is_running());
        let dropin =
            fs::read_to_string(etc.join("containers.conf.d/50-vcontainer.conf")).expect("drop-in");
        assert!(dropin.contains("cgroupfs"));
        let conf = fs::read_to_string(etc.join("storage.conf")).expect("read");
        assert!(conf.contains("driver = \"vfs\""), "{conf}");
        assert!(!conf.contains("packaged"), "{conf}");
        assert!(dir.path().join("storage").is_dir());
        assert_eq!(
            podman.import_destination("a/b:c"),
            Some("containers-storage:a/b:c".into())
        );
        podman.stop().await.expect("stop");
        assert!(!podman.is_running());
        let conf = storage_conf(StorageDriver::Overlay, Path::new("/g"), Path::new("/r"));
        assert!(conf.contains("graphroot = \"/g\""));
        assert!(conf.contains("driver = \"overlay\""));
    }

    #[test]
    fn registry_settings_become_a_dropin_and_certs_d() {
        let dir = tempfile::tempdir().expect("tempdir");
        let layout = Layout::host(dir.path().to_path_buf(), EngineKind::Podman);
        let podman = Podman::new(layout);
        podman
            .configure_registry(&RegistryConfig {
                default: Some("10.0.2.2:5000".into()),
                insecure: vec!["10.0.2.2:5000".into()],
                secure: false,
                ca_cert: Some(b"PEM".to_vec()),
            })
            .expect("configure");
        let etc = dir.path().join("etc/containers");
        let dropin =
            fs::read_to_string(etc.join("registries.conf.d/50-vcontainer.conf")).expect("drop-in");
        assert!(dropin.contains("unqualified-search-registries = [\"10.0.2.2:5000\"]"));
        assert!(dropin.contains("location = \"10.0.2.2:5000\"\ninsecure = true"));
        assert_eq!(
            fs::read(etc.join("certs.d/10.0.2.2:5000/ca.crt")).expect("ca"),
            b"PEM"
        );
        assert_eq!(
            podman.auth_file(),
            Some(dir.path().join("run/containers/0/auth.json"))
        );
        podman
            .configure_registry(&RegistryConfig::default())
            .expect("nothing");
        assert!(!etc.join("registries.conf.d/50-vcontainer.conf").exists());
    }
}
