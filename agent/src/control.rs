//! The control connection: the agent dials the host once it has booted (the host never polls a
//! booting guest), says Hello, takes its BootConfig, seeds storage, starts the engine and reports
//! Ready. The connection then stays open as the VM's tie to the host process that booted it: a
//! host-bound guest ([`BootConfig::host_bound`]) whose host end closes before a
//! [`HostMsg::Detach`] shuts down cleanly and powers off. A CLI killed by a harness timeout
//! (SIGKILL, no chance to clean up) therefore takes its VM with it, with the engine stopped and
//! the state disk synced and unmounted, instead of leaving it running on the instance's disk.

use std::future::Future;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::UnixStream;
use tokio::sync::Mutex;
use tokio_vsock::{VsockAddr, VsockStream, VMADDR_CID_HOST};
use vcontainer_protocol::{
    AgentMsg, BootConfig, ErrorKind, HostMsg, MessageName, ProtocolError, ReadyInfo,
};

use crate::agent::Agent;
use crate::conn::{self, FrameReader, FrameWriter};
use crate::console::uptime_ms;
use crate::ops::seed::seed_storage;
use crate::{debug, log};

/// The host's listener may need a few milliseconds after the backend is up.
const DIAL_STEP: Duration = Duration::from_millis(50);
const DIAL_DEADLINE: Duration = Duration::from_secs(5);

/// Guest uptimes recorded while booting.
#[derive(Debug, Clone, Copy, Default)]
pub struct BootTimings {
    pub init_ms: u64,
    pub rootfs_ms: u64,
}

async fn dial_with_retry<T, F, Fut>(what: &str, mut dial: F) -> io::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = io::Result<T>>,
{
    let start = Instant::now();
    loop {
        match dial().await {
            Ok(s) => {
                debug!("{what}: connected after {} ms", start.elapsed().as_millis());
                return Ok(s);
            }
            Err(e) if start.elapsed() >= DIAL_DEADLINE => return Err(e),
            Err(_) => tokio::time::sleep(DIAL_STEP).await,
        }
    }
}

pub async fn dial_vsock(port: u32) -> io::Result<VsockStream> {
    dial_with_retry("control vsock", || {
        VsockStream::connect(VsockAddr::new(VMADDR_CID_HOST, port))
    })
    .await
}

pub async fn dial_unix(path: &Path) -> io::Result<UnixStream> {
    dial_with_retry("control socket", || UnixStream::connect(path)).await
}

/// What the boot configuration asks of the guest before the engine starts: the network (guest
/// only; in host test mode the host's network is used as it is) and the engine's registry
/// settings.
async fn guest_setup(agent: &Agent, boot: &BootConfig) -> Result<(), (ErrorKind, String)> {
    if boot.network && agent.layout.guest {
        let offline = boot.host_offline;
        tokio::task::spawn_blocking(move || crate::net::configure_guest_network(offline))
            .await
            .map_err(|e| (ErrorKind::Io, format!("network setup: {e}")))?
            .map_err(|e| (ErrorKind::Io, format!("network setup: {e}")))?;
    }
    agent
        .engine
        .configure_registry(&boot.registry)
        .map_err(|e| (ErrorKind::Engine, format!("registry setup: {e}")))
}

/// Runs the boot conversation. A failed seed or engine start is reported to the host as
/// `AgentMsg::Error` and returned; the agent keeps serving operations either way.
pub async fn run_control<S>(
    stream: S,
    agent: Arc<Agent>,
    timings: BootTimings,
) -> Result<(), String>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut rd, mut wr) = conn::split(stream);
    wr.send(&agent.hello()).await.map_err(|e| e.to_string())?;
    let boot = match rd.recv().await {
        Ok(HostMsg::Boot(b)) => b,
        Ok(other) => {
            let e = ProtocolError::Unexpected {
                expected: "Boot",
                got: other.name(),
            };
            wr.send_error(ErrorKind::Protocol, e.to_string()).await;
            return Err(e.to_string());
        }
        Err(e) => return Err(e.to_string()),
    };
    debug!("boot config: {boot:?}");

    let mut outcome = guest_setup(&agent, &boot).await;
    if boot.seed_storage {
        let t0 = Instant::now();
        match seed_storage(&agent, &mut rd).await {
            Ok(()) => log!("storage seeded in {} ms", t0.elapsed().as_millis()),
            Err(e) => outcome = Err((e.kind(), format!("seeding storage: {e}"))),
        }
    }
    // From here on only the watcher reads the connection: it notices the host going away while
    // the engine is still starting, too.
    let wr = Arc::new(Mutex::new(wr));
    tokio::spawn(watch_host(
        rd,
        Arc::clone(&wr),
        Arc::clone(&agent),
        boot.host_bound,
    ));
    // The driver is chosen after the seed: a seeded storage says which driver wrote it.
    let mut storage_driver = None;
    if outcome.is_ok() {
        match agent.engine.configure_storage(boot.storage_driver) {
            Ok(driver) => {
                debug!("storage driver: {driver}");
                storage_driver = Some(driver);
            }
            Err(e) => outcome = Err((ErrorKind::Engine, e.to_string())),
        }
    }
    let mut engine_ms = uptime_ms();
    if outcome.is_ok() && boot.start_engine {
        match agent.engine.start().await {
            Ok(()) => engine_ms = uptime_ms(),
            Err(e) => outcome = Err((ErrorKind::Engine, e.to_string())),
        }
    }
    let result = match outcome {
        Ok(()) => {
            let ready = AgentMsg::Ready(ReadyInfo {
                init_ms: timings.init_ms,
                rootfs_ms: timings.rootfs_ms,
                engine_ms,
                storage_driver,
            });
            crate::idle::watch(
                Arc::clone(&agent),
                std::time::Duration::from_secs(boot.idle_timeout_secs),
            );
            wr.lock()
                .await
                .send(&ready)
                .await
                .map_err(|e| e.to_string())
        }
        Err((kind, message)) => {
            log!("{message}");
            wr.lock().await.send_error(kind, message.clone()).await;
            Err(message)
        }
    };
    result
}

/// Reads the control connection until it closes. `Detach` releases a host-bound guest (it is
/// memory-resident now); a close while still bound means the host is gone, and the guest shuts
/// down the same clean way `Shutdown` does.
async fn watch_host(
    mut rd: FrameReader,
    wr: Arc<Mutex<FrameWriter>>,
    agent: Arc<Agent>,
    mut bound: bool,
) {
    loop {
        match rd.recv().await {
            Ok(HostMsg::Detach) => {
                bound = false;
                debug!("detached: the VM outlives the host process that booted it");
                let _ = wr.lock().await.send(&AgentMsg::Done).await;
            }
            Ok(other) => debug!("control connection: ignoring {}", other.name()),
            Err(_) => break,
        }
    }
    if bound {
        host_gone(&agent).await;
    }
}

/// The host that booted this guest is gone: nobody will ever ask for a clean shutdown, so do it
/// now (engine stopped, storage synced and unmounted) and power off.
pub async fn host_gone(agent: &Agent) {
    log!("the host process that booted this VM is gone: shutting down");
    if let Err(e) = agent.prepare_shutdown().await {
        log!("shutdown: {e}");
    }
    agent.finish_shutdown();
}
