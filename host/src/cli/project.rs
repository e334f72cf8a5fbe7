//! The `vcontainer` binary's own commands.

use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};
use vcontainer_initramfs::Arch;

use crate::images::ensure_image;
use crate::progress::Reporter;

#[derive(Debug, Parser)]
#[command(
    name = "vcontainer",
    version,
    about = "vcontainer: container engines of other architectures in QEMU VMs"
)]
pub(super) struct ProjectArgs {
    #[arg(short = 'v', long, global = true)]
    verbose: bool,
    #[arg(short = 'q', long, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: ProjectCommand,
}

#[derive(Debug, Subcommand)]
enum ProjectCommand {
    /// Guest images (kernel, initramfs with the agent, engines rootfs).
    Image {
        #[command(subcommand)]
        command: ImageCommand,
    },
    /// Measure boot, engine start, transfers and one-shot commands; prints a table.
    Bench(crate::bench::BenchArgs),
    /// Write man pages of vdkr, vpdmn and vcontainer (and their subcommands) into DIR.
    Man {
        #[arg(long, value_name = "DIR", default_value = "man")]
        out: std::path::PathBuf,
    },
    /// Fill a target rootfs: BUNDLED_CONTAINERS and bundle packages imported on top of its
    /// storage (one boot per engine), autostart units written, bundles consumed.
    PopulateRootfs(crate::bundling::populate::Args),
    /// Import many images in one boot per engine and write one storage tar per engine.
    BatchImport(crate::bundling::batch::Args),
    /// Parse (and with --deploy-dir resolve) a BUNDLED_CONTAINERS value; prints the entries.
    Spec(crate::bundling::spec::Args),
    /// Write autostart units (systemd for docker, Quadlet for podman) for BUNDLED_CONTAINERS.
    Units(crate::bundling::units::Args),
    /// Install an engine storage tar into a target root filesystem.
    InstallStorage(crate::bundling::rootfs::Args),
    /// Bundle packages: create or consume /usr/share/container-bundles.
    Bundle(crate::bundling::bundle::Args),
    /// OCI images from a root filesystem (single/multi-layer, base image, layer cache,
    /// reproducible) and multi-arch indexes.
    Oci(super::oci::Args),
    /// Fetch a remote image by digest as an OCI layout for the target arch.
    Fetch(crate::bundling::remote::Args),
    /// Print a shell completion script (e.g. `vcontainer completions bash vdkr > /etc/bash_completion.d/vdkr`).
    Completions {
        shell: clap_complete::Shell,
        #[arg(default_value = "vdkr", value_parser = clap::builder::PossibleValuesParser::new(super::docs::PROGRAMS))]
        program: String,
    },
}

#[derive(Debug, Subcommand)]
enum ImageCommand {
    /// Build (or reuse from the cache) the guest image for ARCH.
    Build {
        #[arg(short = 'a', long, value_name = "ARCH")]
        arch: Vec<String>,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
}

pub fn vcontainer_main() -> ExitCode {
    if let Some(code) = crate::vm::guard::run_if_guard() {
        return code;
    }
    let args = ProjectArgs::parse();
    let reporter = Reporter::new("vcontainer", args.verbose, args.quiet);
    let Some(runtime) = super::runtime(&reporter) else {
        return ExitCode::from(1);
    };
    match runtime.block_on(run(args.command, &reporter)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            reporter.error(super::error_text::error_text(&e));
            ExitCode::from(1)
        }
    }
}

async fn run(command: ProjectCommand, reporter: &Reporter) -> Result<()> {
    match command {
        ProjectCommand::Image {
            command: ImageCommand::Build { arch, json },
        } => {
            let arches: Vec<Arch> = if arch.is_empty() {
                vec![Arch::host()
                    .ok_or_else(|| anyhow::anyhow!("unsupported host arch; pass --arch"))?]
            } else {
                arch.iter().map(|a| a.parse()).collect::<Result<_, _>>()?
            };
            for a in arches {
                let image = ensure_image(a, reporter).await?;
                if json {
                    println!(
                        "{}",
                        serde_json::json!({
                            "arch": a.name(),
                            "kernel": image.kernel,
                            "kernel_version": image.kernel_version,
                            "initramfs": image.initramfs,
                            "rootfs": image.rootfs,
                            "manifest": image.manifest,
                        })
                    );
                } else {
                    println!(
                        "{a}: kernel {} ({})\n{a}: initramfs {}\n{a}: rootfs {}",
                        image.kernel.display(),
                        image.kernel_version,
                        image.initramfs.display(),
                        image.rootfs.display()
                    );
                }
            }
            Ok(())
        }
        ProjectCommand::Bench(b) => crate::bench::run(b, reporter).await,
        ProjectCommand::Man { out } => {
            let pages = super::docs::write_man_pages(&out)?;
            reporter.notice(format!(
                "{} man pages written to {}",
                pages.len(),
                out.display()
            ));
            Ok(())
        }
        ProjectCommand::BatchImport(a) => crate::bundling::batch::run(a, reporter).await,
        ProjectCommand::PopulateRootfs(a) => crate::bundling::populate::run(a, reporter).await,
        ProjectCommand::Spec(a) => crate::bundling::spec::run(a, reporter).await,
        ProjectCommand::Units(a) => crate::bundling::units::run(a, reporter).await,
        ProjectCommand::InstallStorage(a) => crate::bundling::rootfs::run(a, reporter).await,
        ProjectCommand::Bundle(a) => crate::bundling::bundle::run(a, reporter).await,
        ProjectCommand::Oci(a) => super::oci::run(a, reporter).await,
        ProjectCommand::Fetch(a) => crate::bundling::remote::run(a, reporter).await,
        ProjectCommand::Completions { shell, program } => {
            super::docs::print_completions(shell, &program);
            Ok(())
        }
    }
}
