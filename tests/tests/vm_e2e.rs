//! VM end-to-end tests: the real `vdkr`/`vpdmn` binaries boot real QEMU guests (TCG here) with
//! the Debian kernel, the agent as PID 1 and the real dockerd/podman/skopeo, for both guest
//! architectures. Nothing here skips: a machine that cannot run them fails them.
//!
//! Each test walks the whole job for one (arch, engine):
//! vimport + --storage → images (persistent state) → run --rm (uname -m = target) →
//! a fresh stateless instance seeded with the storage tar lists the image again.

use std::path::Path;

use vcontainer::bench::fixture::write_busybox_layout;
use vcontainer_initramfs::Arch;
use vcontainer_tests::vm::{busybox_for, run_tool, tar_file, tar_names};

fn full_cycle(arch: Arch, tool: &str) {
    eprintln!("== {tool} on {arch}");
    let work = tempfile::tempdir().expect("tempdir");
    let home = work.path().join("home");
    std::fs::create_dir(&home).expect("home");
    let layout = work.path().join("hello-oci");
    write_busybox_layout(&layout, arch.oci(), &busybox_for(arch), "1.0").expect("fixture");
    let storage = work.path().join(format!("hello-{tool}.tar"));
    let a = arch.name();

    // 1. The main job: import for the target arch and write the storage tar.
    let r = run_tool(
        tool,
        &home,
        &[
            "-a",
            a,
            "vimport",
            layout.to_str().expect("utf8"),
            "hello:1.0",
            "--storage",
            storage.to_str().expect("utf8"),
        ],
    );
    r.assert_ok("vimport --storage");
    let names = tar_names(&storage);
    check_storage(tool, &storage, &names);

    // 2. The persistent state dir keeps the image: a new boot lists it.
    let r = run_tool(tool, &home, &["-a", a, "images"]);
    r.assert_ok("images");
    assert!(
        r.stdout.contains("hello"),
        "images must list hello:\n{}",
        r.stdout
    );

    // 3. The image runs on the target arch; stdout, stderr and the exit code come back apart.
    let r = run_tool(
        tool,
        &home,
        &[
            "-a",
            a,
            "run",
            "--rm",
            "hello:1.0",
            "sh",
            "-c",
            "uname -m; echo to-stderr >&2; exit 7",
        ],
    );
    assert_eq!(
        r.code,
        Some(7),
        "exit code of the container\n{}\n{}",
        r.stdout,
        r.stderr
    );
    assert_eq!(r.stdout.trim(), a, "uname -m in the container: {r:?}");
    assert!(r.stderr.contains("to-stderr"), "{r:?}");
    assert!(
        !r.stdout.contains("to-stderr"),
        "stderr must not leak into stdout: {r:?}"
    );

    // 4. Engine information commands pass through unchanged.
    let r = run_tool(tool, &home, &["-a", a, "version"]);
    r.assert_ok("version");
    assert!(r.stdout.contains("Version"), "{}", r.stdout);

    // 5. A fresh instance seeded with the exported storage lists the image again.
    let fresh_home = work.path().join("fresh-home");
    std::fs::create_dir(&fresh_home).expect("home");
    let r = run_tool(
        tool,
        &fresh_home,
        &[
            "-a",
            a,
            "--input-storage",
            storage.to_str().expect("utf8"),
            "images",
        ],
    );
    r.assert_ok("images with --input-storage");
    assert!(
        r.stdout.contains("hello"),
        "seeded storage must list hello:\n{}",
        r.stdout
    );
}

