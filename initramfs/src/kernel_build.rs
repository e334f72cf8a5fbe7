//! Building a guest kernel with its drivers built in (boot shape (a)) from Debian's kernel
//! source package, `linux-source-<series>` of the root filesystem's suite, with the small
//! configuration of kernel_config.rs: `allnoconfig`, the fragment appended, `olddefconfig`,
//! every fragment setting checked, then `make`. aarch64 kernels are cross-compiled with Debian's
//! `gcc-aarch64-linux-gnu` on an x86_64 host.
//!
//! The result is cached under `kernels/` of the cache directory, keyed by the source package
//! (version and sha256), the configuration fragment and the compiler's version: the same inputs
//! never build twice. A build takes ~15 min per arch on 2 cores, so vcontainer never starts one
//! by itself; `vcontainer image kernel` does.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use crate::cache::{self, key, part_dir, Staging};
use crate::error::{BuildError, Result};
use crate::progress::{Progress, Stage};
use crate::tool::{self, ToolRun};
use crate::Arch;

/// The source series: trixie's kernel, the suite of the root filesystem.
pub const SOURCE_SERIES: &str = "6.12";
const SOURCE_SUITE: &str = crate::rootfs::ROOTFS_SUITE;
const KERNEL_FILE: &str = "vmlinuz";

/// What was built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltKernel {
    pub arch: Arch,
    /// The kernel image QEMU boots (`bzImage` / arm64 `Image`).
    pub kernel: PathBuf,
    /// The `.config` it was built with.
    pub config: PathBuf,
    /// `linux-source-<series>` version it was built from.
    pub source_version: String,
    /// Whether it came from the cache.
    pub cached: bool,
}

fn make_target(arch: Arch) -> (&'static str, &'static str, &'static str) {
    // (ARCH=, make target, output below arch/<dir>/boot/)
    match arch {
        Arch::X86_64 => ("x86_64", "bzImage", "arch/x86/boot/bzImage"),
        Arch::Aarch64 => ("arm64", "Image", "arch/arm64/boot/Image"),
    }
}

/// `CROSS_COMPILE=` for `arch` on this host (empty for a native build).
fn cross_prefix(arch: Arch) -> &'static str {
    match (Arch::host(), arch) {
        (Some(h), a) if h == a => "",
        (_, Arch::Aarch64) => "aarch64-linux-gnu-",
        (_, Arch::X86_64) => "x86_64-linux-gnu-",
    }
}

/// The host tools a kernel build needs, with the Debian package to install for each.
fn required_tools(arch: Arch) -> Vec<(String, &'static str)> {
    let gcc = format!("{}gcc", cross_prefix(arch));
    let gcc_package = match cross_prefix(arch) {
        "" => "gcc",
        "aarch64-linux-gnu-" => "gcc-aarch64-linux-gnu",
        _ => "gcc-x86-64-linux-gnu",
    };
    vec![
        ("make".into(), "make"),
        (gcc, gcc_package),
        ("flex".into(), "flex"),
        ("bison".into(), "bison"),
        ("bc".into(), "bc"),
        ("tar".into(), "tar"),
        ("xz".into(), "xz-utils"),
        ("zstd".into(), "zstd"),
        ("perl".into(), "perl"),
    ]
}

fn check_tools(arch: Arch) -> Result<()> {
    let missing: Vec<String> = required_tools(arch)
        .into_iter()
        .filter(|(t, _)| tool::find(t).is_none())
        .map(|(t, p)| format!("{t} ({p})"))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(BuildError::Package {
        what: format!("building the {arch} guest kernel"),
        detail: format!(
            "missing host tools: {}. Try: apt-get install the packages named in brackets, and libelf-dev",
            missing.join(", ")
        ),
    })
}

