//! Reading a `.deb`'s file tree. `dpkg-deb --fsys-tarfile` turns any data.tar compression (xz,
//! zstd, gzip) into a plain tar stream, which the `tar` crate reads entry by entry; that lets us
//! take just the kernel and a handful of modules without unpacking ~100 MB of modules or pulling
//! an xz/zstd decoder into this crate. dpkg is on every host that has apt, which we need anyway.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::error::{BuildError, Result, ToolFailure};
use crate::tool;

/// Calls `visit(path_in_package, entry)` for every regular file in the `.deb`'s data archive.
/// Paths are relative (no leading `./`).
pub fn for_each_file(
    deb: &Path,
    visit: &mut dyn FnMut(&str, &mut dyn Read) -> Result<()>,
) -> Result<()> {
    let dpkg_deb = tool::require("dpkg-deb", "reading a .deb")?;
    let mut child = Command::new(dpkg_deb)
        .arg("--fsys-tarfile")
        .arg(deb)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(BuildError::io("starting dpkg-deb --fsys-tarfile", deb))?;
    let stdout = child.stdout.take().ok_or_else(|| BuildError::Package {
        what: format!("reading {}", deb.display()),
        detail: "dpkg-deb gave no stdout".to_string(),
    })?;
    let mut archive = tar::Archive::new(stdout);
    let walk = (|| -> Result<()> {
        let entries = archive
            .entries()
            .map_err(BuildError::io("reading data.tar", deb))?;
        for entry in entries {
            let mut entry = entry.map_err(BuildError::io("reading data.tar entry", deb))?;
            if entry.header().entry_type() != tar::EntryType::Regular {
                continue;
            }
            let path: PathBuf = entry
                .path()
                .map_err(BuildError::io("reading data.tar path", deb))?
                .into_owned();
            let rel = path.to_string_lossy();
            let rel = rel.trim_start_matches("./").to_string();
            visit(&rel, &mut entry)?;
        }
        Ok(())
    })();
    // Close our end of stdout first (a blocked dpkg-deb then gets EPIPE and exits), then drain
    // stderr and reap, even if the visitor failed: no zombie, and a useful message survives.
    let mut rest = archive.into_inner();
    if walk.is_ok() {
        // Read the padding after the tar end marker so dpkg-deb exits normally.
        let _ = std::io::copy(&mut rest, &mut std::io::sink());
    }
    drop(rest);
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut stderr);
    }
    let status = child
        .wait()
        .map_err(BuildError::io("waiting for dpkg-deb", deb))?;
    walk?;
    if !status.success() {
        return Err(BuildError::ToolFailed(Box::new(ToolFailure {
            what: format!("reading {}", deb.display()),
            command: format!("dpkg-deb --fsys-tarfile {}", deb.display()),
            status: status.to_string(),
            hint: "the .deb may be truncated; delete it from the cache and retry".to_string(),
            log: deb.to_path_buf(),
            output_tail: stderr,
        })));
    }
    Ok(())
}
