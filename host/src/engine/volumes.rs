//! `run -v HOST:CTR[:MODE]` without shared folders: each host path is sent into a fresh guest
//! directory as a tar stream before the container starts, and rw volumes are brought back
//! afterwards as a tar stream and applied to the host with rules that never lose host data:
//!
//! * a file the container created or changed (content, type or permission bits differ from what
//!   was sent) is written to the host;
//! * a path is deleted on the host only if it was sent, the container deleted it, and the host's
//!   copy is unchanged since staging (files: size and mtime; symlinks: target; directories only
//!   when empty);
//! * anything created or changed on the host meanwhile and not changed by the container is left
//!   alone; nothing outside the mount path is touched (a file volume's replacement is written next
//!   to it and renamed over it), nothing is written through a host symlink;
//! * the archive from the guest is unpacked with [`crate::util::host_tar::unpack_safely`] first.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use vcontainer_protocol::{AgentMsg, ExecRequest, HostMsg, Request, StreamDigest, DATA_CHUNK_LEN};

use crate::ops::{exec, ExecIo, OpError, MAX_RECEIVE_BYTES};
use crate::session::{AgentConn, SessionError};
use crate::transport::Transport;
use crate::util::host_tar::{pack_stream, unpack_sink, Limits, TarError};

/// A `-v HOST:CTR[:MODE]` whose source is a host path (starts with `/` or `.`). Named volumes
/// (`-v data:/x`) and anonymous ones (`-v /x`) stay engine arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeSpec {
    pub host: PathBuf,
    pub container: String,
    /// `ro`, `rw`, `z`, … as given (None: rw).
    pub mode: Option<String>,
}

impl VolumeSpec {
    pub fn read_only(&self) -> bool {
        self.mode
            .as_deref()
            .is_some_and(|m| m.split(',').any(|o| o == "ro"))
    }

    /// Reads one `-v` value; `None` for anything that is not a host path mount.
    pub fn parse(spec: &str) -> Option<VolumeSpec> {
        if !(spec.starts_with('/') || spec.starts_with('.')) {
            return None;
        }
        let mut parts = spec.splitn(3, ':');
        let host = parts.next()?;
        let container = parts.next()?;
        if host.is_empty() || container.is_empty() {
            return None;
        }
        Some(VolumeSpec {
            host: PathBuf::from(host),
            container: container.to_string(),
            mode: parts.next().map(str::to_string),
        })
    }
}

/// Where volumes are staged in the guest: on the state disk, not in RAM.
pub const GUEST_VOLUME_ROOT: &str = "/mnt/state/vcontainer-volumes";

#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("Volume source not found: {0}")]
    SourceNotFound(PathBuf),
    #[error("volume {path}: {source}")]
    Host { path: PathBuf, source: io::Error },
    #[error("volume {path}: the copy from the guest was refused: {source}")]
    Tar { path: PathBuf, source: TarError },
    #[error("volume {path}: {source}")]
    Guest { path: PathBuf, source: OpError },
    #[error("removing the guest staging directory {dir}: {detail}")]
    Cleanup { dir: String, detail: String },
    #[error("{failed} of {total} volumes could not be synced back; the container's data stays in the guest at {dir}: {first}")]
    SyncFailed {
        failed: usize,
        total: usize,
        dir: String,
        first: Box<VolumeError>,
    },
}

/// What was on the host at staging time, per path relative to the mount.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Record {
    File {
        size: u64,
        mtime: (i64, i64),
        mode: u32,
        sha256: [u8; 32],
    },
    Dir,
    Symlink(PathBuf),
    /// Fifos, sockets, devices: never deleted, never compared equal.
    Other,
}

type Manifest = BTreeMap<PathBuf, Record>;

#[derive(Debug)]
struct Staged {
    spec: VolumeSpec,
    /// Absolute host path.
    host: PathBuf,
    /// Guest directory holding this volume (`ROOT/ID/N`).
    guest_dir: String,
    /// For a file volume: its name inside `guest_dir`.
    file_name: Option<OsString>,
    manifest: Manifest,
}

