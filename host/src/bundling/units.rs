//! Autostart units: systemd services for docker, Quadlet files for podman (upstream:
//! `install_autostart_services` in container-cross-install.bbclass).
//!
//! For every BUNDLED_CONTAINERS entry with a policy:
//!
//! - docker: `lib/systemd/system/container-<svc>.service` (upstream's path and template) and its
//!   enable link `etc/systemd/system/multi-user.target.wants/container-<svc>.service`, a
//!   relative symlink so that it resolves both inside the image and on the build host;
//! - podman: `etc/containers/systemd/container-<svc>.container`, a Quadlet file; the Quadlet
//!   generator turns it into `container-<svc>.service` at boot and handles its `[Install]`.
//!
//! `<svc>` is the imported image's name with `[^a-zA-Z0-9_-]` replaced by `-`, lowercased; the
//! unit runs exactly the `name:tag` that was imported (both come from the resolved OCI dir).
//!
//! Differences from upstream, all fixes: only `Restart=` values systemd accepts
//! ([`systemd_restart`]); a custom service file (CONTAINER_SERVICE_FILE) that is missing, names
//! no entry, or belongs to an entry without a policy is an error instead of being silently
//! ignored (W10); two entries that would produce the same unit (also a docker unit and a
//! Quadlet-generated service of the same name, which would shadow it) are an error; nothing is
//! written unless everything was rendered, and every write is atomic and stays inside the
//! rootfs even where the rootfs has absolute symlinks (`lib -> /usr/lib`).

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use serde::Serialize;

use super::spec::{Policy, ResolvedContainer, Runtime, SpecError};

/// Where docker units go (upstream hard-coded `/lib/systemd/system`; with merged /usr it is a
/// symlink to `usr/lib`, followed inside the rootfs).
pub const SYSTEM_UNIT_DIR: &str = "lib/systemd/system";
/// Enable links of docker units.
pub const WANTS_DIR: &str = "etc/systemd/system/multi-user.target.wants";
/// Quadlet files of podman containers.
pub const QUADLET_DIR: &str = "etc/containers/systemd";
/// Largest custom service file accepted.
pub const MAX_CUSTOM_FILE: u64 = 1 << 20;

/// The systemd `Restart=` value for a policy.
///
/// The generated units run the container in the foreground (`docker run --rm`, and Quadlet's
/// `podman run --rm`), so systemd, not the engine, is the supervisor:
///
/// - The engine's own `--restart` is never passed (it stays docker's default `no`): docker
///   refuses `--restart` together with `--rm`, and a restarting dockerd would be a second
///   supervisor that restarts the container behind systemd's back, and again at every daemon
///   start whether or not the unit is enabled.
/// - systemd accepts `no`, `on-success`, `on-failure`, `on-abnormal`, `on-watchdog`,
///   `on-abort` and `always`. Upstream wrote docker's `unless-stopped` verbatim; systemd
///   ignores that line with a warning and falls back to `Restart=no` (W5), so the default
///   `autostart` never restarted anything. `unless-stopped` means "restart unless an operator
///   stopped it"; with systemd supervising, stopping is `systemctl stop`, which `always` never
///   undoes, and staying stopped across boots is `systemctl disable`. So `unless-stopped` (and
///   `autostart`, upstream's word for it) map to `always`.
/// - `always` and `on-failure` mean the same in docker and systemd; `no` starts the container
///   at boot (the unit is still enabled, as upstream) and never restarts it.
pub fn systemd_restart(policy: Policy) -> &'static str {
    match policy {
        Policy::Autostart | Policy::UnlessStopped | Policy::Always => "always",
        Policy::OnFailure => "on-failure",
        Policy::No => "no",
    }
}

/// Upstream's normalisation (3.1): `autostart` is `unless-stopped`, the rest stay as written.
pub fn normalise(policy: Policy) -> Policy {
    match policy {
        Policy::Autostart => Policy::UnlessStopped,
        p => p,
    }
}

/// What one rendered path holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum UnitContent {
    File {
        contents: String,
        mode: u32,
    },
    /// A symlink with this (relative) target.
    Symlink {
        target: PathBuf,
    },
}

/// One file (or link) to put into the rootfs, at `rel_path` below its root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnitFile {
    pub rel_path: PathBuf,
    pub content: UnitContent,
}

impl UnitFile {
    fn file(rel_path: PathBuf, contents: String) -> Self {
        Self {
            rel_path,
            content: UnitContent::File {
                contents,
                mode: 0o644,
            },
        }
    }

