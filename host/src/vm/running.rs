//! A running QEMU and its vsock backend, supervised together: both are stopped when the
//! [`RunningVm`] is dropped, unless it was detached for memory-resident mode.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::backend::{VsockBackend, DEFAULT_BACKEND_DEADLINE};
use super::guard::Guard;
use super::port_forward::{PortForward, PortProto};
use super::qemu::{qemu_argv, qemu_binary, qemu_package, VmSpec, VsockDevice};
use super::VmError;
use crate::util::path_lookup::find_in_path;
use crate::util::tail::file_tail;

/// How long QEMU gets to exit on SIGTERM before SIGKILL. It exits in well under 100 ms when idle.
const TERM_GRACE: Duration = Duration::from_secs(2);
const EXIT_POLL: Duration = Duration::from_millis(10);

/// Host-side files of one launch (the console log is in the [`VmSpec`]).
#[derive(Debug, Clone)]
pub struct LaunchFiles {
    /// QEMU's own stdout/stderr (its error messages, not the guest console).
    pub qemu_log: PathBuf,
    /// The vsock backend's stdout/stderr.
    pub backend_log: PathBuf,
    /// The backend's host-side unix socket (`vsock.sock`); the guest's connections to host port P
    /// arrive at `<vsock_uds>_P`.
    pub vsock_uds: PathBuf,
    /// The guard's few lines (why it stopped QEMU, if it had to).
    pub guard_log: PathBuf,
    /// The running marker of a memory-resident VM, which the guard removes when that VM's QEMU
    /// exits (an idle shutdown, a guest that powered off) if it still names that QEMU.
    pub daemon_pid: PathBuf,
    /// The instance's state directory, named in the guard's argv so that every process of a
    /// state directory can be found by it.
    pub state_dir: PathBuf,
}

/// Process ids of a detached VM, to record in the instance metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DetachedVm {
    pub qemu_pid: u32,
    pub backend_pid: Option<u32>,
    pub guard_pid: Option<u32>,
}

#[derive(Debug)]
pub struct RunningVm {
    qemu: Option<Child>,
    pid: u32,
    backend: Option<VsockBackend>,
    guard: Option<Guard>,
    console_log: PathBuf,
    qemu_log: PathBuf,
}

/// Starts the vsock backend (for [`VsockDevice::VhostUser`]) and waits until it listens, then QEMU.
/// Returns as soon as QEMU is spawned: readiness is the agent's `Hello`, which the caller awaits on
/// its transport with a boot deadline.
/// Binds every forwarded host port once before QEMU does: QEMU's own failure names only the rule,
/// late in its log, after the backend started. (A port taken between this check and QEMU's bind
/// still fails QEMU, with that rule in the QEMU log the boot error shows.)
pub fn check_host_ports(forwards: &[PortForward]) -> Result<(), VmError> {
    for f in forwards {
        let addr = std::net::SocketAddrV4::new(f.bind, f.host);
        let bound = match f.proto {
            PortProto::Tcp => std::net::TcpListener::bind(addr).map(drop),
            PortProto::Udp => std::net::UdpSocket::bind(addr).map(drop),
        };
        bound.map_err(|source| VmError::PortUnavailable {
            forward: *f,
            source,
        })?;
    }
    Ok(())
}

pub fn spawn_vm(spec: &VmSpec, files: &LaunchFiles) -> Result<RunningVm, VmError> {
    spec.validate()?;
    let binary = qemu_binary(spec.arch);
    let qemu_path = find_in_path(binary).ok_or(VmError::QemuMissing {
        binary,
        package: qemu_package(spec.arch),
    })?;

    check_host_ports(&spec.port_forwards)?;

    let backend = match &spec.vsock {
        VsockDevice::VhostUser { socket } => Some(VsockBackend::start(
            &VsockBackend::find_binary()?,
            socket,
            &files.vsock_uds,
            &files.backend_log,
            DEFAULT_BACKEND_DEADLINE,
        )?),
        VsockDevice::Kernel { .. } => None,
    };

    // Empty the console log now rather than when QEMU opens it, so that a console tail taken in
    // between never shows the previous boot's last words as this one's.
    crate::util::private::create_private_file(&spec.console_log)
        .map_err(|e| VmError::io("create", &spec.console_log, e))?;
    let log = crate::util::private::create_private_file(&files.qemu_log)
        .map_err(|e| VmError::io("create", &files.qemu_log, e))?;
    let log_err = log
        .try_clone()
        .map_err(|e| VmError::io("open", &files.qemu_log, e))?;
    let qemu = Command::new(&qemu_path)
        .args(qemu_argv(spec))
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        // Own process group, so a terminal's Ctrl-C reaches only the CLI, which then shuts the guest
        // down cleanly (engine stop, sync) instead of QEMU dying under a half-written state disk.
        .process_group(0)
        .spawn()
        .map_err(|e| VmError::io("start", &qemu_path, e))?;
    // If spawning failed, `backend` is dropped here and killed with it.

    let mut vm = RunningVm {
        pid: qemu.id(),
        qemu: Some(qemu),
        backend,
        guard: None,
        console_log: spec.console_log.clone(),
        qemu_log: files.qemu_log.clone(),
    };
    // Started right after QEMU: until then QEMU is our unreaped child, so its pid cannot be
    // reused before the guard holds it as a pidfd. Without a guard the VM is not started.
    vm.guard = Some(Guard::spawn(
        vm.pid,
        vm.backend.as_ref().map(VsockBackend::pid),
        &files.state_dir,
        &files.daemon_pid,
        &files.guard_log,
    )?);
    Ok(vm)
}

