//! The image config: what runs (entrypoint, cmd, env, user, workdir, ports, stop signal), labels
//! (given and automatic), the platform, and the layer history. Upstream: the `umoci config` calls
//! of image-oci-umoci.inc (§5.6), in the same order of precedence.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;

use oci_spec::image::{
    Arch, Config, ConfigBuilder, History, HistoryBuilder, ImageConfiguration, Os,
};

use super::OciError;

pub const LABEL_REVISION: &str = "org.opencontainers.image.revision";
pub const LABEL_REF_NAME: &str = "org.opencontainers.image.ref.name";
pub const LABEL_CREATED: &str = "org.opencontainers.image.created";

/// An automatic label: computed, given, or left out (upstream's empty / value / `none`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum AutoLabel {
    #[default]
    Auto,
    Value(String),
    Off,
}

impl AutoLabel {
    /// `none` turns the label off, an empty value means automatic.
    pub fn parse(s: &str) -> AutoLabel {
        match s {
            "" => AutoLabel::Auto,
            "none" => AutoLabel::Off,
            v => AutoLabel::Value(v.to_string()),
        }
    }
}

/// What the user sets about the image (upstream's OCI_IMAGE_* variables).
#[derive(Debug, Clone, Default)]
pub struct ImageSettings {
    pub entrypoint: Option<Vec<String>>,
    /// Default `/bin/sh` for an image without a base (upstream's OCI_IMAGE_CMD default).
    pub cmd: Option<Vec<String>>,
    pub env: Vec<String>,
    pub labels: Vec<(String, String)>,
    pub ports: Vec<String>,
    pub user: Option<String>,
    pub workdir: Option<String>,
    pub stop_signal: Option<String>,
    pub author: Option<String>,
    /// False: no automatic labels at all (OCI_IMAGE_AUTO_LABELS = "0").
    pub auto_labels: bool,
    pub revision: AutoLabel,
    pub branch: AutoLabel,
    pub created_label: AutoLabel,
    /// Where `git` looks for the revision and branch (upstream: TOPDIR).
    pub git_dir: Option<PathBuf>,
}

/// Checks a port as Docker writes it: `80`, `80/tcp`, `53/udp`.
pub fn parse_port(p: &str) -> Result<String, OciError> {
    let (num, proto) = p.split_once('/').unwrap_or((p, "tcp"));
    let ok = num.parse::<u16>().is_ok_and(|n| n > 0) && matches!(proto, "tcp" | "udp" | "sctp");
    if !ok {
        return Err(OciError::Invalid(format!(
            "port '{p}': expected PORT[/tcp|udp|sctp] with PORT in 1-65535"
        )));
    }
    Ok(format!("{num}/{proto}"))
}

/// `KEY=VALUE` (labels and env).
pub fn parse_key_value(kind: &str, s: &str) -> Result<(String, String), OciError> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(OciError::Invalid(format!(
            "{kind} '{s}': expected KEY=VALUE"
        ))),
    }
}

/// RFC 3339 UTC time for seconds since the epoch (no chrono needed for this one format).
pub fn rfc3339(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn git(dir: &Option<PathBuf>, args: &[&str]) -> Option<String> {
    let mut cmd = Command::new("git");
    if let Some(d) = dir {
        cmd.arg("-C").arg(d);
    }
    let out = cmd.args(args).output().ok()?;
    let s = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out.status.success() && !s.is_empty() && s != "HEAD").then_some(s)
}

/// The labels the image gets: the base's, then automatic ones, then the given ones.
fn labels(
    s: &ImageSettings,
    base: Option<&HashMap<String, String>>,
    created: &str,
) -> HashMap<String, String> {
    let mut out = base.cloned().unwrap_or_default();
    if s.auto_labels {
        let auto = [
            (
                LABEL_REVISION,
                &s.revision,
                &["rev-parse", "--short", "HEAD"][..],
            ),
            (
                LABEL_REF_NAME,
                &s.branch,
                &["rev-parse", "--abbrev-ref", "HEAD"][..],
            ),
        ];
        for (label, setting, args) in auto {
            let v = match setting {
                AutoLabel::Auto => git(&s.git_dir, args),
                AutoLabel::Value(v) => Some(v.clone()),
                AutoLabel::Off => None,
            };
            if let Some(v) = v {
                out.insert(label.to_string(), v);
            }
        }
        match &s.created_label {
            AutoLabel::Auto => {
                out.insert(LABEL_CREATED.to_string(), created.to_string());
            }
            AutoLabel::Value(v) => {
                out.insert(LABEL_CREATED.to_string(), v.clone());
            }
            AutoLabel::Off => {}
        }
    }
    for (k, v) in &s.labels {
        out.insert(k.clone(), v.clone());
    }
    out
}