    /// The file's text (`None` for a symlink).
    pub fn contents(&self) -> Option<&str> {
        match &self.content {
            UnitContent::File { contents, .. } => Some(contents),
            UnitContent::Symlink { .. } => None,
        }
    }
}

/// The systemd service that runs the container on the target: `container-<svc>.service`
/// (for podman, the one the Quadlet generator makes).
pub fn service_name(c: &ResolvedContainer) -> String {
    format!("container-{}.service", c.service_stem())
}

/// The main file for a container: the docker unit or the Quadlet file.
pub fn main_rel_path(c: &ResolvedContainer) -> PathBuf {
    match c.container.runtime {
        Runtime::Docker => Path::new(SYSTEM_UNIT_DIR).join(service_name(c)),
        Runtime::Podman => {
            Path::new(QUADLET_DIR).join(format!("container-{}.container", c.service_stem()))
        }
    }
}

/// The docker unit (upstream's template 3.2, with a valid `Restart=`).
pub fn render_docker_unit(c: &ResolvedContainer, policy: Policy) -> String {
    let reference = c.reference();
    let name = c.container_name();
    format!(
        "# Generated by vcontainer from BUNDLED_CONTAINERS entry '{entry}' (policy {policy})\n\
         [Unit]\n\
         Description=Docker Container {reference}\n\
         After=docker.service\n\
         Requires=docker.service\n\
         \n\
         [Service]\n\
         Type=simple\n\
         Restart={restart}\n\
         RestartSec=5s\n\
         TimeoutStartSec=0\n\
         ExecStartPre=-/usr/bin/docker rm -f {name}\n\
         ExecStart=/usr/bin/docker run --rm --name {name} {reference}\n\
         ExecStop=/usr/bin/docker stop {name}\n\
         \n\
         [Install]\n\
         WantedBy=multi-user.target\n",
        entry = c.container.entry,
        restart = systemd_restart(policy),
    )
}

/// The Quadlet file (upstream's template 3.3, with a valid `Restart=`; only keys that every
/// Quadlet version knows: `Image`, `ContainerName`).
pub fn render_quadlet(c: &ResolvedContainer, policy: Policy) -> String {
    let reference = c.reference();
    format!(
        "# Quadlet container file for {reference}\n\
         # Generated by vcontainer from BUNDLED_CONTAINERS entry '{entry}' (policy {policy})\n\
         \n\
         [Unit]\n\
         Description=Podman Container {reference}\n\
         \n\
         [Container]\n\
         Image={reference}\n\
         ContainerName={name}\n\
         \n\
         [Service]\n\
         Restart={restart}\n\
         RestartSec=5s\n\
         \n\
         [Install]\n\
         WantedBy=multi-user.target\n",
        entry = c.container.entry,
        name = c.container_name(),
        restart = systemd_restart(policy),
    )
}

/// The enable link of a docker unit, relative to its directory.
fn wants_link(c: &ResolvedContainer) -> UnitFile {
    let up: PathBuf = Path::new(WANTS_DIR).components().map(|_| "..").collect();
    UnitFile {
        rel_path: Path::new(WANTS_DIR).join(service_name(c)),
        content: UnitContent::Symlink {
            target: up.join(SYSTEM_UNIT_DIR).join(service_name(c)),
        },
    }
}

/// The files for one container with `policy`: docker unit plus enable link, or Quadlet file.
pub fn render_units(c: &ResolvedContainer, policy: Policy) -> Vec<UnitFile> {
    match c.container.runtime {
        Runtime::Docker => vec![
            UnitFile::file(main_rel_path(c), render_docker_unit(c, policy)),
            wants_link(c),
        ],
        Runtime::Podman => vec![UnitFile::file(main_rel_path(c), render_quadlet(c, policy))],
    }
}

#[derive(Debug, thiserror::Error)]
pub enum UnitError {
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error("service file for '{name}' ({}): {reason}", path.display())]
    CustomFile {
        name: String,
        path: PathBuf,
        reason: String,
    },
    #[error(
        "service file given for '{name}', but no BUNDLED_CONTAINERS entry is named so \
         (entries: {entries}); the key is the first field of the entry"
    )]
    UnknownCustom { name: String, entries: String },
    #[error(
        "service file given for '{name}', but its entry '{entry}' has no autostart policy; add \
         one (e.g. '{entry}:autostart') or drop the service file"
    )]
    CustomWithoutPolicy { name: String, entry: String },
    #[error("entries '{first}' and '{second}' would both write {what}; rename one of the images")]
    Conflict {
        what: String,
        first: String,
        second: String,
    },
    #[error("rootfs {}: {reason}", path.display())]
    Rootfs { path: PathBuf, reason: String },
    #[error("writing {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Checks a custom file and returns its text.
