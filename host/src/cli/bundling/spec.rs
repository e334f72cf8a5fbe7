//! `vcontainer spec`: its arguments and entry point, over the `bundling::spec` library.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::bundling::spec::{
    parse_bundled, resolve_all, BundledContainer, Policy, ResolvedContainer, Runtime, SpecError,
};

/// The BUNDLED_CONTAINERS value and its default runtime, as command-line options (shared by
/// `vcontainer spec` and `vcontainer units`).
#[derive(Debug, Clone, clap::Args)]
pub struct SpecInput {
    /// The BUNDLED_CONTAINERS value: whitespace-separated `name[:runtime[:policy]][:external]`.
    #[arg(long, value_name = "SPEC")]
    pub containers: String,
    /// Runtime of entries that name none (upstream: CONTAINER_DEFAULT_RUNTIME).
    #[arg(long, value_name = "RUNTIME", conflicts_with = "profile")]
    pub default_runtime: Option<Runtime>,
    /// CONTAINER_PROFILE, to derive the default runtime from (`podman` → podman, else docker).
    #[arg(long, value_name = "PROFILE")]
    pub profile: Option<String>,
}

impl SpecInput {
    pub fn default_runtime(&self) -> Runtime {
        self.default_runtime
            .unwrap_or_else(|| Runtime::default_for_profile(self.profile.as_deref()))
    }

    pub fn parse(&self) -> Result<Vec<BundledContainer>, SpecError> {
        parse_bundled(&self.containers, self.default_runtime())
    }
}

/// Command-line arguments of `vcontainer spec`: parse (and with `--deploy-dir` resolve) a
/// BUNDLED_CONTAINERS value and print the entries, their build dependencies and images.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub input: SpecInput,
    /// Also find each entry's OCI directory here (DEPLOY_DIR_IMAGE) and derive name and tag.
    #[arg(long, value_name = "DIR")]
    pub deploy_dir: Option<PathBuf>,
    /// Print JSON (one array) instead of lines.
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct SpecReport<'a> {
    #[serde(flatten)]
    container: &'a BundledContainer,
    dependency: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    oci_dir: Option<&'a Path>,
    #[serde(skip_serializing_if = "Option::is_none")]
    image: Option<String>,
}

pub async fn run(args: Args, _reporter: &crate::util::progress::Reporter) -> anyhow::Result<()> {
    let containers = args.input.parse()?;
    let resolved = match &args.deploy_dir {
        Some(d) => Some(resolve_all(&containers, d)?),
        None => None,
    };
    let rows: Vec<SpecReport<'_>> = containers
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let r = resolved.as_ref().and_then(|r| r.get(i));
            SpecReport {
                container: c,
                dependency: c.build_dependency(),
                oci_dir: r.map(|r| r.oci_dir.as_path()),
                image: r.map(ResolvedContainer::reference),
            }
        })
        .collect();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    for row in &rows {
        let c = row.container;
        let mut line = format!(
            "{} runtime={} policy={} external={} depends={}",
            c.name,
            c.runtime,
            c.policy.map_or("none", Policy::name),
            c.external,
            row.dependency.as_deref().unwrap_or("-"),
        );
        if let (Some(dir), Some(image)) = (row.oci_dir, &row.image) {
            line.push_str(&format!(" oci_dir={} image={image}", dir.display()));
        }
        println!("{line}");
    }
    Ok(())
}
