//! One VM instance from boot to shutdown: state directory and lock, state disk, transport, QEMU,
//! the agent's dial-in with a boot deadline (kill and retry once), boot configuration, readiness.

use std::path::PathBuf;
use std::process::ExitStatus;
use std::sync::Arc;
use std::time::{Duration, Instant};

use vcontainer_initramfs::Arch;
use vcontainer_protocol::{AgentMsg, BootConfig, Hello, HostMsg, ReadyInfo, CONTROL_PORT};

use crate::guest::boot_image::BootImage;
use crate::ops;
use crate::session::{AgentConn, ConnReader, ConnWriter, SessionError};
use crate::state::{
    InstanceLock, LockWait, StateDir, StateDisk, StateError, StateLocation, Tool,
    DEFAULT_STATE_DISK_SIZE,
};
use crate::transport::{
    ControlListener, HybridControlListener, HybridVsock, KernelControlListener, KernelVsock,
    Transport,
};
use crate::util::progress::Reporter;
use crate::vm::{self, choose_accel, spawn_vm, Machine, RunningVm, VmError, VmSpec, VsockDevice};

/// From QEMU start to the agent's dial-in. Measured under TCG: 3–6 s; generous for loaded hosts.
const BOOT_DEADLINE: Duration = Duration::from_secs(90);
/// From the agent's `Hello` to `Ready` (engine start). dockerd under cross-arch TCG took 24–40 s
/// upstream.
const ENGINE_DEADLINE: Duration = Duration::from_secs(300);
const BOOT_ATTEMPTS: u32 = 2;
const GUEST_MEMORY_MIB: u32 = 2048;
const GUEST_CPUS: u32 = 2;

/// Where the instance keeps its state.
#[derive(Debug, Clone)]
pub enum StateChoice {
    Default,
    Instance(String),
    Dir(PathBuf),
    /// A throw-away state directory and disk, deleted afterwards.
    Stateless,
}

#[derive(Debug, Clone)]
pub struct InstanceConfig {
    pub tool: Tool,
    pub arch: Arch,
    pub state: StateChoice,
    /// Storage tar to seed the engine with before it starts.
    pub input_storage: Option<PathBuf>,
    pub no_kvm: bool,
    /// Network, registries, port forwards, idle timeout.
    pub guest: crate::guest::options::GuestOptions,
}

/// The state directory a choice names (a fresh temporary one for stateless runs, deleted when
/// the returned guard drops). Creates nothing else.
pub fn resolve_state(
    tool: Tool,
    arch: Arch,
    choice: &StateChoice,
) -> Result<(StateDir, Option<tempfile::TempDir>), StateError> {
    Ok(match choice {
        StateChoice::Stateless => {
            let dir = tempfile::Builder::new()
                .prefix(&format!("{}-", tool.name()))
                .tempdir()
                .map_err(|e| {
                    StateError::io("create temporary directory", std::env::temp_dir(), e)
                })?;
            let sd = StateDir::resolve_in_home(
                tool,
                &StateLocation::Explicit(dir.path().to_path_buf()),
            )?;
            (sd, Some(dir))
        }
        StateChoice::Default => (
            StateDir::resolve_in_home(tool, &StateLocation::Default(arch))?,
            None,
        ),
        StateChoice::Instance(n) => (
            StateDir::resolve_in_home(tool, &StateLocation::Instance(n.clone()))?,
            None,
        ),
        StateChoice::Dir(d) => (
            StateDir::resolve_in_home(tool, &StateLocation::Explicit(d.clone()))?,
            None,
        ),
    })
}

