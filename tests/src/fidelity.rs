//! File-by-file fidelity checks (issue 19): a rootfs holding what real images hold — a file
//! capability, setuid/setgid/sticky modes, a service user's files with a `user.*` xattr and a hard
//! link, a FIFO, character and block devices, relative and absolute symlinks, an empty directory,
//! a sparse file, a long and a non-UTF-8 name, set mtimes — and one view of such a tree, whether
//! it is read from a directory or from a tar (a layer, a storage tar, the tree tarred inside
//! fakeroot), so that every path from rootfs to target can be compared against the source.
//!
//! Building the fixture needs root (devices, owners, `security.capability`): CI runs as root.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::OsStr;
use std::fs;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// The mtime every fixture entry gets (2020-09-13), and one older than it for the
/// `SOURCE_DATE_EPOCH` clamp.
pub const FIXTURE_MTIME: i64 = 1_600_000_000;
pub const OLDER_EPOCH: i64 = 1_500_000_000;

/// A version-2 file capability granting `cap_net_raw` (bit 13) effective and permitted, as
/// `setcap cap_net_raw+ep` writes it.
pub const CAP_NET_RAW_EP: [u8; 20] = [
    0x01, 0x00, 0x00, 0x02, 0x00, 0x20, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00,
];

/// A long name (over the 100 bytes of a plain tar header) and a name that is not UTF-8.
pub fn long_name() -> String {
    format!("long-{}", "n".repeat(180))
}
pub const NON_UTF8_NAME: &[u8] = b"caf\xe9";

/// Builds the fidelity fixture at `root` (which must not exist). Needs root.
pub fn build_fixture(root: &Path) {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the fidelity fixture needs root (device nodes, owners, file capabilities): run the tests as root, as CI does"
    );
    let p = |rel: &str| root.join(rel);
    for d in [
        "bin",
        "home/u",
        "dev",
        "empty",
        "tmp",
        "var/lib/svc",
        "data",
    ] {
        fs::create_dir_all(p(d)).expect("mkdir");
    }
    fs::write(p("bin/ping"), b"#!ping\n").expect("ping");
    fs::set_permissions(p("bin/ping"), fs::Permissions::from_mode(0o755)).expect("chmod");
    xattr::set(p("bin/ping"), "security.capability", &CAP_NET_RAW_EP).expect("setcap");
    fs::write(p("bin/su"), b"#!su\n").expect("su");
    fs::set_permissions(p("bin/su"), fs::Permissions::from_mode(0o4755)).expect("chmod");
    fs::write(p("bin/wall"), b"#!wall\n").expect("wall");
    fs::set_permissions(p("bin/wall"), fs::Permissions::from_mode(0o2755)).expect("chmod");
    fs::set_permissions(p("tmp"), fs::Permissions::from_mode(0o1777)).expect("chmod");

    fs::write(p("home/u/note"), b"a note\n").expect("note");
    xattr::set(p("home/u/note"), "user.note", b"kept").expect("user xattr");
    fs::hard_link(p("home/u/note"), p("home/u/note.link")).expect("hard link");
    for f in ["home/u", "home/u/note", "var/lib/svc"] {
        chown(&p(f), 1000, 1000);
    }
    fs::write(p("var/lib/svc/state"), b"svc\n").expect("state");
    chown(&p("var/lib/svc/state"), 1000, 100);

    nix::unistd::mkfifo(
        &p("dev/fifo"),
        nix::sys::stat::Mode::from_bits_truncate(0o620),
    )
    .expect("mkfifo");
    mknod(&p("dev/null"), nix::sys::stat::SFlag::S_IFCHR, 1, 3);
    mknod(&p("dev/loop9"), nix::sys::stat::SFlag::S_IFBLK, 7, 9);
    std::os::unix::fs::symlink("../bin/ping", p("bin/ping-rel")).expect("symlink");
    std::os::unix::fs::symlink("/bin/su", p("bin/su-abs")).expect("symlink");

    // Sparse: 4 MiB of hole, then data.
    let sparse = fs::File::create(p("data/sparse")).expect("sparse");
    sparse.set_len(4 << 20).expect("hole");
    drop(sparse);
    let mut f = fs::OpenOptions::new()
        .append(true)
        .open(p("data/sparse"))
        .expect("open");
    std::io::Write::write_all(&mut f, b"end of a sparse file\n").expect("write");
    fs::write(p("data").join(long_name()), b"long\n").expect("long name");
    fs::write(
        p("data").join(OsStr::from_bytes(NON_UTF8_NAME)),
        b"latin-1\n",
    )
    .expect("non-UTF-8 name");

    // Last: times of every entry (directories after their contents were made).
    set_times(root);
}

