//! `vcontainer oci build` and `vcontainer oci index`: the CLI edge of the OCI image builder
//! (the `vcontainer-oci` crate). Upstream's OCI_IMAGE_* variables map onto flags one to one; the README lists
//! them.

use std::path::PathBuf;

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args as ClapArgs, Subcommand, ValueEnum};

use crate::util::progress::Reporter;
use vcontainer_oci as oci;
use vcontainer_oci::image_config::{parse_key_value, AutoLabel, ImageSettings};
use vcontainer_oci::layer_spec::{parse_entry, parse_layers};
use vcontainer_oci::{build::CacheUse, BuildRequest, Compression, OwnerPolicy};

#[derive(Debug, ClapArgs)]
pub struct Args {
    #[command(subcommand)]
    command: OciCommand,
}

#[derive(Debug, Subcommand)]
enum OciCommand {
    /// Build an OCI image layout (and archive) from a root filesystem directory.
    Build(Box<BuildArgs>),
    /// Assemble per-arch layouts into one multi-arch layout (a nested image index).
    Index(IndexArgs),
    /// Measure the builder on a ~200 MB Debian rootfs against umoci; prints a table.
    Bench(crate::bench::oci::OciBenchArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum CompressionArg {
    Gzip,
    None,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum OwnerArg {
    /// Every entry owned by 0:0 whatever the rootfs says (lossy: for a rootfs staged by an
    /// unprivileged user without fakeroot/pseudo).
    Root,
    /// The uid/gid the rootfs has, as read under the fakeroot/pseudo that staged it (default).
    Preserve,
}

#[derive(Debug, ClapArgs)]
pub struct BuildArgs {
    /// The root filesystem to package (IMAGE_ROOTFS).
    #[arg(long, value_name = "DIR")]
    rootfs: PathBuf,
    /// The OCI layout directory to write (replaced if it exists).
    #[arg(short, long, value_name = "DIR", conflicts_with = "deploy_dir")]
    output: Option<PathBuf>,
    /// Also write an OCI archive (the layout's contents at the archive root).
    #[arg(long, value_name = "FILE")]
    archive: Option<PathBuf>,
    /// Write upstream's deploy names here: <NAME>-<TAG>-oci/ and <NAME>-<TAG>-oci.tar.
    #[arg(long, value_name = "DIR", requires = "image_name")]
    deploy_dir: Option<PathBuf>,
    /// The image's name for --deploy-dir (IMAGE_BASENAME).
    #[arg(long, value_name = "NAME")]
    image_name: Option<String>,
    /// With --deploy-dir: no .tar (OCI_IMAGE_TAR_OUTPUT off).
    #[arg(long)]
    no_tar: bool,
    /// The tag, written as the manifest's org.opencontainers.image.ref.name (OCI_IMAGE_TAG).
    #[arg(short, long, default_value = "latest")]
    tag: String,
    /// Target architecture: aarch64, x86_64, arm, riscv64… or the OCI names (arm64, amd64).
    #[arg(short, long, value_name = "ARCH")]
    arch: String,
    /// Architecture variant (e.g. v7, v8); arm defaults to v7.
    #[arg(long)]
    variant: Option<String>,
    #[arg(long, default_value = "linux")]
    os: String,
    /// ENTRYPOINT, shell-quoted words (OCI_IMAGE_ENTRYPOINT).
    #[arg(long, value_name = "WORDS", allow_hyphen_values = true)]
    entrypoint: Option<String>,
    /// CMD, shell-quoted words (OCI_IMAGE_CMD); default /bin/sh without a base image.
    #[arg(long, value_name = "WORDS", allow_hyphen_values = true)]
    cmd: Option<String>,
    /// Legacy OCI_IMAGE_ENTRYPOINT_ARGS: used as CMD instead of --cmd when given.
    #[arg(long, value_name = "WORDS", allow_hyphen_values = true)]
    entrypoint_args: Option<String>,
    /// KEY=VALUE, repeatable (OCI_IMAGE_ENV_VARS).
    #[arg(short, long, value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// KEY=VALUE, repeatable.
    #[arg(short, long, value_name = "KEY=VALUE")]
    label: Vec<String>,
    /// Shell-quoted KEY=VALUE words, as OCI_IMAGE_LABELS writes them (`k='a b' x=y`).
    #[arg(long, value_name = "WORDS")]
    labels: Option<String>,
    /// PORT[/tcp|udp], repeatable (OCI_IMAGE_PORTS).
    #[arg(short, long, value_name = "PORT")]
    port: Vec<String>,
    #[arg(short, long)]
    user: Option<String>,
    #[arg(short = 'w', long)]
    workdir: Option<String>,
    #[arg(long)]
    stop_signal: Option<String>,
    #[arg(long)]
    author: Option<String>,
    /// No automatic labels (revision, ref.name, created).
    #[arg(long)]
    no_auto_labels: bool,
    /// org.opencontainers.image.revision: a value, or `none`; default `git rev-parse --short HEAD`.
    #[arg(long, value_name = "VALUE|none")]
    revision: Option<String>,
    /// org.opencontainers.image.ref.name label: a value, or `none`; default the git branch.
    #[arg(long, value_name = "VALUE|none")]
    branch: Option<String>,
    /// org.opencontainers.image.created label: a value, or `none`; default the build time.
    #[arg(long, value_name = "VALUE|none")]
    created: Option<String>,
    /// Where git looks for the automatic revision and branch (default: the current directory).
    #[arg(long, value_name = "DIR")]
    git_dir: Option<PathBuf>,
    /// A layer spec name:type:content (repeatable; OCI_LAYER_MODE=multi).
    #[arg(long = "layer", value_name = "SPEC")]
    layer: Vec<String>,
    /// Whitespace-separated layer specs, as OCI_LAYERS writes them.
    #[arg(long, value_name = "SPECS")]
    layers: Option<String>,
    /// A base image layout to build on (OCI_BASE_IMAGE as a path).
    #[arg(long, value_name = "DIR")]
    base: Option<PathBuf>,
    /// The tag to use from the base layout (OCI_BASE_IMAGE_TAG).
    #[arg(long, value_name = "TAG", requires = "base")]
    base_tag: Option<String>,
    /// The layer cache (default: <cache dir>/oci-layers).
    #[arg(long, value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    /// Build every layer, use and store nothing in the cache.
    #[arg(long)]
    no_cache: bool,
    #[arg(long, value_enum, default_value = "gzip")]
    compression: CompressionArg,
    #[arg(long, default_value_t = 6, value_parser = clap::value_parser!(u32).range(0..=9))]
    gzip_level: u32,
    /// Who owns the image's files: `preserve` (default) keeps the rootfs's owners, which a build
    /// under pseudo sees as they will be on the target; `root` makes everything 0:0.
    #[arg(long, value_enum, default_value = "preserve")]
    owner: OwnerArg,
    /// Reproducible build: file times clamped to this, all image timestamps set to it.
    #[arg(long, env = "SOURCE_DATE_EPOCH", value_name = "SECONDS")]
    source_date_epoch: Option<i64>,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, ClapArgs)]
pub struct IndexArgs {
    /// The multi-arch layout to write.
    #[arg(short, long, value_name = "DIR")]
    output: PathBuf,
    #[arg(short, long, default_value = "latest")]
    tag: String,
    /// Per-arch layouts, one image each.
    #[arg(required = true, value_name = "LAYOUT")]
    layouts: Vec<PathBuf>,
}

fn words(flag: &str, s: &str) -> Result<Vec<String>> {
    shlex::split(s).ok_or_else(|| anyhow!("--{flag} '{s}': unbalanced quotes"))
}

fn check_tag(tag: &str) -> Result<()> {
    let ok = !tag.is_empty()
        && tag.len() <= 128
        && tag
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':'));
    if !ok {
        bail!("tag '{tag}': use 1-128 letters, digits, '.', '_', '-' or ':'");
    }
    Ok(())
}

