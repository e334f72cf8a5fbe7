//! Where an instance keeps its files: `~/.vdkr/<arch>/` (vpdmn: `~/.vpdmn/<arch>/`) by default,
//! `~/.vdkr/<name>/` for `--instance NAME`, exactly `DIR` for `--state-dir DIR` — upstream's layout.

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use vcontainer_initramfs::Arch;

use super::{StateError, Tool};

/// How the user chose the state directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateLocation {
    /// `<base>/<arch>`.
    Default(Arch),
    /// `--instance NAME`: `<base>/NAME`.
    Instance(String),
    /// `--state-dir DIR`: exactly DIR.
    Explicit(PathBuf),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateDir {
    tool: Tool,
    root: PathBuf,
}

impl StateDir {
    /// Resolves the directory with `base` as the tool's base directory (normally
    /// [`Tool::default_base`] of `$HOME`; upstream's `VDKR_STATE_DIR` overrides it). Pure: creates
    /// nothing.
    pub fn resolve(
        tool: Tool,
        base: &Path,
        location: &StateLocation,
    ) -> Result<StateDir, StateError> {
        let root = match location {
            StateLocation::Default(arch) => base.join(arch.name()),
            StateLocation::Instance(name) => {
                validate_instance_name(name)?;
                base.join(name)
            }
            StateLocation::Explicit(dir) => absolute(dir),
        };
        Ok(StateDir { tool, root })
    }

    /// [`StateDir::resolve`] under `$HOME/.vdkr` resp. `$HOME/.vpdmn`.
    pub fn resolve_in_home(tool: Tool, location: &StateLocation) -> Result<StateDir, StateError> {
        if let StateLocation::Explicit(dir) = location {
            return Ok(StateDir {
                tool,
                root: absolute(dir),
            });
        }
        let home = std::env::var_os("HOME")
            .filter(|h| !h.is_empty())
            .ok_or(StateError::NoHome)?;
        Self::resolve(tool, &tool.default_base(Path::new(&home)), location)
    }

    /// Creates the directory (and missing parents) with mode 0700: it holds sockets that reach a
    /// root shell in the guest and the disk with all of the user's images. An existing directory is
    /// left as it is.
    pub fn create(&self) -> Result<(), StateError> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.root)
            .map_err(|e| StateError::io("create directory", &self.root, e))
    }

    pub fn tool(&self) -> Tool {
        self.tool
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `docker-state.img` / `podman-state.img`: the persistent ext4 disk (`/dev/vdb` in the guest).
    pub fn state_disk(&self) -> PathBuf {
        self.root.join(self.tool.state_image())
    }

    /// The guest's serial console.
    pub fn console_log(&self) -> PathBuf {
        self.root.join("console.log")
    }

    /// QEMU's own stdout/stderr.
    pub fn qemu_log(&self) -> PathBuf {
        self.root.join("qemu.log")
    }

    pub fn vsock_backend_log(&self) -> PathBuf {
        self.root.join("vsock-backend.log")
    }

    /// The vhost-user socket QEMU connects to (the backend unlinks it while a VM is attached).
    pub fn vhost_socket(&self) -> PathBuf {
        self.root.join("vhost.sock")
    }

    /// The backend's host-side socket; guest connections to host port P arrive at `vsock.sock_P`.
    pub fn vsock_socket(&self) -> PathBuf {
        self.root.join("vsock.sock")
    }

    /// `vsock.sock_<port>`: where the host listens for the guest's connections to `port`.
    pub fn vsock_listener(&self, port: u32) -> PathBuf {
        self.root.join(format!("vsock.sock_{port}"))
    }

    /// `daemon.pid`: upstream's running marker, the memory-resident QEMU's pid in decimal. Scripts
    /// and harnesses written for upstream test it (`/proc/<pid>` alive); `instance.json` is what
    /// this tool itself reads. Written and removed with it.
    pub fn daemon_pid_file(&self) -> PathBuf {
        self.root.join("daemon.pid")
    }

    pub fn lock_file(&self) -> PathBuf {
        self.root.join("lock")
    }

    /// Metadata of a memory-resident VM ([`super::InstanceRecord`]).
    pub fn instance_file(&self) -> PathBuf {
        self.root.join("instance.json")
    }

    /// The paths [`crate::vm::spawn_vm`] needs besides the spec.
    pub fn launch_files(&self) -> crate::vm::LaunchFiles {
        crate::vm::LaunchFiles {
            qemu_log: self.qemu_log(),
            backend_log: self.vsock_backend_log(),
            vsock_uds: self.vsock_socket(),
            guard_log: self.root.join("vm-guard.log"),
            daemon_pid: self.daemon_pid_file(),
            state_dir: self.root.clone(),
        }
    }
}