impl RunningVm {
    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn backend(&self) -> Option<&VsockBackend> {
        self.backend.as_ref()
    }

    /// QEMU's exit status if it has exited. A VM whose backend died is reported as still running
    /// (QEMU notices a lost vhost-user backend only lazily); use [`RunningVm::backend_exited`].
    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>, VmError> {
        match &mut self.qemu {
            Some(child) => child
                .try_wait()
                .map_err(|e| VmError::io("wait for", &self.qemu_log, e)),
            None => Ok(None),
        }
    }

    /// True if the vsock backend has exited: the guest can no longer reach the host.
    pub fn backend_exited(&mut self) -> bool {
        match &mut self.backend {
            Some(b) => matches!(b.try_wait(), Ok(Some(_))),
            None => false,
        }
    }

    /// Waits up to `timeout` for QEMU to exit (after the guest powered off); None on timeout.
    pub async fn wait_exit_async(
        &mut self,
        timeout: Duration,
    ) -> Result<Option<ExitStatus>, VmError> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.try_wait()? {
                return Ok(Some(status));
            }
            if start.elapsed() >= timeout {
                return Ok(None);
            }
            tokio::time::sleep(EXIT_POLL).await;
        }
    }

    /// Stops QEMU (SIGTERM, then SIGKILL after a grace period) and the backend, and reaps both.
    /// For a guest that did not shut down in time; the orderly path is the agent's shutdown
    /// operation followed by [`RunningVm::wait_exit_async`]. Idempotent.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.qemu.take() {
            if matches!(child.try_wait(), Ok(None)) {
                // SIGTERM lets QEMU close its files properly; it exits at once on it.
                if let Ok(pid) = i32::try_from(self.pid) {
                    let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
                }
                let start = Instant::now();
                while matches!(child.try_wait(), Ok(None)) && start.elapsed() < TERM_GRACE {
                    std::thread::sleep(EXIT_POLL);
                }
                let _ = child.kill();
            }
            let _ = child.wait();
        }
        if let Some(mut backend) = self.backend.take() {
            backend.kill();
        }
        if let Some(guard) = self.guard.take() {
            guard.reap();
        }
    }

    /// Leaves QEMU and the backend running after this value (and the CLI) is gone, for
    /// memory-resident mode.
    pub fn detach(mut self) -> DetachedVm {
        self.qemu = None;
        DetachedVm {
            qemu_pid: self.pid,
            backend_pid: self.backend.take().map(VsockBackend::detach),
            guard_pid: self.guard.take().map(Guard::detach),
        }
    }

    /// The last `lines` lines of the guest console, printable text only, for error messages.
    pub fn console_tail(&self, lines: usize) -> String {
        file_tail(&self.console_log, lines)
    }

    /// The last `lines` lines of QEMU's own output (its errors, e.g. a device it could not set up).
    pub fn qemu_log_tail(&self, lines: usize) -> String {
        file_tail(&self.qemu_log, lines)
    }

    pub fn console_log(&self) -> &Path {
        &self.console_log
    }

    pub fn qemu_log(&self) -> &Path {
        &self.qemu_log
    }
}

impl Drop for RunningVm {
    fn drop(&mut self) {
        self.kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_taken_host_port_is_named_in_the_error() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = taken.local_addr().expect("addr").port();
        let forward: PortForward = format!("127.0.0.1:{port}:80").parse().expect("pf");
        let err = check_host_ports(&[forward])
            .expect_err("in use")
            .to_string();
        assert!(err.contains(&format!("host port {port}/tcp")), "{err}");
        drop(taken);
        check_host_ports(&[forward]).expect("free again");
    }
}
