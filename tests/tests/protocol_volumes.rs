//! `run -v` volumes carried as tar streams: staged into the (host-mode) agent, changed by a
//! command standing in for the container, synced back with rules that never lose host data; and
//! a hostile agent whose copy back tries to escape.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::HostAgent;
use tokio::io::AsyncWriteExt;
use tokio::net::{UnixListener, UnixStream};
use vcontainer::engine::volumes::VolumeSpec;
use vcontainer::engine::volumes::{stage_in, VolumeError};
use vcontainer::ops::{exec, ExecIo};
use vcontainer::transport::{Transport, UnixTransport};
use vcontainer_protocol::{
    encode_frame, read_frame_async, AgentMsg, EngineKind, ExecRequest, ExitStatus, Hello, HostMsg,
    Request, StreamDigest, PROTOCOL_VERSION,
};

fn spec(host: &Path, ctr: &str, mode: Option<&str>) -> VolumeSpec {
    VolumeSpec {
        host: host.to_path_buf(),
        container: ctr.to_string(),
        mode: mode.map(str::to_string),
    }
}

fn write(p: &Path, data: &[u8]) {
    if let Some(parent) = p.parent() {
        fs::create_dir_all(parent).expect("mkdir");
    }
    fs::write(p, data).expect("write");
}

/// The guest paths from `-v GUEST:CTR[:MODE]` pairs.
fn guest_paths(args: &[String]) -> Vec<String> {
    args.chunks(2)
        .map(|pair| {
            assert_eq!(pair[0], "-v");
            pair[1].split(':').next().expect("guest").to_string()
        })
        .collect()
}

async fn sh(t: &dyn Transport, script: &str, args: &[String]) -> ExitStatus {
    let mut argv = vec!["sh".to_string(), "-c".into(), script.into(), "sh".into()];
    argv.extend(args.iter().cloned());
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let status = exec(
        t,
        ExecRequest {
            argv,
            ..Default::default()
        },
        ExecIo {
            stdout: &mut out,
            stderr: &mut err,
            stdin: None,
            signals: None,
        },
    )
    .await
    .expect("exec");
    assert_eq!(
        status,
        ExitStatus::Code(0),
        "{}",
        String::from_utf8_lossy(&err)
    );
    status
}

#[tokio::test]
async fn rw_volumes_come_back_without_losing_host_data() {
    let agent = HostAgent::start();
    let t = agent.transport();
    let root = tempfile::tempdir().expect("tempdir");
    let host = root.path().join("vol");
    write(&host.join("keep"), b"keep");
    write(&host.join("change"), b"old");
    write(&host.join("delete-me"), b"x");
    write(&host.join("host-edits"), b"v1");
    write(&host.join(".dotfile"), b"dot");
    write(&host.join("sub/inner"), b"i");
    write(&root.path().join("outside"), b"o");
    let file_vol = root.path().join("config.ini");
    write(&file_vol, b"a=1\n");
    let ro = root.path().join("ro");
    write(&ro.join("r"), b"r");

    let guest_root = agent.dir.path().join("volumes");
    let staged = stage_in(
        &t,
        &[
            spec(&host, "/data", None),
            spec(&file_vol, "/etc/app.ini", Some("rw")),
            spec(&ro, "/ro", Some("ro")),
        ],
        guest_root.to_str().expect("utf8"),
    )
    .await
    .expect("stage");
    let args = staged.engine_args();
    assert_eq!(args.len(), 6, "{args:?}");
    assert!(args[1].ends_with(":/data"), "{args:?}");
    assert!(args[3].ends_with("/config.ini:/etc/app.ini:rw"), "{args:?}");
    assert!(args[5].ends_with(":/ro:ro"), "{args:?}");
    let guests = guest_paths(&args);
    // The container sees dotfiles.
    assert_eq!(
        fs::read(Path::new(&guests[0]).join(".dotfile")).expect("read"),
        b"dot"
    );

    // The "container":
    sh(
        &t,
        r#"echo new > "$1/change"; echo c > "$1/created"; rm "$1/delete-me" "$1/host-edits";
           mkdir "$1/newdir"; echo f > "$1/newdir/f"; echo a=2 > "$2"; echo x > "$3/r""#,
        &guests,
    )
    .await;
    // The host meanwhile:
    std::thread::sleep(std::time::Duration::from_millis(20));
    write(&host.join("host-edits"), b"v2, edited on the host");
    write(&host.join("host-new"), b"mine");

    let report = staged.sync_back(&t).await.expect("sync back");
    assert_eq!(report.volumes_synced, 2);
    assert_eq!(fs::read(host.join("change")).expect("read"), b"new\n");
    assert_eq!(fs::read(host.join("created")).expect("read"), b"c\n");
    assert_eq!(fs::read(host.join("newdir/f")).expect("read"), b"f\n");
    assert!(!host.join("delete-me").exists());
    assert_eq!(
        fs::read(host.join("host-edits")).expect("read"),
        b"v2, edited on the host"
    );
    assert_eq!(fs::read(host.join("host-new")).expect("read"), b"mine");
    assert_eq!(fs::read(host.join(".dotfile")).expect("read"), b"dot");
    assert_eq!(fs::read(host.join("keep")).expect("read"), b"keep");
    assert_eq!(fs::read(host.join("sub/inner")).expect("read"), b"i");
    assert_eq!(fs::read(&file_vol).expect("read"), b"a=2\n");
    assert_eq!(fs::read(ro.join("r")).expect("read"), b"r");
    assert_eq!(fs::read(root.path().join("outside")).expect("read"), b"o");
    assert!(
        report.notes.iter().any(|n| n.contains("host-edits")),
        "{report:?}"
    );
    // No scratch left on the host, the guest directory is gone.
    let mut names: Vec<String> = fs::read_dir(root.path())
        .expect("read_dir")
        .chain(fs::read_dir(&host).expect("read_dir"))
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert!(
        !names.iter().any(|n| n.starts_with(".vcontainer")),
        "{names:?}"
    );
    assert_eq!(fs::read_dir(&guest_root).expect("read_dir").count(), 0);
}

