//! The rootfs's own package database: which files a package owns and its version. `packages`
//! layers are realised from it (upstream installed each layer's packages again into an empty
//! rootfs with the package manager; here the rootfs already has them, so the layer is exactly the
//! files those packages put there).
//!
//! * dpkg: `var/lib/dpkg/status` (stanzas) and `var/lib/dpkg/info/<pkg>[:<arch>].list`
//! * opkg: `var/lib/opkg/status` and `var/lib/opkg/info/<pkg>.list` (a line may carry a tab and
//!   a mode or link target after the path)
//! * rpm: `var/lib/rpm` queried with the host's `rpm --root` (an argv, no shell), when installed

use std::collections::BTreeMap;
use std::fs;
use std::path::{Component, Path, PathBuf};
use std::process::Command;

use super::OciError;

/// Entries of a `.list` file or a status stanza larger than this are refused (guards memory).
const MAX_DB_FILE: u64 = 256 * 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbKind {
    Dpkg,
    Opkg,
    Rpm,
}

impl DbKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DbKind::Dpkg => "dpkg",
            DbKind::Opkg => "opkg",
            DbKind::Rpm => "rpm",
        }
    }
}

/// A rootfs's package database.
#[derive(Debug)]
pub struct PackageDb {
    rootfs: PathBuf,
    kind: DbKind,
    /// Installed packages and their versions (dpkg/opkg; rpm is queried per package).
    versions: BTreeMap<String, String>,
}

impl PackageDb {
    /// Finds the database in `rootfs` (dpkg, then opkg, then rpm).
    pub fn open(rootfs: &Path) -> Result<PackageDb, OciError> {
        for (kind, dir) in [
            (DbKind::Dpkg, "var/lib/dpkg"),
            (DbKind::Opkg, "var/lib/opkg"),
        ] {
            let status = rootfs.join(dir).join("status");
            if status.is_file() {
                let text = read_capped(&status)?;
                return Ok(PackageDb {
                    rootfs: rootfs.to_path_buf(),
                    kind,
                    versions: parse_status(&text),
                });
            }
        }
        if rootfs.join("var/lib/rpm").is_dir() {
            return Ok(PackageDb {
                rootfs: rootfs.to_path_buf(),
                kind: DbKind::Rpm,
                versions: BTreeMap::new(),
            });
        }
        Err(OciError::NoPackageDb {
            rootfs: rootfs.to_path_buf(),
        })
    }

    pub fn kind(&self) -> DbKind {
        self.kind
    }

    /// The installed version of `package`, or the error that names the database.
    pub fn version(&self, package: &str) -> Result<String, OciError> {
        match self.kind {
            DbKind::Dpkg | DbKind::Opkg => {
                self.versions
                    .get(package)
                    .cloned()
                    .ok_or_else(|| OciError::UnknownPackage {
                        package: package.to_string(),
                        db: self.kind.as_str(),
                        rootfs: self.rootfs.clone(),
                    })
            }
            DbKind::Rpm => {
                let out = self.rpm(&["-q", "--qf", "%{EPOCH}:%{VERSION}-%{RELEASE}", package])?;
                Ok(out.trim().trim_start_matches("(none):").to_string())
            }
        }
    }

