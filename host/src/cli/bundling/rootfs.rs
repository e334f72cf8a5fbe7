//! `vcontainer install-storage`: its arguments and entry point, over the `bundling::rootfs` library.

use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::bundling::rootfs::{install_storage, InstallOptions};
use crate::bundling::spec::Runtime;

/// Command-line arguments of `vcontainer install-storage`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Engine whose storage the tar holds: docker (`docker/…` → /var/lib/docker) or podman
    /// (`storage/…` → /var/lib/containers/storage).
    #[arg(long, value_name = "ENGINE")]
    pub engine: Runtime,
    /// Target root filesystem.
    #[arg(long, value_name = "DIR")]
    pub rootfs: PathBuf,
    /// Replace an existing non-empty storage directory in the rootfs (default: refuse).
    #[arg(long)]
    pub replace: bool,
    /// The storage tar (`vdkr/vpdmn --storage FILE`).
    #[arg(value_name = "STORAGE.tar")]
    pub storage: PathBuf,
}

pub async fn run(args: Args, reporter: &crate::util::progress::Reporter) -> Result<()> {
    let opts = InstallOptions {
        replace: args.replace,
    };
    let (rootfs, storage, engine) = (args.rootfs, args.storage, args.engine);
    let report =
        tokio::task::spawn_blocking(move || install_storage(engine, &rootfs, &storage, &opts))
            .await
            .context("install task")??;
    reporter.notice(format!(
        "{} storage installed at {} ({} entries{})",
        engine,
        report.dest.display(),
        report.entries,
        if report.replaced {
            ", previous storage replaced"
        } else {
            ""
        }
    ));
    Ok(())
}
