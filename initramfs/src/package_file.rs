//! One file out of a Debian package for an architecture, e.g. a static busybox for a test image
//! of the guest's arch. Uses the same private apt setup and `.deb` cache as the image builder.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::apt::PrivateApt;
use crate::error::{BuildError, Result};
use crate::sources::Mirrors;
use crate::Arch;

/// The private apt setup for packages fetched one by one (test fixtures, kernels of other
/// suites, the host's docker CLI). Not the root filesystem's own package cache: that one must
/// hold only what the image is made of (its package list is read from there).
pub(crate) fn fetching_apt(arch: Arch, cache_dir: &Path, suite: &str) -> Result<PrivateApt> {
    let debarch = arch.debian();
    PrivateApt::create(
        &cache_dir.join("apt").join(format!("{suite}-{debarch}")),
        &cache_dir
            .join("debs")
            .join(format!("{suite}-{debarch}-fetched")),
        suite,
        debarch,
        &Mirrors::from_host()?,
    )
}

/// The newest `package` in `suite` for `arch` as a `.deb` in `cache_dir`'s package cache
/// (downloaded unless it is there already).
pub fn fetch_deb(
    arch: Arch,
    cache_dir: &Path,
    suite: &str,
    package: &str,
) -> Result<std::path::PathBuf> {
    let apt = fetching_apt(arch, cache_dir, suite)?;
    // The lists may be missing or stale; one update is enough to find the package.
    let stanza = match apt.show(package) {
        Ok(s) => s,
        Err(_) => {
            apt.update()?;
            apt.show(package)?
        }
    };
    apt.download(&stanza)
}

/// Copies `path_in_package` (e.g. `bin/busybox`) from the newest `package` in `suite` for `arch`
/// to `dest` (mode 0755), downloading the package into `cache_dir` unless it is there already.
pub fn fetch_package_file(
    arch: Arch,
    cache_dir: &Path,
    suite: &str,
    package: &str,
    path_in_package: &str,
    dest: &Path,
) -> Result<()> {
    let deb = fetch_deb(arch, cache_dir, suite, package)?;
    extract_file(&deb, path_in_package, dest)?;
    std::fs::set_permissions(dest, std::fs::Permissions::from_mode(0o755))
        .map_err(BuildError::io("chmod", dest))?;
    Ok(())
}

/// Copies `path_in_package` out of the `.deb` at `deb` to `dest`; an error naming the package if
/// it has no such file.
pub(crate) fn extract_file(deb: &Path, path_in_package: &str, dest: &Path) -> Result<()> {
    let mut found = false;
    crate::deb::for_each_file(deb, &mut |path, reader| {
        if path == path_in_package {
            let mut out = std::fs::File::create(dest).map_err(BuildError::io("creating", dest))?;
            std::io::copy(reader, &mut out).map_err(BuildError::io("writing", dest))?;
            found = true;
        }
        Ok(())
    })?;
    if !found {
        return Err(BuildError::Package {
            what: format!("extracting {path_in_package} from {}", deb.display()),
            detail: "the package has no such file".to_string(),
        });
    }
    Ok(())
}
