//! Message types. Postcard is not self-describing: fields are matched by position, so changing
//! any type here is a wire change and needs a [`crate::PROTOCOL_VERSION`] bump. New enum variants
//! may only be appended.

use serde::{Deserialize, Serialize};

use crate::engine::EngineKind;
use crate::StreamEnd;

/// First frame of every connection, sent by the agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub protocol: u32,
    pub agent_version: String,
    /// `uname -m` of the guest, e.g. `aarch64`.
    pub arch: String,
    pub engine: EngineKind,
    pub capabilities: Vec<String>,
}

/// What the host tells a freshly booted agent on the control connection.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootConfig {
    /// The host follows with a tar stream ([`HostMsg::Data`] … [`HostMsg::End`]) of engine storage
    /// to seed the engine's storage directory with before the engine starts.
    pub seed_storage: bool,
    /// Start the engine now (false: start it on the first operation that needs it).
    pub start_engine: bool,
    /// Bring up the guest's network interface (QEMU user networking: 10.0.2.15/24, gateway and
    /// host at 10.0.2.2, DNS 10.0.2.3) before the engine starts.
    pub network: bool,
    /// Registry settings the engine is configured with before it starts.
    pub registry: RegistryConfig,
    /// Power off cleanly after this many seconds without an operation and without running
    /// containers (memory-resident mode); 0 never.
    pub idle_timeout_secs: u64,
    /// The guest lives only as long as this control connection: when it closes before a
    /// [`HostMsg::Detach`], the host that booted the VM is gone (killed, crashed) and the agent
    /// shuts down cleanly and powers off instead of running on unowned.
    pub host_bound: bool,
    /// The host has no route beyond itself (no default route): the guest's name lookups can only
    /// time out, so the agent makes them fail within a second (a pull of a missing image then
    /// fails at once instead of after 20–30 s of DNS retries). A registry on the host (10.0.2.2)
    /// is still reached.
    pub host_offline: bool,
    /// The storage driver to start the engine with; `None`: the one the storage already holds
    /// (a persistent state or a seed), else the engine's default
    /// ([`crate::StorageDriver::default_for`]). A storage holding another driver's images is an
    /// error, not a silent switch to an empty store.
    pub storage_driver: Option<crate::engine::StorageDriver>,
}

/// Registry settings for the guest's engine. Credentials never travel here (they would end up in
/// logs); an auth file goes by [`Request::SetAuth`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistryConfig {
    /// Registry (`host[:port][/namespace]`) for unqualified image names; `None` for the engine's
    /// default.
    pub default: Option<String>,
    /// Registries (`host[:port]`) reached over plain HTTP or with unverified TLS.
    pub insecure: Vec<String>,
    /// Verify TLS for the default registry even if it is a private address (which would otherwise
    /// be treated as insecure).
    pub secure: bool,
    /// PEM CA certificate the default registry's TLS certificate is checked against. At most
    /// [`MAX_CA_CERT_LEN`] bytes.
    #[serde(with = "crate::bytes::option")]
    pub ca_cert: Option<Vec<u8>>,
}

/// Upper bound of [`RegistryConfig::ca_cert`] (it travels inside one frame).
pub const MAX_CA_CERT_LEN: usize = 256 * 1024;

/// Upper bound of a registry auth file sent with [`Request::SetAuth`].
pub const MAX_AUTH_FILE_LEN: u64 = 1024 * 1024;

/// Terminal size of a TTY session.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowSize {
    pub rows: u16,
    pub cols: u16,
}

/// One operation, the first frame the host sends on an operation connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// Run a process. Answered with stdout/stderr frames and [`AgentMsg::Exited`].
    Exec(ExecRequest),
    /// Unpack the tar stream that follows into the guest directory `dest`.
    PutTar { dest: String },
    /// Send the guest path `path` as a tar stream.
    GetTar { path: String },
    /// Import the OCI image layout that follows as a tar stream into the engine under `reference`.
    /// Answered with the engine's output frames and [`AgentMsg::Exited`].
    ImportOci { reference: String },
    /// Stop the engine cleanly and send its storage directory as a tar stream.
    ExportStorage,
    /// Report the agent's state.
    Status,
    /// Stop the engine, sync and unmount, then power off after the host's [`HostMsg::Ack`].
    Shutdown,
    /// Send `bytes` bytes of data frames without other work: measures the raw transport.
    RawSource { bytes: u64 },
    /// Install the registry auth file (docker `config.json` / podman `auth.json`) that follows as
    /// a data stream of at most [`MAX_AUTH_FILE_LEN`] bytes where the engine reads it (mode 0600).
    /// Answered with [`AgentMsg::Done`].
    SetAuth,
    /// Connect this connection to the engine's API socket (docker: `/run/docker.sock`), after
    /// making sure the engine runs. The agent answers [`AgentMsg::Done`] once connected; then
    /// bytes travel as [`HostMsg::Data`] / [`AgentMsg::Data`] frames, the host ends its
    /// direction with [`HostMsg::StdinEnd`] and the agent its direction with [`AgentMsg::Done`].
    EngineApi,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecRequest {
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub cwd: Option<String>,
    /// The host will send [`HostMsg::Stdin`] frames and [`HostMsg::StdinEnd`]; otherwise stdin is
    /// `/dev/null`.
    pub stdin: bool,
    /// The process talks to the container engine: the agent makes sure the engine runs first.
    pub engine: bool,
    /// Run on a new pseudo-terminal of this size (the process's session and controlling
    /// terminal). Its output comes as [`AgentMsg::Stdout`] only; input as [`HostMsg::Stdin`];
    /// [`HostMsg::Resize`] changes the size.
    pub tty: Option<WindowSize>,
}

