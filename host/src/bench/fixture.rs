//! Small OCI image layouts for tests and benchmarks (no registry is reachable, so they make their
//! own images): one uncompressed layer holding a static busybox, a few applet links and optional
//! extra files (e.g. a large random file to measure transfers).

use std::fs;
use std::io;
use std::path::Path;

pub use vcontainer_oci::fixture::{write_busybox_layout, write_layout_with_files};

/// Incompressible test data without a random-number dependency (xorshift64*), the same bytes
/// every time: benchmark payloads and layers that take their full size everywhere.
pub fn pseudo_random(len: usize) -> Vec<u8> {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        out.extend_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A static busybox for `arch` (Debian bookworm's busybox-static), cached in `cache_dir`.
/// Safe to call from parallel tests: one fetch at a time per process (a mutex) and per machine
/// (an flock), because the private apt state cannot be updated concurrently.
pub fn busybox_for(
    arch: vcontainer_initramfs::Arch,
    cache_dir: &Path,
) -> Result<std::path::PathBuf, vcontainer_initramfs::BuildError> {
    static FETCH: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let io_err = |what: &str, path: &Path| {
        let what = what.to_string();
        let path = path.to_path_buf();
        move |source| vcontainer_initramfs::BuildError::Io { what, path, source }
    };
    let dir = cache_dir.join("test-fixtures");
    let dest = dir.join(format!("busybox-{arch}"));
    let _guard = FETCH.lock().unwrap_or_else(|p| p.into_inner());
    fs::create_dir_all(&dir).map_err(io_err("creating the fixture cache", &dir))?;
    let lock_path = dir.join(".lock");
    let lock_file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(io_err("opening", &lock_path))?;
    let _flock = nix::fcntl::Flock::lock(lock_file, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| io_err("locking", &lock_path)(io::Error::from(e)))?;
    if !dest.is_file() {
        let tmp = tempfile::Builder::new()
            .prefix(".busybox-")
            .tempfile_in(&dir)
            .map_err(io_err("creating a temporary file in", &dir))?;
        vcontainer_initramfs::fetch_package_file(
            arch,
            cache_dir,
            "bookworm",
            "busybox-static",
            "bin/busybox",
            tmp.path(),
        )?;
        tmp.persist(&dest)
            .map_err(|e| io_err("storing busybox as", &dest)(e.error))?;
    }
    Ok(dest)
}

/// A Debian root filesystem at `dest` made of `packages` (bookworm/trixie `.deb`s for `arch`,
/// fetched into `cache_dir` like the guest image's), with a real dpkg database
/// (`var/lib/dpkg/status` and `info/<pkg>.list`), as `dpkg -i` would leave it: the input the OCI
/// builder's `packages` layers read. Unpacked with `dpkg-deb --fsys-tarfile` (an argv, no shell)
/// and the tar crate. Returns the bytes of file content written.
pub fn debian_rootfs(
    arch: vcontainer_initramfs::Arch,
    cache_dir: &Path,
    suite: &str,
    packages: &[&str],
    dest: &Path,
) -> io::Result<u64> {
    use std::process::{Command, Stdio};
    let info = dest.join("var/lib/dpkg/info");
    fs::create_dir_all(&info)?;
    let mut status = String::new();
    let mut bytes = 0u64;
    for pkg in packages {
        let deb = vcontainer_initramfs::fetch_deb(arch, cache_dir, suite, pkg)
            .map_err(|e| io::Error::other(format!("{pkg}: {e}")))?;
        let fields = Command::new("dpkg-deb")
            .arg("-f")
            .arg(&deb)
            .args(["Package", "Version", "Architecture"])
            .output()?;
        if !fields.status.success() {
            return Err(io::Error::other(format!(
                "dpkg-deb -f {}: failed",
                deb.display()
            )));
        }
        status.push_str(&String::from_utf8_lossy(&fields.stdout));
        status.push_str("Status: install ok installed\n\n");
        let mut child = Command::new("dpkg-deb")
            .arg("--fsys-tarfile")
            .arg(&deb)
            .stdout(Stdio::piped())
            .spawn()?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| io::Error::other("no stdout"))?;
        let mut list = String::new();
        let mut archive = tar::Archive::new(stdout);
        archive.set_preserve_permissions(true);
        archive.set_overwrite(true);
        for entry in archive.entries()? {
            let mut entry = entry?;
            let path = entry.path()?.into_owned();
            let rel = path
                .to_string_lossy()
                .trim_start_matches("./")
                .trim_end_matches('/')
                .to_string();
            list.push_str(if rel.is_empty() { "/." } else { "/" });
            list.push_str(&rel);
            list.push('\n');
            bytes += entry.header().size().unwrap_or(0);
            entry.unpack_in(dest)?;
        }
        if !child.wait()?.success() {
            return Err(io::Error::other(format!(
                "dpkg-deb --fsys-tarfile {}: failed",
                deb.display()
            )));
        }
        let name = pkg.to_string();
        fs::write(info.join(format!("{name}.list")), list)?;
    }
    fs::write(dest.join("var/lib/dpkg/status"), status)?;
    Ok(bytes)
}