/// Builds (or finds in the cache) the built-in-drivers kernel for `arch`. `jobs` is make's `-j`.
pub fn build_kernel(
    arch: Arch,
    cache_dir: &Path,
    jobs: usize,
    progress: &mut dyn FnMut(Progress),
) -> Result<BuiltKernel> {
    check_tools(arch)?;
    let host = Arch::host().unwrap_or(Arch::X86_64);
    let package = format!("linux-source-{SOURCE_SERIES}");
    progress(Progress::new(
        Stage::Kernel,
        format!("looking up {package} ({SOURCE_SUITE})…"),
    ));
    // An `Architecture: all` package: the host's own apt setup finds it.
    let deb = crate::package_file::fetch_deb(host, cache_dir, SOURCE_SUITE, &package)?;
    let source_version = crate::packages::parse_deb_file_name(
        &deb.file_name().unwrap_or_default().to_string_lossy(),
    )
    .map(|(_, v)| v)
    .unwrap_or_default();
    let fragment = crate::kernel_config::fragment(arch);
    let gcc = format!("{}gcc", cross_prefix(arch));
    let compiler = compiler_version(&gcc)?;
    let k = key(&[
        ("component", "builtin-kernel"),
        ("arch", arch.name()),
        ("source", &package),
        ("source_version", &source_version),
        ("source_sha256", &cache::sha256_file(&deb)?),
        ("fragment", &fragment),
        ("compiler", &compiler),
    ]);
    let kernels = cache_dir.join("kernels").join(arch.name());
    let dir = part_dir(&kernels, "builtin", &k);
    if dir.join(KERNEL_FILE).is_file() {
        progress(Progress::new(
            Stage::Kernel,
            format!("cached {}", dir.display()),
        ));
        return Ok(BuiltKernel {
            arch,
            kernel: dir.join(KERNEL_FILE),
            config: dir.join("config"),
            source_version,
            cached: true,
        });
    }
    std::fs::create_dir_all(&kernels).map_err(BuildError::io("creating", &kernels))?;
    let started = Instant::now();
    let staging = Staging::new(&dir)?;
    let work = staging.tmp.join("work");
    let src = work.join("src");
    let out = work.join("out");
    for d in [&src, &out] {
        std::fs::create_dir_all(d).map_err(BuildError::io("creating", d))?;
    }
    let log = staging.tmp.join("build.log");

    progress(Progress::new(
        Stage::Kernel,
        format!("unpacking {package} {source_version}…"),
    ));
    let tar_path = work.join("source.tar.xz");
    crate::package_file::extract_file(&deb, &format!("usr/src/{package}.tar.xz"), &tar_path)?;
    let mut untar = Command::new("tar");
    untar
        .arg("-xJf")
        .arg(&tar_path)
        .arg("-C")
        .arg(&src)
        .arg("--strip-components=1");
    ToolRun {
        what: "unpacking the kernel source",
        hint: "check free space in the cache directory (the source takes ~1.5 GB while building)",
        log: &log,
    }
    .run(&mut untar, &mut |_| {})?;
    let _ = std::fs::remove_file(&tar_path);

    let (karch, target, image) = make_target(arch);
    let make = |args: &[&str]| {
        let mut cmd = Command::new("nice");
        cmd.args(["-n", "19", "make", "-s"])
            .arg("-C")
            .arg(&src)
            .arg(format!("O={}", out.display()))
            .arg(format!("ARCH={karch}"))
            .arg(format!("CROSS_COMPILE={}", cross_prefix(arch)))
            // Reproducible: no build host, user or time in the kernel's version string.
            .env("KBUILD_BUILD_HOST", "vcontainer")
            .env("KBUILD_BUILD_USER", "vcontainer")
            .env("KBUILD_BUILD_TIMESTAMP", "1970-01-01")
            .env("LC_ALL", "C")
            .args(args);
        cmd
    };
    let run = |what: &'static str, args: &[&str]| -> Result<()> {
        ToolRun {
            what,
            hint: "the log has make's full output",
            log: &log,
        }
        .run(&mut make(args), &mut |_| {})
    };
    progress(Progress::new(
        Stage::Kernel,
        "configuring (allnoconfig + the guest's fragment)…",
    ));
    run("configuring the kernel (allnoconfig)", &["allnoconfig"])?;
    let config = out.join(".config");
    let base = std::fs::read_to_string(&config).map_err(BuildError::io("reading", &config))?;
    std::fs::write(&config, format!("{base}\n{fragment}"))
        .map_err(BuildError::io("writing", &config))?;
    run("configuring the kernel (olddefconfig)", &["olddefconfig"])?;
    let finished = std::fs::read_to_string(&config).map_err(BuildError::io("reading", &config))?;
    let dropped = crate::kernel_config::missing(&fragment, &finished);
    if !dropped.is_empty() {
        return Err(BuildError::Package {
            what: format!("configuring the {arch} kernel"),
            detail: format!(
                "olddefconfig dropped {} (a dependency is off in this kernel version)",
                dropped.join(", ")
            ),
        });
    }
    progress(Progress::new(
        Stage::Kernel,
        format!("compiling {target} with {jobs} jobs (about 15 min per arch on 2 cores)…"),
    ));
    run("compiling the kernel", &[&format!("-j{jobs}"), target])?;
    let built = out.join(image);
    std::fs::copy(&built, staging.tmp.join(KERNEL_FILE))
        .map_err(BuildError::io("copying the kernel", &built))?;
    std::fs::copy(&config, staging.tmp.join("config"))
        .map_err(BuildError::io("copying the config", &config))?;
    cache::remove_tree(&work)?;
    let dir = staging.publish()?;
    progress(Progress::new(
        Stage::Kernel,
        format!("built in {:.0} s", started.elapsed().as_secs_f64()),
    ));
    Ok(BuiltKernel {
        arch,
        kernel: dir.join(KERNEL_FILE),
        config: dir.join("config"),
        source_version,
        cached: false,
    })
}

/// `gcc --version`'s first line: a new compiler makes a new kernel.
fn compiler_version(gcc: &str) -> Result<String> {
    let path = tool::require(gcc, "building the guest kernel")?;
    let log = std::env::temp_dir().join("vcontainer-gcc-version.log");
    let out = ToolRun {
        what: "asking the compiler its version",
        hint: "",
        log: &log,
    }
    .output(Command::new(path).arg("--version"))?;
    Ok(out.lines().next().unwrap_or_default().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_and_cross_compilers() {
        assert_eq!(make_target(Arch::Aarch64).1, "Image");
        assert_eq!(make_target(Arch::X86_64).2, "arch/x86/boot/bzImage");
        if Arch::host() == Some(Arch::X86_64) {
            assert_eq!(cross_prefix(Arch::X86_64), "");
            assert_eq!(cross_prefix(Arch::Aarch64), "aarch64-linux-gnu-");
            let tools = required_tools(Arch::Aarch64);
            assert!(tools
                .iter()
                .any(|(t, p)| t == "aarch64-linux-gnu-gcc" && *p == "gcc-aarch64-linux-gnu"));
        }
    }
}
