//! `vcontainer oci build` and `vcontainer oci index` end to end, through the real CLI, on a real
//! Debian root filesystem (trixie arm64 libc6, libtinfo6, base-files and bash, with a dpkg
//! database) plus hand-made oddities: a hard-linked pair, a setuid file, an empty directory,
//! symlinks. Every image is checked blob by blob (digests, sizes, diff_ids) and by its merged
//! view — the layers applied in order with OCI whiteout semantics, by the small applier below —
//! against the tree it was built from; skopeo and umoci check that other tools read it too. Bad
//! input must fail with a message naming the problem and leave nothing behind. No VM boots.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use serde_json::Value;
use sha2::{Digest, Sha256};
use vcontainer_initramfs::Arch;
use vcontainer_tests::vm::{bin_dir, cache_dir, run_command, s, Run};

/// `SOURCE_DATE_EPOCH` of the reproducible builds (2023-11-14T22:13:20Z); the fixture's files
/// are newer (trixie packages, files written now), so clamping is exercised.
const SDE: &str = "1700000000";
const PACKAGES: &[&str] = &["libc6", "libtinfo6", "base-files", "bash"];
const LIBC: &str = "usr/lib/aarch64-linux-gnu/libc.so.6";
const MULTI: &[&str] = &[
    "--layer",
    "base:packages:libc6+libtinfo6+base-files",
    "--layer",
    "shell:packages:bash",
];

// ---------------------------------------------------------------------------------------------
// The fixture rootfs, made once per test process.

/// The fixture rootfs (read-only for the tests: they copy it to change it). It lives under
/// `target/<profile>/oci-build-fixture/<pid>`; a run that died leaves its copy, removed by the
/// next run (the process is gone).
fn fixture() -> &'static Path {
    static ROOTFS: OnceLock<PathBuf> = OnceLock::new();
    ROOTFS.get_or_init(|| {
        let base = bin_dir().join("oci-build-fixture");
        fs::create_dir_all(&base).expect("fixture dir");
        for e in fs::read_dir(&base).expect("ls fixture dir").flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !Path::new("/proc").join(&name).exists() {
                let _ = fs::remove_dir_all(e.path());
            }
        }
        let dir = base.join(std::process::id().to_string());
        let _ = fs::remove_dir_all(&dir);
        let r = dir.join("rootfs");
        vcontainer::bench::fixture::debian_rootfs(
            Arch::Aarch64,
            &cache_dir(),
            "trixie",
            PACKAGES,
            &r,
        )
        .expect("making the Debian fixture rootfs (needs dpkg-deb and the trixie .debs)");
        write(&r, "etc/app.conf", b"key=value\n", 0o644);
        write(&r, "opt/app/a", b"alpha\n", 0o644);
        write(&r, "opt/app/b", b"bravo\n", 0o600);
        write(&r, "opt/app/hard1", b"one inode, two names\n", 0o644);
        fs::hard_link(r.join("opt/app/hard1"), r.join("opt/app/hard2")).expect("hard link");
        symlink("a", r.join("opt/app/current")).expect("symlink");
        symlink("/usr/bin/bash", r.join("opt/bash-abs")).expect("symlink");
        write(&r, "usr/bin/suid-tool", b"#!/bin/sh\necho hi\n", 0o4755);
        fs::create_dir_all(r.join("srv/empty")).expect("mkdir");
        chmod(&r.join("srv/empty"), 0o750);
        // For the base-image test: a directory that becomes a symlink, one that goes away.
        write(&r, "opt/old/x", b"x\n", 0o644);
        write(&r, "opt/old/y", b"y\n", 0o644);
        write(&r, "opt/gone/sub/z", b"z\n", 0o644);
        for d in [
            "opt",
            "opt/app",
            "opt/old",
            "opt/gone",
            "opt/gone/sub",
            "srv",
        ] {
            chmod(&r.join(d), 0o755);
        }
        assert!(r.join(LIBC).is_file(), "the fixture has no {LIBC}");
        assert!(r.join("usr/bin/bash").is_file(), "the fixture has no bash");
        r
    })
}

fn write(root: &Path, rel: &str, bytes: &[u8], mode: u32) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
    fs::write(&p, bytes).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
    chmod(&p, mode);
}

fn chmod(p: &Path, mode: u32) {
    fs::set_permissions(p, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", p.display()));
}

/// `cp -a src dst`: a copy with modes, times and hard links kept, to change without touching the
/// fixture.
fn copy_tree(src: &Path, dst: &Path) {
    let st = Command::new("cp")
        .arg("-a")
        .arg(src)
        .arg(dst)
        .status()
        .expect("run cp");
    assert!(st.success(), "cp -a {} {}", src.display(), dst.display());
}

// ---------------------------------------------------------------------------------------------
// Running the CLI and other tools.

fn tool(name: &str) -> Command {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "{name} is not installed (not on PATH): these tests cross-check images with it — \
         install it (apt-get install {name}; .ci/install-deps does)"
    );
    let mut c = Command::new(name);
    c.stdin(Stdio::null());
    c
}

fn vcontainer_bin() -> PathBuf {
    let bin = bin_dir().join("vcontainer");
    assert!(
        bin.is_file(),
        "{} missing: cargo build --workspace --bins",
        bin.display()
    );
    bin
}

/// `vcontainer oci …` with no inherited `SOURCE_DATE_EPOCH`.
fn oci_cmd() -> Command {
    let mut c = Command::new(vcontainer_bin());
    c.arg("oci")
        .env_remove("SOURCE_DATE_EPOCH")
        .stdin(Stdio::null());
    c
}

/// `vcontainer oci build --rootfs R -a aarch64 -o OUT -t 1.0 EXTRA…`, with `--no-cache` unless
/// `extra` names a cache (the user's default cache is never touched).
fn build_cmd(rootfs: &Path, out: &Path, extra: &[&str]) -> Command {
    build_cmd_for("aarch64", rootfs, out, extra)
}

