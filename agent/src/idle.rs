//! Idle shutdown of a memory-resident VM: after `idle_timeout` without an operation in flight
//! and without running containers, the agent powers the guest off the same clean way `memres
//! stop` does (engine stopped, storage synced and unmounted). Upstream's host-side watchdog
//! sent QEMU `quit` instead, risking the state disk (§9.11); doing it in the guest also needs no
//! host process to stay behind.

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncReadExt;

use crate::agent::Agent;
use crate::log;
use crate::process::{async_pipes, command};

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
