//! Bundle packages (upstream: container-bundle.bbclass, `CONTAINER_BUNDLES`): OCI layouts plus
//! metadata under `/usr/share/container-bundles`, produced by a bundle recipe and consumed when a
//! host image is assembled (upstream's `merge_installed_bundles`).
//!
//! Layout and file formats are upstream's:
//!
//! ```text
//! <bundles>/<runtime>/oci/<oci_name>/…                 full OCI layouts
//! <bundles>/<runtime>/<PN>.refs                        lines "<oci_name>:<image_ref>"
//! <bundles>/<PN>.meta                                  lines "<source>:<runtime>[:<policy>]"
//! <bundles>/<runtime>/services/<source [/:]→_>.service (docker) | .container (podman)
//! ```
//!
//! with `oci_name` = `image_ref` with `/`, `:` (and `@`) replaced by `_`. The i-th line of a
//! package's `.refs` and of its `.meta` describe the same entry (upstream writes both in entry
//! order), which is how [`discover`] joins them.
//!
//! Upstream bugs fixed (§7): a local recipe name with a `.` is not taken for a remote image (W9:
//! remote means the source has a `/`, i.e. a registry path); remote images keep their registry
//! path in `image_ref`, so equal last components no longer collide in `oci/` (W9); a tagless
//! remote source gets `latest`, `@sha256:` digests and registry ports parse correctly (W8);
//! custom service files are keyed by the source as written and a missing one is an error, not a
//! silent fallback (W10); policies and runtimes are validated when the bundle is created (W15).
//! Remote images are not fetched here (no network in do_compile): `vcontainer fetch` puts them
//! in a directory given with `--fetched-dir` (upstream's `${WORKDIR}/fetched/<source [/:]→_>`)
//! or `--oci SOURCE=DIR`.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::error::{refuse, Context, Result};
use super::spec::{Policy, Runtime};

/// Where bundles live in a rootfs.
pub const BUNDLES_DIR: &str = "usr/share/container-bundles";

/// One `CONTAINER_BUNDLES` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleSpecEntry {
    /// The source as written, without the policy: a recipe name or a remote reference.
    pub source: String,
    pub remote: bool,
    pub policy: Option<Policy>,
}

fn parse_policy(s: &str) -> Option<Policy> {
    Policy::ALL.into_iter().find(|p| p.name() == s)
}

fn policy_names() -> String {
    Policy::ALL.map(|p| p.name()).join(", ")
}

/// Parses `CONTAINER_BUNDLES` (whitespace-separated `source[:policy]`). Remote sources contain
/// a `/`; a trailing `:word` on them is a policy only if `word` is one. Local sources are
/// `name[:policy]` with a validated policy. Duplicates are errors.
pub fn parse_bundle_spec(spec: &str) -> Result<Vec<BundleSpecEntry>> {
    let mut out: Vec<BundleSpecEntry> = Vec::new();
    for raw in spec.split_whitespace() {
        let remote = raw.contains('/');
        let (source, policy) = match raw.rsplit_once(':') {
            Some((s, p)) if remote => match parse_policy(p) {
                Some(pol) => (s, Some(pol)),
                None => (raw, None),
            },
            Some((s, p)) => match parse_policy(p) {
                Some(pol) if !s.contains(':') => (s, Some(pol)),
                _ => refuse!(
                    "CONTAINER_BUNDLES entry '{raw}': a local entry is `recipe[:policy]` with a \
                     policy of {} (remote images have a registry path, e.g. \
                     docker.io/library/busybox:1.36)",
                    policy_names()
                ),
            },
            None => (raw, None),
        };
        if source.is_empty()
            || source.starts_with('-')
            || source.chars().any(|c| c.is_control() || c == '=')
        {
            refuse!("CONTAINER_BUNDLES entry '{raw}': '{source}' is not a valid source");
        }
        if out.iter().any(|e| e.source == source) {
            refuse!("CONTAINER_BUNDLES lists '{source}' twice");
        }
        out.push(BundleSpecEntry {
            source: source.to_string(),
            remote,
            policy,
        });
    }
    if out.is_empty() {
        refuse!("CONTAINER_BUNDLES is empty");
    }
    Ok(out)
}

/// `s` with `/`, `:` and `@` replaced by `_` (upstream's `[/:]→_`, plus `@` for digests).
pub fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| if matches!(c, '/' | ':' | '@') { '_' } else { c })
        .collect()
}