fn build_cmd_for(arch: &str, rootfs: &Path, out: &Path, extra: &[&str]) -> Command {
    let mut c = oci_cmd();
    c.arg("build")
        .arg("--rootfs")
        .arg(rootfs)
        .args(["-a", arch, "-o"])
        .arg(out)
        .args(["-t", "1.0"])
        .args(extra);
    if !extra.contains(&"--cache-dir") {
        c.arg("--no-cache");
    }
    c
}

fn build(rootfs: &Path, out: &Path, extra: &[&str]) -> Run {
    let r = run_command(build_cmd(rootfs, out, extra));
    r.assert_ok("oci build");
    r
}

// ---------------------------------------------------------------------------------------------
// Reading images.

fn sha256_file(p: &Path) -> String {
    let mut f = fs::File::open(p).unwrap_or_else(|e| panic!("open {}: {e}", p.display()));
    let mut h = Sha256::new();
    io::copy(&mut f, &mut h).expect("hash");
    format!("sha256:{}", hex::encode(h.finalize()))
}

fn read_json(p: &Path) -> Value {
    let bytes = fs::read(p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn blob(layout: &Path, digest: &str) -> PathBuf {
    layout
        .join("blobs/sha256")
        .join(digest.strip_prefix("sha256:").expect("a sha256 digest"))
}

/// A descriptor's blob, checked against its digest and size.
fn described(layout: &Path, desc: &Value) -> PathBuf {
    let digest = desc["digest"].as_str().expect("digest");
    let p = blob(layout, digest);
    assert!(p.is_file(), "{}: blob {digest} missing", layout.display());
    assert_eq!(sha256_file(&p), digest, "blob {} content", p.display());
    assert_eq!(
        Some(fs::metadata(&p).expect("stat").len()),
        desc["size"].as_u64(),
        "descriptor size of {digest}"
    );
    p
}

/// One single-platform image of a layout.
struct Image {
    manifest_digest: String,
    manifest: Value,
    config: Value,
    layers: Vec<PathBuf>,
}

impl Image {
    /// Opens the one image of `layout`, verifying every blob (each file's sha256 is its name),
    /// every descriptor's size, and the config's diff_ids against the decompressed layers.
    fn open(layout: &Path) -> Image {
        let layout_file = fs::read(layout.join("oci-layout")).expect("oci-layout");
        let lv: Value = serde_json::from_slice(&layout_file).expect("oci-layout json");
        assert_eq!(lv["imageLayoutVersion"], "1.0.0");
        for e in fs::read_dir(layout.join("blobs/sha256")).expect("blobs") {
            let p = e.expect("entry").path();
            let name = p.file_name().expect("name").to_string_lossy().into_owned();
            assert_eq!(sha256_file(&p), format!("sha256:{name}"), "blob {name}");
        }
        let index = read_json(&layout.join("index.json"));
        let entries = index["manifests"].as_array().expect("manifests");
        assert_eq!(entries.len(), 1, "index.json: {index}");
        let desc = &entries[0];
        assert_eq!(
            desc["mediaType"],
            "application/vnd.oci.image.manifest.v1+json"
        );
        assert_eq!(
            desc["annotations"]["org.opencontainers.image.ref.name"],
            "1.0"
        );
        let manifest = read_json(&described(layout, desc));
        let config = read_json(&described(layout, &manifest["config"]));
        let layers: Vec<PathBuf> = manifest["layers"]
            .as_array()
            .expect("layers")
            .iter()
            .map(|d| described(layout, d))
            .collect();
        let diff_ids: Vec<String> = config["rootfs"]["diff_ids"]
            .as_array()
            .expect("diff_ids")
            .iter()
            .map(|d| d.as_str().expect("diff_id").to_string())
            .collect();
        let actual: Vec<String> = layers
            .iter()
            .map(|l| {
                let mut h = Sha256::new();
                io::copy(&mut open_layer(l), &mut h).expect("decompress");
                format!("sha256:{}", hex::encode(h.finalize()))
            })
            .collect();
        assert_eq!(
            diff_ids, actual,
            "config diff_ids vs the decompressed layers"
        );
        Image {
            manifest_digest: desc["digest"].as_str().expect("digest").to_string(),
            manifest,
            config,
            layers,
        }
    }

    fn layer_digests(&self) -> Vec<String> {
        self.manifest["layers"]
            .as_array()
            .expect("layers")
            .iter()
            .map(|d| d["digest"].as_str().expect("digest").to_string())
            .collect()
    }

    fn entries(&self, i: usize) -> Vec<TarEntry> {
        read_layer(&self.layers[i])
    }

    /// The layers applied in order.
    fn merged(&self) -> View {
        let mut v = View::new();
        for l in &self.layers {
            apply(&mut v, &read_layer(l));
        }
        v
    }
}

/// A layer blob as a tar stream (gzip by its magic bytes).
fn open_layer(p: &Path) -> Box<dyn Read> {
    let mut f = BufReader::new(fs::File::open(p).expect("open layer"));
    let gz = f.fill_buf().expect("read layer").starts_with(&[0x1f, 0x8b]);
    if gz {
        Box::new(flate2::bufread::MultiGzDecoder::new(f))
    } else {
        Box::new(f)
    }
}

#[derive(Debug, Clone)]
struct TarEntry {
    /// Normalised: no `./`, no trailing `/`.
    path: PathBuf,
    kind: tar::EntryType,
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: u64,
    link: Option<PathBuf>,
    sha256: Option<String>,
}

fn normalise(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            other => panic!("unsafe component {other:?} in layer path {}", p.display()),
        }
    }
    out
}

