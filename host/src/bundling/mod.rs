//! Build-time bundling, the library (what image builds call, through `cli/bundling`): batch import of many images in one boot,
//! the BUNDLED_CONTAINERS grammar, autostart units, installing storage into a target rootfs,
//! bundle packages and remote images fetched by digest. Upstream: container-cross-install.bbclass,
//! container-bundle.bbclass and `vrunner.sh --batch-import`.

pub mod batch;
pub mod bundle;
mod error;
pub mod remote;
pub mod rootfs;
pub mod spec;
pub mod target;
pub mod units;

pub use error::BundlingError;
