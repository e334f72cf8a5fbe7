//! Entry point of `vdkr`/`vpdmn`: parse, resolve settings, and hand the command to its handler.
//! Engine commands and `vimport`/`vshell` run on a guest (resident or one-shot); `memres`,
//! `vconfig`, `vstorage` and `clean` are host-side.

use std::ffi::OsString;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Result};
use clap::Parser;

use super::args::{EngineArgs, EngineCommand, PASSTHROUGH};
use super::engine_cmd::{self, EnginePlan};
use super::execute::{execute, Action};
use super::guest::{acquire, BootOnly, Guest};
use super::settings::{ProcessEnv, Settings};
use crate::state::Tool;
use crate::util::progress::Reporter;

/// Entry point of the `vdkr` and `vpdmn` binaries.
pub fn main_for(default_tool: Tool) -> ExitCode {
    if let Some(code) = crate::vm::guard::run_if_guard() {
        return code;
    }
    let argv: Vec<OsString> = std::env::args_os().collect();
    let argv0 = argv
        .first()
        .map(|a| a.to_string_lossy().into_owned())
        .unwrap_or_default();
    let (tool, name_arch) = match Tool::from_argv0(&argv0) {
        Some((t, a)) => (t, a.map(str::to_string)),
        None => (default_tool, None),
    };
    let args = EngineArgs::parse_from(argv);
    let settings = Settings::resolve(tool, name_arch.as_deref(), &args, &ProcessEnv);
    let verbose = args.verbose || settings.as_ref().is_ok_and(|s| s.verbose);
    let reporter = Reporter::new(tool.name(), verbose, args.quiet);
    let settings = match settings {
        Ok(s) => s,
        Err(e) => {
            reporter.error(super::error_text::error_text(&e));
            return ExitCode::from(1);
        }
    };
    let Some(runtime) = super::runtime(&reporter) else {
        return ExitCode::from(1);
    };
    let result = runtime.block_on(until_signalled(run(&settings, args, &reporter)));
    // A forwarded stdin is read on a blocking thread that may still wait for input.
    runtime.shutdown_timeout(Duration::from_millis(100));
    // VmHWM, not getrusage's ru_maxrss: Linux carries ru_maxrss across fork and exec, so it
    // reports the parent's size when that was larger (a benchmark harness, for one).
    if let Some(kib) = peak_rss_kib() {
        reporter.debug(format!("host peak RSS {kib} KiB"));
    }
    match result {
        Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
        Err(e) => {
            reporter.error(super::error_text::error_text(&e));
            match e.downcast_ref::<Interrupted>() {
                Some(Interrupted(sig)) => ExitCode::from((128 + sig) as u8),
                None => ExitCode::from(1),
            }
        }
    }
}

async fn run(settings: &Settings, args: EngineArgs, reporter: &Reporter) -> Result<i32> {
    let action = match args.command {
        EngineCommand::Memres { ref action } => {
            return super::memres::memres(settings, &args, action.clone(), reporter).await
        }
        EngineCommand::Vconfig {
            ref key,
            ref value,
            reset,
        } => {
            return super::vconfig::vconfig(
                settings,
                key.as_deref(),
                value.as_deref(),
                reset,
                args.json,
            )
        }
        EngineCommand::Vstorage { ref action } => {
            return super::vstorage::vstorage(settings, action.clone(), args.json, reporter).await
        }
        EngineCommand::Clean => return super::vstorage::clean(settings, reporter).await,
        EngineCommand::Vshell => Action::Vshell,
        EngineCommand::Vimport { ref path, ref name } => Action::Vimport {
            source: path.clone(),
            reference: name.clone(),
        },
        EngineCommand::Engine(ref words) => Action::Engine(plan_engine(settings, words)?),
    };
    check_inputs(&args, &action)?;

    let mut guest_options = settings.guest.clone();
    let mut boot_only = boot_only_options(&args);
    if let Action::Engine(EnginePlan::Run { publish, .. }) = &action {
        if !publish.is_empty() {
            guest_options.ports = super::memres::parse_ports(publish)?;
            boot_only.given.push("vrun -p");
        }
    }
    let mut guest = acquire(
        settings,
        guest_options,
        &boot_only,
        args.no_kvm,
        args.input_storage.as_deref(),
        reporter,
    )
    .await?;
    let work = async {
        if let (Some(resident), Action::Engine(plan)) = (guest.resident(), &action) {
            if let Some(words) = super::host_engine::eligible(settings.tool, plan) {
                if let Some(code) =
                    super::host_engine::run(resident, words, settings.guest.image.offline, reporter)
                        .await?
                {
                    return super::execute::after(
                        guest.transport(),
                        code,
                        args.storage.as_deref(),
                        reporter,
                    )
                    .await;
                }
            }
        }
        execute(
            guest.transport(),
            settings.tool.engine_cli(),
            &action,
            args.storage.as_deref(),
            reporter,
        )
        .await
    };
    let outcome = match (settings.timeout_secs, &guest) {
        (secs, Guest::OneShot(_)) if secs > 0 => {
            match tokio::time::timeout(Duration::from_secs(secs), work).await {
                Ok(r) => r,
                Err(_) => Err(anyhow::anyhow!(
                    "the command did not finish within {secs} s (timeout setting); the VM was stopped"
                )),
            }
        }
        _ => work.await,
    };
    if let (Ok(_), Action::Engine(EnginePlan::Plain { argv, .. })) = (&outcome, &action) {
        if argv.get(1).is_some_and(|c| c == "ps")
            && !argv.iter().any(|a| a == "-q" || a == "--quiet")
        {
            if let Some(r) = guest.resident() {
                super::memres::print_forwards(r);
            }
        }
    }
    // A failure caused by the VM dying names that cause and shows the console, not only the
    // broken stream it left behind.
    let death = match &outcome {
        Err(e) => guest.death_behind(e, 40).await,
        Ok(_) => None,
    };
    let console = guest.console_tail(40);
    let finished = guest.finish(reporter).await;
    match (outcome, finished) {
        (Ok(code), Ok(())) => Ok(code),
        (Ok(_), Err(e)) => Err(e),
        (Err(e), _) => {
            if let Some((cause, console)) = death {
                bail!(
                    "{cause}: {}\n--- guest console (last lines) ---\n{console}",
                    super::error_text::error_text(&e)
                );
            }
            if !console.is_empty() {
                reporter.debug(format!("guest console (last lines):\n{console}"));
            }
            Err(e)
        }
    }
}

