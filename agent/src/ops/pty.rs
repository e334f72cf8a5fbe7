//! Exec on a pseudo-terminal: the process is the leader of a new session whose controlling
//! terminal is a fresh pty of the requested size. The master end is pumped against the
//! connection: its output as `Stdout` frames, `Stdin` frames into it, `Resize` as TIOCSWINSZ (the
//! kernel then sends SIGWINCH to the foreground process group, which gets it again a few times
//! after, see [`RESIZE_RESIGNALS`]), `Signal` to the process group, `StdinEnd` as one VEOF
//! character.

use std::collections::VecDeque;
use std::fs;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;
use rustix::pty::OpenptFlags;
use rustix::termios::{SpecialCodeIndex, Winsize};
use tokio::io::unix::AsyncFd;
use tokio::sync::mpsc;
use tokio::time::Instant;
use vcontainer_protocol::{
    AgentMsg, ErrorKind, ExecRequest, ExitStatus, HostMsg, MessageName, ProtocolError, WindowSize,
    DATA_CHUNK_LEN,
};

use super::OpError;
use crate::agent::Agent;
use crate::conn::{FrameReader, FrameWriter};
use crate::debug;
use crate::process::BASE_ENV;

/// TERM of a session whose request does not set one.
const DEFAULT_TERM: &str = "xterm-256color";
/// After the process exited, output still in the pty is forwarded until the slave side is closed
/// (EIO) or nothing arrived for this long: a background grandchild holding the slave open must
/// not keep the operation alive.
const DRAIN_IDLE: Duration = Duration::from_millis(200);
/// … and never for longer than this in total (a grandchild that keeps writing).
const DRAIN_MAX: Duration = Duration::from_secs(2);
/// Input buffered for the terminal before the host's frames are no longer read (back-pressure).
const MAX_PENDING_INPUT: usize = 64 * 1024;
/// Between SIGHUP and SIGKILL when a session is torn down early.
const HANGUP_GRACE: Duration = Duration::from_millis(200);
/// The kernel sends SIGWINCH once, when the size changes; a program that is not handling it yet
/// loses it and keeps the old size for good. The guest's engine CLI is such a program for a
/// while: `docker exec -it` installs its SIGWINCH handler only after an API round trip that
/// follows the start of the exec (MonitorTtySize), when the user already sees the prompt. So the
/// foreground process group gets SIGWINCH again this long after the latest resize; a program that
/// already followed the resize reads an unchanged size and does nothing (the engine passes the
/// same size on, and the kernel does not signal the container's process for an unchanged size).
const RESIZE_RESIGNALS: [Duration; 4] = [
    Duration::from_millis(250),
    Duration::from_secs(1),
    Duration::from_secs(3),
    Duration::from_secs(10),
];

fn winsize(size: WindowSize) -> Winsize {
    Winsize {
        ws_row: size.rows,
        ws_col: size.cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    }
}

/// A new pty pair of `size`, both ends close-on-exec (so no other child inherits them), the
/// master non-blocking.
fn open_pty(size: WindowSize) -> io::Result<(OwnedFd, OwnedFd)> {
    let flags = OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC;
    let master = rustix::pty::openpt(flags)?;
    rustix::pty::grantpt(&master)?;
    rustix::pty::unlockpt(&master)?;
    let slave = match rustix::pty::ioctl_tiocgptpeer(&master, flags) {
        Ok(fd) => fd,
        // Kernels before 4.13: open the slave by name.
        Err(_) => {
            let name = rustix::pty::ptsname(&master, Vec::new())?;
            rustix::fs::open(
                name.as_c_str(),
                rustix::fs::OFlags::RDWR | rustix::fs::OFlags::NOCTTY | rustix::fs::OFlags::CLOEXEC,
                rustix::fs::Mode::empty(),
            )?
        }
    };
    rustix::termios::tcsetwinsize(&master, winsize(size))?;
    rustix::io::ioctl_fionbio(&master, true)?;
    Ok((master, slave))
}

