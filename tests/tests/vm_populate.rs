//! `vcontainer populate-rootfs` end to end on aarch64: BUNDLED_CONTAINERS from a deploy dir plus a
//! bundle package found in the rootfs, docker and podman in one call, merged onto the storage the
//! rootfs already has; units written; bundles consumed; the installed storage boots and lists all
//! images; the podman storage follows the target's storage.conf and an older target podman is
//! reported. Runs as root (CI does): the storage keeps its owners and whiteout devices.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use vcontainer::bench::fixture::write_busybox_layout;
use vcontainer_initramfs::Arch;
use vcontainer_tests::vm::{busybox_for, cache_dir, run_command, run_tool, s, tool_command, Run};

/// Where the bundling commands' throw-away VM state goes (their `TMPDIR`), so that any VM
/// process they left would be found by it.
fn vm_tmp() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("vm-populate-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp");
    dir
}

/// `vcontainer …` with auto-start asked for: the bundling commands must still leave no VM.
fn vcontainer(args: &[&str]) -> Run {
    let mut cmd = tool_command("vcontainer");
    cmd.args(args)
        .env("VCONTAINER_CACHE_DIR", cache_dir())
        .env("VDKR_AUTO_DAEMON", "true")
        .env("VPDMN_AUTO_DAEMON", "true")
        .env("TMPDIR", vm_tmp())
        .stdin(Stdio::null());
    let r = run_command(cmd);
    let left = vcontainer_tests::instance::vm_procs_naming(&vm_tmp());
    assert!(
        left.is_empty(),
        "vcontainer {args:?} left VM processes: {left:?}"
    );
    r
}

/// The installed storage of `engine` in `rootfs`, as a tar `vdkr --input-storage` takes.
fn storage_tar(rootfs: &Path, engine: &str, out: &Path) {
    let (parent, top) = match engine {
        "docker" => ("var/lib", "docker"),
        _ => ("var/lib/containers", "storage"),
    };
    let status = Command::new("tar")
        .args([
            "--create",
            "--numeric-owner",
            "--xattrs",
            "--xattrs-include=*",
            "--file",
        ])
        .arg(out)
        .arg("-C")
        .arg(rootfs.join(parent))
        .arg(top)
        .status()
        .expect("tar");
    assert!(status.success());
}

