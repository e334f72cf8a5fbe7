//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The workspace's target directory, found from this test binary's own path
/// (`target/<profile>/deps/<test>`).
pub fn target_profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    exe.parent()
        .and_then(Path::parent)
        .expect("test binary lives in target/<profile>/deps")
        .to_path_buf()
}

/// The host build of the agent binary, built by `cargo test` as a workspace member.
pub fn agent_binary() -> PathBuf {
    let p = target_profile_dir().join("vcontainer-agent");
    assert!(
        p.is_file(),
        "{} is missing: run `cargo build -p vcontainer-agent` (cargo test --workspace builds it)",
        p.display()
    );
    p
}

/// An agent serving operations on a unix socket in a temporary directory; killed on drop.
pub struct HostAgent {
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    pub state: PathBuf,
    child: Child,
}

impl HostAgent {
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    pub fn start_with(extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("ops.sock");
        let state = dir.path().join("state");
        std::fs::create_dir_all(&state).expect("state dir");
        let child = Command::new(agent_binary())
            .arg("serve")
            .arg("--listen-unix")
            .arg(&socket)
            .arg("--engine")
            .arg("none")
            .arg("--state-dir")
            .arg(&state)
            .args(extra)
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn agent");
        // Until a connection goes through, not until the socket file exists: the file appears at
        // bind(), a moment before listen(), and a connect in between is refused (seen in CI).
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::os::unix::net::UnixStream::connect(&socket).is_err() {
            assert!(
                Instant::now() < deadline,
                "agent did not listen on its socket"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        Self {
            dir,
            socket,
            state,
            child,
        }
    }

    pub fn transport(&self) -> vcontainer::transport::UnixTransport {
        vcontainer::transport::UnixTransport::new(&self.socket)
    }
}

impl Drop for HostAgent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
