//! The "foreign" guest image of the image-directory tests, made without our image builder the
//! way a user of another distribution or of Yocto would make one: Debian trixie's generic kernel
//! (modular, compressed `.ko.xz` modules) and a root filesystem made by plain mmdebstrap with
//! docker.io, podman and skopeo, maintainer scripts and all. Only `vcontainer image add-agent`
//! and a manifest make it a vcontainer guest.
//!
//! The root filesystem of a foreign architecture runs its maintainer scripts under qemu-user,
//! which needs binfmt_misc and root: about 9 minutes for arm64, so the tree is cached by its
//! inputs beside the guest images. Without root it cannot be made, and the test fails saying so.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use vcontainer_initramfs::Arch;

use crate::vm::{bin_dir, cache_dir};

/// What the root filesystem is made of; part of its cache key.
pub const SUITE: &str = "trixie";
pub const PACKAGES: &[&str] = &["docker.io", "docker-cli", "podman", "skopeo"];
const PATH_EXCLUDES: &[&str] = &[
    "/usr/share/doc/*",
    "/usr/share/man/*",
    "/usr/share/locale/*",
    "/usr/share/info/*",
];
/// Bump when the recipe below changes.
const RECIPE: &str = "1";

fn fixtures() -> PathBuf {
    cache_dir().join("test-fixtures")
}

fn run(cmd: &mut Command, what: &str) {
    eprintln!("  {what}: {cmd:?}");
    let status = cmd.status().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(status.success(), "{what} failed: {status}");
}

fn key(parts: &[&str]) -> String {
    let digest = <sha2::Sha256 as sha2::Digest>::digest(parts.join("\n").as_bytes());
    hex::encode(&digest[..8])
}

/// A binfmt_misc entry for qemu-aarch64, removed again (and binfmt_misc unmounted if we mounted
/// it) when dropped: the host is left as it was.
struct Binfmt {
    entry: PathBuf,
    mounted: bool,
}

const BINFMT: &str = "/proc/sys/fs/binfmt_misc";
const BINFMT_NAME: &str = "vcontainer-test-qemu-aarch64";
/// ELF header of an aarch64 executable and the bits that must match (QEMU's binfmt table).
const AARCH64_MAGIC: &str =
    r"\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00";
const AARCH64_MASK: &str =
    r"\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff";

impl Binfmt {
    fn register(qemu: &Path) -> Binfmt {
        let register = Path::new(BINFMT).join("register");
        let mounted = !register.exists();
        if mounted {
            run(
                Command::new("mount").args(["-t", "binfmt_misc", "binfmt_misc", BINFMT]),
                "mounting binfmt_misc",
            );
        }
        let entry = Path::new(BINFMT).join(BINFMT_NAME);
        if entry.exists() {
            std::fs::write(&entry, "-1").expect("removing a stale binfmt entry");
        }
        let qemu = qemu.to_str().expect("utf-8 path");
        assert!(!qemu.contains(':'), "{qemu}: binfmt paths cannot hold ':'");
        // F (fix binary): the kernel opens the interpreter now, so it works inside the chroot.
        let line = format!(":{BINFMT_NAME}:M:0:{AARCH64_MAGIC}:{AARCH64_MASK}:{qemu}:F");
        std::fs::OpenOptions::new()
            .write(true)
            .open(&register)
            .and_then(|mut f| f.write_all(line.as_bytes()))
            .expect("registering qemu-aarch64 with binfmt_misc");
        Binfmt { entry, mounted }
    }
}

impl Drop for Binfmt {
    fn drop(&mut self) {
        let _ = std::fs::write(&self.entry, "-1");
        if self.mounted {
            let _ = Command::new("umount").arg(BINFMT).status();
        }
    }
}

/// qemu-aarch64-static from the host suite's qemu-user-static, unpacked privately (never
/// installed).
fn qemu_user() -> PathBuf {
    let dir = fixtures().join("qemu-user");
    let bin = dir.join("usr/bin/qemu-aarch64-static");
    if !bin.is_file() {
        let deb = vcontainer_initramfs::fetch_deb(
            Arch::X86_64,
            &cache_dir(),
            "bookworm",
            "qemu-user-static",
        )
        .expect("downloading qemu-user-static");
        std::fs::create_dir_all(&dir).expect("mkdir");
        run(
            Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&dir),
            "unpacking qemu-user-static",
        );
    }
    assert!(bin.is_file(), "{} missing after unpacking", bin.display());
    bin
}