#[derive(Debug, thiserror::Error)]
pub enum InstanceError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Vm(#[from] VmError),
    #[error("cannot listen for the guest on {path}: {source}")]
    Listen {
        path: String,
        source: std::io::Error,
    },
    #[error("the {arch} guest did not come up within {secs} s (tried {attempts} times)\n--- guest console (last lines) ---\n{console}")]
    BootTimeout {
        arch: Arch,
        secs: u64,
        attempts: u32,
        console: String,
    },
    #[error("QEMU exited during boot ({status})\n--- QEMU log ---\n{qemu_log}\n--- guest console (last lines) ---\n{console}")]
    QemuExited {
        status: String,
        qemu_log: String,
        console: String,
    },
    #[error("the guest agent failed during boot: {source}\n--- guest console (last lines) ---\n{console}")]
    Agent {
        source: SessionError,
        console: String,
    },
    #[error("the state disk {} is in use by another process ({holders}), which is not a VM vcontainer owns for this state directory; stop it or use another --state-dir\n--- QEMU log ---\n{qemu_log}", disk.display())]
    DiskInUse {
        disk: PathBuf,
        holders: String,
        qemu_log: String,
    },
    #[error("the guest is {got}, but {expected} was requested: the guest image is wrong")]
    WrongGuest { expected: String, got: String },
    #[error("a memory-resident VM (QEMU pid {pid}) uses {dir}; run the command again to use it, or stop it with `memres stop`")]
    ResidentRunning { dir: PathBuf, pid: u32 },
    #[error("seeding the engine storage from {path} failed: {source}")]
    Seed { path: PathBuf, source: ops::OpError },
    #[error(transparent)]
    Registry(#[from] crate::guest::registry::RegistryError),
    #[error("installing the registry auth file in the guest failed: {0}")]
    Auth(ops::OpError),
}

/// A booted VM with its agent ready.
pub struct Instance {
    vm: RunningVm,
    transport: Arc<dyn Transport>,
    hello: Hello,
    ready: ReadyInfo,
    boot_time: Duration,
    state: StateDir,
    guest_cid: Option<u32>,
    /// Host ports QEMU forwards into this VM (recorded for `ps` / `memres status`).
    ports: Vec<crate::vm::port_forward::PortForward>,
    /// The agent's control connection, held open for as long as this process owns the VM: the
    /// guest is host-bound and shuts itself down when it closes (this process killed) before
    /// [`Instance::detach`] releases it.
    control: Control,
    _lock: Option<InstanceLock>,
    _temp: Option<tempfile::TempDir>,
}

impl Instance {
    pub async fn boot(
        config: &InstanceConfig,
        image: &BootImage,
        reporter: &Reporter,
    ) -> Result<Instance, InstanceError> {
        // Registry files (CA, auth) are checked before anything boots.
        let registry = crate::guest::registry::prepare(&config.guest.registry)?;
        for warning in &registry.warnings {
            reporter.notice(format!("warning: {warning}"));
        }
        let (state, temp) = resolve_state(config.tool, config.arch, &config.state)?;
        state.create()?;
        let lock = InstanceLock::acquire(&state, LockWait::Wait(None), |msg| reporter.notice(msg))?;
        // A memory-resident VM may have started while we waited for the lock; booting a second
        // VM on its state disk would corrupt it.
        if let Some(r) = crate::guest::resident::Resident::find(&state)? {
            return Err(InstanceError::ResidentRunning {
                dir: state.root().to_path_buf(),
                pid: r.record.qemu.pid,
            });
        }
        // We hold the lock and no record runs: a VM still on this state disk is owned by nobody.
        for orphan in crate::guest::resident::find_orphans(&state) {
            reporter.notice(orphan_notice(&state, &orphan));
            crate::guest::resident::stop_orphan(&state, &orphan).await;
        }
        let disk = StateDisk::open_or_create(&state.state_disk(), DEFAULT_STATE_DISK_SIZE)?;

        let accel = choose_accel(config.arch, config.no_kvm);
        reporter.debug(format!("accelerator: {:?} ({})", accel.accel, accel.reason));
        let use_kernel_vsock = vm::kernel_vsock_usable();

        let mut last_err = None;
        for attempt in 1..=BOOT_ATTEMPTS {
            let started = Instant::now();
            let mut guest_cid = None;
            let (mut listener, transport, vsock, extra): (
                Box<dyn ControlListener>,
                Arc<dyn Transport>,
                VsockDevice,
                Vec<String>,
            ) = if use_kernel_vsock {
                let cid = vm::pick_guest_cid();
                guest_cid = Some(cid);
                let port = CONTROL_PORT + 1 + (cid % 30000);
                let l =
                    KernelControlListener::bind(port).map_err(|source| InstanceError::Listen {
                        path: format!("vsock port {port}"),
                        source,
                    })?;
                (
                    Box::new(l),
                    Arc::new(KernelVsock::new(cid)),
                    VsockDevice::Kernel { cid },
                    vec![format!("vcontainer.control_port={port}")],
                )
            } else {
                let uds = state.vsock_socket();
                let l =
                    HybridControlListener::bind(&uds).map_err(|source| InstanceError::Listen {
                        path: state.vsock_listener(CONTROL_PORT).display().to_string(),
                        source,
                    })?;
                (
                    Box::new(l),
                    Arc::new(HybridVsock::new(&uds)),
                    VsockDevice::VhostUser {
                        socket: state.vhost_socket(),
                    },
                    vec![],
                )
            };
            let mut kernel_args = vec![format!("vcontainer.engine={}", config.tool.engine())];
            // Guest-side debugging (engine debug logs on the console); never secrets.
            if std::env::var_os("VCONTAINER_GUEST_DEBUG").is_some_and(|v| v == "1") {
                kernel_args.push("vcontainer.debug=1".into());
            }
            kernel_args.extend(extra);
            let spec = VmSpec {
                arch: config.arch,
                machine: Machine::default_for(config.arch),
                accel: accel.accel,
                memory_mib: GUEST_MEMORY_MIB,
                cpus: GUEST_CPUS,
                kernel: image.kernel.clone(),
                initramfs: image.initramfs.clone(),
                rootfs: image.rootfs.clone(),
                rootfs_type: image.rootfs_type.clone(),
                state_disk: Some(disk.path().to_path_buf()),
                vsock,
                console_log: state.console_log(),
                kernel_args,
                network: config.guest.network,
                port_forwards: config.guest.ports.clone(),
            };
            reporter.step(format!(
                "booting the {} guest ({}, {})",
                config.arch,
                config.tool.engine(),
                transport.describe()
            ));
            let mut vm = spawn_vm(&spec, &state.launch_files())?;
            match wait_for_agent(&mut vm, listener.as_mut(), config, disk.path()).await {
                Ok((conn, hello)) => {
                    let boot_time = started.elapsed();
                    reporter.debug(format!("agent up after {:.2} s", boot_time.as_secs_f64()));
                    let (ready, control) =
                        configure(conn, config, &registry, transport.as_ref(), &vm, reporter)
                            .await?;
                    return Ok(Instance {
                        vm,
                        transport,
                        hello,
                        ready,
                        boot_time,
                        state,
                        guest_cid,
                        ports: config.guest.ports.clone(),
                        control,
                        _lock: Some(lock),
                        _temp: temp,
                    });
                }
                Err(BootWait::Timeout) => {
                    reporter.notice(format!(
                        "the guest did not come up within {} s (attempt {attempt} of {BOOT_ATTEMPTS}); restarting it",
                        BOOT_DEADLINE.as_secs()
                    ));
                    let console = vm.console_tail(30);
                    vm.kill();
                    last_err = Some(InstanceError::BootTimeout {
                        arch: config.arch,
                        secs: BOOT_DEADLINE.as_secs(),
                        attempts: attempt,
                        console,
                    });
                }
                Err(BootWait::Crashed(e)) if attempt < BOOT_ATTEMPTS => {
                    reporter.notice(format!(
                        "QEMU died during boot (attempt {attempt} of {BOOT_ATTEMPTS}); restarting it"
                    ));
                    reporter.debug(e.to_string());
                    vm.kill();
                    last_err = Some(e);
                }
                Err(BootWait::Crashed(e)) | Err(BootWait::Failed(e)) => {
                    vm.kill();
                    return Err(e);
                }
            }
        }
        Err(last_err.unwrap_or(InstanceError::BootTimeout {
            arch: config.arch,
            secs: BOOT_DEADLINE.as_secs(),
            attempts: BOOT_ATTEMPTS,
            console: String::new(),
        }))
    }

    pub fn transport(&self) -> &dyn Transport {
        self.transport.as_ref()
    }

    pub fn hello(&self) -> &Hello {
        &self.hello
    }

    pub fn ready(&self) -> &ReadyInfo {
        &self.ready
    }

    /// Wall time from QEMU start to the agent's dial-in.
    pub fn boot_time(&self) -> Duration {
        self.boot_time
    }

    pub fn console_tail(&self, lines: usize) -> String {
        self.vm.console_tail(lines)
    }

    pub fn state(&self) -> &StateDir {
        &self.state
    }

    /// Why the VM can no longer serve operations, if it cannot: QEMU exited, or the vsock backend
    /// did (QEMU notices that only lazily). For the message of an operation that failed.
    pub fn vm_gone(&mut self) -> Option<String> {
        if let Ok(Some(status)) = self.vm.try_wait() {
            return Some(format!("QEMU exited unexpectedly ({status})"));
        }
        self.vm
            .backend_exited()
            .then(|| "the vsock backend (vhost-device-vsock) exited unexpectedly".to_string())
    }

    /// Leaves the VM running after this process exits (memory-resident mode) and records how
    /// later commands find it. A stateless instance cannot stay: its state is deleted on exit.
    pub async fn detach(self) -> Result<crate::state::InstanceRecord, InstanceError> {
        if self._temp.is_some() {
            return Err(InstanceError::WrongGuest {
                expected: "a persistent instance".into(),
                got: "a stateless one, which cannot stay resident".into(),
            });
        }
        let Instance {
            vm,
            state,
            guest_cid,
            hello,
            ports,
            control,
            ..
        } = self;
        // The guard first, then the agent: a CLI killed between the two leaves a guest that is
        // still host-bound and powers itself off, which the guard then sees through.
        let detached = vm.detach();
        control
            .release()
            .await
            .map_err(|source| InstanceError::Agent {
                source,
                console: crate::util::tail::file_tail(&state.console_log(), 30),
            })?;
        let qemu = crate::state::ProcessRecord::capture(detached.qemu_pid).ok_or_else(|| {
            InstanceError::QemuExited {
                status: "exited while being detached".into(),
                qemu_log: String::new(),
                console: String::new(),
            }
        })?;
        let backend = detached
            .backend_pid
            .and_then(crate::state::ProcessRecord::capture);
        let arch: Arch = hello.arch.parse().map_err(|_| InstanceError::WrongGuest {
            expected: "a known arch".into(),
            got: hello.arch.clone(),
        })?;
        let mut record =
            crate::state::InstanceRecord::new(arch, hello.engine.name(), qemu, backend, guest_cid);
        record.ports = ports;
        record.save(&state.instance_file())?;
        crate::state::write_pid_file(&state.daemon_pid_file(), record.qemu.pid)?;
        Ok(record)
    }

    /// Clean shutdown: the agent stops the engine, syncs and unmounts, then powers off; QEMU must
    /// exit soon after. If the agent cannot be reached, QEMU is killed.
    pub async fn shutdown(mut self, reporter: &Reporter) -> Result<(), InstanceError> {
        let result = ops::shutdown(self.transport.as_ref()).await;
        match self.vm.wait_exit_async(Duration::from_secs(20)).await? {
            Some(_) => {}
            None => {
                reporter.notice("the guest did not power off within 20 s; stopping QEMU");
                self.vm.kill();
            }
        }
        result.map_err(|e| InstanceError::Agent {
            source: match e {
                ops::OpError::Session(s) => s,
                other => SessionError::Protocol(vcontainer_protocol::ProtocolError::Io(
                    std::io::Error::other(other.to_string()),
                )),
            },
            console: self.vm.console_tail(30),
        })
    }
}

/// What QEMU says when another process holds the image it must open for writing.
const QEMU_LOCK_FAILURE: &str = "Failed to get \"write\" lock";

/// QEMU could not lock the state disk: name who holds it, rather than only quoting QEMU.
fn disk_in_use(disk: &std::path::Path, qemu_log: String) -> InstanceError {
    let holders = crate::vm::scan::holders_of(disk);
    let holders = if holders.is_empty() {
        "a process this user cannot see".to_string()
    } else {
        holders
            .iter()
            .map(|(pid, cmd)| format!("pid {pid}: {cmd}"))
            .collect::<Vec<_>>()
            .join("; ")
    };
    InstanceError::DiskInUse {
        disk: disk.to_path_buf(),
        holders,
        qemu_log,
    }
}

/// The one line said before an unowned VM of the state directory is stopped.
fn orphan_notice(state: &StateDir, orphan: &crate::guest::resident::Orphan) -> String {
    match (orphan.qemu_pid, orphan.backend_pid) {
        (0, Some(b)) => format!(
            "stopping a vsock backend (pid {b}) left behind without its VM on {}",
            state.root().display()
        ),
        (q, _) => format!(
            "found a VM on {} that no command or memory-resident record owns (QEMU pid {q}, left by a killed command): stopping it",
            state.root().display()
        ),
    }
}

enum BootWait {
    Timeout,
    /// QEMU was killed by a signal: an emulator fault (TCG has aborted on internal assertions
    /// under load), not something the same arguments will do again, so the boot is retried.
    Crashed(InstanceError),
    Failed(InstanceError),
}

/// Whether QEMU's exit was a crash (death by a signal we did not send) rather than an orderly
/// exit with a status: a bad argument or a guest that powered off exits, it does not abort.
fn died_by_signal(status: &ExitStatus) -> bool {
    use std::os::unix::process::ExitStatusExt;
    status.signal().is_some()
}

/// Waits for the agent's control connection and `Hello`, watching QEMU.
async fn wait_for_agent(
    vm: &mut RunningVm,
    listener: &mut dyn ControlListener,
    config: &InstanceConfig,
    state_disk: &std::path::Path,
) -> Result<(AgentConn, Hello), BootWait> {
    let deadline = tokio::time::Instant::now() + BOOT_DEADLINE;
    let accepted = loop {
        tokio::select! {
            res = listener.accept() => break res,
            _ = tokio::time::sleep(Duration::from_millis(100)) => {
                match vm.try_wait() {
                    Ok(Some(status)) => {
                        let qemu_log = vm.qemu_log_tail(20);
                        if qemu_log.contains(QEMU_LOCK_FAILURE) {
                            return Err(BootWait::Failed(disk_in_use(state_disk, qemu_log)));
                        }
                        let err = InstanceError::QemuExited {
                            status: status.to_string(),
                            qemu_log,
                            console: vm.console_tail(30),
                        };
                        return Err(if died_by_signal(&status) {
                            BootWait::Crashed(err)
                        } else {
                            BootWait::Failed(err)
                        });
                    }
                    Ok(None) => {}
                    Err(e) => return Err(BootWait::Failed(e.into())),
                }
                if tokio::time::Instant::now() >= deadline {
                    return Err(BootWait::Timeout);
                }
            }
        }
    };
    let stream = accepted.map_err(|source| {
        BootWait::Failed(InstanceError::Listen {
            path: "control listener".into(),
            source,
        })
    })?;
    let conn = AgentConn::handshake(stream).await.map_err(|source| {
        BootWait::Failed(InstanceError::Agent {
            source,
            console: vm.console_tail(30),
        })
    })?;
    let hello = conn.hello().clone();
    if hello.arch != config.arch.name() || hello.engine != config.tool.engine_kind() {
        return Err(BootWait::Failed(InstanceError::WrongGuest {
            expected: format!("{} with {}", config.arch, config.tool.engine()),
            got: format!("{} with {}", hello.arch, hello.engine),
        }));
    }
    Ok((conn, hello))
}

/// Sends the boot configuration (network, registries, seed storage), waits for the engine to be
/// ready, then installs the registry auth file (by its own operation: credentials never travel
/// in the boot configuration, which the agent logs in debug mode).
async fn configure(
    mut conn: AgentConn,
    config: &InstanceConfig,
    registry: &crate::guest::registry::PreparedRegistry,
    transport: &dyn Transport,
    vm: &RunningVm,
    reporter: &Reporter,
) -> Result<(ReadyInfo, Control), InstanceError> {
    let agent_err = |source: SessionError| InstanceError::Agent {
        source,
        console: vm.console_tail(30),
    };
    conn.send(&HostMsg::Boot(BootConfig {
        seed_storage: config.input_storage.is_some(),
        start_engine: true,
        network: config.guest.network,
        registry: registry.config.clone(),
        idle_timeout_secs: config.guest.idle_timeout_secs,
        host_bound: true,
        host_offline: config.guest.network && !crate::vm::route::host_has_default_route(),
        storage_driver: config.guest.storage_driver,
    }))
    .await
    .map_err(agent_err)?;
    let (mut reader, mut writer, _) = conn.into_split();
    if let Some(path) = &config.input_storage {
        let size = std::fs::metadata(path).map(|m| m.len()).ok();
        let bar = reporter.bytes_bar("seeding storage", size);
        let sent = ops::send_file(&mut writer, path, &mut |n| bar.set_position(n)).await;
        bar.finish_and_clear();
        sent.map_err(|source| InstanceError::Seed {
            path: path.clone(),
            source,
        })?;
    }
    reporter.step(format!("waiting for {} in the guest", config.tool.engine()));
    let msg = tokio::time::timeout(ENGINE_DEADLINE, reader.recv())
        .await
        .map_err(|_| {
            agent_err(SessionError::Protocol(
                vcontainer_protocol::ProtocolError::Io(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!(
                        "{} did not become ready within {} s",
                        config.tool.engine(),
                        ENGINE_DEADLINE.as_secs()
                    ),
                )),
            ))
        })?
        .map_err(agent_err)?;
    let ready = match msg {
        AgentMsg::Ready(r) => {
            reporter.debug(format!(
                "guest timings: init {} ms, rootfs {} ms, engine ready {} ms (guest uptime)",
                r.init_ms, r.rootfs_ms, r.engine_ms
            ));
            if let Some(driver) = r.storage_driver {
                reporter.debug(format!(
                    "{} storage driver: {}",
                    config.tool.engine(),
                    driver.engine_name(config.tool.engine_kind())
                ));
            }
            r
        }
        other => return Err(agent_err(SessionError::unexpected("Ready", &other))),
    };
    if let Some(auth) = &registry.auth {
        ops::set_auth(transport, auth)
            .await
            .map_err(InstanceError::Auth)?;
        reporter.debug("registry auth file installed in the guest");
    }
    Ok((ready, Control { reader, writer }))
}

