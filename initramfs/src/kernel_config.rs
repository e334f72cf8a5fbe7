//! The configuration of a guest kernel with everything built in (boot shape (a): no modules, no
//! initramfs; the kernel mounts the root image and runs the image's agent as init). It starts
//! from `allnoconfig` and turns on only what the guest uses, so it builds in minutes and boots
//! fast under TCG. Each group says why it is there; the build checks that every option survived
//! `olddefconfig` (an option whose dependencies are off is silently dropped otherwise).

use crate::Arch;

/// Options every guest kernel needs, whatever the architecture.
pub const COMMON: &str = "\
# core: a 64-bit SMP guest without modules or initramfs; tickless idle at 100 Hz keeps an idle
# guest cheap under TCG
CONFIG_64BIT=y
CONFIG_SMP=y
CONFIG_NR_CPUS=64
CONFIG_NO_HZ_IDLE=y
CONFIG_HIGH_RES_TIMERS=y
CONFIG_HZ_100=y
CONFIG_MULTIUSER=y
CONFIG_PRINTK=y
CONFIG_FUTEX=y
CONFIG_EPOLL=y
CONFIG_SIGNALFD=y
CONFIG_TIMERFD=y
CONFIG_EVENTFD=y
CONFIG_SHMEM=y
CONFIG_AIO=y
CONFIG_FILE_LOCKING=y
CONFIG_POSIX_TIMERS=y
CONFIG_FHANDLE=y
CONFIG_SYSVIPC=y
CONFIG_POSIX_MQUEUE=y
CONFIG_SWAP=y
CONFIG_BINFMT_ELF=y
CONFIG_BINFMT_SCRIPT=y
# the Go daemons (dockerd, containerd, podman) watch files
CONFIG_INOTIFY_USER=y
# the serial console is the guest's only log
CONFIG_TTY=y
CONFIG_UNIX98_PTYS=y
# virtio over PCI: root and state disks, entropy, the optional NIC
CONFIG_PCI=y
CONFIG_PCI_MSI=y
CONFIG_VIRTIO_MENU=y
CONFIG_VIRTIO_PCI=y
CONFIG_VIRTIO_PCI_LEGACY=y
CONFIG_BLK_DEV=y
CONFIG_VIRTIO_BLK=y
CONFIG_NETDEVICES=y
CONFIG_NET_CORE=y
CONFIG_VIRTIO_NET=y
CONFIG_HW_RANDOM=y
CONFIG_HW_RANDOM_VIRTIO=y
# the host <-> agent channel
CONFIG_VSOCKETS=y
CONFIG_VIRTIO_VSOCKETS=y
# a read-only root image (squashfs, erofs), the ext4 state disk, a tmpfs + overlay writable
# root, and the pseudo filesystems
CONFIG_MISC_FILESYSTEMS=y
CONFIG_SQUASHFS=y
CONFIG_SQUASHFS_XATTR=y
CONFIG_SQUASHFS_XZ=y
CONFIG_SQUASHFS_ZSTD=y
CONFIG_SQUASHFS_LZ4=y
CONFIG_EROFS_FS=y
CONFIG_EROFS_FS_XATTR=y
CONFIG_EROFS_FS_ZIP=y
CONFIG_EROFS_FS_ZIP_LZMA=y
CONFIG_EROFS_FS_ZIP_ZSTD=y
CONFIG_EXT4_FS=y
CONFIG_EXT4_FS_POSIX_ACL=y
CONFIG_OVERLAY_FS=y
CONFIG_TMPFS=y
CONFIG_TMPFS_POSIX_ACL=y
CONFIG_TMPFS_XATTR=y
CONFIG_PROC_FS=y
CONFIG_SYSFS=y
CONFIG_DEVTMPFS=y
CONFIG_DEVTMPFS_MOUNT=y
# loopback, unix sockets, IPv4/IPv6: user networking for registries, containers' own netns
CONFIG_NET=y
CONFIG_UNIX=y
CONFIG_INET=y
CONFIG_IPV6=y
# the namespaces runc and crun create
CONFIG_NAMESPACES=y
CONFIG_UTS_NS=y
CONFIG_IPC_NS=y
CONFIG_USER_NS=y
CONFIG_PID_NS=y
CONFIG_NET_NS=y
# cgroup v2 with the controllers docker and podman set up
CONFIG_CGROUPS=y
CONFIG_CGROUP_PIDS=y
CONFIG_CGROUP_FREEZER=y
CONFIG_CPUSETS=y
CONFIG_MEMCG=y
CONFIG_CGROUP_DEVICE=y
CONFIG_CGROUP_CPUACCT=y
CONFIG_CGROUP_SCHED=y
CONFIG_FAIR_GROUP_SCHED=y
CONFIG_CFS_BANDWIDTH=y
CONFIG_BLK_CGROUP=y
# on cgroup v2, runc and crun enforce device rules with an eBPF program
CONFIG_BPF_SYSCALL=y
CONFIG_CGROUP_BPF=y
# the engines' default seccomp profiles; session keyrings
CONFIG_SECCOMP=y
CONFIG_SECCOMP_FILTER=y
CONFIG_KEYS=y
";

