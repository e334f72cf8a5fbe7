//! What a guest is set up with at boot besides its state: networking, port forwards, registry
//! settings and the idle timeout of a memory-resident VM. These only take effect when a VM
//! starts; a running memory-resident VM keeps the ones it was started with.

use crate::guest::boot_image::ImageChoice;
use crate::guest::registry::RegistryOptions;
use crate::vm::port_forward::PortForward;
use vcontainer_protocol::StorageDriver;

/// Boot-time settings of one VM.
#[derive(Debug, Clone)]
pub struct GuestOptions {
    /// QEMU user networking for the guest (registries, pulls, port forwards).
    pub network: bool,
    pub registry: RegistryOptions,
    /// Host ports forwarded into the guest (`memres start -p H:G[/udp]`).
    pub ports: Vec<PortForward>,
    /// Seconds without an operation after which a memory-resident VM stops itself; 0 never.
    pub idle_timeout_secs: u64,
    /// Which kernel, initramfs and root image the VM boots.
    pub image: ImageChoice,
    /// The engine's storage driver; `None`: what the storage already holds, else the engine's
    /// default (docker overlay2, podman vfs).
    pub storage_driver: Option<StorageDriver>,
}

impl Default for GuestOptions {
    fn default() -> Self {
        Self {
            network: true,
            registry: RegistryOptions::default(),
            ports: Vec::new(),
            idle_timeout_secs: 0,
            image: ImageChoice::default(),
            storage_driver: None,
        }
    }
}
