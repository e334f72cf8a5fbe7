//! Batch import: one VM boot per engine imports N images and exports one storage tar.
//!
//! Replaces upstream's `vrunner.sh --batch-import`, with these differences (upstream §2.6, W1,
//! W13, W21): entries are `PATH=NAME[:TAG]` (split on the first `=`, so registry ports and `:` in
//! paths work); every input is checked before anything boots (missing or broken layouts, platform
//! missing from a multi-arch image, bad references, output directories); multi-arch layouts
//! (flat or nested index) are reduced to the target platform while streaming, without a copy;
//! any failed import fails the whole run, names the image and quotes the engine, and then no
//! output tar is written at all (outputs are renamed into place only after every engine
//! succeeded). Docker and podman run in two VMs at the same time.

use std::collections::HashSet;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Instant;

use vcontainer_initramfs::Arch;

use crate::engine::import_source::{detect, unpack_oci_archive, ImportSource};
use crate::guest::boot_image::{ensure_image, BootImage, ImageChoice, ImageError};
use crate::guest::instance::{Instance, InstanceConfig, InstanceError, StateChoice};
use crate::guest::options::GuestOptions;
use crate::ops::oci_import::{import_selected, target_platform};
use crate::ops::{self, OpError};
use crate::state::Tool;
use crate::util::progress::Reporter;
use vcontainer_oci::platform::{select_platform, PlatformSelection};
use vcontainer_protocol::StorageDriver;

/// One image to import: an OCI layout directory or OCI archive tar, and its reference.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BatchImage {
    pub source: PathBuf,
    pub reference: String,
}

/// What one engine's VM does.
#[derive(Debug, Clone)]
pub struct EngineBatch {
    pub images: Vec<BatchImage>,
    /// The storage tar to write (renamed into place only when the whole request succeeded).
    pub output: PathBuf,
    /// A storage tar to seed the engine with first; the images are added to it.
    pub input_storage: Option<PathBuf>,
    /// The engine's storage driver; `None`: the seed's, else the engine's default.
    pub storage_driver: Option<StorageDriver>,
}

#[derive(Debug, Clone)]
pub struct BatchRequest {
    pub arch: Arch,
    pub docker: Option<EngineBatch>,
    pub podman: Option<EngineBatch>,
    pub no_kvm: bool,
    /// The guest image both engines' VMs boot.
    pub image: ImageChoice,
}

/// Time of one import.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ImportTiming {
    pub source: PathBuf,
    pub reference: String,
    /// `linux/arm64/v8`-style platform imported; `None` if the image names none.
    pub platform: Option<String>,
    /// Bytes sent to the guest.
    pub bytes: u64,
    pub secs: f64,
}

/// One engine's outcome and time split.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EngineReport {
    /// `docker` or `podman`.
    pub engine: &'static str,
    pub output: PathBuf,
    pub output_bytes: u64,
    /// QEMU start to the agent's dial-in.
    pub boot_secs: f64,
    /// Agent up to engine ready (includes seeding the input storage).
    pub engine_start_secs: f64,
    pub imports: Vec<ImportTiming>,
    /// Sum of the imports.
    pub imports_secs: f64,
    /// Engine stop and storage transfer, until the tar is verified.
    pub export_secs: f64,
    pub shutdown_secs: f64,
    pub total_secs: f64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct BatchReport {
    pub arch: &'static str,
    pub docker: Option<EngineReport>,
    pub podman: Option<EngineReport>,
    /// Wall time of the request (engines run concurrently).
    pub total_secs: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    /// The request itself is wrong (syntax, missing outputs, duplicates).
    #[error("{0}")]
    Invalid(String),
    /// An input image cannot be used (checked before anything boots).
    #[error("image {} ({reference}): {reason}", .path.display())]
    Input {
        path: PathBuf,
        reference: String,
        reason: String,
    },
    #[error(transparent)]
    BootImage(#[from] ImageError),
    #[error("{engine} batch import failed: booting the VM: {error}")]
    Boot {
        engine: &'static str,
        error: Box<InstanceError>,
    },
    /// The engine refused an image; nothing was written.
    #[error("{engine} batch import failed: importing {} as {reference} failed (exit {code}); no output was written. {engine} said:\n{}", .path.display(), quote(.stderr))]
    ImportFailed {
        engine: &'static str,
        path: PathBuf,
        reference: String,
        code: i32,
        stderr: String,
    },
    #[error("{engine} batch import failed: {what}: {error}")]
    Op {
        engine: &'static str,
        what: String,
        error: Box<OpError>,
    },
    #[error("cannot write {}: {error}", .path.display())]
    Output { path: PathBuf, error: io::Error },
}

fn quote(text: &str) -> String {
    let lines: Vec<String> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| format!("    | {l}"))
        .collect();
    if lines.is_empty() {
        "    | (nothing on stderr)".into()
    } else {
        lines.join("\n")
    }
}

