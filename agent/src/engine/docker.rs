//! dockerd with overlay2 storage and no networking setup beyond loopback: the guest only builds
//! and stores images.
//!
//! containerd is started by the agent, not by dockerd, and as early as possible (stage 2, before
//! the host connection): under TCG each Go daemon spends seconds loading and initialising, and a
//! dockerd-managed containerd both serialises those seconds and makes dockerd wait on gRPC
//! reconnect back-off (measured: ~4 s of dockerd idling after containerd was already up).
//! containerd's root is on the tmpfs: with the overlay2 graph driver it holds only runtime state,
//! so it need not be in the exported storage.

use std::fs::{self, OpenOptions};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;
use tokio::sync::{watch, Mutex};
use vcontainer_protocol::{EngineKind, ExitStatus, RegistryConfig, StorageDriver};

use super::{ping_docker, registry, storage, BoxFuture, Engine, EngineError};
use crate::fsops::file_tail;
use crate::layout::Layout;
use crate::process;
use crate::reaper::Reaper;
use crate::{debug, log};

/// Under TCG upstream measured 24–31 s to a usable dockerd; leave ample room.
const READY_DEADLINE: Duration = Duration::from_secs(120);
const PROBE_INTERVAL: Duration = Duration::from_millis(20);
const STOP_GRACE: Duration = Duration::from_secs(20);
const LOG_TAIL_BYTES: u64 = 4096;

struct Daemon {
    pid: Pid,
    /// `Some(status)` once the reaper saw dockerd exit.
    exited: watch::Receiver<Option<ExitStatus>>,
}

pub struct Docker {
    /// `dockerd`, found through the base PATH; tests point it elsewhere.
    program: String,
    layout: Layout,
    reaper: Arc<Reaper>,
    debug: bool,
    daemon: Mutex<Option<Daemon>>,
    containerd: Mutex<Option<Daemon>>,
    running: Arc<AtomicBool>,
    /// `--insecure-registry` flags from the boot configuration.
    registry_flags: std::sync::Mutex<Vec<String>>,
    /// `--storage-driver`, chosen from the boot configuration and the storage on disk.
    storage_driver: std::sync::Mutex<StorageDriver>,
}

impl Docker {
    pub fn new(layout: Layout, reaper: Arc<Reaper>, debug: bool) -> Self {
        Self {
            program: "dockerd".into(),
            layout,
            reaper,
            debug,
            daemon: Mutex::new(None),
            containerd: Mutex::new(None),
            running: Arc::new(AtomicBool::new(false)),
            registry_flags: std::sync::Mutex::new(Vec::new()),
            storage_driver: std::sync::Mutex::new(StorageDriver::default_for(EngineKind::Docker)),
        }
    }

    /// Runs `program` instead of `dockerd` (tests).
    pub fn with_program(mut self, program: impl Into<String>) -> Self {
        self.program = program.into();
        self
    }

    /// In the guest, the CLI's default socket (stage 2 makes /var/run a link to /run if the
    /// root image lacks it).
    fn driver(&self) -> StorageDriver {
        self.storage_driver
            .lock()
            .map(|d| *d)
            .unwrap_or(StorageDriver::default_for(EngineKind::Docker))
    }

    fn socket(&self) -> PathBuf {
        if self.layout.guest {
            PathBuf::from("/var/run/docker.sock")
        } else {
            self.layout.run_dir.join("docker.sock")
        }
    }

    fn log_path(&self) -> PathBuf {
        self.layout.log_dir.join("dockerd.log")
    }

    fn containerd_socket(&self) -> PathBuf {
        self.layout.run_dir.join("containerd/containerd.sock")
    }

    fn containerd_log_path(&self) -> PathBuf {
        self.layout.log_dir.join("containerd.log")
    }

    pub fn containerd_args(&self) -> Vec<String> {
        let run = &self.layout.run_dir;
        vec![
            format!("--address={}", self.containerd_socket().display()),
            format!("--root={}", run.join("containerd/root").display()),
            format!("--state={}", run.join("containerd/state").display()),
            format!("--log-level={}", if self.debug { "debug" } else { "warn" }),
        ]
    }

