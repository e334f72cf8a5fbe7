//! Fuzzes the OCI builder's base-image reader (`oci::base::BaseImage::open`, OCI_BASE_IMAGE):
//! the input is up to 8 layer blobs (plain or gzip tar, separated by `\n--8<--\n`) of an
//! otherwise fixed amd64 image; the reader builds the merged view with whiteout semantics.
//! Asserts: every path in the view is relative and plain (no `..`, no root), no whiteout marker
//! survives into the view, and `whiteouts` over the view does not panic and names only view paths.
#![no_main]

use std::fs;
use std::path::Component;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use vcontainer_fuzz::{sha256_hex, split_parts, Scratch};
use vcontainer_oci::base::{whiteout_name, whiteouts, BaseImage};

static SCRATCH: OnceLock<Scratch> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let scratch = SCRATCH.get_or_init(|| Scratch::new("oci-base"));
    scratch.reset();
    let root = scratch.root.join("base");
    let blobs = root.join("blobs/sha256");
    fs::create_dir_all(&blobs).expect("mkdir");
    let layers: Vec<&[u8]> = split_parts(data).into_iter().take(8).collect();
    let mut descs = Vec::new();
    let mut diff_ids = Vec::new();
    for l in &layers {
        let hex = sha256_hex(l);
        fs::write(blobs.join(&hex), l).expect("layer");
        descs.push(format!(
            r#"{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:{hex}","size":{}}}"#,
            l.len()
        ));
        diff_ids.push(format!(r#""sha256:{hex}""#));
    }
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":[{}]}}}}"#,
        diff_ids.join(",")
    );
    let chex = sha256_hex(config.as_bytes());
    fs::write(blobs.join(&chex), &config).expect("config");
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:{chex}","size":{}}},"layers":[{}]}}"#,
        config.len(),
        descs.join(",")
    );
    let mhex = sha256_hex(manifest.as_bytes());
    fs::write(blobs.join(&mhex), &manifest).expect("manifest");
    let index = format!(
        r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:{mhex}","size":{},"annotations":{{"org.opencontainers.image.ref.name":"base"}}}}]}}"#,
        manifest.len()
    );
    fs::write(root.join("index.json"), index).expect("index");
    fs::write(root.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).expect("marker");

    let Ok(base) = BaseImage::open(&root, Some("base"), "amd64") else {
        return;
    };
    assert_eq!(base.manifest.layers().len(), layers.len());
    for p in base.view.keys() {
        assert!(!p.as_os_str().is_empty(), "empty path in the view");
        assert!(
            p.components().all(|c| matches!(c, Component::Normal(_))),
            "unsafe path {p:?} in the view"
        );
        let name = p.file_name().expect("a name").to_string_lossy();
        assert!(
            !name.starts_with(".wh."),
            "whiteout marker {p:?} in the view"
        );
    }
    // A rootfs that keeps every other path of the view.
    let kept: Vec<_> = base.view.keys().step_by(2).cloned().collect();
    let wh = whiteouts(&base.view, |p| kept.iter().any(|k| k == p).then_some(true));
    for w in &wh {
        assert!(
            base.view.contains_key(w),
            "whiteout for {w:?} not in the view"
        );
        let _ = whiteout_name(w);
    }
    let _ = base.layer_blobs();
});
