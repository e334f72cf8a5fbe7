//! Installing the agent into a root filesystem built elsewhere (a Yocto image, plain mmdebstrap):
//! the agent at [`ROOTFS_AGENT_PATH`] and the mount points of [`ROOTFS_MOUNT_POINTS`], nothing
//! else. A Yocto recipe that does the same two things makes the same image.
//!
//! The tree is not ours: no path is followed through a symlink, so a rootfs whose `usr` links to
//! an absolute path can never make us write into the host's own `/usr`.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use vcontainer_protocol::guest_image::{ROOTFS_AGENT_PATH, ROOTFS_MOUNT_POINTS};

use crate::arch::Arch;
use crate::error::{BuildError, Result};

/// What [`install`] changed, for the user to see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installed {
    pub agent: PathBuf,
    /// Mount points that did not exist and were created.
    pub created: Vec<PathBuf>,
}

fn refuse(rootfs: &Path, detail: String) -> BuildError {
    BuildError::Package {
        what: format!("installing the agent into {}", rootfs.display()),
        detail,
    }
}

/// Copies `agent` (checked to be a static binary for `arch`) into `rootfs` and creates the
/// missing mount points.
pub fn install(rootfs: &Path, agent: &Path, arch: Arch) -> Result<Installed> {
    // The root itself may be a link the user named; only paths inside it are never followed.
    let meta =
        std::fs::metadata(rootfs).map_err(BuildError::io("reading the root filesystem", rootfs))?;
    if !meta.is_dir() {
        return Err(refuse(rootfs, "not a directory".into()));
    }
    let bytes = std::fs::read(agent).map_err(BuildError::io("reading agent binary", agent))?;
    crate::agent::check(agent, &bytes, arch)?;

    let mut created = Vec::new();
    for dir in ROOTFS_MOUNT_POINTS {
        let path = rootfs.join(dir);
        match std::fs::symlink_metadata(&path) {
            // A symlink (e.g. to a directory of the image) is resolved inside the guest.
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                create_dir_755(&path, "creating mount point")?;
                created.push(path);
            }
            Err(e) => return Err(BuildError::io("reading mount point", &path)(e)),
        }
    }

    let rel = Path::new(ROOTFS_AGENT_PATH.trim_start_matches('/'));
    let parent = rel.parent().unwrap_or(Path::new(""));
    let dir = real_dirs(rootfs, parent)?;
    let dest = dir.join(rel.file_name().unwrap_or_default());
    // A temp file and a rename: never a half-written init, and an existing symlink at the
    // destination is replaced rather than written through.
    let tmp = dir.join(".vcontainer-agent.tmp");
    let _ = std::fs::remove_file(&tmp);
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        f.write_all(&bytes)?;
        f.set_permissions(std::fs::Permissions::from_mode(0o755))?;
        f.sync_all()?;
        std::fs::rename(&tmp, &dest)
    };
    if let Err(e) = write() {
        let _ = std::fs::remove_file(&tmp);
        return Err(BuildError::io("writing the agent", &dest)(e));
    }
    Ok(Installed {
        agent: dest,
        created,
    })
}

/// A new directory of mode 0755 whatever the umask: what an image's directories have.
fn create_dir_755(path: &Path, what: &str) -> Result<()> {
    std::fs::create_dir(path).map_err(BuildError::io(what, path))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .map_err(BuildError::io(what, path))
}

