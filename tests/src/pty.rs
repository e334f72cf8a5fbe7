//! Running a host command on a pseudo-terminal, as a person at a terminal would: the command is
//! the leader of a new session whose controlling terminal is the pty, the test types keystrokes
//! into the master, waits for patterns in the output and collects the exit status. For the
//! end-to-end tests of `run -it`, `vshell` and friends.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use rustix::pty::OpenptFlags;
use rustix::termios::Winsize;

/// Output seen so far, and whether the terminal was hung up (every slave holder closed it).
#[derive(Default)]
struct Output {
    bytes: Vec<u8>,
    closed: bool,
}

type Shared = Arc<(Mutex<Output>, Condvar)>;

/// A command running on a pty; killed (its whole session's group) when dropped.
pub struct PtyCommand {
    master: File,
    child: Child,
    output: Shared,
    /// Start of the output not yet consumed by [`PtyCommand::expect`].
    cursor: usize,
    status: Option<ExitStatus>,
}

fn winsize(rows: u16, cols: u16) -> Winsize {
    Winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    }
}

/// A pty pair, both ends close-on-exec so no other process the test spawns inherits them.
fn open_pty(rows: u16, cols: u16) -> io::Result<(OwnedFd, OwnedFd)> {
    let flags = OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC;
    let master = rustix::pty::openpt(flags)?;
    rustix::pty::grantpt(&master)?;
    rustix::pty::unlockpt(&master)?;
    let slave = rustix::pty::ioctl_tiocgptpeer(&master, flags)?;
    rustix::termios::tcsetwinsize(&master, winsize(rows, cols))?;
    Ok((master, slave))
}

