//! The BUNDLED_CONTAINERS grammar and image name/tag derivation (upstream:
//! `container-cross-install.bbclass`, `resolve_oci_dir` and `extract_container_info`).
//!
//! A spec is a whitespace-separated list of entries `name[:runtime[:policy]][:external]`:
//!
//! - `name`: a container image recipe name, or an OCI directory name in the deploy dir when it
//!   ends in `-oci` (the legacy `name-latest-oci` / `name-oci` forms);
//! - `runtime`: `docker` or `podman`; absent means the default runtime (from the profile);
//! - `policy`: `autostart`, `always`, `unless-stopped`, `on-failure` or `no`; absent means no
//!   autostart unit;
//! - `external`: no build dependency on the recipe (a third-party OCI dir in the deploy dir).
//!
//! Where upstream was lax this module is strict, and it fixes upstream's bugs:
//!
//! - `external` is a flag, recognised only as the last field. Upstream found it anywhere at parse
//!   time but its autostart step read field 3 of the raw entry, so `name:docker:external` got an
//!   `unless-stopped` unit (W2). Here it never sets a policy.
//! - Unknown runtimes and policies are errors that quote the entry and list what is allowed
//!   (upstream warned at rootfs time and skipped the entry or fell back to `unless-stopped`);
//!   `name:autostart` (a policy where the runtime goes) says so. Duplicates are errors (W15).
//! - The image name and tag come from the *resolved* OCI directory, for the import and the
//!   unit alike ([`ResolvedContainer`]); upstream's unit derived them from the name as written
//!   (W3: `redis-7` was imported as `redis-7:latest` while its unit ran `redis:7`).
//! - A recipe deployed with a non-`latest` tag (`<name>-<tag>-oci`) is found under its bare
//!   name (W4), and the not-found error lists exactly the paths that were searched.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::state::Tool;

/// The entry form, quoted in every grammar error.
pub const ENTRY_FORM: &str = "name[:runtime[:policy]][:external]";

/// The container engine an entry is imported into (and whose unit starts it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Runtime {
    Docker,
    Podman,
}

impl Runtime {
    pub const ALL: [Runtime; 2] = [Runtime::Docker, Runtime::Podman];

    pub fn name(self) -> &'static str {
        self.tool().engine()
    }

    /// The tool (vdkr or vpdmn) whose guest carries this engine.
    pub fn tool(self) -> Tool {
        match self {
            Runtime::Docker => Tool::Vdkr,
            Runtime::Podman => Tool::Vpdmn,
        }
    }

    /// The runtime of the engine called `engine` (`docker`, `podman`).
    pub fn from_engine(engine: &str) -> Option<Runtime> {
        Runtime::ALL.into_iter().find(|r| r.name() == engine)
    }

    /// Upstream's `get_default_container_runtime`: `podman` when `CONTAINER_PROFILE` is
    /// `podman`, otherwise `docker` (also for `containerd`, `k3s-*` and an unset profile).
    pub fn default_for_profile(profile: Option<&str>) -> Runtime {
        match profile.map(str::trim) {
            Some("podman") => Runtime::Podman,
            _ => Runtime::Docker,
        }
    }
}

impl fmt::Display for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Runtime {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Runtime::from_engine(s)
            .ok_or_else(|| format!("unknown runtime '{s}'; allowed: docker, podman"))
    }
}

/// An autostart policy as written in the entry (normalised by the units module).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Policy {
    /// Upstream's default word; means `unless-stopped`.
    Autostart,
    Always,
    UnlessStopped,
    OnFailure,
    No,
}

