//! Kernel modules the image builder put into the initramfs, loaded in the builder's order
//! (`/etc/vcontainer/modules.order`, one absolute path per line). There is no modprobe: the
//! order is the dependency order, computed at build time.

use std::ffi::CString;
use std::fs::File;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::kmod::{finit_module, ModuleInitFlags};
use thiserror::Error;

pub const MODULES_ORDER: &str = "/etc/vcontainer/modules.order";

#[derive(Debug, Error)]
pub enum ModuleError {
    #[error("{path}: line {line}: module paths must be absolute")]
    RelativePath { path: String, line: usize },
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("loading module {module}: {errno}{hint}")]
    Load {
        module: String,
        errno: Errno,
        hint: &'static str,
    },
}

/// Parses modules.order: blank lines and `#` comments are skipped.
pub fn parse_modules_order(text: &str) -> Result<Vec<PathBuf>, ModuleError> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if !line.starts_with('/') {
            return Err(ModuleError::RelativePath {
                path: MODULES_ORDER.into(),
                line: i + 1,
            });
        }
        out.push(PathBuf::from(line));
    }
    Ok(out)
}

fn module_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

/// Loads every module of the list in order; a module that is already loaded (EEXIST) is fine.
pub fn load_modules(list: &[PathBuf]) -> Result<usize, ModuleError> {
    let no_params = CString::default();
    let mut loaded = 0;
    for path in list {
        let file = File::open(path).map_err(|source| ModuleError::Read {
            path: path.display().to_string(),
            source,
        })?;
        match finit_module(&file, &no_params, ModuleInitFlags::empty()) {
            Ok(()) => loaded += 1,
            Err(Errno::EEXIST) => {}
            Err(errno) => {
                return Err(ModuleError::Load {
                    module: module_name(path),
                    errno,
                    // finit_module reports an unresolved symbol as ENOENT, which reads like a
                    // missing file; the real cause is a dependency that was not loaded first.
                    hint: if errno == Errno::ENOENT {
                        " (unknown symbol: a dependency is missing or listed after it in modules.order)"
                    } else {
                        ""
                    },
                });
            }
        }
    }
    Ok(loaded)
}

/// Reads and loads `/etc/vcontainer/modules.order`; a missing list means a kernel with everything
/// built in.
pub fn load_listed_modules() -> Result<usize, ModuleError> {
    let text = match std::fs::read_to_string(MODULES_ORDER) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(source) => {
            return Err(ModuleError::Read {
                path: MODULES_ORDER.into(),
                source,
            })
        }
    };
    load_modules(&parse_modules_order(&text)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_is_kept_and_comments_skipped() {
        let text =
            "# generated\n/lib/modules/6.1/virtio_ring.ko\n\n  /lib/modules/6.1/virtio.ko  \n";
        let list = parse_modules_order(text).expect("parses");
        assert_eq!(
            list,
            vec![
                PathBuf::from("/lib/modules/6.1/virtio_ring.ko"),
                PathBuf::from("/lib/modules/6.1/virtio.ko")
            ]
        );
        assert_eq!(module_name(&list[1]), "virtio.ko");
    }

    #[test]
    fn relative_paths_are_rejected() {
        let err = parse_modules_order("/a.ko\nkernel/b.ko\n").expect_err("relative");
        assert!(err.to_string().contains("line 2"), "{err}");
    }

    #[test]
    fn enoent_names_the_module_and_the_likely_cause() {
        let err = ModuleError::Load {
            module: "virtio_blk.ko".into(),
            errno: Errno::ENOENT,
            hint: " (unknown symbol: a dependency is missing or listed after it in modules.order)",
        };
        let text = err.to_string();
        assert!(
            text.contains("virtio_blk.ko") && text.contains("ENOENT"),
            "{text}"
        );
    }
}
