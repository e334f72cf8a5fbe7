//! The engine CLI run natively on the host against the guest's daemon.
//!
//! Under TCG the Go docker CLI alone takes 0.5–0.7 s to start inside the guest; the same Debian
//! build starts in ~50 ms on the host. So for plain commands we run the host-arch `docker` of the
//! guest's package version, pointed at an [`ApiProxy`] that tunnels its API connections to the
//! guest's dockerd through the agent.

use std::ffi::OsStr;
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use vcontainer_initramfs::{Arch, ROOTFS_SUITE};

use crate::guest::boot_image::cache_dir;
use crate::ops::ApiProxy;
use crate::transport::Transport;
use crate::util::progress::Reporter;

/// The Debian package that ships `/usr/bin/docker`.
pub const DOCKER_CLI_PACKAGE: &str = "docker-cli";
const DOCKER_IN_PACKAGE: &str = "usr/bin/docker";

#[derive(Debug, thiserror::Error)]
pub enum HostCliError {
    #[error("no cache directory: set $VCONTAINER_CACHE_DIR, $XDG_CACHE_HOME or $HOME")]
    NoCacheDir,
    #[error("cannot start the engine API proxy: {0}")]
    Proxy(io::Error),
    #[error("cannot run {}: {source}", path.display())]
    Run { path: PathBuf, source: io::Error },
}

/// The host-arch docker CLI of the docker-cli version the `guest` image was built with, fetched
/// into the cache on first use (`<cache>/host-tools/docker-cli-<version>-<arch>/docker`) and
/// checked by running `--version` before it is kept. `Ok(None)` (with a debug message) when
/// there is none to have: the host arch has no guest image support, no guest image was built
/// (its `.deb` tells the version), or the fetch failed; callers then use the guest's CLI.
pub async fn docker_cli(
    guest: Arch,
    offline: bool,
    reporter: &Reporter,
) -> Result<Option<PathBuf>, HostCliError> {
    let Some(host) = Arch::host() else {
        reporter.debug(format!(
            "host docker CLI: no Debian packages for host arch {}",
            std::env::consts::ARCH
        ));
        return Ok(None);
    };
    let cache = cache_dir().map_err(|_| HostCliError::NoCacheDir)?;
    let r = reporter.clone();
    let found =
        tokio::task::spawn_blocking(move || ensure_docker_cli(&cache, guest, host, offline, &r))
            .await
            .map_err(|e| e.to_string())
            .and_then(|res| res);
    match found {
        Ok(path) => Ok(Some(path)),
        Err(e) => {
            reporter.debug(format!(
                "host docker CLI unavailable, using the guest's: {e}"
            ));
            Ok(None)
        }
    }
}

/// Runs `cli args…` with `DOCKER_HOST` on a fresh [`ApiProxy`] to the agent behind `transport`
/// and `DOCKER_CONFIG=config_dir` (so the user's own `~/.docker` is never read); stdin, stdout
/// and stderr are inherited. Returns its exit code (128 + signal if it was killed).
pub async fn run_host_docker(
    transport: Arc<dyn Transport>,
    cli: &Path,
    args: &[String],
    config_dir: &Path,
) -> Result<i32, HostCliError> {
    let proxy = ApiProxy::start(transport).map_err(HostCliError::Proxy)?;
    let mut host = OsStr::new("unix://").to_os_string();
    host.push(proxy.socket_path());
    let status = tokio::process::Command::new(cli)
        .args(args)
        .env("DOCKER_HOST", host)
        .env("DOCKER_CONFIG", config_dir)
        // DOCKER_HOST must win; TLS settings for some other daemon must not apply.
        .env_remove("DOCKER_CONTEXT")
        .env_remove("DOCKER_TLS")
        .env_remove("DOCKER_TLS_VERIFY")
        .env_remove("DOCKER_CERT_PATH")
        .kill_on_drop(true)
        .status()
        .await
        .map_err(|source| HostCliError::Run {
            path: cli.to_path_buf(),
            source,
        })?;
    drop(proxy);
    Ok(status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1))
}

