//! A local Debian repository made from `.deb` files, as a snapshot mirror serves them: what a
//! build from a lock file fetches from when the tests may not reach snapshot.debian.org.
//! `dists/<suite>/main/binary-<arch>/Packages` from each package's control fields (read with
//! `dpkg-deb -f`) plus Filename, Size and SHA256; an unsigned Release listing it. Used as a
//! `file:` mirror, which vcontainer trusts without a signature.

use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

fn sha256(path: &Path) -> String {
    let bytes = std::fs::read(path).expect("read");
    hex::encode(Sha256::digest(&bytes))
}

/// Writes a repository at `root` with one suite per `(suite, debs)`; every suite gets an empty
/// `<suite>-updates` too (the builder's sources name it).
pub fn write_repo(root: &Path, debian_arch: &str, suites: &[(&str, Vec<PathBuf>)]) {
    let pool = root.join("pool");
    std::fs::create_dir_all(&pool).expect("pool");
    for (suite, debs) in suites {
        let mut packages = String::new();
        for deb in debs {
            let name = deb.file_name().expect("name");
            let dest = pool.join(name);
            if !dest.exists() {
                std::fs::hard_link(deb, &dest)
                    .or_else(|_| std::fs::copy(deb, &dest).map(|_| ()))
                    .expect("copy .deb");
            }
            let out = Command::new("dpkg-deb")
                .arg("-f")
                .arg(&dest)
                .output()
                .expect("dpkg-deb");
            assert!(out.status.success(), "dpkg-deb -f {}", dest.display());
            packages.push_str(String::from_utf8_lossy(&out.stdout).trim_end());
            packages.push_str(&format!(
                "\nFilename: pool/{}\nSize: {}\nSHA256: {}\n\n",
                name.to_string_lossy(),
                std::fs::metadata(&dest).expect("size").len(),
                sha256(&dest)
            ));
        }
        for (s, text) in [
            (suite.to_string(), packages),
            (format!("{suite}-updates"), String::new()),
        ] {
            let dist = root.join("dists").join(&s);
            let rel = format!("main/binary-{debian_arch}/Packages");
            let file = dist.join(&rel);
            std::fs::create_dir_all(file.parent().expect("parent")).expect("mkdir");
            std::fs::write(&file, &text).expect("Packages");
            let release = format!(
                "Origin: vcontainer-test\nSuite: {s}\nCodename: {s}\nDate: Thu, 01 Jan 2026 00:00:00 UTC\nArchitectures: {debian_arch}\nComponents: main\nSHA256:\n {} {} {rel}\n",
                sha256(&file),
                text.len()
            );
            std::fs::write(dist.join("Release"), release).expect("Release");
        }
    }
}

/// The `.deb` of `name` `version` in a package cache directory (apt's file names: an epoch's
/// `:` as `%3a`).
pub fn find_deb(dir: &Path, name: &str, version: &str) -> Option<PathBuf> {
    let prefix = format!("{name}_{}_", version.replace(':', "%3a"));
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".deb"))
        })
}
