//! `FileWatch`: the one way fedgate notices that a set of files changed and re-loads them.
//!
//! A watch polls (no inotify: Kubernetes updates mounted Secrets and ConfigMaps by swapping a
//! symlink, which inotify watches on the old target miss). Each poll stats every file, reads
//! it, and stats it again.
//!
//! Invariants:
//! * A *version* of the file set is its content: a SHA-256 over every file's presence, length
//!   and bytes. A touch (new mtime, same bytes) is not a change; an mtime-preserving replace,
//!   a rename over the file or a same-size rewrite is, because the bytes differ.
//! * A read is accepted only if every file's (device, inode, length, mtime) stat is the same
//!   before and after the read; otherwise a writer was busy and the poll reports nothing, so
//!   the next poll retries (a half-written file is never handed to the parser).
//! * Each accepted version is parsed exactly once, by the caller's closure, whether it parses
//!   or not: a broken version is reported once and retried only when the content changes
//!   again. The caller keeps its last good value on an error.
//! * A missing *required* file is a [`WatchError::Read`] for that version; a missing *optional*
//!   file reads as empty bytes. A file over [`MAX_FILE_BYTES`](crate::fs::MAX_FILE_BYTES) is a read error, never
//!   truncated.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;

use crate::fs::FileError;

/// The caller's parser: the files' bytes, in the order they were given.
type Parse<T, E> = dyn Fn(&[Vec<u8>]) -> Result<T, E> + Send + Sync;

/// Polls a fixed list of files and parses each new, stable version of their contents.
pub struct FileWatch<T, E> {
    files: Vec<Watched>,
    parse: Box<Parse<T, E>>,
    /// Content digest of the last version handed to the parser (or reported unreadable).
    seen: Option<[u8; 32]>,
}

struct Watched {
    path: PathBuf,
    optional: bool,
}

/// Every file's bytes, in order, or why a required one could not be read.
type Contents<E> = Result<Vec<Vec<u8>>, WatchError<E>>;

/// What identifies a file's current version without reading it; `None` when it is missing.
type Stamp = Option<(u64, u64, u64, Option<SystemTime>)>;

/// Why a version of the file set could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum WatchError<E> {
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Parse(E),
}

// === impl FileWatch ===

impl<T, E> FileWatch<T, E> {
    /// Watches `paths` (all required) and parses their contents with `parse`. Nothing has been
    /// seen yet: the first [`poll_once`](Self::poll_once) or [`load`](Self::load) parses.
    pub fn new(
        paths: impl IntoIterator<Item = PathBuf>,
        parse: impl Fn(&[Vec<u8>]) -> Result<T, E> + Send + Sync + 'static,
    ) -> Self {
        Self {
            files: paths
                .into_iter()
                .map(|path| Watched {
                    path,
                    optional: false,
                })
                .collect(),
            parse: Box::new(parse),
            seen: None,
        }
    }

    /// Adds a file that may be missing (it then reads as empty bytes); it comes after the
    /// files given so far in the slice handed to the parser.
    pub fn with_optional(mut self, path: PathBuf) -> Self {
        self.files.push(Watched {
            path,
            optional: true,
        });
        self
    }

    /// The watched paths, in parser order.
    pub fn paths(&self) -> impl Iterator<Item = &Path> {
        self.files.iter().map(|f| f.path.as_path())
    }

    /// Reads and parses the files now, stable or not (startup: there is no previous value to
    /// keep). The version read counts as seen, so a later poll reports only a new one.
    pub fn load(&mut self) -> Result<T, WatchError<E>> {
        let (digest, read) = self.read_all();
        self.seen = Some(digest);
        read.and_then(|contents| (self.parse)(&contents).map_err(WatchError::Parse))
    }

    /// One poll: `None` if the content is the version already seen, or if a file changed
    /// during the read (retried next poll); otherwise the new version, parsed.
    pub fn poll_once(&mut self) -> Option<Result<T, WatchError<E>>> {
        self.poll_racing(|| {})
    }

    /// [`poll_once`](Self::poll_once) with `during_read` run between the read and the second
    /// stat (tests stage a concurrent writer with it).
    fn poll_racing(&mut self, during_read: impl FnOnce()) -> Option<Result<T, WatchError<E>>> {
        let before = self.stamps();
        let (digest, read) = self.read_all();
        during_read();
        if before != self.stamps() {
            return None;
        }
        if self.seen == Some(digest) {
            return None;
        }
        self.seen = Some(digest);
        Some(read.and_then(|contents| (self.parse)(&contents).map_err(WatchError::Parse)))
    }

