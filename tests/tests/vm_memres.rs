//! Memory-resident mode on a real VM: `memres start` leaves the guest running, later commands
//! reach it directly (no boot), `--storage` works against it, `memres stop` is graceful (a new
//! one-shot boot sees the same images), and stale state is detected and cleaned.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use vcontainer::bench::fixture::write_busybox_layout;
use vcontainer_initramfs::Arch;

use vcontainer_tests::vm::{
    busybox_for, cache_dir, run_command, run_tool, tar_file, tool_command, ResidentGuard,
};

/// Security review points on a running VM: the state directory and everything in it (disk, logs,
/// lock, instance record, the sockets that reach the agent) are the owner's alone, and nothing in
/// the guest listens on a network address (the agent speaks vsock only; dockerd a unix socket).
fn security_checks(tool: &str, home: &Path, arch: &str, secret: &str) {
    let state = home.join(format!(".{tool}")).join(arch);
    // Every process of this instance (QEMU, the vsock backend): the secret is not in its argv.
    let needle = home.to_string_lossy().into_owned();
    let mut procs = 0;
    for e in fs::read_dir("/proc").expect("proc").flatten() {
        let Ok(cmdline) = fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(&needle) {
            procs += 1;
            assert!(
                !cmdline.contains(secret),
                "credential on a command line: {cmdline}"
            );
        }
    }
    assert!(procs >= 1, "found no process of the instance");
    for e in fs::read_dir(&state).expect("ls state").flatten() {
        let p = e.path();
        if p.is_file()
            && fs::metadata(&p)
                .map(|m| m.len() < (64 << 20))
                .unwrap_or(false)
        {
            let text = String::from_utf8_lossy(&fs::read(&p).unwrap_or_default()).into_owned();
            assert!(!text.contains(secret), "credential in {}", p.display());
        }
    }
    let dir_mode = fs::metadata(&state)
        .expect("state dir")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(dir_mode, 0o700, "{}", state.display());
    let mut seen = 0;
    for e in fs::read_dir(&state).expect("ls state") {
        let e = e.expect("entry");
        let mode = fs::symlink_metadata(e.path())
            .expect("stat")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode & 0o077, 0, "{} is mode {mode:o}", e.path().display());
        seen += 1;
    }
    assert!(
        seen >= 5,
        "expected disk, logs, lock and sockets in {}",
        state.display()
    );

    // /proc/net: every listening TCP socket (state 0A) and every bound UDP socket, by local
    // address. Loopback ones (containerd's CRI streaming server binds 127.0.0.1) are not
    // reachable from a network; anything else is.
    let script = home.join("listen.sh");
    fs::write(
        &script,
        "for f in /proc/net/tcp /proc/net/tcp6; do\n\
           while read -r sl local remote st rest; do [ \"$st\" = 0A ] && echo \"tcp $local\"; done < $f\n\
         done\n\
         for f in /proc/net/udp /proc/net/udp6; do\n\
           while read -r sl local rest; do [ \"$sl\" != sl ] && echo \"udp $local\"; done < $f\n\
         done\n\
         echo done\n",
    )
    .expect("script");
    let mut cmd = tool_command(tool);
    cmd.args(["-a", arch, "vshell"])
        .env("HOME", home)
        .env("VCONTAINER_CACHE_DIR", cache_dir())
        .stdin(fs::File::open(&script).expect("open"));
    let r = run_command(cmd);
    r.assert_ok("vshell");
    assert!(r.stdout.lines().any(|l| l == "done"), "{r:?}");
    let exposed: Vec<&str> = r
        .stdout
        .lines()
        .filter(|l| *l != "done")
        .filter(|l| {
            let addr = l.split_whitespace().nth(1).unwrap_or_default();
            !is_loopback(addr.split(':').next().unwrap_or_default())
        })
        .collect();
    assert!(
        exposed.is_empty(),
        "sockets open to the network in the guest: {exposed:?}"
    );
}

/// A /proc/net address (hex, in the kernel's byte order) on the loopback interface: 127.0.0.0/8,
/// ::1 or ::ffff:127.x.
fn is_loopback(hex: &str) -> bool {
    match hex.len() {
        8 => hex.ends_with("7F"),
        32 => {
            hex == "00000000000000000000000001000000"
                || (hex.starts_with("0000000000000000FFFF0000") && hex.ends_with("7F"))
        }
        _ => false,
    }
}

#[test]
fn proc_net_loopback_addresses() {
    assert!(is_loopback("0100007F"));
    assert!(!is_loopback("00000000"));
    assert!(!is_loopback("0F02000A"));
    assert!(is_loopback("00000000000000000000000001000000"));
    assert!(!is_loopback("00000000000000000000000000000000"));
    assert!(is_loopback("0000000000000000FFFF00000100007F"));
}

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

    // Registry credentials on the start: they must reach the guest only over vsock (an auth
    // file), never a command line, the console or any host state file.
    let secret = format!("S3cr3t-{}-{tool}", std::process::id());
    run_tool(
        tool,
        &home,
        &[
            "-a",
            a,
            "--registry",
            "10.0.2.2:5999",
            "--insecure-registry",
            "10.0.2.2:5999",
            "--registry-user",
            "ci",
            "--registry-pass",
            &secret,
            "memres",
            "start",
        ],
    )
    .assert_ok("memres start");
    security_checks(tool, &home, a, &secret);
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
        "storage/vfs-images/images.json"
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
