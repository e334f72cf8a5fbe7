//! Checks on the agent binary before it becomes `/init`: a wrong-arch or dynamically linked
//! binary would only show up as a kernel panic ("No working init found") minutes later under TCG.

use std::path::Path;

use object::read::elf::{ElfFile64, ProgramHeader};
use object::{Architecture, Endianness, Object};

use crate::arch::Arch;
use crate::error::{BuildError, Result};

/// Verifies `bytes` is a 64-bit ELF executable for `arch` with no program interpreter.
pub fn check(path: &Path, bytes: &[u8], arch: Arch) -> Result<()> {
    let fail = |detail: String| BuildError::Agent {
        path: path.to_path_buf(),
        detail,
    };
    let elf = ElfFile64::<Endianness>::parse(bytes)
        .map_err(|e| fail(format!("not a 64-bit ELF file ({e})")))?;
    let want = match arch {
        Arch::Aarch64 => Architecture::Aarch64,
        Arch::X86_64 => Architecture::X86_64,
    };
    if elf.architecture() != want {
        return Err(fail(format!(
            "built for {:?}, the guest is {arch}; build it with --target {}",
            elf.architecture(),
            arch.musl_triple()
        )));
    }
    let endian = elf.endian();
    let interp = elf
        .elf_program_headers()
        .iter()
        .any(|ph| ph.p_type(endian) == object::elf::PT_INTERP);
    if interp {
        return Err(fail(format!(
            "dynamically linked (has an ELF interpreter); PID 1 in the initramfs has no libc. Build it static with --target {}",
            arch.musl_triple()
        )));
    }
    Ok(())
}

/// A static (no PT_INTERP) executable of `arch`: all [`check`] reads, for tests.
#[cfg(test)]
pub(crate) fn static_elf(arch: object::Architecture) -> Vec<u8> {
    let mut obj = object::write::Object::new(object::BinaryFormat::Elf, arch, Endianness::Little);
    obj.flags = object::write::FileFlags::None;
    let mut bytes = obj.write().expect("elf");
    // e_type = ET_EXEC
    bytes[16] = 2;
    bytes[17] = 0;
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_non_elf_and_accepts_a_static_host_binary() {
        let p = Path::new("/x");
        assert!(check(p, b"#!/bin/sh\n", Arch::X86_64).is_err());
        // The test binary itself is dynamically linked on glibc hosts: must be refused.
        let me = std::env::current_exe().expect("exe");
        let bytes = std::fs::read(&me).expect("read");
        if let Some(host) = Arch::host() {
            let other = if host == Arch::X86_64 {
                Arch::Aarch64
            } else {
                Arch::X86_64
            };
            let err = check(&me, &bytes, other).expect_err("wrong arch");
            assert!(err.to_string().contains("--target"), "{err}");
        }
        let busybox = Path::new("/bin/busybox");
        if let (Some(host), Ok(bytes)) = (Arch::host(), std::fs::read(busybox)) {
            // busybox-static on Debian: static, host arch.
            let r = check(busybox, &bytes, host);
            let text = String::from_utf8_lossy(
                &std::process::Command::new("file")
                    .arg("-L")
                    .arg(busybox)
                    .output()
                    .map(|o| o.stdout)
                    .unwrap_or_default(),
            )
            .into_owned();
            if text.contains("statically linked") {
                r.expect("static busybox accepted");
            }
        }
    }
}
