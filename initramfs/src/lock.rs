//! Lock files: exactly which packages (name, version, `.deb` sha256) an image is made of, so that
//! another machine rebuilds the same image. `image build --write-lock FILE` writes one from a
//! build; `image build --lock FILE` installs exactly those versions (from a mirror that still has
//! them: a snapshot mirror for anything older than the current archive) and fails, naming the
//! packages, unless every `.deb` it used has the locked sha256.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{BuildError, Result};
use crate::kernel::KernelPackage;
use crate::packages::PackagePin;

pub const LOCK_FORMAT: &str = "vcontainer-image-lock/1";

/// Lock files larger than this are refused (a few hundred packages are ~60 KiB).
pub const MAX_LOCK_LEN: u64 = 4 << 20;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lock {
    pub format: String,
    pub arch: String,
    /// Debian suite of the engines root filesystem.
    pub rootfs_suite: String,
    /// Debian suite of the kernel.
    pub kernel_suite: String,
    pub kernel: KernelPackage,
    /// Every package of the root filesystem, sorted by name, each with its `.deb` sha256.
    pub packages: Vec<PackagePin>,
}

impl Lock {
    /// Reads and checks a lock file for `arch`.
    pub fn read(path: &Path, arch: &str) -> Result<Lock> {
        let bad = |detail: String| BuildError::Lock {
            path: path.to_path_buf(),
            detail,
        };
        let meta = std::fs::metadata(path).map_err(|e| bad(e.to_string()))?;
        if meta.len() > MAX_LOCK_LEN {
            return Err(bad(format!("larger than {MAX_LOCK_LEN} bytes")));
        }
        let bytes = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
        let lock: Lock = serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
        lock.check(arch).map_err(bad)?;
        Ok(lock)
    }

    /// Format, arch, and names and versions that can only be what apt prints (they become
    /// `name=version` arguments).
    pub fn check(&self, arch: &str) -> std::result::Result<(), String> {
        if self.format != LOCK_FORMAT {
            return Err(format!(
                "format {:?}, expected {LOCK_FORMAT:?}",
                self.format
            ));
        }
        if self.arch != arch {
            return Err(format!("locks an {} image, not {arch}", self.arch));
        }
        if self.packages.is_empty() {
            return Err("lists no packages".into());
        }
        let mut names = std::collections::BTreeSet::new();
        let kernel_sha = Some(self.kernel.sha256.clone());
        let pins = self
            .packages
            .iter()
            .map(|p| (&p.name, &p.version, &p.sha256));
        let kernel = std::iter::once((&self.kernel.package, &self.kernel.version, &kernel_sha));
        for (name, version, sha256) in pins.chain(kernel) {
            if !is_package_name(name) || !is_version(version) {
                return Err(format!("invalid package {name:?} version {version:?}"));
            }
            match sha256 {
                Some(s) if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) => {}
                _ => return Err(format!("{name} {version} has no sha256")),
            }
            if !names.insert(name.as_str()) {
                return Err(format!("{name} is listed twice"));
            }
        }
        for suite in [&self.rootfs_suite, &self.kernel_suite] {
            if suite.is_empty()
                || !suite
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            {
                return Err(format!("invalid suite {suite:?}"));
            }
        }
        Ok(())
    }

    pub fn write(&self, path: &Path) -> Result<()> {
        let mut bytes = serde_json::to_vec_pretty(self)
            .map_err(|e| BuildError::io("encoding the lock file", path)(e.into()))?;
        bytes.push(b'\n');
        crate::cache::write_atomic(path, &bytes)
    }

    /// What the rootfs cache key takes from the lock: the locked package set.
    pub fn packages_digest(&self) -> String {
        let text: String = self
            .packages
            .iter()
            .map(|p| {
                format!(
                    "{} {} {}\n",
                    p.name,
                    p.version,
                    p.sha256.as_deref().unwrap_or("")
                )
            })
            .collect();
        crate::cache::key(&[("packages", &text)])
    }

    /// apt `name=version` arguments for every locked rootfs package.
    pub fn include_args(&self) -> Vec<String> {
        self.packages
            .iter()
            .map(|p| format!("{}={}", p.name, p.version))
            .collect()
    }
}

