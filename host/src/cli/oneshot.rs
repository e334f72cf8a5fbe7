//! One-shot mode: every command boots a VM, runs, optionally exports storage, and shuts down.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Parser;
use vcontainer_protocol::ExecRequest;

use super::arch_select::resolve_arch;
use super::args::{EngineArgs, EngineCommand, MemresAction, PASSTHROUGH};
use crate::images::ensure_image;
use crate::instance::{resolve_state, Instance, InstanceConfig, StateChoice};
use crate::ops::{self, ExecIo};
use crate::progress::Reporter;
use crate::resident::Resident;
use crate::state::Tool;
use crate::transport::Transport;

/// Entry point of the `vdkr` and `vpdmn` binaries.
pub fn main_for(default_tool: Tool) -> ExitCode {
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
    let reporter = Reporter::new(tool.name(), args.verbose, args.quiet);
    let Some(runtime) = super::runtime(&reporter) else {
        return ExitCode::from(1);
    };
    let result = runtime.block_on(until_signalled(run(
        tool,
        name_arch.as_deref(),
        args,
        &reporter,
    )));
    // VmHWM, not getrusage's ru_maxrss: Linux carries ru_maxrss across fork and exec, so it
    // reports the parent's size when that was larger (a benchmark harness, for one).
    if let Some(kib) = peak_rss_kib() {
        reporter.debug(format!("host peak RSS {kib} KiB"));
    }
    match result {
        Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
        Err(e) => {
            reporter.error(format!("{e:#}"));
            match e.downcast_ref::<Interrupted>() {
                Some(Interrupted(sig)) => ExitCode::from((128 + sig) as u8),
                None => ExitCode::from(1),
            }
        }
    }
}

/// What the command will do in the guest, decided and validated before anything boots.
enum Plan {
    Import { layout: PathBuf, reference: String },
    Engine { argv: Vec<String> },
}

fn plan(tool: Tool, command: EngineCommand) -> Result<Plan> {
    match command {
        EngineCommand::Memres { .. } => bail!("memres is not an engine command"),
        EngineCommand::Vimport { path, name } => {
            let v = ops::validate_oci_layout(&path)
                .with_context(|| format!("cannot import {}", path.display()))?;
            if v.manifests == 0 {
                bail!("{} contains no image manifest", path.display());
            }
            Ok(Plan::Import {
                layout: path,
                reference: name,
            })
        }
        EngineCommand::Engine(words) => {
            let words: Vec<String> = words
                .into_iter()
                .map(|w| {
                    w.into_string()
                        .map_err(|w| anyhow::anyhow!("argument {w:?} is not valid UTF-8"))
                })
                .collect::<Result<_>>()?;
            let Some(cmd) = words.first() else {
                bail!("no command given; try '{} --help'", tool.name())
            };
            if !PASSTHROUGH.contains(&cmd.as_str()) {
                bail!(
                    "unknown command: {cmd}\nRun '{} --help' for usage",
                    tool.name()
                );
            }
            let mut argv = vec![tool.engine_cli().to_string()];
            argv.extend(words);
            Ok(Plan::Engine { argv })
        }
    }
}

/// The storage output must be creatable before we spend a boot on it.
fn check_output(path: &Path) -> Result<()> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if !parent.is_dir() {
        bail!(
            "cannot write {}: directory {} does not exist",
            path.display(),
            parent.display()
        );
    }
    if path.is_dir() {
        bail!("cannot write {}: it is a directory", path.display());
    }
    Ok(())
}

async fn run(
    tool: Tool,
    name_arch: Option<&str>,
    args: EngineArgs,
    reporter: &Reporter,
) -> Result<i32> {
    let env_arch = std::env::var(format!("{}_ARCH", tool.env_prefix())).ok();
    let arch = resolve_arch(args.arch.as_deref(), name_arch, env_arch.as_deref())?;
    if let EngineCommand::Memres { action } = args.command {
        return memres(tool, arch, &args, action, reporter).await;
    }
    let state = state_choice(&args);
    let plan = plan(tool, args.command)?;
    if let Some(out) = &args.storage {
        check_output(out)?;
    }
    if let Some(input) = &args.input_storage {
        if !input.is_file() {
            bail!("--input-storage {}: no such file", input.display());
        }
    }
    // A memory-resident VM of this state directory answers directly: no boot.
    if !matches!(state, StateChoice::Stateless) {
        let (dir, _) = resolve_state(tool, arch, &state)?;
        if let Some(resident) = Resident::find(&dir)? {
            reporter.debug(format!(
                "using the memory-resident VM (QEMU pid {})",
                resident.record.qemu.pid
            ));
            return run_in_guest(
                resident.transport(),
                &plan,
                args.storage.as_deref(),
                reporter,
            )
            .await;
        }
    }

    let image = ensure_image(arch, reporter).await?;
    let config = InstanceConfig {
        tool,
        arch,
        state,
        input_storage: args.input_storage.clone(),
        no_kvm: args.no_kvm,
        guest: Default::default(),
    };
    let instance = Instance::boot(&config, &image, reporter).await?;
    let outcome = run_in_guest(
        instance.transport(),
        &plan,
        args.storage.as_deref(),
        reporter,
    )
    .await;
    let console = instance.console_tail(40);
    let shutdown = instance.shutdown(reporter).await;
    match (outcome, shutdown) {
        (Ok(code), Ok(())) => Ok(code),
        (Ok(_), Err(e)) => Err(e).context("the guest did not shut down cleanly"),
        (Err(e), _) => {
            reporter.debug(format!("guest console (last lines):\n{console}"));
            Err(e)
        }
    }
}

