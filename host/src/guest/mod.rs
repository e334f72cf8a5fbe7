//! The guest a command talks to: its boot images (kernel, initramfs with our agent, engine
//! rootfs), the options it boots with, its registry settings, and the instance that owns one VM,
//! one-shot or memory-resident.

pub mod agent_binary;
pub mod boot_image;
pub mod instance;
pub mod options;
pub mod registry;
pub mod resident;
