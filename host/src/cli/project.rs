//! The `vcontainer` binary's own commands.

use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Parser;
use vcontainer_initramfs::Arch;

use super::project_args::{ImageCommand, ProjectArgs, ProjectCommand};
use crate::guest::agent_binary::agent_binary;
use crate::guest::boot_image::{build_image, BuildOptions};
use crate::util::progress::Reporter;

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
            command:
                ImageCommand::AddAgent {
                    rootfs,
                    arch,
                    agent,
                },
        } => {
            let arch: Arch = arch.parse()?;
            let agent = match agent {
                Some(a) => a,
                None => agent_binary(arch, reporter)?,
            };
            let done = vcontainer_initramfs::rootfs_agent::install(&rootfs, &agent, arch)?;
            for dir in &done.created {
                reporter.notice(format!("created mount point {}", dir.display()));
            }
            reporter.notice(format!(
                "{} installed as {}",
                agent.display(),
                done.agent.display()
            ));
            Ok(())
        }
        ProjectCommand::Image {
            command:
                ImageCommand::Kernel {
                    arch,
                    out,
                    jobs,
                    json,
                },
        } => {
            let arch: Arch = arch.parse()?;
            let jobs = jobs
                .or_else(|| std::thread::available_parallelism().ok().map(|n| n.get()))
                .unwrap_or(1)
                .max(1);
            let cache = crate::guest::boot_image::cache_dir()?;
            let r = reporter.clone();
            let built = tokio::task::spawn_blocking(move || {
                vcontainer_initramfs::build_kernel(arch, &cache, jobs, &mut |p| {
                    r.notice(format!("kernel: {p}"))
                })
            })
            .await??;
            if let Some(out) = &out {
                std::fs::copy(&built.kernel, out)
                    .with_context(|| format!("copying the kernel to {}", out.display()))?;
            }
            if json {
                println!(
                    "{}",
                    serde_json::json!({
                        "arch": arch.name(),
                        "kernel": built.kernel,
                        "config": built.config,
                        "source_version": built.source_version,
                        "cached": built.cached,
                    })
                );
            } else {
                println!("{arch}: kernel {}", built.kernel.display());
            }
            Ok(())
        }
        ProjectCommand::Image {
            command:
                ImageCommand::Build {
                    arch,
                    json,
                    out,
                    offline,
                    lock,
                    write_lock,
                    mirror,
                    security_mirror,
                },
        } => {
            let arches: Vec<Arch> = if arch.is_empty() {
                vec![Arch::host()
                    .ok_or_else(|| anyhow::anyhow!("unsupported host arch; pass --arch"))?]
            } else {
                arch.iter().map(|a| a.parse()).collect::<Result<_, _>>()?
            };
            if (lock.is_some() || write_lock.is_some()) && arches.len() != 1 {
                bail!("--lock and --write-lock are per architecture: give exactly one -a");
            }
            let lock = match &lock {
                Some(path) => Some(vcontainer_initramfs::Lock::read(path, arches[0].name())?),
                None => None,
            };
            for a in arches {
                let image = build_image(
                    a,
                    BuildOptions {
                        offline: offline || crate::guest::boot_image::offline_from_env(),
                        lock: lock.clone(),
                        mirrors: mirror.as_deref().map(|m| {
                            vcontainer_initramfs::Mirrors::given(m, security_mirror.as_deref())
                        }),
                    },
                    reporter,
                )
                .await?;
                if let Some(path) = &write_lock {
                    vcontainer_initramfs::lock_of(&image)?.write(path)?;
                    reporter.notice(format!("{a}: lock file {}", path.display()));
                }
                let exported = match &out {
                    Some(dir) => {
                        let (image, dir) = (image.clone(), dir.clone());
                        let d = tokio::task::spawn_blocking(move || {
                            vcontainer_initramfs::export_image_dir(&image, &dir)
                        })
                        .await??;
                        reporter.notice(format!("{a}: image directory {}", d.dir.display()));
                        Some(d.dir)
                    }
                    None => None,
                };
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
                            "image_dir": exported,
                            "engines": vcontainer_initramfs::manifest::Manifest::read(&image.manifest)
                                .map(|m| m.engines)
                                .unwrap_or_default(),
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
        ProjectCommand::BatchImport(a) => super::bundling::batch::run(a, reporter).await,
        ProjectCommand::PopulateRootfs(a) => super::bundling::populate::run(a, reporter).await,
        ProjectCommand::Spec(a) => super::bundling::spec::run(a, reporter).await,
        ProjectCommand::Units(a) => super::bundling::units::run(a, reporter).await,
        ProjectCommand::InstallStorage(a) => super::bundling::rootfs::run(a, reporter).await,
        ProjectCommand::Bundle(a) => super::bundling::bundle::run(a, reporter).await,
        ProjectCommand::Oci(a) => super::oci::run(a, reporter).await,
        ProjectCommand::Fetch(a) => super::bundling::remote::run(a, reporter).await,
        ProjectCommand::Completions { shell, program } => {
            super::docs::print_completions(shell, &program);
            Ok(())
        }
    }
}
