//! The one place that calls `waitpid`.
//!
//! As PID 1 the agent inherits every orphan and must reap them all, yet it also waits for the
//! children it spawns itself (exec'd commands, dockerd, tar). Two waiters would race for the same
//! exit status, so a single reaper owns `waitpid` and hands each status to whoever registered the
//! pid. The race between "child exits" and "pid registered" is closed by a lock: [`Reaper::spawn`]
//! holds the waiter map's lock across fork/exec and the insert, and a reap pass holds the same
//! lock across `waitpid` and the dispatch, so no pass can collect a child whose waiter is not yet
//! in the map.
//!
//! In host mode the agent is not PID 1 and shares its process with tests: it then waits only for
//! its own registered pids (`waitpid(pid)`), never `waitpid(-1)`.

use std::collections::HashMap;
use std::io;
use std::process::{Child, Command};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::oneshot;
use vcontainer_protocol::ExitStatus;

type Waiters = HashMap<i32, oneshot::Sender<ExitStatus>>;

pub struct Reaper {
    waiters: Mutex<Waiters>,
    reap_all: bool,
}

/// Converts a wait status into the protocol's exit status; `None` for stop/continue events.
pub fn exit_status(status: WaitStatus) -> Option<(i32, ExitStatus)> {
    match status {
        WaitStatus::Exited(pid, code) => Some((pid.as_raw(), ExitStatus::Code(code))),
        WaitStatus::Signaled(pid, sig, _) => Some((pid.as_raw(), ExitStatus::Signal(sig as i32))),
        _ => None,
    }
}

impl Reaper {
    /// Creates the reaper and its SIGCHLD task. Must be called inside a tokio runtime.
    /// `reap_all`: PID 1 collects every child, including orphans nobody waits for.
    pub fn start(reap_all: bool) -> io::Result<Arc<Self>> {
        let reaper = Arc::new(Self {
            waiters: Mutex::new(HashMap::new()),
            reap_all,
        });
        let mut sigchld = signal(SignalKind::child())?;
        let task_reaper = Arc::clone(&reaper);
        tokio::spawn(async move {
            // SIGCHLD is coalesced but never lost after the handler is installed; the slow tick
            // is a safety net for children that exited before it was.
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tokio::select! {
                    s = sigchld.recv() => if s.is_none() { break },
                    _ = tick.tick() => {}
                }
                task_reaper.reap();
            }
        });
        Ok(reaper)
    }

    fn lock(&self) -> MutexGuard<'_, Waiters> {
        // A poisoned map is still a valid map: a panic elsewhere must not stop reaping.
        self.waiters.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Spawns `cmd` and registers its pid before any reap pass can see it exit. The returned
    /// [`Child`] carries the pipes; never call `wait` on it, the receiver delivers the status.
    pub fn spawn(&self, cmd: &mut Command) -> io::Result<(Child, oneshot::Receiver<ExitStatus>)> {
        let mut waiters = self.lock();
        let child = cmd.spawn()?;
        let (tx, rx) = oneshot::channel();
        waiters.insert(child.id() as i32, tx);
        Ok((child, rx))
    }

    /// One reap pass: collect every exited child that is ours to collect and dispatch.
    pub fn reap(&self) {
        let mut waiters = self.lock();
        if self.reap_all {
            loop {
                match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                    Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => break,
                    Err(Errno::EINTR) => continue,
                    Err(_) => break,
                    Ok(status) => dispatch(&mut waiters, status),
                }
            }
        } else {
            let pids: Vec<i32> = waiters.keys().copied().collect();
            for pid in pids {
                match waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)) {
                    Ok(WaitStatus::StillAlive) => {}
                    Ok(status) => dispatch(&mut waiters, status),
                    // Not our child any more (cannot happen unless someone else waited): drop it.
                    Err(Errno::ECHILD) => {
                        waiters.remove(&pid);
                    }
                    Err(_) => {}
                }
            }
        }
    }

    /// Number of children still awaited (for tests and status).
    pub fn pending(&self) -> usize {
        self.lock().len()
    }
}

fn dispatch(waiters: &mut Waiters, status: WaitStatus) {
    if let Some((pid, exit)) = exit_status(status) {
        if let Some(tx) = waiters.remove(&pid) {
            // The waiter may have given up (connection closed): that is fine.
            let _ = tx.send(exit);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::signal::Signal;

    #[test]
    fn wait_status_conversion() {
        let pid = Pid::from_raw(42);
        assert_eq!(
            exit_status(WaitStatus::Exited(pid, 3)),
            Some((42, ExitStatus::Code(3)))
        );
        assert_eq!(
            exit_status(WaitStatus::Signaled(pid, Signal::SIGKILL, false)),
            Some((42, ExitStatus::Signal(9)))
        );
        assert_eq!(exit_status(WaitStatus::StillAlive), None);
    }

    #[test]
    fn dispatch_delivers_to_the_registered_waiter_only() {
        let mut waiters = Waiters::new();
        let (tx, mut rx) = oneshot::channel();
        waiters.insert(7, tx);
        dispatch(&mut waiters, WaitStatus::Exited(Pid::from_raw(8), 1));
        assert!(rx.try_recv().is_err());
        assert_eq!(waiters.len(), 1);
        dispatch(&mut waiters, WaitStatus::Exited(Pid::from_raw(7), 5));
        assert_eq!(rx.try_recv().ok(), Some(ExitStatus::Code(5)));
        assert!(waiters.is_empty());
    }

    #[tokio::test]
    async fn many_short_children_all_get_their_status() {
        let reaper = Reaper::start(false).expect("reaper");
        let mut rxs = Vec::new();
        for i in 0..20 {
            let (_child, rx) = reaper
                .spawn(Command::new("sh").args(["-c", &format!("exit {i}")]))
                .expect("spawn");
            rxs.push((i, rx));
        }
        for (i, rx) in rxs {
            assert_eq!(rx.await.expect("status"), ExitStatus::Code(i));
        }
        assert_eq!(reaper.pending(), 0);
    }
}
