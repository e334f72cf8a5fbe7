//! The QEMU command line, built by pure functions from a [`VmSpec`] so that every choice here is
//! unit tested without QEMU. Measured facts behind the choices: ../../../../shared/reference/environment.md.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;

use vcontainer_initramfs::Arch;
use vcontainer_protocol::guest_image::ROOTFS_AGENT_PATH;

use super::port_forward::PortForward;
use super::VmError;

/// Linux's COMMAND_LINE_SIZE on x86_64 and arm64 is 2048 bytes including the terminating NUL; a longer
/// command line is truncated silently by the boot code, so we refuse it instead.
const MAX_KERNEL_CMDLINE: usize = 2047;

/// TSC frequency announced to the guest on microvm under TCG: without it the kernel calibrates the TSC
/// against a PIT that microvm does not have and boots noticeably slower (environment.md).
const MICROVM_TCG_TSC_KHZ: &str = "tsc_early_khz=2000000";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    Kvm,
    Tcg,
}

/// The QEMU machine type. `Virt` is the only choice for aarch64; for x86_64 `Q35` is the default and
/// `Microvm` exists so it can be measured against it (microvm puts every device on virtio-mmio, so the
/// guest then needs the `virtio_mmio` driver instead of `virtio_pci`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Machine {
    Virt,
    Q35,
    Microvm,
}

impl Machine {
    pub fn default_for(arch: Arch) -> Machine {
        match arch {
            Arch::Aarch64 => Machine::Virt,
            Arch::X86_64 => Machine::Q35,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Machine::Virt => "virt",
            Machine::Q35 => "q35",
            Machine::Microvm => "microvm",
        }
    }

    fn supports(self, arch: Arch) -> bool {
        matches!(
            (self, arch),
            (Machine::Virt, Arch::Aarch64) | (Machine::Q35 | Machine::Microvm, Arch::X86_64)
        )
    }

    /// PCI machines take `-pci` virtio devices, microvm only virtio-mmio (`-device`) ones.
    fn virtio_suffix(self) -> &'static str {
        match self {
            Machine::Virt | Machine::Q35 => "pci",
            Machine::Microvm => "device",
        }
    }
}

/// How the guest's virtio-vsock device is backed on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VsockDevice {
    /// `vhost-device-vsock` serving `socket`; needs guest RAM in shared memfd memory.
    VhostUser { socket: PathBuf },
    /// The host kernel's vhost-vsock (`/dev/vhost-vsock`), guest reachable at `cid`.
    Kernel { cid: u32 },
}

#[derive(Debug, Clone)]
pub struct VmSpec {
    pub arch: Arch,
    pub machine: Machine,
    pub accel: Accel,
    pub memory_mib: u32,
    pub cpus: u32,
    pub kernel: PathBuf,
    /// `None`: the kernel has the drivers built in, mounts the root image itself and runs the
    /// image's own agent as init.
    pub initramfs: Option<PathBuf>,
    /// Root filesystem image, attached read-only as the first disk (`/dev/vda`).
    pub rootfs: PathBuf,
    /// Its filesystem type (`squashfs` for our images).
    pub rootfs_type: String,
    /// Persistent ext4 state disk, attached as the second disk (`/dev/vdb`).
    pub state_disk: Option<PathBuf>,
    pub vsock: VsockDevice,
    /// The guest console (serial port) is written here; QEMU truncates it at start.
    pub console_log: PathBuf,
    /// Extra kernel arguments, appended last (e.g. `vcontainer.engine=docker`). Never credentials: the
    /// command line is readable by every user in the guest and in the host's `ps`.
    pub kernel_args: Vec<String>,
    /// QEMU user networking (slirp: guest 10.0.2.15, host and gateway 10.0.2.2, DNS 10.0.2.3)
    /// on a virtio-net NIC; false: no NIC at all.
    pub network: bool,
    /// Host ports QEMU forwards into the guest; needs `network`.
    pub port_forwards: Vec<PortForward>,
}

