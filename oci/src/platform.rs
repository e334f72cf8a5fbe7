//! Platform selection: from an OCI layout (single image, flat multi-arch index, or an index whose
//! one entry is a nested image index, as oci-multiarch.bbclass writes), pick the target arch's
//! manifest and send only it to the guest: a tar stream of the layout with a rewritten
//! single-entry `index.json` and just the blobs that manifest references — no copy on the host.
//!
//! Upstream did this with line-oriented grep/sed over `index.json` (flat layouts only in the batch
//! path, `variant` and `os` ignored). Here the JSON is parsed with serde (oci-spec types).

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use oci_spec::image::{
    Descriptor, ImageIndex, ImageIndexBuilder, ImageManifest, MediaType, Platform,
};

use crate::blob::{self, BlobError};

const MAX_NESTING: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum PlatformError {
    #[error("{root}: architecture {target} ({oci}) not found in multi-arch image; it has: {}", .present.join(", "))]
    NotFound {
        root: PathBuf,
        target: String,
        oci: String,
        present: Vec<String>,
    },
    #[error("{root}: Architecture mismatch! The image is for {image}, the target is {target} ({oci}). Use --arch {hint} or an image built for {oci}")]
    Mismatch {
        root: PathBuf,
        image: String,
        target: String,
        oci: String,
        hint: String,
    },
    #[error("{path} is malformed: {reason}")]
    Malformed { path: PathBuf, reason: String },
    #[error("{path}: blob {digest} is missing or not a sha256 digest")]
    MissingBlob { path: PathBuf, digest: String },
    #[error("{root} lists no images")]
    Empty { root: PathBuf },
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

/// The manifest chosen for the target, and what import needs to send it.
#[derive(Debug, Clone)]
pub struct PlatformSelection {
    pub root: PathBuf,
    /// The chosen manifest's descriptor (becomes the single entry of the sent `index.json`).
    pub manifest: Descriptor,
    /// `linux/arm64/v8`-style platform of the chosen manifest; `None` when the image names none.
    pub platform: Option<String>,
    /// True if the layout held more than one manifest (a multi-arch image).
    pub multi_arch: bool,
    /// E.g. an image without an architecture: imported as is, with this warning.
    pub warnings: Vec<String>,
    /// Hex sha256 of every blob to send: manifest, config, layers (no duplicates).
    pub blobs: Vec<String>,
}

impl PlatformSelection {
    /// The `index.json` sent to the guest: one entry, the chosen manifest.
    pub fn index_json(&self) -> Result<Vec<u8>, PlatformError> {
        let index: ImageIndex = ImageIndexBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageIndex)
            .manifests(vec![self.manifest.clone()])
            .build()
            .map_err(|e| PlatformError::Malformed {
                path: self.root.join("index.json"),
                reason: e.to_string(),
            })?;
        serde_json::to_vec(&index).map_err(|e| PlatformError::Malformed {
            path: self.root.join("index.json"),
            reason: e.to_string(),
        })
    }

    /// What to tell the user about the choice (upstream: "Selected platform: …").
    pub fn note(&self) -> Option<String> {
        match (&self.platform, self.multi_arch) {
            (Some(p), true) => Some(format!(
                "Selected platform {p} from multi-arch image {}",
                self.root.display()
            )),
            _ => None,
        }
    }

    /// Where blob `hex` lives in the source layout.
    pub fn blob_path(&self, hex: &str) -> PathBuf {
        self.root.join("blobs").join("sha256").join(hex)
    }
}

/// A platform as written in an index or an image config.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PlatformKey {
    arch: Option<String>,
    os: Option<String>,
    variant: Option<String>,
}

impl PlatformKey {
    fn from_descriptor(d: &Descriptor) -> Option<PlatformKey> {
        d.platform().as_ref().map(|p| PlatformKey {
            arch: Some(p.architecture().to_string()).filter(|a| !a.is_empty()),
            os: Some(p.os().to_string()).filter(|o| !o.is_empty()),
            variant: p.variant().clone().filter(|v| !v.is_empty()),
        })
    }

