//! The main job as an ordinary user: build hosts are often unprivileged containers. When the
//! tests run as root (CI), a dedicated user is created and the CLI runs under its uid.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use vcontainer::bench::fixture::write_busybox_layout;
use vcontainer_initramfs::Arch;
use vcontainer_tests::vm::{bin_dir, busybox_for, cache_dir, run_command, run_tool, tar_file};

const TEST_USER: &str = "vcontainer-test";

/// uid and gid of the unprivileged user to run as (created when we are root).
fn unprivileged_ids() -> (u32, u32) {
    if !nix::unistd::geteuid().is_root() {
        return (
            nix::unistd::getuid().as_raw(),
            nix::unistd::getgid().as_raw(),
        );
    }
    if nix::unistd::User::from_name(TEST_USER)
        .ok()
        .flatten()
        .is_none()
    {
        let status = Command::new("useradd")
            .args([
                "--system",
                "--user-group",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                TEST_USER,
            ])
            .status()
            .expect("useradd");
        assert!(status.success(), "useradd {TEST_USER} failed");
    }
    let user = nix::unistd::User::from_name(TEST_USER)
        .expect("getpwnam")
        .expect("test user exists");
    (user.uid.as_raw(), user.gid.as_raw())
}

fn chown_tree(path: &Path, uid: u32, gid: u32) {
    let status = Command::new("chown")
        .arg("-R")
        .arg(format!("{uid}:{gid}"))
        .arg(path)
        .status()
        .expect("chown");
    assert!(status.success());
}

fn copy_exec(src: &Path, dest: &Path) {
    std::fs::copy(src, dest).expect("copy binary");
}

#[test]
fn vimport_with_storage_as_an_ordinary_user() {
    let arch = Arch::X86_64;
    // As the invoking user: make sure the image and the agent it was built with exist, so the
    // unprivileged run only reads the cache.
    let prep = tempfile::tempdir().expect("tempdir");
    run_tool(
        "vcontainer",
        prep.path(),
        &["image", "build", "-a", arch.name()],
    )
    .assert_ok("image build");
    let agent = bin_dir()
        .parent()
        .expect("target dir")
        .join(arch.musl_triple())
        .join("agent/vcontainer-agent");
    assert!(agent.is_file(), "{} missing", agent.display());

    let (uid, gid) = unprivileged_ids();
    let work = tempfile::Builder::new()
        .prefix("vcontainer-unpriv-")
        .tempdir_in("/tmp")
        .expect("tempdir");
    let root = work.path();
    std::fs::set_permissions(root, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    let home = root.join("home");
    std::fs::create_dir(&home).expect("home");
    let bin = root.join("bin");
    std::fs::create_dir(&bin).expect("bin");
    copy_exec(&bin_dir().join("vdkr"), &bin.join("vdkr"));
    // Installed-release layout: the agent next to the CLI, so nothing needs cargo.
    copy_exec(&agent, &bin.join(format!("vcontainer-agent-{arch}")));
    let layout = root.join("hello-oci");
    write_busybox_layout(&layout, arch.oci(), &busybox_for(arch), "1.0").expect("fixture");
    chown_tree(root, uid, gid);

    let out: PathBuf = root.join("hello.tar");
    let path = std::env::var("PATH").unwrap_or_default();
    let mut cmd = Command::new(bin.join("vdkr"));
    cmd.args(["-a", arch.name(), "--stateless", "vimport"])
        .arg(&layout)
        .arg("hello:1.0")
        .arg("--storage")
        .arg(&out)
        .env_clear()
        .env("HOME", &home)
        .env(
            "PATH",
            format!("/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin:{path}"),
        )
        .env("VCONTAINER_CACHE_DIR", cache_dir())
        .stdin(Stdio::null())
        .uid(uid)
        .gid(gid);
    let r = run_command(cmd);
    r.assert_ok("unprivileged vimport --storage");
    let meta = std::fs::metadata(&out).expect("storage tar");
    assert_eq!(
        std::os::unix::fs::MetadataExt::uid(&meta),
        uid,
        "written by the user"
    );
    let repos =
        tar_file(&out, "docker/image/overlay2/repositories.json").expect("repositories.json");
    assert!(repos.contains("hello:1.0"), "{repos}");
}