impl Policy {
    pub const ALL: [Policy; 5] = [
        Policy::Autostart,
        Policy::Always,
        Policy::UnlessStopped,
        Policy::OnFailure,
        Policy::No,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Policy::Autostart => "autostart",
            Policy::Always => "always",
            Policy::UnlessStopped => "unless-stopped",
            Policy::OnFailure => "on-failure",
            Policy::No => "no",
        }
    }

    pub fn parse(s: &str) -> Option<Policy> {
        Policy::ALL.into_iter().find(|p| p.name() == s)
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One parsed BUNDLED_CONTAINERS entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BundledContainer {
    /// The entry as written (after shell quote removal), for messages.
    pub entry: String,
    /// First field: recipe name or OCI directory name.
    pub name: String,
    pub runtime: Runtime,
    /// `None`: no autostart unit.
    pub policy: Option<Policy>,
    /// No build dependency on the recipe.
    pub external: bool,
}

impl BundledContainer {
    /// The recipe the entry comes from (upstream: strip `-latest-oci`, else `-oci`).
    pub fn recipe(&self) -> &str {
        self.name
            .strip_suffix("-latest-oci")
            .or_else(|| self.name.strip_suffix("-oci"))
            .unwrap_or(&self.name)
    }

    /// The build dependency upstream adds to `do_rootfs[depends]`, `None` for `external`.
    pub fn build_dependency(&self) -> Option<String> {
        (!self.external).then(|| format!("{}:do_image_complete", self.recipe()))
    }
}

/// An entry whose OCI directory was found, with the image name and tag it is imported as.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResolvedContainer {
    pub container: BundledContainer,
    /// The directory as found in the deploy dir (a `-latest-oci` symlink stays a symlink).
    pub oci_dir: PathBuf,
    pub image_name: String,
    pub tag: String,
}

impl ResolvedContainer {
    /// `name:tag`: what the import writes into the engine's storage and what the unit runs.
    pub fn reference(&self) -> String {
        format!("{}:{}", self.image_name, self.tag)
    }

    /// `<svc>` of `container-<svc>.service`: the image name with `[^a-zA-Z0-9_-]` replaced by
    /// `-`, lowercased (upstream's rule).
    pub fn service_stem(&self) -> String {
        self.image_name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                    c.to_ascii_lowercase()
                } else {
                    '-'
                }
            })
            .collect()
    }

    /// The container's name on the target (`--name` / `ContainerName=`): the image name, as
    /// upstream (`docker ps` shows it).
    pub fn container_name(&self) -> &str {
        &self.image_name
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SpecError {
    #[error(
        "invalid BUNDLED_CONTAINERS entry '{entry}': {reason} (form: {ENTRY_FORM}; runtime: \
         docker or podman; policy: autostart, always, unless-stopped, on-failure or no; \
         external only as the last field)"
    )]
    InvalidEntry { entry: String, reason: String },
    #[error("BUNDLED_CONTAINERS: {0}")]
    Quoting(String),
    #[error(
        "BUNDLED_CONTAINERS lists '{name}' for {runtime} twice ('{first}' and '{second}'); \
         list each container once per runtime"
    )]
    Duplicate {
        name: String,
        runtime: Runtime,
        first: String,
        second: String,
    },
    #[error(
        "MISSING CONTAINER: OCI directory not found for '{name}' (entry '{entry}'); searched: {}. \
         Build the container for this machine (bitbake {recipe}) or remove it from \
         BUNDLED_CONTAINERS",
        fmt_paths(searched)
    )]
    NotFound {
        name: String,
        entry: String,
        recipe: String,
        searched: Vec<PathBuf>,
    },
    #[error(
        "entry '{entry}': several tagged OCI directories match '{name}': {}; name one of them \
         (e.g. '{}') in BUNDLED_CONTAINERS",
        fmt_paths(candidates),
        candidates.first().and_then(|p| p.file_name()).map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
    )]
    Ambiguous {
        name: String,
        entry: String,
        candidates: Vec<PathBuf>,
    },
    #[error("entry '{entry}': {} is not an OCI image layout ({reason})", path.display())]
    NotALayout {
        entry: String,
        path: PathBuf,
        reason: String,
    },
    #[error(
        "entry '{entry}': image name '{image}' (from {}) is not a valid image name: lowercase \
         letters and digits, separated by '.', '_', '__' or runs of '-', at most 255 characters",
        dir.display()
    )]
    BadImageName {
        entry: String,
        image: String,
        dir: PathBuf,
    },
    #[error("reading deploy dir {}: {message}", dir.display())]
    Io { dir: PathBuf, message: String },
}

