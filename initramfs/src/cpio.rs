//! A writer for the "newc" cpio format (the one the kernel unpacks as initramfs). Hand-written:
//! the format is a 110-byte ASCII header per entry plus 4-byte padding, and owning it lets us
//! write device nodes and root ownership as an ordinary user, with fixed mtimes and inode numbers
//! so equal inputs give byte-identical archives.

use std::io::{self, Write};

const MAGIC: &[u8; 6] = b"070701";
const TRAILER: &str = "TRAILER!!!";
const HEADER_LEN: usize = 110;

pub const S_IFDIR: u32 = 0o040000;
pub const S_IFREG: u32 = 0o100000;
pub const S_IFLNK: u32 = 0o120000;
pub const S_IFCHR: u32 = 0o020000;

/// Writes entries in the order given; the caller sorts them (parents before children).
pub struct CpioWriter<W: Write> {
    out: W,
    next_ino: u32,
    written: u64,
    /// Every entry gets this mtime (determinism).
    mtime: u32,
}

/// The metadata of one entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub nlink: u32,
    pub rdev_major: u32,
    pub rdev_minor: u32,
}

impl<W: Write> CpioWriter<W> {
    pub fn new(out: W) -> Self {
        CpioWriter {
            out,
            next_ino: 1,
            written: 0,
            mtime: 0,
        }
    }

    pub fn dir(&mut self, path: &str, perm: u32) -> io::Result<()> {
        self.entry(path, Entry::new(S_IFDIR | perm, 2), &[])
    }

    pub fn file(&mut self, path: &str, perm: u32, data: &[u8]) -> io::Result<()> {
        self.entry(path, Entry::new(S_IFREG | perm, 1), data)
    }

    pub fn symlink(&mut self, path: &str, target: &str) -> io::Result<()> {
        self.entry(path, Entry::new(S_IFLNK | 0o777, 1), target.as_bytes())
    }

    /// A character device node; needs no privileges because it is only bytes in the archive.
    pub fn char_device(&mut self, path: &str, perm: u32, major: u32, minor: u32) -> io::Result<()> {
        let mut e = Entry::new(S_IFCHR | perm, 1);
        e.rdev_major = major;
        e.rdev_minor = minor;
        self.entry(path, e, &[])
    }

    /// Any entry. `path` is stored without a leading `/`.
    pub fn entry(&mut self, path: &str, e: Entry, data: &[u8]) -> io::Result<()> {
        let name = path.trim_start_matches('/');
        if name.is_empty() || name.contains('\0') {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("bad cpio path {path:?}"),
            ));
        }
        let size = u32::try_from(data.len()).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{path}: larger than 4 GiB"),
            )
        })?;
        let ino = self.next_ino;
        self.next_ino += 1;
        self.header(ino, e, size, name)?;
        self.write_padded(data)
    }

    /// Writes the `TRAILER!!!` entry and returns the sink.
    pub fn finish(mut self) -> io::Result<W> {
        self.header(0, Entry::new(0, 1), 0, TRAILER)?;
        self.out.flush()?;
        Ok(self.out)
    }

    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.written
    }

    pub fn is_empty(&self) -> bool {
        self.written == 0
    }

    fn header(&mut self, ino: u32, e: Entry, size: u32, name: &str) -> io::Result<()> {
        let namesize = name.len() + 1;
        let fields = [
            ino,
            e.mode,
            e.uid,
            e.gid,
            e.nlink,
            self.mtime,
            size,
            0, // devmajor
            0, // devminor
            e.rdev_major,
            e.rdev_minor,
            namesize as u32,
            0, // check (only for the "crc" variant 070702)
        ];
        let mut head = Vec::with_capacity(HEADER_LEN + namesize + 3);
        head.extend_from_slice(MAGIC);
        for f in fields {
            head.extend_from_slice(format!("{f:08x}").as_bytes());
        }
        head.extend_from_slice(name.as_bytes());
        head.push(0);
        self.write_padded(&head)
    }

    /// Writes `data` and pads the stream to a multiple of 4 (header+name and data are each
    /// padded; the header is 110 bytes, so padding after the name depends on its length).
    fn write_padded(&mut self, data: &[u8]) -> io::Result<()> {
        self.out.write_all(data)?;
        self.written += data.len() as u64;
        let pad = (4 - (self.written % 4) as usize) % 4;
        self.out.write_all(&[0u8; 3][..pad])?;
        self.written += pad as u64;
        Ok(())
    }
}

