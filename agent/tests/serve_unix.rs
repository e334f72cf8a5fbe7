//! The operation server in host test mode, driven over a unix socket by a minimal client:
//! real processes, real tar streams, real digests.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{UnixListener, UnixStream};
use vcontainer_agent::host_mode::{HostAgent, ServeArgs};
use vcontainer_protocol::{
    read_frame_async, write_frame_async, AgentMsg, BootConfig, EngineKind, ErrorKind, ExecRequest,
    ExitStatus, HostMsg, Request, StorageDriver, StreamDigest, DATA_CHUNK_LEN, PROTOCOL_VERSION,
};

struct Client {
    rd: OwnedReadHalf,
    wr: OwnedWriteHalf,
}

impl Client {
    async fn from_stream(stream: UnixStream) -> Self {
        let (rd, wr) = stream.into_split();
        let mut c = Self { rd, wr };
        match c.recv().await {
            AgentMsg::Hello(h) => {
                assert_eq!(h.protocol, PROTOCOL_VERSION);
                assert!(h.capabilities.iter().any(|c| c == "exec"));
            }
            other => panic!("expected Hello, got {other:?}"),
        }
        c
    }

    async fn connect(path: &Path) -> Self {
        Self::from_stream(UnixStream::connect(path).await.expect("connect")).await
    }

    async fn send(&mut self, msg: HostMsg) {
        write_frame_async(&mut self.wr, &msg).await.expect("send");
    }

    async fn recv(&mut self) -> AgentMsg {
        tokio::time::timeout(Duration::from_secs(30), read_frame_async(&mut self.rd))
            .await
            .expect("agent answers in time")
            .expect("frame")
    }

    async fn request(path: &Path, req: Request) -> Self {
        let mut c = Self::connect(path).await;
        c.send(HostMsg::Request(req)).await;
        c
    }

    async fn send_stream(&mut self, bytes: &[u8], corrupt: bool) {
        let mut digest = StreamDigest::new();
        for chunk in bytes.chunks(DATA_CHUNK_LEN) {
            digest.update(chunk);
            self.send(HostMsg::Data(chunk.to_vec())).await;
        }
        let mut end = digest.finish();
        if corrupt {
            end.sha256[0] ^= 1;
        }
        self.send(HostMsg::End(end)).await;
    }

    /// Data…End, verified.
    async fn recv_stream(&mut self) -> Vec<u8> {
        let mut digest = StreamDigest::new();
        let mut out = Vec::new();
        loop {
            match self.recv().await {
                AgentMsg::Data(d) => {
                    assert!(d.len() <= DATA_CHUNK_LEN);
                    digest.update(&d);
                    out.extend_from_slice(&d);
                }
                AgentMsg::End(end) => {
                    digest.verify(&end).expect("digest verifies");
                    return out;
                }
                other => panic!("expected Data/End, got {other:?}"),
            }
        }
    }

    /// Stdout, stderr and the exit status of an Exec/ImportOci.
    async fn collect(&mut self) -> (String, String, ExitStatus) {
        collect_from(&mut self.rd).await
    }
}

async fn collect_from(rd: &mut OwnedReadHalf) -> (String, String, ExitStatus) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    loop {
        let msg: AgentMsg = tokio::time::timeout(Duration::from_secs(30), read_frame_async(rd))
            .await
            .expect("agent answers in time")
            .expect("frame");
        match msg {
            AgentMsg::Stdout(d) => out.extend_from_slice(&d),
            AgentMsg::Stderr(d) => err.extend_from_slice(&d),
            AgentMsg::Exited(s) => {
                return (
                    String::from_utf8_lossy(&out).into(),
                    String::from_utf8_lossy(&err).into(),
                    s,
                )
            }
            other => panic!("expected output, got {other:?}"),
        }
    }
}

fn exec(argv: &[&str]) -> Request {
    Request::Exec(ExecRequest {
        argv: argv.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    })
}

struct Fixture {
    dir: tempfile::TempDir,
    host: HostAgent,
}

