//! `cp` in both directions against the real agent on the host, with `tar` standing in for the
//! engine's `cp -` (same stdin/stdout contract), and hostile archives from a fake agent.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::HostAgent;
use tokio::io::AsyncWriteExt;
use tokio::net::{UnixListener, UnixStream};
use vcontainer::ops::{copy_in, copy_out};
use vcontainer::transport::UnixTransport;
use vcontainer_protocol::{
    encode_frame, read_frame_async, AgentMsg, EngineKind, ExitStatus, Hello, HostMsg,
    PROTOCOL_VERSION,
};

fn s(p: &Path) -> String {
    p.to_str().expect("utf8").to_string()
}

fn make_tree(root: &Path) {
    fs::create_dir_all(root.join("sub")).expect("mkdir");
    fs::write(root.join(".hidden"), b"dot").expect("write");
    fs::write(root.join("sub/run.sh"), b"#!/bin/sh\n").expect("write");
    fs::set_permissions(root.join("sub/run.sh"), fs::Permissions::from_mode(0o750)).expect("chmod");
    std::os::unix::fs::symlink("/etc/passwd", root.join("link")).expect("symlink");
}

#[tokio::test]
async fn copy_in_sends_a_directory_under_its_name() {
    let agent = HostAgent::start();
    let src = tempfile::tempdir().expect("tempdir");
    let data = src.path().join("data");
    make_tree(&data);
    let ctr = agent.dir.path().join("ctr");
    fs::create_dir(&ctr).expect("mkdir");
    let mut err = Vec::new();
    let status = copy_in(
        &agent.transport(),
        &data,
        vec!["tar".into(), "-x".into(), "-C".into(), s(&ctr)],
        &mut err,
    )
    .await
    .expect("copy_in");
    assert_eq!(
        status,
        ExitStatus::Code(0),
        "{}",
        String::from_utf8_lossy(&err)
    );
    assert_eq!(fs::read(ctr.join("data/.hidden")).expect("read"), b"dot");
    assert_eq!(
        fs::metadata(ctr.join("data/sub/run.sh"))
            .expect("meta")
            .permissions()
            .mode()
            & 0o777,
        0o750
    );
    assert_eq!(
        fs::read_link(ctr.join("data/link")).expect("link"),
        Path::new("/etc/passwd")
    );

    // A single file, and a directory's contents (`DIR/.`).
    let ctr2 = agent.dir.path().join("ctr2");
    fs::create_dir(&ctr2).expect("mkdir");
    let argv = vec!["tar".into(), "-x".into(), "-C".into(), s(&ctr2)];
    copy_in(
        &agent.transport(),
        &data.join(".hidden"),
        argv.clone(),
        &mut err,
    )
    .await
    .expect("file");
    copy_in(
        &agent.transport(),
        Path::new(&format!("{}/.", data.display())),
        argv,
        &mut err,
    )
    .await
    .expect("contents");
    assert!(ctr2.join(".hidden").is_file());
    assert!(ctr2.join("sub/run.sh").is_file());
    assert!(!ctr2.join("data").exists());
}

#[tokio::test]
async fn copy_in_checks_the_host_path_first_and_passes_failures_on() {
    let agent = HostAgent::start();
    let mut err = Vec::new();
    let e = copy_in(
        &agent.transport(),
        Path::new("/nonexistent"),
        vec!["tar".into(), "-x".into()],
        &mut err,
    )
    .await
    .expect_err("missing")
    .to_string();
    assert_eq!(e, "cp: /nonexistent: no such file or directory");

    let src = tempfile::tempdir().expect("tempdir");
    let status = copy_in(
        &agent.transport(),
        src.path(),
        vec![
            "tar".into(),
            "-x".into(),
            "-C".into(),
            "/nonexistent-dir".into(),
        ],
        &mut err,
    )
    .await
    .expect("ran");
    assert_ne!(status.shell_code(), 0);
    assert!(!err.is_empty());
}

fn out_argv(guest: &Path) -> Vec<String> {
    let parent = guest.parent().expect("parent");
    let name = guest.file_name().expect("name").to_str().expect("utf8");
    vec![
        "tar".into(),
        "-c".into(),
        "-C".into(),
        s(parent),
        name.into(),
    ]
}