impl Staged {
    fn bind_source(&self) -> String {
        match &self.file_name {
            Some(n) => format!("{}/{}", self.guest_dir, n.to_string_lossy()),
            None => self.guest_dir.clone(),
        }
    }
}

/// Volumes that are in the guest; end with [`StagedVolumes::sync_back`], [`StagedVolumes::leave`]
/// or [`StagedVolumes::discard`].
#[derive(Debug)]
#[must_use = "staged volumes must be synced back, left or discarded"]
pub struct StagedVolumes {
    /// `ROOT/ID`, removed at the end.
    guest_dir: String,
    volumes: Vec<Staged>,
}

/// What a sync-back did.
#[derive(Debug, Default, Clone)]
pub struct SyncReport {
    pub volumes_synced: usize,
    /// Host paths written (created or replaced).
    pub written: Vec<PathBuf>,
    /// Host paths deleted.
    pub deleted: Vec<PathBuf>,
    /// Things deliberately left alone, one line each (for the user).
    pub notes: Vec<String>,
}

fn host_err(path: &Path) -> impl FnOnce(io::Error) -> VolumeError + '_ {
    move |source| VolumeError::Host {
        path: path.to_path_buf(),
        source,
    }
}

/// A fresh name for this run's guest directory (unique, not secret).
fn fresh_id(specs: &[VolumeSpec]) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = Sha256::new();
    h.update(std::process::id().to_le_bytes());
    h.update(COUNTER.fetch_add(1, Ordering::Relaxed).to_le_bytes());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    h.update(now.as_nanos().to_le_bytes());
    for s in specs {
        h.update(s.host.as_os_str().as_encoded_bytes());
    }
    hex::encode(&h.finalize()[..8])
}

/// Stages `specs` under [`GUEST_VOLUME_ROOT`].
pub async fn stage(
    transport: &dyn Transport,
    specs: &[VolumeSpec],
) -> Result<StagedVolumes, VolumeError> {
    stage_in(transport, specs, GUEST_VOLUME_ROOT).await
}

/// Stages `specs` under `guest_root` (tests pass a directory the unprivileged agent can write).
/// Host paths are checked before anything is sent; on failure what was staged is removed.
pub async fn stage_in(
    transport: &dyn Transport,
    specs: &[VolumeSpec],
    guest_root: &str,
) -> Result<StagedVolumes, VolumeError> {
    let cwd = std::env::current_dir().map_err(host_err(Path::new(".")))?;
    let mut hosts = Vec::with_capacity(specs.len());
    for spec in specs {
        let host = cwd.join(&spec.host);
        match fs::metadata(&host) {
            Ok(_) => hosts.push(host),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(VolumeError::SourceNotFound(host))
            }
            Err(e) => return Err(host_err(&host)(e)),
        }
    }
    let mut staged = StagedVolumes {
        guest_dir: format!("{}/{}", guest_root.trim_end_matches('/'), fresh_id(specs)),
        volumes: Vec::new(),
    };
    if specs.is_empty() {
        return Ok(staged);
    }
    for (n, (spec, host)) in specs.iter().zip(hosts).enumerate() {
        match stage_one(transport, spec, host, format!("{}/{n}", staged.guest_dir)).await {
            Ok(v) => staged.volumes.push(v),
            Err(e) => {
                let _ = remove_guest_dir(transport, &staged.guest_dir).await;
                return Err(e);
            }
        }
    }
    Ok(staged)
}

