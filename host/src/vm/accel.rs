//! KVM or TCG. KVM is used only where it really works: the guest has the host's architecture,
//! /dev/kvm opens read-write, an x86 host advertises VMX/SVM, and the KVM is not PVM (a paravirtual
//! KVM found on some cloud machines: /dev/kvm exists, but stock kernels do not boot under it).
//! Everything else runs under TCG. The decision is a pure function of probed facts.

use std::fs::OpenOptions;
use std::path::Path;

use vcontainer_initramfs::Arch;

use super::Accel;

/// What the probe found on this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvmFacts {
    pub host_arch: Option<Arch>,
    /// /dev/kvm opened read-write.
    pub dev_kvm_usable: bool,
    /// `vmx` or `svm` among the CPU flags in /proc/cpuinfo (x86 only; meaningless elsewhere).
    pub cpu_virt_flags: bool,
    /// /sys/module/kvm_pvm exists.
    pub pvm: bool,
}

/// The accelerator and, for logs and `--verbose`, why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccelChoice {
    pub accel: Accel,
    pub reason: String,
}

impl KvmFacts {
    pub fn probe() -> KvmFacts {
        KvmFacts {
            host_arch: Arch::host(),
            dev_kvm_usable: OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/kvm")
                .is_ok(),
            cpu_virt_flags: std::fs::read_to_string("/proc/cpuinfo")
                .map(|s| cpuinfo_has_virt_flags(&s))
                .unwrap_or(false),
            pvm: Path::new("/sys/module/kvm_pvm").exists(),
        }
    }
}

/// Decides for `target` given the facts; `no_kvm` is the user's `--no-kvm`.
pub fn decide_accel(target: Arch, facts: &KvmFacts, no_kvm: bool) -> AccelChoice {
    let tcg = |reason: String| AccelChoice {
        accel: Accel::Tcg,
        reason,
    };
    if no_kvm {
        return tcg("TCG: KVM disabled by --no-kvm".into());
    }
    if facts.host_arch != Some(target) {
        let host = facts.host_arch.map_or("an unsupported arch", Arch::name);
        return tcg(format!("TCG: {target} guest on {host} host"));
    }
    if !facts.dev_kvm_usable {
        return tcg("TCG: /dev/kvm cannot be opened read-write".into());
    }
    if facts.pvm {
        return tcg(
            "TCG: /dev/kvm is PVM (kvm_pvm loaded), which stock guest kernels do not boot under"
                .into(),
        );
    }
    if target == Arch::X86_64 && !facts.cpu_virt_flags {
        return tcg("TCG: CPU has no vmx/svm flag".into());
    }
    AccelChoice {
        accel: Accel::Kvm,
        reason: "KVM".into(),
    }
}

/// Probes this host and decides.
pub fn choose_accel(target: Arch, no_kvm: bool) -> AccelChoice {
    if no_kvm {
        // Don't even open /dev/kvm: the user asked us to stay away from it.
        return decide_accel(
            target,
            &KvmFacts {
                host_arch: None,
                dev_kvm_usable: false,
                cpu_virt_flags: false,
                pvm: false,
            },
            true,
        );
    }
    decide_accel(target, &KvmFacts::probe(), false)
}

/// True if any `flags` line of /proc/cpuinfo lists `vmx` (Intel) or `svm` (AMD) as a whole word.
pub fn cpuinfo_has_virt_flags(cpuinfo: &str) -> bool {
    cpuinfo.lines().any(|line| {
        let mut parts = line.splitn(2, ':');
        let key = parts.next().unwrap_or("").trim();
        let value = parts.next().unwrap_or("");
        key == "flags" && value.split_whitespace().any(|f| f == "vmx" || f == "svm")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn real_kvm(arch: Arch) -> KvmFacts {
        KvmFacts {
            host_arch: Some(arch),
            dev_kvm_usable: true,
            cpu_virt_flags: arch == Arch::X86_64,
            pvm: false,
        }
    }

    #[test]
    fn same_arch_with_real_kvm_uses_kvm() {
        assert_eq!(
            decide_accel(Arch::X86_64, &real_kvm(Arch::X86_64), false).accel,
            Accel::Kvm
        );
        // aarch64 hosts have no vmx/svm flags; /dev/kvm is enough there.
        assert_eq!(
            decide_accel(Arch::Aarch64, &real_kvm(Arch::Aarch64), false).accel,
            Accel::Kvm
        );
    }

    #[test]
    fn everything_else_is_tcg() {
        let cross = decide_accel(Arch::Aarch64, &real_kvm(Arch::X86_64), false);
        assert_eq!(cross.accel, Accel::Tcg);
        assert!(
            cross.reason.contains("aarch64 guest on x86_64 host"),
            "{}",
            cross.reason
        );

        let pvm = KvmFacts {
            pvm: true,
            cpu_virt_flags: false,
            ..real_kvm(Arch::X86_64)
        };
        let c = decide_accel(Arch::X86_64, &pvm, false);
        assert_eq!(c.accel, Accel::Tcg);
        assert!(c.reason.contains("PVM"));

        let pvm_with_flags = KvmFacts {
            pvm: true,
            ..real_kvm(Arch::X86_64)
        };
        assert_eq!(
            decide_accel(Arch::X86_64, &pvm_with_flags, false).accel,
            Accel::Tcg
        );

        let no_flags = KvmFacts {
            cpu_virt_flags: false,
            ..real_kvm(Arch::X86_64)
        };
        assert_eq!(
            decide_accel(Arch::X86_64, &no_flags, false).accel,
            Accel::Tcg
        );

        let no_dev = KvmFacts {
            dev_kvm_usable: false,
            ..real_kvm(Arch::X86_64)
        };
        assert_eq!(decide_accel(Arch::X86_64, &no_dev, false).accel, Accel::Tcg);

        let opted_out = decide_accel(Arch::X86_64, &real_kvm(Arch::X86_64), true);
        assert_eq!(opted_out.accel, Accel::Tcg);
        assert!(opted_out.reason.contains("--no-kvm"));
    }

    #[test]
    fn cpuinfo_flags_are_matched_as_words() {
        let intel = "processor\t: 0\nflags\t\t: fpu vme de pse vmx sse\n";
        let amd = "flags\t\t: fpu svm\n";
        let pvm = "flags\t\t: fpu vme hypervisor vmxx svm_lock\nvmx flags\t: foo\n";
        assert!(cpuinfo_has_virt_flags(intel));
        assert!(cpuinfo_has_virt_flags(amd));
        assert!(!cpuinfo_has_virt_flags(pvm));
        assert!(!cpuinfo_has_virt_flags(""));
    }
}