fn check_storage(tool: &str, storage: &Path, names: &[String]) {
    let trimmed: Vec<&str> = names.iter().map(|n| n.trim_start_matches("./")).collect();
    match tool {
        "vdkr" => {
            assert!(
                trimmed.iter().all(|n| n.starts_with("docker")),
                "docker/ tree only: {trimmed:?}"
            );
            let repos = tar_file(storage, "docker/image/overlay2/repositories.json")
                .expect("repositories.json in the storage tar");
            assert!(repos.contains("hello:1.0"), "{repos}");
        }
        _ => {
            assert!(
                trimmed.iter().all(|n| n.starts_with("storage")),
                "storage/ tree only: {trimmed:?}"
            );
            // vfs: podman's default here, as upstream's target configuration.
            let images = tar_file(storage, "storage/vfs-images/images.json")
                .expect("images.json in the storage tar");
            assert!(images.contains("hello:1.0"), "{images}");
        }
    }
}

/// The engine's other storage driver (docker vfs, podman overlay): the storage tar is written in
/// that layout, a guest seeded with it starts its engine with that driver (`info` says so) and
/// runs the image, and a state holding the default driver refuses the other one by name.
fn other_storage_driver(arch: Arch, tool: &str) {
    let work = tempfile::tempdir().expect("tempdir");
    let home = work.path().join("home");
    std::fs::create_dir(&home).expect("home");
    let layout = work.path().join("hello-oci");
    write_busybox_layout(&layout, arch.oci(), &busybox_for(arch), "1.0").expect("fixture");
    let a = arch.name();
    let (driver, engine_name, index, info_format, default) = match tool {
        "vdkr" => (
            "vfs",
            "vfs",
            "docker/image/vfs/repositories.json",
            "{{.Driver}}",
            "overlay",
        ),
        _ => (
            "overlay",
            "overlay",
            "storage/overlay-images/images.json",
            "{{.Store.GraphDriverName}}",
            "vfs",
        ),
    };
    let storage = work.path().join(format!("hello-{tool}-{driver}.tar"));
    run_tool(
        tool,
        &home,
        &[
            "-a",
            a,
            "--stateless",
            "--storage-driver",
            driver,
            "vimport",
            layout.to_str().expect("utf8"),
            "hello:1.0",
            "--storage",
            storage.to_str().expect("utf8"),
        ],
    )
    .assert_ok("vimport --storage-driver --storage");
    let listed = tar_file(&storage, index).expect("the driver's index in the storage tar");
    assert!(listed.contains("hello:1.0"), "{listed}");

    let seeded = |args: &[&str]| {
        let mut all = vec!["-a", a, "--input-storage", storage.to_str().expect("utf8")];
        all.extend_from_slice(args);
        run_tool(tool, &home, &all)
    };
    let r = seeded(&["info", "--format", info_format]);
    r.assert_ok("info on the seeded storage");
    assert_eq!(r.stdout.trim(), engine_name, "the seed's driver: {r:?}");
    let r = seeded(&["run", "--rm", "hello:1.0", "sh", "-c", "echo ran-on-$0"]);
    r.assert_ok("run on the seeded storage");
    assert!(r.stdout.contains("ran-on-sh"), "{r:?}");

    // A persistent state made with the default driver refuses the other one, naming both.
    run_tool(tool, &home, &["-a", a, "images"]).assert_ok("images (default driver)");
    let r = run_tool(
        tool,
        &home,
        &["-a", a, "--storage-driver", driver, "images"],
    );
    assert_ne!(r.code, Some(0), "{r:?}");
    assert!(
        r.stderr.contains(&format!("--storage-driver {default}")),
        "the conflict names the fix: {r:?}"
    );
}

#[test]
fn x86_64_docker() {
    full_cycle(Arch::X86_64, "vdkr");
    other_storage_driver(Arch::X86_64, "vdkr");
}

#[test]
fn x86_64_podman() {
    full_cycle(Arch::X86_64, "vpdmn");
    other_storage_driver(Arch::X86_64, "vpdmn");
}

#[test]
fn aarch64_docker() {
    full_cycle(Arch::Aarch64, "vdkr");
}

#[test]
fn aarch64_podman() {
    full_cycle(Arch::Aarch64, "vpdmn");
}