async fn stage_one(
    transport: &dyn Transport,
    spec: &VolumeSpec,
    host: PathBuf,
    guest_dir: String,
) -> Result<Staged, VolumeError> {
    let meta = fs::metadata(&host).map_err(host_err(&host))?;
    let (manifest, file_name, name_in_tar) = if meta.is_dir() {
        let h = host.clone();
        let manifest = tokio::task::spawn_blocking(move || snapshot_dir(&h))
            .await
            .map_err(|e| host_err(&host)(io::Error::other(e.to_string())))?
            .map_err(host_err(&host))?;
        (manifest, None, PathBuf::from("."))
    } else {
        let name = host
            .file_name()
            .map(OsString::from)
            .ok_or_else(|| host_err(&host)(io::Error::other("no file name")))?;
        if name.to_str().is_none() {
            return Err(host_err(&host)(io::Error::other(
                "the file name is not valid UTF-8",
            )));
        }
        let mut manifest = Manifest::new();
        manifest.insert(
            PathBuf::from(&name),
            record_of(&host).map_err(host_err(&host))?,
        );
        (manifest, Some(name.clone()), PathBuf::from(name))
    };
    // Files are sent as they are now; the (follow) metadata above made a symlinked volume source
    // a directory or file, so the top is followed like a bind mount would.
    let (reader, pack) = pack_stream(host.clone(), name_in_tar, true);
    let sent = put_tar(transport, &guest_dir, reader).await;
    let packed = pack.finish().await;
    packed.map_err(host_err(&host))?;
    sent.map_err(|source| VolumeError::Guest {
        path: host.clone(),
        source,
    })?;
    Ok(Staged {
        spec: spec.clone(),
        host,
        guest_dir,
        file_name,
        manifest,
    })
}

/// Sends the archive read from `reader` with PutTar into the guest directory `dest`.
async fn put_tar(
    transport: &dyn Transport,
    dest: &str,
    mut reader: impl AsyncRead + Unpin,
) -> Result<(), OpError> {
    let conn = AgentConn::request(
        transport,
        Request::PutTar {
            dest: dest.to_string(),
        },
    )
    .await?;
    let (mut rd, mut wr, _) = conn.into_split();
    let mut digest = StreamDigest::new();
    let mut buf = vec![0u8; DATA_CHUNK_LEN];
    let sent: Result<(), OpError> = async {
        loop {
            let n = reader.read(&mut buf).await.map_err(|source| OpError::Io {
                context: "reading the volume".into(),
                source,
            })?;
            if n == 0 {
                break;
            }
            digest.update(&buf[..n]);
            wr.send(&HostMsg::Data(buf[..n].to_vec())).await?;
        }
        Ok(())
    }
    .await;
    if let Err(e) = sent {
        // The agent may have said why it stopped reading.
        return match rd.recv().await {
            Ok(AgentMsg::Error(err)) => Err(SessionError::Agent(err).into()),
            _ => Err(e),
        };
    }
    wr.send(&HostMsg::End(digest.finish())).await?;
    match rd.recv().await? {
        AgentMsg::Done => Ok(()),
        other => Err(SessionError::unexpected("Done", &other).into()),
    }
}

fn sha256_file(path: &Path) -> io::Result<[u8; 32]> {
    let mut f = File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(h.finalize().into());
        }
        h.update(&buf[..n]);
    }
}

fn record_of(path: &Path) -> io::Result<Record> {
    let m = fs::symlink_metadata(path)?;
    let t = m.file_type();
    Ok(if t.is_symlink() {
        Record::Symlink(fs::read_link(path)?)
    } else if t.is_dir() {
        Record::Dir
    } else if t.is_file() {
        Record::File {
            size: m.len(),
            mtime: (m.mtime(), m.mtime_nsec()),
            mode: m.mode() & 0o777,
            sha256: sha256_file(path)?,
        }
    } else {
        Record::Other
    })
}

/// Every path below `root` (dotfiles included, symlinks not followed).
fn snapshot_dir(root: &Path) -> io::Result<Manifest> {
    let mut out = Manifest::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        for entry in fs::read_dir(root.join(&rel))? {
            let entry = entry?;
            let child = rel.join(entry.file_name());
            let rec = record_of(&entry.path())?;
            if rec == Record::Dir {
                stack.push(child.clone());
            }
            out.insert(child, rec);
        }
    }
    Ok(out)
}