fn read_custom(name: &str, path: &Path, runtime: Runtime) -> Result<String, UnitError> {
    let err = |reason: String| UnitError::CustomFile {
        name: name.to_string(),
        path: path.to_path_buf(),
        reason,
    };
    let meta = std::fs::metadata(path).map_err(|e| err(e.to_string()))?;
    if !meta.is_file() {
        return Err(err("not a regular file".into()));
    }
    if meta.len() > MAX_CUSTOM_FILE {
        return Err(err(format!("larger than {MAX_CUSTOM_FILE} bytes")));
    }
    let bytes = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    let text = String::from_utf8(bytes).map_err(|_| err("not UTF-8 text".into()))?;
    let section = match runtime {
        Runtime::Docker => "[Service]",
        Runtime::Podman => "[Container]",
    };
    if !text.lines().any(|l| l.trim() == section) {
        return Err(err(format!(
            "has no {section} section; a {runtime} entry needs a {}",
            match runtime {
                Runtime::Docker => "systemd service unit",
                Runtime::Podman => "Quadlet .container file",
            }
        )));
    }
    Ok(text)
}

/// Renders the units of every container with a policy, with custom files (keyed by the
/// entry's first field) in place of the generated main file. Checks everything; writes nothing.
pub fn plan_units(
    containers: &[ResolvedContainer],
    custom: &HashMap<String, PathBuf>,
) -> Result<Vec<UnitFile>, UnitError> {
    // Custom keys must name an entry with a policy.
    let mut keys: Vec<&String> = custom.keys().collect();
    keys.sort();
    for key in keys {
        let matching: Vec<&ResolvedContainer> = containers
            .iter()
            .filter(|c| &c.container.name == key)
            .collect();
        if matching.is_empty() {
            return Err(UnitError::UnknownCustom {
                name: key.clone(),
                entries: containers
                    .iter()
                    .map(|c| c.container.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        if let Some(c) = matching.iter().find(|c| c.container.policy.is_none()) {
            return Err(UnitError::CustomWithoutPolicy {
                name: key.clone(),
                entry: c.container.entry.clone(),
            });
        }
    }

    let mut out: Vec<UnitFile> = Vec::new();
    let mut owners: BTreeMap<PathBuf, String> = BTreeMap::new();
    let mut services: BTreeMap<String, String> = BTreeMap::new();
    for c in containers {
        let Some(policy) = c.container.policy else {
            continue;
        };
        let entry = &c.container.entry;
        // A Quadlet-generated service lives in the generator dir, which systemd prefers over
        // lib/systemd/system: the same service name for docker and podman would hide one.
        if let Some(first) = services.insert(service_name(c), entry.clone()) {
            return Err(UnitError::Conflict {
                what: service_name(c),
                first,
                second: entry.clone(),
            });
        }
        let mut files = render_units(c, policy);
        if let Some(path) = custom.get(&c.container.name) {
            let text = read_custom(&c.container.name, path, c.container.runtime)?;
            if let Some(main) = files.first_mut() {
                main.content = UnitContent::File {
                    contents: text,
                    mode: 0o644,
                };
            }
        }
        for f in files {
            if let Some(first) = owners.insert(f.rel_path.clone(), entry.clone()) {
                return Err(UnitError::Conflict {
                    what: format!("/{}", f.rel_path.display()),
                    first,
                    second: entry.clone(),
                });
            }
            out.push(f);
        }
    }
    Ok(out)
}

/// Resolves `rel_dir` below `root` as the target would see it (symlinks followed, absolute
/// ones relative to `root`, `..` never above `root`), creating missing directories (0755).
/// The result is a real directory inside `root`.
fn dir_in_root(root: &Path, rel_dir: &Path) -> Result<PathBuf, UnitError> {
    let io = |path: &Path, source: std::io::Error| UnitError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut pending: Vec<OsString> = Vec::new();
    let push_components = |pending: &mut Vec<OsString>, p: &Path| {
        let mut comps: Vec<OsString> = Vec::new();
        for c in p.components() {
            match c {
                Component::Normal(n) => comps.push(n.to_os_string()),
                Component::ParentDir => comps.push("..".into()),
                Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            }
        }
        pending.extend(comps.into_iter().rev());
    };
    push_components(&mut pending, rel_dir);
    let mut stack: Vec<OsString> = Vec::new();
    let mut hops = 0;
    while let Some(c) = pending.pop() {
        if c == ".." {
            stack.pop();
            continue;
        }
        let cur: PathBuf = root.join(stack.iter().collect::<PathBuf>()).join(&c);
        match std::fs::symlink_metadata(&cur) {
            Ok(m) if m.file_type().is_symlink() => {
                hops += 1;
                if hops > 40 {
                    return Err(UnitError::Rootfs {
                        path: cur,
                        reason: "too many levels of symbolic links".into(),
                    });
                }
                let target = std::fs::read_link(&cur).map_err(|e| io(&cur, e))?;
                if target.is_absolute() {
                    stack.clear();
                }
                push_components(&mut pending, &target);
            }
            Ok(m) if m.is_dir() => stack.push(c),
            Ok(_) => {
                return Err(UnitError::Rootfs {
                    path: cur,
                    reason: "exists and is not a directory".into(),
                })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::DirBuilder::new()
                    .mode(0o755)
                    .create(&cur)
                    .map_err(|e| io(&cur, e))?;
                stack.push(c);
            }
            Err(e) => return Err(io(&cur, e)),
        }
    }
    Ok(root.join(stack.iter().collect::<PathBuf>()))
}

/// Writes one planned file or link: resolved inside `rootfs`, then renamed into place (an
/// existing file or link of that name is replaced, never followed).
fn write_one(rootfs: &Path, f: &UnitFile) -> Result<PathBuf, UnitError> {
    let (Some(parent), Some(file_name)) = (f.rel_path.parent(), f.rel_path.file_name()) else {
        return Err(UnitError::Rootfs {
            path: f.rel_path.clone(),
            reason: "not a file path".into(),
        });
    };
    let dir = dir_in_root(rootfs, parent)?;
    let dest = dir.join(file_name);
    let io = |source: std::io::Error| UnitError::Io {
        path: dest.clone(),
        source,
    };
    let mut builder = tempfile::Builder::new();
    builder.prefix(".vcontainer-unit-");
    match &f.content {
        UnitContent::File { contents, mode } => {
            let mut tmp = builder.tempfile_in(&dir).map_err(io)?;
            tmp.write_all(contents.as_bytes()).map_err(io)?;
            tmp.as_file()
                .set_permissions(std::fs::Permissions::from_mode(*mode))
                .map_err(io)?;
            tmp.as_file().sync_all().map_err(io)?;
            tmp.persist(&dest).map_err(|e| io(e.error))?;
        }
        UnitContent::Symlink { target } => {
            let tmp = builder
                .make_in(&dir, |p| std::os::unix::fs::symlink(target, p))
                .map_err(io)?;
            tmp.persist(&dest).map_err(|e| io(e.error))?;
        }
    }
    Ok(rootfs.join(&f.rel_path))
}

/// Writes planned files into `rootfs` (an existing directory). Returns the paths written.
pub fn write_units(rootfs: &Path, files: &[UnitFile]) -> Result<Vec<PathBuf>, UnitError> {
    match std::fs::metadata(rootfs) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(UnitError::Rootfs {
                path: rootfs.to_path_buf(),
                reason: "not a directory".into(),
            })
        }
        Err(e) => {
            return Err(UnitError::Rootfs {
                path: rootfs.to_path_buf(),
                reason: e.to_string(),
            })
        }
    }
    files.iter().map(|f| write_one(rootfs, f)).collect()
}

/// Renders ([`plan_units`]) and writes ([`write_units`]) the units of every container with a
/// policy into `rootfs`. `custom` maps an entry's first field to its own unit or Quadlet file.
pub fn install_units(
    rootfs: &Path,
    containers: &[ResolvedContainer],
    custom: &HashMap<String, PathBuf>,
) -> Result<Vec<PathBuf>, UnitError> {
    let files = plan_units(containers, custom)?;
    write_units(rootfs, &files)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bundling::spec::{parse_entry, BundledContainer};

    fn resolved(entry: &str, image: &str, tag: &str) -> ResolvedContainer {
        let container: BundledContainer = parse_entry(entry, Runtime::Docker).expect(entry);
        ResolvedContainer {
            container,
            oci_dir: PathBuf::from(format!("/deploy/{image}-{tag}-oci")),
            image_name: image.into(),
            tag: tag.into(),
        }
    }

    #[test]
    fn restart_mapping_only_systemd_values() {
        let systemd_values = [
            "no",
            "on-success",
            "on-failure",
            "on-abnormal",
            "on-watchdog",
            "on-abort",
            "always",
        ];
        let table = [
            (Policy::Autostart, Policy::UnlessStopped, "always"),
            (Policy::UnlessStopped, Policy::UnlessStopped, "always"),
            (Policy::Always, Policy::Always, "always"),
            (Policy::OnFailure, Policy::OnFailure, "on-failure"),
            (Policy::No, Policy::No, "no"),
        ];
        for (p, norm, restart) in table {
            assert_eq!(normalise(p), norm);
            assert_eq!(systemd_restart(p), restart, "{p}");
            assert!(systemd_values.contains(&systemd_restart(p)));
        }
    }

    #[test]
    fn docker_unit_and_link() {
        let c = resolved("redis-7-oci:docker:autostart", "redis", "7");
        let files = render_units(&c, Policy::Autostart);
        assert_eq!(files.len(), 2);
        assert_eq!(
            files[0].rel_path,
            Path::new("lib/systemd/system/container-redis.service")
        );
        let text = files[0].contents().expect("file");
        for line in [
            "Description=Docker Container redis:7",
            "After=docker.service",
            "Requires=docker.service",
            "Restart=always",
            "ExecStartPre=-/usr/bin/docker rm -f redis",
            "ExecStart=/usr/bin/docker run --rm --name redis redis:7",
            "ExecStop=/usr/bin/docker stop redis",
            "WantedBy=multi-user.target",
        ] {
            assert!(text.lines().any(|l| l == line), "{line}\n{text}");
        }
        assert!(!text.contains("unless-stopped\n"), "{text}");
        assert!(!text.contains("--restart"), "{text}");
        assert_eq!(
            files[1],
            UnitFile {
                rel_path: PathBuf::from(
                    "etc/systemd/system/multi-user.target.wants/container-redis.service"
                ),
                content: UnitContent::Symlink {
                    target: PathBuf::from("../../../../lib/systemd/system/container-redis.service")
                },
            }
        );
    }

    #[test]
    fn quadlet_file() {
        let c = resolved("db:podman:on-failure", "my.db", "v1.0");
        let files = render_units(&c, Policy::OnFailure);
        assert_eq!(files.len(), 1);
        assert_eq!(
            files[0].rel_path,
            Path::new("etc/containers/systemd/container-my-db.container")
        );
        let text = files[0].contents().expect("file");
        for line in [
            "[Container]",
            "Image=my.db:v1.0",
            "ContainerName=my.db",
            "Restart=on-failure",
            "WantedBy=multi-user.target",
        ] {
            assert!(text.lines().any(|l| l == line), "{line}\n{text}");
        }
        assert_eq!(service_name(&c), "container-my-db.service");
    }

    #[test]
    fn plan_checks_custom_files_and_conflicts() {
        let t = tempfile::tempdir().expect("tmp");
        let svc = t.path().join("app.service");
        std::fs::write(
            &svc,
            "[Unit]\nDescription=mine\n[Service]\nExecStart=/bin/true\n",
        )
        .expect("write");
        let quad = t.path().join("db.container");
        std::fs::write(&quad, "[Container]\nImage=db:latest\n").expect("write");
        let app = resolved("app:docker:autostart", "app", "latest");
        let db = resolved("db:podman:always", "db", "latest");
        let plain = resolved("plain:docker", "plain", "latest");
        let all = vec![app.clone(), db.clone(), plain.clone()];

        let custom = HashMap::from([
            ("app".to_string(), svc.clone()),
            ("db".into(), quad.clone()),
        ]);
        let files = plan_units(&all, &custom).expect("plan");
        assert_eq!(files.len(), 3, "{files:#?}");
        assert_eq!(files[0].contents().map(|s| s.contains("mine")), Some(true));
        assert!(matches!(files[1].content, UnitContent::Symlink { .. }));
        assert_eq!(files[2].contents(), Some("[Container]\nImage=db:latest\n"));

        let cases: Vec<(HashMap<String, PathBuf>, &str)> = vec![
            (
                HashMap::from([("nope".into(), svc.clone())]),
                "no BUNDLED_CONTAINERS entry is named so",
            ),
            (
                HashMap::from([("plain".into(), svc.clone())]),
                "has no autostart policy",
            ),
            (
                HashMap::from([("app".into(), t.path().join("missing"))]),
                "No such file",
            ),
            (
                HashMap::from([("app".into(), t.path().to_path_buf())]),
                "not a regular file",
            ),
            (
                HashMap::from([("app".into(), quad.clone())]),
                "has no [Service] section",
            ),
            (
                HashMap::from([("db".into(), svc.clone())]),
                "has no [Container] section",
            ),
        ];
        for (custom, needle) in cases {
            let e = plan_units(&all, &custom).expect_err(needle);
            assert!(e.to_string().contains(needle), "{needle}: {e}");
        }

        // Same image under both runtimes with autostart: one service would shadow the other.
        let both = vec![app.clone(), resolved("app:podman:always", "app", "latest")];
        let e = plan_units(&both, &HashMap::new()).expect_err("conflict");
        assert!(e.to_string().contains("container-app.service"), "{e}");
        // Two images whose service names sanitise to the same.
        let same = vec![
            resolved("a.b:docker:always", "a.b", "latest"),
            resolved("a-b:docker:always", "a-b", "latest"),
        ];
        let e = plan_units(&same, &HashMap::new()).expect_err("conflict");
        assert!(
            e.to_string()
                .contains("'a.b:docker:always' and 'a-b:docker:always'"),
            "{e}"
        );
        // Both runtimes, only one with a policy: fine.
        let one = vec![app, resolved("app:podman", "app", "latest")];
        assert_eq!(plan_units(&one, &HashMap::new()).expect("plan").len(), 2);
    }

    #[test]
    fn writes_stay_inside_the_rootfs() {
        let t = tempfile::tempdir().expect("tmp");
        let root = t.path().join("rootfs");
        let outside = t.path().join("outside");
        std::fs::create_dir_all(root.join("usr/lib")).expect("mkdir");
        std::fs::create_dir_all(&outside).expect("mkdir");
        // Merged /usr with an absolute link, and an etc link that tries to escape.
        std::os::unix::fs::symlink("/usr/lib", root.join("lib")).expect("symlink");
        std::fs::create_dir_all(root.join("etc")).expect("mkdir");
        std::os::unix::fs::symlink("../../../../../../outside", root.join("etc/containers"))
            .expect("symlink");
        let c = [
            resolved("app:docker:always", "app", "latest"),
            resolved("db:podman:always", "db", "latest"),
        ];
        let written = install_units(&root, &c, &HashMap::new()).expect("install");
        assert_eq!(written.len(), 3);
        assert!(root
            .join("usr/lib/systemd/system/container-app.service")
            .is_file());
        assert!(root
            .join("outside/systemd/container-db.container")
            .is_file());
        assert_eq!(std::fs::read_dir(&outside).expect("ls").count(), 0);
        let link = root.join("etc/systemd/system/multi-user.target.wants/container-app.service");
        assert_eq!(
            std::fs::read_link(&link).expect("link"),
            Path::new("../../../../lib/systemd/system/container-app.service")
        );
        let mode = std::fs::metadata(root.join("usr/lib/systemd/system/container-app.service"))
            .expect("stat")
            .permissions()
            .mode();
        assert_eq!(mode & 0o7777, 0o644);
        // Rewriting replaces (also a stale link in place of the file), leaves no temp files.
        std::fs::remove_file(root.join("usr/lib/systemd/system/container-app.service"))
            .expect("rm");
        std::os::unix::fs::symlink(
            outside.join("victim"),
            root.join("usr/lib/systemd/system/container-app.service"),
        )
        .expect("symlink");
        install_units(&root, &c, &HashMap::new()).expect("again");
        assert!(!outside.join("victim").exists());
        let names: Vec<_> = std::fs::read_dir(root.join("usr/lib/systemd/system"))
            .expect("ls")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, ["container-app.service"]);
        // A file where a directory must be is an error.
        let bad = t.path().join("bad");
        std::fs::create_dir_all(&bad).expect("mkdir");
        std::fs::write(bad.join("lib"), "").expect("write");
        let e = install_units(&bad, &c, &HashMap::new()).expect_err("not a dir");
        assert!(e.to_string().contains("not a directory"), "{e}");
        let e = install_units(&t.path().join("none"), &c, &HashMap::new()).expect_err("no root");
        assert!(e.to_string().contains("rootfs"), "{e}");
    }
}
