//! A guest image made without our image builder boots and does the whole job: Debian trixie's
//! generic arm64 kernel (modular, `.ko.xz` modules) and a plain mmdebstrap root filesystem with
//! the agent added by `vcontainer image add-agent`, given as an image directory (`--blob-dir`).
//! The host makes the modules initramfs; its init loads the modules and hands over to the
//! agent in the root image. Both engines: vimport + `--storage`, then run on the target arch.

use std::path::Path;

use vcontainer_initramfs::Arch;
use vcontainer_tests::foreign;
use vcontainer_tests::instance::Instance;
use vcontainer_tests::vm::{tar_file, tar_names};

fn job(tool: &'static str, arch: Arch, blob_dir: &Path) {
    eprintln!("== {tool} on the foreign {arch} image");
    let vm = Instance::new(tool, arch);
    let layout = vm.busybox_layout("hello");
    let storage = vm.path("storage.tar");
    let blob = blob_dir.to_str().expect("utf-8");
    vm.ok(&[
        "--blob-dir",
        blob,
        "vimport",
        layout.to_str().expect("utf-8"),
        "hello:1.0",
        "--storage",
        storage.to_str().expect("utf-8"),
    ]);
    let names = tar_names(&storage);
    match tool {
        "vdkr" => {
            let repos = tar_file(&storage, "docker/image/overlay2/repositories.json")
                .unwrap_or_else(|| panic!("repositories.json in the storage tar: {names:?}"));
            assert!(repos.contains("hello:1.0"), "{repos}");
        }
        _ => {
            let images = tar_file(&storage, "storage/vfs-images/images.json")
                .unwrap_or_else(|| panic!("images.json in the storage tar: {names:?}"));
            assert!(images.contains("hello:1.0"), "{images}");
        }
    }
    let console = std::fs::read_to_string(vm.state_dir().join("console.log")).unwrap_or_default();
    assert!(
        console.contains("handing over to /usr/sbin/vcontainer-agent")
            && console.contains("ImageRoot"),
        "the image's own agent must have served (console):\n{console}"
    );

    // The environment variable of the tool names the same directory.
    let mut run = vm.command(&["run", "--rm", "hello:1.0", "uname", "-m"]);
    run.env(format!("{}_BLOB_DIR", tool.to_uppercase()), blob_dir);
    let r = vcontainer_tests::vm::run_command(run);
    r.assert_ok("run on the foreign image via $…_BLOB_DIR");
    assert_eq!(r.stdout.trim(), arch.name(), "{r:?}");
}

#[test]
fn aarch64_foreign_image_serves_docker_and_podman() {
    let out = tempfile::tempdir().expect("tempdir");
    foreign::image_dir(Arch::Aarch64, out.path());
    job("vdkr", Arch::Aarch64, out.path());
    job("vpdmn", Arch::Aarch64, out.path());
}
