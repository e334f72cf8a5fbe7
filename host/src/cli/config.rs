//! The user's configuration file, `~/.config/vdkr/config` (resp. `vpdmn`): `key=value` lines, as
//! upstream wrote them. Shared by every arch and instance of one tool. Also the legacy
//! `~/.config/vdkr/arch` file (one word), still read for the arch.
//!
//! Unlike upstream, keys are matched exactly (upstream's `grep -w` accepted `state` for
//! `state-dir`), values are validated on `set`, and the file is replaced atomically.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// One known key: its name, default and what a valid value looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key {
    pub name: &'static str,
    pub default: &'static str,
    pub help: &'static str,
    kind: Kind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Arch,
    Bool,
    Seconds,
    Text,
}

/// The keys, in the order `vconfig` lists them.
pub const KEYS: &[Key] = &[
    Key {
        name: "arch",
        default: "",
        help: "target architecture when neither --arch, the program name nor $VDKR_ARCH says",
        kind: Kind::Arch,
    },
    Key {
        name: "idle-timeout",
        default: "1800",
        help: "seconds after which an idle memory-resident VM stops itself (0: never)",
        kind: Kind::Seconds,
    },
    Key {
        name: "auto-daemon",
        // Upstream's default: scripts written for vdkr/vpdmn expect the VM to be running after
        // their first command. Builds turn it off ($VDKR_AUTO_DAEMON=false or --no-daemon).
        default: "true",
        help: "start a memory-resident VM on the first command instead of booting per command (environment: $VDKR_AUTO_DAEMON / $VPDMN_AUTO_DAEMON)",
        kind: Kind::Bool,
    },
    Key {
        name: "registry",
        default: "",
        help: "default registry for unqualified image names",
        kind: Kind::Text,
    },
    Key {
        name: "timeout",
        default: "0",
        help: "seconds a one-shot command may take before its VM is stopped (0: no limit)",
        kind: Kind::Seconds,
    },
    Key {
        name: "state-dir",
        default: "",
        help: "base directory of the state directories (default ~/.vdkr resp. ~/.vpdmn)",
        kind: Kind::Text,
    },
    Key {
        name: "verbose",
        default: "false",
        help: "show what happens (boot, transfers, timings)",
        kind: Kind::Bool,
    },
];

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("Unknown config key: {key}\nValid keys: {}", key_names())]
    UnknownKey { key: String },
    #[error("invalid value {value:?} for {key}: expected {expected}")]
    InvalidValue {
        key: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

fn key_names() -> String {
    KEYS.iter().map(|k| k.name).collect::<Vec<_>>().join(", ")
}

/// Looks a key up by its exact name.
pub fn key(name: &str) -> Result<&'static Key, ConfigError> {
    KEYS.iter()
        .find(|k| k.name == name)
        .ok_or_else(|| ConfigError::UnknownKey {
            key: name.to_string(),
        })
}

impl Key {
    /// Checks (and normalises) a value for this key.
    pub fn validate(&self, value: &str) -> Result<String, ConfigError> {
        let bad = |expected| ConfigError::InvalidValue {
            key: self.name,
            value: value.to_string(),
            expected,
        };
        let v = value.trim();
        match self.kind {
            Kind::Arch => v
                .parse::<vcontainer_initramfs::Arch>()
                .map(|a| a.name().to_string())
                .map_err(|_| bad("aarch64 or x86_64")),
            Kind::Bool => match v {
                "true" | "false" => Ok(v.to_string()),
                _ => Err(bad("true or false")),
            },
            Kind::Seconds => v
                .parse::<u64>()
                .map(|n| n.to_string())
                .map_err(|_| bad("a whole number of seconds")),
            Kind::Text => {
                if v.contains('\n') {
                    Err(bad("one line"))
                } else {
                    Ok(v.to_string())
                }
            }
        }
    }
}

/// The config directory's contents.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    dir: PathBuf,
    values: BTreeMap<String, String>,
    /// Lines we do not understand, kept as they are on rewrite.
    other_lines: Vec<String>,
    legacy_arch: Option<String>,
}

