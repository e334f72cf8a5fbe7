//! Memory-resident docker commands through the host's own docker CLI: the guest's docker CLI is a
//! Go program whose start alone takes 0.5–0.7 s under TCG, the same CLI built for the host starts
//! in 50 ms. It talks to the guest's dockerd through the agent (`EngineApi`), so the daemon, the
//! storage and the results are the guest's. Only commands whose meaning does not depend on where
//! the CLI runs go this way: nothing that reads or writes host files, needs registry credentials
//! (those live in the guest), prints the client's platform, or needs a terminal (terminal sessions
//! are carried by the protocol's PTY frames). `VCONTAINER_HOST_CLI=0` turns it off.

use std::path::Path;

use anyhow::{Context, Result};

use super::engine_cmd::EnginePlan;
use super::run_options::StdIo;
use crate::guest::resident::Resident;
use crate::state::Tool;
use crate::util::progress::Reporter;

/// Engine commands whose result is the same whichever side's CLI runs them.
const SAME_ON_BOTH_SIDES: &[&str] = &[
    "images",
    "image",
    "ps",
    "inspect",
    "rmi",
    "tag",
    "history",
    "info",
    "system",
    "logs",
    "start",
    "stop",
    "restart",
    "kill",
    "pause",
    "unpause",
    "rm",
    "run",
    "exec",
    "create",
    "commit",
    "container",
    "volume",
    "network",
    "events",
    "top",
    "diff",
    "wait",
    "port",
    "stats",
];

/// The argv (without the `docker` word) to run with the host CLI, if this plan may.
pub fn eligible(tool: Tool, plan: &EnginePlan) -> Option<&[String]> {
    if tool != Tool::Vdkr || std::env::var("VCONTAINER_HOST_CLI").is_ok_and(|v| v == "0") {
        return None;
    }
    let EnginePlan::Plain { argv, io } = plan else {
        return None;
    };
    if *io == StdIo::Tty {
        return None;
    }
    let cmd = argv.get(1)?;
    if !SAME_ON_BOTH_SIDES.contains(&cmd.as_str()) {
        return None;
    }
    // `image load/save/import/push/pull` touch host files or credentials.
    if cmd == "image"
        && argv.get(2).is_some_and(|s| {
            ["load", "save", "import", "push", "pull", "build"].contains(&s.as_str())
        })
    {
        return None;
    }
    Some(&argv[1..])
}

/// Runs `args` with the host docker CLI against the resident VM; `None` when no host CLI is
/// available (the caller then uses the guest's).
pub async fn run(
    resident: &Resident,
    args: &[String],
    offline: bool,
    reporter: &Reporter,
) -> Result<Option<i32>> {
    let arch: vcontainer_initramfs::Arch = match resident.record.arch.parse() {
        Ok(a) => a,
        Err(_) => return Ok(None),
    };
    // A VM started by an older build may not tunnel the engine API.
    let conn = crate::session::AgentConn::request(
        resident.transport(),
        vcontainer_protocol::Request::Status,
    )
    .await
    .context("reaching the memory-resident VM")?;
    if !conn.hello().capabilities.iter().any(|c| c == "engine-api") {
        return Ok(None);
    }
    drop(conn);
    let Some(cli) = crate::engine::host_cli::docker_cli(arch, offline, reporter).await? else {
        return Ok(None);
    };
    let config = resident.state.root().join("docker-config");
    ensure_private_dir(&config)?;
    reporter.debug(format!(
        "running {} on the host against the guest's dockerd",
        cli.display()
    ));
    let code =
        crate::engine::host_cli::run_host_docker(resident.shared_transport(), &cli, args, &config)
            .await
            .context("running the host docker CLI against the guest")?;
    Ok(Some(code))
}

fn ensure_private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e).with_context(|| format!("creating {}", dir.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(words: &[&str], io: StdIo) -> EnginePlan {
        EnginePlan::Plain {
            argv: words.iter().map(|s| s.to_string()).collect(),
            io,
        }
    }

    #[test]
    fn only_side_independent_commands() {
        let p = plain(&["docker", "images", "-a"], StdIo::Output);
        assert_eq!(
            eligible(Tool::Vdkr, &p).map(|a| a.to_vec()),
            Some(vec!["images".to_string(), "-a".into()])
        );
        assert!(eligible(Tool::Vpdmn, &plain(&["podman", "images"], StdIo::Output)).is_none());
        for words in [
            &["docker", "pull", "x"][..],
            &["docker", "push", "x"],
            &["docker", "login"],
            &["docker", "version"],
            &["docker", "image", "load"],
            &["docker", "build", "."],
        ] {
            assert!(
                eligible(Tool::Vdkr, &plain(words, StdIo::Output)).is_none(),
                "{words:?}"
            );
        }
        assert!(eligible(
            Tool::Vdkr,
            &plain(&["docker", "run", "-it", "x"], StdIo::Tty)
        )
        .is_none());
        assert!(eligible(
            Tool::Vdkr,
            &plain(&["docker", "run", "-i", "x"], StdIo::Stdin)
        )
        .is_some());
    }
}
