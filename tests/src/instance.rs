//! One vdkr/vpdmn instance under test, for the VM tests: its own `HOME` (so its state directory,
//! sockets and CID are the test's own), a work directory for fixtures and outputs, and the VM
//! processes it owns. Dropping it stops a memory-resident VM and kills any VM process still naming
//! its `HOME` (only this test's: the path is a fresh temporary directory).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use vcontainer::bench::fixture::{write_busybox_layout, write_layout_with_files};
use vcontainer_initramfs::Arch;

use crate::vm::{busybox_for, cache_dir, run_command, tool_command, ResidentGuard, Run};

pub struct Instance {
    pub tool: &'static str,
    pub arch: Arch,
    pub home: PathBuf,
    work: tempfile::TempDir,
    _resident: ResidentGuard,
}

impl Instance {
    pub fn new(tool: &'static str, arch: Arch) -> Instance {
        let work = tempfile::tempdir().expect("tempdir");
        let home = work.path().join("home");
        std::fs::create_dir(&home).expect("home");
        Instance {
            tool,
            arch,
            _resident: ResidentGuard {
                tool: tool.into(),
                home: home.clone(),
                args: vec!["-a".into(), arch.name().into()],
            },
            home,
            work,
        }
    }

    /// A path in the work directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.work.path().join(name)
    }

    /// The tool with `-a ARCH`, this `HOME`, the shared image cache, stdin closed.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = tool_command(self.tool);
        cmd.arg("-a")
            .arg(self.arch.name())
            .args(args)
            .env("HOME", &self.home)
            .env("VCONTAINER_CACHE_DIR", cache_dir())
            .stdin(Stdio::null());
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Run {
        run_command(self.command(args))
    }

    pub fn ok(&self, args: &[&str]) -> Run {
        let r = self.run(args);
        r.assert_ok(&format!("{} {}", self.tool, args.join(" ")));
        r
    }

    /// `images`, which must succeed; its stdout.
    pub fn images(&self) -> String {
        self.ok(&["images"]).stdout
    }

    /// Starts the tool in the background, its output into files of the work directory.
    pub fn spawn(&self, args: &[&str]) -> Bg {
        let n = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_nanos();
        let out = self.path(&format!("bg-{n}.out"));
        let err = self.path(&format!("bg-{n}.err"));
        let child = self
            .command(args)
            .stdout(std::fs::File::create(&out).expect("out"))
            .stderr(std::fs::File::create(&err).expect("err"))
            .spawn()
            .expect("spawn CLI");
        eprintln!("  spawned {} {:?} (pid {})", self.tool, args, child.id());
        Bg {
            child,
            out,
            err,
            started: Instant::now(),
        }
    }

    /// A shell script run by `/bin/sh` in the VM itself (`vshell` with the script on stdin).
    pub fn vshell(&self, script: &str) -> Run {
        let mut cmd = self.command(&["vshell"]);
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let started = Instant::now();
        let mut child = cmd.spawn().expect("spawn vshell");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(script.as_bytes())
            .expect("write script");
        let out = child.wait_with_output().expect("wait vshell");
        let run = Run {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            secs: started.elapsed().as_secs_f64(),
        };
        eprintln!("  vshell {script:?} -> {:?} in {:.1} s", run.code, run.secs);
        run
    }

    pub fn state_dir(&self) -> PathBuf {
        self.home
            .join(format!(".{}", self.tool))
            .join(self.arch.name())
    }

    pub fn state_disk(&self) -> PathBuf {
        let engine = if self.tool == "vdkr" {
            "docker"
        } else {
            "podman"
        };
        self.state_dir().join(format!("{engine}-state.img"))
    }

    /// The memory-resident VM's record (`instance.json`), which must exist.
    pub fn resident_record(&self) -> serde_json::Value {
        let text = std::fs::read_to_string(self.state_dir().join("instance.json"))
            .expect("instance.json of the running VM");
        serde_json::from_str(&text).expect("instance.json")
    }

    /// QEMU's pid from the memory-resident VM's record.
    pub fn resident_qemu_pid(&self) -> u32 {
        self.resident_record()["qemu"]["pid"]
            .as_u64()
            .expect("qemu.pid") as u32
    }

    /// The QEMU and vhost-device-vsock processes of this instance (found by its `HOME` in argv).
    pub fn vm_procs(&self) -> Vec<(u32, String)> {
        vm_procs_naming(&self.home)
    }

    pub fn qemu_pid(&self) -> Option<u32> {
        self.vm_procs()
            .into_iter()
            .find(|(_, c)| c.starts_with("qemu"))
            .map(|(p, _)| p)
    }

    pub fn backend_pid(&self) -> Option<u32> {
        self.vm_procs()
            .into_iter()
            .find(|(_, c)| c.starts_with("vhost"))
            .map(|(p, _)| p)
    }

    /// After a command ended, none of its VM processes may remain.
    pub fn assert_no_vm_left(&self, what: &str) {
        let ok = wait_until(Duration::from_secs(15), || self.vm_procs().is_empty());
        assert!(ok, "{what}: VM processes left: {:?}", self.vm_procs());
    }

    /// `e2fsck -n -f` on the state disk: the last stop was graceful, so it must be clean.
    pub fn assert_disk_clean(&self) {
        fsck(&self.state_disk());
    }

    /// Stops the memory-resident VM gracefully, waits for its QEMU to go, and checks the disk.
    pub fn stop_and_fsck(&self) {
        let pid = self.resident_qemu_pid();
        self.ok(&["memres", "stop"]);
        let gone = wait_until(Duration::from_secs(60), || process_gone(pid));
        assert!(gone, "QEMU {pid} still runs after memres stop");
        let r = self.run(&["memres", "status"]);
        assert_eq!((r.code, r.stdout.trim()), (Some(1), "stopped"), "{r:?}");
        self.assert_disk_clean();
    }

    /// A busybox image layout for this arch in the work directory (made once).
    pub fn busybox_layout(&self, name: &str) -> PathBuf {
        let dir = self.path(name);
        if !dir.exists() {
            write_busybox_layout(&dir, self.arch.oci(), &busybox_for(self.arch), "1.0")
                .expect("busybox layout");
        }
        dir
    }

    /// A layout whose single layer holds busybox and `mib` MiB of noise (made once).
    pub fn big_layout(&self, name: &str, mib: usize) -> PathBuf {
        let dir = self.path(name);
        if !dir.exists() {
            let data = vcontainer::bench::fixture::pseudo_random(mib << 20);
            write_layout_with_files(
                &dir,
                self.arch.oci(),
                &busybox_for(self.arch),
                "1.0",
                &[("big.bin", &data)],
            )
            .expect("big layout");
        }
        dir
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        for (pid, _) in self.vm_procs() {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
        }
    }
}