/// Frames from the host to the agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum HostMsg {
    Boot(BootConfig),
    Request(Request),
    Stdin(#[serde(with = "crate::bytes")] Vec<u8>),
    StdinEnd,
    Data(#[serde(with = "crate::bytes")] Vec<u8>),
    End(StreamEnd),
    /// Deliver this signal number to the running process.
    Signal(i32),
    /// The host received the agent's last frame.
    Ack,
    /// The host terminal of a TTY session changed size.
    Resize(WindowSize),
    /// On the control connection of a host-bound guest: the VM is now memory-resident and
    /// outlives this connection. The agent answers [`AgentMsg::Done`].
    Detach,
}

/// Frames from the agent to the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AgentMsg {
    Hello(Hello),
    /// The engine is up (control connection); timings in milliseconds since the kernel started.
    Ready(ReadyInfo),
    Stdout(#[serde(with = "crate::bytes")] Vec<u8>),
    Stderr(#[serde(with = "crate::bytes")] Vec<u8>),
    Data(#[serde(with = "crate::bytes")] Vec<u8>),
    End(StreamEnd),
    Exited(ExitStatus),
    Status(StatusInfo),
    /// The operation succeeded (put, shutdown prepared, …).
    Done,
    Error(AgentError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExitStatus {
    Code(i32),
    Signal(i32),
}

impl ExitStatus {
    /// The exit code a shell would report: the code, or 128 + signal.
    pub fn shell_code(self) -> i32 {
        match self {
            ExitStatus::Code(c) => c,
            ExitStatus::Signal(s) => 128 + s,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadyInfo {
    /// Guest uptime when the agent started as PID 1 in the initramfs.
    pub init_ms: u64,
    /// Guest uptime when the root filesystem was switched.
    pub rootfs_ms: u64,
    /// Guest uptime when the engine answered.
    pub engine_ms: u64,
    /// The storage driver the engine was configured with.
    pub storage_driver: Option<crate::engine::StorageDriver>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusInfo {
    pub uptime_ms: u64,
    pub engine_running: bool,
    /// Peak resident set of the agent, in KiB.
    pub agent_max_rss_kib: u64,
    pub mem_total_kib: u64,
    pub mem_available_kib: u64,
}

/// A failure the agent reports, with the stage that failed and the cause.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentError {
    pub kind: ErrorKind,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorKind {
    BadRequest,
    NotFound,
    Engine,
    Io,
    Protocol,
    NoSpace,
}

impl std::fmt::Display for AgentError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.message)
    }
}

impl std::error::Error for AgentError {}

/// Short name of a message, for error texts (never includes payload bytes).
pub trait MessageName {
    fn name(&self) -> String;
}

impl MessageName for HostMsg {
    fn name(&self) -> String {
        match self {
            HostMsg::Boot(_) => "Boot".into(),
            HostMsg::Request(r) => format!("Request({})", r.name()),
            HostMsg::Stdin(_) => "Stdin".into(),
            HostMsg::StdinEnd => "StdinEnd".into(),
            HostMsg::Data(_) => "Data".into(),
            HostMsg::End(_) => "End".into(),
            HostMsg::Signal(_) => "Signal".into(),
            HostMsg::Ack => "Ack".into(),
            HostMsg::Resize(_) => "Resize".into(),
            HostMsg::Detach => "Detach".into(),
        }
    }
}

impl MessageName for Request {
    fn name(&self) -> String {
        match self {
            Request::Exec(_) => "Exec",
            Request::PutTar { .. } => "PutTar",
            Request::GetTar { .. } => "GetTar",
            Request::ImportOci { .. } => "ImportOci",
            Request::ExportStorage => "ExportStorage",
            Request::Status => "Status",
            Request::Shutdown => "Shutdown",
            Request::RawSource { .. } => "RawSource",
            Request::SetAuth => "SetAuth",
            Request::EngineApi => "EngineApi",
        }
        .into()
    }
}

impl MessageName for AgentMsg {
    fn name(&self) -> String {
        match self {
            AgentMsg::Hello(_) => "Hello",
            AgentMsg::Ready(_) => "Ready",
            AgentMsg::Stdout(_) => "Stdout",
            AgentMsg::Stderr(_) => "Stderr",
            AgentMsg::Data(_) => "Data",
            AgentMsg::End(_) => "End",
            AgentMsg::Exited(_) => "Exited",
            AgentMsg::Status(_) => "Status",
            AgentMsg::Done => "Done",
            AgentMsg::Error(_) => "Error",
        }
        .into()
    }
}

impl Hello {
    /// Checks that the agent speaks the host's protocol version.
    pub fn check_version(&self) -> Result<(), crate::ProtocolError> {
        if self.protocol == crate::PROTOCOL_VERSION {
            Ok(())
        } else {
            Err(crate::ProtocolError::VersionMismatch {
                host: crate::PROTOCOL_VERSION,
                agent: self.protocol,
                agent_version: self.agent_version.clone(),
            })
        }
    }
}