fn plan_engine(settings: &Settings, words: &[OsString]) -> Result<EnginePlan> {
    let words: Vec<String> = words
        .iter()
        .map(|w| {
            w.clone()
                .into_string()
                .map_err(|w| anyhow::anyhow!("argument {w:?} is not valid UTF-8"))
        })
        .collect::<Result<_>>()?;
    let tool = settings.tool;
    let Some(cmd) = words.first() else {
        bail!("no command given; try '{} --help'", tool.name())
    };
    if !PASSTHROUGH.contains(&cmd.as_str()) {
        bail!(
            "Unknown command: {cmd}\nRun '{} --help' for usage",
            tool.name()
        );
    }
    Ok(engine_cmd::plan(
        tool,
        &words,
        settings.guest.registry.default.as_deref(),
    )?)
}

/// Inputs and outputs are checked before a VM boots for them.
fn check_inputs(args: &EngineArgs, action: &Action) -> Result<()> {
    if let Some(out) = &args.storage {
        super::check_output(out)?;
    }
    if let Some(input) = &args.input_storage {
        if !input.is_file() {
            bail!("--input-storage {}: no such file", input.display());
        }
    }
    match action {
        Action::Vimport { source, .. } if !source.exists() => {
            bail!("cannot import {}: it does not exist", source.display())
        }
        Action::Vimport { source, .. }
            if source.is_dir()
                && std::fs::read_dir(source).is_ok_and(|mut d| d.next().is_none()) =>
        {
            bail!(
                "cannot import {}: the directory is empty (expected an OCI image layout or a root filesystem)",
                source.display()
            )
        }
        Action::Engine(EnginePlan::Load { file, .. } | EnginePlan::Import { file, .. })
            if !file.exists() =>
        {
            bail!("File not found: {}", file.display())
        }
        Action::Engine(EnginePlan::CopyIn { host, .. }) if host.symlink_metadata().is_err() => {
            bail!("cp: {}: no such file or directory", host.display())
        }
        Action::Engine(EnginePlan::Save { output, .. }) => super::check_output(output),
        Action::Engine(EnginePlan::Run { volumes, .. }) => {
            for v in volumes {
                if !v.host.exists() {
                    bail!("Volume source not found: {}", v.host.display());
                }
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// The options on this command line that only act when a VM boots.
fn boot_only_options(args: &EngineArgs) -> BootOnly {
    let mut given = Vec::new();
    let r = &args;
    for (on, name) in [
        (r.no_kvm, "--no-kvm"),
        (r.no_network, "--no-network"),
        (r.registry.is_some(), "--registry"),
        (r.no_registry, "--no-registry"),
        (!r.insecure_registry.is_empty(), "--insecure-registry"),
        (r.secure_registry, "--secure-registry"),
        (r.ca_cert.is_some(), "--ca-cert"),
        (r.auth_file.is_some(), "--config"),
        (r.registry_user.is_some(), "--registry-user"),
        (r.storage_driver.is_some(), "--storage-driver"),
    ] {
        if on {
            given.push(name);
        }
    }
    BootOnly { given }
}

/// This process's peak resident set (`VmHWM` in /proc/self/status).
fn peak_rss_kib() -> Option<u64> {
    std::fs::read_to_string("/proc/self/status")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// Runs `work` unless SIGTERM or SIGINT arrives first. Then the work is dropped, and with it the
/// VM: QEMU and the vsock backend run in their own process group (so a terminal's Ctrl-C does not
/// hit them mid-write) and would otherwise outlive the CLI. Temporary outputs are removed on drop.
/// The exit code is 128 + the signal, as a shell reports it.
async fn until_signalled(work: impl std::future::Future<Output = Result<i32>>) -> Result<i32> {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return work.await;
    };
    tokio::select! {
        r = work => r,
        _ = term.recv() => Err(Interrupted(libc::SIGTERM).into()),
        _ = int.recv() => Err(Interrupted(libc::SIGINT).into()),
    }
}

#[derive(Debug, thiserror::Error)]
#[error("interrupted by signal {0}; an output not complete by then was not written (a VM this command booted was stopped; a memory-resident one keeps running)")]
struct Interrupted(i32);
