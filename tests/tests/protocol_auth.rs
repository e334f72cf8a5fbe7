//! SetAuth against the real agent on the host: the auth file lands where the engine reads it,
//! mode 0600 in a 0700 directory; an oversized or corrupted stream is refused and writes nothing.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::HostAgent;
use vcontainer::ops::set_auth;
use vcontainer::session::AgentConn;
use vcontainer_protocol::{AgentMsg, HostMsg, Request, StreamDigest, MAX_AUTH_FILE_LEN};

fn mode(p: &std::path::Path) -> u32 {
    std::fs::metadata(p).expect("meta").permissions().mode() & 0o777
}

#[tokio::test]
async fn podman_auth_file_is_installed_private() {
    let agent = HostAgent::start_with(&["--engine", "podman"]);
    let auth = br#"{"auths":{"10.0.2.2:5000":{"auth":"dTpw"}}}"#;
    set_auth(&agent.transport(), auth).await.expect("set auth");
    let path = agent.state.join("run/containers/0/auth.json");
    assert_eq!(std::fs::read(&path).expect("auth file"), auth);
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(path.parent().expect("dir")), 0o700);
    // Replaced, not appended to.
    set_auth(&agent.transport(), b"{}").await.expect("again");
    assert_eq!(std::fs::read(&path).expect("auth file"), b"{}");
}

#[tokio::test]
async fn no_engine_has_no_auth_file_and_says_so() {
    let agent = HostAgent::start();
    let err = set_auth(&agent.transport(), b"{}")
        .await
        .expect_err("refused")
        .to_string();
    assert!(err.contains("reads no registry auth file"), "{err}");
}

#[tokio::test]
async fn oversized_or_corrupt_streams_are_refused() {
    let agent = HostAgent::start_with(&["--engine", "podman"]);
    let too_big = vec![b' '; MAX_AUTH_FILE_LEN as usize + 1];
    assert!(set_auth(&agent.transport(), &too_big).await.is_err());

    // Past the host-side check: the agent itself stops at the limit.
    let mut conn = AgentConn::request(&agent.transport(), Request::SetAuth)
        .await
        .expect("request");
    let mut digest = StreamDigest::new();
    for chunk in too_big.chunks(256 * 1024) {
        digest.update(chunk);
        conn.send(&HostMsg::Data(chunk.to_vec()))
            .await
            .expect("data");
    }
    conn.send(&HostMsg::End(digest.finish()))
        .await
        .expect("end");
    match conn.recv().await.expect("answer") {
        AgentMsg::Error(e) => assert!(e.message.contains("exceeds"), "{e:?}"),
        other => panic!("unexpected {other:?}"),
    }

    // A digest that does not match: nothing is written.
    let mut conn = AgentConn::request(&agent.transport(), Request::SetAuth)
        .await
        .expect("request");
    conn.send(&HostMsg::Data(b"{}".to_vec()))
        .await
        .expect("data");
    let mut wrong = StreamDigest::new();
    wrong.update(b"[]");
    conn.send(&HostMsg::End(wrong.finish())).await.expect("end");
    match conn.recv().await.expect("answer") {
        AgentMsg::Error(e) => assert!(e.message.contains("digest"), "{e:?}"),
        other => panic!("unexpected {other:?}"),
    }
    assert!(!agent.state.join("run/containers/0/auth.json").exists());
}
