//! Multi-arch images: per-arch layouts (one image each) assembled into one layout whose
//! `index.json` names a nested image index blob with one platform entry per arch — the form
//! upstream's oci-multiarch.bbclass writes, here with the tag as `ref.name` so tools can select
//! it by tag. Blobs are hard-linked (or copied) and verified.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use oci_spec::image::{
    Descriptor, ImageConfiguration, ImageIndex, ImageIndexBuilder, ImageManifest, MediaType,
    PlatformBuilder,
};

use super::base::file_sha256;
use super::blob::{self, read_json};
use super::layout::LayoutWriter;
use super::OciError;

fn blob(root: &Path, d: &Descriptor) -> Result<PathBuf, OciError> {
    blob::blob_path(root, d).map_err(|e| OciError::Invalid(format!("{}: {e}", root.display())))
}

/// Assembles `layouts` (each holding exactly one image) into a multi-arch layout at `out`.
/// Returns the platforms, in input order.
pub fn assemble(layouts: &[PathBuf], out: &Path, tag: &str) -> Result<Vec<String>, OciError> {
    if layouts.is_empty() {
        return Err(OciError::Invalid("no per-arch layouts given".into()));
    }
    let writer = LayoutWriter::new(out)?;
    let mut entries = Vec::new();
    let mut platforms = Vec::new();
    let mut seen = HashSet::new();
    for root in layouts {
        let index: ImageIndex = read_json(&root.join("index.json"))?;
        let [desc] = index.manifests().as_slice() else {
            return Err(OciError::Invalid(format!(
                "{}: holds {} images; a per-arch layout must hold exactly one",
                root.display(),
                index.manifests().len()
            )));
        };
        if *desc.media_type() != MediaType::ImageManifest {
            return Err(OciError::Invalid(format!(
                "{}: its image is not a single-platform manifest",
                root.display()
            )));
        }
        let manifest_path = blob(root, desc)?;
        let manifest: ImageManifest = read_json(&manifest_path)?;
        let config: ImageConfiguration = read_json(&blob(root, manifest.config())?)?;
        let arch = config.architecture().to_string();
        let mut platform = PlatformBuilder::default()
            .architecture(config.architecture().clone())
            .os(config.os().clone());
        let mut name = format!("{}/{arch}", config.os());
        if let Some(v) = config.variant() {
            platform = platform.variant(v.clone());
            name = format!("{name}/{v}");
        }
        if !seen.insert(name.clone()) {
            return Err(OciError::Invalid(format!(
                "{}: a second image for {name}",
                root.display()
            )));
        }
        for d in std::iter::once(desc)
            .chain(std::iter::once(manifest.config()))
            .chain(manifest.layers())
        {
            let p = blob(root, d)?;
            let digest = d.digest().to_string();
            if format!("sha256:{}", hex::encode(file_sha256(&p)?)) != digest {
                return Err(OciError::Invalid(format!(
                    "{}: blob {digest} does not match its digest",
                    root.display()
                )));
            }
            writer.add_link(&p, &digest)?;
        }
        let mut entry = desc.clone();
        entry.set_annotations(None);
        entry.set_platform(Some(
            platform
                .build()
                .map_err(|e| OciError::Invalid(format!("platform: {e}")))?,
        ));
        entries.push(entry);
        platforms.push(name);
    }
    let nested = ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(entries)
        .build()
        .map_err(|e| OciError::Invalid(format!("index: {e}")))?;
    let mut top = writer.add_bytes(MediaType::ImageIndex, &super::canonical_json(&nested)?)?;
    top.set_annotations(Some(
        [(
            super::image_config::LABEL_REF_NAME.to_string(),
            tag.to_string(),
        )]
        .into(),
    ));
    writer.commit(top)?;
    Ok(platforms)
}
