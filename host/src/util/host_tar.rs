//! Tar archives on the host: packing a host path into a stream, and unpacking an archive that came
//! from the guest. The guest is untrusted, so unpacking never writes outside its destination: no
//! absolute names, no `..`, nothing written through a symlink (every parent is checked with
//! `symlink_metadata`, symlink entries are created as symlinks only), hard links only to files
//! unpacked earlier, no devices or fifos, no setuid bits, no ownership changes, and caps on the
//! total size and the number of entries.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, SystemTime};

use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::runtime::Handle;
use tokio::task::JoinHandle;

/// Caps for one archive. The defaults allow what the state disk can hold.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Sum of the declared sizes of all entries.
    pub max_bytes: u64,
    pub max_entries: u64,
}

/// What an unpack did.
#[derive(Debug, Default, Clone)]
pub struct UnpackReport {
    pub entries: u64,
    pub bytes: u64,
    /// Mode of the archive's `./` entry, if it had one (the destination's own mode).
    pub root_mode: Option<u32>,
    /// Entries that were skipped (devices, fifos, unknown types), one line each.
    pub warnings: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum TarError {
    #[error("archive entry {0:?} is not a safe relative path (absolute, or with '..')")]
    UnsafeName(String),
    #[error("archive entry {name:?} would be written through the symlink {link:?}")]
    ThroughSymlink { name: String, link: String },
    #[error("archive entry {name:?}: {parent:?} is not a directory")]
    NotADirectory { name: String, parent: String },
    #[error("archive entry {0:?} would replace a directory with a non-directory")]
    ReplacesDirectory(String),
    #[error("hard link {name:?} -> {target:?} does not name a regular file unpacked before it")]
    BadHardLink { name: String, target: String },
    #[error("symlink entry {0:?} has no target")]
    NoLinkTarget(String),
    #[error("archive is larger than the limit of {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("archive has more than the limit of {limit} entries")]
    TooManyEntries { limit: u64 },
    #[error("{context}: {source}")]
    Io { context: String, source: io::Error },
}

fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> TarError {
    let context = context.into();
    move |source| TarError::Io { context, source }
}

/// `name` as a relative path of normal components (`./` prefixes dropped); anything absolute or
/// with `..` is refused. An empty result is the archive root (`./`).
pub fn safe_relative(name: &Path) -> Result<PathBuf, TarError> {
    let mut out = PathBuf::new();
    for c in name.components() {
        match c {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => {
                return Err(TarError::UnsafeName(name.display().to_string()))
            }
        }
    }
    Ok(out)
}

/// Creates the missing parents of `dest/rel` (as plain directories) and returns `dest/rel`.
/// Refuses a parent that is a symlink or not a directory: nothing is written through a link.
fn prepare_parents(dest: &Path, rel: &Path) -> Result<PathBuf, TarError> {
    let name = rel.display().to_string();
    let mut cur = dest.to_path_buf();
    let parts: Vec<Component<'_>> = rel.components().collect();
    for part in parts.iter().take(parts.len().saturating_sub(1)) {
        cur.push(part);
        match fs::symlink_metadata(&cur) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(TarError::ThroughSymlink {
                    name,
                    link: cur.display().to_string(),
                })
            }
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(TarError::NotADirectory {
                    name,
                    parent: cur.display().to_string(),
                })
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir(&cur).map_err(io_err(format!("creating {}", cur.display())))?
            }
            Err(e) => return Err(io_err(format!("inspecting {}", cur.display()))(e)),
        }
    }
    Ok(dest.join(rel))
}

/// Makes room for a non-directory entry at `target`: an earlier file or symlink of the same name is
/// removed (the link itself, never what it points to); a directory is refused.
fn clear_target(target: &Path, name: &str) -> Result<(), TarError> {
    match fs::symlink_metadata(target) {
        Ok(m) if m.is_dir() => Err(TarError::ReplacesDirectory(name.to_string())),
        Ok(_) => fs::remove_file(target).map_err(io_err(format!("replacing {}", target.display()))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err(format!("inspecting {}", target.display()))(e)),
    }
}

fn mtime_of(header: &tar::Header) -> Option<SystemTime> {
    let secs = header.mtime().ok()?;
    SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(secs))
}

