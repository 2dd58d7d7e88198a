//! Puts to a local directory that are atomic against other writers, in any process, for
//! all three put modes. A value is written to a temporary file beside its key
//! (`<key>#<n>`, the name object_store's local backend uses, which its listings hide), then
//! renamed over the key while this process holds an exclusive `flock` on the key's
//! directory: the condition (absent, or still the version read) is checked and the rename
//! made under that lock, so two writers can never both pass the check for one object.
//!
//! The lock is held only around "stat, compare, rename" (microseconds), never while the
//! value is written, and the kernel releases it when its holder dies, so a killed writer
//! never blocks the others. Locking the directory rather than the file is what makes it
//! work: a rename replaces the file, so a lock on it would guard an inode nobody opens
//! again; and the directory needs no lock file beside the chunks.
//!
//! A version is the file's inode, size and modification time in nanoseconds, read from the
//! open file a reader took its bytes from. A replace always changes the inode (the new value
//! is a new file); an inode freed by a replace and reused at once is told apart by its time,
//! which each put sets from the precise clock (file systems stamp writes with a clock that
//! may tick only every few milliseconds).
//!
//! Killed writers leave their temporary files behind. The next writer of the same key meets
//! them while it looks for a free temporary name, and removes those older than
//! [`TEMPORARY_MAX_AGE`]: a live writer's file is younger (its time is that of its last
//! write), so it is never removed under a writer that is still running.

use std::fs::{File, Metadata, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::{PutMode, Version};

/// Temporary files older than this are a killed writer's, and the next writer of their key
/// removes them. Far longer than any live writer takes between two writes to its file.
pub const TEMPORARY_MAX_AGE: Duration = Duration::from_secs(5 * 60);

/// The key a temporary file belongs to, when `name` (a key, or a path) is one: `<key>#<n>`
/// with `n` all digits. The one place that knows the form, for the writers here, for
/// readers and for `bigarrays fsck`.
pub fn temporary_of(name: &str) -> Option<&str> {
    let (key, n) = name.rsplit_once('#')?;
    let file = key.rsplit('/').next().unwrap_or(key);
    let digits = !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit());
    (digits && !file.is_empty() && !file.contains('#')).then_some(key)
}

/// The version of the file whose metadata is `meta` (from the open file a value was read
/// from, or from the path under the lock).
pub fn version_of(meta: &Metadata) -> Version {
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(meta);
    #[cfg(not(unix))]
    let inode = 0u64;
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    Version {
        e_tag: Some(format!("{inode:x}-{mtime:x}-{:x}", meta.len())),
        version: None,
    }
}

/// Whether exclusive locks on the directories under `root` work here. They do on local
/// Unix file systems; on NFS the client turns `flock` into a POSIX lock, which needs a file
/// opened for writing (a directory cannot be), and Windows does not open directories as
/// files: there the store has no conditional puts and writers are last-writer-wins, as
/// they were before.
pub fn directory_locks_work(root: &Path) -> bool {
    if !cfg!(unix) {
        return false;
    }
    let Ok(dir) = File::open(root) else {
        return false;
    };
    match dir.try_lock() {
        Ok(()) => dir.unlock().is_ok(),
        // Another writer holds it right now: locks work.
        Err(std::fs::TryLockError::WouldBlock) => true,
        Err(std::fs::TryLockError::Error(_)) => false,
    }
}

/// Puts `value` at `path` as `mode` says (see the module notes): `false`, having changed
/// nothing, when the condition does not hold. Blocking: run it off the async runtime.
pub fn put(path: &Path, value: &[u8], mode: &PutMode) -> std::io::Result<bool> {
    let (mut file, temporary) = create_temporary(path)?;
    let stored = write_and_publish(&mut file, &temporary, path, value, mode);
    if !matches!(stored, Ok(true)) {
        // Nothing was renamed: the temporary file is ours to remove.
        let _ = std::fs::remove_file(&temporary);
    }
    stored
}

fn write_and_publish(
    file: &mut File,
    temporary: &Path,
    path: &Path,
    value: &[u8],
    mode: &PutMode,
) -> std::io::Result<bool> {
    file.write_all(value)?;
    stamp(file)?;
    publish(temporary, path, mode)
}

/// Sets the modification time of a finished temporary file from the precise clock, so that
/// its version tells it from any earlier file that had the same inode (see the module
/// notes). Every file published with [`publish`] must be stamped last.
pub(crate) fn stamp(file: &File) -> std::io::Result<()> {
    file.set_modified(SystemTime::now())
}

/// Renames the finished (and [stamped](stamp)) temporary file `temporary` over `path` if
/// `mode`'s condition holds, checked and renamed under the lock on `path`'s directory:
/// `false`, having changed nothing, when it does not. The caller removes `temporary` then.
pub(crate) fn publish(temporary: &Path, path: &Path, mode: &PutMode) -> std::io::Result<bool> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let lock = File::open(dir)?;
    // Threads of one process exclude each other too: each put opens the directory anew,
    // and flock locks belong to the open file, not to the process.
    lock.lock()?;
    let holds = match mode {
        PutMode::Overwrite => true,
        PutMode::IfAbsent => match std::fs::symlink_metadata(path) {
            Err(e) if e.kind() == ErrorKind::NotFound => true,
            Err(e) => return Err(e),
            Ok(_) => false,
        },
        PutMode::IfVersion(version) => match std::fs::metadata(path) {
            Err(e) if e.kind() == ErrorKind::NotFound => false,
            Err(e) => return Err(e),
            Ok(meta) => version_of(&meta) == *version,
        },
    };
    if holds {
        std::fs::rename(temporary, path)?;
    }
    // Closing `lock` releases the lock (and so does the kernel if this process dies).
    drop(lock);
    Ok(holds)
}