/// The differences between the locked packages and what a build used, one line each; empty
/// when they are the same.
pub fn differences(locked: &[PackagePin], used: &[PackagePin]) -> Vec<String> {
    let index = |pins: &[PackagePin]| -> BTreeMap<String, (String, Option<String>)> {
        pins.iter()
            .map(|p| (p.name.clone(), (p.version.clone(), p.sha256.clone())))
            .collect()
    };
    let (want, got) = (index(locked), index(used));
    let mut out = Vec::new();
    for (name, (version, sha)) in &want {
        match got.get(name) {
            None => out.push(format!("{name} {version}: not installed")),
            Some((v, _)) if v != version => out.push(format!("{name}: locked {version}, got {v}")),
            Some((_, s)) if s != sha => out.push(format!(
                "{name} {version}: .deb sha256 {} differs from the lock's {}",
                s.as_deref().unwrap_or("(unknown)"),
                sha.as_deref().unwrap_or("(none)")
            )),
            Some(_) => {}
        }
    }
    for (name, (version, _)) in &got {
        if !want.contains_key(name) {
            out.push(format!("{name} {version}: installed but not in the lock"));
        }
    }
    out
}

/// Debian package names: lower-case alphanumerics and `+ - .`, starting alphanumeric.
fn is_package_name(s: &str) -> bool {
    s.len() >= 2
        && s.len() <= 128
        && s.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+-.".contains(&b))
}

/// Debian versions: alphanumerics and `. + ~ - :`, starting with a digit.
fn is_version(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.starts_with(|c: char| c.is_ascii_digit())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".+~-:".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pin(name: &str, version: &str, sha: char) -> PackagePin {
        PackagePin {
            name: name.into(),
            version: version.into(),
            sha256: Some(sha.to_string().repeat(64)),
        }
    }

    fn lock() -> Lock {
        Lock {
            format: LOCK_FORMAT.into(),
            arch: "aarch64".into(),
            rootfs_suite: "trixie".into(),
            kernel_suite: "bookworm".into(),
            kernel: KernelPackage {
                package: "linux-image-6.1.0-37-cloud-arm64".into(),
                version: "6.1.140-1".into(),
                sha256: "c".repeat(64),
            },
            packages: vec![
                pin("docker.io", "26.1.5+dfsg1-9+b9", 'a'),
                pin("base-passwd", "3.6.7", 'b'),
            ],
        }
    }

    #[test]
    fn a_lock_round_trips_and_is_checked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("aarch64.lock");
        lock().write(&path).expect("write");
        assert_eq!(Lock::read(&path, "aarch64").expect("read"), lock());
        let err = Lock::read(&path, "x86_64").expect_err("other arch");
        assert!(err.to_string().contains("aarch64"), "{err}");

        let mut bad = lock();
        bad.packages[0].name = "docker.io; rm -rf /".into();
        assert!(bad.check("aarch64").is_err());
        let mut bad = lock();
        bad.packages[1].sha256 = None;
        assert!(bad
            .check("aarch64")
            .expect_err("no sha")
            .contains("base-passwd"));
        let mut bad = lock();
        bad.packages.push(pin("docker.io", "1", 'd'));
        assert!(bad.check("aarch64").expect_err("twice").contains("twice"));
        let mut bad = lock();
        bad.format = "other".into();
        assert!(bad.check("aarch64").is_err());
        assert_eq!(
            lock().include_args(),
            ["docker.io=26.1.5+dfsg1-9+b9", "base-passwd=3.6.7"]
        );
        let mut newer = lock();
        newer.packages[1].version = "3.6.8".into();
        assert_ne!(lock().packages_digest(), newer.packages_digest());
    }

    #[test]
    fn differences_name_every_package_that_is_not_as_locked() {
        let locked = lock().packages;
        assert!(differences(&locked, &locked).is_empty());
        let used = vec![
            pin("docker.io", "26.1.5+dfsg1-9+b9", 'f'),
            pin("bash", "5.2", 'e'),
        ];
        let d = differences(&locked, &used);
        assert_eq!(d.len(), 3, "{d:?}");
        assert!(d[0].contains("base-passwd 3.6.7: not installed"));
        assert!(d[1].contains("docker.io") && d[1].contains("sha256"));
        assert!(d[2].contains("bash 5.2: installed but not in the lock"));
    }
}
