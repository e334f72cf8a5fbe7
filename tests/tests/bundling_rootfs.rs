//! `vcontainer install-storage`: a synthetic engine storage tar (overlay whiteout char device,
//! hard link, trusted.* and user.* xattrs, odd owners and modes) installed into a rootfs keeps all
//! of it; hostile archives are refused with the rootfs untouched; a failing extraction leaves
//! nothing half-installed; existing storage is kept unless --replace; without root (euid 0) the
//! command refuses before touching anything. The positive tests need root (CI runs as root).

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use vcontainer_tests::vm::{bin_dir, run_command, Run};

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn vcontainer(args: &[&str]) -> Run {
    let bin = bin_dir().join("vcontainer");
    assert!(
        bin.is_file(),
        "{} missing: cargo build --workspace --bins",
        bin.display()
    );
    let mut cmd = Command::new(bin);
    cmd.args(args).stdin(Stdio::null());
    run_command(cmd)
}

/// One entry of a synthetic archive.
struct E<'a> {
    name: &'a str,
    kind: tar::EntryType,
    mode: u32,
    uid: u64,
    gid: u64,
    data: &'a [u8],
    link: Option<&'a str>,
    xattrs: &'a [(&'a str, &'a [u8])],
}

fn e(name: &str, kind: tar::EntryType) -> E<'_> {
    E {
        name,
        kind,
        mode: 0o755,
        uid: 0,
        gid: 0,
        data: b"",
        link: None,
        xattrs: &[],
    }
}

/// A PAX record `"<len> <key>=<value>\n"` (len counts the whole record).
fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    let body = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = body + 1;
    while len != body + len.to_string().len() {
        len = body + len.to_string().len();
    }
    let mut out = format!("{len} {key}=").into_bytes();
    out.extend_from_slice(value);
    out.push(b'\n');
    out
}

