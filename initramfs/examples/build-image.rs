//! Builds (or finds cached) guest images from the command line, printing progress with timings:
//! `cargo run -p vcontainer-initramfs --example build-image -- <arch> <agent> <cache_dir> [--refresh-kernel]`

use std::time::Instant;

use vcontainer_initramfs::{build, cached, Arch, BuildRequest};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 3 {
        eprintln!("usage: build-image <aarch64|x86_64> <agent> <cache_dir> [--refresh-kernel]");
        std::process::exit(2);
    }
    let arch: Arch = match args[0].parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let mut req = BuildRequest::new(arch, &args[1], &args[2]);
    req.refresh_kernel = args.iter().any(|a| a == "--refresh-kernel");
    let start = Instant::now();
    if let Some(img) = cached(&req) {
        println!("cached ({:.2} s): {img:#?}", start.elapsed().as_secs_f64());
        return;
    }
    match build(&req, &mut |p| {
        eprintln!("[{:6.1}s] {p}", start.elapsed().as_secs_f64())
    }) {
        Ok(img) => println!("built in {:.1} s: {img:#?}", start.elapsed().as_secs_f64()),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}
