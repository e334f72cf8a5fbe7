//! No engine: host test mode, or a guest image without one. Storage is a plain directory.

use std::path::PathBuf;

use vcontainer_protocol::EngineKind;

use super::{BoxFuture, Engine, EngineError};
use crate::layout::Layout;

pub struct NoEngine {
    layout: Layout,
}

impl NoEngine {
    pub fn new(layout: Layout) -> Self {
        Self { layout }
    }
}

impl Engine for NoEngine {
    fn kind(&self) -> EngineKind {
        EngineKind::None
    }

    fn layout(&self) -> &Layout {
        &self.layout
    }

    fn cli(&self) -> Option<&'static str> {
        None
    }

    fn import_destination(&self, _reference: &str) -> Option<String> {
        None
    }

    fn start(&self) -> BoxFuture<'_, Result<(), EngineError>> {
        Box::pin(async { Ok(()) })
    }

    fn stop(&self) -> BoxFuture<'_, Result<(), EngineError>> {
        Box::pin(async { Ok(()) })
    }

    fn is_running(&self) -> bool {
        false
    }

    /// Host mode only: `<state-dir>/run/engine-api.sock`, where a test serves a stand-in.
    fn api_socket(&self) -> Option<PathBuf> {
        (!self.layout.guest).then(|| self.layout.run_dir.join("engine-api.sock"))
    }
}