#[tokio::test]
async fn missing_sources_fail_before_guest_work_and_leave_keeps_the_guest_copy() {
    let agent = HostAgent::start();
    let t = agent.transport();
    let guest_root = agent.dir.path().join("volumes");
    let err = stage_in(
        &t,
        &[spec(Path::new("/nonexistent/vol"), "/x", None)],
        guest_root.to_str().expect("utf8"),
    )
    .await
    .expect_err("missing");
    assert_eq!(err.to_string(), "Volume source not found: /nonexistent/vol");
    assert!(!guest_root.exists());

    let host = tempfile::tempdir().expect("tempdir");
    write(&host.path().join("f"), b"f");
    let staged = stage_in(
        &t,
        &[spec(host.path(), "/x", None)],
        guest_root.to_str().expect("utf8"),
    )
    .await
    .expect("stage");
    let guest = guest_paths(&staged.engine_args()).remove(0);
    let note = staged.leave();
    assert!(note.contains("not copied back"), "{note}");
    assert!(Path::new(&guest).join("f").is_file());
}

// ---- a hostile agent ----

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

/// Accepts PutTar and exec like an agent would; answers GetTar with `archive`.
async fn hostile_agent(dir: &Path, archive: Vec<u8>) -> UnixTransport {
    let path: PathBuf = dir.join("fake.sock");
    let listener = UnixListener::bind(&path).expect("bind");
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            send(&mut s, &hello()).await;
            let Ok(HostMsg::Request(req)) = read_frame_async::<_, HostMsg>(&mut s).await else {
                continue;
            };
            match req {
                Request::PutTar { .. } => {
                    while let Ok(msg) = read_frame_async::<_, HostMsg>(&mut s).await {
                        if matches!(msg, HostMsg::End(_)) {
                            break;
                        }
                    }
                    send(&mut s, &AgentMsg::Done).await;
                }
                Request::GetTar { .. } => {
                    let mut d = StreamDigest::new();
                    for chunk in archive.chunks(1000) {
                        d.update(chunk);
                        send(&mut s, &AgentMsg::Data(chunk.to_vec())).await;
                    }
                    send(&mut s, &AgentMsg::End(d.finish())).await;
                }
                _ => send(&mut s, &AgentMsg::Exited(ExitStatus::Code(0))).await,
            }
        }
    });
    UnixTransport::new(path)
}

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
async fn a_hostile_copy_back_touches_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let victim_dir = dir.path().join("victim");
    fs::create_dir(&victim_dir).expect("mkdir");
    fs::write(victim_dir.join("file"), b"original").expect("write");
    let victim = victim_dir.to_str().expect("utf8").to_string();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("dotdot", {
            let mut t = Vec::new();
            raw_entry(&mut t, "0/changed", b'0', "", b"would be written");
            raw_entry(&mut t, "0/../../../victim/file", b'0', "", b"pwned");
            t
        }),
        ("through a symlink", {
            let mut t = Vec::new();
            raw_entry(&mut t, "0/changed", b'0', "", b"would be written");
            raw_entry(&mut t, "0/a", b'2', &victim, b"");
            raw_entry(&mut t, "0/a/file", b'0', "", b"pwned");
            t
        }),
    ];
    for (i, (what, mut archive)) in cases.into_iter().enumerate() {
        archive.extend_from_slice(&[0u8; 1024]);
        let sock = dir.path().join(format!("s{i}"));
        fs::create_dir(&sock).expect("mkdir");
        let t = hostile_agent(&sock, archive).await;
        let host = dir.path().join(format!("vol{i}"));
        write(&host.join("changed"), b"host");
        let staged = stage_in(&t, &[spec(&host, "/x", None)], "/guest/volumes")
            .await
            .expect("stage");
        let err = staged.sync_back(&t).await.expect_err(what);
        assert!(
            matches!(&err, VolumeError::SyncFailed { first, .. } if matches!(**first, VolumeError::Tar { .. })),
            "{what}: {err}"
        );
        assert!(err.to_string().contains("stays in the guest"), "{err}");
        assert_eq!(
            fs::read(victim_dir.join("file")).expect("read"),
            b"original"
        );
        assert_eq!(fs::read_dir(&victim_dir).expect("read_dir").count(), 1);
        // Nothing applied: the host volume is as it was, without scratch directories.
        assert_eq!(
            fs::read(host.join("changed")).expect("read"),
            b"host",
            "{what}"
        );
        assert_eq!(fs::read_dir(&host).expect("read_dir").count(), 1, "{what}");
    }
}
