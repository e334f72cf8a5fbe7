//! Support code for the integration and VM end-to-end tests in `tests/tests/`.

pub mod apt_repo;
pub mod fidelity;
pub mod foreign;
pub mod instance;
pub mod pty;
pub mod registry;
pub mod source_graph;
pub mod vm;