fn fmt_paths(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Splits a BUNDLED_CONTAINERS value into words as the shell would (whitespace outside quotes
/// separates; `'…'` and `"…"` are removed). Upstream pasted the value into shell text, so
/// quoting in it was honoured.
fn shell_words(spec: &str) -> Result<Vec<String>, SpecError> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    for c in spec.chars() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => cur.push(c),
            None if c == '\'' || c == '"' => {
                quote = Some(c);
                in_word = true;
            }
            None if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            None => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if let Some(q) = quote {
        return Err(SpecError::Quoting(format!(
            "unterminated {q} quote in '{}'",
            spec.trim()
        )));
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

/// Parses a whole BUNDLED_CONTAINERS value. Entries without a runtime get `default_runtime`.
/// The first invalid entry is an error; so is the same name listed twice for one runtime
/// (listing it once for docker and once for podman is allowed: upstream imports both).
pub fn parse_bundled(
    spec: &str,
    default_runtime: Runtime,
) -> Result<Vec<BundledContainer>, SpecError> {
    let mut out: Vec<BundledContainer> = Vec::new();
    for word in shell_words(spec)? {
        let c = parse_entry(&word, default_runtime)?;
        if let Some(prev) = out
            .iter()
            .find(|p| p.name == c.name && p.runtime == c.runtime)
        {
            return Err(SpecError::Duplicate {
                name: c.name.clone(),
                runtime: c.runtime,
                first: prev.entry.clone(),
                second: c.entry,
            });
        }
        out.push(c);
    }
    Ok(out)
}

/// Parses one entry (no whitespace, quotes already removed).
pub fn parse_entry(entry: &str, default_runtime: Runtime) -> Result<BundledContainer, SpecError> {
    let invalid = |reason: String| SpecError::InvalidEntry {
        entry: entry.to_string(),
        reason,
    };
    if entry.is_empty() {
        return Err(invalid("empty entry".into()));
    }
    let mut fields: Vec<&str> = entry.split(':').collect();
    if let Some(i) = fields.iter().position(|f| f.is_empty()) {
        return Err(invalid(format!("field {} is empty", i + 1)));
    }
    let external = fields.len() >= 2 && fields.last() == Some(&"external");
    if external {
        fields.pop();
    }
    if fields.iter().skip(1).any(|f| *f == "external") {
        return Err(invalid("'external' must be the last field".into()));
    }
    if let Some(extra) = fields.get(3) {
        return Err(invalid(format!(
            "unexpected field '{extra}' after the policy; only 'external' may follow it"
        )));
    }
    let name = fields[0];
    validate_name(name).map_err(invalid)?;
    let runtime = match fields.get(1) {
        None => default_runtime,
        Some(f) if Policy::parse(f).is_some() => {
            return Err(invalid(format!(
                "'{f}' is a policy, but the second field is the runtime; write \
                 {name}:docker:{f} or {name}:podman:{f}"
            )));
        }
        Some(f) => f.parse::<Runtime>().map_err(invalid)?,
    };
    let policy = match fields.get(2) {
        None => None,
        Some(f) => Some(Policy::parse(f).ok_or_else(|| {
            invalid(format!(
                "unknown policy '{f}'; allowed: autostart, always, unless-stopped, on-failure, no"
            ))
        })?),
    };
    Ok(BundledContainer {
        entry: entry.to_string(),
        name: name.to_string(),
        runtime,
        policy,
        external,
    })
}

/// A name is one path component of the deploy dir: letters, digits, `.`, `_`, `+`, `-`,
/// starting with a letter or digit.
fn validate_name(name: &str) -> Result<(), String> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '+' | '-');
    if let Some(bad) = name.chars().find(|&c| !ok_char(c)) {
        return Err(format!(
            "name '{name}' contains '{bad}'; a name is a recipe or OCI directory name of \
             letters, digits, '.', '_', '+' and '-'"
        ));
    }
    if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(format!("name '{name}' must start with a letter or digit"));
    }
    Ok(())
}

