//! `vimport PATH [NAME:TAG]`: what PATH is, and how each kind gets into the engine.
//!
//! * OCI layout directory → validated on the host, sent with ImportOci (skopeo in the guest);
//!   of a multi-arch layout only the guest arch's manifest and its blobs
//!   (`vcontainer_oci::platform`, streamed by `ops::oci_import`).
//! * OCI archive (a tar of a layout) → unpacked safely on the host into a temporary directory,
//!   validated, then as a layout. Unpacking costs a local copy but gives the same blob digest
//!   checks and error messages as a layout directory before anything reaches the guest.
//! * docker-archive (`docker save` output, with `manifest.json`) → `engine load` from stdin, then
//!   the image (its ID from `manifest.json`, read on the host) tagged as NAME.
//! * any other directory → packed on the fly as the stdin of `engine import - NAME`.
//! * any other tar → its bytes as the stdin of `engine import - NAME` (the engine decompresses).
//!
//! Compressed archives (gzip, zstd, xz, bzip2) are inspected through the system's decompressor.

use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use vcontainer_protocol::{ExecRequest, ExitStatus};

use crate::ops::oci_import::import_oci_for_guest;
use crate::ops::{exec, ExecIo, OpError};
use crate::transport::Transport;
use crate::util::host_tar::{pack_stream, safe_relative, unpack_safely, Limits};
use vcontainer_oci::validate::{validate_oci_layout, OciLayoutError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImportSource {
    OciLayout(PathBuf),
    OciArchive(PathBuf),
    DockerArchive(PathBuf),
    RootfsDir(PathBuf),
    RootfsTar(PathBuf),
}

impl ImportSource {
    pub fn path(&self) -> &Path {
        match self {
            ImportSource::OciLayout(p)
            | ImportSource::OciArchive(p)
            | ImportSource::DockerArchive(p)
            | ImportSource::RootfsDir(p)
            | ImportSource::RootfsTar(p) => p,
        }
    }

    /// Human name of the kind, for progress and messages.
    pub fn kind(&self) -> &'static str {
        match self {
            ImportSource::OciLayout(_) => "OCI image layout",
            ImportSource::OciArchive(_) => "OCI archive",
            ImportSource::DockerArchive(_) => "docker-archive",
            ImportSource::RootfsDir(_) => "root filesystem directory",
            ImportSource::RootfsTar(_) => "root filesystem tar",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("Not found: {0}")]
    NotFound(PathBuf),
    #[error("{path} is not an OCI image layout (no oci-layout or index.json), but it contains layouts: {}\nImport one of them, e.g.: vimport {}", list(.candidates), first(.candidates))]
    NestedLayouts {
        path: PathBuf,
        candidates: Vec<PathBuf>,
    },
    #[error(transparent)]
    Layout(#[from] OciLayoutError),
    #[error("{path}: not a tar archive: {reason}")]
    NotATar { path: PathBuf, reason: String },
    #[error("{path}: cannot run {tool} to decompress it: {source}")]
    Decompressor {
        path: PathBuf,
        tool: &'static str,
        source: io::Error,
    },
    #[error("{path}: bad manifest.json: {reason}")]
    DockerManifest { path: PathBuf, reason: String },
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

fn list(c: &[PathBuf]) -> String {
    c.iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn first(c: &[PathBuf]) -> String {
    c.first()
        .map(|p| p.display().to_string())
        .unwrap_or_default()
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> ImportError + '_ {
    move |source| ImportError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Decides what `path` is (see the module comment). An OCI layout is validated here, so a broken
/// one fails before any guest work.
pub fn detect(path: &Path) -> Result<ImportSource, ImportError> {
    let meta = match fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(ImportError::NotFound(path.to_path_buf()))
        }
        Err(e) => return Err(io_err(path)(e)),
    };
    if meta.is_dir() {
        if path.join("oci-layout").exists() || path.join("index.json").exists() {
            validate_oci_layout(path)?;
            return Ok(ImportSource::OciLayout(path.to_path_buf()));
        }
        let mut candidates: Vec<PathBuf> = fs::read_dir(path)
            .map_err(io_err(path))?
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with("-oci") && e.path().is_dir())
            .map(|e| e.path())
            .collect();
        if !candidates.is_empty() {
            candidates.sort();
            return Err(ImportError::NestedLayouts {
                path: path.to_path_buf(),
                candidates,
            });
        }
        return Ok(ImportSource::RootfsDir(path.to_path_buf()));
    }
    let found = scan_tar(path)?;
    Ok(if found.manifest_json {
        ImportSource::DockerArchive(path.to_path_buf())
    } else if found.oci_layout && found.index_json {
        ImportSource::OciArchive(path.to_path_buf())
    } else {
        ImportSource::RootfsTar(path.to_path_buf())
    })
}

#[derive(Debug, Default)]
struct TopNames {
    oci_layout: bool,
    index_json: bool,
    manifest_json: bool,
}

/// Compression by magic number, and the tool that undoes it.
fn decompressor(magic: &[u8]) -> Option<&'static str> {
    if magic.starts_with(&[0x1f, 0x8b]) {
        Some("gzip")
    } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Some("zstd")
    } else if magic.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        Some("xz")
    } else if magic.starts_with(b"BZh") {
        Some("bzip2")
    } else {
        None
    }
}

