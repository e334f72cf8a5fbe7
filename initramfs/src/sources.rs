//! Which Debian mirror to use. The repository must never name a mirror host, so the URIs come from
//! the host's own apt sources (deb822 `.sources` or one-line `.list`), or from the environment.

use std::path::Path;

use crate::error::{BuildError, Result};

/// Debian's archive key ring; sources get `signed-by` it when the host has it.
pub const DEBIAN_KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";

/// The archive and security mirror URIs to fetch Debian packages from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mirrors {
    pub archive: String,
    pub security: Option<String>,
    /// `signed-by` key ring for both (None: apt's default trust).
    pub keyring: Option<String>,
    /// Accept Release files past their Valid-Until date: a snapshot of the archive (what a
    /// build from a lock file uses) is older than that by design; the lock's sha256s pin the
    /// content instead.
    pub allow_expired: bool,
}

impl Mirrors {
    /// Mirrors from `VCONTAINER_DEBIAN_MIRROR` / `VCONTAINER_DEBIAN_SECURITY_MIRROR`, else from
    /// the host's `/etc/apt/sources.list{,.d/*}`.
    pub fn from_host() -> Result<Mirrors> {
        let keyring = Path::new(DEBIAN_KEYRING)
            .is_file()
            .then(|| DEBIAN_KEYRING.to_string());
        if let Ok(archive) = std::env::var("VCONTAINER_DEBIAN_MIRROR") {
            let security = std::env::var("VCONTAINER_DEBIAN_SECURITY_MIRROR")
                .ok()
                .filter(|s| !s.is_empty());
            return Ok(Mirrors::given(&archive, security.as_deref()));
        }
        let mut texts = Vec::new();
        let mut files = vec![Path::new("/etc/apt/sources.list").to_path_buf()];
        if let Ok(dir) = std::fs::read_dir("/etc/apt/sources.list.d") {
            let mut more: Vec<_> = dir.filter_map(|e| e.ok().map(|e| e.path())).collect();
            more.sort();
            files.extend(more);
        }
        for file in files {
            let name = file.to_string_lossy();
            let deb822 = name.ends_with(".sources");
            if !(deb822 || name.ends_with(".list")) {
                continue;
            }
            if let Ok(text) = std::fs::read_to_string(&file) {
                texts.push((deb822, text));
            }
        }
        let entries: Vec<SourceEntry> = texts
            .iter()
            .flat_map(|(deb822, text)| {
                if *deb822 {
                    parse_deb822(text)
                } else {
                    parse_one_line(text)
                }
            })
            .collect();
        pick(&entries, keyring).ok_or_else(|| BuildError::NoMirror {
            looked_in: "/etc/apt/sources.list and /etc/apt/sources.list.d/".to_string(),
        })
    }

    /// Mirrors named by the user (`--mirror`, `$VCONTAINER_DEBIAN_MIRROR`), checked with
    /// Debian's key ring when the host has it.
    pub fn given(archive: &str, security: Option<&str>) -> Mirrors {
        Mirrors {
            archive: archive.trim_end_matches('/').to_string(),
            security: security.map(|s| s.trim_end_matches('/').to_string()),
            keyring: Path::new(DEBIAN_KEYRING)
                .is_file()
                .then(|| DEBIAN_KEYRING.to_string()),
            allow_expired: false,
        }
    }

    /// `deb` lines for `suite` (plus `<suite>-updates` and `<suite>-security`). A `file:`
    /// archive is a local directory the user made (an offline copy of the packages a lock
    /// names): it is trusted without a signature.
    pub fn deb_lines(&self, suite: &str) -> Vec<String> {
        let mut options = Vec::new();
        match &self.keyring {
            _ if self.archive.starts_with("file:") => options.push("trusted=yes".to_string()),
            Some(k) => options.push(format!("signed-by={k}")),
            None => {}
        }
        if self.allow_expired {
            options.push("check-valid-until=no".to_string());
        }
        let opts = if options.is_empty() {
            String::new()
        } else {
            format!("[{}] ", options.join(" "))
        };
        // One suite per line: in the one-line format every word after the suite is a component.
        let mut lines = vec![
            format!("deb {opts}{} {suite} main", self.archive),
            format!("deb {opts}{} {suite}-updates main", self.archive),
        ];
        if let Some(sec) = &self.security {
            lines.push(format!("deb {opts}{sec} {suite}-security main"));
        }
        lines
    }
}

/// One `deb` source: its URIs and suites.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceEntry {
    pub uris: Vec<String>,
    pub suites: Vec<String>,
    pub components: Vec<String>,
}

impl SourceEntry {
    fn is_security(&self) -> bool {
        self.suites
            .iter()
            .any(|s| s.ends_with("-security") || s.ends_with("/updates"))
    }

    /// Only official Debian archives, not third-party repositories that happen to be configured
    /// (those rarely have a `main` component: Docker's has `stable`).
    fn is_debian(&self) -> bool {
        self.components.iter().any(|c| c == "main")
            && self.uris.iter().any(|u| {
                let u = u.trim_end_matches('/');
                u.ends_with("/debian")
                    || u.ends_with("/debian-security")
                    || u.contains("debian.org")
            })
    }
}

