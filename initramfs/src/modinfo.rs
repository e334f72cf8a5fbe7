//! The `.modinfo` section of a kernel module: NUL-separated `key=value` strings written by
//! `MODULE_INFO()`. We read `depends=` and `softdep=` from it instead of running depmod, because
//! the Debian kernel package ships no modules.dep and the host's kmod may not exist or may be
//! older than the guest kernel.

use object::{Object, ObjectSection};

/// What module loading order needs to know about one module.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModInfo {
    /// `name=` (kernels ≥ 5.x record it); the file stem is used when absent.
    pub name: Option<String>,
    /// Modules whose symbols this one uses (`depends=`); they must be loaded first.
    pub depends: Vec<String>,
    /// `softdep=pre: …` modules: not symbol dependencies, but needed at run time before this one
    /// (e.g. ext4 → crc32c through the crypto API). Without modprobe in the guest nobody else
    /// would load them.
    pub softdep_pre: Vec<String>,
    /// Plain-name aliases (`alias=crc32c`), what a soft dependency may name instead of the
    /// module (ext4's `pre: crc32c` is served by `crc32c_generic`). Device aliases (`pci:…`,
    /// patterns) are left out: nothing here loads drivers by device.
    pub aliases: Vec<String>,
    pub vermagic: Option<String>,
}

impl ModInfo {
    /// Parses the raw `.modinfo` section contents.
    pub fn parse_section(data: &[u8]) -> ModInfo {
        let mut info = ModInfo::default();
        for field in data.split(|b| *b == 0) {
            let Ok(field) = std::str::from_utf8(field) else {
                continue;
            };
            let Some((key, value)) = field.split_once('=') else {
                continue;
            };
            match key {
                "name" => info.name = Some(normalize(value)),
                "depends" => info.depends.extend(
                    value
                        .split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(normalize),
                ),
                "softdep" => info.softdep_pre.extend(parse_softdep_pre(value)),
                "alias"
                    if !value.is_empty()
                        && value
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') =>
                {
                    info.aliases.push(normalize(value))
                }
                "vermagic" => info.vermagic = Some(value.trim().to_string()),
                _ => {}
            }
        }
        info
    }

    /// Reads `.modinfo` from a module's ELF image. A file that is not ELF, or has no `.modinfo`,
    /// is an error: every real module has one.
    pub fn from_elf(bytes: &[u8]) -> Result<ModInfo, String> {
        let file = object::File::parse(bytes).map_err(|e| format!("not an ELF object: {e}"))?;
        let section = file
            .section_by_name(".modinfo")
            .ok_or_else(|| "no .modinfo section".to_string())?;
        let data = section
            .data()
            .map_err(|e| format!("unreadable .modinfo: {e}"))?;
        Ok(ModInfo::parse_section(data))
    }
}

/// `softdep=pre: a b post: c` → `[a, b]`.
fn parse_softdep_pre(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_pre = false;
    for word in value.split_whitespace() {
        match word {
            "pre:" => in_pre = true,
            "post:" => in_pre = false,
            w if in_pre => out.push(normalize(w)),
            _ => {}
        }
    }
    out
}

/// Module names treat `-` and `_` alike; the kernel reports the `_` form.
pub fn normalize(name: &str) -> String {
    name.trim().replace('-', "_")
}

/// The module name of a `.ko` path: `kernel/fs/ext4/ext4.ko` → `ext4`.
pub fn name_of_path(path: &str) -> Option<String> {
    let file = path.rsplit('/').next()?;
    let stem = file.strip_suffix(".ko")?;
    Some(normalize(stem))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_aliases_are_kept_device_patterns_are_not() {
        let info = ModInfo::parse_section(
            b"alias=crypto-crc32c\0alias=crc32c\0alias=pci:v00001AF4d*sv*\0alias=\0name=crc32c_generic\0",
        );
        assert_eq!(info.aliases, ["crypto_crc32c", "crc32c"]);
    }

    #[test]
    fn parses_depends_softdep_and_name() {
        let data = b"license=GPL\0softdep=pre: crc32c post: foo-bar\0depends=jbd2,mbcache,crc16\0name=ext4\0vermagic=6.1.0-37-cloud-amd64 SMP mod_unload \0";
        let info = ModInfo::parse_section(data);
        assert_eq!(info.name.as_deref(), Some("ext4"));
        assert_eq!(info.depends, vec!["jbd2", "mbcache", "crc16"]);
        assert_eq!(info.softdep_pre, vec!["crc32c"]);
        assert_eq!(
            info.vermagic.as_deref(),
            Some("6.1.0-37-cloud-amd64 SMP mod_unload")
        );
    }

    #[test]
    fn empty_depends_means_none() {
        let info = ModInfo::parse_section(b"depends=\0name=virtio\0");
        assert!(info.depends.is_empty());
    }

    #[test]
    fn names_from_paths() {
        assert_eq!(
            name_of_path("kernel/net/vmw_vsock/vsock.ko").as_deref(),
            Some("vsock")
        );
        assert_eq!(
            name_of_path("kernel/x/virtio-rng.ko").as_deref(),
            Some("virtio_rng")
        );
        assert_eq!(name_of_path("kernel/x/readme.txt"), None);
    }

    /// A real relocatable ELF made with `object::write`, like a `.ko` has.
    #[test]
    fn reads_modinfo_from_a_synthetic_elf() {
        use object::write::{Object as WObject, StandardSection};
        use object::{Architecture, BinaryFormat, Endianness, SectionKind};
        let mut obj = WObject::new(BinaryFormat::Elf, Architecture::Aarch64, Endianness::Little);
        let text = obj.section_id(StandardSection::Text);
        obj.append_section_data(text, &[0u8; 4], 4);
        let modinfo = obj.add_section(Vec::new(), b".modinfo".to_vec(), SectionKind::ReadOnlyData);
        obj.append_section_data(modinfo, b"depends=virtio,virtio_ring\0name=virtio_blk\0", 1);
        let bytes = obj.write().expect("write elf");
        let info = ModInfo::from_elf(&bytes).expect("parse");
        assert_eq!(info.name.as_deref(), Some("virtio_blk"));
        assert_eq!(info.depends, vec!["virtio", "virtio_ring"]);
        assert!(ModInfo::from_elf(b"not elf").is_err());
    }
}