fn write_tar(path: &Path, entries: &[E<'_>]) {
    let mut b = tar::Builder::new(fs::File::create(path).expect("create tar"));
    for en in entries {
        if !en.xattrs.is_empty() {
            let mut data = Vec::new();
            for (k, v) in en.xattrs {
                data.extend(pax_record(&format!("SCHILY.xattr.{k}"), v));
            }
            let mut h = tar::Header::new_ustar();
            h.set_entry_type(tar::EntryType::XHeader);
            h.set_path("PaxHeaders/x").expect("pax path");
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append(&h, &data[..]).expect("pax header");
        }
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(en.kind);
        h.set_mode(en.mode);
        h.set_uid(en.uid);
        h.set_gid(en.gid);
        h.set_mtime(1_700_000_000);
        h.set_size(en.data.len() as u64);
        if en.kind == tar::EntryType::Char {
            h.set_device_major(0).expect("major");
            h.set_device_minor(0).expect("minor");
        }
        if let Some(l) = en.link {
            h.set_link_name(l).expect("link");
        }
        // Raw name bytes: set_path would refuse the hostile names this test needs.
        let bytes = en.name.as_bytes();
        assert!(bytes.len() < 100);
        h.as_old_mut().name = [0; 100];
        h.as_old_mut().name[..bytes.len()].copy_from_slice(bytes);
        h.set_cksum();
        b.append(&h, en.data).expect("append");
    }
    b.finish().expect("finish");
}

/// xattrs of every path under `dir`, as GNU tar itself archives them (no xattr tool needed).
fn xattrs_under(dir: &Path) -> HashMap<String, Vec<(String, Vec<u8>)>> {
    let out = tempfile::NamedTempFile::new().expect("tmp");
    let st = Command::new("tar")
        .args(["--xattrs", "--xattrs-include=*", "--numeric-owner", "-cf"])
        .arg(out.path())
        .arg("-C")
        .arg(dir)
        .arg(".")
        .status()
        .expect("tar");
    assert!(st.success());
    let mut a = tar::Archive::new(fs::File::open(out.path()).expect("open"));
    let mut map = HashMap::new();
    for entry in a.entries().expect("entries") {
        let mut entry = entry.expect("entry");
        let name = entry
            .path()
            .expect("path")
            .to_string_lossy()
            .trim_start_matches("./")
            .trim_end_matches('/')
            .to_string();
        let mut xs = Vec::new();
        if let Some(exts) = entry.pax_extensions().expect("pax") {
            for ext in exts {
                let ext = ext.expect("ext");
                if let Some(k) = ext.key().expect("key").strip_prefix("SCHILY.xattr.") {
                    xs.push((k.to_string(), ext.value_bytes().to_vec()));
                }
            }
        }
        map.insert(name, xs);
    }
    map
}

/// Whether `user.*` xattrs work on the filesystem holding `dir` (not on every tmpfs).
fn user_xattrs_supported(dir: &Path) -> bool {
    let probe = dir.join(".probe");
    fs::write(&probe, b"").expect("probe");
    let t = tempfile::tempdir().expect("tmp");
    let tarf = t.path().join("p.tar");
    write_tar(
        &tarf,
        &[E {
            xattrs: &[("user.probe", b"1")],
            mode: 0o644,
            ..e("p", tar::EntryType::Regular)
        }],
    );
    let st = Command::new("tar")
        .args(["--xattrs", "--xattrs-include=*", "-xf"])
        .arg(&tarf)
        .arg("-C")
        .arg(dir)
        .stderr(Stdio::null())
        .status()
        .expect("tar");
    let ok = st.success()
        && xattrs_under(dir)
            .get("p")
            .is_some_and(|x| x.iter().any(|(k, _)| k == "user.probe"));
    let _ = fs::remove_file(dir.join("p"));
    let _ = fs::remove_file(probe);
    ok
}

fn docker_storage_tar(path: &Path) {
    use tar::EntryType as T;
    write_tar(
        path,
        &[
            E {
                mode: 0o710,
                ..e("docker/", T::Directory)
            },
            e("docker/overlay2/", T::Directory),
            E {
                mode: 0o700,
                ..e("docker/overlay2/abc/", T::Directory)
            },
            E {
                mode: 0o755,
                xattrs: &[("trusted.overlay.opaque", b"y")],
                ..e("docker/overlay2/abc/diff/", T::Directory)
            },
            E {
                mode: 0o2750,
                uid: 100_000,
                gid: 100_001,
                ..e("docker/overlay2/abc/diff/odd/", T::Directory)
            },
            E {
                mode: 0o4711,
                uid: 1234,
                gid: 5678,
                data: b"setuid binary\n",
                ..e("docker/overlay2/abc/diff/odd/prog", T::Regular)
            },
            E {
                uid: 1234,
                gid: 5678,
                link: Some("docker/overlay2/abc/diff/odd/prog"),
                ..e("docker/overlay2/abc/diff/odd/prog-link", T::Link)
            },
            E {
                mode: 0o000,
                ..e("docker/overlay2/abc/diff/deleted", T::Char)
            },
            E {
                mode: 0o777,
                uid: 42,
                gid: 43,
                link: Some("../abc/diff"),
                ..e("docker/overlay2/l", T::Symlink)
            },
            E {
                mode: 0o600,
                data: b"{}",
                ..e("docker/image/repositories.json", T::Regular)
            },
        ],
    );
}

fn listing(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        if let Ok(rd) = fs::read_dir(&d) {
            for ent in rd.flatten() {
                let p = ent.path();
                if ent.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    stack.push(p.clone());
                }
                out.push(p.strip_prefix(dir).expect("prefix").to_path_buf());
            }
        }
    }
    out.sort();
    out
}

