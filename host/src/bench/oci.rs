//! `vcontainer oci bench`: the OCI builder's figures on a ~200 MB Debian rootfs (aarch64 trixie
//! packages with their dpkg database): one layer vs three, a rebuild with every layer a cache
//! hit, and umoci on the same input in the same run — both the way upstream's image-oci-umoci.inc
//! drives it (init, new, unpack, `cp -a` the rootfs in, repack) and umoci's fastest path
//! (`umoci insert` of the rootfs directory). Medians of `runs`; prints a table.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use vcontainer_initramfs::Arch;

use crate::guest::boot_image::cache_dir;
use crate::util::progress::Reporter;
use vcontainer_oci as oci;
use vcontainer_oci::image_config::ImageSettings;
use vcontainer_oci::layer_spec::parse_layers;
use vcontainer_oci::{BuildRequest, Compression, OwnerPolicy};

/// The rootfs's packages: ~195 MB unpacked.
pub const PACKAGES: &[&str] = &[
    "libc6",
    "libtinfo6",
    "base-files",
    "bash",
    "coreutils",
    "libssl3t64",
    "openssl",
    "tar",
    "grep",
    "sed",
    "gzip",
    "containerd",
    "runc",
    "docker-cli",
];

/// Three layers: the base system, the engine, and the rest (docker-cli, the dpkg database).
pub const LAYERS: &str =
    "base:packages:libc6+libtinfo6+base-files+bash+coreutils+libssl3t64+openssl+tar+grep+sed+gzip \
                          engine:packages:containerd+runc";

#[derive(Debug, clap::Args)]
pub struct OciBenchArgs {
    /// Runs per figure; the median is reported.
    #[arg(short = 'n', long, default_value_t = 3)]
    pub runs: usize,
    /// Use this rootfs instead of building the Debian one (layer figures then need its packages).
    #[arg(long, value_name = "DIR")]
    pub rootfs: Option<PathBuf>,
}

fn median(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

fn du(path: &Path) -> u64 {
    walk_size(path).unwrap_or(0)
}

fn walk_size(path: &Path) -> std::io::Result<u64> {
    let md = std::fs::symlink_metadata(path)?;
    if !md.is_dir() {
        return Ok(if md.is_file() { md.len() } else { 0 });
    }
    let mut total = 0;
    for e in std::fs::read_dir(path)? {
        total += walk_size(&e?.path())?;
    }
    Ok(total)
}

fn request(rootfs: &Path, out: &Path, layers: &str, cache: Option<&Path>) -> Result<BuildRequest> {
    Ok(BuildRequest {
        rootfs: rootfs.to_path_buf(),
        output: out.to_path_buf(),
        archive: None,
        tag: "bench".into(),
        arch: "arm64".into(),
        variant: None,
        os: "linux".into(),
        layers: parse_layers(layers)?,
        base: None,
        settings: ImageSettings::default(),
        cache_dir: cache.map(Path::to_path_buf),
        compression: Compression::Gzip(6),
        owner: OwnerPolicy::Root,
        source_date_epoch: Some(1_700_000_000),
    })
}

/// Seconds and layer-blob bytes of one build.
fn ours(req: &BuildRequest) -> Result<(f64, u64)> {
    let _ = std::fs::remove_dir_all(&req.output);
    let t = Instant::now();
    let report = oci::build(req, &mut |_| {})?;
    let secs = t.elapsed().as_secs_f64();
    Ok((secs, report.layers.iter().map(|l| l.size).sum()))
}

fn run(cmd: &mut Command) -> Result<()> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?}: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

/// `umoci init` + `umoci new` of an empty image at `layout`; the image reference.
fn umoci_new(layout: &Path) -> Result<String> {
    let image = format!("{}:bench", layout.display());
    run(Command::new("umoci").args(["init", "--layout"]).arg(layout))?;
    run(Command::new("umoci").args(["new", "--image", &image]))?;
    Ok(image)
}

/// umoci as upstream drives it; seconds and the layer blob's size.
fn umoci_upstream(rootfs: &Path, work: &Path) -> Result<(f64, u64)> {
    let layout = work.join("umoci-layout");
    let bundle = work.join("umoci-bundle");
    let _ = std::fs::remove_dir_all(&layout);
    let _ = std::fs::remove_dir_all(&bundle);
    let before = Instant::now();
    let image = umoci_new(&layout)?;
    run(Command::new("umoci")
        .args(["unpack", "--rootless", "--image", &image])
        .arg(&bundle))?;
    // cp -a --no-preserve=ownership rootfs/. bundle/rootfs (upstream copies `rootfs/*`).
    run(Command::new("cp")
        .args(["-a", "--no-preserve=ownership"])
        .arg(rootfs.join("."))
        .arg(bundle.join("rootfs")))?;
    run(Command::new("umoci")
        .args(["repack", "--image", &image])
        .arg(&bundle))?;
    let secs = before.elapsed().as_secs_f64();
    Ok((secs, largest_blob(&layout)?))
}

