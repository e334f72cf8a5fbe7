//! `--storage-driver [ENGINE=]DRIVER` of the commands that may write both engines' storage
//! (`batch-import`, `populate-rootfs`): a bare driver applies to both engines, `podman=vfs` to
//! one.

use anyhow::{bail, Result};
use vcontainer_protocol::StorageDriver;

use crate::bundling::spec::Runtime;

/// The overrides per engine.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DriverOverrides {
    pub docker: Option<StorageDriver>,
    pub podman: Option<StorageDriver>,
}

impl DriverOverrides {
    pub fn parse(values: &[String]) -> Result<DriverOverrides> {
        let mut out = DriverOverrides::default();
        for value in values {
            let (engines, name): (&[Runtime], &str) = match value.split_once('=') {
                None => (&Runtime::ALL, value),
                Some(("docker", d)) => (&[Runtime::Docker], d),
                Some(("podman", d)) => (&[Runtime::Podman], d),
                Some((e, _)) => {
                    bail!("--storage-driver {value}: unknown engine '{e}' (docker or podman)")
                }
            };
            let driver: StorageDriver = name
                .parse()
                .map_err(|e| anyhow::anyhow!("--storage-driver {value}: {e}"))?;
            for engine in engines {
                let slot = out.slot(*engine);
                if slot.is_some_and(|d| d != driver) {
                    bail!("--storage-driver gives {engine} two different drivers");
                }
                *slot = Some(driver);
            }
        }
        Ok(out)
    }

    pub fn get(&self, engine: Runtime) -> Option<StorageDriver> {
        match engine {
            Runtime::Docker => self.docker,
            Runtime::Podman => self.podman,
        }
    }

    fn slot(&mut self, engine: Runtime) -> &mut Option<StorageDriver> {
        match engine {
            Runtime::Docker => &mut self.docker,
            Runtime::Podman => &mut self.podman,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: &[&str]) -> Result<DriverOverrides> {
        DriverOverrides::parse(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn bare_and_per_engine_drivers() {
        let o = parse(&["vfs"]).expect("parse");
        assert_eq!(
            (o.docker, o.podman),
            (Some(StorageDriver::Vfs), Some(StorageDriver::Vfs))
        );
        let o = parse(&["podman=overlay", "docker=overlay2"]).expect("parse");
        assert_eq!(o.get(Runtime::Podman), Some(StorageDriver::Overlay));
        assert_eq!(o.get(Runtime::Docker), Some(StorageDriver::Overlay));
        assert_eq!(parse(&[]).expect("empty"), DriverOverrides::default());
        for bad in [&["crio=vfs"][..], &["btrfs"], &["vfs", "podman=overlay"]] {
            let err = parse(bad).expect_err("bad").to_string();
            assert!(err.contains("--storage-driver"), "{err}");
        }
    }
}
