//! The one contract between a guest root image and the agent: where the agent lives in an image
//! that carries its own agent, and which directories must already exist in a read-only image.
//! `vcontainer image add-agent` installs exactly this, and a Yocto image recipe mirrors it.

/// The agent inside a root image. The kernel runs it as `init=` when it mounts the image itself
/// (drivers built in); a modules initramfs hands over to it after mounting the image.
pub const ROOTFS_AGENT_PATH: &str = "/usr/sbin/vcontainer-agent";

/// Mount points the agent needs before the root is writable: the pseudo filesystems, and `/run`
/// for the tmpfs that holds the writable layer. A read-only image cannot grow them at boot.
pub const ROOTFS_MOUNT_POINTS: &[&str] = &["dev", "proc", "sys", "run"];