/// `dir` made absolute (not canonical: symlinks stay), so that the paths in QEMU's argv and in
/// the records name the same directory whatever the working directory of a later command.
fn absolute(dir: &Path) -> PathBuf {
    std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf())
}

/// Instance names become one path component: no separators, no `.`/`..`, nothing a shell or a
/// `ls` would trip over.
fn validate_instance_name(name: &str) -> Result<(), StateError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(StateError::BadInstanceName(name.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn default_instance_and_explicit_locations() {
        let home = Path::new("/home/u");
        let base = Tool::Vdkr.default_base(home);
        let d = StateDir::resolve(Tool::Vdkr, &base, &StateLocation::Default(Arch::Aarch64))
            .expect("ok");
        assert_eq!(d.root(), Path::new("/home/u/.vdkr/aarch64"));
        assert_eq!(
            d.state_disk(),
            Path::new("/home/u/.vdkr/aarch64/docker-state.img")
        );

        let base = Tool::Vpdmn.default_base(home);
        let d = StateDir::resolve(Tool::Vpdmn, &base, &StateLocation::Default(Arch::X86_64))
            .expect("ok");
        assert_eq!(d.root(), Path::new("/home/u/.vpdmn/x86_64"));
        assert_eq!(
            d.state_disk(),
            Path::new("/home/u/.vpdmn/x86_64/podman-state.img")
        );

        let d = StateDir::resolve(
            Tool::Vdkr,
            &Tool::Vdkr.default_base(home),
            &StateLocation::Instance("web".into()),
        )
        .expect("ok");
        assert_eq!(d.root(), Path::new("/home/u/.vdkr/web"));

        let d = StateDir::resolve(Tool::Vdkr, &base, &StateLocation::Explicit("/srv/x".into()))
            .expect("ok");
        assert_eq!(d.root(), Path::new("/srv/x"));
        assert_eq!(d.vsock_listener(1024), Path::new("/srv/x/vsock.sock_1024"));
        assert_eq!(d.instance_file(), Path::new("/srv/x/instance.json"));
        assert_eq!(d.lock_file(), Path::new("/srv/x/lock"));
    }

    #[test]
    fn instance_names_are_one_safe_component() {
        let base = Path::new("/b");
        for bad in ["", "..", ".hidden", "a/b", "a b", "x\n"] {
            assert!(
                StateDir::resolve(Tool::Vdkr, base, &StateLocation::Instance(bad.into())).is_err(),
                "{bad:?} accepted"
            );
        }
        assert!(StateDir::resolve(
            Tool::Vdkr,
            base,
            &StateLocation::Instance("ci-job_1.2".into())
        )
        .is_ok());
    }

    #[test]
    fn create_makes_private_directories() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let base = Tool::Vdkr.default_base(tmp.path());
        let d = StateDir::resolve(Tool::Vdkr, &base, &StateLocation::Default(Arch::X86_64))
            .expect("ok");
        d.create().expect("create");
        d.create().expect("create again");
        for dir in [base.as_path(), d.root()] {
            let mode = std::fs::metadata(dir).expect("stat").permissions().mode() & 0o777;
            assert_eq!(mode, 0o700, "{}", dir.display());
        }
    }
}
