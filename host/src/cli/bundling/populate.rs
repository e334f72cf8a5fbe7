//! `vcontainer populate-rootfs`: what an image build calls at rootfs time (upstream's
//! `merge_installed_bundles; bundle_containers;`), as one command: bundle packages found in the
//! rootfs and the BUNDLED_CONTAINERS entries are imported per engine in one boot each, on top of
//! the storage the rootfs already has (additive merge), the storage is installed into the rootfs,
//! autostart units are written, and the consumed bundles are removed.
//!
//! Everything is checked before anything boots or is written: entries, OCI directories,
//! platforms, unit conflicts, root privileges (needed to keep ownership and whiteout devices).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use vcontainer_initramfs::Arch;

use super::driver_args::DriverOverrides;
use super::spec::SpecInput;
use crate::bundling::batch::{batch_import, BatchImage, BatchRequest, EngineBatch};
use crate::bundling::bundle::{self, BundleEntry};
use crate::bundling::rootfs::{self, InstallOptions};
use crate::bundling::spec::{self, BundledContainer, ResolvedContainer, Runtime};
use crate::bundling::target;
use crate::bundling::units;
use crate::cli::image_args::ImageArgs;
use crate::cli::settings::ProcessEnv;
use crate::guest::boot_image::ensure_image;
use crate::util::progress::Reporter;

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Target architecture.
    #[arg(short = 'a', long, value_name = "ARCH")]
    pub arch: String,
    /// The target root filesystem being built.
    #[arg(long, value_name = "DIR")]
    pub rootfs: PathBuf,
    /// Where the OCI directories of BUNDLED_CONTAINERS are (upstream: DEPLOY_DIR_IMAGE).
    #[arg(long, value_name = "DIR")]
    pub deploy_dir: Option<PathBuf>,
    /// The BUNDLED_CONTAINERS value (may be empty: then only bundle packages are processed).
    #[arg(long, value_name = "SPEC", default_value = "")]
    pub containers: String,
    /// Runtime of entries that name none.
    #[arg(long, value_name = "RUNTIME", conflicts_with = "profile")]
    pub default_runtime: Option<Runtime>,
    /// CONTAINER_PROFILE, to derive the default runtime from.
    #[arg(long, value_name = "PROFILE")]
    pub profile: Option<String>,
    /// A custom unit replacing the generated one for entry NAME (repeatable).
    #[arg(long = "service-file", value_name = "NAME=PATH")]
    pub service_files: Vec<String>,
    /// Write the storage tars here (`docker-storage.tar`, `podman-storage.tar`) instead of
    /// installing them and the units into the rootfs.
    #[arg(long, value_name = "DIR")]
    pub tar_only: Option<PathBuf>,
    /// Storage driver, `[ENGINE=]DRIVER` (overlay or vfs; repeatable). Default: the target's
    /// /etc/containers/storage.conf (else /usr/share/containers/storage.conf) and
    /// /etc/docker/daemon.json, else the storage already in the rootfs, else docker overlay2
    /// and podman vfs (upstream's target configuration).
    #[arg(long = "storage-driver", value_name = "[ENGINE=]DRIVER")]
    pub storage_drivers: Vec<String>,
    /// Never use KVM.
    #[arg(long)]
    pub no_kvm: bool,
    #[command(flatten)]
    pub image: ImageArgs,
}

/// Says so when the target's engine (from its dpkg or opkg database) is an older release than
/// the guest's: storage written by a newer engine may hold what an older one cannot read.
async fn warn_if_target_engine_older(
    rootfs: &Path,
    arch: Arch,
    image: &crate::guest::boot_image::ImageChoice,
    plans: &HashMap<Runtime, EnginePlan>,
    reporter: &Reporter,
) -> Result<()> {
    let mut installed = Vec::new();
    for runtime in plans.keys() {
        if let Some(found) = target::installed_engine(rootfs, *runtime) {
            installed.push((*runtime, found));
        }
    }
    if installed.is_empty() {
        return Ok(());
    }
    let guest = ensure_image(arch, image, reporter).await?;
    for (runtime, (package, version)) in installed {
        match guest.engines.get(runtime.name()) {
            Some(ours) if target::is_older(&version, ours) => reporter.notice(format!(
                "warning: the target's {package} {version} is older than the guest's {runtime} \
                 {ours}: the older engine may not read everything the newer one writes; \
                 prefer a guest image with the target's engine (--blob-dir)"
            )),
            Some(ours) => reporter.debug(format!(
                "target {package} {version}, guest {runtime} {ours}"
            )),
            None => reporter.debug(format!(
                "the guest image records no {runtime} version to compare with the target's {package} {version}"
            )),
        }
    }
    Ok(())
}

