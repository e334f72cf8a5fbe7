//! The ext4 state disk that holds the guest engine's storage (`/var/lib/docker` or
//! `/var/lib/containers/storage`), made as an ordinary user: a sparse file formatted by mke2fs, no
//! loop device, no root.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use tempfile::TempDir;

use super::StateError;
use crate::util::path_lookup::{find_in_path, is_executable};

/// 16 GiB, sparse. Upstream wrote a fixed 2 GiB with dd: slow to create, 2 GiB of disk used by an
/// empty instance, and full after a few real images (overlay2 keeps compressed layers plus their
/// unpacked trees). A sparse file costs only the blocks the guest writes (an empty, freshly made
/// ext4 of this size takes a few MiB, measured in the tests below) and trims give space back (the
/// drive is attached with discard=unmap), so a generous logical size is nearly free. Hosts without
/// sparse-file support would pay in full; none of the usual filesystems are such.
pub const DEFAULT_STATE_DISK_SIZE: u64 = 16 << 30;

const FS_LABEL: &str = "vcontainer-state";

/// An existing state disk image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateDisk {
    path: PathBuf,
}

impl StateDisk {
    /// The disk at `path`, made (sparse, `size` bytes) if it does not exist yet.
    pub fn open_or_create(path: &Path, size: u64) -> Result<StateDisk, StateError> {
        if path.exists() {
            return Ok(StateDisk {
                path: path.to_owned(),
            });
        }
        Self::create(path, size)
    }

    /// Makes a new ext4 image at `path`. It is built under a temporary name next to `path` and
    /// renamed into place only after mke2fs succeeded, so an interrupted run never leaves a file
    /// that looks like a usable disk.
    pub fn create(path: &Path, size: u64) -> Result<StateDisk, StateError> {
        let mke2fs = find_mke2fs()?;
        let tmp = temp_name(path);
        let result = make_image(&mke2fs, &tmp, size).and_then(|()| {
            std::fs::rename(&tmp, path).map_err(|e| StateError::io("rename into place", path, e))
        });
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result.map(|()| StateDisk {
            path: path.to_owned(),
        })
    }

    /// A fresh disk in a temporary directory, deleted when the returned value is dropped: what a
    /// `--stateless` run uses.
    pub fn create_ephemeral(size: u64) -> Result<EphemeralStateDisk, StateError> {
        let dir = tempfile::Builder::new()
            .prefix("vcontainer-state-")
            .tempdir()
            .map_err(|e| StateError::io("create temporary directory", std::env::temp_dir(), e))?;
        let disk = Self::create(&dir.path().join("state.img"), size)?;
        Ok(EphemeralStateDisk { disk, _dir: dir })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Flushes the image to stable storage on the host. QEMU attaches it with cache=unsafe (guest
    /// flushes are not passed through), so call this after QEMU has exited.
    pub fn sync(&self) -> Result<(), StateError> {
        File::open(&self.path)
            .and_then(|f| f.sync_all())
            .map_err(|e| StateError::io("sync", &self.path, e))
    }
}

/// A state disk that lives only as long as this value.
#[derive(Debug)]
pub struct EphemeralStateDisk {
    disk: StateDisk,
    _dir: TempDir,
}

impl std::ops::Deref for EphemeralStateDisk {
    type Target = StateDisk;

    fn deref(&self) -> &StateDisk {
        &self.disk
    }
}

/// mke2fs from PATH, else /sbin or /usr/sbin, which ordinary users' PATH often lacks.
pub fn find_mke2fs() -> Result<PathBuf, StateError> {
    find_in_path("mke2fs")
        .or_else(|| {
            ["/usr/sbin/mke2fs", "/sbin/mke2fs"]
                .into_iter()
                .map(PathBuf::from)
                .find(|p| is_executable(p))
        })
        .ok_or(StateError::Mke2fsMissing)
}

fn temp_name(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(format!(".tmp-{}", std::process::id()));
    path.with_file_name(name)
}

fn make_image(mke2fs: &Path, path: &Path, size: u64) -> Result<(), StateError> {
    // set_len on a new file extends it without writing: sparse.
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| StateError::io("create", path, e))?;
    file.set_len(size)
        .map_err(|e| StateError::io("size", path, e))?;
    drop(file);

    let output = Command::new(mke2fs)
        .args(["-t", "ext4", "-q", "-F", "-m", "0", "-L", FS_LABEL])
        // Lazy init: leave inode tables and journal unwritten (the guest kernel zeroes them in the
        // background), so creation takes well under a second and the file stays sparse.
        // root_owner pins / to root:root whatever user runs mke2fs.
        .args([
            "-E",
            "lazy_itable_init=1,lazy_journal_init=1,root_owner=0:0",
        ])
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| StateError::io("run", mke2fs, e))?;
    if !output.status.success() {
        return Err(StateError::Mke2fsFailed {
            path: path.to_owned(),
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn creates_a_sparse_ext4_image() {
        if find_mke2fs().is_err() {
            eprintln!("skipped: no mke2fs");
            return;
        }
        let tmp = tempfile::tempdir().expect("tempdir");
        let path = tmp.path().join("docker-state.img");
        let disk = StateDisk::open_or_create(&path, DEFAULT_STATE_DISK_SIZE).expect("create");
        let meta = std::fs::metadata(disk.path()).expect("stat");
        assert_eq!(meta.len(), DEFAULT_STATE_DISK_SIZE);
        let allocated = meta.blocks() * 512;
        assert!(allocated < 64 << 20, "{allocated} bytes allocated");
        // ext4 superblock magic 0xEF53 at byte 1024 + 56.
        let mut sb = [0u8; 2];
        use std::os::unix::fs::FileExt;
        File::open(disk.path())
            .expect("open")
            .read_exact_at(&mut sb, 1024 + 56)
            .expect("read");
        assert_eq!(u16::from_le_bytes(sb), 0xEF53);
        // No temporary left behind; a second call reuses the disk.
        assert_eq!(std::fs::read_dir(tmp.path()).expect("ls").count(), 1);
        StateDisk::open_or_create(&path, 1).expect("reuse");
        assert_eq!(
            std::fs::metadata(&path).expect("stat").len(),
            DEFAULT_STATE_DISK_SIZE
        );
        disk.sync().expect("sync");
    }

    #[test]
    fn failed_mke2fs_leaves_nothing() {
        if find_mke2fs().is_err() {
            return;
        }
        let tmp = tempfile::tempdir().expect("tempdir");
        let path = tmp.path().join("state.img");
        // Far too small for ext4.
        let err = StateDisk::create(&path, 4096).expect_err("mke2fs must fail");
        assert!(matches!(err, StateError::Mke2fsFailed { .. }), "{err}");
        assert_eq!(std::fs::read_dir(tmp.path()).expect("ls").count(), 0);
    }

    #[test]
    fn ephemeral_disk_is_deleted_on_drop() {
        if find_mke2fs().is_err() {
            return;
        }
        let disk = StateDisk::create_ephemeral(64 << 20).expect("create");
        let path = disk.path().to_owned();
        assert!(path.exists());
        drop(disk);
        assert!(!path.exists());
        assert!(!path.parent().is_some_and(Path::exists));
    }
}