fn read_tar(r: impl Read) -> Vec<TarEntry> {
    let mut a = tar::Archive::new(r);
    let mut out = Vec::new();
    for e in a.entries().expect("tar entries") {
        let mut e = e.expect("tar entry");
        let h = e.header().clone();
        let kind = h.entry_type();
        let sha256 = (kind == tar::EntryType::Regular).then(|| {
            let mut hs = Sha256::new();
            io::copy(&mut e, &mut hs).expect("read entry");
            format!("sha256:{}", hex::encode(hs.finalize()))
        });
        out.push(TarEntry {
            path: normalise(&e.path().expect("path")),
            kind,
            mode: h.mode().expect("mode") & 0o7777,
            uid: h.uid().expect("uid"),
            gid: h.gid().expect("gid"),
            mtime: h.mtime().expect("mtime"),
            link: e.link_name().expect("link").map(|l| l.into_owned()),
            sha256,
        });
    }
    out
}

fn read_layer(p: &Path) -> Vec<TarEntry> {
    read_tar(open_layer(p))
}

fn paths(entries: &[TarEntry]) -> BTreeSet<String> {
    entries
        .iter()
        .map(|e| e.path.display().to_string())
        .collect()
}

/// What a path is in a merged view or a rootfs.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Dir,
    File(String),
    Symlink(PathBuf),
    Other(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Meta {
    kind: Kind,
    /// Permission bits with setuid/setgid/sticky; 0o777 for symlinks.
    mode: u32,
    uid: u64,
    gid: u64,
}

type View = BTreeMap<PathBuf, Meta>;

const WH: &str = ".wh.";
const OPQ: &str = ".wh..wh..opq";

fn remove_below(v: &mut View, dir: &Path) {
    let doomed: Vec<PathBuf> = v
        .keys()
        .filter(|p| p.starts_with(dir) && p.as_path() != dir)
        .cloned()
        .collect();
    for p in doomed {
        v.remove(&p);
    }
}

/// Applies one layer to `v` (OCI image-spec layer semantics): whiteouts and opaque markers hide
/// what lower layers have (so they go first), then the entries; a non-directory replaces a
/// directory with everything under it. Every entry's parent must be a directory by then.
fn apply(v: &mut View, entries: &[TarEntry]) {
    for e in entries {
        let name = e.path.file_name().expect("name").to_string_lossy();
        let parent = e.path.parent().unwrap_or(Path::new(""));
        if name == OPQ {
            remove_below(v, parent);
        } else if let Some(hidden) = name.strip_prefix(WH) {
            assert_eq!(e.kind, tar::EntryType::Regular, "whiteout {:?}", e.path);
            let gone = parent.join(hidden);
            assert!(
                v.remove(&gone).is_some(),
                "whiteout {} hides nothing",
                e.path.display()
            );
            remove_below(v, &gone);
        }
    }
    for e in entries {
        let name = e.path.file_name().expect("name").to_string_lossy();
        if name.starts_with(WH) {
            continue;
        }
        let parent = e.path.parent().unwrap_or(Path::new(""));
        if !parent.as_os_str().is_empty() {
            assert_eq!(
                v.get(parent).map(|m| &m.kind),
                Some(&Kind::Dir),
                "{}: its parent is not a directory in the merged view",
                e.path.display()
            );
        }
        let kind = match e.kind {
            tar::EntryType::Directory => Kind::Dir,
            tar::EntryType::Regular => Kind::File(e.sha256.clone().expect("hashed")),
            tar::EntryType::Symlink => Kind::Symlink(e.link.clone().expect("symlink target")),
            tar::EntryType::Link => {
                let target = normalise(e.link.as_deref().expect("hard link target"));
                v.get(&target)
                    .unwrap_or_else(|| {
                        panic!(
                            "hard link {} to {} before it",
                            e.path.display(),
                            target.display()
                        )
                    })
                    .kind
                    .clone()
            }
            other => Kind::Other(format!("{other:?}")),
        };
        if kind != Kind::Dir {
            remove_below(v, &e.path);
        }
        let mode = if matches!(kind, Kind::Symlink(_)) {
            0o777
        } else {
            e.mode
        };
        v.insert(
            e.path.clone(),
            Meta {
                kind,
                mode,
                uid: e.uid,
                gid: e.gid,
            },
        );
    }
}

/// The view a rootfs should give in an image built with the default owner policy (its owners
/// kept).
fn rootfs_view(root: &Path) -> View {
    fn walk(root: &Path, rel: &Path, v: &mut View) {
        let mut names: Vec<_> = fs::read_dir(root.join(rel))
            .expect("read_dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        names.sort();
        for n in names {
            let rel = rel.join(&n);
            let abs = root.join(&rel);
            let md = fs::symlink_metadata(&abs).expect("lstat");
            let ft = md.file_type();
            let (kind, mode) = if ft.is_dir() {
                (Kind::Dir, md.mode() & 0o7777)
            } else if ft.is_file() {
                (Kind::File(sha256_file(&abs)), md.mode() & 0o7777)
            } else if ft.is_symlink() {
                (Kind::Symlink(fs::read_link(&abs).expect("readlink")), 0o777)
            } else {
                (Kind::Other(format!("{ft:?}")), md.mode() & 0o7777)
            };
            let is_dir = kind == Kind::Dir;
            v.insert(
                rel.clone(),
                Meta {
                    kind,
                    mode,
                    uid: md.uid().into(),
                    gid: md.gid().into(),
                },
            );
            if is_dir {
                walk(root, &rel, v);
            }
        }
    }
    let mut v = View::new();
    walk(root, Path::new(""), &mut v);
    v
}

fn assert_same_view(actual: &View, expected: &View, what: &str) {
    let mut diffs = Vec::new();
    for (p, m) in expected {
        match actual.get(p) {
            None => diffs.push(format!("missing: {} {m:?}", p.display())),
            Some(a) if a != m => diffs.push(format!(
                "differs: {}\n    image:  {a:?}\n    rootfs: {m:?}",
                p.display()
            )),
            Some(_) => {}
        }
    }
    for (p, a) in actual {
        if !expected.contains_key(p) {
            diffs.push(format!("extra: {} {a:?}", p.display()));
        }
    }
    assert!(
        diffs.is_empty(),
        "{what}: the merged image differs from the rootfs in {} path(s):\n{}",
        diffs.len(),
        diffs
            .iter()
            .take(30)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(expected.len() > 100, "{what}: a suspiciously small rootfs");
}

/// Every file of a directory tree, by relative path.
fn tree_files(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(root: &Path, rel: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        for e in fs::read_dir(root.join(rel)).expect("read_dir") {
            let e = e.expect("entry");
            let rel = rel.join(e.file_name());
            if e.file_type().expect("type").is_dir() {
                walk(root, &rel, out);
            } else {
                out.insert(rel.clone(), fs::read(root.join(&rel)).expect("read"));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, Path::new(""), &mut out);
    out
}

fn dir_names(dir: &Path) -> BTreeSet<String> {
    fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("ls {}: {e}", dir.display()))
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// 1. One layer.

#[test]
fn single_layer_image_is_the_rootfs() {
    let rootfs = fixture();
    let t = tempfile::tempdir().expect("tmp");
    let out = t.path().join("img");
    build(rootfs, &out, &["--source-date-epoch", SDE]);
    let img = Image::open(&out);
    assert_eq!(img.layers.len(), 1);
    assert_eq!(img.config["architecture"], "arm64");
    assert_eq!(img.config["os"], "linux");
    let entries = img.entries(0);
    assert!(entries.iter().all(|e| e.uid == 0 && e.gid == 0));
    // The hard-linked pair stays one inode: the second name is a link to the first.
    let hard2 = entries
        .iter()
        .find(|e| e.path == Path::new("opt/app/hard2"))
        .expect("hard2 in the layer");
    assert_eq!(hard2.kind, tar::EntryType::Link);
    assert_eq!(hard2.link.as_deref(), Some(Path::new("opt/app/hard1")));
    let suid = entries
        .iter()
        .find(|e| e.path == Path::new("usr/bin/suid-tool"))
        .expect("suid-tool");
    assert_eq!(suid.mode, 0o4755);
    assert_same_view(&img.merged(), &rootfs_view(rootfs), "single layer");
}

// ---------------------------------------------------------------------------------------------
// 2. Several layers, delta-only.

/// No path in two layers (parents included: each path once overall).
fn assert_each_path_once(img: &Image) {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for i in 0..img.layers.len() {
        for p in paths(&img.entries(i)) {
            if let Some(first) = seen.insert(p.clone(), i) {
                panic!("{p} is in layer {first} and in layer {i}");
            }
        }
    }
}

#[test]
fn package_layers_are_delta_only_and_merge_to_the_rootfs() {
    let rootfs = fixture();
    let t = tempfile::tempdir().expect("tmp");
    let out = t.path().join("img");
    build(rootfs, &out, MULTI);
    let img = Image::open(&out);
    assert_eq!(img.layers.len(), 3, "base, shell and rest");
    let l: Vec<BTreeSet<String>> = (0..3).map(|i| paths(&img.entries(i))).collect();
    assert!(l[0].contains(LIBC), "libc6's libc.so.6 in the base layer");
    assert!(l[0].contains("usr/lib/os-release"), "base-files in base");
    assert!(!l[0].contains("usr/bin/bash"));
    assert!(l[1].contains("usr/bin/bash"), "bash in the shell layer");
    assert!(l[2].contains("etc/app.conf"), "unowned files in rest");
    assert!(l[2].contains("var/lib/dpkg/status"));
    assert_each_path_once(&img);
    let history = img.config["history"].as_array().expect("history");
    assert_eq!(history.len(), 3);
    assert_same_view(&img.merged(), &rootfs_view(rootfs), "package layers");
}

#[test]
fn directory_and_file_layers_are_delta_only_and_merge_to_the_rootfs() {
    let rootfs = fixture();
    let t = tempfile::tempdir().expect("tmp");
    let out = t.path().join("img");
    build(
        rootfs,
        &out,
        &[
            "--layers",
            "app:directories:/opt/app conf:files:/etc/app.conf+/bin/bash",
        ],
    );
    let img = Image::open(&out);
    assert_eq!(img.layers.len(), 3, "app, conf and rest");
    let set = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    assert_eq!(
        paths(&img.entries(0)),
        set(&[
            "opt",
            "opt/app",
            "opt/app/a",
            "opt/app/b",
            "opt/app/current",
            "opt/app/hard1",
            "opt/app/hard2"
        ])
    );
    // /bin/bash through the bin -> usr/bin symlink: the symlink and the file it names.
    assert_eq!(
        paths(&img.entries(1)),
        set(&[
            "bin",
            "etc",
            "etc/app.conf",
            "usr",
            "usr/bin",
            "usr/bin/bash"
        ])
    );
    assert_each_path_once(&img);
    assert_same_view(&img.merged(), &rootfs_view(rootfs), "directory/file layers");
}

// ---------------------------------------------------------------------------------------------
// 3. Reproducible builds.

#[test]
fn source_date_epoch_builds_are_byte_identical() {
    let rootfs = fixture();
    let t = tempfile::tempdir().expect("tmp");
    let (a, b) = (t.path().join("a"), t.path().join("b"));
    let (at, bt) = (t.path().join("a.tar"), t.path().join("b.tar"));
    // One with the flag, one with the variable.
    build(
        rootfs,
        &a,
        &[MULTI, &["--archive", s(&at), "--source-date-epoch", SDE]].concat(),
    );
    let mut c = build_cmd(rootfs, &b, &[MULTI, &["--archive", s(&bt)]].concat());
    c.env("SOURCE_DATE_EPOCH", SDE);
    run_command(c).assert_ok("oci build with SOURCE_DATE_EPOCH in the environment");

    let (fa, fb) = (tree_files(&a), tree_files(&b));
    assert_eq!(
        fa.keys().collect::<Vec<_>>(),
        fb.keys().collect::<Vec<_>>(),
        "same files in both layouts"
    );
    for (p, bytes) in &fa {
        assert!(
            fb[p] == *bytes,
            "{} differs between the builds",
            p.display()
        );
    }
    assert!(
        fs::read(&at).expect("a.tar") == fs::read(&bt).expect("b.tar"),
        "the archives differ"
    );

    let sde: u64 = SDE.parse().expect("number");
    let img = Image::open(&a);
    assert_eq!(img.config["created"], "2023-11-14T22:13:20Z");
    let mut clamped = 0;
    for i in 0..img.layers.len() {
        for e in img.entries(i) {
            assert!(e.mtime <= sde, "{} has mtime {}", e.path.display(), e.mtime);
            clamped += usize::from(e.mtime == sde);
        }
    }
    assert!(
        clamped > 0,
        "nothing was clamped: is the fixture older than SDE?"
    );
    let archive = read_tar(fs::File::open(&at).expect("a.tar"));
    assert!(archive.iter().all(|e| e.mtime <= sde));
    // The archive holds the layout.
    let names = paths(&archive);
    for f in fa.keys() {
        assert!(
            names.contains(&f.display().to_string()),
            "{f:?} not archived"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 4. The layer cache.

/// The layer names on `stderr` lines starting `OCI Cache <what>: Layer '`.
fn cache_lines(r: &Run, what: &str) -> BTreeSet<String> {
    let prefix = format!("OCI Cache {what}: Layer '");
    r.stderr
        .lines()
        .filter_map(|l| {
            let at = l.find(&prefix)?;
            let rest = &l[at + prefix.len()..];
            Some(rest[..rest.find('\'')?].to_string())
        })
        .collect()
}

fn set_of(v: &[&str]) -> BTreeSet<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn cache_hits_misses_and_corrupt_entries() {
    let rootfs = fixture();
    let t = tempfile::tempdir().expect("tmp");
    let cache = t.path().join("cache");
    let args = [
        MULTI,
        &["--source-date-epoch", SDE, "--cache-dir", s(&cache)],
    ]
    .concat();
    let all = set_of(&["base", "shell", "rest"]);

    let out1 = t.path().join("o1");
    let r = build(rootfs, &out1, &args);
    assert_eq!(cache_lines(&r, "MISS"), all, "{}", r.stderr);
    assert!(cache_lines(&r, "HIT").is_empty(), "{}", r.stderr);
    let first = Image::open(&out1);

    let out2 = t.path().join("o2");
    let r = build(rootfs, &out2, &args);
    assert_eq!(cache_lines(&r, "HIT"), all, "{}", r.stderr);
    assert!(cache_lines(&r, "MISS").is_empty(), "{}", r.stderr);
    assert_eq!(Image::open(&out2).manifest_digest, first.manifest_digest);

    // Same size, same mtime, other bytes: only the layer holding the file is rebuilt.
    let copy = t.path().join("rootfs");
    copy_tree(rootfs, &copy);
    let conf = copy.join("etc/app.conf");
    let mtime = fs::metadata(&conf)
        .expect("stat")
        .modified()
        .expect("mtime");
    fs::write(&conf, b"key=VALUE\n").expect("rewrite");
    fs::File::options()
        .write(true)
        .open(&conf)
        .expect("open")
        .set_modified(mtime)
        .expect("set mtime");
    let out3 = t.path().join("o3");
    let r = build(&copy, &out3, &args);
    assert_eq!(cache_lines(&r, "MISS"), set_of(&["rest"]), "{}", r.stderr);
    assert_eq!(
        cache_lines(&r, "HIT"),
        set_of(&["base", "shell"]),
        "{}",
        r.stderr
    );
    let changed = Image::open(&out3);
    assert_eq!(changed.layer_digests()[..2], first.layer_digests()[..2]);
    assert_ne!(changed.layer_digests()[2], first.layer_digests()[2]);
    assert_same_view(&changed.merged(), &rootfs_view(&copy), "changed copy");

    // Corrupt the cached shell layer. The blob may be hard-linked into o1/o2: replace the file,
    // never write through it.
    let mut shell = Vec::new();
    for e in fs::read_dir(&cache).expect("ls cache").flatten() {
        let meta = e.path().join("entry.json");
        if meta.is_file() && read_json(&meta)["layer_name"] == "shell" {
            shell.push(e.path().join("layer.blob"));
        }
    }
    let [blob] = shell.as_slice() else {
        panic!("expected one cache entry for 'shell': {shell:?}");
    };
    let size = fs::metadata(blob).expect("stat").len();
    fs::remove_file(blob).expect("rm blob");
    fs::write(blob, vec![0x5a; size as usize]).expect("garbage");
    let out4 = t.path().join("o4");
    let r = build(rootfs, &out4, &args);
    assert_eq!(
        cache_lines(&r, "CORRUPT"),
        set_of(&["shell"]),
        "{}",
        r.stderr
    );
    assert_eq!(
        cache_lines(&r, "HIT"),
        set_of(&["base", "rest"]),
        "{}",
        r.stderr
    );
    let repaired = Image::open(&out4);
    assert_eq!(repaired.manifest_digest, first.manifest_digest);
    assert_same_view(&repaired.merged(), &rootfs_view(rootfs), "after CORRUPT");
    // The earlier outputs were not damaged through a shared inode.
    Image::open(&out1);
    // And the entry was repaired.
    let out5 = t.path().join("o5");
    let r = build(rootfs, &out5, &args);
    assert_eq!(cache_lines(&r, "HIT"), all, "{}", r.stderr);
}

// ---------------------------------------------------------------------------------------------
// 5. On a base image.

#[test]
fn base_image_layer_holds_changes_and_outermost_whiteouts() {
    let rootfs = fixture();
    let t = tempfile::tempdir().expect("tmp");
    let base = t.path().join("base");
    build(rootfs, &base, &["--source-date-epoch", SDE]);
    let base_img = Image::open(&base);
    assert_eq!(base_img.layers.len(), 1);

    let m = t.path().join("rootfs");
    copy_tree(rootfs, &m);
    fs::remove_file(m.join("opt/app/a")).expect("rm file");
    fs::remove_dir_all(m.join("opt/gone")).expect("rm dir");
    write(&m, "opt/app/new", b"new\n", 0o644);
    fs::write(m.join("etc/app.conf"), b"key=changed value\n").expect("change");
    // Merged-usr style: a base directory becomes a symlink.
    fs::remove_dir_all(m.join("opt/old")).expect("rm old");
    symlink("/usr/lib", m.join("opt/old")).expect("symlink");

    let out = t.path().join("img");
    build(&m, &out, &["--base", s(&base), "--source-date-epoch", SDE]);
    let img = Image::open(&out);
    assert_eq!(img.layers.len(), 2, "the base layer + one");
    assert_eq!(img.layer_digests()[0], base_img.layer_digests()[0]);

    let new = img.entries(1);
    let names = paths(&new);
    let whiteouts: BTreeSet<String> = names.iter().filter(|p| p.contains(WH)).cloned().collect();
    assert_eq!(
        whiteouts,
        set_of(&["opt/.wh.gone", "opt/app/.wh.a"]),
        "outermost whiteouts only, none under the symlinked opt/old"
    );
    for p in ["opt/app/new", "etc/app.conf", "opt/old"] {
        assert!(
            names.contains(p),
            "{p} missing from the new layer: {names:?}"
        );
    }
    let old = new
        .iter()
        .find(|e| e.path == Path::new("opt/old"))
        .expect("opt/old");
    assert_eq!(old.kind, tar::EntryType::Symlink);
    assert_eq!(old.link.as_deref(), Some(Path::new("/usr/lib")));
    // Nothing the base already has as it is.
    let base_view = base_img.merged();
    for e in new
        .iter()
        .filter(|e| !e.path.to_string_lossy().contains(WH))
    {
        let mut v = base_view.clone();
        apply(&mut v, std::slice::from_ref(e));
        assert_ne!(
            base_view.get(&e.path),
            v.get(&e.path),
            "{} is unchanged from the base but in the new layer",
            e.path.display()
        );
    }
    assert!(!names.contains("usr/bin/bash"));
    assert!(new.len() < 20, "a small delta: {names:?}");
    assert_same_view(&img.merged(), &rootfs_view(&m), "base + new layer");
}

// ---------------------------------------------------------------------------------------------
// 6. Multi-arch index.

/// arm64 and amd64 single-layer images of the fixture, assembled with `oci index` at `t/idx`;
/// returns (index layout, arm64 manifest digest, amd64 manifest digest).
fn multi_arch(t: &Path) -> (PathBuf, String, String) {
    let rootfs = fixture();
    let (a, b) = (t.join("arm64"), t.join("amd64"));
    build(rootfs, &a, &["--source-date-epoch", SDE]);
    run_command(build_cmd_for(
        "x86_64",
        rootfs,
        &b,
        &["--source-date-epoch", SDE],
    ))
    .assert_ok("oci build amd64");
    let ia = Image::open(&a);
    let ib = Image::open(&b);
    assert_eq!(ib.config["architecture"], "amd64");
    let idx = t.join("idx");
    let mut c = oci_cmd();
    c.args(["index", "-o", s(&idx), "-t", "1.0", s(&a), s(&b)]);
    run_command(c).assert_ok("oci index");
    (idx, ia.manifest_digest, ib.manifest_digest)
}

#[test]
fn index_nests_both_platforms_the_importer_and_skopeo_select_each() {
    let t = tempfile::tempdir().expect("tmp");
    let (idx, arm, amd) = multi_arch(t.path());
    for e in fs::read_dir(idx.join("blobs/sha256")).expect("blobs") {
        let p = e.expect("entry").path();
        let name = p.file_name().expect("name").to_string_lossy().into_owned();
        assert_eq!(sha256_file(&p), format!("sha256:{name}"));
    }
    let index = read_json(&idx.join("index.json"));
    let top = index["manifests"].as_array().expect("manifests");
    assert_eq!(top.len(), 1, "{index}");
    assert_eq!(
        top[0]["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    assert_eq!(
        top[0]["annotations"]["org.opencontainers.image.ref.name"],
        "1.0"
    );
    let nested = read_json(&described(&idx, &top[0]));
    let entries = nested["manifests"].as_array().expect("nested manifests");
    assert_eq!(entries.len(), 2, "{nested}");
    let platforms: Vec<(String, String, String)> = entries
        .iter()
        .map(|e| {
            described(&idx, e);
            (
                e["platform"]["architecture"].as_str().expect("arch").into(),
                e["platform"]["os"].as_str().expect("os").into(),
                e["digest"].as_str().expect("digest").into(),
            )
        })
        .collect();
    assert_eq!(
        platforms,
        [
            ("arm64".into(), "linux".into(), arm.clone()),
            ("amd64".into(), "linux".into(), amd.clone())
        ]
    );
    let sel = vcontainer_oci::platform::select_platform(
        &idx,
        &vcontainer::ops::oci_import::target_platform(Arch::Aarch64),
    )
    .expect("select arm64");
    assert_eq!(sel.manifest.digest().to_string(), arm);
    assert!(sel.multi_arch);
    let sel = vcontainer_oci::platform::select_platform(
        &idx,
        &vcontainer::ops::oci_import::target_platform(Arch::X86_64),
    )
    .expect("select amd64");
    assert_eq!(sel.manifest.digest().to_string(), amd);

    // skopeo picks each platform through the nested index, by tag.
    for arch in ["arm64", "amd64"] {
        let mut c = tool("skopeo");
        c.args(["inspect", "--override-arch", arch])
            .arg(format!("oci:{}:1.0", s(&idx)));
        let r = tool_ok(c, "skopeo inspect of the index");
        let v: Value = serde_json::from_str(&r.stdout).expect("skopeo json");
        assert_eq!(v["Architecture"], arch, "{v}");
    }
}

// ---------------------------------------------------------------------------------------------
// 7. Upstream's deploy names.

#[test]
fn deploy_dir_gets_upstream_names() {
    let rootfs = fixture();
    let t = tempfile::tempdir().expect("tmp");
    let d = t.path().join("deploy");
    let mut c = oci_cmd();
    c.args([
        "build",
        "--rootfs",
        s(rootfs),
        "-a",
        "aarch64",
        "--no-cache",
    ])
    .args(["--deploy-dir", s(&d), "--image-name", "app", "-t", "1.0"]);
    run_command(c).assert_ok("oci build --deploy-dir");
    assert_eq!(dir_names(&d), set_of(&["app-1.0-oci", "app-1.0-oci.tar"]));
    Image::open(&d.join("app-1.0-oci"));
    let archived = paths(&read_tar(
        fs::File::open(d.join("app-1.0-oci.tar")).expect("tar"),
    ));
    assert!(archived.contains("index.json") && archived.contains("oci-layout"));

    // --no-tar: the layout only.
    let d2 = t.path().join("deploy2");
    let mut c = oci_cmd();
    c.args([
        "build",
        "--rootfs",
        s(rootfs),
        "-a",
        "aarch64",
        "--no-cache",
    ])
    .args(["--deploy-dir", s(&d2), "--image-name", "app", "-t", "1.0"])
    .arg("--no-tar");
    run_command(c).assert_ok("oci build --deploy-dir --no-tar");
    assert_eq!(dir_names(&d2), set_of(&["app-1.0-oci"]));
}

// ---------------------------------------------------------------------------------------------
// 8. Other tools read the images.

fn tool_ok(c: Command, what: &str) -> Run {
    let r = run_command(c);
    r.assert_ok(what);
    r
}

#[test]
fn skopeo_and_umoci_read_the_images() {
    let rootfs = fixture();
    let t = tempfile::tempdir().expect("tmp");
    let l = t.path().join("img");
    build(rootfs, &l, &[MULTI, &["--source-date-epoch", SDE]].concat());

    for reference in [format!("oci:{}", s(&l)), format!("oci:{}:1.0", s(&l))] {
        let mut c = tool("skopeo");
        c.args(["inspect", &reference]);
        let r = tool_ok(c, "skopeo inspect");
        let v: Value = serde_json::from_str(&r.stdout).expect("skopeo json");
        assert_eq!(v["Architecture"], "arm64", "{reference}: {v}");
        assert_eq!(v["Layers"].as_array().map(Vec::len), Some(3), "{v}");
    }

    let image = format!("{}:1.0", s(&l));
    let mut c = tool("umoci");
    c.args(["stat", "--image", &image]);
    tool_ok(c, "umoci stat");
    let bundle = t.path().join("bundle");
    let mut c = tool("umoci");
    c.args(["unpack", "--rootless", "--image", &image, s(&bundle)]);
    tool_ok(c, "umoci unpack");
    let bash = bundle.join("rootfs/usr/bin/bash");
    assert!(bash.is_file(), "{} missing", bash.display());
    assert_eq!(
        sha256_file(&bash),
        sha256_file(&rootfs.join("usr/bin/bash"))
    );
    assert_eq!(
        fs::read_link(bundle.join("rootfs/bin")).expect("bin symlink"),
        Path::new("usr/bin")
    );
    assert_eq!(
        fs::read(bundle.join("rootfs/etc/app.conf")).expect("app.conf"),
        b"key=value\n"
    );
}

// ---------------------------------------------------------------------------------------------
// 9. Bad input.

struct Bad {
    dir: tempfile::TempDir,
}

impl Bad {
    fn new() -> Bad {
        let dir = tempfile::tempdir().expect("tmp");
        fs::create_dir(dir.path().join("outs")).expect("outs");
        Bad { dir }
    }

    fn outs(&self) -> PathBuf {
        self.dir.path().join("outs")
    }

    /// Runs a build into `outs/img` (+ `outs/img.tar`) that must fail with `needles` in its
    /// message and leave `outs/` empty (no layout, archive or `.img.partial-*`).
    fn fails(&self, rootfs: &Path, extra: &[&str], needles: &[&str]) {
        let (out, tar) = (self.outs().join("img"), self.outs().join("img.tar"));
        let r = run_command(build_cmd(
            rootfs,
            &out,
            &[extra, &["--archive", s(&tar)]].concat(),
        ));
        assert_failed(&r, needles);
        let left = dir_names(&self.outs());
        assert!(left.is_empty(), "left behind: {left:?}");
    }
}

fn assert_failed(r: &Run, needles: &[&str]) {
    assert!(
        r.code.is_some() && r.code != Some(0),
        "must fail with an exit code: {r:?}"
    );
    for n in needles {
        assert!(r.stderr.contains(n), "stderr lacks '{n}':\n{}", r.stderr);
    }
    assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
}

/// A small rootfs: `etc/ok`, `usr/bin/tool`, and a symlink loop.
fn small_rootfs(at: &Path) {
    write(at, "etc/ok", b"ok\n", 0o644);
    write(at, "usr/bin/tool", b"#!/bin/sh\n", 0o755);
    symlink("loop-b", at.join("loop-a")).expect("symlink");
    symlink("loop-a", at.join("loop-b")).expect("symlink");
}

#[test]
fn bad_input_fails_clearly_and_leaves_nothing() {
    let rootfs = fixture();
    let b = Bad::new();
    let missing = b.dir.path().join("no-such-rootfs");
    b.fails(
        &missing,
        &[],
        &["no-such-rootfs", "No such file or directory"],
    );
    b.fails(
        rootfs,
        &["--layer", "base:tarball:x"],
        &["invalid layer spec 'base:tarball:x'", "tarball"],
    );
    b.fails(
        rootfs,
        &["--layer", "justname"],
        &["invalid layer spec 'justname'", "name:type:content"],
    );
    b.fails(
        rootfs,
        &["--layer", "x:packages:libc6+no-such-package"],
        &["package 'no-such-package' is not installed"],
    );
    b.fails(
        rootfs,
        &["--layer", "x:files:/etc/app.conf+/etc/nope"],
        &["file /etc/nope is not in the rootfs"],
    );
    let small = b.dir.path().join("small");
    small_rootfs(&small);
    b.fails(
        &small,
        &["--layer", "x:files:/loop-a"],
        &["loop-a", "symbolic links"],
    );
    let not_layout = b.dir.path().join("not-a-layout");
    fs::create_dir(&not_layout).expect("mkdir");
    b.fails(
        rootfs,
        &["--base", s(&not_layout)],
        &["--base", "not-a-layout", "not an OCI image layout"],
    );

    // A good image stays as it was when a rebuild into the same path fails.
    let (out, tar) = (b.outs().join("img"), b.outs().join("img.tar"));
    build(&small, &out, &["--archive", s(&tar)]);
    let before = tree_files(&out);
    let tar_before = fs::read(&tar).expect("tar");
    for (extra, needle) in [
        (vec!["--layer", "x:packages:bash"], "no package database"),
        (
            vec!["--layer", "x:files:/nope"],
            "file /nope is not in the rootfs",
        ),
    ] {
        let r = run_command(build_cmd(
            &small,
            &out,
            &[extra.as_slice(), &["--archive", s(&tar)]].concat(),
        ));
        assert_failed(&r, &[needle]);
        assert_eq!(dir_names(&b.outs()), set_of(&["img", "img.tar"]));
        assert!(tree_files(&out) == before, "the layout changed");
        assert!(
            fs::read(&tar).expect("tar") == tar_before,
            "the archive changed"
        );
    }
}

/// `chown -R id:id`, symlinks themselves.
fn chown_tree(p: &Path, id: u32) {
    std::os::unix::fs::lchown(p, Some(id), Some(id))
        .unwrap_or_else(|e| panic!("chown {}: {e}", p.display()));
    if fs::symlink_metadata(p).expect("lstat").is_dir() {
        for e in fs::read_dir(p).expect("read_dir") {
            chown_tree(&e.expect("entry").path(), id);
        }
    }
}

/// The builds that drop privileges run the workspace's binary as nobody: say so plainly if
/// nobody cannot reach it (a checkout under a private home directory).
fn assert_others_can_run(bin: &Path) {
    for p in bin.ancestors().filter(|p| !p.as_os_str().is_empty()) {
        let mode = fs::metadata(p).expect("stat").mode();
        assert!(
            mode & 0o001 != 0,
            "{} is not executable/searchable by other users (mode {mode:o}), so the build cannot \
             run as uid 65534: put the workspace where every user can reach it",
            p.display()
        );
    }
}

/// An unreadable file fails the build while the layer is being written — after the output's
/// temporary directory exists — so this also checks the cleanup of a late failure, and that an
/// existing image survives it. Root reads mode-000 files, so as root the builds run as nobody
/// (65534, via setpriv) on a tree nobody owns, except the unreadable file.
#[test]
fn unreadable_file_fails_late_and_cleanly() {
    let t = tempfile::tempdir().expect("tmp");
    let root = rustix::process::geteuid().is_root();
    chmod(t.path(), 0o755);
    let (good, bad, outs) = (
        t.path().join("good"),
        t.path().join("bad"),
        t.path().join("outs"),
    );
    small_rootfs(&good);
    small_rootfs(&bad);
    write(&bad, "etc/secret", b"secret\n", 0o644);
    fs::create_dir(&outs).expect("outs");
    if root {
        for p in [&good, &bad, &outs] {
            chown_tree(p, 65534);
        }
        assert_others_can_run(&vcontainer_bin());
    }
    // Root keeps the unreadable file.
    chmod(&bad.join("etc/secret"), 0o000);
    if root {
        std::os::unix::fs::lchown(bad.join("etc/secret"), Some(0), Some(0)).expect("chown");
    }
    let run = |rootfs: &Path, out: &str| -> Run {
        let c = build_cmd(
            rootfs,
            &outs.join(out),
            &["--archive", s(&outs.join(format!("{out}.tar")))],
        );
        let c = if root {
            let mut p = tool("setpriv");
            p.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
                .arg(c.get_program())
                .args(c.get_args())
                .env_remove("SOURCE_DATE_EPOCH")
                .env("HOME", t.path());
            p
        } else {
            c
        };
        run_command(c)
    };

    let r = run(&bad, "fresh");
    assert_failed(&r, &["etc/secret", "Permission denied"]);
    assert!(dir_names(&outs).is_empty(), "left: {:?}", dir_names(&outs));

    run(&good, "img").assert_ok("good build");
    let before = tree_files(&outs.join("img"));
    let tar_before = fs::read(outs.join("img.tar")).expect("tar");
    let r = run(&bad, "img");
    assert_failed(&r, &["etc/secret", "Permission denied"]);
    assert_eq!(dir_names(&outs), set_of(&["img", "img.tar"]));
    assert!(
        tree_files(&outs.join("img")) == before,
        "the layout changed"
    );
    assert!(
        fs::read(outs.join("img.tar")).expect("tar") == tar_before,
        "the archive changed"
    );
}