#[tokio::test]
async fn copy_out_follows_docker_destination_rules() {
    let agent = HostAgent::start();
    let guest = agent.dir.path().join("ctr/data");
    make_tree(&guest);
    let host = tempfile::tempdir().expect("tempdir");
    let mut err = Vec::new();

    // Into an existing directory: lands under its own name.
    let status = copy_out(&agent.transport(), host.path(), out_argv(&guest), &mut err)
        .await
        .expect("copy_out");
    assert_eq!(
        status,
        ExitStatus::Code(0),
        "{}",
        String::from_utf8_lossy(&err)
    );
    assert_eq!(
        fs::read(host.path().join("data/.hidden")).expect("read"),
        b"dot"
    );
    assert_eq!(
        fs::read_link(host.path().join("data/link")).expect("link"),
        Path::new("/etc/passwd")
    );

    // To a new name: the top entry is renamed.
    let renamed = host.path().join("renamed");
    copy_out(&agent.transport(), &renamed, out_argv(&guest), &mut err)
        .await
        .expect("copy_out");
    assert!(renamed.join("sub/run.sh").is_file());

    // A single file onto an existing file replaces it.
    let file = host.path().join("existing.txt");
    fs::write(&file, b"old").expect("write");
    copy_out(
        &agent.transport(),
        &file,
        out_argv(&guest.join(".hidden")),
        &mut err,
    )
    .await
    .expect("copy_out");
    assert_eq!(fs::read(&file).expect("read"), b"dot");

    // A missing parent is an error before any guest work.
    let e = copy_out(
        &agent.transport(),
        &host.path().join("missing/x"),
        out_argv(&guest),
        &mut err,
    )
    .await
    .expect_err("missing parent")
    .to_string();
    assert!(e.contains("no such file or directory"), "{e}");

    // A failing command leaves nothing behind.
    let failed = host.path().join("failed");
    let status = copy_out(
        &agent.transport(),
        &failed,
        out_argv(&agent.dir.path().join("ctr/nope")),
        &mut err,
    )
    .await
    .expect("ran");
    assert_ne!(status.shell_code(), 0);
    assert!(!failed.exists());
    let leftovers: Vec<_> = fs::read_dir(host.path())
        .expect("read_dir")
        .flatten()
        .map(|e| e.file_name())
        .filter(|n| n.to_string_lossy().starts_with(".vcontainer"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

// ---- a fake agent whose `cp` writes a hostile archive ----

fn hello() -> AgentMsg {
    AgentMsg::Hello(Hello {
        protocol: PROTOCOL_VERSION,
        agent_version: "9.9.9-fake".into(),
        arch: "x86_64".into(),
        engine: EngineKind::None,
        capabilities: vec![],
    })
}

async fn send(s: &mut UnixStream, msg: &AgentMsg) {
    s.write_all(&encode_frame(msg).expect("encode"))
        .await
        .expect("write");
}

/// Answers every exec with `archive` on stdout and exit 0.
async fn hostile_exec_agent(dir: &Path, archive: Vec<u8>) -> UnixTransport {
    let path = dir.join("fake.sock");
    let listener = UnixListener::bind(&path).expect("bind");
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            send(&mut s, &hello()).await;
            let _: Result<HostMsg, _> = read_frame_async(&mut s).await;
            for chunk in archive.chunks(1000) {
                send(&mut s, &AgentMsg::Stdout(chunk.to_vec())).await;
            }
            send(&mut s, &AgentMsg::Exited(ExitStatus::Code(0))).await;
        }
    });
    UnixTransport::new(path)
}

/// A ustar header for names the tar crate's builder refuses to write.
fn raw_entry(out: &mut Vec<u8>, name: &str, kind: u8, link: &str, data: &[u8]) {
    let mut h = tar::Header::new_ustar();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_entry_type(tar::EntryType::new(kind));
    let bytes = h.as_mut_bytes();
    bytes[..100].fill(0);
    bytes[..name.len()].copy_from_slice(name.as_bytes());
    bytes[157..157 + link.len()].copy_from_slice(link.as_bytes());
    h.set_cksum();
    out.extend_from_slice(h.as_bytes());
    out.extend_from_slice(data);
    out.extend(std::iter::repeat_n(0u8, (512 - data.len() % 512) % 512));
}

#[tokio::test]
async fn hostile_archives_never_escape_the_destination() {
    let dir = tempfile::tempdir().expect("tempdir");
    let victim_dir = dir.path().join("victim");
    fs::create_dir(&victim_dir).expect("mkdir");
    let victim = victim_dir.join("file");
    fs::write(&victim, b"original").expect("write");
    let abs = |p: &Path| s(p);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("dotdot", {
            let mut t = Vec::new();
            raw_entry(&mut t, "x/../../victim/file", b'0', "", b"pwned");
            t
        }),
        ("absolute", {
            let mut t = Vec::new();
            raw_entry(&mut t, &abs(&victim), b'0', "", b"pwned");
            t
        }),
        ("symlink then through it", {
            let mut t = Vec::new();
            raw_entry(&mut t, "x", b'5', "", b"");
            raw_entry(&mut t, "x/a", b'2', &abs(&victim_dir), b"");
            raw_entry(&mut t, "x/a/file", b'0', "", b"pwned");
            t
        }),
        ("hardlink to outside", {
            let mut t = Vec::new();
            raw_entry(&mut t, "x", b'5', "", b"");
            raw_entry(&mut t, "x/h", b'1', &abs(&victim), b"");
            t
        }),
    ];
    for (i, (what, mut archive)) in cases.into_iter().enumerate() {
        archive.extend_from_slice(&[0u8; 1024]);
        let sock_dir = dir.path().join(format!("sock{i}"));
        fs::create_dir(&sock_dir).expect("mkdir");
        let t = hostile_exec_agent(&sock_dir, archive).await;
        let out = dir.path().join(format!("out{i}"));
        fs::create_dir(&out).expect("mkdir");
        let mut err = Vec::new();
        let argv = vec!["docker".into(), "cp".into(), "c:/x".into(), "-".into()];
        let e = copy_out(&t, &out.join("x"), argv, &mut err)
            .await
            .expect_err(what)
            .to_string();
        assert!(e.contains("cp: unpacking"), "{what}: {e}");
        assert_eq!(fs::read(&victim).expect("read"), b"original", "{what}");
        assert_eq!(
            fs::read_dir(&victim_dir).expect("read_dir").count(),
            1,
            "{what}"
        );
        assert_eq!(
            fs::read_dir(&out).expect("read_dir").count(),
            0,
            "{what}: output left"
        );
    }
}