fn request(a: &BuildArgs) -> Result<BuildRequest> {
    check_tag(&a.tag)?;
    let (output, archive) = match (&a.output, &a.deploy_dir, &a.image_name) {
        (Some(o), None, _) => (o.clone(), a.archive.clone()),
        (None, Some(d), Some(n)) => {
            let name = oci::layout::deploy_name(n, &a.tag);
            let tar = (!a.no_tar).then(|| d.join(format!("{name}.tar")));
            (d.join(name), a.archive.clone().or(tar))
        }
        _ => bail!("say where the image goes: --output DIR, or --deploy-dir DIR --image-name NAME"),
    };
    if output.starts_with(&a.rootfs) {
        bail!(
            "the output {} is inside the rootfs {}",
            output.display(),
            a.rootfs.display()
        );
    }
    let mut layers = Vec::new();
    if let Some(l) = &a.layers {
        layers.extend(parse_layers(l)?);
    }
    for l in &a.layer {
        let spec = parse_entry(l)?;
        if layers
            .iter()
            .any(|s: &oci::layer_spec::LayerSpec| s.name == spec.name)
        {
            bail!("invalid layer spec '{l}': the layer name is used twice");
        }
        layers.push(spec);
    }
    let (arch, default_variant) = oci::oci_arch(&a.arch);
    if arch.is_empty() {
        bail!("--arch must name an architecture");
    }
    let mut labels = Vec::new();
    if let Some(w) = &a.labels {
        for word in words("labels", w)? {
            labels.push(parse_key_value("label", &word)?);
        }
    }
    for l in &a.label {
        labels.push(parse_key_value("label", l)?);
    }
    for e in &a.env {
        parse_key_value("env", e)?;
    }
    let cmd = match (&a.entrypoint_args, &a.cmd) {
        (Some(args), _) => Some(words("entrypoint-args", args)?),
        (None, Some(c)) => Some(words("cmd", c)?),
        (None, None) => None,
    };
    let settings = ImageSettings {
        entrypoint: a
            .entrypoint
            .as_deref()
            .map(|e| words("entrypoint", e))
            .transpose()?,
        cmd,
        env: a.env.clone(),
        labels,
        ports: a.port.clone(),
        user: a.user.clone(),
        workdir: a.workdir.clone(),
        stop_signal: a.stop_signal.clone(),
        author: a.author.clone(),
        auto_labels: !a.no_auto_labels,
        revision: a
            .revision
            .as_deref()
            .map(AutoLabel::parse)
            .unwrap_or_default(),
        branch: a
            .branch
            .as_deref()
            .map(AutoLabel::parse)
            .unwrap_or_default(),
        created_label: a
            .created
            .as_deref()
            .map(AutoLabel::parse)
            .unwrap_or_default(),
        git_dir: a.git_dir.clone(),
    };
    // Ports are checked now, not halfway through the build.
    for p in &a.port {
        oci::image_config::parse_port(p)?;
    }
    let cache_dir = if a.no_cache {
        None
    } else {
        Some(match &a.cache_dir {
            Some(d) => d.clone(),
            None => crate::guest::boot_image::cache_dir()?.join("oci-layers"),
        })
    };
    if let Some(b) = &a.base {
        if !oci::build::is_layout(b) {
            bail!(
                "--base {}: not an OCI image layout (no index.json)",
                b.display()
            );
        }
    }
    Ok(BuildRequest {
        rootfs: a.rootfs.clone(),
        output,
        archive,
        tag: a.tag.clone(),
        arch,
        variant: a.variant.clone().or(default_variant),
        os: a.os.clone(),
        layers,
        base: a.base.clone().map(|b| (b, a.base_tag.clone())),
        settings,
        cache_dir,
        compression: match a.compression {
            CompressionArg::Gzip => Compression::Gzip(a.gzip_level),
            CompressionArg::None => Compression::None,
        },
        owner: match a.owner {
            OwnerArg::Root => OwnerPolicy::Root,
            OwnerArg::Preserve => OwnerPolicy::Preserve,
        },
        source_date_epoch: a.source_date_epoch,
    })
}