/// The held control connection of a host-bound guest.
struct Control {
    reader: ConnReader,
    writer: ConnWriter,
}

/// How long the agent may take to acknowledge [`HostMsg::Detach`].
const DETACH_TIMEOUT: Duration = Duration::from_secs(10);

impl Control {
    /// Tells the agent that the VM outlives this process, and waits for its acknowledgement: a
    /// `Detach` still in flight when this process exits would read as the host going away.
    async fn release(mut self) -> Result<(), SessionError> {
        self.writer.send(&HostMsg::Detach).await?;
        let reply = tokio::time::timeout(DETACH_TIMEOUT, self.reader.recv())
            .await
            .map_err(|_| SessionError::NoAnswer {
                what: "Detach",
                within: DETACH_TIMEOUT,
            })??;
        match reply {
            AgentMsg::Done => Ok(()),
            other => Err(SessionError::unexpected("Done", &other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    #[test]
    fn only_a_signal_death_counts_as_a_crash() {
        // Raw wait statuses: a signal number in the low bits, an exit code shifted by 8.
        assert!(died_by_signal(&ExitStatus::from_raw(6))); // SIGABRT
        assert!(died_by_signal(&ExitStatus::from_raw(11)));
        assert!(!died_by_signal(&ExitStatus::from_raw(0)));
        assert!(!died_by_signal(&ExitStatus::from_raw(1 << 8)));
    }
}
