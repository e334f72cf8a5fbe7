//! Installing an engine storage tar (from `vdkr/vpdmn --storage FILE`) into a target root
//! filesystem: docker's `docker/…` entries become `<rootfs>/var/lib/docker`, podman's `storage/…`
//! entries `<rootfs>/var/lib/containers/storage`.
//!
//! Unlike upstream (`tar -xf … --no-same-owner`, W12), ownership, modes, xattrs (overlay2's
//! `trusted.overlay.opaque`), hard links and whiteout device nodes are kept: what the target's
//! engine needs to read its storage. That needs root, or a root emulation (fakeroot, Yocto's
//! pseudo); without euid 0 the install is refused before anything is touched.
//!
//! The extraction itself is GNU tar's (`--numeric-owner --same-owner -p --xattrs
//! --xattrs-include=*`), not the tar crate's: the tar crate cannot create device nodes (overlay
//! whiteouts are char devices 0/0) and restores no `trusted.*` xattrs without an extra crate, and
//! GNU tar is what pseudo/fakeroot are tested with and what wrote the archive in the guest
//! (sparse files, PAX xattr records). GNU tar is run with an argv list, never a shell string.
//!
//! The archive comes from an untrusted guest, so it is checked completely with the tar crate
//! *before* GNU tar sees it ([`check_storage_tar`]): every name relative, without `..`, under the
//! expected top directory; no entry below an earlier symlink entry; hard links only to earlier
//! entries; device nodes only 0/0 (whiteouts); no fifos or unknown types. GNU tar then extracts
//! into a fresh staging directory inside `<rootfs>/var/lib…`, and only a complete extraction is
//! renamed into place: a failure leaves the rootfs as it was.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use super::spec::Runtime;

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

