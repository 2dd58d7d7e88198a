//! The open files of an HDF5 layout (H5s blocks, aligned sections): a bounded,
//! thread-safe cache keyed by path, so that each file is opened and its chunk index built
//! once while it is in use, and a layer of many thousand files never holds that many file
//! descriptors.
//!
//! H5s writers replace a block file whole (a new file renamed over it), in this process or
//! another, so each lookup compares the file's version now (inode, modification time and
//! size, one `stat`) with the one the cached entry was opened at, and opens it anew when it
//! changed. An entry still in use by a read keeps its own open descriptor, and so keeps
//! reading the version it indexed, whole, even once that file is unlinked.

use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use lru::LruCache;

use crate::error::{Error, Result};
use crate::store::{version_of, Version};

/// Files a handle keeps open (each with its chunk index); opening one more closes the
/// least recently used.
pub const CAPACITY: usize = 256;

/// How many times a file may be replaced while it is being opened before the open gives up.
const OPEN_RETRIES: usize = 16;

/// A bounded LRU cache of open files keyed by path, each with the version it was opened at.
#[derive(Debug)]
pub struct OpenFiles<T> {
    files: Mutex<LruCache<PathBuf, (Arc<T>, Version)>>,
}

impl<T> Default for OpenFiles<T> {
    fn default() -> Self {
        Self::with_capacity(CAPACITY)
    }
}

impl<T> OpenFiles<T> {
    /// A cache that keeps at most `capacity` files open (at least 1).
    pub fn with_capacity(capacity: usize) -> Self {
        OpenFiles {
            files: Mutex::new(LruCache::new(
                NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN),
            )),
        }
    }

    /// The open file at `path`, opened with `open` if it is not open yet or has been
    /// replaced since; `None` when no file exists there. `open` runs without the lock held,
    /// so that other threads keep reading the files already open while one is being
    /// indexed; two threads opening the same file at once both open it and the cache keeps
    /// one. `open` may open the path more than once (libhdf5 for the index, then a plain
    /// descriptor for the bytes): the version is read before and after it, and a file
    /// replaced in between is opened again, so that every part comes from one version.
    pub fn get_or_open(
        &self,
        path: &Path,
        mut open: impl FnMut(&Path) -> Result<T>,
    ) -> Result<Option<Arc<T>>> {
        let Some(mut version) = current_version(path)? else {
            self.forget(path);
            return Ok(None);
        };
        if let Some((file, at)) = self.lock().get(path) {
            if *at == version {
                return Ok(Some(file.clone()));
            }
        }
        for _ in 0..OPEN_RETRIES {
            let file = Arc::new(open(path)?);
            match current_version(path)? {
                Some(after) if after == version => {
                    self.lock().put(path.to_path_buf(), (file.clone(), version));
                    return Ok(Some(file));
                }
                Some(after) => version = after,
                None => {
                    self.forget(path);
                    return Ok(None);
                }
            }
        }
        Err(Error::store(
            &path.display().to_string(),
            format!("replaced by other writers {OPEN_RETRIES} times while it was being opened"),
        ))
    }

    /// Drops the file at `path`, whose cached index no longer matches it once written.
    pub fn forget(&self, path: &Path) {
        self.lock().pop(path);
    }

    /// How many files are open.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no file is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> MutexGuard<'_, LruCache<PathBuf, (Arc<T>, Version)>> {
        // A panic while the lock was held leaves the cache consistent (each call is one
        // LruCache operation), so a poisoned lock is used as is.
        self.files.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The version of the file at `path` now, `None` when there is none.
fn current_version(path: &Path) -> Result<Option<Version>> {
    match std::fs::metadata(path) {
        Ok(meta) => Ok(Some(version_of(&meta))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::store(&path.display().to_string(), e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_most_recently_used_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = |n: usize| dir.path().join(format!("{n}.h5"));
        for n in 0..3 {
            std::fs::write(path(n), b"").unwrap();
        }
        let files = OpenFiles::with_capacity(2);
        let opened = std::cell::Cell::new(0);
        let open = |p: &Path| {
            opened.set(opened.get() + 1);
            Ok(p.to_path_buf())
        };
        files.get_or_open(&path(0), open).unwrap();
        files.get_or_open(&path(1), open).unwrap();
        // 0 is used again, so opening 2 closes 1.
        files.get_or_open(&path(0), open).unwrap();
        files.get_or_open(&path(2), open).unwrap();
        assert_eq!((opened.get(), files.len()), (3, 2));
        files.get_or_open(&path(0), open).unwrap();
        assert_eq!(opened.get(), 3);
        files.get_or_open(&path(1), open).unwrap();
        assert_eq!(opened.get(), 4);
        files.forget(&path(1));
        assert_eq!(files.len(), 1);
        let missing = files.get_or_open(&path(9), open).unwrap();
        assert!(missing.is_none() && opened.get() == 4);
    }

    #[test]
    fn a_replaced_file_is_opened_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("block.h5");
        std::fs::write(&path, b"one").unwrap();
        let files = OpenFiles::with_capacity(2);
        let open = |p: &Path| Ok(std::fs::read(p).unwrap());
        assert_eq!(*files.get_or_open(&path, open).unwrap().unwrap(), b"one");
        // Replaced as writers replace blocks: a new file renamed over it.
        let new = dir.path().join("block.h5#1");
        std::fs::write(&new, b"two").unwrap();
        std::fs::rename(&new, &path).unwrap();
        assert_eq!(*files.get_or_open(&path, open).unwrap().unwrap(), b"two");
        std::fs::remove_file(&path).unwrap();
        assert!(files.get_or_open(&path, open).unwrap().is_none());
        assert!(files.is_empty());
    }
}
