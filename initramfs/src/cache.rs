//! The image cache: content keys, the per-arch build lock, and atomic publication.
//!
//! Layout under `<cache_dir>`:
//! ```text
//! apt/<suite>-<debarch>/            private apt state (apt.rs)
//! debs/<suite>-<debarch>/           downloaded .deb files
//! images/<arch>/.lock               flock held while building
//! images/<arch>/current-kernel      key of the kernel last resolved from the mirror
//! images/<arch>/kernel-<key>/       vmlinuz, modules/…, kernel.json
//! images/<arch>/rootfs-<key>/       rootfs.sqfs, mmdebstrap.log
//! images/<arch>/initramfs-<key>/    initramfs.cpio
//! images/<arch>/image-<key>/        manifest.json (the three keys and the artifacts' sha256)
//! ```
//! Each part has its own key so a new agent only rebuilds the initramfs. Parts are built in a
//! `*.tmp` sibling and renamed into place, so a killed build never leaves a part that looks done.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{BuildError, Result};

/// Bump when the builder's output changes for the same inputs, so old caches are not reused.
pub const BUILDER_VERSION: &str = "2";

/// A sha256 over named inputs, as lowercase hex. Each `(name, value)` is written as
/// `name=value\n` with the value's length first, so no two input lists collide.
pub fn key(parts: &[(&str, &str)]) -> String {
    let mut h = Sha256::new();
    for (name, value) in parts {
        h.update(format!("{name}={}:", value.len()).as_bytes());
        h.update(value.as_bytes());
        h.update(b"\n");
    }
    hex::encode(h.finalize())
}

/// Directory name of a part: `<kind>-<first 16 hex digits of key>`.
pub fn part_dir(images: &Path, kind: &str, key: &str) -> PathBuf {
    images.join(format!("{kind}-{}", &key[..16.min(key.len())]))
}

pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f = File::open(path).map_err(BuildError::io("hashing", path))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(BuildError::io("hashing", path))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// The sha256 of a file inside a published (immutable) part, remembered in `<file>.sha256` so
/// writing a manifest for a new agent does not re-read the 170 MB rootfs.
pub fn part_file_sha256(path: &Path) -> Result<String> {
    let mut sidecar = path.as_os_str().to_owned();
    sidecar.push(".sha256");
    let sidecar = PathBuf::from(sidecar);
    if let Ok(text) = std::fs::read_to_string(&sidecar) {
        let text = text.trim();
        if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(text.to_string());
        }
    }
    let digest = sha256_file(path)?;
    // Best effort: without the sidecar the next manifest just hashes again.
    let _ = write_atomic(&sidecar, format!("{digest}\n").as_bytes());
    Ok(digest)
}

/// An exclusive flock on `images/<arch>/.lock`, released on drop.
pub struct BuildLock {
    _lock: nix::fcntl::Flock<File>,
}

impl BuildLock {
    /// Takes the lock, calling `waiting` once if another process holds it.
    pub fn acquire(dir: &Path, waiting: &mut dyn FnMut()) -> Result<BuildLock> {
        use nix::fcntl::{Flock, FlockArg};
        std::fs::create_dir_all(dir).map_err(BuildError::io("creating image cache dir", dir))?;
        let path = dir.join(".lock");
        let open = || {
            File::options()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .map_err(BuildError::io("opening build lock", &path))
        };
        let lock_err =
            |e: nix::errno::Errno| BuildError::io("locking", &path)(std::io::Error::from(e));
        match Flock::lock(open()?, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => Ok(BuildLock { _lock: lock }),
            Err((file, nix::errno::Errno::EWOULDBLOCK)) => {
                waiting();
                let lock =
                    Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, e)| lock_err(e))?;
                Ok(BuildLock { _lock: lock })
            }
            Err((_, e)) => Err(lock_err(e)),
        }
    }
}

/// A part being built: a fresh `<final>.tmp` directory, renamed to `<final>` by `publish`.
pub struct Staging {
    pub tmp: PathBuf,
    pub target: PathBuf,
}

impl Staging {
    /// Removes any leftover of an interrupted build and creates the temp dir.
    pub fn new(target: &Path) -> Result<Staging> {
        let tmp = target.with_extension("tmp");
        remove_tree(&tmp)?;
        std::fs::create_dir_all(&tmp).map_err(BuildError::io("creating build dir", &tmp))?;
        Ok(Staging {
            tmp,
            target: target.to_path_buf(),
        })
    }

    /// Atomically makes the part visible.
    pub fn publish(self) -> Result<PathBuf> {
        remove_tree(&self.target)?;
        std::fs::rename(&self.tmp, &self.target)
            .map_err(BuildError::io("publishing build dir", &self.target))?;
        Ok(self.target)
    }
}

/// `rm -rf`, also for trees with read-only directories.
pub fn remove_tree(path: &Path) -> Result<()> {
    if std::fs::symlink_metadata(path).is_err() {
        return Ok(());
    }
    if std::fs::remove_dir_all(path).is_ok() {
        return Ok(());
    }
    make_writable(path);
    std::fs::remove_dir_all(path).map_err(BuildError::io("removing old build dir", path))
}

fn make_writable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return;
    };
    if meta.is_dir() {
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700));
        if let Ok(entries) = std::fs::read_dir(path) {
            for e in entries.flatten() {
                make_writable(&e.path());
            }
        }
    }
}

/// Writes `data` to `path` through a temp file and a rename.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, data).map_err(BuildError::io("writing", &tmp))?;
    std::fs::rename(&tmp, path).map_err(BuildError::io("renaming into place", path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_stable_and_unambiguous() {
        // Pinned: a change here invalidates every user's cache, so it must be deliberate.
        assert_eq!(
            key(&[("builder", "1"), ("component", "rootfs")]),
            key(&[("builder", "1"), ("component", "rootfs")])
        );
        assert_eq!(
            key(&[]),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_ne!(key(&[("a", "b\nc=d")]), key(&[("a", "b"), ("c", "d")]));
        assert_ne!(key(&[("a", "1")]), key(&[("a", "2")]));
        assert_eq!(key(&[("a", "1")]).len(), 64);
    }

    #[test]
    fn staging_publishes_atomically_and_cleans_leftovers() {
        let dir = tempfile::tempdir().expect("tempdir");
        let target = dir.path().join("rootfs-0123");
        let s = Staging::new(&target).expect("stage");
        std::fs::write(s.tmp.join("f"), b"x").expect("write");
        assert!(!target.exists());
        // an interrupted build leaves only the .tmp dir; a new Staging removes it
        let s2 = Staging::new(&target).expect("stage again");
        assert!(!s2.tmp.join("f").exists());
        std::fs::write(s2.tmp.join("g"), b"y").expect("write");
        let done = s2.publish().expect("publish");
        assert!(done.join("g").is_file());
        assert!(!dir.path().join("rootfs-0123.tmp").exists());
    }

    #[test]
    fn lock_is_exclusive_across_handles() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = BuildLock::acquire(dir.path(), &mut || panic!("must not wait")).expect("lock");
        let path = dir.path().to_path_buf();
        let waited = std::thread::spawn(move || {
            let mut waited = false;
            let _second = BuildLock::acquire(&path, &mut || waited = true).expect("lock");
            waited
        });
        std::thread::sleep(std::time::Duration::from_millis(100));
        drop(first);
        assert!(waited.join().expect("thread"));
    }
}
