//! `vcontainer bench`: the figures of the foundation issue, measured in one run and printed as a
//! table (medians of N runs). Not a test: nothing here asserts a time.

use anyhow::Result;

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Target architectures (default: aarch64 and x86_64).
    #[arg(short = 'a', long)]
    pub arch: Vec<String>,
    /// Runs per figure; the median is reported.
    #[arg(short = 'n', long, default_value_t = 3)]
    pub runs: usize,
}

pub async fn run(_args: BenchArgs, _reporter: &crate::progress::Reporter) -> Result<()> {
    anyhow::bail!("not implemented yet")
}
