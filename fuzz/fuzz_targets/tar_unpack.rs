//! Fuzzes `vcontainer::util::host_tar::unpack_safely` with tar streams as a hostile guest could send
//! them (`copy_out`, `get_tar`, storage export). Asserts that nothing is ever written outside the
//! destination — not through pre-planted symlinks to a sibling directory (absolute or relative),
//! not by hard links to files outside — that no set-id bit, device or fifo appears, that the
//! limits hold, and that whatever was unpacked packs again and unpacks again safely.
#![no_main]

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use vcontainer::util::host_tar::{pack_to, unpack_safely, Limits};
use vcontainer_fuzz::Scratch;

const CANARY: &[u8] = b"outside: must never change";

static SCRATCH: OnceLock<Scratch> = OnceLock::new();

fn limits() -> Limits {
    Limits {
        max_bytes: 1 << 20,
        max_entries: 256,
    }
}

/// Every entry below `dir` (symlinks not followed): no set-id/sticky bits, no special files.
fn check_tree(dir: &Path) {
    for e in fs::read_dir(dir)
        .expect("unpacked directory readable")
        .flatten()
    {
        let m = fs::symlink_metadata(e.path()).expect("entry stat");
        let ft = m.file_type();
        assert!(
            ft.is_dir() || ft.is_file() || ft.is_symlink(),
            "special file unpacked: {:?}",
            e.path()
        );
        if !ft.is_symlink() {
            assert_eq!(
                m.permissions().mode() & 0o7000,
                0,
                "set-id bit on {:?}",
                e.path()
            );
        }
        if ft.is_dir() {
            check_tree(&e.path());
        }
    }
}

fn check_outside(outside: &Path) {
    let names: Vec<_> = fs::read_dir(outside)
        .expect("outside readable")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(
        names,
        vec![std::ffi::OsString::from("canary")],
        "written outside"
    );
    let canary = outside.join("canary");
    let m = fs::symlink_metadata(&canary).expect("canary present");
    assert!(m.is_file(), "canary replaced");
    assert_eq!(m.nlink(), 1, "canary hard-linked from the destination");
    assert_eq!(
        m.permissions().mode() & 0o7777,
        0o644,
        "canary mode changed"
    );
    assert_eq!(
        fs::read(&canary).expect("canary readable"),
        CANARY,
        "canary changed"
    );
}

fn check_root(root: &Path) {
    let mut names: Vec<_> = fs::read_dir(root)
        .expect("scratch readable")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["again", "dest", "outside"],
        "written beside the destination"
    );
}

fuzz_target!(|data: &[u8]| {
    let scratch = SCRATCH.get_or_init(|| Scratch::new("tar"));
    scratch.reset();
    let root = &scratch.root;
    let (dest, outside, again) = (root.join("dest"), root.join("outside"), root.join("again"));
    for d in [&dest, &outside, &again] {
        fs::create_dir(d).expect("mkdir");
    }
    fs::write(outside.join("canary"), CANARY).expect("canary");
    fs::set_permissions(outside.join("canary"), fs::Permissions::from_mode(0o644)).expect("chmod");
    // Links an archive might try to write through (seeds name them).
    std::os::unix::fs::symlink(&outside, dest.join("abs")).expect("symlink");
    std::os::unix::fs::symlink("../outside", dest.join("rel")).expect("symlink");
    std::os::unix::fs::symlink("../outside/canary", dest.join("canary")).expect("symlink");

    let limits = limits();
    let result = unpack_safely(data, &dest, &limits);
    check_outside(&outside);
    check_root(root);
    check_tree(&dest);
    let Ok(report) = result else { return };
    assert!(report.entries <= limits.max_entries);
    assert!(report.bytes <= limits.max_bytes);

    // What was unpacked packs, and the packed tree unpacks again within the same limits (plus
    // the three planted links).
    let tar = pack_to(&dest, Path::new("."), false, Vec::new()).expect("unpacked tree packs");
    let more = Limits {
        max_bytes: limits.max_bytes * 2,
        max_entries: limits.max_entries * 2 + 8,
    };
    unpack_safely(&tar[..], &again, &more).expect("a packed unpacked tree unpacks");
    check_tree(&again);
    check_outside(&outside);
    check_root(root);
});