/// The mmdebstrap root filesystem for `arch`, made once per recipe and cached.
pub fn rootfs_tree(arch: Arch) -> PathBuf {
    let k = key(&[RECIPE, SUITE, arch.debian(), &PACKAGES.join(",")]);
    let tree = fixtures().join(format!("foreign-rootfs-{}-{k}", arch.name()));
    // Published by a rename only when complete.
    if tree.is_dir() {
        return tree;
    }
    assert!(
        nix::unistd::geteuid().is_root(),
        "making the foreign root filesystem runs mmdebstrap with maintainer scripts under \
         qemu-user (binfmt_misc): that needs root. Run this test once as root to fill {}",
        tree.display()
    );
    let _binfmt = (Some(arch) != Arch::host()).then(|| Binfmt::register(&qemu_user()));
    let staging = tree.with_extension("tmp");
    let _ = std::fs::remove_dir_all(&staging);
    let started = std::time::Instant::now();
    let mut cmd = Command::new("mmdebstrap");
    cmd.args(["--mode=root", "--variant=minbase", "--format=directory"])
        .arg(format!("--architectures={}", arch.debian()))
        .arg(format!("--include={}", PACKAGES.join(",")))
        // mmdebstrap's own emulation probe wants arch-test; the binfmt entry above is the check.
        .arg("--skip=check/qemu");
    for p in PATH_EXCLUDES {
        cmd.arg(format!("--dpkgopt=path-exclude={p}"));
    }
    cmd.arg(SUITE).arg(&staging);
    if let Some(mirror) = std::env::var_os("VCONTAINER_DEBIAN_MIRROR").filter(|m| !m.is_empty()) {
        cmd.arg(mirror);
    }
    run(&mut cmd, "mmdebstrap of the foreign root filesystem");
    std::fs::rename(&staging, &tree).expect("publishing the root filesystem");
    eprintln!(
        "  foreign {arch} root filesystem made in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    tree
}

/// Debian's generic kernel for `arch` (`linux-image-<debarch>`, not the cloud flavour),
/// unpacked: returns the kernel image and its `lib/modules` directory.
pub fn generic_kernel(arch: Arch) -> (PathBuf, PathBuf) {
    let meta = format!("linux-image-{}", arch.debian());
    let meta_deb = vcontainer_initramfs::fetch_deb(arch, &cache_dir(), SUITE, &meta)
        .expect("downloading the kernel metapackage");
    let out = Command::new("dpkg-deb")
        .arg("-f")
        .arg(&meta_deb)
        .arg("Depends")
        .output()
        .expect("dpkg-deb -f");
    let depends = String::from_utf8_lossy(&out.stdout).into_owned();
    let package = depends
        .split(',')
        .map(|d| d.split_whitespace().next().unwrap_or(""))
        .find(|d| d.starts_with("linux-image-") && *d != meta)
        .unwrap_or_else(|| panic!("{meta} depends on no kernel: {depends}"))
        .to_string();
    let dir = fixtures().join(format!("foreign-kernel-{package}"));
    if !dir.join("usr/lib/modules").is_dir() {
        let deb = vcontainer_initramfs::fetch_deb(arch, &cache_dir(), SUITE, &package)
            .expect("downloading the kernel");
        let staging = dir.with_extension("tmp");
        let _ = std::fs::remove_dir_all(&staging);
        std::fs::create_dir_all(&staging).expect("mkdir");
        run(
            Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&staging),
            "unpacking the kernel",
        );
        std::fs::rename(&staging, &dir).expect("publishing the kernel");
    }
    let vmlinuz = std::fs::read_dir(dir.join("boot"))
        .expect("boot/")
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-"))
        })
        .expect("boot/vmlinuz-*");
    (vmlinuz, dir.join("usr/lib/modules"))
}

/// Assembles `out/<arch>/` from the generic kernel and the mmdebstrap tree with our agent added
/// by `vcontainer image add-agent`: the kernel, the modules (no initramfs: the host makes the
/// modules initramfs) and the tree as a squashfs, described by a hand-written manifest.
pub fn image_dir(arch: Arch, out: &Path) -> PathBuf {
    let tree = rootfs_tree(arch);
    let (vmlinuz, modules) = generic_kernel(arch);
    let dir = out.join(arch.name());
    std::fs::create_dir_all(&dir).expect("mkdir");

    let mut add_agent = Command::new(bin_dir().join("vcontainer"));
    add_agent
        .args(["image", "add-agent", "-a", arch.name(), "--rootfs"])
        .arg(&tree)
        .env("VCONTAINER_CACHE_DIR", cache_dir());
    run(&mut add_agent, "vcontainer image add-agent");

    std::fs::copy(&vmlinuz, dir.join("vmlinuz")).expect("copying the kernel");
    run(
        Command::new("cp")
            .arg("-a")
            .arg(&modules)
            .arg(dir.join("modules")),
        "copying the modules",
    );
    run(
        Command::new("mksquashfs")
            .arg(&tree)
            .arg(dir.join("rootfs.sqfs"))
            .args(["-noappend", "-comp", "lz4", "-quiet", "-no-progress"]),
        "mksquashfs of the foreign root filesystem",
    );
    let manifest = serde_json::json!({
        "format": vcontainer_initramfs::image_dir::IMAGE_DIR_FORMAT,
        "arch": arch.name(),
        "kernel": { "file": "vmlinuz" },
        "rootfs": { "file": "rootfs.sqfs", "fstype": "squashfs" },
        "modules": "modules",
        "about": { "made_by": "plain mmdebstrap + vcontainer image add-agent (test fixture)" },
    });
    std::fs::write(
        dir.join(vcontainer_initramfs::image_dir::IMAGE_DIR_MANIFEST),
        serde_json::to_vec_pretty(&manifest).expect("json"),
    )
    .expect("writing the manifest");
    dir
}