    /// Where a daemon's output goes: its log file, or with vcontainer.debug=1 the console, where
    /// the host keeps it (that is how to see where start-up time goes).
    fn open_log(&self, path: PathBuf) -> std::io::Result<(Stdio, Stdio)> {
        let path = if self.debug {
            PathBuf::from("/dev/console")
        } else {
            path
        };
        let log = OpenOptions::new().create(true).append(true).open(path)?;
        let err = log.try_clone()?;
        Ok((Stdio::from(log), Stdio::from(err)))
    }

    /// Spawns a supervised daemon; its exit status arrives on the returned watch channel.
    fn spawn_daemon(
        &self,
        program: &str,
        args: &[String],
        log: PathBuf,
    ) -> Result<Daemon, EngineError> {
        let spawn_err = |source| EngineError::Spawn {
            engine: "docker",
            source,
        };
        for dir in [&self.layout.log_dir, &self.layout.run_dir] {
            fs::create_dir_all(dir).map_err(spawn_err)?;
        }
        let (out, err) = self.open_log(log).map_err(spawn_err)?;
        let mut cmd = process::command(program, args, &[]);
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        let (child, exit_rx) = self.reaper.spawn(&mut cmd).map_err(spawn_err)?;
        let pid = Pid::from_raw(child.id() as i32);
        drop(child);
        debug!("{program} spawned as pid {pid}");
        let (exited_tx, exited) = watch::channel(None);
        tokio::spawn(async move {
            let status = exit_rx.await.ok();
            let _ = exited_tx.send(Some(status.unwrap_or(ExitStatus::Code(-1))));
        });
        Ok(Daemon { pid, exited })
    }

    /// Starts containerd unless it runs. Does not wait for it: dockerd, started right after,
    /// spends longer in its own start-up than containerd needs.
    async fn ensure_containerd(&self) -> Result<(), EngineError> {
        if self.program != "dockerd" {
            // Tests substitute a fake dockerd; there is no containerd to go with it.
            return Ok(());
        }
        let mut slot = self.containerd.lock().await;
        if slot.as_ref().is_some_and(|d| d.exited.borrow().is_none()) {
            return Ok(());
        }
        let _ = fs::remove_file(self.containerd_socket());
        *slot = Some(self.spawn_daemon(
            "containerd",
            &self.containerd_args(),
            self.containerd_log_path(),
        )?);
        Ok(())
    }

    /// dockerd's arguments. Everything that would touch networking the guest does not have
    /// (iptables, bridges, forwarding, userland proxies) is off; that is also work dockerd skips
    /// at start, which matters under TCG.
    pub fn args(&self) -> Vec<String> {
        let run = &self.layout.run_dir;
        let mut args = vec![
            format!("--data-root={}", self.layout.storage_dir().display()),
            format!("--exec-root={}", run.join("docker").display()),
            format!("--pidfile={}", run.join("docker.pid").display()),
            format!("--host=unix://{}", self.socket().display()),
            format!("--containerd={}", self.containerd_socket().display()),
            format!(
                "--storage-driver={}",
                self.driver().engine_name(EngineKind::Docker)
            ),
            "--iptables=false".into(),
            "--ip6tables=false".into(),
            "--ip-forward=false".into(),
            "--ip-masq=false".into(),
            "--bridge=none".into(),
            "--userland-proxy=false".into(),
        ];
        if let Ok(flags) = self.registry_flags.lock() {
            args.extend(flags.iter().cloned());
        }
        if self.debug {
            args.push("--debug".into());
            args.push("--log-level=debug".into());
        } else {
            args.push("--log-level=warn".into());
        }
        args
    }

