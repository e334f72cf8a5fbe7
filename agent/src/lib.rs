//! The vcontainer guest agent.
//!
//! As PID 1 of the guest ([`pid1`]) it boots the VM in two stages ([`stage1`]: initramfs to the
//! overlay root, [`stage2`]: pseudo filesystems, cgroup2, storage), supervises the container
//! engine ([`engine`]) and serves operations over vsock ([`server`], [`ops`]). In host test mode
//! ([`host_mode`]) the same server runs unprivileged on a unix socket.

pub mod agent;
pub mod cmdline;
pub mod conn;
pub mod console;
pub mod control;
pub mod engine;
pub mod fsops;
pub mod host_mode;
pub mod idle;
pub mod layout;
pub mod loopback;
pub mod meminfo;
pub mod modules;
pub mod net;
pub mod ops;
pub mod pid1;
pub mod power;
pub mod process;
pub mod reaper;
pub mod server;
pub mod stage1;
pub mod stage2;
pub mod stream;

/// Capabilities announced in every `Hello`.
pub const CAPABILITIES: &[&str] = &[
    "exec",
    "tar",
    "import-oci",
    "export-storage",
    "raw-source",
    "tty",
    "set-auth",
    "engine-api",
];
