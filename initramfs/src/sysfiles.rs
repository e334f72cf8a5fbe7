//! What the maintainer scripts would have done, for the parts the guest needs. The rootfs is made
//! with mmdebstrap's `extract` variant, which unpacks packages but runs no scripts: that works the
//! same for a foreign architecture without binfmt/qemu-user (13 s instead of ~8 min for arm64)
//! and without root. In exchange the builder writes the users, groups, alternatives links,
//! CA bundle and small config files itself. The list was made by reading the postinst scripts of
//! the trixie package set (adduser/groupadd/update-alternatives/update-ca-certificates calls).

use std::fmt::Write as _;
use std::path::Path;

use crate::error::{BuildError, Result};

/// Groups created by postinst scripts with `addgroup --system` (docker.io).
pub const SYSTEM_GROUPS: &[&str] = &["docker"];

/// dpkg alternatives of the package set: (link, name, target). Only applied when the target
/// exists; the highest-priority choice of each postinst is used (iptables → nft, as in trixie).
pub const ALTERNATIVES: &[(&str, &str, &str)] = &[
    ("/usr/sbin/iptables", "iptables", "/usr/sbin/iptables-nft"),
    (
        "/usr/sbin/iptables-restore",
        "iptables-restore",
        "/usr/sbin/iptables-nft-restore",
    ),
    (
        "/usr/sbin/iptables-save",
        "iptables-save",
        "/usr/sbin/iptables-nft-save",
    ),
    (
        "/usr/sbin/ip6tables",
        "ip6tables",
        "/usr/sbin/ip6tables-nft",
    ),
    (
        "/usr/sbin/ip6tables-restore",
        "ip6tables-restore",
        "/usr/sbin/ip6tables-nft-restore",
    ),
    (
        "/usr/sbin/ip6tables-save",
        "ip6tables-save",
        "/usr/sbin/ip6tables-nft-save",
    ),
    (
        "/usr/sbin/arptables",
        "arptables",
        "/usr/sbin/arptables-nft",
    ),
    (
        "/usr/sbin/arptables-restore",
        "arptables-restore",
        "/usr/sbin/arptables-nft-restore",
    ),
    (
        "/usr/sbin/arptables-save",
        "arptables-save",
        "/usr/sbin/arptables-nft-save",
    ),
    ("/usr/sbin/ebtables", "ebtables", "/usr/sbin/ebtables-nft"),
    (
        "/usr/sbin/ebtables-restore",
        "ebtables-restore",
        "/usr/sbin/ebtables-nft-restore",
    ),
    (
        "/usr/sbin/ebtables-save",
        "ebtables-save",
        "/usr/sbin/ebtables-nft-save",
    ),
    ("/usr/bin/awk", "awk", "/usr/bin/mawk"),
    ("/usr/bin/nawk", "nawk", "/usr/bin/mawk"),
    ("/usr/bin/which", "which", "/usr/bin/which.debianutils"),
    ("/usr/sbin/rmt", "rmt", "/usr/sbin/rmt-tar"),
    ("/usr/bin/pager", "pager", "/usr/bin/more"),
    ("/usr/bin/pinentry", "pinentry", "/usr/bin/pinentry-curses"),
];

/// Directories the agent and the engines expect: (path, mode).
pub const DIRS: &[(&str, u32)] = &[
    ("dev", 0o755),
    ("proc", 0o555),
    ("sys", 0o555),
    ("run", 0o755),
    ("tmp", 0o1777),
    ("var/tmp", 0o1777),
    ("root", 0o700),
    ("mnt/state", 0o755),
    ("var/lib/docker", 0o710),
    ("var/lib/containers/storage", 0o700),
    ("etc/containers", 0o755),
];

/// Used as the "last password change" day so generated files do not depend on the build date.
const SHADOW_LASTCHG: u32 = 19000;

const POLICY_JSON: &str = "{\n    \"default\": [\n        {\n            \"type\": \"insecureAcceptAnything\"\n        }\n    ]\n}\n";

/// `/etc/passwd`, `/etc/shadow`, `/etc/group`, `/etc/gshadow` contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accounts {
    pub passwd: String,
    pub shadow: String,
    pub group: String,
    pub gshadow: String,
}

