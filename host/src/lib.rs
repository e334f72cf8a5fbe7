//! vcontainer host driver: the library behind the `vcontainer`, `vdkr` and `vpdmn` binaries.

pub mod session;
pub mod transport;
pub mod ops;
pub mod progress;
