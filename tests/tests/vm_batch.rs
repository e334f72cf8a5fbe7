//! VM end-to-end tests of `vcontainer batch-import` (aarch64 guests under TCG; nothing skips).
//!
//! VMs are expensive, so one test walks the whole job with few boots:
//! 1. one request imports 3 images into docker AND podman (two VMs at once, two storages), one
//!    of them an OCI archive tar and one named with a registry port;
//! 2. a second request seeds each engine with its result and adds a multi-arch image (both
//!    arches' busybox in one layout): the merge keeps the old images, the arm64 one is imported;
//! 3. a VM per engine seeded with the merged storage lists all four images and runs each of them.
//!
//! A second test: a broken image in a batch fails the run, names the image, quotes the engine and
//! leaves no output (one podman VM); a missing blob fails before anything boots.

use std::fs;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use vcontainer::bench::fixture::{write_busybox_layout, write_layout_with_files};
use vcontainer_initramfs::Arch;
use vcontainer_tests::vm::{busybox_for, cache_dir, run_command, run_tool, s, tool_command, Run};

const ARCH: Arch = Arch::Aarch64;

/// `tool -a aarch64 --input-storage STORAGE vshell` with `script` on stdin (one VM runs it all).
fn shell_with_storage(tool: &str, home: &Path, storage: &Path, script: &str) -> Run {
    let script_file = home.join(format!("{tool}-script.sh"));
    fs::write(&script_file, script).expect("script");
    let mut cmd = tool_command(tool);
    cmd.args([
        "-a",
        ARCH.name(),
        "--input-storage",
        storage.to_str().expect("utf8"),
        "vshell",
    ])
    .env("HOME", home)
    .env("VCONTAINER_CACHE_DIR", cache_dir())
    .stdin(fs::File::open(&script_file).expect("open script"));
    run_command(cmd)
}

fn json(run: &Run) -> serde_json::Value {
    serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("--json output is not JSON ({e}):\n{}", run.stdout))
}

/// An arm64 image whose layer also holds `/id` = `id` (so the images differ).
fn image(dir: &Path, id: &str) -> PathBuf {
    let root = dir.join(format!("{id}-oci"));
    let content = format!("{id}\n");
    write_layout_with_files(
        &root,
        ARCH.oci(),
        &busybox_for(ARCH),
        "1.0",
        &[("id", content.as_bytes())],
    )
    .expect("fixture");
    root
}

fn put_blob(root: &Path, bytes: &[u8]) -> serde_json::Value {
    let hex = hex::encode(Sha256::digest(bytes));
    fs::write(root.join("blobs/sha256").join(&hex), bytes).expect("blob");
    serde_json::json!({ "digest": format!("sha256:{hex}"), "size": bytes.len() })
}

/// One layout holding the arm64 and the amd64 busybox images, behind a nested image index (the
/// shape oci-multiarch.bbclass writes).
fn multi_arch_image(dir: &Path) -> PathBuf {
    let root = dir.join("multi-oci");
    fs::create_dir_all(root.join("blobs/sha256")).expect("mkdir");
    let mut entries = Vec::new();
    for arch in [Arch::Aarch64, Arch::X86_64] {
        let single = dir.join(format!("single-{arch}"));
        write_busybox_layout(&single, arch.oci(), &busybox_for(arch), "1.0").expect("fixture");
        for e in fs::read_dir(single.join("blobs/sha256")).expect("ls") {
            let e = e.expect("entry");
            fs::copy(e.path(), root.join("blobs/sha256").join(e.file_name())).expect("copy");
        }
        let index: serde_json::Value =
            serde_json::from_slice(&fs::read(single.join("index.json")).expect("index"))
                .expect("json");
        entries.push(index["manifests"][0].clone());
    }
    // amd64 first: picking the first entry would be wrong.
    entries.reverse();
    let inner = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": entries,
    });
    let mut d = put_blob(&root, &serde_json::to_vec(&inner).expect("json"));
    d["mediaType"] = "application/vnd.oci.image.index.v1+json".into();
    d["annotations"] = serde_json::json!({ "org.opencontainers.image.ref.name": "1.0" });
    let index = serde_json::json!({ "schemaVersion": 2, "manifests": [d] });
    fs::write(
        root.join("index.json"),
        serde_json::to_vec(&index).expect("json"),
    )
    .expect("w");
    fs::write(
        root.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .expect("w");
    root
}

fn tar_dir(dir: &Path, dest: &Path) {
    let mut b = tar::Builder::new(fs::File::create(dest).expect("create"));
    b.append_dir_all(".", dir).expect("tar");
    b.finish().expect("finish");
}

