//! Nothing in an image is lost on the way, through a real engine (issue 19): the fidelity
//! fixture packed by `vcontainer oci build` and, as a third-party image, by umoci, both imported
//! with `vimport … --storage`, the storage tar installed into a target rootfs with
//! `install-storage`, and each image layer's directory in the installed storage compared file by
//! file with the fixture. One engine per arch: docker on x86_64, podman on aarch64.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use vcontainer_initramfs::Arch;
use vcontainer_tests::fidelity::{assert_same, build_fixture, dir_view, Compare};
use vcontainer_tests::instance::Instance;
use vcontainer_tests::vm::{run_command, s, tool_command};

/// Directory times are left out: the engines create a layer's directories as they extract and
/// (docker) do not set them back. Every other field, file times included, must hold.
const CMP: Compare = Compare {
    dir_mtimes: false,
    mtimes: true,
};

fn run_ok(mut cmd: Command, what: &str) {
    cmd.stdin(Stdio::null());
    run_command(cmd).assert_ok(what);
}

/// The image of the fixture by umoci, as upstream's image-oci makes one (unpack, copy, repack),
/// with the target's architecture in its config.
fn umoci_image(rootfs: &Path, layout: &Path, arch: Arch) {
    let image = format!("{}:1", layout.display());
    let bundle = layout.with_extension("bundle");
    let umoci = |args: &[&str]| {
        let mut c = Command::new("umoci");
        c.args(args);
        run_ok(c, &format!("umoci {}", args[0]));
    };
    umoci(&["init", "--layout", s(layout)]);
    umoci(&["new", "--image", &image]);
    umoci(&["config", "--image", &image, "--architecture", arch.oci()]);
    umoci(&["unpack", "--image", &image, s(&bundle)]);
    let mut cp = Command::new("cp");
    cp.arg("-a")
        .arg(rootfs.join("."))
        .arg(bundle.join("rootfs"));
    run_ok(cp, "cp -a the fixture into umoci's bundle");
    umoci(&["repack", "--image", &image, s(&bundle)]);
}

/// The layer directories of the installed storage that hold the fixture (found by one of its
/// files): `overlay2/<id>/diff` for docker (overlay2, its default), `vfs/dir/<id>` for podman
/// (vfs, its default: every layer a whole tree).
fn fixture_layers(storage: &Path, driver_dir: &str, in_layer: &str) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(storage.join(driver_dir))
        .expect("driver dir")
        .flatten()
        .map(|e| e.path().join(in_layer))
        .filter(|d| d.join("home/u/note").is_file())
        .collect();
    found.sort();
    found
}

fn round_trip(tool: &'static str, arch: Arch) {
    let w = Instance::new(tool, arch);
    let rootfs = w.path("fixture");
    build_fixture(&rootfs);
    let source = dir_view(&rootfs);

    let ours = w.path("ours-oci");
    let mut build = tool_command("vcontainer");
    build.args([
        "oci",
        "build",
        "--rootfs",
        s(&rootfs),
        "-a",
        arch.name(),
        "-o",
        s(&ours),
        "--no-cache",
        "--cmd",
        "/bin/ping",
    ]);
    run_ok(build, "vcontainer oci build");
    let theirs = w.path("umoci-oci");
    umoci_image(&rootfs, &theirs, arch);

    w.ok(&["vimport", s(&ours), "ours:1"]);
    let storage_tar = w.path("storage.tar");
    w.ok(&[
        "vimport",
        s(&theirs),
        "umoci:1",
        "--storage",
        s(&storage_tar),
    ]);

    let target = w.path("target");
    std::fs::create_dir(&target).expect("target");
    let engine = if tool == "vdkr" { "docker" } else { "podman" };
    let mut install = tool_command("vcontainer");
    install.args([
        "install-storage",
        "--engine",
        engine,
        "--rootfs",
        s(&target),
        s(&storage_tar),
    ]);
    run_ok(install, "install-storage");
    let layers = if tool == "vdkr" {
        fixture_layers(&target.join("var/lib/docker"), "overlay2", "diff")
    } else {
        fixture_layers(&target.join("var/lib/containers/storage"), "vfs/dir", "")
    };
    assert_eq!(
        layers.len(),
        2,
        "one layer dir per image (ours and umoci's differ in their tar bytes): {layers:?}"
    );
    for layer in &layers {
        assert_same(
            &dir_view(layer),
            &source,
            CMP,
            &format!("{engine} on {arch}: installed layer {}", layer.display()),
        );
    }
}

#[test]
fn x86_64_docker_keeps_every_file_attribute() {
    round_trip("vdkr", Arch::X86_64);
}

#[test]
fn aarch64_podman_keeps_every_file_attribute() {
    round_trip("vpdmn", Arch::Aarch64);
}
