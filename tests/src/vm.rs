//! Running the real `vdkr`/`vpdmn` binaries against real VMs, for the end-to-end tests.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Instant;

/// The directory holding the binaries of the current test profile (`target/<profile>`).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    exe.parent()
        .and_then(Path::parent)
        .expect("test binary lives in target/<profile>/deps")
        .to_path_buf()
}

/// The shared guest image cache: `$VCONTAINER_CACHE_DIR`, else the invoking user's default.
/// Tests give each CLI run its own `HOME` (state), but never their own image cache: images take
/// minutes to build.
pub fn cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("VCONTAINER_CACHE_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    let home = std::env::var_os("HOME").expect("HOME or VCONTAINER_CACHE_DIR must be set");
    PathBuf::from(home).join(".cache/vcontainer")
}

/// A static busybox for `arch` (from Debian's busybox-static), cached beside the images.
pub fn busybox_for(arch: vcontainer_initramfs::Arch) -> PathBuf {
    vcontainer::bench::fixture::busybox_for(arch, &cache_dir()).expect("fetching busybox-static")
}

/// A path as `&str`, for argv.
pub fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// The output of one CLI run, with its wall time.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub secs: f64,
}

impl Run {
    pub fn assert_ok(&self, what: &str) -> &Self {
        assert_eq!(
            self.code,
            Some(0),
            "{what} failed\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.stdout,
            self.stderr
        );
        self
    }
}

/// A command running one of our binaries as a build system does: without auto-starting a
/// memory-resident VM (upstream's default, which vdkr/vpdmn keep), so that every test controls
/// which VMs exist. Tests of the auto-start itself remove these variables.
pub fn tool_command(tool: impl AsRef<Path>) -> Command {
    let mut cmd = Command::new(bin_dir().join(tool));
    cmd.env("VDKR_AUTO_DAEMON", "false")
        .env("VPDMN_AUTO_DAEMON", "false");
    cmd
}

/// Runs `tool` (vdkr or vpdmn) with `args`, `HOME=home`, the shared image cache, stdin closed.
pub fn run_tool(tool: &str, home: &Path, args: &[&str]) -> Run {
    let bin = bin_dir().join(tool);
    assert!(
        bin.is_file(),
        "{} is missing: build the binaries first (`cargo build --workspace --bins`, as scripts/test does)",
        bin.display()
    );
    let mut cmd = tool_command(tool);
    cmd.args(args)
        .env("HOME", home)
        .env("VCONTAINER_CACHE_DIR", cache_dir())
        .stdin(Stdio::null());
    run_command(cmd)
}

pub fn run_command(mut cmd: Command) -> Run {
    let started = Instant::now();
    let out: Output = cmd.output().expect("spawn CLI");
    let run = Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        secs: started.elapsed().as_secs_f64(),
    };
    eprintln!(
        "  {:?} -> {:?} in {:.1} s",
        cmd.get_args().collect::<Vec<_>>(),
        run.code,
        run.secs
    );
    run
}

/// Names of the entries of a tar file.
pub fn tar_names(path: &Path) -> Vec<String> {
    let f = std::fs::File::open(path).expect("open tar");
    tar::Archive::new(f)
        .entries()
        .expect("entries")
        .map(|e| {
            e.expect("entry")
                .path()
                .expect("path")
                .to_string_lossy()
                .into_owned()
        })
        .collect()
}

/// The contents of one file inside a tar file.
pub fn tar_file(path: &Path, name: &str) -> Option<String> {
    let f = std::fs::File::open(path).expect("open tar");
    let mut a = tar::Archive::new(f);
    for e in a.entries().expect("entries") {
        let mut e = e.expect("entry");
        let p = e
            .path()
            .expect("path")
            .to_string_lossy()
            .trim_start_matches("./")
            .to_string();
        if p == name {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut e, &mut s).expect("read");
            return Some(s);
        }
    }
    None
}

/// Stops the memory-resident VM of `home` (and `args`, e.g. `-a ARCH`) when dropped, so a failing
/// test does not leave QEMU running behind it.
pub struct ResidentGuard {
    pub tool: String,
    pub home: PathBuf,
    pub args: Vec<String>,
}

impl Drop for ResidentGuard {
    fn drop(&mut self) {
        let mut args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        args.extend(["memres", "stop", "--force"]);
        let bin = bin_dir().join(&self.tool);
        let _ = Command::new(bin)
            .args(&args)
            .env("HOME", &self.home)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}
