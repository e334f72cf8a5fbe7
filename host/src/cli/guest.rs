//! Where a command runs: the memory-resident VM of its state directory if one runs (or is
//! auto-started), else a VM booted for this command alone and shut down after it.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::settings::Settings;
use crate::guest::boot_image::ensure_image;
use crate::guest::instance::{resolve_state, Instance, InstanceConfig, StateChoice};
use crate::guest::options::GuestOptions;
use crate::guest::resident::Resident;
use crate::ops::{OpError, ReceiveError};
use crate::session::SessionError;
use crate::transport::Transport;
use crate::util::progress::Reporter;
use crate::util::tail::KERNEL_PANIC;

/// A guest ready for operations.
pub enum Guest {
    Resident(Resident),
    OneShot(Box<Instance>),
}

impl Guest {
    pub fn transport(&self) -> &dyn Transport {
        match self {
            Guest::Resident(r) => r.transport(),
            Guest::OneShot(i) => i.transport(),
        }
    }

    pub fn resident(&self) -> Option<&Resident> {
        match self {
            Guest::Resident(r) => Some(r),
            Guest::OneShot(_) => None,
        }
    }

    /// The last lines of the guest console (one-shot VMs; a resident VM's console is its log).
    pub fn console_tail(&self, lines: usize) -> String {
        match self {
            Guest::Resident(_) => String::new(),
            Guest::OneShot(i) => i.console_tail(lines),
        }
    }

    /// Why the guest died, if it did, and the last lines of its console: for the message of an
    /// operation that failed because of it.
    pub fn death(&mut self, lines: usize) -> Option<(String, String)> {
        let (exited, console) = match self {
            Guest::OneShot(i) => (i.vm_gone(), i.console_tail(lines)),
            Guest::Resident(r) => {
                let rec = &r.record;
                let exited = if !rec.qemu.is_alive() {
                    Some(format!(
                        "the memory-resident VM's QEMU (pid {}) exited unexpectedly",
                        rec.qemu.pid
                    ))
                } else {
                    rec.backend.as_ref().filter(|b| !b.is_alive()).map(|b| {
                        format!(
                            "the memory-resident VM's vsock backend (pid {}) exited unexpectedly",
                            b.pid
                        )
                    })
                };
                let console = crate::util::tail::file_tail(&r.state.console_log(), lines);
                (exited, console)
            }
        };
        // A panicked kernel is dead even while QEMU is still on its way out.
        let cause = exited.or_else(|| {
            console
                .contains(KERNEL_PANIC)
                .then(|| "the guest kernel panicked".to_string())
        })?;
        Some((cause, console))
    }