    async fn start_locked(&self, slot: &mut Option<Daemon>) -> Result<(), EngineError> {
        if let Some(daemon) = slot.as_ref() {
            if daemon.exited.borrow().is_none() {
                return Ok(());
            }
            log!(
                "dockerd had exited ({:?}); restarting",
                *daemon.exited.borrow()
            );
            *slot = None;
        }
        self.ensure_containerd().await?;
        let _ = fs::remove_file(self.socket());
        let t0 = Instant::now();
        let Daemon { pid, mut exited } =
            self.spawn_daemon(&self.program, &self.args(), self.log_path())?;
        let running = Arc::clone(&self.running);
        let mut watch_exit = exited.clone();
        tokio::spawn(async move {
            let _ = watch_exit.wait_for(Option::is_some).await;
            running.store(false, Ordering::SeqCst);
        });

        let socket = self.socket();
        let mut socket_ms = None;
        loop {
            if let Some(status) = *exited.borrow() {
                return Err(EngineError::Exited {
                    engine: "docker",
                    status: Some(status),
                    waited_ms: t0.elapsed().as_millis(),
                    log_tail: file_tail(&self.log_path(), LOG_TAIL_BYTES),
                });
            }
            if socket_ms.is_none() && socket.exists() {
                socket_ms = Some(t0.elapsed().as_millis());
                debug!(
                    "dockerd socket appeared after {} ms",
                    t0.elapsed().as_millis()
                );
            }
            if socket_ms.is_some() && ping_docker(&socket).await {
                break;
            }
            if t0.elapsed() > READY_DEADLINE {
                let _ = killpg(pid, Signal::SIGKILL);
                return Err(EngineError::Timeout {
                    engine: "docker",
                    waited_ms: t0.elapsed().as_millis(),
                    log_tail: file_tail(&self.log_path(), LOG_TAIL_BYTES),
                });
            }
            tokio::select! {
                _ = exited.changed() => {}
                _ = tokio::time::sleep(PROBE_INTERVAL) => {}
            }
        }
        log!(
            "dockerd ready in {} ms (socket after {} ms)",
            t0.elapsed().as_millis(),
            socket_ms.unwrap_or(0)
        );
        self.running.store(true, Ordering::SeqCst);
        *slot = Some(Daemon { pid, exited });
        Ok(())
    }

    async fn stop_locked(&self, slot: &mut Option<Daemon>) -> Result<(), EngineError> {
        let t0 = Instant::now();
        // dockerd first (it stops its containers through containerd), then containerd.
        if let Some(daemon) = slot.take() {
            stop_daemon("dockerd", daemon).await;
        }
        self.running.store(false, Ordering::SeqCst);
        if let Some(daemon) = self.containerd.lock().await.take() {
            stop_daemon("containerd", daemon).await;
        }
        log!("docker engine stopped in {} ms", t0.elapsed().as_millis());
        Ok(())
    }
}

/// SIGTERM, then SIGKILL to the process group after [`STOP_GRACE`].
async fn stop_daemon(name: &str, mut daemon: Daemon) {
    if daemon.exited.borrow().is_some() {
        return;
    }
    let _ = kill(daemon.pid, Signal::SIGTERM);
    let stopped = matches!(
        tokio::time::timeout(STOP_GRACE, daemon.exited.wait_for(Option::is_some)).await,
        Ok(Ok(_))
    );
    if !stopped {
        log!(
            "{name} did not stop within {} s; killing it",
            STOP_GRACE.as_secs()
        );
        let _ = killpg(daemon.pid, Signal::SIGKILL);
        let _ = tokio::time::timeout(
            Duration::from_secs(5),
            daemon.exited.wait_for(Option::is_some),
        )
        .await;
    }
}

impl Engine for Docker {
    fn kind(&self) -> EngineKind {
        EngineKind::Docker
    }

    fn daemon_log(&self) -> Option<PathBuf> {
        Some(self.log_path())
    }

    fn layout(&self) -> &Layout {
        &self.layout
    }

