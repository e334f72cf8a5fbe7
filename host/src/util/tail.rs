//! The end of a log file as clean text, for error messages: QEMU's, the backend's and the
//! guest console's logs can be large and carry escape sequences and arbitrary bytes.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

/// How much of a log a tail reads at most.
const TAIL_BYTES: u64 = 64 * 1024;

/// The last `max` bytes of a file, for log tails that must not read a huge log whole.
pub fn read_end(path: &Path, max: u64) -> Vec<u8> {
    let Ok(mut file) = File::open(path) else {
        return Vec::new();
    };
    let len = file.metadata().map_or(0, |m| m.len());
    let _ = file.seek(SeekFrom::Start(len.saturating_sub(max)));
    let mut buf = Vec::new();
    let _ = file.take(max).read_to_end(&mut buf);
    buf
}

/// The line a Linux kernel panic starts with.
pub const KERNEL_PANIC: &str = "Kernel panic - not syncing";

/// The last `lines` lines of a log file as clean text; empty if the file is missing.
pub fn file_tail(path: &Path, lines: usize) -> String {
    tail_text(&read_end(path, TAIL_BYTES), lines)
}

/// The last `lines` non-empty lines of `bytes` as lossy UTF-8, with terminal escape sequences and
/// control characters removed: guest consoles carry colour codes, `\r\n` line ends and, after a
/// crash, arbitrary bytes that must not reach the user's terminal.
pub fn tail_text(bytes: &[u8], lines: usize) -> String {
    let text = String::from_utf8_lossy(bytes);
    let clean = strip_escapes(&text);
    let all: Vec<&str> = clean
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.is_empty())
        .collect();
    let tail = &all[all.len().saturating_sub(lines)..];
    // A kernel panic's cause is its first line; the stack trace after it can push that line out
    // of the tail (and QEMU may exit before the trace's end marker is written): keep it.
    let panic = all
        .iter()
        .rev()
        .find(|l| l.contains(KERNEL_PANIC))
        .filter(|p| !tail.contains(p));
    match panic {
        Some(p) => format!("{p}\n...\n{}", tail.join("\n")),
        None => tail.join("\n"),
    }
}

fn strip_escapes(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            // CSI sequence: ESC [ parameters… final byte in '@'..='~'.
            '\u{1b}' if chars.peek() == Some(&'[') => {
                chars.next();
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
            '\n' => out.push('\n'),
            '\t' => out.push(' '),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod panic_line_tests {
    use super::tail_text;

    #[test]
    fn a_kernel_panic_line_survives_a_long_trace() {
        let mut text = String::from("boot\nKernel panic - not syncing: sysrq triggered crash\n");
        for i in 0..50 {
            text.push_str(&format!("trace line {i}\n"));
        }
        let tail = tail_text(text.as_bytes(), 10);
        assert!(tail.starts_with("Kernel panic - not syncing"), "{tail}");
        assert!(tail.ends_with("trace line 49"), "{tail}");
        assert_eq!(tail_text(b"a\nb\n", 10), "a\nb");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_the_last_lines_and_strips_control_characters() {
        let log = b"first\r\n\x1b[0;32mOK\x1b[0m second\r\nthird\x07 \xff bell\r\n\r\n";
        assert_eq!(tail_text(log, 2), "OK second\nthird \u{fffd} bell");
        assert_eq!(tail_text(log, 10), "first\nOK second\nthird \u{fffd} bell");
        assert_eq!(tail_text(b"", 3), "");
        assert_eq!(tail_text(b"x", 0), "");
    }

    #[test]
    fn missing_file_has_an_empty_tail() {
        assert_eq!(file_tail(Path::new("/nonexistent/console.log"), 5), "");
    }

    #[test]
    fn tail_reads_only_the_end_of_big_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("console.log");
        let mut big = "noise\n".repeat(100_000);
        big.push_str("the end\n");
        std::fs::write(&path, big).expect("write");
        assert_eq!(file_tail(&path, 2), "noise\nthe end");
    }
}
