//! Kernel module files as kernel packages ship them: plain `.ko`, or compressed `.ko.xz`,
//! `.ko.zst`, `.ko.gz` (Debian from trixie on, most Yocto kernels). The builder reads every module
//! through here and writes the closure uncompressed, so the agent loads plain files with
//! `finit_module` whatever the guest kernel's `CONFIG_MODULE_DECOMPRESS` says.
//!
//! The decoders are pure Rust (`lzma-rs`, `ruzstd`, `flate2`): pass 1 of a kernel build reads
//! the `.modinfo` of every module in the package (thousands), which one decompressor process per
//! module would make slow.

use std::io::{self, BufReader, Read, Write};

/// The largest module we decompress (the biggest in-tree modules are a few MiB); a larger one
/// is refused rather than allocated.
pub const MAX_MODULE: u64 = 64 << 20;

/// How a module file is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Xz,
    Zstd,
    Gzip,
}

/// The plain `….ko` path of a module file and its compression; `None` if `rel` is no module.
pub fn split(rel: &str) -> Option<(&str, Option<Compression>)> {
    for (suffix, c) in [
        (".xz", Compression::Xz),
        (".zst", Compression::Zstd),
        (".gz", Compression::Gzip),
    ] {
        if let Some(plain) = rel.strip_suffix(suffix).filter(|p| p.ends_with(".ko")) {
            return Some((plain, Some(c)));
        }
    }
    rel.ends_with(".ko").then_some((rel, None))
}

/// The module's ELF bytes, decompressed; at most [`MAX_MODULE`] of them.
pub fn read(reader: &mut dyn Read, compression: Option<Compression>) -> io::Result<Vec<u8>> {
    let mut out = Capped(Vec::new());
    match compression {
        None => {
            io::copy(reader, &mut out)?;
        }
        Some(Compression::Gzip) => {
            io::copy(&mut flate2::read::GzDecoder::new(reader), &mut out)?;
        }
        Some(Compression::Zstd) => {
            let mut dec = ruzstd::streaming_decoder::StreamingDecoder::new(reader)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
            io::copy(&mut dec, &mut out)?;
        }
        Some(Compression::Xz) => {
            lzma_rs::xz_decompress(&mut BufReader::new(reader), &mut out).map_err(|e| match e {
                lzma_rs::error::Error::IoError(e) => e,
                other => io::Error::new(io::ErrorKind::InvalidData, format!("{other:?}")),
            })?;
        }
    }
    Ok(out.0)
}

/// A buffer that refuses to grow past [`MAX_MODULE`] (a decompression bomb stops there).
struct Capped(Vec<u8>);

impl Write for Capped {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if (self.0.len() + buf.len()) as u64 > MAX_MODULE {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("decompresses to more than {MAX_MODULE} bytes"),
            ));
        }
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// `data` compressed by the real tool (`xz`, `zstd`, `gzip`), as a kernel build does it; for
/// this module's tests and the kernel package tests.
#[cfg(test)]
pub(crate) fn compress_with(tool: &str, data: &[u8]) -> Vec<u8> {
    use std::process::{Command, Stdio};
    let mut child = Command::new(tool)
        .arg("-c")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{tool}: {e}"));
    let mut stdin = child.stdin.take().expect("stdin");
    let data = data.to_vec();
    let feeder = std::thread::spawn(move || stdin.write_all(&data));
    let out = child.wait_with_output().expect("output");
    feeder.join().expect("join").expect("write");
    assert!(out.status.success(), "{tool} failed");
    out.stdout
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_paths_name_their_compression() {
        assert_eq!(
            split("kernel/a/virtio.ko"),
            Some(("kernel/a/virtio.ko", None))
        );
        assert_eq!(
            split("kernel/a/virtio.ko.xz"),
            Some(("kernel/a/virtio.ko", Some(Compression::Xz)))
        );
        assert_eq!(
            split("kernel/a/virtio.ko.zst"),
            Some(("kernel/a/virtio.ko", Some(Compression::Zstd)))
        );
        assert_eq!(
            split("kernel/a/virtio.ko.gz"),
            Some(("kernel/a/virtio.ko", Some(Compression::Gzip)))
        );
        assert_eq!(split("modules.dep.xz"), None);
        assert_eq!(split("kernel/a/readme"), None);
    }

    #[test]
    fn every_compression_reads_back_the_same_bytes() {
        let data: Vec<u8> = (0..200_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        for (tool, c) in [
            ("xz", Compression::Xz),
            ("zstd", Compression::Zstd),
            ("gzip", Compression::Gzip),
        ] {
            let packed = compress_with(tool, &data);
            assert_eq!(read(&mut &packed[..], Some(c)).expect(tool), data, "{tool}");
        }
        assert_eq!(read(&mut &data[..], None).expect("plain"), data);
        assert!(read(&mut &b"not xz"[..], Some(Compression::Xz)).is_err());
    }

    #[test]
    fn a_decompression_bomb_stops_at_the_cap() {
        let zeros = vec![0u8; MAX_MODULE as usize + 1];
        let packed = compress_with("zstd", &zeros);
        let err = read(&mut &packed[..], Some(Compression::Zstd)).expect_err("too big");
        assert!(err.to_string().contains("more than"), "{err}");
    }
}
