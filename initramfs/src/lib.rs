//! Builds the guest boot artifacts for one architecture: kernel, initramfs (the agent as `/init`
//! plus the kernel modules it loads) and the squashfs root filesystem with the container engines.

mod arch;

pub use arch::{Arch, UnknownArch};
