//! Installing an engine storage tar (from `vdkr/vpdmn --storage FILE`) into a target root
//! filesystem: docker's `docker/…` entries become `<rootfs>/var/lib/docker`, podman's `storage/…`
//! entries `<rootfs>/var/lib/containers/storage`.
//!
//! Unlike upstream (`tar -xf … --no-same-owner`, W12), ownership, modes, xattrs (overlay2's
//! `trusted.overlay.opaque`), hard links and whiteout device nodes are kept: what the target's
//! engine needs to read its storage. That needs root, or a root emulation (fakeroot, Yocto's
//! pseudo); without euid 0 the install is refused before anything is touched.
//!
//! The extraction itself is GNU tar's (`--numeric-owner --same-owner -p`), not the tar crate's:
//! the tar crate cannot create device nodes (overlay whiteouts are char devices 0/0), and GNU tar
//! is what pseudo/fakeroot are tested with and what wrote the archive in the guest (sparse files,
//! PAX records). GNU tar is run with an argv list, never a shell string. The extended attributes
//! (file capabilities, `trusted.overlay.*`, `user.*`) are set by us afterwards, from the PAX
//! records the check read: under fakeroot (1.31) GNU tar's own `--xattrs` made fakeroot record a
//! mode without a file type for every file with an xattr ("weird file" to every later process of
//! the session), while an xattr set after extraction is recorded right.
//!
//! The archive comes from an untrusted guest, so it is checked completely with the tar crate
//! *before* GNU tar sees it ([`check_storage_tar`]): every name relative, without `..`, under the
//! expected top directory; no entry below an earlier symlink entry; hard links only to earlier
//! entries; no unknown entry types. Device nodes and fifos are image content (an image's `/dev`
//! entries, a service's fifo, overlay whiteouts as char 0/0) and are installed as they are, as
//! any rootfs build under root or pseudo creates them; what is refused is what could write
//! outside the storage directory, not what is merely unusual. GNU tar then extracts
//! into a fresh staging directory inside `<rootfs>/var/lib…`, and only a complete extraction is
//! renamed into place: a failure leaves the rootfs as it was.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::process::Command;

use vcontainer_oci::xattrs::Xattr;

