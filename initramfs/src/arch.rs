//! Target architectures and the names each tool uses for them.

use std::fmt;
use std::str::FromStr;

/// A guest architecture vcontainer can build images for and boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Arch {
    Aarch64,
    X86_64,
}

impl Arch {
    pub const ALL: [Arch; 2] = [Arch::Aarch64, Arch::X86_64];

    /// `uname -m` spelling, also used in state and cache paths.
    pub fn name(self) -> &'static str {
        match self {
            Arch::Aarch64 => "aarch64",
            Arch::X86_64 => "x86_64",
        }
    }

    /// Debian's architecture name.
    pub fn debian(self) -> &'static str {
        match self {
            Arch::Aarch64 => "arm64",
            Arch::X86_64 => "amd64",
        }
    }

    /// OCI/Go `GOARCH` name.
    pub fn oci(self) -> &'static str {
        self.debian()
    }

    /// Rust target triple of the static guest agent.
    pub fn musl_triple(self) -> &'static str {
        match self {
            Arch::Aarch64 => "aarch64-unknown-linux-musl",
            Arch::X86_64 => "x86_64-unknown-linux-musl",
        }
    }

    /// The architecture of the machine this code runs on, if it is one we support.
    pub fn host() -> Option<Arch> {
        std::env::consts::ARCH.parse().ok()
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("unsupported architecture '{0}' (supported: aarch64, x86_64)")]
pub struct UnknownArch(pub String);

impl FromStr for Arch {
    type Err = UnknownArch;

    /// Accepts the `uname -m` names and their Debian/OCI aliases.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "aarch64" | "arm64" => Ok(Arch::Aarch64),
            "x86_64" | "amd64" | "x86-64" => Ok(Arch::X86_64),
            other => Err(UnknownArch(other.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_aliases_and_rejects_others() {
        assert_eq!("arm64".parse::<Arch>().ok(), Some(Arch::Aarch64));
        assert_eq!("x86_64".parse::<Arch>().ok(), Some(Arch::X86_64));
        let err = "riscv64".parse::<Arch>().expect_err("unsupported");
        assert!(err.to_string().contains("riscv64"));
    }
}
