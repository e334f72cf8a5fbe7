//! The way out of the VM: sync and power off. A leaf that PID 1, the agent's shutdown and the
//! fatal paths all reach without depending on each other.

use std::time::Duration;

use nix::sys::reboot::{reboot, RebootMode};

use crate::log;

/// Syncs and powers the VM off. Never returns.
pub fn power_off() -> ! {
    nix::unistd::sync();
    let err = reboot(RebootMode::RB_POWER_OFF);
    log!("power off failed: {err:?}");
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}
