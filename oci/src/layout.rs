//! Writing an OCI image layout: everything goes into a temporary directory beside the output and
//! is renamed into place only when complete, so a failed build leaves no layout that looks
//! finished (and an existing one untouched). Plus the OCI archive (`.tar` of the layout, entries
//! sorted and normalised) and upstream's deploy names.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use oci_spec::image::{Descriptor, DescriptorBuilder, ImageIndexBuilder, MediaType};

use super::OciError;

pub const OCI_LAYOUT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;

/// A layout being written.
pub struct LayoutWriter {
    dest: PathBuf,
    tmp: tempfile::TempDir,
}

impl LayoutWriter {
    /// Starts a layout that will end up at `dest`.
    pub fn new(dest: &Path) -> Result<LayoutWriter, OciError> {
        let parent = dest
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        fs::create_dir_all(parent).map_err(|e| OciError::io(parent, e))?;
        let name = dest.file_name().ok_or_else(|| {
            OciError::Invalid(format!("{}: not a directory name", dest.display()))
        })?;
        let tmp = tempfile::Builder::new()
            .prefix(&format!(".{}.partial-", name.to_string_lossy()))
            .tempdir_in(parent)
            .map_err(|e| OciError::io(parent, e))?;
        let blobs = tmp.path().join("blobs/sha256");
        fs::create_dir_all(&blobs).map_err(|e| OciError::io(&blobs, e))?;
        let layout = tmp.path().join("oci-layout");
        fs::write(&layout, OCI_LAYOUT).map_err(|e| OciError::io(&layout, e))?;
        Ok(LayoutWriter {
            dest: dest.to_path_buf(),
            tmp,
        })
    }

    pub fn blob_path(&self, digest: &str) -> PathBuf {
        self.tmp
            .path()
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:"))
    }

    /// A scratch file inside the layout's temporary directory (same filesystem: renames work).
    pub fn scratch(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    /// Adds a JSON (or other small) blob; returns its descriptor.
    pub fn add_bytes(&self, media_type: MediaType, bytes: &[u8]) -> Result<Descriptor, OciError> {
        let digest = super::sha256_digest(bytes);
        let path = self.blob_path(&digest);
        fs::write(&path, bytes).map_err(|e| OciError::io(&path, e))?;
        descriptor(media_type, &digest, bytes.len() as u64)
    }

    /// Moves a finished file (already hashed) in as blob `digest`.
    pub fn add_file(&self, file: &Path, digest: &str) -> Result<(), OciError> {
        let path = self.blob_path(digest);
        fs::rename(file, &path).map_err(|e| OciError::io(&path, e))
    }

    /// Hard-links (or copies) an existing blob in.
    pub fn add_link(&self, file: &Path, digest: &str) -> Result<(), OciError> {
        let path = self.blob_path(digest);
        if path.exists() {
            return Ok(());
        }
        super::cache::link_or_copy(file, &path).map_err(|e| OciError::io(&path, e))
    }

    /// Writes `index.json` with the one entry `manifest` and moves the layout into place
    /// (replacing an older one at the same path).
    pub fn commit(self, manifest: Descriptor) -> Result<PathBuf, OciError> {
        let index = ImageIndexBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageIndex)
            .manifests(vec![manifest])
            .build()
            .map_err(|e| OciError::Invalid(format!("index.json: {e}")))?;
        let path = self.tmp.path().join("index.json");
        fs::write(&path, super::canonical_json(&index)?).map_err(|e| OciError::io(&path, e))?;
        let staged = self.tmp.keep();
        replace_dir(&staged, &self.dest)?;
        Ok(self.dest)
    }
}

/// Renames `staged` to `dest`; an existing `dest` is moved aside first and removed after.
pub fn replace_dir(staged: &Path, dest: &Path) -> Result<(), OciError> {
    let old = if fs::symlink_metadata(dest).is_ok() {
        let aside = staged.with_extension("old");
        fs::rename(dest, &aside).map_err(|e| OciError::io(dest, e))?;
        Some(aside)
    } else {
        None
    };
    if let Err(e) = fs::rename(staged, dest) {
        if let Some(a) = &old {
            let _ = fs::rename(a, dest);
        }
        let _ = fs::remove_dir_all(staged);
        return Err(OciError::io(dest, e));
    }
    if let Some(a) = old {
        let _ = fs::remove_dir_all(&a).or_else(|_| fs::remove_file(&a));
    }
    Ok(())
}

pub fn descriptor(media_type: MediaType, digest: &str, size: u64) -> Result<Descriptor, OciError> {
    let d: oci_spec::image::Digest = digest
        .parse()
        .map_err(|e| OciError::Invalid(format!("digest {digest}: {e}")))?;
    DescriptorBuilder::default()
        .media_type(media_type)
        .digest(d)
        .size(size)
        .build()
        .map_err(|e| OciError::Invalid(format!("descriptor: {e}")))
}

/// `<name>-<tag>-oci` with `:` in the tag made `_` (upstream's deploy symlink name).
pub fn deploy_name(image_name: &str, tag: &str) -> String {
    format!("{image_name}-{}-oci", tag.replace(':', "_"))
}

/// Writes the layout at `layout` as an OCI archive at `out` (the layout's contents at the
/// archive root, like upstream's `.tar`): entries sorted, owned by 0:0, times set to `mtime`.
/// Written to a temporary file and renamed, so a failure leaves nothing at `out`.
pub fn write_archive(layout: &Path, out: &Path, mtime: u64) -> Result<(), OciError> {
    let parent = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = tempfile::Builder::new()
        .prefix(".oci-archive-")
        .tempfile_in(parent)
        .map_err(|e| OciError::io(parent, e))?;
    {
        let mut b = tar::Builder::new(BufWriter::new(tmp.as_file()));
        let mut entries = Vec::new();
        collect(layout, Path::new(""), &mut entries).map_err(|e| OciError::io(layout, e))?;
        for rel in entries {
            let abs = layout.join(&rel);
            let md = fs::metadata(&abs).map_err(|e| OciError::io(&abs, e))?;
            let mut h = tar::Header::new_gnu();
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(mtime);
            if md.is_dir() {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                h.set_size(0);
                let mut name = rel.into_os_string();
                name.push("/");
                b.append_data(&mut h, name, io::empty())
                    .map_err(|e| OciError::io(out, e))?;
            } else {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(0o644);
                h.set_size(md.len());
                let f = File::open(&abs).map_err(|e| OciError::io(&abs, e))?;
                b.append_data(&mut h, &rel, f)
                    .map_err(|e| OciError::io(out, e))?;
            }
        }
        let mut w = b.into_inner().map_err(|e| OciError::io(out, e))?;
        w.flush().map_err(|e| OciError::io(out, e))?;
    }
    tmp.persist(out).map_err(|e| OciError::io(out, e.error))?;
    Ok(())
}

fn collect(root: &Path, rel: &Path, out: &mut Vec<PathBuf>) -> io::Result<()> {
    let mut names: Vec<_> = fs::read_dir(root.join(rel))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()?;
    names.sort();
    for n in names {
        let p = rel.join(&n);
        let is_dir = fs::symlink_metadata(root.join(&p))?.is_dir();
        out.push(p.clone());
        if is_dir {
            collect(root, &p, out)?;
        }
    }
    Ok(())
}