/// x86_64 (q35 and microvm).
pub const X86_64: &str = "\
# ACPI: q35 and microvm describe their devices and power-off with it (the agent powers off)
CONFIG_ACPI=y
# the 8250 UART console, ttyS0
CONFIG_SERIAL_8250=y
CONFIG_SERIAL_8250_CONSOLE=y
# microvm puts virtio on MMIO, described on the kernel command line
CONFIG_VIRTIO_MMIO=y
CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES=y
# a zstd bzImage unpacks fast under TCG
CONFIG_KERNEL_ZSTD=y
";

/// aarch64 (QEMU `virt`).
pub const AARCH64: &str = "\
# virt's ECAM PCIe host bridge
CONFIG_PCI_HOST_GENERIC=y
# the PL011 UART console, ttyAMA0
CONFIG_SERIAL_AMBA_PL011=y
CONFIG_SERIAL_AMBA_PL011_CONSOLE=y
# the PL031 clock, so the guest starts with the right date (TLS certificate checks)
CONFIG_RTC_CLASS=y
CONFIG_RTC_HCTOSYS=y
CONFIG_RTC_DRV_PL031=y
";

/// The whole fragment for `arch`.
pub fn fragment(arch: Arch) -> String {
    let own = match arch {
        Arch::X86_64 => X86_64,
        Arch::Aarch64 => AARCH64,
    };
    format!("{COMMON}{own}")
}

/// The `CONFIG_…=…` lines of a fragment, comments dropped.
pub fn settings(fragment: &str) -> Vec<&str> {
    fragment
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("CONFIG_"))
        .collect()
}

/// The settings of `fragment` that a finished `.config` does not have (dropped by
/// `olddefconfig` because a dependency is off, or mistyped).
pub fn missing<'a>(fragment: &'a str, config: &str) -> Vec<&'a str> {
    let have: std::collections::HashSet<&str> = config.lines().map(str::trim).collect();
    settings(fragment)
        .into_iter()
        .filter(|s| !have.contains(s))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fragments_hold_what_the_guest_cannot_boot_without() {
        for arch in [Arch::X86_64, Arch::Aarch64] {
            let f = fragment(arch);
            for needed in [
                "CONFIG_VIRTIO_BLK=y",
                "CONFIG_VIRTIO_VSOCKETS=y",
                "CONFIG_SQUASHFS=y",
                "CONFIG_OVERLAY_FS=y",
                "CONFIG_EXT4_FS=y",
                "CONFIG_DEVTMPFS=y",
            ] {
                assert!(settings(&f).contains(&needed), "{arch}: {needed}");
            }
            let names: Vec<&str> = settings(&f)
                .iter()
                .map(|s| s.split('=').next().unwrap_or(""))
                .collect();
            let unique: std::collections::HashSet<_> = names.iter().collect();
            assert_eq!(unique.len(), names.len(), "{arch}: an option set twice");
        }
        assert!(fragment(Arch::Aarch64).contains("PL011_CONSOLE=y"));
        assert!(fragment(Arch::X86_64).contains("SERIAL_8250_CONSOLE=y"));
    }

    #[test]
    fn missing_names_what_olddefconfig_dropped() {
        let f = "# c\nCONFIG_A=y\nCONFIG_B=y\n";
        assert_eq!(
            missing(f, "CONFIG_A=y\n# CONFIG_B is not set\n"),
            ["CONFIG_B=y"]
        );
        assert!(missing(f, "CONFIG_B=y\nCONFIG_A=y\n").is_empty());
    }
}
