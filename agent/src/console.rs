//! Short, timestamped log lines for people: the guest console (which the host keeps and shows on
//! failure) or stderr in host mode. Quiet unless something is worth knowing.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use nix::time::{clock_gettime, ClockId};

static CONSOLE: Mutex<Option<File>> = Mutex::new(None);
static DEBUG: AtomicBool = AtomicBool::new(false);

/// Sends log lines to `/dev/console` from now on (PID 1, once devtmpfs is mounted). The kernel
/// may have started init without fds 0–2 when the initramfs has no /dev/console node.
pub fn use_dev_console() {
    if let Ok(file) = OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NOCTTY)
        .open("/dev/console")
    {
        if let Ok(mut slot) = CONSOLE.lock() {
            *slot = Some(file);
        }
    }
}

pub fn set_debug(on: bool) {
    DEBUG.store(on, Ordering::Relaxed);
}

pub fn debug_enabled() -> bool {
    DEBUG.load(Ordering::Relaxed)
}

/// Milliseconds since the kernel started (CLOCK_BOOTTIME works before /proc is mounted).
pub fn uptime_ms() -> u64 {
    clock_gettime(ClockId::CLOCK_BOOTTIME)
        .map(|t| t.tv_sec() as u64 * 1000 + t.tv_nsec() as u64 / 1_000_000)
        .unwrap_or(0)
}

pub fn write_line(args: fmt::Arguments<'_>) {
    let ms = uptime_ms();
    let line = format!(
        "vcontainer-agent: [{:>5}.{:03}] {}\n",
        ms / 1000,
        ms % 1000,
        args
    );
    if let Ok(mut slot) = CONSOLE.lock() {
        if let Some(file) = slot.as_mut() {
            if file.write_all(line.as_bytes()).is_ok() {
                return;
            }
        }
    }
    let _ = std::io::stderr().write_all(line.as_bytes());
}

/// Logs one line to the console.
#[macro_export]
macro_rules! log {
    ($($arg:tt)*) => { $crate::console::write_line(format_args!($($arg)*)) };
}

/// Logs one line only with `vcontainer.debug=1` (or `--debug` in host mode).
#[macro_export]
macro_rules! debug {
    ($($arg:tt)*) => {
        if $crate::console::debug_enabled() {
            $crate::console::write_line(format_args!($($arg)*))
        }
    };
}
