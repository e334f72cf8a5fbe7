//! Runs the host-arch docker CLI against a memory-resident vdkr VM and times it:
//! `host_docker STATE_DIR [RUNS] -- DOCKER_ARGS…` (e.g. `~/.vdkr/x86_64 5 -- images`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context};
use vcontainer::engine::host_cli::{docker_cli, run_host_docker};
use vcontainer::guest::resident::Resident;
use vcontainer::state::{StateDir, StateLocation, Tool};
use vcontainer::transport::{HybridVsock, KernelVsock, Transport};
use vcontainer::util::progress::Reporter;
use vcontainer_initramfs::Arch;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let split = args
        .iter()
        .position(|a| a == "--")
        .context("usage: STATE_DIR [RUNS] -- ARGS")?;
    let (head, docker_args) = (&args[..split], &args[split + 1..]);
    let Some(state) = head.first() else {
        bail!("usage: STATE_DIR [RUNS] -- ARGS");
    };
    let runs: usize = head.get(1).map(|r| r.parse()).transpose()?.unwrap_or(1);
    let state =
        StateDir::resolve_in_home(Tool::Vdkr, &StateLocation::Explicit(PathBuf::from(state)))?;
    let resident = Resident::find(&state)?.context("no resident VM for this state dir")?;
    let transport: Arc<dyn Transport> = match resident.record.guest_cid {
        Some(cid) => Arc::new(KernelVsock::new(cid)),
        None => Arc::new(HybridVsock::new(state.vsock_socket())),
    };
    let reporter = Reporter::new("host_docker", true, false);
    let t0 = Instant::now();
    let arch = Arch::host().context("host arch")?;
    let cli = docker_cli(arch, false, &reporter)
        .await?
        .context("no host docker CLI")?;
    eprintln!("docker_cli: {:?} ({} ms)", cli, t0.elapsed().as_millis());
    let config = tempfile::tempdir()?;
    for _ in 0..runs {
        let t = Instant::now();
        let code =
            run_host_docker(Arc::clone(&transport), &cli, docker_args, config.path()).await?;
        eprintln!("exit {code} in {} ms", t.elapsed().as_millis());
    }
    Ok(())
}
