//! Memory-resident instances: a VM left running by `memres start`, which later commands reach
//! straight through the vsock transport (no boot, no relay process of our own).

use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::ops;
use std::path::PathBuf;

use crate::state::{InstanceRecord, ProcessRecord, StateDir, StateError, StateLocation, Tool};
use crate::transport::{HybridVsock, KernelVsock, Transport};

/// How long a graceful stop may take before the processes are killed.
const STOP_DEADLINE: Duration = Duration::from_secs(30);

/// A running memory-resident VM.
pub struct Resident {
    pub record: InstanceRecord,
    pub state: StateDir,
    transport: Arc<dyn Transport>,
}

impl Resident {
    /// The resident VM of `state`, if one runs. A record whose processes are gone (or whose pids
    /// now belong to other programs) is stale: it and the sockets it names are removed.
    pub fn find(state: &StateDir) -> Result<Option<Resident>, StateError> {
        let path = state.instance_file();
        let Some(record) = InstanceRecord::load(&path)? else {
            return Ok(None);
        };
        if !record.is_running() {
            clean_stale(state, &record);
            return Ok(None);
        }
        let transport: Arc<dyn Transport> = match record.guest_cid {
            Some(cid) => Arc::new(KernelVsock::new(cid)),
            None => Arc::new(HybridVsock::new(state.vsock_socket())),
        };
        Ok(Some(Resident {
            record,
            state: state.clone(),
            transport,
        }))
    }

    pub fn transport(&self) -> &dyn Transport {
        self.transport.as_ref()
    }

    /// The transport, shareable with tasks (the engine API proxy).
    pub fn shared_transport(&self) -> Arc<dyn Transport> {
        Arc::clone(&self.transport)
    }

    /// Graceful stop: the agent stops the engine, syncs and unmounts, then powers off; the
    /// processes must be gone within the deadline, else they are killed.
    pub async fn stop(self) -> Result<(), ops::OpError> {
        self.stop_within(STOP_DEADLINE).await
    }

    /// [`Resident::stop`] with a shorter grace period (`memres stop --force`).
    pub async fn stop_within(self, grace: Duration) -> Result<(), ops::OpError> {
        let graceful =
            match tokio::time::timeout(grace, ops::shutdown(self.transport.as_ref())).await {
                Ok(r) => r,
                Err(_) => Ok(()),
            };
        let deadline = Instant::now() + grace;
        while self.record.qemu.is_alive() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        clean_stale(&self.state, &self.record);
        graceful
    }
}

/// How long an orphaned VM gets to shut down cleanly through its agent before it is killed.
const ORPHAN_GRACE: Duration = Duration::from_secs(10);

/// A VM of `state` that no record owns, left by a CLI killed before VMs were tied to their CLI,
/// or whose record was deleted under it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Orphan {
    pub qemu_pid: u32,
    pub backend_pid: Option<u32>,
}

/// The orphaned VM processes of `state`. Only meaningful to a caller that holds the instance lock
/// (so no CLI owns a VM of this directory) and found no running resident record: every QEMU on
/// this directory's state disk is then unowned. Backends without a QEMU are reported too, as an
/// orphan with the QEMU pid 0.
pub fn find_orphans(state: &StateDir) -> Vec<Orphan> {
    let procs = crate::vm::scan::processes_of(state.root());
    let backend = procs.iter().find_map(|p| match &p.kind {
        crate::vm::scan::VmProcessKind::Backend { .. } => Some(p.pid),
        _ => None,
    });
    let disk = state.state_disk();
    let qemus: Vec<u32> = procs
        .iter()
        .filter(|p| {
            matches!(&p.kind, crate::vm::scan::VmProcessKind::Qemu { state_disk: Some(d), .. } if *d == disk)
        })
        .map(|p| p.pid)
        .collect();
    match (qemus.as_slice(), backend) {
        ([], None) => Vec::new(),
        ([], Some(b)) => vec![Orphan {
            qemu_pid: 0,
            backend_pid: Some(b),
        }],
        (qs, b) => qs
            .iter()
            .map(|&q| Orphan {
                qemu_pid: q,
                backend_pid: b,
            })
            .collect(),
    }
}

/// A QEMU of ours anywhere on this host that nobody owns: no running record of its state
/// directory names it and no command holds that directory's lock (or the directory is gone).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnownedVm {
    pub qemu_pid: u32,
    pub tool: Tool,
    pub arch: String,
    pub state_dir: PathBuf,
}

/// Every [`UnownedVm`] this user can see, of both tools (upstream's `memres list` looked for
/// both as well).
pub fn unowned_vms() -> Vec<UnownedVm> {
    crate::vm::scan::scan()
        .into_iter()
        .filter_map(|p| {
            let crate::vm::scan::VmProcessKind::Qemu { engine, arch, .. } = &p.kind else {
                return None;
            };
            let tool = Tool::from_engine(engine)?;
            let dir = p.state_dir()?.to_path_buf();
            let state =
                StateDir::resolve(tool, &dir, &StateLocation::Explicit(dir.clone())).ok()?;
            let recorded = InstanceRecord::load(&state.instance_file())
                .ok()
                .flatten()
                .is_some_and(|r| r.qemu.pid == p.pid && r.qemu.is_alive());
            (!recorded && !crate::state::is_locked(&state)).then_some(UnownedVm {
                qemu_pid: p.pid,
                tool,
                arch: arch.clone(),
                state_dir: dir,
            })
        })
        .collect()
}

/// Stops an orphan: a clean shutdown through its agent if its vsock backend still runs, then
/// SIGKILL for what is left after `ORPHAN_GRACE`.
pub async fn stop_orphan(state: &StateDir, orphan: &Orphan) {
    let backend = orphan.backend_pid.and_then(ProcessRecord::capture);
    let Some(qemu) = ProcessRecord::capture(orphan.qemu_pid).filter(|_| orphan.qemu_pid != 0)
    else {
        if let Some(b) = &backend {
            kill_if_same(b);
        }
        return;
    };
    let record = InstanceRecord::new(
        // Arch and engine only label the record; the stop does not read them.
        vcontainer_initramfs::Arch::X86_64,
        state.tool().engine(),
        qemu,
        backend,
        None,
    );
    let transport: Arc<dyn Transport> = Arc::new(HybridVsock::new(state.vsock_socket()));
    let resident = Resident {
        record,
        state: state.clone(),
        transport,
    };
    if backend.is_some() {
        let _ = resident.stop_within(ORPHAN_GRACE).await;
    } else {
        // Nothing can reach its agent: stop QEMU itself (it exits at once on SIGTERM, leaving a
        // state disk that the next mount's journal recovery makes consistent).
        if let Ok(pid) = i32::try_from(qemu.pid) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while qemu.is_alive() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        clean_stale(state, &resident.record);
    }
}

/// Kills what is left of a record's processes (only if they are still the recorded ones) and
/// removes the record and its sockets.
fn clean_stale(state: &StateDir, record: &InstanceRecord) {
    for p in std::iter::once(&record.qemu).chain(record.backend.as_ref()) {
        kill_if_same(p);
    }
    for path in [
        state.instance_file(),
        state.daemon_pid_file(),
        state.vsock_socket(),
        state.vhost_socket(),
        state.vsock_listener(vcontainer_protocol::CONTROL_PORT),
    ] {
        let _ = std::fs::remove_file(path);
    }
}

fn kill_if_same(p: &ProcessRecord) {
    if p.is_alive() {
        if let Ok(pid) = i32::try_from(p.pid) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}