/// The storage tar does not fit on the output filesystem: a clear error, a non-zero exit and no
/// file that looks complete. The small filesystem is a 1 MiB tmpfs in a private mount namespace
/// (`unshare --mount`, with `--map-root-user` when not root), so nothing on the host is touched.
#[test]
fn x86_64_output_filesystem_full() {
    let arch = Arch::X86_64;
    let work = tempfile::tempdir().expect("tempdir");
    let home = work.path().join("home");
    std::fs::create_dir(&home).expect("home");
    let layout = work.path().join("hello-oci");
    write_busybox_layout(&layout, arch.oci(), &busybox_for(arch), "1.0").expect("fixture");
    let small = work.path().join("small");
    std::fs::create_dir(&small).expect("mkdir");
    let out = small.join("storage.tar");
    let vpdmn = vcontainer_tests::vm::bin_dir().join("vpdmn");
    let script = format!(
        "mount -t tmpfs -o size=1m tmpfs '{small}' || exit 99; '{vpdmn}' -a x86_64 --stateless vimport '{layout}' hello:1.0 --storage '{out}'; rc=$?; ls -A '{small}'; exit $rc",
        small = small.display(),
        vpdmn = vpdmn.display(),
        layout = layout.display(),
        out = out.display(),
    );
    let mut cmd = std::process::Command::new("unshare");
    cmd.arg("--mount");
    if !nix::unistd::geteuid().is_root() {
        cmd.arg("--map-root-user");
    }
    cmd.args(["--propagation", "private", "sh", "-c", &script])
        .env("HOME", &home)
        .env("VCONTAINER_CACHE_DIR", vcontainer_tests::vm::cache_dir())
        .stdin(std::process::Stdio::null());
    let r = vcontainer_tests::vm::run_command(cmd);
    assert_ne!(r.code, Some(99), "could not mount the small tmpfs: {r:?}");
    assert_ne!(
        r.code,
        Some(0),
        "a full output filesystem must fail the run: {r:?}"
    );
    assert!(
        r.stderr.contains("No space left") || r.stderr.contains("no space"),
        "the error names the cause: {}",
        r.stderr
    );
    // The tmpfs vanished with the namespace; the shell listed what was left in it.
    assert!(
        !r.stdout.contains("storage.tar"),
        "no output file: {}",
        r.stdout
    );
    assert!(
        !r.stdout.contains("partial"),
        "no partial file: {}",
        r.stdout
    );
}

/// SIGTERM to a one-shot CLI while its VM runs: the CLI exits 143 with a message, and QEMU and
/// the vsock backend (in their own process group, so a terminal's signal does not reach them) are
/// gone too, instead of being left running on the state disk.
#[test]
fn x86_64_sigterm_stops_the_vm() {
    let work = tempfile::tempdir().expect("tempdir");
    let home = work.path().join("home");
    std::fs::create_dir(&home).expect("home");
    let console = home.join(".vpdmn/x86_64/console.log");
    let child = vcontainer_tests::vm::tool_command("vpdmn")
        .args(["-a", "x86_64", "images"])
        .env("HOME", &home)
        .env("VCONTAINER_CACHE_DIR", vcontainer_tests::vm::cache_dir())
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn vpdmn");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    // Wait until the guest is really up (its agent logged), so QEMU is mid-run when signalled.
    while !std::fs::read_to_string(&console).is_ok_and(|c| c.contains("vcontainer-agent")) {
        assert!(std::time::Instant::now() < deadline, "the VM never started");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("kill");
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(143), "{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    // Nothing may still run with this state directory on its command line.
    let needle = home.to_string_lossy().into_owned();
    let leftover = |needle: &str| -> Vec<String> {
        std::fs::read_dir("/proc")
            .expect("proc")
            .filter_map(|e| e.ok())
            .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
            .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
            .filter(|c| c.contains(needle))
            .collect()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !leftover(&needle).is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(
        leftover(&needle).is_empty(),
        "left running: {:?}",
        leftover(&needle)
    );
}
