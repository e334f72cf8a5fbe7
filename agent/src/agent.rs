//! What every operation shares: paths, the engine, the reaper, and the way out.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant};

use nix::mount::{umount2, MntFlags};
use tokio::sync::{watch, Mutex};
use vcontainer_protocol::AgentMsg;

use crate::conn::hello;
use crate::engine::Engine;
use crate::layout::Layout;
use crate::log;
use crate::reaper::Reaper;

pub struct Agent {
    pub layout: Layout,
    pub engine: Arc<dyn Engine>,
    pub reaper: Arc<Reaper>,
    /// Operations in flight, for the idle shutdown of a memory-resident VM.
    pub activity: Activity,
    /// Set once shutdown has been prepared (engine stopped, storage unmounted).
    prepared: Mutex<bool>,
    exit_tx: watch::Sender<bool>,
}

impl Agent {
    pub fn new(layout: Layout, engine: Arc<dyn Engine>, reaper: Arc<Reaper>) -> Arc<Self> {
        let (exit_tx, _) = watch::channel(false);
        Arc::new(Self {
            layout,
            engine,
            reaper,
            activity: Default::default(),
            prepared: Mutex::new(false),
            exit_tx,
        })
    }

    pub fn hello(&self) -> AgentMsg {
        hello(self.engine.kind())
    }

    /// Stops the engine cleanly, syncs and (in the guest) unmounts the state disk, so power-off
    /// loses nothing. Idempotent; concurrent callers wait for the first.
    pub async fn prepare_shutdown(&self) -> Result<(), String> {
        let mut prepared = self.prepared.lock().await;
        if *prepared {
            return Ok(());
        }
        let stopped = self.engine.stop().await.map_err(|e| e.to_string());
        nix::unistd::sync();
        if self.layout.guest {
            let storage = self.layout.storage_dir();
            if storage.starts_with("/var/lib") {
                unmount(&storage);
            }
            unmount(&self.layout.state_dir);
            nix::unistd::sync();
        }
        *prepared = true;
        stopped
    }

    /// Ends the agent: powers the guest off, or makes [`Agent::wait_exit`] return in host mode.
    pub fn finish_shutdown(&self) {
        if self.layout.guest {
            crate::power::power_off();
        }
        // send_replace, not send: send drops the value when nobody subscribed yet, and a
        // wait_exit that subscribes a moment later would then wait forever.
        self.exit_tx.send_replace(true);
    }

    /// Resolves once [`Agent::finish_shutdown`] ran (host mode).
    pub async fn wait_exit(&self) {
        let mut rx = self.exit_tx.subscribe();
        let _ = rx.wait_for(|done| *done).await;
    }
}

/// Unmounts, falling back to a lazy unmount when something still holds the mount: the data is
/// synced either way, and power-off must not wait for a stuck process.
fn unmount(path: &Path) {
    match umount2(path, MntFlags::empty()) {
        Ok(()) => {}
        Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {} // not mounted
        Err(e) => {
            log!("umount {}: {e}; detaching lazily", path.display());
            let _ = umount2(path, MntFlags::MNT_DETACH);
        }
    }
}

/// Operations in flight and when the last one ended.
#[derive(Debug)]
pub struct Activity {
    busy: AtomicUsize,
    last: StdMutex<Instant>,
}

impl Default for Activity {
    fn default() -> Self {
        Self {
            busy: AtomicUsize::new(0),
            last: StdMutex::new(Instant::now()),
        }
    }
}

/// Marks one operation in flight until dropped.
pub struct Busy<'a>(&'a Activity);

impl Activity {
    pub fn begin(&self) -> Busy<'_> {
        self.busy.fetch_add(1, Ordering::SeqCst);
        Busy(self)
    }

    /// How long nothing has been in flight (`None` while something is).
    pub fn idle_for(&self) -> Option<Duration> {
        if self.busy.load(Ordering::SeqCst) > 0 {
            return None;
        }
        let last = *self.last.lock().unwrap_or_else(|p| p.into_inner());
        Some(last.elapsed())
    }

    /// Restarts the idle count (something is still going on).
    pub fn touch(&self) {
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.touch();
        self.0.busy.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_operations_are_not_idle() {
        let a = Activity::default();
        assert!(a.idle_for().is_some());
        let b = a.begin();
        assert_eq!(a.idle_for(), None);
        drop(b);
        assert!(a.idle_for().is_some_and(|d| d < Duration::from_secs(1)));
    }
}
