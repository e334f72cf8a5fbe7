//! The agent as PID 1 of the guest: stage 1, stage 2, then the async server until power-off.
//! PID 1 must never exit (the kernel would panic), so every fatal error logs and powers off: the
//! host sees the console log and QEMU ends.

use std::sync::Arc;

use tokio::signal::unix::{signal, SignalKind};
use tokio_vsock::{VsockAddr, VsockListener, VMADDR_CID_ANY};
use vcontainer_protocol::OPERATION_PORT;

use crate::agent::Agent;
use crate::cmdline::BootArgs;
use crate::console::uptime_ms;
use crate::control::{dial_vsock, run_control, BootTimings};
use crate::engine::new_engine;
use crate::layout::Layout;
use crate::power::power_off;
use crate::reaper::Reaper;
use crate::server::serve_vsock;
use crate::{log, stage1, stage2};

pub fn run() -> ! {
    let init_ms = uptime_ms();
    let boot = match stage1::run() {
        Ok(b) => b,
        Err(e) => fatal(&format!("stage 1: {e}")),
    };
    let rootfs_ms = uptime_ms();
    if let Err(e) = stage2::setup(&boot.args, &boot.state) {
        fatal(&format!("stage 2: {e}"));
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => fatal(&format!("tokio runtime: {e}")),
    };
    let timings = BootTimings { init_ms, rootfs_ms };
    let result = runtime.block_on(serve(boot.args, timings));
    match result {
        Ok(()) => fatal("server ended"),
        Err(e) => fatal(&e),
    }
}

async fn serve(args: BootArgs, timings: BootTimings) -> Result<(), String> {
    let reaper = Reaper::start(true).map_err(|e| format!("SIGCHLD handler: {e}"))?;
    let layout = Layout::guest(args.engine);
    let engine = new_engine(args.engine, layout.clone(), Arc::clone(&reaper), args.debug);
    let agent = Agent::new(layout, engine, reaper);

    // Helper daemons (containerd) start now, in parallel with the host handshake.
    if let Err(e) = agent.engine.prepare().await {
        log!("engine prepare: {e}");
    }

    // Listen before saying Hello: the host may connect as soon as it has it.
    let listener = VsockListener::bind(VsockAddr::new(VMADDR_CID_ANY, OPERATION_PORT))
        .map_err(|e| format!("vsock listen on port {OPERATION_PORT}: {e}"))?;
    tokio::spawn(serve_vsock(listener, Arc::clone(&agent)));

    let mut term = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| e.to_string())?;
    let on_signal = Arc::clone(&agent);
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        log!("signalled: shutting down");
        if let Err(e) = on_signal.prepare_shutdown().await {
            log!("shutdown: {e}");
        }
        on_signal.finish_shutdown();
    });

    match dial_vsock(args.control_port).await {
        Ok(stream) => {
            if let Err(e) = run_control(stream, Arc::clone(&agent), timings).await {
                log!("control: {e}");
            }
        }
        // The host listens before QEMU starts, so a host that cannot be reached is gone (killed
        // while the guest booted): nobody owns this VM any more.
        Err(e) => {
            log!("cannot reach the host on the control port: {e}");
            crate::control::host_gone(&agent).await;
        }
    }
    agent.wait_exit().await;
    Ok(())
}

fn fatal(message: &str) -> ! {
    log!("FATAL: {message}");
    power_off()
}