/// Whether `token` is a tag upstream recognises at the end of a directory name:
/// `latest`, `v?N.N[.N]` or `N`.
pub fn is_tag_token(token: &str) -> bool {
    if token == "latest" {
        return true;
    }
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let body = token.strip_prefix('v').unwrap_or(token);
    let parts: Vec<&str> = body.split('.').collect();
    match parts.len() {
        1 => body.len() == token.len() && digits(body),
        2 | 3 => parts.iter().all(|p| digits(p)),
        _ => false,
    }
}

/// Upstream's `extract_container_info` on a directory basename: strip a trailing `-oci`; if the
/// last `-`-separated token is a tag ([`is_tag_token`]), it is the tag and the rest the name,
/// otherwise the whole is the name and the tag is `latest`. (Unlike upstream, a name never
/// becomes empty: `7-oci` is image `7`, tag `latest`.)
pub fn image_name_and_tag(dir_basename: &str) -> (String, String) {
    let base = dir_basename.strip_suffix("-oci").unwrap_or(dir_basename);
    if let Some((name, token)) = base.rsplit_once('-') {
        if !name.is_empty() && is_tag_token(token) {
            return (name.to_string(), token.to_string());
        }
    }
    (base.to_string(), "latest".to_string())
}

/// Docker's repository path-component grammar: `[a-z0-9]+(([._]|__|-+)[a-z0-9]+)*`.
pub fn is_valid_image_name(name: &str) -> bool {
    if name.is_empty() || name.len() > 255 {
        return false;
    }
    let b = name.as_bytes();
    let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    let mut i = 0;
    loop {
        // A run of alphanumerics.
        let start = i;
        while i < b.len() && alnum(b[i]) {
            i += 1;
        }
        if i == start {
            return false;
        }
        if i == b.len() {
            return true;
        }
        // A separator, then another run must follow.
        match b[i] {
            b'.' => i += 1,
            b'_' => {
                i += 1;
                if i < b.len() && b[i] == b'_' {
                    i += 1;
                }
            }
            b'-' => {
                while i < b.len() && b[i] == b'-' {
                    i += 1;
                }
            }
            _ => return false,
        }
    }
}