#[test]
fn docker_storage_keeps_owners_modes_xattrs_links_and_whiteouts() {
    if !is_root() {
        eprintln!("skipped: needs root (CI runs as root)");
        return;
    }
    let t = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tmp");
    let tarf = t.path().join("docker-storage.tar");
    docker_storage_tar(&tarf);
    let rootfs = t.path().join("rootfs");
    fs::create_dir(&rootfs).expect("rootfs");
    let r = vcontainer(&[
        "install-storage",
        "--engine",
        "docker",
        "--rootfs",
        rootfs.to_str().expect("utf8"),
        tarf.to_str().expect("utf8"),
    ]);
    r.assert_ok("install-storage");
    let d = rootfs.join("var/lib/docker");
    let m = |p: &str| fs::symlink_metadata(d.join(p)).expect(p);
    assert_eq!(m("").mode() & 0o7777, 0o710);
    assert_eq!(m("overlay2/abc").mode() & 0o7777, 0o700);
    let odd = m("overlay2/abc/diff/odd");
    assert_eq!(
        (odd.uid(), odd.gid(), odd.mode() & 0o7777),
        (100_000, 100_001, 0o2750)
    );
    let prog = m("overlay2/abc/diff/odd/prog");
    assert_eq!(
        (prog.uid(), prog.gid(), prog.mode() & 0o7777),
        (1234, 5678, 0o4711)
    );
    let link = m("overlay2/abc/diff/odd/prog-link");
    assert_eq!(prog.ino(), link.ino(), "hard link kept");
    assert_eq!(prog.nlink(), 2);
    let wh = m("overlay2/abc/diff/deleted");
    assert!(wh.file_type().is_char_device(), "whiteout is a char device");
    assert_eq!(wh.rdev(), 0, "whiteout is 0/0");
    let l = m("overlay2/l");
    assert!(l.file_type().is_symlink());
    assert_eq!((l.uid(), l.gid()), (42, 43), "symlink owner kept");
    assert_eq!(
        fs::read_link(d.join("overlay2/l")).expect("readlink"),
        Path::new("../abc/diff")
    );
    assert_eq!(m("image/repositories.json").mode() & 0o7777, 0o600);
    let x = xattrs_under(&d);
    assert!(
        x.get("overlay2/abc/diff")
            .is_some_and(|v| v.contains(&("trusted.overlay.opaque".into(), b"y".to_vec()))),
        "opaque xattr kept: {x:?}"
    );
    // Nothing else in the rootfs: no staging leftovers.
    assert_eq!(
        fs::read_dir(rootfs.join("var/lib")).expect("ls").count(),
        1,
        "{:?}",
        listing(&rootfs)
    );

    // A second install is refused without --replace, and the first stays intact.
    let r = vcontainer(&[
        "install-storage",
        "--engine",
        "docker",
        "--rootfs",
        rootfs.to_str().expect("utf8"),
        tarf.to_str().expect("utf8"),
    ]);
    assert_eq!(r.code, Some(1));
    assert!(r.stderr.contains("--replace"), "{}", r.stderr);
    fs::write(d.join("marker"), b"old").expect("marker");
    vcontainer(&[
        "install-storage",
        "--engine",
        "docker",
        "--replace",
        "--rootfs",
        rootfs.to_str().expect("utf8"),
        tarf.to_str().expect("utf8"),
    ])
    .assert_ok("install-storage --replace");
    assert!(!d.join("marker").exists(), "replaced");
    assert!(d.join("overlay2/abc/diff/odd/prog").is_file());
    assert_eq!(fs::read_dir(rootfs.join("var/lib")).expect("ls").count(), 1);
}

#[test]
fn podman_storage_goes_to_var_lib_containers_and_user_xattrs() {
    if !is_root() {
        eprintln!("skipped: needs root (CI runs as root)");
        return;
    }
    use tar::EntryType as T;
    let t = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tmp");
    let user_ok = user_xattrs_supported(t.path());
    let tarf = t.path().join("podman-storage.tar");
    let xattrs: &[(&str, &[u8])] = if user_ok {
        &[("user.vcontainer", b"kept"), ("trusted.t", b"1")]
    } else {
        &[("trusted.t", b"1")]
    };
    write_tar(
        &tarf,
        &[
            E {
                mode: 0o700,
                ..e("storage/", T::Directory)
            },
            E {
                mode: 0o640,
                uid: 65534,
                gid: 65534,
                data: b"layer",
                xattrs,
                ..e("storage/vfs/dir/f", T::Regular)
            },
        ],
    );
    let rootfs = t.path().join("rootfs");
    fs::create_dir(&rootfs).expect("rootfs");
    // An empty storage dir (as a package may ship) is not "existing storage".
    fs::create_dir_all(rootfs.join("var/lib/containers/storage")).expect("empty storage");
    vcontainer(&[
        "install-storage",
        "--engine",
        "podman",
        "--rootfs",
        rootfs.to_str().expect("utf8"),
        tarf.to_str().expect("utf8"),
    ])
    .assert_ok("install-storage podman");
    let s = rootfs.join("var/lib/containers/storage");
    assert_eq!(fs::metadata(&s).expect("s").mode() & 0o7777, 0o700);
    let f = fs::metadata(s.join("vfs/dir/f")).expect("f");
    assert_eq!((f.uid(), f.gid(), f.mode() & 0o7777), (65534, 65534, 0o640));
    let x = xattrs_under(&s);
    let fx = x.get("vfs/dir/f").expect("f listed");
    assert!(fx.contains(&("trusted.t".into(), b"1".to_vec())), "{fx:?}");
    if user_ok {
        assert!(
            fx.contains(&("user.vcontainer".into(), b"kept".to_vec())),
            "{fx:?}"
        );
    } else {
        eprintln!("note: user.* xattrs unsupported on this filesystem; checked trusted.* only");
    }
}

