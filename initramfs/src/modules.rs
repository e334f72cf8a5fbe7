//! The set of kernel modules the guest needs and the order to load them in. The agent loads them
//! itself with `finit_module`, one after another, so a module must come after everything it
//! depends on: loaded too early it fails with ENOENT (unknown symbol), which looks like a missing
//! file.

use std::collections::{BTreeMap, BTreeSet};

use crate::modinfo::{normalize, ModInfo};

/// Modules the guest cannot run without, in no particular order; their dependencies are added
/// from `.modinfo`. Members that the kernel has built in (modules.builtin) are skipped.
pub const REQUIRED_MODULES: &[&str] = &[
    // virtio over PCI (q35 and arm virt both put virtio devices on PCI)
    "virtio",
    "virtio_ring",
    "virtio_pci_legacy_dev",
    "virtio_pci_modern_dev",
    "virtio_pci",
    // the read-only rootfs and the state disk
    "virtio_blk",
    // QEMU user networking for registries and port forwards (pulls in net_failover, failover)
    "virtio_net",
    // host <-> agent channel
    "vsock",
    "vmw_vsock_virtio_transport_common",
    "vmw_vsock_virtio_transport",
    // root filesystem: squashfs lower + tmpfs upper in an overlay; ext4 state disk
    "squashfs",
    "overlay",
    "ext4",
];

/// Modules loaded when the kernel has them (as module or built in) but not an error if absent.
pub const OPTIONAL_MODULES: &[&str] = &[
    // entropy for daemons that start by reading random numbers
    "virtio_rng",
];

/// What the closure computation knows about the kernel's modules.
#[derive(Debug, Default)]
pub struct ModuleIndex {
    /// Loadable modules: name → (path relative to `lib/modules/<kver>/`, modinfo).
    pub modules: BTreeMap<String, (String, ModInfo)>,
    /// Names of modules compiled into the kernel.
    pub builtin: BTreeSet<String>,
}

impl ModuleIndex {
    /// Adds the names from a `modules.builtin` file (one `kernel/…/x.ko` path per line).
    pub fn add_builtin_list(&mut self, text: &str) {
        for line in text.lines() {
            if let Some(name) = crate::modinfo::name_of_path(line.trim()) {
                self.builtin.insert(name);
            }
        }
    }

    fn knows(&self, name: &str) -> bool {
        self.builtin.contains(name) || self.resolve(name).is_some()
    }

    /// The loadable module `name` names: itself, or else the first module (by name) that has it
    /// as an alias, as modprobe would pick for a soft dependency.
    fn resolve(&self, name: &str) -> Option<&str> {
        if let Some((key, _)) = self.modules.get_key_value(name) {
            return Some(key);
        }
        self.modules
            .iter()
            .find(|(_, (_, info))| info.aliases.iter().any(|a| a == name))
            .map(|(key, _)| key.as_str())
    }
}

/// The closure of `required` + available `optional` modules over `depends=` and `softdep=pre:`,
/// in load order (each module after its dependencies; ties broken by name so the order is
/// stable). Built-in modules are left out. Returns `(name, relative path)` pairs.
pub fn load_order(
    index: &ModuleIndex,
    required: &[&str],
    optional: &[&str],
) -> Result<Vec<(String, String)>, String> {
    let mut roots: Vec<String> = Vec::new();
    let mut missing = Vec::new();
    for name in required.iter().map(|n| normalize(n)) {
        if index.knows(&name) {
            roots.push(name);
        } else {
            missing.push(name);
        }
    }
    if !missing.is_empty() {
        return Err(format!(
            "the kernel has neither a module nor a built-in for: {}; a different kernel flavour is needed",
            missing.join(", ")
        ));
    }
    roots.extend(
        optional
            .iter()
            .map(|n| normalize(n))
            .filter(|n| index.knows(n)),
    );
    roots.sort();
    roots.dedup();

    let mut order = Vec::new();
    let mut done = BTreeSet::new();
    let mut visiting = Vec::new();
    for root in &roots {
        visit(index, root, &mut visiting, &mut done, &mut order)?;
    }
    Ok(order)
}

