//! OCI image layouts without a VM, QEMU, tokio or clap: what a Yocto native recipe or another tool
//! can use on its own.
//!
//! - Reading a layout someone else wrote: [`validate`] (structure, digests, sizes) and
//!   [`platform`] (the manifest for a target platform, and the single-image tar sent to a guest).
//! - Writing one: the image builder below.
//!
//! The OCI image builder (`vcontainer oci build`): a target root filesystem becomes an OCI image
//! layout, in one layer or in several (`name:type:content` specs, delta-only), optionally on top
//! of a base image, with a content-keyed layer cache and byte-identical rebuilds under
//! `SOURCE_DATE_EPOCH`; plus multi-arch index assembly (`vcontainer oci index`).
//!
//! Upstream did this with image-oci.bbclass driving umoci (or sloci); see
//! reference/upstream-bundling-oci.md §5. The data flow here:
//!
//! ```text
//! rootfs ──tree::scan──▶ Tree ──plan::assign (layer specs, pkgdb, base::BaseView)──▶ [LayerPlan]
//!   each LayerPlan ──layer_tar::write──▶ tar ──▶ sha256 (diff_id) ──▶ cache key ─┬─ HIT: cached blob
//!                                                                               └─ MISS: gzip::ParallelGzip
//!   blobs + image_config + manifest ──layout::LayoutWriter──▶ temp dir ──rename──▶ output
//! ```

pub mod base;
pub mod blob;
pub mod build;
pub mod cache;
mod error;
pub mod fixture;
pub mod gzip;
pub mod image_config;
pub mod index;
pub mod layer_spec;
pub mod layer_tar;
pub mod layout;
pub mod pkgdb;
pub mod plan;
pub mod platform;
pub mod tree;
pub mod validate;
pub mod xattrs;

pub use build::{build, BuildReport, BuildRequest, Compression, OwnerPolicy};
pub use error::OciError;

/// The OCI architecture name for a Yocto/GNU or OCI spelling (`aarch64` → `arm64`, …), and the
/// default variant that goes with it.
pub fn oci_arch(arch: &str) -> (String, Option<String>) {
    match arch {
        "aarch64" | "arm64" => ("arm64".into(), None),
        "x86_64" | "x86-64" | "amd64" => ("amd64".into(), None),
        "i386" | "i486" | "i586" | "i686" | "x86" | "386" => ("386".into(), None),
        "arm" | "armv7" | "armv7a" | "armhf" => ("arm".into(), Some("v7".into())),
        "armv6" => ("arm".into(), Some("v6".into())),
        "armv5" | "armel" => ("arm".into(), Some("v5".into())),
        "powerpc64le" | "ppc64le" => ("ppc64le".into(), None),
        "mips64el" | "mips64le" => ("mips64le".into(), None),
        other => (other.to_string(), None),
    }
}

/// `sha256:<hex>` of `bytes`.
pub(crate) fn sha256_digest(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// JSON with sorted object keys (serde_json's map is a BTreeMap here), so that configs and
/// manifests built from hash maps are byte-identical from one build to the next.
pub(crate) fn canonical_json<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, OciError> {
    let v = serde_json::to_value(value).map_err(|e| OciError::Invalid(format!("JSON: {e}")))?;
    serde_json::to_vec(&v).map_err(|e| OciError::Invalid(format!("JSON: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arch_names_map_to_oci() {
        assert_eq!(oci_arch("aarch64").0, "arm64");
        assert_eq!(oci_arch("x86_64").0, "amd64");
        assert_eq!(oci_arch("armv7"), ("arm".into(), Some("v7".into())));
        assert_eq!(oci_arch("riscv64").0, "riscv64");
    }

    #[test]
    fn canonical_json_sorts_keys() {
        let mut m = std::collections::HashMap::new();
        for k in ["z", "a", "m", "b"] {
            m.insert(k.to_string(), 1);
        }
        assert_eq!(
            canonical_json(&m).expect("json"),
            br#"{"a":1,"b":1,"m":1,"z":1}"#
        );
    }
}
