//! The module closure from a real kernel package whose modules are compressed: Debian trixie's
//! cloud kernel ships `.ko.xz`. The closure must be found through the compressed files and
//! written uncompressed (plain ELF with the right `.modinfo`), for both arches. The packages are
//! downloaded once into the test cache (like the busybox fixture).

use vcontainer_initramfs::{fetch_kernel_closure, Arch, MODULES_DIR};
use vcontainer_tests::vm::cache_dir;

fn closure_of_trixie_kernel(arch: Arch) {
    let out = tempfile::tempdir().expect("tempdir");
    let info = fetch_kernel_closure(arch, &cache_dir(), "trixie", out.path(), &mut |_| {})
        .unwrap_or_else(|e| panic!("trixie {arch} kernel: {e}"));
    assert!(!info.module_order.is_empty(), "{info:?}");
    for rel in &info.module_order {
        assert!(rel.ends_with(".ko"), "written under its plain name: {rel}");
        let bytes = std::fs::read(out.path().join(MODULES_DIR).join(rel)).expect("module");
        assert_eq!(&bytes[..4], b"\x7fELF", "{rel} is not an uncompressed ELF");
    }
    // virtio_blk is a module in Debian's cloud kernels: it must be in the closure.
    assert!(
        info.module_order
            .iter()
            .any(|m| m.ends_with("/virtio_blk.ko")),
        "{:?}",
        info.module_order
    );
}

#[test]
fn trixie_x86_64_kernel_with_xz_modules() {
    closure_of_trixie_kernel(Arch::X86_64);
}

#[test]
fn trixie_aarch64_kernel_with_xz_modules() {
    closure_of_trixie_kernel(Arch::Aarch64);
}
