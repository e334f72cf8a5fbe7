//! `vcontainer fetch`: its arguments and entry point, over the `bundling::remote` library.

use std::path::PathBuf;

use anyhow::Result;
use vcontainer_initramfs::Arch;

use crate::bundling::remote::{fetch, FetchOptions, PinnedRef};
use crate::cli::image_args::ImageArgs;
use crate::cli::settings::ProcessEnv;
use crate::state::Tool;
use crate::util::progress::Reporter;

/// Command-line arguments of `vcontainer fetch`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Target architecture (aarch64, x86_64): picked from a multi-arch index.
    #[arg(short = 'a', long, value_name = "ARCH")]
    pub arch: Arch,
    /// Image reference with a mandatory digest: `REGISTRY/REPO[:TAG]@sha256:HEX`.
    #[arg(value_name = "REF@sha256:DIGEST")]
    pub reference: String,
    /// Output directory (the OCI layout); must not exist or be empty.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// A registry (`HOST[:PORT]`) reached over plain HTTP or without TLS verification.
    #[arg(long = "insecure-registry", value_name = "HOST[:PORT]")]
    pub insecure_registry: Vec<String>,
    /// Force TCG (no KVM).
    #[arg(long)]
    pub no_kvm: bool,
    #[command(flatten)]
    pub image: ImageArgs,
    /// Print what was fetched as JSON.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(args: Args, reporter: &Reporter) -> Result<()> {
    let image = PinnedRef::parse(&args.reference)?;
    let opts = FetchOptions {
        insecure_registries: args.insecure_registry,
        no_kvm: args.no_kvm,
        // skopeo runs in the podman guest
        image: args.image.choice(&[Tool::Vpdmn], &ProcessEnv),
    };
    let fetched = fetch(&image, args.arch, &args.out, &opts, reporter).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&fetched)?);
    } else {
        reporter.notice(format!(
            "{} for {}: manifest {}{} -> {}",
            image,
            fetched.platform,
            fetched.manifest_digest,
            fetched
                .index_digest
                .as_deref()
                .map(|d| format!(" (from index {d})"))
                .unwrap_or_default(),
            fetched.layout.display()
        ));
    }
    Ok(())
}
