//! Interactive exec: the process runs on a pseudo-terminal in the guest; keystrokes go in as
//! `Stdin`, the terminal's output comes back as `Stdout`, window size changes as `Resize`.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use vcontainer_protocol::{AgentMsg, ExecRequest, ExitStatus, HostMsg, Request, WindowSize};

use super::exec::write_chunk;
use super::OpError;
use crate::session::{AgentConn, SessionError};
use crate::transport::Transport;
use crate::util::terminal::{is_terminal, window_size, RawMode, DEFAULT_WINDOW_SIZE};

/// Keystrokes are forwarded as they are read; a chunk is at most this long.
const INPUT_CHUNK: usize = 16 * 1024;

/// The local side of an interactive session.
pub struct TtyIo {
    /// Keystrokes (raw bytes: Ctrl-C is 0x03). Its end is sent as `StdinEnd`, which the guest
    /// turns into one end-of-file character.
    pub input: Box<dyn AsyncRead + Unpin + Send>,
    /// Where the terminal's output goes.
    pub output: Box<dyn AsyncWrite + Unpin + Send>,
    /// Window size the session starts with.
    pub size: WindowSize,
    /// Later window sizes.
    pub resizes: Option<mpsc::Receiver<WindowSize>>,
    /// Signals to deliver to the process's group.
    pub signals: Option<mpsc::Receiver<i32>>,
}

/// Aborts the session's helper tasks however the session ends (including the future being
/// dropped).
struct Tasks(Vec<JoinHandle<()>>);

impl Drop for Tasks {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

/// Runs `req` on a pseudo-terminal in the guest (`req.tty` is set from `io.size`) and returns its
/// exit status.
pub async fn exec_interactive(
    transport: &dyn Transport,
    mut req: ExecRequest,
    io: TtyIo,
) -> Result<ExitStatus, OpError> {
    let TtyIo {
        mut input,
        mut output,
        size,
        resizes,
        signals,
    } = io;
    req.tty = Some(size);
    req.stdin = true;
    let conn = AgentConn::request(transport, Request::Exec(req)).await?;
    let (mut reader, mut writer, _) = conn.into_split();

    // One task owns the write half; the forwarders feed it through a channel.
    let (tx, mut rx) = mpsc::channel::<HostMsg>(8);
    let mut tasks = Tasks(Vec::new());
    tasks.0.push(tokio::spawn(async move {
        while let Some(msg) = rx.recv().await {
            if writer.send(&msg).await.is_err() {
                break;
            }
        }
    }));
    let input_tx = tx.clone();
    tasks.0.push(tokio::spawn(async move {
        let mut buf = vec![0u8; INPUT_CHUNK];
        loop {
            match input.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if input_tx
                        .send(HostMsg::Stdin(buf[..n].to_vec()))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            }
        }
        let _ = input_tx.send(HostMsg::StdinEnd).await;
    }));
    if let Some(mut resizes) = resizes {
        let tx = tx.clone();
        tasks.0.push(tokio::spawn(async move {
            while let Some(size) = resizes.recv().await {
                if tx.send(HostMsg::Resize(size)).await.is_err() {
                    return;
                }
            }
        }));
    }
    if let Some(mut signals) = signals {
        let tx = tx.clone();
        tasks.0.push(tokio::spawn(async move {
            while let Some(sig) = signals.recv().await {
                if tx.send(HostMsg::Signal(sig)).await.is_err() {
                    return;
                }
            }
        }));
    }
    drop(tx);

    loop {
        match reader.recv().await? {
            // A pty merges both streams; Stderr is accepted all the same.
            AgentMsg::Stdout(chunk) | AgentMsg::Stderr(chunk) => {
                write_chunk(output.as_mut(), &chunk).await?
            }
            AgentMsg::Exited(status) => return Ok(status),
            other => return Err(SessionError::unexpected("Stdout or Exited", &other).into()),
        }
    }
}

