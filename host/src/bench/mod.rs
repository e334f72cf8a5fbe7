//! `vcontainer bench`: the foundation issue's figures, measured in one run and printed as a table
//! of medians, beside upstream vdkr's figures measured on the same machine kind
//! (shared/reference/upstream-baseline.md). Not a test: nothing here asserts a time.

pub mod batch;
pub mod fixture;
pub mod memres;
pub mod oci;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result};
use vcontainer_initramfs::Arch;

use crate::bench::fixture::{busybox_for, write_busybox_layout, write_layout_with_files};
use crate::guest::agent_binary::agent_binary;
use crate::guest::boot_image::{cache_dir, ensure_image, ImageChoice};
use crate::guest::instance::{Instance, InstanceConfig, StateChoice};
use crate::ops;
use crate::state::Tool;
use crate::util::progress::Reporter;

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Target architectures (default: x86_64 and aarch64).
    #[arg(short = 'a', long)]
    pub arch: Vec<String>,
    /// Runs per figure; the median is reported.
    #[arg(short = 'n', long, default_value_t = 3)]
    pub runs: usize,
    /// Size of the random file in the image used for the transfer figures, in MiB.
    #[arg(long, default_value_t = 64)]
    pub payload_mib: usize,
    /// Skip the one-shot CLI timings (vdkr images, vimport --storage).
    #[arg(long)]
    pub no_oneshot: bool,
    /// Skip the boot/transfer figures of the foundation issue.
    #[arg(long)]
    pub no_transfer: bool,
    /// Skip the memory-resident vs one-shot command figures.
    #[arg(long)]
    pub no_memres: bool,
    /// Also measure batch import of 10 images in one boot vs 10 one-shot `vdkr vimport` runs.
    #[arg(long)]
    pub batch: bool,
    /// Measure the prebuilt guest image in DIR/ARCH/ instead of the cached one
    /// (default: $VCONTAINER_BLOB_DIR).
    #[arg(long, value_name = "DIR")]
    pub blob_dir: Option<PathBuf>,
}

/// The image the bench boots, in process and in the CLI runs it times.
fn image_choice(args: &BenchArgs) -> ImageChoice {
    ImageChoice {
        blob_dir: args.blob_dir.clone().or_else(|| {
            std::env::var_os("VCONTAINER_BLOB_DIR")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        }),
        offline: crate::guest::boot_image::offline_from_env(),
    }
}

/// Samples per (figure, arch).
#[derive(Default)]
struct Figures {
    samples: BTreeMap<(String, Arch), Vec<f64>>,
}

impl Figures {
    fn add(&mut self, figure: &str, arch: Arch, value: f64) {
        self.samples
            .entry((figure.to_string(), arch))
            .or_default()
            .push(value);
    }

    fn median(&self, figure: &str, arch: Arch) -> Option<(f64, f64, f64)> {
        let mut v = self.samples.get(&(figure.to_string(), arch))?.clone();
        if v.is_empty() {
            return None;
        }
        v.sort_by(|a, b| a.total_cmp(b));
        Some((v[v.len() / 2], v[0], v[v.len() - 1]))
    }
}

