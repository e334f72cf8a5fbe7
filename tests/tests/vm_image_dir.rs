//! `vcontainer image build --out DIR` writes an image directory (with the engine versions and
//! every package pinned) that another machine state boots from, offline and with an empty cache; `--offline` with nothing cached fails at once, naming
//! what is missing, without touching the network.

use vcontainer_initramfs::Arch;
use vcontainer_tests::instance::Instance;
use vcontainer_tests::vm::{bin_dir, cache_dir, run_command, tar_file};

#[test]
fn x86_64_image_dir_boots_offline_with_an_empty_cache() {
    let arch = Arch::X86_64;
    let out = tempfile::tempdir().expect("tempdir");
    let mut build = std::process::Command::new(bin_dir().join("vcontainer"));
    build
        .args(["image", "build", "-a", arch.name(), "--json", "--out"])
        .arg(out.path())
        .env("VCONTAINER_CACHE_DIR", cache_dir());
    let r = run_command(build);
    r.assert_ok("vcontainer image build --out");
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(out.path().join("x86_64/manifest.json")).expect("manifest.json"),
    )
    .expect("manifest parses");
    assert_eq!(manifest["format"], "vcontainer-image-dir/1");
    // What the image is made of: engine versions (also in --json), every package pinned.
    let json: serde_json::Value = serde_json::from_str(r.stdout.trim()).expect("--json output");
    for engine in ["docker", "containerd", "runc", "podman", "skopeo"] {
        let v = json["engines"][engine].as_str().unwrap_or_default();
        assert!(!v.is_empty(), "{engine} version in --json: {}", r.stdout);
        assert_eq!(manifest["engines"][engine], v, "{engine} in the manifest");
    }
    let packages = manifest["packages"].as_array().expect("packages");
    let docker = packages
        .iter()
        .find(|p| p["name"] == "docker.io")
        .expect("docker.io pinned");
    assert_eq!(
        docker["sha256"].as_str().map(str::len),
        Some(64),
        "{docker}"
    );
    for part in ["kernel", "initramfs", "rootfs"] {
        let file = manifest[part]["file"].as_str().expect("file");
        let size = std::fs::metadata(out.path().join("x86_64").join(file))
            .expect("part")
            .len();
        assert_eq!(manifest[part]["size"], size, "{part}");
        assert_eq!(manifest[part]["sha256"].as_str().map(str::len), Some(64));
    }

    // Another machine state: nothing cached, offline.
    let empty = tempfile::tempdir().expect("tempdir");
    let vm = Instance::new("vdkr", arch);
    let layout = vm.busybox_layout("hello");
    let storage = vm.path("storage.tar");
    let blob = out.path().to_str().expect("utf-8");
    let mut cmd = vm.command(&[
        "--offline",
        "--blob-dir",
        blob,
        "vimport",
        layout.to_str().expect("utf-8"),
        "hello:1.0",
        "--storage",
        storage.to_str().expect("utf-8"),
    ]);
    cmd.env("VCONTAINER_CACHE_DIR", empty.path());
    run_command(cmd).assert_ok("vimport from the image directory, offline, empty cache");
    let repos = tar_file(&storage, "docker/image/overlay2/repositories.json")
        .expect("repositories.json in the storage tar");
    assert!(repos.contains("hello:1.0"), "{repos}");

    // Offline without an image directory and with nothing cached: a clear error, and no trace
    // of a network attempt (no apt state, no package download) in the cache.
    let mut cmd = vm.command(&["images"]);
    cmd.env("VCONTAINER_CACHE_DIR", empty.path())
        .env("VCONTAINER_OFFLINE", "1");
    let r = run_command(cmd);
    assert_eq!(r.code, Some(1), "{r:?}");
    assert!(
        r.stderr.contains("offline")
            && r.stderr.contains("kernel")
            && r.stderr.contains("vcontainer image build -a x86_64")
            && r.stderr.contains("--blob-dir"),
        "{}",
        r.stderr
    );
    eprintln!("  offline failure after {:.2} s", r.secs);
    for dir in ["apt", "debs"] {
        assert!(
            !empty.path().join(dir).exists(),
            "offline must not touch the package mirror ({dir}/ was made)"
        );
    }
}
