//! A CLI killed the way harness timeouts kill it (SIGKILL: no cleanup runs) takes its VM with it
//! (issue 11). The guest notices its control connection closing and shuts down cleanly, the VM
//! guard stops the vsock backend once QEMU is gone, so within a short time no process of the
//! state directory is left, no output file exists, the state disk is clean for `e2fsck -n`, and
//! the next command works. Plus the ways an instance is found again by tools written for
//! upstream: `daemon.pid`, orphans in `memres list`, `vstorage` with `--state-dir`, and a pull
//! on a host without a network route failing fast.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use vcontainer_initramfs::Arch;
use vcontainer_tests::instance::{assert_only, process_gone, wait_until, Bg, Instance};
use vcontainer_tests::vm::{run_command, s, tool_command};

/// Under TCG on a loaded 2-core host a boot plus an operation can take minutes.
const COMMAND_LIMIT: Duration = Duration::from_secs(900);
/// From the CLI's death to the last VM process gone: a guest killed while its engine starts
/// finishes that start first (engine start and stop are serialised), then stops cleanly.
const GONE_LIMIT: Duration = Duration::from_secs(120);
/// Large enough that its transfer takes seconds under TCG, so the kill lands mid-way.
const PAYLOAD_MIB: usize = 48;

/// SIGKILLs the background CLI once `ready` holds, then checks what a killed CLI must leave:
/// nothing of its VM running, a clean state disk, no memory-resident record.
fn kill_cli_when(w: &Instance, mut bg: Bg, what: &str, mut ready: impl FnMut(&Bg) -> bool) {
    let reached = wait_until(COMMAND_LIMIT, || ready(&bg) || !bg.running());
    assert!(
        reached && bg.running(),
        "{what}: the CLI ended before the moment to kill it"
    );
    eprintln!("  SIGKILL the CLI {what} (pid {})", bg.pid());
    kill(Pid::from_raw(bg.pid() as i32), Signal::SIGKILL).expect("kill");
    let killed = Instant::now();
    let _ = bg.wait(Duration::from_secs(10));
    let gone = wait_until(GONE_LIMIT, || w.vm_procs().is_empty());
    assert!(
        gone,
        "{what}: VM processes left {} s after the CLI was killed: {:?}",
        GONE_LIMIT.as_secs(),
        w.vm_procs()
    );
    eprintln!(
        "  {what}: every VM process gone {:.1} s after the CLI was killed",
        killed.elapsed().as_secs_f64()
    );
    w.assert_disk_clean();
    for marker in ["instance.json", "daemon.pid"] {
        assert!(
            !w.state_dir().join(marker).exists(),
            "{what}: {marker} left behind"
        );
    }
}

/// This boot's guest has its agent running: QEMU runs (its console log was emptied before it
/// started, so an earlier boot's lines are gone) and the console shows the agent.
fn agent_running(w: &Instance) -> bool {
    w.qemu_pid().is_some()
        && std::fs::read_to_string(w.state_dir().join("console.log"))
            .is_ok_and(|c| c.contains("vcontainer-agent:"))
}

