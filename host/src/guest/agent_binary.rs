//! Finding (or building) the static guest agent for an architecture.
//!
//! Order: `$VCONTAINER_AGENT_<ARCH>` (a file), `vcontainer-agent-<arch>` next to this executable
//! (an installed release), then the source tree this binary was built from, where the agent is
//! (re)built with cargo so a developer's edits are always what boots.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use vcontainer_initramfs::Arch;

use crate::util::progress::Reporter;

#[derive(Debug, thiserror::Error)]
pub enum AgentBinaryError {
    #[error("${var} points to {path}, which is not a file")]
    BadOverride { var: String, path: PathBuf },
    #[error(
        "no guest agent for {arch}: set ${var} to a static vcontainer-agent binary, install \
         vcontainer-agent-{arch} next to {exe}, or run from the source tree"
    )]
    NotFound {
        arch: Arch,
        var: String,
        exe: String,
    },
    #[error(
        "building the guest agent for {arch} failed ({status}); the command was: {command}\n{log}"
    )]
    BuildFailed {
        arch: Arch,
        status: String,
        command: String,
        log: String,
    },
    #[error("cannot run cargo to build the guest agent: {0}")]
    Cargo(std::io::Error),
}

/// The source tree this binary was compiled from (its workspace root).
fn source_tree() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()?
        .to_path_buf();
    root.join("agent/Cargo.toml").is_file().then_some(root)
}

pub fn agent_binary(arch: Arch, reporter: &Reporter) -> Result<PathBuf, AgentBinaryError> {
    let var = format!("VCONTAINER_AGENT_{}", arch.name().to_uppercase());
    if let Some(p) = std::env::var_os(&var) {
        let path = PathBuf::from(p);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(AgentBinaryError::BadOverride { var, path })
        };
    }
    let exe = std::env::current_exe().ok();
    if let Some(dir) = exe.as_deref().and_then(Path::parent) {
        let p = dir.join(format!("vcontainer-agent-{arch}"));
        if p.is_file() {
            return Ok(p);
        }
    }
    match source_tree() {
        Some(root) => build_from_source(&root, arch, reporter),
        None => Err(AgentBinaryError::NotFound {
            arch,
            var,
            exe: exe.map(|e| e.display().to_string()).unwrap_or_default(),
        }),
    }
}

fn build_from_source(
    root: &Path,
    arch: Arch,
    reporter: &Reporter,
) -> Result<PathBuf, AgentBinaryError> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let args = [
        "build",
        "--quiet",
        "-p",
        "vcontainer-agent",
        "--profile",
        "agent",
        "--target",
        arch.musl_triple(),
    ];
    reporter.step(format!(
        "building the guest agent for {arch} (cargo, static musl)"
    ));
    let mut cmd = Command::new(&cargo);
    cmd.args(args)
        .current_dir(root)
        .env("CARGO_TARGET_DIR", &target_dir)
        .stdin(Stdio::null());
    // rustup and cargo find their homes through $HOME, which callers (tests, sandboxes) may
    // have pointed elsewhere; the account's own home still has the toolchain.
    if let Some(home) = nix::unistd::User::from_uid(nix::unistd::getuid())
        .ok()
        .flatten()
        .map(|u| u.dir)
    {
        for (var, dir) in [("RUSTUP_HOME", ".rustup"), ("CARGO_HOME", ".cargo")] {
            if std::env::var_os(var).is_none() && home.join(dir).is_dir() {
                cmd.env(var, home.join(dir));
            }
        }
    }
    let out = cmd.output().map_err(AgentBinaryError::Cargo)?;
    if !out.status.success() {
        let log = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = log.lines().rev().take(30).collect();
        return Err(AgentBinaryError::BuildFailed {
            arch,
            status: out.status.to_string(),
            command: format!("{} {}", cargo.to_string_lossy(), args.join(" ")),
            log: tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
        });
    }
    Ok(target_dir
        .join(arch.musl_triple())
        .join("agent")
        .join("vcontainer-agent"))
}
