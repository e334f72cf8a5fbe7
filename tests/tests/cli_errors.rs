//! Bad input through the real CLI: a clear message, a non-zero exit, and no output file. None of
//! these boot a VM except where noted (the QEMU/backend checks get as far as launching).

use std::path::{Path, PathBuf};
use std::process::Stdio;

use vcontainer::bench::fixture::write_busybox_layout;
use vcontainer_initramfs::Arch;
use vcontainer_tests::vm::{bin_dir, cache_dir, run_command, run_tool, tool_command, Run};

struct Case {
    dir: tempfile::TempDir,
}

impl Case {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    fn home(&self) -> PathBuf {
        let h = self.dir.path().join("home");
        std::fs::create_dir_all(&h).expect("home");
        h
    }

    fn out(&self) -> PathBuf {
        self.dir.path().join("out.tar")
    }

    /// A valid layout (the binary inside does not matter: nothing boots).
    fn layout(&self) -> PathBuf {
        let fake = self.dir.path().join("busybox");
        std::fs::write(&fake, b"\x7fELF fake").expect("write");
        let l = self.dir.path().join("layout");
        write_busybox_layout(&l, "amd64", &fake, "1.0").expect("layout");
        l
    }

    fn vimport(&self, layout: &Path) -> Run {
        run_tool(
            "vdkr",
            &self.home(),
            &[
                "-a",
                "x86_64",
                "vimport",
                layout.to_str().expect("utf8"),
                "x:1",
                "--storage",
                self.out().to_str().expect("utf8"),
            ],
        )
    }

    fn assert_failed_cleanly(&self, r: &Run, needle: &str) {
        assert_ne!(r.code, Some(0), "must fail: {r:?}");
        assert!(r.code.is_some(), "must exit, not die of a signal: {r:?}");
        assert!(
            r.stderr.to_lowercase().contains(&needle.to_lowercase()),
            "stderr should mention {needle:?}: {}",
            r.stderr
        );
        assert!(!self.out().exists(), "no output file may be left");
        let leftovers: Vec<_> = std::fs::read_dir(self.dir.path())
            .expect("ls")
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().contains("partial"))
            .collect();
        assert!(leftovers.is_empty(), "no partial files: {leftovers:?}");
    }
}

fn blobs(layout: &Path) -> Vec<PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(layout.join("blobs/sha256"))
        .expect("ls")
        .map(|e| e.expect("entry").path())
        .collect();
    v.sort_by_key(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0));
    v
}

#[test]
fn unknown_arch() {
    let c = Case::new();
    let r = run_tool("vdkr", &c.home(), &["-a", "riscv64", "images"]);
    c.assert_failed_cleanly(&r, "unsupported architecture 'riscv64'");
}

#[test]
fn unknown_command() {
    let c = Case::new();
    let r = run_tool("vdkr", &c.home(), &["-a", "x86_64", "frobnicate"]);
    c.assert_failed_cleanly(&r, "unknown command: frobnicate");
}

#[test]
fn missing_layout() {
    let c = Case::new();
    let r = c.vimport(&c.dir.path().join("no-such-dir"));
    c.assert_failed_cleanly(&r, "does not exist");
}

#[test]
fn empty_directory() {
    let c = Case::new();
    let d = c.dir.path().join("plain");
    std::fs::create_dir(&d).expect("mkdir");
    let r = c.vimport(&d);
    c.assert_failed_cleanly(&r, "the directory is empty");
}

#[test]
fn directory_with_only_nested_layouts_gets_a_hint() {
    let c = Case::new();
    let d = c.dir.path().join("images");
    std::fs::create_dir(&d).expect("mkdir");
    std::fs::create_dir(d.join("app-oci")).expect("mkdir");
    let r = c.vimport(&d);
    c.assert_failed_cleanly(&r, "app-oci");
}

/// Errors found before anything boots, for the command families of the CLI.
#[test]
fn bad_engine_command_input() {
    let c = Case::new();
    let h = c.home();
    let missing = c.dir.path().join("missing.tar");
    let missing = missing.to_str().expect("utf8");
    let no_dir = c.dir.path().join("no-dir/out.tar");
    let no_dir = no_dir.to_str().expect("utf8");
    let volume = format!("{missing}:/x");
    let cases: &[(&[&str], &str)] = &[
        (&["cp", "a", "b"], "container side"),
        (&["cp", "a:/x", "b:/y"], "exactly one"),
        (&["exec", "web"], "exec requires <container> <command>"),
        (&["load", "-i", missing], "File not found"),
        (&["import", missing], "File not found"),
        (&["save", "-o", no_dir, "img"], "does not exist"),
        (&["save", "-o", "x.tar"], "save requires <image>"),
        (&["pull"], "pull requires <image>"),
        (&["image"], "image requires a subcommand"),
        (&["system"], "system requires a subcommand"),
        (&["run", "-v", &volume, "img"], "Volume source not found"),
        (&["run", "--name"], "needs a value"),
        (&["vrun"], "Usage: vrun"),
        (&["frobnicate"], "Unknown command: frobnicate"),
        (&["vconfig", "arch", "mips"], "aarch64 or x86_64"),
        (&["vconfig", "state"], "Unknown config key: state"),
        (&["memres", "start", "-p", "99999:80"], "99999"),
        (&["memres", "start", "-p", "8080"], "8080"),
        (&["--registry-pass", "x", "images"], "--registry-user"),
        (&["vstorage", "clean", "mips"], "mips"),
    ];
    for (args, needle) in cases {
        let mut full = vec!["-a", "x86_64"];
        full.extend_from_slice(args);
        let r = run_tool("vdkr", &h, &full);
        c.assert_failed_cleanly(&r, needle);
    }
}