/// The command for `req` on `slave`: base environment, TERM, stdio on the slave, and in the
/// child a new session with the slave as controlling terminal. Not `process::command`: a process
/// group leader cannot call setsid(), and the session makes the child its group leader anyway.
fn tty_command(req: &ExecRequest, slave: &OwnedFd) -> io::Result<Command> {
    let mut cmd = Command::new(&req.argv[0]);
    cmd.args(&req.argv[1..])
        .env_clear()
        .envs(BASE_ENV.iter().copied());
    if !req.env.iter().any(|(k, _)| k == "TERM") {
        cmd.env("TERM", DEFAULT_TERM);
    }
    cmd.envs(req.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::from(slave.try_clone()?))
        .stdout(Stdio::from(slave.try_clone()?))
        .stderr(Stdio::from(slave.try_clone()?));
    if let Some(cwd) = &req.cwd {
        cmd.current_dir(cwd);
    }
    // SAFETY: the closure runs in the forked child before exec and only makes two raw system
    // calls (setsid, ioctl), both async-signal-safe; it allocates nothing and takes no locks.
    #[allow(unsafe_code)]
    unsafe {
        cmd.pre_exec(|| {
            rustix::process::setsid()?;
            rustix::process::ioctl_tiocsctty(rustix::stdio::stdin())?;
            Ok(())
        });
    }
    Ok(cmd)
}

/// Pids of the processes in session `sid`, from /proc (empty if it cannot be read).
fn session_members(sid: i32) -> Vec<i32> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| {
            fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| stat_session(&stat))
                == Some(sid)
        })
        .collect()
}

/// The session field of a /proc/PID/stat line (the command name may contain spaces and ')').
fn stat_session(stat: &str) -> Option<i32> {
    let rest = &stat[stat.rfind(')')? + 1..];
    // state ppid pgrp session …
    rest.split_whitespace().nth(3)?.parse().ok()
}

/// SIGWINCH to the terminal's foreground process group, as the kernel sends it on a resize (the
/// session's leader's group if the terminal cannot tell).
fn signal_window_change(master: &OwnedFd, sid: i32) {
    let pgrp = rustix::termios::tcgetpgrp(master)
        .map(|p| p.as_raw_nonzero().get())
        .unwrap_or(sid);
    let _ = killpg(Pid::from_raw(pgrp), Signal::SIGWINCH);
}

fn signal_session(sid: i32, sig: Signal) {
    let _ = killpg(Pid::from_raw(sid), sig);
    // An interactive shell puts its jobs into process groups of their own.
    for pid in session_members(sid) {
        let _ = kill(Pid::from_raw(pid), sig);
    }
}

/// Tears the whole session down when dropped, unless disarmed: SIGHUP (and SIGCONT for stopped
/// jobs) as a terminal hangup would, then SIGKILL after a short grace.
struct SessionKiller {
    sid: Option<i32>,
}

impl SessionKiller {
    fn disarm(&mut self) {
        self.sid = None;
    }
}

impl Drop for SessionKiller {
    fn drop(&mut self) {
        let Some(sid) = self.sid else { return };
        signal_session(sid, Signal::SIGHUP);
        signal_session(sid, Signal::SIGCONT);
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn(async move {
                    tokio::time::sleep(HANGUP_GRACE).await;
                    signal_session(sid, Signal::SIGKILL);
                });
            }
            Err(_) => signal_session(sid, Signal::SIGKILL),
        }
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One non-blocking read from the master. `Ok(None)`: the slave side is closed (EIO).
async fn read_master(master: &AsyncFd<OwnedFd>, buf: &mut [u8]) -> io::Result<Option<usize>> {
    loop {
        let mut guard = master.readable().await?;
        match guard.try_io(|fd| Ok(rustix::io::read(fd.get_ref(), &mut *buf)?)) {
            Ok(Ok(0)) => return Ok(None),
            Ok(Ok(n)) => return Ok(Some(n)),
            Ok(Err(e)) if e.raw_os_error() == Some(libc::EIO) => return Ok(None),
            Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => continue,
            Ok(Err(e)) => return Err(e),
            Err(_would_block) => continue,
        }
    }
}

