//! Errors of the VM launcher.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum VmError {
    #[error(
        "{binary} not found in PATH; install the Debian package {package} (QEMU 7.2 or newer)"
    )]
    QemuMissing {
        binary: &'static str,
        package: &'static str,
    },

    #[error(
        "vhost-device-vsock not found in PATH or ~/.cargo/bin; install it with \
         `cargo install vhost-device-vsock --version 0.3.0`"
    )]
    BackendMissing,

    #[error(
        "cannot start the VM guard: {exe} is not vdkr, vpdmn or vcontainer, and no `vcontainer` \
         binary is beside it or in PATH"
    )]
    GuardMissing { exe: PathBuf },

    #[error("vhost-device-vsock (pid {pid}) exited with {status} before it listened on {socket}; its log ends with:\n{log_tail}")]
    BackendDied {
        pid: u32,
        status: String,
        socket: PathBuf,
        log_tail: String,
    },

    #[error("vhost-device-vsock (pid {pid}) did not create {socket} within {waited_ms} ms; its log ends with:\n{log_tail}")]
    BackendTimeout {
        pid: u32,
        socket: PathBuf,
        waited_ms: u128,
        log_tail: String,
    },

    #[error("cannot forward host port {forward}: {source} (is another program or VM using host port {port}/{proto}? pick another with -p HOST:GUEST)", port = forward.host, proto = forward.proto)]
    PortUnavailable {
        forward: super::port_forward::PortForward,
        source: std::io::Error,
    },

    #[error("invalid VM spec: {0}")]
    InvalidSpec(String),

    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

impl VmError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        VmError::Io {
            action,
            path: path.into(),
            source,
        }
    }
}