pub async fn run(args: Args, reporter: &crate::progress::Reporter) -> Result<()> {
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

/// Options of [`install_storage`].
#[derive(Debug, Clone, Default)]
pub struct InstallOptions {
    /// Replace an existing non-empty storage directory.
    pub replace: bool,
}

/// What [`install_storage`] did.
#[derive(Debug, Clone)]
pub struct InstallReport {
    /// The storage directory written (`<rootfs>/var/lib/docker` …).
    pub dest: PathBuf,
    pub entries: u64,
    /// A previous non-empty storage directory was replaced.
    pub replaced: bool,
}

/// Where `engine`'s storage lives, relative to the rootfs: (parent, top directory of the tar).
pub fn storage_location(engine: Runtime) -> (&'static str, &'static str) {
    match engine {
        Runtime::Docker => ("var/lib", "docker"),
        Runtime::Podman => ("var/lib/containers", "storage"),
    }
}

/// The storage directory of `engine` in `rootfs`.
pub fn storage_dir(rootfs: &Path, engine: Runtime) -> PathBuf {
    let (parent, top) = storage_location(engine);
    rootfs.join(parent).join(top)
}

/// Refuses to go on without euid 0 (root, fakeroot or pseudo all report 0).
pub fn require_root() -> Result<()> {
    if nix::unistd::geteuid().is_root() {
        return Ok(());
    }
    bail!(
        "installing engine storage into a rootfs needs root or a root emulation: ownership, xattrs \
         and whiteout device nodes must be kept (run under fakeroot or pseudo, as Yocto's do_rootfs \
         does), or keep only the storage tar (--tar-only) and install it later; nothing was changed"
    )
}

/// Installs the storage tar `storage` of `engine` into `rootfs` (see the module comment).
pub fn install_storage(
    engine: Runtime,
    rootfs: &Path,
    storage: &Path,
    opts: &InstallOptions,
) -> Result<InstallReport> {
    require_root()?;
    let (parent_rel, top) = storage_location(engine);
    let meta =
        fs::metadata(rootfs).with_context(|| format!("target rootfs {}", rootfs.display()))?;
    if !meta.is_dir() {
        bail!("target rootfs {} is not a directory", rootfs.display());
    }
    let entries = check_storage_tar(storage, top)?;
    let dest = rootfs.join(parent_rel).join(top);
    let replaced = match fs::symlink_metadata(&dest) {
        Ok(m) if m.file_type().is_symlink() || !m.is_dir() => bail!(
            "{} exists and is not a directory; refusing to install {engine} storage over it",
            dest.display()
        ),
        Ok(_) => {
            let empty = fs::read_dir(&dest)
                .with_context(|| format!("reading {}", dest.display()))?
                .next()
                .is_none();
            if !empty && !opts.replace {
                bail!(
                    "{} already holds {engine} storage; pass --replace to replace it (to keep its \
                     images, seed the batch import with it instead)",
                    dest.display()
                );
            }
            !empty
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => false,
        Err(e) => return Err(e).with_context(|| format!("inspecting {}", dest.display())),
    };
    let parent = make_dirs_no_symlinks(rootfs, Path::new(parent_rel))?;
    let staging = tempfile::Builder::new()
        .prefix(".vcontainer-install-")
        .tempdir_in(&parent)
        .with_context(|| format!("creating a staging directory in {}", parent.display()))?;
    extract_with_gnu_tar(storage, staging.path())?;
    let extracted = staging.path().join(top);
    match fs::symlink_metadata(&extracted) {
        Ok(m) if m.is_dir() => {}
        _ => bail!("{}: the archive has no {top}/ directory", storage.display()),
    }
    if dest.exists() {
        // Move the old one aside inside the staging dir (removed with it), then the new one in.
        let old = staging.path().join(".old");
        fs::rename(&dest, &old)
            .with_context(|| format!("moving the old {} aside", dest.display()))?;
        if let Err(e) = fs::rename(&extracted, &dest) {
            let _ = fs::rename(&old, &dest);
            return Err(e).with_context(|| format!("moving the new storage to {}", dest.display()));
        }
    } else {
        fs::rename(&extracted, &dest)
            .with_context(|| format!("moving the new storage to {}", dest.display()))?;
    }
    staging
        .close()
        .with_context(|| format!("removing the staging directory in {}", parent.display()))?;
    Ok(InstallReport {
        dest,
        entries,
        replaced,
    })
}

/// Creates `rootfs/rel` as plain directories (mode 0755), refusing any existing component that is
/// a symlink or not a directory: a rootfs symlink like `var/lib -> /somewhere` would otherwise make
/// us write outside the rootfs.
fn make_dirs_no_symlinks(rootfs: &Path, rel: &Path) -> Result<PathBuf> {
    let mut cur = rootfs.to_path_buf();
    for c in rel.components() {
        cur.push(c);
        match fs::symlink_metadata(&cur) {
            Ok(m) if m.file_type().is_symlink() => bail!(
                "{} is a symlink in the target rootfs; refusing to install storage through it",
                cur.display()
            ),
            Ok(m) if m.is_dir() => {}
            Ok(_) => bail!("{} exists and is not a directory", cur.display()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                use std::os::unix::fs::DirBuilderExt;
                fs::DirBuilder::new()
                    .mode(0o755)
                    .create(&cur)
                    .with_context(|| format!("creating {}", cur.display()))?;
            }
            Err(e) => return Err(e).with_context(|| format!("inspecting {}", cur.display())),
        }
    }
    Ok(cur)
}

/// `name` as normal components (leading `./` dropped), or None if absolute or with `..`.
fn normal_components(name: &Path) -> Option<Vec<String>> {
    let mut out = Vec::new();
    for c in name.components() {
        match c {
            Component::Normal(p) => out.push(p.to_str()?.to_string()),
            Component::CurDir => {}
            _ => return None,
        }
    }
    Some(out)
}

/// Checks every entry of the storage tar at `path` (see the module comment) and returns the
/// number of entries. `top` is the required first component (`docker` or `storage`).
pub fn check_storage_tar(path: &Path, top: &str) -> Result<u64> {
    let file = fs::File::open(path)
        .with_context(|| format!("opening the storage tar {}", path.display()))?;
    let mut archive = tar::Archive::new(io::BufReader::new(file));
    let mut seen: HashSet<String> = HashSet::new();
    let mut symlinks: HashSet<String> = HashSet::new();
    let mut count = 0u64;
    let bad = |name: &str, why: &str| {
        anyhow::anyhow!(
            "{}: refusing storage tar entry {name:?}: {why}; nothing was installed",
            path.display()
        )
    };
    for entry in archive
        .entries()
        .with_context(|| format!("reading {}", path.display()))?
    {
        let entry = entry.with_context(|| format!("reading {}", path.display()))?;
        count += 1;
        let raw = entry.path_bytes();
        let name_str = String::from_utf8_lossy(&raw).into_owned();
        let name = PathBuf::from(name_str.clone());
        let parts = normal_components(&name)
            .ok_or_else(|| bad(&name_str, "absolute, with '..' or not UTF-8"))?;
        if parts.first().map(String::as_str) != Some(top) {
            return Err(bad(
                &name_str,
                &format!("every entry must be under {top}/ for this engine"),
            ));
        }
        // Nothing below a symlink of the archive: GNU tar would follow it.
        for n in 1..parts.len() {
            if symlinks.contains(&parts[..n].join("/")) {
                return Err(bad(&name_str, "it lies below a symlink entry"));
            }
        }
        let joined = parts.join("/");
        let kind = entry.header().entry_type();
        use tar::EntryType as E;
        match kind {
            E::Regular | E::Continuous | E::GNUSparse | E::Directory => {}
            E::Symlink => {
                symlinks.insert(joined.clone());
            }
            E::Link => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| bad(&name_str, "hard link without a target"))?;
                let target = String::from_utf8_lossy(&target).into_owned();
                let tparts = normal_components(Path::new(&target))
                    .ok_or_else(|| bad(&name_str, "hard link target absolute or with '..'"))?;
                let tjoined = tparts.join("/");
                if tparts.first().map(String::as_str) != Some(top) || !seen.contains(&tjoined) {
                    return Err(bad(
                        &name_str,
                        &format!("hard link target {target:?} is not an earlier entry"),
                    ));
                }
                if symlinks.contains(&tjoined) {
                    return Err(bad(&name_str, "hard link to a symlink entry"));
                }
            }
            E::Char => {
                let major = entry.header().device_major().ok().flatten();
                let minor = entry.header().device_minor().ok().flatten();
                if major != Some(0) || minor != Some(0) {
                    return Err(bad(
                        &name_str,
                        "device node other than an overlay whiteout (char 0/0)",
                    ));
                }
            }
            // dockerd's probe of the backing filesystem: a block device it recreates at start;
            // it is left out of the install (upstream excluded it too).
            E::Block if joined == BACKING_FS_BLOCK_DEV => {}
            other => {
                return Err(bad(
                    &name_str,
                    &format!("entry type {other:?} is not allowed in engine storage"),
                ))
            }
        }
        seen.insert(joined);
    }
    if count == 0 {
        bail!("{}: the storage tar is empty", path.display());
    }
    Ok(count)
}