/// The image name:tag an entry is imported as. Local: `<src>:latest` (upstream). Remote: the
/// full repository path (registry kept, W9) and its tag, `latest` without one (W8); a digest is
/// dropped (the layout is pinned already).
pub fn image_ref_for(entry: &BundleSpecEntry) -> String {
    if !entry.remote {
        return format!("{}:latest", entry.source);
    }
    let no_digest = entry
        .source
        .split_once('@')
        .map(|(n, _)| n)
        .unwrap_or(&entry.source);
    let last_slash = no_digest.rfind('/').map(|i| i + 1).unwrap_or(0);
    if no_digest[last_slash..].contains(':') {
        no_digest.to_string()
    } else {
        format!("{no_digest}:latest")
    }
}

/// Where [`create`] finds the OCI layouts and service files.
#[derive(Debug, Clone, Default)]
pub struct CreateInputs {
    pub deploy_dir: Option<PathBuf>,
    pub fetched_dir: Option<PathBuf>,
    /// Explicit layouts by source (take precedence).
    pub oci: Vec<(String, PathBuf)>,
    /// Custom unit / Quadlet files by source.
    pub service_files: Vec<(String, PathBuf)>,
}

fn resolve_layout(entry: &BundleSpecEntry, inputs: &CreateInputs) -> Result<PathBuf> {
    if let Some((_, p)) = inputs.oci.iter().find(|(s, _)| *s == entry.source) {
        return Ok(p.clone());
    }
    let mut tried = Vec::new();
    if entry.remote {
        if let Some(d) = &inputs.fetched_dir {
            // `vcontainer fetch` output, named after the source (upstream: [/:]→_).
            for name in [
                sanitize(&entry.source),
                entry.source.replace(['/', ':'], "_"),
            ] {
                let p = d.join(name);
                if p.is_dir() {
                    return Ok(p);
                }
                tried.push(p);
            }
        }
    } else if let Some(d) = &inputs.deploy_dir {
        for name in [
            format!("{}-latest-oci", entry.source),
            format!("{}-oci", entry.source),
            entry.source.clone(),
        ] {
            let p = d.join(name);
            if p.is_dir() {
                return Ok(p);
            }
            tried.push(p);
        }
    }
    refuse!(
        "Container OCI directory not found for '{}' (tried: {}){}",
        entry.source,
        if tried.is_empty() {
            "nothing".to_string()
        } else {
            tried
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        },
        if entry.remote {
            "; fetch it with `vcontainer fetch -a ARCH REF@sha256:… --out DIR` and pass \
             --fetched-dir or --oci SOURCE=DIR"
        } else {
            ""
        }
    )
}

/// Copies `src` (following symlinks, like upstream's `cp -rL`) to the new path `dst`.
fn copy_tree(src: &Path, dst: &Path) -> Result<()> {
    let meta = fs::metadata(src).with_context(|| format!("reading {}", src.display()))?;
    if meta.is_dir() {
        fs::create_dir(dst).with_context(|| format!("creating {}", dst.display()))?;
        for ent in fs::read_dir(src).with_context(|| format!("reading {}", src.display()))? {
            let ent = ent.with_context(|| format!("reading {}", src.display()))?;
            copy_tree(&ent.path(), &dst.join(ent.file_name()))?;
        }
        Ok(())
    } else if meta.is_file() {
        fs::copy(src, dst)
            .map(|_| ())
            .with_context(|| format!("copying {} to {}", src.display(), dst.display()))
    } else {
        refuse!("{} is neither a file nor a directory", src.display())
    }
}

fn service_ext(runtime: Runtime) -> &'static str {
    match runtime {
        Runtime::Docker => "service",
        Runtime::Podman => "container",
    }
}

