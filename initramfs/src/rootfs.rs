//! The root filesystem: Debian trixie with both container engines, unpacked by mmdebstrap
//! (`--variant=extract`, see sysfiles.rs for why) and packed with mksquashfs.
//!
//! Privileges: mmdebstrap runs in `chrootless` mode, which for `extract` only downloads and
//! unpacks (no chroot, no scripts), so it needs neither root nor user namespaces (this machine has
//! no newuidmap/subuid, so `--mode=unshare` would not work for ordinary users). As an ordinary
//! user it runs under `fakeroot` so tar keeps setuid/setgid bits; mksquashfs then stores every
//! file as root-owned (`-all-root`), which is what the packages ship for everything the guest
//! uses. Only group ownerships like `root:shadow` on chage/expiry are lost, and nothing in the
//! guest depends on those.

use std::path::Path;
use std::process::Command;

use crate::arch::Arch;
use crate::error::{BuildError, Result};
use crate::progress::{Progress, Stage};
use crate::sources::Mirrors;
use crate::tool::{self, ToolRun};

pub const ROOTFS_SUITE: &str = "trixie";

/// The container engines and the tools the agent calls. Dependencies are resolved by apt; the
/// podman network stack (netavark, aardvark-dns) and containers-common are Recommends or
/// dependencies depending on the release, so they are named here.
pub const ENGINE_PACKAGES: &[&str] = &[
    "docker.io",
    "docker-cli",
    "containerd",
    "runc",
    "podman",
    "skopeo",
    "crun",
    "conmon",
    "netavark",
    "aardvark-dns",
    "golang-github-containers-common",
    "tar",
    "ca-certificates",
    "procps",
    "e2fsprogs",
    "iproute2",
    "iptables",
    "util-linux",
];

/// `extract` installs no Essential packages by itself; these make a usable base (/bin/sh, coreutils,
/// the base-passwd master files, base-files' /etc and merged-/usr links).
pub const BASE_PACKAGES: &[&str] = &[
    "base-files",
    "base-passwd",
    "bash",
    "bsdutils",
    "coreutils",
    "dash",
    "debianutils",
    "diffutils",
    "findutils",
    "grep",
    "gzip",
    "hostname",
    "libc-bin",
    "login",
    "mawk",
    "mount",
    "ncurses-base",
    "sed",
    "sysvinit-utils",
];

/// dpkg `path-exclude` patterns: documentation and translations are a third of the size.
pub const PATH_EXCLUDES: &[&str] = &[
    "/usr/share/man/*",
    "/usr/share/doc/*",
    "/usr/share/info/*",
    "/usr/share/locale/*",
    "/usr/share/lintian/*",
];

/// All packages, sorted (part of the cache key).
pub fn packages() -> Vec<&'static str> {
    let mut all: Vec<&str> = BASE_PACKAGES
        .iter()
        .chain(ENGINE_PACKAGES)
        .copied()
        .collect();
    all.sort_unstable();
    all.dedup();
    all
}

/// Directories every arch's merged /usr has, plus lib64 where the ELF interpreter lives there.
fn merged_usr_dirs(arch: Arch) -> &'static str {
    match arch {
        Arch::X86_64 => "bin sbin lib lib64",
        Arch::Aarch64 => "bin sbin lib",
    }
}