/// The archive's uncompressed bytes: the file itself, or a decompressor's output.
enum TarInput {
    Plain(File),
    Piped(Child),
}

impl TarInput {
    fn open(path: &Path) -> Result<TarInput, ImportError> {
        let mut file = File::open(path).map_err(io_err(path))?;
        let mut magic = [0u8; 6];
        let n = read_up_to(&mut file, &mut magic).map_err(io_err(path))?;
        file.seek(SeekFrom::Start(0)).map_err(io_err(path))?;
        let Some(tool) = decompressor(&magic[..n]) else {
            return Ok(TarInput::Plain(file));
        };
        let child = Command::new(tool)
            .arg("-dc")
            .stdin(Stdio::from(file))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|source| ImportError::Decompressor {
                path: path.to_path_buf(),
                tool,
                source,
            })?;
        Ok(TarInput::Piped(child))
    }

    /// Runs `f` over the archive's entries.
    fn with_archive<T>(&mut self, f: impl FnOnce(&mut dyn Read) -> T) -> T {
        match self {
            TarInput::Plain(file) => f(file),
            TarInput::Piped(child) => match child.stdout.as_mut() {
                Some(out) => f(out),
                None => f(&mut io::empty()),
            },
        }
    }
}

impl Drop for TarInput {
    fn drop(&mut self) {
        if let TarInput::Piped(child) = self {
            // We may stop reading early; the decompressor is not needed any more.
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

fn top_name(raw: &Path) -> Option<String> {
    let rel = safe_relative(raw).ok()?;
    let mut parts = rel.components();
    let first = parts.next()?;
    parts
        .next()
        .is_none()
        .then(|| first.as_os_str().to_string_lossy().into_owned())
}

/// Reads entry headers until `manifest.json` shows up or the archive ends (plain files skip
/// entry data by seeking).
fn scan_tar(path: &Path) -> Result<TopNames, ImportError> {
    let mut input = TarInput::open(path)?;
    let not_tar = |reason: String| ImportError::NotATar {
        path: path.to_path_buf(),
        reason,
    };
    let mut found = TopNames::default();
    let mut entries_seen = 0u64;
    let result: Result<(), ImportError> = match &mut input {
        TarInput::Plain(file) => {
            let mut archive = tar::Archive::new(file);
            let entries = archive
                .entries_with_seek()
                .map_err(|e| not_tar(e.to_string()))?;
            scan_entries(entries, &mut found, &mut entries_seen).map_err(not_tar)
        }
        TarInput::Piped(child) => match child.stdout.as_mut() {
            Some(out) => {
                let mut archive = tar::Archive::new(out);
                let entries = archive.entries().map_err(|e| not_tar(e.to_string()))?;
                scan_entries(entries, &mut found, &mut entries_seen).map_err(not_tar)
            }
            None => Ok(()),
        },
    };
    result?;
    if entries_seen == 0 {
        return Err(not_tar("it holds no entries".into()));
    }
    Ok(found)
}

fn scan_entries<R: Read>(
    entries: tar::Entries<'_, R>,
    found: &mut TopNames,
    seen: &mut u64,
) -> Result<(), String> {
    for entry in entries {
        let entry = entry.map_err(|e| e.to_string())?;
        *seen += 1;
        let Ok(raw) = entry.path() else { continue };
        match top_name(&raw).as_deref() {
            Some("oci-layout") => found.oci_layout = true,
            Some("index.json") => found.index_json = true,
            Some("manifest.json") => {
                found.manifest_json = true;
                return Ok(());
            }
            _ => {}
        }
    }
    Ok(())
}

/// The contents of the top-level member `name` (at most 4 MiB).
fn read_member(path: &Path, name: &str) -> Result<Option<Vec<u8>>, ImportError> {
    const MAX: u64 = 4 * 1024 * 1024;
    let mut input = TarInput::open(path)?;
    input.with_archive(|r| {
        let mut archive = tar::Archive::new(r);
        let entries = archive.entries().map_err(io_err(path))?;
        for entry in entries {
            let entry = entry.map_err(io_err(path))?;
            let is_it = entry
                .path()
                .ok()
                .and_then(|p| top_name(&p))
                .is_some_and(|n| n == name);
            if is_it {
                let mut bytes = Vec::new();
                entry
                    .take(MAX + 1)
                    .read_to_end(&mut bytes)
                    .map_err(io_err(path))?;
                if bytes.len() as u64 > MAX {
                    return Err(ImportError::DockerManifest {
                        path: path.to_path_buf(),
                        reason: format!("{name} is larger than {MAX} bytes"),
                    });
                }
                return Ok(Some(bytes));
            }
        }
        Ok(None)
    })
}

/// What to tag after `engine load`: the image ID (config digest) and, as a fallback, its first
/// repo tag; plus how many images the archive holds.
#[derive(Debug, PartialEq, Eq)]
struct LoadedImage {
    id: Option<String>,
    repo_tag: Option<String>,
    images: usize,
}

fn parse_docker_manifest(path: &Path, bytes: &[u8]) -> Result<LoadedImage, ImportError> {
    let bad = |reason: String| ImportError::DockerManifest {
        path: path.to_path_buf(),
        reason,
    };
    let v: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
    let items = v.as_array().ok_or_else(|| bad("not a JSON array".into()))?;
    let first = items.first().ok_or_else(|| bad("lists no images".into()))?;
    // `Config` is `<hex>.json` (classic) or `blobs/sha256/<hex>` (OCI-style docker save).
    let id = first.get("Config").and_then(|c| c.as_str()).and_then(|c| {
        let base = c.rsplit('/').next().unwrap_or(c);
        let hex = base.strip_suffix(".json").unwrap_or(base);
        (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then(|| hex.to_string())
    });
    let repo_tag = first
        .get("RepoTags")
        .and_then(|t| t.as_array())
        .and_then(|t| t.first())
        .and_then(|t| t.as_str())
        .map(str::to_string);
    if id.is_none() && repo_tag.is_none() {
        return Err(bad(
            "the first image has neither a Config digest nor RepoTags".into(),
        ));
    }
    Ok(LoadedImage {
        id,
        repo_tag,
        images: items.len(),
    })
}

/// Fuzzing entry point (`fuzz/fuzz_targets/config_parsers.rs`): a docker-archive `manifest.json`
/// parsed as `vimport` does; the image id, first repo tag and image count.
#[doc(hidden)]
pub fn parse_docker_manifest_bytes(
    bytes: &[u8],
) -> Result<(Option<String>, Option<String>, usize), String> {
    parse_docker_manifest(Path::new("manifest.json"), bytes)
        .map(|l| (l.id, l.repo_tag, l.images))
        .map_err(|e| e.to_string())
}

/// Counts bytes read through it (progress for stdin streams).
struct Counting<R> {
    inner: R,
    count: Arc<AtomicU64>,
}

impl<R: AsyncRead + Unpin> AsyncRead for Counting<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = (buf.filled().len() - before) as u64;
        self.count.fetch_add(n, Ordering::Relaxed);
        r
    }
}

/// Drives `fut`, reporting `count` to `progress` every 200 ms and at the end.
async fn with_progress<T>(
    fut: impl std::future::Future<Output = T>,
    count: &AtomicU64,
    progress: &mut dyn FnMut(u64),
) -> T {
    tokio::pin!(fut);
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(200));
    loop {
        tokio::select! {
            r = &mut fut => {
                progress(count.load(Ordering::Relaxed));
                return r;
            }
            _ = tick.tick() => progress(count.load(Ordering::Relaxed)),
        }
    }
}

/// Unpacks the OCI archive `file` (compressed or not) safely into `dest` and validates the layout.
pub fn unpack_oci_archive(file: &Path, dest: &Path) -> Result<(), ImportError> {
    let mut input = TarInput::open(file)?;
    input.with_archive(|r| {
        unpack_safely(r, dest, &Limits::default()).map_err(|e| ImportError::NotATar {
            path: file.to_path_buf(),
            reason: e.to_string(),
        })
    })?;
    validate_oci_layout(dest)?;
    Ok(())
}

fn engine_exec(argv: Vec<String>) -> ExecRequest {
    ExecRequest {
        argv,
        engine: true,
        ..Default::default()
    }
}

async fn run_engine(
    transport: &dyn Transport,
    argv: Vec<String>,
    stdin: Option<Box<dyn AsyncRead + Unpin + Send>>,
    stdout: &mut (dyn AsyncWrite + Unpin + Send),
    stderr: &mut (dyn AsyncWrite + Unpin + Send),
) -> Result<ExitStatus, OpError> {
    exec(
        transport,
        engine_exec(argv),
        ExecIo {
            stdout,
            stderr,
            stdin,
            signals: None,
        },
    )
    .await
}

fn import_err(e: ImportError) -> OpError {
    match e {
        ImportError::Layout(l) => OpError::Layout(l),
        other => OpError::Io {
            context: "vimport".into(),
            source: io::Error::other(other.to_string()),
        },
    }
}

/// Imports `source` into the guest engine (`engine_cli`: `docker` or `podman`) as `reference`.
/// `progress` gets the bytes sent so far.
pub async fn vimport(
    transport: &dyn Transport,
    engine_cli: &str,
    source: &ImportSource,
    reference: &str,
    stdout: &mut (dyn AsyncWrite + Unpin + Send),
    stderr: &mut (dyn AsyncWrite + Unpin + Send),
    progress: &mut dyn FnMut(u64),
) -> Result<ExitStatus, OpError> {
    let count = Arc::new(AtomicU64::new(0));
    match source {
        ImportSource::OciLayout(dir) => {
            let c = count.clone();
            let mut report = move |n: u64| c.store(n, Ordering::Relaxed);
            // Only the guest arch's manifest of a multi-arch layout is sent.
            let fut = import_oci_for_guest(transport, dir, reference, stdout, stderr, &mut report);
            with_progress(fut, &count, progress).await
        }
        ImportSource::OciArchive(file) => {
            let tmp = tempfile::Builder::new()
                .prefix("vcontainer-oci-")
                .tempdir()
                .map_err(|source| OpError::Io {
                    context: "creating a temporary directory".into(),
                    source,
                })?;
            let (file2, dest) = (file.clone(), tmp.path().to_path_buf());
            let unpacked = tokio::task::spawn_blocking(move || unpack_oci_archive(&file2, &dest))
                .await
                .map_err(|e| OpError::Io {
                    context: format!("unpacking {}", file.display()),
                    source: io::Error::other(e.to_string()),
                })?;
            unpacked.map_err(import_err)?;
            let c = count.clone();
            let mut report = move |n: u64| c.store(n, Ordering::Relaxed);
            let fut = import_oci_for_guest(
                transport,
                tmp.path(),
                reference,
                stdout,
                stderr,
                &mut report,
            );
            with_progress(fut, &count, progress).await
        }
        ImportSource::DockerArchive(file) => {
            let f2 = file.clone();
            let loaded = tokio::task::spawn_blocking(move || {
                let bytes = read_member(&f2, "manifest.json")?.ok_or_else(|| {
                    ImportError::DockerManifest {
                        path: f2.clone(),
                        reason: "manifest.json is missing".into(),
                    }
                })?;
                parse_docker_manifest(&f2, &bytes)
            })
            .await
            .map_err(|e| OpError::Io {
                context: format!("reading {}", file.display()),
                source: io::Error::other(e.to_string()),
            })?
            .map_err(import_err)?;
            let input = tokio::fs::File::open(file)
                .await
                .map_err(|source| OpError::Io {
                    context: format!("cannot open {}", file.display()),
                    source,
                })?;
            let stdin = Box::new(Counting {
                inner: input,
                count: count.clone(),
            });
            let argv = vec![engine_cli.to_string(), "load".to_string()];
            let fut = run_engine(transport, argv, Some(stdin), stdout, stderr);
            let status = with_progress(fut, &count, progress).await?;
            if status.shell_code() != 0 {
                return Ok(status);
            }
            if loaded.images > 1 {
                let note = format!(
                    "vimport: {} holds {} images; tagging the first as {reference}\n",
                    file.display(),
                    loaded.images
                );
                let _ = tokio::io::AsyncWriteExt::write_all(stderr, note.as_bytes()).await;
            }
            let mut status = status;
            let names = loaded.id.iter().chain(loaded.repo_tag.iter());
            for name in names {
                let argv = vec![
                    engine_cli.to_string(),
                    "tag".to_string(),
                    name.clone(),
                    reference.to_string(),
                ];
                let mut quiet = Vec::new();
                status = run_engine(transport, argv, None, stdout, &mut quiet).await?;
                if status.shell_code() == 0 {
                    break;
                }
                let _ = tokio::io::AsyncWriteExt::write_all(stderr, &quiet).await;
            }
            Ok(status)
        }
        ImportSource::RootfsDir(dir) => {
            let (reader, pack) = pack_stream(dir.clone(), PathBuf::from("."), true);
            let stdin = Box::new(Counting {
                inner: reader,
                count: count.clone(),
            });
            let argv = import_argv(engine_cli, reference);
            let fut = run_engine(transport, argv, Some(stdin), stdout, stderr);
            let status = with_progress(fut, &count, progress).await?;
            let packed = pack.finish().await;
            if status.shell_code() == 0 {
                packed.map_err(|source| OpError::Io {
                    context: format!("reading {}", dir.display()),
                    source,
                })?;
            }
            Ok(status)
        }
        ImportSource::RootfsTar(file) => {
            let input = tokio::fs::File::open(file)
                .await
                .map_err(|source| OpError::Io {
                    context: format!("cannot open {}", file.display()),
                    source,
                })?;
            let stdin = Box::new(Counting {
                inner: input,
                count: count.clone(),
            });
            let argv = import_argv(engine_cli, reference);
            let fut = run_engine(transport, argv, Some(stdin), stdout, stderr);
            with_progress(fut, &count, progress).await
        }
    }
}

fn import_argv(engine_cli: &str, reference: &str) -> Vec<String> {
    vec![
        engine_cli.to_string(),
        "import".to_string(),
        "-".to_string(),
        reference.to_string(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_with(names: &[&str]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for n in names {
            let data = format!("content of {n}");
            let mut h = tar::Header::new_ustar();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, n, data.as_bytes()).expect("append");
        }
        b.into_inner().expect("tar")
    }

    fn compress(tool: &str, data: &[u8], out: &Path) {
        use std::io::Write;
        let mut child = Command::new(tool)
            .arg("-c")
            .stdin(Stdio::piped())
            .stdout(File::create(out).expect("create"))
            .spawn()
            .expect("spawn compressor");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(data)
            .expect("write");
        assert!(child.wait().expect("wait").success());
    }

    #[test]
    fn missing_paths() {
        let err = detect(Path::new("/nonexistent/x")).expect_err("missing");
        assert_eq!(err.to_string(), "Not found: /nonexistent/x");
    }

    #[test]
    fn directories() {
        let d = tempfile::tempdir().expect("tempdir");
        let rootfs = d.path().join("rootfs");
        fs::create_dir_all(rootfs.join("bin")).expect("mkdir");
        assert_eq!(
            detect(&rootfs).expect("rootfs"),
            ImportSource::RootfsDir(rootfs.clone())
        );

        let parent = d.path().join("parent");
        fs::create_dir_all(parent.join("app-oci")).expect("mkdir");
        fs::create_dir_all(parent.join("other-oci")).expect("mkdir");
        let err = detect(&parent).expect_err("nested").to_string();
        assert!(
            err.contains("app-oci") && err.contains("other-oci"),
            "{err}"
        );

        // A directory with a layout marker is validated as a layout.
        let broken = d.path().join("broken");
        fs::create_dir_all(&broken).expect("mkdir");
        fs::write(broken.join("index.json"), b"{}").expect("write");
        assert!(matches!(detect(&broken), Err(ImportError::Layout(_))));
    }

    #[test]
    fn archives_by_their_members() {
        let d = tempfile::tempdir().expect("tempdir");
        type Case<'a> = (&'a str, &'a [&'a str], fn(PathBuf) -> ImportSource);
        let cases: [Case<'_>; 4] = [
            (
                "oci.tar",
                &["oci-layout", "blobs/sha256/aa", "index.json"],
                ImportSource::OciArchive,
            ),
            (
                "oci-dot.tar",
                &["./blobs/x", "./index.json", "./oci-layout"],
                ImportSource::OciArchive,
            ),
            (
                "docker.tar",
                &["abc/layer.tar", "manifest.json", "repositories"],
                ImportSource::DockerArchive,
            ),
            (
                // docker ≥ 25 writes both; `docker load` is the way for these.
                "docker25.tar",
                &[
                    "blobs/sha256/aa",
                    "index.json",
                    "manifest.json",
                    "oci-layout",
                ],
                ImportSource::DockerArchive,
            ),
        ];
        for (name, members, kind) in cases {
            let p = d.path().join(name);
            fs::write(&p, tar_with(members)).expect("write");
            assert_eq!(detect(&p).expect(name), kind(p.clone()), "{name}");
        }
        let p = d.path().join("rootfs.tar");
        fs::write(&p, tar_with(&["bin/sh", "etc/oci-layout", "index.json"])).expect("write");
        assert_eq!(
            detect(&p).expect("rootfs"),
            ImportSource::RootfsTar(p.clone())
        );
    }

