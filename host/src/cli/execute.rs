//! Carrying out a planned command on a guest: engine commands with their host files, terminals
//! and volumes, `vimport`, `vshell`, and the storage export that `--storage` asks for.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use vcontainer_protocol::{ExecRequest, ExitStatus};

use super::engine_cmd::EnginePlan;
use super::run_options::StdIo;
use crate::ops::{self, ExecIo};
use crate::transport::Transport;
use crate::util::progress::Reporter;

/// What to do in the guest.
pub enum Action {
    Engine(EnginePlan),
    Vimport { source: PathBuf, reference: String },
    Vshell,
}

/// Runs `action`, then exports the storage to `storage` if asked (only after success).
pub async fn execute(
    transport: &dyn Transport,
    engine_cli: &str,
    action: &Action,
    storage: Option<&Path>,
    reporter: &Reporter,
) -> Result<i32> {
    let code = match action {
        Action::Engine(plan) => engine(transport, plan, reporter).await?,
        Action::Vimport { source, reference } => {
            vimport(transport, engine_cli, source, reference, reporter).await?
        }
        Action::Vshell => {
            let req = ExecRequest {
                argv: vec!["/bin/sh".into(), "-l".into()],
                env: vec![("HOME".into(), "/root".into())],
                cwd: Some("/root".into()),
                ..Default::default()
            };
            if std::io::stdin().is_terminal() {
                reporter.notice("shell in the VM (type 'exit' to return)");
                terminal(transport, req).await?
            } else {
                exec_with(transport, req, StdIo::Stdin).await?
            }
        }
    };
    after(transport, code, storage, reporter).await
}

/// After the command: the storage export `--storage` asked for (only after success).
pub async fn after(
    transport: &dyn Transport,
    code: i32,
    storage: Option<&Path>,
    reporter: &Reporter,
) -> Result<i32> {
    if let Some(out) = storage {
        if code != 0 {
            bail!(
                "not writing {}: the command failed with exit code {code}",
                out.display()
            );
        }
        export_storage(transport, out, reporter).await?;
    }
    Ok(code)
}

async fn export_storage(transport: &dyn Transport, out: &Path, reporter: &Reporter) -> Result<()> {
    let bar = reporter.bytes_bar("exporting storage", None);
    let bytes = ops::export_storage(transport, out, &mut |n| bar.set_position(n))
        .await
        .with_context(|| format!("exporting the engine storage to {}", out.display()));
    bar.finish_and_clear();
    let bytes = bytes?;
    reporter.notice(format!(
        "storage written to {} ({:.1} MB)",
        out.display(),
        bytes as f64 / 1e6
    ));
    Ok(())
}

fn engine_req(argv: &[String]) -> ExecRequest {
    ExecRequest {
        argv: argv.to_vec(),
        engine: true,
        ..Default::default()
    }
}

/// Runs `req` with the CLI's stdout/stderr, and its stdin if `io` says so.
async fn exec_with(transport: &dyn Transport, req: ExecRequest, io: StdIo) -> Result<i32> {
    match io {
        StdIo::Tty => terminal(transport, req).await,
        StdIo::Stdin => exec_stdin(transport, req, Box::new(tokio::io::stdin())).await,
        StdIo::Output => {
            let mut stdout = tokio::io::stdout();
            let mut stderr = tokio::io::stderr();
            let status = ops::exec(
                transport,
                req,
                ExecIo {
                    stdout: &mut stdout,
                    stderr: &mut stderr,
                    stdin: None,
                    signals: None,
                },
            )
            .await
            .context("running the command in the guest")?;
            Ok(status.shell_code())
        }
    }
}

async fn exec_stdin(
    transport: &dyn Transport,
    req: ExecRequest,
    stdin: Box<dyn tokio::io::AsyncRead + Unpin + Send>,
) -> Result<i32> {
    let mut stdout = tokio::io::stdout();
    let mut stderr = tokio::io::stderr();
    let status = ops::exec(
        transport,
        req,
        ExecIo {
            stdout: &mut stdout,
            stderr: &mut stderr,
            stdin: Some(stdin),
            signals: None,
        },
    )
    .await
    .context("running the command in the guest")?;
    Ok(status.shell_code())
}

