//! Stage 1: pseudo filesystems, kernel modules, the read-only root image under a tmpfs overlay,
//! the state disk, then switch root the initramfs way (the initramfs cannot be pivot_root'ed
//! away): move the new root onto `/` and chroot into it. The same process goes on as stage 2.
//!
//! Three ways to get here, one code path after the image is found ([`Start`]):
//! * our own images: the agent is the initramfs's `/init`, the image has no agent;
//! * a modular distro kernel with a foreign image: a host-made modules initramfs whose `/init`
//!   (this agent) loads the modules, mounts the image and hands over to the image's agent;
//! * a kernel with the drivers built in: the kernel mounts the image and runs its agent as init.

use std::ffi::CString;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::mount::MsFlags;
use nix::unistd::{chdir, chroot};
use thiserror::Error;
use vcontainer_protocol::guest_image::ROOTFS_AGENT_PATH;

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

/// Where PID 1 finds itself at start; it decides where the read-only root image comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// In an initramfs (a tmpfs or ramfs root): the image is a block device still to be mounted.
    Initramfs,
    /// On the image itself, mounted read-only by the kernel (`root=` with the drivers built in)
    /// or by an initramfs init that handed over to the image's own agent.
    ImageRoot,
}

const RAMFS_MAGIC: i64 = 0x8584_58f6;
const TMPFS_MAGIC: i64 = 0x0102_1994;

impl Start {
    /// Classifies `/` by its filesystem type.
    pub fn from_root_fs_type(magic: i64) -> Start {
        if magic == RAMFS_MAGIC || magic == TMPFS_MAGIC {
            Start::Initramfs
        } else {
            Start::ImageRoot
        }
    }

    fn detect() -> Result<Start, BootError> {
        let st = nix::sys::statfs::statfs("/").map_err(sys_err("statfs /"))?;
        #[allow(clippy::unnecessary_cast, clippy::useless_conversion)]
        Ok(Start::from_root_fs_type(st.filesystem_type().0 as i64))
    }
}

/// The directories one boot shape builds the writable root in.
struct Staging {
    /// Where the read-only image is (mounted or bound) as the overlay's lower layer.
    lower: PathBuf,
    /// A tmpfs holding the overlay's upper and work directories.
    upper: PathBuf,
    /// The overlay: the root stage 2 runs in.
    newroot: PathBuf,
}

impl Staging {
    fn in_initramfs() -> Staging {
        Staging {
            lower: "/lower".into(),
            upper: "/upper".into(),
            newroot: NEWROOT.into(),
        }
    }

    /// On a read-only image only mount points exist: one tmpfs at /run holds everything.
    fn on_image() -> Staging {
        Staging {
            lower: "/run/vcontainer-boot/lower".into(),
            upper: "/run/vcontainer-boot/upper".into(),
            newroot: "/run/vcontainer-boot/root".into(),
        }
    }
}

pub fn run() -> Result<Stage1, BootError> {
    mount_pseudo_filesystems()?;
    console::use_dev_console();

    let cmdline = std::fs::read_to_string("/proc/cmdline").map_err(|e| FsError::Io {
        path: "/proc/cmdline".into(),
        source: e,
    })?;
    let args = BootArgs::parse(&cmdline)?;
    console::set_debug(args.debug);
    let start = Start::detect()?;
    log!(
        "{} starting (engine {}, {:?})",
        env!("CARGO_PKG_VERSION"),
        args.engine,
        start
    );

    let loaded = load_listed_modules()?;
    debug!("loaded {loaded} modules");

    let staging = match start {
        Start::Initramfs => {
            let staging = Staging::in_initramfs();
            mount_image_device(&args, &staging.lower)?;
            if staging.lower.join(image_agent()).is_file() {
                return Err(hand_over(&staging.lower));
            }
            mount_fs(
                "tmpfs",
                &staging.upper,
                "tmpfs",
                MsFlags::empty(),
                Some("mode=0755"),
            )?;
            staging
        }
        Start::ImageRoot => {
            let staging = Staging::on_image();
            mount_fs(
                "tmpfs",
                Path::new("/run"),
                "tmpfs",
                MsFlags::empty(),
                Some("mode=0755"),
            )?;
            mkdir_p(&staging.upper)?;
            // Not recursive: the lower layer is the image alone, without /run and the pseudo
            // filesystems mounted on it.
            mount_at(Path::new("/"), &staging.lower, MsFlags::MS_BIND)?;
            staging
        }
    };
    let upper = staging.upper.join("upper");
    let work = staging.upper.join("work");
    mkdir_p(&upper)?;
    mkdir_p(&work)?;
    mount_fs(
        "overlay",
        &staging.newroot,
        "overlay",
        MsFlags::empty(),
        Some(&format!(
            "lowerdir={},upperdir={},workdir={}",
            staging.lower.display(),
            upper.display(),
            work.display()
        )),
    )?;

    let state = mount_state(&args, &staging.newroot)?;

    move_pseudo_filesystems(&staging.newroot)?;
    if start == Start::Initramfs {
        free_initramfs(&staging.newroot);
    }
    switch_root(&staging.newroot)?;
    Ok(Stage1 { args, state })
}