/// Depth-first post-order: a module is emitted after all of its dependencies.
fn visit(
    index: &ModuleIndex,
    name: &str,
    visiting: &mut Vec<String>,
    done: &mut BTreeSet<String>,
    order: &mut Vec<(String, String)>,
) -> Result<(), String> {
    if done.contains(name) {
        return Ok(());
    }
    if visiting.iter().any(|v| v == name) {
        visiting.push(name.to_string());
        return Err(format!("dependency cycle: {}", visiting.join(" -> ")));
    }
    let Some((path, info)) = index.modules.get(name) else {
        if index.builtin.contains(name) {
            done.insert(name.to_string());
            return Ok(());
        }
        let needed_by = visiting.last().map(String::as_str).unwrap_or("?");
        return Err(format!(
            "module {name} (needed by {needed_by}) is not in the kernel package"
        ));
    };
    visiting.push(name.to_string());
    let mut deps: Vec<&str> = info.depends.iter().map(String::as_str).collect();
    // A soft dependency may name an alias; one this kernel lacks entirely (or has built in) is
    // not fatal (modprobe skips it too).
    deps.extend(info.softdep_pre.iter().filter_map(|d| index.resolve(d)));
    deps.sort();
    deps.dedup();
    for dep in deps {
        visit(index, dep, visiting, done, order)?;
    }
    visiting.pop();
    done.insert(name.to_string());
    order.push((name.to_string(), path.clone()));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(mods: &[(&str, &[&str], &[&str])], builtin: &[&str]) -> ModuleIndex {
        let mut idx = ModuleIndex::default();
        for (name, deps, soft) in mods {
            let info = ModInfo {
                name: Some(name.to_string()),
                depends: deps.iter().map(|s| s.to_string()).collect(),
                softdep_pre: soft.iter().map(|s| s.to_string()).collect(),
                aliases: vec![],
                vermagic: None,
            };
            idx.modules
                .insert(name.to_string(), (format!("kernel/{name}.ko"), info));
        }
        idx.builtin = builtin.iter().map(|s| s.to_string()).collect();
        idx
    }

    fn names(order: &[(String, String)]) -> Vec<&str> {
        order.iter().map(|(n, _)| n.as_str()).collect()
    }

    #[test]
    fn dependencies_come_first() {
        let idx = index(
            &[
                ("virtio_ring", &[], &[]),
                ("virtio", &["virtio_ring"], &[]),
                (
                    "virtio_pci",
                    &["virtio", "virtio_ring", "virtio_pci_modern_dev"],
                    &[],
                ),
                ("virtio_pci_modern_dev", &[], &[]),
                ("virtio_blk", &["virtio", "virtio_ring"], &[]),
            ],
            &[],
        );
        let order = load_order(&idx, &["virtio_blk", "virtio_pci"], &[]).expect("order");
        assert_eq!(
            names(&order),
            vec![
                "virtio_ring",
                "virtio",
                "virtio_blk",
                "virtio_pci_modern_dev",
                "virtio_pci"
            ]
        );
        assert_eq!(order[0].1, "kernel/virtio_ring.ko");
    }

    #[test]
    fn builtins_are_skipped_and_satisfy_dependencies() {
        let idx = index(
            &[
                ("vsock", &[], &[]),
                ("transport", &["vsock", "virtio"], &[]),
            ],
            &["virtio", "ext4"],
        );
        let order = load_order(&idx, &["transport", "ext4"], &[]).expect("order");
        assert_eq!(names(&order), vec!["vsock", "transport"]);
    }

    #[test]
    fn softdeps_are_loaded_before_when_present() {
        let idx = index(
            &[
                ("ext4", &["jbd2"], &["crc32c", "not_in_kernel"]),
                ("jbd2", &[], &[]),
                ("crc32c", &[], &[]),
            ],
            &[],
        );
        let order = load_order(&idx, &["ext4"], &[]).expect("order");
        assert_eq!(names(&order), vec!["crc32c", "jbd2", "ext4"]);
    }

    /// Trixie's ext4 names `pre: crc32c`, an alias of the `crc32c_generic` module: before alias
    /// resolution the guest failed with "EXT4-fs: Cannot load crc32c driver".
    #[test]
    fn a_softdep_naming_an_alias_loads_the_module_behind_it() {
        let mut idx = index(
            &[
                ("ext4", &["jbd2"], &["crc32c"]),
                ("jbd2", &[], &[]),
                ("crc32c_generic", &[], &[]),
                ("crc32c_arm64", &[], &[]),
            ],
            &[],
        );
        for m in ["crc32c_generic", "crc32c_arm64"] {
            let info = &mut idx.modules.get_mut(m).expect("module").1;
            info.aliases = vec!["crc32c".into(), "crypto_crc32c".into()];
        }
        let order = load_order(&idx, &["ext4"], &[]).expect("order");
        // one provider, the first by name, before ext4
        assert_eq!(names(&order), vec!["crc32c_arm64", "jbd2", "ext4"]);
    }

    #[test]
    fn missing_required_and_optional() {
        let idx = index(&[("a", &[], &[])], &[]);
        let err = load_order(&idx, &["a", "b"], &[]).expect_err("b missing");
        assert!(err.contains("b"), "{err}");
        let order = load_order(&idx, &["a"], &["virtio_rng"]).expect("optional absent is fine");
        assert_eq!(names(&order), vec!["a"]);
        let idx = index(&[("a", &["gone"], &[])], &[]);
        let err = load_order(&idx, &["a"], &[]).expect_err("dep missing");
        assert!(err.contains("gone") && err.contains("needed by a"), "{err}");
    }

    #[test]
    fn cycles_are_reported() {
        let idx = index(&[("a", &["b"], &[]), ("b", &["a"], &[])], &[]);
        let err = load_order(&idx, &["a"], &[]).expect_err("cycle");
        assert!(err.contains("a -> b -> a"), "{err}");
    }

    #[test]
    fn builtin_list_parsing() {
        let mut idx = ModuleIndex::default();
        idx.add_builtin_list("kernel/fs/ext4/ext4.ko\nkernel/drivers/virtio/virtio-mmio.ko\n");
        assert!(idx.builtin.contains("ext4") && idx.builtin.contains("virtio_mmio"));
    }
}