fn engine_report<'a>(report: &'a serde_json::Value, engine: &str) -> &'a serde_json::Value {
    let r = &report[engine];
    assert!(r.is_object(), "no {engine} report in {report:#}");
    for key in [
        "boot_secs",
        "engine_start_secs",
        "imports_secs",
        "export_secs",
    ] {
        assert!(r[key].as_f64().is_some(), "{engine}.{key} missing: {r:#}");
    }
    r
}

#[test]
fn batch_import_both_engines_then_merge_and_multi_arch() {
    let work = tempfile::tempdir().expect("tempdir");
    let home = work.path().join("home");
    fs::create_dir(&home).expect("home");
    let w = work.path();

    let one = image(w, "one");
    let two = image(w, "two");
    let three_dir = image(w, "three");
    let three = w.join("three-oci.tar");
    tar_dir(&three_dir, &three);
    let refs = [
        "one:1.0",
        "localhost:5000/team/two:2.0",
        "three:latest",
        "multi:1",
    ];
    let entries = [
        format!("{}={}", s(&one), refs[0]),
        format!("{}={}", s(&two), refs[1]),
        format!("{}=three", s(&three)),
    ];

    // 1. Three images into both engines in one request.
    let (d1, p1) = (w.join("docker1.tar"), w.join("podman1.tar"));
    let mut args = vec!["batch-import", "-a", ARCH.name(), "--json"];
    for e in &entries {
        args.extend(["--docker", e, "--podman", e]);
    }
    args.extend(["--docker-output", s(&d1), "--podman-output", s(&p1)]);
    let r = run_tool("vcontainer", &home, &args);
    r.assert_ok("batch-import of 3 images into docker and podman");
    let report = json(&r);
    for engine in ["docker", "podman"] {
        let e = engine_report(&report, engine);
        let imports = e["imports"].as_array().expect("imports");
        let got: Vec<&str> = imports
            .iter()
            .map(|i| i["reference"].as_str().expect("reference"))
            .collect();
        assert_eq!(got, refs[..3], "{engine}: {e:#}");
    }
    assert!(d1.is_file() && p1.is_file(), "both storages written");
    eprintln!("batch report:\n{}", r.stdout);

    // 2. Merge: seeded with the first result, one more image (multi-arch) per engine.
    let multi = multi_arch_image(w);
    let multi_entry = format!("{}={}", s(&multi), refs[3]);
    let (d2, p2) = (w.join("docker2.tar"), w.join("podman2.tar"));
    let r = run_tool(
        "vcontainer",
        &home,
        &[
            "batch-import",
            "-a",
            ARCH.name(),
            "--json",
            "--docker",
            &multi_entry,
            "--docker-input-storage",
            s(&d1),
            "--docker-output",
            s(&d2),
            "--podman",
            &multi_entry,
            "--podman-input-storage",
            s(&p1),
            "--podman-output",
            s(&p2),
        ],
    );
    r.assert_ok("batch-import onto existing storage");
    let report = json(&r);
    for engine in ["docker", "podman"] {
        let e = engine_report(&report, engine);
        let platform = e["imports"][0]["platform"].as_str().unwrap_or_default();
        assert_eq!(platform, "linux/arm64", "{engine}: {e:#}");
    }

    // 3. A fresh VM per engine seeded with the merged storage: all four images, each runs.
    let script = |cli: &str| {
        let mut sc = format!("set -e\n{cli} images\n");
        for r in &refs[..3] {
            sc.push_str(&format!("{cli} run --rm {r} cat /id\n"));
        }
        sc.push_str(&format!("{cli} run --rm {} uname -m\n", refs[3]));
        sc.push_str(&format!("{cli} run --rm {} true\necho all-ran\n", refs[0]));
        sc
    };
    let (home_d, home_p) = (w.join("home-d"), w.join("home-p"));
    fs::create_dir(&home_d).expect("home");
    fs::create_dir(&home_p).expect("home");
    let (sd, sp) = (script("docker"), script("podman"));
    let (rd, rp) = std::thread::scope(|scope| {
        let d = scope.spawn(|| shell_with_storage("vdkr", &home_d, &d2, &sd));
        let p = scope.spawn(|| shell_with_storage("vpdmn", &home_p, &p2, &sp));
        (
            d.join().expect("vdkr thread"),
            p.join().expect("vpdmn thread"),
        )
    });
    for (engine, r) in [("docker", rd), ("podman", rp)] {
        r.assert_ok(&format!(
            "{engine}: images and runs from the merged storage"
        ));
        let out = &r.stdout;
        for name in ["one", "localhost:5000/team/two", "three", "multi"] {
            assert!(
                out.contains(name),
                "{engine}: images must list {name}:\n{out}"
            );
        }
        for id in ["one\n", "two\n", "three\n", "aarch64\n", "all-ran"] {
            assert!(out.contains(id), "{engine}: missing {id:?} in\n{out}");
        }
    }
}

