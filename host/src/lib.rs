//! vcontainer host driver: the library behind the `vcontainer`, `vdkr` and `vpdmn` binaries.

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
