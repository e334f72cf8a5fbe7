//! One command at a time per instance: an exclusive `flock` on `<state>/lock`. flock, not a pid
//! file, because the kernel drops it when the holder dies however it dies, so there is never a
//! stale lock to clean up. The holder writes its pid into the file only so that the next command
//! can say who it is waiting for. The descriptor is close-on-exec, so a VM left running in
//! memory-resident mode does not inherit the lock.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

use super::{StateDir, StateError};

/// Polling interval while waiting: flock(2) has no timeout, and a blocking flock in a thread could
/// not be abandoned.
const LOCK_POLL: Duration = Duration::from_millis(50);

/// What to do when another command holds the lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockWait {
    /// Fail at once with [`StateError::Locked`].
    NoWait,
    /// Wait, at most this long if given.
    Wait(Option<Duration>),
}

/// Held until dropped.
#[derive(Debug)]
pub struct InstanceLock {
    flock: Option<Flock<File>>,
    path: PathBuf,
}

impl InstanceLock {
    /// Locks `dir` (which must exist). When the lock is taken and `wait` allows waiting,
    /// `on_wait` is called once with a message for the user ("waiting for another vdkr command
    /// using DIR (pid N)…") before waiting starts.
    pub fn acquire(
        dir: &StateDir,
        wait: LockWait,
        on_wait: impl FnOnce(&str),
    ) -> Result<InstanceLock, StateError> {
        let tool = dir.tool().name();
        let path = dir.lock_file();
        let mut on_wait = Some(on_wait);
        let start = Instant::now();
        loop {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .open(&path)
                .map_err(|e| StateError::io("open", &path, e))?;
            match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(flock) => {
                    record_holder(&flock, &path)?;
                    return Ok(InstanceLock {
                        flock: Some(flock),
                        path,
                    });
                }
                Err((_, Errno::EWOULDBLOCK)) => {}
                Err((_, errno)) => return Err(StateError::io("lock", &path, errno.into())),
            }
            let holder = read_holder(&path);
            match wait {
                LockWait::NoWait => {
                    return Err(StateError::Locked {
                        tool,
                        path: dir.root().to_owned(),
                        holder,
                    })
                }
                LockWait::Wait(Some(limit)) if start.elapsed() >= limit => {
                    return Err(StateError::LockTimeout {
                        tool,
                        path: dir.root().to_owned(),
                        holder,
                        waited_ms: start.elapsed().as_millis(),
                    })
                }
                LockWait::Wait(_) => {}
            }
            if let Some(notify) = on_wait.take() {
                let by = holder
                    .map(|pid| format!(" (pid {pid})"))
                    .unwrap_or_default();
                notify(&format!(
                    "waiting for another {tool} command using {}{by}…",
                    dir.root().display()
                ));
            }
            std::thread::sleep(LOCK_POLL);
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Whether a command holds the lock of `dir` now. Creates nothing: a directory without a lock
/// file (or gone altogether) is held by nobody.
pub fn is_locked(dir: &StateDir) -> bool {
    let Ok(file) = File::open(dir.lock_file()) else {
        return false;
    };
    matches!(
        Flock::lock(file, FlockArg::LockExclusiveNonblock),
        Err((_, Errno::EWOULDBLOCK))
    )
}

impl Drop for InstanceLock {
    fn drop(&mut self) {
        if let Some(flock) = self.flock.take() {
            // Clear our pid while still holding the lock, so nobody reads a stale one.
            let _ = flock.set_len(0);
            drop(flock);
        }
    }
}

fn record_holder(file: &File, path: &Path) -> Result<(), StateError> {
    let pid = format!("{}\n", std::process::id());
    file.set_len(0)
        .map_err(|e| StateError::io("write", path, e))?;
    file.write_all_at(pid.as_bytes(), 0)
        .map_err(|e| StateError::io("write", path, e))
}

/// The pid the holder recorded; None if it has not written it yet or the file is unreadable.
fn read_holder(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{StateLocation, Tool};

    fn state_dir(tmp: &Path) -> StateDir {
        let d = StateDir::resolve(Tool::Vdkr, tmp, &StateLocation::Explicit(tmp.join("st")))
            .expect("resolve");
        d.create().expect("create");
        d
    }

    // flock locks belong to the open file description, so two opens in one process conflict just
    // like two processes do.
    #[test]
    fn second_command_fails_naming_the_holder() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = state_dir(tmp.path());
        let held = InstanceLock::acquire(&dir, LockWait::NoWait, |_| {}).expect("first lock");
        let err =
            InstanceLock::acquire(&dir, LockWait::NoWait, |_| {}).expect_err("second must fail");
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("pid {}", std::process::id())),
            "{msg}"
        );
        assert!(msg.contains("another vdkr command"), "{msg}");
        assert!(is_locked(&dir));
        drop(held);
        assert!(!is_locked(&dir));
        InstanceLock::acquire(&dir, LockWait::NoWait, |_| {}).expect("free again after drop");
    }

    #[test]
    fn a_directory_without_a_lock_file_is_not_locked() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let gone = StateDir::resolve(
            Tool::Vdkr,
            tmp.path(),
            &StateLocation::Explicit(tmp.path().join("gone")),
        )
        .expect("resolve");
        assert!(!is_locked(&gone));
        assert!(!gone.root().exists(), "nothing was created");
    }

    #[test]
    fn waiting_reports_once_and_times_out() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = state_dir(tmp.path());
        let _held = InstanceLock::acquire(&dir, LockWait::NoWait, |_| {}).expect("first lock");
        let mut messages = Vec::new();
        let err = InstanceLock::acquire(
            &dir,
            LockWait::Wait(Some(Duration::from_millis(200))),
            |m| messages.push(m.to_string()),
        )
        .expect_err("times out");
        assert!(matches!(err, StateError::LockTimeout { .. }), "{err}");
        assert_eq!(messages.len(), 1);
        assert!(
            messages[0].starts_with("waiting for another vdkr command using "),
            "{}",
            messages[0]
        );
    }

    #[test]
    fn waiting_succeeds_when_the_holder_finishes() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = state_dir(tmp.path());
        let held = InstanceLock::acquire(&dir, LockWait::NoWait, |_| {}).expect("first lock");
        let releaser = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(150));
            drop(held);
        });
        let lock =
            InstanceLock::acquire(&dir, LockWait::Wait(Some(Duration::from_secs(10))), |_| {});
        assert!(lock.is_ok());
        releaser.join().expect("join");
    }
}
