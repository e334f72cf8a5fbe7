//! Extended attributes of a path, never following a symlink, through the C library.
//!
//! Written here rather than taken from the `xattr` crate: that crate (like everything built on
//! rustix's default backend) makes the system calls itself, and a build runs us under fakeroot or
//! Yocto's pseudo, which emulate root by intercepting the C library's calls. A capability that a
//! package's postinst set under pseudo lives in pseudo's database, not on disk: only a call
//! through libc sees it, and only a call through libc can set one as an unprivileged user.
//! The three FFI calls are this module's only unsafe code.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// An extended attribute: name and value, as bytes.
pub type Xattr = (Vec<u8>, Vec<u8>);

fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL byte in a path"))
}

fn c_name(name: &[u8]) -> io::Result<CString> {
    CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL byte in an xattr name"))
}

/// Calls `f(buf, len)` for a size, then again with a buffer of that size, until the value fits
/// (it may grow between the two calls).
fn sized_call(mut f: impl FnMut(*mut libc::c_void, usize) -> libc::ssize_t) -> io::Result<Vec<u8>> {
    loop {
        let want = f(std::ptr::null_mut(), 0);
        if want < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut buf = vec![0u8; want as usize];
        let got = f(buf.as_mut_ptr().cast(), buf.len());
        if got >= 0 {
            buf.truncate(got as usize);
            return Ok(buf);
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::ERANGE) {
            return Err(err);
        }
    }
}

/// The names of `path`'s extended attributes; none where the file system has no xattrs.
pub fn list(path: &Path) -> io::Result<Vec<Vec<u8>>> {
    let p = c_path(path)?;
    // SAFETY: `p` is a NUL-terminated path; the buffer pointer and length come from sized_call
    // and describe a live allocation of that length (or are null/0 for the size query).
    let raw = sized_call(|buf, len| unsafe { libc::llistxattr(p.as_ptr(), buf.cast(), len) });
    match raw {
        Ok(raw) => Ok(raw
            .split(|b| *b == 0)
            .filter(|n| !n.is_empty())
            .map(<[u8]>::to_vec)
            .collect()),
        Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// The value of `name` on `path`; None if it has no such attribute (any more).
pub fn get(path: &Path, name: &[u8]) -> io::Result<Option<Vec<u8>>> {
    let p = c_path(path)?;
    let n = c_name(name)?;
    // SAFETY: as in `list`; `n` is a NUL-terminated attribute name.
    let value = sized_call(|buf, len| unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf, len) });
    match value {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.raw_os_error() == Some(libc::ENODATA) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Sets `name` to `value` on `path` (creating or replacing it).
pub fn set(path: &Path, name: &[u8], value: &[u8]) -> io::Result<()> {
    let p = c_path(path)?;
    let n = c_name(name)?;
    // SAFETY: NUL-terminated path and name; `value` is a live slice of its own length.
    let r = unsafe {
        libc::lsetxattr(
            p.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Every extended attribute of `path` whose name `keep` accepts, sorted by name.
pub fn read_all(path: &Path, keep: impl Fn(&[u8]) -> bool) -> io::Result<Vec<Xattr>> {
    let mut out = Vec::new();
    for name in list(path)? {
        if !keep(&name) {
            continue;
        }
        // Listed a moment ago but gone now: nothing to keep.
        if let Some(value) = get(path, &name)? {
            out.push((name, value));
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_list_get_round_trip_without_following_symlinks() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("f");
        std::fs::write(&f, b"x").expect("write");
        assert_eq!(
            read_all(&f, |_| true).expect("none yet"),
            Vec::<Xattr>::new()
        );
        set(&f, b"user.b", b"2").expect("set");
        set(&f, b"user.a", &[0, 1, 255]).expect("set binary");
        assert_eq!(
            read_all(&f, |_| true).expect("read"),
            vec![
                (b"user.a".to_vec(), vec![0, 1, 255]),
                (b"user.b".to_vec(), b"2".to_vec())
            ]
        );
        assert_eq!(read_all(&f, |n| n != b"user.a").expect("filtered").len(), 1);
        assert_eq!(get(&f, b"user.none").expect("absent"), None);
        let link = dir.path().join("l");
        std::os::unix::fs::symlink(&f, &link).expect("symlink");
        assert!(list(&link).expect("the link's own").is_empty());
        assert!(
            set(&f, b"user.a\0b", b"").is_err(),
            "a NUL in a name is refused"
        );
    }
}
