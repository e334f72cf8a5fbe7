//! The layer cache: compressed layer blobs kept between builds, keyed by everything that
//! determines their bytes. Upstream keyed on name, package list, PKGV and machine only, so a
//! changed file with an unchanged version (PR bumps, patches, postprocess) hit a stale entry
//! (W16). Here the key includes the layer's `diff_id` — the sha256 of its uncompressed tar, which
//! costs one read of the files, a fraction of compressing them — so a hit can never be stale;
//! the spec fields are in it too, to make entries explainable. Each entry is checked against its
//! recorded digest before use; a corrupted one is reported and rebuilt.
//!
//! Layout: `<dir>/<key>/layer.blob` + `<dir>/<key>/entry.json`, written via a temporary directory
//! and a rename, so concurrent builds never see half an entry.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::base::file_sha256;
use super::OciError;

/// Bump when anything about how blobs are produced changes (tar format, compressor, chunking).
const FORMAT: u32 = 1;

/// What the key is made of.
#[derive(Debug, Serialize)]
pub struct KeyInputs<'a> {
    pub layer_name: &'a str,
    pub layer_type: &'a str,
    pub content: &'a [String],
    pub pkg_versions: &'a BTreeMap<String, String>,
    pub arch: &'a str,
    pub diff_id: &'a str,
    pub compression: &'a str,
}

/// The cache key: sha256 of the canonical JSON of the inputs and the format version.
pub fn key(inputs: &KeyInputs<'_>) -> Result<String, OciError> {
    #[derive(Serialize)]
    struct Versioned<'a, 'b> {
        format: u32,
        #[serde(flatten)]
        inputs: &'b KeyInputs<'a>,
    }
    let json = super::canonical_json(&Versioned {
        format: FORMAT,
        inputs,
    })?;
    Ok(super::sha256_digest(&json)
        .trim_start_matches("sha256:")
        .to_string())
}

/// One cached layer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CachedLayer {
    pub key: String,
    pub layer_name: String,
    pub diff_id: String,
    pub digest: String,
    pub size: u64,
}

pub struct LayerCache {
    dir: PathBuf,
}

/// A lookup's result.
pub enum Lookup {
    Hit(CachedLayer, PathBuf),
    Miss,
    /// The entry exists but does not verify; it will be replaced.
    Corrupt(String),
}

impl LayerCache {
    pub fn open(dir: &Path) -> Result<LayerCache, OciError> {
        fs::create_dir_all(dir).map_err(|e| OciError::io(dir, e))?;
        Ok(LayerCache {
            dir: dir.to_path_buf(),
        })
    }

    /// Looks `key` up, verifying the blob's size and sha256 against the entry.
    pub fn lookup(&self, key: &str) -> Lookup {
        let entry = self.dir.join(key);
        let meta = entry.join("entry.json");
        let blob = entry.join("layer.blob");
        let Ok(text) = fs::read(&meta) else {
            return if entry.exists() {
                Lookup::Corrupt("entry.json is missing".into())
            } else {
                Lookup::Miss
            };
        };
        let cached: CachedLayer = match serde_json::from_slice(&text) {
            Ok(c) => c,
            Err(e) => return Lookup::Corrupt(format!("entry.json: {e}")),
        };
        if cached.key != key {
            return Lookup::Corrupt("entry.json names another key".into());
        }
        match fs::metadata(&blob) {
            Ok(m) if m.len() == cached.size => {}
            Ok(m) => {
                return Lookup::Corrupt(format!(
                    "blob is {} bytes, {} recorded",
                    m.len(),
                    cached.size
                ))
            }
            Err(e) => return Lookup::Corrupt(format!("blob: {e}")),
        }
        match file_sha256(&blob) {
            Ok(h) if format!("sha256:{}", hex::encode(h)) == cached.digest => {
                Lookup::Hit(cached, blob)
            }
            Ok(_) => Lookup::Corrupt("blob does not match its digest".into()),
            Err(e) => Lookup::Corrupt(e.to_string()),
        }
    }