/// An arm64 image whose layer blob is intact (digest checks out) but is no tar: the host
/// accepts it, the engine refuses it.
fn junk_layer_image(dir: &Path) -> PathBuf {
    let root = dir.join("junk-oci");
    fs::create_dir_all(root.join("blobs/sha256")).expect("mkdir");
    let junk: Vec<u8> = (0..4096u32).map(|i| (i * 7 + 13) as u8).collect();
    let mut layer = put_blob(&root, &junk);
    layer["mediaType"] = "application/vnd.oci.image.layer.v1.tar".into();
    let config = serde_json::json!({
        "architecture": ARCH.oci(), "os": "linux",
        "rootfs": { "type": "layers", "diff_ids": [layer["digest"].clone()] },
    });
    let mut config_d = put_blob(&root, &serde_json::to_vec(&config).expect("json"));
    config_d["mediaType"] = "application/vnd.oci.image.config.v1+json".into();
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config_d,
        "layers": [layer],
    });
    let mut m = put_blob(&root, &serde_json::to_vec(&manifest).expect("json"));
    m["mediaType"] = "application/vnd.oci.image.manifest.v1+json".into();
    let index = serde_json::json!({ "schemaVersion": 2, "manifests": [m] });
    fs::write(
        root.join("index.json"),
        serde_json::to_vec(&index).expect("json"),
    )
    .expect("w");
    fs::write(
        root.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .expect("w");
    root
}

#[test]
fn a_broken_image_fails_the_batch_and_writes_nothing() {
    let work = tempfile::tempdir().expect("tempdir");
    let home = work.path().join("home");
    fs::create_dir(&home).expect("home");
    let w = work.path();
    let out_dir = w.join("out");
    fs::create_dir(&out_dir).expect("out");
    let good = image(w, "good");
    let out = out_dir.join("podman.tar");

    // A missing blob: refused before anything boots, naming the image.
    let missing = image(w, "missing");
    let blobs: Vec<PathBuf> = fs::read_dir(missing.join("blobs/sha256"))
        .expect("ls")
        .map(|e| e.expect("entry").path())
        .collect();
    let layer = blobs
        .iter()
        .max_by_key(|p| fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .expect("blob");
    fs::remove_file(layer).expect("rm");
    let r = run_tool(
        "vcontainer",
        &home,
        &[
            "-v",
            "batch-import",
            "-a",
            ARCH.name(),
            "--podman",
            &format!("{}=good:1", s(&good)),
            "--podman",
            &format!("{}=missing:1", s(&missing)),
            "--podman-output",
            s(&out),
        ],
    );
    assert_ne!(r.code, Some(0), "a missing blob must fail: {r:?}");
    assert!(
        r.stderr.contains("missing-oci") && r.stderr.contains("missing:1"),
        "the message must name the image: {}",
        r.stderr
    );
    assert!(
        !r.stderr.contains("booting"),
        "nothing may boot for a broken input: {}",
        r.stderr
    );

    // A layer the engine cannot apply: the VM boots, the import fails, the run fails.
    let junk = junk_layer_image(w);
    let r = run_tool(
        "vcontainer",
        &home,
        &[
            "-v",
            "batch-import",
            "-a",
            ARCH.name(),
            "--podman",
            &format!("{}=good:1", s(&good)),
            "--podman",
            &format!("{}=junk:1", s(&junk)),
            "--podman-output",
            s(&out),
        ],
    );
    assert_ne!(
        r.code,
        Some(0),
        "a refused image must fail the batch: {r:?}"
    );
    let msg = &r.stderr;
    assert!(
        msg.contains("podman batch import failed")
            && msg.contains("junk-oci as junk:1")
            && msg.contains("no output was written")
            && msg.contains("    | "),
        "the error must name the image and quote the engine:\n{msg}"
    );
    let left: Vec<_> = fs::read_dir(&out_dir).expect("ls").collect();
    assert!(
        left.is_empty(),
        "no output (not even a temporary file) may remain: {left:?}"
    );
}
