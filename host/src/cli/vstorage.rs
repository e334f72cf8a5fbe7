//! `vstorage list|path|df|clean` and the deprecated `clean`: the state directories on the host.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Serialize;

use super::args::VstorageAction;
use super::memres::remove_state_dir;
use super::settings::Settings;
use crate::guest::instance::{resolve_state, StateChoice};
use crate::guest::resident::Resident;
use crate::state::{StateDir, StateLocation};
use crate::util::progress::Reporter;

pub async fn vstorage(
    settings: &Settings,
    action: Option<VstorageAction>,
    json: bool,
    reporter: &Reporter,
) -> Result<i32> {
    match action.unwrap_or(VstorageAction::List) {
        VstorageAction::List => list(settings, json, false),
        VstorageAction::Df => list(settings, json, true),
        VstorageAction::Path { arch } => {
            let dir = match arch {
                Some(a) => {
                    let arch: vcontainer_initramfs::Arch = a.parse()?;
                    settings.state_base.join(arch.name())
                }
                None => current_dir(settings)?.root().to_path_buf(),
            };
            if json {
                println!("{}", serde_json::json!({ "path": dir }));
            } else {
                println!("{}", dir.display());
            }
            Ok(0)
        }
        VstorageAction::Clean { arch, all } => {
            if all {
                for dir in state_dirs(settings)? {
                    stop_and_remove(&dir, reporter).await?;
                }
                let _ = std::fs::remove_dir(&settings.state_base);
                println!("All storage cleaned.");
                return Ok(0);
            }
            let dir = match arch {
                Some(a) => {
                    let arch: vcontainer_initramfs::Arch = a.parse()?;
                    StateDir::resolve(
                        settings.tool,
                        &settings.state_base,
                        &StateLocation::Default(arch),
                    )?
                }
                None => current_dir(settings)?,
            };
            if dir.root().exists() {
                stop_and_remove(&dir, reporter).await?;
                println!("Cleaned: {}", dir.root().display());
            } else {
                println!("Not found: {}", dir.root().display());
            }
            Ok(0)
        }
    }
}

/// `clean`: upstream's deprecated spelling of `vstorage clean` for the current instance. It
/// stops a resident VM gracefully first (upstream sent SIGTERM to QEMU).
pub async fn clean(settings: &Settings, reporter: &Reporter) -> Result<i32> {
    let dir = current_dir(settings)?;
    if !dir.root().exists() {
        println!("No state directory found for {}", settings.arch);
        return Ok(0);
    }
    println!("Removing state directory: {}", dir.root().display());
    stop_and_remove(&dir, reporter).await?;
    println!("State cleaned. Next run will start fresh.");
    Ok(0)
}

fn current_dir(settings: &Settings) -> Result<StateDir> {
    if matches!(settings.state, StateChoice::Stateless) {
        anyhow::bail!("a stateless run has no state directory");
    }
    Ok(resolve_state(settings.tool, settings.arch, &settings.state)?.0)
}

async fn stop_and_remove(dir: &StateDir, reporter: &Reporter) -> Result<()> {
    if let Some(r) = Resident::find(dir)? {
        reporter.notice(format!(
            "Stopping memres (QEMU pid {})...",
            r.record.qemu.pid
        ));
        r.stop().await.context("stopping the memory-resident VM")?;
    }
    remove_state_dir(dir)
}

fn state_dirs(settings: &Settings) -> Result<Vec<StateDir>> {
    let mut dirs = Vec::new();
    if let Ok(entries) = std::fs::read_dir(&settings.state_base) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                dirs.push(StateDir::resolve(
                    settings.tool,
                    &settings.state_base,
                    &StateLocation::Explicit(e.path()),
                )?);
            }
        }
    }
    dirs.sort_by(|a, b| a.root().cmp(b.root()));
    Ok(dirs)
}

#[derive(Serialize)]
struct Entry {
    name: String,
    path: PathBuf,
    /// Bytes actually allocated (the state disk is sparse).
    size: u64,
    state_disk: u64,
    status: String,
}

/// The state directories `list` and `df` show: the one named by `--state-dir`/`-I`, else every
/// one under the tool's base directory.
fn listed_dirs(settings: &Settings) -> Result<Vec<StateDir>> {
    if settings.state_named {
        let dir = current_dir(settings)?;
        return Ok(if dir.root().is_dir() {
            vec![dir]
        } else {
            Vec::new()
        });
    }
    state_dirs(settings)
}

fn list(settings: &Settings, json: bool, df: bool) -> Result<i32> {
    let mut entries = Vec::new();
    let unowned = crate::guest::resident::unowned_vms();
    for dir in listed_dirs(settings)? {
        let status = match Resident::find(&dir)? {
            Some(r) => format!("memres running (QEMU pid {})", r.record.qemu.pid),
            None => match unowned.iter().find(|o| o.state_dir == dir.root()) {
                Some(o) => format!(
                    "unowned VM running (QEMU pid {}): `{} --state-dir {} memres stop`",
                    o.qemu_pid,
                    settings.tool.name(),
                    dir.root().display()
                ),
                None => "stopped".to_string(),
            },
        };
        entries.push(Entry {
            name: dir
                .root()
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            path: dir.root().to_path_buf(),
            size: allocated(dir.root()),
            state_disk: allocated(&dir.state_disk()),
            status,
        });
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&entries)?);
        return Ok(0);
    }
    if df {
        for e in &entries {
            println!("{}:", e.name);
            println!("  {}  {}", human(e.state_disk), state_disk_name(settings));
        }
        return Ok(0);
    }
    println!("{} storage directories:", settings.tool.name());
    if entries.is_empty() {
        println!("  (no storage directories found)");
    }
    let mut total = 0;
    for e in &entries {
        println!();
        println!("  {}", e.name);
        println!("    Path:   {}", e.path.display());
        println!("    Size:   {}", human(e.size));
        println!("    Status: {}", e.status);
        total += e.size;
    }
    println!();
    println!("Total: {}", human(total));
    Ok(0)
}

fn state_disk_name(settings: &Settings) -> String {
    let dir = StateDir::resolve(
        settings.tool,
        &settings.state_base,
        &StateLocation::Explicit(settings.state_base.clone()),
    );
    dir.ok()
        .and_then(|d| {
            d.state_disk()
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
        })
        .unwrap_or_default()
}

/// Allocated bytes under `path` (like `du`: sparse files count what they use).
fn allocated(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = path.symlink_metadata() else {
        return 0;
    };
    let own = meta.blocks() * 512;
    if !meta.is_dir() {
        return own;
    }
    std::fs::read_dir(path)
        .map(|rd| rd.flatten().map(|e| allocated(&e.path())).sum::<u64>())
        .unwrap_or(0)
        + own
}

fn human(bytes: u64) -> String {
    const UNITS: &[&str] = &["B", "K", "M", "G", "T"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes}B")
    } else {
        format!("{v:.1}{}", UNITS[u])
    }
}