/// Runs mmdebstrap into `target` (must not exist), installing `include` (names, or
/// `name=version` for a lock) and what they depend on. `debs` is the download cache: its files are
/// copied in before apt runs and replaced by the set apt used afterwards. `deb_list` receives the
/// file names of exactly those `.debs`, one per line: the `extract` variant registers nothing in
/// the image's dpkg database, so this is the record of what the image is made of.
#[allow(clippy::too_many_arguments)]
pub fn unpack(
    arch: Arch,
    mirrors: &Mirrors,
    include: &[String],
    target: &Path,
    debs: &Path,
    deb_list: &Path,
    log: &Path,
    progress: &mut dyn FnMut(Progress),
) -> Result<()> {
    let mmdebstrap = tool::require("mmdebstrap", "building the rootfs")?;
    std::fs::create_dir_all(debs).map_err(BuildError::io("creating .deb cache", debs))?;
    let as_root = nix::unistd::geteuid().is_root();
    let mut cmd = if as_root {
        Command::new(&mmdebstrap)
    } else {
        let fakeroot = tool::find("fakeroot").ok_or_else(|| BuildError::Unprivileged {
            what: "building the rootfs".into(),
            needs: "`fakeroot` (apt-get install fakeroot) so unpacked setuid programs keep their mode bits; or run the build as root".into(),
        })?;
        let mut c = Command::new(fakeroot);
        c.arg(&mmdebstrap);
        c
    };
    let dirs = merged_usr_dirs(arch);
    cmd.env("LC_ALL", "C.UTF-8")
        .env("VCONTAINER_DEB_CACHE", debs)
        .env("VCONTAINER_DEB_LIST", deb_list)
        .args(["--variant=extract", "--mode=chrootless", "--format=directory"])
        .arg(format!("--architectures={}", arch.debian()))
        .arg(format!("--include={}", include.join(",")))
        // The cache is put into the archives dir before apt runs.
        .arg("--skip=download/empty")
        // Merged /usr before anything is unpacked, as debootstrap does.
        .arg(format!(
            "--setup-hook=for d in {dirs}; do ln -s usr/$d \"$1/$d\"; mkdir -p \"$1/usr/$d\"; done; \
             mkdir -p \"$1/var/cache/apt/archives\"; \
             for f in \"$VCONTAINER_DEB_CACHE\"/*.deb; do [ -e \"$f\" ] && cp \"$f\" \"$1/var/cache/apt/archives/\"; done; true"
        ))
        // Keep exactly the .debs this build used, for the next build. (The extract variant runs
        // no customize hooks; extract hooks run while the .debs are still in the archives dir.)
        .arg("--extract-hook=rm -f \"$VCONTAINER_DEB_CACHE\"/*.deb; cp \"$1\"/var/cache/apt/archives/*.deb \"$VCONTAINER_DEB_CACHE\"/; \
             for f in \"$1\"/var/cache/apt/archives/*.deb; do echo \"${f##*/}\"; done > \"$VCONTAINER_DEB_LIST\"");
    for pattern in PATH_EXCLUDES {
        cmd.arg(format!("--dpkgopt=path-exclude={pattern}"));
    }
    cmd.arg(ROOTFS_SUITE).arg(target);
    for line in mirrors.deb_lines(ROOTFS_SUITE) {
        // apt inside mmdebstrap reads a file: repository's .debs in place, from where the target
        // tree cannot see them; copy: makes apt copy them in (same repository, same checks).
        cmd.arg(line.replacen(" file:", " copy:", 1));
    }
    progress(Progress::new(
        Stage::Rootfs,
        format!(
            "running mmdebstrap ({ROOTFS_SUITE}, {}, {} packages)…",
            arch.debian(),
            include.len()
        ),
    ));
    let run = ToolRun {
        what: "building the rootfs with mmdebstrap",
        hint: "check that the Debian mirror is reachable and that the host key ring (debian-archive-keyring) knows the trixie keys; the log has apt's full output",
        log,
    };
    run.run(&mut cmd, &mut |line| {
        if let Some(info) = line.strip_prefix("I: ") {
            progress(Progress::new(Stage::Rootfs, info.to_string()));
        }
    })?;
    // mmdebstrap leaves the mirror it used in the image's sources.list. The guest never runs
    // apt, and the image must not depend on which mirror (or snapshot, or local copy) served
    // the same packages: a build from a lock is then bit-identical to the original.
    let sources = target.join("etc/apt/sources.list");
    match std::fs::remove_file(&sources) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(BuildError::io("removing the build's apt sources", &sources)(e))
        }
        _ => Ok(()),
    }
}

/// Compression options (also part of the rootfs cache key). lz4, not zstd: the guest decompresses
/// every page of dockerd, containerd and the docker CLI it runs, and under TCG the guest kernel's
/// decompressor is emulated. Measured on the x86_64 tree (473 MB) with one-shot `vdkr images`:
/// dockerd ready 8.0–9.4 s with zstd (171 MB image), 5.5–7.8 s with lz4 (253 MB),
/// 6.9–7.3 s uncompressed (484 MB). lz4 also packs in about a second.
pub const SQUASHFS_OPTIONS: &str = "-comp lz4";

/// Every timestamp in the image is clamped to this (`SOURCE_DATE_EPOCH` for mksquashfs, which
/// also makes it the filesystem's creation time): what the build itself creates (directories,
/// device nodes, the files sysfiles.rs writes) would otherwise carry the build's time, and two
/// builds of one lock would differ in nothing else. 2025-08-09, trixie's release: files that
/// packages ship with a later date are clamped too, which nothing in the guest looks at.
pub const SQUASHFS_CLAMP_EPOCH: u64 = 1_754_697_600;

/// Packs `tree` into `out` as an lz4 squashfs, all files root-owned, no xattrs (the unpacked
/// packages carry none; host labels like security.selinux must not leak in).
pub fn squash(
    tree: &Path,
    out: &Path,
    log: &Path,
    progress: &mut dyn FnMut(Progress),
) -> Result<()> {
    let mksquashfs = tool::require("mksquashfs", "packing the rootfs")?;
    progress(Progress::new(Stage::Squashfs, "running mksquashfs (lz4)…"));
    let mut cmd = Command::new(mksquashfs);
    cmd.arg(tree)
        .arg(out)
        .args(["-noappend", "-all-root", "-no-xattrs", "-no-progress"])
        .args(SQUASHFS_OPTIONS.split(' '))
        // Equal trees give equal images (mksquashfs refuses -mkfs-time beside it).
        .env("SOURCE_DATE_EPOCH", SQUASHFS_CLAMP_EPOCH.to_string());
    let run = ToolRun {
        what: "packing the rootfs with mksquashfs",
        hint: "check free space in the cache directory",
        log,
    };
    run.run(&mut cmd, &mut |_| {})
}
