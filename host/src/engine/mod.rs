//! The container engine as the user drives it: `vimport` sources, host paths bind-mounted as
//! volumes, and the host-native engine CLI over the guest's API socket.

pub mod host_cli;
pub mod import_source;
pub mod volumes;
