//! `vcontainer fetch`: a multi-arch image (busybox for arm64 and amd64, built by the test) is
//! pushed to Debian's `docker-registry` on loopback straight from the host over the registry API
//! (no VM needed for that), then fetched by its index digest for aarch64 through the guest's
//! skopeo (host reached as 10.0.2.2). The layout must hold the arm64 manifest; a missing digest
//! fails before any boot; a digest the registry does not have fails clearly. One boot per test.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use sha2::{Digest, Sha256};
use vcontainer::bench::fixture::write_busybox_layout;
use vcontainer_initramfs::Arch;
use vcontainer_tests::registry::Registry;
use vcontainer_tests::vm::{bin_dir, busybox_for, cache_dir, run_command, Run};

struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.0 request to 127.0.0.1:`port`.
fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Option<Resp> {
    let addr = SocketAddrV4::new(Ipv4Addr::LOCALHOST, port);
    let mut s = TcpStream::connect_timeout(&addr.into(), Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    let mut req = format!(
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).ok()?;
    s.write_all(body).ok()?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).ok()?;
    let split = out.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&out[..split]).into_owned();
    let mut lines = head.lines();
    let status = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Some(Resp {
        status,
        headers,
        body: out[split + 4..].to_vec(),
    })
}

fn sha(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Uploads one blob (POST an upload session, then PUT it with the digest).
fn push_blob(port: u16, repo: &str, bytes: &[u8]) {
    let digest = sha(bytes);
    let r = http(
        port,
        "POST",
        &format!("/v2/{repo}/blobs/uploads/"),
        &[],
        b"",
    )
    .expect("POST");
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    let loc = r.header("location").expect("Location").to_string();
    let path = match loc.find("://") {
        Some(i) => loc[i + 3..]
            .find('/')
            .map(|j| loc[i + 3 + j..].to_string())
            .expect("path"),
        None => loc,
    };
    let sep = if path.contains('?') { '&' } else { '?' };
    let r = http(
        port,
        "PUT",
        &format!("{path}{sep}digest={digest}"),
        &[("Content-Type", "application/octet-stream")],
        bytes,
    )
    .expect("PUT blob");
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
}

fn push_manifest(port: u16, repo: &str, reference: &str, media_type: &str, bytes: &[u8]) -> String {
    let r = http(
        port,
        "PUT",
        &format!("/v2/{repo}/manifests/{reference}"),
        &[("Content-Type", media_type)],
        bytes,
    )
    .expect("PUT manifest");
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    r.header("docker-content-digest")
        .expect("digest header")
        .to_string()
}

/// Writes busybox layouts for both arches, pushes their blobs and manifests and a two-manifest
/// OCI index tagged `multi`. Returns (index digest from the registry, arm64 and amd64 manifest
/// digests).
fn push_multi_arch(port: u16, repo: &str, work: &Path) -> (String, String, String) {
    let mut entries = Vec::new();
    let mut digests = Vec::new();
    for arch in [Arch::Aarch64, Arch::X86_64] {
        let dir = work.join(format!("busybox-{}", arch.oci()));
        write_busybox_layout(&dir, arch.oci(), &busybox_for(arch), "1").expect("fixture");
        let index: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("index.json")).expect("index"))
                .expect("json");
        let desc = index["manifests"][0].clone();
        let mdigest = desc["digest"].as_str().expect("digest").to_string();
        let blob = |d: &str| {
            std::fs::read(dir.join("blobs/sha256").join(&d["sha256:".len()..])).expect("blob")
        };
        let manifest_bytes = blob(&mdigest);
        let manifest: serde_json::Value = serde_json::from_slice(&manifest_bytes).expect("json");
        push_blob(
            port,
            repo,
            &blob(manifest["config"]["digest"].as_str().expect("cfg")),
        );
        for l in manifest["layers"].as_array().expect("layers") {
            push_blob(port, repo, &blob(l["digest"].as_str().expect("layer")));
        }
        let got = push_manifest(
            port,
            repo,
            &mdigest,
            "application/vnd.oci.image.manifest.v1+json",
            &manifest_bytes,
        );
        assert_eq!(got, mdigest);
        entries.push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": mdigest,
            "size": manifest_bytes.len(),
            "platform": { "architecture": arch.oci(), "os": "linux" },
        }));
        digests.push(mdigest);
    }
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": entries,
    });
    let index_bytes = serde_json::to_vec(&index).expect("index");
    let got = push_manifest(
        port,
        repo,
        "multi",
        "application/vnd.oci.image.index.v1+json",
        &index_bytes,
    );
    assert_eq!(got, sha(&index_bytes), "registry's index digest");
    // The digest as the registry API reports it for the tag.
    let head = http(
        port,
        "HEAD",
        &format!("/v2/{repo}/manifests/multi"),
        &[("Accept", "application/vnd.oci.image.index.v1+json")],
        b"",
    )
    .expect("HEAD");
    let index_digest = head
        .header("docker-content-digest")
        .expect("digest")
        .to_string();
    assert_eq!(index_digest, got);
    (index_digest, digests[0].clone(), digests[1].clone())
}

