//! `cp` between the host and a container: the engine's `cp` reads or writes a tar on its
//! stdin/stdout (`docker cp - CTR:PATH`, `docker cp CTR:PATH -`); the host packs or safely unpacks
//! it. A copy out appears on the host only after the engine exited 0 and the archive unpacked
//! cleanly.

use std::ffi::OsStr;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use tokio::io::AsyncWrite;
use vcontainer_protocol::{ExecRequest, ExitStatus};

use super::exec::{exec, ExecIo};
use super::OpError;
use crate::transport::Transport;
use crate::util::host_tar::{pack_stream, unpack_sink, Limits};

fn host_error(path: &Path, kind: io::ErrorKind, what: &str) -> OpError {
    OpError::Io {
        context: format!("cp: {}", path.display()),
        source: io::Error::new(kind, what.to_string()),
    }
}

fn not_found(path: &Path) -> OpError {
    host_error(path, io::ErrorKind::NotFound, "no such file or directory")
}

fn io_error(path: &Path, source: io::Error) -> OpError {
    if source.kind() == io::ErrorKind::NotFound {
        return not_found(path);
    }
    OpError::Io {
        context: format!("cp: {}", path.display()),
        source,
    }
}

/// `PATH/.` and `.` mean "the directory's contents" (as with `docker cp`).
fn means_contents(path: &OsStr) -> bool {
    let b = path.as_bytes();
    b == b"." || b.ends_with(b"/.")
}

fn engine_request(argv: Vec<String>) -> ExecRequest {
    ExecRequest {
        argv,
        engine: true,
        ..Default::default()
    }
}

/// Copies the host path `host` into a container: `argv` is the engine's
/// `[engine, cp, FLAGS…, "-", "CTR:PATH"]`, which reads the tar from stdin. The archive holds
/// `host` under its base name (`DIR/.` sends the directory's contents). `-L`/`--follow-link`
/// follows `host` itself when it is a symlink; links inside are always copied as links.
pub async fn copy_in(
    transport: &dyn Transport,
    host: &Path,
    argv: Vec<String>,
    stderr: &mut (dyn AsyncWrite + Unpin + Send),
) -> Result<ExitStatus, OpError> {
    let follow = argv.iter().any(|a| a == "-L" || a == "--follow-link");
    let meta = if follow {
        fs::metadata(host)
    } else {
        fs::symlink_metadata(host)
    }
    .map_err(|e| io_error(host, e))?;
    let name = if means_contents(host.as_os_str()) {
        if !meta.is_dir() {
            return Err(host_error(
                host,
                io::ErrorKind::NotADirectory,
                "not a directory",
            ));
        }
        PathBuf::from(".")
    } else {
        match host.file_name() {
            Some(n) => PathBuf::from(n),
            // `..`, `/`: name it after what it resolves to.
            None => fs::canonicalize(host)
                .ok()
                .and_then(|p| p.file_name().map(PathBuf::from))
                .unwrap_or_else(|| PathBuf::from(".")),
        }
    };
    // Reading the whole tree up front surfaces unreadable files before the guest sees anything.
    let (reader, pack) = pack_stream(host.to_path_buf(), name, follow);
    let mut out = tokio::io::sink();
    let status = exec(
        transport,
        engine_request(argv),
        ExecIo {
            stdout: &mut out,
            stderr,
            stdin: Some(Box::new(reader)),
            signals: None,
        },
    )
    .await?;
    let packed = pack.finish().await;
    if status.shell_code() != 0 {
        return Ok(status);
    }
    packed.map_err(|source| OpError::Io {
        context: format!("cp: reading {}", host.display()),
        source,
    })?;
    Ok(status)
}

/// Where a copied-out item goes.
enum Dest {
    /// An existing directory: the item lands inside it under its own name.
    Into(PathBuf),
    /// Created (or, for a file, replaced) as exactly this path.
    As(PathBuf),
}

