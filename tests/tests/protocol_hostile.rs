//! A fake agent that misbehaves: the host must reject every bad frame with a clear error and
//! leave no output file behind.

use std::future::Future;
use std::path::{Path, PathBuf};

use tokio::io::AsyncWriteExt;
use tokio::net::{UnixListener, UnixStream};
use vcontainer::ops::{export_storage, status};
use vcontainer::transport::UnixTransport;
use vcontainer_protocol::{
    encode_frame, read_frame_async, AgentMsg, EngineKind, Hello, HostMsg, StreamDigest,
    PROTOCOL_VERSION,
};

fn hello(protocol: u32) -> AgentMsg {
    AgentMsg::Hello(Hello {
        protocol,
        agent_version: "9.9.9-fake".into(),
        arch: "x86_64".into(),
        engine: EngineKind::None,
        capabilities: vec![],
    })
}

/// Serves exactly one connection with `script`, which gets the raw stream after reading nothing.
async fn fake_agent<F, Fut>(dir: &Path, script: F) -> UnixTransport
where
    F: FnOnce(UnixStream) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let path: PathBuf = dir.join("fake.sock");
    let listener = UnixListener::bind(&path).expect("bind");
    tokio::spawn(async move {
        let (s, _) = listener.accept().await.expect("accept");
        script(s).await;
    });
    UnixTransport::new(path)
}

async fn send(s: &mut UnixStream, msg: &AgentMsg) {
    s.write_all(&encode_frame(msg).expect("encode"))
        .await
        .expect("write");
}

#[tokio::test]
async fn a_version_mismatch_names_both_versions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let t = fake_agent(dir.path(), |mut s| async move {
        send(&mut s, &hello(PROTOCOL_VERSION + 41)).await;
    })
    .await;
    let err = status(&t).await.expect_err("mismatch").to_string();
    assert!(
        err.contains(&format!("host speaks version {PROTOCOL_VERSION}")),
        "{err}"
    );
    assert!(
        err.contains(&format!("version {}", PROTOCOL_VERSION + 41)),
        "{err}"
    );
    assert!(err.contains("9.9.9-fake"), "{err}");
}

#[tokio::test]
async fn an_oversized_frame_is_rejected_without_allocating() {
    let dir = tempfile::tempdir().expect("tempdir");
    let t = fake_agent(dir.path(), |mut s| async move {
        send(&mut s, &hello(PROTOCOL_VERSION)).await;
        let _: Result<HostMsg, _> = read_frame_async(&mut s).await;
        s.write_all(&u32::MAX.to_le_bytes()).await.expect("write");
        s.write_all(&[0u8; 64]).await.expect("write");
    })
    .await;
    let err = status(&t).await.expect_err("oversized").to_string();
    assert!(err.contains("exceeds the maximum"), "{err}");
}

#[tokio::test]
async fn a_malformed_frame_is_a_protocol_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let t = fake_agent(dir.path(), |mut s| async move {
        send(&mut s, &hello(PROTOCOL_VERSION)).await;
        let _: Result<HostMsg, _> = read_frame_async(&mut s).await;
        // Variant 250 of AgentMsg does not exist.
        s.write_all(&[2, 0, 0, 0, 250, 1]).await.expect("write");
    })
    .await;
    let err = status(&t).await.expect_err("malformed").to_string();
    assert!(err.contains("malformed"), "{err}");
}

#[tokio::test]
async fn a_frame_whose_payload_lies_about_its_length_is_malformed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let t = fake_agent(dir.path(), |mut s| async move {
        send(&mut s, &hello(PROTOCOL_VERSION)).await;
        let _: Result<HostMsg, _> = read_frame_async(&mut s).await;
        // A well-framed postcard payload whose inner byte-vector length (varint 100) runs past
        // the frame's end: a decoder that trusted it would read beyond the frame.
        let data = encode_frame(&AgentMsg::Data(vec![1, 2, 3])).expect("encode");
        let variant = data[4];
        s.write_all(&[3, 0, 0, 0, variant, 100, 1])
            .await
            .expect("write");
    })
    .await;
    let err = status(&t).await.expect_err("malformed").to_string();
    assert!(err.contains("malformed"), "{err}");
}

