//! Protocol-level tests of interactive (TTY) sessions: `exec_interactive` against the real agent
//! binary serving a unix socket on the host, the process on a real pseudo-terminal.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::HostAgent;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use vcontainer::ops::{exec_interactive, OpError, TtyIo};
use vcontainer_protocol::{ExecRequest, ExitStatus, WindowSize};

const T: Duration = Duration::from_secs(15);

fn argv(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

fn size(rows: u16, cols: u16) -> WindowSize {
    WindowSize { rows, cols }
}

/// An interactive session driven by the test: keystrokes in, output collected, resizes and
/// signals on demand.
struct Session {
    input: Option<DuplexStream>,
    output: Arc<Mutex<Vec<u8>>>,
    cursor: usize,
    resize: mpsc::Sender<WindowSize>,
    signal: mpsc::Sender<i32>,
    done: JoinHandle<Result<ExitStatus, OpError>>,
    collector: JoinHandle<()>,
}

impl Session {
    fn start(agent: &HostAgent, req: ExecRequest, initial: WindowSize) -> Self {
        let (input, input_far) = tokio::io::duplex(64 * 1024);
        let (output_far, mut output_rx) = tokio::io::duplex(64 * 1024);
        let (resize, resizes) = mpsc::channel(4);
        let (signal, signals) = mpsc::channel(4);
        let transport = agent.transport();
        let done = tokio::spawn(async move {
            let io = TtyIo {
                input: Box::new(input_far),
                output: Box::new(output_far),
                size: initial,
                resizes: Some(resizes),
                signals: Some(signals),
            };
            exec_interactive(&transport, req, io).await
        });
        let output = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&output);
        let collector = tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            while let Ok(n) = output_rx.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                sink.lock().expect("lock").extend_from_slice(&buf[..n]);
            }
        });
        Self {
            input: Some(input),
            output,
            cursor: 0,
            resize,
            signal,
            done,
            collector,
        }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.output.lock().expect("lock")).into_owned()
    }

    async fn send(&mut self, bytes: &[u8]) {
        let input = self.input.as_mut().expect("input still open");
        input.write_all(bytes).await.expect("send keystrokes");
    }

    /// Ends the input: the host sends `StdinEnd`.
    fn close_input(&mut self) {
        self.input = None;
    }

    /// Waits for `pattern` after the previous match.
    async fn expect(&mut self, pattern: &str) {
        let deadline = Instant::now() + T;
        loop {
            {
                let out = self.output.lock().expect("lock");
                let unread = &out[self.cursor.min(out.len())..];
                if let Some(at) = unread
                    .windows(pattern.len())
                    .position(|w| w == pattern.as_bytes())
                {
                    self.cursor += at + pattern.len();
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "timeout waiting for {pattern:?}; output:\n{}",
                self.text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits for the exit status and the complete output.
    async fn finish(self) -> (ExitStatus, String) {
        let status = tokio::time::timeout(T, self.done)
            .await
            .expect("session did not end")
            .expect("session task")
            .expect("exec_interactive");
        tokio::time::timeout(T, self.collector)
            .await
            .expect("output did not end")
            .expect("collector task");
        let out = String::from_utf8_lossy(&self.output.lock().expect("lock")).into_owned();
        (status, out)
    }
}

/// An interactive `sh` with a fixed prompt; waits for the first prompt.
async fn shell(agent: &HostAgent, initial: WindowSize) -> Session {
    let req = ExecRequest {
        argv: argv(&["sh"]),
        env: vec![("PS1".into(), "$ ".into())],
        ..Default::default()
    };
    let mut s = Session::start(agent, req, initial);
    s.expect("$ ").await;
    s
}

async fn run(agent: &HostAgent, req: ExecRequest, initial: WindowSize) -> (ExitStatus, String) {
    let mut s = Session::start(agent, req, initial);
    s.close_input();
    s.finish().await
}

#[tokio::test]
async fn the_process_runs_on_a_pty_with_term_set() {
    let agent = HostAgent::start();
    let req = ExecRequest {
        argv: argv(&[
            "sh",
            "-c",
            "tty; [ -t 0 ] && [ -t 1 ] && [ -t 2 ] && echo all-tty; echo TERM=$TERM; echo err >&2",
        ]),
        ..Default::default()
    };
    let (status, out) = run(&agent, req, size(24, 80)).await;
    assert_eq!(status, ExitStatus::Code(0), "{out}");
    assert!(out.starts_with("/dev/pts/"), "{out}");
    assert!(out.contains("all-tty\r\n"), "{out}");
    assert!(out.contains("TERM=xterm-256color\r\n"), "{out}");
    // stderr is on the terminal too: it arrives with stdout.
    assert!(out.contains("err\r\n"), "{out}");
}

#[tokio::test]
async fn the_requests_term_wins() {
    let agent = HostAgent::start();
    let req = ExecRequest {
        argv: argv(&["sh", "-c", "echo TERM=$TERM"]),
        env: vec![("TERM".into(), "vt100".into())],
        ..Default::default()
    };
    let (_, out) = run(&agent, req, size(24, 80)).await;
    assert_eq!(out, "TERM=vt100\r\n");
}

#[tokio::test]
async fn the_initial_size_is_the_terminals_size() {
    let agent = HostAgent::start();
    let req = ExecRequest {
        argv: argv(&["stty", "size"]),
        ..Default::default()
    };
    let (status, out) = run(&agent, req, size(33, 101)).await;
    assert_eq!(status, ExitStatus::Code(0));
    assert_eq!(out, "33 101\r\n");
}

#[tokio::test]
async fn a_resize_is_seen_later_in_the_same_session_and_the_exit_code_comes_back() {
    let agent = HostAgent::start();
    let mut s = shell(&agent, size(24, 80)).await;
    s.send(b"stty size\n").await;
    s.expect("24 80\r\n").await;
    s.resize.send(size(50, 132)).await.expect("resize");
    // The resize frame and the next keystrokes travel on one connection, in order.
    s.send(b"stty size\n").await;
    s.expect("50 132\r\n").await;
    s.send(b"exit 7\n").await;
    let (status, out) = s.finish().await;
    assert_eq!(status, ExitStatus::Code(7), "{out}");
}

#[tokio::test]
async fn a_resize_reaches_a_program_that_handles_sigwinch_only_later() {
    // Like the engine CLI right after `exec -it` started: the resize comes before the program
    // handles SIGWINCH, so the kernel's one signal is lost; the agent sends it again.
    let agent = HostAgent::start();
    let req = ExecRequest {
        argv: argv(&[
            "sh",
            "-c",
            "echo started; sleep 0.5; trap 'stty size; exit 0' WINCH; echo handler; \
             while :; do sleep 0.1; done",
        ]),
        ..Default::default()
    };
    let mut s = Session::start(&agent, req, size(24, 80));
    s.expect("started").await;
    s.resize.send(size(50, 132)).await.expect("resize");
    s.expect("handler").await;
    s.expect("50 132\r\n").await;
    let (status, out) = s.finish().await;
    assert_eq!(status, ExitStatus::Code(0), "{out}");
}

#[tokio::test]
async fn ctrl_c_interrupts_the_foreground_command_and_the_shell_survives() {
    let agent = HostAgent::start();
    let mut s = shell(&agent, size(24, 80)).await;
    let started = Instant::now();
    s.send(b"sleep 100\n").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    s.send(b"\x03").await;
    s.send(b"echo status=$?\n").await;
    s.expect("status=130").await;
    assert!(started.elapsed() < Duration::from_secs(20));
    s.send(b"exit\n").await;
    let (status, out) = s.finish().await;
    assert_eq!(status, ExitStatus::Code(0), "{out}");
}

#[tokio::test]
async fn ctrl_d_ends_cat() {
    let agent = HostAgent::start();
    let req = ExecRequest {
        argv: argv(&["cat"]),
        ..Default::default()
    };
    let mut s = Session::start(&agent, req, size(24, 80));
    s.send(b"hello\n").await;
    // The terminal echoes the line, then cat writes it back.
    s.expect("hello\r\nhello\r\n").await;
    s.send(b"\x04").await;
    let (status, out) = s.finish().await;
    assert_eq!(status, ExitStatus::Code(0), "{out}");
}

#[tokio::test]
async fn the_end_of_input_ends_cat() {
    let agent = HostAgent::start();
    let req = ExecRequest {
        argv: argv(&["cat"]),
        ..Default::default()
    };
    let mut s = Session::start(&agent, req, size(24, 80));
    s.send(b"line one\n").await;
    s.expect("line one\r\nline one\r\n").await;
    s.close_input();
    let (status, out) = s.finish().await;
    assert_eq!(status, ExitStatus::Code(0), "{out}");
}

#[tokio::test]
async fn exit_codes_and_signals_come_back() {
    let agent = HostAgent::start();
    let req = ExecRequest {
        argv: argv(&["sh", "-c", "exit 42"]),
        ..Default::default()
    };
    assert_eq!(run(&agent, req, size(24, 80)).await.0, ExitStatus::Code(42));

    let req = ExecRequest {
        argv: argv(&["sleep", "100"]),
        ..Default::default()
    };
    let s = Session::start(&agent, req, size(24, 80));
    tokio::time::sleep(Duration::from_millis(300)).await;
    s.signal.send(15).await.expect("signal");
    let (status, _) = s.finish().await;
    assert_eq!(status, ExitStatus::Signal(15));
}

#[tokio::test]
async fn a_missing_program_is_an_error_not_a_hang() {
    let agent = HostAgent::start();
    let req = ExecRequest {
        argv: argv(&["no-such-program-here"]),
        ..Default::default()
    };
    let mut s = Session::start(&agent, req, size(24, 80));
    s.close_input();
    let res = tokio::time::timeout(T, s.done)
        .await
        .expect("session did not end")
        .expect("task");
    let err = res.expect_err("missing program");
    assert!(err.to_string().contains("command not found"), "{err}");
}

#[tokio::test]
async fn a_background_process_holding_the_terminal_does_not_hold_up_the_exit() {
    let agent = HostAgent::start();
    let req = ExecRequest {
        // The background sleep keeps the terminal open (stdout, stderr) and ignores the hangup.
        argv: argv(&["sh", "-c", "trap '' HUP; sleep 10 & echo started"]),
        ..Default::default()
    };
    let started = Instant::now();
    let (status, out) = run(&agent, req, size(24, 80)).await;
    assert_eq!(status, ExitStatus::Code(0), "{out}");
    assert!(out.contains("started"), "{out}");
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );
}

/// Whether `pid` is gone (or a zombie nobody reaped yet, which runs no code).
fn is_gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().next().map(|s| s == "Z"))
            .unwrap_or(true),
    }
}

fn number_after(out: &str, key: &str) -> i32 {
    let at = out.find(key).unwrap_or_else(|| panic!("{key} in {out}")) + key.len();
    out[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .expect("pid")
}

#[tokio::test]
async fn closing_the_connection_mid_session_leaves_no_process_behind() {
    let agent = HostAgent::start();
    let mut s = shell(&agent, size(24, 80)).await;
    s.send(b"echo SHELL=$$\n").await;
    s.expect("\nSHELL=").await;
    // A job of the interactive shell: its own process group, ignoring SIGHUP.
    s.send(b"sh -c 'trap \"\" HUP; echo JOB=$$; exec sleep 1000'\n")
        .await;
    s.expect("\nJOB=").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let out = s.text();
    let shell_pid = number_after(&out, "\nSHELL=");
    let job_pid = number_after(&out, "\nJOB=");
    assert!(!is_gone(shell_pid) && !is_gone(job_pid), "{out}");

    // The host goes away: the session task is dropped and the connection closes.
    s.done.abort();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !(is_gone(shell_pid) && is_gone(job_pid)) {
        assert!(
            Instant::now() < deadline,
            "left behind: shell {} job {}",
            !is_gone(shell_pid),
            !is_gone(job_pid)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
