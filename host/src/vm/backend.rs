//! vsock without /dev/vhost-vsock: supervising `vhost-device-vsock`, the rust-vmm vhost-user backend
//! QEMU's `vhost-user-vsock` device talks to. Plus the probe for the kernel's vhost-vsock and the
//! guest CID choice when that one is usable.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::VmError;
use crate::util::path_lookup::{find_in_path, is_executable};

const BACKEND_BINARY: &str = "vhost-device-vsock";

/// The credit the backend grants the guest per connection (`tx-buffer-size`), which bounds the
/// largest packet the guest sends. Linux guests with the 2025 stable change "vsock/virtio:
/// Allocate nonlinear SKBs for handling large transmit buffers" (Debian trixie's 6.12, Yocto
/// kernels of that age) put a packet of more than `SKB_WITH_OVERHEAD(32 KiB)` = 32448 bytes into
/// page fragments: several data descriptors. vhost-device-vsock 0.3.0 (virtio-vsock up to 0.12)
/// reads one data descriptor only, drops such a packet ("error reading TX packet:
/// DescriptorLengthTooSmall") and the connection then waits forever for credit: a storage export
/// from a trixie-kernel guest stalled. With at most 32000 bytes of credit (plus the 44-byte header) every
/// packet stays linear. The default is 64 KiB; figures for both are in the README.
pub const BACKEND_TX_BUFFER: u32 = 32_000;

/// The backend creates its socket in well under 100 ms; a few seconds covers a loaded 2-core host.
pub const DEFAULT_BACKEND_DEADLINE: Duration = Duration::from_secs(5);

/// Polling interval while waiting for the backend's socket to appear.
const SOCKET_POLL: Duration = Duration::from_millis(5);

/// The guest CID the vhost-user backend gives the guest. Every instance has its own backend, so the
/// CID only has to differ from the host's (2); the host reaches the guest through the backend's unix
/// socket, never by CID.
pub const VHOST_USER_GUEST_CID: u32 = 3;

/// A running `vhost-device-vsock`, killed on drop unless [`VsockBackend::detach`]ed.
#[derive(Debug)]
pub struct VsockBackend {
    child: Option<Child>,
    pid: u32,
    vhost_socket: PathBuf,
    uds_path: PathBuf,
    log: PathBuf,
}

impl VsockBackend {
    /// `vhost-device-vsock` from PATH, else from ~/.cargo/bin (where `cargo install` puts it, and
    /// which is often not in PATH for non-interactive shells and CI).
    pub fn find_binary() -> Result<PathBuf, VmError> {
        let home = std::env::var_os("HOME").map(PathBuf::from);
        find_in_path(BACKEND_BINARY)
            .or_else(|| {
                home.map(|h| h.join(".cargo/bin").join(BACKEND_BINARY))
                    .filter(|p| is_executable(p))
            })
            .ok_or(VmError::BackendMissing)
    }

    /// Starts the backend for one VM and returns once it listens on `vhost_socket`, which QEMU then
    /// connects to. Host-side connections go to `uds_path` (`CONNECT <port>`), guest-initiated ones
    /// arrive at `<uds_path>_<port>`, which the caller must listen on before the guest dials.
    ///
    /// Readiness is the socket file appearing, never a test connect(): the backend serves exactly one
    /// frontend, and a probe connection would take that slot from QEMU.
    pub fn start(
        binary: &Path,
        vhost_socket: &Path,
        uds_path: &Path,
        log: &Path,
        deadline: Duration,
    ) -> Result<VsockBackend, VmError> {
        // Leftovers of a killed run make the backend fail to bind (or make us think it is ready).
        // The instance lock guarantees no live backend of this instance owns them.
        for stale in [vhost_socket, uds_path] {
            remove_if_exists(stale)?;
        }
        let log_file = crate::util::private::create_private_file(log)
            .map_err(|e| VmError::io("create", log, e))?;
        let log_err = log_file
            .try_clone()
            .map_err(|e| VmError::io("open", log, e))?;

        let mut vm_arg =
            std::ffi::OsString::from(format!("guest-cid={VHOST_USER_GUEST_CID},socket="));
        vm_arg.push(vhost_socket.as_os_str());
        vm_arg.push(",uds-path=");
        vm_arg.push(uds_path.as_os_str());
        vm_arg.push(format!(",tx-buffer-size={BACKEND_TX_BUFFER}"));

        let child = Command::new(binary)
            .arg("--vm")
            .arg(&vm_arg)
            .stdin(Stdio::null())
            .stdout(log_file)
            .stderr(log_err)
            // Own process group: a Ctrl-C in the terminal must reach only the CLI, which then shuts
            // the guest down in order instead of losing the vsock path under it.
            .process_group(0)
            .spawn()
            .map_err(|e| VmError::io("start", binary, e))?;

        let mut backend = VsockBackend {
            pid: child.id(),
            child: Some(child),
            vhost_socket: vhost_socket.to_owned(),
            uds_path: uds_path.to_owned(),
            log: log.to_owned(),
        };
        backend.wait_listening(deadline)?;
        Ok(backend)
    }

