//! What the target root filesystem says about its container engines: the storage driver its
//! engine is configured with (podman's `storage.conf`, docker's `daemon.json`), the driver of the
//! storage it already holds, and the engine version its package database records. Storage
//! written with another driver than the target's engine uses is invisible to that engine, so
//! `populate-rootfs` follows the target.
//!
//! The target is not the host: its files are read with every path resolved inside the rootfs
//! (`openat2` with `RESOLVE_IN_ROOT`, so an absolute symlink such as Yocto's
//! `/etc/containers/storage.conf -> /usr/share/…` points into the rootfs, never at the host),
//! and each file is capped in size.

use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::Path;

use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::Mode;
use thiserror::Error;
use vcontainer_oci::pkgdb::PackageDb;
use vcontainer_protocol::StorageDriver;

use super::rootfs::storage_location;
use super::spec::Runtime;

/// Configuration and package database files larger than this are refused (a package database
/// with a few thousand packages is a few MiB; a storage.conf or daemon.json a few KiB).
pub const MAX_TARGET_FILE: u64 = 64 << 20;

/// Where podman looks for its storage configuration: the administrator's file first, then the
/// packaged default.
const STORAGE_CONF: &[&str] = &[
    "etc/containers/storage.conf",
    "usr/share/containers/storage.conf",
];
const DAEMON_JSON: &str = "etc/docker/daemon.json";

/// The packages that install each engine, by distribution: Debian, Docker's own packages,
/// Yocto's meta-virtualization.
fn engine_packages(runtime: Runtime) -> &'static [&'static str] {
    match runtime {
        Runtime::Docker => &[
            "docker.io",
            "docker-ce",
            "docker-moby",
            "docker",
            "moby-engine",
        ],
        Runtime::Podman => &["podman"],
    }
}

#[derive(Debug, Error)]
pub enum TargetError {
    #[error("reading {path} in the target rootfs: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} in the target rootfs is larger than {MAX_TARGET_FILE} bytes")]
    TooLarge { path: String },
    #[error("{path} in the target rootfs is not a regular file")]
    NotAFile { path: String },
    #[error("{path} in the target rootfs cannot be read as {format}: {message}")]
    Parse {
        path: String,
        format: &'static str,
        message: String,
    },
    #[error(
        "{path} in the target rootfs sets the {runtime} storage driver to \"{name}\", which \
         vcontainer cannot write (it writes overlay or vfs): configure the target for one of \
         those, or override with --storage-driver {runtime}=DRIVER"
    )]
    Unsupported {
        path: String,
        runtime: Runtime,
        name: String,
    },
}

/// The driver a populate run uses for one engine, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriverChoice {
    pub driver: StorageDriver,
    /// Where the choice came from, for the log: `--storage-driver`, a target file, the
    /// storage already in the rootfs, or the default.
    pub reason: String,
    /// Things the target says that vcontainer does not follow (another storage root).
    pub warnings: Vec<String>,
}

/// Chooses the driver for `runtime`: the override, else the target's configuration, else the
/// driver of the storage already in the rootfs, else the default (upstream's target
/// configuration: docker overlay2, podman vfs).
pub fn choose_driver(
    rootfs: &Path,
    runtime: Runtime,
    overridden: Option<StorageDriver>,
) -> Result<DriverChoice, TargetError> {
    let engine = runtime.tool().engine_kind();
    let configured = configured_driver(rootfs, runtime)?;
    let warnings = configured
        .as_ref()
        .map(|c| c.warnings.clone())
        .unwrap_or_default();
    let (driver, reason) = if let Some(d) = overridden {
        (d, "--storage-driver".to_string())
    } else if let Some((d, path)) = configured.and_then(|c| c.driver.map(|d| (d, c.path))) {
        (d, format!("/{path} in the target rootfs"))
    } else if let Some(d) = driver_in_storage(rootfs, runtime) {
        (d, "the storage already in the target rootfs".to_string())
    } else {
        (
            StorageDriver::default_for(engine),
            "the default (upstream's target configuration)".to_string(),
        )
    };
    Ok(DriverChoice {
        driver,
        reason,
        warnings,
    })
}

/// What one configuration file of the target says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Configured {
    /// Path inside the rootfs, without the leading `/`.
    pub path: String,
    /// `None`: the file names no driver (the engine picks one itself).
    pub driver: Option<StorageDriver>,
    pub warnings: Vec<String>,
}