    /// Polls every `interval` (the first poll one interval from now) until `shutdown`, calling
    /// `on_change` with each new version.
    pub async fn run(
        mut self,
        interval: Duration,
        shutdown: CancellationToken,
        mut on_change: impl FnMut(Result<T, WatchError<E>>),
    ) {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            if let Some(result) = self.poll_once() {
                on_change(result);
            }
        }
    }

    fn stamps(&self) -> Vec<Stamp> {
        self.files.iter().map(|f| stamp(&f.path)).collect()
    }

    /// The digest of what was read (always), and the contents if every required file read.
    fn read_all(&self) -> ([u8; 32], Contents<E>) {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        let mut contents = Vec::with_capacity(self.files.len());
        let mut failed = None;
        for f in &self.files {
            match read(&f.path) {
                Ok(bytes) => {
                    ctx.update(&[1]);
                    ctx.update(&(bytes.len() as u64).to_le_bytes());
                    ctx.update(&bytes);
                    contents.push(bytes);
                }
                Err(e) => {
                    ctx.update(&[0]);
                    ctx.update(&[error_class(&e)]);
                    if f.optional && e.kind() == io::ErrorKind::NotFound {
                        contents.push(Vec::new());
                    } else if failed.is_none() {
                        failed = Some(WatchError::Read {
                            path: f.path.clone(),
                            source: e,
                        });
                    }
                }
            }
        }
        let mut digest = [0u8; 32];
        digest.copy_from_slice(ctx.finish().as_ref());
        match failed {
            Some(e) => (digest, Err(e)),
            None => (digest, Ok(contents)),
        }
    }
}

impl<T, E> std::fmt::Debug for FileWatch<T, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileWatch")
            .field("paths", &self.paths().collect::<Vec<_>>())
            .field("seen", &self.seen.is_some())
            .finish_non_exhaustive()
    }
}

/// At most [`MAX_FILE_BYTES`](crate::fs::MAX_FILE_BYTES) of `path`; a larger file is an `InvalidData` error.
fn read(path: &Path) -> io::Result<Vec<u8>> {
    crate::fs::read_limited(path).map_err(|e| match e {
        FileError::Read { source, .. } => source,
        other => io::Error::new(io::ErrorKind::InvalidData, other.to_string()),
    })
}

/// Distinguishes "missing" from other read failures in the digest, so a file that goes from
/// unreadable to missing is a new version (and reported again).
fn error_class(e: &io::Error) -> u8 {
    match e.kind() {
        io::ErrorKind::NotFound => 0,
        io::ErrorKind::PermissionDenied => 1,
        _ => 2,
    }
}

fn stamp(path: &Path) -> Stamp {
    let md = std::fs::metadata(path).ok()?;
    #[cfg(unix)]
    let (dev, ino) = {
        use std::os::unix::fs::MetadataExt;
        (md.dev(), md.ino())
    };
    #[cfg(not(unix))]
    let (dev, ino) = (0, 0);
    Some((dev, ino, md.len(), md.modified().ok()))
}

#[cfg(test)]
mod tests {
    use std::fs::{File, FileTimes};

    use super::*;

    fn watch_of(paths: &[PathBuf]) -> FileWatch<Vec<String>, String> {
        FileWatch::new(paths.to_vec(), |contents: &[Vec<u8>]| {
            contents
                .iter()
                .map(|c| String::from_utf8(c.clone()).map_err(|e| e.to_string()))
                .collect::<Result<Vec<_>, _>>()
                .and_then(|v| {
                    if v.iter().any(|s| s.contains("broken")) {
                        Err("broken".to_string())
                    } else {
                        Ok(v)
                    }
                })
        })
    }

    fn parsed(r: Option<Result<Vec<String>, WatchError<String>>>) -> Vec<String> {
        match r {
            Some(Ok(v)) => v,
            Some(Err(e)) => panic!("unexpected error: {e}"),
            None => panic!("no change reported"),
        }
    }

    fn set_mtime(path: &Path, t: SystemTime) {
        let f = File::options().write(true).open(path).unwrap();
        f.set_times(FileTimes::new().set_modified(t)).unwrap();
    }