/// The cached CLI, fetching it under a lock if it is not there yet.
fn ensure_docker_cli(
    cache: &Path,
    guest: Arch,
    host: Arch,
    offline: bool,
    reporter: &Reporter,
) -> Result<PathBuf, String> {
    let version = guest_package_version(cache, guest, DOCKER_CLI_PACKAGE)?;
    let tools = cache.join("host-tools");
    let dir = tools.join(format!(
        "{DOCKER_CLI_PACKAGE}-{}-{host}",
        version.replace(':', "%3a")
    ));
    let dest = dir.join("docker");
    if dest.is_file() {
        return Ok(dest);
    }
    let io_err = |what: &str, path: &Path| {
        let what = format!("{what} {}", path.display());
        move |e: io::Error| format!("{what}: {e}")
    };
    fs::create_dir_all(&dir).map_err(io_err("creating", &dir))?;
    let lock_path = tools.join(".lock");
    let lock_file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(io_err("opening", &lock_path))?;
    let _flock = nix::fcntl::Flock::lock(lock_file, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| io_err("locking", &lock_path)(io::Error::from(e)))?;
    if dest.is_file() {
        return Ok(dest);
    }
    reporter.step(format!(
        "fetching the {host} docker CLI {version} for use on the host (once)"
    ));
    let tmp = tempfile::Builder::new()
        .prefix(".docker-")
        .tempfile_in(&dir)
        .map_err(io_err("creating a temporary file in", &dir))?;
    let host_deb = cache
        .join("debs")
        .join(format!("{ROOTFS_SUITE}-{}", host.debian()))
        .join(deb_file_name(DOCKER_CLI_PACKAGE, &version, host.debian()));
    if host_deb.is_file() {
        extract_file(&host_deb, DOCKER_IN_PACKAGE, tmp.path())?;
    } else if offline {
        return Err(format!(
            "offline, and {} is not in the cache",
            host_deb.display()
        ));
    } else {
        vcontainer_initramfs::fetch_package_file(
            host,
            cache,
            ROOTFS_SUITE,
            &format!("{DOCKER_CLI_PACKAGE}={version}"),
            DOCKER_IN_PACKAGE,
            tmp.path(),
        )
        .map_err(|e| e.to_string())?;
    }
    // Close our write descriptor first: exec of a file open for writing fails (ETXTBSY).
    let tmp = tmp.into_temp_path();
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755)).map_err(io_err("chmod", &tmp))?;
    check_runs(&tmp)?;
    tmp.persist(&dest)
        .map_err(|e| io_err("storing", &dest)(e.error))?;
    Ok(dest)
}

/// The version of `package` the newest `guest` image build used: its `.deb` in the build's
/// download cache, which keeps exactly the files of the last rootfs build.
fn guest_package_version(cache: &Path, guest: Arch, package: &str) -> Result<String, String> {
    let debs = cache
        .join("debs")
        .join(format!("{ROOTFS_SUITE}-{}", guest.debian()));
    let entries = fs::read_dir(&debs).map_err(|e| format!("{}: {e}", debs.display()))?;
    let mut newest: Option<(std::time::SystemTime, String)> = None;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(version) = parse_deb_file_name(&name.to_string_lossy(), package, guest.debian())
        else {
            continue;
        };
        let mtime = entry
            .metadata()
            .and_then(|m| m.modified())
            .unwrap_or(std::time::UNIX_EPOCH);
        if newest.as_ref().is_none_or(|(t, _)| mtime > *t) {
            newest = Some((mtime, version));
        }
    }
    newest.map(|(_, v)| v).ok_or_else(|| {
        format!(
            "no {package} .deb in {} (the guest image is not built yet)",
            debs.display()
        )
    })
}

/// `apt-get download`'s file name (an epoch's ':' becomes `%3a`).
fn deb_file_name(package: &str, version: &str, debian_arch: &str) -> String {
    format!(
        "{package}_{}_{debian_arch}.deb",
        version.replace(':', "%3a")
    )
}

/// The version in `<package>_<version>_<arch>.deb`, if `name` is that package's file.
fn parse_deb_file_name(name: &str, package: &str, debian_arch: &str) -> Option<String> {
    let rest = name.strip_prefix(package)?.strip_prefix('_')?;
    let version = rest.strip_suffix(".deb")?.strip_suffix(debian_arch)?;
    let version = version.strip_suffix('_')?;
    (!version.is_empty() && !version.contains('_')).then(|| version.replace("%3a", ":"))
}