/// What one engine gets.
#[derive(Default)]
struct EnginePlan {
    images: Vec<BatchImage>,
    units: Vec<ResolvedContainer>,
}

pub async fn run(args: Args, reporter: &Reporter) -> Result<()> {
    let arch: Arch = args.arch.parse()?;
    if !args.rootfs.is_dir() {
        bail!("--rootfs {}: no such directory", args.rootfs.display());
    }
    if args.tar_only.is_none() {
        rootfs::require_root()?;
    }
    let input = SpecInput {
        containers: args.containers.clone(),
        default_runtime: args.default_runtime,
        profile: args.profile.clone(),
    };
    let entries = input.parse()?;
    let resolved = match (&args.deploy_dir, entries.is_empty()) {
        (_, true) => Vec::new(),
        (Some(d), false) => spec::resolve_all(&entries, d)?,
        (None, false) => {
            bail!("BUNDLED_CONTAINERS entries need --deploy-dir to find their OCI directories")
        }
    };
    let bundles =
        bundle::discover(&args.rootfs).context("reading the bundle packages in the rootfs")?;

    let mut plans: HashMap<Runtime, EnginePlan> = HashMap::new();
    let mut custom: HashMap<String, PathBuf> = parse_service_files(&args.service_files)?;
    for r in resolved {
        let plan = plans.entry(r.container.runtime).or_default();
        plan.images.push(BatchImage {
            source: r.oci_dir.clone(),
            reference: r.reference(),
        });
        if r.container.policy.is_some() {
            plan.units.push(r);
        }
    }
    for b in &bundles {
        let plan = plans.entry(b.runtime).or_default();
        plan.images.push(BatchImage {
            source: b.oci_dir.clone(),
            reference: b.image_ref.clone(),
        });
        if let Some(unit) = bundle_unit(b)? {
            if let Some(file) = &b.service_file {
                custom.insert(unit.container.name.clone(), file.clone());
            }
            plan.units.push(unit);
        }
    }
    if plans.is_empty() {
        reporter.notice("no bundled containers and no bundle packages: nothing to do");
        return Ok(());
    }
    // Unit conflicts and custom files are checked before anything boots.
    let all_units: Vec<ResolvedContainer> = plans
        .values()
        .flat_map(|p| p.units.iter().cloned())
        .collect();
    units::plan_units(&all_units, &custom)?;

    let work = tempfile::Builder::new()
        .prefix("vcontainer-populate-")
        .tempdir()
        .context("creating a work directory")?;
    let out_dir = args
        .tar_only
        .clone()
        .unwrap_or_else(|| work.path().to_path_buf());
    if !out_dir.is_dir() {
        bail!("--tar-only {}: no such directory", out_dir.display());
    }
    let mut req = BatchRequest {
        arch,
        docker: None,
        podman: None,
        no_kvm: args.no_kvm,
        image: args.image.choice(
            &plans.keys().map(|r| r.tool()).collect::<Vec<_>>(),
            &ProcessEnv,
        ),
    };
    let overrides = DriverOverrides::parse(&args.storage_drivers)?;
    let mut drivers = HashMap::new();
    for runtime in plans.keys() {
        let choice = target::choose_driver(&args.rootfs, *runtime, overrides.get(*runtime))?;
        reporter.notice(format!(
            "{runtime}: storage driver {} (from {})",
            choice.driver.engine_name(runtime.tool().engine_kind()),
            choice.reason
        ));
        for w in &choice.warnings {
            reporter.notice(format!("warning: {w}"));
        }
        drivers.insert(*runtime, choice.driver);
    }
    warn_if_target_engine_older(&args.rootfs, arch, &req.image, &plans, reporter).await?;
    for (runtime, plan) in &plans {
        let existing = existing_storage(&args.rootfs, *runtime, work.path())?;
        if existing.is_some() {
            reporter.notice(format!(
                "{runtime}: merging onto the storage already in {}",
                rootfs::storage_dir(&args.rootfs, *runtime).display()
            ));
        }
        let batch = EngineBatch {
            images: plan.images.clone(),
            output: out_dir.join(format!("{runtime}-storage.tar")),
            input_storage: existing,
            storage_driver: drivers.get(runtime).copied(),
        };
        match runtime {
            Runtime::Docker => req.docker = Some(batch),
            Runtime::Podman => req.podman = Some(batch),
        }
    }
    let report = batch_import(&req, reporter).await?;
    reporter.notice(crate::bundling::batch::format_report(&report));

    if args.tar_only.is_some() {
        for runtime in plans.keys() {
            reporter.notice(format!(
                "{runtime} storage written to {}",
                out_dir.join(format!("{runtime}-storage.tar")).display()
            ));
        }
        return Ok(());
    }
    for runtime in plans.keys() {
        let tar = out_dir.join(format!("{runtime}-storage.tar"));
        let installed = rootfs::install_storage(
            *runtime,
            &args.rootfs,
            &tar,
            &InstallOptions { replace: true },
        )?;
        reporter.notice(format!(
            "{runtime} storage installed at {} ({} entries)",
            installed.dest.display(),
            installed.entries
        ));
    }
    let written = units::install_units(&args.rootfs, &all_units, &custom)?;
    for w in &written {
        reporter.notice(format!("unit {}", w.display()));
    }
    if bundle::remove(&args.rootfs)? {
        reporter.notice("bundle packages consumed and removed from the rootfs");
    }
    Ok(())
}

