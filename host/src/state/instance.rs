//! `instance.json`: what a memory-resident VM's later commands need to find it again. Pids are
//! stored with their start times (field 22 of `/proc/<pid>/stat`, in clock ticks since boot) because a
//! bare pid may belong to an unrelated process after a reboot or a wrap-around; upstream's
//! `kill -0 $(cat daemon.pid)` could signal a stranger.

use std::io::Write;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use vcontainer_initramfs::Arch;

use super::StateError;

/// Bumped when a field's meaning changes; readers refuse other formats rather than guess.
pub const INSTANCE_FORMAT: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessRecord {
    pub pid: u32,
    pub start_time: u64,
}

impl ProcessRecord {
    /// The live process `pid`, or None if it does not exist.
    pub fn capture(pid: u32) -> Option<ProcessRecord> {
        Some(ProcessRecord {
            pid,
            start_time: read_start_time(pid)?,
        })
    }

    /// True if the very process recorded is still running (same pid and same start time).
    pub fn is_alive(&self) -> bool {
        read_start_time(self.pid) == Some(self.start_time)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceRecord {
    pub format: u32,
    /// `Arch::name()` of the guest.
    pub arch: String,
    /// `docker` or `podman`.
    pub engine: String,
    /// Seconds since the Unix epoch.
    pub created: u64,
    pub qemu: ProcessRecord,
    /// The vhost-user vsock backend, if that transport is used.
    pub backend: Option<ProcessRecord>,
    /// The guest CID when the kernel vhost-vsock transport is used.
    pub guest_cid: Option<u32>,
    /// Host ports QEMU forwards into the VM (`memres start -p`).
    #[serde(default)]
    pub ports: Vec<crate::vm::port_forward::PortForward>,
}

impl InstanceRecord {
    pub fn new(
        arch: Arch,
        engine: &str,
        qemu: ProcessRecord,
        backend: Option<ProcessRecord>,
        guest_cid: Option<u32>,
    ) -> Self {
        InstanceRecord {
            format: INSTANCE_FORMAT,
            arch: arch.name().to_string(),
            engine: engine.to_string(),
            created: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            qemu,
            backend,
            guest_cid,
            ports: Vec::new(),
        }
    }

    /// True if QEMU and (if any) the backend recorded are still the running processes.
    pub fn is_running(&self) -> bool {
        self.qemu.is_alive() && self.backend.as_ref().is_none_or(ProcessRecord::is_alive)
    }

    /// Reads the record; Ok(None) if there is none. A record of another format is an error.
    pub fn load(path: &Path) -> Result<Option<InstanceRecord>, StateError> {
        let text = match std::fs::read(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StateError::io("read", path, e)),
        };
        let record: InstanceRecord =
            serde_json::from_slice(&text).map_err(|source| StateError::BadRecord {
                path: path.to_owned(),
                source,
            })?;
        if record.format != INSTANCE_FORMAT {
            return Err(StateError::BadRecord {
                path: path.to_owned(),
                source: serde::de::Error::custom(format!(
                    "format {} (this vcontainer reads {INSTANCE_FORMAT})",
                    record.format
                )),
            });
        }
        Ok(Some(record))
    }

    /// Writes the record atomically (temporary file + rename), so a reader never sees half of it.
    pub fn save(&self, path: &Path) -> Result<(), StateError> {
        let dir = path.parent().unwrap_or(Path::new("."));
        let mut tmp = tempfile::NamedTempFile::new_in(dir)
            .map_err(|e| StateError::io("create temporary file in", dir, e))?;
        let json = serde_json::to_vec_pretty(self).map_err(|source| StateError::BadRecord {
            path: path.to_owned(),
            source,
        })?;
        tmp.write_all(&json)
            .map_err(|e| StateError::io("write", tmp.path().to_owned(), e))?;
        tmp.persist(path)
            .map_err(|e| StateError::io("rename into place", path, e.error))?;
        Ok(())
    }

    pub fn remove(path: &Path) -> Result<(), StateError> {
        match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(StateError::io("remove", path, e))
            }
            _ => Ok(()),
        }
    }
}

/// Writes upstream's running marker (`daemon.pid`: the pid in decimal and a newline) atomically,
/// so a script polling it never reads half a number.
pub fn write_pid_file(path: &Path, pid: u32) -> Result<(), StateError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .map_err(|e| StateError::io("create temporary file in", dir, e))?;
    writeln!(tmp, "{pid}").map_err(|e| StateError::io("write", tmp.path().to_owned(), e))?;
    tmp.persist(path)
        .map_err(|e| StateError::io("rename into place", path, e.error))?;
    Ok(())
}

fn read_start_time(pid: u32) -> Option<u64> {
    parse_start_time(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Field 22 (starttime) of /proc/<pid>/stat. Field 2 is the command name in parentheses and may
/// itself contain spaces and ')', so counting starts after the last ')'. A zombie (state `Z`,
/// e.g. a detached QEMU whose new parent has not reaped it yet) counts as gone.
pub(crate) fn parse_start_time(stat: &str) -> Option<u64> {
    let after_comm = &stat[stat.rfind(')')? + 1..];
    if after_comm.split_whitespace().next() == Some("Z") {
        return None;
    }
    // after_comm starts at field 3 (state); starttime is field 22, i.e. the 20th from here.
    after_comm.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_parsing_survives_odd_command_names() {
        let stat = "1234 (qemu) x (y)) S 1 1234 1234 0 -1 4194560 100 0 0 0 5 6 0 0 20 0 3 0 987654 1000 100";
        assert_eq!(parse_start_time(stat), Some(987654));
        assert_eq!(parse_start_time("garbage"), None);
        assert_eq!(parse_start_time("1 (x) S 1 2"), None);
        let zombie = stat.replace(") S ", ") Z ");
        assert_eq!(parse_start_time(&zombie), None, "a zombie is not running");
    }

    #[test]
    fn own_process_is_alive_and_a_changed_start_time_is_not() {
        let me = ProcessRecord::capture(std::process::id()).expect("self");
        assert!(me.is_alive());
        let reused = ProcessRecord {
            start_time: me.start_time + 1,
            ..me
        };
        assert!(!reused.is_alive());
        assert!(ProcessRecord::capture(u32::MAX).is_none());
    }

    #[test]
    fn save_and_load_round_trip() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let path = tmp.path().join("instance.json");
        assert_eq!(InstanceRecord::load(&path).expect("load"), None);
        let me = ProcessRecord::capture(std::process::id()).expect("self");
        let record = InstanceRecord::new(Arch::Aarch64, "docker", me, Some(me), None);
        record.save(&path).expect("save");
        let loaded = InstanceRecord::load(&path).expect("load").expect("present");
        assert_eq!(loaded, record);
        assert!(loaded.is_running());
        InstanceRecord::remove(&path).expect("remove");
        InstanceRecord::remove(&path).expect("remove twice");
    }

    #[test]
    fn pid_file_holds_the_pid_and_a_newline() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let path = tmp.path().join("daemon.pid");
        write_pid_file(&path, 1234).expect("write");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "1234\n");
        write_pid_file(&path, 99).expect("overwrite");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "99\n");
    }

    #[test]
    fn other_formats_are_refused() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let path = tmp.path().join("instance.json");
        std::fs::write(&path, r#"{"format":99,"arch":"x","engine":"docker","created":0,"qemu":{"pid":1,"start_time":1},"backend":null,"guest_cid":null}"#)
            .expect("write");
        assert!(InstanceRecord::load(&path).is_err());
        std::fs::write(&path, "{").expect("write");
        assert!(InstanceRecord::load(&path).is_err());
    }
}