/// The host entry still is what was staged.
fn host_unchanged(path: &Path, rec: &Record) -> bool {
    let Ok(m) = fs::symlink_metadata(path) else {
        return false;
    };
    match rec {
        Record::File { size, mtime, .. } => {
            m.file_type().is_file() && m.len() == *size && (m.mtime(), m.mtime_nsec()) == *mtime
        }
        Record::Symlink(target) => {
            m.file_type().is_symlink() && fs::read_link(path).ok().as_ref() == Some(target)
        }
        Record::Dir => m.is_dir(),
        Record::Other => false,
    }
}

/// The guest entry is what was staged (the container did not touch it).
fn guest_same(path: &Path, rec: &Record) -> bool {
    let Ok(m) = fs::symlink_metadata(path) else {
        return false;
    };
    match rec {
        Record::File {
            size, mode, sha256, ..
        } => {
            m.file_type().is_file()
                && m.len() == *size
                && m.mode() & 0o777 == *mode
                && sha256_file(path).ok().as_ref() == Some(sha256)
        }
        Record::Symlink(target) => {
            m.file_type().is_symlink() && fs::read_link(path).ok().as_ref() == Some(target)
        }
        Record::Dir => m.is_dir(),
        Record::Other => false,
    }
}

/// True when every existing component of `rel`'s parent below `root` is a real directory.
fn parents_are_dirs(root: &Path, rel: &Path) -> bool {
    let mut cur = root.to_path_buf();
    let parts: Vec<_> = rel.components().collect();
    for part in parts.iter().take(parts.len().saturating_sub(1)) {
        cur.push(part);
        match fs::symlink_metadata(&cur) {
            Ok(m) if m.is_dir() => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return true,
            _ => return false,
        }
    }
    true
}

/// Creates missing parent directories of `root/rel` (never through a symlink).
fn ensure_parents(root: &Path, rel: &Path) -> io::Result<()> {
    let mut cur = root.to_path_buf();
    let parts: Vec<_> = rel.components().collect();
    for part in parts.iter().take(parts.len().saturating_sub(1)) {
        cur.push(part);
        match fs::symlink_metadata(&cur) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::NotADirectory,
                    format!("{} is not a directory", cur.display()),
                ))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => fs::create_dir(&cur)?,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Replaces `dst` (a file or symlink, or nothing) with `src` from the unpacked tree.
fn install(src: &Path, dst: &Path) -> io::Result<()> {
    match fs::rename(src, dst) {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EXDEV) => {
            let parent = dst.parent().unwrap_or(Path::new("."));
            let m = fs::symlink_metadata(src)?;
            if m.file_type().is_symlink() {
                let tmp = parent.join(format!(".vcontainer-link-{}", fresh_id(&[])));
                std::os::unix::fs::symlink(fs::read_link(src)?, &tmp)?;
                return fs::rename(&tmp, dst);
            }
            let tmp = tempfile::Builder::new()
                .prefix(".vcontainer-sync-")
                .tempfile_in(parent)?;
            fs::copy(src, tmp.path())?;
            tmp.persist(dst).map(|_| ()).map_err(|e| e.error)
        }
        Err(e) => Err(e),
    }
}