/// A terminal session: the host terminal in raw mode, window size and resizes forwarded.
async fn terminal(transport: &dyn Transport, req: ExecRequest) -> Result<i32> {
    let status: ExitStatus = ops::exec_on_terminal(transport, req)
        .await
        .context("running the terminal session in the guest")?;
    Ok(status.shell_code())
}

async fn engine(transport: &dyn Transport, plan: &EnginePlan, reporter: &Reporter) -> Result<i32> {
    match plan {
        EnginePlan::Plain { argv, io } => exec_with(transport, engine_req(argv), *io).await,
        EnginePlan::PullQualified { pull, tag } => {
            let code = exec_with(transport, engine_req(pull), StdIo::Output).await?;
            if code != 0 {
                return Ok(code);
            }
            exec_with(transport, engine_req(tag), StdIo::Output).await
        }
        EnginePlan::Load { file, argv } | EnginePlan::Import { file, argv } => {
            let f = open_input(file, matches!(plan, EnginePlan::Import { .. }))?;
            exec_stdin(transport, engine_req(argv), Box::new(f)).await
        }
        EnginePlan::Save { output, argv } => save(transport, output, argv, reporter).await,
        EnginePlan::CopyIn { host, argv } => {
            let mut stderr = tokio::io::stderr();
            let status = ops::copy_in(transport, host, argv.clone(), &mut stderr)
                .await
                .with_context(|| format!("copying {} into the container", host.display()))?;
            Ok(status.shell_code())
        }
        EnginePlan::CopyOut { host, argv } => {
            let mut stderr = tokio::io::stderr();
            let status = ops::copy_out(transport, host, argv.clone(), &mut stderr)
                .await
                .with_context(|| format!("copying from the container to {}", host.display()))?;
            if status.shell_code() == 0 {
                reporter.notice(format!("Copied to {}", host.display()));
            }
            Ok(status.shell_code())
        }
        EnginePlan::Run {
            argv, volumes, io, ..
        } => {
            if volumes.is_empty() {
                return exec_with(transport, engine_req(argv), *io).await;
            }
            let staged = crate::engine::volumes::stage(transport, volumes)
                .await
                .context("staging the volumes in the guest")?;
            let mut full = argv[..2].to_vec();
            full.extend(staged.engine_args());
            full.extend(argv[2..].iter().cloned());
            let detached = is_detached(&argv[2..]);
            // The command's failure must not lose the volume changes (upstream did, §9.8): sync
            // back first, then report.
            let outcome = exec_with(transport, engine_req(&full), *io).await;
            if detached && matches!(outcome, Ok(0)) {
                reporter.notice(staged.leave());
                return outcome;
            }
            let synced = staged
                .sync_back(transport)
                .await
                .context("copying the volume contents back to the host");
            let code = outcome?;
            for note in synced?.notes {
                reporter.notice(note);
            }
            Ok(code)
        }
    }
}

/// `-d`/`--detach` among the options before the image.
fn is_detached(args: &[String]) -> bool {
    let Ok(run) = super::run_options::split_run_args(args) else {
        return false;
    };
    let opts = &run.args[..run.image_index.unwrap_or(run.args.len())];
    opts.iter().any(|a| {
        a == "--detach"
            || a == "--detach=true"
            || (a.starts_with('-') && !a.starts_with("--") && a[1..].contains('d'))
    })
}

fn open_input(file: &Path, import: bool) -> Result<tokio::fs::File> {
    let meta =
        std::fs::metadata(file).with_context(|| format!("File not found: {}", file.display()))?;
    if meta.is_dir() {
        if import {
            bail!(
                "import only accepts tarballs, not directories: {}\nUse vimport for a directory (OCI layout or root filesystem)",
                file.display()
            );
        }
        bail!("{} is a directory, not an image tar", file.display());
    }
    let f = std::fs::File::open(file).with_context(|| format!("cannot read {}", file.display()))?;
    Ok(tokio::fs::File::from_std(f))
}

