//! A private apt configuration per (suite, arch) under the cache directory. It lets an ordinary
//! user run `apt-get update` / `apt-get download` for a foreign architecture without touching the
//! host's apt state, configuration or locks.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{BuildError, Result};
use crate::sources::Mirrors;
use crate::tool::{self, ToolRun};

/// A self-contained apt setup rooted at `root`.
#[derive(Debug, Clone)]
pub struct PrivateApt {
    pub root: PathBuf,
    /// Where `apt-get download` puts the `.deb` files (kept as the download cache).
    pub debs: PathBuf,
}

impl PrivateApt {
    /// Writes the configuration files for `suite` on `debian_arch` below `root`.
    pub fn create(
        root: &Path,
        debs: &Path,
        suite: &str,
        debian_arch: &str,
        mirrors: &Mirrors,
    ) -> Result<Self> {
        for dir in [
            "state/lists/partial",
            "cache/archives/partial",
            "etc/apt.conf.d",
            "etc/sources.list.d",
            "etc/preferences.d",
        ] {
            let d = root.join(dir);
            std::fs::create_dir_all(&d).map_err(BuildError::io("creating private apt dir", &d))?;
        }
        std::fs::create_dir_all(debs).map_err(BuildError::io("creating .deb cache dir", debs))?;
        let status = root.join("state/status");
        if !status.exists() {
            std::fs::write(&status, b"").map_err(BuildError::io("writing apt status", &status))?;
        }
        let sources = root.join("etc/sources.list");
        let mut text = mirrors.deb_lines(suite).join("\n");
        text.push('\n');
        std::fs::write(&sources, text)
            .map_err(BuildError::io("writing private sources.list", &sources))?;
        let conf = root.join("etc/apt.conf");
        let body = apt_conf(root, debian_arch, nix::unistd::geteuid().is_root());
        std::fs::write(&conf, body).map_err(BuildError::io("writing private apt.conf", &conf))?;
        Ok(PrivateApt {
            root: root.to_path_buf(),
            debs: debs.to_path_buf(),
        })
    }

    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        cmd.env("APT_CONFIG", self.root.join("etc/apt.conf"))
            .env("LC_ALL", "C.UTF-8")
            .env("DEBIAN_FRONTEND", "noninteractive");
        cmd
    }

    fn log(&self) -> PathBuf {
        self.root.join("apt.log")
    }

    /// `apt-get update` against the private lists.
    pub fn update(&self) -> Result<()> {
        tool::require("apt-get", "fetching Debian package lists")?;
        let log = self.log();
        let run = ToolRun {
            what: "fetching Debian package lists",
            hint: "check that the Debian mirror in /etc/apt/sources.list.d is reachable (or set VCONTAINER_DEBIAN_MIRROR) and that its key ring can verify the suite",
            log: &log,
        };
        let mut cmd = self.command("apt-get");
        cmd.args(["-q", "update"]);
        run.run(&mut cmd, &mut |_| {})
    }

    /// The newest candidate's stanza of `package` (`apt-cache show --no-all-versions`).
    pub fn show(&self, package: &str) -> Result<Stanza> {
        let log = self.log();
        let run = ToolRun {
            what: "reading the Debian package index",
            hint: "the package may not exist for this architecture or suite",
            log: &log,
        };
        let mut cmd = self.command("apt-cache");
        cmd.args(["show", "--no-all-versions", package]);
        let text = run.output(&mut cmd)?;
        let stanza = Stanza::parse(&text);
        if stanza.get("Package").is_none() {
            return Err(BuildError::Package {
                what: format!("looking up {package}"),
                detail: "apt-cache printed no package stanza".to_string(),
            });
        }
        Ok(stanza)
    }

    /// Downloads `package` (exact stanza) into the `.deb` cache unless a file with the index's
    /// SHA256 is already there; returns the path.
    pub fn download(&self, stanza: &Stanza) -> Result<PathBuf> {
        let package = stanza.require("Package")?;
        let version = stanza.require("Version")?;
        let sha = stanza.require("SHA256")?;
        let arch = stanza.require("Architecture")?;
        // apt-get download names files like this (an epoch's ':' becomes %3a).
        let name = format!("{package}_{}_{arch}.deb", version.replace(':', "%3a"));
        let path = self.debs.join(&name);
        if path.is_file() && crate::cache::sha256_file(&path)? == sha {
            return Ok(path);
        }
        let log = self.log();
        let run = ToolRun {
            what: "downloading a Debian package",
            hint: "check the mirror is reachable; run `apt-get update` again if the index is stale",
            log: &log,
        };
        let mut cmd = self.command("apt-get");
        cmd.current_dir(&self.debs)
            .args(["-q", "download", &format!("{package}={version}")]);
        run.run(&mut cmd, &mut |_| {})?;
        let got = crate::cache::sha256_file(&path)?;
        if got != sha {
            return Err(BuildError::Package {
                what: format!("downloading {name}"),
                detail: format!(
                    "sha256 {got} does not match the index ({sha}); delete {} and retry",
                    path.display()
                ),
            });
        }
        Ok(path)
    }
}

