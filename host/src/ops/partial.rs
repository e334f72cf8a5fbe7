//! The file an output is written to until it is complete and verified. Unnamed where the file
//! system allows it (`O_TMPFILE`): a CLI killed mid-write by SIGKILL runs no cleanup, and an
//! unnamed file then simply vanishes with its last descriptor, where a named temporary file
//! would stay behind as litter. Elsewhere (file systems without `O_TMPFILE`) a hidden
//! `.NAME.partial-*` file, removed on every failure the process lives through.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use tempfile::NamedTempFile;

pub enum PartialOutput {
    Unnamed { file: File, parent: PathBuf },
    Named(NamedTempFile),
}

impl PartialOutput {
    /// A partial output for `dest`, in `dest`'s directory (so that completing it is a rename).
    pub fn create(dest: &Path) -> io::Result<PartialOutput> {
        let parent = match dest.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        match std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_TMPFILE)
            .mode(0o600)
            .open(&parent)
        {
            Ok(file) => Ok(PartialOutput::Unnamed { file, parent }),
            // EOPNOTSUPP (and EISDIR from kernels that predate O_TMPFILE): a named file instead.
            Err(e) if matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP | libc::EISDIR)) => {
                named(&parent, dest).map(PartialOutput::Named)
            }
            Err(e) => Err(e),
        }
    }

    pub fn file(&mut self) -> &mut File {
        match self {
            PartialOutput::Unnamed { file, .. } => file,
            PartialOutput::Named(t) => t.as_file_mut(),
        }
    }

    /// Puts the complete file at `dest`, replacing what was there: the unnamed file is linked
    /// under a hidden name and renamed over `dest` (a link cannot replace a file).
    pub fn persist(self, dest: &Path) -> io::Result<()> {
        match self {
            PartialOutput::Named(t) => t.persist(dest).map(drop).map_err(|e| e.error),
            PartialOutput::Unnamed { file, parent } => {
                let link = named(&parent, dest)?.into_temp_path();
                // The placeholder only reserved a unique name.
                std::fs::remove_file(&link)?;
                let proc_fd = PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()));
                let link_path: &Path = link.as_ref();
                nix::unistd::linkat(
                    nix::fcntl::AT_FDCWD,
                    proc_fd.as_path(),
                    nix::fcntl::AT_FDCWD,
                    link_path,
                    nix::fcntl::AtFlags::AT_SYMLINK_FOLLOW,
                )
                .map_err(io::Error::from)?;
                std::fs::rename(&link, dest)?;
                // The link's name is gone (renamed); nothing left for the guard to remove.
                let _ = link.keep();
                Ok(())
            }
        }
    }
}

fn named(parent: &Path, dest: &Path) -> io::Result<NamedTempFile> {
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "output".into());
    tempfile::Builder::new()
        .prefix(&format!(".{name}.partial-"))
        .tempfile_in(parent)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn an_unfinished_output_leaves_nothing_and_a_finished_one_replaces_the_old() {
        let dir = tempfile::tempdir().expect("tempdir");
        let dest = dir.path().join("out.tar");
        std::fs::write(&dest, b"old").expect("old");
        let mut p = PartialOutput::create(&dest).expect("create");
        assert!(
            matches!(p, PartialOutput::Unnamed { .. }),
            "tmp dirs support O_TMPFILE"
        );
        p.file().write_all(b"new").expect("write");
        let names = || {
            let mut v: Vec<String> = std::fs::read_dir(dir.path())
                .expect("read")
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            v.sort();
            v
        };
        assert_eq!(names(), vec!["out.tar"], "nothing visible while writing");
        p.persist(&dest).expect("persist");
        assert_eq!(std::fs::read(&dest).expect("read"), b"new");
        assert_eq!(names(), vec!["out.tar"]);

        let mut p = PartialOutput::create(&dir.path().join("second")).expect("create");
        p.file().write_all(b"x").expect("write");
        drop(p);
        assert_eq!(names(), vec!["out.tar"], "a dropped output leaves nothing");
    }

    #[test]
    fn the_named_fallback_persists_too() {
        let dir = tempfile::tempdir().expect("tempdir");
        let dest = dir.path().join("o");
        let mut p = PartialOutput::Named(named(dir.path(), &dest).expect("named"));
        p.file().write_all(b"data").expect("write");
        p.persist(&dest).expect("persist");
        assert_eq!(std::fs::read(&dest).expect("read"), b"data");
    }
}