impl VmSpec {
    /// Checks what would otherwise fail inside QEMU or the guest with a less helpful message.
    pub fn validate(&self) -> Result<(), VmError> {
        if !self.machine.supports(self.arch) {
            return Err(VmError::InvalidSpec(format!(
                "machine {} cannot run a {} guest",
                self.machine.name(),
                self.arch
            )));
        }
        if self.memory_mib < 64 {
            return Err(VmError::InvalidSpec(format!(
                "{} MiB of guest memory is too little",
                self.memory_mib
            )));
        }
        if self.cpus == 0 {
            return Err(VmError::InvalidSpec("at least one CPU is needed".into()));
        }
        // Space would split an argument in two; quotes would need the kernel's quoting rules.
        if let Some(bad) = self.kernel_args.iter().find(|a| {
            a.is_empty()
                || a.chars()
                    .any(|c| c.is_whitespace() || c.is_control() || c == '"')
        }) {
            return Err(VmError::InvalidSpec(format!(
                "kernel argument {bad:?} is empty or contains a space, quote or control character"
            )));
        }
        if !self.network && !self.port_forwards.is_empty() {
            return Err(VmError::InvalidSpec(
                "port forwards need the guest network (drop --no-network)".into(),
            ));
        }
        for (i, a) in self.port_forwards.iter().enumerate() {
            if let Some(b) = self.port_forwards[..i]
                .iter()
                .find(|b| b.host == a.host && b.proto == a.proto)
            {
                return Err(VmError::InvalidSpec(format!(
                    "host port {}/{} is forwarded twice ({b} and {a})",
                    a.host, a.proto
                )));
            }
        }
        let cmdline = kernel_cmdline(self);
        if cmdline.len() > MAX_KERNEL_CMDLINE {
            return Err(VmError::InvalidSpec(format!(
                "kernel command line is {} bytes, the kernel keeps only {MAX_KERNEL_CMDLINE}",
                cmdline.len()
            )));
        }
        Ok(())
    }
}

pub fn qemu_binary(arch: Arch) -> &'static str {
    match arch {
        Arch::Aarch64 => "qemu-system-aarch64",
        Arch::X86_64 => "qemu-system-x86_64",
    }
}

/// The Debian package that ships [`qemu_binary`], for error messages.
pub fn qemu_package(arch: Arch) -> &'static str {
    match arch {
        Arch::Aarch64 => "qemu-system-arm",
        Arch::X86_64 => "qemu-system-x86",
    }
}

fn console_device(arch: Arch) -> &'static str {
    match arch {
        Arch::Aarch64 => "ttyAMA0",
        Arch::X86_64 => "ttyS0",
    }
}

pub fn kernel_cmdline(spec: &VmSpec) -> String {
    let mut args: Vec<String> = vec![
        format!("console={}", console_device(spec.arch)),
        // Every console byte is an emulated UART write under TCG; keep boot chatter out of it.
        "quiet".into(),
        // The crypto self-tests cost ~0.5 s of TCG boot and test nothing we rely on.
        "cryptomgr.notests".into(),
        // A panicking guest must end QEMU (with -no-reboot) instead of hanging until our deadline.
        "panic=-1".into(),
    ];
    match &spec.initramfs {
        Some(_) => args.push("rdinit=/init".into()),
        // The kernel mounts vda itself; `rootwait` covers the disk probing after the console.
        None => args.extend([
            "root=/dev/vda".into(),
            format!("rootfstype={}", spec.rootfs_type),
            "ro".into(),
            "rootwait".into(),
            format!("init={ROOTFS_AGENT_PATH}"),
        ]),
    }
    if spec.rootfs_type != "squashfs" {
        args.push(format!("vcontainer.rootfstype={}", spec.rootfs_type));
    }
    if spec.machine == Machine::Microvm && spec.accel == Accel::Tcg {
        args.push(MICROVM_TCG_TSC_KHZ.into());
    }
    if spec.state_disk.is_some() {
        // The rootfs is always vda, so the state disk is always vdb.
        args.push("vcontainer.state=/dev/vdb".into());
    }
    args.extend(spec.kernel_args.iter().cloned());
    args.join(" ")
}

