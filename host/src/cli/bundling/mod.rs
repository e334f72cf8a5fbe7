//! The build-time bundling commands (`vcontainer batch-import`, `populate-rootfs`, `spec`,
//! `units`, `install-storage`, `bundle`, `fetch`): clap arguments and entry points over the
//! `bundling` library, the way `cli/oci.rs` drives the `vcontainer-oci` crate.

pub mod batch;
pub mod bundle;
pub mod driver_args;
pub mod populate;
pub mod remote;
pub mod rootfs;
pub mod spec;
pub mod units;
