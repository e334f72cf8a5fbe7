//! Builds the guest boot artifacts for one architecture: kernel, initramfs (the agent as `/init`
//! plus the kernel modules it loads) and the squashfs root filesystem with the container engines.
//!
//! ```no_run
//! use vcontainer_initramfs::{build, Arch, BuildRequest};
//! let req = BuildRequest::new(Arch::Aarch64, "target/aarch64-unknown-linux-musl/agent/vcontainer-agent", "/home/me/.cache/vcontainer");
//! let image = build(&req, &mut |p| eprintln!("{p}"))?;
//! println!("{} {}", image.kernel.display(), image.kernel_version);
//! # Ok::<(), vcontainer_initramfs::BuildError>(())
//! ```

mod agent;
mod apt;
mod arch;
mod cache;
pub mod cpio;
mod deb;
mod error;
mod export;
mod image;
pub mod image_dir;
mod initramfs;
mod kernel;
mod kernel_build;
pub mod kernel_config;
pub mod lock;
pub mod manifest;
mod modfile;
mod modinfo;
pub mod modules;
mod modules_initramfs;
mod package_file;
pub mod packages;
mod progress;
mod rootfs;
pub mod rootfs_agent;
mod sources;
mod sysfiles;
mod tool;

pub use arch::{Arch, UnknownArch};
pub use cache::BUILDER_VERSION;
pub use error::{BuildError, ToolFailure};
pub use export::export as export_image_dir;
pub use image::{build, cached, lock_of, BuildRequest, GuestImage};
pub use initramfs::MODULES_ORDER_PATH;
pub use kernel::{fetch_closure as fetch_kernel_closure, KernelInfo, KernelPackage, MODULES_DIR};
pub use kernel_build::{build_kernel, BuiltKernel};
pub use lock::Lock;
pub use modules_initramfs::modules_initramfs;
pub use package_file::{fetch_deb, fetch_package_file};
pub use progress::{Progress, Stage};
pub use rootfs::{BASE_PACKAGES, ENGINE_PACKAGES, ROOTFS_SUITE};
pub use sources::Mirrors;
