//! Host test mode: `vcontainer-agent serve --listen-unix PATH [--dial-unix PATH]
//! [--engine none|docker|podman] [--state-dir DIR] [--debug]`.
//!
//! The same operation server as in the guest, unprivileged, on a unix socket. `--state-dir`
//! stands in for /mnt/state: engine storage is DIR/docker (docker) or DIR/storage (podman and
//! none), import staging is DIR/tmp. Shutdown ends the process instead of powering off.

use std::path::PathBuf;
use std::sync::Arc;

use thiserror::Error;
use tokio::net::UnixListener;
use tokio::signal::unix::{signal, SignalKind};
use vcontainer_protocol::EngineKind;

use crate::agent::Agent;
use crate::cmdline::parse_engine;
use crate::console::{self, uptime_ms};
use crate::control::{dial_unix, run_control, BootTimings};
use crate::engine::new_engine;
use crate::layout::Layout;
use crate::reaper::Reaper;
use crate::server::serve_unix;
use crate::stage2::prepare_state_dirs;
use crate::{debug, log};

pub const USAGE: &str = "usage: vcontainer-agent serve --listen-unix PATH [--dial-unix PATH] \
[--engine none|docker|podman] [--state-dir DIR] [--debug]";

#[derive(Debug, Error)]
pub enum ServeError {
    #[error("{0}\n{USAGE}")]
    Usage(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
}

fn io_error(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> ServeError {
    let context = context.into();
    move |source| ServeError::Io { context, source }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServeArgs {
    pub listen_unix: PathBuf,
    pub dial_unix: Option<PathBuf>,
    pub engine: EngineKind,
    /// Default: a fresh directory under $TMPDIR named after the pid.
    pub state_dir: Option<PathBuf>,
    pub debug: bool,
}

impl ServeArgs {
    /// Parses the arguments after `serve` (`--flag value` or `--flag=value`).
    pub fn parse<S: AsRef<str>>(args: &[S]) -> Result<Self, ServeError> {
        let mut listen_unix = None;
        let mut dial_unix = None;
        let mut engine = EngineKind::None;
        let mut state_dir = None;
        let mut debug = false;
        let mut it = args.iter().map(AsRef::as_ref);
        while let Some(arg) = it.next() {
            let (flag, inline) = match arg.split_once('=') {
                Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
                _ => (arg, None),
            };
            if flag == "--debug" {
                debug = true;
                continue;
            }
            let mut value = || {
                inline
                    .clone()
                    .or_else(|| it.next().map(str::to_string))
                    .ok_or_else(|| ServeError::Usage(format!("{flag} needs a value")))
            };
            match flag {
                "--listen-unix" => listen_unix = Some(PathBuf::from(value()?)),
                "--dial-unix" => dial_unix = Some(PathBuf::from(value()?)),
                "--state-dir" => state_dir = Some(PathBuf::from(value()?)),
                "--engine" => {
                    engine =
                        parse_engine(&value()?).map_err(|e| ServeError::Usage(e.to_string()))?
                }
                other => return Err(ServeError::Usage(format!("unknown argument {other}"))),
            }
        }
        let listen_unix =
            listen_unix.ok_or_else(|| ServeError::Usage("--listen-unix is required".into()))?;
        Ok(Self {
            listen_unix,
            dial_unix,
            engine,
            state_dir,
            debug,
        })
    }
}

/// A running host-mode agent: listening once [`HostAgent::start`] returns.
pub struct HostAgent {
    pub agent: Arc<Agent>,
    pub args: ServeArgs,
    pub state_dir: PathBuf,
    /// Outcome of the control handshake, if `--dial-unix` was given.
    pub control: Option<Result<(), String>>,
}

impl HostAgent {
    pub async fn start(args: ServeArgs) -> Result<Self, ServeError> {
        let init_ms = uptime_ms();
        console::set_debug(args.debug || console::debug_enabled());
        let state_dir = match &args.state_dir {
            Some(d) => d.clone(),
            None => std::env::temp_dir().join(format!("vcontainer-agent-{}", std::process::id())),
        };
        let layout = Layout::host(state_dir.clone(), args.engine);
        prepare_state_dirs(&layout)
            .map_err(io_error(format!("state dir {}", state_dir.display())))?;
        let reaper = Reaper::start(false).map_err(io_error("SIGCHLD handler"))?;
        let engine = new_engine(args.engine, layout.clone(), Arc::clone(&reaper), args.debug);
        let agent = Agent::new(layout, engine, reaper);

        // A stale socket from an earlier run would make bind fail.
        let _ = std::fs::remove_file(&args.listen_unix);
        let listener = UnixListener::bind(&args.listen_unix).map_err(io_error(format!(
            "listening on {}",
            args.listen_unix.display()
        )))?;
        tokio::spawn(serve_unix(listener, Arc::clone(&agent)));
        debug!(
            "serving on {} (engine {}, state {})",
            args.listen_unix.display(),
            args.engine,
            state_dir.display()
        );

        let mut control = None;
        if let Some(dial) = &args.dial_unix {
            let stream = dial_unix(dial)
                .await
                .map_err(io_error(format!("dialling {}", dial.display())))?;
            let timings = BootTimings {
                init_ms,
                rootfs_ms: init_ms,
            };
            let result = run_control(stream, Arc::clone(&agent), timings).await;
            if let Err(e) = &result {
                log!("control: {e}");
            }
            control = Some(result);
        }
        Ok(Self {
            agent,
            args,
            state_dir,
            control,
        })
    }

    /// Serves until a Shutdown operation completes.
    pub async fn wait(&self) {
        self.agent.wait_exit().await;
    }
}

impl Drop for HostAgent {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.args.listen_unix);
    }
}

/// The `serve` command: runs until Shutdown, SIGTERM or SIGINT (the latter two stop the engine
/// first, like in the guest).
pub async fn run(args: ServeArgs) -> Result<(), ServeError> {
    let mut term = signal(SignalKind::terminate()).map_err(io_error("SIGTERM handler"))?;
    let mut int = signal(SignalKind::interrupt()).map_err(io_error("SIGINT handler"))?;
    let host = HostAgent::start(args).await?;
    tokio::select! {
        _ = host.wait() => {}
        _ = term.recv() => shutdown_on_signal(&host.agent).await,
        _ = int.recv() => shutdown_on_signal(&host.agent).await,
    }
    Ok(())
}

async fn shutdown_on_signal(agent: &Agent) {
    if let Err(e) = agent.prepare_shutdown().await {
        log!("shutdown: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_cli() {
        let args = ServeArgs::parse(&[
            "--listen-unix",
            "/tmp/x.sock",
            "--dial-unix=/tmp/c.sock",
            "--engine",
            "podman",
            "--state-dir",
            "/tmp/s",
        ])
        .expect("parses");
        assert_eq!(args.listen_unix, PathBuf::from("/tmp/x.sock"));
        assert_eq!(args.dial_unix, Some(PathBuf::from("/tmp/c.sock")));
        assert_eq!(args.engine, EngineKind::Podman);
        assert_eq!(args.state_dir, Some(PathBuf::from("/tmp/s")));
        assert!(!args.debug);
    }

    #[test]
    fn rejects_bad_arguments() {
        assert!(ServeArgs::parse::<&str>(&[]).is_err());
        assert!(ServeArgs::parse(&["--listen-unix"]).is_err());
        assert!(ServeArgs::parse(&["--listen-unix", "a", "--engine", "lxc"]).is_err());
        assert!(ServeArgs::parse(&["--listen-unix", "a", "--bogus"]).is_err());
    }
}
