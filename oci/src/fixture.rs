//! Small OCI image layouts for tests and benchmarks (no registry is reachable, so they make their
//! own images): one uncompressed layer holding a static busybox, a few applet links and optional
//! extra files (e.g. a large random file to measure transfers).

use std::fs;
use std::io;
use std::path::Path;

use sha2::{Digest, Sha256};

/// Applets linked to busybox in the image.
const APPLETS: &[&str] = &[
    "sh", "echo", "cat", "ls", "uname", "true", "false", "sleep", "rm", "mkdir", "stty", "tty",
    "httpd", "nc", "wc", "env",
];

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn write_blob(root: &Path, bytes: &[u8]) -> io::Result<String> {
    let hex = sha256_hex(bytes);
    fs::write(root.join("blobs/sha256").join(&hex), bytes)?;
    Ok(format!("sha256:{hex}"))
}

/// The layer: `bin/busybox`, symlinks for [`APPLETS`] and `extra` files, deterministic headers.
fn busybox_layer(busybox: &[u8], extra: &[(&str, &[u8])]) -> io::Result<Vec<u8>> {
    let mut b = tar::Builder::new(Vec::new());
    let mut dir = tar::Header::new_gnu();
    dir.set_entry_type(tar::EntryType::Directory);
    dir.set_mode(0o755);
    dir.set_size(0);
    dir.set_mtime(0);
    dir.set_cksum();
    b.append_data(&mut dir.clone(), "bin/", io::empty())?;
    let mut file = tar::Header::new_gnu();
    file.set_mode(0o755);
    file.set_size(busybox.len() as u64);
    file.set_mtime(0);
    file.set_cksum();
    b.append_data(&mut file, "bin/busybox", busybox)?;
    for applet in APPLETS {
        let mut link = tar::Header::new_gnu();
        link.set_entry_type(tar::EntryType::Symlink);
        link.set_mode(0o777);
        link.set_size(0);
        link.set_mtime(0);
        b.append_link(&mut link, format!("bin/{applet}"), "busybox")?;
    }
    for (path, bytes) in extra {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_size(bytes.len() as u64);
        h.set_mtime(0);
        h.set_cksum();
        b.append_data(&mut h, path, *bytes)?;
    }
    b.into_inner()
}

/// Writes an OCI image layout at `root` with one image for `oci_arch` (`arm64`, `amd64`) whose
/// layer holds `busybox` (a static busybox binary for that arch). `ref_name` becomes the index's
/// `org.opencontainers.image.ref.name` annotation.
pub fn write_busybox_layout(
    root: &Path,
    oci_arch: &str,
    busybox: &Path,
    ref_name: &str,
) -> io::Result<()> {
    write_layout_with_files(root, oci_arch, busybox, ref_name, &[])
}

/// Like [`write_busybox_layout`], with `extra` files (path inside the image, content) in the layer.
pub fn write_layout_with_files(
    root: &Path,
    oci_arch: &str,
    busybox: &Path,
    ref_name: &str,
    extra: &[(&str, &[u8])],
) -> io::Result<()> {
    fs::create_dir_all(root.join("blobs/sha256"))?;
    fs::write(
        root.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )?;
    let layer = busybox_layer(&fs::read(busybox)?, extra)?;
    let layer_digest = write_blob(root, &layer)?;
    let config = serde_json::json!({
        "architecture": oci_arch,
        "os": "linux",
        "config": {
            "Env": ["PATH=/bin"],
            "Cmd": ["/bin/sh"],
        },
        "rootfs": { "type": "layers", "diff_ids": [layer_digest] },
        "history": [{ "created_by": "vcontainer test fixture" }],
    });
    let config_bytes = serde_json::to_vec(&config)?;
    let config_digest = write_blob(root, &config_bytes)?;
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": config_bytes.len(),
        },
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": layer_digest,
            "size": layer.len(),
        }],
    });
    let manifest_bytes = serde_json::to_vec(&manifest)?;
    let manifest_digest = write_blob(root, &manifest_bytes)?;
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest,
            "size": manifest_bytes.len(),
            "platform": { "architecture": oci_arch, "os": "linux" },
            "annotations": { "org.opencontainers.image.ref.name": ref_name },
        }],
    });
    fs::write(root.join("index.json"), serde_json::to_vec(&index)?)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_validates_with_the_host_checker() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fake_busybox = dir.path().join("busybox");
        fs::write(&fake_busybox, b"\x7fELF not really").expect("write");
        let root = dir.path().join("layout");
        write_busybox_layout(&root, "arm64", &fake_busybox, "1.0").expect("layout");
        let v = crate::validate::validate_oci_layout(&root).expect("valid");
        assert_eq!(v.manifests, 1);
        assert_eq!(v.blobs, 3);

        // Corrupt the layer: the checker must name the blob.
        let blobs: Vec<_> = fs::read_dir(root.join("blobs/sha256"))
            .expect("ls")
            .map(|e| e.expect("entry").path())
            .collect();
        let layer = blobs
            .iter()
            .max_by_key(|p| fs::metadata(p).map(|m| m.len()).unwrap_or(0))
            .expect("a blob");
        let mut bytes = fs::read(layer).expect("read");
        bytes[0] ^= 1;
        fs::write(layer, bytes).expect("write");
        let err = crate::validate::validate_oci_layout(&root)
            .expect_err("corrupt")
            .to_string();
        assert!(err.contains("corrupt"), "{err}");
    }
}