use super::error::{refuse, Context, Result};
use super::spec::Runtime;

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
    refuse!(
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
        refuse!("target rootfs {} is not a directory", rootfs.display());
    }
    let checked = check_storage_tar(storage, top)?;
    let dest = rootfs.join(parent_rel).join(top);
    let replaced = match fs::symlink_metadata(&dest) {
        Ok(m) if m.file_type().is_symlink() || !m.is_dir() => refuse!(
            "{} exists and is not a directory; refusing to install {engine} storage over it",
            dest.display()
        ),
        Ok(_) => {
            let empty = fs::read_dir(&dest)
                .with_context(|| format!("reading {}", dest.display()))?
                .next()
                .is_none();
            if !empty && !opts.replace {
                refuse!(
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
    set_xattrs(staging.path(), &checked.xattrs)?;
    let extracted = staging.path().join(top);
    match fs::symlink_metadata(&extracted) {
        Ok(m) if m.is_dir() => {}
        _ => refuse!("{}: the archive has no {top}/ directory", storage.display()),
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
        entries: checked.entries,
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
            Ok(m) if m.file_type().is_symlink() => refuse!(
                "{} is a symlink in the target rootfs; refusing to install storage through it",
                cur.display()
            ),
            Ok(m) if m.is_dir() => {}
            Ok(_) => refuse!("{} exists and is not a directory", cur.display()),
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

/// `name` as normal components (leading `./` dropped), or None if absolute or with `..`. Names
/// are bytes: image content may have names that are not UTF-8.
fn normal_components(name: &[u8]) -> Option<Vec<Vec<u8>>> {
    use std::os::unix::ffi::OsStrExt;
    let mut out = Vec::new();
    for c in Path::new(std::ffi::OsStr::from_bytes(name)).components() {
        match c {
            Component::Normal(p) => out.push(p.as_bytes().to_vec()),
            Component::CurDir => {}
            _ => return None,
        }
    }
    Some(out)
}

/// What [`check_storage_tar`] learned of an archive it accepted.
#[derive(Debug, Default)]
pub struct CheckedTar {
    pub entries: u64,
    /// The entries carrying extended attributes (hard links left out: they share their target's
    /// inode), by their path in the archive.
    pub xattrs: Vec<(PathBuf, Vec<Xattr>)>,
}

/// Checks every entry of the storage tar at `path` (see the module comment). `top` is the
/// required first component (`docker` or `storage`). An entry's effective name is checked: the
/// PAX `path` record (which the tar crate applies) or GNU tar's sparse-file `GNU.sparse.name`
/// record, which GNU tar extracts under instead of the header's name.
pub fn check_storage_tar(path: &Path, top: &str) -> Result<CheckedTar> {
    let file = fs::File::open(path)
        .with_context(|| format!("opening the storage tar {}", path.display()))?;
    let mut archive = tar::Archive::new(io::BufReader::new(file));
    let mut seen: HashSet<Vec<u8>> = HashSet::new();
    let mut symlinks: HashSet<Vec<u8>> = HashSet::new();
    let mut checked = CheckedTar::default();
    let bad = |name: &[u8], why: &str| {
        super::BundlingError::Invalid(format!(
            "{}: refusing storage tar entry {:?}: {why}; nothing was installed",
            path.display(),
            String::from_utf8_lossy(name)
        ))
    };
    for entry in archive
        .entries()
        .with_context(|| format!("reading {}", path.display()))?
    {
        let mut entry = entry.with_context(|| format!("reading {}", path.display()))?;
        checked.entries += 1;
        let (sparse_name, xattrs) =
            pax_facts(&mut entry).with_context(|| format!("reading {}", path.display()))?;
        let name = sparse_name.unwrap_or_else(|| entry.path_bytes().into_owned());
        let parts = normal_components(&name).ok_or_else(|| bad(&name, "absolute or with '..'"))?;
        if parts.first().map(Vec::as_slice) != Some(top.as_bytes()) {
            return Err(bad(
                &name,
                &format!("every entry must be under {top}/ for this engine"),
            ));
        }
        // Nothing below a symlink of the archive: GNU tar would follow it.
        for n in 1..parts.len() {
            if symlinks.contains(&parts[..n].join(&b'/')) {
                return Err(bad(&name, "it lies below a symlink entry"));
            }
        }
        let joined = parts.join(&b'/');
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
                    .ok_or_else(|| bad(&name, "hard link without a target"))?;
                let tparts = normal_components(&target)
                    .ok_or_else(|| bad(&name, "hard link target absolute or with '..'"))?;
                let tjoined = tparts.join(&b'/');
                if tparts.first().map(Vec::as_slice) != Some(top.as_bytes())
                    || !seen.contains(&tjoined)
                {
                    return Err(bad(
                        &name,
                        &format!(
                            "hard link target {:?} is not an earlier entry",
                            String::from_utf8_lossy(&target)
                        ),
                    ));
                }
                if symlinks.contains(&tjoined) {
                    return Err(bad(&name, "hard link to a symlink entry"));
                }
            }
            // dockerd's probe of the backing filesystem: a block device it recreates at start;
            // it is left out of the install (upstream excluded it too).
            E::Block if joined == BACKING_FS_BLOCK_DEV.as_bytes() => {}
            E::Char | E::Block | E::Fifo => {}
            other => {
                return Err(bad(
                    &name,
                    &format!("entry type {other:?} is not allowed in engine storage"),
                ))
            }
        }
        if !xattrs.is_empty() && kind != E::Link {
            use std::os::unix::ffi::OsStrExt;
            let rel = PathBuf::from(std::ffi::OsStr::from_bytes(&joined));
            checked.xattrs.push((rel, xattrs));
        }
        seen.insert(joined);
    }
    if checked.entries == 0 {
        refuse!("{}: the storage tar is empty", path.display());
    }
    Ok(checked)
}

/// The entry's GNU sparse name (PAX `GNU.sparse.name`) and its extended attributes.
fn pax_facts<R: io::Read>(
    entry: &mut tar::Entry<'_, R>,
) -> io::Result<(Option<Vec<u8>>, Vec<Xattr>)> {
    let mut sparse_name = None;
    let mut xattrs = Vec::new();
    if let Some(pax) = entry.pax_extensions()? {
        for ext in pax {
            let ext = ext?;
            let key = ext.key_bytes();
            if key == b"GNU.sparse.name" {
                sparse_name = Some(ext.value_bytes().to_vec());
            } else if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                xattrs.push((name.to_vec(), ext.value_bytes().to_vec()));
            }
        }
    }
    Ok((sparse_name, xattrs))
}

/// Sets the extended attributes the archive recorded on what GNU tar extracted under `dir`
/// (not following symlinks: an xattr of a symlink entry is the link's own).
fn set_xattrs(dir: &Path, entries: &[(PathBuf, Vec<Xattr>)]) -> Result<()> {
    for (rel, xattrs) in entries {
        if rel == Path::new(BACKING_FS_BLOCK_DEV) {
            continue; // not extracted
        }
        let path = dir.join(rel);
        for (name, value) in xattrs {
            vcontainer_oci::xattrs::set(&path, name, value).with_context(|| {
                format!(
                    "setting the extended attribute {} of {}",
                    String::from_utf8_lossy(name),
                    path.display()
                )
            })?;
        }
    }
    Ok(())
}

/// Docker's backing-filesystem probe device in its storage (not installed: dockerd recreates it).
const BACKING_FS_BLOCK_DEV: &str = "docker/volumes/backingFsBlockDev";

/// GNU tar's argv to extract `archive` into `dest`, keeping owners, modes and devices (the
/// xattrs are `set_xattrs`' part).
pub fn gnu_tar_args(archive: &Path, dest: &Path) -> Vec<std::ffi::OsString> {
    let mut v: Vec<std::ffi::OsString> = [
        "--extract",
        "--force-local", // a ':' in the file name is not a remote host
        "--numeric-owner",
        "--same-owner",
        "--same-permissions",
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
        refuse!(
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

    /// A tar whose entry `header_name` carries the PAX records `records`.
    fn tar_with_pax(header_name: &[u8], records: &[(&[u8], &[u8])]) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().expect("tmp");
        let mut b = tar::Builder::new(f.reopen().expect("reopen"));
        let mut data = Vec::new();
        for (k, v) in records {
            vcontainer_oci::layer_tar::pax_record(&mut data, k, v);
        }
        let mut x = tar::Header::new_ustar();
        x.set_entry_type(tar::EntryType::XHeader);
        x.set_size(data.len() as u64);
        x.set_path("PaxHeaders/x").expect("path");
        x.set_cksum();
        b.append(&x, &data[..]).expect("pax");
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o4755);
        h.set_size(0);
        h.as_old_mut().name[..header_name.len()].copy_from_slice(header_name);
        h.set_cksum();
        b.append(&h, io::empty()).expect("append");
        b.finish().expect("finish");
        f
    }

    #[test]
    fn effective_names_are_checked_and_need_not_be_utf8() {
        let sparse_escape = tar_with_pax(
            b"docker/GNUSparseFile.1/x",
            &[
                (b"GNU.sparse.major", b"1"),
                (b"GNU.sparse.name", b"../../etc/x"),
            ],
        );
        let err = format!(
            "{:#}",
            check_storage_tar(sparse_escape.path(), "docker").expect_err("refused")
        );
        assert!(err.contains("../../etc/x") && err.contains(".."), "{err}");
        let sparse_elsewhere = tar_with_pax(
            b"docker/GNUSparseFile.1/x",
            &[(b"GNU.sparse.name", b"etc/x")],
        );
        assert!(check_storage_tar(sparse_elsewhere.path(), "docker").is_err());

        let latin1 = tar_with_pax(b"docker/caf\xe9", &[(b"SCHILY.xattr.user.a", b"1")]);
        let checked = check_storage_tar(latin1.path(), "docker").expect("a non-UTF-8 name");
        use std::os::unix::ffi::OsStrExt;
        assert_eq!(
            checked.xattrs,
            vec![(
                PathBuf::from(std::ffi::OsStr::from_bytes(b"docker/caf\xe9")),
                vec![(b"user.a".to_vec(), b"1".to_vec())]
            )]
        );
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
            ("docker/dev/sda", E::Char, None),
            ("docker/dev/loop0", E::Block, None),
            ("docker/run/fifo", E::Fifo, None),
        ]);
        assert_eq!(
            check_storage_tar(ok.path(), "docker").expect("ok").entries,
            8
        );
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
            (vec![("docker/v", E::new(b'V'), None)], "not allowed"),
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
            "--same-permissions",
            "--force-local",
        ] {
            assert!(a.iter().any(|x| x == flag), "{flag}");
        }
        assert!(!a.iter().any(|x| x == "--xattrs"), "xattrs are set by us");
    }
}
