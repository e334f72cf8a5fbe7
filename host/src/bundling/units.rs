//! Autostart units: systemd services for docker, Quadlet files for podman.

/// Command-line arguments of this part's `vcontainer` subcommand.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {}

pub async fn run(_args: Args, _reporter: &crate::progress::Reporter) -> anyhow::Result<()> {
    anyhow::bail!("not implemented yet")
}
