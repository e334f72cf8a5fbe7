//! Makes a Debian rootfs with a dpkg database (the OCI builder's test input):
//! `cargo run -p vcontainer --example debian_rootfs -- ARCH SUITE DEST PACKAGE...`

use anyhow::{Context, Result};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [arch, suite, dest, packages @ ..] = args.as_slice() else {
        anyhow::bail!("usage: debian_rootfs ARCH SUITE DEST PACKAGE...");
    };
    let cache = vcontainer::guest::boot_image::cache_dir()?;
    let pkgs: Vec<&str> = packages.iter().map(String::as_str).collect();
    let bytes = vcontainer::bench::fixture::debian_rootfs(
        arch.parse()?,
        &cache,
        suite,
        &pkgs,
        dest.as_ref(),
    )
    .context("building the rootfs")?;
    println!(
        "{dest}: {} packages, {:.1} MB",
        pkgs.len(),
        bytes as f64 / 1e6
    );
    Ok(())
}