    fn cli(&self) -> Option<&'static str> {
        Some("docker")
    }

    fn import_destination(&self, reference: &str) -> Option<String> {
        Some(format!("docker-daemon:{reference}"))
    }

    fn prepare(&self) -> BoxFuture<'_, Result<(), EngineError>> {
        Box::pin(self.ensure_containerd())
    }

    fn start(&self) -> BoxFuture<'_, Result<(), EngineError>> {
        Box::pin(async move {
            let mut slot = self.daemon.lock().await;
            self.start_locked(&mut slot).await
        })
    }

    fn stop(&self) -> BoxFuture<'_, Result<(), EngineError>> {
        Box::pin(async move {
            let mut slot = self.daemon.lock().await;
            self.stop_locked(&mut slot).await
        })
    }

    fn is_running(&self) -> bool {
        self.running.load(Ordering::SeqCst)
    }

    fn api_socket(&self) -> Option<PathBuf> {
        Some(self.socket())
    }

    /// The docker CLI's default for root (`$HOME/.docker/config.json`, HOME is /root).
    fn auth_file(&self) -> Option<PathBuf> {
        Some(if self.layout.guest {
            PathBuf::from("/root/.docker/config.json")
        } else {
            self.layout.state_dir.join("home/.docker/config.json")
        })
    }

    /// Insecure registries as dockerd flags (not daemon.json, which a flag for the same key
    /// would conflict with); the CA in `/etc/docker/certs.d/<host>/ca.crt`.
    fn configure_registry(&self, registry: &RegistryConfig) -> Result<(), EngineError> {
        let certs_d = self.layout.etc_dir.join("docker/certs.d");
        registry::install_ca(&certs_d, registry).map_err(|source| EngineError::Config {
            engine: "docker",
            path: certs_d.display().to_string(),
            source,
        })?;
        let flags = registry::docker_flags(registry);
        if !flags.is_empty() {
            log!("dockerd registry flags: {}", flags.join(" "));
        }
        if let Ok(mut slot) = self.registry_flags.lock() {
            *slot = flags;
        }
        Ok(())
    }

    fn configure_storage(
        &self,
        requested: Option<StorageDriver>,
    ) -> Result<StorageDriver, EngineError> {
        Ok(storage::configure(
            EngineKind::Docker,
            &self.storage_dir(),
            requested,
            &self.storage_driver,
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn guest_arguments() {
        let reaper = Reaper::start(false).expect("reaper");
        let docker = Docker::new(Layout::guest(EngineKind::Docker), reaper, false);
        let args = docker.args();
        assert!(args.contains(&"--data-root=/var/lib/docker".to_string()));
        assert!(args.contains(&"--host=unix:///var/run/docker.sock".to_string()));
        assert!(args.contains(&"--bridge=none".to_string()));
        assert!(args.contains(&"--log-level=warn".to_string()));
        assert_eq!(
            docker.import_destination("busybox:1"),
            Some("docker-daemon:busybox:1".into())
        );
        assert_eq!(docker.export_root(), (PathBuf::from("/var/lib"), "docker"));
        assert!(!args.iter().any(|a| a.starts_with("--insecure-registry")));
        assert_eq!(
            docker.auth_file(),
            Some(PathBuf::from("/root/.docker/config.json"))
        );
    }

    #[tokio::test]
    async fn registry_settings_become_flags_and_certs_d() {
        let dir = tempfile::tempdir().expect("tempdir");
        let reaper = Reaper::start(false).expect("reaper");
        let layout = Layout::host(dir.path().to_path_buf(), EngineKind::Docker);
        let docker = Docker::new(layout, reaper, false);
        docker
            .configure_registry(&RegistryConfig {
                default: Some("10.0.2.2:5000/ns".into()),
                insecure: vec!["10.0.2.2:5000".into()],
                secure: false,
                ca_cert: Some(b"PEM".to_vec()),
            })
            .expect("configure");
        assert!(docker
            .args()
            .contains(&"--insecure-registry=10.0.2.2:5000".to_string()));
        assert_eq!(
            fs::read(dir.path().join("etc/docker/certs.d/10.0.2.2:5000/ca.crt")).expect("ca"),
            b"PEM"
        );
    }

    #[tokio::test]
    async fn a_daemon_that_exits_fails_start_fast_with_its_log() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fake = dir.path().join("fake-dockerd");
        fs::write(
            &fake,
            "#!/bin/sh\necho 'fake dockerd: no overlay' >&2\nexit 1\n",
        )
        .expect("write");
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&fake, fs::Permissions::from_mode(0o755)).expect("chmod");
        let reaper = Reaper::start(false).expect("reaper");
        let layout = Layout::host(dir.path().join("state"), EngineKind::Docker);
        let docker = Docker::new(layout, reaper, false).with_program(fake.display().to_string());
        let started = tokio::time::timeout(Duration::from_secs(10), docker.start())
            .await
            .expect("fails fast, not at the deadline");
        match started {
            Err(EngineError::Exited {
                status, log_tail, ..
            }) => {
                assert_eq!(status, Some(ExitStatus::Code(1)));
                assert!(log_tail.contains("no overlay"), "{log_tail}");
            }
            other => panic!("unexpected: {other:?}"),
        }
        assert!(!docker.is_running());
        docker.stop().await.expect("stop is a no-op");
    }
}
