//! The open files of an HDF5 layout (H5s blocks, aligned sections): a bounded,
//! thread-safe cache keyed by path, so that each file is opened and its chunk index built
//! once while it is in use, and a layer of many thousand files never holds that many file
//! descriptors.

use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use lru::LruCache;

use crate::error::Result;

/// Files a handle keeps open (each with its chunk index); opening one more closes the
/// least recently used.
pub const CAPACITY: usize = 256;

/// A bounded LRU cache of open files keyed by path.
#[derive(Debug)]
pub struct OpenFiles<T> {
    files: Mutex<LruCache<PathBuf, Arc<T>>>,
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

    /// The open file at `path`, opened with `open` if it is not open yet; `None` when no
    /// file exists there. `open` runs without the lock held, so that other threads keep
    /// reading the files already open while one is being indexed; two threads opening the
    /// same file at once both open it and the cache keeps one.
    pub fn get_or_open(
        &self,
        path: &Path,
        open: impl FnOnce(&Path) -> Result<T>,
    ) -> Result<Option<Arc<T>>> {
        if let Some(file) = self.lock().get(path) {
            return Ok(Some(file.clone()));
        }
        if !path.exists() {
            return Ok(None);
        }
        let file = Arc::new(open(path)?);
        self.lock().put(path.to_path_buf(), file.clone());
        Ok(Some(file))
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

    fn lock(&self) -> MutexGuard<'_, LruCache<PathBuf, Arc<T>>> {
        // A panic while the lock was held leaves the cache consistent (each call is one
        // LruCache operation), so a poisoned lock is used as is.
        self.files.lock().unwrap_or_else(|p| p.into_inner())
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
}
