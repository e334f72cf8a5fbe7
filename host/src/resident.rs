//! Memory-resident instances: a VM left running by `memres start`, which later commands reach
//! straight through the vsock transport (no boot, no relay process of our own).

use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::ops;
use crate::state::{InstanceRecord, ProcessRecord, StateDir, StateError};
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

/// Kills what is left of a record's processes (only if they are still the recorded ones) and
/// removes the record and its sockets.
fn clean_stale(state: &StateDir, record: &InstanceRecord) {
    for p in std::iter::once(&record.qemu).chain(record.backend.as_ref()) {
        kill_if_same(p);
    }
    for path in [
        state.instance_file(),
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