fn plan_dest(host: &Path) -> Result<Dest, OpError> {
    let trailing_slash = host.as_os_str().as_bytes().ends_with(b"/");
    match fs::metadata(host) {
        Ok(m) if m.is_dir() => Ok(Dest::Into(host.to_path_buf())),
        Ok(_) if trailing_slash => Err(host_error(
            host,
            io::ErrorKind::NotADirectory,
            "not a directory",
        )),
        Ok(_) => Ok(Dest::As(host.to_path_buf())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if trailing_slash {
                return Err(host_error(
                    host,
                    io::ErrorKind::NotFound,
                    "destination directory does not exist",
                ));
            }
            let parent = match host.parent() {
                Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
                _ => PathBuf::from("."),
            };
            match fs::metadata(&parent) {
                Ok(m) if m.is_dir() => Ok(Dest::As(host.to_path_buf())),
                Ok(_) => Err(host_error(
                    &parent,
                    io::ErrorKind::NotADirectory,
                    "not a directory",
                )),
                Err(e) => Err(io_error(&parent, e)),
            }
        }
        Err(e) => Err(io_error(host, e)),
    }
}

/// Copies `CTR:PATH` out of a container to the host path `host` with docker's rules: into an
/// existing directory under its own name, else as `host` (whose parent must exist). `argv` is
/// `[engine, cp, FLAGS…, "CTR:PATH", "-"]`, which writes the tar to stdout.
pub async fn copy_out(
    transport: &dyn Transport,
    host: &Path,
    argv: Vec<String>,
    stderr: &mut (dyn AsyncWrite + Unpin + Send),
) -> Result<ExitStatus, OpError> {
    let dest = plan_dest(host)?;
    let source = argv
        .len()
        .checked_sub(2)
        .and_then(|i| argv.get(i))
        .cloned()
        .unwrap_or_default();
    let src_path = source.split_once(':').map_or(source.as_str(), |(_, p)| p);
    let contents = means_contents(OsStr::new(src_path)) || src_path == "/";
    let staging_parent = match &dest {
        Dest::Into(dir) => dir.clone(),
        Dest::As(path) => match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        },
    };
    let tmp = tempfile::Builder::new()
        .prefix(".vcontainer-cp-")
        .tempdir_in(&staging_parent)
        .map_err(|e| io_error(&staging_parent, e))?;
    let (mut sink, unpack) = unpack_sink(tmp.path().to_path_buf(), Limits::default());
    let status = exec(
        transport,
        engine_request(argv),
        ExecIo {
            stdout: &mut sink,
            stderr: &mut *stderr,
            stdin: None,
            signals: None,
        },
    )
    .await;
    drop(sink);
    let unpacked = unpack.finish().await;
    let status = status?;
    if status.shell_code() != 0 {
        return Ok(status);
    }
    let report = unpacked.map_err(|e| OpError::Io {
        context: format!("cp: unpacking {source}"),
        source: io::Error::other(e.to_string()),
    })?;
    for w in &report.warnings {
        let line = format!("cp: {w}\n");
        let _ = super::exec::write_chunk(stderr, line.as_bytes()).await;
    }
    place(tmp, &dest, contents, report.root_mode).map_err(|e| io_error(host, e))?;
    Ok(status)
}

