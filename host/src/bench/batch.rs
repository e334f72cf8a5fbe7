//! `vcontainer bench --batch`: batch import of N small images in one boot (docker) against N
//! separate one-shot `vdkr vimport` runs into one persistent state (the last with `--storage`),
//! which is what a build without batch import would do. Both end with one storage tar holding
//! the N images.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result};
use vcontainer_initramfs::Arch;

use crate::bench::fixture::write_layout_with_files;
use crate::bundling::batch::{batch_import, BatchImage, BatchRequest, EngineBatch};
use crate::guest::boot_image::ImageChoice;
use crate::util::progress::Reporter;

/// Images per measurement.
pub const IMAGES: usize = 10;

/// Row names (bench.rs lists them in its table).
pub const BATCH_TOTAL: &str = "batch import of 10 images, one boot (docker)";
pub const BATCH_BOOT: &str = "  batch: boot";
pub const BATCH_ENGINE: &str = "  batch: engine start";
pub const BATCH_IMPORTS: &str = "  batch: 10 imports";
pub const BATCH_EXPORT: &str = "  batch: export";
pub const ONESHOT_TOTAL: &str = "10 one-shot `vdkr vimport` runs";
pub const RATIO: &str = "one-shot runs / batch";

/// One measurement of both ways; returns (row, value) pairs (seconds, or a plain ratio).
pub async fn measure(
    arch: Arch,
    busybox: &Path,
    work: &Path,
    guest_image: &ImageChoice,
    reporter: &Reporter,
) -> Result<Vec<(String, f64)>> {
    let dir = tempfile::tempdir_in(work)?;
    let mut images = Vec::new();
    for i in 0..IMAGES {
        let root = dir.path().join(format!("img{i}-oci"));
        let id = format!("image {i}\n");
        write_layout_with_files(&root, arch.oci(), busybox, "1.0", &[("id", id.as_bytes())])?;
        images.push(BatchImage {
            source: root,
            reference: format!("bench{i}:1"),
        });
    }

    let req = BatchRequest {
        arch,
        docker: Some(EngineBatch {
            images: images.clone(),
            output: dir.path().join("batch.tar"),
            input_storage: None,
            storage_driver: None,
        }),
        podman: None,
        no_kvm: false,
        image: guest_image.clone(),
    };
    let quiet = Reporter::new("bench", false, true);
    reporter.notice(format!("{arch}: batch import of {IMAGES} images"));
    let report = batch_import(&req, &quiet).await?;
    let docker = report
        .docker
        .context("the batch report has no docker part")?;

    reporter.notice(format!("{arch}: {IMAGES} one-shot vdkr vimport runs"));
    let vdkr = std::env::current_exe()?
        .parent()
        .map(|d| d.join("vdkr"))
        .context("locating vdkr")?;
    let home = tempfile::tempdir_in(work)?;
    let storage = dir.path().join("oneshot.tar");
    let t = Instant::now();
    for (i, image) in images.iter().enumerate() {
        let mut argv: Vec<String> = vec![
            "-a".into(),
            arch.name().into(),
            "vimport".into(),
            image.source.to_string_lossy().into_owned(),
            image.reference.clone(),
        ];
        if i + 1 == images.len() {
            argv.extend(["--storage".into(), storage.to_string_lossy().into_owned()]);
        }
        let out = Command::new(&vdkr)
            .args(&argv)
            .env("HOME", home.path())
            .envs(guest_image.cli_env())
            .stdin(Stdio::null())
            .output()?;
        anyhow::ensure!(
            out.status.success(),
            "one-shot vimport {i} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let oneshot = t.elapsed().as_secs_f64();
    anyhow::ensure!(storage.is_file(), "the last one-shot run wrote no storage");

    Ok(vec![
        (BATCH_TOTAL.into(), docker.total_secs),
        (BATCH_BOOT.into(), docker.boot_secs),
        (BATCH_ENGINE.into(), docker.engine_start_secs),
        (BATCH_IMPORTS.into(), docker.imports_secs),
        (BATCH_EXPORT.into(), docker.export_secs),
        (ONESHOT_TOTAL.into(), oneshot),
        (RATIO.into(), oneshot / docker.total_secs.max(1e-6)),
    ])
}
