//! Tar streams and storage export against the real agent on the host.

mod common;

use std::fs;

use common::HostAgent;
use vcontainer::ops::{export_storage, get_tar, put_dir};
use vcontainer::session::AgentConn;
use vcontainer_protocol::{AgentMsg, HostMsg, Request, StreamDigest};
use vcontainer_tests::vm::tar_names;

fn make_tree(root: &std::path::Path) {
    fs::create_dir_all(root.join("sub/deeper")).expect("mkdir");
    fs::write(root.join("a.txt"), b"alpha\n").expect("write");
    fs::write(root.join("sub/deeper/b.bin"), vec![7u8; 300_000]).expect("write");
    std::os::unix::fs::symlink("a.txt", root.join("link")).expect("symlink");
}

#[tokio::test]
async fn put_then_get_round_trips_a_tree() {
    let agent = HostAgent::start();
    let src = tempfile::tempdir().expect("tempdir");
    make_tree(src.path());
    let guest_dest = agent.dir.path().join("guest/put");
    let sent = put_dir(
        &agent.transport(),
        src.path(),
        guest_dest.to_str().expect("utf8"),
        &mut |_| {},
    )
    .await
    .expect("put");
    assert!(sent > 300_000);
    assert_eq!(
        fs::read(guest_dest.join("sub/deeper/b.bin")).expect("read"),
        vec![7u8; 300_000]
    );
    assert_eq!(
        fs::read_link(guest_dest.join("link")).expect("link"),
        std::path::Path::new("a.txt")
    );

    let out = tempfile::tempdir().expect("tempdir");
    let tar_path = out.path().join("back.tar");
    get_tar(
        &agent.transport(),
        guest_dest.to_str().expect("utf8"),
        &tar_path,
        &mut |_| {},
    )
    .await
    .expect("get");
    let mut names: Vec<String> = tar_names(&tar_path)
        .into_iter()
        .map(|n| n.trim_end_matches('/').to_string())
        .collect();
    names.sort();
    assert!(
        names.contains(&"put/sub/deeper/b.bin".to_string()),
        "{names:?}"
    );
    assert!(names.contains(&"put/a.txt".to_string()), "{names:?}");
}

#[tokio::test]
async fn a_corrupted_stream_digest_is_rejected_by_the_agent() {
    let agent = HostAgent::start();
    let dest = agent.dir.path().join("guest/corrupt");
    let mut conn = AgentConn::request(
        &agent.transport(),
        Request::PutTar {
            dest: dest.to_string_lossy().into_owned(),
        },
    )
    .await
    .expect("request");
    // A valid tar, but an end frame that declares other content.
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(5);
    header.set_mode(0o644);
    header.set_cksum();
    builder
        .append_data(&mut header, "file", &b"hello"[..])
        .expect("append");
    let bytes = builder.into_inner().expect("tar");
    let mut wrong = StreamDigest::new();
    wrong.update(b"something else");
    conn.send(&HostMsg::Data(bytes)).await.expect("data");
    conn.send(&HostMsg::End(wrong.finish())).await.expect("end");
    match conn.recv().await.expect("reply") {
        AgentMsg::Error(e) => assert!(
            e.message.to_lowercase().contains("digest"),
            "message should name the digest: {}",
            e.message
        ),
        other => panic!("expected an error, got {other:?}"),
    }
    assert!(
        !dest.join("file").exists(),
        "nothing from a rejected stream may stay"
    );
}

#[tokio::test]
async fn storage_export_writes_the_storage_tree_atomically() {
    let agent = HostAgent::start();
    // Engine "none": the agent exports <state>/storage.
    fs::create_dir_all(agent.state.join("storage/overlay")).expect("mkdir");
    fs::write(agent.state.join("storage/overlay/layer"), b"layer data").expect("write");
    let out = tempfile::tempdir().expect("tempdir");
    let dest = out.path().join("storage.tar");
    let bytes = export_storage(&agent.transport(), &dest, &mut |_| {})
        .await
        .expect("export");
    assert_eq!(fs::metadata(&dest).expect("stat").len(), bytes);
    let names = tar_names(&dest);
    assert!(
        names.iter().any(|n| n.ends_with("overlay/layer")),
        "{names:?}"
    );
    let leftovers: Vec<_> = fs::read_dir(out.path())
        .expect("ls")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(leftovers.len(), 1, "only the finished tar: {leftovers:?}");
}
