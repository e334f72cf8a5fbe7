//! Stage 2, in the new root: the pseudo filesystems containers expect, cgroup2 with controllers
//! delegated, hostname, loopback, and the engine's storage on the state disk.

use std::fs;
use std::io;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::Command;

use nix::mount::MsFlags;
use nix::sys::resource::{setrlimit, Resource};
use vcontainer_protocol::EngineKind;

use crate::cmdline::BootArgs;
use crate::engine::storage::{guest_storage_parent, state_disk_dir, storage_name};
use crate::fsops::{mkdir_p, mount_at, mount_fs, remove_dir_contents, FsError};
use crate::layout::Layout;
use crate::loopback::bring_up_loopback;
use crate::stage1::{sys_err, BootError, StateMount, STATE_MOUNT};
use crate::{debug, log};

pub const HOSTNAME: &str = "vcontainer";

/// Controllers dockerd/podman use; whichever the kernel has are enabled for child cgroups.
const WANTED_CONTROLLERS: &[&str] = &[
    "cpuset", "cpu", "io", "memory", "hugetlb", "pids", "rdma", "misc",
];

pub fn setup(args: &BootArgs, state: &StateMount) -> Result<(), BootError> {
    let nosuid_nodev = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    mount_fs(
        "tmpfs",
        Path::new("/run"),
        "tmpfs",
        nosuid_nodev,
        Some("mode=0755"),
    )?;
    mount_fs(
        "tmpfs",
        Path::new("/tmp"),
        "tmpfs",
        nosuid_nodev,
        Some("mode=1777"),
    )?;
    mount_fs(
        "devpts",
        Path::new("/dev/pts"),
        "devpts",
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=0620,gid=5"),
    )?;
    mount_fs(
        "shm",
        Path::new("/dev/shm"),
        "tmpfs",
        nosuid_nodev,
        Some("mode=1777"),
    )?;
    dev_links();
    var_run_link();
    mount_fs(
        "cgroup2",
        Path::new("/sys/fs/cgroup"),
        "cgroup2",
        nosuid_nodev | MsFlags::MS_NOEXEC,
        Some("nsdelegate"),
    )?;
    enable_controllers(Path::new("/sys/fs/cgroup"));

    if let StateMount::NeedsFormat(dev) = state {
        format_state_disk(dev)?;
    }
    nix::unistd::sethostname(HOSTNAME).map_err(sys_err("sethostname"))?;
    if let Err(e) = bring_up_loopback() {
        log!("loopback: {e}");
    }
    // dockerd's unit file asks for unlimited open files; containers inherit this.
    let _ = setrlimit(Resource::RLIMIT_NOFILE, 1 << 20, 1 << 20);

    let layout = Layout::guest(args.engine);
    bind_storage(args.engine)?;
    prepare_state_dirs(&layout).map_err(|e| FsError::Io {
        path: layout.state_dir.display().to_string(),
        source: e,
    })?;
    Ok(())
}

/// Root images made without maintainer scripts may lack the /var/run -> /run link that daemons
/// and CLIs (docker.sock) rely on.
fn var_run_link() {
    if fs::symlink_metadata("/var/run").is_err() {
        if let Err(e) = symlink("/run", "/var/run") {
            log!("/var/run: {e}");
        }
    }
}

/// devtmpfs has no /dev/fd and friends, and its /dev/ptmx belongs to the initial devpts
/// instance, not ours.
fn dev_links() {
    let _ = fs::remove_file("/dev/ptmx");
    for (link, target) in [
        ("/dev/ptmx", "pts/ptmx"),
        ("/dev/fd", "/proc/self/fd"),
        ("/dev/stdin", "/proc/self/fd/0"),
        ("/dev/stdout", "/proc/self/fd/1"),
        ("/dev/stderr", "/proc/self/fd/2"),
    ] {
        if let Err(e) = symlink(target, link) {
            if e.kind() != io::ErrorKind::AlreadyExists {
                debug!("{link}: {e}");
            }
        }
    }
}

/// The `+controller` words to write to cgroup.subtree_control, given cgroup.controllers.
pub fn controllers_to_enable(available: &str) -> Vec<String> {
    let available: Vec<&str> = available.split_ascii_whitespace().collect();
    WANTED_CONTROLLERS
        .iter()
        .filter(|c| available.contains(c))
        .map(|c| format!("+{c}"))
        .collect()
}

fn enable_controllers(root: &Path) {
    let available = fs::read_to_string(root.join("cgroup.controllers")).unwrap_or_default();
    // One write per controller: one the kernel refuses must not block the others.
    for word in controllers_to_enable(&available) {
        if let Err(e) = fs::write(root.join("cgroup.subtree_control"), &word) {
            log!("cgroup {word}: {e}");
        }
    }
}

fn format_state_disk(dev: &Path) -> Result<(), BootError> {
    // Runs before the reaper exists, so a plain blocking wait is safe here.
    let status = Command::new("mkfs.ext4")
        .args(["-q", "-F", "-E", "lazy_itable_init=1,lazy_journal_init=1"])
        .arg(dev)
        .env_clear()
        .envs(crate::process::BASE_ENV.iter().copied())
        .status();
    match status {
        Ok(s) if s.success() => {}
        other => {
            return Err(FsError::Io {
                path: dev.display().to_string(),
                source: io::Error::other(format!("mkfs.ext4 failed: {other:?}")),
            }
            .into())
        }
    }
    mount_fs(
        &dev.display().to_string(),
        Path::new(STATE_MOUNT),
        "ext4",
        MsFlags::MS_NOATIME,
        None,
    )?;
    Ok(())
}

/// Binds the engine's directory on the state disk over its usual place in the root image.
fn bind_storage(engine: EngineKind) -> Result<(), BootError> {
    let (Some(on_state), Some(parent)) = (state_disk_dir(engine), guest_storage_parent(engine))
    else {
        return Ok(());
    };
    let source = Path::new(STATE_MOUNT).join(on_state);
    let target = Path::new(parent).join(storage_name(engine));
    mkdir_p(&source)?;
    mount_at(&source, &target, MsFlags::MS_BIND)?;
    Ok(())
}

/// Storage directory present, import staging area empty (guest and host mode).
pub fn prepare_state_dirs(layout: &Layout) -> io::Result<()> {
    fs::create_dir_all(layout.storage_dir())?;
    let staging = layout.staging_dir();
    fs::create_dir_all(&staging)?;
    remove_dir_contents(&staging)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controllers_present_in_the_kernel_are_enabled() {
        assert_eq!(
            controllers_to_enable("cpuset cpu io memory pids\n"),
            vec!["+cpuset", "+cpu", "+io", "+memory", "+pids"]
        );
        assert!(controllers_to_enable("").is_empty());
    }

    #[test]
    fn state_dirs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let layout = Layout::host(dir.path().to_path_buf(), EngineKind::Docker);
        fs::create_dir_all(dir.path().join("tmp/old")).expect("mkdir");
        prepare_state_dirs(&layout).expect("prepare");
        assert!(dir.path().join("docker").is_dir());
        assert_eq!(
            fs::read_dir(dir.path().join("tmp")).expect("read").count(),
            0
        );
    }
}
