//! The `vcontainer` binary's own command grammar (clap), apart from what runs it (`project.rs`)
//! so that the man pages and completions (`docs.rs`) can read it.

use clap::{Parser, Subcommand};

/// The programs we install, as man pages and completions name them.
pub const PROGRAMS: &[&str] = &["vdkr", "vpdmn", "vcontainer"];

#[derive(Debug, Parser)]
#[command(
    name = "vcontainer",
    version,
    about = "vcontainer: container engines of other architectures in QEMU VMs"
)]
pub(super) struct ProjectArgs {
    #[arg(short = 'v', long, global = true)]
    pub(super) verbose: bool,
    #[arg(short = 'q', long, global = true)]
    pub(super) quiet: bool,
    #[command(subcommand)]
    pub(super) command: ProjectCommand,
}

#[derive(Debug, Subcommand)]
pub(super) enum ProjectCommand {
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
    PopulateRootfs(super::bundling::populate::Args),
    /// Import many images in one boot per engine and write one storage tar per engine.
    BatchImport(super::bundling::batch::Args),
    /// Parse (and with --deploy-dir resolve) a BUNDLED_CONTAINERS value; prints the entries.
    Spec(super::bundling::spec::Args),
    /// Write autostart units (systemd for docker, Quadlet for podman) for BUNDLED_CONTAINERS.
    Units(super::bundling::units::Args),
    /// Install an engine storage tar into a target root filesystem.
    InstallStorage(super::bundling::rootfs::Args),
    /// Bundle packages: create or consume /usr/share/container-bundles.
    Bundle(super::bundling::bundle::Args),
    /// OCI images from a root filesystem (single/multi-layer, base image, layer cache,
    /// reproducible) and multi-arch indexes.
    Oci(super::oci::Args),
    /// Fetch a remote image by digest as an OCI layout for the target arch.
    Fetch(super::bundling::remote::Args),
    /// Print a shell completion script (e.g. `vcontainer completions bash vdkr > /etc/bash_completion.d/vdkr`).
    Completions {
        shell: clap_complete::Shell,
        #[arg(default_value = "vdkr", value_parser = clap::builder::PossibleValuesParser::new(PROGRAMS))]
        program: String,
    },
}

#[derive(Debug, Subcommand)]
pub(super) enum ImageCommand {
    /// Build (or reuse from the cache) the guest image for ARCH.
    Build {
        #[arg(short = 'a', long, value_name = "ARCH")]
        arch: Vec<String>,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
        /// Also write it as an image directory, DIR/ARCH/ with a manifest: what --blob-dir
        /// (and $VDKR_BLOB_DIR, $VPDMN_BLOB_DIR) boot, on this machine or another.
        #[arg(long, value_name = "DIR")]
        out: Option<std::path::PathBuf>,
        /// Never touch the network (also $VCONTAINER_OFFLINE=1): only a cached image (or an
        /// initramfs for a changed agent) can be made; otherwise fail at once.
        #[arg(long)]
        offline: bool,
        /// Build exactly the kernel and packages of this lock file (as --write-lock writes
        /// it), and fail naming every package whose version or .deb sha256 differs. Give one
        /// -a with it.
        #[arg(long, value_name = "FILE")]
        lock: Option<std::path::PathBuf>,
        /// Write the image's lock file (kernel and every package with its .deb sha256) to FILE.
        /// Give one -a with it.
        #[arg(long, value_name = "FILE")]
        write_lock: Option<std::path::PathBuf>,
        /// Debian archive to fetch from instead of the host's apt sources: for a lock older
        /// than the archive, a snapshot (http://snapshot.debian.org/archive/debian/<time>); a
        /// file: URI is a local repository, trusted without a signature.
        #[arg(long, value_name = "URI")]
        mirror: Option<String>,
        /// Debian security archive to go with --mirror (none if not given).
        #[arg(long, value_name = "URI", requires = "mirror")]
        security_mirror: Option<String>,
    },
    /// Build a guest kernel with every driver the guest needs built in, from Debian's
    /// linux-source package (boot shape (a): no modules, no initramfs; an image directory with
    /// this kernel and a root image holding the agent boots with neither). Cached by its
    /// inputs; a build takes about 15 minutes per arch on 2 cores; aarch64 is cross-compiled
    /// (gcc-aarch64-linux-gnu).
    Kernel {
        #[arg(short = 'a', long, value_name = "ARCH")]
        arch: String,
        /// Copy the kernel to FILE as well.
        #[arg(long, value_name = "FILE")]
        out: Option<std::path::PathBuf>,
        /// Parallel compile jobs (default: the number of CPUs).
        #[arg(short = 'j', long, value_name = "N")]
        jobs: Option<usize>,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Make a root filesystem built elsewhere (a Yocto image, mmdebstrap, …) bootable as a
    /// guest: installs the agent as /usr/sbin/vcontainer-agent and creates the mount points
    /// /dev, /proc, /sys and /run if missing. Nothing else is changed.
    AddAgent {
        /// The root filesystem directory.
        #[arg(long, value_name = "DIR")]
        rootfs: std::path::PathBuf,
        #[arg(short = 'a', long, value_name = "ARCH")]
        arch: String,
        /// The agent binary (default: the one vdkr and vpdmn use, $VCONTAINER_AGENT_<ARCH>).
        #[arg(long, value_name = "FILE")]
        agent: Option<std::path::PathBuf>,
    },
}