/// `umoci insert` of the rootfs directory as one layer (umoci's fastest way to the same layer).
fn umoci_insert(rootfs: &Path, work: &Path) -> Result<(f64, u64)> {
    let layout = work.join("umoci-insert");
    let _ = std::fs::remove_dir_all(&layout);
    let before = Instant::now();
    let image = umoci_new(&layout)?;
    run(Command::new("umoci")
        .args(["insert", "--rootless", "--image", &image])
        .arg(rootfs)
        .arg("/"))?;
    let secs = before.elapsed().as_secs_f64();
    Ok((secs, largest_blob(&layout)?))
}

fn largest_blob(layout: &Path) -> Result<u64> {
    let mut max = 0;
    for e in std::fs::read_dir(layout.join("blobs/sha256"))? {
        max = max.max(e?.metadata()?.len());
    }
    Ok(max)
}

pub async fn run_bench(args: OciBenchArgs, reporter: &Reporter) -> Result<()> {
    let runs = args.runs.max(1);
    let work = tempfile::Builder::new()
        .prefix("vcontainer-oci-bench-")
        .tempdir()?;
    let rootfs = match &args.rootfs {
        Some(r) => r.clone(),
        None => {
            let r = work.path().join("rootfs");
            reporter.notice(format!(
                "building a Debian rootfs (aarch64, trixie, {} packages)",
                PACKAGES.len()
            ));
            let cache = cache_dir()?;
            let (r2, pk) = (r.clone(), PACKAGES);
            tokio::task::spawn_blocking(move || {
                crate::bench::fixture::debian_rootfs(Arch::Aarch64, &cache, "trixie", pk, &r2)
            })
            .await??;
            r
        }
    };
    let input_mb = du(&rootfs) as f64 / 1e6;
    let w = work.path().to_path_buf();
    let r = rootfs.clone();
    let rep = reporter.clone();
    let rows = tokio::task::spawn_blocking(move || -> Result<Vec<(String, Vec<f64>, u64)>> {
        let single = request(&r, &w.join("single"), "", None)?;
        let multi = request(&r, &w.join("multi"), LAYERS, None)?;
        let cached = request(&r, &w.join("cached"), LAYERS, Some(&w.join("cache")))?;
        // Fill the cache once; the figure is the rebuild.
        oci::build(&cached, &mut |_| {})?;
        let mut rows: Vec<(String, Vec<f64>, u64)> = vec![
            ("vcontainer: 1 layer".into(), vec![], 0),
            ("vcontainer: 3 layers".into(), vec![], 0),
            (
                "vcontainer: 3 layers, rebuild, all cache hits".into(),
                vec![],
                0,
            ),
            (
                "umoci, upstream flow (unpack, cp -a, repack)".into(),
                vec![],
                0,
            ),
            ("umoci insert (1 layer)".into(), vec![], 0),
        ];
        for i in 0..runs {
            rep.notice(format!("run {}/{runs}", i + 1));
            // Alternate the order so neither side always gets the warmer page cache.
            let mut measures: Vec<(usize, (f64, u64))> = Vec::new();
            if i % 2 == 0 {
                measures.push((3, umoci_upstream(&r, &w)?));
                measures.push((4, umoci_insert(&r, &w)?));
                measures.push((0, ours(&single)?));
            } else {
                measures.push((0, ours(&single)?));
                measures.push((4, umoci_insert(&r, &w)?));
                measures.push((3, umoci_upstream(&r, &w)?));
            }
            measures.push((1, ours(&multi)?));
            measures.push((2, ours(&cached)?));
            for (row, (secs, size)) in measures {
                rows[row].1.push(secs);
                rows[row].2 = size;
            }
        }
        Ok(rows)
    })
    .await??;

    println!(
        "OCI builder, {input_mb:.0} MB rootfs (aarch64), gzip level 6, {} core(s), {runs} run(s)",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!(
        "{:<48} {:>9} {:>9} {:>9} {:>10}",
        "figure", "median s", "min", "max", "layers MB"
    );
    for (name, v, size) in &rows {
        let (m, lo, hi) = median(v.clone());
        println!(
            "{name:<48} {m:>9.2} {lo:>9.2} {hi:>9.2} {:>10.1}",
            *size as f64 / 1e6
        );
    }
    let ours1 = median(rows[0].1.clone()).0;
    let up = median(rows[3].1.clone()).0;
    let ins = median(rows[4].1.clone()).0;
    println!(
        "{:<48} {:>9.2}",
        "ratio 1 layer: vcontainer / umoci upstream flow",
        ours1 / up
    );
    println!(
        "{:<48} {:>9.2}",
        "ratio 1 layer: vcontainer / umoci insert",
        ours1 / ins
    );
    Ok(())
}