/// `save -o FILE`: the engine's stdout into a temporary file next to FILE, renamed into place
/// only when the engine succeeded.
async fn save(
    transport: &dyn Transport,
    output: &Path,
    argv: &[String],
    reporter: &Reporter,
) -> Result<i32> {
    super::check_output(output)?;
    let dir = match output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let tmp = tempfile::Builder::new()
        .prefix(".vcontainer-save-")
        .tempfile_in(&dir)
        .with_context(|| format!("cannot create a file in {}", dir.display()))?;
    let mut file = tokio::fs::File::from_std(
        tmp.reopen()
            .with_context(|| format!("cannot write in {}", dir.display()))?,
    );
    let mut stderr = tokio::io::stderr();
    let status = ops::exec(
        transport,
        engine_req(argv),
        ExecIo {
            stdout: &mut file,
            stderr: &mut stderr,
            stdin: None,
            signals: None,
        },
    )
    .await
    .context("running the engine's save in the guest")?;
    tokio::io::AsyncWriteExt::flush(&mut file).await?;
    file.sync_all().await?;
    let code = status.shell_code();
    if code != 0 {
        bail!(
            "save failed (exit {code}); {} was not written",
            output.display()
        );
    }
    let size = file.metadata().await.map(|m| m.len()).unwrap_or(0);
    tmp.persist(output)
        .with_context(|| format!("cannot write {}", output.display()))?;
    reporter.notice(format!(
        "Saved to {} ({:.1} MB)",
        output.display(),
        size as f64 / 1e6
    ));
    Ok(0)
}

async fn vimport(
    transport: &dyn Transport,
    engine_cli: &str,
    source: &Path,
    reference: &str,
    reporter: &Reporter,
) -> Result<i32> {
    let detected = crate::engine::import_source::detect(source)
        .with_context(|| format!("cannot import {}", source.display()))?;
    let mut stdout = tokio::io::stdout();
    let mut stderr = tokio::io::stderr();
    let bar = reporter.bytes_bar(&format!("sending {}", source.display()), None);
    let status = crate::engine::import_source::vimport(
        transport,
        engine_cli,
        &detected,
        reference,
        &mut stdout,
        &mut stderr,
        &mut |n| bar.set_position(n),
    )
    .await;
    bar.finish_and_clear();
    let status = status.with_context(|| format!("importing {}", source.display()))?;
    if status.shell_code() != 0 {
        bail!(
            "the guest engine failed to import {} as {reference} ({})",
            source.display(),
            describe_status(status)
        );
    }
    reporter.step(format!("imported {} as {reference}", source.display()));
    Ok(0)
}

/// "exit 1", or "killed by signal 9 (SIGKILL)": a process killed in the guest (the OOM killer,
/// someone's `kill`) is told apart from one that failed.
fn describe_status(status: ExitStatus) -> String {
    match status {
        ExitStatus::Code(c) => format!("exit {c}"),
        ExitStatus::Signal(s) => match nix::sys::signal::Signal::try_from(s) {
            Ok(sig) => format!("killed by signal {s} ({})", sig.as_str()),
            Err(_) => format!("killed by signal {s}"),
        },
    }
}

/// The directory `path` would be created in must exist, and `path` must not be a directory.
pub fn check_output(path: &Path) -> Result<()> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if !parent.is_dir() {
        bail!(
            "cannot write {}: directory {} does not exist",
            path.display(),
            parent.display()
        );
    }
    if path.is_dir() {
        bail!("cannot write {}: it is a directory", path.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_killed_importer_is_told_apart_from_a_failed_one() {
        assert_eq!(describe_status(ExitStatus::Code(125)), "exit 125");
        assert_eq!(
            describe_status(ExitStatus::Signal(9)),
            "killed by signal 9 (SIGKILL)"
        );
        assert_eq!(
            describe_status(ExitStatus::Signal(99)),
            "killed by signal 99"
        );
    }

    #[test]
    fn detached_only_before_the_image() {
        let w = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert!(is_detached(&w(&["-d", "img"])));
        assert!(is_detached(&w(&["--rm", "-dit", "img", "sh"])));
        assert!(is_detached(&w(&["--detach", "img"])));
        assert!(!is_detached(&w(&["img", "-d"])));
        assert!(!is_detached(&w(&["--rm", "img"])));
    }
}