    /// The paths `package` owns, relative to the rootfs (directories included), as listed.
    pub fn files(&self, package: &str) -> Result<Vec<PathBuf>, OciError> {
        // The version lookup doubles as the "is it installed" check.
        self.version(package)?;
        let text = match self.kind {
            DbKind::Dpkg => {
                let info = self.rootfs.join("var/lib/dpkg/info");
                let plain = info.join(format!("{package}.list"));
                let list = if plain.is_file() {
                    Some(plain)
                } else {
                    // Multi-arch packages: `<pkg>:<arch>.list`.
                    fs::read_dir(&info)
                        .map_err(|e| OciError::io(&info, e))?
                        .filter_map(Result::ok)
                        .map(|e| e.path())
                        .filter(|p| {
                            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                                n.starts_with(&format!("{package}:")) && n.ends_with(".list")
                            })
                        })
                        .min()
                };
                match list {
                    Some(l) => read_capped(&l)?,
                    // An installed package without files (a metapackage).
                    None => String::new(),
                }
            }
            DbKind::Opkg => {
                let l = self
                    .rootfs
                    .join(format!("var/lib/opkg/info/{package}.list"));
                if l.is_file() {
                    read_capped(&l)?
                } else {
                    String::new()
                }
            }
            DbKind::Rpm => self.rpm(&["-ql", package])?,
        };
        let mut files = Vec::new();
        for line in text.lines() {
            let listed = line.split('\t').next().unwrap_or_default().trim_end();
            if !listed.starts_with('/') {
                continue;
            }
            match rootfs_relative(listed) {
                Some(p) if p.as_os_str().is_empty() => {} // "/." (dpkg lists the root first)
                Some(p) => files.push(p),
                None => {
                    return Err(OciError::Invalid(format!(
                        "the {} database of {} lists {listed:?} for package {package}: \
                         a path with '..' can leave the rootfs",
                        self.kind.as_str(),
                        self.rootfs.display()
                    )))
                }
            }
        }
        Ok(files)
    }

    fn rpm(&self, args: &[&str]) -> Result<String, OciError> {
        let out = Command::new("rpm")
            .arg("--root")
            .arg(&self.rootfs)
            .args(args)
            .output()
            .map_err(|e| {
                OciError::Invalid(format!(
                    "{} has an rpm database, but the host's rpm tool cannot be run to read it: {e}",
                    self.rootfs.display()
                ))
            })?;
        if !out.status.success() {
            return Err(OciError::UnknownPackage {
                package: args.last().copied().unwrap_or_default().to_string(),
                db: "rpm",
                rootfs: self.rootfs.clone(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

/// A listed absolute path (`/usr/bin/x`, `/./usr//bin/x`) relative to the rootfs, made of plain
/// names only; `None` when it has a `..`, which could point out of the rootfs.
fn rootfs_relative(listed: &str) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in Path::new(listed).components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

fn read_capped(path: &Path) -> Result<String, OciError> {
    let len = fs::metadata(path).map_err(|e| OciError::io(path, e))?.len();
    if len > MAX_DB_FILE {
        return Err(OciError::Invalid(format!(
            "{}: {len} bytes is more than a package database file may hold",
            path.display()
        )));
    }
    let bytes = fs::read(path).map_err(|e| OciError::io(path, e))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// `Package`/`Version` of every stanza whose `Status` says installed (or that has no Status).
fn parse_status(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for stanza in text.split("\n\n") {
        let (mut name, mut version, mut installed) = (None, None, true);
        for line in stanza.lines() {
            if let Some(v) = line.strip_prefix("Package:") {
                name = Some(v.trim());
            } else if let Some(v) = line.strip_prefix("Version:") {
                version = Some(v.trim());
            } else if let Some(v) = line.strip_prefix("Status:") {
                installed = v.split_whitespace().last() == Some("installed");
            }
        }
        if let (Some(n), true) = (name, installed) {
            out.insert(n.to_string(), version.unwrap_or("?").to_string());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dpkg_root() -> tempfile::TempDir {
        let d = tempfile::tempdir().expect("tmp");
        let info = d.path().join("var/lib/dpkg/info");
        fs::create_dir_all(&info).expect("mkdir");
        fs::write(
            d.path().join("var/lib/dpkg/status"),
            "Package: busybox\nStatus: install ok installed\nVersion: 1:1.35.0-4\n\n\
             Package: gone\nStatus: deinstall ok config-files\nVersion: 1\n\n\
             Package: libc6\nStatus: install ok installed\nArchitecture: arm64\nVersion: 2.36\n",
        )
        .expect("status");
        fs::write(info.join("busybox.list"), "/.\n/bin\n/bin/busybox\n").expect("list");
        fs::write(info.join("libc6:arm64.list"), "/lib\n/lib/libc.so.6\n").expect("list");
        d
    }

    #[test]
    fn dpkg_files_and_versions() {
        let d = dpkg_root();
        let db = PackageDb::open(d.path()).expect("open");
        assert_eq!(db.kind(), DbKind::Dpkg);
        assert_eq!(db.version("busybox").expect("v"), "1:1.35.0-4");
        assert_eq!(
            db.files("busybox").expect("files"),
            vec![PathBuf::from("bin"), PathBuf::from("bin/busybox")]
        );
        assert_eq!(db.files("libc6").expect("files").len(), 2);
        for missing in ["gone", "nope"] {
            let e = db.files(missing).expect_err(missing).to_string();
            assert!(e.contains(missing) && e.contains("dpkg"), "{e}");
        }
    }

    #[test]
    fn opkg_lists_may_carry_a_mode_column() {
        let d = tempfile::tempdir().expect("tmp");
        let info = d.path().join("var/lib/opkg/info");
        fs::create_dir_all(&info).expect("mkdir");
        fs::write(
            d.path().join("var/lib/opkg/status"),
            "Package: busybox\nVersion: 1.36.1-r0\nStatus: install user installed\n",
        )
        .expect("status");
        fs::write(
            info.join("busybox.list"),
            "/bin/busybox.nosuid\t0755\n/bin/sh\t/bin/busybox.nosuid\n",
        )
        .expect("list");
        let db = PackageDb::open(d.path()).expect("open");
        assert_eq!(db.kind(), DbKind::Opkg);
        assert_eq!(
            db.files("busybox").expect("files"),
            vec![PathBuf::from("bin/busybox.nosuid"), PathBuf::from("bin/sh")]
        );
    }

    /// Found by the `config_parsers` fuzz target: `/.//t` came out as the absolute `/t`.
    #[test]
    fn listed_paths_stay_inside_the_rootfs() {
        let d = dpkg_root();
        let list = d.path().join("var/lib/dpkg/info/busybox.list");
        fs::write(&list, "/.\n/.//t\n//usr/./bin//x\n/./\n").expect("list");
        let db = PackageDb::open(d.path()).expect("open");
        assert_eq!(
            db.files("busybox").expect("files"),
            vec![PathBuf::from("t"), PathBuf::from("usr/bin/x")]
        );
        fs::write(&list, "/bin\n/usr/../../etc/shadow\n").expect("list");
        let e = db.files("busybox").expect_err("dot-dot").to_string();
        assert!(
            e.contains("/usr/../../etc/shadow") && e.contains("busybox"),
            "{e}"
        );
    }

    #[test]
    fn no_database_is_a_clear_error() {
        let d = tempfile::tempdir().expect("tmp");
        let e = PackageDb::open(d.path()).expect_err("no db").to_string();
        assert!(e.contains("no package database"), "{e}");
    }
}
