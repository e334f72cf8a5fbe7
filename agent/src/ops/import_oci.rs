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

    let source = format!("oci:{}", staging.path.display());
    let mut cmd = process::command("skopeo", &["copy", &source, &destination], &[]);
    cmd.stdin(Stdio::null());
    let running = spawn_piped(agent, &mut cmd, "skopeo")?;
    let status = stream_child(running, rd, wr).await?;
    wr.send(&AgentMsg::Exited(status)).await?;
    Ok(())
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