/// Writes some of the front of `pending` into the master.
async fn write_master(master: &AsyncFd<OwnedFd>, pending: &mut VecDeque<u8>) -> io::Result<()> {
    loop {
        let mut guard = master.writable().await?;
        let (front, _) = pending.as_slices();
        match guard.try_io(|fd| Ok(rustix::io::write(fd.get_ref(), front)?)) {
            Ok(Ok(n)) => {
                pending.drain(..n);
                return Ok(());
            }
            Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => continue,
            Ok(Err(e)) => return Err(e),
            Err(_would_block) => continue,
        }
    }
}

fn spawn_error(argv0: &str, e: io::Error) -> OpError {
    match e.kind() {
        io::ErrorKind::NotFound => {
            OpError::new(ErrorKind::NotFound, format!("{argv0}: command not found"))
        }
        io::ErrorKind::PermissionDenied => {
            OpError::new(ErrorKind::BadRequest, format!("{argv0}: permission denied"))
        }
        _ => OpError::io(format!("{argv0}: cannot run"), e),
    }
}

/// Runs `req` (argv checked non-empty, cwd checked, engine started by the caller) on a new pty of
/// `size` until it exits; returns its status (the caller sends `Exited`). Any early return
/// (connection closed, protocol error) hangs up and kills the whole session.
pub async fn exec_tty(
    agent: &Agent,
    req: &ExecRequest,
    size: WindowSize,
    mut rd: FrameReader,
    wr: &mut FrameWriter,
) -> Result<ExitStatus, OpError> {
    let argv0 = req.argv.first().map(String::as_str).unwrap_or_default();
    let (master, slave) =
        open_pty(size).map_err(|e| OpError::io("opening a pseudo-terminal", e))?;
    let veof = rustix::termios::tcgetattr(&slave)
        .map(|t| t.special_codes[SpecialCodeIndex::VEOF])
        .unwrap_or(0x04);
    let mut cmd = tty_command(req, &slave).map_err(|e| OpError::io("pseudo-terminal", e))?;
    let (child, mut exit) = agent
        .reaper
        .spawn(&mut cmd)
        .map_err(|e| spawn_error(argv0, e))?;
    let pid = child.id() as i32;
    let mut killer = SessionKiller { sid: Some(pid) };
    // Only the child may hold the slave: the master reads EIO once every holder closed it.
    drop(cmd);
    drop(child);
    drop(slave);
    // SAFETY: the AsyncFd owns the OwnedFd, which stays open and unchanged until it is dropped.
    #[allow(unsafe_code)]
    let master = unsafe { AsyncFd::register(master) }
        .map_err(|e| OpError::io("pseudo-terminal master", e.into()))?;

    // Host frames are read by their own task: a frame read is not cancel-safe inside select!.
    let (host_tx, mut host_rx) = mpsc::channel::<Result<HostMsg, ProtocolError>>(4);
    let _reader = AbortOnDrop(tokio::spawn(async move {
        loop {
            let msg = rd.recv().await;
            let last = msg.is_err();
            if host_tx.send(msg).await.is_err() || last {
                break;
            }
        }
    }));

    let mut buf = vec![0u8; DATA_CHUNK_LEN];
    let mut input: VecDeque<u8> = VecDeque::new();
    let mut output_open = true;
    let mut host_open = true;
    let mut eof_sent = false;
    // The latest resize and how many of its SIGWINCH repeats were sent.
    let mut resized: Option<(Instant, usize)> = None;
    let status = loop {
        let resignal_at = resized.map(|(at, sent)| at + RESIZE_RESIGNALS[sent]);
        tokio::select! {
            r = read_master(&master, &mut buf), if output_open => match r {
                Ok(Some(n)) => wr.send(&AgentMsg::Stdout(buf[..n].to_vec())).await?,
                Ok(None) => output_open = false,
                Err(e) => {
                    debug!("pty read: {e}");
                    output_open = false;
                }
            },
            s = &mut exit => {
                break s.map_err(|_| OpError::new(ErrorKind::Io, "lost the child's exit status"))?;
            }
            () = tokio::time::sleep_until(resignal_at.unwrap_or_else(Instant::now)),
                if resignal_at.is_some() =>
            {
                signal_window_change(master.get_ref(), pid);
                resized = resized
                    .map(|(at, sent)| (at, sent + 1))
                    .filter(|&(_, sent)| sent < RESIZE_RESIGNALS.len());
            }
            r = write_master(&master, &mut input), if !input.is_empty() => {
                if let Err(e) = r {
                    // The terminal is gone (hung up): further input goes nowhere.
                    debug!("pty write: {e}");
                    input.clear();
                }
            }
            m = host_rx.recv(), if host_open && input.len() < MAX_PENDING_INPUT => match m {
                Some(Ok(HostMsg::Stdin(bytes))) => input.extend(bytes),
                Some(Ok(HostMsg::StdinEnd)) => {
                    if !eof_sent {
                        eof_sent = true;
                        input.push_back(veof);
                    }
                }
                Some(Ok(HostMsg::Resize(size))) => {
                    match rustix::termios::tcsetwinsize(master.get_ref(), winsize(size)) {
                        Ok(()) => resized = Some((Instant::now(), 0)),
                        Err(e) => debug!("pty resize: {e}"),
                    }
                }
                Some(Ok(HostMsg::Signal(n))) => match Signal::try_from(n) {
                    Ok(sig) => {
                        let _ = killpg(Pid::from_raw(pid), sig);
                    }
                    Err(_) => debug!("ignoring unknown signal {n}"),
                },
                Some(Ok(other)) => {
                    return Err(ProtocolError::Unexpected {
                        expected: "Stdin, StdinEnd, Resize or Signal",
                        got: other.name(),
                    }
                    .into())
                }
                // The host closed the connection (or broke it): hang the session up.
                Some(Err(e)) => return Err(e.into()),
                None => host_open = false,
            },
        }
    };
    // Like a terminal whose controlling process exited: what the process wrote is still in the
    // pty; anything left running in the session gets the hangup when the master closes.
    killer.disarm();
    if output_open {
        drain(&master, &mut buf, wr).await?;
    }
    Ok(status)
}