/// Upstream's `resolve_oci_dir`, plus tagged directories: a name ending in `-oci` is taken
/// verbatim; otherwise `<name>-latest-oci`, then `<name>-oci`, then the single
/// `<name>-<tag>-oci` (tag as in [`is_tag_token`]). Directories may be symlinks.
pub fn find_oci_dir(c: &BundledContainer, deploy_dir: &Path) -> Result<PathBuf, SpecError> {
    let name = &c.name;
    let not_found = |searched: Vec<PathBuf>| SpecError::NotFound {
        name: name.clone(),
        entry: c.entry.clone(),
        recipe: c.recipe().to_string(),
        searched,
    };
    if name.ends_with("-oci") {
        let p = deploy_dir.join(name);
        return if p.is_dir() {
            Ok(p)
        } else {
            Err(not_found(vec![p]))
        };
    }
    let mut searched = Vec::new();
    for suffix in ["-latest-oci", "-oci"] {
        let p = deploy_dir.join(format!("{name}{suffix}"));
        if p.is_dir() {
            return Ok(p);
        }
        searched.push(p);
    }
    // W4: a recipe with OCI_IMAGE_TAG = "1.2" deploys `<name>-1.2-oci`.
    let io = |e: std::io::Error| SpecError::Io {
        dir: deploy_dir.to_path_buf(),
        message: e.to_string(),
    };
    let prefix = format!("{name}-");
    let mut tagged: Vec<PathBuf> = Vec::new();
    match std::fs::read_dir(deploy_dir) {
        Ok(rd) => {
            for e in rd {
                let e = e.map_err(io)?;
                let file_name = e.file_name();
                let Some(n) = file_name.to_str() else {
                    continue;
                };
                let Some(token) = n
                    .strip_prefix(&prefix)
                    .and_then(|rest| rest.strip_suffix("-oci"))
                else {
                    continue;
                };
                if token != "latest" && is_tag_token(token) && e.path().is_dir() {
                    tagged.push(e.path());
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(e)),
    }
    tagged.sort();
    match tagged.len() {
        0 => {
            searched.push(deploy_dir.join(format!("{name}-<tag>-oci")));
            Err(not_found(searched))
        }
        1 => Ok(tagged.remove(0)),
        _ => Err(SpecError::Ambiguous {
            name: name.clone(),
            entry: c.entry.clone(),
            candidates: tagged,
        }),
    }
}

/// Finds the entry's OCI directory in `deploy_dir`, checks that it is an OCI image layout and
/// derives the image name and tag from the directory's name.
pub fn resolve(c: &BundledContainer, deploy_dir: &Path) -> Result<ResolvedContainer, SpecError> {
    let oci_dir = find_oci_dir(c, deploy_dir)?;
    let index = oci_dir.join("index.json");
    if !index.is_file() {
        return Err(SpecError::NotALayout {
            entry: c.entry.clone(),
            path: oci_dir,
            reason: "no index.json".into(),
        });
    }
    let base = oci_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let (image_name, tag) = image_name_and_tag(&base);
    if !is_valid_image_name(&image_name) {
        return Err(SpecError::BadImageName {
            entry: c.entry.clone(),
            image: image_name,
            dir: oci_dir,
        });
    }
    Ok(ResolvedContainer {
        container: c.clone(),
        oci_dir,
        image_name,
        tag,
    })
}

/// [`resolve`] for every entry; the first failure is the error.
pub fn resolve_all(
    containers: &[BundledContainer],
    deploy_dir: &Path,
) -> Result<Vec<ResolvedContainer>, SpecError> {
    containers.iter().map(|c| resolve(c, deploy_dir)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bc(entry: &str, name: &str, rt: Runtime, p: Option<Policy>, ext: bool) -> BundledContainer {
        BundledContainer {
            entry: entry.into(),
            name: name.into(),
            runtime: rt,
            policy: p,
            external: ext,
        }
    }

    #[test]
    fn grammar_table() {
        use Policy::*;
        use Runtime::*;
        // (entry, default runtime, name, runtime, policy, external) — includes every form of
        // the upstream grammar table (2.1) and the examples of its docs and tests.
        type Case<'a> = (&'a str, Runtime, &'a str, Runtime, Option<Policy>, bool);
        let cases: &[Case<'_>] = &[
            (
                "container-base",
                Docker,
                "container-base",
                Docker,
                None,
                false,
            ),
            (
                "container-base",
                Podman,
                "container-base",
                Podman,
                None,
                false,
            ),
            ("app:docker", Podman, "app", Docker, None, false),
            ("app:podman", Docker, "app", Podman, None, false),
            (
                "app:docker:autostart",
                Docker,
                "app",
                Docker,
                Some(Autostart),
                false,
            ),
            (
                "app:docker:always",
                Docker,
                "app",
                Docker,
                Some(Always),
                false,
            ),
            (
                "app:podman:unless-stopped",
                Docker,
                "app",
                Podman,
                Some(UnlessStopped),
                false,
            ),
            (
                "app:docker:on-failure",
                Docker,
                "app",
                Docker,
                Some(OnFailure),
                false,
            ),
            ("app:podman:no", Docker, "app", Podman, Some(No), false),
            (
                "thirdparty:docker:external",
                Docker,
                "thirdparty",
                Docker,
                None,
                true,
            ),
            (
                "thirdparty:podman:always:external",
                Docker,
                "thirdparty",
                Podman,
                Some(Always),
                true,
            ),
            (
                "thirdparty:external",
                Podman,
                "thirdparty",
                Podman,
                None,
                true,
            ),
            (
                "container-base-latest-oci:docker",
                Docker,
                "container-base-latest-oci",
                Docker,
                None,
                false,
            ),
            (
                "container-base-oci:podman:autostart",
                Docker,
                "container-base-oci",
                Podman,
                Some(Autostart),
                false,
            ),
            (
                "autostart-test-container:docker:autostart",
                Docker,
                "autostart-test-container",
                Docker,
                Some(Autostart),
                false,
            ),
            (
                "app-container-multilayer:docker",
                Docker,
                "app-container-multilayer",
                Docker,
                None,
                false,
            ),
            (
                "myapp-v1.0-oci:docker",
                Docker,
                "myapp-v1.0-oci",
                Docker,
                None,
                false,
            ),
            ("gtk+3", Docker, "gtk+3", Docker, None, false),
            ("external:docker", Docker, "external", Docker, None, false),
        ];
        for (entry, def, name, rt, pol, ext) in cases {
            let got = parse_entry(entry, *def).unwrap_or_else(|e| panic!("{entry}: {e}"));
            assert_eq!(got, bc(entry, name, *rt, *pol, *ext), "{entry}");
        }
    }

    /// W2: upstream gave `name:runtime:external` an `unless-stopped` unit.
    #[test]
    fn external_never_becomes_a_policy() {
        for e in ["a:docker:external", "a:podman:external", "a:external"] {
            let c = parse_entry(e, Runtime::Docker).expect(e);
            assert_eq!(c.policy, None, "{e}");
            assert!(c.external, "{e}");
            assert_eq!(c.build_dependency(), None);
        }
    }

    #[test]
    fn invalid_entries_quote_the_entry_and_say_what_is_allowed() {
        let cases: &[(&str, &str)] = &[
            ("app:autostart", "'autostart' is a policy"),
            ("app:always", "app:docker:always or app:podman:always"),
            (
                "app:dockr",
                "unknown runtime 'dockr'; allowed: docker, podman",
            ),
            ("app:Docker", "unknown runtime 'Docker'"),
            ("app:containerd", "unknown runtime 'containerd'"),
            (
                "app:docker:sometimes",
                "unknown policy 'sometimes'; allowed: autostart",
            ),
            (
                "app:docker:external:always",
                "'external' must be the last field",
            ),
            ("app:external:docker", "'external' must be the last field"),
            (
                "app:docker:external:external",
                "'external' must be the last field",
            ),
            (
                "app:docker:always:external:x",
                "'external' must be the last field",
            ),
            (
                "app:docker:always:x",
                "unexpected field 'x' after the policy",
            ),
            ("app::always", "field 2 is empty"),
            ("app:", "field 2 is empty"),
            (":docker", "field 1 is empty"),
            ("a/b:docker", "contains '/'"),
            ("..:docker", "must start with a letter or digit"),
            ("-x", "must start with a letter or digit"),
            ("reg:5000/img", "unknown runtime '5000/img'"),
        ];
        for (entry, needle) in cases {
            let err = parse_entry(entry, Runtime::Docker).expect_err(entry);
            let msg = err.to_string();
            assert!(msg.contains(&format!("'{entry}'")), "{entry}: {msg}");
            assert!(msg.contains(needle), "{entry}: {msg}");
            assert!(msg.contains(ENTRY_FORM), "{entry}: {msg}");
            assert!(msg.contains("docker or podman"), "{entry}: {msg}");
        }
    }

    #[test]
    fn whole_spec_with_whitespace_quotes_and_duplicates() {
        let v = parse_bundled(
            "  app:docker:autostart\n\tdb:podman:always  'quoted:podman' \"x\"y ",
            Runtime::Docker,
        )
        .expect("parse");
        let names: Vec<_> = v.iter().map(|c| (c.name.as_str(), c.runtime)).collect();
        assert_eq!(
            names,
            [
                ("app", Runtime::Docker),
                ("db", Runtime::Podman),
                ("quoted", Runtime::Podman),
                ("xy", Runtime::Docker)
            ]
        );
        assert_eq!(parse_bundled("", Runtime::Docker).expect("empty"), []);
        assert_eq!(parse_bundled(" \n ", Runtime::Docker).expect("blank"), []);
        // Both runtimes: allowed (2.7), imported twice.
        assert_eq!(
            parse_bundled("a:docker a:podman", Runtime::Docker)
                .expect("both")
                .len(),
            2
        );
        // The default runtime makes `a` and `a:docker` the same container.
        let e = parse_bundled("a a:docker:always", Runtime::Docker).expect_err("dup");
        assert!(matches!(e, SpecError::Duplicate { .. }), "{e}");
        assert!(e.to_string().contains("'a' and 'a:docker:always'"), "{e}");
        assert!(parse_bundled("a a:docker", Runtime::Podman).is_ok());
        let e = parse_bundled("a 'b", Runtime::Docker).expect_err("quote");
        assert!(e.to_string().contains("unterminated"), "{e}");
        // One bad entry fails the whole spec.
        let e = parse_bundled("good:docker bad:dockr", Runtime::Docker).expect_err("bad");
        assert!(e.to_string().contains("'bad:dockr'"), "{e}");
    }

    #[test]
    fn profile_default_runtime() {
        assert_eq!(
            Runtime::default_for_profile(Some("podman")),
            Runtime::Podman
        );
        for p in [
            Some("docker"),
            Some("containerd"),
            Some("k3s-host"),
            Some(""),
            None,
        ] {
            assert_eq!(Runtime::default_for_profile(p), Runtime::Docker, "{p:?}");
        }
    }

    #[test]
    fn recipe_and_dependency() {
        let cases = [
            ("container-base-latest-oci", "container-base"),
            ("container-base-oci", "container-base"),
            ("container-base", "container-base"),
            ("redis-7", "redis-7"),
        ];
        for (name, recipe) in cases {
            let c = parse_entry(name, Runtime::Docker).expect(name);
            assert_eq!(c.recipe(), recipe);
            assert_eq!(
                c.build_dependency().as_deref(),
                Some(format!("{recipe}:do_image_complete").as_str())
            );
        }
    }

    #[test]
    fn name_and_tag_table() {
        // Upstream's table (2.4), plus edge cases.
        let cases = [
            ("container-base-latest-oci", "container-base", "latest"),
            (
                "app-container-multilayer-latest-oci",
                "app-container-multilayer",
                "latest",
            ),
            ("myapp-v1.0-oci", "myapp", "v1.0"),
            ("redis-7-oci", "redis", "7"),
            ("container-base-oci", "container-base", "latest"),
            ("container-base", "container-base", "latest"),
            ("app-1.2.3-oci", "app", "1.2.3"),
            ("app-v1.2.3-oci", "app", "v1.2.3"),
            ("app-1.2.3.4-oci", "app-1.2.3.4", "latest"),
            ("app-v7-oci", "app-v7", "latest"),
            ("app-1.x-oci", "app-1.x", "latest"),
            ("app-rc1-oci", "app-rc1", "latest"),
            ("7-oci", "7", "latest"),
            ("latest-oci", "latest", "latest"),
            ("-7-oci", "-7", "latest"),
        ];
        for (dir, name, tag) in cases {
            assert_eq!(
                image_name_and_tag(dir),
                (name.to_string(), tag.to_string()),
                "{dir}"
            );
        }
    }

    #[test]
    fn image_name_grammar() {
        for ok in [
            "a",
            "container-base",
            "a.b",
            "a_b",
            "a__b",
            "a---b",
            "redis7",
            "x.y-z_w",
        ] {
            assert!(is_valid_image_name(ok), "{ok}");
        }
        for bad in [
            "", "A", "gtk+3", "a..b", "a___b", "-a", "a-", "a.", "_a", "a b", "a/b",
        ] {
            assert!(!is_valid_image_name(bad), "{bad}");
        }
        assert!(!is_valid_image_name(&"a".repeat(256)));
    }

    fn layout(dir: &Path) {
        std::fs::create_dir_all(dir).expect("mkdir");
        std::fs::write(dir.join("index.json"), "{}").expect("index");
        std::fs::write(dir.join("oci-layout"), "{}").expect("layout");
    }

    fn resolve_entry(entry: &str, deploy: &Path) -> Result<ResolvedContainer, SpecError> {
        resolve(&parse_entry(entry, Runtime::Docker).expect(entry), deploy)
    }

    #[test]
    fn resolution_order_and_names() {
        let t = tempfile::tempdir().expect("tmp");
        let d = t.path();
        layout(&d.join("container-base-20250101-oci"));
        std::os::unix::fs::symlink(
            "container-base-20250101-oci",
            d.join("container-base-latest-oci"),
        )
        .expect("symlink");
        layout(&d.join("container-base-oci"));
        layout(&d.join("redis-7-oci"));
        layout(&d.join("myapp-v1.0-oci"));
        layout(&d.join("plain-oci"));
        layout(&d.join("two-1.0-oci"));
        layout(&d.join("two-2.0-oci"));
        std::fs::create_dir_all(d.join("empty-oci")).expect("mkdir");
        layout(&d.join("Upper-oci"));

        // (entry, dir basename, image name, tag)
        let cases = [
            // -latest-oci wins over -oci, and is used as found (a symlink).
            (
                "container-base:docker:autostart",
                "container-base-latest-oci",
                "container-base",
                "latest",
            ),
            (
                "container-base-oci",
                "container-base-oci",
                "container-base",
                "latest",
            ),
            (
                "container-base-latest-oci",
                "container-base-latest-oci",
                "container-base",
                "latest",
            ),
            ("plain", "plain-oci", "plain", "latest"),
            // W3: the unit and the import both use redis:7 from the resolved dir.
            ("redis-7-oci:docker:always", "redis-7-oci", "redis", "7"),
            // W4: the bare recipe name finds the tagged dir.
            ("redis:docker:always", "redis-7-oci", "redis", "7"),
            ("myapp", "myapp-v1.0-oci", "myapp", "v1.0"),
            ("myapp-v1.0-oci", "myapp-v1.0-oci", "myapp", "v1.0"),
            ("two-1.0-oci", "two-1.0-oci", "two", "1.0"),
        ];
        for (entry, base, image, tag) in cases {
            let r = resolve_entry(entry, d).unwrap_or_else(|e| panic!("{entry}: {e}"));
            assert_eq!(r.oci_dir, d.join(base), "{entry}");
            assert_eq!(
                (r.image_name.as_str(), r.tag.as_str()),
                (image, tag),
                "{entry}"
            );
            assert_eq!(r.reference(), format!("{image}:{tag}"));
        }

        let e = resolve_entry("missing:docker", d).expect_err("missing");
        let msg = e.to_string();
        for p in [
            "missing-latest-oci",
            "missing-oci",
            "missing-<tag>-oci",
            "bitbake missing",
        ] {
            assert!(msg.contains(p), "{msg}");
        }
        assert!(msg.contains("'missing:docker'"), "{msg}");
        let e = resolve_entry("gone-latest-oci", d).expect_err("verbatim");
        assert!(
            matches!(&e, SpecError::NotFound { searched, .. } if searched == &[d.join("gone-latest-oci")]),
            "{e}"
        );
        assert!(e.to_string().contains("bitbake gone"), "{e}");
        let e = resolve_entry("two", d).expect_err("ambiguous");
        assert!(
            e.to_string().contains("two-1.0-oci") && e.to_string().contains("two-2.0-oci"),
            "{e}"
        );
        let e = resolve_entry("empty-oci", d).expect_err("not a layout");
        assert!(e.to_string().contains("no index.json"), "{e}");
        let e = resolve_entry("Upper-oci", d).expect_err("bad image name");
        assert!(e.to_string().contains("'Upper'"), "{e}");
        let e = resolve_entry("x", &d.join("no-such-deploy")).expect_err("no deploy dir");
        assert!(matches!(e, SpecError::NotFound { .. }), "{e}");
    }

    #[test]
    fn service_stem_is_sanitised() {
        let r = |image: &str| ResolvedContainer {
            container: bc("x", "x", Runtime::Docker, None, false),
            oci_dir: PathBuf::from("/d/x-oci"),
            image_name: image.into(),
            tag: "latest".into(),
        };
        assert_eq!(
            r("autostart-test-container").service_stem(),
            "autostart-test-container"
        );
        assert_eq!(r("a.b_c").service_stem(), "a-b_c");
    }
}
