//! A guest that starts a bulk stream and then goes silent (hung, or hostile) must not hold the
//! host forever: after the stall deadline the export fails naming the stall, and no output file
//! remains. Its own test binary, because it sets the deadline through the environment.

use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::net::UnixListener;
use vcontainer::ops::export_storage;
use vcontainer::session::STALL_ENV;
use vcontainer::transport::UnixTransport;
use vcontainer_protocol::{
    encode_frame, read_frame_async, AgentMsg, EngineKind, Hello, HostMsg, PROTOCOL_VERSION,
};

#[tokio::test]
async fn a_stream_that_never_ends_hits_the_stall_deadline_and_leaves_no_file() {
    // The only test in this binary: nothing else reads the variable concurrently.
    std::env::set_var(STALL_ENV, "2");
    let dir = tempfile::tempdir().expect("tempdir");
    let sock = dir.path().join("fake.sock");
    let listener = UnixListener::bind(&sock).expect("bind");
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.expect("accept");
        let hello = AgentMsg::Hello(Hello {
            protocol: PROTOCOL_VERSION,
            agent_version: "9.9.9-fake".into(),
            arch: "x86_64".into(),
            engine: EngineKind::None,
            capabilities: vec![],
        });
        let frame = |m: &AgentMsg| encode_frame(m).expect("encode");
        s.write_all(&frame(&hello)).await.expect("hello");
        let _: Result<HostMsg, _> = read_frame_async(&mut s).await;
        s.write_all(&frame(&AgentMsg::Data(vec![7u8; 4096])))
            .await
            .expect("data");
        // Connection open, nothing more: a hung guest.
        tokio::time::sleep(Duration::from_secs(120)).await;
    });
    let out = dir.path().join("out");
    std::fs::create_dir(&out).expect("mkdir");
    let started = Instant::now();
    let err = export_storage(
        &UnixTransport::new(sock),
        &out.join("storage.tar"),
        &mut |_| {},
    )
    .await
    .expect_err("a stalled stream must fail")
    .to_string();
    let took = started.elapsed();
    assert!(err.contains("stalled") && err.contains(STALL_ENV), "{err}");
    assert!(took < Duration::from_secs(30), "gave up after {took:?}");
    let left: Vec<_> = std::fs::read_dir(&out)
        .expect("ls")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert!(left.is_empty(), "no output may remain: {left:?}");
}