fn fetch(home: &Path, args: &[&str]) -> Run {
    let bin = bin_dir().join("vcontainer");
    assert!(
        bin.is_file(),
        "{} missing: cargo build --workspace --bins",
        bin.display()
    );
    let mut cmd = Command::new(bin);
    cmd.arg("fetch")
        .args(args)
        .env("HOME", home)
        .env("VCONTAINER_CACHE_DIR", cache_dir())
        .stdin(Stdio::null());
    run_command(cmd)
}

#[test]
fn aarch64_fetch_by_index_digest_picks_arm64() {
    let registry = Registry::start();
    let work = tempfile::tempdir().expect("tmp");
    let home = work.path().join("home");
    std::fs::create_dir(&home).expect("home");
    let (index_digest, arm64, amd64) = push_multi_arch(registry.port, "test/multi", work.path());
    assert_ne!(arm64, amd64);
    let guest_registry = format!("10.0.2.2:{}", registry.port);

    // Missing digest: refused before anything boots (fast).
    let out = work.path().join("nodigest");
    let r = fetch(
        &home,
        &[
            "-a",
            "aarch64",
            &format!("{guest_registry}/test/multi:multi"),
            "--out",
            out.to_str().expect("utf8"),
        ],
    );
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert!(r.stderr.contains("no digest"), "{}", r.stderr);
    assert!(
        r.secs < 10.0,
        "no VM boot for a missing digest: {:.1} s",
        r.secs
    );
    assert!(!out.exists());

    let out = work.path().join("fetched");
    let reference = format!("{guest_registry}/test/multi:multi@{index_digest}");
    let r = fetch(
        &home,
        &[
            "-a",
            "aarch64",
            "--insecure-registry",
            &guest_registry,
            "--json",
            &reference,
            "--out",
            out.to_str().expect("utf8"),
        ],
    );
    r.assert_ok("vcontainer fetch");
    eprintln!("fetch by index digest: {:.1} s", r.secs);
    let info: serde_json::Value = serde_json::from_str(&r.stdout).expect("json output");
    assert_eq!(info["index_digest"], index_digest.as_str());
    assert_eq!(info["manifest_digest"], arm64.as_str());
    assert_eq!(info["layout_manifest_digest"], arm64.as_str());
    assert_eq!(info["platform"], "linux/arm64");
    assert_eq!(info["ref_name"], "multi");
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("index.json")).expect("index.json"))
            .expect("json");
    let manifests = index["manifests"].as_array().expect("manifests");
    assert_eq!(manifests.len(), 1, "{index}");
    assert_eq!(manifests[0]["digest"], arm64.as_str());
    assert_eq!(
        manifests[0]["annotations"]["org.opencontainers.image.ref.name"],
        "multi"
    );
    let blob = |d: &str| std::fs::read(out.join("blobs/sha256").join(&d["sha256:".len()..]));
    let manifest: serde_json::Value =
        serde_json::from_slice(&blob(&arm64).expect("manifest blob")).expect("json");
    let config: serde_json::Value = serde_json::from_slice(
        &blob(manifest["config"]["digest"].as_str().expect("cfg")).expect("config blob"),
    )
    .expect("json");
    assert_eq!(config["architecture"], "arm64");
    assert!(
        blob(&amd64).is_err(),
        "the amd64 manifest is not in the layout"
    );
    assert!(out.join("oci-layout").is_file());
    // No staging leftovers beside the output.
    let leftovers: Vec<_> = std::fs::read_dir(work.path())
        .expect("ls")
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(".vcontainer-fetch-")
        })
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn x86_64_fetch_of_an_unknown_digest_fails_clearly() {
    let registry = Registry::start();
    let work = tempfile::tempdir().expect("tmp");
    let home = work.path().join("home");
    std::fs::create_dir(&home).expect("home");
    let (_, _, amd64) = push_multi_arch(registry.port, "test/multi", work.path());
    let guest_registry = format!("10.0.2.2:{}", registry.port);
    // A digest the registry does not have (the amd64 one with its last digit changed).
    let mut wrong = amd64.clone();
    let last = wrong.pop().expect("digit");
    wrong.push(if last == '0' { '1' } else { '0' });
    let out = work.path().join("wrong");
    let r = fetch(
        &home,
        &[
            "-a",
            "x86_64",
            "--insecure-registry",
            &guest_registry,
            &format!("{guest_registry}/test/multi@{wrong}"),
            "--out",
            out.to_str().expect("utf8"),
        ],
    );
    eprintln!("fetch of a wrong digest: {:.1} s", r.secs);
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert!(
        r.stderr.contains("cannot fetch")
            && r.stderr.contains(&wrong)
            && r.stderr.to_lowercase().contains("manifest unknown"),
        "{}",
        r.stderr
    );
    assert!(!out.exists(), "nothing written");
}
