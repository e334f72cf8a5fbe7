//! Running host tools (apt-get, mmdebstrap, mksquashfs, dpkg-deb) with their output kept in a log
//! file, so a failure can show the tail of what the tool said instead of just an exit status.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::error::{BuildError, Result, ToolFailure};

/// How many trailing output lines a `ToolFailed` error carries.
const TAIL_LINES: usize = 25;

/// Which Debian package ships each tool we call, for the "install it" hint.
fn package_of(tool: &str) -> &'static str {
    match tool {
        "apt-get" | "apt-cache" => "apt",
        "mmdebstrap" => "mmdebstrap",
        "mksquashfs" => "squashfs-tools",
        "dpkg-deb" => "dpkg",
        "fakeroot" => "fakeroot",
        _ => "the package providing it",
    }
}

/// Finds `tool` in PATH (also the sbin dirs, which an ordinary user's PATH often lacks).
pub fn find(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin"].iter().map(PathBuf::from))
        .map(|dir| dir.join(tool))
        .find(|p| p.is_file())
}

/// Like [`find`], but a missing tool is an error naming the package to install.
pub fn require(tool: &str, what: &str) -> Result<PathBuf> {
    find(tool).ok_or_else(|| BuildError::ToolMissing {
        what: what.to_string(),
        tool: tool.to_string(),
        package: package_of(tool).to_string(),
    })
}

/// A command to run, its log file, and what to tell the user if it fails.
pub struct ToolRun<'a> {
    pub what: &'a str,
    pub hint: &'a str,
    pub log: &'a Path,
}

impl ToolRun<'_> {
    /// Runs `cmd` with stdout and stderr appended to the log. Each stderr line is passed to
    /// `on_line` (used to forward mmdebstrap's `I:` lines as progress). Reading stderr on this
    /// thread cannot deadlock because stdout goes to a file, not a pipe.
    pub fn run(&self, cmd: &mut Command, on_line: &mut dyn FnMut(&str)) -> Result<()> {
        let command = describe(cmd);
        let mut log = File::options()
            .create(true)
            .append(true)
            .open(self.log)
            .map_err(BuildError::io("opening tool log", self.log))?;
        // Best effort: the log is for people, a failed write must not fail the build.
        let _ = writeln!(log, "$ {command}");
        let stdout = log
            .try_clone()
            .map_err(BuildError::io("opening tool log", self.log))?;
        let program = cmd.get_program().to_string_lossy().into_owned();
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::from(stdout))
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| self.start_error(&program, e))?;
        let mut tail: VecDeque<String> = VecDeque::with_capacity(TAIL_LINES);
        if let Some(stderr) = child.stderr.take() {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let _ = writeln!(log, "{line}");
                on_line(&line);
                if tail.len() == TAIL_LINES {
                    tail.pop_front();
                }
                tail.push_back(line);
            }
        }
        let status = child.wait().map_err(BuildError::io(
            format!("{}: waiting for {program}", self.what),
            self.log,
        ))?;
        if status.success() {
            return Ok(());
        }
        // stdout went to the log; if stderr was quiet, show the log's own tail instead.
        if tail.is_empty() {
            tail = log_tail(self.log);
        }
        Err(BuildError::ToolFailed(Box::new(ToolFailure {
            what: self.what.to_string(),
            command,
            status: status.to_string(),
            hint: self.hint.to_string(),
            log: self.log.to_path_buf(),
            output_tail: tail.into_iter().collect::<Vec<_>>().join("\n"),
        })))
    }

    /// A tool that cannot be started: missing (naming the package to install) or another error.
    fn start_error(&self, program: &str, e: std::io::Error) -> BuildError {
        match e.kind() {
            std::io::ErrorKind::NotFound => BuildError::ToolMissing {
                what: self.what.to_string(),
                tool: program.to_string(),
                package: package_of(program).to_string(),
            },
            _ => BuildError::io(format!("{}: starting {program}", self.what), self.log)(e),
        }
    }

    /// Runs `cmd` and returns its stdout (for short queries like `apt-cache show`).
    pub fn output(&self, cmd: &mut Command) -> Result<String> {
        let command = describe(cmd);
        let program = cmd.get_program().to_string_lossy().into_owned();
        let out = cmd
            .stdin(Stdio::null())
            .output()
            .map_err(|e| self.start_error(&program, e))?;
        if let Ok(mut log) = File::options().create(true).append(true).open(self.log) {
            let _ = writeln!(log, "$ {command}");
            let _ = log.write_all(&out.stderr);
        }
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let lines: Vec<&str> = stderr.lines().collect();
            let start = lines.len().saturating_sub(TAIL_LINES);
            return Err(BuildError::ToolFailed(Box::new(ToolFailure {
                what: self.what.to_string(),
                command,
                status: out.status.to_string(),
                hint: self.hint.to_string(),
                log: self.log.to_path_buf(),
                output_tail: lines[start..].join("\n"),
            })));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

fn log_tail(log: &Path) -> VecDeque<String> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(TAIL_LINES);
    lines[start..].iter().map(|l| l.to_string()).collect()
}

/// A shell-like rendering of a command line for logs and errors.
pub fn describe(cmd: &Command) -> String {
    let mut parts = vec![cmd.get_program().to_string_lossy().into_owned()];
    for arg in cmd.get_args() {
        let arg = arg.to_string_lossy();
        if arg.contains([' ', '"', '\'', '$', ';']) {
            parts.push(format!("'{}'", arg.replace('\'', r"'\''")));
        } else {
            parts.push(arg.into_owned());
        }
    }
    parts.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_carries_the_tail_of_stderr() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("t.log");
        let run = ToolRun {
            what: "testing",
            hint: "nothing",
            log: &log,
        };
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo out; echo bad thing >&2; exit 3"]);
        let err = run.run(&mut cmd, &mut |_| {}).expect_err("must fail");
        let text = err.to_string();
        assert!(text.contains("bad thing"), "{text}");
        assert!(text.contains("exit status: 3"), "{text}");
        let logged = std::fs::read_to_string(&log).expect("log");
        assert!(logged.contains("out") && logged.contains("bad thing"));
    }

    #[test]
    fn describe_quotes_arguments_with_spaces() {
        let mut cmd = Command::new("echo");
        cmd.args(["a b", "c"]);
        assert_eq!(describe(&cmd), "echo 'a b' c");
    }
}
