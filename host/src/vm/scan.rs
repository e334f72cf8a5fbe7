//! Finding our VM processes by their command lines, for the ones no record owns any more: a VM
//! left by a CLI killed before this version tied VMs to their CLI, or one whose state directory
//! was deleted under it. Only processes that are provably ours are reported: a QEMU whose kernel
//! command line carries `vcontainer.engine=`, a `vhost-device-vsock`, a guard by its `argv[0]`.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::guard::GUARD_ARGV0;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VmProcessKind {
    /// A QEMU of ours, with the state disk it was given (if any) and the engine it boots.
    Qemu {
        state_disk: Option<PathBuf>,
        engine: String,
        /// The guest arch, from the QEMU binary's name.
        arch: String,
    },
    /// A vsock backend, with its vhost-user socket (in the state directory of its VM).
    Backend { vhost_socket: PathBuf },
    /// A VM guard, with the state directory it was started for.
    Guard { state_dir: PathBuf },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmProcess {
    pub pid: u32,
    pub kind: VmProcessKind,
}

impl VmProcess {
    /// The state directory this process belongs to.
    pub fn state_dir(&self) -> Option<&Path> {
        match &self.kind {
            VmProcessKind::Qemu { state_disk, .. } => state_disk.as_deref()?.parent(),
            VmProcessKind::Backend { vhost_socket } => vhost_socket.parent(),
            VmProcessKind::Guard { state_dir } => Some(state_dir),
        }
    }
}

/// Every VM process of ours on this host that this user can see.
pub fn scan() -> Vec<VmProcess> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found: Vec<VmProcess> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let argv: Vec<&[u8]> = cmdline
                .split(|b| *b == 0)
                .filter(|a| !a.is_empty())
                .collect();
            classify(&argv).map(|kind| VmProcess { pid, kind })
        })
        .collect();
    found.sort_by_key(|p| p.pid);
    found
}

/// The processes of the state directory `dir`.
pub fn processes_of(dir: &Path) -> Vec<VmProcess> {
    scan()
        .into_iter()
        .filter(|p| p.state_dir() == Some(dir))
        .collect()
}

/// The processes (pid and command line, shortened) that have `path` open: whoever holds a state
/// disk that QEMU could not lock.
pub fn holders_of(path: &Path) -> Vec<(u32, String)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for pid in entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
    {
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        if fds
            .flatten()
            .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|t| t == path))
        {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let mut cmd: String = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.len() > 120 {
                let mut cut = 117;
                while !cmd.is_char_boundary(cut) {
                    cut -= 1;
                }
                cmd.truncate(cut);
                cmd.push_str("...");
            }
            out.push((pid, cmd.trim().to_string()));
        }
    }
    out
}

/// What kind of VM process an argv is, if it is one of ours.
pub fn classify(argv: &[&[u8]]) -> Option<VmProcessKind> {
    let name = Path::new(OsStr::from_bytes(argv.first()?)).file_name()?;
    let name = name.as_bytes();
    if name == GUARD_ARGV0.as_bytes() {
        let dir = value_after(argv, b"--state-dir")?;
        return Some(VmProcessKind::Guard {
            state_dir: PathBuf::from(OsStr::from_bytes(dir)),
        });
    }
    if name == b"vhost-device-vsock" {
        let vm = value_after(argv, b"--vm")?;
        let socket = option_value(vm, b"socket=")?;
        return Some(VmProcessKind::Backend {
            vhost_socket: socket,
        });
    }
    if let Some(arch) = name.strip_prefix(b"qemu-system-") {
        let append = value_after(argv, b"-append")?;
        let engine = append
            .split(|b| *b == b' ')
            .find_map(|w| w.strip_prefix(b"vcontainer.engine="))?;
        let state_disk = argv
            .windows(2)
            .filter(|w| w[0] == b"-drive")
            .map(|w| w[1])
            .find(|d| contains(d, b",id=state,"))
            .and_then(|d| option_value(d, b"file="));
        return Some(VmProcessKind::Qemu {
            state_disk,
            engine: String::from_utf8_lossy(engine).into_owned(),
            arch: String::from_utf8_lossy(arch).into_owned(),
        });
    }
    None
}

