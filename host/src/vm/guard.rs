//! The VM guard: a small process of our own binary, started under the name
//! [`GUARD_ARGV0`] beside every QEMU we launch, that ties the VM's processes together beyond the
//! life of the CLI that launched them.
//!
//! Why a process at all: a CLI killed with SIGKILL (a harness timeout) runs no code, so whatever
//! cleans up must already be running elsewhere. The guest takes care of itself (its control
//! connection closes, the agent stops the engine, syncs, unmounts and powers off: see
//! `BootConfig::host_bound`), and QEMU exits on power-off. But `vhost-device-vsock` serves one VM
//! after another and never exits when its QEMU goes, and a guest that hangs never powers off.
//! A parent-death signal cannot do this: it would kill QEMU at once (no clean guest shutdown) and
//! would also fire for a memory-resident VM whose CLI exits normally.
//!
//! What the guard does, and nothing more (it carries no data, unlike upstream's relays):
//! - it watches QEMU through a pidfd; when QEMU exits, it stops the vsock backend and exits;
//! - it watches its stdin, a pipe whose other end only the CLI holds. End of file without a
//!   prior [`DETACH_BYTE`] means the CLI is gone: the guest is then expected to power itself
//!   off, and if QEMU is still there after [`GUARD_GRACE`], the guard stops it (SIGTERM, then
//!   SIGKILL) before the backend. `DETACH_BYTE` (memory-resident mode) leaves QEMU alone for good.
//!
//! Pids are held as pidfds from the start, so a pid reused after its process was reaped is never
//! signalled.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::process::{pidfd_open, pidfd_send_signal, Pid, PidfdFlags, Signal};

use super::VmError;

/// The `argv[0]` under which our binaries run as the guard.
pub const GUARD_ARGV0: &str = "vcontainer-vm-guard";
/// What the CLI writes to the guard when the VM becomes memory-resident.
pub const DETACH_BYTE: u8 = b'D';
/// How long a guest whose CLI is gone has to power itself off before QEMU is stopped. A guest
/// that was still starting its engine finishes that first (the engine's start and stop are
/// serialised), which takes up to half a minute for dockerd under cross-arch TCG.
pub const GUARD_GRACE: Duration = Duration::from_secs(60);
/// How long QEMU and the backend get to exit on SIGTERM before SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(2);

/// The CLI's handle on its guard.
#[derive(Debug)]
pub struct Guard {
    child: Child,
    /// The pipe whose end of file tells the guard that the CLI is gone.
    tie: Option<ChildStdin>,
}

