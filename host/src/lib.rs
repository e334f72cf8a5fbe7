//! vcontainer host driver: the library behind the `vcontainer`, `vdkr` and `vpdmn` binaries.

pub mod agent_binary;
pub mod bench;
pub mod cli;
pub mod fixture;
pub mod guest_options;
pub mod images;
pub mod instance;
pub mod ops;
pub mod progress;
pub mod resident;
pub mod session;
pub mod state;
pub mod transport;
pub mod vm;
