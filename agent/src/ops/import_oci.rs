//! ImportOci: receive an OCI image layout as a tar stream, then `skopeo copy` it into the
//! engine's storage (docker-daemon: or containers-storage:), streaming skopeo's output.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};

use vcontainer_protocol::{AgentMsg, ErrorKind};

use super::put_tar::unpack_stream;
use super::streaming::{spawn_piped, stream_child};
use super::OpError;
use crate::agent::Agent;
use crate::conn::{FrameReader, FrameWriter};
use crate::process;
use crate::stream::receive_stream;

/// skopeo refuses to copy without a signature policy; the guest only imports what the host
/// hands it, so accept anything.
pub const POLICY_JSON: &str = "{\"default\":[{\"type\":\"insecureAcceptAnything\"}]}\n";

pub async fn import_oci(
    agent: &Agent,
    reference: &str,
    mut rd: FrameReader,
    wr: &mut FrameWriter,
) -> Result<(), OpError> {
    let destination = match check_reference(reference).and_then(|()| destination(agent, reference))
    {
        Ok(d) => d,
        Err(e) => {
            let _ = receive_stream(&mut rd, None).await;
            return Err(e);
        }
    };
    let staging = StagingDir::create(&agent.layout.staging_dir())?;
    unpack_stream(&mut rd, staging.path.clone()).await?;
    agent.engine.start().await?;
    ensure_policy(&agent.layout.etc_dir)?;

    // Where the daemon's log stands now: a failure quotes what the daemon wrote after this.
    let log_mark = agent
        .engine
        .daemon_log()
        .map(|p| (fs::metadata(&p).map_or(0, |m| m.len()), p));
    let source = format!("oci:{}", staging.path.display());
    let mut cmd = process::command("skopeo", &["copy", &source, &destination], &[]);
    cmd.stdin(Stdio::null());
    let running = spawn_piped(agent, &mut cmd, "skopeo")?;
    let status = stream_child(running, rd, wr).await?;
    if status != vcontainer_protocol::ExitStatus::Code(0) {
        // A full state disk often surfaces from skopeo as a broken pipe to the engine, not as
        // ENOSPC: quote the daemon's own words, and say what the disk looks like.
        let killed = match status {
            vcontainer_protocol::ExitStatus::Signal(n) => Some(format!(
                "vcontainer-agent: skopeo (copying the image into the engine) was killed by signal {n}\n"
            )),
            vcontainer_protocol::ExitStatus::Code(_) => None,
        };
        let notes = killed
            .into_iter()
            .chain(log_mark.and_then(|(at, log)| space_errors_since(&log, at)))
            .chain(full_disk_note(
                &agent.layout.state_dir,
                tree_bytes(&staging.path),
            ));
        for note in notes {
            let _ = wr.send(&AgentMsg::Stderr(note.into_bytes())).await;
        }
    }
    wr.send(&AgentMsg::Exited(status)).await?;
    Ok(())
}

/// The last "no space left on device" line the daemon logged after byte `from` of `log`.
fn space_errors_since(log: &Path, from: u64) -> Option<String> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = fs::File::open(log).ok()?;
    f.seek(SeekFrom::Start(from)).ok()?;
    let mut text = Vec::new();
    f.take(1 << 20).read_to_end(&mut text).ok()?;
    let text = String::from_utf8_lossy(&text);
    let line = text
        .lines()
        .rev()
        .find(|l| l.contains("no space left on device"))?;
    let line: String = line.chars().take(400).collect();
    Some(format!(
        "vcontainer-agent: the engine ran out of space on the state disk: {line}\n"
    ))
}

/// A line for the user if the file system holding `dir` is (nearly) full: less than 64 MiB or
/// 2% free, or less free than the staged image (`need` bytes) would take again in the engine.
fn full_disk_note(dir: &Path, need: u64) -> Option<String> {
    let st = nix::sys::statvfs::statvfs(dir).ok()?;
    let unit = st.fragment_size() as u64;
    let free = st.blocks_available() as u64 * unit;
    let total = st.blocks() as u64 * unit;
    (nearly_full(free, total) || free < need).then(|| {
        format!(
            "vcontainer-agent: likely no space left on the state disk: {} MiB free of {} MiB, and the image is {} MiB; remove images (e.g. `system prune`) or use a larger state disk\n",
            free >> 20,
            total >> 20,
            need >> 20
        )
    })
}

/// Bytes of the regular files under `dir` (not following symlinks).
fn tree_bytes(dir: &Path) -> u64 {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => tree_bytes(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map_or(0, |m| m.len()),
            _ => 0,
        })
        .sum()
}