impl Entry {
    pub fn new(mode: u32, nlink: u32) -> Self {
        Entry {
            mode,
            uid: 0,
            gid: 0,
            nlink,
            rdev_major: 0,
            rdev_minor: 0,
        }
    }
}

/// A minimal newc reader, for tests and for checking archives we wrote.
pub fn read_entries(mut data: &[u8]) -> Result<Vec<(String, Entry, Vec<u8>)>, String> {
    let mut out = Vec::new();
    let total = data.len();
    loop {
        let offset = total - data.len();
        if data.len() < HEADER_LEN || &data[..6] != MAGIC {
            return Err(format!("bad header at {offset}"));
        }
        let field = |i: usize| -> Result<u32, String> {
            let s = std::str::from_utf8(&data[6 + i * 8..6 + (i + 1) * 8])
                .map_err(|e| e.to_string())?;
            u32::from_str_radix(s, 16).map_err(|e| e.to_string())
        };
        let mode = field(1)?;
        let entry = Entry {
            mode,
            uid: field(2)?,
            gid: field(3)?,
            nlink: field(4)?,
            rdev_major: field(9)?,
            rdev_minor: field(10)?,
        };
        let size = field(6)? as usize;
        let namesize = field(11)? as usize;
        let name_end = HEADER_LEN + namesize;
        let name = std::str::from_utf8(&data[HEADER_LEN..name_end - 1])
            .map_err(|e| e.to_string())?
            .to_string();
        let data_start = (offset + name_end).div_ceil(4) * 4 - offset;
        let data_end = data_start + size;
        if data_end > data.len() {
            return Err(format!("{name}: truncated"));
        }
        let body = data[data_start..data_end].to_vec();
        let next = (offset + data_end).div_ceil(4) * 4 - offset;
        data = &data[next.min(data.len())..];
        if name == TRAILER {
            return Ok(out);
        }
        out.push((name, entry, body));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn archive() -> Vec<u8> {
        let mut w = CpioWriter::new(Vec::new());
        w.dir("/dev", 0o755).expect("dir");
        w.char_device("/dev/console", 0o600, 5, 1).expect("dev");
        w.file("/init", 0o755, b"#!/bin/sh\n").expect("file");
        w.file("etc/a", 0o644, b"abcde").expect("file");
        w.symlink("bin", "usr/bin").expect("link");
        w.finish().expect("finish")
    }

    #[test]
    fn round_trips_header_fields() {
        let bytes = archive();
        let entries = read_entries(&bytes).expect("read");
        let names: Vec<&str> = entries.iter().map(|(n, _, _)| n.as_str()).collect();
        assert_eq!(names, vec!["dev", "dev/console", "init", "etc/a", "bin"]);
        let (_, console, _) = &entries[1];
        assert_eq!(console.mode, S_IFCHR | 0o600);
        assert_eq!((console.rdev_major, console.rdev_minor), (5, 1));
        assert_eq!(entries[2].1.mode, S_IFREG | 0o755);
        assert_eq!(entries[2].2, b"#!/bin/sh\n");
        assert_eq!(entries[3].2, b"abcde");
        assert_eq!(entries[4].2, b"usr/bin");
        assert_eq!(entries[0].1.nlink, 2);
        assert!(entries.iter().all(|(_, e, _)| e.uid == 0 && e.gid == 0));
    }

    #[test]
    fn everything_is_padded_to_four_bytes() {
        let bytes = archive();
        assert_eq!(bytes.len() % 4, 0);
        // first header: 110 + "dev\0" = 114 -> next header at 116
        assert_eq!(&bytes[116..122], MAGIC);
        // the trailer is the last entry
        let trailer = b"TRAILER!!!\0";
        let pos = bytes
            .windows(trailer.len())
            .rposition(|w| w == trailer)
            .expect("trailer");
        assert_eq!(&bytes[pos - HEADER_LEN..pos - HEADER_LEN + 6], MAGIC);
    }

    #[test]
    fn output_is_deterministic_and_rejects_bad_names() {
        assert_eq!(archive(), archive());
        let mut w = CpioWriter::new(Vec::new());
        assert!(w.file("/", 0o644, b"").is_err());
    }
}