    /// Stores a copy of `blob` as `entry` (replacing a corrupt entry of the same key).
    pub fn store(&self, entry: &CachedLayer, blob: &Path) -> Result<(), OciError> {
        let tmp = tempfile::Builder::new()
            .prefix(".store-")
            .tempdir_in(&self.dir)
            .map_err(|e| OciError::io(&self.dir, e))?;
        let dst = tmp.path().join("layer.blob");
        link_or_copy(blob, &dst).map_err(|e| OciError::io(&dst, e))?;
        let meta = tmp.path().join("entry.json");
        let json = serde_json::to_vec_pretty(entry)
            .map_err(|e| OciError::Invalid(format!("cache entry: {e}")))?;
        fs::write(&meta, json).map_err(|e| OciError::io(&meta, e))?;
        let final_dir = self.dir.join(&entry.key);
        if final_dir.exists() {
            fs::remove_dir_all(&final_dir).map_err(|e| OciError::io(&final_dir, e))?;
        }
        let kept = tmp.keep();
        match fs::rename(&kept, &final_dir) {
            Ok(()) => Ok(()),
            // Another build stored the same key meanwhile: theirs is as good as ours.
            Err(_) if final_dir.join("entry.json").exists() => {
                let _ = fs::remove_dir_all(&kept);
                Ok(())
            }
            Err(e) => {
                let _ = fs::remove_dir_all(&kept);
                Err(OciError::io(&final_dir, e))
            }
        }
    }
}

/// A hard link where possible (blobs are immutable), else a copy.
pub(crate) fn link_or_copy(src: &Path, dst: &Path) -> io::Result<()> {
    if fs::hard_link(src, dst).is_ok() {
        return Ok(());
    }
    fs::copy(src, dst).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs<'a>(
        name: &'a str,
        content: &'a [String],
        versions: &'a BTreeMap<String, String>,
        diff_id: &'a str,
    ) -> KeyInputs<'a> {
        KeyInputs {
            layer_name: name,
            layer_type: "packages",
            content,
            pkg_versions: versions,
            arch: "arm64",
            diff_id,
            compression: "gzip-6",
        }
    }

    #[test]
    fn the_key_changes_with_every_input() {
        let c = vec!["a".to_string(), "b".to_string()];
        let v: BTreeMap<String, String> = [("a".to_string(), "1".to_string())].into();
        let v2: BTreeMap<String, String> = [("a".to_string(), "2".to_string())].into();
        let k = key(&inputs("base", &c, &v, "sha256:1")).expect("key");
        assert_eq!(k.len(), 64);
        assert_eq!(k, key(&inputs("base", &c, &v, "sha256:1")).expect("key"));
        for other in [
            key(&inputs("app", &c, &v, "sha256:1")),
            key(&inputs("base", &c[..1], &v, "sha256:1")),
            key(&inputs("base", &c, &v2, "sha256:1")),
            // Same spec and versions, different bytes (a rebuilt package, a patched file):
            // upstream's key stayed the same here.
            key(&inputs("base", &c, &v, "sha256:2")),
        ] {
            assert_ne!(k, other.expect("key"));
        }
    }

    #[test]
    fn store_lookup_and_corruption() {
        let d = tempfile::tempdir().expect("tmp");
        let cache = LayerCache::open(&d.path().join("c")).expect("open");
        assert!(matches!(cache.lookup("k1"), Lookup::Miss));
        let blob = d.path().join("blob");
        fs::write(&blob, b"layer bytes").expect("w");
        let entry = CachedLayer {
            key: "k1".into(),
            layer_name: "base".into(),
            diff_id: "sha256:x".into(),
            digest: super::super::sha256_digest(b"layer bytes"),
            size: 11,
        };
        cache.store(&entry, &blob).expect("store");
        match cache.lookup("k1") {
            Lookup::Hit(c, _) => assert_eq!(c, entry),
            _ => panic!("expected a hit"),
        }
        // Flip the cached bytes (same size): detected.
        let cached = d.path().join("c/k1/layer.blob");
        fs::remove_file(&cached).expect("rm");
        fs::write(&cached, b"LAYER BYTES").expect("w");
        assert!(matches!(cache.lookup("k1"), Lookup::Corrupt(_)));
        // Rebuilt: stored again over the corrupt entry.
        cache.store(&entry, &blob).expect("store again");
        assert!(matches!(cache.lookup("k1"), Lookup::Hit(..)));
    }
}