fn chown(path: &Path, uid: u32, gid: u32) {
    nix::unistd::fchownat(
        nix::fcntl::AT_FDCWD,
        path,
        Some(nix::unistd::Uid::from_raw(uid)),
        Some(nix::unistd::Gid::from_raw(gid)),
        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .expect("chown");
}

fn mknod(path: &Path, kind: nix::sys::stat::SFlag, major: u64, minor: u64) {
    nix::sys::stat::mknod(
        path,
        kind,
        nix::sys::stat::Mode::from_bits_truncate(0o660),
        nix::sys::stat::makedev(major, minor),
    )
    .expect("mknod");
}

fn set_times(root: &Path) {
    let t = nix::sys::time::TimeSpec::new(FIXTURE_MTIME, 0);
    let mut paths: Vec<PathBuf> = Vec::new();
    walk(root, &mut paths);
    // Deepest first, so a directory's time is set after its children were touched.
    paths.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for p in paths {
        nix::sys::stat::utimensat(
            nix::fcntl::AT_FDCWD,
            &p,
            &t,
            &t,
            nix::sys::stat::UtimensatFlags::NoFollowSymlink,
        )
        .expect("utimensat");
    }
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in fs::read_dir(dir).expect("read_dir").flatten() {
        let p = e.path();
        if e.file_type().expect("type").is_dir() {
            walk(&p, out);
        }
        out.push(p);
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Dir,
    /// Size and sha256 of the content.
    File(u64, String),
    Symlink(Vec<u8>),
    Char(u64, u64),
    Block(u64, u64),
    Fifo,
}

/// What must survive of one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    pub kind: Kind,
    /// Permission bits with setuid/setgid/sticky (symlinks: none, their mode means nothing).
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: i64,
    pub xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
}

/// A tree: every entry by its path bytes relative to the root, and the groups of paths that are
/// hard links of one file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct View {
    pub entries: BTreeMap<Vec<u8>, Meta>,
    pub links: BTreeSet<BTreeSet<Vec<u8>>>,
}

/// The xattrs that belong to image content (the rule of the OCI builder and the engines:
/// not the host's SELinux label, not overlayfs' bookkeeping, not ACLs).
pub fn content_xattr(name: &[u8]) -> bool {
    !(name == b"security.selinux"
        || name.starts_with(b"trusted.overlay.")
        || name.starts_with(b"system."))
}

/// The view of the directory `root` (not following symlinks).
pub fn dir_view(root: &Path) -> View {
    let mut paths = Vec::new();
    walk(root, &mut paths);
    let mut view = View::default();
    let mut inodes: HashMap<(u64, u64), BTreeSet<Vec<u8>>> = HashMap::new();
    for abs in paths {
        let rel = abs
            .strip_prefix(root)
            .expect("under root")
            .as_os_str()
            .as_bytes()
            .to_vec();
        let md = fs::symlink_metadata(&abs).expect("lstat");
        let ft = md.file_type();
        let kind = if ft.is_dir() {
            Kind::Dir
        } else if ft.is_file() {
            let mut data = Vec::new();
            fs::File::open(&abs)
                .expect("open")
                .read_to_end(&mut data)
                .expect("read");
            if md.nlink() > 1 {
                inodes
                    .entry((md.dev(), md.ino()))
                    .or_default()
                    .insert(rel.clone());
            }
            Kind::File(data.len() as u64, hex::encode(Sha256::digest(&data)))
        } else if ft.is_symlink() {
            Kind::Symlink(
                fs::read_link(&abs)
                    .expect("readlink")
                    .as_os_str()
                    .as_bytes()
                    .to_vec(),
            )
        } else if ft.is_char_device() {
            Kind::Char(major(md.rdev()), minor(md.rdev()))
        } else if ft.is_block_device() {
            Kind::Block(major(md.rdev()), minor(md.rdev()))
        } else if ft.is_fifo() {
            Kind::Fifo
        } else {
            continue; // sockets: never image content
        };
        let xattrs = xattr::list(&abs)
            .map(|names| {
                names
                    .filter(|n| content_xattr(n.as_bytes()))
                    .filter_map(|n| Some((n.as_bytes().to_vec(), xattr::get(&abs, &n).ok()??)))
                    .collect()
            })
            .unwrap_or_default();
        let symlink = matches!(kind, Kind::Symlink(_));
        view.entries.insert(
            rel,
            Meta {
                kind,
                mode: if symlink { 0 } else { md.mode() & 0o7777 },
                uid: md.uid().into(),
                gid: md.gid().into(),
                mtime: md.mtime(),
                xattrs,
            },
        );
    }
    view.links = inodes.into_values().filter(|g| g.len() > 1).collect();
    view
}