async fn run_in_guest(
    transport: &dyn Transport,
    plan: &Plan,
    storage: Option<&Path>,
    reporter: &Reporter,
) -> Result<i32> {
    let mut stdout = tokio::io::stdout();
    let mut stderr = tokio::io::stderr();
    let status = match plan {
        Plan::Engine { argv } => {
            let status = ops::exec(
                transport,
                ExecRequest {
                    argv: argv.clone(),
                    engine: true,
                    ..Default::default()
                },
                ExecIo {
                    stdout: &mut stdout,
                    stderr: &mut stderr,
                    stdin: None,
                    // SIGINT/SIGTERM end the whole CLI (see `until_signalled`).
                    signals: None,
                },
            )
            .await;
            status.context("running the engine command in the guest")?
        }
        Plan::Import { layout, reference } => {
            let bar = reporter.bytes_bar(&format!("sending {}", layout.display()), None);
            let status = ops::import_oci(
                transport,
                layout,
                reference,
                &mut stdout,
                &mut stderr,
                &mut |n| bar.set_position(n),
            )
            .await;
            bar.finish_and_clear();
            let status = status.with_context(|| format!("importing {}", layout.display()))?;
            if status.shell_code() != 0 {
                bail!(
                    "the guest engine failed to import {} as {reference} (exit {})",
                    layout.display(),
                    status.shell_code()
                );
            }
            reporter.step(format!("imported {} as {reference}", layout.display()));
            status
        }
    };
    if let Some(out) = storage {
        if status.shell_code() != 0 {
            bail!(
                "not writing {}: the command failed with exit code {}",
                out.display(),
                status.shell_code()
            );
        }
        let bar = reporter.bytes_bar("exporting storage", None);
        let bytes = ops::export_storage(transport, out, &mut |n| bar.set_position(n))
            .await
            .with_context(|| format!("exporting the engine storage to {}", out.display()));
        bar.finish_and_clear();
        let bytes = bytes?;
        reporter.notice(format!(
            "storage written to {} ({:.1} MB)",
            out.display(),
            bytes as f64 / 1e6
        ));
    }
    Ok(status.shell_code())
}

fn state_choice(args: &EngineArgs) -> StateChoice {
    if args.stateless || args.input_storage.is_some() {
        StateChoice::Stateless
    } else if let Some(dir) = &args.state_dir {
        StateChoice::Dir(dir.clone())
    } else if let Some(name) = &args.instance {
        StateChoice::Instance(name.clone())
    } else {
        StateChoice::Default
    }
}

/// `memres start|stop|restart|status`.
async fn memres(
    tool: Tool,
    arch: vcontainer_initramfs::Arch,
    args: &EngineArgs,
    action: MemresAction,
    reporter: &Reporter,
) -> Result<i32> {
    let state = state_choice(args);
    if matches!(state, StateChoice::Stateless) {
        bail!("memres needs a persistent state directory: drop --stateless / --input-storage");
    }
    if args.storage.is_some() {
        bail!(
            "--storage goes with a command (e.g. `{} --storage F images`), not with memres",
            tool.name()
        );
    }
    if let MemresAction::List = action {
        return memres_list(tool);
    }
    let (dir, _) = resolve_state(tool, arch, &state)?;
    let resident = Resident::find(&dir)?;
    match action {
        MemresAction::List => Ok(0),
        MemresAction::Status => {
            println!(
                "{}",
                if resident.is_some() {
                    "running"
                } else {
                    "stopped"
                }
            );
            Ok(if resident.is_some() { 0 } else { 1 })
        }
        MemresAction::Stop => {
            match resident {
                Some(r) => {
                    r.stop().await.context("stopping the memory-resident VM")?;
                    reporter.notice("memres stopped");
                }
                None => reporter.notice("memres is not running"),
            }
            Ok(0)
        }
        MemresAction::Start | MemresAction::Restart => {
            if let Some(r) = resident {
                if matches!(action, MemresAction::Start) {
                    reporter.notice(format!(
                        "memres already running (QEMU pid {})",
                        r.record.qemu.pid
                    ));
                    return Ok(0);
                }
                r.stop().await.context("stopping the memory-resident VM")?;
            }
            let image = ensure_image(arch, reporter).await?;
            let config = InstanceConfig {
                tool,
                arch,
                state,
                input_storage: None,
                no_kvm: args.no_kvm,
                guest: Default::default(),
            };
            let instance = Instance::boot(&config, &image, reporter).await?;
            let record = instance.detach()?;
            reporter.notice(format!(
                "memres started ({arch}, {}, QEMU pid {})",
                tool.engine(),
                record.qemu.pid
            ));
            Ok(0)
        }
    }
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
#[error("interrupted by signal {0}; the VM was stopped and no output was written")]
struct Interrupted(i32);

/// `memres list`: every state directory under the tool's base with a running resident VM.
fn memres_list(tool: Tool) -> Result<i32> {
    let home = std::env::var_os("HOME").context("HOME is not set")?;
    let base = tool.default_base(Path::new(&home));
    let mut rows = Vec::new();
    if let Ok(entries) = std::fs::read_dir(&base) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let dir = crate::state::StateDir::resolve(
                tool,
                &base,
                &crate::state::StateLocation::Explicit(entry.path()),
            )?;
            if let Some(r) = Resident::find(&dir)? {
                rows.push(format!(
                    "{name:<16} {:<8} {:<7} running  {}",
                    r.record.arch, r.record.engine, r.record.qemu.pid
                ));
            }
        }
    }
    rows.sort();
    println!(
        "{:<16} {:<8} {:<7} STATUS   QEMU PID",
        "INSTANCE", "ARCH", "ENGINE"
    );
    for row in &rows {
        println!("{row}");
    }
    Ok(0)
}