#[test]
fn x86_64_docker_killed_cli() {
    let started = Instant::now();
    let w = Instance::new("vdkr", Arch::X86_64);

    eprintln!("SIGKILL during boot (before the agent is up)");
    let bg = w.spawn(&["images"]);
    kill_cli_when(&w, bg, "during boot", |_| {
        w.qemu_pid().is_some() && {
            std::thread::sleep(Duration::from_secs(2));
            true
        }
    });
    let t = Instant::now();
    w.ok(&["images"]);
    eprintln!(
        "  the next command works ({:.1} s)",
        t.elapsed().as_secs_f64()
    );

    eprintln!("SIGKILL during the --storage export");
    let big = w.big_layout("big-oci", PAYLOAD_MIB);
    w.ok(&["vimport", s(&big), "big:1.0"]);
    let out_dir = w.path("out");
    std::fs::create_dir(&out_dir).expect("out dir");
    let out = out_dir.join("storage.tar");
    let bg = w.spawn(&["--storage", s(&out), "images"]);
    kill_cli_when(&w, bg, "during the storage export", |bg| {
        bg.has_unnamed_file_in(&out_dir)
    });
    assert_only(&out_dir, &[]);
    w.ok(&["--storage", s(&out), "images"]);
    assert!(out.is_file(), "the next export works");

    eprintln!(
        "an unowned VM (its record deleted under it) is listed, then stopped by the next command"
    );
    w.ok(&["memres", "start"]);
    let pid = w.resident_qemu_pid();
    assert_eq!(
        daemon_pid(&w.state_dir()),
        Some(pid),
        "daemon.pid names the resident QEMU"
    );
    for f in ["instance.json", "daemon.pid"] {
        std::fs::remove_file(w.state_dir().join(f)).expect("remove record");
    }
    let r = w.ok(&["memres", "list"]);
    assert!(
        r.stdout.contains("orphan") && r.stdout.contains(&pid.to_string()),
        "memres list names the orphan: {r:?}"
    );
    let r = w.ok(&["vstorage", "list"]);
    assert!(r.stdout.contains("unowned VM running"), "{r:?}");
    let r = w.ok(&["--no-daemon", "images"]);
    assert!(r.stdout.contains("big"), "{r:?}");
    let said: Vec<&str> = r
        .stderr
        .lines()
        .filter(|l| l.contains("no command or memory-resident record owns"))
        .collect();
    assert_eq!(said.len(), 1, "one line says what was stopped: {r:?}");
    assert!(process_gone(pid), "the orphan QEMU {pid} was stopped");
    w.assert_no_vm_left("after the orphan was stopped and the command ran");
    w.assert_disk_clean();

    eprintln!("a pull on a host without a network route fails fast");
    pull_fails_fast_offline(&w);

    eprintln!(
        "x86_64 docker killed-CLI cases: {:.0} s",
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn aarch64_podman_killed_cli() {
    let started = Instant::now();
    let w = Instance::new("vpdmn", Arch::Aarch64);

    eprintln!("SIGKILL during an import");
    let big = w.big_layout("big-oci", PAYLOAD_MIB);
    let out = w.path("never.tar");
    let blobs = big.join("blobs");
    let bg = w.spawn(&["vimport", s(&big), "big:1.0", "--storage", s(&out)]);
    kill_cli_when(&w, bg, "during an import", |bg| bg.has_open_under(&blobs));
    assert!(!out.exists(), "no output after a killed import");
    w.ok(&["images"]);

    eprintln!("SIGKILL during memres start (the agent up, the engine starting)");
    let bg = w.spawn(&["memres", "start"]);
    kill_cli_when(&w, bg, "during memres start", |_| agent_running(&w));
    let r = w.run(&["memres", "status"]);
    assert_eq!((r.code, r.stdout.trim()), (Some(1), "stopped"), "{r:?}");

    eprintln!("memres start, then upstream's running marker follows the VM");
    w.ok(&["memres", "start"]);
    let pid = w.resident_qemu_pid();
    assert_eq!(daemon_pid(&w.state_dir()), Some(pid));
    assert!(Path::new(&format!("/proc/{pid}")).exists());
    w.stop_and_fsck();
    assert!(
        !w.state_dir().join("daemon.pid").exists(),
        "daemon.pid is removed on stop"
    );

    eprintln!(
        "aarch64 podman killed-CLI cases: {:.0} s",
        started.elapsed().as_secs_f64()
    );
}

/// `<state>/daemon.pid`'s pid, if the file exists.
fn daemon_pid(state: &Path) -> Option<u32> {
    let text = std::fs::read_to_string(state.join("daemon.pid")).ok()?;
    assert!(text.ends_with('\n'), "daemon.pid: {text:?}");
    Some(text.trim().parse().expect("daemon.pid holds a pid"))
}

/// A memory-resident VM started in a network namespace without routes (as on a build host with
/// no network): `run` of an image that is not there fails within seconds, naming the image,
/// instead of after 20–30 s of DNS retries in the guest.
fn pull_fails_fast_offline(w: &Instance) {
    let mut start = Command::new("unshare");
    start.arg("-n").arg(tool_command(w.tool).get_program());
    let base = w.command(&["memres", "start"]);
    start
        .args(base.get_args())
        .envs(base.get_envs().filter_map(|(k, v)| Some((k, v?))))
        .stdin(std::process::Stdio::null());
    run_command(start).assert_ok("memres start in a network namespace without routes");
    let t = Instant::now();
    let r = w.run(&["run", "--rm", "nosuch:1.0", "true"]);
    let secs = t.elapsed().as_secs_f64();
    eprintln!("  offline pull of a missing image failed after {secs:.1} s: {r:?}");
    assert!(matches!(r.code, Some(c) if c != 0), "{r:?}");
    assert!(
        r.stderr.contains("nosuch"),
        "the message names the image: {r:?}"
    );
    // The behaviour under test is failing fast: one 1 s DNS attempt instead of 5 s × 2 per
    // lookup (measured before this change: 20.5 s). Three times the measured figure as margin.
    assert!(
        secs < 15.0,
        "the pull took {secs:.1} s: the guest's DNS retries were not cut short"
    );
    w.stop_and_fsck();
}
