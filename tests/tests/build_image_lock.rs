//! `image build --write-lock` / `--lock`: a lock file written from the cached x86_64 image
//! rebuilds, in an empty cache and from a local repository standing in for a snapshot mirror,
//! an image with the same manifest (kernel package, every package with its .deb sha256, engine
//! versions, and the sha256 of every part: the build is bit-reproducible); a lock naming a version the mirror lacks, or a kernel whose .deb differs, fails
//! naming the package. Needs the image cache CI builds first (the lock's .debs come from it).

use std::path::Path;

use vcontainer_initramfs::Arch;
use vcontainer_tests::apt_repo::{find_deb, write_repo};
use vcontainer_tests::vm::{bin_dir, cache_dir, run_command, Run};

fn image_build(cache: &Path, args: &[&str]) -> Run {
    let mut cmd = std::process::Command::new(bin_dir().join("vcontainer"));
    cmd.args(["image", "build", "-a", Arch::X86_64.name()])
        .args(args)
        .env("VCONTAINER_CACHE_DIR", cache)
        .env_remove("VCONTAINER_OFFLINE");
    run_command(cmd)
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).expect("read")).expect("json")
}

fn manifest_of(build: &Run) -> serde_json::Value {
    let out: serde_json::Value = serde_json::from_str(build.stdout.trim()).expect("--json");
    json(Path::new(out["manifest"].as_str().expect("manifest path")))
}

#[test]
fn x86_64_a_lock_rebuilds_the_same_image_from_a_snapshot_mirror() {
    let work = tempfile::tempdir().expect("tempdir");
    let w = work.path();
    let lock = w.join("x86_64.lock");
    let first = image_build(
        &cache_dir(),
        &["--json", "--write-lock", lock.to_str().expect("utf-8")],
    );
    first.assert_ok("image build --write-lock");
    let locked = json(&lock);
    assert_eq!(locked["format"], "vcontainer-image-lock/1");
    let packages = locked["packages"].as_array().expect("packages");
    assert!(packages.len() > 100, "{} packages", packages.len());

    // The snapshot mirror: exactly the locked .debs, from the shared package cache.
    let debs = |suite: &str| cache_dir().join("debs").join(format!("{suite}-amd64"));
    let rootfs_debs: Vec<_> = packages
        .iter()
        .map(|p| {
            let (name, version) = (
                p["name"].as_str().expect("name"),
                p["version"].as_str().expect("version"),
            );
            find_deb(&debs("trixie"), name, version)
                .unwrap_or_else(|| panic!("{name} {version} is not in the package cache"))
        })
        .collect();
    let kernel = &locked["kernel"];
    let kernel_deb = find_deb(
        &debs(locked["kernel_suite"].as_str().expect("suite")),
        kernel["package"].as_str().expect("package"),
        kernel["version"].as_str().expect("version"),
    )
    .expect("the kernel .deb in the package cache");
    let repo = w.join("snapshot");
    write_repo(
        &repo,
        "amd64",
        &[
            ("trixie", rootfs_debs),
            (
                locked["kernel_suite"].as_str().expect("suite"),
                vec![kernel_deb],
            ),
        ],
    );
    let mirror = format!("file://{}", repo.display());

    // Another machine: an empty cache, only the lock and the mirror.
    let fresh = w.join("cache");
    let second_lock = w.join("again.lock");
    let second = image_build(
        &fresh,
        &[
            "--json",
            "--lock",
            lock.to_str().expect("utf-8"),
            "--mirror",
            &mirror,
            "--write-lock",
            second_lock.to_str().expect("utf-8"),
        ],
    );
    second.assert_ok("image build --lock from the snapshot mirror");
    assert_eq!(json(&second_lock), locked, "the rebuilt image's lock");
    // The same manifest: every field but where the parts sit in each cache (their keys include
    // the lock), down to the sha256 of the kernel, initramfs and root filesystem.
    let (mut m1, mut m2) = (manifest_of(&first), manifest_of(&second));
    for m in [&mut m1, &mut m2] {
        for part in ["kernel", "initramfs", "rootfs"] {
            let art = m[part].as_object_mut().expect("artifact");
            art.remove("path");
            art.remove("key");
        }
    }
    assert_eq!(
        m1, m2,
        "the manifests of the cached build and the build from its lock"
    );

    // A version the mirror does not have: named, with the way out.
    let mut stale = locked.clone();
    let docker = stale["packages"]
        .as_array_mut()
        .expect("packages")
        .iter_mut()
        .find(|p| p["name"] == "docker.io")
        .expect("docker.io locked");
    docker["version"] = "0.0.1-1".into();
    let stale_lock = w.join("stale.lock");
    std::fs::write(&stale_lock, serde_json::to_vec(&stale).expect("json")).expect("write");
    let r = image_build(
        &fresh,
        &[
            "--lock",
            stale_lock.to_str().expect("utf-8"),
            "--mirror",
            &mirror,
        ],
    );
    assert_eq!(r.code, Some(1), "{r:?}");
    assert!(
        r.stderr.contains("docker.io 0.0.1-1: not on the mirror"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("snapshot"), "{}", r.stderr);

    // A kernel .deb that is not the locked one (another sha256): refused before it is used.
    let mut other = locked.clone();
    other["kernel"]["sha256"] = "0".repeat(64).into();
    let other_lock = w.join("other-kernel.lock");
    std::fs::write(&other_lock, serde_json::to_vec(&other).expect("json")).expect("write");
    let r = image_build(
        &w.join("cache-3"),
        &[
            "--lock",
            other_lock.to_str().expect("utf-8"),
            "--mirror",
            &mirror,
        ],
    );
    assert_eq!(r.code, Some(1), "{r:?}");
    assert!(
        r.stderr
            .contains(kernel["package"].as_str().expect("package"))
            && r.stderr.contains("sha256"),
        "{}",
        r.stderr
    );

    // A lock for another architecture is refused before anything runs.
    let mut arm = locked.clone();
    arm["arch"] = "aarch64".into();
    let arm_lock = w.join("arm.lock");
    std::fs::write(&arm_lock, serde_json::to_vec(&arm).expect("json")).expect("write");
    let r = image_build(&fresh, &["--lock", arm_lock.to_str().expect("utf-8")]);
    assert_eq!(r.code, Some(1), "{r:?}");
    assert!(
        r.stderr.contains("locks an aarch64 image, not x86_64"),
        "{}",
        r.stderr
    );
}
