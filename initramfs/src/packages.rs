//! What the engines root filesystem is made of: every package with its version and the sha256 of
//! the `.deb` it came from, recorded when the root filesystem is built (the `extract` variant
//! leaves the image's dpkg database empty, so the list comes from the `.debs` apt used). Kept in
//! the image manifest so two machines can compare what they built; the engine versions (docker,
//! containerd, runc, podman, skopeo) are read from it. A dpkg status parser is here too, for
//! root filesystems made with maintainer scripts.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// One installed package of the root image (name, version and the sha256 of its `.deb`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackagePin {
    pub name: String,
    pub version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}
/// The packages whose versions are "the engine versions" of an image, by the name users know.
pub const ENGINE_PACKAGES: &[(&str, &str)] = &[
    ("docker", "docker.io"),
    ("containerd", "containerd"),
    ("runc", "runc"),
    ("podman", "podman"),
    ("skopeo", "skopeo"),
    ("crun", "crun"),
];

/// `Package`/`Version` of every installed stanza of a dpkg status file, sorted by name.
pub fn parse_status(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for stanza in text.split("\n\n") {
        let mut name = None;
        let mut version = None;
        let mut installed = false;
        for line in stanza.lines() {
            if let Some(v) = line.strip_prefix("Package: ") {
                name = Some(v.trim().to_string());
            } else if let Some(v) = line.strip_prefix("Version: ") {
                version = Some(v.trim().to_string());
            } else if let Some(v) = line.strip_prefix("Status: ") {
                installed = v.trim().ends_with(" installed") || v.trim() == "install ok unpacked";
            }
        }
        if let (Some(n), Some(v), true) = (name, version, installed) {
            out.push((n, v));
        }
    }
    out.sort();
    out.dedup();
    out
}

/// `(name, version)` from apt's file name `name_version_arch.deb` (an epoch's `:` as `%3a`).
pub fn parse_deb_file_name(file: &str) -> Option<(String, String)> {
    let stem = file.trim().strip_suffix(".deb")?;
    let mut parts = stem.splitn(3, '_');
    let package = parts.next()?.to_string();
    let version = parts.next()?.replace("%3a", ":");
    parts.next()?;
    Some((package, version))
}

/// One `(name, version)` per package, the newest by Debian's version order: the package cache
/// keeps `.debs` of earlier builds beside the ones apt just used, and apt always takes the
/// newest candidate.
pub fn newest_of_each(
    packages: impl IntoIterator<Item = (String, String)>,
) -> Vec<(String, String)> {
    let mut newest: BTreeMap<String, String> = BTreeMap::new();
    for (name, version) in packages {
        match newest.get(&name) {
            Some(have) if !version_gt(&version, have) => {}
            _ => {
                newest.insert(name, version);
            }
        }
    }
    newest.into_iter().collect()
}

/// `a > b` in Debian's version order, as `dpkg --compare-versions` says (dpkg is on every host
/// that builds images).
fn version_gt(a: &str, b: &str) -> bool {
    std::process::Command::new("dpkg")
        .args(["--compare-versions", a, "gt", b])
        .status()
        .is_ok_and(|s| s.success())
}

/// Pins for `packages`, with the sha256 of each `.deb` found in `debs` (apt's file names:
/// `name_version_arch.deb`, an epoch's `:` as `%3a`).
pub fn pins(packages: &[(String, String)], debs: &Path) -> Vec<PackagePin> {
    let files: BTreeMap<String, std::path::PathBuf> = std::fs::read_dir(debs)
        .map(|d| {
            d.flatten()
                .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
                .collect()
        })
        .unwrap_or_default();
    packages
        .iter()
        .map(|(name, version)| {
            let prefix = format!("{name}_{}_", version.replace(':', "%3a"));
            let sha256 = files
                .iter()
                .find(|(f, _)| f.starts_with(&prefix) && f.ends_with(".deb"))
                .and_then(|(_, p)| crate::cache::sha256_file(p).ok());
            PackagePin {
                name: name.clone(),
                version: version.clone(),
                sha256,
            }
        })
        .collect()
}

/// Engine name → version, for the engines the package list has.
pub fn engines(packages: &[PackagePin]) -> BTreeMap<String, String> {
    ENGINE_PACKAGES
        .iter()
        .filter_map(|(engine, package)| {
            packages
                .iter()
                .find(|p| p.name == *package)
                .map(|p| (engine.to_string(), p.version.clone()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "Package: docker.io\nStatus: install ok installed\nArchitecture: arm64\nVersion: 26.1.5+dfsg1-9+b9\n\nPackage: podman\nStatus: install ok installed\nVersion: 5.4.2+ds1-2\n\nPackage: gone\nStatus: deinstall ok config-files\nVersion: 1\n\nPackage: base-passwd\nStatus: install ok unpacked\nVersion: 1:3.6.7\n";

    #[test]
    fn deb_file_names_give_names_and_versions() {
        assert_eq!(
            parse_deb_file_name("base-passwd_1%3a3.6.7_arm64.deb"),
            Some(("base-passwd".to_string(), "1:3.6.7".to_string()))
        );
        assert_eq!(
            parse_deb_file_name("tar_1.35+dfsg-3.1_arm64.deb\n"),
            Some(("tar".to_string(), "1.35+dfsg-3.1".to_string()))
        );
        assert_eq!(parse_deb_file_name("notes.txt"), None);
        assert_eq!(parse_deb_file_name("noversion.deb"), None);
    }

    #[test]
    fn the_newest_version_of_a_package_wins() {
        let list = [
            ("tar".to_string(), "1.35+dfsg-3".to_string()),
            ("tar".to_string(), "1.35+dfsg-3.1".to_string()),
            ("base-passwd".to_string(), "1:3.6.7".to_string()),
            ("base-passwd".to_string(), "3.7.0".to_string()),
        ];
        assert_eq!(
            newest_of_each(list),
            [
                ("base-passwd".to_string(), "1:3.6.7".to_string()),
                ("tar".to_string(), "1.35+dfsg-3.1".to_string()),
            ]
        );
    }

    #[test]
    fn installed_packages_with_versions_only() {
        let p = parse_status(STATUS);
        assert_eq!(
            p,
            [
                ("base-passwd".to_string(), "1:3.6.7".to_string()),
                ("docker.io".to_string(), "26.1.5+dfsg1-9+b9".to_string()),
                ("podman".to_string(), "5.4.2+ds1-2".to_string()),
            ]
        );
    }

    #[test]
    fn pins_hash_the_matching_deb_and_engines_are_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("base-passwd_1%3a3.6.7_arm64.deb"), b"deb").expect("w");
        let pins = pins(&parse_status(STATUS), dir.path());
        let want = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(b"deb"));
        assert_eq!(pins[0].sha256.as_deref(), Some(want.as_str()));
        assert_eq!(pins[1].sha256, None, "no .deb for docker.io");
        let e = engines(&pins);
        assert_eq!(
            e.get("docker").map(String::as_str),
            Some("26.1.5+dfsg1-9+b9")
        );
        assert_eq!(e.get("podman").map(String::as_str), Some("5.4.2+ds1-2"));
        assert!(!e.contains_key("skopeo"));
    }
}