/// A CLI running in the background.
pub struct Bg {
    child: Child,
    out: PathBuf,
    err: PathBuf,
    started: Instant,
}

impl Bg {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&self, sig: Signal) {
        kill(Pid::from_raw(self.pid() as i32), sig).expect("signal the CLI");
    }

    pub fn running(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }

    /// Waits at most `limit` for the CLI; a CLI still running then is killed and the test fails.
    pub fn wait(mut self, limit: Duration) -> Run {
        let t = Instant::now();
        let status = loop {
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                break s;
            }
            if t.elapsed() > limit {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "the CLI hung: still running {} s after waiting began\n--- stderr ---\n{}",
                    limit.as_secs(),
                    std::fs::read_to_string(&self.err).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let run = Run {
            code: status.code(),
            stdout: std::fs::read_to_string(&self.out).unwrap_or_default(),
            stderr: std::fs::read_to_string(&self.err).unwrap_or_default(),
            secs: self.started.elapsed().as_secs_f64(),
        };
        eprintln!(
            "  background CLI -> {:?} in {:.1} s ({:.1} s after waiting began)\n  stderr: {}",
            run.code,
            run.secs,
            t.elapsed().as_secs_f64(),
            run.stderr.trim()
        );
        run
    }

    /// True once the CLI has an unnamed (`O_TMPFILE`) file open in `dir`: an output it is
    /// writing (the kernel shows it as `DIR/#INODE (deleted)`).
    pub fn has_unnamed_file_in(&self, dir: &Path) -> bool {
        let Ok(fds) = std::fs::read_dir(format!("/proc/{}/fd", self.pid())) else {
            return false;
        };
        let prefix = format!("{}/#", dir.display());
        fds.flatten()
            .filter_map(|e| std::fs::read_link(e.path()).ok())
            .any(|p| {
                let p = p.to_string_lossy();
                p.starts_with(&prefix) && p.ends_with(" (deleted)")
            })
    }

    /// True once the CLI has a file open under `dir` (e.g. an image blob it is sending).
    pub fn has_open_under(&self, dir: &Path) -> bool {
        let Ok(fds) = std::fs::read_dir(format!("/proc/{}/fd", self.pid())) else {
            return false;
        };
        fds.flatten()
            .filter_map(|e| std::fs::read_link(e.path()).ok())
            .any(|p| p.starts_with(dir))
    }
}

/// QEMU, vhost-device-vsock and VM guard processes (not zombies) whose argv contains `home`;
/// each with its command name (`vcontainer-vm-guard` for a guard, whose executable is vdkr or
/// vpdmn).
pub fn vm_procs_naming(home: &Path) -> Vec<(u32, String)> {
    let needle = home.to_string_lossy().into_owned();
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let comm = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default();
        let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let guard = cmdline.starts_with(b"vcontainer-vm-guard\0");
        let comm = if guard {
            "vcontainer-vm-guard"
        } else {
            comm.trim()
        };
        if !(comm.starts_with("qemu") || comm.starts_with("vhost") || guard) || process_gone(pid) {
            continue;
        }
        if String::from_utf8_lossy(&cmdline).contains(&needle) {
            found.push((pid, comm.to_string()));
        }
    }
    found
}

/// True when `pid` has exited: no such process, or a zombie nobody reaped yet.
pub fn process_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

/// Polls `cond` every 50 ms for at most `limit`; its last answer.
pub fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let t = Instant::now();
    while t.elapsed() < limit {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    cond()
}

fn e2fsck() -> PathBuf {
    ["/usr/sbin/e2fsck", "/sbin/e2fsck"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .expect("e2fsck (e2fsprogs) is needed for the VM tests")
}

/// `e2fsck -n -f` (read-only, full check) on `disk`, which must be clean.
pub fn fsck(disk: &Path) {
    let out = Command::new(e2fsck())
        .args(["-n", "-f"])
        .arg(disk)
        .output()
        .expect("run e2fsck");
    assert_eq!(
        out.status.code(),
        Some(0),
        "e2fsck -n {}: {}\n{}",
        disk.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `dir` holds exactly `expected` (no output file, no `.partial-` temporary file).
pub fn assert_only(dir: &Path, expected: &[&str]) {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("ls")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut want: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(names, want, "unexpected files in {}", dir.display());
}
