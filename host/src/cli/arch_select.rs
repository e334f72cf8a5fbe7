//! Which architecture a command targets: `--arch`, then the program name (`vdkr-aarch64`), then
//! `$VDKR_ARCH`/`$VPDMN_ARCH`, then the host.

use vcontainer_initramfs::{Arch, UnknownArch};

/// Resolves the target from the sources in precedence order; `env` is the value of the tool's
/// `*_ARCH` variable.
pub fn resolve_arch(
    flag: Option<&str>,
    argv0_arch: Option<&str>,
    env: Option<&str>,
) -> Result<Arch, UnknownArch> {
    let chosen = flag.or(argv0_arch).or(env.filter(|s| !s.is_empty()));
    match chosen {
        Some(name) => name.parse(),
        None => Arch::host().ok_or_else(|| UnknownArch(std::env::consts::ARCH.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precedence_is_flag_name_env_host() {
        assert_eq!(
            resolve_arch(Some("x86_64"), Some("aarch64"), Some("aarch64")).ok(),
            Some(Arch::X86_64)
        );
        assert_eq!(
            resolve_arch(None, Some("aarch64"), Some("x86_64")).ok(),
            Some(Arch::Aarch64)
        );
        assert_eq!(
            resolve_arch(None, None, Some("arm64")).ok(),
            Some(Arch::Aarch64)
        );
        assert_eq!(resolve_arch(None, None, None).ok(), Arch::host());
        assert!(resolve_arch(Some("mips"), None, None).is_err());
    }
}