/// Writes the bundle tree of package `pn` into `out` (which becomes
/// `/usr/share/container-bundles`; it must not exist or be empty). Every layout is validated
/// (blobs' sizes and digests) before it is copied. Built in a staging directory beside `out` and
/// renamed into place: a failure leaves nothing. Returns the entries as [`discover`] would.
pub fn create(
    out: &Path,
    pn: &str,
    runtime: Runtime,
    entries: &[BundleSpecEntry],
    inputs: &CreateInputs,
) -> Result<Vec<BundleEntry>> {
    if pn.is_empty() || pn.contains(['/', '\n']) || pn.starts_with('.') {
        refuse!("package name {pn:?} is not usable as a file name");
    }
    match fs::read_dir(out).map(|mut d| d.next().is_none()) {
        Ok(false) => refuse!("{} exists and is not empty", out.display()),
        Ok(true) => fs::remove_dir(out).with_context(|| format!("replacing {}", out.display()))?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("inspecting {}", out.display())),
    }
    for (s, _) in inputs.oci.iter().chain(&inputs.service_files) {
        if !entries.iter().any(|e| e.source == *s) {
            refuse!("'{s}' is given a layout or service file but is not in CONTAINER_BUNDLES");
        }
    }
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&parent).with_context(|| format!("creating {}", parent.display()))?;
    let staging = tempfile::Builder::new()
        .prefix(".vcontainer-bundle-")
        .tempdir_in(&parent)
        .with_context(|| format!("creating a staging directory in {}", parent.display()))?;
    let root = staging.path().join("b");
    let rt_dir = root.join(runtime.name());
    fs::create_dir_all(rt_dir.join("oci")).context("creating the bundle tree")?;
    let mut refs = String::new();
    let mut meta = String::new();
    let mut seen_names = Vec::new();
    for entry in entries {
        let layout = resolve_layout(entry, inputs)?;
        vcontainer_oci::validate::validate_oci_layout(&layout)
            .with_context(|| format!("OCI layout of '{}'", entry.source))?;
        let image_ref = image_ref_for(entry);
        let oci_name = sanitize(&image_ref);
        if seen_names.contains(&oci_name) {
            refuse!("two entries would both be imported as {image_ref}");
        }
        copy_tree(&layout, &rt_dir.join("oci").join(&oci_name))?;
        refs.push_str(&format!("{oci_name}:{image_ref}\n"));
        meta.push_str(&format!("{}:{}", entry.source, runtime.name()));
        if let Some(p) = entry.policy {
            meta.push_str(&format!(":{}", p.name()));
        }
        meta.push('\n');
        if let Some((_, file)) = inputs
            .service_files
            .iter()
            .find(|(s, _)| *s == entry.source)
        {
            let services = rt_dir.join("services");
            fs::create_dir_all(&services).context("creating services/")?;
            let dest = services.join(format!(
                "{}.{}",
                entry.source.replace(['/', ':'], "_"),
                service_ext(runtime)
            ));
            fs::copy(file, &dest).with_context(|| {
                format!(
                    "Custom service file not found: {} (for container {})",
                    file.display(),
                    entry.source
                )
            })?;
        }
        seen_names.push(oci_name);
    }
    fs::write(rt_dir.join(format!("{pn}.refs")), refs).context("writing .refs")?;
    fs::write(root.join(format!("{pn}.meta")), meta).context("writing .meta")?;
    fs::rename(&root, out).with_context(|| format!("moving the bundle to {}", out.display()))?;
    let found = discover_in(out)?;
    Ok(found.into_iter().filter(|e| e.package == pn).collect())
}

/// One image of a bundle found in a rootfs.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BundleEntry {
    /// The package (PN) that carried it.
    pub package: String,
    pub runtime: Runtime,
    /// The source as written in CONTAINER_BUNDLES.
    pub source: String,
    pub oci_name: String,
    /// The OCI layout to import.
    pub oci_dir: PathBuf,
    /// `name:tag` to import it as.
    pub image_ref: String,
    /// Autostart policy, if any.
    pub policy: Option<Policy>,
    /// A custom unit (.service) or Quadlet (.container) shipped for it.
    pub service_file: Option<PathBuf>,
}

/// Parses a `.meta` line `<source>:<runtime>[:<policy>]` from the end (upstream's rule).
fn parse_meta_line(line: &str) -> Option<(String, Runtime, Option<Policy>)> {
    let (rest, last) = line.rsplit_once(':')?;
    if let Some(policy) = parse_policy(last) {
        let (source, rt) = rest.rsplit_once(':')?;
        return Some((source.to_string(), Runtime::from_engine(rt)?, Some(policy)));
    }
    Some((rest.to_string(), Runtime::from_engine(last)?, None))
}

/// The bundles in `rootfs` (`<rootfs>/usr/share/container-bundles`), in package then entry order.
/// An absent directory gives an empty list; malformed files are errors naming the file.
pub fn discover(rootfs: &Path) -> Result<Vec<BundleEntry>> {
    let dir = rootfs.join(BUNDLES_DIR);
    match fs::symlink_metadata(&dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("inspecting {}", dir.display())),
        Ok(m) if !m.is_dir() => refuse!("{} is not a directory", dir.display()),
        Ok(_) => {}
    }
    discover_in(&dir)
}

fn read_lines(path: &Path) -> Result<Vec<String>> {
    Ok(fs::read_to_string(path)
        .with_context(|| format!("reading {}", path.display()))?
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect())
}

