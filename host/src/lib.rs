//! vcontainer host driver: the library behind the `vcontainer`, `vdkr` and `vpdmn` binaries.

pub mod agent_binary;
pub mod bench;
pub mod bench_batch;
pub mod bench_memres;
pub mod bench_oci;
pub mod bundling;
pub mod cli;
pub mod config;
pub mod fixture;
pub mod guest_options;
pub mod host_cli;
pub mod host_tar;
pub mod images;
pub mod import_source;
pub mod instance;
pub mod oci;
pub mod ops;
pub mod progress;
pub mod registry;
pub mod resident;
pub mod session;
pub mod state;
pub mod terminal;
pub mod transport;
pub mod vm;
pub mod volumes;