/// `NAME=PATH` pairs.
fn parse_service_files(pairs: &[String]) -> Result<HashMap<String, PathBuf>> {
    pairs
        .iter()
        .map(|p| match p.split_once('=') {
            Some((n, f)) if !n.is_empty() && !f.is_empty() => Ok((n.to_string(), PathBuf::from(f))),
            _ => bail!("--service-file {p:?}: expected NAME=PATH"),
        })
        .collect()
}

/// The unit a bundle entry asks for (only with a policy), named after its image.
fn bundle_unit(b: &BundleEntry) -> Result<Option<ResolvedContainer>> {
    let Some(policy) = b.policy else {
        return Ok(None);
    };
    let (path, tag) = match b.image_ref.rsplit_once(':') {
        Some((p, t)) if !t.contains('/') => (p, t),
        _ => (b.image_ref.as_str(), "latest"),
    };
    let name = path.rsplit('/').next().unwrap_or(path).to_string();
    Ok(Some(ResolvedContainer {
        container: BundledContainer {
            entry: format!("{} (bundle {})", b.source, b.package),
            name: name.clone(),
            runtime: b.runtime,
            policy: Some(policy),
            external: false,
        },
        oci_dir: b.oci_dir.clone(),
        image_name: path.to_string(),
        tag: tag.to_string(),
    }))
}

/// The rootfs's existing storage of `runtime` as a tar (ownership, xattrs and devices kept) for
/// an additive import, or `None` when there is none.
fn existing_storage(rootfs: &Path, runtime: Runtime, work: &Path) -> Result<Option<PathBuf>> {
    let dir = rootfs::storage_dir(rootfs, runtime);
    let has_content = std::fs::read_dir(&dir).is_ok_and(|mut d| d.next().is_some());
    if !has_content {
        return Ok(None);
    }
    let (parent, top) = rootfs::storage_location(runtime);
    let tar = work.join(format!("existing-{runtime}.tar"));
    let status = Command::new("tar")
        .arg("--create")
        .arg("--file")
        .arg(&tar)
        .args([
            "--numeric-owner",
            "--xattrs",
            "--xattrs-include=*",
            "--force-local",
        ])
        .arg("-C")
        .arg(rootfs.join(parent))
        .arg(top)
        .status()
        .context("running tar")?;
    if !status.success() {
        bail!(
            "tar could not read the existing storage in {} ({status})",
            dir.display()
        );
    }
    Ok(Some(tar))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bundling::spec::Policy;

    #[test]
    fn bundle_units_take_the_imported_reference() {
        let b = BundleEntry {
            package: "app-bundle".into(),
            runtime: Runtime::Docker,
            source: "docker.io/library/busybox:1.36".into(),
            oci_name: "x".into(),
            oci_dir: "/b/x".into(),
            image_ref: "docker.io/library/busybox:1.36".into(),
            policy: Some(Policy::Always),
            service_file: None,
        };
        let u = bundle_unit(&b).expect("ok").expect("a unit");
        assert_eq!(u.reference(), "docker.io/library/busybox:1.36");
        assert_eq!(u.container.name, "busybox");
        let none = BundleEntry { policy: None, ..b };
        assert!(bundle_unit(&none).expect("ok").is_none());
        assert!(parse_service_files(&["a=/x".into()]).is_ok());
        assert!(parse_service_files(&["a".into()]).is_err());
    }
}
