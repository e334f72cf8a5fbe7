//! `memres start|stop|restart|status|list` (alias `vmemres`): a VM left running for a state
//! directory, which later commands reach directly through the transport.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::Serialize;

use super::args::{EngineArgs, MemresAction};
use super::guest::{find_resident, start_resident};
use super::settings::Settings;
use crate::guest::instance::{resolve_state, StateChoice};
use crate::guest::resident::Resident;
use crate::state::{InstanceLock, LockWait, StateDir, StateError, StateLocation};
use crate::util::progress::Reporter;
use crate::vm::port_forward::{PortForward, PortProto};

/// How long `stop --force` gives the guest to stop cleanly before killing it.
const FORCE_GRACE: Duration = Duration::from_secs(5);

pub async fn memres(
    settings: &Settings,
    args: &EngineArgs,
    action: MemresAction,
    reporter: &Reporter,
) -> Result<i32> {
    if matches!(settings.state, StateChoice::Stateless) {
        bail!("memres needs a persistent state directory: drop --stateless / --input-storage / $VDKR_STATELESS");
    }
    if args.storage.is_some() {
        bail!(
            "--storage goes with a command (e.g. `{} --storage F images`), not with memres",
            settings.tool.name()
        );
    }
    if let MemresAction::List = action {
        return list(settings, args.json);
    }
    let resident = find_resident_here(settings)?;
    match action {
        MemresAction::List => Ok(0),
        MemresAction::Status => status(settings, resident.as_ref(), args.json),
        MemresAction::Stop { force } => {
            match resident {
                Some(r) => {
                    stop(r, force).await?;
                    reporter.notice("memres stopped");
                }
                None => {
                    if stop_orphans(settings, reporter).await? == 0 {
                        reporter.notice("memres is not running");
                    }
                }
            }
            Ok(0)
        }
        MemresAction::Start(start) => {
            if let Some(r) = resident {
                if !start.publish.is_empty() {
                    bail!(
                        "a memory-resident VM (QEMU pid {}) already runs for {}; -p applies when it starts: `{} memres restart -p …`",
                        r.record.qemu.pid,
                        r.state.root().display(),
                        settings.tool.name()
                    );
                }
                reporter.notice(format!(
                    "memres already running (QEMU pid {})",
                    r.record.qemu.pid
                ));
                return Ok(0);
            }
            start_now(settings, args, &start.publish, reporter).await
        }
        MemresAction::Restart {
            clean,
            force,
            start,
        } => {
            if let Some(r) = resident {
                stop(r, force).await?;
            }
            if clean {
                let (dir, _) = resolve_state(settings.tool, settings.arch, &settings.state)?;
                reporter.notice(format!(
                    "Cleaning state directory: {}",
                    dir.root().display()
                ));
                remove_state_dir(&dir)?;
            }
            start_now(settings, args, &start.publish, reporter).await
        }
    }
}

fn find_resident_here(settings: &Settings) -> Result<Option<Resident>> {
    // `--no-daemon` means "do not use one" for commands; memres itself always looks.
    let mut s = settings.clone();
    s.no_daemon = false;
    find_resident(&s)
}

/// `memres stop` without a record: a VM on this state directory that nothing owns (its record or
/// its whole directory deleted under it, or left by a killed command of an older version) is
/// stopped too, as `memres list` advertises. Never one a running command holds the lock for.
async fn stop_orphans(settings: &Settings, reporter: &Reporter) -> Result<usize> {
    let (dir, _) = resolve_state(settings.tool, settings.arch, &settings.state)?;
    let _lock = if dir.root().is_dir() {
        match InstanceLock::acquire(&dir, LockWait::NoWait, |_| {}) {
            Ok(l) => Some(l),
            // A command is using the directory: its VM is not an orphan.
            Err(StateError::Locked { .. }) => return Ok(0),
            Err(e) => return Err(e.into()),
        }
    } else {
        None
    };
    let orphans = crate::guest::resident::find_orphans(&dir);
    for o in &orphans {
        reporter.notice(format!(
            "stopping the unowned VM of {} (QEMU pid {})",
            dir.root().display(),
            o.qemu_pid
        ));
        crate::guest::resident::stop_orphan(&dir, o).await;
    }
    Ok(orphans.len())
}

async fn stop(r: Resident, force: bool) -> Result<()> {
    let pid = r.record.qemu.pid;
    let result = if force {
        r.stop_within(FORCE_GRACE).await
    } else {
        r.stop().await
    };
    result.with_context(|| format!("stopping the memory-resident VM (QEMU pid {pid})"))
}

async fn start_now(
    settings: &Settings,
    args: &EngineArgs,
    publish: &[String],
    reporter: &Reporter,
) -> Result<i32> {
    let mut guest = settings.guest.clone();
    guest.ports = parse_ports(publish)?;
    let r = start_resident(settings, guest, args.no_kvm, reporter).await?;
    reporter.notice(format!(
        "memres started ({}, {}, QEMU pid {})",
        settings.arch,
        settings.tool.engine(),
        r.record.qemu.pid
    ));
    Ok(0)
}

pub fn parse_ports(specs: &[String]) -> Result<Vec<PortForward>> {
    let ports = specs
        .iter()
        .map(|s| {
            s.parse::<PortForward>()
                .map_err(|e| anyhow::anyhow!("-p {s}: {e}"))
        })
        .collect::<Result<Vec<_>>>()?;
    for (i, a) in ports.iter().enumerate() {
        if ports[..i]
            .iter()
            .any(|b| b.host == a.host && b.proto == a.proto)
        {
            bail!("host port {} is forwarded twice", a.host);
        }
    }
    Ok(ports)
}