/// `/proc`, `/sys` and `/dev`, unless already there: the kernel may have mounted devtmpfs
/// itself, and after a hand-over all three were moved in from the initramfs.
fn mount_pseudo_filesystems() -> Result<(), BootError> {
    for (fstype, target, flags, data) in [
        ("proc", "/proc", pseudo_flags(), None),
        ("sysfs", "/sys", pseudo_flags(), None),
        ("devtmpfs", "/dev", MsFlags::MS_NOSUID, Some("mode=0755")),
    ] {
        if !is_mount_point(Path::new(target)) {
            mount_once(fstype, target, fstype, flags, data)?;
        }
    }
    Ok(())
}

/// A directory on another filesystem than its parent is a mount point (bind mounts of the
/// same filesystem are not, and none are made on these paths).
fn is_mount_point(path: &Path) -> bool {
    let parent = path.parent().unwrap_or(Path::new("/"));
    match (std::fs::metadata(path), std::fs::metadata(parent)) {
        (Ok(p), Ok(q)) => p.dev() != q.dev(),
        _ => false,
    }
}

fn move_pseudo_filesystems(newroot: &Path) -> Result<(), BootError> {
    for dir in ["proc", "sys", "dev"] {
        let from = Path::new("/").join(dir);
        mount_at(&from, &newroot.join(dir), MsFlags::MS_MOVE)?;
    }
    Ok(())
}

fn mount_image_device(args: &BootArgs, target: &Path) -> Result<(), BootError> {
    let waited = wait_for_path(&args.rootfs, DEVICE_DEADLINE)?;
    debug!("{} appeared after {waited} ms", args.rootfs.display());
    let rootfs = args.rootfs.display().to_string();
    mount_fs(&rootfs, target, &args.rootfs_type, MsFlags::MS_RDONLY, None)?;
    Ok(())
}

/// The image's agent path, relative (to join below a mount point).
fn image_agent() -> &'static str {
    ROOTFS_AGENT_PATH.trim_start_matches('/')
}

/// The image carries its own agent: make the mounted image the root and exec its agent as
/// PID 1. It finds itself on the image root (`Start::ImageRoot`) with the modules this init
/// loaded, and does stage 1 from there. Returns only on failure.
fn hand_over(image: &Path) -> BootError {
    log!("the root image has its own agent: handing over to {ROOTFS_AGENT_PATH}");
    if let Err(e) = move_pseudo_filesystems(image) {
        return e;
    }
    free_initramfs(image);
    if let Err(e) = switch_root(image) {
        return e;
    }
    let path = CString::new(ROOTFS_AGENT_PATH).expect("constant has no NUL byte");
    match nix::unistd::execv(&path, std::slice::from_ref(&path)) {
        Err(errno) => BootError::Sys {
            context: format!("exec {ROOTFS_AGENT_PATH}"),
            errno,
        },
        Ok(never) => match never {},
    }
}

fn mount_state(args: &BootArgs, newroot: &Path) -> Result<StateMount, BootError> {
    let target = newroot.join(STATE_MOUNT.trim_start_matches('/'));
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
/// filesystem, never what is mounted below it, and never `keep` (the root to switch to).
fn free_initramfs(keep: &Path) {
    let Ok(root) = std::fs::symlink_metadata("/") else {
        return;
    };
    let Ok(entries) = std::fs::read_dir("/") else {
        return;
    };
    for entry in entries.flatten() {
        if entry.path() == keep {
            continue;
        }
        if let Err(e) = remove_tree_on_dev(&entry.path(), root.dev()) {
            debug!("freeing {}: {e}", entry.path().display());
        }
    }
}

fn switch_root(newroot: &Path) -> Result<(), BootError> {
    chdir(newroot).map_err(sys_err(format!("chdir {}", newroot.display())))?;
    nix::mount::mount(Some("."), "/", None::<&str>, MsFlags::MS_MOVE, None::<&str>)
        .map_err(sys_err(format!("moving {} onto /", newroot.display())))?;
    chroot(".").map_err(sys_err("chroot"))?;
    chdir("/").map_err(sys_err("chdir /"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_ram_root_is_an_initramfs() {
        assert_eq!(Start::from_root_fs_type(TMPFS_MAGIC), Start::Initramfs);
        assert_eq!(Start::from_root_fs_type(RAMFS_MAGIC), Start::Initramfs);
        // squashfs, ext4, erofs: an image the kernel mounted itself
        for magic in [0x7371_7368, 0xef53, 0xe0f5_e1e2] {
            assert_eq!(Start::from_root_fs_type(magic), Start::ImageRoot);
        }
    }

    #[test]
    fn the_image_agent_path_joins_below_a_mount_point() {
        assert_eq!(
            Path::new("/lower").join(image_agent()),
            Path::new("/lower/usr/sbin/vcontainer-agent")
        );
    }

    #[test]
    fn staging_for_an_image_root_lives_under_run() {
        let s = Staging::on_image();
        for p in [&s.lower, &s.upper, &s.newroot] {
            assert!(p.starts_with("/run"), "{}", p.display());
        }
        assert!(vcontainer_protocol::guest_image::ROOTFS_MOUNT_POINTS.contains(&"run"));
    }
}