fn value_after<'a>(argv: &[&'a [u8]], flag: &[u8]) -> Option<&'a [u8]> {
    argv.windows(2).find(|w| w[0] == flag).map(|w| w[1])
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// The value of `key` in a QEMU-style option list (`a=1,key=va,,lue,b=2`): up to the first
/// single comma, with `,,` meaning a comma.
fn option_value(list: &[u8], key: &[u8]) -> Option<PathBuf> {
    let start = list
        .windows(key.len())
        .position(|w| w == key)
        .filter(|&i| i == 0 || list[i - 1] == b',')?
        + key.len();
    let mut out = Vec::new();
    let mut rest = list[start..].iter().peekable();
    while let Some(&b) = rest.next() {
        if b == b',' {
            if rest.peek() == Some(&&b',') {
                rest.next();
            } else {
                break;
            }
        }
        out.push(b);
    }
    Some(PathBuf::from(OsStr::from_bytes(&out)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(words: &[&'static str]) -> Vec<&'static [u8]> {
        words.iter().map(|w| w.as_bytes()).collect()
    }

    #[test]
    fn qemu_with_its_state_disk() {
        let a = argv(&[
            "/usr/bin/qemu-system-aarch64",
            "-drive",
            "file=/img/rootfs.squashfs,if=none,id=rootfs,format=raw,readonly=on",
            "-drive",
            "file=/h/a,,b/docker-state.img,if=none,id=state,format=raw,cache=unsafe",
            "-append",
            "console=ttyAMA0 vcontainer.engine=docker quiet",
        ]);
        let kind = classify(&a).expect("ours");
        assert_eq!(
            kind,
            VmProcessKind::Qemu {
                state_disk: Some(PathBuf::from("/h/a,b/docker-state.img")),
                engine: "docker".into(),
                arch: "aarch64".into(),
            }
        );
        let p = VmProcess { pid: 1, kind };
        assert_eq!(p.state_dir(), Some(Path::new("/h/a,b")));
    }

    #[test]
    fn other_qemus_are_not_ours() {
        let a = argv(&[
            "qemu-system-x86_64",
            "-append",
            "console=ttyS0 root=/dev/vda",
        ]);
        assert_eq!(classify(&a), None);
        assert_eq!(classify(&argv(&["qemu-system-x86_64"])), None);
        assert_eq!(classify(&argv(&["bash", "-c", "x"])), None);
        assert_eq!(classify(&[]), None);
    }

    #[test]
    fn backend_and_guard() {
        let b = argv(&[
            "/usr/local/bin/vhost-device-vsock",
            "--vm",
            "guest-cid=3,socket=/s/vhost.sock,uds-path=/s/vsock.sock",
        ]);
        assert_eq!(
            classify(&b),
            Some(VmProcessKind::Backend {
                vhost_socket: PathBuf::from("/s/vhost.sock")
            })
        );
        let g = argv(&[GUARD_ARGV0, "--qemu", "5", "--state-dir", "/s"]);
        assert_eq!(
            classify(&g),
            Some(VmProcessKind::Guard {
                state_dir: PathBuf::from("/s")
            })
        );
    }

    #[test]
    fn option_values() {
        assert_eq!(option_value(b"a=1,key=x,b=2", b"key="), Some("x".into()));
        assert_eq!(option_value(b"key=x,,y", b"key="), Some("x,y".into()));
        assert_eq!(option_value(b"akey=x", b"key="), None);
    }

    #[test]
    fn an_open_file_names_its_holder() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("disk.img");
        let _open = std::fs::File::create(&path).expect("create");
        let holders = holders_of(&path);
        assert!(
            holders.iter().any(|(pid, _)| *pid == std::process::id()),
            "{holders:?}"
        );
    }

    #[test]
    fn this_test_process_is_not_a_vm() {
        let me = std::process::id();
        assert!(scan().iter().all(|p| p.pid != me));
    }
}