/// The storage driver the target's engine configuration names, if a configuration file exists.
pub fn configured_driver(
    rootfs: &Path,
    runtime: Runtime,
) -> Result<Option<Configured>, TargetError> {
    let engine = runtime.tool().engine_kind();
    let candidates: &[&str] = match runtime {
        Runtime::Podman => STORAGE_CONF,
        Runtime::Docker => &[DAEMON_JSON],
    };
    for path in candidates {
        let Some(bytes) = read_in_root(rootfs, path)? else {
            continue;
        };
        let text = String::from_utf8_lossy(&bytes);
        let settings = match runtime {
            Runtime::Podman => parse_storage_conf(&text),
            Runtime::Docker => parse_daemon_json(&text),
        }
        .map_err(|message| TargetError::Parse {
            path: format!("/{path}"),
            format: match runtime {
                Runtime::Podman => "TOML",
                Runtime::Docker => "JSON",
            },
            message,
        })?;
        let driver = match settings.driver.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(name) => Some(StorageDriver::from_engine_name(name).ok_or_else(|| {
                TargetError::Unsupported {
                    path: format!("/{path}"),
                    runtime,
                    name: name.to_string(),
                }
            })?),
        };
        let (parent, top) = storage_location(runtime);
        let ours = format!("/{parent}/{top}");
        let mut warnings = Vec::new();
        if let Some(root) = settings.root.filter(|r| r.trim_end_matches('/') != ours) {
            warnings.push(format!(
                "/{path} in the target rootfs puts {engine} storage at {root}, but vcontainer \
                 installs it at {ours}: the target's {engine} will not see the bundled images \
                 unless that is changed"
            ));
        }
        return Ok(Some(Configured {
            path: path.to_string(),
            driver,
            warnings,
        }));
    }
    Ok(None)
}

/// The driver of the storage already installed in the rootfs, if exactly one driver's metadata
/// is there.
pub fn driver_in_storage(rootfs: &Path, runtime: Runtime) -> Option<StorageDriver> {
    let engine = runtime.tool().engine_kind();
    let (parent, top) = storage_location(runtime);
    let dir = rootfs.join(parent).join(top);
    let present: Vec<StorageDriver> = StorageDriver::ALL
        .into_iter()
        .filter(|d| {
            dir.join(d.metadata_dir(engine))
                .symlink_metadata()
                .is_ok_and(|m| m.is_dir())
        })
        .collect();
    match present.as_slice() {
        [one] => Some(*one),
        _ => None,
    }
}

/// The settings of one engine configuration file that matter here.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct StorageSettings {
    pub driver: Option<String>,
    /// podman's `graphroot`, docker's `data-root`.
    pub root: Option<String>,
}

/// `[storage] driver` and `graphroot` of a containers-storage `storage.conf`.
pub fn parse_storage_conf(text: &str) -> Result<StorageSettings, String> {
    #[derive(serde::Deserialize)]
    struct File {
        storage: Option<Storage>,
    }
    #[derive(serde::Deserialize)]
    struct Storage {
        driver: Option<String>,
        graphroot: Option<String>,
    }
    let file: File = toml::from_str(text).map_err(|e| e.message().to_string())?;
    Ok(file
        .storage
        .map(|s| StorageSettings {
            driver: s.driver,
            root: s.graphroot,
        })
        .unwrap_or_default())
}

/// `storage-driver` and `data-root` of a dockerd `daemon.json`.
pub fn parse_daemon_json(text: &str) -> Result<StorageSettings, String> {
    #[derive(serde::Deserialize)]
    struct File {
        #[serde(rename = "storage-driver")]
        storage_driver: Option<String>,
        #[serde(rename = "data-root")]
        data_root: Option<String>,
    }
    if text.trim().is_empty() {
        return Ok(StorageSettings::default());
    }
    let file: File = serde_json::from_str(text).map_err(|e| e.to_string())?;
    Ok(StorageSettings {
        driver: file.storage_driver,
        root: file.data_root,
    })
}

/// The target's installed engine package and its version, from its package database (dpkg,
/// opkg, or rpm when the host has `rpm`). `None` when there is none or it does not list the
/// engine: the version is only for a warning, so an unreadable database is not an error.
pub fn installed_engine(rootfs: &Path, runtime: Runtime) -> Option<(String, String)> {
    let db = PackageDb::open(rootfs).ok()?;
    engine_packages(runtime)
        .iter()
        .find_map(|name| db.version(name).ok().map(|v| (name.to_string(), v)))
}