/// Applies the unpacked guest tree `guest` (the mount's contents) to the host directory `host`.
fn apply_dir(guest: &Path, host: &Path, manifest: &Manifest, report: &mut SyncReport) {
    let mut seen = std::collections::BTreeSet::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let Ok(entries) = fs::read_dir(guest.join(&rel)) else {
            continue;
        };
        let mut names: Vec<OsString> = entries.flatten().map(|e| e.file_name()).collect();
        names.sort();
        for name in names {
            let rel_c = rel.join(&name);
            seen.insert(rel_c.clone());
            let g = guest.join(&rel_c);
            let h = host.join(&rel_c);
            let Ok(gm) = fs::symlink_metadata(&g) else {
                continue;
            };
            let staged = manifest.get(&rel_c);
            let changed = staged.is_none_or(|s| !guest_same(&g, s));
            if !parents_are_dirs(host, &rel_c) {
                if changed {
                    report.notes.push(format!(
                        "not written: {} (a parent on the host is no longer a directory)",
                        h.display()
                    ));
                }
                continue;
            }
            let hm = fs::symlink_metadata(&h).ok();
            if gm.is_dir() {
                match hm {
                    Some(m) if m.is_dir() => stack.push(rel_c),
                    None => {
                        // New in the container: create it. Staged but deleted on the host: only
                        // recreated if something below it is written.
                        if staged.is_none() {
                            if let Err(e) =
                                ensure_parents(host, &rel_c).and_then(|_| fs::create_dir(&h))
                            {
                                report
                                    .notes
                                    .push(format!("not created: {}: {e}", h.display()));
                                continue;
                            }
                            let _ = fs::set_permissions(
                                &h,
                                fs::Permissions::from_mode(gm.mode() & 0o777),
                            );
                            report.written.push(h.clone());
                        }
                        stack.push(rel_c);
                    }
                    Some(_) => {
                        let replaceable = changed
                            && staged.is_some_and(|s| *s != Record::Dir && host_unchanged(&h, s));
                        if replaceable
                            && fs::remove_file(&h).and_then(|_| fs::create_dir(&h)).is_ok()
                        {
                            report.written.push(h.clone());
                            stack.push(rel_c);
                        } else {
                            report.notes.push(format!(
                                "kept {} (the container made it a directory, the host changed it)",
                                h.display()
                            ));
                        }
                    }
                }
                continue;
            }
            if !changed {
                continue;
            }
            if !(gm.file_type().is_file() || gm.file_type().is_symlink()) {
                continue;
            }
            if hm.as_ref().is_some_and(|m| m.is_dir()) {
                report.notes.push(format!(
                    "kept the directory {} (the container replaced it with a file)",
                    h.display()
                ));
                continue;
            }
            if let (Some(s), Some(_)) = (staged, &hm) {
                if !host_unchanged(&h, s) {
                    report.notes.push(format!(
                        "{}: changed on the host and in the container; the container's version was written",
                        h.display()
                    ));
                }
            }
            match ensure_parents(host, &rel_c).and_then(|_| install(&g, &h)) {
                Ok(()) => report.written.push(h),
                Err(e) => report
                    .notes
                    .push(format!("not written: {}: {e}", h.display())),
            }
        }
    }
    // Deletions, deepest first: only what was staged, is gone in the guest, and is unchanged on
    // the host.
    for (rel, rec) in manifest.iter().rev() {
        if seen.contains(rel) || *rec == Record::Other {
            continue;
        }
        let h = host.join(rel);
        if !parents_are_dirs(host, rel) || fs::symlink_metadata(&h).is_err() {
            continue;
        }
        if !host_unchanged(&h, rec) {
            report.notes.push(format!(
                "kept {} (deleted in the container, changed on the host)",
                h.display()
            ));
            continue;
        }
        let removed = match rec {
            Record::Dir => fs::remove_dir(&h),
            _ => fs::remove_file(&h),
        };
        match removed {
            Ok(()) => report.deleted.push(h),
            Err(_) if *rec == Record::Dir => report.notes.push(format!(
                "kept {} (deleted in the container, holds files created on the host)",
                h.display()
            )),
            Err(e) => report
                .notes
                .push(format!("not deleted: {}: {e}", h.display())),
        }
    }
}

