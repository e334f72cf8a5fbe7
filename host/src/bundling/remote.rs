//! Remote images fetched by mandatory digest into an OCI layout for the target arch (upstream:
//! `do_fetch_containers` in container-bundle.bbclass).
//!
//! Upstream ran the build host's `skopeo copy docker://<url>@<digest> oci:…` without
//! `--override-arch`, so a manifest-list digest gave the *build host's* platform (W7). Here:
//!
//! 1. `skopeo inspect --raw docker://NAME@DIGEST` fetches the manifest the digest names; its
//!    sha256 must equal the digest. If it is an index (OCI index or Docker manifest list), the
//!    manifest for the target platform (linux/arm64[/v8], linux/amd64) is chosen from it here, on
//!    the host, and both digests are recorded. No match is an error that lists what the index has.
//! 2. `skopeo copy --override-os linux --override-arch A docker://NAME@MANIFEST oci:DIR:REF` copies
//!    exactly that per-arch manifest (containers/image verifies every blob against its digest).
//! 3. The layout comes back as a tar stream (sha256-checked frames), is unpacked safely and
//!    validated (every blob's size and sha256), and the layout's manifest is checked to be the
//!    chosen one — byte-identical, or, where skopeo converted a Docker schema 2 manifest to OCI
//!    (the oci: transport stores OCI only), with the same config and layer digests.
//!
//! skopeo runs in the guest, not on the host: the guest has skopeo and network (QEMU user
//! networking, `--insecure-registry` honoured), so the build host needs no skopeo; the VM is of
//! the target arch, and the selection does not depend on skopeo's idea of the platform because
//! the per-arch digest is chosen explicitly.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use vcontainer_initramfs::Arch;
use vcontainer_protocol::{ExecRequest, ExitStatus};

use super::error::{refuse, Context, Result};
use crate::guest::boot_image::{ensure_image, ImageChoice};
use crate::guest::instance::{Instance, InstanceConfig, StateChoice};
use crate::guest::options::GuestOptions;
use crate::ops::{self, ExecIo};
use crate::transport::Transport;
use crate::util::progress::Reporter;

/// A remote image reference pinned by digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinnedRef {
    /// `registry/repo` without tag or digest.
    pub name: String,
    /// The tag, if one was written (informational: the digest decides what is fetched).
    pub tag: Option<String>,
    /// `sha256:<64 lowercase hex>`.
    pub digest: String,
}

impl std::fmt::Display for PinnedRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.tag {
            Some(t) => write!(f, "{}:{}@{}", self.name, t, self.digest),
            None => write!(f, "{}@{}", self.name, self.digest),
        }
    }
}

fn is_sha256_digest(d: &str) -> bool {
    vcontainer_oci::blob::sha256_hex(d).is_some()
}

impl PinnedRef {
    /// Parses `NAME[:TAG]@sha256:HEX`. A missing or malformed digest is an error that says how
    /// to get one. A port in the registry host (`host:5000/repo`) is not a tag.
    pub fn parse(s: &str) -> Result<PinnedRef> {
        let s = s.trim();
        let (name_tag, digest) = match s.split_once('@') {
            Some((n, d)) => (n, d),
            None => refuse!(
                "remote image '{s}' has no digest: remote images are fetched by a pinned digest \
                 only. Write it as '{s}@sha256:<64 hex>'; get the digest with: skopeo inspect \
                 docker://{s} | jq -r .Digest"
            ),
        };
        if !is_sha256_digest(digest) {
            refuse!(
                "remote image '{s}': '{digest}' is not a sha256 digest (expected sha256: and 64 \
                 lowercase hex digits)"
            );
        }
        let last_slash = name_tag.rfind('/').map(|i| i + 1).unwrap_or(0);
        let (name, tag) = match name_tag[last_slash..].rfind(':') {
            Some(i) => (
                &name_tag[..last_slash + i],
                Some(&name_tag[last_slash + i + 1..]),
            ),
            None => (name_tag, None),
        };
        let valid = |t: &str| {
            !t.is_empty()
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-/:".contains(&b))
        };
        if !valid(name) || name.starts_with('-') || name.starts_with('/') {
            refuse!("remote image '{s}': '{name}' is not an image name");
        }
        if let Some(t) = tag {
            if t.is_empty() || t.contains('/') || !valid(t) || t.len() > 128 {
                refuse!("remote image '{s}': '{t}' is not a tag");
            }
        }
        Ok(PinnedRef {
            name: name.to_string(),
            tag: tag.map(str::to_string),
            digest: digest.to_string(),
        })
    }

