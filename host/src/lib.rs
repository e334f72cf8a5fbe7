//! vcontainer host driver: the library behind the `vcontainer`, `vdkr` and `vpdmn` binaries.
//!
//! # Implementation design
//!
//! A command boots (or reuses) a QEMU VM of the target architecture whose PID 1 is our agent,
//! talks to the agent over vsock with the postcard protocol (`vcontainer-protocol`), streams
//! images and files in and storage out, and stops the VM again. OCI layouts are read and written
//! by the VM-free `vcontainer-oci` crate; guest boot images are built by `vcontainer-initramfs`.
//!
//! The modules form layers. Each imports only from the layers before it in this list (bottom
//! first), never from a later one, and no two files import from each other, directly or
//! around a cycle; `tests/tests/layers.rs` checks both.
//!
//! 1. [`util`]: leaves — private files, `$PATH` lookup, log tails, the safe tar packer and
//!    unpacker (the guest is untrusted), progress reporting, the host terminal.
//! 2. [`vm`]: one QEMU process — its argv, the vhost-user vsock backend, port-forward specs, the
//!    guard process that outlives a killed CLI, and finding our VMs among the host's processes.
//! 3. [`transport`]: reaching the agent — kernel vsock, the vhost-user unix socket, or a plain
//!    unix socket for the agent in host test mode.
//! 4. [`state`]: per-instance state on the host — the state directory, its lock, the ext4 state
//!    disk, the records of a memory-resident VM, and the tool (vdkr/vpdmn ↔ engine) choice.
//! 5. [`session`]: one protocol conversation with the agent — `Hello`, framed reads and writes.
//! 6. [`ops`]: the operations, one per conversation — exec, tar in and out, OCI import, storage
//!    export, the engine API proxy.
//! 7. [`guest`]: a guest as a whole — its boot images and agent binary, the options and registry
//!    settings it boots with, and the instance (one-shot or memory-resident) that owns one VM.
//! 8. [`engine`]: the container engine as the user drives it — `vimport` sources, host paths
//!    bind-mounted as volumes, the host-native engine CLI over the guest's API socket.
//! 9. [`bundling`]: build-time bundling — BUNDLED_CONTAINERS, batch import, autostart units,
//!    storage installed into a target rootfs, bundle packages, images fetched by digest.
//! 10. [`mod@bench`]: the benchmark commands and the test image fixtures they share with the tests.
//! 11. [`cli`]: argument grammars (clap) and entry points. Errors are typed (`thiserror`) below
//!     this layer and become `anyhow` here; the bench commands use `anyhow` too.
//! 12. `bin/`: `vcontainer`, `vdkr`, `vpdmn` — each one call into [`cli`].

pub mod bench;
pub mod bundling;
pub mod cli;
pub mod engine;
pub mod guest;
pub mod ops;
pub mod session;
pub mod state;
pub mod transport;
pub mod util;
pub mod vm;
