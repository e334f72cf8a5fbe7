//! Per-instance state on the host: the state directory and its files (`dir`), the lock that keeps
//! two commands off one instance (`lock`), the ext4 state disk (`disk`) and the metadata of a
//! memory-resident VM (`instance`).

mod dir;
mod disk;
mod error;
mod instance;
mod lock;
mod tool;

pub use dir::{StateDir, StateLocation};
pub use disk::{find_mke2fs, EphemeralStateDisk, StateDisk, DEFAULT_STATE_DISK_SIZE};
pub use error::StateError;
pub use instance::{write_pid_file, InstanceRecord, ProcessRecord};
pub use lock::{is_locked, InstanceLock, LockWait};
pub use tool::Tool;
