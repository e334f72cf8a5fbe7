//! The structure guard rail: no import cycle between the files of any crate, and in the host
//! crate no import that goes up its layer list (the crate doc of `host/src/lib.rs`). A source
//! scan (`vcontainer_tests::source_graph`); `mod` declarations are not imports.

use std::fs;
use std::path::{Path, PathBuf};

use vcontainer_tests::source_graph::{cycles, describe, scan, top_module, Graph};

/// The host crate's layers, bottom first. A file may import from its own layer and those
/// before it.
const HOST_LAYERS: &[&str] = &[
    "util",
    "vm",
    "transport",
    "state",
    "session",
    "ops",
    "guest",
    "engine",
    "bundling",
    "bench",
    "cli",
];

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

fn cycle_report(g: &Graph) -> String {
    cycles(g)
        .iter()
        .map(|c| format!("cycle between {}:\n{}", c.join(", "), describe(g, c)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Imports from a file to a file of a later layer, and files in no layer.
fn upward_imports(g: &Graph, layers: &[&str]) -> Vec<String> {
    let rank = |rel: &str| top_module(rel).and_then(|m| layers.iter().position(|l| *l == m));
    let mut bad = Vec::new();
    for f in &g.files {
        if top_module(f).is_some() && rank(f).is_none() {
            bad.push(format!("{f} is in no layer"));
        }
    }
    for (from, tos) in &g.edges {
        let Some(rf) = rank(from) else { continue };
        for (to, line) in tos {
            if rank(to).is_some_and(|rt| rt > rf) {
                bad.push(format!("{from} -> {to} goes up: {line}"));
            }
        }
    }
    bad
}

#[test]
fn no_import_cycles_between_files() {
    let mut report = Vec::new();
    for krate in ["protocol", "agent", "initramfs", "oci", "host", "tests"] {
        let g = scan(&workspace().join(krate).join("src"));
        assert!(g.files.len() > 1, "{krate}: no sources found");
        let r = cycle_report(&g);
        if !r.is_empty() {
            report.push(format!("{krate}:\n{r}"));
        }
    }
    assert!(report.is_empty(), "{}", report.join("\n"));
}

#[test]
fn host_imports_only_downwards() {
    let g = scan(&workspace().join("host/src"));
    let bad = upward_imports(&g, HOST_LAYERS);
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

fn write(root: &Path, rel: &str, text: &str) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
    fs::write(p, text).expect("write");
}

#[test]
fn the_scan_sees_cycles_and_upward_imports() {
    // The checks above must be able to fail: a small crate with one cycle through a re-export,
    // one upward import, and the things that are not imports (mod declarations, re-exports,
    // comments, strings, test modules).
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path();
    write(src, "lib.rs", "pub mod util;\npub mod vm;\n");
    write(
        src,
        "util/mod.rs",
        "mod tail;\npub use tail::Tail;\n// crate::vm::qemu::argv\n",
    );
    write(
        src,
        "util/tail.rs",
        "pub struct Tail;\nconst S: &str = \"crate::vm::qemu::x\";\n\
         #[cfg(test)]\nmod tests { use crate::vm::qemu::argv; }\n",
    );
    write(src, "vm/mod.rs", "pub mod qemu;\npub mod guard;\n");
    write(
        src,
        "vm/qemu.rs",
        "use crate::util::Tail;\npub fn argv() -> Tail { super::guard::run(); Tail }\n",
    );
    write(
        src,
        "vm/guard.rs",
        "use super::qemu;\npub fn run() { let _ = qemu::argv(); }\n",
    );
    let g = scan(src);
    let c = cycles(&g);
    assert_eq!(
        c,
        vec![vec!["vm/guard.rs".to_string(), "vm/qemu.rs".into()]]
    );
    assert!(upward_imports(&g, &["util", "vm"]).is_empty(), "{g:?}");
    assert_eq!(
        g.edges["vm/qemu.rs"].keys().collect::<Vec<_>>(),
        ["util/tail.rs", "vm/guard.rs"]
    );

    // Now util imports from vm: an upward import and a second cycle.
    write(
        src,
        "util/tail.rs",
        "pub struct Tail;\npub fn f() { crate::vm::qemu::argv(); }\n",
    );
    let g = scan(src);
    assert_eq!(
        upward_imports(&g, &["util", "vm"]),
        ["util/tail.rs -> vm/qemu.rs goes up: pub fn f() { crate::vm::qemu::argv(); }"]
    );
    assert_eq!(cycles(&g).len(), 1, "{:?}", cycles(&g));
    assert_eq!(cycles(&g)[0].len(), 3);
}