impl PtyCommand {
    /// Spawns `cmd` on a new `rows`x`cols` pty (stdin, stdout and stderr are the slave; a new
    /// session with the pty as controlling terminal). `cmd`'s stdio settings are replaced.
    pub fn spawn(mut cmd: Command, rows: u16, cols: u16) -> io::Result<Self> {
        let (master, slave) = open_pty(rows, cols)?;
        cmd.stdin(Stdio::from(slave.try_clone()?))
            .stdout(Stdio::from(slave.try_clone()?))
            .stderr(Stdio::from(slave));
        // SAFETY: runs in the forked child before exec and only makes two raw system calls
        // (setsid, ioctl), both async-signal-safe; no allocation, no locks.
        #[allow(unsafe_code)]
        unsafe {
            cmd.pre_exec(|| {
                rustix::process::setsid()?;
                rustix::process::ioctl_tiocsctty(rustix::stdio::stdin())?;
                Ok(())
            });
        }
        let child = cmd.spawn()?;
        // The slave copies in `cmd` must go, or the master never sees the hangup.
        drop(cmd);

        let master = File::from(master);
        let mut reader = master.try_clone()?;
        let output: Shared = Arc::default();
        let shared = Arc::clone(&output);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                // EIO once every holder of the slave closed it.
                let n = match reader.read(&mut buf) {
                    Ok(0) | Err(_) => 0,
                    Ok(n) => n,
                };
                let (lock, cvar) = &*shared;
                let mut out = lock.lock().unwrap_or_else(|p| p.into_inner());
                if n == 0 {
                    out.closed = true;
                } else {
                    out.bytes.extend_from_slice(&buf[..n]);
                }
                cvar.notify_all();
                if n == 0 {
                    break;
                }
            }
        });
        Ok(Self {
            master,
            child,
            output,
            cursor: 0,
            status: None,
        })
    }

    /// The child's pid (also its session and process group id).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Types `bytes` (raw: `b"\x03"` is Ctrl-C, `b"\x04"` Ctrl-D at the start of a line).
    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.master.write_all(bytes)?;
        self.master.flush()
    }

    /// Changes the terminal's size; the kernel sends SIGWINCH to its foreground process group.
    pub fn resize(&self, rows: u16, cols: u16) -> io::Result<()> {
        rustix::termios::tcsetwinsize(self.master.as_fd(), winsize(rows, cols))?;
        Ok(())
    }

    /// Waits until `pattern` appears in the output after the previous match; returns the output
    /// from there up to and including the match. The error carries all output seen so far.
    pub fn expect(&mut self, pattern: &str, timeout: Duration) -> Result<String, String> {
        let deadline = Instant::now() + timeout;
        let (lock, cvar) = &*self.output;
        let mut out = lock.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            let unread = &out.bytes[self.cursor.min(out.bytes.len())..];
            if let Some(at) = find(unread, pattern.as_bytes()) {
                let end = at + pattern.len();
                let text = String::from_utf8_lossy(&unread[..end]).into_owned();
                self.cursor += end;
                return Ok(text);
            }
            let now = Instant::now();
            if out.closed || now >= deadline {
                let why = if out.closed {
                    "terminal closed"
                } else {
                    "timeout"
                };
                return Err(format!(
                    "{why} waiting for {pattern:?}; output so far:\n{}",
                    String::from_utf8_lossy(&out.bytes)
                ));
            }
            out = cvar
                .wait_timeout(out, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// All output so far.
    pub fn output(&self) -> String {
        let (lock, _) = &*self.output;
        let out = lock.lock().unwrap_or_else(|p| p.into_inner());
        String::from_utf8_lossy(&out.bytes).into_owned()
    }

    /// Waits for the command to exit; `None` if it did not within `timeout`.
    pub fn wait(&mut self, timeout: Duration) -> io::Result<Option<ExitStatus>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.status {
                return Ok(Some(s));
            }
            if let Some(s) = self.child.try_wait()? {
                self.status = Some(s);
                continue;
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the exit and for the terminal to hang up (the output is complete then, unless a
    /// background process keeps the slave open past `timeout`); returns status and all output.
    pub fn finish(mut self, timeout: Duration) -> io::Result<(Option<ExitStatus>, String)> {
        let deadline = Instant::now() + timeout;
        let status = self.wait(timeout)?;
        let (lock, cvar) = &*self.output;
        let mut out = lock.lock().unwrap_or_else(|p| p.into_inner());
        while !out.closed {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            out = cvar
                .wait_timeout(out, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        let text = String::from_utf8_lossy(&out.bytes).into_owned();
        drop(out);
        Ok((status, text))
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

impl Drop for PtyCommand {
    fn drop(&mut self) {
        if self.status.is_none() {
            let pgid = nix::unistd::Pid::from_raw(self.child.id() as i32);
            let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
            let _ = self.child.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Duration = Duration::from_secs(10);

    #[test]
    fn a_shell_on_a_pty_sees_a_terminal_its_size_and_keystrokes() {
        let mut cmd = Command::new("sh");
        cmd.env("PS1", "$ ");
        let mut pty = PtyCommand::spawn(cmd, 30, 90).expect("spawn sh");
        pty.expect("$ ", T).expect("prompt");
        pty.send(b"stty size; [ -t 0 ] && echo tty-yes\n")
            .expect("send");
        pty.expect("30 90", T).expect("size");
        pty.expect("tty-yes", T).expect("is a tty");
        pty.resize(41, 123).expect("resize");
        pty.send(b"stty size\n").expect("send");
        pty.expect("41 123", T).expect("new size");
        // Ctrl-C reaches the foreground job as SIGINT; the shell survives.
        pty.send(b"sleep 100\n").expect("send");
        std::thread::sleep(Duration::from_millis(300));
        pty.send(b"\x03").expect("ctrl-c");
        pty.send(b"echo status=$?\n").expect("send");
        pty.expect("status=130", T).expect("interrupted");
        pty.send(b"exit 5\n").expect("send");
        let (status, _) = pty.finish(T).expect("finish");
        assert_eq!(status.and_then(|s| s.code()), Some(5));
    }

    #[test]
    fn ctrl_d_ends_cat_and_the_output_is_complete() {
        let mut pty = PtyCommand::spawn(Command::new("cat"), 24, 80).expect("spawn cat");
        pty.send(b"hello\n").expect("send");
        // The terminal echoes the line, then cat writes it back.
        pty.expect("hello\r\nhello\r\n", T).expect("echo and cat");
        pty.send(b"\x04").expect("ctrl-d");
        let (status, out) = pty.finish(T).expect("finish");
        assert_eq!(status.and_then(|s| s.code()), Some(0), "{out}");
    }

    #[test]
    fn expect_times_out_with_the_output_so_far() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo something; sleep 5"]);
        let mut pty = PtyCommand::spawn(cmd, 24, 80).expect("spawn");
        let err = pty
            .expect("never", Duration::from_millis(300))
            .expect_err("no match");
        assert!(err.contains("something"), "{err}");
    }
}
