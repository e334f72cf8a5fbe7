//! Fuzzes the OCI layout readers used by `import` (a layout or archive on disk, possibly from an
//! untrusted source), from the `vcontainer-oci` crate alone: `platform::select_platform` for both
//! guest platforms and `validate::validate_oci_layout`. Input: parts separated by `\n--8<--\n`; part 0 is index.json, the
//! others blobs (stored under their digest); `@D<n>`/`@S<n>` in a part stand for the digest/size
//! of part n (n > the part's own number), see `vcontainer_fuzz::resolve_parts`.
//! Asserts: a selection names only blobs inside the layout that exist, and a layout that
//! validates and selects can be streamed (`write_selection_tar`).
#![no_main]

use std::path::Component;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use oci_spec::image::{Platform, PlatformBuilder};
use vcontainer_fuzz::{write_layout, Scratch};
use vcontainer_oci::platform::{select_platform, write_selection_tar};
use vcontainer_oci::validate::validate_oci_layout;

static SCRATCH: OnceLock<Scratch> = OnceLock::new();
static TARGETS: OnceLock<[Platform; 2]> = OnceLock::new();

fn platform(arch: &str, variant: Option<&str>) -> Platform {
    let b = PlatformBuilder::default().architecture(arch).os("linux");
    let b = match variant {
        Some(v) => b.variant(v),
        None => b,
    };
    b.build().expect("platform")
}

fuzz_target!(|data: &[u8]| {
    let scratch = SCRATCH.get_or_init(|| Scratch::new("oci-layout"));
    scratch.reset();
    let root = scratch.root.join("layout");
    write_layout(&root, data).expect("layout written");
    let valid = validate_oci_layout(&root).is_ok();
    let targets = TARGETS.get_or_init(|| [platform("arm64", Some("v8")), platform("amd64", None)]);
    for target in targets {
        let Ok(sel) = select_platform(&root, target) else {
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