impl Fixture {
    async fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let args = ServeArgs {
            listen_unix: dir.path().join("agent.sock"),
            dial_unix: None,
            engine: EngineKind::None,
            state_dir: Some(dir.path().join("state")),
            debug: false,
        };
        let host = HostAgent::start(args).await.expect("agent starts");
        Self { dir, host }
    }

    fn sock(&self) -> PathBuf {
        self.host.args.listen_unix.clone()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_streams_separately_and_reports_code_and_signal() {
    let f = Fixture::start().await;
    let mut c = Client::request(
        &f.sock(),
        exec(&["sh", "-c", "echo out; echo err >&2; echo more; exit 3"]),
    )
    .await;
    let (out, err, status) = c.collect().await;
    assert_eq!(out, "out\nmore\n");
    assert_eq!(err, "err\n");
    assert_eq!(status, ExitStatus::Code(3));

    let mut c = Client::request(&f.sock(), exec(&["sh", "-c", "kill -9 $$"])).await;
    assert_eq!(c.collect().await.2, ExitStatus::Signal(9));

    // No shell: the argument is one argv element, metacharacters and all.
    let mut c = Client::request(&f.sock(), exec(&["echo", "a b; $HOME | x"])).await;
    assert_eq!(c.collect().await.0, "a b; $HOME | x\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_env_cwd_and_errors() {
    let f = Fixture::start().await;
    let mut c = Client::request(
        &f.sock(),
        Request::Exec(ExecRequest {
            argv: vec!["sh".into(), "-c".into(), "echo $FOO:$HOME:$(pwd)".into()],
            env: vec![("FOO".into(), "bar".into())],
            cwd: Some("/tmp".into()),
            ..Default::default()
        }),
    )
    .await;
    assert_eq!(c.collect().await.0, "bar:/root:/tmp\n");

    let mut c = Client::request(&f.sock(), exec(&["no-such-command-xyz"])).await;
    match c.recv().await {
        AgentMsg::Error(e) => {
            assert_eq!(e.kind, ErrorKind::NotFound);
            assert!(e.message.contains("command not found"), "{}", e.message);
        }
        other => panic!("expected Error, got {other:?}"),
    }

    let mut c = Client::request(&f.sock(), exec(&[])).await;
    assert!(matches!(c.recv().await, AgentMsg::Error(e) if e.kind == ErrorKind::BadRequest));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_stdin_and_signals() {
    let f = Fixture::start().await;
    let c = Client::request(
        &f.sock(),
        Request::Exec(ExecRequest {
            argv: vec!["cat".into()],
            stdin: true,
            ..Default::default()
        }),
    )
    .await;
    // More than the pipe and channel buffers hold, to exercise back-pressure. Like a real host,
    // write stdin while reading the output.
    let big = vec![b'x'; 3 * 1024 * 1024];
    let Client { rd, mut wr } = c;
    let to_send = big.clone();
    let writer = tokio::spawn(async move {
        for chunk in to_send.chunks(100_000) {
            write_frame_async(&mut wr, &HostMsg::Stdin(chunk.to_vec()))
                .await
                .expect("stdin");
        }
        write_frame_async(&mut wr, &HostMsg::Stdin(b"end\n".to_vec()))
            .await
            .expect("stdin");
        write_frame_async(&mut wr, &HostMsg::StdinEnd)
            .await
            .expect("stdin end");
        wr
    });
    let mut rd = rd;
    let (out, _, status) = collect_from(&mut rd).await;
    writer.await.expect("writer");
    assert_eq!(out.len(), big.len() + 4);
    assert!(out.ends_with("xend\n"));
    assert_eq!(status, ExitStatus::Code(0));

    let mut c = Client::request(&f.sock(), exec(&["sleep", "30"])).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    c.send(HostMsg::Signal(15)).await;
    assert_eq!(c.collect().await.2, ExitStatus::Signal(15));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_the_connection_kills_the_process_group() {
    let f = Fixture::start().await;
    let mut c = Client::request(&f.sock(), exec(&["sh", "-c", "sleep 60 & echo $!; wait"])).await;
    let pid: i32 = match c.recv().await {
        AgentMsg::Stdout(d) => String::from_utf8_lossy(&d).trim().parse().expect("pid"),
        other => panic!("expected the pid, got {other:?}"),
    };
    drop(c);
    let start = Instant::now();
    // The grandchild is in the same process group: it must go too (it is reparented, so it may
    // linger as a zombie of init; /proc state tells).
    loop {
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let gone = state.is_empty() || state.contains(") Z ");
        if gone {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "sleep {pid} survived: {state}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn sample_tree(root: &Path) {
    std::fs::create_dir_all(root.join("sub/deeper")).expect("mkdir");
    std::fs::write(root.join("a.txt"), b"hello").expect("write");
    std::fs::write(root.join("sub/deeper/b.bin"), vec![7u8; 300_000]).expect("write");
    std::os::unix::fs::symlink("a.txt", root.join("link")).expect("symlink");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(root.join("a.txt"), std::fs::Permissions::from_mode(0o751))
        .expect("chmod");
}

fn tar_of(dir: &Path, name: &str) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    b.follow_symlinks(false);
    b.append_dir_all(name, dir).expect("append");
    b.into_inner().expect("finish")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_and_get_tar_round_trip() {
    let f = Fixture::start().await;
    let src = f.dir.path().join("src");
    sample_tree(&src);
    let dest = f.dir.path().join("dest");

    let mut c = Client::request(
        &f.sock(),
        Request::PutTar {
            dest: dest.display().to_string(),
        },
    )
    .await;
    c.send_stream(&tar_of(&src, "tree"), false).await;
    assert_eq!(c.recv().await, AgentMsg::Done);
    assert_eq!(
        std::fs::read(dest.join("tree/a.txt")).expect("read"),
        b"hello"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dest.join("tree/a.txt"))
        .expect("meta")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o751);
    assert_eq!(
        std::fs::read_link(dest.join("tree/link")).expect("link"),
        PathBuf::from("a.txt")
    );

    let mut c = Client::request(
        &f.sock(),
        Request::GetTar {
            path: dest.join("tree").display().to_string(),
        },
    )
    .await;
    let bytes = c.recv_stream().await;
    let back = f.dir.path().join("back");
    tar::Archive::new(&bytes[..]).unpack(&back).expect("unpack");
    assert_eq!(
        std::fs::read(back.join("tree/sub/deeper/b.bin")).expect("read"),
        vec![7u8; 300_000]
    );
    let names: Vec<String> = tar::Archive::new(&bytes[..])
        .entries()
        .expect("entries")
        .map(|e| {
            e.expect("entry")
                .path()
                .expect("path")
                .display()
                .to_string()
        })
        .collect();
    assert!(names.iter().all(|n| n.starts_with("tree")), "{names:?}");

    // A single file: the tar holds just its basename.
    let mut c = Client::request(
        &f.sock(),
        Request::GetTar {
            path: dest.join("tree/a.txt").display().to_string(),
        },
    )
    .await;
    let bytes = c.recv_stream().await;
    let mut ar = tar::Archive::new(&bytes[..]);
    let mut entries = ar.entries().expect("entries");
    let first = entries.next().expect("one").expect("entry");
    assert_eq!(first.path().expect("path"), Path::new("a.txt"));

    let mut c = Client::request(
        &f.sock(),
        Request::GetTar {
            path: dest.join("missing").display().to_string(),
        },
    )
    .await;
    assert!(matches!(c.recv().await, AgentMsg::Error(e) if e.kind == ErrorKind::NotFound));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_tar_with_a_bad_digest_leaves_nothing() {
    let f = Fixture::start().await;
    let src = f.dir.path().join("src");
    sample_tree(&src);
    let existing = f.dir.path().join("existing");
    std::fs::create_dir_all(existing.join("keep")).expect("mkdir");
    for (dest, corrupt_only_new) in [
        (f.dir.path().join("fresh"), false),
        (existing.clone(), true),
    ] {
        let mut c = Client::request(
            &f.sock(),
            Request::PutTar {
                dest: dest.display().to_string(),
            },
        )
        .await;
        c.send_stream(&tar_of(&src, "tree"), true).await;
        match c.recv().await {
            AgentMsg::Error(e) => assert_eq!(e.kind, ErrorKind::Protocol, "{}", e.message),
            other => panic!("expected Error, got {other:?}"),
        }
        if corrupt_only_new {
            assert!(dest.join("keep").is_dir());
            assert!(!dest.join("tree").exists());
        } else {
            assert!(!dest.exists());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_tar_refuses_escapes() {
    let f = Fixture::start().await;
    // A hand-made header naming ../escaped (the tar crate's builder refuses to write one).
    let mut header = tar::Header::new_gnu();
    header.as_gnu_mut().expect("gnu").name[..12].copy_from_slice(b"../escaped\0\0");
    header.set_size(1);
    header.set_mode(0o644);
    header.set_entry_type(tar::EntryType::Regular);
    header.set_cksum();
    let mut bytes = header.as_bytes().to_vec();
    bytes.extend_from_slice(b"x");
    bytes.resize(1024, 0);
    bytes.extend_from_slice(&[0u8; 1024]);
    let dest = f.dir.path().join("jail/inner");
    let mut c = Client::request(
        &f.sock(),
        Request::PutTar {
            dest: dest.display().to_string(),
        },
    )
    .await;
    c.send_stream(&bytes, false).await;
    let _ = c.recv().await; // Done (entry skipped) or Error: either way nothing escaped
    assert!(!f.dir.path().join("jail/escaped").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_source_status_and_bad_first_frame() {
    let f = Fixture::start().await;
    let n = 3 * DATA_CHUNK_LEN as u64 + 5;
    let mut c = Client::request(&f.sock(), Request::RawSource { bytes: n }).await;
    let bytes = c.recv_stream().await;
    assert_eq!(bytes.len() as u64, n);
    assert!(bytes.iter().all(|b| *b == 0));

    let mut c = Client::request(&f.sock(), Request::Status).await;
    match c.recv().await {
        AgentMsg::Status(s) => {
            assert!(s.mem_total_kib > 0 && s.agent_max_rss_kib > 0, "{s:?}");
            assert!(!s.engine_running);
        }
        other => panic!("expected Status, got {other:?}"),
    }

    let mut c = Client::connect(&f.sock()).await;
    c.send(HostMsg::Ack).await;
    assert!(matches!(c.recv().await, AgentMsg::Error(e) if e.kind == ErrorKind::Protocol));

    // ImportOci without an engine: the stream is read to its end, then refused.
    let mut c = Client::request(
        &f.sock(),
        Request::ImportOci {
            reference: "x:1".into(),
        },
    )
    .await;
    c.send_stream(&[0u8; 2048], false).await;
    assert!(matches!(c.recv().await, AgentMsg::Error(e) if e.kind == ErrorKind::BadRequest));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_storage_tars_the_storage_dir() {
    let f = Fixture::start().await;
    let storage = f.host.state_dir.join("storage");
    std::fs::create_dir_all(storage.join("overlay2/l")).expect("mkdir");
    std::fs::write(storage.join("overlay2/l/f"), b"layer").expect("write");
    let mut c = Client::request(&f.sock(), Request::ExportStorage).await;
    let bytes = c.recv_stream().await;
    let names: Vec<String> = tar::Archive::new(&bytes[..])
        .entries()
        .expect("entries")
        .map(|e| {
            e.expect("entry")
                .path()
                .expect("path")
                .display()
                .to_string()
        })
        .collect();
    assert!(
        names.contains(&"storage/overlay2/l/f".to_string()),
        "{names:?}"
    );
    assert!(names.iter().all(|n| n.starts_with("storage/")), "{names:?}");
}

/// A fake host: accepts the control connection, sends `boot` (and the seed tar, if any) and
/// reads the agent's answer; returns the agent, the held control connection and that answer.
async fn boot_agent(
    boot: BootConfig,
    seed: Option<(Vec<u8>, bool)>,
) -> (tempfile::TempDir, HostAgent, Client, AgentMsg) {
    let dir = tempfile::tempdir().expect("tempdir");
    let control = dir.path().join("control.sock");
    let listener = UnixListener::bind(&control).expect("bind");
    let host_side = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.expect("accept");
        let mut c = Client::from_stream(stream).await;
        c.send(HostMsg::Boot(boot)).await;
        if let Some((bytes, corrupt)) = seed {
            c.send_stream(&bytes, corrupt).await;
        }
        let answer = c.recv().await;
        (c, answer)
    });
    let args = ServeArgs {
        listen_unix: dir.path().join("agent.sock"),
        dial_unix: Some(control),
        engine: EngineKind::None,
        state_dir: Some(dir.path().join("state")),
        debug: false,
    };
    let host = HostAgent::start(args).await.expect("agent starts");
    let (control, answer) = host_side.await.expect("host side");
    (dir, host, control, answer)
}

/// [`boot_agent`] that starts the engine, optionally seeding it first.
async fn boot_with_seed(seed: Option<(Vec<u8>, bool)>) -> (tempfile::TempDir, HostAgent, AgentMsg) {
    let boot = BootConfig {
        seed_storage: seed.is_some(),
        start_engine: true,
        ..Default::default()
    };
    let (dir, host, _control, answer) = boot_agent(boot, seed).await;
    (dir, host, answer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_handshake_seeds_storage_and_reports_ready() {
    let src = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(src.path().join("storage/volumes")).expect("mkdir");
    std::fs::write(src.path().join("storage/volumes/v"), b"data").expect("write");
    let out = std::process::Command::new("tar")
        .args(["-cf", "-", "-C"])
        .arg(src.path())
        .arg("storage")
        .output()
        .expect("tar");
    assert!(out.status.success());

    let (_dir, host, answer) = boot_with_seed(Some((out.stdout.clone(), false))).await;
    assert!(matches!(answer, AgentMsg::Ready(_)), "{answer:?}");
    assert_eq!(
        std::fs::read(host.state_dir.join("storage/volumes/v")).expect("seeded"),
        b"data"
    );
    assert_eq!(host.control, Some(Ok(())));

    let (_dir, host, answer) = boot_with_seed(Some((out.stdout, true))).await;
    assert!(
        matches!(answer, AgentMsg::Error(ref e) if e.kind == ErrorKind::Protocol),
        "{answer:?}"
    );
    assert!(!host.state_dir.join("storage/volumes").exists());

    let (_dir, _host, answer) = boot_with_seed(None).await;
    assert!(matches!(answer, AgentMsg::Ready(_)), "{answer:?}");
}

/// The storage driver is chosen after the seed: a seed written with overlay makes a request for
/// vfs an engine error naming the fix, and no request takes the seed's driver.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_storage_driver_follows_the_seed_or_refuses_a_conflict() {
    let src = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(src.path().join("storage/overlay-images")).expect("mkdir");
    let out = std::process::Command::new("tar")
        .args(["-cf", "-", "-C"])
        .arg(src.path())
        .arg("storage")
        .output()
        .expect("tar");
    assert!(out.status.success());
    let boot = |driver| BootConfig {
        seed_storage: true,
        start_engine: true,
        storage_driver: driver,
        ..Default::default()
    };

    let (_dir, _host, _control, answer) = boot_agent(
        boot(Some(StorageDriver::Vfs)),
        Some((out.stdout.clone(), false)),
    )
    .await;
    match answer {
        AgentMsg::Error(e) => {
            assert_eq!(e.kind, ErrorKind::Engine, "{e:?}");
            assert!(e.message.contains("--storage-driver overlay"), "{e:?}");
        }
        other => panic!("expected a driver conflict, got {other:?}"),
    }

    let (_dir, _host, _control, answer) = boot_agent(boot(None), Some((out.stdout, false))).await;
    match answer {
        AgentMsg::Ready(r) => assert_eq!(r.storage_driver, Some(StorageDriver::Overlay)),
        other => panic!("expected Ready, got {other:?}"),
    }

    let (_dir, _host, _control, answer) = boot_agent(
        BootConfig {
            start_engine: true,
            storage_driver: Some(StorageDriver::Vfs),
            ..Default::default()
        },
        None,
    )
    .await;
    match answer {
        AgentMsg::Ready(r) => assert_eq!(r.storage_driver, Some(StorageDriver::Vfs)),
        other => panic!("expected Ready, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_waits_for_the_ack() {
    let f = Fixture::start().await;
    let mut c = Client::request(&f.sock(), Request::Shutdown).await;
    assert_eq!(c.recv().await, AgentMsg::Done);
    c.send(HostMsg::Ack).await;
    tokio::time::timeout(Duration::from_secs(5), f.host.wait())
        .await
        .expect("agent exits after the ack");
}

#[test]
fn the_binary_serves_and_exits_on_shutdown() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sock = dir.path().join("x.sock");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_vcontainer-agent"))
        .arg("serve")
        .arg("--listen-unix")
        .arg(&sock)
        .args(["--engine", "none", "--state-dir"])
        .arg(dir.path().join("state"))
        .spawn()
        .expect("spawn agent");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let start = Instant::now();
        while !sock.exists() {
            assert!(start.elapsed() < Duration::from_secs(10), "no socket");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let mut c = Client::request(&sock, exec(&["echo", "hi"])).await;
        assert_eq!(c.collect().await.0, "hi\n");
        let mut c = Client::request(&sock, Request::Shutdown).await;
        assert_eq!(c.recv().await, AgentMsg::Done);
        c.send(HostMsg::Ack).await;
    });
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            assert!(status.success(), "{status:?}");
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "agent did not exit"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `BootConfig.idle_timeout_secs`: the agent shuts itself down after that long without an
/// operation, but not while one is in flight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_timeout_shuts_down_only_when_idle() {
    let boot = BootConfig {
        start_engine: true,
        idle_timeout_secs: 1,
        ..Default::default()
    };
    let (dir, host, _control, ready) = boot_agent(boot, None).await;
    assert!(matches!(ready, AgentMsg::Ready(_)), "{ready:?}");

    // An operation lasting 3 s keeps it up past the 1 s timeout.
    let started = Instant::now();
    let mut c = Client::request(
        &dir.path().join("agent.sock"),
        Request::Exec(ExecRequest {
            argv: vec!["sleep".into(), "3".into()],
            ..Default::default()
        }),
    )
    .await;
    loop {
        if let AgentMsg::Exited(status) = c.recv().await {
            assert_eq!(status, ExitStatus::Code(0));
            break;
        }
    }
    assert!(started.elapsed() >= Duration::from_secs(3));
    // Then idle: it stops within a few check intervals.
    tokio::time::timeout(Duration::from_secs(10), host.wait())
        .await
        .expect("the idle agent shut down");
}

/// Boots a host-mode agent with `host_bound`, returning the held control connection.
async fn boot_host_bound() -> (tempfile::TempDir, HostAgent, Client) {
    let boot = BootConfig {
        start_engine: true,
        host_bound: true,
        ..Default::default()
    };
    let (dir, host, control, ready) = boot_agent(boot, None).await;
    assert!(matches!(ready, AgentMsg::Ready(_)), "{ready:?}");
    (dir, host, control)
}

/// `BootConfig.host_bound`: the host that booted the agent going away (its control connection
/// closing, as when the CLI is SIGKILLed) shuts the agent down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_bound_agent_shuts_down_when_its_host_goes() {
    let (_dir, host, control) = boot_host_bound().await;
    drop(control);
    tokio::time::timeout(Duration::from_secs(10), host.wait())
        .await
        .expect("the agent shut down when its host went away");
}

/// `HostMsg::Detach` (memory-resident mode) is acknowledged, and the agent then outlives its
/// control connection and keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_detached_agent_outlives_its_control_connection() {
    let (dir, host, mut control) = boot_host_bound().await;
    control.send(HostMsg::Detach).await;
    assert!(matches!(control.recv().await, AgentMsg::Done));
    drop(control);
    let waited = tokio::time::timeout(Duration::from_secs(2), host.wait()).await;
    assert!(waited.is_err(), "the detached agent must keep running");
    let mut c = Client::request(&dir.path().join("agent.sock"), Request::Status).await;
    assert!(matches!(c.recv().await, AgentMsg::Status(_)));
}
