//! Registry settings for the guest: the protocol's [`RegistryConfig`] built from the user's
//! [`RegistryOptions`] (which registries are insecure is decided here, not in the guest), the
//! `--config` auth file checked as upstream checks it, credentials from `--registry-user` /
//! `--registry-pass` as an auth file in memory, and the qualification of short image names with
//! the default registry.
//!
//! Credentials only ever travel as the SetAuth data stream: never on a kernel or QEMU command
//! line, never in a log or an error message.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use vcontainer_protocol::{RegistryConfig, MAX_AUTH_FILE_LEN, MAX_CA_CERT_LEN};

/// Smallest auth file that can be JSON (`{}`).
const MIN_AUTH_FILE_LEN: u64 = 2;

/// Registry settings as the user gave them (files not read yet).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegistryOptions {
    /// Registry for unqualified image names (`--registry`); `None` with `--no-registry`.
    pub default: Option<String>,
    /// `--insecure-registry`, repeatable.
    pub insecure: Vec<String>,
    /// `--secure-registry`: verify TLS for the default registry.
    pub secure: bool,
    /// `--ca-cert FILE`: CA for the default registry's TLS certificate.
    pub ca_cert: Option<PathBuf>,
    /// `--config FILE`: registry auth file (docker `config.json` / podman `auth.json`).
    pub auth_file: Option<PathBuf>,
    /// `--registry-user` / `--registry-pass` for the default registry (`--config` wins). Sent
    /// to the guest as an auth file, never on a command line.
    pub credentials: Option<Credentials>,
}

impl RegistryOptions {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("--config must not be a symlink: {0}")]
    AuthSymlink(PathBuf),
    #[error("--config file not found: {0}")]
    AuthMissing(PathBuf),
    #[error("--config must be a regular file: {0}")]
    AuthNotRegular(PathBuf),
    #[error("--config file is not readable: {path}: {source}")]
    AuthUnreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("--config file is too large ({size} bytes, max 1 MiB): {path}")]
    AuthTooLarge { path: PathBuf, size: u64 },
    #[error("--config file is empty or too small to be valid JSON: {0}")]
    AuthTooSmall(PathBuf),
    #[error("--config file has unsafe permissions ({mode:04o}); expected 0600 or 0400.\nFix with: chmod 600 \"{path}\"")]
    AuthPermissions { path: PathBuf, mode: u32 },
    #[error("--config file is not a JSON object (a docker config.json or podman auth.json): {path}: {reason}")]
    AuthNotJson { path: PathBuf, reason: String },
    #[error(
        "--registry-user/--registry-pass need a registry to log in to: give --registry HOST[:PORT]"
    )]
    CredentialsWithoutRegistry,
    #[error("--registry-user must not be empty or contain ':'")]
    BadUser,
    #[error("--ca-cert needs --registry: the CA is installed for the default registry")]
    CaWithoutRegistry,
    #[error("--ca-cert {path}: {reason}")]
    Ca { path: PathBuf, reason: String },
    #[error("invalid registry {0:?}: expected HOST[:PORT][/NAMESPACE] without spaces or quotes")]
    BadRegistry(String),
}

/// What the guest gets: the boot-time registry configuration and, if any, the auth file to send
/// with `Request::SetAuth` after the agent is ready.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct PreparedRegistry {
    pub config: RegistryConfig,
    pub auth: Option<Vec<u8>>,
    /// Not fatal, for the user to see (e.g. an auth file owned by someone else).
    pub warnings: Vec<String>,
}

impl std::fmt::Debug for PreparedRegistry {
    /// Never prints the auth file.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreparedRegistry")
            .field("config", &self.config)
            .field(
                "auth",
                &self.auth.as_ref().map(|a| format!("<{} bytes>", a.len())),
            )
            .field("warnings", &self.warnings)
            .finish()
    }
}

