//! Security review points that the source itself can prove (the rest are checked on running
//! VMs in vm_memres.rs and at the protocol level in protocol_hostile.rs / protocol_copy.rs):
//! no shell command strings anywhere in product code, and an agent that has no way to listen on
//! a network address.

use std::fs;
use std::path::{Path, PathBuf};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// Product code of `crate_dir`'s `src/`: each `.rs` file up to its `#[cfg(test)]` module (test
/// code may spawn shells to build fixtures).
fn product_sources(crate_dir: &str) -> Vec<(PathBuf, String)> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in fs::read_dir(dir).expect("read_dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    let mut files = Vec::new();
    walk(&workspace().join(crate_dir).join("src"), &mut files);
    assert!(!files.is_empty(), "no sources under {crate_dir}");
    files
        .into_iter()
        .map(|p| {
            let text = fs::read_to_string(&p).expect("read");
            let product = match text.find("#[cfg(test)]") {
                Some(i) => text[..i].to_string(),
                None => text,
            };
            (p, product)
        })
        .collect()
}

#[test]
fn no_shell_command_strings_in_product_code() {
    let shells = [
        "\"sh\"",
        "\"/bin/sh\"",
        "\"bash\"",
        "\"/bin/bash\"",
        "\"dash\"",
    ];
    let mut found = Vec::new();
    for krate in ["protocol", "agent", "host", "initramfs"] {
        for (path, text) in product_sources(krate) {
            let lines: Vec<&str> = text.lines().collect();
            for (i, line) in lines.iter().enumerate() {
                if !line.contains("\"-c\"") {
                    continue;
                }
                // A shell named on this line or the three before it, with `-c`: a command string.
                let window = lines[i.saturating_sub(3)..=i].join("\n");
                if shells.iter().any(|s| window.contains(s)) {
                    found.push(format!("{}:{}: {}", path.display(), i + 1, line.trim()));
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "commands must be argv lists, never shell strings:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_scan_would_see_a_shell_string() {
    // The check above must be able to fail: the same rule on a known-bad snippet.
    let snippet = "Command::new(\"sh\")\n    .arg(\"-c\")\n    .arg(format!(\"rm {x}\"))";
    let lines: Vec<&str> = snippet.lines().collect();
    let i = lines.iter().position(|l| l.contains("\"-c\"")).expect("-c");
    assert!(lines[i.saturating_sub(3)..=i].join("\n").contains("\"sh\""));
}

#[test]
fn the_agent_cannot_listen_on_a_network_address() {
    let mut found = Vec::new();
    for (path, text) in product_sources("agent") {
        for needle in [
            "TcpListener",
            "UdpSocket",
            "tokio::net::Tcp",
            "tokio::net::Udp",
            "socket2",
        ] {
            if text.contains(needle) {
                found.push(format!("{}: {needle}", path.display()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "the agent speaks vsock (and a unix socket in tests) only:\n{}",
        found.join("\n")
    );
}