fn discover_in(dir: &Path) -> Result<Vec<BundleEntry>> {
    let mut metas: Vec<PathBuf> = fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "meta") && p.is_file())
        .collect();
    metas.sort();
    let mut out = Vec::new();
    for meta_path in metas {
        let pn = meta_path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let metas = read_lines(&meta_path)?
            .iter()
            .map(|l| {
                parse_meta_line(l)
                    .with_context(|| format!("{}: malformed line {l:?}", meta_path.display()))
            })
            .collect::<Result<Vec<_>>>()?;
        let Some(runtime) = metas.first().map(|m| m.1) else {
            continue;
        };
        let refs_path = dir.join(runtime.name()).join(format!("{pn}.refs"));
        let refs = read_lines(&refs_path)?;
        if refs.len() != metas.len() {
            refuse!(
                "{} has {} lines but {} has {}",
                refs_path.display(),
                refs.len(),
                meta_path.display(),
                metas.len()
            );
        }
        for ((source, rt, policy), line) in metas.into_iter().zip(refs) {
            if rt != runtime {
                refuse!(
                    "{}: mixes runtimes {} and {}",
                    meta_path.display(),
                    runtime,
                    rt
                );
            }
            let (oci_name, image_ref) = line
                .split_once(':')
                .with_context(|| format!("{}: malformed line {line:?}", refs_path.display()))?;
            if oci_name.is_empty() || oci_name.contains('/') || oci_name.starts_with('.') {
                refuse!("{}: bad OCI name {oci_name:?}", refs_path.display());
            }
            let oci_dir = dir.join(rt.name()).join("oci").join(oci_name);
            if !oci_dir.is_dir() {
                refuse!("{}: {} is missing", refs_path.display(), oci_dir.display());
            }
            let service = dir.join(rt.name()).join("services").join(format!(
                "{}.{}",
                source.replace(['/', ':'], "_"),
                service_ext(rt)
            ));
            out.push(BundleEntry {
                package: pn.clone(),
                runtime: rt,
                source,
                oci_name: oci_name.to_string(),
                oci_dir,
                image_ref: image_ref.to_string(),
                policy,
                service_file: service.is_file().then_some(service),
            });
        }
    }
    Ok(out)
}