/// `PATH=NAME[:TAG]`, split at the first `=`; a missing tag is `latest`.
pub fn parse_entry(entry: &str) -> Result<BatchImage, BatchError> {
    let bad = |why: &str| {
        BatchError::Invalid(format!(
            "invalid batch entry {entry:?}: {why} (expected PATH=NAME:TAG)"
        ))
    };
    let (path, reference) = entry.split_once('=').ok_or_else(|| bad("no '='"))?;
    if path.is_empty() {
        return Err(bad("empty path"));
    }
    let reference = normalize_reference(reference).map_err(|why| bad(&why))?;
    Ok(BatchImage {
        source: PathBuf::from(path),
        reference,
    })
}

/// Checks an image reference (`[host[:port]/]path[:tag]`) and adds `:latest` if it has no tag.
pub fn normalize_reference(r: &str) -> Result<String, String> {
    if r.is_empty() {
        return Err("empty image name".into());
    }
    if r.starts_with('-') || r.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("invalid image name {r:?}"));
    }
    if r.contains('@') {
        return Err(format!(
            "{r:?}: a digest cannot be an import target; give NAME:TAG"
        ));
    }
    let (name, tag) = match r.rfind(':') {
        Some(i) if !r[i..].contains('/') => (&r[..i], Some(&r[i + 1..])),
        _ => (r, None),
    };
    if let Some(t) = tag {
        let ok = !t.is_empty()
            && t.len() <= 128
            && !t.starts_with(['.', '-'])
            && t.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        if !ok {
            return Err(format!("invalid tag {t:?}"));
        }
    }
    let parts: Vec<&str> = name.split('/').collect();
    let first_is_host = parts.len() > 1
        && (parts[0].contains('.') || parts[0].contains(':') || parts[0] == "localhost");
    for (i, p) in parts.iter().enumerate() {
        let ok = if i == 0 && first_is_host {
            let (host, port) = p.split_once(':').unwrap_or((p, ""));
            !host.is_empty()
                && host
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-'))
                && port.chars().all(|c| c.is_ascii_digit())
                && (port.is_empty() != p.contains(':'))
        } else {
            p.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
                && p.chars().all(|c| {
                    c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-')
                })
        };
        if !ok {
            return Err(format!(
                "invalid image name {name:?} (repository names are lowercase)"
            ));
        }
    }
    Ok(match tag {
        Some(_) => r.to_string(),
        None => format!("{r}:latest"),
    })
}

/// An image ready to send: its platform chosen, an archive unpacked.
struct PreparedImage {
    image: BatchImage,
    selection: PlatformSelection,
    _unpacked: Option<tempfile::TempDir>,
}

struct PreparedEngine {
    tool: Tool,
    batch: EngineBatch,
    images: Vec<PreparedImage>,
}

fn output_key(path: &Path) -> PathBuf {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let parent = parent
        .canonicalize()
        .unwrap_or_else(|_| parent.to_path_buf());
    parent.join(path.file_name().unwrap_or_default())
}