/// Builds the guest's registry settings and reads the CA and auth files. Call it before booting
/// so that a bad file fails fast.
pub fn prepare(opts: &RegistryOptions) -> Result<PreparedRegistry, RegistryError> {
    let default = opts.default.as_deref().map(normalize).transpose()?;
    let mut insecure: Vec<String> = Vec::new();
    for r in &opts.insecure {
        let host = registry_host(&normalize(r)?).to_string();
        if !insecure.contains(&host) {
            insecure.push(host);
        }
    }
    if let Some(d) = &default {
        let host = registry_host(d);
        if !opts.secure && is_private_host(host) && !insecure.iter().any(|h| h == host) {
            insecure.push(host.to_string());
        }
    }
    let ca_cert = match &opts.ca_cert {
        None => None,
        Some(_) if default.is_none() => return Err(RegistryError::CaWithoutRegistry),
        Some(path) => Some(read_ca(path)?),
    };
    let mut warnings = Vec::new();
    let auth = match (&opts.auth_file, &opts.credentials) {
        (Some(path), creds) => {
            let file = read_auth_file(path)?;
            warnings.extend(file.warnings);
            if creds.is_some() {
                warnings
                    .push("--config takes precedence over --registry-user/--registry-pass".into());
            }
            Some(file.bytes)
        }
        (None, Some(creds)) => {
            let registry = default
                .as_deref()
                .ok_or(RegistryError::CredentialsWithoutRegistry)?;
            Some(credentials_auth_file(
                registry_host(registry),
                &creds.user,
                &creds.password,
            )?)
        }
        (None, None) => None,
    };
    Ok(PreparedRegistry {
        config: RegistryConfig {
            default,
            insecure,
            secure: opts.secure,
            ca_cert,
        },
        auth,
        warnings,
    })
}

/// `HOST[:PORT][/NAMESPACE]` without a scheme or trailing slash.
fn normalize(registry: &str) -> Result<String, RegistryError> {
    let r = registry.trim();
    let r = r
        .strip_prefix("https://")
        .or_else(|| r.strip_prefix("http://"))
        .unwrap_or(r)
        .trim_end_matches('/');
    let bad = r.is_empty()
        || r.starts_with('/')
        || r.contains("//")
        || r.chars()
            .any(|c| c.is_whitespace() || c.is_control() || "\"'\\".contains(c));
    if bad {
        return Err(RegistryError::BadRegistry(registry.to_string()));
    }
    Ok(r.to_string())
}

/// `HOST[:PORT]` of `HOST[:PORT][/NAMESPACE]`.
pub fn registry_host(registry: &str) -> &str {
    registry.split('/').next().unwrap_or(registry)
}

/// Upstream's rule for a default registry that is insecure unless `--secure-registry`:
/// localhost, 127/8, 10/8, 192.168/16, 172.16/12.
pub fn is_private_host(host_port: &str) -> bool {
    let host = match host_port.rsplit_once(':') {
        Some((h, port)) if !h.contains(':') && port.chars().all(|c| c.is_ascii_digit()) => h,
        _ => host_port,
    };
    if host == "localhost" {
        return true;
    }
    match host.parse::<std::net::Ipv4Addr>() {
        Ok(ip) => ip.is_loopback() || ip.is_private(),
        Err(_) => false,
    }
}

/// The reference qualified with `default_registry` when it names no registry host, docker's
/// rule: the first path component is a host if there is a `/` after it and it contains `.` or
/// `:`, is `localhost`, or has upper-case letters. `None` when it already names a host (or is
/// empty).
pub fn qualify_image(reference: &str, default_registry: &str) -> Option<String> {
    if reference.is_empty() {
        return None;
    }
    if let Some((first, _)) = reference.split_once('/') {
        let is_host = first.contains(['.', ':'])
            || first == "localhost"
            || first.chars().any(|c| c.is_ascii_uppercase());
        if is_host {
            return None;
        }
    }
    let registry = default_registry.trim_end_matches('/');
    Some(format!("{registry}/{reference}"))
}