/// Removes `<rootfs>/usr/share/container-bundles` (after its images were imported). Returns
/// whether there was one. A symlink in its place is removed as a link, never followed.
pub fn remove(rootfs: &Path) -> Result<bool> {
    let dir = rootfs.join(BUNDLES_DIR);
    match fs::symlink_metadata(&dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e).with_context(|| format!("inspecting {}", dir.display())),
        Ok(m) if m.is_dir() => fs::remove_dir_all(&dir)
            .map(|_| true)
            .with_context(|| format!("removing {}", dir.display())),
        Ok(_) => fs::remove_file(&dir)
            .map(|_| true)
            .with_context(|| format!("removing {}", dir.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(dir: &Path, arch: &str) {
        // A minimal valid layout: one manifest with a config and no layers.
        use sha2::{Digest, Sha256};
        fs::create_dir_all(dir.join("blobs/sha256")).expect("dirs");
        fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).expect("w");
        let put = |b: &[u8]| {
            let h = hex::encode(Sha256::digest(b));
            fs::write(dir.join("blobs/sha256").join(&h), b).expect("blob");
            (format!("sha256:{h}"), b.len())
        };
        let cfg = serde_json::to_vec(&serde_json::json!({"architecture": arch, "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": []}}))
        .expect("cfg");
        let (cd, cs) = put(&cfg);
        let m = serde_json::to_vec(&serde_json::json!({"schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cs},
            "layers": []}))
        .expect("m");
        let (md, ms) = put(&m);
        fs::write(
            dir.join("index.json"),
            serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "manifests": [
                {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": ms}]}))
            .expect("i"),
        )
        .expect("index");
    }

    #[test]
    fn grammar() {
        let e = parse_bundle_spec(
            "container-base app.v2:autostart docker.io/library/busybox:1.36 \
             10.0.2.2:5000/x/y@sha256:abc:on-failure ghcr.io/o/tagless:always",
        )
        .expect("ok");
        assert_eq!(e.len(), 5);
        assert_eq!((e[0].remote, e[0].policy), (false, None));
        // W9: a local name with a dot stays local.
        assert_eq!((e[1].source.as_str(), e[1].remote), ("app.v2", false));
        assert_eq!(e[1].policy, Some(Policy::Autostart));
        assert_eq!(
            (e[2].source.as_str(), e[2].policy),
            ("docker.io/library/busybox:1.36", None)
        );
        assert_eq!(image_ref_for(&e[2]), "docker.io/library/busybox:1.36");
        assert_eq!(e[3].source, "10.0.2.2:5000/x/y@sha256:abc");
        assert_eq!(e[3].policy, Some(Policy::OnFailure));
        // W8: registry ports and digests; tagless gets latest.
        assert_eq!(image_ref_for(&e[3]), "10.0.2.2:5000/x/y:latest");
        assert_eq!(image_ref_for(&e[4]), "ghcr.io/o/tagless:latest");
        assert_eq!(image_ref_for(&e[0]), "container-base:latest");
        assert!(parse_bundle_spec("a:bogus").is_err());
        assert!(parse_bundle_spec("a a").is_err());
        assert!(parse_bundle_spec("  ").is_err());
        assert_eq!(
            sanitize("docker.io/library/busybox:1.36"),
            "docker.io_library_busybox_1.36"
        );
    }

    #[test]
    fn create_then_discover_round_trips() {
        let t = tempfile::tempdir().expect("tmp");
        let deploy = t.path().join("deploy");
        layout(&deploy.join("container-base-latest-oci"), "arm64");
        layout(&deploy.join("app.v2-oci"), "arm64");
        let fetched = t.path().join("fetched");
        layout(&fetched.join("docker.io_library_busybox_1.36"), "arm64");
        let svc = t.path().join("my.container");
        fs::write(&svc, "[Container]\nImage=app.v2:latest\n").expect("svc");
        let rootfs = t.path().join("rootfs");
        let out = rootfs.join(BUNDLES_DIR);
        let entries = parse_bundle_spec(
            "container-base app.v2:autostart docker.io/library/busybox:1.36:always",
        )
        .expect("spec");
        let inputs = CreateInputs {
            deploy_dir: Some(deploy),
            fetched_dir: Some(fetched),
            oci: vec![],
            service_files: vec![("app.v2".into(), svc)],
        };
        let created =
            create(&out, "my-bundle", Runtime::Podman, &entries, &inputs).expect("create");
        // Upstream's exact files and line formats.
        assert_eq!(
            fs::read_to_string(out.join("my-bundle.meta")).expect("meta"),
            "container-base:podman\napp.v2:podman:autostart\n\
             docker.io/library/busybox:1.36:podman:always\n"
        );
        assert_eq!(
            fs::read_to_string(out.join("podman/my-bundle.refs")).expect("refs"),
            "container-base_latest:container-base:latest\napp.v2_latest:app.v2:latest\n\
             docker.io_library_busybox_1.36:docker.io/library/busybox:1.36\n"
        );
        assert!(out.join("podman/oci/app.v2_latest/index.json").is_file());
        assert!(out.join("podman/services/app.v2.container").is_file());
        let found = discover(&rootfs).expect("discover");
        assert_eq!(found, created);
        assert_eq!(found.len(), 3);
        assert_eq!(found[1].image_ref, "app.v2:latest");
        assert_eq!(found[1].policy, Some(Policy::Autostart));
        assert!(found[1].service_file.is_some());
        assert_eq!(found[2].policy, Some(Policy::Always));
        assert_eq!(found[2].runtime, Runtime::Podman);
        for e in &found {
            vcontainer_oci::validate::validate_oci_layout(&e.oci_dir).expect("valid layout");
        }
        // A second package beside it is discovered too; a non-empty --out is refused.
        assert!(create(&out, "other", Runtime::Docker, &entries, &inputs).is_err());
        assert!(remove(&rootfs).expect("remove"));
        assert!(!out.exists());
        assert!(discover(&rootfs).expect("empty").is_empty());
        assert!(!remove(&rootfs).expect("nothing"));
    }

    #[test]
    fn missing_layout_is_a_clear_error_and_writes_nothing() {
        let t = tempfile::tempdir().expect("tmp");
        let out = t.path().join("b");
        let entries = parse_bundle_spec("docker.io/library/busybox:1.36").expect("spec");
        let e = create(
            &out,
            "p",
            Runtime::Docker,
            &entries,
            &CreateInputs::default(),
        )
        .expect_err("must fail")
        .to_string();
        assert!(
            e.contains("not found") && e.contains("vcontainer fetch"),
            "{e}"
        );
        assert!(!out.exists());
        assert_eq!(
            fs::read_dir(t.path()).expect("ls").count(),
            0,
            "no staging left"
        );
    }

    #[test]
    fn reads_upstream_meta_lines() {
        assert_eq!(
            parse_meta_line("docker.io/library/busybox:1.36:docker:autostart"),
            Some((
                "docker.io/library/busybox:1.36".into(),
                Runtime::Docker,
                Some(Policy::Autostart)
            ))
        );
        assert_eq!(
            parse_meta_line("container-base:podman"),
            Some(("container-base".into(), Runtime::Podman, None))
        );
        assert_eq!(parse_meta_line("x:weird"), None);
    }
}
