//! The one error type of the image builder. Every variant says what failed, why, and what to try,
//! because these messages end up in front of a Yocto user who never read this code.

use std::io;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A host tool we depend on is not installed.
    #[error("{what}: the host tool `{tool}` was not found in PATH. Try: install the Debian package `{package}` (apt-get install {package})")]
    ToolMissing {
        what: String,
        tool: String,
        package: String,
    },

    /// A host tool ran and failed (boxed: it is by far the largest variant).
    #[error("{0}")]
    ToolFailed(Box<ToolFailure>),

    /// Reading or writing a file failed.
    #[error("{what} ({path}): {source}")]
    Io {
        what: String,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// No Debian mirror could be derived from the host's apt sources.
    #[error("no Debian mirror found in {looked_in}. Try: set VCONTAINER_DEBIAN_MIRROR to a Debian archive URI (and optionally VCONTAINER_DEBIAN_SECURITY_MIRROR)")]
    NoMirror { looked_in: String },

    /// The package index did not contain what we need (e.g. the kernel metapackage).
    #[error("{what}: {detail}")]
    Package { what: String, detail: String },

    /// The kernel package's modules cannot give the module set the guest needs.
    #[error("kernel modules: {0}")]
    Modules(String),

    /// The agent binary cannot be PID 1 of a guest of this architecture.
    #[error("agent binary {path}: {detail}")]
    Agent { path: PathBuf, detail: String },

    /// `--offline` and the cache lacks a part that only the network can give.
    #[error("offline: the {arch} guest image needs {missing}, which is not in the cache ({}). Try: run `vcontainer image build -a {arch}` once with network access (or copy its cache), or pass --blob-dir DIR with a prebuilt image (`vcontainer image build --out DIR` makes one)", cache.display())]
    Offline {
        arch: String,
        missing: String,
        cache: PathBuf,
    },

    /// A prebuilt image directory (`--blob-dir`) cannot be booted.
    #[error("image directory {dir}: {detail}")]
    ImageDir { dir: PathBuf, detail: String },

    /// A lock file (`--lock`) cannot be used.
    #[error("lock file {path}: {detail}")]
    Lock { path: PathBuf, detail: String },

    /// A build from a lock file did not get exactly the locked packages.
    #[error("{what} is not what the lock file says:\n  {}\nTry: a mirror that still has these versions: a snapshot of the archive from when the lock was written (--mirror http://snapshot.debian.org/archive/debian/<YYYYMMDDThhmmssZ>)", differences.join("\n  "))]
    NotAsLocked {
        what: String,
        differences: Vec<String>,
    },

    /// Building as an ordinary user needs something this machine does not have.
    #[error("{what} as a non-root user needs {needs}")]
    Unprivileged { what: String, needs: String },
}

impl BuildError {
    /// Wraps an `io::Error` with the operation and the path it was about.
    pub(crate) fn io(
        what: impl Into<String>,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(io::Error) -> Self {
        let what = what.into();
        let path = path.into();
        move |source| BuildError::Io { what, path, source }
    }
}

/// What a failed tool run leaves for the user. `output_tail` holds the last lines it printed.
#[derive(Debug)]
pub struct ToolFailure {
    pub what: String,
    pub command: String,
    pub status: String,
    pub hint: String,
    pub log: PathBuf,
    pub output_tail: String,
}

impl std::fmt::Display for ToolFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: `{}` failed ({}). Try: {}\n--- last lines of its output (full log: {}) ---\n{}",
            self.what,
            self.command,
            self.status,
            self.hint,
            self.log.display(),
            self.output_tail
        )
    }
}

pub type Result<T, E = BuildError> = std::result::Result<T, E>;
