//! Manual smoke check of a booted guest through vhost-device-vsock's unix sockets (not a test:
//! the lead's host driver is the real client). Usage:
//!   vsock_smoke UDS_PATH
//! Listens on `UDS_PATH_1024` for the agent's control connection, answers Boot, waits for Ready,
//! then runs a few operations through `CONNECT 1025` and shuts the guest down.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use vcontainer_protocol::{
    read_frame_async, write_frame_async, AgentMsg, BootConfig, ExecRequest, HostMsg, Request,
    StreamDigest, CONTROL_PORT, OPERATION_PORT,
};

async fn recv(s: &mut UnixStream) -> Result<AgentMsg> {
    Ok(tokio::time::timeout(Duration::from_secs(120), read_frame_async(s)).await??)
}

async fn op(uds: &str, req: Request) -> Result<UnixStream> {
    let mut s = UnixStream::connect(uds).await?;
    s.write_all(format!("CONNECT {OPERATION_PORT}\n").as_bytes())
        .await?;
    let mut line = Vec::new();
    loop {
        let b = s.read_u8().await?;
        if b == b'\n' {
            break;
        }
        line.push(b);
    }
    if !line.starts_with(b"OK") {
        bail!("backend said {:?}", String::from_utf8_lossy(&line));
    }
    match recv(&mut s).await? {
        AgentMsg::Hello(_) => {}
        other => bail!("expected Hello, got {other:?}"),
    }
    write_frame_async(&mut s, &HostMsg::Request(req)).await?;
    Ok(s)
}

async fn exec(uds: &str, argv: &[&str]) -> Result<()> {
    let t0 = Instant::now();
    let mut s = op(
        uds,
        Request::Exec(ExecRequest {
            argv: argv.iter().map(|a| a.to_string()).collect(),
            ..Default::default()
        }),
    )
    .await?;
    loop {
        match recv(&mut s).await? {
            AgentMsg::Stdout(d) => print!("{}", String::from_utf8_lossy(&d)),
            AgentMsg::Stderr(d) => eprint!("{}", String::from_utf8_lossy(&d)),
            AgentMsg::Exited(st) => {
                println!("== {argv:?} -> {st:?} in {} ms", t0.elapsed().as_millis());
                return Ok(());
            }
            other => bail!("unexpected {other:?}"),
        }
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let uds = std::env::args()
        .nth(1)
        .context("usage: vsock_smoke UDS_PATH")?;
    let engine = std::env::args()
        .nth(2)
        .is_some_and(|a| a == "--start-engine");
    let control_path = format!("{uds}_{CONTROL_PORT}");
    let _ = std::fs::remove_file(&control_path);
    let listener = UnixListener::bind(&control_path)?;
    println!("waiting for the agent on {control_path}");
    let (mut control, _) = listener.accept().await?;
    let hello = recv(&mut control).await?;
    println!("control: {hello:?}");
    write_frame_async(
        &mut control,
        &HostMsg::Boot(BootConfig {
            seed_storage: false,
            start_engine: engine,
            ..Default::default()
        }),
    )
    .await?;
    println!("control: {:?}", recv(&mut control).await?);

    exec(&uds, &["uname", "-a"]).await?;
    exec(&uds, &["cat", "/proc/mounts"]).await?;
    exec(&uds, &["sh", "-c", "hostname; ls /mnt/state; cat /sys/fs/cgroup/cgroup.subtree_control; cat /sys/class/net/lo/operstate; ls -la /dev/ptmx /dev/fd; echo err >&2; exit 4"]).await?;
    exec(&uds, &["nonexistent"]).await.ok();
    if engine {
        exec(&uds, &["docker", "version"]).await?;
        exec(
            &uds,
            &[
                "docker",
                "info",
                "--format",
                "{{.Driver}} {{.CgroupDriver}} {{.CgroupVersion}}",
            ],
        )
        .await?;
        exec(&uds, &["sh", "-c", "ls -la /var/run; grep -v 'level=debug' /var/log/dockerd.log | head -40; grep -c . /var/log/dockerd.log"]).await?;
        let t0 = Instant::now();
        let mut s = op(&uds, Request::ExportStorage).await?;
        let mut n = 0;
        loop {
            match recv(&mut s).await? {
                AgentMsg::Data(b) => n += b.len(),
                AgentMsg::End(_) => break,
                other => bail!("export: {other:?}"),
            }
        }
        println!("export: {n} bytes in {} ms", t0.elapsed().as_millis());
    }

    let mut s = op(&uds, Request::Status).await?;
    println!("status: {:?}", recv(&mut s).await?);

    let t0 = Instant::now();
    let mut s = op(&uds, Request::RawSource { bytes: 64 << 20 }).await?;
    let mut d = StreamDigest::new();
    loop {
        match recv(&mut s).await? {
            AgentMsg::Data(b) => d.update(&b),
            AgentMsg::End(end) => {
                d.verify(&end)?;
                break;
            }
            other => bail!("unexpected {other:?}"),
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    println!("raw source 64 MiB: {:.1} MB/s", 64.0 * 1.048576 / secs);

    // The same volume as stdout frames (no hashing): transport alone.
    let t0 = Instant::now();
    let mut s = op(
        &uds,
        Request::Exec(ExecRequest {
            argv: ["busybox", "head", "-c", "67108864", "/dev/zero"]
                .iter()
                .map(|a| a.to_string())
                .collect(),
            ..Default::default()
        }),
    )
    .await?;
    let mut n = 0usize;
    loop {
        match recv(&mut s).await? {
            AgentMsg::Stdout(b) => n += b.len(),
            AgentMsg::Exited(_) => break,
            other => {
                println!("stdout test: {other:?}");
                break;
            }
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    println!("exec stdout {n} bytes: {:.1} MB/s", n as f64 / 1e6 / secs);

    let mut s = op(&uds, Request::Shutdown).await?;
    println!("shutdown: {:?}", recv(&mut s).await?);
    write_frame_async(&mut s, &HostMsg::Ack).await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    Ok(())
}
