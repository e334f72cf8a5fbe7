//! Memory-resident mode on a real VM: `memres start` leaves the guest running, later commands
//! reach it directly (no boot), `--storage` works against it, `memres stop` is graceful (a new
//! one-shot boot sees the same images), and stale state is detected and cleaned.

use vcontainer::fixture::write_busybox_layout;
use vcontainer_initramfs::Arch;
use vcontainer_tests::vm::{busybox_for, run_tool, tar_file, ResidentGuard};

fn memres_cycle(arch: Arch, tool: &str) {
    let work = tempfile::tempdir().expect("tempdir");
    let home = work.path().join("home");
    std::fs::create_dir(&home).expect("home");
    let _guard = ResidentGuard {
        tool: tool.into(),
        home: home.clone(),
        args: vec!["-a".into(), arch.name().into()],
    };
    let a = arch.name();
    let layout = work.path().join("hello-oci");
    write_busybox_layout(&layout, arch.oci(), &busybox_for(arch), "1.0").expect("fixture");

    let r = run_tool(tool, &home, &["-a", a, "memres", "status"]);
    assert_eq!(r.code, Some(1), "stopped before start: {r:?}");
    assert_eq!(r.stdout.trim(), "stopped");

    run_tool(tool, &home, &["-a", a, "memres", "start"]).assert_ok("memres start");
    let r = run_tool(tool, &home, &["-a", a, "vmemres", "status"]);
    assert_eq!((r.code, r.stdout.trim()), (Some(0), "running"), "{r:?}");
    let r = run_tool(tool, &home, &["memres", "list"]);
    r.assert_ok("memres list");
    assert!(
        r.stdout
            .lines()
            .any(|l| l.starts_with(a) && l.contains("running")),
        "list shows the instance: {}",
        r.stdout
    );

    run_tool(
        tool,
        &home,
        &[
            "-a",
            a,
            "vimport",
            layout.to_str().expect("utf8"),
            "hello:1.0",
        ],
    )
    .assert_ok("vimport against memres");
    let r = run_tool(tool, &home, &["-a", a, "images"]);
    r.assert_ok("images against memres");
    assert!(r.stdout.contains("hello"), "{}", r.stdout);
    let r = run_tool(
        tool,
        &home,
        &["-a", a, "run", "--rm", "hello:1.0", "uname", "-m"],
    );
    r.assert_ok("run against memres");
    assert_eq!(r.stdout.trim(), a);

    // --storage works in memres mode too (the engine is restarted on the next command).
    let storage = work.path().join("memres.tar");
    run_tool(
        tool,
        &home,
        &[
            "-a",
            a,
            "--storage",
            storage.to_str().expect("utf8"),
            "images",
        ],
    )
    .assert_ok("images --storage against memres");
    let index = if tool == "vdkr" {
        "docker/image/overlay2/repositories.json"
    } else {
        "storage/overlay-images/images.json"
    };
    assert!(tar_file(&storage, index)
        .expect("index in tar")
        .contains("hello:1.0"));
    let r = run_tool(tool, &home, &["-a", a, "images"]);
    assert!(
        r.stdout.contains("hello"),
        "engine back after export: {r:?}"
    );

    run_tool(tool, &home, &["-a", a, "memres", "stop"]).assert_ok("memres stop");
    let r = run_tool(tool, &home, &["-a", a, "memres", "status"]);
    assert_eq!((r.code, r.stdout.trim()), (Some(1), "stopped"), "{r:?}");
    let r = run_tool(tool, &home, &["memres", "list"]);
    assert!(
        !r.stdout.contains("running"),
        "nothing listed after stop: {}",
        r.stdout
    );

    // The graceful stop left the state disk consistent: a one-shot boot sees the image.
    let r = run_tool(tool, &home, &["-a", a, "images"]);
    r.assert_ok("one-shot images after memres stop");
    assert!(r.stdout.contains("hello"), "{}", r.stdout);

    // Stale state: a record whose pid is gone (or reused) is detected and removed.
    let state = home.join(format!(".{tool}")).join(a);
    let stale = serde_json::json!({
        "format": 1, "arch": a, "engine": if tool == "vdkr" { "docker" } else { "podman" },
        "created": 0, "qemu": { "pid": std::process::id(), "start_time": 1 },
        "backend": null, "guest_cid": null
    });
    std::fs::write(state.join("instance.json"), stale.to_string()).expect("write");
    let r = run_tool(tool, &home, &["-a", a, "memres", "status"]);
    assert_eq!((r.code, r.stdout.trim()), (Some(1), "stopped"), "{r:?}");
    assert!(
        !state.join("instance.json").exists(),
        "stale record removed"
    );
}

#[test]
fn x86_64_podman_memres() {
    memres_cycle(Arch::X86_64, "vpdmn");
}

#[test]
fn aarch64_docker_memres() {
    memres_cycle(Arch::Aarch64, "vdkr");
}