/// Moves the unpacked item from `tmp` to its destination.
fn place(
    tmp: tempfile::TempDir,
    dest: &Dest,
    contents: bool,
    root_mode: Option<u32>,
) -> io::Result<()> {
    let mut tops = fs::read_dir(tmp.path())?
        .map(|e| e.map(|e| e.path()))
        .collect::<io::Result<Vec<_>>>()?;
    if !contents && tops.is_empty() {
        return Err(io::Error::other("the engine sent an empty archive"));
    }
    if contents || tops.len() > 1 {
        // The directory's contents: `tmp` itself is the item.
        match dest {
            Dest::Into(dir) => {
                for top in tops {
                    let name = top.file_name().map(PathBuf::from).unwrap_or_default();
                    merge_move(&top, &dir.join(name))?;
                }
                Ok(())
            }
            Dest::As(path) => {
                if fs::symlink_metadata(path).is_ok() {
                    return Err(io::Error::new(
                        io::ErrorKind::IsADirectory,
                        "cannot copy a directory onto a file",
                    ));
                }
                use std::os::unix::fs::PermissionsExt;
                let mode = root_mode.unwrap_or(0o755) | 0o700;
                fs::set_permissions(tmp.path(), fs::Permissions::from_mode(mode))?;
                let kept = tmp.keep();
                fs::rename(&kept, path).inspect_err(|_| {
                    let _ = fs::remove_dir_all(&kept);
                })
            }
        }
    } else {
        let top = tops.remove(0);
        match dest {
            Dest::Into(dir) => {
                let name = top.file_name().map(PathBuf::from).unwrap_or_default();
                merge_move(&top, &dir.join(name))
            }
            Dest::As(path) => merge_move(&top, path),
        }
    }
}

/// Moves `src` to `dst`; an existing directory is merged into, an existing non-directory is
/// replaced (a symlink as a link, never followed). A directory and a non-directory never replace
/// each other.
fn merge_move(src: &Path, dst: &Path) -> io::Result<()> {
    let src_dir = fs::symlink_metadata(src)?.is_dir();
    match fs::symlink_metadata(dst) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => fs::rename(src, dst),
        Err(e) => Err(e),
        Ok(m) if m.is_dir() && src_dir => {
            for entry in fs::read_dir(src)? {
                let entry = entry?;
                merge_move(&entry.path(), &dst.join(entry.file_name()))?;
            }
            Ok(())
        }
        Ok(m) if m.is_dir() => Err(io::Error::new(
            io::ErrorKind::IsADirectory,
            format!(
                "cannot overwrite directory {} with a non-directory",
                dst.display()
            ),
        )),
        Ok(_) if src_dir => Err(io::Error::new(
            io::ErrorKind::NotADirectory,
            format!(
                "cannot overwrite non-directory {} with a directory",
                dst.display()
            ),
        )),
        Ok(_) => fs::rename(src, dst),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contents_paths() {
        assert!(means_contents(OsStr::new(".")));
        assert!(means_contents(OsStr::new("/data/.")));
        assert!(!means_contents(OsStr::new("/data")));
        assert!(!means_contents(OsStr::new("/data/.x")));
    }

    #[test]
    fn destination_rules() {
        let d = tempfile::tempdir().expect("tempdir");
        assert!(matches!(plan_dest(d.path()), Ok(Dest::Into(_))));
        assert!(matches!(plan_dest(&d.path().join("new")), Ok(Dest::As(_))));
        let err = plan_dest(&d.path().join("missing/new"))
            .err()
            .expect("missing parent")
            .to_string();
        assert!(err.contains("no such file or directory"), "{err}");
        let err = plan_dest(Path::new(&format!("{}/new/", d.path().display())))
            .err()
            .expect("trailing slash")
            .to_string();
        assert!(err.contains("does not exist"), "{err}");
        fs::write(d.path().join("f"), b"x").expect("write");
        assert!(matches!(plan_dest(&d.path().join("f")), Ok(Dest::As(_))));
    }

    #[test]
    fn merge_move_merges_and_refuses_kind_changes() {
        let d = tempfile::tempdir().expect("tempdir");
        let src = d.path().join("src");
        let dst = d.path().join("dst");
        fs::create_dir_all(src.join("sub")).expect("mkdir");
        fs::write(src.join("sub/new"), b"n").expect("write");
        fs::create_dir_all(dst.join("sub")).expect("mkdir");
        fs::write(dst.join("sub/old"), b"o").expect("write");
        merge_move(&src, &dst).expect("merge");
        assert!(dst.join("sub/old").exists() && dst.join("sub/new").exists());
        fs::write(d.path().join("file"), b"f").expect("write");
        fs::create_dir(d.path().join("dir2")).expect("mkdir");
        assert!(merge_move(&d.path().join("dir2"), &d.path().join("file")).is_err());
    }
}