/// Figure name, unit, format precision, goal text, upstream text per arch.
const ROWS: &[(&str, &str, usize, &str, &str, &str)] = &[
    (
        "boot to agent ready (docker guest)",
        "s",
        2,
        "aarch64 ≤ 4, x86_64 ≤ 6",
        "13.7 + 2.7 to init",
        "8.3 + 2.6 to init",
    ),
    ("boot to agent ready (podman guest)", "s", 2, "", "", ""),
    (
        "dockerd ready after agent ready",
        "s",
        2,
        "≤ 10",
        "24.1 (+6.4 containerd)",
        "39.3 (+7.9 containerd)",
    ),
    ("podman ready after agent ready", "s", 2, "", "", ""),
    (
        "storage export (docker)",
        "MB/s",
        1,
        "≥ 90% of raw",
        "0.11 (console)",
        "0.11 (console)",
    ),
    ("storage export (podman)", "MB/s", 1, "≥ 90% of raw", "", ""),
    ("raw vsock guest→host, same VM", "MB/s", 1, "", "", ""),
    ("export / raw", "%", 0, "≥ 90", "", ""),
    ("engine stop before export (docker)", "s", 2, "", "", ""),
    ("agent peak RSS", "MiB", 1, "", "", ""),
    ("agent binary size", "MB", 2, "≤ 3", "", ""),
    (
        "cold one-shot `vdkr images`",
        "s",
        1,
        "x86_64 ≤ 15",
        "58.7",
        "72.0",
    ),
    (
        "one-shot `vdkr vimport … --storage`",
        "s",
        1,
        "x86_64 ≤ 20",
        "102.8",
        "126.2",
    ),
    ("host CLI peak RSS (one-shot)", "MiB", 1, "", "", ""),
    ("`vdkr memres start`", "s", 1, "≤ 15", "53.3", "~72"),
    ("`vpdmn memres start`", "s", 1, "≤ 15", "", ""),
    ("memres `vdkr images`", "s", 2, "≤ 0.3", "1.19", "2.12"),
    ("one-shot `vdkr images`", "s", 1, "", "58.7", "72.0"),
    ("memres `vpdmn images`", "s", 2, "≤ 0.3", "", ""),
    ("one-shot `vpdmn images`", "s", 1, "", "", ""),
    ("memres `vdkr run --rm IMAGE true`", "s", 1, "", "", ""),
    ("one-shot `vdkr run --rm IMAGE true`", "s", 1, "", "", ""),
    ("memres `vpdmn run --rm IMAGE true`", "s", 1, "", "", ""),
    ("one-shot `vpdmn run --rm IMAGE true`", "s", 1, "", "", ""),
    ("CLI alone (`memres status`)", "ms", 0, "", "", ""),
    ("host→agent round trip (Status op)", "ms", 1, "", "", ""),
    (
        "host side of a trivial op (agent on the host)",
        "ms",
        2,
        "≤ 10",
        "",
        "",
    ),
    ("keystroke echo (vshell, raw tty)", "ms", 0, "", "", ""),
    ("`vdkr memres stop`", "s", 2, "≤ 2", "8.1", "8.1"),
    ("`vpdmn memres stop`", "s", 2, "≤ 2", "", ""),
    (crate::bench::batch::BATCH_TOTAL, "s", 1, "", "", ""),
    (crate::bench::batch::BATCH_BOOT, "s", 1, "", "", ""),
    (crate::bench::batch::BATCH_ENGINE, "s", 1, "", "", ""),
    (crate::bench::batch::BATCH_IMPORTS, "s", 1, "", "", ""),
    (crate::bench::batch::BATCH_EXPORT, "s", 1, "", "", ""),
    (crate::bench::batch::ONESHOT_TOTAL, "s", 1, "", "", ""),
    (crate::bench::batch::RATIO, "x", 1, "", "", ""),
];