    fn display(&self) -> String {
        let mut s = format!(
            "{}/{}",
            self.os.as_deref().unwrap_or("?"),
            self.arch.as_deref().unwrap_or("unknown")
        );
        if let Some(v) = &self.variant {
            s.push('/');
            s.push_str(v);
        }
        s
    }

    /// `aarch64` and `x86_64` spellings (seen in some tools' output) count as the OCI names.
    fn oci_arch(&self) -> Option<&str> {
        self.arch.as_deref().map(|a| match a {
            "aarch64" => "arm64",
            "x86_64" | "x86-64" => "amd64",
            other => other,
        })
    }

    fn matches(&self, target: &Wanted) -> bool {
        let os_ok = self.os.as_deref().is_none_or(|o| o == target.os);
        // An image without a variant runs on every variant (an arm64 image without one is v8).
        let variant_ok = match &target.variant {
            Some(v) => self.variant.as_deref().is_none_or(|own| own == v),
            None => true,
        };
        os_ok && variant_ok && self.oci_arch() == Some(target.arch.as_str())
    }
}

/// The target platform, spelled out once.
struct Wanted {
    /// OCI architecture (`arm64`).
    arch: String,
    os: String,
    variant: Option<String>,
    /// The architecture as users name it (`aarch64`), for messages.
    name: String,
}

impl Wanted {
    fn new(p: &Platform) -> Self {
        let arch = p.architecture().to_string();
        Self {
            name: arch_name(&arch),
            os: p.os().to_string(),
            variant: p.variant().clone().filter(|v| !v.is_empty()),
            arch,
        }
    }
}

/// The fields of an image config that name its platform (read leniently: a config without them
/// is an image of unknown architecture, not a parse error).
#[derive(Debug, serde::Deserialize)]
struct ConfigPlatform {
    #[serde(default)]
    architecture: Option<String>,
    #[serde(default)]
    os: Option<String>,
    #[serde(default)]
    variant: Option<String>,
}

/// One manifest found in the layout, with the platform its index entry gives (if any).
struct Leaf {
    desc: Descriptor,
    platform: Option<PlatformKey>,
}

/// Picks the manifest for `target` in the layout at `root` (see the module comment).
///
/// * Several manifests: the first whose platform (from the index entry, else from its config) is
///   linux/`target` (arm64 with no variant or `v8`); none → [`PlatformError::NotFound`] naming
///   the platforms present.
/// * One manifest: its config's architecture must be the target's ([`PlatformError::Mismatch`]
///   otherwise); a config without an architecture is imported with a warning.
pub fn select_platform(root: &Path, target: &Platform) -> Result<PlatformSelection, PlatformError> {
    let want = Wanted::new(target);
    let index_path = root.join("index.json");
    let index: ImageIndex = parse_json(&index_path, &read_json(&index_path)?)?;
    let mut leaves = Vec::new();
    collect_leaves(root, &index_path, index.manifests(), &mut leaves, 0)?;
    if leaves.is_empty() {
        return Err(PlatformError::Empty {
            root: root.to_path_buf(),
        });
    }
    let multi_arch = leaves.len() > 1;
    let mut warnings = Vec::new();
    let mut effective = Vec::with_capacity(leaves.len());
    for leaf in &leaves {
        let key = match &leaf.platform {
            Some(k) if k.arch.is_some() => k.clone(),
            _ => read_manifest(root, &leaf.desc)?.1,
        };
        effective.push(key);
    }
    let chosen = match effective.iter().position(|k| k.matches(&want)) {
        Some(i) => i,
        None if !multi_arch => {
            let key = &effective[0];
            match key.oci_arch() {
                None => {
                    warnings.push(format!(
                        "{}: the image names no architecture; importing it for {} as is",
                        root.display(),
                        want.name
                    ));
                    0
                }
                Some(a) => {
                    return Err(PlatformError::Mismatch {
                        root: root.to_path_buf(),
                        image: key.display(),
                        target: want.name.clone(),
                        oci: want.arch.clone(),
                        hint: arch_hint(a),
                    })
                }
            }
        }
        None => {
            return Err(PlatformError::NotFound {
                root: root.to_path_buf(),
                target: want.name.clone(),
                oci: want.arch.clone(),
                present: effective.iter().map(PlatformKey::display).collect(),
            })
        }
    };
    let leaf = &leaves[chosen];
    let (manifest, config_key) = read_manifest(root, &leaf.desc)?;
    // The index entry may claim a platform its config contradicts: trust the config.
    if let Some(a) = config_key.oci_arch() {
        if a != want.arch {
            return Err(PlatformError::Mismatch {
                root: root.to_path_buf(),
                image: config_key.display(),
                target: want.name.clone(),
                oci: want.arch.clone(),
                hint: arch_hint(a),
            });
        }
    }
    let mut blobs = Vec::new();
    for d in std::iter::once(&leaf.desc)
        .chain(std::iter::once(manifest.config()))
        .chain(manifest.layers())
    {
        let hex = blob_hex(root, &index_path, d)?;
        if !blobs.contains(&hex) {
            blobs.push(hex);
        }
    }
    let key = &effective[chosen];
    Ok(PlatformSelection {
        root: root.to_path_buf(),
        manifest: leaf.desc.clone(),
        platform: key.arch.is_some().then(|| key.display()),
        multi_arch,
        warnings,
        blobs,
    })
}