impl Guard {
    /// Starts the guard for a launched QEMU (and its backend). `log` takes the guard's few lines;
    /// `state_dir` is only put in its argv, so that the processes of a state directory can be
    /// found by it.
    pub fn spawn(
        qemu_pid: u32,
        backend_pid: Option<u32>,
        state_dir: &Path,
        pid_file: &Path,
        log: &Path,
    ) -> Result<Guard, VmError> {
        let program = guard_program()?;
        let log_file = crate::util::private::create_private_file(log)
            .map_err(|e| VmError::io("create", log, e))?;
        let mut cmd = Command::new(&program);
        cmd.arg0(GUARD_ARGV0)
            .arg("--qemu")
            .arg(qemu_pid.to_string())
            .arg("--state-dir")
            .arg(state_dir)
            .arg("--pid-file")
            .arg(pid_file);
        if let Some(b) = backend_pid {
            cmd.arg("--backend").arg(b.to_string());
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(log_file)
            // Its own process group: a harness that kills the CLI's whole group, or a terminal's
            // Ctrl-C, must not take the guard with it.
            .process_group(0)
            .spawn()
            .map_err(|e| VmError::io("start", &program, e))?;
        Ok(Guard {
            tie: child.stdin.take(),
            child,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The VM stays after the CLI (memory-resident mode): the guard only keeps the backend tied
    /// to QEMU from now on. Returns the guard's pid.
    pub fn detach(mut self) -> u32 {
        if let Some(mut tie) = self.tie.take() {
            // If the guard is already gone there is nothing left to tell.
            let _ = tie.write_all(&[DETACH_BYTE]);
        }
        self.child.id()
    }

    /// After the CLI stopped QEMU itself: the guard sees QEMU gone and exits; reap it (kill it if
    /// it lingers, which it has no reason to).
    pub fn reap(mut self) {
        self.tie = None;
        let start = Instant::now();
        while matches!(self.child.try_wait(), Ok(None)) {
            if start.elapsed() > TERM_GRACE {
                let _ = self.child.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = self.child.wait();
    }
}

/// The binary to run as the guard: the running one when it is one of ours (vdkr, vpdmn,
/// vcontainer, or an arch-named link to them), else `vcontainer` beside it or in PATH (a library
/// user's own program does not know the guard's argv[0]).
fn guard_program() -> Result<PathBuf, VmError> {
    let exe = std::env::current_exe().map_err(|e| VmError::io("find", "/proc/self/exe", e))?;
    let ours = |p: &Path| {
        p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
            ["vdkr", "vpdmn", "vcontainer"]
                .iter()
                .any(|o| n.starts_with(o))
        })
    };
    if ours(&exe) {
        return Ok(exe);
    }
    let sibling = exe.with_file_name("vcontainer");
    if sibling.is_file() {
        return Ok(sibling);
    }
    crate::util::path_lookup::find_in_path("vcontainer").ok_or(VmError::GuardMissing { exe })
}

/// The guard's arguments.
#[derive(Debug, PartialEq, Eq)]
struct GuardArgs {
    qemu: u32,
    backend: Option<u32>,
    pid_file: Option<PathBuf>,
}

fn parse_args(args: &[OsString]) -> Result<GuardArgs, String> {
    let mut qemu = None;
    let mut backend = None;
    let mut pid_file = None;
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .and_then(|v| v.to_str())
                .ok_or_else(|| format!("{flag:?} needs a value"))
        };
        match flag.to_str() {
            Some("--qemu") => qemu = Some(value()?.parse().map_err(|e| format!("--qemu: {e}"))?),
            Some("--backend") => {
                backend = Some(value()?.parse().map_err(|e| format!("--backend: {e}"))?)
            }
            Some("--state-dir") => {
                value()?;
            }
            Some("--pid-file") => pid_file = Some(PathBuf::from(value()?)),
            _ => return Err(format!("unknown argument {flag:?}")),
        }
    }
    Ok(GuardArgs {
        qemu: qemu.ok_or("--qemu is required")?,
        backend,
        pid_file,
    })
}

/// If this process was started as the guard, runs it and returns its exit code.
pub fn run_if_guard() -> Option<ExitCode> {
    let mut args = std::env::args_os();
    let argv0 = args.next()?;
    let name = Path::new(&argv0).file_name()?;
    if name != GUARD_ARGV0 {
        return None;
    }
    let rest: Vec<OsString> = args.collect();
    Some(match parse_args(&rest).map(|a| guard(&a)) {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(e)) | Err(e) => {
            eprintln!("{GUARD_ARGV0}: {e}");
            ExitCode::FAILURE
        }
    })
}

fn open_pidfd(pid: u32) -> Option<OwnedFd> {
    let pid = Pid::from_raw(i32::try_from(pid).ok()?)?;
    pidfd_open(pid, PidfdFlags::empty()).ok()
}

fn guard(args: &GuardArgs) -> Result<(), String> {
    let backend = args.backend.and_then(open_pidfd);
    if let Some(qemu) = open_pidfd(args.qemu) {
        watch(&qemu)?;
    }
    if let Some(b) = backend {
        stop(&b, "the vsock backend");
    }
    if let Some(marker) = &args.pid_file {
        remove_marker_of(marker, args.qemu);
    }
    Ok(())
}

/// Removes the running marker if it still names the QEMU that just exited (a newer VM of the
/// same state directory has its own pid there).
fn remove_marker_of(marker: &Path, qemu: u32) {
    let names_it = std::fs::read_to_string(marker)
        .ok()
        .and_then(|t| t.trim().parse::<u32>().ok())
        == Some(qemu);
    if names_it {
        let _ = std::fs::remove_file(marker);
    }
}

/// Returns once QEMU has exited, stopping it first if the CLI went away without detaching and
/// the guest did not power off within [`GUARD_GRACE`].
fn watch(qemu: &OwnedFd) -> Result<(), String> {
    let stdin = std::io::stdin();
    let mut tie_open = true;
    let mut detached = false;
    let mut cli_gone: Option<Instant> = None;
    loop {
        let timeout = cli_gone.map(|t| timespec(GUARD_GRACE.saturating_sub(t.elapsed())));
        let mut fds = vec![PollFd::new(qemu, PollFlags::IN)];
        if tie_open {
            fds.push(PollFd::new(&stdin, PollFlags::IN));
        }
        match poll(&mut fds, timeout.as_ref()) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(format!("poll: {e}")),
        }
        if !fds[0].revents().is_empty() {
            return Ok(());
        }
        if tie_open && !fds[1].revents().is_empty() {
            let mut buf = [0u8; 16];
            match stdin.lock().read(&mut buf) {
                Ok(0) | Err(_) => {
                    tie_open = false;
                    if !detached {
                        eprintln!(
                            "the CLI that launched QEMU is gone; waiting up to {} s for the guest to power off",
                            GUARD_GRACE.as_secs()
                        );
                        cli_gone = Some(Instant::now());
                    }
                }
                Ok(n) => detached |= buf[..n].contains(&DETACH_BYTE),
            }
        }
        if cli_gone.is_some_and(|t| t.elapsed() >= GUARD_GRACE) {
            eprintln!("the guest did not power off: stopping QEMU");
            stop(qemu, "QEMU");
            return Ok(());
        }
    }
}