/// Everything that can be checked before a VM boots.
fn prepare(req: &BatchRequest) -> Result<Vec<PreparedEngine>, BatchError> {
    let engines: Vec<(Tool, &EngineBatch)> =
        [(Tool::Vdkr, &req.docker), (Tool::Vpdmn, &req.podman)]
            .into_iter()
            .filter_map(|(t, b)| b.as_ref().map(|b| (t, b)))
            .collect();
    if engines.is_empty() {
        return Err(BatchError::Invalid(
            "nothing to import: give --docker and/or --podman images".into(),
        ));
    }
    let mut outputs = HashSet::new();
    for (tool, batch) in &engines {
        let engine = tool.engine();
        if batch.images.is_empty() {
            return Err(BatchError::Invalid(format!("{engine}: no images")));
        }
        let out = &batch.output;
        let parent = match out.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        if !parent.is_dir() {
            return Err(BatchError::Invalid(format!(
                "cannot write {}: directory {} does not exist",
                out.display(),
                parent.display()
            )));
        }
        if out.is_dir() || out.file_name().is_none() {
            return Err(BatchError::Invalid(format!(
                "cannot write {}: it is a directory",
                out.display()
            )));
        }
        if !outputs.insert(output_key(out)) {
            return Err(BatchError::Invalid(format!(
                "{} is given as the output of both engines",
                out.display()
            )));
        }
        if let Some(input) = &batch.input_storage {
            if !input.is_file() {
                return Err(BatchError::Invalid(format!(
                    "--{engine}-input-storage {}: no such file",
                    input.display()
                )));
            }
        }
        let mut refs = HashSet::new();
        for image in &batch.images {
            if !refs.insert(image.reference.as_str()) {
                return Err(BatchError::Invalid(format!(
                    "{engine}: {} is imported twice",
                    image.reference
                )));
            }
        }
    }
    let mut prepared = Vec::new();
    for (tool, batch) in engines {
        let mut images = Vec::new();
        for image in &batch.images {
            images.push(prepare_image(image, req.arch)?);
        }
        prepared.push(PreparedEngine {
            tool,
            batch: batch.clone(),
            images,
        });
    }
    Ok(prepared)
}

fn prepare_image(image: &BatchImage, arch: Arch) -> Result<PreparedImage, BatchError> {
    let input_err = |reason: String| BatchError::Input {
        path: image.source.clone(),
        reference: image.reference.clone(),
        reason,
    };
    let (root, unpacked) = match detect(&image.source).map_err(|e| input_err(e.to_string()))? {
        ImportSource::OciLayout(dir) => (dir, None),
        ImportSource::OciArchive(file) => {
            let tmp = tempfile::Builder::new()
                .prefix("vcontainer-batch-oci-")
                .tempdir()
                .map_err(|e| input_err(format!("creating a temporary directory: {e}")))?;
            unpack_oci_archive(&file, tmp.path()).map_err(|e| input_err(e.to_string()))?;
            (tmp.path().to_path_buf(), Some(tmp))
        }
        other => {
            return Err(input_err(format!(
                "is a {}, not an OCI image layout directory or OCI archive",
                other.kind()
            )))
        }
    };
    let selection =
        select_platform(&root, &target_platform(arch)).map_err(|e| input_err(e.to_string()))?;
    Ok(PreparedImage {
        image: image.clone(),
        selection,
        _unpacked: unpacked,
    })
}

/// An engine's storage tar, exported next to its output but not yet renamed into place.
struct Staged {
    report: EngineReport,
    temp: tempfile::TempPath,
}