/// An OCI architecture as users and `uname -m` name it.
fn arch_name(oci: &str) -> String {
    match oci {
        "arm64" => "aarch64".into(),
        "amd64" => "x86_64".into(),
        other => other.into(),
    }
}

fn arch_hint(oci: &str) -> String {
    match oci {
        "arm64" => "aarch64".into(),
        "amd64" => "x86_64".into(),
        other => format!("<{other}, unsupported>"),
    }
}

fn is_index(d: &Descriptor) -> bool {
    match d.media_type() {
        MediaType::ImageIndex => true,
        MediaType::Other(t) => t == "application/vnd.docker.distribution.manifest.list.v2+json",
        _ => false,
    }
}

/// Attestations and other non-image entries that buildx puts beside the images.
fn is_attestation(d: &Descriptor) -> bool {
    d.annotations()
        .as_ref()
        .is_some_and(|a| a.contains_key("vnd.docker.reference.type"))
}

fn collect_leaves(
    root: &Path,
    referrer: &Path,
    descs: &[Descriptor],
    out: &mut Vec<Leaf>,
    depth: usize,
) -> Result<(), PlatformError> {
    for d in descs {
        if is_attestation(d) {
            continue;
        }
        if is_index(d) {
            if depth >= MAX_NESTING {
                return Err(PlatformError::Malformed {
                    path: referrer.to_path_buf(),
                    reason: format!("image indexes nested deeper than {MAX_NESTING}"),
                });
            }
            let path = root.join("blobs/sha256").join(blob_hex(root, referrer, d)?);
            let nested: ImageIndex = parse_json(&path, &read_json(&path)?)?;
            collect_leaves(root, &path, nested.manifests(), out, depth + 1)?;
        } else {
            out.push(Leaf {
                desc: d.clone(),
                platform: PlatformKey::from_descriptor(d),
            });
        }
    }
    Ok(())
}

/// The manifest behind `d` and the platform its config names.
fn read_manifest(
    root: &Path,
    d: &Descriptor,
) -> Result<(ImageManifest, PlatformKey), PlatformError> {
    let path = root.join("blobs/sha256").join(blob_hex(root, root, d)?);
    let manifest: ImageManifest = parse_json(&path, &read_json(&path)?)?;
    let config_path = root
        .join("blobs/sha256")
        .join(blob_hex(root, &path, manifest.config())?);
    let config: ConfigPlatform = parse_json(&config_path, &read_json(&config_path)?)?;
    let key = PlatformKey {
        arch: config.architecture.filter(|a| !a.is_empty()),
        os: config.os.filter(|o| !o.is_empty()),
        variant: config.variant.filter(|v| !v.is_empty()),
    };
    Ok((manifest, key))
}

/// `<64 lowercase hex>` of a sha256 digest whose blob exists; anything else is refused, so a
/// digest can never name a path outside `blobs/`.
fn blob_hex(root: &Path, referrer: &Path, d: &Descriptor) -> Result<String, PlatformError> {
    let digest = d.digest().to_string();
    let missing = || PlatformError::MissingBlob {
        path: referrer.to_path_buf(),
        digest: digest.clone(),
    };
    let hex = blob::sha256_hex(&digest).ok_or_else(missing)?;
    if !root.join("blobs/sha256").join(hex).is_file() {
        return Err(missing());
    }
    Ok(hex.to_string())
}

