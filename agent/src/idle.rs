//! Idle shutdown of a memory-resident VM: after `idle_timeout` without an operation in flight
//! and without running containers, the agent powers the guest off the same clean way `memres
//! stop` does (engine stopped, storage synced and unmounted). Upstream's host-side watchdog
//! sent QEMU `quit` instead, risking the state disk (§9.11); doing it in the guest also needs no
//! host process to stay behind.

use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;

use crate::agent::Agent;
use crate::log;
use crate::process::{async_pipes, command};

/// Operations in flight and when the last one ended.
#[derive(Debug)]
pub struct Activity {
    busy: AtomicUsize,
    last: Mutex<Instant>,
}

impl Default for Activity {
    fn default() -> Self {
        Self {
            busy: AtomicUsize::new(0),
            last: Mutex::new(Instant::now()),
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

/// Starts the watcher (nothing for a timeout of zero).
pub fn watch(agent: Arc<Agent>, timeout: Duration) {
    if timeout.is_zero() {
        return;
    }
    // Check often enough to stop within ~10 % of the timeout, but not busily.
    let interval = (timeout / 10).clamp(Duration::from_secs(1), Duration::from_secs(60));
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(interval).await;
            let Some(idle) = agent.activity.idle_for() else {
                continue;
            };
            if idle < timeout {
                continue;
            }
            if containers_running(&agent).await {
                // Running containers are activity: start counting again.
                agent.activity.touch();
                continue;
            }
            log!("idle for {} s: shutting down", idle.as_secs());
            if let Err(e) = agent.prepare_shutdown().await {
                log!("idle shutdown: {e}");
            }
            agent.finish_shutdown();
            return;
        }
    });
}

/// True if the engine lists a running container (or cannot tell: better stay up).
async fn containers_running(agent: &Agent) -> bool {
    let Some(cli) = agent.engine.cli() else {
        return false;
    };
    let mut cmd = command(cli, &["ps", "-q"], &[]);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let Ok((mut child, exit)) = agent.reaper.spawn(&mut cmd) else {
        return true;
    };
    let mut out = String::new();
    if let Ok(pipes) = async_pipes(&mut child) {
        if let Some(mut stdout) = pipes.stdout {
            let _ = stdout.read_to_string(&mut out).await;
        }
    }
    match exit.await {
        Ok(status) if status.shell_code() == 0 => !out.trim().is_empty(),
        _ => true,
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