/// The runtime config on top of the base's (if any).
pub fn runtime_config(
    s: &ImageSettings,
    base: Option<&Config>,
    created: &str,
) -> Result<Config, OciError> {
    let b = base.cloned().unwrap_or_default();
    let mut env: Vec<String> = b.env().clone().unwrap_or_default();
    for e in &s.env {
        let (k, _) = parse_key_value("env", e)?;
        env.retain(|old| old.split_once('=').map_or(old.as_str(), |(ok, _)| ok) != k);
        env.push(e.clone());
    }
    let mut ports: Vec<String> = b.exposed_ports().clone().unwrap_or_default();
    for p in &s.ports {
        let p = parse_port(p)?;
        if !ports.contains(&p) {
            ports.push(p);
        }
    }
    ports.sort();
    let cmd = s
        .cmd
        .clone()
        .or_else(|| b.cmd().clone())
        .or_else(|| base.is_none().then(|| vec!["/bin/sh".to_string()]));
    let entrypoint = s.entrypoint.clone().or_else(|| b.entrypoint().clone());
    let mut c = ConfigBuilder::default();
    if !env.is_empty() {
        c = c.env(env);
    }
    if !ports.is_empty() {
        c = c.exposed_ports(ports);
    }
    if let Some(e) = entrypoint.filter(|e| !e.is_empty()) {
        c = c.entrypoint(e);
    }
    if let Some(cmd) = cmd.filter(|c| !c.is_empty()) {
        c = c.cmd(cmd);
    }
    if let Some(u) = s.user.clone().or_else(|| b.user().clone()) {
        c = c.user(u);
    }
    if let Some(w) = s.workdir.clone().or_else(|| b.working_dir().clone()) {
        c = c.working_dir(w);
    }
    if let Some(sig) = s.stop_signal.clone().or_else(|| b.stop_signal().clone()) {
        c = c.stop_signal(sig);
    }
    if let Some(v) = b.volumes().clone() {
        c = c.volumes(v);
    }
    let labels = labels(s, b.labels().as_ref(), created);
    if !labels.is_empty() {
        c = c.labels(labels);
    }
    c.build()
        .map_err(|e| OciError::Invalid(format!("image config: {e}")))
}

/// The whole image config.
#[allow(clippy::too_many_arguments)]
pub fn image_config(
    s: &ImageSettings,
    base: Option<&ImageConfiguration>,
    arch: &str,
    variant: Option<&str>,
    os: &str,
    created: &str,
    diff_ids: Vec<String>,
    history: Vec<History>,
) -> Result<ImageConfiguration, OciError> {
    let runtime = runtime_config(s, base.and_then(|b| b.config().as_ref()), created)?;
    let mut all_history = base.and_then(|b| b.history().clone()).unwrap_or_default();
    all_history.extend(history);
    let mut cfg = oci_spec::image::ImageConfigurationBuilder::default()
        .created(created.to_string())
        .architecture(Arch::from(arch))
        .os(Os::from(os))
        .config(runtime)
        .rootfs(
            oci_spec::image::RootFsBuilder::default()
                .typ("layers")
                .diff_ids(diff_ids)
                .build()
                .map_err(|e| OciError::Invalid(format!("image config: {e}")))?,
        )
        .history(all_history)
        .build()
        .map_err(|e| OciError::Invalid(format!("image config: {e}")))?;
    if let Some(v) = variant {
        cfg.set_variant(Some(v.to_string()));
    }
    if let Some(a) = &s.author {
        cfg.set_author(Some(a.clone()));
    }
    Ok(cfg)
}

/// A history entry for one built layer.
pub fn history(created: &str, name: &str, kind: &str, empty: bool) -> Result<History, OciError> {
    let mut h = HistoryBuilder::default()
        .created(created.to_string())
        .created_by(format!("vcontainer oci build: layer '{name}' ({kind})"));
    if empty {
        h = h.comment("empty layer".to_string());
    }
    h.build()
        .map_err(|e| OciError::Invalid(format!("history: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formats_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn ports_and_pairs_are_checked() {
        assert_eq!(parse_port("80").expect("80"), "80/tcp");
        assert_eq!(parse_port("53/udp").expect("53"), "53/udp");
        for bad in ["0", "http", "80/icmp", "70000"] {
            assert!(parse_port(bad).is_err(), "{bad}");
        }
        assert!(parse_key_value("label", "=x").is_err());
        assert_eq!(
            parse_key_value("env", "A=b=c").expect("kv"),
            ("A".into(), "b=c".into())
        );
    }

    #[test]
    fn settings_override_the_base_and_auto_labels_can_be_set_or_turned_off() {
        let base = ConfigBuilder::default()
            .env(vec!["PATH=/bin".to_string(), "A=1".to_string()])
            .cmd(vec!["base-cmd".to_string()])
            .labels(HashMap::from([("from".to_string(), "base".to_string())]))
            .build()
            .expect("base");
        let s = ImageSettings {
            env: vec!["A=2".into()],
            labels: vec![("k".into(), "a b".into())],
            ports: vec!["8080".into()],
            auto_labels: true,
            revision: AutoLabel::Value("abc123".into()),
            branch: AutoLabel::Off,
            created_label: AutoLabel::Auto,
            ..Default::default()
        };
        let c = runtime_config(&s, Some(&base), "2000-01-01T00:00:00Z").expect("config");
        assert_eq!(c.env().clone().expect("env"), vec!["PATH=/bin", "A=2"]);
        assert_eq!(c.cmd().clone().expect("cmd"), vec!["base-cmd"]);
        let l = c.labels().clone().expect("labels");
        assert_eq!(l.get("from").map(String::as_str), Some("base"));
        assert_eq!(l.get("k").map(String::as_str), Some("a b"));
        assert_eq!(l.get(LABEL_REVISION).map(String::as_str), Some("abc123"));
        assert_eq!(
            l.get(LABEL_CREATED).map(String::as_str),
            Some("2000-01-01T00:00:00Z")
        );
        assert!(!l.contains_key(LABEL_REF_NAME));
        // No base: CMD defaults to /bin/sh; auto labels off means none at all.
        let c = runtime_config(&ImageSettings::default(), None, "x").expect("config");
        assert_eq!(c.cmd().clone().expect("cmd"), vec!["/bin/sh"]);
        assert!(c.labels().is_none());
    }
}