fn major(dev: u64) -> u64 {
    nix::sys::stat::major(dev)
}

fn minor(dev: u64) -> u64 {
    nix::sys::stat::minor(dev)
}

/// The view of a tar stream's entries under `prefix` (names relative to it; entries outside it
/// and the prefix itself are left out). PAX `SCHILY.xattr.*` records become the xattrs.
pub fn tar_view<R: Read>(tar: R, prefix: &[u8]) -> View {
    let mut archive = tar::Archive::new(tar);
    let mut view = View::default();
    let mut link_of: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    for entry in archive.entries().expect("entries") {
        let mut entry = entry.expect("entry");
        let mut xattrs = BTreeMap::new();
        // GNU tar's PAX sparse format (1.0): the real name and size are PAX records, the data
        // starts with the map of the data's pieces.
        let mut sparse: (Option<Vec<u8>>, Option<u64>) = (None, None);
        if let Some(pax) = entry.pax_extensions().expect("pax") {
            for ext in pax {
                let ext = ext.expect("pax record");
                let key = ext.key_bytes();
                if let Some(n) = key.strip_prefix(b"SCHILY.xattr.") {
                    if content_xattr(n) {
                        xattrs.insert(n.to_vec(), ext.value_bytes().to_vec());
                    }
                } else if key == b"GNU.sparse.name" {
                    sparse.0 = Some(ext.value_bytes().to_vec());
                } else if key == b"GNU.sparse.realsize" {
                    sparse.1 = ext.value().ok().and_then(|v| v.parse().ok());
                }
            }
        }
        let name = match &sparse.0 {
            Some(n) => strip_dot(n).to_vec(),
            None => strip_dot(&entry.path_bytes()).to_vec(),
        };
        let Some(rel) = under(&name, prefix) else {
            continue;
        };
        let h = entry.header().clone();
        let dev = || {
            (
                u64::from(h.device_major().ok().flatten().unwrap_or(0)),
                u64::from(h.device_minor().ok().flatten().unwrap_or(0)),
            )
        };
        use tar::EntryType as E;
        let kind = match h.entry_type() {
            E::Directory => Kind::Dir,
            E::Regular | E::Continuous | E::GNUSparse => {
                let mut data = Vec::new();
                entry.read_to_end(&mut data).expect("read");
                if let (Some(_), Some(size)) = sparse {
                    data = expand_sparse(&data, size);
                }
                Kind::File(data.len() as u64, hex::encode(Sha256::digest(&data)))
            }
            E::Link => {
                let target = strip_dot(&entry.link_name_bytes().expect("link target")).to_vec();
                if let Some(t) = under(&target, prefix) {
                    link_of.push((rel.clone(), t));
                }
                continue;
            }
            E::Symlink => Kind::Symlink(entry.link_name_bytes().expect("target").to_vec()),
            E::Char => Kind::Char(dev().0, dev().1),
            E::Block => Kind::Block(dev().0, dev().1),
            E::Fifo => Kind::Fifo,
            _ => continue,
        };
        let symlink = matches!(kind, Kind::Symlink(_));
        view.entries.insert(
            rel,
            Meta {
                kind,
                mode: if symlink {
                    0
                } else {
                    h.mode().expect("mode") & 0o7777
                },
                uid: h.uid().expect("uid"),
                gid: h.gid().expect("gid"),
                mtime: h.mtime().expect("mtime") as i64,
                xattrs,
            },
        );
    }
    // A hard link is its target's inode under another name.
    let mut groups: BTreeMap<Vec<u8>, BTreeSet<Vec<u8>>> = BTreeMap::new();
    for (link, target) in link_of {
        let meta = view
            .entries
            .get(&target)
            .expect("hard link to an earlier entry")
            .clone();
        view.entries.insert(link.clone(), meta);
        let g = groups.entry(target.clone()).or_default();
        g.insert(target);
        g.insert(link);
    }
    view.links = groups.into_values().collect();
    view
}

