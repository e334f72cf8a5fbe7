//! One image build, start to finish (see the module diagram in `mod.rs`).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use oci_spec::image::{ImageManifestBuilder, MediaType, PlatformBuilder};

use super::base::{file_sha256, BaseImage};
use super::cache::{self, CachedLayer, KeyInputs, LayerCache, Lookup};
use super::gzip::{HashWriter, ParallelGzip};
use super::image_config::{self, ImageSettings};
use super::layer_spec::LayerSpec;
use super::layer_tar::{write_layer, TarOptions};
use super::layout::{self, LayoutWriter};
pub use super::plan::OwnerPolicy;
use super::plan::{self, LayerPlan};
use super::tree::Tree;
use super::OciError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// gzip at this level (0–9), every core, multi-member (see `gzip`).
    Gzip(u32),
    None,
}

impl Compression {
    fn media_type(self) -> MediaType {
        match self {
            Compression::Gzip(_) => MediaType::ImageLayerGzip,
            Compression::None => MediaType::ImageLayer,
        }
    }

    fn key(self) -> String {
        match self {
            Compression::Gzip(l) => format!("gzip-{l}"),
            Compression::None => "none".into(),
        }
    }
}

/// Everything a build needs.
#[derive(Debug, Clone)]
pub struct BuildRequest {
    pub rootfs: PathBuf,
    /// The layout directory to write (replaced if it exists).
    pub output: PathBuf,
    /// Also write the layout as an OCI archive here.
    pub archive: Option<PathBuf>,
    pub tag: String,
    /// OCI architecture (`arm64`, `amd64`, …) and variant.
    pub arch: String,
    pub variant: Option<String>,
    pub os: String,
    /// Empty: one layer with the whole rootfs.
    pub layers: Vec<LayerSpec>,
    /// A base image layout and optionally the tag to use from it.
    pub base: Option<(PathBuf, Option<String>)>,
    pub settings: ImageSettings,
    /// The layer cache; `None` disables it.
    pub cache_dir: Option<PathBuf>,
    pub compression: Compression,
    pub owner: OwnerPolicy,
    /// `SOURCE_DATE_EPOCH`: clamps file times, fixes every timestamp in the image.
    pub source_date_epoch: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheUse {
    Hit,
    Miss,
    Off,
}

#[derive(Debug, Clone)]
pub struct LayerReport {
    pub name: String,
    pub kind: String,
    pub entries: usize,
    pub diff_id: String,
    pub digest: String,
    pub size: u64,
    pub cache: CacheUse,
    pub seconds: f64,
}

#[derive(Debug, Clone)]
pub struct BuildReport {
    pub layout: PathBuf,
    pub archive: Option<PathBuf>,
    pub manifest_digest: String,
    pub base_layers: usize,
    /// The layers this build made (base layers excluded).
    pub layers: Vec<LayerReport>,
    pub warnings: Vec<String>,
}

/// Builds the image `req` describes; progress and cache lines go to `log`.
pub fn build(req: &BuildRequest, log: &mut dyn FnMut(&str)) -> Result<BuildReport, OciError> {
    let tree = Tree::scan(&req.rootfs)?;
    let base = match &req.base {
        Some((path, tag)) => Some(BaseImage::open(path, tag.as_deref(), &req.arch)?),
        None => None,
    };
    let plans = plan::assign(&tree, &req.layers, base.as_ref(), req.owner)?;
    let mut warnings = tree.warnings.clone();
    for p in &plans {
        warnings.extend(p.warnings.iter().cloned());
    }
    for w in &warnings {
        log(&format!("warning: {w}"));
    }
    let cache = req.cache_dir.as_deref().map(LayerCache::open).transpose()?;
    let created_secs = req.source_date_epoch.unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64)
    });
    let created = image_config::rfc3339(created_secs);
    let opts = TarOptions {
        owner: req.owner,
        clamp_mtime: req.source_date_epoch,
    };
    let writer = LayoutWriter::new(&req.output)?;

    let mut layer_descs = Vec::new();
    let mut diff_ids = Vec::new();
    let mut base_layers = 0;
    if let Some(b) = &base {
        for ((desc, path), diff_id) in b
            .layer_blobs()?
            .into_iter()
            .zip(b.config.rootfs().diff_ids())
        {
            let digest = desc.digest().to_string();
            if format!("sha256:{}", hex::encode(file_sha256(&path)?)) != digest {
                return Err(OciError::Base {
                    path: b.root.clone(),
                    reason: format!("blob {digest} does not match its digest"),
                });
            }
            writer.add_link(&path, &digest)?;
            layer_descs.push(desc);
            diff_ids.push(diff_id.clone());
            base_layers += 1;
        }
    }

    let mut reports = Vec::new();
    let mut history = Vec::new();
    let n = plans.len();
    for (i, plan) in plans.iter().enumerate() {
        log(&format!(
            "OCI: layer {}/{n}: '{}' ({}), {} entries",
            i + 1,
            plan.name,
            plan.kind,
            plan.entries.len()
        ));
        let report = build_layer(req, &tree, plan, &opts, cache.as_ref(), &writer, i, log)?;
        layer_descs.push(layout::descriptor(
            req.compression.media_type(),
            &report.digest,
            report.size,
        )?);
        diff_ids.push(report.diff_id.clone());
        history.push(image_config::history(
            &created,
            &plan.name,
            &plan.kind,
            plan.entries.is_empty(),
        )?);
        reports.push(report);
    }

    let config = image_config::image_config(
        &req.settings,
        base.as_ref().map(|b| &b.config),
        &req.arch,
        req.variant.as_deref(),
        &req.os,
        &created,
        diff_ids,
        history,
    )?;
    let config_desc = writer.add_bytes(MediaType::ImageConfig, &super::canonical_json(&config)?)?;
    let manifest = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(config_desc)
        .layers(layer_descs)
        .build()
        .map_err(|e| OciError::Invalid(format!("manifest: {e}")))?;
    let mut manifest_desc =
        writer.add_bytes(MediaType::ImageManifest, &super::canonical_json(&manifest)?)?;
    let mut platform = PlatformBuilder::default()
        .architecture(oci_spec::image::Arch::from(req.arch.as_str()))
        .os(oci_spec::image::Os::from(req.os.as_str()));
    if let Some(v) = &req.variant {
        platform = platform.variant(v.clone());
    }
    manifest_desc.set_platform(Some(
        platform
            .build()
            .map_err(|e| OciError::Invalid(format!("platform: {e}")))?,
    ));
    manifest_desc.set_annotations(Some(
        [(image_config::LABEL_REF_NAME.to_string(), req.tag.clone())].into(),
    ));
    let manifest_digest = manifest_desc.digest().to_string();
    let layout = writer.commit(manifest_desc)?;
    if let Some(a) = &req.archive {
        layout::write_archive(&layout, a, created_secs.max(0) as u64)?;
    }
    Ok(BuildReport {
        layout,
        archive: req.archive.clone(),
        manifest_digest,
        base_layers,
        layers: reports,
        warnings,
    })
}