/// Applies a file volume: the container's version is written if it changed it.
fn apply_file(guest: &Path, host: &Path, rec: &Record, report: &mut SyncReport) {
    let Ok(gm) = fs::symlink_metadata(guest) else {
        return;
    };
    if !gm.file_type().is_file() || guest_same(guest, rec) {
        return;
    }
    if !host_unchanged(host, rec) {
        report.notes.push(format!(
            "{}: changed on the host and in the container; the container's version was written",
            host.display()
        ));
    }
    match install(guest, host) {
        Ok(()) => report.written.push(host.to_path_buf()),
        Err(e) => report
            .notes
            .push(format!("not written: {}: {e}", host.display())),
    }
}

async fn remove_guest_dir(transport: &dyn Transport, dir: &str) -> Result<(), VolumeError> {
    let mut out = tokio::io::sink();
    let mut err = Vec::new();
    let status = exec(
        transport,
        ExecRequest {
            argv: vec!["rm".into(), "-rf".into(), "--".into(), dir.into()],
            ..Default::default()
        },
        ExecIo {
            stdout: &mut out,
            stderr: &mut err,
            stdin: None,
            signals: None,
        },
    )
    .await
    .map_err(|e| VolumeError::Cleanup {
        dir: dir.to_string(),
        detail: e.to_string(),
    })?;
    if status.shell_code() != 0 {
        return Err(VolumeError::Cleanup {
            dir: dir.to_string(),
            detail: String::from_utf8_lossy(&err).trim().to_string(),
        });
    }
    Ok(())
}

/// Receives the guest directory `path` with GetTar and unpacks it into `dest` (digest checked
/// before the caller uses anything).
async fn fetch_tree(transport: &dyn Transport, path: &str, dest: &Path) -> Result<(), FetchError> {
    let conn = AgentConn::request(
        transport,
        Request::GetTar {
            path: path.to_string(),
        },
    )
    .await
    .map_err(|e| FetchError::Op(e.into()))?;
    let (mut rd, _wr, _) = conn.into_split();
    let (mut sink, unpack) = unpack_sink(dest.to_path_buf(), Limits::default());
    let mut digest = StreamDigest::new();
    let received: Result<(), OpError> = async {
        loop {
            match rd.recv().await? {
                AgentMsg::Data(chunk) => {
                    digest
                        .update_capped(&chunk, MAX_RECEIVE_BYTES)
                        .map_err(SessionError::Protocol)?;
                    // A refused archive stops the unpacker; keep reading to see the end.
                    let _ = sink.write_all(&chunk).await;
                }
                AgentMsg::End(end) => {
                    digest.verify(&end).map_err(SessionError::Protocol)?;
                    return Ok(());
                }
                other => return Err(SessionError::unexpected("Data or End", &other).into()),
            }
        }
    }
    .await;
    let _ = sink.shutdown().await;
    drop(sink);
    let unpacked = unpack.finish().await;
    received.map_err(FetchError::Op)?;
    unpacked.map_err(FetchError::Tar)?;
    Ok(())
}

enum FetchError {
    Op(OpError),
    Tar(TarError),
}

impl StagedVolumes {
    /// `-v GUEST:CTR[:MODE]` for each volume, to put right after the engine's `run`.
    pub fn engine_args(&self) -> Vec<String> {
        let mut out = Vec::new();
        for v in &self.volumes {
            let mut arg = format!("{}:{}", v.bind_source(), v.spec.container);
            if let Some(mode) = &v.spec.mode {
                arg.push(':');
                arg.push_str(mode);
            }
            out.push("-v".to_string());
            out.push(arg);
        }
        out
    }

    /// The guest directory of this run (`ROOT/ID`).
    pub fn guest_dir(&self) -> &str {
        &self.guest_dir
    }

    pub fn is_empty(&self) -> bool {
        self.volumes.is_empty()
    }

