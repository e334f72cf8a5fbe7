//! `vcontainer-agent`: PID 1 of the guest, or `vcontainer-agent serve …` on the host for tests.

use std::process::ExitCode;

use anyhow::Context;
use vcontainer_agent::host_mode::{self, ServeArgs, USAGE};

fn main() -> ExitCode {
    // Only a real PID 1 boots the guest: doing stage 1 anywhere else would remount a host.
    if nix::unistd::getpid().as_raw() == 1 {
        vcontainer_agent::pid1::run();
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("serve") => match serve(&args[1..]) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("vcontainer-agent: {e:#}");
                ExitCode::FAILURE
            }
        },
        Some("--version") | Some("-V") => {
            println!("vcontainer-agent {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("vcontainer-agent is the vcontainer guest's init (PID 1).\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn serve(args: &[String]) -> anyhow::Result<()> {
    let args = ServeArgs::parse(args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("tokio runtime")?;
    runtime.block_on(host_mode::run(args))?;
    Ok(())
}
