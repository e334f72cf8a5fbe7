//! Launching the guest VM: the QEMU command line (pure, in `qemu`), the choice between KVM and TCG
//! (`accel`), the vhost-user vsock backend (`backend`), the supervised QEMU process (`running`)
//! and the guard process that keeps them tied together beyond the CLI's life (`guard`).

pub mod accel;
pub mod backend;
mod error;
pub mod guard;
pub mod port_forward;
mod qemu;
pub mod route;
pub mod running;
pub mod scan;

pub use accel::{choose_accel, AccelChoice, KvmFacts};
pub use backend::{kernel_vsock_usable, pick_guest_cid, qemu_log_says_cid_in_use, VsockBackend};
pub use error::VmError;
pub use qemu::{
    kernel_cmdline, netdev_user, qemu_argv, qemu_binary, qemu_package, Accel, Machine, VmSpec,
    VsockDevice,
};
pub use running::{check_host_ports, spawn_vm, DetachedVm, LaunchFiles, RunningVm};