/// Registry credentials from `--registry-user` / `--registry-pass`; the password is never
/// printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub user: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// `{"auths":{"<host>":{"auth":"base64(user:pass)"}}}`, what `docker login` writes and podman
/// reads.
pub fn credentials_auth_file(
    registry_host: &str,
    user: &str,
    password: &str,
) -> Result<Vec<u8>, RegistryError> {
    if user.is_empty() || user.contains(':') {
        return Err(RegistryError::BadUser);
    }
    let auth = base64(format!("{user}:{password}").as_bytes());
    let json = serde_json::json!({ "auths": { registry_host: { "auth": auth } } });
    Ok(json.to_string().into_bytes())
}

/// A validated `--config` auth file.
#[derive(Clone, PartialEq, Eq)]
pub struct AuthFile {
    pub bytes: Vec<u8>,
    pub warnings: Vec<String>,
}

impl std::fmt::Debug for AuthFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "AuthFile(<{} bytes>, {:?})",
            self.bytes.len(),
            self.warnings
        )
    }
}

/// Checks the `--config` file in upstream's order and reads it: not a symlink, present, a
/// regular file, readable, at most 1 MiB, at least 2 bytes, mode 0600 or 0400 (no group or other
/// bits), a JSON object. Another owner than the current user is only a warning.
pub fn read_auth_file(path: &Path) -> Result<AuthFile, RegistryError> {
    let p = || path.to_path_buf();
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(RegistryError::AuthMissing(p()))
        }
        Err(source) => return Err(RegistryError::AuthUnreadable { path: p(), source }),
    };
    if meta.file_type().is_symlink() {
        return Err(RegistryError::AuthSymlink(p()));
    }
    if !meta.is_file() {
        return Err(RegistryError::AuthNotRegular(p()));
    }
    let mut file = File::options()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|source| RegistryError::AuthUnreadable { path: p(), source })?;
    if meta.len() > MAX_AUTH_FILE_LEN {
        return Err(RegistryError::AuthTooLarge {
            path: p(),
            size: meta.len(),
        });
    }
    if meta.len() < MIN_AUTH_FILE_LEN {
        return Err(RegistryError::AuthTooSmall(p()));
    }
    let mode = meta.mode() & 0o7777;
    if mode != 0o600 && mode != 0o400 {
        return Err(RegistryError::AuthPermissions { path: p(), mode });
    }
    let mut warnings = Vec::new();
    if meta.uid() != nix::unistd::getuid().as_raw() {
        warnings.push(format!(
            "--config file is not owned by current user: {}",
            path.display()
        ));
    }
    // Read through the descriptor just checked, and no more than the limit even if the file grew.
    let mut bytes = Vec::new();
    (&mut file)
        .take(MAX_AUTH_FILE_LEN + 1)
        .read_to_end(&mut bytes)
        .map_err(|source| RegistryError::AuthUnreadable { path: p(), source })?;
    if bytes.len() as u64 > MAX_AUTH_FILE_LEN {
        return Err(RegistryError::AuthTooLarge {
            path: p(),
            size: bytes.len() as u64,
        });
    }
    match serde_json::from_slice::<serde_json::Value>(&bytes) {
        Ok(v) if v.is_object() => {}
        Ok(_) => {
            return Err(RegistryError::AuthNotJson {
                path: p(),
                reason: "not an object".into(),
            })
        }
        // serde_json's message names a line and column, never the content.
        Err(e) => {
            return Err(RegistryError::AuthNotJson {
                path: p(),
                reason: e.to_string(),
            })
        }
    }
    Ok(AuthFile { bytes, warnings })
}

/// Reads a PEM CA file of at most [`MAX_CA_CERT_LEN`] bytes.
fn read_ca(path: &Path) -> Result<Vec<u8>, RegistryError> {
    let err = |reason: String| RegistryError::Ca {
        path: path.to_path_buf(),
        reason,
    };
    let file = File::open(path).map_err(|e| err(e.to_string()))?;
    let mut bytes = Vec::new();
    file.take(MAX_CA_CERT_LEN as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| err(e.to_string()))?;
    if bytes.len() > MAX_CA_CERT_LEN {
        return Err(err(format!(
            "larger than {} KiB; give only the registry's CA certificate",
            MAX_CA_CERT_LEN / 1024
        )));
    }
    if !bytes
        .windows(b"-----BEGIN CERTIFICATE-----".len())
        .any(|w| w == b"-----BEGIN CERTIFICATE-----")
    {
        return Err(err(
            "not a PEM certificate (no BEGIN CERTIFICATE line)".into()
        ));
    }
    Ok(bytes)
}