#[allow(clippy::too_many_arguments)]
fn build_layer(
    req: &BuildRequest,
    tree: &Tree,
    plan: &LayerPlan,
    opts: &TarOptions,
    cache: Option<&LayerCache>,
    writer: &LayoutWriter,
    index: usize,
    log: &mut dyn FnMut(&str),
) -> Result<LayerReport, OciError> {
    let started = Instant::now();
    let mut report = LayerReport {
        name: plan.name.clone(),
        kind: plan.kind.clone(),
        entries: plan.entries.len(),
        diff_id: String::new(),
        digest: String::new(),
        size: 0,
        cache: CacheUse::Off,
        seconds: 0.0,
    };
    // With a cache: hash the uncompressed tar first (cheap), then compress only on a miss.
    let mut keyed = None;
    if let Some(cache) = cache {
        let w = write_layer(plan, tree, opts, HashWriter::new(io::sink()))?;
        let (_, diff_id, _) = w.finish();
        let key = cache::key(&KeyInputs {
            layer_name: &plan.name,
            layer_type: &plan.kind,
            content: &plan.items,
            pkg_versions: &plan.pkg_versions,
            arch: &req.arch,
            diff_id: &diff_id,
            compression: &req.compression.key(),
        })?;
        let short = &key[..16];
        match cache.lookup(&key) {
            Lookup::Hit(c, blob) => {
                log(&format!("OCI Cache HIT: Layer '{}' ({short})", plan.name));
                writer.add_link(&blob, &c.digest)?;
                report.diff_id = c.diff_id;
                report.digest = c.digest;
                report.size = c.size;
                report.cache = CacheUse::Hit;
                report.seconds = started.elapsed().as_secs_f64();
                return Ok(report);
            }
            Lookup::Corrupt(why) => {
                log(&format!(
                    "OCI Cache CORRUPT: Layer '{}' ({short}): {why}; rebuilding it",
                    plan.name
                ));
            }
            Lookup::Miss => {}
        }
        log(&format!(
            "OCI Cache MISS: Layer '{}' ({short}{})",
            plan.name,
            versions_note(&plan.pkg_versions)
        ));
        report.cache = CacheUse::Miss;
        keyed = Some((key, diff_id));
    }

    let tmp = writer.scratch(&format!("layer-{index}.partial"));
    let file = BufWriter::with_capacity(
        1 << 20,
        File::create(&tmp).map_err(|e| OciError::io(&tmp, e))?,
    );
    let io_err = |e: io::Error| OciError::io(&tmp, e);
    let (diff_id, digest, size) = match req.compression {
        Compression::Gzip(level) => {
            let compressed = HashWriter::new(file);
            let gz = ParallelGzip::new(compressed, level, 0);
            let (gz, diff_id, _) = write_layer(plan, tree, opts, HashWriter::new(gz))?.finish();
            let (mut file, digest, size) = gz.finish().map_err(io_err)?.finish();
            file.flush().map_err(io_err)?;
            (diff_id, digest, size)
        }
        Compression::None => {
            let (mut file, digest, size) =
                write_layer(plan, tree, opts, HashWriter::new(file))?.finish();
            file.flush().map_err(io_err)?;
            (digest.clone(), digest, size)
        }
    };
    writer.add_file(&tmp, &digest)?;
    if let Some((key, first)) = keyed {
        if first != diff_id {
            return Err(OciError::Changed {
                path: tree.root.clone(),
            });
        }
        if let Some(cache) = cache {
            cache.store(
                &CachedLayer {
                    key: key.clone(),
                    layer_name: plan.name.clone(),
                    diff_id: diff_id.clone(),
                    digest: digest.clone(),
                    size,
                },
                &writer.blob_path(&digest),
            )?;
            log(&format!(
                "OCI Cache: Saving layer '{}' to cache ({})",
                plan.name,
                &key[..16]
            ));
        }
    }
    report.diff_id = diff_id;
    report.digest = digest;
    report.size = size;
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// ` name:p1=v1 p2=v2 p3=v3 ...+N more` for a packages layer's MISS line (upstream's format).
fn versions_note(v: &BTreeMap<String, String>) -> String {
    if v.is_empty() {
        return String::new();
    }
    let mut s: Vec<String> = v.iter().take(3).map(|(p, v)| format!("{p}={v}")).collect();
    if v.len() > 3 {
        s.push(format!("...+{} more", v.len() - 3));
    }
    format!(": {}", s.join(" "))
}

/// `true` if `p` names an existing OCI layout (has `index.json`).
pub fn is_layout(p: &Path) -> bool {
    p.join("index.json").is_file()
}