/// Permission bits kept from an archive: no setuid, setgid or sticky bits.
const MODE_MASK: u32 = 0o777;

/// Unpacks the archive read from `reader` into the existing directory `dest` (see the module
/// comment for what is refused). On error, `dest` holds a partial tree: unpack into a temporary
/// directory and move the result into place only on success.
pub fn unpack_safely<R: Read>(
    reader: R,
    dest: &Path,
    limits: &Limits,
) -> Result<UnpackReport, TarError> {
    let mut report = UnpackReport::default();
    let mut dirs: Vec<(PathBuf, u32, Option<SystemTime>)> = Vec::new();
    let mut archive = tar::Archive::new(reader);
    let entries = archive.entries().map_err(io_err("reading the archive"))?;
    for entry in entries {
        let mut entry = entry.map_err(io_err("reading the archive"))?;
        report.entries += 1;
        if report.entries > limits.max_entries {
            return Err(TarError::TooManyEntries {
                limit: limits.max_entries,
            });
        }
        let raw = entry
            .path()
            .map_err(io_err("reading an entry name"))?
            .into_owned();
        let name = raw.display().to_string();
        let kind = entry.header().entry_type();
        let mode = entry.header().mode().unwrap_or(0o644) & MODE_MASK;
        let mtime = mtime_of(entry.header());
        let rel = safe_relative(&raw)?;
        let declared = entry.size();
        if report.bytes.saturating_add(declared) > limits.max_bytes {
            return Err(TarError::TooLarge {
                limit: limits.max_bytes,
            });
        }
        if rel.as_os_str().is_empty() {
            if kind.is_dir() {
                report.root_mode = Some(mode);
            }
            continue;
        }
        match kind {
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let target = prepare_parents(dest, &rel)?;
                clear_target(&target, &name)?;
                let ctx = || format!("writing {}", target.display());
                let mut file = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(&target)
                    .map_err(io_err(ctx()))?;
                let n =
                    io::copy(&mut (&mut entry).take(declared), &mut file).map_err(io_err(ctx()))?;
                report.bytes += n;
                file.set_permissions(fs::Permissions::from_mode(mode))
                    .map_err(io_err(ctx()))?;
                if let Some(t) = mtime {
                    file.set_modified(t).map_err(io_err(ctx()))?;
                }
            }
            tar::EntryType::Directory => {
                let target = prepare_parents(dest, &rel)?;
                match fs::symlink_metadata(&target) {
                    Ok(m) if m.is_dir() => {}
                    Ok(_) => {
                        fs::remove_file(&target)
                            .map_err(io_err(format!("replacing {}", target.display())))?;
                        fs::create_dir(&target)
                            .map_err(io_err(format!("creating {}", target.display())))?;
                    }
                    Err(_) => fs::create_dir(&target)
                        .map_err(io_err(format!("creating {}", target.display())))?,
                }
                dirs.push((target, mode, mtime));
            }
            tar::EntryType::Symlink => {
                let link = entry
                    .link_name()
                    .map_err(io_err(format!("reading the target of {name}")))?
                    .ok_or_else(|| TarError::NoLinkTarget(name.clone()))?
                    .into_owned();
                let target = prepare_parents(dest, &rel)?;
                clear_target(&target, &name)?;
                std::os::unix::fs::symlink(&link, &target)
                    .map_err(io_err(format!("creating the symlink {}", target.display())))?;
            }
            tar::EntryType::Link => {
                let link = entry
                    .link_name()
                    .map_err(io_err(format!("reading the target of {name}")))?
                    .ok_or_else(|| TarError::NoLinkTarget(name.clone()))?
                    .into_owned();
                let bad = || TarError::BadHardLink {
                    name: name.clone(),
                    target: link.display().to_string(),
                };
                let link_rel = safe_relative(&link).map_err(|_| bad())?;
                if link_rel.as_os_str().is_empty() {
                    return Err(bad());
                }
                // The link's source must be a regular file reached without any symlink.
                let source = prepare_parents(dest, &link_rel).map_err(|_| bad())?;
                match fs::symlink_metadata(&source) {
                    Ok(m) if m.file_type().is_file() => {}
                    _ => return Err(bad()),
                }
                let target = prepare_parents(dest, &rel)?;
                clear_target(&target, &name)?;
                fs::hard_link(&source, &target).map_err(io_err(format!(
                    "creating the hard link {}",
                    target.display()
                )))?;
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                report.warnings.push(format!(
                    "skipped {name}: device or fifo entries are not unpacked"
                ));
            }
            tar::EntryType::XGlobalHeader
            | tar::EntryType::XHeader
            | tar::EntryType::GNULongName
            | tar::EntryType::GNULongLink => {}
            other => {
                report
                    .warnings
                    .push(format!("skipped {name}: unsupported entry type {other:?}"));
            }
        }
    }
    // Directory modes last (deepest first), so a read-only directory did not stop its own
    // entries; the owner keeps rwx so the tree can always be moved or removed again.
    dirs.sort_by_key(|(p, _, _)| std::cmp::Reverse(p.components().count()));
    for (dir, mode, mtime) in dirs {
        let ctx = || format!("setting the mode of {}", dir.display());
        fs::set_permissions(&dir, fs::Permissions::from_mode(mode | 0o700))
            .map_err(io_err(ctx()))?;
        if let Some(t) = mtime {
            if let Ok(f) = File::open(&dir) {
                let _ = f.set_modified(t);
            }
        }
    }
    Ok(report)
}