fn nearly_full(free: u64, total: u64) -> bool {
    free < (64 << 20).max(total / 50)
}

/// A reference goes into one argv element; still refuse what skopeo would take as an option.
fn check_reference(reference: &str) -> Result<(), OpError> {
    if reference.is_empty()
        || reference.starts_with('-')
        || reference
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(OpError::new(
            ErrorKind::BadRequest,
            format!("invalid image reference {reference:?}"),
        ));
    }
    Ok(())
}

fn destination(agent: &Agent, reference: &str) -> Result<String, OpError> {
    agent.engine.import_destination(reference).ok_or_else(|| {
        OpError::new(
            ErrorKind::BadRequest,
            format!("engine {} cannot import images", agent.engine.name()),
        )
    })
}

fn ensure_policy(etc: &Path) -> Result<(), OpError> {
    let policy = etc.join("containers/policy.json");
    if policy.exists() {
        return Ok(());
    }
    let dir = etc.join("containers");
    fs::create_dir_all(&dir).map_err(|e| OpError::io(dir.display(), e))?;
    fs::write(&policy, POLICY_JSON).map_err(|e| OpError::io(policy.display(), e))
}

/// A fresh directory under the staging area, removed however the import ends.
struct StagingDir {
    path: PathBuf,
}

static NEXT_STAGING: AtomicU64 = AtomicU64::new(0);

impl StagingDir {
    fn create(parent: &Path) -> Result<Self, OpError> {
        let n = NEXT_STAGING.fetch_add(1, Ordering::Relaxed);
        let path = parent.join(format!("import-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).map_err(|e| OpError::io(path.display(), e))?;
        Ok(Self { path })
    }
}

impl Drop for StagingDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn space_errors_are_quoted_from_where_the_import_began() {
        let d = tempfile::tempdir().expect("tmp");
        let log = d.path().join("dockerd.log");
        fs::write(&log, "old: no space left on device\n").expect("w");
        let mark = fs::metadata(&log).expect("md").len();
        assert!(space_errors_since(&log, mark).is_none());
        let mut text = fs::read_to_string(&log).expect("r");
        text.push_str(
            "level=error msg=\"write /var/lib/docker/tmp/x: no space left on device\"\nother\n",
        );
        fs::write(&log, text).expect("w");
        let note = space_errors_since(&log, mark).expect("a note");
        assert!(
            note.contains("ran out of space") && note.contains("tmp/x"),
            "{note}"
        );
        assert!(!note.contains("old:"), "{note}");
    }

    #[test]
    fn tree_bytes_sums_regular_files() {
        let d = tempfile::tempdir().expect("tmp");
        fs::create_dir(d.path().join("a")).expect("mkdir");
        fs::write(d.path().join("a/x"), [0u8; 100]).expect("w");
        fs::write(d.path().join("y"), [0u8; 20]).expect("w");
        assert_eq!(tree_bytes(d.path()), 120);
        // Nothing is more than a whole disk needs.
        assert!(full_disk_note(d.path(), u64::MAX).is_some());
    }

    #[test]
    fn a_disk_is_nearly_full_below_64_mib_or_2_percent() {
        assert!(nearly_full(10 << 20, 320 << 20));
        assert!(!nearly_full(100 << 20, 320 << 20));
        assert!(nearly_full(200 << 20, 16 << 30)); // 2% of 16 GiB is 327 MiB
        assert!(!nearly_full(1 << 30, 16 << 30));
    }

    #[test]
    fn references() {
        assert!(check_reference("busybox:1.36").is_ok());
        assert!(check_reference("localhost:5000/a/b@sha256:00").is_ok());
        assert!(check_reference("").is_err());
        assert!(check_reference("--src-creds=x").is_err());
        assert!(check_reference("a b").is_err());
    }

    #[test]
    fn policy_is_written_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        ensure_policy(dir.path()).expect("write");
        let p = dir.path().join("containers/policy.json");
        assert_eq!(fs::read_to_string(&p).expect("read"), POLICY_JSON);
        fs::write(&p, "{}").expect("write");
        ensure_policy(dir.path()).expect("keep");
        assert_eq!(fs::read_to_string(&p).expect("read"), "{}");
    }

    #[test]
    fn staging_dirs_are_unique_and_removed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = StagingDir::create(dir.path()).expect("a");
        let b = StagingDir::create(dir.path()).expect("b");
        assert_ne!(a.path, b.path);
        let pa = a.path.clone();
        drop(a);
        assert!(!pa.exists());
        assert!(b.path.exists());
    }
}
