//! EngineApi against the real agent on the host (`--engine none` serves its API at
//! `<state>/run/engine-api.sock`), with a small unix server standing in for dockerd, reached
//! through the host's [`ApiProxy`]: bytes pass exactly both ways, each direction ends on its own
//! (half-close), connections run concurrently, failures reach the client as HTTP errors, and
//! the real docker CLI works through it.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use common::HostAgent;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use vcontainer::ops::ApiProxy;
use vcontainer::session::AgentConn;
use vcontainer::transport::Transport;
use vcontainer_protocol::{AgentMsg, ErrorKind, HostMsg, Request};

const TIMEOUT: Duration = Duration::from_secs(60);

fn api_socket(agent: &HostAgent) -> PathBuf {
    let run = agent.state.join("run");
    std::fs::create_dir_all(&run).expect("run dir");
    run.join("engine-api.sock")
}

fn transport(agent: &HostAgent) -> Arc<dyn Transport> {
    Arc::new(agent.transport())
}

/// The stand-in engine. The first line of each connection picks what it does:
/// * `ECHO` — send every byte back as it arrives; at EOF, half-close.
/// * `WAIT` — read to EOF, then answer `<bytes> <sha256>\n` and close.
/// * `BYE` — answer `bye\n` and close at once, without reading on.
/// * anything else: HTTP/1.1 keep-alive for the docker CLI (`/_ping`, `/version`).
fn start_engine(path: &Path) -> tokio::task::JoinHandle<()> {
    let listener = UnixListener::bind(path).expect("bind engine socket");
    tokio::spawn(async move {
        loop {
            let Ok((conn, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(serve_engine_conn(conn));
        }
    })
}

async fn serve_engine_conn(conn: UnixStream) {
    let (rd, mut wr) = conn.into_split();
    let mut rd = BufReader::new(rd);
    let mut first = String::new();
    if rd.read_line(&mut first).await.is_err() {
        return;
    }
    match first.as_str() {
        "ECHO\n" => {
            let _ = tokio::io::copy(&mut rd, &mut wr).await;
            let _ = wr.shutdown().await;
        }
        "WAIT\n" => {
            let mut all = Vec::new();
            rd.read_to_end(&mut all).await.expect("read to EOF");
            let reply = format!("{} {}\n", all.len(), hex::encode(Sha256::digest(&all)));
            wr.write_all(reply.as_bytes()).await.expect("reply");
            wr.shutdown().await.expect("shutdown");
        }
        "BYE\n" => {
            wr.write_all(b"bye\n").await.expect("bye");
        }
        _ => serve_http(first, rd, wr).await,
    }
}

/// Just enough of the Docker Engine API for `docker version`.
async fn serve_http(
    mut line: String,
    mut rd: BufReader<tokio::net::unix::OwnedReadHalf>,
    mut wr: tokio::net::unix::OwnedWriteHalf,
) {
    loop {
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or("").to_string();
        let target = parts.next().unwrap_or("").to_string();
        // Headers up to the empty line (GET/HEAD requests carry no body).
        loop {
            let mut header = String::new();
            match rd.read_line(&mut header).await {
                Ok(0) | Err(_) => return,
                Ok(_) if header == "\r\n" => break,
                Ok(_) => {}
            }
        }
        let body = if target.ends_with("/_ping") {
            "OK".to_string()
        } else if target.ends_with("/version") {
            serde_json::json!({
                "Version": "99.1.2-standin",
                "ApiVersion": "1.45",
                "MinAPIVersion": "1.24",
                "Os": "linux",
                "Arch": "amd64",
                "GitCommit": "standin",
                "GoVersion": "go1.22",
                "KernelVersion": "6.1",
                "Components": [{"Name": "Engine", "Version": "99.1.2-standin", "Details": {}}],
            })
            .to_string()
        } else {
            r#"{"message":"not in the stand-in"}"#.to_string()
        };
        let status = if body.contains("not in the stand-in") {
            "404 Not Found"
        } else {
            "200 OK"
        };
        let mut response = format!(
            "HTTP/1.1 {status}\r\nApi-Version: 1.45\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        if method != "HEAD" {
            response.push_str(&body);
        }
        if wr.write_all(response.as_bytes()).await.is_err() {
            return;
        }
        line.clear();
        match rd.read_line(&mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

fn payload(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 11) as u8)
        .collect()
}

/// Writes `data` (after the mode line) while reading everything back; half-closes after writing.
async fn echo_through(socket: &Path, data: &[u8]) -> Vec<u8> {
    let conn = UnixStream::connect(socket).await.expect("connect proxy");
    let (mut rd, mut wr) = conn.into_split();
    let data = data.to_vec();
    let writer = tokio::spawn(async move {
        wr.write_all(b"ECHO\n").await.expect("mode");
        for chunk in data.chunks(100_000) {
            wr.write_all(chunk).await.expect("write");
        }
        wr.shutdown().await.expect("half-close");
    });
    let mut back = Vec::new();
    rd.read_to_end(&mut back).await.expect("read back");
    writer.await.expect("writer");
    back
}

#[tokio::test]
async fn agent_answers_done_then_pipes_bytes() {
    let agent = HostAgent::start();
    let _engine = start_engine(&api_socket(&agent));
    let mut conn = AgentConn::request(&agent.transport(), Request::EngineApi)
        .await
        .expect("request");
    conn.expect_done().await.expect("connected");
    conn.send(&HostMsg::Data(b"WAIT\nhello ".to_vec()))
        .await
        .expect("data");
    conn.send(&HostMsg::Data(b"engine".to_vec()))
        .await
        .expect("data");
    conn.send(&HostMsg::StdinEnd).await.expect("end");
    let mut got = Vec::new();
    loop {
        match tokio::time::timeout(TIMEOUT, conn.recv())
            .await
            .expect("in time")
            .expect("frame")
        {
            AgentMsg::Data(b) => got.extend_from_slice(&b),
            AgentMsg::Done => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    let expected = format!("12 {}\n", hex::encode(Sha256::digest(b"hello engine")));
    assert_eq!(String::from_utf8(got).expect("utf8"), expected);
}

#[tokio::test]
async fn large_payloads_pass_byte_exact_both_ways() {
    let agent = HostAgent::start();
    let _engine = start_engine(&api_socket(&agent));
    let proxy = ApiProxy::start(transport(&agent)).expect("proxy");
    let data = payload(5 * 1024 * 1024 + 123, 7);
    let back = tokio::time::timeout(TIMEOUT, echo_through(proxy.socket_path(), &data))
        .await
        .expect("in time");
    assert_eq!(back.len(), data.len());
    assert!(back == data, "echoed bytes differ");
}

#[tokio::test]
async fn half_close_from_the_client_still_gets_the_reply() {
    let agent = HostAgent::start();
    let _engine = start_engine(&api_socket(&agent));
    let proxy = ApiProxy::start(transport(&agent)).expect("proxy");
    let data = payload(3 * 1024 * 1024, 3);
    let mut conn = UnixStream::connect(proxy.socket_path())
        .await
        .expect("connect");
    conn.write_all(b"WAIT\n").await.expect("mode");
    conn.write_all(&data).await.expect("write");
    // The server answers only after it saw EOF: the reply must still come back.
    conn.shutdown().await.expect("half-close");
    let mut reply = String::new();
    tokio::time::timeout(TIMEOUT, conn.read_to_string(&mut reply))
        .await
        .expect("in time")
        .expect("read");
    assert_eq!(
        reply,
        format!("{} {}\n", data.len(), hex::encode(Sha256::digest(&data)))
    );
}

#[tokio::test]
async fn server_closing_first_ends_the_clients_read() {
    let agent = HostAgent::start();
    let _engine = start_engine(&api_socket(&agent));
    let proxy = ApiProxy::start(transport(&agent)).expect("proxy");
    let mut conn = UnixStream::connect(proxy.socket_path())
        .await
        .expect("connect");
    conn.write_all(b"BYE\n").await.expect("mode");
    // Our write side stays open; the engine's close must still reach us as EOF.
    let mut reply = String::new();
    tokio::time::timeout(TIMEOUT, conn.read_to_string(&mut reply))
        .await
        .expect("in time")
        .expect("read");
    assert_eq!(reply, "bye\n");
    // Writing after the engine has gone is harmless, and closing ends the connection.
    let _ = conn.write_all(b"late bytes").await;
    drop(conn);
    // The proxy keeps serving.
    let back = echo_through(proxy.socket_path(), b"still there").await;
    assert_eq!(back, b"still there");
}

#[tokio::test]
async fn many_concurrent_connections() {
    let agent = HostAgent::start();
    let _engine = start_engine(&api_socket(&agent));
    let proxy = ApiProxy::start(transport(&agent)).expect("proxy");
    let socket = proxy.socket_path().to_path_buf();
    let mut tasks = Vec::new();
    for i in 0..32u8 {
        let socket = socket.clone();
        tasks.push(tokio::spawn(async move {
            let data = payload(64 * 1024 + i as usize * 1000, i);
            let back = echo_through(&socket, &data).await;
            assert!(back == data, "connection {i}: echoed bytes differ");
        }));
    }
    for t in tasks {
        tokio::time::timeout(TIMEOUT, t)
            .await
            .expect("in time")
            .expect("task");
    }
}

#[tokio::test]
async fn proxy_dir_is_private_and_removed_on_drop() {
    use std::os::unix::fs::PermissionsExt;
    let agent = HostAgent::start();
    let proxy = ApiProxy::start(transport(&agent)).expect("proxy");
    let socket = proxy.socket_path().to_path_buf();
    let dir = socket.parent().expect("dir").to_path_buf();
    let mode = std::fs::metadata(&dir).expect("dir").permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
    assert!(socket.exists());
    drop(proxy);
    assert!(!dir.exists(), "{} is left behind", dir.display());
}

/// Reads an HTTP response to EOF from a connection the proxy refused.
async fn refused_response(proxy: &ApiProxy) -> String {
    let mut conn = UnixStream::connect(proxy.socket_path())
        .await
        .expect("connect");
    conn.write_all(b"GET /_ping HTTP/1.1\r\nHost: api\r\n\r\n")
        .await
        .expect("request");
    conn.shutdown().await.expect("half-close");
    let mut text = String::new();
    tokio::time::timeout(TIMEOUT, conn.read_to_string(&mut text))
        .await
        .expect("in time")
        .expect("read");
    text
}

#[tokio::test]
async fn engine_without_api_socket_is_refused() {
    let agent = HostAgent::start_with(&["--engine", "podman"]);
    let mut conn = AgentConn::request(&agent.transport(), Request::EngineApi)
        .await
        .expect("request");
    match conn.recv().await.expect("answer") {
        AgentMsg::Error(e) => {
            assert_eq!(e.kind, ErrorKind::BadRequest);
            assert!(e.message.contains("podman"), "{}", e.message);
        }
        other => panic!("unexpected {other:?}"),
    }
    let proxy = ApiProxy::start(transport(&agent)).expect("proxy");
    let text = refused_response(&proxy).await;
    assert!(text.starts_with("HTTP/1.1 502 "), "{text}");
    assert!(text.contains("no API socket"), "{text}");
}

#[tokio::test]
async fn engine_not_listening_is_an_http_error_for_the_client() {
    let agent = HostAgent::start();
    let proxy = ApiProxy::start(transport(&agent)).expect("proxy");
    let text = refused_response(&proxy).await;
    assert!(text.starts_with("HTTP/1.1 502 "), "{text}");
    assert!(text.contains("engine-api.sock"), "{text}");
}

#[tokio::test]
async fn agent_gone_is_an_http_error_for_the_client() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gone = vcontainer::transport::UnixTransport::new(dir.path().join("nobody.sock"));
    let proxy = ApiProxy::start(Arc::new(gone)).expect("proxy");
    let text = refused_response(&proxy).await;
    assert!(text.starts_with("HTTP/1.1 502 "), "{text}");
    assert!(text.contains("cannot reach the agent"), "{text}");
}

/// The host-arch docker CLI of the guest's package version (fetched into the cache, building
/// the guest image first on a fresh machine) talks to the stand-in through the proxy.
#[tokio::test]
async fn real_docker_cli_works_through_the_proxy() {
    let arch = vcontainer_initramfs::Arch::host().expect("a supported host arch");
    let reporter = vcontainer::util::progress::Reporter::new("test", true, false);
    let mut cli = vcontainer::engine::host_cli::docker_cli(arch, false, &reporter)
        .await
        .expect("cache dir");
    if cli.is_none() {
        // The version comes from the guest image's packages: build it (cached afterwards).
        vcontainer::guest::boot_image::build_image(arch, Default::default(), &reporter)
            .await
            .expect("guest image");
        cli = vcontainer::engine::host_cli::docker_cli(arch, false, &reporter)
            .await
            .expect("cache dir");
    }
    let cli = cli.expect("host docker CLI");

    let agent = HostAgent::start();
    let _engine = start_engine(&api_socket(&agent));
    let proxy = ApiProxy::start(transport(&agent)).expect("proxy");
    let config = tempfile::tempdir().expect("config dir");
    let out = tokio::time::timeout(
        TIMEOUT,
        tokio::process::Command::new(&cli)
            .args([
                "version",
                "--format",
                "{{.Client.Version}} {{.Server.Version}}",
            ])
            .env(
                "DOCKER_HOST",
                format!("unix://{}", proxy.socket_path().display()),
            )
            .env("DOCKER_CONFIG", config.path())
            .env_remove("DOCKER_CONTEXT")
            .output(),
    )
    .await
    .expect("in time")
    .expect("run docker");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.trim_end().ends_with(" 99.1.2-standin"), "{stdout}");
    // The client is the package version the cache directory is named after.
    let client = stdout.split_whitespace().next().unwrap_or("");
    let dir = cli.parent().and_then(Path::file_name).expect("version dir");
    assert!(
        !client.is_empty() && dir.to_string_lossy().contains(client),
        "{stdout} vs {}",
        dir.to_string_lossy()
    );

    // run_host_docker: the exit code comes back; a failing command is non-zero.
    let t = transport(&agent);
    let ok = vcontainer::engine::host_cli::run_host_docker(
        Arc::clone(&t),
        &cli,
        &[
            "version".into(),
            "--format".into(),
            "{{.Server.Version}}".into(),
        ],
        config.path(),
    )
    .await
    .expect("run");
    assert_eq!(ok, 0);
    let failed = vcontainer::engine::host_cli::run_host_docker(
        t,
        &cli,
        &["image".into(), "inspect".into(), "nothing-here".into()],
        config.path(),
    )
    .await
    .expect("run");
    assert_ne!(failed, 0);
    // The user's ~/.docker was never needed; nothing was written into the private config.
    assert!(std::fs::read_dir(config.path())
        .expect("config")
        .next()
        .is_none());
}