    #[test]
    fn compressed_archives_are_looked_into() {
        let d = tempfile::tempdir().expect("tempdir");
        let oci = tar_with(&["oci-layout", "index.json", "blobs/sha256/aa"]);
        for (tool, ext) in [
            ("gzip", "gz"),
            ("zstd", "zst"),
            ("xz", "xz"),
            ("bzip2", "bz2"),
        ] {
            if Command::new(tool).arg("--version").output().is_err() {
                continue;
            }
            let p = d.path().join(format!("oci.tar.{ext}"));
            compress(tool, &oci, &p);
            assert_eq!(
                detect(&p).expect(tool),
                ImportSource::OciArchive(p.clone()),
                "{tool}"
            );
        }
    }

    #[test]
    fn non_tars_are_refused() {
        let d = tempfile::tempdir().expect("tempdir");
        let p = d.path().join("notes.txt");
        fs::write(&p, vec![b'x'; 2000]).expect("write");
        assert!(matches!(detect(&p), Err(ImportError::NotATar { .. })));
        let p = d.path().join("empty");
        fs::write(&p, b"").expect("write");
        assert!(matches!(detect(&p), Err(ImportError::NotATar { .. })));
    }

    #[test]
    fn docker_manifest_names_the_image() {
        let p = Path::new("x.tar");
        let hex = "a".repeat(64);
        let classic =
            format!(r#"[{{"Config":"{hex}.json","RepoTags":["hello:1.0"],"Layers":[]}}]"#);
        let got = parse_docker_manifest(p, classic.as_bytes()).expect("parse");
        assert_eq!(got.id.as_deref(), Some(hex.as_str()));
        assert_eq!(got.repo_tag.as_deref(), Some("hello:1.0"));
        let oci =
            format!(r#"[{{"Config":"blobs/sha256/{hex}","RepoTags":null}},{{"Config":"x"}}]"#);
        let got = parse_docker_manifest(p, oci.as_bytes()).expect("parse");
        assert_eq!(got.id.as_deref(), Some(hex.as_str()));
        assert_eq!(got.images, 2);
        assert!(parse_docker_manifest(p, b"{}").is_err());
        assert!(parse_docker_manifest(p, b"[{\"Config\":\"../../x\"}]").is_err());
    }

    #[test]
    fn reading_a_member() {
        let d = tempfile::tempdir().expect("tempdir");
        let p = d.path().join("docker.tar");
        fs::write(&p, tar_with(&["a/layer.tar", "./manifest.json"])).expect("write");
        let got = read_member(&p, "manifest.json")
            .expect("read")
            .expect("present");
        assert_eq!(got, b"content of ./manifest.json");
        assert_eq!(read_member(&p, "repositories").expect("read"), None);
    }
}