/// `rootfs/rel`, each component a real directory (created 0755 when missing), never a symlink.
fn real_dirs(rootfs: &Path, rel: &Path) -> Result<PathBuf> {
    let mut path = rootfs.to_path_buf();
    for part in rel.components() {
        let Component::Normal(name) = part else {
            return Err(refuse(
                rootfs,
                format!("unexpected path component in {rel:?}"),
            ));
        };
        path.push(name);
        match std::fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() => {}
            Ok(m) if m.file_type().is_symlink() => {
                return Err(refuse(
                    rootfs,
                    format!(
                        "{} is a symlink; the agent goes to {ROOTFS_AGENT_PATH} and is never written through a link",
                        path.display()
                    ),
                ))
            }
            Ok(_) => {
                return Err(refuse(
                    rootfs,
                    format!("{} exists and is not a directory", path.display()),
                ))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                create_dir_755(&path, "creating directory")?;
            }
            Err(e) => return Err(BuildError::io("reading directory", &path)(e)),
        }
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::static_elf;
    use object::Architecture;

    fn agent(dir: &Path, arch: Architecture) -> PathBuf {
        let p = dir.join("agent");
        std::fs::write(&p, static_elf(arch)).expect("write agent");
        p
    }

    #[test]
    fn installs_the_agent_and_only_the_missing_mount_points() {
        let dir = tempfile::tempdir().expect("tempdir");
        let rootfs = dir.path().join("rootfs");
        std::fs::create_dir_all(rootfs.join("usr/sbin")).expect("mkdir");
        std::fs::create_dir(rootfs.join("proc")).expect("mkdir");
        std::os::unix::fs::symlink("usr/sbin", rootfs.join("sbin")).expect("link");
        let a = agent(dir.path(), Architecture::Aarch64);
        let done = install(&rootfs, &a, Arch::Aarch64).expect("install");
        assert_eq!(done.agent, rootfs.join("usr/sbin/vcontainer-agent"));
        let meta = std::fs::metadata(&done.agent).expect("agent");
        assert_eq!(meta.permissions().mode() & 0o777, 0o755);
        assert_eq!(
            std::fs::read(&done.agent).expect("read"),
            std::fs::read(&a).expect("read")
        );
        let mut created: Vec<_> = done
            .created
            .iter()
            .map(|p| p.strip_prefix(&rootfs).expect("inside").to_path_buf())
            .collect();
        created.sort();
        assert_eq!(
            created,
            [Path::new("dev"), Path::new("run"), Path::new("sys")]
        );
        // twice is the same as once
        let again = install(&rootfs, &a, Arch::Aarch64).expect("again");
        assert!(again.created.is_empty());
        assert!(!rootfs.join("usr/sbin/.vcontainer-agent.tmp").exists());
    }

    #[test]
    fn never_writes_through_a_symlink() {
        let dir = tempfile::tempdir().expect("tempdir");
        let outside = dir.path().join("host-usr");
        std::fs::create_dir_all(outside.join("sbin")).expect("mkdir");
        let rootfs = dir.path().join("rootfs");
        std::fs::create_dir(&rootfs).expect("mkdir");
        std::os::unix::fs::symlink(&outside, rootfs.join("usr")).expect("link");
        let a = agent(dir.path(), Architecture::X86_64);
        let err = install(&rootfs, &a, Arch::X86_64).expect_err("must refuse");
        assert!(err.to_string().contains("is a symlink"), "{err}");
        assert!(!outside.join("sbin/vcontainer-agent").exists());
    }

    #[test]
    fn an_existing_symlink_at_the_agent_path_is_replaced_not_followed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let rootfs = dir.path().join("rootfs");
        std::fs::create_dir_all(rootfs.join("usr/sbin")).expect("mkdir");
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"keep").expect("write");
        std::os::unix::fs::symlink(&victim, rootfs.join("usr/sbin/vcontainer-agent"))
            .expect("link");
        let a = agent(dir.path(), Architecture::X86_64);
        install(&rootfs, &a, Arch::X86_64).expect("install");
        assert_eq!(std::fs::read(&victim).expect("read"), b"keep");
        assert!(
            !std::fs::symlink_metadata(rootfs.join("usr/sbin/vcontainer-agent"))
                .expect("agent")
                .file_type()
                .is_symlink()
        );
    }

    #[test]
    fn a_wrong_arch_agent_or_a_missing_rootfs_is_refused_before_writing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let rootfs = dir.path().join("rootfs");
        std::fs::create_dir(&rootfs).expect("mkdir");
        let a = agent(dir.path(), Architecture::X86_64);
        let err = install(&rootfs, &a, Arch::Aarch64).expect_err("wrong arch");
        assert!(err.to_string().contains("aarch64"), "{err}");
        assert_eq!(std::fs::read_dir(&rootfs).expect("read").count(), 0);
        let err = install(&dir.path().join("nope"), &a, Arch::X86_64).expect_err("missing");
        assert!(err.to_string().contains("nope"), "{err}");
    }
}
