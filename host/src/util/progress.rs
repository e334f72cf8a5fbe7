//! What the user sees while things run: `[vdkr] …` status lines and byte-rate progress bars on
//! a terminal; nothing but errors in pipes and CI logs unless `--verbose`.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// Output policy of one CLI invocation.
#[derive(Debug, Clone)]
pub struct Reporter {
    prefix: String,
    verbose: bool,
    quiet: bool,
    tty: bool,
}

impl Reporter {
    pub fn new(prefix: &str, verbose: bool, quiet: bool) -> Self {
        Self {
            prefix: prefix.to_string(),
            verbose,
            quiet,
            tty: std::io::stderr().is_terminal(),
        }
    }

    /// A step the user should see on a terminal (and in logs with `--verbose`).
    pub fn step(&self, msg: impl AsRef<str>) {
        if !self.quiet && (self.tty || self.verbose) {
            eprintln!("[{}] {}", self.prefix, msg.as_ref());
        }
    }

    /// A line always shown unless `--quiet` (long first-use builds must show they are alive).
    pub fn notice(&self, msg: impl AsRef<str>) {
        if !self.quiet {
            eprintln!("[{}] {}", self.prefix, msg.as_ref());
        }
    }

    /// Detail for `--verbose` only.
    pub fn debug(&self, msg: impl AsRef<str>) {
        if self.verbose && !self.quiet {
            eprintln!("[{}] {}", self.prefix, msg.as_ref());
        }
    }

    pub fn error(&self, msg: impl AsRef<str>) {
        eprintln!("[{}] error: {}", self.prefix, msg.as_ref());
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn verbose(&self) -> bool {
        self.verbose
    }

    /// A byte counter with rate, drawn only on a terminal.
    pub fn bytes_bar(&self, label: &str, total: Option<u64>) -> ProgressBar {
        if self.quiet || !self.tty {
            return ProgressBar::hidden();
        }
        let bar = match total {
            Some(t) => ProgressBar::new(t).with_style(
                ProgressStyle::with_template(
                    "{prefix} {msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            ),
            None => ProgressBar::new_spinner().with_style(
                ProgressStyle::with_template("{prefix} {spinner} {msg} {bytes} {bytes_per_sec}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            ),
        };
        bar.set_prefix(format!("[{}]", self.prefix));
        bar.set_message(label.to_string());
        bar.enable_steady_tick(Duration::from_millis(200));
        bar
    }
}
