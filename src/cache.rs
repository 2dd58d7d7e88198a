//! A bounded LRU of decoded chunks, shared by every read on one `BigArray` handle.
//!
//! Entries are the chunk's elements exactly as the format's decoder hands them over
//! (Precomputed: Fortran-ordered, clipped to the layer, keyed by grid cell; Zarr: C-ordered,
//! the whole stored chunk, keyed by its first element), or `None` for a chunk known to be
//! missing, so sparse layers do not ask the store again either. Memory is bounded by the sum of entry sizes; an entry larger
//! than the whole budget is not kept.

use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use lru::LruCache;

/// A cached chunk: its voxels, or `None` when the store has no such chunk.
pub type Entry = Option<Arc<[u8]>>;

/// What an empty (missing-chunk) entry is charged, so that a flood of them stays bounded.
const MISSING_COST: usize = 64;

#[derive(Debug)]
/// A bounded LRU of decoded chunks (or of known-missing ones), keyed by where the chunk is.
pub(crate) struct ChunkCache<K: Hash + Eq = [u64; 3]> {
    budget: usize,
    state: Mutex<State<K>>,
    hits: AtomicU64,
    misses: AtomicU64,
}

#[derive(Debug)]
struct State<K: Hash + Eq> {
    entries: LruCache<K, Entry>,
    bytes: usize,
}

/// Counters, for users tuning `cache_bytes` (and tests proving hits skip the store).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheStats {
    /// Lookups answered from the cache.
    pub hits: u64,
    /// Lookups the cache could not answer (the chunk was then fetched).
    pub misses: u64,
    /// Chunks (and known-missing chunks) held now.
    pub entries: usize,
    /// Bytes the held entries are charged now.
    pub bytes: usize,
    /// The most bytes the cache holds (`cache_bytes`).
    pub budget: usize,
}

fn cost(entry: &Entry) -> usize {
    entry
        .as_ref()
        .map_or(MISSING_COST, |v| v.len().max(MISSING_COST))
}

impl<K: Hash + Eq> ChunkCache<K> {
    /// A cache holding at most `budget` bytes of decoded chunks.
    pub fn new(budget: usize) -> Self {
        ChunkCache {
            budget,
            state: Mutex::new(State {
                entries: LruCache::unbounded(),
                bytes: 0,
            }),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State<K>> {
        // A panic while holding the lock leaves consistent state (every update is a single
        // map operation plus a counter), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The entry for the chunk at `cell`, marking it most recently used; `None` on a miss.
    pub fn get(&self, cell: K) -> Option<Entry> {
        let found = self.state().entries.get(&cell).cloned();
        let counter = if found.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// Stores `entry` for `cell`, evicting least recently used entries past the budget.
    pub fn insert(&self, cell: K, entry: Entry) {
        let size = cost(&entry);
        if size > self.budget {
            self.remove(cell);
            return;
        }
        let mut state = self.state();
        if let Some(old) = state.entries.put(cell, entry) {
            state.bytes -= cost(&old);
        }
        state.bytes += size;
        while state.bytes > self.budget {
            match state.entries.pop_lru() {
                Some((_, old)) => state.bytes -= cost(&old),
                None => break,
            }
        }
    }

    /// Forgets `cell` (after this handle rewrote it).
    pub fn remove(&self, cell: K) {
        let mut state = self.state();
        if let Some(old) = state.entries.pop(&cell) {
            state.bytes -= cost(&old);
        }
    }

    /// The counters and occupancy now.
    pub fn stats(&self) -> CacheStats {
        let state = self.state();
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            entries: state.entries.len(),
            bytes: state.bytes,
            budget: self.budget,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(n: usize) -> Entry {
        Some(Arc::from(vec![1u8; n]))
    }

    #[test]
    fn evicts_least_recently_used_within_budget() {
        let cache = ChunkCache::new(300);
        cache.insert([0, 0, 0], chunk(100));
        cache.insert([1, 0, 0], chunk(100));
        cache.insert([2, 0, 0], chunk(100));
        assert!(cache.get([0, 0, 0]).is_some()); // now most recent
        cache.insert([3, 0, 0], chunk(100)); // evicts [1, 0, 0]
        assert!(cache.get([1, 0, 0]).is_none());
        assert!(cache.get([0, 0, 0]).is_some());
        let stats = cache.stats();
        assert_eq!((stats.entries, stats.bytes), (3, 300));
        assert_eq!((stats.hits, stats.misses), (2, 1));
    }

    #[test]
    fn oversized_entries_are_not_kept_and_replacements_are_counted_once() {
        let cache = ChunkCache::new(150);
        cache.insert([0, 0, 0], chunk(100));
        cache.insert([0, 0, 0], chunk(120));
        assert_eq!(cache.stats().bytes, 120);
        cache.insert([0, 0, 0], chunk(1000));
        assert_eq!((cache.stats().entries, cache.stats().bytes), (0, 0));
        cache.insert([5, 5, 5], None);
        assert_eq!(cache.get([5, 5, 5]), Some(None)); // a known-missing chunk is a hit
        cache.remove([5, 5, 5]);
        assert_eq!(cache.stats().bytes, 0);
    }
}