/// `<path>#<n>` for the first free `n`, created and opened (with the directories above it);
/// killed writers' files met on the way, and just after, are removed when old.
pub(crate) fn create_temporary(path: &Path) -> std::io::Result<(File, PathBuf)> {
    let mut n = 1u32;
    let mut made_dirs = false;
    loop {
        let temporary = temporary_path(path, n);
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temporary)
        {
            Ok(file) => {
                remove_old_after(path, n);
                return Ok((file, temporary));
            }
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                // Removed when old: then the same name is tried again.
                if !remove_if_old(&temporary) {
                    n += 1;
                }
            }
            // Once only: a directory removed again at once (delete_dir racing) is an error.
            Err(e) if e.kind() == ErrorKind::NotFound && !made_dirs => {
                let dir = path.parent().unwrap_or(Path::new("."));
                std::fs::create_dir_all(dir)?;
                made_dirs = true;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Removes old temporary files of `path` numbered after `n`, up to the first free number:
/// leftovers above the first free name would otherwise never be met (one stat when there
/// are none).
fn remove_old_after(path: &Path, n: u32) {
    for m in n.saturating_add(1)..n.saturating_add(64) {
        let temporary = temporary_path(path, m);
        if std::fs::symlink_metadata(&temporary).is_err() {
            return;
        }
        remove_if_old(&temporary);
    }
}

/// Removes the temporary file at `temporary` when it is older than [`TEMPORARY_MAX_AGE`]
/// (or already gone); `true` when it is no longer there.
fn remove_if_old(temporary: &Path) -> bool {
    let meta = match std::fs::symlink_metadata(temporary) {
        Ok(meta) => meta,
        Err(e) => return e.kind() == ErrorKind::NotFound,
    };
    let age = meta
        .modified()
        .ok()
        .and_then(|t| SystemTime::now().duration_since(t).ok());
    if age.is_none_or(|age| age <= TEMPORARY_MAX_AGE) {
        return false;
    }
    match std::fs::remove_file(temporary) {
        Ok(()) => true,
        Err(e) => e.kind() == ErrorKind::NotFound,
    }
}

fn temporary_path(path: &Path, n: u32) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!("#{n}"));
    name.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn old(path: &Path) {
        let file = File::options().write(true).open(path).unwrap();
        let then = SystemTime::now() - TEMPORARY_MAX_AGE - Duration::from_secs(60);
        file.set_modified(then).unwrap();
    }

    #[test]
    fn temporary_names_are_recognised() {
        assert_eq!(
            temporary_of("a/b/0-64_0-64_0-64#3"),
            Some("a/b/0-64_0-64_0-64")
        );
        assert_eq!(temporary_of("c/0/0#12"), Some("c/0/0"));
        assert_eq!(temporary_of("info"), None);
        assert_eq!(temporary_of("a#b"), None);
        assert_eq!(temporary_of("a#"), None);
        assert_eq!(temporary_of("dir/#1"), None);
        assert_eq!(temporary_of("a#1#2"), None);
    }

    #[test]
    fn conditions_hold_and_versions_change_with_every_put() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/key");
        assert!(put(&path, b"one", &PutMode::IfAbsent).unwrap());
        assert!(!put(&path, b"two", &PutMode::IfAbsent).unwrap());
        let v1 = version_of(&std::fs::metadata(&path).unwrap());
        assert!(put(&path, b"one", &PutMode::Overwrite).unwrap());
        let v2 = version_of(&std::fs::metadata(&path).unwrap());
        assert_ne!(v1, v2, "the same bytes again are a new version");
        assert!(!put(&path, b"three", &PutMode::IfVersion(v1)).unwrap());
        assert!(put(&path, b"four", &PutMode::IfVersion(v2)).unwrap());
        assert_eq!(std::fs::read(&path).unwrap(), b"four");
        let left: Vec<_> = std::fs::read_dir(dir.path().join("sub")).unwrap().collect();
        assert_eq!(left.len(), 1, "temporary files left: {left:?}");
        assert!(directory_locks_work(dir.path()));
    }

    #[test]
    fn the_next_writer_removes_old_temporary_files_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        for n in 1..=4 {
            std::fs::write(temporary_path(&path, n), b"left by a killed writer").unwrap();
        }
        old(&temporary_path(&path, 1));
        old(&temporary_path(&path, 3));
        assert!(put(&path, b"value", &PutMode::Overwrite).unwrap());
        let exists = |n| temporary_path(&path, n).exists();
        assert!(!exists(1) && !exists(3), "old ones removed");
        assert!(exists(2) && exists(4), "young ones kept");
        assert_eq!(std::fs::read(&path).unwrap(), b"value");
    }

    #[test]
    fn racing_threads_lose_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("counter");
        std::fs::write(&path, 0u64.to_le_bytes()).unwrap();
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let path = path.clone();
                std::thread::spawn(move || {
                    for _ in 0..50 {
                        loop {
                            use std::io::Read;
                            let mut file = File::open(&path).unwrap();
                            let version = version_of(&file.metadata().unwrap());
                            let mut bytes = Vec::new();
                            file.read_to_end(&mut bytes).unwrap();
                            let n = u64::from_le_bytes(bytes.try_into().unwrap());
                            let next = (n + 1).to_le_bytes();
                            if put(&path, &next, &PutMode::IfVersion(version)).unwrap() {
                                break;
                            }
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(u64::from_le_bytes(bytes.try_into().unwrap()), 200);
    }
}