    /// Brings rw volumes back to the host (see the module comment for the rules), then removes
    /// the guest directory. Call it also when the container failed. If a volume cannot be synced,
    /// the guest directory is kept and the error names it.
    pub async fn sync_back(self, transport: &dyn Transport) -> Result<SyncReport, VolumeError> {
        let mut report = SyncReport::default();
        if self.volumes.is_empty() {
            return Ok(report);
        }
        let mut failures = Vec::new();
        let mut rw = 0;
        for v in self.volumes.iter().filter(|v| !v.spec.read_only()) {
            rw += 1;
            match sync_one(transport, v, &mut report).await {
                Ok(()) => report.volumes_synced += 1,
                Err(e) => failures.push(e),
            }
        }
        if let Some(first) = failures.into_iter().next() {
            let failed = rw - report.volumes_synced;
            return Err(VolumeError::SyncFailed {
                failed,
                total: rw,
                dir: self.guest_dir,
                first: Box::new(first),
            });
        }
        remove_guest_dir(transport, &self.guest_dir).await?;
        Ok(report)
    }

    /// For a detached container (`run -d`): the guest directory stays (the container still uses
    /// it), nothing is synced. Returns a note for the user (empty without volumes).
    pub fn leave(self) -> String {
        if self.volumes.is_empty() {
            return String::new();
        }
        let hosts: Vec<String> = self
            .volumes
            .iter()
            .map(|v| v.host.display().to_string())
            .collect();
        format!(
            "volumes of the detached container are copies in the guest at {} (from {}); \
             changes there are not copied back to the host",
            self.guest_dir,
            hosts.join(", ")
        )
    }

    /// Removes the guest directory without syncing (the container never ran).
    pub async fn discard(self, transport: &dyn Transport) -> Result<(), VolumeError> {
        if self.volumes.is_empty() {
            return Ok(());
        }
        remove_guest_dir(transport, &self.guest_dir).await
    }
}