fn human(bytes: u64) -> String {
    if bytes >= 1 << 20 {
        format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64)
    } else {
        format!("{:.1} KiB", bytes as f64 / 1024.0)
    }
}

pub async fn run(args: Args, reporter: &Reporter) -> Result<()> {
    match args.command {
        OciCommand::Build(a) => {
            let req = request(&a)?;
            let quiet_log = a.json;
            let r = reporter.clone();
            let report = tokio::task::spawn_blocking(move || {
                oci::build(&req, &mut |line: &str| {
                    if quiet_log {
                        r.debug(line);
                    } else {
                        r.notice(line);
                    }
                })
            })
            .await
            .context("the build thread failed")??;
            if a.json {
                let layers: Vec<_> = report
                    .layers
                    .iter()
                    .map(|l| {
                        serde_json::json!({
                            "name": l.name, "type": l.kind, "entries": l.entries,
                            "diff_id": l.diff_id, "digest": l.digest, "size": l.size,
                            "cache": format!("{:?}", l.cache).to_lowercase(),
                            "seconds": l.seconds,
                        })
                    })
                    .collect();
                println!(
                    "{}",
                    serde_json::json!({
                        "layout": report.layout, "archive": report.archive,
                        "manifest": report.manifest_digest, "base_layers": report.base_layers,
                        "layers": layers, "warnings": report.warnings,
                    })
                );
            } else {
                println!(
                    "{:<16} {:<12} {:>8} {:>12} {:>6} {:>7}  digest",
                    "layer", "type", "entries", "size", "cache", "time"
                );
                for l in &report.layers {
                    let cache = match l.cache {
                        CacheUse::Hit => "hit",
                        CacheUse::Miss => "miss",
                        CacheUse::Off => "-",
                    };
                    println!(
                        "{:<16} {:<12} {:>8} {:>12} {:>6} {:>6.2}s  {}",
                        l.name,
                        l.kind,
                        l.entries,
                        human(l.size),
                        cache,
                        l.seconds,
                        &l.digest[..19]
                    );
                }
                if report.base_layers > 0 {
                    println!("(+ {} base layer(s) kept)", report.base_layers);
                }
                println!("{} {}", report.layout.display(), report.manifest_digest);
                if let Some(a) = &report.archive {
                    println!("{}", a.display());
                }
            }
            Ok(())
        }
        OciCommand::Bench(a) => crate::bench::oci::run_bench(a, reporter).await,
        OciCommand::Index(a) => {
            check_tag(&a.tag)?;
            let platforms = tokio::task::spawn_blocking(move || {
                oci::index::assemble(&a.layouts, &a.output, &a.tag).map(|p| (p, a.output))
            })
            .await
            .context("the index thread failed")??;
            println!("{}: {}", platforms.1.display(), platforms.0.join(", "));
            Ok(())
        }
    }
}