/// Builds the account files from base-passwd's master files (what `update-passwd` installs,
/// with passwords moved to shadow files as `shadowconfig on` does) plus `extra_groups`, which
/// get the first free system gid from 100 upwards, like `addgroup --system`.
pub fn accounts(
    passwd_master: &str,
    group_master: &str,
    extra_groups: &[&str],
) -> Result<Accounts, String> {
    let mut out = Accounts {
        passwd: String::new(),
        shadow: String::new(),
        group: String::new(),
        gshadow: String::new(),
    };
    for line in passwd_master.lines().filter(|l| !l.trim().is_empty()) {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() != 7 {
            return Err(format!("bad passwd.master line {line:?}"));
        }
        let _ = writeln!(out.passwd, "{}:x:{}", f[0], f[2..].join(":"));
        let _ = writeln!(out.shadow, "{}:*:{SHADOW_LASTCHG}:0:99999:7:::", f[0]);
    }
    let mut used = Vec::new();
    let mut names = Vec::new();
    for line in group_master.lines().filter(|l| !l.trim().is_empty()) {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() != 4 {
            return Err(format!("bad group.master line {line:?}"));
        }
        let gid: u32 = f[2].parse().map_err(|_| format!("bad gid in {line:?}"))?;
        used.push(gid);
        names.push(f[0].to_string());
        let _ = writeln!(out.group, "{}:x:{}:{}", f[0], f[2], f[3]);
        let _ = writeln!(out.gshadow, "{}:*::{}", f[0], f[3]);
    }
    for name in extra_groups {
        if names.iter().any(|n| n == name) {
            continue;
        }
        let gid = (100..1000)
            .find(|g| !used.contains(g))
            .ok_or_else(|| "no free system gid".to_string())?;
        used.push(gid);
        let _ = writeln!(out.group, "{name}:x:{gid}:");
        let _ = writeln!(out.gshadow, "{name}:!::");
    }
    Ok(out)
}

/// The CA bundle `update-ca-certificates` would write: every certificate under
/// `/usr/share/ca-certificates`, sorted, each ending in a newline. Also returns the
/// `/etc/ca-certificates.conf` listing them.
pub fn ca_bundle(root: &Path) -> Result<(String, String)> {
    let base = root.join("usr/share/ca-certificates");
    let mut certs = Vec::new();
    collect_crt(&base, &base, &mut certs)?;
    certs.sort();
    let mut bundle = String::new();
    let mut conf = String::from(
        "# Generated by vcontainer-initramfs (what the ca-certificates postinst selects: all)\n",
    );
    for rel in &certs {
        let path = base.join(rel);
        let text =
            std::fs::read_to_string(&path).map_err(BuildError::io("reading certificate", &path))?;
        bundle.push_str(&text);
        if !text.ends_with('\n') {
            bundle.push('\n');
        }
        conf.push_str(rel);
        conf.push('\n');
    }
    Ok((bundle, conf))
}

fn collect_crt(base: &Path, dir: &Path, out: &mut Vec<String>) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    for entry in entries {
        let entry = entry.map_err(BuildError::io("listing certificates", dir))?;
        let path = entry.path();
        if path.is_dir() {
            collect_crt(base, &path, out)?;
        } else if path.extension().is_some_and(|e| e == "crt") {
            if let Ok(rel) = path.strip_prefix(base) {
                out.push(rel.to_string_lossy().into_owned());
            }
        }
    }
    Ok(())
}

/// Applies everything above to the unpacked tree at `root`.
pub fn apply(root: &Path) -> Result<()> {
    let read = |rel: &str| {
        let p = root.join(rel);
        std::fs::read_to_string(&p).map_err(BuildError::io(
            "reading base-passwd master file (is base-passwd in the package list?)",
            p,
        ))
    };
    let acc = accounts(
        &read("usr/share/base-passwd/passwd.master")?,
        &read("usr/share/base-passwd/group.master")?,
        SYSTEM_GROUPS,
    )
    .map_err(|detail| BuildError::Package {
        what: "generating /etc/passwd".into(),
        detail,
    })?;
    write(root, "etc/passwd", &acc.passwd, 0o644)?;
    write(root, "etc/group", &acc.group, 0o644)?;
    write(root, "etc/shadow", &acc.shadow, 0o640)?;
    write(root, "etc/gshadow", &acc.gshadow, 0o640)?;

    for (link, name, target) in ALTERNATIVES {
        let target_rel = target.trim_start_matches('/');
        let link_rel = link.trim_start_matches('/');
        if std::fs::symlink_metadata(root.join(target_rel)).is_err()
            || std::fs::symlink_metadata(root.join(link_rel)).is_ok()
        {
            continue;
        }
        // The same two-step links dpkg makes: /usr/sbin/iptables -> /etc/alternatives/iptables -> target
        symlink(root, &format!("etc/alternatives/{name}"), target)?;
        symlink(root, link_rel, &format!("/etc/alternatives/{name}"))?;
    }

    let (bundle, conf) = ca_bundle(root)?;
    write(root, "etc/ssl/certs/ca-certificates.crt", &bundle, 0o644)?;
    write(root, "etc/ca-certificates.conf", &conf, 0o644)?;

    // mmdebstrap copies the build host's hostname and resolv.conf: replace them.
    write(root, "etc/hostname", "vcontainer\n", 0o644)?;
    write(
        root,
        "etc/hosts",
        "127.0.0.1\tlocalhost vcontainer\n::1\tlocalhost ip6-localhost ip6-loopback\n",
        0o644,
    )?;
    write(
        root,
        "etc/resolv.conf",
        "# no network; the agent rewrites this file if the guest gets one\n",
        0o644,
    )?;
    // Empty (not absent): tools treat it as "not yet initialised" instead of failing.
    write(root, "etc/machine-id", "", 0o444)?;
    if std::fs::symlink_metadata(root.join("etc/mtab")).is_err() {
        symlink(root, "etc/mtab", "../proc/self/mounts")?;
    }
    if !root.join("etc/containers/policy.json").exists() {
        write(root, "etc/containers/policy.json", POLICY_JSON, 0o644)?;
    }
    for (dir, mode) in DIRS {
        let p = root.join(dir);
        std::fs::create_dir_all(&p).map_err(BuildError::io("creating rootfs directory", &p))?;
        set_mode(&p, *mode)?;
    }
    // base-files' postinst turns /var/run and /var/lock into links to the /run tmpfs; without
    // them, daemons and their CLIs disagree about socket paths (/run/docker.sock vs
    // /var/run/docker.sock).
    for (link, target) in [("var/run", "/run"), ("var/lock", "/run/lock")] {
        let p = root.join(link);
        if std::fs::symlink_metadata(&p).is_ok_and(|m| m.is_dir()) {
            std::fs::remove_dir_all(&p).map_err(BuildError::io("replacing directory", &p))?;
        }
        symlink(root, link, target)?;
    }
    Ok(())
}