async fn sync_one(
    transport: &dyn Transport,
    v: &Staged,
    report: &mut SyncReport,
) -> Result<(), VolumeError> {
    // Unpack next to the data so results are renamed into place, not copied; hidden, and removed
    // when done (for a file volume this directory is its parent's, the only thing written there).
    let scratch_parent = match &v.file_name {
        None => v.host.clone(),
        Some(_) => v
            .host
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("/")),
    };
    let scratch = tempfile::Builder::new()
        .prefix(".vcontainer-sync-")
        .tempdir_in(&scratch_parent)
        .map_err(host_err(&v.host))?;
    fetch_tree(transport, &v.guest_dir, scratch.path())
        .await
        .map_err(|e| match e {
            FetchError::Op(source) => VolumeError::Guest {
                path: v.host.clone(),
                source,
            },
            FetchError::Tar(source) => VolumeError::Tar {
                path: v.host.clone(),
                source,
            },
        })?;
    // GetTar names entries after the last component of the guest directory.
    let top = Path::new(&v.guest_dir)
        .file_name()
        .map(PathBuf::from)
        .unwrap_or_default();
    let guest_root = scratch.path().join(top);
    let scratch_name = scratch.path().file_name().map(PathBuf::from);
    let host = v.host.clone();
    let manifest = v.manifest.clone();
    let file_name = v.file_name.clone();
    let mut part = SyncReport::default();
    let part = tokio::task::spawn_blocking(move || {
        match &file_name {
            Some(name) => {
                if let Some(rec) = manifest.get(Path::new(name)) {
                    apply_file(&guest_root.join(name), &host, rec, &mut part);
                }
            }
            None => {
                // Our scratch directory is inside the mount: never apply or delete it.
                let mut manifest = manifest;
                if let Some(n) = &scratch_name {
                    manifest.remove(n);
                }
                apply_dir(&guest_root, &host, &manifest, &mut part)
            }
        }
        part
    })
    .await
    .map_err(|e| host_err(&v.host)(io::Error::other(e.to_string())))?;
    report.written.extend(part.written);
    report.deleted.extend(part.deleted);
    report.notes.extend(part.notes);
    drop(scratch);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(p: &Path, data: &[u8]) {
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent).expect("mkdir");
        }
        fs::write(p, data).expect("write");
    }

    /// Host dir + a guest copy of it, as staging would leave them.
    fn setup() -> (tempfile::TempDir, PathBuf, PathBuf, Manifest) {
        let d = tempfile::tempdir().expect("tempdir");
        let host = d.path().join("host");
        write(&host.join("keep"), b"keep");
        write(&host.join("change"), b"old");
        write(&host.join("delete-me"), b"x");
        write(&host.join("host-edits"), b"v1");
        write(&host.join(".dot"), b"dot");
        write(&host.join("sub/gone"), b"g");
        let manifest = snapshot_dir(&host).expect("snapshot");
        let guest = d.path().join("guest");
        let tar =
            crate::util::host_tar::pack_to(&host, Path::new("."), false, Vec::new()).expect("pack");
        fs::create_dir(&guest).expect("mkdir");
        crate::util::host_tar::unpack_safely(&tar[..], &guest, &Limits::default()).expect("unpack");
        (d, host, guest, manifest)
    }

    #[test]
    fn sync_rules() {
        let (d, host, guest, manifest) = setup();
        // The container:
        write(&guest.join("change"), b"new content");
        write(&guest.join("created/deep"), b"c");
        fs::remove_file(guest.join("delete-me")).expect("rm");
        fs::remove_file(guest.join("host-edits")).expect("rm");
        fs::remove_dir_all(guest.join("sub")).expect("rm");
        // The host meanwhile:
        std::thread::sleep(std::time::Duration::from_millis(20));
        write(&host.join("host-edits"), b"v2 from the host");
        write(&host.join("host-new"), b"mine");
        write(&host.join("sub/host-file"), b"mine");
        write(&d.path().join("outside"), b"o");

        let mut report = SyncReport::default();
        apply_dir(&guest, &host, &manifest, &mut report);

        assert_eq!(fs::read(host.join("change")).expect("read"), b"new content");
        assert_eq!(fs::read(host.join("created/deep")).expect("read"), b"c");
        assert!(!host.join("delete-me").exists());
        assert_eq!(
            fs::read(host.join("host-edits")).expect("read"),
            b"v2 from the host"
        );
        assert_eq!(fs::read(host.join("host-new")).expect("read"), b"mine");
        assert_eq!(fs::read(host.join(".dot")).expect("read"), b"dot");
        assert_eq!(fs::read(host.join("keep")).expect("read"), b"keep");
        assert!(!host.join("sub/gone").exists());
        assert_eq!(fs::read(host.join("sub/host-file")).expect("read"), b"mine");
        assert_eq!(fs::read(d.path().join("outside")).expect("read"), b"o");
        assert!(
            report.notes.iter().any(|n| n.contains("host-edits")),
            "{report:?}"
        );
        assert!(report.notes.iter().any(|n| n.contains("sub")), "{report:?}");
    }

    #[test]
    fn a_host_symlink_is_not_followed_by_writes() {
        let (d, host, guest, manifest) = setup();
        let elsewhere = d.path().join("elsewhere");
        fs::create_dir(&elsewhere).expect("mkdir");
        // The host replaced `sub` by a link to somewhere else; the container writes into sub.
        fs::remove_dir_all(host.join("sub")).expect("rm");
        std::os::unix::fs::symlink(&elsewhere, host.join("sub")).expect("symlink");
        write(&guest.join("sub/new"), b"n");
        let mut report = SyncReport::default();
        apply_dir(&guest, &host, &manifest, &mut report);
        assert!(!elsewhere.join("new").exists());
        assert!(!elsewhere.join("gone").exists());
    }

    #[test]
    fn ids_are_fresh() {
        assert_ne!(fresh_id(&[]), fresh_id(&[]));
        assert_eq!(fresh_id(&[]).len(), 16);
    }
}
