//! Boot shape (a): a kernel with the guest's drivers built in (`vcontainer image kernel`, from
//! Debian's linux-source package with kernel_config.rs's fragment, aarch64 cross-compiled)
//! boots our engines root filesystem with the agent added by `vcontainer image add-agent`,
//! given as an image directory with neither initramfs nor modules: the kernel mounts the root
//! image itself and runs the image's agent as init. Both engines, both arches.
//!
//! Not part of CI (`#[ignore]`, so it is reported as ignored, never as passed): each kernel takes
//! about 15 minutes to build on 2 cores. It was run once and reported (README, Figures);
//! `cargo test -p vcontainer-tests --test vm_builtin_kernel -- --ignored` runs it again. CI
//! keeps shape (b) (vm_foreign_image.rs) and our own initramfs shape (every other VM test).

use std::path::Path;
use std::process::Command;

use vcontainer_initramfs::Arch;
use vcontainer_tests::instance::Instance;
use vcontainer_tests::vm::{bin_dir, cache_dir, run_command};

fn vcontainer(args: &[&str]) -> serde_json::Value {
    let mut cmd = Command::new(bin_dir().join("vcontainer"));
    cmd.args(args).env("VCONTAINER_CACHE_DIR", cache_dir());
    let r = run_command(cmd);
    r.assert_ok(&format!("vcontainer {}", args.join(" ")));
    serde_json::from_str(r.stdout.trim()).expect("--json output")
}

fn run(cmd: &mut Command, what: &str) {
    let status = cmd.status().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(status.success(), "{what}: {status}");
}

/// `out/<arch>/`: the built-in kernel and our root image with the agent in it.
fn image_dir(arch: Arch, out: &Path) {
    let kernel = vcontainer(&["image", "kernel", "-a", arch.name(), "--json"]);
    let image = vcontainer(&["image", "build", "-a", arch.name(), "--json"]);
    let dir = out.join(arch.name());
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::copy(
        kernel["kernel"].as_str().expect("kernel"),
        dir.join("vmlinuz"),
    )
    .expect("kernel");
    let tree = out.join("tree");
    run(
        Command::new("unsquashfs")
            .args(["-q", "-no-progress", "-d"])
            .arg(&tree)
            .arg(image["rootfs"].as_str().expect("rootfs")),
        "unsquashfs",
    );
    run(
        Command::new(bin_dir().join("vcontainer"))
            .args(["image", "add-agent", "-a", arch.name(), "--rootfs"])
            .arg(&tree)
            .env("VCONTAINER_CACHE_DIR", cache_dir()),
        "vcontainer image add-agent",
    );
    run(
        Command::new("mksquashfs")
            .arg(&tree)
            .arg(dir.join("rootfs.sqfs"))
            .args(["-noappend", "-comp", "lz4", "-quiet", "-no-progress"]),
        "mksquashfs",
    );
    std::fs::remove_dir_all(&tree).expect("rm tree");
    let manifest = serde_json::json!({
        "format": vcontainer_initramfs::image_dir::IMAGE_DIR_FORMAT,
        "arch": arch.name(),
        "kernel": { "file": "vmlinuz" },
        "rootfs": { "file": "rootfs.sqfs", "fstype": "squashfs" },
        "about": { "made_by": "vcontainer image kernel + our rootfs with add-agent (test)" },
    });
    std::fs::write(
        dir.join(vcontainer_initramfs::image_dir::IMAGE_DIR_MANIFEST),
        serde_json::to_vec_pretty(&manifest).expect("json"),
    )
    .expect("manifest");
}

fn job(tool: &'static str, arch: Arch, blob_dir: &Path) {
    let vm = Instance::new(tool, arch);
    let layout = vm.busybox_layout("hello");
    let blob = blob_dir.to_str().expect("utf-8");
    vm.ok(&[
        "--blob-dir",
        blob,
        "vimport",
        layout.to_str().expect("utf-8"),
        "hello:1.0",
    ]);
    let r = vm.ok(&[
        "--blob-dir",
        blob,
        "run",
        "--rm",
        "hello:1.0",
        "uname",
        "-m",
    ]);
    assert_eq!(r.stdout.trim(), arch.name(), "{r:?}");
    let console = std::fs::read_to_string(vm.state_dir().join("console.log")).unwrap_or_default();
    assert!(
        console.contains("ImageRoot") && !console.contains("handing over"),
        "the kernel must have mounted the image and run its agent as init:\n{console}"
    );
}

fn shape_a(arch: Arch) {
    let out = tempfile::tempdir().expect("tempdir");
    image_dir(arch, out.path());
    job("vdkr", arch, out.path());
    job("vpdmn", arch, out.path());
}

#[test]
#[ignore = "builds a kernel (~15 min per arch on 2 cores): run once and reported; --ignored runs it"]
fn x86_64_builtin_kernel_boots_both_engines() {
    shape_a(Arch::X86_64);
}

#[test]
#[ignore = "builds a kernel (~15 min per arch on 2 cores): run once and reported; --ignored runs it"]
fn aarch64_builtin_kernel_boots_both_engines() {
    shape_a(Arch::Aarch64);
}
