//! The BUNDLED_CONTAINERS grammar and image name/tag derivation.

/// Command-line arguments of this part's `vcontainer` subcommand.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {}

pub async fn run(_args: Args, _reporter: &crate::progress::Reporter) -> anyhow::Result<()> {
    anyhow::bail!("not implemented yet")
}
