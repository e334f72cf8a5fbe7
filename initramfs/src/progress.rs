//! Human-readable progress of a build. Image builds take minutes under some stages; the CLI prints
//! these lines so a user sees which tool is running and why it is slow.

use std::fmt;

/// The part of the image a progress line is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Kernel,
    Modules,
    Initramfs,
    Rootfs,
    Squashfs,
    Cache,
}

impl Stage {
    pub fn name(self) -> &'static str {
        match self {
            Stage::Kernel => "kernel",
            Stage::Modules => "modules",
            Stage::Initramfs => "initramfs",
            Stage::Rootfs => "rootfs",
            Stage::Squashfs => "squashfs",
            Stage::Cache => "cache",
        }
    }
}

/// One progress line, e.g. `rootfs: running mmdebstrap (trixie, arm64)…`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    pub stage: Stage,
    pub message: String,
}

impl Progress {
    pub fn new(stage: Stage, message: impl Into<String>) -> Self {
        Progress {
            stage,
            message: message.into(),
        }
    }
}

impl fmt::Display for Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.stage.name(), self.message)
    }
}