/// Writes a tar of `src` to `out`, the item named `name` in the archive (`.` puts a directory's
/// contents at the top). Directories include dotfiles; symlinks are stored as symlinks, never
/// followed (`follow_top` follows `src` itself when it is one).
pub fn pack_to<W: Write>(src: &Path, name: &Path, follow_top: bool, out: W) -> io::Result<W> {
    let src = if follow_top {
        fs::canonicalize(src)?
    } else {
        src.to_path_buf()
    };
    let meta = fs::symlink_metadata(&src)?;
    let mut builder = tar::Builder::new(out);
    builder.follow_symlinks(false);
    builder.mode(tar::HeaderMode::Complete);
    if meta.is_dir() {
        builder.append_dir_all(name, &src)?;
    } else {
        builder.append_path_with_name(&src, name)?;
    }
    builder.into_inner()
}

/// A `Read` over the reading half of a duplex pipe, for blocking code on a `spawn_blocking` thread.
struct BlockingReader {
    inner: DuplexStream,
    handle: Handle,
}

impl Read for BlockingReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.handle.block_on(self.inner.read(buf))
    }
}

/// A `Write` over the writing half of a duplex pipe, for blocking code.
struct BlockingWriter {
    inner: DuplexStream,
    handle: Handle,
}

impl Write for BlockingWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.handle.block_on(self.inner.write(buf))
    }

    fn flush(&mut self) -> io::Result<()> {
        self.handle.block_on(self.inner.flush())
    }
}

const PIPE_LEN: usize = 256 * 1024;

/// The producer of a [`pack_stream`]; `finish` tells whether the archive was complete.
pub struct PackTask(JoinHandle<io::Result<()>>);

impl PackTask {
    /// Waits for the producer. It ends on its own once the reader is read to the end or dropped.
    pub async fn finish(self) -> io::Result<()> {
        match self.0.await {
            Ok(r) => r,
            Err(e) => Err(io::Error::other(e.to_string())),
        }
    }
}

/// Packs `src` (see [`pack_to`]) on a blocking thread; the archive is read from the returned
/// stream. Must be called inside a tokio runtime.
pub fn pack_stream(src: PathBuf, name: PathBuf, follow_top: bool) -> (DuplexStream, PackTask) {
    let (reader, writer) = tokio::io::duplex(PIPE_LEN);
    let handle = Handle::current();
    let task = tokio::task::spawn_blocking(move || {
        let sink = BlockingWriter {
            inner: writer,
            handle: handle.clone(),
        };
        let mut sink = pack_to(
            &src,
            &name,
            follow_top,
            io::BufWriter::with_capacity(PIPE_LEN, sink),
        )?;
        sink.flush()?;
        let mut sink = sink.into_inner().map_err(|e| e.into_error())?;
        handle.block_on(sink.inner.shutdown())
    });
    (reader, PackTask(task))
}

/// The consumer of an [`unpack_sink`].
pub struct UnpackTask(JoinHandle<Result<UnpackReport, TarError>>);

