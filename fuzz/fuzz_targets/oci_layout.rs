//! Fuzzes the OCI layout readers used by `import` (a layout or archive on disk, possibly from an
//! untrusted source): `ops::oci_platform::select_platform` for both targets and
//! `ops::validate_oci_layout`. Input: parts separated by `\n--8<--\n`; part 0 is index.json, the
//! others blobs (stored under their digest); `@D<n>`/`@S<n>` in a part stand for the digest/size
//! of part n (n > the part's own number), see `vcontainer_fuzz::resolve_parts`.
//! Asserts: a selection names only blobs inside the layout that exist, and a layout that
//! validates and selects can be streamed (`write_selection_tar`).
#![no_main]

use std::path::Component;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use vcontainer::ops::oci_platform::{select_platform, write_selection_tar};
use vcontainer::ops::validate_oci_layout;
use vcontainer_fuzz::{write_layout, Scratch};
use vcontainer_initramfs::Arch;

static SCRATCH: OnceLock<Scratch> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let scratch = SCRATCH.get_or_init(|| Scratch::new("oci-layout"));
    scratch.reset();
    let root = scratch.root.join("layout");
    write_layout(&root, data).expect("layout written");
    let valid = validate_oci_layout(&root).is_ok();
    for arch in Arch::ALL {
        let Ok(sel) = select_platform(&root, arch) else {
            continue;
        };
        let _ = sel.note();
        let _ = sel.index_json();
        for hex in &sel.blobs {
            let p = sel.blob_path(hex);
            assert!(p.starts_with(&root), "blob path {p:?} outside the layout");
            assert!(
                p.strip_prefix(&root)
                    .expect("inside")
                    .components()
                    .all(|c| matches!(c, Component::Normal(_))),
                "blob path {p:?} not plain"
            );
        }
        let mut sink = Vec::new();
        let streamed = write_selection_tar(&sel, &mut sink);
        if valid {
            streamed.expect("a valid, selected layout streams");
        }
    }
});
