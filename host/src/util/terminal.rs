//! The host's terminal for interactive sessions: raw mode while a remote pty drives it, its
//! window size, and whether a descriptor is a terminal at all.

use std::io::{self, IsTerminal};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::termios::{tcgetattr, tcgetwinsize, tcsetattr, OptionalActions, Termios};
use vcontainer_protocol::WindowSize;

/// Size of a session whose terminal size is unknown.
pub const DEFAULT_WINDOW_SIZE: WindowSize = WindowSize { rows: 24, cols: 80 };

/// Whether `fd` is a terminal.
pub fn is_terminal(fd: BorrowedFd<'_>) -> bool {
    fd.is_terminal()
}

/// The terminal's size (TIOCGWINSZ); `None` if `fd` is no terminal or reports a zero size.
pub fn window_size(fd: BorrowedFd<'_>) -> Option<WindowSize> {
    let ws = tcgetwinsize(fd).ok()?;
    (ws.ws_row > 0 && ws.ws_col > 0).then_some(WindowSize {
        rows: ws.ws_row,
        cols: ws.ws_col,
    })
}

/// A terminal in raw mode (cfmakeraw: no echo, no line editing, no signals from Ctrl-C/Ctrl-Z,
/// no output post-processing) until dropped, which restores the settings it found.
pub struct RawMode {
    fd: OwnedFd,
    saved: Termios,
}

impl RawMode {
    /// Switches the terminal behind `fd` to raw mode. Keeps its own duplicate of `fd`, so the
    /// guard may outlive the borrow.
    pub fn enable(fd: BorrowedFd<'_>) -> io::Result<Self> {
        let fd = fd.try_clone_to_owned()?;
        let saved = tcgetattr(&fd)?;
        let mut raw = saved.clone();
        raw.make_raw();
        // Drain: output already written is sent with the old settings (e.g. `\n` as `\r\n`).
        tcsetattr(&fd, OptionalActions::Drain, &raw)?;
        Ok(Self { fd, saved })
    }

    /// The terminal the guard holds.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        // Now, not Drain: a stopped output (XOFF) must not stop the restore.
        let _ = tcsetattr(&self.fd, OptionalActions::Now, &self.saved);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustix::pty::OpenptFlags;
    use rustix::termios::{InputModes, LocalModes, OutputModes};

    fn pty_pair() -> (OwnedFd, OwnedFd) {
        let flags = OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC;
        let master = rustix::pty::openpt(flags).expect("openpt");
        rustix::pty::grantpt(&master).expect("grantpt");
        rustix::pty::unlockpt(&master).expect("unlockpt");
        let slave = rustix::pty::ioctl_tiocgptpeer(&master, flags).expect("slave");
        (master, slave)
    }

    #[test]
    fn raw_mode_changes_and_restores_the_termios() {
        let (_master, slave) = pty_pair();
        let before = tcgetattr(&slave).expect("tcgetattr");
        assert!(before
            .local_modes
            .contains(LocalModes::ECHO | LocalModes::ICANON));
        {
            let _raw = RawMode::enable(slave.as_fd()).expect("raw mode");
            let raw = tcgetattr(&slave).expect("tcgetattr");
            assert!(!raw.local_modes.intersects(
                LocalModes::ECHO | LocalModes::ICANON | LocalModes::ISIG | LocalModes::IEXTEN
            ));
            assert!(!raw.output_modes.contains(OutputModes::OPOST));
            assert!(!raw.input_modes.contains(InputModes::ICRNL));
        }
        let after = tcgetattr(&slave).expect("tcgetattr");
        assert_eq!(after.local_modes, before.local_modes);
        assert_eq!(after.input_modes, before.input_modes);
        assert_eq!(after.output_modes, before.output_modes);
        assert_eq!(after.control_modes, before.control_modes);
    }

    #[test]
    fn window_size_of_a_pty_and_of_a_non_terminal() {
        let (master, slave) = pty_pair();
        let ws = rustix::termios::Winsize {
            ws_row: 40,
            ws_col: 132,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        rustix::termios::tcsetwinsize(&master, ws).expect("set size");
        assert!(is_terminal(slave.as_fd()));
        assert_eq!(
            window_size(slave.as_fd()),
            Some(WindowSize {
                rows: 40,
                cols: 132
            })
        );
        let file = tempfile::tempfile().expect("tempfile");
        assert!(!is_terminal(file.as_fd()));
        assert_eq!(window_size(file.as_fd()), None);
    }
}