impl UnpackTask {
    /// Waits for the unpacker; drop (or shut down) the sink first so it sees the end.
    pub async fn finish(self) -> Result<UnpackReport, TarError> {
        match self.0.await {
            Ok(r) => r,
            Err(e) => Err(TarError::Io {
                context: "unpacking".into(),
                source: io::Error::other(e.to_string()),
            }),
        }
    }
}

/// Returns a stream to write an archive into and the task that unpacks it into `dest` with
/// [`unpack_safely`]. If the unpacker stops early (a refused entry), writes fail with
/// `BrokenPipe`. Must be called inside a tokio runtime.
pub fn unpack_sink(dest: PathBuf, limits: Limits) -> (DuplexStream, UnpackTask) {
    let (writer, reader) = tokio::io::duplex(PIPE_LEN);
    let handle = Handle::current();
    let task = tokio::task::spawn_blocking(move || {
        let reader = BlockingReader {
            inner: reader,
            handle,
        };
        let mut reader = io::BufReader::with_capacity(PIPE_LEN, reader);
        let report = unpack_safely(&mut reader, &dest, &limits)?;
        // Drain what follows the end-of-archive blocks so the writer never sees a broken pipe.
        let _ = io::copy(&mut reader, &mut io::sink());
        Ok(report)
    });
    (writer, UnpackTask(task))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    /// Raw ustar header so names the tar crate would refuse to write (`../x`, `/etc/x`) can be
    /// produced.
    fn raw_entry(out: &mut Vec<u8>, name: &str, kind: u8, link: &str, data: &[u8], size: u64) {
        let mut h = [0u8; 512];
        h[..name.len()].copy_from_slice(name.as_bytes());
        h[100..107].copy_from_slice(b"0000644");
        h[108..115].copy_from_slice(b"0001750");
        h[116..123].copy_from_slice(b"0001750");
        let size_field = format!("{size:011o}");
        h[124..135].copy_from_slice(size_field.as_bytes());
        h[136..147].copy_from_slice(b"00000000000");
        h[156] = kind;
        h[157..157 + link.len()].copy_from_slice(link.as_bytes());
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
        h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
        out.extend_from_slice(&h);
        out.extend_from_slice(data);
        let pad = (512 - data.len() % 512) % 512;
        out.extend(std::iter::repeat_n(0u8, pad));
    }

    fn finish(mut out: Vec<u8>) -> Vec<u8> {
        out.extend_from_slice(&[0u8; 1024]);
        out
    }

    fn unpack(bytes: &[u8]) -> (tempfile::TempDir, Result<UnpackReport, TarError>) {
        let root = tempfile::tempdir().expect("tempdir");
        fs::create_dir(root.path().join("dest")).expect("mkdir");
        let r = unpack_safely(bytes, &root.path().join("dest"), &Limits::default());
        (root, r)
    }

    /// Everything under `root` except `dest/` itself: what an escape would have created.
    fn outside(root: &Path) -> Vec<String> {
        fs::read_dir(root)
            .expect("read_dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .filter(|n| n != "dest")
            .collect()
    }

    #[test]
    fn parent_dir_names_are_refused() {
        let mut t = Vec::new();
        raw_entry(&mut t, "../x", b'0', "", b"pwned", 5);
        let (root, r) = unpack(&finish(t));
        assert!(matches!(r, Err(TarError::UnsafeName(_))), "{r:?}");
        assert!(outside(root.path()).is_empty());
        let mut t = Vec::new();
        raw_entry(&mut t, "a/../../x", b'0', "", b"pwned", 5);
        let (root, r) = unpack(&finish(t));
        assert!(matches!(r, Err(TarError::UnsafeName(_))), "{r:?}");
        assert!(outside(root.path()).is_empty());
    }

    #[test]
    fn absolute_names_are_refused() {
        let root = tempfile::tempdir().expect("tempdir");
        let victim = root.path().join("victim");
        let mut t = Vec::new();
        raw_entry(
            &mut t,
            victim.to_str().expect("utf8"),
            b'0',
            "",
            b"pwned",
            5,
        );
        fs::create_dir(root.path().join("dest")).expect("mkdir");
        let r = unpack_safely(
            &finish(t)[..],
            &root.path().join("dest"),
            &Limits::default(),
        );
        assert!(matches!(r, Err(TarError::UnsafeName(_))), "{r:?}");
        assert!(!victim.exists());
    }

    #[test]
    fn nothing_is_written_through_a_symlink() {
        let root = tempfile::tempdir().expect("tempdir");
        let target = root.path().join("elsewhere");
        fs::create_dir(&target).expect("mkdir");
        let mut t = Vec::new();
        raw_entry(&mut t, "a", b'2', target.to_str().expect("utf8"), b"", 0);
        raw_entry(&mut t, "a/pwned", b'0', "", b"pwned", 5);
        fs::create_dir(root.path().join("dest")).expect("mkdir");
        let r = unpack_safely(
            &finish(t)[..],
            &root.path().join("dest"),
            &Limits::default(),
        );
        assert!(matches!(r, Err(TarError::ThroughSymlink { .. })), "{r:?}");
        assert!(!target.join("pwned").exists());
        // The symlink itself was created, as a symlink.
        assert!(fs::symlink_metadata(root.path().join("dest/a"))
            .expect("link")
            .file_type()
            .is_symlink());
    }

    #[test]
    fn a_file_entry_replaces_a_symlink_instead_of_writing_through_it() {
        let root = tempfile::tempdir().expect("tempdir");
        let victim = root.path().join("victim");
        fs::write(&victim, b"original").expect("write");
        let mut t = Vec::new();
        raw_entry(&mut t, "f", b'2', victim.to_str().expect("utf8"), b"", 0);
        raw_entry(&mut t, "f", b'0', "", b"pwned", 5);
        fs::create_dir(root.path().join("dest")).expect("mkdir");
        unpack_safely(
            &finish(t)[..],
            &root.path().join("dest"),
            &Limits::default(),
        )
        .expect("unpack");
        assert_eq!(fs::read(&victim).expect("read"), b"original");
        assert_eq!(
            fs::read(root.path().join("dest/f")).expect("read"),
            b"pwned"
        );
    }

    #[test]
    fn hard_links_to_outside_are_refused() {
        let root = tempfile::tempdir().expect("tempdir");
        let victim = root.path().join("victim");
        fs::write(&victim, b"secret").expect("write");
        for link in [victim.to_str().expect("utf8"), "../victim"] {
            let mut t = Vec::new();
            raw_entry(&mut t, "h", b'1', link, b"", 0);
            let dest = tempfile::tempdir_in(root.path()).expect("dest");
            let r = unpack_safely(&finish(t)[..], dest.path(), &Limits::default());
            assert!(matches!(r, Err(TarError::BadHardLink { .. })), "{r:?}");
            assert!(!dest.path().join("h").exists());
        }
        // …and through a symlink that leads outside.
        let mut t = Vec::new();
        raw_entry(
            &mut t,
            "l",
            b'2',
            root.path().to_str().expect("utf8"),
            b"",
            0,
        );
        raw_entry(&mut t, "h", b'1', "l/victim", b"", 0);
        let dest = tempfile::tempdir_in(root.path()).expect("dest");
        let r = unpack_safely(&finish(t)[..], dest.path(), &Limits::default());
        assert!(matches!(r, Err(TarError::BadHardLink { .. })), "{r:?}");
        assert_eq!(fs::metadata(&victim).expect("meta").nlink(), 1);
    }

    #[test]
    fn hard_links_inside_work() {
        let mut t = Vec::new();
        raw_entry(&mut t, "f", b'0', "", b"data", 4);
        raw_entry(&mut t, "g", b'1', "f", b"", 0);
        let (root, r) = unpack(&finish(t));
        r.expect("unpack");
        assert_eq!(fs::read(root.path().join("dest/g")).expect("read"), b"data");
    }

    #[test]
    fn a_huge_declared_size_is_refused_before_reading() {
        let mut t = Vec::new();
        raw_entry(&mut t, "big", b'0', "", b"", (1 << 33) - 1);
        let root = tempfile::tempdir().expect("tempdir");
        let limits = Limits {
            max_bytes: 1 << 20,
            max_entries: 10,
        };
        let r = unpack_safely(&finish(t)[..], root.path(), &limits);
        assert!(matches!(r, Err(TarError::TooLarge { .. })), "{r:?}");
        assert!(!root.path().join("big").exists());
    }

    #[test]
    fn too_many_entries_are_refused() {
        let mut t = Vec::new();
        for i in 0..5 {
            raw_entry(&mut t, &format!("f{i}"), b'0', "", b"", 0);
        }
        let root = tempfile::tempdir().expect("tempdir");
        let limits = Limits {
            max_bytes: 1 << 20,
            max_entries: 3,
        };
        let r = unpack_safely(&finish(t)[..], root.path(), &limits);
        assert!(
            matches!(r, Err(TarError::TooManyEntries { limit: 3 })),
            "{r:?}"
        );
    }

    #[test]
    fn a_truncated_archive_is_an_error() {
        let mut t = Vec::new();
        raw_entry(&mut t, "f", b'0', "", b"0123456789", 10);
        t.truncate(512 + 4);
        let (_root, r) = unpack(&t);
        assert!(matches!(r, Err(TarError::Io { .. })), "{r:?}");
    }

    #[test]
    fn devices_and_fifos_are_skipped_and_setuid_bits_dropped() {
        let mut t = Vec::new();
        raw_entry(&mut t, "dev", b'3', "", b"", 0);
        raw_entry(&mut t, "fifo", b'6', "", b"", 0);
        let mut h = tar::Header::new_gnu();
        h.set_size(2);
        h.set_mode(0o4755);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_cksum();
        let mut b = tar::Builder::new(t);
        b.append_data(&mut h, "suid", &b"ok"[..]).expect("append");
        let (root, r) = unpack(&b.into_inner().map(finish).expect("tar"));
        let report = r.expect("unpack");
        assert_eq!(report.warnings.len(), 2, "{:?}", report.warnings);
        assert!(!root.path().join("dest/dev").exists());
        assert!(!root.path().join("dest/fifo").exists());
        let mode = fs::metadata(root.path().join("dest/suid"))
            .expect("meta")
            .mode();
        assert_eq!(mode & 0o7777, 0o755);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let mut seed: u64 = 0x1234_5678;
        for len in [0usize, 1, 511, 512, 1024, 1537, 4096] {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                    (seed >> 33) as u8
                })
                .collect();
            let (root, _r) = unpack(&bytes);
            assert!(outside(root.path()).is_empty());
        }
    }

    #[test]
    fn pack_then_unpack_round_trips_dotfiles_symlinks_and_modes() {
        let src = tempfile::tempdir().expect("tempdir");
        let d = src.path().join("tree");
        fs::create_dir_all(d.join("sub")).expect("mkdir");
        fs::write(d.join(".hidden"), b"dot").expect("write");
        fs::write(d.join("sub/x.sh"), b"#!/bin/sh\n").expect("write");
        fs::set_permissions(d.join("sub/x.sh"), fs::Permissions::from_mode(0o750)).expect("chmod");
        std::os::unix::fs::symlink("/etc/passwd", d.join("abs-link")).expect("symlink");
        let tar = pack_to(&d, Path::new("tree"), false, Vec::new()).expect("pack");
        let out = tempfile::tempdir().expect("tempdir");
        unpack_safely(&tar[..], out.path(), &Limits::default()).expect("unpack");
        let t = out.path().join("tree");
        assert_eq!(fs::read(t.join(".hidden")).expect("read"), b"dot");
        assert_eq!(
            fs::metadata(t.join("sub/x.sh")).expect("meta").mode() & 0o777,
            0o750
        );
        assert_eq!(
            fs::read_link(t.join("abs-link")).expect("link"),
            Path::new("/etc/passwd")
        );
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn pack_stream_feeds_unpack_sink() {
        let src = tempfile::tempdir().expect("tempdir");
        fs::write(src.path().join("big"), vec![3u8; 1_000_000]).expect("write");
        let out = tempfile::tempdir().expect("tempdir");
        let (mut reader, pack) = pack_stream(src.path().into(), ".".into(), false);
        let (mut sink, unpack) = unpack_sink(out.path().into(), Limits::default());
        tokio::io::copy(&mut reader, &mut sink).await.expect("copy");
        drop(sink);
        pack.finish().await.expect("pack");
        let report = unpack.finish().await.expect("unpack");
        assert_eq!(report.bytes, 1_000_000);
        assert_eq!(
            fs::read(out.path().join("big")).expect("read").len(),
            1_000_000
        );
    }
}