/// After `ps`: the host port forwards of the resident VM (they are QEMU's, not the engine's).
pub fn print_forwards(r: &Resident) {
    let ports = &r.record.ports;
    if ports.is_empty() {
        return;
    }
    println!();
    println!("Host port forwards (QEMU):");
    println!("{:<22} {:<11} PROTO", "HOST", "GUEST PORT");
    for p in ports {
        println!(
            "{:<22} {:<11} {}",
            format!("{}:{}", p.bind, p.host),
            p.guest,
            proto(p.proto)
        );
    }
}

fn proto(p: PortProto) -> &'static str {
    match p {
        PortProto::Tcp => "tcp",
        PortProto::Udp => "udp",
    }
}

#[derive(Serialize)]
struct StatusJson<'a> {
    state: &'a str,
    state_dir: String,
    arch: String,
    engine: String,
    qemu_pid: Option<u32>,
    started: Option<u64>,
    ports: Vec<PortForward>,
}

fn status(settings: &Settings, resident: Option<&Resident>, json: bool) -> Result<i32> {
    let (dir, _) = resolve_state(settings.tool, settings.arch, &settings.state)?;
    if json {
        let s = StatusJson {
            state: if resident.is_some() {
                "running"
            } else {
                "stopped"
            },
            state_dir: dir.root().display().to_string(),
            arch: resident.map_or(settings.arch.name().to_string(), |r| r.record.arch.clone()),
            engine: settings.tool.engine().to_string(),
            qemu_pid: resident.map(|r| r.record.qemu.pid),
            started: resident.map(|r| r.record.created),
            ports: resident.map(|r| r.record.ports.clone()).unwrap_or_default(),
        };
        println!("{}", serde_json::to_string_pretty(&s)?);
    } else {
        println!(
            "{}",
            if resident.is_some() {
                "running"
            } else {
                "stopped"
            }
        );
    }
    Ok(if resident.is_some() { 0 } else { 1 })
}

#[derive(Serialize)]
struct ListEntry {
    instance: String,
    state_dir: String,
    arch: String,
    engine: String,
    /// `running`, or `orphan` for a VM that no record or command owns.
    status: &'static str,
    qemu_pid: u32,
    ports: Vec<PortForward>,
}

/// Every state directory under the tool's base with a running resident VM.
fn list(settings: &Settings, json: bool) -> Result<i32> {
    let mut rows = Vec::new();
    if let Ok(entries) = std::fs::read_dir(&settings.state_base) {
        for entry in entries.flatten() {
            let dir = StateDir::resolve(
                settings.tool,
                &settings.state_base,
                &StateLocation::Explicit(entry.path()),
            )?;
            if let Some(r) = Resident::find(&dir)? {
                rows.push(ListEntry {
                    instance: entry.file_name().to_string_lossy().into_owned(),
                    state_dir: entry.path().display().to_string(),
                    arch: r.record.arch.clone(),
                    engine: r.record.engine.clone(),
                    status: "running",
                    qemu_pid: r.record.qemu.pid,
                    ports: r.record.ports.clone(),
                });
            }
        }
    }
    rows.sort_by(|a, b| a.instance.cmp(&b.instance));
    // Upstream's list also looked for orphaned QEMUs: VMs still running whose state directory or
    // record is gone. They are found by command line, whichever tool and base they belong to.
    let orphans = crate::guest::resident::unowned_vms();
    for o in &orphans {
        rows.push(ListEntry {
            instance: o
                .state_dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            state_dir: o.state_dir.display().to_string(),
            arch: o.arch.clone(),
            engine: o.tool.engine().to_string(),
            status: "orphan",
            qemu_pid: o.qemu_pid,
            ports: Vec::new(),
        });
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(0);
    }
    println!(
        "{:<16} {:<8} {:<7} {:<8} {:<9} PORTS",
        "INSTANCE", "ARCH", "ENGINE", "STATUS", "QEMU PID"
    );
    for r in &rows {
        let ports: Vec<String> = r
            .ports
            .iter()
            .map(|p| format!("{}->{}/{}", p.host, p.guest, proto(p.proto)))
            .collect();
        println!(
            "{:<16} {:<8} {:<7} {:<8} {:<9} {}",
            r.instance,
            r.arch,
            r.engine,
            r.status,
            r.qemu_pid,
            ports.join(",")
        );
    }
    for o in &orphans {
        let gone = if o.state_dir.is_dir() {
            ""
        } else {
            " (its state directory is gone)"
        };
        println!(
            "orphan: QEMU pid {} of {}{gone}; stop it with `{} --state-dir {} memres stop`",
            o.qemu_pid,
            o.state_dir.display(),
            o.tool.name(),
            o.state_dir.display()
        );
    }
    Ok(0)
}

/// Removes a state directory whose VM is stopped (never a running one's: its disk is in use).
pub fn remove_state_dir(dir: &StateDir) -> Result<()> {
    if let Some(r) = Resident::find(dir)? {
        bail!(
            "{} is in use by a memory-resident VM (QEMU pid {})",
            dir.root().display(),
            r.record.qemu.pid
        );
    }
    match std::fs::remove_dir_all(dir.root()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("removing {}", dir.root().display())),
    }
}