/// The content of a PAX 1.0 sparse entry: its data begins with the map (decimal lines: the
/// number of pieces, then offset and size of each), padded to a 512-byte block, followed by
/// the pieces; everything between them is a hole.
fn expand_sparse(data: &[u8], real_size: u64) -> Vec<u8> {
    let mut lines = data.split(|b| *b == b'\n');
    let mut number = || -> usize {
        std::str::from_utf8(lines.next().expect("sparse map line"))
            .expect("sparse map")
            .parse()
            .expect("sparse map number")
    };
    let pieces = number();
    let map: Vec<(usize, usize)> = (0..pieces).map(|_| (number(), number())).collect();
    let map_len: usize = data
        .split_inclusive(|b| *b == b'\n')
        .take(1 + 2 * pieces)
        .map(<[u8]>::len)
        .sum();
    let mut at = map_len.div_ceil(512) * 512;
    let mut out = vec![0u8; usize::try_from(real_size).expect("size")];
    for (offset, size) in map {
        out[offset..offset + size].copy_from_slice(&data[at..at + size]);
        at += size;
    }
    out
}

fn strip_dot(name: &[u8]) -> &[u8] {
    let name = name.strip_prefix(b"./").unwrap_or(name);
    name.strip_suffix(b"/").unwrap_or(name)
}

/// `name` relative to `prefix` (`prefix` empty: all but the root), if it lies strictly below.
fn under(name: &[u8], prefix: &[u8]) -> Option<Vec<u8>> {
    if prefix.is_empty() {
        return (!name.is_empty() && name != b".").then(|| name.to_vec());
    }
    let rest = name.strip_prefix(prefix)?.strip_prefix(b"/")?;
    (!rest.is_empty()).then(|| rest.to_vec())
}

/// Which fields a comparison holds to.
#[derive(Debug, Clone, Copy)]
pub struct Compare {
    /// Directory mtimes (an engine extracting a layer may touch a directory after its entries).
    pub dir_mtimes: bool,
    /// All mtimes.
    pub mtimes: bool,
}

/// Every difference between `actual` and `expected`, one line each; empty when they agree.
pub fn differences(actual: &View, expected: &View, cmp: Compare) -> Vec<String> {
    let show = |p: &[u8]| String::from_utf8_lossy(p).into_owned();
    let mut out = Vec::new();
    for (path, want) in &expected.entries {
        let Some(got) = actual.entries.get(path) else {
            out.push(format!("{}: missing", show(path)));
            continue;
        };
        let mut want = want.clone();
        let mut got = got.clone();
        if !cmp.mtimes || (!cmp.dir_mtimes && want.kind == Kind::Dir) {
            want.mtime = 0;
            got.mtime = 0;
        }
        if got != want {
            out.push(format!("{}: got {got:?}, want {want:?}", show(path)));
        }
    }
    for path in actual.entries.keys() {
        if !expected.entries.contains_key(path) {
            out.push(format!("{}: unexpected", show(path)));
        }
    }
    if actual.links != expected.links {
        out.push(format!(
            "hard links: got {:?}, want {:?}",
            actual.links, expected.links
        ));
    }
    out
}

/// Panics listing every difference.
pub fn assert_same(actual: &View, expected: &View, cmp: Compare, what: &str) {
    let d = differences(actual, expected, cmp);
    assert!(
        d.is_empty(),
        "{what}: {} differences:\n{}",
        d.len(),
        d.join("\n")
    );
}