/// Forwards what is left in the pty after the process exited, bounded by [`DRAIN_IDLE`] and
/// [`DRAIN_MAX`].
async fn drain(
    master: &AsyncFd<OwnedFd>,
    buf: &mut [u8],
    wr: &mut FrameWriter,
) -> Result<(), OpError> {
    let deadline = Instant::now() + DRAIN_MAX;
    loop {
        let idle = Instant::now() + DRAIN_IDLE;
        match tokio::time::timeout_at(idle.min(deadline), read_master(master, buf)).await {
            Ok(Ok(Some(n))) => wr.send(&AgentMsg::Stdout(buf[..n].to_vec())).await?,
            Ok(Ok(None)) | Ok(Err(_)) | Err(_) => return Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_field_of_a_stat_line() {
        assert_eq!(
            stat_session("123 (a) b) c) S 1 123 456 34816 123 4194560"),
            Some(456)
        );
        assert_eq!(stat_session("garbage"), None);
    }

    #[test]
    fn a_pty_has_the_requested_size() {
        let (master, slave) = open_pty(WindowSize {
            rows: 33,
            cols: 101,
        })
        .expect("pty");
        let ws = rustix::termios::tcgetwinsize(&slave).expect("winsize");
        assert_eq!((ws.ws_row, ws.ws_col), (33, 101));
        drop(master);
    }
}