    /// The registry host (`docker.io` when the first component has no `.`/`:` and is not
    /// `localhost`, as in Docker's reference rules).
    pub fn registry(&self) -> &str {
        match self.name.split_once('/') {
            Some((first, _))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                first
            }
            _ => "docker.io",
        }
    }
}

/// Options of [`fetch`].
#[derive(Debug, Clone, Default)]
pub struct FetchOptions {
    /// Registries reached over plain HTTP / without TLS verification.
    pub insecure_registries: Vec<String>,
    pub no_kvm: bool,
    /// The guest image the fetching VM boots.
    pub image: ImageChoice,
}

/// What [`fetch`] wrote.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FetchedImage {
    /// `name[:tag]` as written, without the digest.
    pub source: String,
    pub requested_digest: String,
    /// Set when the requested digest names an index (manifest list): that index's digest.
    pub index_digest: Option<String>,
    /// The per-arch manifest fetched (equals `requested_digest` for a single-arch digest).
    pub manifest_digest: String,
    /// The manifest's digest inside the layout: the same, unless skopeo converted a Docker
    /// schema 2 manifest to OCI (config and layers are then checked to be identical).
    pub layout_manifest_digest: String,
    /// `os/arch[/variant]` chosen.
    pub platform: String,
    /// The OCI layout directory.
    pub layout: PathBuf,
    /// `org.opencontainers.image.ref.name` of the image in the layout (the tag, else `latest`).
    pub ref_name: String,
}

/// Boots a throw-away guest of `arch` with network, fetches `image` into the OCI layout `out`
/// (which must not exist or be empty) and shuts the guest down.
pub async fn fetch(
    image: &PinnedRef,
    arch: Arch,
    out: &Path,
    opts: &FetchOptions,
    reporter: &Reporter,
) -> Result<FetchedImage> {
    check_out_dir(out)?;
    let guest_image = ensure_image(arch, &opts.image, reporter).await?;
    let mut guest = GuestOptions {
        network: true,
        ..GuestOptions::default()
    };
    guest.registry.insecure = opts.insecure_registries.clone();
    let config = InstanceConfig {
        // The podman guest: skopeo is the same in both, and no dockerd has to start.
        tool: crate::state::Tool::Vpdmn,
        arch,
        state: StateChoice::Stateless,
        input_storage: None,
        no_kvm: opts.no_kvm,
        guest,
    };
    let instance = Instance::boot(&config, &guest_image, reporter).await?;
    let result = fetch_in_guest(
        instance.transport(),
        image,
        arch,
        out,
        &opts.insecure_registries,
        reporter,
    )
    .await;
    let shutdown = instance.shutdown(reporter).await;
    let fetched = result?;
    shutdown?;
    Ok(fetched)
}