fn parse_json<T: serde::de::DeserializeOwned>(
    path: &Path,
    bytes: &[u8],
) -> Result<T, PlatformError> {
    serde_json::from_slice(bytes).map_err(|e| PlatformError::Malformed {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

fn read_json(path: &Path) -> Result<Vec<u8>, PlatformError> {
    blob::read_json_bytes(path).map_err(|e| match e {
        BlobError::Io(source) => PlatformError::Io {
            path: path.to_path_buf(),
            source,
        },
        other => PlatformError::Malformed {
            path: path.to_path_buf(),
            reason: other.to_string(),
        },
    })
}

/// Writes the selection as an OCI layout tar: `oci-layout`, the single-entry `index.json`, and
/// the selected blobs read straight from the source layout.
pub fn write_selection_tar(sel: &PlatformSelection, sink: &mut dyn Write) -> io::Result<()> {
    let index = sel.index_json().map_err(io::Error::other)?;
    let mut b = tar::Builder::new(sink);
    b.mode(tar::HeaderMode::Deterministic);
    b.follow_symlinks(true);
    // Every numeric field is set: the guest agent (root) restores ownership, and tar readers
    // refuse a blank uid/gid field.
    let header = |kind: tar::EntryType, mode: u32, size: u64| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_size(size);
        h.set_mtime(0);
        h
    };
    let layout = br#"{"imageLayoutVersion":"1.0.0"}"#;
    for (name, bytes) in [("oci-layout", &layout[..]), ("index.json", &index[..])] {
        let mut h = header(tar::EntryType::Regular, 0o644, bytes.len() as u64);
        b.append_data(&mut h, name, bytes)?;
    }
    for dir in ["blobs/", "blobs/sha256/"] {
        let mut h = header(tar::EntryType::Directory, 0o755, 0);
        b.append_data(&mut h, dir, io::empty())?;
    }
    for hex in &sel.blobs {
        let mut f = File::open(sel.blob_path(hex))?;
        b.append_file(format!("blobs/sha256/{hex}"), &mut f)?;
    }
    b.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture::write_busybox_layout;
    use sha2::{Digest as _, Sha256};
    use std::fs;

    use oci_spec::image::PlatformBuilder;

    /// The guests' platforms: ARMv8 and x86-64 Linux.
    fn arm64() -> Platform {
        PlatformBuilder::default()
            .architecture("arm64")
            .os("linux")
            .variant("v8")
            .build()
            .expect("platform")
    }

    fn amd64() -> Platform {
        PlatformBuilder::default()
            .architecture("amd64")
            .os("linux")
            .build()
            .expect("platform")
    }

    fn fake_busybox(dir: &Path, arch: &str) -> PathBuf {
        let p = dir.join(format!("busybox-{arch}"));
        fs::write(&p, format!("\x7fELF busybox for {arch}")).expect("write");
        p
    }

    fn put_blob(root: &Path, bytes: &[u8]) -> (String, usize) {
        let hex = hex::encode(Sha256::digest(bytes));
        fs::write(root.join("blobs/sha256").join(&hex), bytes).expect("blob");
        (format!("sha256:{hex}"), bytes.len())
    }

    /// The single manifest entry of a fixture layout's index.json.
    fn entry_of(layout: &Path) -> serde_json::Value {
        let v: serde_json::Value =
            serde_json::from_slice(&fs::read(layout.join("index.json")).expect("read"))
                .expect("json");
        v["manifests"][0].clone()
    }

    /// A layout holding both arches' images: blobs merged, index flat or nested.
    fn multi_arch(dir: &Path, nested: bool) -> PathBuf {
        let root = dir.join(if nested { "nested" } else { "flat" });
        let mut entries = Vec::new();
        for arch in ["arm64", "amd64"] {
            let single = dir.join(format!("single-{arch}-{nested}"));
            write_busybox_layout(&single, arch, &fake_busybox(dir, arch), "1.0").expect("layout");
            fs::create_dir_all(root.join("blobs/sha256")).expect("mkdir");
            for e in fs::read_dir(single.join("blobs/sha256")).expect("ls") {
                let e = e.expect("entry");
                fs::copy(e.path(), root.join("blobs/sha256").join(e.file_name())).expect("copy");
            }
            let mut entry = entry_of(&single);
            if arch == "arm64" {
                entry["platform"]["variant"] = "v8".into();
            }
            entries.push(entry);
        }
        fs::write(
            root.join("oci-layout"),
            br#"{"imageLayoutVersion":"1.0.0"}"#,
        )
        .expect("w");
        let inner = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": entries,
        });
        let index = if nested {
            let bytes = serde_json::to_vec(&inner).expect("json");
            let (digest, size) = put_blob(&root, &bytes);
            serde_json::json!({
                "schemaVersion": 2,
                "manifests": [{
                    "mediaType": "application/vnd.oci.image.index.v1+json",
                    "digest": digest,
                    "size": size,
                    "annotations": {"org.opencontainers.image.ref.name": "1.0"},
                }],
            })
        } else {
            inner
        };
        fs::write(
            root.join("index.json"),
            serde_json::to_vec(&index).expect("json"),
        )
        .expect("write");
        crate::validate::validate_oci_layout(&root).expect("the test layout is valid");
        root
    }

    fn config_arch(root: &Path, sel: &PlatformSelection) -> String {
        let m: serde_json::Value =
            serde_json::from_slice(&fs::read(sel.blob_path(&sel.blobs[0])).expect("manifest"))
                .expect("json");
        let cfg = m["config"]["digest"].as_str().expect("digest");
        let c: serde_json::Value = serde_json::from_slice(
            &fs::read(root.join("blobs/sha256").join(&cfg[7..])).expect("config"),
        )
        .expect("json");
        c["architecture"].as_str().expect("arch").to_string()
    }

    #[test]
    fn flat_and_nested_indexes_give_the_target_arch() {
        let d = tempfile::tempdir().expect("tempdir");
        for nested in [false, true] {
            let root = multi_arch(d.path(), nested);
            for (arch, oci, platform) in [
                (arm64(), "arm64", "linux/arm64/v8"),
                (amd64(), "amd64", "linux/amd64"),
            ] {
                let sel = select_platform(&root, &arch).expect("select");
                assert!(sel.multi_arch);
                assert_eq!(sel.platform.as_deref(), Some(platform));
                assert_eq!(config_arch(&root, &sel), oci, "nested={nested}");
                // manifest, config, one layer
                assert_eq!(sel.blobs.len(), 3);
                assert!(sel.note().expect("note").contains(platform));
            }
        }
    }

    #[test]
    fn the_sent_tar_is_a_valid_single_image_layout() {
        let d = tempfile::tempdir().expect("tempdir");
        let root = multi_arch(d.path(), true);
        let sel = select_platform(&root, &amd64()).expect("select");
        let mut tar_bytes = Vec::new();
        write_selection_tar(&sel, &mut tar_bytes).expect("tar");
        // What the agent (root) reads: every header's numeric fields must parse.
        for e in tar::Archive::new(&tar_bytes[..])
            .entries()
            .expect("entries")
        {
            let h = e.expect("entry").header().clone();
            h.uid().expect("uid");
            h.gid().expect("gid");
            h.mtime().expect("mtime");
            h.mode().expect("mode");
        }
        let out = d.path().join("unpacked");
        tar::Archive::new(&tar_bytes[..])
            .unpack(&out)
            .expect("unpack");
        let v = crate::validate::validate_oci_layout(&out).expect("valid");
        assert_eq!((v.manifests, v.blobs), (1, 3));
        let sel2 = select_platform(&out, &amd64()).expect("select again");
        assert!(!sel2.multi_arch);
        assert_eq!(config_arch(&out, &sel2), "amd64");
        // The other arch's blobs stayed behind (3 of the 6 image blobs + the nested index).
        let n = fs::read_dir(out.join("blobs/sha256")).expect("ls").count();
        assert_eq!(n, 3);
    }

    #[test]
    fn a_missing_platform_lists_what_is_present() {
        let d = tempfile::tempdir().expect("tempdir");
        let root = multi_arch(d.path(), false);
        // Drop amd64 from the index: an arm64-only "multi-arch" image with an extra s390x entry.
        let mut index: serde_json::Value =
            serde_json::from_slice(&fs::read(root.join("index.json")).expect("read"))
                .expect("json");
        let mut other = index["manifests"][0].clone();
        other["platform"] = serde_json::json!({"architecture": "s390x", "os": "linux"});
        index["manifests"][1] = other;
        fs::write(
            root.join("index.json"),
            serde_json::to_vec(&index).expect("json"),
        )
        .expect("write");
        let err = select_platform(&root, &amd64()).expect_err("no amd64");
        let msg = err.to_string();
        assert!(matches!(err, PlatformError::NotFound { .. }), "{msg}");
        assert!(
            msg.contains("x86_64 (amd64) not found")
                && msg.contains("linux/arm64/v8")
                && msg.contains("linux/s390x"),
            "{msg}"
        );
    }

    #[test]
    fn a_single_image_of_another_arch_is_a_mismatch() {
        let d = tempfile::tempdir().expect("tempdir");
        let root = d.path().join("arm");
        write_busybox_layout(&root, "arm64", &fake_busybox(d.path(), "arm64"), "1.0")
            .expect("layout");
        let sel = select_platform(&root, &arm64()).expect("match");
        assert!(!sel.multi_arch && sel.note().is_none() && sel.warnings.is_empty());
        let msg = select_platform(&root, &amd64())
            .expect_err("mismatch")
            .to_string();
        assert!(
            msg.contains("Architecture mismatch!") && msg.contains("--arch aarch64"),
            "{msg}"
        );

        // An index entry claiming amd64 for an arm64 config: the config wins.
        let mut index: serde_json::Value =
            serde_json::from_slice(&fs::read(root.join("index.json")).expect("read"))
                .expect("json");
        index["manifests"][0]["platform"]["architecture"] = "amd64".into();
        fs::write(
            root.join("index.json"),
            serde_json::to_vec(&index).expect("json"),
        )
        .expect("write");
        let msg = select_platform(&root, &amd64())
            .expect_err("lying index")
            .to_string();
        assert!(msg.contains("Architecture mismatch!"), "{msg}");
    }

    #[test]
    fn an_image_without_an_arch_is_imported_with_a_warning() {
        let d = tempfile::tempdir().expect("tempdir");
        let root = d.path().join("noarch");
        fs::create_dir_all(root.join("blobs/sha256")).expect("mkdir");
        fs::write(
            root.join("oci-layout"),
            br#"{"imageLayoutVersion":"1.0.0"}"#,
        )
        .expect("w");
        let (layer, layer_size) = put_blob(&root, b"not really a layer");
        let (config, config_size) = put_blob(&root, br#"{"rootfs":{"type":"layers"}}"#);
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": config, "size": config_size},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                        "digest": layer, "size": layer_size}],
        });
        let (m, m_size) = put_blob(&root, &serde_json::to_vec(&manifest).expect("json"));
        let index = serde_json::json!({"schemaVersion": 2, "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": m, "size": m_size}]});
        fs::write(
            root.join("index.json"),
            serde_json::to_vec(&index).expect("json"),
        )
        .expect("write");
        let sel = select_platform(&root, &arm64()).expect("select");
        assert_eq!(sel.platform, None);
        assert_eq!(sel.warnings.len(), 1, "{:?}", sel.warnings);
        assert!(sel.warnings[0].contains("names no architecture"));
    }

    #[test]
    fn missing_blobs_are_named() {
        let d = tempfile::tempdir().expect("tempdir");
        let root = multi_arch(d.path(), true);
        let index: serde_json::Value =
            serde_json::from_slice(&fs::read(root.join("index.json")).expect("read"))
                .expect("json");
        let nested = index["manifests"][0]["digest"].as_str().expect("digest");
        fs::remove_file(root.join("blobs/sha256").join(&nested[7..])).expect("rm");
        let msg = select_platform(&root, &arm64())
            .expect_err("missing")
            .to_string();
        assert!(msg.contains(nested), "{msg}");
    }
}