/// Standard base64 with padding (RFC 4648), as docker's `auth` field uses.
fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn opts() -> RegistryOptions {
        RegistryOptions::default()
    }

    fn write_mode(dir: &Path, name: &str, content: &[u8], mode: u32) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, content).expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
        path
    }

    #[test]
    fn base64_matches_rfc4648() {
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("user:pass", "dXNlcjpwYXNz"),
        ] {
            assert_eq!(base64(i.as_bytes()), o);
        }
    }

    #[test]
    fn qualify_follows_dockers_host_rule() {
        let q = |r| qualify_image(r, "10.0.2.2:5000");
        assert_eq!(q("busybox"), Some("10.0.2.2:5000/busybox".into()));
        assert_eq!(q("busybox:1.36"), Some("10.0.2.2:5000/busybox:1.36".into()));
        assert_eq!(
            q("library/busybox"),
            Some("10.0.2.2:5000/library/busybox".into())
        );
        assert_eq!(
            q("busybox@sha256:abc"),
            Some("10.0.2.2:5000/busybox@sha256:abc".into())
        );
        assert_eq!(q("docker.io/library/busybox"), None);
        assert_eq!(q("localhost/x"), None);
        assert_eq!(q("localhost:5000/x"), None);
        assert_eq!(q("Registry/x"), None);
        assert_eq!(q(""), None);
        assert_eq!(
            qualify_image("yocto/app:1", "reg.lan/ns/"),
            Some("reg.lan/ns/yocto/app:1".into())
        );
    }

    #[test]
    fn private_hosts() {
        for h in [
            "localhost",
            "localhost:5000",
            "127.0.0.1:5000",
            "10.0.2.2:5000",
            "192.168.1.1",
            "172.16.0.1",
            "172.31.255.255:1",
        ] {
            assert!(is_private_host(h), "{h}");
        }
        for h in [
            "172.32.0.1",
            "8.8.8.8:5000",
            "reg.example.com",
            "11.0.0.1",
            "[::1]:5000",
        ] {
            assert!(!is_private_host(h), "{h}");
        }
    }

    #[test]
    fn private_default_registry_is_insecure_unless_secure() {
        let mut o = opts();
        o.default = Some("http://10.0.2.2:5000/yocto/".into());
        o.insecure = vec!["r.lan:80".into(), "https://r.lan:80".into()];
        let p = prepare(&o).expect("prepare");
        assert_eq!(p.config.default.as_deref(), Some("10.0.2.2:5000/yocto"));
        assert_eq!(p.config.insecure, ["r.lan:80", "10.0.2.2:5000"]);
        assert!(p.auth.is_none());
        o.secure = true;
        assert_eq!(prepare(&o).expect("prepare").config.insecure, ["r.lan:80"]);
        o.default = Some("reg.example.com".into());
        o.secure = false;
        assert_eq!(prepare(&o).expect("prepare").config.insecure, ["r.lan:80"]);
        o.insecure = vec!["a b".into()];
        assert!(matches!(prepare(&o), Err(RegistryError::BadRegistry(_))));
        assert_eq!(
            prepare(&opts()).expect("empty"),
            PreparedRegistry::default()
        );
    }

    #[test]
    fn credentials_become_an_auth_file_for_the_default_registry() {
        let mut o = opts();
        o.credentials = Some(Credentials {
            user: "me".into(),
            password: "s3cret\"".into(),
        });
        assert!(matches!(
            prepare(&o),
            Err(RegistryError::CredentialsWithoutRegistry)
        ));
        o.default = Some("10.0.2.2:5000/ns".into());
        let p = prepare(&o).expect("prepare");
        let json: serde_json::Value =
            serde_json::from_slice(p.auth.as_deref().expect("auth")).expect("json");
        assert_eq!(
            json["auths"]["10.0.2.2:5000"]["auth"],
            base64(b"me:s3cret\"").as_str()
        );
        assert!(!format!("{p:?} {o:?}").contains("s3cret"));
        assert!(credentials_auth_file("r", "a:b", "x").is_err());
    }

    #[test]
    fn auth_file_checks_in_upstream_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        let good = write_mode(d, "good.json", b"{\"auths\":{}}", 0o600);
        let f = read_auth_file(&good).expect("good");
        assert_eq!(f.bytes, b"{\"auths\":{}}");
        assert!(f.warnings.is_empty());
        read_auth_file(&write_mode(d, "ro.json", b"{}", 0o400)).expect("0400");

        std::os::unix::fs::symlink(&good, d.join("link.json")).expect("link");
        let err = |p: &Path| read_auth_file(p).expect_err("refused").to_string();
        assert!(err(&d.join("link.json")).contains("must not be a symlink"));
        assert!(err(&d.join("missing.json")).contains("not found"));
        assert!(err(d).contains("must be a regular file"));
        let big = write_mode(d, "big.json", &vec![b' '; 1024 * 1024 + 1], 0o600);
        assert!(err(&big).contains("too large"));
        let small = write_mode(d, "small.json", b"{", 0o600);
        assert!(err(&small).contains("empty or too small"));
        for mode in [0o644, 0o640, 0o604, 0o200, 0o700] {
            let loose = write_mode(d, "loose.json", b"{}", mode);
            let e = err(&loose);
            assert!(
                e.contains("unsafe permissions") && e.contains("chmod 600"),
                "{mode:o}: {e}"
            );
        }
        let not_json = write_mode(d, "bad.json", b"user:secret", 0o600);
        let e = err(&not_json);
        assert!(
            e.contains("not a JSON object") && !e.contains("secret"),
            "{e}"
        );
        assert!(err(&write_mode(d, "arr.json", b"[]", 0o600)).contains("not an object"));
    }

    #[test]
    fn config_wins_over_credentials_with_a_warning() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = write_mode(dir.path(), "c.json", b"{\"auths\":{}}", 0o600);
        let mut o = opts();
        o.default = Some("reg.lan".into());
        o.auth_file = Some(file);
        o.credentials = Some(Credentials {
            user: "u".into(),
            password: "p".into(),
        });
        let p = prepare(&o).expect("prepare");
        assert_eq!(p.auth.as_deref(), Some(&b"{\"auths\":{}}"[..]));
        assert!(p.warnings.iter().any(|w| w.contains("takes precedence")));
    }

    #[test]
    fn ca_is_read_with_a_cap_and_needs_a_default_registry() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pem = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
        let ca = write_mode(dir.path(), "ca.crt", pem, 0o644);
        let mut o = opts();
        o.ca_cert = Some(ca.clone());
        assert!(matches!(prepare(&o), Err(RegistryError::CaWithoutRegistry)));
        o.default = Some("reg.lan:5000".into());
        o.secure = true;
        assert_eq!(
            prepare(&o).expect("ca").config.ca_cert.as_deref(),
            Some(&pem[..])
        );
        o.ca_cert = Some(write_mode(dir.path(), "junk", b"hello", 0o644));
        assert!(prepare(&o)
            .expect_err("junk")
            .to_string()
            .contains("not a PEM"));
        let mut big = pem.to_vec();
        big.resize(MAX_CA_CERT_LEN + 1, b'\n');
        o.ca_cert = Some(write_mode(dir.path(), "big", &big, 0o644));
        assert!(prepare(&o)
            .expect_err("big")
            .to_string()
            .contains("larger than"));
        o.ca_cert = Some(dir.path().join("none"));
        assert!(prepare(&o)
            .expect_err("missing")
            .to_string()
            .contains("--ca-cert"));
    }
}
