//! vcontainer host driver: the library behind the `vcontainer`, `vdkr` and `vpdmn` binaries.

pub mod session;
pub mod transport;
pub mod ops;
pub mod progress;
pub mod agent_binary;
pub mod vm;
pub mod state;
pub mod cli;
pub mod images;
pub mod instance;
pub mod bench;