pub async fn run(args: BenchArgs, reporter: &Reporter) -> Result<()> {
    let choice = image_choice(&args);
    let arches: Vec<Arch> = if args.arch.is_empty() {
        vec![Arch::X86_64, Arch::Aarch64]
    } else {
        args.arch
            .iter()
            .map(|a| a.parse())
            .collect::<Result<_, _>>()?
    };
    let runs = args.runs.max(1);
    let mut f = Figures::default();
    let quiet = Reporter::new("bench", false, true);
    let work = tempfile::Builder::new()
        .prefix("vcontainer-bench-")
        .tempdir()?;
    let payload = crate::bench::fixture::pseudo_random(args.payload_mib * 1024 * 1024);

    for &arch in &arches {
        let agent = agent_binary(arch, reporter)?;
        f.add(
            "agent binary size",
            arch,
            std::fs::metadata(&agent)?.len() as f64 / 1e6,
        );
        let image = ensure_image(arch, &choice, reporter).await?;
        let busybox = busybox_for(arch, &cache_dir()?)?;
        let small = work.path().join(format!("small-{arch}"));
        write_busybox_layout(&small, arch.oci(), &busybox, "1.0")?;
        let big = work.path().join(format!("big-{arch}"));
        write_layout_with_files(
            &big,
            arch.oci(),
            &busybox,
            "1.0",
            &[("payload.bin", &payload)],
        )?;

        for tool in [Tool::Vdkr, Tool::Vpdmn] {
            for i in 1..=runs {
                if args.no_transfer {
                    break;
                }
                reporter.notice(format!("{arch} {}: instance run {i}/{runs}", tool.engine()));
                instance_run(arch, tool, &image, &big, work.path(), &quiet, &mut f).await?;
            }
            if !args.no_memres {
                reporter.notice(format!("{arch} {}: memres vs one-shot", tool.engine()));
                for (name, value) in
                    crate::bench::memres::measure(tool, arch, &small, work.path(), runs, &choice)
                        .await?
                {
                    let ms = ROWS.iter().any(|r| r.0 == name && r.1 == "ms");
                    f.add(&name, arch, if ms { value * 1000.0 } else { value });
                }
            }
        }
        for i in (1..=runs).filter(|_| args.batch) {
            reporter.notice(format!("{arch}: batch vs one-shot run {i}/{runs}"));
            for (name, v) in
                crate::bench::batch::measure(arch, &busybox, work.path(), &choice, reporter).await?
            {
                f.add(&name, arch, v);
            }
        }
        if !args.no_oneshot {
            for i in 1..=runs {
                reporter.notice(format!("{arch}: one-shot run {i}/{runs}"));
                oneshot_run(arch, &small, work.path(), &choice, &mut f)?;
            }
        }
    }
    // Cheap (no VM): always measured, in the host's column.
    if let Some(host) = Arch::host().filter(|h| arches.contains(h)) {
        for v in crate::bench::memres::host_side_round_trip(work.path(), reporter).await? {
            f.add(
                "host side of a trivial op (agent on the host)",
                host,
                v * 1000.0,
            );
        }
    }
    print_table(&f, &arches, runs);
    Ok(())
}

async fn instance_run(
    arch: Arch,
    tool: Tool,
    image: &crate::guest::boot_image::BootImage,
    layout: &Path,
    work: &Path,
    quiet: &Reporter,
    f: &mut Figures,
) -> Result<()> {
    let engine = tool.engine();
    let config = InstanceConfig {
        tool,
        arch,
        state: StateChoice::Stateless,
        input_storage: None,
        no_kvm: false,
        guest: Default::default(),
    };
    let t0 = Instant::now();
    let inst = Instance::boot(&config, image, quiet).await?;
    let boot = inst.boot_time().as_secs_f64();
    f.add(&format!("boot to agent ready ({engine} guest)"), arch, boot);
    let engine_label = if tool == Tool::Vdkr {
        "dockerd"
    } else {
        "podman"
    };
    f.add(
        &format!("{engine_label} ready after agent ready"),
        arch,
        t0.elapsed().as_secs_f64() - boot,
    );

    let (mut out, mut err) = (Vec::new(), Vec::new());
    let status = ops::import_oci(
        inst.transport(),
        layout,
        "bench:1",
        &mut out,
        &mut err,
        &mut |_| {},
    )
    .await
    .context("bench import")?;
    anyhow::ensure!(
        status.shell_code() == 0,
        "bench import failed: {}",
        String::from_utf8_lossy(&err)
    );

    // Transfer rate from the first byte to the verified end; the engine stop before the first
    // byte is a figure of its own.
    let dest = work.join(format!("export-{arch}-{engine}.tar"));
    let start = Instant::now();
    let mut first: Option<Instant> = None;
    let bytes = ops::export_storage(inst.transport(), &dest, &mut |_| {
        first.get_or_insert_with(Instant::now);
    })
    .await?;
    let end = Instant::now();
    let first = first.unwrap_or(start);
    let export_rate = bytes as f64 / 1e6 / (end - first).as_secs_f64().max(1e-6);
    f.add(&format!("storage export ({engine})"), arch, export_rate);
    if tool == Tool::Vdkr {
        f.add(
            "engine stop before export (docker)",
            arch,
            (first - start).as_secs_f64(),
        );
    }
    std::fs::remove_file(&dest).ok();

    let raw_dest = work.join(format!("raw-{arch}-{engine}.bin"));
    let start = Instant::now();
    let mut first: Option<Instant> = None;
    let conn_bytes = bytes.max(1);
    let raw = ops::raw_source_with_progress(inst.transport(), conn_bytes, &raw_dest, &mut |_| {
        first.get_or_insert_with(Instant::now);
    })
    .await?;
    let raw_rate = raw as f64
        / 1e6
        / (Instant::now() - first.unwrap_or(start))
            .as_secs_f64()
            .max(1e-6);
    std::fs::remove_file(&raw_dest).ok();
    f.add("raw vsock guest→host, same VM", arch, raw_rate);
    f.add("export / raw", arch, 100.0 * export_rate / raw_rate);

    let status = ops::status(inst.transport()).await?;
    f.add(
        "agent peak RSS",
        arch,
        status.agent_max_rss_kib as f64 / 1024.0,
    );
    inst.shutdown(quiet).await?;
    Ok(())
}