    fn wait_listening(&mut self, deadline: Duration) -> Result<(), VmError> {
        let started = Instant::now();
        loop {
            if self.vhost_socket.exists() {
                // The backend makes its sockets with the default umask; anyone who can connect
                // to them can talk to the guest agent. The state directory is 0700 already.
                for s in [&self.vhost_socket, &self.uds_path] {
                    if s.exists() {
                        crate::util::private::make_private(s)
                            .map_err(|e| VmError::io("chmod", s, e))?;
                    }
                }
                return Ok(());
            }
            if let Some(status) = self.try_wait()? {
                return Err(VmError::BackendDied {
                    pid: self.pid,
                    status: status.to_string(),
                    socket: self.vhost_socket.clone(),
                    log_tail: self.log_tail(20),
                });
            }
            if started.elapsed() >= deadline {
                self.kill();
                return Err(VmError::BackendTimeout {
                    pid: self.pid,
                    socket: self.vhost_socket.clone(),
                    waited_ms: started.elapsed().as_millis(),
                    log_tail: self.log_tail(20),
                });
            }
            std::thread::sleep(SOCKET_POLL);
        }
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn vhost_socket(&self) -> &Path {
        &self.vhost_socket
    }

    /// Where host-side connections go (`CONNECT <port>\n`); `<uds_path>_<port>` for guest-initiated ones.
    pub fn uds_path(&self) -> &Path {
        &self.uds_path
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The exit status if the backend has exited (None if running or detached).
    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>, VmError> {
        match &mut self.child {
            Some(child) => child
                .try_wait()
                .map_err(|e| VmError::io("wait for", BACKEND_BINARY, e)),
            None => Ok(None),
        }
    }

    /// Kills and reaps the backend. Idempotent.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Errors mean it already exited; wait() reaps it either way.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Leaves the backend running after this value (and the CLI) is gone, for memory-resident mode.
    pub fn detach(mut self) -> u32 {
        self.child = None;
        self.pid
    }

    pub fn log_tail(&self, lines: usize) -> String {
        crate::util::tail::file_tail(&self.log, lines)
    }
}

impl Drop for VsockBackend {
    fn drop(&mut self) {
        self.kill();
    }
}

/// True if the host kernel's vhost-vsock can be used (QEMU's `vhost-vsock-pci` opens this device).
pub fn kernel_vsock_usable() -> bool {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/vhost-vsock")
        .is_ok()
}

/// A guest CID for the kernel vhost-vsock transport. CIDs are global on the host, shared with every
/// other VM (ours and other tools'), and cannot be reserved ahead of QEMU: QEMU fails at start with
/// "unable to set guest cid: Address already in use" when a CID is taken. So pick a random one in a
/// large range, where a collision is unlikely, and let the caller retry with a fresh pick when
/// [`qemu_log_says_cid_in_use`]. (Untested here: this machine has no /dev/vhost-vsock.)
pub fn pick_guest_cid() -> u32 {
    // 0, 1 and 2 are reserved (hypervisor, local, host); u32::MAX is VMADDR_CID_ANY. Staying below
    // 2^31 also keeps clear of tools that treat CIDs as signed.
    const FIRST: u32 = 1000;
    const SPAN: u32 = (1 << 31) - FIRST;
    FIRST + random_u32() % SPAN
}

/// True if QEMU's log shows it failed because the kernel vhost-vsock CID is taken.
pub fn qemu_log_says_cid_in_use(qemu_log: &str) -> bool {
    qemu_log.contains("guest cid") && qemu_log.contains("Address already in use")
}

fn random_u32() -> u32 {
    let mut buf = [0u8; 4];
    if File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .is_ok()
    {
        return u32::from_ne_bytes(buf);
    }
    // Not cryptographic, only needs to differ between concurrent launches.
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    nanos ^ std::process::id().rotate_left(16)
}

fn remove_if_exists(path: &Path) -> Result<(), VmError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(VmError::io("remove stale", path, e))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_cids_avoid_reserved_values() {
        for _ in 0..1000 {
            let cid = pick_guest_cid();
            assert!((1000..(1 << 31)).contains(&cid), "{cid}");
        }
    }

    #[test]
    fn cid_conflict_is_recognised() {
        let log = "qemu-system-x86_64: -device vhost-vsock-pci,guest-cid=7: vhost-vsock: unable to set guest cid: Address already in use";
        assert!(qemu_log_says_cid_in_use(log));
        assert!(!qemu_log_says_cid_in_use(
            "qemu-system-x86_64: terminating on signal 15"
        ));
    }

    /// A fake backend: a shell script that logs, creates the socket file and waits. Tests the
    /// supervision without the real binary.
    fn fake_backend(dir: &Path, script: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let bin = dir.join("fake-backend");
        std::fs::write(&bin, format!("#!/bin/sh\n{script}\n")).expect("write script");
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        bin
    }

    #[test]
    fn start_waits_for_the_socket_and_kills_on_drop() {
        let dir = tempfile::tempdir().expect("tempdir");
        // $2 is "guest-cid=3,socket=…,uds-path=…": pull the socket path out of it.
        let bin = fake_backend(
            dir.path(),
            r#"echo "args: $*"; s=${2#*socket=}; s=${s%%,*}; sleep 0.05; touch "$s"; exec sleep 30"#,
        );
        let backend = VsockBackend::start(
            &bin,
            &dir.path().join("vhost.sock"),
            &dir.path().join("vsock.sock"),
            &dir.path().join("backend.log"),
            Duration::from_secs(5),
        )
        .expect("backend starts");
        let pid = backend.pid();
        assert!(Path::new(&format!("/proc/{pid}")).exists());
        assert!(backend.log_tail(5).contains("--vm guest-cid=3,socket="));
        assert!(backend.log_tail(5).contains(",tx-buffer-size=32000"));
        drop(backend);
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "backend reaped on drop"
        );
    }

    #[test]
    fn early_death_reports_the_log_tail() {
        let dir = tempfile::tempdir().expect("tempdir");
        let bin = fake_backend(dir.path(), "echo 'Error: cannot bind' >&2; exit 3");
        let err = VsockBackend::start(
            &bin,
            &dir.path().join("vhost.sock"),
            &dir.path().join("vsock.sock"),
            &dir.path().join("backend.log"),
            Duration::from_secs(5),
        )
        .expect_err("must fail");
        let msg = err.to_string();
        assert!(
            msg.contains("cannot bind") && msg.contains("exit status: 3"),
            "{msg}"
        );
    }

    #[test]
    fn missing_socket_times_out() {
        let dir = tempfile::tempdir().expect("tempdir");
        let bin = fake_backend(dir.path(), "exec sleep 30");
        let err = VsockBackend::start(
            &bin,
            &dir.path().join("vhost.sock"),
            &dir.path().join("vsock.sock"),
            &dir.path().join("backend.log"),
            Duration::from_millis(100),
        )
        .expect_err("must time out");
        assert!(matches!(err, VmError::BackendTimeout { .. }), "{err}");
    }
}
