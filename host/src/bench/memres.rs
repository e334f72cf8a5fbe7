//! The CLI issue's figures: memory-resident mode against cold one-shot commands, measured through
//! the real `vdkr`/`vpdmn` binaries (fresh `HOME` per tool and arch), plus the host's own overhead
//! and the keystroke echo of a terminal session, measured in-process against the resident VM.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use vcontainer_initramfs::Arch;
use vcontainer_protocol::{ExecRequest, WindowSize};

use crate::guest::boot_image::ImageChoice;
use crate::guest::resident::Resident;
use crate::ops;
use crate::state::{StateDir, StateLocation, Tool};

/// One figure sample: (figure name, seconds or other unit).
pub type Sample = (String, f64);

/// Runs the memres-vs-one-shot sequence for `tool` on `arch`; `layout` is a small OCI layout.
pub async fn measure(
    tool: Tool,
    arch: Arch,
    layout: &Path,
    work: &Path,
    runs: usize,
    image: &ImageChoice,
) -> Result<Vec<Sample>> {
    let bin = std::env::current_exe()?
        .parent()
        .map(|d| d.join(tool.name()))
        .context("locating the CLI binaries")?;
    let home = tempfile::tempdir_in(work)?;
    let cli = |args: &[&str]| -> Result<f64> {
        let t = Instant::now();
        let out = Command::new(&bin)
            .arg("-a")
            .arg(arch.name())
            .args(args)
            .env("HOME", home.path())
            .envs(image.cli_env())
            .stdin(Stdio::null())
            .output()?;
        anyhow::ensure!(
            out.status.success(),
            "{} {}: {}",
            tool.name(),
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(t.elapsed().as_secs_f64())
    };
    let n = tool.name();
    let layout_arg = layout.to_string_lossy().into_owned();
    let mut s: Vec<Sample> = Vec::new();

    // Cold one-shot: a VM per command (persistent state, so the image is there for run).
    cli(&["vimport", &layout_arg, "bench:1"])?;
    for _ in 0..runs {
        s.push((format!("one-shot `{n} images`"), cli(&["images"])?));
        s.push((
            format!("one-shot `{n} run --rm IMAGE true`"),
            cli(&["run", "--rm", "bench:1", "true"])?,
        ));
    }

    s.push((format!("`{n} memres start`"), cli(&["memres", "start"])?));
    // The first command after start warms the guest's page cache; it is not a figure.
    cli(&["images"])?;
    for _ in 0..runs.max(5) {
        s.push((format!("memres `{n} images`"), cli(&["images"])?));
    }
    for _ in 0..runs {
        s.push((
            format!("memres `{n} run --rm IMAGE true`"),
            cli(&["run", "--rm", "bench:1", "true"])?,
        ));
    }
    for _ in 0..runs.max(5) {
        s.push((
            "CLI alone (`memres status`)".into(),
            cli(&["memres", "status"])?,
        ));
    }

    let state = StateDir::resolve(
        tool,
        &tool.default_base(home.path()),
        &StateLocation::Default(arch),
    )?;
    let resident = Resident::find(&state)?.context("the resident VM is not running")?;
    for _ in 0..20 {
        let t = Instant::now();
        ops::status(resident.transport()).await?;
        s.push((
            "host→agent round trip (Status op)".into(),
            t.elapsed().as_secs_f64(),
        ));
    }
    for latency in keystroke_echo(&resident, 20).await? {
        s.push(("keystroke echo (vshell, raw tty)".into(), latency));
    }

    s.push((format!("`{n} memres stop`"), cli(&["memres", "stop"])?));
    Ok(s)
}

/// The same Status round trip against the agent running natively on the host over a unix socket:
/// what the host side (CLI library, framing, transport) costs without the emulated guest.
pub async fn host_side_round_trip(
    work: &Path,
    reporter: &crate::util::progress::Reporter,
) -> Result<Vec<f64>> {
    let Some(host) = Arch::host() else {
        return Ok(Vec::new());
    };
    let agent = crate::guest::agent_binary::agent_binary(host, reporter)?;
    let dir = tempfile::tempdir_in(work)?;
    let sock = dir.path().join("agent.sock");
    let mut child = tokio::process::Command::new(&agent)
        .arg("serve")
        .arg("--listen-unix")
        .arg(&sock)
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .kill_on_drop(true)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", agent.display()))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !sock.exists() {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the host-mode agent did not listen"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let transport = crate::transport::UnixTransport::new(&sock);
    let mut samples = Vec::new();
    for _ in 0..50 {
        let t = Instant::now();
        ops::status(&transport).await?;
        samples.push(t.elapsed().as_secs_f64());
    }
    let _ = child.kill().await;
    Ok(samples)
}

/// Opens a shell on a guest pty, types one character at a time and times each echo.
async fn keystroke_echo(resident: &Resident, keys: usize) -> Result<Vec<f64>> {
    let (mut keyboard, input) = tokio::io::duplex(64);
    let (output, mut screen) = tokio::io::duplex(64 * 1024);
    let req = ExecRequest {
        argv: vec!["/bin/sh".into()],
        ..Default::default()
    };
    let io = ops::TtyIo {
        input: Box::new(input),
        output: Box::new(output),
        size: WindowSize { rows: 24, cols: 80 },
        resizes: None,
        signals: None,
    };
    let session = ops::exec_interactive(resident.transport(), req, io);
    let typing = async move {
        let mut buf = [0u8; 4096];
        // Wait for the prompt, then type.
        tokio::time::timeout(Duration::from_secs(30), screen.read(&mut buf)).await??;
        tokio::time::sleep(Duration::from_millis(300)).await;
        while let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_millis(50), screen.read(&mut buf)).await
        {
            if n == 0 {
                break;
            }
        }
        let mut samples = Vec::new();
        for i in 0..keys {
            let key = b'a' + (i % 26) as u8;
            let t = Instant::now();
            keyboard.write_all(&[key]).await?;
            loop {
                let n =
                    tokio::time::timeout(Duration::from_secs(10), screen.read(&mut buf)).await??;
                anyhow::ensure!(n > 0, "the terminal closed");
                if buf[..n].contains(&key) {
                    break;
                }
            }
            samples.push(t.elapsed().as_secs_f64());
        }
        keyboard.write_all(b"\x15exit\r").await?;
        drop(keyboard);
        Ok::<_, anyhow::Error>(samples)
    };
    let (status, samples) = tokio::join!(session, typing);
    status.context("the terminal session")?;
    samples
}
