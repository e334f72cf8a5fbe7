//! SCRATCH (not to be committed): reproduces lost resizes of `vdkr exec -it`.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use vcontainer::fixture::write_busybox_layout;
use vcontainer_initramfs::Arch;
use vcontainer_tests::pty::PtyCommand;
use vcontainer_tests::vm::{bin_dir, busybox_for, cache_dir, run_tool, ResidentGuard};

fn pty(home: &PathBuf, args: &[&str]) -> PtyCommand {
    let mut cmd = Command::new(bin_dir().join("vdkr"));
    cmd.arg("-a")
        .arg("x86_64")
        .args(args)
        .env("HOME", home)
        .env("VCONTAINER_CACHE_DIR", cache_dir());
    PtyCommand::spawn(cmd, 30, 100).expect("spawn on a pty")
}

fn guest_sizes(home: &PathBuf) -> String {
    let mut cmd = Command::new(bin_dir().join("vdkr"));
    cmd.args(["-a", "x86_64", "vshell"])
        .env("HOME", home)
        .env("VCONTAINER_CACHE_DIR", cache_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("vshell");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"for p in /dev/pts/[0-9]*; do echo \"$p $(stty -F $p size)\"; done; ps -o pid,args 2>/dev/null | grep -v grep | grep 'docker exec' || ps | grep 'docker exec'\n")
        .unwrap();
    let out = child.wait_with_output().expect("wait");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn scratch_resize_race() {
    let n: usize = std::env::var("RESIZE_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8);
    let mode = std::env::var("RESIZE_MODE").unwrap_or_else(|_| "prompt".into());
    let work = tempfile::tempdir().expect("tempdir");
    let home = work.path().join("home");
    std::fs::create_dir(&home).expect("home");
    let _resident = ResidentGuard {
        tool: "vdkr".into(),
        home: home.clone(),
        args: vec!["-a".into(), "x86_64".into()],
    };
    let ok = |args: &[&str]| {
        let mut full = vec!["-a", "x86_64"];
        full.extend_from_slice(args);
        let r = run_tool("vdkr", &home, &full);
        r.assert_ok(&args.join(" "));
        r
    };
    let busybox = busybox_for(Arch::X86_64);
    let layout = work.path().join("hello-oci");
    write_busybox_layout(&layout, Arch::X86_64.oci(), &busybox, "1.0").expect("fixture");
    ok(&["memres", "start"]);
    ok(&["vimport", layout.to_str().unwrap(), "hello:1.0"]);
    ok(&["run", "-d", "--name", "web", "hello:1.0", "sleep", "1000"]);
    let mut lost = 0;
    for i in 0..n {
        let mut p = pty(&home, &["exec", "-it", "web", "sh"]);
        let t = Instant::now();
        if mode == "spawn" {
            p.resize(40, 120).expect("resize");
        }
        p.expect("#", Duration::from_secs(60)).expect("prompt");
        let prompt_at = t.elapsed();
        if mode == "prompt" {
            p.resize(40, 120).expect("resize");
        }
        if mode == "late" {
            p.send(b"stty size; tty\r").expect("send");
            p.expect("30 100", Duration::from_secs(30)).expect("size");
            p.resize(40, 120).expect("resize");
        }
        let resized_at = t.elapsed();
        let mut seen = None;
        for _ in 0..10 {
            p.send(b"stty size\r").expect("send");
            if p.expect("40 120", Duration::from_secs(2)).is_ok() {
                seen = Some(t.elapsed());
                break;
            }
        }
        eprintln!(
            "iteration {i}: prompt {:.2}s resize {:.2}s seen {:?}",
            prompt_at.as_secs_f64(),
            resized_at.as_secs_f64(),
            seen
        );
        if seen.is_none() {
            lost += 1;
            eprintln!("LOST; guest ptys:\n{}", guest_sizes(&home));
            // A second resize once everything is up.
            p.resize(41, 121).expect("resize");
            let mut second = false;
            for _ in 0..5 {
                p.send(b"stty size\r").expect("send");
                if p.expect("41 121", Duration::from_secs(2)).is_ok() {
                    second = true;
                    break;
                }
            }
            eprintln!("second resize arrived: {second}");
        }
        p.send(b"exit 4\r").expect("send");
        let (status, _out) = p.finish(Duration::from_secs(60)).expect("finish");
        assert_eq!(status.and_then(|s| s.code()), Some(4));
    }
    eprintln!("lost {lost} of {n} (mode {mode})");
}