fn check_out_dir(out: &Path) -> Result<()> {
    match std::fs::read_dir(out) {
        Ok(mut d) => {
            if d.next().is_some() {
                refuse!(
                    "output directory {} exists and is not empty; refusing to overwrite it",
                    out.display()
                );
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("output directory {}", out.display())),
    }
}

/// Output of one guest command.
struct Output {
    status: ExitStatus,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

async fn guest_run(transport: &dyn Transport, argv: &[String]) -> Result<Output> {
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    let status = ops::exec(
        transport,
        ExecRequest {
            argv: argv.to_vec(),
            env: Vec::new(),
            cwd: None,
            stdin: false,
            engine: false,
            tty: None,
        },
        ExecIo {
            stdout: &mut stdout,
            stderr: &mut stderr,
            stdin: None,
            signals: None,
        },
    )
    .await
    .with_context(|| format!("running {} in the guest", argv.join(" ")))?;
    Ok(Output {
        status,
        stdout,
        stderr,
    })
}

fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

const INDEX_TYPES: &[&str] = &[
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];

/// The manifest list entry for `arch` in the index `index` (JSON): (digest, platform string).
pub fn select_platform(index: &serde_json::Value, arch: Arch) -> Result<(String, String)> {
    let want = arch.oci();
    let manifests = index
        .get("manifests")
        .and_then(|m| m.as_array())
        .context("the index has no manifests list")?;
    let mut seen = Vec::new();
    let mut candidates = Vec::new();
    for m in manifests {
        let p = m.get("platform");
        let field = |k: &str| {
            p.and_then(|p| p.get(k))
                .and_then(|v| v.as_str())
                .unwrap_or("")
                .to_string()
        };
        let (os, a, variant) = (field("os"), field("architecture"), field("variant"));
        let platform = if variant.is_empty() {
            format!("{os}/{a}")
        } else {
            format!("{os}/{a}/{variant}")
        };
        seen.push(platform.clone());
        if os != "linux" || a != want {
            continue;
        }
        // arm64 images are v8 (or unspecified); amd64 variants (v2, v3…) rank after none.
        let rank = match (arch, variant.as_str()) {
            (_, "") => 0,
            (Arch::Aarch64, "v8") => 0,
            (Arch::Aarch64, _) => continue,
            _ => 1,
        };
        let digest = m
            .get("digest")
            .and_then(|d| d.as_str())
            .filter(|d| is_sha256_digest(d))
            .with_context(|| format!("index entry for {platform} has no sha256 digest"))?;
        candidates.push((rank, digest.to_string(), platform));
    }
    candidates.sort_by_key(|c| c.0);
    match candidates.into_iter().next() {
        Some((_, d, p)) => Ok((d, p)),
        None => refuse!(
            "the index has no image for linux/{want} (it has: {})",
            if seen.is_empty() {
                "nothing".to_string()
            } else {
                seen.join(", ")
            }
        ),
    }
}

fn media_type(v: &serde_json::Value) -> &str {
    v.get("mediaType").and_then(|m| m.as_str()).unwrap_or("")
}

fn is_index(v: &serde_json::Value) -> bool {
    INDEX_TYPES.contains(&media_type(v))
        || (v.get("manifests").is_some() && v.get("layers").is_none())
}

/// Config and layer digests of an image manifest (what must survive a media-type conversion).
fn content_digests(m: &serde_json::Value) -> Option<(String, Vec<String>)> {
    let config = m.get("config")?.get("digest")?.as_str()?.to_string();
    let layers = m
        .get("layers")?
        .as_array()?
        .iter()
        .map(|l| l.get("digest").and_then(|d| d.as_str()).map(str::to_string))
        .collect::<Option<Vec<_>>>()?;
    Some((config, layers))
}

/// Fetches `image` for `arch` with the guest behind `transport` (which needs network) into the
/// OCI layout `out`. The orchestrator can call this several times in one boot.
pub async fn fetch_in_guest(
    transport: &dyn Transport,
    image: &PinnedRef,
    arch: Arch,
    out: &Path,
    insecure_registries: &[String],
    reporter: &Reporter,
) -> Result<FetchedImage> {
    check_out_dir(out)?;
    // `skopeo inspect` spells it --tls-verify, `skopeo copy` --src-tls-verify.
    let insecure = insecure_registries.iter().any(|r| r == image.registry());
    let tls: Vec<String> = if insecure {
        vec!["--tls-verify=false".into()]
    } else {
        Vec::new()
    };
    let src_tls: Vec<String> = if insecure {
        vec!["--src-tls-verify=false".into()]
    } else {
        Vec::new()
    };
    let by_digest = |d: &str| format!("docker://{}@{}", image.name, d);

    // 1. The manifest the digest names, checked against it.
    reporter.step(format!("fetching the manifest of {image}"));
    let mut argv = vec!["skopeo".to_string(), "inspect".into(), "--raw".into()];
    argv.extend(tls.iter().cloned());
    argv.push(by_digest(&image.digest));
    let out_raw = guest_run(transport, &argv).await?;
    if out_raw.status != ExitStatus::Code(0) {
        refuse!(
            "cannot fetch {image}: skopeo inspect failed ({:?}): {}",
            out_raw.status,
            String::from_utf8_lossy(&out_raw.stderr).trim()
        );
    }
    let got = sha256_digest(&out_raw.stdout);
    if got != image.digest {
        refuse!(
            "{image}: the registry's manifest has digest {got}, not the requested {}",
            image.digest
        );
    }
    let top: serde_json::Value = serde_json::from_slice(&out_raw.stdout)
        .with_context(|| format!("{image}: the manifest is not JSON"))?;
    let (index_digest, manifest_digest, platform, manifest_raw) = if is_index(&top) {
        let (d, p) = select_platform(&top, arch).with_context(|| format!("{image}"))?;
        let mut argv = vec!["skopeo".to_string(), "inspect".into(), "--raw".into()];
        argv.extend(tls.iter().cloned());
        argv.push(by_digest(&d));
        let o = guest_run(transport, &argv).await?;
        if o.status != ExitStatus::Code(0) {
            refuse!(
                "cannot fetch the {p} manifest {d} of {image}: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            );
        }
        if sha256_digest(&o.stdout) != d {
            refuse!("{image}: the {p} manifest does not match its digest {d}");
        }
        (Some(image.digest.clone()), d, p, o.stdout)
    } else {
        let a = arch.oci();
        (
            None,
            image.digest.clone(),
            format!("linux/{a}"),
            out_raw.stdout,
        )
    };
    let manifest: serde_json::Value = serde_json::from_slice(&manifest_raw)
        .with_context(|| format!("{image}: the manifest is not JSON"))?;
    let expected = content_digests(&manifest)
        .with_context(|| format!("{image}: {manifest_digest} is not an image manifest"))?;

    // 2. Copy exactly that manifest into an OCI layout in the guest (on the state disk).
    let ref_name = image.tag.clone().unwrap_or_else(|| "latest".to_string());
    let work = format!(
        "/mnt/state/tmp/vcontainer-fetch-{}",
        &manifest_digest["sha256:".len().."sha256:".len() + 16]
    );
    let layout_guest = format!("{work}/layout");
    // Two argv commands, no shell: the path is data, never script text.
    for argv in [["rm", "-rf", &work], ["mkdir", "-p", &work]] {
        let argv: Vec<String> = argv.iter().map(|a| a.to_string()).collect();
        let o = guest_run(transport, &argv).await?;
        if o.status != ExitStatus::Code(0) {
            refuse!(
                "preparing {work} in the guest ({}): {}",
                argv[0],
                String::from_utf8_lossy(&o.stderr).trim()
            );
        }
    }
    reporter.step(format!("copying {image} ({platform}) in the guest"));
    let mut argv = vec![
        "skopeo".to_string(),
        "copy".into(),
        "--override-os".into(),
        "linux".into(),
        "--override-arch".into(),
        arch.oci().into(),
    ];
    argv.extend(src_tls);
    // An OCI manifest is stored byte for byte (skopeo would otherwise e.g. compress uncompressed
    // layers and so change the digest); a Docker schema 2 manifest must be converted to OCI
    // for the oci: transport, which check_layout verifies (same config and layers).
    if media_type(&manifest) == "application/vnd.oci.image.manifest.v1+json"
        || (media_type(&manifest).is_empty() && manifest.get("config").is_some())
    {
        argv.push("--preserve-digests".into());
    }
    argv.push(by_digest(&manifest_digest));
    argv.push(format!("oci:{layout_guest}:{ref_name}"));
    let o = guest_run(transport, &argv).await?;
    if o.status != ExitStatus::Code(0) {
        refuse!(
            "cannot fetch {image}: skopeo copy failed ({:?}): {}",
            o.status,
            String::from_utf8_lossy(&o.stderr).trim()
        );
    }

    // 3. Bring it to the host, unpack safely, validate, check, move into place.
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).with_context(|| format!("creating {}", parent.display()))?;
    let staging = tempfile::Builder::new()
        .prefix(".vcontainer-fetch-")
        .tempdir_in(&parent)
        .with_context(|| format!("creating a staging directory in {}", parent.display()))?;
    let tar_path = staging.path().join("layout.tar");
    let bar = reporter.bytes_bar("layout", None);
    let mut progress = |n: u64| bar.set_position(n);
    ops::get_tar(transport, &layout_guest, &tar_path, &mut progress)
        .await
        .with_context(|| format!("copying the layout of {image} to the host"))?;
    bar.finish_and_clear();
    let _ = guest_run(transport, &["rm".into(), "-rf".into(), work]).await;
    let unpacked = staging.path().join("u");
    std::fs::create_dir(&unpacked).context("staging")?;
    let tar_file = std::fs::File::open(&tar_path).context("opening the layout tar")?;
    crate::util::host_tar::unpack_safely(
        std::io::BufReader::new(tar_file),
        &unpacked,
        &crate::util::host_tar::Limits::default(),
    )
    .with_context(|| format!("unpacking the layout of {image}"))?;
    let layout_dir = unpacked.join("layout");
    vcontainer_oci::validate::validate_oci_layout(&layout_dir)
        .with_context(|| format!("the fetched layout of {image} is not valid"))?;
    let layout_manifest_digest = check_layout(&layout_dir, &manifest_digest, &expected)
        .with_context(|| format!("{image}: the fetched layout"))?;
    check_out_dir(out)?;
    if out.exists() {
        std::fs::remove_dir(out).with_context(|| format!("replacing empty {}", out.display()))?;
    }
    std::fs::rename(&layout_dir, out)
        .with_context(|| format!("moving the layout to {}", out.display()))?;
    let source = match &image.tag {
        Some(t) => format!("{}:{t}", image.name),
        None => image.name.clone(),
    };
    Ok(FetchedImage {
        source,
        requested_digest: image.digest.clone(),
        index_digest,
        manifest_digest,
        layout_manifest_digest,
        platform,
        layout: out.to_path_buf(),
        ref_name,
    })
}

/// The layout must list exactly one manifest: the expected one, or (after skopeo's Docker → OCI
/// conversion) one with the same config and layers. Returns its digest.
fn check_layout(
    layout: &Path,
    manifest_digest: &str,
    expected: &(String, Vec<String>),
) -> Result<String> {
    let index: serde_json::Value = serde_json::from_slice(
        &std::fs::read(layout.join("index.json")).context("reading index.json")?,
    )
    .context("parsing index.json")?;
    let manifests = index
        .get("manifests")
        .and_then(|m| m.as_array())
        .context("index.json has no manifests")?;
    let [entry] = manifests.as_slice() else {
        refuse!("index.json lists {} manifests, expected 1", manifests.len());
    };
    let digest = entry
        .get("digest")
        .and_then(|d| d.as_str())
        .filter(|d| is_sha256_digest(d))
        .context("index.json entry without a sha256 digest")?
        .to_string();
    if digest == manifest_digest {
        return Ok(digest);
    }
    let blob = layout.join("blobs/sha256").join(&digest["sha256:".len()..]);
    let bytes =
        vcontainer_oci::blob::read_json_bytes(&blob).context("reading the layout's manifest")?;
    let m: serde_json::Value =
        serde_json::from_slice(&bytes).context("parsing the layout's manifest")?;
    match content_digests(&m) {
        Some(c) if &c == expected => Ok(digest),
        _ => refuse!(
            "its manifest {digest} is neither {manifest_digest} nor a conversion of it (config \
             or layers differ)"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn parses_pinned_refs() {
        let r = PinnedRef::parse(&format!("docker.io/library/busybox:1.36@{D}")).expect("ok");
        assert_eq!(r.name, "docker.io/library/busybox");
        assert_eq!(r.tag.as_deref(), Some("1.36"));
        assert_eq!(r.digest, D);
        assert_eq!(r.registry(), "docker.io");
        let r = PinnedRef::parse(&format!("10.0.2.2:5000/x/y@{D}")).expect("ok");
        assert_eq!(
            (r.name.as_str(), r.tag.as_deref()),
            ("10.0.2.2:5000/x/y", None)
        );
        assert_eq!(r.registry(), "10.0.2.2:5000");
        assert_eq!(
            PinnedRef::parse(&format!("busybox@{D}"))
                .expect("ok")
                .registry(),
            "docker.io"
        );
        let e = PinnedRef::parse("docker.io/library/busybox:1.36")
            .expect_err("must fail")
            .to_string();
        assert!(e.contains("no digest") && e.contains("pinned"), "{e}");
        assert!(PinnedRef::parse("busybox@sha256:abc").is_err());
        assert!(PinnedRef::parse(&format!("busybox@{}", D.to_uppercase())).is_err());
        assert!(PinnedRef::parse(&format!("-x@{D}")).is_err());
        assert!(PinnedRef::parse(&format!("a b@{D}")).is_err());
    }

    #[test]
    fn selects_the_target_platform() {
        let d = |c: char| format!("sha256:{}", c.to_string().repeat(64));
        let index = serde_json::json!({
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [
                {"digest": d('a'), "platform": {"os": "linux", "architecture": "amd64"}},
                {"digest": d('b'), "platform": {"os": "linux", "architecture": "arm", "variant": "v7"}},
                {"digest": d('c'), "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
                {"digest": d('e'), "platform": {"os": "unknown", "architecture": "unknown"}},
            ]
        });
        assert!(is_index(&index));
        assert_eq!(
            select_platform(&index, Arch::Aarch64).expect("arm64"),
            (d('c'), "linux/arm64/v8".into())
        );
        assert_eq!(
            select_platform(&index, Arch::X86_64).expect("amd64").0,
            d('a')
        );
        let only_arm = serde_json::json!({"manifests": [
            {"digest": d('b'), "platform": {"os": "linux", "architecture": "arm", "variant": "v7"}}
        ]});
        let e = select_platform(&only_arm, Arch::X86_64)
            .expect_err("must fail")
            .to_string();
        assert!(
            e.contains("linux/amd64") && e.contains("linux/arm/v7"),
            "{e}"
        );
    }
}
