//! Small filesystem helpers shared by the boot stages and the operations.

use std::fs;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::mount::{mount, MsFlags};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum FsError {
    #[error("mount {fstype} {source_dev} on {target}: {errno}")]
    Mount {
        fstype: String,
        source_dev: String,
        target: String,
        errno: Errno,
    },
    #[error("{path}: {source}")]
    Io { path: String, source: io::Error },
    #[error("{path} did not appear within {waited_ms} ms")]
    Timeout { path: String, waited_ms: u128 },
}

pub fn io_err(path: &Path) -> impl FnOnce(io::Error) -> FsError + '_ {
    move |source| FsError::Io {
        path: path.display().to_string(),
        source,
    }
}

pub fn mkdir_p(path: &Path) -> Result<(), FsError> {
    fs::create_dir_all(path).map_err(io_err(path))
}

/// Creates `target` and mounts `fstype` there.
pub fn mount_fs(
    source: &str,
    target: &Path,
    fstype: &str,
    flags: MsFlags,
    data: Option<&str>,
) -> Result<(), FsError> {
    mkdir_p(target)?;
    mount(Some(source), target, Some(fstype), flags, data).map_err(|errno| FsError::Mount {
        fstype: fstype.into(),
        source_dev: source.into(),
        target: target.display().to_string(),
        errno,
    })
}

/// Moves or binds an existing mount (`MS_MOVE`, `MS_BIND`), creating the target directory.
pub fn mount_at(source: &Path, target: &Path, flags: MsFlags) -> Result<(), FsError> {
    mkdir_p(target)?;
    mount(Some(source), target, None::<&str>, flags, None::<&str>).map_err(|errno| FsError::Mount {
        fstype: format!("{flags:?}"),
        source_dev: source.display().to_string(),
        target: target.display().to_string(),
        errno,
    })
}

/// Polls for a device node: there is no udev in the guest, devtmpfs creates the node when the
/// driver has probed the disk, usually within milliseconds of the module load.
pub fn wait_for_path(path: &Path, deadline: Duration) -> Result<u128, FsError> {
    let start = Instant::now();
    loop {
        if path.exists() {
            return Ok(start.elapsed().as_millis());
        }
        if start.elapsed() > deadline {
            return Err(FsError::Timeout {
                path: path.display().to_string(),
                waited_ms: start.elapsed().as_millis(),
            });
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Removes everything inside `dir` (not `dir` itself, which may be a mount point), without
/// descending into other filesystems mounted below it.
pub fn remove_dir_contents(dir: &Path) -> io::Result<()> {
    let dev = fs::symlink_metadata(dir)?.dev();
    for entry in fs::read_dir(dir)? {
        remove_tree_on_dev(&entry?.path(), dev)?;
    }
    Ok(())
}

/// Removes `path` recursively, leaving anything on a device other than `dev` (mount points) alone.
pub fn remove_tree_on_dev(path: &Path, dev: u64) -> io::Result<()> {
    let meta = fs::symlink_metadata(path)?;
    if meta.dev() != dev {
        return Ok(());
    }
    if meta.is_dir() {
        for entry in fs::read_dir(path)? {
            remove_tree_on_dev(&entry?.path(), dev)?;
        }
        match fs::remove_dir(path) {
            // A mount point below keeps the directory busy or non-empty: leave it.
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::ENOTEMPTY) => Ok(()),
            other => other,
        }
    } else {
        fs::remove_file(path)
    }
}

/// The last `max` bytes of a log file, for error messages.
pub fn file_tail(path: &Path, max: u64) -> String {
    let Ok(mut file) = fs::File::open(path) else {
        return format!("(no log at {})", path.display());
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = file.seek(SeekFrom::Start(len.saturating_sub(max)));
    let mut buf = Vec::new();
    let _ = file.take(max).read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

/// Keeps the last `max` bytes of what is appended: bounded capture of a child's stderr.
#[derive(Debug, Default)]
pub struct TailBuffer {
    buf: Vec<u8>,
    max: usize,
}

impl TailBuffer {
    pub fn new(max: usize) -> Self {
        Self {
            buf: Vec::new(),
            max,
        }
    }

    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
        if self.buf.len() > self.max {
            let cut = self.buf.len() - self.max;
            self.buf.drain(..cut);
        }
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.buf).trim_end().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_buffer_keeps_the_end() {
        let mut t = TailBuffer::new(6);
        t.push(b"hello ");
        t.push(b"world\n");
        assert_eq!(t.text(), "world");
    }

    #[test]
    fn remove_contents_keeps_dir() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::create_dir_all(dir.path().join("a/b")).expect("mkdir");
        fs::write(dir.path().join("a/b/f"), b"x").expect("write");
        fs::write(dir.path().join("g"), b"y").expect("write");
        std::os::unix::fs::symlink("/etc", dir.path().join("l")).expect("symlink");
        remove_dir_contents(dir.path()).expect("remove");
        assert!(dir.path().exists());
        assert_eq!(fs::read_dir(dir.path()).expect("read").count(), 0);
        assert!(Path::new("/etc").exists());
    }

    #[test]
    fn log_tail() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("log");
        fs::write(&p, b"0123456789").expect("write");
        assert_eq!(file_tail(&p, 4), "6789");
        assert!(file_tail(&dir.path().join("none"), 4).contains("no log"));
    }
}