/// SIGTERM, then SIGKILL if the process is still there after [`TERM_GRACE`].
fn stop(pidfd: &OwnedFd, what: &str) {
    if pidfd_send_signal(pidfd, Signal::TERM).is_err() {
        return; // already gone
    }
    if !exited_within(pidfd, TERM_GRACE) {
        eprintln!("{what} ignored SIGTERM: killing it");
        let _ = pidfd_send_signal(pidfd, Signal::KILL);
    }
}

fn exited_within(pidfd: &OwnedFd, within: Duration) -> bool {
    let mut fds = [PollFd::new(pidfd, PollFlags::IN)];
    let t = timespec(within);
    matches!(poll(&mut fds, Some(&t)), Ok(n) if n > 0)
}

fn timespec(d: Duration) -> Timespec {
    Timespec {
        tv_sec: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        tv_nsec: i64::from(d.subsec_nanos()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    #[test]
    fn arguments() {
        assert_eq!(
            parse_args(&os(&[
                "--qemu",
                "12",
                "--state-dir",
                "/s",
                "--backend",
                "13"
            ])),
            Ok(GuardArgs {
                qemu: 12,
                backend: Some(13),
                pid_file: None,
            })
        );
        assert!(parse_args(&os(&["--backend", "1"])).is_err());
        assert!(parse_args(&os(&["--qemu"])).is_err());
        assert!(parse_args(&os(&["--qemu", "x"])).is_err());
        assert!(parse_args(&os(&["--qemu", "1", "--other"])).is_err());
    }

    /// The guard's own logic against real processes: the "backend" is stopped when "QEMU" exits.
    #[test]
    fn the_backend_is_stopped_when_qemu_exits() {
        let mut qemu = Command::new("sleep").arg("0.3").spawn().expect("sleep");
        let mut backend = Command::new("sleep").arg("600").spawn().expect("sleep");
        let dir = tempfile::tempdir().expect("tempdir");
        let marker = dir.path().join("daemon.pid");
        std::fs::write(&marker, format!("{}\n", qemu.id())).expect("marker");
        let args = GuardArgs {
            qemu: qemu.id(),
            backend: Some(backend.id()),
            pid_file: Some(marker.clone()),
        };
        let started = Instant::now();
        // The test's own stdin stays open: the "CLI" is alive.
        let watcher = std::thread::spawn(move || guard(&args));
        let _ = qemu.wait();
        watcher.join().expect("join").expect("guard");
        let status = backend.wait().expect("wait");
        assert!(!status.success(), "the backend was signalled: {status:?}");
        assert!(started.elapsed() < Duration::from_secs(10));
        assert!(!marker.exists(), "the marker of the exited QEMU is removed");
    }

    #[test]
    fn a_marker_naming_another_qemu_stays() {
        let dir = tempfile::tempdir().expect("tempdir");
        let marker = dir.path().join("daemon.pid");
        std::fs::write(&marker, "4242\n").expect("marker");
        remove_marker_of(&marker, 4243);
        assert!(marker.exists());
        remove_marker_of(&marker, 4242);
        assert!(!marker.exists());
    }
}
