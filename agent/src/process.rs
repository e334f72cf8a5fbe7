//! How the agent spawns processes: no shell, a fixed base environment, a process group of their
//! own (so a cancelled operation can kill everything it started), pipes as tokio pipes.

use std::io;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::net::unix::pipe;

/// PATH and HOME every child starts from; the request's pairs are added on top.
pub const BASE_ENV: &[(&str, &str)] = &[
    (
        "PATH",
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    ),
    ("HOME", "/root"),
];

/// A command with the base environment and its own process group. Rust's std resets SIGPIPE to
/// its default disposition and clears the signal mask in the child, so tools like `tar | …` and
/// `yes` behave as under a shell.
pub fn command<S: AsRef<str>>(argv0: &str, args: &[S], env: &[(String, String)]) -> Command {
    let mut cmd = Command::new(argv0);
    cmd.args(args.iter().map(AsRef::as_ref))
        .env_clear()
        .envs(BASE_ENV.iter().copied())
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .process_group(0);
    cmd
}

/// The child's pipes as async pipes (each `None` unless it was `Stdio::piped()`).
pub struct AsyncPipes {
    pub stdin: Option<pipe::Sender>,
    pub stdout: Option<pipe::Receiver>,
    pub stderr: Option<pipe::Receiver>,
}

pub fn async_pipes(child: &mut Child) -> io::Result<AsyncPipes> {
    Ok(AsyncPipes {
        stdin: child
            .stdin
            .take()
            .map(|p| pipe::Sender::from_owned_fd(p.into()))
            .transpose()?,
        stdout: child
            .stdout
            .take()
            .map(|p| pipe::Receiver::from_owned_fd(p.into()))
            .transpose()?,
        stderr: child
            .stderr
            .take()
            .map(|p| pipe::Receiver::from_owned_fd(p.into()))
            .transpose()?,
    })
}

/// Kills a child's whole process group when dropped, unless disarmed: whatever way an operation
/// ends early (host closed the connection, protocol error, task dropped), nothing it started
/// outlives it.
pub struct GroupKiller {
    pgid: Option<Pid>,
}

impl GroupKiller {
    pub fn new(pid: u32) -> Self {
        Self {
            pgid: Some(Pid::from_raw(pid as i32)),
        }
    }

    pub fn kill_now(&mut self) {
        if let Some(pgid) = self.pgid {
            let _ = killpg(pgid, Signal::SIGKILL);
        }
    }

    pub fn disarm(&mut self) {
        self.pgid = None;
    }
}

impl Drop for GroupKiller {
    fn drop(&mut self) {
        self.kill_now();
    }
}
