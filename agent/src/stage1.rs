//! Stage 1, in the initramfs: pseudo filesystems, kernel modules, the read-only root image under
//! a tmpfs overlay, the state disk, then switch root the initramfs way (the initramfs cannot be
//! pivot_root'ed away): move the new root onto `/` and chroot into it. The same process goes on
//! as stage 2.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::mount::MsFlags;
use nix::unistd::{chdir, chroot};
use thiserror::Error;

use crate::cmdline::{BootArgs, CmdlineError};
use crate::console;
use crate::fsops::{mkdir_p, mount_at, mount_fs, remove_tree_on_dev, wait_for_path, FsError};
use crate::modules::{load_listed_modules, ModuleError};
use crate::{debug, log};

const DEVICE_DEADLINE: Duration = Duration::from_secs(10);
const NEWROOT: &str = "/newroot";
pub const STATE_MOUNT: &str = "/mnt/state";

#[derive(Debug, Error)]
pub enum BootError {
    #[error(transparent)]
    Fs(#[from] FsError),
    #[error(transparent)]
    Module(#[from] ModuleError),
    #[error(transparent)]
    Cmdline(#[from] CmdlineError),
    #[error("{context}: {errno}")]
    Sys {
        context: String,
        errno: nix::errno::Errno,
    },
}

pub fn sys_err(context: impl Into<String>) -> impl FnOnce(nix::errno::Errno) -> BootError {
    let context = context.into();
    move |errno| BootError::Sys { context, errno }
}

/// What stage 1 did with the state disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateMount {
    /// The ext4 state disk is mounted at /mnt/state.
    Disk,
    /// The disk has no filesystem yet: stage 2 formats it (mkfs lives in the root image).
    NeedsFormat(PathBuf),
    /// No state disk: a tmpfs, nothing survives the VM.
    Tmpfs,
}

pub struct Stage1 {
    pub args: BootArgs,
    pub state: StateMount,
}

fn pseudo_flags() -> MsFlags {
    MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC
}

/// Mounts that the kernel may already have made (devtmpfs automount) count as done.
fn mount_once(
    source: &str,
    target: &str,
    fstype: &str,
    flags: MsFlags,
    data: Option<&str>,
) -> Result<(), FsError> {
    match mount_fs(source, Path::new(target), fstype, flags, data) {
        Err(FsError::Mount {
            errno: nix::errno::Errno::EBUSY,
            ..
        }) => Ok(()),
        other => other,
    }
}

pub fn run() -> Result<Stage1, BootError> {
    mount_once("proc", "/proc", "proc", pseudo_flags(), None)?;
    mount_once("sysfs", "/sys", "sysfs", pseudo_flags(), None)?;
    mount_once(
        "devtmpfs",
        "/dev",
        "devtmpfs",
        MsFlags::MS_NOSUID,
        Some("mode=0755"),
    )?;
    console::use_dev_console();

    let cmdline = std::fs::read_to_string("/proc/cmdline").map_err(|e| FsError::Io {
        path: "/proc/cmdline".into(),
        source: e,
    })?;
    let args = BootArgs::parse(&cmdline)?;
    console::set_debug(args.debug);
    log!(
        "{} starting (engine {})",
        env!("CARGO_PKG_VERSION"),
        args.engine
    );

    let loaded = load_listed_modules()?;
    debug!("loaded {loaded} modules");

    let waited = wait_for_path(&args.rootfs, DEVICE_DEADLINE)?;
    debug!("{} appeared after {waited} ms", args.rootfs.display());
    let rootfs = args.rootfs.display().to_string();
    mount_fs(
        &rootfs,
        Path::new("/lower"),
        &args.rootfs_type,
        MsFlags::MS_RDONLY,
        None,
    )?;
    mount_fs(
        "tmpfs",
        Path::new("/upper"),
        "tmpfs",
        MsFlags::empty(),
        Some("mode=0755"),
    )?;
    mkdir_p(Path::new("/upper/upper"))?;
    mkdir_p(Path::new("/upper/work"))?;
    mount_fs(
        "overlay",
        Path::new(NEWROOT),
        "overlay",
        MsFlags::empty(),
        Some("lowerdir=/lower,upperdir=/upper/upper,workdir=/upper/work"),
    )?;

    let state = mount_state(&args)?;

    for dir in ["proc", "sys", "dev"] {
        let from = Path::new("/").join(dir);
        mount_at(&from, &Path::new(NEWROOT).join(dir), MsFlags::MS_MOVE)?;
    }
    free_initramfs();
    switch_root()?;
    Ok(Stage1 { args, state })
}

fn mount_state(args: &BootArgs) -> Result<StateMount, BootError> {
    let target = Path::new(NEWROOT).join(STATE_MOUNT.trim_start_matches('/'));
    let Some(dev) = &args.state else {
        mount_fs(
            "tmpfs",
            &target,
            "tmpfs",
            MsFlags::MS_NOATIME,
            Some("mode=0755"),
        )?;
        return Ok(StateMount::Tmpfs);
    };
    wait_for_path(dev, DEVICE_DEADLINE)?;
    let source = dev.display().to_string();
    match mount_fs(&source, &target, "ext4", MsFlags::MS_NOATIME, None) {
        Ok(()) => Ok(StateMount::Disk),
        Err(FsError::Mount { errno, .. }) if !has_ext4_magic(dev) => {
            log!("state disk {source} has no filesystem ({errno}); formatting it");
            Ok(StateMount::NeedsFormat(dev.clone()))
        }
        Err(e) => Err(e.into()),
    }
}

/// Whether the device carries an ext2/3/4 superblock (magic 0xEF53 at byte 1080).
pub fn has_ext4_magic(dev: &Path) -> bool {
    let mut magic = [0u8; 2];
    File::open(dev)
        .and_then(|mut f| {
            f.seek(SeekFrom::Start(1080))?;
            f.read_exact(&mut magic)
        })
        .is_ok()
        && magic == [0x53, 0xEF]
}

/// Deletes the initramfs files (agent, modules) to give their RAM back; only the old root's own
/// filesystem, never what is mounted below it.
fn free_initramfs() {
    let Ok(root) = std::fs::symlink_metadata("/") else {
        return;
    };
    let Ok(entries) = std::fs::read_dir("/") else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_name() == "newroot" {
            continue;
        }
        if let Err(e) = remove_tree_on_dev(&entry.path(), root.dev()) {
            debug!("freeing {}: {e}", entry.path().display());
        }
    }
}

fn switch_root() -> Result<(), BootError> {
    chdir(NEWROOT).map_err(sys_err("chdir /newroot"))?;
    nix::mount::mount(Some("."), "/", None::<&str>, MsFlags::MS_MOVE, None::<&str>)
        .map_err(sys_err("moving /newroot onto /"))?;
    chroot(".").map_err(sys_err("chroot"))?;
    chdir("/").map_err(sys_err("chdir /"))?;
    Ok(())
}
