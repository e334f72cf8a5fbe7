//! Registry settings from the host's `BootConfig`, in the form each engine reads: dockerd flags
//! and `certs.d`, podman's `registries.conf.d` drop-in and `certs.d`. The host has already
//! decided which registries are insecure (the default one too when it is a private address);
//! nothing here guesses.

use std::fs;
use std::io;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use vcontainer_protocol::RegistryConfig;

/// Name of podman's drop-in in `registries.conf.d` (and of nothing else).
pub const PODMAN_DROPIN: &str = "50-vcontainer.conf";

/// `host[:port]` of a registry given as `host[:port][/namespace]` (a scheme is dropped too).
pub fn registry_host(registry: &str) -> &str {
    let r = registry
        .strip_prefix("https://")
        .or_else(|| registry.strip_prefix("http://"))
        .unwrap_or(registry);
    r.split('/').next().unwrap_or(r)
}

/// A host name is a single path component; anything else must not reach a path or a TOML string.
fn safe_host(host: &str) -> bool {
    !host.is_empty()
        && host != "."
        && host != ".."
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-_:[]".contains(c))
}

/// dockerd's `--insecure-registry` flags.
pub fn docker_flags(cfg: &RegistryConfig) -> Vec<String> {
    cfg.insecure
        .iter()
        .map(|r| registry_host(r))
        .filter(|h| safe_host(h))
        .map(|h| format!("--insecure-registry={h}"))
        .collect()
}

/// podman's drop-in: the default registry for short names, `insecure = true` for the insecure
/// ones. `None` when there is nothing to say.
pub fn podman_registries_conf(cfg: &RegistryConfig) -> Option<String> {
    let mut out = String::new();
    if let Some(default) = cfg.default.as_deref().map(registry_host) {
        if safe_host(default) {
            out.push_str(&format!(
                "unqualified-search-registries = [\"{default}\"]\n"
            ));
        }
    }
    let mut seen = Vec::new();
    for host in cfg.insecure.iter().map(|r| registry_host(r)) {
        if !safe_host(host) || seen.contains(&host) {
            continue;
        }
        seen.push(host);
        out.push_str(&format!(
            "\n[[registry]]\nlocation = \"{host}\"\ninsecure = true\n"
        ));
    }
    (!out.is_empty()).then_some(out)
}

/// Writes the default registry's CA as `certs_d/<host>/ca.crt` (docker and containers/image both
/// read that layout). Returns the file written, if any.
pub fn install_ca(certs_d: &Path, cfg: &RegistryConfig) -> io::Result<Option<PathBuf>> {
    let (Some(ca), Some(default)) = (&cfg.ca_cert, &cfg.default) else {
        return Ok(None);
    };
    let host = registry_host(default);
    if !safe_host(host) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("registry host {host:?} cannot name a directory"),
        ));
    }
    let dir = certs_d.join(host);
    fs::create_dir_all(&dir)?;
    let path = dir.join("ca.crt");
    fs::write(&path, ca)?;
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644))?;
    Ok(Some(path))
}

/// Writes `bytes` to `path` atomically (temporary file, fsync, rename) with mode 0600 in a
/// directory made 0700: registry credentials.
pub fn write_private_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no parent directory"))?;
    fs::create_dir_all(dir)?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let _ = fs::remove_file(&tmp);
    let result = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(default: Option<&str>, insecure: &[&str]) -> RegistryConfig {
        RegistryConfig {
            default: default.map(str::to_string),
            insecure: insecure.iter().map(|s| s.to_string()).collect(),
            secure: false,
            ca_cert: None,
        }
    }

    #[test]
    fn hosts() {
        assert_eq!(registry_host("10.0.2.2:5000/yocto/x"), "10.0.2.2:5000");
        assert_eq!(registry_host("https://reg.example:443"), "reg.example:443");
        assert_eq!(registry_host("localhost"), "localhost");
        assert!(!safe_host("../etc"));
        assert!(!safe_host("a\"b"));
        assert!(safe_host("[::1]:5000"));
    }

    #[test]
    fn docker_insecure_flags() {
        let c = cfg(
            Some("10.0.2.2:5000/ns"),
            &["10.0.2.2:5000", "http://r.lan:80", "bad\"x"],
        );
        assert_eq!(
            docker_flags(&c),
            [
                "--insecure-registry=10.0.2.2:5000",
                "--insecure-registry=r.lan:80"
            ]
        );
        assert!(docker_flags(&RegistryConfig::default()).is_empty());
    }

    #[test]
    fn podman_dropin() {
        assert_eq!(podman_registries_conf(&RegistryConfig::default()), None);
        let c = cfg(
            Some("10.0.2.2:5000/ns"),
            &["10.0.2.2:5000", "10.0.2.2:5000/x", "r.lan"],
        );
        assert_eq!(
            podman_registries_conf(&c).expect("conf"),
            "unqualified-search-registries = [\"10.0.2.2:5000\"]\n\
             \n[[registry]]\nlocation = \"10.0.2.2:5000\"\ninsecure = true\n\
             \n[[registry]]\nlocation = \"r.lan\"\ninsecure = true\n"
        );
        let only_insecure = podman_registries_conf(&cfg(None, &["a:1"])).expect("conf");
        assert!(!only_insecure.contains("unqualified"));
    }

    #[test]
    fn ca_goes_to_the_default_registry_host() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut c = cfg(Some("reg.example:5000/ns"), &[]);
        assert_eq!(install_ca(dir.path(), &c).expect("none"), None);
        c.ca_cert = Some(b"PEM".to_vec());
        let path = install_ca(dir.path(), &c).expect("ca").expect("written");
        assert_eq!(path, dir.path().join("reg.example:5000/ca.crt"));
        assert_eq!(fs::read(&path).expect("read"), b"PEM");
        c.default = Some("../x".into());
        assert!(install_ca(dir.path(), &c).is_err());
    }

    #[test]
    fn private_file_is_0600_in_a_0700_dir_and_replaced_atomically() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("root/.docker/config.json");
        write_private_file(&path, b"{}").expect("write");
        write_private_file(&path, b"{\"auths\":{}}").expect("rewrite");
        assert_eq!(fs::read(&path).expect("read"), b"{\"auths\":{}}");
        let mode = |p: &Path| fs::metadata(p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().expect("dir")), 0o700);
        assert_eq!(
            fs::read_dir(path.parent().expect("dir"))
                .expect("ls")
                .count(),
            1
        );
    }
}