    /// [`Guest::death`] for the failure `err`. A lost connection is often the first sign of a
    /// dying guest, seen before QEMU has exited, so such a failure gives the guest
    /// [`DEATH_GRACE`] to show whether it died; any other failure is checked at once.
    pub async fn death_behind(
        &mut self,
        err: &anyhow::Error,
        lines: usize,
    ) -> Option<(String, String)> {
        let grace = if is_connection_lost(err) {
            DEATH_GRACE
        } else {
            Duration::ZERO
        };
        let deadline = Instant::now() + grace;
        loop {
            if let Some(death) = self.death(lines) {
                return Some(death);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Shuts a one-shot VM down cleanly; a resident VM stays.
    pub async fn finish(self, reporter: &Reporter) -> Result<()> {
        match self {
            Guest::Resident(_) => Ok(()),
            Guest::OneShot(i) => i
                .shutdown(reporter)
                .await
                .context("the guest did not shut down cleanly"),
        }
    }
}

/// How long a guest whose connection broke may take to show that it died (QEMU exiting after a
/// panic takes a few hundred milliseconds; under load, more).
const DEATH_GRACE: Duration = Duration::from_secs(5);

/// Whether any error in `err`'s chain is a lost connection to the agent.
fn is_connection_lost(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<OpError>()
            .is_some_and(OpError::is_connection_lost)
            || e.downcast_ref::<SessionError>()
                .is_some_and(SessionError::is_connection_lost)
            || e.downcast_ref::<ReceiveError>()
                .is_some_and(ReceiveError::is_connection_lost)
    })
}

/// Options that only act when a VM boots, as given on this command line (for the refusal when a
/// resident VM already runs).
#[derive(Debug, Default, Clone)]
pub struct BootOnly {
    pub given: Vec<&'static str>,
}

/// The resident VM of this command's state directory, if one runs.
pub fn find_resident(settings: &Settings) -> Result<Option<Resident>> {
    if settings.no_daemon || matches!(settings.state, StateChoice::Stateless) {
        return Ok(None);
    }
    let (dir, _) = resolve_state(settings.tool, settings.arch, &settings.state)?;
    Ok(Resident::find(&dir)?)
}

/// Finds, auto-starts or boots the guest for one command. `guest` are the boot-time options
/// (with this command's port forwards).
pub async fn acquire(
    settings: &Settings,
    guest: GuestOptions,
    boot_only: &BootOnly,
    no_kvm: bool,
    input_storage: Option<&Path>,
    reporter: &Reporter,
) -> Result<Guest> {
    if let Some(resident) = find_resident(settings)? {
        refuse_boot_options(settings, boot_only, &resident)?;
        reporter.debug(format!(
            "using the memory-resident VM (QEMU pid {})",
            resident.record.qemu.pid
        ));
        return Ok(Guest::Resident(resident));
    }
    let persistent = !matches!(settings.state, StateChoice::Stateless);
    if settings.auto_daemon && persistent {
        reporter.notice("starting a memory-resident VM (auto-daemon=true; `vconfig auto-daemon false` to boot per command)");
        let resident = start_resident(settings, guest, no_kvm, reporter).await?;
        return Ok(Guest::Resident(resident));
    }
    let image = ensure_image(settings.arch, &guest.image, reporter).await?;
    let config = InstanceConfig {
        tool: settings.tool,
        arch: settings.arch,
        state: settings.state.clone(),
        input_storage: input_storage.map(Path::to_path_buf),
        no_kvm,
        guest: GuestOptions {
            idle_timeout_secs: 0,
            ..guest
        },
    };
    let instance = Instance::boot(&config, &image, reporter).await?;
    Ok(Guest::OneShot(Box::new(instance)))
}

/// Boots a VM for this state directory and leaves it running.
pub async fn start_resident(
    settings: &Settings,
    guest: GuestOptions,
    no_kvm: bool,
    reporter: &Reporter,
) -> Result<Resident> {
    let image = ensure_image(settings.arch, &guest.image, reporter).await?;
    let config = InstanceConfig {
        tool: settings.tool,
        arch: settings.arch,
        state: settings.state.clone(),
        input_storage: None,
        no_kvm,
        guest,
    };
    let instance = Instance::boot(&config, &image, reporter).await?;
    let state = instance.state().clone();
    instance.detach().await?;
    Resident::find(&state)?.context("the memory-resident VM exited right after it started")
}

/// Options that only act at boot cannot change a running VM: say so instead of ignoring them
/// (upstream silently ignored them, §9.5).
fn refuse_boot_options(
    settings: &Settings,
    boot_only: &BootOnly,
    resident: &Resident,
) -> Result<()> {
    if boot_only.given.is_empty() {
        return Ok(());
    }
    let n = boot_only.given.len();
    bail!(
        "{} only take{} effect when a VM starts, and a memory-resident VM (QEMU pid {}) already \
         runs for {}.\nDrop {}, or restart that VM with {}: `{} {} … memres restart`",
        boot_only.given.join(", "),
        if n == 1 { "s" } else { "" },
        resident.record.qemu.pid,
        resident.state.root().display(),
        if n == 1 { "it" } else { "them" },
        if n == 1 { "it" } else { "them" },
        settings.tool.name(),
        boot_only.given.join(" "),
    )
}

#[cfg(test)]
mod tests {
    use anyhow::Context;
    use vcontainer_protocol::ProtocolError;

    use super::*;

    #[test]
    fn a_lost_connection_is_recognised_through_context_layers() {
        let closed: Result<(), OpError> = Err(ProtocolError::Closed.into());
        let err = closed.context("importing x").expect_err("an error");
        assert!(is_connection_lost(&err), "{err:#}");

        let stalled: Result<(), SessionError> = Err(SessionError::Stalled(Duration::from_secs(1)));
        assert!(is_connection_lost(
            &stalled.context("exporting").expect_err("an error")
        ));
    }

    #[test]
    fn an_ordinary_failure_is_not_a_lost_connection() {
        let io: Result<(), OpError> = Err(OpError::Io {
            context: "reading layout".into(),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        });
        assert!(!is_connection_lost(
            &io.context("importing").expect_err("an error")
        ));
        assert!(!is_connection_lost(&anyhow::anyhow!("bad reference")));
    }
}
