//! Protocol-level tests: the host's operations against the real agent binary serving a unix
//! socket on the host, running real processes.

mod common;

use common::HostAgent;
use vcontainer::ops::{exec, ExecIo};
use vcontainer_protocol::{ExecRequest, ExitStatus};

fn argv(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

async fn run(agent: &HostAgent, req: ExecRequest) -> (ExitStatus, Vec<u8>, Vec<u8>) {
    let mut out = Vec::new();
    let mut err = Vec::new();
    let status = exec(
        &agent.transport(),
        req,
        ExecIo {
            stdout: &mut out,
            stderr: &mut err,
            stdin: None,
            signals: None,
        },
    )
    .await
    .expect("exec");
    (status, out, err)
}

#[tokio::test]
async fn exec_separates_stdout_stderr_and_returns_the_exit_code() {
    let agent = HostAgent::start();
    let req = ExecRequest {
        argv: argv(&["sh", "-c", "echo out; echo err >&2; echo \"$X\"; exit 3"]),
        env: vec![("X".into(), "a 'quoted' $value".into())],
        ..Default::default()
    };
    let (status, out, err) = run(&agent, req).await;
    assert_eq!(status, ExitStatus::Code(3));
    assert_eq!(out, b"out\na 'quoted' $value\n");
    assert_eq!(err, b"err\n");
}

#[tokio::test]
async fn arguments_arrive_unchanged_without_a_shell() {
    let agent = HostAgent::start();
    let weird = ["a b", "'q'", "\"dq\"", "*", "$(echo no)", ";", ""];
    let mut a = vec!["printf".to_string(), "[%s]\\n".to_string()];
    a.extend(weird.iter().map(|s| s.to_string()));
    let (status, out, _) = run(
        &agent,
        ExecRequest {
            argv: a,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(status, ExitStatus::Code(0));
    let expected: String = weird.iter().map(|w| format!("[{w}]\n")).collect();
    assert_eq!(String::from_utf8_lossy(&out), expected);
}

#[tokio::test]
async fn a_signal_death_is_reported_as_a_signal() {
    let agent = HostAgent::start();
    let (status, _, _) = run(
        &agent,
        ExecRequest {
            argv: argv(&["sh", "-c", "kill -9 $$"]),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(status, ExitStatus::Signal(9));
    assert_eq!(status.shell_code(), 137);
}

#[tokio::test]
async fn stdin_is_forwarded_and_closed() {
    let agent = HostAgent::start();
    let mut out = Vec::new();
    let mut err = Vec::new();
    let input: &'static [u8] = b"line one\nline two\n";
    let status = exec(
        &agent.transport(),
        ExecRequest {
            argv: argv(&["wc", "-l"]),
            ..Default::default()
        },
        ExecIo {
            stdout: &mut out,
            stderr: &mut err,
            stdin: Some(Box::new(input)),
            signals: None,
        },
    )
    .await
    .expect("exec");
    assert_eq!(status, ExitStatus::Code(0));
    assert_eq!(String::from_utf8_lossy(&out).trim(), "2");
}

#[tokio::test]
async fn a_missing_program_is_a_clear_error() {
    let agent = HostAgent::start();
    let mut out = Vec::new();
    let mut err = Vec::new();
    let res = exec(
        &agent.transport(),
        ExecRequest {
            argv: argv(&["/nonexistent/prog"]),
            ..Default::default()
        },
        ExecIo {
            stdout: &mut out,
            stderr: &mut err,
            stdin: None,
            signals: None,
        },
    )
    .await;
    let msg = format!("{}", res.expect_err("must fail"));
    assert!(msg.contains("/nonexistent/prog"), "{msg}");
}

#[tokio::test]
async fn large_output_streams_in_order() {
    let agent = HostAgent::start();
    let (status, out, _) = run(
        &agent,
        ExecRequest {
            argv: argv(&["sh", "-c", "seq 1 200000"]),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(status, ExitStatus::Code(0));
    let expected: String = (1..=200000).map(|i| format!("{i}\n")).collect();
    assert_eq!(out.len(), expected.len());
    assert!(out == expected.as_bytes());
}
