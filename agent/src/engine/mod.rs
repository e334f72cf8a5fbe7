//! Container engine adapters behind one trait, so docker and podman guests differ only here.

mod docker;
mod none;
mod ping;
mod podman;
pub mod registry;
pub mod storage;

use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use thiserror::Error;
use vcontainer_protocol::{EngineKind, ExitStatus, RegistryConfig, StorageDriver};

pub use docker::Docker;
pub use none::NoEngine;
pub use ping::{parse_status_code, ping_docker};
pub use podman::Podman;

use crate::layout::Layout;
use crate::reaper::Reaper;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

#[derive(Debug, Error)]
pub enum EngineError {
    #[error("cannot start {engine}: {source}")]
    Spawn {
        engine: &'static str,
        source: io::Error,
    },
    #[error("{engine} exited ({status:?}) before it answered, after {waited_ms} ms; log tail:\n{log_tail}")]
    Exited {
        engine: &'static str,
        status: Option<ExitStatus>,
        waited_ms: u128,
        log_tail: String,
    },
    #[error("{engine} did not answer within {waited_ms} ms; log tail:\n{log_tail}")]
    Timeout {
        engine: &'static str,
        waited_ms: u128,
        log_tail: String,
    },
    #[error("{engine} configuration {path}: {source}")]
    Config {
        engine: &'static str,
        path: String,
        source: io::Error,
    },
    #[error(transparent)]
    StorageDriver(#[from] storage::DriverConflict),
}

/// One container engine as the agent sees it.
pub trait Engine: Send + Sync {
    fn kind(&self) -> EngineKind;

    fn layout(&self) -> &Layout;

    fn name(&self) -> &'static str {
        self.kind().name()
    }

    /// The engine's command line tool, if it has one.
    fn cli(&self) -> Option<&'static str>;

    /// The storage directory (what an export contains and a seed replaces).
    fn storage_dir(&self) -> PathBuf {
        self.layout().storage_dir()
    }

    /// `(parent, dirname)`: exports are `tar -C parent dirname`.
    fn export_root(&self) -> (PathBuf, &'static str) {
        (
            self.layout().storage_parent.clone(),
            self.layout().storage_name,
        )
    }

    /// The skopeo destination for an image imported under `reference`; `None` if this engine
    /// cannot hold images.
    fn import_destination(&self, reference: &str) -> Option<String>;

    /// Starts what can start before the host's boot configuration arrives (helper daemons that
    /// do not touch the storage a seed may replace). Called once, early in stage 2.
    fn prepare(&self) -> BoxFuture<'_, Result<(), EngineError>> {
        Box::pin(async { Ok(()) })
    }

    /// Makes sure the engine runs and answers (idempotent, concurrent callers wait for one start).
    fn start(&self) -> BoxFuture<'_, Result<(), EngineError>>;

    /// Stops the engine cleanly so its storage on disk is consistent (idempotent).
    fn stop(&self) -> BoxFuture<'_, Result<(), EngineError>>;

    fn is_running(&self) -> bool;

    /// The engine's API unix socket (`Request::EngineApi` connects to it); `None` if it has none.
    fn api_socket(&self) -> Option<PathBuf> {
        None
    }

    /// The engine daemon's log file, if it keeps one: a failed import quotes the cause from it
    /// when the client side only saw a broken pipe.
    fn daemon_log(&self) -> Option<PathBuf> {
        None
    }

    /// Where the engine's tools read registry credentials as root without environment variables
    /// (`Request::SetAuth` writes it); `None` if this engine uses no registries.
    fn auth_file(&self) -> Option<PathBuf> {
        None
    }

    /// Applies the host's registry settings (insecure registries, default registry, CA). Called
    /// before the engine starts; a running engine keeps what it started with.
    fn configure_registry(&self, _registry: &RegistryConfig) -> Result<(), EngineError> {
        Ok(())
    }

    /// Chooses the storage driver ([`storage::choose_driver`]: the request, else what the
    /// storage holds, else the default) and configures the engine with it. Called after any
    /// seed and before the engine starts; returns the driver.
    fn configure_storage(
        &self,
        requested: Option<StorageDriver>,
    ) -> Result<StorageDriver, EngineError> {
        let present = storage::drivers_present(self.kind(), &self.storage_dir());
        Ok(storage::choose_driver(self.kind(), requested, &present)?)
    }
}

/// Builds the adapter for `kind`.
pub fn new_engine(
    kind: EngineKind,
    layout: Layout,
    reaper: Arc<Reaper>,
    debug: bool,
) -> Arc<dyn Engine> {
    match kind {
        EngineKind::Docker => Arc::new(Docker::new(layout, reaper, debug)),
        EngineKind::Podman => Arc::new(Podman::new(layout)),
        EngineKind::None => Arc::new(NoEngine::new(layout)),
    }
}