#[test]
fn hostile_archives_are_refused_and_nothing_is_installed() {
    if !is_root() {
        eprintln!("skipped: needs root (CI runs as root)");
        return;
    }
    use tar::EntryType as T;
    let t = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tmp");
    let cases: Vec<(&str, Vec<E<'_>>, &str)> = vec![
        (
            "dotdot",
            vec![
                e("docker/", T::Directory),
                e("docker/../../../etc/evil", T::Regular),
            ],
            "'..'",
        ),
        ("absolute", vec![e("/etc/evil", T::Regular)], "absolute"),
        (
            "wrong top",
            vec![e("storage/x", T::Regular)],
            "under docker/",
        ),
        (
            "through symlink",
            vec![
                E {
                    link: Some("/etc"),
                    ..e("docker/l", T::Symlink)
                },
                e("docker/l/evil", T::Regular),
            ],
            "below a symlink",
        ),
        (
            "hard link out",
            vec![E {
                link: Some("/etc/shadow"),
                ..e("docker/h", T::Link)
            }],
            "hard link",
        ),
        // Device nodes and fifos are image content and installed (fidelity.rs); an entry type
        // tar has no business carrying in storage (a volume label) is not.
        (
            "unknown entry type",
            vec![e("docker/label", T::new(b'V'))],
            "not allowed",
        ),
    ];
    for (what, entries, why) in cases {
        let tarf = t.path().join("bad.tar");
        write_tar(&tarf, &entries);
        let rootfs = t.path().join(format!("rootfs-{}", what.replace(' ', "-")));
        fs::create_dir(&rootfs).expect("rootfs");
        let r = vcontainer(&[
            "install-storage",
            "--engine",
            "docker",
            "--rootfs",
            rootfs.to_str().expect("utf8"),
            tarf.to_str().expect("utf8"),
        ]);
        assert_eq!(r.code, Some(1), "{what}: {}", r.stderr);
        assert!(r.stderr.contains(why), "{what}: {}", r.stderr);
        assert!(
            listing(&rootfs).is_empty(),
            "{what}: {:?}",
            listing(&rootfs)
        );
    }
    assert!(!Path::new("/etc/evil").exists());

    // Passes the check but GNU tar fails half-way (a hard link to a directory): nothing remains.
    let tarf = t.path().join("fails.tar");
    write_tar(
        &tarf,
        &[
            e("docker/", T::Directory),
            E {
                data: b"x",
                mode: 0o644,
                ..e("docker/a", T::Regular)
            },
            e("docker/d/", T::Directory),
            E {
                link: Some("docker/d"),
                ..e("docker/h", T::Link)
            },
        ],
    );
    let rootfs = t.path().join("rootfs-fail");
    fs::create_dir(&rootfs).expect("rootfs");
    let r = vcontainer(&[
        "install-storage",
        "--engine",
        "docker",
        "--rootfs",
        rootfs.to_str().expect("utf8"),
        tarf.to_str().expect("utf8"),
    ]);
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert!(r.stderr.contains("nothing was installed"), "{}", r.stderr);
    assert!(!rootfs.join("var/lib/docker").exists());
    assert_eq!(
        fs::read_dir(rootfs.join("var/lib"))
            .map(|d| d.count())
            .unwrap_or(0),
        0,
        "no staging leftovers: {:?}",
        listing(&rootfs)
    );
}

#[test]
fn without_root_it_refuses_before_touching_anything() {
    let t = tempfile::tempdir().expect("tmp");
    let tarf = t.path().join("docker-storage.tar");
    docker_storage_tar(&tarf);
    let rootfs = t.path().join("rootfs");
    fs::create_dir(&rootfs).expect("rootfs");
    let bin = bin_dir().join("vcontainer");
    let mut cmd = if is_root() {
        let setpriv = ["/usr/bin/setpriv", "/bin/setpriv"]
            .into_iter()
            .find(|p| Path::new(p).is_file())
            .expect("setpriv (util-linux) to drop privileges");
        let mut c = Command::new(setpriv);
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(&bin);
        // nobody must be able to see the rootfs for the test to mean anything.
        for p in [t.path(), &rootfs] {
            nix::unistd::chown(p, Some(nix::unistd::Uid::from_raw(65534)), None).expect("chown");
        }
        c
    } else {
        Command::new(&bin)
    };
    cmd.args([
        "install-storage",
        "--engine",
        "docker",
        "--rootfs",
        rootfs.to_str().expect("utf8"),
        tarf.to_str().expect("utf8"),
    ])
    .env_remove("LD_PRELOAD")
    .stdin(Stdio::null());
    let r = run_command(cmd);
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert!(
        r.stderr.contains("needs root") && r.stderr.contains("fakeroot"),
        "{}",
        r.stderr
    );
    assert!(listing(&rootfs).is_empty(), "{:?}", listing(&rootfs));
}