/// The arguments after the binary name ([`qemu_binary`]).
pub fn qemu_argv(spec: &VmSpec) -> Vec<OsString> {
    let mut argv = Argv::default();
    let vhost_user = matches!(spec.vsock, VsockDevice::VhostUser { .. });

    // No default devices (NIC, VGA, monitor, serial on stdio, floppy, CD-ROM) and no host config files:
    // the VM has exactly what is listed here, whatever the user's QEMU setup says.
    argv.args([
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-no-reboot",
    ]);
    // Inputs and outputs travel over vsock only; the network is for registries and port
    // forwards and is attached with the other virtio devices below.
    if !spec.network {
        argv.args(["-nic", "none"]);
    }

    let mut machine = spec.machine.name().to_string();
    if vhost_user {
        // The backend maps guest RAM, so it must live in a shareable memfd.
        machine.push_str(",memory-backend=mem");
    }
    if spec.machine == Machine::Virt && spec.accel == Accel::Kvm {
        // QEMU's default GICv2 is missing on most GICv3-only aarch64 servers.
        machine.push_str(",gic-version=host");
    }
    argv.arg("-machine").arg(machine);

    match spec.accel {
        Accel::Kvm => argv.args(["-cpu", "host", "-accel", "kvm"]),
        Accel::Tcg => {
            let cpu = match spec.arch {
                // Measured: ≈1 s faster boot and 2x faster guest copies than `-cpu max` (pointer
                // authentication and SVE emulation are expensive under TCG).
                Arch::Aarch64 => "cortex-a72",
                // All features TCG can emulate; Go and the engines run on any x86-64, and `max`
                // keeps SSE4/AVX code paths that distro binaries may pick at run time.
                Arch::X86_64 => "max",
            };
            argv.args(["-cpu", cpu, "-accel", "tcg,thread=multi"])
        }
    };

    argv.arg("-m").arg(format!("{}M", spec.memory_mib));
    argv.arg("-smp").arg(spec.cpus.to_string());
    if vhost_user {
        argv.arg("-object").arg(format!(
            "memory-backend-memfd,id=mem,size={}M,share=on",
            spec.memory_mib
        ));
    }

    argv.arg("-kernel").arg(spec.kernel.as_os_str());
    if let Some(initramfs) = &spec.initramfs {
        argv.arg("-initrd").arg(initramfs.as_os_str());
    }
    argv.arg("-append").arg(kernel_cmdline(spec));

    // The console goes to a file for people to read (its tail is shown on failure), never a data channel.
    argv.arg("-chardev").arg(opt_with_path(
        "file,id=console,path=",
        spec.console_log.as_os_str(),
        "",
    ));
    argv.args(["-serial", "chardev:console"]);

    let virtio = |name: &str| format!("{name}-{}", spec.machine.virtio_suffix());

    argv.arg("-drive").arg(opt_with_path(
        "file=",
        spec.rootfs.as_os_str(),
        ",if=none,id=rootfs,format=raw,readonly=on",
    ));
    argv.arg("-device")
        .arg(format!("{},drive=rootfs", virtio("virtio-blk")));

    if let Some(state) = &spec.state_disk {
        // cache=unsafe: QEMU still pwrite()s every guest write into the host page cache at once, so a
        // killed QEMU or a crashed guest loses nothing the guest wrote; only guest flushes become
        // no-ops. containerd/dockerd fsync constantly, and each fsync would otherwise be an fdatasync
        // of the image on the host. Host crashes are covered by the host fsyncing the image after
        // QEMU exits (`StateDisk::sync`). discard=unmap punches holes for blocks the guest trims, so
        // the sparse image shrinks again when images are deleted; detect-zeroes=unmap keeps the
        // zeroes ext4's lazy inode-table init writes in the background from allocating host blocks.
        argv.arg("-drive").arg(opt_with_path(
            "file=",
            state.as_os_str(),
            ",if=none,id=state,format=raw,cache=unsafe,discard=unmap,detect-zeroes=unmap",
        ));
        argv.arg("-device")
            .arg(format!("{},drive=state", virtio("virtio-blk")));
    }

    if spec.network {
        argv.arg("-netdev").arg(netdev_user(&spec.port_forwards));
        argv.arg("-device")
            .arg(format!("{},netdev=net0", virtio("virtio-net")));
    }

    // Entropy at boot: Go daemons (dockerd, containerd) block on getrandom() until the pool is seeded.
    argv.arg("-device").arg(virtio("virtio-rng"));

    match &spec.vsock {
        VsockDevice::VhostUser { socket } => {
            argv.arg("-chardev").arg(opt_with_path(
                "socket,id=vsock,path=",
                socket.as_os_str(),
                "",
            ));
            argv.arg("-device")
                .arg(format!("{},chardev=vsock", virtio("vhost-user-vsock")));
        }
        VsockDevice::Kernel { cid } => {
            argv.arg("-device")
                .arg(format!("{},guest-cid={cid}", virtio("vhost-vsock")));
        }
    }
    argv.0
}

