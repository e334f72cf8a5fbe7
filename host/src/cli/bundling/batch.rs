//! `vcontainer batch-import`: its arguments and entry point, over the `bundling::batch` library.

use std::path::PathBuf;

use vcontainer_initramfs::Arch;

use super::driver_args::DriverOverrides;
use crate::bundling::batch::{
    batch_import, format_report, parse_entry, BatchError, BatchRequest, EngineBatch,
};
use crate::bundling::spec::Runtime;
use crate::cli::image_args::ImageArgs;
use crate::cli::settings::ProcessEnv;
use crate::state::Tool;
use crate::util::progress::Reporter;

/// Command-line arguments of `vcontainer batch-import`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Target architecture: aarch64 or x86_64.
    #[arg(short = 'a', long, value_name = "ARCH")]
    pub arch: String,
    /// An image for docker: an OCI layout directory or OCI archive tar, and the name to import
    /// it as (split at the first '=': `./app-oci=registry:5000/app:1.0`). Repeatable.
    #[arg(long = "docker", value_name = "PATH=NAME:TAG")]
    pub docker: Vec<String>,
    /// An image for podman (like --docker). Repeatable.
    #[arg(long = "podman", value_name = "PATH=NAME:TAG")]
    pub podman: Vec<String>,
    /// Where to write docker's storage tar (needed with --docker).
    #[arg(long, value_name = "TAR")]
    pub docker_output: Option<PathBuf>,
    /// Where to write podman's storage tar (needed with --podman).
    #[arg(long, value_name = "TAR")]
    pub podman_output: Option<PathBuf>,
    /// Existing docker storage tar to import on top of (additive merge).
    #[arg(long, value_name = "TAR")]
    pub docker_input_storage: Option<PathBuf>,
    /// Existing podman storage tar to import on top of (additive merge).
    #[arg(long, value_name = "TAR")]
    pub podman_input_storage: Option<PathBuf>,
    /// Storage driver, `[ENGINE=]DRIVER` (overlay or vfs; repeatable): the one the target's
    /// engine is configured with. Default: an input storage's, else docker overlay2 and podman
    /// vfs.
    #[arg(long = "storage-driver", value_name = "[ENGINE=]DRIVER")]
    pub storage_drivers: Vec<String>,
    /// Never use KVM.
    #[arg(long)]
    pub no_kvm: bool,
    #[command(flatten)]
    pub image: ImageArgs,
    /// Print the report (outputs and time split) as JSON.
    #[arg(long)]
    pub json: bool,
}

/// The engines a batch runs, in the order their images are named.
fn engines_of(args: &Args) -> Vec<Tool> {
    let mut tools = Vec::new();
    if !args.docker.is_empty() {
        tools.push(Tool::Vdkr);
    }
    if !args.podman.is_empty() {
        tools.push(Tool::Vpdmn);
    }
    tools
}

/// The request from the command line.
pub fn request_from_args(args: &Args) -> Result<BatchRequest, BatchError> {
    let arch: Arch = args
        .arch
        .parse()
        .map_err(|_| BatchError::Invalid(format!("unknown arch {:?}", args.arch)))?;
    let drivers = DriverOverrides::parse(&args.storage_drivers)
        .map_err(|e| BatchError::Invalid(e.to_string()))?;
    let engine = |flag: &str,
                  entries: &[String],
                  output: &Option<PathBuf>,
                  input: &Option<PathBuf>|
     -> Result<Option<EngineBatch>, BatchError> {
        if entries.is_empty() {
            if output.is_some() || input.is_some() {
                return Err(BatchError::Invalid(format!(
                    "--{flag}-output/--{flag}-input-storage given without any --{flag} image"
                )));
            }
            return Ok(None);
        }
        let output = output.clone().ok_or_else(|| {
            BatchError::Invalid(format!("--{flag} images need --{flag}-output TAR"))
        })?;
        Ok(Some(EngineBatch {
            images: entries
                .iter()
                .map(|e| parse_entry(e))
                .collect::<Result<_, _>>()?,
            output,
            input_storage: input.clone(),
            storage_driver: Runtime::from_engine(flag).and_then(|r| drivers.get(r)),
        }))
    };
    Ok(BatchRequest {
        arch,
        docker: engine(
            "docker",
            &args.docker,
            &args.docker_output,
            &args.docker_input_storage,
        )?,
        podman: engine(
            "podman",
            &args.podman,
            &args.podman_output,
            &args.podman_input_storage,
        )?,
        no_kvm: args.no_kvm,
        image: args.image.choice(&engines_of(args), &ProcessEnv),
    })
}

pub async fn run(args: Args, reporter: &Reporter) -> anyhow::Result<()> {
    let req = request_from_args(&args)?;
    let report = batch_import(&req, reporter).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", format_report(&report));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_are_required_and_paired() {
        let args = |docker: &[&str], out: Option<&str>| Args {
            arch: "aarch64".into(),
            docker: docker.iter().map(|s| s.to_string()).collect(),
            podman: vec![],
            docker_output: out.map(PathBuf::from),
            podman_output: None,
            docker_input_storage: None,
            podman_input_storage: None,
            storage_drivers: vec![],
            no_kvm: false,
            image: ImageArgs::default(),
            json: false,
        };
        assert!(request_from_args(&args(&["a=b:1"], None)).is_err());
        assert!(request_from_args(&args(&[], Some("o.tar"))).is_err());
        let r = request_from_args(&args(&["a=b:1"], Some("o.tar"))).expect("ok");
        assert!(r.podman.is_none());
        assert_eq!(r.docker.expect("docker").images.len(), 1);
        let mut bad_arch = args(&["a=b:1"], Some("o.tar"));
        bad_arch.arch = "mips".into();
        assert!(request_from_args(&bad_arch).is_err());
    }
}