/// [`exec_interactive`] on the CLI's own terminal: stdin in raw mode for the session if it is a
/// terminal (restored however the session ends, also when this future is dropped), the initial
/// size from the terminal (24x80 if unknown), SIGWINCH forwarded as `Resize`.
pub async fn exec_on_terminal(
    transport: &dyn Transport,
    req: ExecRequest,
) -> Result<ExitStatus, OpError> {
    let stdin = io::stdin();
    let stdout = io::stdout();
    // The terminal whose size the session follows: stdout if it is one, else stdin.
    let sized = [stdout.as_fd(), stdin.as_fd()]
        .into_iter()
        .find(|fd| is_terminal(*fd))
        .map(|fd| fd.try_clone_to_owned())
        .transpose()
        .map_err(|source| OpError::Io {
            context: "terminal".into(),
            source,
        })?;
    // SIGWINCH is watched before the size is read: a resize in between is not lost.
    let winch = sized
        .as_ref()
        .and_then(|_| signal(SignalKind::window_change()).ok());
    let size = sized
        .as_ref()
        .and_then(|fd| window_size(fd.as_fd()))
        .unwrap_or(DEFAULT_WINDOW_SIZE);
    let _raw = if is_terminal(stdin.as_fd()) {
        Some(
            RawMode::enable(stdin.as_fd()).map_err(|source| OpError::Io {
                context: "switching the terminal to raw mode".into(),
                source,
            })?,
        )
    } else {
        None
    };

    let mut tasks = Tasks(Vec::new());
    let resizes = match (sized, winch) {
        (Some(fd), Some(mut winch)) => {
            let (tx, rx) = mpsc::channel(4);
            tasks.0.push(tokio::spawn(async move {
                while winch.recv().await.is_some() {
                    if let Some(size) = window_size(fd.as_fd()) {
                        if tx.send(size).await.is_err() {
                            return;
                        }
                    }
                }
            }));
            Some(rx)
        }
        _ => None,
    };
    let io = TtyIo {
        input: stdin_reader(),
        output: Box::new(tokio::io::stdout()),
        size,
        resizes,
        signals: None,
    };
    exec_interactive(transport, req, io).await
}

/// The process's stdin as an async reader that needs no blocking thread where possible: a
/// blocking read on tokio's stdin cannot be cancelled and would hold up the runtime's shutdown
/// until the next keystroke.
fn stdin_reader() -> Box<dyn AsyncRead + Unpin + Send> {
    match NonBlockingReader::reopen_stdin() {
        Ok(r) => Box::new(r),
        // A regular file or /dev/null (no epoll; reads never hang) or no /proc.
        Err(_) => Box::new(tokio::io::stdin()),
    }
}

/// A terminal or pipe opened afresh (its own open file description, so O_NONBLOCK does not leak
/// to the shell sharing ours) and read through the reactor.
struct NonBlockingReader {
    fd: AsyncFd<OwnedFd>,
}

impl NonBlockingReader {
    fn reopen_stdin() -> io::Result<Self> {
        use rustix::fs::{fstat, open, FileType, Mode, OFlags};
        let st = fstat(io::stdin())?;
        if FileType::from_raw_mode(st.st_mode) == FileType::RegularFile {
            return Err(io::ErrorKind::Unsupported.into());
        }
        let fd = open(
            "/proc/self/fd/0",
            OFlags::RDONLY | OFlags::NOCTTY | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        // SAFETY: the AsyncFd owns the OwnedFd, which stays open and unchanged until dropped.
        #[allow(unsafe_code)]
        let fd = unsafe { AsyncFd::register(fd) }?;
        Ok(Self { fd })
    }
}

impl AsyncRead for NonBlockingReader {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            let mut guard = ready!(self.fd.poll_read_ready(cx))?;
            let unfilled = buf.initialize_unfilled();
            match guard.try_io(|fd| Ok(rustix::io::read(fd.get_ref(), &mut *unfilled)?)) {
                Ok(Ok(n)) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                // A hung-up terminal: end of input.
                Ok(Err(e)) if e.raw_os_error() == Some(libc::EIO) => return Poll::Ready(Ok(())),
                Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => continue,
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                Err(_would_block) => continue,
            }
        }
    }
}
