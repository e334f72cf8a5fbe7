//! Nothing in an image is lost on the way (issue 19), for the paths that need no VM: a rootfs
//! packed by `vcontainer oci build` (default options, `SOURCE_DATE_EPOCH`, and the explicit lossy
//! `--owner root`), compared file by file with the rootfs and with umoci's layer of the same
//! rootfs as a second oracle; and a storage tar installed into a target rootfs by
//! `vcontainer install-storage`, as root and as an unprivileged user under fakeroot, compared with
//! what the tar holds. The VM round trip per engine is in vm_fidelity.rs.

use std::fs;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use vcontainer_tests::fidelity::{
    assert_same, build_fixture, dir_view, tar_view, Compare, View, FIXTURE_MTIME, OLDER_EPOCH,
};
use vcontainer_tests::vm::{run_command, s, tool_command, Run};

const ALL: Compare = Compare {
    dir_mtimes: true,
    mtimes: true,
};

fn ok(r: Run, what: &str) -> Run {
    r.assert_ok(what);
    r
}

fn vcontainer(args: &[&str]) -> Command {
    let mut c = tool_command("vcontainer");
    c.args(args).stdin(Stdio::null());
    c
}

/// The layer blobs of the single image in the OCI layout `dir`, bottom first.
fn layer_blobs(dir: &Path) -> Vec<PathBuf> {
    let json = |p: PathBuf| -> serde_json::Value {
        serde_json::from_slice(&fs::read(&p).expect("read json")).expect("json")
    };
    let blob = |digest: &str| dir.join("blobs/sha256").join(&digest["sha256:".len()..]);
    let index = json(dir.join("index.json"));
    let manifest = json(blob(
        index["manifests"][0]["digest"]
            .as_str()
            .expect("manifest digest"),
    ));
    manifest["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|l| blob(l["digest"].as_str().expect("layer digest")))
        .collect()
}

/// The view of one layer blob (gzip or plain tar).
fn layer_view(blob: &Path) -> View {
    let f = BufReader::new(fs::File::open(blob).expect("blob"));
    let mut head = [0u8; 2];
    std::io::Read::read_exact(&mut fs::File::open(blob).expect("blob"), &mut head).expect("head");
    if head == [0x1f, 0x8b] {
        tar_view(flate2::bufread::MultiGzDecoder::new(f), b"")
    } else {
        tar_view(f, b"")
    }
}

fn single_layer_view(layout: &Path) -> View {
    let blobs = layer_blobs(layout);
    assert_eq!(blobs.len(), 1, "one layer by default: {blobs:?}");
    layer_view(&blobs[0])
}

fn oci_build(rootfs: &Path, out: &Path, extra: &[&str], epoch: Option<i64>) -> View {
    let mut c = vcontainer(&[
        "oci",
        "build",
        "--rootfs",
        s(rootfs),
        "-a",
        "x86_64",
        "-o",
        s(out),
        "--no-cache",
    ]);
    c.args(extra).env_remove("SOURCE_DATE_EPOCH");
    if let Some(e) = epoch {
        c.env("SOURCE_DATE_EPOCH", e.to_string());
    }
    ok(run_command(c), "vcontainer oci build");
    single_layer_view(out)
}

#[test]
fn oci_build_keeps_owners_modes_xattrs_links_devices_and_times() {
    let t = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tmp");
    let rootfs = t.path().join("rootfs");
    build_fixture(&rootfs);
    let source = dir_view(&rootfs);
    assert!(
        source.entries.len() > 20 && !source.links.is_empty(),
        "the fixture is what it claims: {source:?}"
    );

    // Default options: everything as it is, times included.
    let built = oci_build(&rootfs, &t.path().join("default"), &[], None);
    assert_same(&built, &source, ALL, "oci build, default options");

    // SOURCE_DATE_EPOCH: only the times change, clamped.
    let clamped = oci_build(&rootfs, &t.path().join("sde"), &[], Some(OLDER_EPOCH));
    let mut want = source.clone();
    for m in want.entries.values_mut() {
        assert_eq!(m.mtime, FIXTURE_MTIME);
        m.mtime = OLDER_EPOCH;
    }
    assert_same(&clamped, &want, ALL, "oci build with SOURCE_DATE_EPOCH");

    // The lossy choice is explicit, and only owners are lost.
    let rooted = oci_build(&rootfs, &t.path().join("root"), &["--owner", "root"], None);
    let mut want = source.clone();
    for m in want.entries.values_mut() {
        (m.uid, m.gid) = (0, 0);
    }
    assert_same(&rooted, &want, ALL, "oci build --owner root");

    // umoci, which upstream's image-oci uses, packs the same rootfs the same way: a second
    // oracle for what a layer of this tree must hold.
    let umoci = umoci_repack(&rootfs, &t.path().join("umoci"));
    assert_same(&umoci, &source, ALL, "umoci's layer of the fixture");
    assert_same(&built, &umoci, ALL, "our layer against umoci's");
}

/// The layer umoci makes of the rootfs the way upstream's image-oci drives it: an empty image
/// unpacked, the rootfs copied in with `cp -a`, repacked. (`umoci insert`, umoci's faster path,
/// wrote a truncated layer for this fixture with umoci 0.4.7: its last entry cut short.)
fn umoci_repack(rootfs: &Path, layout: &Path) -> View {
    let image = format!("{}:t", layout.display());
    let bundle = layout.with_extension("bundle");
    let run = |program: &str, args: &[&str]| {
        let mut c = Command::new(program);
        c.args(args).stdin(Stdio::null());
        ok(run_command(c), &format!("{program} {}", args[0]));
    };
    run("umoci", &["init", "--layout", s(layout)]);
    run("umoci", &["new", "--image", &image]);
    run("umoci", &["unpack", "--image", &image, s(&bundle)]);
    let copy_from = rootfs.join(".");
    run("cp", &["-a", s(&copy_from), s(&bundle.join("rootfs"))]);
    run("umoci", &["repack", "--image", &image, s(&bundle)]);
    single_layer_view(layout)
}

/// A docker storage tar holding the fixture as one layer's `diff`, written by GNU tar with
/// xattrs, as the guest writes storage tars.
fn storage_tar_of(rootfs: &Path, dir: &Path) -> PathBuf {
    let storage = dir.join("docker/overlay2/0123abcd/diff");
    fs::create_dir_all(&storage).expect("storage dirs");
    let mut cp = Command::new("cp");
    cp.args(["-a", "--"]).arg(rootfs.join(".")).arg(&storage);
    ok(run_command(cp), "cp -a the fixture into the storage");
    let tarf = dir.join("storage.tar");
    let mut tar = Command::new("tar");
    tar.args([
        "--create",
        "--numeric-owner",
        "--xattrs",
        "--xattrs-include=*",
        "--sparse",
        "-f",
    ])
    .arg(&tarf)
    .arg("-C")
    .arg(dir)
    .arg("docker");
    ok(run_command(tar), "tar the storage");
    tarf
}

/// The installed storage read back as a tar made by GNU tar inside `wrap` (fakeroot shows the
/// owners and devices it recorded only to processes inside it).
fn installed_view(rootfs: &Path, mut wrap: Command) -> View {
    wrap.args([
        "tar",
        "--create",
        "--numeric-owner",
        "--xattrs",
        "--xattrs-include=*",
        "-f",
        "-",
        "-C",
    ])
    .arg(rootfs.join("var/lib/docker/overlay2/0123abcd"))
    .arg("diff")
    .stdin(Stdio::null());
    let out = wrap.output().expect("tar the installed storage");
    assert!(
        out.status.success(),
        "tar the installed storage: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    tar_view(&out.stdout[..], b"diff")
}

#[test]
fn install_storage_keeps_everything_as_root_and_under_fakeroot() {
    let t = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tmp");
    let rootfs = t.path().join("fixture");
    build_fixture(&rootfs);
    let source = dir_view(&rootfs);
    let tarf = storage_tar_of(&rootfs, &t.path().join("st"));
    let from_tar = tar_view(
        fs::File::open(&tarf).expect("tar"),
        b"docker/overlay2/0123abcd/diff",
    );
    assert_same(&from_tar, &source, ALL, "the storage tar");

    // As root.
    let target = t.path().join("target-root");
    fs::create_dir(&target).expect("target");
    ok(
        run_command(vcontainer(&[
            "install-storage",
            "--engine",
            "docker",
            "--rootfs",
            s(&target),
            s(&tarf),
        ])),
        "install-storage as root",
    );
    let as_root = dir_view(&target.join("var/lib/docker/overlay2/0123abcd/diff"));
    assert_same(&as_root, &source, ALL, "installed as root");
    assert_same(
        &installed_view(&target, Command::new("env")),
        &source,
        ALL,
        "installed as root, read back by tar",
    );

    // As an unprivileged user under fakeroot, the way a build's do_rootfs runs under pseudo: the
    // files on disk are the user's, fakeroot's record holds the owners, modes and devices.
    let user_dir = t.path().join("fake");
    fs::create_dir(&user_dir).expect("dir");
    let target = user_dir.join("target");
    fs::create_dir(&target).expect("target");
    let tar_copy = user_dir.join("storage.tar");
    fs::copy(&tarf, &tar_copy).expect("copy tar");
    for p in [t.path(), &user_dir, &target, &tar_copy] {
        nix::unistd::chown(
            p,
            Some(nix::unistd::Uid::from_raw(65534)),
            Some(nix::unistd::Gid::from_raw(65534)),
        )
        .expect("chown to nobody");
    }
    // One fakeroot session for the install and the read-back, as a build's later steps (the
    // image packing) run in the session that installed: fakeroot keeps xattrs in memory only
    // (its saved state has owners, modes and devices), where pseudo keeps them in its database.
    let read_back = user_dir.join("installed.tar");
    let diff_parent = target.join("var/lib/docker/overlay2/0123abcd");
    let mut session = Command::new("setpriv");
    session
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "fakeroot", "--"])
        .args([
            "sh",
            "-c",
            r#""$0" install-storage --engine docker --rootfs "$1" "$2" && tar --create --numeric-owner --xattrs --xattrs-include='*' -f "$3" -C "$4" diff"#,
        ])
        .arg(tool_command("vcontainer").get_program())
        .args([s(&target), s(&tar_copy), s(&read_back), s(&diff_parent)])
        .env_remove("LD_PRELOAD")
        .env("HOME", &user_dir)
        .stdin(Stdio::null());
    ok(
        run_command(session),
        "install-storage under fakeroot, then tar in the same session",
    );
    assert_same(
        &tar_view(fs::File::open(&read_back).expect("read-back tar"), b"diff"),
        &source,
        ALL,
        "installed under fakeroot, read back inside its session",
    );
}