/// `-netdev user` with one `hostfwd` per forward: host `bind:host` to the guest's `guest` port
/// (an empty guest address is the guest's DHCP/static address 10.0.2.15).
pub fn netdev_user(forwards: &[PortForward]) -> String {
    let mut opt = String::from("user,id=net0");
    for f in forwards {
        opt.push_str(&format!(
            ",hostfwd={}:{}:{}-:{}",
            f.proto, f.bind, f.host, f.guest
        ));
    }
    opt
}

/// `prefix` + `path` with commas doubled (QEMU's option escaping) + `suffix`, byte-exact for
/// non-UTF-8 paths.
fn opt_with_path(prefix: &str, path: &OsStr, suffix: &str) -> OsString {
    let mut bytes = prefix.as_bytes().to_vec();
    for &b in path.as_bytes() {
        bytes.push(b);
        if b == b',' {
            bytes.push(b',');
        }
    }
    bytes.extend_from_slice(suffix.as_bytes());
    OsString::from_vec(bytes)
}

#[derive(Default)]
struct Argv(Vec<OsString>);

impl Argv {
    fn arg(&mut self, a: impl Into<OsString>) -> &mut Self {
        self.0.push(a.into());
        self
    }

    fn args<const N: usize>(&mut self, a: [&str; N]) -> &mut Self {
        self.0.extend(a.iter().map(OsString::from));
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(arch: Arch, accel: Accel, vsock: VsockDevice) -> VmSpec {
        VmSpec {
            arch,
            machine: Machine::default_for(arch),
            accel,
            memory_mib: 1024,
            cpus: 2,
            kernel: "/img/vmlinuz".into(),
            initramfs: Some("/img/initramfs.cpio".into()),
            rootfs: "/img/rootfs.squashfs".into(),
            rootfs_type: "squashfs".into(),
            state_disk: Some("/st/docker-state.img".into()),
            vsock,
            console_log: "/st/console.log".into(),
            kernel_args: vec!["vcontainer.engine=docker".into()],
            network: false,
            port_forwards: vec![],
        }
    }

    fn vhost_user() -> VsockDevice {
        VsockDevice::VhostUser {
            socket: "/st/vhost.sock".into(),
        }
    }

    fn strings(argv: &[OsString]) -> Vec<String> {
        argv.iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    /// The value following `flag`, for every occurrence of `flag`.
    fn values(argv: &[String], flag: &str) -> Vec<String> {
        argv.windows(2)
            .filter(|w| w[0] == flag)
            .map(|w| w[1].clone())
            .collect()
    }

    #[test]
    fn an_image_without_initramfs_boots_its_own_agent_from_the_root_disk() {
        let mut s = spec(Arch::Aarch64, Accel::Tcg, vhost_user());
        s.initramfs = None;
        s.rootfs_type = "erofs".into();
        let argv = strings(&qemu_argv(&s));
        assert!(values(&argv, "-initrd").is_empty());
        assert_eq!(
            values(&argv, "-append"),
            ["console=ttyAMA0 quiet cryptomgr.notests panic=-1 root=/dev/vda rootfstype=erofs ro rootwait init=/usr/sbin/vcontainer-agent vcontainer.rootfstype=erofs vcontainer.state=/dev/vdb vcontainer.engine=docker"]
        );
    }

    #[test]
    fn aarch64_tcg_vhost_user() {
        let s = spec(Arch::Aarch64, Accel::Tcg, vhost_user());
        s.validate().expect("valid");
        let argv = strings(&qemu_argv(&s));
        assert_eq!(values(&argv, "-machine"), ["virt,memory-backend=mem"]);
        assert_eq!(values(&argv, "-cpu"), ["cortex-a72"]);
        assert_eq!(values(&argv, "-accel"), ["tcg,thread=multi"]);
        assert_eq!(values(&argv, "-m"), ["1024M"]);
        assert_eq!(values(&argv, "-smp"), ["2"]);
        assert_eq!(
            values(&argv, "-object"),
            ["memory-backend-memfd,id=mem,size=1024M,share=on"]
        );
        assert!(argv.contains(&"-nodefaults".to_string()));
        assert!(argv.contains(&"-no-reboot".to_string()));
        assert_eq!(
            values(&argv, "-chardev"),
            [
                "file,id=console,path=/st/console.log",
                "socket,id=vsock,path=/st/vhost.sock"
            ]
        );
        assert_eq!(values(&argv, "-serial"), ["chardev:console"]);
        assert_eq!(
            values(&argv, "-device"),
            [
                "virtio-blk-pci,drive=rootfs",
                "virtio-blk-pci,drive=state",
                "virtio-rng-pci",
                "vhost-user-vsock-pci,chardev=vsock"
            ]
        );
        let append = values(&argv, "-append");
        assert_eq!(
            append,
            ["console=ttyAMA0 quiet cryptomgr.notests panic=-1 rdinit=/init vcontainer.state=/dev/vdb vcontainer.engine=docker"]
        );
    }

    #[test]
    fn rootfs_is_first_disk_and_read_only_state_is_second_and_unsafe_cached() {
        let argv = strings(&qemu_argv(&spec(Arch::X86_64, Accel::Tcg, vhost_user())));
        let drives = values(&argv, "-drive");
        assert_eq!(drives.len(), 2);
        assert!(
            drives[0].starts_with("file=/img/rootfs.squashfs,")
                && drives[0].contains("readonly=on")
        );
        assert!(
            drives[1].starts_with("file=/st/docker-state.img,")
                && drives[1].contains("cache=unsafe")
        );
        assert!(!drives[1].contains("readonly"));
    }

    #[test]
    fn x86_64_tcg_q35() {
        let argv = strings(&qemu_argv(&spec(Arch::X86_64, Accel::Tcg, vhost_user())));
        assert_eq!(values(&argv, "-machine"), ["q35,memory-backend=mem"]);
        assert_eq!(values(&argv, "-cpu"), ["max"]);
        assert_eq!(values(&argv, "-accel"), ["tcg,thread=multi"]);
        assert!(values(&argv, "-append")[0].starts_with("console=ttyS0 "));
        assert!(!values(&argv, "-append")[0].contains("tsc_early_khz"));
    }

    #[test]
    fn kvm_uses_host_cpu_and_gic_on_aarch64() {
        let argv = strings(&qemu_argv(&spec(Arch::Aarch64, Accel::Kvm, vhost_user())));
        assert_eq!(
            values(&argv, "-machine"),
            ["virt,memory-backend=mem,gic-version=host"]
        );
        assert_eq!(values(&argv, "-cpu"), ["host"]);
        assert_eq!(values(&argv, "-accel"), ["kvm"]);
        let argv = strings(&qemu_argv(&spec(Arch::X86_64, Accel::Kvm, vhost_user())));
        assert_eq!(values(&argv, "-machine"), ["q35,memory-backend=mem"]);
        assert_eq!(values(&argv, "-accel"), ["kvm"]);
    }

    #[test]
    fn kernel_vsock_needs_no_shared_memory() {
        let argv = strings(&qemu_argv(&spec(
            Arch::X86_64,
            Accel::Kvm,
            VsockDevice::Kernel { cid: 1234 },
        )));
        assert_eq!(values(&argv, "-machine"), ["q35"]);
        assert!(values(&argv, "-object").is_empty());
        assert!(values(&argv, "-device").contains(&"vhost-vsock-pci,guest-cid=1234".to_string()));
        assert!(!argv.iter().any(|a| a.contains("vhost-user")));
    }

    #[test]
    fn microvm_uses_mmio_devices_and_tsc_hint_under_tcg() {
        let mut s = spec(Arch::X86_64, Accel::Tcg, vhost_user());
        s.machine = Machine::Microvm;
        s.validate().expect("valid");
        let argv = strings(&qemu_argv(&s));
        assert_eq!(values(&argv, "-machine"), ["microvm,memory-backend=mem"]);
        assert!(
            values(&argv, "-device").contains(&"vhost-user-vsock-device,chardev=vsock".to_string())
        );
        assert!(values(&argv, "-device").contains(&"virtio-blk-device,drive=rootfs".to_string()));
        assert!(values(&argv, "-append")[0].contains("tsc_early_khz=2000000"));
        s.accel = Accel::Kvm;
        assert!(!kernel_cmdline(&s).contains("tsc_early_khz"));
    }

    #[test]
    fn stateless_run_has_no_state_disk_or_state_argument() {
        let mut s = spec(Arch::Aarch64, Accel::Tcg, vhost_user());
        s.state_disk = None;
        let argv = strings(&qemu_argv(&s));
        assert_eq!(values(&argv, "-drive").len(), 1);
        assert!(!kernel_cmdline(&s).contains("vcontainer.state"));
    }

    #[test]
    fn commas_in_paths_are_doubled() {
        let mut s = spec(
            Arch::Aarch64,
            Accel::Tcg,
            VsockDevice::VhostUser {
                socket: "/a,b/vhost.sock".into(),
            },
        );
        s.console_log = "/x,y/console.log".into();
        let argv = strings(&qemu_argv(&s));
        assert!(values(&argv, "-chardev")
            .contains(&"socket,id=vsock,path=/a,,b/vhost.sock".to_string()));
        assert!(values(&argv, "-chardev")
            .contains(&"file,id=console,path=/x,,y/console.log".to_string()));
        // -kernel takes a plain file name, not an option list: no escaping there.
        s.kernel = "/k,1/vmlinuz".into();
        assert_eq!(
            values(&strings(&qemu_argv(&s)), "-kernel"),
            ["/k,1/vmlinuz"]
        );
    }

    #[test]
    fn validate_rejects_bad_specs() {
        let mut s = spec(Arch::Aarch64, Accel::Tcg, vhost_user());
        s.machine = Machine::Q35;
        assert!(s.validate().is_err());
        let mut s = spec(Arch::Aarch64, Accel::Tcg, vhost_user());
        s.kernel_args.push("a b".into());
        assert!(s.validate().is_err());
        let mut s = spec(Arch::Aarch64, Accel::Tcg, vhost_user());
        s.kernel_args.push("x".repeat(3000));
        assert!(s.validate().is_err());
        let mut s = spec(Arch::Aarch64, Accel::Tcg, vhost_user());
        s.cpus = 0;
        assert!(s.validate().is_err());
    }

    #[test]
    fn no_network_means_no_nic() {
        let argv = strings(&qemu_argv(&spec(Arch::X86_64, Accel::Tcg, vhost_user())));
        assert_eq!(values(&argv, "-nic"), ["none"]);
        assert!(values(&argv, "-netdev").is_empty());
        assert!(!values(&argv, "-device").iter().any(|d| d.contains("net")));
    }

    #[test]
    fn user_network_with_forwards_host_to_guest_port() {
        let mut s = spec(Arch::Aarch64, Accel::Tcg, vhost_user());
        s.network = true;
        s.port_forwards = vec![
            "8080:80".parse().expect("pf"),
            "127.0.0.1:5353:53/udp".parse().expect("pf"),
        ];
        s.validate().expect("valid");
        let argv = strings(&qemu_argv(&s));
        assert!(values(&argv, "-nic").is_empty());
        assert_eq!(
            values(&argv, "-netdev"),
            ["user,id=net0,hostfwd=tcp:0.0.0.0:8080-:80,hostfwd=udp:127.0.0.1:5353-:53"]
        );
        assert_eq!(
            values(&argv, "-device"),
            [
                "virtio-blk-pci,drive=rootfs",
                "virtio-blk-pci,drive=state",
                "virtio-net-pci,netdev=net0",
                "virtio-rng-pci",
                "vhost-user-vsock-pci,chardev=vsock"
            ]
        );
        s.port_forwards.clear();
        let argv = strings(&qemu_argv(&s));
        assert_eq!(values(&argv, "-netdev"), ["user,id=net0"]);
    }

    #[test]
    fn microvm_network_is_virtio_mmio() {
        let mut s = spec(Arch::X86_64, Accel::Tcg, vhost_user());
        s.machine = Machine::Microvm;
        s.network = true;
        let argv = strings(&qemu_argv(&s));
        assert!(values(&argv, "-device").contains(&"virtio-net-device,netdev=net0".to_string()));
    }

    #[test]
    fn forwards_need_network_and_distinct_host_ports() {
        let mut s = spec(Arch::X86_64, Accel::Tcg, vhost_user());
        s.port_forwards = vec!["8080:80".parse().expect("pf")];
        let err = s.validate().expect_err("no network").to_string();
        assert!(err.contains("--no-network"), "{err}");
        s.network = true;
        s.port_forwards
            .push("127.0.0.1:8080:81".parse().expect("pf"));
        let err = s.validate().expect_err("twice").to_string();
        assert!(
            err.contains("host port 8080/tcp is forwarded twice"),
            "{err}"
        );
        // Same number, other protocol: two different host sockets.
        s.port_forwards[1] = "8080:80/udp".parse().expect("pf");
        s.validate().expect("tcp and udp may share a number");
    }

    #[test]
    fn binaries_and_packages() {
        assert_eq!(qemu_binary(Arch::Aarch64), "qemu-system-aarch64");
        assert_eq!(qemu_package(Arch::Aarch64), "qemu-system-arm");
        assert_eq!(qemu_binary(Arch::X86_64), "qemu-system-x86_64");
        assert_eq!(qemu_package(Arch::X86_64), "qemu-system-x86");
    }
}