/// The numeric release of a package version: epoch and revision dropped, the leading dotted
/// numbers kept (`1:26.1.5+dfsg1-9` → `[26, 1, 5]`, `25.0.3+git0+abc` → `[25, 0, 3]`).
pub fn release_numbers(version: &str) -> Vec<u64> {
    let v = version.split_once(':').map_or(version, |(_, rest)| rest);
    let mut out = Vec::new();
    for part in v.split('.') {
        let digits: String = part.chars().take_while(char::is_ascii_digit).collect();
        match digits.parse() {
            Ok(n) => out.push(n),
            Err(_) => break,
        }
        if digits.len() != part.len() {
            break;
        }
    }
    out
}

/// Whether the target's engine release is older than the guest's (by their numeric releases;
/// unknown releases are never "older").
pub fn is_older(target: &str, guest: &str) -> bool {
    let (t, g) = (release_numbers(target), release_numbers(guest));
    !t.is_empty() && !g.is_empty() && t < g
}

/// Reads `rel` (relative to the rootfs) with every path component resolved inside the rootfs;
/// `None` if it does not exist.
pub fn read_in_root(rootfs: &Path, rel: &str) -> Result<Option<Vec<u8>>, TargetError> {
    let err = |source| TargetError::Read {
        path: format!("/{rel}"),
        source,
    };
    let root = std::fs::File::open(rootfs).map_err(err)?;
    let how = OpenHow::new()
        .flags(OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NOCTTY | OFlag::O_NONBLOCK)
        .mode(Mode::empty())
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let fd: OwnedFd = match openat2(&root, rel, how) {
        Ok(fd) => fd,
        Err(nix::errno::Errno::ENOENT) => return Ok(None),
        Err(e) => return Err(err(std::io::Error::from(e))),
    };
    let mut file = std::fs::File::from(fd);
    let meta = file.metadata().map_err(err)?;
    if !meta.is_file() {
        return Err(TargetError::NotAFile {
            path: format!("/{rel}"),
        });
    }
    if meta.len() > MAX_TARGET_FILE {
        return Err(TargetError::TooLarge {
            path: format!("/{rel}"),
        });
    }
    let mut bytes = Vec::new();
    file.by_ref()
        .take(MAX_TARGET_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(err)?;
    if bytes.len() as u64 > MAX_TARGET_FILE {
        return Err(TargetError::TooLarge {
            path: format!("/{rel}"),
        });
    }
    Ok(Some(bytes))
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    fn write(root: &Path, rel: &str, text: &str) {
        let p = root.join(rel);
        fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        fs::write(p, text).expect("write");
    }

    #[test]
    fn storage_conf_and_daemon_json_settings() {
        let s = parse_storage_conf(
            "# comment\n[storage]\ndriver = \"vfs\"\nrunroot = \"/run/containers/storage\"\ngraphroot = \"/var/lib/containers/storage\"\n[storage.options]\nadditionalimagestores = []\n",
        )
        .expect("parse");
        assert_eq!(s.driver.as_deref(), Some("vfs"));
        assert_eq!(s.root.as_deref(), Some("/var/lib/containers/storage"));
        assert_eq!(
            parse_storage_conf("[engine]\nx = 1\n").expect("parse"),
            StorageSettings::default()
        );
        assert!(parse_storage_conf("[storage\ndriver=").is_err());
        let d = parse_daemon_json("{\"storage-driver\": \"vfs\", \"log-driver\": \"journald\"}")
            .expect("parse");
        assert_eq!(d.driver.as_deref(), Some("vfs"));
        assert_eq!(
            parse_daemon_json("").expect("empty"),
            StorageSettings::default()
        );
        assert!(parse_daemon_json("{not json").is_err());
    }

    #[test]
    fn the_driver_follows_override_then_target_config_then_storage_then_default() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        let choice = choose_driver(root, Runtime::Podman, None).expect("choice");
        assert_eq!(choice.driver, StorageDriver::Vfs);
        assert!(choice.reason.contains("default"));
        assert_eq!(
            choose_driver(root, Runtime::Docker, None)
                .expect("choice")
                .driver,
            StorageDriver::Overlay
        );

        // Existing storage decides when no configuration does.
        fs::create_dir_all(root.join("var/lib/containers/storage/overlay-images")).expect("mkdir");
        let choice = choose_driver(root, Runtime::Podman, None).expect("choice");
        assert_eq!(choice.driver, StorageDriver::Overlay);
        assert!(choice.reason.contains("already"));

        // The packaged default, then the administrator's file, win over the storage.
        write(
            root,
            "usr/share/containers/storage.conf",
            "[storage]\ndriver = \"vfs\"\n",
        );
        let choice = choose_driver(root, Runtime::Podman, None).expect("choice");
        assert_eq!(
            (choice.driver, choice.reason.as_str()),
            (
                StorageDriver::Vfs,
                "/usr/share/containers/storage.conf in the target rootfs"
            )
        );
        write(
            root,
            "etc/containers/storage.conf",
            "[storage]\ndriver = \"overlay\"\ngraphroot = \"/data/containers\"\n",
        );
        let choice = choose_driver(root, Runtime::Podman, None).expect("choice");
        assert_eq!(choice.driver, StorageDriver::Overlay);
        assert_eq!(choice.warnings.len(), 1, "{:?}", choice.warnings);
        assert!(choice.warnings[0].contains("/data/containers"));

        // The override wins over everything.
        let choice =
            choose_driver(root, Runtime::Podman, Some(StorageDriver::Vfs)).expect("choice");
        assert_eq!(
            (choice.driver, choice.reason.as_str()),
            (StorageDriver::Vfs, "--storage-driver")
        );

        write(
            root,
            "etc/docker/daemon.json",
            "{\"storage-driver\": \"btrfs\"}",
        );
        let err = choose_driver(root, Runtime::Docker, None).expect_err("btrfs");
        assert!(err.to_string().contains("\"btrfs\""), "{err}");
        write(
            root,
            "etc/docker/daemon.json",
            "{\"storage-driver\": \"overlay2\"}",
        );
        assert_eq!(
            choose_driver(root, Runtime::Docker, None)
                .expect("choice")
                .driver,
            StorageDriver::Overlay
        );
        write(root, "etc/docker/daemon.json", "{\"storage-driver\": ");
        let err = choose_driver(root, Runtime::Docker, None).expect_err("bad json");
        assert!(err.to_string().contains("/etc/docker/daemon.json"), "{err}");
    }

    #[test]
    fn target_files_resolve_inside_the_rootfs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("rootfs");
        let outside = dir.path().join("outside.conf");
        fs::write(&outside, "[storage]\ndriver = \"btrfs\"\n").expect("write");
        write(
            &root,
            "usr/share/containers/vfs.conf",
            "[storage]\ndriver = \"vfs\"\n",
        );
        fs::create_dir_all(root.join("etc/containers")).expect("mkdir");
        // An absolute link is the target's absolute path: it lands inside the rootfs.
        std::os::unix::fs::symlink(
            "/usr/share/containers/vfs.conf",
            root.join("etc/containers/storage.conf"),
        )
        .expect("symlink");
        let c = configured_driver(&root, Runtime::Podman)
            .expect("read")
            .expect("found");
        assert_eq!(c.driver, Some(StorageDriver::Vfs));
        // `..` cannot climb out of it either.
        fs::remove_file(root.join("etc/containers/storage.conf")).expect("rm");
        std::os::unix::fs::symlink(
            "../../../outside.conf",
            root.join("etc/containers/storage.conf"),
        )
        .expect("symlink");
        assert_eq!(
            configured_driver(&root, Runtime::Podman).expect("read"),
            None,
            "the link resolves to /outside.conf of the rootfs, which does not exist"
        );
        // A directory where a file should be is an error, not silence.
        fs::remove_file(root.join("etc/containers/storage.conf")).expect("rm");
        fs::create_dir(root.join("etc/containers/storage.conf")).expect("mkdir");
        assert!(matches!(
            configured_driver(&root, Runtime::Podman),
            Err(TargetError::NotAFile { .. })
        ));
    }

    #[test]
    fn engine_versions_from_the_package_database() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        assert_eq!(installed_engine(root, Runtime::Docker), None);
        write(
            root,
            "var/lib/opkg/status",
            "Package: docker-moby\nVersion: 25.0.3+git0+4debf411d1-r0\nStatus: install user installed\nArchitecture: cortexa57\n\nPackage: podman\nVersion: 4.9.3-r0\nStatus: install ok installed\n",
        );
        assert_eq!(
            installed_engine(root, Runtime::Docker),
            Some(("docker-moby".into(), "25.0.3+git0+4debf411d1-r0".into()))
        );
        let (_, target) = installed_engine(root, Runtime::Podman).expect("podman");
        assert!(is_older(&target, "5.4.2+ds1-2"));
        assert!(!is_older("26.1.5+dfsg1-9+b9", "26.1.5+dfsg1-9+b9"));
        assert!(!is_older("1:27.0", "26.1.5"));
        assert!(!is_older("unknown", "26.1.5"));
        assert_eq!(release_numbers("1:26.1.5+dfsg1-9"), vec![26, 1, 5]);
        assert_eq!(release_numbers("4.9.3-r0"), vec![4, 9, 3]);
    }
}