fn oneshot_run(
    arch: Arch,
    layout: &Path,
    work: &Path,
    choice: &ImageChoice,
    f: &mut Figures,
) -> Result<()> {
    let vdkr = std::env::current_exe()?
        .parent()
        .map(|d| d.join("vdkr"))
        .context("locating vdkr")?;
    // A fresh HOME per run: cold, with a new state disk, like upstream's measurement.
    let home = tempfile::tempdir_in(work)?;
    let storage = home.path().join("out.tar");
    let layout_arg = layout.to_string_lossy().into_owned();
    let storage_arg = storage.to_string_lossy().into_owned();
    for (figure, argv) in [
        (
            "cold one-shot `vdkr images`",
            vec!["-v", "-a", arch.name(), "images"],
        ),
        (
            "one-shot `vdkr vimport … --storage`",
            vec![
                "-v",
                "-a",
                arch.name(),
                "vimport",
                &layout_arg,
                "bb:1",
                "--storage",
                &storage_arg,
            ],
        ),
    ] {
        let t = Instant::now();
        let out = Command::new(&vdkr)
            .args(&argv)
            .env("HOME", home.path())
            .envs(choice.cli_env())
            .stdin(Stdio::null())
            .output()?;
        let secs = t.elapsed().as_secs_f64();
        anyhow::ensure!(
            out.status.success(),
            "{figure} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        f.add(figure, arch, secs);
        if let Some(kib) = String::from_utf8_lossy(&out.stderr)
            .lines()
            .find_map(|l| l.split("host peak RSS ").nth(1))
            .and_then(|r| r.trim_end_matches(" KiB").trim().parse::<f64>().ok())
        {
            f.add("host CLI peak RSS (one-shot)", arch, kib / 1024.0);
        }
    }
    Ok(())
}

fn print_table(f: &Figures, arches: &[Arch], runs: usize) {
    println!(
        "\nvcontainer bench — medians of {runs} run(s) [min–max]; TCG unless KVM was usable\n"
    );
    let mut header = format!("| {:<40} |", "figure");
    for a in arches {
        header.push_str(&format!(" {:<22} |", a.name()));
    }
    header.push_str(&format!(
        " {:<24} | {:<24} | {:<24} |",
        "goal", "upstream x86_64", "upstream aarch64"
    ));
    println!("{header}");
    println!(
        "{}",
        header
            .chars()
            .map(|c| if c == '|' { '|' } else { '-' })
            .collect::<String>()
    );
    for (name, unit, prec, goal, up_x86, up_arm) in ROWS {
        if arches.iter().all(|a| f.median(name, *a).is_none()) {
            continue;
        }
        let mut line = format!("| {:<40} |", format!("{name} ({unit})"));
        for a in arches {
            let cell = match f.median(name, *a) {
                Some((m, lo, hi)) if (hi - lo).abs() > f64::EPSILON => {
                    format!("{m:.p$} [{lo:.p$}–{hi:.p$}]", p = *prec)
                }
                Some((m, _, _)) => format!("{m:.p$}", p = *prec),
                None => "–".into(),
            };
            line.push_str(&format!(" {cell:<22} |"));
        }
        line.push_str(&format!(" {goal:<24} | {up_x86:<24} | {up_arm:<24} |"));
        println!("{line}");
    }
}