/// The apt.conf text. `Dir::Etc::parts`/`main` point away from /etc so the host's own apt
/// configuration (e.g. hooks that delete downloaded files) cannot change what we do; apt reads
/// `APT_CONFIG` before the parts directory, so these settings win.
pub fn apt_conf(root: &Path, debian_arch: &str, as_root: bool) -> String {
    let r = root.display();
    let mut s = format!(
        "Dir::State \"{r}/state\";\n\
         Dir::State::status \"{r}/state/status\";\n\
         Dir::Cache \"{r}/cache\";\n\
         Dir::Cache::pkgcache \"\";\n\
         Dir::Cache::srcpkgcache \"\";\n\
         Dir::Etc::sourcelist \"{r}/etc/sources.list\";\n\
         Dir::Etc::sourceparts \"{r}/etc/sources.list.d\";\n\
         Dir::Etc::parts \"{r}/etc/apt.conf.d\";\n\
         Dir::Etc::main \"/dev/null\";\n\
         Dir::Etc::preferences \"{r}/etc/preferences\";\n\
         Dir::Etc::preferencesparts \"{r}/etc/preferences.d\";\n\
         APT::Architecture \"{debian_arch}\";\n\
         APT::Architectures {{ \"{debian_arch}\"; }};\n\
         APT::Install-Recommends \"false\";\n\
         Acquire::Languages \"none\";\n\
         Binary::apt::APT::Keep-Downloaded-Packages \"true\";\n"
    );
    if as_root {
        // apt would drop to `_apt` for downloads, which cannot write into root's cache dir.
        s.push_str("APT::Sandbox::User \"root\";\n");
    }
    s
}

/// One RFC 822 stanza of `apt-cache show`.
#[derive(Debug, Clone, Default)]
pub struct Stanza {
    fields: Vec<(String, String)>,
}

impl Stanza {
    /// Parses the first stanza of `text` (continuation lines are joined).
    pub fn parse(text: &str) -> Stanza {
        let mut fields: Vec<(String, String)> = Vec::new();
        for line in text.lines() {
            if line.is_empty() {
                if fields.is_empty() {
                    continue;
                }
                break;
            }
            if line.starts_with([' ', '\t']) {
                if let Some((_, v)) = fields.last_mut() {
                    v.push('\n');
                    v.push_str(line.trim());
                }
            } else if let Some((k, v)) = line.split_once(':') {
                fields.push((k.to_string(), v.trim().to_string()));
            }
        }
        Stanza { fields }
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str())
    }

    pub fn require(&self, key: &str) -> Result<&str> {
        self.get(key).ok_or_else(|| BuildError::Package {
            what: format!("package {}", self.get("Package").unwrap_or("?")),
            detail: format!("index stanza has no {key} field"),
        })
    }

    /// Package names in `Depends` (alternatives and version constraints dropped).
    pub fn depends(&self) -> Vec<String> {
        self.get("Depends")
            .unwrap_or("")
            .split(',')
            .filter_map(|d| d.split('|').next())
            .filter_map(|d| d.split_whitespace().next())
            .map(|d| d.split(':').next().unwrap_or(d).to_string())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conf_isolates_from_host_and_sets_arch() {
        let conf = apt_conf(Path::new("/c/apt/bookworm-arm64"), "arm64", false);
        assert!(conf.contains("APT::Architecture \"arm64\";"));
        assert!(conf.contains("APT::Architectures { \"arm64\"; };"));
        assert!(conf.contains("Dir::State::status \"/c/apt/bookworm-arm64/state/status\";"));
        assert!(conf.contains("Dir::Etc::parts \"/c/apt/bookworm-arm64/etc/apt.conf.d\";"));
        assert!(conf.contains("Dir::Etc::main \"/dev/null\";"));
        assert!(!conf.contains("Sandbox"));
        assert!(apt_conf(Path::new("/c"), "amd64", true).contains("APT::Sandbox::User \"root\";"));
    }

    #[test]
    fn writes_sources_for_the_suite() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mirrors = Mirrors {
            archive: "http://m/debian".into(),
            security: None,
            keyring: None,
            allow_expired: false,
        };
        let apt = PrivateApt::create(
            &dir.path().join("apt"),
            &dir.path().join("debs"),
            "bookworm",
            "arm64",
            &mirrors,
        )
        .expect("create");
        let sources = std::fs::read_to_string(apt.root.join("etc/sources.list")).expect("read");
        assert_eq!(
            sources,
            "deb http://m/debian bookworm main\ndeb http://m/debian bookworm-updates main\n"
        );
        assert!(apt.root.join("state/status").is_file());
    }

    #[test]
    fn stanza_fields_and_depends() {
        let s = Stanza::parse(
            "Package: linux-image-cloud-arm64\nVersion: 6.1.140-1\nDepends: linux-image-6.1.0-37-cloud-arm64 (= 6.1.140-1), foo:any | bar\nDescription: x\n more\n\nPackage: other\n",
        );
        assert_eq!(s.get("version"), Some("6.1.140-1"));
        assert_eq!(s.depends(), vec!["linux-image-6.1.0-37-cloud-arm64", "foo"]);
        assert_eq!(s.get("Description"), Some("x\nmore"));
    }
}