#[test]
fn populate_rootfs_merges_bundles_and_writes_units() {
    let arch = Arch::Aarch64;
    let work = tempfile::tempdir().expect("tempdir");
    let w = work.path();
    let busybox = busybox_for(arch);
    let deploy = w.join("deploy");
    for dir in ["app-latest-oci", "db-oci"] {
        write_busybox_layout(&deploy.join(dir), arch.oci(), &busybox, "1.0").expect("fixture");
    }
    let rootfs = w.join("rootfs");
    std::fs::create_dir_all(&rootfs).expect("rootfs");

    // Round 1: docker storage with `app` only.
    vcontainer(&[
        "populate-rootfs",
        "-a",
        "aarch64",
        "--rootfs",
        s(&rootfs),
        "--deploy-dir",
        s(&deploy),
        "--containers",
        "app:docker:always",
    ])
    .assert_ok("populate round 1");
    assert!(rootfs.join("var/lib/docker").is_dir());
    let unit = rootfs.join("lib/systemd/system/container-app.service");
    let text = std::fs::read_to_string(&unit).expect("docker unit");
    assert!(
        text.contains("app:latest"),
        "the unit runs the imported name:tag: {text}"
    );
    assert!(rootfs
        .join("etc/systemd/system/multi-user.target.wants/container-app.service")
        .symlink_metadata()
        .is_ok());

    // Round 2: `db` for docker (merged onto `app`) and a podman bundle package in the rootfs.
    let layout = w.join("tool-layout");
    write_busybox_layout(&layout, arch.oci(), &busybox, "1.0").expect("fixture");
    let bundles = rootfs.join("usr/share/container-bundles");
    vcontainer(&[
        "bundle",
        "create",
        "--out",
        s(&bundles),
        "--name",
        "tool-bundle",
        "--runtime",
        "podman",
        "--spec",
        "tool:always",
        "--oci",
        &format!("tool={}", s(&layout)),
    ])
    .assert_ok("bundle create");
    // The target's podman is configured for overlay (not the vfs default), and its package
    // database records an older podman than the guest's.
    let conf = rootfs.join("etc/containers/storage.conf");
    std::fs::create_dir_all(conf.parent().expect("parent")).expect("mkdir");
    std::fs::write(
        &conf,
        "[storage]\ndriver = \"overlay\"\ngraphroot = \"/var/lib/containers/storage\"\n",
    )
    .expect("storage.conf");
    let status = rootfs.join("var/lib/dpkg/status");
    std::fs::create_dir_all(status.parent().expect("parent")).expect("mkdir");
    std::fs::write(
        &status,
        "Package: podman\nStatus: install ok installed\nVersion: 4.9.3+ds1-1\n",
    )
    .expect("status");
    let r = vcontainer(&[
        "populate-rootfs",
        "-a",
        "aarch64",
        "--rootfs",
        s(&rootfs),
        "--deploy-dir",
        s(&deploy),
        "--containers",
        "db:docker",
    ]);
    r.assert_ok("populate round 2");
    for said in [
        "podman: storage driver overlay (from /etc/containers/storage.conf in the target rootfs)",
        "docker: storage driver overlay2 (from the storage already in the target rootfs)",
        "the target's podman 4.9.3+ds1-1 is older than the guest's podman",
    ] {
        assert!(
            r.stderr.contains(said),
            "populate must say {said:?}:\n{}",
            r.stderr
        );
    }
    assert!(rootfs
        .join("var/lib/containers/storage/overlay-images")
        .is_dir());
    assert!(!rootfs
        .join("var/lib/containers/storage/vfs-images")
        .exists());
    assert!(!bundles.exists(), "consumed bundles are removed");
    let quadlet = rootfs.join("etc/containers/systemd/container-tool.container");
    assert!(quadlet.is_file(), "the bundle's podman unit");
    assert!(rootfs.join("var/lib/containers/storage").is_dir());

    // The installed storages boot and hold everything.
    let home = w.join("home");
    std::fs::create_dir(&home).expect("home");
    for (tool, engine, want) in [
        ("vdkr", "docker", &["app", "db"][..]),
        ("vpdmn", "podman", &["tool"][..]),
    ] {
        let tar: PathBuf = w.join(format!("{engine}.tar"));
        storage_tar(&rootfs, engine, &tar);
        let r = run_tool(
            tool,
            &home,
            &["-a", "aarch64", "--input-storage", s(&tar), "images"],
        );
        r.assert_ok("images from the installed storage");
        for name in want {
            assert!(
                r.stdout.contains(name),
                "{engine} storage lacks {name}:\n{}",
                r.stdout
            );
        }
        if engine == "podman" {
            // The guest's podman runs with the target's driver.
            let r = run_tool(
                tool,
                &home,
                &[
                    "-a",
                    "aarch64",
                    "--input-storage",
                    s(&tar),
                    "info",
                    "--format",
                    "{{.Store.GraphDriverName}}",
                ],
            );
            r.assert_ok("podman info on the installed storage");
            assert_eq!(r.stdout.trim(), "overlay", "{r:?}");
        }
    }

    // Bad input: nothing boots, nothing is written.
    let r = vcontainer(&[
        "populate-rootfs",
        "-a",
        "aarch64",
        "--rootfs",
        s(&rootfs),
        "--deploy-dir",
        s(&deploy),
        "--containers",
        "nosuch:docker",
    ]);
    assert_eq!(r.code, Some(1), "{r:?}");
    assert!(r.stderr.contains("nosuch"), "{}", r.stderr);
}
