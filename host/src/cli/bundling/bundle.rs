//! `vcontainer bundle`: its arguments and entry point, over the `bundling::bundle` library.

use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::bundling::bundle::{
    create, discover, parse_bundle_spec, remove, CreateInputs, BUNDLES_DIR,
};
use crate::bundling::spec::Runtime;

/// Command-line arguments of `vcontainer bundle`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: BundleCommand,
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum BundleCommand {
    /// Write a bundle package's /usr/share/container-bundles tree (into --out).
    Create(CreateArgs),
    /// List the bundles installed in a rootfs.
    List {
        #[arg(long, value_name = "DIR")]
        rootfs: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove /usr/share/container-bundles from a rootfs (after its images were imported).
    Remove {
        #[arg(long, value_name = "DIR")]
        rootfs: PathBuf,
    },
}

#[derive(Debug, Clone, clap::Args)]
pub struct CreateArgs {
    /// The directory that becomes /usr/share/container-bundles (must not exist or be empty).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Package name (PN): names the .refs and .meta files.
    #[arg(long, value_name = "PN")]
    pub name: String,
    /// Runtime of every entry (CONTAINER_BUNDLE_RUNTIME).
    #[arg(long, value_name = "RUNTIME")]
    pub runtime: Runtime,
    /// CONTAINER_BUNDLES: whitespace-separated `source[:policy]` entries.
    #[arg(long, value_name = "ENTRIES")]
    pub spec: String,
    /// Where local OCI layouts are looked up (`<src>-latest-oci`, `<src>-oci`, `<src>`).
    #[arg(long, value_name = "DIR")]
    pub deploy_dir: Option<PathBuf>,
    /// Where `vcontainer fetch` put remote images, as `<source [/:@]→_>` directories.
    #[arg(long, value_name = "DIR")]
    pub fetched_dir: Option<PathBuf>,
    /// The OCI layout of one source, explicitly (repeatable): `SOURCE=DIR`.
    #[arg(long = "oci", value_name = "SOURCE=DIR")]
    pub oci: Vec<String>,
    /// A custom unit (docker .service) or Quadlet (podman .container) for one source:
    /// `SOURCE=FILE` (CONTAINER_SERVICE_FILE).
    #[arg(long = "service-file", value_name = "SOURCE=FILE")]
    pub service_file: Vec<String>,
}

pub async fn run(args: Args, reporter: &crate::util::progress::Reporter) -> Result<()> {
    match args.command {
        BundleCommand::Create(a) => {
            let entries = parse_bundle_spec(&a.spec)?;
            let pairs = |v: &[String], what: &str| -> Result<Vec<(String, PathBuf)>> {
                v.iter()
                    .map(|s| {
                        s.split_once('=')
                            .map(|(k, p)| (k.to_string(), PathBuf::from(p)))
                            .with_context(|| format!("{what} {s:?}: expected SOURCE=PATH"))
                    })
                    .collect()
            };
            let inputs = CreateInputs {
                deploy_dir: a.deploy_dir,
                fetched_dir: a.fetched_dir,
                oci: pairs(&a.oci, "--oci")?,
                service_files: pairs(&a.service_file, "--service-file")?,
            };
            let n = tokio::task::spawn_blocking(move || {
                create(&a.out, &a.name, a.runtime, &entries, &inputs).map(|e| (e.len(), a.out))
            })
            .await
            .context("bundle task")??;
            reporter.notice(format!(
                "bundle with {} image(s) written to {}",
                n.0,
                n.1.display()
            ));
            Ok(())
        }
        BundleCommand::List { rootfs, json } => {
            let entries = discover(&rootfs)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&entries)?);
            } else if entries.is_empty() {
                reporter.notice(format!("no container bundles in {}", rootfs.display()));
            } else {
                for e in &entries {
                    println!(
                        "{}\t{}\t{}\t{}\t{}",
                        e.package,
                        e.runtime,
                        e.image_ref,
                        e.policy.map(|p| p.name()).unwrap_or("-"),
                        e.oci_dir.display()
                    );
                }
            }
            Ok(())
        }
        BundleCommand::Remove { rootfs } => {
            let removed = remove(&rootfs)?;
            if removed {
                reporter.notice(format!("removed {}", rootfs.join(BUNDLES_DIR).display()));
            }
            Ok(())
        }
    }
}