fn write(root: &Path, rel: &str, text: &str, mode: u32) -> Result<()> {
    let p = root.join(rel);
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent).map_err(BuildError::io("creating directory", parent))?;
    }
    // Remove first: the file may be a dangling symlink or read-only.
    let _ = std::fs::remove_file(&p);
    std::fs::write(&p, text).map_err(BuildError::io("writing rootfs file", &p))?;
    set_mode(&p, mode)
}

fn set_mode(p: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
        .map_err(BuildError::io("setting mode", p))
}

fn symlink(root: &Path, rel: &str, target: &str) -> Result<()> {
    let p = root.join(rel);
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent).map_err(BuildError::io("creating directory", parent))?;
    }
    let _ = std::fs::remove_file(&p);
    std::os::unix::fs::symlink(target, &p).map_err(BuildError::io("creating symlink", &p))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:*:0:0:root:/root:/bin/bash\nnobody:*:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n";
    const GROUP: &str = "root:*:0:\nshadow:*:42:\nusers:*:100:\nnogroup:*:65534:\n";

    #[test]
    fn accounts_from_masters_with_docker_group() {
        let a = accounts(PASSWD, GROUP, &["docker", "users"]).expect("accounts");
        assert_eq!(a.passwd, "root:x:0:0:root:/root:/bin/bash\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n");
        assert!(a.shadow.starts_with("root:*:19000:0:99999:7:::\n"));
        assert_eq!(
            a.group,
            "root:x:0:\nshadow:x:42:\nusers:x:100:\nnogroup:x:65534:\ndocker:x:101:\n"
        );
        assert!(a.gshadow.ends_with("docker:!::\n"));
        assert!(accounts("bad", GROUP, &[]).is_err());
    }

    #[test]
    fn apply_on_a_tiny_tree() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        for (rel, text) in [
            ("usr/share/base-passwd/passwd.master", PASSWD),
            ("usr/share/base-passwd/group.master", GROUP),
            ("usr/share/ca-certificates/mozilla/B.crt", "BBB"),
            ("usr/share/ca-certificates/mozilla/A.crt", "AAA\n"),
            ("usr/sbin/iptables-nft", "x"),
            ("etc/hostname", "buildhost\n"),
        ] {
            let p = root.join(rel);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(p, text).expect("write");
        }
        apply(root).expect("apply");
        let read = |rel: &str| std::fs::read_to_string(root.join(rel)).expect(rel);
        assert_eq!(read("etc/ssl/certs/ca-certificates.crt"), "AAA\nBBB\n");
        assert_eq!(read("etc/hostname"), "vcontainer\n");
        assert!(read("etc/group").contains("docker:x:101:"));
        assert!(read("etc/containers/policy.json").contains("insecureAcceptAnything"));
        assert_eq!(
            std::fs::read_link(root.join("usr/sbin/iptables")).expect("link"),
            Path::new("/etc/alternatives/iptables")
        );
        assert_eq!(
            std::fs::read_link(root.join("etc/alternatives/iptables")).expect("link"),
            Path::new("/usr/sbin/iptables-nft")
        );
        // targets that do not exist get no dangling links
        assert!(std::fs::symlink_metadata(root.join("usr/bin/awk")).is_err());
        assert!(root.join("var/lib/containers/storage").is_dir());
        assert_eq!(read("etc/machine-id"), "");
    }
}