#[test]
fn unsafe_auth_file_is_refused_before_boot() {
    use std::os::unix::fs::PermissionsExt;
    let c = Case::new();
    let auth = c.dir.path().join("auth.json");
    std::fs::write(&auth, b"{\"auths\":{}}").expect("write");
    std::fs::set_permissions(&auth, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let args = |p: &Path| {
        run_tool(
            "vdkr",
            &c.home(),
            &[
                "-a",
                "x86_64",
                "--config",
                p.to_str().expect("utf8"),
                "images",
            ],
        )
    };
    c.assert_failed_cleanly(&args(&auth), "chmod 600");
    let link = c.dir.path().join("link.json");
    std::os::unix::fs::symlink(&auth, &link).expect("symlink");
    c.assert_failed_cleanly(&args(&link), "symlink");
}

#[test]
fn malformed_index() {
    let c = Case::new();
    let l = c.layout();
    std::fs::write(l.join("index.json"), b"{ this is not json").expect("write");
    let r = c.vimport(&l);
    c.assert_failed_cleanly(&r, "malformed");
}

#[test]
fn missing_blob() {
    let c = Case::new();
    let l = c.layout();
    let largest = blobs(&l).pop().expect("a blob");
    std::fs::remove_file(&largest).expect("rm");
    let r = c.vimport(&l);
    c.assert_failed_cleanly(&r, "missing");
}

#[test]
fn digest_mismatch() {
    let c = Case::new();
    let l = c.layout();
    let largest = blobs(&l).pop().expect("a blob");
    let mut bytes = std::fs::read(&largest).expect("read");
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&largest, bytes).expect("write");
    let r = c.vimport(&l);
    c.assert_failed_cleanly(&r, "corrupt");
}

#[test]
fn output_directory_missing() {
    let c = Case::new();
    let l = c.layout();
    let r = run_tool(
        "vdkr",
        &c.home(),
        &[
            "-a",
            "x86_64",
            "vimport",
            l.to_str().expect("utf8"),
            "x:1",
            "--storage",
            "/nonexistent-dir/out.tar",
        ],
    );
    c.assert_failed_cleanly(&r, "does not exist");
}

#[test]
fn input_storage_missing() {
    let c = Case::new();
    let r = run_tool(
        "vdkr",
        &c.home(),
        &[
            "-a",
            "x86_64",
            "--input-storage",
            "/nonexistent.tar",
            "images",
        ],
    );
    c.assert_failed_cleanly(&r, "no such file");
}

/// Runs vdkr with a PATH that lacks a tool, the x86_64 guest image already built, and the agent
/// given explicitly (no cargo on that PATH).
fn run_with_path(c: &Case, path: &str) -> Run {
    let prep = run_tool("vcontainer", &c.home(), &["image", "build", "-a", "x86_64"]);
    prep.assert_ok("image build");
    let agent = bin_dir()
        .parent()
        .expect("target")
        .join(Arch::X86_64.musl_triple())
        .join("agent/vcontainer-agent");
    let mut cmd = tool_command("vdkr");
    cmd.args(["-a", "x86_64", "--stateless", "images"])
        .env_clear()
        .env("HOME", c.home())
        .env("PATH", path)
        .env("VCONTAINER_CACHE_DIR", cache_dir())
        .env("VCONTAINER_AGENT_X86_64", agent)
        .stdin(Stdio::null());
    run_command(cmd)
}

#[test]
fn qemu_missing() {
    let c = Case::new();
    let empty = c.dir.path().join("empty-bin");
    std::fs::create_dir(&empty).expect("mkdir");
    let r = run_with_path(&c, empty.to_str().expect("utf8"));
    c.assert_failed_cleanly(&r, "qemu-system-x86");
}

#[test]
fn vsock_backend_missing() {
    let c = Case::new();
    // QEMU and mke2fs, but no vhost-device-vsock (it lives in /usr/local/bin or ~/.cargo/bin).
    let bin = c.dir.path().join("bin");
    std::fs::create_dir(&bin).expect("mkdir");
    for tool in ["qemu-system-x86_64", "mke2fs"] {
        let found = ["/usr/bin", "/usr/sbin", "/sbin", "/bin"]
            .iter()
            .map(|d| Path::new(d).join(tool))
            .find(|p| p.exists())
            .unwrap_or_else(|| panic!("{tool} is needed for this test"));
        std::os::unix::fs::symlink(found, bin.join(tool)).expect("symlink");
    }
    let r = run_with_path(&c, bin.to_str().expect("utf8"));
    c.assert_failed_cleanly(&r, "vhost-device-vsock");
}