async fn run_engine(
    engine: &PreparedEngine,
    arch: Arch,
    no_kvm: bool,
    image: &BootImage,
    reporter: &Reporter,
) -> Result<Staged, BatchError> {
    let name = engine.tool.engine();
    let started = Instant::now();
    let config = InstanceConfig {
        tool: engine.tool,
        arch,
        state: StateChoice::Stateless,
        input_storage: engine.batch.input_storage.clone(),
        no_kvm,
        guest: GuestOptions {
            network: false,
            storage_driver: engine.batch.storage_driver,
            ..GuestOptions::default()
        },
    };
    if let Some(input) = &engine.batch.input_storage {
        reporter.step(format!(
            "{name}: seeding with {} (additive merge)",
            input.display()
        ));
    }
    let inst = Instance::boot(&config, image, reporter)
        .await
        .map_err(|error| BatchError::Boot {
            engine: name,
            error: Box::new(error),
        })?;
    let boot_secs = inst.boot_time().as_secs_f64();
    let engine_start_secs = started.elapsed().as_secs_f64() - boot_secs;

    let mut imports = Vec::new();
    for (i, p) in engine.images.iter().enumerate() {
        for w in &p.selection.warnings {
            reporter.notice(format!("warning: {w}"));
        }
        if let Some(n) = p.selection.note() {
            reporter.step(n);
        }
        reporter.step(format!(
            "{name}: importing {} as {} ({}/{})",
            p.image.source.display(),
            p.image.reference,
            i + 1,
            engine.images.len()
        ));
        let t = Instant::now();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let mut bytes = 0u64;
        let status = import_selected(
            inst.transport(),
            &p.selection,
            &p.image.reference,
            &mut out,
            &mut err,
            &mut |n| bytes = n,
        )
        .await
        .map_err(|error| BatchError::Op {
            engine: name,
            what: format!(
                "importing {} as {}",
                p.image.source.display(),
                p.image.reference
            ),
            error: Box::new(error),
        })?;
        if !out.is_empty() {
            reporter.debug(String::from_utf8_lossy(&out).trim_end());
        }
        if status.shell_code() != 0 {
            // The VM is killed when `inst` drops; nothing is exported.
            return Err(BatchError::ImportFailed {
                engine: name,
                path: p.image.source.clone(),
                reference: p.image.reference.clone(),
                code: status.shell_code(),
                stderr: String::from_utf8_lossy(&err).into_owned(),
            });
        }
        imports.push(ImportTiming {
            source: p.image.source.clone(),
            reference: p.image.reference.clone(),
            platform: p.selection.platform.clone(),
            bytes,
            secs: t.elapsed().as_secs_f64(),
        });
    }

    let out = &engine.batch.output;
    let out_err = |error| BatchError::Output {
        path: out.clone(),
        error,
    };
    let dir = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let temp = tempfile::Builder::new()
        .prefix(&format!(
            ".{}.batch-",
            out.file_name().unwrap_or_default().to_string_lossy()
        ))
        .tempfile_in(dir)
        .map_err(out_err)?
        .into_temp_path();
    reporter.step(format!("{name}: exporting the storage"));
    let t = Instant::now();
    let output_bytes = ops::export_storage(inst.transport(), &temp, &mut |_| {})
        .await
        .map_err(|error| BatchError::Op {
            engine: name,
            what: "exporting the storage".into(),
            error: Box::new(error),
        })?;
    let export_secs = t.elapsed().as_secs_f64();
    let t = Instant::now();
    if let Err(e) = inst.shutdown(reporter).await {
        // The storage is already verified; a slow power-off does not spoil it.
        reporter.notice(format!("warning: {name} VM shutdown: {e}"));
    }
    let imports_secs = imports.iter().map(|i| i.secs).sum();
    Ok(Staged {
        report: EngineReport {
            engine: name,
            output: out.clone(),
            output_bytes,
            boot_secs,
            engine_start_secs,
            imports,
            imports_secs,
            export_secs,
            shutdown_secs: t.elapsed().as_secs_f64(),
            total_secs: started.elapsed().as_secs_f64(),
        },
        temp,
    })
}

/// Imports every image of `req` (one VM per engine, both at once) and writes one storage tar
/// per engine. All inputs are checked before anything boots; if any import fails, no output is
/// written and the error names the image and quotes the engine.
pub async fn batch_import(
    req: &BatchRequest,
    reporter: &Reporter,
) -> Result<BatchReport, BatchError> {
    let started = Instant::now();
    let prepared = prepare(req)?;
    let image = ensure_image(req.arch, &req.image, reporter).await?;
    let find = |tool: Tool| prepared.iter().find(|p| p.tool == tool);
    let run = |tool: Tool| {
        let engine = find(tool);
        let image = &image;
        async move {
            match engine {
                Some(e) => run_engine(e, req.arch, req.no_kvm, image, reporter)
                    .await
                    .map(Some),
                None => Ok(None),
            }
        }
    };
    // The first failure drops the other engine's run (its VM is killed, its export discarded).
    let (docker, podman) = tokio::try_join!(run(Tool::Vdkr), run(Tool::Vpdmn))?;
    let mut reports = Vec::new();
    for staged in [docker, podman] {
        match staged {
            Some(s) => {
                let path = s.report.output.clone();
                s.temp.persist(&path).map_err(|e| BatchError::Output {
                    path,
                    error: e.error,
                })?;
                reports.push(Some(s.report));
            }
            None => reports.push(None),
        }
    }
    let podman = reports.pop().flatten();
    let docker = reports.pop().flatten();
    Ok(BatchReport {
        arch: req.arch.name(),
        docker,
        podman,
        total_secs: started.elapsed().as_secs_f64(),
    })
}