/// Copies one regular file out of a `.deb` (`dpkg-deb --fsys-tarfile`, any data.tar compression).
fn extract_file(deb: &Path, path_in_package: &str, dest: &Path) -> Result<(), String> {
    let mut child = Command::new("dpkg-deb")
        .arg("--fsys-tarfile")
        .arg(deb)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("running dpkg-deb: {e}"))?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| "dpkg-deb gave no stdout".to_string())?;
    let found = copy_from_tar(stdout, path_in_package, dest);
    // Finding the file early leaves the rest unread: dpkg-deb may die of SIGPIPE.
    let _ = child.kill();
    let _ = child.wait();
    match found {
        Ok(true) => Ok(()),
        Ok(false) => Err(format!("{}: no {path_in_package} inside", deb.display())),
        Err(e) => Err(format!("reading {}: {e}", deb.display())),
    }
}

fn copy_from_tar(tar: impl Read, path_in_package: &str, dest: &Path) -> io::Result<bool> {
    let mut archive = tar::Archive::new(tar);
    for entry in archive.entries()? {
        let mut entry = entry?;
        if entry.header().entry_type() != tar::EntryType::Regular {
            continue;
        }
        let path = entry.path()?;
        let path = path.to_string_lossy();
        if path.trim_start_matches("./") == path_in_package {
            let mut out = fs::File::create(dest)?;
            io::copy(&mut entry, &mut out)?;
            out.sync_all()?;
            return Ok(true);
        }
    }
    Ok(false)
}

/// `docker --version` must run (right arch, loader and libc present) and say what it is.
fn check_runs(cli: &Path) -> Result<(), String> {
    let mut attempt = 0;
    let out = loop {
        match Command::new(cli)
            .arg("--version")
            .stdin(Stdio::null())
            .output()
        {
            // Another thread's fork may still hold the descriptor we wrote the file with
            // until its exec closes it: a short, transient race.
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && attempt < 20 => {
                attempt += 1;
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(e) => return Err(format!("running {} --version: {e}", cli.display())),
            Ok(out) => break out,
        }
    };
    let text = String::from_utf8_lossy(&out.stdout);
    if out.status.success() && text.starts_with("Docker version") {
        Ok(())
    } else {
        Err(format!(
            "{} --version failed ({}): {}{}",
            cli.display(),
            out.status,
            text.trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deb_file_names_round_trip() {
        let name = deb_file_name("docker-cli", "1:26.1.5+dfsg1-9+b1", "amd64");
        assert_eq!(name, "docker-cli_1%3a26.1.5+dfsg1-9+b1_amd64.deb");
        assert_eq!(
            parse_deb_file_name(&name, "docker-cli", "amd64").as_deref(),
            Some("1:26.1.5+dfsg1-9+b1")
        );
        assert_eq!(
            parse_deb_file_name("docker-cli_26.1.5_arm64.deb", "docker-cli", "amd64"),
            None
        );
        assert_eq!(
            parse_deb_file_name("docker-cli-extra_1_amd64.deb", "docker-cli", "amd64"),
            None
        );
        assert_eq!(
            parse_deb_file_name("docker.io_26.1.5_amd64.deb", "docker-cli", "amd64"),
            None
        );
    }

    #[test]
    fn guest_version_comes_from_the_guest_debs() {
        let cache = tempfile::tempdir().expect("tempdir");
        let debs = cache.path().join("debs/trixie-arm64");
        fs::create_dir_all(&debs).expect("mkdir");
        for f in [
            "docker.io_26.1.5+dfsg1-9_arm64.deb",
            "docker-cli_26.1.5+dfsg1-9+deb13u1+b1_arm64.deb",
        ] {
            fs::write(debs.join(f), b"").expect("write");
        }
        assert_eq!(
            guest_package_version(cache.path(), Arch::Aarch64, "docker-cli").expect("version"),
            "26.1.5+dfsg1-9+deb13u1+b1"
        );
        assert!(guest_package_version(cache.path(), Arch::X86_64, "docker-cli").is_err());
    }
}