    #[test]
    fn first_poll_parses_then_unchanged_reports_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        std::fs::write(&a, "one").unwrap();
        let mut w = watch_of(&[a]);
        assert_eq!(parsed(w.poll_once()), ["one"]);
        assert!(w.poll_once().is_none());
    }

    #[test]
    fn touch_without_content_change_is_not_a_reload() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        std::fs::write(&a, "one").unwrap();
        let mut w = watch_of(std::slice::from_ref(&a));
        w.load().unwrap();
        set_mtime(&a, SystemTime::now() + Duration::from_secs(60));
        assert!(w.poll_once().is_none());
        // Rewriting the same bytes is no change either.
        std::fs::write(&a, "one").unwrap();
        assert!(w.poll_once().is_none());
    }

    #[test]
    fn same_size_rewrite_with_preserved_mtime_is_seen() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        std::fs::write(&a, "one").unwrap();
        let mtime = std::fs::metadata(&a).unwrap().modified().unwrap();
        let mut w = watch_of(std::slice::from_ref(&a));
        w.load().unwrap();
        std::fs::write(&a, "two").unwrap();
        set_mtime(&a, mtime);
        assert_eq!(parsed(w.poll_once()), ["two"]);
    }

    #[test]
    fn rename_over_the_file_and_symlink_swap_are_seen() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        std::fs::write(&a, "one").unwrap();
        let mut w = watch_of(std::slice::from_ref(&a));
        w.load().unwrap();

        let tmp = dir.path().join("a.tmp");
        std::fs::write(&tmp, "ONE").unwrap();
        std::fs::rename(&tmp, &a).unwrap();
        assert_eq!(parsed(w.poll_once()), ["ONE"]);

        // Kubernetes style: `link` points into a data dir that is swapped.
        let (v1, v2, link) = (
            dir.path().join("v1"),
            dir.path().join("v2"),
            dir.path().join("link"),
        );
        std::fs::write(&v1, "first").unwrap();
        std::fs::write(&v2, "other").unwrap();
        std::os::unix::fs::symlink(&v1, &link).unwrap();
        let mut w = watch_of(std::slice::from_ref(&link));
        assert_eq!(parsed(w.poll_once()), ["first"]);
        let next = dir.path().join("link.new");
        std::os::unix::fs::symlink(&v2, &next).unwrap();
        std::fs::rename(&next, &link).unwrap();
        assert_eq!(parsed(w.poll_once()), ["other"]);
    }

    #[test]
    fn a_broken_version_is_reported_once_and_the_fix_is_seen() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        std::fs::write(&a, "one").unwrap();
        let mut w = watch_of(std::slice::from_ref(&a));
        w.load().unwrap();
        std::fs::write(&a, "broken").unwrap();
        assert!(matches!(w.poll_once(), Some(Err(WatchError::Parse(_)))));
        assert!(
            w.poll_once().is_none(),
            "the same broken version is not re-parsed"
        );
        std::fs::write(&a, "fixed").unwrap();
        assert_eq!(parsed(w.poll_once()), ["fixed"]);
    }

    #[test]
    fn missing_required_file_is_a_read_error_once_and_appearing_is_a_change() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::write(&a, "one").unwrap();
        let mut w = watch_of(&[a, b.clone()]);
        match w.load() {
            Err(WatchError::Read { path, .. }) => assert_eq!(path, b),
            other => panic!("expected a read error, got {other:?}"),
        }
        assert!(w.poll_once().is_none());
        std::fs::write(&b, "two").unwrap();
        assert_eq!(parsed(w.poll_once()), ["one", "two"]);
        std::fs::remove_file(&b).unwrap();
        assert!(matches!(w.poll_once(), Some(Err(WatchError::Read { .. }))));
    }

    #[test]
    fn missing_optional_file_reads_as_empty() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::write(&a, "one").unwrap();
        let mut w = watch_of(std::slice::from_ref(&a)).with_optional(b.clone());
        assert_eq!(parsed(w.poll_once()), ["one", ""]);
        std::fs::write(&b, "peers").unwrap();
        assert_eq!(parsed(w.poll_once()), ["one", "peers"]);
        // Disappearing again is a change too (the sidecar's federated bundle map).
        std::fs::remove_file(&b).unwrap();
        assert_eq!(parsed(w.poll_once()), ["one", ""]);
    }

    #[test]
    fn a_read_racing_a_writer_is_retried_next_poll() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        std::fs::write(&a, "one").unwrap();
        let mut w = watch_of(std::slice::from_ref(&a));
        w.load().unwrap();
        // The writer has written half when the watch reads, and finishes before it re-stats.
        std::fs::write(&a, "broken: half").unwrap();
        let finish = || std::fs::write(&a, "broken: half, and the rest").unwrap();
        assert!(
            w.poll_racing(finish).is_none(),
            "an unstable read is not parsed"
        );
        // The next poll reads the finished, stable file.
        std::fs::write(&a, "complete").unwrap();
        assert_eq!(parsed(w.poll_once()), ["complete"]);
        assert!(w.poll_once().is_none());
    }

    #[test]
    fn an_unstable_read_does_not_count_as_seen() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        std::fs::write(&a, "one").unwrap();
        let mut w = watch_of(std::slice::from_ref(&a));
        w.load().unwrap();
        std::fs::write(&a, "two").unwrap();
        let mtime = SystemTime::now() + Duration::from_secs(30);
        assert!(w.poll_racing(|| set_mtime(&a, mtime)).is_none());
        // Same content as the rejected read, now stable: still reported as new.
        assert_eq!(parsed(w.poll_once()), ["two"]);
    }

    #[tokio::test(start_paused = true)]
    async fn run_reports_each_change_until_shutdown() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        std::fs::write(&a, "one").unwrap();
        let mut w = watch_of(std::slice::from_ref(&a));
        w.load().unwrap();
        std::fs::write(&a, "two").unwrap();
        let shutdown = CancellationToken::new();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let task = tokio::spawn(w.run(Duration::from_secs(1), shutdown.clone(), move |r| {
            let _ = tx.send(r.map_err(|e| e.to_string()));
        }));
        assert_eq!(rx.recv().await.unwrap().unwrap(), ["two"]);
        shutdown.cancel();
        task.await.unwrap();
        assert!(
            rx.recv().await.is_none(),
            "the loop ended and dropped on_change"
        );
    }
}