/// The time split as text (what `batch-import` prints without `--json`).
pub fn format_report(r: &BatchReport) -> String {
    let mut s = String::new();
    for e in [&r.docker, &r.podman].into_iter().flatten() {
        s.push_str(&format!(
            "{}: {} image(s) into {} ({:.1} MB) in {:.1} s: boot {:.1} s, engine start {:.1} s, imports {:.1} s, export {:.1} s, shutdown {:.1} s\n",
            e.engine,
            e.imports.len(),
            e.output.display(),
            e.output_bytes as f64 / 1e6,
            e.total_secs,
            e.boot_secs,
            e.engine_start_secs,
            e.imports_secs,
            e.export_secs,
            e.shutdown_secs
        ));
        for i in &e.imports {
            s.push_str(&format!(
                "  {} <- {} [{}] {:.1} MB in {:.1} s\n",
                i.reference,
                i.source.display(),
                i.platform.as_deref().unwrap_or("platform unknown"),
                i.bytes as f64 / 1e6,
                i.secs
            ));
        }
    }
    s.push_str(&format!("total {:.1} s ({})\n", r.total_secs, r.arch));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_split_at_the_first_equals() {
        let e = parse_entry("/x/app-oci=registry.local:5000/team/app:1.0").expect("entry");
        assert_eq!(e.source, PathBuf::from("/x/app-oci"));
        assert_eq!(e.reference, "registry.local:5000/team/app:1.0");
        let e = parse_entry("/a:b/c=d/app").expect("colon in path");
        assert_eq!(e.source, PathBuf::from("/a:b/c"));
        assert_eq!(e.reference, "d/app:latest");
        let e = parse_entry("x=localhost:5000/app").expect("port, no tag");
        assert_eq!(e.reference, "localhost:5000/app:latest");
        // Only the first '=' splits (a path cannot hold '=' then, a name never does).
        assert!(parse_entry("x=app=1").is_err());
    }

    #[test]
    fn bad_entries_are_refused() {
        for bad in [
            "no-equals",
            "=app:1",
            "x=",
            "x=App:1",
            "x=app:",
            "x=app:bad tag",
            "x=-app",
            "x=app@sha256:00",
            "x=host:port/app:1",
            "x=app:.x",
        ] {
            let err = parse_entry(bad).expect_err(bad).to_string();
            assert!(err.contains("invalid batch entry"), "{bad}: {err}");
        }
    }

    fn layout(dir: &Path, name: &str, oci_arch: &str) -> PathBuf {
        let bb = dir.join("busybox");
        std::fs::write(&bb, b"\x7fELF fake").expect("write");
        let root = dir.join(name);
        crate::bench::fixture::write_busybox_layout(&root, oci_arch, &bb, "1.0").expect("layout");
        root
    }

    fn engine(images: Vec<(PathBuf, &str)>, output: PathBuf) -> Option<EngineBatch> {
        Some(EngineBatch {
            images: images
                .into_iter()
                .map(|(source, r)| BatchImage {
                    source,
                    reference: r.into(),
                })
                .collect(),
            output,
            input_storage: None,
            storage_driver: None,
        })
    }

    /// Every check that must fail before a VM boots (prepare() boots nothing).
    #[test]
    fn inputs_are_checked_before_booting() {
        let d = tempfile::tempdir().expect("tempdir");
        let good = layout(d.path(), "good", "arm64");
        let out = d.path().join("out.tar");
        let req = |docker, podman| BatchRequest {
            arch: Arch::Aarch64,
            docker,
            podman,
            no_kvm: false,
            image: ImageChoice::default(),
        };
        let msg = |r: &BatchRequest| match prepare(r) {
            Ok(_) => String::new(),
            Err(e) => e.to_string(),
        };

        // OK
        let ok = req(engine(vec![(good.clone(), "a:1")], out.clone()), None);
        assert_eq!(msg(&ok), "");

        // missing dir
        let m = msg(&req(
            engine(vec![(d.path().join("nope"), "a:1")], out.clone()),
            None,
        ));
        assert!(m.contains("nope") && m.contains("a:1"), "{m}");

        // output dir missing
        let m = msg(&req(
            engine(vec![(good.clone(), "a:1")], d.path().join("no/out.tar")),
            None,
        ));
        assert!(m.contains("does not exist"), "{m}");

        // same output for both engines
        let m = msg(&req(
            engine(vec![(good.clone(), "a:1")], out.clone()),
            engine(
                vec![(good.clone(), "a:1")],
                d.path().join(".").join("out.tar"),
            ),
        ));
        assert!(m.contains("both engines"), "{m}");

        // same reference twice
        let m = msg(&req(
            engine(
                vec![(good.clone(), "a:1"), (good.clone(), "a:1")],
                out.clone(),
            ),
            None,
        ));
        assert!(m.contains("imported twice"), "{m}");

        // platform missing (an amd64-only image for aarch64)
        let amd = layout(d.path(), "amd", "amd64");
        let m = msg(&req(
            engine(vec![(amd.clone(), "amd:1")], out.clone()),
            None,
        ));
        assert!(
            m.contains("Architecture mismatch!") && m.contains("amd:1"),
            "{m}"
        );

        // a missing blob names the image
        let broken = layout(d.path(), "broken", "arm64");
        let biggest = std::fs::read_dir(broken.join("blobs/sha256"))
            .expect("ls")
            .map(|e| e.expect("entry").path())
            .max_by_key(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
            .expect("blob");
        std::fs::remove_file(&biggest).expect("rm");
        let m = msg(&req(
            engine(
                vec![(good.clone(), "a:1"), (broken.clone(), "broken:1")],
                out.clone(),
            ),
            None,
        ));
        assert!(
            m.contains("broken:1") && m.contains("missing") && m.contains("broken"),
            "{m}"
        );

        // not an OCI image
        let rootfs = d.path().join("rootfs");
        std::fs::create_dir_all(rootfs.join("bin")).expect("mkdir");
        let m = msg(&req(engine(vec![(rootfs, "r:1")], out.clone()), None));
        assert!(m.contains("not an OCI image layout"), "{m}");
        assert!(!out.exists());
    }

    #[test]
    fn an_oci_archive_is_unpacked_and_selected() {
        let d = tempfile::tempdir().expect("tempdir");
        let root = layout(d.path(), "app", "arm64");
        let tar_path = d.path().join("app.tar");
        let mut b = tar::Builder::new(std::fs::File::create(&tar_path).expect("create"));
        b.append_dir_all(".", &root).expect("tar");
        b.finish().expect("finish");
        drop(b);
        let p = prepare_image(
            &BatchImage {
                source: tar_path,
                reference: "app:1".into(),
            },
            Arch::Aarch64,
        )
        .expect("prepared");
        assert_eq!(p.selection.platform.as_deref(), Some("linux/arm64"));
        assert!(p._unpacked.is_some());
    }

    #[test]
    fn failures_quote_the_engine() {
        let e = BatchError::ImportFailed {
            engine: "podman",
            path: PathBuf::from("/x/bad-oci"),
            reference: "bad:1".into(),
            code: 125,
            stderr: "Error: writing blob: bad\n\nmore\n".into(),
        };
        let m = e.to_string();
        assert!(m.contains("/x/bad-oci as bad:1"), "{m}");
        assert!(
            m.contains("    | Error: writing blob: bad\n    | more"),
            "{m}"
        );
        assert!(m.contains("no output was written"), "{m}");
    }
}