async fn export_against(
    script_bytes: Vec<AgentMsg>,
    close_early: bool,
) -> (String, PathBuf, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let t = fake_agent(dir.path(), move |mut s| async move {
        send(&mut s, &hello(PROTOCOL_VERSION)).await;
        let _: Result<HostMsg, _> = read_frame_async(&mut s).await;
        for m in &script_bytes {
            send(&mut s, m).await;
        }
        if !close_early {
            // Keep the connection open a moment so the host decides on content, not EOF.
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    })
    .await;
    let out = dir.path().join("out");
    std::fs::create_dir(&out).expect("mkdir");
    let dest = out.join("storage.tar");
    let err = export_storage(&t, &dest, &mut |_| {})
        .await
        .expect_err("must fail")
        .to_string();
    (err, out, dir)
}

fn assert_empty(dir: &Path) {
    let left: Vec<_> = std::fs::read_dir(dir)
        .expect("ls")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert!(left.is_empty(), "no output may remain: {left:?}");
}

#[tokio::test]
async fn an_end_frame_with_the_wrong_digest_leaves_no_file() {
    let mut d = StreamDigest::new();
    d.update(b"other bytes");
    let (err, out, _dir) = export_against(
        vec![
            AgentMsg::Data(b"some bytes".to_vec()),
            AgentMsg::End(d.finish()),
        ],
        false,
    )
    .await;
    assert!(err.contains("digest mismatch"), "{err}");
    assert_empty(&out);
}

#[tokio::test]
async fn a_truncated_stream_leaves_no_file() {
    let (err, out, _dir) = export_against(vec![AgentMsg::Data(vec![1u8; 1000])], true).await;
    assert!(err.contains("closed"), "{err}");
    assert_empty(&out);
}

#[tokio::test]
async fn an_unexpected_message_mid_stream_is_rejected() {
    let (err, out, _dir) = export_against(
        vec![
            AgentMsg::Data(vec![1u8; 10]),
            AgentMsg::Stdout(b"x".to_vec()),
        ],
        false,
    )
    .await;
    assert!(err.contains("unexpected message"), "{err}");
    assert_empty(&out);
}

#[tokio::test]
async fn a_stream_larger_than_its_cap_is_cut_off() {
    let dir = tempfile::tempdir().expect("tempdir");
    let t = fake_agent(dir.path(), |mut s| async move {
        send(&mut s, &hello(PROTOCOL_VERSION)).await;
        let _: Result<HostMsg, _> = read_frame_async(&mut s).await;
        // Asked for 10 bytes, the "agent" keeps sending.
        for _ in 0..50 {
            if s.write_all(&encode_frame(&AgentMsg::Data(vec![0u8; 100])).expect("encode"))
                .await
                .is_err()
            {
                return;
            }
        }
    })
    .await;
    let out = dir.path().join("out");
    std::fs::create_dir(&out).expect("mkdir");
    let err = vcontainer::ops::raw_source(&t, 10, &out.join("raw.bin"))
        .await
        .expect_err("over the cap")
        .to_string();
    assert!(err.contains("exceeded its limit of 10 bytes"), "{err}");
    assert_empty(&out);
}

/// An agent (or its VM) that vanishes while the host streams an image in: the error names the
/// lost connection, not the host-side reader that stopped because of it.
#[tokio::test]
async fn an_agent_that_hangs_up_mid_import_is_named_as_the_cause() {
    let dir = tempfile::tempdir().expect("tempdir");
    let layout = dir.path().join("layout");
    std::fs::create_dir(&layout).expect("mkdir");
    std::fs::write(
        layout.join("blob"),
        vcontainer::bench::fixture::pseudo_random(16 << 20),
    )
    .expect("write");
    let t = fake_agent(dir.path(), |mut s| async move {
        send(&mut s, &hello(PROTOCOL_VERSION)).await;
        let _: Result<HostMsg, _> = read_frame_async(&mut s).await;
        // Take a few chunks, then disappear.
        for _ in 0..3 {
            let _: Result<HostMsg, _> = read_frame_async(&mut s).await;
        }
    })
    .await;
    let err = vcontainer::ops::import_oci(
        &t,
        &layout,
        "hangup:1",
        &mut tokio::io::sink(),
        &mut tokio::io::sink(),
        &mut |_| {},
    )
    .await
    .expect_err("the agent hung up");
    let msg = err.to_string();
    assert!(msg.contains("connection closed"), "{msg}");
    assert!(!msg.contains("receiver went away"), "{msg}");
    assert!(err.is_connection_lost(), "{err:?}");
}