/// Chooses the first Debian archive URI and the first Debian security URI.
pub fn pick(entries: &[SourceEntry], keyring: Option<String>) -> Option<Mirrors> {
    let debian = || {
        entries
            .iter()
            .filter(|e| e.is_debian() && !e.uris.is_empty())
    };
    let archive = debian().find(|e| !e.is_security())?.uris[0].clone();
    let security = debian()
        .find(|e| e.is_security())
        .map(|e| e.uris[0].clone());
    Some(Mirrors {
        archive: archive.trim_end_matches('/').to_string(),
        security: security.map(|s| s.trim_end_matches('/').to_string()),
        keyring,
        allow_expired: false,
    })
}

/// Parses deb822 stanzas; keeps those with `Types: deb` that are not `Enabled: no`.
pub fn parse_deb822(text: &str) -> Vec<SourceEntry> {
    let mut out = Vec::new();
    for stanza in text.split("\n\n") {
        let mut types = Vec::new();
        let mut uris = Vec::new();
        let mut suites = Vec::new();
        let mut components = Vec::new();
        let mut enabled = true;
        for line in stanza.lines() {
            if line.starts_with('#') {
                continue;
            }
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            let words = || value.split_whitespace().map(str::to_string);
            match key.trim().to_ascii_lowercase().as_str() {
                "types" => types.extend(words()),
                "uris" => uris.extend(words()),
                "suites" => suites.extend(words()),
                "components" => components.extend(words()),
                "enabled" => enabled = value.trim() != "no",
                _ => {}
            }
        }
        if enabled && types.iter().any(|t| t == "deb") && !uris.is_empty() {
            out.push(SourceEntry {
                uris,
                suites,
                components,
            });
        }
    }
    out
}

/// Parses one-line `deb [options] uri suite components…` entries.
pub fn parse_one_line(text: &str) -> Vec<SourceEntry> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        let Some(rest) = line.strip_prefix("deb ") else {
            continue;
        };
        let rest = rest.trim_start();
        let rest = match rest.strip_prefix('[') {
            Some(r) => r.split_once(']').map(|(_, r)| r).unwrap_or(""),
            None => rest,
        };
        let mut words = rest.split_whitespace();
        if let (Some(uri), Some(suite)) = (words.next(), words.next()) {
            out.push(SourceEntry {
                uris: vec![uri.to_string()],
                suites: vec![suite.to_string()],
                components: words.map(str::to_string).collect(),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEB822: &str = "Types: deb\n# a comment\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\nTypes: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\nComponents: main\n\nTypes: deb-src\nURIs: http://other.example/debian\nSuites: bookworm\n";

    #[test]
    fn deb822_gives_archive_and_security() {
        let entries = parse_deb822(DEB822);
        assert_eq!(entries.len(), 2);
        let m = pick(&entries, None).expect("mirrors");
        assert_eq!(m.archive, "http://mirror.example/debian");
        assert_eq!(
            m.security.as_deref(),
            Some("http://mirror.example/debian-security")
        );
    }

    #[test]
    fn one_line_format_with_options_and_third_party_repos() {
        let text = "deb [arch=amd64] https://download.example.com/linux/debian bookworm stable\n\
                    deb [signed-by=/k.gpg] http://m.example/debian/ bookworm main\n\
                    deb http://m.example/debian-security bookworm-security main\n";
        let m = pick(&parse_one_line(text), Some("/k".into())).expect("mirrors");
        // The third-party repository comes first and its path ends in /debian, but it has no
        // `main` component.
        assert_eq!(m.archive, "http://m.example/debian");
        assert_eq!(
            m.security.as_deref(),
            Some("http://m.example/debian-security")
        );
    }

    #[test]
    fn deb_lines_cover_updates_and_security() {
        let m = Mirrors {
            archive: "http://m/debian".into(),
            security: Some("http://m/debian-security".into()),
            keyring: Some("/k.gpg".into()),
            allow_expired: false,
        };
        assert_eq!(
            m.deb_lines("trixie"),
            vec![
                "deb [signed-by=/k.gpg] http://m/debian trixie main".to_string(),
                "deb [signed-by=/k.gpg] http://m/debian trixie-updates main".to_string(),
                "deb [signed-by=/k.gpg] http://m/debian-security trixie-security main".to_string(),
            ]
        );
        let snapshot = Mirrors {
            allow_expired: true,
            security: None,
            ..m.clone()
        };
        assert_eq!(
            snapshot.deb_lines("trixie")[0],
            "deb [signed-by=/k.gpg check-valid-until=no] http://m/debian trixie main"
        );
        let local = Mirrors::given("file:/srv/lock-debs/", None);
        assert_eq!(
            local.deb_lines("bookworm")[1],
            "deb [trusted=yes] file:/srv/lock-debs bookworm-updates main"
        );
    }
}