impl Config {
    /// Reads `<dir>/config` and `<dir>/arch`; missing files are an empty config.
    pub fn load(dir: &Path) -> Result<Config, ConfigError> {
        let mut config = Config {
            dir: dir.to_path_buf(),
            ..Default::default()
        };
        match std::fs::read_to_string(config.file()) {
            Ok(text) => config.parse(&text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(ConfigError::Io {
                    action: "read",
                    path: config.file(),
                    source,
                })
            }
        }
        config.legacy_arch = std::fs::read_to_string(dir.join("arch"))
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty());
        Ok(config)
    }

    fn parse(&mut self, text: &str) {
        for line in text.lines() {
            let trimmed = line.trim();
            match trimmed.split_once('=') {
                Some((k, v)) if !trimmed.starts_with('#') && key(k.trim()).is_ok() => {
                    // Upstream stripped all whitespace from values; trimming is enough for every
                    // value it could have written.
                    self.values
                        .insert(k.trim().to_string(), v.trim().to_string());
                }
                _ => self.other_lines.push(line.to_string()),
            }
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn file(&self) -> PathBuf {
        self.dir.join("config")
    }

    /// The value set in the file, if any (empty values count as unset).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// The arch from `arch=` or, failing that, the legacy `arch` file.
    pub fn arch(&self) -> Option<&str> {
        self.get("arch").or(self.legacy_arch.as_deref())
    }

    /// A boolean key's value (its default when unset or unreadable).
    pub fn flag(&self, name: &str) -> bool {
        self.get(name)
            .or_else(|| key(name).ok().map(|k| k.default))
            .is_some_and(|v| v == "true")
    }

    /// A seconds key's value (its default when unset or unreadable).
    pub fn seconds(&self, name: &str) -> u64 {
        self.get(name)
            .and_then(|v| v.parse().ok())
            .or_else(|| key(name).ok().and_then(|k| k.default.parse().ok()))
            .unwrap_or(0)
    }

    /// Sets a validated value and writes the file.
    pub fn set(&mut self, name: &str, value: &str) -> Result<String, ConfigError> {
        let key = key(name)?;
        let value = key.validate(value)?;
        self.values.insert(key.name.to_string(), value.clone());
        self.save()?;
        Ok(value)
    }

    /// Removes a key (back to its default) and writes the file.
    pub fn reset(&mut self, name: &str) -> Result<&'static Key, ConfigError> {
        let key = key(name)?;
        self.values.remove(key.name);
        self.save()?;
        Ok(key)
    }

    /// The file's text: unknown lines first, as they were, then our keys in [`KEYS`] order.
    fn render(&self) -> String {
        let mut out = String::new();
        for line in &self.other_lines {
            out.push_str(line);
            out.push('\n');
        }
        for k in KEYS {
            if let Some(v) = self.values.get(k.name) {
                out.push_str(&format!("{}={v}\n", k.name));
            }
        }
        out
    }

    /// Writes the file atomically (temporary file in the same directory, then rename), so a
    /// concurrent reader sees the old or the new file, never half of one.
    fn save(&self) -> Result<(), ConfigError> {
        let io = |action, source| ConfigError::Io {
            action,
            path: self.file(),
            source,
        };
        std::fs::create_dir_all(&self.dir).map_err(|e| io("create the directory of", e))?;
        let mut tmp = tempfile::NamedTempFile::new_in(&self.dir).map_err(|e| io("write", e))?;
        tmp.write_all(self.render().as_bytes())
            .map_err(|e| io("write", e))?;
        tmp.persist(self.file()).map_err(|e| io("write", e.error))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_upstream_files_and_keeps_unknown_lines() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("config"),
            "# mine\narch=aarch64\nidle-timeout = 600\nfoo=bar\nregistry=\n",
        )
        .expect("write");
        let mut c = Config::load(dir.path()).expect("load");
        assert_eq!(c.arch(), Some("aarch64"));
        assert_eq!(c.seconds("idle-timeout"), 600);
        assert_eq!(c.get("registry"), None);
        assert!(c.flag("auto-daemon"), "upstream's default");
        c.set("auto-daemon", "false").expect("set");
        assert!(!c.flag("auto-daemon"));
        c.set("auto-daemon", "true").expect("set");
        let text = std::fs::read_to_string(dir.path().join("config")).expect("read");
        assert!(text.starts_with("# mine\nfoo=bar\n"), "{text}");
        assert!(text.contains("auto-daemon=true\n"));
        assert!(Config::load(dir.path()).expect("load").flag("auto-daemon"));
    }

    #[test]
    fn legacy_arch_file_is_the_fallback() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("arch"), "x86_64\n").expect("write");
        assert_eq!(
            Config::load(dir.path()).expect("load").arch(),
            Some("x86_64")
        );
        std::fs::write(dir.path().join("config"), "arch=aarch64\n").expect("write");
        assert_eq!(
            Config::load(dir.path()).expect("load").arch(),
            Some("aarch64")
        );
    }

    #[test]
    fn keys_are_exact_and_values_validated() {
        assert!(key("state").is_err(), "upstream accepted partial words");
        assert!(key("daemon").is_err());
        let e = key("colour").expect_err("unknown").to_string();
        assert!(e.contains("Unknown config key: colour") && e.contains("idle-timeout"));
        assert_eq!(
            key("arch").and_then(|k| k.validate("arm64")).ok(),
            Some("aarch64".into())
        );
        assert!(key("arch").and_then(|k| k.validate("mips")).is_err());
        assert!(key("verbose").and_then(|k| k.validate("yes")).is_err());
        assert!(key("idle-timeout").and_then(|k| k.validate("-1")).is_err());
    }

    #[test]
    fn reset_goes_back_to_the_default() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut c = Config::load(dir.path()).expect("load");
        c.set("idle-timeout", "60").expect("set");
        assert_eq!(c.seconds("idle-timeout"), 60);
        c.reset("idle-timeout").expect("reset");
        assert_eq!(
            Config::load(dir.path())
                .expect("load")
                .seconds("idle-timeout"),
            1800
        );
    }
}