/// Docker's backing-filesystem probe device in its storage (not installed: dockerd recreates it).
const BACKING_FS_BLOCK_DEV: &str = "docker/volumes/backingFsBlockDev";

/// GNU tar's argv to extract `archive` into `dest`, keeping owners, modes, xattrs and devices.
pub fn gnu_tar_args(archive: &Path, dest: &Path) -> Vec<std::ffi::OsString> {
    let mut v: Vec<std::ffi::OsString> = [
        "--extract",
        "--force-local", // a ':' in the file name is not a remote host
        "--numeric-owner",
        "--same-owner",
        "--same-permissions",
        "--xattrs",
        "--xattrs-include=*",
        "--delay-directory-restore",
        "--warning=no-timestamp",
        "--exclude",
        BACKING_FS_BLOCK_DEV,
        "--file",
    ]
    .iter()
    .map(Into::into)
    .collect();
    v.push(archive.as_os_str().to_owned());
    v.push("--directory".into());
    v.push(dest.as_os_str().to_owned());
    v
}

fn extract_with_gnu_tar(archive: &Path, dest: &Path) -> Result<()> {
    let out = Command::new("tar")
        .args(gnu_tar_args(archive, dest))
        .env("LC_ALL", "C")
        .stdin(std::process::Stdio::null())
        .output()
        .context("running GNU tar (is `tar` installed?)")?;
    if !out.status.success() {
        bail!(
            "GNU tar failed to extract {} ({}): {}; nothing was installed",
            archive.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_with(entries: &[(&str, tar::EntryType, Option<&str>)]) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().expect("tmp");
        let mut b = tar::Builder::new(f.reopen().expect("reopen"));
        for (name, kind, link) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*kind);
            h.set_mode(0o644);
            h.set_size(0);
            if let Some(l) = link {
                h.set_link_name(l).expect("link");
            }
            if *kind == tar::EntryType::Char {
                let major = if name.ends_with("sda") { 8 } else { 0 };
                h.set_device_major(major).expect("major");
                h.set_device_minor(0).expect("minor");
            }
            // set_path refuses '..'; write the raw name bytes instead.
            let bytes = name.as_bytes();
            h.as_old_mut().name[..bytes.len()].copy_from_slice(bytes);
            h.set_cksum();
            b.append(&h, io::empty()).expect("append");
        }
        b.finish().expect("finish");
        f
    }

    #[test]
    fn accepts_good_and_refuses_hostile() {
        use tar::EntryType as E;
        let ok = tar_with(&[
            ("docker/", E::Directory, None),
            ("docker/a", E::Regular, None),
            ("docker/b", E::Link, Some("docker/a")),
            ("docker/l", E::Symlink, Some("../../etc")),
            ("./docker/c", E::Char, None),
        ]);
        assert_eq!(check_storage_tar(ok.path(), "docker").expect("ok"), 5);
        for (entries, why) in [
            (vec![("/docker/a", E::Regular, None)], "absolute"),
            (vec![("docker/../x", E::Regular, None)], ".."),
            (vec![("storage/a", E::Regular, None)], "under docker/"),
            (vec![("etc/passwd", E::Regular, None)], "under docker/"),
            (
                vec![
                    ("docker/l", E::Symlink, Some("/etc")),
                    ("docker/l/passwd", E::Regular, None),
                ],
                "below a symlink",
            ),
            (
                vec![("docker/h", E::Link, Some("/etc/shadow"))],
                "hard link target",
            ),
            (
                vec![("docker/h", E::Link, Some("docker/later"))],
                "not an earlier entry",
            ),
            (vec![("docker/f", E::Fifo, None)], "not allowed"),
            (vec![("docker/sda", E::Char, None)], "whiteout"),
        ] {
            let t = tar_with(&entries);
            let err = format!(
                "{:#}",
                check_storage_tar(t.path(), "docker").expect_err("must fail")
            );
            assert!(err.contains(why), "{why}: {err}");
        }
    }

    #[test]
    fn gnu_tar_argv_keeps_everything() {
        let a = gnu_tar_args(Path::new("x:y.tar"), Path::new("/d"));
        for flag in [
            "--same-owner",
            "--numeric-owner",
            "--xattrs-include=*",
            "--force-local",
        ] {
            assert!(a.iter().any(|x| x == flag), "{flag}");
        }
    }
}
