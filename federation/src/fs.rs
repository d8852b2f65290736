//! The one place fedgate writes files it must not half-write: key material, CA files,
//! certificates, bundles, the last-known-good store and the distribution directory.
//!
//! Invariants (docs/threat-model.md, key material at rest):
//! * A private key is only ever written by [`write_private`]: the temporary file is created
//!   with mode 0600 (never widened, never `chmod`ed after the bytes are in it), fsynced, then
//!   renamed over the destination, so a reader sees either the old file or the whole new one.
//! * Public material (certificates, bundles) goes through [`write_atomic`] (same
//!   temp + fsync + rename, mode 0644 before umask).
//! * Nothing here logs or formats file contents; errors name the path only.
//! * Reads are bounded ([`read_limited`]) so a hostile file cannot exhaust memory.

use std::fs::{DirBuilder, File, Permissions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Largest file the CA and the identity commands read (certificates, keys, bundles).
pub const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// A file operation that failed, with the path it was about.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FileError {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} is larger than {limit} bytes; refusing to read it")]
    TooLarge { path: PathBuf, limit: u64 },
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot create directory {path}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Writes a private key (or any secret) to `path`: mode 0600 from creation, atomic replace.
///
/// This is the only function that writes key material; callers must not log `bytes`.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), FileError> {
    write_with_mode(path, bytes, PRIVATE)
}

const PRIVATE: u32 = 0o600;
const PUBLIC: u32 = 0o644;

/// Writes public material (certificates, bundles) to `path` atomically (temp + fsync + rename).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), FileError> {
    write_with_mode(path, bytes, PUBLIC)
}

/// [`write_atomic`] for callers that report the path themselves (public material only).
pub fn replace_public(path: &Path, bytes: &[u8]) -> io::Result<()> {
    replace(path, bytes, PUBLIC)
}

/// fsyncs a directory so that a rename or creation in it is durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Creates `dir` (and parents) if missing; a directory this creates gets mode 0700.
pub fn create_private_dir(dir: &Path) -> Result<(), FileError> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| FileError::CreateDir {
            path: dir.to_path_buf(),
            source,
        })
}

/// Reads at most [`MAX_FILE_BYTES`] from `path`; a larger file is an error, not a truncation.
pub fn read_limited(path: &Path) -> Result<Vec<u8>, FileError> {
    let read_err = |source| FileError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(read_err)?;
    let mut buf = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut buf)
        .map_err(read_err)?;
    if buf.len() as u64 > MAX_FILE_BYTES {
        return Err(FileError::TooLarge {
            path: path.to_path_buf(),
            limit: MAX_FILE_BYTES,
        });
    }
    Ok(buf)
}

fn write_with_mode(path: &Path, bytes: &[u8], mode: u32) -> Result<(), FileError> {
    replace(path, bytes, mode).map_err(|source| FileError::Write {
        path: path.to_path_buf(),
        source,
    })
}

fn replace(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    // The temporary file lives in the destination directory so the rename is atomic, and is
    // opened with `mode` (tempfile passes it to open(2)), so a key is never world-readable.
    let mut tmp = tempfile::Builder::new()
        .prefix(".fedgate-")
        .suffix(".tmp")
        .permissions(Permissions::from_mode(mode))
        .tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    // Make the rename durable; a failure here is not worth failing the write for on
    // filesystems that refuse to fsync directories.
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn private_file_is_0600_and_replaced_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.key");
        write_private(&path, b"one").unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        write_private(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        // No temporary files are left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("k.key")]);
    }

    #[test]
    fn public_file_is_not_group_writable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.json");
        write_atomic(&path, b"{}").unwrap();
        let mode = std::fs::metadata(&path).unwrap().mode() & 0o777;
        assert_eq!(mode & 0o022, 0);
        assert_eq!(mode & 0o600, 0o600);
    }

    #[test]
    fn replace_public_replaces_content_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.json");
        replace_public(&p, b"one").unwrap();
        replace_public(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        sync_dir(dir.path()).unwrap();
    }

    #[test]
    fn created_dir_is_0700() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("a/b");
        create_private_dir(&sub).unwrap();
        assert_eq!(std::fs::metadata(&sub).unwrap().mode() & 0o777, 0o700);
    }

    #[test]
    fn read_limited_refuses_large_files_and_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big");
        let f = File::create(&path).unwrap();
        f.set_len(MAX_FILE_BYTES + 1).unwrap();
        let err = read_limited(&path).unwrap_err();
        assert!(matches!(err, FileError::TooLarge { .. }));
        assert!(err.to_string().contains("big"));
        let missing = read_limited(&dir.path().join("nope")).unwrap_err();
        assert!(missing.to_string().contains("nope"));
    }
}
