//! What a guest is set up with at boot besides its state: networking, port forwards, registry
//! settings and the idle timeout of a memory-resident VM. These only take effect when a VM
//! starts; a running memory-resident VM keeps the ones it was started with.

use std::path::PathBuf;

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
}

impl Default for GuestOptions {
    fn default() -> Self {
        Self {
            network: true,
            registry: RegistryOptions::default(),
            ports: Vec::new(),
            idle_timeout_secs: 0,
        }
    }
}

/// Registry settings as the user gave them (files not read yet).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegistryOptions {
    /// Registry for unqualified image names (`--registry`); `None` with `--no-registry`.
    pub default: Option<String>,
    /// `--insecure-registry`, repeatable.
    pub insecure: Vec<String>,
    /// `--secure-registry`: verify TLS for the default registry.
    pub secure: bool,
    /// `--ca-cert FILE`: CA for the default registry's TLS certificate.
    pub ca_cert: Option<PathBuf>,
    /// `--config FILE`: registry auth file (docker `config.json` / podman `auth.json`).
    pub auth_file: Option<PathBuf>,
}

impl RegistryOptions {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// Transport protocol of a port forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PortProto {
    Tcp,
    Udp,
}

/// A host port forwarded to a guest port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PortForward {
    pub host: u16,
    pub guest: u16,
    pub proto: PortProto,
}
